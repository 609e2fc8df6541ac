//! Why a filter call or a module load failed, by kind.
//!
//! Callers decide by kind: the chain maps every call error to the filter's `on_error` policy and
//! counts it under [`FilterError::kind`]; reload reports load errors and keeps the old chain.

use thiserror::Error;

/// A failed filter load or call.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum FilterError {
    /// The guest trapped (unreachable, out-of-bounds access, stack overflow, ...). `message`
    /// holds the trap and, when the guest logged an error just before, its own words.
    #[error("filter trapped: {message}")]
    Trap { message: String },
    /// The call ran past its time limit and was interrupted.
    #[error("filter ran past its time limit of {limit_ms} ms")]
    Timeout { limit_ms: u64 },
    /// The guest tried to grow its memory past the limit.
    #[error("filter exceeded its memory limit of {limit} bytes")]
    OutOfMemory { limit: u64 },
    /// What the guest handed back broke the ABI (bad pointer, bad length, bad batch).
    #[error("filter returned invalid output: {reason}")]
    InvalidOutput { reason: String },
    /// The guest reported an error status with its own message (a Rust panic's text).
    #[error("filter reported error (status {status}): {message}")]
    Guest { status: i32, message: String },
    /// The input batch is larger than the filter may be handed.
    #[error("input batch of {len} bytes exceeds the limit of {limit} bytes")]
    InputTooLarge { len: usize, limit: usize },
    /// The module could not be read, compiled, linked, instantiated or initialised.
    #[error("{0}")]
    Load(String),
    /// A host-side failure unrelated to the guest (a panicked worker thread).
    #[error("filter host error: {0}")]
    Host(String),
}

impl FilterError {
    /// The `kind` label of `promrelay_filter_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            FilterError::Trap { .. } => "trap",
            FilterError::Timeout { .. } => "timeout",
            FilterError::OutOfMemory { .. } => "out_of_memory",
            FilterError::InvalidOutput { .. } => "invalid_output",
            FilterError::Guest { .. } => "guest_error",
            FilterError::InputTooLarge { .. } => "input_too_large",
            FilterError::Load(_) => "load",
            FilterError::Host(_) => "host",
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> FilterError {
        FilterError::InvalidOutput {
            reason: reason.into(),
        }
    }

    pub(crate) fn load(message: impl Into<String>) -> FilterError {
        FilterError::Load(message.into())
    }
}
