//! Prometheus-style targets end to end: `file_sd_configs` files rewritten while the relay runs
//! (real node_exporters appear and disappear in the real Pushgateway, with no reload), their
//! labels on the pushed series, a broken file keeping its last good targets, and
//! `static_configs` beside the original's `targets`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use promrelay_tests::{
    free_port, parse_samples, poll_until, relay_binary, NatsServer, NodeExporter, Pushgateway,
    Relay, RelayConfig,
};

use crate::pipeline::{group, push_time};

/// Long enough for a debug-built relay to start, scrape, publish, consume and push on a loaded
/// two-core machine; only reached when something is broken.
const ARRIVAL: Duration = Duration::from_secs(90);

/// A relay (poller and receiver, 1 s scrapes, monitor port) whose job `node` discovers its
/// targets from `pattern`, re-read hourly: a prompt change can only come from watching.
fn relay_discovering(nats: &NatsServer, pushgateway: &Pushgateway, pattern: &Path) -> Relay {
    let settings = format!(
        "file_sd_configs:\n  - files: [{}]\n    refresh_interval: 1h\n",
        serde_json::to_string(&pattern.display().to_string()).expect("a path is JSON")
    );
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .monitor_port(free_port())
        .job_with("node", &settings, &[]);
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();
    relay
}

/// Writes `text` beside `path` and renames it into place, as Puppet and Ansible do.
fn write_atomically(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).expect("write the file_sd file");
    std::fs::rename(&temporary, path).expect("rename the file_sd file into place");
}

/// A file_sd JSON file naming `exporters` (by address), with the labels of `labels`.
fn targets_json(exporters: &[&NodeExporter], labels: &str) -> String {
    let addresses: Vec<String> = exporters
        .iter()
        .map(|exporter| format!("{:?}", exporter.host_port()))
        .collect();
    format!(
        "[{{\"targets\": [{}], \"labels\": {{{labels}}}}}]\n",
        addresses.join(", ")
    )
}

/// Waits until the group (node, `instance`) in the Pushgateway has `up 1`.
fn wait_up(pushgateway: &Pushgateway, relay: &mut Relay, instance: &str) {
    poll_until(
        ARRIVAL,
        &format!("up 1 of job=node instance={instance} in the Pushgateway"),
        || {
            relay.ensure_running().expect("promrelay keeps running");
            group(pushgateway, "node", instance)
                .into_iter()
                .find(|s| s.name == "up" && s.value == 1.0)
        },
    );
}

/// The value of the relay's own gauge or counter `name` with `job="node"`.
fn relay_metric(relay: &Relay, name: &str) -> Option<f64> {
    let text = relay.metrics_text().ok()?;
    parse_samples(&text)
        .ok()?
        .into_iter()
        .find(|s| s.name == name && s.label("job") == Some("node"))
        .map(|s| s.value)
}

/// Waits until the group `instance` has been pushed again after `after` (Pushgateway time).
fn wait_pushed_after(pushgateway: &Pushgateway, instance: &str, after: f64) -> f64 {
    poll_until(
        ARRIVAL,
        &format!("a push of job=node instance={instance} after {after}"),
        || push_time(pushgateway, "node", instance).filter(|time| *time > after),
    )
}

#[test]
fn node_exporters_added_to_and_removed_from_a_file_sd_file_start_and_stop_without_a_reload() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let first = NodeExporter::start();
    let second = NodeExporter::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("node.json");
    write_atomically(&file, &targets_json(&[&first], ""));
    let mut relay = relay_discovering(&nats, &pushgateway, &dir.path().join("*.json"));
    wait_up(&pushgateway, &mut relay, &first.host_port());

    // Added: the second exporter is scraped, the first keeps going, no reload happened.
    write_atomically(&file, &targets_json(&[&first, &second], ""));
    wait_up(&pushgateway, &mut relay, &second.host_port());
    poll_until(ARRIVAL, "promrelay_targets{job=node} 2", || {
        (relay_metric(&relay, "promrelay_targets") == Some(2.0)).then_some(())
    });

    // Removed: its scrape task stops. Proven by the kept target being pushed twice more, twice,
    // while the removed one's push time stays where it was after the first of those rounds.
    write_atomically(&file, &targets_json(&[&second], ""));
    poll_until(ARRIVAL, "promrelay_targets{job=node} 1", || {
        (relay_metric(&relay, "promrelay_targets") == Some(1.0)).then_some(())
    });
    assert_eq!(relay_metric(&relay, "promrelay_sd_targets"), Some(1.0));
    let kept = second.host_port();
    let removed = first.host_port();
    let mut time = push_time(&pushgateway, "node", &kept).unwrap_or_default();
    for _ in 0..2 {
        time = wait_pushed_after(&pushgateway, &kept, time);
    }
    let last_of_removed = push_time(&pushgateway, "node", &removed);
    for _ in 0..2 {
        time = wait_pushed_after(&pushgateway, &kept, time);
    }
    assert_eq!(
        push_time(&pushgateway, "node", &removed),
        last_of_removed,
        "the removed target was pushed again"
    );
    let log = relay.log();
    assert!(
        !log.contains("SIGHUP") && !log.contains("reloaded"),
        "{log}"
    );
    assert!(log.contains("file_sd targets changed"), "{log}");
}

