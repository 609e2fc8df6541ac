//! Native relabel throughput over a node_exporter-shaped scrape of 500 and of 100 000 series:
//! `relabel_native/*` times the engine alone (ten typical rules from `typical_rules.yaml`, with and
//! without the per-batch regex memo; three rules that never match), `filter_native/*` the whole
//! filter as the relay drives it through the SDK (REPLACED, MASK and PASS answers), and
//! `scrape_cache/*` the ten typical rules on a 5 000-series scrape whose series repeat (one
//! instance, answered from its outcome cache), on all-new series (a fresh instance per call), with
//! the cache off, and the SDK's own share (a filter that changes nothing) as the baseline.
//!
//! Run: `cd filters && cargo bench -p filter-relabel -- --warm-up-time 1 --measurement-time 3`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use filter_relabel::{config, LabelSet, Relabel, Relabeler};
use promrelay_sdk::testing::{self, Harness};

type Series = Vec<(String, String)>;

/// A synthetic scrape shaped like node_exporter's: a few families with typical label sets.
fn corpus(series: usize) -> Vec<Series> {
    let shapes: [(&str, &[&str]); 8] = [
        ("node_cpu_seconds_total", &["cpu", "mode"]),
        ("node_network_receive_bytes_total", &["device"]),
        (
            "node_filesystem_avail_bytes",
            &["device", "fstype", "mountpoint"],
        ),
        ("go_gc_duration_seconds", &["quantile"]),
        ("node_disk_io_time_seconds_total", &["device"]),
        ("node_scrape_collector_success", &["collector"]),
        ("process_resident_memory_bytes", &[]),
        ("node_memory_MemFree_bytes", &[]),
    ];
    let devices = ["eth0", "veth12ab", "sda", "docker0", "/dev/sda1", "tmpfs"];
    let mountpoints = ["/", "/run", "/home", "/sys/fs/cgroup", "/var"];
    (0..series)
        .map(|i| {
            let (name, extra) = shapes[i % shapes.len()];
            let mut labels: Series = vec![
                ("__name__".into(), name.into()),
                (
                    "instance".into(),
                    format!("host{}.example.org:9100", i / 500),
                ),
                ("job".into(), "node".into()),
            ];
            for key in extra {
                let value = match *key {
                    "cpu" => (i % 64).to_string(),
                    "mode" => ["idle", "user", "system", "iowait"][i % 4].into(),
                    "device" => devices[i % devices.len()].into(),
                    "mountpoint" => mountpoints[i % mountpoints.len()].into(),
                    "fstype" => "ext4".into(),
                    "quantile" => ["0", "0.25", "0.5", "1"][i % 4].into(),
                    _ => format!("c{}", i % 40),
                };
                labels.push(((*key).into(), value));
            }
            labels.sort();
            labels
        })
        .collect()
}

fn rules(yaml: &str) -> Relabeler {
    let value: serde_json::Value = serde_yaml_ng::from_str(yaml).expect("bench rules parse");
    Relabeler::new(config::from_value(value).expect("bench rules are valid"))
}

/// The corpus as a batch holds it: a deduplicated string table and label pairs of ids.
struct Interned {
    strings: Vec<String>,
    series: Vec<Vec<(u32, u32)>>,
}

fn intern(scrape: &[Series]) -> Interned {
    let mut index = std::collections::HashMap::new();
    let mut strings = Vec::new();
    let mut id = |text: &String| -> u32 {
        *index.entry(text.clone()).or_insert_with(|| {
            strings.push(text.clone());
            (strings.len() - 1) as u32
        })
    };
    let series = scrape
        .iter()
        .map(|labels| labels.iter().map(|(n, v)| (id(n), id(v))).collect())
        .collect();
    Interned { strings, series }
}

/// One batch through the rules, as the filter runs it: ids known, one label set reused.
fn run(
    relabeler: &mut Relabeler,
    batch: &Interned,
    labels: &mut LabelSet<'static>,
    ids: bool,
) -> usize {
    relabeler.begin_batch(if ids { batch.strings.len() } else { 0 });
    let mut set = std::mem::take(labels).recycle();
    let mut kept = 0;
    for series in &batch.series {
        set.clear();
        for &(name, value) in series {
            let (name_text, value_text) = (
                &batch.strings[name as usize],
                &batch.strings[value as usize],
            );
            set.push_sorted_with_ids(name_text, name, value_text, value);
        }
        if relabeler.process_series(&mut set) {
            kept += 1;
        }
        black_box(&set);
    }
    *labels = set.recycle();
    kept
}

