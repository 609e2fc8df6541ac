//! Run a filter in-process, without wasm, for `cargo test`.
//!
//! The harness drives the filter through the same code the wasm exports use (config parsing,
//! status codes, MASK and REPLACED encoding, panic capture); only the pointer glue differs. Inputs
//! and outputs are Prometheus text, so a test reads like the scrape it filters:
//!
//! ```
//! use promrelay_sdk::{testing, Batch, Error, Filter};
//!
//! struct DropDebug;
//!
//! impl Filter for DropDebug {
//!     type Config = serde::de::IgnoredAny;
//!     fn init(_: Self::Config) -> Result<Self, Error> {
//!         Ok(DropDebug)
//!     }
//!     fn process(&mut self, batch: &mut Batch<'_>) -> Result<(), Error> {
//!         batch.retain(|series| series.label("level") != Some("debug"));
//!         Ok(())
//!     }
//! }
//!
//! let output = testing::run::<DropDebug>(
//!     "null",
//!     "# TYPE log_lines_total counter\n\
//!      log_lines_total{level=\"debug\"} 7\n\
//!      log_lines_total{level=\"error\"} 1\n",
//! )
//! .unwrap();
//! assert_eq!(output, "# TYPE log_lines_total counter\nlog_lines_total{level=\"error\"} 1\n");
//! ```
//!
//! Text in, text out: samples are grouped into families by their `# TYPE` line (or one untyped
//! family per run of same-named samples); the output prints `# HELP` and `# TYPE` only where a
//! family has them, and values with Rust's shortest round-trip formatting (`1`, `0.5`, `NaN`,
//! `+Inf`).

use promrelay_abi::{mask_keeps, status, BatchReader, BatchWriter};

use crate::error::Error;
use crate::runtime::Runtime;
use crate::Filter;

/// What a filter answered for one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Unchanged.
    Pass,
    /// Keep bitmap over the input's series.
    Mask(Vec<u8>),
    /// A whole new batch.
    Replaced(Vec<u8>),
}

/// One filter instance, initialised with a config, ready for any number of batches (state
/// carries over between them, as in the relay).
///
/// ```
/// # use promrelay_sdk::{testing::Harness, Batch, Error, Filter};
/// # struct Identity;
/// # impl Filter for Identity {
/// #     type Config = serde::de::IgnoredAny;
/// #     fn init(_: Self::Config) -> Result<Self, Error> { Ok(Identity) }
/// #     fn process(&mut self, _: &mut Batch<'_>) -> Result<(), Error> { Ok(()) }
/// # }
/// let mut harness = Harness::<Identity>::new("null").unwrap();
/// assert_eq!(harness.process_text("up 1\n").unwrap(), "up 1\n");
/// assert_eq!(harness.process_text("up 0\n").unwrap(), "up 0\n");
/// ```
pub struct Harness<F: Filter> {
    runtime: Runtime<F>,
}

impl<F: Filter> Harness<F> {
    /// Runs the filter's `init` with `config_json` (`"null"` for no config).
    pub fn new(config_json: &str) -> Result<Harness<F>, Error> {
        let mut runtime = Runtime::<F>::new();
        let code = call(&mut runtime, config_json.as_bytes(), Runtime::init)?;
        if code != status::PASS {
            return Err(Error::new(format!("init returned status {code}")));
        }
        Ok(Harness { runtime })
    }

    /// Replaces the filter instance (a test can swap in a differently built one).
    #[cfg(test)]
    pub(crate) fn runtime_filter(&mut self, filter: F) {
        self.runtime.set_filter(filter);
    }

    /// Runs the filter on an encoded batch and returns its answer; an error status becomes an
    /// `Err` carrying the filter's message.
    pub fn process(&mut self, batch: &[u8]) -> Result<Outcome, Error> {
        let code = call(&mut self.runtime, batch, Runtime::process)?;
        let output = self.runtime.output().to_vec();
        match code {
            status::PASS => Ok(Outcome::Pass),
            status::MASK => Ok(Outcome::Mask(output)),
            status::REPLACED => Ok(Outcome::Replaced(output)),
            other => Err(Error::new(format!(
                "process returned unknown status {other}"
            ))),
        }
    }

    /// Runs the filter on a scrape in Prometheus text and returns the result as text.
    pub fn process_text(&mut self, text: &str) -> Result<String, Error> {
        let input = batch_from_text(text)?;
        let outcome = self.process(&input)?;
        text_from_batch(&apply(&input, &outcome)?)
    }
}

