//! Management over NATS: request/reply on `promrelay.mgmt.<identity>.<action>` on the brokers of
//! `management.brokers` (with `management.tls`), actions `ping`, `info` (read-only) and `pause`,
//! `resume`, `flip` (full), each answering `{paused, roles, identity}` as JSON (see
//! [`crate::pause::Breaker::status`]).
//!
//! **What is trusted:** a NATS subscriber cannot see who published a message, so the caller
//! proves its name by signing: the request body is `{"caller": <nkey public key>, "timestamp":
//! <unix seconds>, "signature": <base64url ed25519 signature of "<subject>\n<timestamp>">}`, plus
//! `"role"` for a change that names one, in which case the signed text ends in `"\n<role>"` so
//! a captured request cannot be turned on another role. The `auth.full` / `auth.read_only`
//! regexes match the verified public key; a timestamp more than [`MAX_SKEW`] away from now is
//! refused, so a captured request cannot be replayed later or on another subject.
//! `auth.insecure: true` accepts every request unsigned and says so at start; its body may be
//! empty, `{"role": …}`, or a bare role word.
//!
//! **Invariant:** a request never blocks the daemon: the pause state is a watch channel.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use base64::Engine as _;
use futures::StreamExt as _;
use regex::Regex;
use tokio_util::sync::CancellationToken;

use crate::config::ManagementConfig;
use crate::pause::{Breaker, Change, Scope};

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
    signed_request_for(subject, seed, timestamp, None)
}

/// Like [`signed_request`], for a change of `role` (`poller`, `receiver`, `all`; `None`: the
/// relay's default role).
pub fn signed_request_for(
    subject: &str,
    seed: &str,
    timestamp: u64,
    role: Option<&str>,
) -> anyhow::Result<Vec<u8>> {
    let key = nkeys::KeyPair::from_seed(seed.trim()).context("reading the nkey seed")?;
    let signature = key
        .sign(signed_text(subject, timestamp, role).as_bytes())
        .context("signing the request")?;
    let mut body = serde_json::json!({
        "caller": key.public_key(),
        "timestamp": timestamp,
        "signature": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature),
    });
    if let Some(role) = role {
        body["role"] = serde_json::json!(role);
    }
    Ok(serde_json::to_vec(&body).expect("a JSON value serialises"))
}

/// What a caller signs: the subject and timestamp, and the role when the request names one.
fn signed_text(subject: &str, timestamp: u64, role: Option<&str>) -> String {
    match role {
        Some(role) => format!("{subject}\n{timestamp}\n{role}"),
        None => format!("{subject}\n{timestamp}"),
    }
}

/// Operator side over NATS: sends `action` (for `role`, default the relay's) for `identity`
/// (default: the config's) to the brokers of `management` (with its TLS), signed with
/// `seed_file` if given, and returns the JSON answer.
pub async fn request(
    config: &crate::config::Config,
    action: &str,
    identity: Option<&str>,
    seed_file: Option<&std::path::Path>,
    role: Option<Scope>,
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
    let identity = identity.unwrap_or(&config.identity);
    let client =
        crate::nats::connect(&management.brokers, "management", "operator", &security).await?;
    let subject = format!("{SUBJECT_PREFIX}.{identity}.{action}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let role = role.map(Scope::name);
    // Unsigned, only a relay with `auth.insecure: true` accepts it.
    let body = match &seed {
        Some(seed) => signed_request_for(&subject, seed, now, role)?,
        None => {
            let body = match role {
                Some(role) => serde_json::json!({ "role": role }),
                None => serde_json::json!({}),
            };
            serde_json::to_vec(&body).expect("a JSON value serialises")
        }
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

/// A verified request: who signed it and the role it names, if any.
#[derive(Debug, PartialEq, Eq)]
struct Verified {
    caller: String,
    role: Option<String>,
}

/// The verified caller and role of a signed request, or why it is not accepted.
fn verify(subject: &str, payload: &[u8], now: u64) -> Result<Verified, String> {
    let body: serde_json::Value =
        serde_json::from_slice(payload).map_err(|_| "the request is not signed JSON".to_owned())?;
    let role = role_field(&body)?;
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
    key.verify(
        signed_text(subject, timestamp, role.as_deref()).as_bytes(),
        &signature,
    )
    .map_err(|_| "the signature does not verify".to_owned())?;
    Ok(Verified {
        caller: caller.to_owned(),
        role,
    })
}

/// The `role` of a JSON request body: absent, or a string.
fn role_field(body: &serde_json::Value) -> Result<Option<String>, String> {
    match body.get("role") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(role)) => Ok(Some(role.clone())),
        Some(other) => Err(format!(
            "the request's role must be a string ({}), not {other}",
            Scope::NAMES
        )),
    }
}

/// The role an unsigned request names: none for an empty body, the `role` of a JSON object, or
/// the body itself when it is a bare word (`nats req SUBJECT receiver`).
fn unsigned_role(payload: &[u8]) -> Result<Option<String>, String> {
    let text = String::from_utf8_lossy(payload);
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(body @ serde_json::Value::Object(_)) => role_field(&body),
        _ if text.chars().all(|c| c.is_ascii_alphabetic()) => Ok(Some(text.to_owned())),
        _ => Err(format!(
            "the request body is neither empty, a JSON object nor a role ({})",
            Scope::NAMES
        )),
    }
}

