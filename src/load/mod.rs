//! Load: staged raw records → typed rows in PostgreSQL, in one transaction per run.
//!
//! Each resource's staged objects are streamed (gzip JSON lines → mapped rows → binary
//! COPY) into temporary tables; rows of nested tables are spilled to disk meanwhile, since
//! one connection runs one COPY at a time. The write mode then moves rows into the real
//! tables, and the ledger row is written in the same transaction, so a failure anywhere
//! leaves every table as it was. The only place that calls into tokio-postgres.

pub mod connect;
pub mod ddl;
pub mod map;
pub mod state;
pub mod wire;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::SinkExt;
use tokio_postgres::Transaction;

use crate::spec::ident::quote_ident;
use crate::spec::pipeline::{OnError, Pipeline, Resource, Table, WriteMode, RUN_ID_COLUMN};
use crate::stage::manifest::ObjectManifest;
use crate::stage::{LocalObject, Manifest, StageError, Staging};
use crate::util::clip;
use crate::util::Secrets;
use ddl::qualified;
use map::{encode_row, map_record, RecordError, RecordRows, RunMeta, COPY_HEADER, COPY_TRAILER};

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
    sync_schema(&tx, p).await?;
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
        stats.extend(load_resource(&tx, p, store, resource, objects, &meta, spill_dir).await?);
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

/// Create missing tables, add new nullable columns, and refuse any other difference.
/// Holds the schema's lock until the load commits: pipelines sharing a schema (or
/// creating it at the same time) change it one after the other.
async fn sync_schema(tx: &Transaction<'_>, p: &Pipeline) -> Result<(), LoadError> {
    let schema = &p.warehouse().schema;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext('sluice:schema:' || $1::text))",
        &[schema],
    )
    .await
    .map_err(db(format!("lock schema `{schema}`")))?;
    tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)))
        .await
        .map_err(db(format!("create schema `{schema}`")))?;
    let statements = plan_schema(tx, p).await?;
    if !statements.is_empty() {
        tx.batch_execute(&statements.concat())
            .await
            .map_err(db(format!("create or evolve the tables of schema `{schema}`")))?;
    }
    Ok(())
}

/// Reach the warehouse and compute the schema plan, changing nothing: a connection that
/// fails, or a live table the spec cannot load into, stops a run before it reads the API.
pub async fn preflight(p: &Pipeline, warehouse_url: &str, secrets: &Secrets) -> Result<(), LoadError> {
    let (client, _) = connect::connect(warehouse_url, secrets).await?;
    plan_schema(&client, p).await.map(|_| ())
}

