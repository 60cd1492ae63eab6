//! `sluice lambda`: the `bootstrap` of a `provided.al2023` function. It runs the Lambda
//! Runtime API loop (the `lambda_runtime` crate) over the specs bundled in the package.
//!
//! Events:
//! - `{"pipeline": "coincap", "step": "extract" | "load" | "run", "resources": [...],
//!   "run_id": "..."}` — a schedule or a direct invocation (`resources` and `run_id`
//!   optional; `run_id` only for `load`), `"resume": "<run id>"` to go on with a
//!   checkpointed run;
//! - a backfill's, from the state machine: `{"step": "windows", "backfill": {"from",
//!   "to"}}` answers its windows, each the event `{"step": "extract", "backfill": …,
//!   "window": i, "run_id": …}` that extracts it;
//! - an S3 event notification, direct (`Records[].s3`) or through EventBridge
//!   (`detail-type: Object Created`), for a manifest `…/<pipeline>/_manifests/<run>.json`:
//!   loads exactly that run.
//!
//! A function deployed for one pipeline (`SLUICE_PIPELINE`) serves only its events, and a
//! load function (`SLUICE_FUNCTION=load`) no extraction. The answer is the run summary as
//! JSON, and its figures go out as CloudWatch metrics; a failure is a Lambda error, so
//! Lambda's retries and failure destination apply. The deadline, less a reserve, bounds
//! every request and upload. Secrets come from Secrets Manager (`SLUICE_SECRETS`:
//! secret ARNs or names, each a JSON object of environment variables or an RDS secret),
//! read at cold start, again after `SLUICE_SECRETS_TTL` (5 minutes) and after a failed
//! invocation, and are masked in every message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::extract::http::Deadline;
use crate::resolve::Needs;
use crate::run::{ExtractOptions, RunSelector};
use crate::spec::location::StagingLocation;
use crate::spec::Pipeline;
use crate::util::Secrets;

/// The variable naming the bundled specs (a folder of `*.yaml`, or one file).
pub(crate) const SPECS_VAR: &str = "SLUICE_SPECS";
/// The variable setting the time kept before the deadline to finish cleanly (`10s`).
pub(crate) const RESERVE_VAR: &str = "SLUICE_DEADLINE_RESERVE";
/// The variable setting how long secrets are used before they are read again (`5m`).
pub(crate) const SECRETS_TTL_VAR: &str = "SLUICE_SECRETS_TTL";

const DEFAULT_SECRETS_TTL: Duration = Duration::from_secs(300);

const LOAD_STEP: &str = super::LOAD.step;

/// The longest reserve kept by default; less when the invocation is shorter.
const MAX_RESERVE: Duration = Duration::from_secs(10);

/// What one invocation asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invocation {
    /// A schedule or a direct call.
    Step {
        pipeline: String,
        step: Step,
        resources: Vec<String>,
        run_id: Option<String>,
        /// Go on with this checkpointed run (steps extract and run).
        resume: Option<String>,
        /// A backfill: its windows (step `windows`), or one of them (step `extract`,
        /// with the `run_id` the windows named).
        backfill: Option<(crate::run::Backfill, Option<usize>)>,
    },
    /// A manifest landed in S3: load its run.
    Manifest { bucket: String, key: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Extract,
    Load,
    Run,
    /// The windows of a backfill, each the event that extracts it.
    Windows,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Extract => "extract",
            Step::Load => "load",
            Step::Run => "run",
            Step::Windows => "windows",
        }
    }
}

/// A failed invocation: its Lambda error type and the (masked) message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: &'static str,
    pub message: String,
}

impl Failure {
    fn bad_event(message: impl Into<String>) -> Self {
        Failure {
            kind: "Sluice.BadEvent",
            message: message.into(),
        }
    }
}

impl From<Failure> for lambda_runtime::Diagnostic {
    fn from(f: Failure) -> Self {
        lambda_runtime::Diagnostic {
            error_type: f.kind.to_string(),
            error_message: f.message,
        }
    }
}