fn bench(c: &mut Criterion) {
    let typical = include_str!("typical_rules.yaml");
    let no_match = r#"
relabel_configs:
  - source_labels: [__name__]
    regex: never_.*
    action: drop
  - source_labels: [instance]
    regex: nowhere
    target_label: host
  - regex: __tmp_.*
    action: labeldrop
"#;
    let mut group = c.benchmark_group("relabel_native");
    for size in [500usize, 100_000] {
        let batch = intern(&corpus(size));
        group.throughput(Throughput::Elements(size as u64));
        for (name, yaml, ids) in [
            ("typical10", typical, true),
            ("typical10_no_memo", typical, false),
            ("no_match3", no_match, true),
        ] {
            let mut relabeler = rules(yaml);
            let mut labels = LabelSet::new();
            group.bench_with_input(BenchmarkId::new(name, size), &batch, |b, batch| {
                b.iter(|| run(&mut relabeler, batch, &mut labels, ids))
            });
        }
    }
    group.finish();

    // The whole filter as the relay drives it (batch in, PASS/MASK/REPLACED out), natively.
    let mut group = c.benchmark_group("filter_native");
    group.sample_size(10);
    for size in [500usize, 100_000] {
        let text = exposition(&corpus(size));
        let input = testing::batch_from_text(&text).expect("bench scrape encodes");
        group.throughput(Throughput::Elements(size as u64));
        for (name, yaml) in [
            ("typical10", typical),
            ("drop_go", DROP_GO),
            ("no_match3", no_match),
        ] {
            let value: serde_json::Value = serde_yaml_ng::from_str(yaml).expect("rules parse");
            let mut harness = Harness::<Relabel>::new(&value.to_string()).expect("rules valid");
            group.bench_with_input(BenchmarkId::new(name, size), &input, |b, input| {
                b.iter(|| harness.process(input).expect("process"))
            });
        }
    }
    group.finish();

    // Per-sample cost of the ten typical rules, cached and not, against the SDK's own share.
    let mut group = c.benchmark_group("scrape_cache");
    group.sample_size(20);
    let size = 5_000usize;
    let text = exposition(&corpus(size));
    let input = testing::batch_from_text(&text).expect("bench scrape encodes");
    group.throughput(Throughput::Elements(size as u64));
    let typical_json: serde_json::Value = serde_yaml_ng::from_str(typical).expect("rules parse");
    let config = |cache: Option<serde_json::Value>| {
        let mut config = typical_json.clone();
        if let Some(cache) = cache {
            config["cache"] = cache;
        }
        config.to_string()
    };
    let mut sdk_only = Harness::<Unchanged>::new("null").expect("init");
    group.bench_function(BenchmarkId::new("sdk_baseline", size), |b| {
        b.iter(|| sdk_only.process(&input).expect("process"))
    });
    let mut repeated = Harness::<Relabel>::new(&config(None)).expect("rules valid");
    group.bench_function(BenchmarkId::new("typical10_repeated", size), |b| {
        b.iter(|| repeated.process(&input).expect("process"))
    });
    group.bench_function(BenchmarkId::new("typical10_all_new", size), |b| {
        b.iter_batched(
            || Harness::<Relabel>::new(&config(None)).expect("rules valid"),
            // The instance is returned so that freeing it is not timed.
            |mut fresh| (fresh.process(&input).expect("process"), fresh),
            criterion::BatchSize::LargeInput,
        )
    });
    // Main's filter has no `cache` key: then this variant is skipped.
    if let Ok(mut off) =
        Harness::<Relabel>::new(&config(Some(serde_json::json!({"max_series": 0}))))
    {
        group.bench_function(BenchmarkId::new("typical10_cache_off", size), |b| {
            b.iter(|| off.process(&input).expect("process"))
        });
    }
    group.finish();
    if std::env::var_os("RELABEL_BENCH_CPU").is_some() {
        on_cpu_report(&config, &input, size);
    }
}

