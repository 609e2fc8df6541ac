//! Choria lifecycle events: `choria.lifecycle.event.<type>.<component>` with the JSON
//! `{protocol: "choria:lifecycle:<type>:1", identity, component, timestamp, version, ...}` the
//! original published at startup, so Choria tooling can watch fleets. Types sent here: `startup`,
//! `shutdown`, `paused` and `resumed` (with `role`: `poller` or `receiver`), `reload` (with
//! `result` and `message`), `filter_load` (with `result`, `filter` and `message`: one per filter
//! loaded anew, one per refused load) and `filter_failure` (with `filter`, `kind`, `on_error` and
//! `message`: the first time a filter fails with a given error, so a filter failing every scrape
//! does not flood the fleet's event stream).
//!
//! The daemon creates one [`Events`] queue and passes it down as a value: to the filter chains
//! (deep in the pipeline, for `filter_load` and `filter_failure`) as to everything else that
//! reports. There is no process-wide queue: two relays in one process report each on its own
//! connection, and code run outside a daemon (the CLI, tests) holds [`Events::none`].
//!
//! Events go out on their own NATS connection made with the poller's URLs and security (the
//! receiver's when there is no poller). They are best effort: an event that cannot be sent is
//! logged and dropped. The `shutdown` event is the last one: the sender ends after it, and
//! what is sent later (by a clone still held somewhere) is dropped.
//!
//! **Invariant:** sending an event never blocks the daemon: [`Events::send`] only queues.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

/// The subject prefix of lifecycle events.
pub const SUBJECT_PREFIX: &str = "choria.lifecycle.event";

/// How long the shutdown event may take to reach the server.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// One lifecycle event.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Startup,
    Shutdown,
    /// A role (`poller`, `receiver`) was paused.
    Paused {
        role: &'static str,
    },
    /// A role was resumed.
    Resumed {
        role: &'static str,
    },
    /// A reload, with whether it succeeded and what it did or why it failed.
    Reload {
        ok: bool,
        message: String,
    },
    /// A filter loaded anew (`ok`, `filter` = its scope and name), or a load refused (the old
    /// chains stay; `filter` unknown when the failure concerns the whole set).
    FilterLoad {
        ok: bool,
        filter: Option<String>,
        message: String,
    },
    /// A filter call failed with an error not seen before from this filter.
    FilterFailure {
        filter: String,
        kind: String,
        on_error: String,
        message: String,
    },
}

impl Event {
    /// The event type, as in the subject and the protocol.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Startup => "startup",
            Event::Shutdown => "shutdown",
            Event::Paused { .. } => "paused",
            Event::Resumed { .. } => "resumed",
            Event::Reload { .. } => "reload",
            Event::FilterLoad { .. } => "filter_load",
            Event::FilterFailure { .. } => "filter_failure",
        }
    }

    /// The subject for `component`.
    pub fn subject(&self, component: &str) -> String {
        format!("{SUBJECT_PREFIX}.{}.{component}", self.kind())
    }

    /// The JSON body.
    pub fn body(&self, identity: &str, component: &str, timestamp: u64) -> serde_json::Value {
        let mut body = serde_json::json!({
            "protocol": format!("choria:lifecycle:{}:1", self.kind()),
            "identity": identity,
            "component": component,
            "timestamp": timestamp,
            "version": env!("CARGO_PKG_VERSION"),
        });
        let result = |ok: bool| serde_json::json!(if ok { "success" } else { "failure" });
        match self {
            Event::Reload { ok, message } => {
                body["result"] = result(*ok);
                body["message"] = serde_json::json!(message);
            }
            Event::FilterLoad {
                ok,
                filter,
                message,
            } => {
                body["result"] = result(*ok);
                body["filter"] = serde_json::json!(filter);
                body["message"] = serde_json::json!(message);
            }
            Event::FilterFailure {
                filter,
                kind,
                on_error,
                message,
            } => {
                body["filter"] = serde_json::json!(filter);
                body["kind"] = serde_json::json!(kind);
                body["on_error"] = serde_json::json!(on_error);
                body["message"] = serde_json::json!(message);
            }
            Event::Paused { role } | Event::Resumed { role } => {
                body["role"] = serde_json::json!(role);
            }
            Event::Startup | Event::Shutdown => {}
        }
        body
    }
}

/// The queue to the event sender task, or nowhere ([`Events::none`]). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Events {
    queue: Option<mpsc::Sender<Event>>,
}

impl Events {
    /// A queue that drops every event: for filters run outside a daemon (CLI, explain, tests).
    pub fn none() -> Events {
        Events::default()
    }

    /// A queue whose events the test reads from the receiver.
    #[cfg(test)]
    pub(crate) fn queue(capacity: usize) -> (Events, mpsc::Receiver<Event>) {
        let (queue, events) = mpsc::channel(capacity);
        (Events { queue: Some(queue) }, events)
    }

