//! A wasmtime [`Engine`] with its epoch ticker, and compiled modules.
//!
//! Owns: engine configuration (epoch interruption, no fuel, a wasm stack cap), the ticker thread
//! that advances the epoch, the compiled-module cache keyed by the SHA-256 of the module bytes,
//! import/export checks, and the [`Linker`] with the only host import, `promrelay.log`.
//!
//! There is no process-wide engine: whoever runs filters (the daemon, a CLI command, a test)
//! creates one with [`FilterEngine::new`] and passes it down.
//!
//! **Invariant:** a [`CompiledModule`] has passed the import and export checks; nothing else in
//! the crate creates one. This module never runs guest code: instances live in `instance`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use promrelay_abi::{export, import};
use sha2::{Digest, Sha256};
use wasmtime::{
    Caller, Config, Engine, ExternType, FuncType, InstancePre, Linker, Module, ValType,
};

use super::error::FilterError;
use super::instance::HostState;

/// How often the ticker thread advances the epoch; time limits are rounded up to this.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);
/// How long an idle ticker sleeps before it looks whether its engine is gone.
const IDLE_PARK: Duration = Duration::from_secs(1);

/// The epoch ticker's state: it ticks only while some guest code may run, so an idle relay (or
/// one without filters) does not wake every [`EPOCH_TICK`].
#[derive(Debug)]
pub(crate) struct Ticker {
    running: std::sync::atomic::AtomicUsize,
    thread: std::sync::OnceLock<std::thread::Thread>,
}

impl Ticker {
    /// Guest code may run until the guard drops: the epoch advances meanwhile.
    pub(crate) fn running(self: &Arc<Ticker>) -> TickGuard {
        use std::sync::atomic::Ordering;
        if self.running.fetch_add(1, Ordering::SeqCst) == 0 {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
        TickGuard(Arc::clone(self))
    }
}

/// Keeps the ticker ticking (see [`Ticker::running`]).
pub(crate) struct TickGuard(Arc<Ticker>);

impl Drop for TickGuard {
    fn drop(&mut self) {
        self.0
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
/// Wasm stack cap: deep recursion traps with a stack overflow well before the host's stack.
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// A filter engine: one wasmtime engine, its ticker thread, one module cache. A daemon has one,
/// shared by its chains and its explain stages.
pub struct FilterEngine {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Mutex<HashMap<[u8; 32], Arc<CompiledModule>>>,
    ticker: Arc<Ticker>,
}

/// A compiled, checked module, ready to instantiate.
pub struct CompiledModule {
    /// Lower-case hex SHA-256 of the module bytes.
    pub hash: String,
    pub(crate) pre: InstancePre<HostState>,
    /// Its engine's ticker: instances hold it while guest code runs.
    pub(crate) ticker: Arc<Ticker>,
}

impl std::fmt::Debug for CompiledModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModule")
            .field("hash", &self.hash)
            .finish()
    }
}

impl FilterEngine {
    /// A new engine with its own ticker thread; the ticker ends when the engine is dropped.
    pub fn new() -> Result<FilterEngine, FilterError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.consume_fuel(false);
        config.max_wasm_stack(MAX_WASM_STACK);
        let engine = Engine::new(&config)
            .map_err(|e| FilterError::load(format!("creating the wasm engine: {e:#}")))?;
        let weak = engine.weak();
        let ticker = Arc::new(Ticker {
            running: std::sync::atomic::AtomicUsize::new(0),
            thread: std::sync::OnceLock::new(),
        });
        let state = Arc::clone(&ticker);
        let thread = std::thread::Builder::new()
            .name("promrelay-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    if state.running.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                        // Idle: a call's guard unparks us (a deadline set meanwhile is relative
                        // to the epoch, which has not moved).
                        drop(engine);
                        std::thread::park_timeout(IDLE_PARK);
                        continue;
                    }
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| FilterError::load(format!("starting the epoch ticker: {e}")))?;
        let _ = ticker.thread.set(thread.thread().clone());
        let mut linker = Linker::new(&engine);
        linker
            .func_wrap(import::MODULE, import::LOG, host_log)
            .map_err(|e| FilterError::load(format!("defining promrelay.log: {e:#}")))?;
        Ok(FilterEngine {
            engine,
            linker,
            cache: Mutex::new(HashMap::new()),
            ticker,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Epoch ticks covering `limit` (at least two, so a call never starts already expired).
    pub(crate) fn deadline_ticks(limit: Duration) -> u64 {
        let tick = EPOCH_TICK.as_micros().max(1);
        (limit.as_micros().div_ceil(tick) as u64)
            .saturating_add(1)
            .max(2)
    }

    /// Reads and compiles a module file. Blocking: call from a blocking thread.
    pub fn load_file(&self, path: &Path) -> Result<Arc<CompiledModule>, FilterError> {
        let bytes = std::fs::read(path)
            .map_err(|e| FilterError::load(format!("reading module {}: {e}", path.display())))?;
        self.load(&bytes)
            .map_err(|e| FilterError::load(format!("module {}: {e}", path.display())))
    }

    /// Compiles (or finds in the cache) and checks a module. Blocking: compiling takes
    /// milliseconds to seconds, so call it from a blocking thread.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<CompiledModule>, FilterError> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(hit) = self.lock_cache().get(&digest) {
            return Ok(hit.clone());
        }
        let module = compile(&self.engine, bytes)?;
        check_imports(&module)?;
        check_exports(&module)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| FilterError::load(format!("linking: {e:#}")))?;
        let compiled = Arc::new(CompiledModule {
            hash: hex::encode(digest),
            pre,
            ticker: Arc::clone(&self.ticker),
        });
        // Two threads may have compiled the same bytes at once: the first one cached wins, so
        // every caller shares one module.
        let cached = self.lock_cache().entry(digest).or_insert(compiled).clone();
        Ok(cached)
    }

    /// Forgets cached modules no chain uses any more (only the cache holds them).
    pub fn prune_cache(&self) {
        self.lock_cache()
            .retain(|_, module| Arc::strong_count(module) > 1);
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<CompiledModule>>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The magic number every wasm binary starts with.
const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Compiles a wasm binary, or WAT text for hand-written filters. What the bytes look like picks
/// the error: a file that is neither (an ELF binary, a gzip, an HTML error page) must not be
/// reported as a WAT syntax error with a caret.
fn compile(engine: &Engine, bytes: &[u8]) -> Result<Module, FilterError> {
    if bytes.starts_with(WASM_MAGIC) {
        return Module::from_binary(engine, bytes)
            .map_err(|e| FilterError::load(format!("not a valid wasm module: {e:#}")));
    }
    if looks_like_wat(bytes) {
        return Module::new(engine, bytes).map_err(|e| {
            FilterError::load(format!(
                "not a valid wasm module: it has no \\0asm magic, so it was read as WAT text, \
                 which does not parse: {e:#}"
            ))
        });
    }
    let shown = &bytes[..bytes.len().min(8)];
    Err(FilterError::load(format!(
        "not a wasm module: neither a wasm binary (no \\0asm magic at the start) nor WAT text \
         (does not start with '('); {} bytes, starting {}. Give the .wasm file the filter's \
         build wrote (e.g. target/filters/NAME.wasm) or a .wat text file",
        bytes.len(),
        if shown.is_empty() {
            "(empty file)".to_owned()
        } else {
            hex_bytes(shown)
        }
    )))
}

/// Whether `bytes` start, after whitespace and `;;` line comments, with `(`: a WAT module (a
/// `(;` block comment starts with `(` too).
fn looks_like_wat(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    loop {
        rest = rest.trim_ascii_start();
        if let Some(comment) = rest.strip_prefix(b";;") {
            let end = memchr::memchr(b'\n', comment).map_or(comment.len(), |at| at + 1);
            rest = &comment[end..];
        } else {
            return rest.first() == Some(&b'(');
        }
    }
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(f) => format!("function {f}"),
        ExternType::Memory(_) => "memory".into(),
        ExternType::Table(_) => "table".into(),
        ExternType::Global(_) => "global".into(),
        ExternType::Tag(_) => "tag".into(),
    }
}

