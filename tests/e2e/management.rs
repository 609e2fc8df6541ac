//! Pausing a site (issue 4's circuit breaker over HTTP) and Choria lifecycle events, end to end:
//! a relay with a monitor port and `management.token`, a real nats-server on which the test
//! watches the published scrapes and the lifecycle events, and a Pushgateway.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::{
    free_port, poll_until, relay_binary, Behaviour, NatsServer, Pushgateway, Relay, RelayConfig,
    TargetServer,
};

pub(crate) const ARRIVAL: Duration = Duration::from_secs(90);
pub(crate) const TOKEN: &str = "s3cret-token";

/// Every message seen on the watched subjects: (subject, payload).
pub(crate) type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Subscribes to `subjects` on `url` in a background runtime and records every message.
pub(crate) fn watch(url: &str, subjects: &[&str]) -> (tokio::runtime::Runtime, Seen) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the NATS watcher");
    let seen: Seen = Arc::default();
    let client = runtime
        .block_on(async_nats::connect(url))
        .expect("connect the watcher");
    for subject in subjects {
        let mut subscriber = runtime
            .block_on(client.subscribe(subject.to_string()))
            .expect("subscribe");
        let seen = seen.clone();
        runtime.spawn(async move {
            while let Some(message) = subscriber.next().await {
                seen.lock()
                    .expect("not poisoned")
                    .push((message.subject.to_string(), message.payload.to_vec()));
            }
        });
    }
    runtime
        .block_on(client.flush())
        .expect("the subscriptions reach the server");
    // Keep the client alive as long as the runtime.
    runtime.spawn(async move {
        let _client = client;
        std::future::pending::<()>().await
    });
    (runtime, seen)
}

pub(crate) fn count(seen: &Seen, subject: &str) -> usize {
    seen.lock()
        .expect("not poisoned")
        .iter()
        .filter(|(s, _)| s == subject)
        .count()
}

/// The lifecycle events seen so far, as JSON.
pub(crate) fn events(seen: &Seen) -> Vec<serde_json::Value> {
    seen.lock()
        .expect("not poisoned")
        .iter()
        .filter(|(subject, _)| subject.starts_with("choria.lifecycle.event."))
        .map(|(subject, payload)| {
            let mut body: serde_json::Value =
                serde_json::from_slice(payload).expect("a lifecycle event is JSON");
            body["subject"] = serde_json::json!(subject);
            body
        })
        .collect()
}

pub(crate) fn wait_event(seen: &Seen, kind: &str) -> serde_json::Value {
    poll_until(ARRIVAL, &format!("a {kind} lifecycle event"), || {
        events(seen)
            .into_iter()
            .find(|event| event["protocol"] == format!("choria:lifecycle:{kind}:1"))
    })
}

