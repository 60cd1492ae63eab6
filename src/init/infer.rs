//! What the sampled records say about the table: columns with their types, nullability
//! and SQL names, the primary key, URL references and nested tables. Pure: it sees
//! records, never the network.

use std::collections::HashSet;

use serde_json::Value;

use crate::value::{apply, coerce, parse_date, parse_timestamp, ColumnType, Transform, Val};

/// A resource of the spec another one may reference: the URL path that serves its
/// records (`/api/location`), and its table's single-column key.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    pub path: String,
    pub table: String,
    pub key: String,
    pub key_type: ColumnType,
}

/// One inferred column.
#[derive(Debug, Clone, Default)]
pub(crate) struct Col {
    pub name: String,
    pub ty: Option<ColumnType>,
    pub path: Option<String>,
    pub from_parent: Option<String>,
    /// `index` for a nested element's position.
    pub meta: Option<&'static str>,
    pub transforms: Vec<Transform>,
    pub not_null: bool,
    pub optional: bool,
    pub references: Option<String>,
    /// Why: a comment written after the column.
    pub why: String,
}

/// One inferred table (a resource's, or a nested one with `each`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    pub name: String,
    pub each: Option<String>,
    pub primary_key: Vec<String>,
    pub columns: Vec<Col>,
    pub nested: Vec<Table>,
    /// Comment lines written above the table.
    pub notes: Vec<String>,
}

/// What the whole inference needs to know besides the records.
pub(crate) struct Context<'a> {
    /// The table's name (the resource's).
    pub table: &'a str,
    /// The URL path of this resource (`/api/character`): a URL field pointing below it is
    /// the record's own address, not a reference.
    pub own_path: &'a str,
    /// The resources of the spec (this one included) others may reference.
    pub known: &'a [Known],
    /// Whether the sample holds every record the API has (pagination ended in it):
    /// only then is "never null in the sample" written as `nullable: false`.
    pub complete: bool,
}

/// Statistics of one field over a set of objects.
#[derive(Default)]
struct Field<'v> {
    key: String,
    /// Objects it is present in (null included).
    present: usize,
    /// Its non-null values.
    values: Vec<&'v Value>,
}

/// The fields of `objects`, in first-seen order.
fn fields<'v>(objects: &[&'v Value]) -> Vec<Field<'v>> {
    let mut out: Vec<Field<'v>> = Vec::new();
    for o in objects {
        let Some(map) = o.as_object() else { continue };
        for (k, v) in map {
            let i = match out.iter().position(|f| f.key == *k) {
                Some(i) => i,
                None => {
                    out.push(Field {
                        key: k.clone(),
                        ..Default::default()
                    });
                    out.len() - 1
                }
            };
            out[i].present += 1;
            if !v.is_null() {
                out[i].values.push(v);
            }
        }
    }
    out
}

/// Infer the table of a resource from its sampled records.
pub(crate) fn table(records: &[Value], cx: &Context) -> Table {
    let objects: Vec<&Value> = records.iter().filter(|r| r.is_object()).collect();
    let mut t = Table {
        name: cx.table.to_string(),
        ..Default::default()
    };
    let fields = fields(&objects);
    let key = primary_key(&fields, &objects, cx.table);
    let mut taken = HashSet::new();
    let mut arrays = Vec::new();
    Flatten {
        objects: objects.len(),
        cx,
        out: &mut t.columns,
        arrays: &mut arrays,
        taken: &mut taken,
    }
    .columns(&fields, "$", "", 0);
    // The key's column, as named among the others.
    let key = key.map(|(field, col)| match column_of(&mut t.columns, &field) {
        Some(c) => {
            c.why = "primary key".to_string();
            c.not_null = false;
            (field, c.name.clone())
        }
        None => (field, col),
    });
    if let Some((field, col)) = &key {
        t.primary_key = vec![col.clone()];
        t.notes.push(format!(
            "`{field}` is unique in the {} sampled records: the primary key, rows merged on it",
            objects.len()
        ));
    } else if let Some((field, id)) = self_url_key(&fields, objects.len(), cx) {
        // No id field, but each record's own URL ends in its id (PokeAPI's lists).
        let name = unique(&mut taken, &id);
        t.columns.insert(
            0,
            Col {
                name: name.clone(),
                ty: Some(ColumnType::Integer),
                path: Some(format!("${}", path_step(&field))),
                transforms: vec![Transform::UrlLastSegment],
                why: format!(
                    "primary key: the id at the end of each record's own URL, {}/…",
                    cx.own_path
                ),
                ..Default::default()
            },
        );
        t.primary_key = vec![name];
        t.notes.push(format!(
            "no id field, but `{field}` is each record's own URL, unique in the {} sampled records: its last segment is the primary key, rows merged on it",
            objects.len()
        ));
    } else {
        t.notes
            .push("no id-like field is unique in the sample: rows are appended on every run".to_string());
    }
    // Arrays: a nested table each when the parent has a key to hang the rows on.
    for (path, name, field_values) in arrays {
        match key.as_ref().map(|(_, col)| col) {
            Some(pk) => {
                if let Some(n) = nested(cx, &t.name, pk, &path, &name, &field_values, objects.len()) {
                    t.nested.push(n);
                    continue;
                }
                push_jsonb(
                    &mut t.columns,
                    &mut taken,
                    &name,
                    &path,
                    "an array of mixed values: kept as JSON",
                );
            }
            None => push_jsonb(
                &mut t.columns,
                &mut taken,
                &name,
                &path,
                "an array; kept as JSON, since without a key its rows could not be tied to this table's",
            ),
        }
    }
    t
}

