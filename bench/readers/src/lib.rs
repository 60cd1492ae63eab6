//! The readers compared: each takes the values of the bench's character columns (and,
//! nested, every `episode` element) out of one staged record, borrowing strings where it
//! can, and returns how many values it took, so that none of them can skip the work.

use std::borrow::Cow;

use serde::Deserialize;
use sluice::load::plan::Plan;
use sluice::spec::Pipeline;
use sonic_rs::JsonValueTrait;

/// The twelve column paths of bench/character.yaml, as keys.
pub const PATHS: [&[&str]; 12] = [
    &["id"],
    &["name"],
    &["status"],
    &["species"],
    &["type"],
    &["gender"],
    &["origin", "url"],
    &["location", "url"],
    &["image"],
    &["url"],
    &["created"],
    &["origin", "name"],
];

/// A bench spec (relative to the repository), compiled.
pub fn spec(file: &str) -> Pipeline {
    // The bench specs take the warehouse from the environment; no database is reached.
    std::env::set_var("DATABASE_URL", "postgres://bench@127.0.0.1/bench");
    let path = format!("{}/../../bench/{file}", env!("CARGO_MANIFEST_DIR"));
    sluice::spec::compile_text(&path, &std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// 1,000 staged records, one a line: the fixture's 20 characters with new ids.
pub fn page() -> String {
    let path = format!(
        "{}/../../tests/fixtures/api/rickandmorty/character/page-1.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let page: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    (0..1000)
        .map(|i| {
            let mut r = page["results"][i % 20].clone();
            r["id"] = serde_json::Value::from(i + 1);
            serde_json::to_string(&r).unwrap()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// sluice's plan (serde visitors over serde_json's reader).
pub fn plan(plan: &Plan, line: &str) -> Option<usize> {
    plan.read(line).map(|c| {
        std::hint::black_box(c);
        1
    })
}

/// The general evaluator's first step: the whole record as a `serde_json::Value`.
pub fn whole(line: &str, nested: bool) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let mut n = PATHS.iter().filter(|p| v.pointer(&pointer(p)).is_some()).count();
    if nested {
        n += v.get("episode")?.as_array()?.len();
    }
    Some(n)
}

fn pointer(path: &[&str]) -> String {
    path.iter().map(|k| format!("/{k}")).collect()
}

/// The least a serde reader does: borrowed structs from serde derive.
pub fn derive(line: &str, nested: bool) -> Option<usize> {
    #[derive(Deserialize)]
    struct Place<'a> {
        #[serde(borrow)]
        name: Option<Cow<'a, str>>,
        #[serde(borrow)]
        url: Option<Cow<'a, str>>,
    }
    #[derive(Deserialize)]
    struct Character<'a> {
        id: Option<&'a serde_json::value::RawValue>,
        #[serde(borrow)]
        name: Option<Cow<'a, str>>,
        #[serde(borrow)]
        status: Option<Cow<'a, str>>,
        #[serde(borrow)]
        species: Option<Cow<'a, str>>,
        #[serde(borrow, rename = "type")]
        kind: Option<Cow<'a, str>>,
        #[serde(borrow)]
        gender: Option<Cow<'a, str>>,
        #[serde(borrow)]
        origin: Option<Place<'a>>,
        #[serde(borrow)]
        location: Option<Place<'a>>,
        #[serde(borrow)]
        image: Option<Cow<'a, str>>,
        #[serde(borrow)]
        url: Option<Cow<'a, str>>,
        #[serde(borrow)]
        created: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        episode: Vec<Cow<'a, str>>,
    }
    let c: Character<'_> = serde_json::from_str(line).ok()?;
    let (o, l) = (c.origin.as_ref(), c.location.as_ref());
    let fields = [
        c.id.is_some(),
        c.name.is_some(),
        c.status.is_some(),
        c.species.is_some(),
        c.kind.is_some(),
        c.gender.is_some(),
        o.is_some_and(|p| p.url.is_some()),
        l.is_some_and(|p| p.url.is_some()),
        c.image.is_some(),
        c.url.is_some(),
        c.created.is_some(),
        o.is_some_and(|p| p.name.is_some()),
    ];
    Some(fields.iter().filter(|f| **f).count() + if nested { c.episode.len() } else { 0 })
}

/// sonic-rs: `get_many` (validating) with a pointer tree, strings unescaped by `as_str`
/// or, escaped, through `from_str`; numbers as their text.
pub struct Sonic {
    tree: sonic_rs::PointerTree,
    nested: bool,
}

impl Sonic {
    pub fn new(nested: bool) -> Sonic {
        let mut tree = sonic_rs::PointerTree::new();
        for p in PATHS {
            tree.add_path(p.iter().copied());
        }
        if nested {
            tree.add_path(["episode"]);
        }
        Sonic { tree, nested }
    }

    pub fn read(&self, line: &str) -> Option<usize> {
        let got = sonic_rs::get_many(line, &self.tree).ok()?;
        let mut n = 0;
        for v in got.iter().take(PATHS.len()).flatten() {
            n += text(v)?.len().min(1);
        }
        if self.nested {
            if let Some(episodes) = got.last().and_then(|e| e.as_ref()) {
                for e in episodes.clone().into_array_iter()? {
                    n += text(&e.ok()?)?.len().min(1);
                }
            }
        }
        Some(n)
    }
}

fn text<'a>(v: &'a sonic_rs::LazyValue<'a>) -> Option<Cow<'a, str>> {
    if v.is_str() {
        match v.as_str() {
            Some(s) => Some(Cow::Borrowed(s)),
            None => sonic_rs::from_str::<String>(v.as_raw_str()).ok().map(Cow::Owned),
        }
    } else {
        Some(Cow::Borrowed(v.as_raw_str()))
    }
}

/// simd-json: a borrowed DOM of the record (simd-json parses in place, so the line is
/// copied into a buffer it may write), then the paths.
pub fn simd_dom(buf: &mut Vec<u8>, line: &str, nested: bool) -> Option<usize> {
    use simd_json::prelude::*;
    buf.clear();
    buf.extend_from_slice(line.as_bytes());
    let v = simd_json::to_borrowed_value(buf).ok()?;
    let mut n = 0;
    for p in PATHS {
        let mut at = Some(&v);
        for k in p {
            at = at.and_then(|a| a.get(*k));
        }
        n += at.is_some() as usize;
    }
    if nested {
        n += v.get("episode")?.as_array()?.iter().filter_map(|e| e.as_str()).count();
    }
    Some(n)
}

/// simd-json: its tape, read through the tape's values.
pub fn simd_tape(buf: &mut Vec<u8>, line: &str, nested: bool) -> Option<usize> {
    use simd_json::prelude::ValueAsScalar;
    buf.clear();
    buf.extend_from_slice(line.as_bytes());
    let tape = simd_json::to_tape(buf).ok()?;
    let v = tape.as_value();
    let mut n = 0;
    for p in PATHS {
        let mut at = Some(v);
        for k in p {
            at = at.and_then(|a| a.get(*k));
        }
        n += at.is_some() as usize;
    }
    if nested {
        n += v.get("episode")?.as_array()?.iter().filter(|e| e.as_str().is_some()).count();
    }
    Some(n)
}
