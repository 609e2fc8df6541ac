//! What the publisher and the receiver report about themselves for the status page: shared
//! handles they update as things happen (an ack, an error, a batch), read by the monitor port.
//!
//! **Invariant:** updates are a short mutex section with no I/O; readers copy the state out.
//! The NATS client kept here is only asked for what it already knows (the server it is
//! connected to, its connection state), never sent a request.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Error texts kept for the page: a sink's answer body can be long.
const ERROR_CHARS: usize = 500;

/// Replaces `kept` with `error` (cut to [`ERROR_CHARS`]) unless it already holds it.
fn keep_error(kept: &mut Option<String>, error: &str) {
    let cut = match error.char_indices().nth(ERROR_CHARS) {
        Some((end, _)) => &error[..end],
        None => error,
    };
    if kept.as_deref() != Some(cut) {
        *kept = Some(cut.to_owned());
    }
}

/// The NATS server a client is connected to, as the client knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Connection {
    /// `connected`, `disconnected` or `pending`.
    pub state: String,
    /// `host:port` of the server (from its INFO); empty before the first connect.
    pub server: String,
    pub server_name: String,
    pub server_version: String,
}

fn connection(client: Option<&async_nats::Client>) -> Option<Connection> {
    let client = client?;
    let info = client.server_info();
    let state = match client.connection_state() {
        async_nats::connection::State::Connected => "connected",
        async_nats::connection::State::Disconnected => "disconnected",
        async_nats::connection::State::Pending => "pending",
    };
    Some(Connection {
        state: state.to_owned(),
        server: if info.host.is_empty() {
            String::new()
        } else {
            format!("{}:{}", info.host, info.port)
        },
        server_name: info.server_name,
        server_version: info.version,
    })
}

/// The publisher's state: a copy for readers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PublisherState {
    pub stream: String,
    /// Subjects are `<topic>.<publisher>.<job>`.
    pub topic: String,
    pub urls: Vec<String>,
    pub connection: Option<Connection>,
    /// Scrapes not yet acknowledged (waiting and in flight) and their bytes.
    pub buffer_scrapes: u64,
    pub buffer_bytes: u64,
    pub buffer_limit_bytes: u64,
    pub buffer_dropped: u64,
    pub published: u64,
    /// Unix milliseconds of the last JetStream ack.
    pub last_ack_ms: Option<i64>,
    pub publish_errors: u64,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct PublisherInner {
    state: PublisherState,
    client: Option<async_nats::Client>,
}

/// The publisher's status handle; cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct PublisherStatus {
    inner: Arc<Mutex<PublisherInner>>,
}

impl PublisherStatus {
    /// What the publisher publishes to; called once at its start.
    pub fn configure(&self, stream: &str, topic: &str, urls: &[String], limit: u64) {
        let state = &mut lock(&self.inner).state;
        state.stream = stream.to_owned();
        state.topic = topic.to_owned();
        state.urls = urls.to_vec();
        state.buffer_limit_bytes = limit;
    }

    pub fn connected(&self, client: &async_nats::Client) {
        lock(&self.inner).client = Some(client.clone());
    }

    pub fn buffer(&self, scrapes: usize, bytes: u64) {
        let state = &mut lock(&self.inner).state;
        state.buffer_scrapes = scrapes as u64;
        state.buffer_bytes = bytes;
    }

    pub fn dropped(&self, scrapes: u64) {
        lock(&self.inner).state.buffer_dropped += scrapes;
    }

    pub fn acked(&self, now_ms: i64) {
        let state = &mut lock(&self.inner).state;
        state.published += 1;
        state.last_ack_ms = Some(now_ms);
    }

    pub fn failed(&self, error: &str, now_ms: i64) {
        let state = &mut lock(&self.inner).state;
        state.publish_errors += 1;
        state.last_error_ms = Some(now_ms);
        keep_error(&mut state.last_error, error);
    }

    pub fn snapshot(&self) -> PublisherState {
        let inner = lock(&self.inner);
        let mut state = inner.state.clone();
        state.connection = connection(inner.client.as_ref());
        state
    }
}

/// The last push of one group to one sink.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupPush {
    pub sink: String,
    pub job: String,
    pub instance: String,
    pub publisher: String,
    /// When the pushed scrape was taken, unix milliseconds.
    pub scrape_ms: i64,
    /// When the sink accepted it, unix milliseconds.
    pub pushed_ms: i64,
}

/// One sink's push counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SinkPushes {
    pub sink: String,
    pub pushed: u64,
    /// Answers other than 2xx (refusals and failures to be retried).
    pub errors: u64,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
}

