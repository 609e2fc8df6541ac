//! Series selectors as PromQL writes them: `name{label="v", other!="w", re=~"a|b", not!~"c"}`,
//! the name optional (`{job="node"}`), the braces optional (`up`). Regexes are anchored, as in
//! PromQL. Used by `filter run --explain` and the monitor port's `/explain` to pick the series
//! whose way through a chain is shown.
//!
//! **Invariant:** a selector matches on a series' labels as the chain receives it, `__name__`
//! included; an absent label has the value `""` (so `{env=""}` matches series without `env`).

use regex::Regex;

use crate::model::Series;

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// One `label op "value"` of a selector.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    fn new(name: &str, op: MatchOp, value: String) -> Result<Matcher, String> {
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("regex {value:?} of label {name}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value,
            regex,
        })
    }

    fn matches(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(regex)) => regex.is_match(value),
            (MatchOp::NotRegex, Some(regex)) => !regex.is_match(value),
            (_, None) => false,
        }
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

/// A parsed selector: every matcher must hold (the metric name is a `__name__` matcher).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector {
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// The selector that matches every series (an empty `--explain`).
    pub fn all() -> Selector {
        Selector::default()
    }

    /// Parses `name{label="v",…}`; the error says where and what was expected.
    pub fn parse(text: &str) -> Result<Selector, String> {
        Parser {
            text,
            at: 0,
            matchers: Vec::new(),
        }
        .selector()
        .map_err(|e| format!("selector {text:?}: {e}"))
    }

    /// Whether `series` (labels as the chain receives them) matches every matcher.
    pub fn matches(&self, series: &Series) -> bool {
        self.matchers.iter().all(|matcher| {
            let value = if matcher.name == "__name__" {
                series.name.as_str()
            } else {
                series.label(&matcher.name).unwrap_or("")
            };
            matcher.matches(value)
        })
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rest = self.matchers.as_slice();
        if let Some((first, others)) = rest.split_first() {
            if first.name == "__name__" && first.op == MatchOp::Equal {
                f.write_str(&first.value)?;
                rest = others;
                if rest.is_empty() {
                    return Ok(());
                }
            }
        }
        f.write_str("{")?;
        for (i, m) in rest.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}{}{}", m.name, m.op.as_str(), quote(&m.value))?;
        }
        f.write_str("}")
    }
}

/// A label value in double quotes, escaped as in the exposition format.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
    matchers: Vec<Matcher>,
}

