//! What sampling found, as `init` writes it into a spec: the paging seen, where a cursor
//! comes from and goes back to, and each URL's records. Shared by the sampler
//! ([`super::sample`]) and the spec writer ([`super::render`]).

use serde_json::Value;
use url::Url;

use crate::spec::pipeline::HttpMethod;

/// How pages follow each other, as the spec will say it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Paging {
    None,
    NextUrl {
        next: String,
        stop: Option<(String, bool)>,
    },
    LinkHeader,
    Cursor {
        from: CursorFrom,
        to: CursorTo,
        stop: Option<(String, bool)>,
    },
    PageNumber {
        param: String,
        start: u64,
        total_pages: Option<String>,
    },
    Offset {
        limit_param: String,
        offset_param: String,
        limit: u64,
        total: Option<String>,
    },
}

/// Where a cursor goes back to the API: a query parameter, or a dotted field of the JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum CursorTo {
    Param(String),
    Body(String),
}

impl std::fmt::Display for CursorTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CursorTo::Param(p) => write!(f, "parameter `{p}`"),
            CursorTo::Body(b) => write!(f, "body field `{b}`"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CursorFrom {
    Body(String),
    LastRecord(String),
    Header(String),
}

/// What one URL showed.
pub(crate) struct Sampled {
    pub url: Url,
    pub records_path: String,
    pub records_why: String,
    pub paging: Paging,
    pub paging_why: String,
    /// The URL's query parameters that stay the resource's own (not the paginator's).
    pub params: Vec<(String, String)>,
    /// The JSON body of a POST resource.
    pub body: Option<Value>,
    pub records: Vec<Value>,
    pub pages: u64,
    /// Pagination ended within the sample: it holds every record.
    pub complete: bool,
    /// Why sampling stopped before the end, when it did.
    pub stopped: Option<String>,
    /// What the first page says of the whole, written beside the paginator so that a run
    /// proves it read everything: a total's path, and a "more" flag's path with the value
    /// that means more.
    pub total: Option<String>,
    pub has_more: Option<(String, bool)>,
    /// The page says `"ok": true` (Slack's envelope): its errors come with HTTP 200.
    pub ok_envelope: bool,
    /// A body that is a file (JSON Lines, CSV, XML): the spec lines that say so.
    pub file: Option<Vec<String>>,
}

impl Sampled {
    /// What a file body showed: its records, one page, read whole.
    pub(crate) fn of_file(url: &Url, file: super::files::FileBody, body: Option<Value>) -> Sampled {
        tracing::info!("{}: {} records", file.why, file.records.len());
        Sampled {
            url: url.clone(),
            records_path: "$".into(),
            records_why: file.why,
            paging: Paging::None,
            paging_why: "one file".into(),
            params: url
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            body,
            pages: 1,
            complete: true,
            stopped: None,
            total: None,
            has_more: None,
            ok_envelope: false,
            file: Some(file.yaml),
            records: file.records,
        }
    }
}

/// A request with a body is a POST, else a GET.
pub(crate) fn method_of(body: Option<&Value>) -> HttpMethod {
    body.map_or(HttpMethod::Get, |_| HttpMethod::Post)
}

/// `POST` for a request with a body, else `GET`.
pub(crate) fn method_word(body: Option<&Value>) -> &'static str {
    crate::extract::http::method_name(method_of(body))
}
