//! [`SeriesKey`]: the identity of one series' label set, as a 128-bit hash.
//!
//! Hot path: computed once per series per scrape, so it reads each string in 8-byte words and
//! keeps two independent 64-bit lanes (different multipliers, the second fed rotated words) that
//! the CPU runs side by side. Every string is length-prefixed, so the encoding of a label set is
//! prefix-free: `{a="bc"}` and `{ab="c"}` feed different words. Not cryptographic: see
//! [`crate::memo`] for what that means for a target that can choose its label values.

/// The identity of a series: a 128-bit hash of its labels (`__name__` included, in name order)
/// and of the memo's version.
///
/// Two series with the same labels always have the same key; two different label sets share
/// one with a probability of about 2⁻¹²⁸ per pair.
///
/// ```
/// use promrelay_sdk::memo::SeriesKey;
///
/// let a = SeriesKey::of(7, [("__name__", "up"), ("job", "node")]);
/// assert_eq!(a, SeriesKey::of(7, [("__name__", "up"), ("job", "node")]));
/// assert_ne!(a, SeriesKey::of(7, [("__name__", "up"), ("job", "db")]));
/// // Another version (say, other rules) gives other keys for the same labels.
/// assert_ne!(a, SeriesKey::of(8, [("__name__", "up"), ("job", "node")]));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey(u128);

impl SeriesKey {
    /// The key of the label set `labels` (give them in name order, as a batch holds them) under
    /// `version`. Hot path: no allocation.
    pub fn of<'s>(version: u64, labels: impl IntoIterator<Item = (&'s str, &'s str)>) -> SeriesKey {
        let mut hasher = KeyHasher::new(version);
        for (name, value) in labels {
            hasher.bytes(name.as_bytes());
            hasher.bytes(value.as_bytes());
        }
        SeriesKey(hasher.finish())
    }

    /// The key as a number (for logs and tests).
    pub fn as_u128(self) -> u128 {
        self.0
    }
}

/// Seeds and multipliers: fractional digits of π, of the golden ratio and of e (all odd where
/// used as multipliers).
const SEED_A: u64 = 0x243f_6a88_85a3_08d3;
const SEED_B: u64 = 0x1319_8a2e_0370_7344;
const MUL_A: u64 = 0x9e37_79b9_7f4a_7c15;
const MUL_B: u64 = 0xb7e1_5162_8aed_2a6b;
/// Marks a length word, so a length never reads as the same word as string bytes would.
const LENGTH_TAG: u64 = 0xa5 << 56;

struct KeyHasher {
    a: u64,
    b: u64,
}

/// One lane step: the xor-multiply is a bijection of the state for a given word, the shift
/// folds the product's high half (which depends on every input bit) into its low half.
#[inline(always)]
fn round(state: u64, word: u64, multiplier: u64) -> u64 {
    let x = (state ^ word).wrapping_mul(multiplier);
    x ^ (x >> 32)
}

/// Final avalanche of one lane: every input bit reaches every output bit.
#[inline(always)]
fn finish_lane(mut x: u64, multiplier: u64) -> u64 {
    x ^= x >> 31;
    x = x.wrapping_mul(multiplier);
    x ^= x >> 29;
    x = x.wrapping_mul(MUL_A ^ MUL_B | 1);
    x ^ (x >> 32)
}

impl KeyHasher {
    fn new(version: u64) -> KeyHasher {
        KeyHasher {
            a: round(SEED_A, version, MUL_A),
            b: round(SEED_B, version.rotate_left(32), MUL_B),
        }
    }

    #[inline(always)]
    fn word(&mut self, word: u64) {
        self.a = round(self.a, word, MUL_A);
        self.b = round(self.b, word.rotate_left(23), MUL_B);
    }

    #[inline]
    fn bytes(&mut self, bytes: &[u8]) {
        self.word(LENGTH_TAG | bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.word(u64::from_le_bytes(word));
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            // Zero padding is unambiguous: the length word above says how many bytes are real.
            let mut word = [0u8; 8];
            word[..tail.len()].copy_from_slice(tail);
            self.word(u64::from_le_bytes(word));
        }
    }

    fn finish(self) -> u128 {
        let a = finish_lane(self.a ^ self.b.rotate_left(17), MUL_A);
        let b = finish_lane(self.b ^ a, MUL_B);
        (u128::from(a) << 64) | u128::from(b)
    }
}
