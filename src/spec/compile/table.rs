//! A resource's tables: columns, types, transforms, keys, nested tables and `each`.

use super::{Ctx, SYSTEM_COLUMNS};
use crate::spec::diagnostic::did_you_mean;
use crate::spec::jsonpath::JsonPath;
use crate::spec::model::*;
use crate::spec::pipeline::{self as p, Reference, ValueSource, RUN_ID_COLUMN};
use std::collections::HashSet;

/// The tables nested in `parent` (at `tables[parent_index]`, field path `ppath`), depth
/// first, appended to `tables`.
pub(super) fn compile_nested_tables(
    cx: &mut Ctx,
    ppath: &str,
    nested: &[RawNested],
    parent: &RawTable,
    parent_index: usize,
    tables: &mut Vec<Option<p::Table>>,
) {
    for (i, n) in nested.iter().enumerate() {
        let path = format!("{ppath}.nested[{i}]");
        let as_table = RawTable {
            name: n.name.clone(),
            write: n.write.or(parent.write),
            primary_key: n.primary_key.clone(),
            on_error: parent.on_error,
            run_id_column: parent.run_id_column,
            description: n.description.clone(),
            columns: n.columns.clone(),
            nested: Vec::new(),
            expect: n.expect.clone(),
        };
        let each = compile_each(cx, &format!("{path}.each"), &n.each);
        check_replaceable(cx, &path, &as_table, parent);
        let table = compile_table(cx, &path, &as_table, Some(parent)).and_then(|mut t| {
            t.each = Some(each?);
            t.parent = Some(parent_index);
            Some(t)
        });
        if let Some(t) = &table {
            cx.tables.push((path.clone(), t.clone()));
        }
        let index = tables.len();
        tables.push(table);
        compile_nested_tables(cx, &path, &n.nested, &as_table, index, tables);
    }
}

fn compile_each(cx: &mut Ctx, path: &str, each: &RawEach) -> Option<p::Each> {
    match each {
        RawEach::Path(jp) => cx.jsonpath(path, jp).map(p::Each::Path),
        RawEach::Zip(z) => {
            if z.zip.is_empty() {
                cx.error(&format!("{path}.zip"), "`zip` needs at least one array to zip");
                return None;
            }
            let fields: Vec<Option<(String, JsonPath)>> = z
                .zip
                .iter()
                .map(|(name, jp)| {
                    cx.jsonpath(&format!("{path}.zip.{name}"), jp)
                        .map(|p| (name.clone(), p))
                })
                .collect();
            fields.into_iter().collect::<Option<Vec<_>>>().map(p::Each::Zip)
        }
    }
}

/// A merged nested table under a merged parent replaces each loaded parent's rows, so it
/// must say which parent a row belongs to: `from_parent` columns for the parent's whole
/// primary key.
fn check_replaceable(cx: &mut Ctx, path: &str, t: &RawTable, parent: &RawTable) {
    let merged = |w: Option<WriteMode>| w.unwrap_or_default() == WriteMode::Merge;
    // A `from_parent` naming no parent column is reported on its own.
    let unknown = t
        .columns
        .iter()
        .filter_map(|c| c.from_parent.as_ref())
        .any(|f| !parent.columns.iter().any(|pc| &pc.name == f));
    if !merged(t.write) || !merged(parent.write) || unknown {
        return;
    }
    let missing: Vec<&String> = parent
        .primary_key
        .iter()
        .filter(|k| !t.columns.iter().any(|c| c.from_parent.as_ref() == Some(*k)))
        .collect();
    if !missing.is_empty() {
        cx.error(
            &format!("{path}.name"),
            format!(
                "nested table `{}` is merged under the merged table `{}`, which replaces each loaded parent's rows; add a column with `from_parent: {}` so that each row names its parent",
                t.name,
                parent.name,
                missing.iter().map(|k| k.as_str()).collect::<Vec<_>>().join("` and `from_parent: ")
            ),
        );
    }
}

/// Which transforms make sense before coercion to which column type.
fn transform_fits(t: Transform, ty: ColumnType) -> bool {
    use ColumnType::*;
    match t {
        Transform::EpochMs | Transform::EpochS => matches!(ty, Timestamptz | Date),
        Transform::UrlLastSegment => matches!(ty, Text | Integer | Bigint | Numeric),
        Transform::Lowercase | Transform::Uppercase | Transform::Trim => !matches!(ty, Jsonb),
        Transform::EmptyAsNull => true,
    }
}

