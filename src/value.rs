//! Value rules: the column types, the transforms and the explicit coercion of JSON values
//! to typed cells. A leaf module: `spec` checks constants with it and `load` maps records
//! with it; it knows nothing of either. Pure: no database here.
//!
//! APIs send numbers as strings (CoinCap), timestamps as epoch milliseconds, `""` for
//! unknown (Rick and Morty): every such conversion is spelled out here, and anything that
//! does not fit is an error that says why, never a silent default.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::util::clip;

/// PostgreSQL column types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// `text`.
    Text,
    /// `integer` (32-bit).
    Integer,
    /// `bigint` (64-bit).
    Bigint,
    /// `numeric`: exact decimals of any precision (numbers sent as strings stay exact).
    Numeric,
    /// `double precision`.
    Double,
    /// `boolean`.
    Boolean,
    /// `date`.
    Date,
    /// `timestamptz` (ISO 8601, or epoch seconds/milliseconds through a transform).
    Timestamptz,
    /// `jsonb`: any JSON value, stored as is.
    Jsonb,
}

/// Value transforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// The last path segment of a URL (`…/location/3` → `3`); empty URL → null.
    UrlLastSegment,
    /// Epoch milliseconds → timestamp.
    EpochMs,
    /// Epoch seconds → timestamp.
    EpochS,
    /// Empty string → null.
    EmptyAsNull,
    /// Lowercase text.
    Lowercase,
    /// Uppercase text.
    Uppercase,
    /// Strip leading and trailing white space.
    Trim,
}

impl ColumnType {
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Integer => "integer",
            ColumnType::Bigint => "bigint",
            ColumnType::Numeric => "numeric",
            ColumnType::Double => "double precision",
            ColumnType::Boolean => "boolean",
            ColumnType::Date => "date",
            ColumnType::Timestamptz => "timestamp with time zone",
            ColumnType::Jsonb => "jsonb",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Integer => "integer",
            ColumnType::Bigint => "bigint",
            ColumnType::Numeric => "numeric",
            ColumnType::Double => "double",
            ColumnType::Boolean => "boolean",
            ColumnType::Date => "date",
            ColumnType::Timestamptz => "timestamptz",
            ColumnType::Jsonb => "jsonb",
        }
    }
}

impl Transform {
    pub fn name(self) -> &'static str {
        match self {
            Transform::UrlLastSegment => "url_last_segment",
            Transform::EpochMs => "epoch_ms",
            Transform::EpochS => "epoch_s",
            Transform::EmptyAsNull => "empty_as_null",
            Transform::Lowercase => "lowercase",
            Transform::Uppercase => "uppercase",
            Transform::Trim => "trim",
        }
    }
}

