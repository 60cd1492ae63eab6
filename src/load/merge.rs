//! `write: merge`, the part every warehouse shares: the removal of the nested rows a
//! loaded parent no longer holds. (The upsert itself is each warehouse's own SQL.)

use super::resource::temp_name;
use super::warehouse::Warehouse;
use super::LoadError;
use crate::spec::ident::quote_ident;
use crate::spec::pipeline::{Resource, ValueSource, WriteMode};

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
