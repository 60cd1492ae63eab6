//! Load: staged raw records → typed rows in PostgreSQL, in one transaction per run.
//!
//! Each resource's staged objects are streamed (gzip JSON lines → mapped rows → binary
//! COPY) into temporary tables; rows of nested tables are spilled to disk meanwhile, since
//! one connection runs one COPY at a time. The write mode then moves rows into the real
//! tables, and the ledger row is written in the same transaction, so a failure anywhere
//! leaves every table as it was. This module holds the run and the ledger; the rest is by
//! responsibility: `schema` (sync and preflight), `mapper` (objects → rows), `copy` (one
//! resource's COPY and write modes), `merge` (upserts, replaced nested rows), `state`
//! (incremental state). Only `load` calls into tokio-postgres.

pub mod connect;
mod copy;
pub mod ddl;
pub mod map;
mod mapper;
mod merge;
mod schema;
pub mod state;
pub mod wire;

pub use schema::preflight;

use chrono::{DateTime, Utc};

use crate::spec::pipeline::Pipeline;
use crate::stage::manifest::ObjectManifest;
use crate::stage::{Manifest, StageError, Staging};
use crate::util::Secrets;
use map::RunMeta;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Connect(String),
    #[error("run `{run_id}` was already loaded (at {at}); loading it again would duplicate rows. Use --force to load it anyway")]
    AlreadyLoaded { run_id: String, at: String },
    #[error("the live tables differ from the spec, so nothing was loaded:\n  {}", problems.join("\n  "))]
    SchemaDrift { problems: Vec<String> },
    #[error("{0}; the load was rolled back")]
    Record(Box<BadRecord>),
    #[error("resource `{resource}`: {}; nothing was loaded", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Unmatched {
        resource: String,
        problems: Vec<map::Unmatched>,
    },
    #[error("resource `{resource}`: staged object `{object}` {detail}; it was changed after extraction, so the run was refused and nothing was loaded")]
    Tampered {
        resource: String,
        object: String,
        detail: String,
    },
    #[error("{action}: {message}")]
    Db { action: String, message: String },
    #[error("{0}")]
    Stage(#[from] StageError),
    #[error("staged run `{run_id}` has no manifest, so it is incomplete and cannot be loaded")]
    Incomplete { run_id: String },
    #[error("there is no staged run `{run_id}` of `{pipeline}` in {location}; {}", if latest.is_empty() { "it holds no complete run yet (`sluice extract` stages one)".to_string() } else { format!("the latest complete runs are: {}", latest.join(", ")) })]
    NoSuchRun {
        run_id: String,
        pipeline: String,
        location: String,
        /// Newest first.
        latest: Vec<String>,
    },
    #[error("{0}")]
    Io(String),
    #[error("the extraction failed, so nothing was loaded: {0}")]
    ExtractFailed(String),
}

/// The server's message (and detail) of a database error, else the error chain.
pub(crate) fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => match d.detail() {
            Some(detail) => format!("{} ({detail})", d.message()),
            None => d.message().to_string(),
        },
        None => crate::util::error_chain(e),
    }
}

fn db(action: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> LoadError {
    let action = action.into();
    move |e| LoadError::Db {
        action,
        message: pg_message(&e),
    }
}

/// A record whose value does not fit its column.
#[derive(Debug, Clone, thiserror::Error)]
#[error("resource `{resource}`, object `{object}`, record {record}: column `{column}` of table `{table}`: {reason} (value {value})")]
pub struct BadRecord {
    pub resource: String,
    pub object: String,
    pub record: u64,
    pub table: String,
    pub column: String,
    pub value: String,
    pub reason: String,
}

/// Counts of one table's load.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TableStats {
    pub resource: String,
    pub table: String,
    pub records: u64,
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Merged nested tables: rows of a loaded parent that its record no longer holds.
    pub deleted: u64,
    pub rejected: u64,
    pub seconds: f64,
    /// Per column read from a path: the rows in which the path matched.
    pub matched: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug)]
pub struct LoadReport {
    pub run_id: String,
    pub target: String,
    pub tables: Vec<TableStats>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    pub force: bool,
}

/// Where a load finds the staged objects of a resource.
pub enum ObjectFeed {
    /// All of them, from a complete run's manifest.
    Listed(Vec<ObjectManifest>),
    /// One by one as they are written, by an extraction still running; the channel closes
    /// when the resource is done.
    Live(tokio::sync::mpsc::UnboundedReceiver<ObjectManifest>),
}

