//! The poller's scrape: its routing facts and one ABI batch (`promrelay-abi`'s layout), built
//! once by the parser (`exposition::ScrapeWriter`) and read in place by every later stage: the
//! filters get its bytes, a MASK drops series records without touching strings or labels, a
//! REPLACED batch is validated and taken as it is, the staleness tracker hashes it and keeps a
//! copy, the wire compresses it.
//!
//! **Invariant:** the bytes of a [`ScrapeBatch`] are a valid batch: written by the host, or read
//! from a guest and validated (`filter::codec::validate`) before they get here.
//!
//! The model (`model::Scrape`) stays the editing view for the tools, the receiver's older
//! formats and tests: [`ScrapeBatch::from_scrape`] and [`ScrapeBatch::to_scrape`] convert.

use promrelay_abi::{header, BatchReader, FAMILY_LEN, HEADER_LEN, SERIES_LEN};

use crate::filter::codec;
use crate::filter::FilterError;
use crate::model::{Scrape, ScrapeMeta};

/// One scrape as the poller carries it. See the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeBatch {
    pub meta: ScrapeMeta,
    bytes: Vec<u8>,
    series: usize,
}

/// The names of the synthetic families the poller adds to every scrape, in that order.
pub const SYNTHETIC: [&str; 3] = ["up", "scrape_duration_seconds", "scrape_samples_scraped"];

impl ScrapeBatch {
    /// A scrape of the batch `bytes`, which the caller wrote or validated.
    pub fn new(meta: ScrapeMeta, bytes: Vec<u8>) -> ScrapeBatch {
        let series = BatchReader::new(&bytes).map_or(0, |r| r.series_count() as usize);
        debug_assert!(
            BatchReader::new(&bytes).is_ok(),
            "a ScrapeBatch holds a valid batch"
        );
        ScrapeBatch {
            meta,
            bytes,
            series,
        }
    }

    /// The batch of a model scrape (the tools, tests, the explain page).
    pub fn from_scrape(scrape: &Scrape) -> Result<ScrapeBatch, FilterError> {
        Ok(ScrapeBatch::new(
            scrape.meta.clone(),
            codec::encode(scrape)?,
        ))
    }

