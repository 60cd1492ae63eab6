//! Signs in a page that the API holds more than was read, recognised by the names APIs
//! give them: totals (`total`, `totalSize`, `total_count`, …), "more" flags (`has_more`,
//! `hasNextPage`, `done: false`, …), next links (`next`, `nextRecordsUrl`,
//! `next_page_uri`, …) and cursors (`next_cursor`, `nextPageToken`, an `offset` token).
//! `init` reads them to choose and guard a paginator; the page loop reads the last page's
//! when a resource ends, so that a spec that does not say how the API pages cannot stop
//! early in silence.

use serde_json::Value;

/// A name without case or punctuation, for matching (`next_cursor`, `nextCursor` →
/// `nextcursor`).
pub(crate) fn norm(key: &str) -> String {
    key.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Keys of a next page's URL (absolute or relative).
pub(crate) const NEXT_URL_KEYS: &[&str] = &[
    "next",
    "nexturl",
    "nextpage",
    "nextpageurl",
    "nextpageuri",
    "nextlink",
    "nexturi",
    "odatanextlink",
    "nextrecordsurl",
    "afterurl",
    "nexthref",
];
/// Keys of a token for the next page.
pub(crate) const CURSOR_KEYS: &[&str] = &[
    "nextcursor",
    "cursor",
    "nextpagetoken",
    "pagetoken",
    "endcursor",
    "after",
    "continuation",
    "continuationtoken",
    "nexttoken",
    "scrollid",
    "startcursor",
    "next",
];
/// Keys of a token that can only be the next page's.
const NEXT_TOKEN_KEYS: &[&str] = &["nextcursor", "nextpagetoken", "nexttoken", "nextpagecursor"];
/// Flags that are true while there are more pages.
pub(crate) const MORE_KEYS: &[&str] = &["hasmore", "hasnextpage", "hasnext", "more", "moreitems", "morerecords"];
/// Flags that are true on the last page.
pub(crate) const END_KEYS: &[&str] = &["endofstream", "islast", "islastpage", "done", "finished"];
/// Counts of the records the API holds.
pub(crate) const TOTAL_KEYS: &[&str] = &[
    "total",
    "count",
    "totalcount",
    "totalresults",
    "totalitems",
    "totalrecords",
    "totalentries",
    "totalsize",
    "totalhits",
];
/// Counts of the pages the API holds.
pub(crate) const PAGES_KEYS: &[&str] = &["pages", "totalpages", "pagecount", "numpages", "lastpage"];

/// Objects whose keys are the page's envelope (beside the top level).
const ENVELOPES: &[&str] = &[
    "meta",
    "info",
    "pagination",
    "paging",
    "pageinfo",
    "page",
    "links",
    "responsemetadata",
    "metadata",
    "cursor",
    "next",
];

/// A scalar of the page outside the records: its JSONPath, the key of the object it is
/// in, its key and value.
pub(crate) struct Scalar<'v> {
    pub path: String,
    pub parent: String,
    pub key: String,
    pub value: &'v Value,
}

/// `$.a` step for a key: `.key` when it is an identifier, else `['key']`.
pub(crate) fn path_step(key: &str) -> String {
    let plain = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!(".{key}")
    } else {
        // RFC 9535 name selector: `\\`, `\'` and every control character escaped.
        let mut out = String::from("['");
        for c in key.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push_str("']");
        out
    }
}

/// The scalars of `v` to `depth` objects deep, but the one at `skip` (the records).
pub(crate) fn scalars<'v>(v: &'v Value, path: &str, parent: &str, skip: &str, depth: usize, out: &mut Vec<Scalar<'v>>) {
    let Some(map) = v.as_object() else { return };
    for (k, x) in map {
        let p = format!("{path}{}", path_step(k));
        if p == skip {
            continue;
        }
        match x {
            Value::Object(_) if depth < 3 => scalars(x, &p, k, skip, depth + 1, out),
            Value::Object(_) | Value::Array(_) => {}
            _ => out.push(Scalar {
                path: p,
                parent: parent.to_string(),
                key: k.clone(),
                value: x,
            }),
        }
    }
}

/// A count as JSON gives it: a whole number, or one written as text.
pub(crate) fn count_of(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|t| t.trim().parse().ok()))
}

