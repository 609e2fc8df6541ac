//! `cardinality-limit`: keeps at most `limit` series per metric in each scrape, so one target
//! that suddenly exports a label per user or per request cannot flood the central Prometheus.
//!
//! ```yaml
//! filters:
//!   - name: cap
//!     module: /etc/promrelay/filters/cardinality-limit.wasm
//!     config:
//!       limit: 500              # label sets per metric family (required, at least 1)
//! ```
//!
//! **What counts.** The unit is a family's *label set*: the series' labels without `__name__`,
//! `le` and `quantile`. So a histogram with 3 label sets and 12 buckets counts 3, and its buckets,
//! `_sum` and `_count` are kept or dropped together: a kept histogram is never cut in half.
//!
//! **Which ones are kept.** The first `limit` distinct label sets of the family in exposition
//! order; every series of a later label set is dropped. Targets expose their series in a stable
//! order (client libraries sort them), so the same series survive from one scrape to the next.
//!
//! **Counted.** Drops are logged (warn) the first time a family goes over its limit in an
//! instance and then every 100th scrape in which it still does, with the number dropped this
//! scrape and the total since the filter started. Only drops, so the answer is PASS or MASK.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use promrelay_sdk::{export_filter, warn, Batch, Error, Filter, Series};
use serde::Deserialize;

/// The filter's `config:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Most label sets kept per family and scrape.
    pub limit: usize,
}

/// Per-family drop statistics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Dropped {
    /// Scrapes in which the family was over its limit.
    pub scrapes: u64,
    /// Series dropped in total.
    pub series: u64,
}

/// The filter: its limit and what it dropped so far.
pub struct CardinalityLimit {
    limit: usize,
    dropped: HashMap<String, Dropped>,
    /// Reused per family: hashes of the label sets kept so far.
    kept: HashSet<u64>,
    keep: Vec<bool>,
}

impl CardinalityLimit {
    /// What this instance dropped per family since `init`.
    pub fn dropped(&self) -> &HashMap<String, Dropped> {
        &self.dropped
    }
}

/// Hash of a series' labels except `__name__`, `le` and `quantile`: its label set.
/// Hot path, once per series.
fn label_set(series: &Series<'_>) -> u64 {
    let mut hasher = DefaultHasher::new();
    for (name, value) in series.labels() {
        if !matches!(name, "__name__" | "le" | "quantile") {
            (name, value).hash(&mut hasher);
        }
    }
    hasher.finish()
}

impl Filter for CardinalityLimit {
    type Config = Config;

    fn init(config: Config) -> Result<Self, Error> {
        if config.limit == 0 {
            return Err(Error::new("limit: must be at least 1"));
        }
        Ok(CardinalityLimit {
            limit: config.limit,
            dropped: HashMap::new(),
            kept: HashSet::new(),
            keep: Vec::new(),
        })
    }

    fn process(&mut self, batch: &mut Batch<'_>) -> Result<(), Error> {
        self.keep.clear();
        let mut over: Vec<(String, u64)> = Vec::new();
        for family in batch.families() {
            self.kept.clear();
            let mut dropped = 0u64;
            for series in family.series() {
                let set = label_set(&series);
                let keep = self.kept.contains(&set)
                    || (self.kept.len() < self.limit && self.kept.insert(set));
                dropped += u64::from(!keep);
                self.keep.push(keep);
            }
            if dropped > 0 {
                over.push((family.name().to_owned(), dropped));
            }
        }
        if over.is_empty() {
            return Ok(());
        }
        let mut index = 0;
        batch.retain(|_| {
            index += 1;
            self.keep[index - 1]
        });
        for (family, count) in over {
            let stats = self.dropped.entry(family.clone()).or_default();
            stats.scrapes += 1;
            stats.series += count;
            if stats.scrapes % 100 == 1 {
                warn!(
                    "{family}: over the limit of {} label sets, dropped {count} series \
                     ({} in {} scrapes so far)",
                    self.limit, stats.series, stats.scrapes
                );
            }
        }
        Ok(())
    }
}

export_filter!(CardinalityLimit);

#[cfg(test)]
mod tests;