/// A value between extraction and coercion: JSON as it came, or text a transform made.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Null,
    Json(&'a Value),
    Text(Cow<'a, str>),
    /// A timestamp made by `epoch_ms` / `epoch_s`.
    Time(DateTime<Utc>),
}

impl<'a> Val<'a> {
    pub fn from_json(v: Option<&'a Value>) -> Self {
        match v {
            None | Some(Value::Null) => Val::Null,
            Some(Value::String(s)) => Val::Text(Cow::Borrowed(s)),
            Some(v) => Val::Json(v),
        }
    }

    /// The value as text for messages (clipped).
    pub fn display(&self) -> String {
        let s = match self {
            Val::Null => "null".to_string(),
            Val::Json(v) => v.to_string(),
            // As a JSON string: control characters (even NUL) escaped, safe in any message.
            Val::Text(t) => Value::String(t.to_string()).to_string(),
            Val::Time(t) => t.to_rfc3339(),
        };
        clip(&s, 80)
    }
}

/// A typed value ready to be written to a column. (`repr(u64)`: the payload starts on a
/// word, so a cell moves as whole words; with a one-byte tag, moving one after `coerce`
/// stalled on partial stores.)
#[derive(Debug, Clone, PartialEq)]
#[repr(u64)]
pub enum Cell {
    Null,
    Text(String),
    Int(i32),
    Big(i64),
    /// A validated decimal in plain notation: optional `-`, digits, optional `.digits`.
    Numeric(String),
    Double(f64),
    Bool(bool),
    Date(NaiveDate),
    Time(DateTime<Utc>),
    Json(String),
}

/// Apply one transform.
pub fn apply(t: Transform, v: Val<'_>) -> Result<Val<'_>, String> {
    Ok(match (t, v) {
        (_, Val::Null) => Val::Null,
        (Transform::EmptyAsNull, Val::Text(s)) if s.is_empty() => Val::Null,
        (Transform::EmptyAsNull, v) => v,
        (Transform::Trim, Val::Text(s)) => match s {
            Cow::Borrowed(b) => Val::Text(Cow::Borrowed(b.trim())),
            Cow::Owned(o) => Val::Text(Cow::Owned(o.trim().to_string())),
        },
        (Transform::Lowercase, Val::Text(s)) => Val::Text(Cow::Owned(s.to_lowercase())),
        (Transform::Uppercase, Val::Text(s)) => Val::Text(Cow::Owned(s.to_uppercase())),
        (Transform::Trim | Transform::Lowercase | Transform::Uppercase, v) => v,
        (Transform::UrlLastSegment, Val::Text(s)) => match s {
            // Borrowed text gives a borrowed segment.
            Cow::Borrowed(b) => last_segment(b).map_or(Val::Null, |seg| Val::Text(Cow::Borrowed(seg))),
            Cow::Owned(o) => last_segment(&o).map_or(Val::Null, |seg| Val::Text(Cow::Owned(seg.to_string()))),
        },
        (Transform::UrlLastSegment, v) => return Err(format!("url_last_segment needs text, got {}", v.display())),
        (Transform::EpochMs | Transform::EpochS, v) => {
            let text = match &v {
                Val::Json(Value::Number(n)) => n.to_string(),
                Val::Text(s) => s.trim().to_string(),
                other => return Err(format!("{} needs a number, got {}", t.name(), other.display())),
            };
            let n: f64 = text
                .parse()
                .map_err(|_| format!("{} needs a number, got {}", t.name(), v.display()))?;
            let micros = if t == Transform::EpochMs {
                n * 1000.0
            } else {
                n * 1_000_000.0
            };
            if !micros.is_finite() || micros.abs() > 9.0e18 {
                return Err(format!("{} is out of range for a timestamp", v.display()));
            }
            let time = Utc
                .timestamp_micros(micros.round() as i64)
                .single()
                .ok_or_else(|| format!("{} is out of range for a timestamp", v.display()))?;
            Val::Time(time)
        }
    })
}

/// The last path segment of a URL, without its query or fragment; `None` when it is empty.
fn last_segment(url: &str) -> Option<&str> {
    let trimmed = url.trim_end_matches('/');
    let no_query = memchr::memchr2(b'?', b'#', trimmed.as_bytes()).map_or(trimmed, |at| &trimmed[..at]);
    let seg = memchr::memrchr(b'/', no_query.as_bytes()).map_or(no_query, |at| &no_query[at + 1..]);
    (!seg.is_empty()).then_some(seg)
}

/// Coerce a (transformed) value to a column type. A value PostgreSQL could not store
/// (a NUL character, a year before 4713 BC, a numeric too long) is refused here, as a
/// record error, rather than failing the whole load at the server.
pub fn coerce(v: &Val<'_>, ty: ColumnType) -> Result<Cell, String> {
    let cell = convert(v, ty)?;
    storable(&cell).map_err(|why| format!("{} {why}", v.display()))?;
    Ok(cell)
}

/// The limits of PostgreSQL's types that a valid JSON value can exceed.
fn storable(cell: &Cell) -> Result<(), &'static str> {
    use chrono::Datelike;
    match cell {
        Cell::Text(s) if s.contains('\0') => {
            Err("contains a NUL character (\\u0000), which PostgreSQL text cannot hold")
        }
        Cell::Json(s) if has_nul_escape(s) => Err("contains \\u0000, which PostgreSQL jsonb cannot hold"),
        Cell::Time(t) if t.year() < MIN_YEAR => Err("is before 4713 BC, the earliest time PostgreSQL stores"),
        Cell::Date(d) if d.year() < MIN_YEAR => Err("is before 4713 BC, the earliest date PostgreSQL stores"),
        Cell::Numeric(s) => {
            let (int, frac) = s.trim_start_matches('-').split_once('.').unwrap_or((s, ""));
            if int.len() > 131_072 || frac.len() > 16_383 {
                Err("has more digits than PostgreSQL numeric holds (131072 before the point, 16383 after)")
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// The earliest year (astronomical numbering) whose every day PostgreSQL can store.
const MIN_YEAR: i32 = -4712;

/// Whether JSON text holds a `\u0000` escape (and not an escaped backslash before `u0000`).
fn has_nul_escape(json: &str) -> bool {
    json.match_indices("\\u0000").any(|(i, _)| {
        let backslashes = json[..=i].bytes().rev().take_while(|b| *b == b'\\').count();
        backslashes % 2 == 1
    })
}

fn convert(v: &Val<'_>, ty: ColumnType) -> Result<Cell, String> {
    use ColumnType as T;
    if matches!(v, Val::Null) {
        return Ok(Cell::Null);
    }
    if ty == T::Jsonb {
        return Ok(Cell::Json(match v {
            Val::Json(j) => j.to_string(),
            Val::Text(s) => Value::String(s.to_string()).to_string(),
            Val::Time(t) => Value::String(t.to_rfc3339()).to_string(),
            Val::Null => unreachable!(),
        }));
    }
    if let Val::Time(t) = v {
        return match ty {
            T::Timestamptz => Ok(Cell::Time(*t)),
            T::Date => Ok(Cell::Date(t.date_naive())),
            T::Text => Ok(Cell::Text(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))),
            _ => Err(format!("a timestamp does not fit a {} column", ty.name())),
        };
    }
    let (text, is_string): (Cow<str>, bool) = match v {
        Val::Text(s) => (Cow::Borrowed(s.as_ref()), true),
        // Exact: the number's own digits.
        Val::Json(Value::Number(n)) => (Cow::Borrowed(n.as_str()), false),
        Val::Json(Value::Bool(b)) => (Cow::Borrowed(if *b { "true" } else { "false" }), false),
        Val::Json(j @ (Value::Array(_) | Value::Object(_))) => {
            if ty == T::Text {
                return Ok(Cell::Text(j.to_string()));
            }
            return Err(format!(
                "{} is not a {} (use type jsonb to keep it)",
                v.display(),
                ty.name()
            ));
        }
        Val::Json(Value::String(s)) => (Cow::Borrowed(s.as_str()), true),
        Val::Json(Value::Null) | Val::Null | Val::Time(_) => unreachable!("handled above"),
    };
    let bad = |what: &str| format!("{} is not {what}", v.display());
    match ty {
        T::Text => Ok(Cell::Text(text.into_owned())),
        T::Integer => parse_int(&text)
            .and_then(|n| i32::try_from(n).ok())
            .map(Cell::Int)
            .ok_or_else(|| {
                if parse_int(&text).is_some() {
                    format!("{} is out of range for integer", v.display())
                } else {
                    bad("an integer")
                }
            }),
        T::Bigint => parse_int(&text).map(Cell::Big).ok_or_else(|| bad("a 64-bit integer")),
        T::Numeric => normalize_decimal(text.trim())
            .map(Cell::Numeric)
            .ok_or_else(|| bad("a number")),
        T::Double => {
            let t = text.trim();
            match t.parse::<f64>() {
                Ok(f) if f.is_finite() || matches!(t, "NaN" | "Infinity" | "-Infinity" | "inf" | "-inf") => {
                    Ok(Cell::Double(f))
                }
                _ => Err(bad("a number")),
            }
        }
        T::Boolean => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" => Ok(Cell::Bool(true)),
            "false" | "f" | "no" | "n" | "0" => Ok(Cell::Bool(false)),
            _ => Err(bad("a boolean")),
        },
        T::Date => parse_date(text.trim())
            .map(Cell::Date)
            .ok_or_else(|| bad("a date (YYYY-MM-DD or e.g. \"December 2, 2013\")")),
        T::Timestamptz => {
            if !is_string {
                return Err(format!(
                    "{} is a number; add `transform: epoch_ms` or `epoch_s` to read it as a timestamp",
                    v.display()
                ));
            }
            parse_timestamp(text.trim())
                .map(Cell::Time)
                .ok_or_else(|| bad("an ISO 8601 timestamp"))
        }
        T::Jsonb => unreachable!("handled above"),
    }
}

/// Check a constant `value:` from a spec against its column type, offline.
pub fn check_constant(value: &str, ty: ColumnType) -> Result<(), String> {
    coerce(&Val::Text(Cow::Borrowed(value)), ty)
        .map(|_| ())
        .map_err(|e| format!("constant {e}"))
}

fn parse_int(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i64>() {
        return Some(n);
    }
    // `12.0` or `1e3` from a JSON number are integers too, when exact.
    let d = normalize_decimal(t)?;
    let (int, frac) = d.split_once('.').unwrap_or((&d, ""));
    if frac.chars().all(|c| c == '0') {
        int.parse().ok()
    } else {
        None
    }
}

/// Validate a decimal (`-12.50`, `1e-3`, `.5`) and write it in plain notation.
pub fn normalize_decimal(t: &str) -> Option<String> {
    let (neg, body) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i32>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if exp.unsigned_abs() > 1000 {
        return None;
    }
    let mut digits: String = format!("{int}{frac}");
    let mut point = int.len() as i64 + exp as i64;
    if point < 0 {
        digits = format!("{}{digits}", "0".repeat((-point) as usize));
        point = 0;
    }
    if point as usize > digits.len() {
        digits.push_str(&"0".repeat(point as usize - digits.len()));
    }
    let (i, f) = digits.split_at(point as usize);
    let i = i.trim_start_matches('0');
    let i = if i.is_empty() { "0" } else { i };
    let mut out = String::new();
    if neg && (i != "0" || f.bytes().any(|b| b != b'0')) {
        out.push('-');
    }
    out.push_str(i);
    if !f.is_empty() {
        out.push('.');
        out.push_str(f);
    }
    Some(out)
}

pub(crate) fn parse_date(t: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .or_else(|| parse_timestamp(t).map(|ts| ts.date_naive()))
        .or_else(|| NaiveDate::parse_from_str(t, "%B %d, %Y").ok())
        .or_else(|| NaiveDate::parse_from_str(t, "%b %d, %Y").ok())
}

pub(crate) fn parse_timestamp(t: &str) -> Option<DateTime<Utc>> {
    if let Ok(ts) = DateTime::parse_from_rfc3339(t) {
        return Some(ts.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(ts) = DateTime::parse_from_str(t, fmt) {
            return Some(ts.with_timezone(&Utc));
        }
    }
    // Without a zone, a timestamp is read as UTC.
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(ts) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(ts.and_utc());
        }
    }
    // RFC 2822, as e-mail and many older APIs write it: `Sat, 04 Nov 2017 18:48:46 +0000`.
    if let Ok(ts) = DateTime::parse_from_rfc2822(t) {
        return Some(ts.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(s: &str) -> Val<'_> {
        Val::Text(Cow::Borrowed(s))
    }

    #[test]
    fn transforms() {
        assert_eq!(
            apply(Transform::UrlLastSegment, text("https://x/api/location/3")).unwrap(),
            text("3")
        );
        assert_eq!(apply(Transform::UrlLastSegment, text("")).unwrap(), Val::Null);
        // Text a transform made (owned) gives the same segments as text of the record.
        for url in [
            "https://x/api/location/3",
            "https://x/a/7/?q=1#f",
            "https://x/",
            "",
            "/",
        ] {
            assert_eq!(
                apply(Transform::UrlLastSegment, Val::Text(Cow::Owned(url.to_string()))).unwrap(),
                apply(Transform::UrlLastSegment, text(url)).unwrap(),
                "{url}"
            );
        }
        assert_eq!(
            apply(Transform::UrlLastSegment, text("https://x/a/7?q=1#f")).unwrap(),
            text("7")
        );
        assert_eq!(apply(Transform::EmptyAsNull, text("")).unwrap(), Val::Null);
        assert_eq!(apply(Transform::Trim, text("  a ")).unwrap(), text("a"));
        assert_eq!(apply(Transform::Lowercase, text("AbC")).unwrap(), text("abc"));
        let ms = json!(1652488911546u64);
        let t = apply(Transform::EpochMs, Val::Json(&ms)).unwrap();
        assert_eq!(
            coerce(&t, ColumnType::Timestamptz).unwrap(),
            Cell::Time(Utc.timestamp_millis_opt(1652488911546).unwrap())
        );
        assert!(apply(Transform::EpochS, text("soon")).is_err());
    }

    #[test]
    fn numbers_given_as_strings_stay_exact() {
        let c = coerce(&text("43.140867627459137071000000000000000000"), ColumnType::Numeric).unwrap();
        assert_eq!(c, Cell::Numeric("43.140867627459137071000000000000000000".into()));
        assert_eq!(coerce(&text("144"), ColumnType::Integer).unwrap(), Cell::Int(144));
        assert_eq!(normalize_decimal("1.5e3").as_deref(), Some("1500"));
        assert_eq!(normalize_decimal("-.25").as_deref(), Some("-0.25"));
        assert_eq!(normalize_decimal("12a"), None);
        assert!(coerce(&text("abc"), ColumnType::Numeric)
            .unwrap_err()
            .contains("is not a number"));
        assert!(coerce(&text("3000000000"), ColumnType::Integer)
            .unwrap_err()
            .contains("out of range"));
        assert_eq!(
            coerce(&text("3000000000"), ColumnType::Bigint).unwrap(),
            Cell::Big(3_000_000_000)
        );
    }

    #[test]
    fn values_postgres_cannot_store_are_refused() {
        let e = coerce(&text("a\0b"), ColumnType::Text).unwrap_err();
        assert!(e.starts_with("\"a\\u0000b\" contains a NUL"), "{e}");
        let j = json!({"k": "a\u{0}b"});
        assert!(coerce(&Val::Json(&j), ColumnType::Jsonb).unwrap_err().contains("jsonb"));
        let j = json!({"k": "a\\u0000b"});
        assert!(
            coerce(&Val::Json(&j), ColumnType::Jsonb).is_ok(),
            "an escaped backslash is no NUL"
        );
        assert!(coerce(&text("-5000-01-01T00:00:00Z"), ColumnType::Timestamptz).is_err());
        assert!(coerce(&text("-4000-01-01"), ColumnType::Date).is_ok());
        let long = format!("0.{}", "1".repeat(16_384));
        assert!(coerce(&text(&long), ColumnType::Numeric)
            .unwrap_err()
            .contains("digits"));
    }

    #[test]
    fn dates_times_booleans_json() {
        assert_eq!(
            coerce(&text("December 2, 2013"), ColumnType::Date).unwrap(),
            Cell::Date(NaiveDate::from_ymd_opt(2013, 12, 2).unwrap())
        );
        let t = coerce(&text("2017-11-04T18:48:46.250Z"), ColumnType::Timestamptz).unwrap();
        assert_eq!(t, Cell::Time(Utc.timestamp_millis_opt(1509821326250).unwrap()));
        assert_eq!(
            coerce(&text("2017-11-04 18:48:46"), ColumnType::Timestamptz).unwrap(),
            Cell::Time(Utc.timestamp_opt(1509821326, 0).unwrap())
        );
        // RFC 2822 (Twilio's `date_created`), in any zone.
        assert_eq!(
            coerce(&text("Sat, 04 Nov 2017 19:48:46 +0100"), ColumnType::Timestamptz).unwrap(),
            Cell::Time(Utc.timestamp_opt(1509821326, 0).unwrap())
        );
        assert_eq!(
            coerce(&text("Sat, 04 Nov 2017 18:48:46 +0000"), ColumnType::Date).unwrap(),
            Cell::Date(NaiveDate::from_ymd_opt(2017, 11, 4).unwrap())
        );
        let n = json!(5);
        assert!(coerce(&Val::Json(&n), ColumnType::Timestamptz)
            .unwrap_err()
            .contains("epoch_ms"));
        let b = json!(true);
        assert_eq!(coerce(&Val::Json(&b), ColumnType::Boolean).unwrap(), Cell::Bool(true));
        let arr = json!(["a", 1]);
        assert_eq!(
            coerce(&Val::Json(&arr), ColumnType::Jsonb).unwrap(),
            Cell::Json("[\"a\",1]".into())
        );
        assert_eq!(coerce(&Val::Null, ColumnType::Integer).unwrap(), Cell::Null);
    }
}
