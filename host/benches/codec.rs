//! Which compression the wire format uses, by measurement: gzip (flate2) and zstd at several
//! levels on a captured node_exporter scrape (`tests/data/node_exporter.prom`), for compress time,
//! decompress time and ratio. Also the whole `wire::encode` / `wire::decode` of that scrape.
//!
//! Run: `cargo bench -p promrelay --bench codec`. The ratios are printed once at the start; the
//! figures go in `BENCHMARKS.md` ("Wire codec").

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use promrelay::model::{Scrape, ScrapeMeta};

const SCRAPE: &[u8] = include_bytes!("../../tests/data/node_exporter.prom");

#[derive(Clone, Copy, Debug)]
enum Codec {
    Gzip(u32),
    Zstd(i32),
}

impl Codec {
    fn name(self) -> String {
        match self {
            Codec::Gzip(level) => format!("gzip-{level}"),
            Codec::Zstd(level) => format!("zstd-{level}"),
        }
    }

    fn compress(self, input: &[u8]) -> Vec<u8> {
        match self {
            Codec::Gzip(level) => {
                let mut encoder = flate2::write::GzEncoder::new(
                    Vec::with_capacity(input.len() / 4),
                    flate2::Compression::new(level),
                );
                encoder.write_all(input).expect("gzip into a Vec");
                encoder.finish().expect("gzip into a Vec")
            }
            Codec::Zstd(level) => zstd::bulk::compress(input, level).expect("zstd into a Vec"),
        }
    }

    fn decompress(self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(SCRAPE.len());
        match self {
            Codec::Gzip(_) => {
                flate2::read::GzDecoder::new(input)
                    .read_to_end(&mut out)
                    .expect("valid gzip");
            }
            Codec::Zstd(_) => {
                zstd::stream::read::Decoder::new(input)
                    .expect("zstd decoder")
                    .read_to_end(&mut out)
                    .expect("valid zstd");
            }
        }
        out
    }
}

const CODECS: [Codec; 7] = [
    Codec::Gzip(1),
    Codec::Gzip(6),
    Codec::Gzip(9),
    Codec::Zstd(1),
    Codec::Zstd(3),
    Codec::Zstd(9),
    Codec::Zstd(19),
];

fn codecs(c: &mut Criterion) {
    eprintln!("input: {} bytes", SCRAPE.len());
    for codec in CODECS {
        let compressed = codec.compress(SCRAPE);
        eprintln!(
            "{:>8}: {:>6} bytes, ratio {:.2}",
            codec.name(),
            compressed.len(),
            SCRAPE.len() as f64 / compressed.len() as f64
        );
    }
    let mut compress = c.benchmark_group("compress");
    compress.throughput(Throughput::Bytes(SCRAPE.len() as u64));
    for codec in CODECS {
        compress.bench_with_input(
            BenchmarkId::from_parameter(codec.name()),
            &codec,
            |b, codec| b.iter(|| codec.compress(black_box(SCRAPE))),
        );
    }
    compress.finish();

    let mut decompress = c.benchmark_group("decompress");
    decompress.throughput(Throughput::Bytes(SCRAPE.len() as u64));
    for codec in CODECS {
        let compressed = codec.compress(SCRAPE);
        decompress.bench_with_input(
            BenchmarkId::from_parameter(codec.name()),
            &compressed,
            |b, compressed| b.iter(|| codec.decompress(black_box(compressed))),
        );
    }
    decompress.finish();
}

fn wire(c: &mut Criterion) {
    let mut scrape = Scrape {
        meta: ScrapeMeta {
            publisher: "site1".into(),
            job: "node".into(),
            instance: "h1:9100".into(),
            time_ms: 1_700_000_000_000,
        },
        families: promrelay::exposition::parse(SCRAPE).expect("the captured scrape parses"),
    };
    scrape.add_target_labels("node", "h1:9100");
    let samples = scrape.sample_count() as u64;
    let message = promrelay::wire::encode(&scrape, "prometheus").expect("encodes");
    eprintln!(
        "wire::encode: {} samples -> {} bytes on the wire",
        samples,
        message.payload.len()
    );
    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Elements(samples));
    group.bench_function("encode", |b| {
        b.iter(|| promrelay::wire::encode(black_box(&scrape), "prometheus").expect("encodes"))
    });
    group.bench_function("decode", |b| {
        b.iter(|| {
            promrelay::wire::decode(Some(&message.headers), black_box(&message.payload))
                .expect("decodes")
        })
    });
    group.finish();
}

fn config() -> Criterion {
    // Two cores shared with the rest of the build: short, still stable enough to rank codecs.
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = codecs, wire }
criterion_main!(benches);
