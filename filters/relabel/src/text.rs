//! Small text rules Prometheus' relabelling depends on: Go's `regexp.Expand` template syntax
//! (`$1`, `${1}`, `$name`, `${name}`, `$$`), the legacy label/metric name grammar, the RE2 → Rust
//! regex translation, and Go's per-rune case mapping.
//!
//! Everything here is pure and allocation-free on its hot entry points ([`Template::expand_into`],
//! [`push_lower`], [`push_upper`]); it must never know about series or batches.

#![forbid(unsafe_code)]

use regex::Regex;
use std::sync::OnceLock;

/// One piece of a parsed replacement template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Text copied as is (`$$` already folded to `$`, malformed `$` kept raw).
    Literal(String),
    /// A capture group by index (named groups are resolved at compile time).
    Group(usize),
}

/// A `target_label` or `replacement` template, parsed once with Go's `regexp.Expand` rules:
/// `$name` takes the longest run of letters, digits and `_`, so `$1_x` refers to the group named
/// `1_x` (which does not exist: it expands to nothing); `${1}_x` is group 1 then `_x`; a name of
/// digits only (no leading zero) is a group index; anything malformed keeps its `$` as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
    /// The whole template when it contains no `$` at all (no expansion needed).
    literal: Option<String>,
}

impl Template {
    /// Parses `template` against `regex`, resolving named groups to their indices.
    pub fn parse(template: &str, regex: &Regex) -> Template {
        if !template.contains('$') {
            return Template {
                pieces: vec![Piece::Literal(template.to_owned())],
                literal: Some(template.to_owned()),
            };
        }
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some(dollar) = rest.find('$') {
            text.push_str(&rest[..dollar]);
            rest = &rest[dollar + 1..];
            if let Some(after) = rest.strip_prefix('$') {
                text.push('$');
                rest = after;
                continue;
            }
            let Some((name, number, after)) = extract(rest) else {
                text.push('$');
                continue;
            };
            rest = after;
            let group = match number {
                Some(index) => Some(index),
                // Go takes the first group of that name; the regex crate forbids duplicates.
                None => regex
                    .capture_names()
                    .position(|candidate| candidate == Some(name)),
            };
            if let Some(index) = group {
                if index < regex.captures_len() {
                    if !text.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Group(index));
                }
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Literal(text));
        }
        Template {
            pieces,
            literal: None,
        }
    }

    /// The template's text when it needs no expansion.
    pub fn literal(&self) -> Option<&str> {
        self.literal.as_deref()
    }

    /// Appends the expansion to `out`. `group(i)` returns the text of capture group `i`, or `None`
    /// when it did not participate in the match. Hot path: allocates only if `out` must grow.
    pub fn expand_into<'s>(&self, out: &mut String, group: impl Fn(usize) -> Option<&'s str>) {
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Group(index) => {
                    if let Some(text) = group(*index) {
                        out.push_str(text);
                    }
                }
            }
        }
    }
}

/// Go's `regexp.extract`: after a `$`, returns (name, group number, rest) or `None` if malformed.
fn extract(text: &str) -> Option<(&str, Option<usize>, &str)> {
    let (braced, body) = match text.strip_prefix('{') {
        Some(body) => (true, body),
        None => (false, text),
    };
    let end = body
        .char_indices()
        .find(|(_, c)| !(c.is_alphabetic() || c.is_numeric() || *c == '_'))
        .map_or(body.len(), |(at, _)| at);
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    let rest = if braced {
        body[end..].strip_prefix('}')?
    } else {
        &body[end..]
    };
    let all_digits = name.bytes().all(|b| b.is_ascii_digit());
    // Go gives up on numbers of 1e8 or more and disallows leading zeros: both become names.
    let number = if all_digits && name.len() <= 8 && !(name.len() > 1 && name.starts_with('0')) {
        name.parse::<usize>().ok()
    } else {
        None
    };
    Some((name, number, rest))
}

/// Legacy Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Legacy Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Prometheus' `relabelTargetLegacy`: a label name that may contain `$1`/`${name}` references.
pub fn is_label_name_template(name: &str) -> bool {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN
        .get_or_init(|| {
            Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{[0-9A-Za-z_]+\}|[0-9A-Za-z_]+))+[0-9A-Za-z_]*)+$")
                .expect("the legacy target pattern is a valid regex")
        })
        .is_match(name)
}