/// On-CPU time of this thread (`/proc/thread-self/schedstat`), in nanoseconds: unlike wall
/// clock it leaves out the time spent waiting for a core on a shared machine.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Median on-CPU µs per sample of each `scrape_cache` variant (set `RELABEL_BENCH_CPU=1`): 11
/// rounds of 20 calls each, so that the scheduler's accounting granularity averages out.
fn on_cpu_report(config: &dyn Fn(Option<serde_json::Value>) -> String, input: &[u8], size: usize) {
    const CALLS: usize = 20;
    let per_sample = |mut round: Box<dyn FnMut() -> u64 + '_>| {
        let mut times: Vec<u64> = (0..11).map(|_| round()).collect();
        times.sort_unstable();
        times[times.len() / 2] as f64 / 1000.0 / (CALLS * size) as f64
    };
    let repeat = |harness: &mut dyn FnMut()| {
        let start = thread_cpu_ns();
        for _ in 0..CALLS {
            harness();
        }
        thread_cpu_ns() - start
    };
    let mut sdk_only = Harness::<Unchanged>::new("null").expect("init");
    let baseline = per_sample(Box::new(|| repeat(&mut || drop(sdk_only.process(input)))));
    let mut repeated = Harness::<Relabel>::new(&config(None)).expect("rules valid");
    let warm = per_sample(Box::new(|| repeat(&mut || drop(repeated.process(input)))));
    let all_new = per_sample(Box::new(|| {
        let mut fresh: Vec<Harness<Relabel>> = (0..CALLS)
            .map(|_| Harness::<Relabel>::new(&config(None)).expect("rules valid"))
            .collect();
        let start = thread_cpu_ns();
        for harness in &mut fresh {
            drop(harness.process(input));
        }
        thread_cpu_ns() - start
    }));
    println!("on-CPU µs per sample, {size} series: sdk_baseline {baseline:.3}");
    println!("  typical10_repeated {warm:.3} (+{:.3})", warm - baseline);
    println!(
        "  typical10_all_new {all_new:.3} (+{:.3})",
        all_new - baseline
    );
    if let Ok(mut off) =
        Harness::<Relabel>::new(&config(Some(serde_json::json!({"max_series": 0}))))
    {
        let uncached = per_sample(Box::new(|| repeat(&mut || drop(off.process(input)))));
        println!(
            "  typical10_cache_off {uncached:.3} (+{:.3})",
            uncached - baseline
        );
    }
}

/// A filter that looks at nothing and answers PASS: the SDK's share of every call.
struct Unchanged;

impl promrelay_sdk::Filter for Unchanged {
    type Config = serde::de::IgnoredAny;
    fn init(_: Self::Config) -> Result<Self, promrelay_sdk::Error> {
        Ok(Unchanged)
    }
    fn process(&mut self, _: &mut promrelay_sdk::Batch<'_>) -> Result<(), promrelay_sdk::Error> {
        Ok(())
    }
}

const DROP_GO: &str = "
relabel_configs:
  - source_labels: [__name__]
    regex: go_.*
    action: drop
";

/// The corpus as Prometheus text, one family per metric name, every series unique.
fn exposition(scrape: &[Series]) -> String {
    let mut families: Vec<(String, Vec<String>)> = Vec::new();
    for (index, series) in scrape.iter().enumerate() {
        let name = &series
            .iter()
            .find(|(n, _)| n == "__name__")
            .expect("named")
            .1;
        let mut labels: Vec<String> = series
            .iter()
            .filter(|(n, _)| n != "__name__")
            .map(|(n, v)| format!("{n}=\"{v}\""))
            .collect();
        labels.push(format!("uniq=\"{index}\""));
        let line = format!("{name}{{{}}} {index}", labels.join(","));
        match families.iter_mut().find(|(family, _)| family == name) {
            Some((_, lines)) => lines.push(line),
            None => families.push((name.clone(), vec![line])),
        }
    }
    let mut text = String::new();
    for (name, lines) in families {
        text.push_str(&format!("# TYPE {name} untyped\n"));
        for line in lines {
            text.push_str(&line);
            text.push('\n');
        }
    }
    text
}

criterion_group!(benches, bench);
criterion_main!(benches);