pub(crate) fn post(url: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    promrelay::tls::install_crypto_provider();
    let client = reqwest::blocking::Client::new();
    let mut request = client.post(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let answer = request.send().expect("the monitor port answers");
    let status = answer.status().as_u16();
    let body = answer.json().unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// `promrelay <action> --identity <identity> --config <relay's config>`: (success, stdout+stderr).
fn operator(relay: &Relay, action: &str, identity: &str) -> (bool, String) {
    let output = Command::new(relay_binary())
        .args([action, "--identity", identity, "--config"])
        .arg(relay.config_path())
        .output()
        .expect("run the promrelay operator command");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

pub(crate) fn paused_gauge(relay: &Relay) -> Option<f64> {
    let text = relay.metrics_text().ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("promrelay_paused "))
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn pause_stops_publishing_all_but_the_self_job_and_resume_continues() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let (_runtime, seen) = watch(
        &nats.url(),
        &["prometheus.site1.>", "choria.lifecycle.event.>"],
    );
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("app1", &target.url())])
        .monitor_port(free_port())
        .extra(&format!("management:\n  token: {TOKEN}\n"));
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();

    let startup = wait_event(&seen, "startup");
    assert_eq!(
        startup["subject"],
        "choria.lifecycle.event.startup.promrelay"
    );
    assert_eq!(startup["identity"], "site1");
    assert_eq!(startup["component"], "promrelay");
    assert!(startup["timestamp"]
        .as_u64()
        .is_some_and(|t| t > 1_600_000_000));
    assert!(startup["version"].is_string());
    poll_until(ARRIVAL, "app scrapes on NATS", || {
        (count(&seen, "prometheus.site1.app") > 0).then_some(())
    });

    // Without the token, or with a wrong one, nothing changes.
    let monitor = relay.monitor_url();
    let (status, _) = post(&format!("{monitor}/api/v1/pause"), None);
    assert_eq!(status, 401);
    let (status, _) = post(&format!("{monitor}/api/v1/pause"), Some("wrong"));
    assert_eq!(status, 403);
    let (ok, text) = operator(&relay, "info", "site1");
    assert!(ok, "{text}");
    let info: serde_json::Value = serde_json::from_str(text.trim()).expect("info prints JSON");
    assert_eq!(info["paused"], false, "{text}");
    let (ok, text) = operator(&relay, "pause", "another-site");
    assert!(!ok, "pause for another identity must fail: {text}");

    // Pause with the operator command.
    let (ok, text) = operator(&relay, "pause", "site1");
    assert!(ok, "{text}");
    let answer: serde_json::Value = serde_json::from_str(text.trim()).expect("pause prints JSON");
    assert_eq!(answer["paused"], true);
    assert_eq!(answer["identity"], "site1");
    poll_until(ARRIVAL, "promrelay_paused 1", || {
        (paused_gauge(&relay) == Some(1.0)).then_some(())
    });
    wait_event(&seen, "paused");
    // A scrape already in flight may still be published: wait two self-job scrapes, then
    // count; three more self-job scrapes later no app scrape may have been added.
    let self_now = count(&seen, "prometheus.site1.promrelay");
    poll_until(ARRIVAL, "two self-job scrapes while paused", || {
        (count(&seen, "prometheus.site1.promrelay") >= self_now + 2).then_some(())
    });
    let app_paused = count(&seen, "prometheus.site1.app");
    let self_now = count(&seen, "prometheus.site1.promrelay");
    poll_until(ARRIVAL, "three more self-job scrapes while paused", || {
        (count(&seen, "prometheus.site1.promrelay") >= self_now + 3).then_some(())
    });
    assert_eq!(
        count(&seen, "prometheus.site1.app"),
        app_paused,
        "app scrapes were published while paused"
    );

    // Resume over HTTP with the token: publishing continues and reaches the Pushgateway.
    let (status, answer) = post(&format!("{monitor}/api/v1/resume"), Some(TOKEN));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["paused"], false);
    assert_eq!(answer["identity"], "site1");
    poll_until(ARRIVAL, "promrelay_paused 0", || {
        (paused_gauge(&relay) == Some(0.0)).then_some(())
    });
    wait_event(&seen, "resumed");
    poll_until(ARRIVAL, "app scrapes on NATS after resume", || {
        (count(&seen, "prometheus.site1.app") > app_paused).then_some(())
    });
    let pushed_before = push_time(&pushgateway);
    poll_until(ARRIVAL, "a newer app push after resume", || {
        (push_time(&pushgateway) > pushed_before).then_some(())
    });

    // Flip twice, then a reload and a shutdown each send their event.
    let (_, answer) = post(&format!("{monitor}/api/v1/flip"), Some(TOKEN));
    assert_eq!(answer["paused"], true);
    let (_, answer) = post(&format!("{monitor}/api/v1/flip"), Some(TOKEN));
    assert_eq!(answer["paused"], false);
    relay.sighup();
    let reload = wait_event(&seen, "reload");
    assert_eq!(reload["result"], "success", "{reload}");
    assert!(relay.sigterm().success());
    wait_event(&seen, "shutdown");
}

/// The newest `push_time_seconds` of the app group, 0 when none.
fn push_time(pushgateway: &Pushgateway) -> f64 {
    pushgateway
        .series_for("app")
        .into_iter()
        .filter(|sample| sample.name == "push_time_seconds")
        .map(|sample| sample.value)
        .fold(0.0, f64::max)
}

