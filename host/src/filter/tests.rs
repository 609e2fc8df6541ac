//! Unit tests of the filter engine: correct WAT filters (PASS, MASK, REPLACED) and every hostile
//! module of `tests/wat/`, each followed by proof that the engine still works.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::{FilterConfig, FilterLimits, OnError};
use crate::lifecycle::Events;
use crate::model::{
    Family, Label, MetricType, Scrape, ScrapeMeta, Series, DEFAULT_LABEL_LIMIT, TARGET_LABELS,
};

fn wat_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/wat")
        .join(name)
}

fn wasm(name: &str) -> Vec<u8> {
    wat::parse_file(wat_path(name)).expect("test WAT modules parse")
}

fn config(name: &str, on_error: OnError) -> FilterConfig {
    FilterConfig {
        name: name.trim_end_matches(".wat").to_owned(),
        module: wat_path(name),
        on_error,
        limits: FilterLimits {
            time: Duration::from_millis(100),
            memory: 16 << 20,
        },
        config: serde_json::json!({}),
    }
}

/// A test's own engine, as a daemon or a CLI command has one.
pub(super) fn test_engine() -> Arc<FilterEngine> {
    Arc::new(FilterEngine::new().expect("the fixed engine configuration is valid"))
}

fn stage(name: &str, on_error: OnError) -> Result<Arc<Stage>, FilterError> {
    let engine = test_engine();
    let module = engine.load(&wasm(name))?;
    Stage::new(
        config(name, on_error),
        module,
        Arc::default(),
        Events::none(),
    )
    .map(Arc::new)
}

fn series(name: &str, labels: &[(&str, &str)], value: f64) -> Series {
    Series {
        name: name.into(),
        labels: labels.iter().map(|(n, v)| Label::new(*n, *v)).collect(),
        value,
        timestamp_ms: None,
    }
}

fn sample_scrape() -> Scrape {
    Scrape {
        meta: ScrapeMeta {
            job: "node".into(),
            instance: "h:9100".into(),
            ..ScrapeMeta::default()
        },
        families: vec![
            Family {
                name: "up".into(),
                help: Some("Target is up.".into()),
                unit: None,
                kind: MetricType::Gauge,
                series: vec![series(
                    "up",
                    &[("instance", "h:9100"), ("job", "node")],
                    1.0,
                )],
            },
            Family {
                name: "http_requests".into(),
                help: None,
                unit: None,
                kind: MetricType::Counter,
                series: vec![
                    series(
                        "http_requests_total",
                        &[("code", "200"), ("job", "node")],
                        10.0,
                    ),
                    series(
                        "http_requests_total",
                        &[("code", "500"), ("job", "node")],
                        f64::NAN,
                    ),
                    Series {
                        timestamp_ms: Some(1_700_000_000_000),
                        ..series(
                            "http_requests_total",
                            &[("Code", "x"), ("job", "node")],
                            -0.0,
                        )
                    },
                ],
            },
        ],
    }
}

fn run(stages: &[Arc<Stage>], scrape: Scrape) -> FilterOutcome<Scrape> {
    run_stages(stages.iter(), scrape)
}

fn passed(outcome: FilterOutcome<Scrape>) -> Scrape {
    match outcome {
        FilterOutcome::Pass(scrape) => scrape,
        other => panic!("expected Pass, got {other:?}"),
    }
}

/// After a hostile call: the same stage rebuilds its instance and a good filter still works.
fn engine_still_works() {
    let good = stage("pass.wat", OnError::Fail).expect("pass filter loads");
    assert!(same_bits(
        &passed(run(&[good], sample_scrape())),
        &sample_scrape()
    ));
}

fn same_bits(a: &Scrape, b: &Scrape) -> bool {
    a.families.len() == b.families.len()
        && a.families.iter().zip(&b.families).all(|(fa, fb)| {
            fa.name == fb.name
                && fa.help == fb.help
                && fa.kind == fb.kind
                && fa.series.len() == fb.series.len()
                && fa.series.iter().zip(&fb.series).all(|(sa, sb)| {
                    sa.name == sb.name
                        && sa.labels == sb.labels
                        && sa.value.to_bits() == sb.value.to_bits()
                        && sa.timestamp_ms == sb.timestamp_ms
                })
        })
}

#[test]
fn codec_round_trips_values_bit_for_bit() {
    let scrape = sample_scrape();
    let batch = codec::encode(&scrape).expect("encodes");
    let families = codec::decode(&batch, 1024, DEFAULT_LABEL_LIMIT).expect("decodes");
    assert!(same_bits(
        &Scrape {
            families,
            meta: scrape.meta.clone()
        },
        &scrape
    ));
}

