//! The spool's files: the segment header, the record frame and the record body, and the scan of
//! a segment left by an earlier run.
//!
//! A segment is `HEADER_LEN` bytes of header (`MAGIC`, format version, reserved) followed by
//! records. A record is a frame — `RECORD_MARKER`, the body's length, and a CRC-32 over the
//! length and the body, all little-endian `u32` — and the body: the wire message exactly as it
//! is published (subject, `Nats-Msg-Id`, every header, payload), each part length-prefixed. The
//! body knows nothing about what the payload holds, so a change of the wire format needs no
//! change here.
//!
//! **Invariant:** the scan never trusts the file: a length is checked against the bytes left
//! and [`MAX_BODY`] before anything is allocated, and a record counts only when its checksum
//! matches. A damaged region is skipped to the next marker whose record checks out.

use std::fmt;
use std::path::Path;

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::wire::WireMessage;

/// The first bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"PRSPOOL\0";
/// The record layout this build writes and reads.
pub const VERSION: u32 = 1;
/// Magic, version and a reserved word.
pub const HEADER_LEN: u64 = 16;
/// Marks the start of every record, so a scan can find the next one after damage.
pub const RECORD_MARKER: u32 = 0x5250_5331; // "1SPR" little-endian
/// Marker, length, checksum.
pub const FRAME_LEN: u64 = 12;
/// Largest record body accepted when reading: a length past this is damage, not a record.
/// (A publish is at most a few MiB: nats-server refuses payloads past its max_payload.)
pub const MAX_BODY: u32 = 256 * 1024 * 1024;

/// The header every segment starts with.
pub fn header() -> [u8; HEADER_LEN as usize] {
    let mut header = [0u8; HEADER_LEN as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header
}

/// Why a segment's header cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderProblem {
    /// Shorter than a header: the process died while creating it.
    Torn { len: u64 },
    /// Not a promrelay spool segment at all.
    NotASegment,
    /// Written by a promrelay whose record layout this one does not read.
    Version(u32),
}

impl fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderProblem::Torn { len } => write!(f, "only {len} bytes: its header is torn"),
            HeaderProblem::NotASegment => {
                write!(f, "does not start with the spool magic {MAGIC:?}")
            }
            HeaderProblem::Version(version) => write!(
                f,
                "was written with spool format version {version}; this promrelay reads \
                 version {VERSION}"
            ),
        }
    }
}

/// Checks a segment's first bytes.
pub fn check_header(bytes: &[u8]) -> Result<(), HeaderProblem> {
    if (bytes.len() as u64) < HEADER_LEN {
        if !MAGIC.starts_with(&bytes[..bytes.len().min(MAGIC.len())]) {
            return Err(HeaderProblem::NotASegment);
        }
        return Err(HeaderProblem::Torn {
            len: bytes.len() as u64,
        });
    }
    if &bytes[..8] != MAGIC {
        return Err(HeaderProblem::NotASegment);
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != VERSION {
        return Err(HeaderProblem::Version(version));
    }
    Ok(())
}

/// One whole record (frame and body) of `message`, ready to be appended.
pub fn encode(message: &WireMessage) -> Vec<u8> {
    let mut body = Vec::with_capacity(message.payload.len() + 512);
    put_short(&mut body, message.subject.as_bytes());
    put_short(&mut body, message.msg_id.as_bytes());
    let mut headers: Vec<(&str, &str)> = message
        .headers
        .iter()
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |value| (name.as_ref(), value.as_str()))
        })
        .collect();
    // A fixed order makes a record's bytes a function of the message alone.
    headers.sort_unstable();
    body.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (name, value) in headers {
        put_short(&mut body, name.as_bytes());
        put_long(&mut body, value.as_bytes());
    }
    put_long(&mut body, &message.payload);

    let length = (body.len() as u32).to_le_bytes();
    let mut record = Vec::with_capacity(FRAME_LEN as usize + body.len());
    record.extend_from_slice(&RECORD_MARKER.to_le_bytes());
    record.extend_from_slice(&length);
    record.extend_from_slice(&checksum(&length, &body).to_le_bytes());
    record.extend_from_slice(&body);
    record
}

fn checksum(length: &[u8; 4], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(length);
    hasher.update(body);
    hasher.finalize()
}

fn put_short(out: &mut Vec<u8>, bytes: &[u8]) {
    // Subjects, ids and header names are far below 64 KiB; a longer one is cut rather than
    // written with a wrong length (nats-server would refuse such a message anyway).
    let len = bytes.len().min(u16::MAX as usize);
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&bytes[..len]);
}

