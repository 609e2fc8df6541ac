//! Clients of a monitor port under a web configuration, from the relay's own machine: the self
//! job (this process scraping its own `/metrics`) and the CLI (`pause`, `resume`, `info`).
//!
//! Both trust exactly the port's own certificate (`cert_file`, read from the same web config):
//! they connect to 127.0.0.1, a name the certificate need not carry. Where the port asks for
//! client certificates they present that same certificate, which the port accepts from whoever
//! holds its key. The self job authenticates with a random per-process credential, never
//! written anywhere; the CLI with the basic auth user and password it is given.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::WebSettings;

/// The self job's credential: random per process, only ever in this process's memory.
static SELF_CREDENTIAL: LazyLock<String> = LazyLock::new(|| {
    let bytes: [u8; 32] = rand::random();
    format!("Bearer promrelay-self-{}", hex::encode(bytes))
});

/// True for the `Authorization` value of this process's self job.
pub(super) fn is_self_credential(value: &str) -> bool {
    let (given, expected) = (value.as_bytes(), SELF_CREDENTIAL.as_bytes());
    let mut difference = u8::from(given.len() != expected.len());
    for (index, byte) in expected.iter().enumerate() {
        difference |= byte ^ given.get(index).copied().unwrap_or(0);
    }
    difference == 0
}

/// Basic auth credentials the CLI sends.
#[derive(Clone)]
pub struct LocalCredentials {
    pub user: String,
    pub password: String,
}

/// The self job's client: HTTPS to the port's own certificate when TLS is on, with the
/// per-process credential when basic auth is on. Returns the client and the URL scheme.
pub fn self_job_client(web: &WebSettings) -> anyhow::Result<(reqwest::Client, &'static str)> {
    let mut headers = HeaderMap::new();
    if !web.users.is_empty() {
        let mut value = HeaderValue::from_str(&SELF_CREDENTIAL)
            .map_err(|e| anyhow::anyhow!("the self job's credential is not a header: {e}"))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    crate::tls::install_crypto_provider();
    let builder = reqwest::Client::builder()
        .user_agent(concat!("promrelay/", env!("CARGO_PKG_VERSION")))
        .gzip(true)
        .connect_timeout(Duration::from_secs(5))
        .default_headers(headers);
    build(builder, web, "the self job")
}

/// The CLI's client for the monitor port of the relay whose web config is `web`.
pub fn local_client(
    web: &WebSettings,
    credentials: Option<&LocalCredentials>,
) -> anyhow::Result<(reqwest::Client, &'static str)> {
    let mut headers = HeaderMap::new();
    if let Some(credentials) = credentials {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", credentials.user, credentials.password));
        let mut value = HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|e| anyhow::anyhow!("the basic auth user or password is not usable: {e}"))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    } else if !web.users.is_empty() {
        anyhow::bail!(
            "the monitor port requires basic auth (basic_auth_users in web_config_file {}): \
             give --web-user and --web-password-file (or PROMRELAY_WEB_PASSWORD)",
            web.path.display()
        );
    }
    crate::tls::install_crypto_provider();
    let builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .default_headers(headers);
    build(builder, web, "the CLI")
}

fn build(
    builder: reqwest::ClientBuilder,
    web: &WebSettings,
    who: &str,
) -> anyhow::Result<(reqwest::Client, &'static str)> {
    let Some(tls) = &web.tls else {
        let client = builder
            .build()
            .map_err(|e| anyhow::anyhow!("building the HTTP client of {who}: {e}"))?;
        return Ok((client, "http"));
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = OwnCertificate {
        own: tls.chain[0].clone(),
        algorithms: provider.signature_verification_algorithms,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| anyhow::anyhow!("TLS settings of {who}: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(tls.chain.clone(), tls.key.clone_key())
        .map_err(|e| {
            anyhow::anyhow!(
                "web_config_file {}: the port's certificate and key cannot be presented by \
                 {who}: {e}",
                web.path.display()
            )
        })?;
    let client = builder
        .tls_backend_preconfigured(config)
        .build()
        .map_err(|e| anyhow::anyhow!("building the HTTPS client of {who}: {e}"))?;
    Ok((client, "https"))
}

/// Trusts one certificate, the monitor port's own, whatever name it carries.
#[derive(Debug)]
struct OwnCertificate {
    own: CertificateDer<'static>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for OwnCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.own.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the monitor port presents another certificate than its web config's cert_file"
                    .into(),
            ))
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
