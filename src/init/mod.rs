//! `sluice init`: a working, typed spec from one URL (or several of one API). It reads
//! the first pages, finds the records and the pagination, infers the columns and keys,
//! and writes a commented spec that compiles, or adds the resources to an existing one.
//!
//! `sample` talks to the API (through sluice's own client, paginators and extractor),
//! `infer` turns records into a table, `render` writes the YAML.

pub(crate) mod files;
pub(crate) mod infer;
pub(crate) mod render;
pub(crate) mod sample;
pub(crate) mod sampled;

use std::time::{Duration, Instant};

use url::Url;

use crate::resolve::Needs;
use crate::spec::pipeline::Target;
use crate::util::Secrets;
use crate::value::ColumnType;

use infer::{Context, Known};
use sample::{Budget, Sampled, Sampler};

/// How `init` authenticates, and writes `source.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthKind {
    Bearer,
    ApiKey,
    Basic,
    OAuth2,
}

/// The spec `--append` adds to: compiled, and its text, which is kept as it is.
#[derive(Debug, Clone)]
pub(crate) struct Appended {
    pub pipeline: crate::spec::Pipeline,
    pub text: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub urls: Vec<String>,
    /// The pipeline's name (a new spec).
    pub name: Option<String>,
    /// The resource's name (one URL).
    pub resource: Option<String>,
    pub auth: Option<AuthKind>,
    /// The variable holding the token, API key or password.
    pub auth_var: Option<String>,
    /// `--auth oauth2`: the token endpoint.
    pub token_url: Option<String>,
    /// `--auth api_key`: the header (or query parameter) name.
    pub key_name: String,
    pub key_in_query: bool,
    /// A JSON body: the URLs are requested with POST.
    pub body: Option<serde_json::Value>,
    /// `--header`: headers every request carries, written into `source.headers`.
    pub headers: Vec<(String, String)>,
    pub pages: u64,
    pub max_bytes: u64,
    pub max_time: Duration,
    /// Add to this spec instead of writing a new one.
    pub append: Option<Appended>,
    /// The command line, for the comment at the top.
    pub command: String,
    /// The JSON Schema's path relative to the spec, for the editor's
    /// `# yaml-language-server: $schema=` line.
    pub schema: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum InitError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Env(String),
    #[error("the API answered HTTP {status}: {hint}\n  ({detail})")]
    Refused { status: u16, hint: String, detail: String },
    #[error("{0}")]
    Sample(String),
    #[error("sampling stopped before the first page was understood: {0}")]
    Budget(String),
    #[error("init wrote a spec that does not compile (a bug; please report it):\n{0}")]
    Internal(String),
}

/// The spec written, and what was sampled.
pub(crate) struct Written {
    pub text: String,
    pub resources: Vec<Summary>,
    pub requests: u64,
    pub bytes: u64,
}

pub(crate) struct Summary {
    pub name: String,
    pub records: usize,
    pub pages: u64,
    pub paginate: String,
    pub columns: usize,
    pub nested: usize,
}

/// One resource being written.
struct Draft {
    name: String,
    path: String,
    sampled: Sampled,
    /// Query parameters of the URL that hold a secret, and the variable the spec reads
    /// each from instead.
    secret_params: Vec<(String, String)>,
}

