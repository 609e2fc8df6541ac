//! Turns the YAML tree into the typed [`Config`]: reads every key, applies defaults and
//! inheritance, and checks values and their combinations, collecting every problem. The sections
//! shared by several places (HTTP client settings, TLS, filters, management) are in `sections`.
//!
//! It must never return a half-valid config: one problem anywhere and the result is `Err`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::endpoints;
use super::groups::{resolve_groups, GroupDefaults};
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

fn positive_bytes(problems: &mut Problems, key: &str, node: &Node) -> Option<u64> {
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

/// What a job inherits from the top level.
struct JobDefaults {
    interval: Duration,
    timeout: Option<Duration>,
    body_limit: u64,
}

fn jobs(
    cx: &mut Builder<'_>,
    node: &Node,
    defaults: &JobDefaults,
    global_filters: &[FilterConfig],
    self_job: bool,
) -> Vec<JobConfig> {
    let Some(mut fields) = cx.problems.mapping("jobs", node) else {
        return Vec::new();
    };
    let mut jobs = Vec::new();
    for (name_node, value) in fields.all() {
        let Some(name) = cx.problems.nonempty("jobs", name_node) else {
            continue;
        };
        let key = format!("jobs.{name}");
        if let Err(reason) = values::check_name(&name) {
            cx.problems
                .at(&key, name_node, format!("job name {reason}"));
        }
        if self_job && name == SELF_JOB {
            cx.problems.at(
                &key,
                name_node,
                format!(
                    "the job name {SELF_JOB:?} is reserved for promrelay's own metrics when \
                     monitor_port is set"
                ),
            );
        }
        if value.is_null() {
            cx.problems.at(
                &key,
                name_node,
                "a job needs targets (a list of {name, url})",
            );
            continue;
        }
        if let Some(job) = job(cx, &key, name, value, defaults, global_filters) {
            jobs.push(job);
        }
    }
    fields.finish(&mut cx.problems);
    jobs
}

fn job(
    cx: &mut Builder<'_>,
    key: &str,
    name: String,
    node: &Node,
    defaults: &JobDefaults,
    global_filters: &[FilterConfig],
) -> Option<JobConfig> {
    let mut fields = cx.problems.mapping(key, node)?;
    let interval = cx.read(&mut fields, "scrape_interval", Problems::positive_duration);
    let scrape_interval = interval.unwrap_or(defaults.interval);
    let timeout_node = fields.take("scrape_timeout");
    let timeout = cx.read(&mut fields, "scrape_timeout", Problems::positive_duration);
    let scrape_timeout = match (timeout, timeout_node) {
        (Some(timeout), Some(node)) if timeout > scrape_interval => {
            cx.problems.at(
                &fields.key("scrape_timeout"),
                node,
                format!(
                    "{} is longer than the job's scrape_interval {}",
                    humantime::format_duration(timeout),
                    humantime::format_duration(scrape_interval)
                ),
            );
            scrape_interval
        }
        (Some(timeout), _) => timeout,
        (None, _) => defaults
            .timeout
            .unwrap_or(DEFAULT_SCRAPE_TIMEOUT)
            .min(scrape_interval),
    };
    let scrape_body_limit = cx
        .read(&mut fields, "scrape_body_limit", positive_bytes)
        .unwrap_or(defaults.body_limit);
    let label_limit = cx
        .read(&mut fields, "label_limit", |p, k, n| {
            p.integer(k, n, MIN_LABEL_LIMIT as u64, MAX_LABEL_LIMIT as u64)
        })
        .map_or(crate::model::DEFAULT_LABEL_LIMIT, |limit| limit as usize);
    let scheme = cx
        .read(&mut fields, "scheme", |problems, key, node| {
            match node.scalar().map(str::to_ascii_lowercase).as_deref() {
                Some(scheme @ ("http" | "https")) => Some(scheme.to_string()),
                _ => {
                    problems.at(
                        key,
                        node,
                        format!("{} is not a scheme (use http or https)", node.describe()),
                    );
                    None
                }
            }
        })
        .unwrap_or_else(|| "http".to_string());
    let metrics_path = cx
        .read(&mut fields, "metrics_path", Problems::nonempty)
        .unwrap_or_else(|| DEFAULT_METRICS_PATH.to_string());
    let others = fields.has("static_configs") || fields.has("file_sd_configs");
    let mut targets = match fields.take("targets") {
        Some(node) => targets(cx, &fields.key("targets"), node, !others),
        None => Vec::new(),
    };
    let static_key = fields.key("static_configs");
    let static_groups = fields
        .take("static_configs")
        .map(|node| super::discovery::static_configs(cx, &static_key, node))
        .unwrap_or_default();
    let file_sd = fields
        .take("file_sd_configs")
        .map(|node| super::discovery::file_sd_configs(cx, &fields.key("file_sd_configs"), node))
        .unwrap_or_default();
    let defaults = GroupDefaults {
        scheme: &scheme,
        metrics_path: &metrics_path,
    };
    match resolve_groups(&static_groups, defaults, &static_key) {
        Ok(resolved) => add_unique(cx, &mut targets, resolved, &static_key),
        Err(problems) => cx.problems.list.extend(problems),
    }
    if !fields.has("targets") && !others {
        fields.missing(
            &mut cx.problems,
            "targets",
            "a list of {name, url}, or static_configs or file_sd_configs",
        );
    }
    let filters = match fields.take("filters") {
        Some(node) => {
            let filters = super::sections::filters(cx, &fields.key("filters"), node);
            for filter in &filters {
                if global_filters
                    .iter()
                    .any(|global| global.name == filter.name)
                {
                    cx.problems.add(
                        &fields.key("filters"),
                        Some(node.line),
                        format!(
                            "filter name {:?} is already used by the global chain; names must be \
                             unique within a job's whole chain",
                            filter.name
                        ),
                    );
                }
            }
            filters
        }
        None => Vec::new(),
    };
    let http = super::sections::http_client(cx, &mut fields);
    fields.finish(&mut cx.problems);
    Some(JobConfig {
        name,
        scrape_interval,
        scrape_timeout,
        scrape_body_limit,
        label_limit,
        targets,
        scheme,
        metrics_path,
        file_sd,
        filters,
        http,
    })
}

/// Appends the `static_configs` targets to the job's, refusing an instance used twice (the
/// job's targets are already unique among themselves).
fn add_unique(cx: &mut Builder<'_>, targets: &mut Vec<Target>, more: Vec<Target>, key: &str) {
    let mut instances: HashMap<String, ()> = targets
        .iter()
        .map(|target| (target.name.clone(), ()))
        .collect();
    for target in more {
        if instances.insert(target.name.clone(), ()).is_some() {
            cx.problems.add(
                key,
                None,
                format!(
                    "instance {:?} is already a target of this job; give each target a \
                     distinct address or instance label",
                    target.name
                ),
            );
            continue;
        }
        targets.push(target);
    }
}

/// The original's `targets`; `required`: the job has no other target section, so the list
/// must not be empty.
fn targets(cx: &mut Builder<'_>, key: &str, node: &Node, required: bool) -> Vec<Target> {
    let Some(items) = cx.problems.sequence(key, node) else {
        return Vec::new();
    };
    if items.is_empty() && required {
        cx.problems.at(key, node, "a job needs at least one target");
    }
    let mut targets: Vec<Target> = Vec::new();
    // Instance → index of the item that named it first: a job may have tens of thousands of
    // targets, so no scan per target.
    let mut instances: HashMap<String, usize> = HashMap::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let key = format!("{key}[{index}]");
        let target = if item.scalar().is_some() {
            // A bare URL is accepted as a target without a name.
            cx.problems
                .http_url(&key, item)
                .and_then(|url| target_from(cx, &key, item, None, url))
        } else {
            let Some(mut fields) = cx.problems.mapping(&key, item) else {
                continue;
            };
            let name = cx.read(&mut fields, "name", Problems::nonempty);
            let url = cx.required(
                &mut fields,
                "url",
                "for example http://127.0.0.1:9100/metrics",
                Problems::http_url,
            );
            fields.finish(&mut cx.problems);
            url.and_then(|url| target_from(cx, &key, item, name, url))
        };
        let Some(target) = target else { continue };
        if let Some(&first) = instances.get(&target.name) {
            cx.problems.at(
                &key,
                item,
                format!(
                    "instance {:?} is already used by target [{first}]; give each target a \
                     distinct name",
                    target.name
                ),
            );
            continue;
        }
        instances.insert(target.name.clone(), index);
        targets.push(target);
    }
    targets
}

fn target_from(
    cx: &mut Builder<'_>,
    key: &str,
    node: &Node,
    name: Option<String>,
    url: url::Url,
) -> Option<Target> {
    let name = match name {
        Some(name) => name,
        None => {
            let Some(instance) = Target::default_instance(&url) else {
                cx.problems
                    .at(key, node, "the URL has no port and no default port");
                return None;
            };
            instance
        }
    };
    Some(Target {
        name,
        url,
        labels: Vec::new(),
    })
}