/// A run to load: its identity and, per resource, its staged objects.
pub struct RunFeed {
    pub run_id: String,
    pub run_time: Option<String>,
    pub extracted_at: String,
    pub spec_hash: String,
    pub resources: Vec<(String, ObjectFeed)>,
    /// Per incremental resource, the highest cursor of the run (from its manifest).
    pub highest: Vec<(String, String)>,
    /// For a run still being extracted: the extraction's outcome (its highest cursors),
    /// awaited before the load commits, so that a failed extraction loads nothing.
    pub extraction: Option<tokio::sync::oneshot::Receiver<ExtractionOutcome>>,
}

/// How the extraction a live load waits for ended: the highest incremental cursor of each
/// resource, or the error.
pub type ExtractionOutcome = Result<Vec<(String, String)>, String>;

impl RunFeed {
    /// A complete, manifested run.
    pub fn from_manifest(m: &Manifest) -> Self {
        RunFeed {
            run_id: m.run_id.clone(),
            run_time: m.run_time.clone(),
            extracted_at: m.started_at.clone(),
            spec_hash: m.spec_hash.clone(),
            resources: m
                .resources
                .iter()
                .map(|r| (r.name.clone(), ObjectFeed::Listed(r.objects.clone())))
                .collect(),
            highest: m.highest(),
            extraction: None,
        }
    }
}

/// The advisory lock key under which sluice creates its ledger.
const LEDGER_LOCK: i64 = 0x511C_EDD1;

/// The ledger and rejects tables.
const LEDGER_DDL: &str = r#"
CREATE SCHEMA IF NOT EXISTS "_sluice";
CREATE TABLE IF NOT EXISTS "_sluice"."runs" (
    "load_id" bigserial PRIMARY KEY,
    "pipeline" text NOT NULL,
    "run_id" text NOT NULL,
    "spec_hash" text NOT NULL,
    "extracted_at" timestamp with time zone,
    "started_at" timestamp with time zone NOT NULL,
    "finished_at" timestamp with time zone,
    "status" text NOT NULL,
    "error" text,
    "resources" jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS "runs_pipeline_run_id" ON "_sluice"."runs" ("pipeline", "run_id");
CREATE TABLE IF NOT EXISTS "_sluice"."rejects" (
    "pipeline" text NOT NULL,
    "run_id" text NOT NULL,
    "resource" text NOT NULL,
    "table_name" text NOT NULL,
    "object_key" text NOT NULL,
    "record_number" bigint NOT NULL,
    "column_name" text NOT NULL,
    "value" text,
    "reason" text NOT NULL,
    "record" jsonb,
    "rejected_at" timestamp with time zone NOT NULL DEFAULT now()
);
"#;

/// Load one staged run.
pub async fn load_run(
    p: &Pipeline,
    warehouse_url: &str,
    store: &impl Staging,
    feed: RunFeed,
    opts: LoadOptions,
    secrets: &Secrets,
) -> Result<LoadReport, LoadError> {
    let run_id = feed.run_id.clone();
    let (mut client, target) = connect::connect(warehouse_url, secrets).await?;
    // DDL of a fresh database races between concurrent first runs (CREATE ... IF NOT
    // EXISTS is not safe against a concurrent creator): every DDL sluice runs is done
    // under an advisory lock, so the second run waits and then finds what the first made.
    let ddl = client.transaction().await.map_err(db("begin the ledger set-up"))?;
    ddl.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({LEDGER_LOCK}); {LEDGER_DDL} {}",
        state::DDL
    ))
    .await
    .map_err(db("create the _sluice ledger"))?;
    ddl.commit().await.map_err(db("create the _sluice ledger"))?;
    // Nested rows wait in spill files in a folder of this load's own, removed when it
    // ends; what killed loads left is removed first.
    let tmp = std::env::temp_dir();
    crate::util::sweep_orphans(&tmp);
    let spill = crate::util::temp_dir()
        .map_err(|e| LoadError::Io(format!("create a spill folder in {}: {e}", tmp.display())))?;
    let started = Utc::now();
    let result = load_in_transaction(p, store, feed, opts, &mut client, started, spill.path()).await;
    if let Err(e) = &result {
        // The data transaction rolled back; record the failure on its own.
        if !matches!(e, LoadError::AlreadyLoaded { .. }) {
            let message = secrets.mask(&e.to_string());
            let _ = client
                .execute(
                    "INSERT INTO \"_sluice\".\"runs\" (pipeline, run_id, spec_hash, started_at, finished_at, status, error) \
                     VALUES ($1, $2, $3, $4::text::timestamptz, now(), 'failed', $5)",
                    &[&p.name(), &run_id, &p.spec_hash(), &started.to_rfc3339(), &message],
                )
                .await;
        }
    }
    Ok(LoadReport {
        run_id,
        target,
        tables: result?,
    })
}

