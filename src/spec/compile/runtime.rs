//! `runtime`: where a pipeline runs and on what schedule (EventBridge `rate(…)` and
//! `cron(…)` forms, checked field by field).

use super::Ctx;
use crate::spec::pipeline::{self as p};

/// `runtime`: the AWS sizes, each within what Lambda takes.
pub(super) fn compile_runtime(cx: &mut Ctx, r: &crate::spec::model::RawRuntime) -> p::Runtime {
    const MIB: u64 = 1 << 20;
    let mut mib = |field: &str, size: Option<crate::spec::units::ByteSize>, (lo, hi): (u64, u64)| {
        let b = size?.0;
        if b % MIB != 0 || !(lo..=hi).contains(&(b / MIB)) {
            cx.error(
                &format!("runtime.{field}"),
                format!("{field} must be whole MiB from {lo}MiB to {hi}MiB (what AWS Lambda takes), not {b} bytes"),
            );
            return None;
        }
        Some(b / MIB)
    };
    let memory_mib = mib("memory", r.memory, (128, 10240));
    let ephemeral_mib = mib("ephemeral_storage", r.ephemeral_storage, (512, 10240));
    let timeout_s = r.timeout.and_then(|t| {
        let s = t.0.as_secs();
        if t.0.subsec_nanos() != 0 || !(1..=900).contains(&s) {
            cx.error(
                "runtime.timeout",
                "timeout must be whole seconds from 1s to 15m (what AWS Lambda takes)",
            );
            return None;
        }
        Some(s)
    });
    if r.concurrency == Some(0) {
        cx.error(
            "runtime.concurrency",
            "concurrency must be at least 1 (0 would stop every extraction)",
        );
    }
    p::Runtime {
        target: r.target,
        region: r.region.clone(),
        schedule: r.schedule.clone(),
        memory_mib,
        timeout_s,
        ephemeral_mib,
        concurrency: r.concurrency.filter(|c| *c > 0),
    }
}

/// An EventBridge schedule expression: `rate(1 hour)`, `rate(5 minutes)` (singular unit
/// for 1, plural otherwise, as EventBridge requires) or `cron(…)` with six fields.
pub(super) fn check_schedule(text: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid schedule `{text}`: {why}; write `rate(5 minutes)`, `rate(1 hour)` or `cron(0 6 * * ? *)` (EventBridge's forms)"
        ))
    };
    if let Some(inner) = text.strip_prefix("rate(").and_then(|t| t.strip_suffix(')')) {
        let Some((n, unit)) = inner.trim().split_once(' ') else {
            return bad("a rate is a number and a unit");
        };
        let Ok(n) = n.parse::<u32>() else {
            return bad("the rate's number is not a whole number");
        };
        let singular = ["minute", "hour", "day"];
        return match (n, unit.trim()) {
            (0, _) => bad("the rate must be at least 1"),
            (1, u) if singular.contains(&u) => Ok(()),
            (1, _) => bad("with 1 the unit is singular: minute, hour or day"),
            (_, "minutes" | "hours" | "days") => Ok(()),
            _ => bad("the unit is minutes, hours or days"),
        };
    }
    if let Some(inner) = text.strip_prefix("cron(").and_then(|t| t.strip_suffix(')')) {
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let [_, _, dom, _, dow, _] = fields.as_slice() else {
            return bad(&format!(
                "a cron expression has 6 fields (minutes hours day-of-month month day-of-week year), not {}",
                fields.len()
            ));
        };
        for (field, spec) in fields.iter().zip(CRON_FIELDS) {
            if let Err(why) = check_cron_field(field, &spec) {
                return bad(&format!("its {} field `{field}` {why}", spec.name));
            }
        }
        if (*dom == "?") == (*dow == "?") {
            return bad("exactly one of day-of-month and day-of-week must be `?`");
        }
        return Ok(());
    }
    bad("not a rate(…) or cron(…) expression")
}

/// One field of an EventBridge cron expression: its name, range, the names its values
/// may have (from the low end) and the special characters it takes beyond `, - * /`.
struct CronField {
    name: &'static str,
    range: (u32, u32),
    names: &'static [&'static str],
    special: &'static str,
}

