//! Management over NATS: request/reply on `promrelay.mgmt.<identity>.<action>` on the brokers of
//! `management.brokers` (with `management.tls`), actions `ping`, `info` (read-only) and `pause`,
//! `resume`, `flip` (full), each answering `{paused, identity}` as JSON.
//!
//! **What is trusted:** a NATS subscriber cannot see who published a message, so the caller
//! proves its name by signing: the request body is `{"caller": <nkey public key>, "timestamp":
//! <unix seconds>, "signature": <base64url ed25519 signature of "<subject>\n<timestamp>">}`. The
//! `auth.full` / `auth.read_only` regexes match the verified public key; a timestamp more than
//! [`MAX_SKEW`] away from now is refused, so a captured request cannot be replayed later or on
//! another subject. `auth.insecure: true` accepts every request unsigned and says so at start.
//!
//! **Invariant:** a request never blocks the daemon: the pause state is a watch channel.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use base64::Engine as _;
use futures::StreamExt as _;
use regex::Regex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ManagementConfig;

/// How far a signed request's timestamp may be from now.
pub const MAX_SKEW: Duration = Duration::from_secs(120);

/// The subject prefix; requests go to `promrelay.mgmt.<identity>.<action>`.
pub const SUBJECT_PREFIX: &str = "promrelay.mgmt";

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    None,
    ReadOnly,
    Full,
}

/// Compiled `auth` rules.
struct Rules {
    full: Vec<Regex>,
    read_only: Vec<Regex>,
    insecure: bool,
}

impl Rules {
    fn new(config: &ManagementConfig) -> anyhow::Result<Rules> {
        let compile = |patterns: &[String]| -> anyhow::Result<Vec<Regex>> {
            patterns
                .iter()
                .map(|p| Regex::new(p).with_context(|| format!("management.auth regex {p:?}")))
                .collect()
        };
        Ok(Rules {
            full: compile(&config.auth.full)?,
            read_only: compile(&config.auth.read_only)?,
            insecure: config.auth.insecure,
        })
    }

    fn access(&self, caller: &str) -> Access {
        if self.insecure || self.full.iter().any(|r| r.is_match(caller)) {
            Access::Full
        } else if self.read_only.iter().any(|r| r.is_match(caller)) {
            Access::ReadOnly
        } else {
            Access::None
        }
    }
}

/// Signs a management request for `subject` with an nkey user seed: the body to send.
pub fn signed_request(subject: &str, seed: &str, timestamp: u64) -> anyhow::Result<Vec<u8>> {
    let key = nkeys::KeyPair::from_seed(seed.trim()).context("reading the nkey seed")?;
    let signature = key
        .sign(format!("{subject}\n{timestamp}").as_bytes())
        .context("signing the request")?;
    let body = serde_json::json!({
        "caller": key.public_key(),
        "timestamp": timestamp,
        "signature": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature),
    });
    Ok(serde_json::to_vec(&body).expect("a JSON value serialises"))
}

/// Operator side over NATS: sends a signed `action` for `identity` (default: the config's) to
/// the brokers of `management` (with its TLS) and returns the JSON answer.
pub async fn request(
    config: &crate::config::Config,
    action: &str,
    identity: Option<&str>,
    seed_file: Option<&std::path::Path>,
) -> anyhow::Result<serde_json::Value> {
    let management = config
        .management
        .as_ref()
        .filter(|management| !management.brokers.is_empty())
        .context("sending over NATS needs management.brokers in the config")?;
    let seed = match seed_file {
        Some(seed_file) => {
            let text = std::fs::read_to_string(seed_file)
                .with_context(|| format!("reading the nkey seed file {}", seed_file.display()))?;
            let seed = text
                .lines()
                .map(str::trim)
                .find(|line| line.starts_with("SU"))
                .with_context(|| format!("no nkey user seed in {}", seed_file.display()))?
                .to_owned();
            Some(seed)
        }
        None => None,
    };
    let security = crate::nats::Security::load(
        "management",
        management.tls.as_ref(),
        &crate::config::NatsAuth::None,
    )?;
    crate::nats::configure("management", security);
    let identity = identity.unwrap_or(&config.identity);
    let client = crate::nats::connect(&management.brokers, "management", "operator").await?;
    let subject = format!("{SUBJECT_PREFIX}.{identity}.{action}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    // Unsigned, only a relay with `auth.insecure: true` accepts it.
    let body = match &seed {
        Some(seed) => signed_request(&subject, seed, now)?,
        None => b"{}".to_vec(),
    };
    let answer = tokio::time::timeout(
        Duration::from_secs(15),
        client.request(subject.clone(), body.into()),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer on {subject} within 15 s"))?
    .map_err(|e| anyhow::anyhow!("{subject}: {e}"))?;
    let body: serde_json::Value = serde_json::from_slice(&answer.payload)
        .with_context(|| format!("{subject}: the answer is not JSON"))?;
    if let Some(error) = body["error"].as_str() {
        let hint = if seed.is_none() {
            " (the request was unsigned: sign it with --seed NKEY_SEED_FILE)"
        } else {
            ""
        };
        anyhow::bail!("{action} refused by {identity}: {error}{hint}");
    }
    Ok(body)
}

/// The verified caller of a request, or why it is not accepted.
fn verify(subject: &str, payload: &[u8], now: u64) -> Result<String, String> {
    let body: serde_json::Value =
        serde_json::from_slice(payload).map_err(|_| "the request is not signed JSON".to_owned())?;
    let caller = body["caller"].as_str().ok_or("no caller in the request")?;
    let timestamp = body["timestamp"]
        .as_u64()
        .ok_or("no timestamp in the request")?;
    let signature = body["signature"]
        .as_str()
        .and_then(|s| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .ok()
        })
        .ok_or("no valid signature in the request")?;
    if now.abs_diff(timestamp) > MAX_SKEW.as_secs() {
        return Err("the request's timestamp is too far from now".into());
    }
    let key = nkeys::KeyPair::from_public_key(caller).map_err(|_| "the caller is not an nkey")?;
    key.verify(format!("{subject}\n{timestamp}").as_bytes(), &signature)
        .map_err(|_| "the signature does not verify".to_owned())?;
    Ok(caller.to_owned())
}

/// Answers management requests until `shutdown`.
pub async fn serve(
    config: ManagementConfig,
    identity: String,
    paused: watch::Sender<bool>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let rules = Rules::new(&config)?;
    if rules.insecure {
        tracing::warn!("management.auth.insecure: every NATS management request is allowed");
    }
    let client = crate::nats::connect(&config.brokers, "management", &identity).await?;
    let subject = format!("{SUBJECT_PREFIX}.{identity}.*");
    let mut requests = client
        .subscribe(subject.clone())
        .await
        .with_context(|| format!("subscribing to {subject}"))?;
    tracing::info!(%subject, "management requests answered over NATS");
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            message = requests.next() => match message {
                Some(message) => message,
                None => return Ok(()),
            },
        };
        let Some(reply) = message.reply.clone() else {
            continue;
        };
        let action = message.subject.rsplit('.').next().unwrap_or_default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let answer = answer(
            &rules,
            &message.subject,
            action,
            &message.payload,
            now,
            &identity,
            &paused,
        );
        let payload = serde_json::to_vec(&answer).expect("a JSON value serialises");
        if let Err(error) = client.publish(reply, payload.into()).await {
            tracing::warn!("management answer not sent: {error}");
        }
    }
}

