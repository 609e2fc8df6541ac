//! WebAssembly filters in a running relay: hostile modules at every stage, hot swap of a module
//! file with no scrape lost or duplicated, broken modules refused while the old chain keeps
//! working, and `promrelay filter new` producing a crate that builds and passes its test.
//!
//! The shipped filters come from `scripts/build-filters.sh` (built here when missing); the
//! hostile ones are the WAT modules of `tests/wat/`, which the relay loads as they are.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use promrelay_tests::relay::workspace_root;
use promrelay_tests::{
    free_port, http, poll_until, relay_binary, Behaviour, NatsServer, Pushgateway, Relay,
    RelayConfig, Sample, TargetServer,
};

/// Long enough for a debug-built relay to start, compile its filters, scrape, publish, consume
/// and push on a loaded two-core machine; only reached when something is broken.
pub(crate) const ARRIVAL: Duration = Duration::from_secs(120);

pub(crate) fn wat(name: &str) -> PathBuf {
    workspace_root().join("tests/wat").join(name)
}

/// `target/filters/{identity,relabel}.wasm`, built by `scripts/build-filters.sh` if missing.
pub(crate) fn shipped(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let dir = workspace_root().join("target/filters");
    BUILT.get_or_init(|| {
        if dir.join("identity.wasm").exists() && dir.join("relabel.wasm").exists() {
            return;
        }
        let status = Command::new(workspace_root().join("scripts/build-filters.sh"))
            .args(["identity", "relabel"])
            .status()
            .expect("run scripts/build-filters.sh");
        assert!(
            status.success(),
            "scripts/build-filters.sh identity relabel failed"
        );
    });
    dir.join(format!("{name}.wasm"))
}

/// Replaces `target` by rename, as a deployment tool does: the watcher never sees half a file.
pub(crate) fn install(source: &Path, target: &Path) {
    let staging = target.with_extension("staging");
    std::fs::copy(source, &staging).expect("copy module");
    std::fs::rename(&staging, target).expect("rename module into place");
}

fn install_bytes(bytes: &[u8], target: &Path) {
    let staging = target.with_extension("staging");
    std::fs::write(&staging, bytes).expect("write module");
    std::fs::rename(&staging, target).expect("rename module into place");
}

/// One filter entry (YAML, indented for a list under `filters:` at `indent`).
pub(crate) fn filter_yaml(
    indent: &str,
    name: &str,
    module: &Path,
    on_error: &str,
    config: &str,
) -> String {
    let mut yaml = format!(
        "{indent}- name: {name}\n{indent}  module: {module:?}\n{indent}  on_error: {on_error}\n\
         {indent}  limits: {{ time: 100ms, memory: 32MiB }}\n",
    );
    if !config.is_empty() {
        yaml += &format!("{indent}  config:\n");
        for line in config.lines() {
            yaml += &format!("{indent}    {line}\n");
        }
    }
    yaml
}

const ADD_SITE: &str = "relabel_configs:\n  - target_label: site\n    replacement: dc1";

fn pushed(pushgateway: &Pushgateway, job: &str, name: &str) -> Vec<Sample> {
    pushgateway
        .pushed_series_for(job)
        .into_iter()
        .filter(|sample| sample.name == name)
        .collect()
}

/// Waits for sample `name` of `job` with value `value` that satisfies `accept`.
pub(crate) fn wait_for(
    pushgateway: &Pushgateway,
    relay: &mut Relay,
    job: &str,
    name: &str,
    value: f64,
    accept: impl Fn(&Sample) -> bool,
) -> Sample {
    poll_until(
        ARRIVAL,
        &format!("{name} = {value} of job {job} in the Pushgateway"),
        || {
            if let Err(error) = relay.ensure_running() {
                panic!("{error:#}");
            }
            pushed(pushgateway, job, name)
                .into_iter()
                .find(|sample| sample.value == value && accept(sample))
        },
    )
}

#[test]
fn a_module_replaced_on_disk_is_swapped_in_without_losing_or_duplicating_a_scrape() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed("swap_marker 1\n".into()));
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("site.wasm");
    install(&shipped("identity"), &module);
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .job("app", &[("one", &target.url())])
        .extra(&format!(
            "filters:\n{}",
            filter_yaml("  ", "site", &module, "fail", ADD_SITE)
        ));
    let stream = config
        .poller_stream
        .as_ref()
        .expect("pipeline config")
        .cluster_id
        .clone();
    let mut relay = Relay::start_config(&config);
    wait_for(&pushgateway, &mut relay, "app", "swap_marker", 1.0, |s| {
        s.label("site").is_none()
    });

    install(&shipped("relabel"), &module);
    let swapped = wait_for(&pushgateway, &mut relay, "app", "swap_marker", 1.0, |s| {
        s.label("site") == Some("dc1")
    });
    assert_eq!(swapped.label("job"), Some("app"));
    let after = target.requests();
    poll_until(ARRIVAL, "two more scrapes on the new chain", || {
        (target.requests() >= after + 2).then_some(())
    });

    // One message per completed scrape across the swap: none lost, none twice (at most one
    // scrape interrupted by SIGTERM before its answer was read).
    relay.sigterm_and_assert_one_message_per_scrape(&nats, &stream, &target);
}

pub(crate) fn filters_status(relay: &Relay) -> serde_json::Value {
    let body = http::get_ok(&format!("{}/api/v1/filters", relay.monitor_url()))
        .expect("GET /api/v1/filters");
    serde_json::from_str(&body).expect("/api/v1/filters is JSON")
}

