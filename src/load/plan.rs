//! The single-pass plan of a resource's mapping. Every path its columns, `parent_path`s,
//! filters and nested tables read is compiled into one tree of object keys, followed while
//! a staged record's bytes are parsed: only the values the columns select are made
//! (strings borrowed from the line when they hold no escape, numbers kept exact), and every
//! other part of the record is skipped without being built.
//!
//! What the plan cannot follow leaves the resource to the general evaluator
//! ([`super::record::map_record`] over a parsed record): a path with an index, a filter,
//! recursive descent or a wildcard before its end, zipped arrays, a value read whole and
//! inside, two nested tables over the same array. So does any record the plan cannot be
//! sure of (not an object, not valid JSON, a key repeated where the plan goes inside): the
//! general evaluator reads it again, so the rows (and the errors) are the same either way.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::record::{map_row_with, Found, RecordError, RecordRows, RunMeta};
use crate::spec::pipeline::{Each, RecordFilter, Table, ValueSource, PARENT_FIELD};
use crate::value::{Cell, Val};

/// The key serde_json gives a number read with `arbitrary_precision` (it comes as a map).
const NUMBER_KEY: &str = "$serde_json::private::Number";

/// A place in a record: the slot its whole value goes to, or the keys to go into, or the
/// array whose elements are a nested table's rows. One of the three at most.
#[derive(Debug, Default)]
struct Node {
    slot: Option<usize>,
    fields: Vec<(String, Node)>,
    elements: Option<Box<Elements>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.slot.is_none() && self.fields.is_empty() && self.elements.is_none()
    }

    /// The node at `path` below this one, made if it is not there; `None` when the way
    /// passes through a slot or an array of elements.
    fn at(&mut self, path: &[&str]) -> Option<&mut Node> {
        let mut node = self;
        for name in path {
            if node.slot.is_some() || node.elements.is_some() {
                return None;
            }
            let i = match node.fields.iter().position(|(k, _)| k == name) {
                Some(i) => i,
                None => {
                    node.fields.push((name.to_string(), Node::default()));
                    node.fields.len() - 1
                }
            };
            node = &mut node.fields[i].1;
        }
        Some(node)
    }

    /// The slot of the value at `path`, a new one (the `width`-th) unless another column
    /// reads the same value.
    fn slot(&mut self, path: &[&str], width: &mut usize) -> Option<usize> {
        let node = self.at(path)?;
        if !node.fields.is_empty() || node.elements.is_some() {
            return None;
        }
        Some(*node.slot.get_or_insert_with(|| {
            *width += 1;
            *width - 1
        }))
    }
}

/// The array (or, under `[*]`, each element) whose elements are rows of a nested table.
#[derive(Debug)]
struct Elements {
    table: usize,
    /// `$.a[*]`: each element of the array (or each value of the object) at the node;
    /// `$.a`: the value itself is the one element.
    wildcard: bool,
    /// Inside one element.
    scope: Node,
}

/// A resource's plan: the tree of what it reads, and per table where each column's value
/// is found.
#[derive(Debug)]
pub struct Plan {
    root: Node,
    /// Per table: its slots, and per column the slot it reads (`None`: no path).
    widths: Vec<usize>,
    columns: Vec<Vec<Option<usize>>>,
    /// The slots (in the root's) of the resource's filters, in order.
    filters: Vec<usize>,
    /// Per table, the tables nested in it, in order.
    children: Vec<Vec<usize>>,
}