fn answer(
    rules: &Rules,
    subject: &str,
    action: &str,
    payload: &[u8],
    now: u64,
    identity: &str,
    paused: &watch::Sender<bool>,
) -> serde_json::Value {
    let refuse = |reason: &str| serde_json::json!({ "error": reason, "identity": identity });
    let access = if rules.insecure {
        Access::Full
    } else {
        match verify(subject, payload, now) {
            Ok(caller) => {
                let access = rules.access(&caller);
                tracing::info!(caller, action, ?access, "management request over NATS");
                access
            }
            Err(reason) => {
                tracing::warn!(action, "management request refused: {reason}");
                return refuse(&reason);
            }
        }
    };
    let change = match (action, access) {
        (_, Access::None) => return refuse("the caller is not allowed"),
        ("ping" | "info", _) => None,
        ("pause" | "resume" | "flip", Access::ReadOnly) => {
            return refuse("read-only callers may only ping and info")
        }
        ("pause", Access::Full) => Some(Some(true)),
        ("resume", Access::Full) => Some(Some(false)),
        ("flip", Access::Full) => Some(None),
        _ => return refuse("unknown action (ping, info, pause, resume, flip)"),
    };
    if let Some(target) = change {
        paused.send_if_modified(|state| {
            let before = *state;
            *state = target.unwrap_or(!before);
            *state != before
        });
    }
    serde_json::json!({ "paused": *paused.borrow(), "identity": identity })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(full: &[&str], read_only: &[&str]) -> Rules {
        Rules {
            full: full.iter().map(|p| Regex::new(p).expect("regex")).collect(),
            read_only: read_only
                .iter()
                .map(|p| Regex::new(p).expect("regex"))
                .collect(),
            insecure: false,
        }
    }

    #[test]
    fn signed_requests_verify_and_are_matched_by_public_key() {
        let admin = nkeys::KeyPair::new_user();
        let viewer = nkeys::KeyPair::new_user();
        let rules = rules(&[&admin.public_key()], &[&viewer.public_key()]);
        let (paused, _) = watch::channel(false);
        let subject = "promrelay.mgmt.site1.pause";
        let seed = admin.seed().expect("seed");
        let body = signed_request(subject, &seed, 1000).expect("sign");
        let got = answer(&rules, subject, "pause", &body, 1010, "site1", &paused);
        assert_eq!(got["paused"], true, "{got}");

        let body = signed_request(subject, &viewer.seed().expect("seed"), 1000).expect("sign");
        let got = answer(&rules, subject, "pause", &body, 1000, "site1", &paused);
        assert!(got["error"].as_str().is_some(), "{got}");
        let info = "promrelay.mgmt.site1.info";
        let body = signed_request(info, &viewer.seed().expect("seed"), 1000).expect("sign");
        let got = answer(&rules, info, "info", &body, 1000, "site1", &paused);
        assert_eq!(got["paused"], true, "{got}");
    }

    #[test]
    fn replays_on_another_subject_or_later_and_unsigned_requests_are_refused() {
        let admin = nkeys::KeyPair::new_user();
        let rules = rules(&[".*"], &[]);
        let (paused, _) = watch::channel(false);
        let seed = admin.seed().expect("seed");
        let body = signed_request("promrelay.mgmt.site1.info", &seed, 1000).expect("sign");
        let other = "promrelay.mgmt.site1.pause";
        let got = answer(&rules, other, "pause", &body, 1000, "site1", &paused);
        assert!(got["error"].is_string(), "{got}");
        let body = signed_request(other, &seed, 1000).expect("sign");
        let got = answer(&rules, other, "pause", &body, 2000, "site1", &paused);
        assert!(got["error"].is_string(), "{got}");
        let got = answer(&rules, other, "pause", b"{}", 1000, "site1", &paused);
        assert!(got["error"].is_string(), "{got}");
        assert!(!*paused.borrow());
    }
}
