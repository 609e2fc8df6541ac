//! Building filter sets from configuration, and swapping them in without a restart.
//!
//! Owns [`ChainPlan`] (which filters run where), [`Chains::reload`] (compile with the cache,
//! validate, canary `init`, dry run on the last scrape, atomic swap), the module file watcher
//! and the status report behind `GET /api/v1/filters`.
//!
//! **Invariant:** a failed reload changes nothing a scrape sees: the old set stays in force and
//! the failure is logged, counted (`filter_reloads_total{result="failure"}`) and reported in the
//! status.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::chain::{run_stages_strict, Chains, FilterOutcome, FilterSet};
use super::engine::FilterEngine;
use super::error::FilterError;
use super::metrics::count_reload;
use super::stage::{Stage, StageStats};
use crate::config::{Config, FilterConfig};
use crate::model::Scrape;

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
}

fn scope_key(job: Option<&str>, name: &str) -> String {
    match job {
        None => format!("global/{name}"),
        Some(job) => format!("job/{job}/{name}"),
    }
}

/// Builds a set for `plan`, reusing stages of `previous` that did not change. Blocking.
pub(crate) fn build_set(
    engine: &FilterEngine,
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
                    let stage = Stage::new(config.clone(), module, stats)
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

/// Runs each remembered scrape through the new set; any filter error refuses the set.
fn dry_run(set: &FilterSet, last_seen: Vec<(String, Scrape)>) -> Result<(), FilterError> {
    for (job, scrape) in last_seen {
        if let FilterOutcome::Failed { filter, error } | FilterOutcome::Dropped { filter, error } =
            run_stages_strict(set.chain_for(&job), scrape, set.label_limit(&job))
        {
            return Err(FilterError::load(format!(
                "dry run on the last scrape of job {job}: filter {filter}: {error}"
            )));
        }
    }
    Ok(())
}

static INSTALLED: ArcSwapOption<Chains> = ArcSwapOption::const_empty();

/// The status of the installed chains (see [`Chains::install`]) for `GET /api/v1/filters`.
pub fn status_json() -> Value {
    match INSTALLED.load_full() {
        Some(chains) => chains.status_json(),
        None => json!({ "filters": [], "reload": null }),
    }
}

fn time_text(time: Option<SystemTime>) -> Value {
    time.map_or(Value::Null, |t| {
        Value::String(humantime::format_rfc3339_millis(t).to_string())
    })
}

impl Chains {
    /// Builds chains for `plan` on `engine`; fails (naming the filter and why) if any filter
    /// cannot load. For start-up; later changes go through [`Chains::reload`].
    pub async fn build(
        engine: Arc<FilterEngine>,
        plan: ChainPlan,
    ) -> Result<Arc<Chains>, FilterError> {
        let chains = Chains::empty(engine);
        chains.reload(plan).await?;
        Ok(chains)
    }

    /// Makes these chains the ones [`status_json`] reports.
    pub fn install(self: &Arc<Self>) {
        INSTALLED.store(Some(self.clone()));
    }

    /// The plan in force.
    pub fn plan(&self) -> ChainPlan {
        self.current.load().plan.clone()
    }

    /// Swaps in `plan` if every filter loads, initialises and survives a dry run on the last
    /// scrape seen of its job; otherwise keeps the old set and says why.
    pub async fn reload(&self, plan: ChainPlan) -> Result<ReloadReport, FilterError> {
        let _one_at_a_time = self.reloading.lock().await;
        let started = Instant::now();
        let previous = self.current.load_full();
        let engine = self.engine.clone();
        let last_seen: Vec<(String, Scrape)> = {
            let seen = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.scrapes
                .iter()
                .map(|(job, (_, scrape))| (job.clone(), scrape.clone()))
                .collect()
        };
        let built = tokio::task::spawn_blocking(move || {
            let (set, report) = build_set(&engine, &plan, &previous)?;
            dry_run(&set, last_seen)?;
            Ok::<_, FilterError>((set, report))
        })
        .await
        .unwrap_or_else(|e| Err(FilterError::Host(format!("reload thread failed: {e}"))));
        let elapsed = started.elapsed();
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.last_attempt = Some(SystemTime::now());
        status.last_duration = Some(elapsed);
        match built {
            Ok((set, report)) => {
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
                        crate::lifecycle::emit(crate::lifecycle::Event::FilterLoad {
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
                crate::lifecycle::emit(crate::lifecycle::Event::FilterLoad {
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

    /// Watches the module files of the plan in force and reloads when one changes (debounced).
    /// The directories are watched before this returns, so a change made after it is seen.
    /// The task ends when `shutdown` is cancelled.
    pub fn watch(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let (sender, events) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                for path in event.paths {
                    // The receiver is gone only when the watcher task ended.
                    let _ = sender.send(path);
                }
            }
        })?;
        let mut watch = ModuleWatch {
            chains: self.clone(),
            watcher,
            watched: HashSet::new(),
            events,
        };
        watch.sync_directories();
        Ok(tokio::spawn(async move { watch.run(shutdown).await }))
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
        let status = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
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

/// Quiet time after the last file event before reloading (editors write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(30);

struct ModuleWatch {
    chains: Arc<Chains>,
    watcher: notify::RecommendedWatcher,
    watched: HashSet<PathBuf>,
    events: tokio::sync::mpsc::UnboundedReceiver<PathBuf>,
}

impl ModuleWatch {
    /// Watches the directories of the plan's modules: files are often replaced by rename,
    /// which a watch on the file itself would lose.
    fn sync_directories(&mut self) -> HashSet<PathBuf> {
        use notify::{RecursiveMode, Watcher};
        let modules = self.chains.plan().module_paths();
        let directories: HashSet<PathBuf> = modules
            .iter()
            .filter_map(|m| m.parent())
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            })
            .collect();
        for gone in self.watched.difference(&directories) {
            let _ = self.watcher.unwatch(gone);
        }
        for new in directories.difference(&self.watched) {
            if let Err(e) = self.watcher.watch(new, RecursiveMode::NonRecursive) {
                tracing::warn!(
                    "cannot watch {} for filter module changes: {e}",
                    new.display()
                );
            }
        }
        self.watched = directories;
        modules
    }

    async fn run(mut self, shutdown: CancellationToken) {
        loop {
            // The plan may have changed through a config reload: follow its directories.
            let modules = self.sync_directories();
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                path = self.events.recv() => match path { Some(path) => path, None => return },
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
            };
            let mut touched = relevant(&modules, &first);
            // Debounce: drain until the directory has been quiet for a moment.
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    path = self.events.recv() => match path {
                        Some(path) => touched |= relevant(&modules, &path),
                        None => return,
                    },
                    _ = tokio::time::sleep(DEBOUNCE) => break,
                }
            }
            if touched {
                tracing::info!("a filter module file changed; reloading the filter chains");
                // Failures are logged, counted and reported by reload itself.
                let _ = self.chains.reload_modules().await;
            }
        }
    }
}

/// Whether a file event at `path` concerns one of `modules` (paths may be relative or go
/// through symlinks, so directories are compared canonicalised).
fn relevant(modules: &HashSet<PathBuf>, path: &Path) -> bool {
    let directory = |p: &Path| {
        let parent = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::canonicalize(parent).ok()
    };
    modules.contains(path)
        || modules
            .iter()
            .any(|m| m.file_name() == path.file_name() && directory(m) == directory(path))
}
