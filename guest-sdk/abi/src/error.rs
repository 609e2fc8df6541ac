//! Why a batch was refused. Positions are indices into the batch so the message points at the
//! offending record without copying guest data.

use core::fmt;

/// A batch that does not follow the layout, or refers outside itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than the header needs.
    Truncated { len: usize },
    /// The first four bytes are not `PRB1`.
    BadMagic,
    /// A layout version this crate does not know.
    UnsupportedVersion { version: u32 },
    /// `total_len` disagrees with the number of bytes handed over.
    LengthMismatch { header: u32, actual: usize },
    /// A section does not start on an 8-byte boundary.
    Misaligned { section: &'static str, offset: u32 },
    /// A section runs past the end of the batch, into the header, or into the string bytes area.
    SectionOutOfBounds { section: &'static str },
    /// Two sections share bytes.
    SectionsOverlap {
        first: &'static str,
        second: &'static str,
    },
    /// A string's bytes lie outside the string bytes area.
    StringOutOfBounds { index: u32 },
    /// A string is not UTF-8.
    BadUtf8 { index: u32 },
    /// A record refers to a string index that does not exist.
    NoSuchString { index: u32, count: u32 },
    /// An accessor was asked for a family past the end.
    NoSuchFamily { index: u32, count: u32 },
    /// An accessor was asked for a series past the end.
    NoSuchSeries { index: u32, count: u32 },
    /// An accessor was asked for a label record past the end.
    NoSuchLabel { index: u32, count: u32 },
    /// A family's type code is unknown.
    BadType { family: u32, code: u32 },
    /// A family's series are not the next contiguous run after the previous family's.
    BadFamilyRange { family: u32 },
    /// Families do not cover every series.
    OrphanSeries { covered: u32, count: u32 },
    /// A series' label range lies outside the labels section.
    BadLabelRange { series: u32 },
    /// A series sets flag bits or a reserved field this version does not define.
    BadFlags { series: u32 },
    /// A family name or `__name__` value is not `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    BadMetricName { string: u32 },
    /// A label name is not `[a-zA-Z_][a-zA-Z0-9_]*`.
    BadLabelName { series: u32, string: u32 },
    /// A series' labels are not sorted by name (byte order) or repeat a name.
    UnsortedLabels { series: u32 },
    /// A series has no `__name__` label.
    MissingName { series: u32 },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BatchError::Truncated { len } => {
                write!(f, "batch of {len} bytes is shorter than the 48-byte header")
            }
            BatchError::BadMagic => write!(f, "batch does not start with magic \"PRB1\""),
            BatchError::UnsupportedVersion { version } => {
                write!(
                    f,
                    "batch layout version {version} is not supported (expected 1)"
                )
            }
            BatchError::LengthMismatch { header, actual } => write!(
                f,
                "batch header says total_len {header} but {actual} bytes were given"
            ),
            BatchError::Misaligned { section, offset } => {
                write!(f, "{section} section offset {offset} is not 8-byte aligned")
            }
            BatchError::SectionOutOfBounds { section } => {
                write!(f, "{section} section lies outside the batch")
            }
            BatchError::SectionsOverlap { first, second } => {
                write!(f, "{first} and {second} sections overlap")
            }
            BatchError::StringOutOfBounds { index } => {
                write!(f, "string {index} lies outside the string bytes area")
            }
            BatchError::BadUtf8 { index } => write!(f, "string {index} is not valid UTF-8"),
            BatchError::NoSuchString { index, count } => {
                write!(
                    f,
                    "string index {index} out of range (batch has {count} strings)"
                )
            }
            BatchError::NoSuchFamily { index, count } => {
                write!(
                    f,
                    "family index {index} out of range (batch has {count} families)"
                )
            }
            BatchError::NoSuchSeries { index, count } => {
                write!(
                    f,
                    "series index {index} out of range (batch has {count} series)"
                )
            }
            BatchError::NoSuchLabel { index, count } => {
                write!(
                    f,
                    "label index {index} out of range (batch has {count} labels)"
                )
            }
            BatchError::BadType { family, code } => {
                write!(f, "family {family}: unknown type code {code}")
            }
            BatchError::BadFamilyRange { family } => write!(
                f,
                "family {family}: series range does not follow the previous family's"
            ),
            BatchError::OrphanSeries { covered, count } => write!(
                f,
                "families cover {covered} series but the batch has {count}"
            ),
            BatchError::BadLabelRange { series } => {
                write!(
                    f,
                    "series {series}: label range lies outside the labels section"
                )
            }
            BatchError::BadFlags { series } => {
                write!(
                    f,
                    "series {series}: unknown flag bits or non-zero reserved field"
                )
            }
            BatchError::BadMetricName { string } => {
                write!(f, "string {string} is not a valid metric name")
            }
            BatchError::BadLabelName { series, string } => write!(
                f,
                "series {series}: string {string} is not a valid label name"
            ),
            BatchError::UnsortedLabels { series } => write!(
                f,
                "series {series}: labels are not sorted by name or repeat a name"
            ),
            BatchError::MissingName { series } => {
                write!(f, "series {series}: no __name__ label")
            }
        }
    }
}

impl core::error::Error for BatchError {}
