//! The relabel rules as a promrelay filter: `init` compiles the configuration once (a bad one
//! fails `init` with every problem), `process` relabels every series of a scrape.
//!
//! Answers, cheapest first: nothing changed → PASS; series only dropped → MASK (the batch is
//! never copied); any label changed → REPLACED. Once a label changed, series that became
//! identical to an earlier one are dropped (Prometheus keeps the first).
//!
//! Families: relabelling `__name__` can take a series out of its family. When every kept series of
//! a family is renamed the same way (old `F` + suffix → new `B` + same suffix, the suffixes being
//! `_bucket`, `_count`, `_sum`, `_total`, `_created`, `_info`, `_gcount`, `_gsum` or none), the
//! family is renamed to `B` and keeps its HELP, TYPE and UNIT — unless a family named `B` is already
//! in the scrape. Otherwise each renamed series that no longer fits its family's name moves to the
//! family whose name it fits (exact name first, then name plus suffix), or to a new untyped family
//! of its own name without HELP: the scrape carried no metadata for that name, which is what
//! Prometheus sees too after `metric_relabel_configs`.
//!
//! **Invariant:** the per-series work is [`Relabeler::process_series`] over labels borrowed from
//! the input; nothing is copied for a series no rule changed.

use crate::config;
use crate::engine::{LabelSet, Relabeler};
use promrelay_sdk::{Batch, Error, Filter, SeriesMut};

/// Name suffixes of the samples of histogram, summary, counter, info and gauge-histogram families.
const SAMPLE_SUFFIXES: [&str; 8] = [
    "_bucket", "_count", "_sum", "_total", "_created", "_info", "_gcount", "_gsum",
];

/// The `relabel` filter.
pub struct Relabel {
    relabeler: Relabeler,
    /// Reused across series and batches (rebound to each batch's lifetime).
    labels: LabelSet<'static>,
    /// What happened to each input series of the current batch, in input order.
    outcomes: Vec<Outcome>,
    /// Per input family of the current batch: the name all its series were renamed to, if any.
    family_renames: Vec<Option<String>>,
    /// The label edits of changed series, in order; their strings live in `edit_text`.
    edits: Vec<Edit>,
    edit_text: String,
    /// (identity hash of the final labels, input index) of every kept series, filled once a
    /// series changed in the current batch (only then can two series become one).
    identities: Vec<(u128, usize)>,
}

enum Outcome {
    Kept,
    Dropped,
    /// `edits[first..first + count]` turn the input labels into the new ones; `renamed` when
    /// `__name__` changed.
    Changed {
        first: usize,
        count: usize,
        renamed: bool,
    },
}

/// One label edit: set `name` to `value`, or delete `name` when `value` is empty. Both are byte
/// ranges of `Relabel::edit_text` (one buffer per batch instead of strings per series).
struct Edit {
    name: (usize, usize),
    value: (usize, usize),
}

impl Filter for Relabel {
    type Config = serde_json::Value;

    fn init(config: serde_json::Value) -> Result<Self, Error> {
        let rules = config::from_value(config).map_err(Error::new)?;
        Ok(Relabel {
            relabeler: Relabeler::new(rules),
            labels: LabelSet::new(),
            outcomes: Vec::new(),
            family_renames: Vec::new(),
            edits: Vec::new(),
            edit_text: String::new(),
            identities: Vec::new(),
        })
    }

    fn process(&mut self, batch: &mut Batch<'_>) -> Result<(), Error> {
        let (changed, dropped) = self.relabel_all(batch);
        if changed {
            self.rewrite(batch);
        } else if dropped {
            let outcomes = &self.outcomes;
            let mut index = 0;
            batch.retain(|_| {
                let keep = !matches!(outcomes[index], Outcome::Dropped);
                index += 1;
                keep
            });
        }
        Ok(())
    }
}