#[test]
fn labels_from_a_file_sd_file_reach_the_pushed_series_and_up() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let exporter = NodeExporter::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("fra1.yml");
    write_atomically(
        &file,
        &format!(
            "- targets: [{:?}]\n  labels:\n    dc: fra1\n    rack: r7\n    instance: node-a\n    \
             __metrics_path__: /metrics\n    __hidden: not-a-label\n",
            exporter.host_port()
        ),
    );
    let mut relay = relay_discovering(&nats, &pushgateway, &file);
    wait_up(&pushgateway, &mut relay, "node-a");
    let series = group(&pushgateway, "node", "node-a");
    let load = series
        .iter()
        .find(|s| s.name == "node_load1")
        .expect("node_exporter's node_load1 was pushed");
    assert_eq!(load.label("dc"), Some("fra1"));
    assert_eq!(load.label("rack"), Some("r7"));
    assert_eq!(load.label("__hidden"), None);
    let unlabelled: Vec<&str> = series
        .iter()
        .filter(|s| s.label("dc") != Some("fra1"))
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        unlabelled.is_empty(),
        "series without dc=fra1: {unlabelled:?}"
    );
}

#[test]
fn a_broken_file_sd_file_keeps_its_last_good_targets_and_says_why() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let exporter = NodeExporter::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("node.json");
    write_atomically(&file, &targets_json(&[&exporter], "\"dc\": \"fra1\""));
    let mut relay = relay_discovering(&nats, &pushgateway, &dir.path().join("*.json"));
    let instance = exporter.host_port();
    wait_up(&pushgateway, &mut relay, &instance);

    // Half written, as a writer that does not rename would leave it.
    std::fs::write(&file, "[{\"targets\": [\"127.0.0.1:1\"],\n  \"labels\": ").expect("write");
    relay.wait_for_log(
        "file_sd file unusable, keeping its last good targets",
        ARRIVAL,
    );
    let log = relay.log();
    assert!(
        log.contains("node.json:2: YAML syntax"),
        "the file and its line are named:\n{log}"
    );
    poll_until(
        ARRIVAL,
        "promrelay_sd_file_errors_total{job=node} > 0",
        || relay_metric(&relay, "promrelay_sd_file_errors_total").filter(|count| *count > 0.0),
    );
    let seen = push_time(&pushgateway, "node", &instance).unwrap_or_default();
    let later = wait_pushed_after(&pushgateway, &instance, seen);
    wait_pushed_after(&pushgateway, &instance, later);
    assert!(group(&pushgateway, "node", "127.0.0.1:1").is_empty());

    // check-config reads the file as the daemon does and fails naming it.
    let check = Command::new(relay_binary())
        .args(["check-config", "--config"])
        .arg(relay.config_path())
        .output()
        .expect("run promrelay check-config");
    let output = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "{output}");
    assert!(
        output.contains("jobs.node: ") && output.contains("node.json:2: YAML syntax"),
        "{output}"
    );
}

#[test]
fn static_configs_targets_are_scraped_with_their_labels_beside_the_original_targets() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let grouped = NodeExporter::start();
    let original = NodeExporter::start();
    let settings = format!(
        "static_configs:\n  - targets: [{:?}]\n    labels: {{ rack: r1 }}\n",
        grouped.host_port()
    );
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url()).job_with(
        "node",
        &settings,
        &[("original", &original.metrics_url())],
    );
    let mut relay = Relay::start_config(&config);
    wait_up(&pushgateway, &mut relay, &grouped.host_port());
    wait_up(&pushgateway, &mut relay, "original");
    let rack = |instance: &str| {
        group(&pushgateway, "node", instance)
            .into_iter()
            .find(|s| s.name == "node_load1")
            .map(|s| s.label("rack").map(str::to_owned))
    };
    assert_eq!(rack(&grouped.host_port()), Some(Some("r1".to_owned())));
    assert_eq!(
        rack("original"),
        Some(None),
        "the original's targets have no group labels"
    );
}
