//! Scanning primitives of the text format: byte classes, blanks, tokens, names, label values with
//! their escapes, HELP escapes, numbers. Pure functions over bytes; no knowledge of families.

use std::borrow::Cow;
use std::hash::Hasher;

use memchr::{memchr, memchr2};

/// Hot path: a label value after its opening quote. Returns the value and the position after the
/// closing quote. Borrows from the line unless the value has a backslash.
pub(super) fn label_value(line: &str, start: usize) -> Result<(Cow<'_, str>, usize), &'static str> {
    let bytes = line.as_bytes();
    let Some(offset) = memchr2(b'"', b'\\', &bytes[start..]) else {
        return Err("unterminated label value");
    };
    if bytes[start + offset] == b'"' {
        return Ok((
            Cow::Borrowed(&line[start..start + offset]),
            start + offset + 1,
        ));
    }
    let mut value = String::with_capacity(offset + 16);
    let mut position = start;
    loop {
        let Some(offset) = memchr2(b'"', b'\\', &bytes[position..]) else {
            return Err("unterminated label value");
        };
        value.push_str(&line[position..position + offset]);
        position += offset;
        if bytes[position] == b'"' {
            return Ok((Cow::Owned(value), position + 1));
        }
        match bytes.get(position + 1) {
            Some(b'\\') => value.push('\\'),
            Some(b'"') => value.push('"'),
            Some(b'n') => value.push('\n'),
            Some(_) => {
                return Err("invalid escape sequence in label value (only \\\\, \\\" and \\n)")
            }
            None => return Err("unterminated label value"),
        }
        position += 2;
    }
}

/// HELP text: `\\` and `\n` are escapes; any other backslash stays as written.
pub(super) fn unescape_help(text: &str) -> Cow<'_, str> {
    if memchr(b'\\', text.as_bytes()).is_none() {
        return Cow::Borrowed(text);
    }
    let mut help = String::with_capacity(text.len());
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        if character != '\\' {
            help.push(character);
            continue;
        }
        match characters.clone().next() {
            Some('\\') => {
                help.push('\\');
                characters.next();
            }
            Some('n') => {
                help.push('\n');
                characters.next();
            }
            _ => help.push('\\'),
        }
    }
    Cow::Owned(help)
}

/// Hot path: a sample value. `NaN`, `Inf`, `+Inf`, `-Inf` in any case (as Go's `ParseFloat`);
/// every NaN becomes the canonical one.
#[inline]
pub(super) fn parse_value(token: &str) -> Option<f64> {
    let value: f64 = fast_float2::parse(token).ok()?;
    Some(if value.is_nan() { f64::NAN } else { value })
}

/// Hot path: an integer millisecond timestamp, optionally signed.
#[inline]
pub(super) fn parse_timestamp(token: &str) -> Option<i64> {
    token.parse().ok()
}

#[inline]
pub(super) fn is_blank(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

#[inline]
pub(super) fn skip_blanks(bytes: &[u8], mut position: usize) -> usize {
    while position < bytes.len() && is_blank(bytes[position]) {
        position += 1;
    }
    position
}

/// The end of a token: the next blank or the end of the line.
#[inline]
pub(super) fn token_end(bytes: &[u8], mut position: usize) -> usize {
    while position < bytes.len() && !is_blank(bytes[position]) {
        position += 1;
    }
    position
}

/// Byte classes for names, one table lookup per byte.
const METRIC_START: u8 = 1;
const METRIC_CONTINUE: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL_CONTINUE: u8 = 8;

static CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let character = byte as u8;
        let letter = character.is_ascii_alphabetic() || character == b'_';
        let mut class = 0;
        if letter || character == b':' {
            class |= METRIC_START | METRIC_CONTINUE;
        }
        if character.is_ascii_digit() {
            class |= METRIC_CONTINUE | LABEL_CONTINUE;
        }
        if letter {
            class |= LABEL_START | LABEL_CONTINUE;
        }
        table[byte] = class;
        byte += 1;
    }
    table
};

/// Hot path: the end of a name whose first byte has class `start` and the rest `rest`.
#[inline]
pub(super) fn name_end(bytes: &[u8], start: usize, first: u8, rest: u8) -> usize {
    match bytes.get(start) {
        Some(&byte) if CLASSES[byte as usize] & first != 0 => {}
        _ => return start,
    }
    let mut position = start + 1;
    while position < bytes.len() && CLASSES[bytes[position] as usize] & rest != 0 {
        position += 1;
    }
    position
}

/// Hot path: the end of `[a-zA-Z_:][a-zA-Z0-9_:]*` from `start` (== `start` if none).
#[inline]
pub(super) fn metric_name_end(bytes: &[u8], start: usize) -> usize {
    name_end(bytes, start, METRIC_START, METRIC_CONTINUE)
}

/// Hot path: the end of `[a-zA-Z_][a-zA-Z0-9_]*` from `start` (== `start` if none).
#[inline]
pub(super) fn label_name_end(bytes: &[u8], start: usize) -> usize {
    name_end(bytes, start, LABEL_START, LABEL_CONTINUE)
}

/// An FxHash-style hash, eight bytes at a time: family names are short and a hostile target can
/// only slow down its own scrape, while SipHash showed up in profiles.
#[derive(Default)]
pub(super) struct NameHasher(u64);

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut hash = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("chunks_exact yields 8 bytes"));
            hash = (hash.rotate_left(5) ^ word).wrapping_mul(SEED);
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(tail) ^ bytes.len() as u64)
            .wrapping_mul(SEED);
        self.0 = hash;
    }
}

/// The start of a line, for error messages.
pub(super) fn excerpt(text: &str) -> &str {
    let mut end = text.len().min(40);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
