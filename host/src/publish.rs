//! Publishing: encode each filtered scrape and publish it to JetStream, asynchronously, with a
//! bounded number of acks in flight and an outage buffer bounded in bytes.
//!
//! **Invariant:** a scrape leaves the outage buffer only when JetStream acknowledged it, or when
//! the buffer overflows (oldest first, counted in `promrelay_outage_buffer_dropped`). A failed
//! publish goes back to the front of the buffer and is retried after a backoff; its
//! `Nats-Msg-Id` lets JetStream drop the duplicate if the first attempt did land.
//! With `spool_dir` the scrapes wait in the durable [`Spool`] instead (same bound, same
//! order, kept across restarts); `pending` hides which.
//!
//! At shutdown the publisher keeps reading its input until the filter stage closes it (so the
//! scrapes inside the filter stage are published too) or the shutdown's deadline; whatever is
//! not acknowledged by then is lost, or stays in the spool for the next start.
//! This module never scrapes, parses or filters.

mod metrics;
mod pending;

pub use metrics::register_metrics;
use metrics::{count, METRICS};

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_nats::jetstream::{context::PublishErrorKind, message::PublishMessage};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;

use crate::batch::ScrapeBatch;
use crate::config::{SpoolConfig, SpoolSync};
use crate::nats::Backoff;
use crate::shutdown::Shutdown;
use crate::spool::Spool;
use crate::wire::{self, WireMessage};
use pending::Pending;

/// What the publisher needs from the config.
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    pub identity: String,
    pub urls: Vec<String>,
    /// TLS and credentials of the connection (`poller_stream`'s).
    pub security: crate::nats::Security,
    pub stream: wire::StreamSettings,
    /// Bytes of encoded scrapes kept while NATS is unreachable.
    pub outage_buffer: u64,
    /// Publishes awaiting their ack at once.
    pub max_in_flight: usize,
    /// How long a shutdown whose [`Shutdown`] sets no deadline waits for the buffer to drain.
    pub flush_timeout: Duration,
    /// What the status page shows of this publisher (updated per ack, error and scrape).
    pub status: crate::status::PublisherStatus,
    /// `spool_dir`: keep the scrapes on disk rather than in memory.
    pub spool: Option<SpoolConfig>,
}

/// Encoded scrapes not yet acknowledged by JetStream, bounded in bytes: those waiting to be sent
/// and those sent whose ack has not come back. While NATS is down most of them are in flight
/// (the client queues a publish and its ack times out later), so both count towards the limit
/// and the gauges; only waiting ones can be dropped to make room, the oldest first.
#[derive(Debug)]
pub struct OutageBuffer {
    queue: VecDeque<WireMessage>,
    /// Bytes of `queue`.
    queued_bytes: u64,
    /// Scrapes handed out by [`take`](Self::take) and not yet [`settled`](Self::settled) or
    /// [`retried`](Self::retry).
    in_flight: usize,
    in_flight_bytes: u64,
    limit: u64,
}

impl OutageBuffer {
    pub fn new(limit: u64) -> OutageBuffer {
        OutageBuffer {
            queue: VecDeque::new(),
            queued_bytes: 0,
            in_flight: 0,
            in_flight_bytes: 0,
            limit,
        }
    }

    /// What one scrape costs: its payload plus room for subject, headers and bookkeeping.
    fn size(message: &WireMessage) -> u64 {
        message.payload.len() as u64 + 256
    }

    /// Appends a new scrape; returns how many old scrapes were dropped to make room.
    pub fn push_back(&mut self, message: WireMessage) -> usize {
        self.queued_bytes += Self::size(&message);
        self.queue.push_back(message);
        let mut dropped = 0;
        while self.bytes() > self.limit && self.queue.len() > 1 {
            if let Some(old) = self.queue.pop_front() {
                self.queued_bytes -= Self::size(&old);
                dropped += 1;
            }
        }
        self.publish_gauges();
        dropped
    }

    /// Takes the oldest waiting scrape to send it; it stays counted until [`settled`]
    /// (acked, or dropped for good) or given back with [`retry`].
    ///
    /// [`settled`]: Self::settled
    /// [`retry`]: Self::retry
    pub fn take(&mut self) -> Option<WireMessage> {
        let message = self.queue.pop_front()?;
        let size = Self::size(&message);
        self.queued_bytes -= size;
        self.in_flight += 1;
        self.in_flight_bytes += size;
        Some(message)
    }

