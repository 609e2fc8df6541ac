//! The receiver: a durable JetStream pull consumer that pushes each scrape into the sinks.
//!
//! Per fetched batch: decode the routing facts of every message; ack and count those older than
//! `max_age` (aged) and those superseded by a newer scrape of the same (job, instance, publisher)
//! group (coalesced); push the rest into every sink, several at once; ack a message only when
//! every sink accepted it or one refused it for good (4xx, logged with the sink's answer). A
//! transient failure (5xx, 429, timeout, connection error) is nak'ed with a delay and the
//! receiver backs off, so the message comes back until it is delivered or older than `max_age`:
//! a sink outage loses nothing younger than `max_age`.
//!
//! **Invariants:**
//! - A message is acked only after it reached every sink, was refused for good, was superseded
//!   by a newer scrape of its group, or is older than `max_age`.
//! - An older scrape never overwrites a newer one in a sink: per group the receiver remembers the
//!   newest scrape time delivered and coalesces anything not newer (redeliveries included).
//! - A paused receiver fetches nothing and acks nothing; the stream keeps the messages.
//!
//! NATS outages are the client's business (it reconnects forever, see `crate::nats`); this loop
//! only re-creates its stream and consumer handles with backoff when requests fail, logging once
//! per state change.

mod batch;
mod deliver;
mod metrics;

pub use batch::{is_aged, plan, Decision, GroupKey};
pub use metrics::{MessageOutcome, Stats};

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::model::{Scrape, ScrapeMeta};
use crate::nats::Backoff;
use crate::sink::Sink;
use crate::wire::{self, StreamSettings};
use deliver::{ack, deliver, Delivery, SinkHealth};
use metrics::METRICS;

/// `true` while the receiver is paused (the circuit breaker's `pause`).
pub type PauseFlag = watch::Receiver<bool>;

/// Everything [`run`] needs; build it with [`ReceiverSettings::from_config`] or
/// [`ReceiverSettings::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct ReceiverSettings {
    /// NATS server URLs.
    pub urls: Vec<String>,
    /// Names the connection on the server (`promrelay-receiver-<identity>`).
    pub identity: String,
    /// The stream to consume (created when missing).
    pub stream: StreamSettings,
    /// Durable consumer name.
    pub consumer: String,
    /// The consumer name was generated (no `client_id`): the server deletes the consumer after an
    /// hour without this receiver.
    pub consumer_generated: bool,
    /// Scrapes older than this are acked without a push; `None`: no limit.
    pub max_age: Option<Duration>,
    /// Where scrapes go; every one must accept a scrape before it is acked.
    pub sinks: Vec<Sink>,
    /// Most messages fetched (and coalesced) at once. Default 256.
    pub batch_size: usize,
    /// Longest wait for a batch to fill. Default 1 s.
    pub fetch_wait: Duration,
    /// Pushes in flight at once. Default 8.
    pub concurrency: usize,
    /// The consumer's `max_ack_pending`. Default 4096.
    pub max_ack_pending: i64,
    /// The consumer's `ack_wait`: an unacked message is redelivered after this. Default 60 s.
    pub ack_wait: Duration,
    /// On shutdown, how long in-flight pushes may still take. Default 10 s.
    pub drain_timeout: Duration,
    /// Outcome counters of this receiver (also in the process-wide metrics).
    pub stats: Arc<Stats>,
}

impl ReceiverSettings {
    /// Settings with the documented defaults. An empty `consumer` gets a fresh unique name.
    pub fn new(
        urls: Vec<String>,
        stream: StreamSettings,
        consumer: &str,
        sinks: Vec<Sink>,
    ) -> ReceiverSettings {
        let identity = hostname::get()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".to_string());
        let (consumer, consumer_generated) = if consumer.is_empty() {
            (generated_consumer_name(&identity), true)
        } else {
            (consumer.to_string(), false)
        };
        ReceiverSettings {
            urls,
            identity,
            stream,
            consumer,
            consumer_generated,
            max_age: None,
            sinks,
            batch_size: 256,
            fetch_wait: Duration::from_secs(1),
            concurrency: 8,
            max_ack_pending: 4096,
            ack_wait: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
            stats: Arc::new(Stats::default()),
        }
    }

    /// From the config's `receiver_stream`, `max_age`, `push_gateway` and `remote_write`.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<ReceiverSettings> {
        let section = config
            .receiver_stream
            .as_ref()
            .context("the config has no receiver_stream section")?;
        let mut sinks = Vec::new();
        let publisher_label = match &config.push_gateway {
            Some(push_gateway) => {
                sinks.push(Sink::Pushgateway(
                    crate::sink::Pushgateway::from_config(push_gateway)
                        .context("setting up the push_gateway sink")?,
                ));
                push_gateway.publisher_label
            }
            None => true,
        };
        for remote_write in &config.remote_write {
            sinks.push(Sink::RemoteWrite(
                crate::sink::RemoteWrite::from_config(remote_write, publisher_label)
                    .with_context(|| format!("setting up remote_write {}", remote_write.url))?,
            ));
        }
        anyhow::ensure!(
            !sinks.is_empty(),
            "the receiver needs a push_gateway section or a remote_write entry"
        );
        let mut settings = ReceiverSettings::new(
            section.urls.clone(),
            StreamSettings::from_config(section),
            &section.client_id,
            sinks,
        );
        settings.identity = config.identity.clone();
        settings.max_age = config.max_age;
        Ok(settings)
    }
}