impl Plan {
    /// The plan of `tables` (and the resource's `filter`), or `None` when a path is one
    /// it cannot follow.
    pub fn new(tables: &[Table], filter: &[RecordFilter]) -> Option<Plan> {
        if tables.is_empty() {
            return None;
        }
        let mut scopes: Vec<Node> = Vec::with_capacity(tables.len());
        let mut widths = Vec::with_capacity(tables.len());
        let mut columns = Vec::with_capacity(tables.len());
        for t in tables {
            let (mut scope, mut width) = (Node::default(), 0);
            let mut slots = Vec::with_capacity(t.columns.len());
            for c in &t.columns {
                slots.push(match &c.value {
                    ValueSource::Path(p) => {
                        let (path, false) = p.field_steps()? else { return None };
                        Some(scope.slot(&path, &mut width)?)
                    }
                    ValueSource::ParentRecord(p) => Some(scope.slot(&[PARENT_FIELD, p.as_str()], &mut width)?),
                    _ => None,
                });
            }
            scopes.push(scope);
            widths.push(width);
            columns.push(slots);
        }
        let mut filters = Vec::with_capacity(filter.len());
        for f in filter {
            let (path, false) = f.path.field_steps()? else {
                return None;
            };
            filters.push(scopes[0].slot(&path, &mut widths[0])?);
        }
        // Deepest first, so that a table's scope holds its own nested tables when it goes
        // into its parent's.
        let mut children = vec![Vec::new(); tables.len()];
        for (i, t) in tables.iter().enumerate().skip(1).rev() {
            let parent = t.parent?;
            let Some(Each::Path(p)) = &t.each else { return None };
            let (path, wildcard) = p.field_steps()?;
            let scope = std::mem::take(&mut scopes[i]);
            let node = scopes.get_mut(parent)?.at(&path)?;
            if !node.is_empty() {
                return None;
            }
            node.elements = Some(Box::new(Elements {
                table: i,
                wildcard,
                scope,
            }));
            children[parent].insert(0, i);
        }
        let root = std::mem::take(&mut scopes[0]);
        if root.slot.is_some() || root.elements.is_some() {
            return None;
        }
        Some(Plan {
            root,
            widths,
            columns,
            filters,
            children,
        })
    }

    /// Read `line` along the plan; `None` when the plan cannot be sure of this record
    /// (then the general evaluator reads it).
    pub fn read<'de>(&self, line: &'de str) -> Option<Captured<'de>> {
        let mut cap = Captured {
            leaves: Vec::with_capacity(self.widths[0]),
            frames: Vec::new(),
        };
        cap.open(&self.widths, 0, usize::MAX, 0);
        let mut de = serde_json::Deserializer::from_str(line);
        let read = de.deserialize_map(Fields {
            node: &self.root,
            frame: 0,
            plan: self,
            cap: &mut cap,
        });
        (read.is_ok() && de.end().is_ok()).then_some(cap)
    }

    /// Whether the captured record passes every filter.
    pub fn keeps(&self, filter: &[RecordFilter], cap: &Captured<'_>) -> bool {
        filter
            .iter()
            .zip(&self.filters)
            .all(|(f, slot)| match &cap.leaves[*slot] {
                Leaf::Missing => f.holds_for(None),
                Leaf::Null => f.holds_for(Some(&Value::Null)),
                Leaf::Str(s) => f.holds_for(Some(&Value::String(s.to_string()))),
                Leaf::Json(v) => f.holds_for(Some(v)),
            })
    }

    /// Map the captured record into every table, as [`super::record::map_record`] maps a
    /// parsed one: the same rows, refused whole at the same first error.
    pub fn map(
        &self,
        tables: &[Table],
        cap: &Captured<'_>,
        meta: &RunMeta,
        out: &mut RecordRows,
    ) -> Result<(), RecordError> {
        out.begin(tables);
        // Frames by parent, then table; within those in document order, as the general
        // evaluator meets them.
        let mut order: Vec<usize> = (1..cap.frames.len()).collect();
        order.sort_by_key(|&f| (cap.frames[f].parent, cap.frames[f].table));
        let mut seen = std::mem::take(&mut out.seen);
        let mapped = self.map_frame(tables, cap, &order, 0, None, meta, out, &mut seen);
        out.seen = seen;
        let root = mapped?;
        out.rows[0].push(root);
        out.accept(tables);
        Ok(())
    }

    /// The row of frame `f`, after the rows of the frames nested in it (depth first).
    #[allow(clippy::too_many_arguments)]
    fn map_frame(
        &self,
        tables: &[Table],
        cap: &Captured<'_>,
        order: &[usize],
        f: usize,
        parent: Option<&[Cell]>,
        meta: &RunMeta,
        out: &mut RecordRows,
        seen: &mut Vec<bool>,
    ) -> Result<Vec<Cell>, RecordError> {
        let frame = cap.frames[f];
        let t = frame.table;
        let leaves = &cap.leaves[frame.start..frame.start + self.widths[t]];
        let slots = &self.columns[t];
        let index = (t > 0).then_some(frame.index);
        let row = map_row_with(&tables[t], parent, index, meta, seen, |i, _| {
            let leaf = slots[i].map_or(&Leaf::Missing, |s| &leaves[s]);
            Found::One(match leaf {
                Leaf::Missing => None,
                Leaf::Null => Some(Val::Null),
                Leaf::Str(s) => Some(Val::Text(Cow::Borrowed(s.as_ref()))),
                Leaf::Json(v) => Some(Val::Json(v)),
            })
        })
        .map_err(|error| RecordError { table: t, error })?;
        out.matched[t].extend_from_slice(seen);
        for &child in &self.children[t] {
            let from = order.partition_point(|&g| (cap.frames[g].parent, cap.frames[g].table) < (f, child));
            let to = order.partition_point(|&g| (cap.frames[g].parent, cap.frames[g].table) <= (f, child));
            for &g in &order[from..to] {
                let child_row = self.map_frame(tables, cap, order, g, Some(&row), meta, out, seen)?;
                out.rows[child].push(child_row);
            }
        }
        Ok(row)
    }
}