/// Read an event, as a schedule, a direct call, S3 or EventBridge sends it.
pub(crate) fn parse_event(event: &Value) -> Result<Invocation, Failure> {
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        let [record] = records.as_slice() else {
            return Err(Failure::bad_event(format!(
                "an S3 notification with {} records; sluice loads one manifest per invocation",
                records.len()
            )));
        };
        let s3 = record
            .get("s3")
            .ok_or_else(|| Failure::bad_event("a `Records` event that is not an S3 notification"))?;
        let bucket = s3.pointer("/bucket/name").and_then(Value::as_str);
        let key = s3.pointer("/object/key").and_then(Value::as_str);
        let (Some(bucket), Some(key)) = (bucket, key) else {
            return Err(Failure::bad_event(
                "an S3 notification without s3.bucket.name and s3.object.key",
            ));
        };
        // S3 notifications carry the key form-encoded (a space is `+`).
        let key: String = url::form_urlencoded::parse(format!("k={key}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        return Ok(Invocation::Manifest {
            bucket: bucket.to_string(),
            key,
        });
    }
    if event.get("source").and_then(Value::as_str) == Some("aws.s3") {
        let bucket = event.pointer("/detail/bucket/name").and_then(Value::as_str);
        let key = event.pointer("/detail/object/key").and_then(Value::as_str);
        let (Some(bucket), Some(key)) = (bucket, key) else {
            return Err(Failure::bad_event(
                "an S3 event without detail.bucket.name and detail.object.key",
            ));
        };
        return Ok(Invocation::Manifest {
            bucket: bucket.to_string(),
            key: key.to_string(),
        });
    }
    let Some(obj) = event.as_object() else {
        return Err(Failure::bad_event(format!(
            "the event is {}, not an object like {{\"pipeline\": \"NAME\", \"step\": \"extract\"}}",
            crate::util::describe(event)
        )));
    };
    for key in obj.keys() {
        if ![
            "pipeline",
            "step",
            "resources",
            "run_id",
            "resume",
            "backfill",
            "window",
        ]
        .contains(&key.as_str())
        {
            return Err(Failure::bad_event(format!(
                "unknown event field `{key}`; an event has `pipeline`, `step` and optionally `resources`, `run_id`, `resume`, `backfill` and `window`"
            )));
        }
    }
    let pipeline = obj
        .get("pipeline")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::bad_event("the event names no `pipeline` (a string)"))?;
    let step = match obj.get("step").and_then(Value::as_str) {
        Some("extract") => Step::Extract,
        Some("load") => Step::Load,
        Some("run") => Step::Run,
        Some("windows") => Step::Windows,
        _ => {
            return Err(Failure::bad_event(
                "the event's `step` must be \"extract\", \"load\", \"run\" or \"windows\"",
            ))
        }
    };
    let backfill = backfill_of(obj, step)?;
    let resources = match obj.get("resources") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Failure::bad_event("`resources` must be a list of resource names"))?,
        Some(_) => return Err(Failure::bad_event("`resources` must be a list of resource names")),
    };
    let run_id = match obj.get("run_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if step == Step::Load => Some(id.clone()),
        Some(Value::String(id)) if matches!(backfill, Some((_, Some(_)))) => Some(id.clone()),
        Some(Value::String(_)) => {
            return Err(Failure::bad_event(
                "`run_id` is for step \"load\" (which run to load) and a backfill's `window`; extract and run start a new run",
            ))
        }
        Some(_) => return Err(Failure::bad_event("`run_id` must be a string")),
    };
    let resume = match obj.get("resume") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if step != Step::Load && resources.is_empty() => Some(id.clone()),
        Some(Value::String(_)) => {
            return Err(Failure::bad_event(
                "`resume` is for steps \"extract\" and \"run\" without `resources`: it goes on with the checkpointed run it names, as it was started",
            ))
        }
        Some(_) => return Err(Failure::bad_event("`resume` must be a run id (a string)")),
    };
    if step == Step::Load && !resources.is_empty() {
        return Err(Failure::bad_event(
            "`resources` is for steps \"extract\" and \"run\"; a load takes the whole staged run",
        ));
    }
    if backfill.is_some() && (!resources.is_empty() || resume.is_some()) {
        return Err(Failure::bad_event(
            "a backfill's window reads what its round reads: no `resources` or `resume` beside `backfill`",
        ));
    }
    if matches!(backfill, Some((_, Some(_)))) && run_id.is_none() {
        return Err(Failure::bad_event(
            "a backfill's `window` is extracted as the run the windows named: give its `run_id`",
        ));
    }
    Ok(Invocation::Step {
        pipeline: pipeline.to_string(),
        step,
        resources,
        run_id,
        resume,
        backfill,
    })
}

/// `backfill: {from, to}` (steps `windows`, and `extract` with `window`: its index).
fn backfill_of(
    obj: &serde_json::Map<String, Value>,
    step: Step,
) -> Result<Option<(crate::run::Backfill, Option<usize>)>, Failure> {
    let window = match obj.get("window") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| Failure::bad_event("`window` must be a window's index (0, 1, …)"))? as usize,
        ),
    };
    let Some(b) = obj.get("backfill").filter(|b| !b.is_null()) else {
        if step == Step::Windows || window.is_some() {
            return Err(Failure::bad_event(
                "step \"windows\" and `window` need `backfill`: {\"from\": \"2024-01-01\", \"to\": \"2024-12-31\"}",
            ));
        }
        return Ok(None);
    };
    let bound = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(from), Some(to), true) = (bound("from"), bound("to"), b.as_object().is_some_and(|o| o.len() == 2)) else {
        return Err(Failure::bad_event(
            "`backfill` must be {\"from\": \"2024-01-01\", \"to\": \"2024-12-31\"} (dates or RFC 3339 timestamps; `to` inclusive)",
        ));
    };
    match (step, window) {
        (Step::Windows, None) | (Step::Extract, Some(_)) => Ok(Some((crate::run::Backfill { from, to }, window))),
        (Step::Windows, Some(_)) => Err(Failure::bad_event("step \"windows\" lists every window: no `window`")),
        _ => Err(Failure::bad_event(
            "`backfill` is for step \"windows\" (the windows), or \"extract\" with its `window`",
        )),
    }
}

