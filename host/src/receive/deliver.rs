//! Pushing one group's scrapes into the sinks that need them, in scrape-time order, acking by the
//! answers, and logging sink state changes.
//!
//! **Invariant:** a message is acked here only when no sink still needs it; otherwise it is
//! nak'ed with a delay and comes back. Within a group, a sink that failed is not offered the
//! group's newer scrapes in the same batch: they would overtake the failed one.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, AckKind};

use super::batch::{GroupKey, Need};
use super::ledger::SinkResult;
use super::metrics::{MessageOutcome, Stats, METRICS};
use super::order::{Claim, SharedOrder};
use super::{timed_decode, unix_ms};
use crate::batch::ScrapeBatch;
use crate::model::ScrapeMeta;
use crate::sink::{Outcome, Sink};

/// A message on its way to the sinks, with what each sink needs of it.
pub(super) struct Pending {
    pub message: jetstream::Message,
    /// The other parts' messages of a scrape that arrived in parts (acked and nak'ed with it).
    pub parts: Vec<jetstream::Message>,
    pub meta: ScrapeMeta,
    /// Already decoded (a message without routing headers), else decoded when first pushed.
    pub scrape: Option<ScrapeBatch>,
    pub needs: Vec<Need>,
}

/// What happened to one message.
pub(super) struct Delivery {
    pub key: GroupKey,
    pub time_ms: i64,
    /// Per sink (by index): what the sink made of it.
    pub results: Vec<SinkResult>,
    /// Per pushed sink: its index and answer.
    pub answers: Vec<(usize, Outcome)>,
    /// The message did not decode (subject, error): acked and dropped.
    pub undecodable: Option<(String, String)>,
}

/// Shared by the deliveries of one batch.
pub(super) struct BatchContext<'a> {
    pub sinks: &'a [Sink],
    /// Per sink: once it asked for a retry, the rest of the batch is not pushed to it, so an
    /// unreachable sink costs one round of timeouts per batch, not one per scrape (which could
    /// outlast `ack_wait`).
    pub failed: &'a [AtomicBool],
    /// Per sink: how long a message it still needs stays away when nak'ed (the sink's remaining
    /// backoff, or a second or so); a message several sinks need waits for the longest.
    pub nak_delays: Vec<Duration>,
    pub stats: &'a Stats,
    /// Receivers sharing the consumer: the Pushgateway's push order across them.
    pub order: Option<&'a SharedOrder>,
}