/// The column that reads top-level field `field`.
fn column_of<'c>(columns: &'c mut [Col], field: &str) -> Option<&'c mut Col> {
    let path = format!("${}", path_step(field));
    columns.iter_mut().find(|c| c.path.as_deref() == Some(path.as_str()))
}

fn push_jsonb(columns: &mut Vec<Col>, taken: &mut HashSet<String>, name: &str, path: &str, why: &str) {
    columns.push(Col {
        name: unique(taken, name),
        ty: Some(ColumnType::Jsonb),
        path: Some(path.to_string()),
        why: why.to_string(),
        ..Default::default()
    });
}

/// A name not yet taken in this table (`name`, `name_2`, …).
fn unique(taken: &mut HashSet<String>, name: &str) -> String {
    let mut out = name.to_string();
    let mut n = 2;
    while taken.contains(&out) || out == "_sluice_run_id" {
        out = clip_ident(&format!("{name}_{n}"));
        n += 1;
    }
    taken.insert(out.clone());
    out
}

/// An array field, kept for the nested-table pass: its path, column name and values.
type ArrayField<'v> = (String, String, Vec<&'v Value>);

/// Where the scalar columns of sampled objects go: `out`, with the names `taken`; array
/// fields are set aside in `arrays`. `objects` is how many objects were sampled.
struct Flatten<'a, 'v> {
    objects: usize,
    cx: &'a Context<'a>,
    out: &'a mut Vec<Col>,
    arrays: &'a mut Vec<ArrayField<'v>>,
    taken: &'a mut HashSet<String>,
}

impl<'v> Flatten<'_, 'v> {
    /// The scalar columns of `fields` at `path` (objects flattened into `a_b` columns).
    fn columns(&mut self, fields: &[Field<'v>], path: &str, prefix: &str, depth: usize) {
        let (objects, cx) = (self.objects, self.cx);
        for f in fields {
            let fpath = format!("{path}{}", path_step(&f.key));
            let name = clip_ident(&join_name(prefix, &snake_case(&f.key)));
            let all_objects = !f.values.is_empty() && f.values.iter().all(|v| v.is_object());
            let all_arrays = !f.values.is_empty() && f.values.iter().all(|v| v.is_array());
            if all_objects {
                let inner = self::fields(&f.values);
                let flat = depth < 2 && !inner.is_empty() && inner.len() <= 16;
                if flat {
                    self.columns(&inner, &fpath, &name, depth + 1);
                } else {
                    let why = match inner.is_empty() {
                        true => "an empty object in every sampled record: kept as JSON".to_string(),
                        false => format!("an object with {} different keys: kept as JSON", inner.len()),
                    };
                    push_jsonb(self.out, self.taken, &name, &fpath, &why);
                }
                continue;
            }
            if all_arrays && depth == 0 {
                self.arrays.push((fpath, name, f.values.clone()));
                continue;
            }
            if all_arrays {
                push_jsonb(
                    self.out,
                    self.taken,
                    &name,
                    &fpath,
                    "an array inside an object: kept as JSON",
                );
                continue;
            }
            let mut col = scalar(&name, &f.key, &f.values, cx);
            col.name = unique(self.taken, &col.name);
            col.path = Some(fpath);
            let missing = objects - f.present;
            let nulls = f.present - f.values.len();
            if missing > 0 {
                col.optional = true;
                note(
                    &mut col.why,
                    format!("absent from {missing} of {objects} sampled records"),
                );
            } else if nulls == 0
                && cx.complete
                && !col.transforms.contains(&Transform::EmptyAsNull)
                && !col.transforms.contains(&Transform::UrlLastSegment)
            {
                col.not_null = true;
            }
            if nulls > 0 && col.ty.is_some() && !f.values.is_empty() {
                note(&mut col.why, format!("null in {nulls} of {objects}"));
            }
            self.out.push(col);
        }
    }
}

