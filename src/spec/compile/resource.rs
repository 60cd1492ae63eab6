//! One resource: its request (method, path or URL, params, body, `for_each`) and its
//! `incremental` cursor.

use super::paginate::compile_paginate;
use super::table::{compile_nested_tables, compile_table};
use super::target::compile_target;
use super::{check_body_templates, check_placeholders, interp_map, Allowed, Ctx};
use crate::spec::interp::Interp;
use crate::spec::jsonpath::JsonPath;
use crate::spec::model::*;
use crate::spec::pipeline::{self as p, ValueSource};

pub(super) fn compile_resource(cx: &mut Ctx, path: &str, r: &RawResource) -> Option<p::Resource> {
    let name_ok = cx.ident(&format!("{path}.name"), &r.name);
    let child = r.for_each.is_some();
    let partitions = compile_partitions(cx, path, r);
    let allowed = Allowed {
        parent: r.for_each.as_ref().is_some_and(|f| f.parent().is_some()),
        item: matches!(r.for_each, Some(RawForEach::Values(_))),
        start: r.incremental.is_some(),
        job: false,
    };
    let job = super::job::compile_job(cx, path, r, allowed);
    // A job's resource goes where the job is created.
    let target = match &job {
        Some(Some(j)) => Some(j.create.target.clone()),
        Some(None) => compile_target(cx, path, &r.name, r.path.as_ref(), r.url.as_ref(), allowed),
        None => None,
    };
    let format = super::job::compile_format(cx, path, r);
    let incremental = compile_incremental(cx, path, r);
    if r.on_missing.is_some() && !child {
        cx.error_at_key(
            &format!("{path}.on_missing"),
            "`on_missing` is about the requests of `for_each`, which this resource does not have",
        );
    }
    let mut on_response = compile_rules(cx, &format!("{path}.on_response"), &r.on_response);
    if r.on_missing == Some(OnMissing::Skip) {
        on_response.push(p::ResponseRule {
            status: vec![404],
            when: None,
            action: ResponseAction::Ignore,
            message: Some("HTTP 404 for this parent record; skipped (on_missing: skip)".into()),
        });
    }
    let filter = compile_filter(cx, &format!("{path}.filter"), r);
    let params = interp_map(cx, &format!("{path}.params"), &r.params);
    let headers = interp_map(cx, &format!("{path}.headers"), &r.headers);
    for (k, v) in &r.headers {
        if !super::is_header_name(k) {
            cx.error_at_key(
                &format!("{path}.headers.{k}"),
                format!("`{k}` is not a valid header name"),
            );
        }
        check_placeholders(cx, &format!("{path}.headers.{k}"), v, allowed);
    }
    for (k, v) in &r.params {
        check_placeholders(cx, &format!("{path}.params.{k}"), &v.0, allowed);
    }
    let records = compile_records(cx, path, r);
    let method = r.method.unwrap_or(HttpMethod::Get);
    if let Some(body) = &r.body {
        if method != HttpMethod::Post {
            cx.error_at_key(&format!("{path}.body"), "a request `body` needs `method: POST`");
        }
        check_body_templates(cx, &format!("{path}.body"), body, allowed);
    }
    let (paginator, stop_when, completeness) = compile_paginate(cx, &format!("{path}.paginate"), r.paginate.as_ref());
    if let Some(pg) = &paginator {
        check_paginator_params(cx, path, r, pg);
    }
    if let (Some((f, _)), Some(pg)) = (&format, &paginator) {
        if f.streamed() {
            check_streamed_paging(cx, path, f.name(), pg, stop_when.as_ref(), completeness.as_ref());
        }
    }
    let max_pages = r.max_pages.unwrap_or(10_000);
    if max_pages == 0 {
        cx.error(&format!("{path}.max_pages"), "max_pages must be at least 1");
    }
    // The resource's table, then its nested tables depth first, each after its parent.
    let mut tables = Vec::new();
    if let Some(table) = &r.table {
        cx.child_resource = child;
        let tpath = format!("{path}.table");
        let root = compile_table(cx, &tpath, table, None);
        if let Some(t) = &root {
            cx.tables.push((tpath.clone(), t.clone()));
            if r.incremental.is_none() && t.append_collides() {
                cx.warn(
                    &format!("{tpath}.write"),
                    format!(
                        "table `{}` uses `write: append` with a `primary_key`: every run reads all the records again, so the second run fails on duplicate keys (after extracting everything); `write: merge` keeps one row per key",
                        t.name
                    ),
                );
            }
        }
        tables.push(root);
        cx.child_resource = false;
        compile_nested_tables(cx, &tpath, &table.nested, table, 0, &mut tables);
    }
    let tables: Option<Vec<p::Table>> = tables.into_iter().collect();
    if !name_ok {
        return None;
    }
    let tables = tables?;
    let mut parent_paths: Vec<JsonPath> = Vec::new();
    for c in tables.iter().take(1).flat_map(|t| &t.columns) {
        if let ValueSource::ParentRecord(jp) = &c.value {
            if !parent_paths.iter().any(|q| q.as_str() == jp.as_str()) {
                parent_paths.push(jp.clone());
            }
        }
    }
    Some(p::Resource {
        name: r.name.clone(),
        target: target?,
        for_each: r.for_each.as_ref().and_then(|f| f.parent()).map(|parent| p::ForEach {
            parent: parent.to_string(),
            on_missing: r.on_missing.unwrap_or_default(),
        }),
        partitions_split: matches!(
            r.for_each,
            Some(RawForEach::Values(RawPartitions {
                values: RawValueList::Text(_)
            }))
        ),
        partitions: partitions?,
        parent_paths,
        method,
        body: r.body.clone(),
        params: params?,
        headers: headers?,
        records: records?,
        format: format.as_ref()?.0.clone(),
        compression: format?.1,
        job: job?.map(Box::new),
        paginator: paginator?,
        stop_when: stop_when?,
        completeness: completeness?,
        max_pages,
        incremental: incremental?,
        on_response,
        filter: filter?,
        tables,
    })
}