fn put_long(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Reads a record body back into the message it was made from.
pub fn decode(body: &[u8]) -> Result<WireMessage, String> {
    let mut reader = Reader { bytes: body };
    let subject = reader.text_short("subject")?;
    let msg_id = reader.text_short("message id")?;
    let count = reader.u32("header count")?;
    let mut headers = HeaderMap::new();
    for _ in 0..count {
        let name = reader.text_short("header name")?;
        let value = reader.text_long("header value")?;
        headers.append(name.as_str(), value.as_str());
    }
    let payload = reader.long("payload")?;
    if !reader.bytes.is_empty() {
        return Err(format!("{} bytes after the payload", reader.bytes.len()));
    }
    Ok(WireMessage {
        subject,
        headers,
        payload: Bytes::copy_from_slice(payload),
        msg_id,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], String> {
        if self.bytes.len() < len {
            return Err(format!("the {what} runs past the record's end"));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn short(&mut self, what: &str) -> Result<&'a [u8], String> {
        let bytes = self.take(2, what)?;
        let len = u16::from_le_bytes([bytes[0], bytes[1]]) as usize;
        self.take(len, what)
    }

    fn long(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    fn text_short(&mut self, what: &str) -> Result<String, String> {
        let bytes = self.short(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("the {what} is not UTF-8"))
    }

    fn text_long(&mut self, what: &str) -> Result<String, String> {
        let bytes = self.long(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("the {what} is not UTF-8"))
    }
}

/// Where a whole record lies in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Offset of the record's frame.
    pub offset: u64,
    /// Frame and body.
    pub len: u64,
}

/// A damaged region a scan skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub offset: u64,
    pub len: u64,
    /// The damage runs to the end of the file: a record torn by a crash while it was written.
    pub torn_tail: bool,
}

/// What a scan of a segment's bytes found.
#[derive(Debug, Default)]
pub struct Scan {
    pub records: Vec<Extent>,
    pub damage: Vec<Damage>,
    /// Bytes up to the end of the last good record: where a torn tail is cut off.
    pub good_len: u64,
}

/// Finds every intact record in `bytes` (a whole segment, header included and already checked).
pub fn scan(bytes: &[u8]) -> Scan {
    let mut found = Scan {
        good_len: HEADER_LEN.min(bytes.len() as u64),
        ..Scan::default()
    };
    let mut offset = HEADER_LEN as usize;
    let mut damaged_from: Option<usize> = None;
    while offset < bytes.len() {
        match record_at(bytes, offset) {
            Some(len) => {
                if let Some(start) = damaged_from.take() {
                    found.damage.push(Damage {
                        offset: start as u64,
                        len: (offset - start) as u64,
                        torn_tail: false,
                    });
                }
                found.records.push(Extent {
                    offset: offset as u64,
                    len: len as u64,
                });
                offset += len;
                found.good_len = offset as u64;
            }
            None => {
                damaged_from.get_or_insert(offset);
                offset = next_marker(bytes, offset + 1).unwrap_or(bytes.len());
            }
        }
    }
    if let Some(start) = damaged_from {
        found.damage.push(Damage {
            offset: start as u64,
            len: (bytes.len() - start) as u64,
            torn_tail: true,
        });
    }
    found
}

/// The length of the intact record at `offset`, if there is one.
fn record_at(bytes: &[u8], offset: usize) -> Option<usize> {
    let frame = bytes.get(offset..offset + FRAME_LEN as usize)?;
    let word = |i: usize| u32::from_le_bytes([frame[i], frame[i + 1], frame[i + 2], frame[i + 3]]);
    if word(0) != RECORD_MARKER {
        return None;
    }
    let body_len = word(4);
    if body_len > MAX_BODY {
        return None;
    }
    let start = offset + FRAME_LEN as usize;
    let body = bytes.get(start..start + body_len as usize)?;
    (checksum(&body_len.to_le_bytes(), body) == word(8)).then_some(FRAME_LEN as usize + body.len())
}

fn next_marker(bytes: &[u8], from: usize) -> Option<usize> {
    let marker = RECORD_MARKER.to_le_bytes();
    memchr::memmem::find(bytes.get(from..)?, &marker).map(|at| from + at)
}

/// The body of the record at `extent` in `bytes`, checked again (the file may have changed
/// under us since the scan).
pub fn body_at(bytes: &[u8]) -> Result<&[u8], String> {
    match record_at(bytes, 0) {
        Some(len) if len == bytes.len() => Ok(&bytes[FRAME_LEN as usize..]),
        _ => Err("the record no longer matches its checksum".to_owned()),
    }
}

/// `NNNNNNNNNNNNNNNNNNNN.spool`: segments sort by name in the order they were written.
pub fn file_name(id: u64) -> String {
    format!("{id:020}.spool")
}

/// The segment id of a spool file's name, `None` for any other file.
pub fn id_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(".spool")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}
