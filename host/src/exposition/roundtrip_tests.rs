//! parse → render → parse is the identity: on the captured node_exporter scrape, on generated
//! families (property tests), and as judged by an independent parser (`promtool check metrics`).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use proptest::prelude::*;

use super::tests::describe;
use super::*;
use crate::model::{Family, Label, MetricType, Series};

const NODE_EXPORTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/node_exporter.prom"
);

const OPENMETRICS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/parser/openmetrics.prom"
);
const OPENMETRICS_RENDERED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/parser/openmetrics.rendered.prom"
);

/// Input and expected 0.0.4 output side by side in `tests/data/parser/`.
#[test]
fn openmetrics_shapes_render_as_the_committed_text() {
    let input = std::fs::read(OPENMETRICS).expect("tests/data/parser fixture is committed");
    let expected = std::fs::read_to_string(OPENMETRICS_RENDERED)
        .expect("tests/data/parser fixture is committed");
    let families = parse(&input).expect("the fixture parses");
    assert_eq!(
        render_to_string(
            &families,
            &RenderOptions {
                timestamps: false,
                omit_labels: &[]
            }
        ),
        expected
    );
    let again = parse(expected.as_bytes()).expect("rendered text parses");
    assert_eq!(
        render_to_string(
            &again,
            &RenderOptions {
                timestamps: false,
                omit_labels: &[]
            }
        ),
        expected
    );
}

fn node_exporter() -> Vec<u8> {
    std::fs::read(NODE_EXPORTER).expect("tests/data/node_exporter.prom is committed")
}

#[test]
fn node_exporter_scrape_parses_completely() {
    let input = node_exporter();
    let families = parse(&input).expect("node_exporter output parses");
    let samples: usize = families.iter().map(|family| family.series.len()).sum();
    let sample_lines = input
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty() && line[0] != b'#')
        .count();
    assert_eq!(samples, sample_lines);
    let typed = input
        .split(|&byte| byte == b'\n')
        .filter(|line| line.starts_with(b"# TYPE "))
        .count();
    assert_eq!(
        families.len(),
        typed,
        "every node_exporter family has a TYPE line"
    );
    assert!(families.iter().all(|family| family.help.is_some()));
    let histogram = families
        .iter()
        .find(|family| family.kind == MetricType::Histogram);
    let summary = families
        .iter()
        .find(|family| family.kind == MetricType::Summary);
    assert!(
        histogram.is_some() || summary.is_some(),
        "the capture has a histogram or a summary"
    );
}

#[test]
fn node_exporter_parse_render_parse_is_the_identity() {
    let families = parse(&node_exporter()).expect("node_exporter output parses");
    let text = render_to_string(&families, &RenderOptions::default());
    let again = parse(text.as_bytes()).expect("rendered text parses");
    assert_eq!(describe(&again), describe(&families));
    assert_eq!(render_to_string(&again, &RenderOptions::default()), text);
}

/// The lint findings of promtool, one per line, sorted; parse errors make the test fail.
fn promtool_findings(promtool: &str, text: &[u8]) -> Vec<String> {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text)
        .expect("promtool reads stdin");
    let output = child.wait_with_output().expect("promtool finishes");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Exit 0: clean; 3: lint findings only; anything else (1) is a parse error.
    assert!(
        matches!(output.status.code(), Some(0 | 3)),
        "promtool rejected the text: {report}"
    );
    assert!(
        !report.contains("error"),
        "promtool reported an error: {report}"
    );
    let mut findings: Vec<String> = report.lines().map(str::to_string).collect();
    findings.sort();
    findings
}

#[test]
fn promtool_accepts_rendered_node_exporter_output() {
    let promtool = "/usr/bin/promtool";
    if !std::path::Path::new(promtool).exists() {
        eprintln!("SKIPPED: {promtool} is absent (Debian package `prometheus`); cannot cross-check render");
        return;
    }
    let input = node_exporter();
    let families = parse(&input).expect("node_exporter output parses");
    let rendered = render_to_string(
        &families,
        &RenderOptions {
            timestamps: false,
            omit_labels: &[],
        },
    );
    assert_eq!(
        promtool_findings(promtool, rendered.as_bytes()),
        promtool_findings(promtool, &input)
    );

    // The OpenMetrics shapes and escapes too: promtool must parse what they render as.
    let rendered =
        std::fs::read(OPENMETRICS_RENDERED).expect("tests/data/parser fixture is committed");
    promtool_findings(promtool, &rendered);
}

fn canonical(value: f64) -> f64 {
    if value.is_nan() {
        f64::NAN
    } else {
        value
    }
}

