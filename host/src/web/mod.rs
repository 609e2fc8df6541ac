//! The monitor port's web configuration file (`web_config_file:`), in the format of Prometheus'
//! `--web.config.file` (exporter-toolkit): `tls_server_config` makes the port serve HTTPS,
//! `basic_auth_users` (user: bcrypt hash) makes every endpoint require basic auth.
//!
//! `load` reads and checks the whole file (keys, versions, certificate, key, client CA, hashes)
//! into [`WebSettings`]; `server` serves a router with them (the TLS listener and the auth
//! middleware); `client` builds the clients that talk to such a port from this process (the self
//! job) and from the CLI (`pause`, `resume`, `info`).
//!
//! Relative paths in the file are resolved against the file's directory, as Prometheus does.
//!
//! **Invariant:** key material, passwords and hashes never appear in an error or a log line;
//! errors carry the file, the key and the reason.

mod client;
mod server;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use client::{local_client, self_job_client, LocalCredentials};
pub use server::serve;

/// The file as written; every key of exporter-toolkit that promrelay supports, unknown keys
/// refused (a misspelt `client_auth_type` must not silently mean "no client certificates").
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    http_server_config: Option<HttpFile>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    /// Accepted for compatibility; the monitor port speaks HTTP/1.1 only.
    #[allow(dead_code)]
    http2: Option<bool>,
}

/// `client_auth_type`, with exporter-toolkit's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `NoClientCert` (the default): no certificate is asked for.
    None,
    /// `RequestClientCert`: asked for, not required, not verified.
    Request,
    /// `RequireAnyClientCert`: required, not verified.
    RequireAny,
    /// `VerifyClientCertIfGiven`: verified against `client_ca_file` when one is sent.
    VerifyIfGiven,
    /// `RequireAndVerifyClientCert`: required and verified against `client_ca_file`.
    RequireAndVerify,
}

impl ClientAuth {
    fn parse(text: &str) -> Option<ClientAuth> {
        Some(match text {
            "" | "NoClientCert" => ClientAuth::None,
            "RequestClientCert" => ClientAuth::Request,
            "RequireAnyClientCert" => ClientAuth::RequireAny,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
            _ => return None,
        })
    }

    fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify
        )
    }

    fn mandatory(self) -> bool {
        matches!(self, ClientAuth::RequireAny | ClientAuth::RequireAndVerify)
    }
}

/// The checked contents of a web configuration file.
pub struct WebSettings {
    /// The file, for messages.
    pub path: PathBuf,
    /// `tls_server_config`: `None` serves plain HTTP.
    pub tls: Option<ServerTls>,
    /// `basic_auth_users`: user → bcrypt hash. Empty: no authentication.
    pub users: BTreeMap<String, String>,
}

/// A loaded `tls_server_config`.
pub struct ServerTls {
    /// The rustls server config (the port's certificate, versions, client verification).
    pub config: Arc<rustls::ServerConfig>,
    /// The port's own certificate chain and key: the self job and the local CLI pin the
    /// certificate and, where client certificates are asked for, present it.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub client_auth: ClientAuth,
}

impl std::fmt::Debug for WebSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSettings")
            .field("path", &self.path)
            .field("tls", &self.tls.as_ref().map(|tls| tls.client_auth))
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Reads and checks the web configuration file at `path`. The error names the file, the key
/// and what to do.
pub fn load(path: &Path) -> anyhow::Result<WebSettings> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("web_config_file {shown}: cannot read: {e}"))?;
    let file: File = if text.trim().is_empty() {
        File::default()
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "web_config_file {shown}: {e} (the format is Prometheus' web configuration \
                 file: tls_server_config, http_server_config, basic_auth_users)"
            )
        })?
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let fail =
        |key: &str, message: String| anyhow::anyhow!("web_config_file {shown}: {key}: {message}");
    let mut users = BTreeMap::new();
    for (user, hash) in file.basic_auth_users {
        if user.is_empty() || user.contains(':') {
            return Err(fail(
                "basic_auth_users",
                format!("{user:?} is not a usable user name (empty or with a colon)"),
            ));
        }
        if hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(fail(
                &format!("basic_auth_users.{user}"),
                "is not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'` \
                 or Python's bcrypt.hashpw)"
                    .into(),
            ));
        }
        users.insert(user, hash);
    }
    let _ = file.http_server_config;
    let tls = match file.tls_server_config {
        Some(tls) => Some(server_tls(tls, base).map_err(|(key, message)| fail(&key, message))?),
        None => None,
    };
    Ok(WebSettings {
        path: path.to_path_buf(),
        tls,
        users,
    })
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_relative() {
        base.join(path)
    } else {
        path.to_path_buf()
    }
}

fn version(
    key: &str,
    text: &str,
) -> Result<&'static rustls::SupportedProtocolVersion, (String, String)> {
    match text {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err((
            key.to_owned(),
            format!("{text} is not supported (rustls speaks TLS12 and TLS13): use TLS12"),
        )),
        other => Err((
            key.to_owned(),
            format!("{other:?} is not a TLS version (TLS12 or TLS13)"),
        )),
    }
}

