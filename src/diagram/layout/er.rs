//! The ER page: every table as an entity with its columns, placed in columns by nesting
//! depth, relations routed in corridors between them with as few crossings as can be
//! found, and each table's and column's lineage as a tooltip.

use std::collections::HashMap;

use super::{id_part, request_of, text, MARGIN};
use crate::diagram::text::text_width_styled;
use crate::diagram::{Edge, EdgeKind, LabelAt, Page, Shape, Vertex};
use crate::spec::pipeline::{Pipeline, Table, RUN_ID_COLUMN};

const ENTITY_HEADER: f64 = 30.0;
const ROW_H: f64 = 24.0;
const COLUMN_GAP: f64 = 150.0;
/// The spacing of the corridors above the tables (relations that pass other columns).
const CORRIDOR: f64 = 8.0;

/// Order each column's tables by the rows that reference them from the next column, so
/// that relations run as straight as they can and cross as little as they can.
fn order_columns(columns: &mut [Vec<&Table>]) {
    for c in (0..columns.len().saturating_sub(1)).rev() {
        let (left, right) = columns.split_at_mut(c + 1);
        let next = &right[0];
        let key = |t: &Table| {
            next.iter()
                .enumerate()
                .flat_map(|(i, r)| {
                    r.columns
                        .iter()
                        .enumerate()
                        .filter(|(_, col)| col.references.as_ref().is_some_and(|x| x.table == t.name))
                        .map(move |(j, _)| (i, j))
                })
                .min()
                .unwrap_or((usize::MAX, 0))
        };
        left[c].sort_by_key(|t| key(t));
    }
}

/// One end of a relation: its column and row.
#[derive(Debug, Clone, Copy)]
struct End {
    col: usize,
    y: f64,
}

/// Orthogonal routes for one schema's relations: each leaves its foreign-key row on the
/// left, runs along a track of its own in the gap between the columns, and enters the
/// key row on the right; one that passes other columns goes along a corridor above the
/// tables. The order of the tracks in each gap is the one with the fewest crossings.
fn route_relations(
    edges: &mut [Edge],
    rows_at: &HashMap<String, (usize, f64)>,
    bounds: &[(f64, f64)],
    corridor_top: f64,
) {
    let end_of = |id: &str| rows_at.get(id).map(|&(col, y)| End { col, y });
    let mut ends: Vec<(usize, End, End)> = Vec::new();
    for (i, e) in edges.iter().enumerate().filter(|(_, e)| e.kind == EdgeKind::Relation) {
        if let (Some(s), Some(t)) = (end_of(&e.source), end_of(&e.target)) {
            ends.push((i, s, t));
        }
    }
    // Several relations into one key row enter it a few pixels apart.
    let mut into: HashMap<(usize, i64), usize> = HashMap::new();
    for (_, _, t) in &ends {
        *into.entry((t.col, t.y as i64)).or_default() += 1;
    }
    let mut seen: HashMap<(usize, i64), usize> = HashMap::new();
    for (_, _, t) in ends.iter_mut() {
        let k = (t.col, t.y as i64);
        let n = into[&k] as f64;
        let i = seen.entry(k).or_default();
        t.y += (*i as f64 - (n - 1.0) / 2.0) * 5.0;
        *i += 1;
    }
    // Gap g lies right of column g (g = -1: left of the first column).
    let gap = |g: i64| -> (f64, f64) {
        let last = bounds.len() as i64 - 1;
        if g < 0 {
            (bounds[0].0 - 34.0, bounds[0].0 - 4.0)
        } else if g >= last {
            (bounds[last as usize].1 + 4.0, bounds[last as usize].1 + 44.0)
        } else {
            (bounds[g as usize].1, bounds[g as usize + 1].0)
        }
    };
    // Each relation's tracks: (gap, and for a detour the second gap and its corridor).
    let mut tracks: Vec<(i64, Option<(i64, f64)>)> = Vec::new();
    let mut detour = 0;
    for (_, s, t) in &ends {
        let first = s.col as i64 - 1;
        if t.col + 1 == s.col {
            tracks.push((first, None));
        } else {
            detour += 1;
            tracks.push((
                first,
                Some((t.col as i64, corridor_top - CORRIDOR * (detour - 1) as f64)),
            ));
        }
    }
    // Members of each gap, in track order.
    let mut members: std::collections::BTreeMap<i64, Vec<(usize, bool)>> = Default::default();
    for (i, (g1, d)) in tracks.iter().enumerate() {
        members.entry(*g1).or_default().push((i, false));
        if let Some((g2, _)) = d {
            members.entry(*g2).or_default().push((i, true));
        }
    }
    for list in members.values_mut() {
        list.sort_by(|a, b| ends[a.0].1.y.total_cmp(&ends[b.0].1.y));
    }
    let routes = |members: &std::collections::BTreeMap<i64, Vec<(usize, bool)>>| -> Vec<Vec<(f64, f64)>> {
        let mut xs: HashMap<(usize, bool), f64> = HashMap::new();
        for (g, list) in members {
            let (a, b) = gap(*g);
            for (k, m) in list.iter().enumerate() {
                xs.insert(*m, (a + (k + 1) as f64 * (b - a) / (list.len() + 1) as f64).round());
            }
        }
        ends.iter()
            .zip(&tracks)
            .enumerate()
            .map(|(i, ((_, s, t), (_, d)))| {
                let (sx, tx) = (bounds[s.col].0, bounds[t.col].1);
                let x1 = xs[&(i, false)];
                match d {
                    None => vec![(sx, s.y), (x1, s.y), (x1, t.y), (tx, t.y)],
                    Some((_, yc)) => {
                        let x2 = xs[&(i, true)];
                        vec![(sx, s.y), (x1, s.y), (x1, *yc), (x2, *yc), (x2, t.y), (tx, t.y)]
                    }
                }
            })
            .collect()
    };
    // The order of each gap's tracks with the fewest crossings (all orders up to 6).
    let keys: Vec<i64> = members.keys().copied().collect();
    for g in keys {
        let list = members[&g].clone();
        if list.len() < 2 || list.len() > 6 {
            continue;
        }
        let mut best = (crossings(&routes(&members)), list.clone());
        for perm in permutations(&list) {
            members.insert(g, perm.clone());
            let c = crossings(&routes(&members));
            if c < best.0 {
                best = (c, perm);
            }
        }
        members.insert(g, best.1);
    }
    for ((i, _, _), route) in ends.iter().zip(routes(&members)) {
        edges[*i].route = route;
    }
}

