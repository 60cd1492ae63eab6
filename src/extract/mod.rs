//! Extract: read every page of a resource and hand its records, in page order, to a sink.
//! The page loop owns the guards (max pages, repeated URLs, records path that matches
//! nothing); the paginators only say what comes next.

pub(crate) mod auth;
pub(crate) mod decode;
pub(crate) mod http;
mod job;
pub(crate) mod paginate;
pub(crate) mod session;
pub(crate) mod signals;
mod streamed;

use std::collections::HashSet;
use std::future::Future;

use futures_util::stream::{self, StreamExt};
use serde_json::value::RawValue;
use serde_json::Value;
use url::Url;

use crate::spec::pipeline::{CursorFrom, Paginator, Pipeline, Resource, Target, PARENT_FIELD};
use crate::spec::placeholder::Values;
use http::{Client, Response};
use paginate::{Page, Request};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ExtractError {
    #[error("resource `{resource}`, page {page}: {method} {url} failed{}{}: {detail}", status.map(|s| format!(" with HTTP {s}")).unwrap_or_default(), if *attempts > 1 { format!(" after {attempts} attempts") } else { String::new() })]
    Fetch {
        resource: String,
        method: &'static str,
        page: u64,
        url: String,
        status: Option<u16>,
        attempts: u32,
        detail: String,
    },
    #[error(
        "resource `{resource}`, page {page}: the response from {url} is not JSON ({detail}); it starts with: {head}"
    )]
    NotJson {
        resource: String,
        page: u64,
        url: String,
        detail: String,
        head: String,
    },
    #[error("resource `{resource}`, page {page}: `records: {path}` matches nothing in the response from {url}, which is {page_is}")]
    RecordsMissing {
        resource: String,
        page: u64,
        url: String,
        path: String,
        /// What the page is ("an object with keys …", "an array of 20 objects"), and a
        /// records path that would match.
        page_is: String,
    },
    #[error("resource `{resource}`, page {page}: `records: {path}` selects one array (of {len} items) rather than the records in it; did you mean `records: {path}[*]`?")]
    RecordsIsArray {
        resource: String,
        page: u64,
        path: String,
        len: usize,
    },
    #[error("resource `{resource}`, page {page}: {detail}")]
    Auth {
        resource: String,
        page: u64,
        detail: String,
    },
    #[error("resource `{resource}`, page {page}: the API answered with errors and no data: {messages}")]
    ApiErrors {
        resource: String,
        page: u64,
        messages: String,
    },
    #[error("resource `{resource}`, page {page}: pagination points back to {url}, which was already fetched; stopping instead of looping forever")]
    RepeatedUrl { resource: String, page: u64, url: String },
    #[error(
        "resource `{resource}`: more than max_pages = {max} pages; raise `max_pages` if the API really has that many"
    )]
    TooManyPages { resource: String, max: u64 },
    #[error("resource `{resource}`, page {page}: {url} is on host `{host}`, not on the API's origin {origin}; sluice sends credentials only to that origin and follows links elsewhere only to hosts listed in `source.allowed_hosts`")]
    ForeignHost {
        resource: String,
        page: u64,
        host: String,
        origin: String,
        url: String,
    },
    #[error("resource `{resource}`, page {page}: {url} cannot be fetched: only http and https URLs can")]
    Unfetchable { resource: String, page: u64, url: String },
    #[error("resource `{resource}`, page {page}: the response from {url} is larger than max_response_size = {limit} bytes; raise `source.max_response_size` if the API really sends pages that large")]
    TooLarge {
        resource: String,
        page: u64,
        url: String,
        limit: u64,
    },
    #[error(
        "resource `{resource}`, page {page}: {url} answered HTTP {status}, which a response rule ignores: {message}"
    )]
    Ignored {
        resource: String,
        page: u64,
        url: String,
        status: u16,
        message: String,
    },
    #[error("{0}")]
    Config(String),
    #[error("resource `{resource}`, page {page}: the {format} body from {url} does not read: {detail}")]
    Body {
        resource: String,
        page: u64,
        url: String,
        format: &'static str,
        detail: String,
    },
    #[error("resource `{resource}`: the export job failed (poll {polls} says {state}): {message}")]
    JobFailed {
        resource: String,
        polls: u64,
        state: String,
        message: String,
    },
    #[error("resource `{resource}`: the export job was not done after {timeout_s} s ({polls} polls; the last said {state}); raise `job.poll.timeout` if it really takes that long")]
    JobTimeout {
        resource: String,
        polls: u64,
        timeout_s: u64,
        state: String,
    },
    #[error("{source} (the export job's {what})")]
    InJob {
        what: String,
        #[source]
        source: Box<ExtractError>,
    },
    #[error("resource `{resource}`, page {page}: stopped before the invocation deadline ({left_ms} ms left, {reserve_ms} ms kept to finish cleanly); nothing of this run will be loaded")]
    Deadline {
        resource: String,
        page: u64,
        left_ms: u64,
        reserve_ms: u64,
    },
    #[error("resource `{resource}`, page {page}: stopped by {}", if *signal == 0 { "the invocation deadline" } else { crate::util::signal_name(*signal) })]
    Stopped { resource: String, page: u64, signal: i32 },
    #[error("{source} (the request for record {record} of `{parent}`)")]
    ForParent {
        parent: String,
        record: u64,
        #[source]
        source: Box<ExtractError>,
    },
    #[error("resource `{resource}`: its parent `{parent}` failed, so it has no records to make requests for")]
    ParentFailed { resource: String, parent: String },
    /// The pages ended, but what they said of the whole (a total, a "more" flag) says
    /// records are missing.
    #[error("resource `{resource}`, page {page}: {detail}")]
    Incomplete {
        resource: String,
        page: u64,
        detail: String,
    },
    #[error("resource `{resource}`: {source}")]
    Stage {
        resource: String,
        #[source]
        source: crate::stage::StageError,
    },
}

