//! The outcome cache changes nothing but the cost: every relabel fixture (`fixtures.yaml`,
//! Prometheus' `TestRelabel` cases re-expressed) runs twice on one filter instance — the second
//! time answered from the cache — and both runs must agree with the uncached engine; whole
//! scrapes through the harness give the same answers cached, uncached and with the cache off.

use filter_relabel::{config, LabelSet, Relabel, Relabeler};
use promrelay_sdk::testing::{self, Harness};
use promrelay_sdk::{Batch, Filter};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Fixtures {
    relabel: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    input: BTreeMap<String, String>,
    rules: serde_json::Value,
    #[serde(default)]
    output: Option<BTreeMap<String, String>>,
    #[serde(default)]
    dropped: bool,
}

type Labels = BTreeMap<String, String>;

/// Name given to fixture inputs without one: a series in a batch always has a `__name__`.
const STAND_IN_NAME: &str = "fixture_series";

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One series as Prometheus text.
fn exposition(labels: &Labels) -> String {
    let name = &labels["__name__"];
    let pairs: Vec<String> = labels
        .iter()
        .filter(|(label, _)| *label != "__name__")
        .map(|(label, value)| format!("{label}=\"{}\"", escape(value)))
        .collect();
    format!("{name}{{{}}} 1\n", pairs.join(","))
}