    /// Gives back a scrape whose publish failed: it goes to the front, to be retried first.
    pub fn retry(&mut self, message: WireMessage) {
        self.release(&message);
        self.queued_bytes += Self::size(&message);
        self.queue.push_front(message);
        self.publish_gauges();
    }

    /// Forgets a taken scrape: JetStream acked it, or it can never be published.
    pub fn settled(&mut self, message: &WireMessage) {
        self.release(message);
        self.publish_gauges();
    }

    fn release(&mut self, message: &WireMessage) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(Self::size(message));
    }

    /// Scrapes waiting to be sent (not those in flight).
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    /// Scrapes not yet acknowledged: waiting and in flight.
    pub fn len(&self) -> usize {
        self.queue.len() + self.in_flight
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of scrapes not yet acknowledged: waiting and in flight.
    pub fn bytes(&self) -> u64 {
        self.queued_bytes + self.in_flight_bytes
    }

    fn publish_gauges(&self) {
        METRICS.buffer_bytes.set(self.bytes() as i64);
        METRICS.buffer_scrapes.set(self.len() as i64);
    }
}

/// A running `wire::ensure_stream`.
type StreamCheck = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

type AckFuture =
    Pin<Box<dyn Future<Output = (u64, WireMessage, Instant, Result<(), String>)> + Send>>;