fn note(why: &mut String, more: String) {
    if !why.is_empty() {
        why.push_str("; ");
    }
    why.push_str(&more);
}

pub(crate) use crate::extract::signals::path_step;

fn join_name(prefix: &str, name: &str) -> String {
    match prefix.is_empty() {
        true => name.to_string(),
        false => format!("{prefix}_{name}"),
    }
}

/// `percentTotalVolume` → `percent_total_volume`, `@odata.etag` → `odata_etag`,
/// `HTTPStatus` → `http_status`; a lowercase SQL identifier.
pub(crate) fn snake_case(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_alphanumeric() {
            let boundary = c.is_ascii_uppercase()
                && i > 0
                && (chars[i - 1].is_ascii_lowercase()
                    || chars[i - 1].is_ascii_digit()
                    || (chars[i - 1].is_ascii_uppercase() && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase())));
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_matches('_').to_string();
    match out.chars().next() {
        None => "field".to_string(),
        Some(c) if c.is_ascii_digit() => format!("f_{out}"),
        _ => out,
    }
}

/// At most 63 bytes (all ASCII here), without a trailing `_`.
fn clip_ident(name: &str) -> String {
    name[..name.len().min(crate::spec::ident::MAX_IDENT_BYTES)]
        .trim_end_matches('_')
        .to_string()
}

/// `characters` → `character`, `categories` → `category`, `addresses` → `address`.
pub(crate) fn singular(word: &str) -> String {
    if let Some(stem) = word.strip_suffix("ies") {
        return format!("{stem}y");
    }
    for end in ["sses", "ches", "shes", "xes"] {
        if word.ends_with(end) {
            return word[..word.len() - 2].to_string();
        }
    }
    match word.strip_suffix('s') {
        Some(stem) if !stem.ends_with('s') && !stem.is_empty() => stem.to_string(),
        _ => word.to_string(),
    }
}

/// The primary key: the first id-like top-level field that every sampled record has,
/// non-null, scalar and unique. Returns the field and its column name.
fn primary_key(fields: &[Field], objects: &[&Value], table: &str) -> Option<(String, String)> {
    let one = singular(table).replace('_', "");
    let rank = |key: &str| {
        let k = key.to_ascii_lowercase().replace(['_', '-'], "");
        if k == "id" {
            Some(0)
        } else if k == format!("{one}id") {
            Some(1)
        } else if ["uuid", "guid", "sid"].contains(&k.as_str()) {
            Some(2)
        } else if k == format!("{one}key") || k == "key" {
            Some(3)
        } else {
            None
        }
    };
    let mut candidates: Vec<(usize, &Field)> = fields.iter().filter_map(|f| rank(&f.key).map(|r| (r, f))).collect();
    candidates.sort_by_key(|(r, _)| *r);
    candidates.into_iter().map(|(_, f)| f).find_map(|f| {
        let scalar = f.values.iter().all(|v| v.is_string() || v.as_i64().is_some());
        let distinct: HashSet<String> = f.values.iter().map(|v| v.to_string()).collect();
        (f.values.len() == objects.len() && !objects.is_empty() && scalar && distinct.len() == objects.len())
            .then(|| (f.key.clone(), clip_ident(&snake_case(&f.key))))
    })
}

