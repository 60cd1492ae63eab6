//! `record` and `test`: a spec's extraction against the real API with every exchange kept
//! (a few pages per resource), and the whole pipeline run again offline against those
//! answers — extraction, staging in a scratch folder, load into a scratch SQLite file with
//! its expectations — reporting what did not go as recorded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{extract, run, ExtractOptions, RunError};
use crate::extract::ExtractError;
use crate::replay::server::Server;
use crate::replay::{Exchange, Recording, Tap};
use crate::spec::interp::Interp;
use crate::spec::pipeline::Pipeline;
use crate::util::Secrets;
use chrono::{SecondsFormat, Utc};

/// What `sluice record` reads.
#[derive(Debug, Clone)]
pub(crate) struct RecordOptions {
    /// Only these resources (all when empty; a `for_each` child brings its parent).
    pub resources: Vec<String>,
    /// Pages per request sequence (per resource, per parent of a `for_each` one).
    pub pages: u64,
    /// Parents (or `for_each` values) whose requests a `for_each` resource makes.
    pub parents: u64,
    pub dir: PathBuf,
    /// The recording of the run this one follows: replayed first, so that this run reads
    /// from the incremental state it left.
    pub after: Option<PathBuf>,
}

/// What a recording holds.
#[derive(Debug)]
pub(crate) struct Recorded {
    pub dir: PathBuf,
    /// Per resource (in spec order, `(auth)` first), its exchanges.
    pub per_resource: Vec<(String, usize)>,
    pub bytes: u64,
}

/// The default folder of a pipeline's recording.
pub(crate) fn default_dir(p: &Pipeline) -> PathBuf {
    PathBuf::from("tests/recordings").join(p.name())
}

/// `p` working in `scratch`: staging in a folder there, the warehouse a SQLite file there,
/// one request at a time (so that the requests come in the same order every run).
fn sandboxed(p: &Pipeline, scratch: &Path) -> Result<Pipeline, RunError> {
    let mut p = p.clone();
    let config = |e: String| RunError::Extract(ExtractError::Config(e));
    p.staging.location = Interp::parse(&format!("file://{}", scratch.join("staging").display())).map_err(config)?;
    p.warehouse.url = Interp::parse(&format!("sqlite://{}", scratch.join("test.db").display())).map_err(config)?;
    p.source.concurrency = 1;
    Ok(p)
}

fn scratch() -> Result<tempfile::TempDir, RunError> {
    crate::util::temp_dir()
        .map_err(|e| RunError::Extract(ExtractError::Config(format!("cannot make a scratch folder: {e}"))))
}

/// Record: extract `p` against its API for at most `o.pages` pages per request sequence,
/// and write every exchange into `o.dir`, secrets masked (a value still found is refused).
pub(crate) async fn record(p: &Pipeline, o: &RecordOptions, secrets: &Secrets) -> Result<Recorded, RunError> {
    let scratch = scratch()?;
    let sandbox = sandboxed(p, scratch.path())?;
    let after = match &o.after {
        Some(first) => Some(follow(p, &sandbox, first, &o.dir, secrets).await?),
        None => None,
    };
    let tap = Arc::new(Tap::record(Some(o.pages), Some(o.parents)));
    let now = Utc::now();
    let opts = ExtractOptions {
        resources: o.resources.clone(),
        full_refresh: after.is_none(),
        now: Some(now),
        tap: Some(tap.clone()),
        ..Default::default()
    };
    extract(&sandbox, &opts, secrets).await?;
    let mut exchanges = tap.take();
    // Resources run side by side: their exchanges go in spec order, each in its own order.
    let rank = |x: &Exchange| {
        p.resources()
            .iter()
            .position(|r| r.name == x.resource)
            .map_or(0, |i| i + 1)
    };
    exchanges.sort_by_key(rank);
    let variables = crate::resolve::source_variables(p);
    // Every variable that is a secret is masked, whichever field reads it.
    for (name, _) in variables.iter().filter(|(_, secret)| *secret) {
        if let Some(v) = crate::resolve::var(name) {
            secrets.add(&v);
        }
    }
    for x in &mut exchanges {
        mask(x, secrets);
        refuse_leaks(x, &variables)?;
    }
    let mut recording = Recording {
        pipeline: p.name().to_string(),
        now: now.to_rfc3339_opts(SecondsFormat::Micros, true),
        pages: Some(o.pages),
        parents: Some(o.parents),
        resources: o.resources.clone(),
        after,
        variables: variables
            .iter()
            .filter(|(_, secret)| !secret)
            .filter_map(|(v, _)| Some((v.clone(), crate::resolve::var(v)?)))
            .collect(),
        secrets: variables.iter().filter(|(_, s)| *s).map(|(v, _)| v.clone()).collect(),
        exchanges,
    };
    recording.name_files();
    recording.write(&o.dir).map_err(|e| {
        RunError::Extract(ExtractError::Config(format!(
            "cannot write the recording into {}: {e}",
            o.dir.display()
        )))
    })?;
    let mut per_resource: Vec<(String, usize)> = Vec::new();
    for x in &recording.exchanges {
        match per_resource.iter_mut().find(|(r, _)| *r == x.resource) {
            Some((_, n)) => *n += 1,
            None => per_resource.push((x.resource.clone(), 1)),
        }
    }
    Ok(Recorded {
        dir: o.dir.clone(),
        per_resource,
        bytes: recording.exchanges.iter().map(|x| x.response.len() as u64).sum(),
    })
}

