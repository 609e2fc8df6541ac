//! The mutation fuzzer: takes a corpus of seeds, mutates them (byte, token, number, line and
//! splice mutations), runs the target on each, and stops at the first finding: a panic, an
//! allocation above the target's bound, a broken invariant, or (through the watchdog) an input
//! that runs longer than the hang limit.
//!
//! There is no coverage instrumentation (that needs a nightly compiler); the feedback is the
//! target's *outcome class* (which error, which shape of success): an input that reaches a class
//! not seen before joins the corpus, so inputs that get past one check are mutated further.
//!
//! **Invariant:** a run is reproducible: the same seeds, seed number and duration-free run count
//! give the same inputs (`Options::runs`), so a finding can be replayed.

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::alloc;

/// What one input did to a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted; the string names the shape of the success (joins the feedback).
    Accepted(String),
    /// Refused with an error; the string is the error (digits are stripped for the feedback).
    Refused(String),
    /// The target broke one of its own invariants (e.g. render → parse is not stable).
    Broken(String),
}

/// A fuzz target: one untrusted input of the relay.
pub trait Target: Sync {
    fn name(&self) -> &'static str;
    fn run(&self, input: &[u8]) -> Outcome;
    /// The most bytes one input of `len` bytes may keep live at once.
    fn allocation_bound(&self, len: usize) -> usize;
    /// Tokens of the input language that mutations insert.
    fn dictionary(&self) -> &'static [&'static [u8]];
}

/// What went wrong, with the input that did it.
#[derive(Debug, Clone)]
pub struct Finding {
    pub target: &'static str,
    pub kind: &'static str,
    pub message: String,
    pub input: Vec<u8>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} target: {}: {}\ninput ({} bytes): {}",
            self.target,
            self.kind,
            self.message,
            self.input.len(),
            escape(&self.input, 2000)
        )
    }
}

/// How long and how hard to fuzz.
#[derive(Debug, Clone)]
pub struct Options {
    pub duration: Duration,
    /// Stop after this many runs even if time is left (reproducible runs).
    pub runs: Option<u64>,
    pub seed: u64,
    /// Longest input a mutation may produce (seeds may be longer; they are run as they are).
    pub max_len: usize,
    /// An input running longer than this is a hang: the watchdog reports it and aborts.
    pub hang_limit: Duration,
    /// Where a hang's input is written before the abort (the caller writes other findings).
    pub hang_file: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            duration: Duration::from_secs(3),
            runs: None,
            seed: 1,
            max_len: 64 * 1024,
            hang_limit: Duration::from_secs(20),
            hang_file: None,
        }
    }
}

/// What a run without findings did.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: &'static str,
    pub runs: u64,
    pub seeds: usize,
    pub corpus: usize,
    pub classes: usize,
    pub accepted: u64,
    pub slowest: Duration,
    pub peak_bytes: usize,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} runs ({} accepted), {} seeds, corpus {}, {} outcome classes, slowest input \
             {:.1} ms, peak {} KiB above base",
            self.target,
            self.runs,
            self.accepted,
            self.seeds,
            self.corpus,
            self.classes,
            self.slowest.as_secs_f64() * 1e3,
            self.peak_bytes / 1024
        )
    }
}

/// A small, fast, reproducible generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

thread_local! {
    static PANIC_MESSAGE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Fuzzes `target` from `seeds` until the time or run budget is spent or something is found.
pub fn fuzz(
    target: &dyn Target,
    seeds: Vec<Vec<u8>>,
    options: &Options,
) -> Result<Report, Finding> {
    let previous_hook = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-text panic".to_string());
        PANIC_MESSAGE.with(|m| *m.borrow_mut() = Some(format!("{payload}{location}")));
    }));
    let watchdog = Watchdog::start(target.name(), options);
    let result = fuzz_inner(target, seeds, options, &watchdog);
    watchdog.stop();
    panic::set_hook(previous_hook);
    result
}