/// The DDL that brings the live tables to the spec (create tables, add nullable columns),
/// or every difference it cannot make ([`LoadError::SchemaDrift`]).
async fn plan_schema<C: tokio_postgres::GenericClient>(client: &C, p: &Pipeline) -> Result<Vec<String>, LoadError> {
    let schema = &p.warehouse().schema;
    let rows = client
        .query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
            &[schema],
        )
        .await
        .map_err(db("read the live tables"))?;
    let mut live: HashMap<String, Vec<(String, String, bool)>> = HashMap::new();
    for r in rows {
        live.entry(r.get(0)).or_default().push((r.get(1), r.get(2), r.get(3)));
    }
    let pk_rows = client
        .query(
            "SELECT c.relname::text, array_agg(a.attname::text ORDER BY k.ord) FROM pg_constraint con \
             JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
             WHERE n.nspname = $1 AND con.contype = 'p' GROUP BY c.relname",
            &[schema],
        )
        .await
        .map_err(db("read the live primary keys"))?;
    let live_pk: HashMap<String, Vec<String>> = pk_rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut problems = Vec::new();
    let mut statements = Vec::new();
    for t in ddl::ordered_tables(p) {
        let Some(cols) = live.get(&t.name) else {
            statements.push(ddl::create_table(schema, t));
            statements.push(ddl::comments(schema, t));
            continue;
        };
        let qt = qualified(schema, &t.name);
        for c in &t.columns {
            match cols.iter().find(|(n, _, _)| n == &c.name) {
                None if c.nullable => {
                    statements.push(format!(
                        "ALTER TABLE {qt} ADD COLUMN {} {};",
                        quote_ident(&c.name),
                        c.column_type.sql()
                    ));
                    if let Some(r) = &c.references {
                        statements.push(format!(
                            "ALTER TABLE {qt} ADD FOREIGN KEY ({}) REFERENCES {} ({}) DEFERRABLE INITIALLY DEFERRED;",
                            quote_ident(&c.name),
                            qualified(schema, &r.table),
                            quote_ident(&r.column)
                        ));
                    }
                }
                None => problems.push(format!(
                    "table `{}`: new column `{}` is NOT NULL; add it as nullable or migrate the table by hand",
                    t.name, c.name
                )),
                Some((_, ty, _)) if ty != c.column_type.sql() => problems.push(format!(
                    "table `{}`: column `{}` is {ty} in the database but {} in the spec",
                    t.name,
                    c.name,
                    c.column_type.sql()
                )),
                Some((_, _, not_null)) if *not_null == c.nullable => problems.push(format!(
                    "table `{}`: column `{}` is {} in the database but {} in the spec",
                    t.name,
                    c.name,
                    if *not_null { "NOT NULL" } else { "nullable" },
                    if c.nullable { "nullable" } else { "NOT NULL" }
                )),
                Some(_) => {}
            }
        }
        for (name, _, _) in cols {
            let known = t.column(name).is_some() || (t.run_id_column && name == RUN_ID_COLUMN);
            if !known {
                problems.push(format!(
                    "table `{}`: column `{name}` exists in the database but not in the spec",
                    t.name
                ));
            }
        }
        if t.run_id_column && !cols.iter().any(|(n, _, _)| n == RUN_ID_COLUMN) {
            statements.push(format!(
                "ALTER TABLE {qt} ADD COLUMN {} text;",
                quote_ident(RUN_ID_COLUMN)
            ));
        }
        let live_key = live_pk.get(&t.name).cloned().unwrap_or_default();
        if live_key != t.primary_key {
            problems.push(format!(
                "table `{}`: primary key is ({}) in the database but ({}) in the spec",
                t.name,
                live_key.join(", "),
                t.primary_key.join(", ")
            ));
        }
    }
    if !problems.is_empty() {
        return Err(LoadError::SchemaDrift { problems });
    }
    Ok(statements)
}

/// A record that did not fit, kept for the rejects table.
struct Reject {
    table: String,
    object: String,
    record: u64,
    column: String,
    value: String,
    reason: String,
    raw: String,
}

struct MapOutcome {
    records: u64,
    rows: Vec<u64>,
    coverage: Vec<map::Coverage>,
    rejected: u64,
    rejects: Vec<Reject>,
    spills: Vec<tempfile::NamedTempFile>,
}

const CHUNK: usize = 256 << 10;

/// Hashes and counts the bytes of a staged object as they are read, so that the object
/// is checked against its manifest in the same pass that loads it.
struct Verifying<R> {
    inner: R,
    hash: sha2::Sha256,
    bytes: u64,
}

impl<R: Read> Read for Verifying<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

impl<R: Read> Verifying<R> {
    /// Read what is left and compare size, digest and (when all were read) the record
    /// count with the manifest.
    fn verify(mut self, object: &ObjectManifest, records: Option<u64>) -> Result<(), String> {
        use sha2::Digest;
        std::io::copy(&mut self, &mut std::io::sink()).map_err(|e| format!("cannot be read to its end: {e}"))?;
        let sha256 = hex::encode(self.hash.finalize());
        if self.bytes != object.bytes {
            return Err(format!(
                "is {} bytes but the manifest says {}",
                self.bytes, object.bytes
            ));
        }
        if sha256 != object.sha256 {
            return Err(format!("has SHA-256 {sha256} but the manifest says {}", object.sha256));
        }
        match records {
            Some(n) if n != object.records => {
                Err(format!("holds {n} records but the manifest says {}", object.records))
            }
            _ => Ok(()),
        }
    }
}

