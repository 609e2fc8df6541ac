//! Live instances of a filter module and the one guest call: copy in, `process`, read back.
//!
//! Owns: the per-store state ([`HostState`]: memory limiter, log rate limit), instantiation plus
//! `init`, the call protocol of ABI v1 with its time and memory limits, and the translation of
//! traps into [`FilterError`] kinds.
//!
//! **Invariant:** no pointer into guest memory outlives one call; every (ptr, len) the guest
//! hands back is bounds-checked against the memory as it is after the call. An instance that
//! failed in any way is dropped, never reused. Guest code runs only on the caller's thread, which
//! must be a blocking thread, never an async executor's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use promrelay_abi::{export, log_level, status, ABI_VERSION};
use wasmtime::{Memory, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc};

use super::engine::{CompiledModule, FilterEngine};
use super::error::FilterError;

/// Largest error text read back from a guest.
const ERROR_TEXT_LIMIT: usize = 4096;
/// Guest log lines allowed per filter per second; the rest are counted and summarised.
const LOG_LINES_PER_SECOND: u64 = 50;

/// Per-filter log rate limiter, shared by all of a filter's instances.
#[derive(Debug)]
pub(crate) struct LogGate {
    filter: String,
    window_start: std::sync::Mutex<Instant>,
    in_window: AtomicU64,
    suppressed: AtomicU64,
}

impl LogGate {
    pub(crate) fn new(filter: &str) -> Arc<LogGate> {
        Arc::new(LogGate {
            filter: filter.to_owned(),
            window_start: std::sync::Mutex::new(Instant::now()),
            in_window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        })
    }

    fn admit(&self) -> bool {
        let mut start = self.window_start.lock().unwrap_or_else(|p| p.into_inner());
        if start.elapsed() >= Duration::from_secs(1) {
            *start = Instant::now();
            self.in_window.store(0, Ordering::Relaxed);
            let dropped = self.suppressed.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                tracing::warn!(filter = %self.filter, dropped, "guest log lines suppressed by rate limit");
            }
        }
        if self.in_window.fetch_add(1, Ordering::Relaxed) < LOG_LINES_PER_SECOND {
            true
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// What a store carries: its limits and where its guest's log lines go.
pub struct HostState {
    limits: StoreLimits,
    memory_limit: usize,
    memory_denied: bool,
    log: Arc<LogGate>,
    /// The guest's last error-level log line of the current call (a panic hook's message).
    last_error_log: Option<String>,
    /// The current call is a reload's dry run: the guest's lines go to debug, marked so, not
    /// under the filter's name at their own level (the refusal quotes an error line anyway).
    dry_run: bool,
}

impl HostState {
    pub(crate) fn guest_log(&mut self, level: i32, text: &str) {
        if level <= log_level::ERROR {
            self.last_error_log = Some(text.to_owned());
        }
        if self.dry_run {
            tracing::debug!(filter = %self.log.filter, dry_run = true, level, "{text}");
            return;
        }
        if !self.log.admit() {
            return;
        }
        let filter = self.log.filter.as_str();
        match level {
            i32::MIN..=0 => tracing::error!(filter, "{text}"),
            1 => tracing::warn!(filter, "{text}"),
            2 => tracing::info!(filter, "{text}"),
            3 => tracing::debug!(filter, "{text}"),
            _ => tracing::trace!(filter, "{text}"),
        }
    }
}

/// Wraps [`StoreLimits`] to remember that a denial happened, so a trap can be reported as
/// out-of-memory rather than as a generic trap.
impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_denied = true;
        }
        self.limits.memory_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_denied = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Per-call limits of one filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    pub time: Duration,
    pub memory: u64,
}

impl CallLimits {
    /// Largest input batch handed to the guest: it must fit in its memory with room to work.
    pub fn input_limit(&self) -> usize {
        usize::try_from(self.memory / 2).unwrap_or(usize::MAX)
    }

