//! The YAML `init` writes: written by hand rather than serialised, so that the spec
//! reads like one a person wrote (flow-style columns, one a line) and carries comments
//! that say what was seen.

use crate::spec::interp::Interp;
use crate::spec::Pipeline;

use super::infer::{Col, Table};
use super::sampled::{method_word, CursorFrom, CursorTo, Paging, Sampled};
use super::InitError;

/// A scalar as YAML, quoted when a plain one would read as something else. `flow`: it
/// stands inside `{…}` or `[…]`, where `,[]{}` end a plain scalar.
pub(crate) fn scalar(text: &str, flow: bool) -> String {
    let keyword = matches!(
        text.to_ascii_lowercase().as_str(),
        "" | "~" | "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    );
    let numeric = text.parse::<f64>().is_ok() || text.starts_with(['.', '-', '+']) && text[1..].parse::<f64>().is_ok();
    let first_ok = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '$' | '/' | '.'));
    let chars_ok = text.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '_' | '$' | '/' | '.' | '-' | '*' | '@' | '(' | ')' | '+' | '=' | '?' | '&'
            )
            || (!flow && matches!(c, '[' | ']' | ' ' | ','))
            || (c == ':' && !flow)
    });
    let plain = !keyword
        && !numeric
        && first_ok
        && chars_ok
        && !text.contains(": ")
        && !text.ends_with(':')
        && !text.contains(" #")
        && !text.ends_with(' ');
    match plain {
        true => text.to_string(),
        false => serde_json::Value::String(text.to_string()).to_string(),
    }
}

fn flow(text: &str) -> String {
    scalar(text, true)
}

/// `paginate:` in flow style.
pub(crate) fn paging_flow(p: &Paging) -> String {
    let stop = |s: &Option<(String, bool)>| match s {
        Some((path, v)) => format!(", stop_when: {{path: {}, equals: {v}}}", flow(path)),
        None => String::new(),
    };
    match p {
        Paging::None => "{type: none}".into(),
        Paging::NextUrl { next, stop: s } => format!("{{type: next_url, next: {}{}}}", flow(next), stop(s)),
        Paging::LinkHeader => "{type: link_header}".into(),
        Paging::Cursor { from, to, stop: s } => {
            let from = match from {
                CursorFrom::Body(p) => format!("cursor: {}", flow(p)),
                CursorFrom::LastRecord(p) => format!("last_record: {}", flow(p)),
                CursorFrom::Header(h) => format!("header: {}", flow(h)),
            };
            let to = match to {
                CursorTo::Param(p) => format!("param: {}", flow(p)),
                CursorTo::Body(b) => format!("body_field: {}", flow(b)),
            };
            format!("{{type: cursor, {from}, {to}{}}}", stop(s))
        }
        Paging::PageNumber {
            param,
            start,
            total_pages,
        } => {
            let total = total_pages
                .as_ref()
                .map(|t| format!(", total_pages: {}", flow(t)))
                .unwrap_or_default();
            format!("{{type: page_number, param: {}, start: {start}{total}}}", flow(param))
        }
        Paging::Offset {
            limit_param,
            offset_param,
            limit,
            total,
        } => {
            let total = total
                .as_ref()
                .map(|t| format!(", total: {}", flow(t)))
                .unwrap_or_default();
            format!(
                "{{type: offset, limit: {limit}, limit_param: {}, offset_param: {}{total}}}",
                flow(limit_param),
                flow(offset_param)
            )
        }
    }
}

/// `paginate:` as written: the style, and what the first page said of the whole (its
/// total, its "more" flag) so that a run that reads less fails.
pub(crate) fn paginate(s: &Sampled) -> String {
    let flow = paging_flow(&s.paging);
    let mut guards = String::new();
    if s.paging == Paging::None {
        return flow;
    }
    if let Some(t) = s.total.as_ref().filter(|_| !flow.contains(" total: ")) {
        guards.push_str(&format!(", total: {}", scalar(t, true)));
    }
    match &s.has_more {
        Some((path, true)) => guards.push_str(&format!(", has_more: {}", scalar(path, true))),
        Some((path, false)) => guards.push_str(&format!(", has_more: {{path: {}, equals: false}}", scalar(path, true))),
        None => {}
    }
    format!("{}{guards}}}", &flow[..flow.len() - 1])
}

/// A resource entry to compile for following pages: the real request and pagination,
/// a placeholder table.
pub(crate) fn probe_resource(
    name: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    records: &str,
    paging: &Paging,
) -> String {
    format!(
        "  - name: {}\n    path: {}\n{}    records: {}\n    paginate: {}\n    table:\n      name: probe\n      columns:\n        - {{name: record, type: jsonb, path: $}}\n",
        scalar(name, false),
        scalar(path, false),
        post("    ", body),
        scalar(records, false),
        paging_flow(paging)
    )
}

