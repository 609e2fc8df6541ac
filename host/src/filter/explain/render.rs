//! A [`Report`] as text, for `promrelay filter run --explain`: the chain, then each matched
//! series with every filter's outcome, its own steps when it traces, and the result.

use std::fmt::Write as _;

use super::{render_series, Outcome, Report};

/// The report as the CLI prints it.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "explain: selector {} matched {} of {} series{}",
        report.selector,
        report.matched,
        report.series_in,
        if report.matched > report.series.len() {
            format!(" (showing the first {})", report.series.len())
        } else {
            String::new()
        }
    );
    let _ = writeln!(out, "chain:");
    for (i, stage) in report.stages.iter().enumerate() {
        let counts = match (stage.answer, stage.series_out) {
            (Some(answer), Some(out)) => format!("{answer}, {} -> {out} series", stage.series_in),
            _ => "not run".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {}. {} ({}, sha256 {}, {}; {})",
            i + 1,
            stage.name,
            stage.module,
            &stage.sha256[..stage.sha256.len().min(12)],
            if stage.traced {
                "per-step trace"
            } else {
                "no trace: before/after only"
            },
            counts
        );
        if !stage.config.is_null() && stage.config != serde_json::json!({}) {
            let _ = writeln!(out, "     config: {}", stage.config);
        }
    }
    if let Some(failure) = &report.failure {
        let _ = writeln!(
            out,
            "FAILED at filter {} ({}): {}",
            failure.filter, failure.kind, failure.error
        );
    }
    for (n, series) in report.series.iter().enumerate() {
        let _ = writeln!(out);
        let _ = writeln!(out, "series {}: {}", n + 1, render_series(&series.input));
        for step in &series.steps {
            let headline = match step.outcome {
                Outcome::Unchanged => "unchanged".to_owned(),
                Outcome::Rewritten => format!("REWRITTEN: {}", step.diff),
                Outcome::Dropped => {
                    let at = step
                        .trace
                        .iter()
                        .find(|t| t.dropped)
                        .map(|t| format!(" at {}", t.step))
                        .unwrap_or_default();
                    format!("DROPPED{at}")
                }
            };
            let _ = writeln!(out, "  [{}] {headline}", step.filter);
            for rule in &step.trace {
                let what = if rule.dropped {
                    "DROPPED the series".to_owned()
                } else if rule.diff.is_empty() {
                    "no change".to_owned()
                } else {
                    rule.diff.to_string()
                };
                let _ = writeln!(
                    out,
                    "      {} -> {}: {what}",
                    rule.step,
                    if rule.matched { "matched" } else { "no match" }
                );
            }
            if let Some(why) = &step.trace_error {
                let _ = writeln!(out, "      (no trace: {why})");
            }
            if let Some(note) = &step.note {
                let _ = writeln!(out, "      ({note})");
            }
            if step.outcome == Outcome::Rewritten {
                if let Some(after) = &step.after {
                    let _ = writeln!(out, "      after: {}", render_series(after));
                }
            }
        }
        match &series.output {
            Some(labels) => {
                let _ = writeln!(out, "  => {}", render_series(labels));
            }
            None if report.failure.is_some() && series.steps.len() < report.stages.len() => {
                let _ = writeln!(out, "  => (the chain failed)");
            }
            None => {
                let _ = writeln!(out, "  => dropped");
            }
        }
    }
    out
}
