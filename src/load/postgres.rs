//! The PostgreSQL warehouse: rows stream into binary COPY (a table at a time, switching as
//! chunks of another table come, since one connection runs one COPY at a time); merges upsert from
//! temporary tables; locks are advisory locks held until the transaction ends.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::Client;

use super::ddl::Dialect;
use super::merge::{merge_columns, on_conflict, staging_columns, temp_name};
use super::objects::{jsonb_record, map_objects, mapping_threads, MapOutcome, Objects, Reject, RowSink};
use super::record::{encode_row, RunMeta, COPY_HEADER, COPY_TRAILER};
use super::warehouse::{LedgerRow, LiveTable, LoadedRun, Saved, Warehouse};
use super::{connect, LoadError};
use crate::spec::ident::quote_ident;
use crate::spec::pipeline::{Resource, Table, WriteMode, RUN_ID_COLUMN};
use crate::util::{clip, Secrets};
use crate::value::Cell;

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

/// The advisory lock key under which sluice creates its ledger.
const LEDGER_LOCK: i64 = 0x511C_EDD1;

/// The ledger, rejects and state tables.
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
CREATE TABLE IF NOT EXISTS "_sluice"."state" (
    "pipeline" text NOT NULL,
    "resource" text NOT NULL,
    "value" text NOT NULL,
    "run_id" text NOT NULL,
    "updated_at" timestamp with time zone NOT NULL DEFAULT now(),
    PRIMARY KEY ("pipeline", "resource")
);
"#;

pub(super) struct Postgres {
    client: Client,
    target: String,
}

impl Postgres {
    pub(super) async fn connect(url: &str, secrets: &Secrets) -> Result<Self, LoadError> {
        let (client, target) = connect::connect(url, secrets).await?;
        Ok(Postgres { client, target })
    }
}

/// Appends and replaces COPY straight into the table; merges into its staging table.
fn copy_sql(schema: &str, t: &Table, i: usize) -> String {
    let mut cols: Vec<String> = t.columns.iter().map(|c| quote_ident(&c.name)).collect();
    if t.run_id_column {
        cols.push(quote_ident(RUN_ID_COLUMN));
    }
    let target = if t.write == WriteMode::Merge {
        cols.extend(staging_columns(t).iter().map(|c| quote_ident(c)));
        quote_ident(&temp_name(i))
    } else {
        Dialect::Postgres.table(schema, &t.name)
    };
    format!("COPY {target} ({}) FROM STDIN (FORMAT binary)", cols.join(", "))
}

/// Rows as binary COPY, each table's in chunks of its own; a full chunk goes, tagged
/// with its table, to the connection, which COPYs into one table at a time.
struct CopySink {
    sender: tokio::sync::mpsc::Sender<(usize, Vec<u8>)>,
    /// Per table, the rows waiting to be sent.
    chunks: Vec<Vec<u8>>,
}

impl CopySink {
    fn new(tables: usize, sender: tokio::sync::mpsc::Sender<(usize, Vec<u8>)>) -> Self {
        CopySink {
            sender,
            chunks: (0..tables).map(|_| Vec::new()).collect(),
        }
    }
}

impl RowSink for CopySink {
    /// Send the rows that wait (the COPY side ends the streams once every thread is done).
    fn finish(self) -> Result<(), LoadError> {
        for (table, chunk) in self.chunks.into_iter().enumerate() {
            if !chunk.is_empty() && self.sender.blocking_send((table, chunk)).is_err() {
                break;
            }
        }
        Ok(())
    }

    fn row(&mut self, table: usize, cells: &[Cell], run_id: Option<&str>, ordinals: &[i64]) -> Result<bool, LoadError> {
        let chunk = &mut self.chunks[table];
        if chunk.capacity() == 0 {
            chunk.reserve(COPY_CHUNK + 4096);
        }
        encode_row(cells, run_id, ordinals, chunk);
        if chunk.len() >= COPY_CHUNK {
            let full = std::mem::take(chunk);
            return Ok(self.sender.blocking_send((table, full)).is_ok());
        }
        Ok(true)
    }
}

/// The size of a chunk of COPY data.
const COPY_CHUNK: usize = 512 << 10;

/// The most chunks the COPY side holds waiting for their table's turn (6 MiB).
const HELD_CHUNKS: usize = 12;

/// Whose turn it is on the connection, which runs one COPY at a time: the table under way
/// goes on while its chunks come; once the other tables' chunks fill what is held (or all
/// are in), the one with the most waiting gets its turn (ending the COPY under way and
/// starting that table's). Nested rows so go to the server while the records are mapped,
/// not after, in few COPY statements.
struct Turns {
    waiting: Vec<std::collections::VecDeque<Vec<u8>>>,
    held: usize,
    closed: bool,
}

