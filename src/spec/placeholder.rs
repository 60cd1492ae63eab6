//! `{parent.<dotted field>}` placeholders: how a child resource (`for_each`) puts values
//! of its parent record into its `path`, `url`, `params` and `body`. Checked when a spec
//! is compiled, filled in for each parent record when the pipeline runs.

use serde_json::Value;

/// One placeholder: its byte range in the template and the field it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub start: usize,
    pub end: usize,
    /// The dotted field below the parent record; a step of digits indexes an array.
    pub field: Vec<String>,
}

/// How strictly a template is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A `path` or `url`: every brace opens a placeholder.
    Strict,
    /// A parameter or body string (GraphQL queries are full of braces): only `{parent`
    /// opens one.
    Text,
}

/// The placeholders of `template`, or what is wrong with one.
pub fn scan(template: &str, mode: Scan) -> Result<Vec<Placeholder>, String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = template[from..].find('{').map(|i| i + from) {
        let rest = &template[i..];
        if mode == Scan::Text && !rest.starts_with("{parent") {
            from = i + 1;
            continue;
        }
        let Some(len) = rest.find('}') else {
            return Err(format!(
                "`{}` opens `{{` without closing it",
                crate::util::clip(rest, 40)
            ));
        };
        let inner = &rest[1..len];
        let field = inner
            .strip_prefix("parent.")
            .map(|f| f.split('.').map(str::to_string).collect::<Vec<_>>())
            .filter(|f| f.iter().all(|s| is_field(s)));
        match field {
            Some(field) => out.push(Placeholder {
                start: i,
                end: i + len + 1,
                field,
            }),
            None => {
                return Err(format!(
                    "unknown placeholder `{{{inner}}}`: write `{{parent.<field>}}`, for example `{{parent.id}}` or `{{parent.owner.login}}`"
                ))
            }
        }
        from = i + len + 1;
    }
    if mode == Scan::Strict {
        let mut last = 0;
        for (start, end) in out
            .iter()
            .map(|p| (p.start, p.end))
            .chain([(template.len(), template.len())])
        {
            if template[last..start].contains('}') {
                return Err("`}` without an opening `{`".into());
            }
            last = end;
        }
    }
    Ok(out)
}

fn is_field(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// The value of `field` in `parent`.
pub fn lookup<'a>(parent: &'a Value, field: &[String]) -> Option<&'a Value> {
    field.iter().try_fold(parent, |v, step| match v {
        Value::Object(m) => m.get(step.as_str()),
        Value::Array(a) => step.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// A parent value as text: strings as they are, numbers and booleans as JSON writes them.
fn text(parent: &Value, field: &[String]) -> Result<String, String> {
    let name = field.join(".");
    match lookup(parent, field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(v.to_string()),
        Some(Value::Null) => Err(format!("`parent.{name}` is null")),
        Some(v) => Err(format!(
            "`parent.{name}` is {}, not a string or a number",
            crate::extract::describe(v)
        )),
        None => Err(format!(
            "the parent record has no `{name}`; it is {}",
            crate::extract::describe(parent)
        )),
    }
}

/// How a value is written into a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// As it is (a `url`, a parameter or body string).
    Raw,
    /// Percent-encoded as one path segment, so that a value cannot add segments.
    Segment,
}

/// `template` with every placeholder replaced by the parent's value.
pub fn render(template: &str, mode: Scan, fill: Fill, parent: &Value) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut last = 0;
    for p in scan(template, mode)? {
        out.push_str(&template[last..p.start]);
        let value = text(parent, &p.field)?;
        match fill {
            Fill::Raw => out.push_str(&value),
            Fill::Segment => {
                if value.is_empty() || value == "." || value == ".." {
                    return Err(format!(
                        "`parent.{}` is `{value}`, which cannot be a path segment",
                        p.field.join(".")
                    ));
                }
                encode_segment(&value, &mut out);
            }
        }
        last = p.end;
    }
    out.push_str(&template[last..]);
    Ok(out)
}

/// Percent-encode everything but RFC 3986's unreserved characters.
fn encode_segment(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// A request body with its strings rendered; a string that is one placeholder and
/// nothing else takes the parent's value with its JSON type (a number stays a number).
pub fn render_json(body: &Value, parent: &Value) -> Result<Value, String> {
    Ok(match body {
        Value::String(s) => {
            let found = scan(s, Scan::Text)?;
            match found.as_slice() {
                [] => body.clone(),
                [p] if p.start == 0 && p.end == s.len() => match lookup(parent, &p.field) {
                    Some(v) if !v.is_null() => v.clone(),
                    _ => Value::String(render(s, Scan::Text, Fill::Raw, parent)?),
                },
                _ => Value::String(render(s, Scan::Text, Fill::Raw, parent)?),
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| render_json(v, parent)).collect::<Result<_, _>>()?),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v, parent)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Whether a body uses any placeholder (checked by the compile pass).
pub fn body_placeholders(body: &Value, out: &mut Vec<Result<Vec<Placeholder>, String>>) {
    match body {
        Value::String(s) => out.push(scan(s, Scan::Text)),
        Value::Array(items) => items.iter().for_each(|v| body_placeholders(v, out)),
        Value::Object(m) => m.values().for_each(|v| body_placeholders(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_take_only_parent_placeholders() {
        let found = scan("/posts/{parent.id}/comments", Scan::Strict).unwrap();
        assert_eq!(found[0].field, ["id"]);
        assert!(scan("/posts/{post_id}/comments", Scan::Strict)
            .unwrap_err()
            .contains("unknown placeholder `{post_id}`"));
        assert!(scan("/posts/{parent.}/x", Scan::Strict).is_err());
        assert!(scan("/posts/{parent.id", Scan::Strict).is_err());
        assert!(scan("/posts/parent.id}", Scan::Strict).is_err());
        // Text leaves other braces alone (GraphQL), but not a broken `{parent`.
        assert!(scan("query { characters { id } }", Scan::Text).unwrap().is_empty());
        assert!(scan("{parent}", Scan::Text).is_err());
    }

    #[test]
    fn values_fill_segments_encoded_and_bodies_typed() {
        let parent = json!({"id": 7, "name": "a b/c", "owner": {"login": "x"}, "tags": ["t0"], "nil": null});
        assert_eq!(
            render("/u/{parent.name}/{parent.id}", Scan::Strict, Fill::Segment, &parent).unwrap(),
            "/u/a%20b%2Fc/7"
        );
        assert_eq!(
            render("{parent.owner.login}-{parent.tags.0}", Scan::Text, Fill::Raw, &parent).unwrap(),
            "x-t0"
        );
        assert!(render("/{parent.nope}", Scan::Strict, Fill::Segment, &parent)
            .unwrap_err()
            .contains("has no `nope`"));
        assert!(render("/{parent.nil}", Scan::Strict, Fill::Segment, &parent)
            .unwrap_err()
            .contains("is null"));
        assert!(render("/{parent.owner}", Scan::Strict, Fill::Segment, &parent).is_err());
        let dots = json!({"id": ".."});
        assert!(render("/a/{parent.id}", Scan::Strict, Fill::Segment, &dots).is_err());
        let body = json!({"query": "q { x }", "variables": {"id": "{parent.id}", "s": "n-{parent.id}"}});
        assert_eq!(
            render_json(&body, &parent).unwrap(),
            json!({"query": "q { x }", "variables": {"id": 7, "s": "n-7"}})
        );
    }
}