pub(crate) async fn init(opts: &Options) -> Result<Written, InitError> {
    let urls = checked_urls(opts)?;
    let first = &urls[0];
    let written_base = api_base(&urls);
    let secrets = url_secrets(&urls);
    // The API's client: the existing spec's source, or the new one's.
    let new_spec;
    let (pipeline, pipeline_name, auth_var) = match &opts.append {
        Some(a) => (&a.pipeline, a.pipeline.name().to_string(), None),
        None => {
            let name = match &opts.name {
                Some(n) => n.clone(),
                None => default_pipeline_name(first),
            };
            crate::spec::ident::check_identifier(&name).map_err(|e| InitError::Usage(format!("--name: {e}")))?;
            let (auth, var) = auth_yaml(opts, &name);
            let probe = render::probe_resource("probe", "/", None, "$[*]", &sampled::Paging::None);
            new_spec = render::probe_pipeline(&written_base, &auth, &render::headers(&opts.headers), &probe)?;
            (&new_spec, name, var)
        }
    };
    let resolved = crate::resolve::resolve(pipeline, Needs::DRY_RUN, &secrets).map_err(|e| {
        let text = secrets.mask(&e.to_string());
        match &auth_var {
            Some(var) => InitError::Env(format!(
                "{text}\n  --auth reads the secret from `{var}`: export {var}=… (or name another variable with --auth-var)"
            )),
            None => InitError::Env(text),
        }
    })?;
    let client = crate::extract::http::Client::new(pipeline.source(), resolved.source(), &secrets)
        .map_err(|e| InitError::Env(secrets.mask(&e.to_string())))?;
    let base_url = client.base_url().trim_end_matches('/').to_string();
    let base = Url::parse(&base_url).map_err(|e| InitError::Env(format!("source.base_url: {e}")))?;
    let base_path = base.path().trim_end_matches('/').to_string();

    // Names taken: the existing spec's resources and tables.
    let (mut taken, known) = match &opts.append {
        Some(_) => names_of(pipeline, &base_path),
        None => (Vec::new(), Vec::new()),
    };

    let mut sampler = Sampler {
        client: &client,
        secrets: &secrets,
        budget: Budget {
            pages: opts.pages.max(1),
            max_bytes: opts.max_bytes,
            bytes: 0,
            requests: 0,
            deadline: Instant::now() + opts.max_time,
        },
        body: opts.body.clone(),
        unconfirmed: Vec::new(),
        auth: match (&opts.append, &auth_var) {
            (Some(_), _) => Some("the spec's `source.auth`".into()),
            (None, Some(var)) => Some(format!("`{var}`")),
            (None, None) => None,
        },
    };
    let mut drafts = Vec::new();
    for url in &urls {
        if url.origin() != base.origin() || !url.path().starts_with(&base_path) {
            return Err(InitError::Usage(format!(
                "{url} is not below the spec's base URL {base_url}"
            )));
        }
        let path = format!("/{}", url.path()[base_path.len()..].trim_start_matches('/'));
        drafts.push(draft(opts, &mut sampler, url, path, &base_url, &pipeline_name, &mut taken).await?);
    }

    let tables = infer_tables(&drafts, known);

    let text = Compose {
        opts,
        drafts: &drafts,
        tables: &tables,
        pipeline_name: &pipeline_name,
        base_url: &written_base,
        secrets: &secrets,
    }
    .spec()?;
    let resources = drafts
        .iter()
        .zip(&tables)
        .map(|(d, t)| Summary {
            name: d.name.clone(),
            records: d.sampled.records.len(),
            pages: d.sampled.pages,
            paginate: render::paging_flow(&d.sampled.paging),
            columns: t.columns.len(),
            nested: t.nested.len(),
        })
        .collect();
    Ok(Written {
        text,
        resources,
        requests: sampler.budget.requests,
        bytes: sampler.budget.bytes,
    })
}

/// The spec's text from the drafts and their tables: a new spec with its head, or the
/// appended spec with the new resources.
struct Compose<'a> {
    opts: &'a Options,
    drafts: &'a [Draft],
    tables: &'a [infer::Table],
    pipeline_name: &'a str,
    base_url: &'a str,
    secrets: &'a Secrets,
}

impl Compose<'_> {
    /// The text, checked by the compiler; written without the references init found
    /// when only they keep it from compiling.
    fn spec(&self) -> Result<String, InitError> {
        let opts = self.opts;
        let file = opts.append.as_ref().map_or("init", |a| a.pipeline.file());
        let text = self.text(true);
        let Err(d) = crate::spec::compile_text(file, &text) else {
            return Ok(text);
        };
        let without = self.text(false);
        if crate::spec::compile_text(file, &without).is_err() {
            return Err(InitError::Internal(render::diagnostics(&text, &d)));
        }
        tracing::warn!(
            "the references init found would not compile together ({}); they are left out",
            render::diagnostics(&text, &d).lines().next().unwrap_or("")
        );
        Ok(without)
    }

    fn text(&self, with_references: bool) -> String {
        let opts = self.opts;
        let indent = match &opts.append {
            Some(a) => list_indent(&a.text),
            None => "  ".to_string(),
        };
        let blocks: Vec<String> = self
            .drafts
            .iter()
            .zip(self.tables)
            .map(|(d, t)| {
                render::resource(
                    &d.sampled,
                    &d.secret_params,
                    &d.name,
                    &d.path,
                    t,
                    &indent,
                    with_references,
                )
            })
            .collect();
        match &opts.append {
            Some(a) => append_resources(&a.text, &blocks),
            None => {
                let auth = auth_yaml(opts, self.pipeline_name).0;
                let head = render::head(&render::Head {
                    schema: opts.schema.as_deref(),
                    command: &self.secrets.mask(&without_userinfo(&opts.command)),
                    name: self.pipeline_name,
                    base_url: self.base_url,
                    auth: &auth,
                    headers: &render::headers(&opts.headers),
                });
                format!("{head}{}", blocks.join("\n"))
            }
        }
    }
}

