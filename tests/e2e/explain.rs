//! Explaining a filter chain: `promrelay filter run --explain SELECTOR` on a real node_exporter
//! scrape through a relay config's chain (the shipped relabel with keep, drop, replace and
//! labeldrop rules, then the shipped add-labels, which offers no trace), and the monitor port's
//! `/explain` and `/api/v1/explain` of a running relay against a real nats-server.

use std::path::Path;
use std::process::Command;

use promrelay_tests::{
    free_port, http, poll_until, relay_binary, NatsServer, NodeExporter, Pushgateway, Relay,
    RelayConfig,
};

use crate::filters::{filter_yaml, shipped, ARRIVAL};

const RULES: &str = "relabel_configs:
  - source_labels: [__name__]
    regex: node_(cpu_seconds_total|load1)
    action: keep
  - source_labels: [mode]
    regex: idle|iowait
    action: drop
  - source_labels: [cpu]
    target_label: core
    replacement: core$1
  - regex: cpu
    action: labeldrop";

/// The job `node` with the relabel rules, then add-labels (site=dc1), as a relay config.
fn chain_config(nats: &str, pushgateway: &str, target: &str, monitor: Option<u16>) -> String {
    let filters = format!(
        "filters:\n{}{}",
        filter_yaml("", "rules", &shipped("relabel"), "fail", RULES),
        filter_yaml(
            "",
            "site",
            &shipped("add-labels"),
            "fail",
            "labels: { site: dc1 }"
        )
    );
    let mut config =
        RelayConfig::pipeline(nats, pushgateway).job_with("node", &filters, &[("n1", target)]);
    if let Some(port) = monitor {
        config = config.monitor_port(port);
    }
    config.to_yaml()
}

fn explain_cli(config: &Path, input: &Path, selector: &str) -> String {
    let output = Command::new(relay_binary())
        .args(["filter", "run", "--relay-config"])
        .arg(config)
        .args(["--job", "node", "--instance", "n1", "--input"])
        .arg(input)
        .args(["--explain", selector])
        .output()
        .expect("run promrelay filter run --explain");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "filter run --explain failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn filter_run_explain_shows_each_relabel_rule_and_each_filter_of_a_relay_chain() {
    let node = NodeExporter::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let capture = dir.path().join("node.prom");
    std::fs::write(&capture, node.metrics_text()).expect("write the capture");
    let config = dir.path().join("relay.yaml");
    std::fs::write(
        &config,
        chain_config(
            "nats://127.0.0.1:1",
            "http://127.0.0.1:1",
            &node.metrics_url(),
            None,
        ),
    )
    .expect("write the config");

    // The two CPU-0 series of idle and user time, and go_goroutines (no cpu or mode label: an
    // absent label matches "").
    let out = explain_cli(
        &config,
        &capture,
        "{__name__=~\"node_cpu_seconds_total|go_goroutines\",cpu=~\"0|\",mode=~\"idle|user|\"}",
    );
    println!("{out}");
    assert!(out.contains("matched 3 of"), "{out}");
    assert!(out.contains("1. rules ("), "{out}");
    assert!(out.contains("per-step trace"), "{out}");
    assert!(out.contains("2. site ("), "{out}");
    assert!(out.contains("no trace: before/after only"), "{out}");
    // idle: kept by rule 0, dropped by rule 1; add-labels never sees it.
    let idle = section(&out, "mode=\"idle\"}");
    assert!(
        idle.contains("[rules] DROPPED at rule 1: drop source_labels=[mode] regex=\"idle|iowait\""),
        "{idle}"
    );
    assert!(idle.contains("rule 0: keep source_labels=[__name__] regex=\"node_(cpu_seconds_total|load1)\" -> matched: no change"), "{idle}");
    assert!(!idle.contains("[site]"), "{idle}");
    assert!(idle.trim_end().ends_with("=> dropped"), "{idle}");
    // user: every rule's step, then add-labels' label, found without a trace.
    let user = section(&out, "mode=\"user\"}");
    for line in [
        "[rules] REWRITTEN: +core=\"core0\" -cpu=\"0\"",
        "rule 1: drop source_labels=[mode] regex=\"idle|iowait\" -> no match: no change",
        "rule 2: replace source_labels=[cpu] regex=\"(.*)\" target_label=core replacement=\"core$1\" -> matched: +core=\"core0\"",
        "rule 3: labeldrop regex=\"cpu\" -> matched: -cpu=\"0\"",
        "[site] REWRITTEN: +site=\"dc1\"",
        "=> node_cpu_seconds_total{core=\"core0\",instance=\"n1\",job=\"node\",mode=\"user\",site=\"dc1\"}",
    ] {
        assert!(user.contains(line), "missing {line:?} in:\n{user}");
    }

    // A series the keep rule drops.
    let go = section(&out, "go_goroutines{instance=\"n1\",job=\"node\"}");
    assert!(go.contains("[rules] DROPPED at rule 0: keep"), "{go}");

    // A bad selector fails with where and what.
    let bad = Command::new(relay_binary())
        .args(["filter", "run", "--relay-config"])
        .arg(&config)
        .args(["--job", "node", "--input"])
        .arg(&capture)
        .args(["--explain", "up{job=node}"])
        .output()
        .expect("run");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("expected a quoted value at offset 7"),
        "{stderr}"
    );
}

