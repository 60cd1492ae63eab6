//! The SQLite warehouse: an embedded database file, nothing to install or start. A load is
//! one `BEGIN IMMEDIATE` transaction (the write lock is the pipeline's lock: a second
//! writer waits up to the busy timeout, then fails with "database is locked"); rows go
//! through prepared inserts; WAL lets readers query while a load runs; foreign keys are
//! on and checked at commit.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Statement};

use super::ddl::Dialect;
use super::map::RunMeta;
use super::mapper::{jsonb_record, map_objects, MapOutcome, Reject, RowSink};
use super::postgres::{merge_columns, on_conflict};
use super::state::Saved;
use super::warehouse::{LedgerRow, LiveTable, Objects, Warehouse};
use super::LoadError;
use crate::spec::ident::quote_ident;
use crate::spec::pipeline::{Resource, Table, WriteMode, RUN_ID_COLUMN};
use crate::util::clip;
use crate::value::Cell;

pub const SCHEME: &str = "sqlite://";

/// How long a load waits for another writer of the same file before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// The ledger, rejects and state tables: `_sluice.*` of PostgreSQL, as prefixed names.
const LEDGER_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS "_sluice_runs" (
    "load_id" INTEGER PRIMARY KEY AUTOINCREMENT,
    "pipeline" TEXT NOT NULL,
    "run_id" TEXT NOT NULL,
    "spec_hash" TEXT NOT NULL,
    "extracted_at" TIMESTAMPTZ TEXT,
    "started_at" TIMESTAMPTZ TEXT NOT NULL,
    "finished_at" TIMESTAMPTZ TEXT,
    "status" TEXT NOT NULL,
    "error" TEXT,
    "resources" JSON TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS "_sluice_runs_pipeline_run_id" ON "_sluice_runs" ("pipeline", "run_id");
CREATE TABLE IF NOT EXISTS "_sluice_rejects" (
    "pipeline" TEXT NOT NULL,
    "run_id" TEXT NOT NULL,
    "resource" TEXT NOT NULL,
    "table_name" TEXT NOT NULL,
    "object_key" TEXT NOT NULL,
    "record_number" INTEGER NOT NULL,
    "column_name" TEXT NOT NULL,
    "value" TEXT,
    "reason" TEXT NOT NULL,
    "record" JSON TEXT,
    "rejected_at" TIMESTAMPTZ TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS "_sluice_state" (
    "pipeline" TEXT NOT NULL,
    "resource" TEXT NOT NULL,
    "value" TEXT NOT NULL,
    "run_id" TEXT NOT NULL,
    "updated_at" TIMESTAMPTZ TEXT NOT NULL,
    PRIMARY KEY ("pipeline", "resource")
);
"#;

pub struct Sqlite {
    /// Taken by the mapping thread while rows are written.
    conn: Option<Connection>,
    path: PathBuf,
    target: String,
    busy: Duration,
}

/// The file of a `sqlite://` URL (relative to the working directory, or absolute with a
/// third slash) and its busy timeout (`?busy_timeout=30s`).
fn parse_url(url: &str) -> Result<(PathBuf, Duration), LoadError> {
    let rest = url.strip_prefix(SCHEME).unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err(LoadError::Connect(
            "the SQLite URL names no file: write `sqlite://path/to/file.db` (relative to the working directory) or `sqlite:///absolute/path.db`".into(),
        ));
    }
    let mut busy = BUSY_TIMEOUT;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("busy_timeout", v)) => {
                busy = crate::spec::units::Duration::parse(v)
                    .map_err(|e| LoadError::Connect(format!("SQLite URL, busy_timeout: {e}")))?
                    .0
            }
            _ => {
                return Err(LoadError::Connect(format!(
                    "the SQLite URL has an unknown option `{pair}`; the one option is `busy_timeout` (for example `?busy_timeout=30s`)"
                )))
            }
        }
    }
    Ok((PathBuf::from(path), busy))
}

