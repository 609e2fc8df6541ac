//! The shipped relabel filter on large targets with the relay's default filter limits: five
//! 5 000-series targets scraped together, through ten typical rules, are relabelled every time —
//! first from scratch, then from the filter's outcome cache — and never dropped for running past
//! the time limit (the old 50 ms default dropped such scrapes).

use std::fmt::Write as _;

use promrelay_tests::relay::workspace_root;
use promrelay_tests::{
    free_port, poll_until, Behaviour, NatsServer, Pushgateway, Relay, RelayConfig, TargetServer,
};

use super::filters::ARRIVAL;

/// A node_exporter-shaped scrape of `series` series: eight families with typical label sets
/// (the shapes of `filters/relabel/benches/relabel.rs`), each series unique.
fn large_scrape(series: usize) -> String {
    let shapes: [(&str, &str, &[&str]); 8] = [
        ("node_cpu_seconds_total", "counter", &["cpu", "mode"]),
        ("node_network_receive_bytes_total", "counter", &["device"]),
        (
            "node_filesystem_avail_bytes",
            "gauge",
            &["device", "fstype", "mountpoint"],
        ),
        ("go_gc_duration_seconds", "untyped", &["quantile"]),
        ("node_disk_io_time_seconds_total", "counter", &["device"]),
        ("node_scrape_collector_success", "gauge", &["collector"]),
        ("process_resident_memory_bytes", "gauge", &[]),
        ("node_memory_MemFree_bytes", "gauge", &[]),
    ];
    let devices = ["eth0", "veth12ab", "sda", "docker0", "/dev/sda1", "tmpfs"];
    let mountpoints = ["/", "/run", "/home", "/sys/fs/cgroup", "/var"];
    let mut text = String::new();
    for (shape, (name, kind, keys)) in shapes.iter().enumerate() {
        writeln!(text, "# HELP {name} {name} help.\n# TYPE {name} {kind}").expect("to a String");
        for index in (shape..series).step_by(shapes.len()) {
            let mut labels: Vec<(&str, String)> = keys
                .iter()
                .map(|key| {
                    let value = match *key {
                        "cpu" => (index % 64).to_string(),
                        "mode" => ["idle", "user", "system", "iowait"][index % 4].to_owned(),
                        "device" => devices[index % devices.len()].to_owned(),
                        "mountpoint" => mountpoints[index % mountpoints.len()].to_owned(),
                        "fstype" => "ext4".to_owned(),
                        "quantile" => ["0", "0.25", "0.5", "1"][index % 4].to_owned(),
                        _ => format!("c{}", index % 40),
                    };
                    (*key, value)
                })
                .collect();
            labels.push(("uniq", index.to_string()));
            labels.sort();
            let labels: Vec<String> = labels
                .iter()
                .map(|(key, value)| format!("{key}=\"{value}\""))
                .collect();
            writeln!(text, "{name}{{{}}} {index}", labels.join(",")).expect("to a String");
        }
    }
    text
}

/// The benchmark's ten typical rules (`filters/relabel/benches/typical_rules.yaml`), indented
/// for a filter's `config:`.
fn typical_rules(indent: &str) -> String {
    let path = workspace_root().join("filters/relabel/benches/typical_rules.yaml");
    let rules = std::fs::read_to_string(&path).expect("read typical_rules.yaml");
    rules
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| format!("{indent}{line}\n"))
        .collect()
}

fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line.contains("filter=\"relabel\""))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Targets scraped at once: the filter's calls overlap on the two cores, as in a site's relay.
const TARGETS: usize = 5;

#[test]
fn five_5000_series_targets_are_relabelled_within_the_default_filter_limits() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let body = large_scrape(5_000);
    let targets: Vec<TargetServer> = (0..TARGETS)
        .map(|_| TargetServer::start(Behaviour::Fixed(body.clone())))
        .collect();
    let names: Vec<String> = (0..TARGETS)
        .map(|index| format!("big{index}.example.org:9100"))
        .collect();
    let urls: Vec<String> = targets.iter().map(TargetServer::url).collect();
    let named: Vec<(&str, &str)> = names
        .iter()
        .zip(&urls)
        .map(|(name, url)| (name.as_str(), url.as_str()))
        .collect();
    // No `limits:`: the defaults apply. `on_error` is the default `drop` too, so a call that
    // ran past the time limit would lose the scrape.
    let settings = format!(
        "scrape_interval: 2s\nfilters:\n  - name: relabel\n    module: {:?}\n    config:\n{}",
        super::filters::shipped("relabel"),
        typical_rules("      ")
    );
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .monitor_port(free_port())
        .job_with("big", &settings, &named);
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();
    // Three calls per target: the first relabels every series, later ones use the cache.
    let metrics = poll_until(ARRIVAL, "three relabel calls per target", || {
        if let Err(error) = relay.ensure_running() {
            panic!("{error:#}");
        }
        let metrics = relay.metrics_text().ok()?;
        let calls = metric(&metrics, "promrelay_filter_calls_total");
        (calls >= (3 * TARGETS) as f64).then_some(metrics)
    });
    assert_eq!(
        metric(&metrics, "promrelay_filter_errors_total"),
        0.0,
        "filter errors with the default limits:\n{}",
        relay.log()
    );
    // What the rules made of it reached the Pushgateway: every kept series carries `site` and
    // `host`, the dropped families are gone, the renamed one is there.
    let pushed = poll_until(ARRIVAL, "the relabelled scrape in the Pushgateway", || {
        let pushed: Vec<_> = pushgateway
            .pushed_series_for("big")
            .into_iter()
            .filter(|s| s.label("instance") == Some(names[0].as_str()))
            .collect();
        (!pushed.is_empty()).then_some(pushed)
    });
    assert!(pushed.iter().all(|s| s.label("site") == Some("dc1")));
    assert!(pushed
        .iter()
        .all(|s| s.label("host").is_some() && s.label("fstype").is_none()));
    assert!(!pushed.iter().any(|s| s.name.starts_with("go_gc")));
    let free = pushed
        .iter()
        .filter(|s| s.name == "node_memory_MemFree_bytes")
        .count();
    assert_eq!(
        free,
        5_000 / 8,
        "one node_memory_MemFree_bytes per eighth series"
    );
    assert!(pushed.iter().any(|s| s.name == "net_receive_bytes_total"));
}
