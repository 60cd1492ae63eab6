//! The DDL a pipeline implies: schema, tables, keys, deferrable foreign keys, comments,
//! in PostgreSQL's or SQLite's dialect. Pure and deterministic, so `sluice ddl` output can
//! be reviewed and snapshot-tested.

use std::collections::HashSet;

use crate::spec::ident::{quote_ident, quote_literal};
use crate::spec::pipeline::{Column, Pipeline, Table, RUN_ID_COLUMN};
use crate::value::ColumnType;

/// The SQL a warehouse speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// A table's name in SQL: schema-qualified in PostgreSQL; SQLite has no schemas (a
    /// database is a file), so its tables are named alone.
    pub fn table(self, schema: &str, table: &str) -> String {
        match self {
            Dialect::Postgres => format!("{}.{}", quote_ident(schema), quote_ident(table)),
            Dialect::Sqlite => quote_ident(table),
        }
    }

    /// A column type's declared name. SQLite's are chosen for their affinity: `numeric`
    /// and `jsonb` are text (a NUMERIC affinity would round decimals to doubles and turn
    /// JSON numbers into numbers), timestamps and dates are ISO 8601 text.
    pub fn column_type(self, t: ColumnType) -> &'static str {
        match self {
            Dialect::Postgres => t.sql(),
            Dialect::Sqlite => match t {
                ColumnType::Text => "TEXT",
                ColumnType::Integer => "INTEGER",
                ColumnType::Bigint => "BIGINT",
                ColumnType::Numeric => "NUMERIC TEXT",
                ColumnType::Double => "REAL",
                ColumnType::Boolean => "BOOLEAN",
                ColumnType::Date => "DATE TEXT",
                ColumnType::Timestamptz => "TIMESTAMPTZ TEXT",
                ColumnType::Jsonb => "JSON TEXT",
            },
        }
    }

    /// The type of sluice's own text columns (`_sluice_run_id`).
    fn text(self) -> &'static str {
        self.column_type(ColumnType::Text)
    }

    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::Sqlite => "SQLite",
        }
    }
}

/// Tables in an order where every table comes after the tables it references.
pub(crate) fn ordered_tables(p: &Pipeline) -> Vec<&Table> {
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

/// A constraint name within PostgreSQL's 63 bytes. A longer one is cut, on a character
/// boundary, and given a short hash of the whole name, so that two names that agree in
/// their first 63 bytes stay two names (PostgreSQL would cut them into one).
pub(crate) fn constraint_name(parts: &[&str], suffix: &str) -> String {
    use sha2::Digest;
    let whole = parts.join("_");
    let name = format!("{whole}_{suffix}");
    if name.len() <= 63 {
        return name;
    }
    let hash = &hex::encode(sha2::Sha256::digest(name.as_bytes()))[..8];
    let mut keep = 63 - suffix.len() - hash.len() - 2;
    while !whole.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}_{hash}_{suffix}", &whole[..keep])
}

/// `CREATE TABLE IF NOT EXISTS` for one table.
pub(crate) fn create_table(d: Dialect, schema: &str, t: &Table) -> String {
    // SQLite has no COMMENT ON but keeps the CREATE statement's text, comments included:
    // there the descriptions go inline, where `.schema` shows them.
    let note = |text: Option<&str>| match (d, text) {
        (Dialect::Sqlite, Some(text)) => format!(" /* {} */", text.replace("*/", "* /").replace('\n', " ")),
        _ => String::new(),
    };
    let mut lines = Vec::new();
    for c in &t.columns {
        let not_null = if c.nullable { "" } else { " NOT NULL" };
        lines.push(format!(
            "    {} {}{not_null}{}",
            quote_ident(&c.name),
            d.column_type(c.column_type),
            note(c.description.as_deref())
        ));
    }
    if t.run_id_column {
        lines.push(format!(
            "    {} {} NOT NULL{}",
            quote_ident(RUN_ID_COLUMN),
            d.text(),
            note(Some(RUN_ID_DESCRIPTION))
        ));
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
        if let Some(r) = references(d, schema, c) {
            lines.push(format!(
                "    CONSTRAINT {} FOREIGN KEY ({}) {r}",
                quote_ident(&constraint_name(&[&t.name, &c.name], "fkey")),
                quote_ident(&c.name),
            ));
        }
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}\n{}\n);\n",
        d.table(schema, &t.name),
        note(t.description.as_deref()),
        lines.join(",\n")
    )
}