impl ExtractError {
    /// A stop at a page boundary (the invocation deadline, a signal), not a failure: the
    /// run can go on from its checkpoint. The signal, or 0 for the deadline.
    pub(crate) fn suspension(&self) -> Option<i32> {
        match self {
            ExtractError::Deadline { .. } => Some(0),
            ExtractError::Stopped { signal, .. } => Some(*signal),
            ExtractError::ForParent { source, .. } | ExtractError::InJob { source, .. } => source.suspension(),
            _ => None,
        }
    }
}

/// The records of one page: parsed values, or (on the fast path) the raw JSON text of
/// each record exactly as the API sent it.
pub(crate) enum Records<'a> {
    Values(Vec<Value>),
    Raw(Vec<&'a RawValue>),
}

impl Records<'_> {
    /// The last record, parsed (`None` for an empty page or one that does not parse).
    pub(crate) fn last(&self) -> Option<Value> {
        match self {
            Records::Values(v) => v.last().cloned(),
            Records::Raw(r) => r.last().and_then(|raw| serde_json::from_str(raw.get()).ok()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Records::Values(v) => v.len(),
            Records::Raw(r) => r.len(),
        }
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Receives the records of each page, in page order.
pub(crate) trait RecordSink: Send {
    /// Returns false to stop extracting (a dry run has seen enough).
    fn page(&mut self, records: &Records<'_>) -> impl Future<Output = Result<bool, ExtractError>> + Send;
    /// The number of records the API reported it holds, when a page said.
    fn total(&mut self, _records: u64) {}
    /// Where the records handed next come from, for a checkpoint to say where to go on.
    fn at(&mut self, _place: Place<'_>) {}
}

/// Where the records a sink gets next come from.
pub(crate) enum Place<'a> {
    /// Date window `index` begins; the windows before it counted so much.
    Window(u32, &'a Extracted),
    /// The next records are those of the page asked for with `req`; the pages before it
    /// in its request sequence counted so much.
    Page {
        req: &'a Request,
        pages: u64,
        records: u64,
        fullest: u64,
    },
    /// The next records are those of parent `i` (0-based) of a `for_each` resource.
    Parent(u64),
    /// Parent `i`'s records are all handed over, with its counts (`None`: skipped).
    ParentDone(u64, Option<&'a Extracted>),
}

impl Extracted {
    /// The counts a checkpoint keeps.
    pub(crate) fn counts(&self) -> crate::stage::checkpoint::Counts {
        crate::stage::checkpoint::Counts {
            pages: self.pages,
            records: self.records,
            skipped: self.skipped,
            ignored: self.ignored,
            total: self.total,
        }
    }

    /// The counts of a checkpoint, to go on from.
    pub(crate) fn from_counts(c: &crate::stage::checkpoint::Counts) -> Self {
        Extracted {
            pages: c.pages,
            records: c.records,
            skipped: c.skipped,
            ignored: c.ignored,
            total: c.total,
            ..Default::default()
        }
    }
}

/// Counts of one extracted resource.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extracted {
    pub pages: u64,
    pub records: u64,
    /// Parent records (or list values) whose first request a response rule ignored.
    pub skipped: u64,
    /// The number of records the API reported (its last page's `total`), summed over
    /// the parents of a `for_each` resource.
    pub total: Option<u64>,
    /// The sink said it had enough (a `--limit` or a dry run).
    pub stopped: bool,
    /// The page cap of a recording (`sluice record` / `test`) ended the sequence: the next
    /// date window is still read.
    pub capped: bool,
    /// Responses an `ignore` rule held for: a page left out (the pages after it not read).
    pub ignored: u64,
    /// For a resource read as date windows: how far it got.
    pub windows: Option<Windows>,
}

/// The date windows of one resource's run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Windows {
    /// Read whole, in order.
    pub done: u32,
    /// Not read this run (`run` reads them in its next rounds).
    pub left: u32,
    /// Where the state moves: the end of the last window read (never past the start of
    /// the unit still under way); none when there was no window.
    pub state: Option<crate::incremental::Position>,
}

impl Extracted {
    /// Add the counts of one more request sequence (a window, a parent's requests).
    pub(crate) fn add(&mut self, other: &Extracted) {
        self.pages += other.pages;
        self.records += other.records;
        self.skipped += other.skipped;
        self.ignored += other.ignored;
        if let Some(t) = other.total {
            self.total = Some(self.total.unwrap_or(0) + t);
        }
    }
}

/// What the pages of one resource said of the whole, page by page.
#[derive(Default)]
struct Tally {
    /// The most records a page held.
    fullest: u64,
    /// The last reported record and page counts.
    total: Option<u64>,
    total_pages: Option<u64>,
    /// The last page said there is more.
    more: bool,
}

impl Tally {
    fn page(&mut self, resource: &Resource, body: &Value, records: usize) {
        let c = &resource.completeness;
        let count = |p: &Option<crate::spec::jsonpath::JsonPath>| {
            p.as_ref().and_then(|p| p.first(body)).and_then(paginate::as_count)
        };
        self.total = count(&c.total).or(self.total);
        self.total_pages = count(&c.total_pages).or(self.total_pages);
        self.more = c.has_more.as_ref().is_some_and(|m| m.says_more(body));
        self.fullest = self.fullest.max(records as u64);
    }

    /// When the pagination has ended after `last` (a page of `last_records` records, where
    /// `stop_when` held or not): fail (or warn, as `total_check` says) when what the pages
    /// said of the whole disagrees with what was read.
    fn check(
        &self,
        resource: &Resource,
        page: u64,
        stats: &Extracted,
        last: &Value,
        last_records: usize,
        stopped: bool,
    ) -> Result<(), ExtractError> {
        use crate::spec::pipeline::TotalCheck;
        let c = &resource.completeness;
        if c.total_check == TotalCheck::Off {
            return Ok(());
        }
        let incomplete = |detail: String| ExtractError::Incomplete {
            resource: resource.name.clone(),
            page,
            detail,
        };
        if let (true, Some(m)) = (self.more, &c.has_more) {
            return Err(incomplete(format!(
                "the page says there is more ({}) but no next page was found: `paginate` does not follow this API's pagination",
                m.describe()
            )));
        }
        let short = |detail: String| match c.total_check {
            TotalCheck::Fail => Err(incomplete(format!(
                "{detail}; set `paginate.total_check: warn` only if the API's total counts records it does not list"
            ))),
            TotalCheck::Warn | TotalCheck::Off => {
                tracing::warn!(resource = %resource.name, "{detail}");
                Ok(())
            }
        };
        // What the last page says without the spec's asking; an empty page ends any
        // paging, and `stop_when` is the spec's own word.
        let signs = match last_records == 0 || stopped {
            true => signals::Signs::default(),
            false => signals::read(last, resource.records.as_str()),
        };
        let fix = "`paginate` does not follow this API's pagination: set it (`sluice init URL` finds it), or `paginate.total_check: off` to accept";
        if let (None, Some((path, value))) = (&c.has_more, &signs.more) {
            return Err(incomplete(format!(
                "the page says there is more (`{path}` is {value}) but pagination stopped after {} records: {fix}",
                stats.records
            )));
        }
        if let Some(path) = &signs.next {
            return Err(incomplete(format!(
                "the page names a next page (`{path}`) but pagination stopped after {} records: {fix}",
                stats.records
            )));
        }
        if let (None, Some((path, total))) = (&c.total, &signs.total) {
            if stats.records < *total {
                return Err(incomplete(format!(
                    "the API reported {total} records (`{path}`), {} were read: {fix}",
                    stats.records
                )));
            }
        }
        if let Some(total) = self.total {
            if stats.records < total {
                let why = match &resource.paginator {
                    Paginator::Offset {
                        limit, limit_param, ..
                    } if self.fullest < *limit => format!(
                        ": the server sends at most {} records a page though `limit` is {limit} (it caps `{limit_param}`); lower `limit` to {}",
                        self.fullest, self.fullest
                    ),
                    _ => ": the pages ended before the total; check `paginate`".into(),
                };
                short(format!(
                    "the API reported {total} records, {} were read{why}",
                    stats.records
                ))?;
            } else if stats.records > total {
                tracing::warn!(
                    resource = %resource.name,
                    "the API reported {total} records and {} were read: records were added while reading, or the total counts differently",
                    stats.records
                );
            }
        }
        if let Some(pages) = self.total_pages.filter(|p| stats.pages < *p) {
            short(format!("the API reported {pages} pages, {} were read", stats.pages))?;
        }
        Ok(())
    }
}

/// The resource's first URL: base URL + path, or its `url`, with its placeholders filled
/// (the parent record's values for a `for_each` resource, an incremental start).
pub(crate) fn resource_url(
    base_url: &str,
    resource: &Resource,
    target: &Target,
    values: &Values,
) -> Result<Url, ExtractError> {
    use crate::spec::placeholder::{render, Fill, Scan};
    let fill = |template: &str, fill: Fill| match values.is_empty() {
        false => render(template, Scan::Strict, fill, values).map_err(ExtractError::Config),
        true => Ok(template.to_string()),
    };
    let below = |path: &str| crate::util::below(base_url, path);
    let joined = match target {
        Target::Path(path) => below(&fill(path, Fill::Segment)?),
        Target::Url(url) => {
            let url = fill(url, Fill::Raw)?;
            // A relative URL (a parent record's `/exports/42/file`) is below the base URL.
            match Url::parse(&url) {
                Err(url::ParseError::RelativeUrlWithoutBase) => below(&url),
                _ => url,
            }
        }
    };
    Url::parse(&joined).map_err(|e| {
        ExtractError::Config(format!(
            "resource `{}`: `{joined}` is not a valid URL: {e}",
            resource.name
        ))
    })
}

/// A records path that would select something in this page: its top-level array, or the
/// first array field of a top-level object.
fn records_hint(v: &Value) -> Option<String> {
    match v {
        Value::Array(_) => Some("$[*]".into()),
        Value::Object(m) => m.iter().find(|(_, v)| v.is_array()).map(|(k, _)| {
            if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                format!("$.{k}[*]")
            } else {
                format!("$['{}'][*]", k.replace('\'', "\\'"))
            }
        }),
        _ => None,
    }
}

/// Parameters or headers with their placeholders filled from `values`.
pub(crate) fn render_pairs<'a>(
    list: impl IntoIterator<Item = &'a (String, String)>,
    values: &Values,
) -> Result<Vec<(String, String)>, String> {
    use crate::spec::placeholder::{render, Fill, Scan};
    list.into_iter()
        .map(|(k, v)| Ok((k.clone(), render(v, Scan::Text, Fill::Raw, values)?)))
        .collect()
}

/// The first request of a resource: base URL + path (or its URL) + parameters, the
/// paginator's first page, and the body, with the placeholders filled from `values`.
pub(crate) fn first_request(base: &Requests, resource: &Resource, values: &Values) -> Result<Request, ExtractError> {
    use crate::spec::placeholder::render_json;
    let Requests {
        client,
        base_url,
        target,
        params: resource_params,
        headers,
        body,
        ..
    } = *base;
    let url = resource_url(base_url, resource, target, values)?;
    let pairs = |list: &[(String, String)]| render_pairs(list, values).map_err(ExtractError::Config);
    let (params, headers, body) = match values.is_empty() {
        true => (resource_params.to_vec(), headers.to_vec(), body.cloned()),
        false => (
            pairs(resource_params)?,
            pairs(headers)?,
            body.map(|b| render_json(b, values))
                .transpose()
                .map_err(ExtractError::Config)?,
        ),
    };
    let start = client.prepare(&url, &params);
    Ok(Request {
        url: paginate::first(&resource.paginator, &start),
        body,
        headers,
    })
}

/// One request sequence of `resource` for `values` into `sink`: its pages from its first
/// request, or, for an export job, the job run to its end and its downloads read in order.
pub(crate) async fn extract_sequence<S: RecordSink>(
    base: &Requests<'_>,
    pipeline: &Pipeline,
    resource: &Resource,
    values: &Values<'_>,
    sink: &mut S,
) -> Result<Extracted, ExtractError> {
    let (Some(job), Some(resolved)) = (&resource.job, base.job) else {
        let first = first_request(base, resource, values)?;
        let from = base.resume.and_then(|at| at.page.as_ref());
        return extract_resource(base.client, pipeline, resource, first, from, sink).await;
    };
    let (client, downloads) = job::run_job(base, resource, job, resolved, values).await?;
    let mut total = Extracted::default();
    for req in downloads {
        let got = extract_resource(&client, pipeline, resource, req, None, sink).await?;
        total.add(&got);
        if got.stopped || got.capped {
            (total.stopped, total.capped) = (got.stopped, got.capped);
            break;
        }
    }
    Ok(total)
}

/// Extract one resource into `sink`, starting with request `req` (or, going on from a
/// checkpoint, with page `from`, its headers those of `req`).
pub(crate) async fn extract_resource<S: RecordSink>(
    client: &Client,
    pipeline: &Pipeline,
    resource: &Resource,
    mut req: Request,
    from: Option<&crate::stage::checkpoint::PageAt>,
    sink: &mut S,
) -> Result<Extracted, ExtractError> {
    if resource.format.streamed() {
        return streamed::extract_streamed(client, resource, req, sink).await;
    }
    let concurrency = pipeline.source().concurrency;
    let mut seen: HashSet<String> = HashSet::new();
    let mut stats = Extracted::default();
    let mut tally = Tally::default();
    if let Some(from) = from {
        req.url = Url::parse(&from.url).map_err(|e| {
            ExtractError::Config(format!(
                "resource `{}`: the checkpoint's page `{}`: {e}",
                resource.name, from.url
            ))
        })?;
        req.body = from.body.clone();
        (stats.pages, stats.records, tally.fullest) = (from.pages, from.records, from.fullest);
    }
    // The pages of an export job's downloads are not where a checkpoint can go on: its
    // sequence is read again from the job.
    let placed = resource.job.is_none();
    // The next page is fetched while this one is staged (for paginators whose next request
    // is known from the page itself).
    let mut prefetched: Option<tokio::task::JoinHandle<Result<Response, ExtractError>>> = None;
    loop {
        let page_no = stats.pages + 1;
        let fetched = match prefetched.take() {
            Some(handle) => handle
                .await
                .map_err(|e| ExtractError::Config(format!("a fetch task failed: {e}")))?,
            None => {
                check_guards(resource, page_no, &req, &mut seen)?;
                client.fetch(resource.method, &req, &resource.name, page_no).await
            }
        };
        let Some(resp) = unless_ignored(fetched, page_no > 1, &mut stats)? else {
            return Ok(stats);
        };
        let resp = decompressed(resp, resource, page_no, &req.url, client.max_response_size())?;
        let url = &req.url;
        let (body, records) = read_page(resource, page_no, url, &resp)?;
        stats.pages += 1;
        stats.records += records.len() as u64;
        let fullest = tally.fullest;
        tally.page(resource, &body, records.len());
        if let Some(total) = tally.total {
            sink.total(total);
        }
        let last_record = match &resource.paginator {
            Paginator::Cursor {
                from: CursorFrom::LastRecord(_),
                ..
            } => records.last(),
            _ => None,
        };
        let page = Page {
            url,
            sent_body: req.body.as_ref(),
            sent_headers: &req.headers,
            headers: &resp.headers,
            body: &body,
            records: records.len(),
            last_record: last_record.as_ref(),
            index: stats.pages - 1,
            read: stats.records,
            fullest,
        };
        // When the first page tells how many there are, fetch the rest concurrently.
        let all_known = if stats.pages == 1 && concurrency > 1 && resource.stop_when.is_none() {
            paginate::remaining(&resource.paginator, &page)
        } else {
            None
        };
        // A page without records (unless it says there is more), or one where `stop_when`
        // holds, is the last.
        let stopped = resource.stop_when.as_ref().is_some_and(|s| s.holds(&body));
        let last = (records.is_empty() && !tally.more) || stopped;
        // A recording reads so many pages of each request sequence, and its test as many.
        let capped = !last && client.last_page_recorded(page_no);
        let next = if all_known.is_some() || last || capped {
            None
        } else {
            paginate::next(&resource.paginator, &page).map_err(|detail| ExtractError::Incomplete {
                resource: resource.name.clone(),
                page: page_no,
                detail,
            })?
        };
        if let Some(next) = &next {
            check_guards(resource, page_no + 1, next, &mut seen)?;
            let (client, next, method, name) = (client.clone(), next.clone(), resource.method, resource.name.clone());
            prefetched = Some(tokio::spawn(async move {
                client.fetch(method, &next, &name, page_no + 1).await
            }));
        }
        if placed {
            sink.at(Place::Page {
                req: &req,
                pages: stats.pages - 1,
                records: stats.records - records.len() as u64,
                fullest,
            });
        }
        if !sink.page(&records).await? {
            if let Some(h) = prefetched {
                h.abort();
            }
            stats.stopped = true;
            return Ok(stats);
        }
        tracing::debug!(resource = %resource.name, page = page_no, records = records.len(), "page");
        // This page is staged whole: a checkpoint from here goes on at the next one.
        if let (true, Some(next)) = (placed, &next) {
            let (pages, records, fullest) = (stats.pages, stats.records, tally.fullest);
            sink.at(Place::Page {
                req: next,
                pages,
                records,
                fullest,
            });
        }
        if let Some(rest) = all_known {
            let first = (&req, body, records.len(), placed);
            return fetch_rest(client, concurrency, resource, rest, first, stats, tally, sink).await;
        }
        match next {
            Some(next) => req = next,
            None if capped => return Ok(Extracted { capped: true, ..stats }),
            None => {
                tally.check(resource, page_no, &stats, &body, records.len(), stopped)?;
                stats.total = tally.total;
                return Ok(stats);
            }
        }
    }
}

/// The pages after the first fetched at once (`concurrency` at a time), when the first
/// page told how many there are; handed to `sink` in order. `first`: its request, body
/// and records, and whether pages are placed for a checkpoint.
#[allow(clippy::too_many_arguments)]
async fn fetch_rest<S: RecordSink>(
    client: &Client,
    concurrency: usize,
    resource: &Resource,
    rest: Vec<Url>,
    first: (&Request, Value, usize, bool),
    mut stats: Extracted,
    mut tally: Tally,
    sink: &mut S,
) -> Result<Extracted, ExtractError> {
    let (req, body, records, placed) = first;
    let records_len = records;
    if rest.len() as u64 + 1 > resource.max_pages {
        return Err(ExtractError::TooManyPages {
            resource: resource.name.clone(),
            max: resource.max_pages,
        });
    }
    let (sent, sent_headers) = (&req.body, &req.headers);
    let mut fetched = stream::iter(rest.into_iter().enumerate())
        .map(|(i, u)| async move {
            let page_no = i as u64 + 2;
            let page = Request {
                url: u.clone(),
                body: sent.clone(),
                headers: sent_headers.clone(),
            };
            let resp = client.fetch(resource.method, &page, &resource.name, page_no).await;
            (page_no, u, resp)
        })
        .buffered(concurrency);
    let (mut last, mut last_records) = (body, records_len);
    while let Some((page_no, u, resp)) = fetched.next().await {
        let Some(resp) = unless_ignored(resp, false, &mut stats)? else {
            continue;
        };
        let resp = decompressed(resp, resource, page_no, &u, client.max_response_size())?;
        let (body, records) = read_page(resource, page_no, &u, &resp)?;
        if placed {
            let req = Request {
                url: u.clone(),
                body: sent.clone(),
                headers: Vec::new(),
            };
            let (pages, read, fullest) = (stats.pages, stats.records, tally.fullest);
            sink.at(Place::Page {
                req: &req,
                pages,
                records: read,
                fullest,
            });
        }
        stats.pages += 1;
        stats.records += records.len() as u64;
        tally.page(resource, &body, records.len());
        if !sink.page(&records).await? {
            stats.stopped = true;
            return Ok(stats);
        }
        (last, last_records) = (body, records.len());
    }
    // Pages fetched at once end where the first page said; only the last may say
    // there is more (no `stop_when` here: it turns fetching at once off).
    tally.check(resource, stats.pages, &stats, &last, last_records, false)?;
    stats.total = tally.total;
    Ok(stats)
}

/// A response, or `None` for one an `ignore` rule held for: logged (`ends` when the pages
/// after it go unread) and counted.
fn unless_ignored<T>(
    fetched: Result<T, ExtractError>,
    ends: bool,
    stats: &mut Extracted,
) -> Result<Option<T>, ExtractError> {
    match fetched {
        Err(ExtractError::Ignored {
            resource,
            page,
            url,
            status,
            message,
        }) => {
            tracing::warn!(
                resource = %resource,
                page,
                status,
                url = %url,
                "{message}; ignored (on_response){}",
                if ends { "; the pages after it were not read" } else { "" }
            );
            stats.ignored += 1;
            Ok(None)
        }
        other => other.map(Some),
    }
}

/// The records a child resource makes its requests for: its parent's, in order.
pub(crate) type ParentRecords<'a> = futures_util::stream::BoxStream<'a, Result<Value, ExtractError>>;

/// What every request of one resource starts from: the client and base URL, the
/// resource's own parameters and body, and its incremental start.
#[derive(Clone, Copy)]
pub(crate) struct Requests<'a> {
    pub client: &'a Client,
    pub base_url: &'a str,
    pub params: &'a [(String, String)],
    pub headers: &'a [(String, String)],
    pub body: Option<&'a Value>,
    /// Where the requests go (`${VAR}`s resolved).
    pub target: &'a Target,
    /// The resource's export job, resolved.
    pub job: Option<&'a crate::resolve::ResolvedJob>,
    pub start: Option<&'a Value>,
    pub end: Option<&'a Value>,
    pub now: chrono::DateTime<chrono::Utc>,
    /// Where a checkpoint says this request sequence goes on.
    pub resume: Option<&'a crate::stage::checkpoint::At>,
}

