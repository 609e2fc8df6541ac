//! Text exposition → one ABI batch with the target labels: the poller's representation of a
//! scrape, built once here and read in place by the filters, the staleness tracker and the wire.
//!
//! A [`ScrapeWriter`] belongs to one target and is reused for each of its scrapes: its string
//! table keeps the previous scrape's strings (metric names, label names and most values repeat),
//! so a scrape of a stable target interns by lookup, copies no string bytes and, once the
//! buffers have grown, allocates nothing per series. When more than half of the table went
//! unused in a scrape (churning label values), the next scrape starts a fresh table.
//!
//! Every series gets exactly the label set Prometheus gives it before `metric_relabel_configs`:
//! its exposed labels, `__name__`, and the target labels (`job`, `instance`, a target group's
//! labels), an exposed label of the same name kept as `exported_<name>`. The target labels are
//! interned once per scrape; per series they cost one label record each.

use promrelay_abi::{BatchWriter, LabelRecord, MetricType as AbiType, WriteError, NONE};

use super::parse::{parse_into, utf8, Head, Output, Pair};
use super::{LabelLimit, ParseError};
use crate::filter::codec::to_abi;
use crate::model::{Label, Series, Str};

/// Where one label record of a planned series comes from.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// The exposed label at this position, as it is.
    Exposed(u32),
    /// The exposed label at this position, renamed to this string (`exported_<name>`).
    Renamed(u32, u32),
    /// Entry of `fixed` (a target label, or `__name__` with the series' name).
    Fixed(u32),
}

/// A label set entry fixed for the whole scrape: a target label, or the `__name__` slot.
#[derive(Debug, Clone)]
struct Fixed {
    name: Str,
    /// `None` for `__name__`, whose value is each series' name.
    record: Option<LabelRecord>,
    /// `exported_<name>`: what an exposed label of this name becomes.
    exported: u32,
    exported_name: Str,
}

/// One target's batch builder, reused across its scrapes. See the module docs.
pub struct ScrapeWriter {
    writer: BatchWriter,
    /// Parser family → batch family (`NONE` until its first sample).
    slots: Vec<u32>,
    /// The target labels in the order they are applied (`job`, `instance`, group labels).
    target: Vec<(Str, Str)>,
    /// Whether the target labels' names are distinct and none is an `exported_` name: then
    /// `fixed` is merged in directly, renaming a colliding exposed label in place.
    distinct: bool,
    /// The target labels and `__name__`, sorted by name.
    fixed: Vec<Fixed>,
    /// The synthetic series' label set: `instance`, `job`, group labels, first of a name wins.
    synthetic: Vec<Fixed>,
    name_label: u32,
    /// The series being written (reused buffer).
    record: Vec<LabelRecord>,
    /// The exposed labels of the series being written, interned (reused buffer).
    interned: Vec<LabelRecord>,
    /// How a series whose exposed label names are `plan_names` gets its label set: consecutive
    /// samples of a family mostly share their label names, so the merge with the target labels
    /// is planned once per shape and replayed per series.
    plan: Vec<Slot>,
    plan_names: Vec<u32>,
    plan_valid: bool,
    /// `make_plan`'s (position in `fixed`, position in the labels) of each colliding label.
    renamed_at: Vec<(usize, usize)>,
    /// The previous sample's exposed labels by position: their strings are found without a
    /// lookup when they repeat (consecutive samples of a family mostly share them).
    previous: Vec<LabelRecord>,
    previous_name: u32,
    /// Samples the target exposed in this scrape.
    samples: usize,
    /// Families with samples in this scrape, by name (to leave out a synthetic series the
    /// target exposed itself).
    exposed: Vec<u32>,
}

impl Default for ScrapeWriter {
    fn default() -> Self {
        ScrapeWriter::new()
    }
}

impl ScrapeWriter {
    pub fn new() -> ScrapeWriter {
        ScrapeWriter {
            writer: BatchWriter::new(),
            slots: Vec::new(),
            target: Vec::new(),
            distinct: true,
            fixed: Vec::new(),
            synthetic: Vec::new(),
            name_label: 0,
            record: Vec::with_capacity(16),
            interned: Vec::with_capacity(16),
            plan: Vec::with_capacity(24),
            plan_names: Vec::with_capacity(16),
            plan_valid: false,
            renamed_at: Vec::with_capacity(4),
            previous: Vec::with_capacity(16),
            previous_name: NONE,
            samples: 0,
            exposed: Vec::new(),
        }
    }

