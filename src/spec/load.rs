//! Parsing: YAML text → raw spec types, with every shape error located by line and
//! column. The only file that calls into the YAML crates.
//!
//! serde stops at the first error and, inside tagged enums, points at the enclosing
//! mapping. So the document is first read into a tree of positioned nodes, checked
//! against the spec's own JSON Schema (collecting every error, each at the exact key or
//! value), and only a document that passes is deserialized with serde_yaml. The node
//! tree also gives the compile pass the position of every field.

use std::collections::HashMap;

use serde_json::Value as Json;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::diagnostic::{did_you_mean, Diagnostic};
use super::model::RawSpec;
use super::units::{ByteSize, Duration, BYTE_SIZE_PATTERN, DURATION_PATTERN};

/// Line and column (both 1-based) of a node in the spec file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// The position of every field of a spec, by field path (`resources[0].table.name`).
#[derive(Debug, Default, Clone)]
pub struct Positions {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

impl Positions {
    /// Where the value at `path` starts; falls back to the closest enclosing field.
    pub fn value(&self, path: &str) -> Pos {
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
    pub fn key(&self, path: &str) -> Pos {
        self.keys.get(path).copied().unwrap_or_else(|| self.value(path))
    }
}

/// A spec read from a file: the raw types and where each field was written.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub spec: RawSpec,
    pub positions: Positions,
}

/// Parse and shape-check one spec file. `Err` carries every shape problem found.
pub fn load(file: &str, text: &str) -> Result<Loaded, Vec<Diagnostic>> {
    let root = parse_tree(text)
        .map_err(|(pos, message)| vec![Diagnostic::new(file, pos, "", format!("invalid YAML: {message}"))])?;
    let Some(root) = root else {
        return Err(vec![Diagnostic::new(
            file,
            Pos { line: 1, column: 1 },
            "",
            "the file is empty; a spec starts with `version: 1`",
        )]);
    };
    let mut positions = Positions::default();
    record_positions(&root, "", &mut positions);

    let schema = serde_json::to_value(super::json_schema()).expect("schema serializes");
    let mut checker = Checker {
        file,
        schema: &schema,
        diagnostics: Vec::new(),
    };
    checker.check(&root, &schema, "");
    if !checker.diagnostics.is_empty() {
        let mut d = checker.diagnostics;
        d.sort_by_key(|d| (d.line, d.column));
        return Err(d);
    }
    match serde_yaml::from_str::<RawSpec>(text) {
        Ok(spec) => Ok(Loaded { spec, positions }),
        Err(e) => {
            // The schema check accepts what serde accepts; this is a safety net.
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line(),
                    column: l.column(),
                })
                .unwrap_or(Pos { line: 1, column: 1 });
            Err(vec![Diagnostic::new(file, pos, "", e.to_string())])
        }
    }
}

/// The spec without the parts that failed the shape check, so that the rest can still be
/// compiled and every problem of a file reported in one pass. Each field a shape problem
/// names is left out; when that leaves its mapping without a required field, the mapping
/// is left out in turn. Returns the spec and the paths left out; `None` when a problem
/// sits where nothing can be left out (a list item, the top level).
pub fn without_shape_errors(file: &str, text: &str, shape: &[Diagnostic]) -> Option<(Loaded, Vec<String>)> {
    let mut tree = parse_tree(text).ok()??;
    let mut positions = Positions::default();
    record_positions(&tree, "", &mut positions);
    let mut value: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
    let schema = serde_json::to_value(super::json_schema()).expect("schema serializes");
    let mut cuts: Vec<String> = Vec::new();
    let mut pending: Vec<String> = shape.iter().map(|d| d.path.clone()).collect();
    for _ in 0..8 {
        for cut in pending.drain(..) {
            if cuts.contains(&cut) {
                continue;
            }
            let (parent, key) = split_path(&cut)?;
            // Without its table a resource would read as a `for_each` parent, and the
            // references to the table as references to nothing.
            if key == "table" && parent.starts_with("resources[") && !parent.contains('.') {
                return None;
            }
            remove_entry(&mut tree, &parent, &key)?;
            remove_yaml_entry(&mut value, &parent, &key)?;
            cuts.push(cut);
        }
        let mut checker = Checker {
            file,
            schema: &schema,
            diagnostics: Vec::new(),
        };
        checker.check(&tree, &schema, "");
        if checker.diagnostics.is_empty() {
            let spec = serde_yaml::from_value::<RawSpec>(value).ok()?;
            return Some((Loaded { spec, positions }, cuts));
        }
        pending = checker.diagnostics.into_iter().map(|d| d.path).collect();
    }
    None
}

