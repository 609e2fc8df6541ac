//! NATS down while the poller keeps scraping: scrapes wait in the outage buffer and are published
//! when nats-server is back, without restarting promrelay; the buffer's gauges count every scrape
//! JetStream has not acknowledged; SIGTERM during the outage still exits within the README's bound.

use std::time::{Duration, Instant};

use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::{
    free_port, parse_samples, poll_until, Behaviour, NatsServer, Pushgateway, Relay, RelayConfig,
    TargetServer,
};

const WAIT: Duration = Duration::from_secs(90);

/// README: SIGTERM stops scraping, flushes for at most 10 s and exits 0.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(10);
/// What the test allows past the bound (process start-up of the signal handling, a busy machine).
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(2);

fn metric_in(text: &str, name: &str) -> Option<f64> {
    let samples = parse_samples(text).ok()?;
    let mut found = samples.iter().filter(|s| s.name == name).peekable();
    found.peek()?;
    Some(found.map(|s| s.value).sum())
}

fn metric(relay: &Relay, name: &str) -> Option<f64> {
    metric_in(&relay.metrics_text().ok()?, name)
}

/// A running poller (its own `promrelay` job included) scraping `target` into `nats`, with the
/// monitor port, once a first message is in its stream; returns it and the stream's name.
fn poller_publishing(nats: &NatsServer, target: &TargetServer) -> (Relay, String) {
    let config = RelayConfig::poller_only(&nats.url())
        .job("app", &[("one", &target.url())])
        .monitor_port(free_port());
    let stream = config.poller_stream_name();
    let mut relay = Relay::start_command(&["poller"], &config.to_yaml());
    relay.wait_healthy();
    poll_until(WAIT, "a first message in the stream", || {
        nats.stream_messages(&stream).filter(|n| *n >= 1)
    });
    (relay, stream)
}

#[test]
fn scrapes_made_while_nats_is_down_are_buffered_and_published_when_it_is_back() {
    let mut nats = NatsServer::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let (mut relay, stream) = poller_publishing(&nats, &target);

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

#[test]
fn the_outage_buffer_gauges_count_every_scrape_not_yet_acked_and_return_to_zero() {
    let mut nats = NatsServer::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let (mut relay, _stream) = poller_publishing(&nats, &target);

    nats.stop();
    let before = target.requests();
    // While NATS is down most pending scrapes are in flight (sent, their ack not yet timed out):
    // they are pending all the same and must show in both gauges, in every reading.
    let (scraped, scrapes, bytes) =
        poll_until(WAIT, "five scrapes pending while NATS is down", || {
            let scraped = target.requests() - before;
            let text = relay.metrics_text().ok()?;
            let scrapes = metric_in(&text, "promrelay_outage_buffer_scrapes")?;
            let bytes = metric_in(&text, "promrelay_outage_buffer_bytes")?;
            assert!(
                (scrapes == 0.0) == (bytes == 0.0),
                "the gauges disagree: {scrapes} scrapes in {bytes} bytes"
            );
            (scrapes >= 5.0).then_some((scraped, scrapes, bytes))
        });
    // Each scrape costs its payload plus 256 bytes of bookkeeping.
    assert!(
        bytes >= scrapes * 256.0,
        "{bytes} bytes cannot hold {scrapes} scrapes"
    );
    // Every scrape of the app target since NATS went down is pending (but one being made), and
    // the relay's own job adds its own.
    assert!(
        scrapes + 1.0 >= scraped as f64,
        "{scraped} scrapes of the target since NATS went down, only {scrapes} pending"
    );
    relay
        .ensure_running()
        .expect("promrelay survives NATS being down");

    nats.restart();
    poll_until(
        WAIT,
        "both gauges back to 0 once the buffer drained",
        || {
            let text = relay.metrics_text().ok()?;
            let scrapes = metric_in(&text, "promrelay_outage_buffer_scrapes")?;
            let bytes = metric_in(&text, "promrelay_outage_buffer_bytes")?;
            (scrapes == 0.0 && bytes == 0.0).then_some(())
        },
    );
}

#[test]
fn sigterm_while_nats_is_down_exits_0_within_the_documented_bound() {
    let mut nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    // Poller and receiver both: each has its drain, and the lifecycle events their connection.
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("one", &target.url())])
        .monitor_port(free_port());
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();
    promrelay_tests::relay::wait_up(&pushgateway, &mut relay, "app", 1.0, WAIT);

    nats.stop();
    poll_until(WAIT, "scrapes pending while NATS is down", || {
        (metric(&relay, "promrelay_outage_buffer_scrapes")? >= 2.0).then_some(())
    });
    let signalled = Instant::now();
    relay.send_sigterm();
    let status = relay.wait_exit(SHUTDOWN_BOUND + SHUTDOWN_MARGIN);
    let took = signalled.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!(
            "promrelay still running {took:?} after SIGTERM (bound {SHUTDOWN_BOUND:?}); log:\n{}",
            relay.log()
        )
    });
    assert!(status.success(), "promrelay exited with {status}");
    eprintln!("SIGTERM with NATS down: exited 0 after {took:?}");
    let log = relay.log();
    assert!(
        log.contains("gave up flushing scrapes to NATS"),
        "the lost scrapes are reported; log:\n{log}"
    );
}
