//! A job's Prometheus-style target sections: `static_configs` (target groups in the config)
//! and `file_sd_configs` (patterns of files of target groups, read at run time by the
//! `discovery` module), and the reading of such a file's text.
//!
//! **Invariant:** no file is opened here; a file_sd file's text is handed in by its reader.

use std::path::{Path, PathBuf};

use super::build::Builder;
use super::groups;
use super::reader::Problems;
use super::types::{FileSdConfig, TargetGroup, DEFAULT_SD_REFRESH};
use super::yaml::Node;
use super::{ConfigError, Problem};

/// `static_configs`: a list of target groups.
pub(super) fn static_configs(cx: &mut Builder<'_>, key: &str, node: &Node) -> Vec<TargetGroup> {
    let Some(items) = cx.problems.sequence(key, node) else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(index, item)| {
            groups::read(&mut cx.problems, &format!("{key}[{index}]"), item)
        })
        .collect()
}

/// `file_sd_configs`: a list of `{files: [PATTERN…], refresh_interval}`.
pub(super) fn file_sd_configs(cx: &mut Builder<'_>, key: &str, node: &Node) -> Vec<FileSdConfig> {
    let Some(items) = cx.problems.sequence(key, node) else {
        return Vec::new();
    };
    let mut configs = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let key = format!("{key}[{index}]");
        let Some(mut fields) = cx.problems.mapping(&key, item) else {
            continue;
        };
        let files = cx.required(
            &mut fields,
            "files",
            "a list of file patterns such as targets/*.json",
            |problems, key, node| problems.string_list(key, node),
        );
        let refresh_interval = cx
            .read(&mut fields, "refresh_interval", Problems::positive_duration)
            .unwrap_or(DEFAULT_SD_REFRESH);
        let files_key = fields.key("files");
        fields.finish(&mut cx.problems);
        let Some(files) = files else { continue };
        if files.is_empty() {
            cx.problems.add(
                &files_key,
                Some(item.line),
                "needs at least one file pattern",
            );
            continue;
        }
        let mut patterns = Vec::new();
        for (position, (pattern, line)) in files.into_iter().enumerate() {
            match check_pattern(&pattern) {
                Ok(()) => patterns.push(cx.resolve(PathBuf::from(pattern))),
                Err(reason) => {
                    cx.problems
                        .add(&format!("{files_key}[{position}]"), Some(line), reason)
                }
            }
        }
        configs.push(FileSdConfig {
            files: patterns,
            refresh_interval,
        });
    }
    configs
}

/// Prometheus' rule for file_sd patterns: wildcards (`*`, `?`) only in the last part of the
/// path, which ends in `.json`, `.yml` or `.yaml`.
fn check_pattern(pattern: &str) -> Result<(), String> {
    let path = Path::new(pattern);
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default();
    let directory = path.parent().map(|p| p.to_string_lossy().into_owned());
    if directory.is_some_and(|directory| directory.contains(['*', '?'])) {
        return Err(format!(
            "{pattern:?}: wildcards are allowed only in the file name, not in directories"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if ![".json", ".yml", ".yaml"]
        .iter()
        .any(|extension| lower.ends_with(extension))
    {
        return Err(format!(
            "{pattern:?}: file_sd files must end in .json, .yml or .yaml (as in Prometheus)"
        ));
    }
    Ok(())
}

/// Reads a file_sd file's text (JSON or YAML; JSON is read as the YAML it also is): a list of
/// target groups. `origin` names the file in the problems, which carry their lines.
///
/// ```
/// use promrelay::config::parse_target_groups;
///
/// let text = r#"[{"targets": ["127.0.0.1:9100"], "labels": {"dc": "fra1"}}]"#;
/// let groups = parse_target_groups(text, "node.json").expect("a valid file");
/// assert_eq!(groups[0].targets[0].0, "127.0.0.1:9100");
///
/// let error = parse_target_groups("- targets: 127.0.0.1:9100\n", "node.yml")
///     .expect_err("targets is a list");
/// assert_eq!(
///     error.to_string(),
///     "node.yml:1: [0].targets: expected a list, found \"127.0.0.1:9100\""
/// );
/// ```
pub fn parse_target_groups(text: &str, origin: &str) -> Result<Vec<TargetGroup>, ConfigError> {
    let error = |problems: Vec<Problem>| ConfigError {
        origin: origin.to_string(),
        problems,
    };
    let to_problem = |syntax: super::yaml::SyntaxError| Problem {
        key: syntax.key,
        line: Some(syntax.line),
        message: syntax.message,
    };
    let document = super::yaml::parse(text)
        .map_err(|errors| error(errors.into_iter().map(to_problem).collect()))?;
    let mut problems = Problems {
        list: document.problems.into_iter().map(to_problem).collect(),
    };
    // An empty file is an empty list, as Prometheus reads it.
    let Some(root) = document.root else {
        return if problems.list.is_empty() {
            Ok(Vec::new())
        } else {
            Err(error(problems.list))
        };
    };
    let mut groups = Vec::new();
    if root.is_null() {
        return Ok(groups);
    }
    if let Some(items) = problems.sequence("", &root) {
        for (index, item) in items.iter().enumerate() {
            if let Some(group) = groups::read(&mut problems, &format!("[{index}]"), item) {
                groups.push(group);
            }
        }
    }
    if problems.list.is_empty() {
        Ok(groups)
    } else {
        problems
            .list
            .sort_by_key(|problem| problem.line.unwrap_or(usize::MAX));
        Err(error(problems.list))
    }
}
