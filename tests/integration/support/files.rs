//! Provider shapes for bulk and file APIs, each written from its provider's documentation,
//! over the fixture's 826 characters and 51 episodes:
//! - Salesforce Bulk API 2.0 under `/sfbulk/services/data/v59.0/jobs/query`: `POST` creates
//!   a query job (`{id, state: "UploadComplete"}`), `GET …/{id}` answers `InProgress`
//!   [`SF_POLLS_IN_PROGRESS`] times, then `JobComplete` (a query `FROM Nothing` answers
//!   `Failed` with an `errorMessage`; `FROM Slow` never finishes), and
//!   `GET …/{id}/results?maxRecords=N[&locator=L]` is a CSV page of contacts with the next
//!   page's token in `Sforce-Locator` (`null` on the last). Bearer token
//!   [`SF_TOKEN`] only, else 401 `INVALID_SESSION_ID`;
//! - Shopify bulk operations under `POST /shopify/admin/api/2024-01/graphql.json`
//!   (`X-Shopify-Access-Token: `[`SHOPIFY_TOKEN`]): `bulkOperationRunQuery` starts one,
//!   `currentBulkOperation` answers `RUNNING` once, then `COMPLETED` with a pre-signed
//!   `url` on the files host (set by [`super::api::ApiServer::files_on`]);
//!   `GET /shopify-files/bulk-N.jsonl?X-Goog-Signature=…` is the JSON Lines file: a
//!   product per character and a variant (`__parentId`) for every third, refused with
//!   400 when a request carries credentials, as Google Cloud Storage does for signed URLs;
//! - `/files/characters.csv.gz`: a gzipped, `;`-separated, Latin-1 CSV file of the
//!   characters (`Content-Type: application/gzip`, no `Content-Encoding`), as open-data
//!   portals publish them;
//! - `/feeds/episodes.rss`: an RSS 2.0 feed of the episodes.

use std::io::Write;
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use serde_json::{json, Value};

use super::api::{param, respond};

pub const SF_TOKEN: &str = "00Dsf-access-token";
pub const SF_POLLS_IN_PROGRESS: u32 = 2;
pub const SHOPIFY_TOKEN: &str = "shpat_test_token";
/// Characters with a Shopify variant line: every third.
pub const SHOPIFY_VARIANTS: usize = 275;

/// What the job routes remember, per server.
#[derive(Default)]
pub struct FilesState {
    /// Salesforce jobs: the query and the polls so far.
    sf_jobs: Vec<(String, u32)>,
    /// Shopify bulk operations started, and polls of the latest.
    shopify_ops: u32,
    shopify_polls: u32,
    /// Where pre-signed file links point.
    pub files_host: Option<String>,
}

fn json_answer(status: u16, v: &Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", v.to_string())
}

