//! The durable spool (`spool_dir`): every scrape the poller has not had acknowledged by
//! JetStream yet, in segment files on disk, so that a restart, SIGTERM or SIGKILL during a broker
//! outage loses none of them.
//!
//! The publisher appends each encoded scrape before it sends it ([`Spool::append`]), takes
//! records in order to send them ([`Spool::take`]), and reports each publish's outcome
//! ([`Spool::acked`], [`Spool::failed`]). A failed publish rewinds the send position to it, so
//! the spool never reorders scrapes: after a failure everything from the oldest failed record on
//! goes again, in order (JetStream drops the re-sent duplicates by `Nats-Msg-Id`).
//!
//! On disk: `NNNNNNNNNNNNNNNNNNNN.spool` segments (format in [`segment`]), `acked` (the position
//! up to which every record is acknowledged, see [`acked`]) and `lock` (one process per
//! directory). Records are written with one `write` each and never buffered in the process, so
//! a killed process loses nothing the kernel has; `spool_sync` decides when the kernel is made
//! to put them on the disk (what a host crash can lose).
//!
//! **Invariant:** a record leaves the spool only when its publish was acknowledged, when it can
//! never be published (too large for the server), or when the spool is over its bound — then
//! whole segments go, oldest first, counted in `promrelay_spool_dropped_total` and logged.
//! Records stay in order: [`Spool::take`] returns them in the order they were appended, the
//! records of an earlier run first. This module never talks to NATS.

mod acked;
mod replay;
pub mod segment;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use anyhow::Context as _;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::config::SpoolSync;
use crate::wire::WireMessage;
use acked::AckFile;
use segment::Extent;

struct SpoolMetrics {
    bytes: Gauge,
    records: Gauge,
    dropped: Counter,
    skipped: Counter,
    recovered: Counter,
    errors: Counter,
}

static METRICS: LazyLock<SpoolMetrics> = LazyLock::new(|| {
    let metrics = SpoolMetrics {
        bytes: Gauge::default(),
        records: Gauge::default(),
        dropped: Counter::default(),
        skipped: Counter::default(),
        recovered: Counter::default(),
        errors: Counter::default(),
    };
    let mut registry = crate::telemetry::registry();
    registry.register(
        "spool_bytes",
        "Bytes of the spool's segment files (spool_dir)",
        metrics.bytes.clone(),
    );
    registry.register(
        "spool_records",
        "Scrapes in the spool not yet acknowledged by JetStream (waiting or in flight)",
        metrics.records.clone(),
    );
    registry.register(
        "spool_dropped",
        "Scrapes dropped unpublished because the spool was over outage_buffer (oldest segment first)",
        metrics.dropped.clone(),
    );
    registry.register(
        "spool_skipped",
        "Damaged spool regions skipped at start (a torn last record, a checksum mismatch)",
        metrics.skipped.clone(),
    );
    registry.register(
        "spool_recovered",
        "Scrapes found in the spool at start, left by an earlier run, published before new ones",
        metrics.recovered.clone(),
    );
    registry.register(
        "spool_errors",
        "Spool writes, reads or syncs that failed (the scrape concerned is lost)",
        metrics.errors.clone(),
    );
    metrics
});

/// Forces registration so the families appear on `/metrics` before the first scrape.
pub fn register_metrics() {
    LazyLock::force(&METRICS);
}

/// The smallest and largest segment: the bound is enforced a segment at a time, so a segment is
/// about an eighth of it.
const MIN_SEGMENT: u64 = 64 * 1024;
const MAX_SEGMENT: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    InFlight,
    Acked,
}

#[derive(Debug)]
struct Entry {
    segment: u64,
    extent: Extent,
    state: State,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    path: PathBuf,
    file: File,
    len: u64,
}

/// What [`Spool::open`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Records left by an earlier run, to be published first.
    pub recovered: usize,
    /// Damaged regions skipped (each logged with its file and offset).
    pub skipped: usize,
}