/// The URLs of `init`, checked: http(s), one origin, and the flags that go with them.
fn checked_urls(opts: &Options) -> Result<Vec<Url>, InitError> {
    let urls: Vec<Url> = opts
        .urls
        .iter()
        .map(|u| {
            let url = Url::parse(u).map_err(|e| InitError::Usage(format!("`{u}` is not a URL: {e}")))?;
            match url.scheme() {
                "http" | "https" => Ok(url),
                s => Err(InitError::Usage(format!("`{u}`: init reads http(s) APIs, not `{s}:`"))),
            }
        })
        .collect::<Result<_, _>>()?;
    let Some(first) = urls.first() else {
        return Err(InitError::Usage("give the URL of the API's first page".into()));
    };
    if let Some(other) = urls.iter().find(|u| u.origin() != first.origin()) {
        return Err(InitError::Usage(format!(
            "all URLs of one spec share one API origin: {} is not on {}",
            other,
            first.origin().ascii_serialization()
        )));
    }
    match (&opts.auth, &opts.token_url) {
        (Some(AuthKind::OAuth2), None) => {
            return Err(InitError::Usage(
                "--auth oauth2 needs --token-url, the token endpoint".into(),
            ))
        }
        (Some(AuthKind::OAuth2), Some(_)) | (_, None) => {}
        (_, Some(_)) => return Err(InitError::Usage("--token-url goes with --auth oauth2".into())),
    }
    if opts.resource.is_some() && urls.len() > 1 {
        return Err(InitError::Usage(
            "--resource names one resource: give one URL with it".into(),
        ));
    }
    Ok(urls)
}

/// The secrets of the URLs: a password or user name (`https://user:password@host/…`,
/// never written, never shown) and a key in the query (`?api_key=…`, used for the
/// sampling, masked everywhere and written as a `${…}` placeholder).
fn url_secrets(urls: &[Url]) -> Secrets {
    let secrets = Secrets::default();
    for url in urls {
        for part in [url.password().unwrap_or(""), url.username()] {
            if !part.is_empty() {
                secrets.add(part);
                if let Ok(decoded) = percent_encoding::percent_decode_str(part).decode_utf8() {
                    secrets.add(&decoded);
                }
            }
        }
        for (k, v) in url.query_pairs() {
            if secret_param(&k) && !v.is_empty() {
                secrets.add(&v);
                secrets.add(&url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>());
            }
        }
    }
    secrets
}

/// The names an appended-to spec takes (its resources and tables), and its resources that
/// are keyed by one column, for URL fields to reference.
fn names_of(pipeline: &crate::spec::Pipeline, base_path: &str) -> (Vec<String>, Vec<Known>) {
    let mut taken: Vec<String> = Vec::new();
    let mut known: Vec<Known> = Vec::new();
    for r in pipeline.resources() {
        taken.push(r.name.clone());
        taken.extend(r.tables.iter().map(|t| t.name.clone()));
        if let (Target::Path(path), None, Some(t)) = (&r.target, &r.for_each, r.tables.first()) {
            if let [key] = t.primary_key.as_slice() {
                let ty = t.column(key).map(|c| c.column_type).unwrap_or(ColumnType::Text);
                known.push(Known {
                    path: format!("{base_path}/{}", path.trim_matches('/')),
                    table: t.name.clone(),
                    key: key.clone(),
                    key_type: ty,
                });
            }
        }
    }
    (taken, known)
}