/// A CSV field, quoted when it must be.
fn csv_field(s: &str, delimiter: char) -> String {
    if s.contains([delimiter, '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A contact's Salesforce `Id`.
pub fn sf_id(character: &Value) -> String {
    format!("003R{:011}", character["id"].as_u64().unwrap())
}

/// The routes above; `None` for any other path.
pub fn route(
    state: &Mutex<FilesState>,
    records: &dyn Fn(&str) -> Vec<Value>,
    path: &str,
    query: &str,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
) -> Option<Response<Full<Bytes>>> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    Some(match parts.as_slice() {
        ["sfbulk", "services", "data", "v59.0", "jobs", "query", rest @ ..] => {
            if header("authorization") != Some(format!("Bearer {SF_TOKEN}")) {
                return Some(json_answer(
                    401,
                    &json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]),
                ));
            }
            salesforce(state, records, rest, query, body)
        }
        ["shopify", "admin", "api", "2024-01", "graphql.json"] => {
            if header("x-shopify-access-token").as_deref() != Some(SHOPIFY_TOKEN) {
                return Some(json_answer(
                    401,
                    &json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}),
                ));
            }
            shopify(state, body)
        }
        ["shopify-files", file] => {
            if header("authorization").is_some() || header("x-shopify-access-token").is_some() {
                return Some(respond(
                    400,
                    "application/xml",
                    "<Error><Code>InvalidArgument</Code><Message>Invalid argument: a signed URL takes no Authorization header.</Message></Error>",
                ));
            }
            if file
                .strip_prefix("bulk-")
                .and_then(|f| f.strip_suffix(".jsonl"))
                .is_none()
                || param(query, "X-Goog-Signature").is_none()
            {
                return Some(respond(
                    403,
                    "application/xml",
                    "<Error><Code>AccessDenied</Code></Error>",
                ));
            }
            let mut lines = String::new();
            for c in records("character") {
                let id = c["id"].as_u64().unwrap();
                let product = json!({"id": format!("gid://shopify/Product/{id}"), "title": c["name"], "status": if c["status"] == "Dead" { "ARCHIVED" } else { "ACTIVE" }, "createdAt": c["created"]});
                lines.push_str(&format!("{product}\n"));
                if id % 3 == 0 {
                    let variant = json!({"id": format!("gid://shopify/ProductVariant/{id}"), "sku": format!("SKU-{id}"), "__parentId": format!("gid://shopify/Product/{id}")});
                    lines.push_str(&format!("{variant}\n"));
                }
            }
            respond(200, "application/jsonl", lines)
        }
        ["files", "characters.csv.gz"] => {
            let mut csv = String::from("id;name;species;origin;note\n");
            for c in records("character") {
                let note = if c["id"].as_u64().unwrap() % 10 == 0 {
                    "Café"
                } else {
                    ""
                };
                let row = [
                    c["id"].to_string(),
                    c["name"].as_str().unwrap().to_string(),
                    c["species"].as_str().unwrap().to_string(),
                    c["origin"]["name"].as_str().unwrap().to_string(),
                    note.to_string(),
                ];
                let row: Vec<String> = row.iter().map(|f| csv_field(f, ';')).collect();
                csv.push_str(&row.join(";"));
                csv.push('\n');
            }
            // Latin-1: every character above U+00FF becomes `?`.
            let latin1: Vec<u8> = csv
                .chars()
                .map(|c| if (c as u32) < 256 { c as u8 } else { b'?' })
                .collect();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&latin1).unwrap();
            respond(200, "application/gzip", gz.finish().unwrap())
        }
        ["feeds", "episodes.rss"] => {
            let mut xml = String::from(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\">\n<channel>\n<title>Episodes</title>\n<link>https://example.com/</link>\n",
            );
            let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            for e in records("episode") {
                xml.push_str(&format!(
                    "<item>\n  <title>{}</title>\n  <guid isPermaLink=\"false\">ep-{}</guid>\n  <category>{}</category>\n  <dc:creator>Adult Swim</dc:creator>\n  <pubDate>{}</pubDate>\n  <description><![CDATA[<p>{} characters</p>]]></description>\n</item>\n",
                    escape(e["name"].as_str().unwrap()),
                    e["id"],
                    e["episode"].as_str().unwrap(),
                    escape(e["air_date"].as_str().unwrap()),
                    e["characters"].as_array().unwrap().len()
                ));
            }
            xml.push_str("</channel>\n</rss>\n");
            respond(200, "application/rss+xml", xml)
        }
        _ => return None,
    })
}

