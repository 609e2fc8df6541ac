//! Filter chains: the global chain then the job's own, applied to one scrape.
//!
//! Owns [`FilterSet`] (every stage of one configuration), [`FilterOutcome`], the per-scrape run
//! over the stages, and the [`Chains`] handle the poller holds. The set lives behind an
//! `ArcSwap`: each scrape loads it once at its start, so a reload never changes the chain under
//! a scrape in flight.
//!
//! **Invariant:** a scrape is never lost silently: it comes out filtered, or as
//! [`FilterOutcome::Dropped`] / [`FilterOutcome::Failed`] naming the filter and the error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::codec;
use super::engine::FilterEngine;
use super::error::FilterError;
use super::instance::GuestOutput;
use super::reload::{ChainPlan, ReloadStatus};
use super::stage::Stage;
use crate::batch::ScrapeBatch;
use crate::config::OnError;
use crate::lifecycle::Events;
use crate::model::{Scrape, DEFAULT_LABEL_LIMIT};

/// Every stage of one filter configuration.
#[derive(Debug, Default)]
pub struct FilterSet {
    pub(crate) plan: ChainPlan,
    pub(crate) global: Vec<Arc<Stage>>,
    pub(crate) jobs: HashMap<String, Vec<Arc<Stage>>>,
}

impl FilterSet {
    /// The `label_limit` of `job`, which its filters' output is held to.
    pub fn label_limit(&self, job: &str) -> usize {
        self.plan
            .label_limits
            .get(job)
            .copied()
            .unwrap_or(DEFAULT_LABEL_LIMIT)
    }

    /// The stages a scrape of `job` runs through, in order.
    pub fn chain_for<'a>(&'a self, job: &str) -> impl Iterator<Item = &'a Arc<Stage>> + 'a {
        let own = self.jobs.get(job).map(Vec::as_slice).unwrap_or_default();
        self.global.iter().chain(own.iter())
    }

    /// Every stage, global first.
    pub fn stages(&self) -> impl Iterator<Item = (Option<&str>, &Arc<Stage>)> {
        let global = self.global.iter().map(|s| (None, s));
        let jobs = self
            .jobs
            .iter()
            .flat_map(|(job, stages)| stages.iter().map(move |s| (Some(job.as_str()), s)));
        global.chain(jobs)
    }

    pub fn is_empty(&self) -> bool {
        self.global.is_empty() && self.jobs.values().all(Vec::is_empty)
    }
}

/// What became of a scrape after its chain: the poller's batch, or the model for the tools.
#[derive(Debug)]
pub enum FilterOutcome<S = ScrapeBatch> {
    /// Publish this (possibly changed) scrape.
    Pass(S),
    /// A filter failed with `on_error: drop`: the scrape is dropped, counted.
    Dropped { filter: String, error: FilterError },
    /// A filter failed with `on_error: fail`: the scrape fails as a whole.
    Failed { filter: String, error: FilterError },
}

impl FilterOutcome<ScrapeBatch> {
    /// The same outcome with the scrape as the model (the tools' editing view).
    pub fn into_model(self) -> FilterOutcome<Scrape> {
        match self {
            FilterOutcome::Pass(batch) => FilterOutcome::Pass(batch.to_scrape()),
            FilterOutcome::Dropped { filter, error } => FilterOutcome::Dropped { filter, error },
            FilterOutcome::Failed { filter, error } => FilterOutcome::Failed { filter, error },
        }
    }
}

/// Runs a model `scrape` through `stages`, holding their output to the default `label_limit`
/// (the tools and tests; the poller runs its batches with [`run_batch`]).
/// Blocking: guest code runs on this thread.
pub fn run_stages<'a>(
    stages: impl Iterator<Item = &'a Arc<Stage>>,
    scrape: Scrape,
) -> FilterOutcome<Scrape> {
    run_stages_with_label_limit(stages, scrape, DEFAULT_LABEL_LIMIT)
}

