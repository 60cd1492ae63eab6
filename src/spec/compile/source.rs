//! `source`: the base URL, auth, headers, retries, rate limit and concurrency.

use super::auth::compile_auth;
use super::{check_url, interp_map, Ctx};
use crate::spec::model::*;
use crate::spec::pipeline::{self as p};

/// `source`: everything the requests of every resource share.
pub(super) fn compile_source(cx: &mut Ctx, s: &RawSource) -> Option<p::Source> {
    let base_url = cx.interp("source.base_url", &s.base_url);
    if let Some(t) = &base_url {
        check_url(cx, "source.base_url", t);
    }
    let headers = interp_map(cx, "source.headers", &s.headers);
    let params = interp_map(cx, "source.params", &s.params);
    let auth = compile_auth(cx, &s.auth);
    let retry = compile_retry(cx, s.retry.as_ref());
    let timeout = s.timeout.map(|d| d.0).unwrap_or(std::time::Duration::from_secs(30));
    if timeout.is_zero() {
        cx.error("source.timeout", "a timeout of zero would fail every request");
    }
    let rate_limit = s.rate_limit.as_ref().map(|r| r.requests_per_second);
    if let Some(rps) = rate_limit {
        if !(rps > 0.0 && rps.is_finite()) {
            cx.error(
                "source.rate_limit.requests_per_second",
                "requests_per_second must be a positive number",
            );
        }
    }
    let concurrency = s.concurrency.unwrap_or(4);
    if !(1..=64).contains(&concurrency) {
        cx.error("source.concurrency", "concurrency must be between 1 and 64");
    }
    let allowed_hosts = allowed_hosts(cx, &s.allowed_hosts);
    let max_response_size = s.max_response_size.map(|b| b.0).unwrap_or(256 << 20);
    if max_response_size < 1024 {
        cx.error("source.max_response_size", "max_response_size must be at least 1KiB");
    }
    Some(p::Source {
        base_url: base_url?,
        headers: headers?,
        params: params?,
        auth: auth?,
        timeout,
        retry,
        rate_limit,
        concurrency: concurrency as usize,
        allowed_hosts,
        max_response_size,
    })
}

/// `source.retry`: attempts, back-off bounds and the statuses retried.
fn compile_retry(cx: &mut Ctx, retry: Option<&RawRetry>) -> p::Retry {
    let max_attempts = retry.and_then(|r| r.max_attempts).unwrap_or(5);
    if max_attempts == 0 {
        cx.error(
            "source.retry.max_attempts",
            "max_attempts counts the first attempt, so it must be at least 1",
        );
    }
    let initial_backoff = retry
        .and_then(|r| r.initial_backoff)
        .map(|d| d.0)
        .unwrap_or(std::time::Duration::from_millis(500));
    let max_backoff = retry
        .and_then(|r| r.max_backoff)
        .map(|d| d.0)
        .unwrap_or(std::time::Duration::from_secs(30));
    if initial_backoff > max_backoff {
        cx.error(
            "source.retry.initial_backoff",
            "initial_backoff is longer than max_backoff",
        );
    }
    let on_status = retry
        .and_then(|r| r.on_status.clone())
        .unwrap_or_else(|| vec![429, 500, 502, 503, 504]);
    for (i, s) in on_status.iter().enumerate() {
        if !(400..=599).contains(s) {
            cx.error(
                &format!("source.retry.on_status[{i}]"),
                format!("{s} is not an HTTP error status (400–599)"),
            );
        }
    }
    p::Retry {
        max_attempts,
        initial_backoff,
        max_backoff,
        on_status,
        max_wait: retry
            .and_then(|r| r.max_wait)
            .map(|d| d.0)
            .unwrap_or(std::time::Duration::from_secs(15 * 60)),
    }
}

/// `source.allowed_hosts`: host names (with a port at most), lowercased.
fn allowed_hosts(cx: &mut Ctx, hosts: &[String]) -> Vec<String> {
    let mut allowed_hosts = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let host = h.trim().to_ascii_lowercase();
        let valid = !host.is_empty()
            && url::Url::parse(&format!("http://{host}/")).is_ok_and(|u| {
                u.host_str().is_some() && u.username().is_empty() && u.path() == "/" && u.query().is_none()
            });
        if valid {
            allowed_hosts.push(host);
        } else {
            cx.error(
                &format!("source.allowed_hosts[{i}]"),
                format!("`{h}` is not a host name; write a host such as `cdn.example.com` or `cdn.example.com:8443`, without a scheme or path"),
            );
        }
    }
    allowed_hosts
}
