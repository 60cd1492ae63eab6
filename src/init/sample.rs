//! The network side of `init`: fetch the first page, find the records and the
//! pagination (probing query parameters where the page does not say), then sample more
//! pages through sluice's own extractor and paginator, so that what is written is what
//! was seen to work. Bounded by pages, bytes and time.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use url::Url;

use crate::extract::http::{Client, Response};
use crate::extract::paginate::{with_param, Request};
use crate::extract::{ExtractError, RecordSink, Records};
use crate::util::Secrets;

use super::infer::path_step;
use super::render;
use super::sampled::{method_of, method_word};
pub(crate) use super::sampled::{CursorFrom, CursorTo, Paging, Sampled};
use super::InitError;

/// Limits of the sampling, shared by every URL of one `init`.
pub(crate) struct Budget {
    pub pages: u64,
    pub max_bytes: u64,
    pub bytes: u64,
    pub requests: u64,
    pub deadline: Instant,
}

impl Budget {
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
    fn out(&self) -> Option<String> {
        if self.left().is_zero() {
            return Some(OUT_OF_TIME.into());
        }
        (self.bytes >= self.max_bytes).then(|| OUT_OF_BYTES.into())
    }
}

/// The network side of one `init`.
pub(crate) struct Sampler<'a> {
    pub client: &'a Client,
    pub secrets: &'a Secrets,
    pub budget: Budget,
    /// `--auth` given: a 401/403 means the credentials, not their absence.
    pub auth: Option<String>,
    /// `--body`: every request is a POST with this JSON body.
    pub body: Option<Value>,
    /// Pagination seen in the page of the URL being sampled but not confirmed.
    pub unconfirmed: Vec<String>,
}

pub(crate) use crate::extract::signals::norm;
use crate::extract::signals::{
    scalars, url_like, Scalar, CURSOR_KEYS, END_KEYS, MORE_KEYS, NEXT_URL_KEYS, PAGES_KEYS, TOTAL_KEYS,
};

/// Offset and page-size fields of a page's envelope, as the API names them.
const ENVELOPE_OFFSETS: &[(&str, &str)] = &[
    ("startAt", "maxResults"),
    ("start_at", "max_results"),
    ("skip", "limit"),
    ("skip", "take"),
    ("offset", "limit"),
    ("start", "limit"),
    ("start", "count"),
    ("from", "size"),
];
const CURSOR_HEADERS: &[&str] = &[
    "x-next-cursor",
    "x-next-page-token",
    "next-cursor",
    "x-cursor",
    "x-continuation",
];

/// The records of a page: the largest array of objects in it (or the page itself), and why.
pub(crate) fn find_records(body: &Value) -> Result<(String, String), String> {
    fn arrays(v: &Value, path: &str, depth: usize, out: &mut Vec<(String, usize, usize)>) {
        if let Value::Object(map) = v {
            for (k, x) in map {
                let p = format!("{path}{}", path_step(k));
                match x {
                    Value::Array(items) if items.iter().all(|i| i.is_object()) => out.push((p, items.len(), depth)),
                    Value::Object(_) if depth < 3 => arrays(x, &p, depth + 1, out),
                    _ => {}
                }
            }
        }
    }
    match body {
        Value::Array(items) if items.iter().all(|i| i.is_object()) => Ok((
            "$[*]".into(),
            format!("the response is an array of {} objects", items.len()),
        )),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) && !items.is_empty() => Err(format!(
            "the response is an array of {} scalars (such as {}), not records: a list like this feeds a child resource that requests each one (`for_each: <this resource>` with `path: …/{{parent}}`, see \"scalar parents\" in docs/spec.md)",
            items.len(),
            crate::util::clip(&items[0].to_string(), 40)
        )),
        Value::Array(items) => Err(format!(
            "the response is an array of {} values that are not all objects",
            items.len()
        )),
        Value::Object(map) => {
            let mut found = Vec::new();
            arrays(body, "$", 0, &mut found);
            // The largest; among equals, the shallowest.
            found.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
            let Some((path, len, _)) = found.first().cloned() else {
                if map.get("ok") == Some(&Value::Bool(false)) {
                    return Err(format!(
                        "the API answered `ok: false` (it says errors with HTTP 200), error {}",
                        map.get("error").map_or("(none)".to_string(), |e| e.to_string())
                    ));
                }
                let keys: Vec<&str> = map.keys().map(String::as_str).take(12).collect();
                return Err(format!(
                    "the response is an object with no array of objects in it (keys: {})",
                    keys.join(", ")
                ));
            };
            let others: Vec<&str> = map
                .keys()
                .map(String::as_str)
                .filter(|k| !path.starts_with(&format!("${}", path_step(k))))
                .take(8)
                .collect();
            let also = match others.is_empty() {
                true => String::new(),
                false => format!("; the page also has {}", others.join(", ")),
            };
            let why = match found.len() {
                1 => format!("`{path}` is the page's array of objects ({len} items){also}"),
                n => format!("`{path}` is the largest of the page's {n} arrays of objects ({len} items){also}"),
            };
            Ok((format!("{path}[*]"), why))
        }
        other => Err(format!(
            "the response is {}, not an object or an array",
            crate::util::describe(other)
        )),
    }
}

