//! The compile pass: raw spec → validated [`Pipeline`]. Pure and offline: no
//! environment, no network. Every problem is collected, each at the line and column of
//! the field it is about, so one `sluice validate` run shows them all.

use std::collections::{BTreeMap, HashMap, HashSet};

use sha2::{Digest, Sha256};

use super::diagnostic::{did_you_mean, Diagnostic};
use super::ident::check_identifier;
use super::interp::Interp;
use super::jsonpath::JsonPath;
use super::model::*;
use super::parse::Parsed;
use super::tree::Positions;
/// Names PostgreSQL gives every table's system columns.
const SYSTEM_COLUMNS: [&str; 6] = ["tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"];

use super::pipeline::{self as p, KeyTemplate, Pipeline, Reference, ValueSource, DEFAULT_KEY, RUN_ID_COLUMN};

struct Ctx<'a> {
    file: &'a str,
    positions: &'a Positions,
    diagnostics: Vec<Diagnostic>,
    /// Every table that compiled, with its field path, for the cross-table checks.
    tables: Vec<(String, p::Table)>,
    /// While a resource's own table compiles: whether the resource has `for_each`.
    child_resource: bool,
    warnings: Vec<Diagnostic>,
}

impl Ctx<'_> {
    /// An error about the value at `path`.
    fn error(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.positions.value(path);
        self.diagnostics.push(Diagnostic::new(self.file, pos, path, message));
    }

    /// A warning about the value at `path`.
    fn warn(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.positions.value(path);
        self.warnings.push(Diagnostic::warning(self.file, pos, path, message));
    }

    /// An error about the key at `path` (for a field that should not be there).
    fn error_at_key(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.positions.key(path);
        self.diagnostics.push(Diagnostic::new(self.file, pos, path, message));
    }

    fn interp(&mut self, path: &str, raw: &str) -> Option<Interp> {
        match Interp::parse(raw) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(path, e);
                None
            }
        }
    }

    /// A secret must come from the environment, never be written in the spec.
    fn secret(&mut self, path: &str, raw: &str) -> Option<Interp> {
        let t = self.interp(path, raw)?;
        // An empty value holds no secret (Stripe: the key is the user, the password empty).
        if !t.has_vars() && !raw.is_empty() {
            self.error(
                path,
                "secrets must come from the environment: write `${SOME_VARIABLE}` instead of the value",
            );
            return None;
        }
        // `${TOKEN:-sk_live_…}`: the default is the secret, written in the spec.
        if let Some((name, _)) = t.defaults().first() {
            self.error(
                path,
                format!("`${{{name}:-…}}` writes a default into the spec, and the default of a secret is a secret; drop the default (`${{{name}}}`) and set the variable"),
            );
            return None;
        }
        Some(t)
    }

    fn jsonpath(&mut self, path: &str, text: &str) -> Option<JsonPath> {
        match JsonPath::parse(text) {
            Ok(p) => Some(p),
            Err(e) => {
                self.error(path, e);
                None
            }
        }
    }

    fn ident(&mut self, path: &str, name: &str) -> bool {
        match check_identifier(name) {
            Ok(()) => true,
            Err(e) => {
                self.error(path, format!("invalid name: {e}"));
                false
            }
        }
    }
}

/// Compile a parsed spec. `text` is the file's content (hashed into the pipeline).
pub fn compile(file: &str, text: &str, parsed: &Parsed) -> Result<Pipeline, Vec<Diagnostic>> {
    let mut cx = Ctx {
        file,
        positions: &parsed.positions,
        diagnostics: Vec::new(),
        tables: Vec::new(),
        child_resource: false,
        warnings: Vec::new(),
    };
    let spec = &parsed.spec;
    if spec.version != 1 {
        cx.error(
            "version",
            format!("unsupported spec version {}; this sluice reads version 1", spec.version),
        );
    }
    let name_ok = !spec.name.is_empty()
        && spec.name.len() <= 63
        && spec.name.starts_with(|c: char| c.is_ascii_lowercase())
        && spec
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !name_ok {
        cx.error(
            "name",
            format!(
                "invalid pipeline name `{}`: use lowercase letters, digits, `_` and `-`, starting with a letter",
                spec.name
            ),
        );
    }
    let source = compile_source(&mut cx, &spec.source);
    let staging = compile_staging(&mut cx, &spec.staging);
    let warehouse = compile_warehouse(&mut cx, &spec.warehouse);
    if let Some(Err(e)) = spec
        .runtime
        .as_ref()
        .and_then(|r| r.schedule.as_deref())
        .map(check_schedule)
    {
        cx.error("runtime.schedule", e);
    }
    let runtime = spec.runtime.as_ref().map(|r| compile_runtime(&mut cx, r));
    if spec.resources.is_empty() {
        cx.error("resources", "a pipeline needs at least one resource");
    }
    let resources: Vec<Option<p::Resource>> = spec
        .resources
        .iter()
        .enumerate()
        .map(|(i, r)| compile_resource(&mut cx, &format!("resources[{i}]"), r))
        .collect();
    check_names_unique(&mut cx, spec);
    check_for_each(&mut cx, spec);
    check_references(&mut cx, spec);
    let all: Vec<p::Resource> = resources.into_iter().flatten().collect();
    if !cx.diagnostics.is_empty() {
        let mut d = cx.diagnostics;
        d.sort_by_key(|d| (d.line, d.column));
        d.dedup();
        return Err(d);
    }
    let (Some(source), Some(staging), Some(warehouse)) = (source, staging, warehouse) else {
        unreachable!("a part that failed to compile reported a diagnostic");
    };
    Ok(Pipeline {
        file: file.to_string(),
        name: spec.name.clone(),
        description: spec.description.clone(),
        spec_hash: hex::encode(Sha256::digest(text.as_bytes())),
        source,
        staging,
        warehouse,
        runtime,
        resources: all,
        warnings: cx.warnings,
    })
}

/// `runtime`: the AWS sizes, each within what Lambda takes.
fn compile_runtime(cx: &mut Ctx, r: &super::model::RawRuntime) -> p::Runtime {
    const MIB: u64 = 1 << 20;
    let mut mib = |field: &str, size: Option<super::units::ByteSize>, (lo, hi): (u64, u64)| {
        let b = size?.0;
        if b % MIB != 0 || !(lo..=hi).contains(&(b / MIB)) {
            cx.error(
                &format!("runtime.{field}"),
                format!("{field} must be whole MiB from {lo}MiB to {hi}MiB (what AWS Lambda takes), not {b} bytes"),
            );
            return None;
        }
        Some(b / MIB)
    };
    let memory_mib = mib("memory", r.memory, (128, 10240));
    let ephemeral_mib = mib("ephemeral_storage", r.ephemeral_storage, (512, 10240));
    let timeout_s = r.timeout.and_then(|t| {
        let s = t.0.as_secs();
        if t.0.subsec_nanos() != 0 || !(1..=900).contains(&s) {
            cx.error(
                "runtime.timeout",
                "timeout must be whole seconds from 1s to 15m (what AWS Lambda takes)",
            );
            return None;
        }
        Some(s)
    });
    if r.concurrency == Some(0) {
        cx.error(
            "runtime.concurrency",
            "concurrency must be at least 1 (0 would stop every extraction)",
        );
    }
    p::Runtime {
        target: r.target,
        region: r.region.clone(),
        schedule: r.schedule.clone(),
        memory_mib,
        timeout_s,
        ephemeral_mib,
        concurrency: r.concurrency.filter(|c| *c > 0),
    }
}