/// A field holding each record's own URL (`…/pokemon/1/`, below the resource's path),
/// present and unique in every record: the field and the name of the id column.
fn self_url_key(fields: &[Field], objects: usize, cx: &Context) -> Option<(String, String)> {
    fields.iter().find_map(|f| {
        let texts: Vec<&str> = f.values.iter().filter_map(|v| v.as_str()).collect();
        let own = texts.len() == objects
            && objects > 0
            && texts.iter().all(|t| record_url(t).as_deref() == Some(cx.own_path))
            && fits(&f.values, ColumnType::Integer, &[Transform::UrlLastSegment]);
        let distinct: HashSet<&str> = texts.iter().copied().collect();
        (own && distinct.len() == objects).then(|| (f.key.clone(), "id".to_string()))
    })
}

/// Whether a name reads as a time (for numbers that are epoch seconds or milliseconds).
fn time_like(key: &str) -> bool {
    let k = snake_case(key);
    [
        "time",
        "date",
        "created",
        "updated",
        "modified",
        "deleted",
        "expires",
        "timestamp",
    ]
    .iter()
    .any(|w| k.contains(w))
        || k.ends_with("_at")
        || k.ends_with("_on")
        || ["ts", "at", "since", "until"].contains(&k.as_str())
}

/// Epoch seconds or milliseconds between 2000 and 2100.
fn epoch_unit(values: &[&Value]) -> Option<Transform> {
    let nums: Vec<f64> = values
        .iter()
        .map(|v| match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<i64>().ok().map(|n| n as f64),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let within = |lo: f64, hi: f64| nums.iter().all(|n| *n >= lo && *n <= hi);
    if within(946_684_800.0, 4_102_444_800.0) {
        Some(Transform::EpochS)
    } else if within(946_684_800_000.0, 4_102_444_800_000.0) {
        Some(Transform::EpochMs)
    } else {
        None
    }
}

/// An integer written as text the way a number is (no leading zero, no sign but `-`),
/// which an integer column keeps exactly.
fn integer_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
}

fn decimal_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (int == "0" || !int.starts_with('0'))
        && digits.len() <= 60
}

/// A URL that names one record of a collection: `https://host/api/location/3`. Returns
/// the collection's path (`/api/location`).
fn record_url(s: &str) -> Option<String> {
    let url = url::Url::parse(s).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
        return None;
    }
    let path = url.path().trim_end_matches('/');
    let (collection, last) = path.rsplit_once('/')?;
    (integer_text(last) && !last.starts_with('-') && !collection.is_empty()).then(|| collection.to_string())
}

