#![no_std]
#![forbid(unsafe_code)]
//! The promrelay filter ABI, version 1: every constant and the batch layout, defined once.
//!
//! Both sides depend on this crate: the host engine (`promrelay::filter`) encodes scrapes with
//! [`BatchWriter`] and validates what a guest hands back with [`BatchReader`]; the guest SDK
//! (`promrelay-sdk`) reads its input with [`BatchReader`] and encodes replacements with
//! [`BatchWriter`]. `guest-sdk/ABI.md` is the prose description of the same contract, for authors
//! who write filters in WAT, C or anything else that targets core wasm.
//!
//! **Invariant:** this crate knows nothing about wasm runtimes, pointers or the host's model types:
//! it only turns bytes into records and records into bytes. It has no dependencies, no `unsafe`,
//! and builds for `wasm32-unknown-unknown` as well as the host.
//!
//! # Batch layout (all integers little-endian, all sections 8-byte aligned)
//!
//! ```text
//! header   48 bytes          magic "PRB1", version, counts, section offsets, total_len
//! strings  string_count × 8  {u32 offset into the string bytes area, u32 len}
//! families family_count × 24 {name, help, unit, type, first_series, series_count}
//! series   series_count × 32 {first_label, label_count, f64 bits, i64 timestamp_ms, flags, 0}
//! labels   label_count × 8   {u32 name string, u32 value string}
//! bytes    UTF-8 string bytes, from string_bytes_offset to total_len (always the last section)
//! ```
//!
//! ```
//! use promrelay_abi::{BatchReader, BatchWriter, MetricType};
//!
//! let mut writer = BatchWriter::new();
//! writer.begin_family("up", Some("Target is up."), None, MetricType::Gauge).unwrap();
//! writer.add_series(&[("__name__", "up"), ("job", "node")], 1.0, None).unwrap();
//! let bytes = writer.finish();
//!
//! let batch = BatchReader::new(&bytes).unwrap();
//! let family = batch.family(0).unwrap();
//! assert_eq!(batch.str(family.name).unwrap(), "up");
//! let series = batch.series(0).unwrap();
//! assert_eq!(series.value, 1.0);
//! let labels: Vec<_> = batch
//!     .labels(&series)
//!     .map(|l| (batch.str(l.name).unwrap(), batch.str(l.value).unwrap()))
//!     .collect();
//! assert_eq!(labels, [("__name__", "up"), ("job", "node")]);
//! ```

extern crate alloc;

mod error;
mod hash;
mod reader;
mod semantics;
mod writer;

#[cfg(test)]
mod tests;

pub use error::BatchError;
pub use reader::{BatchReader, FamilyRecord, Header, LabelRecord, Labels, SeriesRecord};
pub use semantics::{is_valid_label_name, is_valid_metric_name};
pub use writer::{BatchWriter, WriteError};

/// The value `promrelay_abi_version()` must return for this ABI.
pub const ABI_VERSION: i32 = 1;

/// The first four bytes of every batch.
pub const MAGIC: [u8; 4] = *b"PRB1";
/// The batch layout version stored at offset 4.
pub const BATCH_VERSION: u32 = 1;

/// A string index meaning "no string" (a family without HELP or UNIT).
pub const NONE: u32 = u32::MAX;

/// Alignment of every section start, in bytes.
pub const SECTION_ALIGN: usize = 8;
/// Size of the header.
pub const HEADER_LEN: usize = 48;
/// Size of one entry of the string index table.
pub const STRING_ENTRY_LEN: usize = 8;
/// Size of one family record.
pub const FAMILY_LEN: usize = 24;
/// Size of one series record.
pub const SERIES_LEN: usize = 32;
/// Size of one label record.
pub const LABEL_LEN: usize = 8;

/// The label carrying a series' sample name, included in every series' label list.
pub const NAME_LABEL: &str = "__name__";

/// Series flag bit 0: the series carries a timestamp.
pub const SERIES_FLAG_HAS_TIMESTAMP: u32 = 1;

/// Byte offsets of the header fields.
pub mod header {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const STRING_COUNT: usize = 8;
    pub const FAMILY_COUNT: usize = 12;
    pub const SERIES_COUNT: usize = 16;
    pub const LABEL_COUNT: usize = 20;
    pub const STRINGS_OFFSET: usize = 24;
    pub const STRING_BYTES_OFFSET: usize = 28;
    pub const FAMILIES_OFFSET: usize = 32;
    pub const SERIES_OFFSET: usize = 36;
    pub const LABELS_OFFSET: usize = 40;
    pub const TOTAL_LEN: usize = 44;
}

/// Byte offsets of the fields inside one family record.
pub mod family {
    pub const NAME: usize = 0;
    pub const HELP: usize = 4;
    pub const UNIT: usize = 8;
    pub const TYPE: usize = 12;
    pub const FIRST_SERIES: usize = 16;
    pub const SERIES_COUNT: usize = 20;
}

/// Byte offsets of the fields inside one series record.
pub mod series {
    pub const FIRST_LABEL: usize = 0;
    pub const LABEL_COUNT: usize = 4;
    pub const VALUE: usize = 8;
    pub const TIMESTAMP: usize = 16;
    pub const FLAGS: usize = 24;
    pub const RESERVED: usize = 28;
}

