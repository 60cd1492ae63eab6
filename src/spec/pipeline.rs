//! The validated pipeline: what `compile` returns once every check has passed. Everything
//! downstream (extract, stage, load, ddl, diagram) reads these types and never the raw
//! spec, so it can rely on names being valid, paths compiled and references resolved.

use chrono::{DateTime, Utc};

pub(crate) use super::model::{
    ApiKeyLocation, BodyFormat, ColumnType, Compression, CursorFormat, HttpMethod, MetaValue, OAuth2Grant, OnError,
    OnMissing, ResponseAction, RuntimeTarget, Severity, TotalCheck, Transform, WriteMode,
};
use super::{interp::Interp, jsonpath::JsonPath};

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub(crate) file: String,
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    /// SHA-256 of the spec file, recorded in manifests and the ledger.
    pub(crate) spec_hash: String,
    pub(crate) source: Source,
    pub(crate) staging: Staging,
    pub(crate) warehouse: Warehouse,
    pub(crate) runtime: Option<Runtime>,
    pub(crate) resources: Vec<Resource>,
    /// What `validate` warns about: valid, but likely not meant so.
    pub(crate) warnings: Vec<super::Diagnostic>,
}

impl Pipeline {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn file(&self) -> &str {
        &self.file
    }
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    pub fn spec_hash(&self) -> &str {
        &self.spec_hash
    }
    pub fn source(&self) -> &Source {
        &self.source
    }
    pub fn staging(&self) -> &Staging {
        &self.staging
    }
    /// The run of a staged object key, when the key is one of this pipeline's own (its
    /// key template parsed back strictly, with its name and resources).
    pub fn run_of_key(&self, key: &str) -> Option<String> {
        let names: Vec<&str> = self.resources.iter().map(|r| r.name.as_str()).collect();
        self.staging.key.run_id_of(&self.name, &names, key)
    }
    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }
    pub fn runtime(&self) -> Option<&Runtime> {
        self.runtime.as_ref()
    }
    pub fn warnings(&self) -> &[super::Diagnostic] {
        &self.warnings
    }
    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }
    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.name == name)
    }
    /// Every table of the pipeline, resource tables and nested tables, in spec order.
    pub fn tables(&self) -> impl Iterator<Item = &Table> {
        self.resources.iter().flat_map(|r| r.tables.iter())
    }
}

#[derive(Debug, Clone)]
pub struct Source {
    pub base_url: Interp,
    pub headers: Vec<(String, Interp)>,
    pub params: Vec<(String, Interp)>,
    pub auth: Auth,
    pub timeout: std::time::Duration,
    pub retry: Retry,
    pub rate_limit: Option<f64>,
    pub concurrency: usize,
    /// Lowercase `host` or `host:port` entries.
    pub allowed_hosts: Vec<String>,
    pub max_response_size: u64,
}

// One per pipeline: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    Bearer {
        token: Interp,
    },
    ApiKey {
        name: String,
        value: Interp,
        location: ApiKeyLocation,
    },
    Basic {
        username: Interp,
        password: Interp,
    },
    OAuth2 {
        grant: OAuth2Grant,
        token_url: Interp,
        client_id: Interp,
        client_secret: Interp,
        refresh_token: Option<Interp>,
        scopes: Vec<String>,
        username: Option<Interp>,
        password: Option<Interp>,
        extra: Vec<(String, Interp)>,
        body_format: BodyFormat,
    },
    Session(Box<SessionLogin>),
}

/// `auth: {type: session}`: the login request and where its token goes.
#[derive(Debug, Clone)]
pub struct SessionLogin {
    pub method: HttpMethod,
    pub url: Interp,
    /// Every string in it a template (resolved as secrets).
    pub body: Option<serde_json::Value>,
    pub body_format: BodyFormat,
    pub params: Vec<(String, Interp)>,
    pub headers: Vec<(String, Interp)>,
    pub token: JsonPath,
    pub header_name: String,
    /// The header's value with `{token}`.
    pub header_value: String,
    pub expires: Expiry,
}

/// How long a login's token lasts.
#[derive(Debug, Clone)]
pub enum Expiry {
    /// Until the API answers 401.
    Unknown,
    After(std::time::Duration),
    /// The seconds at this path of the login's answer.
    Path(JsonPath),
}