/// The bundled specs: `SLUICE_SPECS` (a folder or one file), else
/// `$LAMBDA_TASK_ROOT/pipelines`.
pub(crate) fn specs_path() -> PathBuf {
    match std::env::var_os(SPECS_VAR) {
        Some(p) => PathBuf::from(p),
        None => {
            let root = std::env::var_os("LAMBDA_TASK_ROOT").unwrap_or_else(|| ".".into());
            Path::new(&root).join("pipelines")
        }
    }
}

/// Compile every spec at `path`; all the problems of an invalid one in the message.
pub(crate) fn load_specs(path: &Path) -> Result<Vec<Pipeline>, String> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("cannot read the specs folder {}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Err(format!(
            "no spec (*.yaml) in {}; `sluice package` bundles them in pipelines/, or set {SPECS_VAR}",
            path.display()
        ));
    }
    let mut specs: Vec<Pipeline> = Vec::new();
    for f in files {
        let name = f.to_string_lossy().into_owned();
        let p = crate::spec::compile_file(&name).map_err(|e| {
            let problems: Vec<String> = e.diagnostics.iter().map(|d| d.render_json()).collect();
            format!("{name} is not a valid spec: {}", problems.join("; "))
        })?;
        if let Some(q) = specs.iter().find(|q| q.name() == p.name()) {
            return Err(format!("{} and {name} both define pipeline `{}`", q.file(), p.name()));
        }
        specs.push(p);
    }
    Ok(specs)
}

/// Read the secrets named in `SLUICE_SECRETS` from Secrets Manager: each one's
/// `SecretString` is a JSON object of environment variables (strings, numbers or
/// booleans), or an RDS secret (`host`, `port`, `username`, `password`, `dbname`), which
/// becomes `DATABASE_URL`.
pub(crate) async fn read_secrets() -> Result<HashMap<String, String>, String> {
    let names: Vec<String> = std::env::var(super::SECRETS_VAR)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let mut values = HashMap::new();
    if names.is_empty() {
        return Ok(values);
    }
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    for name in names {
        let out = client
            .get_secret_value()
            .secret_id(&name)
            .send()
            .await
            .map_err(|e| format!("cannot read secret `{name}` from Secrets Manager: {}", sdk_line(&e)))?;
        let text = out
            .secret_string()
            .ok_or_else(|| format!("secret `{name}` has no SecretString (a binary secret?); sluice reads a JSON object of environment variables"))?;
        values.extend(secret_variables(&name, text)?);
    }
    Ok(values)
}

/// The environment variables one secret's text holds.
fn secret_variables(name: &str, text: &str) -> Result<Vec<(String, String)>, String> {
    let map: serde_json::Map<String, Value> = serde_json::from_str(text).map_err(|_| {
        format!("secret `{name}` is not a JSON object; store the variables as {{\"DATABASE_URL\": \"postgres://…\", \"API_KEY\": \"…\"}}")
    })?;
    let mut vars = Vec::new();
    for (k, v) in &map {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(format!(
                    "secret `{name}`: the value of `{k}` is not a string, number or boolean"
                ))
            }
        };
        vars.push((k.clone(), text));
    }
    // The shape Secrets Manager gives RDS credentials: one connection, as a URL.
    let field = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let is_rds = ["host", "username", "password"].iter().all(|k| field(k).is_some());
    if is_rds && field("DATABASE_URL").is_none() {
        if let Some(engine) = field("engine").filter(|e| !e.starts_with("postgres")) {
            return Err(format!(
                "secret `{name}` is an RDS secret for engine `{engine}`; sluice loads into PostgreSQL"
            ));
        }
        let enc = |t: &str| percent_encoding::utf8_percent_encode(t, percent_encoding::NON_ALPHANUMERIC).to_string();
        let (host, user, password) = (
            field("host").unwrap_or_default(),
            field("username").unwrap_or_default(),
            field("password").unwrap_or_default(),
        );
        let url = format!(
            "postgres://{}:{}@{host}:{}/{}",
            enc(user),
            enc(password),
            field("port").unwrap_or("5432"),
            enc(field("dbname").unwrap_or("postgres")),
        );
        vars.push(("DATABASE_URL".into(), url));
    }
    Ok(vars)
}

/// One line for an AWS SDK error: the service's code and message, or what kept the
/// request from being answered, never the SDK's debug text.
fn sdk_line<E, R>(e: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> String
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_secretsmanager::error::SdkError;
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            format!(
                "{}{}",
                err.code().unwrap_or("an error"),
                err.message()
                    .map(|m| format!(": {}", crate::util::clip(m, 200)))
                    .unwrap_or_default()
            )
        }
        _ => crate::stage::s3::unanswered(
            e,
            "Secrets Manager",
            "a function in private subnets needs a Secrets Manager endpoint or a NAT",
            "check the function's role",
        ),
    }
}

