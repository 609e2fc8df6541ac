//! The HTML of `/explain`: a form (target or pasted text, the job whose chain runs, a selector)
//! and, below it, each matched series' way through the chain. Server-rendered, no script, no
//! external asset; every piece of text from the config, a target or a filter is escaped.

use std::fmt::Write as _;

use super::explain::{targets, Explained, Refused, Request};
use crate::config::Config;
use crate::filter::explain::{render_series, Outcome, Report, SeriesReport};

/// Escapes text for HTML element content and double-quoted attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;max-width:80em}\
code,pre,textarea,input[type=text]{font-family:monospace}\
textarea{width:100%}input[type=text]{width:40em}\
fieldset{margin-bottom:1em}.series{border-top:1px solid #999;margin-top:1em}\
.dropped{color:#a00}.rewritten{color:#05a}.unchanged{color:#555}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}\
.error{color:#a00;font-weight:bold}";

/// The whole page.
pub(super) fn render(
    config: Option<&Config>,
    request: &Request,
    result: Option<&Result<Explained, Refused>>,
) -> String {
    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str("<title>promrelay: explain a filter chain</title>\n");
    let _ = writeln!(html, "<style>{STYLE}</style>\n</head>\n<body>");
    html.push_str("<h1>Explain a filter chain</h1>\n");
    html.push_str(
        "<p>Pick a target (the relay scrapes it now with its job's HTTP client and runs the \
         job's chain in explain mode, on filter instances of its own: the live pipeline is not \
         touched and the scrape is not published) or paste series text, and a selector \
         (<code>name{label=\"v\"}</code> with <code>=</code>, <code>!=</code>, <code>=~</code>, \
         <code>!~</code>). Each matched series is shown before and after every filter, with \
         each rule's step for filters that trace (relabel).</p>\n",
    );
    form(&mut html, config, request);
    match result {
        None => {}
        Some(Err(Refused(status, text))) => {
            let _ = writeln!(
                html,
                "<p class=\"error\" id=\"error\">{} {}: {}</p>",
                status.as_u16(),
                escape(status.canonical_reason().unwrap_or("")),
                escape(text)
            );
        }
        Some(Ok(explained)) => result_html(&mut html, explained),
    }
    html.push_str("</body>\n</html>\n");
    html
}

fn form(html: &mut String, config: Option<&Config>, request: &Request) {
    html.push_str(
        "<form method=\"post\" action=\"/explain\">\n<fieldset>\n<legend>Series</legend>\n",
    );
    html.push_str(
        "<p><label for=\"target\">Target</label>\n<select name=\"target\" id=\"target\">\n",
    );
    let _ = writeln!(
        html,
        "<option value=\"\"{}>(none: use the pasted text below)</option>",
        if request.target.is_empty() {
            " selected"
        } else {
            ""
        }
    );
    if let Some(config) = config {
        for (choice, _) in targets(config) {
            let _ = writeln!(
                html,
                "<option value=\"{}\"{}>{} — {} ({})</option>",
                escape(&choice.key),
                if request.target == choice.key {
                    " selected"
                } else {
                    ""
                },
                escape(&choice.job),
                escape(&choice.instance),
                escape(&choice.url)
            );
        }
    }
    html.push_str("</select></p>\n");
    html.push_str("<p><label for=\"text\">or paste series (Prometheus text format)</label><br>\n");
    let _ = writeln!(
        html,
        "<textarea name=\"text\" id=\"text\" rows=\"8\" cols=\"100\">{}</textarea></p>",
        escape(&request.text)
    );
    html.push_str("<p><label for=\"job\">Chain of job (for pasted text)</label>\n<select name=\"job\" id=\"job\">\n");
    if let Some(config) = config {
        for job in &config.jobs {
            let _ = writeln!(
                html,
                "<option value=\"{0}\"{1}>{0}</option>",
                escape(&job.name),
                if request.job == job.name {
                    " selected"
                } else {
                    ""
                }
            );
        }
    }
    html.push_str("</select></p>\n</fieldset>\n");
    let _ = writeln!(
        html,
        "<p><label for=\"selector\">Selector</label>\n<input type=\"text\" name=\"selector\" \
         id=\"selector\" value=\"{}\" placeholder=\"node_cpu_seconds_total{{mode=&quot;idle&quot;}}\"></p>",
        escape(&request.selector)
    );
    html.push_str("<p><button type=\"submit\">Explain</button></p>\n</form>\n");
}

fn result_html(html: &mut String, explained: &Explained) {
    let report = &explained.report;
    html.push_str("<h2>Result</h2>\n");
    let _ = writeln!(html, "<p id=\"how\">{}</p>", escape(&explained.how));
    if let Some(error) = &explained.scrape_error {
        let _ = writeln!(
            html,
            "<p class=\"error\">The scrape failed: {}; the chain saw only the synthetic series \
             (<code>up 0</code>).</p>",
            escape(error)
        );
    }
    chain_table(html, report);
    if let Some(failure) = &report.failure {
        let _ = writeln!(
            html,
            "<p class=\"error\">Filter {} failed ({}): {}; its <code>on_error</code> decides \
             what the relay does with the scrape.</p>",
            escape(&failure.filter),
            escape(failure.kind),
            escape(&failure.error)
        );
    }
    let _ = writeln!(
        html,
        "<p id=\"matched\">Selector <code>{}</code> matched {} of {} series{}.</p>",
        escape(&report.selector),
        report.matched,
        report.series_in,
        if report.matched > report.series.len() {
            format!(" (the first {} are shown)", report.series.len())
        } else {
            String::new()
        }
    );
    for (n, series) in report.series.iter().enumerate() {
        series_html(html, n + 1, series);
    }
}

fn chain_table(html: &mut String, report: &Report) {
    html.push_str("<table id=\"chain\">\n<tr><th>#</th><th>filter</th><th>module</th><th>sha256</th><th>trace</th><th>answer</th><th>series in → out</th><th>config</th></tr>\n");
    for (i, stage) in report.stages.iter().enumerate() {
        let _ =
            writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td>\
             <td>{}</td><td>{} → {}</td><td><code>{}</code></td></tr>",
            i + 1,
            escape(&stage.name),
            escape(&stage.module),
            escape(&stage.sha256[..stage.sha256.len().min(12)]),
            if stage.traced { "per rule" } else { "before/after" },
            stage.answer.unwrap_or("not run"),
            stage.series_in,
            stage.series_out.map_or("–".to_owned(), |n| n.to_string()),
            escape(&stage.config.to_string())
        );
    }
    html.push_str("</table>\n");
}

fn series_html(html: &mut String, n: usize, series: &SeriesReport) {
    let _ = writeln!(
        html,
        "<section class=\"series\" id=\"series-{n}\">\n<h3>Series {n}: <code>{}</code></h3>\n<ol class=\"steps\">",
        escape(&render_series(&series.input))
    );
    for step in &series.steps {
        let class = step.outcome.as_str();
        let headline = match step.outcome {
            Outcome::Unchanged => "unchanged".to_owned(),
            Outcome::Rewritten => format!("rewritten: {}", step.diff),
            Outcome::Dropped => "dropped".to_owned(),
        };
        let _ = writeln!(
            html,
            "<li class=\"step {class}\"><strong>{}</strong>: {}",
            escape(&step.filter),
            escape(&headline)
        );
        if !step.trace.is_empty() {
            html.push_str(
                "<table class=\"rules\">\n<tr><th>step</th><th>matched</th><th>effect</th></tr>\n",
            );
            for rule in &step.trace {
                let effect = if rule.dropped {
                    "dropped the series".to_owned()
                } else if rule.diff.is_empty() {
                    "no change".to_owned()
                } else {
                    rule.diff.to_string()
                };
                let _ = writeln!(
                    html,
                    "<tr class=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                    if rule.dropped { "dropped" } else { "kept" },
                    escape(&rule.step),
                    if rule.matched { "yes" } else { "no" },
                    escape(&effect)
                );
            }
            html.push_str("</table>\n");
        }
        if let Some(why) = &step.trace_error {
            let _ = writeln!(html, "<p class=\"error\">No trace: {}</p>", escape(why));
        }
        if let Some(note) = &step.note {
            let _ = writeln!(html, "<p>({})</p>", escape(note));
        }
        if let (Outcome::Rewritten, Some(after)) = (step.outcome, &step.after) {
            let _ = writeln!(
                html,
                "<p>after: <code>{}</code></p>",
                escape(&render_series(after))
            );
        }
        html.push_str("</li>\n");
    }
    html.push_str("</ol>\n");
    match &series.output {
        Some(labels) => {
            let _ = writeln!(
                html,
                "<p class=\"result\">result: <code>{}</code></p>",
                escape(&render_series(labels))
            );
        }
        None => html.push_str("<p class=\"result dropped\">result: dropped</p>\n"),
    }
    html.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_both_quotes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_form_escapes_what_the_operator_typed() {
        let request = Request {
            target: String::new(),
            text: "</textarea><script>alert(1)</script>".into(),
            job: String::new(),
            selector: "up{a=\"<b>\"}".into(),
        };
        let html = render(None, &request, None);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;/textarea&gt;&lt;script&gt;"));
        assert!(html.contains("value=\"up{a=&quot;&lt;b&gt;&quot;}\""));
    }
}
