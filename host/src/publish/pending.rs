//! Where the publisher keeps the scrapes JetStream has not acknowledged: the in-memory
//! [`OutageBuffer`], or the durable [`Spool`] when `spool_dir` is set. One interface for both,
//! so the publish loop does not care which. With the spool, `promrelay_spool_*` replaces the
//! `promrelay_outage_buffer_*` gauges.

use crate::spool::Spool;
use crate::wire::WireMessage;

use super::OutageBuffer;

pub(super) enum Pending {
    Memory(OutageBuffer),
    Disk(Spool),
}

impl Pending {
    /// Appends a new scrape; returns how many older ones were dropped to make room.
    pub(super) fn push(&mut self, message: WireMessage) -> usize {
        match self {
            Pending::Memory(buffer) => buffer.push_back(message),
            Pending::Disk(spool) => spool.append(&message).unwrap_or_else(|e| {
                tracing::error!("{e:#}");
                0
            }),
        }
    }

    /// The oldest scrape not yet sent, with the ticket to settle or retry it with.
    pub(super) fn take(&mut self) -> Option<(u64, WireMessage)> {
        match self {
            Pending::Memory(buffer) => buffer.take().map(|message| (0, message)),
            Pending::Disk(spool) => spool.take(),
        }
    }

    /// JetStream acknowledged it, or it can never be published.
    pub(super) fn settled(&mut self, ticket: u64, message: &WireMessage) {
        match self {
            Pending::Memory(buffer) => buffer.settled(message),
            Pending::Disk(spool) => spool.acked(ticket),
        }
    }

    /// Its publish failed: it is sent again, before anything newer.
    pub(super) fn retry(&mut self, ticket: u64, message: WireMessage) {
        match self {
            Pending::Memory(buffer) => buffer.retry(message),
            Pending::Disk(spool) => spool.failed(ticket),
        }
    }

    /// Scrapes not yet acknowledged: waiting and in flight.
    pub(super) fn len(&self) -> usize {
        match self {
            Pending::Memory(buffer) => buffer.len(),
            Pending::Disk(spool) => spool.len(),
        }
    }

    /// Bytes held (memory: what the buffer counts against `outage_buffer`; disk: the segments).
    pub(super) fn bytes(&self) -> u64 {
        match self {
            Pending::Memory(buffer) => buffer.bytes(),
            Pending::Disk(spool) => spool.bytes(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// For `spool_sync: interval`: makes what was written durable.
    pub(super) fn sync(&mut self) {
        if let Pending::Disk(spool) = self {
            spool.sync_now();
        }
    }

    /// The publisher stops: says what is left and where it stays.
    pub(super) fn close(self) {
        match self {
            Pending::Memory(buffer) if !buffer.is_empty() => tracing::warn!(
                left = buffer.len(),
                waiting = buffer.waiting(),
                "shutdown: gave up flushing scrapes to NATS; they are lost (set spool_dir to \
                 keep them across a restart)"
            ),
            Pending::Memory(_) => {}
            Pending::Disk(spool) => {
                if !spool.is_empty() {
                    tracing::warn!(left = spool.len(), spool_dir = %spool.dir().display(),
                        "shutdown: scrapes not yet acknowledged by NATS stay in the spool; they \
                         are published first at the next start");
                }
                spool.close();
            }
        }
    }
}