/// The text of the series section whose header line ends with `tail`.
fn section<'a>(out: &'a str, tail: &str) -> &'a str {
    let start = out
        .match_indices("\nseries ")
        .map(|(i, _)| i + 1)
        .find(|&i| out[i..].lines().next().is_some_and(|l| l.ends_with(tail)))
        .unwrap_or_else(|| panic!("no series ending {tail:?} in:\n{out}"));
    let end = out[start + 1..]
        .find("\nseries ")
        .map_or(out.len(), |i| start + 1 + i);
    &out[start..end]
}

fn form_body(fields: &[(&str, &str)]) -> Vec<u8> {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", http::encode_query_value(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

#[test]
fn the_monitor_port_explains_a_target_scraped_now_and_pasted_series() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let node = NodeExporter::start();
    let port = free_port();
    let mut relay = Relay::start(&chain_config(
        &nats.url(),
        &pushgateway.url(),
        &node.metrics_url(),
        Some(port),
    ));
    relay.wait_healthy();
    let base = relay.monitor_url();
    // Ready once the chain is compiled: an explain then reuses the compiled modules.
    poll_until(ARRIVAL, "the relay's /readyz to answer 200", || {
        http::get(&format!("{base}/readyz"))
            .ok()
            .filter(|answer| answer.status == 200)
    });

    // The form: the target list, the text area, the selector; no script.
    let form = http::get(&format!("{base}/explain")).expect("GET /explain");
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(
        form.body.contains("<option value=\"node/n1\">"),
        "{}",
        form.body
    );
    assert!(
        form.body.contains("<textarea name=\"text\""),
        "{}",
        form.body
    );
    assert!(!form.body.contains("<script"), "{}", form.body);

    // Pick the target: scraped now, every step shown.
    let selector = "node_cpu_seconds_total{cpu=\"0\",mode=~\"idle|user\"}";
    let query = format!(
        "{base}/explain?target={}&selector={}",
        http::encode_query_value("node/n1"),
        http::encode_query_value(selector)
    );
    let page = http::get(&query).expect("GET /explain?target=…");
    assert_eq!(page.status, 200, "{}", page.body);
    let html = &page.body;
    assert!(html.contains("scraped http://"), "{html}");
    assert!(html.contains("the live pipeline"), "{html}");
    assert!(html.contains("matched 2 of"), "{html}");
    assert!(html.contains("<td><code>rule 1: drop source_labels=[mode] regex=&quot;idle|iowait&quot;</code></td><td>yes</td><td>dropped the series</td>"), "{html}");
    assert!(html.contains("<td><code>rule 2: replace source_labels=[cpu] regex=&quot;(.*)&quot; target_label=core replacement=&quot;core$1&quot;</code></td><td>yes</td><td>+core=&quot;core0&quot;</td>"), "{html}");
    assert!(
        html.contains("<strong>site</strong>: rewritten: +site=&quot;dc1&quot;"),
        "{html}"
    );
    assert!(html.contains("result: dropped"), "{html}");

    // Paste series: POST the form.
    let text = "# TYPE node_load1 gauge\nnode_load1 0.5\n# TYPE go_threads gauge\ngo_threads 7\n";
    let body = form_body(&[
        ("target", ""),
        ("text", text),
        ("job", "node"),
        ("selector", ""),
    ]);
    let posted = http::request("POST", &format!("{base}/explain"), Some(&body)).expect("POST");
    assert_eq!(posted.status, 200, "{}", posted.body);
    assert!(posted.body.contains("pasted series"), "{}", posted.body);
    assert!(
        posted.body.contains("matched 2 of 2 series"),
        "{}",
        posted.body
    );
    assert!(
        // Prometheus semantics, shown step by step: `(.*)` matches the absent cpu label too.
        posted.body.contains("result: <code>node_load1{core=&quot;core&quot;,instance=&quot;pasted&quot;,job=&quot;node&quot;,site=&quot;dc1&quot;}</code>"),
        "{}",
        posted.body
    );

    // The JSON form of the same.
    let api =
        http::request("POST", &format!("{base}/api/v1/explain"), Some(&body)).expect("POST api");
    assert_eq!(api.status, 200, "{}", api.body);
    let json: serde_json::Value = serde_json::from_str(&api.body).expect("JSON");
    assert_eq!(json["source"], "text");
    assert_eq!(json["report"]["stages"][0]["traced"], true);
    assert_eq!(json["report"]["stages"][1]["traced"], false);
    let go = &json["report"]["series"][1];
    assert_eq!(go["output"], serde_json::Value::Null);
    assert_eq!(go["steps"][0]["trace"][0]["dropped"], true);

    // A bad selector is refused with its reason, HTML escaped.
    let bad = http::get(&format!(
        "{base}/explain?target=node%2Fn1&selector={}",
        http::encode_query_value("up{a=<b>}")
    ))
    .expect("GET bad");
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("expected a quoted value"), "{}", bad.body);
    assert!(!bad.body.contains("<b>"), "{}", bad.body);
}
