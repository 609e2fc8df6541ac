//! Staleness markers, as Prometheus writes them: a series a target exposed in its previous
//! scrape and not in this one gets one sample of the staleness NaN (`model::STALE_NAN_BITS`) at
//! this scrape's time; a target that went down (its scrape holds only the synthetic series)
//! thereby marks every series it had. remote_write carries the markers, so a vanished series
//! ends in Prometheus at once instead of after its 5-minute lookback; the Pushgateway sink
//! leaves them out.
//!
//! Per target the tracker keeps the previous scrape as one encoded batch (each distinct string
//! once: about a hundred bytes per series) and the sorted hashes of its series; per scrape it
//! hashes the series once. Series with their own timestamps are not tracked (Prometheus does
//! not mark them either). A target not scraped for [`FORGET_AFTER`] is forgotten.

use std::collections::HashMap;

use promrelay_abi::{BatchReader, NAME_LABEL};

use crate::batch::ScrapeBatch;
use crate::filter::codec;
use crate::model::{self, Family, Label, Scrape, Series, Str};

/// A target whose last scrape is this old (milliseconds) is forgotten.
pub const FORGET_AFTER_MS: i64 = 3_600_000;

/// The previous scrape of one target.
struct Previous {
    /// The previous scrape, encoded.
    batch: Vec<u8>,
    /// Sorted: (series hash, position in its family, family index in `batch`).
    series: Vec<(u64, u32, u32)>,
    time_ms: i64,
}

/// Per target (job, instance): what its previous scrape exposed.
#[derive(Default)]
pub struct Staleness {
    targets: HashMap<(String, String), Previous>,
    /// Spare buffers, reused for the next scrape's batch and hashes.
    spare_batch: Option<Vec<u8>>,
    spare_series: Option<Vec<(u64, u32, u32)>>,
    /// Scrapes seen since the last sweep of forgotten targets.
    since_sweep: usize,
    /// The hash of each string of the batch being hashed (reused buffer).
    string_hashes: Vec<u64>,
}

impl Staleness {
    /// Adds a staleness marker to `scrape` for every series its target's previous scrape had
    /// and this one has not; remembers this one (a copy of its batch, markers included).
    /// Returns how many markers it added.
    ///
    /// Hot path: hashes the batch's series in place; only a scrape that gets markers is
    /// rewritten (through the model: markers are rare).
    pub fn mark(&mut self, scrape: &mut ScrapeBatch) -> usize {
        let mut series = self.spare_series.take().unwrap_or_default();
        series.clear();
        if let Some(reader) = scrape.reader() {
            hash_series(&reader, &mut self.string_hashes, &mut series);
        }
        series.sort_unstable_by_key(|entry| entry.0);
        let key = (scrape.meta.job.clone(), scrape.meta.instance.clone());
        let markers = match self.targets.get(&key) {
            Some(previous)
                if previous
                    .series
                    .iter()
                    .any(|(hash, _, _)| series.binary_search_by_key(hash, |e| e.0).is_err()) =>
            {
                let mut model = scrape.to_scrape();
                let added = add_markers(&mut model, previous, &series);
                if added > 0 {
                    // Markers go to the end of their families (or new families at the end),
                    // so the positions hashed above stay right in the marked batch.
                    match ScrapeBatch::from_scrape(&model) {
                        Ok(marked) => *scrape = marked,
                        Err(_) => return 0,
                    }
                }
                added
            }
            _ => 0,
        };
        let mut buffer = self.spare_batch.take().unwrap_or_default();
        buffer.clear();
        buffer.extend_from_slice(scrape.bytes());
        self.store(key, series, scrape.meta.time_ms, buffer);
        markers
    }

    fn store(
        &mut self,
        key: (String, String),
        series: Vec<(u64, u32, u32)>,
        time_ms: i64,
        batch: Vec<u8>,
    ) {
        let previous = self.targets.insert(
            key,
            Previous {
                batch,
                series,
                time_ms,
            },
        );
        if let Some(previous) = previous {
            self.spare_batch = Some(previous.batch);
            self.spare_series = Some(previous.series);
        }
        self.since_sweep += 1;
        if self.since_sweep >= 1024 {
            self.since_sweep = 0;
            self.targets
                .retain(|_, previous| time_ms - previous.time_ms < FORGET_AFTER_MS);
        }
    }

    /// Targets remembered.
    pub fn targets(&self) -> usize {
        self.targets.len()
    }
}

