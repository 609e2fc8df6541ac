//! A scrape whose message is larger than the server's `max_payload` (docs/guarantees.md) is
//! published as parts of one scrape (`promrelay_scrapes_split_total`) that the receiver joins:
//! it arrives whole (every series in the Pushgateway or Prometheus), never in pieces, and never
//! blocks the scrapes behind it. A real 200 000-series target (~20 MB of text) goes end to end
//! through remote_write into a real Prometheus.

use std::fmt::Write as _;
use std::time::Duration;

use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::{
    free_port, parse_samples, poll_until, Behaviour, NatsServer, Prometheus, Pushgateway, Relay,
    RelayConfig, TargetServer,
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

fn counter(relay: &Relay, name: &str) -> f64 {
    let Ok(text) = relay.metrics_text() else {
        return 0.0;
    };
    parse_samples(&text)
        .unwrap_or_default()
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

#[test]
fn a_scrape_larger_than_the_max_payload_arrives_whole_in_parts_and_others_still_flow() {
    let nats = NatsServer::start_with_config("max_payload: 65536\n");
    let pushgateway = Pushgateway::start();
    let big = TargetServer::start(Behaviour::Fixed(incompressible_scrape(20_000)));
    let small = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("big", &[("one", &big.url())])
        .job("small", &[("two", &small.url())])
        .monitor_port(free_port());
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();

    poll_until(
        WAIT,
        "the 20 000 series of the big scrape in the Pushgateway",
        || {
            let series = pushgateway.series_for("big");
            let big = series.iter().filter(|s| s.name == "big").count();
            (big == 20_000).then_some(())
        },
    );
    assert!(counter(&relay, "promrelay_scrapes_split_total") >= 1.0);
    assert_eq!(publishes(&relay, "too_large"), 0.0, "nothing dropped");
    poll_until(WAIT, "the small job's scrapes still arrive", || {
        (!pushgateway.series_for("small").is_empty()).then_some(())
    });
    // Every part was acked: nothing of the big scrape was given up in pieces.
    let partial: f64 = parse_samples(&relay.metrics_text().expect("metrics"))
        .unwrap_or_default()
        .iter()
        .filter(|s| s.label("outcome") == Some("partial"))
        .map(|s| s.value)
        .sum();
    assert_eq!(partial, 0.0);
    relay.ensure_running().expect("the relay keeps running");
}

/// A 200 000-series target, ~20 MB of text.
fn scrape_of_200k() -> String {
    let mut body = String::with_capacity(22 << 20);
    body.push_str("# HELP wide_series_value A wide target.\n# TYPE wide_series_value gauge\n");
    for i in 0..200_000u64 {
        let _ = writeln!(
            body,
            "wide_series_value{{shard=\"{}\",pod=\"pod-{:06}\",container=\"app-{}\",path=\"/api/v1/items/{}\"}} {}",
            i % 64,
            i,
            i % 7,
            i % 997,
            i * 3
        );
    }
    body
}

#[test]
fn a_200_000_series_scrape_reaches_prometheus_whole_through_remote_write() {
    let body = scrape_of_200k();
    assert!(body.len() > 18 << 20, "{} bytes", body.len());
    let nats = NatsServer::start();
    let prometheus = Prometheus::start_remote_write_receiver();
    let wide = TargetServer::start(Behaviour::Fixed(body));
    let mut config = RelayConfig::pipeline(&nats.url(), "http://127.0.0.1:1")
        .job_with(
            "wide",
            "scrape_interval: 20s\nscrape_timeout: 19s\n",
            &[("wide1", &wide.url())],
        )
        .monitor_port(free_port())
        .extra(&format!(
            "scrape_body_limit: 32MiB\nremote_write:\n  - url: {:?}\n",
            prometheus.remote_write_url()
        ));
    config.push_gateway = None;
    config.max_age = Some("600".into());
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();
    poll_until(
        Duration::from_secs(240),
        "200 000 series in Prometheus",
        || {
            prometheus
                .query_number("count(wide_series_value{job=\"wide\"})")
                .ok()
                .flatten()
                .filter(|count| *count == 200_000.0)
        },
    );
    assert!(counter(&relay, "promrelay_scrapes_split_total") >= 1.0);
    assert_eq!(publishes(&relay, "too_large"), 0.0);
    relay.ensure_running().expect("the relay keeps running");
}
