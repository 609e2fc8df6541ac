//! Scrape families ↔ ABI v1 batches, and MASK application.
//!
//! Owns the mapping between `crate::model` and the batch layout of `promrelay-abi`: `__name__`
//! becomes a label at its sorted place on the way in and `Series::name` on the way out.
//! Everything decoded is untrusted guest output: the ABI reader checks structure, bounds,
//! indices and UTF-8; `check_names` checks name syntax, sorting, duplicates and `__name__`; this
//! module adds the caps (series, and the job's `label_limit` per series) that keep a hostile batch
//! from costing more than its size.
//!
//! Hot path: [`encode_into`] and [`decode`] run once per filter per scrape; they allocate per
//! distinct string (writer) or per series label vector (model), never per label otherwise.

use std::cell::RefCell;

use promrelay_abi::{BatchReader, BatchWriter, NAME_LABEL};

use super::error::FilterError;
use crate::model::{Family, Label, MetricType, Scrape, Series, Str};

/// Hard cap on the series of any batch read back, whatever the input size.
pub const MAX_SERIES: usize = 1_000_000;

/// The series cap for a filter's output given its input: four times the input, at least 1024,
/// at most [`MAX_SERIES`].
pub fn series_cap(input_series: usize) -> usize {
    input_series.saturating_mul(4).clamp(1024, MAX_SERIES)
}

/// The ABI's metric type of a model type.
pub(crate) fn to_abi(kind: MetricType) -> promrelay_abi::MetricType {
    use promrelay_abi::MetricType as Abi;
    match kind {
        MetricType::Counter => Abi::Counter,
        MetricType::Gauge => Abi::Gauge,
        MetricType::Histogram => Abi::Histogram,
        MetricType::Summary => Abi::Summary,
        MetricType::GaugeHistogram => Abi::GaugeHistogram,
        MetricType::Info => Abi::Info,
        MetricType::StateSet => Abi::StateSet,
        MetricType::Untyped => Abi::Untyped,
    }
}

/// The model's metric type of an ABI type.
pub fn from_abi(kind: promrelay_abi::MetricType) -> MetricType {
    use promrelay_abi::MetricType as Abi;
    match kind {
        Abi::Counter => MetricType::Counter,
        Abi::Gauge => MetricType::Gauge,
        Abi::Histogram => MetricType::Histogram,
        Abi::Summary => MetricType::Summary,
        Abi::GaugeHistogram => MetricType::GaugeHistogram,
        Abi::Info => MetricType::Info,
        Abi::StateSet => MetricType::StateSet,
        Abi::Untyped => MetricType::Untyped,
    }
}

thread_local! {
    // One writer per (blocking) thread, so its tables keep their capacity between scrapes.
    static WRITER: RefCell<BatchWriter> = RefCell::new(BatchWriter::new());
}

/// Encodes the families of `scrape` into `out` (cleared first).
///
/// Fails only on a model that breaks its own invariant (unsorted labels) or passes 4 GiB.
pub fn encode_into(scrape: &Scrape, out: &mut Vec<u8>) -> Result<(), FilterError> {
    WRITER.with(|writer| {
        let mut writer = writer.borrow_mut();
        writer.clear();
        let host = |e: promrelay_abi::WriteError| FilterError::Host(format!("encoding batch: {e}"));
        for family in &scrape.families {
            writer
                .begin_family(
                    &family.name,
                    family.help.as_deref(),
                    family.unit.as_deref(),
                    to_abi(family.kind),
                )
                .map_err(host)?;
            // Hot path: per series, labels are borrowed and interned, nothing is allocated.
            for series in &family.series {
                writer
                    .add_series_named(
                        &series.name,
                        series
                            .labels
                            .iter()
                            .map(|l| (l.name.as_str(), l.value.as_str())),
                        series.value,
                        series.timestamp_ms,
                    )
                    .map_err(host)?;
            }
        }
        writer.finish_into(out);
        Ok(())
    })
}

/// Encodes `scrape` into a new buffer.
pub fn encode(scrape: &Scrape) -> Result<Vec<u8>, FilterError> {
    let mut out = Vec::new();
    encode_into(scrape, &mut out)?;
    Ok(out)
}

