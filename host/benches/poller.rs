//! The poller's per-scrape path without network: parse into the scrape's batch (target labels
//! included) → compress for the wire, with and without the staleness tracker. Reported in samples per second beside a parse-only baseline of the same
//! input, measured in the same run. Figures go in `BENCHMARKS.md`.

mod common;

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use promrelay::batch::ScrapeBatch;
use promrelay::exposition::{self, LabelLimit, ScrapeWriter};
use promrelay::model::ScrapeMeta;
use promrelay::wire::WireFormat;

const NODE_EXPORTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/node_exporter.prom"
);

/// The poller's path for one scrape body: parse into the target's batch (target labels and
/// the synthetic series included), optionally the staleness tracker, compress for the wire.
fn poller_path(
    body: &[u8],
    writer: &mut ScrapeWriter,
    staleness: Option<&mut promrelay::stale::Staleness>,
) -> usize {
    writer.begin([("job", "node"), ("instance", "host:9100")]);
    let limit = LabelLimit {
        limit: 1024,
        added: &["job", "instance"],
    };
    let samples = writer.parse(body, limit).expect("benchmark input parses");
    writer
        .add_synthetic("up", "up", 1.0)
        .and_then(|()| writer.add_synthetic("scrape_samples_scraped", "samples", samples as f64))
        .expect("synthetic series");
    let mut bytes = Vec::new();
    writer.finish_into(&mut bytes);
    let mut scrape = ScrapeBatch::new(
        ScrapeMeta {
            publisher: "bench".into(),
            job: "node".into(),
            instance: "host:9100".into(),
            time_ms: 1_700_000_000_000,
        },
        bytes,
    );
    if let Some(staleness) = staleness {
        staleness.mark(&mut scrape);
    }
    let messages =
        promrelay::wire::encode_batch(&scrape, "prometheus", WireFormat::Batch, usize::MAX)
            .expect("encodes");
    messages.iter().map(|m| m.payload.len()).sum()
}

/// The parse alone, into the target's batch.
fn parse_batch(body: &[u8], writer: &mut ScrapeWriter, out: &mut Vec<u8>) -> usize {
    writer.begin([("job", "node"), ("instance", "host:9100")]);
    let limit = LabelLimit {
        limit: 1024,
        added: &["job", "instance"],
    };
    let samples = writer.parse(body, limit).expect("benchmark input parses");
    writer.finish_into(out);
    samples
}

fn benchmarks(criterion: &mut Criterion) {
    let node = std::fs::read(NODE_EXPORTER).expect("tests/data/node_exporter.prom is committed");
    let wide = common::synthetic_scrape().into_bytes();
    for (name, body) in [("node_exporter", &node), ("100k_series", &wide)] {
        let samples = exposition::parse(body)
            .expect("parses")
            .iter()
            .map(|f| f.series.len())
            .sum::<usize>();
        let mut group = criterion.benchmark_group(format!("poller/{name}"));
        group.throughput(Throughput::Elements(samples as u64));
        group.measurement_time(Duration::from_secs(5));
        group.sample_size(if samples > 10_000 { 10 } else { 50 });
        group.bench_function("parse_only_model", |b| {
            b.iter(|| exposition::parse(black_box(body)))
        });
        let mut writer = ScrapeWriter::new();
        let mut out = Vec::new();
        group.bench_function("parse_only_batch", |b| {
            b.iter(|| parse_batch(black_box(body), &mut writer, &mut out))
        });
        group.bench_function("parse_label_encode_compress", |b| {
            b.iter(|| poller_path(black_box(body), &mut writer, None))
        });
        // What the publisher does: the same with the staleness tracker (steady state: the
        // target's previous scrape had the same series).
        let mut staleness = promrelay::stale::Staleness::default();
        group.bench_function("parse_label_stale_encode_compress", |b| {
            b.iter(|| poller_path(black_box(body), &mut writer, Some(&mut staleness)))
        });
        group.finish();
    }
}

criterion_group!(poller, benchmarks);
criterion_main!(poller);
