//! NATS connections: server lists, connect options, the reconnect backoff and state-change logs.
//!
//! Both the publisher and the receiver connect through [`connect`], which never fails because the
//! server is down: the client connects in the background and reconnects forever, with the
//! original's jittered backoff (0.5, 0.75, 1, 1.5, 2 … 5 s, each ×0.5–1.5). Connection state
//! changes are logged once each, never per attempt.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::{ConnectOptions, ServerAddr};

use crate::config::{NatsAuth, TlsConfig};
use rand::Rng;

/// The original's reconnect schedule, in seconds, before jitter; the last step repeats.
const BACKOFF_STEPS: [f64; 8] = [0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0];

/// Delay before the `attempt`-th retry (0-based), jittered ×0.5–1.5.
pub fn backoff_delay(attempt: usize) -> Duration {
    let base = BACKOFF_STEPS[attempt.min(BACKOFF_STEPS.len() - 1)];
    let factor = rand::thread_rng().gen_range(0.5..1.5);
    Duration::from_secs_f64(base * factor)
}

/// A retry counter over [`backoff_delay`].
#[derive(Debug, Default)]
pub struct Backoff {
    attempt: usize,
}

impl Backoff {
    pub fn next_delay(&mut self) -> Duration {
        let delay = backoff_delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn failing(&self) -> bool {
        self.attempt > 0
    }
}

/// Parses the configured URLs into server addresses (a comma-separated string does not connect
/// in async-nats: each URL must be its own address).
pub fn server_addrs(urls: &[String]) -> anyhow::Result<Vec<ServerAddr>> {
    urls.iter()
        .flat_map(|u| u.split(','))
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<ServerAddr>()
                .with_context(|| format!("invalid NATS URL {u:?}"))
        })
        .collect()
}

/// What secures one NATS connection besides its URLs: client TLS and credentials.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// Mutual TLS, loaded and checked by [`crate::tls::client_config`].
    pub tls: Option<crate::tls::ClientTls>,
    /// Credentials (user/password, token, nkey seed file, creds file).
    pub auth: NatsAuth,
}

impl Security {
    /// Loads the TLS files of `tls` (if any): every file problem is an error naming the file.
    /// `section` (`poller_stream`, `receiver_stream`, `management`) prefixes the messages.
    pub fn load(
        section: &str,
        tls: Option<&TlsConfig>,
        auth: &NatsAuth,
    ) -> anyhow::Result<Security> {
        let tls = match tls {
            Some(tls) => {
                let loaded = crate::tls::client_config(tls)
                    .map_err(|e| anyhow::anyhow!("{section}.tls: {e}"))?;
                if let Some(warning) = &loaded.warning {
                    tracing::warn!("{section}.tls: {warning}");
                }
                Some(loaded)
            }
            None => None,
        };
        Ok(Security {
            tls,
            auth: auth.clone(),
        })
    }
}

/// Connects with `security` (TLS and credentials, `Security::default()` for plain text without
/// credentials); `role` names the connection in logs and on the server. The security is a value
/// of the caller's, never a process-wide setting: two relays in one process connect each with
/// its own.
///
/// One attempt is made first: a TLS or authentication failure then is an error (a clear one,
/// naming the CA or the certificate), since retrying cannot fix it. A server that is merely
/// unreachable is not: the client then connects in the background and reconnects forever.
pub async fn connect(
    urls: &[String],
    role: &'static str,
    identity: &str,
    security: &Security,
) -> anyhow::Result<async_nats::Client> {
    let addrs = server_addrs(urls)?;
    anyhow::ensure!(!addrs.is_empty(), "no NATS URL configured for the {role}");
    let shown = urls.join(",");
    match options(role, identity, &shown, security)
        .await?
        .connect(addrs.clone())
        .await
    {
        Ok(client) => return Ok(client),
        Err(error) => {
            if let Some(fatal) = fatal_connect_error(&error, security) {
                anyhow::bail!("connecting the {role} to NATS at {shown}: {fatal}");
            }
            tracing::warn!(role, servers = %shown,
                "NATS not reachable yet ({error}); connecting in the background");
        }
    }
    options(role, identity, &shown, security)
        .await?
        .retry_on_initial_connect()
        .connect(addrs)
        .await
        .with_context(|| format!("connecting the {role} to NATS at {shown}"))
}

