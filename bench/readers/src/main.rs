//! What each reader gives for one field, `x`, of records where sluice's guarantees are at
//! stake, beside serde_json's answer (the general evaluator's, which the plan matches:
//! `load::plan::tests`). `cargo run --release`.

use sonic_rs::JsonValueTrait;

const CASES: [(&str, &str); 7] = [
    (
        "a 38-digit decimal",
        r#"{"x": 43.140867627459137071000000000000000000}"#,
    ),
    ("an integer past u64", r#"{"x": 123456789012345678901234567890}"#),
    ("a repeated key", r#"{"x": "first", "x": "last"}"#),
    ("escapes", r#"{"x": "caf\u00e9 \"42\""}"#),
    ("broken after x", r#"{"x": 1, "y": tru}"#),
    ("text after the record", r#"{"x": 1} {"x": 2}"#),
    ("a control character in a string", "{\"x\": \"a\u{1}b\"}"),
];

fn main() {
    println!("| record | serde_json (sluice) | sonic-rs get_many | simd-json |");
    println!("|---|---|---|---|");
    for (what, line) in CASES {
        let reference = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => v["x"].to_string(),
            Err(e) => format!("error: {}", short(&e.to_string())),
        };
        let mut tree = sonic_rs::PointerTree::new();
        tree.add_path(["x"]);
        let sonic = match sonic_rs::get_many(line, &tree) {
            Ok(got) => match &got[0] {
                Some(v) if v.is_str() => format!(
                    "{:?}",
                    v.as_str().map_or_else(
                        || sonic_rs::from_str::<String>(v.as_raw_str()).unwrap_or_default(),
                        str::to_string
                    )
                ),
                Some(v) => v.as_raw_str().to_string(),
                None => "missing".into(),
            },
            Err(e) => format!("error: {}", short(&e.to_string())),
        };
        let mut buf = line.as_bytes().to_vec();
        let simd = match simd_json::to_borrowed_value(&mut buf) {
            Ok(v) => match simd_json::prelude::ValueObjectAccess::get(&v, "x") {
                Some(x) => simd_json::to_string(x).unwrap_or_default(),
                None => "missing".into(),
            },
            Err(e) => format!("error: {}", short(&e.to_string())),
        };
        println!("| {what} | `{reference}` | `{sonic}` | `{simd}` |");
    }
}

fn short(e: &str) -> String {
    e.split(" at ").next().unwrap_or(e).chars().take(40).collect()
}
