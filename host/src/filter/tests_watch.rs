//! Tests of the module file watcher: which file events are content changes, against the real
//! inotify backend, and a watched module rewritten in place being swapped in.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::event::{
    AccessKind, AccessMode, CreateKind, DataChange, EventKind, MetadataKind, ModifyKind,
    RemoveKind, RenameMode,
};
use notify::{Event, RecursiveMode, Watcher};

use super::tests::test_engine;
use super::tests_reload::{plan, scrape};
use super::watch::{touches, Touch};
use super::*;
use crate::config::OnError;
use crate::lifecycle::Events;

/// Bound on waiting for an event the test has caused; reached only when something is broken.
const EVENT_WAIT: Duration = Duration::from_secs(10);

#[test]
fn only_content_changes_are_touches() {
    let module = PathBuf::from("/etc/promrelay/filters/site.wasm");
    let event = |kind: EventKind| Event::new(kind).add_path(module.clone());
    let table: [(EventKind, bool); 14] = [
        (EventKind::Access(AccessKind::Open(AccessMode::Any)), false),
        (EventKind::Access(AccessKind::Read), false),
        (
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            false,
        ),
        (
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            true,
        ),
        (EventKind::Create(CreateKind::File), true),
        (EventKind::Remove(RemoveKind::File), true),
        (EventKind::Modify(ModifyKind::Name(RenameMode::To)), true),
        (EventKind::Modify(ModifyKind::Name(RenameMode::From)), true),
        (EventKind::Modify(ModifyKind::Name(RenameMode::Both)), true),
        (
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Permissions)),
            false,
        ),
        (
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            !cfg!(target_os = "linux"),
        ),
        (EventKind::Modify(ModifyKind::Any), true),
        (EventKind::Any, true),
        (EventKind::Other, true),
    ];
    for (kind, changes) in table {
        let expected = if changes {
            vec![Touch::Path(module.clone())]
        } else {
            Vec::new()
        };
        assert_eq!(touches(event(kind)), expected, "{kind:?}");
    }
    let overflow = Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
    assert_eq!(touches(overflow), [Touch::Unknown], "lost events");
}

fn is_sentinel(touch: &Touch) -> bool {
    matches!(touch, Touch::Path(path) if path
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("sentinel-")))
}

/// Collects the touches forwarded until one names `sentinel`; panics if it never comes.
fn touches_until(received: &mpsc::Receiver<Touch>, sentinel: &Path) -> Vec<Touch> {
    let deadline = Instant::now() + EVENT_WAIT;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(Touch::Path(path)) if path == sentinel => return before,
            Ok(touch) => before.push(touch),
            Err(error) => panic!("no event for {} ({error})", sentinel.display()),
        }
    }
}

/// The real inotify watcher through the same translation the relay uses: reading a module a
/// hundred times forwards nothing (that was the endless reload loop), each kind of content
/// change forwards the module. A sentinel file created after each step marks where its events
/// end, since inotify delivers a directory's events in order.
#[test]
fn reads_of_a_module_are_not_forwarded_and_content_changes_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("site.wasm");
    std::fs::write(&module, b"one").expect("write module");
    let (sender, received) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        for touch in touches(event.expect("inotify event")) {
            let _ = sender.send(touch);
        }
    })
    .expect("watcher");
    watcher
        .watch(dir.path(), RecursiveMode::NonRecursive)
        .expect("watch the directory");
    let mut step = 0;
    let mut after = |what: &str, change: &dyn Fn()| {
        change();
        step += 1;
        let sentinel = dir.path().join(format!("sentinel-{step}"));
        std::fs::write(&sentinel, b"").expect("create sentinel");
        let forwarded: Vec<Touch> = touches_until(&received, &sentinel)
            .into_iter()
            .filter(|touch| !is_sentinel(touch))
            .collect();
        eprintln!("{what}: {forwarded:?}");
        forwarded
    };

    let read = after("100 reads", &|| {
        for _ in 0..100 {
            assert_eq!(std::fs::read(&module).expect("read module"), b"one");
        }
    });
    assert_eq!(read, [], "reading the module forwarded events");
    let metadata = after("chmod", &|| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&module, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    });
    assert_eq!(metadata, [], "a metadata change forwarded events");
    let rewritten = after("rewrite in place", &|| {
        std::fs::write(&module, b"two").expect("rewrite module");
    });
    assert!(
        rewritten.contains(&Touch::Path(module.clone())),
        "{rewritten:?}"
    );
    let renamed = after("rename into place", &|| {
        let staging = dir.path().join("site.wasm.new");
        std::fs::write(&staging, b"three").expect("write staging");
        std::fs::rename(&staging, &module).expect("rename into place");
    });
    assert!(
        renamed.contains(&Touch::Path(module.clone())),
        "{renamed:?}"
    );
    let removed = after("remove", &|| {
        std::fs::remove_file(&module).expect("remove module");
    });
    assert!(
        removed.contains(&Touch::Path(module.clone())),
        "{removed:?}"
    );
}

fn wat_bytes(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/wat")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_rewritten_in_place_is_swapped_in_by_the_watcher() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("site.wat");
    std::fs::write(&module, wat_bytes("pass.wat")).expect("write module");
    let chains = Chains::build(test_engine(), Events::none(), plan(&module, OnError::Fail))
        .await
        .expect("loads");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let watcher = chains.watch(shutdown.clone()).expect("watcher starts");
    let before = chains.current();
    for _ in 0..100 {
        std::fs::read(&module).expect("read module");
    }
    std::fs::write(&module, wat_bytes("mask_even.wat")).expect("rewrite in place");
    let deadline = Instant::now() + EVENT_WAIT;
    loop {
        let FilterOutcome::Pass(out) = chains.apply("node", batch(scrape())).await else {
            panic!("the chain failed");
        };
        if out.sample_count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the rewrite was not swapped in");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!std::sync::Arc::ptr_eq(&before, &chains.current()));
    let status = chains.status_json();
    assert_eq!(status["reload"]["last_error"], serde_json::Value::Null);
    shutdown.cancel();
    watcher.await.expect("watcher ends");
}

/// The poller's batch of a model scrape.
fn batch(scrape: crate::model::Scrape) -> crate::batch::ScrapeBatch {
    crate::batch::ScrapeBatch::from_scrape(&scrape).expect("encodes")
}