fn io_error(what: &str, e: std::io::Error) -> LoadError {
    LoadError::Io(format!("{what}: {e}"))
}

/// Read the staged objects of one resource, verifying each against its manifest, and map
/// every record: root rows go to `sender` in COPY-sized chunks, nested rows to spill
/// files. Runs on a blocking thread.
fn map_objects(
    resource: &Resource,
    mut objects: tokio::sync::mpsc::Receiver<(ObjectManifest, LocalObject)>,
    meta: &RunMeta,
    spill_dir: &std::path::Path,
    sender: tokio::sync::mpsc::Sender<Vec<u8>>,
) -> Result<MapOutcome, LoadError> {
    let mut mapper = Mapper::new(resource, meta, spill_dir, sender)?;
    while let Some((object, local)) = objects.blocking_recv() {
        let file = std::fs::File::open(&local.path)
            .map_err(|e| io_error(&format!("open staged object `{}`", object.key), e))?;
        let mut verifying = Verifying {
            inner: file,
            hash: <sha2::Sha256 as sha2::Digest>::new(),
            bytes: 0,
        };
        let tampered = |detail: String| LoadError::Tampered {
            resource: resource.name.clone(),
            object: object.key.clone(),
            detail,
        };
        match mapper.map_object(&object.key, &mut verifying) {
            Ok(Some(records)) => verifying.verify(&object, Some(records)).map_err(tampered)?,
            // The COPY side stopped; it reports why.
            Ok(None) => return Ok(mapper.out),
            // An object that cannot be read, or holds a record that fails the load, is
            // first of all a tampered one when its bytes are not those the manifest names.
            Err(e @ (LoadError::Io(_) | LoadError::Record(_))) => {
                return Err(match verifying.verify(&object, None) {
                    Err(detail) => tampered(detail),
                    Ok(()) => e,
                })
            }
            Err(e) => return Err(e),
        }
    }
    mapper.finish()
}

/// The state of mapping one resource's records into COPY streams.
struct Mapper<'a> {
    resource: &'a Resource,
    meta: &'a RunMeta,
    fields: Option<Vec<String>>,
    sender: tokio::sync::mpsc::Sender<Vec<u8>>,
    /// Root rows waiting to be sent.
    chunk: Vec<u8>,
    /// One spill file per nested table.
    spills: Vec<(tempfile::NamedTempFile, BufWriter<std::fs::File>)>,
    out: MapOutcome,
    // Buffers reused from record to record.
    mapped: RecordRows,
    line: Vec<u8>,
    encoded: Vec<u8>,
    /// The first record, whole, for suggestions when a path matches nothing.
    sample: Option<String>,
}

impl<'a> Mapper<'a> {
    fn new(
        resource: &'a Resource,
        meta: &'a RunMeta,
        spill_dir: &std::path::Path,
        sender: tokio::sync::mpsc::Sender<Vec<u8>>,
    ) -> Result<Self, LoadError> {
        let tables = &resource.tables;
        let mut spills = Vec::new();
        for _ in 1..tables.len() {
            let f = crate::util::temp_file_in(spill_dir).map_err(|e| io_error("create a spill file", e))?;
            let mut w = BufWriter::with_capacity(CHUNK, f.reopen().map_err(|e| io_error("open a spill file", e))?);
            w.write_all(COPY_HEADER)
                .map_err(|e| io_error("write a spill file", e))?;
            spills.push((f, w));
        }
        Ok(Mapper {
            resource,
            meta,
            fields: map::needed_fields(tables),
            sender,
            chunk: Vec::with_capacity(CHUNK + 4096),
            spills,
            out: MapOutcome {
                records: 0,
                rows: vec![0; tables.len()],
                coverage: Vec::new(),
                rejected: 0,
                rejects: Vec::new(),
                spills: Vec::new(),
            },
            mapped: RecordRows::default(),
            line: Vec::new(),
            encoded: Vec::new(),
            sample: None,
        })
    }

