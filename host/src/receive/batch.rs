//! Deciding what to do with one fetched batch, before any push: the pure part of the receiver.
//!
//! Given each message's routing facts and what each sink already holds (the [`Ledger`]),
//! [`plan`] says per sink which messages to push now, which to leave in the stream for later and
//! which the sink does not need; a message older than `max_age` is acked without a push (aged).
//! Coalescing is the sink's rule ([`Coalescing`]): the Pushgateway gets the newest scrape of a
//! group, remote_write every scrape in order. Keeping this free of I/O lets the rules be tested
//! as a table.

use std::collections::HashMap;
use std::time::Duration;

use super::ledger::Ledger;
use crate::model::ScrapeMeta;
use crate::sink::Coalescing;

/// A Pushgateway group: scrapes with the same key replace each other.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub job: String,
    pub instance: String,
    pub publisher: String,
}

impl GroupKey {
    pub fn of(meta: &ScrapeMeta) -> GroupKey {
        GroupKey {
            job: meta.job.clone(),
            instance: meta.instance.clone(),
            publisher: meta.publisher.clone(),
        }
    }
}

/// The facts of one message [`plan`] decides on.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub meta: &'a ScrapeMeta,
    /// The message's stream sequence.
    pub sequence: u64,
}

/// What [`plan`] knows about one sink for this batch.
#[derive(Debug, Clone, Copy)]
pub struct SinkState {
    pub coalescing: Coalescing,
    /// `false` while the sink backs off after a failure: what it needs waits in the stream.
    pub available: bool,
    /// While a restarted receiver waits for the messages its predecessor left unacked (the crash
    /// hold), an ordered sink takes only messages up to this stream sequence.
    pub hold_above: Option<u64>,
}

/// What one sink needs of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: it holds this scrape or a newer one, or (newest-only) a newer one is in the batch.
    Nothing,
    /// Push it now; a group's pushes go out in scrape-time order.
    Push,
    /// It needs this scrape but not yet (sink backing off, an older scrape it needs is not in
    /// this batch, the crash hold): the message goes back to the stream.
    Later,
}

/// What to do with one message of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Ack without a push: older than `max_age`.
    Aged,
    /// Per sink (by index), what it needs. A message no sink needs is acked as coalesced.
    Deliver(Vec<Need>),
}

