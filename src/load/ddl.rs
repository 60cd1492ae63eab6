//! The DDL a pipeline implies: schema, tables, keys, deferrable foreign keys, comments.
//! Pure and deterministic, so `sluice ddl` output can be reviewed and snapshot-tested.

use std::collections::HashSet;

use crate::spec::ident::{quote_ident, quote_literal};
use crate::spec::pipeline::{Pipeline, Table, RUN_ID_COLUMN};

/// Tables in an order where every table comes after the tables it references.
pub fn ordered_tables(p: &Pipeline) -> Vec<&Table> {
    let tables: Vec<&Table> = p.tables().collect();
    let mut placed: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    while out.len() < tables.len() {
        let before = out.len();
        for t in &tables {
            if placed.contains(t.name.as_str()) {
                continue;
            }
            let ready = t
                .columns
                .iter()
                .filter_map(|c| c.references.as_ref())
                .all(|r| r.table == t.name || placed.contains(r.table.as_str()));
            if ready {
                placed.insert(&t.name);
                out.push(*t);
            }
        }
        if out.len() == before {
            // Compile rejects cycles; keep whatever is left in spec order regardless.
            out.extend(tables.iter().filter(|t| !placed.contains(t.name.as_str())).copied());
            break;
        }
    }
    out
}

/// A constraint name: PostgreSQL truncates names to 63 bytes, so do it ourselves,
/// deterministically and on a character boundary.
fn constraint_name(parts: &[&str], suffix: &str) -> String {
    let mut name = format!("{}_{suffix}", parts.join("_"));
    while name.len() > 63 {
        let cut = parts.join("_");
        let mut keep = cut.len() - (name.len() - 63);
        while !cut.is_char_boundary(keep) {
            keep -= 1;
        }
        name = format!("{}_{suffix}", &cut[..keep]);
    }
    name
}

pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// `CREATE TABLE IF NOT EXISTS` for one table.
pub fn create_table(schema: &str, t: &Table) -> String {
    let mut lines = Vec::new();
    for c in &t.columns {
        let not_null = if c.nullable { "" } else { " NOT NULL" };
        lines.push(format!(
            "    {} {}{not_null}",
            quote_ident(&c.name),
            c.column_type.sql()
        ));
    }
    if t.run_id_column {
        lines.push(format!("    {} text NOT NULL", quote_ident(RUN_ID_COLUMN)));
    }
    if !t.primary_key.is_empty() {
        let cols: Vec<String> = t.primary_key.iter().map(|k| quote_ident(k)).collect();
        lines.push(format!(
            "    CONSTRAINT {} PRIMARY KEY ({})",
            quote_ident(&constraint_name(&[&t.name], "pkey")),
            cols.join(", ")
        ));
    }
    for c in &t.columns {
        if let Some(r) = &c.references {
            lines.push(format!(
                "    CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) DEFERRABLE INITIALLY DEFERRED",
                quote_ident(&constraint_name(&[&t.name, &c.name], "fkey")),
                quote_ident(&c.name),
                qualified(schema, &r.table),
                quote_ident(&r.column)
            ));
        }
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\n{}\n);\n",
        qualified(schema, &t.name),
        lines.join(",\n")
    )
}

/// `COMMENT ON` statements for a table and its columns.
pub fn comments(schema: &str, t: &Table) -> String {
    let mut out = String::new();
    if let Some(d) = &t.description {
        out.push_str(&format!(
            "COMMENT ON TABLE {} IS {};\n",
            qualified(schema, &t.name),
            quote_literal(d)
        ));
    }
    for c in &t.columns {
        if let Some(d) = &c.description {
            out.push_str(&format!(
                "COMMENT ON COLUMN {}.{} IS {};\n",
                qualified(schema, &t.name),
                quote_ident(&c.name),
                quote_literal(d)
            ));
        }
    }
    if t.run_id_column {
        out.push_str(&format!(
            "COMMENT ON COLUMN {}.{} IS 'sluice run that last wrote this row';\n",
            qualified(schema, &t.name),
            quote_ident(RUN_ID_COLUMN)
        ));
    }
    out
}

/// The whole DDL script of a pipeline.
pub fn ddl(p: &Pipeline) -> String {
    let schema = &p.warehouse().schema;
    let mut out = format!(
        "-- DDL for sluice pipeline `{}`\nCREATE SCHEMA IF NOT EXISTS {};\n",
        p.name(),
        quote_ident(schema)
    );
    for t in ordered_tables(p) {
        out.push('\n');
        out.push_str(&create_table(schema, t));
        out.push_str(&comments(schema, t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_constraint_names_are_cut_to_63_bytes() {
        let long = "a".repeat(60);
        let n = constraint_name(&[&long, "column"], "fkey");
        assert_eq!(n.len(), 63);
        assert!(n.ends_with("_fkey"));
        assert_eq!(constraint_name(&["t", "c"], "fkey"), "t_c_fkey");
    }
}
