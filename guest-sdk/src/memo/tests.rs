//! The memo's bounds and eviction, and the key's collision behaviour on label sets shaped like
//! real scrapes.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use super::{MemoLimits, SeriesKey, SeriesMemo};

fn key(memo: &SeriesMemo<u32>, series: u32) -> SeriesKey {
    let value = series.to_string();
    memo.key([("__name__", "up"), ("id", value.as_str())])
}

#[test]
fn a_series_seen_again_is_answered_from_the_memo() {
    let mut memo = SeriesMemo::new(0, MemoLimits::default());
    let mut computed = 0;
    for _scrape in 0..3 {
        memo.begin_scrape();
        for series in 0..10 {
            let key = key(&memo, series);
            let value = *memo.get_or_insert_with(key, || {
                computed += 1;
                series * 2
            });
            assert_eq!(value, series * 2);
        }
    }
    assert_eq!(computed, 10, "each series is computed once");
    let stats = memo.stats();
    assert_eq!((stats.hits, stats.misses), (20, 10));
}

#[test]
fn series_not_seen_for_max_idle_scrapes_are_evicted() {
    let limits = MemoLimits {
        max_series: 1000,
        max_idle_scrapes: 4,
    };
    let mut memo = SeriesMemo::new(0, limits);
    memo.begin_scrape();
    for series in 0..10 {
        memo.insert(key(&memo, series), series);
    }
    // Series 0..5 stay in every scrape; 5..10 vanish.
    for _ in 0..6 {
        memo.begin_scrape();
        for series in 0..5 {
            assert_eq!(memo.get(key(&memo, series)), Some(&series));
        }
    }
    assert_eq!(memo.len(), 5);
    assert_eq!(memo.get(key(&memo, 7)), None);
    assert_eq!(memo.stats().evicted, 5);
}

#[test]
fn a_full_memo_evicts_the_least_recently_seen_and_never_grows_past_its_limit() {
    let limits = MemoLimits {
        max_series: 100,
        max_idle_scrapes: 64,
    };
    let mut memo = SeriesMemo::new(0, limits);
    // Scrape 1 fills the memo with series 0..100.
    memo.begin_scrape();
    for series in 0..100 {
        memo.insert(key(&memo, series), series);
    }
    // Scrape 2 sees 0..50 again and 50 new series: the unseen half of scrape 1 makes room.
    memo.begin_scrape();
    for series in (0..50).chain(1000..1050) {
        let value = *memo.get_or_insert_with(key(&memo, series), || series);
        assert_eq!(value, series);
        assert!(memo.len() <= 100);
    }
    for series in (0..50).chain(1000..1050) {
        assert_eq!(memo.get(key(&memo, series)), Some(&series), "{series}");
    }
    // Scrape 3 alone has more series than the limit: the excess is computed, not stored.
    memo.begin_scrape();
    for series in 2000..2150 {
        assert_eq!(
            *memo.get_or_insert_with(key(&memo, series), || series),
            series
        );
        assert!(memo.len() <= 100);
    }
    assert!(memo.stats().not_stored >= 50, "{:?}", memo.stats());
}

#[test]
fn memoisation_off_stores_nothing_but_still_answers() {
    let mut memo = SeriesMemo::new(0, MemoLimits::OFF);
    memo.begin_scrape();
    let key = key(&memo, 1);
    assert_eq!(*memo.get_or_insert_with(key, || 5), 5);
    assert_eq!(memo.get(key), None);
    assert!(memo.is_empty());
}

#[test]
fn keys_separate_label_boundaries_and_versions() {
    let a = SeriesKey::of(0, [("ab", "c")]);
    let b = SeriesKey::of(0, [("a", "bc")]);
    let c = SeriesKey::of(0, [("a", "b"), ("c", "")]);
    let d = SeriesKey::of(0, [("a", "b\0\0\0\0\0\0\0")]);
    let e = SeriesKey::of(0, [("a", "b")]);
    let all: HashSet<_> = [a, b, c, d, e].into_iter().collect();
    assert_eq!(all.len(), 5);
    assert_ne!(SeriesKey::of(1, [("a", "b")]), e);
    assert_eq!(SeriesKey::of(0, [("a", "b")]), e);
}

#[test]
fn keys_of_200_000_similar_series_do_not_collide_even_in_half_the_bits() {
    // Series that differ in one digit or one byte, as a scrape's do. A collision of either
    // 64-bit half among 200 000 keys would happen by chance with probability ~1e-9.
    let mut high = HashSet::new();
    let mut low = HashSet::new();
    let modes = ["idle", "user", "system", "iowait"];
    let mut value = String::new();
    for i in 0..200_000u32 {
        value.clear();
        value.push_str(&format!("host{}.example.org:9100", i / 1000));
        let cpu = (i % 250).to_string();
        let key = SeriesKey::of(
            3,
            [
                ("__name__", "node_cpu_seconds_total"),
                ("cpu", cpu.as_str()),
                ("instance", value.as_str()),
                ("job", "node"),
                ("mode", modes[(i / 250 % 4) as usize]),
            ],
        )
        .as_u128();
        assert!(high.insert((key >> 64) as u64), "high half collided at {i}");
        assert!(low.insert(key as u64), "low half collided at {i}");
    }
}
