//! Runs `fixtures.yaml`: relabel behaviour cases (Prometheus' `model/relabel` tests re-expressed)
//! and configuration validation cases, through the same JSON path the filter's `init` uses.

use filter_relabel::{config, LabelSet, Relabeler};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixtures {
    relabel: Vec<RelabelCase>,
    invalid: Vec<InvalidCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RelabelCase {
    name: String,
    input: BTreeMap<String, String>,
    rules: serde_json::Value,
    #[serde(default)]
    output: Option<BTreeMap<String, String>>,
    #[serde(default)]
    dropped: bool,
    #[serde(default)]
    unchanged: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidCase {
    name: String,
    rules: serde_json::Value,
    errors: Vec<String>,
}

fn fixtures() -> Fixtures {
    let text = include_str!("fixtures.yaml");
    serde_yaml_ng::from_str(text).expect("fixtures.yaml parses")
}

fn compile(rules: serde_json::Value) -> Result<Vec<config::Rule>, config::ConfigError> {
    let json = serde_json::json!({ "relabel_configs": rules });
    config::parse(json.to_string().as_bytes())
}

#[test]
fn relabel_fixtures_behave_like_prometheus() {
    let cases = fixtures().relabel;
    let mut failures = Vec::new();
    for case in &cases {
        let rules = match compile(case.rules.clone()) {
            Ok(rules) => rules,
            Err(error) => {
                failures.push(format!("{}: config refused: {error}", case.name));
                continue;
            }
        };
        let mut relabeler = Relabeler::new(rules);
        // Each case runs three times: without string ids, then twice with ids (the second run
        // answers from what the first remembered), and all three must agree.
        let strings: Vec<&String> = case.input.iter().flat_map(|(n, v)| [n, v]).collect();
        let id = |text: &String| strings.iter().position(|s| *s == text).expect("interned") as u32;
        relabeler.begin_batch(strings.len());
        let mut outcomes = Vec::new();
        for pass in 0..3 {
            let mut labels = LabelSet::new();
            for (name, value) in &case.input {
                if pass == 0 {
                    labels.push_sorted(name, value);
                } else {
                    labels.push_sorted_with_ids(name, id(name), value, id(value));
                }
            }
            let kept = if case.input.contains_key("__name__") {
                relabeler.process_series(&mut labels)
            } else {
                relabeler.process(&mut labels)
            };
            let got: BTreeMap<String, String> = labels
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect();
            outcomes.push((kept, got, labels.changed()));
        }
        if outcomes.windows(2).any(|pair| pair[0] != pair[1]) {
            failures.push(format!("{}: runs disagree: {outcomes:?}", case.name));
            continue;
        }
        let (kept, got, changed) = outcomes.swap_remove(0);
        match (&case.output, case.dropped, kept) {
            (_, true, false) => {}
            (_, true, true) => {
                failures.push(format!("{}: kept {got:?}, expected dropped", case.name))
            }
            (Some(expected), false, true) if *expected == got => {
                if case.unchanged && changed {
                    failures.push(format!("{}: reported a change", case.name));
                }
            }
            (expected, false, kept) => failures.push(format!(
                "{}: kept={kept} got {got:?}, expected {expected:?}",
                case.name
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} relabel fixtures passed", cases.len());
}

#[test]
fn invalid_configurations_are_refused_with_prometheus_wording() {
    let cases = fixtures().invalid;
    let mut failures = Vec::new();
    for case in &cases {
        match (compile(case.rules.clone()), case.errors.is_empty()) {
            (Ok(_), true) => {}
            (Ok(_), false) => failures.push(format!(
                "{}: accepted, expected {:?}",
                case.name, case.errors
            )),
            (Err(error), true) => failures.push(format!("{}: refused: {error}", case.name)),
            (Err(error), false) => {
                let lines: Vec<String> = error.problems.iter().map(ToString::to_string).collect();
                let matches = lines.len() == case.errors.len()
                    && lines
                        .iter()
                        .zip(&case.errors)
                        .all(|(line, want)| line.contains(want.as_str()));
                if !matches {
                    failures.push(format!(
                        "{}: got {lines:#?}, expected {:#?}",
                        case.name, case.errors
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} validation fixtures passed", cases.len());
}

#[test]
fn whole_configuration_shapes() {
    assert!(config::parse(b"null").expect("null is no rules").is_empty());
    assert!(config::parse(b"{}")
        .expect("no list is no rules")
        .is_empty());
    let unknown = config::parse(br#"{"metric_relabel_configs": []}"#).expect_err("unknown key");
    assert!(
        unknown
            .to_string()
            .contains("unknown key \"metric_relabel_configs\""),
        "{unknown}"
    );
    let not_list =
        config::parse(br#"{"relabel_configs": {"action": "drop"}}"#).expect_err("not a list");
    assert!(
        not_list
            .to_string()
            .contains("relabel_configs must be a list"),
        "{not_list}"
    );
    let garbage = config::parse(b"{").expect_err("not JSON");
    assert!(garbage.to_string().contains("not valid JSON"), "{garbage}");
    // Scalars are read as strings, as Prometheus' YAML decoding does.
    let rules = config::parse(br#"{"relabel_configs": [{"target_label": "n", "replacement": 1}]}"#)
        .expect("a number as replacement");
    let mut relabeler = Relabeler::new(rules);
    let mut labels = LabelSet::from_pairs([("__name__", "up")]);
    assert!(relabeler.process_series(&mut labels));
    assert_eq!(labels.get("n"), "1");
}
