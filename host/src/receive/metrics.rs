//! The receiver's own metrics (process-wide, in `telemetry::registry()`) and per-run counters.
//!
//! The process-wide metrics are what `/metrics` shows; [`Stats`] counts the same outcomes for one
//! [`super::run`] call, so a caller (a test, the admin API) can read what *this* receiver did even
//! when several run in one process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// What finally happened to one message taken from the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageOutcome {
    /// Every sink that needed it took it (or already held it); acked.
    Pushed,
    /// No sink needed it (every sink holds it or, newest-only, a newer scrape of its group); acked.
    Coalesced,
    /// Older than `max_age`; acked without a push.
    Aged,
    /// A sink refused it for good (4xx); acked.
    Rejected,
    /// Not a readable message; acked.
    DecodeError,
    /// A sink still needs it (it failed transiently, backs off, or waits for an older scrape);
    /// left for redelivery (not final: it comes back).
    Retried,
    /// A part of a scrape whose other parts never came (`receive::parts`); acked, never pushed.
    Partial,
}

impl MessageOutcome {
    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageOutcome::Pushed => "pushed",
            MessageOutcome::Coalesced => "coalesced",
            MessageOutcome::Aged => "aged",
            MessageOutcome::Rejected => "rejected",
            MessageOutcome::DecodeError => "decode_error",
            MessageOutcome::Retried => "retried",
            MessageOutcome::Partial => "partial",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    outcome: &'static str,
    /// The scrape's job; empty when the message did not decode.
    job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PushLabels {
    sink: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SinkLabels {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PublisherLabels {
    publisher: String,
}

/// The process-wide receiver metrics.
pub(crate) struct Metrics {
    messages: Family<OutcomeLabels, Counter>,
    pushes: Family<PushLabels, Counter>,
    push_duration: Family<SinkLabels, Histogram>,
    pushed_age: Histogram,
    decode_duration: Histogram,
    last_seen: Family<PublisherLabels, Gauge<f64, AtomicU64>>,
    backlog: Family<SinkLabels, Gauge>,
}

pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let metrics = Metrics {
        messages: Family::default(),
        pushes: Family::default(),
        // Bounds written out as decimals print as written (computed ones can print float noise).
        push_duration: Family::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                40.96,
            ])
        }),
        pushed_age: Histogram::new([0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0]),
        decode_duration: Histogram::new([
            0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024,
            0.2048, 0.4096, 0.8192,
        ]),
        last_seen: Family::default(),
        backlog: Family::default(),
    };
    let mut registry = crate::telemetry::registry();
    registry.register(
        "receiver_messages",
        "Messages taken from the stream, by job and what happened to them",
        metrics.messages.clone(),
    );
    registry.register(
        "receiver_pushes",
        "Pushes to a sink, by sink and result (ok, rejected, retry)",
        metrics.pushes.clone(),
    );
    registry.register(
        "receiver_push_duration_seconds",
        "Time one push to a sink took",
        metrics.push_duration.clone(),
    );
    registry.register(
        "receiver_pushed_scrape_age_seconds",
        "Age of a scrape (now minus its scrape time) when every sink accepted it",
        metrics.pushed_age.clone(),
    );
    registry.register(
        "receiver_decode_duration_seconds",
        "Time to decompress and parse one message",
        metrics.decode_duration.clone(),
    );
    registry.register(
        "receiver_last_seen_timestamp_seconds",
        "Unix time the receiver last took a message of this publisher from the stream",
        metrics.last_seen.clone(),
    );
    registry.register(
        "receiver_sink_backlog_scrapes",
        "Scrapes this receiver knows a sink still needs (left in the stream for it)",
        metrics.backlog.clone(),
    );
    metrics
});

impl Metrics {
    pub(crate) fn message(&self, outcome: MessageOutcome, job: &str) {
        self.messages
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
                job: job.to_string(),
            })
            .inc();
    }

    pub(crate) fn decoded(&self, seconds: f64) {
        self.decode_duration.observe(seconds);
    }

    pub(crate) fn push(&self, sink: &str, result: &'static str, seconds: f64) {
        self.pushes
            .get_or_create(&PushLabels {
                sink: sink.to_string(),
                result,
            })
            .inc();
        self.push_duration
            .get_or_create(&SinkLabels {
                sink: sink.to_string(),
            })
            .observe(seconds);
    }

    pub(crate) fn pushed_age(&self, seconds: f64) {
        self.pushed_age.observe(seconds.max(0.0));
    }

    pub(crate) fn backlog(&self, sink: &str, scrapes: usize) {
        self.backlog
            .get_or_create(&SinkLabels {
                sink: sink.to_string(),
            })
            .set(i64::try_from(scrapes).unwrap_or(i64::MAX));
    }

    pub(crate) fn seen(&self, publisher: &str, unix_seconds: f64) {
        self.last_seen
            .get_or_create(&PublisherLabels {
                publisher: publisher.to_string(),
            })
            .set(unix_seconds);
    }
}

/// Per-run counters of message outcomes; cheap to clone via `Arc`.
#[derive(Debug, Default)]
pub struct Stats {
    pushed: AtomicU64,
    coalesced: AtomicU64,
    aged: AtomicU64,
    rejected: AtomicU64,
    decode_error: AtomicU64,
    retried: AtomicU64,
    partial: AtomicU64,
}

impl Stats {
    fn counter(&self, outcome: MessageOutcome) -> &AtomicU64 {
        match outcome {
            MessageOutcome::Pushed => &self.pushed,
            MessageOutcome::Coalesced => &self.coalesced,
            MessageOutcome::Aged => &self.aged,
            MessageOutcome::Rejected => &self.rejected,
            MessageOutcome::DecodeError => &self.decode_error,
            MessageOutcome::Retried => &self.retried,
            MessageOutcome::Partial => &self.partial,
        }
    }

    /// How many messages of this run ended with `outcome`.
    pub fn get(&self, outcome: MessageOutcome) -> u64 {
        self.counter(outcome).load(Ordering::Relaxed)
    }

    /// Counts one message of `job` here and in the process-wide metrics.
    pub(crate) fn record(&self, outcome: MessageOutcome, job: &str) {
        self.counter(outcome).fetch_add(1, Ordering::Relaxed);
        METRICS.message(outcome, job);
    }
}