/// Every order of `items`.
fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first.clone());
            out.push(p);
        }
    }
    out
}

/// How badly orthogonal routes meet: 1 per crossing, 10 per shared stretch.
fn crossings(routes: &[Vec<(f64, f64)>]) -> usize {
    let segments =
        |r: &Vec<(f64, f64)>| -> Vec<((f64, f64), (f64, f64))> { r.windows(2).map(|w| (w[0], w[1])).collect() };
    let mut n = 0;
    for (i, a) in routes.iter().enumerate() {
        for b in &routes[i + 1..] {
            for (p, q) in segments(a) {
                for (u, v) in segments(b) {
                    n += meet(p, q, u, v);
                }
            }
        }
    }
    n
}

fn meet(p: (f64, f64), q: (f64, f64), u: (f64, f64), v: (f64, f64)) -> usize {
    let horizontal = |a: (f64, f64), b: (f64, f64)| (a.1 - b.1).abs() < 0.5;
    let inside = |x: f64, a: f64, b: f64| x > a.min(b) + 0.5 && x < a.max(b) - 0.5;
    let overlap = |a0: f64, a1: f64, b0: f64, b1: f64| a0.max(a1).min(b0.max(b1)) - a0.min(a1).max(b0.min(b1)) > 1.0;
    match (horizontal(p, q), horizontal(u, v)) {
        (true, false) => usize::from(inside(u.0, p.0, q.0) && inside(p.1, u.1, v.1)),
        (false, true) => usize::from(inside(p.0, u.0, v.0) && inside(u.1, p.1, q.1)),
        (true, true) if (p.1 - u.1).abs() < 0.5 && overlap(p.0, q.0, u.0, v.0) => 10,
        (false, false) if (p.0 - u.0).abs() < 0.5 && overlap(p.1, q.1, u.1, v.1) => 10,
        _ => 0,
    }
}