pub(super) fn compile_table(cx: &mut Ctx, path: &str, t: &RawTable, parent: Option<&RawTable>) -> Option<p::Table> {
    let mut ok = cx.ident(&format!("{path}.name"), &t.name);
    if t.columns.is_empty() {
        cx.error(&format!("{path}.columns"), "a table needs at least one column");
        ok = false;
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let mut columns = Vec::new();
    for (i, c) in t.columns.iter().enumerate() {
        let cpath = format!("{path}.columns[{i}]");
        if !seen.insert(c.name.as_str()) {
            cx.error(
                &format!("{cpath}.name"),
                format!("duplicate column `{}` in table `{}`", c.name, t.name),
            );
            ok = false;
        }
        if c.name == RUN_ID_COLUMN && t.run_id_column.unwrap_or(true) {
            cx.error(
                &format!("{cpath}.name"),
                format!("`{RUN_ID_COLUMN}` is added by sluice; set `run_id_column: false` to name a column so"),
            );
            ok = false;
        }
        match compile_column(cx, &cpath, c, parent) {
            Some(col) => columns.push(col),
            None => ok = false,
        }
    }
    let mut pk_seen = HashSet::new();
    for (i, k) in t.primary_key.iter().enumerate() {
        let kpath = format!("{path}.primary_key[{i}]");
        if !pk_seen.insert(k) {
            cx.error(&kpath, format!("`{k}` is listed twice in the primary key"));
            ok = false;
        }
        match t.columns.iter().position(|c| &c.name == k) {
            None => {
                let hint = did_you_mean(k, t.columns.iter().map(|c| c.name.as_str()))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                cx.error(
                    &kpath,
                    format!("primary key column `{k}` is not a column of table `{}`{hint}", t.name),
                );
                ok = false;
            }
            Some(ci) => {
                if t.columns[ci].nullable == Some(true) {
                    cx.error(
                        &format!("{path}.columns[{ci}].nullable"),
                        format!("`{k}` is in the primary key, so it cannot be nullable"),
                    );
                    ok = false;
                }
                if matches!(t.columns[ci].column_type, Some(ColumnType::Jsonb)) {
                    cx.error(&kpath, format!("`{k}` is jsonb, which cannot be part of a primary key"));
                    ok = false;
                }
            }
        }
    }
    let write = t.write.unwrap_or_default();
    if write == WriteMode::Merge && t.primary_key.is_empty() {
        let wpath = format!("{path}.write");
        cx.error(
            &wpath,
            format!(
                "table `{}` uses `write: merge` but has no `primary_key` to merge on",
                t.name
            ),
        );
        ok = false;
    }
    let expect = t
        .expect
        .as_ref()
        .and_then(|e| table_expect(cx, &format!("{path}.expect"), e));
    if !ok {
        return None;
    }
    for col in &mut columns {
        if t.primary_key.contains(&col.name) {
            col.nullable = false;
        }
    }
    Some(p::Table {
        name: t.name.clone(),
        write,
        primary_key: t.primary_key.clone(),
        on_error: t.on_error.unwrap_or_default(),
        run_id_column: t.run_id_column.unwrap_or(true),
        description: t.description.clone(),
        columns,
        each: None,
        parent: None,
        expect,
    })
}

/// A table's `expect`: bounds that make sense.
fn table_expect(cx: &mut Ctx, path: &str, e: &RawTableExpect) -> Option<p::TableExpect> {
    let (min, max) = e.rows.as_ref().map_or((None, None), |r| (r.min, r.max));
    if let (Some(a), Some(b)) = (min, max) {
        if a > b {
            cx.error(&format!("{path}.rows"), format!("`min` ({a}) is more than `max` ({b})"));
            return None;
        }
    }
    if min.is_none() && max.is_none() {
        cx.error_at_key(path, "`expect` on a table needs `rows: {min, max}`");
        return None;
    }
    Some(p::TableExpect {
        rows_min: min,
        rows_max: max,
        severity: e.severity.unwrap_or_default(),
    })
}

/// A column's `expect`: a regular expression that compiles, bounds in order, a fraction
/// between 0 and 1, and checks that fit the column's type.
fn column_expect(cx: &mut Ctx, path: &str, ty: ColumnType, e: &RawColumnExpect) -> Option<p::ColumnExpect> {
    let mut ok = true;
    let matches = e.matches.as_ref().and_then(|m| match regex::Regex::new(m) {
        Ok(r) => Some(r),
        Err(err) => {
            cx.error(&format!("{path}.matches"), format!("not a regular expression: {err}"));
            ok = false;
            None
        }
    });
    let bound = |cx: &mut Ctx, field: &str, v: &Option<ParamValue>, ok: &mut bool| {
        let v = v.as_ref()?;
        let numeric = matches!(
            ty,
            ColumnType::Integer | ColumnType::Bigint | ColumnType::Numeric | ColumnType::Double
        );
        match (numeric, v.0.parse::<f64>().is_ok()) {
            (true, true) => Some(p::Limit::Number(v.0.clone())),
            (true, false) => {
                cx.error(
                    &format!("{path}.range.{field}"),
                    format!("`{}` is not a number, and the column is {}", v.0, ty.sql()),
                );
                *ok = false;
                None
            }
            (false, _) => Some(p::Limit::Text(v.0.clone())),
        }
    };
    let range = e.range.as_ref();
    let range_min = range.and_then(|r| bound(cx, "min", &r.min, &mut ok));
    let range_max = range.and_then(|r| bound(cx, "max", &r.max, &mut ok));
    if let (Some(p::Limit::Number(a)), Some(p::Limit::Number(b))) = (&range_min, &range_max) {
        if a.parse::<f64>().unwrap_or(0.0) > b.parse::<f64>().unwrap_or(0.0) {
            cx.error(
                &format!("{path}.range"),
                format!("`min` ({a}) is more than `max` ({b})"),
            );
            ok = false;
        }
    }
    if range.is_some_and(|r| r.min.is_none() && r.max.is_none()) {
        cx.error_at_key(&format!("{path}.range"), "`range` needs `min`, `max` or both");
        ok = false;
    }
    if let Some(f) = e.max_null_fraction.filter(|f| !(0.0..=1.0).contains(f)) {
        cx.error(
            &format!("{path}.max_null_fraction"),
            format!("{f} is not a fraction between 0 and 1"),
        );
        ok = false;
    }
    if e.accepted_values.as_ref().is_some_and(Vec::is_empty) {
        cx.error(
            &format!("{path}.accepted_values"),
            "`accepted_values` needs at least one value",
        );
        ok = false;
    }
    if ty == ColumnType::Jsonb && (e.unique.is_some() || e.range.is_some()) {
        cx.error_at_key(path, "`unique` and `range` do not apply to a jsonb column");
        ok = false;
    }
    let checks = e.unique == Some(true)
        || e.accepted_values.is_some()
        || e.range.is_some()
        || e.matches.is_some()
        || e.max_null_fraction.is_some();
    if !checks && ok {
        cx.error_at_key(
            path,
            "`expect` names no check: `unique`, `accepted_values`, `range`, `matches` or `max_null_fraction`",
        );
        ok = false;
    }
    ok.then(|| p::ColumnExpect {
        unique: e.unique == Some(true),
        accepted_values: e.accepted_values.iter().flatten().map(|v| v.0.clone()).collect(),
        range_min,
        range_max,
        matches,
        max_null_fraction: e.max_null_fraction,
        severity: e.severity.unwrap_or_default(),
    })
}

/// One column: its name, where its value comes from, its type, transforms and reference.
fn compile_column(cx: &mut Ctx, path: &str, c: &RawColumn, parent: Option<&RawTable>) -> Option<p::Column> {
    let mut ok = check_column_name(cx, path, c);
    let given: Vec<&str> = [
        c.path.as_ref().map(|_| "path"),
        c.value.as_ref().map(|_| "value"),
        c.meta.as_ref().map(|_| "meta"),
        c.from_parent.as_ref().map(|_| "from_parent"),
        c.parent_path.as_ref().map(|_| "parent_path"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        cx.error_at_key(
            &format!("{path}.{}", given[1]),
            format!(
                "column `{}` has both `{}` and `{}`; give exactly one",
                c.name, given[0], given[1]
            ),
        );
        return None;
    }
    let mut column_type = c.column_type;
    let value = column_value(cx, path, c, parent, &mut column_type, &mut ok);
    let Some(column_type) = column_type else {
        if value.is_some() {
            cx.error(path, format!("column `{}` needs a `type` (text, integer, bigint, numeric, double, boolean, date, timestamptz, jsonb)", c.name));
        }
        return None;
    };
    let transforms = c.transform.as_ref().map(TransformList::to_vec).unwrap_or_default();
    ok &= check_transforms(cx, path, c, &transforms, column_type);
    if let (Some(ValueSource::Const(v)), true) = (&value, ok) {
        if let Err(e) = crate::value::check_constant(v, column_type) {
            cx.error(&format!("{path}.value"), e);
            ok = false;
        }
    }
    if let (Some(d), true) = (&c.default, ok) {
        if c.path.is_none() && c.parent_path.is_none() {
            cx.error_at_key(
                &format!("{path}.default"),
                format!("column `{}`: `default` is for a `path` that matches nothing", c.name),
            );
            ok = false;
        } else if let Err(e) = crate::value::check_constant(&d.0, column_type) {
            cx.error(&format!("{path}.default"), e.replacen("constant", "default", 1));
            ok = false;
        }
    }
    let references = column_reference(cx, path, c, &mut ok);
    let expect = match &c.expect {
        Some(e) => {
            let e = column_expect(cx, &format!("{path}.expect"), column_type, e);
            ok &= e.is_some();
            e
        }
        None => None,
    };
    if !ok {
        return None;
    }
    Some(p::Column {
        name: c.name.clone(),
        column_type,
        value: value?,
        transforms,
        nullable: c.nullable.unwrap_or(true),
        optional: c.optional.unwrap_or(false) || c.default.is_some(),
        default: c.default.as_ref().map(|d| d.0.clone()),
        references,
        description: c.description.clone(),
        expect,
    })
}

/// A column's name is an identifier, not a system column's or sluice's own, and
/// `optional` sits on a column read from a path.
fn check_column_name(cx: &mut Ctx, path: &str, c: &RawColumn) -> bool {
    let mut ok = cx.ident(&format!("{path}.name"), &c.name);
    if c.optional.is_some() && c.path.is_none() && c.parent_path.is_none() {
        cx.error_at_key(
            &format!("{path}.optional"),
            format!("column `{}`: `optional` applies to columns read from a `path`", c.name),
        );
        ok = false;
    }
    if SYSTEM_COLUMNS.contains(&c.name.as_str()) {
        cx.error(
            &format!("{path}.name"),
            format!(
                "`{}` is a PostgreSQL system column name (as are {}); a table cannot have a column of that name; rename it and keep the `path`",
                c.name,
                SYSTEM_COLUMNS.join(", ")
            ),
        );
        ok = false;
    }
    if c.name.starts_with("_sluice") {
        cx.error(
            &format!("{path}.name"),
            format!(
                "`{}`: names starting with `_sluice` are reserved for the columns sluice adds itself",
                c.name
            ),
        );
        ok = false;
    }
    ok
}

/// Where a column's value comes from (exactly one source was given); fills in the type a
/// `meta` or `from_parent` column implies.
fn column_value(
    cx: &mut Ctx,
    path: &str,
    c: &RawColumn,
    parent: Option<&RawTable>,
    column_type: &mut Option<ColumnType>,
    ok: &mut bool,
) -> Option<ValueSource> {
    if let Some(jp) = &c.path {
        cx.jsonpath(&format!("{path}.path"), jp).map(ValueSource::Path)
    } else if let Some(v) = &c.value {
        Some(ValueSource::Const(v.clone()))
    } else if let Some(m) = c.meta {
        *ok &= check_meta(cx, path, m, parent.is_some(), column_type);
        Some(ValueSource::Meta(m))
    } else if let Some(jp) = &c.parent_path {
        if parent.is_some() {
            cx.error_at_key(
                &format!("{path}.parent_path"),
                "`parent_path` belongs in the resource's own table; a nested table copies such a column with `from_parent`",
            );
            None
        } else if !cx.child_resource {
            cx.error_at_key(
                &format!("{path}.parent_path"),
                "`parent_path` reads the parent record of a `for_each` request; this resource has no `for_each`",
            );
            None
        } else {
            cx.jsonpath(&format!("{path}.parent_path"), jp)
                .map(ValueSource::ParentRecord)
        }
    } else if let Some(from) = &c.from_parent {
        from_parent(cx, path, c, from, parent, column_type, ok)
    } else {
        cx.error(
            path,
            format!(
                "column `{}` needs one of `path`, `value`, `meta`, `from_parent` or `parent_path`",
                c.name
            ),
        );
        None
    }
}

/// A `meta` column: its type fits what it holds (and defaults to it); `index` only in a
/// nested table.
fn check_meta(cx: &mut Ctx, path: &str, m: MetaValue, nested: bool, column_type: &mut Option<ColumnType>) -> bool {
    let mut ok = true;
    let fits = match m {
        MetaValue::RunId | MetaValue::Pipeline => matches!(column_type, None | Some(ColumnType::Text)),
        MetaValue::RunTime => matches!(column_type, None | Some(ColumnType::Timestamptz | ColumnType::Text)),
        MetaValue::Index => matches!(column_type, None | Some(ColumnType::Integer | ColumnType::Bigint)),
    };
    if m == MetaValue::Index && !nested {
        cx.error(
            &format!("{path}.meta"),
            "`meta: index` is an element's position in its array, so it belongs in a nested table",
        );
        ok = false;
    }
    if !fits {
        cx.error(
            &format!("{path}.type"),
            format!(
                "`meta: {}` does not fit a {} column",
                meta_name(m),
                column_type.map(|t| t.name()).unwrap_or("")
            ),
        );
        ok = false;
    }
    *column_type = column_type.or(Some(match m {
        MetaValue::RunTime => ColumnType::Timestamptz,
        MetaValue::Index => ColumnType::Integer,
        _ => ColumnType::Text,
    }));
    ok
}

/// A nested table's `from_parent` column: the parent's column exists, and the types agree
/// (the parent's type is taken when the column gives none).
fn from_parent(
    cx: &mut Ctx,
    path: &str,
    c: &RawColumn,
    from: &str,
    parent: Option<&RawTable>,
    column_type: &mut Option<ColumnType>,
    ok: &mut bool,
) -> Option<ValueSource> {
    let Some(parent) = parent else {
        cx.error_at_key(
            &format!("{path}.from_parent"),
            "`from_parent` is only allowed in nested tables",
        );
        return None;
    };
    let Some(i) = parent.columns.iter().position(|pc| pc.name == from) else {
        let hint = did_you_mean(from, parent.columns.iter().map(|c| c.name.as_str()))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        cx.error(
            &format!("{path}.from_parent"),
            format!("parent table `{}` has no column `{from}`{hint}", parent.name),
        );
        return None;
    };
    let parent_type = parent.columns[i].column_type.or_else(|| {
        parent.columns[i].meta.map(|m| match m {
            MetaValue::RunTime => ColumnType::Timestamptz,
            _ => ColumnType::Text,
        })
    });
    match (*column_type, parent_type) {
        (Some(mine), Some(theirs)) if mine != theirs => {
            cx.error(
                &format!("{path}.type"),
                format!(
                    "column `{}` is {} but parent column `{from}` is {}",
                    c.name,
                    mine.name(),
                    theirs.name()
                ),
            );
            *ok = false;
        }
        _ => *column_type = column_type.or(parent_type),
    }
    Some(ValueSource::Parent(i))
}

/// Each transform fits the column's type.
fn check_transforms(
    cx: &mut Ctx,
    path: &str,
    c: &RawColumn,
    transforms: &[Transform],
    column_type: ColumnType,
) -> bool {
    let mut ok = true;
    for (i, t) in transforms.iter().enumerate() {
        if !transform_fits(*t, column_type) {
            let tpath = match &c.transform {
                Some(TransformList::Many(_)) => format!("{path}.transform[{i}]"),
                _ => format!("{path}.transform"),
            };
            cx.error(
                &tpath,
                format!(
                    "transform `{}` does not fit column type {}",
                    t.name(),
                    column_type.name()
                ),
            );
            ok = false;
        }
    }
    ok
}

/// A column's `references: table.column`.
fn column_reference(cx: &mut Ctx, path: &str, c: &RawColumn, ok: &mut bool) -> Option<Reference> {
    let r = c.references.as_ref()?;
    match r.split_once('.') {
        Some((t, col)) if !t.is_empty() && !col.is_empty() && !col.contains('.') => Some(Reference {
            table: t.to_string(),
            column: col.to_string(),
        }),
        _ => {
            cx.error(
                &format!("{path}.references"),
                format!("`{r}` must name a column as `table.column`"),
            );
            *ok = false;
            None
        }
    }
}

fn meta_name(m: MetaValue) -> &'static str {
    match m {
        MetaValue::RunId => "run_id",
        MetaValue::RunTime => "run_time",
        MetaValue::Pipeline => "pipeline",
        MetaValue::Index => "index",
    }
}
