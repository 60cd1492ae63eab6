//! The raw spec types: exactly what a pipeline YAML file may say, nothing checked yet
//! beyond shape. Every doc comment here becomes the JSON Schema description and the
//! spec reference (`docs/spec-reference.md`), so it is written for the person authoring a spec.
//!
//! Fields marked *interpolated* may contain `${VAR}` or `${VAR:-default}`; they are
//! resolved from the environment only when a pipeline runs, never when it is validated.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::units::{ByteSize, Duration};
pub(crate) use crate::incremental::CursorFormat;
pub(crate) use crate::value::{ColumnType, Transform};

/// A sluice pipeline: one REST API source, one staging location, one PostgreSQL
/// warehouse and the resources that flow between them.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "sluice pipeline spec")]
pub(crate) struct RawSpec {
    /// Version of the spec language. Always `1`.
    pub version: u32,
    /// Pipeline name: a lowercase identifier used in staging keys, the ledger and diagrams.
    pub name: String,
    /// One line that says what the pipeline brings in; shown as the diagram title.
    #[serde(default)]
    pub description: Option<String>,
    /// The HTTP API every resource is read from.
    pub source: RawSource,
    /// Where raw records are staged between extract and load.
    pub staging: RawStaging,
    /// The PostgreSQL database the tables are loaded into.
    pub warehouse: RawWarehouse,
    /// Where the pipeline runs in production; only used to draw the architecture diagram.
    #[serde(default)]
    pub runtime: Option<RawRuntime>,
    /// The API endpoints to extract, each loaded into one table (plus nested child tables).
    pub resources: Vec<RawResource>,
}

/// The HTTP API shared by all resources.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    /// Base URL that every resource `path` is appended to (*interpolated*),
    /// for example `${RICKANDMORTY_BASE_URL:-https://rickandmortyapi.com/api}`.
    pub base_url: String,
    /// Headers sent with every request; values are *interpolated*.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters sent with every request: text (*interpolated*), numbers or
    /// booleans.
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    /// Authentication: `none`, or a mapping with `type: bearer | api_key | basic`.
    #[serde(default)]
    pub auth: RawAuth,
    /// Timeout of one HTTP request, for example `30s` or `500ms`. Default `30s`.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// How failed requests (connect errors, timeouts, 429, 500/502/503/504) are retried.
    #[serde(default)]
    pub retry: Option<RawRetry>,
    /// Client-side rate limit shared by all resources.
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
    /// Pages fetched at once when the page count is known up front. Default 4.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Other hosts that `next` links, `Link` headers and redirects may lead to, for
    /// example `cdn.example.com` (or `cdn.example.com:8443`). Auth and `headers` are sent
    /// only to the origin (scheme, host and port) of `base_url`, never to these; a link to
    /// any other host stops the resource with an error.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The largest response body (after decompression) one request may return, for
    /// example `64MiB`. Default `256MiB`; a larger one stops the resource with an error.
    #[serde(default)]
    pub max_response_size: Option<ByteSize>,
    /// Response rules every resource follows after its own `on_response` (see there).
    #[serde(default)]
    pub on_response: Vec<RawResponseRule>,
}

/// What to do with a response, chosen by its HTTP status, by what its JSON body says, or
/// both (all that are given must hold). The first rule that holds decides.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResponseRule {
    /// The HTTP statuses the rule is for, for example `[403, 400]`.
    #[serde(default)]
    pub status: Vec<u16>,
    /// A condition on the JSON body, for example `{path: $.ok, equals: false}` (Slack
    /// answers errors with HTTP 200).
    #[serde(default)]
    pub when: Option<RawStopWhen>,
    /// `ignore`: leave the page out and end the resource's pages there (for a `for_each`
    /// child: that parent's), counted in the run summary and the ledger; `retry`: ask again
    /// under the retry policy (the last attempt fails); `fail`: stop the resource.
    pub action: ResponseAction,
    /// What the log and the error say, with `{$.path}` placeholders read from the body,
    /// for example `"Slack says {$.error}"`.
    #[serde(default)]
    pub message: Option<String>,
}

/// What a response rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseAction {
    /// Leave the page out, count it, and end the pages there.
    Ignore,
    /// Ask again, as the retry policy says.
    Retry,
    /// Stop the resource with the rule's message.
    Fail,
}

/// Authentication for the source API. Secrets come from the environment only.
// One per spec: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum RawAuth {
    /// `none`: no authentication.
    Keyword(AuthKeyword),
    /// A mapping with `type: bearer | api_key | basic | oauth2 | session`.
    Config(RawAuthConfig),
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth::Keyword(AuthKeyword::None)
    }
}

/// The keyword form of `auth`.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AuthKeyword {
    /// No authentication.
    None,
}

