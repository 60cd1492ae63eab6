//! Recorded API answers: what `sluice record` writes and `sluice test` serves. A [`Tap`] on
//! the HTTP client either keeps every exchange (method, URL, request body, status, the
//! response headers and body) or sends every request to the loopback [`server`] that
//! answers from a recording. The files ([`Recording`]) hold no secret: every value the run
//! knows as one is masked, and what is written is searched for them again.

pub(crate) mod server;

use std::sync::Mutex;

use url::Url;

/// The header that carries a request's real URL to the replay server.
pub(crate) const URL_HEADER: &str = "x-sluice-url";
/// The resource and page of a request, for the replay server's report.
pub(crate) const RESOURCE_HEADER: &str = "x-sluice-resource";
pub(crate) const PAGE_HEADER: &str = "x-sluice-page";

/// Response headers never kept: they change from one answer to the next or describe the
/// connection, not the answer.
const VOLATILE: &[&str] = &[
    "date",
    "server",
    "set-cookie",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "age",
    "etag",
    "last-modified",
    "expires",
    "cache-control",
    "vary",
    "via",
    "alt-svc",
    "nel",
    "report-to",
    "strict-transport-security",
    "content-security-policy",
    "x-frame-options",
    "x-xss-protection",
    "x-content-type-options",
    "referrer-policy",
    "permissions-policy",
    "x-request-id",
    "request-id",
    "x-runtime",
    "x-served-by",
    "x-timer",
    "x-cache",
    "x-cache-hits",
    "cf-ray",
    "cf-cache-status",
    "x-github-request-id",
    "x-amzn-requestid",
    "x-amz-request-id",
    "x-amz-id-2",
    "x-amz-cf-id",
    "x-amz-cf-pop",
];

/// One request and its answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Exchange {
    /// The resource that made it (`(auth)` for a token or login request).
    pub resource: String,
    /// Its page, 1-based (0 for a token or login request).
    pub page: u64,
    pub method: String,
    /// The URL, secrets masked.
    pub url: String,
    /// The request body, secrets masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    pub status: u16,
    /// The response headers that are part of the answer, lowercase names, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// The file beside the index that holds the response body.
    #[serde(default)]
    pub file: String,
    /// The response body (in its file, not in the index).
    #[serde(skip)]
    pub response: Vec<u8>,
}

/// What the HTTP client does besides its requests.
#[derive(Debug)]
pub(crate) struct Tap {
    mode: Mode,
    /// Pages per resource (and per parent of a `for_each` resource).
    pub pages: Option<u64>,
    /// Parents (or `for_each` values) per `for_each` resource.
    pub parents: Option<u64>,
}

#[derive(Debug)]
enum Mode {
    Record(Mutex<Vec<Exchange>>),
    Replay { addr: std::net::SocketAddr },
}

impl Tap {
    /// Keep every exchange.
    pub(crate) fn record(pages: Option<u64>, parents: Option<u64>) -> Tap {
        Tap {
            mode: Mode::Record(Mutex::new(Vec::new())),
            pages,
            parents,
        }
    }

    /// Send every request to the replay server at `addr`.
    pub(crate) fn replay(addr: std::net::SocketAddr, pages: Option<u64>, parents: Option<u64>) -> Tap {
        Tap {
            mode: Mode::Replay { addr },
            pages,
            parents,
        }
    }

    /// Whether waits (retry backoff, poll intervals, the rate limit) are real: not when the
    /// answers are replayed.
    pub(crate) fn waits(&self) -> bool {
        matches!(self.mode, Mode::Record(_))
    }