/// Extract a `for_each` resource: one request (with its own pagination) per parent
/// record, up to `source.concurrency` at once, every record going to `sink`. The parent
/// records stream in and the records out, so memory does not grow with either.
pub(crate) async fn extract_children<S: RecordSink>(
    base: &Requests<'_>,
    pipeline: &Pipeline,
    resource: &Resource,
    parents: ParentRecords<'_>,
    sink: &mut S,
) -> Result<Extracted, ExtractError> {
    let Requests { start, end, now, .. } = *base;
    let parent_name = resource
        .for_each
        .as_ref()
        .map_or("for_each.values", |f| f.parent.as_str());
    let concurrency = pipeline.source().concurrency;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Handed>(concurrency * 2);
    // A recording (and its test) makes the requests of so many parents.
    let budget = base.client.tap().and_then(|t| t.parents).unwrap_or(u64::MAX);
    // Going on from a checkpoint: the parents done are not asked again, and those under
    // way drop the records already staged.
    let resumed = base.resume.and_then(|at| at.parents.as_ref());
    let base = &Requests { resume: None, ..*base };
    let fetching = async move {
        let mut total = Extracted::default();
        let mut calls = parents
            .take(usize::try_from(budget).unwrap_or(usize::MAX))
            .enumerate()
            .filter(|(i, _)| std::future::ready(resumed.is_none_or(|r| !r.is_done(*i as u64))))
            // Once the sink has had enough (or failed), no further request starts.
            .take_while(|_| std::future::ready(!tx.is_closed()))
            .map(|(i, parent)| {
                let tx = tx.clone();
                async move {
                    let record = i as u64 + 1;
                    let wrap = |e: ExtractError| ExtractError::ForParent {
                        parent: parent_name.to_string(),
                        record,
                        source: Box::new(e),
                    };
                    let parent = parent?;
                    let in_resource =
                        |e: ExtractError| wrap(ExtractError::Config(format!("resource `{}`: {e}", resource.name)));
                    let values = Values {
                        parent: Some(&parent),
                        start,
                        end,
                        now: Some(now),
                        job: None,
                    };
                    let mut sink = ChannelSink {
                        tx: tx.clone(),
                        parent: i as u64,
                        skip: resumed.and_then(|r| r.partial.get(&(i as u64)).copied()).unwrap_or(0),
                        attach: attachment(resource, &parent),
                        resource: &resource.name,
                    };
                    let got = extract_sequence(base, pipeline, resource, &values, &mut sink).await;
                    let got = match got {
                        Err(ExtractError::Config(e)) => Err(in_resource(ExtractError::Config(e))),
                        other => other,
                    };
                    let got = match got {
                        // Its first request ignored by a rule (`on_missing: skip` is the
                        // 404 one): this parent is skipped.
                        Ok(stats) if stats.ignored > 0 && stats.pages == 0 => None,
                        Ok(stats) => Some(stats),
                        Err(e) => return Err(wrap(e)),
                    };
                    // After its records, on the same channel: the writer knows it is done.
                    let _ = tx.send(Handed::Done(i as u64, got.clone())).await;
                    Ok(got)
                }
            })
            .buffer_unordered(concurrency);
        while let Some(outcome) = calls.next().await {
            match outcome? {
                Some(stats) => total.add(&stats),
                None => total.skipped += 1,
            }
        }
        Ok::<_, ExtractError>(total)
    };
    let writing = async move {
        while let Some(handed) = rx.recv().await {
            let (parent, batch) = match handed {
                Handed::Records(parent, batch) => (parent, batch),
                Handed::Done(parent, stats) => {
                    sink.at(Place::ParentDone(parent, stats.as_ref()));
                    continue;
                }
            };
            sink.at(Place::Parent(parent));
            let records = Records::Raw(batch.iter().map(|b| &**b).collect());
            if !sink.page(&records).await? {
                break;
            }
        }
        // Dropping the receiver here tells the requests to stop.
        Ok::<_, ExtractError>(())
    };
    let (fetched, written) = tokio::join!(fetching, writing);
    written?;
    fetched
}

