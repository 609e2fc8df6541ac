//! The filter's configuration: `{ relabel_configs: [ <relabel_config>, ... ], cache: {...} }` with
//! Prometheus' keys, defaults and validation rules (`model/relabel/relabel.go`), parsed from the
//! JSON the host hands to `init` and compiled once into [`Rule`]s, plus the bounds of the
//! per-series outcome cache ([`Settings`]).
//!
//! Prometheus validates names with its legacy grammar here, because promrelay's batches only carry
//! legacy names (`[a-zA-Z_][a-zA-Z0-9_]*`). This module never touches series.

#![forbid(unsafe_code)]

use crate::text::{self, Template};
use promrelay_sdk::memo::{MemoLimits, SeriesKey};
use regex::Regex;
use serde::{Deserialize, Deserializer};
use std::fmt;

const DEFAULT_SEPARATOR: &str = ";";
const DEFAULT_REGEX: &str = "(.*)";
const DEFAULT_REPLACEMENT: &str = "$1";

/// A relabel action, matched case-insensitively as Prometheus does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    const ALL: [Action; 11] = [
        Action::Replace,
        Action::Keep,
        Action::Drop,
        Action::KeepEqual,
        Action::DropEqual,
        Action::HashMod,
        Action::LabelMap,
        Action::LabelDrop,
        Action::LabelKeep,
        Action::Lowercase,
        Action::Uppercase,
    ];

    /// The action's name as Prometheus spells it in configuration and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }

    fn parse(text: &str) -> Option<Action> {
        let lower = text.to_lowercase();
        Action::ALL
            .into_iter()
            .find(|action| action.as_str() == lower)
    }
}

/// One `<relabel_config>` as written. `None` = key absent (the default applies); a key given as
/// YAML/JSON `null` is its zero value (`""`, `0`), except `regex: null`, which is the empty regex —
/// all as Prometheus' YAML decoding does. Scalars (numbers, booleans) are accepted as strings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    #[serde(default, deserialize_with = "nullable_list")]
    pub source_labels: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable_scalar")]
    pub separator: Option<String>,
    #[serde(default, deserialize_with = "nullable_scalar")]
    pub regex: Option<String>,
    #[serde(default, deserialize_with = "nullable_modulus")]
    pub modulus: Option<u64>,
    #[serde(default, deserialize_with = "nullable_scalar")]
    pub target_label: Option<String>,
    #[serde(default, deserialize_with = "nullable_scalar")]
    pub replacement: Option<String>,
    #[serde(default, deserialize_with = "nullable_scalar")]
    pub action: Option<String>,
}

fn scalar_text(value: serde_json::Value) -> Result<String, String> {
    match value {
        serde_json::Value::Null => Ok(String::new()),
        serde_json::Value::String(text) => Ok(text),
        serde_json::Value::Bool(flag) => Ok(flag.to_string()),
        serde_json::Value::Number(number) => Ok(number.to_string()),
        other => Err(format!("expected a string, found {other}")),
    }
}

fn nullable_scalar<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    scalar_text(value)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn nullable_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(scalar_text)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(serde::de::Error::custom),
        other => Err(serde::de::Error::custom(format!(
            "expected a list of label names, found {other}"
        ))),
    }
}

fn nullable_modulus<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    Ok(Some(Option::<u64>::deserialize(deserializer)?.unwrap_or(0)))
}

/// One problem found in the configuration, located by rule index and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Index into `relabel_configs`, when the problem belongs to one rule.
    pub rule: Option<usize>,
    /// The key the problem is about, when it is about one key.
    pub key: Option<&'static str>,
    /// Prometheus' own wording where it has one.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rule.is_none() && self.key.is_none() {
            // About the configuration as a whole: the message names what it is about.
            return f.write_str(&self.message);
        }
        f.write_str("relabel_configs")?;
        if let Some(rule) = self.rule {
            write!(f, "[{rule}]")?;
        }
        if let Some(key) = self.key {
            write!(f, ".{key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a configuration; the filter refuses to start with any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A validated, compiled relabel rule. Built only by [`parse`] / [`compile`].
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) action: Action,
    pub(crate) source_labels: Vec<String>,
    pub(crate) separator: String,
    pub(crate) regex: Regex,
    /// The regex is `(.*)`: it matches everything and group 1 is the whole value.
    pub(crate) matches_all: bool,
    pub(crate) modulus: u64,
    pub(crate) target_label: String,
    pub(crate) target: Template,
    pub(crate) replacement: Template,
    /// The rule as an operator wrote it, in one line, for traces (`promrelay_trace`).
    pub(crate) summary: String,
}

impl Rule {
    /// The rule's action.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The rule in one line: its action and the settings that matter for it, e.g.
    /// `replace source_labels=[__name__] regex="node_(.*)" target_label=__name__
    /// replacement="host_$1"`.
    pub fn summary(&self) -> &str {
        &self.summary
    }
}

