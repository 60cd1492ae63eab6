//! `write: merge`: the upsert from a resource's temporary tables, and the removal of the
//! nested rows a loaded parent no longer holds.

use tokio_postgres::Transaction;

use super::copy::temp_name;
use super::ddl::qualified;
use super::{db, LoadError};
use crate::spec::ident::quote_ident;
use crate::spec::pipeline::{Resource, Table, WriteMode, RUN_ID_COLUMN};

/// Under `merge`, a parent record's elements are its nested rows: the rows of nested
/// table `i` whose parent this load holds but whose key it no longer holds are removed
/// (a label removed at the source leaves the table too). Returns how many.
pub(super) async fn remove_gone_children(
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
pub(super) async fn merge(tx: &Transaction<'_>, schema: &str, t: &Table, tmp: &str) -> Result<(u64, u64), LoadError> {
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