/// `a.b[2].c` → (`a.b[2]`, `c`); `None` for a path that does not end in a mapping key.
fn split_path(path: &str) -> Option<(String, String)> {
    let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
    (!key.is_empty() && !key.ends_with(']')).then(|| (parent.to_string(), key.to_string()))
}

/// The steps of a path: keys and list indexes.
fn steps(path: &str) -> Vec<Result<&str, usize>> {
    let mut out = Vec::new();
    for step in path.split('.').filter(|s| !s.is_empty()) {
        let (name, indexes) = step.split_at(step.find('[').unwrap_or(step.len()));
        out.push(Ok(name));
        for i in indexes.split(']').filter(|s| !s.is_empty()) {
            out.push(Err(i.trim_start_matches('[').parse().unwrap_or(usize::MAX)));
        }
    }
    out
}

fn remove_entry(node: &mut Node, parent: &str, key: &str) -> Option<()> {
    let mut at = node;
    for step in steps(parent) {
        at = match (&mut at.kind, step) {
            (Kind::Map(entries), Ok(k)) => {
                &mut entries
                    .iter_mut()
                    .find(|(name, _)| matches!(&name.kind, Kind::Scalar(s, _) if s == k))?
                    .1
            }
            (Kind::Seq(items), Err(i)) => items.get_mut(i)?,
            _ => return None,
        };
    }
    let Kind::Map(entries) = &mut at.kind else { return None };
    entries.retain(|(name, _)| !matches!(&name.kind, Kind::Scalar(s, _) if s == key));
    Some(())
}

fn remove_yaml_entry(value: &mut serde_yaml::Value, parent: &str, key: &str) -> Option<()> {
    let mut at = value;
    for step in steps(parent) {
        at = match step {
            Ok(k) => at.get_mut(k)?,
            Err(i) => at.get_mut(i)?,
        };
    }
    at.as_mapping_mut()?.remove(key);
    Some(())
}

// ---------------------------------------------------------------------------------------
// The positioned tree.

#[derive(Debug)]
enum Kind {
    /// Scalar text and whether it was plain (unquoted), which decides its YAML type.
    Scalar(String, bool),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
    Alias,
}

