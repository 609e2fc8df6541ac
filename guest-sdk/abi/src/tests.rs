//! Round trips and one test per way a batch can be corrupt.
#![allow(clippy::unwrap_used)]

use alloc::string::ToString;
use alloc::vec::Vec;

use crate::*;

fn sample() -> Vec<u8> {
    let mut w = BatchWriter::new();
    w.begin_family("up", Some("Target is up."), None, MetricType::Gauge)
        .unwrap();
    w.add_series(
        &[("__name__", "up"), ("instance", "a:1"), ("job", "node")],
        1.0,
        None,
    )
    .unwrap();
    w.add_series(
        &[("__name__", "up"), ("instance", "b:1"), ("job", "node")],
        0.0,
        Some(42),
    )
    .unwrap();
    w.begin_family("rpc", None, Some("seconds"), MetricType::Histogram)
        .unwrap();
    w.add_series_named(
        "rpc_bucket",
        [("Zone", "eu"), ("le", "+Inf")],
        7.0,
        Some(-5),
    )
    .unwrap();
    w.begin_family("empty", None, None, MetricType::Untyped)
        .unwrap();
    w.finish()
}

fn set_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn get_u32(bytes: &[u8], at: usize) -> u32 {
    crate::reader::read_u32(bytes, at)
}

fn labels_of(r: &BatchReader<'_>, index: u32) -> Vec<(&'static str, &'static str)> {
    let s = r.series(index).unwrap();
    r.labels(&s)
        .map(|l| {
            let name: &'static str = alloc::boxed::Box::leak(r.str(l.name).unwrap().into());
            let value: &'static str = alloc::boxed::Box::leak(r.str(l.value).unwrap().into());
            (name, value)
        })
        .collect()
}

#[test]
fn roundtrip_preserves_families_series_labels_and_values() {
    let bytes = sample();
    let r = BatchReader::new(&bytes).unwrap();
    r.check_names().unwrap();
    assert_eq!((r.family_count(), r.series_count()), (3, 3));
    let f0 = r.family(0).unwrap();
    assert_eq!(r.str(f0.name).unwrap(), "up");
    assert_eq!(r.opt_str(f0.help).unwrap(), Some("Target is up."));
    assert_eq!(r.opt_str(f0.unit).unwrap(), None);
    assert_eq!(
        (f0.kind, f0.first_series, f0.series_count),
        (MetricType::Gauge, 0, 2)
    );
    let f1 = r.family(1).unwrap();
    assert_eq!(r.opt_str(f1.unit).unwrap(), Some("seconds"));
    assert_eq!(
        (f1.kind, f1.first_series, f1.series_count),
        (MetricType::Histogram, 2, 1)
    );
    let f2 = r.family(2).unwrap();
    assert_eq!((f2.first_series, f2.series_count), (3, 0));

    assert_eq!(
        labels_of(&r, 0),
        [("__name__", "up"), ("instance", "a:1"), ("job", "node")]
    );
    assert_eq!(r.series(0).unwrap().timestamp_ms, None);
    assert_eq!(r.series(1).unwrap().timestamp_ms, Some(42));
    // Upper-case names sort before `__name__`, lower-case after: the writer merges it in place.
    assert_eq!(
        labels_of(&r, 2),
        [("Zone", "eu"), ("__name__", "rpc_bucket"), ("le", "+Inf")]
    );
    assert_eq!(r.series(2).unwrap().timestamp_ms, Some(-5));
    assert_eq!(r.families().count(), 3);
}

#[test]
fn strings_are_stored_once() {
    let bytes = sample();
    let r = BatchReader::new(&bytes).unwrap();
    let all: Vec<&str> = (0..r.string_count()).map(|i| r.str(i).unwrap()).collect();
    let mut unique = all.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(all.len(), unique.len());
    assert!(all.contains(&"node"));
}

#[test]
fn interner_survives_growth() {
    let mut w = BatchWriter::new();
    w.begin_family("m", None, None, MetricType::Gauge).unwrap();
    for i in 0..5000 {
        let value = i.to_string();
        w.add_series(&[("__name__", "m"), ("i", &value)], f64::from(i), None)
            .unwrap();
    }
    for i in 0..5000 {
        assert_eq!(
            w.add_string(&i.to_string()).unwrap(),
            w.add_string(&i.to_string()).unwrap()
        );
    }
    assert_eq!(w.string_count(), 5000 + 3);
    let bytes = w.finish();
    let r = BatchReader::new(&bytes).unwrap();
    r.check_names().unwrap();
    assert_eq!(labels_of(&r, 4321)[1], ("i", "4321"));
}