/// Why sampling stopped early.
const OUT_OF_TIME: &str = "the time limit (--max-time) ran out";
const OUT_OF_BYTES: &str = "the byte limit (--max-bytes) was reached";

/// The records a records path selects (`$[*]` or `$.a.b[*]`), without the engine.
fn select<'v>(body: &'v Value, records_path: &str) -> Vec<&'v Value> {
    let path = crate::spec::jsonpath::JsonPath::parse(records_path).expect("init writes valid paths");
    path.query(body)
}

/// Whether a probed page moved on: it has records, none of them on the first page.
fn new_records(page: &[&Value], first: &HashSet<String>) -> bool {
    !page.is_empty() && page.iter().all(|r| !first.contains(&r.to_string()))
}

impl Sampler<'_> {
    /// Fetch one URL as it is, within the budget, and read it as JSON.
    async fn get(
        &mut self,
        url: &Url,
        body: Option<&Value>,
        resource: &str,
        page: u64,
    ) -> Result<(Response, Value), InitError> {
        let resp = self.get_raw(url, body, resource, page).await?;
        let parsed = self.parsed(url, body, &resp)?;
        Ok((resp, parsed))
    }

    /// Fetch one URL as it is, within the budget.
    async fn get_raw(
        &mut self,
        url: &Url,
        body: Option<&Value>,
        resource: &str,
        page: u64,
    ) -> Result<Response, InitError> {
        if let Some(why) = self.budget.out() {
            return Err(InitError::Budget(why));
        }
        let req = Request {
            url: url.clone(),
            body: body.cloned(),
            headers: Vec::new(),
        };
        self.budget.requests += 1;
        let fetched = tokio::time::timeout(
            self.budget.left(),
            self.client.fetch(method_of(body), &req, resource, page),
        )
        .await
        .map_err(|_| InitError::Budget(OUT_OF_TIME.into()))?;
        let resp = fetched.map_err(|e| self.refused(e))?;
        self.budget.bytes += resp.body.len() as u64;
        Ok(resp)
    }

    /// A response's body as JSON, or what it is instead.
    fn parsed(&self, url: &Url, body: Option<&Value>, resp: &Response) -> Result<Value, InitError> {
        let shown = self.secrets.mask(&crate::util::shown_url(url.as_str()));
        let body: Value = serde_json::from_slice(&resp.body).map_err(|e| {
            InitError::Sample(format!(
                "{} {shown}: the response is not JSON ({e}); it starts with: {}",
                method_word(body),
                crate::util::head(&resp.body)
            ))
        })?;
        Ok(body)
    }

    /// A probe: the page, or `None` when the API refuses it (a parameter it does not
    /// know may well be a 400); only a spent budget is an error.
    async fn try_get(&mut self, url: &Url, body: Option<&Value>, name: &str) -> Result<Option<Value>, InitError> {
        match self.get(url, body, name, 2).await {
            Ok((_, body)) => Ok(Some(body)),
            Err(InitError::Budget(why)) => Err(InitError::Budget(why)),
            Err(e) => {
                tracing::debug!("{name}: probe {} failed: {e}", crate::util::shown_url(url.as_str()));
                Ok(None)
            }
        }
    }

    /// A failed request; a 401 or 403 says which option is missing.
    fn refused(&self, e: ExtractError) -> InitError {
        let text = self.secrets.mask(&crate::util::error_chain(&e));
        match e {
            ExtractError::Fetch {
                status: Some(s @ (401 | 403)),
                ..
            } => InitError::Refused {
                status: s,
                hint: match &self.auth {
                    None => "the API wants credentials: run `sluice init` again with `--auth bearer`, `--auth api_key` or `--auth basic`, the secret in the environment variable it names".into(),
                    Some(var) => format!("the API refused the credentials read from {var}: check the value, or the kind given with --auth"),
                },
                detail: text,
            },
            _ => InitError::Sample(text),
        }
    }

    /// Sample one URL: records, pagination, and records from up to `budget.pages` pages.
    pub(crate) async fn sample(&mut self, url: &Url, base_url: &str, name: &str) -> Result<Sampled, InitError> {
        let shown = format!(
            "{} {}",
            method_word(self.body.as_ref()),
            crate::util::shown_url(url.as_str())
        );
        self.unconfirmed.clear();
        let sent = self.body.clone();
        let resp = self.get_raw(url, sent.as_ref(), name, 1).await?;
        let body = match self.parsed(url, sent.as_ref(), &resp) {
            Ok(body) => body,
            Err(not_json) => {
                let content_type = resp.headers.get("content-type").and_then(|v| v.to_str().ok());
                let file = super::files::detect(&resp.body, content_type).ok_or(not_json)?;
                return Ok(Sampled::of_file(url, file, self.body.clone()));
            }
        };
        let (records_path, records_why) = find_records(&body)
            .map_err(|why| InitError::Sample(format!("{shown}: cannot tell where the records are: {why}")))?;
        let first: Vec<Value> = select(&body, &records_path).into_iter().cloned().collect();
        let ok_envelope = body.get("ok") == Some(&Value::Bool(true));
        tracing::info!(
            "{name}: page 1: {} records in {} (records {records_path})",
            first.len(),
            human_bytes(resp.body.len() as u64)
        );
        if first.is_empty() {
            return Err(InitError::Sample(format!(
                "{shown}: {records_why}, but it is empty: init infers the columns from records; give a URL whose first page has some"
            )));
        }
        // What the first page says of the whole: a total above it, a flag or a next
        // link or token say there is more than this page.
        let signs = crate::extract::signals::read(&body, &records_path);
        let total = signs
            .total
            .as_ref()
            .filter(|(_, t)| *t >= first.len() as u64)
            .map(|(p, _)| p.clone());
        let has_more = signs.more.clone();
        let mut more_seen: Vec<String> = Vec::new();
        if let Some((p, t)) = signs.total.as_ref().filter(|(_, t)| *t > first.len() as u64) {
            more_seen.push(format!("`{p}` is {t}, above the {} records of page 1", first.len()));
        }
        if let Some((p, v)) = &signs.more {
            more_seen.push(format!("`{p}` is {v}"));
        }
        if let Some(p) = &signs.next {
            more_seen.push(format!("`{p}` names a next page"));
        }
        // Out of budget while looking: what was found so far, else one page.
        let page = FirstPage::new(url, &resp, &body, &records_path, &first, name);
        let (candidates, cut) = match self.candidates(&page).await {
            Ok(c) => (c, None),
            Err(InitError::Budget(why)) => (Vec::new(), Some(why)),
            Err(e) => return Err(e),
        };
        let params: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let tried = !candidates.is_empty();
        for (paging, why) in candidates {
            let own: Vec<(String, String)> = params
                .iter()
                .filter(|(k, _)| !paginator_param(&paging, k))
                .cloned()
                .collect();
            match self.follow(url, base_url, name, &records_path, &paging, &own).await {
                Ok(Followed::Pages {
                    records,
                    pages,
                    complete,
                    stopped,
                }) => {
                    let reported = signs.total.as_ref().map_or(0, |(_, t)| *t);
                    let complete = complete && records.len() as u64 >= reported;
                    return Ok(Sampled {
                        total,
                        has_more,
                        url: url.clone(),
                        records_path,
                        records_why,
                        paging,
                        paging_why: why,
                        params: own,
                        body: self.body.clone(),
                        records,
                        pages,
                        complete,
                        stopped,
                        ok_envelope,
                        file: None,
                    });
                }
                Ok(Followed::Repeats) => {
                    tracing::info!(
                        "{name}: {} repeats the records of page 1; not that",
                        render::paging_flow(&paging)
                    );
                }
                Err(InitError::Budget(why)) => return Err(InitError::Budget(why)),
                Err(e) => tracing::info!("{name}: {} failed ({e}); not that", render::paging_flow(&paging)),
            }
        }
        // One page, unless a style that was seen failed to follow, or the page says
        // there is more.
        let complete = !tried && cut.is_none() && more_seen.is_empty();
        let mut unconfirmed = std::mem::take(&mut self.unconfirmed);
        if !more_seen.is_empty() {
            let text = format!(
                "the page says there is more ({}), but no pagination style init tried followed it; the run fails until `paginate` is set, instead of loading page 1 alone",
                more_seen.join(", ")
            );
            tracing::warn!("{name}: {text}");
            unconfirmed.push(text);
        }
        let paging_why = match &cut {
            Some(why) => format!("none found before sampling stopped ({why}); set it by hand if the API pages"),
            None if !unconfirmed.is_empty() => format!("NOT CONFIRMED: {}; set it by hand", unconfirmed.join("; ")),
            None => "one page: no next link, cursor or total in it, and neither `page` nor `offset`/`limit` parameters moved to other records".into(),
        };
        Ok(Sampled {
            url: url.clone(),
            records_path,
            records_why,
            paging: Paging::None,
            paging_why,
            params,
            body: self.body.clone(),
            records: first,
            pages: 1,
            complete,
            stopped: cut,
            total,
            has_more,
            ok_envelope,
            file: None,
        })
    }

    /// The pagination styles the first page suggests, best first, with what was seen.
    /// Query parameters the page does not name are probed (a request each) and only
    /// those seen to move to new records are proposed. One detector per kind: a `Link`
    /// header, a next-URL field, a cursor in the body, the last record's id, a cursor
    /// header; then, when none of those is seen, page and offset parameters.
    async fn candidates(&mut self, page: &FirstPage<'_>) -> Result<Vec<(Paging, String)>, InitError> {
        let mut out = Vec::new();
        out.extend(page.link_header());
        out.extend(page.next_url_fields());
        out.extend(self.body_cursors(page).await?);
        out.extend(self.last_record_cursor(page).await?);
        out.extend(self.header_cursors(page).await?);
        // Page and offset parameters are tried on GET requests only.
        if !out.is_empty() || self.body.is_some() {
            return Ok(out);
        }
        // Nothing in the page names the next one: try page and offset parameters.
        Ok(self.page_or_offset(page).await?.into_iter().collect())
    }

    /// A cursor field of the body (`next_cursor`, an Airtable `offset` token), sent back
    /// as the parameter that moves to new records.
    async fn body_cursors(&mut self, page: &FirstPage<'_>) -> Result<Vec<(Paging, String)>, InitError> {
        let mut out = Vec::new();
        let cursor_fields: Vec<&Scalar> = page
            .found
            .iter()
            .filter(|s| {
                let k = norm(&s.key);
                let text = s.value.as_str().is_some_and(|t| !t.is_empty());
                // Airtable's `offset` is a token (`itr…/rec…`), not a number.
                let offset_token = k == "offset" && text && crate::extract::signals::count_of(s.value).is_none();
                (CURSOR_KEYS.contains(&k.as_str()) || offset_token)
                    && !url_like(s.value)
                    && (text || s.value.is_number())
            })
            .collect();
        for s in cursor_fields {
            let token = s.value.clone();
            let mut tries = vec![s.key.clone()];
            if let Some(rest) = s.key.strip_prefix("next_").or_else(|| s.key.strip_prefix("next")) {
                if !rest.is_empty() {
                    tries.insert(0, lower_first(rest));
                }
            }
            if norm(&s.key) == "endcursor" {
                tries.insert(0, "after".into());
            }
            tries.extend(
                [
                    "cursor",
                    "start_cursor",
                    "after",
                    "page_token",
                    "pageToken",
                    "token",
                    "continuation",
                    "page",
                ]
                .map(String::from),
            );
            let found_to = self
                .probe_send(page.url, &tries, &token, &page.before, page.name)
                .await?;
            let Some(to) = found_to else {
                self.unconfirmed(page.name, format!("`{}` looks like a cursor", s.path), &tries);
                continue;
            };
            let stop = page.more.as_ref().map(|(p, _)| (p.clone(), false));
            out.push((
                Paging::Cursor {
                    from: CursorFrom::Body(s.path.clone()),
                    to: to.clone(),
                    stop: stop.clone(),
                },
                format!(
                    "`{}` holds a cursor, and sending it as {to} gave the next records{}",
                    s.path,
                    stop_text(&stop)
                ),
            ));
        }
        Ok(out)
    }

    /// `has_more` with ids: the last record's id as the start of the next page.
    async fn last_record_cursor(&mut self, page: &FirstPage<'_>) -> Result<Option<(Paging, String)>, InitError> {
        let (Some((more_path, true)), Some(last)) = (&page.more, page.first.last()) else {
            return Ok(None);
        };
        let Some(id) = last.get("id").filter(|v| v.is_string() || v.is_number()) else {
            return Ok(None);
        };
        let tries = ["starting_after", "after", "after_id", "since_id", "cursor", "from"].map(String::from);
        let Some(to) = self.probe_send(page.url, &tries, id, &page.before, page.name).await? else {
            return Ok(None);
        };
        let stop = Some((more_path.clone(), false));
        Ok(Some((
            Paging::Cursor {
                from: CursorFrom::LastRecord("$.id".into()),
                to: to.clone(),
                stop: stop.clone(),
            },
            format!(
                "`{more_path}` is true and sending the last record's `id` as {to} gave the next records{}",
                stop_text(&stop)
            ),
        )))
    }

    /// A cursor in a response header, sent back as a parameter.
    async fn header_cursors(&mut self, page: &FirstPage<'_>) -> Result<Vec<(Paging, String)>, InitError> {
        let mut out = Vec::new();
        for h in CURSOR_HEADERS {
            let Some(token) = page
                .resp
                .headers
                .get(*h)
                .and_then(|v| v.to_str().ok())
                .filter(|t| !t.is_empty())
            else {
                continue;
            };
            let tries = ["cursor", "next_cursor", "page_token", "after", "token"].map(String::from);
            let token = Value::String(token.to_string());
            if let Some(to) = self
                .probe_send(page.url, &tries, &token, &page.before, page.name)
                .await?
            {
                out.push((
                    Paging::Cursor {
                        from: CursorFrom::Header(h.to_string()),
                        to: to.clone(),
                        stop: None,
                    },
                    format!("the `{h}` header holds a cursor, and sending it as {to} gave the next records"),
                ));
            } else {
                self.unconfirmed(page.name, format!("the `{h}` header looks like a cursor"), &tries);
            }
        }
        Ok(out)
    }

    /// Page-number or offset parameters, probed in the order the URL and the page suggest.
    async fn page_or_offset(&mut self, page: &FirstPage<'_>) -> Result<Option<(Paging, String)>, InitError> {
        let query: Vec<(String, String)> = page
            .url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let given = |names: &[&str]| query.iter().find(|(k, _)| names.contains(&k.as_str())).cloned();
        let asked = Asked {
            page: given(&["page", "p", "page_number", "pageNumber"]),
            offset: given(&["offset", "skip", "start"]),
            limit: given(&["limit", "per_page", "page_size", "pageSize", "size", "take"]),
        };
        // The page's own offset fields (Jira's `startAt` + `maxResults`), with the page size
        // the API chose.
        let envelope: Vec<(String, String, u64)> = ENVELOPE_OFFSETS
            .iter()
            .filter_map(|(o, l)| {
                let count = |k: &str| page.body.get(k).and_then(crate::extract::signals::count_of);
                count(o)?;
                Some((o.to_string(), l.to_string(), count(l)?))
            })
            .collect();
        let by_offset_first =
            !envelope.is_empty() || asked.offset.is_some() || (asked.limit.is_some() && asked.page.is_none());
        let mut tries: Vec<bool> = vec![false, true];
        if by_offset_first {
            tries.reverse();
        }
        for offset in tries {
            let found = match offset {
                false => self.page_number(page, &asked).await?,
                true => self.offset(page, &asked, &envelope).await?,
            };
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// `page=2` (or the URL's own page parameter, one on) gives new records.
    async fn page_number(
        &mut self,
        page: &FirstPage<'_>,
        asked: &Asked,
    ) -> Result<Option<(Paging, String)>, InitError> {
        let (param, start) = match &asked.page {
            Some((k, v)) => (k.clone(), v.parse().unwrap_or(1)),
            None => ("page".to_string(), 1),
        };
        let probe = with_param(page.url, &param, &(start + 1).to_string());
        let Some(body2) = self.try_get(&probe, None, page.name).await? else {
            return Ok(None);
        };
        if !new_records(&select(&body2, page.records_path), &page.before) {
            return Ok(None);
        }
        let total_pages = page.count(PAGES_KEYS);
        let with_total = match &total_pages {
            Some(p) => format!("; `{p}` is the page count"),
            None => String::new(),
        };
        Ok(Some((
            Paging::PageNumber {
                param: param.clone(),
                start,
                total_pages,
            },
            format!(
                "the page names no next page, but `{param}={}` gave the next records{with_total}; it stops on an empty page",
                start + 1
            ),
        )))
    }

    /// `offset=1&limit=2` gives records 2 and 3 of the first page.
    async fn offset(
        &mut self,
        page: &FirstPage<'_>,
        asked: &Asked,
        envelope: &[(String, String, u64)],
    ) -> Result<Option<(Paging, String)>, InitError> {
        let first = page.first;
        if first.len() < 3 {
            return Ok(None);
        }
        let mut pairs: Vec<(String, String)> = envelope.iter().map(|(o, l, _)| (o.clone(), l.clone())).collect();
        pairs.extend(match (&asked.offset, &asked.limit) {
            (Some((o, _)), Some((l, _))) => vec![(o.clone(), l.clone())],
            (Some((o, _)), None) => vec![(o.clone(), "limit".into())],
            (None, Some((l, _))) => vec![("offset".into(), l.clone())],
            (None, None) => vec![("offset".into(), "limit".into()), ("skip".into(), "limit".into())],
        });
        for (o, l) in pairs {
            let probe = with_param(&with_param(page.url, &o, "1"), &l, "2");
            let Some(body2) = self.try_get(&probe, None, page.name).await? else {
                continue;
            };
            let second: Vec<String> = select(&body2, page.records_path)
                .iter()
                .map(|r| r.to_string())
                .collect();
            let expected: Vec<String> = first[1..3].iter().map(|r| r.to_string()).collect();
            if second != expected {
                continue;
            }
            let in_page = envelope.iter().find(|(eo, el, _)| *eo == o && *el == l).map(|e| e.2);
            let limit = asked
                .limit
                .as_ref()
                .and_then(|(_, v)| v.parse().ok())
                .or(in_page)
                .unwrap_or(first.len() as u64);
            let total = page.count(TOTAL_KEYS);
            let with_total = match &total {
                Some(p) => format!("; `{p}` is the record count"),
                None => String::new(),
            };
            let limit_why = match (&asked.limit, in_page) {
                (Some((k, v)), _) => format!("`{k}={v}` as the URL gave it"),
                (None, Some(n)) => format!("`{l}: {n}` as the page says"),
                (None, None) => format!("{limit} a page, as many as the first page held without one"),
            };
            return Ok(Some((
                Paging::Offset {
                    limit_param: l.clone(),
                    offset_param: o.clone(),
                    limit,
                    total,
                },
                format!(
                    "the page names no next page, but `{o}=1&{l}=2` gave records 2 and 3 of the first page: offset paging, {limit_why}{with_total}; it advances by the records each page holds"
                ),
            )));
        }
        Ok(None)
    }

    /// Pagination seen but not confirmed: a warning now, a comment in the spec.
    fn unconfirmed(&mut self, name: &str, seen: String, tries: &[String]) {
        let sends: Vec<String> = self.sends(tries).iter().map(|s| s.to_string()).collect();
        let text = format!(
            "{seen}, but sending it as none of {} gave the next records",
            sends.join(", ")
        );
        tracing::warn!("{name}: {text}; set `paginate` by hand");
        self.unconfirmed.push(text);
    }

    /// Where each of `tries` would send a token: a query parameter of a GET; in a POST
    /// body, a field the body already has by that name first, then under `variables`
    /// (GraphQL), then at the top.
    fn sends(&self, tries: &[String]) -> Vec<CursorTo> {
        let Some(body) = &self.body else {
            return tries.iter().map(|t| CursorTo::Param(t.clone())).collect();
        };
        let mut existing = Vec::new();
        if let Some(map) = body.as_object() {
            for (k, v) in map {
                match v.as_object() {
                    Some(inner) => existing.extend(inner.keys().map(|i| format!("{k}.{i}"))),
                    None => existing.push(k.clone()),
                }
            }
        }
        let graphql = body.get("query").is_some_and(|q| q.is_string());
        let mut out = Vec::new();
        for t in tries {
            let same = |f: &&String| f.rsplit('.').next().is_some_and(|l| norm(l) == norm(t));
            out.extend(existing.iter().filter(same).map(|f| CursorTo::Body(f.clone())));
            if graphql {
                out.push(CursorTo::Body(format!("variables.{t}")));
            }
            out.push(CursorTo::Body(t.clone()));
        }
        out
    }

    /// The first of `tries` that, sent `token`, gives records none of which were on the
    /// first page.
    async fn probe_send(
        &mut self,
        url: &Url,
        tries: &[String],
        token: &Value,
        before: &HashSet<String>,
        name: &str,
    ) -> Result<Option<CursorTo>, InitError> {
        let mut done = HashSet::new();
        for to in self.sends(tries) {
            if !done.insert(to.clone()) {
                continue;
            }
            let (probe, body) = match &to {
                CursorTo::Param(p) => {
                    let text = token.as_str().map(String::from).unwrap_or_else(|| token.to_string());
                    (with_param(url, p, &text), self.body.clone())
                }
                CursorTo::Body(field) => {
                    let mut body = self.body.clone().unwrap_or(Value::Null);
                    let path: Vec<String> = field.split('.').map(String::from).collect();
                    crate::extract::paginate::set_field(&mut body, &path, token.clone());
                    (url.clone(), Some(body))
                }
            };
            let Some(page) = self.try_get(&probe, body.as_ref(), name).await? else {
                continue;
            };
            let Ok((path, _)) = find_records(&page) else { continue };
            if new_records(&select(&page, &path), before) {
                return Ok(Some(to));
            }
        }
        Ok(None)
    }

    /// Follow `paging` with sluice's own extractor from the first page, collecting
    /// records until the pages, bytes or time run out.
    async fn follow(
        &mut self,
        url: &Url,
        base_url: &str,
        name: &str,
        records_path: &str,
        paging: &Paging,
        params: &[(String, String)],
    ) -> Result<Followed, InitError> {
        let resource = render::probe_resource(name, url.path(), self.body.as_ref(), records_path, paging);
        // The client carries the auth; this spec only shapes the requests.
        let p = render::probe_pipeline(base_url, "none", "", &resource)?;
        let r = &p.resources()[0];
        let start = {
            let mut u = url.clone();
            u.set_query(None);
            self.client.prepare(&u, params)
        };
        let first = Request {
            url: crate::extract::paginate::first(&r.paginator, &start),
            body: self.body.clone(),
            headers: Vec::new(),
        };
        let mut sink = Collect {
            name: name.to_string(),
            records: Vec::new(),
            seen: HashSet::new(),
            pages: 0,
            max_pages: self.budget.pages,
            budget_bytes: self.budget.max_bytes.saturating_sub(self.budget.bytes),
            bytes: 0,
            deadline: self.budget.deadline,
            repeats: false,
            stopped: None,
        };
        let run = crate::extract::extract_resource(self.client, &p, r, first, None, &mut sink);
        let result = tokio::time::timeout(self.budget.left(), run).await;
        self.budget.bytes += sink.bytes;
        self.budget.requests += sink.pages;
        if sink.repeats {
            return Ok(Followed::Repeats);
        }
        let complete = match result {
            Err(_) => {
                sink.stopped = Some(OUT_OF_TIME.into());
                false
            }
            Ok(Err(e)) => return Err(self.refused(e)),
            Ok(Ok(_)) => sink.stopped.is_none(),
        };
        if sink.records.is_empty() {
            return Err(InitError::Sample("no records".into()));
        }
        Ok(Followed::Pages {
            records: sink.records,
            pages: sink.pages,
            complete,
            stopped: sink.stopped,
        })
    }
}

/// The first page of a URL, as the pagination detectors read it.
struct FirstPage<'a> {
    url: &'a Url,
    resp: &'a Response,
    body: &'a Value,
    records_path: &'a str,
    first: &'a [Value],
    name: &'a str,
    /// The page's scalar fields outside the records.
    found: Vec<Scalar<'a>>,
    /// The first page's records, as text: a probe must find others.
    before: HashSet<String>,
    /// A "more" flag and an "end" flag, with their values on this page.
    more: Option<(String, bool)>,
    /// A stop condition: `end_of_stream: true`, `has_more: false`.
    stop: Option<(String, bool)>,
}

