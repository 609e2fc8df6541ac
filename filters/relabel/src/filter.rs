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
//! Memoised: the outcome of every series (kept, dropped, or the edits that rewrite it) is
//! remembered across scrapes in a [`SeriesMemo`] keyed by the series' labels and the rules'
//! version, so a series seen before costs a hash and a lookup, as in Prometheus' scrape cache.
//! Its bounds come from the `cache` key of the configuration.
//!
//! **Invariant:** the per-series work is [`Relabeler::process`] over labels borrowed from the
//! input, or a replay of its remembered outcome; nothing is copied for a series no rule changed.
//! A cached outcome depends only on the series' labels and the rules, never on the rest of the
//! batch: duplicates and family regrouping are decided per batch, after the lookups.

use crate::config;
use crate::edits::{EditList, Packed};
use crate::engine::{LabelSet, Relabeler};
use promrelay_sdk::memo::{SeriesKey, SeriesMemo};
use promrelay_sdk::{Batch, Error, Filter, Series, SeriesMut};

/// Name suffixes of the samples of histogram, summary, counter, info and gauge-histogram families.
const SAMPLE_SUFFIXES: [&str; 8] = [
    "_bucket", "_count", "_sum", "_total", "_created", "_info", "_gcount", "_gsum",
];

/// The `relabel` filter.
pub struct Relabel {
    relabeler: Relabeler,
    /// What the rules did to each series seen in recent scrapes.
    memo: SeriesMemo<Remembered>,
    /// Reused across series and batches (rebound to each batch's lifetime).
    labels: LabelSet<'static>,
    /// What happened to each input series of the current batch, in input order.
    outcomes: Vec<Outcome>,
    /// Per input family of the current batch: the name all its series were renamed to, if any.
    family_renames: Vec<Option<String>>,
    /// The label edits of changed series of the current batch, in order.
    edits: EditList,
    /// (identity of the final labels, input index) of every kept series of the current batch:
    /// once a series changed, two series can become one.
    identities: Vec<(SeriesKey, usize)>,
}

enum Outcome {
    Kept,
    Dropped,
    /// `edits.range(first, count)` turn the input labels into the new ones; `renamed` when
    /// `__name__` changed.
    Changed {
        first: usize,
        count: usize,
        renamed: bool,
    },
}

/// The outcome of one series as the memo keeps it: independent of the batch it came in.
enum Remembered {
    Kept,
    Dropped,
    Changed {
        /// The key of the relabelled labels (for the duplicate check).
        identity: SeriesKey,
        renamed: bool,
        edits: Packed,
    },
}

/// What became of one series in this batch, whether computed now or remembered.
enum Verdict {
    Kept,
    Dropped,
    /// Dropped because the relabelled `__name__` is not a valid metric name (never remembered:
    /// each batch warns about it).
    BadName(String),
    Changed {
        identity: SeriesKey,
        renamed: bool,
        first: usize,
        /// The new family name, for a renamed series whose rename keeps its sample suffix.
        base: Option<String>,
    },
}

impl Filter for Relabel {
    type Config = serde_json::Value;

