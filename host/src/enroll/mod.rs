//! `promrelay enroll`: obtain a certificate from a Puppet CA the way `puppet agent --waitforcert`
//! does, into Puppet's `ssl_dir` layout, so `tls: {scheme: puppet}` can use it.
//!
//! Steps: check the name (lower case, as the CA demands) → refuse an existing certificate →
//! fetch the CA certificate (trust on first use unless `--ca-fingerprint` pins it; an existing
//! `certs/ca.pem` is used as is) → create the directories with Puppet's modes → make an RSA-2048
//! key (or reuse the one an interrupted enroll left) and a CSR with CN = identity → submit it →
//! poll for the signed certificate (now, then every `--poll-interval`, up to `--max-wait`) →
//! check it (issued by the CA, for our key and name) → store it.
//!
//! This module is the command: it prints its progress on stdout and warnings on stderr.
//!
//! **Invariant:** nothing is written before the name is checked and the CA certificate is
//! accepted (pinned fingerprint matched, or trusted on first use and said so); no file is
//! overwritten; after the CA certificate, every request verifies the server against it.

mod authority;
mod layout;
mod verify;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rcgen::PublicKeyData as _;

pub use layout::{check_name, Layout, NameError};

use authority::{Authority, Fetched, Submitted};

/// The CA of `--ca` when none is given, as Puppet agents default to it.
pub const DEFAULT_CA: &str = "puppet:8140";

/// `promrelay enroll` options.
#[derive(Debug, Clone, clap::Args)]
pub struct EnrollArgs {
    /// The certificate name to request (lower case). Default: with --config, the `identity` of
    /// the config's `tls` stanza with `scheme: puppet`; else this host's name.
    pub identity: Option<String>,
    /// Puppet's ssl directory to create the files in (certs/, private_keys/,
    /// certificate_requests/), e.g. /etc/puppetlabs/puppet/ssl. Default, with --config: the
    /// `ssl_dir` of the config's `tls` stanza with `scheme: puppet`.
    #[arg(long = "dir", value_name = "SSL_DIR")]
    pub ssl_dir: Option<PathBuf>,
    /// The Puppet CA, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_CA)]
    pub ca: String,
    /// The CA certificate's SHA-256 fingerprint to accept (hex, colons optional; repeat for each
    /// certificate of a CA bundle). Without it the CA is trusted on first use.
    #[arg(long = "ca-fingerprint", value_name = "SHA256")]
    pub ca_fingerprints: Vec<String>,
    /// How long to wait for the CA to sign before giving up.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = humantime::parse_duration)]
    pub max_wait: Duration,
    /// The relay's config: IDENTITY and --dir default to its `tls` stanza with `scheme: puppet`.
    #[arg(long = "config", value_name = "CONFIG")]
    pub config: Option<PathBuf>,
    /// Time between two requests for the signed certificate.
    #[arg(long, hide = true, default_value = "10s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
}

/// Why enrolling stopped, for the cases an operator acts on.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(
        "{identity} is already enrolled in {ssl_dir}: {cert} exists; remove the certificate \
         and its key to enroll again"
    )]
    AlreadyEnrolled {
        identity: String,
        ssl_dir: PathBuf,
        cert: PathBuf,
    },
    #[error(
        "the CA certificate from {source_name} does not match --ca-fingerprint: got {got}; \
         nothing was written"
    )]
    FingerprintMismatch { source_name: String, got: String },
    #[error(
        "the CA at {ca} has not signed {identity} within {waited}: the request is still \
         pending. Sign it on the CA (`puppetserver ca sign --certname {identity}`) and run the \
         same command again: it reuses the key and waits for the certificate"
    )]
    StillPending {
        identity: String,
        ca: String,
        waited: String,
    },
    #[error("the certificate the CA at {ca} returned for {identity} was refused: {reason}")]
    BadCertificate {
        identity: String,
        ca: String,
        reason: verify::SignedError,
    },
}

/// The files of a finished enrollment.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub identity: String,
    pub layout: Layout,
}