impl<'a> FirstPage<'a> {
    fn new(
        url: &'a Url,
        resp: &'a Response,
        body: &'a Value,
        records_path: &'a str,
        first: &'a [Value],
        name: &'a str,
    ) -> Self {
        let skip = records_path.trim_end_matches("[*]");
        let mut found = Vec::new();
        scalars(body, "$", "", skip, 0, &mut found);
        let bool_field = |keys: &[&str]| {
            found
                .iter()
                .find(|s| s.value.is_boolean() && keys.contains(&norm(&s.key).as_str()))
                .map(|s| (s.path.clone(), s.value.as_bool() == Some(true)))
        };
        let more = bool_field(MORE_KEYS);
        let end = bool_field(END_KEYS);
        let stop = end
            .as_ref()
            .map(|(p, _)| (p.clone(), true))
            .or_else(|| more.as_ref().map(|(p, _)| (p.clone(), false)));
        FirstPage {
            url,
            resp,
            body,
            records_path,
            first,
            name,
            before: first.iter().map(|r| r.to_string()).collect(),
            found,
            more,
            stop,
        }
    }

    /// A `Link: <…>; rel="next"` header.
    fn link_header(&self) -> Option<(Paging, String)> {
        let has_link = self
            .resp
            .headers
            .get_all(reqwest::header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("rel=\"next\"") || v.contains("rel=next"));
        has_link.then(|| {
            (
                Paging::LinkHeader,
                "the response has a `Link: <…>; rel=\"next\"` header".to_string(),
            )
        })
    }