/// Authentication with credentials.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RawAuthConfig {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token (*interpolated*), normally `${SOME_API_KEY}`.
        token: String,
    },
    /// An API key sent in a header or a query parameter.
    ApiKey {
        /// Header or query parameter name, for example `X-Api-Key`.
        name: String,
        /// The key (*interpolated*), normally `${SOME_API_KEY}`.
        value: String,
        /// Where the key goes: `header` (default) or `query`.
        #[serde(default, rename = "in")]
        location: ApiKeyLocation,
    },
    /// HTTP basic authentication.
    Basic {
        /// User name (*interpolated*).
        username: String,
        /// Password (*interpolated*), normally `${SOME_PASSWORD}`.
        password: String,
    },
    /// OAuth 2.0: an access token from `token_url`, sent as a bearer token. It is fetched
    /// once, reused, renewed before it expires and once after a 401.
    Oauth2 {
        /// `client_credentials` or `refresh_token`.
        grant: OAuth2Grant,
        /// The token endpoint (*interpolated*), for example `https://auth.example.com/oauth/token`.
        token_url: String,
        /// Client id (*interpolated*).
        client_id: String,
        /// Client secret (*interpolated*), normally `${SOME_CLIENT_SECRET}`.
        client_secret: String,
        /// The refresh token (*interpolated*, from the environment); for `grant: refresh_token`.
        #[serde(default)]
        refresh_token: Option<String>,
        /// Scopes to ask for.
        #[serde(default)]
        scopes: Vec<String>,
        /// The resource owner's user name (*interpolated*); for `grant: password`.
        #[serde(default)]
        username: Option<String>,
        /// The resource owner's password (*interpolated*, from the environment); for
        /// `grant: password`.
        #[serde(default)]
        password: Option<String>,
        /// More fields of the token request (*interpolated*), for example `{audience: …}`.
        #[serde(default)]
        extra: BTreeMap<String, String>,
        /// How the token request's body is written: `form` (default, as RFC 6749 says) or
        /// `json`.
        #[serde(default)]
        body_format: Option<BodyFormat>,
    },
    /// A login request first, whose answer holds a token that the API's requests then
    /// carry (a session token, a JWT). The login is made again once on a 401 and when
    /// `expires_in` says; like every credential, the token goes only to the origin of
    /// `base_url`, and it never appears in a log.
    Session {
        /// The login request.
        login: RawLogin,
        /// JSONPath to the token in the login's answer, for example `$.token`.
        token: String,
        /// The header that carries it, with `{token}`. Default `Authorization: Bearer {token}`.
        #[serde(default)]
        header: Option<String>,
        /// How long a token lasts: a duration such as `1h`, or a JSONPath to the seconds in
        /// the login's answer such as `$.expires_in`. Default: until the API answers 401.
        #[serde(default)]
        expires_in: Option<String>,
    },
}

/// The login request of `auth: {type: session}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLogin {
    /// HTTP method. Default `POST`.
    #[serde(default)]
    pub method: Option<HttpMethod>,
    /// The login URL (*interpolated*), absolute, or a path below `base_url` such as `/login`.
    pub url: String,
    /// The request body; its strings are *interpolated* and secret.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// How the body is written: `json` (default) or `form`.
    #[serde(default)]
    pub body_format: Option<BodyFormat>,
    /// Query parameters (*interpolated*).
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    /// Headers (*interpolated*).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// How a request body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BodyFormat {
    /// `application/x-www-form-urlencoded`.
    Form,
    /// `application/json`.
    Json,
}

/// How an OAuth 2.0 access token is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OAuth2Grant {
    /// With the client's own credentials.
    ClientCredentials,
    /// With a refresh token issued to a user.
    RefreshToken,
    /// With a user's name and password (`username`, `password`).
    Password,
}

/// Where an API key is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyLocation {
    /// In a request header.
    #[default]
    Header,
    /// In a query parameter.
    Query,
}

/// Retry policy with exponential backoff and full jitter; `Retry-After` is honoured.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    /// Attempts per request, the first included. Default 5.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Backoff before the first retry. Default `500ms`.
    #[serde(default)]
    pub initial_backoff: Option<Duration>,
    /// Longest wait between two attempts, `Retry-After` included (but not a rate limit's
    /// reset: see `max_wait`). Default `30s`.
    #[serde(default)]
    pub max_backoff: Option<Duration>,
    /// HTTP statuses worth another attempt. Default `[429, 500, 502, 503, 504]`. Whatever
    /// this says, a 403 or 429 with `X-RateLimit-Remaining: 0` waits for the limit's reset.
    #[serde(default)]
    pub on_status: Option<Vec<u16>>,
    /// The longest wait for a rate limit's reset (`X-RateLimit-Reset`); a later reset
    /// fails the resource at once, saying when it resets. Default `15m`.
    #[serde(default)]
    pub max_wait: Option<Duration>,
}

/// Client-side rate limit (token bucket).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    /// Requests per second across all resources.
    pub requests_per_second: f64,
}

/// Where raw records are staged.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStaging {
    /// `file://path`, a plain folder path, or `s3://bucket/prefix` (*interpolated*).
    pub location: String,
    /// Object key template below the location. Placeholders: `{pipeline}`, `{resource}`,
    /// `{run_id}`, `{part}` and `{run_time:<strftime>}`, for example
    /// `{pipeline}/{resource}/{run_time:%Y/%m/%d/%H/%M}/{run_id}-{part}.jsonl.gz`.
    #[serde(default)]
    pub key: Option<String>,
    /// Format of staged objects. Only `jsonl_gzip` (gzip JSON Lines of the raw records).
    // Read by the shape check only: there is one format, so nothing else needs it.
    #[allow(dead_code)]
    #[serde(default)]
    pub format: Option<StagingFormat>,
    /// Largest uncompressed size of one staged part before a new part starts, for example
    /// `64MiB`. Default `64MiB`.
    #[serde(default)]
    pub part_size: Option<ByteSize>,
    /// AWS region of the S3 bucket (*interpolated*); defaults to the AWS chain's region.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint URL of an S3-compatible store (*interpolated*), for example MinIO.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Use path-style S3 addressing (needed by most S3-compatible stores). Default: true
    /// when `endpoint` is set.
    #[serde(default)]
    pub path_style: Option<bool>,
}

/// Format of staged objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StagingFormat {
    /// Gzip-compressed JSON Lines, one raw record a line.
    #[default]
    JsonlGzip,
}

