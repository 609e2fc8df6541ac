//! Applies compiled relabel rules to one series' label set, with Prometheus' semantics
//! (`relabel.ProcessBuilder`): rules in order, the first that drops ends processing.
//!
//! Hot path: [`Relabeler::process`] runs once per series. Labels borrow the batch's strings
//! (`Cow::Borrowed`); a string is allocated only when a rule actually changes a label, and the
//! scratch buffers are reused across series. This module must never know the batch layout.

use crate::config::{Action, Rule};
use crate::text::{self, is_label_name, push_lower, push_upper};
use md5::{Digest, Md5};
use regex::CaptureLocations;
use std::borrow::Cow;
use std::fmt::Write as _;

/// One label: name and value, either borrowed from the input or owned after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label<'a> {
    pub name: Cow<'a, str>,
    pub value: Cow<'a, str>,
}

/// A series' labels sorted by name, `__name__` included, with a flag recording any change.
/// An absent label reads as `""`, and setting a label to `""` deletes it (Prometheus' model).
#[derive(Debug, Default, Clone)]
pub struct LabelSet<'a> {
    labels: Vec<Label<'a>>,
    changed: bool,
}

impl<'a> LabelSet<'a> {
    /// An empty set.
    pub fn new() -> Self {
        LabelSet::default()
    }

    /// Builds a set from pairs in any order (later duplicates win).
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: Into<Cow<'a, str>>,
        V: Into<Cow<'a, str>>,
    {
        let mut set = LabelSet::new();
        for (name, value) in pairs {
            set.insert(name.into(), value.into());
        }
        set.changed = false;
        set
    }

    /// Empties the set and clears the change flag, keeping its capacity.
    pub fn clear(&mut self) {
        self.labels.clear();
        self.changed = false;
    }

    /// Appends a label that sorts after every label already present (input order). Hot path.
    pub fn push_sorted(&mut self, name: &'a str, value: &'a str) {
        debug_assert!(self.labels.last().is_none_or(|last| *last.name < *name));
        self.labels.push(Label {
            name: Cow::Borrowed(name),
            value: Cow::Borrowed(value),
        });
    }

    /// Whether any rule changed the set since it was built or cleared.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// The labels, sorted by name.
    pub fn labels(&self) -> &[Label<'a>] {
        &self.labels
    }

    /// Iterates `(name, value)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels
            .iter()
            .map(|label| (&*label.name, &*label.value))
    }

    /// The value of `name`, `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        match self.find(name) {
            Ok(at) => &self.labels[at].value,
            Err(_) => "",
        }
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.labels
            .binary_search_by(|label| (*label.name).cmp(name))
    }

    /// Sets `name` to `value` (deleting it when `value` is empty); allocates only on a change.
    pub fn set(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            self.delete(name);
            return;
        }
        match self.find(name) {
            Ok(at) => {
                if *self.labels[at].value != *value {
                    self.labels[at].value = Cow::Owned(value.to_owned());
                    self.changed = true;
                }
            }
            Err(at) => {
                self.labels.insert(
                    at,
                    Label {
                        name: Cow::Owned(name.to_owned()),
                        value: Cow::Owned(value.to_owned()),
                    },
                );
                self.changed = true;
            }
        }
    }

    fn insert(&mut self, name: Cow<'a, str>, value: Cow<'a, str>) {
        match self.find(&name) {
            Ok(at) => self.labels[at].value = value,
            Err(at) => self.labels.insert(at, Label { name, value }),
        }
        self.changed = true;
    }

    /// Removes `name` if present.
    pub fn delete(&mut self, name: &str) {
        if let Ok(at) = self.find(name) {
            self.labels.remove(at);
            self.changed = true;
        }
    }

    fn retain_names(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let before = self.labels.len();
        self.labels.retain(|label| keep(&label.name));
        self.changed |= self.labels.len() != before;
    }
}

/// Compiled rules plus the scratch buffers reused across series.
#[derive(Debug)]
pub struct Relabeler {
    rules: Vec<Rule>,
    /// Capture slots per rule (index-aligned with `rules`).
    locations: Vec<CaptureLocations>,
    value: String,
    target: String,
    result: String,
    pending: Vec<(String, String)>,
}