/// Replay the recording `first` (and those it follows) into `sandbox`, so that the run
/// recorded next reads from the state it left; `first` as `dir`'s recording names it.
async fn follow(
    p: &Pipeline,
    sandbox: &Pipeline,
    first: &Path,
    dir: &Path,
    secrets: &Secrets,
) -> Result<String, RunError> {
    let config = |e: String| RunError::Extract(ExtractError::Config(e));
    let tested = replay_chain(p, sandbox, first, secrets).await?;
    if let Some(f) = tested.failures.first() {
        return Err(config(format!(
            "{} does not pass `sluice test` ({}), so the run after it cannot be recorded",
            first.display(),
            f.message
        )));
    }
    relative(first, dir).map_err(|e| config(format!("cannot name {} from {}: {e}", first.display(), dir.display())))
}

/// `to` as a path from the folder `from` (which may not exist yet), with `/` between parts.
fn relative(to: &Path, from: &Path) -> std::io::Result<String> {
    let to = to.canonicalize()?;
    let parent = match from.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.canonicalize()?
        }
        None => std::env::current_dir()?,
    };
    let from = parent.join(from.file_name().unwrap_or_default());
    let (a, b): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".to_string(); a.len() - common];
    parts.extend(b[common..].iter().map(|c| c.as_os_str().to_string_lossy().into_owned()));
    Ok(parts.join("/"))
}

/// Mask every secret the run knows in what an exchange keeps.
fn mask(x: &mut Exchange, secrets: &Secrets) {
    x.url = secrets.mask(&x.url);
    x.body = x.body.as_ref().map(|b| secrets.mask(b));
    for (_, v) in &mut x.headers {
        *v = secrets.mask(v);
    }
    if let Ok(text) = std::str::from_utf8(&x.response) {
        let masked = secrets.mask(text);
        if masked != text {
            x.response = masked.into_bytes();
        }
    }
}