/// Sends a signed management request over NATS and returns the JSON answer.
fn nats_request(url: &str, subject: &str, seed: &str) -> serde_json::Value {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let body = promrelay::management::signed_request(subject, seed, now).expect("sign");
        let answer = tokio::time::timeout(
            Duration::from_secs(30),
            client.request(subject.to_string(), body.into()),
        )
        .await
        .expect("an answer in time")
        .expect("an answer");
        serde_json::from_slice(&answer.payload).expect("the answer is JSON")
    })
}

#[test]
fn management_over_nats_lets_full_callers_pause_and_refuses_read_only_ones() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let admin = nkeys::KeyPair::new_user();
    let viewer = nkeys::KeyPair::new_user();
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("app1", &target.url())])
        .monitor_port(free_port())
        .extra(&format!(
            "management:\n  brokers: {}\n  auth:\n    full: ['^{}$']\n    read_only: ['^{}$']\n",
            nats.url(),
            admin.public_key(),
            viewer.public_key()
        ));
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();
    let admin_seed = admin.seed().expect("seed");
    let viewer_seed = viewer.seed().expect("seed");
    // The subscription is made shortly after start: retry the first request until answered.
    let info = poll_until(ARRIVAL, "an answer to info over NATS", || {
        std::panic::catch_unwind(|| {
            nats_request(&nats.url(), "promrelay.mgmt.site1.info", &viewer_seed)
        })
        .ok()
    });
    assert_eq!(info["paused"], false, "{info}");
    assert_eq!(info["identity"], "site1", "{info}");

    let refused = nats_request(&nats.url(), "promrelay.mgmt.site1.pause", &viewer_seed);
    assert!(refused["error"].is_string(), "{refused}");
    assert_eq!(paused_gauge(&relay), Some(0.0));

    let paused = nats_request(&nats.url(), "promrelay.mgmt.site1.pause", &admin_seed);
    assert_eq!(paused["paused"], true, "{paused}");
    poll_until(ARRIVAL, "promrelay_paused 1", || {
        (paused_gauge(&relay) == Some(1.0)).then_some(())
    });
    // The operator command over NATS, signed with the admin's seed file.
    let seed_dir = tempfile::tempdir().expect("temp dir");
    let seed_file = seed_dir.path().join("admin.nk");
    std::fs::write(&seed_file, &admin_seed).expect("write the seed");
    let output = Command::new(relay_binary())
        .args(["resume", "--identity", "site1", "--seed"])
        .arg(&seed_file)
        .arg("--config")
        .arg(relay.config_path())
        .output()
        .expect("run promrelay resume");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    let resumed: serde_json::Value = serde_json::from_str(text.trim()).expect("JSON answer");
    assert_eq!(resumed["paused"], false, "{resumed}");
    poll_until(ARRIVAL, "promrelay_paused 0", || {
        (paused_gauge(&relay) == Some(0.0)).then_some(())
    });
}