impl Relabeler {
    /// Wraps compiled rules (see [`crate::config::parse`]).
    pub fn new(rules: Vec<Rule>) -> Self {
        let locations = rules
            .iter()
            .map(|rule| rule.regex.capture_locations())
            .collect();
        Relabeler {
            rules,
            locations,
            value: String::new(),
            target: String::new(),
            result: String::new(),
            pending: Vec::new(),
        }
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Applies every rule to `labels`; `false` = the series is dropped. Exactly Prometheus'
    /// `ProcessBuilder`: it does not look at `__name__` (see [`Relabeler::process_series`]).
    /// Hot path: no allocation unless a rule changes a label.
    pub fn process(&mut self, labels: &mut LabelSet<'_>) -> bool {
        for index in 0..self.rules.len() {
            if !self.apply(index, labels) {
                return false;
            }
        }
        true
    }

    /// [`Relabeler::process`] for a sample: additionally drops the series when `__name__` ends
    /// up absent, empty, or not a valid metric name (the relay cannot publish such a series).
    pub fn process_series(&mut self, labels: &mut LabelSet<'_>) -> bool {
        self.process(labels) && text::is_metric_name(labels.get("__name__"))
    }

    fn apply(&mut self, index: usize, labels: &mut LabelSet<'_>) -> bool {
        let rule = &self.rules[index];
        let value = &mut self.value;
        value.clear();
        for (position, name) in rule.source_labels.iter().enumerate() {
            if position > 0 {
                value.push_str(&rule.separator);
            }
            value.push_str(labels.get(name));
        }
        let value = value.as_str();
        match rule.action {
            Action::Drop => return !(rule.matches_all || rule.regex.is_match(value)),
            Action::Keep => return rule.matches_all || rule.regex.is_match(value),
            Action::DropEqual => return labels.get(&rule.target_label) != value,
            Action::KeepEqual => return labels.get(&rule.target_label) == value,
            Action::Replace => {
                let locations = &mut self.locations[index];
                let matched =
                    rule.matches_all || rule.regex.captures_read(locations, value).is_some();
                if !matched {
                    return true;
                }
                let group = |i: usize| -> Option<&str> {
                    if rule.matches_all {
                        (i <= 1).then_some(value)
                    } else {
                        locations.get(i).map(|(start, end)| &value[start..end])
                    }
                };
                let target: &str = match rule.target.literal() {
                    Some(literal) => literal,
                    None => {
                        self.target.clear();
                        rule.target.expand_into(&mut self.target, group);
                        &self.target
                    }
                };
                if !is_label_name(target) {
                    return true;
                }
                self.result.clear();
                rule.replacement.expand_into(&mut self.result, group);
                labels.set(target, &self.result);
            }
            Action::Lowercase => {
                self.result.clear();
                push_lower(&mut self.result, value);
                labels.set(&rule.target_label, &self.result);
            }
            Action::Uppercase => {
                self.result.clear();
                push_upper(&mut self.result, value);
                labels.set(&rule.target_label, &self.result);
            }
            Action::HashMod => {
                let hash = Md5::digest(value.as_bytes());
                let mut low = [0u8; 8];
                low.copy_from_slice(&hash[8..]);
                let bucket = u64::from_be_bytes(low) % rule.modulus;
                self.result.clear();
                write!(self.result, "{bucket}").expect("writing to a String cannot fail");
                labels.set(&rule.target_label, &self.result);
            }
            Action::LabelMap => {
                // Prometheus iterates a snapshot of the labels, then sets: collect first.
                self.pending.clear();
                let locations = &mut self.locations[index];
                for label in labels.labels() {
                    let name = &*label.name;
                    if rule.regex.captures_read(locations, name).is_none() {
                        continue;
                    }
                    let mut mapped = String::new();
                    rule.replacement.expand_into(&mut mapped, |i| {
                        locations.get(i).map(|(start, end)| &name[start..end])
                    });
                    self.pending.push((mapped, label.value.to_string()));
                }
                for (name, value) in self.pending.drain(..) {
                    // A mapped name the relay could not carry is skipped (Prometheus in UTF-8 mode
                    // would create it).
                    if is_label_name(&name) {
                        labels.set(&name, &value);
                    }
                }
            }
            Action::LabelDrop => labels.retain_names(|name| !rule.regex.is_match(name)),
            Action::LabelKeep => labels.retain_names(|name| rule.regex.is_match(name)),
        }
        true
    }
}

/// Convenience for tests and one-off use: applies `rules` to `labels` (see [`Relabeler::process`]).
pub fn process(labels: &mut LabelSet<'_>, rules: &[Rule]) -> bool {
    Relabeler::new(rules.to_vec()).process(labels)
}
