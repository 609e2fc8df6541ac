//! What a pause pauses (issue 11, item 3) and who may reload over HTTP (item 8), end to end: a
//! combined relay (poller and receiver in one process) scraping a real node_exporter through a
//! real nats-server into a real Pushgateway, paused by role over HTTP, NATS and the operator
//! command; and `POST /-/reload` with and without the `management.token` bearer.

use std::process::Command;

use promrelay_tests::relay::wait_up;
use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::{
    free_port, poll_until, relay_binary, Behaviour, NatsServer, NodeExporter, Pushgateway, Relay,
    RelayConfig, TargetServer,
};

use crate::management::{count, paused_gauge, post, wait_event, watch, Seen, ARRIVAL, TOKEN};

/// `promrelay <args> --config <relay's config>`: its JSON answer, or what it printed on failure.
fn operator(relay: &Relay, args: &[&str]) -> Result<serde_json::Value, String> {
    let output = Command::new(relay_binary())
        .args(args)
        .arg("--config")
        .arg(relay.config_path())
        .output()
        .expect("run the promrelay operator command");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(text);
    }
    serde_json::from_str(text.trim()).map_err(|e| format!("not JSON ({e}): {text}"))
}

/// `POST url` with an optional bearer token: (status, body text).
fn post_text(url: &str, token: Option<&str>) -> (u16, String) {
    promrelay::tls::install_crypto_provider();
    let mut request = reqwest::blocking::Client::new().post(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let answer = request.send().expect("the monitor port answers");
    let status = answer.status().as_u16();
    (status, answer.text().unwrap_or_default())
}

/// The newest `push_time_seconds` of `job`'s groups in the Pushgateway, 0 when none.
fn push_time(pushgateway: &Pushgateway, job: &str) -> f64 {
    pushgateway
        .series_for(job)
        .into_iter()
        .filter(|sample| sample.name == "push_time_seconds")
        .map(|sample| sample.value)
        .fold(0.0, f64::max)
}

/// Waits until `job` has been pushed `times` more times.
fn wait_pushes(pushgateway: &Pushgateway, job: &str, times: usize) {
    for round in 1..=times {
        let before = push_time(pushgateway, job);
        poll_until(
            ARRIVAL,
            &format!("push {round} of {times} more of job {job}"),
            || (push_time(pushgateway, job) > before).then_some(()),
        );
    }
}

/// Waits until the relay published `times` more scrapes of its own job on NATS.
fn wait_published(seen: &Seen, times: usize) {
    let before = count(seen, "prometheus.site1.promrelay");
    poll_until(
        ARRIVAL,
        &format!("{times} more scrapes of job promrelay on NATS"),
        || (count(seen, "prometheus.site1.promrelay") >= before + times).then_some(()),
    );
}

/// The value of a pushed series of job promrelay named `name` (with `role` when given).
fn pushed(pushgateway: &Pushgateway, name: &str, role: Option<&str>) -> Option<f64> {
    pushgateway
        .pushed_series_for("promrelay")
        .into_iter()
        .find(|sample| sample.name == name && sample.label("role") == role)
        .map(|sample| sample.value)
}

/// The relay's own `promrelay_paused_by_role{role="<role>"}`.
fn paused_role(relay: &Relay, role: &str) -> Option<f64> {
    let prefix = format!("promrelay_paused_by_role{{role=\"{role}\"}} ");
    let text = relay.metrics_text().ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.trim().parse().ok())
}

fn roles(answer: &serde_json::Value) -> (bool, bool) {
    let paused = |role: &str| {
        answer["roles"][role]["paused"]
            .as_bool()
            .unwrap_or_else(|| panic!("no roles.{role}.paused in {answer}"))
    };
    (paused("poller"), paused("receiver"))
}

