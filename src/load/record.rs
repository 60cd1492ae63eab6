//! Mapping: one raw record (or nested element) → one typed row, per the spec's columns,
//! and the binary COPY encoding of rows.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::spec::pipeline::{MetaValue, Table, ValueSource, PARENT_FIELD};
use crate::value::{apply, coerce, Cell, Val};

/// The top-level fields of a record that mapping a resource reads, or `None` when a path
/// needs the whole record (`$`, a wildcard or a filter at the top).
pub fn needed_fields(tables: &[Table], filter: &[crate::spec::pipeline::RecordFilter]) -> Option<Vec<String>> {
    let mut keys: Vec<String> = Vec::new();
    let mut add = |f: &str| {
        if !keys.iter().any(|k| k == f) {
            keys.push(f.to_string());
        }
    };
    for c in &tables[0].columns {
        match &c.value {
            ValueSource::Path(p) => add(p.first_field()?),
            ValueSource::ParentRecord(_) => add(PARENT_FIELD),
            _ => {}
        }
    }
    for f in filter {
        add(f.path.first_field()?);
    }
    // Tables nested deeper read inside these tables' elements.
    for t in tables.iter().filter(|t| t.parent == Some(0)) {
        for p in t.each.as_ref()?.paths() {
            add(p.first_field()?);
        }
    }
    Some(keys)
}

/// Parse a staged record keeping only `fields` (the others are skipped without being
/// built), which is most of the cost of a load. Not an object: parsed whole.
pub fn parse_record(line: &str, fields: Option<&[String]>) -> serde_json::Result<Value> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    let Some(fields) = fields else {
        return serde_json::from_str(line);
    };

    struct Key<'k>(&'k [String]);
    impl<'de> DeserializeSeed<'de> for Key<'_> {
        type Value = Option<usize>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl Visitor<'_> for Key<'_> {
        type Value = Option<usize>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a field name")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(self.0.iter().position(|k| k == v))
        }
    }
    struct Pick<'k>(&'k [String]);
    impl<'de> Visitor<'de> for Pick<'_> {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = serde_json::Map::with_capacity(self.0.len());
            while let Some(found) = map.next_key_seed(Key(self.0))? {
                match found {
                    Some(i) => {
                        out.insert(self.0[i].clone(), map.next_value::<Value>()?);
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(Value::Object(out))
        }
    }
    let mut de = serde_json::Deserializer::from_str(line);
    match de.deserialize_map(Pick(fields)).and_then(|v| de.end().map(|_| v)) {
        Ok(v) => Ok(v),
        Err(_) => serde_json::from_str(line),
    }
}

/// Run metadata a column may hold.
#[derive(Debug, Clone)]
pub struct RunMeta {
    pub run_id: String,
    pub run_time: DateTime<Utc>,
    pub pipeline: String,
}

/// Why a value did not fit its column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnError {
    pub column: String,
    pub value: String,
    pub reason: String,
}

/// Map the row of `table` from `value`. `parent` is the parent row, for nested tables.
pub fn map_row(
    table: &Table,
    value: &Value,
    parent: Option<&[Cell]>,
    meta: &RunMeta,
) -> Result<Vec<Cell>, ColumnError> {
    map_row_matching(table, value, parent, None, meta, &mut Vec::new())
}

/// What a column's path (or `parent_path`) found in the value a row is mapped from.
pub(super) enum Found<'a> {
    /// The node a singular path selects; `None`: it matched nothing.
    One(Option<Val<'a>>),
    /// The nodes a path that may select several selected (given as a JSON array).
    Many(Vec<Value>),
}

/// [`map_row`], also telling for each column whether its path matched a node of `value`
/// (`matched[i]`; false for columns that read no path). `index` is the element's
/// position, for nested tables.
fn map_row_matching(
    table: &Table,
    value: &Value,
    parent: Option<&[Cell]>,
    index: Option<usize>,
    meta: &RunMeta,
    matched: &mut Vec<bool>,
) -> Result<Vec<Cell>, ColumnError> {
    map_row_with(table, parent, index, meta, matched, |_, source| match source {
        ValueSource::Path(p) if p.is_singular() => Found::One(p.first(value).map(|v| Val::from_json(Some(v)))),
        ValueSource::Path(p) => Found::Many(p.query(value).into_iter().cloned().collect()),
        ValueSource::ParentRecord(p) => Found::One(
            value
                .get(PARENT_FIELD)
                .and_then(|staged| staged.get(p.as_str()))
                .map(|v| Val::from_json(Some(v))),
        ),
        _ => Found::One(None),
    })
}

