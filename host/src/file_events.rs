//! What a file-system event says about a file's content, for the watchers of files the relay
//! reads at run time (filter modules, file_sd target files).
//!
//! **Invariant:** only content changes count — a file written and closed, created, renamed
//! (into place or away) or removed, or lost events (a queue overflow). Opening or reading a
//! file never does: a watcher's own read of the file would wake it again, forever.

use std::path::PathBuf;

/// What a file event tells a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touch {
    /// The content of the file at this path may have changed.
    Path(PathBuf),
    /// Events were lost (the kernel's queue overflowed): any module may have changed.
    Unknown,
}

/// The content changes an event reports: a file written and closed, created, renamed (either
/// side) or removed. Opening or reading a file, and metadata changes, say nothing about its
/// content — and the relay's own read of a module during a reload must not wake the watcher,
/// or every reload starts the next one.
pub fn touches(event: notify::Event) -> Vec<Touch> {
    use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
    if event.need_rescan() {
        return vec![Touch::Unknown];
    }
    let content = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Name(_)) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        // inotify reports every write(2) and then the close that ends the writing, which is
        // the change; backends without a close event (kqueue, FSEvents) report only writes.
        EventKind::Modify(ModifyKind::Data(_)) => !cfg!(target_os = "linux"),
        EventKind::Modify(_) | EventKind::Any | EventKind::Other => true,
    };
    match (content, event.paths.is_empty()) {
        (false, _) => Vec::new(),
        (true, true) => vec![Touch::Unknown],
        (true, false) => event.paths.into_iter().map(Touch::Path).collect(),
    }
}