impl Auth {
    /// The kind of authentication, for logs and diagrams (never a secret).
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::Bearer { .. } => "bearer token",
            Auth::ApiKey {
                location: ApiKeyLocation::Header,
                ..
            } => "API key (header)",
            Auth::ApiKey {
                location: ApiKeyLocation::Query,
                ..
            } => "API key (query)",
            Auth::Basic { .. } => "basic",
            Auth::OAuth2 { .. } => "OAuth2",
            Auth::Session(_) => "session login",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Retry {
    pub max_attempts: u32,
    pub initial_backoff: std::time::Duration,
    pub max_backoff: std::time::Duration,
    /// The longest wait for a rate limit's reset.
    pub max_wait: std::time::Duration,
    pub on_status: Vec<u16>,
}

#[derive(Debug, Clone)]
pub struct Staging {
    pub location: Interp,
    pub key: KeyTemplate,
    pub part_size: u64,
    pub region: Option<Interp>,
    pub endpoint: Option<Interp>,
    pub path_style: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Warehouse {
    pub url: Interp,
    pub schema: String,
}

#[derive(Debug, Clone)]
pub struct Runtime {
    pub target: RuntimeTarget,
    pub region: Option<String>,
    pub schedule: Option<String>,
    /// The functions' memory in MiB, on AWS.
    pub memory_mib: Option<u64>,
    /// The functions' timeout in seconds, on AWS.
    pub timeout_s: Option<u64>,
    /// The functions' `/tmp` in MiB, on AWS.
    pub ephemeral_mib: Option<u64>,
    /// The extract function's reserved concurrency, on AWS.
    pub concurrency: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub name: String,
    /// Where the first request goes; with `for_each`, a template of `{parent.…}`.
    pub target: Target,
    /// The parent resource whose every record makes one request.
    pub for_each: Option<ForEach>,
    /// `for_each: {values}`: the values, each making one request sequence.
    pub partitions: Option<Vec<Interp>>,
    /// `for_each: {values: "${VAR}"}`: one text split at commas.
    pub partitions_split: bool,
    /// The `parent_path` paths of the columns, without repeats: their values are staged
    /// with each record (see [`PARENT_FIELD`]).
    pub parent_paths: Vec<JsonPath>,
    pub method: HttpMethod,
    pub params: Vec<(String, Interp)>,
    pub headers: Vec<(String, Interp)>,
    /// The JSON body; every string in it is a template (see [`crate::resolve`]).
    pub body: Option<serde_json::Value>,
    pub records: JsonPath,
    /// How the bodies read (the pages, or a job's downloads).
    pub format: Format,
    pub compression: Compression,
    /// An asynchronous export job the records come from.
    pub job: Option<Box<Job>>,
    pub paginator: Paginator,
    pub stop_when: Option<StopWhen>,
    /// What proves the resource was read whole: the API's totals and "more" flag.
    pub completeness: Completeness,
    pub max_pages: u64,
    /// Incremental loading, when the resource reads only what changed.
    pub incremental: Option<Incremental>,
    /// Response rules: the resource's own, `on_missing: skip` as a 404 rule, then the
    /// source's.
    pub on_response: Vec<ResponseRule>,
    /// The conditions a record must meet to be loaded (all of them).
    pub filter: Vec<RecordFilter>,
    /// The resource's own table first, then its nested tables; none for a resource that
    /// only feeds a `for_each`.
    pub tables: Vec<Table>,
}

/// Incremental loading of a resource (see [`crate::incremental`]).
#[derive(Debug, Clone)]
pub struct Incremental {
    /// The records' cursor; none with date windows, whose state is the last window's end.
    pub cursor: Option<JsonPath>,
    /// Where the start goes; `None` when only `{incremental.start}` places it.
    pub send: Option<CursorTo>,
    /// The query parameter the end goes in (`end_param`).
    pub send_end: Option<String>,
    /// How the start and end are written; positions are in its units.
    pub format: CursorFormat,
    /// How the records' cursor reads.
    pub cursor_format: CursorFormat,
    /// The first start, in `format`.
    pub initial: Bound,
    /// The inclusive end of the range; `None` is the run's time.
    pub end: Option<Bound>,
    pub step: Option<crate::incremental::Step>,
    /// In `format`'s units: a window's end is the next one's start less this.
    pub granularity: i64,
    /// In `format`'s units.
    pub lag: i64,
    /// Whether the range is read as date windows (`step`, `end`, `end_param` or
    /// `{incremental.end}`): the state is then the end of the last window read.
    pub windowed: bool,
}

/// A start or end: a position, or a template resolved when the pipeline runs.
#[derive(Debug, Clone)]
pub enum Bound {
    At(crate::incremental::Position),
    Env(Interp),
}

impl Incremental {
    /// A bound's position, its variables looked up with `lookup`.
    pub fn position(
        &self,
        b: &Bound,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<crate::incremental::Position, String> {
        match b {
            Bound::At(p) => Ok(*p),
            Bound::Env(t) => {
                let text = t.resolve_with(lookup).map_err(|e| e.to_string())?;
                self.format.read(&serde_json::Value::String(text))
            }
        }
    }

    /// The end's position; `None` for the run's time (no `end`, or `now`).
    pub fn end_position(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<crate::incremental::Position>, String> {
        match &self.end {
            None => Ok(None),
            Some(Bound::At(p)) => Ok(Some(*p)),
            Some(Bound::Env(t)) => {
                let text = t.resolve_with(lookup).map_err(|e| e.to_string())?;
                match text.trim() {
                    "now" => Ok(None),
                    text => self.format.read(&serde_json::Value::String(text.to_string())).map(Some),
                }
            }
        }
    }

    /// Where a run starts: `initial`, or the saved position less the lag (never before
    /// `initial`).
    pub fn start(
        &self,
        saved: Option<crate::incremental::Position>,
        initial: crate::incremental::Position,
    ) -> crate::incremental::Position {
        match saved {
            Some(pos) => pos.saturating_sub(self.lag).max(initial),
            None => initial,
        }
    }

    /// The windows of a run that starts at `start`, at run time `now`, with the end
    /// `end` (its resolved position, `None` for now): each `[start, end)`.
    pub fn windows(
        &self,
        start: crate::incremental::Position,
        end: Option<crate::incremental::Position>,
        now: DateTime<Utc>,
    ) -> Vec<(crate::incremental::Position, crate::incremental::Position)> {
        let last = end.unwrap_or_else(|| self.format.of_instant(now).unwrap_or_default());
        crate::incremental::windows(&self.format, self.step, start, last.saturating_add(self.granularity))
    }
}

/// Where a resource's requests go.
#[derive(Debug, Clone)]
pub enum Target {
    /// A path below the base URL.
    Path(String),
    /// An absolute URL.
    Url(String),
}

impl Target {
    /// As written in the spec.
    pub fn as_str(&self) -> &str {
        match self {
            Target::Path(s) | Target::Url(s) => s,
        }
    }

    /// The spec field: `path` or `url`.
    pub fn field(&self) -> &'static str {
        match self {
            Target::Path(_) => "path",
            Target::Url(_) => "url",
        }
    }
}

/// How a body reads (see [`super::model::BodyKind`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    Json,
    Jsonl,
    Csv(CsvFormat),
    Xml(XmlFormat),
}

impl Format {
    /// As the spec writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Jsonl => "jsonl",
            Format::Csv(_) => "csv",
            Format::Xml(_) => "xml",
        }
    }

