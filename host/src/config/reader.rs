//! Typed reading of YAML nodes with problem collection: a mapping reader that notices unknown keys,
//! and converters for strings, booleans, integers, durations, byte sizes, URLs and lists. Every
//! converter records a [`Problem`] naming the dotted key and the line, and returns `None`, so
//! validation goes on and reports every problem in one pass.
//!
//! It never decides defaults or meaning: that is `build`'s job.

use std::path::PathBuf;
use std::time::Duration;

use super::values;
use super::yaml::{Kind, Node};
use super::Problem;

/// Collects problems while a config is read.
#[derive(Default)]
pub struct Problems {
    pub list: Vec<Problem>,
}

impl Problems {
    /// Records a problem.
    pub fn add(&mut self, key: &str, line: Option<usize>, message: impl Into<String>) {
        self.list.push(Problem {
            key: key.to_string(),
            line,
            message: message.into(),
        });
    }

    /// Records a problem about a node's value.
    pub fn at(&mut self, key: &str, node: &Node, message: impl Into<String>) {
        self.add(key, Some(node.line), message);
    }

    /// A string from any scalar (a plain `123` or `true` is taken as written).
    pub fn string(&mut self, key: &str, node: &Node) -> Option<String> {
        match node.scalar() {
            Some(text) => Some(text.to_string()),
            None => {
                self.at(
                    key,
                    node,
                    format!("expected a string, found {}", node.describe()),
                );
                None
            }
        }
    }

    /// A non-empty string.
    pub fn nonempty(&mut self, key: &str, node: &Node) -> Option<String> {
        let text = self.string(key, node)?;
        if text.trim().is_empty() {
            self.at(key, node, "must not be empty");
            return None;
        }
        Some(text.trim().to_string())
    }

    /// A path (non-empty string).
    pub fn path(&mut self, key: &str, node: &Node) -> Option<PathBuf> {
        self.nonempty(key, node).map(PathBuf::from)
    }

    /// A boolean: `true`/`false`, also `yes`/`no`/`on`/`off` as the original's YAML library took them.
    pub fn boolean(&mut self, key: &str, node: &Node) -> Option<bool> {
        let text = node.scalar().map(str::to_ascii_lowercase);
        match text.as_deref() {
            Some("true" | "yes" | "on" | "y") => Some(true),
            Some("false" | "no" | "off" | "n") => Some(false),
            _ => {
                self.at(
                    key,
                    node,
                    format!("{} is not a boolean (use true or false)", node.describe()),
                );
                None
            }
        }
    }

    /// An unsigned integer within `min..=max`.
    pub fn integer(&mut self, key: &str, node: &Node, min: u64, max: u64) -> Option<u64> {
        let parsed = node
            .scalar()
            .and_then(|text| text.trim().replace('_', "").parse::<u64>().ok());
        match parsed {
            Some(value) if (min..=max).contains(&value) => Some(value),
            Some(_) => {
                self.at(
                    key,
                    node,
                    format!("{} is out of range ({min} to {max})", node.describe()),
                );
                None
            }
            None => {
                self.at(
                    key,
                    node,
                    format!("{} is not a whole number", node.describe()),
                );
                None
            }
        }
    }

    /// A duration: Go style (`60s`, `1m30s`, `500ms`) or bare seconds.
    pub fn duration(&mut self, key: &str, node: &Node) -> Option<Duration> {
        match node.scalar().and_then(values::parse_duration) {
            Some(duration) => Some(duration),
            None => {
                self.at(
                    key,
                    node,
                    format!(
                        "{} is not a duration (use 10s, 1m30s or seconds)",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    /// A positive duration.
    pub fn positive_duration(&mut self, key: &str, node: &Node) -> Option<Duration> {
        let duration = self.duration(key, node)?;
        if duration.is_zero() {
            self.at(key, node, "must be greater than zero");
            return None;
        }
        Some(duration)
    }

    /// A byte size: `16MiB`, `10MB`, `512KiB` or a number of bytes.
    pub fn bytes(&mut self, key: &str, node: &Node) -> Option<u64> {
        match node.scalar().and_then(values::parse_bytes) {
            Some(bytes) => Some(bytes),
            None => {
                self.at(
                    key,
                    node,
                    format!(
                        "{} is not a size (use 16MiB, 10MB, 512KiB or bytes)",
                        node.describe()
                    ),
                );
                None
            }
        }
    }

    /// An http or https URL with a host.
    pub fn http_url(&mut self, key: &str, node: &Node) -> Option<url::Url> {
        let text = self.nonempty(key, node)?;
        match url::Url::parse(&text) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                self.at(
                    key,
                    node,
                    format!("{text:?}: the scheme must be http or https"),
                );
                None
            }
            Ok(url) if url.host_str().is_none_or(str::is_empty) => {
                self.at(key, node, format!("{text:?} has no host"));
                None
            }
            Ok(url) => Some(url),
            Err(error) => {
                self.at(key, node, format!("{text:?} is not a URL: {error}"));
                None
            }
        }
    }

    /// A list of strings given as a list, or as one string of comma-separated items.
    pub fn string_list(&mut self, key: &str, node: &Node) -> Option<Vec<(String, usize)>> {
        match &node.kind {
            Kind::Scalar { text, .. } => Some(
                text.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| (item.to_string(), node.line))
                    .collect(),
            ),
            Kind::Sequence(items) => {
                let mut list = Vec::new();
                let mut ok = true;
                for (index, item) in items.iter().enumerate() {
                    match self.nonempty(&format!("{key}[{index}]"), item) {
                        Some(text) => list.push((text, item.line)),
                        None => ok = false,
                    }
                }
                ok.then_some(list)
            }
            Kind::Mapping(_) => {
                self.at(
                    key,
                    node,
                    "expected a string or a list of strings, found a mapping",
                );
                None
            }
        }
    }

    /// The items of a sequence.
    pub fn sequence<'a>(&mut self, key: &str, node: &'a Node) -> Option<&'a [Node]> {
        match &node.kind {
            Kind::Sequence(items) => Some(items),
            _ => {
                self.at(
                    key,
                    node,
                    format!("expected a list, found {}", node.describe()),
                );
                None
            }
        }
    }

