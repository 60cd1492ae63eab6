//! Export jobs (`job:`): create the job, poll it until it is done (or failed, or out of
//! time), and name the download requests its result is read from.

use std::time::{Duration, Instant};

use serde_json::Value;
use url::Url;

use super::http::Client;
use super::paginate::{self, Request};
use super::{render_pairs, resource_url, ExtractError, Requests};
use crate::resolve::{ResolvedCall, ResolvedJob};
use crate::spec::pipeline::{Download, Job, Resource, Target};
use crate::spec::placeholder::{render_json, Values};

/// Run `resource`'s job for `values` to its end: the client the downloads go through
/// (allowed their hosts) and the first request of each download, in order.
pub(crate) async fn run_job(
    base: &Requests<'_>,
    resource: &Resource,
    job: &Job,
    resolved: &ResolvedJob,
    values: &Values<'_>,
) -> Result<(Client, Vec<Request>), ExtractError> {
    let name = &resource.name;
    let client = base.client;
    let create = call(base, resource, &resolved.create, values)?;
    let created = answer(client, resource, &resolved.create, &create, "create request", 1).await?;
    tracing::info!(resource = %name, "export job created");
    let with_job = Values {
        job: Some(&created),
        ..*values
    };
    let started = Instant::now();
    let mut polls = 0u64;
    let done = loop {
        polls += 1;
        let req = call(base, resource, &resolved.poll, &with_job)?;
        let (answer, wait) = poll_once(client, resource, &resolved.poll, &req, polls).await?;
        let state = job.until.path.first(&answer).cloned().unwrap_or(Value::Null);
        if job.fail_when.as_ref().is_some_and(|f| f.holds(&answer)) {
            let said = match &job.message {
                Some(m) => crate::spec::pipeline::say(m, Some(&answer)),
                None => crate::util::clip(&answer.to_string(), 300),
            };
            return Err(ExtractError::JobFailed {
                resource: name.clone(),
                polls,
                state: state.to_string(),
                message: client.mask(&said),
            });
        }
        if job.until.holds(&answer) {
            tracing::info!(resource = %name, polls, state = %state, "export job done");
            break answer;
        }
        let wait = wait.unwrap_or(job.every);
        if started.elapsed() + wait > job.timeout {
            return Err(ExtractError::JobTimeout {
                resource: name.clone(),
                polls,
                timeout_s: job.timeout.as_secs(),
                state: state.to_string(),
            });
        }
        if let Some(d) = client.deadline().filter(|d| wait >= d.usable()) {
            // The download's first page is what did not start.
            return Err(d.stopped(name, 1));
        }
        tracing::info!(resource = %name, polls, state = %state, wait_ms = wait.as_millis() as u64, "export job not done yet");
        client.pause(wait).await;
    };
    let urls = match &job.download {
        Download::Url(path) => download_urls(base.base_url, resource, path, &done)?,
        Download::Target(_) => {
            let target = resolved.download.as_ref().ok_or_else(|| {
                ExtractError::Config(format!("resource `{name}`: the job's download path was not resolved"))
            })?;
            let url = resource_url(base.base_url, resource, target, &with_job)?;
            vec![client.prepare(&url, base.params)]
        }
    };
    let mut downloads = client.clone();
    let mut out = Vec::new();
    for url in urls {
        downloads = downloads.allowing(&url);
        out.push(Request {
            url: paginate::first(&resource.paginator, &url),
            body: None,
            headers: base.headers.to_vec(),
        });
    }
    Ok((downloads, out))
}

/// The request of one job call, placeholders filled.
fn call(base: &Requests, resource: &Resource, c: &ResolvedCall, values: &Values) -> Result<Request, ExtractError> {
    let config = |e: String| ExtractError::Config(format!("resource `{}`: {e}", resource.name));
    let url = resource_url(base.base_url, resource, &c.target, values)?;
    let params = render_pairs(c.params.iter().chain(base.params), values).map_err(config)?;
    let headers = render_pairs(base.headers, values).map_err(config)?;
    Ok(Request {
        url: base.client.prepare(&url, &params),
        body: c
            .body
            .as_ref()
            .map(|b| render_json(b, values))
            .transpose()
            .map_err(config)?,
        headers,
    })
}

/// Make one job request and read its JSON answer.
async fn answer(
    client: &Client,
    resource: &Resource,
    c: &ResolvedCall,
    req: &Request,
    what: &str,
    page: u64,
) -> Result<Value, ExtractError> {
    let in_job = |e| in_job(what, e);
    let resp = client
        .fetch(c.method, req, &resource.name, page)
        .await
        .map_err(in_job)?;
    json(resource, req, &resp.body, page).map_err(in_job)
}

/// One poll: its answer, and the wait its `Retry-After` asks for.
async fn poll_once(
    client: &Client,
    resource: &Resource,
    c: &ResolvedCall,
    req: &Request,
    n: u64,
) -> Result<(Value, Option<Duration>), ExtractError> {
    let in_job = |e| in_job(&format!("poll {n}"), e);
    let resp = client.fetch(c.method, req, &resource.name, 1).await.map_err(in_job)?;
    let wait = resp
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(super::http::parse_retry_after);
    Ok((json(resource, req, &resp.body, 1).map_err(in_job)?, wait))
}

/// `e`, said to be of the job's `what` (a deadline stays a deadline, which the Lambda
/// handler answers as such).
fn in_job(what: &str, e: ExtractError) -> ExtractError {
    match e {
        e @ ExtractError::Deadline { .. } => e,
        e => ExtractError::InJob {
            what: what.to_string(),
            source: Box::new(e),
        },
    }
}

fn json(resource: &Resource, req: &Request, body: &[u8], page: u64) -> Result<Value, ExtractError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ExtractError::NotJson {
        resource: resource.name.clone(),
        page,
        url: crate::util::shown_url(req.url.as_str()),
        detail: e.to_string(),
        head: crate::util::head(body),
    })?;
    if let Some(messages) = super::api_errors(&value) {
        return Err(ExtractError::ApiErrors {
            resource: resource.name.clone(),
            page,
            messages,
        });
    }
    Ok(value)
}

/// The URLs `path` names in the job's last answer: one, or a list; relative ones below
/// the base URL.
fn download_urls(
    base_url: &str,
    resource: &Resource,
    path: &crate::spec::jsonpath::JsonPath,
    done: &Value,
) -> Result<Vec<Url>, ExtractError> {
    let found = path.first(done);
    let texts: Vec<&str> = match found {
        Some(Value::String(s)) if !s.is_empty() => vec![s.as_str()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).collect()
        }
        other => {
            return Err(ExtractError::Config(format!(
                "resource `{}`: the export job is done, but `download.url: {}` is {} in its last answer, not a URL or a list of URLs; the answer is {}",
                resource.name,
                path.as_str(),
                other.map_or("missing".to_string(), crate::util::describe),
                crate::util::clip(&done.to_string(), 300)
            )))
        }
    };
    texts
        .into_iter()
        .map(|t| resource_url(base_url, resource, &Target::Url(t.to_string()), &Values::default()))
        .collect()
}
