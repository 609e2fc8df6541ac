//! The poller's scrape tasks: one per target, keyed by their full spec so a reload restarts only
//! what changed, and the HTTP clients of the jobs' targets (`tls_config`, `basic_auth`,
//! `authorization`).
//!
//! **Invariant:** a target's task is started and stopped only here, by [`Scrapers::apply`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{JobLabel, METRICS, SELF_JOB};
use crate::config::{Config, Target};
use crate::model::Label;
use crate::scrape::{self, StateLog, TargetSpec};

/// The scrape targets of a config, including the self-scrape job when `monitor_port` is set.
pub fn target_specs(config: &Config) -> Vec<TargetSpec> {
    target_specs_with(config, &HashMap::new())
}

/// [`target_specs`] with the targets file discovery found, by job. A discovered target whose
/// instance the job already has (a static target, or an earlier file's) is left out, with a
/// warning: two targets of one instance would overwrite each other's Pushgateway group.
pub fn target_specs_with(
    config: &Config,
    discovered: &HashMap<String, Vec<Target>>,
) -> Vec<TargetSpec> {
    let mut specs = Vec::new();
    for job in &config.jobs {
        let found = discovered.get(&job.name).map_or(&[][..], Vec::as_slice);
        let mut instances: HashSet<&str> = HashSet::new();
        for target in job.targets.iter().chain(found) {
            if !instances.insert(&target.name) {
                tracing::warn!(job = %job.name, instance = %target.name, url = %target.url,
                    "a discovered target's instance is already a target of this job: left out");
                continue;
            }
            specs.push(TargetSpec {
                job: job.name.clone(),
                instance: target.name.clone(),
                url: target.url.clone(),
                interval: job.scrape_interval,
                timeout: job.scrape_timeout,
                body_limit: job.scrape_body_limit,
                label_limit: job.label_limit,
                exempt_from_pause: false,
                labels: target.labels.clone(),
            });
        }
    }
    if let Some(port) = config.monitor_port {
        let url = format!("http://127.0.0.1:{port}/metrics");
        if let Ok(url) = url::Url::parse(&url) {
            specs.push(TargetSpec {
                job: SELF_JOB.to_owned(),
                instance: format!("{}:{port}", config.identity),
                url,
                interval: config.scrape_interval,
                timeout: config.scrape_timeout,
                body_limit: config.scrape_body_limit,
                label_limit: crate::model::DEFAULT_LABEL_LIMIT,
                exempt_from_pause: true,
                labels: Vec::new(),
            });
        }
    }
    specs
}

/// The running scrape tasks, one per target, keyed by their full spec so that a changed target
/// is restarted and an unchanged one keeps its schedule across reloads.
pub(super) struct Scrapers {
    pub(super) clients: JobClients,
    pub(super) publisher: String,
    pub(super) output: mpsc::Sender<crate::batch::ScrapeBatch>,
    pub(super) paused: watch::Receiver<bool>,
    pub(super) states: Arc<StateLog>,
    pub(super) stop: CancellationToken,
    pub(super) running: HashMap<TargetKey, (CancellationToken, tokio::task::JoinHandle<()>)>,
}

/// The HTTP clients of the jobs' targets: one shared plain client, and one per job with
/// `tls_config`, `basic_auth` or `authorization`. Those are rebuilt on every reload (a rotated
/// certificate or password file takes effect), and their generation restarts their targets.
pub(super) struct JobClients {
    plain: reqwest::Client,
    by_job: HashMap<String, reqwest::Client>,
    /// The self job's URL scheme: `https` when its web config has `tls_server_config`.
    self_scheme: &'static str,
    pub(super) generation: u64,
}

impl JobClients {
    /// With `web` (the monitor port's `web_config_file`), the self job gets a client that
    /// passes the port's TLS and basic auth (`web::self_job_client`).
    pub(super) fn build(
        config: &Config,
        generation: u64,
        web: Option<&crate::web::Handle>,
    ) -> anyhow::Result<JobClients> {
        let plain = scrape::http_client(&crate::config::HttpClientConfig::default())?;
        let mut by_job = HashMap::new();
        for job in &config.jobs {
            if !job.http.is_default() {
                let client =
                    scrape::http_client(&job.http).with_context(|| format!("jobs.{}", job.name))?;
                by_job.insert(job.name.clone(), client);
            }
        }
        let mut self_scheme = "http";
        if let Some(web) = web {
            let (client, scheme) = crate::web::self_job_client(&web.current())?;
            by_job.insert(SELF_JOB.to_owned(), client);
            self_scheme = scheme;
        }
        Ok(JobClients {
            plain,
            by_job,
            self_scheme,
            generation,
        })
    }

    fn client(&self, job: &str) -> &reqwest::Client {
        self.by_job.get(job).unwrap_or(&self.plain)
    }

    /// 0 for the shared client, else this set's generation.
    fn generation(&self, job: &str) -> u64 {
        if self.by_job.contains_key(job) {
            self.generation
        } else {
            0
        }
    }
}

type TargetKey = (
    String,
    String,
    String,
    Duration,
    Duration,
    u64,
    u64,
    Vec<Label>,
);

fn key(spec: &TargetSpec, clients: &JobClients) -> TargetKey {
    (
        spec.job.clone(),
        spec.instance.clone(),
        spec.url.to_string(),
        spec.interval,
        spec.timeout,
        spec.body_limit,
        clients.generation(&spec.job),
        spec.labels.clone(),
    )
}

impl Scrapers {
    /// Starts new targets and stops removed ones; returns (started, stopped).
    pub(super) fn apply(&mut self, specs: Vec<TargetSpec>) -> (usize, usize) {
        let wanted: HashMap<TargetKey, TargetSpec> = specs
            .into_iter()
            .map(|mut s| {
                if s.job == SELF_JOB && s.url.scheme() != self.clients.self_scheme {
                    // `target_specs` knows the port, not its web config.
                    let _ = s.url.set_scheme(self.clients.self_scheme);
                }
                (key(&s, &self.clients), s)
            })
            .collect();
        let before = self.running.len();
        self.running.retain(|k, (token, _)| {
            let keep = wanted.contains_key(k);
            if !keep {
                token.cancel();
            }
            keep
        });
        let stopped = before - self.running.len();
        let mut started = 0;
        for (k, spec) in wanted {
            if self.running.contains_key(&k) {
                continue;
            }
            let token = self.stop.child_token();
            let handle = tokio::spawn(scrape::run_target(
                self.clients.client(&spec.job).clone(),
                spec,
                self.publisher.clone(),
                self.output.clone(),
                self.paused.clone(),
                self.states.clone(),
                token.clone(),
            ));
            self.running.insert(k, (token, handle));
            started += 1;
        }
        let mut per_job: HashMap<String, i64> = HashMap::new();
        for k in self.running.keys() {
            *per_job.entry(k.0.clone()).or_default() += 1;
        }
        METRICS.targets.clear();
        for (job, count) in &per_job {
            METRICS
                .targets
                .get_or_create(&JobLabel { job: job.clone() })
                .set(*count);
        }
        METRICS.jobs.set(per_job.len() as i64);
        (started, stopped)
    }

    /// Waits for every scrape task to notice the stop and return.
    pub(super) async fn join(self) {
        for (_, (token, handle)) in self.running {
            token.cancel();
            let _ = handle.await;
        }
    }
}
