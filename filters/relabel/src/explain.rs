//! The relabel filter's trace (`promrelay_trace`, ABI.md §10): for each series it is given,
//! every rule in order with whether it matched and the labels after it, up to the rule that
//! dropped the series — what vmagent's `/metric-relabel-debug` shows. Only `promrelay filter run
//! --explain` and the monitor port's `/explain` call it; scrapes never do.
//!
//! **Invariant:** the steps come from the same rules and the same `apply` that `process` uses;
//! only the memo of regex answers is bypassed.

use promrelay_sdk::{Batch, Error, Explain, Trace};

use crate::engine::LabelSet;
use crate::filter::Relabel;

impl Explain for Relabel {
    fn explain(&mut self, batch: &Batch<'_>, trace: &mut Trace) -> Result<(), Error> {
        let relabeler = self.relabeler_mut();
        let mut labels = LabelSet::new();
        for series in batch.series() {
            trace.begin_series();
            labels.clear();
            for (name, value) in series.labels() {
                labels.push_sorted(name, value);
            }
            let mut steps = Vec::new();
            let kept = relabeler.explain_series(&mut labels, |index, matched, kept, after| {
                let owned: Option<Vec<(String, String)>> = kept.then(|| {
                    after
                        .iter()
                        .map(|(n, v)| (n.to_owned(), v.to_owned()))
                        .collect()
                });
                steps.push((index, matched, owned));
            });
            for (index, matched, after) in &steps {
                let rule = &relabeler.rules()[*index];
                let step = format!("rule {index}: {}", rule.summary());
                match after {
                    Some(after) => trace.step(
                        &step,
                        *matched,
                        after.iter().map(|(n, v)| (n.as_str(), v.as_str())),
                    ),
                    None => trace.dropped(&step, *matched),
                }
            }
            let dropped_by_rule = steps.last().is_some_and(|(_, _, after)| after.is_none());
            if !kept && !dropped_by_rule {
                let name = labels.get("__name__");
                let why = if name.is_empty() {
                    "after the rules: __name__ is empty, the series is dropped".to_owned()
                } else {
                    format!("after the rules: __name__ {name:?} is not a valid metric name, the series is dropped")
                };
                trace.dropped(&why, true);
            }
        }
        Ok(())
    }
}