/// Run a blocking SQLite call without stalling the other tasks of a multi-threaded runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// An SQLite error as a load error: a lock held past the busy timeout says so plainly.
fn lite(action: &str, busy: Duration) -> impl FnOnce(rusqlite::Error) -> LoadError + '_ {
    move |e| {
        let locked = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        LoadError::Db {
            action: action.to_string(),
            message: if locked {
                format!(
                    "database is locked: another run or program is writing to it, and it stayed locked for the busy timeout ({} s; `?busy_timeout=` in the URL changes it)",
                    busy.as_secs_f64()
                )
            } else {
                e.to_string()
            },
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl Sqlite {
    /// Open (creating when missing, with its folder) the database file of a `sqlite://` URL.
    pub fn open(url: &str) -> Result<Self, LoadError> {
        let (path, busy) = parse_url(url)?;
        let target = format!("SQLite database {}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| LoadError::Connect(format!("cannot create the folder of the {target}: {e}")))?;
        }
        let fail = |e: rusqlite::Error| LoadError::Connect(format!("cannot open the {target}: {e}"));
        let conn = blocking(|| {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(busy)?;
            // WAL: readers see the last commit while a load writes. NORMAL sync is safe
            // with WAL (a power cut may lose the last commit, never consistency).
            let _: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
            conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
            Ok::<_, rusqlite::Error>(conn)
        })
        .map_err(fail)?;
        Ok(Sqlite {
            conn: Some(conn),
            path,
            target,
            busy,
        })
    }

    /// Run `f` on the connection, on a thread that may block.
    fn with<T>(&mut self, action: &str, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, LoadError> {
        let conn = self.conn.as_ref().expect("the connection is back after writing rows");
        blocking(|| f(conn)).map_err(lite(action, self.busy))
    }
}

/// Bind a typed cell: numbers as numbers, exact decimals, JSON and text as text, dates
/// and timestamps as ISO 8601 (UTC, microseconds) text, booleans as 0 and 1.
fn bind(st: &mut Statement<'_>, i: usize, c: &Cell) -> rusqlite::Result<()> {
    match c {
        Cell::Null => st.raw_bind_parameter(i, rusqlite::types::Null),
        Cell::Text(s) | Cell::Json(s) | Cell::Numeric(s) => st.raw_bind_parameter(i, s.as_str()),
        Cell::Int(n) => st.raw_bind_parameter(i, *n),
        Cell::Big(n) => st.raw_bind_parameter(i, *n),
        Cell::Double(f) => st.raw_bind_parameter(i, *f),
        Cell::Bool(b) => st.raw_bind_parameter(i, *b),
        Cell::Date(d) => st.raw_bind_parameter(i, d.format("%Y-%m-%d").to_string()),
        Cell::Time(t) => st.raw_bind_parameter(i, t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
    }
}

/// Rows through one prepared insert per table: into the table, or its staging table
/// when it merges.
struct InsertSink<'c> {
    inserts: Vec<Statement<'c>>,
    names: Vec<String>,
    busy: Duration,
}

impl<'c> InsertSink<'c> {
    fn new(conn: &'c Connection, resource: &Resource, busy: Duration) -> Result<Self, LoadError> {
        let mut inserts = Vec::new();
        for (i, t) in resource.tables.iter().enumerate() {
            let mut cols = merge_columns(t);
            let target = if t.write == WriteMode::Merge {
                cols.push("\"_sluice_ord\"".into());
                quote_ident(&super::resource::temp_name(i))
            } else {
                quote_ident(&t.name)
            };
            let marks: Vec<String> = (1..=cols.len()).map(|n| format!("?{n}")).collect();
            let sql = format!(
                "INSERT INTO {target} ({}) VALUES ({})",
                cols.join(", "),
                marks.join(", ")
            );
            inserts.push(
                conn.prepare(&sql)
                    .map_err(lite(&format!("prepare the insert into `{}`", t.name), busy))?,
            );
        }
        Ok(InsertSink {
            inserts,
            names: resource.tables.iter().map(|t| t.name.clone()).collect(),
            busy,
        })
    }
}

impl RowSink for InsertSink<'_> {
    fn row(
        &mut self,
        table: usize,
        cells: &[Cell],
        run_id: Option<&str>,
        ordinal: Option<i64>,
    ) -> Result<bool, LoadError> {
        let st = &mut self.inserts[table];
        let result = (|| {
            for (i, c) in cells.iter().enumerate() {
                bind(st, i + 1, c)?;
            }
            let mut next = cells.len() + 1;
            if let Some(id) = run_id {
                st.raw_bind_parameter(next, id)?;
                next += 1;
            }
            if let Some(o) = ordinal {
                st.raw_bind_parameter(next, o)?;
            }
            st.raw_execute()
        })();
        result.map_err(lite(&format!("insert into `{}`", self.names[table]), self.busy))?;
        Ok(true)
    }
}

impl Warehouse for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn target(&self) -> &str {
        &self.target
    }

    fn query_hint(&self, table: &str) -> Option<String> {
        Some(format!(
            "sqlite3 {} 'SELECT * FROM {} LIMIT 10'",
            self.path.display(),
            quote_ident(table)
        ))
    }

    async fn create_ledger(&mut self) -> Result<(), LoadError> {
        self.with("create the _sluice ledger", |c| {
            c.execute_batch(&format!("BEGIN IMMEDIATE; {LEDGER_DDL} COMMIT;"))
                .inspect_err(|_| {
                    let _ = c.execute_batch("ROLLBACK");
                })
        })
    }

    async fn begin(&mut self, _pipeline: &str) -> Result<(), LoadError> {
        // The database's one write lock is the pipeline's lock, and the schema's.
        self.with("begin the load transaction", |c| c.execute_batch("BEGIN IMMEDIATE"))
    }

    async fn commit(&mut self) -> Result<(), LoadError> {
        self.with("commit the load (deferred foreign keys are checked here)", |c| {
            c.execute_batch("COMMIT")
        })
    }

    async fn rollback(&mut self) {
        let _ = self.with("roll back", |c| {
            if c.is_autocommit() {
                Ok(())
            } else {
                c.execute_batch("ROLLBACK")
            }
        });
    }

    async fn loaded_at(&mut self, pipeline: &str, run_id: &str) -> Result<Option<String>, LoadError> {
        self.with("read the ledger", |c| {
            c.query_row(
                "SELECT coalesce(finished_at, '') FROM \"_sluice_runs\" WHERE pipeline = ?1 AND run_id = ?2 AND status = 'loaded' ORDER BY load_id DESC LIMIT 1",
                params![pipeline, run_id],
                |r| r.get(0),
            )
            .optional()
        })
    }

    async fn record_run(&mut self, r: &LedgerRow<'_>) -> Result<(), LoadError> {
        self.with("write the ledger", |c| {
            c.execute(
                "INSERT INTO \"_sluice_runs\" (pipeline, run_id, spec_hash, extracted_at, started_at, finished_at, status, error, resources) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![r.pipeline, r.run_id, r.spec_hash, r.extracted_at, r.started_at, now(), r.status, r.error, r.resources],
            )
            .map(|_| ())
        })
    }

    async fn record_rejects(
        &mut self,
        pipeline: &str,
        run_id: &str,
        resource: &str,
        rejects: &[Reject],
    ) -> Result<(), LoadError> {
        if rejects.is_empty() {
            return Ok(());
        }
        self.with("write the rejects table", |c| {
            let mut st = c.prepare(
                "INSERT INTO \"_sluice_rejects\" (pipeline, run_id, resource, table_name, object_key, record_number, column_name, value, reason, record, rejected_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let at = now();
            for r in rejects {
                st.execute(params![
                    pipeline,
                    run_id,
                    resource,
                    r.table,
                    r.object,
                    r.record as i64,
                    r.column,
                    clip(&r.value, 1000),
                    r.reason,
                    jsonb_record(&r.raw),
                    at
                ])?;
            }
            Ok(())
        })
    }

    async fn live_tables(&mut self, _schema: &str) -> Result<HashMap<String, LiveTable>, LoadError> {
        self.with("read the live tables", |c| {
            let names: Vec<String> = c
                .prepare(
                    "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                     AND name NOT LIKE '\\_sluice\\_%' ESCAPE '\\' ORDER BY name",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut live = HashMap::new();
            for name in names {
                let mut table = LiveTable::default();
                let mut keys = Vec::new();
                let mut st = c.prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid")?;
                let mut rows = st.query([&name])?;
                while let Some(r) = rows.next()? {
                    let column: String = r.get(0)?;
                    let pk: i64 = r.get(3)?;
                    if pk > 0 {
                        keys.push((pk, column.clone()));
                    }
                    table.columns.push((column, r.get(1)?, r.get::<_, i64>(2)? != 0));
                }
                keys.sort();
                table.primary_key = keys.into_iter().map(|(_, k)| k).collect();
                live.insert(name, table);
            }
            Ok(live)
        })
    }

    async fn apply_ddl(&mut self, _schema: &str, statements: &[String]) -> Result<(), LoadError> {
        if statements.is_empty() {
            return Ok(());
        }
        self.with("create or evolve the tables", |c| c.execute_batch(&statements.concat()))
    }

    async fn execute(&mut self, sql: &str, action: &str) -> Result<u64, LoadError> {
        self.with(action, |c| c.execute(sql, []).map(|n| n as u64))
    }

    async fn create_staging_table(&mut self, t: &Table, name: &str) -> Result<(), LoadError> {
        let mut cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    quote_ident(&c.name),
                    Dialect::Sqlite.column_type(c.column_type)
                )
            })
            .collect();
        if t.run_id_column {
            cols.push(format!("{} TEXT", quote_ident(RUN_ID_COLUMN)));
        }
        cols.push("\"_sluice_ord\" INTEGER".into());
        let sql = format!("CREATE TEMP TABLE {} ({})", quote_ident(name), cols.join(", "));
        self.with(&format!("create the staging table of `{}`", t.name), |c| {
            c.execute_batch(&sql)
        })
    }

    async fn write_rows(
        &mut self,
        _schema: &str,
        resource: &Resource,
        objects: Objects,
        meta: &RunMeta,
        _spill_dir: &std::path::Path,
    ) -> Result<MapOutcome, LoadError> {
        let conn = self.conn.take().expect("one writer at a time");
        let (res, meta, busy) = (resource.clone(), meta.clone(), self.busy);
        // Mapping and inserting on one blocking thread: rusqlite is synchronous, and a
        // row goes from the mapper to SQLite without a copy.
        let writer = tokio::task::spawn_blocking(move || {
            let outcome =
                InsertSink::new(&conn, &res, busy).and_then(|mut sink| map_objects(&res, objects, &meta, &mut sink));
            (conn, outcome)
        });
        let (conn, outcome) = writer
            .await
            .map_err(|e| LoadError::Io(format!("the mapping thread failed: {e}")))?;
        self.conn = Some(conn);
        outcome
    }

    async fn merge(&mut self, _schema: &str, t: &Table, staging: &str) -> Result<(u64, u64), LoadError> {
        let target = quote_ident(&t.name);
        let tmp = quote_ident(staging);
        let cols = merge_columns(t);
        let list = cols.join(", ");
        let pk: Vec<String> = t.primary_key.iter().map(|k| quote_ident(k)).collect();
        let same: Vec<String> = pk.iter().map(|k| format!("t.{k} = k.{k}")).collect();
        // The keys already there are the updated ones; then the upsert in row order, so
        // that the last row of a key wins.
        let count = format!(
            "SELECT count(*), coalesce(sum(EXISTS (SELECT 1 FROM {target} t WHERE {})), 0) FROM (SELECT DISTINCT {} FROM {tmp}) k",
            same.join(" AND "),
            pk.join(", ")
        );
        let upsert = format!(
            "INSERT INTO {target} ({list}) SELECT {list} FROM {tmp} WHERE true ORDER BY \"_sluice_ord\" ON CONFLICT {}",
            on_conflict(t, &cols)
        );
        self.with(&format!("merge rows into `{}`", t.name), |c| {
            let (keys, updated): (i64, i64) = c.query_row(&count, [], |r| Ok((r.get(0)?, r.get(1)?)))?;
            c.execute(&upsert, [])?;
            Ok(((keys - updated) as u64, updated as u64))
        })
    }

    async fn read_states(&mut self, pipeline: &str) -> Result<BTreeMap<String, Saved>, LoadError> {
        self.with("read the incremental state", |c| {
            let exists: bool = c.query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = '_sluice_state')",
                [],
                |r| r.get(0),
            )?;
            if !exists {
                return Ok(BTreeMap::new());
            }
            let mut st = c.prepare(
                "SELECT resource, value, run_id, substr(updated_at, 1, 19) || 'Z' FROM \"_sluice_state\" WHERE pipeline = ?1 ORDER BY resource",
            )?;
            let rows = st.query_map([pipeline], |r| {
                Ok(Saved {
                    resource: r.get(0)?,
                    value: r.get(1)?,
                    run_id: r.get(2)?,
                    updated_at: r.get(3)?,
                })
            })?;
            rows.map(|s| s.map(|s| (s.resource.clone(), s))).collect()
        })
    }

    async fn save_state(&mut self, pipeline: &str, resource: &str, value: &str, run_id: &str) -> Result<(), LoadError> {
        self.with("save the incremental state", |c| {
            c.execute(
                "INSERT INTO \"_sluice_state\" (pipeline, resource, value, run_id, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (pipeline, resource) DO UPDATE SET value = excluded.value, run_id = excluded.run_id, updated_at = excluded.updated_at",
                params![pipeline, resource, value, run_id, now()],
            )
            .map(|_| ())
        })
    }

    async fn delete_states(&mut self, pipeline: &str, resources: &[String]) -> Result<u64, LoadError> {
        if self.read_states(pipeline).await?.is_empty() {
            return Ok(0);
        }
        self.with("reset the incremental state", |c| {
            if resources.is_empty() {
                return c
                    .execute("DELETE FROM \"_sluice_state\" WHERE pipeline = ?1", [pipeline])
                    .map(|n| n as u64);
            }
            let mut n = 0;
            for r in resources {
                n += c.execute(
                    "DELETE FROM \"_sluice_state\" WHERE pipeline = ?1 AND resource = ?2",
                    [pipeline, r.as_str()],
                )? as u64;
            }
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_file_and_a_busy_timeout() {
        let (path, busy) = parse_url("sqlite://.sluice/x.db").unwrap();
        assert_eq!(path, PathBuf::from(".sluice/x.db"));
        assert_eq!(busy, BUSY_TIMEOUT);
        let (path, busy) = parse_url("sqlite:///tmp/x.db?busy_timeout=250ms").unwrap();
        assert_eq!(path, PathBuf::from("/tmp/x.db"));
        assert_eq!(busy, Duration::from_millis(250));
        assert!(parse_url("sqlite://")
            .unwrap_err()
            .to_string()
            .contains("names no file"));
        assert!(parse_url("sqlite://x.db?mode=ro")
            .unwrap_err()
            .to_string()
            .contains("unknown option `mode=ro`"));
    }
}
