//! Building filter sets from configuration, and swapping them in without a restart.
//!
//! Owns [`ChainPlan`] (which filters run where), [`Chains::reload`] (compile with the cache,
//! validate, canary `init`, dry run on the last scrape, atomic swap) and the status report
//! behind `GET /api/v1/filters` ([`Chains::status_json`], read from the chains the daemon passes
//! to the monitor port; [`no_chains_json`] for a relay without them). The module file watcher
//! that calls it lives in `watch`.
//!
//! **Invariant:** a failed reload changes nothing a scrape sees: the old set stays in force and
//! the failure is logged, counted (`filter_reloads_total{result="failure"}`) and reported in the
//! status — as the reload's, never as a running filter's errors.
//!
//! **Invariant:** a reload that finds the plan and every module hash as they are in force (and
//! no refusal to clear) is a no-op: no dry run, no log line, no lifecycle event, no counter and
//! no status change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::chain::{dry_run_stages, Chains, FilterOutcome, FilterSet};
use super::engine::FilterEngine;
use super::error::FilterError;
use super::metrics::count_reload;
use super::stage::{Stage, StageStats};
use crate::batch::ScrapeBatch;
use crate::config::{Config, FilterConfig};
use crate::lifecycle::Events;

/// Which filters run where: the global chain and each job's own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChainPlan {
    pub global: Vec<FilterConfig>,
    pub jobs: BTreeMap<String, Vec<FilterConfig>>,
    /// Each job's `label_limit` that is not the default; the filters' output is held to it.
    pub label_limits: BTreeMap<String, usize>,
}

impl ChainPlan {
    /// The plan of a whole configuration.
    pub fn from_config(config: &Config) -> ChainPlan {
        ChainPlan {
            global: config.filters.clone(),
            jobs: config
                .jobs
                .iter()
                .filter(|job| !job.filters.is_empty())
                .map(|job| (job.name.clone(), job.filters.clone()))
                .collect(),
            label_limits: config
                .jobs
                .iter()
                .filter(|job| job.label_limit != crate::model::DEFAULT_LABEL_LIMIT)
                .map(|job| (job.name.clone(), job.label_limit))
                .collect(),
        }
    }

    /// Every module file the plan uses.
    pub fn module_paths(&self) -> HashSet<PathBuf> {
        self.global
            .iter()
            .chain(self.jobs.values().flatten())
            .map(|f| f.module.clone())
            .collect()
    }
}

/// The outcome of the last reload, for the status report.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    pub last_attempt: Option<SystemTime>,
    pub last_success: Option<SystemTime>,
    pub last_error: Option<String>,
    pub last_duration: Option<Duration>,
}

/// What a successful reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Filters compiled or initialised anew.
    pub changed: Vec<String>,
    /// Filters carried over as they were (same config, same module hash).
    pub unchanged: Vec<String>,
    /// Whether a new set was swapped in; `false` for a no-op (nothing changed, nothing done).
    pub swapped: bool,
}

fn scope_key(job: Option<&str>, name: &str) -> String {
    match job {
        None => format!("global/{name}"),
        Some(job) => format!("job/{job}/{name}"),
    }
}

/// Builds a set for `plan`, reusing stages of `previous` that did not change; new stages report
/// to `events`. Blocking.
pub(crate) fn build_set(
    engine: &FilterEngine,
    events: &Events,
    plan: &ChainPlan,
    previous: &FilterSet,
) -> Result<(FilterSet, ReloadReport), FilterError> {
    let old: HashMap<String, &Arc<Stage>> = previous
        .stages()
        .map(|(job, stage)| (scope_key(job, stage.name()), stage))
        .collect();
    let mut report = ReloadReport {
        changed: Vec::new(),
        unchanged: Vec::new(),
        swapped: false,
    };
    let mut build =
        |job: Option<&str>, configs: &[FilterConfig]| -> Result<Vec<Arc<Stage>>, FilterError> {
            configs
                .iter()
                .map(|config| {
                    let key = scope_key(job, &config.name);
                    let module = engine
                        .load_file(&config.module)
                        .map_err(|e| FilterError::load(format!("filter {key}: {e}")))?;
                    let previous = old.get(&key);
                    if let Some(stage) = previous {
                        if stage.config == *config && stage.module.hash == module.hash {
                            report.unchanged.push(key);
                            return Ok(Arc::clone(stage));
                        }
                    }
                    let stats = previous
                        .map(|s| s.stats.clone())
                        .unwrap_or_else(|| Arc::new(StageStats::default()));
                    let stage = Stage::new(config.clone(), module, stats, events.clone())
                        .map_err(|e| FilterError::load(format!("filter {key}: {e}")))?;
                    report.changed.push(key);
                    Ok(Arc::new(stage))
                })
                .collect()
        };
    let global = build(None, &plan.global)?;
    let mut jobs = HashMap::new();
    for (job, configs) in &plan.jobs {
        jobs.insert(job.clone(), build(Some(job), configs)?);
    }
    Ok((
        FilterSet {
            plan: plan.clone(),
            global,
            jobs,
        },
        report,
    ))
}

/// Runs each remembered scrape through the new set; any filter error refuses the set. Counts
/// nothing as a filter's: a refused candidate's errors are the reload's.
fn dry_run(set: &FilterSet, last_seen: Vec<(String, ScrapeBatch)>) -> Result<(), FilterError> {
    for (job, scrape) in last_seen {
        if let FilterOutcome::Failed { filter, error } | FilterOutcome::Dropped { filter, error } =
            dry_run_stages(set.chain_for(&job), scrape, set.label_limit(&job))
        {
            return Err(FilterError::load(format!(
                "dry run on the last scrape of job {job}: filter {filter}: {error}"
            )));
        }
    }
    Ok(())
}