/// Sample one URL and name its resource; a secret in its query becomes a variable.
async fn draft(
    opts: &Options,
    sampler: &mut Sampler<'_>,
    url: &Url,
    path: String,
    base_url: &str,
    pipeline_name: &str,
    taken: &mut Vec<String>,
) -> Result<Draft, InitError> {
    let secrets = sampler.secrets;
    let guess = opts.resource.clone().unwrap_or_else(|| resource_name(url));
    tracing::info!(
        "{guess}: {} {}",
        sampled::method_word(opts.body.as_ref()),
        secrets.mask(&crate::util::shown_url(url.as_str()))
    );
    let sampled = sampler.sample(url, base_url, &guess).await?;
    let name = match &opts.resource {
        Some(n) => {
            crate::spec::ident::check_identifier(n).map_err(|e| InitError::Usage(format!("--resource: {e}")))?;
            if taken.contains(n) {
                return Err(InitError::Usage(format!(
                    "the spec already has a resource or table `{n}`"
                )));
            }
            n.clone()
        }
        None => free_name(&name_from_records(&sampled.records_path).unwrap_or(guess), taken),
    };
    taken.push(name.clone());
    let mut sampled = sampled;
    let secret_params: Vec<(String, String)> = sampled
        .params
        .iter()
        .filter(|(k, _)| secret_param(k))
        .map(|(k, _)| {
            (
                k.clone(),
                format!(
                    "{}_{}",
                    pipeline_name.to_ascii_uppercase(),
                    infer::snake_case(k).to_ascii_uppercase()
                ),
            )
        })
        .collect();
    sampled.params.retain(|(k, _)| !secret_param(k));
    for (k, var) in &secret_params {
        tracing::warn!("{name}: the URL's `{k}` parameter is a secret: the spec reads it from `{var}`; export {var}=… before `sluice run`");
    }
    if !secret_params.is_empty() {
        let kept: Vec<(String, String)> = sampled
            .url
            .query_pairs()
            .filter(|(k, _)| !secret_param(k))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        sampled.url.query_pairs_mut().clear().extend_pairs(kept);
        if sampled.url.query() == Some("") {
            sampled.url.set_query(None);
        }
    }
    Ok(Draft {
        name,
        path,
        sampled,
        secret_params,
    })
}

/// The tables, in two passes: first each alone (for its key), then with every resource
/// known, so that URL fields reference the resources serving them.
fn infer_tables(drafts: &[Draft], mut known: Vec<Known>) -> Vec<infer::Table> {
    for d in drafts {
        let t = infer::table(&d.sampled.records, &context(d, &[]));
        if let [key] = t.primary_key.as_slice() {
            let ty = t
                .columns
                .iter()
                .find(|c| c.name == *key)
                .and_then(|c| c.ty)
                .unwrap_or(ColumnType::Text);
            known.push(Known {
                path: d.sampled.url.path().trim_end_matches('/').to_string(),
                table: d.name.clone(),
                key: key.clone(),
                key_type: ty,
            });
        }
    }
    drafts
        .iter()
        .map(|d| infer::table(&d.sampled.records, &context(d, &known)))
        .collect()
}

fn context<'a>(d: &'a Draft, known: &'a [Known]) -> Context<'a> {
    Context {
        table: &d.name,
        own_path: d.sampled.url.path().trim_end_matches('/'),
        known,
        complete: d.sampled.complete,
    }
}

/// Whether a query parameter's name says it holds a secret (`api_key`, `access_token`,
/// `client_secret`, …; not a pagination token).
fn secret_param(name: &str) -> bool {
    let n = sample::norm(name);
    [
        "key",
        "apikey",
        "token",
        "accesstoken",
        "authtoken",
        "apitoken",
        "secret",
        "clientsecret",
        "password",
        "passwd",
        "sig",
        "signature",
        "appkey",
        "auth",
    ]
    .contains(&n.as_str())
        || n.ends_with("apikey")
        || n.ends_with("secret")
}

/// `scheme://host[:port]`.
/// `text` with every URL's `user:password@` written `****@` (however short the password,
/// which masking by value would miss).
pub(crate) fn without_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let authority_end = rest.find(['/', '?', '#', ' ', '\'', '"']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            out.push_str("****");
            rest = &rest[at..];
        }
    }
    out.push_str(rest);
    out
}

/// The base URL of a new spec: the origin and the folders all the URLs' paths share
/// (`https://rickandmortyapi.com/api` for `…/api/location` and `…/api/episode`), as the
/// reference pipelines write it; each resource's `path` is the rest.
fn api_base(urls: &[Url]) -> String {
    let dirs = |u: &Url| -> Vec<String> {
        let mut segments: Vec<String> = u
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        segments.pop();
        segments
    };
    let mut common = dirs(&urls[0]);
    for u in &urls[1..] {
        let d = dirs(u);
        let n = common.iter().zip(&d).take_while(|(a, b)| a == b).count();
        common.truncate(n);
    }
    let origin = urls[0].origin().ascii_serialization();
    match common.is_empty() {
        true => origin,
        false => format!("{origin}/{}", common.join("/")),
    }
}

