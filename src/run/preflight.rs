//! Before the first request: the environment resolved, the warehouse and staging
//! checked (`prepare`, `preflight`), and `sluice check`.

use super::RunError;
use crate::extract::first_request;
use crate::extract::session::Session;
use crate::resolve::{Needs, Resolved};
use crate::spec::pipeline::Pipeline;
use crate::spec::placeholder::Values;
use crate::stage::{Backend, StageError, Store};
use crate::util::Secrets;

/// Resolve what a step needs from the environment, then check, before the first API
/// request, that the warehouse and the staging location it needs can be used.
pub(crate) async fn prepare(p: &Pipeline, needs: Needs, secrets: &Secrets) -> Result<Resolved, RunError> {
    let resolved = crate::resolve::resolve(p, needs, secrets)?;
    preflight(p, needs, &resolved, secrets).await?;
    Ok(resolved)
}

/// `sluice check`: what a deployment gate wants to know without reading any records —
/// the environment is complete, the warehouse and staging can be used, and with `api`,
/// one request to the first resource's first page succeeds with the configured auth.
/// Returns the checks that passed.
pub(crate) async fn check(p: &Pipeline, api: bool, secrets: &Secrets) -> Result<Vec<&'static str>, RunError> {
    let resolved = prepare(p, Needs::RUN, secrets).await?;
    let mut passed = vec!["environment", "warehouse", "staging"];
    if api {
        let http = Session::new(p, &resolved, secrets)?;
        // A child's requests need its parent's records: the first resource without one.
        if let Some(r) = p
            .resources()
            .iter()
            // An export job is not started by a check.
            .find(|r| r.for_each.is_none() && r.partitions.is_none() && r.job.is_none())
        {
            let now = chrono::Utc::now();
            let values = Values {
                now: Some(now),
                ..Default::default()
            };
            let base = crate::extract::Requests {
                client: &http.client,
                base_url: &http.base_url,
                params: http.source.resource_params(&r.name),
                headers: http.source.resource_headers(&r.name),
                body: http.source.body(&r.name),
                target: http.source.target(r),
                job: None,
                start: None,
                end: None,
                now,
                resume: None,
            };
            let first = first_request(&base, r, &values)?;
            http.client.fetch(r.method, &first, &r.name, 1).await?;
        }
        passed.push("API");
    }
    Ok(passed)
}

/// The checks before extraction: the warehouse is reached and its schema plan computed (a
/// destructive change is refused now, not after reading the API), and the staging location
/// exists and, for a step that writes it, takes a probe object.
pub(crate) async fn preflight(
    p: &Pipeline,
    needs: Needs,
    resolved: &Resolved,
    secrets: &Secrets,
) -> Result<(), RunError> {
    if needs.warehouse {
        crate::load::preflight(p, resolved.warehouse_url(), secrets)
            .await
            .map_err(|e| {
                let hint = match e {
                    crate::load::LoadError::Connect(_) => {
                        "; check that the database server runs and that `warehouse.url` points at it"
                    }
                    _ => "",
                };
                RunError::Preflight {
                    check: "warehouse",
                    detail: format!("{}{hint}", secrets.mask(&crate::util::error_chain(&e))),
                }
            })?;
    }
    if needs.staging {
        let probe = async {
            let store = Store::open(p.staging(), resolved.staging()).await?;
            store.probe(p.name(), needs.source).await
        };
        probe.await.map_err(|e: StageError| RunError::Preflight {
            check: "staging",
            detail: secrets.mask(&crate::util::error_chain(&e)),
        })?;
    }
    Ok(())
}
