//! The conversation with a Puppet CA over its HTTP API (`/puppet-ca/v1/…`, environment
//! `production`): fetch the CA certificate, submit a CSR, fetch the signed certificate.
//!
//! **Invariant:** only [`Authority::unverified`] skips server verification, and it is used for
//! nothing but fetching the CA certificate, which the caller fingerprints before trusting it.
//! Every other request goes through [`Authority::verified`], whose only root is that CA.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::StatusCode;

use crate::sink::http::error_chain;

/// The Puppet CA's answers may take a while under load, but never minutes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The port of a `--ca` given without one.
const DEFAULT_PORT: u16 = 8140;

/// What the CA said to a submitted CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Accepted for signing.
    Accepted,
    /// The CA already holds a request or a certificate for this name (its words).
    AlreadyKnown(String),
}

/// What fetching the certificate found.
#[derive(Debug)]
pub enum Fetched {
    /// The signed certificate (PEM).
    Signed(String),
    /// 404: not signed yet.
    NotYet,
    /// The CA could not be asked or answered a server error: worth asking again.
    Unavailable(String),
}

/// A client for one Puppet CA.
pub struct Authority {
    /// `https://host:port`.
    base: url::Url,
    client: reqwest::Client,
}

impl Authority {
    /// A client that accepts any server certificate: only for fetching the CA certificate the
    /// first time (trust on first use).
    pub fn unverified(ca: &str) -> anyhow::Result<Authority> {
        let client = builder()
            .tls_danger_accept_invalid_certs(true)
            .build()
            .context("building the HTTP client for the Puppet CA")?;
        Ok(Authority {
            base: base_url(ca)?,
            client,
        })
    }

    /// A client that accepts only servers whose certificate `ca_pem` (the CA bundle) verifies.
    pub fn verified(ca: &str, ca_pem: &[u8]) -> anyhow::Result<Authority> {
        let roots =
            reqwest::Certificate::from_pem_bundle(ca_pem).context("reading the CA certificate")?;
        let client = builder()
            .tls_certs_only(roots)
            .build()
            .context("building the HTTP client for the Puppet CA")?;
        Ok(Authority {
            base: base_url(ca)?,
            client,
        })
    }

    /// `https://host:port`, for messages.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `GET /puppet-ca/v1/certificate/ca`: the CA certificate bundle (PEM).
    pub async fn ca_certificate(&self) -> anyhow::Result<String> {
        let url = self.url("certificate", "ca");
        let response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(reqwest::Error::without_url)
            .with_context(|| format!("fetching the CA certificate from {url}"))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .with_context(|| format!("reading the CA certificate from {url}"))?;
        anyhow::ensure!(
            status.is_success(),
            "fetching the CA certificate from {url}: {status}: {}",
            body.trim()
        );
        Ok(body)
    }

    /// `PUT /puppet-ca/v1/certificate_request/<identity>` with the PEM CSR.
    pub async fn submit(&self, identity: &str, request_pem: &str) -> anyhow::Result<Submitted> {
        let url = self.url("certificate_request", identity);
        let response = self
            .client
            .put(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(request_pem.to_owned())
            .send()
            .await
            .map_err(reqwest::Error::without_url)
            .with_context(|| format!("submitting the certificate request to {url}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let message = body.trim().to_owned();
        if status.is_success() {
            return Ok(Submitted::Accepted);
        }
        // Puppet: "<name> already has a requested certificate; ignoring certificate request"
        // (or "... a signed certificate ..."): what an interrupted earlier enroll leaves.
        if status == StatusCode::BAD_REQUEST && message.contains("already has") {
            return Ok(Submitted::AlreadyKnown(message));
        }
        anyhow::bail!("the Puppet CA refused the certificate request ({status}): {message}")
    }

    /// `GET /puppet-ca/v1/certificate/<identity>`.
    pub async fn certificate(&self, identity: &str) -> anyhow::Result<Fetched> {
        let url = self.url("certificate", identity);
        let response = match self.client.get(url.clone()).send().await {
            Ok(response) => response,
            Err(error) => return Ok(Fetched::Unavailable(error_chain(&error.without_url()))),
        };
        let status = response.status();
        let body = match response.text().await {
            Ok(body) => body,
            Err(error) => return Ok(Fetched::Unavailable(error_chain(&error))),
        };
        match status {
            StatusCode::OK => Ok(Fetched::Signed(body)),
            StatusCode::NOT_FOUND => Ok(Fetched::NotYet),
            status if status.is_server_error() => {
                Ok(Fetched::Unavailable(format!("{status}: {}", body.trim())))
            }
            status => anyhow::bail!("fetching {url}: {status}: {}", body.trim()),
        }
    }

    fn url(&self, kind: &str, name: &str) -> url::Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an https URL has path segments")
            .extend(["puppet-ca", "v1", kind, name]);
        url.set_query(Some("environment=production"));
        url
    }
}

fn builder() -> reqwest::ClientBuilder {
    crate::tls::install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(concat!("promrelay/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
}

/// `host:port` (or `host`, port 8140) as `https://host:port`.
fn base_url(ca: &str) -> anyhow::Result<url::Url> {
    let with_port = if ca.rsplit_once(':').is_some_and(|(host, port)| {
        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(':')
    }) {
        ca.to_owned()
    } else {
        format!("{ca}:{DEFAULT_PORT}")
    };
    let url = url::Url::parse(&format!("https://{with_port}/"))
        .with_context(|| format!("--ca {ca}: not a HOST:PORT"))?;
    anyhow::ensure!(
        url.host().is_some() && url.path() == "/" && url.username().is_empty(),
        "--ca {ca}: not a HOST:PORT"
    );
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_addresses_get_the_puppet_port_when_they_have_none() {
        let cases = [
            ("puppet:8140", "https://puppet:8140/"),
            ("puppet", "https://puppet:8140/"),
            ("127.0.0.1:18140", "https://127.0.0.1:18140/"),
            ("[::1]:8141", "https://[::1]:8141/"),
        ];
        for (given, expected) in cases {
            assert_eq!(base_url(given).expect(given).as_str(), expected);
        }
        assert!(base_url("puppet/x").is_err());
    }

    #[test]
    fn urls_name_the_production_environment_and_escape_the_name() {
        let authority = Authority::unverified("puppet:8140").expect("client");
        assert_eq!(
            authority.url("certificate_request", "site1").as_str(),
            "https://puppet:8140/puppet-ca/v1/certificate_request/site1?environment=production"
        );
        assert_eq!(
            authority.url("certificate", "a?b").as_str(),
            "https://puppet:8140/puppet-ca/v1/certificate/a%3Fb?environment=production"
        );
    }
}
