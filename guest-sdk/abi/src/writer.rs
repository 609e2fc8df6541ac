//! Builds a batch: strings deduplicated, sections laid out in the canonical order
//! (header, string index, families, series, labels, string bytes).
//!
//! Hot path (once per series of every scrape on the host side): `add_series*` allocate nothing
//! once the writer's vectors have grown; reuse a writer with [`BatchWriter::clear`].

use alloc::vec::Vec;
use core::fmt;

use crate::hash::Interner;
use crate::reader::LabelRecord;
use crate::{
    family, header, series, MetricType, BATCH_VERSION, FAMILY_LEN, HEADER_LEN, LABEL_LEN, MAGIC,
    NAME_LABEL, NONE, SERIES_FLAG_HAS_TIMESTAMP, SERIES_LEN, STRING_ENTRY_LEN,
};

/// Why the writer refused a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// A series was added before any family.
    NoFamily,
    /// The labels given to `add_series` are not strictly sorted by name.
    UnsortedLabels,
    /// A label record refers to a string the writer does not hold.
    NoSuchString { index: u32 },
    /// The batch would pass 4 GiB, the most a u32 offset addresses.
    TooLarge,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::NoFamily => write!(f, "series added before any family"),
            WriteError::UnsortedLabels => {
                write!(f, "labels are not strictly sorted by name (byte order)")
            }
            WriteError::NoSuchString { index } => write!(f, "no string with index {index}"),
            WriteError::TooLarge => write!(f, "batch would exceed 4 GiB"),
        }
    }
}

impl core::error::Error for WriteError {}

#[derive(Debug, Clone, Copy)]
struct FamilyRow {
    name: u32,
    help: u32,
    unit: u32,
    kind: MetricType,
    first_series: u32,
    series_count: u32,
}

#[derive(Debug, Clone, Copy)]
struct SeriesRow {
    /// Index of its family in `families` (the series of a family may be added apart).
    family: u32,
    first_label: u32,
    label_count: u32,
    value: u64,
    timestamp_ms: Option<i64>,
}

/// Builds one batch. See the crate docs for an example.
#[derive(Debug, Clone)]
pub struct BatchWriter {
    strings: Interner,
    families: Vec<FamilyRow>,
    series: Vec<SeriesRow>,
    labels: Vec<LabelRecord>,
    name_label: u32,
    /// Whether every series was added to the last family begun (the layout needs no sort).
    grouped: bool,
}

impl Default for BatchWriter {
    fn default() -> Self {
        BatchWriter::new()
    }
}

impl BatchWriter {
    pub fn new() -> BatchWriter {
        let mut writer = BatchWriter {
            strings: Interner::new(),
            families: Vec::new(),
            series: Vec::new(),
            labels: Vec::new(),
            name_label: 0,
            grouped: true,
        };
        writer.clear();
        writer
    }

    /// Empties the writer, keeping its allocations for the next batch.
    pub fn clear(&mut self) {
        self.strings.clear();
        self.clear_records();
        self.name_label = self
            .strings
            .intern(NAME_LABEL.as_bytes())
            .expect("an empty interner has room for one short string");
    }

    /// Empties the writer's families, series and labels but keeps its string table, so the
    /// next batch of a source whose names and labels repeat (the next scrape of one target)
    /// finds its strings already there. Strings the next batch does not use are still written
    /// with it: see [`unused_strings`](Self::unused_strings) for when to [`clear`](Self::clear)
    /// instead.
    pub fn clear_records(&mut self) {
        self.families.clear();
        self.series.clear();
        self.labels.clear();
        self.grouped = true;
        self.strings.next_epoch();
    }

    /// How many strings of the table no call since the last [`clear_records`](Self::clear_records)
    /// used (left over from earlier batches).
    pub fn unused_strings(&self) -> usize {
        self.strings.len() - self.strings.used()
    }

