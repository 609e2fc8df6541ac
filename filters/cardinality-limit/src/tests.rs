#![allow(clippy::unwrap_used)]

use promrelay_sdk::testing::{batch_from_text, run, take_logs, Harness, Outcome};

use super::CardinalityLimit;

#[test]
fn keeps_the_first_label_sets_in_exposition_order() {
    let scrape = "# TYPE requests_total counter\n\
        requests_total{user=\"c\"} 1\n\
        requests_total{user=\"a\"} 2\n\
        requests_total{user=\"b\"} 3\n\
        up 1\n";
    let out = run::<CardinalityLimit>(r#"{"limit": 2}"#, scrape).unwrap();
    assert_eq!(
        out,
        "# TYPE requests_total counter\nrequests_total{user=\"c\"} 1\nrequests_total{user=\"a\"} 2\nup 1\n"
    );
}

#[test]
fn histogram_buckets_of_a_label_set_stay_together() {
    let scrape = "# TYPE rpc_seconds histogram\n\
        rpc_seconds_bucket{path=\"/a\",le=\"1\"} 1\n\
        rpc_seconds_bucket{path=\"/a\",le=\"+Inf\"} 2\n\
        rpc_seconds_sum{path=\"/a\"} 1.5\n\
        rpc_seconds_count{path=\"/a\"} 2\n\
        rpc_seconds_bucket{path=\"/b\",le=\"1\"} 0\n\
        rpc_seconds_bucket{path=\"/b\",le=\"+Inf\"} 1\n\
        rpc_seconds_sum{path=\"/b\"} 3\n\
        rpc_seconds_count{path=\"/b\"} 1\n";
    let out = run::<CardinalityLimit>(r#"{"limit": 1}"#, scrape).unwrap();
    assert_eq!(out.lines().count(), 5, "{out}");
    assert!(!out.contains("/b"));
    assert!(out.contains("rpc_seconds_count{path=\"/a\"} 2"));
}

#[test]
fn under_the_limit_is_pass_and_over_is_a_mask() {
    let batch = batch_from_text("a{x=\"1\"} 1\na{x=\"2\"} 1\nb 1\n").unwrap();
    let mut roomy = Harness::<CardinalityLimit>::new(r#"{"limit": 2}"#).unwrap();
    assert_eq!(roomy.process(&batch).unwrap(), Outcome::Pass);
    let mut tight = Harness::<CardinalityLimit>::new(r#"{"limit": 1}"#).unwrap();
    assert_eq!(tight.process(&batch).unwrap(), Outcome::Mask(vec![0b101]));
}

#[test]
fn drops_are_logged_and_counted() {
    let scrape = "a{x=\"1\"} 1\na{x=\"2\"} 1\na{x=\"3\"} 1\n";
    take_logs();
    let mut harness = Harness::<CardinalityLimit>::new(r#"{"limit": 1}"#).unwrap();
    harness.process_text(scrape).unwrap();
    harness.process_text(scrape).unwrap();
    let logs = take_logs();
    assert_eq!(logs.len(), 1, "logged once, not every scrape: {logs:?}");
    assert_eq!(logs[0].0, 1, "ABI level 1 is warn");
    assert!(
        logs[0]
            .1
            .starts_with("a: over the limit of 1 label sets, dropped 2 series"),
        "{logs:?}"
    );
}

#[test]
fn limit_must_be_positive() {
    let error = Harness::<CardinalityLimit>::new(r#"{"limit": 0}"#)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(error, "bad config: limit: must be at least 1");
    assert!(Harness::<CardinalityLimit>::new("null").is_err());
}
