//! What an operator reads: error messages that say what to do (a nats-server without JetStream),
//! said once (a filter's bad config, at start and on reload), and the relay's own metrics
//! printing cleanly (histogram bounds as short decimals).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use promrelay_tests::relay::{relay_binary, wait_up, workspace_root};
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
    assert_eq!(
        explained.len(),
        2,
        "poller and receiver explain it; log:\n{log}"
    );
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
            let (name, labels) = line.split_once('{')?;
            // The `le` label itself, not a label whose name ends in "le" (`role`).
            let bound = labels
                .split(',')
                .find_map(|label| label.strip_prefix("le=\""))?
                .split('"')
                .next()?;
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

/// The shipped `add-labels` filter (built by `scripts/build-filters.sh` when missing): its config
/// is typed, so a misspelt key is refused by serde in `init`.
fn add_labels() -> PathBuf {
    let module = workspace_root().join("target/filters/add-labels.wasm");
    if !module.exists() {
        let status = Command::new(workspace_root().join("scripts/build-filters.sh"))
            .arg("add-labels")
            .status()
            .expect("run scripts/build-filters.sh add-labels");
        assert!(
            status.success(),
            "scripts/build-filters.sh add-labels failed"
        );
    }
    module
}

/// A poller through `nats_url` with a `monitor_port`.
fn poller(nats_url: &str) -> RelayConfig {
    let mut config = RelayConfig::pipeline(nats_url, "http://127.0.0.1:1")
        .job("app", &[("one", "http://127.0.0.1:1/metrics")])
        .monitor_port(free_port());
    config.receiver_stream = None;
    config.push_gateway = None;
    config
}

/// `config` with the global filter `site-tag` (add-labels) configured by `labels` (YAML).
fn with_site_tag(config: &RelayConfig, labels: &str) -> String {
    config
        .clone()
        .extra(&format!(
            "filters:\n  - name: site-tag\n    module: {:?}\n    config: {labels}\n",
            add_labels()
        ))
        .to_yaml()
}

/// What a misspelt key of the filter's config reads like: one "bad config", serde's words, no
/// position in the JSON the operator never wrote.
const STIE_REFUSED: &str = "filter global/site-tag: bad config: unknown field `stie`, expected \
                            `labels` or `overwrite`";

#[test]
fn a_filters_bad_config_stops_the_start_saying_bad_config_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("promrelay.yaml");
    let config = with_site_tag(&poller("nats://127.0.0.1:1"), "{ stie: ams1 }");
    std::fs::write(&path, config).expect("write the config");
    let output = Command::new(relay_binary())
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "off")
        .output()
        .expect("run promrelay");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a bad filter config stops the start"
    );
    assert_eq!(
        stderr.lines().last(),
        Some(format!("promrelay: {}: {STIE_REFUSED}", path.display()).as_str()),
        "stderr:\n{stderr}"
    );
}

#[test]
fn a_filters_bad_config_on_reload_is_logged_saying_bad_config_once() {
    let nats = NatsServer::start();
    let config = poller(&nats.url());
    let mut relay = Relay::start_command(
        &["poller"],
        &with_site_tag(&config, "{ labels: { site: ams1 } }"),
    );
    // The monitor port answers while the filters still compile: the relay catches a SIGHUP
    // from its first moment and reloads once started.
    relay.wait_healthy();
    relay.rewrite_config(&with_site_tag(&config, "{ stie: ams1 }"));
    relay.sighup();
    relay.wait_for_log("filter reload refused", WAIT);
    let log = relay.log();
    let line = log
        .lines()
        .find(|line| line.contains("filter reload refused"))
        .expect("the refusal is logged");
    assert!(
        line.ends_with(&format!(
            "filter reload refused, the previous chains stay in force: {STIE_REFUSED}"
        )),
        "{line}"
    );
    relay.ensure_running().expect("the relay keeps running");
}
