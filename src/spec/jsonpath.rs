//! `JsonPath`: an RFC 9535 JSONPath compiled once when the spec is compiled. The only
//! place that calls into jsonpath-rust. The paths specs use most (`$.a.b`, `$.a[*]`,
//! `$.a[0]`) are evaluated by a direct walk, which is many times faster than the general
//! engine on the hot path of mapping records.

use jsonpath_rust::parser::model::JpQuery;
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
}

#[derive(Debug, Clone)]
pub struct JsonPath {
    text: String,
    query: JpQuery,
    simple: Option<Vec<Step>>,
}

impl PartialEq for JsonPath {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// `text` with every `.name` step whose name is not a plain identifier written as
/// `['name']` (`$.activity-mrr` → `$['activity-mrr']`); `None` when there is none.
fn bracketed(text: &str) -> Option<String> {
    let mut out = String::from("$");
    let mut changed = false;
    let mut rest = text.strip_prefix('$')?;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.').filter(|a| !a.starts_with('.')) {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let name = &after[..end];
            if !name.is_empty() && name != "*" && !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                out.push_str(&format!("['{}']", name.replace('\\', "\\\\").replace('\'', "\\'")));
                changed = true;
            } else {
                out.push('.');
                out.push_str(name);
            }
            rest = &after[end..];
        } else {
            let c = rest.chars().next()?;
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    changed.then_some(out)
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('$') {
            return Err(format!(
                "`{text}` is not a JSONPath; it must start with `$`, e.g. `$.results[*]`"
            ));
        }
        let query = parse_json_path(text).map_err(|e| {
            // pest reports `--> line:column`; the column is what helps.
            let detail = e.to_string();
            let at = detail
                .split("--> ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|lc| lc.split(':').nth(1))
                .map(|c| format!(" (near character {c})"))
                .unwrap_or_default();
            let hint = bracketed(text)
                .filter(|b| parse_json_path(b).is_ok())
                .map(|b| format!("; a key with `-` or other such characters goes in brackets: `{b}`"))
                .unwrap_or_default();
            format!("`{text}` is not a valid JSONPath (RFC 9535){at}{hint}")
        })?;
        Ok(JsonPath {
            text: text.to_string(),
            query,
            simple: simple_steps(text),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Every node the path selects.
    pub fn query<'a>(&self, value: &'a Value) -> Vec<&'a Value> {
        match &self.simple {
            Some(steps) => {
                let mut out = Vec::new();
                walk(value, steps, &mut out);
                out
            }
            None => js_path_process(&self.query, value)
                .map(|refs| refs.into_iter().map(|r| r.val).collect())
                .unwrap_or_default(),
        }
    }

    /// The first node the path selects. A JSON `null` is a match (`Some(Null)`).
    pub fn first<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        match &self.simple {
            Some(steps) if !steps.contains(&Step::Wildcard) => {
                let mut cur = value;
                for step in steps {
                    cur = match step {
                        Step::Field(name) => cur.get(name.as_str())?,
                        Step::Index(i) => index(cur, *i)?,
                        Step::Wildcard => unreachable!("excluded above"),
                    };
                }
                Some(cur)
            }
            _ => self.query(value).into_iter().next(),
        }
    }

    /// Whether the path selects a single value (no wildcard, filter, slice or descent):
    /// such a path names one field, so "no match" means the field is absent.
    pub fn is_singular(&self) -> bool {
        self.simple.as_ref().is_some_and(|s| !s.contains(&Step::Wildcard))
    }

    /// The top-level field the path starts with (`origin` for `$.origin.url`), when it is
    /// a plain field: mapping then needs only those fields of a record parsed.
    pub fn first_field(&self) -> Option<&str> {
        match self.simple.as_deref()?.first()? {
            Step::Field(f) => Some(f.as_str()),
            _ => None,
        }
    }

    /// For a path of plain field steps, perhaps ending in one `[*]` (`$.a.b`, `$.a[*]`,
    /// `$`): the field names, and whether it ends in `[*]`. What a load's single-pass plan
    /// can follow (see `load::plan`); `None` for indexes, filters and the like.
    pub fn field_steps(&self) -> Option<(Vec<&str>, bool)> {
        let steps = self.simple.as_deref()?;
        let (fields, wildcard) = match steps.split_last() {
            Some((Step::Wildcard, rest)) => (rest, true),
            _ => (steps, false),
        };
        let names = fields
            .iter()
            .map(|s| match s {
                Step::Field(f) => Some(f.as_str()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some((names, wildcard))
    }

    /// For `$[*]` or `$.field[*]`: the field holding the records (`Some(None)` for a
    /// top-level array), so a page can be split without parsing its records.
    pub fn array_field(&self) -> Option<Option<&str>> {
        match self.simple.as_deref()? {
            [Step::Wildcard] => Some(None),
            [Step::Field(f), Step::Wildcard] => Some(Some(f.as_str())),
            _ => None,
        }
    }

    /// For a path ending in `[*]`: whether the array it iterates exists in `value`, so an
    /// empty array (no records, fine) can be told from a missing one (a wrong path).
    pub fn container_exists(&self, value: &Value) -> bool {
        match &self.simple {
            Some(steps) if steps.last() == Some(&Step::Wildcard) => {
                let mut out = Vec::new();
                walk(value, &steps[..steps.len() - 1], &mut out);
                out.iter().any(|v| v.is_array() || v.is_object())
            }
            _ => !self.query(value).is_empty(),
        }
    }
}

fn index(v: &Value, i: i64) -> Option<&Value> {
    let arr = v.as_array()?;
    let i = if i < 0 { arr.len() as i64 + i } else { i };
    usize::try_from(i).ok().and_then(|i| arr.get(i))
}

fn walk<'a>(value: &'a Value, steps: &[Step], out: &mut Vec<&'a Value>) {
    let Some((step, rest)) = steps.split_first() else {
        out.push(value);
        return;
    };
    match step {
        Step::Field(name) => {
            if let Some(v) = value.get(name.as_str()) {
                walk(v, rest, out)
            }
        }
        Step::Index(i) => {
            if let Some(v) = index(value, *i) {
                walk(v, rest, out)
            }
        }
        Step::Wildcard => match value {
            Value::Array(items) => items.iter().for_each(|v| walk(v, rest, out)),
            Value::Object(map) => map.values().for_each(|v| walk(v, rest, out)),
            _ => {}
        },
    }
}

/// The name of a single-quoted name selector, its RFC 9535 escapes read (`\\'`, `\\\\`,
/// `\\n`, `\\uXXXX`, …), and the text after its closing quote.
fn quoted_name(text: &str) -> Option<(String, &str)> {
    let mut name = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' => return Some((name, &text[i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                name.push(match e {
                    '\'' | '"' | '\\' | '/' => e,
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'u' => {
                        let hex = |chars: &mut std::str::CharIndices| -> Option<u32> {
                            let s: String = (0..4).map(|_| chars.next().map(|(_, c)| c)).collect::<Option<_>>()?;
                            u32::from_str_radix(&s, 16).ok()
                        };
                        let high = hex(&mut chars)?;
                        let code = if (0xD800..0xDC00).contains(&high) {
                            let (_, b) = chars.next()?;
                            let (_, u) = chars.next()?;
                            if (b, u) != ('\\', 'u') {
                                return None;
                            }
                            let low = hex(&mut chars)?;
                            0x10000 + ((high - 0xD800) << 10) + (low.checked_sub(0xDC00)?)
                        } else {
                            high
                        };
                        char::from_u32(code)?
                    }
                    _ => return None,
                });
            }
            c => name.push(c),
        }
    }
    None
}