/// Map a row of `table`, asking `lookup(column, source)` what each column that reads the
/// record (`path`, `parent_path`) finds; the rest (parent values, constants, run
/// metadata, a column's default, transforms, coercion, NOT NULL) is the same however
/// the record was read.
pub(super) fn map_row_with<'a>(
    table: &Table,
    parent: Option<&[Cell]>,
    index: Option<usize>,
    meta: &RunMeta,
    matched: &mut Vec<bool>,
    mut lookup: impl FnMut(usize, &ValueSource) -> Found<'a>,
) -> Result<Vec<Cell>, ColumnError> {
    matched.clear();
    matched.resize(table.columns.len(), false);
    let mut row = Vec::with_capacity(table.columns.len());
    for (i, col) in table.columns.iter().enumerate() {
        let err = |v: &Val, reason: String| ColumnError {
            column: col.name.clone(),
            value: v.display(),
            reason,
        };
        let (gathered, position);
        let mut v = match &col.value {
            ValueSource::Parent(i) => {
                row.push(parent.and_then(|p| p.get(*i)).cloned().unwrap_or(Cell::Null));
                continue;
            }
            source @ (ValueSource::Path(_) | ValueSource::ParentRecord(_)) => match lookup(i, source) {
                Found::One(found) => {
                    matched[i] = found.is_some();
                    match (found, &col.default) {
                        (None, Some(d)) => Val::Text(Cow::Borrowed(d.as_str())),
                        (found, _) => found.unwrap_or(Val::Null),
                    }
                }
                Found::Many(nodes) => {
                    matched[i] = !nodes.is_empty();
                    match (nodes.is_empty(), &col.default) {
                        (true, Some(d)) => Val::Text(Cow::Borrowed(d.as_str())),
                        _ => {
                            gathered = Value::Array(nodes);
                            Val::Json(&gathered)
                        }
                    }
                }
            },
            ValueSource::Const(s) => Val::Text(Cow::Borrowed(s.as_str())),
            ValueSource::Meta(MetaValue::RunId) => Val::Text(Cow::Borrowed(meta.run_id.as_str())),
            ValueSource::Meta(MetaValue::Pipeline) => Val::Text(Cow::Borrowed(meta.pipeline.as_str())),
            ValueSource::Meta(MetaValue::RunTime) => Val::Time(meta.run_time),
            ValueSource::Meta(MetaValue::Index) => {
                // Made only for a column that asks for it.
                position = index.map(|i| Value::from(i as u64));
                Val::from_json(position.as_ref())
            }
        };
        for t in &col.transforms {
            let before = v.clone();
            v = apply(*t, v).map_err(|reason| err(&before, reason))?;
        }
        let cell = coerce(&v, col.column_type).map_err(|reason| err(&v, reason))?;
        if cell == Cell::Null && !col.nullable {
            return Err(err(&v, "null in a NOT NULL column".into()));
        }
        row.push(cell);
    }
    Ok(row)
}

/// The rows one record gives, table by table (`rows[0]` holds the root row alone, then
/// one list per nested table). Reused from record to record, it also counts, over all
/// the records mapped, how often each column's path matched.
#[derive(Debug, Default)]
pub struct RecordRows {
    pub rows: Vec<Vec<Vec<Cell>>>,
    /// Per table: rows mapped, and per column the rows whose path matched.
    pub coverage: Vec<Coverage>,
    /// Per table, the `matched` flags of its rows of the current record, row after row.
    pub(super) matched: Vec<Vec<bool>>,
    /// A row's flags, reused.
    pub(super) seen: Vec<bool>,
}

/// How often a table's column paths matched, over the rows of accepted records.
#[derive(Debug, Default, Clone)]
pub struct Coverage {
    pub rows: u64,
    pub matched: Vec<u64>,
}

/// A record refused whole: the index of the table and the column that did not fit.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordError {
    pub table: usize,
    pub error: ColumnError,
}