#[test]
fn pausing_a_combined_relay_stops_job_node_while_the_centre_sees_promrelay_paused() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let node = NodeExporter::start();
    let (_runtime, seen) = watch(
        &nats.url(),
        &["prometheus.site1.>", "choria.lifecycle.event.>"],
    );
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("node", &[("n1", &node.metrics_url())])
        .monitor_port(free_port())
        .extra(&format!("management:\n  token: {TOKEN}\n"));
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();
    wait_up(&pushgateway, &mut relay, "node", 1.0, ARRIVAL);
    poll_until(ARRIVAL, "job promrelay with promrelay_paused 0", || {
        (pushed(&pushgateway, "promrelay_paused", None) == Some(0.0)).then_some(())
    });

    // A pause without a role pauses the poller only: its own job still goes out and the
    // receiver still pushes it, so the pause is visible centrally.
    let answer = operator(&relay, &["pause"]).expect("pause");
    assert_eq!(answer["paused"], true, "{answer}");
    poll_until(ARRIVAL, "promrelay_paused 1 in the Pushgateway", || {
        (pushed(&pushgateway, "promrelay_paused", None) == Some(1.0)).then_some(())
    });
    assert_eq!(roles(&answer), (true, false), "{answer}");
    assert_eq!(
        pushed(&pushgateway, "promrelay_paused_by_role", Some("poller")),
        Some(1.0)
    );
    assert_eq!(
        pushed(&pushgateway, "promrelay_paused_by_role", Some("receiver")),
        Some(0.0)
    );
    // A node scrape in flight at the pause may still arrive: let two self-job pushes pass,
    // then three more self-job pushes must come without any node push.
    wait_pushes(&pushgateway, "promrelay", 2);
    let node_paused = push_time(&pushgateway, "node");
    wait_pushes(&pushgateway, "promrelay", 3);
    assert_eq!(
        push_time(&pushgateway, "node"),
        node_paused,
        "job node was pushed while the poller was paused"
    );
    let paused_event = wait_event(&seen, "paused");
    assert_eq!(paused_event["role"], "poller", "{paused_event}");

    // Resume over HTTP: job node arrives again.
    let (status, answer) = post(
        &format!("{}/api/v1/resume", relay.monitor_url()),
        Some(TOKEN),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["paused"], false, "{answer}");
    poll_until(ARRIVAL, "job node pushed after the resume", || {
        (push_time(&pushgateway, "node") > node_paused).then_some(())
    });
    poll_until(ARRIVAL, "promrelay_paused 0 in the Pushgateway", || {
        (pushed(&pushgateway, "promrelay_paused", None) == Some(0.0)).then_some(())
    });

    // --role receiver: scrapes are still published, nothing is pushed.
    let answer = operator(&relay, &["pause", "--role", "receiver"]).expect("pause receiver");
    assert_eq!(roles(&answer), (false, true), "{answer}");
    assert_eq!(answer["paused"], true, "{answer}");
    poll_until(ARRIVAL, "the receiver paused on /metrics", || {
        (paused_role(&relay, "receiver") == Some(1.0)).then_some(())
    });
    assert_eq!(paused_role(&relay, "poller"), Some(0.0));
    assert_eq!(paused_gauge(&relay), Some(1.0));
    wait_published(&seen, 2);
    let self_paused = push_time(&pushgateway, "promrelay");
    wait_published(&seen, 3);
    assert_eq!(
        push_time(&pushgateway, "promrelay"),
        self_paused,
        "the paused receiver pushed"
    );
    let answer = operator(&relay, &["resume", "--role", "receiver"]).expect("resume receiver");
    assert_eq!(roles(&answer), (false, false), "{answer}");
    poll_until(ARRIVAL, "pushes after the receiver's resume", || {
        (push_time(&pushgateway, "promrelay") > self_paused).then_some(())
    });

    // ?role=all pauses and resumes both; info reports each role.
    let monitor = relay.monitor_url();
    let (status, answer) = post(&format!("{monitor}/api/v1/pause?role=all"), Some(TOKEN));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(roles(&answer), (true, true), "{answer}");
    let info = operator(&relay, &["info"]).expect("info");
    assert_eq!(roles(&info), (true, true), "{info}");
    assert_eq!(info["paused"], true, "{info}");
    let (status, answer) = post(&format!("{monitor}/api/v1/flip?role=all"), Some(TOKEN));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(roles(&answer), (false, false), "{answer}");
    assert_eq!(answer["paused"], false, "{answer}");
    poll_until(ARRIVAL, "promrelay_paused 0 on /metrics", || {
        (paused_gauge(&relay) == Some(0.0)).then_some(())
    });

    // An unknown role is refused, naming the choices.
    let (status, answer) = post(&format!("{monitor}/api/v1/pause?role=pusher"), Some(TOKEN));
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("pusher") && e.contains("poller, receiver or all")),
        "{answer}"
    );
    let refused = operator(&relay, &["pause", "--role", "pusher"]).expect_err("unknown role");
    assert!(refused.contains("poller, receiver or all"), "{refused}");
    relay.ensure_running().expect("the relay keeps running");
}