/// Return values of `promrelay_init` and `promrelay_process`.
pub mod status {
    /// The batch is unchanged; there is no output.
    pub const PASS: i32 = 0;
    /// The output is a keep bitmap over the input's series.
    pub const MASK: i32 = 1;
    /// The output is a whole new batch.
    pub const REPLACED: i32 = 2;
    /// Generic error; the output is UTF-8 error text. Any negative status is an error.
    pub const ERROR: i32 = -1;
    /// The guest could not read its input.
    pub const BAD_INPUT: i32 = -2;
    /// The filter refused its configuration.
    pub const BAD_CONFIG: i32 = -3;
    /// The guest panicked; the output is the panic message.
    pub const PANIC: i32 = -4;

    /// Whether `status` is one of the error statuses.
    pub const fn is_error(status: i32) -> bool {
        status < 0
    }
}

/// Names of the functions and memory a filter module exports.
pub mod export {
    pub const MEMORY: &str = "memory";
    /// `() -> i32`, must return [`crate::ABI_VERSION`].
    pub const ABI_VERSION: &str = "promrelay_abi_version";
    /// `(len: i32) -> i32`: grow the input buffer to at least `len` bytes, return its address.
    pub const RESERVE: &str = "promrelay_reserve";
    /// `(len: i32) -> i32`: the input buffer holds the config JSON; returns a status.
    pub const INIT: &str = "promrelay_init";
    /// `(len: i32) -> i32`: the input buffer holds a batch; returns a status.
    pub const PROCESS: &str = "promrelay_process";
    /// `() -> i32`: address of the last call's output.
    pub const OUTPUT_PTR: &str = "promrelay_output_ptr";
    /// `() -> i32`: length of the last call's output.
    pub const OUTPUT_LEN: &str = "promrelay_output_len";

    /// Optional, `(len: i32) -> i32`: the input buffer holds a batch of the series to explain;
    /// returns a status, the output is the trace as JSON (ABI.md §10). Called only by
    /// `promrelay filter run --explain` and the monitor port's `/explain`, never per scrape.
    pub const TRACE: &str = "promrelay_trace";

    /// Every required function export, in the order ABI.md lists them.
    pub const FUNCTIONS: [&str; 6] = [ABI_VERSION, RESERVE, INIT, PROCESS, OUTPUT_PTR, OUTPUT_LEN];
}

/// The one function a filter may import.
pub mod import {
    /// Import module name.
    pub const MODULE: &str = "promrelay";
    /// `log(level: i32, ptr: i32, len: i32)`: UTF-8 text at `ptr..ptr+len` in the guest's memory.
    pub const LOG: &str = "log";
}

/// Levels of the `promrelay.log` import.
pub mod log_level {
    pub const ERROR: i32 = 0;
    pub const WARN: i32 = 1;
    pub const INFO: i32 = 2;
    pub const DEBUG: i32 = 3;
    pub const TRACE: i32 = 4;
}

/// The metric type of a family, with its ABI type code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u32)]
pub enum MetricType {
    #[default]
    Untyped = 0,
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
    Summary = 4,
    GaugeHistogram = 5,
    Info = 6,
    StateSet = 7,
}

impl MetricType {
    /// The type for an ABI type code, `None` for an unknown code.
    pub const fn from_code(code: u32) -> Option<MetricType> {
        Some(match code {
            0 => MetricType::Untyped,
            1 => MetricType::Counter,
            2 => MetricType::Gauge,
            3 => MetricType::Histogram,
            4 => MetricType::Summary,
            5 => MetricType::GaugeHistogram,
            6 => MetricType::Info,
            7 => MetricType::StateSet,
            _ => return None,
        })
    }

    /// The ABI type code.
    pub const fn code(self) -> u32 {
        self as u32
    }
}

/// Length in bytes of a MASK output (keep bitmap) for `series_count` series.
pub const fn mask_len(series_count: usize) -> usize {
    series_count.div_ceil(8)
}

/// Whether series `index` is kept by the keep bitmap `mask` (bit `index % 8` of byte `index / 8`,
/// least significant bit first). Bits beyond the mask read as "drop".
pub fn mask_keeps(mask: &[u8], index: usize) -> bool {
    mask.get(index / 8)
        .is_some_and(|byte| byte & (1 << (index % 8)) != 0)
}

/// Whether `mask` keeps every one of `series_count` series (bits past them are ignored): such a
/// MASK means exactly what PASS means.
pub fn mask_keeps_all(mask: &[u8], series_count: usize) -> bool {
    let full = series_count / 8;
    let rest = series_count % 8;
    mask.len() >= mask_len(series_count)
        && mask[..full].iter().all(|&byte| byte == 0xFF)
        && (rest == 0 || mask[full] & ((1u8 << rest) - 1) == (1u8 << rest) - 1)
}

/// Sets or clears the keep bit of series `index`; ignores an index beyond the mask.
pub fn mask_set(mask: &mut [u8], index: usize, keep: bool) {
    if let Some(byte) = mask.get_mut(index / 8) {
        let bit = 1u8 << (index % 8);
        if keep {
            *byte |= bit;
        } else {
            *byte &= !bit;
        }
    }
}
