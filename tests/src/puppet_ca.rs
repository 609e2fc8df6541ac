//! A small Puppet CA for `promrelay enroll` tests: an HTTPS server on 127.0.0.1 that speaks the
//! three endpoints an agent uses (`/puppet-ca/v1/certificate/ca`, `certificate_request/<name>`,
//! `certificate/<name>`, each with `?environment=production`), with an `rcgen` CA that signs a
//! submitted CSR once the certificate has been asked for a chosen number of times.
//!
//! Like the real one it answers 404 while a request is unsigned, 400 "already has a requested
//! certificate" to a second submission, and 400 "Certificate names must be lower case".
//! Connections are served one at a time on one thread, closed after each answer.
//!
//! **Invariant:** listens on 127.0.0.1 only; the thread ends when the guard is dropped.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;

/// When the fake CA signs a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// After this many `GET certificate/<name>` answered 404 (0: at the first one).
    AfterPolls(u32),
    /// Never: the request stays pending.
    Never,
}

#[derive(Default)]
struct State {
    /// When to sign; changeable while running.
    signing: Option<Signing>,
    /// Submitted CSRs (PEM) by name.
    requests: HashMap<String, String>,
    /// Signed certificates (PEM) by name.
    signed: HashMap<String, String>,
    /// `GET certificate/<name>` requests by name.
    polls: HashMap<String, u32>,
    /// Submissions (`PUT certificate_request`) by name, also refused ones.
    submissions: HashMap<String, u32>,
}

/// The running fake CA; stops when dropped.
pub struct PuppetCa {
    ca: Arc<CertifiedIssuer<'static, KeyPair>>,
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    dir: TempDir,
}

/// A certificate and its key, written as PEM files.
#[derive(Debug, Clone)]
pub struct LeafFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl PuppetCa {
    /// Starts the CA on a free 127.0.0.1 port.
    pub fn start(signing: Signing) -> PuppetCa {
        let ca = Arc::new(new_ca());
        let dir = tempfile::Builder::new()
            .prefix("puppet-ca-")
            .tempdir()
            .expect("temp dir for the fake Puppet CA");
        let (server_cert, server_key) = leaf(&ca, "puppet", true);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![server_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .expect("server certificate and key");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake Puppet CA");
        let port = listener.local_addr().expect("bound address").port();
        let state = Arc::new(Mutex::new(State {
            signing: Some(signing),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (ca, state, stop, config) =
                (ca.clone(), state.clone(), stop.clone(), Arc::new(config));
            std::thread::Builder::new()
                .name("fake-puppet-ca".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        if let Ok(stream) = stream {
                            // A client that goes away mid-request is its own problem.
                            let _ = serve(stream, &config, &ca, &state);
                        }
                    }
                })
                .expect("start the fake Puppet CA thread")
        };
        let puppet_ca = PuppetCa {
            ca,
            port,
            state,
            stop,
            thread: Some(thread),
            dir,
        };
        std::fs::write(puppet_ca.ca_path(), puppet_ca.ca_pem()).expect("write the CA file");
        puppet_ca
    }

    /// `127.0.0.1:PORT`, as `--ca` takes it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A file holding the CA certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The CA certificate's SHA-256 fingerprint as `openssl x509 -fingerprint -sha256` prints it.
    pub fn ca_fingerprint(&self) -> String {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(self.ca.der());
        let pairs: Vec<String> = digest.iter().map(|byte| format!("{byte:02X}")).collect();
        pairs.join(":")
    }

    /// A certificate for 127.0.0.1/localhost issued by this CA (e.g. for a nats-server).
    pub fn leaf_files(&self, name: &str, server: bool) -> LeafFiles {
        let (cert, key) = leaf(&self.ca, name, server);
        let files = LeafFiles {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}-key.pem")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write the certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write the key");
        files
    }

    /// Changes when pending requests get signed (counting polls from the start).
    pub fn set_signing(&self, signing: Signing) {
        self.lock().signing = Some(signing);
    }

    /// How often the certificate of `name` was asked for.
    pub fn polls(&self, name: &str) -> u32 {
        self.lock().polls.get(name).copied().unwrap_or(0)
    }

