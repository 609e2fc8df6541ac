//! A read-only view of what file discovery found, per job: the files read, how many targets
//! each gave, the error that keeps a file at its last good targets, and the targets in force.
//! For the monitor port's pages and API; writing it is [`super::job`]'s alone.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::config::Target;

/// What one job's discovery found at its last read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobView {
    /// Every file its patterns matched, in reading order.
    pub files: Vec<FileView>,
    /// The job's discovered targets with the file each came from (before the daemon drops
    /// instances its static targets already use).
    pub targets: Vec<(Target, String)>,
}

/// One file of a job.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FileView {
    /// The file's path.
    pub path: String,
    /// Targets it gives now (its last good ones while `error` is set).
    pub targets: usize,
    /// Why the last read failed; `None` when it succeeded.
    pub error: Option<String>,
}

/// Shared handle on the view; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct View {
    jobs: Arc<RwLock<BTreeMap<String, JobView>>>,
}

/// One discovered target as the JSON snapshot shows it; `labels` holds the target labels and
/// `__meta_filepath`, as Prometheus names the file a target came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetSnapshot {
    pub instance: String,
    pub url: String,
    pub labels: BTreeMap<String, String>,
}

/// One job in the JSON snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobSnapshot {
    pub job: String,
    pub files: Vec<FileView>,
    pub targets: Vec<TargetSnapshot>,
}

impl View {
    /// The jobs with file discovery, by name.
    pub fn jobs(&self) -> BTreeMap<String, JobView> {
        self.jobs.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The whole view as plain data (serialises to the JSON an API returns).
    pub fn snapshot(&self) -> Vec<JobSnapshot> {
        self.jobs()
            .into_iter()
            .map(|(job, view)| JobSnapshot {
                job,
                files: view.files,
                targets: view
                    .targets
                    .into_iter()
                    .map(|(target, file)| TargetSnapshot {
                        instance: target.name,
                        url: target.url.to_string(),
                        labels: target
                            .labels
                            .into_iter()
                            .map(|label| (label.name.to_string(), label.value.to_string()))
                            .chain([("__meta_filepath".to_string(), file)])
                            .collect(),
                    })
                    .collect(),
            })
            .collect()
    }

    pub(super) fn set(&self, job: &str, view: JobView) {
        let mut jobs = self.jobs.write().unwrap_or_else(|p| p.into_inner());
        jobs.insert(job.to_string(), view);
    }

    pub(super) fn remove(&self, job: &str) {
        let mut jobs = self.jobs.write().unwrap_or_else(|p| p.into_inner());
        jobs.remove(job);
    }
}
