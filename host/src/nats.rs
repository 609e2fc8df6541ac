//! NATS connections: server lists, connect options, the reconnect backoff and state-change logs.
//!
//! Both the publisher and the receiver connect through [`connect`], which never fails because the
//! server is down: the client connects in the background and reconnects forever, with the
//! original's jittered backoff (0.5, 0.75, 1, 1.5, 2 … 5 s, each ×0.5–1.5). Connection state
//! changes are logged once each, never per attempt.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::{ConnectOptions, ServerAddr};
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

/// Connects in the background; `role` names the connection in logs and on the server.
pub async fn connect(
    urls: &[String],
    role: &'static str,
    identity: &str,
) -> anyhow::Result<async_nats::Client> {
    let addrs = server_addrs(urls)?;
    anyhow::ensure!(!addrs.is_empty(), "no NATS URL configured for the {role}");
    let shown = urls.join(",");
    let options = ConnectOptions::new()
        .name(format!("promrelay-{role}-{identity}"))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(|attempt| backoff_delay(attempt.saturating_sub(1)))
        .event_callback(move |event| {
            let shown = shown.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!(role, servers = %shown, "NATS connected")
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(role, servers = %shown, "NATS disconnected; reconnecting")
                    }
                    other => tracing::debug!(role, "NATS event: {other}"),
                }
            }
        });
    options
        .connect(addrs)
        .await
        .with_context(|| format!("connecting the {role} to NATS at {}", urls.join(",")))
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

    #[test]
    fn backoff_stays_within_the_jittered_schedule() {
        for attempt in 0..20 {
            let d = backoff_delay(attempt).as_secs_f64();
            let base = BACKOFF_STEPS[attempt.min(BACKOFF_STEPS.len() - 1)];
            assert!(d >= base * 0.5 && d <= base * 1.5, "attempt {attempt}: {d}");
        }
    }
}