#[test]
fn filter_loads_refusals_and_failures_are_lifecycle_events() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let (_runtime, seen) = watch(&nats.url(), &["choria.lifecycle.event.>"]);
    let wat = promrelay_tests::relay::workspace_root().join("tests/wat");
    let modules = tempfile::tempdir().expect("temp dir for modules");
    let module = modules.path().join("guard.wat");
    std::fs::copy(wat.join("pass.wat"), &module).expect("copy pass.wat");
    let filter = |name: &str, module: &std::path::Path| {
        format!(
            "  - name: {name}\n    module: {:?}\n    on_error: pass\n",
            module.display().to_string()
        )
    };
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("app1", &target.url())])
        .extra(&format!(
            "filters:\n{}{}",
            filter("guard", &module),
            filter("trapper", &wat.join("trap_process.wat"))
        ));
    let mut relay = Relay::start_config(&config);

    // Both filters load at start; the trapping one fails on the first scrape.
    let loaded = |seen: &Seen, filter: &str| {
        events(seen).into_iter().find(|event| {
            event["protocol"] == "choria:lifecycle:filter_load:1"
                && event["result"] == "success"
                && event["filter"] == filter
        })
    };
    for filter in ["global/guard", "global/trapper"] {
        let event = poll_until(ARRIVAL, &format!("filter_load of {filter}"), || {
            if let Err(error) = relay.ensure_running() {
                panic!("{error:#}");
            }
            loaded(&seen, filter)
        });
        assert_eq!(
            event["subject"],
            "choria.lifecycle.event.filter_load.promrelay"
        );
        assert_eq!(event["identity"], "site1");
        assert!(event["message"]
            .as_str()
            .is_some_and(|m| m.contains("sha256")));
    }
    let failure = wait_event(&seen, "filter_failure");
    assert_eq!(failure["filter"], "trapper");
    assert_eq!(failure["kind"], "trap");
    assert_eq!(failure["on_error"], "pass");
    assert!(failure["message"].as_str().is_some_and(|m| !m.is_empty()));
    // The same error again and again is one event, not one per scrape.
    let scraped = target.requests();
    poll_until(ARRIVAL, "three more scrapes", || {
        (target.requests() >= scraped + 3).then_some(())
    });
    let failures = events(&seen)
        .into_iter()
        .filter(|event| event["protocol"] == "choria:lifecycle:filter_failure:1")
        .count();
    assert_eq!(failures, 1, "{:#?}", events(&seen));

    // A module replaced by one that does not load: a refused load, the old chain stays.
    let staging = modules.path().join("guard.staging");
    std::fs::copy(wat.join("exports_nothing.wat"), &staging).expect("copy a broken module");
    std::fs::rename(&staging, &module).expect("rename into place");
    let refused = poll_until(ARRIVAL, "a refused filter_load", || {
        events(&seen).into_iter().find(|event| {
            event["protocol"] == "choria:lifecycle:filter_load:1" && event["result"] == "failure"
        })
    });
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("guard") && m.contains("previous chains stay")),
        "{refused}"
    );
    relay.ensure_running().expect("the relay keeps running");
}

#[test]
fn management_logfile_gets_the_management_lines_at_its_own_level() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let dir = tempfile::tempdir().expect("temp dir");
    let logfile = dir.path().join("management.log");
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("app1", &target.url())])
        .monitor_port(free_port())
        .extra(&format!(
            "management:\n  token: {TOKEN}\n  logfile: {:?}\n  loglevel: info\n",
            logfile.display().to_string()
        ));
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();
    let (status, _) = post(
        &format!("{}/api/v1/pause", relay.monitor_url()),
        Some(TOKEN),
    );
    assert_eq!(status, 200);
    let (status, _) = post(
        &format!("{}/api/v1/resume", relay.monitor_url()),
        Some("wrong"),
    );
    assert_eq!(status, 403);
    let text = poll_until(
        ARRIVAL,
        "the pause and the refusal in the management log",
        || {
            let text = std::fs::read_to_string(&logfile).ok()?;
            (text.contains("management request over HTTP")
                && text.contains("wrong token refused")
                && text.contains("choria.lifecycle.event.paused"))
            .then_some(text)
        },
    );
    assert!(!text.contains(TOKEN), "the token is in the log:\n{text}");
    // Only the management lines: no scrape or publish lines.
    assert!(
        text.lines()
            .all(|line| line.contains("promrelay::management")
                || line.contains("promrelay::admin")
                || line.contains("promrelay::lifecycle")),
        "other lines in the management log:\n{text}"
    );
    // At its own level (info), whatever the main log's (debug under the harness).
    assert!(
        !text.contains("DEBUG"),
        "debug lines in the management log:\n{text}"
    );
}

