//! Data expectations: a table's `expect: {rows}`, a column's `expect: {unique,
//! accepted_values, range, matches, max_null_fraction}` and every `references`, checked
//! with SQL on the whole table inside the load's transaction, before it commits. A failed
//! `error` expectation rolls the load back; a `warn` one is reported and the load commits.
//! A spec without expectations or references runs no query here.

use super::warehouse::Warehouse;
use super::LoadError;
use crate::load::ddl::Dialect;
use crate::spec::ident::quote_ident;
use crate::spec::pipeline::{Column, ColumnExpect, Limit, Pipeline, Severity, Table};
use crate::value::ColumnType;

/// How many failing values a result shows.
const EXAMPLES: usize = 3;

/// One expectation that did not hold.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failed {
    pub table: String,
    /// `None` for a table's `rows`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// `rows`, `unique`, `accepted_values`, `range`, `matches`, `max_null_fraction` or
    /// `references`.
    pub check: &'static str,
    pub severity: Severity,
    /// The rows (or values) that fail it.
    pub failing: u64,
    /// Some of the failing values, as text.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    pub detail: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.column {
            Some(c) => write!(f, "table `{}` column `{c}`: {}", self.table, self.detail)?,
            None => write!(f, "table `{}`: {}", self.table, self.detail)?,
        }
        if !self.examples.is_empty() {
            write!(f, " (for example {})", self.examples.join(", "))?;
        }
        Ok(())
    }
}

/// Check the expectations of `tables` (the tables this load wrote) in `w`; what failed,
/// `error` ones first.
pub(super) async fn check<W: Warehouse>(w: &mut W, p: &Pipeline, tables: &[&Table]) -> Result<Vec<Failed>, LoadError> {
    let d = w.dialect();
    let schema = &p.warehouse().schema;
    let mut out = Vec::new();
    for t in tables {
        let name = d.table(schema, &t.name);
        if let Some(e) = &t.expect {
            let rows = count(w, &format!("SELECT count(*) FROM {name}")).await?;
            let low = e.rows_min.is_some_and(|m| rows < m);
            let high = e.rows_max.is_some_and(|m| rows > m);
            if low || high {
                let bounds = match (e.rows_min, e.rows_max) {
                    (Some(a), Some(b)) => format!("between {a} and {b}"),
                    (Some(a), None) => format!("at least {a}"),
                    (None, Some(b)) => format!("at most {b}"),
                    (None, None) => String::new(),
                };
                out.push(Failed {
                    table: t.name.clone(),
                    column: None,
                    check: "rows",
                    severity: e.severity,
                    failing: rows,
                    examples: Vec::new(),
                    detail: format!("holds {rows} rows, expected {bounds} (`expect.rows`)"),
                });
            }
        }
        for c in &t.columns {
            if let Some(e) = &c.expect {
                column_checks(w, d, &name, t, c, e, &mut out).await?;
            }
            if let Some(r) = &c.references {
                let col = quote_ident(&c.name);
                let from = format!(
                    "FROM {name} x WHERE x.{col} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {} y WHERE y.{} = x.{col})",
                    d.table(schema, &r.table),
                    quote_ident(&r.column)
                );
                let failing = count(w, &format!("SELECT count(*) {from}")).await?;
                if failing > 0 {
                    let examples = examples(w, &format!("SELECT DISTINCT CAST(x.{col} AS TEXT) {from}")).await?;
                    out.push(Failed {
                        table: t.name.clone(),
                        column: Some(c.name.clone()),
                        check: "references",
                        severity: Severity::Error,
                        failing,
                        examples,
                        detail: format!(
                            "{failing} rows refer to no row of `{}` (`references: {}.{}`)",
                            r.table, r.table, r.column
                        ),
                    });
                }
            }
        }
    }
    out.sort_by_key(|f| f.severity != Severity::Error);
    Ok(out)
}

