//! Shared push order for receivers that scale out (`receiver_stream.shared_order`): several
//! receivers on one durable consumer each fetch their own batches, so two scrapes of one group
//! can sit in two receivers at once. For the Pushgateway (newest scrape per group) an older scrape
//! pushed after a newer one would overwrite it; this module keeps, per group, the newest scrape
//! time pushed in a JetStream KV bucket and serialises the pushes of a group across receivers.
//!
//! Per push: read the group's entry; a stored time at or above the scrape's means it is
//! superseded (acked without a push); an unexpired claim of another receiver means "later"
//! (nak'ed, it comes back); otherwise write a claim `(time, lease)` with compare-and-set on the
//! entry's revision (a lost race re-reads), push, then write the outcome on the claim's revision:
//! the scrape's time on success, the previous time on failure (so the scrape can come back).
//!
//! **Invariant:** while a receiver's claim on a group is unexpired, no other receiver pushes to
//! that group; a claim expires only after the Pushgateway's push timeout plus a margin, by which
//! time the holder's push has ended (or the holder is dead). Stored times only grow, except when
//! a claim is released after a failed push.
//!
//! It never decides what a sink needs ([`super::plan`] does) and never touches the stream.

use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;

use super::batch::GroupKey;
use super::unix_ms;

/// What a receiver may do with one scrape of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Push it; then call [`SharedOrder::finish`] with this revision and the previous time.
    Go { revision: u64, previous: i64 },
    /// A scrape as new or newer was pushed already: do not push it.
    Superseded,
    /// Another receiver is pushing this group now: try again later.
    Busy,
}

/// One group's entry: the newest scrape time pushed, and a claim while a push is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    /// Scrape time (unix ms) of the newest scrape pushed (or being pushed, under a claim).
    time_ms: i64,
    /// While claimed: the claim's scrape-free fallback time and when the lease ends (unix ms).
    claim: Option<(i64, i64)>,
}

impl Record {
    fn parse(value: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(value).ok()?;
        let mut parts = text.split(' ');
        let time_ms = parts.next()?.parse().ok()?;
        let claim = match (parts.next(), parts.next()) {
            (Some(previous), Some(lease)) => Some((previous.parse().ok()?, lease.parse().ok()?)),
            _ => None,
        };
        Some(Record { time_ms, claim })
    }

    fn render(&self) -> Bytes {
        match self.claim {
            Some((previous, lease)) => format!("{} {previous} {lease}", self.time_ms),
            None => self.time_ms.to_string(),
        }
        .into()
    }
}

/// Decides a claim from the current entry (`None`: no entry), pure so it is unit-tested.
fn decide(current: Option<Record>, time_ms: i64, now_ms: i64) -> Result<i64, Claim> {
    let Some(record) = current else {
        return Ok(i64::MIN);
    };
    match record.claim {
        Some((previous, lease)) if lease > now_ms => {
            // Someone pushes this group now. If even the time it falls back to is newer, this
            // scrape can never be pushed; else wait for the push to end.
            if previous >= time_ms {
                Err(Claim::Superseded)
            } else {
                Err(Claim::Busy)
            }
        }
        // An expired claim: its holder died or hung, and what it claimed may have landed. A
        // scrape not newer than the claimed one is superseded (the claimed one is still on the
        // stream, unacked, if it did not land); a newer one takes over.
        Some((previous, _)) => {
            if record.time_ms >= time_ms {
                Err(Claim::Superseded)
            } else {
                Ok(previous)
            }
        }
        None if record.time_ms >= time_ms => Err(Claim::Superseded),
        None => Ok(record.time_ms),
    }
}

/// The KV bucket of the newest pushed scrape per group, shared by every receiver of a consumer.
#[derive(Clone)]
pub struct SharedOrder {
    store: kv::Store,
    bucket: String,
    /// How long a claim holds: the Pushgateway's push timeout plus a margin.
    lease: Duration,
}

impl SharedOrder {
    /// Opens (or creates) the bucket `PROMRELAY_ORDER_<consumer>` beside the stream.
    pub async fn open(
        js: &jetstream::Context,
        consumer: &str,
        stream: &crate::wire::StreamSettings,
        push_timeout: Duration,
    ) -> anyhow::Result<SharedOrder> {
        let bucket = format!("PROMRELAY_ORDER_{consumer}");
        let store = match js.get_key_value(&bucket).await {
            Ok(store) => store,
            Err(_) => {
                // The stream a KV bucket is, made by hand: the client's `create_key_value` asks
                // for account details in a shape nats-server 2.9 does not answer.
                js.get_or_create_stream(jetstream::stream::Config {
                    name: format!("KV_{bucket}"),
                    description: Some("promrelay: newest scrape pushed per group".to_string()),
                    subjects: vec![format!("$KV.{bucket}.>")],
                    max_messages_per_subject: 1,
                    // A group quiet for longer than the stream keeps messages has nothing older
                    // left to push.
                    max_age: stream.retention + Duration::from_secs(600),
                    storage: stream.storage,
                    num_replicas: stream.replicas,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    discard: jetstream::stream::DiscardPolicy::New,
                    duplicate_window: Duration::from_secs(120),
                    ..jetstream::stream::Config::default()
                })
                .await
                .map_err(|error| {
                    anyhow::anyhow!(
                        "creating the KV bucket {bucket:?} (receiver_stream.shared_order): \
                         {error}; check that the account may create streams"
                    )
                })?;
                js.get_key_value(&bucket)
                    .await
                    .map_err(|error| anyhow::anyhow!("opening the KV bucket {bucket:?}: {error}"))?
            }
        };
        Ok(SharedOrder {
            store,
            bucket,
            lease: push_timeout + Duration::from_secs(5),
        })
    }