/// The values of a child resource's `parent_path` columns in `parent`, as the JSON
/// object staged with each of its records (`None` when it has no such column).
fn attachment(resource: &Resource, parent: &Value) -> Option<String> {
    if resource.parent_paths.is_empty() {
        return None;
    }
    let mut values = serde_json::Map::new();
    for p in &resource.parent_paths {
        if let Some(v) = p.first(parent) {
            values.insert(p.as_str().to_string(), v.clone());
        }
    }
    Some(Value::Object(values).to_string())
}

/// A record of a child resource as it is staged: compact, with the parent's values in
/// [`PARENT_FIELD`] when there are any.
fn child_line(raw: &str, attach: Option<&str>) -> Result<Box<RawValue>, String> {
    let mut line = Vec::with_capacity(raw.len() + attach.map_or(0, |a| a.len() + 20));
    crate::stage::writer::compact_json(raw, &mut line);
    let text = String::from_utf8(line).map_err(|e| e.to_string())?;
    let Some(attach) = attach else {
        return RawValue::from_string(text).map_err(|e| e.to_string());
    };
    let keys: std::collections::HashMap<String, serde::de::IgnoredAny> = serde_json::from_str(&text).map_err(|_| {
        format!(
            "a record is not a JSON object, so the parent's values (`parent_path`) cannot go with it: {}",
            crate::util::clip(&text, 80)
        )
    })?;
    if keys.contains_key(PARENT_FIELD) {
        return Err(format!(
            "a record already has a `{PARENT_FIELD}` field, where sluice keeps the parent's values"
        ));
    }
    let rest = text.trim_start()[1..].trim_start();
    let comma = if rest.starts_with('}') { "" } else { "," };
    RawValue::from_string(format!("{{\"{PARENT_FIELD}\":{attach}{comma}{rest}")).map_err(|e| e.to_string())
}

