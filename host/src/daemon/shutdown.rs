//! The shutdown sequence: scrapers stop, then the publisher and the receiver drain, then the
//! `shutdown` lifecycle event goes out, all within [`shutdown::BOUND`] of the signal.
//!
//! **Invariant:** every stage waits only until its own deadline, taken from one [`Deadlines`]
//! fixed when the shutdown began; a stage that is not done by then is abandoned with a warning,
//! so a NATS server that is down costs the bound once, not once per stage.

use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;

use super::scrapers::Scrapers;
use crate::lifecycle;
use crate::shutdown::{self, Shutdown};

/// Kept at the end of the bound for the process' exit once [`crate::daemon::run`] returned (the
/// runtime's blocking threads: see `main`).
pub const EXIT_SHARE: Duration = Duration::from_millis(500);
/// Kept before the exit for the `shutdown` lifecycle event.
const EVENT_SHARE: Duration = Duration::from_millis(750);
/// Kept between the drain deadline and the event for tasks to return after giving up.
const STRAGGLER_SHARE: Duration = Duration::from_millis(250);
/// What the scrape tasks may take to notice the stop, before the drain starts.
const SCRAPERS_SHARE: Duration = Duration::from_millis(500);

/// A drain counted from the moment the pipeline stops (after the scrapers) rather than from the
/// shared deadline, as the receiver's is, ends by [`Deadlines::drain`] if it takes at most this.
pub const DRAIN_TIMEOUT: Duration = shutdown::BOUND
    .saturating_sub(EXIT_SHARE)
    .saturating_sub(EVENT_SHARE)
    .saturating_sub(STRAGGLER_SHARE)
    .saturating_sub(SCRAPERS_SHARE);

/// When each stage of a shutdown must be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// The scrape tasks have stopped.
    pub scrapers: Instant,
    /// The publisher's buffer and the receiver's pushes are flushed (or given up).
    pub drain: Instant,
    /// Every task returned; the rest are aborted.
    pub tasks: Instant,
    /// The `shutdown` lifecycle event left the process.
    pub event: Instant,
}

impl Deadlines {
    /// The deadlines of a shutdown that began at `start`.
    pub fn from(start: Instant) -> Deadlines {
        let event = start + shutdown::BOUND - EXIT_SHARE;
        let tasks = event - EVENT_SHARE;
        Deadlines {
            scrapers: start + SCRAPERS_SHARE,
            drain: tasks - STRAGGLER_SHARE,
            tasks,
            event,
        }
    }
}

/// What is running when the shutdown begins.
pub(super) struct Running {
    pub(super) scrapers_stop: CancellationToken,
    pub(super) poller: Option<Scrapers>,
    pub(super) pipeline: Shutdown,
    pub(super) tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    pub(super) events: lifecycle::Events,
    pub(super) events_task: JoinHandle<()>,
}

/// Stops everything in order, each stage by its deadline.
pub(super) async fn stop(running: Running, deadlines: Deadlines) {
    let Running {
        scrapers_stop,
        poller,
        pipeline,
        mut tasks,
        events,
        mut events_task,
    } = running;
    scrapers_stop.cancel();
    if let Some(scrapers) = poller {
        if timeout_at(deadlines.scrapers, scrapers.join())
            .await
            .is_err()
        {
            tracing::warn!("shutdown: some scrape tasks did not stop in time");
        }
    }
    pipeline.begin(deadlines.drain);
    let drained = timeout_at(deadlines.tasks, async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok((name, Err(e))) = joined {
                tracing::warn!("{name} ended with an error during shutdown: {e:#}");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "shutdown: some tasks did not finish in time; aborted"
        );
        tasks.abort_all();
    }
    // The last event: the sender ends after it, whoever still holds a clone of `events`.
    events.send(lifecycle::Event::Shutdown);
    drop(events);
    if timeout_at(deadlines.event, &mut events_task).await.is_err() {
        events_task.abort();
        tracing::warn!("shutdown: the lifecycle event could not be sent in time");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stages_follow_each_other_within_the_bound() {
        let start = Instant::now();
        let deadlines = Deadlines::from(start);
        assert!(start < deadlines.scrapers);
        assert!(deadlines.scrapers < deadlines.drain);
        assert!(deadlines.drain < deadlines.tasks);
        assert!(deadlines.tasks < deadlines.event);
        assert_eq!(deadlines.event + EXIT_SHARE, start + shutdown::BOUND);
        // The receiver, stopped at the scrapers' deadline at the latest, is done by the drain's.
        assert!(deadlines.scrapers + DRAIN_TIMEOUT <= deadlines.drain);
    }
}
