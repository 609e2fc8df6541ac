//! Deciding what to do with one fetched batch, before any push: the pure part of the receiver.
//!
//! Given each message's routing facts, [`plan`] says which messages to push and which to ack
//! without a push: older than `max_age` (aged), or not the newest of their group — in this batch
//! or compared with what was already pushed (coalesced). Keeping this free of I/O lets the rules
//! be tested as a table.

use std::collections::HashMap;
use std::time::Duration;

use crate::model::ScrapeMeta;

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

/// What to do with one message of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Push it (the newest of its group, young enough).
    Push,
    /// Ack without a push: older than `max_age`.
    Aged,
    /// Ack without a push: a newer (or the same) scrape of the group is pushed or was pushed.
    Coalesced,
}

/// Decides for each message (by index) of a batch.
///
/// `last_pushed` holds, per group, the scrape time of the newest scrape already delivered; a
/// scrape not newer than that is coalesced, so a redelivered old message never overwrites newer
/// data in the Pushgateway.
pub fn plan(
    metas: &[&ScrapeMeta],
    now_ms: i64,
    max_age: Option<Duration>,
    last_pushed: &HashMap<GroupKey, i64>,
) -> Vec<Decision> {
    let mut decisions = vec![Decision::Coalesced; metas.len()];
    let mut newest: HashMap<GroupKey, usize> = HashMap::new();
    for (index, meta) in metas.iter().enumerate() {
        if is_aged(meta.time_ms, now_ms, max_age) {
            decisions[index] = Decision::Aged;
            continue;
        }
        let key = GroupKey::of(meta);
        if last_pushed
            .get(&key)
            .is_some_and(|&pushed| pushed >= meta.time_ms)
        {
            continue;
        }
        match newest.get_mut(&key) {
            // Ties go to the later message: it is the later publish of the same scrape time.
            Some(best) if metas[*best].time_ms > meta.time_ms => {}
            Some(best) => *best = index,
            None => {
                newest.insert(key, index);
            }
        }
    }
    for index in newest.into_values() {
        decisions[index] = Decision::Push;
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

    fn meta(instance: &str, time_ms: i64) -> ScrapeMeta {
        ScrapeMeta {
            publisher: "P".into(),
            job: "node".into(),
            instance: instance.into(),
            time_ms,
        }
    }

    #[test]
    fn newest_per_group_is_pushed_older_ones_coalesced_old_ones_aged() {
        let now = 100_000;
        let max_age = Some(Duration::from_secs(60));
        let batch = [
            meta("a", 90_000), // 0: older a
            meta("a", 95_000), // 1: newest a
            meta("b", 30_000), // 2: b, 70 s old: aged
            meta("b", 50_000), // 3: b, 50 s old: pushed
            meta("c", 99_000), // 4: c, but c@99 000 already pushed: coalesced
            meta("d", 40_000), // 5: exactly 60 s: not older than max_age
        ];
        let refs: Vec<&ScrapeMeta> = batch.iter().collect();
        let mut last_pushed = HashMap::new();
        last_pushed.insert(GroupKey::of(&batch[4]), 99_000);
        let decisions = plan(&refs, now, max_age, &last_pushed);
        use Decision::*;
        assert_eq!(decisions, [Coalesced, Push, Aged, Push, Coalesced, Push]);
    }

    #[test]
    fn no_max_age_never_ages() {
        let batch = [meta("a", 0)];
        let refs: Vec<&ScrapeMeta> = batch.iter().collect();
        assert_eq!(
            plan(&refs, i64::MAX, None, &HashMap::new()),
            [Decision::Push]
        );
    }

    #[test]
    fn publishers_are_separate_groups() {
        let mut other = meta("a", 10);
        other.publisher = "Q".into();
        let batch = [meta("a", 10), other];
        let refs: Vec<&ScrapeMeta> = batch.iter().collect();
        assert_eq!(
            plan(&refs, 20, None, &HashMap::new()),
            [Decision::Push, Decision::Push]
        );
    }
}
