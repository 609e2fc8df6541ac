//! What each sink has of each group: the newest scrape time it holds and the scrapes it still
//! needs (owed) that went back to the stream. The pure bookkeeping behind the per-sink rules of
//! [`super::plan`]; it lives in memory only (a restarted receiver starts empty, see the crash
//! hold in `super`).
//!
//! **Invariant:** a sink's `delivered` time only grows; a scrape owed to a sink is forgotten only
//! when the sink took it or refused it, when it is older than `max_age`, or when it has not come
//! back from the stream for `forget_after` (it is gone: acked elsewhere or past retention), so an
//! owed entry can hold a group back for a bounded time only.

use std::collections::{BTreeMap, HashMap};

use super::batch::GroupKey;

/// What one sink finally made of one message of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkResult {
    /// The sink did not need it (it has this scrape or a newer one, or a newer one is pending).
    Nothing,
    /// The sink accepted it (2xx) or already held it.
    Delivered,
    /// The sink refused it for good (4xx).
    Refused,
    /// The sink still needs it: the push failed, was not tried (sink backing off, an older
    /// scrape not yet back) — the message goes back to the stream.
    Owed,
}

/// One sink's view of one group.
#[derive(Debug, Clone, Default)]
struct Track {
    /// Scrape time of the newest scrape the sink holds.
    delivered: Option<i64>,
    /// Scrape times the sink still needs → when (unix ms) the receiver last saw that message.
    owed: BTreeMap<i64, i64>,
}

/// Per group, per sink (by index in the receiver's sink list): what was delivered and what is owed.
#[derive(Debug, Default)]
pub struct Ledger {
    groups: HashMap<GroupKey, Vec<Track>>,
}

impl Ledger {
    fn track(&self, sink: usize, key: &GroupKey) -> Option<&Track> {
        self.groups.get(key).and_then(|tracks| tracks.get(sink))
    }

    fn track_mut(&mut self, sink: usize, key: &GroupKey) -> &mut Track {
        let tracks = self.groups.entry(key.clone()).or_default();
        if tracks.len() <= sink {
            tracks.resize_with(sink + 1, Track::default);
        }
        &mut tracks[sink]
    }

    /// Scrape time of the newest scrape of `key` that `sink` holds.
    pub fn delivered(&self, sink: usize, key: &GroupKey) -> Option<i64> {
        self.track(sink, key).and_then(|track| track.delivered)
    }

    /// Scrape times of `key` older than `time_ms` that `sink` still needs.
    pub fn owed_before(&self, sink: usize, key: &GroupKey, time_ms: i64) -> Vec<i64> {
        self.track(sink, key)
            .map(|track| track.owed.range(..time_ms).map(|(time, _)| *time).collect())
            .unwrap_or_default()
    }

    /// How many scrapes `sink` still needs, over all groups.
    pub fn owed_count(&self, sink: usize) -> usize {
        self.groups
            .values()
            .filter_map(|tracks| tracks.get(sink))
            .map(|track| track.owed.len())
            .sum()
    }

    /// Records what `sink` made of the scrape of `key` taken at `time_ms`, seen at `now_ms`.
    /// `ordered`: the sink takes every scrape in order, so what it still needs is remembered.
    pub fn record(
        &mut self,
        sink: usize,
        key: &GroupKey,
        time_ms: i64,
        result: SinkResult,
        ordered: bool,
        now_ms: i64,
    ) {
        let track = self.track_mut(sink, key);
        match result {
            SinkResult::Delivered => {
                track.delivered = Some(track.delivered.map_or(time_ms, |t| t.max(time_ms)));
                track.owed.remove(&time_ms);
            }
            SinkResult::Nothing | SinkResult::Refused => {
                track.owed.remove(&time_ms);
            }
            SinkResult::Owed if ordered => {
                track.owed.insert(time_ms, now_ms);
            }
            SinkResult::Owed => {}
        }
    }

    /// Forgets the scrape of `key` at `time_ms` for every sink (it was acked without a push).
    pub fn forget(&mut self, key: &GroupKey, time_ms: i64) {
        if let Some(tracks) = self.groups.get_mut(key) {
            for track in tracks {
                track.owed.remove(&time_ms);
            }
        }
    }

    /// Drops owed scrapes older than `max_age_ms` (they will be acked as aged) and those not
    /// seen for `forget_after_ms` (they will not come back).
    pub fn prune(&mut self, now_ms: i64, max_age_ms: Option<i64>, forget_after_ms: i64) {
        for tracks in self.groups.values_mut() {
            for track in tracks {
                track.owed.retain(|time, seen| {
                    let aged = max_age_ms.is_some_and(|limit| now_ms.saturating_sub(*time) > limit);
                    let gone = now_ms.saturating_sub(*seen) > forget_after_ms;
                    !aged && !gone
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> GroupKey {
        GroupKey {
            job: "node".into(),
            instance: "a".into(),
            publisher: "P".into(),
        }
    }

    #[test]
    fn delivered_only_grows_and_owed_scrapes_are_remembered_for_ordered_sinks_only() {
        let mut ledger = Ledger::default();
        ledger.record(0, &key(), 20, SinkResult::Delivered, true, 0);
        ledger.record(0, &key(), 10, SinkResult::Delivered, true, 0);
        assert_eq!(ledger.delivered(0, &key()), Some(20));
        ledger.record(0, &key(), 30, SinkResult::Owed, true, 0);
        ledger.record(0, &key(), 40, SinkResult::Owed, true, 0);
        ledger.record(1, &key(), 30, SinkResult::Owed, false, 0);
        assert_eq!(ledger.owed_before(0, &key(), 40), [30]);
        assert_eq!(ledger.owed_count(0), 2);
        assert_eq!(ledger.owed_count(1), 0, "a newest-only sink needs no order");
        ledger.record(0, &key(), 30, SinkResult::Refused, true, 0);
        ledger.forget(&key(), 40);
        assert_eq!(ledger.owed_count(0), 0);
    }

    #[test]
    fn owed_scrapes_are_dropped_when_aged_or_not_seen_again() {
        let mut ledger = Ledger::default();
        ledger.record(0, &key(), 1_000, SinkResult::Owed, true, 50_000);
        ledger.record(0, &key(), 40_000, SinkResult::Owed, true, 10_000);
        ledger.record(0, &key(), 45_000, SinkResult::Owed, true, 50_000);
        // At 60 s: the first is 59 s old (max_age 30 s), the second unseen for 50 s (limit 40 s).
        ledger.prune(60_000, Some(30_000), 40_000);
        assert_eq!(ledger.owed_before(0, &key(), i64::MAX), [45_000]);
    }
}