/// Delivers one group's messages (sorted by scrape time), each to the sinks that need it.
pub(super) async fn deliver_group(
    context: &BatchContext<'_>,
    group: Vec<Pending>,
) -> Vec<Delivery> {
    let sinks = context.sinks;
    let mut stopped = vec![false; sinks.len()];
    let mut deliveries = Vec::with_capacity(group.len());
    for pending in group {
        let Pending {
            message,
            parts,
            meta,
            mut scrape,
            needs,
        } = pending;
        let mut results = vec![SinkResult::Nothing; sinks.len()];
        let mut targets = Vec::new();
        for (sink, need) in needs.iter().enumerate() {
            match need {
                Need::Nothing => {}
                Need::Later => results[sink] = SinkResult::Owed,
                Need::Push if stopped[sink] || context.failed[sink].load(Ordering::Relaxed) => {
                    results[sink] = SinkResult::Owed;
                }
                Need::Push => targets.push(sink),
            }
        }
        let key = GroupKey::of(&meta);
        let claims = claim(context, &key, meta.time_ms, &mut targets, &mut results).await;
        let mut answers = Vec::new();
        if !targets.is_empty() {
            let decoded = match scrape.take() {
                Some(decoded) => decoded,
                None => match timed_decode(&message) {
                    Ok(decoded) => decoded,
                    Err(error) => {
                        context.stats.record(MessageOutcome::DecodeError, &meta.job);
                        ack(&message).await;
                        deliveries.push(Delivery {
                            key: GroupKey::of(&meta),
                            time_ms: meta.time_ms,
                            results: vec![SinkResult::Nothing; sinks.len()],
                            answers: Vec::new(),
                            undecodable: Some((message.subject.to_string(), error.to_string())),
                        });
                        continue;
                    }
                },
            };
            answers = push(sinks, &targets, &decoded).await;
            if let (Some(order), Some((sink, claim))) = (context.order, claims) {
                let pushed = answers.iter().any(|(index, answer)| {
                    *index == sink && matches!(answer, Outcome::Ok | Outcome::AlreadyStored(_))
                });
                order.finish(&key, claim, meta.time_ms, pushed).await;
            }
            for (sink, answer) in &answers {
                results[*sink] = match answer {
                    Outcome::Ok | Outcome::AlreadyStored(_) => SinkResult::Delivered,
                    Outcome::Rejected { .. } => SinkResult::Refused,
                    Outcome::Retry(_) => {
                        stopped[*sink] = true;
                        context.failed[*sink].store(true, Ordering::Relaxed);
                        SinkResult::Owed
                    }
                };
            }
        }
        let outcome = if results.contains(&SinkResult::Owed) {
            let delay = results
                .iter()
                .zip(&context.nak_delays)
                .filter(|(result, _)| **result == SinkResult::Owed)
                .map(|(_, delay)| *delay)
                .max()
                .unwrap_or_default();
            nak(&message, delay).await;
            for part in &parts {
                nak(part, delay).await;
            }
            MessageOutcome::Retried
        } else {
            ack(&message).await;
            for part in &parts {
                ack(part).await;
            }
            if results.contains(&SinkResult::Refused) {
                MessageOutcome::Rejected
            } else if results.contains(&SinkResult::Delivered) {
                let age_ms = unix_ms(SystemTime::now()) - meta.time_ms;
                METRICS.pushed_age(age_ms as f64 / 1000.0);
                MessageOutcome::Pushed
            } else {
                MessageOutcome::Coalesced
            }
        };
        context.stats.record(outcome, &meta.job);
        deliveries.push(Delivery {
            key: GroupKey::of(&meta),
            time_ms: meta.time_ms,
            results,
            answers,
            undecodable: None,
        });
    }
    deliveries
}

/// With receivers sharing the consumer: claims the Pushgateway push of this scrape, taking the
/// Pushgateway out of `targets` when it must not be pushed now (superseded: nothing owed; another
/// receiver pushing the group, or the bucket unreachable: owed, the message comes back).
async fn claim(
    context: &BatchContext<'_>,
    key: &GroupKey,
    time_ms: i64,
    targets: &mut Vec<usize>,
    results: &mut [SinkResult],
) -> Option<(usize, Claim)> {
    let order = context.order?;
    let position = targets
        .iter()
        .position(|&sink| matches!(context.sinks[sink], Sink::Pushgateway(_)))?;
    let sink = targets[position];
    let claim = match order.claim(key, time_ms).await {
        Ok(claim) => claim,
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "push order unknown; retrying later");
            Claim::Busy
        }
    };
    match claim {
        Claim::Go { .. } => Some((sink, claim)),
        Claim::Superseded | Claim::Busy => {
            targets.remove(position);
            results[sink] = if claim == Claim::Busy {
                SinkResult::Owed
            } else {
                SinkResult::Nothing
            };
            None
        }
    }
}

/// Pushes one scrape into the `targets` sinks at once.
async fn push(sinks: &[Sink], targets: &[usize], scrape: &ScrapeBatch) -> Vec<(usize, Outcome)> {
    futures::future::join_all(targets.iter().map(|&index| {
        let sink = &sinks[index];
        async move {
            let started = Instant::now();
            let answer = sink.push(scrape).await;
            METRICS.push(sink.name(), answer.label(), started.elapsed().as_secs_f64());
            (index, answer)
        }
    }))
    .await
}

/// Which sinks fail and which groups they refuse, so each state change is logged once.
#[derive(Debug, Default)]
pub(super) struct SinkHealth {
    /// Sinks currently failing transiently: an outage is logged when it starts and when it ends.
    failing_sinks: HashSet<String>,
    /// (sink, group) whose last push was refused: a scrape refused every minute is logged once.
    rejected_groups: HashSet<(String, GroupKey)>,
}

