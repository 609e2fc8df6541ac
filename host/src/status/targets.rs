//! The target registry: one entry per running scrape task, updated once per scrape (never per
//! sample) and read by the status page.
//!
//! A scrape task registers its target when it starts and the entry leaves the registry when the
//! task's [`TargetEntry`] is dropped, so targets added or removed at run time (a reload, file
//! discovery) appear and disappear with their tasks. Entries are keyed by a registration number,
//! not by (job, instance): a target restarted by a reload may briefly run twice, and the old
//! task's exit must not remove the new task's entry.
//!
//! **Invariant:** a scrape task only locks its own entry; the registry's map is locked when a
//! task starts or stops and when the page reads it, never per scrape.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;

/// A target's health, as Prometheus' targets page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not scraped yet.
    Unknown,
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// What one scrape did: what a scrape task reports after each scrape.
#[derive(Debug, Clone, Copy)]
pub struct ScrapeReport<'a> {
    /// When the scrape started, unix milliseconds.
    pub time_ms: i64,
    pub duration: Duration,
    /// Samples the target exposed (0 for a failed scrape).
    pub samples: u64,
    /// Why it failed; `None`: it succeeded.
    pub error: Option<&'a str>,
}

/// One target's state: a copy for readers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetStatus {
    pub job: String,
    pub instance: String,
    pub url: String,
    pub interval_seconds: f64,
    pub health: Health,
    /// Start of the last scrape, unix milliseconds.
    pub last_scrape_ms: Option<i64>,
    pub last_duration_seconds: Option<f64>,
    pub last_samples: Option<u64>,
    /// The error of the last failed scrape; kept after a recovery, beside `last_error_ms`.
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    pub scrapes: u64,
    pub failures: u64,
}

/// The shared registry; cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Debug, Default)]
struct Registry {
    next: u64,
    entries: BTreeMap<u64, Arc<Mutex<TargetStatus>>>,
}

/// A running target's place in the registry; dropping it removes the target.
#[derive(Debug)]
pub struct TargetEntry {
    id: u64,
    state: Arc<Mutex<TargetStatus>>,
    registry: Targets,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind: still worth showing.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Targets {
    /// Adds a target (health unknown until its first scrape).
    pub fn register(
        &self,
        job: &str,
        instance: &str,
        url: &str,
        interval: Duration,
    ) -> TargetEntry {
        let state = Arc::new(Mutex::new(TargetStatus {
            job: job.to_owned(),
            instance: instance.to_owned(),
            url: url.to_owned(),
            interval_seconds: interval.as_secs_f64(),
            health: Health::Unknown,
            last_scrape_ms: None,
            last_duration_seconds: None,
            last_samples: None,
            last_error: None,
            last_error_ms: None,
            scrapes: 0,
            failures: 0,
        }));
        let mut registry = lock(&self.inner);
        let id = registry.next;
        registry.next += 1;
        registry.entries.insert(id, state.clone());
        TargetEntry {
            id,
            state,
            registry: self.clone(),
        }
    }

    /// Every registered target, sorted by job, instance and URL.
    pub fn snapshot(&self) -> Vec<TargetStatus> {
        let entries: Vec<Arc<Mutex<TargetStatus>>> =
            lock(&self.inner).entries.values().cloned().collect();
        let mut targets: Vec<TargetStatus> = entries.iter().map(|e| lock(e).clone()).collect();
        targets.sort_by(|a, b| (&a.job, &a.instance, &a.url).cmp(&(&b.job, &b.instance, &b.url)));
        targets
    }
}

impl TargetEntry {
    /// Records one scrape's outcome. Called once per scrape; allocates only when the error text
    /// changes.
    pub fn record(&self, report: ScrapeReport<'_>) {
        let mut state = lock(&self.state);
        state.scrapes += 1;
        state.last_scrape_ms = Some(report.time_ms);
        state.last_duration_seconds = Some(report.duration.as_secs_f64());
        state.last_samples = Some(report.samples);
        match report.error {
            None => state.health = Health::Up,
            Some(error) => {
                state.health = Health::Down;
                state.failures += 1;
                state.last_error_ms = Some(report.time_ms);
                if state.last_error.as_deref() != Some(error) {
                    state.last_error = Some(error.to_owned());
                }
            }
        }
    }
}

impl Drop for TargetEntry {
    fn drop(&mut self) {
        lock(&self.registry.inner).entries.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(error: Option<&str>) -> ScrapeReport<'_> {
        ScrapeReport {
            time_ms: 1_000,
            duration: Duration::from_millis(20),
            samples: if error.is_none() { 7 } else { 0 },
            error,
        }
    }

    #[test]
    fn a_target_is_listed_while_its_entry_lives_and_shows_its_last_scrape() {
        let targets = Targets::default();
        let b = targets.register("node", "b", "http://b/metrics", Duration::from_secs(1));
        let a = targets.register("node", "a", "http://a/metrics", Duration::from_secs(1));
        assert_eq!(targets.snapshot()[0].health, Health::Unknown);
        a.record(report(Some("connection refused")));
        b.record(report(None));
        let listed = targets.snapshot();
        assert_eq!(
            listed
                .iter()
                .map(|t| (t.instance.as_str(), t.health))
                .collect::<Vec<_>>(),
            [("a", Health::Down), ("b", Health::Up)]
        );
        assert_eq!(listed[0].last_error.as_deref(), Some("connection refused"));
        assert_eq!((listed[1].last_samples, listed[1].scrapes), (Some(7), 1));
        drop(a);
        assert_eq!(targets.snapshot().len(), 1);
        // A recovered target keeps its last error for the operator, with its time.
        b.record(report(Some("timed out")));
        b.record(report(None));
        let b_status = &targets.snapshot()[0];
        assert_eq!(b_status.health, Health::Up);
        assert_eq!((b_status.failures, b_status.scrapes), (1, 3));
        assert_eq!(b_status.last_error.as_deref(), Some("timed out"));
    }

    #[test]
    fn a_restarted_target_keeps_the_new_entry_when_the_old_task_ends_later() {
        let targets = Targets::default();
        let old = targets.register("node", "a", "http://a/metrics", Duration::from_secs(1));
        let new = targets.register("node", "a", "http://a/other", Duration::from_secs(1));
        drop(old);
        let listed = targets.snapshot();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].url, "http://a/other");
        drop(new);
        assert!(targets.snapshot().is_empty());
    }
}