/// Map one record into every table of its resource, or refuse it whole: either all its
/// rows (root and nested) are in `out`, or none is to be kept. The one place that turns a
/// record into rows, for loads and dry runs alike.
pub fn map_record(tables: &[Table], record: &Value, meta: &RunMeta, out: &mut RecordRows) -> Result<(), RecordError> {
    out.begin(tables);
    let mut seen = std::mem::take(&mut out.seen);
    let root = map_row_matching(&tables[0], record, None, None, meta, &mut seen)
        .map_err(|error| RecordError { table: 0, error });
    let root = match root {
        Ok(root) => root,
        Err(e) => {
            out.seen = seen;
            return Err(e);
        }
    };
    out.matched[0].extend_from_slice(&seen);
    let children = map_children(tables, 0, record, &root, meta, out, &mut seen);
    out.seen = seen;
    children?;
    out.rows[0].push(root);
    out.accept(tables);
    Ok(())
}

impl RecordRows {
    /// Ready for the next record of a resource with `tables`: no rows yet.
    pub(super) fn begin(&mut self, tables: &[Table]) {
        if self.rows.len() != tables.len() {
            self.rows.resize_with(tables.len(), Vec::new);
            self.matched.resize_with(tables.len(), Vec::new);
            self.coverage = tables
                .iter()
                .map(|t| Coverage {
                    rows: 0,
                    matched: vec![0; t.columns.len()],
                })
                .collect();
        }
        for (rows, matched) in self.rows.iter_mut().zip(&mut self.matched) {
            rows.clear();
            matched.clear();
        }
    }

    /// Count the record's rows in the coverage, now that it is accepted whole.
    pub(super) fn accept(&mut self, tables: &[Table]) {
        for (i, t) in tables.iter().enumerate() {
            let width = t.columns.len();
            let coverage = &mut self.coverage[i];
            for row in self.matched[i].chunks(width.max(1)) {
                coverage.rows += 1;
                for (count, hit) in coverage.matched.iter_mut().zip(row) {
                    *count += u64::from(*hit);
                }
            }
        }
    }
}

/// The rows of the tables nested in `tables[parent]`, for one parent element (`value`,
/// mapped to `parent_row`), and of the tables nested in those, depth first.
fn map_children(
    tables: &[Table],
    parent: usize,
    value: &Value,
    parent_row: &[Cell],
    meta: &RunMeta,
    out: &mut RecordRows,
    seen: &mut Vec<bool>,
) -> Result<(), RecordError> {
    for (i, t) in tables.iter().enumerate().filter(|(_, t)| t.parent == Some(parent)) {
        let each = t.each.as_ref().expect("nested tables have `each`");
        let elements = each.elements(value).map_err(|reason| RecordError {
            table: i,
            error: ColumnError {
                column: "(each)".into(),
                value: crate::util::clip(&each.describe(), 80),
                reason,
            },
        })?;
        for (index, el) in elements.iter().enumerate() {
            let row = map_row_matching(t, el, Some(parent_row), Some(index), meta, seen)
                .map_err(|error| RecordError { table: i, error })?;
            out.matched[i].extend_from_slice(seen);
            map_children(tables, i, el, &row, meta, out, seen)?;
            out.rows[i].push(row);
        }
    }
    Ok(())
}

/// A column whose path matched nothing in any row of a table that had rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Unmatched {
    pub table: String,
    pub column: String,
    /// `path`, or `parent_path` (a path on the parent record of a `for_each` request).
    pub field: &'static str,
    pub path: String,
    pub rows: u64,
    /// A path that does match, from the keys of a sample record.
    pub suggestion: Option<String>,
    /// The keys the sample has where the path looked.
    pub keys: Vec<String>,
}

impl std::fmt::Display for Unmatched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "column `{}` of table `{}`: `{}: {}` matched nothing in {} row{}",
            self.column,
            self.table,
            self.field,
            self.path,
            self.rows,
            if self.rows == 1 { "" } else { "s" }
        )?;
        match (&self.suggestion, self.keys.is_empty()) {
            (Some(s), _) => write!(f, "; did you mean `{s}`?")?,
            (None, false) => write!(
                f,
                "; the records have: {}",
                self.keys
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )?,
            (None, true) => {}
        }
        write!(
            f,
            " (if the API really leaves it out, mark the column `optional: true`)"
        )
    }
}

