//! A zero-copy, validating view of a batch.
//!
//! [`BatchReader::new`] checks the whole structure once (header, section bounds and alignment,
//! every string's bounds and UTF-8, every index a record holds, family series ranges), so the
//! accessors afterwards only fail when the caller asks for an index past the end.
//! [`BatchReader::check_names`] adds the Prometheus-level rules the host enforces on guest output.
//!
//! **Invariant:** nothing here allocates per record or copies string bytes; every `&str` handed
//! out borrows from the batch.

use crate::error::BatchError;
use crate::{
    family, header, series, MetricType, BATCH_VERSION, FAMILY_LEN, HEADER_LEN, LABEL_LEN, MAGIC,
    NONE, SECTION_ALIGN, SERIES_FLAG_HAS_TIMESTAMP, SERIES_LEN, STRING_ENTRY_LEN,
};

/// The decoded header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub string_count: u32,
    pub family_count: u32,
    pub series_count: u32,
    pub label_count: u32,
    pub strings_offset: u32,
    pub string_bytes_offset: u32,
    pub families_offset: u32,
    pub series_offset: u32,
    pub labels_offset: u32,
    pub total_len: u32,
}

/// One family record. String fields are indices for [`BatchReader::str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyRecord {
    pub name: u32,
    /// [`NONE`] when the family has no HELP.
    pub help: u32,
    /// [`NONE`] when the family has no UNIT.
    pub unit: u32,
    pub kind: MetricType,
    pub first_series: u32,
    pub series_count: u32,
}

/// One series record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesRecord {
    pub first_label: u32,
    pub label_count: u32,
    /// The raw value; NaN payloads (staleness markers) survive bit for bit.
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

/// One label pair: string indices of its name and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LabelRecord {
    pub name: u32,
    pub value: u32,
}

/// A validated batch, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct BatchReader<'a> {
    bytes: &'a [u8],
    header: Header,
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// A fixed-size-record section, for bounds and overlap checks.
struct Section {
    name: &'static str,
    start: u64,
    end: u64,
}

impl<'a> BatchReader<'a> {
    /// Validates the structure of `bytes` and returns a view over it.
    ///
    /// Cost: one pass over the string table (UTF-8) and over every record; no allocation.
    pub fn new(bytes: &'a [u8]) -> Result<BatchReader<'a>, BatchError> {
        let reader = BatchReader::trusted(bytes)?;
        reader.check_strings()?;
        reader.check_families()?;
        reader.check_series()?;
        reader.check_labels()?;
        Ok(reader)
    }

    /// A view over `bytes` that were validated before (by [`BatchReader::new`], or written by a
    /// [`crate::BatchWriter`] and not changed since): checks the header (magic, version, length) and the
    /// section bounds only, not every record and string. Every accessor stays bounds-checked, so bytes that are
    /// not in fact valid give errors or wrong records, never undefined behaviour; [`str`]
    /// still checks UTF-8 per call.
    ///
    /// [`str`]: BatchReader::str
    pub fn trusted(bytes: &'a [u8]) -> Result<BatchReader<'a>, BatchError> {
        if bytes.len() < HEADER_LEN {
            return Err(BatchError::Truncated { len: bytes.len() });
        }
        if bytes[header::MAGIC..header::MAGIC + 4] != MAGIC {
            return Err(BatchError::BadMagic);
        }
        let h = read_header(bytes);
        if h.version != BATCH_VERSION {
            return Err(BatchError::UnsupportedVersion { version: h.version });
        }
        if h.total_len as usize != bytes.len() {
            return Err(BatchError::LengthMismatch {
                header: h.total_len,
                actual: bytes.len(),
            });
        }
        check_sections(&h)?;
        Ok(BatchReader { bytes, header: h })
    }

    /// The whole batch.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The decoded header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn string_count(&self) -> u32 {
        self.header.string_count
    }

    pub fn family_count(&self) -> u32 {
        self.header.family_count
    }

    pub fn series_count(&self) -> u32 {
        self.header.series_count
    }

    pub fn label_count(&self) -> u32 {
        self.header.label_count
    }

    /// The raw bytes of string `index`.
    pub fn bytes(&self, index: u32) -> Result<&'a [u8], BatchError> {
        if index >= self.header.string_count {
            return Err(BatchError::NoSuchString {
                index,
                count: self.header.string_count,
            });
        }
        let entry = self.header.strings_offset as usize + index as usize * STRING_ENTRY_LEN;
        let start = self.header.string_bytes_offset as usize + read_u32(self.bytes, entry) as usize;
        let len = read_u32(self.bytes, entry + 4) as usize;
        // Bounds were checked by `new`; `get` keeps a caller-built reader from panicking anyway.
        self.bytes
            .get(start..start + len)
            .ok_or(BatchError::StringOutOfBounds { index })
    }