/// The handler: the specs (or why there are none), the deadline reserve and when the
/// secrets were last read.
pub(crate) struct Handler {
    specs: Result<Vec<Pipeline>, String>,
    reserve: Option<Duration>,
    /// How long secrets read are used before they are read again.
    ttl: Duration,
    /// When the secrets were read last; none until a read succeeds.
    secrets_read: tokio::sync::Mutex<Option<Instant>>,
    /// The pipeline and step this function was deployed for (`SLUICE_PIPELINE`,
    /// `SLUICE_FUNCTION`), when the template says.
    serves: Option<String>,
    function: Option<String>,
}

impl Handler {
    /// Cold start: compile the bundled specs and read the secrets. Specs that do not
    /// compile fail every invocation with their problems; secrets that cannot be read
    /// are read again by the next invocation (a secret created or fixed meanwhile).
    pub(crate) async fn cold_start() -> Handler {
        let specs = load_specs(&specs_path());
        if let Err(e) = &specs {
            tracing::error!(error = %e, "cold start failed; every invocation will fail");
        }
        let duration = |var: &str| {
            std::env::var(var)
                .ok()
                .and_then(|t| crate::spec::units::Duration::parse(&t).ok())
                .map(|d| d.0)
        };
        let handler = Handler {
            reserve: duration(RESERVE_VAR),
            ttl: duration(SECRETS_TTL_VAR).unwrap_or(DEFAULT_SECRETS_TTL),
            secrets_read: tokio::sync::Mutex::new(None),
            serves: std::env::var(super::PIPELINE_VAR).ok(),
            function: std::env::var(super::FUNCTION_VAR).ok(),
            specs,
        };
        if let (Ok(specs), Ok(_)) = (&handler.specs, handler.fresh_secrets(false).await) {
            tracing::info!(specs = specs.len(), "cold start: specs compiled, secrets read");
        }
        handler
    }

    /// Read the secrets when they never were, are older than the TTL, or `again`; true
    /// when their values changed.
    async fn fresh_secrets(&self, again: bool) -> Result<bool, Failure> {
        let mut read = self.secrets_read.lock().await;
        if !again && read.is_some_and(|at| at.elapsed() < self.ttl) {
            return Ok(false);
        }
        match read_secrets().await {
            Ok(values) => {
                *read = Some(Instant::now());
                Ok(crate::resolve::set_overlay(values))
            }
            Err(message) => {
                // Logged once, as the invocation's failure.
                Err(Failure {
                    kind: "Sluice.Secrets",
                    message,
                })
            }
        }
    }

    fn pipeline(&self, name: &str) -> Result<&Pipeline, Failure> {
        let specs = self.specs.as_ref().map_err(|e| Failure {
            kind: "Sluice.ColdStart",
            message: e.clone(),
        })?;
        specs.iter().find(|p| p.name() == name).ok_or_else(|| {
            let known: Vec<String> = specs.iter().map(|p| format!("`{}`", p.name())).collect();
            Failure::bad_event(format!(
                "no bundled spec defines pipeline `{name}`; the package has {}",
                known.join(", ")
            ))
        })
    }

    /// A function deployed for one pipeline serves only that pipeline's events, and a
    /// load function (whose role may not write staging) no extraction.
    fn serves_event(&self, p: &Pipeline, step: Step) -> Result<(), Failure> {
        if let Some(own) = self.serves.as_deref().filter(|own| *own != p.name()) {
            return Err(Failure::bad_event(format!(
                "this function serves pipeline `{own}`; send events of pipeline `{}` to its own functions",
                p.name()
            )));
        }
        if self.function.as_deref() == Some(LOAD_STEP) && step != Step::Load {
            return Err(Failure::bad_event(format!(
                "this is the load function of pipeline `{}`, whose role may not write staging; send \"{}\" events to its extract function",
                p.name(),
                step.name()
            )));
        }
        Ok(())
    }

    /// The pipeline and run a landed manifest stands for, checked against the staging
    /// location the spec resolves to.
    fn manifest_run(&self, bucket: &str, key: &str, secrets: &Secrets) -> Result<(&Pipeline, String), Failure> {
        let (dir, file) = key.rsplit_once('/').unwrap_or(("", key));
        let (before, last) = dir.rsplit_once('/').unwrap_or(("", dir));
        let run_id = file.strip_suffix(".json").unwrap_or_default();
        if last != super::MANIFESTS || !crate::spec::pipeline::is_run_id(run_id) {
            return Err(Failure::bad_event(format!(
                "s3://{bucket}/{key} is not a manifest (…/<pipeline>/{}/<run id>.json)",
                super::MANIFESTS
            )));
        }
        let name = before.rsplit('/').next().unwrap_or_default();
        let p = self.pipeline(name)?;
        let resolved =
            crate::resolve::resolve(p, Needs::STAGING, secrets).map_err(|e| run_failure(&e.into(), secrets))?;
        let location = &resolved.staging().location;
        let (want_bucket, prefix) = StagingLocation::parse(location)
            .ok()
            .and_then(StagingLocation::s3)
            .unwrap_or_default();
        let prefix = prefix.trim_matches('/');
        let expected = match prefix {
            "" => crate::stage::manifest_key(p.name(), run_id),
            _ => format!("{prefix}/{}", crate::stage::manifest_key(p.name(), run_id)),
        };
        if want_bucket != bucket || expected != key {
            return Err(Failure::bad_event(format!(
                "s3://{bucket}/{key} is not in the staging location of pipeline `{name}` ({location})",
            )));
        }
        Ok((p, run_id.to_string()))
    }

