//! Incremental cursors: their formats, read as positions that order like the values and
//! written back as the API takes them. A leaf, like `value`: the spec declares the
//! format, extract and load compare with it. The state itself (the highest position
//! loaded, per resource) lives in the warehouse, next to the data it describes, and moves
//! only in the transaction that loads that data (see [`crate::load::state`]).

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// How an incremental cursor reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
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
}

/// A cursor value as a number that orders like the values: microseconds (`rfc3339`),
/// days (`date`), seconds (`epoch_s`), milliseconds (`epoch_ms`) or the integer itself.
pub(crate) type Position = i64;

impl CursorFormat {
    pub fn name(self) -> &'static str {
        match self {
            CursorFormat::Rfc3339 => "rfc3339",
            CursorFormat::Date => "date",
            CursorFormat::EpochS => "epoch_s",
            CursorFormat::EpochMs => "epoch_ms",
            CursorFormat::Integer => "integer",
        }
    }

    /// The position of a cursor value (a record's, the saved state, `initial`).
    pub fn read(self, v: &Value) -> Result<Position, String> {
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
        }
    }

    /// A position as the API takes it: text for timestamps and dates, else a number.
    pub fn write(self, pos: Position) -> Value {
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
            _ => Value::from(pos),
        }
    }

    /// [`CursorFormat::write`] as text (a query parameter, the state table, a manifest).
    pub fn text(self, pos: Position) -> String {
        match self.write(pos) {
            Value::String(s) => s,
            other => other.to_string(),
        }
    }

    /// A lag in this format's units (rounded up); `None` for `integer`, which has no time.
    pub fn lag_units(self, lag: std::time::Duration) -> Option<i64> {
        let micros = lag.as_micros() as i64;
        let per = match self {
            CursorFormat::Rfc3339 => 1,
            CursorFormat::Date => 86_400_000_000,
            CursorFormat::EpochS => 1_000_000,
            CursorFormat::EpochMs => 1_000,
            CursorFormat::Integer => return None,
        };
        Some((micros + per - 1) / per)
    }
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
}
