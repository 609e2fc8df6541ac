//! Filter engine overhead: the poller's per-scrape work (parse → filter chain → wire encode, i.e.
//! render + zstd) with no
//! filter, with an identity filter answering PASS, and with one answering REPLACED with its
//! input (the full decode path); on the captured node_exporter scrape and on a synthetic
//! 100 000-series scrape. Then hot swap: `Chains::reload` to a changed module with a warm
//! compiled-module cache (canary init, dry run, swap).
//!
//! Run: `cargo bench -p promrelay --bench filter -- --warm-up-time 1 --measurement-time 3`.
//! The identity filter is `target/filters/identity.wasm` when `scripts/build-filters.sh` built
//! it, else `tests/wat/pass.wat`; the REPLACED one is `tests/wat/copy.wat`.

mod common;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use promrelay::batch::ScrapeBatch;
use promrelay::config::{FilterConfig, FilterLimits, OnError};
use promrelay::exposition::{parse, LabelLimit, ScrapeWriter};
use promrelay::filter::{ChainPlan, Chains, FilterEngine, FilterOutcome};
use promrelay::model::{Scrape, ScrapeMeta};
use promrelay::wire::WireFormat;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn filter(name: &str, module: PathBuf) -> FilterConfig {
    FilterConfig {
        name: name.to_owned(),
        module,
        on_error: OnError::Fail,
        limits: FilterLimits {
            time: Duration::from_secs(5),
            memory: 512 << 20,
        },
        config: serde_json::json!({}),
    }
}

fn chains(runtime: &tokio::runtime::Runtime, filters: Vec<FilterConfig>) -> Arc<Chains> {
    let plan = ChainPlan {
        global: filters,
        ..ChainPlan::default()
    };
    runtime
        .block_on(Chains::build(
            Arc::new(FilterEngine::new().expect("the engine starts")),
            promrelay::lifecycle::Events::none(),
            plan,
        ))
        .expect("bench filters load")
}

/// What the poller does to one scrape body before publishing it: parse into the scrape's batch
/// (target labels included), filter, compress for the wire. `writer` is the target's own,
/// reused from scrape to scrape as the poller does.
fn pipeline(text: &[u8], chains: Option<&Chains>, writer: &mut ScrapeWriter) -> usize {
    writer.begin([("job", "bench"), ("instance", "host:9100")]);
    let limit = LabelLimit {
        limit: 1024,
        added: &["job", "instance"],
    };
    writer.parse(text, limit).expect("bench input parses");
    let mut bytes = Vec::new();
    writer.finish_into(&mut bytes);
    let scrape = ScrapeBatch::new(ScrapeMeta::default(), bytes);
    let scrape = match chains {
        None => scrape,
        Some(chains) => match chains.apply_blocking("bench", scrape) {
            FilterOutcome::Pass(scrape) => scrape,
            other => panic!("bench filter failed: {other:?}"),
        },
    };
    let messages = promrelay::wire::encode_batch(&scrape, "bench", WireFormat::Batch, usize::MAX)
        .expect("wire encode");
    messages.iter().map(|m| m.payload.len()).sum()
}

/// Medians of `no_filter` and `filtered` runs alternated call by call, so that the load of a
/// shared machine drifting during the run hits both sides alike; returns (base, filtered).
fn interleaved(text: &[u8], chains: &Chains, rounds: usize) -> (Duration, Duration) {
    let mut out = ScrapeWriter::new();
    let (mut base, mut filtered) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for _ in 0..rounds {
        let started = std::time::Instant::now();
        black_box(pipeline(text, None, &mut out));
        base.push(started.elapsed());
        let started = std::time::Instant::now();
        black_box(pipeline(text, Some(chains), &mut out));
        filtered.push(started.elapsed());
    }
    base.sort();
    filtered.sort();
    (base[rounds / 2], filtered[rounds / 2])
}

fn benchmarks(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let identity_module = {
        let built = repo("target/filters/identity.wasm");
        if built.exists() {
            built
        } else {
            repo("tests/wat/pass.wat")
        }
    };
    eprintln!("identity filter: {}", identity_module.display());
    let identity = chains(&runtime, vec![filter("identity", identity_module)]);
    let copy = chains(&runtime, vec![filter("copy", repo("tests/wat/copy.wat"))]);
    // A PASS filter that does not even read its input: the host's share of the cost.
    let bare = chains(&runtime, vec![filter("bare", repo("tests/wat/pass.wat"))]);

    let node_exporter = std::fs::read(repo("tests/data/node_exporter.prom"))
        .expect("tests/data/node_exporter.prom is committed");
    let synthetic = common::synthetic_scrape().into_bytes();
    for (input, text) in [
        ("node_exporter", &node_exporter),
        ("synthetic_100k", &synthetic),
    ] {
        let series = parse(text)
            .expect("parses")
            .iter()
            .map(|f| f.series.len())
            .sum::<usize>();
        eprintln!("{input}: {series} series, {} bytes", text.len());
        let mut group = criterion.benchmark_group(format!("filter/{input}"));
        group.throughput(Throughput::Elements(series as u64));
        if input == "synthetic_100k" {
            group.sample_size(10);
        }
        let mut out = ScrapeWriter::new();
        for (variant, chains) in [
            ("no_filter", None),
            ("wat_pass_host_only", Some(&bare)),
            ("identity_pass", Some(&identity)),
            ("identity_replaced", Some(&copy)),
        ] {
            group.bench_function(BenchmarkId::new("parse_chain_wire", variant), |bench| {
                bench.iter(|| pipeline(black_box(text), chains.map(|c| &**c), &mut out))
            });
        }
        let rounds = if input == "synthetic_100k" { 30 } else { 2000 };
        for (variant, chains) in [("identity_pass", &identity), ("identity_replaced", &copy)] {
            let (base, filtered) = interleaved(text, chains, rounds);
            eprintln!(
                "interleaved {input} {variant}: no filter {base:?}, filtered {filtered:?}, ratio {:.3}",
                filtered.as_secs_f64() / base.as_secs_f64()
            );
        }
        let scrape = Scrape {
            meta: ScrapeMeta::default(),
            families: parse(text).expect("parses"),
        };
        let mut batch = Vec::new();
        group.bench_function("encode_only", |bench| {
            bench.iter(|| promrelay::filter::codec::encode_into(black_box(&scrape), &mut batch))
        });
        group.finish();
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("swap.wat");
    let modules = [repo("tests/wat/pass.wat"), repo("tests/wat/mask_even.wat")];
    std::fs::copy(&modules[0], &module).expect("copy module");
    let swapping = chains(&runtime, vec![filter("swap", module.clone())]);
    // Warm the cache with both versions.
    for source in modules.iter().rev() {
        std::fs::copy(source, &module).expect("copy module");
        runtime.block_on(swapping.reload_modules()).expect("reload");
    }
    let mut next = 0usize;
    criterion.bench_function("filter/hot_swap_warm_cache", |bench| {
        bench.iter(|| {
            std::fs::copy(&modules[next % 2], &module).expect("copy module");
            next += 1;
            runtime.block_on(swapping.reload_modules()).expect("reload")
        })
    });
}

criterion_group!(filter_benches, benchmarks);
criterion_main!(filter_benches);
