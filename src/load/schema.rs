//! Schema sync: the DDL that brings the live tables to the spec (create tables, add
//! nullable columns), and the refusal of any other difference, before a row is written.

use std::collections::HashMap;

use super::ddl::{self, Dialect};
use super::open::{open, with_warehouse};
use super::warehouse::{LiveTable, Warehouse};
use super::LoadError;
use crate::spec::pipeline::{Pipeline, RUN_ID_COLUMN};
use crate::util::Secrets;

/// Create missing tables, add new nullable columns, and refuse any other difference.
pub(super) async fn sync_schema<W: Warehouse>(w: &mut W, p: &Pipeline) -> Result<(), LoadError> {
    let schema = &p.warehouse().schema;
    let live = w.live_tables(schema).await?;
    let statements = plan_schema(w.dialect(), &live, p)?;
    w.apply_ddl(schema, &statements).await
}

/// Reach the warehouse and compute the schema plan, changing nothing: a connection that
/// fails, or a live table the spec cannot load into, stops a run before it reads the API.
pub async fn preflight(p: &Pipeline, warehouse_url: &str, secrets: &Secrets) -> Result<(), LoadError> {
    let schema = &p.warehouse().schema;
    with_warehouse!(open(warehouse_url, secrets).await?, w => {
        let live = w.live_tables(schema).await?;
        plan_schema(w.dialect(), &live, p)?;
        // An append table keyed on a primary key, of a resource that reads every record
        // each run: the run would fail on the first duplicate key, after extracting it all.
        let mut problems = Vec::new();
        for r in p.resources().iter().filter(|r| r.incremental.is_none()) {
            for t in r.tables.iter().filter(|t| t.parent.is_none() && t.append_collides()) {
                if live.contains_key(&t.name) && w.has_rows(schema, &t.name).await? {
                    problems.push(format!(
                        "table `{}` is `write: append` with primary key ({}) and already holds rows; resource `{}` reads all its records again each run, so this run would fail on duplicate keys; use `write: merge`",
                        t.name,
                        t.primary_key.join(", "),
                        r.name
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(LoadError::Refused(problems.join("; ")))
        }
    })
}

/// The DDL that brings the live tables to the spec (create tables, add nullable columns),
/// or every difference it cannot make ([`LoadError::SchemaDrift`]).
pub(super) fn plan_schema(
    d: Dialect,
    live: &HashMap<String, LiveTable>,
    p: &Pipeline,
) -> Result<Vec<String>, LoadError> {
    let schema = &p.warehouse().schema;
    let mut problems = Vec::new();
    let mut statements = Vec::new();
    for t in ddl::ordered_tables(p) {
        let Some(table) = live.get(&t.name) else {
            statements.push(ddl::create_table(d, schema, t));
            statements.push(ddl::comments(d, schema, t));
            continue;
        };
        let cols = &table.columns;
        for c in &t.columns {
            let spec_type = d.column_type(c.column_type);
            match cols.iter().find(|(n, _, _)| n == &c.name) {
                None if c.nullable => statements.extend(ddl::add_column(d, schema, t, c)),
                None => problems.push(format!(
                    "table `{}`: new column `{}` is NOT NULL; add it as nullable or migrate the table by hand",
                    t.name, c.name
                )),
                Some((_, ty, _)) if !ty.eq_ignore_ascii_case(spec_type) => problems.push(format!(
                    "table `{}`: column `{}` is {ty} in the database but {spec_type} in the spec",
                    t.name, c.name,
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
            statements.push(ddl::add_run_id_column(d, schema, t));
        }
        if table.primary_key != t.primary_key {
            problems.push(format!(
                "table `{}`: primary key is ({}) in the database but ({}) in the spec",
                t.name,
                table.primary_key.join(", "),
                t.primary_key.join(", ")
            ));
        }
    }
    if !problems.is_empty() {
        return Err(LoadError::SchemaDrift { problems });
    }
    statements.retain(|s| !s.is_empty());
    Ok(statements)
}
