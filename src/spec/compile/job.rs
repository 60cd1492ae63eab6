//! A resource's body format (`format`, `csv`, `xml`, `compression`) and its export job
//! (`job`: create, poll, download).

use super::target::compile_target;
use super::{check_body_templates, check_placeholders, interp_map, Allowed, Ctx};
use crate::spec::model::*;
use crate::spec::pipeline as p;

/// `format` with its `csv` / `xml` settings, and `compression`.
pub(super) fn compile_format(cx: &mut Ctx, path: &str, r: &RawResource) -> Option<(p::Format, p::Compression)> {
    let kind = r.format.unwrap_or_default();
    if r.csv.is_some() && kind != BodyKind::Csv {
        cx.error_at_key(&format!("{path}.csv"), "`csv` settings need `format: csv`");
    }
    if r.xml.is_some() && kind != BodyKind::Xml {
        cx.error_at_key(&format!("{path}.xml"), "`xml` settings need `format: xml`");
    }
    let format = match kind {
        BodyKind::Json => p::Format::Json,
        BodyKind::Jsonl => p::Format::Jsonl,
        BodyKind::Csv => p::Format::Csv(compile_csv(cx, &format!("{path}.csv"), r.csv.as_ref())?),
        BodyKind::Xml => {
            let Some(xml) = &r.xml else {
                cx.error(
                    path,
                    "`format: xml` needs `xml: {records: <element path>}`, for example `xml: {records: rss/channel/item}`",
                );
                return None;
            };
            let steps: Vec<String> = xml.records.trim_matches('/').split('/').map(str::to_string).collect();
            if steps.iter().any(|s| s.is_empty() || s.contains(char::is_whitespace)) {
                cx.error(
                    &format!("{path}.xml.records"),
                    format!("`{}` is not an element path such as `rss/channel/item`", xml.records),
                );
                return None;
            }
            p::Format::Xml(p::XmlFormat { records: steps })
        }
    };
    Some((format, r.compression.unwrap_or_default()))
}

