//! The receiver: a durable JetStream pull consumer that pushes each scrape into the sinks.
//!
//! Per fetched batch: decode the routing facts of every message; ack and count those older than
//! `max_age` (aged); then each sink gets what its own coalescing rule asks for ([`plan`]): the
//! Pushgateway the newest scrape of each (job, instance, publisher) group, every remote_write
//! endpoint every scrape it does not hold yet, oldest first. Groups are pushed several at once,
//! the scrapes of one group in scrape-time order. A message is acked when no sink needs it any
//! more: every sink took it (or already held it), refused it for good (4xx, logged with the
//! sink's answer), or — for the Pushgateway — holds or is about to get a newer scrape. A message
//! some sink still needs (5xx, 429, timeout, connection error; the sink backing off; an older
//! scrape not yet back) is nak'ed with a delay and comes back: a sink outage loses nothing
//! younger than `max_age`, and a sink that fails waits out its own backoff while the others
//! carry on.
//!
//! **Invariants:**
//! - A message is acked only after every sink has it, refused it for good, does not need it
//!   (superseded, for a newest-only sink), or it is older than `max_age`.
//! - An older scrape never overwrites a newer one in the Pushgateway, and a remote_write endpoint
//!   gets a group's scrapes in scrape-time order: per sink and group the [`Ledger`] remembers the
//!   newest scrape delivered and the scrapes still owed (redeliveries included).
//! - A paused receiver fetches nothing and acks nothing; the stream keeps the messages.
//!
//! NATS outages are the client's business (it reconnects forever, see `crate::nats`); this loop
//! only re-creates its stream and consumer handles with backoff when requests fail, logging once
//! per state change.

mod account;
mod batch;
mod deliver;
mod hold;
mod ledger;
mod metrics;
mod order;
mod parts;
mod settings;
mod sources;

pub use batch::{is_aged, plan, Decision, GroupKey, Item, Need, SinkState};
pub use ledger::{Ledger, SinkResult};
pub use metrics::{MessageOutcome, Stats};
pub use settings::ReceiverSettings;
pub use sources::SourceUpdates;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::batch::ScrapeBatch;
use crate::model::ScrapeMeta;
use crate::nats::Backoff;
use crate::sink::Coalescing;
use crate::wire;
use deliver::{ack, deliver_group, BatchContext, Delivery, Pending, SinkClock, SinkHealth};
use hold::CrashHold;
use metrics::METRICS;

/// `true` while the receiver is paused (the circuit breaker's `pause`).
pub type PauseFlag = watch::Receiver<bool>;

/// Runs the receiver until `shutdown` is cancelled; then finishes in-flight pushes (at most
/// `drain_timeout`) and returns. Fails only on settings that can never work (bad URLs).
pub async fn run(
    settings: ReceiverSettings,
    shutdown: CancellationToken,
    paused: PauseFlag,
) -> anyhow::Result<()> {
    // Register the metrics now, so /metrics lists them before the first message.
    std::sync::LazyLock::force(&METRICS);
    let sinks: Vec<&str> = settings.sinks.iter().map(|sink| sink.name()).collect();
    settings.status.configure(
        &settings.stream.name,
        &settings.consumer,
        &settings.urls,
        &sinks,
    );
    let client = crate::nats::connect(
        &settings.urls,
        "receiver",
        &settings.identity,
        &settings.security,
    )
    .await?;
    settings.status.connected(&client);
    let js = wire::stream::context(client, &settings.stream);
    if let Some(updates) = settings.source_updates.clone() {
        let follower = sources::follow(
            js.clone(),
            settings.stream.clone(),
            updates,
            shutdown.clone(),
        );
        tokio::spawn(follower);
    }
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
    /// Per sink and group: the newest scrape delivered and the scrapes still owed.
    ledger: Ledger,
    /// Per sink: backoff after transient failures.
    clocks: Vec<SinkClock>,
    /// The crash hold, decided at the first consumer lookup (`None` inside: no hold).
    hold: Option<Option<CrashHold>>,
    /// Sink outages and refusals, for logging state changes once.
    health: SinkHealth,
    /// Subjects whose messages did not decode, logged once each (bounded).
    undecodable_subjects: HashSet<String>,
    /// With `shared_order`: the push order shared by the receivers of the consumer (opened with
    /// the consumer).
    order: Option<order::SharedOrder>,
    /// Parts of scrapes that arrived in parts, until each scrape is whole.
    assembler: parts::Assembler,
}

