//! `drop`: drops the series that match, or with `action: keep` keeps only those.
//!
//! ```yaml
//! filters:
//!   - name: drop-noise
//!     module: /etc/promrelay/filters/drop.wasm
//!     config:
//!       metrics: ["go_*", "process_*"]          # globs on the sample name: * any run, ? one char
//!       metrics_regex: ["node_scrape_.*"]       # regexes on the sample name (RE2 syntax, anchored)
//!       labels:                                 # a label's whole value matches the regex
//!         - { label: mode, regex: "idle|iowait" }
//!         - { label: device, regex: "lo|veth.*" }
//!       action: drop                            # drop (default) or keep
//! ```
//!
//! A series matches when any of the listed matchers matches it. Names are sample names, the
//! `__name__` label (`rpc_seconds_bucket`, not the family `rpc_seconds`): `rpc_seconds*` covers a
//! whole histogram. A label matcher on an absent label sees the empty string, as Prometheus
//! does, so `{label: env, regex: ""}` matches series without `env`. An empty config drops
//! nothing.
//!
//! Only ever drops, so its answer is PASS or MASK: the relay never re-reads a rewritten batch.

use promrelay_sdk::{export_filter, Batch, Error, Filter, Series};
use regex::Regex;
use serde::Deserialize;

/// The filter's `config:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Glob patterns on the sample name.
    pub metrics: Vec<String>,
    /// Regular expressions on the sample name, anchored at both ends.
    pub metrics_regex: Vec<String>,
    /// Label matchers.
    pub labels: Vec<LabelMatcher>,
    /// Whether matching series are dropped or kept.
    pub action: Action,
}

/// One `{label, regex}` matcher.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelMatcher {
    pub label: String,
    pub regex: String,
}

/// What happens to a matching series.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Drop,
    Keep,
}

/// The compiled matchers.
pub struct Drop {
    /// All name globs and regexes as one anchored alternation.
    name: Option<Regex>,
    labels: Vec<(String, Regex)>,
    action: Action,
}

/// Turns a glob (`*`, `?`) into an unanchored regex fragment.
fn glob_to_regex(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 8);
    for c in glob.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            other => out.push_str(&regex::escape(other.encode_utf8(&mut [0; 4]))),
        }
    }
    out
}

/// `pattern` anchored at both ends, as Prometheus anchors its regexes. The pattern is compiled
/// alone first so that an error message shows the user's text, not the wrapper.
fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(pattern)?;
    Regex::new(&format!("^(?:{pattern})$"))
}

impl Filter for Drop {
    type Config = Config;

    fn init(config: Config) -> Result<Self, Error> {
        let mut alternatives = Vec::new();
        for glob in &config.metrics {
            alternatives.push(glob_to_regex(glob));
        }
        for (index, pattern) in config.metrics_regex.iter().enumerate() {
            // Compile each alone first so an error names the pattern that is wrong.
            anchored(pattern)
                .map_err(|e| Error::new(e).context(format!("metrics_regex[{index}]")))?;
            alternatives.push(format!("(?:{pattern})"));
        }
        let name = if alternatives.is_empty() {
            None
        } else {
            Some(anchored(&alternatives.join("|")).map_err(|e| Error::new(e).context("metrics"))?)
        };
        let mut labels = Vec::new();
        for (index, matcher) in config.labels.into_iter().enumerate() {
            let regex = anchored(&matcher.regex)
                .map_err(|e| Error::new(e).context(format!("labels[{index}].regex")))?;
            labels.push((matcher.label, regex));
        }
        Ok(Drop {
            name,
            labels,
            action: config.action,
        })
    }

    fn process(&mut self, batch: &mut Batch<'_>) -> Result<(), Error> {
        if self.name.is_none() && self.labels.is_empty() {
            return Ok(());
        }
        let keep_matches = self.action == Action::Keep;
        batch.retain(|series| self.matches(series) == keep_matches);
        Ok(())
    }
}

impl Drop {
    /// Hot path, once per series.
    fn matches(&self, series: &Series<'_>) -> bool {
        if self
            .name
            .as_ref()
            .is_some_and(|name| name.is_match(series.name()))
        {
            return true;
        }
        self.labels
            .iter()
            .any(|(label, regex)| regex.is_match(series.label(label).unwrap_or("")))
    }
}

export_filter!(Drop);

#[cfg(test)]
mod tests;