    /// A next-URL field; a null one (a single page now) counts too, after the others.
    fn next_url_fields(&self) -> Vec<(Paging, String)> {
        let mut next_fields: Vec<&Scalar> = self
            .found
            .iter()
            .filter(|s| {
                let k = norm(&s.key);
                (NEXT_URL_KEYS.contains(&k.as_str()) || (k == "href" && norm(&s.parent) == "next"))
                    && (url_like(s.value) || s.value.is_null())
            })
            .collect();
        next_fields.sort_by_key(|s| s.value.is_null());
        next_fields
            .into_iter()
            .map(|s| {
                let seen = match s.value.is_null() {
                    true => format!("`{}` is null on the first page (its last, for now)", s.path),
                    false => format!("`{}` holds the next page's URL", s.path),
                };
                (
                    Paging::NextUrl {
                        next: s.path.clone(),
                        stop: self.stop.clone(),
                    },
                    format!("{seen}{}", stop_text(&self.stop)),
                )
            })
            .collect()
    }

    /// The path of a count field among `keys` (a total, a page count).
    fn count(&self, keys: &[&str]) -> Option<String> {
        self.found
            .iter()
            .find(|s| {
                keys.contains(&norm(&s.key).as_str())
                    && (s.value.as_u64().is_some() || s.value.as_str().is_some_and(|t| t.parse::<u64>().is_ok()))
            })
            .map(|s| s.path.clone())
    }
}