/// The warehouse: PostgreSQL, or an embedded SQLite file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWarehouse {
    /// *Interpolated.* A PostgreSQL libpq URL or key/value connection string, or
    /// `sqlite://<file>` (relative to the working directory; `sqlite:///abs/path.db`;
    /// option `?busy_timeout=60s`). For example `${DATABASE_URL:-sqlite://.sluice/x.db}`.
    pub url: String,
    /// PostgreSQL schema the tables are created in. SQLite has no schemas: there the tables
    /// are named alone, and sluice's own are `_sluice_runs`, `_sluice_rejects`, `_sluice_state`.
    pub schema: String,
}

/// Where the pipeline runs in production: the architecture diagram draws it, and
/// `sluice deploy aws` schedules it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRuntime {
    /// `aws_lambda` (drawn with AWS icons, as `sluice deploy aws` deploys it) or `local`.
    pub target: RuntimeTarget,
    /// AWS region, for example `eu-west-1` (deploy the stack there).
    #[serde(default)]
    pub region: Option<String>,
    /// Schedule expression, for example `rate(5 minutes)` or `cron(0 * * * ? *)`; `sluice
    /// deploy aws` makes it the EventBridge rule that starts the extraction.
    #[serde(default)]
    pub schedule: Option<String>,
    /// On AWS, the memory of this pipeline's functions, 128MiB to 10GiB in whole MiB
    /// (for example `2GiB`); else the template's `MemorySize`.
    #[serde(default)]
    pub memory: Option<ByteSize>,
    /// On AWS, the timeout of this pipeline's functions, at most `15m`; else the
    /// template's `ExtractTimeout` and `LoadTimeout`.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// On AWS, the functions' `/tmp` (where parts are written before upload), 512MiB to
    /// 10GiB. Default `512MiB`.
    #[serde(default)]
    pub ephemeral_storage: Option<ByteSize>,
    /// On AWS, how many extractions of this pipeline may run at once (the extract
    /// function's reserved concurrency): the date windows a backfill extracts at once.
    /// Default 1. A schedule never starts a run while another is under way.
    #[serde(default)]
    pub concurrency: Option<u32>,
}

/// Production runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeTarget {
    /// Extract and load run as AWS Lambda functions, staging in S3, warehouse in RDS.
    AwsLambda,
    /// Runs wherever `sluice run` is started.
    Local,
}

/// One API endpoint and the table it loads.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResource {
    /// Resource name, unique in the spec; used in staging keys and the ledger.
    pub name: String,
    /// Path appended to `source.base_url`, for example `/character`. With `for_each` it
    /// may hold `{parent.<field>}` placeholders, each filled with the parent record's
    /// value as one percent-encoded path segment: `/posts/{parent.id}/comments`.
    #[serde(default)]
    pub path: Option<String>,
    /// An absolute URL instead of `path`, for example `"{parent.url}"` when the parent
    /// records link to their detail. It is fetched under the same rules as a `next` link:
    /// credentials go only to the origin of `base_url`, other hosts must be in
    /// `source.allowed_hosts`.
    #[serde(default)]
    pub url: Option<String>,
    /// Make one request (with its own pagination) per record of the named resource, the
    /// parent: `path`, `url`, `params` and `body` take `{parent.<dotted field>}`
    /// placeholders (`{parent}` when the parent's records are scalars, such as ids) and
    /// columns may take `parent_path` (`$` for the scalar). The parent is extracted first;
    /// child requests share `source.concurrency` and the rate limit. Or
    /// `{values: [a, b, c]}` (or `{values: "${ACCOUNTS}"}`, split at commas): one request
    /// sequence per value, which `{item}` stands for and `parent_path: $` loads.
    #[serde(default)]
    pub for_each: Option<RawForEach>,
    /// With `for_each`: what a 404 for one parent's request does: `fail` (default) stops
    /// the resource, `skip` counts and logs it and goes on with the next parent (the same
    /// as the rule `on_response: [{status: [404], action: ignore}]`).
    #[serde(default)]
    pub on_missing: Option<OnMissing>,
    /// Response rules, tried in order before those of `source.on_response`: for example
    /// `[{status: [403], action: ignore}, {when: {path: $.ok, equals: false}, action: retry,
    /// message: "{$.error}"}]`.
    #[serde(default)]
    pub on_response: Vec<RawResponseRule>,
    /// HTTP method. Default `GET`.
    #[serde(default)]
    pub method: Option<HttpMethod>,
    /// Request body, sent as JSON with `method: POST` (a GraphQL request is
    /// `{query: "…", variables: {…}}`); its strings are *interpolated*.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// Query parameters of this resource: text (*interpolated*), numbers or booleans.
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    /// Headers of this resource's requests (*interpolated*; `${VAR:-}` unset leaves one
    /// out), after `source.headers`; they take the placeholders `params` take, such as
    /// `{incremental.start}`. Sent, like those, only to the origin of `base_url`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSONPath (RFC 9535) selecting the records in each page, for example `$.results[*]`.
    /// With `format: jsonl`, `csv` or `xml` it is applied to each line, row or element and
    /// defaults to `$` (the line, row or element itself).
    #[serde(default)]
    pub records: Option<String>,
    /// How the bodies of the pages (or of a `job`'s downloads) read: `json` (default),
    /// `jsonl` (JSON Lines: one record per line), `csv` or `xml`. Records of every format
    /// are staged as JSON Lines; a `jsonl`, `csv` or `xml` body is read as it streams in,
    /// never whole in memory.
    #[serde(default)]
    pub format: Option<BodyKind>,
    /// With `format: csv`: how the file reads.
    #[serde(default)]
    pub csv: Option<RawCsv>,
    /// With `format: xml`: which elements are the records.
    #[serde(default)]
    pub xml: Option<RawXml>,
    /// Whether a body is a compressed file (not `Content-Encoding`, which is always
    /// decoded): `auto` (default: gzip when it starts as gzip does), `gzip` or `none`.
    /// `source.max_response_size` applies to the decompressed bytes.
    #[serde(default)]
    pub compression: Option<Compression>,
    /// An asynchronous export: create a job, poll it until it is done, then download its
    /// file(s), which `format` reads and `paginate` pages through.
    #[serde(default)]
    pub job: Option<RawJob>,
    /// How to get from one page to the next. Default `{type: none}`.
    #[serde(default)]
    pub paginate: Option<RawPaginate>,
    /// Stop with an error after this many pages (guards against endless pagination).
    /// Default 10000.
    #[serde(default)]
    pub max_pages: Option<u64>,
    /// Read only what changed since the last load: the highest cursor value loaded is
    /// kept in the warehouse (`_sluice.state`) and sent as the start of the next run.
    #[serde(default)]
    pub incremental: Option<RawIncremental>,
    /// Load only the records that meet every one of these conditions, for example
    /// `[{path: $.type, equals: message}, {path: $.subtype, exists: false}]`. Staging keeps
    /// every record; the run summary and the ledger count those left out.
    #[serde(default)]
    pub filter: Vec<RawFilter>,
    /// The table the records are loaded into. A resource that only feeds a `for_each`
    /// may have none: its records are staged for the child requests but not loaded.
    #[serde(default)]
    pub table: Option<RawTable>,
}

