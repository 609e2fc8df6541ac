//! The filter's side of the call protocol, in safe code: buffers, config parsing, status codes,
//! panic capture. The wasm exports (`abi`) and the native test harness (`testing`) both drive a
//! filter through this one type, so `cargo test` exercises the same path the relay does.
//!
//! **Invariant:** no pointer arithmetic here; `abi` turns buffers into addresses.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use promrelay_abi::{log_level, status, BatchWriter};

use crate::batch::Batch;
use crate::error::Error;
use crate::Filter;

/// One filter instance: its state, its reused input and output buffers.
pub struct Runtime<F: Filter> {
    filter: Option<F>,
    input: Vec<u8>,
    output: Vec<u8>,
    writer: BatchWriter,
}

impl<F: Filter> Default for Runtime<F> {
    fn default() -> Self {
        Runtime::new()
    }
}

impl<F: Filter> Runtime<F> {
    /// A runtime with no filter yet (`init` creates it).
    pub fn new() -> Runtime<F> {
        Runtime {
            filter: None,
            input: Vec::new(),
            output: Vec::new(),
            writer: BatchWriter::new(),
        }
    }

    /// The input buffer, grown to at least `len` bytes (never shrunk). `None` when memory is
    /// exhausted.
    pub fn reserve(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.input.len() < len {
            self.input.try_reserve_exact(len - self.input.len()).ok()?;
            self.input.resize(len, 0);
        }
        Some(&mut self.input[..])
    }

    #[cfg(test)]
    pub(crate) fn set_filter(&mut self, filter: F) {
        self.filter = Some(filter);
    }

    /// The output of the last call: a mask, a batch or error text.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Parses the config JSON in the first `len` input bytes and builds the filter.
    pub fn init(&mut self, len: usize) -> i32 {
        install_hooks();
        self.filter = None;
        let Some(json) = self.input.get(..len) else {
            return fail(
                &mut self.output,
                status::BAD_INPUT,
                "config length past the input buffer",
            );
        };
        match guarded(|| parse_config::<F::Config>(json).and_then(F::init)) {
            Ok(filter) => {
                self.filter = Some(filter);
                self.output.clear();
                status::PASS
            }
            Err((status::ERROR, message)) => fail(&mut self.output, status::BAD_CONFIG, &message),
            Err((code, message)) => fail(&mut self.output, code, &message),
        }
    }

    /// Runs the filter on the batch in the first `len` input bytes.
    pub fn process(&mut self, len: usize) -> i32 {
        let Runtime {
            filter,
            input,
            output,
            writer,
        } = self;
        let Some(filter) = filter.as_mut() else {
            return fail(
                output,
                status::ERROR,
                "process called before a successful init",
            );
        };
        let Some(bytes) = input.get(..len) else {
            return fail(
                output,
                status::BAD_INPUT,
                "batch length past the input buffer",
            );
        };
        let mut batch = match Batch::from_host(bytes) {
            Ok(batch) => batch,
            Err(e) => return fail(output, status::BAD_INPUT, &format!("unreadable batch: {e}")),
        };
        let result = guarded(|| {
            filter.process(&mut batch)?;
            batch.write_output(output, writer)
        });
        match result {
            Ok(code) => code,
            Err((code, message)) => fail(output, code, &message),
        }
    }
}

impl<F: crate::Explain> Runtime<F> {
    /// Explains the filter's steps on the batch in the first `len` input bytes (ABI.md §10):
    /// the output is the trace as JSON. Never called on the relay's scrape path.
    pub fn trace(&mut self, len: usize) -> i32 {
        let Runtime {
            filter,
            input,
            output,
            ..
        } = self;
        let Some(filter) = filter.as_mut() else {
            return fail(
                output,
                status::ERROR,
                "trace called before a successful init",
            );
        };
        let Some(bytes) = input.get(..len) else {
            return fail(
                output,
                status::BAD_INPUT,
                "batch length past the input buffer",
            );
        };
        let batch = match Batch::from_host(bytes) {
            Ok(batch) => batch,
            Err(e) => return fail(output, status::BAD_INPUT, &format!("unreadable batch: {e}")),
        };
        let mut trace = crate::trace::Trace::new();
        trace.clear();
        match guarded(|| filter.explain(&batch, &mut trace)) {
            Ok(()) => {
                output.clear();
                output.extend_from_slice(trace.to_json().as_bytes());
                status::PASS
            }
            Err((code, message)) => fail(output, code, &message),
        }
    }
}

fn fail(output: &mut Vec<u8>, code: i32, message: &str) -> i32 {
    output.clear();
    output.extend_from_slice(message.as_bytes());
    code
}

/// Deserializes the config. A missing config arrives as `{}` (or `null`); each is tried as the
/// other too, so both a struct whose fields all have defaults and `()` accept "no config".
///
/// The error is serde's own words and nothing else: the status (`BAD_CONFIG`) already says that
/// the config is at fault, and the host prefixes "bad config: ".
fn parse_config<C: serde::de::DeserializeOwned>(json: &[u8]) -> Result<C, Error> {
    match serde_json::from_slice::<C>(json) {
        Ok(config) => Ok(config),
        Err(first) => {
            let other: &[u8] = match json.trim_ascii() {
                b"null" => b"{}",
                b"{}" => b"null",
                _ => return Err(config_error(&first)),
            };
            serde_json::from_slice::<C>(other).map_err(|_| config_error(&first))
        }
    }
}

/// serde's message without its position: the JSON is the host's rendering of the YAML the
/// operator wrote, so "line 1 column 7" would point into text nobody sees.
fn config_error(error: &serde_json::Error) -> Error {
    let text = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    Error::new(text.strip_suffix(&position).unwrap_or(&text))
}

thread_local! {
    /// The message of the last panic, set by the hook before unwinding (native) or trapping (wasm).
    static PANIC_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `work`, turning an error into `(ERROR, text)` and a caught panic into `(PANIC, text)`.
/// On wasm (`panic = "abort"`) a panic never returns here: the hook has logged it at error level
/// and the call traps, which the relay reports with that line.
fn guarded<T>(work: impl FnOnce() -> Result<T, Error>) -> Result<T, (i32, String)> {
    match panic::catch_unwind(AssertUnwindSafe(work)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err((status::ERROR, error.to_string())),
        Err(_) => {
            let message = PANIC_MESSAGE.with_borrow_mut(Option::take);
            Err((
                status::PANIC,
                message.unwrap_or_else(|| "panicked".to_owned()),
            ))
        }
    }
}

/// Installs the logger and the panic hook, once per instance.
fn install_hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        crate::logger::install();
        // Natively the default hook keeps printing panics (test failures read as usual); on
        // wasm there is no stderr, so the message goes to the relay's log instead.
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let payload = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(non-text panic payload)");
            let message = match info.location() {
                Some(at) => format!("panicked at {}:{}: {payload}", at.file(), at.line()),
                None => format!("panicked: {payload}"),
            };
            if cfg!(target_arch = "wasm32") {
                crate::abi::host_log(log_level::ERROR, &message);
            } else {
                previous(info);
            }
            PANIC_MESSAGE.with(|slot| {
                if let Ok(mut slot) = slot.try_borrow_mut() {
                    *slot = Some(message);
                }
            });
        }));
    });
}
