//! File-based target discovery: the targets of jobs' `file_sd_configs`, read from files in
//! Prometheus' file_sd format (JSON or YAML lists of `{targets, labels}`), watched for content
//! changes and re-read every `refresh_interval`.
//!
//! [`Discovery`] runs one task per job with `file_sd_configs` ([`job`]), restarts a job's task
//! only when a reload changed its `file_sd_configs`, `scheme` or `metrics_path`, and keeps the
//! targets each job last reported; the daemon merges them with the static ones and starts and
//! stops scrape tasks. [`View`] is the read-only picture of it for the monitor port.
//!
//! **Invariant:** this module never scrapes and never starts scrape tasks: it only says which
//! targets a job has. A file it cannot use keeps the targets it last gave.

pub mod glob;
mod job;
pub mod view;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family as MetricFamily;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, FileSdConfig, Target};
pub use view::View;

/// A job's discovered targets, as its task reports them after every change.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTargets {
    pub job: String,
    pub targets: Vec<Target>,
}

/// Each file's last good targets, by (job, file): kept across a job's task restarts.
type LastGood = HashMap<(String, PathBuf), Vec<Target>>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: String,
}

struct DiscoveryMetrics {
    targets: MetricFamily<JobLabel, Gauge>,
    files: MetricFamily<JobLabel, Gauge>,
    file_errors: MetricFamily<JobLabel, Counter>,
}

static METRICS: LazyLock<DiscoveryMetrics> = LazyLock::new(|| {
    let metrics = DiscoveryMetrics {
        targets: MetricFamily::default(),
        files: MetricFamily::default(),
        file_errors: MetricFamily::default(),
    };
    let mut registry = crate::telemetry::registry();
    registry.register(
        "sd_targets",
        "Targets a job's file_sd_configs give now (a broken file counts its last good ones)",
        metrics.targets.clone(),
    );
    registry.register(
        "sd_files",
        "Files a job's file_sd_configs patterns match now",
        metrics.files.clone(),
    );
    registry.register(
        "sd_file_errors",
        "Reads of a job's file_sd files that failed (missing, unreadable, invalid); the file \
         keeps its last good targets",
        metrics.file_errors.clone(),
    );
    metrics
});

/// What makes a job's discovery task: a change restarts it.
type TaskKey = (Vec<FileSdConfig>, String, String);

struct Running {
    key: TaskKey,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The discovery tasks of a config's jobs and the targets they found.
pub struct Discovery {
    output: mpsc::Sender<JobTargets>,
    stop: CancellationToken,
    running: HashMap<String, Running>,
    last_good: Arc<Mutex<LastGood>>,
    view: View,
    found: HashMap<String, Vec<Target>>,
}

impl Discovery {
    /// No tasks yet; each task reports to `output` and ends with `stop`.
    pub fn new(output: mpsc::Sender<JobTargets>, stop: CancellationToken) -> Discovery {
        LazyLock::force(&METRICS);
        Discovery {
            output,
            stop,
            running: HashMap::new(),
            last_good: Arc::default(),
            view: View::default(),
            found: HashMap::new(),
        }
    }

    /// The read-only view of what the tasks found.
    pub fn view(&self) -> View {
        self.view.clone()
    }

    /// Starts the tasks of jobs that gained `file_sd_configs`, restarts those whose discovery
    /// settings changed, and stops the rest; a stopped job's targets are forgotten.
    pub fn apply(&mut self, config: &Config) {
        let wanted: HashMap<&str, TaskKey> = config
            .jobs
            .iter()
            .filter(|job| !job.file_sd.is_empty())
            .map(|job| {
                let key = (
                    job.file_sd.clone(),
                    job.scheme.clone(),
                    job.metrics_path.clone(),
                );
                (job.name.as_str(), key)
            })
            .collect();
        let gone: Vec<String> = self
            .running
            .iter()
            .filter(|(job, running)| wanted.get(job.as_str()) != Some(&running.key))
            .map(|(job, _)| job.clone())
            .collect();
        for job in gone {
            if let Some(running) = self.running.remove(&job) {
                running.stop.cancel();
                running.task.abort();
            }
            if !wanted.contains_key(job.as_str()) {
                self.found.remove(&job);
                self.view.remove(&job);
                let label = JobLabel { job: job.clone() };
                METRICS.targets.remove(&label);
                METRICS.files.remove(&label);
            }
        }
        for job in config.jobs.iter().filter(|job| !job.file_sd.is_empty()) {
            if self.running.contains_key(&job.name) {
                continue;
            }
            let stop = self.stop.child_token();
            let task = job::JobDiscovery {
                job: job.name.clone(),
                configs: job.file_sd.clone(),
                scheme: job.scheme.clone(),
                metrics_path: job.metrics_path.clone(),
                output: self.output.clone(),
                last_good: self.last_good.clone(),
                view: self.view.clone(),
            };
            let key = wanted[job.name.as_str()].clone();
            let handle = tokio::spawn(task.run(stop.clone()));
            self.running.insert(
                job.name.clone(),
                Running {
                    key,
                    stop,
                    task: handle,
                },
            );
        }
    }

    /// Records a task's report; false when it changes nothing or comes from a job that no
    /// longer discovers.
    pub fn update(&mut self, update: JobTargets) -> bool {
        if !self.running.contains_key(&update.job) {
            return false;
        }
        if self.found.get(&update.job) == Some(&update.targets) {
            return false;
        }
        self.found.insert(update.job, update.targets);
        true
    }

    /// The discovered targets by job.
    pub fn targets(&self) -> &HashMap<String, Vec<Target>> {
        &self.found
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        for running in self.running.values() {
            running.stop.cancel();
            running.task.abort();
        }
    }
}

/// What [`check_files`] found.
#[derive(Debug, Default, PartialEq)]
pub struct FileCheck {
    /// Files that cannot be used now (unreadable, invalid, a missing literal path), each
    /// message naming the job, the file and the line where known.
    pub errors: Vec<String>,
    /// Patterns that match no file yet.
    pub warnings: Vec<String>,
}

/// Reads every file the config's `file_sd_configs` name now, as the daemon would at start:
/// for `check-config`.
pub fn check_files(config: &Config) -> FileCheck {
    let mut check = FileCheck::default();
    for job in &config.jobs {
        for (index, sd) in job.file_sd.iter().enumerate() {
            for pattern in &sd.files {
                let files = glob::expand(pattern);
                if files.is_empty() {
                    check.warnings.push(format!(
                        "jobs.{}.file_sd_configs[{index}]: {} matches no file yet",
                        job.name,
                        pattern.display()
                    ));
                }
                for file in files {
                    if let Err(error) = job::read_targets(&file, &job.scheme, &job.metrics_path) {
                        check.errors.push(format!("jobs.{}: {error}", job.name));
                    }
                }
            }
        }
    }
    check
}