    /// Serve one invocation. One that fails is made once more when the secrets, read
    /// again, have changed (a rotated password, a fixed key).
    pub(crate) async fn handle(&self, event: &Value, deadline: Option<Instant>) -> Result<Value, Failure> {
        let invocation = parse_event(event)?;
        self.fresh_secrets(false).await?;
        match self.serve(&invocation, deadline).await {
            Err(f) if !matches!(f.kind, "Sluice.BadEvent" | "Sluice.Deadline" | "Sluice.ColdStart") => {
                let again = self.fresh_secrets(true).await.unwrap_or_else(|e| {
                    tracing::warn!(error = %e.message, "cannot read the secrets again after the failure");
                    false
                });
                if again {
                    tracing::warn!(error = %f.message, "the secrets changed since they were read; trying again with the new ones");
                    return self.serve(&invocation, deadline).await;
                }
                Err(f)
            }
            done => done,
        }
    }

    async fn serve(&self, invocation: &Invocation, deadline: Option<Instant>) -> Result<Value, Failure> {
        let secrets = Secrets::default();
        let (p, step, resources, run_id, resume, backfill) = match invocation {
            Invocation::Step {
                pipeline,
                step,
                resources,
                run_id,
                resume,
                backfill,
            } => (
                self.pipeline(pipeline)?,
                *step,
                resources.clone(),
                run_id.clone(),
                resume.clone(),
                backfill.clone(),
            ),
            Invocation::Manifest { bucket, key } => {
                let (p, run) = self.manifest_run(bucket, key, &secrets)?;
                (p, Step::Load, Vec::new(), Some(run), None, None)
            }
        };
        self.serves_event(p, step)?;
        if let (Step::Windows, Some((b, _))) = (step, &backfill) {
            return windows(p, b, &secrets);
        }
        on_lambda_targets(p, step, &secrets)?;
        let deadline = deadline.map(|at| {
            let left = at.saturating_duration_since(Instant::now());
            Deadline {
                at,
                reserve: self.reserve.unwrap_or(MAX_RESERVE.min(left / 4)),
            }
        });
        tracing::info!(pipeline = p.name(), step = step.name(), "invocation started");
        let opts = match (&backfill, &run_id) {
            (Some((b, Some(window))), Some(run_id)) => ExtractOptions {
                deadline,
                ..b.round(p, *window, run_id).map_err(|e| run_failure(&e, &secrets))?
            },
            _ => ExtractOptions {
                resources,
                deadline,
                resume: resume.map(Some),
                ..Default::default()
            },
        };
        let summary = match step {
            Step::Extract => match crate::run::extract(p, &opts, &secrets).await {
                Ok(report) => json!({
                    "pipeline": p.name(),
                    "step": "extract",
                    "status": "done",
                    "run_id": report.run.run_id,
                    "extracted": extract_summary(&report),
                }),
                Err(e) => return continued(p, "extract", e, &secrets),
            },
            Step::Load => {
                if let Some(left) = deadline.and_then(|d| d.too_close()) {
                    return Err(Failure {
                        kind: "Sluice.Deadline",
                        message: format!(
                            "pipeline `{}`: not starting the load with {} ms left before the invocation deadline",
                            p.name(),
                            left.as_millis()
                        ),
                    });
                }
                let which = run_id.map(RunSelector::Id).unwrap_or(RunSelector::Latest);
                match crate::run::load(p, &which, crate::load::LoadOptions::default(), &secrets).await {
                    Ok(report) => json!({"pipeline": p.name(), "step": "load", "loaded": load_summary(&report)}),
                    // S3 delivers an event at least once: a second one is not a failure.
                    Err(crate::run::RunError::Load(crate::load::LoadError::AlreadyLoaded { run_id, at })) => {
                        tracing::info!(run_id = %run_id, at = %at, "the run was loaded already; nothing to do");
                        json!({"pipeline": p.name(), "step": "load", "already_loaded": {"run_id": run_id, "at": at}})
                    }
                    // A retry or a redrive of an older run: loading it would go back in time.
                    Err(crate::run::RunError::Load(crate::load::LoadError::Superseded(s))) => {
                        let message = secrets.mask(&s.to_string());
                        tracing::warn!("{message}");
                        json!({"pipeline": p.name(), "step": "load", "superseded": {"run_id": s.run_id, "by": s.newer, "message": message}})
                    }
                    Err(e) => return Err(run_failure(&e, &secrets)),
                }
            }
            Step::Windows => unreachable!("answered above"),
            Step::Run => {
                let (extracted, loaded) = match crate::run::run(p, &opts, &secrets).await {
                    Ok(done) => done,
                    Err(e) => return continued(p, "run", e, &secrets),
                };
                json!({
                    "pipeline": p.name(),
                    "step": "run",
                    "status": "done",
                    "run_id": extracted.run.run_id,
                    "extracted": extract_summary(&extracted),
                    "loaded": load_summary(&loaded),
                })
            }
        };
        Ok(summary)
    }
}

