//! Explaining a filter chain: for the series a [`Selector`] picks out of a scrape, what each
//! filter did to them — unchanged, rewritten (which labels were added, removed, changed) or
//! dropped — and, for a filter that offers the optional `promrelay_trace` export (ABI.md §10,
//! the shipped `relabel` does), each of its own steps (which rule, whether it matched, what it
//! changed). `promrelay filter run --explain` prints a [`Report`] as text, the monitor port's
//! `/explain` as HTML and `/api/v1/explain` as JSON.
//!
//! The mechanism is generic: each stage runs alone on the whole scrape as the previous stage
//! left it, and its output is compared with its input. A series is followed by its labels: kept
//! unchanged when the output holds the same labels; for a REPLACED output, through the filter's
//! own trace when it has one, otherwise by the output series new in this stage with the same
//! value and timestamp that shares the most labels with it; dropped when none is found.
//!
//! **Invariant:** explaining never touches a live chain's instances or statistics: the stages
//! it runs are its own (built from the same configs), their calls go through the dry-run path
//! that counts and reports nothing, and the scrape path never calls `promrelay_trace`.

mod diff;
mod render;
mod selector;

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;

pub use diff::{labels_of, render_series, LabelDiff, Labels};
pub use render::render_text;
pub use selector::{quote, MatchOp, Matcher, Selector};

use super::codec;
use super::error::FilterError;
use super::instance::GuestOutput;
use super::stage::Stage;
use crate::model::Scrape;

/// At most this many matching series are followed (the rest are counted).
pub const DEFAULT_SERIES_LIMIT: usize = 200;

/// The whole explanation of one scrape through one chain.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The selector, as parsed.
    pub selector: String,
    pub stages: Vec<StageInfo>,
    /// Series in the scrape before the chain, and after it.
    pub series_in: usize,
    pub series_out: Option<usize>,
    /// Series the selector matched (before the chain); `series` holds the first `limit`.
    pub matched: usize,
    pub limit: usize,
    pub series: Vec<SeriesReport>,
    /// A stage that failed: the chain stops there (its `on_error` would then decide).
    pub failure: Option<StageFailure>,
}

/// One filter of the chain.
#[derive(Debug, Clone, Serialize)]
pub struct StageInfo {
    pub name: String,
    pub module: String,
    pub sha256: String,
    pub config: serde_json::Value,
    pub on_error: &'static str,
    /// Whether the module exports `promrelay_trace` (checked on the first matched series).
    pub traced: bool,
    /// Series before and after this filter (the whole scrape).
    pub series_in: usize,
    pub series_out: Option<usize>,
    /// What it answered: `pass`, `mask` or `replaced`.
    pub answer: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageFailure {
    pub filter: String,
    pub kind: &'static str,
    pub error: String,
}

/// One matched series' way through the chain.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesReport {
    pub input: Labels,
    pub steps: Vec<StageStep>,
    /// The labels after the whole chain, `None` when a filter dropped it.
    pub output: Option<Labels>,
}

/// What one filter did to one series.
#[derive(Debug, Clone, Serialize)]
pub struct StageStep {
    pub filter: String,
    pub outcome: Outcome,
    pub before: Labels,
    pub after: Option<Labels>,
    pub diff: LabelDiff,
    /// The filter's own steps, when it offers a trace.
    pub trace: Vec<TraceStep>,
    /// Why the trace is missing or unreadable, when it should have been there.
    pub trace_error: Option<String>,
    /// How the series was found in a REPLACED output without a trace.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Unchanged,
    Rewritten,
    Dropped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Unchanged => "unchanged",
            Outcome::Rewritten => "rewritten",
            Outcome::Dropped => "dropped",
        }
    }
}

/// One step of a filter's own trace (a rule of `relabel`).
#[derive(Debug, Clone, Serialize)]
pub struct TraceStep {
    pub step: String,
    pub matched: bool,
    pub dropped: bool,
    /// The labels after the step (`None` when it dropped the series).
    pub labels: Option<Labels>,
    /// What the step changed, from the labels before it.
    pub diff: LabelDiff,
}

