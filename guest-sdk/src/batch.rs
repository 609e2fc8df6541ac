//! The typed view of one scrape: [`Batch`], and the read-only [`Family`] and [`Series`] views.
//!
//! A batch starts as a view over the relay's bytes (nothing copied). [`Batch::retain`] on an
//! unedited batch only flips keep bits — the MASK fast path. The first call to a mutating method
//! ([`Batch::series_mut`], [`Batch::families_mut`], [`Batch::add_series`], …) copies the kept
//! series into an editable form ([`crate::FamilyMut`], [`crate::SeriesMut`]) whose strings still
//! borrow from the input until they are changed.
//!
//! **Invariant:** the read views never allocate; hot paths (`retain`, `Series::label`) are per
//! series and per label.

use std::borrow::Cow;
use std::cell::OnceCell;

use promrelay_abi::{BatchError, BatchReader, FamilyRecord, MetricType, SeriesRecord, NAME_LABEL};

use crate::edit::{FamilyMut, SeriesMut};
use crate::strings::Text;

/// One scrape, handed to [`crate::Filter::process`].
///
/// ```
/// use promrelay_sdk::{testing, Batch};
///
/// let bytes = testing::batch_from_text("# TYPE up gauge\nup{job=\"node\"} 1\nup{job=\"db\"} 0\n").unwrap();
/// let mut batch = Batch::from_bytes(&bytes).unwrap();
/// assert_eq!(batch.series_count(), 2);
/// batch.retain(|series| series.value() == 1.0);
/// let jobs: Vec<_> = batch.series().map(|s| s.label("job").unwrap_or("")).collect();
/// assert_eq!(jobs, ["node"]);
/// ```
pub struct Batch<'a> {
    pub(crate) input: BatchReader<'a>,
    /// The input's strings, resolved on first use: each distinct string is UTF-8-checked once
    /// here instead of at every use.
    strings: OnceCell<Vec<&'a str>>,
    pub(crate) state: State<'a>,
}

pub(crate) enum State<'a> {
    /// Still the input; `keep[i]` is false for series dropped by `retain` (no vector = all kept).
    Input { keep: Option<Vec<bool>> },
    /// Copied into editable families.
    Edited { families: Vec<FamilyMut<'a>> },
}