/// `source.auth` as YAML, and the variable holding the secret.
fn auth_yaml(opts: &Options, name: &str) -> (String, Option<String>) {
    let upper = name.to_ascii_uppercase();
    let var = |default: &str| opts.auth_var.clone().unwrap_or_else(|| format!("{upper}_{default}"));
    match opts.auth {
        None => ("none".into(), None),
        Some(AuthKind::Bearer) => {
            let v = var("TOKEN");
            (format!("{{type: bearer, token: \"${{{v}}}\"}}"), Some(v))
        }
        Some(AuthKind::ApiKey) => {
            let v = var("API_KEY");
            let at = if opts.key_in_query { "query" } else { "header" };
            (
                format!(
                    "{{type: api_key, name: {}, value: \"${{{v}}}\", in: {at}}}",
                    render::scalar(&opts.key_name, true)
                ),
                Some(v),
            )
        }
        Some(AuthKind::OAuth2) => {
            let v = var("CLIENT_SECRET");
            (
                format!(
                    "{{type: oauth2, grant: client_credentials, token_url: {}, client_id: \"${{{upper}_CLIENT_ID}}\", client_secret: \"${{{v}}}\"}}",
                    serde_json::Value::String(crate::spec::interp::Interp::escape(opts.token_url.as_deref().unwrap_or_default()))
                ),
                Some(v),
            )
        }
        Some(AuthKind::Basic) => {
            let v = var("PASSWORD");
            (
                format!("{{type: basic, username: \"${{{upper}_USERNAME}}\", password: \"${{{v}}}\"}}"),
                Some(v),
            )
        }
    }
}

/// The pipeline's name from the API's host: `api.github.com` → `github`; an address
/// or `localhost` gives the first resource's name.
fn default_pipeline_name(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let labels: Vec<&str> = host.split('.').collect();
    let ip = host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') || labels.len() < 2;
    if !ip {
        if let Some(label) = labels[..labels.len() - 1]
            .iter()
            .find(|l| !["www", "api", "rest", "app", "data"].contains(l))
        {
            return infer::snake_case(label);
        }
    }
    resource_name(url)
}

/// A resource's name from its URL's last meaningful segment (`/v1/charges` → `charges`,
/// `/tickets/cursor.json` → `cursor`).
fn resource_name(url: &Url) -> String {
    let segment = url
        .path_segments()
        .into_iter()
        .flatten()
        .rev()
        .map(|s| s.split('.').next().unwrap_or(s))
        .find(|s| {
            let version = s.starts_with('v') && s[1..].chars().all(|c| c.is_ascii_digit());
            !(s.is_empty() || id_like(s) || version || ["api", "search", "graphql"].contains(s))
        })
        .unwrap_or("records");
    infer::snake_case(segment)
}

/// A path segment that is a record's id rather than a name: digits, a UUID, hex, or a
/// long run of letters and digits mixed (Twilio's `AC…`, Airtable's `app…`).
fn id_like(s: &str) -> bool {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    let alnum = s.chars().all(|c| c.is_ascii_alphanumeric());
    let hex = s.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    (!s.is_empty() && digits == s.len())
        || (hex && digits > 0 && s.len() >= 8)
        || (alnum && digits >= 2 && s.len() >= 14)
}

/// The records' key as the name, when it names them (`tickets`, `$.data.characters.nodes`
/// → `characters`), not a generic `data` or `results`.
fn name_from_records(records_path: &str) -> Option<String> {
    let generic = [
        "$", "data", "results", "items", "records", "entries", "list", "values", "nodes", "edges", "objects", "rows",
        "hits", "content", "elements", "response", "payload", "result",
    ];
    records_path
        .trim_end_matches("[*]")
        .split(['.', '\'', '[', ']'])
        .filter(|s| !s.is_empty())
        .rev()
        .find(|k| !generic.contains(&k.to_ascii_lowercase().as_str()))
        .map(infer::snake_case)
}

