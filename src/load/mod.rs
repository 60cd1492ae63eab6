//! Load: staged raw records → typed rows in the warehouse (PostgreSQL or SQLite), in one
//! transaction per run.
//!
//! Each resource's staged objects are streamed (gzip JSON lines → mapped rows) into the
//! warehouse's tables, or into staging tables for a merge; the write mode then moves rows
//! into the real tables, and the ledger row is written in the same transaction, so a
//! failure anywhere leaves every table as it was. This module holds the run; the rest is
//! by responsibility: `warehouse` (the boundary), `postgres` and `sqlite` (its two sides),
//! `open` (which side a URL names), `schema` (sync and preflight), `record` (one record →
//! rows), `objects` (staged objects → rows, on several threads), `resource` (one resource
//! and its write modes), `merge` (the upsert SQL and nested rows both sides share), `state`
//! (incremental state).

pub(crate) mod connect;
pub(crate) mod ddl;
pub mod expect;
mod merge;
mod objects;
mod open;
pub mod plan;
mod postgres;
pub mod record;
mod resource;
mod schema;
mod sqlite;
pub(crate) mod state;
mod warehouse;
pub(crate) mod wire;

pub use open::dialect_of;
pub use schema::preflight;

use chrono::{DateTime, Utc};

use crate::spec::pipeline::{Pipeline, WriteMode};
use crate::stage::manifest::ObjectManifest;
use crate::stage::{Backend, Manifest, StageError};
use crate::util::Secrets;
use record::RunMeta;
use warehouse::{LedgerRow, Warehouse};

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
    #[error("{} expectation(s) failed, so the load was rolled back:\n  {}", failed.iter().filter(|f| f.severity == crate::spec::pipeline::Severity::Error).count(), failed.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Expectations { failed: Vec<expect::Failed> },
    #[error("resource `{resource}`: {}; nothing was loaded", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Unmatched {
        resource: String,
        problems: Vec<record::Unmatched>,
    },
    #[error("resource `{resource}`: staged object `{object}` {detail}; it was changed after extraction, so the run was refused and nothing was loaded")]
    Tampered {
        resource: String,
        object: String,
        detail: String,
    },
    #[error("{action}: {message}")]
    Db { action: String, message: String },
    /// Another writer held the database past the busy timeout (SQLite).
    #[error("{action}: {message}")]
    Locked { action: String, message: String },
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
    #[error("manifest `{key}` is not one of pipeline `{pipeline}`: {detail}; a manifest is loaded only by its own pipeline, so nothing was loaded")]
    Foreign {
        key: String,
        pipeline: String,
        detail: String,
    },
    #[error("{0}")]
    Superseded(Box<Superseded>),
    #[error("{0}")]
    Io(String),
    /// A load that would fail: refused before anything is read.
    #[error("{0}")]
    Refused(String),
    #[error("the extraction failed, so nothing was loaded: {0}")]
    ExtractFailed(String),
}

pub(crate) use postgres::pg_message;

/// A run refused because a newer one is loaded into the same merge or replace tables.
#[derive(Debug, Clone, thiserror::Error)]
#[error("run `{run_id}` was extracted at {extracted_at}, before run `{newer}` (extracted at {newer_extracted_at}, loaded at {newer_loaded_at}); loading it would put older records over newer ones in {}; nothing was loaded. Use --force to load it anyway", tables.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", "))]
pub struct Superseded {
    pub run_id: String,
    pub extracted_at: String,
    pub newer: String,
    pub newer_extracted_at: String,
    pub newer_loaded_at: String,
    /// The merge and replace tables both runs load.
    pub tables: Vec<String>,
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
    /// Responses of the resource an `ignore` rule held for (on its first table).
    #[serde(skip_serializing_if = "is_zero")]
    pub ignored: u64,
    /// Records a `filter` left out (on its first table).
    #[serde(skip_serializing_if = "is_zero")]
    pub filtered: u64,
    pub seconds: f64,
    /// Per column read from a path: the rows in which the path matched.
    pub matched: std::collections::BTreeMap<String, u64>,
    /// The expectations of the table that did not hold (`warn` ones, as it committed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expectations: Vec<expect::Failed>,
}

