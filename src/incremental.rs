//! Incremental cursors and date windows: the formats a cursor is read and sent in, read
//! as positions that order like the values and written back as the API takes them, and
//! the windows a run's range is split into. A leaf, like `value`: the spec declares the
//! format, extract and load compare with it. The state itself (the highest position
//! loaded, per resource) lives in the warehouse, next to the data it describes, and moves
//! only in the transaction that loads that data (see [`crate::load::state`]).

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// How an incremental cursor reads, or how a start and end are sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CursorFormat {
    /// An RFC 3339 / ISO 8601 timestamp, sent as `2024-05-01T10:00:00Z`.
    #[default]
    Rfc3339,
    /// A date, sent as `2024-05-01`.
    Date,
    /// Seconds since 1970, sent as a number.
    EpochS,
    /// Milliseconds since 1970, sent as a number.
    EpochMs,
    /// An increasing integer (an id, a sequence number).
    Integer,
    /// A strftime pattern, for example `%Y-%m-%d %H:%M:%S` or `%d/%m/%Y` (read as UTC).
    Pattern(String),
}

/// A cursor value as a number that orders like the values: microseconds (`rfc3339` and
/// patterns), days (`date`), seconds (`epoch_s`), milliseconds (`epoch_ms`) or the
/// integer itself.
pub(crate) type Position = i64;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The schema `format` of a cursor format, which the spec's shape check reads with
/// [`CursorFormat::parse`] (editors take it as a plain string).
pub(crate) const FORMAT_KEYWORD: &str = "sluice-cursor-format";
/// The schema pattern of a window step, which the shape check reads with [`Step::parse`].
pub(crate) const STEP_PATTERN: &str = r"^[0-9]+(s|m|h|d|w|mo|y)$";

impl<'de> Deserialize<'de> for CursorFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        CursorFormat::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for CursorFormat {
    fn schema_name() -> Cow<'static, str> {
        "CursorFormat".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": FORMAT_KEYWORD,
            "examples": ["rfc3339", "date", "epoch_s", "epoch_ms", "integer", "%Y-%m-%d %H:%M:%S"],
            "description": "`rfc3339` (an ISO 8601 timestamp, `2024-05-01T10:00:00Z`), `date` (`2024-05-01`), `epoch_s`, `epoch_ms`, `integer`, or a strftime pattern such as `%Y-%m-%d %H:%M:%S` (read as UTC)."
        })
    }
}

impl CursorFormat {
    /// A keyword or a strftime pattern (with at least one `%` field chrono knows).
    pub fn parse(text: &str) -> Result<CursorFormat, String> {
        Ok(match text {
            "rfc3339" => CursorFormat::Rfc3339,
            "date" => CursorFormat::Date,
            "epoch_s" => CursorFormat::EpochS,
            "epoch_ms" => CursorFormat::EpochMs,
            "integer" => CursorFormat::Integer,
            p if p.contains('%') => {
                use chrono::format::{Item, StrftimeItems};
                if StrftimeItems::new(p).any(|i| matches!(i, Item::Error)) {
                    return Err(format!("`{p}` is not a strftime pattern chrono can read"));
                }
                CursorFormat::Pattern(p.to_string())
            }
            other => {
                return Err(format!(
                    "`{other}` is not a cursor format: write `rfc3339`, `date`, `epoch_s`, `epoch_ms`, `integer` or a strftime pattern such as `%Y-%m-%d`"
                ))
            }
        })
    }

    pub fn name(&self) -> &str {
        match self {
            CursorFormat::Rfc3339 => "rfc3339",
            CursorFormat::Date => "date",
            CursorFormat::EpochS => "epoch_s",
            CursorFormat::EpochMs => "epoch_ms",
            CursorFormat::Integer => "integer",
            CursorFormat::Pattern(p) => p,
        }
    }

    /// Microseconds in one unit of this format's positions; `None` for `integer`.
    fn micros_per_unit(&self) -> Option<i64> {
        match self {
            CursorFormat::Rfc3339 | CursorFormat::Pattern(_) => Some(1),
            CursorFormat::Date => Some(MICROS_PER_DAY),
            CursorFormat::EpochS => Some(1_000_000),
            CursorFormat::EpochMs => Some(1_000),
            CursorFormat::Integer => None,
        }
    }

    /// Whether the positions are times (every format but `integer`).
    pub fn is_time(&self) -> bool {
        self.micros_per_unit().is_some()
    }

    /// A position of `from` as a position of this format (rounded down); `None` between
    /// `integer` and a time.
    pub fn convert(&self, pos: Position, from: &CursorFormat) -> Option<Position> {
        match (from.micros_per_unit(), self.micros_per_unit()) {
            (None, None) => Some(pos),
            (Some(f), Some(t)) => Some((pos as i128 * f as i128).div_euclid(t as i128) as i64),
            _ => None,
        }
    }

