//! `relabel`: Prometheus `relabel_configs`, applied to every series of a scrape.
//!
//! - [`config`] parses and validates the filter configuration (`{ relabel_configs: [...] }`) into
//!   compiled [`config::Rule`]s, with Prometheus' defaults and error wording.
//! - [`engine`] applies the rules to one series' sorted label set (`__name__` included).
//! - [`text`] holds the Go-compatible pieces: template expansion, name grammar, RE2 translation.
//! - [`filter`] wires them into the promrelay SDK: PASS / MASK / REPLACED, family regrouping, and
//!   the per-series outcome cache (`edits` holds the edits it replays).
//! - `explain` is the optional per-rule trace (`promrelay_trace`), for debugging only.
//!
//! The relabel logic does not depend on the filter ABI, so it is tested and benchmarked natively;
//! the filter itself runs natively too through `promrelay_sdk::testing`.

pub mod config;
mod edits;
pub mod engine;
mod explain;
pub mod filter;
pub mod text;

pub use filter::Relabel;

promrelay_sdk::export_filter!(Relabel, explain);

pub use config::{parse, Action, ConfigError, Problem, RelabelConfig, Rule, Settings};
pub use engine::{process, Label, LabelSet, Relabeler};