/// The column of a scalar field: its type (the narrowest every sampled value fits),
/// transforms, name and the reason.
fn scalar(name: &str, key: &str, values: &[&Value], cx: &Context) -> Col {
    let texts: Vec<&str> = values.iter().filter_map(|v| v.as_str()).collect();
    let non_empty: Vec<&str> = texts.iter().copied().filter(|s| !s.is_empty()).collect();
    let empties = texts.len() - non_empty.len();
    let all_text = texts.len() == values.len() && !values.is_empty();
    let mut col = Col {
        name: name.to_string(),
        ..Default::default()
    };
    if values.is_empty() {
        col.ty = Some(ColumnType::Text);
        col.why = "null in every sampled record: text takes any value".to_string();
        return col;
    }
    // A URL naming a record of another collection: its id, maybe a reference.
    if all_text && !non_empty.is_empty() {
        let collections: HashSet<Option<String>> = non_empty.iter().map(|s| record_url(s)).collect();
        if collections.len() == 1 {
            if let Some(Some(collection)) = collections.into_iter().next() {
                if collection != cx.own_path {
                    return url_reference(name, &collection, values, cx);
                }
            }
        }
    }
    let mut transforms = Vec::new();
    let (ty, why): (ColumnType, String) = if values.iter().all(|v| v.is_boolean()) {
        (ColumnType::Boolean, String::new())
    } else if time_like(key)
        && (values.iter().all(|v| v.is_number()) || (all_text && non_empty.iter().all(|s| integer_text(s))))
        && epoch_unit(values).is_some()
    {
        let unit = epoch_unit(values).expect("checked");
        transforms.push(unit);
        let what = if unit == Transform::EpochMs {
            "milliseconds"
        } else {
            "seconds"
        };
        (ColumnType::Timestamptz, format!("epoch {what}, by its name and range"))
    } else if values.iter().all(|v| v.is_number()) {
        let ints: Option<Vec<i64>> = values.iter().map(|v| v.as_i64()).collect();
        match ints {
            Some(ints) if ints.iter().all(|n| i32::try_from(*n).is_ok()) => (ColumnType::Integer, String::new()),
            Some(_) => (ColumnType::Bigint, String::new()),
            None => (ColumnType::Double, String::new()),
        }
    } else if all_text && !non_empty.is_empty() {
        if non_empty.iter().all(|s| integer_text(s)) {
            let big = non_empty.iter().any(|s| s.parse::<i32>().is_err());
            let ty = if big { ColumnType::Bigint } else { ColumnType::Integer };
            (ty, "numbers sent as text".to_string())
        } else if non_empty.iter().all(|s| decimal_text(s)) {
            (ColumnType::Numeric, "decimals sent as text, kept exact".to_string())
        } else if non_empty.iter().all(|s| plain_date(s)) {
            (ColumnType::Date, String::new())
        } else if non_empty.iter().all(|s| has_time(s) && parse_timestamp(s).is_some()) {
            (ColumnType::Timestamptz, String::new())
        } else {
            (ColumnType::Text, String::new())
        }
    } else if let Some(ty) = mixed_scalars(values) {
        (ty, "values of different kinds that all fit".to_string())
    } else if values.iter().any(|v| v.is_object() || v.is_array()) {
        (ColumnType::Jsonb, "values of different kinds: kept as JSON".to_string())
    } else {
        (ColumnType::Text, "values of different kinds: kept as text".to_string())
    };
    col.why = why;
    if empties > 0 && empties < texts.len() {
        transforms.insert(0, Transform::EmptyAsNull);
        note(&mut col.why, format!("empty (`\"\"`) in {empties}, loaded as null"));
    } else if empties > 0 && ty != ColumnType::Text {
        transforms.insert(0, Transform::EmptyAsNull);
    }
    // The sample must load: fall back to text, then JSON, when a value does not fit.
    let (ty, transforms) = [
        (ty, transforms.clone()),
        (ColumnType::Text, vec![]),
        (ColumnType::Jsonb, vec![]),
    ]
    .into_iter()
    .find(|(ty, ts)| fits(values, *ty, ts))
    .expect("jsonb takes every value");
    col.ty = Some(ty);
    col.transforms = transforms;
    col
}

/// Numbers and booleans some of which come as text (`7` and `"42"`): the first type
/// they all fit, if any.
fn mixed_scalars(values: &[&Value]) -> Option<ColumnType> {
    if values.iter().any(|v| v.is_object() || v.is_array()) {
        return None;
    }
    let mut types = vec![
        ColumnType::Integer,
        ColumnType::Bigint,
        ColumnType::Numeric,
        ColumnType::Double,
    ];
    if values.iter().any(|v| v.is_boolean()) {
        types = vec![ColumnType::Boolean];
    }
    types.into_iter().find(|ty| fits(values, *ty, &[]))
}

/// `YYYY-MM-DD` followed by `T` or a space and more: a date with a time.
fn has_time(s: &str) -> bool {
    let iso = s.len() > 10
        && s.is_char_boundary(10)
        && chrono::NaiveDate::parse_from_str(&s[..10], "%Y-%m-%d").is_ok()
        && matches!(s.as_bytes()[10], b'T' | b' ');
    // RFC 2822, as Twilio writes `date_created`: `Sat, 04 Nov 2017 18:48:46 +0000`.
    iso || chrono::DateTime::parse_from_rfc2822(s).is_ok()
}

/// A date without a time: `2013-12-02` or `December 2, 2013`.
fn plain_date(s: &str) -> bool {
    !has_time(s) && parse_date(s).is_some() && parse_timestamp(s).is_none_or(|_| s.len() == 10)
}

/// Whether every value goes through the transforms into the type.
fn fits(values: &[&Value], ty: ColumnType, transforms: &[Transform]) -> bool {
    values.iter().all(|v| {
        let mut val = Val::from_json(Some(v));
        for t in transforms {
            val = match apply(*t, val) {
                Ok(v) => v,
                Err(_) => return false,
            };
        }
        coerce(&val, ty).is_ok()
    })
}