    /// Whether the body is read as it streams in, record by record.
    pub fn streamed(&self) -> bool {
        !matches!(self, Format::Json)
    }
}

/// How a CSV body reads.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvFormat {
    pub delimiter: u8,
    pub quote: u8,
    /// The field names of a file without a header row; `None`: the first row names them.
    pub names: Option<Vec<String>>,
    /// ISO-8859-1 rather than UTF-8.
    pub latin1: bool,
    /// Field values read as null.
    pub null: Vec<String>,
}

/// Which elements of an XML body are the records: names from the root (`*` any).
#[derive(Debug, Clone, PartialEq)]
pub struct XmlFormat {
    pub records: Vec<String>,
}

/// An asynchronous export job (see [`super::model::RawJob`]).
#[derive(Debug, Clone)]
pub struct Job {
    pub create: JobCall,
    pub poll: JobCall,
    pub every: std::time::Duration,
    pub until: JobCondition,
    pub fail_when: Option<JobCondition>,
    /// What a failed job says, with `{$.path}` from the poll answer.
    pub message: Option<String>,
    pub timeout: std::time::Duration,
    pub download: Download,
}

/// One request of a job; its strings are templates (`${VAR}`, then placeholders).
#[derive(Debug, Clone)]
pub struct JobCall {
    pub method: HttpMethod,
    pub target: Target,
    pub params: Vec<(String, Interp)>,
    pub body: Option<serde_json::Value>,
}

/// The value at `path` is one of `values`.
#[derive(Debug, Clone)]
pub struct JobCondition {
    pub path: JsonPath,
    pub values: Vec<serde_json::Value>,
}

impl JobCondition {
    pub fn holds(&self, answer: &serde_json::Value) -> bool {
        self.path
            .first(answer)
            .is_some_and(|v| self.values.iter().any(|e| scalar_eq(v, e)))
    }
}

/// Where a finished job's result is.
#[derive(Debug, Clone)]
pub enum Download {
    /// A JSONPath to the URL (or URLs) in the last poll answer.
    Url(JsonPath),
    /// A path (or URL) template with `{job.…}`.
    Target(Target),
}

/// A child resource's parent.
#[derive(Debug, Clone)]
pub struct ForEach {
    pub parent: String,
    pub on_missing: OnMissing,
}

/// The field each staged record of a child resource carries the values of its
/// `parent_path` columns in, keyed by the path as written: `{"$.id": 7}`.
pub(crate) const PARENT_FIELD: &str = "_sluice_parent";

#[derive(Debug, Clone)]
pub enum Paginator {
    None,
    NextUrl {
        next: JsonPath,
    },
    PageNumber {
        param: String,
        start: u64,
        total_pages: Option<JsonPath>,
    },
    Offset {
        limit_param: String,
        offset_param: String,
        limit: u64,
        total: Option<JsonPath>,
    },
    Cursor {
        from: CursorFrom,
        to: CursorTo,
    },
    LinkHeader,
}

/// Where a cursor paginator takes its token.
#[derive(Debug, Clone)]
pub enum CursorFrom {
    /// A JSONPath on the response body.
    Body(JsonPath),
    /// A JSONPath on the page's last record.
    LastRecord(JsonPath),
    /// A response header.
    Header(String),
}

