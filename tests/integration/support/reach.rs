//! Provider shapes for the spec-reach examples, each written from its provider's
//! documentation:
//! - `/report/daily?start_date=D&end_date=D&page=N`: a reporting API over the days of
//!   2022–2024, one row a day, 10 rows a page (`pages`), that refuses a range longer than
//!   31 days or ending before it starts (HTTP 400), as many ad and analytics APIs do;
//! - `/slack/api/conversations.history?channel=C&limit=L&cursor=X`: Slack's cursor
//!   pagination (`response_metadata.next_cursor`, empty on the last page) over
//!   [`SLACK_MESSAGES`] messages, some of them `channel_join` events; Slack answers a rate
//!   limit with HTTP 200 `{"ok": false, "error": "ratelimited"}`, which this server does on
//!   the first request for every second page; a bad token gets `{"ok": false, "error":
//!   "invalid_auth"}`, also with 200;
//! - `/hn/v0/topstories.json` (a bare array of ids) and `/hn/v0/item/{id}.json`: Hacker
//!   News' Firebase API;
//! - `POST /session/api/login` (`{"username", "password"}` → `{"token", "expires_in"}`) and
//!   `/session/api/orders?page=N` (`X-Session-Token` of the latest login only, else 401;
//!   every token stops working after [`SESSION_TOKEN_USES`] requests, as an expiring
//!   session does);
//! - `/regions/{region}/accounts/{account}/instances?page=N`: a list per region (`us`,
//!   `eu`, `ap` hold 23, 7 and 0 instances), 5 a page, `next_page` null on the last.

use std::collections::HashSet;
use std::sync::Mutex;

use bytes::Bytes;
use chrono::NaiveDate;
use http_body_util::Full;
use hyper::Response;
use serde_json::{json, Value};

/// The report's first and last day.
pub const REPORT_FROM: &str = "2022-01-01";
pub const REPORT_TO: &str = "2024-12-31";
pub const SLACK_MESSAGES: usize = 250;
/// Every seventh Slack message is a `channel_join` event.
pub const SLACK_JOINS: usize = 36;
pub const SLACK_TOKEN: &str = "xoxb-test-token";
pub const HN_STORIES: u64 = 60;
pub const SESSION_ORDERS: usize = 120;
pub const SESSION_TOKEN_USES: u32 = 4;
pub const SESSION_USER: &str = "ops@example.com";
pub const SESSION_PASSWORD: &str = "s3cret-pass-word";
pub const REGIONS: [(&str, usize); 3] = [("us", 23), ("eu", 7), ("ap", 0)];

/// What the stateful routes remember, per server.
#[derive(Default)]
pub struct ReachState {
    /// Slack cursors already answered "ratelimited" once.
    slack_limited: HashSet<String>,
    /// Session logins so far, and the uses left of the latest token.
    logins: u32,
    uses_left: u32,
}

impl ReachState {
    pub fn logins(&self) -> u32 {
        self.logins
    }
}

/// The report's row of one day.
pub fn report_row(day: NaiveDate) -> Value {
    let i = (day - NaiveDate::from_ymd_opt(2022, 1, 1).unwrap()).num_days();
    json!({"date": day.format("%Y-%m-%d").to_string(), "impressions": (i * 37) % 1000, "clicks": (i * 7) % 50})
}

