//! One configured filter of a chain: its compiled module, its config, a small pool of live
//! instances, its statistics.
//!
//! **Invariant:** a [`Stage`] exists only after its canary instance instantiated and accepted
//! its config in `init`, so a chain never holds a filter that cannot start. Instances that
//! failed are dropped and rebuilt from the module's `InstancePre` on the next call.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::engine::CompiledModule;
use super::error::FilterError;
use super::instance::{CallLimits, GuestOutput, LiveInstance, LogGate};
use super::metrics::{filter_labels, METRICS};
use crate::config::{FilterConfig, OnError};
use crate::lifecycle::Events;

/// Calls after which an instance is replaced by a fresh one.
pub const MAX_CALLS_PER_INSTANCE: u64 = 10_000;
/// Idle instances kept per filter (one per concurrently filtered scrape, up to this many).
/// A target's scrapes go to the same slot when it is free ([`Stage::call`]'s affinity), so a
/// filter that remembers per series (the relabel memo) finds its series there again.
const POOL_SIZE: usize = 4;
/// Distinct error texts remembered per filter for "log once".
const DISTINCT_ERRORS: usize = 64;

/// Counters of one filter that survive reloads of the same name.
#[derive(Debug, Default)]
pub struct StageStats {
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    last_error: Mutex<Option<String>>,
    seen_errors: Mutex<HashSet<String>>,
}

impl StageStats {
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// One filter, ready to call.
pub struct Stage {
    pub config: FilterConfig,
    pub module: Arc<CompiledModule>,
    pub loaded_at: SystemTime,
    pub stats: Arc<StageStats>,
    /// Where this filter's first failures with a new error are reported (`filter_failure`).
    events: Events,
    limits: CallLimits,
    config_json: Vec<u8>,
    /// `POOL_SIZE` slots of idle instances.
    pool: Mutex<Vec<Option<LiveInstance>>>,
    log: Arc<LogGate>,
    calls_metric: Counter,
    duration_metric: Histogram,
    series_in_metric: Counter,
    series_out_metric: Counter,
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("name", &self.config.name)
            .field("module", &self.config.module)
            .field("hash", &self.module.hash)
            .finish()
    }
}