/// The windows of backfill `b`, in order, each as the event that extracts it (as the run
/// it names: their ids sort in window order).
fn windows(p: &Pipeline, b: &crate::run::Backfill, secrets: &Secrets) -> Result<Value, Failure> {
    let rounds = b.rounds(p, &crate::run::RunInfo::new()).map_err(|e| Failure {
        kind: "Sluice.BadEvent",
        message: secrets.mask(&e.to_string()),
    })?;
    tracing::info!(pipeline = p.name(), from = %b.from, to = %b.to, windows = rounds.len(), "backfill cut into windows");
    let events: Vec<Value> = rounds
        .iter()
        .map(|r| {
            json!({
                "pipeline": p.name(),
                "step": "extract",
                "backfill": {"from": b.from, "to": b.to},
                "window": r.index,
                "run_id": r.run_id,
            })
        })
        .collect();
    Ok(json!({"pipeline": p.name(), "step": "windows", "windows": events}))
}

/// On Lambda, staging is S3 and the warehouse a server: a folder or an SQLite file would
/// vanish with the sandbox. Checked before any work.
fn on_lambda_targets(p: &Pipeline, step: Step, secrets: &Secrets) -> Result<(), Failure> {
    let needs = match step {
        // Incremental state is in the warehouse: extraction reads it too.
        Step::Extract if p.resources().iter().all(|r| r.incremental.is_none()) => Needs::STAGING,
        _ => Needs::LOAD,
    };
    let resolved = crate::resolve::resolve(p, needs, secrets).map_err(|e| run_failure(&e.into(), secrets))?;
    let target = |message: String| Failure {
        kind: "Sluice.Config",
        message: secrets.mask(&format!("pipeline `{}`: {message}", p.name())),
    };
    let location = &resolved.staging().location;
    if !StagingLocation::is_s3(location) {
        return Err(target(format!(
            "staging resolves to `{location}`; on AWS Lambda staging must be an S3 location (s3://bucket/prefix), set by the function's environment"
        )));
    }
    if needs.warehouse && crate::load::dialect_of(resolved.warehouse_url()) == crate::load::ddl::Dialect::Sqlite {
        let var = p
            .warehouse()
            .url
            .vars()
            .first()
            .map(|v| v.to_string())
            .unwrap_or_default();
        return Err(target(format!(
            "the warehouse resolves to an SQLite file, which would vanish with the Lambda sandbox; put the PostgreSQL URL in the secret as `{var}`"
        )));
    }
    Ok(())
}

/// An extraction the deadline stopped at a page boundary, checkpointed: the answer says
/// to go on (`{"status": "continue", "run_id": …}`, invoked again with `"resume"`);
/// any other error is the invocation's failure.
fn continued(p: &Pipeline, step: &str, e: crate::run::RunError, secrets: &Secrets) -> Result<Value, Failure> {
    match e {
        crate::run::RunError::Suspended {
            run_id, records, parts, ..
        } => {
            tracing::info!(run_id = %run_id, records, parts, "stopped before the deadline, checkpointed: invoke again with \"resume\" to go on");
            Ok(json!({
                "pipeline": p.name(),
                "step": step,
                "status": "continue",
                "run_id": run_id,
                "staged": {"records": records, "parts": parts},
            }))
        }
        e => Err(run_failure(&e, secrets)),
    }
}

fn run_failure(e: &crate::run::RunError, secrets: &Secrets) -> Failure {
    let kind = match e {
        crate::run::RunError::Extract(crate::extract::ExtractError::Deadline { .. })
        | crate::run::RunError::ResourcesFailed { deadline: true, .. } => "Sluice.Deadline",
        crate::run::RunError::Env(_) | crate::run::RunError::Preflight { .. } => "Sluice.Config",
        // Another pipeline's manifest: no retry makes it this one's.
        crate::run::RunError::Load(crate::load::LoadError::Foreign { .. }) => "Sluice.BadEvent",
        _ => "Sluice.RunFailed",
    };
    Failure {
        kind,
        message: secrets.mask(&crate::util::error_chain(e)),
    }
}

fn extract_summary(r: &crate::run::ExtractReport) -> Value {
    json!({
        "run_id": r.run.run_id,
        "location": r.location,
        "manifest": r.manifest_key,
        "resources": r.manifest.resources.iter().map(|res| {
            let (records, bytes) = crate::run::object_totals(&res.objects);
            json!({"name": res.name, "pages": res.pages, "records": records, "objects": res.objects.len(), "bytes": bytes})
        }).collect::<Vec<_>>(),
    })
}

fn load_summary(r: &crate::load::LoadReport) -> Value {
    json!({
        "run_id": r.run_id,
        "target": r.target,
        "tables": r.tables.iter().map(|t| json!({
            "resource": t.resource,
            "table": t.table,
            "records": t.records,
            "rows": t.rows,
            "inserted": t.inserted,
            "updated": t.updated,
            "deleted": t.deleted,
            "rejected": t.rejected,
            "seconds": (t.seconds * 1000.0).round() / 1000.0,
        })).collect::<Vec<_>>(),
    })
}

