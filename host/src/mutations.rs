//! A deterministic generator of malformed inputs for the tests that check every error of the
//! config loader and the exposition parser names its line: seeded mutations (bytes deleted,
//! inserted, replaced; lines dropped, doubled, swapped, cut short) of a fixture, so a failure is
//! reproducible from its case number alone and no test depends on a random seed.
//!
//! Test-only: it never runs in the relay.

/// Bytes worth inserting: the syntax of both YAML and the text format, line ends, a tab, a NUL,
/// invalid UTF-8 and a multi-byte character.
const INTERESTING: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"'",
    b"\\",
    b"=",
    b",",
    b":",
    b"#",
    b" ",
    b"\t",
    b"\n",
    b"\r",
    b"\r\n",
    b"-",
    b"&a",
    b"*a",
    b"<<",
    b"!!str",
    b"|",
    b">",
    b"?",
    b"%",
    b"@",
    b"`",
    b"\0",
    b"\xff",
    b"\xc3",
    "é".as_bytes(),
    b"NaN",
    b"+Inf",
    b"1e400",
    b"# TYPE ",
    b"# HELP ",
    b"# EOF",
    b"_bucket",
    b"le=\"",
    b"x=\"1\"",
    b"{}",
    b"---\n",
    b"...\n",
    b"~",
    b"0x",
    b"  ",
];

/// xorshift64*: tiny, deterministic, good enough to pick mutations.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound` (`0` when `bound` is 0).
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next() % bound as u64) as usize
        }
    }
}

/// Splits after each `\n`, keeping it.
fn lines(input: &[u8]) -> Vec<Vec<u8>> {
    input
        .split_inclusive(|&byte| byte == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// Applies one to three seeded mutations to `input`.
pub(crate) fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..1 + rng.below(3) {
        bytes = mutate_once(bytes, rng);
    }
    bytes
}

fn mutate_once(mut bytes: Vec<u8>, rng: &mut Rng) -> Vec<u8> {
    match rng.below(8) {
        0 if !bytes.is_empty() => {
            let at = rng.below(bytes.len());
            let len = 1 + rng.below(4.min(bytes.len() - at));
            bytes.drain(at..at + len);
            bytes
        }
        1 => {
            let at = rng.below(bytes.len() + 1);
            let token = INTERESTING[rng.below(INTERESTING.len())];
            bytes.splice(at..at, token.iter().copied());
            bytes
        }
        2 if !bytes.is_empty() => {
            let at = rng.below(bytes.len());
            bytes[at] = INTERESTING[rng.below(INTERESTING.len())][0];
            bytes
        }
        3 => {
            let at = rng.below(bytes.len() + 1);
            bytes.truncate(at);
            bytes
        }
        4..=6 => {
            let mut lines = lines(&bytes);
            if lines.is_empty() {
                return bytes;
            }
            let at = rng.below(lines.len());
            match rng.below(3) {
                0 => {
                    lines.remove(at);
                }
                1 => {
                    let copy = lines[at].clone();
                    lines.insert(at, copy);
                }
                _ => {
                    let other = rng.below(lines.len());
                    lines.swap(at, other);
                }
            }
            lines.concat()
        }
        _ => {
            // Indentation matters to YAML: shift a line by one or two spaces either way.
            let mut lines = lines(&bytes);
            if lines.is_empty() {
                return bytes;
            }
            let at = rng.below(lines.len());
            if rng.below(2) == 0 {
                lines[at].splice(0..0, b"  "[..1 + rng.below(2)].iter().copied());
            } else {
                let blanks = lines[at].iter().take_while(|&&byte| byte == b' ').count();
                lines[at].drain(..blanks.min(1 + rng.below(2)));
            }
            lines.concat()
        }
    }
}

/// A window of up to `max_lines` consecutive lines of `fixture`, picked by `rng`: mutating a
/// part keeps each case small, so thousands of cases stay quick in a debug build.
pub(crate) fn window(fixture: &[u8], max_lines: usize, rng: &mut Rng) -> Vec<u8> {
    let lines = lines(fixture);
    if lines.len() <= max_lines {
        return fixture.to_vec();
    }
    let start = rng.below(lines.len() - max_lines);
    lines[start..start + max_lines].concat()
}

/// How many lines an error may name in `input`: its lines, plus one past a last line without
/// `\n` (an error "at the end"). Line numbers start at 1.
pub(crate) fn line_count(input: &[u8]) -> usize {
    input.iter().filter(|&&byte| byte == b'\n').count() + 1
}
