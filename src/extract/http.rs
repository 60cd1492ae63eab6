//! The HTTP side of extraction: one client per pipeline with auth (see [`super::auth`]),
//! default headers and parameters, a per-request timeout, retries with backoff and `Retry-After`, and a
//! token-bucket rate limit. The only file that calls into reqwest.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, LOCATION};
use reqwest::StatusCode;
use tokio::sync::Mutex;
use url::Url;

use super::auth::{self, header_name, Credentials, TokenAuth};
use super::ExtractError;
use crate::spec::pipeline::{HttpMethod, Retry, Source};
use crate::util::{error_chain, head, shown_url, Secrets};

/// A fetched page: what the paginators look at.
#[derive(Debug)]
pub(crate) struct Response {
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A response whose body is read as it comes (a `jsonl`, `csv` or `xml` file).
pub(crate) struct Streamed {
    pub headers: HeaderMap,
    body: StreamedBody,
    secrets: Secrets,
}

/// A file's body as it comes, or read already (to be recorded).
enum StreamedBody {
    Live(reqwest::Response),
    Read(Option<Bytes>),
}

impl Streamed {
    /// The next chunk of the body; `None` at its end.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>, String> {
        match &mut self.body {
            StreamedBody::Live(body) => body.chunk().await.map_err(|e| {
                format!(
                    "the body broke off: {}",
                    self.secrets.mask(&error_chain(&e.without_url()))
                )
            }),
            StreamedBody::Read(rest) => Ok(rest.take()),
        }
    }
}

/// Cheap to clone: clones share the connection pool and the rate limit.
///
/// Credentials (auth and `source.headers`) go only to the origin of the base URL; a
/// request anywhere else (a `next` link, a `Link` header, a redirect) is refused unless
/// its host is in `source.allowed_hosts`, and then made without them. Redirects are
/// followed here, not by reqwest, so that each hop passes the same check.
#[derive(Clone)]
pub(crate) struct Client {
    inner: reqwest::Client,
    base_url: String,
    origin: url::Origin,
    allowed_hosts: Vec<String>,
    credentials: HeaderMap,
    query_auth: Option<(String, String)>,
    default_params: Vec<(String, String)>,
    retry: Retry,
    max_response_size: u64,
    limiter: Option<std::sync::Arc<RateLimiter>>,
    secrets: Secrets,
    /// What to check when the API refuses the credentials (401/403).
    auth_hint: String,
    oauth: Option<std::sync::Arc<TokenAuth>>,
    /// No request starts once less than the reserve is left before this instant.
    deadline: Option<Deadline>,
    /// Asked to stop at the next page boundary (a signal): no request starts after.
    stop: Stop,
    /// Per resource, its response rules (see [`Client::with_rules`]).
    rules: std::sync::Arc<std::collections::HashMap<String, Vec<crate::spec::pipeline::ResponseRule>>>,
    /// Recording the exchanges, or answering them from a recording.
    tap: Option<std::sync::Arc<crate::replay::Tap>>,
}

/// A request to stop a run at the next page boundary (SIGINT or SIGTERM), shared by
/// every request of the run: none starts after it, and one under way is cut off.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stop(std::sync::Arc<(std::sync::atomic::AtomicI32, tokio::sync::Notify)>);

impl Stop {
    /// Ask to stop, for `signal`.
    pub(crate) fn set(&self, signal: i32) {
        self.0 .0.store(signal, std::sync::atomic::Ordering::SeqCst);
        self.0 .1.notify_waiters();
    }

    /// The signal that asked to stop.
    pub(crate) fn signal(&self) -> Option<i32> {
        Some(self.0 .0.load(std::sync::atomic::Ordering::SeqCst)).filter(|s| *s != 0)
    }

    /// Resolves once asked to stop.
    pub(crate) async fn asked(&self) -> i32 {
        loop {
            let notified = self.0 .1.notified();
            if let Some(s) = self.signal() {
                return s;
            }
            notified.await;
        }
    }

    fn stopped(signal: i32, resource: &str, page: u64) -> ExtractError {
        ExtractError::Stopped {
            resource: resource.to_string(),
            page,
            signal,
        }
    }
}

/// A time by which the work must be over (a Lambda invocation's deadline), and how much
/// of it to keep for finishing cleanly: no request starts once less than `reserve` is left.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub at: Instant,
    pub reserve: Duration,
}

