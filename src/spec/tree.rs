//! The spec file as a tree of positioned YAML nodes, read with yaml-rust2's event parser:
//! every key and value keeps its line and column, for the shape check ([`super::shape`])
//! and for the compile pass's messages ([`Positions`]).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::diagnostic::Pos;

/// The position of every field of a spec, by field path (`resources[0].table.name`).
#[derive(Debug, Default, Clone)]
pub(crate) struct Positions {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

impl Positions {
    /// Where the value at `path` starts; falls back to the closest enclosing field.
    pub(crate) fn value(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return self.values.get("").copied().unwrap_or(Pos { line: 1, column: 1 }),
            }
        }
    }

    /// Where the key of the field at `path` is written (its value when it has no key).
    pub(crate) fn key(&self, path: &str) -> Pos {
        self.keys.get(path).copied().unwrap_or_else(|| self.value(path))
    }
}

#[derive(Debug)]
pub(super) enum Kind {
    /// Scalar text and whether it was plain (unquoted), which decides its YAML type.
    Scalar(String, bool),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
    Alias,
}

#[derive(Debug)]
pub(super) struct Node {
    pub(super) kind: Kind,
    pub(super) pos: Pos,
}

enum Frame {
    Seq(Vec<Node>, Pos),
    Map(Vec<(Node, Node)>, Option<Node>, Pos),
}

#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Frame>,
    done: Option<Node>,
}

fn pos_of(mark: Marker) -> Pos {
    Pos {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

impl TreeBuilder {
    fn push_node(&mut self, node: Node) {
        match self.stack.last_mut() {
            Some(Frame::Seq(items, _)) => items.push(node),
            Some(Frame::Map(entries, key, _)) => match key.take() {
                Some(k) => entries.push((k, node)),
                None => *key = Some(node),
            },
            None => {
                if self.done.is_none() {
                    self.done = Some(node)
                }
            }
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = pos_of(mark);
        match ev {
            Event::Scalar(text, style, _, _) => {
                let plain = matches!(style, TScalarStyle::Plain);
                self.push_node(Node {
                    kind: Kind::Scalar(text, plain),
                    pos,
                })
            }
            Event::Alias(_) => self.push_node(Node { kind: Kind::Alias, pos }),
            Event::SequenceStart(..) => self.stack.push(Frame::Seq(Vec::new(), pos)),
            Event::MappingStart(..) => self.stack.push(Frame::Map(Vec::new(), None, pos)),
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, pos)) = self.stack.pop() {
                    self.push_node(Node {
                        kind: Kind::Seq(items),
                        pos,
                    })
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(entries, _, pos)) = self.stack.pop() {
                    let pos = entries.first().map(|(k, _)| k.pos).unwrap_or(pos);
                    self.push_node(Node {
                        kind: Kind::Map(entries),
                        pos,
                    })
                }
            }
            _ => {}
        }
    }
}

pub(super) fn parse_tree(text: &str) -> Result<Option<Node>, (Pos, String)> {
    let mut builder = TreeBuilder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| {
        let m = e.marker();
        (
            Pos {
                line: m.line(),
                column: m.col() + 1,
            },
            e.info().to_string(),
        )
    })?;
    Ok(builder.done)
}

pub(super) fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub(super) fn record_positions(node: &Node, path: &str, out: &mut Positions) {
    out.values.insert(path.to_string(), node.pos);
    match &node.kind {
        Kind::Map(entries) => {
            for (k, v) in entries {
                if let Kind::Scalar(key, _) = &k.kind {
                    let p = child_path(path, key);
                    out.keys.insert(p.clone(), k.pos);
                    record_positions(v, &p, out);
                }
            }
        }
        Kind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                record_positions(item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// The schema check.

/// The YAML 1.2 core-schema type of a node, in JSON Schema's words.
pub(super) fn yaml_type(node: &Node) -> &'static str {
    match &node.kind {
        Kind::Map(_) => "object",
        Kind::Seq(_) => "array",
        Kind::Alias => "alias",
        Kind::Scalar(_, false) => "string",
        Kind::Scalar(s, true) => match s.as_str() {
            "" | "~" | "null" | "Null" | "NULL" => "null",
            "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => "boolean",
            _ if s.parse::<i64>().is_ok() || s.parse::<u64>().is_ok() => "integer",
            _ if s.parse::<f64>().is_ok() && !s.chars().any(|c| c.is_alphabetic()) => "number",
            _ if matches!(s.as_str(), ".inf" | "-.inf" | ".nan") => "number",
            _ => "string",
        },
    }
}

pub(super) fn describe(node: &Node) -> String {
    match &node.kind {
        Kind::Scalar(s, _) => match yaml_type(node) {
            "null" => "null".to_string(),
            "string" => format!("the text `{s}`"),
            t => format!("the {t} `{s}`"),
        },
        Kind::Seq(_) => "a list".to_string(),
        Kind::Map(_) => "a mapping".to_string(),
        Kind::Alias => "an alias".to_string(),
    }
}

pub(super) fn type_word(t: &str) -> &str {
    match t {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "text",
        "integer" => "a whole number",
        "number" => "a number",
        "boolean" => "true or false",
        "null" => "null",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_point_at_values() {
        let tree = parse_tree("a: 1\nb:\n  - x: yes\n").unwrap().unwrap();
        let mut p = Positions::default();
        record_positions(&tree, "", &mut p);
        assert_eq!(p.value("a"), Pos { line: 1, column: 4 });
        assert_eq!(p.key("b[0].x"), Pos { line: 3, column: 5 });
        assert_eq!(p.value("b[0].x"), Pos { line: 3, column: 8 });
        // A path that does not exist falls back to its closest ancestor.
        assert_eq!(p.value("b[0].missing"), Pos { line: 3, column: 5 });
    }

    #[test]
    fn yaml_types_follow_the_core_schema() {
        let t = parse_tree("[1, '1', 1.5, true, ~, x]").unwrap().unwrap();
        let Kind::Seq(items) = t.kind else { panic!() };
        let types: Vec<&str> = items.iter().map(yaml_type).collect();
        assert_eq!(types, ["integer", "string", "number", "boolean", "null", "string"]);
    }
}
