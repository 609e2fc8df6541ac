//! The HTTP clients of the sinks and the scrape targets: rustls, timeouts, and Prometheus' `tls_config`, `basic_auth` and
//! `authorization` from the config.
//!
//! Secrets given as files are read once, when the client is built (at start and on reload).
//!
//! **Invariant:** credentials only ever travel as marked-sensitive default headers of the one
//! client built for a sink; they are never logged.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};

use crate::config::{HttpClientConfig, SecretSource};

/// A plain client: rustls, connect and request timeouts, a `promrelay/<version>` user agent.
pub fn plain_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    builder(timeout)
        .build()
        .map_err(|error| anyhow::anyhow!("building the sinks' HTTP client: {error}"))
}

/// A client honouring a sink's `tls_config`, `basic_auth` and `authorization`.
pub fn client(timeout: Duration, http: &HttpClientConfig) -> anyhow::Result<reqwest::Client> {
    configure(builder(timeout), http)?
        .build()
        .map_err(|error| anyhow::anyhow!("building a sink's HTTP client: {error}"))
}

/// Applies `tls_config`, `basic_auth` and `authorization` to a client builder: the sinks' and the
/// scrape targets' clients share this. Files (CA, certificate, key, password, token) are read now.
pub fn configure(
    mut builder: reqwest::ClientBuilder,
    http: &HttpClientConfig,
) -> anyhow::Result<reqwest::ClientBuilder> {
    if let Some(tls) = &http.tls {
        if let Some(ca_file) = &tls.ca_file {
            let pem = read(ca_file, "tls_config.ca_file")?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("tls_config.ca_file {}", ca_file.display()))?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert_file), Some(key_file)) => {
                let mut pem = read(cert_file, "tls_config.cert_file")?;
                pem.push(b'\n');
                pem.extend(read(key_file, "tls_config.key_file")?);
                let identity = reqwest::Identity::from_pem(&pem).with_context(|| {
                    format!(
                        "tls_config.cert_file {} with key_file {}",
                        cert_file.display(),
                        key_file.display()
                    )
                })?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => anyhow::bail!("tls_config: cert_file and key_file must be given together"),
        }
        anyhow::ensure!(
            tls.server_name.is_none(),
            "tls_config.server_name is not supported yet: the name checked is the URL's host"
        );
        if tls.insecure_skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
    }
    let mut headers = HeaderMap::new();
    if let Some(basic) = &http.basic_auth {
        let password = match &basic.password {
            Some(source) => secret(source, "basic_auth.password")?,
            None => String::new(),
        };
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{password}", basic.username));
        headers.insert(AUTHORIZATION, sensitive(&format!("Basic {token}"))?);
    }
    if let Some(authorization) = &http.authorization {
        let credentials = secret(&authorization.credentials, "authorization.credentials")?;
        headers.insert(
            AUTHORIZATION,
            sensitive(&format!("{} {credentials}", authorization.kind))?,
        );
    }
    Ok(builder.default_headers(headers))
}

/// An error with its causes, one line: where reqwest keeps the interesting part (connection
/// refused, certificate not trusted, ...).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    crate::tls::install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(concat!("promrelay/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(90))
}

fn read(path: &Path, key: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {key} {}", path.display()))
}

fn secret(source: &SecretSource, key: &str) -> anyhow::Result<String> {
    match source {
        SecretSource::Inline(secret) => Ok(secret.expose().to_string()),
        SecretSource::File(path) => {
            let text = String::from_utf8(read(path, key)?)
                .with_context(|| format!("{key} file {} is not UTF-8", path.display()))?;
            Ok(text.trim_end_matches(['\r', '\n']).to_string())
        }
    }
}

fn sensitive(value: &str) -> anyhow::Result<HeaderValue> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        anyhow::anyhow!("credentials contain characters an HTTP header cannot carry")
    })?;
    header.set_sensitive(true);
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Authorization, BasicAuth, Secret};

    #[test]
    fn auth_settings_build_a_client_and_a_bad_file_is_named() {
        let http = HttpClientConfig {
            basic_auth: Some(BasicAuth {
                username: "u".into(),
                password: Some(SecretSource::Inline(Secret::new("p"))),
            }),
            ..HttpClientConfig::default()
        };
        client(Duration::from_secs(1), &http).expect("basic auth builds");
        let http = HttpClientConfig {
            authorization: Some(Authorization {
                kind: "Bearer".into(),
                credentials: SecretSource::File("/nonexistent/token".into()),
            }),
            ..HttpClientConfig::default()
        };
        let error = client(Duration::from_secs(1), &http).expect_err("missing file");
        assert!(
            format!("{error:#}").contains("/nonexistent/token"),
            "{error:#}"
        );
    }
}