impl Receiver {
    fn new(settings: ReceiverSettings, paused: PauseFlag) -> Receiver {
        Receiver {
            paused,
            clocks: settings
                .sinks
                .iter()
                .map(|_| SinkClock::default())
                .collect(),
            ledger: Ledger::default(),
            hold: None,
            health: SinkHealth::default(),
            undecodable_subjects: HashSet::new(),
            order: None,
            assembler: parts::Assembler::default(),
            settings,
        }
    }

    /// The stream (created if missing), the shared push order (with `shared_order`) and the
    /// durable consumer (created if missing).
    async fn consumer(
        &mut self,
        js: &jetstream::Context,
    ) -> anyhow::Result<consumer::Consumer<consumer::pull::Config>> {
        let stream = wire::ensure_stream(js, &self.settings.stream).await?;
        if let (Some(lease), None) = (self.settings.shared_order, &self.order) {
            let settings = &self.settings;
            self.order = Some(
                order::SharedOrder::open(js, &settings.consumer, &settings.stream, lease).await?,
            );
        }
        let settings = &self.settings;
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
        if self.hold.is_none() {
            let ordered = self
                .settings
                .sinks
                .iter()
                .any(|sink| sink.coalescing() == Coalescing::Every);
            self.hold = Some(
                ordered
                    .then(|| CrashHold::from_info(consumer.cached_info(), self.settings.ack_wait))
                    .flatten(),
            );
        }
        loop {
            // Every sink backing off: nothing could be pushed, so do not churn the stream.
            let idle = {
                let now = Instant::now();
                self.clocks.iter().map(|clock| clock.remaining(now)).min()
            };
            if let Some(idle) = idle.filter(|idle| !idle.is_zero()) {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(idle) => {}
                }
            }
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
            self.sweep_parts().await;
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
            self.handle(messages, consumer, shutdown).await;
            if shutdown.is_cancelled() {
                return Ok(());
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

    /// Handles one batch: acks what is aged, pushes the rest per sink, acks or naks each message.
    async fn handle(
        &mut self,
        messages: Vec<jetstream::Message>,
        consumer: &consumer::Consumer<consumer::pull::Config>,
        shutdown: &CancellationToken,
    ) {
        let now = SystemTime::now();
        let now_ms = unix_ms(now);
        let now_seconds = now_ms as f64 / 1000.0;
        let stats = Arc::clone(&self.settings.stats);

        // Routing facts first: a message no sink needs is never decompressed.
        let mut items: Vec<(
            jetstream::Message,
            ScrapeMeta,
            Option<ScrapeBatch>,
            u64,
            Vec<_>,
        )> = Vec::with_capacity(messages.len());
        let received = messages.len() as u64;
        let redelivered = messages
            .iter()
            .filter(|message| message.info().is_ok_and(|info| info.delivered > 1))
            .count() as u64;
        let pending = messages
            .last()
            .and_then(|message| message.info().ok())
            .map(|info| info.pending);
        self.settings
            .status
            .batch(received, redelivered, pending, now_ms);
        for message in messages {
            let (message, meta, scrape, parts) = match wire::part_of(message.headers.as_ref()) {
                Ok(None) => (message, None, None, Vec::new()),
                Ok(Some(part)) => match timed_decode(&message) {
                    Ok(scrape) => {
                        match self.assembler.offer(part, message, scrape, Instant::now()) {
                            Some(whole) => (
                                whole.message,
                                Some(whole.scrape.meta.clone()),
                                Some(whole.scrape),
                                whole.parts,
                            ),
                            None => continue,
                        }
                    }
                    Err(error) => {
                        self.undecodable(message.subject.as_str(), &error.to_string());
                        stats.record(MessageOutcome::DecodeError, "");
                        ack(&message).await;
                        continue;
                    }
                },
                Err(error) => {
                    self.undecodable(message.subject.as_str(), &error.to_string());
                    stats.record(MessageOutcome::DecodeError, "");
                    ack(&message).await;
                    continue;
                }
            };
            let peeked = meta.or_else(|| wire::peek_meta(message.headers.as_ref()));
            let (meta, scrape) = match peeked {
                Some(meta) => (meta, scrape),
                None => match timed_decode(&message) {
                    Ok(scrape) => (scrape.meta.clone(), Some(scrape)),
                    Err(error) => {
                        self.undecodable(message.subject.as_str(), &error.to_string());
                        stats.record(MessageOutcome::DecodeError, "");
                        ack(&message).await;
                        continue;
                    }
                },
            };
            METRICS.seen(&meta.publisher, now_seconds);
            let sequence = message
                .info()
                .map(|info| info.stream_sequence)
                .unwrap_or_default();
            items.push((message, meta, scrape, sequence, parts));
        }

        let hold_above = self.hold_above(consumer).await;
        let clock_now = Instant::now();
        let states: Vec<SinkState> = self
            .settings
            .sinks
            .iter()
            .zip(&self.clocks)
            .map(|(sink, clock)| {
                let coalescing = sink.coalescing();
                SinkState {
                    coalescing,
                    available: clock.remaining(clock_now).is_zero(),
                    hold_above: hold_above.filter(|_| coalescing == Coalescing::Every),
                }
            })
            .collect();
        let decisions = {
            let plan_items: Vec<Item<'_>> = items
                .iter()
                .map(|(_, meta, _, sequence, _)| Item {
                    meta,
                    sequence: *sequence,
                })
                .collect();
            plan(
                &plan_items,
                now_ms,
                self.settings.max_age,
                &states,
                &self.ledger,
            )
        };

        let mut groups: HashMap<GroupKey, Vec<(u64, Pending)>> = HashMap::new();
        for ((message, meta, scrape, sequence, parts), decision) in items.into_iter().zip(decisions)
        {
            match decision {
                Decision::Aged => {
                    stats.record(MessageOutcome::Aged, &meta.job);
                    self.ledger.forget(&GroupKey::of(&meta), meta.time_ms);
                    ack(&message).await;
                    for part in &parts {
                        ack(part).await;
                    }
                }
                Decision::Deliver(needs) => {
                    groups.entry(GroupKey::of(&meta)).or_default().push((
                        sequence,
                        Pending {
                            message,
                            parts,
                            meta,
                            scrape,
                            needs,
                        },
                    ));
                }
            }
        }
        if groups.is_empty() {
            return;
        }
        let groups = groups.into_values().map(|mut group| {
            group.sort_by_key(|(sequence, pending)| (pending.meta.time_ms, *sequence));
            group
                .into_iter()
                .map(|(_, pending)| pending)
                .collect::<Vec<_>>()
        });

        // Redelivery a second or so later, or when the sink's backoff ends.
        let base_delay = crate::nats::backoff_delay(2);
        let drain_timeout = self.settings.drain_timeout;
        let sinks = &self.settings.sinks;
        let failed: Vec<std::sync::atomic::AtomicBool> = sinks
            .iter()
            .map(|_| std::sync::atomic::AtomicBool::new(false))
            .collect();
        let context = BatchContext {
            sinks,
            failed: &failed,
            nak_delays: self
                .clocks
                .iter()
                .map(|clock| clock.remaining(clock_now).max(base_delay))
                .collect(),
            stats: &stats,
            order: self.order.as_ref(),
        };
        let deliveries: Vec<Delivery> = {
            let deliveries = futures::stream::iter(groups)
                .map(|group| deliver_group(&context, group))
                .buffer_unordered(self.settings.concurrency.max(1))
                .flat_map(futures::stream::iter)
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
                    return;
                }
            }
        };
        self.account(deliveries, now_ms);
    }

    /// The crash hold's stream sequence while it lasts.
    async fn hold_above(
        &mut self,
        consumer: &consumer::Consumer<consumer::pull::Config>,
    ) -> Option<u64> {
        let hold = self.hold.as_ref()?.as_ref()?;
        if hold.over(consumer).await {
            self.hold = Some(None);
            return None;
        }
        Some(hold.top())
    }
}

/// Decodes a message, recording how long it took.
pub(super) fn timed_decode(message: &jetstream::Message) -> Result<ScrapeBatch, wire::WireError> {
    let started = Instant::now();
    let decoded = wire::decode_batch_with_limit(
        message.headers.as_ref(),
        &message.payload,
        wire::MAX_DECODED_BYTES,
    );
    METRICS.decoded(started.elapsed().as_secs_f64());
    decoded
}

pub(crate) fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