/// A value the plan took from a record.
#[derive(Debug)]
enum Leaf<'de> {
    /// The path matched nothing.
    Missing,
    Null,
    Str(Cow<'de, str>),
    /// A number, boolean, array or object.
    Json(Value),
}

/// What the plan took from one record: per frame (the record, then each element of a
/// nested table, in document order) its table's slots.
#[derive(Debug)]
pub struct Captured<'de> {
    leaves: Vec<Leaf<'de>>,
    frames: Vec<Frame>,
}

#[derive(Debug, Clone, Copy)]
struct Frame {
    table: usize,
    /// The frame of the element (or record) it is in; `usize::MAX` for the record's.
    parent: usize,
    /// Its place among the elements of its array.
    index: usize,
    /// Its first slot in `leaves`.
    start: usize,
}

impl Captured<'_> {
    fn open(&mut self, widths: &[usize], table: usize, parent: usize, index: usize) -> usize {
        self.frames.push(Frame {
            table,
            parent,
            index,
            start: self.leaves.len(),
        });
        self.leaves
            .resize_with(self.leaves.len() + widths[table], || Leaf::Missing);
        self.frames.len() - 1
    }
}

/// Why the plan gave a record up: a key it goes into came twice (the parsed record keeps
/// the last, which the plan has already passed).
const REPEATED: &str = "a key the plan goes into is repeated";

/// Reading the value at `node`, inside frame `frame`.
struct At<'p, 'c, 'de> {
    node: &'p Node,
    frame: usize,
    plan: &'p Plan,
    cap: &'c mut Captured<'de>,
}

impl<'de> DeserializeSeed<'de> for At<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let At { node, frame, plan, cap } = self;
        if let Some(slot) = node.slot {
            let leaf = d.deserialize_any(LeafVisitor)?;
            let start = cap.frames[frame].start;
            cap.leaves[start + slot] = leaf;
            Ok(())
        } else if let Some(el) = &node.elements {
            if el.wildcard {
                d.deserialize_any(EachOf { el, frame, plan, cap })
            } else {
                Element {
                    el,
                    parent: frame,
                    index: 0,
                    plan,
                    cap,
                }
                .deserialize(d)
            }
        } else {
            d.deserialize_any(Fields { node, frame, plan, cap })
        }
    }
}

