//! Tests of hot swap, the module watcher, the status report and the author CLI.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cli::{FilterCommand, LimitArgs};
use super::tests::test_engine;
use super::*;
use crate::config::{FilterConfig, FilterLimits, OnError};
use crate::lifecycle::Events;
use crate::model::{Family, Label, MetricType, Scrape, Series};

fn wat_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/wat")
        .join(name)
}

fn install(dir: &Path, file: &str, from: &str) -> PathBuf {
    // Replace by rename, as deployment tools do, so a reader never sees half a file.
    let target = dir.join(file);
    let staging = dir.join(format!(".{file}.new"));
    std::fs::copy(wat_path(from), &staging).expect("copy module");
    std::fs::rename(&staging, &target).expect("rename module");
    target
}

/// A one-filter global chain of `module` (also used by `tests_watch`).
pub(super) fn plan(module: &Path, on_error: OnError) -> ChainPlan {
    ChainPlan {
        global: vec![FilterConfig {
            name: "site".into(),
            module: module.to_path_buf(),
            on_error,
            limits: FilterLimits {
                time: Duration::from_millis(200),
                memory: 16 << 20,
            },
            config: serde_json::json!({}),
        }],
        jobs: Default::default(),
        label_limits: Default::default(),
    }
}

/// Three `requests_total` series of job `node`.
pub(super) fn scrape() -> Scrape {
    let series = |code: &str| Series {
        name: "requests_total".into(),
        labels: vec![Label::new("code", code), Label::new("job", "node")],
        value: 1.0,
        timestamp_ms: None,
    };
    Scrape {
        families: vec![Family {
            name: "requests".into(),
            kind: MetricType::Counter,
            series: vec![series("200"), series("404"), series("500")],
            ..Family::default()
        }],
        ..Scrape::default()
    }
}