#[test]
fn special_values_survive_bit_for_bit() {
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let mut w = BatchWriter::new();
    w.begin_family("v", None, None, MetricType::Untyped)
        .unwrap();
    for value in [
        stale,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        f64::MIN_POSITIVE,
    ] {
        w.add_series(&[("__name__", "v")], value, None).unwrap();
    }
    let bytes = w.finish();
    let r = BatchReader::new(&bytes).unwrap();
    assert_eq!(r.series(0).unwrap().value.to_bits(), stale.to_bits());
    assert_eq!(r.series(3).unwrap().value.to_bits(), (-0.0f64).to_bits());
}

#[test]
fn empty_batch_is_valid() {
    let bytes = BatchWriter::new().finish();
    let r = BatchReader::new(&bytes).unwrap();
    r.check_names().unwrap();
    assert_eq!((r.family_count(), r.series_count()), (0, 0));
}

#[test]
fn writer_is_reusable_after_clear() {
    let mut w = BatchWriter::new();
    w.begin_family("a", None, None, MetricType::Gauge).unwrap();
    w.add_series(&[("__name__", "a")], 1.0, None).unwrap();
    w.clear();
    w.begin_family("b", None, None, MetricType::Gauge).unwrap();
    w.add_series(&[("__name__", "b")], 2.0, None).unwrap();
    let mut out = Vec::new();
    w.finish_into(&mut out);
    let r = BatchReader::new(&out).unwrap();
    assert_eq!(r.string_count(), 2);
    assert_eq!(labels_of(&r, 0), [("__name__", "b")]);
}

#[test]
fn writer_refuses_bad_input() {
    let mut w = BatchWriter::new();
    assert_eq!(
        w.add_series(&[("__name__", "a")], 1.0, None),
        Err(WriteError::NoFamily)
    );
    w.begin_family("a", None, None, MetricType::Gauge).unwrap();
    assert_eq!(
        w.add_series(&[("b", "1"), ("a", "2")], 1.0, None),
        Err(WriteError::UnsortedLabels)
    );
    assert_eq!(
        w.add_series(&[("a", "1"), ("a", "2")], 1.0, None),
        Err(WriteError::UnsortedLabels)
    );
    assert_eq!(
        w.add_series_named("a", [("__name__", "x")], 1.0, None),
        Err(WriteError::UnsortedLabels)
    );
    assert_eq!(
        w.add_series_indices(&[LabelRecord { name: 0, value: 99 }], 1.0, None),
        Err(WriteError::NoSuchString { index: 99 })
    );
    assert_eq!(w.series_count(), 0);
    assert!(BatchReader::new(&w.finish()).is_ok());
}

#[test]
fn mask_keeps_all_looks_only_at_the_series_bits() {
    assert!(mask_keeps_all(&[], 0));
    assert!(mask_keeps_all(&[0xFF], 8));
    assert!(mask_keeps_all(&[0xFF, 0b0000_0011], 10));
    assert!(
        mask_keeps_all(&[0xFF, 0b1111_0011], 10),
        "bits past the series are ignored"
    );
    assert!(!mask_keeps_all(&[0xFF, 0b0000_0001], 10));
    assert!(!mask_keeps_all(&[0xFE, 0xFF], 10));
    assert!(!mask_keeps_all(&[0xFF], 10), "too short");
}

#[test]
fn mask_bits_are_lsb_first() {
    let mut mask = [0u8; 2];
    assert_eq!(mask_len(9), 2);
    assert_eq!(mask_len(0), 0);
    mask_set(&mut mask, 0, true);
    mask_set(&mut mask, 9, true);
    assert_eq!(mask, [0b0000_0001, 0b0000_0010]);
    assert!(mask_keeps(&mask, 9));
    assert!(!mask_keeps(&mask, 1));
    assert!(!mask_keeps(&mask, 100));
    mask_set(&mut mask, 9, false);
    assert_eq!(mask, [1, 0]);
}

fn corrupt(edit: impl FnOnce(&mut Vec<u8>)) -> BatchError {
    let mut bytes = sample();
    edit(&mut bytes);
    BatchReader::new(&bytes).unwrap_err()
}

