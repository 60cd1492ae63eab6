//! Schema sync: the DDL that brings the live tables to the spec (create tables, add
//! nullable columns), and the refusal of any other difference, before a row is written.

use std::collections::HashMap;

use tokio_postgres::Transaction;

use super::ddl::qualified;
use super::{connect, db, ddl, LoadError};
use crate::spec::ident::quote_ident;
use crate::spec::pipeline::{Pipeline, RUN_ID_COLUMN};
use crate::util::Secrets;

/// Create missing tables, add new nullable columns, and refuse any other difference.
/// Holds the schema's lock until the load commits: pipelines sharing a schema (or
/// creating it at the same time) change it one after the other.
pub(super) async fn sync_schema(tx: &Transaction<'_>, p: &Pipeline) -> Result<(), LoadError> {
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
pub(super) async fn plan_schema<C: tokio_postgres::GenericClient>(
    client: &C,
    p: &Pipeline,
) -> Result<Vec<String>, LoadError> {
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
