//! A string interner for [`crate::BatchWriter`]: each distinct string stored once.
//!
//! Open addressing over a power-of-two slot table; a slot holds `index + 1` (0 = empty). Written
//! here because the crate takes no dependencies and `alloc` has no hash map.

use alloc::vec;
use alloc::vec::Vec;

const INITIAL_SLOTS: usize = 64;

const K: u64 = 0x517c_c1b7_2722_0a95;

fn mix(h: u64, word: u64) -> u64 {
    (h.rotate_left(5) ^ word).wrapping_mul(K)
}

fn word8(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(&bytes[..8]).map_or(0, u64::from_le_bytes)
}

fn word4(bytes: &[u8]) -> u64 {
    <[u8; 4]>::try_from(&bytes[..4]).map_or(0, |w| u64::from(u32::from_le_bytes(w)))
}

/// A fast, non-cryptographic hash of a short byte string (label names and values). Every byte
/// is read through whole-word loads (overlapping at the end) rather than copied into a padded
/// buffer, which kept the tail of short strings off the hot path.
fn hash(bytes: &[u8]) -> u64 {
    let len = bytes.len();
    let mut h = len as u64;
    if len >= 8 {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            h = mix(h, word8(chunk));
        }
        if !chunks.remainder().is_empty() {
            h = mix(h, word8(&bytes[len - 8..]));
        }
    } else if len >= 4 {
        h = mix(h, (word4(bytes) << 32) | word4(&bytes[len - 4..]));
    } else if len > 0 {
        let word =
            u64::from(bytes[0]) << 16 | u64::from(bytes[len / 2]) << 8 | u64::from(bytes[len - 1]);
        h = mix(h, word);
    }
    // Fold the high bits down: the slot index takes the low bits.
    h ^ (h >> 29)
}

#[derive(Debug, Clone)]
pub(crate) struct Interner {
    /// `(offset, len)` into `bytes`, by string index.
    pub(crate) entries: Vec<(u32, u32)>,
    pub(crate) bytes: Vec<u8>,
    slots: Vec<u32>,
    /// By string index: the epoch of its last use.
    seen: Vec<u32>,
    /// Bumped by [`Interner::next_epoch`]: a writer reused for its next batch.
    epoch: u32,
    /// Distinct strings used in this epoch.
    used: usize,
}

impl Interner {
    pub(crate) fn new() -> Interner {
        Interner {
            entries: Vec::new(),
            bytes: Vec::new(),
            slots: vec![0; INITIAL_SLOTS],
            seen: Vec::new(),
            epoch: 0,
            used: 0,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes.clear();
        self.seen.clear();
        self.used = 0;
        self.slots.iter_mut().for_each(|slot| *slot = 0);
    }

    /// Starts counting uses afresh, keeping the strings.
    pub(crate) fn next_epoch(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            // Wrapped: no string may look used in the new epoch.
            self.seen.iter_mut().for_each(|seen| *seen = u32::MAX);
        }
        self.used = 0;
    }

    /// Distinct strings used since the last [`Interner::next_epoch`] (or clear).
    pub(crate) fn used(&self) -> usize {
        self.used
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn get(&self, index: u32) -> &[u8] {
        let (offset, len) = self.entries[index as usize];
        &self.bytes[offset as usize..(offset + len) as usize]
    }

    /// The index of `text`, storing it first if it is new. `None` when the string area would
    /// pass `u32::MAX` bytes.
    pub(crate) fn intern(&mut self, text: &[u8]) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let mut slot = hash(text) as usize & mask;
        loop {
            match self.slots[slot] {
                0 => break,
                occupied => {
                    let index = occupied - 1;
                    if self.get(index) == text {
                        let seen = &mut self.seen[index as usize];
                        if *seen != self.epoch {
                            *seen = self.epoch;
                            self.used += 1;
                        }
                        return Some(index);
                    }
                    slot = (slot + 1) & mask;
                }
            }
        }
        let offset = u32::try_from(self.bytes.len()).ok()?;
        let len = u32::try_from(text.len()).ok()?;
        offset.checked_add(len)?;
        let index = u32::try_from(self.entries.len())
            .ok()
            .filter(|i| *i < u32::MAX - 1)?;
        self.bytes.extend_from_slice(text);
        self.entries.push((offset, len));
        self.seen.push(self.epoch);
        self.used += 1;
        self.slots[slot] = index + 1;
        if self.entries.len() * 2 > self.slots.len() {
            self.grow();
        }
        Some(index)
    }

    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        let mask = size - 1;
        let mut slots = vec![0u32; size];
        for (index, &(offset, len)) in self.entries.iter().enumerate() {
            let text = &self.bytes[offset as usize..(offset + len) as usize];
            let mut slot = hash(text) as usize & mask;
            while slots[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            slots[slot] = index as u32 + 1;
        }
        self.slots = slots;
    }
}
