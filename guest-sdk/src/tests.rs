//! How a batch becomes PASS, MASK or REPLACED, and the runtime's error paths.
#![allow(clippy::unwrap_used, clippy::unit_arg)]

use promrelay_abi::{status, BatchReader};

use crate::testing::{apply, batch_from_text, text_from_batch, Harness, Outcome};
use crate::{Batch, Error, Filter, MetricType};

const SCRAPE: &str = "\
# HELP up Target is up.
# TYPE up gauge
up{job=\"a\"} 1
up{job=\"b\"} 0
# TYPE rpc_seconds histogram
rpc_seconds_bucket{le=\"1\"} 1
rpc_seconds_bucket{le=\"+Inf\"} 2
rpc_seconds_sum 0.5
rpc_seconds_count 2
# TYPE empty counter
";

/// A filter whose behaviour is a closure, so each test states it inline.
struct With(fn(&mut Batch<'_>) -> Result<(), Error>);

impl Filter for With {
    type Config = serde::de::IgnoredAny;
    fn init(_: Self::Config) -> Result<Self, Error> {
        Ok(With(|_| Ok(())))
    }
    fn process(&mut self, batch: &mut Batch<'_>) -> Result<(), Error> {
        (self.0)(batch)
    }
}

fn outcome(edit: fn(&mut Batch<'_>) -> Result<(), Error>) -> (Outcome, String) {
    let mut harness = Harness::<With>::new("null").unwrap();
    harness.runtime_filter(With(edit));
    let input = batch_from_text(SCRAPE).unwrap();
    let outcome = harness.process(&input).unwrap();
    let text = text_from_batch(&apply(&input, &outcome).unwrap()).unwrap();
    (outcome, text)
}

#[test]
fn untouched_batch_is_pass() {
    assert_eq!(outcome(|_| Ok(())).0, Outcome::Pass);
    assert_eq!(outcome(|b| Ok(b.retain(|_| true))).0, Outcome::Pass);
}

#[test]
fn retain_answers_with_a_mask() {
    let (result, text) = outcome(|b| Ok(b.retain(|s| s.label("job") != Some("b"))));
    assert_eq!(result, Outcome::Mask(vec![0b0011_1101]));
    assert!(!text.contains("job=\"b\""));
    assert!(text.contains("rpc_seconds_count 2"));
}

#[test]
fn editing_without_a_change_is_still_pass_or_mask() {
    assert_eq!(
        outcome(|b| Ok(b.series_mut().for_each(|_| ()))).0,
        Outcome::Pass
    );
    let same = |b: &mut Batch<'_>| {
        b.series_mut()
            .for_each(|s| s.set_label("job", s.label("job").unwrap_or("").to_owned().as_str()));
        Ok(())
    };
    assert_eq!(outcome(same).0, Outcome::Pass);
    let drop_only = |b: &mut Batch<'_>| Ok(b.retain_mut(|s| s.name() != "rpc_seconds_sum"));
    assert_eq!(outcome(drop_only).0, Outcome::Mask(vec![0b0010_1111]));
}

#[test]
fn a_change_answers_with_a_new_batch() {
    let (result, text) = outcome(|b| {
        b.retain(|s| s.label("job") != Some("a"));
        for s in b.series_mut() {
            s.set_label("site", "x");
        }
        Ok(())
    });
    assert!(matches!(result, Outcome::Replaced(_)));
    assert_eq!(
        text,
        "# HELP up Target is up.\n# TYPE up gauge\nup{job=\"b\",site=\"x\"} 0\n\
         # TYPE rpc_seconds histogram\n\
         rpc_seconds_bucket{le=\"1\",site=\"x\"} 1\nrpc_seconds_bucket{le=\"+Inf\",site=\"x\"} 2\n\
         rpc_seconds_sum{site=\"x\"} 0.5\nrpc_seconds_count{site=\"x\"} 2\n# TYPE empty counter\n"
    );
}

#[test]
fn emptied_families_go_and_empty_ones_stay() {
    let (_, text) = outcome(|b| {
        b.retain(|s| !s.name().starts_with("rpc"));
        b.series_mut().for_each(|s| s.set_value(5.0));
        Ok(())
    });
    assert!(!text.contains("rpc_seconds"), "{text}");
    assert!(text.ends_with("# TYPE empty counter\n"), "{text}");
}

#[test]
fn reordering_series_is_a_new_batch() {
    let (result, text) = outcome(|b| {
        b.families_mut().for_each(|f| f.series.reverse());
        Ok(())
    });
    assert!(matches!(result, Outcome::Replaced(_)));
    assert!(
        text.contains("up{job=\"b\"} 0\nup{job=\"a\"} 1\n"),
        "{text}"
    );
}

#[test]
fn added_series_and_renamed_metrics() {
    let (_, text) = outcome(|b| {
        b.rename_metric("rpc_seconds", "rpc_duration_seconds");
        b.add_series("up", &[("job", "c")], 1.0);
        b.add_series("relay_note", &[("Zone", "eu"), ("a", "1")], 2.0)
            .set_timestamp_ms(Some(7));
        Ok(())
    });
    assert!(
        text.contains("up{job=\"b\"} 0\nup{job=\"c\"} 1\n"),
        "added to the existing family: {text}"
    );
    assert!(text.contains(
        "# TYPE rpc_duration_seconds histogram\nrpc_duration_seconds_bucket{le=\"1\"} 1\n"
    ));
    assert!(text.contains("rpc_duration_seconds_count 2\n"));
    assert!(
        text.ends_with("relay_note{Zone=\"eu\",a=\"1\"} 2 7\n"),
        "{text}"
    );
}

#[test]
fn renaming_an_absent_metric_changes_nothing() {
    assert_eq!(
        outcome(|b| Ok(b.rename_metric("absent", "other"))).0,
        Outcome::Pass
    );
}

#[test]
fn family_metadata_edits() {
    let (_, text) = outcome(|b| {
        for family in b.families_mut() {
            if family.name() == "up" {
                family.set_help(None);
                family.set_kind(MetricType::Untyped);
            }
        }
        Ok(())
    });
    assert!(text.starts_with("up{job=\"a\"} 1\n"), "{text}");
}

#[test]
fn values_and_timestamps_survive_bit_for_bit() {
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let input = batch_from_text("a 1 100\nb +Inf\nc -Inf\n").unwrap();
    let mut harness = Harness::<With>::new("null").unwrap();
    harness.runtime_filter(With(|b| {
        b.series_mut().for_each(|s| {
            if s.name() == "a" {
                s.set_value(f64::from_bits(0x7ff0_0000_0000_0002));
            }
        });
        Ok(())
    }));
    let Outcome::Replaced(out) = harness.process(&input).unwrap() else {
        panic!("expected REPLACED")
    };
    let reader = BatchReader::new(&out).unwrap();
    let a = reader.series(0).unwrap();
    assert_eq!(
        (a.value.to_bits(), a.timestamp_ms),
        (stale.to_bits(), Some(100))
    );
    assert_eq!(reader.series(1).unwrap().value, f64::INFINITY);
    assert_eq!(reader.series(2).unwrap().value, f64::NEG_INFINITY);
}

#[test]
fn invalid_names_fail_with_the_name() {
    let mut harness = Harness::<With>::new("null").unwrap();
    harness.runtime_filter(With(|b| {
        b.series_mut().for_each(|s| s.set_label("bad-name", "1"));
        Ok(())
    }));
    let error = harness
        .process(&batch_from_text(SCRAPE).unwrap())
        .unwrap_err()
        .to_string();
    assert_eq!(error, "error: \"bad-name\" is not a valid label name");
    harness.runtime_filter(With(|b| {
        b.series_mut().for_each(|s| s.set_name("9lives"));
        Ok(())
    }));
    let error = harness
        .process(&batch_from_text(SCRAPE).unwrap())
        .unwrap_err()
        .to_string();
    assert_eq!(error, "error: \"9lives\" is not a valid metric name");
}

#[test]
fn errors_and_panics_carry_their_message() {
    let mut harness = Harness::<With>::new("null").unwrap();
    harness.runtime_filter(With(|_| Err(Error::new("nope"))));
    let input = batch_from_text(SCRAPE).unwrap();
    assert_eq!(
        harness.process(&input).unwrap_err().to_string(),
        "error: nope"
    );
    harness.runtime_filter(With(|_| panic!("boom {}", 42)));
    let error = harness.process(&input).unwrap_err().to_string();
    assert!(error.starts_with("panic: panicked at "), "{error}");
    assert!(error.ends_with(": boom 42"), "{error}");
    // The instance keeps working after a caught panic (native only; on wasm it traps).
    harness.runtime_filter(With(|_| Ok(())));
    assert_eq!(harness.process(&input).unwrap(), Outcome::Pass);
}

#[test]
fn unreadable_input_is_bad_input() {
    let mut harness = Harness::<With>::new("null").unwrap();
    let error = harness.process(b"not a batch").unwrap_err().to_string();
    assert!(error.starts_with("bad input: unreadable batch:"), "{error}");
}

#[derive(Debug, serde::Deserialize)]
struct Defaults {
    #[serde(default)]
    limit: u32,
}

struct Configured(u32);

impl Filter for Configured {
    type Config = Defaults;
    fn init(config: Defaults) -> Result<Self, Error> {
        if config.limit > 10 {
            return Err(Error::new("limit: at most 10"));
        }
        Ok(Configured(config.limit))
    }
    fn process(&mut self, batch: &mut Batch<'_>) -> Result<(), Error> {
        batch.add_series("limit", &[], f64::from(self.0));
        Ok(())
    }
}

#[test]
fn config_null_falls_back_to_defaults() {
    let mut harness = Harness::<Configured>::new("null").unwrap();
    assert_eq!(harness.process_text("").unwrap(), "limit 0\n");
    let mut harness = Harness::<Configured>::new("{}").unwrap();
    assert_eq!(harness.process_text("").unwrap(), "limit 0\n");
    let mut harness = Harness::<Configured>::new(r#"{"limit": 3}"#).unwrap();
    assert_eq!(harness.process_text("").unwrap(), "limit 3\n");
}

struct Unit;

impl Filter for Unit {
    type Config = ();
    fn init(_: ()) -> Result<Self, Error> {
        Ok(Unit)
    }
    fn process(&mut self, _: &mut Batch<'_>) -> Result<(), Error> {
        Ok(())
    }
}

#[test]
fn unit_config_accepts_no_config() {
    assert!(Harness::<Unit>::new("{}").is_ok());
    assert!(Harness::<Unit>::new("null").is_ok());
    assert!(Harness::<Unit>::new("[1]").is_err());
}

#[test]
fn config_errors_are_bad_config() {
    let error = Harness::<Configured>::new(r#"{"limit": "x"}"#)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        error,
        "bad config: invalid type: string \"x\", expected u32"
    );
    let error = Harness::<Configured>::new(r#"{"limit": 11}"#)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(error, "bad config: limit: at most 10");
}

#[test]
fn process_before_init_is_an_error() {
    let mut runtime = crate::runtime::Runtime::<Configured>::new();
    let bytes = batch_from_text("up 1\n").unwrap();
    runtime.reserve(bytes.len()).unwrap()[..bytes.len()].copy_from_slice(&bytes);
    assert_eq!(runtime.process(bytes.len()), status::ERROR);
    assert_eq!(runtime.output(), b"process called before a successful init");
}

#[test]
fn text_roundtrip_keeps_escapes_and_label_order() {
    let text = "# HELP m A \\\\ help\\nline.\n# TYPE m counter\n\
                m_total{Zone=\"eu\",path=\"a\\\"b\\\\c\\nd\"} 1.5 -3\n";
    let bytes = batch_from_text(text).unwrap();
    assert_eq!(text_from_batch(&bytes).unwrap(), text);
}