/// Answers management requests until `shutdown`, connected to the brokers with `security`.
pub async fn serve(
    config: ManagementConfig,
    identity: String,
    security: crate::nats::Security,
    breaker: Breaker,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let rules = Rules::new(&config)?;
    if rules.insecure {
        tracing::warn!("management.auth.insecure: every NATS management request is allowed");
    }
    let client = crate::nats::connect(&config.brokers, "management", &identity, &security).await?;
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
            &breaker,
        );
        let payload = serde_json::to_vec(&answer).expect("a JSON value serialises");
        if let Err(error) = client.publish(reply, payload.into()).await {
            tracing::warn!("management answer not sent: {error}");
        }
    }
}

const UNKNOWN_ACTION: &str = "unknown action (ping, info, pause, resume, flip)";

fn answer(
    rules: &Rules,
    subject: &str,
    action: &str,
    payload: &[u8],
    now: u64,
    identity: &str,
    breaker: &Breaker,
) -> serde_json::Value {
    let refuse = |reason: &str| serde_json::json!({ "error": reason, "identity": identity });
    let (access, role) = if rules.insecure {
        match unsigned_role(payload) {
            Ok(role) => (Access::Full, role),
            Err(reason) => return refuse(&reason),
        }
    } else {
        match verify(subject, payload, now) {
            Ok(Verified { caller, role }) => {
                let access = rules.access(&caller);
                tracing::info!(caller, action, ?access, "management request over NATS");
                (access, role)
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
        (action, Access::Full) => match Change::from_action(action) {
            Some(change) => Some(change),
            None => return refuse(UNKNOWN_ACTION),
        },
        (_, Access::ReadOnly) => return refuse(UNKNOWN_ACTION),
    };
    if let Some(change) = change {
        let scope = match role.as_deref().map(Scope::parse).transpose() {
            Ok(scope) => scope,
            Err(reason) => return refuse(&reason),
        };
        if let Err(reason) = breaker.apply(change, scope) {
            return refuse(&reason);
        }
        tracing::info!(action, role = role.as_deref().unwrap_or("default"),
            state = %breaker.status(), "pause state requested over NATS");
    }
    let mut answer = breaker.status();
    answer["identity"] = serde_json::json!(identity);
    answer
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
        let paused = Breaker::new(true, false);
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
        let paused = Breaker::new(true, false);
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
        assert!(!paused.any_paused());
    }

    #[test]
    fn a_signed_role_is_applied_and_a_role_changed_after_signing_is_refused() {
        use crate::pause::Role;
        let admin = nkeys::KeyPair::new_user();
        let rules = rules(&[".*"], &[]);
        let breaker = Breaker::new(true, true);
        let seed = admin.seed().expect("seed");
        let subject = "promrelay.mgmt.site1.pause";
        let body = signed_request_for(subject, &seed, 1000, Some("receiver")).expect("sign");
        let got = answer(&rules, subject, "pause", &body, 1000, "site1", &breaker);
        assert_eq!(got["roles"]["receiver"]["paused"], true, "{got}");
        assert_eq!(got["roles"]["poller"]["paused"], false, "{got}");
        assert_eq!(got["paused"], true, "{got}");

        let mut tampered: serde_json::Value = serde_json::from_slice(
            &signed_request_for(subject, &seed, 1000, Some("receiver")).expect("sign"),
        )
        .expect("JSON");
        tampered["role"] = serde_json::json!("all");
        let tampered = serde_json::to_vec(&tampered).expect("JSON");
        let got = answer(&rules, subject, "pause", &tampered, 1000, "site1", &breaker);
        assert!(got["error"].is_string(), "{got}");
        assert!(!breaker.is_paused(Role::Poller));

        // The format without a role still works: it means the default role, the poller.
        let body = signed_request(subject, &seed, 1000).expect("sign");
        let got = answer(&rules, subject, "pause", &body, 1000, "site1", &breaker);
        assert_eq!(got["roles"]["poller"]["paused"], true, "{got}");
        let body = signed_request_for(subject, &seed, 1000, Some("pusher")).expect("sign");
        let got = answer(&rules, subject, "pause", &body, 1000, "site1", &breaker);
        assert!(
            got["error"].as_str().is_some_and(|e| e.contains("pusher")),
            "{got}"
        );
    }

    #[test]
    fn an_insecure_relay_reads_the_role_from_an_empty_json_or_bare_word_body() {
        use crate::pause::Role;
        let mut rules = rules(&[], &[]);
        rules.insecure = true;
        let breaker = Breaker::new(true, true);
        let ask = |action: &str, body: &[u8]| {
            let subject = format!("promrelay.mgmt.site1.{action}");
            answer(&rules, &subject, action, body, 1000, "site1", &breaker)
        };
        ask("pause", b"");
        assert!(breaker.is_paused(Role::Poller) && !breaker.is_paused(Role::Receiver));
        ask("pause", br#"{"role": "receiver"}"#);
        assert!(breaker.is_paused(Role::Receiver));
        let got = ask("resume", b"all\n");
        assert_eq!(got["paused"], false, "{got}");
        ask("pause", b"{}");
        assert!(breaker.is_paused(Role::Poller) && !breaker.is_paused(Role::Receiver));
        let got = ask("resume", b"\x00\x01 junk");
        assert!(got["error"].is_string(), "{got}");
        let got = ask("info", b"");
        assert_eq!(got["roles"]["poller"]["paused"], true, "{got}");
        assert_eq!(got["identity"], "site1", "{got}");
    }
}