fn offset_of(bytes: &[u8], field: usize) -> usize {
    get_u32(bytes, field) as usize
}

#[test]
fn every_structural_corruption_is_rejected() {
    assert_eq!(
        corrupt(|b| b.truncate(47)),
        BatchError::Truncated { len: 47 }
    );
    assert_eq!(corrupt(|b| b[0] = b'X'), BatchError::BadMagic);
    assert_eq!(
        corrupt(|b| set_u32(b, header::VERSION, 2)),
        BatchError::UnsupportedVersion { version: 2 }
    );
    assert!(matches!(
        corrupt(|b| {
            b.pop();
        }),
        BatchError::LengthMismatch { .. }
    ));
    assert!(matches!(
        corrupt(|b| b.push(0)),
        BatchError::LengthMismatch { .. }
    ));
    assert!(matches!(
        corrupt(|b| {
            let v = get_u32(b, header::SERIES_OFFSET) + 4;
            set_u32(b, header::SERIES_OFFSET, v)
        }),
        BatchError::Misaligned {
            section: "series",
            ..
        }
    ));
    assert!(matches!(
        corrupt(|b| set_u32(b, header::STRING_BYTES_OFFSET, 1 << 20)),
        BatchError::SectionOutOfBounds {
            section: "string bytes"
        }
    ));
    assert!(matches!(
        corrupt(|b| set_u32(b, header::LABEL_COUNT, 1_000_000)),
        BatchError::SectionOutOfBounds { section: "labels" }
    ));
    assert!(matches!(
        corrupt(|b| set_u32(b, header::STRINGS_OFFSET, 0)),
        BatchError::SectionOutOfBounds { section: "strings" }
    ));
    assert!(matches!(
        corrupt(|b| {
            let v = get_u32(b, header::STRINGS_OFFSET);
            set_u32(b, header::FAMILIES_OFFSET, v)
        }),
        BatchError::SectionsOverlap { .. }
    ));
    // A huge count must not overflow the bounds arithmetic.
    assert!(matches!(
        corrupt(|b| set_u32(b, header::SERIES_COUNT, u32::MAX)),
        BatchError::SectionOutOfBounds { .. }
    ));
}

#[test]
fn every_string_corruption_is_rejected() {
    assert_eq!(
        corrupt(|b| {
            let at = offset_of(b, header::STRINGS_OFFSET) + 3 * STRING_ENTRY_LEN;
            set_u32(b, at + 4, 10_000);
        }),
        BatchError::StringOutOfBounds { index: 3 }
    );
    assert_eq!(
        corrupt(|b| {
            let at = offset_of(b, header::STRINGS_OFFSET) + 3 * STRING_ENTRY_LEN;
            set_u32(b, at, u32::MAX);
        }),
        BatchError::StringOutOfBounds { index: 3 }
    );
    assert_eq!(
        corrupt(|b| {
            let entry = offset_of(b, header::STRINGS_OFFSET) + STRING_ENTRY_LEN;
            let start = offset_of(b, header::STRING_BYTES_OFFSET) + get_u32(b, entry) as usize;
            b[start] = 0xFF;
        }),
        BatchError::BadUtf8 { index: 1 }
    );
}