impl Turns {
    fn new(tables: usize) -> Self {
        Turns {
            waiting: vec![Default::default(); tables],
            held: 0,
            closed: false,
        }
    }

    /// The next chunk to send, and its table, with `under_way` the table whose COPY is
    /// open; `None` once every chunk is sent.
    async fn next(
        &mut self,
        receiver: &mut tokio::sync::mpsc::Receiver<(usize, Vec<u8>)>,
        under_way: Option<usize>,
    ) -> Option<(usize, Vec<u8>)> {
        use tokio::sync::mpsc::error::TryRecvError;
        while !self.closed && self.held < HELD_CHUNKS {
            // Wait for more while the table under way has none waiting: a switch comes
            // only once the other tables' chunks fill what is held.
            let starved = under_way.is_some_and(|t| self.waiting[t].is_empty());
            let next = if self.held == 0 || starved {
                receiver.recv().await
            } else {
                match receiver.try_recv() {
                    Ok(next) => Some(next),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => None,
                }
            };
            match next {
                Some((table, chunk)) => {
                    self.waiting[table].push_back(chunk);
                    self.held += 1;
                }
                None => self.closed = true,
            }
        }
        let table = match under_way {
            Some(t) if !self.waiting[t].is_empty() => t,
            _ => (0..self.waiting.len())
                .filter(|t| !self.waiting[*t].is_empty())
                .max_by_key(|t| self.waiting[*t].len())?,
        };
        self.held -= 1;
        Some((table, self.waiting[table].pop_front()?))
    }
}

/// The COPY into one table under way on the connection.
type Copying = std::pin::Pin<Box<tokio_postgres::CopyInSink<Bytes>>>;

/// Start a COPY into table `i` of a resource, `t`, and send the header.
async fn start_copy(client: &Client, schema: &str, t: &Table, i: usize) -> Result<Copying, LoadError> {
    let mut sink = Box::pin(
        client
            .copy_in(&copy_sql(schema, t, i))
            .await
            .map_err(db(format!("start COPY into `{}`", t.name)))?,
    );
    sink.send(Bytes::from_static(COPY_HEADER))
        .await
        .map_err(db(format!("COPY into `{}`", t.name)))?;
    Ok(sink)
}

/// End a COPY: the trailer, then the server's answer.
async fn end_copy(t: &Table, mut sink: Copying) -> Result<(), LoadError> {
    sink.send(Bytes::from_static(COPY_TRAILER))
        .await
        .map_err(db(format!("COPY into `{}`", t.name)))?;
    sink.as_mut()
        .finish()
        .await
        .map_err(db(format!("COPY into `{}`", t.name)))?;
    Ok(())
}

impl Warehouse for Postgres {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn target(&self) -> &str {
        &self.target
    }

    async fn create_ledger(&mut self) -> Result<(), LoadError> {
        // DDL of a fresh database races between concurrent first runs (CREATE ... IF NOT
        // EXISTS is not safe against a concurrent creator): every DDL sluice runs is done
        // under an advisory lock, so the second run waits and then finds what the first made.
        let ddl = self.client.transaction().await.map_err(db("begin the ledger set-up"))?;
        ddl.batch_execute(&format!("SELECT pg_advisory_xact_lock({LEDGER_LOCK}); {LEDGER_DDL}"))
            .await
            .map_err(db("create the _sluice ledger"))?;
        ddl.commit().await.map_err(db("create the _sluice ledger"))
    }

    async fn begin(&mut self, pipeline: &str) -> Result<(), LoadError> {
        self.client
            .batch_execute("BEGIN; SET CONSTRAINTS ALL DEFERRED")
            .await
            .map_err(db("begin the load transaction"))?;
        self.client
            .execute(
                "SELECT pg_advisory_xact_lock(hashtext('sluice:' || $1::text))",
                &[&pipeline],
            )
            .await
            .map_err(db("lock the pipeline"))?;
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), LoadError> {
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(db("commit the load (deferred foreign keys are checked here)"))
    }

    async fn rollback(&mut self) {
        let _ = self.client.batch_execute("ROLLBACK").await;
    }

    async fn loaded_at(&mut self, pipeline: &str, run_id: &str) -> Result<Option<String>, LoadError> {
        let row = self
            .client
            .query_opt(
                "SELECT finished_at::text FROM \"_sluice\".\"runs\" WHERE pipeline = $1 AND run_id = $2 AND status IN ('loaded', 'limited') ORDER BY load_id DESC LIMIT 1",
                &[&pipeline, &run_id],
            )
            .await
            .map_err(db("read the ledger"))?;
        Ok(row.map(|r| r.get::<_, Option<String>>(0).unwrap_or_default()))
    }

