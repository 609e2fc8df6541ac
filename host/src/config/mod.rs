//! The configuration: reads the YAML file, checks every key and value, and returns a typed,
//! fully validated [`Config`] or a [`ConfigError`] listing every problem at once, each with its
//! dotted key (`jobs.node.targets[1].url`) and line.
//!
//! The original tool's files load unchanged and mean the same (see `docs/config.md`). Unknown keys
//! are errors (with a "did you mean"), never ignored.
//!
//! How: `yaml` parses the text into a tree whose nodes know their lines (serde's YAML
//! deserializers lose positions), `reader` converts nodes into typed values while collecting
//! problems, `build` and `sections` apply defaults, inheritance and cross-checks.
//!
//! **Invariant:** this module never does I/O beyond reading the config file itself: it does not
//! check that module, certificate or key files exist, connect anywhere or resolve names. The
//! stages that use those files report their own errors.

mod access;
mod build;
mod discovery;
mod endpoints;
mod groups;
mod jobs;
mod reader;
mod sections;
mod types;
pub mod values;
mod yaml;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;

pub use discovery::parse_target_groups;
pub use groups::{resolve_groups, GroupDefaults};
pub use types::*;

/// One thing wrong with a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the key, e.g. `jobs.node.targets[1].url`; empty for the file as a whole.
    pub key: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in one config. Display prints one per line:
/// `promrelay.yaml:12: jobs.node.scrape_timeout: "5x" is not a duration (use 10s, 1m30s or seconds)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the config came from (its path, or what the caller passed to [`parse`]).
    pub origin: String,
    /// The problems, in file order where lines are known.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// Formats one problem with the origin and line, as Display does for each.
    pub fn format_problem(origin: &str, problem: &Problem) -> String {
        match problem.line {
            Some(line) => format!("{origin}:{line}: {problem}"),
            None => format!("{origin}: {problem}"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&Self::format_problem(&self.origin, problem))?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates the config file at `path`. Relative file paths inside it (filter modules,
/// certificates, key files, `logfile`) are resolved against the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
        origin: origin.clone(),
        problems: vec![Problem {
            key: String::new(),
            line: None,
            message: format!("cannot read the config file: {error}"),
        }],
    })?;
    let base = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty());
    parse_with_base(&text, &origin, base)
}

/// Parses and validates config text; `origin` names it in messages (e.g. the file name). Relative
/// paths are kept as written.
///
/// ```
/// use promrelay::config;
///
/// let text = "
/// scrape_interval: 60s
/// receiver_stream: { cluster_id: central, urls: nats://127.0.0.1:4222 }
/// push_gateway: { url: http://127.0.0.1:9091 }
/// ";
/// let config = config::parse(text, "example.yaml").expect("a valid config");
/// assert!(config.runs_receiver() && !config.runs_poller());
///
/// let error = config::parse("scrape_interval: 5x\nbogus: 1\n", "example.yaml")
///     .expect_err("two problems");
/// assert_eq!(
///     error.to_string(),
///     "example.yaml:1: scrape_interval: \"5x\" is not a duration (use 10s, 1m30s or seconds)\n\
///      example.yaml:2: bogus: unknown key \"bogus\" at the top level"
/// );
/// ```
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    parse_with_base(text, origin, None)
}

fn parse_with_base(text: &str, origin: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
    let error = |problems: Vec<Problem>| ConfigError {
        origin: origin.to_string(),
        problems,
    };
    let to_problem = |syntax: yaml::SyntaxError| Problem {
        key: syntax.key,
        line: Some(syntax.line),
        message: syntax.message,
    };
    let document =
        yaml::parse(text).map_err(|errors| error(errors.into_iter().map(to_problem).collect()))?;
    let mut problems: Vec<Problem> = document.problems.into_iter().map(to_problem).collect();
    let built = build::build(document.root.as_ref(), base);
    match built {
        Ok(config) if problems.is_empty() => return Ok(config),
        Ok(_) => {}
        Err(more) => problems.extend(more),
    }
    problems.sort_by_key(|problem| problem.line.unwrap_or(usize::MAX));
    Err(error(problems))
}

impl Config {
    /// True when this config runs a poller: `poller_stream` and something to scrape (`jobs`, or
    /// the self job that `monitor_port` adds).
    pub fn runs_poller(&self) -> bool {
        self.poller_stream.is_some() && (!self.jobs.is_empty() || self.monitor_port.is_some())
    }

