//! The status page: one server-rendered HTML5 document with a section per part (pause, targets,
//! filters, publisher, receiver), inline CSS, no script and no external asset, so it works in
//! any browser, offline and without JavaScript.
//!
//! **Invariant:** every string that comes from outside this file (labels, URLs, errors, paths,
//! names) goes through [`escape`] before it reaches the page, in text and in attributes alike.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

use super::{Health, PublisherState, ReceiverState, Snapshot, TargetStatus};

/// Escapes text for HTML text and double- or single-quoted attribute values.
pub fn escape(text: &str) -> String {
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

/// What the page shows for a value that is not there.
const DASH: &str = "<span class=\"dash\">&mdash;</span>";

const STYLE: &str = "
:root{--ink:#1d2430;--muted:#5d6675;--line:#d9dee6;--band:#f4f6f9;--up:#1a7f37;--down:#c62828;
--unknown:#8a6d00;--accent:#2456a6}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;
color:var(--ink);background:#fff}
header{background:#18243a;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px;font-weight:600}
header .facts{margin:4px 0 0;color:#c6d0e0;font-size:13px}
header .facts code{color:#fff}
nav{background:#22314d;padding:6px 24px}
nav a{color:#dbe6ff;margin-right:18px;text-decoration:none;font-weight:500}
nav a:hover{text-decoration:underline}
main{padding:8px 24px 32px;max-width:1400px}
h2{font-size:17px;margin:26px 0 8px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:15px;margin:16px 0 6px}
h3 .count{font-weight:400;color:var(--muted);font-size:13px;margin-left:8px}
table{border-collapse:collapse;width:100%;margin:4px 0 10px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--band);font-weight:600;font-size:12px;text-transform:uppercase;
letter-spacing:.03em;color:var(--muted)}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th.num{text-align:right}
table.targets{table-layout:fixed}
table.pause{width:auto;min-width:360px}
table.targets col.c-instance{width:12%}table.targets col.c-url{width:19%}
table.targets col.c-health{width:7%}table.targets col.c-last{width:12%}
table.targets col.c-duration,table.targets col.c-samples{width:7%}
table.targets col.c-scrapes{width:9%}
.dash{color:var(--muted)}
small.at{display:block;color:var(--muted);font-size:11px}
p.summary{margin:14px 0 0;display:flex;gap:10px;flex-wrap:wrap}
p.summary span.item{background:var(--band);border:1px solid var(--line);border-radius:6px;
padding:4px 10px}
td.url,td.error,code{font-family:ui-monospace,'DejaVu Sans Mono',monospace;font-size:12px}
td.url{word-break:break-all}
td.error{color:var(--down);word-break:break-word}
.health{display:inline-block;min-width:64px;text-align:center;padding:1px 8px;border-radius:10px;
font-weight:600;font-size:12px;color:#fff}
.health.up{background:var(--up)}.health.down{background:var(--down)}
.health.unknown{background:var(--unknown)}
tr.down td{background:#fff5f5}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:3px 16px;margin:6px 0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0}
p.none{color:var(--muted);font-style:italic}
footer{color:var(--muted);font-size:12px;padding:0 24px 24px}
";

/// Renders the whole page.
pub fn page(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let identity = escape(&snapshot.identity);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>promrelay {identity}: status</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header>\n<h1>promrelay <code>{identity}</code></h1>\n<p class=\"facts\">{component} \
         &middot; version <code>{version}</code> &middot; config <code>{config}</code> \
         &middot; page rendered {now}</p>\n</header>\n",
        component = escape(&snapshot.component),
        version = escape(&snapshot.version),
        config = escape(&snapshot.config_path),
        now = time(snapshot.now_ms),
    );
    out.push_str(
        "<nav>\n<a href=\"#pause\">Pause</a>\n<a href=\"#targets\">Targets</a>\n\
         <a href=\"#filters\">Filters</a>\n<a href=\"#publisher\">Publisher</a>\n\
         <a href=\"#receiver\">Receiver</a>\n<a href=\"/explain\">Explain</a>\n\
         <a href=\"/api/v1/status\">JSON</a>\n<a href=\"/metrics\">Metrics</a>\n</nav>\n<main>\n",
    );
    summary(&mut out, snapshot);
    pause(&mut out, snapshot);
    targets(&mut out, snapshot);
    filters(&mut out, snapshot);
    publisher(&mut out, snapshot.publisher.as_ref(), snapshot.now_ms);
    receiver(&mut out, snapshot.receiver.as_ref(), snapshot.now_ms);
    out.push_str(
        "</main>\n<footer>The same data as JSON: <a href=\"/api/v1/status\">/api/v1/status</a>, \
         <a href=\"/api/v1/targets\">/api/v1/targets</a>, \
         <a href=\"/api/v1/filters\">/api/v1/filters</a>, \
         <a href=\"/api/v1/publisher\">/api/v1/publisher</a>, \
         <a href=\"/api/v1/receiver\">/api/v1/receiver</a>, \
         <a href=\"/api/v1/info\">/api/v1/info</a>.</footer>\n</body>\n</html>\n",
    );
    out
}

/// `2026-12-01T16:55:03Z`, or `never`.
fn time(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        Err(_) => "never".to_owned(),
    }
}

/// The age relative to the page, with the time below it, or `never`.
fn when(ms: Option<i64>, now_ms: i64) -> String {
    match ms {
        None => "never".to_owned(),
        Some(ms) => format!(
            "{age} ago <small class=\"at\"><time datetime=\"{at}\">{at}</time></small>",
            at = time(ms),
            age = age(now_ms.saturating_sub(ms))
        ),
    }
}

/// `850 ms`, `3.2 s`, `4 min 10 s`, `2 h 5 min`.
fn age(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{} h {} min", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

fn bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else if n < 1024 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    }
}

fn optional(text: Option<&str>) -> String {
    text.map_or_else(|| DASH.to_owned(), escape)
}

fn health_badge(health: &str) -> String {
    let health = escape(health);
    format!("<span class=\"health {health}\">{health}</span>")
}

/// One line of counts at the top: what an operator checks first.
fn summary(out: &mut String, snapshot: &Snapshot) {
    let mut items = Vec::new();
    if let Some(targets) = &snapshot.targets {
        let down = targets.iter().filter(|t| t.health == Health::Down).count();
        let up = targets.iter().filter(|t| t.health == Health::Up).count();
        items.push(format!(
            "Targets: <span class=\"health up\">{up} up</span> <span class=\"health {class}\">{down} down</span>",
            class = if down > 0 { "down" } else { "up" },
        ));
    }
    let filters = snapshot.filters["filters"].as_array().map_or(0, Vec::len);
    items.push(format!("Filters: {filters}"));
    for (role, connection) in [
        (
            "Publisher",
            snapshot.publisher.as_ref().map(|p| p.connection.as_ref()),
        ),
        (
            "Receiver",
            snapshot.receiver.as_ref().map(|r| r.connection.as_ref()),
        ),
    ] {
        if let Some(connection) = connection {
            let (class, state) = match connection {
                Some(c) if c.state == "connected" => ("up", escape(&c.state)),
                Some(c) => ("down", escape(&c.state)),
                None => ("unknown", "not connected yet".to_owned()),
            };
            items.push(format!(
                "{role}: <span class=\"health {class}\">{state}</span>"
            ));
        }
    }
    if snapshot.pause.iter().any(|role| role.paused) {
        items.push("<span class=\"health down\">paused</span>".to_owned());
    }
    out.push_str("<p class=\"summary\">");
    for item in items {
        let _ = write!(out, "<span class=\"item\">{item}</span>");
    }
    out.push_str("</p>\n");
}

fn pause(out: &mut String, snapshot: &Snapshot) {
    out.push_str("<section id=\"pause\">\n<h2>Pause state</h2>\n<table class=\"pause\">\n<thead><tr><th>Role</th><th>State</th></tr></thead>\n<tbody>\n");
    for role in &snapshot.pause {
        let (class, text) = if role.paused {
            ("down", "paused")
        } else {
            ("up", "running")
        };
        let _ = writeln!(
            out,
            "<tr class=\"role\" data-role=\"{name}\" data-paused=\"{paused}\"><td>{name}</td>\
             <td><span class=\"health {class}\">{text}</span></td></tr>",
            name = escape(&role.role),
            paused = role.paused,
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn targets(out: &mut String, snapshot: &Snapshot) {
    out.push_str("<section id=\"targets\">\n<h2>Targets</h2>\n");
    let Some(targets) = &snapshot.targets else {
        out.push_str("<p class=\"none\">This process runs no poller.</p>\n</section>\n");
        return;
    };
    if targets.is_empty() {
        out.push_str("<p class=\"none\">No targets.</p>\n");
    }
    // Sorted by job: one table per run of the same job.
    for job in targets.chunk_by(|a, b| a.job == b.job) {
        let up = job.iter().filter(|t| t.health == Health::Up).count();
        let name = escape(&job[0].job);
        let _ = write!(
            out,
            "<h3 id=\"job-{name}\">{name}<span class=\"count\">{up} of {total} up</span></h3>\n\
             <table class=\"targets\" data-job=\"{name}\">\n<colgroup><col class=\"c-instance\">\
             <col class=\"c-url\"><col class=\"c-health\"><col class=\"c-last\"><col class=\"c-duration\">\
             <col class=\"c-samples\"><col class=\"c-scrapes\"><col class=\"c-error\"></colgroup>\n\
             <thead><tr><th>Instance</th><th>URL</th><th>Health</th><th>Last scrape</th>\
             <th class=\"num\">Duration</th><th class=\"num\">Samples</th>\
             <th class=\"num\">Scrapes / failures</th><th>Last error</th></tr></thead>\n<tbody>\n",
            total = job.len(),
        );
        for target in job {
            target_row(out, target, snapshot.now_ms);
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</section>\n");
}

fn target_row(out: &mut String, target: &TargetStatus, now_ms: i64) {
    let health = target.health.as_str();
    let error = match (&target.last_error, target.last_error_ms) {
        (Some(error), Some(at)) if target.health == Health::Up => {
            format!(
                "{} <small>(at {}, since recovered)</small>",
                escape(error),
                time(at)
            )
        }
        (Some(error), _) => escape(error),
        (None, _) => DASH.to_owned(),
    };
    let _ = writeln!(
        out,
        "<tr class=\"target {health}\" data-job=\"{job}\" data-instance=\"{instance}\" \
         data-health=\"{health}\"><td>{instance}</td><td class=\"url\">{url}</td>\
         <td>{badge}</td><td>{last}</td><td class=\"num\">{duration}</td>\
         <td class=\"num\">{samples}</td><td class=\"num\">{scrapes} / {failures}</td>\
         <td class=\"error\">{error}</td></tr>",
        job = escape(&target.job),
        instance = escape(&target.instance),
        url = escape(&target.url),
        badge = health_badge(health),
        last = when(target.last_scrape_ms, now_ms),
        duration = target
            .last_duration_seconds
            .map_or_else(|| DASH.to_owned(), |s| format!("{:.1} ms", s * 1000.0)),
        samples = target
            .last_samples
            .map_or_else(|| DASH.to_owned(), |n| n.to_string()),
        scrapes = target.scrapes,
        failures = target.failures,
    );
}

/// A JSON field as page text: strings escaped, numbers as they are, null as a dash.
fn field(value: &Value, key: &str) -> String {
    match &value[key] {
        Value::Null => DASH.to_owned(),
        Value::String(text) => escape(text),
        other => escape(&other.to_string()),
    }
}

fn filters(out: &mut String, snapshot: &Snapshot) {
    out.push_str("<section id=\"filters\">\n<h2>Filters</h2>\n");
    let list = snapshot.filters["filters"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if list.is_empty() {
        out.push_str("<p class=\"none\">No filters configured.</p>\n");
    } else {
        out.push_str(
            "<table class=\"filters\">\n<thead><tr><th>Filter</th><th>Scope</th><th>Module</th>\
             <th>Hash</th><th>Loaded</th><th>On error</th><th class=\"num\">Calls</th><th class=\"num\">Errors</th>\
             <th>Last error</th></tr></thead>\n<tbody>\n",
        );
        for filter in list {
            let hash = filter["hash"].as_str().unwrap_or_default();
            let short: String = hash.chars().take(12).collect();
            let _ = writeln!(
                out,
                "<tr class=\"filter\" data-name=\"{name}\"><td>{name}</td><td>{scope}</td>\
                 <td class=\"url\">{module}</td><td><code title=\"{hash}\">{short}</code></td>\
                 <td>{loaded}</td><td>{on_error}</td><td class=\"num\">{calls}</td>\
                 <td class=\"num\">{errors}</td><td class=\"error\">{last_error}</td></tr>",
                name = field(filter, "name"),
                scope = field(filter, "scope"),
                module = field(filter, "module"),
                hash = escape(hash),
                short = escape(&short),
                loaded = field(filter, "loaded_at"),
                on_error = field(filter, "on_error"),
                calls = field(filter, "calls"),
                errors = field(filter, "errors"),
                last_error = field(filter, "last_error"),
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    let reload = &snapshot.filters["reload"];
    if reload.is_object() {
        let outcome = if reload["last_attempt"].is_null() {
            "no reload yet".to_owned()
        } else if reload["last_error"].is_null() {
            "<span class=\"health up\">ok</span>".to_owned()
        } else {
            "<span class=\"health down\">refused</span>".to_owned()
        };
        let _ = write!(
            out,
            "<h3>Last reload</h3>\n<dl class=\"facts reload\">\n<dt>Outcome</dt><dd>{outcome}</dd>\n\
             <dt>Last attempt</dt><dd>{attempt}</dd>\n<dt>Last success</dt><dd>{success}</dd>\n\
             <dt>Duration</dt><dd>{duration}</dd>\n<dt>Error</dt><dd class=\"error\">{error}</dd>\n</dl>\n",
            attempt = field(reload, "last_attempt"),
            success = field(reload, "last_success"),
            duration = reload["last_duration_ms"]
                .as_f64()
                .map_or_else(|| DASH.to_owned(), |ms| format!("{ms:.1} ms")),
            error = field(reload, "last_error"),
        );
    }
    out.push_str("</section>\n");
}

fn connection_text(connection: Option<&super::Connection>) -> String {
    match connection {
        None => "not connected yet".to_owned(),
        Some(c) => format!(
            "<span class=\"health {class}\">{state}</span> <code>{server}</code> \
             <small>{name} {version}</small>",
            class = if c.state == "connected" { "up" } else { "down" },
            state = escape(&c.state),
            server = escape(&c.server),
            name = escape(&c.server_name),
            version = escape(&c.server_version),
        ),
    }
}

fn publisher(out: &mut String, state: Option<&PublisherState>, now_ms: i64) {
    out.push_str("<section id=\"publisher\">\n<h2>Publisher</h2>\n");
    let Some(state) = state else {
        out.push_str("<p class=\"none\">This process runs no poller.</p>\n</section>\n");
        return;
    };
    let _ = write!(
        out,
        "<dl class=\"facts publisher\">\n<dt>Connection</dt><dd>{connection}</dd>\n\
         <dt>Servers</dt><dd><code>{urls}</code></dd>\n<dt>Stream</dt><dd><code>{stream}</code> \
         (subjects <code>{topic}.&lt;publisher&gt;.&lt;job&gt;</code>)</dd>\n\
         <dt>Outage buffer</dt><dd>{scrapes} scrapes, {bytes} of {limit}; {dropped} dropped</dd>\n\
         <dt>Published</dt><dd>{published}</dd>\n<dt>Last ack</dt><dd>{ack}</dd>\n\
         <dt>Publish errors</dt><dd>{errors}</dd>\n<dt>Last error</dt><dd class=\"error\">{error}</dd>\n</dl>\n</section>\n",
        connection = connection_text(state.connection.as_ref()),
        urls = escape(&state.urls.join(", ")),
        stream = escape(&state.stream),
        topic = escape(&state.topic),
        scrapes = state.buffer_scrapes,
        bytes = bytes(state.buffer_bytes),
        limit = bytes(state.buffer_limit_bytes),
        dropped = state.buffer_dropped,
        published = state.published,
        ack = when(state.last_ack_ms, now_ms),
        errors = state.publish_errors,
        error = optional(state.last_error.as_deref()),
    );
}

fn receiver(out: &mut String, state: Option<&ReceiverState>, now_ms: i64) {
    out.push_str("<section id=\"receiver\">\n<h2>Receiver</h2>\n");
    let Some(state) = state else {
        out.push_str("<p class=\"none\">This process runs no receiver.</p>\n</section>\n");
        return;
    };
    let _ = write!(
        out,
        "<dl class=\"facts receiver\">\n<dt>Connection</dt><dd>{connection}</dd>\n\
         <dt>Servers</dt><dd><code>{urls}</code></dd>\n<dt>Stream</dt><dd><code>{stream}</code></dd>\n\
         <dt>Consumer</dt><dd><code>{consumer}</code></dd>\n<dt>Pending</dt><dd>{pending}</dd>\n\
         <dt>Received</dt><dd>{received} ({redelivered} redelivered)</dd>\n\
         <dt>Last batch</dt><dd>{batch}</dd>\n</dl>\n",
        connection = connection_text(state.connection.as_ref()),
        urls = escape(&state.urls.join(", ")),
        stream = escape(&state.stream),
        consumer = escape(&state.consumer),
        pending = state
            .pending
            .map_or_else(|| DASH.to_owned(), |n| n.to_string()),
        received = state.received,
        redelivered = state.redelivered,
        batch = when(state.last_batch_ms, now_ms),
    );
    out.push_str(
        "<h3>Sinks</h3>\n<table class=\"sinks\">\n<thead><tr><th>Sink</th><th class=\"num\">Pushed</th>\
         <th class=\"num\">Push errors</th><th>Last error</th></tr></thead>\n<tbody>\n",
    );
    for sink in &state.sinks {
        let _ = writeln!(
            out,
            "<tr class=\"sink\" data-sink=\"{name}\"><td>{name}</td><td class=\"num\">{pushed}</td>\
             <td class=\"num\">{errors}</td><td class=\"error\">{error}</td></tr>",
            name = escape(&sink.sink),
            pushed = sink.pushed,
            errors = sink.errors,
            error = match (&sink.last_error, sink.last_error_ms) {
                (Some(error), Some(at)) => format!("{} <small>({})</small>", escape(error), time(at)),
                _ => DASH.to_owned(),
            },
        );
    }
    out.push_str("</tbody>\n</table>\n<h3>Last push per group</h3>\n");
    if state.groups.is_empty() {
        out.push_str("<p class=\"none\">Nothing pushed yet.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<table class=\"groups\">\n<thead><tr><th>Sink</th><th>Job</th><th>Instance</th>\
         <th>Publisher</th><th>Scrape taken</th><th>Pushed</th></tr></thead>\n<tbody>\n",
    );
    for group in &state.groups {
        let _ = writeln!(
            out,
            "<tr class=\"group\"><td>{sink}</td><td>{job}</td><td>{instance}</td>\
             <td>{publisher}</td><td>{taken}</td><td>{pushed}</td></tr>",
            sink = escape(&group.sink),
            job = escape(&group.job),
            instance = escape(&group.instance),
            publisher = escape(&group.publisher),
            taken = when(Some(group.scrape_ms), now_ms),
            pushed = when(Some(group.pushed_ms), now_ms),
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

#[cfg(test)]
#[path = "html_tests.rs"]
mod tests;
