//! Turns the YAML tree into the typed [`Config`]: reads every key, applies defaults and
//! inheritance, and checks values and their combinations, collecting every problem. The sections
//! shared by several places (HTTP client settings, TLS, filters, management) are in `sections`.
//!
//! It must never return a half-valid config: one problem anywhere and the result is `Err`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::endpoints;
use super::jobs::{jobs, JobDefaults};
use super::reader::{Fields, Problems};
use super::types::*;
use super::values;
use super::yaml::Node;
use super::Problem;

/// Reading state: the problems so far and the directory relative paths are resolved against.
pub(super) struct Builder<'b> {
    pub problems: Problems,
    base: Option<&'b Path>,
}

impl<'b> Builder<'b> {
    pub fn new(base: Option<&'b Path>) -> Self {
        Builder {
            problems: Problems::default(),
            base,
        }
    }

    /// Reads key `name` of `fields` with `convert`, `None` when absent or invalid.
    pub fn read<'a, T>(
        &mut self,
        fields: &mut Fields<'a>,
        name: &str,
        convert: impl FnOnce(&mut Problems, &str, &'a Node) -> Option<T>,
    ) -> Option<T> {
        let node = fields.take(name)?;
        let key = fields.key(name);
        convert(&mut self.problems, &key, node)
    }

    /// Reads a file path, resolved against the config file's directory when relative.
    pub fn path(&mut self, fields: &mut Fields<'_>, name: &str) -> Option<PathBuf> {
        let path = self.read(fields, name, Problems::path)?;
        Some(self.resolve(path))
    }

    /// A path resolved against the config file's directory when relative.
    pub fn resolve(&self, path: PathBuf) -> PathBuf {
        match self.base {
            Some(base) if path.is_relative() => base.join(path),
            _ => path,
        }
    }

    /// Reads a required key; reports it missing with `hint`.
    pub fn required<'a, T>(
        &mut self,
        fields: &mut Fields<'a>,
        name: &str,
        hint: &str,
        convert: impl FnOnce(&mut Problems, &str, &'a Node) -> Option<T>,
    ) -> Option<T> {
        if fields.take(name).is_none() {
            fields.missing(&mut self.problems, name, hint);
            return None;
        }
        self.read(fields, name, convert)
    }
}

