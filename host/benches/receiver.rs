//! The receiver's per-message work without network: decode a message the poller wrote (zstd,
//! batch validation), then render it for a sink: remote_write (protobuf straight from the batch,
//! then snappy) or the Pushgateway (text 0.0.4, also straight from the batch). Samples per second, on the
//! node_exporter capture and on the 100 000-series scrape. Figures go in `BENCHMARKS.md`.
//!
//! Run: `cargo bench -p promrelay --bench receiver -- --warm-up-time 1 --measurement-time 4`.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use promrelay::batch::ScrapeBatch;
use promrelay::exposition::{LabelLimit, ScrapeWriter};
use promrelay::model::ScrapeMeta;
use promrelay::sink::pushgateway::Pushgateway;
use promrelay::sink::remote_write;
use promrelay::wire::{self, WireFormat, WireMessage};

const NODE_EXPORTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/node_exporter.prom"
);

/// The message the poller publishes for `body`.
fn message(body: &[u8]) -> (WireMessage, usize) {
    let mut writer = ScrapeWriter::new();
    writer.begin([("job", "node"), ("instance", "host:9100")]);
    let limit = LabelLimit {
        limit: 1024,
        added: &["job", "instance"],
    };
    writer.parse(body, limit).expect("the input parses");
    let mut bytes = Vec::new();
    writer.finish_into(&mut bytes);
    let meta = ScrapeMeta {
        publisher: "bench".into(),
        job: "node".into(),
        instance: "host:9100".into(),
        time_ms: 1_700_000_000_000,
    };
    let scrape = ScrapeBatch::new(meta, bytes);
    let samples = scrape.sample_count();
    let mut messages =
        wire::encode_batch(&scrape, "bench", WireFormat::Batch, usize::MAX).expect("encodes");
    (messages.remove(0), samples)
}

fn decode(message: &WireMessage) -> ScrapeBatch {
    wire::decode_batch_with_limit(
        Some(&message.headers),
        &message.payload,
        wire::MAX_DECODED_BYTES,
    )
    .expect("decodes")
}

fn benchmarks(criterion: &mut Criterion) {
    let node = std::fs::read(NODE_EXPORTER).expect("tests/data/node_exporter.prom is committed");
    let wide = common::synthetic_scrape().into_bytes();
    let pushgateway = Pushgateway::new(
        "http://127.0.0.1:9091".parse().expect("a URL"),
        false,
        Duration::from_secs(5),
    )
    .expect("a client");
    for (name, body) in [("node_exporter", &node), ("100k_series", &wide)] {
        let (message, samples) = message(body);
        let mut group = criterion.benchmark_group(format!("receiver/{name}"));
        group.throughput(Throughput::Elements(samples as u64));
        group.measurement_time(Duration::from_secs(5));
        group.sample_size(if samples > 10_000 { 10 } else { 50 });
        group.bench_function("decode", |b| b.iter(|| decode(black_box(&message))));
        group.bench_function("decode_remote_write", |b| {
            b.iter(|| {
                let scrape = decode(black_box(&message));
                let request = remote_write::encode_batch(&scrape, false);
                snap::raw::Encoder::new()
                    .compress_vec(&request)
                    .expect("snappy")
                    .len()
            })
        });
        group.bench_function("decode_pushgateway", |b| {
            b.iter(|| {
                let scrape = decode(black_box(&message));
                pushgateway.body_of_batch(&scrape).len()
            })
        });
        group.finish();
    }
}

criterion_group!(receiver, benchmarks);
criterion_main!(receiver);