/// How a response body reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BodyKind {
    /// One JSON document (default).
    #[default]
    Json,
    /// JSON Lines: one JSON value per line (empty lines are skipped).
    Jsonl,
    /// Comma-separated values: a record per row, its fields text.
    Csv,
    /// XML: the elements at `xml.records` are the records.
    Xml,
}

/// Whether a body is a compressed file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// gzip when the body starts with gzip's magic bytes, else as it is (default).
    #[default]
    Auto,
    /// Always gzip (one or more members).
    Gzip,
    /// Never decompressed.
    None,
}

/// How a CSV body reads.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCsv {
    /// The field separator, one character. Default `,` (`"\t"` for tab-separated).
    #[serde(default)]
    pub delimiter: Option<String>,
    /// `true` (default): the first row names the fields; a list of names: the file has no
    /// header row and these are the fields, in order.
    #[serde(default)]
    pub header: Option<CsvHeader>,
    /// The quote character. Default `"`.
    #[serde(default)]
    pub quote: Option<String>,
    /// The text encoding: `utf-8` (default; a byte-order mark is skipped) or `latin-1`.
    #[serde(default)]
    pub encoding: Option<String>,
    /// Field values read as null. Default `[""]` (an empty field is null).
    #[serde(default)]
    pub null: Option<Vec<String>>,
}

/// A CSV file's field names: from its first row, or given.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum CsvHeader {
    /// Whether the first row names the fields (only `true` is accepted: without a header
    /// row, give the names).
    FirstRow(bool),
    /// The field names of a file without a header row.
    Names(Vec<String>),
}

/// Which elements of an XML body are the records.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawXml {
    /// The records' element path from the root, `/`-separated, for example
    /// `rss/channel/item` (`*` matches any one element). Each becomes a JSON object: its
    /// attributes and child elements as fields (a repeated child as a list), an element
    /// with only text as that text, and text beside attributes or children as `_text`.
    pub records: String,
}

/// An asynchronous export job: `create` starts it, `poll` asks after it until `until`
/// holds, `download` names the file(s) it made.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJob {
    /// The request that creates the job; its JSON answer is `{job.<field>}` in the
    /// requests after it.
    pub create: RawJobRequest,
    /// The request that asks after the job, repeated until `until` holds.
    pub poll: RawPoll,
    /// Where the job's result is.
    pub download: RawDownload,
}

/// One request of a job.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJobRequest {
    /// HTTP method. Default `POST`.
    #[serde(default)]
    pub method: Option<HttpMethod>,
    /// A path below `base_url`, for example `/jobs`.
    #[serde(default)]
    pub path: Option<String>,
    /// An absolute URL instead of `path`.
    #[serde(default)]
    pub url: Option<String>,
    /// The JSON body (*interpolated*; takes `{incremental.start}`, `{parent.…}`, …).
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// Query parameters (*interpolated*).
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
}

/// How a job is polled.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPoll {
    /// HTTP method. Default `GET`.
    #[serde(default)]
    pub method: Option<HttpMethod>,
    /// A path below `base_url` with `{job.<field>}` from the create answer, for example
    /// `/jobs/{job.id}`.
    #[serde(default)]
    pub path: Option<String>,
    /// An absolute URL instead of `path`, for example `"{job.status_url}"`.
    #[serde(default)]
    pub url: Option<String>,
    /// The JSON body of a `POST` poll (a GraphQL query), *interpolated*.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    /// Query parameters (*interpolated*).
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    /// How long to wait between polls (a `Retry-After` answer waits that long instead).
    /// Default `5s`.
    #[serde(default)]
    pub every: Option<Duration>,
    /// When the job is done, for example `{path: $.state, equals: JobComplete}`.
    pub until: RawJobCondition,
    /// When the job has failed, for example `{path: $.state, in: [Failed, Aborted]}`.
    #[serde(default)]
    pub fail_when: Option<RawJobCondition>,
    /// What a failed job's error says, with `{$.path}` read from the poll answer, for
    /// example `"{$.errorMessage}"`. Default: the answer itself.
    #[serde(default)]
    pub message: Option<String>,
    /// How long the job may take before the resource fails. Default `30m`.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

