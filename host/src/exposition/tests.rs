//! Table-driven tests: input and expected result side by side. The expected parse result is written
//! in a small debug notation (`describe`): one line per family, one indented line per series.

use super::*;
use crate::model::{Family, Label, MetricType, Series};

/// `family NAME KIND [help=".."] [unit=".."]` then `  name{labels} value [@timestamp]` per series.
pub(super) fn describe(families: &[Family]) -> String {
    let mut out = String::new();
    for family in families {
        out.push_str(&format!("family {} {}", family.name, family.kind.as_str()));
        if let Some(help) = &family.help {
            out.push_str(&format!(" help={:?}", help.as_str()));
        }
        if let Some(unit) = &family.unit {
            out.push_str(&format!(" unit={:?}", unit.as_str()));
        }
        out.push('\n');
        for series in &family.series {
            let labels: Vec<String> = series
                .labels
                .iter()
                .map(|label| format!("{}={:?}", label.name, label.value.as_str()))
                .collect();
            out.push_str(&format!(
                "  {}{{{}}} {:?}",
                series.name,
                labels.join(","),
                series.value
            ));
            if let Some(timestamp) = series.timestamp_ms {
                out.push_str(&format!(" @{timestamp}"));
            }
            out.push('\n');
        }
    }
    out
}

fn parsed(input: &str) -> String {
    match parse(input.as_bytes()) {
        Ok(families) => describe(&families),
        Err(error) => panic!("{input:?} failed: {error}"),
    }
}