/// The page, offset and limit parameters the URL already has.
struct Asked {
    page: Option<(String, String)>,
    offset: Option<(String, String)>,
    limit: Option<(String, String)>,
}

/// How a stop condition reads after a candidate.
fn stop_text(stop: &Option<(String, bool)>) -> String {
    match stop {
        Some((p, v)) => format!("; it stops after a page where `{p}` is {v}"),
        None => String::new(),
    }
}

enum Followed {
    Pages {
        records: Vec<Value>,
        pages: u64,
        complete: bool,
        stopped: Option<String>,
    },
    /// A later page held only records already seen: the parameter does nothing.
    Repeats,
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// Whether a query parameter of the URL is the paginator's to set.
fn paginator_param(paging: &Paging, key: &str) -> bool {
    match paging {
        Paging::PageNumber { param, .. }
        | Paging::Cursor {
            to: CursorTo::Param(param),
            ..
        } => key == param,
        Paging::Offset {
            limit_param,
            offset_param,
            ..
        } => key == limit_param || key == offset_param,
        _ => false,
    }
}

pub(crate) fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} bytes"),
    }
}

/// Collects the sampled records, page by page, within the limits.
struct Collect {
    name: String,
    records: Vec<Value>,
    seen: HashSet<String>,
    pages: u64,
    max_pages: u64,
    budget_bytes: u64,
    bytes: u64,
    deadline: Instant,
    repeats: bool,
    stopped: Option<String>,
}