/// Publishes scrapes from `input` until `shutdown` begins, then goes on until `input` is closed
/// (the stages before it drained) and the buffer is empty, or until the shutdown's deadline (or
/// [`PublisherSettings::flush_timeout`] when it set none). Never returns an error because NATS is
/// down: it buffers and retries. Fails at start when `spool_dir` cannot be used.
pub async fn run(
    settings: PublisherSettings,
    mut input: mpsc::Receiver<ScrapeBatch>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    register_metrics();
    let status = settings.status.clone();
    status.configure(
        &settings.stream.name,
        &settings.stream.topic,
        &settings.urls,
        settings.outage_buffer,
    );
    // Opened before connecting: an unusable spool_dir fails the start at once, with its name.
    let mut buffer = match &settings.spool {
        Some(spool) => {
            Pending::Disk(Spool::open(&spool.dir, settings.outage_buffer, spool.sync)?.0)
        }
        None => Pending::Memory(OutageBuffer::new(settings.outage_buffer)),
    };
    let sync_every = match settings.spool.as_ref().map(|spool| spool.sync) {
        Some(SpoolSync::Interval(every)) => Some(every),
        _ => None,
    };
    let mut sync_tick = tokio::time::interval(sync_every.unwrap_or(Duration::from_secs(3600)));
    sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let client = crate::nats::connect(
        &settings.urls,
        "poller",
        &settings.identity,
        &settings.security,
    )
    .await?;
    status.connected(&client);
    let sizing = client.clone();
    let max_payload = move || match sizing.server_info().max_payload {
        0 => DEFAULT_MAX_PAYLOAD,
        size => size,
    };
    let js = wire::stream::context(client, &settings.stream);
    let mut in_flight: FuturesUnordered<AckFuture> = FuturesUnordered::new();
    let mut backoff = Backoff::default();
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut stream_ready = false;
    // Set once the shutdown began: the buffer must be empty by then.
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    let mut input_open = true;
    // The stream check in progress, if any.
    let mut checking: Option<StreamCheck> = None;
    // The previous scrape of each target, for staleness markers.
    let mut staleness = crate::stale::Staleness::default();

    loop {
        let now = tokio::time::Instant::now();
        let may_send = retry_at.is_none_or(|t| now >= t);
        if may_send && !stream_ready && checking.is_none() {
            // Polled in the select below rather than awaited here: while NATS is down this takes
            // a request timeout, and scrapes must still reach the buffer (the spool) meanwhile.
            let (js, stream) = (js.clone(), settings.stream.clone());
            checking = Some(Box::pin(async move {
                wire::ensure_stream(&js, &stream).await.map(|_| ())
            }));
        }
        if stream_ready && retry_at.is_none() {
            while in_flight.len() < settings.max_in_flight {
                let Some((ticket, message)) = buffer.take() else {
                    break;
                };
                let publish = PublishMessage::build()
                    .payload(message.payload.clone())
                    .headers(message.headers.clone())
                    .message_id(&message.msg_id);
                let sent = Instant::now();
                match js.send_publish(message.subject.clone(), publish).await {
                    Ok(ack) => in_flight.push(Box::pin(async move {
                        let result = ack.await.map(|_| ()).map_err(|e| format!("{e}"));
                        (ticket, message, sent, result)
                    })),
                    Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                        buffer.settled(ticket, &message);
                        count("too_large");
                        tracing::error!(subject = %message.subject,
                            "scrape dropped: larger than the server's max payload: {e}");
                    }
                    Err(e) => {
                        buffer.retry(ticket, message);
                        note_failure(&mut backoff, &mut retry_at, &e.to_string(), &status);
                        break;
                    }
                }
            }
        }

        status.buffer(buffer.len(), buffer.bytes());
        if !input_open && buffer.is_empty() {
            break;
        }
        if drain_deadline.is_some_and(|deadline| tokio::time::Instant::now() >= deadline) {
            if let Pending::Disk(_) = buffer {
                // Already filtered and waiting for this loop: into the spool with the rest.
                while let Ok(scrape) = input.try_recv() {
                    enqueue(
                        &mut buffer,
                        &mut staleness,
                        scrape,
                        &settings.stream,
                        max_payload(),
                        &status,
                    );
                }
            }
            if input_open {
                tracing::warn!(
                    "shutdown: the deadline came before the filter stage finished; the scrapes \
                     still inside it are lost"
                );
            }
            break;
        }

        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            _ = shutdown.started(), if drain_deadline.is_none() => {
                drain_deadline = Some(shutdown.deadline().unwrap_or_else(|| {
                    tokio::time::Instant::now() + settings.flush_timeout
                }));
                // The input stays open: the filter stage closes it once the scrapes inside it
                // are through (it stopped taking new ones when the scrapers stopped).
            }
            _ = sync_tick.tick(), if sync_every.is_some() => buffer.sync(),
            checked = async {
                match checking.as_mut() {
                    Some(check) => check.await,
                    None => std::future::pending().await,
                }
            }, if checking.is_some() => {
                checking = None;
                match checked {
                    Ok(()) => {
                        if backoff.failing() {
                            tracing::info!(stream = %settings.stream.name, "JetStream stream ready");
                        }
                        stream_ready = true;
                        backoff.reset();
                        retry_at = None;
                    }
                    Err(e) => {
                        if !backoff.failing() {
                            tracing::warn!(stream = %settings.stream.name,
                                "JetStream stream not ready, buffering scrapes: {e:#}");
                        }
                        retry_at = Some(tokio::time::Instant::now() + backoff.next_delay());
                    }
                }
            }
            received = input.recv(), if input_open => match received {
                Some(scrape) => enqueue(&mut buffer, &mut staleness, scrape, &settings.stream, max_payload(), &status),
                None => input_open = false,
            },
            Some((ticket, message, sent, result)) = in_flight.next(), if !in_flight.is_empty() => {
                match result {
                    Ok(()) => {
                        buffer.settled(ticket, &message);
                        count("ok");
                        status.acked(crate::status::now_ms());
                        METRICS.latency.observe(sent.elapsed().as_secs_f64());
                        if backoff.failing() {
                            tracing::info!("publishing to JetStream again");
                        }
                        backoff.reset();
                    }
                    Err(e) => {
                        buffer.retry(ticket, message);
                        note_failure(&mut backoff, &mut retry_at, &e, &status);
                        if e.contains("no stream") || e.contains("no responders") {
                            stream_ready = false;
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(retry_at.unwrap_or(far)), if retry_at.is_some() => {
                retry_at = None;
            }
            _ = tokio::time::sleep_until(drain_deadline.unwrap_or(far)), if drain_deadline.is_some() => {}
        }
    }
    buffer.close();
    Ok(())
}

/// nats-server's default `max_payload`, used until the server has said its own.
const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// Encodes a scrape (as parts when it is larger than the server takes in one message) into the
/// outage buffer.
fn enqueue(
    buffer: &mut Pending,
    staleness: &mut crate::stale::Staleness,
    mut scrape: ScrapeBatch,
    stream: &wire::StreamSettings,
    max_payload: usize,
    status: &crate::status::PublisherStatus,
) {
    let started = Instant::now();
    let markers = staleness.mark(&mut scrape);
    if markers > 0 {
        METRICS.stale.inc_by(markers as u64);
    }
    let encoded = wire::encode_batch(&scrape, &stream.topic, stream.format, max_payload);
    match encoded {
        Ok(messages) => {
            METRICS
                .encode_seconds
                .observe(started.elapsed().as_secs_f64());
            if messages.len() > 1 {
                METRICS.split.inc();
                tracing::debug!(job = %scrape.meta.job, instance = %scrape.meta.instance,
                    parts = messages.len(), max_payload, "scrape larger than the max payload: sent in parts");
            }
            for message in messages {
                let dropped = buffer.push(message);
                if dropped > 0 {
                    METRICS.buffer_dropped.inc_by(dropped as u64);
                    status.dropped(dropped as u64);
                    tracing::debug!(dropped, "outage buffer full: dropped the oldest scrapes");
                }
            }
        }
        Err(e) => {
            count("encode_error");
            tracing::error!(job = %scrape.meta.job, instance = %scrape.meta.instance,
                "encoding a scrape failed: {e:#}");
        }
    }
}

fn note_failure(
    backoff: &mut Backoff,
    retry_at: &mut Option<tokio::time::Instant>,
    error: &str,
    status: &crate::status::PublisherStatus,
) {
    count("error");
    status.failed(error, crate::status::now_ms());
    if !backoff.failing() {
        tracing::warn!("publishing to JetStream failed, buffering and retrying: {error}");
    }
    *retry_at = Some(tokio::time::Instant::now() + backoff.next_delay());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, bytes: usize) -> WireMessage {
        WireMessage {
            subject: "prometheus.site.job".into(),
            headers: async_nats::HeaderMap::new(),
            payload: bytes::Bytes::from(vec![0u8; bytes]),
            msg_id: id.into(),
        }
    }

    /// Takes every waiting scrape and settles it, as acks would: their ids in order.
    fn ids(buffer: &mut OutageBuffer) -> Vec<String> {
        std::iter::from_fn(|| {
            let message = buffer.take()?;
            buffer.settled(&message);
            Some(message.msg_id)
        })
        .collect()
    }

    #[test]
    fn a_full_outage_buffer_drops_the_oldest_scrapes_first() {
        // Each message costs its payload plus 256 bytes of bookkeeping: 1256 bytes here.
        let mut buffer = OutageBuffer::new(3 * 1256);
        assert_eq!(buffer.push_back(message("a", 1000)), 0);
        assert_eq!(buffer.push_back(message("b", 1000)), 0);
        assert_eq!(buffer.push_back(message("c", 1000)), 0);
        assert_eq!(buffer.push_back(message("d", 1000)), 1);
        assert_eq!(buffer.bytes(), 3 * 1256);
        assert_eq!(ids(&mut buffer), ["b", "c", "d"]);
        assert_eq!(buffer.bytes(), 0);
    }

    #[test]
    fn a_failed_publish_goes_back_to_the_front_and_is_sent_first() {
        let mut buffer = OutageBuffer::new(1 << 20);
        buffer.push_back(message("a", 10));
        buffer.push_back(message("b", 10));
        let failed = buffer.take().expect("a");
        buffer.retry(failed);
        assert_eq!(ids(&mut buffer), ["a", "b"]);
        assert!(buffer.is_empty());
    }

    #[test]
    fn scrapes_in_flight_count_until_acked_and_against_the_limit() {
        let mut buffer = OutageBuffer::new(2 * 1256);
        buffer.push_back(message("a", 1000));
        buffer.push_back(message("b", 1000));
        let a = buffer.take().expect("a");
        let b = buffer.take().expect("b");
        // Sent, not acked: still pending, in bytes and in number.
        assert_eq!(
            (buffer.len(), buffer.waiting(), buffer.bytes()),
            (2, 0, 2 * 1256)
        );
        buffer.retry(b);
        assert_eq!(
            (buffer.len(), buffer.waiting(), buffer.bytes()),
            (2, 1, 2 * 1256)
        );
        // Full with one in flight: the new scrape pushes out the oldest waiting one, never the
        // one in flight.
        assert_eq!(buffer.push_back(message("c", 1000)), 1);
        assert_eq!((buffer.len(), buffer.bytes()), (2, 2 * 1256));
        buffer.settled(&a);
        assert_eq!(ids(&mut buffer), ["c"]);
        assert_eq!((buffer.len(), buffer.bytes()), (0, 0));
    }

    #[test]
    fn a_single_scrape_larger_than_the_buffer_is_kept_rather_than_lost() {
        let mut buffer = OutageBuffer::new(100);
        assert_eq!(buffer.push_back(message("big", 1000)), 0);
        assert_eq!(buffer.push_back(message("next", 1000)), 1);
        assert_eq!(ids(&mut buffer), ["next"]);
    }
}