/// The receiver's state: a copy for readers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReceiverState {
    pub stream: String,
    pub consumer: String,
    pub urls: Vec<String>,
    pub connection: Option<Connection>,
    /// Messages of the stream not yet delivered to the consumer, as of the last message.
    pub pending: Option<u64>,
    /// Messages received more than once (a nak, an ack_wait that passed).
    pub redelivered: u64,
    pub received: u64,
    /// Unix milliseconds of the last fetched batch.
    pub last_batch_ms: Option<i64>,
    pub sinks: Vec<SinkPushes>,
    pub groups: Vec<GroupPush>,
}

/// At most this many groups are remembered (oldest pushes forgotten first).
const MAX_GROUPS: usize = 10_000;

#[derive(Debug, Default)]
struct ReceiverInner {
    state: ReceiverState,
    /// (sink, job, instance, publisher) → (scrape time, push time).
    groups: BTreeMap<(String, String, String, String), (i64, i64)>,
    client: Option<async_nats::Client>,
}

/// The receiver's status handle; cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct ReceiverStatus {
    inner: Arc<Mutex<ReceiverInner>>,
}

impl ReceiverStatus {
    /// What the receiver consumes and where it pushes; called once at its start.
    pub fn configure(&self, stream: &str, consumer: &str, urls: &[String], sinks: &[&str]) {
        let state = &mut lock(&self.inner).state;
        state.stream = stream.to_owned();
        state.consumer = consumer.to_owned();
        state.urls = urls.to_vec();
        state.sinks = sinks
            .iter()
            .map(|sink| SinkPushes {
                sink: (*sink).to_owned(),
                ..SinkPushes::default()
            })
            .collect();
    }

    pub fn connected(&self, client: &async_nats::Client) {
        lock(&self.inner).client = Some(client.clone());
    }

    /// One fetched batch: its size, how many were redeliveries, the consumer's pending count.
    pub fn batch(&self, received: u64, redelivered: u64, pending: Option<u64>, now_ms: i64) {
        let state = &mut lock(&self.inner).state;
        state.received += received;
        state.redelivered += redelivered;
        if pending.is_some() {
            state.pending = pending;
        }
        state.last_batch_ms = Some(now_ms);
    }

    /// A sink accepted a group's scrape taken at `scrape_ms`.
    pub fn pushed(&self, sink: usize, group: [&str; 3], scrape_ms: i64, now_ms: i64) {
        let inner = &mut *lock(&self.inner);
        let Some(pushes) = inner.state.sinks.get_mut(sink) else {
            return;
        };
        pushes.pushed += 1;
        let key = (
            pushes.sink.clone(),
            group[0].to_owned(),
            group[1].to_owned(),
            group[2].to_owned(),
        );
        let entry = inner.groups.entry(key).or_insert((scrape_ms, now_ms));
        if scrape_ms >= entry.0 {
            *entry = (scrape_ms, now_ms);
        }
        if inner.groups.len() > MAX_GROUPS {
            let oldest = inner
                .groups
                .iter()
                .min_by_key(|(_, (_, pushed))| *pushed)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                inner.groups.remove(&oldest);
            }
        }
    }

    /// A sink answered a push with an error (`error` says what it answered).
    pub fn push_failed(&self, sink: usize, error: &str, now_ms: i64) {
        let state = &mut lock(&self.inner).state;
        if let Some(pushes) = state.sinks.get_mut(sink) {
            pushes.errors += 1;
            pushes.last_error_ms = Some(now_ms);
            keep_error(&mut pushes.last_error, error);
        }
    }

    pub fn snapshot(&self) -> ReceiverState {
        let inner = lock(&self.inner);
        let mut state = inner.state.clone();
        state.connection = connection(inner.client.as_ref());
        state.groups = inner
            .groups
            .iter()
            .map(
                |((sink, job, instance, publisher), (scrape_ms, pushed_ms))| GroupPush {
                    sink: sink.clone(),
                    job: job.clone(),
                    instance: instance.clone(),
                    publisher: publisher.clone(),
                    scrape_ms: *scrape_ms,
                    pushed_ms: *pushed_ms,
                },
            )
            .collect();
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_push_of_a_group_is_its_newest_scrape_and_errors_count_per_sink() {
        let status = ReceiverStatus::default();
        status.configure("S", "C", &[], &["pushgateway", "remote_write:h"]);
        status.pushed(0, ["node", "n1", "site1"], 2_000, 2_100);
        // A redelivered older scrape does not move the group back.
        status.pushed(0, ["node", "n1", "site1"], 1_000, 2_200);
        status.push_failed(1, "HTTP 503", 2_300);
        let state = status.snapshot();
        assert_eq!(state.groups.len(), 1);
        assert_eq!(
            (state.groups[0].scrape_ms, state.groups[0].pushed_ms),
            (2_000, 2_100)
        );
        assert_eq!((state.sinks[0].pushed, state.sinks[0].errors), (2, 0));
        assert_eq!(state.sinks[1].errors, 1);
        assert_eq!(state.sinks[1].last_error.as_deref(), Some("HTTP 503"));
    }
}
