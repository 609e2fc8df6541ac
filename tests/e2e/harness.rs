//! The harness itself: each server starts, answers, and is gone (its PID dead) after drop.

use std::time::Duration;

use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::{
    http, parse_samples, pid_is_alive, poll_until, Behaviour, NatsServer, NodeExporter, Prometheus,
    Pushgateway, TargetServer,
};

fn assert_gone(pid: u32, what: &str) {
    poll_until(
        Duration::from_secs(5),
        &format!("{what} (pid {pid}) to be gone"),
        || (!pid_is_alive(pid)).then_some(()),
    );
}

#[test]
fn nats_server_starts_answers_survives_kill9_and_restart_and_is_gone_after_drop() {
    let mut nats = NatsServer::start();
    let pid = nats.pid().expect("running");
    assert!(nats.url().starts_with("nats://127.0.0.1:"));
    let varz = http::get_ok(&format!("{}/varz", nats.monitor_url())).expect("GET /varz");
    assert!(varz.contains("\"jetstream\""), "JetStream is on: {varz}");

    nats.kill9();
    assert_gone(pid, "nats-server after SIGKILL");
    nats.restart();
    let restarted = nats.pid().expect("running again");
    assert_ne!(pid, restarted);
    assert!(
        nats.jsz().get("config").is_some(),
        "JetStream answers after restart"
    );

    drop(nats);
    assert_gone(restarted, "nats-server after drop");
}

#[test]
fn pushgateway_accepts_a_push_restarts_with_its_data_and_is_gone_after_drop() {
    let mut pushgateway = Pushgateway::start();
    let url = format!("{}/metrics/job/harness/instance/i1", pushgateway.url());
    let answer =
        http::request("PUT", &url, Some(b"harness_value{a=\"1\"} 7\n")).expect("PUT a group");
    assert!(
        (200..300).contains(&answer.status),
        "push answered {}: {}",
        answer.status,
        answer.body
    );
    let pushed = pushgateway.pushed_series_for("harness");
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert_eq!(pushed[0].label("instance"), Some("i1"));
    assert_eq!(pushed[0].value, 7.0);

    pushgateway.stop();
    assert!(
        pushgateway.try_metrics_text().is_err(),
        "stopped means not answering"
    );
    pushgateway.start_again();
    assert_eq!(
        pushgateway.pushed_series_for("harness").len(),
        1,
        "persisted across the restart"
    );

    let pid = pushgateway.pid().expect("running");
    drop(pushgateway);
    assert_gone(pid, "the Pushgateway after drop");
}

#[test]
fn node_exporter_serves_hundreds_of_parsable_samples_and_is_gone_after_drop() {
    let node = NodeExporter::start();
    let samples = parse_samples(&node.metrics_text()).expect("node_exporter text parses");
    assert!(samples.len() > 100, "only {} samples", samples.len());
    assert!(samples.iter().any(|s| s.name == "node_exporter_build_info"));
    let pid = node.pid().expect("running");
    drop(node);
    assert_gone(pid, "node_exporter after drop");
}

#[test]
fn prometheus_receiver_answers_queries_and_is_gone_after_drop() {
    let prometheus = Prometheus::start_remote_write_receiver();
    let result = prometheus.query("vector(1)").expect("query vector(1)");
    assert_eq!(result.len(), 1, "{result:?}");
    let pid = prometheus.pid().expect("running");
    drop(prometheus);
    assert_gone(pid, "Prometheus after drop");
}

#[test]
fn target_server_serves_each_behaviour_and_counts_requests() {
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let body = http::get_ok(&target.url()).expect("fixed body");
    assert_eq!(parse_samples(&body).expect("small body parses").len(), 3);

    target.set_behaviour(Behaviour::Garbage);
    assert!(parse_samples(&http::get_ok(&target.url()).expect("garbage")).is_err());

    target.set_behaviour(Behaviour::Status(500));
    assert_eq!(http::get(&target.url()).expect("status").status, 500);

    target.set_behaviour(Behaviour::Gzip(SMALL_BODY.into()));
    let answer = http::get(&target.url()).expect("gzip");
    assert_eq!(answer.header("content-encoding"), Some("gzip"));

    target.set_behaviour(Behaviour::Huge { bytes: 1_000_000 });
    assert_eq!(http::get_ok(&target.url()).expect("huge").len(), 1_000_000);

    target.set_behaviour(Behaviour::Slow {
        delay: Duration::from_millis(200),
        body: SMALL_BODY.into(),
    });
    assert_eq!(http::get_ok(&target.url()).expect("slow"), SMALL_BODY);

    assert_eq!(target.requests(), 6);
}

