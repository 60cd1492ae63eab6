//! The warehouse boundary: what a load needs of a database, implemented by PostgreSQL
//! (binary COPY) and SQLite (prepared inserts). Everything above it is shared: mapping and
//! coercion, the write modes, `on_error`, the ledger, the incremental state, schema sync.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use super::ddl::Dialect;
use super::objects::{MapOutcome, Objects, Reject};
use super::record::RunMeta;
use super::LoadError;
use crate::spec::pipeline::{Resource, Table};

/// One resource's saved state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Saved {
    pub resource: String,
    /// The highest cursor loaded, in the resource's format.
    pub value: String,
    /// The run that loaded it, and when.
    pub run_id: String,
    pub updated_at: String,
}

/// A live table: its columns (name, declared type, NOT NULL) in order, and its primary key.
#[derive(Debug, Default)]
pub(super) struct LiveTable {
    pub columns: Vec<(String, String, bool)>,
    pub primary_key: Vec<String>,
}

/// One row of the ledger (`_sluice.runs`).
pub(super) struct LedgerRow<'a> {
    pub pipeline: &'a str,
    pub run_id: &'a str,
    pub spec_hash: &'a str,
    pub extracted_at: Option<&'a str>,
    /// RFC 3339.
    pub started_at: &'a str,
    /// `loaded` or `failed`.
    pub status: &'a str,
    pub error: Option<&'a str>,
    /// The tables' counts, as JSON.
    pub resources: &'a str,
}

/// A loaded run, from the ledger.
pub(super) struct LoadedRun {
    pub run_id: String,
    pub extracted_at: String,
    pub loaded_at: String,
    /// The tables' counts, as JSON.
    pub resources: String,
}

/// A database a pipeline loads into. A load's calls work inside the transaction `begin`
/// opens, but for `create_ledger` before it and `record_run` of a failed load after its
/// rollback; `read_states` and `delete_states` also serve `sluice state` on their own.
pub(super) trait Warehouse: Send {
    fn dialect(&self) -> Dialect;
    /// Where it is, for messages: host and database, or the file. Never a password.
    fn target(&self) -> &str;
    /// How to look at a loaded table from a shell, when that is one command.
    fn query_hint(&self, _table: &str) -> Option<String> {
        None
    }
    /// Create sluice's ledger, rejects and state tables when missing, committed at once.
    fn create_ledger(&mut self) -> impl Future<Output = Result<(), LoadError>> + Send;
    /// Open the load's transaction and take the pipeline's lock (one load of a pipeline at
    /// a time).
    fn begin(&mut self, pipeline: &str) -> impl Future<Output = Result<(), LoadError>> + Send;
    /// Commit; deferred foreign keys are checked here.
    fn commit(&mut self) -> impl Future<Output = Result<(), LoadError>> + Send;
    fn rollback(&mut self) -> impl Future<Output = ()> + Send;
    /// When `run_id` was loaded, if it was.
    fn loaded_at(
        &mut self,
        pipeline: &str,
        run_id: &str,
    ) -> impl Future<Output = Result<Option<String>, LoadError>> + Send;
    /// The loaded runs of `pipeline` extracted after `extracted_at` (RFC 3339), newest
    /// extraction first.
    fn loaded_after(
        &mut self,
        pipeline: &str,
        extracted_at: &str,
    ) -> impl Future<Output = Result<Vec<LoadedRun>, LoadError>> + Send;
    fn record_run(&mut self, row: &LedgerRow<'_>) -> impl Future<Output = Result<(), LoadError>> + Send;
    fn record_rejects(
        &mut self,
        pipeline: &str,
        run_id: &str,
        resource: &str,
        rejects: &[Reject],
    ) -> impl Future<Output = Result<(), LoadError>> + Send;
    /// The live tables of the pipeline's schema, by name (sluice's own excluded).
    fn live_tables(
        &mut self,
        schema: &str,
    ) -> impl Future<Output = Result<HashMap<String, LiveTable>, LoadError>> + Send;
    /// Whether a table of the schema holds any row.
    fn has_rows(&mut self, schema: &str, table: &str) -> impl Future<Output = Result<bool, LoadError>> + Send;
    /// Run schema sync's DDL, holding the schema's lock until the load commits.
    fn apply_ddl(&mut self, schema: &str, statements: &[String]) -> impl Future<Output = Result<(), LoadError>> + Send;
    /// Run one query of the load; its rows, each value as text (`None` for null).
    fn query(
        &mut self,
        sql: &str,
        action: &str,
    ) -> impl Future<Output = Result<Vec<Vec<Option<String>>>, LoadError>> + Send;
    /// Run one statement of the load; the rows it changed.
    fn execute(&mut self, sql: &str, action: &str) -> impl Future<Output = Result<u64, LoadError>> + Send;
    /// Map the records of `objects` and write their rows: merge tables into their staging
    /// tables, the others into the tables.
    fn write_rows(
        &mut self,
        schema: &str,
        resource: &Resource,
        objects: Objects,
        meta: &RunMeta,
    ) -> impl Future<Output = Result<MapOutcome, LoadError>> + Send;
    /// Upsert a merge table's staged rows on its primary key, the last row of a key
    /// winning; (inserted, updated).
    fn merge(
        &mut self,
        schema: &str,
        t: &Table,
        staging: &str,
    ) -> impl Future<Output = Result<(u64, u64), LoadError>> + Send;
    /// The saved incremental states of a pipeline (none when it has no state table yet).
    fn read_states(
        &mut self,
        pipeline: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, Saved>, LoadError>> + Send;
    fn save_state(
        &mut self,
        pipeline: &str,
        resource: &str,
        value: &str,
        run_id: &str,
    ) -> impl Future<Output = Result<(), LoadError>> + Send;
    /// Remove the states of `resources` (all when empty); how many.
    fn delete_states(
        &mut self,
        pipeline: &str,
        resources: &[String],
    ) -> impl Future<Output = Result<u64, LoadError>> + Send;
}
