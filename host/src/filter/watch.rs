//! The module file watcher: reloads the filter chains when a module file's content changes.
//!
//! Owns [`Chains::watch`], the translation of file events into content changes ([`touches`])
//! and the debounce.
//!
//! **Invariant:** only content changes wake the watcher — a module written and closed, created,
//! renamed (into place or away) or removed, or lost events (a queue overflow). Opening or
//! reading a module never does: the reload's own read of the module would start the next
//! reload, forever. A reload that finds nothing changed is a quiet no-op (`reload`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::chain::Chains;
pub(crate) use crate::file_events::{touches, Touch};

impl Chains {
    /// Watches the module files of the plan in force and reloads when one changes (debounced).
    /// The directories are watched before this returns, so a change made after it is seen.
    /// The task ends when `shutdown` is cancelled.
    pub fn watch(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let (sender, events) = tokio::sync::mpsc::unbounded_channel::<Touch>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let touched = match event {
                Ok(event) => touches(event),
                // The backend lost track (e.g. a watch could not be re-read): look again.
                Err(_) => vec![Touch::Unknown],
            };
            for touch in touched {
                // The receiver is gone only when the watcher task ended.
                let _ = sender.send(touch);
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
}

/// Quiet time after the last file event before reloading (editors write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(30);

struct ModuleWatch {
    chains: Arc<Chains>,
    watcher: notify::RecommendedWatcher,
    watched: HashSet<PathBuf>,
    events: tokio::sync::mpsc::UnboundedReceiver<Touch>,
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
                touch = self.events.recv() => match touch { Some(touch) => touch, None => return },
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
            };
            let mut touched = relevant(&modules, &first);
            // Debounce: drain until the directory has been quiet for a moment.
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    touch = self.events.recv() => match touch {
                        Some(touch) => touched |= relevant(&modules, &touch),
                        None => return,
                    },
                    _ = tokio::time::sleep(DEBOUNCE) => break,
                }
            }
            if touched {
                // Logged by reload when it changes something: a file written back with the
                // same bytes is a no-op, and says nothing.
                let _ = self.chains.reload_modules().await;
            }
        }
    }
}

/// Whether a content change concerns one of `modules` (paths may be relative or go through
/// symlinks, so directories are compared canonicalised).
fn relevant(modules: &HashSet<PathBuf>, touch: &Touch) -> bool {
    let path = match touch {
        Touch::Path(path) => path.as_path(),
        Touch::Unknown => return true,
    };
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