/// `promrelay-<host>-<random>`: a consumer name no other receiver uses.
fn generated_consumer_name(identity: &str) -> String {
    let host: String = identity
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("promrelay-{host}-{:016x}", rand::random::<u64>())
}

/// Runs the receiver until `shutdown` is cancelled; then finishes in-flight pushes (at most
/// `drain_timeout`) and returns. Fails only on settings that can never work (bad URLs).
pub async fn run(
    settings: ReceiverSettings,
    shutdown: CancellationToken,
    paused: PauseFlag,
) -> anyhow::Result<()> {
    // Register the metrics now, so /metrics lists them before the first message.
    std::sync::LazyLock::force(&METRICS);
    let client = crate::nats::connect(&settings.urls, "receiver", &settings.identity).await?;
    let js = jetstream::new(client);
    let mut receiver = Receiver::new(settings, paused);
    let mut backoff = Backoff::default();
    let mut last_problem: Option<String> = None;
    while !shutdown.is_cancelled() {
        let result = match receiver.consumer(&js).await {
            Ok(consumer) => {
                if last_problem.take().is_some() || !backoff.failing() {
                    tracing::info!(
                        stream = %receiver.settings.stream.name,
                        consumer = %receiver.settings.consumer,
                        "receiver consuming"
                    );
                }
                backoff.reset();
                receiver.consume(&consumer, &shutdown).await
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => break,
            Err(error) => {
                let text = format!("{error:#}");
                if last_problem.as_deref() != Some(text.as_str()) {
                    tracing::warn!(error = %text, "receiver cannot consume; retrying with backoff");
                    last_problem = Some(text);
                }
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    tracing::info!("receiver stopped");
    Ok(())
}

/// The receiver's state across batches.
struct Receiver {
    settings: ReceiverSettings,
    paused: PauseFlag,
    /// Per group, the scrape time of the newest scrape every sink accepted.
    last_pushed: HashMap<GroupKey, i64>,
    /// Backoff while sinks fail transiently.
    sink_backoff: Backoff,
    /// Sink outages and refusals, for logging state changes once.
    health: SinkHealth,
    /// Subjects whose messages did not decode, logged once each (bounded).
    undecodable_subjects: HashSet<String>,
}

impl Receiver {
    fn new(settings: ReceiverSettings, paused: PauseFlag) -> Receiver {
        Receiver {
            settings,
            paused,
            last_pushed: HashMap::new(),
            sink_backoff: Backoff::default(),
            health: SinkHealth::default(),
            undecodable_subjects: HashSet::new(),
        }
    }

    /// The stream (created if missing) and the durable consumer (created if missing).
    async fn consumer(
        &self,
        js: &jetstream::Context,
    ) -> anyhow::Result<consumer::Consumer<consumer::pull::Config>> {
        let settings = &self.settings;
        let stream = wire::ensure_stream(js, &settings.stream).await?;
        let config = consumer::pull::Config {
            durable_name: Some(settings.consumer.clone()),
            description: Some("promrelay receiver".to_string()),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy: consumer::DeliverPolicy::All,
            ack_wait: settings.ack_wait,
            max_ack_pending: settings.max_ack_pending,
            inactive_threshold: if settings.consumer_generated {
                Duration::from_secs(3600)
            } else {
                Duration::ZERO
            },
            ..consumer::pull::Config::default()
        };
        stream
            .get_or_create_consumer(&settings.consumer, config)
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "creating consumer {:?} on stream {:?}: {error}",
                    settings.consumer,
                    settings.stream.name
                )
            })
    }

    /// Fetches and handles batches until shutdown (`Ok`) or a fetch fails (`Err`).
    async fn consume(
        &mut self,
        consumer: &consumer::Consumer<consumer::pull::Config>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        loop {
            if *self.paused.borrow_and_update() {
                tracing::info!("receiver paused: messages stay on the stream");
                self.wait_while_paused(shutdown).await;
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                tracing::info!("receiver resumed");
                continue;
            }
            let messages = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                fetched = self.fetch(consumer) => fetched?,
            };
            if messages.is_empty() {
                continue;
            }
            if *self.paused.borrow() {
                // Paused while the batch was filling: hand it back untouched, ready for the resume.
                for message in &messages {
                    if let Err(error) = message.ack_with(AckKind::Nak(None)).await {
                        tracing::debug!(%error, "nak failed; the message is redelivered after ack_wait");
                    }
                }
                continue;
            }
            let retry = self.handle(messages, shutdown).await;
            if shutdown.is_cancelled() {
                return Ok(());
            }
            if retry {
                let delay = self.sink_backoff.next_delay();
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
            } else {
                self.sink_backoff.reset();
            }
        }
    }

    async fn wait_while_paused(&mut self, shutdown: &CancellationToken) {
        while *self.paused.borrow_and_update() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = self.paused.changed() => {
                    if changed.is_err() {
                        // Nobody can resume us any more: stay paused until shutdown.
                        shutdown.cancelled().await;
                        return;
                    }
                }
            }
        }
    }

    async fn fetch(
        &self,
        consumer: &consumer::Consumer<consumer::pull::Config>,
    ) -> anyhow::Result<Vec<jetstream::Message>> {
        let mut batch = consumer
            .batch()
            .max_messages(self.settings.batch_size)
            .expires(self.settings.fetch_wait)
            .messages()
            .await
            .context("requesting a batch from the consumer")?;
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            match message {
                Ok(message) => messages.push(message),
                // Keep what arrived; the next fetch reports a persistent problem.
                Err(error) if !messages.is_empty() => {
                    tracing::debug!(%error, "batch ended early");
                    break;
                }
                Err(error) => {
                    return Err(anyhow::anyhow!("fetching a batch: {error}"));
                }
            }
        }
        Ok(messages)
    }

    /// Handles one batch; returns whether some push must be retried (back off before the next).
    async fn handle(
        &mut self,
        messages: Vec<jetstream::Message>,
        shutdown: &CancellationToken,
    ) -> bool {
        let now = SystemTime::now();
        let now_ms = unix_ms(now);
        let now_seconds = now_ms as f64 / 1000.0;
        let stats = Arc::clone(&self.settings.stats);

        // Routing facts first: a message that will be coalesced is never decompressed.
        let mut items: Vec<(jetstream::Message, ScrapeMeta, Option<Scrape>)> =
            Vec::with_capacity(messages.len());
        for message in messages {
            let peeked = wire::peek_meta(message.headers.as_ref());
            let (meta, scrape) = match peeked {
                Some(meta) => (meta, None),
                None => match timed_decode(&message) {
                    Ok(scrape) => (scrape.meta.clone(), Some(scrape)),
                    Err(error) => {
                        self.undecodable(&message, &error);
                        stats.record(MessageOutcome::DecodeError, "");
                        ack(&message).await;
                        continue;
                    }
                },
            };
            METRICS.seen(&meta.publisher, now_seconds);
            items.push((message, meta, scrape));
        }

        let decisions = {
            let metas: Vec<&ScrapeMeta> = items.iter().map(|(_, meta, _)| meta).collect();
            plan(&metas, now_ms, self.settings.max_age, &self.last_pushed)
        };
        let mut to_push = Vec::new();
        for ((message, meta, scrape), decision) in items.into_iter().zip(decisions) {
            match decision {
                Decision::Aged => {
                    stats.record(MessageOutcome::Aged, &meta.job);
                    ack(&message).await;
                }
                Decision::Coalesced => {
                    stats.record(MessageOutcome::Coalesced, &meta.job);
                    ack(&message).await;
                }
                Decision::Push => {
                    let scrape = match scrape {
                        Some(scrape) => scrape,
                        None => match timed_decode(&message) {
                            Ok(scrape) => scrape,
                            Err(error) => {
                                self.undecodable(&message, &error);
                                stats.record(MessageOutcome::DecodeError, &meta.job);
                                ack(&message).await;
                                continue;
                            }
                        },
                    };
                    to_push.push((message, scrape));
                }
            }
        }
        if to_push.is_empty() {
            return false;
        }

        // Redelivery a second or so later; the loop's own backoff spaces the retries further.
        let nak_delay = crate::nats::backoff_delay(2);
        let drain_timeout = self.settings.drain_timeout;
        let deliveries = {
            let sinks = &self.settings.sinks;
            let sink_failed = std::sync::atomic::AtomicBool::new(false);
            let deliveries = futures::stream::iter(to_push)
                .map(|(message, scrape)| {
                    deliver(sinks, message, scrape, nak_delay, &stats, &sink_failed)
                })
                .buffer_unordered(self.settings.concurrency.max(1))
                .collect::<Vec<Delivery>>();
            tokio::pin!(deliveries);
            tokio::select! {
                done = &mut deliveries => done,
                _ = async {
                    shutdown.cancelled().await;
                    tokio::time::sleep(drain_timeout).await;
                } => {
                    tracing::warn!(
                        ?drain_timeout,
                        "shutdown: pushes still in flight abandoned; their messages will be redelivered"
                    );
                    return false;
                }
            }
        };
        self.health.account(deliveries, &mut self.last_pushed)
    }

    fn undecodable(&mut self, message: &jetstream::Message, error: &wire::WireError) {
        let subject = message.subject.to_string();
        if self.undecodable_subjects.len() < 10_000
            && self.undecodable_subjects.insert(subject.clone())
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

/// Decodes a message, recording how long it took.
fn timed_decode(message: &jetstream::Message) -> Result<Scrape, wire::WireError> {
    let started = Instant::now();
    let decoded = wire::decode(message.headers.as_ref(), &message.payload);
    METRICS.decoded(started.elapsed().as_secs_f64());
    decoded
}

pub(crate) fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
