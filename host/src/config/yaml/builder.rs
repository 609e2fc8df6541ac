//! The event receiver that builds a [`Node`] tree from `yaml-rust2`'s parser: anchors and
//! aliases with their copy bound, merge keys, duplicate keys, the lines of empty values.
//!
//! **Invariant:** every step costs O(1) per event plus the nodes it copies (no scan over a
//! mapping's keys, no path string unless a problem is reported), so a file is built in time
//! linear in its size.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::{Kind, Node, SyntaxError};

enum Frame {
    Sequence {
        line: usize,
        anchor: usize,
        items: Vec<Node>,
        /// Nodes in this subtree so far, itself included.
        size: usize,
    },
    Mapping {
        line: usize,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        /// Position in `entries` of each scalar key, so a duplicate is found without a scan.
        scalar_keys: HashMap<(String, bool), usize>,
        key: Option<Node>,
        merges: Vec<Node>,
        size: usize,
    },
}

/// A mapping key's identity for duplicate detection: scalars by text and quoting, as
/// `Kind`'s equality compares them. Collections (`? [a, b]`) have none and are compared whole.
fn scalar_key(node: &Node) -> Option<(String, bool)> {
    match &node.kind {
        Kind::Scalar { text, quoted } => Some((text.clone(), *quoted)),
        _ => None,
    }
}

/// Builds the documents of one text from its parser's events.
#[derive(Default)]
pub(super) struct Builder<'a> {
    /// The text's lines, to place empty values (see [`Builder::empty_value_line`]).
    lines: Vec<&'a str>,
    stack: Vec<Frame>,
    /// Each anchored node with its size in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    /// The documents built, in order.
    pub(super) documents: Vec<Node>,
    /// The problems found, in order.
    pub(super) errors: Vec<SyntaxError>,
    /// Nodes anchors and aliases may copy at least, whatever the file's size.
    copy_limit: usize,
    /// Copies allowed per node written, when that allows more than `copy_limit`.
    copy_ratio: usize,
    /// Nodes written in the file so far (scalars, lists and mappings, not aliases).
    written: usize,
    /// Nodes anchors and aliases have copied so far.
    copied: usize,
    /// Set when copies ran past the bound: every later event is ignored.
    pub(super) aborted: bool,
}

impl<'a> Builder<'a> {
    /// A builder for `text` whose anchors and aliases may copy `copy_limit` nodes, or
    /// `copy_ratio` times the nodes written when that is more.
    pub(super) fn new(text: &'a str, copy_limit: usize, copy_ratio: usize) -> Builder<'a> {
        Builder {
            lines: text.split('\n').collect(),
            copy_limit,
            copy_ratio,
            ..Builder::default()
        }
    }
}

impl Builder<'_> {
    /// The dotted path of the node being built, from the open frames. Only for messages: it
    /// costs a string per call.
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

    /// Adds a finished node of `size` nodes to the open collection (or as a document).
    fn push(&mut self, node: Node, size: usize) {
        let duplicate = match self.stack.last_mut() {
            None => {
                self.documents.push(node);
                return;
            }
            Some(Frame::Sequence {
                items, size: total, ..
            }) => {
                items.push(node);
                *total += size;
                return;
            }
            Some(Frame::Mapping {
                entries,
                scalar_keys,
                key,
                merges,
                size: total,
                ..
            }) => {
                *total += size;
                let Some(name) = key.take() else {
                    *key = Some(node);
                    return;
                };
                let identity = scalar_key(&name);
                if identity
                    .as_ref()
                    .is_some_and(|(text, quoted)| text == "<<" && !quoted)
                {
                    merges.push(node);
                    return;
                }
                let first = match &identity {
                    Some(identity) => {
                        super::count_comparison();
                        scalar_keys.get(identity).map(|&index| &entries[index].0)
                    }
                    None => entries.iter().map(|(k, _)| k).find(|k| {
                        super::count_comparison();
                        k.kind == name.kind
                    }),
                };
                match first {
                    Some(first) => (name, first.line),
                    None => {
                        if let Some(identity) = identity {
                            scalar_keys.insert(identity, entries.len());
                        }
                        entries.push((name, node));
                        return;
                    }
                }
            }
        };
        let (name, first_line) = duplicate;
        // The key is still being read when `path` runs, so put it back for the message.
        let path = {
            if let Some(Frame::Mapping { key, .. }) = self.stack.last_mut() {
                *key = Some(name.clone());
            }
            let path = self.path();
            if let Some(Frame::Mapping { key, .. }) = self.stack.last_mut() {
                *key = None;
            }
            path
        };
        self.errors.push(SyntaxError {
            key: path,
            line: name.line,
            message: format!(
                "duplicate key {} (first at line {first_line})",
                name.describe()
            ),
        });
    }