/// Where a cursor paginator sends its token.
#[derive(Debug, Clone)]
pub enum CursorTo {
    /// A query parameter.
    Param(String),
    /// A field of the JSON body, by its dotted path.
    BodyField(Vec<String>),
}

/// What the pages say of the whole: checked when the resource's pagination ends.
#[derive(Debug, Clone, Default)]
pub struct Completeness {
    /// The number of records the API holds.
    pub total: Option<JsonPath>,
    /// The number of pages the API holds (`page_number`'s `total_pages`).
    pub total_pages: Option<JsonPath>,
    pub total_check: TotalCheck,
    pub has_more: Option<HasMore>,
}

/// The page's "there is more" flag: the value at `path` is `true`, or equals `equals`.
#[derive(Debug, Clone)]
pub struct HasMore {
    pub path: JsonPath,
    pub equals: Option<serde_json::Value>,
}

impl HasMore {
    /// Whether `body` says there are more pages.
    pub fn says_more(&self, body: &serde_json::Value) -> bool {
        let Some(v) = self.path.first(body) else {
            return false;
        };
        match &self.equals {
            Some(e) => scalar_eq(v, e),
            None => match v {
                serde_json::Value::Bool(b) => *b,
                serde_json::Value::String(s) => s.eq_ignore_ascii_case("true"),
                serde_json::Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                _ => false,
            },
        }
    }

    /// As written: `$.has_more`, or `$.done = false`.
    pub fn describe(&self) -> String {
        match &self.equals {
            Some(e) => format!("`{}` is {e}", self.path.as_str()),
            None => format!("`{}` is true", self.path.as_str()),
        }
    }
}

/// A condition on a record (see [`super::model::RawFilter`]).
#[derive(Debug, Clone)]
pub struct RecordFilter {
    pub path: JsonPath,
    pub test: FilterTest,
}

#[derive(Debug, Clone)]
pub enum FilterTest {
    Equals(serde_json::Value),
    NotEquals(serde_json::Value),
    In(Vec<serde_json::Value>),
    Exists(bool),
    Matches(regex::Regex),
}

impl RecordFilter {
    /// Whether `record` meets the condition.
    pub fn holds(&self, record: &serde_json::Value) -> bool {
        self.holds_for(self.path.first(record))
    }

    /// Whether the condition holds of what the path found in a record (`None`: nothing).
    pub fn holds_for(&self, found: Option<&serde_json::Value>) -> bool {
        let v = found.filter(|v| !v.is_null());
        match &self.test {
            FilterTest::Equals(e) => match v {
                Some(v) => scalar_eq(v, e),
                None => e.is_null(),
            },
            FilterTest::NotEquals(e) => !v.map_or(e.is_null(), |v| scalar_eq(v, e)),
            FilterTest::In(list) => v.is_some_and(|v| list.iter().any(|e| scalar_eq(v, e))),
            FilterTest::Exists(want) => v.is_some() == *want,
            FilterTest::Matches(re) => match v {
                Some(serde_json::Value::String(s)) => re.is_match(s),
                Some(n @ serde_json::Value::Number(_)) => re.is_match(&n.to_string()),
                _ => false,
            },
        }
    }
}

/// One response rule (see [`super::model::RawResponseRule`]).
#[derive(Debug, Clone)]
pub struct ResponseRule {
    /// Empty: any status.
    pub status: Vec<u16>,
    pub when: Option<StopWhen>,
    pub action: ResponseAction,
    pub message: Option<String>,
}

impl ResponseRule {
    /// Whether the rule holds for a response; `body` is parsed only when a rule reads it.
    pub fn holds<'b>(&self, status: u16, body: impl FnOnce() -> Option<&'b serde_json::Value>) -> bool {
        if !self.status.is_empty() && !self.status.contains(&status) {
            return false;
        }
        match &self.when {
            None => true,
            Some(w) => body().is_some_and(|b| w.holds(b)),
        }
    }

    /// What the rule says of a response: its message with `{$.path}` read from `body`.
    pub fn say(&self, status: u16, body: Option<&serde_json::Value>) -> String {
        let Some(m) = &self.message else {
            return match &self.when {
                Some(w) => format!("HTTP {status} with `{}` = {}", w.path.as_str(), w.equals),
                None => format!("HTTP {status}"),
            };
        };
        say(m, body)
    }
}

/// `template` with each `{$.path}` read from `body` (`(none)` where it has nothing).
pub(crate) fn say(template: &str, body: Option<&serde_json::Value>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find("{$") {
        out.push_str(&rest[..i]);
        let Some(len) = rest[i..].find('}') else { break };
        let path = &rest[i + 1..i + len];
        let value = JsonPath::parse(path)
            .ok()
            .and_then(|p| body.and_then(|b| p.first(b).cloned()));
        match value {
            Some(serde_json::Value::String(s)) => out.push_str(&s),
            Some(v) => out.push_str(&v.to_string()),
            None => out.push_str("(none)"),
        }
        rest = &rest[i + len + 1..];
    }
    out.push_str(rest);
    out
}