/// What the requests of a `for_each` resource hand its writer: a parent's records, and
/// the end of a parent's requests (its counts; `None` when it was skipped).
enum Handed {
    Records(u64, Vec<Box<RawValue>>),
    Done(u64, Option<Extracted>),
}

/// Hands the pages of one child request to the writer of the whole resource.
struct ChannelSink<'a> {
    tx: tokio::sync::mpsc::Sender<Handed>,
    parent: u64,
    /// Records already staged (before a checkpoint), dropped.
    skip: u64,
    attach: Option<String>,
    resource: &'a str,
}

impl RecordSink for ChannelSink<'_> {
    async fn page(&mut self, records: &Records<'_>) -> Result<bool, ExtractError> {
        let attach = self.attach.as_deref();
        let owned = |text: &str| {
            child_line(text, attach).map_err(|e| ExtractError::Config(format!("resource `{}`: {e}", self.resource)))
        };
        let dropped = usize::try_from(self.skip).unwrap_or(usize::MAX).min(records.len());
        self.skip -= dropped as u64;
        let batch = match records {
            Records::Raw(raw) => raw[dropped..]
                .iter()
                .map(|r| owned(r.get()))
                .collect::<Result<Vec<_>, _>>()?,
            Records::Values(values) => values[dropped..]
                .iter()
                .map(|v| owned(&v.to_string()))
                .collect::<Result<Vec<_>, _>>()?,
        };
        if batch.is_empty() {
            return Ok(!self.tx.is_closed());
        }
        // A closed channel: the writer has had enough.
        Ok(self.tx.send(Handed::Records(self.parent, batch)).await.is_ok())
    }
}

