//! The Prometheus text exposition format (0.0.4, plus the OpenMetrics basics): bytes in, the
//! poller's batch ([`ScrapeWriter`]) or `model` families ([`parse`]) out, and families or a batch
//! back to text a Pushgateway accepts ([`render`], [`render_skipping`]).
//!
//! The poller, the receiver, the filter tools and the tests all use this one parser, so what one of
//! them accepts the others accept too. It is hand written over `memchr` and `fast-float2` because the
//! crates on the registry parse at a tenth of the speed (see `BENCHMARKS.md`).
//!
//! **Invariant:** a malformed input fails as a whole with the 1-based line number and the reason;
//! [`parse`] never returns half a scrape. [`parse_with_label_limit`] (what the poller uses) also
//! fails a sample with more labels than the job's `label_limit`, naming its line: the one place
//! the limit is applied to a scrape (filter output is held to the same count, see
//! `model::DEFAULT_LABEL_LIMIT`). Every `Series` it returns has its labels sorted by name,
//! without `__name__` and without duplicates (the `model` invariant).
//!
//! This module owns the text syntax only. It never adds or drops series by policy (target labels
//! and relabelling belong to `scrape` and `filter`), and it does no I/O. The one exception:
//! [`render`] writes a series repeated with the same name and labels once (the first), because the
//! Pushgateway answers 400 to a whole push that holds a duplicate.
//!
//! Choices made where the format leaves room (each has a test in `tests.rs`):
//! - Rendering maps OpenMetrics-only shapes to what 0.0.4 understands (see `render.rs`): `foo` +
//!   `foo_total` becomes `# TYPE foo_total counter`, `_created`/`_gsum`/`_gcount` become gauges,
//!   info and stateset become gauges, gauge-histogram buckets become untyped. Untyped families get
//!   HELP but no TYPE line.
//! - Lines may end in `\n` or `\r\n`; the `\r` is dropped. Render always writes `\n`.
//! - `__name__` inside braces is an error (`label name "__name__" is reserved`), as in Prometheus'
//!   Go text parser: the metric name is only ever the token before the braces.
//! - Label values accept the escapes `\\`, `\"` and `\n`; any other escape is an error. HELP text
//!   accepts `\\` and `\n`; any other backslash is kept literally (it renders back as `\\`).
//! - All NaNs parse to the one canonical `f64::NAN`: the text format cannot carry NaN payloads (the
//!   staleness marker survives only in the binary wire format).
//! - Timestamps are integer milliseconds (an OpenMetrics float-seconds timestamp is rejected, and
//!   so is an OpenMetrics exemplar ` # {..} v` after the value: the poller asks for text 0.0.4).
//! - `# HELP name` without text gives an empty help; a bare `# HELP` or `# TYPE` is a comment.
//! - A `# HELP`/`# TYPE` for a name that never gets a sample is dropped, as Prometheus does.
//! - Samples of one family need not be contiguous; they are gathered into the family by name.
//!   Histogram/summary children (`_bucket`, `_sum`, `_count`, `_created`), OpenMetrics counter
//!   children (`_total`, `_created`), `_info` for info and `_gsum`/`_gcount` for gauge histograms
//!   join the family named by `# TYPE`.
//! - `# UNIT` is kept in `Family::unit` and rendered back as a `# UNIT` comment, which 0.0.4
//!   parsers ignore. `# EOF` ends the input; anything but blank lines after it is an error.

mod batch;
mod parse;
mod render;
mod scan;

#[cfg(test)]
mod batch_tests;
#[cfg(test)]
mod error_tests;
#[cfg(test)]
mod roundtrip_tests;
#[cfg(test)]
mod tests;

pub use batch::ScrapeWriter;
pub use parse::{parse, parse_with_label_limit, LabelLimit};
pub use render::{render, render_skipping, render_to_string, BatchSource, Source};

/// Why an exposition could not be parsed: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line number of the offending line.
    pub line: usize,
    /// What is wrong, naming the metric or the offending text where it can.
    pub reason: String,
}

/// How [`render`] writes samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderOptions {
    /// Write the samples' timestamps (the Pushgateway rejects samples that carry one).
    pub timestamps: bool,
    /// Labels left out of every sample (the Pushgateway's grouping labels, which its URL
    /// supplies). Series that differ only in these are written once, the first.
    pub omit_labels: &'static [&'static str],
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            timestamps: true,
            omit_labels: &[],
        }
    }
}
