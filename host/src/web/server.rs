//! Serving the monitor port's router under a web configuration: a TLS listener (handshakes off
//! the accept loop, a plain HTTP request answered with a 400 as Go's servers do) and the basic
//! auth middleware in front of every route, with a cache of successful bcrypt checks.
//!
//! **Invariant:** the router itself is never changed here: whatever routes `admin::router` has,
//! every one of them is behind the same TLS and authentication.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::Digest as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::{ClientAuth, Handle};

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; more wait in the kernel's backlog.
const HANDSHAKES: usize = 64;
/// Successful (user, password) checks remembered; the set is emptied when full.
const CACHE_SIZE: usize = 256;
/// bcrypt checks running at once: a flood of wrong passwords must not take every blocking thread.
const BCRYPT_PARALLEL: usize = 2;
/// What Go's HTTP server answers to plain HTTP on a TLS port; Prometheus users know it.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\n\
    Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// `promrelay_monitor_auth_total{outcome}`: basic auth checks of the monitor port by outcome:
/// `cached` (a remembered success, no bcrypt), `verified` (bcrypt said yes), `refused`, `self`
/// (the self job). A Prometheus scraping with one password shows one `verified`, then `cached`.
static AUTH_CHECKS: LazyLock<
    prometheus_client::metrics::family::Family<
        OutcomeLabel,
        prometheus_client::metrics::counter::Counter,
    >,
> = LazyLock::new(|| {
    let family = prometheus_client::metrics::family::Family::default();
    crate::telemetry::registry().register(
        "monitor_auth",
        "Basic auth checks on the monitor port by outcome (cached, verified, refused, self)",
        family.clone(),
    );
    family
});

fn count(outcome: &'static str) {
    AUTH_CHECKS.get_or_create(&OutcomeLabel { outcome }).inc();
}

/// Serves `router` on `listener` with the web settings of `web` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    web: Handle,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let auth = Arc::new(Auth {
        web: web.clone(),
        cache: Mutex::new(HashSet::new()),
        bcrypt: Semaphore::new(BCRYPT_PARALLEL),
    });
    if !web.current().users.is_empty() {
        for outcome in ["cached", "verified", "refused", "self"] {
            let _ = AUTH_CHECKS.get_or_create(&OutcomeLabel { outcome });
        }
    }
    let router = router.layer(axum::middleware::from_fn_with_state(auth, authenticate));
    let stop = async move { shutdown.cancelled().await };
    let path = web.path().display().to_string();
    if web.current().tls.is_some() {
        let listener = TlsListener::start(listener, web);
        axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
    } else {
        axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
    }
    .map_err(|e| anyhow::anyhow!("monitor port server (web_config_file {path}) failed: {e}"))
}

/// Accepts TCP connections and hands out those that completed a TLS handshake. The handshakes
/// run in their own tasks, so a slow or silent client never holds up the others.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn start(listener: TcpListener, web: Handle) -> TlsListener {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (sender, ready) = mpsc::channel(HANDSHAKES);
        let accepting = tokio::spawn(accept_loop(listener, web, sender));
        TlsListener {
            ready,
            local,
            accepting,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop ended (it never does while the listener lives): wait for the
            // shutdown that drops this listener.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    listener: TcpListener,
    web: Handle,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!("monitor port: accepting a connection failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        // The settings of the moment: a reloaded certificate applies to new connections.
        let Some(tls) = web.current().tls.as_ref().map(|tls| tls.config.clone()) else {
            return;
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(stream, tls)).await;
            match outcome {
                Ok(Ok(Some(stream))) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Ok(None)) => tracing::debug!(%peer, "monitor port: plain HTTP refused"),
                Ok(Err(error)) => {
                    tracing::debug!(%peer, "monitor port: TLS handshake failed: {error}")
                }
                Err(_) => tracing::debug!(%peer, "monitor port: TLS handshake timed out"),
            }
        });
    }
}

