//! The generic explain over real (WAT) modules without a trace: each stage alone, outcomes
//! by before/after, and how a rewritten series is found again.

use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::config::{FilterConfig, FilterLimits, OnError};
use crate::filter::tests::test_engine;
use crate::lifecycle::Events;
use crate::model::{Family, Label, MetricType, ScrapeMeta, Series};

fn stage(name: &str) -> Arc<Stage> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/wat")
        .join(name);
    let config = FilterConfig {
        name: name.trim_end_matches(".wat").to_owned(),
        module: path.clone(),
        on_error: OnError::Fail,
        limits: FilterLimits::default(),
        config: serde_json::json!({}),
    };
    let module = test_engine()
        .load_file(&path)
        .expect("test WAT modules load");
    Arc::new(Stage::new(config, module, Arc::default(), Events::none()).expect("stage"))
}

fn series(name: &str, labels: &[(&str, &str)], value: f64) -> Series {
    Series {
        name: name.into(),
        labels: labels.iter().map(|(n, v)| Label::new(*n, *v)).collect(),
        value,
        timestamp_ms: None,
    }
}

fn scrape(series: Vec<Series>) -> Scrape {
    Scrape {
        meta: ScrapeMeta::default(),
        families: vec![Family {
            name: "x".into(),
            help: None,
            unit: None,
            kind: MetricType::Gauge,
            series,
        }],
    }
}

#[test]
fn each_stage_is_explained_by_its_before_and_after() {
    let input = scrape(vec![
        series("x", &[("i", "0")], 0.0),
        series("x", &[("i", "1")], 1.0),
        series("x", &[("i", "2")], 2.0),
    ]);
    // mask_even keeps the even-numbered series (drops i=1); copy hands the batch back as REPLACED.
    let stages = [stage("mask_even.wat"), stage("copy.wat")];
    let selector = Selector::parse("x{i=~\"0|1\"}").expect("selector");
    let report = explain(&stages, input, &selector, 10, 1024);
    assert!(report.failure.is_none(), "{:?}", report.failure);
    assert_eq!(report.matched, 2);
    assert_eq!(report.series_in, 3);
    assert_eq!(report.series_out, Some(2));
    assert_eq!(report.stages[0].answer, Some("mask"));
    assert_eq!(report.stages[1].answer, Some("replaced"));
    assert!(!report.stages[0].traced && !report.stages[1].traced);

    let dropped = &report.series[1];
    assert_eq!(dropped.steps.len(), 1, "no step after the drop");
    assert_eq!(dropped.steps[0].outcome, Outcome::Dropped);
    assert_eq!(dropped.output, None);

    let kept = &report.series[0];
    let outcomes: Vec<Outcome> = kept.steps.iter().map(|s| s.outcome).collect();
    assert_eq!(outcomes, [Outcome::Unchanged, Outcome::Unchanged]);
    assert_eq!(kept.output.as_ref(), Some(&kept.input));

    let text = render_text(&report);
    assert!(text.contains("matched 2 of 3 series"), "{text}");
    assert!(text.contains("[mask_even] DROPPED"), "{text}");
    assert!(text.contains("[copy] unchanged"), "{text}");
}

#[test]
fn a_rewritten_series_is_found_by_value_timestamp_and_shared_labels() {
    let before = scrape(vec![
        series("x", &[("i", "0"), ("zone", "a")], 5.0),
        series("x", &[("i", "1"), ("zone", "a")], 5.0),
    ]);
    let after = scrape(vec![
        series("x", &[("i", "0"), ("site", "dc1"), ("zone", "a")], 5.0),
        series("x", &[("i", "1"), ("site", "dc1"), ("zone", "a")], 5.0),
    ]);
    let inputs: HashSet<Labels> = before
        .families
        .iter()
        .flat_map(|f| f.series.iter().map(labels_of))
        .collect();
    let wanted = labels_of(&before.families[0].series[1]);
    let found = find_rewritten(&wanted, &before, &after, &inputs).expect("found");
    assert_eq!(found, labels_of(&after.families[0].series[1]));
    // Another value: not the same sample.
    let other = scrape(vec![series("x", &[("i", "1"), ("site", "dc1")], 6.0)]);
    assert_eq!(find_rewritten(&wanted, &before, &other, &inputs), None);
}

#[test]
fn a_trace_answer_becomes_steps_with_their_diffs() {
    let input: Labels = vec![
        ("__name__".into(), "up".into()),
        ("job".into(), "node".into()),
    ];
    let json = br#"{"series":[{"steps":[
        {"step":"rule 0","matched":true,"labels":[["job","node"],["__name__","up"],["a","1"]]},
        {"step":"rule 1","matched":false},
        {"step":"rule 2","matched":true,"dropped":true}]}]}"#;
    let steps = parse_trace(json, std::slice::from_ref(&input)).expect("parses");
    assert_eq!(steps[0].len(), 3);
    assert_eq!(steps[0][0].diff.to_string(), "+a=\"1\"");
    assert_eq!(steps[0][1].diff.to_string(), "no label changed");
    assert!(steps[0][2].dropped && steps[0][2].labels.is_none());
    let wrong = parse_trace(br#"{"series":[]}"#, std::slice::from_ref(&input));
    assert_eq!(wrong.expect_err("count"), "0 series traced for 1 given");
    assert!(parse_trace(b"nope", &[input]).is_err());
}
