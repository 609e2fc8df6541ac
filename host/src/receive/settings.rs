//! The receiver's settings: what [`super::run`] needs, with the documented defaults, built from
//! the config or by hand (tests).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::Stats;
use crate::sink::Sink;
use crate::wire::StreamSettings;

/// Everything [`run`] needs; build it with [`ReceiverSettings::from_config`] or
/// [`ReceiverSettings::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct ReceiverSettings {
    /// NATS server URLs.
    pub urls: Vec<String>,
    /// TLS and credentials of the connection (`receiver_stream`'s); default: plain text, none.
    pub security: crate::nats::Security,
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
    /// Receivers share the consumer (`receiver_stream.shared_order`): `Some(push timeout of the
    /// Pushgateway)`, how long a push claim must hold. Default `None` (one receiver).
    pub shared_order: Option<Duration>,
    /// On shutdown, how long in-flight pushes may still take. Default 10 s.
    pub drain_timeout: Duration,
    /// Outcome counters of this receiver (also in the process-wide metrics).
    pub stats: Arc<Stats>,
    /// New `receiver_stream.sources` lists from reloads, added to the hub stream as they come.
    pub source_updates: Option<super::SourceUpdates>,
    /// What the status page shows of this receiver (updated per batch and push).
    pub status: crate::status::ReceiverStatus,
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
            security: crate::nats::Security::default(),
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
            shared_order: None,
            stats: Arc::new(Stats::default()),
            source_updates: None,
            status: crate::status::ReceiverStatus::default(),
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
        settings.ack_wait = section.ack_wait;
        if section.shared_order {
            settings.shared_order = Some(
                config
                    .push_gateway
                    .as_ref()
                    .map_or(Duration::from_secs(30), |push_gateway| push_gateway.timeout),
            );
        }
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