    /// String `index` as UTF-8.
    pub fn str(&self, index: u32) -> Result<&'a str, BatchError> {
        let bytes = self.bytes(index)?;
        core::str::from_utf8(bytes).map_err(|_| BatchError::BadUtf8 { index })
    }

    /// String `index`, or `None` for [`NONE`].
    pub fn opt_str(&self, index: u32) -> Result<Option<&'a str>, BatchError> {
        if index == NONE {
            Ok(None)
        } else {
            self.str(index).map(Some)
        }
    }

    /// Family `index`.
    pub fn family(&self, index: u32) -> Result<FamilyRecord, BatchError> {
        if index >= self.header.family_count {
            return Err(BatchError::NoSuchFamily {
                index,
                count: self.header.family_count,
            });
        }
        let at = self.header.families_offset as usize + index as usize * FAMILY_LEN;
        let code = read_u32(self.bytes, at + family::TYPE);
        Ok(FamilyRecord {
            name: read_u32(self.bytes, at + family::NAME),
            help: read_u32(self.bytes, at + family::HELP),
            unit: read_u32(self.bytes, at + family::UNIT),
            kind: MetricType::from_code(code).ok_or(BatchError::BadType {
                family: index,
                code,
            })?,
            first_series: read_u32(self.bytes, at + family::FIRST_SERIES),
            series_count: read_u32(self.bytes, at + family::SERIES_COUNT),
        })
    }

    /// Every family, in order.
    pub fn families(&self) -> impl ExactSizeIterator<Item = FamilyRecord> + 'a {
        let reader = *self;
        (0..self.header.family_count).map(move |i| {
            reader
                .family(i)
                .expect("family indices below family_count were validated by BatchReader::new")
        })
    }

    /// Series `index` (indices run across families).
    pub fn series(&self, index: u32) -> Result<SeriesRecord, BatchError> {
        if index >= self.header.series_count {
            return Err(BatchError::NoSuchSeries {
                index,
                count: self.header.series_count,
            });
        }
        let at = self.header.series_offset as usize + index as usize * SERIES_LEN;
        let flags = read_u32(self.bytes, at + series::FLAGS);
        Ok(SeriesRecord {
            first_label: read_u32(self.bytes, at + series::FIRST_LABEL),
            label_count: read_u32(self.bytes, at + series::LABEL_COUNT),
            value: f64::from_bits(read_u64(self.bytes, at + series::VALUE)),
            timestamp_ms: (flags & SERIES_FLAG_HAS_TIMESTAMP != 0)
                .then(|| read_u64(self.bytes, at + series::TIMESTAMP) as i64),
        })
    }

    /// Label record `index` (indices run across series).
    pub fn label(&self, index: u32) -> Result<LabelRecord, BatchError> {
        if index >= self.header.label_count {
            return Err(BatchError::NoSuchLabel {
                index,
                count: self.header.label_count,
            });
        }
        let at = self.header.labels_offset as usize + index as usize * LABEL_LEN;
        Ok(LabelRecord {
            name: read_u32(self.bytes, at),
            value: read_u32(self.bytes, at + 4),
        })
    }

    /// The labels of `series`, in stored order (sorted by name in a valid batch).
    pub fn labels(&self, series: &SeriesRecord) -> Labels<'a> {
        let total = self.header.label_count;
        // A record from another batch must not make us read out of bounds: clamp to this one.
        let start = series.first_label.min(total);
        let end = start.saturating_add(series.label_count).min(total);
        Labels {
            bytes: self.bytes,
            base: self.header.labels_offset as usize,
            next: start,
            end,
        }
    }

    fn check_strings(&self) -> Result<(), BatchError> {
        let area = self.bytes.len() - self.header.string_bytes_offset as usize;
        for index in 0..self.header.string_count {
            let entry = self.header.strings_offset as usize + index as usize * STRING_ENTRY_LEN;
            let offset = read_u32(self.bytes, entry) as u64;
            let len = read_u32(self.bytes, entry + 4) as u64;
            if offset + len > area as u64 {
                return Err(BatchError::StringOutOfBounds { index });
            }
            self.str(index)?;
        }
        Ok(())
    }

    fn check_string_index(&self, index: u32) -> Result<(), BatchError> {
        if index < self.header.string_count {
            Ok(())
        } else {
            Err(BatchError::NoSuchString {
                index,
                count: self.header.string_count,
            })
        }
    }

    fn check_families(&self) -> Result<(), BatchError> {
        let mut next_series: u64 = 0;
        for index in 0..self.header.family_count {
            let f = self.family(index)?;
            self.check_string_index(f.name)?;
            for optional in [f.help, f.unit] {
                if optional != NONE {
                    self.check_string_index(optional)?;
                }
            }
            if u64::from(f.first_series) != next_series {
                return Err(BatchError::BadFamilyRange { family: index });
            }
            next_series += u64::from(f.series_count);
            if next_series > u64::from(self.header.series_count) {
                return Err(BatchError::BadFamilyRange { family: index });
            }
        }
        if next_series != u64::from(self.header.series_count) {
            return Err(BatchError::OrphanSeries {
                covered: next_series as u32,
                count: self.header.series_count,
            });
        }
        Ok(())
    }

    fn check_series(&self) -> Result<(), BatchError> {
        for index in 0..self.header.series_count {
            let at = self.header.series_offset as usize + index as usize * SERIES_LEN;
            let first = u64::from(read_u32(self.bytes, at + series::FIRST_LABEL));
            let count = u64::from(read_u32(self.bytes, at + series::LABEL_COUNT));
            if first + count > u64::from(self.header.label_count) {
                return Err(BatchError::BadLabelRange { series: index });
            }
            let flags = read_u32(self.bytes, at + series::FLAGS);
            let reserved = read_u32(self.bytes, at + series::RESERVED);
            if flags & !SERIES_FLAG_HAS_TIMESTAMP != 0 || reserved != 0 {
                return Err(BatchError::BadFlags { series: index });
            }
        }
        Ok(())
    }

    fn check_labels(&self) -> Result<(), BatchError> {
        for index in 0..self.header.label_count {
            let at = self.header.labels_offset as usize + index as usize * LABEL_LEN;
            self.check_string_index(read_u32(self.bytes, at))?;
            self.check_string_index(read_u32(self.bytes, at + 4))?;
        }
        Ok(())
    }
}