    /// The position of an instant.
    pub fn of_instant(&self, t: DateTime<Utc>) -> Option<Position> {
        self.convert(t.timestamp_micros(), &CursorFormat::Rfc3339)
    }

    /// The instant of a position (`None` for `integer` or out of range).
    pub fn instant(&self, pos: Position) -> Option<DateTime<Utc>> {
        let micros = CursorFormat::Rfc3339.convert(pos, self)?;
        DateTime::<Utc>::from_timestamp_micros(micros)
    }

    /// One unit of what this format writes, in its positions: a second for `rfc3339`,
    /// `epoch_s` and patterns with seconds, a day for `date` and `%Y-%m-%d`, ….
    pub fn granularity(&self) -> Position {
        let micros = match self {
            CursorFormat::Rfc3339 | CursorFormat::EpochS => 1_000_000,
            CursorFormat::Date => MICROS_PER_DAY,
            CursorFormat::EpochMs => 1_000,
            CursorFormat::Integer => return 1,
            CursorFormat::Pattern(p) => {
                let has = |fields: &[&str]| fields.iter().any(|f| p.contains(f));
                if has(&["%f", "%.f", "%3f", "%6f", "%9f", "%.3f", "%.6f", "%.9f"]) {
                    1
                } else if has(&["%S", "%T", "%s", "%X", "%c", "%+", "%r"]) {
                    1_000_000
                } else if has(&["%M", "%R"]) {
                    60_000_000
                } else if has(&["%H", "%I", "%k", "%l"]) {
                    3_600_000_000
                } else {
                    MICROS_PER_DAY
                }
            }
        };
        micros / self.micros_per_unit().unwrap_or(1)
    }

    /// The position of a cursor value (a record's, the saved state, `initial`).
    pub fn read(&self, v: &Value) -> Result<Position, String> {
        let text = match v {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            other => {
                return Err(format!(
                    "{} is not a valid `{}` cursor value",
                    crate::util::clip(&other.to_string(), 60),
                    self.name()
                ))
            }
        };
        let bad = || {
            format!(
                "`{}` is not a valid `{}` cursor value",
                crate::util::clip(&text, 60),
                self.name()
            )
        };
        match self {
            CursorFormat::Rfc3339 => crate::value::parse_timestamp(&text)
                .map(|t| t.timestamp_micros())
                .ok_or_else(bad),
            CursorFormat::Date => crate::value::parse_date(&text)
                .map(|d| (d - NaiveDate::default()).num_days())
                .ok_or_else(bad),
            CursorFormat::EpochS | CursorFormat::EpochMs | CursorFormat::Integer => {
                text.parse::<i64>().map_err(|_| bad())
            }
            CursorFormat::Pattern(p) => DateTime::parse_from_str(&text, p)
                .map(|t| t.with_timezone(&Utc))
                .or_else(|_| NaiveDateTime::parse_from_str(&text, p).map(|t| t.and_utc()))
                .or_else(|_| {
                    NaiveDate::parse_from_str(&text, p).map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
                })
                .map(|t| t.timestamp_micros())
                .map_err(|_| bad()),
        }
    }

    /// A position as the API takes it: text for timestamps, dates and patterns, else a
    /// number.
    pub fn write(&self, pos: Position) -> Value {
        match self {
            CursorFormat::Rfc3339 => Value::String(
                DateTime::<Utc>::from_timestamp_micros(pos)
                    .unwrap_or_default()
                    .to_rfc3339_opts(SecondsFormat::AutoSi, true),
            ),
            CursorFormat::Date => Value::String(
                (NaiveDate::default() + chrono::Duration::days(pos))
                    .format("%Y-%m-%d")
                    .to_string(),
            ),
            CursorFormat::Pattern(p) => Value::String(
                DateTime::<Utc>::from_timestamp_micros(pos)
                    .unwrap_or_default()
                    .format(p)
                    .to_string(),
            ),
            _ => Value::from(pos),
        }
    }

    /// [`CursorFormat::write`] as text (a query parameter, the state table, a manifest).
    pub fn text(&self, pos: Position) -> String {
        match self.write(pos) {
            Value::String(s) => s,
            other => other.to_string(),
        }
    }

    /// A duration in this format's units (rounded up); `None` for `integer`, which has no
    /// time.
    pub fn lag_units(&self, lag: std::time::Duration) -> Option<i64> {
        let micros = lag.as_micros() as i64;
        let per = self.micros_per_unit()?;
        Some((micros + per - 1) / per)
    }
}

/// How long one date window is: a fixed duration, or calendar months.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Fixed(std::time::Duration),
    Months(u32),
}