    /// A reader over a mapping's keys.
    pub fn mapping<'a>(&mut self, key: &str, node: &'a Node) -> Option<Fields<'a>> {
        match &node.kind {
            Kind::Mapping(entries) => Some(Fields {
                path: key.to_string(),
                line: node.line,
                entries,
                used: vec![false; entries.len()],
                asked: Vec::new(),
            }),
            _ => {
                self.at(
                    key,
                    node,
                    format!("expected a mapping, found {}", node.describe()),
                );
                None
            }
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Every key name the reader has asked for on this thread: the docs test checks each is
    /// documented.
    pub static ASKED: std::cell::RefCell<std::collections::BTreeSet<String>> =
        std::cell::RefCell::default();
}

/// Keys match case-insensitively, as the original's YAML-to-JSON decoding did.
fn same_key(key: &Node, name: &str) -> bool {
    super::yaml::count_comparison();
    key.scalar()
        .is_some_and(|key| key.eq_ignore_ascii_case(name))
}

/// The keys of one mapping; each key read is marked, and [`Fields::finish`] reports the rest as
/// unknown.
pub struct Fields<'a> {
    path: String,
    line: usize,
    entries: &'a [(Node, Node)],
    used: Vec<bool>,
    asked: Vec<String>,
}

impl<'a> Fields<'a> {
    /// The dotted path of a key of this mapping.
    pub fn key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    /// The dotted path of this mapping itself.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The line where this mapping starts.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The value of `name`, `None` when absent or null (`key:` with nothing, `~`).
    pub fn take(&mut self, name: &str) -> Option<&'a Node> {
        #[cfg(test)]
        ASKED.with(|asked| asked.borrow_mut().insert(name.to_string()));
        self.asked.push(name.to_string());
        let index = self
            .entries
            .iter()
            .position(|(key, _)| same_key(key, name))?;
        self.used[index] = true;
        let value = &self.entries[index].1;
        (!value.is_null()).then_some(value)
    }

    /// Whether the key is present (even if null).
    pub fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|(key, _)| same_key(key, name))
    }

    /// The line of a present key.
    pub fn key_line(&self, name: &str) -> Option<usize> {
        self.entries
            .iter()
            .find(|(key, _)| same_key(key, name))
            .map(|(key, _)| key.line)
    }

    /// Reports a required key that is absent.
    pub fn missing(&self, problems: &mut Problems, name: &str, hint: &str) {
        let line = self.key_line(name).unwrap_or(self.line);
        let message = if hint.is_empty() {
            "is required".to_string()
        } else {
            format!("is required ({hint})")
        };
        problems.add(&self.key(name), Some(line), message);
    }

    /// All entries, for mappings whose keys are names (jobs); marks them all read.
    pub fn all(&mut self) -> &'a [(Node, Node)] {
        self.used.iter_mut().for_each(|used| *used = true);
        self.entries
    }

    /// Reports every key not read as unknown, suggesting the nearest key that was asked for.
    ///
    /// Cost: linear in the number of keys; each unread key is compared with the keys read (at
    /// most the names asked for, a few dozen), never with every other key.
    pub fn finish(self, problems: &mut Problems) {
        let read: Vec<&Node> = self
            .entries
            .iter()
            .zip(&self.used)
            .filter(|(_, used)| **used)
            .map(|((key, _), _)| key)
            .collect();
        // `all()` marks every key read: nothing to report, and `read` is not small then.
        if read.len() == self.entries.len() {
            return;
        }
        // A name asked twice (a required key is taken, then read) is one candidate.
        let mut asked: Vec<&String> = self.asked.iter().collect();
        asked.sort_unstable();
        asked.dedup();
        for ((key, _), used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let name = key.scalar().unwrap_or("?");
            if let Some(first) = read.iter().find(|other| same_key(other, name)) {
                problems.add(
                    &self.key(name),
                    Some(key.line),
                    format!(
                        "duplicate key: {name:?} is the same key as {:?} on line {} (keys are \
                         case-insensitive)",
                        first.scalar().unwrap_or("?"),
                        first.line
                    ),
                );
                continue;
            }
            let within = 2.max(name.len() / 4);
            let suggestion = asked
                .iter()
                .filter_map(|candidate| {
                    values::edit_distance_within(name, candidate, within)
                        .map(|distance| (distance, candidate))
                })
                .min()
                .map(|(_, candidate)| format!("; did you mean {candidate}?"))
                .unwrap_or_default();
            let where_ = if self.path.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in {}", self.path)
            };
            problems.add(
                &self.key(name),
                Some(key.line),
                format!("unknown key {name:?} {where_}{suggestion}"),
            );
        }
    }
}