/// A page whose body is a gzipped file, decompressed (within `limit`).
fn decompressed(
    resp: Response,
    resource: &Resource,
    page: u64,
    url: &Url,
    limit: u64,
) -> Result<Response, ExtractError> {
    let Response { headers, body } = resp;
    let body = decode::whole(body, resource.compression, limit).map_err(|e| match e {
        decode::DecodeError::TooLarge => ExtractError::TooLarge {
            resource: resource.name.clone(),
            page,
            url: crate::util::shown_url(url.as_str()),
            limit,
        },
        e => ExtractError::Body {
            resource: resource.name.clone(),
            page,
            url: crate::util::shown_url(url.as_str()),
            format: "gzip",
            detail: e.to_string(),
        },
    })?;
    Ok(Response { headers, body })
}

/// The loop's guards: no more than `max_pages`, and no request (URL and body) twice.
fn check_guards(
    resource: &Resource,
    page_no: u64,
    req: &Request,
    seen: &mut HashSet<String>,
) -> Result<(), ExtractError> {
    let url = &req.url;
    if page_no > resource.max_pages {
        return Err(ExtractError::TooManyPages {
            resource: resource.name.clone(),
            max: resource.max_pages,
        });
    }
    let key = match &req.body {
        Some(b) => format!("{url} {b}"),
        None => url.to_string(),
    };
    if !seen.insert(key) {
        return Err(ExtractError::RepeatedUrl {
            resource: resource.name.clone(),
            page: page_no,
            url: crate::util::shown_url(url.as_str()),
        });
    }
    Ok(())
}

