//! The shape check: a positioned YAML tree checked against the spec's own JSON Schema
//! (generated from the raw types), collecting every error at the exact key or value, with
//! the did-you-mean of a misspelt key and the units of durations and sizes.

use serde_json::Value as Json;

use super::diagnostic::{did_you_mean, Diagnostic, Pos};
use super::tree::{child_path, describe, type_word, yaml_type, Kind, Node};
use super::units::{ByteSize, Duration, BYTE_SIZE_PATTERN, DURATION_PATTERN};

/// Every shape problem of the tree `root` of `file`, in file order.
pub(super) fn check(file: &str, root: &Node) -> Vec<Diagnostic> {
    let schema = serde_json::to_value(super::json_schema()).expect("schema serializes");
    let mut checker = Checker {
        file,
        schema: &schema,
        diagnostics: Vec::new(),
    };
    checker.check(root, &schema, "");
    let mut d = checker.diagnostics;
    d.sort_by_key(|d| (d.line, d.column));
    d
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
                Some(crate::incremental::STEP_PATTERN) => {
                    if let Err(e) = crate::incremental::Step::parse(text) {
                        self.error(node.pos, path, e);
                    }
                }
                _ if schema.get("format").and_then(Json::as_str) == Some(crate::incremental::FORMAT_KEYWORD) => {
                    if let Err(e) = crate::incremental::CursorFormat::parse(text) {
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
