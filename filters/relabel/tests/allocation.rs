//! The per-series path allocates nothing when no rule changes a label (counted with a global
//! allocator in this test binary only).

// The counting allocator below is the only unsafe code in this crate.
#![allow(unsafe_code)]

use filter_relabel::{config, LabelSet, Relabeler};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn unchanged_series_allocate_nothing_after_warm_up() {
    let rules = config::parse(
        br#"{"relabel_configs": [
            {"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"},
            {"source_labels": ["instance"], "regex": "([^:]+):\\d+", "target_label": "host"},
            {"source_labels": ["job", "instance"], "regex": "x;.*", "action": "drop"},
            {"target_label": "site", "replacement": "dc1"},
            {"source_labels": ["site"], "action": "lowercase", "target_label": "site"},
            {"source_labels": ["instance"], "target_label": "shard", "modulus": 4, "action": "hashmod"},
            {"regex": "__tmp_.*", "action": "labeldrop"},
            {"regex": "__meta_(.*)", "action": "labelmap"},
            {"source_labels": ["__name__"], "regex": ".+", "action": "keep"}
        ]}"#,
    )
    .expect("rules are valid");
    let mut relabeler = Relabeler::new(rules);
    // Already in the state the rules produce, so nothing changes.
    let series = [
        ("__name__", "node_load1"),
        ("host", "h1"),
        ("instance", "h1:9100"),
        ("job", "node"),
        ("shard", "0"),
        ("site", "dc1"),
    ];
    let mut labels = LabelSet::new();
    let mut run = |labels: LabelSet<'static>| {
        let mut labels = labels.recycle();
        for (name, value) in series {
            labels.push_sorted(name, value);
        }
        let kept = relabeler.process_series(&mut labels);
        (
            kept,
            labels.changed(),
            labels.get("shard") == "0",
            labels.recycle(),
        )
    };
    // The first call sizes the scratch buffers and the label vector.
    let (_, _, shard_is_zero, recycled) = run(std::mem::take(&mut labels));
    assert!(
        shard_is_zero,
        "the fixture's shard must be what hashmod computes"
    );
    labels = recycled;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..100 {
        let (kept, changed, _, recycled) = run(std::mem::take(&mut labels));
        assert!(kept && !changed);
        labels = recycled;
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(allocations, 0, "allocations over 100 unchanged series");
}