/// Compiles a relabel `regex` the way Prometheus does: RE2 syntax anchored as `^(?s:REGEX)$`.
/// RE2's `\d \w \s \b` are ASCII-only while the regex crate's are Unicode, so they are rewritten
/// to their ASCII forms; `\Q…\E` (RE2 only) becomes an escaped literal; octal escapes are allowed.
pub fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    let translated = translate_re2(pattern);
    regex::RegexBuilder::new(&format!("^(?s:{translated})$"))
        .octal(true)
        .build()
}

fn translate_re2(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    // Whether we are inside a `[...]` class (RE2 has no nested classes).
    let mut in_class = false;
    let mut class_start = false;
    while let Some(c) = chars.next() {
        let at_class_start = std::mem::take(&mut class_start);
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push('\\');
                    break;
                };
                match (next, in_class) {
                    ('d', false) => out.push_str("[0-9]"),
                    ('d', true) => out.push_str("0-9"),
                    ('D', _) => out.push_str("[^0-9]"),
                    ('w', false) => out.push_str("[0-9A-Za-z_]"),
                    ('w', true) => out.push_str("0-9A-Za-z_"),
                    ('W', _) => out.push_str("[^0-9A-Za-z_]"),
                    ('s', false) => out.push_str(r"[\t\n\f\r ]"),
                    ('s', true) => out.push_str(r"\t\n\f\r "),
                    ('S', _) => out.push_str(r"[^\t\n\f\r ]"),
                    ('b', false) => out.push_str(r"(?-u:\b)"),
                    ('B', false) => out.push_str(r"(?-u:\B)"),
                    ('Q', _) => {
                        let mut literal = String::new();
                        while let Some(q) = chars.next() {
                            if q == '\\' && chars.peek() == Some(&'E') {
                                chars.next();
                                break;
                            }
                            literal.push(q);
                        }
                        out.push_str(&regex::escape(&literal));
                    }
                    (other, _) => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                class_start = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
            }
            '[' if chars.peek() == Some(&':') => {
                // A POSIX class such as `[:alpha:]` inside a bracket expression: copy it whole.
                out.push('[');
                for p in chars.by_ref() {
                    out.push(p);
                    if p == ']' {
                        break;
                    }
                }
            }
            '[' => out.push_str(r"\["),
            // The regex crate reads `&&` and `~~` in a class as set operations; RE2 as text.
            '&' if in_class => out.push_str(r"\&"),
            '~' if in_class => out.push_str(r"\~"),
            ']' if in_class && at_class_start => out.push_str(r"\]"),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            other => out.push(other),
        }
    }
    out
}

/// Appends `text` lower-cased rune by rune, as Go's `strings.ToLower` does (simple mappings: no
/// final-sigma rule, one rune in, one rune out). Hot path.
pub fn push_lower(out: &mut String, text: &str) {
    if text.is_ascii() {
        out.extend(text.bytes().map(|b| char::from(b.to_ascii_lowercase())));
        return;
    }
    for c in text.chars() {
        let mut mapped = c.to_lowercase();
        match (mapped.next(), mapped.next()) {
            (Some(single), None) => out.push(single),
            // U+0130 'İ' is the only rune whose full lower-case mapping is longer; Go gives 'i'.
            _ if c == '\u{130}' => out.push('i'),
            _ => out.push(c),
        }
    }
}