/// A field of URLs of one other collection: the id in their last segment, referencing
/// the resource that serves the collection when the spec has one.
fn url_reference(name: &str, collection: &str, values: &[&Value], cx: &Context) -> Col {
    let base = name
        .strip_suffix("_url")
        .or_else(|| name.strip_suffix("_uri"))
        .or_else(|| name.strip_suffix("_href"))
        .unwrap_or(if name == "url" || name == "href" { "" } else { name });
    let stem = match base.is_empty() {
        true => singular(collection.rsplit('/').next().unwrap_or("ref")),
        false => base.to_string(),
    };
    let col_name = clip_ident(&format!("{}_id", snake_case(&stem)));
    let target = cx.known.iter().find(|k| k.path == collection);
    let ty = match target {
        Some(k) => k.key_type,
        None if fits(values, ColumnType::Integer, &[Transform::UrlLastSegment]) => ColumnType::Integer,
        None => ColumnType::Bigint,
    };
    let mut col = Col {
        name: col_name,
        ty: Some(ty),
        transforms: vec![Transform::UrlLastSegment],
        ..Default::default()
    };
    let empties = values.iter().filter(|v| v.as_str() == Some("")).count();
    col.why = format!("the id at the end of URLs {collection}/…");
    if empties > 0 {
        note(&mut col.why, format!("empty (`\"\"`) in {empties}, loaded as null"));
    }
    if let Some(k) = target {
        col.references = Some(format!("{}.{}", k.table, k.key));
    }
    if !fits(values, ty, &col.transforms) {
        col.ty = Some(ColumnType::Text);
    }
    col
}