/// Builds and validates the whole config from the document's root (`None`: empty file).
pub(super) fn build(root: Option<&Node>, base: Option<&Path>) -> Result<Config, Vec<Problem>> {
    let empty = Node {
        line: 1,
        kind: super::yaml::Kind::Mapping(Vec::new()),
    };
    let root = root.unwrap_or(&empty);
    let mut cx = Builder::new(base);
    let Some(mut top) = cx.problems.mapping("", root) else {
        return Err(cx.problems.list);
    };

    let verbose = cx.read(&mut top, "verbose", Problems::boolean);
    let debug = cx.read(&mut top, "debug", Problems::boolean);
    let level = match (debug, verbose) {
        (Some(true), _) => LogLevel::Debug,
        (_, Some(true)) => LogLevel::Info,
        _ => LogLevel::Warn,
    };
    let log = LogConfig {
        level,
        file: cx.path(&mut top, "logfile"),
    };

    let identity = match top.take("identity") {
        Some(node) => cx
            .problems
            .nonempty("identity", node)
            .filter(|identity| match values::check_name(identity) {
                Ok(()) => true,
                Err(reason) => {
                    cx.problems.at("identity", node, reason);
                    false
                }
            })
            .unwrap_or_default(),
        None => default_identity(),
    };

    let scrape_interval = cx.required(
        &mut top,
        "scrape_interval",
        "for example 60s; the original required it even for a receiver",
        Problems::positive_duration,
    );
    let explicit_timeout = top.take("scrape_timeout").and_then(|node| {
        let duration = cx.problems.positive_duration("scrape_timeout", node)?;
        Some((duration, node.line))
    });
    let interval = scrape_interval.unwrap_or(Duration::from_secs(60));
    let scrape_timeout = match explicit_timeout {
        Some((timeout, line)) if timeout > interval && scrape_interval.is_some() => {
            cx.problems.add(
                "scrape_timeout",
                Some(line),
                format!(
                    "{} is longer than scrape_interval {}",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
            );
            interval
        }
        Some((timeout, _)) => timeout,
        None => DEFAULT_SCRAPE_TIMEOUT.min(interval),
    };
    let scrape_body_limit = cx
        .read(&mut top, "scrape_body_limit", positive_bytes)
        .unwrap_or(DEFAULT_SCRAPE_BODY_LIMIT);
    let max_age = cx
        .read(&mut top, "max_age", Problems::duration)
        .filter(|age| !age.is_zero());
    let monitor_port = cx
        .read(&mut top, "monitor_port", |p, k, n| {
            p.integer(k, n, 0, 65535)
        })
        .and_then(|port| u16::try_from(port).ok())
        .filter(|port| *port != 0);
    let monitor_address = cx
        .read(&mut top, "monitor_address", |p, k, n| {
            let text = p.nonempty(k, n)?;
            match text.parse::<std::net::IpAddr>() {
                Ok(address) => Some(address),
                Err(_) => {
                    p.at(
                        k,
                        n,
                        format!("{text:?} is not an IP address (e.g. 0.0.0.0 or 127.0.0.1)"),
                    );
                    None
                }
            }
        })
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let web_config_file = cx.path(&mut top, "web_config_file");
    let outage_buffer = cx
        .read(&mut top, "outage_buffer", positive_bytes)
        .unwrap_or(DEFAULT_OUTAGE_BUFFER);
    let spool = spool(&mut cx, &mut top);

    let tls = top
        .take("tls")
        .and_then(|node| super::sections::tls(&mut cx, "tls", node, &identity));
    let poller_stream = top.take("poller_stream").and_then(|node| {
        endpoints::stream(&mut cx, "poller_stream", node, &identity, tls.as_ref())
    });
    let receiver_stream = top.take("receiver_stream").and_then(|node| {
        endpoints::stream(&mut cx, "receiver_stream", node, &identity, tls.as_ref())
    });
    let push_gateway = top
        .take("push_gateway")
        .and_then(|node| endpoints::push_gateway(&mut cx, node));
    let remote_write = top
        .take("remote_write")
        .map(|node| endpoints::remote_write(&mut cx, node))
        .unwrap_or_default();
    let filters = top
        .take("filters")
        .map(|node| super::sections::filters(&mut cx, "filters", node))
        .unwrap_or_default();
    let defaults = JobDefaults {
        interval,
        timeout: explicit_timeout.map(|(timeout, _)| timeout),
        body_limit: scrape_body_limit,
    };
    let jobs = top
        .take("jobs")
        .map(|node| {
            let self_job = monitor_port.is_some() && poller_stream.is_some();
            jobs(&mut cx, node, &defaults, &filters, self_job)
        })
        .unwrap_or_default();
    let management = top
        .take("management")
        .and_then(|node| super::sections::management(&mut cx, node, &identity, tls.as_ref()));
    let root_line = top.line();
    let receiver_line = top.key_line("receiver_stream");
    top.finish(&mut cx.problems);

    let config = Config {
        log,
        identity,
        scrape_interval: interval,
        scrape_timeout,
        scrape_body_limit,
        max_age,
        monitor_port,
        monitor_address,
        web_config_file,
        poller_stream,
        receiver_stream,
        push_gateway,
        remote_write,
        jobs,
        filters,
        outage_buffer,
        spool,
        tls,
        management,
    };
    check_combinations(&config, &mut cx.problems, root_line, receiver_line);
    if cx.problems.list.is_empty() {
        Ok(config)
    } else {
        Err(cx.problems.list)
    }
}

/// The host name, as the original defaulted it.
fn default_identity() -> String {
    hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// `spool_dir`, `spool_sync` and `spool_sync_interval`.
/// A relative `spool_dir` is resolved against the config file's directory, like every path.
fn spool(cx: &mut Builder<'_>, top: &mut Fields<'_>) -> Option<SpoolConfig> {
    let dir = cx.path(top, "spool_dir");
    let interval = cx
        .read(top, "spool_sync_interval", Problems::positive_duration)
        .unwrap_or(DEFAULT_SPOOL_SYNC_INTERVAL);
    let sync = cx
        .read(top, "spool_sync", |p, k, n| {
            let text = p.nonempty(k, n)?;
            match text.as_str() {
                "always" => Some(SpoolSync::Always),
                "interval" => Some(SpoolSync::Interval(interval)),
                "never" => Some(SpoolSync::Never),
                other => {
                    p.at(
                        k,
                        n,
                        format!("{other:?} is not one of always, interval, never"),
                    );
                    None
                }
            }
        })
        .unwrap_or(SpoolSync::Interval(interval));
    dir.map(|dir| SpoolConfig { dir, sync })
}

pub(super) fn positive_bytes(problems: &mut Problems, key: &str, node: &Node) -> Option<u64> {
    let bytes = problems.bytes(key, node)?;
    if bytes == 0 {
        problems.at(key, node, "must be greater than zero");
        return None;
    }
    Some(bytes)
}

/// Checks that need several sections at once.
fn check_combinations(
    config: &Config,
    problems: &mut Problems,
    root_line: usize,
    receiver_line: Option<usize>,
) {
    // Only when everything else is valid: an invalid section is missing from `config`.
    if problems.list.is_empty() && !config.runs_poller() && !config.runs_receiver() {
        problems.add(
            "",
            Some(root_line),
            "this config runs nothing: a poller needs poller_stream and jobs (or monitor_port), \
             a receiver needs receiver_stream and push_gateway or remote_write",
        );
    }
    if let (Some(poller), Some(receiver)) = (&config.poller_stream, &config.receiver_stream) {
        if !receiver.sources.is_empty() && poller.stream == receiver.stream {
            problems.add(
                "receiver_stream.cluster_id",
                receiver_line,
                format!(
                    "the hub stream {:?} (receiver_stream with sources) has the name of this \
                     poller's site stream (poller_stream.cluster_id): the hub stream has no \
                     subjects and only copies site streams, so give it a name of its own \
                     (for example PROM_ALL)",
                    receiver.stream
                ),
            );
        } else if poller.stream == receiver.stream && poller.domain != receiver.domain {
            problems.add(
                "receiver_stream.cluster_id",
                receiver_line,
                format!(
                    "poller_stream and receiver_stream both name the stream {:?} but in different \
                     JetStream domains ({} and {}): these are two streams, and the receiver's would \
                     only see the poller's messages while the leaf link is up. To carry a site \
                     stream to the hub, give the hub stream its own name and list the site stream \
                     in receiver_stream.sources",
                    receiver.stream,
                    poller.domain.as_deref().unwrap_or("the poller server's own"),
                    receiver.domain.as_deref().unwrap_or("the receiver server's own")
                ),
            );
        }
        let same_servers = poller.urls.iter().any(|url| receiver.urls.contains(url));
        if same_servers && poller.stream == receiver.stream {
            let mut differences = Vec::new();
            if poller.retention != receiver.retention {
                differences.push("retention");
            }
            if poller.storage != receiver.storage {
                differences.push("storage");
            }
            if poller.replicas != receiver.replicas {
                differences.push("replicas");
            }
            if !differences.is_empty() {
                problems.add(
                    "receiver_stream",
                    receiver_line,
                    format!(
                        "poller_stream and receiver_stream name the same stream {:?} on the same \
                         servers but differ in {}",
                        poller.stream,
                        differences.join(", ")
                    ),
                );
            }
        }
    }
}