/// Runs `promrelay enroll` on its own runtime; prints a summary on success.
pub fn run(args: &EnrollArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let enrolled = runtime.block_on(enroll(args))?;
    let layout = &enrolled.layout;
    println!(
        "enrolled {}: CA {}, certificate {}, private key {}",
        enrolled.identity,
        layout.ca.display(),
        layout.cert.display(),
        layout.key.display()
    );
    println!(
        "use them with: tls: {{scheme: puppet, identity: {}, ssl_dir: {}}}",
        enrolled.identity,
        layout.ssl_dir.display()
    );
    Ok(())
}

/// Enrolls `args.identity` (default: the host name) with the CA of `args.ca`.
pub async fn enroll(args: &EnrollArgs) -> anyhow::Result<Enrolled> {
    let identity = match &args.identity {
        Some(identity) => identity.clone(),
        None => host_name(),
    };
    check_name(&identity)?;
    let pins = args
        .ca_fingerprints
        .iter()
        .map(|pin| verify::parse_pin(pin))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ssl_dir = args.ssl_dir.as_deref().ok_or_else(|| {
        anyhow::anyhow!(
            "no ssl directory: give --dir SSL_DIR, or --config with a tls stanza of scheme puppet"
        )
    })?;
    let layout = Layout::new(ssl_dir, &identity);
    if layout.cert.exists() {
        return Err(EnrollError::AlreadyEnrolled {
            identity,
            ssl_dir: layout.ssl_dir.clone(),
            cert: layout.cert.clone(),
        }
        .into());
    }

    let (ca_pem, stored) = match std::fs::read(&layout.ca) {
        Ok(pem) => (pem, true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let authority = Authority::unverified(&args.ca)?;
            (authority.ca_certificate().await?.into_bytes(), false)
        }
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", layout.ca.display()));
        }
    };
    let source_name = if stored {
        layout.ca.display().to_string()
    } else {
        format!("{} (not verified)", args.ca)
    };
    let ca_bundle =
        verify::certificates(&ca_pem, &format!("the CA certificate from {source_name}"))?;
    let prints: Vec<String> = ca_bundle
        .iter()
        .map(|certificate| verify::fingerprint(certificate))
        .collect();
    for print in &prints {
        println!("CA certificate from {source_name}: SHA-256 fingerprint {print}");
    }
    if !pins.is_empty() {
        let unmatched = verify::unpinned(&ca_bundle, &pins);
        if !unmatched.is_empty() {
            return Err(EnrollError::FingerprintMismatch {
                source_name,
                got: unmatched.join(", "),
            }
            .into());
        }
        println!("CA certificate matches --ca-fingerprint");
    } else if !stored {
        eprintln!(
            "warning: the CA certificate was trusted on first use, without verification: \
             compare the fingerprint above with the CA's (on the CA: `openssl x509 -noout \
             -fingerprint -sha256 -in $(puppet config print cacert)`), or pass \
             --ca-fingerprint to pin it"
        );
    }

    layout.create_dirs()?;
    if !stored {
        layout::write_new(&layout.ca, &ca_pem, layout::PUBLIC_MODE)?;
    }
    let (key, reused) = own_key(&layout)?;
    let authority = Authority::verified(&args.ca, &ca_pem)?;
    let request = match std::fs::read_to_string(&layout.request) {
        // The CA may hold this very request already: send the same again.
        Ok(stored) if reused => stored,
        _ => {
            // A request left without its key is stale: its key is gone.
            if layout.request.exists() {
                std::fs::remove_file(&layout.request)
                    .with_context(|| format!("removing {}", layout.request.display()))?;
            }
            let request = request(&identity, &key)?;
            layout::write_new(&layout.request, request.as_bytes(), layout::PUBLIC_MODE)?;
            request
        }
    };
    match authority.submit(&identity, &request).await? {
        Submitted::Accepted => println!(
            "submitted the certificate request for {identity} to {}",
            authority.base()
        ),
        Submitted::AlreadyKnown(message) => {
            println!("the CA already knows {identity} ({message}); waiting for the certificate")
        }
    }

    let certificate = wait_signed(&authority, args, &identity).await?;
    let checked = verify::check_signed(
        certificate.as_bytes(),
        &ca_bundle,
        key.der_bytes(),
        &identity,
    )
    .map_err(|reason| EnrollError::BadCertificate {
        identity: identity.clone(),
        ca: authority.base().to_owned(),
        reason,
    })?;
    let pem = certificate_pem(&checked);
    layout::write_new(&layout.cert, pem.as_bytes(), layout::PUBLIC_MODE)?;
    Ok(Enrolled { identity, layout })
}