impl Relabel {
    /// Runs the rules over every series (read-only), recording outcomes. Returns whether any
    /// series changed and whether any was dropped. Hot path.
    fn relabel_all(&mut self, batch: &Batch<'_>) -> (bool, bool) {
        self.outcomes.clear();
        self.family_renames.clear();
        self.edits.clear();
        self.edit_text.clear();
        self.identities.clear();
        self.relabeler.begin_batch(0);
        let (mut any_changed, mut any_dropped) = (false, false);
        let mut bad_names = 0usize;
        let mut first_bad_name = String::new();
        let mut labels = std::mem::take(&mut self.labels).recycle();
        for family in batch.families() {
            let family_name = family.name();
            // Some(base) while every kept series so far was renamed consistently.
            let mut rename: Option<Option<String>> = None;
            for series in family.series() {
                labels.clear();
                for (name, value) in series.labels() {
                    labels.push_sorted(name, value);
                }
                let kept = self.relabeler.process(&mut labels);
                let new_name = labels.get("__name__");
                let outcome = if !kept || new_name.is_empty() {
                    Outcome::Dropped
                } else if !crate::text::is_metric_name(new_name) {
                    bad_names += 1;
                    if first_bad_name.is_empty() {
                        first_bad_name = format!("{:?} (was {:?})", new_name, series.name());
                    }
                    Outcome::Dropped
                } else if labels.changed() && !labels.iter().eq(series.labels()) {
                    let old_name = series.name();
                    let renamed = new_name != old_name;
                    let base = if renamed {
                        consistent_base(family_name, old_name, new_name)
                    } else {
                        None
                    };
                    rename = Some(match rename {
                        None => base,
                        Some(previous) if previous == base => previous,
                        Some(_) => None,
                    });
                    let first = self.edits.len();
                    record_edits(
                        &mut self.edits,
                        &mut self.edit_text,
                        series.labels(),
                        labels.iter(),
                    );
                    Outcome::Changed {
                        first,
                        count: self.edits.len() - first,
                        renamed,
                    }
                } else {
                    rename = Some(None);
                    Outcome::Kept
                };
                any_dropped |= matches!(outcome, Outcome::Dropped);
                if matches!(outcome, Outcome::Changed { .. }) && !any_changed {
                    any_changed = true;
                    // From now on duplicates are possible: catch up on the series before this one.
                    self.identities.extend(
                        batch
                            .series()
                            .take(self.outcomes.len())
                            .enumerate()
                            .filter(|(index, _)| matches!(self.outcomes[*index], Outcome::Kept))
                            .map(|(index, earlier)| (identity(earlier.labels()), index)),
                    );
                }
                if any_changed && !matches!(outcome, Outcome::Dropped) {
                    self.identities
                        .push((identity(labels.iter()), self.outcomes.len()));
                }
                self.outcomes.push(outcome);
            }
            self.family_renames.push(rename.flatten());
        }
        self.labels = labels.recycle();
        if any_changed {
            let duplicates = self.drop_duplicates();
            any_dropped |= duplicates > 0;
        }
        if bad_names > 0 {
            promrelay_sdk::warn!(
                "dropped {bad_names} series whose relabelled __name__ is not a valid metric name, e.g. {first_bad_name}"
            );
        }
        (any_changed, any_dropped)
    }

    /// Drops every kept series whose final labels equal those of an earlier one, as Prometheus
    /// stores only the first of them (the later are rejected as duplicates); a Pushgateway would
    /// refuse the whole push. Returns how many were dropped.
    fn drop_duplicates(&mut self) -> usize {
        self.identities.sort_unstable();
        let mut dropped = 0;
        for pair in self.identities.windows(2) {
            if pair[0].0 == pair[1].0 {
                self.outcomes[pair[1].1] = Outcome::Dropped;
                dropped += 1;
            }
        }
        if dropped > 0 {
            promrelay_sdk::warn!(
                "dropped {dropped} series whose relabelled labels duplicate another series of the scrape (the first is kept)"
            );
        }
        dropped
    }

    /// Applies the recorded outcomes to an editable batch and regroups renamed series.
    fn rewrite(&mut self, batch: &mut Batch<'_>) {
        let any_renamed = self
            .outcomes
            .iter()
            .any(|outcome| matches!(outcome, Outcome::Changed { renamed: true, .. }));
        let (outcomes, edits, text) = (&self.outcomes, &self.edits, &self.edit_text);
        let mut index = 0;
        batch.retain_mut(|series| {
            let outcome = &outcomes[index];
            index += 1;
            match *outcome {
                Outcome::Kept => true,
                Outcome::Dropped => false,
                Outcome::Changed { first, count, .. } => {
                    for edit in &edits[first..first + count] {
                        let name = &text[edit.name.0..edit.name.1];
                        // An empty value deletes, as in Prometheus.
                        series.set_label(name, &text[edit.value.0..edit.value.1]);
                    }
                    true
                }
            }
        });
        if any_renamed {
            regroup(batch, &self.family_renames);
        }
    }
}

