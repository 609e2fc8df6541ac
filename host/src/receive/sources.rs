//! The hub stream's sources at run time: a reload that lists a new site stream adds it as a
//! source of the running hub stream, without re-creating the stream or touching its consumer.
//!
//! **Invariant:** sources are only ever added (through `wire::ensure_stream`, which never
//! re-creates a stream); one removed from the config stays on the stream until an operator
//! removes it with the `nats` CLI, because dropping a source cannot be undone without
//! re-reading the site stream from its start.

use async_nats::jetstream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::nats::Backoff;
use crate::wire::{self, SourceSettings, StreamSettings};

/// New source lists for the hub stream, sent by the daemon's reload.
pub type SourceUpdates = watch::Receiver<Vec<SourceSettings>>;

/// Applies each new source list to the hub stream until `shutdown`, retrying with backoff while
/// the hub's JetStream cannot be reached.
pub(super) async fn follow(
    js: jetstream::Context,
    mut stream: StreamSettings,
    mut updates: SourceUpdates,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = updates.changed() => if changed.is_err() { return },
        }
        stream.sources = updates.borrow_and_update().clone();
        if stream.sources.is_empty() {
            continue;
        }
        let mut backoff = Backoff::default();
        loop {
            match wire::ensure_stream(&js, &stream).await {
                Ok(_) => {
                    tracing::info!(stream = %stream.name, sources = stream.sources.len(),
                        "hub stream sources up to date");
                    break;
                }
                Err(error) => {
                    if !backoff.failing() {
                        tracing::warn!(
                            "updating the hub stream's sources failed, retrying: {error:#}"
                        );
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        // A newer list supersedes this one: apply that instead.
                        _ = updates.changed() => {
                            stream.sources = updates.borrow_and_update().clone();
                        }
                    }
                }
            }
        }
    }
}
