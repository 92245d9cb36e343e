//! A YAML document tree that remembers where every node came from.
//!
//! We build the tree from the parser's event stream ourselves instead of
//! using `marked_yaml`'s loader because that loader either drops duplicate
//! mapping keys silently or stops at the first one, and it does not tell us
//! whether a scalar was quoted. Both matter here: a duplicated `run:` should be
//! reported, and `shards: "4"` is a string, not the integer 4.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column in the pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    /// The parser's columns are 0-based while its lines are already 1-based.
    fn from_marker(marker: &Marker) -> Self {
        Self {
            line: marker.line(),
            column: marker.col() + 1,
        }
    }

    pub(super) const START: Pos = Pos { line: 1, column: 1 };
}

#[derive(Debug, Clone)]
pub(super) struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub(super) enum Value {
    /// `plain` is false for quoted and block scalars, which YAML always
    /// treats as strings however much they look like numbers.
    Scalar {
        text: String,
        plain: bool,
        /// Single- or double-quoted: the text starts one column after the
        /// node's position (positions inside an `if:` need this).
        quoted: bool,
    },
    Sequence(Vec<Node>),
    /// Kept as a list, not a map, so duplicate keys survive for reporting.
    Mapping(Vec<(Node, Node)>),
}

/// What a scalar means under YAML 1.2's core schema, so type errors can say
/// what was actually found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScalarKind {
    Null,
    Bool,
    Integer,
    Float,
    String,
}

impl Node {
    pub(super) fn scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub(super) fn scalar_kind(&self) -> Option<ScalarKind> {
        let Value::Scalar { text, plain, .. } = &self.value else {
            return None;
        };
        if !plain {
            return Some(ScalarKind::String);
        }
        Some(match text.as_str() {
            "" | "~" | "null" | "Null" | "NULL" => ScalarKind::Null,
            "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => ScalarKind::Bool,
            t if parse_integer(t).is_some() => ScalarKind::Integer,
            t if is_float(t) => ScalarKind::Float,
            _ => ScalarKind::String,
        })
    }

    /// The node's value if it is a plain YAML integer; quoted digits are not.
    pub(super) fn integer(&self) -> Option<i128> {
        match (&self.value, self.scalar_kind()) {
            (Value::Scalar { text, .. }, Some(ScalarKind::Integer)) => parse_integer(text),
            _ => None,
        }
    }

    /// Where character `offset` of a one-line scalar's text is in the file;
    /// `None` for block scalars and text spanning lines, whose columns
    /// cannot be told from the node alone.
    pub(super) fn text_pos(&self, offset: usize) -> Option<Pos> {
        let Value::Scalar {
            text,
            plain,
            quoted,
        } = &self.value
        else {
            return None;
        };
        if text.contains('\n') || !(*plain || *quoted) {
            return None;
        }
        Some(Pos {
            line: self.pos.line,
            column: self.pos.column + usize::from(*quoted) + offset,
        })
    }

    pub(super) fn is_null(&self) -> bool {
        self.scalar_kind() == Some(ScalarKind::Null)
    }

    /// Renders the node for "found ..." in type errors.
    pub(super) fn describe(&self) -> Described<'_> {
        Described(self)
    }
}

pub(super) struct Described<'a>(&'a Node);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let node = self.0;
        match (&node.value, node.scalar_kind()) {
            (Value::Sequence(_), _) => f.write_str("a sequence"),
            (Value::Mapping(_), _) => f.write_str("a mapping"),
            (_, Some(ScalarKind::Null)) => f.write_str("null"),
            (Value::Scalar { text, .. }, Some(ScalarKind::Bool)) => write!(f, "bool {text}"),
            (Value::Scalar { text, .. }, Some(ScalarKind::Integer)) => write!(f, "integer {text}"),
            (Value::Scalar { text, .. }, Some(ScalarKind::Float)) => write!(f, "number {text}"),
            (Value::Scalar { text, .. }, _) => write!(f, "string {text:?}"),
        }
    }
}

fn parse_integer(text: &str) -> Option<i128> {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn is_float(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    matches!(lower.trim_start_matches(['-', '+']), ".inf" | ".nan")
        || (text.bytes().any(|b| b.is_ascii_digit())
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
            && text.parse::<f64>().is_ok())
}

/// Why the text could not be turned into a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LoadError {
    pub pos: Pos,
    pub message: String,
    pub hint: Option<String>,
}