impl Deadline {
    /// The time left, when it is inside the reserve (no new work should start).
    pub(crate) fn too_close(&self) -> Option<Duration> {
        let left = self.at.saturating_duration_since(Instant::now());
        (left < self.reserve).then_some(left)
    }

    /// How long work may still take: the time left before the reserve.
    pub(crate) fn usable(&self) -> Duration {
        self.at
            .saturating_duration_since(Instant::now())
            .saturating_sub(self.reserve)
    }

    /// The error of resource `resource` stopped at page `page` by this deadline.
    pub(crate) fn stopped(&self, resource: &str, page: u64) -> ExtractError {
        ExtractError::Deadline {
            resource: resource.to_string(),
            page,
            left_ms: self.at.saturating_duration_since(Instant::now()).as_millis() as u64,
            reserve_ms: self.reserve.as_millis() as u64,
        }
    }
}

/// `GET` or `POST`, for messages and diagrams.
pub(crate) fn method_name(method: HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
    }
}

/// Redirect hops followed for one request.
const MAX_REDIRECTS: u32 = 10;

/// Whether a status is worth another attempt: one of `retry.on_status`, or a rate limit
/// that says it is used up (GitHub answers 403 with `X-RateLimit-Remaining: 0`).
fn retryable(retry: &Retry, status: StatusCode, headers: &HeaderMap) -> bool {
    retry.on_status.contains(&status.as_u16()) || (matches!(status.as_u16(), 403 | 429) && rate_limited(headers))
}

/// A wait the server asks for.
enum Wait {
    /// `Retry-After`: capped by `retry.max_backoff`.
    RetryAfter(Duration),
    /// A rate limit's reset time: waited for up to `retry.max_wait`.
    Reset(Duration),
}

/// Whether the response says its rate limit is used up (`X-RateLimit-Remaining: 0`).
fn rate_limited(headers: &HeaderMap) -> bool {
    headers
        .get("x-ratelimit-remaining")
        .or_else(|| headers.get("ratelimit-remaining"))
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0")
}

/// How long the server asks to wait: `Retry-After`, else a rate limit's reset time
/// (`X-RateLimit-Reset` / `RateLimit-Reset`, as epoch seconds or seconds from now).
fn server_wait(headers: &HeaderMap) -> Option<Wait> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(d) = header("retry-after").and_then(parse_retry_after) {
        return Some(Wait::RetryAfter(d));
    }
    let reset: u64 = header("x-ratelimit-reset")
        .or_else(|| header("ratelimit-reset"))?
        .trim()
        .parse()
        .ok()?;
    // Values this large are times, not delays.
    if reset > 1_000_000_000 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        Some(Wait::Reset(Duration::from_secs(reset.saturating_sub(now))))
    } else {
        Some(Wait::Reset(Duration::from_secs(reset)))
    }
}

/// One request as [`Client::attempt`] makes it: `target` is `url` with the query's
/// credentials, which only a `trusted` URL (the base URL's origin) gets.
#[derive(Clone, Copy)]
struct Ask<'a> {
    method: HttpMethod,
    url: &'a Url,
    target: &'a Url,
    body: Option<&'a serde_json::Value>,
    /// The resource's own headers.
    headers: &'a [(String, String)],
    trusted: bool,
    resource: &'a str,
    page: u64,
    /// A successful body is handed over unread.
    stream: bool,
}

/// What one request came back with.
enum Reply {
    Page(Response),
    Stream(Streamed),
    /// A response an `ignore` rule holds for.
    Ignored {
        status: u16,
        message: String,
    },
    Redirect {
        to: Url,
        status: StatusCode,
    },
}

/// A failed attempt: the status when there was one, the headers (for `Retry-After`), what
/// went wrong, and whether another attempt could help.
struct Failure {
    status: Option<StatusCode>,
    headers: Option<HeaderMap>,
    detail: String,
    transient: bool,
}

