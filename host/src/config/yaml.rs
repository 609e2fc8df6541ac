//! A YAML document as a tree whose every node knows its line, built from `yaml-rust2`'s event
//! parser. serde's YAML deserializers lose positions, and the config must name the line of every
//! problem (unknown keys above all), so validation walks this tree instead.
//!
//! It owns YAML syntax only (anchors, aliases, merge keys `<<`, duplicate keys, scalar typing);
//! it must never know what a key means.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

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

/// A parsed document: its root (`None` for an empty input) and the problems that did not stop
/// the parse (duplicate keys, bad merge keys), which the caller reports with its own.
pub struct Document {
    /// The root node, `None` when the input holds no document (empty, or only comments).
    pub root: Option<Node>,
    /// Problems found while building the tree; the tree is still usable (first key wins).
    pub problems: Vec<SyntaxError>,
}

/// Parses one YAML document. A syntax error or a second document is `Err`; duplicate keys are
/// reported in [`Document::problems`] so that validation still runs and reports the rest.
pub fn parse(text: &str) -> Result<Document, Vec<SyntaxError>> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(error) = parser.load(&mut builder, true) {
        builder.errors.push(SyntaxError {
            key: String::new(),
            line: error.marker().line(),
            message: format!("YAML syntax: {}", error.info()),
        });
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

enum Frame {
    Sequence {
        line: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Mapping {
        line: usize,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        merges: Vec<Node>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    documents: Vec<Node>,
    errors: Vec<SyntaxError>,
}

impl Builder {
    /// The dotted path of the node being built, from the open frames.
    fn path(&self) -> String {
        let mut path = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Mapping { key: Some(key), .. } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key.scalar().unwrap_or("?"));
                }
                Frame::Mapping { key: None, .. } => {}
                Frame::Sequence { items, .. } => path.push_str(&format!("[{}]", items.len())),
            }
        }
        path
    }

    fn push(&mut self, node: Node) {
        let path = self.path();
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Frame::Sequence { items, .. }) => items.push(node),
            Some(Frame::Mapping {
                entries,
                key,
                merges,
                ..
            }) => match key.take() {
                None => *key = Some(node),
                Some(name) => {
                    if name.kind
                        == (Kind::Scalar {
                            text: "<<".to_string(),
                            quoted: false,
                        })
                    {
                        merges.push(node);
                    } else if let Some((first, _)) =
                        entries.iter().find(|(k, _)| k.kind == name.kind)
                    {
                        self.errors.push(SyntaxError {
                            key: path,
                            line: name.line,
                            message: format!(
                                "duplicate key {} (first at line {})",
                                name.describe(),
                                first.line
                            ),
                        });
                    } else {
                        entries.push((name, node));
                    }
                }
            },
        }
    }

    fn finish_mapping(&mut self, entries: &mut Vec<(Node, Node)>, merges: Vec<Node>) {
        // Merge keys: explicit entries win, then earlier merged mappings over later ones.
        for merge in merges {
            let sources = match merge.kind {
                Kind::Mapping(source) => vec![source],
                Kind::Sequence(items) => {
                    let mut sources = Vec::new();
                    for item in items {
                        match item.kind {
                            Kind::Mapping(source) => sources.push(source),
                            _ => self.errors.push(SyntaxError {
                                key: self.path(),
                                line: item.line,
                                message: "a merge key `<<` takes a mapping or a list of mappings"
                                    .to_string(),
                            }),
                        }
                    }
                    sources
                }
                Kind::Scalar { .. } => {
                    self.errors.push(SyntaxError {
                        key: self.path(),
                        line: merge.line,
                        message: "a merge key `<<` takes a mapping or a list of mappings"
                            .to_string(),
                    });
                    Vec::new()
                }
            };
            for source in sources {
                for (key, value) in source {
                    if !entries.iter().any(|(k, _)| k.kind == key.kind) {
                        entries.push((key, value));
                    }
                }
            }
        }
    }
}

fn is_string_tag(tag: &Option<Tag>) -> bool {
    tag.as_ref().is_some_and(|tag| {
        tag.suffix == "str" && matches!(tag.handle.as_str(), "!!" | "tag:yaml.org,2002:")
    })
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let quoted = style != TScalarStyle::Plain || is_string_tag(&tag);
                let node = Node {
                    line,
                    kind: Kind::Scalar { text, quoted },
                };
                if anchor > 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push(node);
            }
            Event::Alias(anchor) => match self.anchors.get(&anchor) {
                Some(node) => {
                    let mut node = node.clone();
                    node.line = line;
                    self.push(node);
                }
                None => self.errors.push(SyntaxError {
                    key: self.path(),
                    line,
                    message: "alias to an unknown anchor".to_string(),
                }),
            },
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Sequence {
                line,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Mapping {
                line,
                anchor,
                entries: Vec::new(),
                key: None,
                merges: Vec::new(),
            }),
            Event::SequenceEnd => {
                if let Some(Frame::Sequence {
                    line,
                    anchor,
                    items,
                }) = self.stack.pop()
                {
                    let node = Node {
                        line,
                        kind: Kind::Sequence(items),
                    };
                    if anchor > 0 {
                        self.anchors.insert(anchor, node.clone());
                    }
                    self.push(node);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Mapping {
                    line,
                    anchor,
                    mut entries,
                    merges,
                    ..
                }) = self.stack.pop()
                {
                    self.finish_mapping(&mut entries, merges);
                    let node = Node {
                        line,
                        kind: Kind::Mapping(entries),
                    };
                    if anchor > 0 {
                        self.anchors.insert(anchor, node.clone());
                    }
                    self.push(node);
                }
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}
