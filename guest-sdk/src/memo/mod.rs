//! Remember a per-series answer across the scrapes one filter instance sees, so a series seen
//! before costs a hash and a lookup instead of the filter's work — what Prometheus' scrape cache
//! does for `metric_relabel_configs`.
//!
//! A [`SeriesMemo`] maps a series' identity ([`SeriesKey`]: a 128-bit hash of its labels and of a
//! *version* the filter chooses, e.g. a hash of its rules) to whatever the filter computed for it.
//! It is bounded: at most [`MemoLimits::max_series`] entries, and an entry not looked up for
//! [`MemoLimits::max_idle_scrapes`] scrapes is evicted. Scrapes are counted per instance, and one
//! instance may filter the scrapes of many targets in turn, so the idle limit should exceed the
//! number of targets a chain serves (the default, 100, does for most sites).
//!
//! ```
//! use promrelay_sdk::memo::{MemoLimits, SeriesMemo};
//! use promrelay_sdk::{export_filter, Batch, Error, Filter};
//!
//! /// Drops series with more than `max` labels; remembers the verdict per series.
//! struct LabelCap {
//!     max: usize,
//!     verdicts: SeriesMemo<bool>,
//! }
//!
//! impl Filter for LabelCap {
//!     type Config = usize;
//!
//!     fn init(max: usize) -> Result<Self, Error> {
//!         // The version makes keys of another configuration differ.
//!         let verdicts = SeriesMemo::new(max as u64, MemoLimits::default());
//!         Ok(LabelCap { max, verdicts })
//!     }
//!
//!     fn process(&mut self, batch: &mut Batch<'_>) -> Result<(), Error> {
//!         self.verdicts.begin_scrape();
//!         let (max, verdicts) = (self.max, &mut self.verdicts);
//!         batch.retain(|series| {
//!             let key = verdicts.key(series.labels());
//!             *verdicts.get_or_insert_with(key, || series.labels().count() <= max)
//!         });
//!         Ok(())
//!     }
//! }
//!
//! export_filter!(LabelCap);
//!
//! let mut harness = promrelay_sdk::testing::Harness::<LabelCap>::new("3").unwrap();
//! let scrape = "a{x=\"1\",y=\"2\"} 1\nb{x=\"1\",y=\"2\",z=\"3\"} 1\n";
//! assert_eq!(harness.process_text(scrape).unwrap(), "a{x=\"1\",y=\"2\"} 1\n");
//! // The second scrape answers from the memo, with the same result.
//! assert_eq!(harness.process_text(scrape).unwrap(), "a{x=\"1\",y=\"2\"} 1\n");
//! ```
//!
//! **Invariant:** the memo only ever answers for a key it was given the value of; what a value
//! means, and that it depends only on the labels and the version, is the filter's business.
//!
//! The key is a fast non-cryptographic hash: two different series collide with a probability of
//! about 2⁻¹²⁸ per pair, but a target that can choose label values, knows the filter's version
//! and works at it could construct a series that collides with another and receives its answer.
//! A filter whose answers guard something (rather than shape metrics) should not memoise, or
//! should key on more than the labels.

mod key;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

pub use key::SeriesKey;

use crate::batch::Series;

/// How much a [`SeriesMemo`] may hold.
///
/// ```
/// use promrelay_sdk::memo::MemoLimits;
///
/// let limits = MemoLimits { max_series: 20_000, ..MemoLimits::default() };
/// assert_eq!(limits.max_idle_scrapes, MemoLimits::default().max_idle_scrapes);
/// assert_eq!(MemoLimits::OFF.max_series, 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoLimits {
    /// Most series remembered at once. When full, the series seen least recently go first;
    /// series of the current scrape are never evicted for room (past the limit they are
    /// computed every time). 0 turns memoisation off. Default 100 000 (20 targets of 5 000
    /// series).
    pub max_series: usize,
    /// An entry not looked up for this many scrapes (calls of this filter instance) is evicted.
    /// Default 100.
    pub max_idle_scrapes: u32,
}

impl MemoLimits {
    /// Remember nothing: every lookup misses and every value is computed anew.
    pub const OFF: MemoLimits = MemoLimits {
        max_series: 0,
        max_idle_scrapes: 0,
    };

    /// The defaults (see the fields).
    pub const DEFAULT: MemoLimits = MemoLimits {
        max_series: 100_000,
        max_idle_scrapes: 100,
    };
}

impl Default for MemoLimits {
    fn default() -> Self {
        MemoLimits::DEFAULT
    }
}

/// Counters of a [`SeriesMemo`] since it was created.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MemoStats {
    /// Lookups answered from the memo.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Entries removed, idle or for room.
    pub evicted: u64,
    /// Values not kept because the memo was full of series of the current scrape.
    pub not_stored: u64,
}

/// Per-series answers kept across calls of one filter instance. See [the module](self).
///
/// ```
/// use promrelay_sdk::memo::{MemoLimits, SeriesMemo};
///
/// let mut memo = SeriesMemo::<u32>::new(1, MemoLimits { max_series: 10, max_idle_scrapes: 2 });
/// let key = memo.key([("__name__", "up"), ("job", "node")]);
/// memo.begin_scrape();
/// assert_eq!(memo.get(key), None);
/// memo.insert(key, 42);
/// memo.begin_scrape();
/// assert_eq!(memo.get(key), Some(&42));
/// // Three scrapes without a lookup: evicted.
/// for _ in 0..3 {
///     memo.begin_scrape();
/// }
/// assert_eq!(memo.get(key), None);
/// ```
pub struct SeriesMemo<V> {
    version: u64,
    limits: MemoLimits,
    entries: HashMap<SeriesKey, Entry<V>, KeyIsHash>,
    /// Scrapes begun so far; an entry's `seen` is the scrape it was last looked up in.
    scrape: u64,
    last_sweep: u64,
    /// Where a value that could not be stored lives until the next one (so that
    /// [`SeriesMemo::insert`] can always return a reference).
    overflow: Option<V>,
    stats: MemoStats,
}

