//! A local HTTP API replaying the recorded Rick and Morty and CoinCap pages, in every
//! pagination style sluice supports, with faults injected on demand.
//!
//! Routes (`{ep}` is `character`, `location` or `episode`):
//! - `/api/{ep}?page=N`: the real pages, `info.next` pointing back at this server
//!   (404 `{"error":"There is nothing here"}` past the last page, like the real API);
//! - `/empty/{ep}?page=N`: `{"results": [...]}`, an empty list past the last page;
//! - `/offset/{ep}?limit=L&offset=O`: `{"results": [...], "total": N}`;
//! - `/cursor/{ep}?cursor=C`: `{"results": [...], "next_cursor": "…" | null}`;
//! - `/link/{ep}?page=N`: `{"results": [...]}` with a `Link: <…>; rel="next"` header;
//! - `/v3/exchanges?limit=L&offset=O`: CoinCap's `{"data": [...]}` (the v2 capture);
//! - `/static/{name}`: the file `tests/fixtures/api/static/{name}.json` as it is;
//! - `/dyn/{name}`: a body a test put with [`ApiServer::put`];
//! - `/page?n=N[&next=URL][&link=1]`: `{"results": [{"id": N}], "info": {"next": URL}}`,
//!   the next URL in a `Link` header instead with `link=1`;
//! - `/redirect?to=URL`: 302 to URL;
//! - `/stripe/charges?limit=L[&starting_after=ID]`: Stripe's list shape over the 826
//!   characters as charges `ch_<id>`: `{"object": "list", "data": [...], "has_more": …}`;
//! - `/zendesk/tickets?cursor=N`: Zendesk's incremental export shape, 100 per page: an
//!   `after_url` that is never null and `end_of_stream`;
//! - `/hcursor/{ep}?c=N`: `{"results": [...]}` with the next cursor in `X-Next-Cursor`;
//! - `POST /graphql`: a GraphQL API over the characters, `{query, variables: {first,
//!   after}}` → `{"data": {"characters": {"nodes": [...], "pageInfo": {"hasNextPage",
//!   "endCursor"}}}}`; a query without `characters` gets `{"errors": [{"message": …}]}`;
//! - `POST /oauth/token`: an OAuth2 token endpoint for client `client-id` / `client-secret`
//!   (`client_credentials`, `refresh_token` with `rt-good`, or `password` for `owner` /
//!   `owner-pass` with `audience=https://api.example.com`; a form or a JSON body), issuing
//!   `tok-1`, `tok-2`, …;
//! - `/protected/{ep}?page=N`: `{"results": [...]}` for the latest token only, else 401;
//! - `/jsonplaceholder/posts`, `/jsonplaceholder/posts/{id}/comments` and
//!   `/jsonplaceholder/comments?postId={id}`: JSONPlaceholder's
//!   shape over the 51 episodes as posts and their characters as comments (`postId` set);
//! - five shapes written from their providers' documentation, over the 826 characters:
//!   Jira's `/jira/rest/api/3/search?startAt=S&maxResults=M` (`{startAt, maxResults,
//!   total, issues}`, pages capped at 50 whatever `maxResults` asks), Salesforce's
//!   `/salesforce/services/data/v59.0/query?q=…` (`{totalSize, done, nextRecordsUrl,
//!   records}`, the next URL relative, 200 a page), Airtable's
//!   `/airtable/v0/{base}/Contacts?pageSize=N&offset=T` (an `offset` token that is gone on
//!   the last page), Twilio's `/twilio/2010-04-01/Accounts/{sid}/Messages.json` (a relative
//!   `next_page_uri`, RFC 2822 dates) and Notion's `POST /notion/v1/databases/{id}/query`
//!   (`start_cursor` in the body, `has_more`, a required `Notion-Version` header and
//!   bearer token `notion-secret`);
//! - `/pokeapi/api/v2/pokemon?offset=O&limit=L` and `/pokeapi/api/v2/pokemon/{id}/`:
//!   PokeAPI's list (`{count, next, previous, results: [{name, url}]}`) and detail shapes
//!   over the 51 episodes; an unknown one is a 404 `Not Found`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};

use super::fixture;

/// A fault to inject on matching requests.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Any status with a small JSON body.
    Status(u16),
    /// 429 with a `Retry-After` header.
    TooManyRequests { retry_after: String },
    /// Wait this long before answering.
    Stall(Duration),
    /// HTTP 200 with the first half of the page only.
    Truncated,
    /// HTTP 200 with an HTML error page.
    Html,
    /// A page whose `info.next` points at itself.
    NextSelf,
    /// GitHub's rate limit: 403 with `X-RateLimit-Remaining: 0` and a reset time (epoch
    /// seconds) this many seconds ahead.
    RateLimited { reset_in: u64 },
}

