//! `sluice gc`: staged runs older than a bound removed, but never a run still running or
//! another pipeline's.

use super::RunError;
use crate::resolve::Needs;
use crate::spec::pipeline::Pipeline;
use crate::stage::{Backend, StageError, Store};
use crate::util::Secrets;
use chrono::Utc;

/// What `gc` removed.
#[derive(Debug, Default)]
pub(crate) struct GcReport {
    pub location: String,
    /// Run ids of the incomplete runs removed, oldest first.
    pub runs: Vec<String>,
    pub objects: u64,
    /// Incomplete runs old enough, left alone because their extraction is still running.
    pub skipped_running: Vec<String>,
}

/// Remove the staged objects of incomplete runs (runs without a manifest) that started
/// more than `older_than` ago, and their checkpoints; a checkpointed run is kept while its
/// checkpoint was saved within `older_than` (`--resume` goes on with it). Only what is this pipeline's own: an object whose key this
/// spec's template parses back strictly (its name, one of its resources, its run time
/// format, a run id). A complete run is never touched, nor a run whose extraction still
/// renews its in-progress marker.
pub(crate) async fn gc(p: &Pipeline, older_than: std::time::Duration, secrets: &Secrets) -> Result<GcReport, RunError> {
    let resolved = crate::resolve::resolve(p, Needs::STAGING, secrets)?;
    let store = Store::open(p.staging(), resolved.staging()).await?;
    let complete: std::collections::HashSet<String> = crate::stage::complete_runs(&store, p.name())
        .await?
        .into_iter()
        .collect();
    let now = Utc::now();
    let cutoff = chrono::Duration::from_std(older_than)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
        .ok_or_else(|| StageError::Config(format!("an age of {} s reaches before year 1", older_than.as_secs())))?;
    let fresh = now - chrono::Duration::from_std(crate::stage::MARKER_FRESH).expect("a short duration");
    let markers = crate::stage::markers(&store, p.name()).await?;
    let running = |run_id: &str| markers.get(run_id).is_some_and(|(_, at)| *at > fresh.timestamp());
    let mut report = GcReport {
        location: store.describe(),
        ..GcReport::default()
    };
    // A checkpointed run's age is its newest save's; another's, its start.
    let checkpoints = crate::stage::checkpoint::checkpoints(&store, p.name()).await?;
    let mut saved = std::collections::HashMap::new();
    for (run_id, (_, save)) in &checkpoints {
        let c = crate::stage::checkpoint::read_checkpoint(&store, p.name(), run_id, *save).await;
        let at = c
            .ok()
            .and_then(|(c, _)| chrono::DateTime::parse_from_rfc3339(&c.saved_at).ok());
        saved.insert(run_id.clone(), at.map(|t| t.with_timezone(&Utc)));
    }
    let started_before_cutoff = |run_id: &str| match saved.get(run_id) {
        Some(Some(at)) => *at <= cutoff,
        // An unreadable checkpoint does not keep its run.
        Some(None) | None => {
            chrono::NaiveDateTime::parse_from_str(&run_id[..16], "%Y%m%dT%H%M%SZ").is_ok_and(|t| t.and_utc() <= cutoff)
        }
    };
    for object in store.list(&p.staging().key.list_prefix(p.name())).await? {
        let Some(run_id) = p.run_of_key(&object) else {
            continue;
        };
        if complete.contains(&run_id) || !started_before_cutoff(&run_id) {
            continue;
        }
        if running(&run_id) {
            if !report.skipped_running.contains(&run_id) {
                report.skipped_running.push(run_id);
            }
            continue;
        }
        store.delete(&object).await?;
        report.objects += 1;
        if !report.runs.contains(&run_id) {
            report.runs.push(run_id);
        }
    }
    // The markers a killed extraction left, once stale.
    for (run_id, (keys, _)) in &markers {
        if !running(run_id) && (complete.contains(run_id) || started_before_cutoff(run_id)) {
            for k in keys {
                store.delete(k).await?;
            }
        }
    }
    // The checkpoints of the runs removed (and of complete runs, which need none).
    for (run_id, (keys, _)) in &checkpoints {
        if running(run_id) || !(complete.contains(run_id) || started_before_cutoff(run_id)) {
            continue;
        }
        for k in keys {
            store.delete(k).await?;
            report.objects += 1;
        }
        if !complete.contains(run_id) && !report.runs.contains(run_id) {
            report.runs.push(run_id.clone());
        }
    }
    report.runs.sort();
    Ok(report)
}