/// The non-optional path columns that matched nothing although their table had rows,
/// with suggestions drawn from `sample` (a whole record of the resource).
pub fn unmatched(tables: &[Table], coverage: &[Coverage], sample: Option<&Value>) -> Vec<Unmatched> {
    let mut out = Vec::new();
    // Per table, the first element of the sample it maps (parents come first).
    let mut scopes: Vec<Option<Value>> = Vec::with_capacity(tables.len());
    for t in tables {
        let scope = match (&t.each, t.parent) {
            (Some(each), Some(parent)) => scopes[parent]
                .as_ref()
                .and_then(|v: &Value| each.elements(v).ok()?.into_iter().next().map(|e| e.into_owned())),
            _ => sample.cloned(),
        };
        scopes.push(scope);
    }
    for (ti, (t, cov)) in tables.iter().zip(coverage).enumerate() {
        if cov.rows == 0 {
            continue;
        }
        // Where this table's paths are evaluated, in the sample.
        let scope = scopes[ti].as_ref();
        for (col, hits) in t.columns.iter().zip(&cov.matched) {
            let (field, p, scope) = match &col.value {
                ValueSource::Path(p) => ("path", p, scope),
                // The sample holds only the parent values that matched: nothing to suggest.
                ValueSource::ParentRecord(p) => ("parent_path", p, None),
                _ => continue,
            };
            if col.optional || *hits > 0 {
                continue;
            }
            let (suggestion, keys) = scope.map(|s| suggest(p.as_str(), s)).unwrap_or_default();
            out.push(Unmatched {
                table: t.name.clone(),
                column: col.name.clone(),
                field,
                path: p.as_str().to_string(),
                rows: cov.rows,
                suggestion,
                keys,
            });
        }
    }
    out
}

/// For a dotted path whose last step names no key: the closest key of the object the
/// rest of the path reaches, and that object's keys.
fn suggest(path: &str, scope: &Value) -> (Option<String>, Vec<String>) {
    let Some((parent, last)) = path.rsplit_once('.') else {
        return (None, Vec::new());
    };
    let object = if parent == "$" {
        Some(scope)
    } else {
        crate::spec::jsonpath::JsonPath::parse(parent)
            .ok()
            .and_then(|p| p.first(scope))
    };
    let Some(Value::Object(map)) = object else {
        return (None, Vec::new());
    };
    let keys: Vec<String> = map.keys().cloned().collect();
    let close = crate::spec::diagnostic::did_you_mean(last, keys.iter().map(String::as_str));
    (close.map(|k| format!("{parent}.{k}")), keys)
}

/// Append one binary COPY tuple: the row's cells, then the run id (when the table keeps
/// one) and the ordinals of a merge's staging table (see `resource::staging_columns`).
pub fn encode_row(cells: &[Cell], run_id: Option<&str>, ordinals: &[i64], out: &mut Vec<u8>) {
    let fields = cells.len() + usize::from(run_id.is_some()) + ordinals.len();
    out.extend_from_slice(&(fields as i16).to_be_bytes());
    for c in cells {
        c.encode(out);
    }
    if let Some(id) = run_id {
        out.extend_from_slice(&(id.len() as i32).to_be_bytes());
        out.extend_from_slice(id.as_bytes());
    }
    for ordinal in ordinals {
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&ordinal.to_be_bytes());
    }
}

/// The header of a binary COPY stream.
pub const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The trailer of a binary COPY stream.
pub const COPY_TRAILER: &[u8] = &[0xff, 0xff];

