//! `identity`: keeps every scrape unchanged. Its answer is always PASS, so the relay pays only
//! for the call itself (copy in, validate the header, return); the benchmarks use it to measure
//! the filter machinery against no filter at all.
//!
//! Config: none (any value is accepted and ignored).

use promrelay_sdk::{export_filter, Batch, Error, Filter};

/// The filter that does nothing.
pub struct Identity;

impl Filter for Identity {
    type Config = serde::de::IgnoredAny;

    fn init(_config: Self::Config) -> Result<Self, Error> {
        Ok(Identity)
    }

    fn process(&mut self, _batch: &mut Batch<'_>) -> Result<(), Error> {
        Ok(())
    }
}

export_filter!(Identity);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use promrelay_sdk::testing::{batch_from_text, Harness, Outcome};

    use super::Identity;

    const SCRAPE: &str =
        "# HELP up Target is up.\n# TYPE up gauge\nup{job=\"node\"} 1\nrpc_total 5 1700000000000\n";

    #[test]
    fn answers_pass_and_leaves_the_scrape_alone() {
        let mut harness = Harness::<Identity>::new("null").unwrap();
        let batch = batch_from_text(SCRAPE).unwrap();
        assert_eq!(harness.process(&batch).unwrap(), Outcome::Pass);
        assert_eq!(harness.process_text(SCRAPE).unwrap(), SCRAPE);
    }

    #[test]
    fn accepts_any_config() {
        assert!(Harness::<Identity>::new(r#"{"anything": [1, 2]}"#).is_ok());
    }
}
