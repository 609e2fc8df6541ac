//! Prometheus target groups (`{targets: [host:port…], labels: {…}}`), as `static_configs`
//! and file_sd files hold them: reading a group from the YAML tree, and turning a group into
//! scrape [`Target`]s the way Prometheus does without `relabel_configs`.
//!
//! Prometheus' rules kept here: each address becomes `__address__`; `__scheme__`,
//! `__metrics_path__` and `__param_<name>` labels override the job's `scheme`, `metrics_path`
//! and add query parameters; an address without a port gets the scheme's (80, 443); the
//! `instance` label defaults to the address; labels starting with `__` are not target labels;
//! a label with an empty value is no label. One difference: a `job` label is refused, because
//! the job's name routes the scrape (subject, headers, Pushgateway group).
//!
//! Pure functions over text and trees: no file is read here (`discovery` reads the files).

use std::collections::BTreeMap;

use super::reader::Problems;
use super::types::{Target, TargetGroup};
use super::yaml::{Kind, Node};
use super::Problem;
use crate::model::Label;

/// The group at `node`: a mapping with `targets` (a list of addresses) and `labels` (names to
/// strings), both optional. Problems are recorded under `key`.
pub(super) fn read(problems: &mut Problems, key: &str, node: &Node) -> Option<TargetGroup> {
    let mut fields = problems.mapping(key, node)?;
    let mut group = TargetGroup {
        line: node.line,
        ..TargetGroup::default()
    };
    let mut ok = true;
    if let Some(targets) = fields.take("targets") {
        let key = fields.key("targets");
        match problems.sequence(&key, targets) {
            Some(items) => {
                for (index, item) in items.iter().enumerate() {
                    let item_key = format!("{key}[{index}]");
                    match item.kind {
                        Kind::Scalar { .. } => match problems.nonempty(&item_key, item) {
                            Some(address) => group.targets.push((address, item.line)),
                            None => ok = false,
                        },
                        _ => {
                            problems.at(
                                &item_key,
                                item,
                                format!(
                                    "expected an address like \"127.0.0.1:9100\", found {}",
                                    item.describe()
                                ),
                            );
                            ok = false;
                        }
                    }
                }
            }
            None => ok = false,
        }
    }
    if let Some(labels) = fields.take("labels") {
        let key = fields.key("labels");
        match problems.mapping(&key, labels) {
            Some(mut entries) => {
                for (name_node, value) in entries.all() {
                    let name = name_node.scalar().unwrap_or_default().to_string();
                    let label_key = format!("{key}.{name}");
                    if let Err(reason) = check_label_name(&name) {
                        problems.at(&label_key, name_node, reason);
                        ok = false;
                        continue;
                    }
                    if name == "job" {
                        problems.at(
                            &label_key,
                            name_node,
                            "the job label is the job's name (it routes the scrape): move these \
                             targets to a job of that name instead",
                        );
                        ok = false;
                        continue;
                    }
                    let text = if value.is_null() {
                        Some(String::new())
                    } else if value.scalar().is_some() {
                        problems.string(&label_key, value)
                    } else {
                        problems.at(
                            &label_key,
                            value,
                            format!("a label value is a string, found {}", value.describe()),
                        );
                        None
                    };
                    match text {
                        Some(text) => {
                            group.labels.insert(name, text);
                        }
                        None => ok = false,
                    }
                }
            }
            None => ok = false,
        }
    }
    fields.finish(problems);
    ok.then_some(group)
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(super) fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a label name (letters, digits and _, not starting with a digit)"
        ))
    }
}

/// The job's settings a group's targets default to.
#[derive(Debug, Clone, Copy)]
pub struct GroupDefaults<'a> {
    /// The job's `scheme`.
    pub scheme: &'a str,
    /// The job's `metrics_path`.
    pub metrics_path: &'a str,
}