#[derive(Debug)]
pub struct LoadReport {
    pub run_id: String,
    pub target: String,
    pub tables: Vec<TableStats>,
    /// A shell command that shows the first table, when the warehouse has one.
    pub query_hint: Option<String>,
    /// A run extracted with `--limit`: its state was not moved, its replace tables skipped.
    pub limited: bool,
    /// What was not loaded, and why.
    pub skipped: Vec<String>,
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
    /// Per resource, the responses an `ignore` rule held for (from its manifest).
    pub ignored: Vec<(String, u64)>,
    /// For a run still being extracted: the extraction's outcome (its highest cursors),
    /// awaited before the load commits, so that a failed extraction loads nothing.
    pub extraction: Option<tokio::sync::oneshot::Receiver<ExtractionOutcome>>,
    /// Extracted with `--limit`: part of each resource only.
    pub limited: bool,
}

/// How the extraction a live load waits for ended: the highest incremental cursor of each
/// resource and the responses it ignored, or the error.
pub type ExtractionOutcome = Result<Extracted, String>;

/// What a finished extraction tells its load.
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    pub highest: Vec<(String, String)>,
    /// Per resource, the responses an `ignore` rule held for.
    pub ignored: Vec<(String, u64)>,
}

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
            ignored: m.ignored(),
            extraction: None,
            limited: m.limited,
        }
    }
}

/// Load one staged run.
pub async fn load_run(
    p: &Pipeline,
    warehouse_url: &str,
    store: &impl Backend,
    feed: RunFeed,
    opts: LoadOptions,
    secrets: &Secrets,
) -> Result<LoadReport, LoadError> {
    let db = open::open(warehouse_url, secrets).await?;
    open::with_warehouse!(db, w => load_into(&mut w, p, store, feed, opts, secrets).await)
}

async fn load_into<W: Warehouse>(
    w: &mut W,
    p: &Pipeline,
    store: &impl Backend,
    feed: RunFeed,
    opts: LoadOptions,
    secrets: &Secrets,
) -> Result<LoadReport, LoadError> {
    let run_id = feed.run_id.clone();
    let limited = feed.limited;
    w.create_ledger().await?;
    // What killed processes left in the temporary folder is removed first.
    crate::util::sweep_orphans(&std::env::temp_dir());
    let started = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let result = load_in_transaction(w, p, store, feed, opts, &started).await;
    if let Err(e) = &result {
        w.rollback().await;
        // The data transaction rolled back; record the failure on its own (unless the
        // database is locked by another writer: that would only wait as long again).
        if !matches!(
            e,
            LoadError::AlreadyLoaded { .. } | LoadError::Superseded(_) | LoadError::Locked { .. }
        ) {
            let message = secrets.mask(&e.to_string());
            let _ = w
                .record_run(&LedgerRow {
                    pipeline: p.name(),
                    run_id: &run_id,
                    spec_hash: p.spec_hash(),
                    extracted_at: None,
                    started_at: &started,
                    status: "failed",
                    error: Some(&message),
                    resources: "[]",
                })
                .await;
        }
    }
    let (tables, skipped) = result?;
    Ok(LoadReport {
        run_id,
        target: w.target().to_string(),
        query_hint: tables.first().and_then(|t| w.query_hint(&t.table)),
        tables,
        limited,
        skipped,
    })
}