fn fuzz_inner(
    target: &dyn Target,
    seeds: Vec<Vec<u8>>,
    options: &Options,
    watchdog: &Watchdog,
) -> Result<Report, Finding> {
    let mut report = Report {
        target: target.name(),
        runs: 0,
        seeds: seeds.len(),
        corpus: 0,
        classes: 0,
        accepted: 0,
        slowest: Duration::ZERO,
        peak_bytes: 0,
    };
    let mut classes = HashSet::new();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    // Every seed runs once as it is: a regression input must keep passing.
    for seed in seeds {
        let outcome = run_one(target, &seed, watchdog, &mut report)?;
        classes.insert(class(&outcome));
        corpus.push(seed);
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mut rng = Rng::new(options.seed);
    let mutator = Mutator {
        dictionary: target.dictionary(),
        max_len: options.max_len,
    };
    let started = Instant::now();
    while started.elapsed() < options.duration && options.runs.is_none_or(|n| report.runs < n) {
        let base = &corpus[rng.below(corpus.len())];
        let other = &corpus[rng.below(corpus.len())];
        let input = mutator.mutate(base, other, &mut rng);
        let outcome = run_one(target, &input, watchdog, &mut report)?;
        if classes.insert(class(&outcome)) && corpus.len() < 10_000 {
            corpus.push(input);
        }
    }
    report.corpus = corpus.len();
    report.classes = classes.len();
    Ok(report)
}

fn run_one(
    target: &dyn Target,
    input: &[u8],
    watchdog: &Watchdog,
    report: &mut Report,
) -> Result<Outcome, Finding> {
    let finding = |kind: &'static str, message: String| Finding {
        target: target.name(),
        kind,
        message,
        input: input.to_vec(),
    };
    watchdog.begin(input);
    let base = alloc::start();
    let started = Instant::now();
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| target.run(input)));
    let took = started.elapsed();
    let peak = alloc::peak_above(base);
    watchdog.end();
    report.runs += 1;
    report.slowest = report.slowest.max(took);
    report.peak_bytes = report.peak_bytes.max(peak);
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(_) => {
            let message = PANIC_MESSAGE
                .with(|m| m.borrow_mut().take())
                .unwrap_or_else(|| "panicked".to_string());
            return Err(finding("panic", message));
        }
    };
    let bound = target.allocation_bound(input.len());
    if peak > bound {
        return Err(finding(
            "allocation",
            format!("{peak} bytes live at once, above the bound of {bound} for this input"),
        ));
    }
    if let Outcome::Broken(message) = &outcome {
        return Err(finding("invariant", message.clone()));
    }
    if matches!(outcome, Outcome::Accepted(_)) {
        report.accepted += 1;
    }
    Ok(outcome)
}

/// The feedback key of an outcome: its kind and text without digits (positions, counts and
/// values would make every input new), cut to a length.
fn class(outcome: &Outcome) -> String {
    let (kind, text) = match outcome {
        Outcome::Accepted(text) => ("ok", text),
        Outcome::Refused(text) => ("err", text),
        Outcome::Broken(text) => ("broken", text),
    };
    // Quoted parts are input echoed back (names, values): leave them out too.
    let mut quoted = false;
    let mut key: String = text
        .chars()
        .filter(|&c| {
            if c == '"' {
                quoted = !quoted;
                return false;
            }
            !quoted && !c.is_ascii_digit()
        })
        .take(80)
        .collect();
    key.insert_str(0, kind);
    key
}

/// Mutations, chosen at random, one to four per input.
struct Mutator {
    dictionary: &'static [&'static [u8]],
    max_len: usize,
}

const INTERESTING_BYTES: &[u8] = b"\0\xff\n\r\t \"\\{}=,#:-[]&*|>'!0.";
const INTERESTING_NUMBERS: &[&[u8]] = &[
    b"0",
    b"-0",
    b"1",
    b"-1",
    b"1e308",
    b"-1e308",
    b"1e-400",
    b"NaN",
    b"+Inf",
    b"-Inf",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"18446744073709551616",
    b"4294967295",
    b"99999999999999999999999",
    b"0x10",
    b"1_000",
    b"0.0000001",
    b"",
    b"-",
];
const INTERESTING_U32: &[u32] = &[
    0,
    1,
    2,
    7,
    8,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
];

impl Mutator {
    fn mutate(&self, base: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
        let mut input = base.to_vec();
        let cap = self.max_len.max(base.len());
        for _ in 0..1 + rng.below(4) {
            self.once(&mut input, other, rng);
            input.truncate(cap);
        }
        input
    }

    fn once(&self, input: &mut Vec<u8>, other: &[u8], rng: &mut Rng) {
        let len = input.len();
        let at = |rng: &mut Rng| if len == 0 { 0 } else { rng.below(len + 1) };
        match rng.below(12) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = INTERESTING_BYTES[rng.below(INTERESTING_BYTES.len())];
            }
            2 | 3 if !self.dictionary.is_empty() => {
                let token = self.dictionary[rng.below(self.dictionary.len())];
                let i = at(rng);
                input.splice(i..i, token.iter().copied());
            }
            4 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(64)).min(len);
                input.drain(start..end);
            }
            5 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(64)).min(len);
                let copy = input[start..end].to_vec();
                let i = at(rng);
                input.splice(i..i, copy);
            }
            6 if !other.is_empty() => {
                let keep = at(rng);
                let from = rng.below(other.len());
                input.truncate(keep);
                input.extend_from_slice(&other[from..]);
            }
            7 => replace_number(input, rng),
            8 if len > 0 => input.truncate(rng.below(len)),
            9 => repeat_line(input, self.max_len, rng),
            10 if len >= 4 => {
                let i = rng.below(len - 3) & !3;
                let value = INTERESTING_U32[rng.below(INTERESTING_U32.len())];
                input[i..i + 4].copy_from_slice(&value.to_le_bytes());
            }
            _ => {
                let i = at(rng);
                let byte = (rng.next_u64() & 0xff) as u8;
                input.insert(i, byte);
            }
        }
    }
}

