//! Request placeholders: `{parent.<dotted field>}`, how a child resource (`for_each`) puts
//! values of its parent record into its `path`, `url`, `params` and `body` (`{parent}`
//! for a parent whose records are scalars, `{item}` for a list partition),
//! `{incremental.start}` and `{incremental.end}`, the window an incremental resource
//! reads, and `{now}` / `{now - 7d:%Y-%m-%d}`, the run's time. Checked when a spec is
//! compiled, filled in for each request when the pipeline runs.

use std::borrow::Cow;

use serde_json::Value;

/// What a placeholder stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A field of the parent record (the record itself when empty, `{parent}`); a step of
    /// digits indexes an array.
    Parent(Vec<String>),
    /// The value of a list partition (`{item}`).
    Item,
    /// The start of an incremental run (of its window).
    Start,
    /// The last instant of an incremental run's window.
    End,
    /// The run's time, shifted and formatted.
    Now(crate::incremental::NowExpr),
    /// A field of an export job's create answer (`{job.id}`).
    Job(Vec<String>),
}

/// One placeholder: its byte range in the template and what it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placeholder {
    pub start: usize,
    pub end: usize,
    pub source: Source,
}

/// How strictly a template is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A `path` or `url`: every brace opens a placeholder.
    Strict,
    /// A parameter or body string (GraphQL queries are full of braces): only `{parent`,
    /// `{incremental` and `{now` open one.
    Text,
}

/// What the placeholders of one request are filled with.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Values<'a> {
    pub parent: Option<&'a Value>,
    pub start: Option<&'a Value>,
    pub end: Option<&'a Value>,
    /// The run's time, for `{now}`.
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// An export job's create answer, for `{job.…}`.
    pub job: Option<&'a Value>,
}

impl Values<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        self.parent.is_none() && self.start.is_none() && self.end.is_none() && self.now.is_none() && self.job.is_none()
    }
}

