//! The dashboard and alert rules that ship (issue 10, item 4): `packaging/alerts.yaml` passes
//! `promtool check rules` and its unit tests; every metric the alerts and
//! `packaging/grafana/promrelay.json` name is on a running relay's `/metrics` (a poller and
//! receiver against real nats-server and Pushgateway, with a filter that works and one that
//! fails); and every dashboard query is valid PromQL to a real Prometheus scraping that relay.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use promrelay_tests::relay::{wait_up, workspace_root};
use promrelay_tests::target::SMALL_BODY;
use promrelay_tests::{
    free_port, parse_samples, poll_until, Behaviour, NatsServer, Prometheus, Pushgateway, Relay,
    RelayConfig, TargetServer,
};

const PROMTOOL: &str = "/usr/bin/promtool";
const WAIT: Duration = Duration::from_secs(90);

fn packaging(path: &str) -> PathBuf {
    workspace_root().join("packaging").join(path)
}

fn promtool(args: &[&str]) -> String {
    let output = Command::new(PROMTOOL)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("run {PROMTOOL} (Debian package prometheus): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn the_shipped_alert_rules_pass_promtool_check_rules_and_their_unit_tests() {
    let checked = promtool(&["check", "rules", "packaging/alerts.yaml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "packaging/alerts.test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    // Every alert has a `for:` or is about lost data, and every one has both annotations.
    let rules = std::fs::read_to_string(packaging("alerts.yaml")).expect("read alerts.yaml");
    let alerts = rules.matches("- alert: ").count();
    assert!(alerts >= 5, "{alerts} alerts");
    assert_eq!(rules.matches("summary: ").count(), alerts);
    assert_eq!(rules.matches("description: ").count(), alerts);
}

/// Every `promrelay_…` metric name in `text` (lower case, so alert names are not taken).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = text[from..].find("promrelay_") {
        let start = from + found;
        let before = start.checked_sub(1).map(|i| bytes[i]);
        let mut end = start + "promrelay_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            names.insert(text[start..end].to_owned());
        }
        from = end;
    }
    names
}

/// The `expr` of every panel target of the dashboard, with Grafana's variables filled in.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<String> {
    let mut queries = Vec::new();
    let mut stack = vec![dashboard];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(expr) = map.get("expr").and_then(|e| e.as_str()) {
                    queries.push(
                        expr.replace("$__rate_interval", "1m")
                            .replace("$job", ".+")
                            .replace("$instance", ".+"),
                    );
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    queries
}

#[test]
fn every_metric_of_the_dashboard_and_the_alerts_is_on_a_running_relays_metrics() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(SMALL_BODY.into()));
    let relabel = workspace_root().join("target/filters/relabel.wasm");
    let failing = workspace_root().join("tests/wat/guest_error.wat");
    let port = free_port();
    // A shipped filter on one job, a failing one on another (both filter families get series),
    // and a target that is down.
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job_with(
            "app",
            &format!(
                "filters:\n  - name: relabel\n    module: {:?}\n    config:\n      relabel_configs:\n        - {{ source_labels: [__name__], regex: 'unused_.*', action: drop }}\n",
                relabel.display().to_string()
            ),
            &[("one", &target.url())],
        )
        .job_with(
            "broken",
            &format!(
                "filters:\n  - name: failing\n    module: {:?}\n",
                failing.display().to_string()
            ),
            &[("two", &target.url())],
        )
        // Nothing listens there: the scrape error families get their series too.
        .job(
            "down",
            &[("gone", &format!("http://127.0.0.1:{}/metrics", free_port()))],
        )
        .monitor_port(port);
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();
    wait_up(&pushgateway, &mut relay, "app", 1.0, WAIT);

    let dashboard_text =
        std::fs::read_to_string(packaging("grafana/promrelay.json")).expect("read the dashboard");
    let dashboard: serde_json::Value =
        serde_json::from_str(&dashboard_text).expect("the dashboard is JSON");
    let alerts = std::fs::read_to_string(packaging("alerts.yaml")).expect("read alerts.yaml");
    let used: BTreeSet<String> = metric_names(&dashboard_text)
        .into_iter()
        .chain(metric_names(&alerts))
        .collect();
    assert!(used.len() >= 15, "only {used:?}");

    // Every name is a sample on /metrics once the relay scraped, filtered, published, pushed.
    let present = |text: &str| -> BTreeSet<String> {
        parse_samples(text)
            .expect("the relay's /metrics parses")
            .into_iter()
            .map(|sample| sample.name)
            .collect()
    };
    let metrics = poll_until(
        WAIT,
        "a filter error and a push on the relay's /metrics",
        || {
            let text = relay.metrics_text().ok()?;
            let names = present(&text);
            (names.contains("promrelay_filter_errors_total")
                && names.contains("promrelay_receiver_pushes_total")
                && names.contains("promrelay_scrape_target_errors_total"))
            .then_some(text)
        },
    );
    let on_metrics = present(&metrics);
    let missing: Vec<&String> = used.difference(&on_metrics).collect();
    assert!(
        missing.is_empty(),
        "not on /metrics: {missing:?}\n{metrics}"
    );

    // Every dashboard query is PromQL a real Prometheus accepts, against the relay's metrics.
    let prometheus = Prometheus::start_with_config(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: promrelay\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    ));
    poll_until(WAIT, "Prometheus to scrape the relay", || {
        prometheus
            .query_number("up{job=\"promrelay\"}")
            .ok()
            .flatten()
            .filter(|up| *up == 1.0)
    });
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "{} queries", queries.len());
    for query in &queries {
        if let Err(error) = prometheus.query(query) {
            panic!("the dashboard's query {query:?} is refused: {error:#}");
        }
    }
    // The datasource is a template variable, so the dashboard imports into any Grafana.
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    assert!(variables
        .iter()
        .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"));
    assert!(!dashboard_text.contains("\"uid\": \"prometheus\""));
}