#[derive(Debug)]
struct Node {
    kind: Kind,
    pos: Pos,
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

fn parse_tree(text: &str) -> Result<Option<Node>, (Pos, String)> {
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

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn record_positions(node: &Node, path: &str, out: &mut Positions) {
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
fn yaml_type(node: &Node) -> &'static str {
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

fn describe(node: &Node) -> String {
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

fn type_word(t: &str) -> &str {
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

struct Checker<'a> {
    file: &'a str,
    schema: &'a Json,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Checker<'a> {
    fn error(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::new(self.file, pos, path, message));
    }

    fn resolve<'s>(&self, schema: &'s Json) -> &'s Json
    where
        'a: 's,
    {
        let mut s = schema;
        while let Some(r) = s.get("$ref").and_then(Json::as_str) {
            let name = r.trim_start_matches("#/$defs/");
            match self.schema.get("$defs").and_then(|d| d.get(name)) {
                Some(def) => s = def,
                None => break,
            }
        }
        s
    }

    /// The string constants a schema allows, when it is an enumeration.
    fn constants(&self, schema: &Json) -> Option<Vec<String>> {
        let schema = self.resolve(schema);
        if let Some(values) = schema.get("enum").and_then(Json::as_array) {
            return Some(values.iter().filter_map(|v| v.as_str().map(String::from)).collect());
        }
        if let Some(c) = schema.get("const").and_then(Json::as_str) {
            return Some(vec![c.to_string()]);
        }
        let branches = schema.get("oneOf").or_else(|| schema.get("anyOf"))?.as_array()?;
        let mut all = Vec::new();
        for b in branches {
            all.extend(self.constants(b)?);
        }
        Some(all)
    }

    fn check(&mut self, node: &Node, schema: &Json, path: &str) {
        let schema = self.resolve(schema);
        if let Kind::Alias = node.kind {
            self.error(
                node.pos,
                path,
                "YAML aliases are not supported in specs; write the value out",
            );
            return;
        }
        if let Some(values) = self.constants(schema) {
            return self.check_constant(node, schema, &values, path);
        }
        if let Some(branches) = schema
            .get("oneOf")
            .or_else(|| schema.get("anyOf"))
            .and_then(Json::as_array)
        {
            return self.check_branches(node, branches, path);
        }
        let found = yaml_type(node);
        let allowed: Vec<&str> = match schema.get("type") {
            Some(Json::String(t)) => vec![t.as_str()],
            Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).collect(),
            _ => return,
        };
        let fits = allowed
            .iter()
            .any(|t| *t == found || (*t == "number" && found == "integer"));
        if !fits {
            let want: Vec<&str> = allowed
                .iter()
                .filter(|t| **t != "null" || allowed.len() == 1)
                .map(|t| type_word(t))
                .collect();
            self.error(
                node.pos,
                path,
                format!("expected {}, found {}", want.join(" or "), describe(node)),
            );
            return;
        }
        match (&node.kind, found) {
            (Kind::Map(entries), _) => self.check_map(node, entries, schema, path),
            (Kind::Seq(items), _) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item, item_schema, &format!("{path}[{i}]"));
                    }
                }
            }
            (Kind::Scalar(text, _), "integer") => {
                let min = schema.get("minimum").and_then(Json::as_f64);
                if min.is_some_and(|m| m >= 0.0) && text.starts_with('-') {
                    self.error(node.pos, path, format!("expected a whole number >= 0, found `{text}`"));
                }
            }
            (Kind::Scalar(text, _), "string") => match schema.get("pattern").and_then(Json::as_str) {
                Some(DURATION_PATTERN) => {
                    if let Err(e) = Duration::parse(text) {
                        self.error(node.pos, path, e);
                    }
                }
                Some(BYTE_SIZE_PATTERN) => {
                    if let Err(e) = ByteSize::parse(text) {
                        self.error(node.pos, path, e);
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn check_constant(&mut self, node: &Node, schema: &Json, values: &[String], path: &str) {
        let text = match &node.kind {
            Kind::Scalar(s, _) if yaml_type(node) == "string" => s,
            _ => {
                // `None` variants of optional enums also accept null.
                if yaml_type(node) == "null" && self.allows_null(schema) {
                    return;
                }
                self.error(
                    node.pos,
                    path,
                    format!("expected one of {}, found {}", list(values), describe(node)),
                );
                return;
            }
        };
        if values.iter().any(|v| v == text) {
            return;
        }
        let what = field_noun(path);
        let hint = did_you_mean(text, values.iter().map(String::as_str))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        self.error(
            node.pos,
            path,
            format!("unknown {what} `{text}`; expected one of {}{hint}", list(values)),
        );
    }

    fn allows_null(&self, schema: &Json) -> bool {
        schema.get("type").and_then(Json::as_str) == Some("null")
    }

    fn check_branches(&mut self, node: &Node, branches: &[Json], path: &str) {
        // Optional fields: `null` is fine, anything else is checked against the other branch.
        let non_null: Vec<&Json> = branches
            .iter()
            .filter(|b| self.resolve(b).get("type").and_then(Json::as_str) != Some("null"))
            .collect();
        if non_null.len() < branches.len() && yaml_type(node) == "null" {
            return;
        }
        if non_null.len() == 1 {
            return self.check(node, non_null[0], path);
        }
        // Internally tagged enums: choose the branch by `type`.
        let tagged_of = |b: &&Json| {
            let b = self.resolve(b);
            let tag = b.get("properties")?.get("type")?;
            self.constants(tag)?.into_iter().next()
        };
        // A variant named as text (`paginate: none`) where a mapping `{type: none}` goes.
        if let Kind::Scalar(text, _) = &node.kind {
            let tags: Vec<String> = non_null.iter().filter_map(tagged_of).collect();
            if !tags.is_empty() && !non_null.iter().any(|b| self.constants(b).is_some()) {
                let tag = did_you_mean(text, tags.iter().map(String::as_str)).unwrap_or(text);
                self.error(
                    node.pos,
                    path,
                    format!(
                        "expected a mapping with a `type` ({}), found the text `{text}`; write `{{type: {tag}}}`",
                        list(&tags)
                    ),
                );
                return;
            }
        }
        if let Kind::Map(entries) = &node.kind {
            let tagged: Vec<(String, &Json)> = non_null
                .iter()
                .filter_map(|b| {
                    let b = self.resolve(b);
                    let tag = b.get("properties")?.get("type")?;
                    let tag = self.constants(tag)?.into_iter().next()?;
                    Some((tag, b))
                })
                .collect();
            if !tagged.is_empty() {
                let tags: Vec<String> = tagged.iter().map(|(t, _)| t.clone()).collect();
                let type_entry = entries
                    .iter()
                    .find(|(k, _)| matches!(&k.kind, Kind::Scalar(s, _) if s == "type"));
                let Some((_, type_node)) = type_entry else {
                    self.error(
                        node.pos,
                        path,
                        format!("missing `type`; expected one of {}", list(&tags)),
                    );
                    return;
                };
                let Kind::Scalar(tag, _) = &type_node.kind else {
                    self.error(type_node.pos, &child_path(path, "type"), "`type` must be text");
                    return;
                };
                match tagged.iter().find(|(t, _)| t == tag) {
                    Some((_, branch)) => self.check(node, branch, path),
                    None => {
                        let hint = did_you_mean(tag, tags.iter().map(String::as_str))
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_default();
                        self.error(
                            type_node.pos,
                            &child_path(path, "type"),
                            format!(
                                "unknown {} type `{tag}`; expected one of {}{hint}",
                                field_noun(path),
                                list(&tags)
                            ),
                        );
                    }
                }
                return;
            }
        }
        // Untagged choices: accept the first branch that fits; otherwise report against the
        // branch of the same YAML type (a mapping against the mapping form, and so on).
        let found = yaml_type(node);
        let mut best: Option<Vec<Diagnostic>> = None;
        for b in &non_null {
            let saved = std::mem::take(&mut self.diagnostics);
            self.check(node, b, path);
            let errors = std::mem::replace(&mut self.diagnostics, saved);
            if errors.is_empty() {
                return;
            }
            if self.branch_type(b) == Some(found) || (found == "string" && self.constants(b).is_some()) {
                best = Some(errors);
            }
        }
        match best {
            Some(errors) => self.diagnostics.extend(errors),
            None => {
                let forms: Vec<String> = non_null
                    .iter()
                    .map(|b| match self.constants(b) {
                        Some(c) => list(&c),
                        None => type_word(self.branch_type(b).unwrap_or("value")).to_string(),
                    })
                    .collect();
                self.error(
                    node.pos,
                    path,
                    format!("expected {}, found {}", forms.join(" or "), describe(node)),
                );
            }
        }
    }

    fn branch_type(&self, schema: &Json) -> Option<&'static str> {
        let s = self.resolve(schema);
        if s.get("oneOf").is_some() || s.get("properties").is_some() {
            return Some("object");
        }
        match s.get("type").and_then(Json::as_str)? {
            "object" => Some("object"),
            "array" => Some("array"),
            "string" => Some("string"),
            "integer" => Some("integer"),
            "number" => Some("number"),
            "boolean" => Some("boolean"),
            _ => None,
        }
    }

    fn check_map(&mut self, node: &Node, entries: &[(Node, Node)], schema: &Json, path: &str) {
        let empty = serde_json::Map::new();
        let props = schema.get("properties").and_then(Json::as_object).unwrap_or(&empty);
        let additional = schema.get("additionalProperties");
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in entries {
            let Kind::Scalar(key, _) = &k.kind else {
                self.error(k.pos, path, "keys must be plain text");
                continue;
            };
            let p = child_path(path, key);
            if seen.contains(&key.as_str()) {
                self.error(k.pos, &p, format!("duplicate key `{key}`"));
                continue;
            }
            seen.push(key);
            if let Some(prop) = props.get(key) {
                self.check(v, prop, &p);
            } else {
                match additional {
                    Some(Json::Bool(false)) | None if !props.is_empty() || additional.is_some() => {
                        let hint = did_you_mean(key, props.keys().map(String::as_str))
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_else(|| {
                                let keys: Vec<String> = props.keys().cloned().collect();
                                format!("; expected one of {}", list(&keys))
                            });
                        self.error(k.pos, &p, format!("unknown field `{key}`{hint}"));
                    }
                    Some(extra @ Json::Object(_)) => self.check(v, extra, &p),
                    _ => {}
                }
            }
        }
        if let Some(required) = schema.get("required").and_then(Json::as_array) {
            for r in required.iter().filter_map(Json::as_str) {
                if !seen.contains(&r) {
                    self.error(node.pos, path, format!("missing required field `{r}`"));
                }
            }
        }
    }
}

fn list(values: &[String]) -> String {
    values.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
}

/// A noun for error messages from the field path: `paginate` → "paginate", `columns[2].type`
/// → "type".
fn field_noun(path: &str) -> String {
    let last = path.rsplit('.').next().unwrap_or(path);
    let last = last.split('[').next().unwrap_or(last);
    match last {
        "type" => {
            let parent = path.rsplit('.').nth(1).unwrap_or("").split('[').next().unwrap_or("");
            match parent {
                "columns" => "column type".into(),
                "" => "type".into(),
                other => other.replace('_', " "),
            }
        }
        "" => "value".into(),
        other => other.replace('_', " "),
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