fn salesforce(
    state: &Mutex<FilesState>,
    records: &dyn Fn(&str) -> Vec<Value>,
    rest: &[&str],
    query: &str,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let mut s = state.lock().unwrap();
    let job_id = |n: usize| format!("750R{:011}", n + 1);
    let find = |id: &str, s: &FilesState| (0..s.sf_jobs.len()).find(|&n| job_id(n) == id);
    match rest {
        [] => {
            let asked: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let Some(q) = asked["query"].as_str().filter(|_| asked["operation"] == "query") else {
                return json_answer(
                    400,
                    &json!([{"errorCode": "INVALIDJOB", "message": "operation and query are required"}]),
                );
            };
            s.sf_jobs.push((q.to_string(), 0));
            let n = s.sf_jobs.len() - 1;
            json_answer(
                200,
                &json!({"id": job_id(n), "operation": "query", "object": "Contact", "state": "UploadComplete", "concurrencyMode": "Parallel", "contentType": "CSV", "apiVersion": 59.0, "lineEnding": "LF", "columnDelimiter": "COMMA"}),
            )
        }
        [id] => {
            let Some(n) = find(id, &s) else {
                return json_answer(
                    404,
                    &json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]),
                );
            };
            let (q, polls) = &mut s.sf_jobs[n];
            *polls += 1;
            let (state, error) = if q.contains("FROM Nothing") {
                ("Failed", Some("INVALID_TYPE: sObject type 'Nothing' is not supported."))
            } else if q.contains("FROM Slow") || *polls <= SF_POLLS_IN_PROGRESS {
                ("InProgress", None)
            } else {
                ("JobComplete", None)
            };
            let mut answer = json!({"id": id, "operation": "query", "object": "Contact", "state": state, "numberRecordsProcessed": if state == "JobComplete" { 826 } else { 0 }, "retries": 0, "totalProcessingTime": 1200});
            if let Some(e) = error {
                answer["errorMessage"] = json!(e);
            }
            json_answer(200, &answer)
        }
        [id, "results"] => {
            let done = find(id, &s).is_some_and(|n| s.sf_jobs[n].1 > SF_POLLS_IN_PROGRESS);
            if !done {
                return json_answer(
                    400,
                    &json!([{"errorCode": "INVALIDJOB", "message": "The job is not complete"}]),
                );
            }
            let max: usize = param(query, "maxRecords")
                .and_then(|m| m.parse().ok())
                .unwrap_or(50_000);
            let from: usize = param(query, "locator")
                .and_then(|l| l.strip_prefix("MTAw").and_then(|n| n.parse().ok()))
                .unwrap_or(0);
            let all = records("character");
            let mut csv = String::from("Id,Name,Status__c,Species__c,CreatedDate\n");
            for c in all.iter().skip(from).take(max) {
                let row = [
                    sf_id(c),
                    c["name"].as_str().unwrap().to_string(),
                    c["status"].as_str().unwrap().to_string(),
                    c["species"].as_str().unwrap().to_string(),
                    c["created"].as_str().unwrap().to_string(),
                ];
                let row: Vec<String> = row.iter().map(|f| csv_field(f, ',')).collect();
                csv.push_str(&row.join(","));
                csv.push('\n');
            }
            let next = from + max;
            let locator = if next < all.len() {
                format!("MTAw{next}")
            } else {
                "null".into()
            };
            Response::builder()
                .status(200)
                .header("content-type", "text/csv")
                .header("Sforce-Locator", locator)
                .header(
                    "Sforce-NumberOfRecords",
                    all.len().saturating_sub(from).min(max).to_string(),
                )
                .body(Full::new(Bytes::from(csv)))
                .unwrap()
        }
        _ => json_answer(404, &json!([{"errorCode": "NOT_FOUND", "message": "no such resource"}])),
    }
}

fn shopify(state: &Mutex<FilesState>, body: &[u8]) -> Response<Full<Bytes>> {
    let asked: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let q = asked["query"].as_str().unwrap_or_default();
    let mut s = state.lock().unwrap();
    if q.contains("bulkOperationRunQuery") {
        s.shopify_ops += 1;
        s.shopify_polls = 0;
        let id = format!("gid://shopify/BulkOperation/{}", s.shopify_ops);
        return json_answer(
            200,
            &json!({"data": {"bulkOperationRunQuery": {"bulkOperation": {"id": id, "status": "CREATED"}, "userErrors": []}}, "extensions": {"cost": {"requestedQueryCost": 10}}}),
        );
    }
    if q.contains("currentBulkOperation") {
        s.shopify_polls += 1;
        let id = format!("gid://shopify/BulkOperation/{}", s.shopify_ops);
        let op = if s.shopify_polls == 1 {
            json!({"id": id, "status": "RUNNING", "errorCode": null, "objectCount": "412", "url": null})
        } else {
            let host = s.files_host.clone().unwrap_or_default();
            json!({"id": id, "status": "COMPLETED", "errorCode": null, "objectCount": "1101", "fileSize": "123456",
                   "url": format!("{host}/shopify-files/bulk-{}.jsonl?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Expires=604800&X-Goog-Signature=5f1d2e", s.shopify_ops)})
        };
        return json_answer(200, &json!({"data": {"currentBulkOperation": op}}));
    }
    json_answer(
        200,
        &json!({"errors": [{"message": "Field 'nothing' doesn't exist on type 'QueryRoot'"}]}),
    )
}

/// The polls each Salesforce job got, in the order they were created.
pub fn job_polls(state: &FilesState) -> Vec<u32> {
    state.sf_jobs.iter().map(|(_, p)| *p).collect()
}

/// The query of each Salesforce bulk job, in the order they were created.
pub fn job_queries(state: &FilesState) -> Vec<String> {
    state.sf_jobs.iter().map(|(q, _)| q.clone()).collect()
}