/// Parse `$`, `.name`, `['name']`, `[n]`, `[*]` and `.*` steps; `None` for anything else.
fn simple_steps(text: &str) -> Option<Vec<Step>> {
    let mut rest = text.strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix(".*") {
            steps.push(Step::Wildcard);
            rest = r;
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            let ok = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_alphanumeric() || c == '_');
            if !ok {
                return None;
            }
            steps.push(Step::Field(name.to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("[*]") {
            steps.push(Step::Wildcard);
            rest = r;
        } else if let Some(r) = rest.strip_prefix("['") {
            let (name, after) = quoted_name(r)?;
            steps.push(Step::Field(name));
            rest = after.strip_prefix(']')?;
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let n: i64 = r[..end].parse().ok()?;
            steps.push(Step::Index(n));
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn page() -> Value {
        json!({"info": {"next": null, "count": 2}, "results": [{"id": 1, "tags": ["a"]}, {"id": 2, "tags": []}], "empty": []})
    }

    #[test]
    fn escaped_names_are_single_fields() {
        let v = serde_json::json!({"line\nbreak": 1, "it's": 2, "nul\u{0}key": 3, "back\\slash": 4, "é😀": 5});
        for (text, want) in [
            (r"$['line\nbreak']", 1),
            (r"$['it\'s']", 2),
            (r"$['nul\u0000key']", 3),
            (r"$['back\\slash']", 4),
            (r"$['\u00e9\ud83d\ude00']", 5),
        ] {
            let p = JsonPath::parse(text).unwrap();
            assert!(p.is_singular(), "{text}");
            assert_eq!(p.first(&v), Some(&serde_json::json!(want)), "{text}");
        }
        assert!(JsonPath::parse(r"$['a\qb']").map_or(true, |p| !p.is_singular()));
    }

    #[test]
    fn simple_paths_agree_with_the_general_engine() {
        let v = page();
        for text in [
            "$.results[*]",
            "$.results[*].id",
            "$.info.count",
            "$['info']['next']",
            "$.results[-1].id",
            "$.results[0].tags[*]",
            "$.*",
        ] {
            let fast = JsonPath::parse(text).unwrap();
            assert!(fast.simple.is_some(), "{text} should take the fast path");
            let general = js_path_process(&fast.query, &v).unwrap();
            let general: Vec<&Value> = general.into_iter().map(|r| r.val).collect();
            assert_eq!(fast.query(&v), general, "{text}");
        }
    }

    #[test]
    fn filters_use_the_general_engine() {
        let p = JsonPath::parse("$.results[?@.id > 1].id").unwrap();
        assert!(p.simple.is_none());
        assert_eq!(p.query(&page()), vec![&json!(2)]);
    }

    #[test]
    fn null_is_a_match_and_empty_arrays_exist() {
        let v = page();
        assert_eq!(JsonPath::parse("$.info.next").unwrap().first(&v), Some(&Value::Null));
        assert_eq!(JsonPath::parse("$.info.prev").unwrap().first(&v), None);
        let empty = JsonPath::parse("$.empty[*]").unwrap();
        assert!(empty.query(&v).is_empty());
        assert!(empty.container_exists(&v));
        assert!(!JsonPath::parse("$.data[*]").unwrap().container_exists(&v));
    }

    #[test]
    fn bad_paths_are_rejected_with_the_text() {
        let e = JsonPath::parse("$.results[*").unwrap_err();
        assert!(e.contains("`$.results[*`"), "{e}");
        assert!(JsonPath::parse("results").is_err());
        let e = JsonPath::parse("$.activity-mrr[*]").unwrap_err();
        assert!(e.ends_with("goes in brackets: `$['activity-mrr'][*]`"), "{e}");
        assert_eq!(bracketed("$.a.b-c.d").as_deref(), Some("$.a['b-c'].d"));
        assert_eq!(bracketed("$.a.b"), None);
    }
}