/// Whether a text reads as a URL or a path to one.
pub(crate) fn url_like(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.starts_with("http://") || s.starts_with("https://") || s.starts_with('/') || s.starts_with('?')
    })
}

/// What the last page of a resource says of the whole.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Signs {
    /// A reported total of records: its path and value.
    pub total: Option<(String, u64)>,
    /// A flag that says there is more: its path and value.
    pub more: Option<(String, bool)>,
    /// A next page's link or token: its path.
    pub next: Option<String>,
}

/// The signs in a page's envelope (the top level and the usual envelope objects, never
/// the records at `records`, a JSONPath like `$.results[*]`).
pub(crate) fn read(body: &Value, records: &str) -> Signs {
    // Only records in an array below the top level leave an envelope around them: a
    // page that is the records (`$[*]`) or the record (`$`) has none.
    let enveloped =
        records.ends_with("[*]") && records != "$[*]" && (records.starts_with("$.") || records.starts_with("$["));
    if !enveloped {
        return Signs::default();
    }
    let skip = records.trim_end_matches("[*]");
    let mut found = Vec::new();
    scalars(body, "$", "", skip, 0, &mut found);
    let envelope = |s: &&Scalar| s.parent.is_empty() || ENVELOPES.contains(&norm(&s.parent).as_str());
    let mut signs = Signs::default();
    // A flag that says this is the last page outweighs a link or token left in it.
    let mut last = false;
    for s in found.iter().filter(envelope) {
        let k = norm(&s.key);
        if signs.total.is_none() && TOTAL_KEYS.contains(&k.as_str()) {
            signs.total = count_of(s.value).map(|n| (s.path.clone(), n));
        }
        if let Some(b) = s.value.as_bool() {
            let says = match (MORE_KEYS.contains(&k.as_str()), END_KEYS.contains(&k.as_str())) {
                (true, _) => Some(b),
                (_, true) => Some(!b),
                _ => None,
            };
            last |= says == Some(false);
            if let (None, Some(true)) = (&signs.more, says) {
                signs.more = Some((s.path.clone(), b));
            }
        }
        let token = s.value.as_str().is_some_and(|t| !t.trim().is_empty());
        let next_link =
            (NEXT_URL_KEYS.contains(&k.as_str()) || (k == "href" && norm(&s.parent) == "next")) && url_like(s.value);
        // Only names that say "next": a `cursor` or `endCursor` may echo the current one.
        let cursor = NEXT_TOKEN_KEYS.contains(&k.as_str()) && token;
        // Airtable's `offset` is a token, not a number.
        let offset_token = k == "offset" && token && count_of(s.value).is_none();
        if signs.next.is_none() && (next_link || cursor || offset_token) {
            signs.next = Some(s.path.clone());
        }
    }
    if last {
        signs.next = None;
    }
    signs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelopes_of_the_usual_apis_are_read() {
        let sf = json!({"totalSize": 826, "done": false, "nextRecordsUrl": "/q/01g-200", "records": []});
        let s = read(&sf, "$.records[*]");
        assert_eq!(s.total, Some(("$.totalSize".into(), 826)));
        assert_eq!(s.more, Some(("$.done".into(), false)));
        assert_eq!(s.next.as_deref(), Some("$.nextRecordsUrl"));
        let airtable = json!({"records": [], "offset": "itrA/recB"});
        assert_eq!(read(&airtable, "$.records[*]").next.as_deref(), Some("$.offset"));
        let jira = json!({"startAt": 0, "maxResults": 50, "total": "826", "issues": []});
        assert_eq!(read(&jira, "$.issues[*]").total, Some(("$.total".into(), 826)));
        let slack = json!({"ok": true, "messages": [], "response_metadata": {"next_cursor": "dGVhbTpD"}});
        assert_eq!(
            read(&slack, "$.messages[*]").next.as_deref(),
            Some("$.response_metadata.next_cursor")
        );
        // The last page of each: nothing says more.
        let end = json!({"results": [], "next_cursor": null, "has_more": false, "offset": 40, "info": {"next": null}});
        assert_eq!(read(&end, "$.results[*]"), Signs::default());
        // Inside the records, or deep in an unrelated object: not the envelope's.
        let inside = json!({"data": [{"total": 9, "has_more": true}], "order": {"lines": {"total": 5}}});
        assert_eq!(read(&inside, "$.data[*]"), Signs::default());
    }
}