/// The tracked series of a batch: (hash of its labels, `__name__` included; position in its
/// family; family index), for every series without its own timestamp that is not a marker.
/// A collision only costs one missed marker.
///
/// Hot path: each distinct string is hashed once (`strings`, by index), a series' hash mixes
/// its labels' string hashes. Content-based, so the same series hashes alike in batches with
/// different string tables (a reset table, a filter's REPLACED batch).
fn hash_series(reader: &BatchReader<'_>, strings: &mut Vec<u64>, out: &mut Vec<(u64, u32, u32)>) {
    strings.clear();
    strings.extend((0..reader.string_count()).map(|index| {
        let mut hash = Hash64::default();
        hash.write(reader.bytes(index).unwrap_or_default());
        hash.finish()
    }));
    let of = |index: u32| strings.get(index as usize).copied().unwrap_or_default();
    for (family_index, family) in reader.families().enumerate() {
        for position in 0..family.series_count {
            let Ok(sample) = reader.series(family.first_series + position) else {
                continue;
            };
            if sample.timestamp_ms.is_some() || model::is_stale(sample.value) {
                continue;
            }
            let mut hash = Hash64::default();
            for label in reader.labels(&sample) {
                hash.mix(of(label.name));
                hash.mix(of(label.value));
            }
            out.push((hash.finish(), position, family_index as u32));
        }
    }
}

#[derive(Default)]
struct Hash64(u64);

impl Hash64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;

    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.mix(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(tail));
        // The length separates "ab","c" from "a","bc".
        self.mix(bytes.len() as u64 | 1 << 63);
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

