//! Transforms and explicit coercion of JSON values to column types, and the PostgreSQL
//! binary wire encoding of the result. Pure: no database here.
//!
//! APIs send numbers as strings (CoinCap), timestamps as epoch milliseconds, `""` for
//! unknown (Rick and Morty): every such conversion is spelled out here, and anything that
//! does not fit is an error that says why, never a silent default.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

use crate::spec::pipeline::{ColumnType, Transform};

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
            Val::Text(t) => format!("\"{t}\""),
            Val::Time(t) => t.to_rfc3339(),
        };
        clip(&s, 80)
    }
}

pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let head: String = s.chars().take(max).collect();
        format!("{head}…")
    }
}

/// A typed value ready to be written to a column.
#[derive(Debug, Clone, PartialEq)]
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
        (Transform::UrlLastSegment, Val::Text(s)) => {
            let trimmed = s.trim_end_matches('/');
            let no_query = trimmed.split(['?', '#']).next().unwrap_or("");
            match no_query.rsplit('/').next() {
                Some(seg) if !seg.is_empty() && !no_query.is_empty() => Val::Text(Cow::Owned(seg.to_string())),
                _ => Val::Null,
            }
        }
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

/// Coerce a (transformed) value to a column type.
pub fn coerce(v: &Val<'_>, ty: ColumnType) -> Result<Cell, String> {
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
        Val::Json(Value::Number(n)) => (Cow::Owned(n.to_string()), false),
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

fn parse_date(t: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .or_else(|| parse_timestamp(t).map(|ts| ts.date_naive()))
        .or_else(|| NaiveDate::parse_from_str(t, "%B %d, %Y").ok())
        .or_else(|| NaiveDate::parse_from_str(t, "%b %d, %Y").ok())
}

fn parse_timestamp(t: &str) -> Option<DateTime<Utc>> {
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
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

// ---------------------------------------------------------------------------------------
// PostgreSQL binary encoding (the format of binary COPY and of binary parameters).

const PG_EPOCH_DAYS_FROM_CE: i32 = 730_120; // 2000-01-01
const PG_EPOCH_MICROS_FROM_UNIX: i64 = 946_684_800_000_000;

impl Cell {
    /// Append the field to a binary COPY row: a 4-byte length (-1 for null) and the bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        match self {
            Cell::Null => {
                out.truncate(start);
                out.extend_from_slice(&(-1i32).to_be_bytes());
                return;
            }
            Cell::Text(s) => out.extend_from_slice(s.as_bytes()),
            Cell::Int(n) => out.extend_from_slice(&n.to_be_bytes()),
            Cell::Big(n) => out.extend_from_slice(&n.to_be_bytes()),
            Cell::Double(f) => out.extend_from_slice(&f.to_be_bytes()),
            Cell::Bool(b) => out.push(u8::from(*b)),
            Cell::Date(d) => {
                use chrono::Datelike;
                out.extend_from_slice(&(d.num_days_from_ce() - PG_EPOCH_DAYS_FROM_CE).to_be_bytes())
            }
            Cell::Time(t) => out.extend_from_slice(&(t.timestamp_micros() - PG_EPOCH_MICROS_FROM_UNIX).to_be_bytes()),
            Cell::Json(s) => {
                out.push(1);
                out.extend_from_slice(s.as_bytes());
            }
            Cell::Numeric(s) => encode_numeric(s, out),
        }
        let len = (out.len() - start - 4) as i32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

/// PostgreSQL `numeric` binary format: base-10000 digits, weight, sign, display scale.
fn encode_numeric(s: &str, out: &mut Vec<u8>) {
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let int = int.trim_start_matches('0');
    let dscale = frac.len() as u16;
    // Pad the integer part on the left and the fraction on the right to groups of four.
    let int_pad = (4 - int.len() % 4) % 4;
    let frac_pad = (4 - frac.len() % 4) % 4;
    let digits_text: String = "0".repeat(int_pad) + int + frac + &"0".repeat(frac_pad);
    let mut groups: Vec<i16> = digits_text
        .as_bytes()
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + (d - b'0') as i16))
        .collect();
    let mut weight = ((int.len() + int_pad) / 4) as i16 - 1;
    // Strip leading and trailing zero groups (they carry no information).
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    let sign: u16 = if neg && !groups.is_empty() { 0x4000 } else { 0 };
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
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

    #[test]
    fn numeric_binary_encoding_matches_postgres() {
        // Reference bytes as PostgreSQL's numeric_send writes them.
        let enc = |s: &str| {
            let mut v = Vec::new();
            encode_numeric(s, &mut v);
            v
        };
        // 12345.678: groups [1, 2345, 6780], weight 1, dscale 3.
        assert_eq!(enc("12345.678"), [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]);
        // 0.0001: one group [1], weight -1, dscale 4.
        assert_eq!(enc("0.0001"), [0, 1, 0xff, 0xff, 0, 0, 0, 4, 0, 1]);
        // -5: sign 0x4000.
        assert_eq!(enc("-5"), [0, 1, 0, 0, 0x40, 0, 0, 0, 0, 5]);
        // 0 with scale 2.
        assert_eq!(enc("0.00"), [0, 0, 0, 0, 0, 0, 0, 2]);
    }
}
