//! The crash hold: a restarted receiver keeps ordered sinks (remote_write) from overtaking the
//! messages its predecessor left unacknowledged.
//!
//! A receiver killed mid-batch leaves messages delivered to it but never acked; JetStream hands
//! them out again only after `ack_wait`. A fresh receiver meanwhile gets the newer messages at
//! once, and pushing those first would make Prometheus refuse the older ones as out of order:
//! lost. So when the consumer has unacked messages at start, remote_write sinks take only
//! messages up to the consumer's last delivered stream sequence until the ack floor reaches it
//! (every message of the predecessor is settled) or `ack_wait` plus a margin has passed. The
//! Pushgateway is not held: it only wants the newest scrape.
//!
//! **Invariant:** the hold only ever ends; it is decided once per process, from the consumer's
//! state before this receiver fetched anything.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer;

/// An active hold.
#[derive(Debug, Clone)]
pub(super) struct CrashHold {
    /// The last stream sequence delivered before this receiver started.
    top: u64,
    /// When the hold ends whatever the consumer says.
    until: Instant,
}

impl CrashHold {
    /// A hold if the consumer has messages delivered and not acked; `None` otherwise.
    pub(super) fn from_info(info: &consumer::Info, ack_wait: Duration) -> Option<CrashHold> {
        if info.num_ack_pending == 0 {
            return None;
        }
        // Redelivery happens on a fetch after ack_wait; give it a few fetches' slack.
        let until = Instant::now() + ack_wait + Duration::from_secs(5);
        tracing::info!(
            unacked = info.num_ack_pending,
            up_to_sequence = info.delivered.stream_sequence,
            wait = ?ack_wait,
            "messages a previous receiver left unacknowledged come back after ack_wait; \
             remote_write sinks wait for them so every scrape arrives in order"
        );
        Some(CrashHold {
            top: info.delivered.stream_sequence,
            until,
        })
    }

    /// Ordered sinks take messages up to this stream sequence only.
    pub(super) fn top(&self) -> u64 {
        self.top
    }

    /// Whether the hold is over: the deadline passed, or the consumer's ack floor reached `top`.
    pub(super) async fn over(&self, consumer: &consumer::Consumer<consumer::pull::Config>) -> bool {
        if Instant::now() >= self.until {
            tracing::info!("crash hold over: ack_wait passed");
            return true;
        }
        match consumer.get_info().await {
            Ok(info) if info.ack_floor.stream_sequence >= self.top => {
                tracing::info!(
                    "crash hold over: every message of the previous receiver is settled"
                );
                true
            }
            Ok(_) => false,
            Err(error) => {
                tracing::debug!(%error, "reading the consumer's ack floor failed; still holding");
                false
            }
        }
    }
}