/// Ends the pagination after a page whose body has `equals` at `path`.
#[derive(Debug, Clone)]
pub struct StopWhen {
    pub path: JsonPath,
    pub equals: serde_json::Value,
}

impl StopWhen {
    pub fn holds(&self, body: &serde_json::Value) -> bool {
        self.path.first(body).is_some_and(|v| scalar_eq(v, &self.equals))
    }
}

/// Scalars compared as JSON, numbers by value (`1` equals `1.0`).
fn scalar_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a, b) {
        (serde_json::Value::Number(x), serde_json::Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

impl Paginator {
    /// A short description for logs and diagrams.
    pub fn describe(&self) -> String {
        match self {
            Paginator::None => "single page".into(),
            Paginator::NextUrl { next } => format!("next URL {}", next.as_str()),
            Paginator::PageNumber { param, .. } => format!("page number ?{param}="),
            Paginator::Offset {
                limit_param,
                offset_param,
                limit,
                ..
            } => {
                format!("offset ?{offset_param}=&{limit_param}={limit}")
            }
            Paginator::Cursor {
                to: CursorTo::Param(param),
                ..
            } => format!("cursor ?{param}="),
            Paginator::Cursor {
                to: CursorTo::BodyField(field),
                ..
            } => format!("cursor in body {}", field.join(".")),
            Paginator::LinkHeader => "Link rel=next".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub write: WriteMode,
    pub primary_key: Vec<String>,
    pub on_error: OnError,
    pub run_id_column: bool,
    pub description: Option<String>,
    pub columns: Vec<Column>,
    /// Nested tables: the elements inside each parent record (or parent element).
    pub each: Option<Each>,
    /// Nested tables: the index of the parent table in its resource's `tables`.
    pub parent: Option<usize>,
    pub expect: Option<TableExpect>,
}

/// How a nested table's elements are selected.
#[derive(Debug, Clone)]
pub enum Each {
    Path(JsonPath),
    /// Parallel arrays: element `i` is `{name: i-th node, …}`.
    Zip(Vec<(String, JsonPath)>),
}

impl Each {
    /// The paths it reads.
    pub fn paths(&self) -> Vec<&JsonPath> {
        match self {
            Each::Path(p) => vec![p],
            Each::Zip(fields) => fields.iter().map(|(_, p)| p).collect(),
        }
    }

    /// The elements in `parent`, or why they cannot be made.
    pub fn elements<'a>(
        &self,
        parent: &'a serde_json::Value,
    ) -> Result<Vec<std::borrow::Cow<'a, serde_json::Value>>, String> {
        use std::borrow::Cow;
        match self {
            Each::Path(p) => Ok(p.query(parent).into_iter().map(Cow::Borrowed).collect()),
            Each::Zip(fields) => {
                let columns: Vec<(&String, Vec<&serde_json::Value>)> =
                    fields.iter().map(|(name, p)| (name, p.query(parent))).collect();
                let len = columns.first().map_or(0, |(_, v)| v.len());
                if let Some((name, other)) = columns.iter().find(|(_, v)| v.len() != len) {
                    return Err(format!(
                        "the zipped arrays differ in length: `{}` has {len} items but `{name}` has {}",
                        columns[0].0,
                        other.len()
                    ));
                }
                Ok((0..len)
                    .map(|i| {
                        let mut m = serde_json::Map::new();
                        for (name, values) in &columns {
                            m.insert((*name).clone(), values[i].clone());
                        }
                        Cow::Owned(serde_json::Value::Object(m))
                    })
                    .collect())
            }
        }
    }

    /// For messages: the path, or the zipped paths.
    pub fn describe(&self) -> String {
        match self {
            Each::Path(p) => p.as_str().to_string(),
            Each::Zip(fields) => format!(
                "zip {{{}}}",
                fields
                    .iter()
                    .map(|(n, p)| format!("{n}: {}", p.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Name of the column that traces each row to its run.
pub(crate) const RUN_ID_COLUMN: &str = "_sluice_run_id";

impl Table {
    /// An `append` table whose primary key the same record fills alike on every run (no
    /// key column is the run's time or id): a run that reads the records again fails on
    /// duplicate keys.
    pub fn append_collides(&self) -> bool {
        self.write == WriteMode::Append
            && !self.primary_key.is_empty()
            && !self.columns.iter().any(|c| {
                self.primary_key.contains(&c.name)
                    && matches!(c.value, ValueSource::Meta(MetaValue::RunTime | MetaValue::RunId))
            })
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
    pub fn is_nested(&self) -> bool {
        self.each.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub column_type: ColumnType,
    pub value: ValueSource,
    pub transforms: Vec<Transform>,
    pub nullable: bool,
    /// The path may match nothing in every record.
    pub optional: bool,
    /// The value when the path matches nothing.
    pub default: Option<String>,
    pub references: Option<Reference>,
    pub description: Option<String>,
    pub expect: Option<ColumnExpect>,
}

/// A table's expectations (see [`crate::load::expect`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TableExpect {
    pub rows_min: Option<u64>,
    pub rows_max: Option<u64>,
    pub severity: Severity,
}

/// A column's expectations.
#[derive(Debug, Clone)]
pub struct ColumnExpect {
    pub unique: bool,
    pub accepted_values: Vec<String>,
    pub range_min: Option<Limit>,
    pub range_max: Option<Limit>,
    pub matches: Option<regex::Regex>,
    pub max_null_fraction: Option<f64>,
    pub severity: Severity,
}

/// A bound of a `range`: a number compared as one, or text.
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    Number(String),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub table: String,
    pub column: String,
}

#[derive(Debug, Clone)]
pub enum ValueSource {
    Path(JsonPath),
    Const(String),
    Meta(MetaValue),
    /// Index of the parent table's column whose value is copied.
    Parent(usize),
    /// A value of the parent record of a `for_each` request, staged in [`PARENT_FIELD`].
    ParentRecord(JsonPath),
}

impl ValueSource {
    /// Whether the value is looked up in the record (by `path` or `parent_path`), so
    /// that it may match nothing.
    pub fn reads_record(&self) -> bool {
        matches!(self, ValueSource::Path(_) | ValueSource::ParentRecord(_))
    }
}

impl OnError {
    pub fn name(self) -> &'static str {
        match self {
            OnError::Fail => "fail",
            OnError::Skip => "skip",
            OnError::Quarantine => "quarantine",
        }
    }
}

impl WriteMode {
    pub fn name(self) -> &'static str {
        match self {
            WriteMode::Append => "append",
            WriteMode::Replace => "replace",
            WriteMode::Merge => "merge",
        }
    }
}

/// A staging key template such as `{pipeline}/{resource}/{run_time:%Y/%m/%d}/{run_id}-{part}.jsonl.gz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    raw: String,
    parts: Vec<KeyPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyPart {
    Lit(String),
    Pipeline,
    Resource,
    RunId,
    Part,
    RunTime(String),
}

pub(crate) const KEY_PLACEHOLDERS: [&str; 5] = ["pipeline", "resource", "run_id", "part", "run_time"];
pub(crate) const DEFAULT_KEY: &str = "{pipeline}/{resource}/{run_time:%Y/%m/%d/%H/%M}/{run_id}-{part}.jsonl.gz";

impl KeyTemplate {
    /// Parse a template; the error names the offending placeholder.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = raw;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(KeyPart::Lit(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in key template `{raw}`"))?
                + open;
            let body = &rest[open + 1..close];
            let part = match body.split_once(':') {
                Some(("run_time", fmt)) => {
                    check_strftime(fmt)?;
                    KeyPart::RunTime(fmt.to_string())
                }
                _ => match body {
                    "pipeline" => KeyPart::Pipeline,
                    "resource" => KeyPart::Resource,
                    "run_id" => KeyPart::RunId,
                    "part" => KeyPart::Part,
                    "run_time" => KeyPart::RunTime("%Y%m%dT%H%M%SZ".into()),
                    other => {
                        let name = other.split(':').next().unwrap_or(other);
                        let hint = super::diagnostic::did_you_mean(name, KEY_PLACEHOLDERS)
                            .map(|s| format!("; did you mean `{{{s}}}`?"))
                            .unwrap_or_else(|| {
                                "; use {pipeline}, {resource}, {run_id}, {part} or {run_time:<strftime>}".to_string()
                            });
                        return Err(format!("unknown placeholder `{{{other}}}` in key template{hint}"));
                    }
                },
            };
            parts.push(part);
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(KeyPart::Lit(rest.to_string()));
        }
        let has = |p: &KeyPart| parts.contains(p);
        if !has(&KeyPart::Pipeline) {
            return Err("key template must contain `{pipeline}` so that pipelines sharing a staging location keep apart (and `gc` of one never touches another's objects)".into());
        }
        if !has(&KeyPart::RunId) {
            return Err("key template must contain `{run_id}` so that no run overwrites another".into());
        }
        if !has(&KeyPart::Resource) {
            return Err("key template must contain `{resource}` so that resources do not overwrite each other".into());
        }
        if !has(&KeyPart::Part) {
            // A run may stage several parts per resource; number them before the extension.
            let last = parts.pop();
            match last {
                Some(KeyPart::Lit(text)) => {
                    let slash = text.rfind('/').map(|i| i + 1).unwrap_or(0);
                    let dot = text[slash..].find('.').map(|i| i + slash).unwrap_or(text.len());
                    parts.push(KeyPart::Lit(text[..dot].to_string()));
                    parts.push(KeyPart::Lit("-".into()));
                    parts.push(KeyPart::Part);
                    parts.push(KeyPart::Lit(text[dot..].to_string()));
                }
                Some(other) => {
                    parts.push(other);
                    parts.push(KeyPart::Lit("-".into()));
                    parts.push(KeyPart::Part);
                }
                None => {}
            }
        }
        let template = KeyTemplate {
            raw: raw.to_string(),
            parts,
        };
        template.check_confined()?;
        Ok(template)
    }

    /// Keys must stay inside the staging location and out of sluice's own folders: a
    /// rendered key has no empty, `.` or `..` segment, does not start with `/`, and
    /// no segment is `_manifests` (where a run becomes complete) or `.tmp`.
    fn check_confined(&self) -> Result<(), String> {
        let key = self.sample("pipeline", "resource");
        if key.starts_with('/') || key.starts_with('\\') {
            return Err(format!(
                "key template `{}` makes absolute keys (`{key}`); keys are relative to the staging location",
                self.raw
            ));
        }
        for segment in key.split(['/', '\\']) {
            let why = match segment {
                "" => "an empty folder name (`//`)",
                "." | ".." => "a `.` or `..` folder, which would leave the staging location",
                "_manifests" => "a `_manifests` folder, where sluice keeps run manifests",
                "_running" => "a `_running` folder, where sluice marks runs being extracted",
                ".tmp" => "a `.tmp` folder, where sluice writes parts in progress",
                _ => continue,
            };
            return Err(format!(
                "key template `{}` makes keys such as `{key}` with {why}",
                self.raw
            ));
        }
        Ok(())
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn render(&self, pipeline: &str, resource: &str, run_id: &str, run_time: DateTime<Utc>, part: u32) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                KeyPart::Lit(s) => out.push_str(s),
                KeyPart::Pipeline => out.push_str(pipeline),
                KeyPart::Resource => out.push_str(resource),
                KeyPart::RunId => out.push_str(run_id),
                KeyPart::Part => out.push_str(&format!("{part:05}")),
                KeyPart::RunTime(fmt) => out.push_str(&run_time.format(fmt).to_string()),
            }
        }
        out
    }

    /// The constant part of the key before the first run-dependent placeholder, with
    /// `{pipeline}` filled in: where a diagram says the objects go.
    pub fn prefix_for(&self, pipeline: &str) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                KeyPart::Lit(s) => out.push_str(s),
                KeyPart::Pipeline => out.push_str(pipeline),
                KeyPart::Resource => out.push_str("{resource}"),
                KeyPart::RunTime(f) => out.push_str(&format!("{{{f}}}")),
                KeyPart::RunId => out.push_str("{run_id}"),
                KeyPart::Part => out.push_str("{part}"),
            }
        }
        out
    }
}