fn invalid(e: promrelay_abi::BatchError) -> FilterError {
    FilterError::invalid(e.to_string())
}

/// Validates a batch from a guest (structure, bounds, UTF-8, names, the caps) without building
/// anything: what a REPLACED output passes before it becomes the next stage's input as it is.
/// `label_limit` is the job's `label_limit`, counted as the parser counts it (every label record
/// of a series, `__name__` and the target labels included; see `model::DEFAULT_LABEL_LIMIT`), so
/// a batch handed back unchanged always passes. Returns its series count.
pub fn validate(bytes: &[u8], series_cap: usize, label_limit: usize) -> Result<usize, FilterError> {
    let reader = BatchReader::new(bytes).map_err(invalid)?;
    check(&reader, series_cap, label_limit)?;
    Ok(reader.series_count() as usize)
}

fn check(
    reader: &BatchReader<'_>,
    series_cap: usize,
    label_limit: usize,
) -> Result<(), FilterError> {
    let series_count = reader.series_count() as usize;
    if series_count > series_cap {
        return Err(FilterError::invalid(format!(
            "batch holds {series_count} series, more than the cap of {series_cap}"
        )));
    }
    // Label ranges may overlap, so a small batch could name billions of labels: cap per series
    // before anything walks them.
    for index in 0..reader.series_count() {
        let series = reader.series(index).map_err(invalid)?;
        if series.label_count as usize > label_limit {
            return Err(FilterError::invalid(format!(
                "series {index} has {} labels (counting __name__ and the target labels), more \
                 than the job's label_limit of {label_limit}",
                series.label_count
            )));
        }
    }
    reader.check_names().map_err(invalid)
}

/// Validates a batch like [`validate`] and decodes it into families (the model: the editing
/// view of the tools, the receiver and tests).
pub fn decode(
    bytes: &[u8],
    series_cap: usize,
    label_limit: usize,
) -> Result<Vec<Family>, FilterError> {
    let reader = BatchReader::new(bytes).map_err(invalid)?;
    check(&reader, series_cap, label_limit)?;
    // Every string was UTF-8-checked by the reader; resolve each once.
    let strings = (0..reader.string_count())
        .map(|i| reader.str(i))
        .collect::<Result<Vec<&str>, _>>()
        .map_err(invalid)?;
    let text = |index: u32| strings[index as usize];
    let optional = |index: u32| (index != promrelay_abi::NONE).then(|| Str::from(text(index)));
    let mut families = Vec::with_capacity(reader.family_count() as usize);
    for record in reader.families() {
        let mut series = Vec::with_capacity(record.series_count as usize);
        for index in record.first_series..record.first_series + record.series_count {
            let sample = reader.series(index).map_err(invalid)?;
            let label_records = reader.labels(&sample);
            let mut labels = Vec::with_capacity(label_records.len().saturating_sub(1));
            let mut name = Str::default();
            for label in label_records {
                let label_name = text(label.name);
                if label_name == NAME_LABEL {
                    name = Str::from(text(label.value));
                } else {
                    labels.push(Label::new(label_name, text(label.value)));
                }
            }
            series.push(Series {
                name,
                labels,
                value: sample.value,
                timestamp_ms: sample.timestamp_ms,
            });
        }
        families.push(Family {
            name: Str::from(text(record.name)),
            help: optional(record.help),
            unit: optional(record.unit),
            kind: from_abi(record.kind),
            series,
        });
    }
    Ok(families)
}

/// Keeps the series whose bit is set in `mask` (series numbered across families in order) and
/// drops the families whose series it all dropped; a family that had none stays (ABI.md §4.5:
/// an all-keep MASK means PASS). The caller has checked the mask length.
pub fn apply_mask(scrape: &mut Scrape, mask: &[u8]) {
    let mut index = 0usize;
    scrape.families.retain_mut(|family| {
        if family.series.is_empty() {
            return true;
        }
        family.series.retain(|_| {
            let keep = promrelay_abi::mask_keeps(mask, index);
            index += 1;
            keep
        });
        !family.series.is_empty()
    });
}