struct Rule {
    target: String,
    fault: Fault,
    remaining: usize,
}

#[derive(Debug, Clone)]
pub struct Logged {
    pub target: String,
    pub authorization: Option<String>,
    pub user_agent: Option<String>,
    /// Every header, names lowercase.
    pub headers: Vec<(String, String)>,
}

/// A body put at `/dyn/{name}`, with its extra response headers.
type Put = (Vec<u8>, Vec<(String, String)>);

struct State {
    base: String,
    pages: HashMap<String, Vec<String>>,
    exchanges: Vec<Value>,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<Logged>>,
    dynamic: Mutex<HashMap<String, Put>>,
    /// OAuth2 tokens issued so far; only the latest is accepted.
    tokens: Mutex<u32>,
    /// Requests being answered now, and the most there ever were at once.
    in_flight: Mutex<(usize, usize)>,
    /// The bodies of the POST requests to `/graphql` and the HubSpot search, in order.
    bodies: Mutex<Vec<Value>>,
    /// The GitHub route's issues (made from the characters on first use), for tests that
    /// change them between runs.
    issues: Mutex<Option<Vec<Value>>>,
    /// The spec-reach routes' own state (see [`super::reach`]).
    reach: Mutex<super::reach::ReachState>,
    /// The bulk and file routes' own state (see [`super::files`]).
    files: Mutex<super::files::FilesState>,
}

pub struct ApiServer {
    pub base: String,
    state: Arc<State>,
}

fn load_pages(ep: &str) -> Vec<String> {
    let dir = fixture(&format!("api/rickandmorty/{ep}"));
    let mut n = 1;
    let mut out = Vec::new();
    while let Ok(text) = std::fs::read_to_string(dir.join(format!("page-{n}.json"))) {
        out.push(text);
        n += 1;
    }
    assert!(!out.is_empty(), "no fixture pages for {ep}");
    out
}

impl ApiServer {
    pub fn start() -> ApiServer {
        Self::start_on("127.0.0.1")
    }

    /// On another loopback address (`127.0.0.2`: a second host for cross-host tests).
    pub fn start_on(ip: &str) -> ApiServer {
        let listener = std::net::TcpListener::bind((ip, 0)).expect("bind the API server");
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let exchanges: Value =
            serde_json::from_str(&std::fs::read_to_string(fixture("api/coincap/exchanges-v2.json")).unwrap()).unwrap();
        let state = Arc::new(State {
            base: base.clone(),
            pages: ["character", "location", "episode"]
                .into_iter()
                .map(|ep| (ep.to_string(), load_pages(ep)))
                .collect(),
            exchanges: exchanges["data"].as_array().unwrap().clone(),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            dynamic: Mutex::new(HashMap::new()),
            tokens: Mutex::new(0),
            in_flight: Mutex::new((0, 0)),
            issues: Mutex::new(None),
            bodies: Mutex::new(Vec::new()),
            reach: Mutex::new(Default::default()),
            files: Mutex::new(Default::default()),
        });
        let served = state.clone();
        super::serve(
            listener,
            hyper::service::service_fn(move |req| {
                let state = served.clone();
                async move {
                    {
                        let mut n = state.in_flight.lock().unwrap();
                        n.0 += 1;
                        n.1 = n.1.max(n.0);
                    }
                    let resp = handle(&state, req).await;
                    state.in_flight.lock().unwrap().0 -= 1;
                    Ok::<_, Infallible>(resp)
                }
            }),
        );
        ApiServer { base, state }
    }

    /// Inject `fault` on the next `times` requests whose path and query equal `target`
    /// (or whose path equals it, when `target` has no `?`).
    pub fn fault(&self, target: &str, fault: Fault, times: usize) {
        self.state.rules.lock().unwrap().push(Rule {
            target: target.to_string(),
            fault,
            remaining: times,
        });
    }

    /// Inject no more faults.
    pub fn rules_clear(&self) {
        self.state.rules.lock().unwrap().clear();
    }

    /// Serve `body` at `/dyn/{name}`, with extra response headers.
    pub fn put(&self, name: &str, body: impl Into<Vec<u8>>, headers: &[(&str, &str)]) {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.state
            .dynamic
            .lock()
            .unwrap()
            .insert(name.to_string(), (body.into(), headers));
    }

    /// Change the GitHub route's issues (`{id, number, title, state, updated_at}`, made
    /// from the 826 characters, `updated_at` their `created`).
    pub fn edit_issues(&self, edit: impl FnOnce(&mut Vec<Value>)) {
        let mut issues = self.state.issues.lock().unwrap();
        edit(issues.get_or_insert_with(|| github_issues(&self.state)));
    }

    /// The JSON bodies POSTed to `/graphql` and the HubSpot search so far.
    pub fn bodies(&self) -> Vec<Value> {
        self.state.bodies.lock().unwrap().clone()
    }

