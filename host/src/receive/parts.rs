//! Reassembly of scrapes that arrived as parts (`wire::parts`): a scrape reaches the sinks only
//! whole.
//!
//! A part is decoded when it arrives and kept, unacked, until every part of its scrape is
//! there; then the joined scrape goes on like any other message, and the acks or naks of its
//! delivery apply to every part. Parts kept longer than [`PART_WAIT`] go back to the stream
//! (nak): with several receivers on one consumer the parts of a scrape may be fetched by
//! different receivers, and handing them back lets one of them gather all. A scrape still not
//! whole [`PART_TIMEOUT`] after its first part came is given up: its parts are acked, counted
//! as `partial` and logged; it is never pushed in pieces.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use async_nats::jetstream;

use crate::batch::ScrapeBatch;
use crate::wire::{self, Part};

/// How long parts wait for the rest before they go back to the stream.
pub const PART_WAIT: Duration = Duration::from_secs(5);
/// How long after its first part a scrape may take to be whole before it is given up.
pub const PART_TIMEOUT: Duration = Duration::from_secs(120);
/// Most scrapes kept in pieces at once (beyond it, the oldest go back to the stream).
const MAX_OPEN: usize = 256;

/// A scrape whose parts are all there.
pub struct Whole {
    /// The first part's message.
    pub message: jetstream::Message,
    /// The other parts' messages.
    pub parts: Vec<jetstream::Message>,
    pub scrape: ScrapeBatch,
}

struct Open {
    count: u32,
    parts: BTreeMap<u32, (jetstream::Message, ScrapeBatch)>,
    held_since: Instant,
}

/// What the sweep decided about the parts it holds.
#[derive(Default)]
pub struct Swept {
    /// Parts to hand back to the stream (nak), to be gathered again.
    pub nak: Vec<jetstream::Message>,
    /// Parts of scrapes given up (ack): `(scrape id, parts held of count, messages)`.
    pub given_up: Vec<(String, usize, u32, Vec<jetstream::Message>)>,
}

/// The parts a receiver holds.
#[derive(Default)]
pub struct Assembler {
    open: HashMap<String, Open>,
    /// When the first part of a scrape was seen (kept across naks), bounded.
    first_seen: HashMap<String, Instant>,
}

impl Assembler {
    /// Takes one decoded part; returns the scrape when this was its last missing part.
    pub fn offer(
        &mut self,
        part: Part,
        message: jetstream::Message,
        scrape: ScrapeBatch,
        now: Instant,
    ) -> Option<Whole> {
        self.first_seen.entry(part.scrape_id.clone()).or_insert(now);
        let open = self.open.entry(part.scrape_id.clone()).or_insert(Open {
            count: part.count,
            parts: BTreeMap::new(),
            held_since: now,
        });
        if open.count != part.count {
            // Parts of two encodings of one scrape (a different max payload after a restart):
            // start over with the newest.
            tracing::debug!(scrape_id = %part.scrape_id, "parts of one scrape disagree on their count");
            open.count = part.count;
            open.parts.clear();
        }
        // A redelivered copy replaces the one held: its ack is the one that counts.
        open.parts.insert(part.index, (message, scrape));
        if open.parts.len() < open.count as usize {
            return None;
        }
        let open = self.open.remove(&part.scrape_id)?;
        self.first_seen.remove(&part.scrape_id);
        let mut messages = Vec::with_capacity(open.parts.len());
        let mut scrapes = Vec::with_capacity(open.parts.len());
        for (_, (message, scrape)) in open.parts {
            messages.push(message);
            // Joining goes through the model: only scrapes past the max payload get here.
            scrapes.push(scrape.to_scrape());
        }
        let mut messages = messages.into_iter();
        let message = messages.next()?;
        let joined = wire::parts::join(scrapes);
        let scrape = ScrapeBatch::from_scrape(&joined)
            .unwrap_or_else(|_| ScrapeBatch::new(joined.meta.clone(), Vec::new()));
        Some(Whole {
            message,
            parts: messages.collect(),
            scrape,
        })
    }

    /// Parts held past [`PART_WAIT`] go back; scrapes not whole after [`PART_TIMEOUT`] are given up.
    pub fn sweep(&mut self, now: Instant) -> Swept {
        let mut swept = Swept::default();
        let mut overflow: Vec<String> = Vec::new();
        if self.open.len() > MAX_OPEN {
            let mut by_age: Vec<_> = self
                .open
                .iter()
                .map(|(id, open)| (open.held_since, id.clone()))
                .collect();
            by_age.sort();
            overflow = by_age
                .into_iter()
                .take(self.open.len() - MAX_OPEN)
                .map(|(_, id)| id)
                .collect();
        }
        let due: Vec<String> = self
            .open
            .iter()
            .filter(|(_, open)| now.duration_since(open.held_since) >= PART_WAIT)
            .map(|(id, _)| id.clone())
            .chain(overflow)
            .collect();
        for id in due {
            let Some(open) = self.open.remove(&id) else {
                continue;
            };
            let first = self.first_seen.get(&id).copied().unwrap_or(open.held_since);
            let held = open.parts.len();
            let messages: Vec<_> = open
                .parts
                .into_values()
                .map(|(message, _)| message)
                .collect();
            if now.duration_since(first) >= PART_TIMEOUT {
                self.first_seen.remove(&id);
                swept.given_up.push((id, held, open.count, messages));
            } else {
                swept.nak.extend(messages);
            }
        }
        // Scrapes handed back and never seen again (another receiver completed them).
        self.first_seen
            .retain(|_, first| now.duration_since(*first) < PART_TIMEOUT * 2);
        swept
    }
}