impl Client {
    /// Build the client from the spec's settings and the values resolved for it (see
    /// [`crate::resolve`]); a password in the base URL joins the secrets.
    pub(crate) fn new(
        source: &Source,
        resolved: &crate::resolve::ResolvedSource,
        secrets: &Secrets,
    ) -> Result<Self, ExtractError> {
        let base_url = resolved.base_url.clone();
        let base = Url::parse(&base_url).map_err(|e| {
            ExtractError::Config(format!(
                "source.base_url `{}` is not a valid URL: {e}",
                shown_url(&base_url)
            ))
        })?;
        if let Some(pw) = base.password() {
            secrets.add(pw);
            if let Some((decoded, _)) = url::form_urlencoded::parse(pw.as_bytes()).next() {
                secrets.add(&decoded);
            }
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &resolved.headers {
            let value = HeaderValue::from_str(value)
                .map_err(|_| ExtractError::Config(format!("the value of header `{name}` is not valid in a header")))?;
            headers.insert(header_name(name)?, value);
        }
        let Credentials { query_auth, oauth } = Credentials::add(&resolved.auth, &base, &mut headers)?;
        let default_params = resolved.params.clone();
        let inner = reqwest::Client::builder()
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(source.timeout)
            .connect_timeout(source.timeout.min(Duration::from_secs(10)))
            .gzip(true)
            .deflate(true)
            .build()
            .map_err(|e| ExtractError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            inner,
            origin: base.origin(),
            base_url,
            allowed_hosts: source.allowed_hosts.clone(),
            credentials: headers,
            query_auth,
            default_params,
            retry: source.retry.clone(),
            max_response_size: source.max_response_size,
            limiter: source.rate_limit.map(|r| std::sync::Arc::new(RateLimiter::new(r))),
            secrets: secrets.clone(),
            auth_hint: auth::hint(&source.auth),
            oauth,
            deadline: None,
            stop: Stop::default(),
            rules: Default::default(),
            tap: None,
        })
    }

    /// Follow the response rules of `p`'s resources.
    pub(crate) fn with_rules(mut self, p: &crate::spec::pipeline::Pipeline) -> Self {
        let rules = p
            .resources()
            .iter()
            .filter(|r| !r.on_response.is_empty())
            .map(|r| (r.name.clone(), r.on_response.clone()))
            .collect();
        self.rules = std::sync::Arc::new(rules);
        self
    }

    /// Record the exchanges, or answer them from a recording.
    pub(crate) fn with_tap(mut self, tap: Option<std::sync::Arc<crate::replay::Tap>>) -> Self {
        self.tap = tap;
        self
    }

    /// The tap, when recording or replaying.
    pub(crate) fn tap(&self) -> Option<&crate::replay::Tap> {
        self.tap.as_deref()
    }

    /// Whether page `page` is the last one a recording reads of a request sequence.
    pub(crate) fn last_page_recorded(&self, page: u64) -> bool {
        self.tap.as_ref().and_then(|t| t.pages).is_some_and(|n| page >= n)
    }

    /// Wait `d`, unless the answers are replayed (then there is nothing to wait for).
    pub(crate) async fn pause(&self, d: Duration) {
        if self.tap.as_ref().is_none_or(|t| t.waits()) {
            tokio::time::sleep(d).await;
        }
    }

