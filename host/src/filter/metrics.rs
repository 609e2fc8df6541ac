//! The filter engine's own metrics, registered once in the process registry.
//!
//! Names (after the registry's `promrelay` prefix): `filter_calls_total{filter}`,
//! `filter_errors_total{filter,kind}`, `filter_call_duration_seconds{filter}`,
//! `filter_series_in_total{filter}`, `filter_series_out_total{filter}`,
//! `filter_reloads_total{result}` (a reload that finds nothing changed is a no-op, not counted).

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct FilterLabels {
    pub filter: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct ErrorLabels {
    pub filter: String,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct ReloadLabels {
    pub result: String,
}

type HistogramFamily = Family<FilterLabels, Histogram, fn() -> Histogram>;

pub(crate) struct Metrics {
    pub calls: Family<FilterLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: HistogramFamily,
    pub series_in: Family<FilterLabels, Counter>,
    pub series_out: Family<FilterLabels, Counter>,
    pub reloads: Family<ReloadLabels, Counter>,
}

/// 10 µs .. 5 s: identity filters on small scrapes sit at the bottom, timeouts at the top.
/// Written out as decimals, so that each prints as written: computed bounds print their float
/// noise (`le="0.000030000000000000005"`).
const DURATION_BUCKETS: [f64; 17] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 5.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let metrics = Metrics {
        calls: Family::default(),
        errors: Family::default(),
        duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
        series_in: Family::default(),
        series_out: Family::default(),
        reloads: Family::default(),
    };
    let mut registry = crate::telemetry::registry();
    registry.register("filter_calls", "Filter calls made", metrics.calls.clone());
    registry.register(
        "filter_errors",
        "Failed filter calls, by kind",
        metrics.errors.clone(),
    );
    registry.register(
        "filter_call_duration_seconds",
        "Wall-clock duration of one filter call",
        metrics.duration.clone(),
    );
    registry.register(
        "filter_series_in",
        "Series handed to a filter",
        metrics.series_in.clone(),
    );
    registry.register(
        "filter_series_out",
        "Series a filter let through",
        metrics.series_out.clone(),
    );
    registry.register(
        "filter_reloads",
        "Filter chain reloads, by result",
        metrics.reloads.clone(),
    );
    metrics
});

pub(crate) fn filter_labels(name: &str) -> FilterLabels {
    FilterLabels {
        filter: name.to_owned(),
    }
}

pub(crate) fn count_error(filter: &str, kind: &str) {
    METRICS
        .errors
        .get_or_create(&ErrorLabels {
            filter: filter.to_owned(),
            kind: kind.to_owned(),
        })
        .inc();
}

pub(crate) fn count_reload(ok: bool) {
    let result = if ok { "success" } else { "failure" };
    METRICS
        .reloads
        .get_or_create(&ReloadLabels {
            result: result.to_owned(),
        })
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_duration_buckets_print_as_short_decimals() {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("d", "d", duration_histogram());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        let bounds: Vec<&str> = text
            .split("le=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert_eq!(bounds.len(), DURATION_BUCKETS.len() + 1, "{text}");
        assert_eq!(bounds[..3], ["0.00001", "0.000025", "0.00005"], "{text}");
        assert!(bounds.iter().all(|b| b.len() <= 8), "{text}");
    }
}