    /// Map every record of one object (gzip JSON Lines); the number of records read, or
    /// `None` when the COPY side stopped taking rows.
    fn map_object(&mut self, key: &str, input: impl Read) -> Result<Option<u64>, LoadError> {
        let mut reader = BufReader::with_capacity(CHUNK, flate2::read::MultiGzDecoder::new(input));
        let mut record_no = 0u64;
        loop {
            self.line.clear();
            let n = reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| io_error(&format!("read staged object `{key}`"), e))?;
            if n == 0 {
                return Ok(Some(record_no));
            }
            record_no += 1;
            self.out.records += 1;
            match self.map_line() {
                Ok(()) => self.write_rows()?,
                Err(refused) => self.refuse(key, record_no, refused)?,
            }
            if self.chunk.len() >= CHUNK {
                let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK + 4096));
                if self.sender.blocking_send(full).is_err() {
                    return Ok(None);
                }
            }
        }
    }

    /// Parse and map the current line into `mapped`.
    fn map_line(&mut self) -> Result<(), RecordError> {
        let text = std::str::from_utf8(&self.line)
            .map_err(|e| whole_record_error(format!("the staged record is not UTF-8 ({e})"), &self.line))?;
        if self.sample.is_none() {
            self.sample = Some(text.to_string());
        }
        let record = map::parse_record(text, self.fields.as_deref())
            .map_err(|e| whole_record_error(format!("the staged record is not valid JSON ({e})"), &self.line))?;
        map_record(&self.resource.tables, &record, self.meta, &mut self.mapped)
    }

    /// Encode the rows of an accepted record: root rows into the chunk, nested rows into
    /// their spill files.
    fn write_rows(&mut self) -> Result<(), LoadError> {
        for (i, (t, rows)) in self.resource.tables.iter().zip(&self.mapped.rows).enumerate() {
            let run_id = t.run_id_column.then_some(self.meta.run_id.as_str());
            for row in rows {
                self.out.rows[i] += 1;
                let ordinal = (t.write == WriteMode::Merge).then_some(self.out.rows[i] as i64);
                if i == 0 {
                    encode_row(row, run_id, ordinal, &mut self.chunk);
                } else {
                    self.encoded.clear();
                    encode_row(row, run_id, ordinal, &mut self.encoded);
                    self.spills[i - 1]
                        .1
                        .write_all(&self.encoded)
                        .map_err(|e| io_error("write a spill file", e))?;
                }
            }
        }
        Ok(())
    }

    /// A refused record under the resource's `on_error` policy.
    fn refuse(&mut self, key: &str, record: u64, refused: RecordError) -> Result<(), LoadError> {
        let table = &self.resource.tables[refused.table];
        let error = refused.error;
        match self.resource.tables[0].on_error {
            OnError::Fail => {
                return Err(LoadError::Record(Box::new(BadRecord {
                    resource: self.resource.name.clone(),
                    object: key.to_string(),
                    record,
                    table: table.name.clone(),
                    column: error.column,
                    value: error.value,
                    reason: error.reason,
                })))
            }
            OnError::Skip => {}
            OnError::Quarantine => self.out.rejects.push(Reject {
                table: table.name.clone(),
                object: key.to_string(),
                record,
                column: error.column,
                value: error.value,
                reason: error.reason,
                raw: String::from_utf8_lossy(&self.line).trim_end().to_string(),
            }),
        }
        self.out.rejected += 1;
        Ok(())
    }

    /// End the COPY stream and the spill files; a column whose path matched nothing
    /// fails the load here, before anything is committed.
    fn finish(mut self) -> Result<MapOutcome, LoadError> {
        let sample = self.sample.as_deref().and_then(|s| serde_json::from_str(s).ok());
        let problems = map::unmatched(&self.resource.tables, &self.mapped.coverage, sample.as_ref());
        if !problems.is_empty() {
            return Err(LoadError::Unmatched {
                resource: self.resource.name.clone(),
                problems,
            });
        }
        self.out.coverage = std::mem::take(&mut self.mapped.coverage);
        self.chunk.extend_from_slice(COPY_TRAILER);
        let _ = self.sender.blocking_send(self.chunk);
        for (f, mut w) in self.spills {
            w.write_all(COPY_TRAILER)
                .map_err(|e| io_error("write a spill file", e))?;
            w.flush().map_err(|e| io_error("write a spill file", e))?;
            self.out.spills.push(f);
        }
        Ok(self.out)
    }
}