/// Runs a model `scrape` through `stages`, holding their output to `label_limit` (the job's).
/// Blocking: guest code runs on this thread.
pub fn run_stages_with_label_limit<'a>(
    stages: impl Iterator<Item = &'a Arc<Stage>>,
    scrape: Scrape,
    label_limit: usize,
) -> FilterOutcome<Scrape> {
    match ScrapeBatch::from_scrape(&scrape) {
        Ok(batch) => run(stages, batch, Mode::Live, label_limit).into_model(),
        Err(error) => FilterOutcome::Failed {
            filter: String::from("(chain)"),
            error,
        },
    }
}

/// Runs the poller's `scrape` through `stages`, holding their output to `label_limit` (the
/// job's). Blocking: guest code runs on this thread.
///
/// Hot path: the filters read the scrape's own batch; PASS costs nothing, MASK rewrites the
/// series records, a REPLACED output is validated and becomes the next filter's input as it is.
pub fn run_batch<'a>(
    stages: impl Iterator<Item = &'a Arc<Stage>>,
    scrape: ScrapeBatch,
    label_limit: usize,
) -> FilterOutcome {
    run(stages, scrape, Mode::Live, label_limit)
}

/// The dry run of a reload: like [`run_stages_with_label_limit`], but any filter error fails the
/// run whatever its `on_error` says, and nothing is counted, logged or reported as a filter's: a
/// refused candidate's errors belong to the reload that refused it, never to the running filter.
pub(crate) fn dry_run_stages<'a>(
    stages: impl Iterator<Item = &'a Arc<Stage>>,
    scrape: ScrapeBatch,
    label_limit: usize,
) -> FilterOutcome {
    run(stages, scrape, Mode::DryRun, label_limit)
}

/// Whose run it is: a live scrape's (counted, `on_error` applies) or a reload's dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Live,
    DryRun,
}

/// A stable hash of a scrape's target: its scrapes go to the same filter instance when it is idle.
fn target_hash(job: &str, instance: &str) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    job.hash(&mut hasher);
    instance.hash(&mut hasher);
    hasher.finish()
}

fn run<'a>(
    stages: impl Iterator<Item = &'a Arc<Stage>>,
    mut scrape: ScrapeBatch,
    mode: Mode,
    label_limit: usize,
) -> FilterOutcome {
    let live = mode == Mode::Live;
    let affinity = target_hash(&scrape.meta.job, &scrape.meta.instance);
    for stage in stages {
        let series_in = scrape.sample_count();
        let called = if live {
            stage.call(scrape.bytes(), series_in, affinity)
        } else {
            stage.trial(scrape.bytes(), series_in)
        };
        let result = called.and_then(|output| match output {
            GuestOutput::Pass => Ok(None),
            // ABI.md §4.5: keeping every series means PASS.
            GuestOutput::Mask(mask) if promrelay_abi::mask_keeps_all(&mask, series_in) => Ok(None),
            GuestOutput::Mask(mask) => Ok(Some(Step::Mask(mask))),
            GuestOutput::Replaced(bytes) => {
                codec::validate(&bytes, codec::series_cap(series_in), label_limit).inspect_err(
                    |e| {
                        if live {
                            stage.record_error(e)
                        }
                    },
                )?;
                Ok(Some(Step::Replaced(bytes)))
            }
        });
        let count_out = |series: usize| {
            if live {
                stage.count_out(series)
            }
        };
        match result {
            Ok(None) => count_out(series_in),
            Ok(Some(Step::Mask(mask))) => {
                scrape.apply_mask(&mask);
                count_out(scrape.sample_count());
            }
            Ok(Some(Step::Replaced(bytes))) => {
                scrape.replace(bytes);
                count_out(scrape.sample_count());
            }
            Err(error) => match stage.on_error() {
                _ if !live => {
                    return FilterOutcome::Failed {
                        filter: stage.name().to_owned(),
                        error,
                    }
                }
                OnError::Pass => count_out(series_in),
                OnError::Drop => {
                    return FilterOutcome::Dropped {
                        filter: stage.name().to_owned(),
                        error,
                    }
                }
                OnError::Fail => {
                    return FilterOutcome::Failed {
                        filter: stage.name().to_owned(),
                        error,
                    }
                }
            },
        }
    }
    FilterOutcome::Pass(scrape)
}

