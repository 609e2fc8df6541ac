//! The JetStream stream scrapes travel on: created when missing, checked when present.
//!
//! Shared by the publisher and the receiver so both sides agree on one definition: subjects
//! `<topic>.>`, the configured retention as the stream's `max_age`, the configured storage and
//! replicas, JetStream's de-duplication window (two minutes, shortened to the retention when that
//! is shorter), limits retention.
//!
//! A hub's stream (`receiver_stream.sources`) is the other shape: no subjects of its own, one
//! source per site stream, read across the leaf node through the site domain's API prefix
//! `$JS.<domain>.API`. Both live in their configured JetStream domain ([`context`]).
//!
//! **Invariant:** an existing stream is never deleted, re-created or changed, with one exception:
//! a hub stream gets the configured sources it lacks added (a reload adds a site). A re-created
//! site stream silently stalls the hub's source of it (nats-server#6206), and work-queue or
//! interest retention loses sourced data during leaf outages (nats-server#3207): a stream with
//! such retention is refused, naming why. If a stream is incompatible (does not carry
//! `<topic>.>`, other storage, subjects on a hub stream) the caller gets an error saying what
//! differs and what to do; a different retention or replica count is only logged, because an
//! operator may have changed it on purpose with the `nats` CLI.

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
    /// The JetStream domain the stream lives in; `None`: the connected server's.
    pub domain: Option<String>,
    /// Site streams this (hub) stream sources; not empty: the stream has no subjects.
    pub sources: Vec<SourceSettings>,
    /// The body format a publisher writes (a receiver reads every format).
    pub format: super::WireFormat,
}

/// One site stream a hub stream sources, from another JetStream domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSettings {
    /// The site stream's name.
    pub stream: String,
    /// The site's JetStream domain.
    pub domain: String,
}

impl SourceSettings {
    /// `$JS.<domain>.API`: where the hub reaches the site's JetStream across the leaf node.
    pub fn api_prefix(&self) -> String {
        format!("$JS.{}.API", self.domain)
    }

    fn to_source(&self) -> stream::Source {
        stream::Source {
            name: self.stream.clone(),
            external: Some(stream::External {
                api_prefix: self.api_prefix(),
                delivery_prefix: None,
            }),
            ..stream::Source::default()
        }
    }
}

