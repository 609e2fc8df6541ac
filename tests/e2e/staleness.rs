//! Staleness markers (issue 8): a series a target stops exposing, and every series of a target
//! that goes down, ends in a real Prometheus (through remote_write) at once, as with Prometheus'
//! own scrapes, instead of staying visible for the 5-minute lookback. The Pushgateway gets no
//! marker: a push replaces its group, so the series is simply gone there.

use std::time::Duration;

use promrelay_tests::{
    poll_until, Behaviour, NatsServer, Prometheus, Pushgateway, Relay, RelayConfig, TargetServer,
};

/// Far below Prometheus' 5-minute lookback: passing within it needs the markers.
const WAIT: Duration = Duration::from_secs(90);

const BOTH: &str = "# TYPE demo_b gauge\ndemo_b{x=\"1\"} 2\ndemo_b{x=\"2\"} 3\n\
# TYPE demo_a gauge\ndemo_a 1\n";
const ONE_GONE: &str = "# TYPE demo_b gauge\ndemo_b{x=\"1\"} 2\n# TYPE demo_a gauge\ndemo_a 1\n";

fn count(prometheus: &Prometheus, selector: &str) -> Option<f64> {
    // `count` of nothing is an empty result: 0.
    prometheus
        .query_number(&format!("count({selector}) or vector(0)"))
        .ok()
        .flatten()
}

#[test]
fn a_vanished_series_and_a_target_gone_down_end_in_prometheus_at_once() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let prometheus = Prometheus::start_remote_write_receiver();
    let target = TargetServer::start(Behaviour::Fixed(BOTH.into()));
    let mut config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("stale", &[("t1", &target.url())])
        .monitor_port(promrelay_tests::free_port())
        .extra(&format!(
            "remote_write:\n  - url: {:?}\n",
            prometheus.remote_write_url()
        ));
    config.max_age = Some("600".into());
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();

    poll_until(WAIT, "both demo_b series in Prometheus", || {
        (count(&prometheus, "demo_b{job=\"stale\"}") == Some(2.0)).then_some(())
    });
    target.set_behaviour(Behaviour::Fixed(ONE_GONE.into()));
    poll_until(
        WAIT,
        "demo_b{x=\"2\"} ended by its staleness marker",
        || (count(&prometheus, "demo_b{job=\"stale\"}") == Some(1.0)).then_some(()),
    );
    assert_eq!(
        count(&prometheus, "demo_b{job=\"stale\",x=\"1\"}"),
        Some(1.0)
    );
    poll_until(
        WAIT,
        "the Pushgateway holds only the remaining series",
        || {
            let series = pushgateway.series_for("stale");
            let b: Vec<_> = series.iter().filter(|s| s.name == "demo_b").collect();
            (b.len() == 1 && b[0].label("x") == Some("1")).then_some(())
        },
    );
    assert!(
        pushgateway
            .series_for("stale")
            .iter()
            .all(|sample| !sample.value.is_nan()),
        "no marker reaches the Pushgateway"
    );

    target.set_behaviour(Behaviour::Status(500));
    poll_until(WAIT, "every series of the target down ended, up 0", || {
        (count(&prometheus, "{job=\"stale\",__name__=~\"demo_.*\"}") == Some(0.0)
            && prometheus.query_number("up{job=\"stale\"}").ok().flatten() == Some(0.0))
        .then_some(())
    });
    let markers: f64 = promrelay_tests::parse_samples(&relay.metrics_text().expect("metrics"))
        .unwrap_or_default()
        .iter()
        .filter(|s| s.name == "promrelay_stale_markers_total")
        .map(|s| s.value)
        .sum();
    assert!(
        markers >= 3.0,
        "one marker for x=2, two when the target went down: {markers}"
    );
    relay.ensure_running().expect("the relay keeps running");
}
