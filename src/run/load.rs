//! `load`: which staged run (the latest or one by id), checked as the pipeline's own,
//! then loaded.

use super::preflight::prepare;
use super::RunError;
use crate::resolve::Needs;
use crate::spec::pipeline::Pipeline;
use crate::stage::manifest::{Manifest, ObjectManifest};
use crate::stage::{manifest_key, Backend, StageError, Store};
use crate::util::Secrets;

/// Totals of a list of objects.
pub(crate) fn object_totals(objects: &[ObjectManifest]) -> (u64, u64) {
    (
        objects.iter().map(|o| o.records).sum(),
        objects.iter().map(|o| o.bytes).sum(),
    )
}

/// Which staged run `load` takes.
#[derive(Debug, Clone)]
pub(crate) enum RunSelector {
    Latest,
    Id(String),
}

/// Load a staged run into the warehouse.
pub(crate) async fn load(
    p: &Pipeline,
    which: &RunSelector,
    opts: crate::load::LoadOptions,
    secrets: &Secrets,
) -> Result<crate::load::LoadReport, RunError> {
    let resolved = prepare(p, Needs::LOAD, secrets).await?;
    let store = Store::open(p.staging(), resolved.staging()).await?;
    let run_id = match which {
        RunSelector::Id(id) => id.clone(),
        RunSelector::Latest => crate::stage::complete_runs(&store, p.name())
            .await?
            .pop()
            .ok_or_else(|| {
                crate::load::LoadError::Io(format!(
                    "no complete run of `{}` is staged in {}",
                    p.name(),
                    store.describe()
                ))
            })?,
    };
    let manifest = match crate::stage::read_manifest(&store, p.name(), &run_id).await {
        Err(StageError::NotFound { .. }) => {
            // Objects but no manifest: a run that failed or is still being extracted.
            let staged = store.list(&p.staging().key.list_prefix(p.name())).await?;
            if staged
                .iter()
                .any(|k| p.run_of_key(k).as_deref() == Some(run_id.as_str()))
            {
                return Err(crate::load::LoadError::Incomplete { run_id }.into());
            }
            let complete = crate::stage::complete_runs(&store, p.name()).await?;
            return Err(crate::load::LoadError::NoSuchRun {
                run_id,
                pipeline: p.name().to_string(),
                location: store.describe(),
                latest: complete.into_iter().rev().take(5).collect(),
            }
            .into());
        }
        other => other?,
    };
    check_own(p, &manifest, &manifest_key(p.name(), &run_id))?;
    for r in &manifest.resources {
        let (records, _) = object_totals(&r.objects);
        if records != r.records {
            return Err(StageError::BadManifest {
                key: manifest_key(p.name(), &run_id),
                detail: format!(
                    "resource `{}` has {} records but its objects hold {records}",
                    r.name, r.records
                ),
            }
            .into());
        }
    }
    tracing::info!(pipeline = p.name(), run_id = %run_id, "load started");
    let loading = crate::load::load_run(
        p,
        resolved.warehouse_url(),
        &store,
        crate::load::RunFeed::from_manifest(&manifest),
        opts,
        secrets,
    );
    tokio::select! {
        loaded = loading => Ok(loaded?),
        signal = crate::util::interrupted() => Err(RunError::Interrupted { signal, removed: false }),
    }
}

/// A manifest is loaded only by its own pipeline: it names this spec's pipeline and this
/// run, and every object it lists is a key of this pipeline's template for that run
/// (another pipeline's manifest, copied or misplaced, is refused, not loaded).
pub(crate) fn check_own(p: &Pipeline, manifest: &Manifest, key: &str) -> Result<(), crate::load::LoadError> {
    let foreign = |detail: String| crate::load::LoadError::Foreign {
        key: key.to_string(),
        pipeline: p.name().to_string(),
        detail,
    };
    if manifest.pipeline != p.name() {
        return Err(foreign(format!("it is a manifest of pipeline `{}`", manifest.pipeline)));
    }
    let expected = key.rsplit('/').next().and_then(|f| f.strip_suffix(".json"));
    if expected != Some(manifest.run_id.as_str()) {
        return Err(foreign(format!("it names run `{}`", manifest.run_id)));
    }
    for r in &manifest.resources {
        for o in &r.objects {
            if p.run_of_key(&o.key).as_deref() != Some(manifest.run_id.as_str()) {
                return Err(foreign(format!(
                    "its object `{}` (resource `{}`) is not a key of this pipeline's run `{}` under `{}`",
                    o.key,
                    r.name,
                    manifest.run_id,
                    p.staging().key.raw()
                )));
            }
        }
    }
    Ok(())
}