    fn init(config: serde_json::Value) -> Result<Self, Error> {
        let settings = config::settings_from_value(config).map_err(Error::new)?;
        Ok(Relabel {
            relabeler: Relabeler::new(settings.rules),
            memo: SeriesMemo::new(settings.rules_version, settings.cache),
            labels: LabelSet::new(),
            outcomes: Vec::new(),
            family_renames: Vec::new(),
            edits: EditList::default(),
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
    /// The compiled rules, for the trace (`explain`).
    pub(crate) fn relabeler_mut(&mut self) -> &mut Relabeler {
        &mut self.relabeler
    }

    /// The outcome cache's counters (hits, misses, evictions).
    pub fn cache_stats(&self) -> promrelay_sdk::memo::MemoStats {
        self.memo.stats()
    }

    /// Runs the rules over every series (read-only), or replays what they did last time,
    /// recording outcomes. Returns whether any series changed and whether any was dropped.
    /// Hot path.
    fn relabel_all(&mut self, batch: &Batch<'_>) -> (bool, bool) {
        self.outcomes.clear();
        self.family_renames.clear();
        self.edits.clear();
        self.identities.clear();
        self.memo.begin_scrape();
        if self.memo.is_empty() {
            // A fresh instance: every series is new, grow the table once.
            self.memo.reserve(batch.series_count());
        }
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
                let index = self.outcomes.len();
                let key = self.memo.key_of(&series);
                let verdict = match self.memo.get(key) {
                    Some(remembered) => replay(remembered, &mut self.edits, family_name, &series),
                    None => {
                        let (verdict, remembered) = relabel_one(
                            &mut self.relabeler,
                            &self.memo,
                            &mut labels,
                            &mut self.edits,
                            family_name,
                            &series,
                        );
                        if let Some(remembered) = remembered {
                            self.memo.insert(key, remembered);
                        }
                        verdict
                    }
                };
                let outcome = match verdict {
                    Verdict::Dropped => Outcome::Dropped,
                    Verdict::BadName(example) => {
                        bad_names += 1;
                        if first_bad_name.is_empty() {
                            first_bad_name = example;
                        }
                        Outcome::Dropped
                    }
                    Verdict::Kept => {
                        rename = Some(None);
                        self.identities.push((key, index));
                        Outcome::Kept
                    }
                    Verdict::Changed {
                        identity,
                        renamed,
                        first,
                        base,
                    } => {
                        rename = Some(match rename {
                            None => base,
                            Some(previous) if previous == base => previous,
                            Some(_) => None,
                        });
                        any_changed = true;
                        self.identities.push((identity, index));
                        Outcome::Changed {
                            first,
                            count: self.edits.len() - first,
                            renamed,
                        }
                    }
                };
                any_dropped |= matches!(outcome, Outcome::Dropped);
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
        let (outcomes, edits) = (&self.outcomes, &self.edits);
        let mut index = 0;
        batch.retain_mut(|series| {
            let outcome = &outcomes[index];
            index += 1;
            match *outcome {
                Outcome::Kept => true,
                Outcome::Dropped => false,
                Outcome::Changed { first, count, .. } => {
                    for (name, value) in edits.range(first, count) {
                        // An empty value deletes, as in Prometheus.
                        series.set_label(name, value);
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

/// Runs the rules on one series not in the memo. Returns what became of it and what to
/// remember (nothing for an invalid new name, which must warn in every batch). Hot path for
/// new series.
fn relabel_one<'a>(
    relabeler: &mut Relabeler,
    memo: &SeriesMemo<Remembered>,
    labels: &mut LabelSet<'a>,
    edits: &mut EditList,
    family_name: &str,
    series: &Series<'a>,
) -> (Verdict, Option<Remembered>) {
    labels.clear();
    for (name, value) in series.labels() {
        labels.push_sorted(name, value);
    }
    let kept = relabeler.process(labels);
    let new_name = labels.get("__name__");
    if !kept || new_name.is_empty() {
        return (Verdict::Dropped, Some(Remembered::Dropped));
    }
    if !crate::text::is_metric_name(new_name) {
        let example = format!("{:?} (was {:?})", new_name, series.name());
        return (Verdict::BadName(example), None);
    }
    if !labels.changed() || labels.iter().eq(series.labels()) {
        return (Verdict::Kept, Some(Remembered::Kept));
    }
    let old_name = series.name();
    let renamed = new_name != old_name;
    let base = if renamed {
        consistent_base(family_name, old_name, new_name)
    } else {
        None
    };
    let first = edits.len();
    edits.record(series.labels(), labels.iter());
    let identity = memo.key(labels.iter());
    let remembered = Remembered::Changed {
        identity,
        renamed,
        edits: edits.pack(first, edits.len() - first),
    };
    let verdict = Verdict::Changed {
        identity,
        renamed,
        first,
        base,
    };
    (verdict, Some(remembered))
}

/// The verdict of a remembered series, its edits appended to this batch's. Hot path for
/// repeated series.
fn replay(
    remembered: &Remembered,
    edits: &mut EditList,
    family_name: &str,
    series: &Series<'_>,
) -> Verdict {
    match remembered {
        Remembered::Kept => Verdict::Kept,
        Remembered::Dropped => Verdict::Dropped,
        Remembered::Changed {
            identity,
            renamed,
            edits: packed,
        } => {
            let first = edits.len();
            edits.unpack(packed);
            let base = match (renamed, packed.value_of("__name__")) {
                (true, Some(new_name)) => consistent_base(family_name, series.name(), new_name),
                _ => None,
            };
            Verdict::Changed {
                identity: *identity,
                renamed: *renamed,
                first,
                base,
            }
        }
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