/// Appends the edits that turn `old` into `new` (both sorted by name) to `edits`. Hot path for
/// changed series: one merge walk, strings copied into the batch's shared buffer.
fn record_edits<'o, 'n>(
    edits: &mut Vec<Edit>,
    text: &mut String,
    old: impl Iterator<Item = (&'o str, &'o str)>,
    new: impl Iterator<Item = (&'n str, &'n str)>,
) {
    let mut push = |name: &str, value: &str| {
        let name_start = text.len();
        text.push_str(name);
        let value_start = text.len();
        text.push_str(value);
        edits.push(Edit {
            name: (name_start, value_start),
            value: (value_start, text.len()),
        });
    };
    let (mut old, mut new) = (old.peekable(), new.peekable());
    loop {
        match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(&(name, _)), None) => {
                push(name, "");
                old.next();
            }
            (None, Some(&(name, value))) => {
                push(name, value);
                new.next();
            }
            (Some(&(old_name, old_value)), Some(&(new_name, new_value))) => {
                match old_name.cmp(new_name) {
                    std::cmp::Ordering::Less => {
                        push(old_name, "");
                        old.next();
                    }
                    std::cmp::Ordering::Greater => {
                        push(new_name, new_value);
                        new.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if old_value != new_value {
                            push(new_name, new_value);
                        }
                        old.next();
                        new.next();
                    }
                }
            }
        }
    }
}

/// A 128-bit hash of a sorted label set (two SipHash states with different leading salts).
fn identity<'s>(labels: impl Iterator<Item = (&'s str, &'s str)>) -> u128 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let (mut high, mut low) = (DefaultHasher::new(), DefaultHasher::new());
    0u8.hash(&mut high);
    1u8.hash(&mut low);
    for (name, value) in labels {
        for hasher in [&mut high, &mut low] {
            name.hash(hasher);
            value.hash(hasher);
        }
    }
    (u128::from(high.finish()) << 64) | u128::from(low.finish())
}

/// Whether a sample named `sample` belongs in a family named `family`.
fn fits(sample: &str, family: &str) -> bool {
    match sample.strip_prefix(family) {
        Some("") => true,
        Some(suffix) => SAMPLE_SUFFIXES.contains(&suffix),
        None => false,
    }
}

/// For a series renamed `old` → `new` in family `family`: the new family name that keeps the
/// sample's suffix (`F_bucket` → `B_bucket` gives `B`), if the rename has that shape.
fn consistent_base(family: &str, old: &str, new: &str) -> Option<String> {
    let suffix = old.strip_prefix(family)?;
    if !suffix.is_empty() && !SAMPLE_SUFFIXES.contains(&suffix) {
        return None;
    }
    let base = new.strip_suffix(suffix)?;
    crate::text::is_metric_name(base).then(|| base.to_owned())
}

/// Renames wholly renamed families and moves series that no longer fit their family.
fn regroup(batch: &mut Batch<'_>, family_renames: &[Option<String>]) {
    let mut taken: Vec<String> = batch.families().map(|f| f.name().to_owned()).collect();
    let mut moving: Vec<SeriesMut<'_>> = Vec::new();
    for (position, family) in batch.families_mut().enumerate() {
        if let Some(Some(base)) = family_renames.get(position) {
            if !taken.contains(base) && family.series.iter().all(|s| fits(s.name(), base)) {
                family.set_name(base);
                taken.push(base.clone());
                continue;
            }
        }
        let name = family.name().to_owned();
        if family.series.iter().all(|s| fits(s.name(), &name)) {
            continue;
        }
        let (stay, go): (Vec<_>, Vec<_>) =
            family.series.drain(..).partition(|s| fits(s.name(), &name));
        family.series = stay;
        moving.extend(go);
    }
    for series in moving {
        let name = series.name().to_owned();
        let exact = batch.families_mut().rev().find(|f| f.name() == name);
        let target = match exact {
            Some(family) => Some(family),
            None => batch.families_mut().rev().find(|f| fits(&name, f.name())),
        };
        match target {
            Some(family) => family.series.push(series),
            None => {
                let labels: Vec<(String, String)> = series
                    .labels()
                    .filter(|(label, _)| *label != "__name__")
                    .map(|(label, value)| (label.to_owned(), value.to_owned()))
                    .collect();
                let pairs: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(label, value)| (label.as_str(), value.as_str()))
                    .collect();
                batch
                    .add_series(&name, &pairs, series.value())
                    .set_timestamp_ms(series.timestamp_ms());
            }
        }
    }
}