/// Replaces a run of digits (or inserts at a random place) with an interesting number.
fn replace_number(input: &mut Vec<u8>, rng: &mut Rng) {
    let number = INTERESTING_NUMBERS[rng.below(INTERESTING_NUMBERS.len())];
    let digits: Vec<usize> = (0..input.len())
        .filter(|&i| input[i].is_ascii_digit() && (i == 0 || !input[i - 1].is_ascii_digit()))
        .collect();
    if digits.is_empty() {
        let i = if input.is_empty() {
            0
        } else {
            rng.below(input.len() + 1)
        };
        input.splice(i..i, number.iter().copied());
        return;
    }
    let start = digits[rng.below(digits.len())];
    let mut end = start;
    while end < input.len() && (input[end].is_ascii_digit() || input[end] == b'.') {
        end += 1;
    }
    input.splice(start..end, number.iter().copied());
}

/// Repeats one line of the input 2–300 times (long families, many labels, deep nesting), as
/// far as `max_len` allows.
fn repeat_line(input: &mut Vec<u8>, max_len: usize, rng: &mut Rng) {
    let starts: Vec<usize> = std::iter::once(0)
        .chain(memchr_all(input).map(|i| i + 1))
        .filter(|&i| i < input.len())
        .collect();
    if starts.is_empty() {
        return;
    }
    let start = starts[rng.below(starts.len())];
    let end = input[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(input.len(), |p| start + p + 1);
    let line = input[start..end].to_vec();
    let times = (2 + rng.below(300)).min(max_len / line.len().max(1));
    if times < 2 {
        return;
    }
    let mut repeated = Vec::with_capacity(line.len() * times);
    for _ in 0..times {
        repeated.extend_from_slice(&line);
    }
    input.splice(start..end, repeated);
}

fn memchr_all(input: &[u8]) -> impl Iterator<Item = usize> + '_ {
    input
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(|(i, _)| i)
}

/// `input` as printable text: ASCII as is, other bytes as `\xNN`, cut after `limit` bytes.
pub fn escape(input: &[u8], limit: usize) -> String {
    let mut out = String::new();
    for &byte in input.iter().take(limit) {
        match byte {
            b'\n' => out.push_str("\\n"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(byte as char),
            _ => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    if input.len() > limit {
        out.push_str(&format!("… ({} more bytes)", input.len() - limit));
    }
    out
}

/// Reports an input that runs longer than the hang limit, then aborts the process (a hung
/// target cannot be interrupted from outside its thread).
struct Watchdog {
    state: Arc<WatchState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct WatchState {
    /// Milliseconds since `epoch` when the current input started; 0: none running.
    started_ms: AtomicU64,
    input: Mutex<Vec<u8>>,
    done: AtomicBool,
    epoch: Instant,
}

impl Watchdog {
    fn start(target: &'static str, options: &Options) -> Watchdog {
        let state = Arc::new(WatchState {
            started_ms: AtomicU64::new(0),
            input: Mutex::new(Vec::new()),
            done: AtomicBool::new(false),
            epoch: Instant::now(),
        });
        let limit = options.hang_limit;
        let hang_file = options.hang_file.clone();
        let watched = state.clone();
        let thread = std::thread::spawn(move || {
            while !watched.done.load(Ordering::Acquire) {
                std::thread::park_timeout(Duration::from_millis(200));
                let started = watched.started_ms.load(Ordering::Acquire);
                if started == 0 {
                    continue;
                }
                let now = watched.epoch.elapsed().as_millis() as u64;
                if now.saturating_sub(started) > limit.as_millis() as u64 {
                    let input = watched
                        .input
                        .lock()
                        .map(|input| input.clone())
                        .unwrap_or_default();
                    if let Some(path) = &hang_file {
                        let _ = std::fs::write(path, &input);
                    }
                    eprintln!(
                        "{target} target: hang: one input ran longer than {limit:?}{}\ninput ({} \
                         bytes): {}",
                        hang_file
                            .as_ref()
                            .map(|p| format!(" (written to {})", p.display()))
                            .unwrap_or_default(),
                        input.len(),
                        escape(&input, 2000)
                    );
                    std::process::abort();
                }
            }
        });
        Watchdog {
            state,
            thread: Some(thread),
        }
    }

    fn begin(&self, input: &[u8]) {
        if let Ok(mut current) = self.state.input.lock() {
            current.clear();
            current.extend_from_slice(input);
        }
        let now = self.state.epoch.elapsed().as_millis() as u64;
        self.state.started_ms.store(now.max(1), Ordering::Release);
    }

    fn end(&self) {
        self.state.started_ms.store(0, Ordering::Release);
    }

    fn stop(mut self) {
        self.state.done.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