/// Runs `scrape` through `stages` one at a time and explains the series `selector` matches
/// (at most `limit` of them). Blocking: guest code runs on this thread. `label_limit` is the
/// job's, as in the relay.
pub fn explain(
    stages: &[Arc<Stage>],
    scrape: Scrape,
    selector: &Selector,
    limit: usize,
    label_limit: usize,
) -> Report {
    let series_in = scrape.sample_count();
    let mut matched = 0usize;
    let mut series: Vec<SeriesReport> = Vec::new();
    for family in &scrape.families {
        for one in &family.series {
            if selector.matches(one) {
                matched += 1;
                if series.len() < limit {
                    series.push(SeriesReport {
                        input: labels_of(one),
                        steps: Vec::new(),
                        output: Some(labels_of(one)),
                    });
                }
            }
        }
    }
    let mut report = Report {
        selector: selector.to_string(),
        stages: stages.iter().map(|stage| stage_info(stage)).collect(),
        series_in,
        series_out: None,
        matched,
        limit,
        series,
        failure: None,
    };
    let mut current = scrape;
    for (index, stage) in stages.iter().enumerate() {
        let before_count = current.sample_count();
        let (after, answer) = match run_one(stage, current.clone(), label_limit) {
            Ok(done) => done,
            Err(error) => {
                report.failure = Some(StageFailure {
                    filter: stage.name().to_owned(),
                    kind: error.kind(),
                    error: error.to_string(),
                });
                return report;
            }
        };
        let info = &mut report.stages[index];
        info.series_in = before_count;
        info.series_out = Some(after.sample_count());
        info.answer = Some(answer);
        let traced = follow(stage, &current, &after, &mut report.series);
        report.stages[index].traced = traced;
        current = after;
    }
    report.series_out = Some(current.sample_count());
    report
}

fn stage_info(stage: &Stage) -> StageInfo {
    StageInfo {
        name: stage.name().to_owned(),
        module: stage.module_path().display().to_string(),
        sha256: stage.module.hash.clone(),
        config: stage.config.config.clone(),
        on_error: stage.on_error().as_str(),
        traced: false,
        series_in: 0,
        series_out: None,
        answer: None,
    }
}

/// One stage on the whole scrape, through the dry-run path (nothing counted or reported).
fn run_one(
    stage: &Stage,
    mut scrape: Scrape,
    label_limit: usize,
) -> Result<(Scrape, &'static str), FilterError> {
    let batch = codec::encode(&scrape)?;
    let series_in = scrape.sample_count();
    match stage.trial(&batch, series_in)? {
        GuestOutput::Pass => Ok((scrape, "pass")),
        GuestOutput::Mask(mask) => {
            codec::apply_mask(&mut scrape, &mask);
            Ok((scrape, "mask"))
        }
        GuestOutput::Replaced(bytes) => {
            scrape.families = codec::decode(&bytes, codec::series_cap(series_in), label_limit)?;
            Ok((scrape, "replaced"))
        }
    }
}

/// Records what `stage` did to every still-living followed series, from the scrape `before` it
/// to the scrape `after` it. Returns whether the stage offered a trace.
fn follow(stage: &Stage, before: &Scrape, after: &Scrape, followed: &mut [SeriesReport]) -> bool {
    let living: Vec<usize> = (0..followed.len())
        .filter(|&i| followed[i].output.is_some())
        .collect();
    if living.is_empty() {
        return false;
    }
    let inputs: Vec<Labels> = living
        .iter()
        .filter_map(|&i| followed[i].output.clone())
        .collect();
    let (traces, trace_error) = trace(stage, before, &inputs);
    let traced = traces.is_some();
    let output: HashSet<Labels> = after
        .families
        .iter()
        .flat_map(|f| f.series.iter().map(labels_of))
        .collect();
    let input_set: HashSet<Labels> = before
        .families
        .iter()
        .flat_map(|f| f.series.iter().map(labels_of))
        .collect();
    for (position, &index) in living.iter().enumerate() {
        let before_labels = inputs[position].clone();
        let steps = traces
            .as_ref()
            .and_then(|t| t.get(position).cloned())
            .unwrap_or_default();
        let mut note = None;
        let after_labels = if output.contains(&before_labels) {
            Some(before_labels.clone())
        } else if traces.is_some() {
            // The filter said where the series went; it must be in the output to count.
            match steps.last() {
                Some(last) if !last.dropped => last.labels.clone().filter(|l| {
                    let found = output.contains(l);
                    if !found {
                        note = Some(
                            "the trace's result is not in the filter's output (a duplicate \
                             of another series, dropped)"
                                .to_owned(),
                        );
                    }
                    found
                }),
                _ => None,
            }
        } else {
            let found = find_rewritten(&before_labels, before, after, &input_set);
            if found.is_some() {
                note = Some(
                    "the filter offers no trace: found as the new output series with the same \
                     value and timestamp sharing the most labels"
                        .to_owned(),
                );
            }
            found
        };
        let outcome = match &after_labels {
            None => Outcome::Dropped,
            Some(labels) if *labels == before_labels => Outcome::Unchanged,
            Some(_) => Outcome::Rewritten,
        };
        let diff = after_labels
            .as_ref()
            .map(|after| LabelDiff::between(&before_labels, after))
            .unwrap_or_default();
        followed[index].steps.push(StageStep {
            filter: stage.name().to_owned(),
            outcome,
            before: before_labels,
            after: after_labels.clone(),
            diff,
            trace: steps,
            trace_error: trace_error.clone(),
            note,
        });
        followed[index].output = after_labels;
    }
    traced
}