/// A connect error that retrying cannot fix, explained; `None` for an unreachable server.
fn fatal_connect_error(error: &async_nats::ConnectError, security: &Security) -> Option<String> {
    use async_nats::ConnectErrorKind;
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text = format!("{text}: {inner_text}");
        }
        source = inner.source();
    }
    let tls = security.tls.as_ref();
    match error.kind() {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            Some(format!(
                "the server refused the credentials ({})",
                auth_kind(&security.auth)
            ))
        }
        _ if text.contains("invalid peer certificate") => Some(match tls {
            Some(tls) => format!(
                "the server's certificate is not accepted with the CA in {} ({text})",
                tls.ca.display()
            ),
            None => format!("the server's certificate is not accepted ({text})"),
        }),
        _ if text.contains("received fatal alert") => Some(match tls {
            Some(tls) => format!(
                "the server rejected the client certificate {} ({text})",
                tls.cert.display()
            ),
            None => format!(
                "the server rejected the TLS connection; it may require a client \
                 certificate: configure tls ({text})"
            ),
        }),
        ConnectErrorKind::Tls => Some(text),
        _ => None,
    }
}

fn auth_kind(auth: &NatsAuth) -> String {
    match auth {
        NatsAuth::None => "no credentials configured".into(),
        NatsAuth::UserPassword { user, .. } => format!("user {user:?} with a password"),
        NatsAuth::Token(_) => "a token".into(),
        NatsAuth::NkeySeedFile(path) => format!("the nkey seed in {}", path.display()),
        NatsAuth::CredsFile(path) => format!("the credentials file {}", path.display()),
    }
}

/// The connect options of one connection (without `retry_on_initial_connect`).
async fn options(
    role: &'static str,
    identity: &str,
    shown: &str,
    security: &Security,
) -> anyhow::Result<ConnectOptions> {
    let events = shown.to_owned();
    let last_error = Arc::new(Mutex::new(String::new()));
    let mut options = ConnectOptions::new()
        .name(format!("promrelay-{role}-{identity}"))
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(|attempt| backoff_delay(attempt.saturating_sub(1)))
        .event_callback(move |event| {
            let shown = events.clone();
            let last_error = last_error.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        last_error
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .clear();
                        tracing::info!(role, servers = %shown, "NATS connected")
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(role, servers = %shown, "NATS disconnected; reconnecting")
                    }
                    async_nats::Event::ClientError(error) => {
                        // Once per distinct error, not per attempt.
                        let text = error.to_string();
                        let mut last = last_error
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner());
                        if *last != text {
                            tracing::warn!(role, servers = %shown, "NATS connection failing: {text}");
                            *last = text;
                        }
                    }
                    other => tracing::debug!(role, "NATS event: {other}"),
                }
            }
        });
    if let Some(tls) = &security.tls {
        options = options
            .require_tls(true)
            .tls_client_config((*tls.config).clone());
    }
    options = match &security.auth {
        NatsAuth::None => options,
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.expose().to_owned())
        }
        NatsAuth::Token(token) => options.token(token.expose().to_owned()),
        NatsAuth::NkeySeedFile(path) => {
            let seed = std::fs::read_to_string(path).with_context(|| {
                format!("{role}: reading the nkey seed file {}", path.display())
            })?;
            let seed = seed
                .lines()
                .map(str::trim)
                .find(|line| line.starts_with("SU"))
                .with_context(|| {
                    format!(
                        "{role}: the nkey seed file {} holds no user seed (a line starting with SU)",
                        path.display()
                    )
                })?
                .to_owned();
            options.nkey(seed)
        }
        NatsAuth::CredsFile(path) => options.credentials_file(path).await.with_context(|| {
            format!(
                "{role}: reading the NATS credentials file {}",
                path.display()
            )
        })?,
    };
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_separated_and_listed_urls_become_separate_addresses() {
        let addrs = server_addrs(&[
            "nats://a:4222, nats://b:4222".into(),
            "nats://c:4222".into(),
        ])
        .expect("valid");
        assert_eq!(addrs.len(), 3);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_not_an_error_at_start() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let url = format!("nats://127.0.0.1:{port}");
        let client = tokio::time::timeout(
            Duration::from_secs(30),
            connect(&[url], "unreachable-test", "site1", &Security::default()),
        )
        .await
        .expect("connect returns without waiting for the server")
        .expect("an unreachable server is retried in the background");
        assert_ne!(
            client.connection_state(),
            async_nats::connection::State::Connected
        );
    }

    #[test]
    fn backoff_stays_within_the_jittered_schedule() {
        for attempt in 0..20 {
            let d = backoff_delay(attempt).as_secs_f64();
            let base = BACKOFF_STEPS[attempt.min(BACKOFF_STEPS.len() - 1)];
            assert!(d >= base * 0.5 && d <= base * 1.5, "attempt {attempt}: {d}");
        }
    }
}
