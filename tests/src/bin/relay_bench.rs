//! End-to-end bench: the whole relay (poller + receiver in one process, release build) against
//! real nats-server and Pushgateway, relaying a target of 1 000 and then 100 000 series.
//!
//! Reports the relay's steady-state resident memory per relayed series — (RSS at 100 000 series
//! − RSS at 1 000 series) / 99 000, both measured in this run — and the relay's own timings
//! (scrape, encode, publish, push) from its `/metrics`. Never run by the tests; run it with
//! `cargo run --release -p promrelay-tests --bin relay_bench` after
//! `cargo build --release -p promrelay` (it uses `target/release/promrelay`). With
//! `RELAY_BENCH_RELABEL=1` the job runs the shipped relabel filter with ten typical rules.

use std::fmt::Write as _;
use std::time::Duration;

use promrelay_tests::{
    free_port, parse_samples, poll_until, relay::workspace_root, Behaviour, NatsServer,
    Pushgateway, Relay, RelayConfig, TargetServer,
};

/// A scrape of `series` gauges, 200 per family, three labels each.
fn synthetic(series: usize) -> String {
    let mut text = String::with_capacity(series * 80);
    for index in 0..series {
        let family = index / 200;
        if index % 200 == 0 {
            let _ = writeln!(text, "# HELP bench_metric_{family} Relay bench family.");
            let _ = writeln!(text, "# TYPE bench_metric_{family} gauge");
        }
        let _ = writeln!(
            text,
            "bench_metric_{family}{{device=\"d{}\",host=\"h{}\",rack=\"r{}\"}} {}",
            index % 200,
            index % 13,
            index % 7,
            index as f64 * 0.5
        );
    }
    text
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Sum of a metric's samples whose name is `name` (and labels contain `label` if given).
fn metric_sum(text: &str, name: &str, label: Option<(&str, &str)>) -> f64 {
    parse_samples(text)
        .unwrap_or_default()
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| label.is_none_or(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
        .sum()
}

struct Run {
    /// Median resident memory over the measured window (the steady state).
    rss: u64,
    peak: u64,
    scrape_ms: f64,
    encode_ms: f64,
    publish_ms: f64,
    push_ms: f64,
}

fn mean_ms(text: &str, base: &str) -> f64 {
    let sum = metric_sum(text, &format!("{base}_sum"), None);
    let count = metric_sum(text, &format!("{base}_count"), None);
    if count > 0.0 {
        sum / count * 1000.0
    } else {
        f64::NAN
    }
}

fn run(series: usize) -> Run {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed(synthetic(series)));
    let monitor = free_port();
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job_with("bench", &filter_settings(), &[("t1", &target.url())])
        .monitor_port(monitor)
        .extra("scrape_body_limit: 64MiB\n");
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();
    let pushes = |relay: &Relay| {
        relay.metrics_text().map_or(0.0, |t| {
            metric_sum(
                &t,
                "promrelay_receiver_messages_total",
                Some(("outcome", "pushed")),
            )
        })
    };
    // Warm up: ten pushes, then measure over ten more.
    poll_until(Duration::from_secs(120), "ten pushes", || {
        (pushes(&relay) >= 10.0).then_some(())
    });
    let pid = relay.pid().expect("relay is running");
    let mut samples = Vec::new();
    poll_until(Duration::from_secs(120), "twenty pushes", || {
        samples.push(rss_bytes(pid));
        (pushes(&relay) >= 20.0).then_some(())
    });
    samples.sort_unstable();
    let median = samples[samples.len() / 2];
    let peak = samples.last().copied().unwrap_or(0);
    let text = relay.metrics_text().expect("metrics");
    let _ = relay.sigterm();
    Run {
        rss: median,
        peak,
        scrape_ms: mean_ms(&text, "promrelay_scrape_duration_seconds"),
        encode_ms: mean_ms(&text, "promrelay_encode_duration_seconds"),
        publish_ms: mean_ms(&text, "promrelay_publish_duration_seconds"),
        push_ms: mean_ms(&text, "promrelay_receiver_push_duration_seconds"),
    }
}

/// With `RELAY_BENCH_RELABEL=1`: the shipped relabel filter (`target/filters/relabel.wasm`) with
/// the ten rules of `filters/relabel/benches/typical_rules.yaml` in the job's chain (its memory
/// limit raised: a 100 000-series scrape needs more than the 64 MiB default).
fn filter_settings() -> String {
    if std::env::var_os("RELAY_BENCH_RELABEL").is_none() {
        return String::new();
    }
    let root = workspace_root();
    let rules = std::fs::read_to_string(root.join("filters/relabel/benches/typical_rules.yaml"))
        .expect("the typical rules are committed");
    let mut settings = format!(
        "filters:\n  - name: relabel\n    module: {}\n    limits: {{memory: 512MiB, time: 30s}}\n    config:\n",
        root.join("target/filters/relabel.wasm").display()
    );
    for line in rules.lines().filter(|line| !line.starts_with('#')) {
        settings.push_str("      ");
        settings.push_str(line);
        settings.push('\n');
    }
    settings
}

fn main() {
    if std::env::var_os("PROMRELAY_BIN").is_none() {
        let release = workspace_root().join("target/release/promrelay");
        std::env::set_var("PROMRELAY_BIN", &release);
    }
    let small = run(1_000);
    let large = run(100_000);
    let per_series = (large.rss as f64 - small.rss as f64) / 99_000.0;
    println!("| series | median RSS | peak RSS | scrape | encode | publish | push |");
    println!("|---|---|---|---|---|---|---|");
    for (series, r) in [(1_000, &small), (100_000, &large)] {
        println!(
            "| {series} | {:.1} MiB | {:.1} MiB | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            r.rss as f64 / 1048576.0,
            r.peak as f64 / 1048576.0,
            r.scrape_ms,
            r.encode_ms,
            r.publish_ms,
            r.push_ms
        );
    }
    println!("\nresident memory per relayed series (median RSS): {per_series:.0} bytes");
}