impl SinkHealth {
    /// Logs the state changes the answers of one batch show; returns, per sink, whether it
    /// asked for a retry (`Some(true)`), answered (`Some(false)`) or was not tried (`None`).
    pub(super) fn account(&mut self, sinks: &[Sink], deliveries: &[Delivery]) -> Vec<Option<bool>> {
        let mut failing_now: HashMap<usize, &str> = HashMap::new();
        let mut succeeded: HashSet<usize> = HashSet::new();
        for delivery in deliveries {
            for (sink, answer) in &delivery.answers {
                let name = sinks[*sink].name();
                match answer {
                    Outcome::Ok => {
                        succeeded.insert(*sink);
                        self.rejected_groups
                            .remove(&(name.to_string(), delivery.key.clone()));
                    }
                    Outcome::AlreadyStored(body) => {
                        succeeded.insert(*sink);
                        tracing::debug!(
                            sink = %name,
                            job = %delivery.key.job,
                            instance = %delivery.key.instance,
                            answer = %body,
                            "sink already holds a re-sent scrape; acked"
                        );
                    }
                    Outcome::Retry(error) => {
                        failing_now.insert(*sink, error.as_str());
                    }
                    Outcome::Rejected { status, body } => {
                        succeeded.insert(*sink);
                        if self
                            .rejected_groups
                            .insert((name.to_string(), delivery.key.clone()))
                        {
                            tracing::warn!(
                                sink = %name,
                                job = %delivery.key.job,
                                instance = %delivery.key.instance,
                                publisher = %delivery.key.publisher,
                                status,
                                answer = %body,
                                "sink refused a scrape; acked and dropped (logged once per group)"
                            );
                        }
                    }
                }
            }
        }
        for (sink, error) in &failing_now {
            let name = sinks[*sink].name();
            if self.failing_sinks.insert(name.to_string()) {
                tracing::warn!(sink = %name, %error, "pushes failing; retrying with backoff");
            }
        }
        for &sink in &succeeded {
            let name = sinks[sink].name();
            if !failing_now.contains_key(&sink) && self.failing_sinks.remove(name) {
                tracing::info!(sink = %name, "pushes succeed again");
            }
        }
        if self.rejected_groups.len() > 100_000 {
            self.rejected_groups.clear();
        }
        (0..sinks.len())
            .map(|sink| {
                if failing_now.contains_key(&sink) {
                    Some(true)
                } else if succeeded.contains(&sink) {
                    Some(false)
                } else {
                    None
                }
            })
            .collect()
    }
}

pub(super) async fn nak(message: &jetstream::Message, delay: Duration) {
    if let Err(error) = message.ack_with(AckKind::Nak(Some(delay))).await {
        tracing::debug!(%error, "nak failed; the message is redelivered after ack_wait");
    }
}

pub(super) async fn ack(message: &jetstream::Message) {
    if let Err(error) = message.ack().await {
        // The message comes back after ack_wait; the ledger makes the redelivery harmless.
        tracing::debug!(%error, "ack failed");
    }
}

/// One sink's retry clock: after a failure the sink is left alone for a backoff delay, while the
/// other sinks carry on.
#[derive(Debug, Default)]
pub(super) struct SinkClock {
    backoff: crate::nats::Backoff,
    retry_at: Option<Instant>,
}

impl SinkClock {
    /// How long the sink is still left alone (zero: it may be tried now).
    pub(super) fn remaining(&self, now: Instant) -> Duration {
        self.retry_at
            .map(|at| at.saturating_duration_since(now))
            .unwrap_or_default()
    }

    /// Records one batch's answers of this sink: `Some(true)` it asked for a retry,
    /// `Some(false)` it answered, `None` it was not tried.
    pub(super) fn record(&mut self, failed: Option<bool>, now: Instant) {
        match failed {
            Some(true) => self.retry_at = Some(now + self.backoff.next_delay()),
            Some(false) => {
                self.backoff.reset();
                self.retry_at = None;
            }
            None => {}
        }
    }
}