#[test]
fn broken_modules_are_refused_and_the_old_chain_keeps_working() {
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed("kept_marker 0\n".into()));
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("site.wasm");
    install(&shipped("relabel"), &module);
    let config = RelayConfig::pipeline(&nats.url(), &pushgateway.url())
        .monitor_port(free_port())
        .job("app", &[("one", &target.url())])
        .extra(&format!(
            "filters:\n{}",
            filter_yaml("  ", "site", &module, "fail", ADD_SITE)
        ));
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();
    wait_for(&pushgateway, &mut relay, "app", "kept_marker", 0.0, |s| {
        s.label("site") == Some("dc1")
    });
    let good_hash = filters_status(&relay)["filters"][0]["hash"].clone();

    let broken: [(&str, Vec<u8>, &str); 5] = [
        (
            "bad bytes",
            b"\0asm\x01\0\0\0 not a module".to_vec(),
            "not a valid wasm module",
        ),
        (
            "missing exports",
            std::fs::read(wat("exports_nothing.wat")).expect("wat"),
            "promrelay_process missing",
        ),
        (
            "trapping init",
            std::fs::read(wat("trap_init.wat")).expect("wat"),
            "init",
        ),
        (
            "WASI imports",
            std::fs::read(wat("imports_wasi.wat")).expect("wat"),
            "wasi_snapshot_preview1.fd_write",
        ),
        (
            "wrong ABI version",
            std::fs::read(wat("wrong_version.wat")).expect("wat"),
            "ABI version 2",
        ),
    ];
    for (round, (what, bytes, reason)) in broken.iter().enumerate() {
        install_bytes(bytes, &module);
        let error = poll_until(
            ARRIVAL,
            &format!("the reload of {what} to be refused"),
            || {
                let status = filters_status(&relay);
                status["reload"]["last_error"]
                    .as_str()
                    .filter(|error| error.contains(reason))
                    .map(str::to_owned)
            },
        );
        let status = filters_status(&relay);
        assert_eq!(
            status["filters"][0]["hash"], good_hash,
            "{what}: old module still in force ({error})"
        );
        // The old chain still filters fresh scrapes.
        let marker = (round + 1) as f64;
        target.set_behaviour(Behaviour::Fixed(format!("kept_marker {marker}\n")));
        wait_for(
            &pushgateway,
            &mut relay,
            "app",
            "kept_marker",
            marker,
            |s| s.label("site") == Some("dc1"),
        );
    }
    let metrics = relay.metrics_text().expect("/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("promrelay_filter_reloads_total{result=\"failure\"}")),
        "reload failures counted:\n{metrics}"
    );
}

/// Every hostile module that loads but misbehaves per call, each in its own job with
/// `on_error: pass`: every job's scrape still arrives (unfiltered), every failure is counted.
#[test]
fn the_relay_keeps_relaying_through_every_hostile_filter() {
    let hostile = [
        ("endless_loop", "timeout"),
        ("memory_bomb", "out_of_memory"),
        ("deep_recursion", "trap"),
        ("trap_process", "trap"),
        ("out_of_bounds_output", "invalid_output"),
        ("oversized_output", "invalid_output"),
        ("garbage_output", "invalid_output"),
        ("bad_mask", "invalid_output"),
        ("guest_error", "guest_error"),
    ];
    let nats = NatsServer::start();
    let pushgateway = Pushgateway::start();
    let target = TargetServer::start(Behaviour::Fixed("hostile_marker 7\n".into()));
    let mut config =
        RelayConfig::pipeline(&nats.url(), &pushgateway.url()).monitor_port(free_port());
    for (name, _) in hostile {
        let settings = format!(
            "filters:\n{}",
            filter_yaml("  ", name, &wat(&format!("{name}.wat")), "pass", "")
        );
        config = config.job_with(name, &settings, &[("one", &target.url())]);
    }
    let mut relay = Relay::start_config(&config);
    relay.wait_healthy();
    for (name, _) in hostile {
        wait_for(
            &pushgateway,
            &mut relay,
            name,
            "hostile_marker",
            7.0,
            |_| true,
        );
    }
    let metrics = relay.metrics_text().expect("/metrics");
    for (name, kind) in hostile {
        let counted = metrics.lines().any(|line| {
            line.starts_with("promrelay_filter_errors_total{")
                && line.contains(&format!("filter=\"{name}\""))
                && line.contains(&format!("kind=\"{kind}\""))
        });
        assert!(
            counted,
            "{name}: no promrelay_filter_errors_total with kind {kind}:\n{metrics}"
        );
    }
    let status = filters_status(&relay);
    let filters = status["filters"].as_array().expect("filters list");
    assert_eq!(filters.len(), hostile.len());
    assert!(filters
        .iter()
        .all(|f| f["errors"].as_u64() > Some(0) && f["last_error"].is_string()));
}

#[test]
fn filter_new_writes_a_crate_that_builds_and_passes_its_own_test() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(relay_binary())
        .args(["filter", "new", "site-tagger", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run promrelay filter new");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = cargo_test_new_crate(&dir.path().join("site-tagger"));
    assert!(
        output.status.success(),
        "cargo test in the new filter crate failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `cargo test` (offline) in a crate made by `promrelay filter new`, in a target dir shared
/// by every such test so the SDK is compiled once.
pub(crate) fn cargo_test_new_crate(crate_dir: &std::path::Path) -> std::process::Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .args(["test", "--offline", "--quiet"])
        .current_dir(crate_dir)
        .env(
            "CARGO_TARGET_DIR",
            workspace_root().join("target/filter-new-test"),
        )
        .output()
        .expect("run cargo test in the new crate")
}