const CRON_FIELDS: [CronField; 6] = [
    CronField {
        name: "minutes",
        range: (0, 59),
        names: &[],
        special: "",
    },
    CronField {
        name: "hours",
        range: (0, 23),
        names: &[],
        special: "",
    },
    CronField {
        name: "day-of-month",
        range: (1, 31),
        names: &[],
        special: "?LW",
    },
    CronField {
        name: "month",
        range: (1, 12),
        names: &[
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ],
        special: "",
    },
    CronField {
        name: "day-of-week",
        range: (1, 7),
        names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
        special: "?L#",
    },
    CronField {
        name: "year",
        range: (1970, 2199),
        names: &[],
        special: "",
    },
];

/// Whether `text` is a valid value of `f`, as EventBridge reads it.
fn check_cron_field(text: &str, f: &CronField) -> Result<(), String> {
    let value = |v: &str| -> Result<u32, String> {
        let upper = v.to_ascii_uppercase();
        let n = match f.names.iter().position(|n| *n == upper) {
            Some(i) => f.range.0 + i as u32,
            None => v
                .parse::<u32>()
                .map_err(|_| format!("has `{v}`, which is not a value"))?,
        };
        if !(f.range.0..=f.range.1).contains(&n) {
            return Err(format!("has {n}, outside {}-{}", f.range.0, f.range.1));
        }
        Ok(n)
    };
    if text == "?" && f.special.contains('?') {
        return Ok(());
    }
    for item in text.split(',') {
        if f.special.contains('L') && (item == "L" || item == "LW") {
            continue;
        }
        // `15W` (the weekday nearest the 15th), `5L` (the last Thursday), `3#2` (the
        // second Tuesday).
        if let Some(n) = item.strip_suffix('W').filter(|_| f.special.contains('W')) {
            value(n)?;
            continue;
        }
        if let Some(n) = item
            .strip_suffix('L')
            .filter(|_| f.special.contains('L') && f.name == "day-of-week")
        {
            value(n)?;
            continue;
        }
        if let Some((n, k)) = item.split_once('#').filter(|_| f.special.contains('#')) {
            value(n)?;
            if !matches!(k, "1" | "2" | "3" | "4" | "5") {
                return Err(format!("has `#{k}`; the week of the month is 1 to 5"));
            }
            continue;
        }
        let (span, step) = match item.split_once('/') {
            Some((span, step)) => (span, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            if step.parse::<u32>().map_or(true, |n| n == 0) {
                return Err(format!("has the step `/{step}`, which is not a whole number from 1"));
            }
        }
        match span {
            "*" => {}
            "" => return Err("has an empty value".into()),
            _ => match span.split_once('-') {
                Some((a, b)) => {
                    value(a)?;
                    value(b)?;
                }
                None => {
                    value(span)?;
                }
            },
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_schedule;

    #[test]
    fn schedules_take_eventbridge_forms_only() {
        for good in [
            "rate(1 minute)",
            "rate(5 minutes)",
            "rate(1 day)",
            "rate(12 hours)",
            "cron(0 6 * * ? *)",
            "cron(0/15 8-18 ? * MON-FRI *)",
            "cron(0 12 L * ? 2027)",
            "cron(30 2 ? JAN,JUL 2#1 *)",
            "cron(0 0 15W * ? *)",
        ] {
            assert_eq!(check_schedule(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("rate(1 minutes)", "singular"),
            ("rate(5 minute)", "minutes, hours or days"),
            ("rate(0 days)", "at least 1"),
            ("rate(five minutes)", "whole number"),
            ("cron(0 6 * * ?)", "not 5"),
            ("cron(a b c d e f)", "not a value"),
            ("cron(0 6 * * * *)", "exactly one of"),
            ("cron(0 24 * * ? *)", "outside 0-23"),
            ("cron(0 6 ? * MON#6 *)", "week of the month"),
            ("cron(0/0 6 * * ? *)", "step"),
            ("every 5 minutes", "not a rate"),
        ] {
            let e = check_schedule(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
