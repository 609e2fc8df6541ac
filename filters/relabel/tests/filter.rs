//! The relabel filter end to end through the SDK's native harness (the same call path as in the
//! relay): which answer it gives, what the scrape looks like afterwards, how families follow
//! renamed metrics, and how a bad configuration fails `init`.

use filter_relabel::Relabel;
use promrelay_sdk::testing::{self, Harness, Outcome};
use promrelay_sdk::{Batch, MetricType};

fn harness(rules: &str) -> Harness<Relabel> {
    let value: serde_json::Value = serde_yaml_ng::from_str(rules).expect("test rules are YAML");
    Harness::<Relabel>::new(&value.to_string()).expect("test rules are valid")
}

fn outcome(rules: &str, scrape: &str) -> Outcome {
    let input = testing::batch_from_text(scrape).expect("test scrape parses");
    harness(rules).process(&input).expect("process succeeds")
}

fn relabel(rules: &str, scrape: &str) -> String {
    harness(rules)
        .process_text(scrape)
        .expect("process succeeds")
}

const NODE: &str = "\
# HELP go_threads Number of OS threads created.
# TYPE go_threads gauge
go_threads{instance=\"h1:9100\",job=\"node\"} 8
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1{instance=\"h1:9100\",job=\"node\"} 0.5
# HELP rpc_seconds RPC latency.
# TYPE rpc_seconds histogram
rpc_seconds_bucket{instance=\"h1:9100\",job=\"node\",le=\"1\"} 3
rpc_seconds_bucket{instance=\"h1:9100\",job=\"node\",le=\"+Inf\"} 4
rpc_seconds_sum{instance=\"h1:9100\",job=\"node\"} 2.5
rpc_seconds_count{instance=\"h1:9100\",job=\"node\"} 4
";

#[test]
fn rules_that_change_nothing_answer_pass() {
    let rules = "
relabel_configs:
  - source_labels: [__name__]
    regex: never_.*
    action: drop
  - target_label: job
    replacement: node
";
    assert_eq!(outcome(rules, NODE), Outcome::Pass);
}

#[test]
fn rules_that_only_drop_answer_with_a_mask() {
    let rules = "
relabel_configs:
  - source_labels: [__name__]
    regex: go_.*
    action: drop
  - source_labels: [le]
    regex: \"1\"
    action: drop
";
    assert!(matches!(outcome(rules, NODE), Outcome::Mask(_)));
    let text = relabel(rules, NODE);
    assert!(!text.contains("go_threads"), "{text}");
    assert!(!text.contains("le=\"1\""), "{text}");
    assert!(text.contains("# TYPE rpc_seconds histogram"), "{text}");
}

#[test]
fn a_label_added_to_every_series_replaces_the_batch() {
    let rules = "
relabel_configs:
  - target_label: site
    replacement: ams1
  - source_labels: [instance]
    regex: '([^:]+):\\d+'
    target_label: host
";
    assert!(matches!(outcome(rules, NODE), Outcome::Replaced(_)));
    let text = relabel(rules, NODE);
    assert!(
        text.contains(
            "node_load1{host=\"h1\",instance=\"h1:9100\",job=\"node\",site=\"ams1\"} 0.5"
        ),
        "{text}"
    );
    assert!(
        text.contains("# HELP node_load1 1m load average."),
        "{text}"
    );
    assert_eq!(text.matches("site=\"ams1\"").count(), 6, "{text}");
}

#[test]
fn renaming_a_whole_family_keeps_its_help_and_type() {
    let rules = "
relabel_configs:
  - source_labels: [__name__]
    regex: rpc_seconds(.*)
    target_label: __name__
    replacement: api_latency_seconds${1}
";
    let text = relabel(rules, NODE);
    assert!(
        text.contains("# HELP api_latency_seconds RPC latency."),
        "{text}"
    );
    assert!(
        text.contains("# TYPE api_latency_seconds histogram"),
        "{text}"
    );
    assert!(text.contains("api_latency_seconds_bucket{"), "{text}");
    assert!(text.contains("api_latency_seconds_count{"), "{text}");
    assert!(!text.contains("rpc_seconds"), "{text}");
}

#[test]
fn a_series_renamed_out_of_its_family_moves_to_an_untyped_family() {
    let rules = "
relabel_configs:
  - source_labels: [__name__, le]
    regex: rpc_seconds_bucket;\\+Inf
    target_label: __name__
    replacement: rpc_total_calls
";
    let text = relabel(rules, NODE);
    assert!(text.contains("# TYPE rpc_seconds histogram"), "{text}");
    assert!(
        text.contains("rpc_total_calls{instance=\"h1:9100\",job=\"node\",le=\"+Inf\"} 4"),
        "{text}"
    );
    let Outcome::Replaced(bytes) = outcome(rules, NODE) else {
        panic!("a rename must replace the batch");
    };
    let batch = Batch::from_bytes(&bytes).expect("valid output");
    let families: Vec<(String, MetricType, Option<String>, Vec<String>)> = batch
        .families()
        .map(|f| {
            let names = f.series().map(|s| s.name().to_owned()).collect();
            (
                f.name().to_owned(),
                f.kind(),
                f.help().map(str::to_owned),
                names,
            )
        })
        .collect();
    let histogram = families
        .iter()
        .find(|f| f.0 == "rpc_seconds")
        .expect("histogram stays");
    assert_eq!(histogram.1, MetricType::Histogram);
    assert_eq!(
        histogram.3,
        ["rpc_seconds_bucket", "rpc_seconds_sum", "rpc_seconds_count"]
    );
    let moved = families
        .iter()
        .find(|f| f.0 == "rpc_total_calls")
        .expect("a family of its own");
    assert_eq!((moved.1, moved.2.as_deref()), (MetricType::Untyped, None));
    assert_eq!(moved.3, ["rpc_total_calls"]);
}

#[test]
fn a_series_renamed_to_an_existing_family_joins_it() {
    let rules = "
relabel_configs:
  - source_labels: [__name__]
    regex: go_threads
    target_label: __name__
    replacement: node_load1
";
    let text = relabel(rules, NODE);
    assert!(!text.contains("go_threads"), "{text}");
    assert_eq!(text.matches("# TYPE node_load1 gauge").count(), 1, "{text}");
    let load = text
        .split("# TYPE node_load1 gauge")
        .nth(1)
        .expect("family present");
    assert!(
        load.contains("node_load1{instance=\"h1:9100\",job=\"node\"} 8"),
        "{text}"
    );
}

#[test]
fn a_series_whose_name_becomes_invalid_is_dropped_and_logged() {
    let rules = "
relabel_configs:
  - source_labels: [__name__]
    regex: node_load1
    target_label: __name__
    replacement: node-load
";
    testing::take_logs();
    let text = relabel(rules, NODE);
    assert!(
        !text.contains("node_load1{") && !text.contains("node-load"),
        "{text}"
    );
    let logs = testing::take_logs();
    assert!(
        logs.iter()
            .any(|(level, line)| *level == 1 && line.contains("\"node-load\"")),
        "{logs:?}"
    );
}

#[test]
fn dropping_the_name_label_drops_the_series() {
    let rules = "
relabel_configs:
  - regex: __name__
    action: labeldrop
";
    testing::take_logs();
    let text = relabel(rules, NODE);
    assert!(!text.contains('{'), "every series must go:\n{text}");
    assert!(
        testing::take_logs().is_empty(),
        "a deliberate drop is not worth a warning"
    );
}

#[test]
fn timestamps_and_special_values_survive_a_rewrite() {
    let scrape = "a{x=\"1\"} NaN 1700000000000\nb +Inf\n";
    let rules = "
relabel_configs:
  - target_label: site
    replacement: s
";
    let text = relabel(rules, scrape);
    assert!(
        text.contains("a{site=\"s\",x=\"1\"} NaN 1700000000000"),
        "{text}"
    );
    assert!(text.contains("b{site=\"s\"} +Inf"), "{text}");
}

#[test]
fn a_bad_configuration_fails_init_with_every_problem() {
    let config = r#"{"relabel_configs": [
        {"source_labels": ["a"], "action": "hashmod", "target_label": "h"},
        {"action": "replace"}
    ]}"#;
    let error = Harness::<Relabel>::new(config)
        .err()
        .expect("init must fail");
    let message = error.to_string();
    assert!(message.contains("bad config"), "{message}");
    assert!(
        message.contains("relabel_configs[0].modulus: relabel configuration for hashmod requires non-zero modulus"),
        "{message}"
    );
    assert!(
        message.contains("relabel_configs[1].target_label: relabel configuration for replace action requires 'target_label' value"),
        "{message}"
    );
}

#[test]
fn no_configuration_is_no_rules() {
    let input = testing::batch_from_text(NODE).expect("parses");
    let mut harness = Harness::<Relabel>::new("null").expect("null config is accepted");
    assert_eq!(harness.process(&input).expect("process"), Outcome::Pass);
}

#[test]
fn state_carries_over_between_batches() {
    let mut harness = harness(
        "
relabel_configs:
  - source_labels: [__name__]
    regex: go_.*
    action: drop
",
    );
    for _ in 0..3 {
        let text = harness.process_text(NODE).expect("process");
        assert!(
            !text.contains("go_threads") && text.contains("node_load1"),
            "{text}"
        );
    }
}

/// The captured node_exporter scrape (`tests/data/node_exporter.prom`) through the ten typical
/// rules of the benchmark: the output is a valid batch, `go_*` is gone, every series has `site`.
#[test]
fn typical_rules_on_a_real_node_exporter_scrape() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/node_exporter.prom"
    );
    let Ok(scrape) = std::fs::read_to_string(path) else {
        eprintln!("skipped: {path} is not there");
        return;
    };
    let mut harness = harness(include_str!("../benches/typical_rules.yaml"));
    let input = testing::batch_from_text(&scrape).expect("node_exporter scrape encodes");
    let outcome = harness.process(&input).expect("process succeeds");
    let output = testing::apply(&input, &outcome).expect("the answer is valid");
    let batch = Batch::from_bytes(&output).expect("valid batch");
    let before = Batch::from_bytes(&input)
        .expect("valid batch")
        .series_count();
    assert!(batch.series_count() > 0 && batch.series_count() < before);
    for series in batch.series() {
        assert!(!series.name().starts_with("go_gc"), "{}", series.name());
        assert_eq!(series.label("site"), Some("dc1"), "{}", series.name());
        assert!(series.label("__tmp_shard").is_none());
    }
    for family in batch.families() {
        for series in family.series() {
            let name = series.name();
            let fits = name == family.name()
                || name.strip_prefix(family.name()).is_some_and(|suffix| {
                    ["_bucket", "_count", "_sum", "_total", "_created", "_info"].contains(&suffix)
                });
            assert!(fits, "{name} in family {}", family.name());
        }
    }
    if scrape.contains("# TYPE node_network_receive_bytes_total counter") {
        let renamed = batch
            .families()
            .find(|family| family.name() == "net_receive_bytes_total")
            .expect("the whole family is renamed");
        assert_eq!(renamed.kind(), MetricType::Counter);
        assert!(renamed.help().is_some());
    }
}

#[test]
fn series_made_identical_by_relabelling_keep_only_the_first() {
    let scrape = "\
# TYPE requests_total counter
requests_total{code=\"200\",pod=\"a\"} 1
requests_total{code=\"200\",pod=\"b\"} 2
requests_total{code=\"500\",pod=\"a\"} 3
";
    let rules = "
relabel_configs:
  - regex: pod
    action: labeldrop
";
    testing::take_logs();
    let text = relabel(rules, scrape);
    assert_eq!(
        text,
        "# TYPE requests_total counter\n\
         requests_total{code=\"200\"} 1\n\
         requests_total{code=\"500\"} 3\n"
    );
    let logs = testing::take_logs();
    assert!(
        logs.iter()
            .any(|(level, line)| *level == 1 && line.contains("dropped 1 series")),
        "{logs:?}"
    );
}

#[test]
fn an_unchanged_series_and_a_changed_one_can_collide() {
    let scrape = "x{a=\"1\"} 1\nx{a=\"1\",b=\"2\"} 2\n";
    let rules = "
relabel_configs:
  - source_labels: [b]
    regex: \"2\"
    target_label: b
    replacement: \"\"
";
    assert_eq!(relabel(rules, scrape), "x{a=\"1\"} 1\n");
}
