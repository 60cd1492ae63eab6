//! Parsing: YAML text → raw spec types, with every shape error located by line and
//! column. With [`super::tree`], the only files that call into the YAML crates.
//!
//! serde stops at the first error and, inside tagged enums, points at the enclosing
//! mapping. So the document is first read into a tree of positioned nodes
//! ([`super::tree`]), checked against the spec's own JSON Schema ([`super::shape`],
//! collecting every error, each at the exact key or value), and only a document that
//! passes is deserialized with serde_yaml. The node tree also gives the compile pass the
//! position of every field.

use super::diagnostic::{Diagnostic, Pos};
use super::model::RawSpec;
use super::shape;
use super::tree::{parse_tree, record_positions, Kind, Node, Positions};

/// A spec read from a file: the raw types and where each field was written.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub spec: RawSpec,
    pub positions: Positions,
}

/// Parse and shape-check one spec file. `Err` carries every shape problem found.
pub(crate) fn parse(file: &str, text: &str) -> Result<Parsed, Vec<Diagnostic>> {
    let root = parse_tree(text)
        .map_err(|(pos, message)| vec![Diagnostic::new(file, pos, "", format!("invalid YAML: {message}"))])?;
    let Some(root) = root else {
        return Err(vec![Diagnostic::new(
            file,
            Pos { line: 1, column: 1 },
            "",
            "the file is empty; a spec starts with `version: 1`",
        )]);
    };
    let mut positions = Positions::default();
    record_positions(&root, "", &mut positions);

    let shape = shape::check(file, &root);
    if !shape.is_empty() {
        return Err(shape);
    }
    match serde_yaml::from_str::<RawSpec>(text) {
        Ok(spec) => Ok(Parsed { spec, positions }),
        Err(e) => {
            // The schema check accepts what serde accepts; this is a safety net.
            let pos = e
                .location()
                .map(|l| Pos {
                    line: l.line(),
                    column: l.column(),
                })
                .unwrap_or(Pos { line: 1, column: 1 });
            Err(vec![Diagnostic::new(file, pos, "", e.to_string())])
        }
    }
}

/// The spec without the parts that failed the shape check, so that the rest can still be
/// compiled and every problem of a file reported in one pass. Each field a shape problem
/// names is left out; when that leaves its mapping without a required field, the mapping
/// is left out in turn. Returns the spec and the paths left out; `None` when a problem
/// sits where nothing can be left out (a list item, the top level).
pub(crate) fn without_shape_errors(file: &str, text: &str, shape: &[Diagnostic]) -> Option<(Parsed, Vec<String>)> {
    let mut tree = parse_tree(text).ok()??;
    let mut positions = Positions::default();
    record_positions(&tree, "", &mut positions);
    let mut value: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
    let mut cuts: Vec<String> = Vec::new();
    let mut pending: Vec<String> = shape.iter().map(|d| d.path.clone()).collect();
    for _ in 0..8 {
        for cut in pending.drain(..) {
            if cuts.contains(&cut) {
                continue;
            }
            let (parent, key) = split_path(&cut)?;
            // Without its table a resource would read as a `for_each` parent, and the
            // references to the table as references to nothing.
            if key == "table" && parent.starts_with("resources[") && !parent.contains('.') {
                return None;
            }
            remove_entry(&mut tree, &parent, &key)?;
            remove_yaml_entry(&mut value, &parent, &key)?;
            cuts.push(cut);
        }
        let problems = shape::check(file, &tree);
        if problems.is_empty() {
            let spec = serde_yaml::from_value::<RawSpec>(value).ok()?;
            return Some((Parsed { spec, positions }, cuts));
        }
        pending = problems.into_iter().map(|d| d.path).collect();
    }
    None
}

/// `a.b[2].c` → (`a.b[2]`, `c`); `None` for a path that does not end in a mapping key.
fn split_path(path: &str) -> Option<(String, String)> {
    let (parent, key) = path.rsplit_once('.').unwrap_or(("", path));
    (!key.is_empty() && !key.ends_with(']')).then(|| (parent.to_string(), key.to_string()))
}

/// The steps of a path: keys and list indexes.
fn steps(path: &str) -> Vec<Result<&str, usize>> {
    let mut out = Vec::new();
    for step in path.split('.').filter(|s| !s.is_empty()) {
        let (name, indexes) = step.split_at(step.find('[').unwrap_or(step.len()));
        out.push(Ok(name));
        for i in indexes.split(']').filter(|s| !s.is_empty()) {
            out.push(Err(i.trim_start_matches('[').parse().unwrap_or(usize::MAX)));
        }
    }
    out
}

fn remove_entry(node: &mut Node, parent: &str, key: &str) -> Option<()> {
    let mut at = node;
    for step in steps(parent) {
        at = match (&mut at.kind, step) {
            (Kind::Map(entries), Ok(k)) => {
                &mut entries
                    .iter_mut()
                    .find(|(name, _)| matches!(&name.kind, Kind::Scalar(s, _) if s == k))?
                    .1
            }
            (Kind::Seq(items), Err(i)) => items.get_mut(i)?,
            _ => return None,
        };
    }
    let Kind::Map(entries) = &mut at.kind else { return None };
    entries.retain(|(name, _)| !matches!(&name.kind, Kind::Scalar(s, _) if s == key));
    Some(())
}

fn remove_yaml_entry(value: &mut serde_yaml::Value, parent: &str, key: &str) -> Option<()> {
    let mut at = value;
    for step in steps(parent) {
        at = match step {
            Ok(k) => at.get_mut(k)?,
            Err(i) => at.get_mut(i)?,
        };
    }
    at.as_mapping_mut()?.remove(key);
    Some(())
}
