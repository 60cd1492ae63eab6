//! The SQLite warehouse: an embedded database file, nothing to install or start. A load is
//! one `BEGIN IMMEDIATE` transaction (the write lock is the pipeline's lock: a second
//! writer waits up to the busy timeout, then fails with "database is locked"); rows go
//! through prepared inserts; WAL lets readers query while a load runs; foreign keys are
//! on and checked at commit.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::ddl::Dialect;
use super::merge::{merge_columns, on_conflict, staging_columns, temp_name};
use super::objects::{jsonb_record, map_objects, mapping_threads, MapOutcome, Objects, Reject, RowSink};
use super::record::RunMeta;
use super::warehouse::{LedgerRow, LiveTable, LoadedRun, Saved, Warehouse};
use super::LoadError;
use crate::spec::ident::quote_ident;
use crate::spec::location::WarehouseKind;
use crate::spec::pipeline::{Resource, Table, WriteMode};
use crate::util::clip;
use crate::value::Cell;

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

pub(super) struct Sqlite {
    /// Taken by the mapping thread while rows are written.
    conn: Option<Connection>,
    path: PathBuf,
    target: String,
    busy: Duration,
}

/// The file of a `sqlite://` URL (relative to the working directory, or absolute with a
/// third slash) and its busy timeout (`?busy_timeout=30s`).
fn parse_url(url: &str) -> Result<(PathBuf, Duration), LoadError> {
    let WarehouseKind::Sqlite {
        file: path,
        options: query,
    } = WarehouseKind::of(url)
    else {
        return Err(LoadError::Connect("not a SQLite URL".into()));
    };
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
        if locked {
            LoadError::Locked {
                action: action.to_string(),
                message: format!(
                    "database is locked: another run or program is writing to it, and it stayed locked for the busy timeout ({} s; `?busy_timeout=` in the URL changes it)",
                    busy.as_secs_f64()
                ),
            }
        } else {
            LoadError::Db {
                action: action.to_string(),
                message: e.to_string(),
            }
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl Sqlite {
    /// Open (creating when missing, with its folder) the database file of a `sqlite://` URL.
    pub(super) fn open(url: &str) -> Result<Self, LoadError> {
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
            // `regexp(pattern, text)`, for the `matches` expectation.
            conn.create_scalar_function(
                "regexp",
                2,
                rusqlite::functions::FunctionFlags::SQLITE_UTF8
                    | rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC,
                |ctx| {
                    let re = ctx.get_or_create_aux(0, |v| {
                        regex::Regex::new(v.as_str()?).map_err(|e| rusqlite::Error::UserFunctionError(Box::new(e)))
                    })?;
                    let text: Option<String> = ctx.get(1)?;
                    Ok(text.is_some_and(|t| re.is_match(&t)))
                },
            )?;
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
    fn with<T>(&self, action: &str, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, LoadError> {
        // Only a panicked writing thread keeps it; its transaction died with it.
        let conn = self.conn.as_ref().ok_or_else(|| LoadError::Db {
            action: action.to_string(),
            message: "the connection was lost with a failed loading thread".into(),
        })?;
        blocking(|| f(conn)).map_err(lite(action, self.busy))
    }
}

/// Rows between the mapping thread and the writing thread, packed in chunks: per row the
/// table index and per value a tag and its bytes. Mapping and inserting each take a core.
mod packed {
    use crate::value::Cell;

    pub(super) const NULL: u8 = 0;
    pub(super) const INT: u8 = 1;
    pub(super) const REAL: u8 = 2;
    pub(super) const TEXT: u8 = 3;
    /// Days from 0001-01-01 (CE day 1).
    pub(super) const DATE: u8 = 4;
    /// Microseconds from the Unix epoch, UTC.
    pub(super) const TIME: u8 = 5;

    pub(super) fn text(out: &mut Vec<u8>, s: &str) {
        out.push(TEXT);
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    pub(super) fn int(out: &mut Vec<u8>, n: i64) {
        out.push(INT);
        out.extend_from_slice(&n.to_le_bytes());
    }

    pub(super) fn cell(out: &mut Vec<u8>, c: &Cell) {
        use chrono::Datelike;
        match c {
            Cell::Null => out.push(NULL),
            Cell::Text(s) | Cell::Json(s) | Cell::Numeric(s) => text(out, s),
            Cell::Int(n) => int(out, i64::from(*n)),
            Cell::Big(n) => int(out, *n),
            Cell::Bool(b) => int(out, i64::from(*b)),
            Cell::Double(f) => {
                out.push(REAL);
                out.extend_from_slice(&f.to_le_bytes());
            }
            Cell::Date(d) => {
                out.push(DATE);
                out.extend_from_slice(&d.num_days_from_ce().to_le_bytes());
            }
            Cell::Time(t) => {
                out.push(TIME);
                out.extend_from_slice(&t.timestamp_micros().to_le_bytes());
            }
        }
    }

    /// Reads a chunk back.
    pub(super) struct Reader<'a> {
        pub buf: &'a [u8],
    }

    impl<'a> Reader<'a> {
        pub(super) fn take(&mut self, n: usize) -> &'a [u8] {
            let (head, rest) = self.buf.split_at(n);
            self.buf = rest;
            head
        }

        pub(super) fn u8(&mut self) -> u8 {
            self.take(1)[0]
        }

        pub(super) fn u16(&mut self) -> u16 {
            u16::from_le_bytes(self.take(2).try_into().expect("2 bytes"))
        }

        pub(super) fn i64(&mut self) -> i64 {
            i64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
        }

        pub(super) fn i32(&mut self) -> i32 {
            i32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
        }

        pub(super) fn str(&mut self) -> &'a str {
            let n = u32::from_le_bytes(self.take(4).try_into().expect("4 bytes")) as usize;
            std::str::from_utf8(self.take(n)).expect("packed from a str")
        }
    }
}

const PACKED_CHUNK: usize = 256 << 10;

/// The mapping thread's side: rows packed into chunks for the writing thread.
struct PackSink {
    sender: std::sync::mpsc::SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
}

impl PackSink {
    fn send(&mut self) -> bool {
        let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(PACKED_CHUNK + 4096));
        self.sender.send(full).is_ok()
    }
}

impl RowSink for PackSink {
    fn finish(mut self) -> Result<(), LoadError> {
        if !self.chunk.is_empty() {
            // A writer that stopped reports why.
            self.send();
        }
        Ok(())
    }

    fn row(&mut self, table: usize, cells: &[Cell], run_id: Option<&str>, ordinals: &[i64]) -> Result<bool, LoadError> {
        let values = cells.len() + usize::from(run_id.is_some()) + ordinals.len();
        self.chunk.push(table as u8);
        self.chunk.extend_from_slice(&(values as u16).to_le_bytes());
        for c in cells {
            packed::cell(&mut self.chunk, c);
        }
        if let Some(id) = run_id {
            packed::text(&mut self.chunk, id);
        }
        for o in ordinals {
            packed::int(&mut self.chunk, *o);
        }
        Ok(self.chunk.len() < PACKED_CHUNK || self.send())
    }
}

/// The writing thread's side: every packed row through one prepared insert per table
/// (into the table, or its staging table when it merges), until the mapping side is done.
fn insert_packed(
    conn: &Connection,
    resource: &Resource,
    chunks: std::sync::mpsc::Receiver<Vec<u8>>,
    busy: Duration,
) -> Result<(), LoadError> {
    let mut inserts = Vec::new();
    for (i, t) in resource.tables.iter().enumerate() {
        let mut cols = merge_columns(t);
        let target = if t.write == WriteMode::Merge {
            cols.extend(staging_columns(t).iter().map(|c| quote_ident(c)));
            quote_ident(&temp_name(i))
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
    for chunk in chunks {
        let mut r = packed::Reader { buf: &chunk };
        while !r.buf.is_empty() {
            let table = r.u8() as usize;
            let st = &mut inserts[table];
            let values = r.u16() as usize;
            (|| {
                for i in 1..=values {
                    match r.u8() {
                        packed::NULL => st.raw_bind_parameter(i, rusqlite::types::Null)?,
                        packed::INT => st.raw_bind_parameter(i, r.i64())?,
                        packed::REAL => st.raw_bind_parameter(i, f64::from_bits(r.i64() as u64))?,
                        packed::TEXT => st.raw_bind_parameter(i, r.str())?,
                        packed::DATE => {
                            let d = chrono::NaiveDate::from_num_days_from_ce_opt(r.i32()).expect("a packed date");
                            st.raw_bind_parameter(i, d.format("%Y-%m-%d").to_string())?
                        }
                        tag => {
                            debug_assert_eq!(tag, packed::TIME);
                            let t = chrono::DateTime::from_timestamp_micros(r.i64()).expect("a packed timestamp");
                            st.raw_bind_parameter(i, t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))?
                        }
                    }
                }
                st.raw_execute()
            })()
            .map_err(|e| lite(&format!("insert into `{}`", resource.tables[table].name), busy)(e))?;
        }
    }
    Ok(())
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
                "SELECT coalesce(finished_at, '') FROM \"_sluice_runs\" WHERE pipeline = ?1 AND run_id = ?2 AND status IN ('loaded', 'limited') ORDER BY load_id DESC LIMIT 1",
                params![pipeline, run_id],
                |r| r.get(0),
            )
            .optional()
        })
    }

    async fn loaded_after(&mut self, pipeline: &str, extracted_at: &str) -> Result<Vec<LoadedRun>, LoadError> {
        self.with("read the ledger", |c| {
            let mut stmt = c.prepare(
                "SELECT run_id, extracted_at, coalesce(finished_at, ''), resources FROM \"_sluice_runs\" \
                 WHERE pipeline = ?1 AND status IN ('loaded', 'limited') AND extracted_at > ?2 ORDER BY extracted_at DESC",
            )?;
            let rows = stmt.query_map(params![pipeline, extracted_at], |r| {
                Ok(LoadedRun {
                    run_id: r.get(0)?,
                    extracted_at: r.get(1)?,
                    loaded_at: r.get(2)?,
                    resources: r.get(3)?,
                })
            })?;
            rows.collect()
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

    async fn query(&mut self, sql: &str, action: &str) -> Result<Vec<Vec<Option<String>>>, LoadError> {
        self.with(action, |c| {
            let mut stmt = c.prepare(sql)?;
            let n = stmt.column_count();
            let rows = stmt.query_map([], |r| {
                (0..n)
                    .map(|i| {
                        use rusqlite::types::ValueRef;
                        Ok(match r.get_ref(i)? {
                            ValueRef::Null => None,
                            ValueRef::Integer(v) => Some(v.to_string()),
                            ValueRef::Real(v) => Some(v.to_string()),
                            ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
            })?;
            rows.collect()
        })
    }

    async fn has_rows(&mut self, schema: &str, table: &str) -> Result<bool, LoadError> {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", Dialect::Sqlite.table(schema, table));
        self.with("look into a table", |c| c.query_row(&sql, [], |r| r.get::<_, bool>(0)))
    }

    async fn write_rows(
        &mut self,
        _schema: &str,
        resource: &Resource,
        objects: Objects,
        meta: &RunMeta,
    ) -> Result<MapOutcome, LoadError> {
        let conn = self
            .conn
            .take()
            .ok_or_else(|| LoadError::Io("the SQLite connection was lost".into()))?;
        let (sender, chunks) = std::sync::mpsc::sync_channel(4);
        let sinks: Vec<PackSink> = (0..mapping_threads())
            .map(|_| PackSink {
                sender: sender.clone(),
                chunk: Vec::with_capacity(PACKED_CHUNK + 4096),
            })
            .collect();
        drop(sender);
        let (res, busy) = (resource.clone(), self.busy);
        // Dropping `chunks` (on an insert error) stops the mapper at its next send.
        let writer = tokio::task::spawn_blocking(move || {
            let written = insert_packed(&conn, &res, chunks, busy);
            (conn, written)
        });
        let (mapped, written) = tokio::join!(map_objects(resource, objects, meta, sinks), writer);
        let (conn, written) = written.map_err(|e| LoadError::Io(format!("the writing thread failed: {e}")))?;
        self.conn = Some(conn);
        written?;
        mapped
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
