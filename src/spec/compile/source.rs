//! `source`: the base URL, auth, headers, retries, rate limit and concurrency.

use super::{check_url, interp_map, Ctx};
use crate::spec::model::*;
use crate::spec::pipeline::{self as p};

pub(super) fn compile_source(cx: &mut Ctx, s: &RawSource) -> Option<p::Source> {
    let base_url = cx.interp("source.base_url", &s.base_url);
    if let Some(t) = &base_url {
        check_url(cx, "source.base_url", t);
    }
    let headers = interp_map(cx, "source.headers", &s.headers);
    let params = interp_map(cx, "source.params", &s.params);
    let auth = match &s.auth {
        RawAuth::Keyword(AuthKeyword::None) => Some(p::Auth::None),
        RawAuth::Config(RawAuthConfig::Bearer { token }) => cx
            .secret("source.auth.token", token)
            .map(|token| p::Auth::Bearer { token }),
        RawAuth::Config(RawAuthConfig::ApiKey { name, value, location }) => {
            if name.trim().is_empty() {
                cx.error("source.auth.name", "the API key needs a header or parameter name");
            }
            cx.secret("source.auth.value", value).map(|value| p::Auth::ApiKey {
                name: name.clone(),
                value,
                location: *location,
            })
        }
        RawAuth::Config(RawAuthConfig::Basic { username, password }) => {
            let u = cx.interp("source.auth.username", username);
            let pw = cx.secret("source.auth.password", password);
            u.zip(pw)
                .map(|(username, password)| p::Auth::Basic { username, password })
        }
        RawAuth::Config(RawAuthConfig::Oauth2 {
            grant,
            token_url,
            client_id,
            client_secret,
            refresh_token,
            scopes,
        }) => {
            let url = cx.interp("source.auth.token_url", token_url);
            if let Some(t) = &url {
                check_url(cx, "source.auth.token_url", t);
            }
            let id = cx.interp("source.auth.client_id", client_id);
            let secret = cx.secret("source.auth.client_secret", client_secret);
            let refresh = match (grant, refresh_token) {
                (OAuth2Grant::RefreshToken, None) => {
                    cx.error("source.auth", "`grant: refresh_token` needs `refresh_token`");
                    None
                }
                (OAuth2Grant::ClientCredentials, Some(_)) => {
                    cx.error_at_key(
                        "source.auth.refresh_token",
                        "`refresh_token` goes with `grant: refresh_token`",
                    );
                    None
                }
                (_, Some(t)) => cx.secret("source.auth.refresh_token", t).map(Some),
                (_, None) => Some(None),
            };
            match (url, id, secret, refresh) {
                (Some(token_url), Some(client_id), Some(client_secret), Some(refresh_token)) => Some(p::Auth::OAuth2 {
                    grant: *grant,
                    token_url,
                    client_id,
                    client_secret,
                    refresh_token,
                    scopes: scopes.clone(),
                }),
                _ => None,
            }
        }
    };
    let retry = s.retry.as_ref();
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
    let mut allowed_hosts = Vec::new();
    for (i, h) in s.allowed_hosts.iter().enumerate() {
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
        retry: p::Retry {
            max_attempts,
            initial_backoff,
            max_backoff,
            on_status,
        },
        rate_limit,
        concurrency: concurrency as usize,
        allowed_hosts,
        max_response_size,
    })
}