    /// The most requests that were ever being answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.in_flight.lock().unwrap().1
    }

    /// OAuth2 tokens issued so far.
    pub fn tokens_issued(&self) -> u32 {
        *self.state.tokens.lock().unwrap()
    }

    /// The targets (path and query) of the requests under `prefix`, in order.
    pub fn targets_under(&self, prefix: &str) -> Vec<String> {
        self.requests()
            .into_iter()
            .map(|r| r.target)
            .filter(|t| t.starts_with(prefix))
            .collect()
    }

    /// Point the pre-signed file links of the bulk routes at `base` (another server).
    pub fn files_on(&self, base: &str) {
        self.state.files.lock().unwrap().files_host = Some(base.to_string());
    }

    /// The polls each Salesforce bulk job got, in the order they were created.
    pub fn job_polls(&self) -> Vec<u32> {
        super::files::job_polls(&self.state.files.lock().unwrap())
    }

    /// The query of each Salesforce bulk job, in the order they were created.
    pub fn job_queries(&self) -> Vec<String> {
        super::files::job_queries(&self.state.files.lock().unwrap())
    }

    /// Session logins made so far (`/session/api/login`).
    pub fn logins(&self) -> u32 {
        self.state.reach.lock().unwrap().logins()
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }
}

pub(super) fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap()
}

fn json_response(v: &Value) -> Response<Full<Bytes>> {
    respond(200, "application/json; charset=utf-8", v.to_string())
}

pub(super) fn param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let target = if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from);
    state.log.lock().unwrap().push(Logged {
        target: target.clone(),
        authorization: header("authorization"),
        user_agent: header("user-agent"),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    });

    if path == "/oauth/token" {
        let basic = header("authorization");
        let body = http_body_util::BodyExt::collect(req.into_body())
            .await
            .unwrap()
            .to_bytes();
        // A form (RFC 6749), or the same fields as a JSON object.
        let form = match serde_json::from_slice::<serde_json::Map<String, Value>>(&body) {
            Ok(m) => {
                let mut f = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in &m {
                    f.append_pair(k, v.as_str().unwrap_or_default());
                }
                f.finish()
            }
            Err(_) => String::from_utf8_lossy(&body).into_owned(),
        };
        let field = |name: &str| param(&form, name);
        let grant_ok = match field("grant_type").as_deref() {
            Some("client_credentials") => true,
            Some("refresh_token") => field("refresh_token").as_deref() == Some("rt-good"),
            // The password grant also wants the audience this server is for.
            Some("password") => {
                field("username").as_deref() == Some("owner")
                    && field("password").as_deref() == Some("owner-pass")
                    && field("audience").as_deref() == Some("https://api.example.com")
            }
            _ => false,
        };
        if basic.as_deref() != Some("Basic Y2xpZW50LWlkOmNsaWVudC1zZWNyZXQ=") || !grant_ok {
            return respond(401, "application/json", "{\"error\":\"invalid_client\"}");
        }
        let mut n = state.tokens.lock().unwrap();
        *n += 1;
        return json_response(&json!({"access_token": format!("tok-{n}"), "token_type": "bearer", "expires_in": 3600}));
    }
    if path.starts_with("/protected/") {
        let current = format!("Bearer tok-{}", state.tokens.lock().unwrap());
        if req.headers().get("authorization").and_then(|v| v.to_str().ok()) != Some(current.as_str()) {
            return respond(401, "application/json", "{\"error\":\"invalid_token\"}");
        }
    }
    if path.starts_with("/notion/") {
        let version = header("notion-version");
        let auth = header("authorization");
        let body = http_body_util::BodyExt::collect(req.into_body())
            .await
            .unwrap()
            .to_bytes();
        return notion(state, version, auth, &body);
    }
    if path == "/graphql" || path == "/crm/v3/objects/contacts/search" {
        let body = http_body_util::BodyExt::collect(req.into_body())
            .await
            .unwrap()
            .to_bytes();
        state
            .bodies
            .lock()
            .unwrap()
            .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
        if path != "/graphql" {
            return hubspot(state, &body);
        }
        return graphql(state, &body);
    }
    let fault = {
        let mut rules = state.rules.lock().unwrap();
        let hit = rules
            .iter_mut()
            .find(|r| r.remaining > 0 && (r.target == target || r.target == path));
        hit.map(|r| {
            r.remaining -= 1;
            r.fault.clone()
        })
    };
    let mut next_self = false;
    match fault {
        Some(Fault::Status(code)) => {
            return respond(code, "application/json", format!("{{\"error\":\"injected {code}\"}}"))
        }
        Some(Fault::TooManyRequests { retry_after }) => {
            return Response::builder()
                .status(429)
                .header("retry-after", retry_after)
                .body(Full::new(Bytes::from_static(b"{\"error\":\"slow down\"}")))
                .unwrap()
        }
        Some(Fault::Stall(d)) => tokio::time::sleep(d).await,
        Some(Fault::RateLimited { reset_in }) => {
            let reset = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + reset_in;
            return Response::builder()
                .status(403)
                .header("x-ratelimit-remaining", "0")
                .header("x-ratelimit-reset", reset.to_string())
                .body(Full::new(Bytes::from_static(
                    b"{\"message\":\"API rate limit exceeded\"}",
                )))
                .unwrap();
        }
        Some(Fault::Html) => {
            return respond(
                200,
                "text/html",
                "<html><head><title>502 Bad Gateway</title></head><body>upstream error</body></html>",
            )
        }
        Some(Fault::Truncated) => {
            let full = route(state, &path, &query, false);
            let body = full.into_body();
            let bytes = http_body_util::BodyExt::collect(body).await.unwrap().to_bytes();
            return respond(200, "application/json", bytes.slice(..bytes.len() / 2));
        }
        Some(Fault::NextSelf) => next_self = true,
        None => {}
    }
    let headers = req.headers().clone();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(String::from);
    let body = http_body_util::BodyExt::collect(req.into_body())
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if let Some(resp) = super::reach::route(&state.reach, &path, &query, &header, &body) {
        return resp;
    }
    let records = |ep: &str| records_of(state, ep);
    if let Some(resp) = super::files::route(&state.files, &records, &path, &query, &header, &body) {
        return resp;
    }
    route(state, &path, &query, next_self)
}

