//! The poller's per-scrape path without network: parse → add target labels → encode for the wire
//! (batch + compress), with and without the staleness tracker. Reported in samples per second beside a parse-only baseline of the same
//! input, measured in the same run. Figures go in `BENCHMARKS.md`.

mod common;

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use promrelay::exposition;
use promrelay::model::{Scrape, ScrapeMeta};

const NODE_EXPORTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/node_exporter.prom"
);

fn poller_path(body: &[u8], staleness: Option<&mut promrelay::stale::Staleness>) -> usize {
    let families = exposition::parse(body).expect("benchmark input parses");
    let mut scrape = Scrape {
        meta: ScrapeMeta {
            publisher: "bench".into(),
            job: "node".into(),
            instance: "host:9100".into(),
            time_ms: 1_700_000_000_000,
        },
        families,
    };
    scrape.add_target_labels("node", "host:9100");
    let Some(staleness) = staleness else {
        let message = promrelay::wire::encode(&scrape, "prometheus").expect("encodes");
        return message.payload.len();
    };
    // As the publisher does it: markers, then the wire's batch kept by the tracker.
    let mut marked = Some(staleness.begin(&mut scrape));
    let messages = promrelay::wire::encode_parts_with(
        &scrape,
        "prometheus",
        promrelay::wire::WireFormat::Batch,
        usize::MAX,
        Some(&mut |batch: &[u8]| {
            if let Some(marked) = marked.take() {
                staleness.finish(marked, batch);
            }
        }),
    )
    .expect("encodes");
    messages.iter().map(|m| m.payload.len()).sum()
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
        group.bench_function("parse_only", |b| {
            b.iter(|| exposition::parse(black_box(body)))
        });
        group.bench_function("parse_label_encode_compress", |b| {
            b.iter(|| poller_path(black_box(body), None))
        });
        // What the publisher does: the same with the staleness tracker (steady state: the
        // target's previous scrape had the same series).
        let mut staleness = promrelay::stale::Staleness::default();
        group.bench_function("parse_label_stale_encode_compress", |b| {
            b.iter(|| poller_path(black_box(body), Some(&mut staleness)))
        });
        group.finish();
    }
}

criterion_group!(poller, benchmarks);
criterion_main!(poller);
