//! Pushing one scrape into every sink, acking by the answers, and logging sink state changes.
//!
//! **Invariant:** a message is acked here only when no sink asked for a retry; otherwise it is
//! nak'ed with a delay and comes back.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, AckKind};

use super::metrics::{MessageOutcome, Stats, METRICS};
use super::{unix_ms, GroupKey};
use crate::model::Scrape;
use crate::sink::{Outcome, Sink};

/// What happened to one pushed message.
pub(super) struct Delivery {
    key: GroupKey,
    time_ms: i64,
    outcome: MessageOutcome,
    /// Per sink: its name and answer.
    answers: Vec<(String, Outcome)>,
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
    /// Records the deliveries of one batch, logs state changes; returns whether to back off.
    pub(super) fn account(
        &mut self,
        deliveries: Vec<Delivery>,
        last_pushed: &mut HashMap<GroupKey, i64>,
    ) -> bool {
        let mut retry = false;
        let mut failing_now: HashMap<String, String> = HashMap::new();
        let mut succeeded: HashSet<String> = HashSet::new();
        for delivery in deliveries {
            for (sink, answer) in &delivery.answers {
                match answer {
                    Outcome::Ok => {
                        succeeded.insert(sink.clone());
                        self.rejected_groups
                            .remove(&(sink.clone(), delivery.key.clone()));
                    }
                    Outcome::Retry(error) => {
                        failing_now.insert(sink.clone(), error.clone());
                    }
                    Outcome::Rejected { status, body } => {
                        succeeded.insert(sink.clone());
                        if self
                            .rejected_groups
                            .insert((sink.clone(), delivery.key.clone()))
                        {
                            tracing::warn!(
                                sink = %sink,
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
            match delivery.outcome {
                MessageOutcome::Pushed => {
                    let newest = last_pushed.entry(delivery.key).or_insert(delivery.time_ms);
                    *newest = (*newest).max(delivery.time_ms);
                }
                MessageOutcome::Retried => retry = true,
                _ => {}
            }
        }
        for (sink, error) in &failing_now {
            if self.failing_sinks.insert(sink.clone()) {
                tracing::warn!(sink = %sink, %error, "pushes failing; retrying with backoff");
            }
        }
        for sink in succeeded {
            if !failing_now.contains_key(&sink) && self.failing_sinks.remove(&sink) {
                tracing::info!(sink = %sink, "pushes succeed again");
            }
        }
        if self.rejected_groups.len() > 100_000 {
            self.rejected_groups.clear();
        }
        retry
    }
}

/// Pushes one scrape into every sink at once and acks or naks its message.
///
/// `sink_failed` is shared by the deliveries of one batch: once a sink asked for a retry, the
/// remaining scrapes of the batch are nak'ed without a push, so an unreachable sink costs one
/// round of timeouts per batch, not one per scrape (which could outlast `ack_wait`).
pub(super) async fn deliver(
    sinks: &[Sink],
    message: jetstream::Message,
    scrape: Scrape,
    nak_delay: Duration,
    stats: &Stats,
    sink_failed: &AtomicBool,
) -> Delivery {
    if sink_failed.load(Ordering::Relaxed) {
        nak(&message, nak_delay).await;
        stats.record(MessageOutcome::Retried, &scrape.meta.job);
        return Delivery {
            key: GroupKey::of(&scrape.meta),
            time_ms: scrape.meta.time_ms,
            outcome: MessageOutcome::Retried,
            answers: Vec::new(),
        };
    }
    let answers = futures::future::join_all(sinks.iter().map(|sink| {
        let scrape = &scrape;
        async move {
            let started = Instant::now();
            let answer = sink.push(scrape).await;
            METRICS.push(sink.name(), answer.label(), started.elapsed().as_secs_f64());
            (sink.name().to_string(), answer)
        }
    }))
    .await;
    let outcome = if answers
        .iter()
        .any(|(_, answer)| matches!(answer, Outcome::Retry(_)))
    {
        sink_failed.store(true, Ordering::Relaxed);
        nak(&message, nak_delay).await;
        MessageOutcome::Retried
    } else {
        ack(&message).await;
        if answers
            .iter()
            .any(|(_, answer)| matches!(answer, Outcome::Rejected { .. }))
        {
            MessageOutcome::Rejected
        } else {
            let age_ms = unix_ms(SystemTime::now()) - scrape.meta.time_ms;
            METRICS.pushed_age(age_ms as f64 / 1000.0);
            MessageOutcome::Pushed
        }
    };
    stats.record(outcome, &scrape.meta.job);
    Delivery {
        key: GroupKey::of(&scrape.meta),
        time_ms: scrape.meta.time_ms,
        outcome,
        answers,
    }
}

async fn nak(message: &jetstream::Message, delay: Duration) {
    if let Err(error) = message.ack_with(AckKind::Nak(Some(delay))).await {
        tracing::debug!(%error, "nak failed; the message is redelivered after ack_wait");
    }
}

pub(super) async fn ack(message: &jetstream::Message) {
    if let Err(error) = message.ack().await {
        // The message comes back after ack_wait; coalescing makes the redelivery harmless.
        tracing::debug!(%error, "ack failed");
    }
}