    /// How often a request for `name` was submitted.
    pub fn submissions(&self, name: &str) -> u32 {
        self.lock().submissions.get(name).copied().unwrap_or(0)
    }

    /// The CSR (PEM) submitted for `name`, if any.
    pub fn request(&self, name: &str) -> Option<String> {
        self.lock().requests.get(name).cloned()
    }

    /// The certificate (PEM) signed for `name`, if any.
    pub fn signed(&self, name: &str) -> Option<String> {
        self.lock().signed.get(name).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for PuppetCa {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn new_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "Puppet CA: fake");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    CertifiedIssuer::self_signed(params, key).expect("self-signed CA")
}

fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    name: &str,
    server: bool,
) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("leaf params");
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = if server {
        vec![ExtendedKeyUsagePurpose::ServerAuth]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, ca).expect("sign the leaf");
    (cert, key)
}

/// One request on one connection: read it, answer it, close.
fn serve(
    stream: TcpStream,
    config: &Arc<rustls::ServerConfig>,
    ca: &CertifiedIssuer<'static, KeyPair>,
    state: &Mutex<State>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let connection = rustls::ServerConnection::new(config.clone())
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    let mut tls = BufReader::new(rustls::StreamOwned::new(connection, stream));
    let mut request_line = String::new();
    tls.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        tls.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    tls.read_exact(&mut body)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let (status, answer) = answer(&method, &target, &String::from_utf8_lossy(&body), ca, state);
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Error",
    };
    let mut stream = tls.into_inner();
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    stream.flush()?;
    stream.conn.send_close_notify();
    stream.flush()
}

/// The CA's answer (status, body) to one request.
fn answer(
    method: &str,
    target: &str,
    body: &str,
    ca: &CertifiedIssuer<'static, KeyPair>,
    state: &Mutex<State>,
) -> (u16, String) {
    let Some((path, "environment=production")) = target.split_once('?') else {
        return (400, format!("no ?environment=production in {target}"));
    };
    let mut state = state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let state = &mut *state;
    match (method, path.strip_prefix("/puppet-ca/v1/")) {
        ("GET", Some("certificate/ca")) => (200, ca.pem()),
        ("PUT", Some(rest)) if rest.starts_with("certificate_request/") => {
            let name = &rest["certificate_request/".len()..];
            *state.submissions.entry(name.to_owned()).or_default() += 1;
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                return (400, "Certificate names must be lower case".into());
            }
            if state.signed.contains_key(name) {
                return (
                    400,
                    format!(
                        "{name} already has a signed certificate; ignoring certificate request"
                    ),
                );
            }
            if state.requests.contains_key(name) {
                return (
                    400,
                    format!(
                        "{name} already has a requested certificate; ignoring certificate request"
                    ),
                );
            }
            if let Err(error) = CertificateSigningRequestParams::from_pem(body) {
                return (400, format!("not a CSR: {error}"));
            }
            state.requests.insert(name.to_owned(), body.to_owned());
            (200, String::new())
        }
        ("GET", Some(rest)) if rest.starts_with("certificate/") => {
            let name = &rest["certificate/".len()..];
            let polls = state.polls.entry(name.to_owned()).or_default();
            *polls += 1;
            let due = matches!(state.signing, Some(Signing::AfterPolls(after)) if *polls > after);
            if let Some(signed) = state.signed.get(name) {
                return (200, signed.clone());
            }
            match state.requests.get(name) {
                Some(request) if due => match sign(request, ca) {
                    Ok(pem) => {
                        state.signed.insert(name.to_owned(), pem.clone());
                        (200, pem)
                    }
                    Err(error) => (500, error),
                },
                _ => (404, format!("Could not find certificate {name}")),
            }
        }
        _ => (404, format!("no route for {method} {path}")),
    }
}

/// Signs a CSR as Puppet does: the requested subject and key, for server and client use.
fn sign(request: &str, ca: &CertifiedIssuer<'static, KeyPair>) -> Result<String, String> {
    let mut params =
        CertificateSigningRequestParams::from_pem(request).map_err(|error| error.to_string())?;
    params.params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let certificate = params.signed_by(ca).map_err(|error| error.to_string())?;
    Ok(certificate.pem())
}

/// DER of every certificate in a PEM text, for tests that parse what enroll stored.
pub fn certificates(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}