#[test]
fn every_record_corruption_is_rejected() {
    let count = {
        let bytes = sample();
        BatchReader::new(&bytes).unwrap().string_count()
    };
    let family = |b: &Vec<u8>, i: usize| offset_of(b, header::FAMILIES_OFFSET) + i * FAMILY_LEN;
    let series = |b: &Vec<u8>, i: usize| offset_of(b, header::SERIES_OFFSET) + i * SERIES_LEN;
    let label = |b: &Vec<u8>, i: usize| offset_of(b, header::LABELS_OFFSET) + i * LABEL_LEN;
    assert_eq!(
        corrupt(|b| {
            let at = family(b, 0) + family::NAME;
            set_u32(b, at, count)
        }),
        BatchError::NoSuchString {
            index: count,
            count
        }
    );
    assert_eq!(
        corrupt(|b| {
            let at = family(b, 1) + family::HELP;
            set_u32(b, at, count + 7)
        }),
        BatchError::NoSuchString {
            index: count + 7,
            count
        }
    );
    assert_eq!(
        corrupt(|b| {
            let at = family(b, 0) + family::TYPE;
            set_u32(b, at, 8)
        }),
        BatchError::BadType { family: 0, code: 8 }
    );
    assert_eq!(
        corrupt(|b| {
            let at = family(b, 1) + family::FIRST_SERIES;
            set_u32(b, at, 1)
        }),
        BatchError::BadFamilyRange { family: 1 }
    );
    assert_eq!(
        corrupt(|b| {
            let at = family(b, 2) + family::SERIES_COUNT;
            set_u32(b, at, 1)
        }),
        BatchError::BadFamilyRange { family: 2 }
    );
    assert_eq!(
        corrupt(|b| {
            let at = family(b, 1) + family::SERIES_COUNT;
            set_u32(b, at, 0)
        }),
        BatchError::BadFamilyRange { family: 2 }
    );
    assert_eq!(
        corrupt(|b| {
            let (one, two) = (family(b, 1), family(b, 2));
            set_u32(b, one + family::SERIES_COUNT, 0);
            set_u32(b, two + family::FIRST_SERIES, 2);
        }),
        BatchError::OrphanSeries {
            covered: 2,
            count: 3
        }
    );
    assert_eq!(
        corrupt(|b| {
            let at = series(b, 1) + series::LABEL_COUNT;
            set_u32(b, at, 100)
        }),
        BatchError::BadLabelRange { series: 1 }
    );
    assert_eq!(
        corrupt(|b| {
            let at = series(b, 1) + series::FIRST_LABEL;
            set_u32(b, at, u32::MAX)
        }),
        BatchError::BadLabelRange { series: 1 }
    );
    assert_eq!(
        corrupt(|b| {
            let at = series(b, 0) + series::FLAGS;
            set_u32(b, at, 2)
        }),
        BatchError::BadFlags { series: 0 }
    );
    assert_eq!(
        corrupt(|b| {
            let at = series(b, 0) + series::RESERVED;
            set_u32(b, at, 1)
        }),
        BatchError::BadFlags { series: 0 }
    );
    assert_eq!(
        corrupt(|b| {
            let at = label(b, 4) + 4;
            set_u32(b, at, u32::MAX)
        }),
        BatchError::NoSuchString {
            index: u32::MAX,
            count
        }
    );
}

#[test]
fn accessors_refuse_indices_past_the_end() {
    let bytes = sample();
    let r = BatchReader::new(&bytes).unwrap();
    assert!(matches!(
        r.family(3),
        Err(BatchError::NoSuchFamily { index: 3, count: 3 })
    ));
    assert!(matches!(
        r.series(3),
        Err(BatchError::NoSuchSeries { index: 3, count: 3 })
    ));
    assert!(matches!(r.str(1000), Err(BatchError::NoSuchString { .. })));
    assert_eq!(r.opt_str(NONE).unwrap(), None);
}

fn build(labels: &[(&str, &str)], family: &str) -> Vec<u8> {
    let mut w = BatchWriter::new();
    w.begin_family(family, None, None, MetricType::Gauge)
        .unwrap();
    let indices: Vec<LabelRecord> = labels
        .iter()
        .map(|(n, v)| LabelRecord {
            name: w.add_string(n).unwrap(),
            value: w.add_string(v).unwrap(),
        })
        .collect();
    w.add_series_indices(&indices, 1.0, None).unwrap();
    w.finish()
}

#[test]
fn every_naming_violation_is_rejected() {
    let check = |labels: &[(&str, &str)], family: &str| {
        let bytes = build(labels, family);
        BatchReader::new(&bytes).unwrap().check_names()
    };
    assert_eq!(check(&[("__name__", "m"), ("a", "1")], "m"), Ok(()));
    assert!(matches!(
        check(&[("__name__", "m"), ("a-b", "1")], "m"),
        Err(BatchError::BadLabelName { series: 0, .. })
    ));
    assert!(matches!(
        check(&[("__name__", "m"), ("", "1")], "m"),
        Err(BatchError::BadLabelName { .. })
    ));
    assert_eq!(
        check(&[("b", "1"), ("__name__", "m")], "m"),
        Err(BatchError::UnsortedLabels { series: 0 })
    );
    assert_eq!(
        check(&[("__name__", "m"), ("a", "1"), ("a", "2")], "m"),
        Err(BatchError::UnsortedLabels { series: 0 })
    );
    assert_eq!(
        check(&[("a", "1")], "m"),
        Err(BatchError::MissingName { series: 0 })
    );
    assert!(matches!(
        check(&[("__name__", "1m")], "m"),
        Err(BatchError::BadMetricName { .. })
    ));
    assert!(matches!(
        check(&[("__name__", "m")], "m m"),
        Err(BatchError::BadMetricName { .. })
    ));
    assert_eq!(check(&[("__name__", "a:b_c")], "a:b"), Ok(()));
}