/// The `visit_*` of a visitor for which a scalar (or null) holds nothing it reads.
macro_rules! scalars_hold_nothing {
    () => {
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    };
}

/// The keys of an object, those the plan names read along it, the others skipped.
struct Fields<'p, 'c, 'de> {
    node: &'p Node,
    frame: usize,
    plan: &'p Plan,
    cap: &'c mut Captured<'de>,
}

impl<'de> Visitor<'de> for Fields<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // The children gone into so far (by their index, modulo 64: a false repeat only
        // sends the record to the general evaluator).
        let mut entered = 0u64;
        while let Some(found) = map.next_key_seed(KeyIn(&self.node.fields))? {
            match found {
                Some(i) => {
                    let child = &self.node.fields[i].1;
                    if child.slot.is_none() {
                        let bit = 1u64 << (i % 64);
                        if entered & bit != 0 {
                            return Err(A::Error::custom(REPEATED));
                        }
                        entered |= bit;
                    }
                    map.next_value_seed(At {
                        node: child,
                        frame: self.frame,
                        plan: self.plan,
                        cap: &mut *self.cap,
                    })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    scalars_hold_nothing!();
}

/// A key: the index of the plan's child it names, if any.
struct KeyIn<'p>(&'p [(String, Node)]);

impl<'de> DeserializeSeed<'de> for KeyIn<'_> {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIn<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|(k, _)| k == v))
    }
}

/// A key as it is, borrowed when it holds no escape.
struct AnyKey;

impl<'de> DeserializeSeed<'de> for AnyKey {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for AnyKey {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

/// The elements under `[*]`: those of an array, or the values of an object; none in
/// anything else.
struct EachOf<'p, 'c, 'de> {
    el: &'p Elements,
    frame: usize,
    plan: &'p Plan,
    cap: &'c mut Captured<'de>,
}

impl<'de> Visitor<'de> for EachOf<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while seq
            .next_element_seed(Element {
                el: self.el,
                parent: self.frame,
                index,
                plan: self.plan,
                cap: &mut *self.cap,
            })?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // The parsed record keeps one value per key: a repeated key sends the record to
        // the general evaluator.
        let mut keys: HashSet<Cow<'de, str>> = HashSet::new();
        let mut index = 0;
        while let Some(key) = map.next_key_seed(AnyKey)? {
            if key == NUMBER_KEY {
                // A number, not an object.
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if !keys.insert(key) {
                return Err(A::Error::custom(REPEATED));
            }
            map.next_value_seed(Element {
                el: self.el,
                parent: self.frame,
                index,
                plan: self.plan,
                cap: &mut *self.cap,
            })?;
            index += 1;
        }
        Ok(())
    }
    scalars_hold_nothing!();
}

/// One element: a new frame of the nested table, read along its scope.
struct Element<'p, 'c, 'de> {
    el: &'p Elements,
    parent: usize,
    index: usize,
    plan: &'p Plan,
    cap: &'c mut Captured<'de>,
}

impl<'de> DeserializeSeed<'de> for Element<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let frame = self.cap.open(&self.plan.widths, self.el.table, self.parent, self.index);
        At {
            node: &self.el.scope,
            frame,
            plan: self.plan,
            cap: self.cap,
        }
        .deserialize(d)
    }
}

/// A selected value: a string as it is (borrowed when it holds no escape), anything else
/// as a JSON value (numbers exact).
struct LeafVisitor;