impl<'a> Batch<'a> {
    /// A view over an encoded batch (ABI v1 layout), checked structurally.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Batch<'a>, BatchError> {
        Ok(Batch {
            input: BatchReader::new(bytes)?,
            strings: OnceCell::new(),
            state: State::Input { keep: None },
        })
    }

    /// The batch the host hands a filter: validated by the host before every call (the scrape's
    /// own batch, or an earlier filter's output the host checked), so only its header and
    /// section bounds are checked here instead of every record and string once more. Every read
    /// stays bounds-checked: a corrupt batch could only read as wrong records or fail the call.
    pub fn from_host(bytes: &'a [u8]) -> Result<Batch<'a>, BatchError> {
        Ok(Batch {
            input: BatchReader::trusted(bytes)?,
            strings: OnceCell::new(),
            state: State::Input { keep: None },
        })
    }

    /// Number of series left (after drops, with additions).
    pub fn series_count(&self) -> usize {
        match &self.state {
            State::Input { keep: None } => self.input.series_count() as usize,
            State::Input { keep: Some(keep) } => keep.iter().filter(|k| **k).count(),
            State::Edited { families } => families.iter().map(|f| f.series.len()).sum(),
        }
    }

    /// Whether the filter changed anything yet (a dropped series counts).
    pub fn is_modified(&self) -> bool {
        match &self.state {
            State::Input { keep } => keep.as_ref().is_some_and(|k| k.contains(&false)),
            State::Edited { .. } => true,
        }
    }

    /// The families, in exposition order, with the series they still hold.
    pub fn families(&self) -> impl Iterator<Item = Family<'_>> + '_ {
        let (input, edited, keep) = self.parts();
        let from_input = input.into_iter().flat_map(move |source| {
            source.reader.families().map(move |record| Family {
                inner: FamilyInner::Input {
                    source,
                    record,
                    keep,
                },
            })
        });
        let from_edits = edited.into_iter().flatten().map(|family| Family {
            inner: FamilyInner::Edited(family),
        });
        from_input.chain(from_edits)
    }

    /// Every series still in the batch, across families, in order.
    pub fn series(&self) -> impl Iterator<Item = Series<'_>> + '_ {
        let (input, edited, keep) = self.parts();
        let from_input = input.into_iter().flat_map(move |source| {
            (0..source.reader.series_count()).filter_map(move |index| {
                if keep.is_some_and(|k| !k[index as usize]) {
                    return None;
                }
                Some(Series::input(source, index))
            })
        });
        let from_edits = edited.into_iter().flatten().flat_map(|family| {
            family.series.iter().map(|s| Series {
                inner: SeriesInner::Edited(s),
            })
        });
        from_input.chain(from_edits)
    }

    #[allow(clippy::type_complexity)]
    fn parts(
        &self,
    ) -> (
        Option<Source<'_>>,
        Option<&[FamilyMut<'a>]>,
        Option<&[bool]>,
    ) {
        match &self.state {
            State::Input { keep } => (Some(self.source()), None, keep.as_deref()),
            State::Edited { families } => (None, Some(families), None),
        }
    }

    /// Keeps the series for which `keep` returns true and drops the others.
    ///
    /// On a batch nothing has rewritten yet this is the fast path: no series is copied, and the
    /// relay receives only a keep bitmap.
    ///
    /// ```
    /// # use promrelay_sdk::{testing, Batch};
    /// # let bytes = testing::batch_from_text("go_threads 8\nup 1\n").unwrap();
    /// # let mut batch = Batch::from_bytes(&bytes).unwrap();
    /// batch.retain(|series| !series.name().starts_with("go_"));
    /// assert_eq!(batch.series_count(), 1);
    /// ```
    pub fn retain(&mut self, mut keep: impl FnMut(&Series<'_>) -> bool) {
        let source = Source {
            reader: self.input,
            strings: strings(&self.strings, self.input),
        };
        match &mut self.state {
            State::Input { keep: bits } => {
                let count = source.reader.series_count();
                let bits = bits.get_or_insert_with(|| vec![true; count as usize]);
                for index in 0..count {
                    let slot = &mut bits[index as usize];
                    if *slot && !keep(&Series::input(source, index)) {
                        *slot = false;
                    }
                }
            }
            State::Edited { families } => {
                for family in families {
                    family.series.retain(|s| {
                        keep(&Series {
                            inner: SeriesInner::Edited(s),
                        })
                    });
                }
            }
        }
    }

    /// Edits every series in place and keeps those for which `edit` returns true.
    ///
    /// ```
    /// # use promrelay_sdk::{testing, Batch};
    /// # let bytes = testing::batch_from_text("a{x=\"1\"} 1\nb{x=\"2\"} 2\n").unwrap();
    /// # let mut batch = Batch::from_bytes(&bytes).unwrap();
    /// batch.retain_mut(|series| {
    ///     series.delete_label("x");
    ///     series.name() != "b"
    /// });
    /// assert_eq!(batch.series().map(|s| s.labels().count()).sum::<usize>(), 1);
    /// ```
    pub fn retain_mut(&mut self, mut edit: impl FnMut(&mut SeriesMut<'a>) -> bool) {
        for family in self.families_mut() {
            family.series.retain_mut(&mut edit);
        }
    }

    /// Every series, editable. See [`SeriesMut`] for what can change.
    ///
    /// ```
    /// # use promrelay_sdk::{testing, Batch};
    /// # let bytes = testing::batch_from_text("up 1\n").unwrap();
    /// # let mut batch = Batch::from_bytes(&bytes).unwrap();
    /// for series in batch.series_mut() {
    ///     series.set_label("site", "ams1");
    ///     series.set_value(series.value() * 2.0);
    /// }
    /// let series = batch.series().next().unwrap();
    /// assert_eq!((series.label("site"), series.value()), (Some("ams1"), 2.0));
    /// ```
    pub fn series_mut(&mut self) -> impl Iterator<Item = &mut SeriesMut<'a>> + '_ {
        self.families_mut()
            .flat_map(|family| family.series.iter_mut())
    }

    /// Every family, editable (name, help, unit, type, its series).
    pub fn families_mut(&mut self) -> std::slice::IterMut<'_, FamilyMut<'a>> {
        self.edited().iter_mut()
    }

    /// Renames a metric: the family named `from` (and any other family of that name) becomes
    /// `to`, and so does every series named `from` or `from` plus a sample suffix (`_bucket`,
    /// `_count`, `_sum`, `_total`, `_created`, `_info`, `_gcount`, `_gsum`) inside those families.
    ///
    /// ```
    /// # use promrelay_sdk::{testing, Batch};
    /// # let bytes = testing::batch_from_text("# TYPE rpc histogram\nrpc_bucket{le=\"+Inf\"} 1\nrpc_count 1\nrpc_sum 0.5\n").unwrap();
    /// # let mut batch = Batch::from_bytes(&bytes).unwrap();
    /// batch.rename_metric("rpc", "rpc_seconds");
    /// let names: Vec<_> = batch.series().map(|s| s.name().to_owned()).collect();
    /// assert_eq!(names, ["rpc_seconds_bucket", "rpc_seconds_count", "rpc_seconds_sum"]);
    /// ```
    pub fn rename_metric(&mut self, from: &str, to: &str) {
        // Looking first keeps a batch without that metric unedited (PASS or MASK).
        if !self.families().any(|family| family.name() == from) {
            return;
        }
        for family in self.families_mut() {
            if family.name() != from {
                continue;
            }
            family.set_name(to);
            for series in &mut family.series {
                let renamed = match series.name().strip_prefix(from) {
                    Some("") => Some(to.to_owned()),
                    Some(suffix) if SAMPLE_SUFFIXES.contains(&suffix) => {
                        Some(format!("{to}{suffix}"))
                    }
                    _ => None,
                };
                if let Some(name) = renamed {
                    series.set_name(&name);
                }
            }
        }
    }

    /// Adds a series named `name` with `labels` (any order, without `__name__`) and `value`,
    /// to the last family named `name` or, if there is none, to a new untyped family. Returns it
    /// so that a timestamp or more labels can be set.
    ///
    /// ```
    /// # use promrelay_sdk::{testing, Batch};
    /// # let bytes = testing::batch_from_text("up 1\n").unwrap();
    /// # let mut batch = Batch::from_bytes(&bytes).unwrap();
    /// let count = batch.series_count() as f64;
    /// batch.add_series("relay_series", &[("stage", "filtered")], count).set_timestamp_ms(Some(1));
    /// assert_eq!(batch.series_count(), 2);
    /// ```
    pub fn add_series(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> &mut SeriesMut<'a> {
        let families = self.edited();
        let position = families.iter().rposition(|f| f.name() == name);
        let family = match position {
            Some(index) => &mut families[index],
            None => {
                families.push(FamilyMut::new(
                    Cow::Owned(name.to_owned()),
                    MetricType::Untyped,
                ));
                families.last_mut().expect("a family was just pushed")
            }
        };
        let mut series = SeriesMut::new(name, value);
        for (label, label_value) in labels {
            series.set_label(label, label_value);
        }
        family.series.push(series);
        family.series.last_mut().expect("a series was just pushed")
    }

    /// Copies the kept series into the editable form, once.
    fn edited(&mut self) -> &mut Vec<FamilyMut<'a>> {
        if let State::Input { keep } = &self.state {
            let strings = strings(&self.strings, self.input);
            let families = crate::edit::materialize(self.input, strings, keep.as_deref());
            self.state = State::Edited { families };
        }
        match &mut self.state {
            State::Edited { families } => families,
            State::Input { .. } => unreachable!("the batch was materialized just above"),
        }
    }
}

impl Batch<'_> {
    fn source(&self) -> Source<'_> {
        Source {
            reader: self.input,
            strings: strings(&self.strings, self.input),
        }
    }
}

