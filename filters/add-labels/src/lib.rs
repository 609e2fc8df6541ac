//! `add-labels`: adds static labels to every series of every scrape.
//!
//! ```yaml
//! filters:
//!   - name: site-labels
//!     module: /etc/promrelay/filters/add-labels.wasm
//!     config:
//!       labels: { site: ams1, dc: eu-west }
//!       overwrite: false    # keep a value the target already exposes (default: true, replace it)
//! ```
//!
//! An empty value removes the label (Prometheus treats an empty label as absent). Label names
//! are checked at `init`: a name that is not `[a-zA-Z_][a-zA-Z0-9_]*`, or `__name__`, refuses the
//! config. Rewrites series, so its answer is a new batch (REPLACED) — unless every series already
//! carries the labels, in which case it is PASS.

use std::collections::BTreeMap;

use promrelay_sdk::{export_filter, Batch, Error, Filter};
use serde::Deserialize;

/// The filter's `config:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Label name → value.
    pub labels: BTreeMap<String, String>,
    /// Replace a label the series already has (default true).
    #[serde(default = "default_overwrite")]
    pub overwrite: bool,
}

fn default_overwrite() -> bool {
    true
}

/// The labels to add, validated.
pub struct AddLabels {
    labels: Vec<(String, String)>,
    overwrite: bool,
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Filter for AddLabels {
    type Config = Config;

    fn init(config: Config) -> Result<Self, Error> {
        for name in config.labels.keys() {
            if !is_label_name(name) {
                return Err(Error::new(format!(
                    "labels: {name:?} is not a valid label name"
                )));
            }
            if name == "__name__" {
                return Err(Error::new(
                    "labels: __name__ cannot be set here (rename metrics with relabel)",
                ));
            }
        }
        if config.labels.is_empty() {
            promrelay_sdk::warn!("add-labels: no labels configured, the filter does nothing");
        }
        Ok(AddLabels {
            labels: config.labels.into_iter().collect(),
            overwrite: config.overwrite,
        })
    }

    fn process(&mut self, batch: &mut Batch<'_>) -> Result<(), Error> {
        // Look before writing: editing copies the batch, which is wasted when nothing changes.
        let needed = batch.series().any(|series| {
            self.labels
                .iter()
                .any(|(name, value)| match series.label(name) {
                    Some(current) => self.overwrite && current != value,
                    None => !value.is_empty(),
                })
        });
        if !needed {
            return Ok(());
        }
        for series in batch.series_mut() {
            for (name, value) in &self.labels {
                if self.overwrite || series.label(name).is_none() {
                    series.set_label(name, value);
                }
            }
        }
        Ok(())
    }
}

export_filter!(AddLabels);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use promrelay_sdk::testing::{batch_from_text, run, Harness, Outcome};

    use super::AddLabels;

    const SCRAPE: &str = "# TYPE up gauge\nup{instance=\"h:9100\",job=\"node\"} 1\nbuild_info{site=\"lab\",version=\"1.2\"} 1\n";

    #[test]
    fn adds_labels_in_sorted_position() {
        let out = run::<AddLabels>(r#"{"labels": {"site": "ams1", "dc": "eu"}}"#, SCRAPE).unwrap();
        assert_eq!(
            out,
            "# TYPE up gauge\n\
             up{dc=\"eu\",instance=\"h:9100\",job=\"node\",site=\"ams1\"} 1\n\
             build_info{dc=\"eu\",site=\"ams1\",version=\"1.2\"} 1\n"
        );
    }

    #[test]
    fn overwrite_false_keeps_exposed_values() {
        let out = run::<AddLabels>(
            r#"{"labels": {"site": "ams1"}, "overwrite": false}"#,
            SCRAPE,
        )
        .unwrap();
        assert!(out.contains("up{instance=\"h:9100\",job=\"node\",site=\"ams1\"} 1"));
        assert!(out.contains("build_info{site=\"lab\",version=\"1.2\"} 1"));
    }

    #[test]
    fn empty_value_removes_the_label() {
        let out = run::<AddLabels>(r#"{"labels": {"version": ""}}"#, SCRAPE).unwrap();
        assert!(out.contains("build_info{site=\"lab\"} 1"), "{out}");
    }

    #[test]
    fn answers_replaced_only_when_something_changes() {
        let batch = batch_from_text(SCRAPE).unwrap();
        let mut adds = Harness::<AddLabels>::new(r#"{"labels": {"site": "ams1"}}"#).unwrap();
        assert!(matches!(
            adds.process(&batch).unwrap(),
            Outcome::Replaced(_)
        ));
        let mut already =
            Harness::<AddLabels>::new(r#"{"labels": {"job": "node"}, "overwrite": false}"#)
                .unwrap();
        let only_up = batch_from_text("up{job=\"node\"} 1\n").unwrap();
        assert_eq!(already.process(&only_up).unwrap(), Outcome::Pass);
    }

    #[test]
    fn invalid_label_names_are_refused() {
        for bad in ["a-b", "1a", "", "__name__"] {
            let config = format!(r#"{{"labels": {{"{bad}": "x"}}}}"#);
            let error = Harness::<AddLabels>::new(&config)
                .err()
                .unwrap()
                .to_string();
            assert!(error.starts_with("bad config: labels:"), "{bad}: {error}");
        }
        assert!(
            Harness::<AddLabels>::new("null").is_err(),
            "labels is required"
        );
    }
}