async fn series_after(chains: &Chains) -> usize {
    match chains.apply("node", batch(scrape())).await {
        FilterOutcome::Pass(scrape) => scrape.sample_count(),
        other => panic!("expected Pass, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_good_modules_and_refuses_broken_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = install(dir.path(), "site.wat", "pass.wat");
    let chains = Chains::build(test_engine(), Events::none(), plan(&module, OnError::Fail))
        .await
        .expect("pass chain loads");
    assert_eq!(series_after(&chains).await, 3);

    install(dir.path(), "site.wat", "mask_even.wat");
    let report = chains.reload_modules().await.expect("mask swaps in");
    assert_eq!(report.changed, ["global/site"]);
    assert_eq!(series_after(&chains).await, 2);

    for broken in ["trap_init.wat", "exports_nothing.wat", "imports_wasi.wat"] {
        install(dir.path(), "site.wat", broken);
        let error = chains.reload_modules().await.expect_err(broken);
        assert_eq!(error.kind(), "load", "{broken}");
        assert_eq!(
            series_after(&chains).await,
            2,
            "old chain still in force after {broken}"
        );
        let status = chains.status_json();
        assert!(status["reload"]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()));
    }
    std::fs::write(&module, b"\0asm garbage").expect("write garbage");
    assert!(chains.reload_modules().await.is_err());
    assert_eq!(series_after(&chains).await, 2);

    let status = chains.status_json();
    let filter = &status["filters"][0];
    assert_eq!(filter["name"], "site");
    assert_eq!(filter["scope"], "global");
    assert_eq!(filter["hash"].as_str().map(str::len), Some(64));
    assert!(filter["calls"].as_u64().is_some_and(|calls| calls >= 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refuses_a_module_that_fails_the_dry_run_on_the_last_scrape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = install(dir.path(), "site.wat", "pass.wat");
    let chains = Chains::build(test_engine(), Events::none(), plan(&module, OnError::Pass))
        .await
        .expect("loads");
    assert_eq!(series_after(&chains).await, 3);
    // With on_error: pass the failure would be invisible in production; the dry run catches it.
    install(dir.path(), "site.wat", "guest_error.wat");
    let error = chains.reload_modules().await.expect_err("dry run fails");
    assert!(error.to_string().contains("dry run"), "{error}");
    assert!(error.to_string().contains("refused this one"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chains_report_their_loads_and_failures_each_to_its_own_events() {
    use crate::lifecycle::Event;
    let dir = tempfile::tempdir().expect("tempdir");
    let passing = install(dir.path(), "site.wat", "pass.wat");
    let (first_events, mut first) = Events::queue(16);
    let (second_events, mut second) = Events::queue(16);
    let _first = Chains::build(test_engine(), first_events, plan(&passing, OnError::Fail))
        .await
        .expect("pass chain loads");
    let loaded = first.try_recv().expect("the first chains' load event");
    assert!(
        matches!(&loaded, Event::FilterLoad { ok: true, filter: Some(f), .. } if f == "global/site"),
        "{loaded:?}"
    );
    let trapping = wat_path("trap_process.wat");
    let second_chains = Chains::build(test_engine(), second_events, plan(&trapping, OnError::Pass))
        .await
        .expect("trap chain loads");
    assert!(matches!(
        second.try_recv(),
        Ok(Event::FilterLoad { ok: true, .. })
    ));
    assert_eq!(series_after(&second_chains).await, 3, "on_error: pass");
    let failed = second.try_recv().expect("the second chains' failure event");
    assert!(
        matches!(&failed, Event::FilterFailure { filter, kind, .. } if filter == "site" && kind == "trap"),
        "{failed:?}"
    );
    assert!(
        first.try_recv().is_err(),
        "nothing of the second reached the first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_module_file_is_swapped_in_by_the_watcher() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = install(dir.path(), "site.wat", "pass.wat");
    let chains = Chains::build(test_engine(), Events::none(), plan(&module, OnError::Fail))
        .await
        .expect("loads");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let watcher = chains.watch(shutdown.clone()).expect("watcher starts");
    install(dir.path(), "site.wat", "mask_even.wat");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if series_after(&chains).await == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "watcher did not swap the module in"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    watcher.await.expect("watcher ends");
}

fn limits() -> LimitArgs {
    LimitArgs {
        time_limit: Duration::from_secs(1).into(),
        memory_limit_mib: 64,
    }
}

#[test]
fn cli_check_accepts_a_good_module_and_refuses_a_bad_one() {
    let good = FilterCommand::Check {
        module: wat_path("pass.wat"),
        config: None,
        limits: limits(),
    };
    cli::run(good, None).expect("pass.wat checks");
    for bad in ["trap_init.wat", "imports_wasi.wat", "wrong_version.wat"] {
        let command = FilterCommand::Check {
            module: wat_path(bad),
            config: None,
            limits: limits(),
        };
        assert!(cli::run(command, None).is_err(), "{bad}");
    }
}

#[test]
fn cli_run_filters_a_file_and_fails_with_the_guest_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scrape.prom");
    std::fs::write(&input, "# TYPE up gauge\nup{job=\"node\"} 1\n").expect("write input");
    let input = input.display().to_string();
    let run = |module: &str| {
        cli::run(
            FilterCommand::Run {
                module: vec![wat_path(module)],
                config: Vec::new(),
                relay_config: None,
                input: input.clone(),
                explain: None,
                explain_limit: 10,
                target: cli::TargetArgs {
                    job: "filter-run".into(),
                    instance: None,
                },
                limits: limits(),
            },
            None,
        )
    };
    run("mask_even.wat").expect("mask runs");
    let error = run("guest_error.wat").expect_err("guest error fails the command");
    assert!(
        format!("{error:#}").contains("the filter refused this one"),
        "{error:#}"
    );
}

#[test]
fn cli_new_writes_a_filter_crate() {
    let dir = tempfile::tempdir().expect("tempdir");
    cli::run(
        FilterCommand::New {
            name: "site-tagger".into(),
            dir: dir.path().to_path_buf(),
            sdk: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk")),
        },
        None,
    )
    .expect("crate written");
    let lib = std::fs::read_to_string(dir.path().join("site-tagger/src/lib.rs")).expect("lib.rs");
    assert!(lib.contains("export_filter!(SiteTagger);"));
    let manifest =
        std::fs::read_to_string(dir.path().join("site-tagger/Cargo.toml")).expect("toml");
    assert!(manifest.contains("name = \"filter-site-tagger\""));
    assert!(!manifest.contains("{{"));
    let again = FilterCommand::New {
        name: "site-tagger".into(),
        dir: dir.path().to_path_buf(),
        sdk: Some(PathBuf::from(".")),
    };
    assert!(cli::run(again, None).is_err(), "refuses to overwrite");
}

/// The shipped Rust filters (built by `scripts/build-filters.sh`) through this engine: the SDK
/// and the host agree on the ABI. Skipped, saying so, when they have not been built.
#[test]
fn shipped_identity_and_relabel_filters_run_in_the_engine() {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/filters");
    let (identity, relabel) = (built.join("identity.wasm"), built.join("relabel.wasm"));
    if !identity.exists() || !relabel.exists() {
        eprintln!("skipped: run scripts/build-filters.sh to build target/filters/*.wasm");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scrape.prom");
    std::fs::write(
        &input,
        "# TYPE up gauge\nup{job=\"node\"} 1\ngo_threads 8\n",
    )
    .expect("write");
    let config = dir.path().join("relabel.yaml");
    std::fs::write(
        &config,
        "relabel_configs:\n  - target_label: site\n    replacement: dc1\n  - source_labels: [__name__]\n    regex: go_.*\n    action: drop\n",
    )
    .expect("write");
    let load = |module: &Path, config: Option<&Path>| {
        let filter = FilterConfig {
            name: "shipped".into(),
            module: module.to_path_buf(),
            on_error: OnError::Fail,
            limits: FilterLimits {
                time: Duration::from_secs(2),
                memory: 64 << 20,
            },
            config: config.map_or(serde_json::json!({}), |c| {
                serde_yaml_ng::from_str(&std::fs::read_to_string(c).expect("read")).expect("yaml")
            }),
        };
        let compiled = test_engine().load_file(module).expect("module loads");
        std::sync::Arc::new(
            Stage::new(filter, compiled, Default::default(), Events::none()).expect("init"),
        )
    };
    let families = crate::exposition::parse(&std::fs::read(&input).expect("read")).expect("parse");
    let scrape = Scrape {
        families,
        ..Scrape::default()
    };
    let chain = [load(&identity, None), load(&relabel, Some(&config))];
    let FilterOutcome::Pass(out) = run_stages(chain.iter(), scrape) else {
        panic!("shipped filters failed");
    };
    assert_eq!(out.sample_count(), 1, "go_threads dropped");
    let up = &out.families[0].series[0];
    assert_eq!(up.label("site"), Some("dc1"));
    assert_eq!(up.label("job"), Some("node"));
}

fn filter_status(chains: &Chains) -> serde_json::Value {
    chains.status_json()["filters"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_finds_nothing_changed_does_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = install(dir.path(), "site.wat", "pass.wat");
    let chains = Chains::build(test_engine(), Events::none(), plan(&module, OnError::Fail))
        .await
        .expect("loads");
    assert_eq!(series_after(&chains).await, 3);
    let before = chains.current();
    let status = chains.status_json();
    for round in 0..3 {
        let report = chains.reload_modules().await.expect("no-op reload");
        assert!(!report.swapped, "round {round}: {report:?}");
        assert!(report.changed.is_empty(), "round {round}: {report:?}");
        assert_eq!(report.unchanged, ["global/site"]);
        assert!(std::sync::Arc::ptr_eq(&before, &chains.current()));
        // No dry run (no call), no status change.
        assert_eq!(chains.status_json(), status, "round {round}");
    }
    // The same bytes written anew are the same module.
    install(dir.path(), "site.wat", "pass.wat");
    let report = chains.reload_modules().await.expect("no-op reload");
    assert!(!report.swapped);

    // After a refusal, finding the running modules on disk again is a reload that succeeds:
    // it clears the refusal (once); the next one is a no-op again.
    install(dir.path(), "site.wat", "guest_error.wat");
    chains.reload_modules().await.expect_err("dry run fails");
    install(dir.path(), "site.wat", "pass.wat");
    let report = chains
        .reload_modules()
        .await
        .expect("back to the running module");
    assert!(report.swapped && report.changed.is_empty(), "{report:?}");
    let status = chains.status_json();
    assert_eq!(status["reload"]["last_error"], serde_json::Value::Null);
    let report = chains.reload_modules().await.expect("no-op reload");
    assert!(!report.swapped, "{report:?}");
    assert_eq!(chains.status_json(), status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_candidate_is_charged_to_the_reload_not_to_the_running_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = install(dir.path(), "site.wat", "pass.wat");
    let chains = Chains::build(test_engine(), Events::none(), plan(&module, OnError::Drop))
        .await
        .expect("loads");
    assert_eq!(series_after(&chains).await, 3);
    let running = filter_status(&chains);
    assert_eq!(running["calls"], 1);
    for candidate in ["trap_process.wat", "guest_error.wat", "garbage_output.wat"] {
        install(dir.path(), "site.wat", candidate);
        let error = chains.reload_modules().await.expect_err(candidate);
        assert!(
            error.to_string().contains("dry run"),
            "{candidate}: {error}"
        );
        let filter = filter_status(&chains);
        assert_eq!(filter["hash"], running["hash"], "{candidate}");
        assert_eq!(filter["calls"], 1, "{candidate}: a dry run is not a call");
        assert_eq!(filter["errors"], 0, "{candidate}");
        assert_eq!(filter["last_error"], serde_json::Value::Null, "{candidate}");
        let reload = &chains.status_json()["reload"];
        assert!(
            reload["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("dry run")),
            "{candidate}: {reload}"
        );
    }
    assert_eq!(series_after(&chains).await, 3, "the old chain still runs");
    assert_eq!(filter_status(&chains)["errors"], 0);
}

/// The poller's batch of a model scrape.
fn batch(scrape: Scrape) -> crate::batch::ScrapeBatch {
    crate::batch::ScrapeBatch::from_scrape(&scrape).expect("encodes")
}