/// A rejected record as `jsonb`: itself when PostgreSQL can store it, else its text as a
/// JSON string (a record that is not JSON, or holds `\u0000`, which `jsonb` refuses).
fn jsonb_record(raw: &str) -> String {
    let storable = !raw.contains("\\u0000") && serde_json::from_str::<serde_json::Value>(raw).is_ok();
    if storable {
        raw.to_string()
    } else {
        serde_json::Value::String(raw.to_string()).to_string()
    }
}

/// A record that cannot be read at all: refused whole, under the `on_error` policy.
fn whole_record_error(reason: String, line: &[u8]) -> RecordError {
    RecordError {
        table: 0,
        error: map::ColumnError {
            column: "(record)".into(),
            value: crate::util::clip(&String::from_utf8_lossy(line).trim_end().escape_debug().to_string(), 80),
            reason,
        },
    }
}

fn temp_name(i: usize) -> String {
    format!("_sluice_tmp_{i}")
}

/// Appends and replaces COPY straight into the table; merges go through a temporary
/// table (with each row's ordinal) that the upsert reads.
fn copy_sql(schema: &str, t: &Table, i: usize) -> String {
    let mut cols: Vec<String> = t.columns.iter().map(|c| quote_ident(&c.name)).collect();
    if t.run_id_column {
        cols.push(quote_ident(RUN_ID_COLUMN));
    }
    let target = if t.write == WriteMode::Merge {
        cols.push("\"_sluice_ord\"".into());
        quote_ident(&temp_name(i))
    } else {
        qualified(schema, &t.name)
    };
    format!("COPY {target} ({}) FROM STDIN (FORMAT binary)", cols.join(", "))
}

