//! WebAssembly filters, host side: every scrape passes through a chain of user-supplied wasm
//! modules (ABI v1, `guest-sdk/ABI.md`) before it is published.
//!
//! Map:
//! - `engine`: a wasmtime engine (one per daemon or CLI command, passed down), its epoch
//!   ticker, compiled-module cache, import/export checks, the `promrelay.log` host import.
//! - `instance`: a live instance and the call protocol under time and memory limits.
//! - `codec`: scrape ↔ batch, validation of guest output, MASK.
//! - `stage`: one configured filter (module + config + instance pool + statistics).
//! - `chain`: the global chain then the job's; [`Chains::apply`] is what the poller calls.
//! - `reload`: hot swap (a no-op when nothing changed), the status report; loads and refusals
//!   go to the chains' own lifecycle [`Events`](crate::lifecycle::Events), never a global.
//! - `watch`: the module file watcher (content changes only, debounced).
//! - `explain`: a chain explained series by series (selector, per-stage diff, the optional
//!   `promrelay_trace` of a filter) for `filter run --explain` and the monitor port's `/explain`.
//! - `cli`: `promrelay filter run|check|new|bench` for filter authors; `scaffold`: the crate
//!   `filter new` writes and where it finds the SDK.
//!
//! **Invariant:** guest code runs only on blocking threads, never on the async executor's, and
//! nothing a guest does — loop, allocate, trap, return garbage — takes the relay down: every
//! failure becomes a [`FilterError`] handled by the filter's `on_error` policy.

mod chain;
pub mod cli;
pub mod codec;
mod engine;
mod error;
pub mod explain;
mod instance;
mod metrics;
mod reload;
mod scaffold;
mod stage;
mod watch;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_reload;
#[cfg(test)]
mod tests_watch;

pub use chain::{
    run_batch, run_stages, run_stages_with_label_limit, Chains, FilterOutcome, FilterSet,
};
pub use engine::{CompiledModule, FilterEngine, EPOCH_TICK, MAX_WASM_STACK};
pub use error::FilterError;
pub use instance::{CallLimits, GuestOutput};
pub use reload::{no_chains_json, ChainPlan, ReloadReport, ReloadStatus};
pub use stage::{Stage, StageStats, MAX_CALLS_PER_INSTANCE};