fn compile_csv(cx: &mut Ctx, path: &str, csv: Option<&RawCsv>) -> Option<p::CsvFormat> {
    let one_byte = |cx: &mut Ctx, field: &str, v: Option<&String>, default: u8| -> Option<u8> {
        let Some(v) = v else { return Some(default) };
        let v = if v == "\\t" { "\t" } else { v.as_str() };
        match v.as_bytes() {
            [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' => Some(*b),
            _ => {
                cx.error(
                    &format!("{path}.{field}"),
                    format!("`{v}` is not one ASCII character (write `\"\\t\"` for a tab)"),
                );
                None
            }
        }
    };
    let delimiter = one_byte(cx, "delimiter", csv.and_then(|c| c.delimiter.as_ref()), b',');
    let quote = one_byte(cx, "quote", csv.and_then(|c| c.quote.as_ref()), b'"');
    let names = match csv.and_then(|c| c.header.as_ref()) {
        None | Some(CsvHeader::FirstRow(true)) => None,
        Some(CsvHeader::FirstRow(false)) => {
            cx.error(
                &format!("{path}.header"),
                "a file without a header row needs its field names: `header: [id, name, …]`",
            );
            return None;
        }
        Some(CsvHeader::Names(names)) => {
            let mut seen = std::collections::HashSet::new();
            if let Some(n) = names.iter().find(|n| n.is_empty() || !seen.insert(n.as_str())) {
                cx.error(
                    &format!("{path}.header"),
                    format!("field name `{n}` is empty or given twice"),
                );
                return None;
            }
            Some(names.clone())
        }
    };
    let latin1 = match csv.and_then(|c| c.encoding.as_deref()).map(str::to_ascii_lowercase) {
        None => false,
        Some(e) if matches!(e.as_str(), "utf-8" | "utf8") => false,
        Some(e) if matches!(e.as_str(), "latin-1" | "latin1" | "iso-8859-1") => true,
        Some(e) => {
            cx.error(
                &format!("{path}.encoding"),
                format!("encoding `{e}` is not one sluice reads: `utf-8` or `latin-1`"),
            );
            return None;
        }
    };
    Some(p::CsvFormat {
        delimiter: delimiter?,
        quote: quote?,
        names,
        latin1,
        null: csv.and_then(|c| c.null.clone()).unwrap_or_else(|| vec![String::new()]),
    })
}

/// `job`, with the placeholders each of its requests may use: `{job.…}` after create.
pub(super) fn compile_job(cx: &mut Ctx, path: &str, r: &RawResource, allowed: Allowed) -> Option<Option<p::Job>> {
    let Some(job) = &r.job else { return Some(None) };
    let jpath = format!("{path}.job");
    for (field, given) in [
        ("path", r.path.is_some()),
        ("url", r.url.is_some()),
        ("body", r.body.is_some()),
        ("method", r.method.is_some()),
    ] {
        if given {
            cx.error_at_key(
                &format!("{path}.{field}"),
                format!(
                    "with `job`, its requests say where they go: `{field}` belongs in `job.create` (or `job.poll`)"
                ),
            );
        }
    }
    if let Some(inc) = &r.incremental {
        for (field, given) in [
            ("param", inc.param.is_some()),
            ("end_param", inc.end_param.is_some()),
            ("body_field", inc.body_field.is_some()),
        ] {
            if given {
                cx.error_at_key(
                    &format!("{path}.incremental.{field}"),
                    "with `job`, the range goes where the job's create request says: write `{incremental.start}` (and `{incremental.end}`) in `job.create.body` or `job.create.params`",
                );
            }
        }
    }
    let create = call(
        cx,
        &format!("{jpath}.create"),
        &r.name,
        Call {
            method: job.create.method.unwrap_or(HttpMethod::Post),
            path: job.create.path.as_ref(),
            url: job.create.url.as_ref(),
            body: job.create.body.as_ref(),
            params: &job.create.params,
        },
        allowed,
    );
    let after = Allowed { job: true, ..allowed };
    let poll = call(
        cx,
        &format!("{jpath}.poll"),
        &r.name,
        Call {
            method: job.poll.method.unwrap_or(HttpMethod::Get),
            path: job.poll.path.as_ref(),
            url: job.poll.url.as_ref(),
            body: job.poll.body.as_ref(),
            params: &job.poll.params,
        },
        after,
    );
    let until = condition(cx, &format!("{jpath}.poll.until"), &job.poll.until);
    let fail_when = match &job.poll.fail_when {
        None => Some(None),
        Some(c) => condition(cx, &format!("{jpath}.poll.fail_when"), c).map(Some),
    };
    let every = job.poll.every.map_or(std::time::Duration::from_secs(5), |d| d.0);
    let timeout = job.poll.timeout.map_or(std::time::Duration::from_secs(1800), |d| d.0);
    if timeout < every {
        cx.error(
            &format!("{jpath}.poll.timeout"),
            "the timeout is shorter than the time between polls (`every`)",
        );
    }
    let dpath = format!("{jpath}.download");
    let download = match (&job.download.url, &job.download.path) {
        (Some(u), None) => cx.jsonpath(&format!("{dpath}.url"), u).map(p::Download::Url),
        (None, Some(t)) => compile_target(cx, &dpath, &r.name, Some(t), None, after).map(p::Download::Target),
        _ => {
            cx.error(
                &dpath,
                "`download` gives exactly one of `url` (a JSONPath to the file's URL in the last poll answer) and `path` (`/jobs/{job.id}/results`)",
            );
            None
        }
    };
    Some(Some(p::Job {
        create: create?,
        poll: poll?,
        every,
        until: until?,
        fail_when: fail_when?,
        message: job.poll.message.clone(),
        timeout,
        download: download?,
    }))
}

/// One job request as written.
struct Call<'a> {
    method: HttpMethod,
    path: Option<&'a String>,
    url: Option<&'a String>,
    body: Option<&'a serde_json::Value>,
    params: &'a std::collections::BTreeMap<String, ParamValue>,
}

fn call(cx: &mut Ctx, path: &str, name: &str, c: Call, allowed: Allowed) -> Option<p::JobCall> {
    let target = compile_target(cx, path, name, c.path, c.url, allowed);
    let params = interp_map(cx, &format!("{path}.params"), c.params);
    for (k, v) in c.params {
        check_placeholders(cx, &format!("{path}.params.{k}"), &v.0, allowed);
    }
    if let Some(body) = c.body {
        if c.method != HttpMethod::Post {
            cx.error_at_key(&format!("{path}.body"), "a request `body` needs `method: POST`");
        }
        check_body_templates(cx, &format!("{path}.body"), body, allowed);
    }
    Some(p::JobCall {
        method: c.method,
        target: target?,
        params: params?,
        body: c.body.cloned(),
    })
}

fn condition(cx: &mut Ctx, path: &str, c: &RawJobCondition) -> Option<p::JobCondition> {
    let values = match (&c.equals, &c.one_of) {
        (Some(v), None) => vec![v.clone()],
        (None, Some(list)) if !list.is_empty() => list.clone(),
        _ => {
            cx.error(
                path,
                "a job condition gives exactly one of `equals` (a value) and `in` (a list of values)",
            );
            return None;
        }
    };
    Some(p::JobCondition {
        path: cx.jsonpath(&format!("{path}.path"), &c.path)?,
        values,
    })
}
