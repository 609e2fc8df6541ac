//! [`EditList`]: the label edits that turn a series' input labels into its relabelled ones, for
//! every changed series of a batch in one pair of buffers, and their packed form kept in the
//! filter's outcome cache.
//!
//! An edit sets a label to a value, or deletes it when the value is empty (Prometheus' model).

#![forbid(unsafe_code)]

use std::cmp::Ordering;

/// One edit: byte ranges of [`EditList`]'s text for the name and the value.
#[derive(Debug, Clone, Copy)]
struct Edit {
    name: (usize, usize),
    value: (usize, usize),
}

/// The edits of the current batch, in order; a changed series owns a `first..first + count`
/// range of them.
#[derive(Debug, Default)]
pub(crate) struct EditList {
    edits: Vec<Edit>,
    text: String,
}

impl EditList {
    pub(crate) fn clear(&mut self) {
        self.edits.clear();
        self.text.clear();
    }

    /// Edits recorded so far (the `first` of the next series' range).
    pub(crate) fn len(&self) -> usize {
        self.edits.len()
    }

    fn push(&mut self, name: &str, value: &str) {
        let name_start = self.text.len();
        self.text.push_str(name);
        let value_start = self.text.len();
        self.text.push_str(value);
        self.edits.push(Edit {
            name: (name_start, value_start),
            value: (value_start, self.text.len()),
        });
    }

    /// Appends the edits that turn `old` into `new` (both sorted by name). Hot path for changed
    /// series: one merge walk, strings copied into the shared buffer.
    pub(crate) fn record<'o, 'n>(
        &mut self,
        old: impl Iterator<Item = (&'o str, &'o str)>,
        new: impl Iterator<Item = (&'n str, &'n str)>,
    ) {
        let (mut old, mut new) = (old.peekable(), new.peekable());
        loop {
            match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(&(name, _)), None) => {
                    self.push(name, "");
                    old.next();
                }
                (None, Some(&(name, value))) => {
                    self.push(name, value);
                    new.next();
                }
                (Some(&(old_name, old_value)), Some(&(new_name, new_value))) => {
                    match old_name.cmp(new_name) {
                        Ordering::Less => {
                            self.push(old_name, "");
                            old.next();
                        }
                        Ordering::Greater => {
                            self.push(new_name, new_value);
                            new.next();
                        }
                        Ordering::Equal => {
                            if old_value != new_value {
                                self.push(new_name, new_value);
                            }
                            old.next();
                            new.next();
                        }
                    }
                }
            }
        }
    }

    /// The edits `first..first + count` as `(name, value)`; an empty value deletes.
    pub(crate) fn range(
        &self,
        first: usize,
        count: usize,
    ) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.edits[first..first + count].iter().map(|edit| {
            (
                &self.text[edit.name.0..edit.name.1],
                &self.text[edit.value.0..edit.value.1],
            )
        })
    }

    /// The edits `first..first + count` in one allocation, for the outcome cache.
    pub(crate) fn pack(&self, first: usize, count: usize) -> Packed {
        let mut bytes = Vec::new();
        for (name, value) in self.range(first, count) {
            for text in [name, value] {
                bytes.extend_from_slice(&(text.len() as u32).to_le_bytes());
                bytes.extend_from_slice(text.as_bytes());
            }
        }
        Packed(bytes.into_boxed_slice())
    }

    /// Appends packed edits (a cached series' outcome); returns how many. Hot path for
    /// repeated changed series: a copy of a few dozen bytes.
    pub(crate) fn unpack(&mut self, packed: &Packed) -> usize {
        let before = self.edits.len();
        for (name, value) in packed.iter() {
            self.push(name, value);
        }
        self.edits.len() - before
    }
}

/// Edits packed as length-prefixed strings: `(u32 length, bytes)` for each name, then value.
#[derive(Debug, Clone)]
pub(crate) struct Packed(Box<[u8]>);

impl Packed {
    /// The edits as `(name, value)`.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let mut rest: &[u8] = &self.0;
        std::iter::from_fn(move || {
            let name = take_text(&mut rest)?;
            let value = take_text(&mut rest)?;
            Some((name, value))
        })
    }

    /// The value the edits give label `name`, if they touch it.
    pub(crate) fn value_of(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// Reads one length-prefixed string. The bytes were written from `&str`s by `pack`, so the
/// UTF-8 check never fails; a malformed pack just ends the iteration.
fn take_text<'p>(rest: &mut &'p [u8]) -> Option<&'p str> {
    let (length, tail) = rest.split_first_chunk::<4>()?;
    let length = u32::from_le_bytes(*length) as usize;
    let (text, tail) = (tail.get(..length)?, tail.get(length..)?);
    *rest = tail;
    std::str::from_utf8(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_edits_replay_as_recorded() {
        let mut list = EditList::default();
        let old = [("__name__", "a"), ("fstype", "ext4"), ("instance", "h:1")];
        let new = [
            ("__name__", "b"),
            ("host", "h"),
            ("instance", "h:1"),
            ("ü", "é"),
        ];
        list.record(old.into_iter(), new.into_iter());
        let recorded: Vec<_> = list
            .range(0, list.len())
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            recorded,
            [("__name__", "b"), ("fstype", ""), ("host", "h"), ("ü", "é")]
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        let packed = list.pack(0, list.len());
        assert_eq!(packed.value_of("__name__"), Some("b"));
        let mut again = EditList::default();
        assert_eq!(again.unpack(&packed), 4);
        assert!(again.range(0, 4).eq(list.range(0, 4)));
    }
}