/// `method: POST` and `body:` (as JSON, which YAML reads; `$` doubled, since body
/// strings are interpolated), or nothing for a GET.
fn post(indent: &str, body: Option<&serde_json::Value>) -> String {
    fn literal(v: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::String(s) => Value::String(Interp::escape(s)),
            Value::Array(a) => Value::Array(a.iter().map(literal).collect()),
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), literal(v))).collect()),
            other => other.clone(),
        }
    }
    match body {
        None => String::new(),
        Some(b) => format!("{indent}method: POST\n{indent}body: {}\n", literal(b)),
    }
}

/// A spec around one probe resource, for sampling: the client is built from its source
/// (`auth` as YAML; three attempts a request) and the extractor follows its resource one
/// request at a time.
pub(crate) fn probe_pipeline(base_url: &str, auth: &str, headers: &str, resource: &str) -> Result<Pipeline, InitError> {
    let text = format!(
        "version: 1\nname: init_probe\nsource:\n  base_url: {}\n  auth: {auth}\n{headers}  concurrency: 1\n  retry: {{max_attempts: 3}}\nstaging:\n  location: file:///nonexistent\nwarehouse:\n  url: sqlite://probe.db\n  schema: probe\nresources:\n{resource}",
        scalar(&Interp::escape(base_url), false)
    );
    crate::spec::compile_text("init", &text).map_err(|d| InitError::Internal(diagnostics(&text, &d)))
}