/// A page split in one pass: the records of the array at top-level `field` as their raw
/// text, every other top-level value parsed (keys in sorted order, the last of a repeated
/// one kept). `None` when the page has no such field; an error when it is not an object
/// or the field is not an array.
fn split_page<'a>(body: &'a [u8], field: &str) -> serde_json::Result<Option<(Value, Vec<&'a RawValue>)>> {
    use serde::de::{Deserializer, MapAccess, Visitor};
    struct Split<'f>(&'f str);
    impl<'de> Visitor<'de> for Split<'_> {
        type Value = Option<(Value, Vec<&'de RawValue>)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut rest = std::collections::BTreeMap::new();
            let mut records = None;
            while let Some(key) = map.next_key::<String>()? {
                if key == self.0 {
                    records = Some(map.next_value::<Vec<&'de RawValue>>()?);
                    rest.insert(key, Value::Array(Vec::new()));
                } else {
                    let value = map.next_value::<Value>()?;
                    rest.insert(key, value);
                }
            }
            Ok(records.map(|r| (Value::Object(rest.into_iter().collect()), r)))
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let split = de.deserialize_map(Split(field))?;
    de.end()?;
    Ok(split)
}

fn read_page<'a>(
    resource: &Resource,
    page: u64,
    url: &Url,
    resp: &'a Response,
) -> Result<(Value, Records<'a>), ExtractError> {
    let not_json = |detail: String| ExtractError::NotJson {
        resource: resource.name.clone(),
        page,
        url: crate::util::shown_url(url.as_str()),
        detail,
        head: crate::util::head(&resp.body),
    };
    // The fast path hands the paginator the page without its records; a paginator that
    // reads into them gets the whole page.
    if let Some(field) = resource
        .records
        .array_field()
        .filter(|f| !paginator_reads(resource, *f))
    {
        let split = match field {
            None => serde_json::from_slice::<Vec<&RawValue>>(&resp.body).map(|r| Some((Value::Array(Vec::new()), r))),
            Some(field) => split_page(&resp.body, field),
        };
        // Not the expected shape (no such field, an array where an object was expected,
        // an error answer, …): the general path below says what is wrong, and only bytes
        // that are not JSON at all are called so.
        if let Ok(Some((rest, records))) = split.map(|s| s.filter(|(rest, _)| rest.get("errors").is_none())) {
            return Ok((rest, Records::Raw(records)));
        }
    }
    let body: Value = serde_json::from_slice(&resp.body).map_err(|e| not_json(e.to_string()))?;
    if let Some(messages) = api_errors(&body) {
        return Err(ExtractError::ApiErrors {
            resource: resource.name.clone(),
            page,
            messages,
        });
    }
    let selected: Vec<Value> = select_records(resource, page, url, &body)?
        .into_iter()
        .cloned()
        .collect();
    Ok((body, Records::Values(selected)))
}

