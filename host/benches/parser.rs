//! Parser and renderer throughput: the poller's parse into a batch (`exposition::ScrapeWriter`,
//! target labels included) and `exposition::parse` into the model, side by side with the
//! `prometheus-parse` crate on the captured node_exporter scrape (`tests/data/node_exporter.prom`) and on a synthetic
//! 100 000-series scrape generated here; then `exposition::render` on both.
//!
//! Run: `cargo bench -p promrelay --bench parser -- --warm-up-time 1 --measurement-time 3`.
//! Parse throughput is in samples per second; render throughput in bytes of output text.

use std::fmt::Write;
use std::hint::black_box;
use std::io;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use promrelay::exposition::{parse, render, LabelLimit, RenderOptions, ScrapeWriter};

const NODE_EXPORTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/node_exporter.prom"
);

/// 100 000 series in 1 000 families: counters, gauges and histograms with the label shapes of an
/// HTTP service (method, path, status code, instance), values mixing integers and fractions.
fn synthetic_scrape() -> String {
    let mut text = String::with_capacity(16 << 20);
    let methods = ["GET", "POST", "PUT", "DELETE"];
    let buckets = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
    ];
    let mut written = 0usize;
    let mut family = 0usize;
    while written < 100_000 {
        let kind = family % 3;
        let name = match kind {
            0 => format!("app_http_requests_{family}_total"),
            1 => format!("app_queue_depth_{family}"),
            _ => format!("app_request_duration_{family}_seconds"),
        };
        let type_word = ["counter", "gauge", "histogram"][kind];
        let _ = writeln!(
            text,
            "# HELP {name} Synthetic family number {family} for the parser benchmark."
        );
        let _ = writeln!(text, "# TYPE {name} {type_word}");
        if kind == 2 {
            for series in 0..10 {
                let labels = format!(
                    "instance=\"web-{series:02}.example.net:8080\",method=\"{}\",path=\"/api/v1/items/{family}\"",
                    methods[series % 4]
                );
                for (index, bucket) in buckets.iter().enumerate() {
                    let _ = writeln!(
                        text,
                        "{name}_bucket{{{labels},le=\"{bucket}\"}} {}",
                        (index + 1) * 17 + series
                    );
                }
                let _ = writeln!(
                    text,
                    "{name}_sum{{{labels}}} {}",
                    1234.5678 + series as f64 * 0.001
                );
                let _ = writeln!(text, "{name}_count{{{labels}}} {}", 187 + series);
                written += buckets.len() + 2;
            }
        } else {
            for series in 0..100 {
                let value = if kind == 0 {
                    format!("{}", 1_000_000 + series * 7919)
                } else {
                    format!("{}", series as f64 * 0.37 + 0.125)
                };
                let _ = writeln!(
                    text,
                    "{name}{{code=\"{}\",instance=\"web-{:02}.example.net:8080\",method=\"{}\"}} {value}",
                    [200, 404, 500][series % 3],
                    series % 25,
                    methods[series % 4]
                );
            }
            written += 100;
        }
        family += 1;
    }
    text
}

fn prometheus_parse(text: &str) -> io::Result<prometheus_parse::Scrape> {
    // The crate takes owned lines; building them is part of using it.
    prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
}

fn benchmarks(criterion: &mut Criterion) {
    let node_exporter =
        std::fs::read_to_string(NODE_EXPORTER).expect("tests/data/node_exporter.prom is committed");
    let synthetic = synthetic_scrape();
    let inputs = [
        ("node_exporter", node_exporter),
        ("synthetic_100k", synthetic),
    ];

    for (name, text) in &inputs {
        let families = parse(text.as_bytes()).expect("benchmark input parses");
        let samples: usize = families.iter().map(|family| family.series.len()).sum();
        let theirs = prometheus_parse(text).expect("prometheus-parse parses the input");
        eprintln!(
            "{name}: {} bytes, {} families, {samples} samples (prometheus-parse: {} samples)",
            text.len(),
            families.len(),
            theirs.samples.len()
        );
    }

    let mut group = criterion.benchmark_group("parse");
    for (name, text) in &inputs {
        let samples: usize = parse(text.as_bytes())
            .expect("parses")
            .iter()
            .map(|family| family.series.len())
            .sum();
        // Samples per second: the figure Prometheus' own parser is compared by.
        group.throughput(Throughput::Elements(samples as u64));
        // What the poller runs: into the target's batch, its writer reused from the previous
        // scrape, `job` and `instance` added to every series.
        let mut writer = ScrapeWriter::new();
        let mut batch = Vec::new();
        group.bench_with_input(
            BenchmarkId::new("promrelay-batch", name),
            text,
            |bencher, text| {
                bencher.iter(|| {
                    writer.begin([("job", "node"), ("instance", "host:9100")]);
                    let limit = LabelLimit {
                        limit: 1024,
                        added: &["job", "instance"],
                    };
                    let samples = writer.parse(black_box(text.as_bytes()), limit);
                    writer.finish_into(&mut batch);
                    samples.expect("parses")
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("promrelay-model", name),
            text,
            |bencher, text| bencher.iter(|| parse(black_box(text.as_bytes())).expect("parses")),
        );
        group.bench_with_input(
            BenchmarkId::new("prometheus-parse", name),
            text,
            |bencher, text| bencher.iter(|| prometheus_parse(black_box(text)).expect("parses")),
        );
    }
    group.finish();

    let mut group = criterion.benchmark_group("render");
    let options = RenderOptions {
        timestamps: false,
        omit_labels: &[],
    };
    for (name, text) in &inputs {
        let families = parse(text.as_bytes()).expect("benchmark input parses");
        let mut out = Vec::new();
        render(&families, &options, &mut out);
        group.throughput(Throughput::Bytes(out.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("promrelay", name),
            &families,
            |bencher, families| {
                bencher.iter(|| {
                    out.clear();
                    render(black_box(families), &options, &mut out);
                    out.len()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(parser, benchmarks);
criterion_main!(parser);