/// Decides for each item (by index) of a batch, per sink.
///
/// A newest-only sink (the Pushgateway) is offered the newest scrape of each group, and only if
/// it is newer than what the sink holds, so a redelivered old scrape never overwrites newer data.
/// An every-scrape sink (remote_write) is offered every scrape newer than what it holds, oldest
/// first, but none while an older one it still needs is outside this batch: Prometheus refuses a
/// sample older than its series' newest, so pushing ahead would lose the older one.
pub fn plan(
    items: &[Item<'_>],
    now_ms: i64,
    max_age: Option<Duration>,
    sinks: &[SinkState],
    ledger: &Ledger,
) -> Vec<Decision> {
    let mut decisions = vec![Decision::Aged; items.len()];
    let mut groups: HashMap<GroupKey, Vec<usize>> = HashMap::new();
    for (index, item) in items.iter().enumerate() {
        if !is_aged(item.meta.time_ms, now_ms, max_age) {
            groups
                .entry(GroupKey::of(item.meta))
                .or_default()
                .push(index);
        }
    }
    for (key, mut members) in groups {
        members.sort_by_key(|&index| (items[index].meta.time_ms, items[index].sequence));
        let times: Vec<i64> = members
            .iter()
            .map(|&index| items[index].meta.time_ms)
            .collect();
        let mut needs = vec![vec![Need::Nothing; sinks.len()]; members.len()];
        for (sink, state) in sinks.iter().enumerate() {
            let delivered = ledger.delivered(sink, &key);
            let newer = |time: i64| delivered.is_none_or(|held| time > held);
            match state.coalescing {
                Coalescing::Newest => {
                    // The last member is the newest (ties go to the later publish).
                    let last = members.len() - 1;
                    if newer(times[last]) {
                        needs[last][sink] = if state.available {
                            Need::Push
                        } else {
                            Need::Later
                        };
                    }
                }
                Coalescing::Every => {
                    let mut waiting = !state.available;
                    let mut planned: Option<i64> = None;
                    for (position, &index) in members.iter().enumerate() {
                        let time = times[position];
                        if !newer(time) || planned.is_some_and(|planned| time <= planned) {
                            continue;
                        }
                        waiting = waiting
                            || state
                                .hold_above
                                .is_some_and(|top| items[index].sequence > top)
                            || ledger
                                .owed_before(sink, &key, time)
                                .iter()
                                .any(|owed| times.binary_search(owed).is_err());
                        needs[position][sink] = if waiting { Need::Later } else { Need::Push };
                        planned = Some(time);
                    }
                }
            }
        }
        for (position, index) in members.into_iter().enumerate() {
            decisions[index] = Decision::Deliver(std::mem::take(&mut needs[position]));
        }
    }
    decisions
}

/// Whether a scrape taken at `time_ms` is older than `max_age` at `now_ms`.
pub fn is_aged(time_ms: i64, now_ms: i64, max_age: Option<Duration>) -> bool {
    match max_age {
        None => false,
        Some(max_age) => {
            let limit = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
            now_ms.saturating_sub(time_ms) > limit
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receive::ledger::SinkResult;
    use Need::{Later, Nothing, Push};

    fn meta(instance: &str, time_ms: i64) -> ScrapeMeta {
        ScrapeMeta {
            publisher: "P".into(),
            job: "node".into(),
            instance: instance.into(),
            time_ms,
        }
    }

    const PUSHGATEWAY: SinkState = SinkState {
        coalescing: Coalescing::Newest,
        available: true,
        hold_above: None,
    };
    const REMOTE_WRITE: SinkState = SinkState {
        coalescing: Coalescing::Every,
        available: true,
        hold_above: None,
    };

    /// Plans `batch` (stream sequences 1, 2, …) and returns, per message, `None` for aged or
    /// the needs of each sink.
    fn decide(
        batch: &[ScrapeMeta],
        now: i64,
        max_age: Option<Duration>,
        sinks: &[SinkState],
        ledger: &Ledger,
    ) -> Vec<Option<Vec<Need>>> {
        let items: Vec<Item<'_>> = batch
            .iter()
            .enumerate()
            .map(|(index, meta)| Item {
                meta,
                sequence: index as u64 + 1,
            })
            .collect();
        plan(&items, now, max_age, sinks, ledger)
            .into_iter()
            .map(|decision| match decision {
                Decision::Aged => None,
                Decision::Deliver(needs) => Some(needs),
            })
            .collect()
    }

    #[test]
    fn the_pushgateway_gets_the_newest_of_a_group_remote_write_every_scrape() {
        let now = 100_000;
        let max_age = Some(Duration::from_secs(60));
        let batch = [
            meta("a", 90_000), // 0: older a
            meta("a", 95_000), // 1: newest a
            meta("b", 30_000), // 2: b, 70 s old: aged
            meta("b", 50_000), // 3: b, 50 s old
            meta("c", 99_000), // 4: c, but c@99 000 already delivered to both
            meta("d", 40_000), // 5: exactly 60 s: not older than max_age
        ];
        let mut ledger = Ledger::default();
        for sink in 0..2 {
            let key = GroupKey::of(&batch[4]);
            ledger.record(sink, &key, 99_000, SinkResult::Delivered, sink == 1, 0);
        }
        let decisions = decide(&batch, now, max_age, &[PUSHGATEWAY, REMOTE_WRITE], &ledger);
        let expected: [Option<Vec<Need>>; 6] = [
            Some(vec![Nothing, Push]),
            Some(vec![Push, Push]),
            None,
            Some(vec![Push, Push]),
            Some(vec![Nothing, Nothing]),
            Some(vec![Push, Push]),
        ];
        assert_eq!(decisions, expected);
    }

    #[test]
    fn remote_write_waits_for_an_owed_older_scrape_outside_the_batch() {
        let batch = [meta("a", 30), meta("a", 40)];
        let key = GroupKey::of(&batch[0]);
        let mut ledger = Ledger::default();
        ledger.record(0, &key, 10, SinkResult::Delivered, true, 0);
        ledger.record(0, &key, 20, SinkResult::Owed, true, 0);
        let decisions = decide(&batch, 50, None, &[REMOTE_WRITE], &ledger);
        assert_eq!(decisions, [Some(vec![Later]), Some(vec![Later])]);

        // Once the owed scrape is back in the batch, all go out in order.
        let batch = [meta("a", 40), meta("a", 20), meta("a", 30)];
        let decisions = decide(&batch, 50, None, &[REMOTE_WRITE], &ledger);
        assert_eq!(
            decisions,
            [Some(vec![Push]), Some(vec![Push]), Some(vec![Push])]
        );
    }

    #[test]
    fn a_backing_off_sink_or_the_crash_hold_leaves_scrapes_for_later() {
        let batch = [meta("a", 10), meta("a", 20), meta("a", 30)];
        let down = SinkState {
            available: false,
            ..PUSHGATEWAY
        };
        let held = SinkState {
            hold_above: Some(2),
            ..REMOTE_WRITE
        };
        let decisions = decide(&batch, 50, None, &[down, held], &Ledger::default());
        assert_eq!(
            decisions,
            [
                Some(vec![Nothing, Push]),
                Some(vec![Nothing, Push]),
                Some(vec![Later, Later]),
            ]
        );
    }

    #[test]
    fn no_max_age_never_ages_and_publishers_are_separate_groups() {
        let mut other = meta("a", 10);
        other.publisher = "Q".into();
        let batch = [meta("a", 0), other];
        assert_eq!(
            decide(&batch, i64::MAX, None, &[PUSHGATEWAY], &Ledger::default()),
            [Some(vec![Push]), Some(vec![Push])]
        );
    }
}
