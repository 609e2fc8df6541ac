//! The parser's errors: every one names a real line of its input (checked over thousands of
//! deterministic mutations of the fixtures), and the label limit fails a sample at its line,
//! counting labels as filter output is counted.

use super::*;
use crate::model::{DEFAULT_LABEL_LIMIT, TARGET_LABELS};
use crate::mutations::{line_count, mutate, window, Rng};

const NODE_EXPORTER: &[u8] = include_bytes!("../../../tests/data/node_exporter.prom");
const OPENMETRICS: &[u8] = include_bytes!("../../../tests/data/parser/openmetrics.prom");
const RENDERED: &[u8] = include_bytes!("../../../tests/data/parser/openmetrics.rendered.prom");

/// Inputs in the shape of the parser's own test cases: escapes, timestamps, metadata, CRLF.
const SMALL_INPUTS: &[&[u8]] = &[
    b"# HELP up Whether the target is up.\n# TYPE up gauge\nup 1\n",
    b"a{path=\"C:\\\\dir\",quote=\"say \\\"hi\\\"\",multi=\"one\\ntwo\"} 1\n",
    b"# TYPE h histogram\nh_bucket{le=\"0.5\",x=\"y\"} 1 1700000000000\nh_sum 2\nh_count 3\n",
    b"foo 1\r\nbar{a=\"b\"} 2\r\n# EOF\r\n",
    b"# TYPE c counter\n# UNIT c seconds\nc_total 1\nc_created 1.7e9\n",
    b"u{a=\"NaN\"} NaN\nu{a=\"inf\"} +Inf\nu{a=\"x\"} -Inf\n",
];

fn limit(limit: usize) -> LabelLimit<'static> {
    LabelLimit {
        limit,
        added: &TARGET_LABELS,
    }
}

/// Checks one input: a failure must name a line the input has, and give a reason.
fn check_error_names_a_line(case: usize, input: &[u8], limited: bool) {
    let result = if limited {
        parse_with_label_limit(input, limit(6))
    } else {
        parse(input)
    };
    if let Err(error) = result {
        let lines = line_count(input);
        assert!(
            (1..=lines).contains(&error.line) && !error.reason.is_empty(),
            "case {case}: error {error:?} names no line of the {lines}-line input {:?}",
            String::from_utf8_lossy(input)
        );
        assert!(error
            .to_string()
            .starts_with(&format!("line {}: ", error.line)));
    }
}

#[test]
fn every_parse_error_of_thousands_of_mutated_fixtures_names_its_line() {
    let fixtures: Vec<&[u8]> = [NODE_EXPORTER, OPENMETRICS, RENDERED]
        .into_iter()
        .chain(SMALL_INPUTS.iter().copied())
        .collect();
    let mut rng = Rng::new(11);
    let mut failures = 0;
    for case in 0..4_000 {
        let fixture = fixtures[case % fixtures.len()];
        let input = mutate(&window(fixture, 30, &mut rng), &mut rng);
        check_error_names_a_line(case, &input, case % 2 == 1);
        failures += usize::from(parse(&input).is_err());
    }
    // The mutations must actually break most inputs, or the test proves little.
    assert!(
        failures > 1_000,
        "only {failures} of 4000 mutated inputs failed to parse"
    );
}

/// A sample line with `count` labels `l0="v"`, `l1="v"` ….
fn sample_with_labels(count: usize) -> String {
    let labels: Vec<String> = (0..count).map(|i| format!("l{i}=\"v\"")).collect();
    format!("wide{{{}}} 1\n", labels.join(","))
}

#[test]
fn a_sample_over_the_label_limit_fails_the_parse_at_its_line() {
    // 1021 written labels + __name__ + job + instance = 1024: the default limit, accepted.
    let fits = format!("up 1\n{}", sample_with_labels(DEFAULT_LABEL_LIMIT - 3));
    parse_with_label_limit(fits.as_bytes(), limit(DEFAULT_LABEL_LIMIT)).expect("1024 labels fit");

    let over = format!("up 1\n# a comment\n{}", sample_with_labels(1022));
    let error = parse_with_label_limit(over.as_bytes(), limit(DEFAULT_LABEL_LIMIT))
        .expect_err("1025 labels");
    assert_eq!(error.line, 3);
    assert_eq!(
        error.reason,
        "sample wide has 1022 labels, 1025 with __name__, job and instance: more than the \
         label_limit of 1024 (raise the job's label_limit, or drop labels at the target)"
    );
    // Without a limit (the receiver's parse of text already held to one) it parses.
    assert!(parse(over.as_bytes()).is_ok());
}

#[test]
fn the_label_limit_is_the_jobs_own() {
    let text = sample_with_labels(3);
    assert!(parse_with_label_limit(text.as_bytes(), limit(6)).is_ok());
    let error = parse_with_label_limit(text.as_bytes(), limit(5)).expect_err("6 > 5");
    assert_eq!(error.line, 1);
    assert!(
        error.reason.contains("label_limit of 5"),
        "{}",
        error.reason
    );
    // Samples without braces carry __name__ and the target labels only.
    assert!(parse_with_label_limit(b"up 1\n", limit(3)).is_ok());
}