fn read_header(bytes: &[u8]) -> Header {
    Header {
        version: read_u32(bytes, header::VERSION),
        string_count: read_u32(bytes, header::STRING_COUNT),
        family_count: read_u32(bytes, header::FAMILY_COUNT),
        series_count: read_u32(bytes, header::SERIES_COUNT),
        label_count: read_u32(bytes, header::LABEL_COUNT),
        strings_offset: read_u32(bytes, header::STRINGS_OFFSET),
        string_bytes_offset: read_u32(bytes, header::STRING_BYTES_OFFSET),
        families_offset: read_u32(bytes, header::FAMILIES_OFFSET),
        series_offset: read_u32(bytes, header::SERIES_OFFSET),
        labels_offset: read_u32(bytes, header::LABELS_OFFSET),
        total_len: read_u32(bytes, header::TOTAL_LEN),
    }
}

fn check_sections(h: &Header) -> Result<(), BatchError> {
    let total = u64::from(h.total_len);
    let bytes_start = u64::from(h.string_bytes_offset);
    let aligned = |name: &'static str, offset: u32| {
        if offset as usize & (SECTION_ALIGN - 1) == 0 {
            Ok(())
        } else {
            Err(BatchError::Misaligned {
                section: name,
                offset,
            })
        }
    };
    aligned("string bytes", h.string_bytes_offset)?;
    if bytes_start < HEADER_LEN as u64 || bytes_start > total {
        return Err(BatchError::SectionOutOfBounds {
            section: "string bytes",
        });
    }
    let mut sections = [
        (
            "strings",
            h.strings_offset,
            h.string_count,
            STRING_ENTRY_LEN,
        ),
        ("families", h.families_offset, h.family_count, FAMILY_LEN),
        ("series", h.series_offset, h.series_count, SERIES_LEN),
        ("labels", h.labels_offset, h.label_count, LABEL_LEN),
    ]
    .map(|(name, offset, count, record)| Section {
        name,
        start: u64::from(offset),
        end: u64::from(offset) + u64::from(count) * record as u64,
    });
    for (section, offset) in sections.iter().zip([
        h.strings_offset,
        h.families_offset,
        h.series_offset,
        h.labels_offset,
    ]) {
        aligned(section.name, offset)?;
        if section.start < HEADER_LEN as u64 || section.end > bytes_start {
            return Err(BatchError::SectionOutOfBounds {
                section: section.name,
            });
        }
    }
    sections.sort_unstable_by_key(|s| s.start);
    let non_empty = |s: &&Section| s.end > s.start;
    let mut previous: Option<&Section> = None;
    for section in sections.iter().filter(non_empty) {
        if let Some(prev) = previous {
            if section.start < prev.end {
                return Err(BatchError::SectionsOverlap {
                    first: prev.name,
                    second: section.name,
                });
            }
        }
        previous = Some(section);
    }
    Ok(())
}

/// Iterator over one series' label records.
#[derive(Debug, Clone)]
pub struct Labels<'a> {
    bytes: &'a [u8],
    base: usize,
    next: u32,
    end: u32,
}

impl Iterator for Labels<'_> {
    type Item = LabelRecord;

    fn next(&mut self) -> Option<LabelRecord> {
        if self.next >= self.end {
            return None;
        }
        let at = self.base + self.next as usize * LABEL_LEN;
        self.next += 1;
        Some(LabelRecord {
            name: read_u32(self.bytes, at),
            value: read_u32(self.bytes, at + 4),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.end - self.next) as usize;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Labels<'_> {}