impl KeyTemplate {
    /// The constant start of every key, up to its last `/`: where to list a pipeline's
    /// objects.
    pub fn list_prefix(&self, pipeline: &str) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                KeyPart::Lit(s) => out.push_str(s),
                KeyPart::Pipeline => out.push_str(pipeline),
                _ => break,
            }
        }
        match out.rfind('/') {
            Some(i) => out[..=i].to_string(),
            None => String::new(),
        }
    }

    /// The run id of an object key this template renders for `pipeline` and one of its
    /// `resources`, or `None` when the key is not one of its keys. Parsed back strictly:
    /// `{pipeline}` is this name, `{resource}` one of `resources`, `{part}` digits,
    /// `{run_time}` text its own format reads whole, `{run_id}` a run id; so a key of
    /// another pipeline sharing the location is never taken for one of this one's.
    pub fn run_id_of(&self, pipeline: &str, resources: &[&str], key: &str) -> Option<String> {
        struct Ctx<'a> {
            pipeline: &'a str,
            resources: &'a [&'a str],
        }
        fn matches<'k>(parts: &[KeyPart], c: &Ctx, key: &'k str, run_id: &mut Option<&'k str>) -> bool {
            let Some((first, rest)) = parts.split_first() else {
                return key.is_empty();
            };
            let then = |k: &'k str, run_id: &mut Option<&'k str>| matches(rest, c, k, run_id);
            match first {
                KeyPart::Lit(s) => key.strip_prefix(s.as_str()).is_some_and(|k| then(k, run_id)),
                KeyPart::Pipeline => key.strip_prefix(c.pipeline).is_some_and(|k| then(k, run_id)),
                KeyPart::Resource => c
                    .resources
                    .iter()
                    .any(|r| key.strip_prefix(r).is_some_and(|k| then(k, run_id))),
                KeyPart::RunId => {
                    let id = key.get(..23).filter(|id| is_run_id(id));
                    match id {
                        Some(id) if then(&key[23..], run_id) => {
                            *run_id = Some(id);
                            true
                        }
                        _ => false,
                    }
                }
                KeyPart::Part => {
                    let digits = key.bytes().take_while(u8::is_ascii_digit).count();
                    (1..=digits).rev().any(|i| then(&key[i..], run_id))
                }
                KeyPart::RunTime(fmt) => (1..=key.len())
                    .filter(|i| key.is_char_boundary(*i))
                    .filter(|i| {
                        let mut parsed = chrono::format::Parsed::new();
                        chrono::format::parse(&mut parsed, &key[..*i], chrono::format::StrftimeItems::new(fmt)).is_ok()
                    })
                    .any(|i| then(&key[i..], run_id)),
            }
        }
        let mut run_id = None;
        let c = Ctx { pipeline, resources };
        matches(&self.parts, &c, key, &mut run_id).then_some(run_id?.to_string())
    }

    /// Whether the template names `{pipeline}`, so that pipelines sharing a location
    /// write apart.
    pub fn has_pipeline(&self) -> bool {
        self.parts.contains(&KeyPart::Pipeline)
    }

    /// A key this template renders for `pipeline`, its resource `resource`, with every
    /// run-dependent placeholder a fixed sample: for comparing two specs' keys.
    pub fn sample(&self, pipeline: &str, resource: &str) -> String {
        use chrono::TimeZone;
        let at = Utc
            .with_ymd_and_hms(2026, 12, 31, 23, 59, 59)
            .single()
            .expect("a valid time");
        self.render(pipeline, resource, "20261231T235959Z-abcdef", at, 0)
    }
}