const RUN_ID_DESCRIPTION: &str = "sluice run that last wrote this row";

/// A column's `REFERENCES` clause: checked at commit, so that tables load in any order.
fn references(d: Dialect, schema: &str, c: &Column) -> Option<String> {
    let r = c.references.as_ref()?;
    Some(format!(
        "REFERENCES {} ({}) DEFERRABLE INITIALLY DEFERRED",
        d.table(schema, &r.table),
        quote_ident(&r.column)
    ))
}

/// The statements that add a nullable column to a live table (schema evolution).
pub(crate) fn add_column(d: Dialect, schema: &str, t: &Table, c: &Column) -> Vec<String> {
    let table = d.table(schema, &t.name);
    let column = quote_ident(&c.name);
    let ty = d.column_type(c.column_type);
    match (d, references(d, schema, c)) {
        (_, None) => vec![format!("ALTER TABLE {table} ADD COLUMN {column} {ty};")],
        // SQLite adds a column with its constraint or not at all.
        (Dialect::Sqlite, Some(r)) => vec![format!("ALTER TABLE {table} ADD COLUMN {column} {ty} {r};")],
        (Dialect::Postgres, Some(r)) => vec![
            format!("ALTER TABLE {table} ADD COLUMN {column} {ty};"),
            format!("ALTER TABLE {table} ADD FOREIGN KEY ({column}) {r};"),
        ],
    }
}

/// The statement that adds the `_sluice_run_id` column to a live table.
pub(crate) fn add_run_id_column(d: Dialect, schema: &str, t: &Table) -> String {
    format!(
        "ALTER TABLE {} ADD COLUMN {} {};",
        d.table(schema, &t.name),
        quote_ident(RUN_ID_COLUMN),
        d.text()
    )
}

/// `COMMENT ON` statements for a table and its columns (PostgreSQL; SQLite has none).
pub(crate) fn comments(d: Dialect, schema: &str, t: &Table) -> String {
    let mut out = String::new();
    if d == Dialect::Sqlite {
        return out;
    }
    let qualified = |schema: &str, table: &str| d.table(schema, table);
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
            "COMMENT ON COLUMN {}.{} IS {};\n",
            qualified(schema, &t.name),
            quote_ident(RUN_ID_COLUMN),
            quote_literal(RUN_ID_DESCRIPTION)
        ));
    }
    out
}

/// The whole DDL script of a pipeline.
pub(crate) fn ddl(p: &Pipeline, d: Dialect) -> String {
    let schema = &p.warehouse().schema;
    let mut out = format!("-- {} DDL for sluice pipeline `{}`\n", d.name(), p.name());
    match d {
        Dialect::Postgres => out.push_str(&format!("CREATE SCHEMA IF NOT EXISTS {};\n", quote_ident(schema))),
        Dialect::Sqlite => out.push_str("PRAGMA foreign_keys = ON;\n"),
    }
    for t in ordered_tables(p) {
        out.push('\n');
        out.push_str(&create_table(d, schema, t));
        out.push_str(&comments(d, schema, t));
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
        // Two tables alike in their first 63 bytes keep two constraint names.
        let (a, b) = (format!("{long}_orders_a"), format!("{long}_orders_b"));
        let (na, nb) = (constraint_name(&[&a], "pkey"), constraint_name(&[&b], "pkey"));
        assert!(na.len() <= 63 && nb.len() <= 63);
        assert_ne!(na, nb);
    }
}