#[test]
fn codec_refuses_series_past_the_cap() {
    let batch = codec::encode(&sample_scrape()).expect("encodes");
    let error = codec::decode(&batch, 2, DEFAULT_LABEL_LIMIT).expect_err("4 series > cap 2");
    assert_eq!(error.kind(), "invalid_output");
}

#[test]
fn pass_filter_leaves_the_scrape_unchanged() {
    let stage = stage("pass.wat", OnError::Fail).expect("loads");
    assert!(same_bits(
        &passed(run(std::slice::from_ref(&stage), sample_scrape())),
        &sample_scrape()
    ));
    assert_eq!(
        stage.stats.calls.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn mask_filter_keeps_the_even_series_and_drops_empty_families() {
    let stage = stage("mask_even.wat", OnError::Fail).expect("loads");
    let out = passed(run(&[stage.clone(), stage], sample_scrape()));
    // First pass keeps series 0 and 2 of [up, 200, 500, Code]: up and 500. Second keeps index 0.
    assert_eq!(out.families.len(), 1);
    assert_eq!(out.families[0].name, "up");
}

#[test]
fn replaced_output_is_decoded_bit_for_bit() {
    let copy = stage("copy.wat", OnError::Fail).expect("loads");
    let mask = stage("mask_even.wat", OnError::Fail).expect("loads");
    let out = passed(run(&[copy.clone(), copy.clone()], sample_scrape()));
    assert!(same_bits(&out, &sample_scrape()));
    let out = passed(run(&[copy, mask], sample_scrape()));
    assert_eq!(out.sample_count(), 2);
}

/// A scrape as the poller builds it: `text` parsed under `label_limit`, target labels added.
fn scraped(text: &str, label_limit: usize) -> Result<Scrape, crate::exposition::ParseError> {
    let limit = crate::exposition::LabelLimit {
        limit: label_limit,
        added: &TARGET_LABELS,
    };
    let mut scrape = Scrape {
        meta: ScrapeMeta {
            job: "node".into(),
            instance: "h:9100".into(),
            ..ScrapeMeta::default()
        },
        families: crate::exposition::parse_with_label_limit(text.as_bytes(), limit)?,
    };
    scrape.add_target_labels("node", "h:9100");
    Ok(scrape)
}

/// `up 1` then one sample with `count` labels, two of them the target's own `job`/`instance`.
fn wide_scrape_text(count: usize) -> String {
    let mut labels: Vec<String> = (2..count).map(|i| format!("l{i}=\"v\"")).collect();
    labels.push("job=\"exposed\"".into());
    labels.push("instance=\"exposed\"".into());
    format!("up 1\nwide{{{}}} 1\n", labels.join(","))
}

#[test]
fn whatever_the_parser_accepts_a_filter_may_hand_back_unchanged() {
    // Before, the parser took any number of labels and the output check refused past 1024:
    // a sample of 1025 labels passed a PASS filter and lost the scrape through copy.wat.
    let copy = stage("copy.wat", OnError::Fail).expect("loads");
    let mut accepted = 0;
    for written in [1, 500, 1020, 1021, 1022, 1025, 2000] {
        let Ok(scrape) = scraped(&wide_scrape_text(written), DEFAULT_LABEL_LIMIT) else {
            continue;
        };
        accepted += 1;
        let outcome = run_stages_with_label_limit(
            std::iter::once(&copy),
            scrape.clone(),
            DEFAULT_LABEL_LIMIT,
        );
        assert!(
            same_bits(&passed(outcome), &scrape),
            "{written} written labels"
        );
    }
    assert_eq!(
        accepted, 4,
        "1021 written labels + __name__, job, instance = 1024 fit"
    );
    let error = scraped(&wide_scrape_text(1022), DEFAULT_LABEL_LIMIT).expect_err("1025 labels");
    assert_eq!(error.line, 2, "the parser names the sample's line");
}

#[test]
fn filter_output_is_held_to_the_jobs_label_limit() {
    // `wide` has __name__, l2, exported_instance, exported_job, instance, job: 6 labels.
    let scrape = scraped(&wide_scrape_text(3), 6).expect("6 labels fit a limit of 6");
    let copy = stage("copy.wat", OnError::Fail).expect("loads");
    let outcome = run_stages_with_label_limit(std::iter::once(&copy), scrape.clone(), 6);
    assert!(same_bits(&passed(outcome), &scrape));
    match run_stages_with_label_limit(std::iter::once(&copy), scrape, 5) {
        FilterOutcome::Failed { error, .. } => {
            assert_eq!(error.kind(), "invalid_output");
            let text = error.to_string();
            assert!(
                text.contains(
                    "series 1 has 6 labels (counting __name__ and the target labels), more than \
                     the job's label_limit of 5"
                ),
                "{text}"
            );
        }
        other => panic!("expected invalid output, got {other:?}"),
    }
}

#[test]
fn a_jobs_label_limit_reaches_its_filter_set() {
    let config = crate::config::parse(
        "scrape_interval: 60s\npoller_stream: {cluster_id: s, urls: nats://127.0.0.1:4222}\n\
         jobs:\n  node: {label_limit: 200, targets: [http://127.0.0.1:9100/metrics]}\n  \
         app: {targets: [http://127.0.0.1:9101/metrics]}\n",
        "test.yaml",
    )
    .expect("valid");
    let set = FilterSet {
        plan: reload::ChainPlan::from_config(&config),
        ..FilterSet::default()
    };
    assert_eq!(set.label_limit("node"), 200);
    assert_eq!(set.label_limit("app"), DEFAULT_LABEL_LIMIT);
    assert_eq!(set.label_limit("promrelay"), DEFAULT_LABEL_LIMIT);
}

#[test]
fn guest_error_carries_the_guest_message() {
    let stage = stage("guest_error.wat", OnError::Fail).expect("loads");
    match run(&[stage], sample_scrape()) {
        FilterOutcome::Failed {
            error: FilterError::Guest { status, message },
            ..
        } => {
            assert_eq!(status, -1);
            assert_eq!(message, "the filter refused this one");
        }
        other => panic!("expected a guest error, got {other:?}"),
    }
    engine_still_works();
}

#[test]
fn on_error_policies_pass_drop_and_fail() {
    let pass = stage("guest_error.wat", OnError::Pass).expect("loads");
    let mask = stage("mask_even.wat", OnError::Fail).expect("loads");
    let out = passed(run(&[pass.clone(), mask], sample_scrape()));
    assert_eq!(
        out.sample_count(),
        2,
        "pass skipped the failing filter, the next one ran"
    );
    let drop = stage("guest_error.wat", OnError::Drop).expect("loads");
    assert!(matches!(
        run(&[drop], sample_scrape()),
        FilterOutcome::Dropped { .. }
    ));
    assert_eq!(
        pass.stats.errors.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(pass
        .stats
        .last_error()
        .expect("recorded")
        .contains("refused this one"));
}

fn failure_of(name: &str) -> FilterError {
    let stage = stage(name, OnError::Fail).expect("hostile module loads");
    let error = match run(std::slice::from_ref(&stage), sample_scrape()) {
        FilterOutcome::Failed { error, .. } => error,
        other => panic!("{name}: expected a failure, got {other:?}"),
    };
    // The bad filter's instance was dropped; the next call rebuilds one and fails the same way.
    assert!(matches!(
        run(&[stage], sample_scrape()),
        FilterOutcome::Failed { .. }
    ));
    engine_still_works();
    error
}

#[test]
fn endless_loop_is_stopped_by_the_deadline() {
    assert!(matches!(
        failure_of("endless_loop.wat"),
        FilterError::Timeout { limit_ms: 100 }
    ));
}

#[test]
fn memory_bomb_is_stopped_by_the_limit() {
    assert!(matches!(
        failure_of("memory_bomb.wat"),
        FilterError::OutOfMemory { .. }
    ));
}

#[test]
fn deep_recursion_traps_with_a_stack_overflow() {
    match failure_of("deep_recursion.wat") {
        FilterError::Trap { message } => assert!(message.contains("stack"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn trap_in_process_reports_the_guest_panic_message() {
    match failure_of("trap_process.wat") {
        FilterError::Trap { message } => assert!(message.contains("kaboom"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn out_of_bounds_output_is_invalid_output() {
    assert_eq!(
        failure_of("out_of_bounds_output.wat").kind(),
        "invalid_output"
    );
}

#[test]
fn out_of_bounds_input_buffer_refuses_the_load() {
    // `reserve` is called for the config before `init`, so a bad buffer shows at load.
    assert!(load_error("out_of_bounds_reserve.wat").contains("outside the guest's"));
}

#[test]
fn oversized_garbage_and_bad_mask_outputs_are_invalid_output() {
    for name in [
        "oversized_output.wat",
        "garbage_output.wat",
        "bad_mask.wat",
        "unknown_status.wat",
    ] {
        assert_eq!(failure_of(name).kind(), "invalid_output", "{name}");
    }
}

fn load_error(name: &str) -> String {
    let error = stage(name, OnError::Fail).expect_err("must be refused at load");
    assert_eq!(error.kind(), "load", "{name}: {error}");
    engine_still_works();
    error.to_string()
}

#[test]
fn trap_in_init_refuses_the_load() {
    assert!(load_error("trap_init.wat").contains("init"));
}

#[test]
fn refused_config_refuses_the_load_with_the_guest_message() {
    // The status says "bad config" once; the guest's words follow as they are.
    let error = load_error("bad_config.wat");
    assert!(
        error.starts_with("bad config: unknown key: bogus_key"),
        "{error}"
    );
}

#[test]
fn imports_of_wasi_or_unknown_functions_are_refused_by_name() {
    let message = load_error("imports_wasi.wat");
    assert!(
        message.contains("wasi_snapshot_preview1.fd_write"),
        "{message}"
    );
    assert!(message.contains("env.sneaky"), "{message}");
}

#[test]
fn a_module_exporting_nothing_is_refused_listing_the_missing_exports() {
    let message = load_error("exports_nothing.wat");
    for export in [
        "memory",
        "promrelay_abi_version",
        "promrelay_process",
        "promrelay_output_len",
    ] {
        assert!(message.contains(export), "{message}");
    }
}

#[test]
fn wrong_abi_version_is_refused() {
    assert!(load_error("wrong_version.wat").contains("ABI version 2"));
}

#[test]
fn bytes_that_are_neither_wasm_nor_wat_are_refused_saying_so() {
    for (bytes, shown) in [
        (&b"not wasm at all"[..], "6e 6f 74 20 77 61 73 6d"),
        (&b"\x7fELF\x02\x01\x01\0\0\0"[..], "7f 45 4c 46 02 01 01 00"),
        (
            &b"  ;; a comment, then no module\nmodule"[..],
            "20 20 3b 3b",
        ),
        (&b""[..], "(empty file)"),
    ] {
        let error = test_engine().load(bytes).expect_err("refused");
        assert_eq!(error.kind(), "load");
        let message = error.to_string();
        assert!(
            message.contains("neither a wasm binary (no \\0asm magic at the start) nor WAT text")
                && message.contains(shown),
            "{message}"
        );
        assert!(
            !message.contains("expected '('"),
            "not parsed as WAT: {message}"
        );
    }
}

#[test]
fn wat_text_that_does_not_parse_shows_the_wat_error() {
    let text = b";; a hand-written filter\n(module (func (export \"f\") (result i32) i32.konst 1))";
    let error = test_engine().load(text).expect_err("refused");
    let message = error.to_string();
    assert!(
        message.contains("read as WAT text") && message.contains("konst"),
        "{message}"
    );
}

#[test]
fn a_wasm_binary_that_does_not_validate_says_so() {
    let error = test_engine()
        .load(b"\0asm\x01\0\0\0 not a module")
        .expect_err("refused");
    let message = error.to_string();
    assert!(
        message.starts_with("not a valid wasm module:") && !message.contains("WAT"),
        "{message}"
    );
}

#[test]
fn a_mask_keeping_every_series_means_pass() {
    let mut scrape = sample_scrape();
    scrape.families.insert(
        1,
        Family {
            name: "declared_only".into(),
            help: Some("A family without samples.".into()),
            unit: None,
            kind: MetricType::Counter,
            series: Vec::new(),
        },
    );
    let all = stage("mask_all.wat", OnError::Fail).expect("loads");
    let pass = stage("pass.wat", OnError::Fail).expect("loads");
    assert!(same_bits(&passed(run(&[pass], scrape.clone())), &scrape));
    assert!(same_bits(
        &passed(run(std::slice::from_ref(&all), scrape.clone())),
        &scrape
    ));
    assert_eq!(
        all.stats.errors.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // A mask that drops some series keeps a family that had none, too.
    let even = stage("mask_even.wat", OnError::Fail).expect("loads");
    let out = passed(run(&[even], scrape));
    let names: Vec<&str> = out.families.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["up", "declared_only", "http_requests"]);
}

#[test]
fn compiled_modules_are_cached_by_content_hash() {
    let engine = test_engine();
    let first = engine.load(&wasm("pass.wat")).expect("loads");
    let second = engine.load(&wasm("pass.wat")).expect("loads");
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(first.hash.len(), 64);
}

#[test]
fn a_targets_scrapes_go_back_to_the_instance_slot_of_its_affinity() {
    let stage = stage("pass.wat", OnError::Drop).expect("loads");
    let batch = codec::encode(&sample_scrape()).expect("encodes");
    assert_eq!(
        stage.idle_slots(),
        [true, false, false, false],
        "the canary"
    );
    stage.call(&batch, 3, 6).expect("passes");
    assert_eq!(
        stage.idle_slots(),
        [false, false, true, false],
        "6 % 4: slot 2"
    );
    stage.call(&batch, 3, 2).expect("passes");
    assert_eq!(
        stage.idle_slots(),
        [false, false, true, false],
        "taken from and put back into its slot"
    );
    stage.call(&batch, 3, 3).expect("passes");
    assert_eq!(
        stage.idle_slots(),
        [false, false, false, true],
        "the idle one moves to the caller's slot"
    );
}
