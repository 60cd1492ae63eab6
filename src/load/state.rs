//! The incremental state in the warehouse: per pipeline and resource, the highest cursor
//! loaded. Written only inside a load's transaction, so it moves with committed data and
//! never ahead of it; never moved backwards (loading an older run leaves it alone).

use std::collections::BTreeMap;

use tokio_postgres::GenericClient;

use super::{connect, db, LoadError};
use crate::incremental::Position;
use crate::spec::pipeline::Pipeline;
use crate::util::Secrets;

/// The state table, created with the ledger.
pub const DDL: &str = r#"
CREATE TABLE IF NOT EXISTS "_sluice"."state" (
    "pipeline" text NOT NULL,
    "resource" text NOT NULL,
    "value" text NOT NULL,
    "run_id" text NOT NULL,
    "updated_at" timestamp with time zone NOT NULL DEFAULT now(),
    PRIMARY KEY ("pipeline", "resource")
);
"#;

/// One resource's saved state.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    pub resource: String,
    /// The highest cursor loaded, in the resource's format.
    pub value: String,
    /// The run that loaded it, and when.
    pub run_id: String,
    pub updated_at: String,
}

/// The saved states of a pipeline, by resource (none before its first load).
async fn read<C: GenericClient>(client: &C, pipeline: &str) -> Result<BTreeMap<String, Saved>, LoadError> {
    let exists: Option<String> = client
        .query_one("SELECT to_regclass('\"_sluice\".\"state\"')::text", &[])
        .await
        .map_err(db("read the incremental state"))?
        .get(0);
    if exists.is_none() {
        return Ok(BTreeMap::new());
    }
    let rows = client
        .query(
            "SELECT resource, value, run_id, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
             FROM \"_sluice\".\"state\" WHERE pipeline = $1 ORDER BY resource",
            &[&pipeline],
        )
        .await
        .map_err(db("read the incremental state"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let saved = Saved {
                resource: r.get(0),
                value: r.get(1),
                run_id: r.get(2),
                updated_at: r.get(3),
            };
            (saved.resource.clone(), saved)
        })
        .collect())
}

/// The saved states of `p`.
pub async fn states(
    p: &Pipeline,
    warehouse_url: &str,
    secrets: &Secrets,
) -> Result<BTreeMap<String, Saved>, LoadError> {
    let (client, _) = connect::connect(warehouse_url, secrets).await?;
    read(&client, p.name()).await
}

/// The saved position of each incremental resource of `p` that has one: where extract
/// starts from.
pub async fn positions(
    p: &Pipeline,
    warehouse_url: &str,
    secrets: &Secrets,
) -> Result<BTreeMap<String, Position>, LoadError> {
    positions_of(p, &states(p, warehouse_url, secrets).await?)
}

/// [`positions`] of states already read. A saved value the resource's format cannot read
/// is an error, not a silent full reload.
pub fn positions_of(p: &Pipeline, saved: &BTreeMap<String, Saved>) -> Result<BTreeMap<String, Position>, LoadError> {
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
pub async fn advance<C: GenericClient>(
    client: &C,
    p: &Pipeline,
    run_id: &str,
    highest: &[(String, String)],
) -> Result<(), LoadError> {
    for (name, value) in highest {
        let Some(inc) = p.resource(name).and_then(|r| r.incremental.as_ref()) else {
            continue;
        };
        let read = |v: &str| inc.format.read(&serde_json::Value::String(v.to_string())).ok();
        let Some(new) = read(value) else { continue };
        let current: Option<String> = client
            .query_opt(
                "SELECT value FROM \"_sluice\".\"state\" WHERE pipeline = $1 AND resource = $2",
                &[&p.name(), name],
            )
            .await
            .map_err(db("read the incremental state"))?
            .map(|r| r.get(0));
        if current.as_deref().and_then(read).is_some_and(|old| old >= new) {
            continue;
        }
        client
            .execute(
                "INSERT INTO \"_sluice\".\"state\" (pipeline, resource, value, run_id, updated_at) VALUES ($1, $2, $3, $4, now()) \
                 ON CONFLICT (pipeline, resource) DO UPDATE SET value = EXCLUDED.value, run_id = EXCLUDED.run_id, updated_at = now()",
                &[&p.name(), name, &inc.format.text(new), &run_id],
            )
            .await
            .map_err(db("save the incremental state"))?;
    }
    Ok(())
}

/// Forget the state of `resources` (all when empty): their next run starts at `initial`.
/// Returns how many states were removed.
pub async fn reset(
    p: &Pipeline,
    warehouse_url: &str,
    resources: &[String],
    secrets: &Secrets,
) -> Result<u64, LoadError> {
    let (client, _) = connect::connect(warehouse_url, secrets).await?;
    if read(&client, p.name()).await?.is_empty() {
        return Ok(0);
    }
    let all = resources.is_empty();
    client
        .execute(
            "DELETE FROM \"_sluice\".\"state\" WHERE pipeline = $1 AND ($2 OR resource = ANY($3))",
            &[&p.name(), &all, &resources],
        )
        .await
        .map_err(db("reset the incremental state"))
}