/// `records`, which only a JSON body needs (`$`, each line, row or element, otherwise).
fn compile_records(cx: &mut Ctx, path: &str, r: &RawResource) -> Option<crate::spec::jsonpath::JsonPath> {
    match (&r.records, r.format.unwrap_or_default()) {
        (Some(records), _) => cx.jsonpath(&format!("{path}.records"), records),
        (None, BodyKind::Json) => {
            cx.error(
                path,
                format!(
                    "resource `{}` needs `records`: a JSONPath to the records in each page, for example `$.results[*]`",
                    r.name
                ),
            );
            None
        }
        (None, _) => cx.jsonpath(&format!("{path}.records"), "$"),
    }
}

/// A parameter the paginator sets on every page is not the resource's own.
fn check_paginator_params(cx: &mut Ctx, path: &str, r: &RawResource, pg: &p::Paginator) {
    let sets: Vec<&str> = match pg {
        p::Paginator::PageNumber { param, .. } => vec![param],
        p::Paginator::Offset {
            limit_param,
            offset_param,
            ..
        } => vec![limit_param, offset_param],
        p::Paginator::Cursor {
            to: p::CursorTo::Param(param),
            ..
        } => vec![param],
        _ => Vec::new(),
    };
    for name in sets.into_iter().filter(|n| r.params.contains_key(*n)) {
        cx.error_at_key(
            &format!("{path}.params.{name}"),
            format!("`{name}` is set by `paginate` on every page, so this value would be overridden; leave it out of `params` (the page size is `paginate.limit`)"),
        );
    }
}