    /// Stop starting requests near `deadline`.
    pub(crate) fn with_deadline(mut self, deadline: Option<Deadline>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Stop at the next page boundary when `stop` is set.
    pub(crate) fn with_stop(mut self, stop: Stop) -> Self {
        self.stop = stop;
        self
    }

    /// Refuse to start a request when less than the deadline's reserve is left, or once
    /// asked to stop.
    fn before_deadline(&self, resource: &str, page: u64) -> Result<(), ExtractError> {
        if let Some(signal) = self.stop.signal() {
            return Err(Stop::stopped(signal, resource, page));
        }
        match self.deadline {
            Some(d) if d.too_close().is_some() => Err(d.stopped(resource, page)),
            _ => Ok(()),
        }
    }

    /// `work`, cut off when the deadline's reserve is reached: a stalled request, a
    /// slow token answer or a rate limiter's wait ends the resource there, whatever
    /// the spec's own timeout.
    async fn bounded<T>(
        &self,
        work: impl std::future::Future<Output = T>,
        resource: &str,
        page: u64,
    ) -> Result<T, ExtractError> {
        let cut = async {
            match self.deadline {
                None => Ok(work.await),
                Some(d) => tokio::time::timeout(d.usable(), work)
                    .await
                    .map_err(|_| d.stopped(resource, page)),
            }
        };
        tokio::select! {
            done = cut => done,
            signal = self.stop.asked() => Err(Stop::stopped(signal, resource, page)),
        }
    }

    /// `text` with every secret masked.
    pub(crate) fn mask(&self, text: &str) -> String {
        self.secrets.mask(text)
    }

    /// The deadline requests must keep to.
    pub(crate) fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    /// The resolved base URL.
    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Add the default parameters to a URL.
    pub(crate) fn prepare(&self, url: &Url, resource_params: &[(String, String)]) -> Url {
        let mut url = url.clone();
        {
            let existing: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
            let mut q = url.query_pairs_mut();
            for (k, v) in self.default_params.iter().chain(resource_params) {
                if !existing.contains(k) {
                    q.append_pair(k, v);
                }
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        url
    }

    /// Whether `url` may be requested: `Ok(true)` on the base URL's origin (credentials
    /// go with it), `Ok(false)` on an allowed host (sent without them).
    fn trusted(&self, url: &Url, resource: &str, page: u64) -> Result<bool, ExtractError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ExtractError::Unfetchable {
                resource: resource.to_string(),
                page,
                url: shown_url(url.as_str()),
            });
        }
        if url.origin() == self.origin {
            return Ok(true);
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let with_port = url.port().map(|p| format!("{host}:{p}"));
        if self
            .allowed_hosts
            .iter()
            .any(|a| *a == host || Some(a) == with_port.as_ref())
        {
            return Ok(false);
        }
        Err(ExtractError::ForeignHost {
            resource: resource.to_string(),
            page,
            host: with_port.unwrap_or(host),
            origin: self.origin.ascii_serialization(),
            url: self.secrets.mask(&shown_url(url.as_str())),
        })
    }

    /// The most bytes a body may have (decompressed, for a compressed file).
    pub(crate) fn max_response_size(&self) -> u64 {
        self.max_response_size
    }

    /// This client, also allowed to fetch `url`'s host (without credentials): for the
    /// file an export job names, which may be a pre-signed link elsewhere.
    pub(crate) fn allowing(&self, url: &Url) -> Client {
        let mut c = self.clone();
        if url.origin() != self.origin {
            let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
            c.allowed_hosts.push(match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            });
        }
        c
    }

    /// Fetch one page with retries, following redirects. `page` is 1-based, for messages.
    pub(crate) async fn fetch(
        &self,
        method: HttpMethod,
        request: &super::paginate::Request,
        resource: &str,
        page: u64,
    ) -> Result<Response, ExtractError> {
        match self.fetch_reply(method, request, resource, page, false).await? {
            Reply::Page(r) => Ok(r),
            _ => Err(ExtractError::Config(format!(
                "resource `{resource}`: a page came back streamed"
            ))),
        }
    }

    /// Fetch one response whose successful body is read as it comes.
    pub(crate) async fn fetch_stream(
        &self,
        method: HttpMethod,
        request: &super::paginate::Request,
        resource: &str,
        page: u64,
    ) -> Result<Streamed, ExtractError> {
        match self.fetch_reply(method, request, resource, page, true).await? {
            Reply::Stream(r) => Ok(r),
            _ => Err(ExtractError::Config(format!(
                "resource `{resource}`: a file came back read"
            ))),
        }
    }