    /// Queues an event (dropped with a warning when the queue is full; silently once the
    /// sender ended after the `shutdown` event).
    pub fn send(&self, event: Event) {
        let Some(queue) = &self.queue else {
            return;
        };
        match queue.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                tracing::warn!(
                    kind = event.kind(),
                    "lifecycle event queue full; event dropped"
                )
            }
            Err(mpsc::error::TrySendError::Closed(event)) => {
                tracing::debug!(kind = event.kind(), "lifecycle events ended; event dropped")
            }
        }
    }
}

/// Starts the sender: connects with `security` and publishes each queued event until the
/// `shutdown` event (flushed before the task ends) or until every [`Events`] clone is gone. The
/// returned handle finishes after the last event; the caller bounds the wait (a flush waits for
/// a NATS server that is down).
pub fn start(
    urls: Vec<String>,
    role: &'static str,
    security: crate::nats::Security,
    identity: String,
    component: String,
) -> (Events, tokio::task::JoinHandle<()>) {
    let (queue, mut events) = mpsc::channel::<Event>(64);
    let handle = tokio::spawn(async move {
        let client = match crate::nats::connect(&urls, role, &identity, &security).await {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!("lifecycle events disabled: {error:#}");
                while let Some(event) = events.recv().await {
                    if event == Event::Shutdown {
                        break;
                    }
                }
                return;
            }
        };
        // Whether something was published since the last flush.
        let mut unflushed = false;
        while let Some(event) = events.recv().await {
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs());
            let body = event.body(&identity, &component, timestamp);
            let subject = event.subject(&component);
            let payload = serde_json::to_vec(&body).expect("a JSON value serialises");
            match client.publish(subject.clone(), payload.into()).await {
                Ok(()) => {
                    tracing::info!(%subject, "lifecycle event sent");
                    unflushed = true;
                }
                Err(error) => tracing::warn!("lifecycle event {subject} not sent: {error}"),
            }
            if event == Event::Shutdown || event == Event::Startup {
                // Startup and shutdown matter most: make sure they left the process. The
                // daemon bounds the wait for the shutdown event by its shutdown deadline.
                let _ = tokio::time::timeout(FLUSH_TIMEOUT, client.flush()).await;
                unflushed = false;
            }
            if event == Event::Shutdown {
                // The last event: clones of the queue may outlive the daemon's own (a filter
                // chain held by a task), and must not keep this task waiting.
                break;
            }
        }
        if unflushed {
            let _ = tokio::time::timeout(FLUSH_TIMEOUT, client.flush()).await;
        }
    });
    (Events { queue: Some(queue) }, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_has_the_choria_shape() {
        let body = Event::Startup.body("site1", "promrelay", 1700000000);
        assert_eq!(body["protocol"], "choria:lifecycle:startup:1");
        assert_eq!(body["identity"], "site1");
        assert_eq!(body["component"], "promrelay");
        assert_eq!(body["timestamp"], 1700000000);
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(
            Event::Startup.subject("promrelay"),
            "choria.lifecycle.event.startup.promrelay"
        );
    }

    #[test]
    fn pause_events_carry_the_role() {
        let body = Event::Paused { role: "poller" }.body("site1", "promrelay", 1);
        assert_eq!(body["protocol"], "choria:lifecycle:paused:1");
        assert_eq!(body["role"], "poller");
        let event = Event::Resumed { role: "receiver" };
        assert_eq!(
            event.subject("promrelay"),
            "choria.lifecycle.event.resumed.promrelay"
        );
        assert_eq!(event.body("site1", "promrelay", 1)["role"], "receiver");
    }

    #[test]
    fn reload_carries_its_result() {
        let event = Event::Reload {
            ok: false,
            message: "bad".into(),
        };
        let body = event.body("site1", "promrelay", 1);
        assert_eq!(body["protocol"], "choria:lifecycle:reload:1");
        assert_eq!(body["result"], "failure");
        assert_eq!(body["message"], "bad");
    }

    #[test]
    fn filter_events_carry_the_filter_and_why() {
        let load = Event::FilterLoad {
            ok: true,
            filter: Some("job/app/relabel".into()),
            message: "loaded".into(),
        };
        let body = load.body("site1", "promrelay", 1);
        assert_eq!(body["protocol"], "choria:lifecycle:filter_load:1");
        assert_eq!(body["result"], "success");
        assert_eq!(body["filter"], "job/app/relabel");
        assert_eq!(
            load.subject("promrelay"),
            "choria.lifecycle.event.filter_load.promrelay"
        );
        let failure = Event::FilterFailure {
            filter: "relabel".into(),
            kind: "timeout".into(),
            on_error: "drop".into(),
            message: "ran past 50 ms".into(),
        };
        let body = failure.body("site1", "promrelay", 1);
        assert_eq!(body["protocol"], "choria:lifecycle:filter_failure:1");
        assert_eq!(body["kind"], "timeout");
        assert_eq!(body["on_error"], "drop");
        assert!(body.get("result").is_none());
    }
}