/// The output series new in this stage (not in its input) with the same value bits and
/// timestamp as the series `labels` of `before`, sharing the most labels with it.
fn find_rewritten(
    labels: &Labels,
    before: &Scrape,
    after: &Scrape,
    input_set: &HashSet<Labels>,
) -> Option<Labels> {
    let original = before
        .families
        .iter()
        .flat_map(|f| f.series.iter())
        .find(|s| labels_of(s) == *labels)?;
    after
        .families
        .iter()
        .flat_map(|f| f.series.iter())
        .filter(|s| {
            s.value.to_bits() == original.value.to_bits() && s.timestamp_ms == original.timestamp_ms
        })
        .map(labels_of)
        .filter(|candidate| !input_set.contains(candidate))
        .map(|candidate| (LabelDiff::common(labels, &candidate), candidate))
        .filter(|(common, _)| *common > 0)
        .max_by_key(|(common, _)| *common)
        .map(|(_, candidate)| candidate)
}

/// Asks the stage for its own trace of the followed series (a batch of just those, in their
/// families). `(None, None)` when it offers none; `(None, Some(why))` when it failed.
fn trace(
    stage: &Stage,
    before: &Scrape,
    inputs: &[Labels],
) -> (Option<Vec<Vec<TraceStep>>>, Option<String>) {
    let wanted: HashSet<&Labels> = inputs.iter().collect();
    let mut subset = Scrape {
        meta: before.meta.clone(),
        families: Vec::new(),
    };
    let mut order: Vec<Labels> = Vec::new();
    for family in &before.families {
        let series: Vec<_> = family
            .series
            .iter()
            .filter(|s| wanted.contains(&labels_of(s)))
            .cloned()
            .collect();
        if !series.is_empty() {
            order.extend(series.iter().map(labels_of));
            let mut copy = family.clone();
            copy.series = series;
            subset.families.push(copy);
        }
    }
    let batch = match codec::encode(&subset) {
        Ok(batch) => batch,
        Err(e) => return (None, Some(format!("encoding the series to trace: {e}"))),
    };
    let json = match stage.trace(&batch) {
        Ok(None) => return (None, None),
        Ok(Some(json)) => json,
        Err(e) => return (None, Some(format!("promrelay_trace failed: {e}"))),
    };
    let parsed = match parse_trace(&json, &order) {
        Ok(parsed) => parsed,
        Err(e) => {
            return (
                None,
                Some(format!("promrelay_trace answered unreadable JSON: {e}")),
            )
        }
    };
    // Back to the order of `inputs` (the batch is in scrape order).
    let mut by_labels: std::collections::HashMap<&Labels, Vec<TraceStep>> =
        order.iter().zip(parsed).collect();
    let traces = inputs
        .iter()
        .map(|labels| by_labels.remove(labels).unwrap_or_default())
        .collect();
    (Some(traces), None)
}

#[derive(serde::Deserialize)]
struct RawTrace {
    series: Vec<RawSeries>,
}

#[derive(serde::Deserialize)]
struct RawSeries {
    steps: Vec<RawStep>,
}

#[derive(serde::Deserialize)]
struct RawStep {
    step: String,
    #[serde(default)]
    matched: bool,
    #[serde(default)]
    dropped: bool,
    #[serde(default)]
    labels: Option<Vec<(String, String)>>,
}

/// Reads a `promrelay_trace` answer for the series `inputs` (in batch order) and adds each
/// step's diff from the labels before it.
fn parse_trace(json: &[u8], inputs: &[Labels]) -> Result<Vec<Vec<TraceStep>>, String> {
    let raw: RawTrace = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    if raw.series.len() != inputs.len() {
        return Err(format!(
            "{} series traced for {} given",
            raw.series.len(),
            inputs.len()
        ));
    }
    Ok(raw
        .series
        .into_iter()
        .zip(inputs)
        .map(|(series, input)| {
            let mut previous = input.clone();
            series
                .steps
                .into_iter()
                .map(|step| {
                    // A step that keeps the series without listing labels left them as they were.
                    let labels = if step.dropped {
                        None
                    } else {
                        let mut labels = step.labels.unwrap_or_else(|| previous.clone());
                        labels.sort();
                        Some(labels)
                    };
                    let diff = match &labels {
                        Some(now) => {
                            let diff = LabelDiff::between(&previous, now);
                            previous = now.clone();
                            diff
                        }
                        None => LabelDiff::default(),
                    };
                    TraceStep {
                        step: step.step,
                        matched: step.matched,
                        dropped: step.dropped,
                        labels,
                        diff,
                    }
                })
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests;