    async fn loaded_after(&mut self, pipeline: &str, extracted_at: &str) -> Result<Vec<LoadedRun>, LoadError> {
        let rows = self
            .client
            .query(
                "SELECT run_id, extracted_at::text, coalesce(finished_at::text, ''), resources::text FROM \"_sluice\".\"runs\" \
                 WHERE pipeline = $1 AND status IN ('loaded', 'limited') AND extracted_at > $2::text::timestamptz ORDER BY extracted_at DESC",
                &[&pipeline, &extracted_at],
            )
            .await
            .map_err(db("read the ledger"))?;
        Ok(rows
            .iter()
            .map(|r| LoadedRun {
                run_id: r.get(0),
                extracted_at: r.get(1),
                loaded_at: r.get(2),
                resources: r.get(3),
            })
            .collect())
    }

    async fn record_run(&mut self, r: &LedgerRow<'_>) -> Result<(), LoadError> {
        self.client
            .execute(
                "INSERT INTO \"_sluice\".\"runs\" (pipeline, run_id, spec_hash, extracted_at, started_at, finished_at, status, error, resources) \
                 VALUES ($1, $2, $3, $4::text::timestamptz, $5::text::timestamptz, now(), $6, $7, $8::text::jsonb)",
                &[&r.pipeline, &r.run_id, &r.spec_hash, &r.extracted_at, &r.started_at, &r.status, &r.error, &r.resources],
            )
            .await
            .map_err(db("write the ledger"))?;
        Ok(())
    }

    async fn record_rejects(
        &mut self,
        pipeline: &str,
        run_id: &str,
        resource: &str,
        rejects: &[Reject],
    ) -> Result<(), LoadError> {
        for r in rejects {
            self.client.execute(
                "INSERT INTO \"_sluice\".\"rejects\" (pipeline, run_id, resource, table_name, object_key, record_number, column_name, value, reason, record) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb)",
                &[&pipeline, &run_id, &resource, &r.table, &r.object, &(r.record as i64), &r.column, &clip(&r.value, 1000), &r.reason, &jsonb_record(&r.raw)],
            )
            .await
            .map_err(db("write the rejects table"))?;
        }
        Ok(())
    }

    async fn live_tables(&mut self, schema: &str) -> Result<HashMap<String, LiveTable>, LoadError> {
        let rows = self.client
            .query(
                "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull \
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
                &[&schema],
            )
            .await
            .map_err(db("read the live tables"))?;
        let mut live: HashMap<String, LiveTable> = HashMap::new();
        for r in rows {
            live.entry(r.get(0))
                .or_default()
                .columns
                .push((r.get(1), r.get(2), r.get(3)));
        }
        let pk_rows = self
            .client
            .query(
                "SELECT c.relname::text, array_agg(a.attname::text ORDER BY k.ord) FROM pg_constraint con \
                 JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
                 WHERE n.nspname = $1 AND con.contype = 'p' GROUP BY c.relname",
                &[&schema],
            )
            .await
            .map_err(db("read the live primary keys"))?;
        for r in pk_rows {
            if let Some(t) = live.get_mut(&r.get::<_, String>(0)) {
                t.primary_key = r.get(1);
            }
        }
        Ok(live)
    }