/// `-----BEGIN CERTIFICATE-----`, base64 in lines of 64, as OpenSSL writes it.
fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// The key left by an interrupted enroll (`true`), or a new RSA-2048 key (what Puppet agents use).
fn own_key(layout: &Layout) -> anyhow::Result<(rcgen::KeyPair, bool)> {
    match std::fs::read_to_string(&layout.key) {
        Ok(pem) => {
            println!(
                "reusing the private key {} of an earlier enroll that did not finish",
                layout.key.display()
            );
            let key = rcgen::KeyPair::from_pem(&pem).map_err(|error| {
                anyhow::anyhow!(
                    "{}: not a usable private key ({error}); remove it to start over",
                    layout.key.display()
                )
            })?;
            Ok((key, true))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = new_rsa_key()?;
            layout::write_new(
                &layout.key,
                key.serialize_pem().as_bytes(),
                layout::KEY_MODE,
            )?;
            Ok((key, false))
        }
        Err(error) => Err(error).with_context(|| format!("reading {}", layout.key.display())),
    }
}

/// A new RSA-2048 key. ring (the relay's only crypto provider) signs with RSA keys but cannot
/// make them, so the `rsa` crate generates it and rcgen loads its PKCS#8 form.
fn new_rsa_key() -> anyhow::Result<rcgen::KeyPair> {
    use rsa::pkcs8::EncodePrivateKey as _;
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
        .map_err(|error| anyhow::anyhow!("generating an RSA key: {error}"))?;
    let pem = key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|error| anyhow::anyhow!("encoding the new RSA key: {error}"))?;
    rcgen::KeyPair::from_pem(&pem)
        .map_err(|error| anyhow::anyhow!("loading the new RSA key: {error}"))
}

/// A PEM CSR whose subject is only `CN = identity` (what the Puppet CA expects).
fn request(identity: &str, key: &rcgen::KeyPair) -> anyhow::Result<String> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, identity);
    params
        .serialize_request(key)
        .and_then(|request| request.pem())
        .map_err(|error| anyhow::anyhow!("making the certificate request: {error}"))
}

/// Asks for the certificate now, then every `poll_interval`, until `max_wait` has passed.
async fn wait_signed(
    authority: &Authority,
    args: &EnrollArgs,
    identity: &str,
) -> anyhow::Result<String> {
    let start = Instant::now();
    let interval = humantime::format_duration(args.poll_interval);
    for attempt in 1u64.. {
        match authority.certificate(identity).await? {
            Fetched::Signed(pem) => return Ok(pem),
            Fetched::NotYet => {}
            Fetched::Unavailable(reason) => {
                eprintln!("warning: the CA could not be asked (try {attempt}): {reason}")
            }
        }
        if start.elapsed() + args.poll_interval > args.max_wait {
            break;
        }
        println!("waiting for the CA to sign {identity} (try {attempt}, next in {interval})");
        tokio::time::sleep(args.poll_interval).await;
    }
    Err(EnrollError::StillPending {
        identity: identity.to_owned(),
        ca: authority.base().to_owned(),
        waited: humantime::format_duration(Duration::from_millis(
            u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        ))
        .to_string(),
    }
    .into())
}

/// This host's name, the identity the relay defaults to as well.
fn host_name() -> String {
    hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_default()
}