/// The input and its resolved strings: what the read views need.
#[derive(Clone, Copy)]
struct Source<'b> {
    reader: BatchReader<'b>,
    strings: &'b [&'b str],
}

impl<'b> Source<'b> {
    /// String `index`; an index past the table (`BatchReader::new` rules that out) reads as "".
    fn text(&self, index: u32) -> &'b str {
        self.strings.get(index as usize).copied().unwrap_or("")
    }
}

/// The resolved string table of `input`, built on first use.
fn strings<'c, 'a>(cell: &'c OnceCell<Vec<&'a str>>, input: BatchReader<'a>) -> &'c [&'a str] {
    cell.get_or_init(|| {
        (0..input.string_count())
            .map(|i| input.str(i).unwrap_or(""))
            .collect()
    })
}

/// Name suffixes of the samples of histogram, summary, counter and info families.
pub(crate) const SAMPLE_SUFFIXES: [&str; 8] = [
    "_bucket", "_count", "_sum", "_total", "_created", "_info", "_gcount", "_gsum",
];

/// A family, read-only: its metadata and the series it still holds.
///
/// ```
/// # use promrelay_sdk::{testing, Batch, MetricType};
/// let text = "# HELP rpc_seconds Time per call.\n# TYPE rpc_seconds summary\n\
///             rpc_seconds{quantile=\"0.5\"} 0.2\nrpc_seconds_sum 4\nrpc_seconds_count 20\n";
/// let bytes = testing::batch_from_text(text).unwrap();
/// let batch = Batch::from_bytes(&bytes).unwrap();
/// let family = batch.families().next().unwrap();
/// assert_eq!((family.name(), family.kind()), ("rpc_seconds", MetricType::Summary));
/// assert_eq!(family.help(), Some("Time per call."));
/// assert_eq!(family.series().count(), 3);
/// ```
pub struct Family<'b> {
    inner: FamilyInner<'b>,
}

