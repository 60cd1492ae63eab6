//! `sluice state`: the incremental state the warehouse holds, shown and reset.

use super::{select, RunError};
use crate::resolve::Needs;
use crate::spec::pipeline::Pipeline;
use crate::util::Secrets;

/// One incremental resource's state, for `sluice state`.
#[derive(Debug, Clone)]
pub(crate) struct StateRow {
    pub resource: String,
    /// The highest cursor loaded, if any run was.
    pub saved: Option<String>,
    /// Where the next run starts (the saved value less the lag, or `initial`).
    pub next_start: String,
    pub run_id: Option<String>,
    pub updated_at: Option<String>,
}

/// The state of every incremental resource of `p`.
pub(crate) async fn state(p: &Pipeline, secrets: &Secrets) -> Result<Vec<StateRow>, RunError> {
    let resolved = crate::resolve::resolve(p, Needs::WAREHOUSE, secrets)?;
    let saved = crate::load::state::states(p, resolved.warehouse_url(), secrets).await?;
    let positions = crate::load::state::positions_of(p, &saved)?;
    Ok(p.resources()
        .iter()
        .filter_map(|r| {
            let inc = r.incremental.as_ref()?;
            let s = saved.get(&r.name);
            let next_start = match inc.position(&inc.initial, crate::resolve::var) {
                Ok(initial) => inc.format.text(inc.start(positions.get(&r.name).copied(), initial)),
                Err(e) => format!("unknown (`initial`: {e})"),
            };
            Some(StateRow {
                resource: r.name.clone(),
                saved: s.map(|s| s.value.clone()),
                next_start,
                run_id: s.map(|s| s.run_id.clone()),
                updated_at: s.map(|s| s.updated_at.clone()),
            })
        })
        .collect())
}

/// Forget the incremental state of `resources` (all when empty).
pub(crate) async fn reset_state(p: &Pipeline, resources: &[String], secrets: &Secrets) -> Result<u64, RunError> {
    select(p, resources)?;
    let resolved = crate::resolve::resolve(p, Needs::WAREHOUSE, secrets)?;
    Ok(crate::load::state::reset(p, resolved.warehouse_url(), resources, secrets).await?)
}