enum Step {
    Mask(Vec<u8>),
    Replaced(Vec<u8>),
}

/// The last scrape seen per job, kept for the dry run of a reload.
#[derive(Debug, Default)]
pub(crate) struct LastSeen {
    pub(crate) scrapes: HashMap<String, (Instant, ScrapeBatch)>,
}

/// How often a job's last scrape is copied for dry runs (a copy costs a copy of its batch).
const LAST_SEEN_EVERY: Duration = Duration::from_secs(10);

/// The handle the poller and the admin server hold: the current filter set, swapped by reloads.
pub struct Chains {
    pub(crate) engine: Arc<FilterEngine>,
    /// Where filter loads, refusals and failures are reported (the daemon's lifecycle events).
    pub(crate) events: Events,
    pub(crate) current: ArcSwap<FilterSet>,
    pub(crate) last_seen: Mutex<LastSeen>,
    pub(crate) status: Mutex<ReloadStatus>,
    /// Serialises reloads; scrapes never wait on it.
    pub(crate) reloading: tokio::sync::Mutex<()>,
}

impl Chains {
    /// An empty chain set (every scrape passes unchanged) on `engine`, reporting its filters'
    /// loads and failures to `events` ([`Events::none`] outside a daemon).
    pub fn empty(engine: Arc<FilterEngine>, events: Events) -> Arc<Chains> {
        Arc::new(Chains {
            engine,
            events,
            current: ArcSwap::from_pointee(FilterSet::default()),
            last_seen: Mutex::new(LastSeen::default()),
            status: Mutex::new(ReloadStatus::default()),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The filter set in force now.
    pub fn current(&self) -> Arc<FilterSet> {
        self.current.load_full()
    }

    /// Runs `scrape` of `job` through the global chain then the job's own, on a blocking
    /// thread. The chain is loaded once, here: a reload during the call does not affect it.
    pub async fn apply(&self, job: &str, scrape: ScrapeBatch) -> FilterOutcome {
        self.apply_keeping_down(job, scrape).await.0
    }

    /// [`Chains::apply`], and when a chain ran, the scrape as a failed one (its synthetic
    /// series with `up` 0: what `on_error: fail` publishes), taken before the chain consumed it.
    pub async fn apply_keeping_down(
        &self,
        job: &str,
        scrape: ScrapeBatch,
    ) -> (FilterOutcome, Option<ScrapeBatch>) {
        let set = self.current.load_full();
        if set.chain_for(job).next().is_none() {
            return (FilterOutcome::Pass(scrape), None);
        }
        let down = scrape.down();
        (self.run_on_blocking(set, job, scrape).await, Some(down))
    }

    async fn run_on_blocking(
        &self,
        set: Arc<FilterSet>,
        job: &str,
        scrape: ScrapeBatch,
    ) -> FilterOutcome {
        self.remember(job, &scrape);
        let job_name = job.to_owned();
        let joined = tokio::task::spawn_blocking(move || {
            let label_limit = set.label_limit(&job_name);
            run_batch(set.chain_for(&job_name), scrape, label_limit)
        })
        .await;
        match joined {
            Ok(outcome) => outcome,
            Err(e) => FilterOutcome::Failed {
                filter: String::from("(chain)"),
                error: FilterError::Host(format!("filter thread failed: {e}")),
            },
        }
    }

    /// The same as [`Chains::apply`] for callers already on a blocking thread (the CLI, benches).
    pub fn apply_blocking(&self, job: &str, scrape: ScrapeBatch) -> FilterOutcome {
        let set = self.current.load_full();
        run_batch(set.chain_for(job), scrape, set.label_limit(job))
    }

    fn remember(&self, job: &str, scrape: &ScrapeBatch) {
        let mut last = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = last
            .scrapes
            .get(job)
            .is_some_and(|(at, _)| at.elapsed() < LAST_SEEN_EVERY);
        if !fresh {
            last.scrapes
                .insert(job.to_owned(), (Instant::now(), scrape.clone()));
        }
    }
}
