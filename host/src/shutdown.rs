//! The shutdown of a running relay: one signal, and one deadline that every stage of the shutdown
//! shares.
//!
//! The README promises that SIGTERM ends the process within [`BOUND`]. Stages that each took
//! their own timeout in turn (the publisher's flush, then the lifecycle event's) added up to
//! twice that while NATS was down. Instead the daemon fixes the deadline when the signal arrives
//! and hands each stage its share of it with [`Shutdown::begin`]; a stage drains until its
//! deadline and then gives up, saying what it left behind.
//!
//! **Invariant:** the deadline is set before the token is cancelled, so a stage that sees the
//! cancellation always finds its deadline. This module knows no stage.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The longest a whole shutdown may take, from the signal to the process' exit (README).
pub const BOUND: Duration = Duration::from_secs(10);

/// A stop signal with the deadline by which the stopped work must be finished.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    deadline: Arc<OnceLock<Instant>>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Tells every holder to stop and to be done by `deadline`. A later call changes nothing.
    pub fn begin(&self, deadline: Instant) {
        let _ = self.deadline.set(deadline);
        self.token.cancel();
    }

    /// Resolves once [`begin`](Self::begin) was called.
    pub async fn started(&self) {
        self.token.cancelled().await;
    }

    /// Whether [`begin`](Self::begin) was called.
    pub fn is_started(&self) -> bool {
        self.token.is_cancelled()
    }

    /// When the stopped work must be finished; `None` before [`begin`](Self::begin).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.get().copied()
    }

    /// The token alone, for tasks that only stop and have nothing to drain.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_deadline_is_there_when_the_stop_is_seen_and_the_first_one_stays() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.is_started());
        assert_eq!(shutdown.deadline(), None);
        let seen = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.started().await;
                shutdown.deadline()
            })
        };
        let first = Instant::now() + Duration::from_secs(3);
        shutdown.begin(first);
        shutdown.begin(first + Duration::from_secs(60));
        assert_eq!(seen.await.expect("the waiter ends"), Some(first));
        assert_eq!(shutdown.deadline(), Some(first));
        assert!(shutdown.token().is_cancelled());
    }
}
