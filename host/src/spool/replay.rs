//! Replay: the publisher takes the spool's records in order ([`Spool::take`]) and reports each
//! publish's outcome ([`Spool::acked`], [`Spool::failed`]); acknowledged segments are deleted.

use std::os::unix::fs::FileExt as _;

use anyhow::Context as _;

use super::{acked, segment, Entry, Spool, State, METRICS};
use crate::wire::WireMessage;

impl Spool {
    /// The oldest record not yet sent (or sent and failed since), with its sequence number for
    /// [`acked`](Self::acked) and [`failed`](Self::failed).
    pub fn take(&mut self) -> Option<(u64, WireMessage)> {
        self.cursor = self.cursor.max(self.first_seq);
        while let Some(entry) = self.entries.get((self.cursor - self.first_seq) as usize) {
            let seq = self.cursor;
            self.cursor += 1;
            if entry.state != State::Waiting {
                continue;
            }
            match self.read(entry) {
                Ok(message) => {
                    self.entries[(seq - self.first_seq) as usize].state = State::InFlight;
                    return Some((seq, message));
                }
                Err(e) => {
                    METRICS.errors.inc();
                    tracing::error!("spool: {e:#}; the record is skipped");
                    self.acked(seq);
                }
            }
        }
        None
    }

    fn read(&self, entry: &Entry) -> anyhow::Result<WireMessage> {
        let segment = self
            .segments
            .iter()
            .find(|s| s.id == entry.segment)
            .context("a record's segment is gone")?;
        let mut bytes = vec![0u8; entry.extent.len as usize];
        let what = || {
            format!(
                "reading spool file {} at byte {}",
                segment.path.display(),
                entry.extent.offset
            )
        };
        segment
            .file
            .read_exact_at(&mut bytes, entry.extent.offset)
            .with_context(what)?;
        let body = segment::body_at(&bytes)
            .map_err(anyhow::Error::msg)
            .with_context(what)?;
        segment::decode(body)
            .map_err(anyhow::Error::msg)
            .with_context(what)
    }

    /// JetStream acknowledged record `seq` (or it can never be published): it is forgotten, and
    /// segments acknowledged to their end are deleted.
    pub fn acked(&mut self, seq: u64) {
        let Some(index) = seq.checked_sub(self.first_seq) else {
            return; // dropped while in flight
        };
        let Some(entry) = self.entries.get_mut(index as usize) else {
            return;
        };
        if entry.state == State::Acked {
            return;
        }
        entry.state = State::Acked;
        self.unacked -= 1;
        let mut last = None;
        while self
            .entries
            .front()
            .is_some_and(|e| e.state == State::Acked)
        {
            last = self.entries.pop_front();
            self.first_seq += 1;
        }
        if let Some(entry) = last {
            let position = acked::Position {
                segment: entry.segment,
                offset: entry.extent.offset + entry.extent.len,
            };
            if let Err(e) = self.acked.write(position) {
                // Only costs duplicates after a restart (JetStream drops most by Nats-Msg-Id).
                METRICS.errors.inc();
                tracing::warn!("spool: {e:#}");
            }
            // Nothing left: every segment but the one written to is done.
            let keep_from = match self.entries.front() {
                Some(entry) => entry.segment,
                None => self.segments.back().map_or(position.segment, |s| s.id),
            };
            while self.segments.len() > 1 && self.segments[0].id < keep_from {
                if let Some(done) = self.segments.pop_front() {
                    self.remove_file(&done.path);
                }
            }
        }
        self.publish_gauges();
    }

    /// Record `seq`'s publish failed: it is sent again, and so is every record after it, in
    /// order.
    pub fn failed(&mut self, seq: u64) {
        let Some(index) = seq.checked_sub(self.first_seq) else {
            return;
        };
        if let Some(entry) = self.entries.get_mut(index as usize) {
            if entry.state == State::InFlight {
                entry.state = State::Waiting;
                self.cursor = self.cursor.min(seq);
            }
        }
    }
}
