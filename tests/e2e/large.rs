//! A scrape whose message is larger than the server's `max_payload` (docs/guarantees.md): today
//! it is dropped, counted (`promrelay_publishes_total{outcome="too_large"}`) and logged, and it
//! never blocks the scrapes behind it. Splitting it into parts is issue 8's work; when that lands
//! this test changes to "arrives whole".

use std::fmt::Write as _;
use std::time::Duration;

use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::{
    free_port, parse_samples, poll_until, Behaviour, NatsServer, Relay, RelayConfig, TargetServer,
};

const WAIT: Duration = Duration::from_secs(90);

/// ~1.2 MB of text that zstd cannot bring under 64 KiB: hashed label values and values.
fn incompressible_scrape(series: u64) -> String {
    let mut body = String::from("# TYPE big gauge\n");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..series {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let _ = writeln!(body, "big{{id=\"{i}\",h=\"{x:016x}\"}} {}", x >> 11);
    }
    body
}

fn publishes(relay: &Relay, outcome: &str) -> f64 {
    let Ok(text) = relay.metrics_text() else {
        return 0.0;
    };
    parse_samples(&text)
        .unwrap_or_default()
        .iter()
        .filter(|s| s.name == "promrelay_publishes_total" && s.label("outcome") == Some(outcome))
        .map(|s| s.value)
        .sum()
}

#[test]
fn a_scrape_larger_than_the_max_payload_is_dropped_counted_and_logged_and_others_still_flow() {
    let nats = NatsServer::start_with_config("max_payload: 65536\n");
    let big = TargetServer::start(Behaviour::Fixed(incompressible_scrape(20_000)));
    let small = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let mut config = RelayConfig::pipeline(&nats.url(), "http://127.0.0.1:1")
        .job("big", &[("one", &big.url())])
        .job("small", &[("two", &small.url())])
        .monitor_port(free_port());
    config.receiver_stream = None;
    config.push_gateway = None;
    let stream = config
        .poller_stream
        .as_ref()
        .expect("poller")
        .cluster_id
        .clone();
    let mut relay = Relay::start_command(&["poller"], &config.to_yaml());
    relay.wait_healthy();

    poll_until(WAIT, "two oversized scrapes counted as too_large", || {
        (publishes(&relay, "too_large") >= 2.0).then_some(())
    });
    // The small job's scrapes (and the relay's own) keep reaching the stream meanwhile.
    let published = publishes(&relay, "ok");
    poll_until(WAIT, "more scrapes published after the drops", || {
        (publishes(&relay, "ok") >= published + 2.0).then_some(())
    });
    assert!(nats.stream_messages(&stream).unwrap_or(0) >= 2);
    relay.ensure_running().expect("the relay keeps running");
    let log = relay.log();
    assert!(
        log.contains("larger than the server's max payload"),
        "the drop is logged: {log}"
    );
}