/// The checks of one column's `expect`.
async fn column_checks<W: Warehouse>(
    w: &mut W,
    d: Dialect,
    name: &str,
    t: &Table,
    c: &Column,
    e: &ColumnExpect,
    out: &mut Vec<Failed>,
) -> Result<(), LoadError> {
    let col = quote_ident(&c.name);
    let text = format!("CAST({col} AS TEXT)");
    let mut fail = |check: &'static str, failing: u64, examples: Vec<String>, detail: String| {
        out.push(Failed {
            table: t.name.clone(),
            column: Some(c.name.clone()),
            check,
            severity: e.severity,
            failing,
            examples,
            detail,
        })
    };
    if e.unique {
        let dup = format!("FROM {name} WHERE {col} IS NOT NULL GROUP BY {col} HAVING count(*) > 1");
        let values = count(w, &format!("SELECT count(*) FROM (SELECT {col} {dup}) d")).await?;
        if values > 0 {
            let ex = examples(w, &format!("SELECT {text} {dup} ORDER BY count(*) DESC, 1")).await?;
            fail(
                "unique",
                values,
                ex,
                format!("{values} values are held by more than one row (`unique`)"),
            );
        }
    }
    if !e.accepted_values.is_empty() {
        let list: Vec<String> = e.accepted_values.iter().map(|v| literal(v)).collect();
        let from = format!(
            "FROM {name} WHERE {col} IS NOT NULL AND {text} NOT IN ({})",
            list.join(", ")
        );
        let (failing, ex) = failing(w, &from, &text).await?;
        if failing > 0 {
            fail(
                "accepted_values",
                failing,
                ex,
                format!(
                    "{failing} rows hold a value outside `accepted_values` [{}]",
                    e.accepted_values.join(", ")
                ),
            );
        }
    }
    if e.range_min.is_some() || e.range_max.is_some() {
        let sql = |l: &Limit| match l {
            Limit::Number(n) => n.clone(),
            Limit::Text(t) => literal(t),
        };
        let shown = |l: &Option<Limit>| {
            l.as_ref().map_or("…".to_string(), |l| match l {
                Limit::Number(n) | Limit::Text(n) => n.clone(),
            })
        };
        // SQLite keeps exact decimals as text (its NUMERIC affinity would round them), so
        // they are compared as numbers there; a text comparison would put 43.1 above 100.
        let value = match (d, c.column_type) {
            (Dialect::Sqlite, ColumnType::Numeric) => format!("CAST({col} AS REAL)"),
            _ => col.clone(),
        };
        let mut outside = Vec::new();
        if let Some(m) = &e.range_min {
            outside.push(format!("{value} < {}", sql(m)));
        }
        if let Some(m) = &e.range_max {
            outside.push(format!("{value} > {}", sql(m)));
        }
        let from = format!("FROM {name} WHERE {col} IS NOT NULL AND ({})", outside.join(" OR "));
        let (failing, ex) = failing(w, &from, &text).await?;
        if failing > 0 {
            let range = format!("{} to {}", shown(&e.range_min), shown(&e.range_max));
            fail(
                "range",
                failing,
                ex,
                format!("{failing} rows hold a value outside `range` {range}"),
            );
        }
    }
    if let Some(re) = &e.matches {
        let pattern = literal(re.as_str());
        let test = match d {
            Dialect::Postgres => format!("NOT ({text} ~ {pattern})"),
            Dialect::Sqlite => format!("NOT regexp({pattern}, {text})"),
        };
        let from = format!("FROM {name} WHERE {col} IS NOT NULL AND {test}");
        let (failing, ex) = failing(w, &from, &text).await?;
        if failing > 0 {
            fail(
                "matches",
                failing,
                ex,
                format!("{failing} rows hold a value that does not match `{}`", re.as_str()),
            );
        }
    }
    if let Some(max) = e.max_null_fraction {
        let got = w
            .query(
                &format!("SELECT count(*), count({col}) FROM {name}"),
                "check an expectation",
            )
            .await?;
        let n = |i: usize| {
            got.first()
                .and_then(|r| r[i].as_deref())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (rows, set) = (n(0), n(1));
        let nulls = rows - set.min(rows);
        if rows > 0 && nulls as f64 / rows as f64 > max {
            fail(
                "max_null_fraction",
                nulls,
                Vec::new(),
                format!(
                    "{nulls} of {rows} rows are null ({:.1} %), more than `max_null_fraction` {max}",
                    100.0 * nulls as f64 / rows as f64
                ),
            );
        }
    }
    Ok(())
}

/// A text literal in SQL.
fn literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// The rows `from` selects (`FROM … WHERE …`), and a few of their values as text.
async fn failing<W: Warehouse>(w: &mut W, from: &str, text: &str) -> Result<(u64, Vec<String>), LoadError> {
    let n = count(w, &format!("SELECT count(*) {from}")).await?;
    let ex = match n {
        0 => Vec::new(),
        _ => examples(w, &format!("SELECT DISTINCT {text} {from}")).await?,
    };
    Ok((n, ex))
}

async fn count<W: Warehouse>(w: &mut W, sql: &str) -> Result<u64, LoadError> {
    let rows = w.query(sql, "check an expectation").await?;
    Ok(rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

async fn examples<W: Warehouse>(w: &mut W, sql: &str) -> Result<Vec<String>, LoadError> {
    let rows = w
        .query(&format!("{sql} LIMIT {EXAMPLES}"), "check an expectation")
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .map(|v| format!("`{}`", crate::util::head(v.as_bytes())))
        .collect())
}
