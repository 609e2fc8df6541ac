//! What an operator reads: error messages that say what to do (a nats-server without JetStream),
//! and the relay's own metrics printing cleanly (histogram bounds as short decimals).

use std::time::Duration;

use promrelay_tests::relay::{wait_up, workspace_root};
use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::{
    free_port, Behaviour, NatsServer, Pushgateway, Relay, RelayConfig, TargetServer,
};

const WAIT: Duration = Duration::from_secs(90);

#[test]
fn a_nats_server_without_jetstream_is_named_with_how_to_enable_it() {
    let nats = NatsServer::start_without_jetstream();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    // Poller and receiver both look the stream up: each must say the same.
    let config = RelayConfig::pipeline(&nats.url(), "http://127.0.0.1:1")
        .job("app", &[("one", &target.url())]);
    let relay = Relay::start_config(&config);
    relay.wait_for_log("JetStream stream not ready, buffering scrapes", WAIT);
    relay.wait_for_log("receiver cannot consume", WAIT);
    let log = relay.log();
    let explained: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("JetStream is not enabled on the NATS server"))
        .collect();
    assert_eq!(explained.len(), 2, "poller and receiver explain it; log:\n{log}");
    for line in explained {
        assert!(
            line.contains("nats-server with -js") && line.contains("`jetstream {}`"),
            "says how to enable JetStream: {line}"
        );
    }
    assert!(
        !log.contains("requested JetStream resource does not exist"),
        "the client's misleading words are gone; log:\n{log}"
    );
}

/// `le` as Prometheus prints its own: digits, at most six decimals, or `+Inf`.
fn short_decimal(bound: &str) -> bool {
    if bound == "+Inf" {
        return true;
    }
    let (whole, fraction) = match bound.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (bound, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && fraction.is_none_or(|f| digits(f) && f.len() <= 6)
}

#[test]
fn every_histogram_bound_on_the_relays_metrics_is_a_short_decimal() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    // A filter, a poller and a receiver: every histogram family gets its series.
    let pass = workspace_root().join("tests/wat/pass.wat");
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("one", &target.url())])
        .monitor_port(free_port())
        .extra(&format!("filters:\n  - name: pass\n    module: {pass:?}\n"));
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();
    wait_up(&pushgateway, &mut relay, "app", 1.0, WAIT);
    let text = relay.metrics_text().expect("GET /metrics");

    let bounds: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|line| {
            let name = line.split(['{', ' ']).next()?;
            let bound = line.split_once("le=\"")?.1.split('"').next()?;
            Some((name, bound))
        })
        .collect();
    for family in [
        "promrelay_filter_call_duration_seconds_bucket",
        "promrelay_scrape_duration_seconds_bucket",
        "promrelay_publish_duration_seconds_bucket",
    ] {
        assert!(
            bounds.iter().any(|(name, _)| *name == family),
            "{family} is on /metrics:\n{text}"
        );
    }
    let noisy: Vec<String> = bounds
        .iter()
        .filter(|(_, bound)| !short_decimal(bound))
        .map(|(name, bound)| format!("{name}{{le=\"{bound}\"}}"))
        .collect();
    assert!(noisy.is_empty(), "bounds with float noise: {noisy:?}");
}

#[test]
fn the_short_decimal_check_refuses_float_noise() {
    for good in ["0.005", "1.0", "10", "0.000025", "+Inf"] {
        assert!(short_decimal(good), "{good}");
    }
    for bad in ["0.000030000000000000005", "1e-5", "", ".5", "-1", "Inf"] {
        assert!(!short_decimal(bad), "{bad}");
    }
}