/// Whether `s` has the shape of a run id: `YYYYMMDDTHHMMSSZ-xxxxxx`.
pub(crate) fn is_run_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 23
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
        && b[16] == b'-'
        && b[17..].iter().all(|c| c.is_ascii_hexdigit())
}

fn check_strftime(fmt: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if fmt.is_empty() {
        return Err("`{run_time:}` needs a strftime format, e.g. `{run_time:%Y/%m/%d}`".into());
    }
    if StrftimeItems::new(fmt).any(|i| matches!(i, Item::Error)) {
        return Err(format!("`{fmt}` is not a valid strftime format in `{{run_time:…}}`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn key_templates_render_every_placeholder() {
        let t = KeyTemplate::parse(DEFAULT_KEY).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 8, 5, 0).unwrap();
        assert_eq!(
            t.render("coincap", "exchanges", "r1", at, 3),
            "coincap/exchanges/2026/11/25/08/05/r1-00003.jsonl.gz"
        );
    }

    #[test]
    fn a_template_without_part_numbers_parts_before_the_extension() {
        let t = KeyTemplate::parse("{pipeline}/{resource}/{run_id}.jsonl.gz").unwrap();
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(t.render("p", "r", "id", at, 0), "p/r/id-00000.jsonl.gz");
    }

    #[test]
    fn keys_are_matched_back_to_their_run() {
        let t = KeyTemplate::parse(DEFAULT_KEY).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 8, 5, 0).unwrap();
        let id = "20261125T080500Z-0a1b2c";
        let key = t.render("coincap", "exchanges", id, at, 3);
        let ours = ["exchanges", "assets"];
        assert_eq!(t.run_id_of("coincap", &ours, &key).as_deref(), Some(id));
        assert_eq!(t.run_id_of("other", &ours, &key), None);
        assert_eq!(t.run_id_of("coincap", &["assets"], &key), None);
        assert_eq!(t.run_id_of("coincap", &ours, "coincap/notes.txt"), None);
        assert_eq!(t.run_id_of("coincap", &ours, &key.replace(".gz", ".bak")), None);
        // `/` only where the template has one; the run time in its own format.
        let deeper = key.replace("exchanges/", "exchanges/x/");
        assert_eq!(t.run_id_of("coincap", &ours, &deeper), None);
        assert_eq!(t.run_id_of("coincap", &ours, &key.replace("/25/", "/2x/")), None);
        assert_eq!(t.run_id_of("coincap", &ours, &key.replace("-00003", "-0000a")), None);
        assert_eq!(t.list_prefix("coincap"), "coincap/");
        assert_eq!(
            KeyTemplate::parse("x/{resource}/{pipeline}/{run_id}")
                .unwrap()
                .list_prefix("p"),
            "x/"
        );
        // Pipelines `shop` and `shop-eu` keyed `{pipeline}-{resource}`: apart.
        let t = KeyTemplate::parse("{pipeline}-{resource}/{run_id}.jsonl.gz").unwrap();
        let eu = t.render("shop-eu", "orders", id, at, 0);
        assert_eq!(t.run_id_of("shop", &["orders"], &eu), None);
        assert_eq!(t.run_id_of("shop-eu", &["orders"], &eu).as_deref(), Some(id));
    }

    #[test]
    fn bad_templates_are_explained() {
        assert!(KeyTemplate::parse("{pipeline}/{resorce}/{run_id}")
            .unwrap_err()
            .contains("did you mean `{resource}`"));
        assert!(KeyTemplate::parse("{pipeline}/{resource}")
            .unwrap_err()
            .contains("{run_id}"));
        assert!(KeyTemplate::parse("{resource}/{run_id}")
            .unwrap_err()
            .contains("{pipeline}"));
        assert!(KeyTemplate::parse("{pipeline}/{resource}/{run_time:%Q}/{run_id}")
            .unwrap_err()
            .contains("strftime"));
        for escaping in [
            "../{pipeline}/{resource}/{run_id}",
            "/etc/{resource}/{run_id}",
            "{pipeline}/{resource}/{run_time:%Y/../..}/{run_id}",
            "{pipeline}//{resource}/{run_id}",
            "{pipeline}/_manifests/{resource}/{run_id}",
        ] {
            assert!(KeyTemplate::parse(escaping).is_err(), "{escaping} was accepted");
        }
    }
}
