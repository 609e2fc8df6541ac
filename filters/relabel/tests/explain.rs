//! The per-rule trace (`promrelay_trace`): each rule's step, whether it matched, the labels
//! after it, and where a series was dropped.

use filter_relabel::Relabel;
use promrelay_sdk::testing;
use serde_json::{json, Value};

const RULES: &str = r#"{"relabel_configs": [
  {"source_labels": ["__name__"], "regex": "node_(cpu|load).*", "action": "keep"},
  {"source_labels": ["mode"], "regex": "idle", "action": "drop"},
  {"source_labels": ["cpu"], "regex": "(.*)", "target_label": "core", "replacement": "c$1"},
  {"regex": "cpu", "action": "labeldrop"}
]}"#;

fn steps(trace: &Value, series: usize) -> Vec<Value> {
    trace["series"][series]["steps"]
        .as_array()
        .expect("steps is a list")
        .clone()
}

#[test]
fn the_trace_names_each_rule_its_match_and_the_labels_after_it() {
    let text = "node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 1\n\
                node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 2\n\
                go_threads 8\n";
    let trace: Value =
        serde_json::from_str(&testing::explain::<Relabel>(RULES, text).expect("trace"))
            .expect("json");
    let user = steps(&trace, 0);
    assert_eq!(user.len(), 4, "{user:?}");
    assert_eq!(
        user[0]["step"],
        r#"rule 0: keep source_labels=[__name__] regex="node_(cpu|load).*""#
    );
    assert_eq!(user[0]["matched"], true);
    assert_eq!(user[1]["matched"], false);
    assert_eq!(
        user[2]["step"],
        r#"rule 2: replace source_labels=[cpu] regex="(.*)" target_label=core replacement="c$1""#
    );
    assert_eq!(
        user[2]["labels"],
        json!([
            ["__name__", "node_cpu_seconds_total"],
            ["core", "c0"],
            ["cpu", "0"],
            ["mode", "user"]
        ])
    );
    assert_eq!(user[3]["step"], r#"rule 3: labeldrop regex="cpu""#);
    assert_eq!(
        user[3]["labels"],
        json!([
            ["__name__", "node_cpu_seconds_total"],
            ["core", "c0"],
            ["mode", "user"]
        ])
    );

    let idle = steps(&trace, 1);
    assert_eq!(idle.len(), 2, "dropped at rule 1: {idle:?}");
    assert_eq!(idle[1]["dropped"], true);
    assert_eq!(idle[1]["matched"], true);

    let go = steps(&trace, 2);
    assert_eq!(go.len(), 1);
    assert_eq!(go[0]["matched"], false);
    assert_eq!(go[0]["dropped"], true);
}

#[test]
fn a_series_whose_name_the_rules_empty_is_dropped_after_the_rules() {
    let rules = r#"{"relabel_configs": [
      {"source_labels": ["__name__"], "regex": "up", "target_label": "__name__", "replacement": ""}
    ]}"#;
    let trace: Value =
        serde_json::from_str(&testing::explain::<Relabel>(rules, "up 1\n").expect("trace"))
            .expect("json");
    let up = steps(&trace, 0);
    assert_eq!(up.len(), 2, "{up:?}");
    assert_eq!(up[0]["matched"], true);
    assert_eq!(up[1]["dropped"], true);
    assert!(up[1]["step"]
        .as_str()
        .is_some_and(|s| s.contains("__name__ is empty")));
}
