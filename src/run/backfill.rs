//! A backfill cut into runs that can be extracted at once (AWS Step Functions' `Map`):
//! round `i` reads date window `i` of every stepped resource (the other resources in
//! round 0 only), and the rounds' run ids, named up front, sort in window order and share
//! one extraction time, so that loading them in window order never takes one for older
//! than another.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{ExtractOptions, RunError, RunInfo};
use crate::incremental::Position;
use crate::spec::pipeline::Pipeline;
use crate::stage::StageError;

/// The range of a backfill, each bound a date (`2024-01-01`) or an RFC 3339 timestamp;
/// `to` is inclusive, as `incremental.end` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backfill {
    pub from: String,
    pub to: String,
}

/// One round of a backfill: its run, and what it reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Round {
    pub index: usize,
    pub run_id: String,
    pub resources: Vec<String>,
    /// Per stepped resource, the window `[start, end]` (`end` inclusive).
    pub windows: HashMap<String, (Position, Position)>,
}

fn bad(message: String) -> RunError {
    StageError::Config(message).into()
}

/// A bound as an instant.
fn instant(which: &str, text: &str) -> Result<DateTime<Utc>, RunError> {
    crate::value::parse_timestamp(text)
        .or_else(|| {
            crate::value::parse_date(text)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        })
        .ok_or_else(|| {
            bad(format!(
                "the backfill's `{which}`, `{text}`, is not a date (2024-01-01) or an RFC 3339 timestamp"
            ))
        })
}

impl Backfill {
    /// The rounds of `p`'s backfill, in window order; their run ids start at `run`'s.
    pub(crate) fn rounds(&self, p: &Pipeline, run: &RunInfo) -> Result<Vec<Round>, RunError> {
        let (from, to) = (instant("from", &self.from)?, instant("to", &self.to)?);
        if from > to {
            return Err(bad(format!(
                "the backfill's `from` ({}) is after its `to` ({})",
                self.from, self.to
            )));
        }
        let mut per_resource = Vec::new();
        for r in p.resources() {
            let Some(inc) = r.incremental.as_ref().filter(|i| i.step.is_some()) else {
                continue;
            };
            let position = |t: DateTime<Utc>| {
                inc.format.of_instant(t).ok_or_else(|| {
                    bad(format!(
                        "resource `{}`: a `{}` cursor has no dates to backfill",
                        r.name,
                        inc.format.name()
                    ))
                })
            };
            let windows = inc.windows(position(from)?, Some(position(to)?), run.run_time);
            let windows: Vec<_> = windows.into_iter().map(|(a, b)| (a, b - inc.granularity)).collect();
            per_resource.push((r.name.clone(), windows));
        }
        if per_resource.is_empty() {
            return Err(bad(format!(
                "pipeline `{}` has no resource with date windows (`incremental.step`) to backfill",
                p.name()
            )));
        }
        let count = per_resource.iter().map(|(_, w)| w.len()).max().unwrap_or(0);
        let stamp = run.run_id.get(..16).unwrap_or_default();
        let base = u32::from_str_radix(run.run_id.get(17..).unwrap_or("0"), 16).unwrap_or(0) & 0x7f_ffff;
        let mut rounds = Vec::with_capacity(count);
        for index in 0..count {
            let windows: HashMap<String, (Position, Position)> = per_resource
                .iter()
                .filter_map(|(name, w)| Some((name.clone(), *w.get(index)?)))
                .collect();
            let resources = match index {
                0 => p.resources().iter().map(|r| r.name.clone()).collect(),
                _ => super::descendants(p, &windows.keys().cloned().collect::<Vec<_>>()),
            };
            rounds.push(Round {
                index,
                run_id: format!("{stamp}-{:06x}", base + index as u32),
                resources,
                windows,
            });
        }
        Ok(rounds)
    }

    /// The extraction of round `index` as run `run_id` (which [`Backfill::rounds`] named).
    pub(crate) fn round(&self, p: &Pipeline, index: usize, run_id: &str) -> Result<ExtractOptions, RunError> {
        let run_time = chrono::NaiveDateTime::parse_from_str(run_id.get(..16).unwrap_or_default(), "%Y%m%dT%H%M%SZ")
            .ok()
            .filter(|_| crate::spec::pipeline::is_run_id(run_id))
            .ok_or_else(|| bad(format!("`{run_id}` is not a run id (20240101T000000Z-abcdef)")))?
            .and_utc();
        let run = RunInfo {
            run_id: run_id.to_string(),
            run_time,
        };
        let rounds = self.rounds(p, &run)?;
        let round = rounds.get(index).ok_or_else(|| {
            bad(format!(
                "the backfill from {} to {} has {} windows; there is no window {index}",
                self.from,
                self.to,
                rounds.len()
            ))
        })?;
        Ok(ExtractOptions {
            resources: round.resources.clone(),
            run: Some(run),
            starts: round.windows.iter().map(|(n, (a, _))| (n.clone(), *a)).collect(),
            ends: round.windows.iter().map(|(n, (_, b))| (n.clone(), *b)).collect(),
            ..Default::default()
        })
    }
}