    /// Claims the push of the scrape of `key` taken at `time_ms`.
    pub async fn claim(&self, key: &GroupKey, time_ms: i64) -> anyhow::Result<Claim> {
        let name = entry_key(key);
        // A lost compare-and-set means another receiver wrote in between: re-read and decide
        // again (bounded: each round someone else made progress).
        for _ in 0..8 {
            let entry = self
                .store
                .entry(&name)
                .await
                .map_err(|error| self.failed("reading", key, error))?;
            let (current, revision) = match &entry {
                Some(entry) if entry.operation == kv::Operation::Put => {
                    (Record::parse(&entry.value), Some(entry.revision))
                }
                Some(entry) => (None, Some(entry.revision)),
                None => (None, None),
            };
            let now_ms = unix_ms(SystemTime::now());
            let previous = match decide(current, time_ms, now_ms) {
                Ok(previous) => previous,
                Err(claim) => return Ok(claim),
            };
            let lease_ms = now_ms + i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX / 2);
            let record = Record {
                time_ms,
                claim: Some((previous, lease_ms)),
            };
            let written = match revision {
                Some(revision) => self
                    .store
                    .update(&name, record.render(), revision)
                    .await
                    .map_err(|error| error.to_string()),
                None => self
                    .store
                    .create(&name, record.render())
                    .await
                    .map_err(|error| error.to_string()),
            };
            match written {
                Ok(revision) => return Ok(Claim::Go { revision, previous }),
                Err(error) => tracing::debug!(%error, "push claim lost a race; re-reading"),
            }
        }
        Ok(Claim::Busy)
    }

    /// Ends a claim: `pushed` the scrape's time stays, else the group falls back to `previous`.
    pub async fn finish(&self, key: &GroupKey, claim: Claim, time_ms: i64, pushed: bool) {
        let Claim::Go { revision, previous } = claim else {
            return;
        };
        let record = Record {
            time_ms: if pushed { time_ms } else { previous },
            claim: None,
        };
        if let Err(error) = self
            .store
            .update(entry_key(key), record.render(), revision)
            .await
        {
            // The claim expires by itself after the lease; until then the group waits.
            tracing::debug!(bucket = %self.bucket, %error, "ending a push claim failed");
        }
    }

    fn failed(&self, what: &str, key: &GroupKey, error: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!(
            "{what} the push order of job {:?} instance {:?} in KV bucket {:?}: {error}",
            key.job,
            key.instance,
            self.bucket
        )
    }
}

/// A KV key for a group: hex of `job \0 instance \0 publisher` (labels may hold any character; KV
/// keys may not).
fn entry_key(key: &GroupKey) -> String {
    let mut out = String::from("g.");
    for (index, part) in [&key.job, &key.instance, &key.publisher]
        .into_iter()
        .enumerate()
    {
        if index > 0 {
            out.push_str("00");
        }
        for byte in part.as_bytes() {
            out.push_str(&format!("{byte:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(time_ms: i64) -> Option<Record> {
        Some(Record {
            time_ms,
            claim: None,
        })
    }

    fn claimed(time_ms: i64, previous: i64, lease: i64) -> Option<Record> {
        Some(Record {
            time_ms,
            claim: Some((previous, lease)),
        })
    }

    #[test]
    fn an_older_scrape_is_superseded_and_a_live_claim_makes_others_wait() {
        let now = 1_000;
        // (entry, scrape time, expected)
        let table = [
            (None, 50, Ok(i64::MIN)),
            (done(40), 50, Ok(40)),
            (done(50), 50, Err(Claim::Superseded)),
            (done(60), 50, Err(Claim::Superseded)),
            (claimed(60, 40, now + 1), 50, Err(Claim::Busy)),
            (claimed(60, 40, now + 1), 70, Err(Claim::Busy)),
            (claimed(60, 55, now + 1), 50, Err(Claim::Superseded)),
            // Expired: the holder died; its fallback time is what is known to have landed.
            (claimed(60, 40, now - 1), 50, Err(Claim::Superseded)),
            (claimed(60, 40, now - 1), 60, Err(Claim::Superseded)),
            (claimed(60, 40, now - 1), 70, Ok(40)),
        ];
        for (entry, time, expected) in table {
            assert_eq!(decide(entry, time, now), expected, "{entry:?} at {time}");
        }
    }

    #[test]
    fn records_round_trip_and_keys_are_valid_kv_keys() {
        for record in [done(5), claimed(9, 5, 77), done(-1)] {
            let record = record.expect("a record");
            assert_eq!(Record::parse(&record.render()), Some(record));
        }
        let key = GroupKey {
            job: "node".to_string(),
            instance: "host:9100/a b".to_string(),
            publisher: String::new(),
        };
        let name = entry_key(&key);
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'));
        assert_ne!(
            name,
            entry_key(&GroupKey {
                publisher: "p".to_string(),
                ..key
            })
        );
    }
}