impl Step {
    /// `7d`, `12h`, `2w`, `1mo`, `1y` (and every unit of a duration).
    pub fn parse(text: &str) -> Result<Step, String> {
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u32 = digits
            .parse()
            .map_err(|_| format!("`{text}` is not a step like `1d`, `7d` or `1mo`"))?;
        if n == 0 {
            return Err(format!("`{text}`: a step must be longer than nothing"));
        }
        let seconds: u64 = match unit {
            "mo" => return Ok(Step::Months(n)),
            "y" => return Ok(Step::Months(n.saturating_mul(12))),
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => {
                return Err(format!(
                    "`{text}` has unknown unit `{unit}`; use s, m, h, d, w, mo or y"
                ))
            }
        };
        Ok(Step::Fixed(std::time::Duration::from_secs(u64::from(n) * seconds)))
    }

    /// The position one step after `pos`, in `format`'s positions.
    fn after(&self, format: &CursorFormat, pos: Position) -> Position {
        match self {
            Step::Fixed(d) => pos.saturating_add(format.lag_units(*d).unwrap_or(1).max(1)),
            Step::Months(n) => {
                let t = format.instant(pos).unwrap_or_default();
                let next = t
                    .checked_add_months(chrono::Months::new(*n))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
                format.of_instant(next).unwrap_or(Position::MAX).max(pos + 1)
            }
        }
    }
}

/// The windows `[start, end)` of a run, in order, each at most a `step` long (one window
/// without a step). `until` is the exclusive end of the whole range.
pub(crate) fn windows(
    format: &CursorFormat,
    step: Option<Step>,
    from: Position,
    until: Position,
) -> Vec<(Position, Position)> {
    let mut out = Vec::new();
    let mut a = from;
    while a < until {
        let b = step.map_or(until, |s| s.after(format, a).min(until));
        out.push((a, b));
        a = b;
    }
    out
}

/// `{now}`, `{now - 7d}` or `{now + 1h}`, with an optional `:<format>`: the run's time,
/// shifted, as text. `None` when `inner` is not a `now` expression.
pub(crate) fn now_expression(inner: &str) -> Option<Result<NowExpr, String>> {
    let rest = inner.strip_prefix("now")?;
    if !rest.is_empty() && !rest.starts_with([' ', '-', '+', ':']) {
        return None;
    }
    let (expr, format) = match rest.split_once(':') {
        Some((e, f)) => (e, Some(f)),
        None => (rest, None),
    };
    let expr = expr.trim();
    let shift = match expr.chars().next() {
        None => Ok(NowShift::None),
        Some(sign @ ('-' | '+')) => Step::parse(expr[1..].trim()).map(|s| {
            if sign == '-' {
                NowShift::Back(s)
            } else {
                NowShift::Ahead(s)
            }
        }),
        Some(_) => Err(format!(
            "`{{{inner}}}`: write `{{now}}`, `{{now - 7d}}` or `{{now - 1mo:%Y-%m-%d}}`"
        )),
    };
    let format = format.map_or(Ok(CursorFormat::Rfc3339), CursorFormat::parse);
    Some(shift.and_then(|shift| Ok(NowExpr { shift, format: format? })))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NowShift {
    None,
    Back(Step),
    Ahead(Step),
}

/// A `{now …}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NowExpr {
    pub shift: NowShift,
    pub format: CursorFormat,
}

impl NowExpr {
    /// The value at run time `now`.
    pub(crate) fn value(&self, now: DateTime<Utc>) -> Value {
        let t = match self.shift {
            NowShift::None => now,
            NowShift::Back(Step::Fixed(d)) => now - chrono::Duration::from_std(d).unwrap_or_default(),
            NowShift::Ahead(Step::Fixed(d)) => now + chrono::Duration::from_std(d).unwrap_or_default(),
            NowShift::Back(Step::Months(n)) => now.checked_sub_months(chrono::Months::new(n)).unwrap_or(now),
            NowShift::Ahead(Step::Months(n)) => now.checked_add_months(chrono::Months::new(n)).unwrap_or(now),
        };
        let pos = self.format.of_instant(t).unwrap_or_default();
        self.format.write(pos)
    }
}