enum FamilyInner<'b> {
    Input {
        source: Source<'b>,
        record: FamilyRecord,
        keep: Option<&'b [bool]>,
    },
    Edited(&'b FamilyMut<'b>),
}

impl<'b> Family<'b> {
    /// The family name (`# TYPE` name), e.g. `http_request_duration_seconds`.
    pub fn name(&self) -> &'b str {
        match &self.inner {
            FamilyInner::Input { source, record, .. } => source.text(record.name),
            FamilyInner::Edited(family) => family.name(),
        }
    }

    /// The `# HELP` text.
    pub fn help(&self) -> Option<&'b str> {
        match &self.inner {
            FamilyInner::Input { source, record, .. } => {
                source.strings.get(record.help as usize).copied()
            }
            FamilyInner::Edited(family) => family.help(),
        }
    }

    /// The unit (OpenMetrics `# UNIT`).
    pub fn unit(&self) -> Option<&'b str> {
        match &self.inner {
            FamilyInner::Input { source, record, .. } => {
                source.strings.get(record.unit as usize).copied()
            }
            FamilyInner::Edited(family) => family.unit(),
        }
    }

    /// The metric type.
    pub fn kind(&self) -> MetricType {
        match &self.inner {
            FamilyInner::Input { record, .. } => record.kind,
            FamilyInner::Edited(family) => family.kind(),
        }
    }

    /// The series of this family still in the batch.
    pub fn series(&self) -> Box<dyn Iterator<Item = Series<'b>> + 'b> {
        match self.inner {
            FamilyInner::Input {
                source,
                record,
                keep,
            } => {
                let range = record.first_series..record.first_series + record.series_count;
                Box::new(range.filter_map(move |index| {
                    if keep.is_some_and(|k| !k[index as usize]) {
                        return None;
                    }
                    Some(Series::input(source, index))
                }))
            }
            FamilyInner::Edited(family) => Box::new(family.series.iter().map(|s| Series {
                inner: SeriesInner::Edited(s),
            })),
        }
    }
}

