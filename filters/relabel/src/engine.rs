//! Applies compiled relabel rules to one series' label set, with Prometheus' semantics
//! (`relabel.ProcessBuilder`): rules in order, the first that drops ends processing.
//!
//! Hot path: [`Relabeler::process`] runs once per series. Labels borrow the batch's strings
//! (`Cow::Borrowed`); a string is allocated only when a rule actually changes a label, and the
//! scratch buffers are reused across series. This module must never know the batch layout.

#![forbid(unsafe_code)]

use crate::config::{Action, Rule};
use crate::text::{self, is_label_name, push_lower, push_upper};
use md5::{Digest, Md5};
use regex::CaptureLocations;
use std::borrow::Cow;
use std::fmt::Write as _;

/// Marks a label string that has no id in the input's string table (set by a rule, or unknown).
pub const NO_ID: u32 = u32::MAX;

/// One label: name and value, either borrowed from the input or owned after a change, with the
/// input string-table ids of each when known ([`NO_ID`] otherwise). Ids let the engine remember a
/// regex's answer for a string across the series of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label<'a> {
    pub name: Cow<'a, str>,
    pub value: Cow<'a, str>,
    pub name_id: u32,
    pub value_id: u32,
    /// 0 for a label as given; otherwise when a rule last (re)added it, counting from 1 — the
    /// order in which Prometheus' `labels.Builder` visits labels set by earlier rules.
    order: u32,
}

