//! The relabel rules as a promrelay filter: `init` compiles the configuration once (a bad one
//! fails `init` with every problem), `process` relabels every series of a scrape.
//!
//! Answers, cheapest first: nothing changed → PASS; series only dropped → MASK (the batch is
//! never copied); any label changed → REPLACED.
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
}

enum Outcome {
    Kept,
    Dropped,
    /// The new labels, sorted, `__name__` included; `renamed` when `__name__` changed.
    Changed {
        labels: Vec<(String, String)>,
        renamed: bool,
    },
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
                let outcome = if !kept {
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
                    Outcome::Changed {
                        labels: labels
                            .iter()
                            .map(|(name, value)| (name.to_owned(), value.to_owned()))
                            .collect(),
                        renamed,
                    }
                } else {
                    rename = Some(None);
                    Outcome::Kept
                };
                any_dropped |= matches!(outcome, Outcome::Dropped);
                any_changed |= matches!(outcome, Outcome::Changed { .. });
                self.outcomes.push(outcome);
            }
            self.family_renames.push(rename.flatten());
        }
        self.labels = labels.recycle();
        if bad_names > 0 {
            promrelay_sdk::warn!(
                "dropped {bad_names} series whose relabelled __name__ is not a valid metric name, e.g. {first_bad_name}"
            );
        }
        (any_changed, any_dropped)
    }

    /// Applies the recorded outcomes to an editable batch and regroups renamed series.
    fn rewrite(&mut self, batch: &mut Batch<'_>) {
        let any_renamed = self
            .outcomes
            .iter()
            .any(|outcome| matches!(outcome, Outcome::Changed { renamed: true, .. }));
        let outcomes = &mut self.outcomes;
        let mut index = 0;
        batch.retain_mut(|series| {
            let outcome = std::mem::replace(&mut outcomes[index], Outcome::Kept);
            index += 1;
            match outcome {
                Outcome::Kept => true,
                Outcome::Dropped => false,
                Outcome::Changed { labels, .. } => {
                    replace_labels(series, &labels);
                    true
                }
            }
        });
        if any_renamed {
            regroup(batch, &self.family_renames);
        }
    }
}

/// Makes `series` carry exactly `labels` (sorted, `__name__` included).
fn replace_labels(series: &mut SeriesMut<'_>, labels: &[(String, String)]) {
    series.retain_labels(|name, _| {
        labels
            .binary_search_by(|(candidate, _)| candidate.as_str().cmp(name))
            .is_ok()
    });
    for (name, value) in labels {
        series.set_label(name, value);
    }
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