struct Entry<V> {
    value: V,
    seen: u64,
}

impl<V> SeriesMemo<V> {
    /// An empty memo whose keys are computed under `version`: give it something that changes
    /// whenever the answers would (a hash of the filter's config, a rules version).
    pub fn new(version: u64, limits: MemoLimits) -> SeriesMemo<V> {
        SeriesMemo {
            version,
            limits,
            entries: HashMap::with_hasher(KeyIsHash),
            scrape: 0,
            last_sweep: 0,
            overflow: None,
            stats: MemoStats::default(),
        }
    }

    /// The version keys are computed under.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The limits it was created with.
    pub fn limits(&self) -> MemoLimits {
        self.limits
    }

    /// Series remembered now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Hits, misses and evictions so far.
    pub fn stats(&self) -> MemoStats {
        self.stats
    }

    /// Forgets everything (the counters stay).
    pub fn clear(&mut self) {
        self.stats.evicted += self.entries.len() as u64;
        self.entries.clear();
        self.overflow = None;
    }

    /// Makes room for `series` more entries without growing the table one step at a time
    /// (never past `max_series`). Call it before a batch of series not seen before.
    pub fn reserve(&mut self, series: usize) {
        let room = self.limits.max_series.saturating_sub(self.entries.len());
        self.entries.reserve(series.min(room));
    }

    /// Starts a scrape: call it once at the top of [`crate::Filter::process`]. Entries idle for
    /// more than `max_idle_scrapes` scrapes are evicted (in a sweep every half of that, so the
    /// cost per scrape stays small).
    pub fn begin_scrape(&mut self) {
        self.scrape += 1;
        let period = u64::from(self.limits.max_idle_scrapes / 2).max(1);
        if self.scrape - self.last_sweep >= period {
            self.last_sweep = self.scrape;
            self.evict_idle(u64::from(self.limits.max_idle_scrapes));
        }
    }

    /// The key of a label set (in name order) under this memo's version. Hot path.
    pub fn key<'s>(&self, labels: impl IntoIterator<Item = (&'s str, &'s str)>) -> SeriesKey {
        SeriesKey::of(self.version, labels)
    }

    /// The key of `series`. Hot path.
    pub fn key_of(&self, series: &Series<'_>) -> SeriesKey {
        self.key(series.labels())
    }

    /// The value remembered for `key`, marking it seen in this scrape. Hot path.
    pub fn get(&mut self, key: SeriesKey) -> Option<&V> {
        match self.entries.get_mut(&key) {
            Some(entry) => {
                entry.seen = self.scrape;
                self.stats.hits += 1;
                Some(&entry.value)
            }
            None => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// Remembers `value` for `key` (replacing any earlier value) and returns it. When the memo
    /// is full of series of this scrape the value is not kept, but is still returned.
    pub fn insert(&mut self, key: SeriesKey, value: V) -> &V {
        let full = self.entries.len() >= self.limits.max_series;
        if full && !self.entries.contains_key(&key) && !self.make_room() {
            self.stats.not_stored += 1;
            return self.overflow.insert(value);
        }
        let scrape = self.scrape;
        let entry = self.entries.entry(key).insert_entry(Entry {
            value,
            seen: scrape,
        });
        &entry.into_mut().value
    }

    /// The value for `key`, computing and remembering it with `compute` if there is none.
    /// Hot path.
    pub fn get_or_insert_with(&mut self, key: SeriesKey, compute: impl FnOnce() -> V) -> &V {
        if self.entries.contains_key(&key) {
            return self.get(key).expect("the key was just found");
        }
        self.stats.misses += 1;
        self.insert(key, compute())
    }

    fn evict_idle(&mut self, max_idle: u64) {
        let (scrape, before) = (self.scrape, self.entries.len());
        self.entries
            .retain(|_, entry| scrape - entry.seen <= max_idle);
        self.stats.evicted += (before - self.entries.len()) as u64;
    }

    /// Evicts the least recently seen entries, halving the idle limit until an eighth of the
    /// room is free or only this scrape's series are left. Whether there is room now.
    fn make_room(&mut self) -> bool {
        let max = self.limits.max_series;
        if max == 0 {
            return false;
        }
        let target = max - max / 8;
        let mut idle = u64::from(self.limits.max_idle_scrapes);
        loop {
            idle /= 2;
            self.evict_idle(idle);
            if self.entries.len() <= target || idle == 0 {
                break;
            }
        }
        self.entries.len() < max
    }
}

/// The map's hasher: a [`SeriesKey`] already is a good hash, so its bits are used as they are.
#[derive(Clone, Copy, Default)]
struct KeyIsHash;

impl BuildHasher for KeyIsHash {
    type Hasher = KeyBits;

    fn build_hasher(&self) -> KeyBits {
        KeyBits(0)
    }
}

struct KeyBits(u64);

impl Hasher for KeyBits {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u128(&mut self, value: u128) {
        self.0 ^= value as u64 ^ (value >> 64) as u64;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used by `SeriesKey`; fold anything else in all the same.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
}