/// A condition on a poll answer: the value at `path` equals `equals`, or is one of `in`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJobCondition {
    /// JSONPath on the poll answer, for example `$.status`.
    pub path: String,
    /// The value.
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
    /// The values, any of which holds.
    #[serde(default, rename = "in")]
    pub one_of: Option<Vec<serde_json::Value>>,
}

/// Where a finished job's result is: exactly one of `url` and `path`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDownload {
    /// JSONPath to the URL in the last poll answer, or to a list of URLs (each downloaded,
    /// in order), for example `$.data.currentBulkOperation.url`. A relative URL is below
    /// `base_url`; a URL on another host (a pre-signed link) is fetched without
    /// credentials.
    #[serde(default)]
    pub url: Option<String>,
    /// A path below `base_url` with `{job.<field>}`, for example
    /// `/jobs/{job.id}/results`.
    #[serde(default)]
    pub path: Option<String>,
}

/// Incremental loading: where each record's cursor is, how the start (and the end) of
/// the range is sent, and the date windows it is split into.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIncremental {
    /// JSONPath to the cursor in each record, for example `$.updated_at`; the highest
    /// value loaded is where the next run starts. Not needed with date windows (`step`,
    /// `end` or `{incremental.end}`), whose state is the end of the last window read.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Query parameter that sends the start, for example `since`.
    #[serde(default)]
    pub param: Option<String>,
    /// Query parameter that sends the end of the window (its last instant), for example
    /// `until`; the same as writing `{incremental.end}` in `params`.
    #[serde(default)]
    pub end_param: Option<String>,
    /// Dotted path of a field of the JSON body that takes the start instead, for example
    /// `filter.since`.
    #[serde(default)]
    pub body_field: Option<String>,
    /// The start of the first run (and of `--full-refresh`), in `format`, for example
    /// `"2020-01-01T00:00:00Z"` (*interpolated*: `${START_DATE:-2024-01-01}`).
    pub initial: ParamValue,
    /// The end of the range, inclusive: `now` (default: the run's start time) or a value in
    /// `format` (*interpolated*). Each run reads from its start up to here.
    #[serde(default)]
    pub end: Option<ParamValue>,
    /// Split the range into windows this long, each requested with its own pagination, in
    /// order: `1d`, `7d`, `12h`, `2w`, `1mo`, `1y`. `sluice run` loads and commits each
    /// window before the next, so a failed backfill resumes at the first unfinished one.
    #[serde(default)]
    pub step: Option<WindowStep>,
    /// The smallest step of what is sent: a window's `{incremental.end}` is the next
    /// window's start less this. Default one unit of `format` (a second for `rfc3339`, a
    /// day for `date` and `%Y-%m-%d`).
    #[serde(default)]
    pub granularity: Option<Duration>,
    /// How the start and end are written: `rfc3339` (default), `date`, `epoch_s`,
    /// `epoch_ms`, `integer`, or a strftime pattern such as `%Y-%m-%d`.
    #[serde(default)]
    pub format: Option<CursorFormat>,
    /// How the records' cursor reads, when not as `format` (an API that takes dates and
    /// answers timestamps): the same choices.
    #[serde(default)]
    pub cursor_format: Option<CursorFormat>,
    /// Start this much before the saved value (for records written late), for example
    /// `5m` or `1d`. Not for `integer`.
    #[serde(default)]
    pub lag: Option<Duration>,
}

/// The length of a date window: a number and a unit (`s`, `m`, `h`, `d`, `w`, `mo`, `y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowStep(pub crate::incremental::Step);

impl<'de> Deserialize<'de> for WindowStep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        crate::incremental::Step::parse(&text)
            .map(WindowStep)
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for WindowStep {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "WindowStep".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": crate::incremental::STEP_PATTERN,
            "description": "A window length: a whole number and a unit (s, m, h, d, w, mo, y), e.g. `7d` or `1mo`."
        })
    }
}

/// What a resource is requested for: a parent resource's records, or a list of values.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum RawForEach {
    /// The name of the parent resource.
    Parent(String),
    /// `{values: [...]}`: a static list partition.
    Values(RawPartitions),
}

impl RawForEach {
    /// The parent resource, when it is one.
    pub(crate) fn parent(&self) -> Option<&str> {
        match self {
            RawForEach::Parent(p) => Some(p),
            RawForEach::Values(_) => None,
        }
    }
}

/// `{values: [a, b, c]}` or `{values: "${ACCOUNTS}"}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPartitions {
    /// The values: a list (each *interpolated*), or one text split at commas (*interpolated*).
    pub values: RawValueList,
}

/// A list of values, or one text of comma-separated values.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum RawValueList {
    /// `[us, eu, ap]`.
    List(Vec<ParamValue>),
    /// `"${REGIONS}"` (`us,eu,ap`).
    Text(String),
}

/// A condition on a record: the value at `path` and exactly one test.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFilter {
    /// JSONPath in the record, for example `$.status`.
    pub path: String,
    /// The value equals this (text, a number, a boolean or null).
    #[serde(default)]
    pub equals: Option<serde_json::Value>,
    /// The value is absent or differs from this.
    #[serde(default)]
    pub not_equals: Option<serde_json::Value>,
    /// The value is one of these.
    #[serde(default, rename = "in")]
    pub one_of: Option<Vec<serde_json::Value>>,
    /// `true`: the path holds a value that is not null; `false`: it does not.
    #[serde(default)]
    pub exists: Option<bool>,
    /// The value (text, or a number as written) matches this regular expression, for
    /// example `^ch_`.
    #[serde(default)]
    pub matches: Option<String>,
}