/// The TLS handshake of one connection; `None` when the client spoke plain HTTP (answered 400).
async fn handshake(
    stream: TcpStream,
    tls: Arc<rustls::ServerConfig>,
) -> std::io::Result<Option<TlsStream<TcpStream>>> {
    use tokio::io::AsyncWriteExt as _;
    let mut first = [0u8; 1];
    let read = stream.peek(&mut first).await?;
    // 0x16: a TLS handshake record. Anything else that reads as text is plain HTTP.
    if read == 1 && first[0] != 0x16 && first[0].is_ascii_uppercase() {
        let mut stream = stream;
        stream.write_all(PLAIN_HTTP_ANSWER).await?;
        stream.shutdown().await?;
        return Ok(None);
    }
    let stream = tokio_rustls::TlsAcceptor::from(tls).accept(stream).await?;
    Ok(Some(stream))
}

/// The basic auth of the monitor port.
struct Auth {
    web: Handle,
    /// SHA-256 of (user, hash, password) of checks that passed: bcrypt costs ~50 ms or more
    /// per check, and a Prometheus scraping every 5 s would otherwise pay it every time.
    cache: Mutex<HashSet<[u8; 32]>>,
    bcrypt: Semaphore,
}

/// A valid-looking bcrypt hash of a random password: an unknown user costs the same time as a
/// known one, so response times do not tell which users exist.
pub(super) const DUMMY_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

async fn authenticate(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    let settings = auth.web.current();
    if settings.users.is_empty() {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let accepted = match given {
        Some(value) if super::client::is_self_credential(&value) => {
            count("self");
            true
        }
        Some(value) => match basic_credentials(&value) {
            Some((user, password)) => auth.check(&settings.users, user, password).await,
            None => {
                count("refused");
                false
            }
        },
        None => {
            count("refused");
            false
        }
    };
    if accepted {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic")],
            "Unauthorized\n",
        )
            .into_response()
    }
}

/// `Basic base64(user:password)` → (user, password).
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let encoded = value.strip_prefix("Basic ")?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

impl Auth {
    async fn check(
        &self,
        users: &std::collections::BTreeMap<String, String>,
        user: String,
        password: String,
    ) -> bool {
        let known = users.get(&user);
        let hash = known.map_or(DUMMY_HASH, String::as_str).to_owned();
        let mut digest = sha2::Sha256::new();
        for part in [user.as_bytes(), hash.as_bytes(), password.as_bytes()] {
            digest.update((part.len() as u64).to_le_bytes());
            digest.update(part);
        }
        let key: [u8; 32] = digest.finalize().into();
        if known.is_some() && self.lock().contains(&key) {
            count("cached");
            return true;
        }
        let Ok(_permit) = self.bcrypt.acquire().await else {
            return false;
        };
        let verified = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if verified && known.is_some() {
            let mut cache = self.lock();
            if cache.len() >= CACHE_SIZE {
                cache.clear();
            }
            cache.insert(key);
            count("verified");
            true
        } else {
            count("refused");
            tracing::debug!(user = %user, "monitor port: basic auth refused");
            false
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        // A panic while holding the lock leaves a set of digests that is still valid.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `client_auth_type` as a rustls verifier. Beside the CA's certificates it accepts the port's
/// own certificate: only a holder of its key (this process's self job, the local CLI) can
/// complete a handshake with it.
#[derive(Debug)]
pub(super) struct ClientVerifier {
    /// Verifies against `client_ca_file`; `None` for the modes that do not verify.
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    mandatory: bool,
    own: CertificateDer<'static>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ClientVerifier {
    pub(super) fn new(
        mode: ClientAuth,
        roots: Option<Arc<rustls::RootCertStore>>,
        own: CertificateDer<'static>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<ClientVerifier, String> {
        let verifier = match roots {
            Some(roots) => Some(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots,
                    provider.clone(),
                )
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("not usable to verify client certificates: {e}"))?,
            ),
            None => None,
        };
        Ok(ClientVerifier {
            verifier,
            mandatory: mode.mandatory(),
            own,
            algorithms: provider.signature_verification_algorithms,
        })
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.verifier
            .as_ref()
            .map_or(&[], |verifier| verifier.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.own.as_ref() {
            return Ok(ClientCertVerified::assertion());
        }
        match &self.verifier {
            Some(verifier) => verifier.verify_client_cert(end_entity, intermediates, now),
            None => Ok(ClientCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