fn check_url(cx: &mut Ctx, path: &str, t: &Interp) {
    // Only a URL that is fully known offline can be checked here.
    let Some(url) = t.offline() else { return };
    match url::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(u) => cx.error(
            path,
            format!(
                "`{url}` must be an http:// or https:// URL with a host, not `{}:`",
                u.scheme()
            ),
        ),
        Err(e) => cx.error(path, format!("`{url}` is not a valid URL: {e}")),
    }
}

/// An EventBridge schedule expression: `rate(1 hour)`, `rate(5 minutes)` (singular unit
/// for 1, plural otherwise, as EventBridge requires) or `cron(…)` with six fields.
fn check_schedule(text: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid schedule `{text}`: {why}; write `rate(5 minutes)`, `rate(1 hour)` or `cron(0 6 * * ? *)` (EventBridge's forms)"
        ))
    };
    if let Some(inner) = text.strip_prefix("rate(").and_then(|t| t.strip_suffix(')')) {
        let Some((n, unit)) = inner.trim().split_once(' ') else {
            return bad("a rate is a number and a unit");
        };
        let Ok(n) = n.parse::<u32>() else {
            return bad("the rate's number is not a whole number");
        };
        let singular = ["minute", "hour", "day"];
        return match (n, unit.trim()) {
            (0, _) => bad("the rate must be at least 1"),
            (1, u) if singular.contains(&u) => Ok(()),
            (1, _) => bad("with 1 the unit is singular: minute, hour or day"),
            (_, "minutes" | "hours" | "days") => Ok(()),
            _ => bad("the unit is minutes, hours or days"),
        };
    }
    if let Some(inner) = text.strip_prefix("cron(").and_then(|t| t.strip_suffix(')')) {
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let [_, _, dom, _, dow, _] = fields.as_slice() else {
            return bad(&format!(
                "a cron expression has 6 fields (minutes hours day-of-month month day-of-week year), not {}",
                fields.len()
            ));
        };
        for (field, spec) in fields.iter().zip(CRON_FIELDS) {
            if let Err(why) = check_cron_field(field, &spec) {
                return bad(&format!("its {} field `{field}` {why}", spec.name));
            }
        }
        if (*dom == "?") == (*dow == "?") {
            return bad("exactly one of day-of-month and day-of-week must be `?`");
        }
        return Ok(());
    }
    bad("not a rate(…) or cron(…) expression")
}

/// One field of an EventBridge cron expression: its name, range, the names its values
/// may have (from the low end) and the special characters it takes beyond `, - * /`.
struct CronField {
    name: &'static str,
    range: (u32, u32),
    names: &'static [&'static str],
    special: &'static str,
}

const CRON_FIELDS: [CronField; 6] = [
    CronField {
        name: "minutes",
        range: (0, 59),
        names: &[],
        special: "",
    },
    CronField {
        name: "hours",
        range: (0, 23),
        names: &[],
        special: "",
    },
    CronField {
        name: "day-of-month",
        range: (1, 31),
        names: &[],
        special: "?LW",
    },
    CronField {
        name: "month",
        range: (1, 12),
        names: &[
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ],
        special: "",
    },
    CronField {
        name: "day-of-week",
        range: (1, 7),
        names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
        special: "?L#",
    },
    CronField {
        name: "year",
        range: (1970, 2199),
        names: &[],
        special: "",
    },
];

