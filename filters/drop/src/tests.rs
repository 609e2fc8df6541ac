#![allow(clippy::unwrap_used)]

use promrelay_sdk::testing::{batch_from_text, run, Harness, Outcome};

use super::Drop;

const SCRAPE: &str = "\
# TYPE go_threads gauge
go_threads 8
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 100
node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 5
# TYPE rpc_seconds histogram
rpc_seconds_bucket{le=\"1\"} 1
rpc_seconds_bucket{le=\"+Inf\"} 2
rpc_seconds_sum 1.5
rpc_seconds_count 2
up 1
";

fn filtered(config: &str) -> String {
    run::<Drop>(config, SCRAPE).unwrap()
}

#[test]
fn drops_by_name_glob() {
    let out = filtered(r#"{"metrics": ["go_*", "rpc_seconds*"]}"#);
    assert_eq!(
        out,
        "# TYPE node_cpu_seconds_total counter\n\
         node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 100\n\
         node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 5\n\
         up 1\n"
    );
}

#[test]
fn glob_question_mark_is_one_character_and_dots_are_literal() {
    let out = filtered(r#"{"metrics": ["u?"], "metrics_regex": []}"#);
    assert!(!out.contains("up 1"));
    let out = filtered(r#"{"metrics": ["go.threads"]}"#);
    assert!(
        out.contains("go_threads 8"),
        "a dot in a glob is not a wildcard"
    );
}

#[test]
fn drops_by_anchored_name_regex() {
    let out = filtered(r#"{"metrics_regex": ["rpc_seconds_(sum|count)", "u"]}"#);
    assert!(!out.contains("rpc_seconds_sum") && !out.contains("rpc_seconds_count"));
    assert!(out.contains("rpc_seconds_bucket"));
    assert!(
        out.contains("up 1"),
        "regexes are anchored: `u` does not match `up`"
    );
}

#[test]
fn drops_by_label_matcher() {
    let out = filtered(r#"{"labels": [{"label": "mode", "regex": "idle|iowait"}]}"#);
    assert!(!out.contains("mode=\"idle\""));
    assert!(out.contains("mode=\"user\""));
    assert!(out.contains("go_threads 8"));
}

#[test]
fn absent_label_matches_empty_regex() {
    let out = filtered(r#"{"labels": [{"label": "cpu", "regex": ""}]}"#);
    assert_eq!(
        out,
        "# TYPE node_cpu_seconds_total counter\n\
         node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 100\n\
         node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 5\n"
    );
}

#[test]
fn keep_action_keeps_only_matches() {
    let out = filtered(r#"{"metrics": ["up", "go_*"], "action": "keep"}"#);
    assert_eq!(out, "# TYPE go_threads gauge\ngo_threads 8\nup 1\n");
}

#[test]
fn answers_with_a_mask_or_pass_never_a_new_batch() {
    let batch = batch_from_text(SCRAPE).unwrap();
    let mut harness = Harness::<Drop>::new(r#"{"metrics": ["go_*"]}"#).unwrap();
    // 8 series, the first dropped: keep bits 1..=7.
    assert_eq!(
        harness.process(&batch).unwrap(),
        Outcome::Mask(vec![0b1111_1110])
    );
    let mut nothing = Harness::<Drop>::new(r#"{"metrics": ["absent_*"]}"#).unwrap();
    assert_eq!(nothing.process(&batch).unwrap(), Outcome::Pass);
}

#[test]
fn empty_or_missing_config_drops_nothing() {
    assert_eq!(filtered("null"), filtered("{}"));
    let batch = batch_from_text(SCRAPE).unwrap();
    assert_eq!(
        Harness::<Drop>::new("null")
            .unwrap()
            .process(&batch)
            .unwrap(),
        Outcome::Pass
    );
}

#[test]
fn bad_config_is_refused_with_its_location() {
    let error = Harness::<Drop>::new(r#"{"labels": [{"label": "a", "regex": "("}]}"#)
        .err()
        .unwrap()
        .to_string();
    assert!(error.starts_with("bad config: labels[0].regex:"), "{error}");
    assert!(
        !error.contains("^(?:"),
        "the message shows the user's pattern: {error}"
    );
    let error = Harness::<Drop>::new(r#"{"metrics_regex": ["ok", "[z-a]"]}"#)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("metrics_regex[1]"), "{error}");
    let error = Harness::<Drop>::new(r#"{"metric": ["x"]}"#)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("unknown field `metric`"), "{error}");
    let error = Harness::<Drop>::new(r#"{"action": "explode"}"#)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("explode"), "{error}");
}