/// A streamed body (`format: jsonl | csv | xml`) has no JSON page for a paginator to read:
/// only headers, the URL and the record counts are there.
fn check_streamed_paging(
    cx: &mut Ctx,
    path: &str,
    format: &str,
    pg: &p::Paginator,
    stop_when: Option<&Option<p::StopWhen>>,
    completeness: Option<&p::Completeness>,
) {
    let reads = match pg {
        p::Paginator::NextUrl { .. } => Some("next"),
        p::Paginator::PageNumber {
            total_pages: Some(_), ..
        } => Some("total_pages"),
        p::Paginator::Offset { total: Some(_), .. } => Some("total"),
        p::Paginator::Cursor {
            from: p::CursorFrom::Body(_),
            ..
        } => Some("cursor"),
        _ => None,
    };
    let reads = reads
        .or(stop_when.is_some_and(|s| s.is_some()).then_some("stop_when"))
        .or(completeness.and_then(|c| {
            (c.total.is_some() || c.total_pages.is_some())
                .then_some("total")
                .or(c.has_more.is_some().then_some("has_more"))
        }));
    if let Some(field) = reads {
        cx.error(
            &format!("{path}.paginate.{field}"),
            format!("`{field}` reads a JSON page, and a `format: {format}` body is records only: page with `cursor` from a `header`, `link_header`, `page_number` or `offset` (or `last_record`)"),
        );
    }
}

/// `for_each: {values}`: the values, interpolated.
fn compile_partitions(cx: &mut Ctx, path: &str, r: &RawResource) -> Option<Option<Vec<Interp>>> {
    let Some(RawForEach::Values(parts)) = &r.for_each else {
        return Some(None);
    };
    let vpath = format!("{path}.for_each.values");
    let texts: Vec<&str> = match &parts.values {
        RawValueList::List(list) => list.iter().map(|v| v.0.as_str()).collect(),
        RawValueList::Text(t) => vec![t.as_str()],
    };
    if texts.is_empty() {
        cx.error(&vpath, "`values` is empty, so the resource would make no request");
        return None;
    }
    let mut out = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        out.push(cx.interp(&format!("{vpath}[{i}]"), t)?);
    }
    Some(Some(out))
}

