//! The publisher's own metrics (`promrelay_publishes_total` and the rest).

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family as MetricFamily;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

pub(super) struct PublishMetrics {
    published: MetricFamily<Outcome, Counter>,
    pub(super) latency: Histogram,
    pub(super) buffer_bytes: Gauge,
    pub(super) buffer_scrapes: Gauge,
    pub(super) buffer_dropped: Counter,
    pub(super) encode_seconds: Histogram,
    pub(super) split: Counter,
    pub(super) stale: Counter,
}

pub(super) static METRICS: LazyLock<PublishMetrics> = LazyLock::new(|| {
    let metrics = PublishMetrics {
        published: MetricFamily::default(),
        latency: Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
        ]),
        buffer_bytes: Gauge::default(),
        buffer_scrapes: Gauge::default(),
        buffer_dropped: Counter::default(),
        encode_seconds: Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05]),
        split: Counter::default(),
        stale: Counter::default(),
    };
    let mut registry = crate::telemetry::registry();
    registry.register(
        "publishes",
        "Scrape publishes by outcome (ok, error, too_large, encode_error)",
        metrics.published.clone(),
    );
    registry.register(
        "publish_duration_seconds",
        "Time from sending a scrape to its JetStream ack",
        metrics.latency.clone(),
    );
    registry.register(
        "outage_buffer_bytes",
        "Bytes of encoded scrapes not yet acknowledged by JetStream (waiting or in flight)",
        metrics.buffer_bytes.clone(),
    );
    registry.register(
        "outage_buffer_scrapes",
        "Scrapes not yet acknowledged by JetStream (waiting or in flight)",
        metrics.buffer_scrapes.clone(),
    );
    registry.register(
        "outage_buffer_dropped",
        "Scrapes dropped, oldest first, because the outage buffer was full",
        metrics.buffer_dropped.clone(),
    );
    registry.register(
        "encode_duration_seconds",
        "Time to encode and compress one scrape for the wire",
        metrics.encode_seconds.clone(),
    );
    registry.register(
        "scrapes_split",
        "Scrapes larger than the server's max payload, published as several parts",
        metrics.split.clone(),
    );
    registry.register(
        "stale_markers",
        "Staleness markers written for series gone since their target's previous scrape",
        metrics.stale.clone(),
    );
    metrics
});

/// Forces registration so the families appear on `/metrics` before the first publish.
pub fn register_metrics() {
    LazyLock::force(&METRICS);
}

pub(super) fn count(outcome: &str) {
    METRICS
        .published
        .get_or_create(&Outcome {
            outcome: outcome.to_owned(),
        })
        .inc();
}
