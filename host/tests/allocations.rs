//! Allocations on the poller's path per scrape do not grow with the scrape: after a warm-up
//! scrape of the same target, a scrape of 500 series and one of 100 000 allocate the same small
//! number of times (parse into the target's batch with its target labels and synthetic series,
//! the staleness tracker, the wire message).
//!
//! Counted with a counting global allocator, on this thread only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fmt::Write as _;

use promrelay::batch::ScrapeBatch;
use promrelay::exposition::{LabelLimit, ScrapeWriter};
use promrelay::model::ScrapeMeta;
use promrelay::stale::Staleness;
use promrelay::wire::{self, WireFormat};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let counting = COUNTING.try_with(Cell::get).unwrap_or(false);
    if counting {
        let _ = COUNT.try_with(|count| count.set(count.get() + 1));
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counter is a
// thread-local `Cell` with a const initialiser, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations `work` makes on this thread.
fn allocations<T>(work: impl FnOnce() -> T) -> (usize, T) {
    COUNT.with(|count| count.set(0));
    COUNTING.with(|counting| counting.set(true));
    let result = work();
    COUNTING.with(|counting| counting.set(false));
    (COUNT.with(Cell::get), result)
}

/// `series` series in families of 200, with a HELP and TYPE each and four labels per series;
/// every other series also exposes `instance` (renamed `exported_instance`, as a federation
/// endpoint's series are).
fn exposition(series: usize) -> String {
    let mut text = String::new();
    for index in 0..series {
        let family = index / 200;
        if index % 200 == 0 {
            let _ = writeln!(
                text,
                "# HELP service_requests_{family}_total Requests served by the service, family {family}."
            );
            let _ = writeln!(text, "# TYPE service_requests_{family}_total counter");
        }
        let _ = writeln!(
            text,
            "service_requests_{family}_total{{code=\"{}\",{}method=\"{}\",path=\"/api/{}\",shard=\"{}\"}} {}",
            [200, 404, 500, 503][index % 4],
            ["", "instance=\"upstream:1\","][index % 2],
            ["GET", "POST", "PUT"][index % 3],
            index % 200 / 12,
            index % 7,
            1000 + index
        );
    }
    text
}

/// One scrape of one target as the poller handles it; returns the samples published.
fn scrape(
    writer: &mut ScrapeWriter,
    staleness: &mut Staleness,
    body: &[u8],
    time_ms: i64,
) -> usize {
    writer.begin([("job", "node"), ("instance", "host:9100")]);
    let limit = LabelLimit {
        limit: 64,
        added: &["job", "instance"],
    };
    let samples = writer.parse(body, limit).expect("the exposition parses");
    for (name, value) in [
        ("up", 1.0),
        ("scrape_duration_seconds", 0.01),
        ("scrape_samples_scraped", samples as f64),
    ] {
        writer
            .add_synthetic(name, "synthetic", value)
            .expect("added");
    }
    let mut bytes = Vec::new();
    writer.finish_into(&mut bytes);
    let meta = ScrapeMeta {
        publisher: "p".into(),
        job: "node".into(),
        instance: "host:9100".into(),
        time_ms,
    };
    let mut batch = ScrapeBatch::new(meta, bytes);
    assert_eq!(
        staleness.mark(&mut batch),
        0,
        "the same series every scrape"
    );
    let messages = wire::encode_batch(&batch, "t", WireFormat::Batch, usize::MAX).expect("encodes");
    assert_eq!(messages.len(), 1);
    batch.sample_count()
}

#[test]
fn a_scrape_of_100_000_series_allocates_as_often_as_one_of_500() {
    let mut counts = Vec::new();
    for series in [500, 100_000] {
        let body = exposition(series);
        let mut writer = ScrapeWriter::new();
        let mut staleness = Staleness::default();
        // Warm-up: the target's first scrapes grow its buffers and string table.
        for time in 0..2 {
            scrape(&mut writer, &mut staleness, body.as_bytes(), time);
        }
        let (count, published) =
            allocations(|| scrape(&mut writer, &mut staleness, body.as_bytes(), 2));
        assert_eq!(published, series + 3);
        counts.push(count);
    }
    let [small, large] = counts[..] else {
        unreachable!("two sizes")
    };
    assert!(
        large <= small + 2 && small < 64,
        "allocations per scrape: {small} for 500 series, {large} for 100 000"
    );
    println!("allocations per scrape: {small} for 500 series, {large} for 100 000");
}