/// The spool of one poller; see the module documentation.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    limit: u64,
    sync: SpoolSync,
    segment_target: u64,
    /// Oldest first; the last one is the one appended to.
    segments: VecDeque<Segment>,
    /// Every record not yet acknowledged, and acknowledged ones behind an unacknowledged one.
    entries: VecDeque<Entry>,
    /// Sequence number of `entries[0]`; numbers are this process' own.
    first_seq: u64,
    /// Sequence number of the next record [`take`](Self::take) considers.
    cursor: u64,
    unacked: usize,
    acked: AckFile,
    /// Records written since the last sync.
    dirty: bool,
    /// Segments created or removed since the last sync of the directory.
    dir_dirty: bool,
    _lock: File,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`: takes its lock, reads what an earlier run left
    /// (skipping damage with a warning) and starts a new segment to append to.
    ///
    /// Fails when the directory cannot be used, when another process holds it, or when a
    /// segment was written by a promrelay whose format this one does not read — each error
    /// names the file and what to do.
    pub fn open(dir: &Path, limit: u64, sync: SpoolSync) -> anyhow::Result<(Spool, OpenReport)> {
        register_metrics();
        fs::create_dir_all(dir).with_context(|| {
            format!(
                "creating spool_dir {}: check the path and its permissions",
                dir.display()
            )
        })?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| {
                format!(
                    "opening {}: check spool_dir's permissions",
                    lock_path.display()
                )
            })?;
        if let Err(e) = lock.try_lock() {
            anyhow::bail!(
                "spool_dir {} is in use by another promrelay ({}: {e}); give each poller its own \
                 spool_dir",
                dir.display(),
                lock_path.display()
            );
        }
        let (acked, position) = AckFile::open(&dir.join("acked"))?;
        let mut spool = Spool {
            dir: dir.to_owned(),
            limit,
            sync,
            segment_target: (limit / 8).clamp(MIN_SEGMENT, MAX_SEGMENT),
            segments: VecDeque::new(),
            entries: VecDeque::new(),
            first_seq: 0,
            cursor: 0,
            unacked: 0,
            acked,
            dirty: false,
            dir_dirty: false,
            _lock: lock,
        };
        let report = spool.recover(position)?;
        let next = spool
            .segments
            .back()
            .map_or(1, |s| s.id + 1)
            .max(position.segment + 1);
        spool.roll_to(next)?;
        spool.enforce_limit();
        spool.publish_gauges();
        METRICS.recovered.inc_by(report.recovered as u64);
        METRICS.skipped.inc_by(report.skipped as u64);
        if report.recovered > 0 {
            tracing::info!(spool_dir = %dir.display(), scrapes = report.recovered,
                "spool: scrapes left by an earlier run are published first");
        }
        Ok((spool, report))
    }

    /// Reads the segments an earlier run left, oldest first.
    fn recover(&mut self, position: acked::Position) -> anyhow::Result<OpenReport> {
        let mut ids = Vec::new();
        let listing = fs::read_dir(&self.dir)
            .with_context(|| format!("listing spool_dir {}", self.dir.display()))?;
        for item in listing {
            let item = item.with_context(|| format!("listing spool_dir {}", self.dir.display()))?;
            if let Some(id) = segment::id_of(&item.path()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut report = OpenReport::default();
        for id in ids {
            let path = self.dir.join(segment::file_name(id));
            if id < position.segment {
                // Acknowledged to its end; the process stopped before deleting it.
                self.remove_file(&path);
                continue;
            }
            let bytes = fs::read(&path)
                .with_context(|| format!("reading spool file {}", path.display()))?;
            match segment::check_header(&bytes) {
                Ok(()) => {}
                Err(segment::HeaderProblem::Torn { len }) => {
                    tracing::warn!(file = %path.display(),
                        "spool file has only {len} bytes, a torn header (the process stopped \
                         while creating it); it holds no record and is removed");
                    report.skipped += 1;
                    self.remove_file(&path);
                    continue;
                }
                Err(problem) => anyhow::bail!(
                    "spool file {} {problem}. It is left untouched so that no scrape in it is \
                     lost or misread: publish it with the promrelay that wrote it, or move it out \
                     of spool_dir {} to start without it",
                    path.display(),
                    self.dir.display()
                ),
            }
            let scan = segment::scan(&bytes);
            for damage in &scan.damage {
                report.skipped += 1;
                if damage.torn_tail {
                    tracing::warn!(file = %path.display(), offset = damage.offset,
                        bytes = damage.len,
                        "spool: the last record is torn (the process stopped while writing it); \
                         skipped, the records before it are kept");
                } else {
                    tracing::warn!(file = %path.display(), offset = damage.offset,
                        bytes = damage.len,
                        "spool: damaged bytes (checksum mismatch) skipped; the records after \
                         them are kept");
                }
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .with_context(|| format!("opening spool file {}", path.display()))?;
            let mut len = bytes.len() as u64;
            if scan.damage.last().is_some_and(|d| d.torn_tail) {
                // Cut the torn tail so that the next start does not warn about it again.
                if file.set_len(scan.good_len).is_ok() {
                    len = scan.good_len;
                }
            }
            let skip_before = if id == position.segment {
                position.offset
            } else {
                0
            };
            let live: Vec<Extent> = scan
                .records
                .into_iter()
                .filter(|extent| extent.offset >= skip_before)
                .collect();
            if live.is_empty() {
                self.remove_file(&path);
                continue;
            }
            report.recovered += live.len();
            self.unacked += live.len();
            self.entries.extend(live.into_iter().map(|extent| Entry {
                segment: id,
                extent,
                state: State::Waiting,
            }));
            self.segments.push_back(Segment {
                id,
                path,
                file,
                len,
            });
        }
        Ok(report)
    }

    /// Starts segment `id` and appends to it from now on.
    fn roll_to(&mut self, id: u64) -> anyhow::Result<()> {
        if self.dirty && self.sync != SpoolSync::Never {
            self.sync_now();
        }
        let path = self.dir.join(segment::file_name(id));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating spool file {}", path.display()))?;
        file.write_all_at(&segment::header(), 0)
            .with_context(|| format!("writing spool file {}", path.display()))?;
        self.segments.push_back(Segment {
            id,
            path,
            file,
            len: segment::HEADER_LEN,
        });
        self.dir_dirty = true;
        Ok(())
    }

    /// Appends one scrape; returns how many older scrapes were dropped to stay within the bound.
    /// A failed write loses this scrape (logged with the file and counted in
    /// `promrelay_spool_errors_total`) and is returned as an error.
    pub fn append(&mut self, message: &WireMessage) -> anyhow::Result<usize> {
        let record = segment::encode(message);
        let active = self
            .segments
            .back_mut()
            .context("the spool has no segment to write")?;
        if let Err(e) = active.file.write_all_at(&record, active.len) {
            METRICS.errors.inc();
            // The next record overwrites whatever part of this one reached the file.
            anyhow::bail!(
                "writing to spool file {}: {e}; the scrape of {} is lost (free space in \
                 spool_dir or fix its permissions)",
                active.path.display(),
                message.subject
            );
        }
        let extent = Extent {
            offset: active.len,
            len: record.len() as u64,
        };
        active.len += extent.len;
        let (segment, active_len) = (active.id, active.len);
        self.entries.push_back(Entry {
            segment,
            extent,
            state: State::Waiting,
        });
        self.unacked += 1;
        self.dirty = true;
        if self.sync == SpoolSync::Always {
            self.sync_now();
        }
        if active_len >= self.segment_target {
            self.roll_to(segment + 1)?;
        }
        let dropped = self.enforce_limit();
        self.publish_gauges();
        Ok(dropped)
    }

    /// Drops the oldest segments while the spool is over its bound (never the one written to).
    fn enforce_limit(&mut self) -> usize {
        let mut dropped = 0;
        while self.bytes() > self.limit && self.segments.len() > 1 {
            let Some(oldest) = self.segments.pop_front() else {
                break;
            };
            let mut lost = 0;
            while self.entries.front().is_some_and(|e| e.segment == oldest.id) {
                if let Some(entry) = self.entries.pop_front() {
                    if entry.state != State::Acked {
                        lost += 1;
                    }
                }
                self.first_seq += 1;
            }
            self.unacked -= lost;
            self.cursor = self.cursor.max(self.first_seq);
            tracing::warn!(file = %oldest.path.display(), scrapes = lost, limit = self.limit,
                "spool over outage_buffer: dropped its oldest segment with scrapes not yet \
                 published");
            METRICS.dropped.inc_by(lost as u64);
            dropped += lost;
            self.remove_file(&oldest.path);
        }
        dropped
    }

    /// Records not yet acknowledged (waiting or in flight).
    pub fn len(&self) -> usize {
        self.unacked
    }

    pub fn is_empty(&self) -> bool {
        self.unacked == 0
    }

    /// Records waiting to be sent (not those in flight).
    pub fn waiting(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.state == State::Waiting)
            .count()
    }

    /// Bytes of the segment files.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes what was written durable (for `spool_sync: interval`, once per interval).
    pub fn sync_now(&mut self) {
        if self.dirty {
            if let Some(active) = self.segments.back() {
                if let Err(e) = active.file.sync_data() {
                    METRICS.errors.inc();
                    tracing::error!(file = %active.path.display(), "spool: fsync failed: {e}");
                }
            }
            // Older segments were synced when they were rolled over.
            self.dirty = false;
        }
        if let Err(e) = self.acked.sync() {
            tracing::warn!("spool: {e:#}");
        }
        if self.dir_dirty {
            self.dir_dirty = false;
            if let Err(e) = File::open(&self.dir).and_then(|dir| dir.sync_all()) {
                tracing::warn!(spool_dir = %self.dir.display(), "spool: syncing the directory: {e}");
            }
        }
    }

    /// At shutdown: syncs what was written unless `spool_sync: never`.
    pub fn close(mut self) {
        if self.sync != SpoolSync::Never {
            self.sync_now();
        }
    }

    fn remove_file(&mut self, path: &Path) {
        match fs::remove_file(path) {
            Ok(()) => self.dir_dirty = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(file = %path.display(), "spool: removing a file: {e}"),
        }
    }

    fn publish_gauges(&self) {
        METRICS.bytes.set(self.bytes() as i64);
        METRICS.records.set(self.unacked as i64);
    }
}