async fn load_resource(
    tx: &Transaction<'_>,
    p: &Pipeline,
    store: &impl Staging,
    resource: &Resource,
    objects: ObjectFeed,
    meta: &RunMeta,
    spill_dir: &std::path::Path,
) -> Result<Vec<TableStats>, LoadError> {
    let t0 = Instant::now();
    let schema = &p.warehouse().schema;
    for (i, t) in resource.tables.iter().enumerate() {
        if t.write == WriteMode::Replace {
            tx.execute(&format!("DELETE FROM {}", qualified(schema, &t.name)), &[])
                .await
                .map_err(db(format!("clear `{}` for replace", t.name)))?;
        }
        if t.write != WriteMode::Merge {
            continue;
        }
        let mut cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| format!("{} {}", quote_ident(&c.name), c.column_type.sql()))
            .collect();
        if t.run_id_column {
            cols.push(format!("{} text", quote_ident(RUN_ID_COLUMN)));
        }
        cols.push("\"_sluice_ord\" bigint".into());
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE {} ({}) ON COMMIT DROP",
            quote_ident(&temp_name(i)),
            cols.join(", ")
        ))
        .await
        .map_err(db(format!("create the staging table of `{}`", t.name)))?;
    }
    let root_copy = tx
        .copy_in(&copy_sql(schema, &resource.tables[0], 0))
        .await
        .map_err(db(format!("start COPY into `{}`", resource.tables[0].name)))?;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let (object_tx, object_rx) = tokio::sync::mpsc::channel::<(ObjectManifest, LocalObject)>(2);
    let (res, meta_owned) = (resource.clone(), meta.clone());
    let spill_dir = spill_dir.to_path_buf();
    let mapper = tokio::task::spawn_blocking(move || map_objects(&res, object_rx, &meta_owned, &spill_dir, sender));
    // Objects go to the mapper as they become available: all at once from a manifest, one
    // by one from an extraction still running.
    let feeding = async move {
        let send = |o: ObjectManifest, local: LocalObject| object_tx.send((o, local));
        // When this resource's load really starts: at once for a staged run, with the
        // first part for a run still being extracted (the wait is the extraction's time).
        let mut first = None;
        match objects {
            ObjectFeed::Listed(list) => {
                first = Some(Instant::now());
                for o in list {
                    let local = store.open(&o.key).await?;
                    if send(o, local).await.is_err() {
                        break;
                    }
                }
            }
            ObjectFeed::Live(mut rx) => {
                while let Some(o) = rx.recv().await {
                    first.get_or_insert_with(Instant::now);
                    let local = store.open(&o.key).await?;
                    if send(o, local).await.is_err() {
                        break;
                    }
                }
            }
        }
        Ok::<Option<Instant>, LoadError>(first)
    };
    futures_util::pin_mut!(root_copy);
    let copying = async {
        // Owned here so that a COPY failure drops it at once: the mapper's next send then
        // fails and it stops, which in turn stops the feeding; nothing waits on anything.
        let mut receiver = receiver;
        let mut bar = crate::progress::LoadBar::new(&resource.name);
        root_copy
            .send(Bytes::from_static(COPY_HEADER))
            .await
            .map_err(db(format!("COPY into `{}`", resource.tables[0].name)))?;
        while let Some(chunk) = receiver.recv().await {
            bar.sent(chunk.len() as u64);
            root_copy
                .send(Bytes::from(chunk))
                .await
                .map_err(db(format!("COPY into `{}`", resource.tables[0].name)))?;
        }
        Ok::<(), LoadError>(())
    };
    let (feed_result, copy_result) = tokio::join!(feeding, copying);
    let outcome = mapper
        .await
        .map_err(|e| LoadError::Io(format!("the mapping thread failed: {e}")))??;
    let t0 = feed_result?.unwrap_or(t0);
    copy_result?;
    root_copy
        .finish()
        .await
        .map_err(db(format!("COPY into `{}`", resource.tables[0].name)))?;
    for (i, spill) in outcome.spills.iter().enumerate() {
        let t = &resource.tables[i + 1];
        let sink = tx
            .copy_in(&copy_sql(schema, t, i + 1))
            .await
            .map_err(db(format!("start COPY into `{}`", t.name)))?;
        futures_util::pin_mut!(sink);
        let mut file = spill
            .reopen()
            .map_err(|e| LoadError::Io(format!("reopen a spill file: {e}")))?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| LoadError::Io(format!("read a spill file: {e}")))?;
            if n == 0 {
                break;
            }
            sink.send(Bytes::copy_from_slice(&buf[..n]))
                .await
                .map_err(db(format!("COPY into `{}`", t.name)))?;
        }
        sink.finish().await.map_err(db(format!("COPY into `{}`", t.name)))?;
    }
    // Before any staging table is dropped: a loaded parent's elements are its children.
    let mut deleted = vec![0; resource.tables.len()];
    for (i, gone) in deleted.iter_mut().enumerate() {
        *gone = remove_gone_children(tx, schema, resource, i).await?;
    }
    let mut stats = Vec::new();
    for (i, t) in resource.tables.iter().enumerate() {
        let (inserted, updated) = if t.write == WriteMode::Merge {
            let counts = merge(tx, schema, t, &temp_name(i)).await?;
            tx.batch_execute(&format!("DROP TABLE {}", quote_ident(&temp_name(i))))
                .await
                .map_err(db(format!("drop the staging table of `{}`", t.name)))?;
            counts
        } else {
            (outcome.rows[i], 0)
        };
        stats.push(TableStats {
            resource: resource.name.clone(),
            table: t.name.clone(),
            records: outcome.records,
            rows: outcome.rows[i],
            inserted,
            updated,
            deleted: deleted[i],
            rejected: if i == 0 { outcome.rejected } else { 0 },
            seconds: t0.elapsed().as_secs_f64(),
            matched: outcome
                .coverage
                .get(i)
                .map(|cov| {
                    t.columns
                        .iter()
                        .zip(&cov.matched)
                        .filter(|(c, _)| c.value.reads_record())
                        .map(|(c, n)| (c.name.clone(), *n))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    for r in &outcome.rejects {
        tx.execute(
            "INSERT INTO \"_sluice\".\"rejects\" (pipeline, run_id, resource, table_name, object_key, record_number, column_name, value, reason, record) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb)",
            &[&p.name(), &meta.run_id, &resource.name, &r.table, &r.object, &(r.record as i64), &r.column, &clip(&r.value, 1000), &r.reason, &jsonb_record(&r.raw)],
        )
        .await
        .map_err(db("write the rejects table"))?;
    }
    Ok(stats)
}

/// Under `merge`, a parent record's elements are its nested rows: the rows of nested
/// table `i` whose parent this load holds but whose key it no longer holds are removed
/// (a label removed at the source leaves the table too). Returns how many.
async fn remove_gone_children(
    tx: &Transaction<'_>,
    schema: &str,
    resource: &Resource,
    i: usize,
) -> Result<u64, LoadError> {
    use crate::spec::pipeline::ValueSource;
    let t = &resource.tables[i];
    let Some(pi) = t.parent else { return Ok(0) };
    let parent = &resource.tables[pi];
    if t.write != WriteMode::Merge || parent.write != WriteMode::Merge {
        return Ok(0);
    }
    // The compile pass made sure each key column of the parent is copied into a column.
    let mut link = Vec::new();
    for k in &parent.primary_key {
        let Some(c) = t
            .columns
            .iter()
            .find(|c| matches!(c.value, ValueSource::Parent(j) if parent.columns[j].name == *k))
        else {
            return Ok(0);
        };
        link.push(format!("n.{} = p.{}", quote_ident(&c.name), quote_ident(k)));
    }
    let keys: Vec<String> = parent.primary_key.iter().map(|k| quote_ident(k)).collect();
    let same: Vec<String> = t
        .primary_key
        .iter()
        .map(|k| format!("t.{0} = n.{0}", quote_ident(k)))
        .collect();
    let sql = format!(
        "DELETE FROM {} n USING (SELECT DISTINCT {} FROM {}) p WHERE {} AND NOT EXISTS (SELECT 1 FROM {} t WHERE {})",
        qualified(schema, &t.name),
        keys.join(", "),
        quote_ident(&temp_name(pi)),
        link.join(" AND "),
        quote_ident(&temp_name(i)),
        same.join(" AND ")
    );
    tx.execute(&sql, &[]).await.map_err(db(format!(
        "remove the rows of `{}` its parents no longer hold",
        t.name
    )))
}

/// Upsert the staged rows of a merge table on its primary key, the last record of a key
/// winning; returns (inserted, updated).
async fn merge(tx: &Transaction<'_>, schema: &str, t: &Table, tmp: &str) -> Result<(u64, u64), LoadError> {
    let target = qualified(schema, &t.name);
    let mut cols: Vec<String> = t.columns.iter().map(|c| quote_ident(&c.name)).collect();
    if t.run_id_column {
        cols.push(quote_ident(RUN_ID_COLUMN));
    }
    let list = cols.join(", ");
    let tmp = quote_ident(tmp);
    let action = format!("merge rows into `{}`", t.name);
    let pk: Vec<String> = t.primary_key.iter().map(|k| quote_ident(k)).collect();
    let pk = pk.join(", ");
    let updates: Vec<String> = cols
        .iter()
        .filter(|c| !t.primary_key.iter().any(|k| quote_ident(k) == **c))
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    let on_conflict = if updates.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    let sql = format!(
        "WITH ins AS (INSERT INTO {target} ({list}) SELECT DISTINCT ON ({pk}) {list} FROM {tmp} ORDER BY {pk}, \"_sluice_ord\" DESC \
         ON CONFLICT ({pk}) {on_conflict} RETURNING (xmax = 0) AS inserted) \
         SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM ins"
    );
    let row = tx.query_one(&sql, &[]).await.map_err(db(action))?;
    Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
}
