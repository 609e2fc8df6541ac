//! The `jobs` section: each job's settings (inherited from the top level), its targets (the
//! original `targets` list, `static_configs`, `file_sd_configs`) and their checks.

use std::collections::HashMap;
use std::time::Duration;

use super::build::{positive_bytes, Builder};
use super::groups::{resolve_groups, GroupDefaults};
use super::reader::Problems;
use super::types::*;
use super::values;
use super::yaml::Node;

/// What a job inherits from the top level.
pub(super) struct JobDefaults {
    pub(super) interval: Duration,
    pub(super) timeout: Option<Duration>,
    pub(super) body_limit: u64,
}

pub(super) fn jobs(
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