impl<'de> Visitor<'de> for LeafVisitor {
    type Value = Leaf<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Json(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Json(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Leaf<'de>, E> {
        Ok(Leaf::Json(Value::from(v)))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Leaf<'de>, E> {
        serde_json::Number::from_f64(v)
            .map(|n| Leaf::Json(Value::Number(n)))
            .ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Leaf<'de>, A::Error> {
        // An object, or (as serde_json gives exact numbers) a number.
        Value::deserialize(MapAccessDeserializer::new(map)).map(Leaf::Json)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Leaf<'de>, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(Leaf::Json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::record::{map_record, needed_fields, parse_record};
    use crate::spec::compile_text;

    fn meta() -> RunMeta {
        RunMeta {
            run_id: "r1".into(),
            run_time: chrono::Utc::now(),
            pipeline: "p".into(),
        }
    }

    fn spec(resource: &str) -> crate::spec::Pipeline {
        let text = format!(
            "version: 1\nname: p\nsource: {{base_url: \"http://127.0.0.1:1\"}}\nstaging: {{location: \"file:///tmp/x\"}}\n\
             warehouse: {{url: \"postgres://u@127.0.0.1/db\", schema: p}}\nresources:\n{resource}"
        );
        compile_text("p.yaml", &text).unwrap()
    }

    /// What one record gives by the general evaluator and by the plan (`None` when the
    /// plan gave it up), as rows or the error, and whether the filters kept it.
    type Outcome = Result<Option<Vec<Vec<Vec<Cell>>>>, RecordError>;

    fn both(p: &crate::spec::Pipeline, line: &str) -> (Outcome, Option<Outcome>) {
        let r = &p.resources[0];
        let fields = needed_fields(&r.tables, &r.filter);
        let mut general = RecordRows::default();
        let expected = match parse_record(line, fields.as_deref()) {
            Ok(v) if !r.filter.iter().all(|f| f.holds(&v)) => Ok(None),
            Ok(v) => map_record(&r.tables, &v, &meta(), &mut general).map(|()| Some(general.rows.clone())),
            Err(e) => Err(RecordError {
                table: 0,
                error: crate::load::record::ColumnError {
                    column: "(record)".into(),
                    value: String::new(),
                    reason: e.to_string(),
                },
            }),
        };
        let plan = Plan::new(&r.tables, &r.filter).expect("the plan follows these paths");
        let mut planned = RecordRows::default();
        let got = plan.read(line).map(|cap| {
            if !plan.keeps(&r.filter, &cap) {
                return Ok(None);
            }
            plan.map(&r.tables, &cap, &meta(), &mut planned)
                .map(|()| Some(planned.rows.clone()))
        });
        if let (Some(Ok(_)), Ok(_)) = (&got, &expected) {
            for (a, b) in general.coverage.iter().zip(&planned.coverage) {
                assert_eq!((a.rows, &a.matched), (b.rows, &b.matched), "coverage of {line}");
            }
        }
        (expected, got)
    }

    fn agree(p: &crate::spec::Pipeline, lines: &[&str]) {
        for line in lines {
            let (expected, got) = both(p, line);
            assert_eq!(got.as_ref(), Some(&expected), "{line}");
        }
    }

    const CHARACTER: &str = "  - name: c\n    path: /c\n    records: $[*]\n    table:\n      name: c\n      columns:\n\
        \x20       - {name: id, type: integer, path: $.id}\n\
        \x20       - {name: name, type: text, path: $.name, nullable: false}\n\
        \x20       - {name: type, type: text, path: $.type, transform: empty_as_null}\n\
        \x20       - {name: origin_id, type: integer, path: $.origin.url, transform: url_last_segment}\n\
        \x20       - {name: origin_name, type: text, path: $.origin.name, default: none}\n\
        \x20       - {name: price, type: numeric, path: $.price, optional: true}\n\
        \x20       - {name: extra, type: jsonb, path: $.extra, optional: true}\n\
        \x20       - {name: as_text, type: text, path: $.extra, optional: true}\n\
        \x20       - {name: created, type: timestamptz, path: $.created, optional: true}\n\
        \x20       - {name: run, meta: run_id}\n\
        \x20       - {name: kind, type: text, value: person}\n\
        \x20     nested:\n\
        \x20       - name: appearance\n          each: $.episode[*]\n          columns:\n\
        \x20           - {name: character_id, from_parent: id}\n\
        \x20           - {name: position, meta: index}\n\
        \x20           - {name: episode_id, type: integer, path: $, transform: url_last_segment}\n";

    #[test]
    fn the_plan_maps_every_record_as_the_general_evaluator_does() {
        let p = spec(CHARACTER);
        agree(
            &p,
            &[
                r#"{"id":1,"name":"Rick","type":"","origin":{"name":"Earth","url":"https://x/location/1"},"episode":["https://x/episode/1","https://x/episode/2"],"unused":{"deep":[1,{"a":2}]}}"#,
                // Escapes, exact numbers, key order of a jsonb value, a missing field with a default.
                r#"{"id":2,"name":"R\u00e9\"m\\y\n","origin":{"url":"u/3"},"price":12345678901234567890.123456789,"extra":{"z":1,"a":[true,null,1.50]},"created":"2017-11-04T18:48:46.250Z","episode":[]}"#,
                // Nulls are matches; a scalar where an object was expected matches nothing inside.
                r#"{"id":3,"name":"x","type":null,"origin":"Earth","extra":null,"episode":null}"#,
                r#"{"id":4,"name":"x","origin":{"url":null},"episode":{"a":"e/7","b":"e/8"}}"#,
                r#"{"id":5,"name":"x","origin":[1,2],"episode":"e/1","extra":"text"}"#,
                r#"{"id":6,"name":"x","episode":[1, "e/2", null]}"#,
                // A repeated leaf key: the last one counts.
                r#"{"id":7,"id":8,"name":"x","name":"y","episode":[]}"#,
                // Errors: the first of them, as the general evaluator finds it.
                r#"{"id":"nine","name":null,"episode":["e/x"]}"#,
                r#"{"id":10,"name":null,"episode":["e/x"]}"#,
                r#"{"id":11,"name":"x","episode":["e/1","e/x"]}"#,
                r#"{"id":12,"name":"x","created":1500000000,"episode":[]}"#,
                r#"{"id":1e2,"name":"x","episode":[]}"#,
                r#"{"id":13,"name":"x\u0000y","episode":[]}"#,
            ],
        );
    }

    #[test]
    fn records_the_plan_cannot_be_sure_of_go_to_the_general_evaluator() {
        let p = spec(CHARACTER);
        for line in [
            // The parsed record keeps the last `origin` and the last `episode`.
            r#"{"id":1,"name":"x","origin":{"url":"u/1"},"origin":{"name":"n"},"episode":[]}"#,
            r#"{"id":1,"name":"x","episode":["e/1"],"episode":["e/2","e/3"]}"#,
            r#"{"id":1,"name":"x","episode":{"k":"e/1","k":"e/2"}}"#,
            // Not an object, not JSON, trailing text.
            r#"[1,2]"#,
            r#""a string""#,
            r#"{"id":1,"name":"x""#,
            r#"{"id":1,"name":"x","episode":[]} x"#,
        ] {
            let (expected, got) = both(&p, line);
            assert!(got.is_none(), "{line} should be given up, got {got:?}");
            if line.contains("episode") && line.ends_with('}') {
                assert!(matches!(expected, Ok(Some(_))), "{line}: {expected:?}");
            }
        }
    }

    #[test]
    fn nested_tables_filters_and_parent_values_follow_the_plan() {
        let p = spec(
            "  - name: pages\n    path: /p\n    records: $[*]\n    filter:\n      - {path: $.info.kind, equals: page}\n      - {path: $.gone, exists: false}\n\
             \x20   table:\n      name: page\n      columns:\n        - {name: next, type: text, path: $.info.next}\n\
             \x20     nested:\n        - name: character\n          each: $.results[*]\n          columns:\n\
             \x20           - {name: id, type: integer, path: $.id}\n            - {name: position, meta: index}\n\
             \x20         nested:\n            - name: appearance\n              each: $.episode[*]\n              columns:\n\
             \x20               - {name: character_id, from_parent: id}\n                - {name: episode, type: integer, path: $}\n\
             \x20       - name: tag\n          each: $.tags[*]\n          columns:\n            - {name: tag, type: text, path: $.name}\n\
             \x20       - name: meta\n          each: $.stats\n          columns:\n            - {name: count, type: integer, path: $.count}\n",
        );
        agree(
            &p,
            &[
                // Tags come before results in the document; the rows and the first error
                // are those of the general evaluator, which takes the tables in order.
                r#"{"tags":[{"name":"a"},{"name":"b"}],"info":{"kind":"page","next":"n"},"stats":{"count":3},"results":[{"id":1,"episode":[1,2]},{"episode":[3],"id":2},{"id":3}]}"#,
                r#"{"info":{"kind":"other"},"results":[{"id":1}]}"#,
                r#"{"info":{"kind":"page"},"gone":1,"results":[]}"#,
                r#"{"info":{"kind":"page"},"stats":{"count":"many"},"tags":[{"name":"a"}],"results":[{"id":1,"episode":["x"]}]}"#,
                r#"{"info":{"kind":"page"},"stats":null,"tags":[{"name":"a"}],"results":[{"id":1,"episode":[1,"x"]},{"id":"y"}]}"#,
            ],
        );
    }

    #[test]
    fn paths_the_plan_cannot_follow_leave_the_resource_to_the_general_evaluator() {
        let plain = "  - name: r\n    path: /r\n    records: $[*]\n    table:\n      name: r\n      columns:\n";
        for columns in [
            "        - {name: a, type: integer, path: \"$.a[0]\"}\n",
            "        - {name: a, type: jsonb, path: \"$.a[*].b\"}\n",
            "        - {name: a, type: jsonb, path: \"$..a\"}\n",
            "        - {name: a, type: jsonb, path: \"$.a\"}\n        - {name: b, type: text, path: $.a.b}\n",
        ] {
            let p = spec(&format!("{plain}{columns}"));
            assert!(
                Plan::new(&p.resources[0].tables, &p.resources[0].filter).is_none(),
                "{columns}"
            );
        }
        let p = spec(&format!(
            "{plain}        - {{name: a, type: text, path: $.a.b}}\n        - {{name: b, type: text, path: $.a.c}}\n"
        ));
        assert!(Plan::new(&p.resources[0].tables, &p.resources[0].filter).is_some());
    }
}

#[cfg(test)]
mod reach {
    use super::Plan;

    /// The resources of the shipped specs whose paths the plan cannot follow.
    fn general(dir: &str) -> (usize, Vec<String>) {
        let mut resources = 0;
        let mut left = Vec::new();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut specs: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        specs.sort();
        for path in specs {
            let text = std::fs::read_to_string(&path).unwrap();
            let p = crate::spec::compile_text(&path.display().to_string(), &text).unwrap();
            // A resource without a table (only the parent of a `for_each`) loads nothing.
            for r in p.resources.iter().filter(|r| !r.tables.is_empty()) {
                resources += 1;
                if Plan::new(&r.tables, &r.filter).is_none() {
                    left.push(format!("{}:{}", path.file_name().unwrap().to_string_lossy(), r.name));
                }
            }
        }
        (resources, left)
    }

    #[test]
    fn the_shipped_specs_are_mapped_by_the_plan() {
        let (n, left) = general("pipelines");
        assert!(
            n >= 4 && left.is_empty(),
            "{n} resources, left to the general evaluator: {left:?}"
        );
        let (n, left) = general("examples/specs");
        assert!(n >= 14, "{n}");
        assert_eq!(left, Vec::<String>::new());
    }
}
