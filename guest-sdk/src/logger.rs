//! The `log` facade's backend: every record goes to the relay through `promrelay.log`.
//!
//! On native targets (tests) the lines go to stderr and to a per-thread capture that
//! [`crate::testing`] hands back.

use std::cell::RefCell;

use log::{Level, LevelFilter, Log, Metadata, Record};
use promrelay_abi::log_level;

struct HostLogger;

static LOGGER: HostLogger = HostLogger;

impl Log for HostLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => log_level::ERROR,
            Level::Warn => log_level::WARN,
            Level::Info => log_level::INFO,
            Level::Debug => log_level::DEBUG,
            Level::Trace => log_level::TRACE,
        };
        crate::abi::host_log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

/// Makes the SDK's logger the `log` backend at level info, unless the filter set its own.
pub(crate) fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}

thread_local! {
    static CAPTURED: RefCell<Vec<(i32, String)>> = const { RefCell::new(Vec::new()) };
}

/// Native stand-in for the `promrelay.log` import.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) fn native_log(level: i32, text: &str) {
    let name = match level {
        log_level::ERROR => "error",
        log_level::WARN => "warn",
        log_level::DEBUG => "debug",
        log_level::TRACE => "trace",
        _ => "info",
    };
    eprintln!("[filter {name}] {text}");
    CAPTURED.with_borrow_mut(|lines| lines.push((level, text.to_owned())));
}

/// Takes the lines logged on this thread so far.
pub(crate) fn take_captured() -> Vec<(i32, String)> {
    CAPTURED.with_borrow_mut(std::mem::take)
}