/// Whether `text` is a valid value of `f`, as EventBridge reads it.
fn check_cron_field(text: &str, f: &CronField) -> Result<(), String> {
    let value = |v: &str| -> Result<u32, String> {
        let upper = v.to_ascii_uppercase();
        let n = match f.names.iter().position(|n| *n == upper) {
            Some(i) => f.range.0 + i as u32,
            None => v
                .parse::<u32>()
                .map_err(|_| format!("has `{v}`, which is not a value"))?,
        };
        if !(f.range.0..=f.range.1).contains(&n) {
            return Err(format!("has {n}, outside {}-{}", f.range.0, f.range.1));
        }
        Ok(n)
    };
    if text == "?" && f.special.contains('?') {
        return Ok(());
    }
    for item in text.split(',') {
        if f.special.contains('L') && (item == "L" || item == "LW") {
            continue;
        }
        // `15W` (the weekday nearest the 15th), `5L` (the last Thursday), `3#2` (the
        // second Tuesday).
        if let Some(n) = item.strip_suffix('W').filter(|_| f.special.contains('W')) {
            value(n)?;
            continue;
        }
        if let Some(n) = item
            .strip_suffix('L')
            .filter(|_| f.special.contains('L') && f.name == "day-of-week")
        {
            value(n)?;
            continue;
        }
        if let Some((n, k)) = item.split_once('#').filter(|_| f.special.contains('#')) {
            value(n)?;
            if !matches!(k, "1" | "2" | "3" | "4" | "5") {
                return Err(format!("has `#{k}`; the week of the month is 1 to 5"));
            }
            continue;
        }
        let (span, step) = match item.split_once('/') {
            Some((span, step)) => (span, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            if step.parse::<u32>().map_or(true, |n| n == 0) {
                return Err(format!("has the step `/{step}`, which is not a whole number from 1"));
            }
        }
        match span {
            "*" => {}
            "" => return Err("has an empty value".into()),
            _ => match span.split_once('-') {
                Some((a, b)) => {
                    value(a)?;
                    value(b)?;
                }
                None => {
                    value(span)?;
                }
            },
        }
    }
    Ok(())
}

fn compile_source(cx: &mut Ctx, s: &RawSource) -> Option<p::Source> {
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

/// A paginator, its `stop_when` and what proves the resource complete.
type CompiledPaginate = (
    Option<p::Paginator>,
    Option<Option<p::StopWhen>>,
    Option<p::Completeness>,
);

/// A `{path, equals}` condition: a compiled path and a scalar.
fn compile_condition(cx: &mut Ctx, at: &str, s: &RawStopWhen) -> Option<(JsonPath, serde_json::Value)> {
    if !(s.equals.is_string() || s.equals.is_number() || s.equals.is_boolean() || s.equals.is_null()) {
        cx.error(
            &format!("{at}.equals"),
            "`equals` takes text, a number, a boolean or null",
        );
    }
    cx.jsonpath(&format!("{at}.path"), &s.path)
        .map(|path| (path, s.equals.clone()))
}

/// `total`, `total_pages`, `total_check` and `has_more`, common to every paginator.
fn compile_completeness(cx: &mut Ctx, ppath: &str, raw: &RawPaginate) -> Option<p::Completeness> {
    let (total, total_pages, total_check, has_more) = match raw {
        RawPaginate::None { total_check } => (None, None, *total_check, None),
        RawPaginate::NextUrl {
            total,
            total_check,
            has_more,
            ..
        }
        | RawPaginate::Offset {
            total,
            total_check,
            has_more,
            ..
        }
        | RawPaginate::Cursor {
            total,
            total_check,
            has_more,
            ..
        }
        | RawPaginate::LinkHeader {
            total,
            total_check,
            has_more,
            ..
        } => (total.as_ref(), None, *total_check, has_more.as_ref()),
        RawPaginate::PageNumber {
            total,
            total_pages,
            total_check,
            has_more,
            ..
        } => (total.as_ref(), total_pages.as_ref(), *total_check, has_more.as_ref()),
    };
    let mut path = |field: &str, text: Option<&String>| match text {
        Some(t) => cx.jsonpath(&format!("{ppath}.{field}"), t).map(Some),
        None => Some(None),
    };
    let total = path("total", total);
    let total_pages = path("total_pages", total_pages);
    let has_more = match has_more {
        None => Some(None),
        Some(RawHasMore::Path(text)) => cx
            .jsonpath(&format!("{ppath}.has_more"), text)
            .map(|path| Some(p::HasMore { path, equals: None })),
        Some(RawHasMore::When(w)) => compile_condition(cx, &format!("{ppath}.has_more"), w).map(|(path, equals)| {
            Some(p::HasMore {
                path,
                equals: Some(equals),
            })
        }),
    };
    Some(p::Completeness {
        total: total?,
        total_pages: total_pages?,
        total_check: total_check.unwrap_or_default(),
        has_more: has_more?,
    })
}

fn compile_paginate(cx: &mut Ctx, ppath: &str, raw: Option<&RawPaginate>) -> CompiledPaginate {
    let none = RawPaginate::None { total_check: None };
    let raw = raw.unwrap_or(&none);
    let stop = match raw {
        RawPaginate::None { .. } => None,
        RawPaginate::NextUrl { stop_when, .. }
        | RawPaginate::PageNumber { stop_when, .. }
        | RawPaginate::Offset { stop_when, .. }
        | RawPaginate::Cursor { stop_when, .. }
        | RawPaginate::LinkHeader { stop_when, .. } => stop_when.as_ref(),
    };
    let stop_when = match stop {
        None => Some(None),
        Some(s) => compile_condition(cx, &format!("{ppath}.stop_when"), s)
            .map(|(path, equals)| Some(p::StopWhen { path, equals })),
    };
    let completeness = compile_completeness(cx, ppath, raw);
    let paginator = match raw {
        RawPaginate::None { .. } => Some(p::Paginator::None),
        RawPaginate::NextUrl { next, .. } => cx
            .jsonpath(&format!("{ppath}.next"), next)
            .map(|next| p::Paginator::NextUrl { next }),
        RawPaginate::PageNumber {
            param,
            start,
            total_pages,
            ..
        } => {
            let param = param.clone().unwrap_or_else(|| "page".into());
            if param.is_empty() {
                cx.error(&format!("{ppath}.param"), "the page parameter name cannot be empty");
            }
            completeness.as_ref().map(|c| p::Paginator::PageNumber {
                param,
                start: start.unwrap_or(1),
                total_pages: c.total_pages.clone().filter(|_| total_pages.is_some()),
            })
        }
        RawPaginate::Offset {
            limit_param,
            offset_param,
            limit,
            total,
            ..
        } => {
            if *limit == 0 {
                cx.error(&format!("{ppath}.limit"), "limit must be at least 1");
            }
            // The total that ends the paging is the one checked (compiled once, there).
            completeness.as_ref().map(|c| p::Paginator::Offset {
                limit_param: limit_param.clone().unwrap_or_else(|| "limit".into()),
                offset_param: offset_param.clone().unwrap_or_else(|| "offset".into()),
                limit: *limit,
                total: c.total.clone().filter(|_| total.is_some()),
            })
        }
        RawPaginate::Cursor {
            cursor,
            last_record,
            header,
            param,
            body_field,
            ..
        } => {
            let to = match (param, body_field) {
                (Some(p), None) if !p.is_empty() => Some(p::CursorTo::Param(p.clone())),
                (None, Some(f)) if !f.is_empty() && f.split('.').all(|s| !s.is_empty()) => {
                    Some(p::CursorTo::BodyField(f.split('.').map(String::from).collect()))
                }
                (Some(_), Some(_)) => {
                    cx.error_at_key(
                        &format!("{ppath}.body_field"),
                        "a cursor is sent one way; give `param` or `body_field`, not both",
                    );
                    None
                }
                (None, None) => {
                    cx.error(ppath, "a cursor paginator needs `param` (a query parameter) or `body_field` (a field of the JSON body)");
                    None
                }
                _ => {
                    cx.error(
                        &format!("{ppath}.{}", if param.is_some() { "param" } else { "body_field" }),
                        "the name where the cursor goes cannot be empty",
                    );
                    None
                }
            };
            let given: Vec<&str> = [
                cursor.as_ref().map(|_| "cursor"),
                last_record.as_ref().map(|_| "last_record"),
                header.as_ref().map(|_| "header"),
            ]
            .into_iter()
            .flatten()
            .collect();
            let from = match (cursor, last_record, header) {
                _ if given.len() > 1 => {
                    cx.error_at_key(
                        &format!("{ppath}.{}", given[1]),
                        format!(
                            "a cursor comes from one place; give one of `cursor`, `last_record` and `header`, not both `{}` and `{}`",
                            given[0], given[1]
                        ),
                    );
                    None
                }
                (Some(c), None, None) => cx.jsonpath(&format!("{ppath}.cursor"), c).map(p::CursorFrom::Body),
                (None, Some(l), None) => cx
                    .jsonpath(&format!("{ppath}.last_record"), l)
                    .map(p::CursorFrom::LastRecord),
                (None, None, Some(h)) => match is_header_name(h) {
                    true => Some(p::CursorFrom::Header(h.to_ascii_lowercase())),
                    false => {
                        cx.error(&format!("{ppath}.header"), format!("`{h}` is not a valid header name"));
                        None
                    }
                },
                _ => {
                    cx.error(
                        ppath,
                        "a cursor paginator needs where the token comes from: `cursor` (a JSONPath on the body), `last_record` (a JSONPath on the last record) or `header`",
                    );
                    None
                }
            };
            from.zip(to).map(|(from, to)| p::Paginator::Cursor { from, to })
        }
        RawPaginate::LinkHeader { .. } => Some(p::Paginator::LinkHeader),
    };
    (paginator, stop_when, completeness)
}

/// Every string of a request body is a template: check their syntax now.
fn check_body_templates(cx: &mut Ctx, path: &str, body: &serde_json::Value, allowed: Allowed) {
    match body {
        serde_json::Value::String(s) => {
            cx.interp(path, s);
            check_placeholders(cx, path, s, allowed);
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check_body_templates(cx, &format!("{path}[{i}]"), v, allowed);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                check_body_templates(cx, &format!("{path}.{k}"), v, allowed);
            }
        }
        _ => {}
    }
}

/// An HTTP header name: RFC 9110 token characters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn interp_map<V: AsRef<str>>(cx: &mut Ctx, path: &str, map: &BTreeMap<String, V>) -> Option<Vec<(String, Interp)>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (k, v) in map {
        match cx.interp(&format!("{path}.{k}"), v.as_ref()) {
            Some(t) => out.push((k.clone(), t)),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn compile_staging(cx: &mut Ctx, s: &RawStaging) -> Option<p::Staging> {
    let location = cx.interp("staging.location", &s.location);
    if let Some(loc) = location.as_ref().and_then(Interp::offline) {
        if let Err(e) = super::location::StagingLocation::parse(&loc) {
            cx.error("staging.location", e.message(&loc));
        }
    }
    let key = match KeyTemplate::parse(s.key.as_deref().unwrap_or(DEFAULT_KEY)) {
        Ok(k) => Some(k),
        Err(e) => {
            cx.error("staging.key", e);
            None
        }
    };
    let part_size = s.part_size.map(|b| b.0).unwrap_or(64 << 20);
    if part_size < 1024 {
        cx.error("staging.part_size", "part_size must be at least 1KiB");
    }
    let region = s.region.as_ref().and_then(|r| cx.interp("staging.region", r));
    let endpoint = s.endpoint.as_ref().and_then(|r| cx.interp("staging.endpoint", r));
    if let Some(t) = &endpoint {
        check_url(cx, "staging.endpoint", t);
    }
    Some(p::Staging {
        location: location?,
        key: key?,
        part_size,
        region,
        endpoint,
        path_style: s.path_style,
    })
}

fn compile_warehouse(cx: &mut Ctx, w: &RawWarehouse) -> Option<p::Warehouse> {
    let url = cx.interp("warehouse.url", &w.url);
    if let Some(t) = &url {
        let raw = t.raw();
        let password = match url::Url::parse(raw) {
            Ok(u) => u.password().is_some(),
            // key/value form
            Err(_) => raw.split_whitespace().any(|w| w.trim_start().starts_with("password")),
        };
        if !t.has_vars() && password {
            cx.error(
                "warehouse.url",
                "a database URL with a password must come from the environment: write `${DATABASE_URL}`",
            );
        }
    }
    let schema_ok = cx.ident("warehouse.schema", &w.schema);
    if w.schema == "_sluice" {
        cx.error(
            "warehouse.schema",
            "`_sluice` is where sluice keeps its ledger; choose another schema",
        );
    }
    (schema_ok && url.is_some()).then(|| p::Warehouse {
        url: url.unwrap_or_else(|| unreachable!()),
        schema: w.schema.clone(),
    })
}

fn compile_resource(cx: &mut Ctx, path: &str, r: &RawResource) -> Option<p::Resource> {
    let name_ok = cx.ident(&format!("{path}.name"), &r.name);
    let child = r.for_each.is_some();
    let allowed = Allowed {
        parent: child,
        start: r.incremental.is_some(),
    };
    let target = compile_target(cx, path, r, allowed);
    let incremental = compile_incremental(cx, path, r);
    if r.on_missing.is_some() && !child {
        cx.error_at_key(
            &format!("{path}.on_missing"),
            "`on_missing` is about the requests of `for_each`, which this resource does not have",
        );
    }
    let params = interp_map(cx, &format!("{path}.params"), &r.params);
    for (k, v) in &r.params {
        check_placeholders(cx, &format!("{path}.params.{k}"), &v.0, allowed);
    }
    let records = cx.jsonpath(&format!("{path}.records"), &r.records);
    let method = r.method.unwrap_or(HttpMethod::Get);
    if let Some(body) = &r.body {
        if method != HttpMethod::Post {
            cx.error_at_key(&format!("{path}.body"), "a request `body` needs `method: POST`");
        }
        check_body_templates(cx, &format!("{path}.body"), body, allowed);
    }
    let (paginator, stop_when, completeness) = compile_paginate(cx, &format!("{path}.paginate"), r.paginate.as_ref());
    let max_pages = r.max_pages.unwrap_or(10_000);
    if max_pages == 0 {
        cx.error(&format!("{path}.max_pages"), "max_pages must be at least 1");
    }
    // The resource's table, then its nested tables depth first, each after its parent.
    let mut tables = Vec::new();
    if let Some(table) = &r.table {
        cx.child_resource = child;
        let tpath = format!("{path}.table");
        let root = compile_table(cx, &tpath, table, None);
        if let Some(t) = &root {
            cx.tables.push((tpath.clone(), t.clone()));
            if r.incremental.is_none() && t.append_collides() {
                cx.warn(
                    &format!("{tpath}.write"),
                    format!(
                        "table `{}` uses `write: append` with a `primary_key`: every run reads all the records again, so the second run fails on duplicate keys (after extracting everything); `write: merge` keeps one row per key",
                        t.name
                    ),
                );
            }
        }
        tables.push(root);
        cx.child_resource = false;
        compile_nested_tables(cx, &tpath, &table.nested, table, 0, &mut tables);
    }
    let tables: Option<Vec<p::Table>> = tables.into_iter().collect();
    if !name_ok {
        return None;
    }
    let tables = tables?;
    let mut parent_paths: Vec<JsonPath> = Vec::new();
    for c in tables.iter().take(1).flat_map(|t| &t.columns) {
        if let ValueSource::ParentRecord(jp) = &c.value {
            if !parent_paths.iter().any(|q| q.as_str() == jp.as_str()) {
                parent_paths.push(jp.clone());
            }
        }
    }
    Some(p::Resource {
        name: r.name.clone(),
        target: target?,
        for_each: r.for_each.as_ref().map(|parent| p::ForEach {
            parent: parent.clone(),
            on_missing: r.on_missing.unwrap_or_default(),
        }),
        parent_paths,
        method,
        body: r.body.clone(),
        params: params?,
        records: records?,
        paginator: paginator?,
        stop_when: stop_when?,
        completeness: completeness?,
        max_pages,
        incremental: incremental?,
        tables,
    })
}

/// `path` or `url`, with the placeholders only a `for_each` or incremental resource may
/// use.
fn compile_target(cx: &mut Ctx, path: &str, r: &RawResource, allowed: Allowed) -> Option<p::Target> {
    use super::placeholder::{scan, Scan};
    let any = allowed.parent || allowed.start;
    match (&r.path, &r.url) {
        (None, None) => {
            cx.error(
                path,
                format!(
                    "resource `{}` needs a `path` below base_url (such as `/character`) or a `url`",
                    r.name
                ),
            );
            None
        }
        (Some(_), Some(_)) => {
            cx.error_at_key(&format!("{path}.url"), "give `path` or `url`, not both");
            None
        }
        (Some(rp), None) => {
            let fpath = format!("{path}.path");
            if rp.contains(char::is_whitespace) || rp.contains("://") {
                cx.error(
                    &fpath,
                    format!("`{rp}` must be a path below base_url such as `/character`, without spaces; an absolute URL goes in `url`"),
                );
                return None;
            }
            if !any && rp.contains(['{', '}']) {
                cx.error(
                    &fpath,
                    format!("`{rp}`: braces would be sent as they are; placeholders need `for_each` (`{{parent.<field>}}`) or `incremental` (`{{incremental.start}}`)"),
                );
                return None;
            }
            match scan(rp, Scan::Strict) {
                Err(e) => {
                    cx.error(&fpath, format!("`{rp}`: {e}"));
                    None
                }
                Ok(found) => check_sources(cx, &fpath, &found, allowed).then(|| p::Target::Path(rp.clone())),
            }
        }
        (None, Some(u)) => {
            let fpath = format!("{path}.url");
            let found = match scan(u, Scan::Strict) {
                Ok(found) => found,
                Err(e) => {
                    cx.error(&fpath, format!("`{u}`: {e}"));
                    return None;
                }
            };
            if !check_sources(cx, &fpath, &found, allowed) {
                return None;
            }
            // A URL that starts with a placeholder is the parent's; any other must be an
            // absolute http(s) URL whatever the placeholders hold.
            if found.first().is_none_or(|p| p.start > 0) {
                let mut sample = u.clone();
                for p in found.iter().rev() {
                    sample.replace_range(p.start..p.end, "x");
                }
                let fine = url::Url::parse(&sample)
                    .is_ok_and(|x| matches!(x.scheme(), "http" | "https") && x.host().is_some());
                if !fine {
                    cx.error(
                        &fpath,
                        format!(
                            "`{u}` is not an absolute http:// or https:// URL; a path below base_url goes in `path`"
                        ),
                    );
                    return None;
                }
            }
            Some(p::Target::Url(u.clone()))
        }
    }
}

/// Which placeholders a resource may use.
#[derive(Debug, Clone, Copy)]
struct Allowed {
    /// `{parent.…}`: with `for_each`.
    parent: bool,
    /// `{incremental.start}`: with `incremental`.
    start: bool,
}

/// Report placeholders the resource cannot fill; whether there was none.
fn check_sources(cx: &mut Ctx, path: &str, found: &[super::placeholder::Placeholder], allowed: Allowed) -> bool {
    use super::placeholder::Source;
    for p in found {
        let problem = match p.source {
            Source::Parent(_) if !allowed.parent => {
                "`{parent.<field>}` placeholders need `for_each: <parent resource>` on the resource"
            }
            Source::Start if !allowed.start => "`{incremental.start}` needs `incremental` on the resource",
            _ => continue,
        };
        cx.error(path, problem);
        return false;
    }
    true
}

/// A parameter or body string: its placeholders are well formed and the resource can
/// fill them.
fn check_placeholders(cx: &mut Ctx, path: &str, text: &str, allowed: Allowed) {
    use super::placeholder::{scan, Scan};
    match scan(text, Scan::Text) {
        Err(e) => cx.error(path, e),
        Ok(found) => {
            check_sources(cx, path, &found, allowed);
        }
    }
}

/// Whether `{incremental.start}` appears in the resource's path, URL, params or body.
fn uses_start(r: &RawResource) -> bool {
    use super::placeholder::{scan, Scan, Source};
    fn strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
        match v {
            serde_json::Value::String(s) => out.push(s),
            serde_json::Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
            serde_json::Value::Object(m) => m.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let mut texts: Vec<&str> = r.params.values().map(|v| v.0.as_str()).collect();
    if let Some(b) = &r.body {
        strings(b, &mut texts);
    }
    let strict = r.path.iter().chain(&r.url).map(|t| scan(t, Scan::Strict));
    let text = texts.into_iter().map(|t| scan(t, Scan::Text));
    strict
        .chain(text)
        .flatten()
        .any(|found| found.iter().any(|p| p.source == Source::Start))
}

fn compile_incremental(cx: &mut Ctx, path: &str, r: &RawResource) -> Option<Option<p::Incremental>> {
    let Some(inc) = &r.incremental else {
        return Some(None);
    };
    let ipath = format!("{path}.incremental");
    let cursor = cx.jsonpath(&format!("{ipath}.cursor"), &inc.cursor);
    let format = inc.format.unwrap_or_default();
    let initial = match format.read(&serde_json::Value::String(inc.initial.0.clone())) {
        Ok(pos) => Some(pos),
        Err(e) => {
            cx.error(&format!("{ipath}.initial"), e);
            None
        }
    };
    let lag = match (inc.lag, format.lag_units(std::time::Duration::ZERO)) {
        (None, _) => Some(0),
        (Some(_), None) => {
            cx.error_at_key(
                &format!("{ipath}.lag"),
                "`lag` is a time, so it does not apply to `format: integer`",
            );
            None
        }
        (Some(d), Some(_)) => format.lag_units(d.0),
    };
    let send = match (&inc.param, &inc.body_field) {
        (Some(_), Some(_)) => {
            cx.error_at_key(
                &format!("{ipath}.body_field"),
                "the start is sent one way; give `param` or `body_field`, not both",
            );
            None
        }
        (Some(name), None) => Some(Some(p::CursorTo::Param(name.clone()))),
        (None, Some(field)) => {
            if r.method != Some(HttpMethod::Post) {
                cx.error_at_key(&format!("{ipath}.body_field"), "`body_field` needs `method: POST`");
            }
            Some(Some(p::CursorTo::BodyField(
                field.split('.').map(str::to_string).collect(),
            )))
        }
        (None, None) if uses_start(r) => Some(None),
        (None, None) => {
            cx.error(
                &ipath,
                "the start must go somewhere: give `param` or `body_field`, or write `{incremental.start}` in `path`, `params` or `body`",
            );
            None
        }
    };
    if let Some(t) = &r.table {
        if t.write.unwrap_or_default() == WriteMode::Append {
            cx.warn(
                &ipath,
                format!(
                    "table `{}` uses `write: append`: each run reads the records at its start again, so they are loaded twice; `write: merge` keeps one row per key",
                    t.name
                ),
            );
        }
    }
    Some(Some(p::Incremental {
        cursor: cursor?,
        send: send?,
        format,
        initial: initial?,
        lag: lag?,
    }))
}

/// The tables nested in `parent` (at `tables[parent_index]`, field path `ppath`), depth
/// first, appended to `tables`.
fn compile_nested_tables(
    cx: &mut Ctx,
    ppath: &str,
    nested: &[RawNested],
    parent: &RawTable,
    parent_index: usize,
    tables: &mut Vec<Option<p::Table>>,
) {
    for (i, n) in nested.iter().enumerate() {
        let path = format!("{ppath}.nested[{i}]");
        let as_table = RawTable {
            name: n.name.clone(),
            write: n.write.or(parent.write),
            primary_key: n.primary_key.clone(),
            on_error: parent.on_error,
            run_id_column: parent.run_id_column,
            description: n.description.clone(),
            columns: n.columns.clone(),
            nested: Vec::new(),
        };
        let each = compile_each(cx, &format!("{path}.each"), &n.each);
        check_replaceable(cx, &path, &as_table, parent);
        let table = compile_table(cx, &path, &as_table, Some(parent)).and_then(|mut t| {
            t.each = Some(each?);
            t.parent = Some(parent_index);
            Some(t)
        });
        if let Some(t) = &table {
            cx.tables.push((path.clone(), t.clone()));
        }
        let index = tables.len();
        tables.push(table);
        compile_nested_tables(cx, &path, &n.nested, &as_table, index, tables);
    }
}

fn compile_each(cx: &mut Ctx, path: &str, each: &RawEach) -> Option<p::Each> {
    match each {
        RawEach::Path(jp) => cx.jsonpath(path, jp).map(p::Each::Path),
        RawEach::Zip(z) => {
            if z.zip.is_empty() {
                cx.error(&format!("{path}.zip"), "`zip` needs at least one array to zip");
                return None;
            }
            let fields: Vec<Option<(String, JsonPath)>> = z
                .zip
                .iter()
                .map(|(name, jp)| {
                    cx.jsonpath(&format!("{path}.zip.{name}"), jp)
                        .map(|p| (name.clone(), p))
                })
                .collect();
            fields.into_iter().collect::<Option<Vec<_>>>().map(p::Each::Zip)
        }
    }
}

/// A merged nested table under a merged parent replaces each loaded parent's rows, so it
/// must say which parent a row belongs to: `from_parent` columns for the parent's whole
/// primary key.
fn check_replaceable(cx: &mut Ctx, path: &str, t: &RawTable, parent: &RawTable) {
    let merged = |w: Option<WriteMode>| w.unwrap_or_default() == WriteMode::Merge;
    // A `from_parent` naming no parent column is reported on its own.
    let unknown = t
        .columns
        .iter()
        .filter_map(|c| c.from_parent.as_ref())
        .any(|f| !parent.columns.iter().any(|pc| &pc.name == f));
    if !merged(t.write) || !merged(parent.write) || unknown {
        return;
    }
    let missing: Vec<&String> = parent
        .primary_key
        .iter()
        .filter(|k| !t.columns.iter().any(|c| c.from_parent.as_ref() == Some(*k)))
        .collect();
    if !missing.is_empty() {
        cx.error(
            &format!("{path}.name"),
            format!(
                "nested table `{}` is merged under the merged table `{}`, which replaces each loaded parent's rows; add a column with `from_parent: {}` so that each row names its parent",
                t.name,
                parent.name,
                missing.iter().map(|k| k.as_str()).collect::<Vec<_>>().join("` and `from_parent: ")
            ),
        );
    }
}

/// Which transforms make sense before coercion to which column type.
fn transform_fits(t: Transform, ty: ColumnType) -> bool {
    use ColumnType::*;
    match t {
        Transform::EpochMs | Transform::EpochS => matches!(ty, Timestamptz | Date),
        Transform::UrlLastSegment => matches!(ty, Text | Integer | Bigint | Numeric),
        Transform::Lowercase | Transform::Uppercase | Transform::Trim => !matches!(ty, Jsonb),
        Transform::EmptyAsNull => true,
    }
}

fn compile_table(cx: &mut Ctx, path: &str, t: &RawTable, parent: Option<&RawTable>) -> Option<p::Table> {
    let mut ok = cx.ident(&format!("{path}.name"), &t.name);
    if t.columns.is_empty() {
        cx.error(&format!("{path}.columns"), "a table needs at least one column");
        ok = false;
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let mut columns = Vec::new();
    for (i, c) in t.columns.iter().enumerate() {
        let cpath = format!("{path}.columns[{i}]");
        if !seen.insert(c.name.as_str()) {
            cx.error(
                &format!("{cpath}.name"),
                format!("duplicate column `{}` in table `{}`", c.name, t.name),
            );
            ok = false;
        }
        if c.name == RUN_ID_COLUMN && t.run_id_column.unwrap_or(true) {
            cx.error(
                &format!("{cpath}.name"),
                format!("`{RUN_ID_COLUMN}` is added by sluice; set `run_id_column: false` to name a column so"),
            );
            ok = false;
        }
        match compile_column(cx, &cpath, c, parent) {
            Some(col) => columns.push(col),
            None => ok = false,
        }
    }
    let mut pk_seen = HashSet::new();
    for (i, k) in t.primary_key.iter().enumerate() {
        let kpath = format!("{path}.primary_key[{i}]");
        if !pk_seen.insert(k) {
            cx.error(&kpath, format!("`{k}` is listed twice in the primary key"));
            ok = false;
        }
        match t.columns.iter().position(|c| &c.name == k) {
            None => {
                let hint = did_you_mean(k, t.columns.iter().map(|c| c.name.as_str()))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                cx.error(
                    &kpath,
                    format!("primary key column `{k}` is not a column of table `{}`{hint}", t.name),
                );
                ok = false;
            }
            Some(ci) => {
                if t.columns[ci].nullable == Some(true) {
                    cx.error(
                        &format!("{path}.columns[{ci}].nullable"),
                        format!("`{k}` is in the primary key, so it cannot be nullable"),
                    );
                    ok = false;
                }
                if matches!(t.columns[ci].column_type, Some(ColumnType::Jsonb)) {
                    cx.error(&kpath, format!("`{k}` is jsonb, which cannot be part of a primary key"));
                    ok = false;
                }
            }
        }
    }
    let write = t.write.unwrap_or_default();
    if write == WriteMode::Merge && t.primary_key.is_empty() {
        let wpath = format!("{path}.write");
        cx.error(
            &wpath,
            format!(
                "table `{}` uses `write: merge` but has no `primary_key` to merge on",
                t.name
            ),
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    for col in &mut columns {
        if t.primary_key.contains(&col.name) {
            col.nullable = false;
        }
    }
    Some(p::Table {
        name: t.name.clone(),
        write,
        primary_key: t.primary_key.clone(),
        on_error: t.on_error.unwrap_or_default(),
        run_id_column: t.run_id_column.unwrap_or(true),
        description: t.description.clone(),
        columns,
        each: None,
        parent: None,
    })
}

fn compile_column(cx: &mut Ctx, path: &str, c: &RawColumn, parent: Option<&RawTable>) -> Option<p::Column> {
    let mut ok = cx.ident(&format!("{path}.name"), &c.name);
    if c.optional.is_some() && c.path.is_none() && c.parent_path.is_none() {
        cx.error_at_key(
            &format!("{path}.optional"),
            format!("column `{}`: `optional` applies to columns read from a `path`", c.name),
        );
        ok = false;
    }
    if SYSTEM_COLUMNS.contains(&c.name.as_str()) {
        cx.error(
            &format!("{path}.name"),
            format!(
                "`{}` is a PostgreSQL system column name (as are {}); a table cannot have a column of that name; rename it and keep the `path`",
                c.name,
                SYSTEM_COLUMNS.join(", ")
            ),
        );
        ok = false;
    }
    if c.name.starts_with("_sluice") {
        cx.error(
            &format!("{path}.name"),
            format!(
                "`{}`: names starting with `_sluice` are reserved for the columns sluice adds itself",
                c.name
            ),
        );
        ok = false;
    }
    let given: Vec<&str> = [
        c.path.as_ref().map(|_| "path"),
        c.value.as_ref().map(|_| "value"),
        c.meta.as_ref().map(|_| "meta"),
        c.from_parent.as_ref().map(|_| "from_parent"),
        c.parent_path.as_ref().map(|_| "parent_path"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        cx.error_at_key(
            &format!("{path}.{}", given[1]),
            format!(
                "column `{}` has both `{}` and `{}`; give exactly one",
                c.name, given[0], given[1]
            ),
        );
        return None;
    }
    let mut column_type = c.column_type;
    let value = if let Some(jp) = &c.path {
        cx.jsonpath(&format!("{path}.path"), jp).map(ValueSource::Path)
    } else if let Some(v) = &c.value {
        Some(ValueSource::Const(v.clone()))
    } else if let Some(m) = c.meta {
        let fits = match m {
            MetaValue::RunId | MetaValue::Pipeline => matches!(column_type, None | Some(ColumnType::Text)),
            MetaValue::RunTime => matches!(column_type, None | Some(ColumnType::Timestamptz | ColumnType::Text)),
            MetaValue::Index => matches!(column_type, None | Some(ColumnType::Integer | ColumnType::Bigint)),
        };
        if m == MetaValue::Index && parent.is_none() {
            cx.error(
                &format!("{path}.meta"),
                "`meta: index` is an element's position in its array, so it belongs in a nested table",
            );
            ok = false;
        }
        if !fits {
            cx.error(
                &format!("{path}.type"),
                format!(
                    "`meta: {}` does not fit a {} column",
                    meta_name(m),
                    column_type.map(|t| t.name()).unwrap_or("")
                ),
            );
            ok = false;
        }
        column_type = column_type.or(Some(match m {
            MetaValue::RunTime => ColumnType::Timestamptz,
            MetaValue::Index => ColumnType::Integer,
            _ => ColumnType::Text,
        }));
        Some(ValueSource::Meta(m))
    } else if let Some(jp) = &c.parent_path {
        if parent.is_some() {
            cx.error_at_key(
                &format!("{path}.parent_path"),
                "`parent_path` belongs in the resource's own table; a nested table copies such a column with `from_parent`",
            );
            None
        } else if !cx.child_resource {
            cx.error_at_key(
                &format!("{path}.parent_path"),
                "`parent_path` reads the parent record of a `for_each` request; this resource has no `for_each`",
            );
            None
        } else {
            cx.jsonpath(&format!("{path}.parent_path"), jp)
                .map(ValueSource::ParentRecord)
        }
    } else if let Some(from) = &c.from_parent {
        match parent {
            None => {
                cx.error_at_key(
                    &format!("{path}.from_parent"),
                    "`from_parent` is only allowed in nested tables",
                );
                None
            }
            Some(parent) => match parent.columns.iter().position(|pc| &pc.name == from) {
                None => {
                    let hint = did_you_mean(from, parent.columns.iter().map(|c| c.name.as_str()))
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_default();
                    cx.error(
                        &format!("{path}.from_parent"),
                        format!("parent table `{}` has no column `{from}`{hint}", parent.name),
                    );
                    None
                }
                Some(i) => {
                    let parent_type = parent.columns[i].column_type.or_else(|| {
                        parent.columns[i].meta.map(|m| match m {
                            MetaValue::RunTime => ColumnType::Timestamptz,
                            _ => ColumnType::Text,
                        })
                    });
                    match (column_type, parent_type) {
                        (Some(mine), Some(theirs)) if mine != theirs => {
                            cx.error(
                                &format!("{path}.type"),
                                format!(
                                    "column `{}` is {} but parent column `{from}` is {}",
                                    c.name,
                                    mine.name(),
                                    theirs.name()
                                ),
                            );
                            ok = false;
                        }
                        _ => column_type = column_type.or(parent_type),
                    }
                    Some(ValueSource::Parent(i))
                }
            },
        }
    } else {
        cx.error(
            path,
            format!(
                "column `{}` needs one of `path`, `value`, `meta`, `from_parent` or `parent_path`",
                c.name
            ),
        );
        None
    };
    let Some(column_type) = column_type else {
        if value.is_some() {
            cx.error(path, format!("column `{}` needs a `type` (text, integer, bigint, numeric, double, boolean, date, timestamptz, jsonb)", c.name));
        }
        return None;
    };
    let transforms = c.transform.as_ref().map(TransformList::to_vec).unwrap_or_default();
    for (i, t) in transforms.iter().enumerate() {
        if !transform_fits(*t, column_type) {
            let tpath = match &c.transform {
                Some(TransformList::Many(_)) => format!("{path}.transform[{i}]"),
                _ => format!("{path}.transform"),
            };
            cx.error(
                &tpath,
                format!(
                    "transform `{}` does not fit column type {}",
                    t.name(),
                    column_type.name()
                ),
            );
            ok = false;
        }
    }
    if let (Some(ValueSource::Const(v)), true) = (&value, ok) {
        if let Err(e) = crate::value::check_constant(v, column_type) {
            cx.error(&format!("{path}.value"), e);
            ok = false;
        }
    }
    let references = match &c.references {
        None => None,
        Some(r) => match r.split_once('.') {
            Some((t, col)) if !t.is_empty() && !col.is_empty() && !col.contains('.') => Some(Reference {
                table: t.to_string(),
                column: col.to_string(),
            }),
            _ => {
                cx.error(
                    &format!("{path}.references"),
                    format!("`{r}` must name a column as `table.column`"),
                );
                ok = false;
                None
            }
        },
    };
    if !ok {
        return None;
    }
    Some(p::Column {
        name: c.name.clone(),
        column_type,
        value: value?,
        transforms,
        nullable: c.nullable.unwrap_or(true),
        optional: c.optional.unwrap_or(false),
        references,
        description: c.description.clone(),
    })
}

fn meta_name(m: MetaValue) -> &'static str {
    match m {
        MetaValue::RunId => "run_id",
        MetaValue::RunTime => "run_time",
        MetaValue::Pipeline => "pipeline",
        MetaValue::Index => "index",
    }
}

fn check_names_unique(cx: &mut Ctx, spec: &RawSpec) {
    let mut resources: HashMap<&str, usize> = HashMap::new();
    let mut tables: HashMap<&str, String> = HashMap::new();
    for (i, r) in spec.resources.iter().enumerate() {
        if let Some(first) = resources.insert(r.name.as_str(), i) {
            cx.error(
                &format!("resources[{i}].name"),
                format!(
                    "duplicate resource name `{}` (first used by resources[{first}])",
                    r.name
                ),
            );
        }
        for (name, path) in table_names(r, i) {
            if let Some(first) = tables.get(name) {
                let line = cx.positions.value(first).line;
                cx.error(
                    &path,
                    format!("duplicate table name `{name}` (first defined on line {line})"),
                );
            } else {
                tables.insert(name, path);
            }
        }
    }
}

/// `for_each`: the parent exists and is another resource, parents form no cycle, and a
/// resource without a table is the parent of some other.
fn check_for_each(cx: &mut Ctx, spec: &RawSpec) {
    let names: Vec<&str> = spec.resources.iter().map(|r| r.name.as_str()).collect();
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (i, r) in spec.resources.iter().enumerate() {
        let Some(parent) = &r.for_each else { continue };
        let path = format!("resources[{i}].for_each");
        if parent == &r.name {
            cx.error(&path, format!("resource `{parent}` cannot be its own parent"));
        } else if !names.contains(&parent.as_str()) {
            let hint = did_you_mean(parent, names.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            cx.error(
                &path,
                format!("`for_each: {parent}` names no resource of this spec{hint}"),
            );
        } else {
            edges.entry(r.name.as_str()).or_default().push(parent.as_str());
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        let i = names.iter().position(|n| *n == cycle[0]).unwrap_or(0);
        cx.error(
            &format!("resources[{i}].for_each"),
            format!(
                "`for_each` parents form a cycle ({}); no resource could be extracted first",
                cycle.join(" → ")
            ),
        );
    }
    for (i, r) in spec.resources.iter().enumerate() {
        let parent_of_some = spec
            .resources
            .iter()
            .any(|c| c.for_each.as_deref() == Some(r.name.as_str()));
        if r.table.is_none() && !parent_of_some {
            cx.error(
                &format!("resources[{i}]"),
                format!(
                    "resource `{}` has no `table`; only a resource that another names in `for_each` may go without one",
                    r.name
                ),
            );
        }
    }
}

/// The names of a resource's tables, nested ones at any depth, with the field path of
/// each name.
fn table_names(r: &RawResource, i: usize) -> Vec<(&str, String)> {
    fn nested<'a>(list: &'a [RawNested], path: &str, out: &mut Vec<(&'a str, String)>) {
        for (j, n) in list.iter().enumerate() {
            let npath = format!("{path}.nested[{j}]");
            out.push((n.name.as_str(), format!("{npath}.name")));
            nested(&n.nested, &npath, out);
        }
    }
    let mut out = Vec::new();
    if let Some(t) = &r.table {
        let path = format!("resources[{i}].table");
        out.push((t.name.as_str(), format!("{path}.name")));
        nested(&t.nested, &path, &mut out);
    }
    out
}

/// Foreign keys: the target exists, is its table's whole primary key (PostgreSQL needs a
/// unique target), has the same type, and the references do not form a cycle.
fn check_references(cx: &mut Ctx, spec: &RawSpec) {
    let compiled = std::mem::take(&mut cx.tables);
    let mut tables: HashMap<&str, &p::Table> = HashMap::new();
    for (_, t) in &compiled {
        tables.entry(t.name.as_str()).or_insert(t);
    }
    // Tables whose definition has its own errors exist all the same: no second error for them.
    let declared: HashSet<&str> = spec
        .resources
        .iter()
        .enumerate()
        .flat_map(|(i, r)| table_names(r, i).into_iter().map(|(name, _)| name))
        .collect();
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (tpath, table) in &compiled {
        for (ci, col) in table.columns.iter().enumerate() {
            let Some(r) = &col.references else { continue };
            let path = format!("{tpath}.columns[{ci}].references");
            let Some(target) = tables.get(r.table.as_str()) else {
                if declared.contains(r.table.as_str()) {
                    continue;
                }
                let hint = did_you_mean(&r.table, declared.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                cx.error(
                    &path,
                    format!(
                        "`{}.{}` references table `{}`, which this spec does not define{hint}",
                        r.table, r.column, r.table
                    ),
                );
                continue;
            };
            let Some(tc) = target.column(&r.column) else {
                let hint = did_you_mean(&r.column, target.columns.iter().map(|c| c.name.as_str()))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                cx.error(&path, format!("table `{}` has no column `{}`{hint}", r.table, r.column));
                continue;
            };
            if target.primary_key != [r.column.clone()] {
                cx.error(&path, format!("`{}.{}` is not the primary key of `{}`; a reference must target a table's single-column primary key", r.table, r.column, r.table));
                continue;
            }
            if tc.column_type != col.column_type {
                cx.error(
                    &path,
                    format!(
                        "column `{}` is {} but `{}.{}` is {}; a reference needs the same type",
                        col.name,
                        col.column_type.name(),
                        r.table,
                        r.column,
                        tc.column_type.name()
                    ),
                );
                continue;
            }
            // A duplicated table name is reported on its own; it makes no graph.
            let first_of_name = tables.get(table.name.as_str()).is_some_and(|t| std::ptr::eq(*t, table));
            if r.table != table.name && first_of_name {
                edges.entry(table.name.as_str()).or_default().push(target.name.as_str());
            }
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        let first = cycle[0];
        let path = compiled
            .iter()
            .find(|(_, t)| t.name == first)
            .map(|(p, _)| format!("{p}.name"))
            .unwrap_or_else(|| "resources".into());
        cx.error(
            &path,
            format!(
                "references form a cycle ({}); tables could not be created in any order",
                cycle.join(" → ")
            ),
        );
    }
}

fn find_cycle<'a>(edges: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    fn visit<'a>(
        n: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        stack: &mut Vec<&'a str>,
        done: &mut HashSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(i) = stack.iter().position(|s| *s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n);
            return Some(c);
        }
        if !done.insert(n) {
            return None;
        }
        stack.push(n);
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = HashSet::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::check_schedule;

    #[test]
    fn schedules_take_eventbridge_forms_only() {
        for good in [
            "rate(1 minute)",
            "rate(5 minutes)",
            "rate(1 day)",
            "rate(12 hours)",
            "cron(0 6 * * ? *)",
            "cron(0/15 8-18 ? * MON-FRI *)",
            "cron(0 12 L * ? 2027)",
            "cron(30 2 ? JAN,JUL 2#1 *)",
            "cron(0 0 15W * ? *)",
        ] {
            assert_eq!(check_schedule(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("rate(1 minutes)", "singular"),
            ("rate(5 minute)", "minutes, hours or days"),
            ("rate(0 days)", "at least 1"),
            ("rate(five minutes)", "whole number"),
            ("cron(0 6 * * ?)", "not 5"),
            ("cron(a b c d e f)", "not a value"),
            ("cron(0 6 * * * *)", "exactly one of"),
            ("cron(0 24 * * ? *)", "outside 0-23"),
            ("cron(0 6 ? * MON#6 *)", "week of the month"),
            ("cron(0/0 6 * * ? *)", "step"),
            ("every 5 minutes", "not a rate"),
        ] {
            let e = check_schedule(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
