//! NATS down while the poller keeps scraping: scrapes wait in the outage buffer and are published
//! when nats-server is back, without restarting promrelay.

use std::time::Duration;

use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::{
    free_port, parse_samples, poll_until, Behaviour, NatsServer, Relay, RelayConfig, TargetServer,
};

const WAIT: Duration = Duration::from_secs(90);

fn metric(relay: &Relay, name: &str) -> Option<f64> {
    let text = relay.metrics_text().ok()?;
    let samples = parse_samples(&text).ok()?;
    Some(
        samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum(),
    )
}

#[test]
fn scrapes_made_while_nats_is_down_are_buffered_and_published_when_it_is_back() {
    let mut nats = NatsServer::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let mut config = RelayConfig::pipeline(&nats.url(), "http://127.0.0.1:1")
        .job("app", &[("one", &target.url())])
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
    poll_until(WAIT, "a first message in the stream", || {
        nats.stream_messages(&stream).filter(|n| *n >= 1)
    });

    nats.stop();
    let before = target.requests();
    poll_until(WAIT, "three scrapes buffered while NATS is down", || {
        let buffered = metric(&relay, "promrelay_outage_buffer_bytes")?;
        (target.requests() >= before + 3 && buffered > 0.0).then_some(())
    });
    relay
        .ensure_running()
        .expect("promrelay survives NATS being down");

    nats.restart();
    poll_until(WAIT, "the outage buffer drained", || {
        (metric(&relay, "promrelay_outage_buffer_bytes")? == 0.0).then_some(())
    });
    // Every scrape made so far is in the stream (at most one still in flight).
    let scraped = target.requests();
    poll_until(WAIT, "every buffered scrape in the stream", || {
        let stored = nats.stream_messages(&stream)?;
        (stored + 1 >= scraped).then_some(())
    });
    let dropped = metric(&relay, "promrelay_outage_buffer_dropped_total").unwrap_or(0.0);
    assert_eq!(dropped, 0.0, "nothing dropped from a buffer far from full");
}
