//! The checks across resources: unique names, `for_each` parents and `references`
//! (targets that exist, with a key, and no circle).

use super::Ctx;
use crate::spec::diagnostic::did_you_mean;
use crate::spec::model::*;
use crate::spec::pipeline::{self as p};
use std::collections::{BTreeMap, HashMap, HashSet};

pub(super) fn check_names_unique(cx: &mut Ctx, spec: &RawSpec) {
    let mut resources: HashMap<&str, usize> = HashMap::new();
    let mut tables: HashMap<&str, String> = HashMap::new();
    for (i, r) in spec.resources.iter().enumerate() {
        if let Some(first) = resources.insert(r.name.as_str(), i) {
            cx.error(
                &format!("resources[{i}].name"),
                format!(
                    "duplicate resource name `{}` (first used by resources[{first}])",
                    r.name
                ),
            );
        }
        for (name, path) in table_names(r, i) {
            if let Some(first) = tables.get(name) {
                let line = cx.positions.value(first).line;
                cx.error(
                    &path,
                    format!("duplicate table name `{name}` (first defined on line {line})"),
                );
            } else {
                tables.insert(name, path);
            }
        }
    }
}

/// `for_each`: the parent exists and is another resource, parents form no cycle, and a
/// resource without a table is the parent of some other.
pub(super) fn check_for_each(cx: &mut Ctx, spec: &RawSpec) {
    let names: Vec<&str> = spec.resources.iter().map(|r| r.name.as_str()).collect();
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (i, r) in spec.resources.iter().enumerate() {
        let Some(parent) = r.for_each.as_ref().and_then(|f| f.parent()) else {
            continue;
        };
        let path = format!("resources[{i}].for_each");
        if parent == r.name {
            cx.error(&path, format!("resource `{parent}` cannot be its own parent"));
        } else if !names.contains(&parent) {
            let hint = did_you_mean(parent, names.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            cx.error(
                &path,
                format!("`for_each: {parent}` names no resource of this spec{hint}"),
            );
        } else {
            edges.entry(r.name.as_str()).or_default().push(parent);
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        let i = names.iter().position(|n| *n == cycle[0]).unwrap_or(0);
        cx.error(
            &format!("resources[{i}].for_each"),
            format!(
                "`for_each` parents form a cycle ({}); no resource could be extracted first",
                cycle.join(" → ")
            ),
        );
    }
    for (i, r) in spec.resources.iter().enumerate() {
        let parent_of_some = spec
            .resources
            .iter()
            .any(|c| c.for_each.as_ref().and_then(|f| f.parent()) == Some(r.name.as_str()));
        if r.table.is_none() && !parent_of_some {
            cx.error(
                &format!("resources[{i}]"),
                format!(
                    "resource `{}` has no `table`; only a resource that another names in `for_each` may go without one",
                    r.name
                ),
            );
        }
    }
}

/// The names of a resource's tables, nested ones at any depth, with the field path of
/// each name.
fn table_names(r: &RawResource, i: usize) -> Vec<(&str, String)> {
    fn nested<'a>(list: &'a [RawNested], path: &str, out: &mut Vec<(&'a str, String)>) {
        for (j, n) in list.iter().enumerate() {
            let npath = format!("{path}.nested[{j}]");
            out.push((n.name.as_str(), format!("{npath}.name")));
            nested(&n.nested, &npath, out);
        }
    }
    let mut out = Vec::new();
    if let Some(t) = &r.table {
        let path = format!("resources[{i}].table");
        out.push((t.name.as_str(), format!("{path}.name")));
        nested(&t.nested, &path, &mut out);
    }
    out
}

/// Foreign keys: the target exists, is its table's whole primary key (PostgreSQL needs a
/// unique target), has the same type, and the references do not form a cycle.
pub(super) fn check_references(cx: &mut Ctx, spec: &RawSpec) {
    let compiled = std::mem::take(&mut cx.tables);
    let mut tables: HashMap<&str, &p::Table> = HashMap::new();
    for (_, t) in &compiled {
        tables.entry(t.name.as_str()).or_insert(t);
    }
    // Tables whose definition has its own errors exist all the same: no second error for them.
    let declared: HashSet<&str> = spec
        .resources
        .iter()
        .enumerate()
        .flat_map(|(i, r)| table_names(r, i).into_iter().map(|(name, _)| name))
        .collect();
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (tpath, table) in &compiled {
        for (ci, col) in table.columns.iter().enumerate() {
            let Some(r) = &col.references else { continue };
            let path = format!("{tpath}.columns[{ci}].references");
            let Some(target) = tables.get(r.table.as_str()) else {
                if declared.contains(r.table.as_str()) {
                    continue;
                }
                let hint = did_you_mean(&r.table, declared.iter().copied())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                cx.error(
                    &path,
                    format!(
                        "`{}.{}` references table `{}`, which this spec does not define{hint}",
                        r.table, r.column, r.table
                    ),
                );
                continue;
            };
            let Some(tc) = target.column(&r.column) else {
                let hint = did_you_mean(&r.column, target.columns.iter().map(|c| c.name.as_str()))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                cx.error(&path, format!("table `{}` has no column `{}`{hint}", r.table, r.column));
                continue;
            };
            if target.primary_key != [r.column.clone()] {
                cx.error(&path, format!("`{}.{}` is not the primary key of `{}`; a reference must target a table's single-column primary key", r.table, r.column, r.table));
                continue;
            }
            if tc.column_type != col.column_type {
                cx.error(
                    &path,
                    format!(
                        "column `{}` is {} but `{}.{}` is {}; a reference needs the same type",
                        col.name,
                        col.column_type.name(),
                        r.table,
                        r.column,
                        tc.column_type.name()
                    ),
                );
                continue;
            }
            // A duplicated table name is reported on its own; it makes no graph.
            let first_of_name = tables.get(table.name.as_str()).is_some_and(|t| std::ptr::eq(*t, table));
            if r.table != table.name && first_of_name {
                edges.entry(table.name.as_str()).or_default().push(target.name.as_str());
            }
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        let first = cycle[0];
        let path = compiled
            .iter()
            .find(|(_, t)| t.name == first)
            .map(|(p, _)| format!("{p}.name"))
            .unwrap_or_else(|| "resources".into());
        cx.error(
            &path,
            format!(
                "references form a cycle ({}); tables could not be created in any order",
                cycle.join(" → ")
            ),
        );
    }
}

fn find_cycle<'a>(edges: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    fn visit<'a>(
        n: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        stack: &mut Vec<&'a str>,
        done: &mut HashSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(i) = stack.iter().position(|s| *s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n);
            return Some(c);
        }
        if !done.insert(n) {
            return None;
        }
        stack.push(n);
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = HashSet::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}