fn depth(t: &Table, by_name: &HashMap<&str, &Table>, seen: &mut Vec<String>) -> usize {
    if seen.contains(&t.name) {
        return 0;
    }
    seen.push(t.name.clone());
    let d = t
        .columns
        .iter()
        .filter_map(|c| c.references.as_ref())
        .filter(|r| r.table != t.name)
        .filter_map(|r| by_name.get(r.table.as_str()))
        .map(|parent| depth(parent, by_name, seen) + 1)
        .max()
        .unwrap_or(0);
    seen.pop();
    d
}

/// Where a table's rows come from: its resource's request (and for a nested table, the
/// elements of its parent), and its description.
fn table_lineage(p: &Pipeline, t: &Table) -> String {
    let mut lines = Vec::new();
    if let Some(r) = p.resources().iter().find(|r| r.tables.iter().any(|x| x.name == t.name)) {
        lines.push(request_of(r));
        if let (Some(each), Some(parent)) = (&t.each, t.parent.and_then(|i| r.tables.get(i))) {
            lines.push(format!(
                "one row per element {} of each `{}` row",
                each.describe(),
                parent.name
            ));
        }
    }
    lines.extend(t.description.clone());
    lines.join("\n")
}

/// Where a column's value comes from (path, transforms, parent, meta), what it references,
/// and its description.
fn column_lineage(p: &Pipeline, t: &Table, name: &str) -> String {
    use crate::spec::pipeline::ValueSource;
    let Some(c) = t.column(name) else {
        return "the id of the run that loaded the row (sluice's own)".into();
    };
    let mut from = match &c.value {
        ValueSource::Path(path) => format!("path {}", path.as_str()),
        ValueSource::Const(v) => format!("constant {v}"),
        ValueSource::Meta(m) => {
            use crate::spec::model::MetaValue;
            let meta = match m {
                MetaValue::RunId => "run_id",
                MetaValue::RunTime => "run_time",
                MetaValue::Pipeline => "pipeline",
                MetaValue::Index => "index",
            };
            format!("meta {meta}")
        }
        ValueSource::Parent(i) => {
            let parent = p
                .resources()
                .iter()
                .find(|r| r.tables.iter().any(|x| x.name == t.name))
                .and_then(|r| r.tables.get(t.parent?))
                .and_then(|pt| pt.columns.get(*i).map(|pc| format!("{}.{}", pt.name, pc.name)));
            format!("from_parent {}", parent.unwrap_or_default())
        }
        ValueSource::ParentRecord(path) => format!("parent_path {}", path.as_str()),
    };
    for tr in &c.transforms {
        from.push_str(&format!(" → {}", tr.name()));
    }
    let mut lines = vec![from];
    if let Some(r) = &c.references {
        lines.push(format!("references {}.{}", r.table, r.column));
    }
    lines.extend(c.description.clone());
    lines.join("\n")
}

/// One ER row label: key markers, name, type, NOT NULL.
fn row_label(t: &Table, name: &str) -> (String, bool) {
    let col = t.column(name);
    let pk = t.primary_key.iter().any(|k| k == name);
    let fk = col.is_some_and(|c| c.references.is_some());
    let marker = match (pk, fk) {
        (true, true) => "PK FK",
        (true, false) => "PK",
        (false, true) => "FK",
        _ => "",
    };
    let (ty, nullable) = match col {
        Some(c) => (c.column_type.name(), c.nullable),
        None => ("text", false),
    };
    let nn = if nullable { "" } else { " NOT NULL" };
    let label = if marker.is_empty() {
        format!("{name}: {ty}{nn}")
    } else {
        format!("{marker}  {name}: {ty}{nn}")
    };
    (label, pk)
}

/// The ER page: each pipeline's tables, referenced tables left of those referencing them.
pub(crate) fn tables_page(pipelines: &[Pipeline]) -> Page {
    let mut vertices = Vec::new();
    let mut edges = Vec::new();
    let mut y = 12.0;
    let mut max_x: f64 = 0.0;
    let title = text(
        "er-title".into(),
        MARGIN,
        y,
        vec!["sluice tables".into()],
        20,
        true,
        None,
    );
    y += title.h + 12.0;
    vertices.push(title);
    for p in pipelines {
        let (bottom, right) = pipeline_tables(p, y, &mut vertices, &mut edges);
        max_x = max_x.max(right);
        y = bottom + 40.0;
    }
    let width = vertices
        .iter()
        .filter(|v| v.parent.is_none())
        .map(|v| v.x + v.w)
        .fold(max_x, f64::max)
        + MARGIN;
    Page {
        id: "tables".into(),
        name: "Tables".into(),
        width: width.ceil(),
        height: y.ceil(),
        vertices,
        edges,
    }
}