impl Parser<'_> {
    fn selector(mut self) -> Result<Selector, String> {
        self.skip_space();
        if let Some(name) = self.name(true) {
            self.matchers
                .push(Matcher::new("__name__", MatchOp::Equal, name)?);
        }
        self.skip_space();
        if self.eat('{') {
            self.skip_space();
            while !self.eat('}') {
                self.matcher()?;
                self.skip_space();
                if self.eat(',') {
                    self.skip_space();
                    continue;
                }
                if !self.eat('}') {
                    return Err(self.expected("',' or '}'"));
                }
                break;
            }
        }
        self.skip_space();
        if self.at < self.text.len() {
            return Err(self.expected("the end (after the name and the {…} matchers)"));
        }
        Ok(Selector {
            matchers: self.matchers,
        })
    }

    fn matcher(&mut self) -> Result<(), String> {
        let Some(name) = self.name(false) else {
            return Err(self.expected("a label name"));
        };
        self.skip_space();
        let rest = &self.text[self.at..];
        let op = if rest.starts_with("=~") {
            MatchOp::Regex
        } else if rest.starts_with("!~") {
            MatchOp::NotRegex
        } else if rest.starts_with("!=") {
            MatchOp::NotEqual
        } else if rest.starts_with('=') {
            MatchOp::Equal
        } else {
            return Err(self.expected("=, !=, =~ or !~"));
        };
        self.at += op.as_str().len();
        self.skip_space();
        let value = self.string()?;
        self.matchers.push(Matcher::new(&name, op, value)?);
        Ok(())
    }

    /// A metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) or label name (no `:`).
    fn name(&mut self, metric: bool) -> Option<String> {
        let start = self.at;
        for (i, c) in self.text[start..].char_indices() {
            let ok = c.is_ascii_alphabetic()
                || c == '_'
                || (metric && c == ':')
                || (i > 0 && c.is_ascii_digit());
            if !ok {
                break;
            }
            self.at = start + i + c.len_utf8();
        }
        (self.at > start).then(|| self.text[start..self.at].to_owned())
    }

    /// A double-, single- or back-quoted string; `\\`, `\"`, `\'`, `\n`, `\t` escapes.
    fn string(&mut self) -> Result<String, String> {
        let Some(quote) = self.text[self.at..]
            .chars()
            .next()
            .filter(|c| matches!(c, '"' | '\'' | '`'))
        else {
            return Err(self.expected("a quoted value"));
        };
        let start = self.at;
        self.at += 1;
        let mut value = String::new();
        let mut chars = self.text[self.at..].char_indices();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                self.at += i + 1;
                return Ok(value);
            }
            if c == '\\' && quote != '`' {
                match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, c)) => value.push(c),
                    None => break,
                }
            } else {
                value.push(c);
            }
        }
        self.at = start;
        Err(self.expected("a closing quote"))
    }

    fn eat(&mut self, c: char) -> bool {
        if self.text[self.at..].starts_with(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn skip_space(&mut self) {
        let rest = &self.text[self.at..];
        self.at += rest.len() - rest.trim_start().len();
    }

    fn expected(&self, what: &str) -> String {
        let found = self.text[self.at..].chars().next();
        match found {
            Some(c) => format!("expected {what} at offset {}, found {c:?}", self.at),
            None => format!("expected {what} at the end"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Label;

    fn series(name: &str, labels: &[(&str, &str)]) -> Series {
        Series {
            name: name.into(),
            labels: labels.iter().map(|(n, v)| Label::new(*n, *v)).collect(),
            value: 1.0,
            timestamp_ms: None,
        }
    }

    #[test]
    fn selectors_parse_as_promql_writes_them() {
        type Expected<'a> = &'a [(&'a str, MatchOp, &'a str)];
        let cases: &[(&str, Expected)] = &[
            ("up", &[("__name__", MatchOp::Equal, "up")]),
            (
                "node_cpu_seconds_total{mode=\"idle\"}",
                &[
                    ("__name__", MatchOp::Equal, "node_cpu_seconds_total"),
                    ("mode", MatchOp::Equal, "idle"),
                ],
            ),
            (
                " {job = 'node' , cpu!=\"0\", mode=~`i.*`, x!~\"a\\\"b\",} ",
                &[
                    ("job", MatchOp::Equal, "node"),
                    ("cpu", MatchOp::NotEqual, "0"),
                    ("mode", MatchOp::Regex, "i.*"),
                    ("x", MatchOp::NotRegex, "a\"b"),
                ],
            ),
            (
                "ns:rule_name{}",
                &[("__name__", MatchOp::Equal, "ns:rule_name")],
            ),
            ("", &[]),
            ("{}", &[]),
        ];
        for (text, expected) in cases {
            let selector = Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let got: Vec<(&str, MatchOp, &str)> = selector
                .matchers
                .iter()
                .map(|m| (m.name.as_str(), m.op, m.value.as_str()))
                .collect();
            assert_eq!(&got, expected, "{text}");
        }
    }

    #[test]
    fn bad_selectors_say_where_and_what_was_expected() {
        let cases = [
            (
                "up{mode}",
                "expected =, !=, =~ or !~ at offset 7, found '}'",
            ),
            (
                "up{mode=idle}",
                "expected a quoted value at offset 8, found 'i'",
            ),
            ("up{mode=\"idle}", "expected a closing quote at offset 8"),
            (
                "up{mode=\"idle\" cpu=\"1\"}",
                "expected ',' or '}' at offset 15",
            ),
            ("up{1a=\"x\"}", "expected a label name at offset 3"),
            ("up}", "expected the end"),
            ("{x=~\"(\"}", "regex \"(\" of label x"),
        ];
        for (text, expected) in cases {
            let error = Selector::parse(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
            assert!(error.starts_with(&format!("selector {text:?}")), "{error}");
        }
    }

    #[test]
    fn matchers_hold_on_name_and_labels_with_absent_labels_empty() {
        let cpu = series("node_cpu_seconds_total", &[("cpu", "0"), ("mode", "idle")]);
        let cases = [
            ("node_cpu_seconds_total", true),
            ("node_cpu", false),
            ("{__name__=~\"node_cpu.*\"}", true),
            ("{__name__=~\"cpu\"}", false),
            ("node_cpu_seconds_total{mode=\"idle\"}", true),
            ("node_cpu_seconds_total{mode!=\"idle\"}", false),
            ("{mode=~\"id|user\"}", false),
            ("{mode=~\"idle|user\"}", true),
            ("{mode!~\"i.*\"}", false),
            ("{env=\"\"}", true),
            ("{env!=\"\"}", false),
            ("{cpu=\"0\",mode=\"user\"}", false),
            ("", true),
        ];
        for (text, expected) in cases {
            let selector = Selector::parse(text).expect(text);
            assert_eq!(selector.matches(&cpu), expected, "{text}");
        }
    }

    #[test]
    fn a_selector_prints_back_as_it_parses() {
        for text in [
            "up",
            "up{job=\"a\\\"b\"}",
            "{mode=~\"i.*\",cpu!=\"0\"}",
            "{}",
        ] {
            let selector = Selector::parse(text).expect(text);
            assert_eq!(selector.to_string(), text);
            assert_eq!(
                Selector::parse(&selector.to_string()).expect(text),
                selector
            );
        }
    }
}
