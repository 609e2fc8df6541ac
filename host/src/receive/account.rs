//! The receiver's bookkeeping after a batch: the ledger, the sinks' clocks and health, the
//! status page, parts given up, undecodable messages logged once per subject.

use std::time::{Duration, Instant};

use super::deliver::{ack, nak, Delivery};
use super::metrics::METRICS;
use super::{parts, MessageOutcome, Receiver};
use crate::sink::{Coalescing, Outcome};
use crate::wire;

impl Receiver {
    /// Hands back parts that waited too long for the rest of their scrape; gives up scrapes
    /// that stayed in pieces past `parts::PART_TIMEOUT` (acked, counted `partial`, logged).
    pub(super) async fn sweep_parts(&mut self) {
        let swept = self.assembler.sweep(Instant::now());
        for message in &swept.nak {
            nak(message, Duration::ZERO).await;
        }
        for (scrape_id, held, count, messages) in swept.given_up {
            tracing::warn!(%scrape_id, held, count,
                "a scrape that arrived in parts is incomplete after {:?}: its {held} parts of \
                 {count} are dropped, the scrape is not pushed",
                parts::PART_TIMEOUT);
            for message in &messages {
                let job = wire::peek_meta(message.headers.as_ref())
                    .map(|meta| meta.job)
                    .unwrap_or_default();
                self.settings.stats.record(MessageOutcome::Partial, &job);
                ack(message).await;
            }
        }
    }

    /// Books one batch's deliveries: the ledger, the sinks' clocks, the logs.
    pub(super) fn account(&mut self, deliveries: Vec<Delivery>, now_ms: i64) {
        let sinks = &self.settings.sinks;
        for delivery in &deliveries {
            for (sink, result) in delivery.results.iter().enumerate() {
                let ordered = sinks[sink].coalescing() == Coalescing::Every;
                self.ledger.record(
                    sink,
                    &delivery.key,
                    delivery.time_ms,
                    *result,
                    ordered,
                    now_ms,
                );
            }
        }
        let max_age_ms = self
            .settings
            .max_age
            .map(|max_age| i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
        // A nak'ed message is back within seconds, an unacked one within ack_wait.
        let forget_after_ms = i64::try_from((self.settings.ack_wait * 2).as_millis())
            .unwrap_or(i64::MAX)
            .saturating_add(30_000);
        self.ledger.prune(now_ms, max_age_ms, forget_after_ms);
        let status = &self.settings.status;
        let pushed_ms = crate::status::now_ms();
        for delivery in &deliveries {
            let group = [
                delivery.key.job.as_str(),
                delivery.key.instance.as_str(),
                delivery.key.publisher.as_str(),
            ];
            for (sink, outcome) in &delivery.answers {
                match outcome {
                    Outcome::Ok | Outcome::AlreadyStored(_) => {
                        status.pushed(*sink, group, delivery.time_ms, pushed_ms)
                    }
                    Outcome::Rejected { status: code, body } => status.push_failed(
                        *sink,
                        &format!("refused with HTTP {code}: {body}"),
                        pushed_ms,
                    ),
                    Outcome::Retry(error) => status.push_failed(*sink, error, pushed_ms),
                }
            }
        }
        let answered = self.health.account(sinks, &deliveries);
        let now = Instant::now();
        for (sink, (clock, answered)) in self.clocks.iter_mut().zip(answered).enumerate() {
            clock.record(answered, now);
            METRICS.backlog(sinks[sink].name(), self.ledger.owed_count(sink));
        }
        for delivery in deliveries {
            if let Some((subject, error)) = delivery.undecodable {
                self.undecodable(&subject, &error);
            }
        }
    }

    pub(super) fn undecodable(&mut self, subject: &str, error: &str) {
        if self.undecodable_subjects.len() < 10_000
            && self.undecodable_subjects.insert(subject.to_string())
        {
            tracing::warn!(
                %subject,
                %error,
                "undecodable message acked and dropped (logged once per subject)"
            );
        } else {
            tracing::debug!(%subject, %error, "undecodable message acked and dropped");
        }
    }
}