/// The CloudWatch metrics (EMF lines) of a successful invocation's summary: per
/// resource records, pages and bytes extracted, per table rows written, and per
/// pipeline the seconds taken and, for a load, one more run loaded.
fn metrics(summary: &Value, took: Duration) -> Vec<Value> {
    use super::logs::metric_line;
    let Some(pipeline) = summary["pipeline"].as_str() else {
        return Vec::new();
    };
    let number = |v: &Value| v.as_f64().unwrap_or(0.0);
    let mut lines = Vec::new();
    for r in summary["extracted"]["resources"].as_array().into_iter().flatten() {
        lines.push(metric_line(
            pipeline,
            r["name"].as_str(),
            &[
                ("Records", "Count", number(&r["records"])),
                ("Pages", "Count", number(&r["pages"])),
                ("Bytes", "Bytes", number(&r["bytes"])),
            ],
        ));
    }
    let tables = summary["loaded"]["tables"].as_array();
    for t in tables.into_iter().flatten() {
        lines.push(metric_line(
            pipeline,
            t["resource"].as_str(),
            &[
                ("Rows", "Count", number(&t["rows"])),
                ("Rejected", "Count", number(&t["rejected"])),
            ],
        ));
    }
    let step = summary["step"].as_str().unwrap_or_default();
    let mut figures = vec![("Seconds", "Seconds", took.as_secs_f64())];
    if tables.is_some() {
        figures.push((super::logs::RUNS_LOADED, "Count", 1.0));
    }
    let mut line = metric_line(pipeline, None, &figures);
    line["Step"] = json!(step);
    lines.push(line);
    lines
}

/// The instant of a Lambda deadline given in milliseconds since the epoch.
fn deadline_instant(deadline_ms: u64) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
}

