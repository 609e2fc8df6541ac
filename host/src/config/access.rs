//! The typed config of who may connect and how: NATS `tls`, `management`, and the HTTP client
//! settings (Prometheus' `tls_config`, `basic_auth`, `authorization`) of jobs and sinks.

use std::path::PathBuf;

use super::types::*;

/// A `tls` stanza for NATS connections.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    /// `identity`: the certificate name. Default: the top-level `identity`.
    pub identity: String,
    /// `scheme` and its files.
    pub source: TlsSource,
}

/// The `scheme` of a [`TlsConfig`] with its own keys.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsSource {
    /// `scheme: manual` (alias `file`): explicit PEM files.
    Manual {
        /// `ca`: CA certificate(s).
        ca: PathBuf,
        /// `cert`: this client's certificate.
        cert: PathBuf,
        /// `key`: this client's private key.
        key: PathBuf,
        /// `cache`: a directory for cached certificates (kept from the original), optional.
        cache: Option<PathBuf>,
    },
    /// `scheme: puppet`: files in Puppet's layout under `ssl_dir`.
    Puppet {
        /// `ssl_dir`: default [`DEFAULT_PUPPET_SSL_DIR`].
        ssl_dir: PathBuf,
    },
}

/// Which scheme a [`TlsConfig`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsScheme {
    /// `manual` or `file`.
    Manual,
    /// `puppet`.
    Puppet,
}

/// The three PEM files a TLS connection needs, wherever the scheme keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s).
    pub ca: PathBuf,
    /// Client certificate.
    pub cert: PathBuf,
    /// Client private key.
    pub key: PathBuf,
}

impl TlsConfig {
    /// The scheme.
    pub fn scheme(&self) -> TlsScheme {
        match self.source {
            TlsSource::Manual { .. } => TlsScheme::Manual,
            TlsSource::Puppet { .. } => TlsScheme::Puppet,
        }
    }

    /// The CA, certificate and key paths (Puppet: `certs/ca.pem`, `certs/<identity>.pem`,
    /// `private_keys/<identity>.pem` under `ssl_dir`).
    pub fn files(&self) -> TlsFiles {
        match &self.source {
            TlsSource::Manual { ca, cert, key, .. } => TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            },
            TlsSource::Puppet { ssl_dir } => TlsFiles {
                ca: ssl_dir.join("certs").join("ca.pem"),
                cert: ssl_dir.join("certs").join(format!("{}.pem", self.identity)),
                key: ssl_dir
                    .join("private_keys")
                    .join(format!("{}.pem", self.identity)),
            },
        }
    }
}

/// `management`: the circuit breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagementConfig {
    /// `name`: the component name in management subjects and lifecycle events. Default `promrelay`.
    pub name: String,
    /// `brokers`: NATS URLs of the management network; one, a comma string or a list. May be
    /// empty (HTTP API only).
    pub brokers: Vec<String>,
    /// `logfile`: the original's management log file, optional.
    pub logfile: Option<PathBuf>,
    /// `loglevel`: `error`, `warn`, `info` or `debug`. Default `info`.
    pub loglevel: LogLevel,
    /// `auth`: who may do what.
    pub auth: ManagementAuth,
    /// `tls` for the brokers, or the top-level one when absent.
    pub tls: Option<TlsConfig>,
    /// `token`: bearer token required by the changing HTTP actions (pause, resume, flip).
    pub token: Option<Secret>,
}

/// `management.auth`: regular expressions (unanchored, `regex` crate syntax) over the caller's name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ManagementAuth {
    /// `full`: callers allowed every action.
    pub full: Vec<String>,
    /// `read_only`: callers allowed `ping` and `info`.
    pub read_only: Vec<String>,
    /// `insecure`: allow every caller every action. Default false.
    pub insecure: bool,
}

/// HTTP client settings of a job's targets, the Pushgateway or a remote_write endpoint, with the
/// key names of Prometheus.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HttpClientConfig {
    /// `tls_config`.
    pub tls: Option<HttpTlsConfig>,
    /// `basic_auth` (exclusive with `authorization`).
    pub basic_auth: Option<BasicAuth>,
    /// `authorization` (exclusive with `basic_auth`).
    pub authorization: Option<Authorization>,
}

impl HttpClientConfig {
    /// True when nothing is set (plain client).
    pub fn is_default(&self) -> bool {
        self == &HttpClientConfig::default()
    }
}

/// Prometheus' `tls_config`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HttpTlsConfig {
    /// `ca_file`: CA certificate(s) to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// `cert_file`: client certificate (with `key_file`).
    pub cert_file: Option<PathBuf>,
    /// `key_file`: client key (with `cert_file`).
    pub key_file: Option<PathBuf>,
    /// `server_name`: name checked in the server's certificate.
    pub server_name: Option<String>,
    /// `insecure_skip_verify`: do not verify the server. Default false.
    pub insecure_skip_verify: bool,
}

/// Prometheus' `basic_auth`.
#[derive(Debug, Clone, PartialEq)]
pub struct BasicAuth {
    /// `username`.
    pub username: String,
    /// `password` or `password_file`; `None`: empty password.
    pub password: Option<SecretSource>,
}

/// Prometheus' `authorization`.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorization {
    /// `type`: default `Bearer`.
    pub kind: String,
    /// `credentials` or `credentials_file`.
    pub credentials: SecretSource,
}