/// Appends the markers of the series of `previous` missing from `current` (sorted hashes).
fn add_markers(scrape: &mut Scrape, previous: &Previous, current: &[(u64, u32, u32)]) -> usize {
    let gone: Vec<(u32, u32)> = previous
        .series
        .iter()
        .filter(|(hash, _, _)| current.binary_search_by_key(hash, |entry| entry.0).is_err())
        .map(|&(_, position, family)| (family, position))
        .collect();
    if gone.is_empty() {
        return 0;
    }
    let Ok(reader) = BatchReader::new(&previous.batch) else {
        return 0;
    };
    let mut gone = gone;
    gone.sort_unstable();
    let mut added = 0;
    let mut at = 0;
    while at < gone.len() {
        let family_index = gone[at].0;
        let Ok(record) = reader.family(family_index) else {
            break;
        };
        let text = |index: u32| reader.str(index).unwrap_or_default();
        let name = text(record.name);
        let target = match scrape
            .families
            .iter()
            .position(|family| family.name == name)
        {
            Some(position) => position,
            None => {
                scrape.families.push(Family {
                    name: Str::from(name),
                    help: reader.opt_str(record.help).ok().flatten().map(Str::from),
                    unit: reader.opt_str(record.unit).ok().flatten().map(Str::from),
                    kind: codec::from_abi(record.kind),
                    series: Vec::new(),
                });
                scrape.families.len() - 1
            }
        };
        while at < gone.len() && gone[at].0 == family_index {
            if let Ok(sample) = reader.series(record.first_series + gone[at].1) {
                let mut series = Series {
                    name: Str::default(),
                    labels: Vec::new(),
                    value: model::stale_nan(),
                    timestamp_ms: None,
                };
                for label in reader.labels(&sample) {
                    let (label_name, value) = (text(label.name), text(label.value));
                    if label_name == NAME_LABEL {
                        series.name = Str::from(value);
                    } else {
                        series.labels.push(Label::new(label_name, value));
                    }
                }
                scrape.families[target].series.push(series);
                added += 1;
            }
            at += 1;
        }
    }
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MetricType, ScrapeMeta};

    fn scrape(time_ms: i64, series: &[(&str, &str)]) -> Scrape {
        Scrape {
            meta: ScrapeMeta {
                publisher: "p".into(),
                job: "node".into(),
                instance: "h:1".into(),
                time_ms,
            },
            families: vec![Family {
                name: "x".into(),
                help: Some("X.".into()),
                unit: None,
                kind: MetricType::Gauge,
                series: series
                    .iter()
                    .map(|(name, value)| Series {
                        name: (*name).into(),
                        labels: vec![Label::new("a", *value), Label::new("job", "node")],
                        value: 1.0,
                        timestamp_ms: None,
                    })
                    .collect(),
            }],
        }
    }

    /// Marks a model scrape through its batch, as the publisher marks the poller's.
    trait MarkModel {
        fn mark(&mut self, scrape: &mut Scrape) -> usize;
    }

    impl MarkModel for Staleness {
        fn mark(&mut self, scrape: &mut Scrape) -> usize {
            let mut batch = ScrapeBatch::from_scrape(scrape).expect("encodes");
            let markers = Staleness::mark(self, &mut batch);
            *scrape = batch.to_scrape();
            markers
        }
    }

    fn stale(scrape: &Scrape) -> Vec<String> {
        scrape
            .families
            .iter()
            .flat_map(|family| &family.series)
            .filter(|series| model::is_stale(series.value))
            .map(|series| format!("{}{{a={}}}", series.name, series.label("a").unwrap_or("")))
            .collect()
    }

    #[test]
    fn a_series_gone_since_the_previous_scrape_gets_one_marker_and_then_none() {
        let mut tracker = Staleness::default();
        let mut first = scrape(1_000, &[("x", "1"), ("x", "2"), ("x", "3")]);
        assert_eq!(
            MarkModel::mark(&mut tracker, &mut first),
            0,
            "nothing to compare the first scrape with"
        );
        let mut second = scrape(2_000, &[("x", "1"), ("x", "3")]);
        assert_eq!(MarkModel::mark(&mut tracker, &mut second), 1);
        assert_eq!(stale(&second), ["x{a=2}"]);
        let marker = second.families[0].series.last().expect("a marker");
        assert_eq!(marker.value.to_bits(), model::STALE_NAN_BITS);
        assert_eq!(
            marker.timestamp_ms, None,
            "the marker takes the scrape's time"
        );
        assert_eq!(marker.label("job"), Some("node"));
        let mut third = scrape(3_000, &[("x", "1"), ("x", "3")]);
        assert_eq!(
            MarkModel::mark(&mut tracker, &mut third),
            0,
            "a marker is written once"
        );
    }

    #[test]
    fn a_target_down_marks_every_series_and_a_vanished_family_comes_back_for_its_markers() {
        let mut tracker = Staleness::default();
        let mut up = scrape(1_000, &[("x", "1"), ("x", "2")]);
        MarkModel::mark(&mut tracker, &mut up);
        let mut down = scrape(2_000, &[]);
        down.families.clear();
        assert_eq!(MarkModel::mark(&mut tracker, &mut down), 2);
        assert_eq!(down.families.len(), 1);
        assert_eq!(down.families[0].name, "x");
        assert_eq!(down.families[0].help.as_deref(), Some("X."));
        assert_eq!(stale(&down), ["x{a=1}", "x{a=2}"]);
    }

    #[test]
    fn series_with_their_own_timestamps_and_other_targets_are_left_alone() {
        let mut tracker = Staleness::default();
        let mut first = scrape(1_000, &[("x", "1"), ("x", "2")]);
        first.families[0].series[1].timestamp_ms = Some(900);
        MarkModel::mark(&mut tracker, &mut first);
        let mut other = scrape(1_500, &[]);
        other.meta.instance = "other:1".into();
        assert_eq!(MarkModel::mark(&mut tracker, &mut other), 0);
        let mut second = scrape(2_000, &[]);
        assert_eq!(MarkModel::mark(&mut tracker, &mut second), 1);
        assert_eq!(stale(&second), ["x{a=1}"]);
        assert_eq!(tracker.targets(), 2);
    }

    #[test]
    fn markers_come_from_the_kept_batch_across_families_and_rounds() {
        let mut tracker = Staleness::default();
        let mut previous = scrape(1_000, &[("x", "1"), ("x", "2"), ("x", "3")]);
        previous.families.push(Family {
            name: "y".into(),
            help: None,
            unit: None,
            kind: MetricType::Counter,
            series: vec![Series {
                name: "y_total".into(),
                labels: vec![Label::new("b", "1")],
                value: 5.0,
                timestamp_ms: None,
            }],
        });
        for _ in 0..3 {
            assert_eq!(MarkModel::mark(&mut tracker, &mut previous), 0);
            previous.meta.time_ms += 1_000;
        }
        let mut next = scrape(9_000, &[("x", "3")]);
        assert_eq!(MarkModel::mark(&mut tracker, &mut next), 3);
        let mut markers = stale(&next);
        markers.sort();
        assert_eq!(markers, ["x{a=1}", "x{a=2}", "y_total{a=}"]);
        let y = next
            .families
            .iter()
            .find(|f| f.name == "y")
            .expect("y comes back");
        assert_eq!(y.series[0].label("b"), Some("1"));
    }
}