/// What a child request answered with 404 does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnMissing {
    /// Stop the resource with an error.
    #[default]
    Fail,
    /// Count and log it, and go on with the next parent record.
    Skip,
}

/// HTTP method of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET (default).
    Get,
    /// POST with an empty body.
    Post,
}

/// Pagination style. Every style but `none` also takes `stop_when`, `total`,
/// `total_check` and `has_more`, and every style stops on a page without records (unless
/// `has_more` says there is more and the style names a next page).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RawPaginate {
    /// A single page.
    None {
        /// `off` accepts a page that says there is more (a total above the records, a
        /// `has_more`, a next link or token): by default that fails the resource.
        #[serde(default)]
        total_check: Option<TotalCheck>,
    },
    /// The page names the URL of the next page; stops when it is null, empty or absent.
    NextUrl {
        /// JSONPath to the next page's URL (absolute or relative), for example `$.info.next`.
        next: String,
        /// Stop after a page where this holds.
        #[serde(default)]
        stop_when: Option<RawStopWhen>,
        /// JSONPath to the number of records the API holds, for example `$.total`: when
        /// the resource ends, fewer records read fails it (see `total_check`).
        #[serde(default)]
        total: Option<String>,
        /// What a `total` the records read disagree with does: `fail` (default) when fewer
        /// were read, `warn`, or `off`. More than the total is always only a warning.
        #[serde(default)]
        total_check: Option<TotalCheck>,
        /// JSONPath to the page's "there is more" flag, for example `$.has_more`, or
        /// `{path: $.done, equals: false}`: when pagination stops after a page that says
        /// there is more, the resource fails.
        #[serde(default)]
        has_more: Option<RawHasMore>,
    },
    /// A page-number query parameter; stops on an empty page or after the total.
    PageNumber {
        /// Query parameter carrying the page number. Default `page`.
        #[serde(default)]
        param: Option<String>,
        /// Number of the first page. Default 1.
        #[serde(default)]
        start: Option<u64>,
        /// JSONPath to the total number of pages, for example `$.info.pages`.
        #[serde(default)]
        total_pages: Option<String>,
        /// Stop after a page where this holds.
        #[serde(default)]
        stop_when: Option<RawStopWhen>,
        /// JSONPath to the number of records the API holds, for example `$.total`: when
        /// the resource ends, fewer records read fails it (see `total_check`).
        #[serde(default)]
        total: Option<String>,
        /// What a `total` the records read disagree with does: `fail` (default) when fewer
        /// were read, `warn`, or `off`. More than the total is always only a warning.
        #[serde(default)]
        total_check: Option<TotalCheck>,
        /// JSONPath to the page's "there is more" flag, for example `$.has_more`, or
        /// `{path: $.done, equals: false}`: when pagination stops after a page that says
        /// there is more, the resource fails.
        #[serde(default)]
        has_more: Option<RawHasMore>,
    },
    /// Limit/offset query parameters; stops on a short page or at the total.
    Offset {
        /// Query parameter carrying the page size. Default `limit`.
        #[serde(default)]
        limit_param: Option<String>,
        /// Query parameter carrying the offset. Default `offset`.
        #[serde(default)]
        offset_param: Option<String>,
        /// Records per page.
        limit: u64,
        /// JSONPath to the total number of records: pagination ends when that many were
        /// read, and fewer fails the resource (see `total_check`).
        #[serde(default)]
        total: Option<String>,
        /// Stop after a page where this holds.
        #[serde(default)]
        stop_when: Option<RawStopWhen>,
        /// What a `total` the records read disagree with does: `fail` (default) when fewer
        /// were read, `warn`, or `off`. More than the total is always only a warning.
        #[serde(default)]
        total_check: Option<TotalCheck>,
        /// JSONPath to the page's "there is more" flag, for example `$.has_more`, or
        /// `{path: $.done, equals: false}`: when pagination stops after a page that says
        /// there is more, the resource fails.
        #[serde(default)]
        has_more: Option<RawHasMore>,
    },
    /// A token from each page sent back as a query parameter; stops when there is none.
    /// The token comes from exactly one of `cursor`, `last_record` and `header`.
    Cursor {
        /// JSONPath to the token in the response body, for example `$.meta.next_cursor`.
        #[serde(default)]
        cursor: Option<String>,
        /// JSONPath to the token in the page's last record, for example `$.id` (Stripe's
        /// `starting_after`).
        #[serde(default)]
        last_record: Option<String>,
        /// Response header carrying the token, for example `X-Next-Cursor`.
        #[serde(default)]
        header: Option<String>,
        /// Query parameter that carries the token.
        #[serde(default)]
        param: Option<String>,
        /// Dotted path of the field of the JSON body that carries the token instead, for
        /// example `variables.after` (GraphQL) or `after` (HubSpot search).
        #[serde(default)]
        body_field: Option<String>,
        /// Stop after a page where this holds, for example `{path: $.has_more, equals: false}`.
        #[serde(default)]
        stop_when: Option<RawStopWhen>,
        /// JSONPath to the number of records the API holds, for example `$.total`: when
        /// the resource ends, fewer records read fails it (see `total_check`).
        #[serde(default)]
        total: Option<String>,
        /// What a `total` the records read disagree with does: `fail` (default) when fewer
        /// were read, `warn`, or `off`. More than the total is always only a warning.
        #[serde(default)]
        total_check: Option<TotalCheck>,
        /// JSONPath to the page's "there is more" flag, for example `$.has_more`, or
        /// `{path: $.done, equals: false}`: when pagination stops after a page that says
        /// there is more, the resource fails.
        #[serde(default)]
        has_more: Option<RawHasMore>,
    },
    /// RFC 8288 `Link: <…>; rel="next"` response header.
    LinkHeader {
        /// Stop after a page where this holds.
        #[serde(default)]
        stop_when: Option<RawStopWhen>,
        /// JSONPath to the number of records the API holds, for example `$.total`: when
        /// the resource ends, fewer records read fails it (see `total_check`).
        #[serde(default)]
        total: Option<String>,
        /// What a `total` the records read disagree with does: `fail` (default) when fewer
        /// were read, `warn`, or `off`. More than the total is always only a warning.
        #[serde(default)]
        total_check: Option<TotalCheck>,
        /// JSONPath to the page's "there is more" flag, for example `$.has_more`, or
        /// `{path: $.done, equals: false}`: when pagination stops after a page that says
        /// there is more, the resource fails.
        #[serde(default)]
        has_more: Option<RawHasMore>,
    },
}