    /// The model of this scrape: the editing view (cold paths only).
    pub fn to_scrape(&self) -> Scrape {
        Scrape {
            meta: self.meta.clone(),
            families: codec::decode(&self.bytes, codec::MAX_SERIES, usize::MAX).unwrap_or_default(),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn sample_count(&self) -> usize {
        self.series
    }

    /// Replaces the batch with `bytes`, valid (a guest's validated REPLACED output).
    pub fn replace(&mut self, bytes: Vec<u8>) {
        *self = ScrapeBatch::new(std::mem::take(&mut self.meta), bytes);
    }

    /// A reader over the batch, which is valid (the invariant): no second validation pass.
    pub fn reader(&self) -> Option<BatchReader<'_>> {
        BatchReader::trusted(&self.bytes).ok()
    }

    /// The value of the first series of the last family named `name` (the synthetic series
    /// are added last, so found from the end).
    pub fn last_value(&self, name: &str) -> Option<f64> {
        let reader = self.reader()?;
        let family = (0..reader.family_count())
            .rev()
            .filter_map(|index| reader.family(index).ok())
            .find(|family| reader.str(family.name) == Ok(name))?;
        (family.series_count > 0)
            .then(|| reader.series(family.first_series).ok())
            .flatten()
            .map(|series| series.value)
    }

    /// This scrape as a failed one: only its synthetic series, with `up` 0 (what `on_error:
    /// fail` publishes). Reads only the synthetic families (cheap enough to take before a chain
    /// runs, which consumes the scrape).
    pub fn down(&self) -> ScrapeBatch {
        let mut writer = promrelay_abi::BatchWriter::new();
        if let Some(reader) = self.reader() {
            let text = |index: u32| reader.str(index).unwrap_or_default();
            for family in reader.families() {
                let name = text(family.name);
                if !SYNTHETIC.contains(&name) {
                    continue;
                }
                let optional = |index: u32| reader.opt_str(index).ok().flatten();
                let begun = writer.begin_family(
                    name,
                    optional(family.help),
                    optional(family.unit),
                    family.kind,
                );
                if begun.is_err() {
                    continue;
                }
                for index in family.first_series..family.first_series + family.series_count {
                    let Ok(series) = reader.series(index) else {
                        continue;
                    };
                    let labels: Vec<(&str, &str)> = reader
                        .labels(&series)
                        .map(|label| (text(label.name), text(label.value)))
                        .collect();
                    let value = if name == "up" { 0.0 } else { series.value };
                    // Labels as they were: sorted, valid.
                    let _ = writer.add_series(&labels, value, series.timestamp_ms);
                }
            }
        }
        ScrapeBatch::new(self.meta.clone(), writer.finish())
    }

    /// Keeps the series whose bit is set in `mask` (series numbered across families in order)
    /// and drops the families whose series it all dropped; a family that had none stays
    /// (ABI.md §4.5). Rewrites the family and series records only: strings and label records
    /// are copied as they are (the caller checked the mask length).
    pub fn apply_mask(&mut self, mask: &[u8]) {
        let Some(reader) = self.reader() else {
            return;
        };
        let h = *reader.header();
        let canonical = [
            h.strings_offset,
            h.families_offset,
            h.series_offset,
            h.labels_offset,
            h.string_bytes_offset,
            h.total_len,
        ]
        .windows(2)
        .all(|pair| pair[0] <= pair[1]);
        if !canonical {
            // A guest's batch with its sections in another order: through the model.
            let mut scrape = self.to_scrape();
            codec::apply_mask(&mut scrape, mask);
            if let Ok(batch) = ScrapeBatch::from_scrape(&scrape) {
                *self = batch;
            }
            return;
        }
        let mut families: Vec<[u32; 6]> = Vec::with_capacity(h.family_count as usize);
        let mut kept: Vec<u32> = Vec::with_capacity(h.series_count as usize);
        let mut index = 0usize;
        for family in reader.families() {
            let first = kept.len() as u32;
            for series in family.first_series..family.first_series + family.series_count {
                if promrelay_abi::mask_keeps(mask, index) {
                    kept.push(series);
                }
                index += 1;
            }
            let count = kept.len() as u32 - first;
            if count > 0 || family.series_count == 0 {
                families.push([
                    family.name,
                    family.help,
                    family.unit,
                    family.kind.code(),
                    first,
                    count,
                ]);
            }
        }
        let old = &self.bytes;
        let strings = h.strings_offset as usize..h.families_offset as usize;
        let labels = h.labels_offset as usize..h.string_bytes_offset as usize;
        let string_bytes = h.string_bytes_offset as usize..h.total_len as usize;
        let families_offset = HEADER_LEN + strings.len();
        let series_offset = families_offset + families.len() * FAMILY_LEN;
        let labels_offset = series_offset + kept.len() * SERIES_LEN;
        let bytes_offset = labels_offset + labels.len();
        let total = bytes_offset + string_bytes.len();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&old[..HEADER_LEN]);
        out.extend_from_slice(&old[strings]);
        for family in &families {
            for value in family {
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
        let series_start = h.series_offset as usize;
        for &series in &kept {
            let at = series_start + series as usize * SERIES_LEN;
            out.extend_from_slice(&old[at..at + SERIES_LEN]);
        }
        out.extend_from_slice(&old[labels]);
        out.extend_from_slice(&old[string_bytes]);
        for (at, value) in [
            (header::STRINGS_OFFSET, HEADER_LEN),
            (header::FAMILY_COUNT, families.len()),
            (header::SERIES_COUNT, kept.len()),
            (header::FAMILIES_OFFSET, families_offset),
            (header::SERIES_OFFSET, series_offset),
            (header::LABELS_OFFSET, labels_offset),
            (header::STRING_BYTES_OFFSET, bytes_offset),
            (header::TOTAL_LEN, total),
        ] {
            out[at..at + 4].copy_from_slice(&(value as u32).to_le_bytes());
        }
        self.series = kept.len();
        self.bytes = out;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::{LabelLimit, ScrapeWriter};

    fn scrape(text: &str) -> ScrapeBatch {
        let mut writer = ScrapeWriter::new();
        writer.begin([("job", "node"), ("instance", "h:1")]);
        let limit = LabelLimit {
            limit: 64,
            added: &["job", "instance"],
        };
        let samples = writer.parse(text.as_bytes(), limit).expect("parses");
        writer.add_synthetic("up", "up", 1.0).expect("up");
        writer
            .add_synthetic("scrape_samples_scraped", "n", samples as f64)
            .expect("samples");
        let mut bytes = Vec::new();
        writer.finish_into(&mut bytes);
        ScrapeBatch::new(ScrapeMeta::default(), bytes)
    }

    const TEXT: &str = "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"2\"} 2\n# TYPE b counter\nb_total 3\n\
                        # TYPE c gauge\nc 4\nc{y=\"1\"} 5\n";

    #[test]
    fn a_mask_on_the_batch_keeps_what_the_models_mask_keeps() {
        let original = scrape(TEXT);
        let count = original.sample_count();
        assert_eq!(count, 7);
        for pattern in 0u32..(1 << count) {
            let mask: Vec<u8> = (0..count.div_ceil(8))
                .map(|byte| (pattern >> (byte * 8)) as u8)
                .collect();
            let mut batch = original.clone();
            batch.apply_mask(&mask);
            let mut model = original.to_scrape();
            codec::apply_mask(&mut model, &mask);
            assert_eq!(
                batch.sample_count(),
                model.sample_count(),
                "mask {pattern:b}"
            );
            codec::validate(batch.bytes(), codec::MAX_SERIES, 64).expect("a valid batch");
            assert_eq!(
                format!("{:?}", batch.to_scrape()),
                format!("{model:?}"),
                "mask {pattern:b}"
            );
        }
    }

    #[test]
    fn a_failed_scrape_keeps_only_its_synthetic_series_with_up_0() {
        let original = scrape(TEXT);
        assert_eq!(original.last_value("up"), Some(1.0));
        assert_eq!(original.last_value("scrape_samples_scraped"), Some(5.0));
        let down = original.down().to_scrape();
        let names: Vec<&str> = down.families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["up", "scrape_samples_scraped"]);
        let up = &down.families[0].series[0];
        assert_eq!(up.value, 0.0);
        assert_eq!(up.label("instance"), Some("h:1"));
        assert_eq!(down.families[1].series[0].value, 5.0);
    }
}