    /// True when this config runs a receiver: `receiver_stream` and a sink (`push_gateway` or
    /// `remote_write`).
    pub fn runs_receiver(&self) -> bool {
        self.receiver_stream.is_some()
            && (self.push_gateway.is_some() || !self.remote_write.is_empty())
    }

    /// Settings that are parsed and valid but not implemented yet. The daemon refuses to start
    /// with any of them; `check-config` prints them as warnings. Empty since `tls` and
    /// `management` were implemented; kept for settings added before their implementation.
    pub fn unsupported(&self) -> Vec<Problem> {
        Vec::new()
    }

    /// Valid but probably unintended settings, for `check-config` and a log line at start: a
    /// section that has no effect, credentials over plain HTTP, disabled verification.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut warnings = Vec::new();
        let mut warn = |key: &str, message: &str| {
            warnings.push(Problem {
                key: key.to_string(),
                line: None,
                message: message.to_string(),
            })
        };
        if self.poller_stream.is_some() && !self.runs_poller() {
            warn(
                "poller_stream",
                "there are no jobs and no monitor_port: the poller will not run",
            );
        }
        if self.web_config_file.is_some() && self.monitor_port.is_none() {
            warn(
                "web_config_file",
                "there is no monitor_port: the web configuration has no effect",
            );
        }
        if !self.jobs.is_empty() && self.poller_stream.is_none() {
            warn("jobs", "there is no poller_stream: nothing will be scraped");
        }
        if self.receiver_stream.is_some() && !self.runs_receiver() {
            warn(
                "receiver_stream",
                "there is no push_gateway or remote_write: the receiver will not run",
            );
        }
        if self.receiver_stream.is_none()
            && (self.push_gateway.is_some() || !self.remote_write.is_empty())
        {
            warn(
                "push_gateway",
                "there is no receiver_stream: nothing will be pushed",
            );
        }
        if let Some(poller) = self
            .poller_stream
            .as_ref()
            .filter(|poller| poller.domain.is_some() && poller.topic == DEFAULT_TOPIC)
        {
            warn(
                "poller_stream.topic",
                &format!(
                    "the site stream of domain {:?} takes the shared default topic {DEFAULT_TOPIC:?}: \
                     leaf nodes carry each site's messages to every other site, so every site \
                     stream on {DEFAULT_TOPIC}.> also stores the other sites' scrapes and the hub \
                     gets each of them several times; give each site its own topic, e.g. \
                     {DEFAULT_TOPIC}.{}",
                    poller.domain.as_deref().unwrap_or_default(),
                    poller.domain.as_deref().unwrap_or_default()
                ),
            );
        }
        if let (Some(receiver), Some(max_age)) = (&self.receiver_stream, self.max_age) {
            if receiver.retention < max_age {
                warn(
                    "receiver_stream.retention",
                    &format!(
                        "{} is shorter than max_age {}: during a sink outage scrapes can expire \
                         from the stream before they are too old to push",
                        humantime::format_duration(receiver.retention),
                        humantime::format_duration(max_age)
                    ),
                );
            }
        }
        let mut clients: Vec<(String, &HttpClientConfig, Vec<&url::Url>)> = Vec::new();
        for job in &self.jobs {
            let urls = job.targets.iter().map(|target| &target.url).collect();
            clients.push((format!("jobs.{}", job.name), &job.http, urls));
        }
        if let Some(push) = &self.push_gateway {
            clients.push(("push_gateway".to_string(), &push.http, vec![&push.url]));
        }
        for (index, remote) in self.remote_write.iter().enumerate() {
            clients.push((
                format!("remote_write[{index}]"),
                &remote.http,
                vec![&remote.url],
            ));
        }
        for (key, http, urls) in clients {
            let has_credentials = http.basic_auth.is_some() || http.authorization.is_some();
            if has_credentials && urls.iter().any(|url| url.scheme() == "http") {
                warn(&key, "credentials are sent over plain http; use https");
            }
            if http
                .tls
                .as_ref()
                .is_some_and(|tls| tls.insecure_skip_verify)
            {
                warn(
                    &format!("{key}.tls_config.insecure_skip_verify"),
                    "server certificates are not verified",
                );
            }
        }
        if self
            .management
            .as_ref()
            .is_some_and(|management| management.auth.insecure)
        {
            warn(
                "management.auth.insecure",
                "every caller may pause and resume this relay",
            );
        }
        warnings
    }

    /// Every job's name with its targets, for logs: `node (3 targets), choria (2 targets)`.
    pub fn describe_jobs(&self) -> String {
        self.jobs
            .iter()
            .map(|job| format!("{} ({} targets)", job.name, job.targets.len()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
