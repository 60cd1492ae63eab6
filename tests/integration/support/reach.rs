//! Provider shapes for the spec-reach examples, written from their documentation:
//! - `/report/daily?start_date=D&end_date=D&page=N`: a reporting API over the days of
//!   2022–2024, one row a day, 10 rows a page (`pages`), that refuses a range longer than
//!   31 days or ending before it starts (HTTP 400), as many ad and analytics APIs do.

use bytes::Bytes;
use chrono::NaiveDate;
use http_body_util::Full;
use hyper::Response;
use serde_json::{json, Value};

/// The report's first and last day.
pub const REPORT_FROM: &str = "2022-01-01";
pub const REPORT_TO: &str = "2024-12-31";

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
pub fn route(path: &str, query: &str) -> Option<Response<Full<Bytes>>> {
    match path {
        "/report/daily" => Some(report(query)),
        _ => None,
    }
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