/// Run the Runtime API loop until the runtime ends it. Outside Lambda, an error naming
/// the missing environment instead.
pub(crate) async fn serve() -> Result<(), String> {
    let missing: Vec<&str> = [
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
    ]
    .into_iter()
    .filter(|v| std::env::var_os(v).is_none())
    .collect();
    if !missing.is_empty() {
        return Err(format!(
            "`sluice lambda` is the bootstrap of an AWS Lambda function and runs inside one; {} not set (use `sluice run` elsewhere)",
            missing.join(", ")
        ));
    }
    if std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").is_ok_and(|m| m.parse::<i32>().is_err()) {
        return Err("AWS_LAMBDA_FUNCTION_MEMORY_SIZE is not a number".into());
    }
    // Each failure is logged once, whole, as its invocation's.
    crate::util::report_whole_errors();
    let handler = Arc::new(Handler::cold_start().await);
    let cold = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let service = lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<Value>| {
        let (handler, cold) = (handler.clone(), cold.clone());
        async move {
            let request_id = event.context.request_id.clone();
            super::logs::serving(&request_id, cold.swap(false, std::sync::atomic::Ordering::Relaxed));
            let started = Instant::now();
            let deadline = deadline_instant(event.context.deadline);
            let result = handler.handle(&event.payload, deadline).await;
            if let Ok(summary) = &result {
                super::logs::emit(&metrics(summary, started.elapsed()));
            }
            match &result {
                Ok(_) => tracing::info!(seconds = started.elapsed().as_secs_f64(), "invocation succeeded"),
                Err(f) => tracing::error!(error_type = f.kind, error = %f.message, "invocation failed"),
            }
            result.map_err(lambda_runtime::Diagnostic::from)
        }
    });
    lambda_runtime::run(service).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_of_every_kind_are_read() {
        let direct = json!({"pipeline": "coincap", "step": "extract", "resources": ["exchanges"]});
        assert_eq!(
            parse_event(&direct).unwrap(),
            Invocation::Step {
                pipeline: "coincap".into(),
                step: Step::Extract,
                resources: vec!["exchanges".into()],
                run_id: None,
                resume: None,
                backfill: None
            }
        );
        let window = json!({"pipeline": "r", "step": "extract", "backfill": {"from": "2023-01-01", "to": "2023-12-31"}, "window": 4, "run_id": "20230101T000000Z-000004"});
        let Invocation::Step {
            backfill: Some((b, Some(4))),
            run_id: Some(run_id),
            ..
        } = parse_event(&window).unwrap()
        else {
            panic!("a window event")
        };
        assert_eq!(
            (b.from.as_str(), b.to.as_str(), run_id.as_str()),
            ("2023-01-01", "2023-12-31", "20230101T000000Z-000004")
        );
        let s3 = json!({"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "lake"}, "object": {"key": "sluice/my+pipe/_manifests/x%2By.json"}}}]});
        assert_eq!(
            parse_event(&s3).unwrap(),
            Invocation::Manifest {
                bucket: "lake".into(),
                key: "sluice/my pipe/_manifests/x+y.json".into()
            }
        );
        let eb = json!({"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "lake"}, "object": {"key": "a/b/_manifests/c.json"}}});
        assert!(matches!(parse_event(&eb).unwrap(), Invocation::Manifest { .. }));
        for (bad, says) in [
            (
                json!({"pipeline": "x", "step": "load", "resources": ["a"]}),
                "a load takes",
            ),
            (
                json!({"pipeline": "x", "step": "extract", "run_id": "r"}),
                "`run_id` is for step",
            ),
            (json!({"pipeline": "x", "step": "sing"}), "must be \"extract\""),
            (
                json!({"pipeline": "x", "step": "run", "limit": 3}),
                "unknown event field `limit`",
            ),
            (json!([1]), "not an object"),
            (json!({"pipeline": "x", "step": "windows"}), "need `backfill`"),
            (
                json!({"pipeline": "x", "step": "windows", "backfill": {"from": "2023-01-01"}}),
                "`backfill` must be",
            ),
            (
                json!({"pipeline": "x", "step": "extract", "backfill": {"from": "2023-01-01", "to": "2023-02-01"}, "window": 0}),
                "give its `run_id`",
            ),
            (
                json!({"pipeline": "x", "step": "load", "backfill": {"from": "2023-01-01", "to": "2023-02-01"}}),
                "`backfill` is for step",
            ),
        ] {
            let f = parse_event(&bad).unwrap_err();
            assert_eq!(f.kind, "Sluice.BadEvent");
            assert!(f.message.contains(says), "{}", f.message);
        }
    }

    #[test]
    fn a_pipelines_function_serves_only_its_own_events() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/coincap.yaml")).unwrap();
        let coincap = crate::spec::compile_text("coincap.yaml", &text).unwrap();
        let other = crate::spec::compile_text("other.yaml", &text.replace("name: coincap\n", "name: other\n")).unwrap();
        let handler = |serves: &str, function: &str| Handler {
            specs: Ok(vec![]),
            reserve: None,
            ttl: DEFAULT_SECRETS_TTL,
            secrets_read: tokio::sync::Mutex::new(None),
            serves: Some(serves.into()),
            function: Some(function.into()),
        };
        let load = handler("coincap", "load");
        assert!(load.serves_event(&coincap, Step::Load).is_ok());
        for step in [Step::Extract, Step::Run] {
            let f = load.serves_event(&coincap, step).unwrap_err();
            assert_eq!(f.kind, "Sluice.BadEvent");
            assert!(
                f.message.contains("load function of pipeline `coincap`"),
                "{}",
                f.message
            );
        }
        let extract = handler("coincap", "extract");
        for step in [Step::Extract, Step::Run, Step::Load] {
            assert!(extract.serves_event(&coincap, step).is_ok());
        }
        let f = extract.serves_event(&other, Step::Extract).unwrap_err();
        assert!(
            f.message.contains("this function serves pipeline `coincap`"),
            "{}",
            f.message
        );
    }

    #[test]
    fn rds_secrets_become_one_database_url() {
        let rds = r#"{"engine": "postgres", "host": "db.example.com", "port": 5433, "username": "loader",
                      "password": "p@ss word/:?", "dbname": "analytics", "dbInstanceIdentifier": "db-1"}"#;
        let vars: HashMap<String, String> = secret_variables("rds", rds).unwrap().into_iter().collect();
        assert_eq!(
            vars["DATABASE_URL"],
            "postgres://loader:p%40ss%20word%2F%3A%3F@db.example.com:5433/analytics"
        );
        let url = url::Url::parse(&vars["DATABASE_URL"]).unwrap();
        let password = url::form_urlencoded::parse(format!("p={}", url.password().unwrap()).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned());
        assert_eq!(password.as_deref(), Some("p@ss word/:?"));
        assert_eq!(vars["port"], "5433", "numbers are variables too");
        // A URL of its own wins; another engine is refused; nested values are refused.
        let own = r#"{"host": "h", "username": "u", "password": "p", "DATABASE_URL": "postgres://x/y"}"#;
        let vars: HashMap<String, String> = secret_variables("own", own).unwrap().into_iter().collect();
        assert_eq!(vars["DATABASE_URL"], "postgres://x/y");
        let mysql = r#"{"engine": "mysql", "host": "h", "username": "u", "password": "p"}"#;
        assert!(secret_variables("m", mysql).unwrap_err().contains("engine `mysql`"));
        let nested = r#"{"A": {"b": 1}}"#;
        assert!(secret_variables("n", nested)
            .unwrap_err()
            .contains("the value of `A` is not a string, number or boolean"));
        assert!(secret_variables("t", "hunter2")
            .unwrap_err()
            .contains("is not a JSON object"));
    }

    #[test]
    fn another_pipelines_manifest_is_a_bad_event_with_secrets_masked() {
        let secrets = Secrets::default();
        secrets.add("hunter2-secret");
        let e = crate::run::RunError::Load(crate::load::LoadError::Foreign {
            key: "ours/_manifests/r.json".into(),
            pipeline: "ours".into(),
            detail: "it is a manifest of pipeline `other` (hunter2-secret)".into(),
        });
        let f = run_failure(&e, &secrets);
        assert_eq!(f.kind, "Sluice.BadEvent");
        assert!(
            f.message.contains("only by its own pipeline") && !f.message.contains("hunter2"),
            "{}",
            f.message
        );
    }
}