/// One pipeline's heading, entities and relations from `y`; the bottom of its region and
/// its right edge.
fn pipeline_tables(p: &Pipeline, mut y: f64, vertices: &mut Vec<Vertex>, edges: &mut Vec<Edge>) -> (f64, f64) {
    let n = id_part(p.name());
    let heading = text(
        format!("{n}-er-title"),
        MARGIN,
        y,
        vec![format!("{} — schema {}", p.name(), p.warehouse().schema)],
        14,
        true,
        None,
    );
    y += heading.h + 12.0;
    vertices.push(heading);
    let tables: Vec<&Table> = p.tables().collect();
    let (columns, level) = table_columns(&tables);
    // Relations past a neighbouring column run along corridors above the tables.
    let detours = tables
        .iter()
        .flat_map(|t| {
            t.columns
                .iter()
                .filter_map(move |c| c.references.as_ref().map(|r| (t, r)))
        })
        .filter(|(t, r)| {
            level
                .get(r.table.as_str())
                .is_some_and(|l| l + 1 != level[t.name.as_str()])
        })
        .count();
    if detours > 0 {
        y += CORRIDOR * detours as f64 + 6.0;
    }
    let corridor_top = y - 6.0;
    let mut bounds: Vec<(f64, f64)> = Vec::new();
    // Each row's column and middle, by the row's id.
    let mut rows_at: HashMap<String, (usize, f64)> = HashMap::new();
    let mut x = MARGIN;
    let mut max_x: f64 = 0.0;
    let mut region_bottom = y;
    for col in &columns {
        let mut col_y = y;
        let mut col_w: f64 = 0.0;
        let mut ids = Vec::new();
        for t in col {
            let entity = Entity {
                p,
                n: &n,
                t,
                x,
                y: col_y,
            };
            let (id, w, h) = entity.push(bounds.len(), vertices, &mut rows_at);
            col_w = col_w.max(w);
            ids.push(id);
            col_y += h + 40.0;
        }
        // Rows fill their entity's width; widen the column's entities to the widest.
        for v in vertices
            .iter_mut()
            .filter(|v| ids.contains(&v.id) || v.parent.as_ref().is_some_and(|p| ids.contains(p)))
        {
            v.w = col_w;
        }
        region_bottom = region_bottom.max(col_y - 40.0);
        bounds.push((x, x + col_w));
        x += col_w + COLUMN_GAP;
        max_x = max_x.max(x - COLUMN_GAP);
    }
    let first_relation = edges.len();
    relations(p, &n, &tables, edges);
    route_relations(&mut edges[first_relation..], &rows_at, &bounds, corridor_top);
    max_x = max_x.max(bounds.last().map_or(0.0, |b| b.1) + 50.0);
    (region_bottom, max_x)
}

/// The tables in columns by level: each table one column left of the nearest table
/// referencing it, so that relations span one gap and never cross a table; and each
/// table's level.
fn table_columns<'t>(tables: &[&'t Table]) -> (Vec<Vec<&'t Table>>, HashMap<&'t str, usize>) {
    let by_name: HashMap<&str, &Table> = tables.iter().map(|t| (t.name.as_str(), *t)).collect();
    let asap: HashMap<&str, usize> = tables
        .iter()
        .map(|t| (t.name.as_str(), depth(t, &by_name, &mut Vec::new())))
        .collect();
    let mut order: Vec<&Table> = tables.to_vec();
    order.sort_by_key(|t| std::cmp::Reverse(asap[t.name.as_str()]));
    let mut level: HashMap<&str, usize> = HashMap::new();
    for t in &order {
        let referencing = tables
            .iter()
            .filter(|r| {
                r.name != t.name
                    && r.columns
                        .iter()
                        .any(|c| c.references.as_ref().is_some_and(|x| x.table == t.name))
            })
            .filter_map(|r| level.get(r.name.as_str()))
            .min()
            .copied();
        let l = match referencing {
            Some(l) if l > 0 => (l - 1).max(asap[t.name.as_str()]),
            _ => asap[t.name.as_str()],
        };
        level.insert(t.name.as_str(), l);
    }
    let mut columns: Vec<Vec<&Table>> = Vec::new();
    for t in tables {
        let d = level[t.name.as_str()];
        if columns.len() <= d {
            columns.resize(d + 1, Vec::new());
        }
        columns[d].push(t);
    }
    order_columns(&mut columns);
    (columns, level)
}