/// Refuse an exchange that still holds the value of a secret variable (in any form the
/// masking may have missed: as it is, percent-encoded, JSON-escaped or in base64).
fn refuse_leaks(x: &Exchange, variables: &[(String, bool)]) -> Result<(), RunError> {
    use base64::Engine;
    for (name, _) in variables.iter().filter(|(_, secret)| *secret) {
        let Some(value) = crate::resolve::var(name).filter(|v| v.len() >= 4) else {
            continue;
        };
        let forms = [
            value.clone(),
            url::form_urlencoded::byte_serialize(value.as_bytes()).collect(),
            serde_json::to_string(&value)
                .unwrap_or_default()
                .trim_matches('"')
                .to_string(),
            base64::engine::general_purpose::STANDARD.encode(&value),
        ];
        let places: [(&str, &[u8]); 4] = [
            ("URL", x.url.as_bytes()),
            ("request body", x.body.as_deref().unwrap_or_default().as_bytes()),
            ("response body", &x.response),
            ("response headers", &serde_json::to_vec(&x.headers).unwrap_or_default()),
        ];
        for (place, bytes) in places {
            if forms.iter().any(|f| !f.is_empty() && contains(bytes, f.as_bytes())) {
                return Err(RunError::Extract(ExtractError::Config(format!(
                    "resource `{}` page {}: the {place} of {} {} holds the value of the secret `{name}`, so nothing was recorded",
                    x.resource, x.page, x.method, x.url
                ))));
            }
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One thing `sluice test` found wrong.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Failure {
    /// `request` (not in the recording), `unused` (recorded, never asked), `records`,
    /// `run` (the pipeline failed) or `expectation`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u64>,
    pub message: String,
}

/// What `sluice test` found for one spec.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Tested {
    pub spec: String,
    pub pipeline: String,
    pub recording: String,
    pub recorded: usize,
    pub served: usize,
    /// Per table, the rows loaded.
    pub tables: Vec<(String, u64)>,
    /// Expectations of severity `warn` that failed.
    pub warnings: Vec<String>,
    pub failures: Vec<Failure>,
    pub seconds: f64,
}

/// Test `p` against the recording in `dir`: the whole pipeline, offline (after the runs
/// it follows, each against its own recording).
pub(crate) async fn test(p: &Pipeline, dir: &Path, secrets: &Secrets) -> Result<Tested, RunError> {
    let started = std::time::Instant::now();
    let scratch = scratch()?;
    let sandbox = sandboxed(p, scratch.path())?;
    let mut tested = replay_chain(p, &sandbox, dir, secrets).await?;
    tested.seconds = started.elapsed().as_secs_f64();
    Ok(tested)
}

/// The most recordings one can follow, one after the other.
const CHAIN: usize = 20;

/// Replay the recordings `dir`'s follows, first run first, then `dir`'s, into `sandbox`:
/// what the last one found, or what the first that failed found.
async fn replay_chain(p: &Pipeline, sandbox: &Pipeline, dir: &Path, secrets: &Secrets) -> Result<Tested, RunError> {
    let config = |e: String| RunError::Extract(ExtractError::Config(e));
    let mut chain = Vec::new();
    let mut at = dir.to_path_buf();
    loop {
        let recording = Recording::read(&at).map_err(config)?;
        if recording.pipeline != p.name() {
            return Err(config(format!(
                "{} is a recording of pipeline `{}`, not of `{}`",
                at.display(),
                recording.pipeline,
                p.name()
            )));
        }
        let next = recording.after.as_ref().map(|a| at.join(a));
        chain.push((at, recording));
        match next {
            Some(_) if chain.len() == CHAIN => {
                return Err(config(format!(
                    "{}: more than {CHAIN} recordings follow one another (does an `after` lead back?)",
                    dir.display()
                )))
            }
            Some(n) => at = n,
            None => break,
        }
    }
    chain.reverse();
    let last = chain.len() - 1;
    for (i, (at, recording)) in chain.into_iter().enumerate() {
        let mut tested = replay(p, sandbox, &at, recording, i == 0, secrets).await?;
        if i < last && !tested.failures.is_empty() {
            for f in &mut tested.failures {
                f.message = format!("in the run before, recorded in {}: {}", at.display(), f.message);
            }
        }
        if i == last || !tested.failures.is_empty() {
            tested.recording = dir.display().to_string();
            return Ok(tested);
        }
    }
    unreachable!("a chain holds at least the recording asked for")
}

/// Replay one recording into `sandbox`: from each resource's `initial` when `first`, else
/// from the state the run before left.
async fn replay(
    p: &Pipeline,
    sandbox: &Pipeline,
    dir: &Path,
    recording: Recording,
    first: bool,
    secrets: &Secrets,
) -> Result<Tested, RunError> {
    let config = |e: String| RunError::Extract(ExtractError::Config(e));
    // The source sees the environment it was recorded with; a secret not set here gets a
    // stand-in (its recorded form is masked).
    for (name, secret) in crate::resolve::source_variables(p) {
        match recording.variables.get(&name) {
            Some(v) => std::env::set_var(&name, v),
            None if secret && crate::resolve::var(&name).is_none() => {
                std::env::set_var(&name, format!("sluice-test-stand-in-for-{name}"))
            }
            None if !secret => std::env::remove_var(&name),
            None => {}
        }
        if let (true, Some(v)) = (secret, crate::resolve::var(&name)) {
            secrets.add(&v);
        }
    }
    let now = chrono::DateTime::parse_from_rfc3339(&recording.now)
        .map_err(|e| config(format!("{}: `now` is not a time: {e}", dir.display())))?
        .with_timezone(&Utc);
    let recorded: Vec<Exchange> = recording.exchanges.clone();
    let server = Server::start(recording.exchanges, secrets.clone())
        .await
        .map_err(|e| config(format!("cannot start the replay server: {e}")))?;
    let tap = Arc::new(Tap::replay(server.addr, recording.pages, recording.parents));
    let opts = ExtractOptions {
        resources: recording.resources.clone(),
        full_refresh: first,
        now: Some(now),
        tap: Some(tap),
        ..Default::default()
    };
    let outcome = run(sandbox, &opts, secrets).await;
    let mut failures: Vec<Failure> = server
        .unexpected()
        .into_iter()
        .map(|u| Failure {
            kind: "request",
            resource: Some(u.resource.clone()).filter(|r| !r.is_empty()),
            page: Some(u.page),
            message: match (u.repeated, &u.nearest) {
                (true, _) => format!("{} {} was made more times than it was recorded", u.method, u.url),
                (false, Some(n)) => format!(
                    "{} {} is not in the recording; the nearest recorded is {n}",
                    u.method, u.url
                ),
                (false, None) => format!("{} {} is not in the recording", u.method, u.url),
            },
        })
        .collect();
    let (mut tables, mut warnings) = (Vec::new(), Vec::new());
    match outcome {
        Err(e) => failures.push(Failure {
            kind: match e {
                RunError::Load(crate::load::LoadError::Expectations { .. }) => "expectation",
                _ => "run",
            },
            resource: None,
            page: None,
            message: secrets.mask(&e.to_string()),
        }),
        Ok((_, loaded)) => {
            for t in &loaded.tables {
                tables.push((t.table.clone(), t.rows));
                warnings.extend(t.expectations.iter().map(ToString::to_string));
            }
            failures.extend(empty_resources(p, &recorded, &loaded));
        }
    }
    for x in server.unused() {
        failures.push(Failure {
            kind: "unused",
            resource: Some(x.resource.clone()),
            page: Some(x.page),
            message: format!(
                "the recorded {} {} (HTTP {}) was never requested: the pagination stopped before it, or the request changed",
                x.method, x.url, x.status
            ),
        });
    }
    Ok(Tested {
        spec: p.file().to_string(),
        pipeline: p.name().to_string(),
        recording: dir.display().to_string(),
        recorded: recorded.len(),
        served: server.served(),
        tables,
        warnings,
        failures,
        // `test` times the whole chain.
        seconds: 0.0,
    })
}

/// Resources with a table whose recorded answers were read but gave no record: the
/// `records` path matches nothing in them.
fn empty_resources(p: &Pipeline, recorded: &[Exchange], loaded: &crate::load::LoadReport) -> Vec<Failure> {
    let mut out = Vec::new();
    for r in p.resources().iter().filter(|r| !r.tables.is_empty()) {
        let answered = recorded
            .iter()
            .filter(|x| x.resource == r.name && (200..300).contains(&x.status))
            .count();
        let records: u64 = loaded
            .tables
            .iter()
            .filter(|t| t.resource == r.name)
            .map(|t| t.records)
            .max()
            .unwrap_or(0);
        if answered > 0 && records == 0 {
            out.push(Failure {
                kind: "records",
                resource: Some(r.name.clone()),
                page: Some(1),
                message: format!(
                    "no record was read from the {answered} recorded answers: `records: {}` matches nothing in them",
                    r.records.as_str()
                ),
            });
        }
    }
    out
}