#[test]
fn an_insecure_relay_without_a_token_is_paused_over_nats_by_the_operator_command() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    // A monitor port but no management.token: the changing actions go over NATS, unsigned.
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("app1", &target.url())])
        .monitor_port(free_port())
        .extra(&format!(
            "management:\n  brokers: {}\n  auth:\n    insecure: true\n",
            nats.url()
        ));
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();
    // The relay subscribes shortly after start: retry until it answers.
    let answer = poll_until(ARRIVAL, "pause over NATS without a token", || {
        relay.ensure_running().expect("the relay runs");
        match operator(&relay, &["pause"]) {
            Ok(answer) => Some(answer),
            Err(text) if text.contains("management.token") => panic!("{text}"),
            Err(_) => None,
        }
    });
    assert_eq!(answer["identity"], "site1", "{answer}");
    assert_eq!(roles(&answer), (true, false), "{answer}");
    poll_until(ARRIVAL, "promrelay_paused 1", || {
        (paused_gauge(&relay) == Some(1.0)).then_some(())
    });
    let answer = operator(&relay, &["pause", "--role", "all"]).expect("pause all");
    assert_eq!(roles(&answer), (true, true), "{answer}");
    let answer = operator(&relay, &["resume", "--role", "all"]).expect("resume all");
    assert_eq!(roles(&answer), (false, false), "{answer}");
    poll_until(ARRIVAL, "promrelay_paused 0", || {
        (paused_gauge(&relay) == Some(0.0)).then_some(())
    });
    // Info still comes from the monitor port, with every role.
    let info = operator(&relay, &["info"]).expect("info");
    assert_eq!(roles(&info), (false, false), "{info}");

    // An empty NATS body means the default role; a bare word names one.
    let ask = |subject: &str, body: &'static [u8]| -> serde_json::Value {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async {
            let client = async_nats::connect(nats.url()).await.expect("connect");
            let answer = client
                .request(subject.to_owned(), body.into())
                .await
                .expect("an answer");
            serde_json::from_slice(&answer.payload).expect("the answer is JSON")
        })
    };
    let answer = ask("promrelay.mgmt.site1.pause", b"");
    assert_eq!(roles(&answer), (true, false), "{answer}");
    let answer = ask("promrelay.mgmt.site1.flip", b"receiver");
    assert_eq!(roles(&answer), (true, true), "{answer}");
    let answer = ask("promrelay.mgmt.site1.resume", br#"{"role": "all"}"#);
    assert_eq!(roles(&answer), (false, false), "{answer}");

    // No token: reload over HTTP is off, and the refusal says what to do instead.
    let (status, text) = post_text(&format!("{}/-/reload", relay.monitor_url()), None);
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("management.token") && text.contains("SIGHUP"),
        "{text}"
    );
}

#[test]
fn reload_over_http_is_refused_without_the_token_and_applied_with_it() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let first = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let second = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("app1", &first.url())])
        .monitor_port(free_port())
        .extra(&format!("management:\n  token: {TOKEN}\n"));
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();
    relay.rewrite_config(
        &config
            .clone()
            .job("more", &[("more1", &second.url())])
            .to_yaml(),
    );
    let reload = format!("{}/-/reload", relay.monitor_url());

    for (token, why) in [
        (None, "Authorization: Bearer"),
        (Some("wrong"), "wrong token"),
    ] {
        let (status, text) = post_text(&reload, token);
        assert_eq!(status, 403, "{text}");
        assert!(text.contains(why) && text.contains("SIGHUP"), "{text}");
    }
    // The handler answers after the reload ran: a refused one left no trace.
    assert_eq!(second.requests(), 0, "a refused reload added the target");
    assert!(
        !relay.log().contains("reloaded:"),
        "an unauthenticated reload ran:\n{}",
        relay.log()
    );

    let (status, text) = post_text(&reload, Some(TOKEN));
    assert_eq!(status, 200, "{text}");
    assert!(text.starts_with("reloaded:"), "{text}");
    poll_until(
        ARRIVAL,
        "the target added by the reload to be scraped",
        || {
            relay.ensure_running().expect("the relay runs");
            (second.requests() > 0).then_some(())
        },
    );
}
