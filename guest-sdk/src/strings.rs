//! [`Text`]: a label name or value of an edited series, without an allocation in the common cases.
//!
//! Strings copied from the input keep their string-table index, so re-encoding maps them to the
//! output table with an array lookup instead of hashing; short strings a filter sets live inline.

use std::fmt;

/// Longest string stored inline.
const INLINE: usize = 22;

#[derive(Clone)]
pub(crate) enum Text<'a> {
    /// A string of the input batch and its index in the input's string table.
    Input { text: &'a str, index: u32 },
    /// A short string set by the filter.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// A longer string set by the filter.
    Heap(Box<str>),
}

impl<'a> Text<'a> {
    pub(crate) fn input(text: &'a str, index: u32) -> Text<'a> {
        Text::Input { text, index }
    }

    pub(crate) fn new(text: &str) -> Text<'a> {
        if text.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            Text::Inline {
                len: text.len() as u8,
                bytes,
            }
        } else {
            Text::Heap(text.into())
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Text::Input { text, .. } => text,
            // Built from a `&str` in `Text::new`, so always UTF-8.
            Text::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..*len as usize]).unwrap_or("")
            }
            Text::Heap(text) => text,
        }
    }

    /// The input string-table index, for a string copied from the input.
    pub(crate) fn input_index(&self) -> Option<u32> {
        match self {
            Text::Input { index, .. } => Some(*index),
            _ => None,
        }
    }
}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}