fn value_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_map(canonical),
        (-1_000_000i64..1_000_000).prop_map(|value| value as f64),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
    ]
}

fn label_value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9/:._-]{0,20}",
        any::<String>(),
        Just("\\\"\n\\n".to_string())
    ]
}

fn labels_strategy() -> impl Strategy<Value = Vec<Label>> {
    prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,10}", label_value_strategy(), 0..5)
        .prop_map(|labels: BTreeMap<String, String>| {
            labels
                .into_iter()
                .filter(|(name, _)| name != "__name__")
                .map(|(name, value)| Label::new(name, value))
                .collect()
        })
}

/// (child suffix choice, labels, value, timestamp)
type SeriesParts = (usize, Vec<Label>, f64, Option<i64>);

fn series_strategy() -> impl Strategy<Value = SeriesParts> {
    (
        0usize..8,
        labels_strategy(),
        value_strategy(),
        prop::option::of(any::<i64>()),
    )
}

/// Families in canonical 0.0.4 shape, or (with `openmetrics`) in any shape the parser produces.
fn families_strategy(openmetrics: bool) -> impl Strategy<Value = Vec<Family>> {
    let kinds: &'static [MetricType] = if openmetrics {
        &[
            MetricType::Counter,
            MetricType::Gauge,
            MetricType::Untyped,
            MetricType::Histogram,
            MetricType::Summary,
            MetricType::GaugeHistogram,
            MetricType::Info,
            MetricType::StateSet,
        ]
    } else {
        &[
            MetricType::Counter,
            MetricType::Gauge,
            MetricType::Untyped,
            MetricType::Histogram,
            MetricType::Summary,
        ]
    };
    let family = (
        prop::sample::select(kinds),
        "[a-z]{1,6}",
        prop::option::of("[^ \t\r][^\r]{0,30}"),
        prop::option::of("[a-z]{1,8}"),
        prop::collection::vec(series_strategy(), 1..6),
    );
    prop::collection::vec(family, 0..6).prop_map(move |families| {
        families
            .into_iter()
            .enumerate()
            .map(|(index, (kind, word, help, unit, parts))| {
                let name = format!("m{index}_{word}");
                let mut series: Vec<Series> = parts
                    .into_iter()
                    .map(|(choice, labels, value, timestamp_ms)| {
                        let suffixes: &[&str] = match (kind, openmetrics) {
                            (MetricType::Histogram, _) => &["_bucket", "_sum", "_count"],
                            (MetricType::Summary, _) => &["", "_sum", "_count"],
                            (MetricType::Counter, true) => &["", "_total", "_created"],
                            (MetricType::GaugeHistogram, _) => &["_bucket", "_gsum", "_gcount"],
                            (MetricType::Info, _) => &["_info"],
                            _ => &[""],
                        };
                        let suffix = suffixes[choice % suffixes.len()];
                        Series {
                            name: format!("{name}{suffix}").into(),
                            labels,
                            value,
                            timestamp_ms,
                        }
                    })
                    .collect();
                // Render writes a duplicated identity once; the identity holds for distinct series.
                let mut distinct: Vec<Series> = Vec::with_capacity(series.len());
                for candidate in series.drain(..) {
                    if !distinct.iter().any(|kept| kept.same_identity(&candidate)) {
                        distinct.push(candidate);
                    }
                }
                let series = distinct;
                Family {
                    name: name.into(),
                    help: help.map(Into::into),
                    unit: unit.map(Into::into),
                    kind,
                    series,
                }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parse_render_parse_is_the_identity(families in families_strategy(false), timestamps in any::<bool>()) {
        let options = RenderOptions { timestamps, omit_labels: &[] };
        let text = render_to_string(&families, &options);
        let parsed = parse(text.as_bytes()).map_err(|error| TestCaseError::fail(format!("{error}\n{text}")))?;
        let mut expected = families.clone();
        if !timestamps {
            expected.iter_mut().flat_map(|family| family.series.iter_mut()).for_each(|series| series.timestamp_ms = None);
        }
        prop_assert_eq!(describe(&parsed), describe(&expected), "rendered:\n{}", text);
        prop_assert_eq!(render_to_string(&parsed, &options), text);
    }

    #[test]
    fn openmetrics_shapes_render_to_a_fixed_point(families in families_strategy(true)) {
        let options = RenderOptions::default();
        let text = render_to_string(&families, &options);
        let parsed = parse(text.as_bytes()).map_err(|error| TestCaseError::fail(format!("{error}\n{text}")))?;
        prop_assert_eq!(render_to_string(&parsed, &options), text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&input);
    }
}