/// What the uncached engine makes of `input` as a sample: `None` when dropped.
fn uncached(rules: &[config::Rule], input: &Labels) -> Option<Labels> {
    let mut relabeler = Relabeler::new(rules.to_vec());
    let mut labels = LabelSet::from_pairs(input.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    relabeler.process_series(&mut labels).then(|| {
        labels
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    })
}

/// The filter's answer for a one-series scrape, read back from the batch.
fn filtered(filter: &mut Relabel, text: &str) -> Result<Vec<Labels>, String> {
    let bytes = testing::batch_from_text(text).map_err(|e| format!("encoding {text:?}: {e}"))?;
    let mut batch = Batch::from_bytes(&bytes).map_err(|e| e.to_string())?;
    filter.process(&mut batch).map_err(|e| e.to_string())?;
    Ok(batch
        .series()
        .map(|series| {
            series
                .labels()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect()
        })
        .collect())
}

#[test]
fn every_relabel_fixture_gives_the_same_answer_twice_through_the_cache() {
    let fixtures: Fixtures =
        serde_yaml_ng::from_str(include_str!("fixtures.yaml")).expect("fixtures.yaml parses");
    let mut failures = Vec::new();
    let mut answered_from_cache = 0;
    for case in &fixtures.relabel {
        let config = serde_json::json!({ "relabel_configs": case.rules });
        let Ok(rules) = config::from_value(config.clone()) else {
            failures.push(format!("{}: config refused", case.name));
            continue;
        };
        let mut input = case.input.clone();
        let had_name = input.contains_key("__name__");
        input
            .entry("__name__".to_owned())
            .or_insert_with(|| STAND_IN_NAME.to_owned());
        let expected: Vec<Labels> = uncached(&rules, &input).into_iter().collect();
        if had_name {
            // With its own name the fixture states the answer itself; the engine must give it.
            let stated: Vec<Labels> = match (&case.output, case.dropped) {
                (_, true) => Vec::new(),
                (Some(output), false) => vec![output.clone()],
                (None, false) => vec![case.input.clone()],
            };
            if stated != expected {
                failures.push(format!(
                    "{}: engine {expected:?}, fixture {stated:?}",
                    case.name
                ));
            }
        }
        let mut filter = match Relabel::init(config) {
            Ok(filter) => filter,
            Err(error) => {
                failures.push(format!("{}: init failed: {error}", case.name));
                continue;
            }
        };
        let text = exposition(&input);
        let first = filtered(&mut filter, &text);
        let hits_before = filter.cache_stats().hits;
        let second = filtered(&mut filter, &text);
        if filter.cache_stats().hits > hits_before {
            answered_from_cache += 1;
        }
        match (first, second) {
            (Ok(first), Ok(second)) if first == expected && second == expected => {}
            (first, second) => failures.push(format!(
                "{}: first {first:?}, second {second:?}, uncached engine {expected:?}",
                case.name
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        fixtures.relabel.len(),
        failures.join("\n")
    );
    // Only a series whose new name is invalid is never remembered (it must warn every time).
    assert!(
        answered_from_cache + 3 >= fixtures.relabel.len(),
        "only {answered_from_cache} of {} second runs came from the cache",
        fixtures.relabel.len()
    );
    eprintln!(
        "{} fixtures agreed twice, {answered_from_cache} second runs from the cache",
        fixtures.relabel.len()
    );
}

fn harness(rules_yaml: &str, cache: serde_json::Value) -> Harness<Relabel> {
    let mut value: serde_json::Value =
        serde_yaml_ng::from_str(rules_yaml).expect("test rules are YAML");
    if !cache.is_null() {
        value["cache"] = cache;
    }
    Harness::<Relabel>::new(&value.to_string()).expect("test rules are valid")
}

/// A scrape that keeps every other series of `scrape`, changes every value, and adds new series
/// (also renamed by the typical rules, so remembered and new series share families).
fn next_scrape(scrape: &str) -> String {
    let mut out = String::new();
    let mut sample = 0;
    for line in scrape.lines() {
        if line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        sample += 1;
        if sample % 2 == 0 {
            continue;
        }
        let (series, _value) = line.rsplit_once(' ').expect("a sample line has a value");
        out.push_str(&format!("{series} {sample}\n"));
    }
    out.push_str("# TYPE node_network_receive_bytes_total counter\n");
    for device in ["eth7", "veth9", "wlan3"] {
        out.push_str(&format!(
            "node_network_receive_bytes_total{{device=\"{device}\",instance=\"h9:9100\",job=\"node\"}} 5\n"
        ));
    }
    out
}

/// `line` with the target labels the relay merges in before the chain.
fn with_target_labels(line: &str) -> String {
    if line.starts_with('#') || line.is_empty() {
        return format!("{line}\n");
    }
    let target = "instance=\"h1:9100\",job=\"node\"";
    match line.split_once('{') {
        Some((name, rest)) if rest.starts_with('}') => format!("{name}{{{target}{}\n", rest),
        Some((name, rest)) => format!("{name}{{{target},{rest}\n"),
        None => {
            let (name, value) = line.split_once(' ').expect("a sample line has a value");
            format!("{name}{{{target}}} {value}\n")
        }
    }
}

#[test]
fn repeated_and_changed_scrapes_answer_as_an_uncached_instance_does() {
    // The captured node_exporter scrape, with `job`/`instance` as the relay adds them.
    let scrape = include_str!("../../../tests/data/node_exporter.prom")
        .lines()
        .map(with_target_labels)
        .collect::<String>();
    let rules = include_str!("../benches/typical_rules.yaml");
    let next = next_scrape(&scrape);
    let mut cached = harness(rules, serde_json::Value::Null);
    let mut off = harness(rules, serde_json::json!({ "max_series": 0 }));
    let mut tiny = harness(
        rules,
        serde_json::json!({ "max_series": 40, "max_idle_scrapes": 1 }),
    );
    for (round, text) in [&scrape, &scrape, &next, &scrape, &next, &next]
        .into_iter()
        .enumerate()
    {
        let input = testing::batch_from_text(text).expect("scrape encodes");
        let fresh = harness(rules, serde_json::Value::Null)
            .process(&input)
            .expect("fresh instance");
        for (name, instance) in [
            ("cached", &mut cached),
            ("off", &mut off),
            ("tiny", &mut tiny),
        ] {
            let answer = instance.process(&input).expect("process");
            assert_eq!(
                answer, fresh,
                "round {round}: {name} instance differs from a fresh one"
            );
        }
    }
}

#[test]
fn drop_only_rules_still_answer_with_a_mask_from_the_cache() {
    let scrape = "\
# TYPE go_threads gauge
go_threads 8
# TYPE up gauge
up{job=\"a\"} 1
up{job=\"b\"} 0
";
    let rules = "
relabel_configs:
  - source_labels: [__name__]
    regex: go_.*
    action: drop
";
    let mut harness = harness(rules, serde_json::Value::Null);
    let input = testing::batch_from_text(scrape).expect("parses");
    let first = harness.process(&input).expect("process");
    let second = harness.process(&input).expect("process");
    assert!(matches!(first, testing::Outcome::Mask(_)), "{first:?}");
    assert_eq!(first, second);
}

#[test]
fn duplicates_made_by_relabelling_are_dropped_in_every_scrape() {
    let scrape = "x{a=\"1\"} 1\nx{a=\"1\",b=\"2\"} 2\nx{a=\"3\",b=\"2\"} 3\n";
    let rules = "
relabel_configs:
  - regex: b
    action: labeldrop
";
    let mut harness = harness(rules, serde_json::Value::Null);
    for _ in 0..3 {
        assert_eq!(
            harness.process_text(scrape).expect("process"),
            "x{a=\"1\"} 1\nx{a=\"3\"} 3\n"
        );
    }
}

#[test]
fn cache_settings_are_checked_at_init() {
    let refused = |cache: serde_json::Value| {
        let config = serde_json::json!({ "relabel_configs": [], "cache": cache });
        match Relabel::init(config) {
            Ok(_) => panic!("cache {cache} was accepted"),
            Err(error) => error.to_string(),
        }
    };
    let message = refused(serde_json::json!({ "max_entries": 5 }));
    assert!(
        message.contains("cache: unknown field `max_entries`"),
        "{message}"
    );
    let message = refused(serde_json::json!({ "max_series": -1 }));
    assert!(message.contains("cache:"), "{message}");
    let message = refused(serde_json::json!({ "max_idle_scrapes": 0 }));
    assert!(
        message.contains("cache.max_idle_scrapes: must be at least 1"),
        "{message}"
    );
    let off = serde_json::json!({ "relabel_configs": [], "cache": { "max_series": 0 } });
    assert!(Relabel::init(off).is_ok());
}
