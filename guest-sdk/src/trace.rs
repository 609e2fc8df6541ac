//! The optional per-step trace a filter may offer to explain what it does to a series
//! (`promrelay_trace`, ABI.md §10): one entry per series of the batch it is given, each a list
//! of steps (which rule, whether it matched, the labels after it, or where the series was
//! dropped). The relay asks for it only when an operator explains a chain (`promrelay filter run
//! --explain`, the monitor port's `/explain`), never while scraping.
//!
//! **Invariant:** the trace is built with the same decisions the filter's `process` takes; it is
//! data for a person to read, the relay never acts on it.

use serde_json::{json, Map, Value};

use crate::batch::Batch;
use crate::error::Error;
use crate::Filter;

/// A filter that can explain its decisions step by step.
///
/// Implement it beside [`Filter`] and export it with `export_filter!(Type, explain)`; the
/// module then exports `promrelay_trace`. The batch holds only the series to explain (those an
/// operator's selector matched, with their families); call [`Trace::begin_series`] once per
/// series, in batch order, then [`Trace::step`] or [`Trace::dropped`] for each step.
///
/// ```
/// use promrelay_sdk::{testing, Batch, Error, Explain, Filter, Trace};
///
/// struct DropGo;
///
/// impl Filter for DropGo {
///     type Config = serde::de::IgnoredAny;
///     fn init(_: Self::Config) -> Result<Self, Error> {
///         Ok(DropGo)
///     }
///     fn process(&mut self, batch: &mut Batch<'_>) -> Result<(), Error> {
///         batch.retain(|series| !series.name().starts_with("go_"));
///         Ok(())
///     }
/// }
///
/// impl Explain for DropGo {
///     fn explain(&mut self, batch: &Batch<'_>, trace: &mut Trace) -> Result<(), Error> {
///         for series in batch.series() {
///             trace.begin_series();
///             if series.name().starts_with("go_") {
///                 trace.dropped("name starts with go_", true);
///             } else {
///                 trace.step("name starts with go_", false, series.labels());
///             }
///         }
///         Ok(())
///     }
/// }
///
/// let json = testing::explain::<DropGo>("null", "go_threads 8\n").unwrap();
/// assert_eq!(
///     json,
///     r#"{"series":[{"steps":[{"dropped":true,"matched":true,"step":"name starts with go_"}]}]}"#
/// );
/// ```
pub trait Explain: Filter {
    /// Describes, for every series of `batch`, each step the filter takes on it.
    fn explain(&mut self, batch: &Batch<'_>, trace: &mut Trace) -> Result<(), Error>;
}

/// The trace being written: one list of steps per series.
#[derive(Debug, Default)]
pub struct Trace {
    series: Vec<Value>,
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Trace {
        Trace::default()
    }

    /// Starts the steps of the next series of the batch.
    pub fn begin_series(&mut self) {
        self.series.push(json!({ "steps": [] }));
    }

    /// One step that kept the series: what it was (a short description, e.g. `rule 2: replace
    /// source_labels=[a] regex="(.*)"`), whether it matched, and the series' labels after it
    /// (`__name__` included).
    pub fn step<'l>(
        &mut self,
        step: &str,
        matched: bool,
        labels: impl IntoIterator<Item = (&'l str, &'l str)>,
    ) {
        let labels: Vec<Value> = labels
            .into_iter()
            .map(|(name, value)| json!([name, value]))
            .collect();
        self.push(json!({ "step": step, "matched": matched, "labels": labels }));
    }

    /// The step that dropped the series (no steps follow it).
    pub fn dropped(&mut self, step: &str, matched: bool) {
        self.push(json!({ "step": step, "matched": matched, "dropped": true }));
    }

    fn push(&mut self, step: Value) {
        if self.series.is_empty() {
            self.begin_series();
        }
        if let Some(Value::Array(steps)) = self
            .series
            .last_mut()
            .and_then(|series| series.get_mut("steps"))
        {
            steps.push(step);
        }
    }

    /// The trace as the JSON text `promrelay_trace` answers with.
    pub fn to_json(&self) -> String {
        let mut top = Map::new();
        top.insert("series".to_owned(), Value::Array(self.series.clone()));
        Value::Object(top).to_string()
    }

    pub(crate) fn clear(&mut self) {
        self.series.clear();
    }
}