async fn load_in_transaction(
    p: &Pipeline,
    store: &impl Staging,
    feed: RunFeed,
    opts: LoadOptions,
    client: &mut tokio_postgres::Client,
    started: DateTime<Utc>,
    spill_dir: &std::path::Path,
) -> Result<Vec<TableStats>, LoadError> {
    let tx = client.transaction().await.map_err(db("begin the load transaction"))?;
    // One load of a pipeline at a time.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('sluice:' || $1::text))",
        &[&p.name()],
    )
    .await
    .map_err(db("lock the pipeline"))?;
    let previous = tx
        .query_opt(
            "SELECT finished_at::text FROM \"_sluice\".\"runs\" WHERE pipeline = $1 AND run_id = $2 AND status = 'loaded' ORDER BY load_id DESC LIMIT 1",
            &[&p.name(), &feed.run_id],
        )
        .await
        .map_err(db("read the ledger"))?;
    if let (Some(row), false) = (previous, opts.force) {
        return Err(LoadError::AlreadyLoaded {
            run_id: feed.run_id.clone(),
            at: row.get::<_, Option<String>>(0).unwrap_or_default(),
        });
    }
    if feed.spec_hash != p.spec_hash() {
        tracing::warn!(run_id = %feed.run_id, "the spec changed since this run was extracted; loading with the current mapping");
    }
    schema::sync_schema(&tx, p).await?;
    tx.batch_execute("SET CONSTRAINTS ALL DEFERRED")
        .await
        .map_err(db("defer constraints"))?;
    let run_time = feed
        .run_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(started);
    let meta = RunMeta {
        run_id: feed.run_id.clone(),
        run_time,
        pipeline: p.name().to_string(),
    };
    let mut stats = Vec::new();
    for (name, objects) in feed.resources {
        let Some(resource) = p.resource(&name) else {
            tracing::warn!(resource = %name, "the run staged a resource the spec no longer has; skipped");
            continue;
        };
        if resource.tables.is_empty() {
            // Only staged for the requests of a `for_each`.
            continue;
        }
        stats.extend(copy::load_resource(&tx, p, store, resource, objects, &meta, spill_dir).await?);
    }
    let mut highest = feed.highest;
    if let Some(extraction) = feed.extraction {
        // Loaded while it was extracted: commit only a run that was extracted whole.
        match extraction.await {
            Ok(Ok(h)) => highest = h,
            Ok(Err(e)) => return Err(LoadError::ExtractFailed(e)),
            Err(_) => return Err(LoadError::ExtractFailed("the extraction stopped".into())),
        }
    }
    // The incremental state moves with the data, in the same transaction.
    state::advance(&tx, p, &feed.run_id, &highest).await?;
    let resources = serde_json::to_string(&stats).expect("stats serialize");
    tx.execute(
        "INSERT INTO \"_sluice\".\"runs\" (pipeline, run_id, spec_hash, extracted_at, started_at, finished_at, status, resources) \
         VALUES ($1, $2, $3, $4::text::timestamptz, $5::text::timestamptz, now(), 'loaded', $6::text::jsonb)",
        &[&p.name(), &feed.run_id, &p.spec_hash(), &feed.extracted_at, &started.to_rfc3339(), &resources],
    )
    .await
    .map_err(db("write the ledger"))?;
    tx.commit()
        .await
        .map_err(db("commit the load (deferred foreign keys are checked here)"))?;
    // Only now: before the commit, nothing was loaded yet.
    for s in &stats {
        tracing::info!(
            resource = %s.resource,
            table = %s.table,
            rows = s.rows,
            deleted = s.deleted,
            rejected = s.rejected,
            seconds = format!("{:.2}", s.seconds),
            "table loaded"
        );
    }
    Ok(stats)
}
