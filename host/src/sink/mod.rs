//! Where the receiver delivers scrapes: a Prometheus Pushgateway and/or remote_write endpoints.
//!
//! Every sink answers a push with an [`Outcome`] the receiver acts on: `Ok` lets it ack the
//! message, `AlreadyStored` (a remote_write endpoint already has this scrape or a newer one: a
//! redelivery) counts as delivered, `Rejected` (the sink refused this scrape for good, HTTP 4xx)
//! is logged, counted and acked, `Retry` (5xx, 429, timeout, connection error) leaves the message
//! unacked so it is pushed again later.
//!
//! Each sink also says which scrapes of a group it wants ([`Coalescing`]): the Pushgateway keeps
//! one value per group, so only the newest scrape matters to it; a remote_write endpoint stores
//! every sample with its timestamp, so it wants every scrape, oldest first.
//!
//! **Invariant:** a sink never retries by itself and never blocks longer than its timeout; the
//! retry policy (backoff, `max_age`, ordering) belongs to `receive`.

pub mod http;
pub mod pushgateway;
pub mod remote_write;

pub use pushgateway::Pushgateway;
pub use remote_write::RemoteWrite;

use std::time::Duration;

use crate::batch::ScrapeBatch;

/// How a sink answered one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: delivered.
    Ok,
    /// The sink already holds this scrape's samples or newer ones of the same series (a
    /// remote_write 400 `out of order sample` / `duplicate sample for timestamp` to a re-sent
    /// scrape): delivered before, nothing lost; the body says what the sink answered.
    AlreadyStored(String),
    /// 4xx (except 429): this scrape will never be accepted; the body says why.
    Rejected { status: u16, body: String },
    /// 5xx, 429, timeout or a connection error: try again later.
    Retry(String),
}

impl Outcome {
    /// The `result` label value of the push metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::AlreadyStored(_) => "already_stored",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Retry(_) => "retry",
        }
    }
}

/// Which scrapes of one (job, instance, publisher) group a sink wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coalescing {
    /// Only the newest: each push replaces the group (the Pushgateway). Older scrapes still in
    /// the stream are skipped, and one older than what the sink has is never pushed.
    Newest,
    /// Every scrape, in scrape-time order per group (remote_write: each sample keeps its
    /// timestamp, and Prometheus refuses a sample older than the newest of its series).
    Every,
}

/// One configured sink.
#[derive(Debug, Clone)]
pub enum Sink {
    Pushgateway(Pushgateway),
    RemoteWrite(RemoteWrite),
}

impl Sink {
    /// Short name for logs and the `sink` metric label: `pushgateway` or `remote_write:<host>`.
    pub fn name(&self) -> &str {
        match self {
            Sink::Pushgateway(_) => "pushgateway",
            Sink::RemoteWrite(sink) => sink.name(),
        }
    }

    /// Which scrapes of a group this sink wants.
    pub fn coalescing(&self) -> Coalescing {
        match self {
            Sink::Pushgateway(_) => Coalescing::Newest,
            Sink::RemoteWrite(_) => Coalescing::Every,
        }
    }

    /// Delivers one scrape.
    pub async fn push(&self, scrape: &ScrapeBatch) -> Outcome {
        match self {
            Sink::Pushgateway(sink) => sink.push(scrape).await,
            Sink::RemoteWrite(sink) => sink.push(scrape).await,
        }
    }
}

/// A plain client for the sinks: rustls, timeouts, a `promrelay/<version>` user agent.
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    http::plain_client(timeout)
}

/// Classifies an HTTP answer: 2xx ok, 429 and 5xx retry, other 4xx (and anything else) rejected.
pub(crate) async fn classify(response: reqwest::Response) -> Outcome {
    let status = response.status();
    if status.is_success() {
        return Outcome::Ok;
    }
    let body = response.text().await.unwrap_or_default();
    let body = truncate(body.trim(), 512);
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Outcome::Retry(format!("HTTP {status}: {body}"))
    } else {
        Outcome::Rejected {
            status: status.as_u16(),
            body,
        }
    }
}

/// Describes a transport error for `Outcome::Retry`, with its causes.
pub(crate) fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