/// The placeholders of `template`, or what is wrong with one.
pub(crate) fn scan(template: &str, mode: Scan) -> Result<Vec<Placeholder>, String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = template[from..].find('{').map(|i| i + from) {
        let rest = &template[i..];
        let opens = [
            "{parent.",
            "{parent}",
            "{incremental",
            "{item}",
            "{now}",
            "{now ",
            "{now-",
            "{now+",
            "{now:",
            "{job.",
        ];
        if mode == Scan::Text && !opens.iter().any(|p| rest.starts_with(p)) {
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
        if let Some(now) = crate::incremental::now_expression(inner) {
            out.push(Placeholder {
                start: i,
                end: i + len + 1,
                source: Source::Now(now.map_err(|e| format!("`{{{inner}}}`: {e}"))?),
            });
            from = i + len + 1;
            continue;
        }
        let source = match inner.strip_prefix("parent.") {
            _ if inner == "incremental.start" => Some(Source::Start),
            _ if inner == "incremental.end" => Some(Source::End),
            _ if inner == "parent" => Some(Source::Parent(Vec::new())),
            _ if inner == "item" => Some(Source::Item),
            _ if inner.starts_with("job.") => Some(inner[4..].split('.').map(str::to_string).collect::<Vec<_>>())
                .filter(|f| f.iter().all(|s| is_field(s)))
                .map(Source::Job),
            Some(f) => Some(f.split('.').map(str::to_string).collect::<Vec<_>>())
                .filter(|f| f.iter().all(|s| is_field(s)))
                .map(Source::Parent),
            None => None,
        };
        match source {
            Some(source) => out.push(Placeholder {
                start: i,
                end: i + len + 1,
                source,
            }),
            None => {
                return Err(format!(
                    "unknown placeholder `{{{inner}}}`: write `{{parent.<field>}}` (with `for_each`), for example `{{parent.id}}`, `{{item}}` (with `for_each: {{values: [...]}}`), `{{incremental.start}}` or `{{incremental.end}}` (with `incremental`), `{{now}}` (`{{now - 7d:%Y-%m-%d}}`), or `{{job.<field>}}` (in a `job`'s poll and download)"
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
pub(crate) fn lookup<'a>(parent: &'a Value, field: &[String]) -> Option<&'a Value> {
    field.iter().try_fold(parent, |v, step| match v {
        Value::Object(m) => m.get(step.as_str()),
        Value::Array(a) => step.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

impl Source {
    fn name(&self) -> String {
        match self {
            Source::Parent(field) if field.is_empty() => "parent".into(),
            Source::Parent(field) => format!("parent.{}", field.join(".")),
            Source::Item => "item".into(),
            Source::Start => "incremental.start".into(),
            Source::End => "incremental.end".into(),
            Source::Now(_) => "now".into(),
            Source::Job(field) => format!("job.{}", field.join(".")),
        }
    }

    /// The value in `values`, or why there is none.
    fn value<'a>(&self, values: &Values<'a>) -> Result<Cow<'a, Value>, String> {
        match self {
            Source::Parent(field) => {
                let parent = values.parent.ok_or("no parent record here")?;
                lookup(parent, field).map(Cow::Borrowed).ok_or_else(|| {
                    format!(
                        "the parent record has no `{}`; it is {}",
                        field.join("."),
                        crate::util::describe(parent)
                    )
                })
            }
            Source::Item => values
                .parent
                .map(Cow::Borrowed)
                .ok_or_else(|| "no list value here".into()),
            Source::Start => values
                .start
                .map(Cow::Borrowed)
                .ok_or_else(|| "no incremental start here".into()),
            Source::End => values
                .end
                .map(Cow::Borrowed)
                .ok_or_else(|| "no incremental end here".into()),
            Source::Now(e) => Ok(Cow::Owned(e.value(values.now.ok_or("no run time here")?))),
            Source::Job(field) => {
                let job = values.job.ok_or("no export job here")?;
                lookup(job, field).map(Cow::Borrowed).ok_or_else(|| {
                    format!(
                        "the job's create answer has no `{}`; it is {}",
                        field.join("."),
                        crate::util::describe(job)
                    )
                })
            }
        }
    }

    /// The value as text: strings as they are, numbers and booleans as JSON writes them.
    fn text(&self, values: &Values) -> Result<String, String> {
        match &*self.value(values)? {
            Value::String(s) => Ok(s.clone()),
            v @ (Value::Number(_) | Value::Bool(_)) => Ok(v.to_string()),
            Value::Null => Err(format!("`{}` is null", self.name())),
            v => Err(format!(
                "`{}` is {}, not a string or a number",
                self.name(),
                crate::util::describe(v)
            )),
        }
    }
}

/// How a value is written into a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    /// As it is (a `url`, a parameter or body string).
    Raw,
    /// Percent-encoded as one path segment, so that a value cannot add segments.
    Segment,
}

/// `template` with every placeholder replaced by its value.
pub(crate) fn render(template: &str, mode: Scan, fill: Fill, values: &Values) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut last = 0;
    for p in scan(template, mode)? {
        out.push_str(&template[last..p.start]);
        let value = p.source.text(values)?;
        match fill {
            Fill::Raw => out.push_str(&value),
            Fill::Segment => {
                if value.is_empty() || value == "." || value == ".." {
                    return Err(format!(
                        "`{}` is `{value}`, which cannot be a path segment",
                        p.source.name()
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
/// nothing else takes the value with its JSON type (a number stays a number).
pub(crate) fn render_json(body: &Value, values: &Values) -> Result<Value, String> {
    Ok(match body {
        Value::String(s) => {
            let found = scan(s, Scan::Text)?;
            match found.as_slice() {
                [] => body.clone(),
                [p] if p.start == 0 && p.end == s.len() => match p.source.value(values) {
                    Ok(v) if !v.is_null() => v.into_owned(),
                    _ => Value::String(render(s, Scan::Text, Fill::Raw, values)?),
                },
                _ => Value::String(render(s, Scan::Text, Fill::Raw, values)?),
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| render_json(v, values)).collect::<Result<_, _>>()?),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v, values)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_take_only_parent_placeholders() {
        let found = scan("/posts/{parent.id}/comments", Scan::Strict).unwrap();
        assert_eq!(found[0].source, Source::Parent(vec!["id".into()]));
        assert_eq!(
            scan("/since/{incremental.start}", Scan::Strict).unwrap()[0].source,
            Source::Start
        );
        assert_eq!(
            scan("/until/{incremental.end}", Scan::Strict).unwrap()[0].source,
            Source::End
        );
        assert!(scan("/since/{incremental.stop}", Scan::Strict).is_err());
        assert!(scan("/r/{now - 1x}", Scan::Strict).unwrap_err().contains("now - 1x"));
        assert!(scan("/posts/{post_id}/comments", Scan::Strict)
            .unwrap_err()
            .contains("unknown placeholder `{post_id}`"));
        assert!(scan("/posts/{parent.}/x", Scan::Strict).is_err());
        assert!(scan("/posts/{parent.id", Scan::Strict).is_err());
        assert!(scan("/posts/parent.id}", Scan::Strict).is_err());
        // Text leaves other braces alone (GraphQL), but not a broken `{parent`.
        assert!(scan("query { characters { id } }", Scan::Text).unwrap().is_empty());
        // GraphQL fields that merely start like a placeholder are text.
        assert!(scan("query { nowPlaying { id } parentId itemCount }", Scan::Text)
            .unwrap()
            .is_empty());
        assert_eq!(
            scan("{parent}", Scan::Text).unwrap()[0].source,
            Source::Parent(Vec::new())
        );
        assert_eq!(scan("/a/{item}", Scan::Strict).unwrap()[0].source, Source::Item);
        assert!(scan("{parent.}", Scan::Text).is_err());
    }

    #[test]
    fn values_fill_segments_encoded_and_bodies_typed() {
        let record = json!({"id": 7, "name": "a b/c", "owner": {"login": "x"}, "tags": ["t0"], "nil": null});
        let start = json!(12);
        let parent = Values {
            parent: Some(&record),
            start: Some(&start),
            ..Default::default()
        };
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
        let dots = Values {
            parent: Some(&dots),
            ..Default::default()
        };
        assert!(render("/a/{parent.id}", Scan::Strict, Fill::Segment, &dots).is_err());
        let body = json!({"query": "q { x }", "variables": {"id": "{parent.id}", "s": "n-{parent.id}", "since": "{incremental.start}"}});
        assert_eq!(
            render_json(&body, &parent).unwrap(),
            json!({"query": "q { x }", "variables": {"id": 7, "s": "n-7", "since": 12}})
        );
    }
}
