//! One job's file discovery: reads the files its `file_sd_configs` patterns match, on start,
//! on every content change (watched directories) and every `refresh_interval`, and reports the
//! job's target list whenever it changed.
//!
//! **Invariant:** a file that cannot be read or parsed keeps its last good targets (and says
//! why, once per distinct error); a literal path that is missing is such a file, while a file a
//! wildcard no longer matches (removed or renamed away) takes its targets with it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::view::{FileView, JobView, View};
use super::{glob, JobTargets, LastGood, METRICS};
use crate::config::{self, FileSdConfig, GroupDefaults, Target};
use crate::file_events::{touches, Touch};

/// Quiet time after the last file event before re-reading (writers write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(30);

/// What one job's discovery task needs.
pub(super) struct JobDiscovery {
    pub job: String,
    pub configs: Vec<FileSdConfig>,
    pub scheme: String,
    pub metrics_path: String,
    pub output: mpsc::Sender<JobTargets>,
    pub last_good: Arc<Mutex<LastGood>>,
    pub view: View,
}

/// What one file gave at its last read.
struct FileRead {
    targets: Vec<Target>,
    error: Option<String>,
}

impl JobDiscovery {
    /// Reads, watches and re-reads until `stop`.
    pub(super) async fn run(self, stop: CancellationToken) {
        let (sender, mut events) = mpsc::unbounded_channel::<Touch>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let touched = match event {
                Ok(event) => touches(event),
                Err(_) => vec![Touch::Unknown],
            };
            for touch in touched {
                let _ = sender.send(touch);
            }
        });
        let mut watcher = match watcher {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(job = %self.job, "cannot watch the file_sd files ({error}); \
                    they are re-read every refresh_interval only");
                None
            }
        };
        let mut watched: HashSet<PathBuf> = HashSet::new();
        let refresh = self
            .configs
            .iter()
            .map(|c| c.refresh_interval)
            .min()
            .unwrap_or(config::DEFAULT_SD_REFRESH);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + refresh, refresh);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported: Option<Vec<Target>> = None;
        let mut errors_logged: BTreeMap<PathBuf, String> = BTreeMap::new();
        loop {
            if let Some(watcher) = watcher.as_mut() {
                self.watch_directories(watcher, &mut watched);
            }
            let targets = self.read_all(&mut errors_logged);
            if reported.as_ref() != Some(&targets) {
                reported = Some(targets.clone());
                let update = JobTargets {
                    job: self.job.clone(),
                    targets,
                };
                if self.output.send(update).await.is_err() {
                    return;
                }
            }
            // Wait for a tick or a relevant content change, then for quiet.
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = ticker.tick() => break,
                    touch = events.recv() => match touch {
                        Some(touch) if self.concerns(&touch) => {
                            self.debounce(&mut events, &stop).await;
                            break;
                        }
                        Some(_) => {}
                        None => return,
                    },
                }
            }
        }
    }

    /// Drains events until the directories have been quiet for [`DEBOUNCE`].
    async fn debounce(
        &self,
        events: &mut mpsc::UnboundedReceiver<Touch>,
        stop: &CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                touch = events.recv() => if touch.is_none() { return },
                _ = tokio::time::sleep(DEBOUNCE) => return,
            }
        }
    }

    /// Whether a content change is about a file one of the patterns names.
    fn concerns(&self, touch: &Touch) -> bool {
        let path = match touch {
            Touch::Path(path) => path,
            Touch::Unknown => return true,
        };
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return false;
        };
        let directory = canonical_directory(path);
        self.patterns().any(|pattern| {
            let pattern_name = pattern
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            glob::matches(&pattern_name, &name) && canonical_directory(pattern) == directory
        })
    }

    fn patterns(&self) -> impl Iterator<Item = &PathBuf> {
        self.configs.iter().flat_map(|c| c.files.iter())
    }

    /// Watches the patterns' directories (files are often replaced by rename, which a watch on
    /// the file would lose); a directory that does not exist yet is tried again next time.
    fn watch_directories(
        &self,
        watcher: &mut notify::RecommendedWatcher,
        watched: &mut HashSet<PathBuf>,
    ) {
        use notify::{RecursiveMode, Watcher};
        for pattern in self.patterns() {
            let directory = glob::directory_of(pattern);
            if watched.contains(&directory) {
                continue;
            }
            if watcher
                .watch(&directory, RecursiveMode::NonRecursive)
                .is_ok()
            {
                watched.insert(directory);
            }
        }
    }

    /// Reads every matched file and returns the job's targets, first file (sorted per
    /// pattern) first; updates the metrics and the view.
    fn read_all(&self, errors_logged: &mut BTreeMap<PathBuf, String>) -> Vec<Target> {
        let mut files: Vec<PathBuf> = Vec::new();
        for pattern in self.patterns() {
            for file in glob::expand(pattern) {
                if !files.contains(&file) {
                    files.push(file);
                }
            }
        }
        let mut targets = Vec::new();
        let mut sources = Vec::new();
        let mut views = Vec::new();
        let mut last_good = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
        let key = |file: &Path| (self.job.clone(), file.to_path_buf());
        // Forget files no pattern matches any more: their targets go with them.
        last_good.retain(|(job, file), _| job != &self.job || files.contains(file));
        for file in &files {
            let read = self.read_file(file, last_good.get(&key(file)));
            match &read.error {
                None => {
                    last_good.insert(key(file), read.targets.clone());
                    if errors_logged.remove(file).is_some() {
                        tracing::info!(job = %self.job, file = %file.display(),
                            "file_sd file readable again");
                    }
                }
                Some(error) => {
                    METRICS.file_errors.get_or_create(&self.label()).inc();
                    if errors_logged.get(file) != Some(error) {
                        tracing::warn!(job = %self.job, file = %file.display(),
                            kept = read.targets.len(),
                            "file_sd file unusable, keeping its last good targets: {error}");
                        errors_logged.insert(file.clone(), error.clone());
                    }
                }
            }
            views.push(FileView {
                path: file.display().to_string(),
                targets: read.targets.len(),
                error: read.error.clone(),
            });
            sources.extend(read.targets.iter().map(|_| file.display().to_string()));
            targets.extend(read.targets);
        }
        errors_logged.retain(|file, _| files.contains(file));
        drop(last_good);
        METRICS
            .files
            .get_or_create(&self.label())
            .set(files.len() as i64);
        METRICS
            .targets
            .get_or_create(&self.label())
            .set(targets.len() as i64);
        self.view.set(
            &self.job,
            JobView {
                files: views,
                targets: targets.iter().cloned().zip(sources).collect(),
            },
        );
        targets
    }

    /// One file's targets: its content's, or on any error its last good ones (none if it never
    /// was good) with the error.
    fn read_file(&self, file: &Path, last_good: Option<&Vec<Target>>) -> FileRead {
        match read_targets(file, &self.scheme, &self.metrics_path) {
            Ok(targets) => FileRead {
                targets,
                error: None,
            },
            Err(error) => FileRead {
                targets: last_good.cloned().unwrap_or_default(),
                error: Some(error),
            },
        }
    }

    fn label(&self) -> super::JobLabel {
        super::JobLabel {
            job: self.job.clone(),
        }
    }
}

/// The canonical directory of a path, to compare event paths with patterns (either may be
/// relative or go through a symlink).
fn canonical_directory(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(glob::directory_of(path)).ok()
}

/// Reads and resolves one file_sd file; the error names the file, and the line where known.
pub(super) fn read_targets(
    file: &Path,
    scheme: &str,
    metrics_path: &str,
) -> Result<Vec<Target>, String> {
    let origin = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|error| format!("{origin}: cannot read the file_sd file: {error}"))?;
    let groups = config::parse_target_groups(&text, &origin).map_err(|error| error.to_string())?;
    let defaults = GroupDefaults {
        scheme,
        metrics_path,
    };
    config::resolve_groups(&groups, defaults, "").map_err(|problems| {
        problems
            .iter()
            .map(|problem| config::ConfigError::format_problem(&origin, problem))
            .collect::<Vec<_>>()
            .join("\n")
    })
}
