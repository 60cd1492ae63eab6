//! Paginators: each a pure function from one fetched page to the next request. The loop
//! that drives them (and guards against endless pagination) lives in `extract`.

use reqwest::header::{HeaderMap, LINK};
use serde_json::Value;
use url::Url;

use crate::spec::pipeline::{CursorFrom, CursorTo, Paginator};

/// A request of the page loop: a URL, and the JSON body of a POST resource.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    pub url: Url,
    pub body: Option<Value>,
    /// The resource's own headers, placeholders filled (sent to the origin only).
    pub headers: Vec<(String, String)>,
}

/// What a paginator may look at.
pub(crate) struct Page<'a> {
    pub url: &'a Url,
    /// The JSON body the page was requested with.
    pub sent_body: Option<&'a Value>,
    /// The headers it was requested with.
    pub sent_headers: &'a [(String, String)],
    pub headers: &'a HeaderMap,
    pub body: &'a Value,
    pub records: usize,
    /// The page's last record, parsed, for paginators that read it (`last_record`).
    pub last_record: Option<&'a Value>,
    /// 0-based index of this page in the resource.
    pub index: u64,
    /// Records of the resource read so far, this page's included.
    pub read: u64,
    /// The most records any earlier page of the resource held.
    pub fullest: u64,
}

/// Set (or replace) one query parameter.
pub(crate) fn with_param(url: &Url, name: &str, value: &str) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut out = url.clone();
    {
        let mut q = out.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        q.append_pair(name, value);
    }
    out
}

/// The first request of a resource.
pub(crate) fn first(p: &Paginator, base: &Url) -> Url {
    match p {
        Paginator::PageNumber { param, start, .. } => with_param(base, param, &start.to_string()),
        Paginator::Offset {
            limit_param,
            offset_param,
            limit,
            ..
        } => with_param(&with_param(base, limit_param, &limit.to_string()), offset_param, "0"),
        _ => base.clone(),
    }
}