pub(crate) fn diagnostics(text: &str, d: &[crate::spec::Diagnostic]) -> String {
    d.iter()
        .map(|d| d.render_human(Some(text)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn column_line(c: &Col, with_references: bool) -> String {
    let mut parts = vec![format!("name: {}", flow(&c.name))];
    if let Some(ty) = c.ty {
        parts.push(format!("type: {}", ty.name()));
    }
    if let Some(p) = &c.path {
        parts.push(format!("path: {}", flow(p)));
    }
    if let Some(p) = &c.from_parent {
        parts.push(format!("from_parent: {}", flow(p)));
    }
    if let Some(m) = c.meta {
        parts.push(format!("meta: {m}"));
    }
    match c.transforms.as_slice() {
        [] => {}
        [one] => parts.push(format!("transform: {}", one.name())),
        many => parts.push(format!(
            "transform: [{}]",
            many.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
        )),
    }
    if c.not_null {
        parts.push("nullable: false".into());
    }
    if c.optional {
        parts.push("optional: true".into());
    }
    if let (Some(r), true) = (&c.references, with_references) {
        parts.push(format!("references: {}", flow(r)));
    }
    let line = format!("{{{}}}", parts.join(", "));
    match c.why.is_empty() {
        true => line,
        false => format!("{line}  # {}", one_line(&c.why)),
    }
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

fn comment(out: &mut String, indent: &str, text: &str) {
    for line in wrap(&one_line(text), 92usize.saturating_sub(indent.len())) {
        out.push_str(&format!("{indent}# {line}\n"));
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let last = lines.last_mut().expect("one line at least");
        if !last.is_empty() && last.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

/// A table's keys at `indent`. `entry`: it is an item of a `nested:` list, its notes and
/// `- ` two columns to the left.
fn table(out: &mut String, t: &Table, indent: &str, entry: bool, write: bool, with_references: bool) {
    let more = format!("{indent}  ");
    let lead = if entry { &indent[..indent.len() - 2] } else { indent };
    for n in &t.notes {
        comment(out, lead, n);
    }
    let first = if entry { format!("{lead}- ") } else { indent.to_string() };
    out.push_str(&format!("{first}name: {}\n", scalar(&t.name, false)));
    if let Some(each) = &t.each {
        out.push_str(&format!("{indent}each: {}\n", scalar(each, false)));
    }
    if write {
        let mode = if t.primary_key.is_empty() { "append" } else { "merge" };
        out.push_str(&format!("{indent}write: {mode}\n"));
    }
    if !t.primary_key.is_empty() {
        out.push_str(&format!(
            "{indent}primary_key: [{}]\n",
            t.primary_key.iter().map(|k| flow(k)).collect::<Vec<_>>().join(", ")
        ));
    }
    out.push_str(&format!("{indent}columns:\n"));
    for c in &t.columns {
        out.push_str(&format!("{more}- {}\n", column_line(c, with_references)));
    }
    if !t.nested.is_empty() {
        out.push_str(&format!("{indent}nested:\n"));
        for n in &t.nested {
            table(out, n, &format!("{more}  "), true, false, with_references);
        }
    }
}

/// One resource entry, at `indent` (the column of its `- `), with its comments.
pub(crate) fn resource(
    s: &Sampled,
    secret_params: &[(String, String)],
    name: &str,
    path: &str,
    t: &Table,
    indent: &str,
    with_references: bool,
) -> String {
    let mut out = String::new();
    let inner = format!("{indent}  ");
    comment(
        &mut out,
        indent,
        &format!(
            "{} {}",
            method_word(s.body.as_ref()),
            crate::util::shown_url(s.url.as_str())
        ),
    );
    comment(&mut out, indent, &format!("records: {}", s.records_why));
    comment(&mut out, indent, &format!("paginate: {}", s.paging_why));
    let sampled = format!(
        "sampled {} record{} on {} page{}{}",
        s.records.len(),
        if s.records.len() == 1 { "" } else { "s" },
        s.pages,
        if s.pages == 1 { "" } else { "s" },
        match (&s.stopped, s.complete) {
            (Some(why), _) => format!(", then stopped: {why}"),
            (None, true) => ", every record the API has".to_string(),
            (None, false) => String::new(),
        }
    );
    comment(&mut out, indent, &sampled);
    out.push_str(&format!("{indent}- name: {}\n", scalar(name, false)));
    out.push_str(&format!("{inner}path: {}\n", scalar(path, false)));
    if !s.params.is_empty() || !secret_params.is_empty() {
        out.push_str(&format!("{inner}params:\n"));
        for (k, v) in &s.params {
            let v = scalar(&Interp::escape(v), false);
            out.push_str(&format!("{inner}  {}: {v}\n", scalar(k, false)));
        }
        for (k, var) in secret_params {
            out.push_str(&format!(
                "{inner}  {}: \"${{{var}}}\"  # a secret: from the environment\n",
                scalar(k, false)
            ));
        }
    }
    out.push_str(&post(&inner, s.body.as_ref()));
    match &s.file {
        Some(lines) => lines.iter().for_each(|l| out.push_str(&format!("{inner}{l}\n"))),
        None => out.push_str(&format!("{inner}records: {}\n", scalar(&s.records_path, false))),
    }
    out.push_str(&format!("{inner}paginate: {}\n", paginate(s)));
    if s.ok_envelope {
        comment(
            &mut out,
            &inner,
            "the page says `ok: true`: such an API says its errors with HTTP 200 and `ok: false`",
        );
        out.push_str(&format!(
            "{inner}on_response:\n{inner}  - {{when: {{path: $.ok, equals: false}}, action: fail, message: \"the API says {{$.error}}\"}}\n"
        ));
    }
    out.push_str(&format!("{inner}table:\n"));
    table(&mut out, t, &format!("{inner}  "), false, true, with_references);
    out
}

/// `source.headers` as a line of YAML (values as given: `${VAR}` is read at run time),
/// or nothing.
pub(crate) fn headers(headers: &[(String, String)]) -> String {
    if headers.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = headers
        .iter()
        .map(|(k, v)| format!("{}: {}", scalar(k, true), serde_json::Value::String(v.clone())))
        .collect();
    format!("  headers: {{{}}}\n", pairs.join(", "))
}

/// What a new spec says above its resources.
pub(crate) struct Head<'a> {
    /// The JSON Schema's path, for editors.
    pub schema: Option<&'a str>,
    pub command: &'a str,
    pub name: &'a str,
    pub base_url: &'a str,
    pub auth: &'a str,
    /// `source.headers`, from [`headers`].
    pub headers: &'a str,
}

pub(crate) fn head(h: &Head) -> String {
    let var = format!("{}_BASE_URL", h.name.to_ascii_uppercase());
    let schema = h
        .schema
        .map(|s| format!("# yaml-language-server: $schema={s}\n"))
        .unwrap_or_default();
    format!(
        "{schema}# Written by `{}`.\n\
         # Check the types, keys and names, then: sluice validate <this file> && sluice run <this file>\n\
         version: 1\n\
         name: {}\n\
         source:\n  \
           base_url: ${{{var}:-{}}}\n  \
           auth: {}\n\
         {}  \
           timeout: 30s\n  \
           retry: {{max_attempts: 5, initial_backoff: 500ms, max_backoff: 30s}}\n\
         staging:\n  \
           location: ${{SLUICE_STAGING:-file://.sluice/staging}}\n\
         warehouse:\n  \
           url: ${{DATABASE_URL:-sqlite://.sluice/{}.db}}\n  \
           schema: {}\n\
         resources:\n",
        one_line(h.command),
        h.name,
        Interp::escape(h.base_url),
        h.auth,
        h.headers,
        h.name,
        h.name
    )
}