/// The first instant of the unit `now` falls in, in `format`'s positions (today for
/// `date`, this second for `rfc3339`): where the state may advance to at most, since a
/// unit still under way can get more records.
pub(crate) fn settled(format: &CursorFormat, now: DateTime<Utc>) -> Position {
    let g = format.granularity().max(1);
    let pos = format.of_instant(now).unwrap_or_default();
    pos.div_euclid(g) * g
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_read_and_write_positions_that_order_like_the_values() {
        let f = CursorFormat::Rfc3339;
        let a = f.read(&json!("2024-05-01T10:00:00Z")).unwrap();
        let b = f.read(&json!("2024-05-01T12:00:00+02:00")).unwrap();
        assert_eq!(a, b);
        assert_eq!(f.text(a), "2024-05-01T10:00:00Z");
        assert!(f.read(&json!("2024-05-01T10:00:00.5Z")).unwrap() > a);
        assert_eq!(
            f.text(a - f.lag_units(std::time::Duration::from_secs(300)).unwrap()),
            "2024-05-01T09:55:00Z"
        );
        let d = CursorFormat::Date;
        assert_eq!(d.text(d.read(&json!("2024-05-01")).unwrap()), "2024-05-01");
        assert_eq!(d.lag_units(std::time::Duration::from_secs(60)), Some(1));
        assert_eq!(
            CursorFormat::EpochMs.write(1_700_000_000_000),
            json!(1_700_000_000_000i64)
        );
        assert_eq!(CursorFormat::Integer.read(&json!("42")), Ok(42));
        assert!(CursorFormat::Integer.read(&json!("4x")).is_err());
        assert!(f.read(&json!(null)).is_err());
        assert_eq!(CursorFormat::Integer.lag_units(std::time::Duration::from_secs(1)), None);
    }

    #[test]
    fn patterns_read_and_write_and_convert_between_formats() {
        let p = CursorFormat::parse("%Y-%m-%d").unwrap();
        let pos = p.read(&json!("2024-02-29")).unwrap();
        assert_eq!(p.text(pos), "2024-02-29");
        assert_eq!(p.granularity(), MICROS_PER_DAY);
        let rfc2822 = CursorFormat::parse("%a, %d %b %Y %H:%M:%S %z").unwrap();
        let t = rfc2822.read(&json!("Sat, 04 Nov 2017 18:48:46 +0000")).unwrap();
        assert_eq!(CursorFormat::Rfc3339.text(t), "2017-11-04T18:48:46Z");
        assert_eq!(rfc2822.granularity(), 1_000_000);
        assert_eq!(
            CursorFormat::Date.convert(t, &rfc2822),
            Some(CursorFormat::Date.read(&json!("2017-11-04")).unwrap())
        );
        assert_eq!(
            CursorFormat::EpochS.convert(t, &CursorFormat::Rfc3339),
            Some(1_509_821_326)
        );
        assert_eq!(CursorFormat::Integer.convert(5, &CursorFormat::Date), None);
        assert!(CursorFormat::parse("yyyy-mm-dd").unwrap_err().contains("strftime"));
        assert!(CursorFormat::parse("%Q").is_err());
    }

    #[test]
    fn windows_split_the_range_by_step_and_by_calendar_month() {
        let d = CursorFormat::Date;
        let day = |s: &str| d.read(&json!(s)).unwrap();
        let w = windows(
            &d,
            Some(Step::parse("31d").unwrap()),
            day("2024-01-01"),
            day("2024-03-01"),
        );
        let shown: Vec<(String, String)> = w
            .iter()
            .map(|(a, b)| (d.text(*a), d.text(b - d.granularity())))
            .collect();
        assert_eq!(
            shown,
            [
                ("2024-01-01".into(), "2024-01-31".into()),
                ("2024-02-01".into(), "2024-02-29".into())
            ]
        );
        let m = windows(
            &d,
            Some(Step::parse("1mo").unwrap()),
            day("2024-01-31"),
            day("2024-04-15"),
        );
        assert_eq!(m.len(), 3);
        assert_eq!(d.text(m[1].0), "2024-02-29");
        assert_eq!(windows(&d, None, day("2024-01-01"), day("2024-01-01")), []);
        assert_eq!(windows(&d, None, day("2024-01-01"), day("2024-01-05")).len(), 1);
        assert!(Step::parse("0d").is_err());
        assert_eq!(
            Step::parse("2w").unwrap(),
            Step::Fixed(std::time::Duration::from_secs(14 * 86_400))
        );
    }

    #[test]
    fn now_expressions_shift_and_format_the_run_time() {
        let now = DateTime::parse_from_rfc3339("2024-03-31T10:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let e = |s: &str| now_expression(s).unwrap().unwrap().value(now);
        assert_eq!(e("now"), json!("2024-03-31T10:30:00Z"));
        assert_eq!(e("now - 7d:%Y-%m-%d"), json!("2024-03-24"));
        assert_eq!(e("now-1mo:date"), json!("2024-02-29"));
        assert_eq!(e("now + 1h:epoch_s"), json!(1_711_884_600));
        assert!(now_expression("nowhere").is_none());
        assert!(now_expression("now * 2").unwrap().is_err());
        assert_eq!(
            settled(&CursorFormat::Date, now),
            CursorFormat::Date.read(&json!("2024-03-31")).unwrap()
        );
    }
}