/// A JSON value as a count (numbers, or numbers sent as strings).
pub(crate) fn as_count(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The next request after `page`, `None` when the resource is complete, or why the page
/// cannot be followed (a next link that is no URL). The body is sent again as it was,
/// except where a cursor goes into it.
pub(crate) fn next(p: &Paginator, page: &Page) -> Result<Option<Request>, String> {
    if let Paginator::Cursor {
        to: CursorTo::BodyField(field),
        from,
    } = p
    {
        let Some(token) = cursor_token(from, page) else {
            return Ok(None);
        };
        let mut body = page.sent_body.cloned().unwrap_or(Value::Object(Default::default()));
        set_field(&mut body, field, token);
        return Ok(Some(Request {
            url: page.url.clone(),
            body: Some(body),
            headers: page.sent_headers.to_vec(),
        }));
    }
    Ok(next_url(p, page)?.map(|url| Request {
        url,
        body: page.sent_body.cloned(),
        headers: page.sent_headers.to_vec(),
    }))
}

/// Set the field at a dotted path, making the objects on the way.
pub(crate) fn set_field(body: &mut Value, path: &[String], value: Value) {
    let mut at = body;
    for (i, key) in path.iter().enumerate() {
        if !at.is_object() {
            *at = Value::Object(Default::default());
        }
        let map = at.as_object_mut().expect("made an object above");
        if i + 1 == path.len() {
            map.insert(key.clone(), value);
            return;
        }
        at = map.entry(key.clone()).or_insert(Value::Null);
    }
}

/// A cursor paginator's token, from wherever it comes: text or a number, kept as JSON so
/// that a number goes into a body as a number.
fn cursor_token(from: &CursorFrom, page: &Page) -> Option<Value> {
    let token = |v: &Value| match v {
        Value::String(s) if !s.is_empty() => Some(v.clone()),
        Value::Number(_) => Some(v.clone()),
        _ => None,
    };
    match from {
        CursorFrom::Body(path) => token(path.first(page.body)?),
        CursorFrom::LastRecord(path) => token(path.first(page.last_record?)?),
        CursorFrom::Header(name) => {
            let v = page.headers.get(name.as_str())?.to_str().ok()?.trim();
            // Salesforce's `Sforce-Locator: null` on the last page.
            (!v.is_empty() && v != "null").then(|| Value::String(v.to_string()))
        }
    }
}

/// A token as query parameter text.
fn token_text(token: &Value) -> String {
    match token {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The next URL, for the paginators that move through URLs.
fn next_url(p: &Paginator, page: &Page) -> Result<Option<Url>, String> {
    let join = |link: &str| {
        page.url.join(link).map(Some).map_err(|e| {
            format!(
                "the next page's link `{}` is not a URL: {e}",
                crate::util::clip(link, 120)
            )
        })
    };
    match p {
        Paginator::None => Ok(None),
        Paginator::NextUrl { next } => match next.first(page.body) {
            Some(Value::String(s)) if !s.trim().is_empty() => join(s.trim()),
            _ => Ok(None),
        },
        Paginator::PageNumber {
            param,
            start,
            total_pages,
        } => {
            if page.records == 0 {
                return Ok(None);
            }
            let current = start + page.index;
            if let Some(total) = total_pages.as_ref().and_then(|t| t.first(page.body)).and_then(as_count) {
                // Totals count pages from 1 whatever the first page's number.
                if page.index + 1 >= total {
                    return Ok(None);
                }
            }
            Ok(Some(with_param(page.url, param, &(current + 1).to_string())))
        }
        Paginator::Offset {
            offset_param, total, ..
        } => {
            // The next offset is what was read, not what was asked for: a server may send
            // fewer records than `limit` (Jira caps `maxResults`).
            let ended = match total.as_ref().and_then(|t| t.first(page.body)).and_then(as_count) {
                Some(total) => page.read >= total || page.records == 0,
                None => page.records == 0 || (page.records as u64) < page.fullest,
            };
            Ok((!ended).then(|| with_param(page.url, offset_param, &page.read.to_string())))
        }
        Paginator::Cursor {
            from,
            to: CursorTo::Param(param),
        } => Ok(cursor_token(from, page).map(|t| with_param(page.url, param, &token_text(&t)))),
        Paginator::Cursor { .. } => Ok(None),
        Paginator::LinkHeader => {
            let headers: Vec<&str> = page
                .headers
                .get_all(LINK)
                .iter()
                .map(|v| v.to_str().map_err(|_| "a `Link` header is not text".to_string()))
                .collect::<Result<_, _>>()?;
            Ok(link_next(&headers.join(", "), page.url)?)
        }
    }
}

/// When the whole page count is known from the first page, the URLs of every later page,
/// so they can be fetched concurrently.
pub(crate) fn remaining(p: &Paginator, first_page: &Page) -> Option<Vec<Url>> {
    match p {
        Paginator::PageNumber {
            param,
            start,
            total_pages: Some(t),
        } => {
            let total = as_count(t.first(first_page.body)?)?;
            Some(
                (1..total)
                    .map(|i| with_param(first_page.url, param, &(start + i).to_string()))
                    .collect(),
            )
        }
        Paginator::Offset {
            offset_param,
            limit,
            total: Some(t),
            ..
        } => {
            // Only a server seen to send whole pages is asked for them all at once.
            if first_page.records as u64 != *limit {
                return None;
            }
            let total = as_count(t.first(first_page.body)?)?;
            Some(
                (1..total.div_ceil(*limit))
                    .map(|i| with_param(first_page.url, offset_param, &(i * limit).to_string()))
                    .collect(),
            )
        }
        _ => None,
    }
}

/// The `rel="next"` target of RFC 8288 `Link` header values (joined with commas),
/// resolved against `base`; an error when the header does not parse.
pub(crate) fn link_next(header: &str, base: &Url) -> Result<Option<Url>, String> {
    if header.trim().is_empty() {
        return Ok(None);
    }
    let links = http_link::parse_link_header(header, base).map_err(|e| {
        format!(
            "the `Link` header does not parse as RFC 8288 says ({e}): {}",
            crate::util::clip(header, 200)
        )
    })?;
    Ok(links
        .into_iter()
        .find(|l| l.rel.eq_ignore_ascii_case("next"))
        .map(|l| l.target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::jsonpath::JsonPath;
    use serde_json::json;

    fn page<'a>(url: &'a Url, headers: &'a HeaderMap, body: &'a Value, records: usize, index: u64) -> Page<'a> {
        Page {
            url,
            sent_body: None,
            sent_headers: &[],
            headers,
            body,
            records,
            last_record: None,
            index,
            read: records as u64 * (index + 1),
            fullest: if index == 0 { 0 } else { records as u64 },
        }
    }

    #[test]
    fn next_url_follows_relative_and_absolute_links_and_stops_on_null() {
        let p = Paginator::NextUrl {
            next: JsonPath::parse("$.info.next").unwrap(),
        };
        let url = Url::parse("http://h/api/character?page=1").unwrap();
        let h = HeaderMap::new();
        let b = json!({"info": {"next": "http://h/api/character?page=2"}});
        assert_eq!(
            next(&p, &page(&url, &h, &b, 20, 0)).unwrap().unwrap().url.as_str(),
            "http://h/api/character?page=2"
        );
        let b = json!({"info": {"next": "?page=3"}});
        assert_eq!(
            next(&p, &page(&url, &h, &b, 20, 0)).unwrap().unwrap().url.as_str(),
            "http://h/api/character?page=3"
        );
        for stop in [
            json!({"info": {"next": null}}),
            json!({"info": {"next": ""}}),
            json!({"info": {}}),
        ] {
            assert_eq!(next(&p, &page(&url, &h, &stop, 20, 0)).unwrap(), None);
        }
    }

    #[test]
    fn page_numbers_stop_on_empty_pages_or_the_total() {
        let p = Paginator::PageNumber {
            param: "page".into(),
            start: 1,
            total_pages: Some(JsonPath::parse("$.pages").unwrap()),
        };
        let url = Url::parse("http://h/x?page=1").unwrap();
        let h = HeaderMap::new();
        let b = json!({"pages": 3});
        assert_eq!(
            next(&p, &page(&url, &h, &b, 20, 0)).unwrap().unwrap().url.as_str(),
            "http://h/x?page=2"
        );
        assert_eq!(next(&p, &page(&url, &h, &b, 20, 2)).unwrap(), None);
        assert_eq!(next(&p, &page(&url, &h, &json!({}), 0, 0)).unwrap(), None);
        let rest = remaining(&p, &page(&url, &h, &b, 20, 0)).unwrap();
        assert_eq!(
            rest.iter().map(Url::as_str).collect::<Vec<_>>(),
            ["http://h/x?page=2", "http://h/x?page=3"]
        );
    }

    #[test]
    fn offsets_advance_by_what_was_read_and_stop_on_a_short_page_or_the_total() {
        let p = Paginator::Offset {
            limit_param: "limit".into(),
            offset_param: "offset".into(),
            limit: 10,
            total: None,
        };
        let base = Url::parse("http://h/x").unwrap();
        let url = first(&p, &base);
        assert_eq!(url.as_str(), "http://h/x?limit=10&offset=0");
        let h = HeaderMap::new();
        let b = json!({});
        assert_eq!(
            next(&p, &page(&url, &h, &b, 10, 0)).unwrap().unwrap().url.as_str(),
            "http://h/x?limit=10&offset=10"
        );
        // A server that caps pages at 4: the next offset is 4, and a first short page is
        // no proof of the end.
        assert_eq!(
            next(&p, &page(&url, &h, &b, 4, 0)).unwrap().unwrap().url.as_str(),
            "http://h/x?limit=10&offset=4"
        );
        let mut short = page(&url, &h, &b, 3, 2);
        short.read = 11;
        short.fullest = 4;
        assert_eq!(next(&p, &short).unwrap(), None);
        assert_eq!(next(&p, &page(&url, &h, &b, 0, 1)).unwrap(), None);
        let p = Paginator::Offset {
            limit_param: "limit".into(),
            offset_param: "offset".into(),
            limit: 10,
            total: Some(JsonPath::parse("$.total").unwrap()),
        };
        let b = json!({"total": "25"});
        assert_eq!(remaining(&p, &page(&url, &h, &b, 10, 0)).unwrap().len(), 2);
        // Pages shorter than asked for are not fetched at once by offsets of `limit`.
        assert_eq!(remaining(&p, &page(&url, &h, &b, 5, 0)), None);
        let mut capped = page(&url, &h, &b, 5, 1);
        capped.read = 10;
        assert_eq!(
            next(&p, &capped).unwrap().unwrap().url.as_str(),
            "http://h/x?limit=10&offset=10"
        );
        capped.read = 25;
        assert_eq!(next(&p, &capped).unwrap(), None);
    }

    #[test]
    fn link_headers_parse_as_rfc_8288_says() {
        let base = Url::parse("http://h/x?page=1").unwrap();
        let next_of = |h: &str| link_next(h, &base).unwrap().map(|u| u.to_string());
        for header in [
            r#"<http://h/x?page=1>; rel="prev", <http://h/x?page=3>; rel="next""#,
            r#"<http://h/x?page=3>; rel = "next""#,
            r#"<http://h/x?page=3>; REL=next"#,
            r#"<http://h/x?page=3>; rel="next last""#,
            r#"<http://h/x?page=3>;rel=NEXT;title="a, b; c""#,
            r#"</x?page=9>; rel="last", <?page=3>; rel="next""#,
        ] {
            assert_eq!(next_of(header).as_deref(), Some("http://h/x?page=3"), "{header}");
        }
        assert_eq!(next_of(r#"<http://h/x?page=1>; rel="first""#), None);
        assert_eq!(next_of(""), None);
        assert!(link_next("http://h/x?page=2; rel=next", &base).is_err());
        // Several headers: joined, the next found in the second.
        let mut h = HeaderMap::new();
        h.append(LINK, r#"<http://h/x?page=9>; rel="last""#.parse().unwrap());
        h.append(LINK, r#"<http://h/x?page=2>; rel = "next""#.parse().unwrap());
        let b = json!({});
        assert_eq!(
            next(&Paginator::LinkHeader, &page(&base, &h, &b, 1, 0))
                .unwrap()
                .unwrap()
                .url
                .as_str(),
            "http://h/x?page=2"
        );
    }

    #[test]
    fn cursors_and_link_headers() {
        let p = Paginator::Cursor {
            from: CursorFrom::Body(JsonPath::parse("$.next_cursor").unwrap()),
            to: CursorTo::Param("cursor".into()),
        };
        let url = Url::parse("http://h/x?cursor=a").unwrap();
        let h = HeaderMap::new();
        assert_eq!(
            next(&p, &page(&url, &h, &json!({"next_cursor": "b c"}), 1, 0))
                .unwrap()
                .unwrap()
                .url
                .as_str(),
            "http://h/x?cursor=b+c"
        );
        assert_eq!(
            next(&p, &page(&url, &h, &json!({"next_cursor": null}), 1, 0)).unwrap(),
            None
        );
        // From the last record, and from a header.
        let p = Paginator::Cursor {
            from: CursorFrom::LastRecord(JsonPath::parse("$.id").unwrap()),
            to: CursorTo::Param("starting_after".into()),
        };
        let (last, empty) = (json!({"id": "ch_9"}), json!({}));
        let mut on = page(&url, &h, &empty, 1, 0);
        on.last_record = Some(&last);
        assert_eq!(
            next(&p, &on).unwrap().unwrap().url.as_str(),
            "http://h/x?cursor=a&starting_after=ch_9"
        );
        // Into the body: the rest of the body is sent again as it was; a number stays one.
        let p = Paginator::Cursor {
            from: CursorFrom::LastRecord(JsonPath::parse("$.id").unwrap()),
            to: CursorTo::BodyField(vec!["variables".into(), "after".into()]),
        };
        let sent = json!({"query": "{ q }", "variables": {"first": 2}});
        on.sent_body = Some(&sent);
        let n = next(&p, &on).unwrap().unwrap();
        assert_eq!(n.url, url);
        assert_eq!(
            n.body,
            Some(json!({"query": "{ q }", "variables": {"first": 2, "after": "ch_9"}}))
        );
        let numbered = json!({"id": 7});
        on.last_record = Some(&numbered);
        assert_eq!(
            next(&p, &on).unwrap().unwrap().body.unwrap()["variables"]["after"],
            json!(7)
        );
        let p = Paginator::Cursor {
            from: CursorFrom::Header("x-next".into()),
            to: CursorTo::Param("cursor".into()),
        };
        let mut with_header = HeaderMap::new();
        with_header.insert("x-next", "t2".parse().unwrap());
        assert_eq!(
            next(&p, &page(&url, &with_header, &json!({}), 1, 0))
                .unwrap()
                .unwrap()
                .url
                .as_str(),
            "http://h/x?cursor=t2"
        );
        assert_eq!(next(&p, &page(&url, &h, &json!({}), 1, 0)).unwrap(), None);
    }
}