    /// Starts a scrape whose series get `target` (`job`, `instance`, then a target group's
    /// labels, in that order).
    pub fn begin<'t>(&mut self, target: impl IntoIterator<Item = (&'t str, &'t str)>) {
        if self.writer.unused_strings() * 2 > self.writer.string_count() {
            self.writer.clear();
        } else {
            self.writer.clear_records();
        }
        self.target.clear();
        self.target.extend(
            target
                .into_iter()
                .map(|(n, v)| (Str::from(n), Str::from(v))),
        );
        self.restart();
    }

    /// Empties the records of this scrape (after a failed parse), keeping its target labels.
    fn restart(&mut self) {
        self.writer.clear_records();
        self.slots.clear();
        self.previous.clear();
        self.previous_name = NONE;
        self.plan_valid = false;
        self.samples = 0;
        self.exposed.clear();
        self.name_label = self.intern("__name__");
        let mut fixed = Vec::with_capacity(self.target.len() + 1);
        for index in 0..self.target.len() {
            let (name, value) = self.target[index].clone();
            let record = LabelRecord {
                name: self.intern(&name),
                value: self.intern(&value),
            };
            let exported_name = Str::from(format!("exported_{name}"));
            let exported = self.intern(&exported_name);
            fixed.push(Fixed {
                name,
                record: Some(record),
                exported,
                exported_name,
            });
        }
        // The synthetic series: the target labels, `job` and `instance` winning over a group label
        // of the same name (a stable sort keeps them first).
        fixed.sort_by(|a, b| a.name.cmp(&b.name));
        let mut synthetic = fixed.clone();
        synthetic.dedup_by(|later, earlier| later.name == earlier.name);
        self.synthetic = with_name_slot(synthetic);
        self.distinct = fixed.windows(2).all(|pair| pair[0].name < pair[1].name)
            && !fixed.iter().any(|f| f.name.starts_with("exported_"));
        self.fixed = with_name_slot(fixed);
    }

    fn intern(&mut self, text: &str) -> u32 {
        // Only a batch past 4 GiB fails here, which the body limit rules out long before.
        self.writer.add_string(text).unwrap_or(0)
    }

    /// Parses one scrape's body into the batch. On an error the batch holds no sample of it
    /// (the synthetic series may still be added). Returns the samples the target exposed.
    pub fn parse(&mut self, input: &[u8], limit: LabelLimit<'_>) -> Result<usize, ParseError> {
        let result = utf8(input).and_then(|text| {
            let heads = parse_into(text, Some(limit), self)?;
            self.set_families(&heads).map_err(|error| ParseError {
                line: 0,
                reason: error.to_string(),
            })
        });
        match result {
            Ok(()) => Ok(self.samples),
            Err(error) => {
                self.restart();
                Err(error)
            }
        }
    }

    fn set_families(&mut self, heads: &[Head<'_>]) -> Result<(), WriteError> {
        for (index, head) in heads.iter().enumerate() {
            let Some(&slot) = self.slots.get(index).filter(|slot| **slot != NONE) else {
                continue;
            };
            let help = match &head.help {
                Some(help) => self.writer.add_string(help)?,
                None => NONE,
            };
            let unit = match head.unit {
                Some(unit) => self.writer.add_string(unit)?,
                None => NONE,
            };
            self.writer
                .set_family(slot, help, unit, to_abi(head.kind))?;
            let name = self.writer.add_string(head.name)?;
            self.exposed.push(name);
        }
        Ok(())
    }

    /// Adds a gauge family `name` of one series with the target labels (the synthetic `up`,
    /// `scrape_duration_seconds`, `scrape_samples_scraped`), unless the target exposed a family
    /// of that name itself.
    pub fn add_synthetic(&mut self, name: &str, help: &str, value: f64) -> Result<(), WriteError> {
        let name_index = self.writer.add_string(name)?;
        if self.exposed.contains(&name_index) {
            return Ok(());
        }
        let help = self.writer.add_string(help)?;
        self.writer
            .begin_family_indices(name_index, help, NONE, AbiType::Gauge)?;
        let family = self.writer.last_family().ok_or(WriteError::NoFamily)?;
        self.record.clear();
        for fixed in &self.synthetic {
            self.record.push(fixed.record.unwrap_or(LabelRecord {
                name: self.name_label,
                value: name_index,
            }));
        }
        self.writer
            .add_series_indices_to(family, &self.record, value, None)
    }

    /// The batch, into `out` (cleared first).
    pub fn finish_into(&self, out: &mut Vec<u8>) {
        self.writer.finish_into(out);
    }

    /// The batch family of parser family `family`, begun at its first sample.
    fn slot(&mut self, family: usize, family_name: &str) -> Result<u32, WriteError> {
        if let Some(&slot) = self.slots.get(family).filter(|slot| **slot != NONE) {
            return Ok(slot);
        }
        let name = self.writer.add_string(family_name)?;
        self.writer
            .begin_family_indices(name, NONE, NONE, AbiType::Untyped)?;
        let slot = self.writer.last_family().ok_or(WriteError::NoFamily)?;
        if self.slots.len() <= family {
            self.slots.resize(family + 1, NONE);
        }
        self.slots[family] = slot;
        Ok(slot)
    }

    /// Hot path: the index of `text`, found without a lookup when it is the string at `hint`.
    fn intern_near(&mut self, text: &str, hint: u32) -> Result<u32, WriteError> {
        if hint != NONE && self.writer.string_bytes(hint) == Some(text.as_bytes()) {
            return Ok(hint);
        }
        self.writer.add_string(text)
    }

    /// Hot path: interns the exposed labels of one series into `interned`, each string found
    /// without a lookup when it repeats the previous sample's at the same position.
    fn intern_exposed(&mut self, labels: &[Pair<'_>]) -> Result<(), WriteError> {
        self.interned.clear();
        for (position, pair) in labels.iter().enumerate() {
            let hint = self.previous.get(position).copied();
            let name = self.intern_near(pair.name, hint.map_or(NONE, |h| h.name))?;
            let value = self.intern_near(&pair.value, hint.map_or(NONE, |h| h.value))?;
            self.interned.push(LabelRecord { name, value });
        }
        self.previous.clear();
        self.previous.extend_from_slice(&self.interned);
        Ok(())
    }

    /// Hot path: the label records of one series (exposed labels merged with the target labels
    /// and `__name__`), by the plan of its label names.
    fn merge(&mut self, name_value: u32, labels: &[Pair<'_>]) -> Result<(), WriteError> {
        self.intern_exposed(labels)?;
        let same_shape = self.plan_valid
            && self.plan_names.len() == self.interned.len()
            && self
                .plan_names
                .iter()
                .zip(&self.interned)
                .all(|(planned, label)| *planned == label.name);
        if !same_shape {
            self.make_plan(labels);
        }
        self.record.clear();
        for slot in &self.plan {
            self.record.push(match *slot {
                Slot::Exposed(position) => self.interned[position as usize],
                Slot::Renamed(position, exported) => LabelRecord {
                    name: exported,
                    value: self.interned[position as usize].value,
                },
                Slot::Fixed(index) => self.fixed[index as usize].record.unwrap_or(LabelRecord {
                    name: self.name_label,
                    value: name_value,
                }),
            });
        }
        Ok(())
    }

    /// Plans the label set of series whose exposed labels are named like `labels`: three runs
    /// sorted by name merged (the exposed labels that keep their names, those renamed
    /// `exported_<name>` because a target label has their name, the fixed ones); a renamed label
    /// replaces an exposed one of its new name, as the model's rules do.
    fn make_plan(&mut self, labels: &[Pair<'_>]) {
        let collides = |pair: &Pair<'_>, fixed: &[Fixed]| {
            fixed
                .iter()
                .position(|f| f.record.is_some() && f.name.as_str() == pair.name)
        };
        self.plan.clear();
        let (mut kept, mut renamed, mut fixed) = (0, 0, 0);
        // The renamed labels in order of their names (`exported_` keeps that order).
        let mut renamed_at = std::mem::take(&mut self.renamed_at);
        renamed_at.clear();
        renamed_at.extend(
            labels.iter().enumerate().filter_map(|(position, pair)| {
                collides(pair, &self.fixed).map(|at| (at, position))
            }),
        );
        loop {
            while kept < labels.len() && renamed_at.iter().any(|&(_, p)| p == kept) {
                kept += 1;
            }
            let kept_name = labels.get(kept).map(|pair| pair.name);
            let renamed_name = renamed_at
                .get(renamed)
                .map(|&(at, _)| self.fixed[at].exported_name.as_str());
            let fixed_name = self.fixed.get(fixed).map(|f| f.name.as_str());
            let Some(smallest) = [kept_name, renamed_name, fixed_name]
                .into_iter()
                .flatten()
                .min()
            else {
                break;
            };
            if renamed_name == Some(smallest) {
                let (at, position) = renamed_at[renamed];
                self.plan
                    .push(Slot::Renamed(position as u32, self.fixed[at].exported));
                renamed += 1;
                if kept_name == Some(smallest) {
                    kept += 1;
                }
            } else if kept_name == Some(smallest) {
                self.plan.push(Slot::Exposed(kept as u32));
                kept += 1;
            } else {
                self.plan.push(Slot::Fixed(fixed as u32));
                fixed += 1;
            }
        }
        self.renamed_at = renamed_at;
        self.plan_names.clear();
        self.plan_names
            .extend(self.interned.iter().map(|label| label.name));
        self.plan_valid = true;
    }

    /// The rare path: the target labels repeat a name (a group label `job`), or one is an
    /// `exported_` name: the model's rules, applied to this one series.
    #[cold]
    fn merge_slowly(
        &mut self,
        name: &str,
        name_value: u32,
        labels: &[Pair<'_>],
    ) -> Result<(), WriteError> {
        let mut series = Series {
            name: Str::from(name),
            labels: labels
                .iter()
                .map(|pair| Label::new(pair.name, pair.value.as_ref()))
                .collect(),
            value: 0.0,
            timestamp_ms: None,
        };
        let target: Vec<(&str, &str)> = self
            .target
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        series.add_target_labels(&target);
        self.record.clear();
        let mut name_pending = true;
        for label in &series.labels {
            if name_pending && label.name.as_str() > "__name__" {
                self.record.push(LabelRecord {
                    name: self.name_label,
                    value: name_value,
                });
                name_pending = false;
            }
            let record = LabelRecord {
                name: self.writer.add_string(&label.name)?,
                value: self.writer.add_string(&label.value)?,
            };
            self.record.push(record);
        }
        if name_pending {
            self.record.push(LabelRecord {
                name: self.name_label,
                value: name_value,
            });
        }
        self.previous.clear();
        Ok(())
    }
}

/// `labels` (sorted by name) with the `__name__` slot at its sorted place.
fn with_name_slot(mut labels: Vec<Fixed>) -> Vec<Fixed> {
    let at = labels.partition_point(|label| label.name.as_str() < "__name__");
    labels.insert(
        at,
        Fixed {
            name: Str::from("__name__"),
            record: None,
            exported: NONE,
            exported_name: Str::default(),
        },
    );
    labels
}

impl<'a> Output<'a> for ScrapeWriter {
    fn sample(
        &mut self,
        family: usize,
        family_name: &'a str,
        name: &'a str,
        labels: &[Pair<'a>],
        value: f64,
        timestamp_ms: Option<i64>,
    ) -> Result<(), String> {
        let written = (|| {
            let slot = self.slot(family, family_name)?;
            let name_value = self.intern_near(name, self.previous_name)?;
            self.previous_name = name_value;
            if self.distinct {
                self.merge(name_value, labels)?;
            } else {
                self.merge_slowly(name, name_value, labels)?;
            }
            self.samples += 1;
            let record = std::mem::take(&mut self.record);
            let added = self
                .writer
                .add_series_indices_to(slot, &record, value, timestamp_ms);
            self.record = record;
            added
        })();
        written.map_err(|error| format!("sample {name}: {error}"))
    }
}