fn free_name(name: &str, taken: &[String]) -> String {
    let mut out = name.to_string();
    let mut n = 2;
    while taken.contains(&out) {
        out = format!("{name}_{n}");
        n += 1;
    }
    out
}

/// The indentation of the `- ` entries of a spec's `resources:` list.
fn list_indent(text: &str) -> String {
    let mut in_resources = false;
    for line in text.lines() {
        if line.starts_with("resources:") {
            in_resources = true;
            continue;
        }
        if in_resources {
            let trimmed = line.trim_start();
            if trimmed.starts_with("- ") {
                return line[..line.len() - trimmed.len()].to_string();
            }
        }
    }
    "  ".to_string()
}

/// The spec's text with `blocks` added at the end of its `resources:` list.
fn append_resources(text: &str, blocks: &[String]) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let start = lines.iter().position(|l| l.starts_with("resources:"));
    // The list ends before the next top-level key (or at the end of the file).
    let end = start
        .and_then(|s| {
            lines[s + 1..]
                .iter()
                .position(|l| {
                    l.chars()
                        .next()
                        .is_some_and(|c| !c.is_whitespace() && c != '#' && c != '-')
                })
                .map(|i| s + 1 + i)
        })
        .unwrap_or(lines.len());
    // Before the blank lines and comments that close the list.
    let mut at = end;
    while at > 0 && start.is_some_and(|s| at > s + 1) && lines[at - 1].trim().is_empty() {
        at -= 1;
    }
    let mut out: String = lines[..at].concat();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    for b in blocks {
        out.push('\n');
        out.push_str(b);
    }
    let rest: String = lines[at..].concat();
    if !rest.is_empty() && !rest.starts_with('\n') {
        out.push('\n');
    }
    out.push_str(&rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_never_shows() {
        assert_eq!(
            without_userinfo("sluice init https://ann:pw@api.example.com/v1/items?x=1 --name a"),
            "sluice init https://****@api.example.com/v1/items?x=1 --name a"
        );
        assert_eq!(without_userinfo("http://h/p?a=b@c"), "http://h/p?a=b@c");
    }

    #[test]
    fn names_from_urls() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            default_pipeline_name(&u("https://api.github.com/repos/a/b/issues")),
            "github"
        );
        assert_eq!(
            default_pipeline_name(&u("https://rest.coincap.io/v3/exchanges")),
            "coincap"
        );
        assert_eq!(
            default_pipeline_name(&u("http://127.0.0.1:8080/api/character")),
            "character"
        );
        assert_eq!(
            resource_name(&u("https://x.io/api/v2/incremental/tickets/cursor.json")),
            "cursor"
        );
        assert_eq!(resource_name(&u("https://x.io/v1/charges")), "charges");
        assert_eq!(name_from_records("$.tickets[*]").as_deref(), Some("tickets"));
        assert_eq!(name_from_records("$.results[*]"), None);
        assert_eq!(name_from_records("$[*]"), None);
        assert_eq!(
            name_from_records("$.data.characters.nodes[*]").as_deref(),
            Some("characters")
        );
        assert_eq!(
            resource_name(&u("https://x.io/crm/v3/objects/contacts/search")),
            "contacts"
        );
        // Never after an id: the segment before it, or one after it.
        assert_eq!(
            resource_name(&u(
                "https://api.notion.com/v1/databases/897e5a76-ae52-4b48-9fdf-e71f5945d1af/query"
            )),
            "query"
        );
        assert_eq!(
            resource_name(&u(
                "https://api.notion.com/v1/users/897e5a76-ae52-4b48-9fdf-e71f5945d1af"
            )),
            "users"
        );
        assert_eq!(
            resource_name(&u(
                "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
            )),
            "messages"
        );
    }

    #[test]
    fn appends_inside_the_resources_list() {
        let text = "version: 1\nresources:\n    - name: a\n      path: /a\n\nwarehouse:\n  url: x\n";
        assert_eq!(list_indent(text), "    ");
        let out = append_resources(text, &["    - name: b\n".to_string()]);
        assert_eq!(
            out,
            "version: 1\nresources:\n    - name: a\n      path: /a\n\n    - name: b\n\nwarehouse:\n  url: x\n"
        );
        let last = "resources:\n  - name: a\n";
        assert_eq!(
            append_resources(last, &["  - name: b\n".to_string()]),
            "resources:\n  - name: a\n\n  - name: b\n"
        );
    }
}