    /// Where a request for `url` goes instead, and the headers that say what it is.
    pub(crate) fn route(&self, url: &Url, resource: &str, page: u64) -> Option<(Url, Vec<(&'static str, String)>)> {
        let Mode::Replay { addr } = &self.mode else {
            return None;
        };
        let to = Url::parse(&format!("http://{addr}/")).ok()?;
        Some((
            to,
            vec![
                (URL_HEADER, url.to_string()),
                (RESOURCE_HEADER, resource.to_string()),
                (PAGE_HEADER, page.to_string()),
            ],
        ))
    }

    /// Whether exchanges are kept (the body of a file is then read whole, to keep it).
    pub(crate) fn records(&self) -> bool {
        matches!(self.mode, Mode::Record(_))
    }

    /// Keep one exchange (when recording).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn keep(
        &self,
        resource: &str,
        page: u64,
        method: &str,
        url: &Url,
        body: Option<&str>,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        response: &[u8],
    ) {
        let Mode::Record(kept) = &self.mode else {
            return;
        };
        let headers = headers
            .iter()
            .filter(|(k, _)| !VOLATILE.contains(&k.as_str()))
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        kept.lock().unwrap_or_else(|e| e.into_inner()).push(Exchange {
            resource: resource.to_string(),
            page,
            method: method.to_string(),
            url: url.to_string(),
            body: body.map(str::to_string),
            status,
            headers,
            file: String::new(),
            response: response.to_vec(),
        });
    }

    /// The exchanges kept, in the order they were made.
    pub(crate) fn take(&self) -> Vec<Exchange> {
        match &self.mode {
            Mode::Record(kept) => std::mem::take(&mut *kept.lock().unwrap_or_else(|e| e.into_inner())),
            Mode::Replay { .. } => Vec::new(),
        }
    }
}

/// A recording: the index (`recording.json`) and one file per response body.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Recording {
    /// The pipeline recorded.
    pub pipeline: String,
    /// The run's time (`{now}`, open-ended date windows), replayed as it was.
    pub now: String,
    /// Pages per resource and parents per `for_each` resource that were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parents: Option<u64>,
    /// The resources recorded (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// The recording (its folder, relative to this one's) of the run this one follows:
    /// `sluice test` replays that one first, then this one from the incremental state it
    /// left (none: this run starts from each resource's `initial`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The environment variables the source reads that are not secrets, as they were.
    #[serde(default)]
    pub variables: std::collections::BTreeMap<String, String>,
    /// Those that are secrets, by name only: `sluice test` sets a stand-in when unset.
    #[serde(default)]
    pub secrets: Vec<String>,
    pub exchanges: Vec<Exchange>,
}

/// The index file of a recording folder.
pub(crate) const INDEX: &str = "recording.json";

impl Recording {
    /// Name each exchange's body file, in order: `0001-<resource>.<ext>`.
    pub(crate) fn name_files(&mut self) {
        for (i, x) in self.exchanges.iter_mut().enumerate() {
            let kind = x
                .headers
                .iter()
                .find(|(k, _)| k == "content-type")
                .map(|(_, v)| v.to_ascii_lowercase())
                .unwrap_or_default();
            let ext = if kind.contains("json") && !kind.contains("ndjson") && !kind.contains("jsonl") {
                "json"
            } else if kind.contains("csv") {
                "csv"
            } else if kind.contains("xml") || kind.contains("rss") {
                "xml"
            } else if kind.contains("ndjson") || kind.contains("jsonl") {
                "jsonl"
            } else if x.response.first().is_some_and(|b| matches!(b, b'{' | b'[')) {
                "json"
            } else {
                "txt"
            };
            let resource: String = x
                .resource
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' })
                .collect();
            x.file = format!("{:04}-{resource}.{ext}", i + 1);
        }
    }

    /// Write the recording into `dir` (replacing what was there): the index, then the
    /// bodies.
    pub(crate) fn write(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let tmp = dir.with_extension("recording-tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        for x in &self.exchanges {
            std::fs::write(tmp.join(&x.file), &x.response)?;
        }
        let mut index = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        index.push('\n');
        std::fs::write(tmp.join(INDEX), index)?;
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::rename(&tmp, dir)
    }

    /// Read the recording in `dir`.
    pub(crate) fn read(dir: &std::path::Path) -> Result<Recording, String> {
        let index = dir.join(INDEX);
        let text = std::fs::read_to_string(&index).map_err(|e| {
            format!(
                "cannot read {}: {e}; make it with `sluice record SPEC -o {}`",
                index.display(),
                dir.display()
            )
        })?;
        let mut r: Recording =
            serde_json::from_str(&text).map_err(|e| format!("{} is not a recording: {e}", index.display()))?;
        for x in &mut r.exchanges {
            let file = dir.join(&x.file);
            x.response = std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        }
        Ok(r)
    }
}
