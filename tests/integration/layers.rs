//! The layer rule of `src/lib.rs`, kept: every `crate::` and `super::` path in `src/**/*.rs`
//! points down the order the crate's doc comment writes, and the files (and sub-folders)
//! of one folder import each other without a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layer order as `src/lib.rs` states it, in its line `//! Layers, lowest first: a < b < …`.
fn layer_order(lib: &str) -> Vec<String> {
    let line = lib
        .lines()
        .find_map(|l| l.strip_prefix("//! Layers, lowest first:"))
        .expect("src/lib.rs states its layers in a line `//! Layers, lowest first: util < … < cli`");
    line.split('<')
        .flat_map(|part| part.split(','))
        .map(|m| m.trim().trim_matches('`').trim_end_matches('.').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

/// Source with comments, string and char literals blanked (newlines kept, for line numbers).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |s: &str, out: &mut String| out.extend(s.chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
    while i < b.len() {
        let rest = &src[i..];
        let raw = rest
            .strip_prefix('r')
            .map(|r| r.len() - r.trim_start_matches('#').len());
        let end = if rest.starts_with("//") {
            rest.find('\n').unwrap_or(rest.len())
        } else if rest.starts_with("/*") {
            rest.find("*/").map_or(rest.len(), |e| e + 2)
        } else if let Some(hashes) = raw.filter(|&h| rest[1 + h..].starts_with('"') && !prev_is_ident(src, i)) {
            let close = format!("\"{}", "#".repeat(hashes));
            rest[2 + hashes..]
                .find(&close)
                .map_or(rest.len(), |e| 2 + hashes + e + close.len())
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() && rest.as_bytes()[j] != b'"' {
                j += if rest.as_bytes()[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(rest.len())
        } else if let Some(after) = rest.strip_prefix('\'') {
            // A char literal ('x', '\n', '\''), not a lifetime ('a).
            match after.chars().next() {
                Some('\\') => after[1..].find('\'').map_or(0, |e| e + 3),
                Some(c) if after[c.len_utf8()..].starts_with('\'') => 2 + c.len_utf8(),
                _ => 0,
            }
        } else {
            0
        };
        if end == 0 {
            let c = rest.chars().next().expect("not at the end");
            out.push(c);
            i += c.len_utf8();
        } else {
            blank(&rest[..end], &mut out);
            i += end;
        }
    }
    out
}

fn prev_is_ident(src: &str, i: usize) -> bool {
    src[..i]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// One import: the file, its line, and the module path it names (`["load", "record", …]`).
struct Import {
    line: usize,
    path: Vec<String>,
}

/// The module path of a file: `src/load/sqlite.rs` → `load::sqlite`, `src/load/mod.rs` → `load`.
fn module_of(rel: &str) -> Vec<String> {
    let rel = rel.strip_suffix(".rs").expect("a .rs file");
    let mut parts: Vec<String> = rel.split('/').map(String::from).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Every `crate::…` and `super::…` path of a file's code, resolved to a module path.
fn imports(me: &[String], code: &str) -> Vec<Import> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for (at, word) in code.match_indices("crate::").chain(code.match_indices("super::")) {
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let mut base: Vec<String> = if word == "crate::" {
            Vec::new()
        } else {
            // `super` of `load/sqlite.rs` is `load`; of `load/mod.rs` it is the crate.
            let mut b = me.to_vec();
            b.pop();
            b
        };
        let mut rest = &code[at + word.len()..];
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        // `super::{a, b::c}`: each first name of the group.
        let heads: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                group.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()
            }
            None => vec![rest],
        };
        for head in heads {
            let mut path = base.clone();
            for seg in head.split("::") {
                let name: String = seg.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if name.is_empty() || name == "self" {
                    break;
                }
                path.push(name);
                if seg.len() != path.last().map_or(0, String::len) {
                    break;
                }
            }
            out.push(Import { line, path });
        }
    }
    out
}

/// What breaks the rule in a set of files (`src/`-relative path → text): each upward or
/// sideways import between top-level modules, and each circle among the files of one
/// folder.
fn violations(files: &BTreeMap<String, String>, order: &[String]) -> Vec<String> {
    let modules: BTreeSet<Vec<String>> = files.keys().map(|f| module_of(f)).collect();
    let rank = |m: &str| order.iter().position(|o| o == m);
    let mut problems = Vec::new();
    // Edges between siblings (files or sub-folders of one folder), for the circle check.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut example: BTreeMap<(String, String), String> = BTreeMap::new();
    for (file, text) in files {
        let me = module_of(file);
        if me == ["lib"] || me == ["main"] {
            continue;
        }
        let Some(my_rank) = rank(&me[0]) else {
            problems.push(format!(
                "src/{file}: module `{}` is not in the layer order of src/lib.rs",
                me[0]
            ));
            continue;
        };
        for imp in imports(&me, &code_only(text)) {
            // The longest prefix of the path that is a module of ours.
            let Some(target) = (1..=imp.path.len())
                .rev()
                .map(|n| imp.path[..n].to_vec())
                .find(|p| modules.contains(p))
            else {
                continue;
            };
            if target[0] != me[0] {
                match rank(&target[0]) {
                    Some(r) if r < my_rank => {}
                    _ => problems.push(format!(
                        "src/{file}:{}: `{}` imports `{}`, which is not below it in the layer order ({})",
                        imp.line,
                        me[0],
                        target.join("::"),
                        order.join(" < ")
                    )),
                }
                continue;
            }
            let k = me.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if k < me.len() && k < target.len() {
                let from = me[..=k].join("/");
                let to = target[..=k].join("/");
                example
                    .entry((from.clone(), to.clone()))
                    .or_insert_with(|| format!("src/{file}:{}", imp.line));
                edges.entry(from).or_default().insert(to);
            }
        }
    }
    for circle in circles(&edges) {
        let mut links = Vec::new();
        for (i, from) in circle.iter().enumerate() {
            let to = &circle[(i + 1) % circle.len()];
            links.push(format!("{from} → {to} ({})", example[&(from.clone(), to.clone())]));
        }
        problems.push(format!("a circle of imports: {}", links.join(", ")));
    }
    problems
}

/// The circles of a graph, one per strongly connected part of more than one node, each
/// as a path that returns to its start.
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for start in edges.keys() {
        if seen.contains(start) {
            continue;
        }
        // A shortest way back to `start`, breadth first.
        let mut back: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.clone()]);
        let mut found = None;
        while let Some(n) = queue.pop_front() {
            for next in edges.get(&n).into_iter().flatten() {
                if next == start {
                    found = Some(n.clone());
                    break;
                }
                if !back.contains_key(next) {
                    back.insert(next.clone(), n.clone());
                    queue.push_back(next.clone());
                }
            }
            if found.is_some() {
                break;
            }
        }
        if let Some(mut last) = found {
            let mut path = vec![last.clone()];
            while let Some(prev) = back.get(&last) {
                path.push(prev.clone());
                last = prev.clone();
            }
            if path.last() != Some(start) {
                path.push(start.clone());
            }
            path.reverse();
            seen.extend(path.iter().cloned());
            out.push(path);
        }
    }
    out
}

