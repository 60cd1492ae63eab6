//! The incremental state in the warehouse: per pipeline and resource, the highest cursor
//! loaded. Written only inside a load's transaction, so it moves with committed data and
//! never ahead of it; never moved backwards (loading an older run leaves it alone).

use std::collections::BTreeMap;

use super::open::{open, with_warehouse};
pub(crate) use super::warehouse::Saved;
use super::warehouse::Warehouse;
use super::LoadError;
use crate::incremental::Position;
use crate::spec::pipeline::Pipeline;
use crate::util::Secrets;

/// The saved states of `p`.
pub(crate) async fn states(
    p: &Pipeline,
    warehouse_url: &str,
    secrets: &Secrets,
) -> Result<BTreeMap<String, Saved>, LoadError> {
    with_warehouse!(open(warehouse_url, secrets).await?, w => w.read_states(p.name()).await)
}

/// The saved position of each incremental resource of `p` that has one: where extract
/// starts from.
pub(crate) async fn positions(
    p: &Pipeline,
    warehouse_url: &str,
    secrets: &Secrets,
) -> Result<BTreeMap<String, Position>, LoadError> {
    positions_of(p, &states(p, warehouse_url, secrets).await?)
}

/// [`positions`] of states already read. A saved value the resource's format cannot read
/// is an error, not a silent full reload.
pub(crate) fn positions_of(
    p: &Pipeline,
    saved: &BTreeMap<String, Saved>,
) -> Result<BTreeMap<String, Position>, LoadError> {
    let mut out = BTreeMap::new();
    for (name, saved) in saved {
        let Some(inc) = p.resource(name).and_then(|r| r.incremental.as_ref()) else {
            continue;
        };
        let pos = inc.format.read(&serde_json::Value::String(saved.value.clone())).map_err(|e| {
            LoadError::Io(format!(
                "the saved incremental state of `{name}` cannot be read ({e}); `sluice state --reset --resource {name}` starts it again from `initial`"
            ))
        })?;
        out.insert(name.clone(), pos);
    }
    Ok(out)
}

/// Move each resource's state to the highest cursor of this load, unless it is already
/// further: inside the load's transaction, under its pipeline lock.
pub(super) async fn advance<W: Warehouse>(
    w: &mut W,
    p: &Pipeline,
    run_id: &str,
    highest: &[(String, String)],
) -> Result<(), LoadError> {
    let saved = w.read_states(p.name()).await?;
    for (name, value) in highest {
        let Some(inc) = p.resource(name).and_then(|r| r.incremental.as_ref()) else {
            continue;
        };
        let read = |v: &str| inc.format.read(&serde_json::Value::String(v.to_string())).ok();
        let Some(new) = read(value) else { continue };
        let current = saved.get(name).and_then(|s| read(&s.value));
        if current.is_some_and(|old| old >= new) {
            continue;
        }
        w.save_state(p.name(), name, &inc.format.text(new), run_id).await?;
    }
    Ok(())
}

/// Forget the state of `resources` (all when empty): their next run starts at `initial`.
/// Returns how many states were removed.
pub(crate) async fn reset(
    p: &Pipeline,
    warehouse_url: &str,
    resources: &[String],
    secrets: &Secrets,
) -> Result<u64, LoadError> {
    with_warehouse!(open(warehouse_url, secrets).await?, w => w.delete_states(p.name(), resources).await)
}