/// `filter`: each entry a path and exactly one test.
fn compile_filter(cx: &mut Ctx, path: &str, r: &RawResource) -> Option<Vec<p::RecordFilter>> {
    if !r.filter.is_empty() && r.table.is_none() {
        cx.error_at_key(
            path,
            "`filter` chooses the records that are loaded, and this resource has no `table`",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, f) in r.filter.iter().enumerate() {
        let fpath = format!("{path}[{i}]");
        let jp = cx.jsonpath(&format!("{fpath}.path"), &f.path);
        let mut tests = Vec::new();
        if let Some(v) = &f.equals {
            tests.push(p::FilterTest::Equals(v.clone()));
        }
        if let Some(v) = &f.not_equals {
            tests.push(p::FilterTest::NotEquals(v.clone()));
        }
        if let Some(v) = &f.one_of {
            tests.push(p::FilterTest::In(v.clone()));
        }
        if let Some(v) = f.exists {
            tests.push(p::FilterTest::Exists(v));
        }
        if let Some(m) = &f.matches {
            match regex::Regex::new(m) {
                Ok(re) => tests.push(p::FilterTest::Matches(re)),
                Err(e) => {
                    cx.error(
                        &format!("{fpath}.matches"),
                        format!(
                            "`{m}` is not a regular expression: {}",
                            e.to_string()
                                .lines()
                                .last()
                                .unwrap_or_default()
                                .trim_start_matches("error: ")
                        ),
                    );
                    ok = false;
                    continue;
                }
            }
        }
        if tests.len() != 1 {
            cx.error(
                &fpath,
                "a filter gives exactly one of `equals`, `not_equals`, `in`, `exists` and `matches`",
            );
            ok = false;
            continue;
        }
        match jp {
            Some(jp) => out.push(p::RecordFilter {
                path: jp,
                test: tests.remove(0),
            }),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// `on_response` rules, each with a status or a `when` (or both).
pub(super) fn compile_rules(cx: &mut Ctx, path: &str, rules: &[RawResponseRule]) -> Vec<p::ResponseRule> {
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let rpath = format!("{path}[{i}]");
        if rule.status.is_empty() && rule.when.is_none() {
            cx.error(
                &rpath,
                "a response rule needs `status` (for example `[403]`), `when` (for example `{path: $.ok, equals: false}`), or both",
            );
            continue;
        }
        if let Some(bad) = rule.status.iter().find(|s| !(100..=599).contains(*s)) {
            cx.error(&format!("{rpath}.status"), format!("{bad} is not an HTTP status"));
            continue;
        }
        if rule.action == ResponseAction::Ignore
            && rule.status.iter().any(|s| (200..300).contains(s))
            && rule.when.is_none()
        {
            cx.error(
                &format!("{rpath}.status"),
                "ignoring every successful response would load nothing; give `when` to say which ones",
            );
            continue;
        }
        let when = match &rule.when {
            None => None,
            Some(w) => match cx.jsonpath(&format!("{rpath}.when.path"), &w.path) {
                Some(jp) => Some(p::StopWhen {
                    path: jp,
                    equals: w.equals.clone(),
                }),
                None => continue,
            },
        };
        if let Some(m) = &rule.message {
            let mut rest = m.as_str();
            while let Some(at) = rest.find("{$") {
                let Some(len) = rest[at..].find('}') else {
                    cx.error(
                        &format!("{rpath}.message"),
                        "`{$` opens a placeholder that does not close",
                    );
                    break;
                };
                cx.jsonpath(&format!("{rpath}.message"), &rest[at + 1..at + len]);
                rest = &rest[at + len + 1..];
            }
        }
        out.push(p::ResponseRule {
            status: rule.status.clone(),
            when,
            action: rule.action,
            message: rule.message.clone(),
        });
    }
    out
}

/// Whether a placeholder `is` picks appears in the resource's path, URL, params or body.
fn uses(r: &RawResource, is: impl Fn(&crate::spec::placeholder::Source) -> bool) -> bool {
    use crate::spec::placeholder::{scan, Scan};
    fn strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::String(s) => out.push(s),
            serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
            serde_json::Value::Object(m) => m.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let mut texts: Vec<&str> = r.params.values().map(|v| v.0.as_str()).collect();
    if let Some(b) = &r.body {
        strings(b, &mut texts);
    }
    let create = r.job.as_ref().map(|j| &j.create);
    if let Some(c) = create {
        texts.extend(c.params.values().map(|v| v.0.as_str()));
        if let Some(b) = &c.body {
            strings(b, &mut texts);
        }
    }
    let strict = r
        .path
        .iter()
        .chain(&r.url)
        .chain(create.iter().flat_map(|c| c.path.iter().chain(&c.url)))
        .map(|t| scan(t, Scan::Strict));
    let text = texts.into_iter().map(|t| scan(t, Scan::Text));
    strict
        .chain(text)
        .flatten()
        .any(|found| found.iter().any(|p| is(&p.source)))
}

fn compile_incremental(cx: &mut Ctx, path: &str, r: &RawResource) -> Option<Option<p::Incremental>> {
    use crate::spec::placeholder::Source;
    let Some(inc) = &r.incremental else {
        return Some(None);
    };
    let ipath = format!("{path}.incremental");
    let format = inc.format.clone().unwrap_or_default();
    let cursor_format = inc.cursor_format.clone().unwrap_or_else(|| format.clone());
    let uses_end = uses(r, |s| *s == Source::End);
    let windowed = inc.step.is_some() || inc.end.is_some() || inc.end_param.is_some() || uses_end;
    let mut ok = true;
    if format.is_time() != cursor_format.is_time() {
        cx.error(
            &format!("{ipath}.cursor_format"),
            "one of `format` and `cursor_format` is `integer` and the other a time; they cannot be compared",
        );
        ok = false;
    }
    if windowed && !format.is_time() {
        cx.error_at_key(
            &ipath,
            "date windows (`step`, `end`, `end_param`, `{incremental.end}`) need a time `format`, not `integer`",
        );
        ok = false;
    }
    if inc.step.is_some() && r.for_each.is_some() {
        cx.error_at_key(
            &format!("{ipath}.step"),
            "`step` cannot be combined with `for_each` yet: put the windows on the parent resource",
        );
        ok = false;
    }
    let cursor = match (&inc.cursor, windowed) {
        (Some(c), _) => {
            if windowed {
                cx.warn(
                    &format!("{ipath}.cursor"),
                    "with date windows the state is the end of the last window read, so `cursor` is not used",
                );
            }
            cx.jsonpath(&format!("{ipath}.cursor"), c).map(Some)
        }
        (None, true) => Some(None),
        (None, false) => {
            cx.error(
                &ipath,
                "`cursor` is required (the JSONPath to each record's cursor, such as `$.updated_at`), unless the range is read as date windows (`step`, `end`)",
            );
            None
        }
    };
    let bound = |cx: &mut Ctx, field: &str, value: &str| -> Option<p::Bound> {
        let t = cx.interp(&format!("{ipath}.{field}"), value)?;
        // A default is checked now; a value from the environment when the pipeline runs.
        let read = t
            .offline()
            .filter(|text| !(field == "end" && text == "now"))
            .map(|text| format.read(&serde_json::Value::String(text)));
        match read {
            Some(Err(e)) => {
                cx.error(&format!("{ipath}.{field}"), e);
                None
            }
            Some(Ok(pos)) if !t.has_vars() => Some(p::Bound::At(pos)),
            _ => Some(p::Bound::Env(t)),
        }
    };
    let initial = bound(cx, "initial", &inc.initial.0);
    let end = match inc.end.as_ref().map(|e| e.0.as_str()) {
        None | Some("now") => Some(None),
        Some(e) => bound(cx, "end", e).map(Some),
    };
    let lag = match (inc.lag, format.is_time()) {
        (None, _) => Some(0),
        (Some(_), false) => {
            cx.error_at_key(
                &format!("{ipath}.lag"),
                "`lag` is a time, so it does not apply to `format: integer`",
            );
            None
        }
        (Some(d), true) => format.lag_units(d.0),
    };
    let granularity = match inc.granularity {
        None => format.granularity(),
        Some(g) => format.lag_units(g.0).unwrap_or(1).max(1),
    };
    let send = match (&inc.param, &inc.body_field) {
        (Some(_), Some(_)) => {
            cx.error_at_key(
                &format!("{ipath}.body_field"),
                "the start is sent one way; give `param` or `body_field`, not both",
            );
            None
        }
        (Some(name), None) => Some(Some(p::CursorTo::Param(name.clone()))),
        (None, Some(field)) => {
            if r.method != Some(HttpMethod::Post) {
                cx.error_at_key(&format!("{ipath}.body_field"), "`body_field` needs `method: POST`");
            }
            Some(Some(p::CursorTo::BodyField(
                field.split('.').map(str::to_string).collect(),
            )))
        }
        (None, None) if uses(r, |s| *s == Source::Start) => Some(None),
        (None, None) => {
            cx.error(
                &ipath,
                "the start must go somewhere: give `param` or `body_field`, or write `{incremental.start}` in `path`, `params` or `body`",
            );
            None
        }
    };
    for (name, what) in [(&inc.param, "param"), (&inc.end_param, "end_param")] {
        if let Some(name) = name.as_ref().filter(|n| r.params.contains_key(*n)) {
            cx.error(
                &format!("{ipath}.{what}"),
                format!("`params.{name}` is set too; `incremental.{what}` sends `{name}`, so leave it out of `params`"),
            );
            ok = false;
        }
    }
    if let Some(t) = &r.table {
        if t.write.unwrap_or_default() == WriteMode::Append {
            cx.warn(
                &ipath,
                format!(
                    "table `{}` uses `write: append`: each run reads the records at its start again, so they are loaded twice; `write: merge` keeps one row per key",
                    t.name
                ),
            );
        }
    }
    let step = inc.step.map(|s| s.0);
    let (cursor, send, initial, end, lag) = (cursor?, send?, initial?, end?, lag?);
    ok.then_some(Some(p::Incremental {
        cursor,
        send,
        send_end: inc.end_param.clone(),
        format,
        cursor_format,
        initial,
        end,
        step,
        granularity,
        lag,
        windowed,
    }))
}
