//! The Prometheus-level rules a valid batch also follows: name syntax, sorted unique labels,
//! `__name__` on every series. The host runs these on every REPLACED output.

use alloc::vec;

use crate::error::BatchError;
use crate::reader::BatchReader;
use crate::NAME_LABEL;

/// Whether `name` is a valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
///
/// ```
/// assert!(promrelay_abi::is_valid_metric_name("node_cpu_seconds_total"));
/// assert!(!promrelay_abi::is_valid_metric_name("9lives"));
/// ```
pub fn is_valid_metric_name(name: impl AsRef<[u8]>) -> bool {
    match name.as_ref().split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_' || *first == b':')
                && rest
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b':')
        }
        None => false,
    }
}

/// Whether `name` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
///
/// ```
/// assert!(promrelay_abi::is_valid_label_name("__name__"));
/// assert!(!promrelay_abi::is_valid_label_name("a:b"));
/// ```
pub fn is_valid_label_name(name: impl AsRef<[u8]>) -> bool {
    match name.as_ref().split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }
        None => false,
    }
}

// Per-string memo bits, so each distinct string is checked at most once per kind.
const LABEL_CHECKED: u8 = 1;
const LABEL_OK: u8 = 2;
const METRIC_CHECKED: u8 = 4;
const METRIC_OK: u8 = 8;

impl BatchReader<'_> {
    /// Checks the naming rules: every family name and `__name__` value is a valid metric name,
    /// every label name is a valid label name, each series' labels are strictly sorted by name
    /// (byte order, so no duplicates) and include `__name__`.
    ///
    /// Allocates one byte per string (a memo); otherwise linear in the number of labels.
    pub fn check_names(&self) -> Result<(), BatchError> {
        let mut memo = vec![0u8; self.string_count() as usize];
        let mut metric_ok = |reader: &Self, string: u32| -> Result<bool, BatchError> {
            let state = &mut memo[string as usize];
            if *state & METRIC_CHECKED == 0 {
                *state |= METRIC_CHECKED;
                if is_valid_metric_name(reader.bytes(string)?) {
                    *state |= METRIC_OK;
                }
            }
            Ok(*state & METRIC_OK != 0)
        };
        for family in self.families() {
            if !metric_ok(self, family.name)? {
                return Err(BatchError::BadMetricName {
                    string: family.name,
                });
            }
        }
        let mut name_memo = vec![0u8; self.string_count() as usize];
        for index in 0..self.series_count() {
            let series = self.series(index)?;
            let mut previous: Option<&[u8]> = None;
            let mut has_name = false;
            for label in self.labels(&series) {
                let name = self.bytes(label.name)?;
                let state = &mut name_memo[label.name as usize];
                if *state & LABEL_CHECKED == 0 {
                    *state |= LABEL_CHECKED;
                    if is_valid_label_name(name) {
                        *state |= LABEL_OK;
                    }
                }
                if *state & LABEL_OK == 0 {
                    return Err(BatchError::BadLabelName {
                        series: index,
                        string: label.name,
                    });
                }
                if previous.is_some_and(|p| p >= name) {
                    return Err(BatchError::UnsortedLabels { series: index });
                }
                previous = Some(name);
                if name == NAME_LABEL.as_bytes() {
                    has_name = true;
                    if !metric_ok(self, label.value)? {
                        return Err(BatchError::BadMetricName {
                            string: label.value,
                        });
                    }
                }
            }
            if !has_name {
                return Err(BatchError::MissingName { series: index });
            }
        }
        Ok(())
    }
}