    /// Past this memory size an instance is recycled after its call: linear memory never
    /// shrinks, and a filter that once needed much should not keep it.
    pub fn high_water(&self) -> usize {
        usize::try_from(self.memory / 4 * 3).unwrap_or(usize::MAX)
    }
}

/// What a successful `process` call produced, copied out of guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestOutput {
    Pass,
    /// Keep bitmap, exactly `ceil(series/8)` bytes.
    Mask(Vec<u8>),
    /// A whole new batch, not yet validated.
    Replaced(Vec<u8>),
}

/// One instantiated, initialised filter.
pub(crate) struct LiveInstance {
    store: Store<HostState>,
    /// Kept to look up the optional `promrelay_trace` export when (only when) a chain is
    /// explained: the scrape path never touches it.
    instance: wasmtime::Instance,
    memory: Memory,
    reserve: TypedFunc<i32, i32>,
    process: TypedFunc<i32, i32>,
    output_ptr: TypedFunc<(), i32>,
    output_len: TypedFunc<(), i32>,
    limits: CallLimits,
    pub(crate) calls: u64,
    ticker: Arc<super::engine::Ticker>,
}

impl LiveInstance {
    /// Instantiates `module`, checks its ABI version and runs `init` with `config_json`.
    pub(crate) fn new(
        module: &CompiledModule,
        limits: CallLimits,
        config_json: &[u8],
        log: Arc<LogGate>,
    ) -> Result<LiveInstance, FilterError> {
        // Instantiation runs the module's start function and `init`: guest code.
        let _ticking = module.ticker.running();
        let memory_limit = usize::try_from(limits.memory).unwrap_or(usize::MAX);
        let state = HostState {
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_limit)
                .table_elements(1 << 20)
                .instances(1)
                .memories(1)
                .tables(1)
                .trap_on_grow_failure(true)
                .build(),
            memory_limit,
            memory_denied: false,
            log,
            last_error_log: None,
            dry_run: false,
        };
        let engine = module.pre.module().engine();
        let mut store = Store::new(engine, state);
        store.limiter(|state| state as &mut dyn ResourceLimiter);
        store.set_epoch_deadline(FilterEngine::deadline_ticks(limits.time));
        let instance = module
            .pre
            .instantiate(&mut store)
            .map_err(|e| classify(&store, limits, e))
            .map_err(|e| FilterError::load(format!("instantiating: {e}")))?;
        let func = |store: &mut Store<HostState>, name: &str| {
            instance
                .get_typed_func::<i32, i32>(&mut *store, name)
                .map_err(|e| FilterError::load(format!("export {name}: {e:#}")))
        };
        let nullary = |store: &mut Store<HostState>, name: &str| {
            instance
                .get_typed_func::<(), i32>(&mut *store, name)
                .map_err(|e| FilterError::load(format!("export {name}: {e:#}")))
        };
        let memory = instance
            .get_memory(&mut store, export::MEMORY)
            .ok_or_else(|| FilterError::load("export memory missing"))?;
        let mut live = LiveInstance {
            reserve: func(&mut store, export::RESERVE)?,
            process: func(&mut store, export::PROCESS)?,
            output_ptr: nullary(&mut store, export::OUTPUT_PTR)?,
            output_len: nullary(&mut store, export::OUTPUT_LEN)?,
            memory,
            limits,
            calls: 0,
            instance,
            store,
            ticker: Arc::clone(&module.ticker),
        };
        let abi_version = nullary(&mut live.store, export::ABI_VERSION)?;
        let init = func(&mut live.store, export::INIT)?;
        live.begin_call();
        let version = abi_version
            .call(&mut live.store, ())
            .map_err(|e| live.fail(e))
            .map_err(|e| FilterError::load(format!("promrelay_abi_version: {e}")))?;
        if version != ABI_VERSION {
            return Err(FilterError::load(format!(
                "module speaks ABI version {version}, this host speaks {ABI_VERSION}"
            )));
        }
        let code = live
            .run(init, config_json)
            .map_err(|e| FilterError::load(format!("init: {e}")))?;
        if status::is_error(code) {
            return Err(FilterError::load(init_failure(code, &live.error_text())));
        }
        Ok(live)
    }

    /// Resets the per-call state: deadline, OOM marker, last error log line.
    fn begin_call(&mut self) {
        self.store
            .set_epoch_deadline(FilterEngine::deadline_ticks(self.limits.time));
        let state = self.store.data_mut();
        state.memory_denied = false;
        state.last_error_log = None;
    }

    fn fail(&self, error: wasmtime::Error) -> FilterError {
        classify(&self.store, self.limits, error)
    }

    /// Copies `input` into the guest's buffer and calls `entry(len)`; returns its status.
    fn run(&mut self, entry: TypedFunc<i32, i32>, input: &[u8]) -> Result<i32, FilterError> {
        let limit = self.limits.input_limit();
        if input.len() > limit || i32::try_from(input.len()).is_err() {
            return Err(FilterError::InputTooLarge {
                len: input.len(),
                limit,
            });
        }
        let len = input.len() as i32;
        self.begin_call();
        let ptr = self
            .reserve
            .call(&mut self.store, len)
            .map_err(|e| self.fail(e))?;
        if ptr == 0 {
            return Err(FilterError::invalid(format!(
                "promrelay_reserve({len}) returned 0 (the guest could not allocate)"
            )));
        }
        let start = ptr as u32 as usize;
        let data = self.memory.data_mut(&mut self.store);
        let Some(target) = start
            .checked_add(input.len())
            .and_then(|end| data.get_mut(start..end))
        else {
            return Err(FilterError::invalid(format!(
                "promrelay_reserve({len}) returned {start:#x}, outside the guest's {} bytes of memory",
                data.len()
            )));
        };
        target.copy_from_slice(input);
        entry.call(&mut self.store, len).map_err(|e| self.fail(e))
    }

    /// The output region of the last call, bounds-checked.
    fn output(&mut self) -> Result<&[u8], FilterError> {
        let ptr = self
            .output_ptr
            .call(&mut self.store, ())
            .map_err(|e| self.fail(e))?;
        let len = self
            .output_len
            .call(&mut self.store, ())
            .map_err(|e| self.fail(e))?;
        if len < 0 {
            return Err(FilterError::invalid(format!(
                "output length {len} is negative"
            )));
        }
        let (start, len) = (ptr as u32 as usize, len as usize);
        let data = self.memory.data(&self.store);
        start
            .checked_add(len)
            .and_then(|end| data.get(start..end))
            .ok_or_else(|| {
                FilterError::invalid(format!(
                    "output {start:#x}+{len} lies outside the guest's {} bytes of memory",
                    data.len()
                ))
            })
    }

    /// The guest's error text after a negative status (lossy UTF-8, cut to a bounded length).
    fn error_text(&mut self) -> String {
        match self.output() {
            Ok(bytes) => {
                let cut = &bytes[..bytes.len().min(ERROR_TEXT_LIMIT)];
                let text = String::from_utf8_lossy(cut).trim().to_owned();
                if text.is_empty() {
                    "(no message)".to_owned()
                } else {
                    text
                }
            }
            Err(e) => format!("(error text unreadable: {e})"),
        }
    }

    /// One `process` call on `batch` holding `series_count` series. `output_limit` caps a
    /// REPLACED batch. Blocking.
    pub(crate) fn process(
        &mut self,
        batch: &[u8],
        series_count: usize,
        output_limit: usize,
    ) -> Result<GuestOutput, FilterError> {
        let _ticking = self.ticker.running();
        self.calls += 1;
        let process = self.process.clone();
        let code = self.run(process, batch)?;
        match code {
            status::PASS => Ok(GuestOutput::Pass),
            status::MASK => {
                let expected = promrelay_abi::mask_len(series_count);
                let mask = self.output()?;
                if mask.len() != expected {
                    return Err(FilterError::invalid(format!(
                        "MASK of {} bytes for {series_count} series (expected {expected})",
                        mask.len()
                    )));
                }
                Ok(GuestOutput::Mask(mask.to_vec()))
            }
            status::REPLACED => {
                let output = self.output()?;
                if output.len() > output_limit {
                    return Err(FilterError::invalid(format!(
                        "REPLACED batch of {} bytes exceeds the output limit of {output_limit} bytes",
                        output.len()
                    )));
                }
                Ok(GuestOutput::Replaced(output.to_vec()))
            }
            code if status::is_error(code) => Err(FilterError::Guest {
                status: code,
                message: self.error_text(),
            }),
            code => Err(FilterError::invalid(format!("unknown status {code}"))),
        }
    }

    /// One `promrelay_trace` call on `batch` (ABI.md §10): `None` when the module does not
    /// export it, else the trace JSON (at most `output_limit` bytes, not yet validated).
    /// Blocking; only for explaining a chain, never on the scrape path.
    pub(crate) fn trace(
        &mut self,
        batch: &[u8],
        output_limit: usize,
    ) -> Result<Option<Vec<u8>>, FilterError> {
        let _ticking = self.ticker.running();
        let Some(func) = self.instance.get_func(&mut self.store, export::TRACE) else {
            return Ok(None);
        };
        let trace = func.typed::<i32, i32>(&self.store).map_err(|e| {
            FilterError::invalid(format!(
                "export {} must be (i32) -> i32 (ABI.md §10): {e:#}",
                export::TRACE
            ))
        })?;
        self.calls += 1;
        let code = self.run(trace, batch)?;
        match code {
            status::PASS => {
                let output = self.output()?;
                if output.len() > output_limit {
                    return Err(FilterError::invalid(format!(
                        "trace of {} bytes exceeds the limit of {output_limit} bytes",
                        output.len()
                    )));
                }
                Ok(Some(output.to_vec()))
            }
            code if status::is_error(code) => Err(FilterError::Guest {
                status: code,
                message: self.error_text(),
            }),
            code => Err(FilterError::invalid(format!(
                "{} returned status {code} (0 or an error expected)",
                export::TRACE
            ))),
        }
    }

    /// Marks the following calls as (or no longer as) a reload's dry run, for the guest's log.
    pub(crate) fn set_dry_run(&mut self, dry_run: bool) {
        self.store.data_mut().dry_run = dry_run;
    }

    /// Whether the instance should be dropped rather than reused after a successful call.
    pub(crate) fn worn_out(&self, max_calls: u64) -> bool {
        self.calls >= max_calls || self.memory.data_size(&self.store) > self.limits.high_water()
    }
}

/// Turns a wasmtime error from a guest call into a [`FilterError`] kind.
fn classify(store: &Store<HostState>, limits: CallLimits, error: wasmtime::Error) -> FilterError {
    let state = store.data();
    if state.memory_denied {
        return FilterError::OutOfMemory {
            limit: limits.memory,
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => FilterError::Timeout {
            limit_ms: limits.time.as_millis() as u64,
        },
        Some(trap) => {
            let mut message = trap.to_string();
            if let Some(said) = &state.last_error_log {
                message = format!("{message}; the filter said: {said}");
            }
            FilterError::Trap { message }
        }
        None => FilterError::Trap {
            message: format!("{error:#}"),
        },
    }
}

/// Why `init` failed, from its status and the guest's own words. The status already says what
/// kind of failure it is, so the text is not prefixed twice (the SDK's config errors are serde's
/// words alone).
fn init_failure(code: i32, message: &str) -> String {
    match code {
        status::BAD_CONFIG => format!("bad config: {message}"),
        status::PANIC => format!("init panicked: {message}"),
        _ => format!("init failed (status {code}): {message}"),
    }
}