/// The JetStream context of the stream's domain (the plain one without a domain).
pub fn context(client: async_nats::Client, settings: &StreamSettings) -> jetstream::Context {
    match &settings.domain {
        Some(domain) => jetstream::with_domain(client, domain),
        None => jetstream::new(client),
    }
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
            domain: None,
            sources: Vec::new(),
            format: super::WireFormat::Batch,
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
            domain: section.domain.clone(),
            sources: section
                .sources
                .iter()
                .map(|source| SourceSettings {
                    stream: source.stream.clone(),
                    domain: source.domain.clone(),
                })
                .collect(),
            format: section.format,
        }
    }

    /// Whether this is a hub stream: no subjects, sources.
    pub fn is_hub(&self) -> bool {
        !self.sources.is_empty()
    }

    /// What the stream carries, for messages: its subjects, or what it sources.
    fn describe(&self) -> String {
        if self.is_hub() {
            let sources: Vec<String> = self
                .sources
                .iter()
                .map(|source| format!("{} from {}", source.stream, source.api_prefix()))
                .collect();
            format!("sources {}", sources.join(", "))
        } else {
            format!("subjects {}", self.subject_filter())
        }
    }

    /// The subject filter the stream carries: `<topic>.>`.
    pub fn subject_filter(&self) -> String {
        format!("{}.>", self.topic)
    }

    fn stream_config(&self) -> stream::Config {
        let (subjects, sources) = if self.is_hub() {
            let sources = self.sources.iter().map(SourceSettings::to_source).collect();
            (Vec::new(), Some(sources))
        } else {
            (vec![self.subject_filter()], None)
        };
        stream::Config {
            name: self.name.clone(),
            subjects,
            sources,
            retention: stream::RetentionPolicy::Limits,
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

/// Returns the stream named in `settings`, creating it when it does not exist (in the
/// settings' domain: pass the [`context`] of that domain).
///
/// An existing stream that does not carry `<topic>.>` (a hub stream: has subjects), uses another
/// storage, or has work-queue/interest retention is an error that names the difference. A hub
/// stream missing some of the configured sources gets them added, nothing else changed.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> anyhow::Result<stream::Stream> {
    match js.get_stream(&settings.name).await {
        Ok(existing) => reconcile(js, existing, settings).await,
        Err(error) if is_not_found(&error) => {
            match js.create_stream(settings.stream_config()).await {
                Ok(created) => {
                    tracing::info!(
                        stream = %settings.name,
                        domain = settings.domain.as_deref().unwrap_or("-"),
                        carries = %settings.describe(),
                        retention = ?settings.retention,
                        "created JetStream stream"
                    );
                    Ok(created)
                }
                // Another process may have created it between our look-up and create (the
                // server accepts an identical create; a different one fails): check it.
                Err(create_error) => match js.get_stream(&settings.name).await {
                    Ok(existing) => reconcile(js, existing, settings).await,
                    Err(_) => Err(anyhow::anyhow!(
                        "creating JetStream stream {:?} ({}{}): {create_error}",
                        settings.name,
                        settings.describe(),
                        in_domain(settings)
                    )),
                },
            }
        }
        Err(error) if is_no_responders(&error) => {
            let server = js.client().server_info();
            let hint = match &settings.domain {
                Some(domain) => format!(
                    "nothing answers the JetStream API of domain {domain:?} through the NATS \
                     server {:?} (version {}). Check that a server of that domain runs JetStream \
                     with jetstream {{ domain: {domain} }} and, across a leaf node, that the leaf \
                     connection is up",
                    server.server_name, server.version
                ),
                None => format!(
                    "JetStream is not enabled on the NATS server {:?} (version {}): nothing \
                     answers its JetStream API. Start nats-server with -js, or add \
                     `jetstream {{}}` to its config (with accounts, enable JetStream for this \
                     connection's account)",
                    server.server_name, server.version
                ),
            };
            Err(anyhow::anyhow!(
                "looking up JetStream stream {:?}: {hint}",
                settings.name
            ))
        }
        Err(error) => Err(anyhow::anyhow!(
            "looking up JetStream stream {:?}{}: {error}",
            settings.name,
            in_domain(settings)
        )),
    }
}

fn in_domain(settings: &StreamSettings) -> String {
    settings
        .domain
        .as_ref()
        .map(|domain| format!(" in JetStream domain {domain:?}"))
        .unwrap_or_default()
}

/// Checks an existing stream and adds the hub sources it lacks.
async fn reconcile(
    js: &jetstream::Context,
    mut existing: stream::Stream,
    settings: &StreamSettings,
) -> anyhow::Result<stream::Stream> {
    let info = existing
        .info()
        .await
        .with_context(|| format!("reading JetStream stream {:?}", settings.name))?;
    let missing = check_compatible(&info.config, settings)?;
    if missing.is_empty() {
        return Ok(existing);
    }
    let mut config = info.config.clone();
    let names: Vec<String> = missing.iter().map(|source| source.name.clone()).collect();
    config.sources.get_or_insert_with(Vec::new).extend(missing);
    js.update_stream(&config).await.map_err(|error| {
        anyhow::anyhow!(
            "adding sources {names:?} to JetStream stream {:?}{}: {error}",
            settings.name,
            in_domain(settings)
        )
    })?;
    tracing::info!(stream = %settings.name, added = ?names, "added sources to the hub stream");
    js.get_stream(&settings.name)
        .await
        .map_err(|error| anyhow::anyhow!("reading JetStream stream {:?}: {error}", settings.name))
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
/// Returns the configured sources a hub stream lacks (always empty for a site stream).
pub fn check_compatible(
    existing: &stream::Config,
    settings: &StreamSettings,
) -> anyhow::Result<Vec<stream::Source>> {
    let mut problems = Vec::new();
    let mut missing = Vec::new();
    if settings.is_hub() {
        if !existing.subjects.is_empty() {
            problems.push(format!(
                "it has the subjects {:?} but a hub stream (receiver_stream.sources) has none: \
                 messages on subjects it shares with a source would be stored twice",
                existing.subjects
            ));
        }
        let present = existing.sources.as_deref().unwrap_or_default();
        for wanted in &settings.sources {
            let prefix = wanted.api_prefix();
            match present.iter().find(|source| source.name == wanted.stream) {
                None => missing.push(wanted.to_source()),
                Some(source) => {
                    let api = source
                        .external
                        .as_ref()
                        .map(|external| external.api_prefix.as_str());
                    if api != Some(prefix.as_str()) {
                        problems.push(format!(
                            "its source {:?} reads from {} but the config says domain {:?} \
                             ({prefix})",
                            wanted.stream,
                            api.unwrap_or("its own domain"),
                            wanted.domain
                        ));
                    }
                }
            }
        }
    } else {
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
    }
    if existing.storage != settings.storage {
        problems.push(format!(
            "its storage is {:?} but the config asks for {:?}",
            existing.storage, settings.storage
        ));
    }
    if existing.retention != stream::RetentionPolicy::Limits {
        problems.push(format!(
            "its retention is {:?}, but promrelay needs limits retention (with max_age): a \
             work-queue or interest stream deletes messages once consumed, and sourced across a \
             leaf node it loses data during outages (nats-server#3207); use a new stream name, \
             never re-create a sourced stream under its old name (nats-server#6206)",
            existing.retention
        ));
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "JetStream stream {:?}{} exists with incompatible settings: {}; change the config or \
             use a new stream name (promrelay never re-creates a stream: a re-created site stream \
             silently stalls the hub's source of it)",
            settings.name,
            in_domain(settings),
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
    Ok(missing)
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

    fn hub() -> StreamSettings {
        let mut settings = StreamSettings::new("PROM_ALL", "promrelay");
        settings.domain = Some("hub".into());
        settings.sources = vec![
            SourceSettings {
                stream: "PROM_SITE1".into(),
                domain: "site1".into(),
            },
            SourceSettings {
                stream: "PROM_SITE2".into(),
                domain: "site2".into(),
            },
        ];
        settings
    }

    #[test]
    fn hub_stream_has_no_subjects_and_sources_each_site_through_its_domain_api() {
        let config = hub().stream_config();
        assert!(config.subjects.is_empty());
        assert_eq!(config.retention, stream::RetentionPolicy::Limits);
        let sources = config.sources.expect("a hub stream has sources");
        let read: Vec<(String, String)> = sources
            .iter()
            .map(|source| {
                let external = source.external.as_ref().expect("sourced across a domain");
                (source.name.clone(), external.api_prefix.clone())
            })
            .collect();
        assert_eq!(
            read,
            [
                ("PROM_SITE1".to_string(), "$JS.site1.API".to_string()),
                ("PROM_SITE2".to_string(), "$JS.site2.API".to_string())
            ]
        );
    }

    #[test]
    fn existing_hub_stream_gets_only_the_sources_it_lacks() {
        let settings = hub();
        let mut existing = settings.stream_config();
        existing.sources = Some(vec![settings.sources[0].to_source()]);
        let missing = check_compatible(&existing, &settings).expect("compatible");
        let names: Vec<&str> = missing.iter().map(|source| source.name.as_str()).collect();
        assert_eq!(names, ["PROM_SITE2"]);
    }

    #[test]
    fn hub_stream_with_subjects_or_a_source_of_another_domain_is_refused() {
        let settings = hub();
        let mut existing = settings.stream_config();
        existing.subjects = vec!["promrelay.>".into()];
        let mut moved = settings.sources[0].clone();
        moved.domain = "elsewhere".into();
        existing.sources = Some(vec![moved.to_source()]);
        let error = check_compatible(&existing, &settings)
            .expect_err("incompatible")
            .to_string();
        assert!(error.contains("stored twice"), "{error}");
        assert!(error.contains("$JS.elsewhere.API"), "{error}");
        assert!(error.contains("\"site1\""), "{error}");
    }

    #[test]
    fn work_queue_and_interest_streams_are_refused_with_the_reason() {
        for retention in [
            stream::RetentionPolicy::WorkQueue,
            stream::RetentionPolicy::Interest,
        ] {
            let settings = StreamSettings::new("S", "prometheus");
            let mut existing = settings.stream_config();
            existing.retention = retention;
            let error = check_compatible(&existing, &settings)
                .expect_err("refused")
                .to_string();
            assert!(error.contains("limits retention"), "{error}");
            assert!(error.contains("#3207"), "{error}");
        }
    }
}
