//! `write: merge`, the part every warehouse shares: the staging tables' names and extra
//! columns, the upsert's column list and `ON CONFLICT` action (the same SQL in PostgreSQL
//! and SQLite), and the removal of the nested rows a loaded parent no longer holds.

use super::warehouse::Warehouse;
use super::LoadError;
use crate::spec::ident::quote_ident;
use crate::spec::pipeline::{Resource, Table, ValueSource, WriteMode, RUN_ID_COLUMN};

/// The staging table of a resource's table `i` under `merge`.
pub(super) fn temp_name(i: usize) -> String {
    format!("_sluice_tmp_{i}")
}

/// The columns a merge table's staging table has beyond the table's own: the row's
/// ordinal (the last row of a key wins) and, for a nested table, its record's ordinal
/// (the rows of a record superseded by a later one of the same key are dropped).
pub(super) fn staging_columns(t: &Table) -> &'static [&'static str] {
    match (t.write, t.parent) {
        (WriteMode::Merge, None) => &["_sluice_ord"],
        (WriteMode::Merge, Some(_)) => &["_sluice_ord", "_sluice_rec"],
        _ => &[],
    }
}

/// The columns a merge writes: the table's, and `_sluice_run_id` when it has it.
pub(super) fn merge_columns(t: &Table) -> Vec<String> {
    let mut cols: Vec<String> = t.columns.iter().map(|c| quote_ident(&c.name)).collect();
    if t.run_id_column {
        cols.push(quote_ident(RUN_ID_COLUMN));
    }
    cols
}

/// The upsert's `ON CONFLICT` action: every column but the key takes the new value.
pub(super) fn on_conflict(t: &Table, cols: &[String]) -> String {
    let pk: Vec<String> = t.primary_key.iter().map(|k| quote_ident(k)).collect();
    let updates: Vec<String> = cols
        .iter()
        .filter(|c| !pk.contains(c))
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    if updates.is_empty() {
        format!("({}) DO NOTHING", pk.join(", "))
    } else {
        format!("({}) DO UPDATE SET {}", pk.join(", "), updates.join(", "))
    }
}

/// Under `merge`, a parent record's elements are its nested rows: the rows of nested
/// table `i` whose parent this load holds but whose key it no longer holds are removed
/// (a label removed at the source leaves the table too). Returns how many.
pub(super) async fn remove_gone_children<W: Warehouse>(
    w: &mut W,
    schema: &str,
    resource: &Resource,
    i: usize,
) -> Result<u64, LoadError> {
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
        link.push(quote_ident(&c.name));
    }
    let target = w.dialect().table(schema, &t.name);
    let keys: Vec<String> = parent.primary_key.iter().map(|k| quote_ident(k)).collect();
    let same: Vec<String> = t
        .primary_key
        .iter()
        .map(|k| format!("s.{0} = {target}.{0}", quote_ident(k)))
        .collect();
    // Row values and correlated subqueries: the same SQL in PostgreSQL and SQLite.
    let sql = format!(
        "DELETE FROM {target} WHERE ({}) IN (SELECT {} FROM {}) AND NOT EXISTS (SELECT 1 FROM {} s WHERE {})",
        link.join(", "),
        keys.join(", "),
        quote_ident(&temp_name(pi)),
        quote_ident(&temp_name(i)),
        same.join(" AND ")
    );
    w.execute(
        &sql,
        &format!("remove the rows of `{}` its parents no longer hold", t.name),
    )
    .await
}
