//! The editable form of a batch ([`FamilyMut`], [`SeriesMut`]) and how a batch becomes the
//! ABI's answer: PASS, MASK or REPLACED.
//!
//! Strings borrow from the input (with their string index) until a filter changes them, and every series
//! remembers where it came from and whether it was changed, so a filter that only dropped series
//! through the editable form still answers with a MASK.

use std::borrow::Cow;

use promrelay_abi::{
    status, BatchError, BatchReader, BatchWriter, LabelRecord, MetricType, NAME_LABEL, NONE,
};

use crate::batch::{Batch, State};
use crate::error::Error;
use crate::strings::Text;

type Pair<'a> = (Text<'a>, Text<'a>);

/// A family whose metadata and series can change.
///
/// ```
/// # use promrelay_sdk::{testing, Batch, MetricType};
/// # let bytes = testing::batch_from_text("# TYPE jobs untyped\njobs 3\n").unwrap();
/// # let mut batch = Batch::from_bytes(&bytes).unwrap();
/// for family in batch.families_mut() {
///     if family.kind() == MetricType::Untyped {
///         family.set_kind(MetricType::Gauge);
///         family.set_help(Some("Jobs waiting."));
///     }
/// }
/// assert_eq!(batch.families().next().unwrap().kind(), MetricType::Gauge);
/// ```
pub struct FamilyMut<'a> {
    name: Cow<'a, str>,
    help: Option<Cow<'a, str>>,
    unit: Option<Cow<'a, str>>,
    kind: MetricType,
    /// The family's series; add, remove or reorder them freely.
    pub series: Vec<SeriesMut<'a>>,
    /// Index of the input family this one was copied from.
    origin: Option<u32>,
    /// How many series the input family had.
    input_series: u32,
    changed: bool,
}

impl<'a> FamilyMut<'a> {
    pub(crate) fn new(name: Cow<'a, str>, kind: MetricType) -> FamilyMut<'a> {
        FamilyMut {
            name,
            help: None,
            unit: None,
            kind,
            series: Vec::new(),
            origin: None,
            input_series: 0,
            changed: true,
        }
    }

    /// The family name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the family only; see [`Batch::rename_metric`] to rename its series too.
    pub fn set_name(&mut self, name: &str) {
        self.name = Cow::Owned(name.to_owned());
        self.changed = true;
    }

    /// The `# HELP` text.
    pub fn help(&self) -> Option<&str> {
        self.help.as_deref()
    }

    /// Sets or removes the `# HELP` text.
    pub fn set_help(&mut self, help: Option<&str>) {
        self.help = help.map(|h| Cow::Owned(h.to_owned()));
        self.changed = true;
    }

    /// The unit.
    pub fn unit(&self) -> Option<&str> {
        self.unit.as_deref()
    }

    /// Sets or removes the unit.
    pub fn set_unit(&mut self, unit: Option<&str>) {
        self.unit = unit.map(|u| Cow::Owned(u.to_owned()));
        self.changed = true;
    }

    /// The metric type.
    pub fn kind(&self) -> MetricType {
        self.kind
    }

    /// Changes the metric type.
    pub fn set_kind(&mut self, kind: MetricType) {
        self.kind = kind;
        self.changed = true;
    }
}

/// A series whose labels, name, value and timestamp can change.
///
/// Labels stay sorted by name and `__name__` is one of them, as in Prometheus relabelling.
/// Setting a label to the empty string removes it (Prometheus treats the two alike). Names are
/// checked when the batch is sent back: an invalid label or metric name fails the scrape with a
/// message naming it.
///
/// ```
/// # use promrelay_sdk::{testing, Batch};
/// # let bytes = testing::batch_from_text("http_requests_total{code=\"200\",path=\"/\"} 5\n").unwrap();
/// # let mut batch = Batch::from_bytes(&bytes).unwrap();
/// let series = batch.series_mut().next().unwrap();
/// series.rename_label("code", "status");
/// series.delete_label("path");
/// series.set_name("requests_total");
/// let labels: Vec<_> = series.labels().collect();
/// assert_eq!(labels, [("__name__", "requests_total"), ("status", "200")]);
/// ```
pub struct SeriesMut<'a> {
    pub(crate) labels: Vec<Pair<'a>>,
    value: f64,
    timestamp_ms: Option<i64>,
    /// Index of the input series this one was copied from.
    origin: Option<u32>,
    changed: bool,
}