impl<F: crate::Explain> Harness<F> {
    /// Runs the filter's `promrelay_trace` on a scrape in Prometheus text and returns the trace
    /// JSON (ABI.md §10), as `promrelay filter run --explain` receives it.
    pub fn explain_text(&mut self, text: &str) -> Result<String, Error> {
        let input = batch_from_text(text)?;
        call(&mut self.runtime, &input, Runtime::trace)?;
        Ok(String::from_utf8_lossy(self.runtime.output()).into_owned())
    }
}

/// Copies `input` into the runtime's buffer and runs `entry`, as the relay does.
fn call<F: Filter>(
    runtime: &mut Runtime<F>,
    input: &[u8],
    entry: fn(&mut Runtime<F>, usize) -> i32,
) -> Result<i32, Error> {
    let buffer = runtime
        .reserve(input.len())
        .ok_or_else(|| Error::new("reserve failed"))?;
    buffer[..input.len()].copy_from_slice(input);
    let code = entry(runtime, input.len());
    if status::is_error(code) {
        let message = String::from_utf8_lossy(runtime.output()).into_owned();
        let kind = match code {
            status::BAD_INPUT => "bad input",
            status::BAD_CONFIG => "bad config",
            status::PANIC => "panic",
            _ => "error",
        };
        return Err(Error::new(format!("{kind}: {message}")));
    }
    Ok(code)
}

/// Runs a filter once: `init` with `config_json`, then `process` on the scrape `text`; returns
/// the filtered scrape as text.
pub fn run<F: Filter>(config_json: &str, text: &str) -> Result<String, Error> {
    Harness::<F>::new(config_json)?.process_text(text)
}

/// Runs a filter's trace once: `init` with `config_json`, then `promrelay_trace` on the scrape
/// `text`; returns the trace JSON.
pub fn explain<F: crate::Explain>(config_json: &str, text: &str) -> Result<String, Error> {
    Harness::<F>::new(config_json)?.explain_text(text)
}

/// Encodes a scrape in Prometheus text as a batch.
pub fn batch_from_text(text: &str) -> Result<Vec<u8>, Error> {
    crate::text::parse(text)
}

/// Renders a batch as Prometheus text.
pub fn text_from_batch(batch: &[u8]) -> Result<String, Error> {
    crate::text::render(batch)
}

/// The batch the relay would continue with: `input` itself, `input` minus the series a MASK
/// drops (families it empties go, as in the relay), or the replacement (validated like the relay
/// validates it).
pub fn apply(input: &[u8], outcome: &Outcome) -> Result<Vec<u8>, Error> {
    let bad = |e: promrelay_abi::BatchError| Error::new(format!("invalid batch: {e}"));
    match outcome {
        Outcome::Pass => Ok(input.to_vec()),
        Outcome::Replaced(batch) => {
            let reader = BatchReader::new(batch).map_err(bad)?;
            reader.check_names().map_err(bad)?;
            Ok(batch.clone())
        }
        Outcome::Mask(mask) => {
            let reader = BatchReader::new(input).map_err(bad)?;
            if mask.len() != promrelay_abi::mask_len(reader.series_count() as usize) {
                return Err(Error::new(format!(
                    "mask of {} bytes has the wrong length",
                    mask.len()
                )));
            }
            let mut writer = BatchWriter::new();
            let write = |e: promrelay_abi::WriteError| Error::new(e.to_string());
            let mut labels = Vec::new();
            for family in reader.families() {
                let range = family.first_series..family.first_series + family.series_count;
                // As in the relay (ABI.md §4.5): a family goes when the mask drops all of its
                // series, not when it had none.
                if family.series_count > 0 && !range.clone().any(|i| mask_keeps(mask, i as usize)) {
                    continue;
                }
                let text = |i| reader.str(i).map_err(bad);
                let optional = |i| reader.opt_str(i).map_err(bad);
                writer
                    .begin_family(
                        text(family.name)?,
                        optional(family.help)?,
                        optional(family.unit)?,
                        family.kind,
                    )
                    .map_err(write)?;
                for index in range.filter(|i| mask_keeps(mask, *i as usize)) {
                    let series = reader.series(index).map_err(bad)?;
                    labels.clear();
                    for label in reader.labels(&series) {
                        labels.push((text(label.name)?, text(label.value)?));
                    }
                    writer
                        .add_series(&labels, series.value, series.timestamp_ms)
                        .map_err(write)?;
                }
            }
            Ok(writer.finish())
        }
    }
}

/// Takes the lines the filter logged on this thread so far, as `(level, text)` with the ABI's
/// level numbers (0 error … 4 trace).
pub fn take_logs() -> Vec<(i32, String)> {
    crate::logger::take_captured()
}