    pub fn family_count(&self) -> usize {
        self.families.len()
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    pub fn string_count(&self) -> usize {
        self.strings.len()
    }

    /// The index of `text` in the string table, adding it if new.
    pub fn add_string(&mut self, text: &str) -> Result<u32, WriteError> {
        self.strings
            .intern(text.as_bytes())
            .ok_or(WriteError::TooLarge)
    }

    /// The string stored at `index`, if any.
    pub fn string(&self, index: u32) -> Option<&str> {
        if index as usize >= self.strings.len() {
            return None;
        }
        core::str::from_utf8(self.strings.get(index)).ok()
    }

    /// The bytes of the string stored at `index`, if any (no UTF-8 check: every string the
    /// writer holds came in as `&str`).
    pub fn string_bytes(&self, index: u32) -> Option<&[u8]> {
        ((index as usize) < self.strings.len()).then(|| self.strings.get(index))
    }

    /// Starts a family; the series added next belong to it.
    pub fn begin_family(
        &mut self,
        name: &str,
        help: Option<&str>,
        unit: Option<&str>,
        kind: MetricType,
    ) -> Result<(), WriteError> {
        let name = self.add_string(name)?;
        let help = help
            .map(|h| self.add_string(h))
            .transpose()?
            .unwrap_or(NONE);
        let unit = unit
            .map(|u| self.add_string(u))
            .transpose()?
            .unwrap_or(NONE);
        self.begin_family_indices(name, help, unit, kind)
    }

    /// Starts a family from string indices already in the table (`NONE` for no help or unit).
    pub fn begin_family_indices(
        &mut self,
        name: u32,
        help: u32,
        unit: u32,
        kind: MetricType,
    ) -> Result<(), WriteError> {
        for index in [name, help, unit] {
            if index != NONE && index as usize >= self.strings.len() {
                return Err(WriteError::NoSuchString { index });
            }
        }
        if name == NONE {
            return Err(WriteError::NoSuchString { index: name });
        }
        let first_series = u32::try_from(self.series.len()).map_err(|_| WriteError::TooLarge)?;
        self.families.push(FamilyRow {
            name,
            help,
            unit,
            kind,
            first_series,
            series_count: 0,
        });
        Ok(())
    }

    /// The index of the family begun last, for [`add_series_indices_to`](Self::add_series_indices_to).
    pub fn last_family(&self) -> Option<u32> {
        self.families.len().checked_sub(1).map(|i| i as u32)
    }

    /// Sets the metadata of family `family` (string indices from this table, `NONE` for no help
    /// or unit), e.g. once a parser has read all of its HELP, TYPE and UNIT lines.
    pub fn set_family(
        &mut self,
        family: u32,
        help: u32,
        unit: u32,
        kind: MetricType,
    ) -> Result<(), WriteError> {
        for index in [help, unit] {
            if index != NONE && index as usize >= self.strings.len() {
                return Err(WriteError::NoSuchString { index });
            }
        }
        let row = self
            .families
            .get_mut(family as usize)
            .ok_or(WriteError::NoFamily)?;
        row.help = help;
        row.unit = unit;
        row.kind = kind;
        Ok(())
    }

    /// Adds a series to the current family. `labels` must be strictly sorted by name and include
    /// `__name__`.
    pub fn add_series(
        &mut self,
        labels: &[(&str, &str)],
        value: f64,
        timestamp_ms: Option<i64>,
    ) -> Result<(), WriteError> {
        if labels.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
            return Err(WriteError::UnsortedLabels);
        }
        let first_label = self.labels.len();
        for (name, label_value) in labels {
            let name = self.add_string(name)?;
            let label_value = self.add_string(label_value)?;
            self.labels.push(LabelRecord {
                name,
                value: label_value,
            });
        }
        self.push_series(first_label, value, timestamp_ms)
    }

