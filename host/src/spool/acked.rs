//! The spool's `acked` file: the position (segment, offset) before which every record was
//! acknowledged by JetStream, rewritten in place as acknowledgements come in.
//!
//! 28 bytes: `ACK_MAGIC`, the segment id and the offset (`u64` little-endian), and a CRC-32 of
//! the 24 bytes before it. A missing or unreadable file only means "nothing known to be acked":
//! the records are published again and JetStream drops the duplicates by `Nats-Msg-Id` (within
//! its duplicate window), so it never stops the start.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

const ACK_MAGIC: &[u8; 8] = b"PRSPACK1";
const LEN: usize = 28;

/// Every record before `offset` of segment `segment`, and every record of older segments, is
/// acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

#[derive(Debug)]
pub struct AckFile {
    path: PathBuf,
    file: File,
    dirty: bool,
}

impl AckFile {
    /// Opens (or creates) the file and reads the position it holds.
    pub fn open(path: &Path) -> anyhow::Result<(AckFile, Position)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| {
                format!("opening {}: check spool_dir's permissions", path.display())
            })?;
        let mut bytes = [0u8; LEN];
        let position = match file.read_exact_at(&mut bytes, 0) {
            Ok(()) => decode(&bytes).unwrap_or_else(|| {
                tracing::warn!(file = %path.display(),
                    "spool: the acknowledged position is unreadable; every record left is \
                     published again (JetStream drops duplicates by Nats-Msg-Id)");
                Position::default()
            }),
            // A new spool (or one whose position was never written).
            Err(_) => Position::default(),
        };
        Ok((
            AckFile {
                path: path.to_owned(),
                file,
                dirty: false,
            },
            position,
        ))
    }

    /// Records a new position (one positioned write; made durable by [`sync`](Self::sync)).
    pub fn write(&mut self, position: Position) -> anyhow::Result<()> {
        self.dirty = true;
        self.file
            .write_all_at(&encode(position), 0)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    pub fn sync(&mut self) -> anyhow::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        self.file
            .sync_data()
            .with_context(|| format!("syncing {}", self.path.display()))
    }
}

fn encode(position: Position) -> [u8; LEN] {
    let mut bytes = [0u8; LEN];
    bytes[..8].copy_from_slice(ACK_MAGIC);
    bytes[8..16].copy_from_slice(&position.segment.to_le_bytes());
    bytes[16..24].copy_from_slice(&position.offset.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..24]);
    bytes[24..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8; LEN]) -> Option<Position> {
    if &bytes[..8] != ACK_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
    if crc32fast::hash(&bytes[..24]) != crc {
        return None;
    }
    let word = |at: usize| {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(eight)
    };
    Some(Position {
        segment: word(8),
        offset: word(16),
    })
}