/// Parses `text` into the tree of its only document; `Ok(None)` means the
/// text holds no document at all (empty, or only comments).
pub(super) fn load(text: &str) -> Result<Option<Node>, LoadError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        return Err(LoadError {
            pos: Pos::from_marker(e.marker()),
            message: format!("YAML syntax error: {}", e.info()),
            hint: None,
        });
    }
    if let Some(pos) = builder.too_big {
        return Err(LoadError {
            pos,
            message: format!(
                "the document expands to more than {MAX_NODES} nodes (aliases of aliases?)"
            ),
            hint: Some("write the repeated parts out, or use fewer nested aliases".to_owned()),
        });
    }
    if let Some(pos) = builder.second_document {
        return Err(LoadError {
            pos,
            message: "a pipeline file must hold exactly one YAML document".to_owned(),
            hint: Some(
                "remove this `---` and everything after it, or merge it into the first document"
                    .to_owned(),
            ),
        });
    }
    Ok(builder.root)
}

enum Frame {
    Sequence {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Mapping {
        pos: Pos,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    documents: usize,
    second_document: Option<Pos>,
    /// Nodes built so far, aliases counted at their expanded size.
    nodes: usize,
    /// Where expansion passed [`MAX_NODES`]: the document is refused.
    too_big: Option<Pos>,
}

/// Far more nodes than any pipeline has; a few aliases of aliases (the
/// "billion laughs") would otherwise expand to gigabytes.
const MAX_NODES: usize = 100_000;

impl Node {
    /// Nodes in this subtree, itself included.
    fn size(&self) -> usize {
        1 + match &self.value {
            Value::Scalar { .. } => 0,
            Value::Sequence(items) => items.iter().map(Node::size).sum(),
            Value::Mapping(pairs) => pairs.iter().map(|(k, v)| k.size() + v.size()).sum(),
        }
    }
}

impl Builder {
    fn finish_node(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Sequence { items, .. }) => items.push(node),
            Some(Frame::Mapping { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    let mut value = node;
                    // An omitted value (`steps:` and nothing after it) is
                    // marked at the next token, often on another line; the
                    // key is where the author will look for it.
                    if matches!(&value.value, Value::Scalar { text, plain: true, .. } if text.is_empty())
                    {
                        value.pos = k.pos;
                    }
                    entries.push((k, value));
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, marker: Marker) {
        let pos = Pos::from_marker(&marker);
        if let Event::DocumentStart = event {
            self.documents += 1;
            if self.documents == 2 {
                self.second_document = Some(pos);
            }
            return;
        }
        // Later documents are still parsed, so their syntax errors surface,
        // but they are rejected as a whole rather than built.
        if self.documents != 1 || self.too_big.is_some() {
            return;
        }
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = matches!(style, TScalarStyle::Plain);
                let quoted = matches!(
                    style,
                    TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
                );
                let node = Node {
                    pos,
                    value: Value::Scalar {
                        text,
                        plain,
                        quoted,
                    },
                };
                self.finish_node(node, anchor);
            }
            Event::Alias(id) => {
                let size = self.anchors.get(&id).map_or(1, Node::size);
                self.nodes = self.nodes.saturating_add(size);
                if self.nodes > MAX_NODES {
                    self.too_big = Some(pos);
                    return;
                }
                // The parser rejects unknown aliases, so the lookup only
                // fails on a parser bug; an empty scalar then reads as null.
                let mut node = self.anchors.get(&id).cloned().unwrap_or(Node {
                    pos,
                    value: Value::Scalar {
                        text: String::new(),
                        plain: true,
                        quoted: false,
                    },
                });
                node.pos = pos;
                self.finish_node(node, 0);
            }
            Event::SequenceStart(anchor, _tag) => self.stack.push(Frame::Sequence {
                pos,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _tag) => self.stack.push(Frame::Mapping {
                pos,
                anchor,
                entries: Vec::new(),
                key: None,
            }),
            // Block collections are marked at their first `:` or `-`
            // rather than where they begin, so take the earliest of that and
            // the first child's position; flow ones already start at the
            // bracket, which comes first anyway.
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Sequence { pos, anchor, items }) => {
                        let first = items.first().map_or(pos, |item| item.pos);
                        let pos = pos.min(first);
                        let value = Value::Sequence(items);
                        (Node { pos, value }, anchor)
                    }
                    Some(Frame::Mapping {
                        pos,
                        anchor,
                        entries,
                        ..
                    }) => {
                        let first = entries.first().map_or(pos, |(key, _)| key.pos);
                        let pos = pos.min(first);
                        let value = Value::Mapping(entries);
                        (Node { pos, value }, anchor)
                    }
                    None => return,
                };
                self.finish_node(node, anchor);
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}