impl<'a> SeriesMut<'a> {
    pub(crate) fn new(name: &str, value: f64) -> SeriesMut<'a> {
        SeriesMut {
            labels: vec![(Text::new(NAME_LABEL), Text::new(name))],
            value,
            timestamp_ms: None,
            origin: None,
            changed: true,
        }
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.labels.binary_search_by(|(n, _)| n.as_str().cmp(name))
    }

    /// The sample name (`__name__`).
    pub fn name(&self) -> &str {
        self.label(NAME_LABEL).unwrap_or("")
    }

    /// Renames the sample (sets `__name__`).
    pub fn set_name(&mut self, name: &str) {
        self.set_label(NAME_LABEL, name);
    }

    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.find(name).ok().map(|i| self.labels[i].1.as_str())
    }

    /// Every label as `(name, value)`, sorted by name, `__name__` included.
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.labels.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Sets label `name` to `value`, adding it if absent; an empty `value` removes the label.
    pub fn set_label(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            self.delete_label(name);
            return;
        }
        match self.find(name) {
            Ok(i) if self.labels[i].1 == *value => {}
            Ok(i) => {
                self.labels[i].1 = Text::new(value);
                self.changed = true;
            }
            Err(i) => {
                let pair = (Text::new(name), Text::new(value));
                self.labels.insert(i, pair);
                self.changed = true;
            }
        }
    }

    /// Removes label `name` if present.
    pub fn delete_label(&mut self, name: &str) {
        if let Ok(i) = self.find(name) {
            self.labels.remove(i);
            self.changed = true;
        }
    }

    /// Moves the value of label `from` to label `to` (replacing any value `to` had).
    pub fn rename_label(&mut self, from: &str, to: &str) {
        if from == to {
            return;
        }
        if let Ok(i) = self.find(from) {
            let (_, value) = self.labels.remove(i);
            self.changed = true;
            match self.find(to) {
                Ok(j) => self.labels[j].1 = value,
                Err(j) => self.labels.insert(j, (Text::new(to), value)),
            }
        }
    }

    /// Keeps only the labels for which `keep(name, value)` is true (`__name__` is always kept).
    pub fn retain_labels(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        let before = self.labels.len();
        self.labels
            .retain(|(n, v)| *n == *NAME_LABEL || keep(n.as_str(), v.as_str()));
        self.changed |= self.labels.len() != before;
    }

    /// The value.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// Changes the value.
    pub fn set_value(&mut self, value: f64) {
        self.value = value;
        self.changed = true;
    }

    /// The timestamp in milliseconds since the Unix epoch.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }

    /// Sets or removes the timestamp.
    pub fn set_timestamp_ms(&mut self, timestamp_ms: Option<i64>) {
        self.timestamp_ms = timestamp_ms;
        self.changed = true;
    }
}

/// Copies the kept series of `input` into editable families (strings still borrowed).
pub(crate) fn materialize<'a>(
    input: BatchReader<'a>,
    strings: &[&'a str],
    keep: Option<&[bool]>,
) -> Vec<FamilyMut<'a>> {
    let text = |index: u32| Text::input(strings.get(index as usize).copied().unwrap_or(""), index);
    let name = |index: u32| Cow::Borrowed(strings.get(index as usize).copied().unwrap_or(""));
    let optional = |index: u32| strings.get(index as usize).map(|s| Cow::Borrowed(*s));
    let mut families = Vec::with_capacity(input.family_count() as usize);
    for (family_index, record) in input.families().enumerate() {
        let range = record.first_series..record.first_series + record.series_count;
        let mut series = Vec::with_capacity(record.series_count as usize);
        for index in range {
            if keep.is_some_and(|k| !k[index as usize]) {
                continue;
            }
            let Ok(sample) = input.series(index) else {
                continue;
            };
            // One spare slot: the commonest edit adds a label, which then needs no reallocation.
            let mut labels = Vec::with_capacity(sample.label_count as usize + 1);
            labels.extend(input.labels(&sample).map(|l| (text(l.name), text(l.value))));
            series.push(SeriesMut {
                labels,
                value: sample.value,
                timestamp_ms: sample.timestamp_ms,
                origin: Some(index),
                changed: false,
            });
        }
        families.push(FamilyMut {
            name: name(record.name),
            help: optional(record.help),
            unit: optional(record.unit),
            kind: record.kind,
            series,
            origin: Some(family_index as u32),
            input_series: record.series_count,
            changed: false,
        });
    }
    families
}