/// One series, read-only.
///
/// ```
/// # use promrelay_sdk::{testing, Batch};
/// let bytes = testing::batch_from_text("http_requests_total{code=\"200\",job=\"api\"} 1027 1700000000000\n").unwrap();
/// let batch = Batch::from_bytes(&bytes).unwrap();
/// let series = batch.series().next().unwrap();
/// assert_eq!(series.name(), "http_requests_total");
/// assert_eq!(series.label("code"), Some("200"));
/// assert_eq!(series.label("path"), None);
/// assert_eq!((series.value(), series.timestamp_ms()), (1027.0, Some(1700000000000)));
/// let labels: Vec<_> = series.labels().collect();
/// assert_eq!(labels, [("__name__", "http_requests_total"), ("code", "200"), ("job", "api")]);
/// ```
pub struct Series<'b> {
    inner: SeriesInner<'b>,
}

enum SeriesInner<'b> {
    Input {
        source: Source<'b>,
        record: SeriesRecord,
    },
    Edited(&'b SeriesMut<'b>),
}

impl<'b> Series<'b> {
    fn input(source: Source<'b>, index: u32) -> Series<'b> {
        let record = source
            .reader
            .series(index)
            .expect("series indices below series_count are valid");
        Series {
            inner: SeriesInner::Input { source, record },
        }
    }

    /// The sample name (the `__name__` label), e.g. `rpc_seconds_bucket`.
    pub fn name(&self) -> &'b str {
        self.label(NAME_LABEL).unwrap_or("")
    }

    /// The value of label `name` (`__name__` included), if the series has it.
    ///
    /// Hot path: a binary search over the series' sorted labels, no allocation.
    pub fn label(&self, name: &str) -> Option<&'b str> {
        match &self.inner {
            SeriesInner::Input { source, record } => {
                let (mut low, mut high) = (0u32, record.label_count);
                while low < high {
                    let middle = low + (high - low) / 2;
                    let label = source.reader.label(record.first_label + middle).ok()?;
                    match source.text(label.name).cmp(name) {
                        std::cmp::Ordering::Less => low = middle + 1,
                        std::cmp::Ordering::Greater => high = middle,
                        std::cmp::Ordering::Equal => return Some(source.text(label.value)),
                    }
                }
                None
            }
            SeriesInner::Edited(series) => series.label(name),
        }
    }

    /// Every label as `(name, value)`, sorted by name, `__name__` included.
    pub fn labels(&self) -> Labels<'b> {
        match &self.inner {
            SeriesInner::Input { source, record } => Labels {
                inner: LabelsInner::Input {
                    source: *source,
                    records: source.reader.labels(record),
                },
            },
            SeriesInner::Edited(series) => Labels {
                inner: LabelsInner::Edited(series.labels.iter()),
            },
        }
    }

    /// The value. NaN (including Prometheus' staleness marker), +Inf and -Inf come through bit
    /// for bit.
    pub fn value(&self) -> f64 {
        match &self.inner {
            SeriesInner::Input { record, .. } => record.value,
            SeriesInner::Edited(series) => series.value(),
        }
    }

    /// The timestamp in milliseconds since the Unix epoch, if the exposition had one.
    pub fn timestamp_ms(&self) -> Option<i64> {
        match &self.inner {
            SeriesInner::Input { record, .. } => record.timestamp_ms,
            SeriesInner::Edited(series) => series.timestamp_ms(),
        }
    }
}

/// Iterator over a series' labels as `(name, value)`.
pub struct Labels<'b> {
    inner: LabelsInner<'b>,
}

enum LabelsInner<'b> {
    Input {
        source: Source<'b>,
        records: promrelay_abi::Labels<'b>,
    },
    Edited(std::slice::Iter<'b, (Text<'b>, Text<'b>)>),
}

impl<'b> Iterator for Labels<'b> {
    type Item = (&'b str, &'b str);

    fn next(&mut self) -> Option<(&'b str, &'b str)> {
        match &mut self.inner {
            LabelsInner::Input { source, records } => {
                let label = records.next()?;
                Some((source.text(label.name), source.text(label.value)))
            }
            LabelsInner::Edited(iter) => iter.next().map(|(n, v)| (n.as_str(), v.as_str())),
        }
    }
}