/// A series' labels sorted by name, `__name__` included, with a flag recording any change.
/// An absent label reads as `""`, and setting a label to `""` deletes it (Prometheus' model).
#[derive(Debug, Default, Clone)]
pub struct LabelSet<'a> {
    labels: Vec<Label<'a>>,
    changed: bool,
    /// The next `Label::order` to hand out.
    next_order: u32,
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
        self.next_order = 0;
    }

    fn take_order(&mut self) -> u32 {
        self.next_order += 1;
        self.next_order
    }

    /// Empties the set and rebinds it to another input lifetime, keeping its allocation (std's
    /// in-place `collect` reuses the buffer of an emptied vector of same-layout items), so one
    /// set can serve every batch a filter instance sees.
    pub fn recycle<'b>(mut self) -> LabelSet<'b> {
        self.labels.clear();
        LabelSet {
            labels: self
                .labels
                .into_iter()
                .map(|_| unreachable!("the vector was emptied"))
                .collect(),
            changed: false,
            next_order: 0,
        }
    }

    /// Appends a label that sorts after every label already present (input order). Hot path.
    pub fn push_sorted(&mut self, name: &'a str, value: &'a str) {
        self.push_sorted_with_ids(name, NO_ID, value, NO_ID);
    }

    /// As [`LabelSet::push_sorted`], with the strings' ids in the batch's string table (valid for
    /// the batch announced by [`Relabeler::begin_batch`]). Hot path.
    pub fn push_sorted_with_ids(
        &mut self,
        name: &'a str,
        name_id: u32,
        value: &'a str,
        value_id: u32,
    ) {
        debug_assert!(self.labels.last().is_none_or(|last| *last.name < *name));
        self.labels.push(Label {
            name: Cow::Borrowed(name),
            value: Cow::Borrowed(value),
            name_id,
            value_id,
            order: 0,
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
                // Prometheus' builder moves even an unchanged label into its "added" list.
                if self.labels[at].order == 0 {
                    self.labels[at].order = self.take_order();
                }
                if *self.labels[at].value != *value {
                    self.labels[at].value = Cow::Owned(value.to_owned());
                    self.labels[at].value_id = NO_ID;
                    self.changed = true;
                }
            }
            Err(at) => {
                let order = self.take_order();
                self.labels.insert(
                    at,
                    Label {
                        name: Cow::Owned(name.to_owned()),
                        value: Cow::Owned(value.to_owned()),
                        name_id: NO_ID,
                        value_id: NO_ID,
                        order,
                    },
                );
                self.changed = true;
            }
        }
    }

    fn insert(&mut self, name: Cow<'a, str>, value: Cow<'a, str>) {
        match self.find(&name) {
            Ok(at) => self.labels[at].value = value,
            Err(at) => self.labels.insert(
                at,
                Label {
                    name,
                    value,
                    name_id: NO_ID,
                    value_id: NO_ID,
                    order: 0,
                },
            ),
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

    fn retain_labels(&mut self, mut keep: impl FnMut(&Label<'a>) -> bool) {
        let before = self.labels.len();
        self.labels.retain(|label| keep(label));
        self.changed |= self.labels.len() != before;
    }
}

/// Compiled rules plus the scratch buffers reused across series.
#[derive(Debug)]
pub struct Relabeler {
    rules: Vec<Rule>,
    /// Capture slots per rule (index-aligned with `rules`).
    locations: Vec<CaptureLocations>,
    /// Per rule, per string id of the current batch: what the rule's regex said about that
    /// string (`UNKNOWN`, `MATCHED`, `MISSED`). Empty until [`Relabeler::begin_batch`].
    memo: Vec<Vec<u8>>,
    value: String,
    target: String,
    result: String,
    pending: Vec<(u32, String, String)>,
}

impl Relabeler {
    /// Wraps compiled rules (see [`crate::config::parse`]).
    pub fn new(rules: Vec<Rule>) -> Self {
        let locations = rules
            .iter()
            .map(|rule| rule.regex.capture_locations())
            .collect();
        Relabeler {
            memo: vec![Vec::new(); rules.len()],
            rules,
            locations,
            value: String::new(),
            target: String::new(),
            result: String::new(),
            pending: Vec::new(),
        }
    }

    /// Announces a new batch whose string table has `string_count` entries: label ids passed to
    /// [`LabelSet::push_sorted_with_ids`] refer to it until the next call. Forgets what was
    /// remembered about the previous batch's strings.
    pub fn begin_batch(&mut self, string_count: usize) {
        for (rule, memo) in self.rules.iter().zip(&mut self.memo) {
            memo.clear();
            if memoizable(rule) {
                memo.resize(string_count, UNKNOWN);
            }
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

    /// [`Relabeler::process_series`] step by step, for a trace: `step(index, matched, kept,
    /// labels)` after each rule applied (until one drops the series), where `matched` says
    /// whether the rule's condition held (the regex matched the joined source values, or any
    /// label name for labelmap/labeldrop/labelkeep; the labels were equal for keepequal/
    /// dropequal; always for hashmod/lowercase/uppercase). Returns whether the series is kept,
    /// its `__name__` check included. Not a hot path: it bypasses the per-string memo.
    pub fn explain_series(
        &mut self,
        labels: &mut LabelSet<'_>,
        mut step: impl FnMut(usize, bool, bool, &LabelSet<'_>),
    ) -> bool {
        self.begin_batch(0);
        for index in 0..self.rules.len() {
            let matched = self.condition(index, labels);
            let kept = self.apply(index, labels);
            step(index, matched, kept, labels);
            if !kept {
                return false;
            }
        }
        text::is_metric_name(labels.get("__name__"))
    }

    /// Whether rule `index`'s condition holds for `labels` (see [`Relabeler::explain_series`]).
    fn condition(&self, index: usize, labels: &LabelSet<'_>) -> bool {
        let rule = &self.rules[index];
        let joined = || {
            rule.source_labels
                .iter()
                .map(|name| labels.get(name))
                .collect::<Vec<_>>()
                .join(&rule.separator)
        };
        match rule.action {
            Action::Keep | Action::Drop | Action::Replace => {
                rule.matches_all || rule.regex.is_match(&joined())
            }
            Action::KeepEqual | Action::DropEqual => labels.get(&rule.target_label) == joined(),
            Action::HashMod | Action::Lowercase | Action::Uppercase => true,
            Action::LabelMap | Action::LabelDrop | Action::LabelKeep => labels
                .labels()
                .iter()
                .any(|label| rule.regex.is_match(&label.name)),
        }
    }

    fn apply(&mut self, index: usize, labels: &mut LabelSet<'_>) -> bool {
        let rule = &self.rules[index];
        let memo = &mut self.memo[index];
        // keep/drop/replace on one source label with a known id: the regex's answer may already
        // be known. (The memo caches `regex.is_match(string)` per string id, so the same slots
        // also serve the label-name tests of labelmap/labeldrop/labelkeep.)
        let mut remember = None;
        if !memo.is_empty()
            && matches!(rule.action, Action::Keep | Action::Drop | Action::Replace)
            && rule.source_labels.len() == 1
            && !rule.matches_all
        {
            if let Ok(at) = labels.find(&rule.source_labels[0]) {
                let label = &labels.labels[at];
                if let Some(slot) = memo.get_mut(label.value_id as usize) {
                    if *slot == UNKNOWN {
                        *slot = if rule.regex.is_match(&label.value) {
                            MATCHED
                        } else {
                            MISSED
                        };
                    }
                    remember = Some(*slot == MATCHED);
                }
            }
        }
        match (remember, rule.action) {
            (Some(matched), Action::Drop) => return !matched,
            (Some(matched), Action::Keep) => return matched,
            (Some(false), Action::Replace) => return true,
            _ => {}
        }
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
                    if !name_matches(rule, memo, label) {
                        continue;
                    }
                    if rule.regex.captures_read(locations, name).is_none() {
                        continue;
                    }
                    let mut mapped = String::new();
                    rule.replacement.expand_into(&mut mapped, |i| {
                        locations.get(i).map(|(start, end)| &name[start..end])
                    });
                    self.pending
                        .push((label.order, mapped, label.value.to_string()));
                }
                // Prometheus visits labels as given (by name), then those earlier rules set (in
                // the order they were set): on a collision the last visited wins.
                self.pending.sort_by_key(|(order, _, _)| *order);
                for (_, name, value) in self.pending.drain(..) {
                    // A mapped name the relay could not carry is skipped (Prometheus in UTF-8 mode
                    // would create it).
                    if is_label_name(&name) {
                        labels.set(&name, &value);
                    }
                }
            }
            Action::LabelDrop => labels.retain_labels(|label| !name_matches(rule, memo, label)),
            Action::LabelKeep => labels.retain_labels(|label| name_matches(rule, memo, label)),
        }
        true
    }
}

const UNKNOWN: u8 = 0;
const MATCHED: u8 = 1;
const MISSED: u8 = 2;

/// Whether remembering the regex's answer per string can save work for this rule.
fn memoizable(rule: &Rule) -> bool {
    match rule.action {
        Action::Keep | Action::Drop | Action::Replace => {
            rule.source_labels.len() == 1 && !rule.matches_all
        }
        Action::LabelMap | Action::LabelDrop | Action::LabelKeep => true,
        _ => false,
    }
}

/// Whether `rule`'s regex matches the label's name, remembered per name id. Hot path.
fn name_matches(rule: &Rule, memo: &mut [u8], label: &Label<'_>) -> bool {
    match memo.get_mut(label.name_id as usize) {
        Some(slot) if *slot != UNKNOWN => *slot == MATCHED,
        Some(slot) => {
            let matched = rule.regex.is_match(&label.name);
            *slot = if matched { MATCHED } else { MISSED };
            matched
        }
        None => rule.regex.is_match(&label.name),
    }
}

/// Convenience for tests and one-off use: applies `rules` to `labels` (see [`Relabeler::process`]).
pub fn process(labels: &mut LabelSet<'_>, rules: &[Rule]) -> bool {
    Relabeler::new(rules.to_vec()).process(labels)
}