#[test]
fn parses_every_case_of_the_text_format() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "help and type",
            "# HELP up Whether the target is up.\n# TYPE up gauge\nup 1\n",
            "family up gauge help=\"Whether the target is up.\"\n  up{} 1.0\n",
        ),
        ("type before help", "# TYPE a counter\n# HELP a Things.\na 3\n", "family a counter help=\"Things.\"\n  a{} 3.0\n"),
        ("help escapes", "# HELP a x\\\\y\\nz \\q\na 1\n", "family a untyped help=\"x\\\\y\\nz \\\\q\"\n  a{} 1.0\n"),
        ("help without text", "# HELP a\na 1\n", "family a untyped help=\"\"\n  a{} 1.0\n"),
        (
            "label escapes",
            "a{path=\"C:\\\\dir\",quote=\"say \\\"hi\\\"\",multi=\"one\\ntwo\"} 1\n",
            "family a untyped\n  a{multi=\"one\\ntwo\",path=\"C:\\\\dir\",quote=\"say \\\"hi\\\"\"} 1.0\n",
        ),
        (
            "special values",
            "a{v=\"1\"} NaN\na{v=\"2\"} +Inf\na{v=\"3\"} -Inf\na{v=\"4\"} Inf\na{v=\"5\"} nan\na{v=\"6\"} -inf\n",
            "family a untyped\n  a{v=\"1\"} NaN\n  a{v=\"2\"} inf\n  a{v=\"3\"} -inf\n  a{v=\"4\"} inf\n  a{v=\"5\"} NaN\n  a{v=\"6\"} -inf\n",
        ),
        (
            "number forms",
            "a{v=\"1\"} 1e3\na{v=\"2\"} -0.5\na{v=\"3\"} +7\na{v=\"4\"} 1.5E-7\na{v=\"5\"} .5\n",
            "family a untyped\n  a{v=\"1\"} 1000.0\n  a{v=\"2\"} -0.5\n  a{v=\"3\"} 7.0\n  a{v=\"4\"} 1.5e-7\n  a{v=\"5\"} 0.5\n",
        ),
        (
            "timestamps",
            "a 1 1700000000000\nb 2 -5\n",
            "family a untyped\n  a{} 1.0 @1700000000000\nfamily b untyped\n  b{} 2.0 @-5\n",
        ),
        (
            "comments and blank lines",
            "# just a comment\n\n   \n#\n# HELP\n  a 1\n\t# another\n",
            "family a untyped\n  a{} 1.0\n",
        ),
        ("empty label set", "a{} 1\n", "family a untyped\n  a{} 1.0\n"),
        ("trailing comma", "a{x=\"1\",} 1\n", "family a untyped\n  a{x=\"1\"} 1.0\n"),
        (
            "blanks inside the label set",
            "a { x = \"1\" , y=\"2\" } 1\n",
            "family a untyped\n  a{x=\"1\",y=\"2\"} 1.0\n",
        ),
        ("no blank before the value", "a{x=\"1\"}1\n", "family a untyped\n  a{x=\"1\"} 1.0\n"),
        (
            "labels sorted by name",
            "a{zone=\"z\",app=\"p\",mode=\"m\"} 1\n",
            "family a untyped\n  a{app=\"p\",mode=\"m\",zone=\"z\"} 1.0\n",
        ),
        ("untyped family named after the sample", "x_total 4\n", "family x_total untyped\n  x_total{} 4.0\n"),
        ("crlf line ends", "# TYPE a gauge\r\na 1\r\n", "family a gauge\n  a{} 1.0\n"),
        ("no final newline", "a 1", "family a untyped\n  a{} 1.0\n"),
        ("metric name with colons", "job:rate:5m 1\n", "family job:rate:5m untyped\n  job:rate:5m{} 1.0\n"),
        (
            "histogram children join the family",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_sum 4.5\nh_count 3\nh_created 1.7e9\n",
            "family h histogram\n  h_bucket{le=\"1\"} 2.0\n  h_bucket{le=\"+Inf\"} 3.0\n  h_sum{} 4.5\n  h_count{} 3.0\n  h_created{} 1700000000.0\n",
        ),
        (
            "summary children join the family",
            "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\ns_count 3\n",
            "family s summary\n  s{quantile=\"0.5\"} 1.0\n  s_sum{} 2.0\n  s_count{} 3.0\n",
        ),
        (
            "children of untyped families are families of their own",
            "u 1\nu_sum 2\n",
            "family u untyped\n  u{} 1.0\nfamily u_sum untyped\n  u_sum{} 2.0\n",
        ),
        (
            "openmetrics counter, unit and eof",
            "# TYPE c counter\n# UNIT c seconds\n# HELP c Time.\nc_total 5\nc_created 1.5\n# EOF\n",
            "family c counter help=\"Time.\" unit=\"seconds\"\n  c_total{} 5.0\n  c_created{} 1.5\n",
        ),
        (
            "openmetrics info and gaugehistogram",
            "# TYPE i info\ni_info{v=\"1\"} 1\n# TYPE g gaugehistogram\ng_bucket{le=\"+Inf\"} 2\ng_gsum 3\ng_gcount 2\n",
            "family i info\n  i_info{v=\"1\"} 1.0\nfamily g gaugehistogram\n  g_bucket{le=\"+Inf\"} 2.0\n  g_gsum{} 3.0\n  g_gcount{} 2.0\n",
        ),
        ("openmetrics unknown type", "# TYPE x unknown\nx 1\n", "family x untyped\n  x{} 1.0\n"),
        (
            "samples of one family need not be contiguous",
            "# TYPE a gauge\na{x=\"1\"} 1\nb 2\na{x=\"2\"} 3\n",
            "family a gauge\n  a{x=\"1\"} 1.0\n  a{x=\"2\"} 3.0\nfamily b untyped\n  b{} 2.0\n",
        ),
        ("metadata without samples is dropped", "# HELP gone Nothing.\n# TYPE gone gauge\na 1\n", "family a untyped\n  a{} 1.0\n"),
        ("utf-8 in label values and help", "# HELP a Grüße\na{city=\"Zürich\"} 1\n", "family a untyped help=\"Grüße\"\n  a{city=\"Zürich\"} 1.0\n"),
        ("empty input", "", ""),
    ];
    for (name, input, expected) in cases {
        assert_eq!(parsed(input), *expected, "case {name:?}");
    }
}