/// What a reported total that disagrees with the records read does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TotalCheck {
    /// Fewer records than the total fails the resource (default).
    #[default]
    Fail,
    /// Fewer records than the total is a warning.
    Warn,
    /// The total is not compared.
    Off,
}

/// The page's "there is more" flag.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum RawHasMore {
    /// A JSONPath to a value that is `true` while there are more pages.
    Path(String),
    /// `{path, equals}`: there are more pages while the value at `path` equals `equals`
    /// (Salesforce's `{path: $.done, equals: false}`).
    When(RawStopWhen),
}

/// A condition on a response body that ends the pagination after the page it holds on.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStopWhen {
    /// JSONPath on the response body, for example `$.end_of_stream`.
    pub path: String,
    /// The value that stops: text, a number, a boolean or null.
    pub equals: serde_json::Value,
}

/// A PostgreSQL table.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTable {
    /// Table name (a PostgreSQL identifier, at most 63 bytes).
    pub name: String,
    /// What a load does to existing rows: `append`, `replace` or `merge`. Default `append`.
    #[serde(default)]
    pub write: Option<WriteMode>,
    /// Primary key columns; required for `merge`.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// What to do with a record that does not fit: `fail` (default), `skip`, `quarantine`.
    #[serde(default)]
    pub on_error: Option<OnError>,
    /// Add a `_sluice_run_id` column tracing every row to its run. Default true.
    #[serde(default)]
    pub run_id_column: Option<bool>,
    /// Table comment.
    #[serde(default)]
    pub description: Option<String>,
    /// The columns, in order.
    pub columns: Vec<RawColumn>,
    /// Child tables with one row per element of an array in each record.
    #[serde(default)]
    pub nested: Vec<RawNested>,
    /// What the table must hold after each load: checked before the load commits (and by
    /// `sluice test`).
    #[serde(default)]
    pub expect: Option<RawTableExpect>,
}

/// A table's expectations, checked on the whole table before each load commits.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTableExpect {
    /// How many rows the table holds: `{min: 1}`, `{min: 800, max: 900}`.
    #[serde(default)]
    pub rows: Option<RawRowCount>,
    /// `error` (default): a failed expectation rolls the load back; `warn`: it is reported
    /// and the load commits.
    #[serde(default)]
    pub severity: Option<Severity>,
}

/// Bounds of a table's row count.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRowCount {
    /// At least this many rows.
    #[serde(default)]
    pub min: Option<u64>,
    /// At most this many rows.
    #[serde(default)]
    pub max: Option<u64>,
}

/// A column's expectations, checked on the whole table before each load commits.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawColumnExpect {
    /// No two rows hold the same value (nulls aside).
    #[serde(default)]
    pub unique: Option<bool>,
    /// Every value (nulls aside) is one of these, compared as text.
    #[serde(default)]
    pub accepted_values: Option<Vec<ParamValue>>,
    /// Every value (nulls aside) lies within these bounds (inclusive): numbers, or text
    /// such as dates (`2015-01-01`).
    #[serde(default)]
    pub range: Option<RawRange>,
    /// Every value (nulls aside), as text, matches this regular expression (anchor it
    /// with `^…$` to match the whole value).
    #[serde(default)]
    pub matches: Option<String>,
    /// At most this fraction of the rows (0 to 1) is null.
    #[serde(default)]
    pub max_null_fraction: Option<f64>,
    /// `error` (default): a failed expectation rolls the load back; `warn`: it is reported
    /// and the load commits.
    #[serde(default)]
    pub severity: Option<Severity>,
}

/// Inclusive bounds of a column's values.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRange {
    /// The lowest value allowed.
    #[serde(default)]
    pub min: Option<ParamValue>,
    /// The highest value allowed.
    #[serde(default)]
    pub max: Option<ParamValue>,
}

/// What a failed expectation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The load is rolled back and the run fails.
    #[default]
    Error,
    /// Reported (log, run summary, ledger); the load commits.
    Warn,
}