/// One line naming a rule's action and the settings its action reads (defaults left out).
fn summarise(
    action: Action,
    source_labels: &[String],
    separator: &str,
    pattern: &str,
    modulus: u64,
    target_label: &str,
    replacement: &str,
) -> String {
    use std::fmt::Write as _;
    use Action::*;
    let mut line = action.as_str().to_owned();
    let uses_sources = !matches!(action, LabelMap | LabelDrop | LabelKeep);
    if uses_sources {
        let _ = write!(line, " source_labels=[{}]", source_labels.join(","));
        if separator != DEFAULT_SEPARATOR {
            let _ = write!(line, " separator={separator:?}");
        }
    }
    if !matches!(
        action,
        KeepEqual | DropEqual | HashMod | Lowercase | Uppercase
    ) {
        let _ = write!(line, " regex={pattern:?}");
    }
    if action == HashMod {
        let _ = write!(line, " modulus={modulus}");
    }
    if !target_label.is_empty() {
        let _ = write!(line, " target_label={target_label}");
    }
    if matches!(action, Replace | LabelMap) {
        let _ = write!(line, " replacement={replacement:?}");
    }
    line
}

/// Parses the filter's JSON configuration (`null` = no rules) and compiles every rule.
pub fn parse(json: &[u8]) -> Result<Vec<Rule>, ConfigError> {
    let top: serde_json::Value = serde_json::from_slice(json).map_err(|error| ConfigError {
        problems: vec![Problem {
            rule: None,
            key: None,
            message: format!("the filter configuration is not valid JSON: {error}"),
        }],
    })?;
    from_value(top)
}

/// As [`parse`], from an already decoded JSON value (the YAML test fixtures come this way).
pub fn from_value(top: serde_json::Value) -> Result<Vec<Rule>, ConfigError> {
    settings_from_value(top).map(|settings| settings.rules)
}

/// Everything the filter's `init` builds from its configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The compiled rules, in order.
    pub rules: Vec<Rule>,
    /// A hash of the rules as configured: the version of every cached outcome.
    pub rules_version: u64,
    /// `cache`: how many series' outcomes the filter remembers, and for how long.
    pub cache: MemoLimits,
}

/// Parses the whole configuration: `relabel_configs` and the optional `cache` map
/// (`max_series`, `max_idle_scrapes`; see [`MemoLimits`] for the defaults).
pub fn settings_from_value(top: serde_json::Value) -> Result<Settings, ConfigError> {
    let whole = |message: String| ConfigError {
        problems: vec![Problem {
            rule: None,
            key: None,
            message,
        }],
    };
    let (list, cache) = match top {
        serde_json::Value::Null => (serde_json::Value::Null, None),
        serde_json::Value::Object(mut map) => {
            let list = map.remove("relabel_configs");
            let cache = map.remove("cache");
            if let Some(unknown) = map.keys().next() {
                return Err(whole(format!(
                    "unknown key {unknown:?} in the filter configuration (expected relabel_configs and cache)"
                )));
            }
            (list.unwrap_or(serde_json::Value::Null), cache)
        }
        other => {
            return Err(whole(format!(
                "the filter configuration must be a map with a relabel_configs list, found {other}"
            )))
        }
    };
    let cache = cache_limits(cache).map_err(whole)?;
    // The same configuration always gives the same text, hence the same version.
    let rules_text = list.to_string();
    let rules_version =
        SeriesKey::of(0, [("relabel_configs", rules_text.as_str())]).as_u128() as u64;
    let rules = compile_list(list)?;
    Ok(Settings {
        rules,
        rules_version,
        cache,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheConfig {
    max_series: Option<usize>,
    max_idle_scrapes: Option<u32>,
}

fn cache_limits(value: Option<serde_json::Value>) -> Result<MemoLimits, String> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(MemoLimits::default());
    };
    let config: CacheConfig = serde_json::from_value(value).map_err(|error| {
        format!("cache: {error} (expected a map of max_series and max_idle_scrapes, both whole numbers)")
    })?;
    let defaults = MemoLimits::default();
    let limits = MemoLimits {
        max_series: config.max_series.unwrap_or(defaults.max_series),
        max_idle_scrapes: config.max_idle_scrapes.unwrap_or(defaults.max_idle_scrapes),
    };
    if limits.max_series > 0 && limits.max_idle_scrapes == 0 {
        return Err(
            "cache.max_idle_scrapes: must be at least 1 (set cache.max_series: 0 to turn the cache off)"
                .to_owned(),
        );
    }
    Ok(limits)
}

fn compile_list(list: serde_json::Value) -> Result<Vec<Rule>, ConfigError> {
    let whole = |message: String| ConfigError {
        problems: vec![Problem {
            rule: None,
            key: None,
            message,
        }],
    };
    let items = match list {
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Array(items) => items,
        other => {
            return Err(whole(format!(
                "relabel_configs must be a list, found {other}"
            )))
        }
    };
    let mut rules = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        if item.is_null() {
            problems.push(Problem {
                rule: Some(index),
                key: None,
                message: "empty or null relabeling rule".to_owned(),
            });
            continue;
        }
        match serde_json::from_value::<RelabelConfig>(item) {
            Ok(config) => match compile(index, &config) {
                Ok(rule) => rules.push(rule),
                Err(mut found) => problems.append(&mut found),
            },
            Err(error) => problems.push(Problem {
                rule: Some(index),
                key: None,
                message: error.to_string(),
            }),
        }
    }
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(ConfigError { problems })
    }
}