/// Builds the rustls server config of a `tls_server_config`; errors are (key, message).
fn server_tls(tls: TlsFile, base: &Path) -> Result<ServerTls, (String, String)> {
    const KEY: &str = "tls_server_config";
    let key = |name: &str| format!("{KEY}.{name}");
    let (Some(cert_file), Some(key_file)) = (&tls.cert_file, &tls.key_file) else {
        return Err((
            KEY.to_owned(),
            "cert_file and key_file are both required (the port's certificate and key, PEM)".into(),
        ));
    };
    let (cert_file, key_file) = (resolve(base, cert_file), resolve(base, key_file));
    let client_auth = match tls.client_auth_type.as_deref() {
        None => ClientAuth::None,
        Some(text) => ClientAuth::parse(text).ok_or_else(|| {
            (
                key("client_auth_type"),
                format!(
                    "{text:?} is not one of NoClientCert, RequestClientCert, \
                     RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
                ),
            )
        })?,
    };
    let min = version(
        &key("min_version"),
        tls.min_version.as_deref().unwrap_or("TLS12"),
    )?;
    let max = version(
        &key("max_version"),
        tls.max_version.as_deref().unwrap_or("TLS13"),
    )?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| {
                let number = u16::from(v.version);
                number >= u16::from(min.version) && number <= u16::from(max.version)
            })
            .collect();
    if versions.is_empty() {
        return Err((
            key("min_version"),
            "is above max_version: no TLS version is left".into(),
        ));
    }
    let file_error = |name: &str, error: crate::tls::TlsError| (key(name), error.to_string());
    let chain = crate::tls::certificates(&cert_file, "certificate")
        .map_err(|e| file_error("cert_file", e))?;
    let private_key =
        crate::tls::private_key(&key_file, "private key").map_err(|e| file_error("key_file", e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match (&tls.client_ca_file, client_auth.verifies()) {
        (Some(ca), _) => {
            let ca = resolve(base, ca);
            let mut roots = rustls::RootCertStore::empty();
            for certificate in crate::tls::certificates(&ca, "client CA")
                .map_err(|e| file_error("client_ca_file", e))?
            {
                roots.add(certificate).map_err(|e| {
                    (
                        key("client_ca_file"),
                        format!("{}: not usable as a trust anchor: {e}", ca.display()),
                    )
                })?;
            }
            Some(Arc::new(roots))
        }
        (None, true) => {
            return Err((
                key("client_ca_file"),
                format!(
                    "is required with client_auth_type {:?} (the CA that issues client \
                     certificates)",
                    tls.client_auth_type.as_deref().unwrap_or_default()
                ),
            ))
        }
        (None, false) => None,
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| (key("min_version"), e.to_string()))?;
    let builder = if client_auth == ClientAuth::None {
        builder.with_no_client_auth()
    } else {
        let verifier = server::ClientVerifier::new(
            client_auth,
            roots.filter(|_| client_auth.verifies()),
            chain[0].clone(),
            provider.clone(),
        )
        .map_err(|e| (key("client_ca_file"), e))?;
        builder.with_client_cert_verifier(Arc::new(verifier))
    };
    let mut config = builder
        .with_single_cert(chain.clone(), private_key.clone_key())
        .map_err(|e| {
            (
                key("key_file"),
                format!(
                    "{} is not usable with the certificate {}: {e}",
                    key_file.display(),
                    cert_file.display()
                ),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = tls.prefer_server_cipher_suites.unwrap_or(false);
    Ok(ServerTls {
        config: Arc::new(config),
        chain,
        key: private_key,
        client_auth,
    })
}

/// The web settings in force, shared by the monitor port and the daemon's reload: a SIGHUP
/// re-reads the file; a file that no longer loads keeps the running settings.
#[derive(Clone)]
pub struct Handle {
    path: PathBuf,
    current: Arc<ArcSwap<WebSettings>>,
}

impl Handle {
    /// Loads `path`; the error fails the start.
    pub fn load(path: &Path) -> anyhow::Result<Handle> {
        let settings = load(path)?;
        Ok(Handle {
            path: path.to_path_buf(),
            current: Arc::new(ArcSwap::from_pointee(settings)),
        })
    }

    /// The settings in force.
    pub fn current(&self) -> Arc<WebSettings> {
        self.current.load_full()
    }

    /// The file this handle reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file. TLS on or off cannot change while the port listens: that needs a
    /// restart, and the running settings stay.
    pub fn reload(&self) -> anyhow::Result<()> {
        let new = load(&self.path)?;
        let running = self.current();
        anyhow::ensure!(
            new.tls.is_some() == running.tls.is_some(),
            "web_config_file {}: adding or removing tls_server_config needs a restart; the \
             running web settings stay",
            self.path.display()
        );
        self.current.store(Arc::new(new));
        Ok(())
    }
}