    async fn fetch_reply(
        &self,
        method: HttpMethod,
        request: &super::paginate::Request,
        resource: &str,
        page: u64,
        stream: bool,
    ) -> Result<Reply, ExtractError> {
        let (mut method, mut url) = (method, request.url.clone());
        let mut body = request.body.as_ref();
        for _ in 0..=MAX_REDIRECTS {
            let trusted = self.trusted(&url, resource, page)?;
            let ask = Ask {
                method,
                url: &url,
                target: &url,
                body,
                headers: &request.headers,
                trusted,
                resource,
                page,
                stream,
            };
            match self.attempts(ask).await? {
                r @ (Reply::Page(_) | Reply::Stream(_)) => return Ok(r),
                Reply::Ignored { status, message } => {
                    return Err(ExtractError::Ignored {
                        resource: resource.to_string(),
                        page,
                        url: self.secrets.mask(&shown_url(url.as_str())),
                        status,
                        message,
                    })
                }
                Reply::Redirect { to, status } => {
                    // As browsers do: 303, and 301/302 after a POST, continue with a GET.
                    if status == StatusCode::SEE_OTHER
                        || (method == HttpMethod::Post && matches!(status.as_u16(), 301 | 302))
                    {
                        method = HttpMethod::Get;
                        body = None;
                    }
                    url = to;
                }
            }
        }
        Err(ExtractError::Fetch {
            resource: resource.to_string(),
            method: method_name(method),
            page,
            url: self.secrets.mask(&shown_url(url.as_str())),
            status: None,
            attempts: 1,
            detail: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// One request, retried as the retry policy says (`ask.target` is made here).
    async fn attempts(&self, ask: Ask<'_>) -> Result<Reply, ExtractError> {
        let Ask {
            method,
            url,
            trusted,
            resource,
            page,
            ..
        } = ask;
        let mut target = url.clone();
        if let (Some((k, v)), true) = (&self.query_auth, trusted) {
            target.query_pairs_mut().append_pair(k, v);
        }
        let shown = self.secrets.mask(&shown_url(target.as_str()));
        let mut attempt = 0;
        // The token a 401 refused (its generation), to be renewed once.
        let (mut renew, mut renewed, mut used) = (None, false, None);
        loop {
            attempt += 1;
            if let (Some(l), true) = (&self.limiter, self.tap.as_ref().is_none_or(|t| t.waits())) {
                self.bounded(l.acquire(), resource, page).await?;
            }
            self.before_deadline(resource, page)?;
            let ask = Ask { target: &target, ..ask };
            let once = self.attempt(&ask, renew, &mut used);
            let failure = match self.bounded(once, resource, page).await? {
                Ok(reply) => return Ok(reply),
                Err(Ok(failure)) => failure,
                Err(Err(fatal)) => return Err(fatal),
            };
            // An OAuth2 token the API no longer takes: renew it, once, and ask again.
            if failure.status == Some(StatusCode::UNAUTHORIZED) && trusted && self.oauth.is_some() && !renewed {
                (renew, renewed) = (used, true);
                attempt -= 1;
                continue;
            }
            let failed = |detail: String| ExtractError::Fetch {
                resource: resource.to_string(),
                method: method_name(method),
                page,
                url: shown.clone(),
                status: failure.status.map(|s| s.as_u16()),
                attempts: attempt,
                detail,
            };
            if !failure.transient || attempt >= self.retry.max_attempts {
                return Err(failed(failure.detail.clone()));
            }
            let wait = match failure.headers.as_ref().and_then(server_wait) {
                Some(Wait::RetryAfter(d)) => d.min(self.retry.max_backoff),
                // A rate limit's reset is waited for, up to its own cap.
                Some(Wait::Reset(d)) if d > self.retry.max_wait => {
                    return Err(failed(format!(
                        "{}; the rate limit resets in {} s, longer than retry.max_wait = {} s",
                        failure.detail,
                        d.as_secs(),
                        self.retry.max_wait.as_secs()
                    )))
                }
                Some(Wait::Reset(d)) => {
                    tracing::warn!(
                        resource,
                        page,
                        wait_s = d.as_secs(),
                        max_wait_s = self.retry.max_wait.as_secs(),
                        "rate limited: waiting for the limit's reset"
                    );
                    d
                }
                None => backoff(&self.retry, attempt),
            };
            tracing::warn!(
                resource,
                page,
                attempt,
                status = failure.status.map(|s| s.as_u16()),
                wait_ms = wait.as_millis() as u64,
                "request failed, retrying: {}",
                failure.detail
            );
            // A wait that would pass the deadline's reserve is not begun.
            if let Some(d) = self.deadline.filter(|d| wait >= d.usable()) {
                return Err(d.stopped(resource, page));
            }
            self.pause(wait).await;
        }
    }

    /// One attempt: the reply, a failure that may be retried, or an error that ends the
    /// resource at once.
    /// `renew`: the generation of a token the API refused; `used` gets the one sent.
    async fn attempt(
        &self,
        ask: &Ask<'_>,
        renew: Option<u64>,
        used: &mut Option<u64>,
    ) -> Result<Reply, Result<Failure, ExtractError>> {
        let Ask {
            method,
            url,
            target,
            body,
            headers,
            trusted,
            resource,
            page,
            stream,
        } = *ask;
        let routed = self.tap.as_ref().and_then(|t| t.route(target, resource, page));
        let send_to = routed.as_ref().map_or(target, |(to, _)| to);
        let mut request = match method {
            HttpMethod::Get => self.inner.get(send_to.clone()),
            HttpMethod::Post => self.inner.post(send_to.clone()),
        };
        for (k, v) in routed.iter().flat_map(|(_, headers)| headers) {
            request = request.header(*k, v.as_str());
        }
        if trusted {
            request = request.headers(self.credentials.clone());
            for (k, v) in headers {
                request = request.header(k.as_str(), v.as_str());
            }
            if let Some(oauth) = &self.oauth {
                let (name, value, generation) = oauth
                    .header(&self.inner, &self.secrets, self.tap.as_deref(), renew, resource, page)
                    .await
                    .map_err(Err)?;
                *used = Some(generation);
                request = request.header(name, value);
            }
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let mask = |e: reqwest::Error| self.secrets.mask(&error_chain(&e.without_url()));
        let resp = match request.send().await {
            Ok(resp) => resp,
            Err(e) => {
                // A request that could not be built or sent for good (a bad URL) will not
                // work next time either; connect errors, resets and timeouts may. A POST is
                // made again only when it surely did not reach the server.
                let transient = match method {
                    HttpMethod::Get => !e.is_builder() && !e.is_redirect(),
                    HttpMethod::Post => e.is_connect(),
                };
                return Err(Ok(Failure {
                    status: None,
                    headers: None,
                    detail: mask(e),
                    transient,
                }));
            }
        };
        let status = resp.status();
        let keep = |headers: &HeaderMap, response: &[u8]| self.keep(ask, status, headers, response);
        if status.is_redirection() {
            if let Some(location) = resp.headers().get(LOCATION) {
                keep(resp.headers(), b"");
                let to = location.to_str().ok().and_then(|l| url.join(l).ok());
                return match to {
                    Some(to) => Ok(Reply::Redirect { to, status }),
                    None => Err(Ok(Failure {
                        status: Some(status),
                        headers: None,
                        detail: "the redirect's Location is not a valid URL".into(),
                        transient: false,
                    })),
                };
            }
        }
        let headers = resp.headers().clone();
        if stream && status.is_success() {
            // A file's body is not read here: only rules on the status apply to it.
            let rule = self.rules.get(resource).and_then(|rules| {
                rules
                    .iter()
                    .find(|r| r.when.is_none() && r.holds(status.as_u16(), || None))
            });
            if rule.is_none() {
                return self.streamed(resp, ask, headers).await;
            }
        }
        let body = self.read_body(resp, ask).await?;
        keep(&headers, &body);
        // The body as JSON, parsed once, only when a rule reads it.
        let parsed = std::cell::OnceCell::new();
        let json = || {
            parsed
                .get_or_init(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
                .as_ref()
        };
        let rule = self
            .rules
            .get(resource)
            .and_then(|rules| rules.iter().find(|r| r.holds(status.as_u16(), json)));
        if let Some(rule) = rule {
            use crate::spec::pipeline::ResponseAction;
            let said = self.secrets.mask(&rule.say(status.as_u16(), json()));
            let transient = match rule.action {
                ResponseAction::Ignore => {
                    return Ok(Reply::Ignored {
                        status: status.as_u16(),
                        message: said,
                    })
                }
                ResponseAction::Retry => true,
                ResponseAction::Fail => false,
            };
            return Err(Ok(Failure {
                status: Some(status),
                detail: said,
                transient,
                headers: Some(headers),
            }));
        }
        if status.is_success() {
            return Ok(Reply::Page(Response { headers, body }));
        }
        let mut detail = self.secrets.mask(&head(&body));
        if matches!(status.as_u16(), 403 | 429) && rate_limited(&headers) {
            detail = format!("rate limited (the API's limit is used up): {detail}");
        } else if matches!(status.as_u16(), 401 | 403) && trusted {
            detail = format!("{detail}; {}", self.auth_hint);
        }
        Err(Ok(Failure {
            status: Some(status),
            detail,
            transient: match method {
                HttpMethod::Get => retryable(&self.retry, status, &headers),
                // Not done, as the server says, and to be asked again later.
                HttpMethod::Post => matches!(status.as_u16(), 429 | 503) && headers.contains_key("retry-after"),
            },
            headers: Some(headers),
        }))
    }

    /// Keep an exchange, when recording.
    fn keep(&self, ask: &Ask<'_>, status: StatusCode, headers: &HeaderMap, response: &[u8]) {
        if let Some(tap) = &self.tap {
            let sent = ask.body.map(|b| b.to_string());
            let (method, target) = (method_name(ask.method), ask.target);
            tap.keep(
                ask.resource,
                ask.page,
                method,
                target,
                sent.as_deref(),
                status.as_u16(),
                headers,
                response,
            );
        }
    }

    /// A file's reply: its body as it comes or, when recording, read whole (a recording
    /// reads a few pages) and kept first.
    async fn streamed(
        &self,
        resp: reqwest::Response,
        ask: &Ask<'_>,
        headers: HeaderMap,
    ) -> Result<Reply, Result<Failure, ExtractError>> {
        let status = resp.status();
        let body = match self.tap.as_ref().filter(|t| t.records()) {
            Some(_) => {
                let read = self.read_body(resp, ask).await?;
                self.keep(ask, status, &headers, &read);
                StreamedBody::Read(Some(read))
            }
            None => StreamedBody::Live(resp),
        };
        Ok(Reply::Stream(Streamed {
            headers,
            body,
            secrets: self.secrets.clone(),
        }))
    }

    /// The body of `resp`, at most `max_response_size` bytes, in blocks of its own size.
    async fn read_body(
        &self,
        mut resp: reqwest::Response,
        ask: &Ask<'_>,
    ) -> Result<Bytes, Result<Failure, ExtractError>> {
        let status = resp.status();
        let mask = |e: reqwest::Error| self.secrets.mask(&error_chain(&e.without_url()));
        let (resource, page, target, method) = (ask.resource, ask.page, ask.target, ask.method);
        let limit = self.max_response_size;
        // The chunks as they come, joined once at the end (each freed as it is copied):
        // memory is bounded by `max_response_size`, not by the twice of it a growing
        // buffer's reallocation would take.
        // Copied into blocks of our own: a chunk may hold on to a larger buffer than its
        // bytes.
        // A block is no larger than the body says it is, so a small page takes a small one.
        const BLOCK: usize = 1 << 20;
        let block_size = resp.content_length().map_or(BLOCK, |n| BLOCK.min(n as usize));
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        let mut received = 0usize;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    received += chunk.len();
                    if received as u64 > limit {
                        return Err(Err(ExtractError::TooLarge {
                            resource: resource.to_string(),
                            page,
                            url: self.secrets.mask(&shown_url(target.as_str())),
                            limit,
                        }));
                    }
                    let mut rest = &chunk[..];
                    while !rest.is_empty() {
                        if chunks.last().is_none_or(|b| b.len() == b.capacity()) {
                            chunks.push(Vec::with_capacity(block_size.max(rest.len().min(BLOCK))));
                        }
                        let block = chunks.last_mut().expect("a block");
                        let n = rest.len().min(block.capacity() - block.len());
                        block.extend_from_slice(&rest[..n]);
                        rest = &rest[n..];
                    }
                }
                Ok(None) => break,
                // The body broke off (a reset, a timeout): a GET may be made again.
                Err(e) => {
                    return Err(Ok(Failure {
                        status: Some(status),
                        headers: None,
                        detail: format!("reading the body failed: {}", mask(e)),
                        transient: method == HttpMethod::Get,
                    }))
                }
            }
        }
        Ok(match chunks.len() {
            0 => Bytes::new(),
            1 => Bytes::from(chunks.pop().expect("one block")),
            _ => {
                let mut body = Vec::with_capacity(received);
                for chunk in chunks.drain(..) {
                    body.extend_from_slice(&chunk);
                }
                Bytes::from(body)
            }
        })
    }
}

/// Exponential backoff with full jitter: a random wait in [0, min(max, initial·2^(n-1))].
pub(crate) fn backoff(retry: &Retry, attempt: u32) -> Duration {
    let cap = retry
        .initial_backoff
        .saturating_mul(1u32 << (attempt - 1).min(20))
        .min(retry.max_backoff);
    let millis = cap.as_millis() as u64;
    Duration::from_millis(if millis == 0 { 0 } else { rand::random_range(0..=millis) })
}

/// `Retry-After`: delay seconds or an HTTP date.
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Token bucket with a burst of one: requests are spaced 1/rate apart.
struct RateLimiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    fn new(per_second: f64) -> Self {
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / per_second),
            next: Mutex::new(Instant::now()),
        }
    }

    async fn acquire(&self) {
        let wait = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + self.interval;
            at - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        let future = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        let d = parse_retry_after(&future).unwrap();
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{d:?}");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = Retry {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            on_status: vec![429],
            max_wait: Duration::from_secs(900),
        };
        for attempt in 1..10 {
            let cap = Duration::from_millis((100u64 << (attempt - 1)).min(500));
            assert!(backoff(&r, attempt) <= cap);
        }
    }
}