fn read_src(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).expect("src/ reads") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            read_src(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            out.insert(rel, std::fs::read_to_string(&path).expect("a source file reads"));
        }
    }
}

#[test]
fn imports_point_down_the_layers_and_close_no_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_src(&root, &root, &mut files);
    let order = layer_order(&files["lib.rs"]);
    for m in files.keys().map(|f| module_of(f)[0].clone()) {
        assert!(
            m == "lib" || m == "main" || order.contains(&m),
            "module `{m}` is missing from the layer order in src/lib.rs"
        );
    }
    let problems = violations(&files, &order);
    assert!(
        problems.is_empty(),
        "the layer rule is broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_catches_an_upward_import_and_a_circle() {
    let order: Vec<String> = ["util", "spec", "run"].map(String::from).to_vec();
    let files: BTreeMap<String, String> = [
        ("util.rs", "pub fn f() {}"),
        // Upward: the spec reaching into the runtime. A path in a string or a comment is no import.
        (
            "spec/mod.rs",
            "pub mod a;\npub mod b;\n// crate::run::x\nfn g() { crate::run::go(); let _ = \"crate::run\"; }",
        ),
        ("spec/a.rs", "use super::b::Thing;\nuse crate::util::f;"),
        ("spec/b.rs", "use super::{a, c};\n"),
        ("run.rs", "use crate::spec::a; pub fn go() {}"),
    ]
    .into_iter()
    .map(|(f, t)| (f.to_string(), t.to_string()))
    .collect();
    let problems = violations(&files, &order);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].starts_with("src/spec/mod.rs:4: `spec` imports `run`, which is not below it"),
        "{}",
        problems[0]
    );
    assert_eq!(
        problems[1],
        "a circle of imports: spec/a → spec/b (src/spec/a.rs:1), spec/b → spec/a (src/spec/b.rs:1)"
    );
}