#[test]
fn no_single_byte_corruption_panics() {
    let good = sample();
    for at in 0..good.len() {
        for value in [0u8, 1, 0x7F, 0xFF] {
            let mut bytes = good.clone();
            bytes[at] = value;
            if let Ok(r) = BatchReader::new(&bytes) {
                let _ = r.check_names();
                for f in r.families() {
                    let _ = (r.str(f.name), r.opt_str(f.help), r.opt_str(f.unit));
                }
                for i in 0..r.series_count() {
                    let s = r.series(i).unwrap();
                    for l in r.labels(&s) {
                        r.str(l.name).unwrap();
                        r.str(l.value).unwrap();
                    }
                }
            }
        }
    }
}

#[test]
fn errors_read_well() {
    let text = BatchError::BadLabelName {
        series: 3,
        string: 9,
    }
    .to_string();
    assert_eq!(text, "series 3: string 9 is not a valid label name");
    assert_eq!(
        WriteError::NoFamily.to_string(),
        "series added before any family"
    );
}

#[test]
fn series_added_to_families_apart_are_listed_together_in_the_order_added() {
    let mut w = BatchWriter::new();
    w.begin_family("a", None, None, MetricType::Gauge).unwrap();
    w.begin_family("b", None, None, MetricType::Counter)
        .unwrap();
    let name = w.add_string("__name__").unwrap();
    let (a, b) = (w.add_string("a").unwrap(), w.add_string("b").unwrap());
    let label = |value| [LabelRecord { name, value }];
    for (family, value, sample) in [(0, a, 1.0), (1, b, 2.0), (0, a, 3.0), (1, b, 4.0)] {
        w.add_series_indices_to(family, &label(value), sample, None)
            .unwrap();
    }
    let help = w.add_string("help of a").unwrap();
    w.set_family(0, help, NONE, MetricType::Summary).unwrap();
    let bytes = w.finish();
    let batch = BatchReader::new(&bytes).unwrap();
    batch.check_names().unwrap();
    let families: Vec<_> = batch.families().collect();
    assert_eq!((families[0].first_series, families[0].series_count), (0, 2));
    assert_eq!((families[1].first_series, families[1].series_count), (2, 2));
    assert_eq!(families[0].kind, MetricType::Summary);
    assert_eq!(batch.str(families[0].help).unwrap(), "help of a");
    let values: Vec<f64> = (0..4).map(|i| batch.series(i).unwrap().value).collect();
    assert_eq!(values, [1.0, 3.0, 2.0, 4.0]);
    assert_eq!(
        w.add_series_indices_to(2, &label(a), 0.0, None),
        Err(WriteError::NoFamily)
    );
    assert_eq!(
        w.add_series_indices_to(0, &label(99), 0.0, None),
        Err(WriteError::NoSuchString { index: 99 })
    );
}

#[test]
fn a_writer_reused_for_records_keeps_its_strings_and_counts_the_unused_ones() {
    let mut w = BatchWriter::new();
    w.begin_family("up", None, None, MetricType::Gauge).unwrap();
    w.add_series(&[("__name__", "up"), ("job", "x")], 1.0, None)
        .unwrap();
    let strings = w.string_count();
    assert_eq!(w.unused_strings(), 0);
    w.clear_records();
    assert_eq!(w.string_count(), strings, "strings kept");
    assert_eq!(w.unused_strings(), strings, "none used yet");
    w.begin_family("up", None, None, MetricType::Gauge).unwrap();
    w.add_series(&[("__name__", "up"), ("job", "y")], 1.0, None)
        .unwrap();
    // "x" is left over from the first batch; every other string was used again.
    assert_eq!(w.unused_strings(), 1);
    let bytes = w.finish();
    let batch = BatchReader::new(&bytes).unwrap();
    assert_eq!(batch.family_count(), 1);
    assert_eq!(batch.series_count(), 1);
    w.clear();
    assert_eq!(w.unused_strings(), 0);
}