    fn finish_mapping(
        &mut self,
        entries: &mut Vec<(Node, Node)>,
        scalar_keys: &mut HashMap<(String, bool), usize>,
        merges: Vec<Node>,
    ) {
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
                    let present = match scalar_key(&key) {
                        Some(identity) => match scalar_keys.entry(identity) {
                            Entry::Occupied(_) => true,
                            Entry::Vacant(vacant) => {
                                vacant.insert(entries.len());
                                false
                            }
                        },
                        None => entries.iter().any(|(k, _)| k.kind == key.kind),
                    };
                    if !present {
                        entries.push((key, value));
                    }
                }
            }
        }
    }

    /// The line of an empty value (`key:` or `-` with nothing after it). The parser marks it
    /// at the token that follows, which may be lines further down or past the end of the file;
    /// the value belongs to the indicator before it, the last non-blank text before the mark
    /// that is not a comment.
    fn empty_value_line(&self, line: usize, column: usize) -> usize {
        let mut index = line.min(self.lines.len());
        while index >= 1 {
            let text = self.lines[index - 1];
            let text = if index == line {
                // `column` counts characters, 0-based.
                let end = text
                    .char_indices()
                    .nth(column)
                    .map_or(text.len(), |(at, _)| at);
                &text[..end]
            } else {
                text
            };
            if !strip_comment(text).trim().is_empty() {
                return index;
            }
            index -= 1;
        }
        line.clamp(1, self.lines.len().max(1))
    }

    /// Registers a finished node under its anchor (when it has one) and adds it to its parent.
    /// The anchor keeps a copy, which counts against the budget as an alias's copy does: a chain
    /// of nested anchors copies each subtree once per level.
    fn finish_node(&mut self, node: Node, anchor: usize, size: usize) {
        if anchor > 0 && self.spend(size, node.line, "this anchor") {
            self.anchors.insert(anchor, (node.clone(), size));
        }
        self.push(node, size);
    }

    /// Copies the node of `anchor` at `line`, unless that takes copies past their budget.
    fn alias(&mut self, anchor: usize, line: usize) {
        let Some(&(_, size)) = self.anchors.get(&anchor) else {
            self.errors.push(SyntaxError {
                key: self.path(),
                line,
                message: "alias to an unknown anchor".to_string(),
            });
            return;
        };
        if !self.spend(size, line, "this alias") {
            return;
        }
        if let Some((node, _)) = self.anchors.get(&anchor) {
            let mut node = node.clone();
            node.line = line;
            self.push(node, size);
        }
    }

    /// Counts `size` copied nodes; past the bound, records the error at `line` and stops the
    /// build.
    fn spend(&mut self, size: usize, line: usize, what: &str) -> bool {
        let allowed = self
            .copy_limit
            .max(self.written.saturating_mul(self.copy_ratio));
        if self.copied.saturating_add(size) <= allowed {
            self.copied += size;
            return true;
        }
        let message = format!(
            "{what} would copy {size} nodes, after {} copied already: anchors and aliases may \
             copy at most {} nodes here ({} in any file, or {} times the nodes written before \
             this point), against YAML alias bombs; write the repeated part out, or refer to \
             smaller anchors",
            self.copied, allowed, self.copy_limit, self.copy_ratio
        );
        self.errors.push(SyntaxError {
            key: self.path(),
            line,
            message,
        });
        self.aborted = true;
        false
    }
}

/// `text` without a trailing `# comment` (a `#` at the start or after a blank starts one).
fn strip_comment(text: &str) -> &str {
    let bytes = text.as_bytes();
    for (at, byte) in bytes.iter().enumerate() {
        if *byte == b'#' && (at == 0 || matches!(bytes[at - 1], b' ' | b'\t')) {
            return &text[..at];
        }
    }
    text
}

fn is_string_tag(tag: &Option<Tag>) -> bool {
    tag.as_ref().is_some_and(|tag| {
        tag.suffix == "str" && matches!(tag.handle.as_str(), "!!" | "tag:yaml.org,2002:")
    })
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.aborted {
            return;
        }
        let line = mark.line();
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                self.written += 1;
                let line = if text.is_empty() && style == TScalarStyle::Plain {
                    self.empty_value_line(line, mark.col())
                } else {
                    line
                };
                let quoted = style != TScalarStyle::Plain || is_string_tag(&tag);
                let node = Node {
                    line,
                    kind: Kind::Scalar { text, quoted },
                };
                self.finish_node(node, anchor, 1);
            }
            Event::Alias(anchor) => self.alias(anchor, line),
            Event::SequenceStart(anchor, _) => {
                self.written += 1;
                self.stack.push(Frame::Sequence {
                    line,
                    anchor,
                    items: Vec::new(),
                    size: 1,
                });
            }
            Event::MappingStart(anchor, _) => {
                self.written += 1;
                self.stack.push(Frame::Mapping {
                    line,
                    anchor,
                    entries: Vec::new(),
                    scalar_keys: HashMap::new(),
                    key: None,
                    merges: Vec::new(),
                    size: 1,
                });
            }
            Event::SequenceEnd => {
                if let Some(Frame::Sequence {
                    line,
                    anchor,
                    items,
                    size,
                }) = self.stack.pop()
                {
                    let node = Node {
                        line,
                        kind: Kind::Sequence(items),
                    };
                    self.finish_node(node, anchor, size);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Mapping {
                    line,
                    anchor,
                    mut entries,
                    mut scalar_keys,
                    merges,
                    size,
                    ..
                }) = self.stack.pop()
                {
                    self.finish_mapping(&mut entries, &mut scalar_keys, merges);
                    let node = Node {
                        line,
                        kind: Kind::Mapping(entries),
                    };
                    self.finish_node(node, anchor, size);
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