impl RecordSink for Collect {
    async fn page(&mut self, records: &Records<'_>) -> Result<bool, ExtractError> {
        let values: Vec<Value> = match records {
            Records::Values(v) => v.clone(),
            Records::Raw(raw) => raw.iter().filter_map(|r| serde_json::from_str(r.get()).ok()).collect(),
        };
        self.pages += 1;
        // The page after the last one sampled (fetched ahead anyway) only says there is more.
        if self.pages > self.max_pages {
            self.pages -= 1;
            self.stopped = Some(format!("the page limit (--pages {}) was reached", self.max_pages));
            return Ok(false);
        }
        let texts: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let size: u64 = texts.iter().map(|t| t.len() as u64).sum();
        if !values.is_empty() && texts.iter().all(|t| self.seen.contains(t)) {
            self.repeats = true;
            return Ok(false);
        }
        self.bytes += size;
        self.seen.extend(texts);
        tracing::info!(
            "{}: page {}: {} records ({})",
            self.name,
            self.pages,
            values.len(),
            human_bytes(size)
        );
        self.records.extend(values);
        if self.bytes >= self.budget_bytes {
            self.stopped = Some(OUT_OF_BYTES.into());
            return Ok(false);
        }
        if Instant::now() >= self.deadline {
            self.stopped = Some(OUT_OF_TIME.into());
            return Ok(false);
        }
        Ok(true)
    }
}