/// One table drawn as an entity at (`x`, `y`).
struct Entity<'a> {
    p: &'a Pipeline,
    n: &'a str,
    t: &'a Table,
    x: f64,
    y: f64,
}

impl Entity<'_> {
    /// Push the entity and its rows; record each row's column (`column`) and middle in
    /// `rows_at`. Its id, width and height.
    fn push(
        &self,
        column: usize,
        vertices: &mut Vec<Vertex>,
        rows_at: &mut HashMap<String, (usize, f64)>,
    ) -> (String, f64, f64) {
        let t = self.t;
        let mut names: Vec<String> = t.columns.iter().map(|c| c.name.clone()).collect();
        if t.run_id_column {
            names.push(RUN_ID_COLUMN.to_string());
        }
        let rows: Vec<(String, bool)> = names.iter().map(|c| row_label(t, c)).collect();
        let w = (rows
            .iter()
            .map(|(l, key)| text_width_styled(l, 12.0, *key))
            .fold(text_width_styled(&t.name, 13.0, true), f64::max)
            + 28.0)
            .ceil();
        let entity_id = format!("{}-t-{}", self.n, id_part(&t.name));
        let h = ENTITY_HEADER + rows.len() as f64 * ROW_H;
        vertices.push(Vertex {
            id: entity_id.clone(),
            parent: None,
            x: self.x,
            y: self.y,
            w,
            h,
            label: vec![t.name.clone()],
            shape: Shape::Entity,
            label_at: LabelAt::Inside,
            tooltip: Some(table_lineage(self.p, t)),
            link: None,
        });
        for (i, name) in names.iter().enumerate() {
            let row_y = self.y + ENTITY_HEADER + i as f64 * ROW_H + ROW_H / 2.0;
            rows_at.insert(format!("{entity_id}-c-{}", id_part(name)), (column, row_y));
        }
        for (i, ((label, key), name)) in rows.into_iter().zip(&names).enumerate() {
            vertices.push(Vertex {
                id: format!("{entity_id}-c-{}", id_part(name)),
                parent: Some(entity_id.clone()),
                x: 0.0,
                y: ENTITY_HEADER + i as f64 * ROW_H,
                w,
                h: ROW_H,
                label: vec![label],
                shape: Shape::Row { key },
                label_at: LabelAt::Inside,
                tooltip: Some(column_lineage(self.p, t, name)),
                link: None,
            });
        }
        (entity_id, w, h)
    }
}

/// Relations: many (the foreign key row) to one (the referenced key row); a nested table
/// with no reference to its parent gets a "nested in" edge instead.
fn relations(p: &Pipeline, n: &str, tables: &[&Table], edges: &mut Vec<Edge>) {
    for t in tables {
        let from_entity = format!("{n}-t-{}", id_part(&t.name));
        let mut linked_to_parent = false;
        for c in &t.columns {
            if let Some(r) = &c.references {
                edges.push(Edge {
                    id: format!("{from_entity}-fk-{}", id_part(&c.name)),
                    source: format!("{from_entity}-c-{}", id_part(&c.name)),
                    target: format!("{n}-t-{}-c-{}", id_part(&r.table), id_part(&r.column)),
                    label: Vec::new(),
                    kind: EdgeKind::Relation,
                    route: Vec::new(),
                });
                linked_to_parent |= p.resources().iter().any(|res| {
                    res.tables.first().is_some_and(|t0| t0.name == r.table)
                        && res.tables.iter().any(|x| x.name == t.name)
                });
            }
        }
        if t.is_nested() && !linked_to_parent {
            if let Some(parent) = p
                .resources()
                .iter()
                .find(|r| r.tables.iter().any(|x| x.name == t.name))
                .map(|r| &r.tables[t.parent.unwrap_or(0)])
            {
                edges.push(Edge {
                    id: format!("{from_entity}-nested"),
                    source: from_entity.clone(),
                    target: format!("{n}-t-{}", id_part(&parent.name)),
                    label: vec!["nested in".into()],
                    kind: EdgeKind::Trigger,
                    route: Vec::new(),
                });
            }
        }
    }
}