/// All 826 characters of the fixture, in order.
fn characters(state: &State) -> Vec<Value> {
    records_of(state, "character")
}

/// Every record of endpoint `ep` (`character`, `location`, `episode`), in order.
fn records_of(state: &State, ep: &str) -> Vec<Value> {
    state.pages[ep]
        .iter()
        .flat_map(|page| {
            serde_json::from_str::<Value>(page).unwrap()["results"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect()
}

/// A number of a query parameter, or `default`.
fn number(query: &str, name: &str, default: usize) -> usize {
    param(query, name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Jira, Salesforce, Airtable and Twilio, as their documentation shows them.
fn documented(state: &State, path: &str, query: &str) -> Option<Response<Full<Bytes>>> {
    let all = characters(state);
    let id = |c: &Value| c["id"].as_u64().unwrap();
    if path == "/jira/rest/api/3/search" {
        // "may return fewer items per page than maxResults": this one never sends more than 50.
        let start = number(query, "startAt", 0);
        let max = number(query, "maxResults", 50).min(50);
        let issues: Vec<Value> = all
            .iter()
            .skip(start)
            .take(max)
            .map(|c| json!({"id": (10_000 + id(c)).to_string(), "key": format!("SL-{}", id(c)), "fields": {"summary": c["name"], "status": {"name": c["status"]}, "created": c["created"]}}))
            .collect();
        return Some(json_response(
            &json!({"expand": "schema,names", "startAt": start, "maxResults": max, "total": all.len(), "issues": issues}),
        ));
    }
    if let Some(rest) = path.strip_prefix("/salesforce/services/data/v59.0/query") {
        let from: usize = match rest.strip_prefix("/01gD0000002HU6KIAW-") {
            Some(n) => n.parse().ok()?,
            None if rest.is_empty() && param(query, "q").is_some() => 0,
            None => {
                return Some(respond(
                    400,
                    "application/json",
                    "[{\"errorCode\":\"MALFORMED_QUERY\"}]",
                ))
            }
        };
        let records: Vec<Value> = all
            .iter()
            .skip(from)
            .take(200)
            .map(|c| json!({"attributes": {"type": "Contact", "url": format!("/services/data/v59.0/sobjects/Contact/003{:015}", id(c))}, "Id": format!("003{:015}", id(c)), "Name": c["name"], "Status__c": c["status"], "CreatedDate": c["created"]}))
            .collect();
        let done = from + 200 >= all.len();
        let mut body = json!({"totalSize": all.len(), "done": done, "records": records});
        if !done {
            body["nextRecordsUrl"] = json!(format!(
                "/salesforce/services/data/v59.0/query/01gD0000002HU6KIAW-{}",
                from + 200
            ));
        }
        return Some(json_response(&body));
    }
    if path == "/airtable/v0/appAbc123Def456Gh/Contacts" {
        let size = number(query, "pageSize", 100).min(100);
        let from = match param(query, "offset") {
            Some(t) => t.strip_prefix("itr")?.split('/').next()?.parse().ok()?,
            None => 0,
        };
        let records: Vec<Value> = all
            .iter()
            .skip(from)
            .take(size)
            .map(|c| json!({"id": format!("rec{:014}", id(c)), "createdTime": c["created"], "fields": {"Name": c["name"], "Status": c["status"]}}))
            .collect();
        let mut body = json!({"records": records});
        if from + size < all.len() {
            body["offset"] = json!(format!("itr{}/rec{:014}", from + size, from + size + 1));
        }
        return Some(json_response(&body));
    }
    let twilio = "/twilio/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";
    if path == twilio {
        let size = number(query, "PageSize", 50).min(1000);
        let page = number(query, "Page", 0);
        if page > 0 && param(query, "PageToken").is_none() {
            return Some(respond(
                400,
                "application/json",
                "{\"code\": 20003, \"message\": \"PageToken required\"}",
            ));
        }
        let from = page * size;
        let messages: Vec<Value> = all
            .iter()
            .skip(from)
            .take(size)
            .map(|c| {
                let created = chrono::DateTime::parse_from_rfc3339(c["created"].as_str().unwrap()).unwrap();
                json!({"sid": format!("SM{:032x}", id(c)), "account_sid": "AC0123456789abcdef0123456789abcdef", "body": c["name"], "status": "delivered", "num_segments": "1", "date_created": created.to_rfc2822(), "price": "-0.00750"})
            })
            .collect();
        let uri = |p: usize| format!("{twilio}?PageSize={size}&Page={p}");
        let next = (from + size < all.len())
            .then(|| format!("{}&PageToken=PASM{:032x}", uri(page + 1), from + size))
            .map_or(Value::Null, Value::String);
        return Some(json_response(&json!({
            "first_page_uri": uri(0), "end": from + messages.len().saturating_sub(1), "previous_page_uri": Value::Null,
            "messages": messages, "uri": uri(page), "page_size": size, "start": from,
            "next_page_uri": next, "page": page
        })));
    }
    None
}

/// A Notion page id for a character.
fn notion_id(id: u64) -> String {
    format!("{id:08x}-0000-4000-8000-{id:012x}")
}

/// Notion's database query: `{page_size, start_cursor}` in, `{results, next_cursor,
/// has_more}` out; the cursor is the id of the next page's first record.
fn notion(state: &State, version: Option<String>, auth: Option<String>, body: &[u8]) -> Response<Full<Bytes>> {
    if auth.as_deref() != Some("Bearer notion-secret") {
        return respond(
            401,
            "application/json",
            "{\"object\":\"error\",\"status\":401,\"code\":\"unauthorized\",\"message\":\"API token is invalid.\"}",
        );
    }
    if version.is_none() {
        return respond(400, "application/json", "{\"object\":\"error\",\"status\":400,\"code\":\"missing_version\",\"message\":\"Notion-Version header failed validation: Notion-Version header should be defined, instead was `undefined`.\"}");
    }
    let asked: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let all = characters(state);
    let size = asked["page_size"].as_u64().unwrap_or(100).min(100) as usize;
    let from = match asked["start_cursor"].as_str() {
        Some(c) => match all.iter().position(|x| notion_id(x["id"].as_u64().unwrap()) == c) {
            Some(i) => i,
            None => return respond(400, "application/json", "{\"object\":\"error\",\"status\":400,\"code\":\"validation_error\",\"message\":\"start_cursor is invalid\"}"),
        },
        None => 0,
    };
    let results: Vec<Value> = all
        .iter()
        .skip(from)
        .take(size)
        .map(|c| json!({"object": "page", "id": notion_id(c["id"].as_u64().unwrap()), "created_time": c["created"], "archived": false, "properties": {"Name": {"title": [{"plain_text": c["name"]}]}, "Status": {"select": {"name": c["status"]}}}}))
        .collect();
    let more = from + size < all.len();
    let next = all
        .get(from + size)
        .map_or(Value::Null, |c| json!(notion_id(c["id"].as_u64().unwrap())));
    json_response(
        &json!({"object": "list", "results": results, "next_cursor": next, "has_more": more, "type": "page_or_database", "page_or_database": {}}),
    )
}

/// The GitHub route's issues at the start: one per character.
fn github_issues(state: &State) -> Vec<Value> {
    characters(state)
        .iter()
        .map(|c| json!({"id": c["id"].as_u64().unwrap() + 1_000_000_000, "number": c["id"], "title": c["name"], "state": "open", "updated_at": c["created"]}))
        .collect()
}

/// All 51 episodes of the fixture, in order.
fn episodes(state: &State) -> Vec<Value> {
    state.pages["episode"]
        .iter()
        .flat_map(|page| {
            serde_json::from_str::<Value>(page).unwrap()["results"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect()
}

/// The ids of the characters of an episode (from their URLs).
pub fn episode_character_ids(episode: &Value) -> Vec<u64> {
    episode["characters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().rsplit('/').next().unwrap().parse().unwrap())
        .collect()
}

fn slug(name: &str) -> String {
    name.to_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// JSONPlaceholder: `/posts` and `/posts/{id}/comments`, whole lists without paging.
fn jsonplaceholder(state: &State, path: &str, query: &str) -> Option<Response<Full<Bytes>>> {
    let rest = path.strip_prefix("/jsonplaceholder")?;
    let all = episodes(state);
    if rest == "/posts" {
        let posts: Vec<Value> = all
            .iter()
            .map(|e| {
                let id = e["id"].as_u64().unwrap();
                json!({"userId": (id - 1) / 10 + 1, "id": id, "title": e["name"], "body": format!("{} aired {}", e["episode"].as_str().unwrap(), e["air_date"].as_str().unwrap())})
            })
            .collect();
        return Some(json_response(&Value::Array(posts)));
    }
    let id: u64 = match rest {
        "/comments" => param(query, "postId")?.parse().ok()?,
        _ => rest.strip_prefix("/posts/")?.strip_suffix("/comments")?.parse().ok()?,
    };
    let Some(episode) = all.iter().find(|e| e["id"] == id) else {
        return Some(json_response(&json!([])));
    };
    let comments: Vec<Value> = episode_character_ids(episode)
        .into_iter()
        .map(|c| json!({"postId": id, "id": id * 1000 + c, "name": format!("character {c}"), "email": format!("character{c}@citadel.example"), "body": format!("https://rickandmortyapi.com/api/character/{c}")}))
        .collect();
    Some(json_response(&Value::Array(comments)))
}

/// PokeAPI: the paged list of named resources and the detail of each.
fn pokeapi(state: &State, path: &str, query: &str) -> Option<Response<Full<Bytes>>> {
    let rest = path.strip_prefix("/pokeapi/api/v2/pokemon")?;
    let all = episodes(state);
    let url = |id: &Value| format!("{}/pokeapi/api/v2/pokemon/{id}/", state.base);
    if rest.is_empty() || rest == "/" {
        let limit: usize = param(query, "limit").and_then(|v| v.parse().ok()).unwrap_or(20);
        let offset: usize = param(query, "offset").and_then(|v| v.parse().ok()).unwrap_or(0);
        let page = |o: usize| format!("{}/pokeapi/api/v2/pokemon?offset={o}&limit={limit}", state.base);
        let results: Vec<Value> = all
            .iter()
            .skip(offset)
            .take(limit)
            .map(|e| json!({"name": slug(e["name"].as_str().unwrap()), "url": url(&e["id"])}))
            .collect();
        return Some(json_response(&json!({
            "count": all.len(),
            "next": if offset + limit < all.len() { json!(page(offset + limit)) } else { Value::Null },
            "previous": if offset > 0 { json!(page(offset.saturating_sub(limit))) } else { Value::Null },
            "results": results,
        })));
    }
    let key = rest.trim_matches('/');
    let found = all
        .iter()
        .find(|e| key.parse::<u64>().is_ok_and(|n| e["id"] == n) || slug(e["name"].as_str().unwrap()) == key);
    Some(match found {
        None => respond(404, "text/plain", "Not Found"),
        Some(e) => {
            let season = &e["episode"].as_str().unwrap()[..3];
            json_response(&json!({
                "id": e["id"],
                "name": slug(e["name"].as_str().unwrap()),
                "height": episode_character_ids(e).len(),
                "weight": e["id"].as_u64().unwrap() * 10,
                "types": [{"slot": 1, "type": {"name": season.to_lowercase(), "url": format!("{}/pokeapi/api/v2/type/{}/", state.base, season.to_lowercase())}}],
            }))
        }
    })
}

/// HubSpot's CRM search: `{"results": [...], "paging": {"next": {"after": "…"}}}`, the
/// cursor in the body's `after`.
fn hubspot(state: &State, body: &[u8]) -> Response<Full<Bytes>> {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let all = characters(state);
    let limit = request["limit"].as_u64().unwrap_or(10) as usize;
    let from: usize = request["after"].as_str().and_then(|a| a.parse().ok()).unwrap_or(0);
    let results: Vec<Value> = all
        .iter()
        .skip(from)
        .take(limit)
        .map(|c| json!({"id": c["id"].to_string(), "properties": {"firstname": c["name"], "email": null}}))
        .collect();
    let end = from + results.len();
    let mut answer = json!({"total": all.len(), "results": results});
    if end < all.len() {
        answer["paging"] = json!({"next": {"after": end.to_string()}});
    }
    json_response(&answer)
}

fn graphql(state: &State, body: &[u8]) -> Response<Full<Bytes>> {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let query = request["query"].as_str().unwrap_or("");
    if !query.contains("characters") {
        return json_response(&json!({"errors": [{"message": format!("Cannot query field on type Query: {query}")}]}));
    }
    let all = characters(state);
    // Rick and Morty's own shape: `characters(page:)` with `info { next }`, 20 a page.
    if let Some(page) = request["variables"]["page"].as_u64() {
        let all = characters(state);
        let from = (page as usize - 1) * 20;
        let results: Vec<Value> = all
            .iter()
            .skip(from)
            .take(20)
            .map(|c| json!({"id": c["id"].to_string(), "name": c["name"]}))
            .collect();
        let next = if from + 20 < all.len() {
            json!(page + 1)
        } else {
            Value::Null
        };
        return json_response(&json!({"data": {"characters": {"info": {"next": next}, "results": results}}}));
    }
    let first = request["variables"]["first"].as_u64().unwrap_or(10) as usize;
    let from = match request["variables"]["after"].as_str() {
        Some(after) => after.trim_start_matches("c").parse::<usize>().unwrap_or(0),
        None => 0,
    };
    let nodes: Vec<Value> = all
        .iter()
        .skip(from)
        .take(first)
        .map(|c| json!({"id": c["id"].to_string(), "name": c["name"]}))
        .collect();
    let end = from + nodes.len();
    json_response(&json!({"data": {"characters": {
        "nodes": nodes,
        "pageInfo": {"hasNextPage": end < all.len(), "endCursor": format!("c{end}")}
    }}}))
}

fn route(state: &State, path: &str, query: &str, next_self: bool) -> Response<Full<Bytes>> {
    if let Some(resp) = jsonplaceholder(state, path, query)
        .or_else(|| pokeapi(state, path, query))
        .or_else(|| documented(state, path, query))
    {
        return resp;
    }
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (style, ep) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if style == "static" {
        return match std::fs::read_to_string(fixture(&format!("api/static/{ep}.json"))) {
            Ok(text) => respond(200, "application/json", text),
            Err(_) => respond(404, "application/json", "{\"error\":\"There is nothing here\"}"),
        };
    }
    if style == "dyn" {
        let dynamic = state.dynamic.lock().unwrap();
        return match dynamic.get(ep) {
            Some((body, headers)) => {
                let mut resp = respond(200, "application/json", body.clone());
                for (k, v) in headers {
                    resp.headers_mut().insert(
                        hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        v.parse().unwrap(),
                    );
                }
                resp
            }
            None => respond(404, "application/json", "{\"error\":\"There is nothing here\"}"),
        };
    }
    if style == "page" {
        let n: u64 = param(query, "n").and_then(|v| v.parse().ok()).unwrap_or(1);
        let next = param(query, "next");
        if param(query, "link").is_some() {
            let mut resp = json_response(&json!({ "results": [{"id": n}] }));
            if let Some(next) = next {
                resp.headers_mut()
                    .insert("link", format!("<{next}>; rel=\"next\"").parse().unwrap());
            }
            return resp;
        }
        return json_response(&json!({ "results": [{"id": n}], "info": {"next": next} }));
    }
    // The providers' own paths, for the example specs.
    let (style, path) = match path {
        "/v1/charges" => ("stripe", path),
        "/api/v2/incremental/tickets/cursor.json" => ("zendesk", path),
        "/repos/rust-lang/rust/issues" => ("github", path),
        _ => (style, path),
    };
    if style == "github" {
        // `since`: only issues updated at or after it, as GitHub does.
        let since = param(query, "since").map(|s| chrono::DateTime::parse_from_rfc3339(&s).expect("since is RFC 3339"));
        let all: Vec<Value> = state
            .issues
            .lock()
            .unwrap()
            .get_or_insert_with(|| github_issues(state))
            .iter()
            .filter(|i| {
                since.is_none_or(|since| {
                    chrono::DateTime::parse_from_rfc3339(i["updated_at"].as_str().unwrap()).unwrap() >= since
                })
            })
            .cloned()
            .collect();
        let per_page: usize = param(query, "per_page").and_then(|v| v.parse().ok()).unwrap_or(30);
        let page: usize = param(query, "page").and_then(|v| v.parse().ok()).unwrap_or(1);
        let issues: Vec<Value> = all.iter().skip((page - 1) * per_page).take(per_page).cloned().collect();
        let last = all.len().div_ceil(per_page).max(1);
        let mut resp = json_response(&Value::Array(issues));
        let since = param(query, "since")
            .map(|s| {
                format!(
                    "&since={}",
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                )
            })
            .unwrap_or_default();
        let link = |p: usize, rel: &str| {
            format!(
                "<{}{path}?state=all&per_page={per_page}{since}&page={p}>; rel=\"{rel}\"",
                state.base
            )
        };
        let mut links = Vec::new();
        if page < last {
            links.push(link(page + 1, "next"));
        }
        links.push(link(last, "last"));
        resp.headers_mut().insert("link", links.join(", ").parse().unwrap());
        return resp;
    }
    if style == "stripe" || style == "zendesk" {
        let all = characters(state);
        if style == "stripe" {
            let limit: usize = param(query, "limit").and_then(|v| v.parse().ok()).unwrap_or(10);
            let from = match param(query, "starting_after") {
                Some(id) => all
                    .iter()
                    .position(|c| format!("ch_{}", c["id"]) == id)
                    .map_or(all.len(), |i| i + 1),
                None => 0,
            };
            let data: Vec<Value> = all[from..]
                .iter()
                .take(limit)
                .map(|c| json!({"id": format!("ch_{}", c["id"]), "object": "charge", "name": c["name"]}))
                .collect();
            return json_response(
                &json!({"object": "list", "data": data, "has_more": from + limit < all.len(), "url": "/v1/charges"}),
            );
        }
        let cursor: usize = param(query, "cursor").and_then(|v| v.parse().ok()).unwrap_or(0);
        let tickets: Vec<Value> = all.iter().skip(cursor).take(100).cloned().collect();
        return json_response(&json!({
            "tickets": tickets,
            "after_url": format!("{}{path}?cursor={}", state.base, cursor + 100),
            "end_of_stream": cursor + 100 >= all.len()
        }));
    }
    if style == "hcursor" {
        let n: usize = param(query, "c").and_then(|v| v.parse().ok()).unwrap_or(1);
        let Some(pages) = state.pages.get(ep) else {
            return respond(404, "application/json", "{}");
        };
        let results = serde_json::from_str::<Value>(&pages[n - 1]).unwrap()["results"].clone();
        let mut resp = json_response(&json!({ "results": results }));
        if n < pages.len() {
            resp.headers_mut()
                .insert("x-next-cursor", (n + 1).to_string().parse().unwrap());
        }
        return resp;
    }
    if style == "redirect" {
        return Response::builder()
            .status(302)
            .header("location", param(query, "to").unwrap_or_default())
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    if style == "v3" && ep == "exchanges" {
        let limit: usize = param(query, "limit").and_then(|v| v.parse().ok()).unwrap_or(100);
        let offset: usize = param(query, "offset").and_then(|v| v.parse().ok()).unwrap_or(0);
        let data: Vec<Value> = state.exchanges.iter().skip(offset).take(limit).cloned().collect();
        // The capture kept only `data`; CoinCap v3 wraps it the same way.
        return json_response(&json!({ "data": data }));
    }
    let Some(pages) = state.pages.get(ep) else {
        return respond(404, "application/json", "{\"error\":\"There is nothing here\"}");
    };
    let page: usize = param(query, "page")
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1);
    let results = |n: usize| -> Vec<Value> {
        pages
            .get(n - 1)
            .map(|p| {
                serde_json::from_str::<Value>(p).unwrap()["results"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .unwrap_or_default()
    };
    match style {
        "api" => match pages.get(page - 1) {
            Some(text) => {
                let mut body = text.replace("{{base_url}}", &format!("{}/api", state.base));
                if next_self {
                    let mut v: Value = serde_json::from_str(&body).unwrap();
                    v["info"]["next"] = json!(format!("{}/api/{ep}?page={page}", state.base));
                    body = v.to_string();
                }
                respond(200, "application/json; charset=utf-8", body)
            }
            None => respond(404, "application/json", "{\"error\":\"There is nothing here\"}"),
        },
        "empty" | "protected" => json_response(&json!({ "results": results(page) })),
        "offset" => {
            let all: Vec<Value> = (1..=pages.len()).flat_map(results).collect();
            let limit: usize = param(query, "limit").and_then(|v| v.parse().ok()).unwrap_or(20);
            let offset: usize = param(query, "offset").and_then(|v| v.parse().ok()).unwrap_or(0);
            let slice: Vec<Value> = all.iter().skip(offset).take(limit).cloned().collect();
            json_response(&json!({ "results": slice, "total": all.len() }))
        }
        "cursor" => {
            let n: usize = param(query, "cursor")
                .and_then(|c| c.strip_prefix("c-").and_then(|n| n.parse().ok()))
                .unwrap_or(1);
            let next = if n < pages.len() {
                json!(format!("c-{}", n + 1))
            } else {
                Value::Null
            };
            json_response(&json!({ "results": results(n), "meta": { "next_cursor": next } }))
        }
        "link" => {
            let mut resp = json_response(&json!({ "results": results(page) }));
            let mut links = vec![format!("<{}/link/{ep}?page=1>; rel=\"first\"", state.base)];
            if page < pages.len() {
                links.push(format!("<{}/link/{ep}?page={}>; rel=\"next\"", state.base, page + 1));
            }
            resp.headers_mut().insert("link", links.join(", ").parse().unwrap());
            resp
        }
        _ => respond(404, "application/json", "{\"error\":\"There is nothing here\"}"),
    }
}