/// The nested table of an array field: one row per element, tied to the parent's key.
fn nested(
    cx: &Context,
    parent: &str,
    parent_key: &str,
    path: &str,
    name: &str,
    arrays: &[&Value],
    parents: usize,
) -> Option<Table> {
    let elements: Vec<&Value> = arrays.iter().flat_map(|a| a.as_array().into_iter().flatten()).collect();
    let table_name = clip_ident(&format!("{parent}_{name}"));
    let one = singular(parent);
    let key_col = if parent_key.starts_with(&format!("{one}_")) {
        parent_key.to_string()
    } else {
        clip_ident(&format!("{one}_{parent_key}"))
    };
    let mut taken: HashSet<String> = HashSet::from([key_col.clone()]);
    let mut t = Table {
        name: table_name,
        each: Some(format!("{path}[*]")),
        ..Default::default()
    };
    t.columns.push(Col {
        name: key_col.clone(),
        from_parent: Some(parent_key.to_string()),
        references: Some(format!("{parent}.{parent_key}")),
        why: format!("the `{parent}` row's key"),
        ..Default::default()
    });
    let per_parent_unique = |key_of: &dyn Fn(&Value) -> Option<String>| {
        arrays.iter().all(|a| {
            let items = a.as_array().map(Vec::as_slice).unwrap_or_default();
            let keys: Option<HashSet<String>> = items.iter().map(key_of).collect();
            keys.is_some_and(|k| k.len() == items.len())
        })
    };
    let position = |t: &mut Table, taken: &mut HashSet<String>| {
        let pos = unique(taken, "position");
        t.columns.push(Col {
            name: pos.clone(),
            meta: Some("index"),
            why: "the element's place in the array, from 0".to_string(),
            ..Default::default()
        });
        t.primary_key = vec![key_col.clone(), pos];
    };
    if elements.is_empty() {
        return None;
    }
    if elements.iter().all(|e| !e.is_object() && !e.is_array()) {
        let element = singular(name);
        let element = if element == key_col {
            format!("{element}_value")
        } else {
            element
        };
        let mut col = scalar(&element, &element, &elements, cx);
        col.name = unique(&mut taken, &col.name);
        col.path = Some("$".to_string());
        let key = col.name.clone();
        t.columns.push(col);
        if per_parent_unique(&|v: &Value| (!v.is_null()).then(|| v.to_string())) {
            t.primary_key = vec![key_col.clone(), key];
        } else {
            position(&mut t, &mut taken);
        }
        t.notes.push(format!(
            "one row per element of `{}` in each `{parent}` record ({} elements in {parents} sampled records)",
            name,
            elements.len()
        ));
        return Some(t);
    }
    if elements.iter().all(|e| e.is_object()) {
        let fields = fields(&elements);
        let id = fields
            .iter()
            .find(|f| f.key.eq_ignore_ascii_case("id") && f.values.len() == elements.len())
            .filter(|f| f.values.iter().all(|v| v.is_string() || v.as_i64().is_some()))
            .map(|f| f.key.clone());
        let mut arrays_inside = Vec::new();
        let mut cols = Vec::new();
        let inner_cx = Context { complete: false, ..*cx };
        Flatten {
            objects: elements.len(),
            cx: &inner_cx,
            out: &mut cols,
            arrays: &mut arrays_inside,
            taken: &mut taken,
        }
        .columns(&fields, "$", "", 1);
        t.columns.extend(cols);
        for (p, n, _) in arrays_inside {
            push_jsonb(
                &mut t.columns,
                &mut taken,
                &n,
                &p,
                "an array inside the element: kept as JSON",
            );
        }
        let id_unique = id.as_ref().is_some_and(|id| {
            per_parent_unique(&|v: &Value| v.get(id).filter(|x| !x.is_null()).map(|x| x.to_string()))
        });
        match id {
            Some(id) if id_unique => {
                let col =
                    column_of(&mut t.columns, &id).map_or_else(|| clip_ident(&snake_case(&id)), |c| c.name.clone());
                t.primary_key = vec![key_col.clone(), col];
            }
            _ => position(&mut t, &mut taken),
        }
        t.notes.push(format!(
            "one row per object in `{}` of each `{parent}` record ({} in {parents} sampled records)",
            name,
            elements.len()
        ));
        return Some(t);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        assert_eq!(snake_case("percentTotalVolume"), "percent_total_volume");
        assert_eq!(snake_case("HTTPStatus"), "http_status");
        assert_eq!(snake_case("@odata.etag"), "odata_etag");
        assert_eq!(snake_case("2fa"), "f_2fa");
        assert_eq!(snake_case("first-name"), "first_name");
        assert_eq!(singular("categories"), "category");
        assert_eq!(singular("addresses"), "address");
        assert_eq!(singular("exchanges"), "exchange");
        assert_eq!(singular("status"), "statu");
        assert_eq!(path_step("a-b"), "['a-b']");
    }

    #[test]
    fn types_from_values() {
        let records = vec![
            json!({"exchangeId": "binance", "rank": "1", "volumeUsd": "123.45", "socket": true,
                   "updated": 1700000000000u64, "created": "2017-11-04T18:48:46.922Z",
                   "sent": "Sat, 04 Nov 2017 18:48:46 +0000",
                   "air_date": "August 13, 2017", "type": "", "score": 1.5,
                   "origin": {"name": "Earth", "url": "http://x/api/location/1"}}),
            json!({"exchangeId": "kraken", "rank": "2", "volumeUsd": "7", "socket": false,
                   "updated": 1700000001000u64, "created": "2017-11-04T18:50:21.651Z",
                   "sent": "Mon, 06 Nov 2017 08:00:00 -0500",
                   "air_date": "January 20, 2014", "type": "Human", "score": 2,
                   "origin": {"name": "unknown", "url": ""}}),
        ];
        let known = [Known {
            path: "/api/location".into(),
            table: "location".into(),
            key: "id".into(),
            key_type: ColumnType::Integer,
        }];
        let cx = Context {
            table: "exchanges",
            own_path: "/api/exchanges",
            known: &known,
            complete: true,
        };
        let t = table(&records, &cx);
        let col = |n: &str| {
            t.columns
                .iter()
                .find(|c| c.name == n)
                .unwrap_or_else(|| panic!("no {n}: {:?}", t.columns))
        };
        assert_eq!(t.primary_key, vec!["exchange_id"]);
        assert_eq!(col("rank").ty, Some(ColumnType::Integer));
        assert_eq!(col("volume_usd").ty, Some(ColumnType::Numeric));
        assert_eq!(col("socket").ty, Some(ColumnType::Boolean));
        assert_eq!(col("updated").transforms, vec![Transform::EpochMs]);
        assert_eq!(col("created").ty, Some(ColumnType::Timestamptz));
        assert_eq!(col("sent").ty, Some(ColumnType::Timestamptz));
        assert_eq!(col("air_date").ty, Some(ColumnType::Date));
        assert_eq!(col("type").transforms, vec![Transform::EmptyAsNull]);
        assert_eq!(col("score").ty, Some(ColumnType::Double));
        assert_eq!(col("origin_id").references.as_deref(), Some("location.id"));
        assert!(col("origin_name").not_null);
    }
}