impl Stage {
    /// Builds the stage and its canary instance (instantiate, ABI version, `init`); its failures
    /// are reported to `events` ([`Events::none`] outside a daemon). Blocking.
    pub fn new(
        config: FilterConfig,
        module: Arc<CompiledModule>,
        stats: Arc<StageStats>,
        events: Events,
    ) -> Result<Stage, FilterError> {
        let limits = CallLimits {
            time: config.limits.time,
            memory: config.limits.memory,
        };
        let config_json = serde_json::to_vec(&config.config)
            .map_err(|e| FilterError::load(format!("encoding the filter config as JSON: {e}")))?;
        let log = LogGate::new(&config.name);
        let canary = LiveInstance::new(&module, limits, &config_json, log.clone())?;
        let labels = filter_labels(&config.name);
        Ok(Stage {
            calls_metric: METRICS.calls.get_or_create(&labels).clone(),
            duration_metric: METRICS.duration.get_or_create(&labels).clone(),
            series_in_metric: METRICS.series_in.get_or_create(&labels).clone(),
            series_out_metric: METRICS.series_out.get_or_create(&labels).clone(),
            pool: Mutex::new({
                let mut slots: Vec<Option<LiveInstance>> = (0..POOL_SIZE).map(|_| None).collect();
                slots[0] = Some(canary);
                slots
            }),
            loaded_at: SystemTime::now(),
            events,
            limits,
            config_json,
            log,
            module,
            stats,
            config,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn on_error(&self) -> OnError {
        self.config.on_error
    }

    pub fn module_path(&self) -> &PathBuf {
        &self.config.module
    }

    /// One guest call on `batch` (holding `series_count` series) for a live scrape. Blocking:
    /// run it on a blocking thread. Failures are counted and logged here; the caller applies
    /// `on_error`. `affinity` (a hash of the scrape's target) picks the instance that served
    /// this target before, when it is idle.
    pub fn call(
        &self,
        batch: &[u8],
        series_count: usize,
        affinity: u64,
    ) -> Result<GuestOutput, FilterError> {
        let started = Instant::now();
        self.stats.calls.fetch_add(1, Ordering::Relaxed);
        self.calls_metric.inc();
        self.series_in_metric.inc_by(series_count as u64);
        let result = self.call_instance(batch, series_count, false, affinity);
        self.duration_metric
            .observe(started.elapsed().as_secs_f64());
        if let Err(error) = &result {
            self.record_error(error);
        }
        result
    }

    /// One guest call that counts, logs and reports nothing: the dry run of a reload. Its
    /// failure refuses the candidate chain and is reported by the reload, never as this
    /// filter's (the running one may share the name and the statistics). Blocking.
    pub(crate) fn trial(
        &self,
        batch: &[u8],
        series_count: usize,
    ) -> Result<GuestOutput, FilterError> {
        self.call_instance(batch, series_count, true, 0)
    }

    /// The filter's own trace of `batch` (`promrelay_trace`, ABI.md §10), `None` when the module
    /// offers none. Counts, logs and reports nothing, like [`Stage::trial`]: only an explain
    /// (CLI or monitor port) calls it, on a stage of its own, never a live chain's. Blocking.
    pub(crate) fn trace(&self, batch: &[u8]) -> Result<Option<Vec<u8>>, FilterError> {
        let mut instance = self.take(0)?;
        instance.set_dry_run(true);
        let output_limit = batch.len().saturating_mul(64).max(1 << 20);
        let trace = instance.trace(batch, output_limit)?;
        self.put_back(0, instance);
        Ok(trace)
    }

    fn call_instance(
        &self,
        batch: &[u8],
        series_count: usize,
        dry_run: bool,
        affinity: u64,
    ) -> Result<GuestOutput, FilterError> {
        let mut instance = self.take(affinity)?;
        instance.set_dry_run(dry_run);
        let output_limit = batch.len().saturating_mul(4).max(1 << 20);
        // On error the instance is dropped here: a trapped or interrupted instance may hold
        // inconsistent state, and a fresh one costs one instantiation and `init`.
        let output = instance.process(batch, series_count, output_limit)?;
        self.put_back(affinity, instance);
        Ok(output)
    }

    /// The idle instance of the affinity's slot, else any idle one, else a new one.
    fn take(&self, affinity: u64) -> Result<LiveInstance, FilterError> {
        let pooled = {
            let mut pool = self.lock_pool();
            let slot = (affinity % POOL_SIZE as u64) as usize;
            match pool[slot].take() {
                Some(instance) => Some(instance),
                None => pool.iter_mut().find_map(Option::take),
            }
        };
        match pooled {
            Some(instance) => Ok(instance),
            None => LiveInstance::new(
                &self.module,
                self.limits,
                &self.config_json,
                self.log.clone(),
            ),
        }
    }

    /// Back into the affinity's slot, else any empty one; dropped when worn out or no slot is
    /// free.
    fn put_back(&self, affinity: u64, instance: LiveInstance) {
        if instance.worn_out(MAX_CALLS_PER_INSTANCE) {
            return;
        }
        let mut pool = self.lock_pool();
        let slot = (affinity % POOL_SIZE as u64) as usize;
        if pool[slot].is_none() {
            pool[slot] = Some(instance);
        } else if let Some(empty) = pool.iter_mut().find(|slot| slot.is_none()) {
            *empty = Some(instance);
        }
    }

    /// Counts series a filter let through.
    pub(crate) fn count_out(&self, series: usize) {
        self.series_out_metric.inc_by(series as u64);
    }

    /// Counts and remembers an error; logs it at warn the first time this text is seen.
    pub(crate) fn record_error(&self, error: &FilterError) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        super::metrics::count_error(&self.config.name, error.kind());
        let text = error.to_string();
        let first = {
            let mut seen = self
                .stats
                .seen_errors
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if seen.len() >= DISTINCT_ERRORS {
                seen.clear();
            }
            seen.insert(text.clone())
        };
        if first {
            tracing::warn!(
                filter = %self.config.name,
                kind = error.kind(),
                on_error = self.config.on_error.as_str(),
                "filter call failed: {text}"
            );
            self.events.send(crate::lifecycle::Event::FilterFailure {
                filter: self.config.name.clone(),
                kind: error.kind().to_owned(),
                on_error: self.config.on_error.as_str().to_owned(),
                message: text.clone(),
            });
        } else {
            tracing::debug!(filter = %self.config.name, kind = error.kind(), "filter call failed: {text}");
        }
        *self
            .stats
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(text);
    }

    /// Which pool slots hold an idle instance (tests).
    #[cfg(test)]
    pub(crate) fn idle_slots(&self) -> Vec<bool> {
        self.lock_pool().iter().map(Option::is_some).collect()
    }

    fn lock_pool(&self) -> std::sync::MutexGuard<'_, Vec<Option<LiveInstance>>> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }
}
