//! The relay's status as the monitor port shows it (`GET /` as HTML, `/api/v1/status` and its
//! parts as JSON): the targets and their health, the filters, the publisher, the receiver, the
//! pause state, version and config path.
//!
//! The data comes from the pipeline itself: the daemon makes one [`Status`] and hands its parts
//! down as values (the scrape tasks get [`Targets`], the publisher [`PublisherStatus`], the
//! receiver [`ReceiverStatus`]); each updates its part as it works, once per scrape, ack or batch.
//! The monitor port only copies the parts out into a [`Snapshot`] and renders it (`html`).
//!
//! **Invariant:** nothing here is global, and nothing here does I/O or waits on the pipeline:
//! reading the status never slows scraping, publishing or pushing.

pub mod html;
mod pipeline;
mod targets;

pub use pipeline::{
    Connection, GroupPush, PublisherState, PublisherStatus, ReceiverState, ReceiverStatus,
    SinkPushes,
};
pub use targets::{Health, ScrapeReport, TargetEntry, TargetStatus, Targets};

use serde::Serialize;

/// The handles the pipeline's stages update; cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub targets: Targets,
    pub publisher: PublisherStatus,
    pub receiver: ReceiverStatus,
}

/// One role's pause switch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolePause {
    pub role: String,
    pub paused: bool,
}

/// Everything the status page shows, copied out at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub identity: String,
    /// `relay`, `poller` or `receiver`.
    pub component: String,
    pub version: String,
    pub config_path: String,
    /// When the snapshot was taken, unix milliseconds (ages on the page are relative to it).
    pub now_ms: i64,
    pub pause: Vec<RolePause>,
    /// `None`: this process runs no poller.
    pub targets: Option<Vec<TargetStatus>>,
    /// The filter engine's status, as `GET /api/v1/filters` answers it.
    pub filters: serde_json::Value,
    pub publisher: Option<PublisherState>,
    pub receiver: Option<ReceiverState>,
}

/// Now, in unix milliseconds: the time stamps the status parts record.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}