#[test]
fn rejects_malformed_input_with_line_and_reason() {
    let cases: &[(&str, usize, &str)] = &[
        ("a 1\nfoo abc\n", 2, "invalid value \"abc\" for sample foo"),
        ("foo{a=\"b} 1\n", 1, "unterminated label value for label a in sample foo"),
        ("foo 1\n# TYPE foo counter\n", 2, "TYPE for foo after its samples"),
        ("# TYPE foo counter\n# TYPE foo gauge\n", 2, "second TYPE line for foo"),
        ("# HELP foo a\n# HELP foo b\n", 2, "second HELP line for foo"),
        ("# UNIT foo a\n# UNIT foo b\n", 2, "second UNIT line for foo"),
        ("1foo 1\n", 1, "invalid metric name at \"1foo 1\""),
        ("foo-bar 1\n", 1, "invalid metric name at \"foo-bar 1\""),
        ("foo{a=\"1\",a=\"2\"} 1\n", 1, "duplicate label name a in sample foo"),
        ("foo{b=\"1\",a=\"2\",b=\"3\"} 1\n", 1, "duplicate label name b in sample foo"),
        ("foo{__name__=\"x\"} 1\n", 1, "label name \"__name__\" is reserved (sample foo)"),
        (
            "foo{a=\"\\x\"} 1\n",
            1,
            "invalid escape sequence in label value (only \\\\, \\\" and \\n) for label a in sample foo",
        ),
        ("foo\n", 1, "missing value for sample foo"),
        ("foo{a=\"1\"}\n", 1, "missing value for sample foo"),
        ("foo 1 abc\n", 1, "invalid timestamp \"abc\" for sample foo"),
        ("foo 1 1.5\n", 1, "invalid timestamp \"1.5\" for sample foo"),
        ("foo 1 2 3\n", 1, "unexpected text after the timestamp of sample foo"),
        ("foo 1 # {trace=\"x\"} 1\n", 1, "invalid timestamp \"#\" for sample foo"),
        ("# TYPE foo bogus\n", 1, "unknown metric type \"bogus\" for foo"),
        ("# TYPE foo\n", 1, "missing type in TYPE line for foo"),
        ("# TYPE foo gauge extra\n", 1, "unexpected text after the type in TYPE line for foo"),
        ("# TYPE 1foo counter\n", 1, "invalid metric name in TYPE line at \"1foo counter\""),
        ("# HELP foo{ x\n", 1, "invalid metric name in HELP line at \"foo{ x\""),
        ("foo{a=\"b\" c=\"d\"} 1\n", 1, "expected ',' or '}' after the value of label a in sample foo"),
        ("foo{a} 1\n", 1, "expected '=' after label name a in sample foo"),
        ("foo{a=b} 1\n", 1, "expected '\"' to open the value of label a in sample foo"),
        ("foo{1a=\"b\"} 1\n", 1, "invalid label name at \"1a=\\\"b\\\"} 1\" in sample foo"),
        ("foo{,} 1\n", 1, "invalid label name at \",} 1\" in sample foo"),
        ("foo{a=\"b\"", 1, "unterminated label set for sample foo"),
        ("foo{a=\"b\",", 1, "unterminated label set for sample foo"),
        ("# EOF\nfoo 1\n", 2, "content after # EOF"),
        ("foo 1\r\nbar x\r\n", 2, "invalid value \"x\" for sample bar"),
    ];
    for (input, line, reason) in cases {
        let error = parse(input.as_bytes()).expect_err(input);
        assert_eq!(
            (error.line, error.reason.as_str()),
            (*line, *reason),
            "input {input:?}"
        );
        assert_eq!(error.to_string(), format!("line {line}: {reason}"));
    }
}

#[test]
fn rejects_invalid_utf8_with_its_line() {
    let error = parse(b"a 1\nb{x=\"\xff\"} 1\n").expect_err("invalid UTF-8");
    assert_eq!((error.line, error.reason.as_str()), (2, "invalid UTF-8"));
}

fn series(name: &str, labels: &[(&str, &str)], value: f64, timestamp_ms: Option<i64>) -> Series {
    Series {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(name, value)| Label::new(*name, *value))
            .collect(),
        value,
        timestamp_ms,
    }
}

fn family(name: &str, kind: MetricType, help: Option<&str>, series: Vec<Series>) -> Family {
    Family {
        name: name.into(),
        help: help.map(Into::into),
        unit: None,
        kind,
        series,
    }
}

