//! The JetStream stream scrapes travel on: created when missing, checked when present.
//!
//! Shared by the publisher and the receiver so both sides agree on one definition: subjects
//! `<topic>.>`, the configured retention as the stream's `max_age`, the configured storage and
//! replicas, JetStream's de-duplication window (two minutes, shortened to the retention when that
//! is shorter).
//!
//! **Invariant:** an existing stream is never modified. If it is incompatible (does not carry
//! `<topic>.>`, other storage) the caller gets an error saying what differs and what to do; a
//! different retention or replica count is only logged, because an operator may have changed it
//! on purpose with the `nats` CLI.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};

/// JetStream's own default de-duplication window.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// What a stream must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// The stream name (the config's `cluster_id`).
    pub name: String,
    /// Subject prefix; the stream carries `<topic>.>`.
    pub topic: String,
    /// The stream's `max_age`.
    pub retention: Duration,
    /// File (default) or memory.
    pub storage: stream::StorageType,
    /// Stream replicas.
    pub replicas: usize,
}

impl StreamSettings {
    /// Settings with the documented defaults: 10 minutes retention, file storage, one replica.
    pub fn new(name: impl Into<String>, topic: impl Into<String>) -> StreamSettings {
        StreamSettings {
            name: name.into(),
            topic: topic.into(),
            retention: Duration::from_secs(600),
            storage: stream::StorageType::File,
            replicas: 1,
        }
    }

    /// Settings from a `poller_stream` / `receiver_stream` section.
    pub fn from_config(section: &crate::config::StreamConfig) -> StreamSettings {
        StreamSettings {
            name: section.stream.clone(),
            topic: section.topic.clone(),
            retention: section.retention,
            storage: match section.storage {
                crate::config::Storage::File => stream::StorageType::File,
                crate::config::Storage::Memory => stream::StorageType::Memory,
            },
            replicas: section.replicas.max(1),
        }
    }

    /// The subject filter the stream carries: `<topic>.>`.
    pub fn subject_filter(&self) -> String {
        format!("{}.>", self.topic)
    }

    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: vec![self.subject_filter()],
            max_age: self.retention,
            storage: self.storage,
            num_replicas: self.replicas,
            duplicate_window: if self.retention.is_zero() {
                DUPLICATE_WINDOW
            } else {
                DUPLICATE_WINDOW.min(self.retention)
            },
            ..stream::Config::default()
        }
    }
}

/// Returns the stream named in `settings`, creating it when it does not exist.
///
/// An existing stream that does not carry `<topic>.>` or uses another storage is an error that
/// names the difference.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> anyhow::Result<stream::Stream> {
    match js.get_stream(&settings.name).await {
        Ok(mut existing) => {
            let info = existing
                .info()
                .await
                .with_context(|| format!("reading JetStream stream {:?}", settings.name))?;
            check_compatible(&info.config, settings)?;
            Ok(existing)
        }
        Err(error) if is_not_found(&error) => {
            match js.create_stream(settings.stream_config()).await {
                Ok(created) => {
                    tracing::info!(
                        stream = %settings.name,
                        subjects = %settings.subject_filter(),
                        retention = ?settings.retention,
                        "created JetStream stream"
                    );
                    Ok(created)
                }
                // Another process may have created it between our look-up and create (the
                // server accepts an identical create; a different one fails): check it.
                Err(create_error) => match js.get_stream(&settings.name).await {
                    Ok(mut existing) => {
                        let info = existing.info().await.with_context(|| {
                            format!("reading JetStream stream {:?}", settings.name)
                        })?;
                        check_compatible(&info.config, settings)?;
                        Ok(existing)
                    }
                    Err(_) => Err(anyhow::anyhow!(
                        "creating JetStream stream {:?} (subjects {}): {create_error}",
                        settings.name,
                        settings.subject_filter()
                    )),
                },
            }
        }
        Err(error) if is_no_responders(&error) => {
            let server = js.client().server_info();
            Err(anyhow::anyhow!(
                "looking up JetStream stream {:?}: JetStream is not enabled on the NATS server \
                 {:?} (version {}): nothing answers its JetStream API. Start nats-server with \
                 -js, or add `jetstream {{}}` to its config (with accounts, enable JetStream for \
                 this connection's account)",
                settings.name,
                server.server_name,
                server.version
            ))
        }
        Err(error) => Err(anyhow::anyhow!(
            "looking up JetStream stream {:?}: {error}",
            settings.name
        )),
    }
}

/// Whether nothing answered the JetStream API request: a server (or account) without JetStream.
fn is_no_responders(error: &jetstream::context::GetStreamError) -> bool {
    use jetstream::context::{RequestError, RequestErrorKind};
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<RequestError>())
        .is_some_and(|request| request.kind() == RequestErrorKind::NoResponders)
}

fn is_not_found(error: &jetstream::context::GetStreamError) -> bool {
    matches!(
        error.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(inner)
            if inner.code() == 404
    )
}

/// Refuses a stream that cannot carry our messages as configured; logs softer differences.
pub fn check_compatible(
    existing: &stream::Config,
    settings: &StreamSettings,
) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let wanted = settings.subject_filter();
    if !existing
        .subjects
        .iter()
        .any(|subject| subject_covers(subject, &wanted))
    {
        problems.push(format!(
            "its subjects are {:?} but promrelay publishes on {wanted:?}",
            existing.subjects
        ));
    }
    if existing.storage != settings.storage {
        problems.push(format!(
            "its storage is {:?} but the config asks for {:?}",
            existing.storage, settings.storage
        ));
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "JetStream stream {:?} exists with incompatible settings: {}; change the config's \
             topic/storage or fix the stream with the nats CLI (nats stream edit / rm)",
            settings.name,
            problems.join("; ")
        );
    }
    if existing.max_age != settings.retention {
        tracing::warn!(
            stream = %settings.name,
            existing = ?existing.max_age,
            configured = ?settings.retention,
            "JetStream stream exists with another retention; keeping the stream's"
        );
    }
    if existing.num_replicas != settings.replicas {
        tracing::warn!(
            stream = %settings.name,
            existing = existing.num_replicas,
            configured = settings.replicas,
            "JetStream stream exists with another replica count; keeping the stream's"
        );
    }
    Ok(())
}

/// Whether subject filter `pattern` matches every subject `wanted` matches (both may end in `>`).
fn subject_covers(pattern: &str, wanted: &str) -> bool {
    let mut pattern_tokens = pattern.split('.');
    let mut wanted_tokens = wanted.split('.');
    loop {
        match (pattern_tokens.next(), wanted_tokens.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(token)) if token != ">" => {}
            (Some(p), Some(w)) if p == w => {
                if p == ">" {
                    return true;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_cover_rules() {
        assert!(subject_covers("prometheus.>", "prometheus.>"));
        assert!(subject_covers(">", "prometheus.>"));
        assert!(subject_covers("*.>", "prometheus.>"));
        assert!(!subject_covers("prometheus.*", "prometheus.>"));
        assert!(!subject_covers("other.>", "prometheus.>"));
        assert!(!subject_covers("prometheus", "prometheus.>"));
    }

    #[test]
    fn incompatible_stream_names_every_difference() {
        let settings = StreamSettings::new("S", "prometheus");
        let existing = stream::Config {
            subjects: vec!["metrics.>".into()],
            storage: stream::StorageType::Memory,
            ..stream::Config::default()
        };
        let error = check_compatible(&existing, &settings)
            .expect_err("incompatible")
            .to_string();
        assert!(error.contains("metrics.>"), "{error}");
        assert!(error.contains("Memory"), "{error}");
    }
}