#[test]
fn target_server_endless_body_keeps_streaming_and_drop_does_not_hang() {
    use std::io::{Read, Write};
    let target = TargetServer::start(Behaviour::Endless);
    let mut stream = std::net::TcpStream::connect(target.host_port()).expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .expect("send request");
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    while received.iter().filter(|&&b| b == b'\n').count() < 20 {
        let read = stream.read(&mut buffer).expect("read the endless body");
        assert!(read > 0, "the endless body ended");
        received.extend_from_slice(&buffer[..read]);
    }
    drop(target);
}

#[test]
fn relay_config_yaml_is_accepted_by_promrelays_own_config_parser() {
    use promrelay_tests::RelayConfig;
    let config = RelayConfig::pipeline("nats://127.0.0.1:4222", "http://127.0.0.1:9091")
        .job("node", &[("node1", "http://127.0.0.1:9100/metrics")])
        .job_with(
            "bad",
            "scrape_interval: 10s\nscrape_timeout: 10s\n",
            &[("slow", "http://127.0.0.1:1/metrics")],
        )
        .monitor_port(10000);
    let yaml = config.to_yaml();
    let parsed = promrelay::config::parse(&yaml, "harness")
        .unwrap_or_else(|error| panic!("{error}\nin:\n{yaml}"));
    assert_eq!(parsed.identity, "site1");
    assert_eq!(parsed.monitor_port, Some(10000));
    assert_eq!(parsed.jobs.len(), 2);
    assert_eq!(parsed.jobs[1].scrape_timeout, Duration::from_secs(10));
    assert_eq!(parsed.jobs[1].targets[0].name, "slow");
    let receiver = parsed.receiver_stream.expect("receiver_stream");
    assert_eq!(
        receiver.stream,
        config.poller_stream.expect("poller").cluster_id
    );
    assert!(parsed.push_gateway.expect("push_gateway").publisher_label);
}

#[tokio::test]
async fn nats_stream_messages_counts_what_jetstream_stored() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url())
        .await
        .expect("connect to nats-server");
    let jetstream = async_nats::jetstream::new(client);
    jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: "harness_count".into(),
            subjects: vec!["harness.>".into()],
            ..Default::default()
        })
        .await
        .expect("create a stream");
    for index in 0..3 {
        jetstream
            .publish("harness.x", format!("message {index}").into())
            .await
            .expect("publish")
            .await
            .expect("publish acknowledged");
    }
    assert_eq!(nats.stream_messages("harness_count"), Some(3));
    assert_eq!(nats.stream_messages("no_such_stream"), None);
}

/// Set in the child process of [`servers_die_with_a_test_process_killed_by_sigkill`].
const HELPER_ENV: &str = "PROMRELAY_TESTS_HELPER";

#[test]
#[ignore = "helper of servers_die_with_a_test_process_killed_by_sigkill; idle without its env var"]
fn helper_starts_nats_server_and_hangs() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let nats = NatsServer::start();
    println!("NATS_PID={}", nats.pid().expect("running"));
    loop {
        std::thread::park();
    }
}

#[test]
fn servers_die_with_a_test_process_killed_by_sigkill() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([
            "--exact",
            "harness::helper_starts_nats_server_and_hangs",
            "--ignored",
            "--nocapture",
        ])
        .env(HELPER_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the helper test");
    let stdout = child.stdout.take().expect("piped stdout");
    let nats_pid: u32 = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("NATS_PID=").map(str::to_string))
        .expect("the helper prints nats-server's PID")
        .parse()
        .expect("a PID");
    assert!(pid_is_alive(nats_pid));
    child.kill().expect("SIGKILL the helper test process");
    child.wait().expect("reap the helper");
    assert_gone(nats_pid, "nats-server of a SIGKILLed test process");
}