/// Validates one rule as Prometheus' `Config.Validate` does (legacy names) and compiles it.
pub fn compile(index: usize, config: &RelabelConfig) -> Result<Rule, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut problem = |key: Option<&'static str>, message: String| {
        problems.push(Problem {
            rule: Some(index),
            key,
            message,
        })
    };

    let action = match config.action.as_deref() {
        None => Some(Action::Replace),
        Some("") => {
            problem(Some("action"), "relabel action cannot be empty".to_owned());
            None
        }
        Some(text) => {
            let action = Action::parse(text);
            if action.is_none() {
                problem(Some("action"), format!("unknown relabel action {text:?}"));
            }
            action
        }
    };
    let pattern = config.regex.as_deref().unwrap_or(DEFAULT_REGEX);
    let regex = match text::compile_regex(pattern) {
        Ok(regex) => Some(regex),
        Err(error) => {
            let detail = error.to_string();
            let reason = detail
                .lines()
                .last()
                .map_or(detail.as_str(), |line| line.trim_start_matches("error: "));
            problem(
                Some("regex"),
                format!("invalid regex {pattern:?}: {reason}"),
            );
            None
        }
    };
    let source_labels = config.source_labels.clone().unwrap_or_default();
    for name in &source_labels {
        if !text::is_label_name(name) {
            problem(
                Some("source_labels"),
                format!("{name:?} is not a valid label name"),
            );
        }
    }
    let separator = config.separator.as_deref().unwrap_or(DEFAULT_SEPARATOR);
    let modulus = config.modulus.unwrap_or(0);
    let target_label = config.target_label.as_deref().unwrap_or("");
    let replacement = config.replacement.as_deref().unwrap_or(DEFAULT_REPLACEMENT);

    if let Some(action) = action {
        use Action::*;
        let name = action.as_str();
        let invalid_target =
            || format!("{target_label:?} is invalid 'target_label' for {name} action");
        if action == HashMod && modulus == 0 {
            problem(
                Some("modulus"),
                "relabel configuration for hashmod requires non-zero modulus".to_owned(),
            );
        }
        let needs_target = matches!(
            action,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        );
        if needs_target && target_label.is_empty() {
            problem(
                Some("target_label"),
                format!("relabel configuration for {name} action requires 'target_label' value"),
            );
        } else if action == Replace {
            let valid = if target_label.contains('$') {
                text::is_label_name_template(target_label)
            } else {
                text::is_label_name(target_label)
            };
            if !valid {
                problem(Some("target_label"), invalid_target());
            }
        } else if needs_target && !text::is_label_name(target_label) {
            problem(Some("target_label"), invalid_target());
        }
        if matches!(action, Lowercase | Uppercase | KeepEqual | DropEqual)
            && replacement != DEFAULT_REPLACEMENT
        {
            problem(
                Some("replacement"),
                format!("'replacement' can not be set for {name} action"),
            );
        }
        if action == LabelMap && !text::is_label_name_template(replacement) {
            problem(
                Some("replacement"),
                format!("{replacement:?} is invalid 'replacement' for {name} action"),
            );
        }
        // Prometheus compares the regex by identity: any explicit `regex` counts as set.
        if matches!(action, KeepEqual | DropEqual)
            && (config.regex.is_some() || modulus != 0 || separator != DEFAULT_SEPARATOR)
        {
            problem(
                None,
                format!(
                    "{name} action requires only 'source_labels' and `target_label`, and no other fields"
                ),
            );
        }
        if matches!(action, LabelDrop | LabelKeep)
            && (config.source_labels.is_some()
                || !target_label.is_empty()
                || modulus != 0
                || separator != DEFAULT_SEPARATOR
                || replacement != DEFAULT_REPLACEMENT)
        {
            problem(
                None,
                format!("{name} action requires only 'regex', and no other fields"),
            );
        }
    }

    match (action, regex) {
        (Some(action), Some(regex)) if problems.is_empty() => Ok(Rule {
            summary: summarise(
                action,
                &source_labels,
                separator,
                pattern,
                modulus,
                target_label,
                replacement,
            ),
            action,
            matches_all: pattern == DEFAULT_REGEX,
            target: Template::parse(target_label, &regex),
            replacement: Template::parse(replacement, &regex),
            source_labels,
            separator: separator.to_owned(),
            regex,
            modulus,
            target_label: target_label.to_owned(),
        }),
        _ => Err(problems),
    }
}
