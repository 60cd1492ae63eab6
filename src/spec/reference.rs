//! The spec reference in Markdown, generated from the JSON Schema (and so from the doc
//! comments of the raw types), for `sluice schema --format markdown` and `docs/spec-reference.md`.

use serde_json::Value;

struct Walker<'a> {
    defs: &'a serde_json::Map<String, Value>,
    out: String,
    /// The mappings documented so far, with their titles (a recursive mapping, such as
    /// nested tables in nested tables, is documented once).
    done: Vec<(*const Value, String)>,
}

impl<'a> Walker<'a> {
    fn resolve(&self, s: &'a Value) -> &'a Value {
        let mut s = s;
        while let Some(r) = s.get("$ref").and_then(Value::as_str) {
            match self.defs.get(r.trim_start_matches("#/$defs/")) {
                Some(d) => s = d,
                None => break,
            }
        }
        s
    }

    /// The object schemas a field leads to (through options, lists and maps).
    fn objects(&self, s: &'a Value) -> Vec<&'a Value> {
        let s = self.resolve(s);
        if s.get("properties").is_some() {
            return vec![s];
        }
        let mut out = Vec::new();
        for key in ["anyOf", "oneOf"] {
            for b in s.get(key).and_then(Value::as_array).into_iter().flatten() {
                out.extend(self.objects(b));
            }
        }
        if let Some(items) = s.get("items") {
            out.extend(self.objects(items));
        }
        out
    }

    fn type_name(&self, s: &'a Value) -> String {
        let s = self.resolve(s);
        if let Some(c) = s.get("const").and_then(Value::as_str) {
            return format!("`{c}`");
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            return e
                .iter()
                .filter_map(Value::as_str)
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(" \\| ");
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str) {
            return if p.contains("ms|s") {
                "duration".into()
            } else {
                "size".into()
            };
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(bs) = s.get(key).and_then(Value::as_array) {
                let mut names: Vec<String> = Vec::new();
                for b in bs
                    .iter()
                    .filter(|b| self.resolve(b).get("type").and_then(Value::as_str) != Some("null"))
                {
                    let n = self.type_name(b);
                    if !names.contains(&n) {
                        names.push(n);
                    }
                }
                return names.join(" \\| ");
            }
        }
        match s.get("type") {
            Some(Value::String(t)) if t == "array" => match s.get("items") {
                Some(i) => format!("list of {}", self.type_name(i)),
                None => "list".into(),
            },
            Some(Value::String(t)) if t == "object" && s.get("properties").is_some() => "mapping".into(),
            Some(Value::String(t)) if t == "object" => "map of text".into(),
            Some(Value::String(t)) if t == "integer" => "integer".into(),
            Some(Value::String(t)) => t.clone(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect::<Vec<_>>()
                .join(" \\| "),
            _ => "mapping".into(),
        }
    }

    fn section(&mut self, title: &str, s: &'a Value) {
        let Some(props) = s.get("properties").and_then(Value::as_object) else {
            return;
        };
        let required: Vec<&str> = s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        self.out.push_str(&format!("## `{title}`\n\n"));
        if let Some(d) = s.get("description").and_then(Value::as_str) {
            self.out.push_str(&format!("{}\n\n", d.replace('\n', " ")));
        }
        self.out
            .push_str("| field | type | required | description |\n| --- | --- | --- | --- |\n");
        let mut children = Vec::new();
        for (name, field) in props {
            let desc = field
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .replace('\n', " ")
                .replace('|', "\\|");
            let req = if required.contains(&name.as_str()) { "yes" } else { "" };
            let mut desc = desc;
            for obj in self.objects(field) {
                if let Some((_, title)) = self.done.iter().find(|(p, _)| std::ptr::eq(*p, obj)) {
                    desc.push_str(&format!(" Its fields are those of `{title}`."));
                }
            }
            self.out
                .push_str(&format!("| `{name}` | {} | {req} | {desc} |\n", self.type_name(field)));
            for obj in self.objects(field) {
                if self.done.iter().any(|(p, _)| std::ptr::eq(*p, obj)) {
                    continue;
                }
                let list = self.resolve(field).get("type").and_then(Value::as_str) == Some("array");
                let base = if title == "(top level)" {
                    name.clone()
                } else {
                    format!("{title}.{name}")
                };
                let base = if list { format!("{base}[]") } else { base };
                let tag = obj
                    .get("properties")
                    .and_then(|p| p.get("type"))
                    .and_then(|t| self.resolve(t).get("const"))
                    .and_then(Value::as_str);
                let child = match tag {
                    Some(t) => format!("{base} (type: {t})"),
                    None => base,
                };
                self.done.push((obj, child.clone()));
                children.push((child, obj));
            }
        }
        self.out.push('\n');
        for (child, obj) in children {
            self.section(&child, obj);
        }
    }
}

/// The reference, one table per mapping of the spec.
pub(crate) fn markdown() -> String {
    let schema = serde_json::to_value(super::json_schema()).expect("schema serializes");
    let empty = serde_json::Map::new();
    let defs = schema.get("$defs").and_then(Value::as_object).unwrap_or(&empty);
    let mut w = Walker {
        defs,
        out: String::new(),
        done: Vec::new(),
    };
    w.section("(top level)", &schema);
    w.out
}
