//! Human units in specs: durations (`500ms`, `30s`, `5m`) and byte sizes (`64MiB`).

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer};

/// A duration written as a number and a unit: `ms`, `s`, `m`, `h` or `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Duration(pub std::time::Duration);

pub(crate) const DURATION_PATTERN: &str = r"^[0-9]+(ms|s|m|h|d)$";
pub(crate) const BYTE_SIZE_PATTERN: &str = r"^[0-9]+(B|KiB|MiB|GiB|KB|MB|GB)$";

impl Duration {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("`{text}` has no unit; write for example `30s` or `500ms`"))?;
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}` is not a duration like `30s` or `500ms`"))?;
        let factor: u64 = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("`{text}` has unknown unit `{unit}`; use ms, s, m, h or d")),
        };
        Duration::of_millis(n.checked_mul(factor), text)
    }

    /// The longest duration sluice takes: a year (a timer past it would overflow the
    /// clocks it is added to, and means a typo).
    pub(crate) const MAX: std::time::Duration = std::time::Duration::from_secs(366 * 86_400);

    /// `millis` if it is at most [`Duration::MAX`]; `None` (an overflow) is too long too.
    pub(crate) fn of_millis(millis: Option<u64>, text: &str) -> Result<Self, String> {
        match millis.map(std::time::Duration::from_millis) {
            Some(d) if d <= Self::MAX => Ok(Duration(d)),
            _ => Err(format!("`{text}` is too long: at most 366 days (8784h)")),
        }
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms > 0 && ms.is_multiple_of(86_400_000) {
            write!(f, "{}d", ms / 86_400_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Duration::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a whole number and a unit (ms, s, m, h, d), e.g. `30s`."
        })
    }
}

/// A byte size written as a number and a unit, for example `64MiB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSize(pub u64);

impl ByteSize {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("`{text}` has no unit; write for example `64MiB`"))?;
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}` is not a size like `64MiB`"))?;
        let factor = match unit {
            "B" => 1,
            "KB" => 1000,
            "MB" => 1000 * 1000,
            "GB" => 1000 * 1000 * 1000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(format!("`{text}` has unknown unit `{unit}`; use B, KiB, MiB or GiB")),
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("`{text}` is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ByteSize::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": BYTE_SIZE_PATTERN,
            "description": "A size: a whole number and a unit (B, KiB, MiB, GiB, KB, MB, GB), e.g. `64MiB`."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(Duration::parse("500ms").unwrap().0.as_millis(), 500);
        assert_eq!(Duration::parse("30s").unwrap().0.as_secs(), 30);
        assert_eq!(Duration::parse("5m").unwrap().0.as_secs(), 300);
        assert!(Duration::parse("30").is_err());
        assert_eq!(Duration::parse("3d").unwrap().0.as_secs(), 3 * 86_400);
        assert!(Duration::parse("3w").is_err());
        assert!(Duration::parse("5124095576030432h").unwrap_err().contains("too long"));
        assert!(Duration::parse("9000h").unwrap_err().contains("too long"));
        assert!(ByteSize::parse("99999999999999GiB").unwrap_err().contains("too large"));
        assert_eq!(Duration::parse("1500ms").unwrap().to_string(), "1500ms");
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(ByteSize::parse("64MiB").unwrap().0, 64 << 20);
        assert_eq!(ByteSize::parse("10KB").unwrap().0, 10_000);
        assert!(ByteSize::parse("64").is_err());
    }
}