/// A child table fed by an array inside each parent record.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNested {
    /// Table name.
    pub name: String,
    /// The elements, one row each: a JSONPath relative to the parent record (or parent
    /// element) such as `$.episode[*]`, or `{zip: {name: <JSONPath>, …}}` to turn parallel
    /// arrays into rows (element `i` is `{name: <i-th match>, …}`).
    pub each: RawEach,
    /// Write mode; defaults to the parent table's.
    #[serde(default)]
    pub write: Option<WriteMode>,
    /// Primary key columns; required for `merge`.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Table comment.
    #[serde(default)]
    pub description: Option<String>,
    /// The columns; paths are relative to the element, `from_parent` copies a parent column.
    pub columns: Vec<RawColumn>,
    /// Tables nested in this one: one row per element of an array inside each element.
    #[serde(default)]
    pub nested: Vec<RawNested>,
    /// What the table must hold after each load (see the top-level table's `expect`).
    #[serde(default)]
    pub expect: Option<RawTableExpect>,
}

/// The elements of a nested table.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum RawEach {
    /// A JSONPath, for example `$.episode[*]`.
    Path(String),
    /// Parallel arrays, zipped into one element per position.
    Zip(RawZip),
}

/// `{zip: {name: <JSONPath>, …}}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawZip {
    /// Field name → JSONPath selecting one array's items, for example
    /// `{time: $.hourly.time[*], temperature: $.hourly.temperature_2m[*]}`. Arrays of
    /// unequal length are a record error.
    pub zip: BTreeMap<String, String>,
}

/// Write mode of a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Insert every row.
    #[default]
    Append,
    /// The table's rows become exactly this run's rows.
    Replace,
    /// Upsert on the primary key; the last record wins.
    Merge,
}

/// Policy for a record whose value does not fit its column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop, roll back the whole load and report the record.
    #[default]
    Fail,
    /// Leave the record out and count it.
    Skip,
    /// Store the raw record and the reason in `_sluice.rejects`.
    Quarantine,
}

/// One column of a table.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawColumn {
    /// Column name (a PostgreSQL identifier).
    pub name: String,
    /// Column type. Required unless the column takes it from elsewhere: `from_parent`
    /// (the parent column's type) or `meta` (`run_id` and `pipeline` are text, `run_time`
    /// is timestamptz).
    #[serde(default, rename = "type")]
    pub column_type: Option<ColumnType>,
    /// JSONPath to the value inside the record (or the nested element), e.g. `$.origin.url`.
    #[serde(default)]
    pub path: Option<String>,
    /// A constant value instead of a path.
    #[serde(default)]
    pub value: Option<String>,
    /// Metadata instead of a path: `run_id`, `run_time`, `pipeline`, or (nested tables)
    /// `index`, the element's position in its array.
    #[serde(default)]
    pub meta: Option<MetaValue>,
    /// Nested tables only: copy this column of the parent row.
    #[serde(default)]
    pub from_parent: Option<String>,
    /// Resources with `for_each` only: JSONPath to a value of the parent record this
    /// record was requested for, for example `$.id` for the post id of a comment.
    #[serde(default)]
    pub parent_path: Option<String>,
    /// Transform(s) applied to the value before it is coerced to the type, in order.
    #[serde(default)]
    pub transform: Option<TransformList>,
    /// The value of a record whose `path` matches nothing (a field the API leaves out), as
    /// text coerced to the column's type, for example `0` or `unknown`. A column with a
    /// default may match nothing in every record.
    #[serde(default)]
    pub default: Option<ParamValue>,
    /// Whether the column may be null. Default true (primary key columns never are).
    #[serde(default)]
    pub nullable: Option<bool>,
    /// Whether `path` may match nothing in every record (a field the API leaves out).
    /// Default false: a path that matches nothing in any record of a non-empty resource
    /// fails the run, since it is most likely misspelt.
    #[serde(default)]
    pub optional: Option<bool>,
    /// Foreign key, as `table.column` of a table in this spec; checked before each load
    /// commits (a value with no row to refer to fails the load, with examples).
    #[serde(default)]
    pub references: Option<String>,
    /// Column comment.
    #[serde(default)]
    pub description: Option<String>,
    /// What the column's values must be after each load: `unique`, `accepted_values`,
    /// `range`, `matches`, `max_null_fraction`.
    #[serde(default)]
    pub expect: Option<RawColumnExpect>,
}

/// One transform or a list of transforms.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub(crate) enum TransformList {
    /// A single transform.
    One(Transform),
    /// Transforms applied in order.
    Many(Vec<Transform>),
}

impl TransformList {
    pub(crate) fn to_vec(&self) -> Vec<Transform> {
        match self {
            TransformList::One(t) => vec![*t],
            TransformList::Many(v) => v.clone(),
        }
    }
}

/// Run metadata a column can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetaValue {
    /// The run id (text).
    RunId,
    /// The time the run started (timestamptz).
    RunTime,
    /// The pipeline name (text).
    Pipeline,
    /// Nested tables only: the element's position among its parent's elements, from 0
    /// (integer); a stable key for arrays without one.
    Index,
}

/// A query parameter value as written: text (*interpolated*), or a YAML number or boolean
/// sent as written (`limit: 100`, `active: true`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParamValue(pub String);

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(i64),
            Uint(u64),
            Float(f64),
            Bool(bool),
        }
        Ok(ParamValue(match Raw::deserialize(d)? {
            Raw::Text(s) => s,
            Raw::Int(n) => n.to_string(),
            Raw::Uint(n) => n.to_string(),
            Raw::Float(f) => f.to_string(),
            Raw::Bool(b) => b.to_string(),
        }))
    }
}

impl JsonSchema for ParamValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ParamValue".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Text (interpolated), a number or a boolean.",
            "type": ["string", "number", "boolean"]
        })
    }
}

impl AsRef<str> for ParamValue {
    fn as_ref(&self) -> &str {
        &self.0
    }
}