impl Batch<'_> {
    /// Writes the ABI answer for this batch into `out` and returns its status.
    pub(crate) fn write_output(
        &self,
        out: &mut Vec<u8>,
        writer: &mut BatchWriter,
    ) -> Result<i32, Error> {
        out.clear();
        let count = self.input.series_count() as usize;
        match &self.state {
            State::Input { keep: None } => Ok(status::PASS),
            State::Input { keep: Some(keep) } => Ok(mask_from(keep.iter().copied(), count, out)),
            State::Edited { families } => match kept_origins(families, count) {
                Some(keep) => Ok(mask_from(keep.into_iter(), count, out)),
                None => {
                    encode(families, self.input.string_count(), writer, out)?;
                    check_output(out)?;
                    Ok(status::REPLACED)
                }
            },
        }
    }
}

fn mask_from(keep: impl Iterator<Item = bool>, count: usize, out: &mut Vec<u8>) -> i32 {
    out.resize(promrelay_abi::mask_len(count), 0);
    let mut all = true;
    for (index, kept) in keep.enumerate() {
        promrelay_abi::mask_set(out, index, kept);
        all &= kept;
    }
    if all {
        out.clear();
        status::PASS
    } else {
        status::MASK
    }
}

/// When the edited families are the input minus some series — nothing renamed, changed, added
/// or reordered — the keep bits of the input's series; otherwise `None`.
fn kept_origins(families: &[FamilyMut<'_>], count: usize) -> Option<Vec<bool>> {
    let mut keep = vec![false; count];
    let mut last_family: Option<u32> = None;
    let mut last_series: Option<u32> = None;
    for family in families {
        let origin = family.origin.filter(|_| !family.changed)?;
        if last_family.is_some_and(|last| last >= origin) {
            return None;
        }
        last_family = Some(origin);
        for series in &family.series {
            let origin = series.origin.filter(|_| !series.changed)?;
            if last_series.is_some_and(|last| last >= origin) {
                return None;
            }
            last_series = Some(origin);
            keep[origin as usize] = true;
        }
    }
    Some(keep)
}

fn encode(
    families: &[FamilyMut<'_>],
    input_strings: u32,
    writer: &mut BatchWriter,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    writer.clear();
    let too_large =
        |e: promrelay_abi::WriteError| Error::new(format!("cannot encode the batch: {e}"));
    // Input string index → output string index; strings never touched are never hashed.
    let mut mapped = vec![NONE; input_strings as usize];
    let mut intern = |writer: &mut BatchWriter, text: &Text<'_>| -> Result<u32, Error> {
        if let Some(slot) = text.input_index().and_then(|i| mapped.get_mut(i as usize)) {
            if *slot == NONE {
                *slot = writer.add_string(text.as_str()).map_err(too_large)?;
            }
            return Ok(*slot);
        }
        writer.add_string(text.as_str()).map_err(too_large)
    };
    let mut records: Vec<LabelRecord> = Vec::new();
    for family in families {
        // A family the filter emptied goes; one that came without series stays (HELP/TYPE only).
        let emptied = family.series.is_empty() && family.input_series > 0;
        if emptied {
            continue;
        }
        writer
            .begin_family(
                &family.name,
                family.help.as_deref(),
                family.unit.as_deref(),
                family.kind,
            )
            .map_err(too_large)?;
        for series in &family.series {
            records.clear();
            for (name, value) in &series.labels {
                if value.as_str().is_empty() {
                    continue;
                }
                let name = intern(writer, name)?;
                let value = intern(writer, value)?;
                records.push(LabelRecord { name, value });
            }
            writer
                .add_series_indices(&records, series.value, series.timestamp_ms)
                .map_err(too_large)?;
        }
    }
    writer.finish_into(out);
    Ok(())
}

/// Runs the checks the relay runs, so a bad name fails here with a message that names it.
fn check_output(out: &[u8]) -> Result<(), Error> {
    let reader =
        BatchReader::new(out).map_err(|e| Error::new(format!("internal encoding error: {e}")))?;
    reader.check_names().map_err(|e| {
        let name = |index: u32| reader.str(index).unwrap_or("?").to_owned();
        match e {
            BatchError::BadMetricName { string } => {
                Error::new(format!("{:?} is not a valid metric name", name(string)))
            }
            BatchError::BadLabelName { string, .. } => {
                Error::new(format!("{:?} is not a valid label name", name(string)))
            }
            BatchError::MissingName { .. } => Error::new("a series has no metric name (__name__)"),
            other => Error::new(format!("invalid output: {other}")),
        }
    })
}