/// A row as JSON, for `run --dry-run`.
pub fn row_json(table: &Table, cells: &[Cell]) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("_table".into(), Value::String(table.name.clone()));
    for (col, cell) in table.columns.iter().zip(cells) {
        let v = match cell {
            Cell::Null => Value::Null,
            Cell::Text(s) => Value::String(s.clone()),
            Cell::Int(n) => Value::from(*n),
            Cell::Big(n) => Value::from(*n),
            Cell::Numeric(s) => Value::String(s.clone()),
            Cell::Double(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Date(d) => Value::String(d.to_string()),
            Cell::Time(t) => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            Cell::Json(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        };
        m.insert(col.name.clone(), v);
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::compile_text;
    use serde_json::json;

    fn pipeline() -> crate::spec::Pipeline {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/rickandmorty.yaml")).unwrap();
        compile_text("rickandmorty.yaml", &text).unwrap()
    }

    fn meta() -> RunMeta {
        RunMeta {
            run_id: "r1".into(),
            run_time: Utc::now(),
            pipeline: "rickandmorty".into(),
        }
    }

    #[test]
    fn maps_a_character_and_its_appearances() {
        let p = pipeline();
        let r = p.resource("character").unwrap();
        let record = json!({"id": 1, "name": "Rick Sanchez", "status": "Alive", "species": "Human", "type": "", "gender": "Male",
            "origin": {"name": "Earth (C-137)", "url": "https://rickandmortyapi.com/api/location/1"},
            "location": {"name": "unknown", "url": ""}, "image": "i", "episode": ["https://rickandmortyapi.com/api/episode/1", "https://rickandmortyapi.com/api/episode/2"],
            "url": "u", "created": "2017-11-04T18:48:46.250Z"});
        let row = map_row(&r.tables[0], &record, None, &meta()).unwrap();
        assert_eq!(row[0], Cell::Int(1));
        assert_eq!(row[4], Cell::Null, "empty type becomes null");
        assert_eq!(row[6], Cell::Int(1), "origin id from the URL");
        assert_eq!(row[7], Cell::Null, "unknown location");
        let nested = &r.tables[1];
        let each = nested.each.as_ref().unwrap();
        let rows: Vec<Vec<Cell>> = each
            .elements(&record)
            .unwrap()
            .iter()
            .map(|e| map_row(nested, e, Some(&row), &meta()).unwrap())
            .collect();
        assert_eq!(
            rows,
            vec![vec![Cell::Int(1), Cell::Int(1)], vec![Cell::Int(1), Cell::Int(2)]]
        );
    }

    #[test]
    fn a_null_in_a_not_null_column_names_the_column() {
        let p = pipeline();
        let t = &p.resource("location").unwrap().tables[0];
        let e = map_row(t, &json!({"id": 3, "name": null}), None, &meta()).unwrap_err();
        assert_eq!(
            e,
            ColumnError {
                column: "name".into(),
                value: "null".into(),
                reason: "null in a NOT NULL column".into()
            }
        );
        let e = map_row(t, &json!({"id": "three", "name": "x"}), None, &meta()).unwrap_err();
        assert_eq!(e.column, "location_id");
        assert_eq!(e.reason, "\"three\" is not an integer");
    }

    #[test]
    fn records_parse_only_the_fields_the_mapping_reads() {
        let p = pipeline();
        let r = p.resource("character").unwrap();
        let fields = needed_fields(&r.tables, &r.filter).unwrap();
        assert!(fields.contains(&"origin".to_string()) && fields.contains(&"episode".to_string()));
        assert!(!fields.contains(&"unused".to_string()));
        let line = r#"{"id":1,"unused":{"big":[1,2,3]},"origin":{"url":"u/3"},"episode":["e/1"],"name":"R\u00e9"}"#;
        let v = parse_record(line, Some(&fields)).unwrap();
        assert_eq!(
            v,
            json!({"id": 1, "origin": {"url": "u/3"}, "episode": ["e/1"], "name": "Ré"})
        );
        // The full parse gives the same rows.
        let full: Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            map_row(&r.tables[0], &v, None, &meta()),
            map_row(&r.tables[0], &full, None, &meta())
        );
        assert!(parse_record("{\"id\": 1", Some(&fields)).is_err());
        assert_eq!(parse_record("[1]", Some(&fields)).unwrap(), json!([1]));
    }

    #[test]
    fn rows_encode_with_run_id_and_ordinal() {
        let mut out = Vec::new();
        encode_row(&[Cell::Int(7), Cell::Null], Some("r1"), &[3], &mut out);
        assert_eq!(
            out,
            [
                &[0, 4][..],
                &[0, 0, 0, 4, 0, 0, 0, 7],
                &[0xff, 0xff, 0xff, 0xff],
                &[0, 0, 0, 2, b'r', b'1'],
                &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 3]
            ]
            .concat()
        );
    }
}