#[test]
fn renders_text_the_pushgateway_accepts() {
    let without = RenderOptions {
        timestamps: false,
        omit_labels: &[],
    };
    let with = RenderOptions::default();
    let cases: Vec<(&str, Vec<Family>, RenderOptions, &str)> = vec![
        (
            "help, type and labels",
            vec![family("up", MetricType::Gauge, Some("Up."), vec![series("up", &[("a", "1"), ("b", "x")], 1.0, None)])],
            without,
            "# HELP up Up.\n# TYPE up gauge\nup{a=\"1\",b=\"x\"} 1\n",
        ),
        (
            "same-named families merge under one HELP and TYPE",
            vec![
                family("a", MetricType::Gauge, None, vec![series("a", &[("x", "1")], 1.0, None)]),
                family("b", MetricType::Gauge, None, vec![series("b", &[], 2.0, None)]),
                family("a", MetricType::Gauge, Some("Late help."), vec![series("a", &[("x", "2")], 3.0, None)]),
            ],
            without,
            "# HELP a Late help.\n# TYPE a gauge\na{x=\"1\"} 1\na{x=\"2\"} 3\n# TYPE b gauge\nb 2\n",
        ),
        (
            "untyped families get no TYPE line",
            vec![family("u", MetricType::Untyped, Some("U."), vec![series("u", &[], 1.0, None)])],
            without,
            "# HELP u U.\nu 1\n",
        ),
        (
            "escapes",
            vec![family(
                "e",
                MetricType::Gauge,
                Some("back\\slash\nnewline \"quoted\""),
                vec![series("e", &[("v", "a\\b\"c\nd")], 1.0, None)],
            )],
            without,
            "# HELP e back\\\\slash\\nnewline \"quoted\"\n# TYPE e gauge\ne{v=\"a\\\\b\\\"c\\nd\"} 1\n",
        ),
        (
            "values",
            vec![family(
                "v",
                MetricType::Gauge,
                None,
                vec![
                    series("v", &[("i", "0")], 0.1, None),
                    series("v", &[("i", "1")], 1e-7, None),
                    series("v", &[("i", "2")], -0.0, None),
                    series("v", &[("i", "3")], 1e300, None),
                    series("v", &[("i", "4")], f64::NAN, None),
                    series("v", &[("i", "5")], f64::INFINITY, None),
                    series("v", &[("i", "6")], f64::NEG_INFINITY, None),
                    series("v", &[("i", "7")], 9007199254740993.0, None),
                    series("v", &[("i", "8")], -42.0, None),
                    series("v", &[("i", "9")], 123456.789, None),
                ],
            )],
            without,
            "# TYPE v gauge\nv{i=\"0\"} 0.1\nv{i=\"1\"} 1e-7\nv{i=\"2\"} -0.0\nv{i=\"3\"} 1e300\nv{i=\"4\"} NaN\n\
             v{i=\"5\"} +Inf\nv{i=\"6\"} -Inf\nv{i=\"7\"} 9007199254740992.0\nv{i=\"8\"} -42\nv{i=\"9\"} 123456.789\n",
        ),
        (
            "timestamps when asked",
            vec![family("t", MetricType::Counter, None, vec![series("t", &[], 1.0, Some(1700000000123))])],
            with,
            "# TYPE t counter\nt 1 1700000000123\n",
        ),
        (
            "no timestamps when not asked",
            vec![family("t", MetricType::Counter, None, vec![series("t", &[], 1.0, Some(1700000000123))])],
            without,
            "# TYPE t counter\nt 1\n",
        ),
        (
            "openmetrics counter becomes foo_total, _created a gauge",
            vec![family(
                "c",
                MetricType::Counter,
                Some("C."),
                vec![series("c_total", &[], 5.0, None), series("c_created", &[], 1.5, None)],
            )],
            without,
            "# HELP c_total C.\n# TYPE c_total counter\nc_total 5\n# HELP c_created C.\n# TYPE c_created gauge\nc_created 1.5\n",
        ),
        (
            "gaugehistogram renders as untyped buckets plus gauges, info as gauge",
            vec![
                family(
                    "g",
                    MetricType::GaugeHistogram,
                    None,
                    vec![series("g_bucket", &[("le", "+Inf")], 2.0, None), series("g_gsum", &[], 3.0, None)],
                ),
                family("i", MetricType::Info, None, vec![series("i_info", &[("v", "1")], 1.0, None)]),
                family("s", MetricType::StateSet, None, vec![series("s", &[("s", "on")], 1.0, None)]),
            ],
            without,
            "g_bucket{le=\"+Inf\"} 2\n# TYPE g_gsum gauge\ng_gsum 3\n\
             # TYPE i_info gauge\ni_info{v=\"1\"} 1\n# TYPE s gauge\ns{s=\"on\"} 1\n",
        ),
        (
            "a sample that fits no family renders as its own untyped family",
            vec![family("a", MetricType::Gauge, None, vec![series("a", &[], 1.0, None), series("zzz", &[], 2.0, None)])],
            without,
            "# TYPE a gauge\na 1\nzzz 2\n",
        ),
        ("families without series render nothing", vec![family("a", MetricType::Gauge, Some("A."), vec![])], without, ""),
    ];
    for (name, families, options, expected) in cases {
        assert_eq!(
            render_to_string(&families, &options),
            expected,
            "case {name:?}"
        );
    }
}

#[test]
fn rendered_values_parse_back_to_the_same_bits() {
    let values = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.1,
        1.0 / 3.0,
        1e-300,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
        1e15,
        1e15 - 1.0,
        -1e15,
        9007199254740993.0,
        123456789.125,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    for value in values {
        let mut text = Vec::from(&b"v "[..]);
        render::write_value(&mut text, value);
        let families = parse(&text).expect("rendered value parses");
        assert_eq!(
            families[0].series[0].value.to_bits(),
            value.to_bits(),
            "{value:?} as {:?}",
            String::from_utf8_lossy(&text)
        );
    }
}