/// The filter status of a relay that runs no chains (a receiver), for `GET /api/v1/filters`.
pub fn no_chains_json() -> Value {
    json!({ "filters": [], "reload": null })
}

fn time_text(time: Option<SystemTime>) -> Value {
    time.map_or(Value::Null, |t| {
        Value::String(humantime::format_rfc3339_millis(t).to_string())
    })
}

impl Chains {
    /// Builds chains for `plan` on `engine`, reporting to `events`; fails (naming the filter
    /// and why) if any filter cannot load. For start-up; later changes go through
    /// [`Chains::reload`].
    pub async fn build(
        engine: Arc<FilterEngine>,
        events: Events,
        plan: ChainPlan,
    ) -> Result<Arc<Chains>, FilterError> {
        let chains = Chains::empty(engine, events);
        chains.reload(plan).await?;
        Ok(chains)
    }

    /// The plan in force.
    pub fn plan(&self) -> ChainPlan {
        self.current.load().plan.clone()
    }

    /// Swaps in `plan` if every filter loads, initialises and survives a dry run on the last
    /// scrape seen of its job; otherwise keeps the old set and says why.
    ///
    /// When the plan and every module's hash are those in force, this is a no-op (see the
    /// module's invariant) returning a report with `swapped: false` — unless the last attempt
    /// was refused: then it is a successful reload of the set in force, which clears the
    /// refusal from the status.
    pub async fn reload(&self, plan: ChainPlan) -> Result<ReloadReport, FilterError> {
        let _one_at_a_time = self.reloading.lock().await;
        let started = Instant::now();
        let previous = self.current.load_full();
        let engine = self.engine.clone();
        let events = self.events.clone();
        let candidate = tokio::task::spawn_blocking(move || {
            let built = build_set(&engine, &events, &plan, &previous);
            (built, previous)
        })
        .await;
        let built = match candidate {
            Ok((Ok((set, report)), previous)) => {
                let refused_before = self.lock_status().last_error.is_some();
                if set.plan == previous.plan && report.changed.is_empty() && !refused_before {
                    return Ok(report);
                }
                let last_seen = self.last_seen_copy();
                tokio::task::spawn_blocking(move || {
                    dry_run(&set, last_seen)?;
                    Ok::<_, FilterError>((set, report))
                })
                .await
                .unwrap_or_else(|e| Err(FilterError::Host(format!("reload thread failed: {e}"))))
            }
            Ok((Err(error), _)) => Err(error),
            Err(e) => Err(FilterError::Host(format!("reload thread failed: {e}"))),
        };
        let elapsed = started.elapsed();
        let mut status = self.lock_status();
        status.last_attempt = Some(SystemTime::now());
        status.last_duration = Some(elapsed);
        match built {
            Ok((set, mut report)) => {
                report.swapped = true;
                self.current.store(Arc::new(set));
                status.last_success = status.last_attempt;
                status.last_error = None;
                count_reload(true);
                self.engine.prune_cache();
                tracing::info!(
                    changed = ?report.changed,
                    unchanged = report.unchanged.len(),
                    took_ms = elapsed.as_millis() as u64,
                    "filter chains reloaded"
                );
                let set = self.current.load_full();
                for (job, stage) in set.stages() {
                    let key = scope_key(job, stage.name());
                    if report.changed.contains(&key) {
                        self.events.send(crate::lifecycle::Event::FilterLoad {
                            ok: true,
                            message: format!(
                                "loaded {} (sha256 {})",
                                stage.module_path().display(),
                                stage.module.hash
                            ),
                            filter: Some(key),
                        });
                    }
                }
                Ok(report)
            }
            Err(error) => {
                status.last_error = Some(error.to_string());
                count_reload(false);
                tracing::error!(
                    "filter reload refused, the previous chains stay in force: {error}"
                );
                self.events.send(crate::lifecycle::Event::FilterLoad {
                    ok: false,
                    filter: None,
                    message: format!("{error}; the previous chains stay in force"),
                });
                Err(error)
            }
        }
    }

    /// Reloads the plan in force, picking up changed module files.
    pub async fn reload_modules(&self) -> Result<ReloadReport, FilterError> {
        self.reload(self.plan()).await
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, ReloadStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the last scrape seen of each job, for a dry run.
    fn last_seen_copy(&self) -> Vec<(String, ScrapeBatch)> {
        let seen = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.scrapes
            .iter()
            .map(|(job, (_, scrape))| (job.clone(), scrape.clone()))
            .collect()
    }

    /// Each filter's name, scope, module path and hash, load time, calls, errors, last error;
    /// and the last reload's outcome.
    pub fn status_json(&self) -> Value {
        let set = self.current.load_full();
        let filters: Vec<Value> = set
            .stages()
            .map(|(job, stage)| {
                json!({
                    "name": stage.name(),
                    "scope": job.map_or_else(|| "global".to_owned(), |j| format!("job:{j}")),
                    "module": stage.module_path().display().to_string(),
                    "hash": stage.module.hash,
                    "loaded_at": time_text(Some(stage.loaded_at)),
                    "on_error": stage.on_error().as_str(),
                    "calls": stage.stats.calls.load(std::sync::atomic::Ordering::Relaxed),
                    "errors": stage.stats.errors.load(std::sync::atomic::Ordering::Relaxed),
                    "last_error": stage.stats.last_error(),
                })
            })
            .collect();
        let status = self.lock_status().clone();
        json!({
            "filters": filters,
            "reload": {
                "last_attempt": time_text(status.last_attempt),
                "last_success": time_text(status.last_success),
                "last_error": status.last_error,
                "last_duration_ms": status.last_duration.map(|d| d.as_secs_f64() * 1000.0),
            },
        })
    }
}