#[test]
fn management_brokers_with_their_own_tls_pause_and_resume_from_the_operator_command() {
    use promrelay_tests::pki::Pki;
    // Streams on a plain server; management on its own server that requires client certificates.
    let nats = NatsServer::start();
    let pki = Pki::new("management");
    let server = pki.leaf("management-nats", true, false);
    let management_nats = NatsServer::start_with_config(&format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n  timeout: 5\n}}\n",
        server.cert.display().to_string(),
        server.key.display().to_string(),
        pki.ca_path().display().to_string()
    ));
    let client = pki.leaf("site1", false, false);
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let admin = nkeys::KeyPair::new_user();
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("app1", &target.url())])
        .monitor_port(free_port())
        .extra(&format!(
            "management:\n  brokers: {}\n  auth:\n    full: ['^{}$']\n  tls:\n    scheme: manual\n    ca: {:?}\n    cert: {:?}\n    key: {:?}\n",
            management_nats.url(),
            admin.public_key(),
            pki.ca_path().display().to_string(),
            client.cert.display().to_string(),
            client.key.display().to_string()
        ));
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();
    let seed_dir = tempfile::tempdir().expect("temp dir");
    let seed_file = seed_dir.path().join("admin.nk");
    std::fs::write(&seed_file, admin.seed().expect("seed")).expect("write the seed");
    // The operator command reads management.brokers and management.tls from the same config.
    let run = |action: &str| {
        let output = Command::new(relay_binary())
            .args([action, "--identity", "site1", "--seed"])
            .arg(&seed_file)
            .arg("--config")
            .arg(relay.config_path())
            .output()
            .expect("run the operator command");
        let text = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        output
            .status
            .success()
            .then(|| serde_json::from_str::<serde_json::Value>(text.trim()).ok())
            .flatten()
    };
    // The relay subscribes shortly after start: retry until it answers.
    let paused = poll_until(ARRIVAL, "pause over the TLS management broker", || {
        run("pause")
    });
    assert_eq!(paused["paused"], true, "{paused}");
    poll_until(ARRIVAL, "promrelay_paused 1", || {
        (paused_gauge(&relay) == Some(1.0)).then_some(())
    });
    let resumed = run("resume").expect("resume over the TLS management broker");
    assert_eq!(resumed["paused"], false, "{resumed}");
    poll_until(ARRIVAL, "promrelay_paused 0", || {
        (paused_gauge(&relay) == Some(0.0)).then_some(())
    });
}

#[test]
fn without_a_seed_the_operator_command_asks_over_nats_and_only_an_insecure_relay_obeys() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let admin = nkeys::KeyPair::new_user();
    // site1 accepts unsigned requests; site2 only signed ones. Neither has a monitor port.
    let insecure = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("app1", &target.url())])
        .extra(&format!(
            "management:\n  brokers: {}\n  auth:\n    insecure: true\n",
            nats.url()
        ));
    let mut secured = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("app1", &target.url())])
        .extra(&format!(
            "management:\n  brokers: {}\n  auth:\n    full: ['^{}$']\n",
            nats.url(),
            admin.public_key()
        ));
    secured.identity = Some("site2".into());
    let mut site1 = Relay::start_config(&insecure);
    let mut site2 = Relay::start_config(&secured);
    let run = |relay: &Relay, action: &str, identity: &str| {
        let output = Command::new(relay_binary())
            .args([action, "--identity", identity, "--config"])
            .arg(relay.config_path())
            .output()
            .expect("run the operator command");
        let text = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    };
    // Both subscribe shortly after start: retry until each answers.
    let paused = poll_until(ARRIVAL, "site1 paused over NATS without a seed", || {
        site1.ensure_running().expect("site1 runs");
        let (ok, text) = run(&site1, "pause", "site1");
        ok.then(|| serde_json::from_str::<serde_json::Value>(text.trim()).ok())
            .flatten()
    });
    assert_eq!(paused["paused"], true, "{paused}");
    assert_eq!(paused["identity"], "site1", "{paused}");
    let text = poll_until(ARRIVAL, "site2 to refuse an unsigned pause", || {
        site2.ensure_running().expect("site2 runs");
        let (ok, text) = run(&site2, "pause", "site2");
        assert!(!ok, "site2 obeyed an unsigned pause: {text}");
        text.contains("refused by site2").then_some(text)
    });
    assert!(text.contains("--seed"), "{text}");
}
