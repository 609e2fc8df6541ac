//! The domain model every stage shares: a scrape, its metric families, their series.
//!
//! Plain data, no behaviour beyond small helpers. The parser (`exposition`) produces it, the filter
//! chain (`filter`) transforms it, `publish` encodes it, `receive` decodes it and `sink` renders it.
//!
//! **Invariant:** a `Series` keeps its labels sorted by name, without `__name__` (the metric name is
//! `Series::name`) and without duplicates. Strings are `CompactString`s: label names and most values
//! are shorter than 24 bytes and then live inline, so parsing allocates little per sample.

pub use compact_str::CompactString as Str;

/// The Prometheus metric type of a family, as in `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    /// OpenMetrics `gaugehistogram`.
    GaugeHistogram,
    /// OpenMetrics `info`.
    Info,
    /// OpenMetrics `stateset`.
    StateSet,
    #[default]
    Untyped,
}

impl MetricType {
    /// The text-format spelling (`untyped` for `Untyped`).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Untyped => "untyped",
        }
    }

    /// Parses a `# TYPE` word; `unknown` (OpenMetrics) maps to `Untyped`.
    pub fn parse(word: &str) -> Option<MetricType> {
        Some(match word {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "untyped" | "unknown" => MetricType::Untyped,
            _ => return None,
        })
    }
}

/// One label pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    pub name: Str,
    pub value: Str,
}

impl Label {
    pub fn new(name: impl Into<Str>, value: impl Into<Str>) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// One sample: a metric name, its labels, a value and an optional timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The full sample name, e.g. `http_request_duration_seconds_bucket`.
    pub name: Str,
    /// Sorted by name, no `__name__`, no duplicates.
    pub labels: Vec<Label>,
    /// Raw value; NaN, ±Inf and the staleness NaN are kept bit for bit.
    pub value: f64,
    /// Milliseconds since the Unix epoch, as written in the exposition.
    pub timestamp_ms: Option<i64>,
}

impl Series {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.labels[i].value.as_str())
    }

    /// Sets (or adds) a label, keeping the labels sorted.
    pub fn set_label(&mut self, name: &str, value: &str) {
        match self.labels.binary_search_by(|l| l.name.as_str().cmp(name)) {
            Ok(i) => self.labels[i].value = Str::from(value),
            Err(i) => self.labels.insert(i, Label::new(name, value)),
        }
    }

    /// Removes a label if present.
    pub fn remove_label(&mut self, name: &str) {
        if let Ok(i) = self.labels.binary_search_by(|l| l.name.as_str().cmp(name)) {
            self.labels.remove(i);
        }
    }

    /// Two series are the same series when name and labels are equal.
    pub fn same_identity(&self, other: &Series) -> bool {
        self.name == other.name && self.labels == other.labels
    }
}

/// A metric family: the `# HELP` / `# TYPE` / `# UNIT` metadata and its samples.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Family {
    pub name: Str,
    pub help: Option<Str>,
    pub unit: Option<Str>,
    pub kind: MetricType,
    pub series: Vec<Series>,
}

/// The bits of Prometheus' staleness marker: a NaN of its own that ends a series at once.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as a value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `value` is the staleness marker (bit for bit; other NaNs are plain samples).
pub fn is_stale(value: f64) -> bool {
    value.to_bits() == STALE_NAN_BITS
}

/// The target labels the poller adds to every scraped series, in the order it adds them.
pub const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// The default of a job's `label_limit`: the most labels one series may carry.
///
/// **Definition** (the same at parse time and for filter output): a series' label count is its
/// label pairs as a filter sees them in its batch: `__name__`, the labels the target exposed,
/// and the [`TARGET_LABELS`] (an exposed `job` or `instance` is kept as `exported_job` /
/// `exported_instance` and counts as one of the exposed labels). The parser counts a sample's
/// written labels plus these three, so a scrape it accepts is accepted again when a filter
/// hands it back unchanged.
pub const DEFAULT_LABEL_LIMIT: usize = 1024;

/// Where a scrape came from and when: the routing facts that travel in message headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScrapeMeta {
    /// The publishing poller's identity.
    pub publisher: String,
    pub job: String,
    pub instance: String,
    /// When the scrape started, milliseconds since the Unix epoch.
    pub time_ms: i64,
}

/// One scrape of one target: metadata plus parsed families, in exposition order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scrape {
    pub meta: ScrapeMeta,
    pub families: Vec<Family>,
}

impl Scrape {
    /// Number of samples across all families.
    pub fn sample_count(&self) -> usize {
        self.families.iter().map(|f| f.series.len()).sum()
    }

    /// Adds `job` and `instance` target labels to every series, as Prometheus does before
    /// `metric_relabel_configs`. A label already exposed by the target is kept as
    /// `exported_<name>` (Prometheus' `honor_labels: false`).
    pub fn add_target_labels(&mut self, job: &str, instance: &str) {
        self.add_target_labels_with(job, instance, &[]);
    }

    /// [`add_target_labels`](Self::add_target_labels) with a target's own labels besides `job`
    /// and `instance` (a target group's `labels`), treated alike: an exposed label of the same
    /// name is kept as `exported_<name>`.
    pub fn add_target_labels_with(&mut self, job: &str, instance: &str, extra: &[Label]) {
        let standard = TARGET_LABELS.into_iter().zip([job, instance]);
        let own = extra.iter().map(|l| (l.name.as_str(), l.value.as_str()));
        let target: Vec<(&str, &str)> = standard.chain(own).collect();
        for family in &mut self.families {
            for series in &mut family.series {
                series.add_target_labels(&target);
            }
        }
    }
}

impl Series {
    /// Sets the target labels `target` (in the order Prometheus applies them: `job`, `instance`,
    /// then a target group's labels), keeping an exposed label of the same name as
    /// `exported_<name>` (Prometheus' `honor_labels: false`).
    pub fn add_target_labels(&mut self, target: &[(&str, &str)]) {
        // One growth for all labels instead of one per insert.
        self.labels.reserve(target.len());
        for &(name, value) in target {
            if let Some(old) = self.label(name).map(Str::from) {
                let exported = format!("exported_{name}");
                self.set_label(&exported, &old);
            }
            self.set_label(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_labels_keep_exposed_job_as_exported_job() {
        let mut scrape = Scrape {
            meta: ScrapeMeta::default(),
            families: vec![Family {
                name: "x".into(),
                series: vec![Series {
                    name: "x".into(),
                    labels: vec![Label::new("job", "inner")],
                    value: 1.0,
                    timestamp_ms: None,
                }],
                ..Family::default()
            }],
        };
        scrape.add_target_labels("node", "h:9100");
        let s = &scrape.families[0].series[0];
        assert_eq!(s.label("job"), Some("node"));
        assert_eq!(s.label("exported_job"), Some("inner"));
        assert_eq!(s.label("instance"), Some("h:9100"));
    }
}