/// The targets of `groups`, in order. Every bad address or label is a problem, keyed under
/// `key` (`jobs.node.static_configs`, or empty for a file): `key[group].targets[index]`.
///
/// ```
/// use promrelay::config::{resolve_groups, GroupDefaults, TargetGroup};
///
/// let group = TargetGroup {
///     targets: vec![("10.0.0.1".into(), 2)],
///     labels: [("__scheme__", "https"), ("__param_module", "if_mib"), ("dc", "fra1")]
///         .into_iter()
///         .map(|(name, value)| (name.to_string(), value.to_string()))
///         .collect(),
///     line: 1,
/// };
/// let defaults = GroupDefaults { scheme: "http", metrics_path: "/snmp" };
/// let targets = resolve_groups(&[group], defaults, "").expect("a valid group");
/// assert_eq!(targets[0].name, "10.0.0.1:443");
/// assert_eq!(targets[0].url.as_str(), "https://10.0.0.1/snmp?module=if_mib");
/// assert_eq!(targets[0].labels.len(), 1); // dc="fra1": `__` labels are not target labels
/// ```
pub fn resolve_groups(
    groups: &[TargetGroup],
    defaults: GroupDefaults<'_>,
    key: &str,
) -> Result<Vec<Target>, Vec<Problem>> {
    let mut targets = Vec::new();
    let mut problems = Vec::new();
    for (group_index, group) in groups.iter().enumerate() {
        for (index, (address, line)) in group.targets.iter().enumerate() {
            match resolve(address, &group.labels, defaults) {
                Ok(target) => targets.push(target),
                Err(message) => problems.push(Problem {
                    key: format!("{key}[{group_index}].targets[{index}]"),
                    line: Some(*line),
                    message,
                }),
            }
        }
    }
    if problems.is_empty() {
        Ok(targets)
    } else {
        Err(problems)
    }
}

/// One address of a group with the group's labels, as Prometheus' target labelling makes it.
fn resolve(
    address: &str,
    labels: &BTreeMap<String, String>,
    defaults: GroupDefaults<'_>,
) -> Result<Target, String> {
    let label = |name: &str| {
        labels
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let scheme = label("__scheme__").unwrap_or(defaults.scheme);
    if !matches!(scheme, "http" | "https") {
        return Err(format!(
            "__scheme__ {scheme:?} is not a scheme promrelay scrapes (use http or https)"
        ));
    }
    let path = label("__metrics_path__").unwrap_or(defaults.metrics_path);
    let address = address.trim();
    if address.is_empty()
        || address.contains(['/', '?', '#', '@'])
        || address.contains(char::is_whitespace)
    {
        return Err(format!(
            "{address:?} is not a host:port address (write the scheme and the path as \
             __scheme__ and __metrics_path__ labels, or as the job's scheme and metrics_path)"
        ));
    }
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let mut url = url::Url::parse(&format!("{scheme}://{address}{path}"))
        .map_err(|error| format!("{address:?} with path {path:?} is not a URL: {error}"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{address:?} has no host"));
    }
    let params: Vec<(&str, &str)> = labels
        .iter()
        .filter_map(|(name, value)| Some((name.strip_prefix("__param_")?, value.as_str())))
        .filter(|(name, _)| !name.is_empty())
        .collect();
    if !params.is_empty() {
        url.query_pairs_mut().extend_pairs(params);
    }
    // The address with the scheme's port when it has none, as Prometheus 2.x does.
    let address = if has_port(address) {
        address.to_string()
    } else {
        let port = if scheme == "https" { 443 } else { 80 };
        format!("{address}:{port}")
    };
    let name = label("instance").map_or(address, str::to_string);
    let labels = labels
        .iter()
        .filter(|(name, value)| !name.starts_with("__") && *name != "instance" && !value.is_empty())
        .map(|(name, value)| Label::new(name.as_str(), value.as_str()))
        .collect();
    Ok(Target { name, url, labels })
}

/// Whether `host:port` (or `[v6]:port`) ends in a port, as Go's `net.SplitHostPort` sees it.
fn has_port(address: &str) -> bool {
    address.rsplit_once(':').is_some_and(|(host, port)| {
        !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')))
    })
}