/// A GraphQL-style error answer: a top-level `errors` list and no `data`; the messages.
fn api_errors(body: &Value) -> Option<String> {
    let errors = body.get("errors")?.as_array().filter(|e| !e.is_empty())?;
    if body.get("data").is_some_and(|d| !d.is_null()) {
        return None;
    }
    Some(
        errors
            .iter()
            .map(|e| match e.get("message").and_then(Value::as_str) {
                Some(m) => format!("\"{m}\""),
                None => crate::util::clip(&e.to_string(), 200),
            })
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// Whether a path of the paginator or of `stop_when` reads into the records array (the
/// top-level `field`, or the whole body when the records are the body itself).
fn paginator_reads(resource: &Resource, field: Option<&str>) -> bool {
    let mut paths = Vec::new();
    match &resource.paginator {
        Paginator::NextUrl { next } => paths.push(next),
        Paginator::PageNumber {
            total_pages: Some(t), ..
        } => paths.push(t),
        Paginator::Offset { total: Some(t), .. } => paths.push(t),
        Paginator::Cursor {
            from: CursorFrom::Body(c),
            ..
        } => paths.push(c),
        _ => {}
    }
    if let Some(s) = &resource.stop_when {
        paths.push(&s.path);
    }
    let c = &resource.completeness;
    paths.extend(c.total.iter().chain(&c.total_pages));
    paths.extend(c.has_more.as_ref().map(|m| &m.path));
    paths.iter().any(|p| match (field, p.first_field()) {
        (Some(f), Some(first)) => f == first,
        // A path that does not start with a field may read anything.
        _ => true,
    })
}

fn select_records<'a>(
    resource: &Resource,
    page: u64,
    url: &Url,
    body: &'a Value,
) -> Result<Vec<&'a Value>, ExtractError> {
    let records = resource.records.query(body);
    if records.is_empty() && !resource.records.container_exists(body) {
        return Err(ExtractError::RecordsMissing {
            resource: resource.name.clone(),
            page,
            url: crate::util::shown_url(url.as_str()),
            path: resource.records.as_str().to_string(),
            page_is: match records_hint(body) {
                Some(hint) => format!("{}; did you mean `records: {hint}`?", crate::util::describe(body)),
                None => crate::util::describe(body),
            },
        });
    }
    if let [Value::Array(items)] = records.as_slice() {
        return Err(ExtractError::RecordsIsArray {
            resource: resource.name.clone(),
            page,
            path: resource.records.as_str().to_string(),
            len: items.len(),
        });
    }
    Ok(records)
}