/// Appends `text` upper-cased rune by rune, as Go's `strings.ToUpper` does (runes whose only
/// upper-case form is several runes, such as 'ß', stay as they are). Hot path.
pub fn push_upper(out: &mut String, text: &str) {
    if text.is_ascii() {
        out.extend(text.bytes().map(|b| char::from(b.to_ascii_uppercase())));
        return;
    }
    for c in text.chars() {
        let mut mapped = c.to_uppercase();
        match (mapped.next(), mapped.next()) {
            (Some(single), None) => out.push(single),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(template: &str, pattern: &str, input: &str) -> String {
        let regex = compile_regex(pattern).expect("test regex");
        let template = Template::parse(template, &regex);
        let mut locations = regex.capture_locations();
        regex
            .captures_read(&mut locations, input)
            .expect("test input matches");
        let mut out = String::new();
        template.expand_into(&mut out, |i| locations.get(i).map(|(s, e)| &input[s..e]));
        out
    }

    #[test]
    fn expansion_follows_go_regexp_expand() {
        assert_eq!(expand("$1", "(a)(b)", "ab"), "a");
        assert_eq!(expand("${1}", "(a)(b)", "ab"), "a");
        assert_eq!(expand("$1_x", "(a)(b)", "ab"), "", "$1_x names group 1_x");
        assert_eq!(expand("${1}_x", "(a)(b)", "ab"), "a_x");
        assert_eq!(expand("$1$2", "(a)(b)", "ab"), "ab");
        assert_eq!(expand("$0", "(a)(b)", "ab"), "ab");
        assert_eq!(expand("$3", "(a)(b)", "ab"), "", "missing group is empty");
        assert_eq!(
            expand("$01", "(a)(b)", "ab"),
            "",
            "leading zero makes a name"
        );
        assert_eq!(expand("$$1", "(a)(b)", "ab"), "$1");
        assert_eq!(expand("x$", "(a)(b)", "ab"), "x$");
        assert_eq!(expand("${1", "(a)(b)", "ab"), "${1");
        assert_eq!(expand("${}", "(a)(b)", "ab"), "${}");
        assert_eq!(expand("${a-b}", "(a)(b)", "ab"), "${a-b}");
        assert_eq!(expand("$-", "(a)(b)", "ab"), "$-");
        assert_eq!(expand("$second", "(a)(?P<second>b)", "ab"), "b");
        assert_eq!(expand("${second}!", "(a)(?<second>b)", "ab"), "b!");
        assert_eq!(expand("$2", "(a)|(b)", "a"), "", "unmatched group is empty");
    }

    #[test]
    fn names_follow_the_legacy_grammar() {
        assert!(is_label_name("_a1") && is_label_name("__name__"));
        assert!(!is_label_name("") && !is_label_name("1a") && !is_label_name("a-b"));
        assert!(!is_label_name("a:b") && is_metric_name("a:b") && is_metric_name(":x"));
        assert!(!is_metric_name("") && !is_metric_name("a.b"));
    }

    #[test]
    fn target_templates_match_prometheus_legacy_rule() {
        let cases = [
            ("-label", false),
            ("label", true),
            ("label${1}", true),
            ("${1}label", true),
            ("${1}", true),
            ("${", false),
            ("$", false),
            ("${}", false),
            ("foo${", false),
            ("$1", true),
            ("asd$2asd", true),
            ("-foo${1}bar-", false),
            ("bar.foo${1}bar", false),
            ("_${1}_", true),
            ("foo${bar}foo", true),
            ("0${3}", false),
        ];
        for (text, valid) in cases {
            assert_eq!(is_label_name_template(text), valid, "{text:?}");
        }
    }

    #[test]
    fn perl_classes_are_ascii_like_re2() {
        let digit = compile_regex(r"\d+").expect("valid");
        assert!(digit.is_match("123") && !digit.is_match("١٢٣"));
        let word = compile_regex(r"[\w.]+").expect("valid");
        assert!(word.is_match("a_b.c") && !word.is_match("é"));
        let not_digit = compile_regex(r"[a\D]").expect("valid");
        assert!(not_digit.is_match("x") && !not_digit.is_match("5"));
        let quoted = compile_regex(r"\Qa.b\E+").expect("valid");
        assert!(quoted.is_match("a.bb") && !quoted.is_match("axb"));
        let set = compile_regex(r"[a&&b]+").expect("valid");
        assert!(set.is_match("a&b"));
        let bracket = compile_regex(r"[]a]+").expect("valid");
        assert!(bracket.is_match("]a]"));
        let posix = compile_regex(r"[[:alpha:]_]+").expect("valid");
        assert!(posix.is_match("ab_"));
        let octal = compile_regex(r"\101").expect("valid");
        assert!(octal.is_match("A"));
        assert!(compile_regex("(?s").is_err());
        let dot = compile_regex("a.b").expect("valid");
        assert!(dot.is_match("a\nb") && dot.is_match("aéb") && !dot.is_match("xa.b"));
    }

    #[test]
    fn case_mapping_is_per_rune() {
        let mut out = String::new();
        push_lower(&mut out, "bAr123Foo ΣΑΣ İ");
        assert_eq!(out, "bar123foo σασ i");
        out.clear();
        push_upper(&mut out, "straße ǆ");
        assert_eq!(out, "STRAßE Ǆ");
    }
}
