//! A YAML document as a tree whose every node knows its line, built from `yaml-rust2`'s event
//! parser. serde's YAML deserializers lose positions, and the config must name the line of every
//! problem (unknown keys above all), so validation walks this tree instead.
//!
//! It owns YAML syntax only (anchors, aliases, merge keys `<<`, duplicate keys, scalar typing);
//! it must never know what a key means.

mod builder;

use yaml_rust2::parser::Parser;

use builder::Builder;

/// One node with the line (1-based) where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// 1-based line of the node's first character.
    pub line: usize,
    /// What the node holds.
    pub kind: Kind,
}

/// The shape of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A scalar as written; `quoted` when it was quoted, a block scalar or tagged `!!str`, so it is a
    /// string whatever it looks like.
    Scalar { text: String, quoted: bool },
    /// A sequence.
    Sequence(Vec<Node>),
    /// A mapping, in file order; keys are unique (duplicates are reported).
    Mapping(Vec<(Node, Node)>),
}

/// A YAML syntax problem.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// Dotted path of the key concerned, empty when none.
    pub key: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl Node {
    /// True for `~`, `null`, `Null`, `NULL` and the empty plain scalar.
    pub fn is_null(&self) -> bool {
        match &self.kind {
            Kind::Scalar {
                text,
                quoted: false,
            } => {
                matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL")
            }
            _ => false,
        }
    }

    /// The text of a scalar, `None` for a sequence or a mapping.
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A short description of the node for messages: the scalar quoted, or "a list"/"a mapping".
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Scalar { text, .. } => format!("{text:?}"),
            Kind::Sequence(_) => "a list".to_string(),
            Kind::Mapping(_) => "a mapping".to_string(),
        }
    }

    /// The node as JSON, typing plain scalars as YAML 1.2's core schema does (null, booleans,
    /// integers, floats, otherwise strings). Mapping keys become strings.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Scalar { text, quoted: true } => Value::String(text.clone()),
            Kind::Scalar {
                text,
                quoted: false,
            } => plain_scalar_json(text),
            Kind::Sequence(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Mapping(entries) => {
                let mut object = serde_json::Map::new();
                for (key, value) in entries {
                    let name = match &key.kind {
                        Kind::Scalar { text, .. } => text.clone(),
                        _ => key.to_json().to_string(),
                    };
                    object.insert(name, value.to_json());
                }
                Value::Object(object)
            }
        }
    }
}

fn plain_scalar_json(text: &str) -> serde_json::Value {
    use serde_json::Value;
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => {
            // JSON has no infinities or NaN: keep the spelling.
            return Value::String(text.to_string());
        }
        _ => {}
    }
    if let Ok(integer) = text.parse::<i64>() {
        return Value::from(integer);
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(integer) = i64::from_str_radix(hex, 16) {
            return Value::from(integer);
        }
    }
    if let Some(octal) = text.strip_prefix("0o") {
        if let Ok(integer) = i64::from_str_radix(octal, 8) {
            return Value::from(integer);
        }
    }
    let looks_numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && text.chars().any(|c| c.is_ascii_digit());
    if looks_numeric {
        if let Ok(float) = text.parse::<f64>() {
            if let Some(number) = serde_json::Number::from_f64(float) {
                return Value::Number(number);
            }
        }
    }
    Value::String(text.to_string())
}

#[cfg(test)]
thread_local! {
    /// Key comparisons made on this thread (duplicate checks here, key lookups in `reader`):
    /// the scale tests check that reading a config costs a bounded number per key.
    pub static KEY_COMPARISONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts one key comparison (a no-op outside tests).
pub(super) fn count_comparison() {
    #[cfg(test)]
    KEY_COMPARISONS.with(|count| count.set(count.get() + 1));
}

/// How many nodes (scalars, lists, mappings) anchors and aliases may copy in one document, in
/// total, or [`COPY_RATIO`] times the nodes written so far when that is more. Each `*alias`
/// copies its anchor's node and each `&anchor` keeps a copy of its own, so a node of size S
/// written once and referred to N times costs (N + 1) × S. Plenty for 20 000 jobs that each
/// merge a defaults mapping of 40 nodes; a YAML alias bomb (each anchor a list of aliases to the
/// previous one) passes it after a few levels, long before it costs memory: memory stays linear
/// in the size of the file. `docs/config.md` states the same numbers.
pub const COPY_LIMIT: usize = 1_000_000;
/// See [`COPY_LIMIT`]: a large file written out by hand or by a generator may copy ten times
/// what it writes.
pub const COPY_RATIO: usize = 10;

/// A parsed document: its root (`None` for an empty input) and the problems that did not stop
/// the parse (duplicate keys, bad merge keys), which the caller reports with its own.
pub struct Document {
    /// The root node, `None` when the input holds no document (empty, or only comments).
    pub root: Option<Node>,
    /// Problems found while building the tree; the tree is still usable (first key wins).
    pub problems: Vec<SyntaxError>,
}

/// Parses one YAML document. A syntax error, a second document or anchors and aliases that would
/// copy more than [`COPY_LIMIT`] nodes (or [`COPY_RATIO`] times the nodes written) are `Err`;
/// duplicate keys are reported in [`Document::problems`] so that validation still runs and
/// reports the rest.
///
/// Cost: linear in the size of the text plus the nodes anchors and aliases copy.
pub fn parse(text: &str) -> Result<Document, Vec<SyntaxError>> {
    parse_with_copy_limits(text, COPY_LIMIT, COPY_RATIO)
}

/// [`parse`] with other bounds than [`COPY_LIMIT`] and [`COPY_RATIO`], for tests of the bound.
pub(super) fn parse_with_copy_limits(
    text: &str,
    copy_limit: usize,
    copy_ratio: usize,
) -> Result<Document, Vec<SyntaxError>> {
    let mut builder = Builder::new(text, copy_limit, copy_ratio);
    let mut parser = Parser::new_from_str(text);
    if let Err(error) = parser.load(&mut builder, true) {
        builder.errors.push(SyntaxError {
            key: String::new(),
            // The scanner marks a few errors at its initial position (line 0) and some at the
            // end of input one line past the last: name a line the file has.
            line: error.marker().line().clamp(1, last_line(text)),
            message: format!("YAML syntax: {}", error.info()),
        });
        return Err(builder.errors);
    }
    if builder.aborted {
        return Err(builder.errors);
    }
    if builder.documents.len() > 1 {
        builder.errors.push(SyntaxError {
            key: String::new(),
            line: builder.documents[1].line,
            message: "only one YAML document is allowed in a config file".to_string(),
        });
        return Err(builder.errors);
    }
    Ok(Document {
        root: builder.documents.into_iter().next(),
        problems: builder.errors,
    })
}

/// The number of the file's last line (1 for an empty file).
fn last_line(text: &str) -> usize {
    text.lines().count().max(1)
}