    async fn apply_ddl(&mut self, schema: &str, statements: &[String]) -> Result<(), LoadError> {
        // Pipelines sharing a schema (or creating it at the same time) change it one after
        // the other: the lock is held until the load commits.
        self.client
            .execute(
                "SELECT pg_advisory_xact_lock(hashtext('sluice:schema:' || $1::text))",
                &[&schema],
            )
            .await
            .map_err(db(format!("lock schema `{schema}`")))?;
        self.client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema)))
            .await
            .map_err(db(format!("create schema `{schema}`")))?;
        if !statements.is_empty() {
            self.client
                .batch_execute(&statements.concat())
                .await
                .map_err(db(format!("create or evolve the tables of schema `{schema}`")))?;
        }
        Ok(())
    }

    async fn execute(&mut self, sql: &str, action: &str) -> Result<u64, LoadError> {
        self.client.execute(sql, &[]).await.map_err(db(action))
    }

    async fn query(&mut self, sql: &str, action: &str) -> Result<Vec<Vec<Option<String>>>, LoadError> {
        let messages = self.client.simple_query(sql).await.map_err(db(action))?;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect())
    }

    async fn has_rows(&mut self, schema: &str, table: &str) -> Result<bool, LoadError> {
        let sql = format!("SELECT 1 FROM {} LIMIT 1", Dialect::Postgres.table(schema, table));
        let row = self
            .client
            .query_opt(&sql, &[])
            .await
            .map_err(db("look into a table"))?;
        Ok(row.is_some())
    }

    async fn write_rows(
        &mut self,
        schema: &str,
        resource: &Resource,
        objects: Objects,
        meta: &RunMeta,
    ) -> Result<MapOutcome, LoadError> {
        let client = &self.client;
        let (sender, receiver) = tokio::sync::mpsc::channel::<(usize, Vec<u8>)>(4);
        let sinks = (0..mapping_threads())
            .map(|_| CopySink::new(resource.tables.len(), sender.clone()))
            .collect();
        drop(sender);
        let copying = async {
            // Owned here so that a COPY failure drops it at once: the mappers' next send
            // then fails and they stop, which in turn stops the feeding.
            let mut receiver = receiver;
            let mut bar = crate::progress::LoadBar::new(&resource.name);
            let mut turns = Turns::new(resource.tables.len());
            let mut open: Option<(usize, Copying)> = None;
            while let Some((table, chunk)) = turns.next(&mut receiver, open.as_ref().map(|(t, _)| *t)).await {
                bar.sent(chunk.len() as u64);
                let t = &resource.tables[table];
                let sink = match &mut open {
                    Some((under_way, sink)) if *under_way == table => sink,
                    _ => {
                        if let Some((ended, sink)) = open.take() {
                            end_copy(&resource.tables[ended], sink).await?;
                        }
                        &mut open.insert((table, start_copy(client, schema, t, table).await?)).1
                    }
                };
                sink.send(Bytes::from(chunk))
                    .await
                    .map_err(db(format!("COPY into `{}`", t.name)))?;
            }
            // Every thread is done (a failed one fails the load before it commits).
            if let Some((ended, sink)) = open.take() {
                end_copy(&resource.tables[ended], sink).await?;
            }
            Ok::<(), LoadError>(())
        };
        let (mapped, copy_result) = tokio::join!(map_objects(resource, objects, meta, sinks), copying);
        let outcome = mapped?;
        copy_result?;
        Ok(outcome)
    }

    async fn merge(&mut self, schema: &str, t: &Table, staging: &str) -> Result<(u64, u64), LoadError> {
        let target = Dialect::Postgres.table(schema, &t.name);
        let cols = merge_columns(t);
        let list = cols.join(", ");
        let tmp = quote_ident(staging);
        let pk: Vec<String> = t.primary_key.iter().map(|k| quote_ident(k)).collect();
        let pk = pk.join(", ");
        let sql = format!(
            "WITH ins AS (INSERT INTO {target} ({list}) SELECT DISTINCT ON ({pk}) {list} FROM {tmp} ORDER BY {pk}, \"_sluice_ord\" DESC \
             ON CONFLICT {} RETURNING (xmax = 0) AS inserted) \
             SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM ins",
            on_conflict(t, &cols)
        );
        let row = self
            .client
            .query_one(&sql, &[])
            .await
            .map_err(db(format!("merge rows into `{}`", t.name)))?;
        Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
    }

    async fn read_states(&mut self, pipeline: &str) -> Result<BTreeMap<String, Saved>, LoadError> {
        let exists: Option<String> = self
            .client
            .query_one("SELECT to_regclass('\"_sluice\".\"state\"')::text", &[])
            .await
            .map_err(db("read the incremental state"))?
            .get(0);
        if exists.is_none() {
            return Ok(BTreeMap::new());
        }
        let rows = self.client
            .query(
                "SELECT resource, value, run_id, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
                 FROM \"_sluice\".\"state\" WHERE pipeline = $1 ORDER BY resource",
                &[&pipeline],
            )
            .await
            .map_err(db("read the incremental state"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let saved = Saved {
                    resource: r.get(0),
                    value: r.get(1),
                    run_id: r.get(2),
                    updated_at: r.get(3),
                };
                (saved.resource.clone(), saved)
            })
            .collect())
    }

    async fn save_state(&mut self, pipeline: &str, resource: &str, value: &str, run_id: &str) -> Result<(), LoadError> {
        self.client
            .execute(
                "INSERT INTO \"_sluice\".\"state\" (pipeline, resource, value, run_id, updated_at) VALUES ($1, $2, $3, $4, now()) \
                 ON CONFLICT (pipeline, resource) DO UPDATE SET value = EXCLUDED.value, run_id = EXCLUDED.run_id, updated_at = now()",
                &[&pipeline, &resource, &value, &run_id],
            )
            .await
            .map_err(db("save the incremental state"))?;
        Ok(())
    }

    async fn delete_states(&mut self, pipeline: &str, resources: &[String]) -> Result<u64, LoadError> {
        if self.read_states(pipeline).await?.is_empty() {
            return Ok(0);
        }
        let all = resources.is_empty();
        self.client
            .execute(
                "DELETE FROM \"_sluice\".\"state\" WHERE pipeline = $1 AND ($2 OR resource = ANY($3))",
                &[&pipeline, &all, &resources],
            )
            .await
            .map_err(db("reset the incremental state"))
    }
}