async fn load_in_transaction<W: Warehouse>(
    w: &mut W,
    p: &Pipeline,
    store: &impl Backend,
    feed: RunFeed,
    opts: LoadOptions,
    started: &str,
) -> Result<(Vec<TableStats>, Vec<String>), LoadError> {
    // One load of a pipeline at a time.
    w.begin(p.name()).await?;
    let previous = w.loaded_at(p.name(), &feed.run_id).await?;
    if let (Some(at), false) = (previous, opts.force) {
        return Err(LoadError::AlreadyLoaded {
            run_id: feed.run_id.clone(),
            at,
        });
    }
    if !opts.force {
        refuse_older(w, p, &feed).await?;
    }
    if feed.spec_hash != p.spec_hash() {
        tracing::warn!(run_id = %feed.run_id, "the spec changed since this run was extracted; loading with the current mapping");
    }
    schema::sync_schema(w, p).await?;
    let run_time = feed
        .run_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| {
            DateTime::parse_from_rfc3339(started)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
        .unwrap_or_else(Utc::now);
    let meta = RunMeta {
        run_id: feed.run_id.clone(),
        run_time,
        pipeline: p.name().to_string(),
    };
    let mut stats = Vec::new();
    let mut skipped = Vec::new();
    for (name, objects) in feed.resources {
        let Some(resource) = p.resource(&name) else {
            tracing::warn!(resource = %name, "the run staged a resource the spec no longer has; skipped");
            continue;
        };
        if resource.tables.is_empty() {
            // Only staged for the requests of a `for_each`.
            continue;
        }
        if let (true, Some(t)) = (
            feed.limited,
            resource.tables.iter().find(|t| t.write == WriteMode::Replace),
        ) {
            // Part of the records would replace all of them.
            let why = format!(
                "resource `{name}` skipped: table `{}` is `write: replace`, and a run with --limit holds only part of its records",
                t.name
            );
            tracing::warn!("{why}");
            skipped.push(why);
            continue;
        }
        stats.extend(resource::load_resource(w, p, store, resource, objects, &meta).await?);
    }
    let (mut highest, mut ignored) = (feed.highest, feed.ignored);
    if let Some(extraction) = feed.extraction {
        // Loaded while it was extracted: commit only a run that was extracted whole.
        match extraction.await {
            Ok(Ok(x)) => (highest, ignored) = (x.highest, x.ignored),
            Ok(Err(e)) => return Err(LoadError::ExtractFailed(e)),
            Err(_) => return Err(LoadError::ExtractFailed("the extraction stopped".into())),
        }
    }
    expectations(w, p, &mut stats).await?;
    // The incremental state moves with the data, in the same transaction; a limited run
    // read only part of the window, so the next run must read it again.
    if feed.limited {
        if !highest.is_empty() {
            tracing::warn!("a run with --limit does not move the incremental state");
        }
    } else {
        state::advance(w, p, &feed.run_id, &highest).await?;
    }
    for (name, n) in ignored {
        if let Some(s) = stats.iter_mut().find(|s| s.resource == name) {
            s.ignored = n;
        }
    }
    let resources = serde_json::to_string(&stats).expect("stats serialize");
    w.record_run(&LedgerRow {
        pipeline: p.name(),
        run_id: &feed.run_id,
        spec_hash: p.spec_hash(),
        extracted_at: Some(&feed.extracted_at),
        started_at: started,
        status: if feed.limited { "limited" } else { "loaded" },
        error: None,
        resources: &resources,
    })
    .await?;
    w.commit().await?;
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
    Ok((stats, skipped))
}

/// Check the expectations of the tables loaded: an `error` one failed fails the load, the
/// `warn` ones go with their table's counts (to the ledger and the summary).
async fn expectations<W: Warehouse>(w: &mut W, p: &Pipeline, stats: &mut [TableStats]) -> Result<(), LoadError> {
    let tables: Vec<&crate::spec::pipeline::Table> = p
        .resources()
        .iter()
        .flat_map(|r| &r.tables)
        .filter(|t| stats.iter().any(|s| s.table == t.name))
        .collect();
    let failed = expect::check(w, p, &tables).await?;
    if failed
        .iter()
        .any(|f| f.severity == crate::spec::pipeline::Severity::Error)
    {
        return Err(LoadError::Expectations { failed });
    }
    for f in failed {
        tracing::warn!(table = %f.table, check = f.check, "expectation failed (severity warn): {f}");
        if let Some(s) = stats.iter_mut().find(|s| s.table == f.table) {
            s.expectations.push(f);
        }
    }
    Ok(())
}

/// A run extracted before one already loaded into the same merge or replace tables would
/// put older records over newer ones: refused (append tables take any run).
async fn refuse_older<W: Warehouse>(w: &mut W, p: &Pipeline, feed: &RunFeed) -> Result<(), LoadError> {
    let guarded: Vec<&str> = feed
        .resources
        .iter()
        .filter_map(|(name, _)| p.resource(name))
        .flat_map(|r| &r.tables)
        .filter(|t| t.write != WriteMode::Append)
        .map(|t| t.name.as_str())
        .collect();
    if guarded.is_empty() {
        return Ok(());
    }
    #[derive(serde::Deserialize)]
    struct Loaded {
        table: String,
    }
    for newer in w.loaded_after(p.name(), &feed.extracted_at).await? {
        let tables: Vec<Loaded> = serde_json::from_str(&newer.resources).unwrap_or_default();
        let both: Vec<String> = tables
            .into_iter()
            .map(|t| t.table)
            .filter(|t| guarded.contains(&t.as_str()))
            .collect();
        if !both.is_empty() && newer.run_id != feed.run_id {
            return Err(LoadError::Superseded(Box::new(Superseded {
                run_id: feed.run_id.clone(),
                extracted_at: feed.extracted_at.clone(),
                newer: newer.run_id,
                newer_extracted_at: newer.extracted_at,
                newer_loaded_at: newer.loaded_at,
                tables: both,
            })));
        }
    }
    Ok(())
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