fn respond(status: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The routes above; `None` for any other path.
pub fn route(
    state: &Mutex<ReachState>,
    path: &str,
    query: &str,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
) -> Option<Response<Full<Bytes>>> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Some(match parts.as_slice() {
        ["report", "daily"] => report(query),
        ["slack", "api", "conversations.history"] => slack(state, query, header("authorization")),
        ["hn", "v0", "topstories.json"] => respond(
            200,
            &json!((1..=HN_STORIES).map(|i| 9_000_000 + i * 13).collect::<Vec<_>>()),
        ),
        ["hn", "v0", "item", file] => {
            let id: u64 = file.strip_suffix(".json")?.parse().ok()?;
            let i = (id - 9_000_000) / 13;
            respond(
                200,
                &json!({"id": id, "by": format!("user{}", i % 17), "score": (i * 11) % 300, "time": 1_700_000_000 + i * 3600, "title": format!("Story {i}"), "type": "story", "url": format!("https://example.com/{i}")}),
            )
        }
        ["session", "api", "login"] => {
            let creds: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            if creds["username"] != SESSION_USER || creds["password"] != SESSION_PASSWORD {
                return Some(respond(401, &json!({"error": "bad credentials"})));
            }
            let mut s = state.lock().unwrap();
            s.logins += 1;
            s.uses_left = SESSION_TOKEN_USES;
            respond(200, &json!({"token": format!("sess-{}", s.logins), "expires_in": 3600}))
        }
        ["session", "api", "orders"] => {
            let mut s = state.lock().unwrap();
            if header("x-session-token") != Some(format!("sess-{}", s.logins)) || s.uses_left == 0 {
                return Some(respond(401, &json!({"error": "session expired"})));
            }
            s.uses_left -= 1;
            let page: usize = param(query, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let orders: Vec<Value> = (1..=SESSION_ORDERS)
                .skip((page - 1) * 20)
                .take(20)
                .map(|i| json!({"id": i, "total": format!("{}.{:02}", i * 3, i % 100), "status": if i % 4 == 0 { "refunded" } else { "paid" }}))
                .collect();
            respond(
                200,
                &json!({"orders": orders, "page": page, "total_pages": SESSION_ORDERS.div_ceil(20)}),
            )
        }
        ["regions", region, "accounts", account, "instances"] => {
            let n = REGIONS.iter().find(|(r, _)| r == region)?.1;
            let page: usize = param(query, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let items: Vec<Value> = (1..=n)
                .skip((page - 1) * 5)
                .take(5)
                .map(|i| json!({"id": format!("{region}-{i}"), "account": account, "size": if i % 2 == 0 { "small" } else { "large" }}))
                .collect();
            let next = (page * 5 < n).then(|| page + 1);
            respond(200, &json!({"instances": items, "next_page": next}))
        }
        _ => return None,
    })
}

fn report(query: &str) -> Response<Full<Bytes>> {
    let day = |name: &str| param(query, name).and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok());
    let (Some(start), Some(end)) = (day("start_date"), day("end_date")) else {
        return respond(
            400,
            &json!({"error": "start_date and end_date (YYYY-MM-DD) are required"}),
        );
    };
    if end < start || (end - start).num_days() > 30 {
        return respond(400, &json!({"error": "the range must be 1 to 31 days"}));
    }
    let (from, to) = (
        NaiveDate::parse_from_str(REPORT_FROM, "%Y-%m-%d").unwrap(),
        NaiveDate::parse_from_str(REPORT_TO, "%Y-%m-%d").unwrap(),
    );
    let rows: Vec<Value> = start
        .iter_days()
        .take_while(|d| *d <= end)
        .filter(|d| *d >= from && *d <= to)
        .map(report_row)
        .collect();
    let page: usize = param(query, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let pages = rows.len().div_ceil(10);
    let slice: Vec<Value> = rows.iter().skip((page.max(1) - 1) * 10).take(10).cloned().collect();
    respond(200, &json!({"rows": slice, "page": page, "pages": pages}))
}

/// One Slack message: every seventh a `channel_join` event.
pub fn slack_message(i: usize) -> Value {
    let ts = format!("{}.{:06}", 1_700_000_000 + i * 60, i);
    match i % 7 {
        0 => {
            json!({"type": "message", "subtype": "channel_join", "ts": ts, "user": format!("U{:04}", i % 31), "text": format!("<@U{:04}> has joined the channel", i % 31)})
        }
        _ => json!({"type": "message", "ts": ts, "user": format!("U{:04}", i % 31), "text": format!("message {i}")}),
    }
}

fn slack(state: &Mutex<ReachState>, query: &str, auth: Option<String>) -> Response<Full<Bytes>> {
    if auth.as_deref() != Some(&format!("Bearer {SLACK_TOKEN}")) {
        return respond(200, &json!({"ok": false, "error": "invalid_auth"}));
    }
    if param(query, "channel").as_deref() != Some("C0123456") {
        return respond(200, &json!({"ok": false, "error": "channel_not_found"}));
    }
    let limit: usize = param(query, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100)
        .min(200);
    let cursor = param(query, "cursor").unwrap_or_default();
    let from: usize = match cursor.strip_prefix("dXNlcjpV") {
        Some(n) => n.parse().unwrap_or(0),
        None => 0,
    };
    let page_no = from / limit.max(1);
    if page_no % 2 == 1 && state.lock().unwrap().slack_limited.insert(cursor.clone()) {
        return respond(200, &json!({"ok": false, "error": "ratelimited"}));
    }
    let messages: Vec<Value> = (from..SLACK_MESSAGES).take(limit).map(slack_message).collect();
    let next = from + messages.len();
    let more = next < SLACK_MESSAGES;
    respond(
        200,
        &json!({
            "ok": true,
            "messages": messages,
            "has_more": more,
            "response_metadata": {"next_cursor": if more { format!("dXNlcjpV{next}") } else { String::new() }}
        }),
    )
}