fn log_type(engine: &Engine) -> FuncType {
    FuncType::new(engine, [ValType::I32, ValType::I32, ValType::I32], [])
}

/// Refuses a module importing anything but `promrelay.log(i32, i32, i32)`, naming every offender.
fn check_imports(module: &Module) -> Result<(), FilterError> {
    let expected = log_type(module.engine());
    let offending: Vec<String> = module
        .imports()
        .filter(|i| {
            let allowed = i.module() == import::MODULE
                && i.name() == import::LOG
                && matches!(i.ty(), ExternType::Func(ref f) if FuncType::eq(f, &expected));
            !allowed
        })
        .map(|i| format!("{}.{} ({})", i.module(), i.name(), describe(&i.ty())))
        .collect();
    if offending.is_empty() {
        Ok(())
    } else {
        Err(FilterError::load(format!(
            "module imports what the host does not provide (only promrelay.log(i32, i32, i32) \
             is allowed; no WASI): {}",
            offending.join(", ")
        )))
    }
}

/// Refuses a module missing an ABI export or exporting one with the wrong type, naming each.
fn check_exports(module: &Module) -> Result<(), FilterError> {
    let engine = module.engine();
    let mut problems = Vec::new();
    match module.get_export(export::MEMORY) {
        Some(ExternType::Memory(m)) if !m.is_64() && !m.is_shared() => {}
        Some(other) => problems.push(format!(
            "{} is a {}, not a 32-bit memory",
            export::MEMORY,
            describe(&other)
        )),
        None => problems.push(format!("{} missing", export::MEMORY)),
    }
    let nullary = FuncType::new(engine, [], [ValType::I32]);
    let unary = FuncType::new(engine, [ValType::I32], [ValType::I32]);
    for (name, expected) in [
        (export::ABI_VERSION, &nullary),
        (export::RESERVE, &unary),
        (export::INIT, &unary),
        (export::PROCESS, &unary),
        (export::OUTPUT_PTR, &nullary),
        (export::OUTPUT_LEN, &nullary),
    ] {
        match module.get_export(name) {
            Some(ExternType::Func(f)) if FuncType::eq(&f, expected) => {}
            Some(other) => problems.push(format!(
                "{name} is {} (expected function {expected})",
                describe(&other)
            )),
            None => problems.push(format!("{name} missing")),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(FilterError::load(format!(
            "module does not export the promrelay ABI v1: {}",
            problems.join(", ")
        )))
    }
}

/// Longest guest log line forwarded; longer ones are cut.
const LOG_LINE_LIMIT: usize = 4096;

/// `promrelay.log(level, ptr, len)`: forwards to `tracing` under the filter's name, rate-limited.
/// A bad pointer is ignored rather than trapping: logging must never break a filter.
fn host_log(mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32) {
    let Some(wasmtime::Extern::Memory(memory)) = caller.get_export(export::MEMORY) else {
        return;
    };
    let (data, state) = memory.data_and_store_mut(&mut caller);
    let start = ptr as u32 as usize;
    let len = (len as u32 as usize).min(LOG_LINE_LIMIT);
    let Some(bytes) = start.checked_add(len).and_then(|end| data.get(start..end)) else {
        return;
    };
    let text = String::from_utf8_lossy(bytes);
    state.guest_log(level, &text);
}
