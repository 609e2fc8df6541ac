//! TLS for NATS connections: turns a validated `tls` stanza (`scheme: manual`/`file` or
//! `puppet`) into a rustls client config for mutual TLS, checking the files at start.
//!
//! Checks, each with its own [`TlsError`] naming the file: unreadable or missing file, no
//! certificate or key in it, a key that does not belong to the certificate, a certificate that
//! has expired or is not valid yet. A certificate not issued by the configured CA is only a
//! warning (the server may trust its issuer); a server certificate the CA does not verify fails
//! at connect time (see `nats`).
//!
//! **Invariant:** key material never appears in an error or a log line: errors carry paths and
//! the reason only, never file contents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::{CertificateError, ClientConfig, RootCertStore};

use crate::config::{TlsConfig, TlsScheme};

/// Why a `tls` stanza cannot be used. Every variant names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: cannot read: {reason}")]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{what} {path}: no PEM {expected} found in it ({reason})")]
    NoPem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
        reason: String,
    },
    #[error("CA {path}: not usable as a trust anchor: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("private key {key} does not belong to the certificate {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("private key {key}: not usable with certificate {cert}: {reason}")]
    BadKey {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("certificate {path} has expired ({reason})")]
    Expired { path: PathBuf, reason: String },
    #[error("certificate {path} is not valid yet ({reason})")]
    NotYetValid { path: PathBuf, reason: String },
}

/// A loaded client TLS setup: the rustls config and what it was made of, for messages.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The rustls config (TLS 1.2 minimum, the CA file as the only roots, the client certificate).
    pub config: Arc<ClientConfig>,
    /// The CA file, named in connect-time certificate errors.
    pub ca: PathBuf,
    /// The client certificate file.
    pub cert: PathBuf,
    /// A problem worth a warning that does not prevent use (e.g. own certificate from another CA).
    pub warning: Option<String>,
}

/// Reads and checks the files of `tls` and builds a client config for mutual TLS.
/// Makes ring the process' rustls crypto provider (idempotent). Every TLS client of the relay (NATS,
/// HTTP targets, sinks, the CA) uses ring, so only one provider is compiled; call this before
/// building a `reqwest` client, which otherwise refuses to build.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn client_config(tls: &TlsConfig) -> Result<ClientTls, TlsError> {
    let files = tls.files();
    let (ca_what, cert_what, key_what) = match tls.scheme() {
        TlsScheme::Manual => ("CA", "certificate", "private key"),
        TlsScheme::Puppet => (
            "CA (Puppet certs/ca.pem)",
            "certificate (Puppet certs/<identity>.pem)",
            "private key (Puppet private_keys/<identity>.pem)",
        ),
    };
    let cas = certificates(&files.ca, ca_what)?;
    let chain = certificates(&files.cert, cert_what)?;
    let key = private_key(&files.key, key_what)?;

    let mut roots = RootCertStore::empty();
    for ca in &cas {
        roots.add(ca.clone()).map_err(|e| TlsError::BadCa {
            path: files.ca.clone(),
            reason: e.to_string(),
        })?;
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let warning = check_validity(&files.ca, &files.cert, &chain, roots.clone(), &provider)?;

    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::BadCa {
            path: files.ca.clone(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots);
    let config = builder
        .with_client_auth_cert(chain, key)
        .map_err(|error| match error {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch {
                    cert: files.cert.clone(),
                    key: files.key.clone(),
                }
            }
            other => TlsError::BadKey {
                cert: files.cert.clone(),
                key: files.key.clone(),
                reason: other.to_string(),
            },
        })?;
    Ok(ClientTls {
        config: Arc::new(config),
        ca: files.ca,
        cert: files.cert,
        warning,
    })
}

/// Verifies the own certificate against the CA now: expiry is an error, anything else a warning.
fn check_validity(
    ca: &Path,
    cert: &Path,
    chain: &[CertificateDer<'static>],
    roots: Arc<RootCertStore>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Option<String>, TlsError> {
    let verifier =
        match rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .build()
        {
            Ok(verifier) => verifier,
            Err(e) => {
                return Err(TlsError::BadCa {
                    path: ca.to_path_buf(),
                    reason: e.to_string(),
                })
            }
        };
    let (end_entity, intermediates) = chain
        .split_first()
        .expect("certificates() returns at least one certificate");
    let outcome = verifier.verify_client_cert(end_entity, intermediates, UnixTime::now());
    match outcome {
        Ok(_) => Ok(None),
        Err(rustls::Error::InvalidCertificate(error)) => match error {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                Err(TlsError::Expired {
                    path: cert.to_path_buf(),
                    reason: error.to_string(),
                })
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Err(TlsError::NotYetValid {
                    path: cert.to_path_buf(),
                    reason: error.to_string(),
                })
            }
            CertificateError::UnknownIssuer => Ok(Some(format!(
                "certificate {} is not issued by the CA in {}: the NATS server must trust its \
                 issuer",
                cert.display(),
                ca.display()
            ))),
            other => Ok(Some(format!(
                "certificate {} does not verify against the CA in {}: {other}",
                cert.display(),
                ca.display()
            ))),
        },
        Err(other) => Ok(Some(format!(
            "certificate {} does not verify against the CA in {}: {other}",
            cert.display(),
            ca.display()
        ))),
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Unreadable {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Every certificate in a PEM file; at least one.
pub(crate) fn certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what)?;
    let no_pem = |reason: String| TlsError::NoPem {
        what,
        path: path.to_path_buf(),
        expected: "CERTIFICATE",
        reason,
    };
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| no_pem(pem_reason(&e)))?;
    if certificates.is_empty() {
        return Err(no_pem("the file holds no certificate".into()));
    }
    Ok(certificates)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn private_key(
    path: &Path,
    what: &'static str,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path, what)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::NoPem {
        what,
        path: path.to_path_buf(),
        expected: "PRIVATE KEY",
        reason: pem_reason(&e),
    })
}

/// A PEM error's reason without any of the file's content.
fn pem_reason(error: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::NoItemsFound => "the file holds none".into(),
        Error::MissingSectionEnd { .. } => "a PEM section has no END line".into(),
        Error::IllegalSectionStart { line } => {
            format!("a malformed BEGIN line ({} bytes)", line.len())
        }
        Error::Base64Decode(_) => "invalid base64 in a PEM section".into(),
        Error::Io(e) => e.to_string(),
        _ => "malformed PEM".into(),
    }
}