    /// Adds a series named `name` whose other `labels` are sorted by name and exclude
    /// `__name__` (the host's model); `__name__` is merged in at its sorted position.
    pub fn add_series_named<'l>(
        &mut self,
        name: &str,
        labels: impl IntoIterator<Item = (&'l str, &'l str)>,
        value: f64,
        timestamp_ms: Option<i64>,
    ) -> Result<(), WriteError> {
        let first_label = self.labels.len();
        let name_value = self.add_string(name)?;
        let mut name_pending = true;
        let mut previous: Option<&str> = None;
        for (label, label_value) in labels {
            if previous.is_some_and(|p| p >= label) || label == NAME_LABEL {
                self.labels.truncate(first_label);
                return Err(WriteError::UnsortedLabels);
            }
            previous = Some(label);
            if name_pending && label > NAME_LABEL {
                self.labels.push(LabelRecord {
                    name: self.name_label,
                    value: name_value,
                });
                name_pending = false;
            }
            let label = self.add_string(label)?;
            let label_value = self.add_string(label_value)?;
            self.labels.push(LabelRecord {
                name: label,
                value: label_value,
            });
        }
        if name_pending {
            self.labels.push(LabelRecord {
                name: self.name_label,
                value: name_value,
            });
        }
        self.push_series(first_label, value, timestamp_ms)
    }

    /// Adds a series from label records whose indices come from this writer's string table
    /// (e.g. from [`BatchWriter::add_string`]). Order is the caller's responsibility: the host
    /// checks it on every batch it reads back.
    pub fn add_series_indices(
        &mut self,
        labels: &[LabelRecord],
        value: f64,
        timestamp_ms: Option<i64>,
    ) -> Result<(), WriteError> {
        let count = self.strings.len();
        if let Some(bad) = labels
            .iter()
            .flat_map(|l| [l.name, l.value])
            .find(|i| *i as usize >= count)
        {
            return Err(WriteError::NoSuchString { index: bad });
        }
        let first_label = self.labels.len();
        self.labels.extend_from_slice(labels);
        self.push_series(first_label, value, timestamp_ms)
    }

    /// Adds a series to family `family`, which need not be the last one begun: the batch lists
    /// each family's series together, in the order they were added. The label records' indices
    /// come from this writer's string table; their order is the caller's responsibility (the
    /// host checks it on every batch it reads back). Hot path of the host's parser: checks only
    /// the indices.
    pub fn add_series_indices_to(
        &mut self,
        family: u32,
        labels: &[LabelRecord],
        value: f64,
        timestamp_ms: Option<i64>,
    ) -> Result<(), WriteError> {
        let count = self.strings.len() as u32;
        if let Some(bad) = labels
            .iter()
            .flat_map(|l| [l.name, l.value])
            .find(|i| *i >= count)
        {
            return Err(WriteError::NoSuchString { index: bad });
        }
        let first_label = self.labels.len();
        self.labels.extend_from_slice(labels);
        self.push_series_to(family, first_label, value, timestamp_ms)
    }

    fn push_series(
        &mut self,
        first_label: usize,
        value: f64,
        timestamp_ms: Option<i64>,
    ) -> Result<(), WriteError> {
        let Some(last) = self.last_family() else {
            self.labels.truncate(first_label);
            return Err(WriteError::NoFamily);
        };
        self.push_series_to(last, first_label, value, timestamp_ms)
    }

    fn push_series_to(
        &mut self,
        family_index: u32,
        first_label: usize,
        value: f64,
        timestamp_ms: Option<i64>,
    ) -> Result<(), WriteError> {
        let last = self.families.len().wrapping_sub(1);
        let Some(family) = self.families.get_mut(family_index as usize) else {
            self.labels.truncate(first_label);
            return Err(WriteError::NoFamily);
        };
        if family_index as usize != last {
            self.grouped = false;
        }
        let label_count = self.labels.len() - first_label;
        let (Ok(first), Ok(count)) = (u32::try_from(first_label), u32::try_from(label_count))
        else {
            self.labels.truncate(first_label);
            return Err(WriteError::TooLarge);
        };
        family.series_count += 1;
        self.series.push(SeriesRow {
            family: family_index,
            first_label: first,
            label_count: count,
            value: value.to_bits(),
            timestamp_ms,
        });
        if self.encoded_len() > u32::MAX as u64 {
            return Err(WriteError::TooLarge);
        }
        Ok(())
    }

    fn encoded_len(&self) -> u64 {
        (HEADER_LEN
            + self.strings.len() * STRING_ENTRY_LEN
            + self.families.len() * FAMILY_LEN
            + self.series.len() * SERIES_LEN
            + self.labels.len() * LABEL_LEN) as u64
            + self.strings.bytes.len() as u64
    }

    /// Encodes the batch.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.finish_into(&mut out);
        out
    }

    /// Encodes the batch into `out` (cleared first), reusing its allocation. Families whose
    /// series were added apart get them listed together, in the order they were added.
    pub fn finish_into(&self, out: &mut Vec<u8>) {
        let strings_offset = HEADER_LEN;
        let families_offset = strings_offset + self.strings.len() * STRING_ENTRY_LEN;
        let series_offset = families_offset + self.families.len() * FAMILY_LEN;
        let labels_offset = series_offset + self.series.len() * SERIES_LEN;
        let bytes_offset = labels_offset + self.labels.len() * LABEL_LEN;
        let total = bytes_offset + self.strings.bytes.len();
        let as_u32 = |n: usize| {
            u32::try_from(n).expect("the adders refuse records that would pass u32::MAX bytes")
        };

        out.clear();
        out.reserve(total);
        out.extend_from_slice(&MAGIC);
        let fields = [
            (header::VERSION, BATCH_VERSION),
            (header::STRING_COUNT, as_u32(self.strings.len())),
            (header::FAMILY_COUNT, as_u32(self.families.len())),
            (header::SERIES_COUNT, as_u32(self.series.len())),
            (header::LABEL_COUNT, as_u32(self.labels.len())),
            (header::STRINGS_OFFSET, as_u32(strings_offset)),
            (header::STRING_BYTES_OFFSET, as_u32(bytes_offset)),
            (header::FAMILIES_OFFSET, as_u32(families_offset)),
            (header::SERIES_OFFSET, as_u32(series_offset)),
            (header::LABELS_OFFSET, as_u32(labels_offset)),
            (header::TOTAL_LEN, as_u32(total)),
        ];
        for (at, value) in fields {
            debug_assert_eq!(out.len(), at);
            out.extend_from_slice(&value.to_le_bytes());
        }
        for &(offset, len) in &self.strings.entries {
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
        let mut first_series = 0u32;
        for f in &self.families {
            let start = out.len();
            // Series added apart are written grouped: each family's series follow the last one's.
            let first = if self.grouped {
                f.first_series
            } else {
                first_series
            };
            first_series += f.series_count;
            for value in [f.name, f.help, f.unit, f.kind.code(), first, f.series_count] {
                out.extend_from_slice(&value.to_le_bytes());
            }
            debug_assert_eq!(out.len() - start, family::SERIES_COUNT + 4);
        }
        // Ungrouped (a source whose families' samples are not contiguous): a stable sort of the
        // positions by family, the one allocation beyond `out`.
        let order: Option<Vec<u32>> = (!self.grouped).then(|| {
            let mut order: Vec<u32> = (0..self.series.len() as u32).collect();
            order.sort_by_key(|&i| self.series[i as usize].family);
            order
        });
        let rows = (0..self.series.len()).map(|i| match &order {
            Some(order) => &self.series[order[i] as usize],
            None => &self.series[i],
        });
        for s in rows {
            let start = out.len();
            out.extend_from_slice(&s.first_label.to_le_bytes());
            out.extend_from_slice(&s.label_count.to_le_bytes());
            out.extend_from_slice(&s.value.to_le_bytes());
            out.extend_from_slice(&s.timestamp_ms.unwrap_or(0).to_le_bytes());
            let flags = if s.timestamp_ms.is_some() {
                SERIES_FLAG_HAS_TIMESTAMP
            } else {
                0
            };
            out.extend_from_slice(&flags.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            debug_assert_eq!(out.len() - start, series::RESERVED + 4);
        }
        for l in &self.labels {
            out.extend_from_slice(&l.name.to_le_bytes());
            out.extend_from_slice(&l.value.to_le_bytes());
        }
        out.extend_from_slice(&self.strings.bytes);
        debug_assert_eq!(out.len(), total);
    }
}
