//! The order of the steps: extract (API → staging, then the manifest), load (staging →
//! warehouse) and run (both). The only module that knows that order; one file per
//! command it serves: `extract`, `load`, `dry` (the dry runs), `preflight` (and
//! `check`), `state`, `gc`. This file holds a run's identity and errors, the selection of
//! resources, and `run`.

use crate::extract::ExtractError;
use crate::resolve::Needs;
use crate::spec::pipeline::{Pipeline, Resource};
use crate::stage::{StageError, Store};
use crate::util::Secrets;
use chrono::{DateTime, SecondsFormat, Utc};

mod extract;
use extract::{remove_failed, remove_markers, Announce, Extraction};
mod dry;
mod gc;
mod load;
mod preflight;
mod state;

pub(crate) use dry::{extract_dry_run, run_dry};
pub(crate) use extract::{extract, ExtractOptions, ExtractReport};
pub(crate) use gc::gc;
pub(crate) use load::{load, object_totals, RunSelector};
pub(crate) use preflight::{check, prepare};
pub(crate) use state::{reset_state, state};

/// Identity of one run: a sortable id and the time it started.
#[derive(Debug, Clone)]
pub(crate) struct RunInfo {
    pub run_id: String,
    pub run_time: DateTime<Utc>,
}

impl RunInfo {
    pub(crate) fn new() -> Self {
        let run_time = Utc::now();
        let run_id = format!(
            "{}-{:06x}",
            run_time.format("%Y%m%dT%H%M%SZ"),
            rand::random::<u32>() & 0xff_ffff
        );
        RunInfo { run_id, run_time }
    }
}

impl Default for RunInfo {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error("{} of {total} resources failed: {}; the run has no manifest and will not be loaded. {}", failed.len(), failed.join(", "), causes.join("; "))]
    ResourcesFailed {
        failed: Vec<String>,
        total: usize,
        /// Why each failed (secrets masked).
        causes: Vec<String>,
        /// Whether the invocation deadline stopped one.
        deadline: bool,
    },
    #[error("unknown resource `{name}`; this spec has: {known}")]
    UnknownResource { name: String, known: String },
    #[error(transparent)]
    Load(#[from] crate::load::LoadError),
    #[error(transparent)]
    Env(#[from] crate::resolve::EnvError),
    #[error("preflight check of the {check} failed, so nothing was read from the API: {detail}")]
    Preflight { check: &'static str, detail: String },
    #[error("interrupted by {}: nothing was committed{}", crate::util::signal_name(*signal), if *removed { "; what the run staged was removed (--keep-failed keeps it)" } else { "" })]
    Interrupted {
        signal: i32,
        /// Whether staged parts were removed.
        removed: bool,
    },
}

/// The resources an option list selects, in spec order, with the `for_each` parents they
/// need (a child's requests are made for its parent's records of the same run).
pub(crate) fn select<'a>(p: &'a Pipeline, names: &[String]) -> Result<Vec<&'a Resource>, RunError> {
    for n in names {
        if p.resource(n).is_none() {
            let known = p
                .resources()
                .iter()
                .map(|r| format!("`{}`", r.name))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(RunError::UnknownResource { name: n.clone(), known });
        }
    }
    let mut wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut i = 0;
    while i < wanted.len() {
        if let Some(parent) = p.resource(wanted[i]).and_then(|r| r.for_each.as_ref()) {
            if !wanted.contains(&parent.parent.as_str()) {
                tracing::info!(resource = wanted[i], parent = %parent.parent, "the parent is extracted too, for its records");
                wanted.push(parent.parent.as_str());
            }
        }
        i += 1;
    }
    Ok(p.resources()
        .iter()
        .filter(|r| names.is_empty() || wanted.contains(&r.name.as_str()))
        .collect())
}

/// `resources` with every `for_each` parent before its children (the compile pass has
/// ruled out cycles), otherwise in the given order.
pub(super) fn parents_first<'a>(resources: &[&'a Resource]) -> Vec<&'a Resource> {
    let mut out: Vec<&Resource> = Vec::with_capacity(resources.len());
    while out.len() < resources.len() {
        let before = out.len();
        for r in resources {
            let placed = |name: &str| out.iter().any(|o| o.name == name);
            let ready = r.for_each.as_ref().is_none_or(|f| placed(&f.parent));
            if ready && !placed(&r.name) {
                out.push(r);
            }
        }
        assert!(out.len() > before, "for_each parents form no cycle");
    }
    out
}

/// Extract, then load the run just staged.
pub(crate) async fn run(
    p: &Pipeline,
    opts: &ExtractOptions,
    secrets: &Secrets,
) -> Result<(ExtractReport, crate::load::LoadReport), RunError> {
    // The load starts on each staged part as soon as it is stored, while the extraction
    // goes on; it commits only once the extraction has finished (manifest written).
    let resources = select(p, &opts.resources)?;
    let run = RunInfo::new();
    let run_id = run.run_id.clone();
    let mut announce = Announce::new();
    let mut feeds = Vec::new();
    // A resource without a table is staged for its children, not loaded.
    for r in resources.iter().filter(|r| !r.tables.is_empty()) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        announce.insert(r.name.clone(), tx);
        feeds.push((r.name.clone(), crate::load::ObjectFeed::Live(rx)));
    }
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let feed = crate::load::RunFeed {
        run_id: run.run_id.clone(),
        run_time: Some(run.run_time.to_rfc3339_opts(SecondsFormat::Micros, true)),
        extracted_at: run.run_time.to_rfc3339_opts(SecondsFormat::Millis, true),
        spec_hash: p.spec_hash().to_string(),
        resources: feeds,
        highest: Vec::new(),
        extraction: Some(done_rx),
        limited: opts.limit.is_some(),
    };
    let resolved = prepare(p, Needs::RUN, secrets).await?;
    let store = Store::open(p.staging(), resolved.staging()).await?;
    let journal = crate::stage::writer::Journal::default();
    let extracting = async {
        let extraction = Extraction {
            p,
            resolved: &resolved,
            store: &store,
            opts,
            secrets,
            journal: &journal,
        };
        let result = extraction.run(run, &mut announce).await;
        drop(announce);
        let outcome = match &result {
            Ok(report) => Ok(report.manifest.highest()),
            Err(e) => Err(secrets.mask(&e.to_string())),
        };
        let _ = done_tx.send(outcome);
        result
    };
    let loading = crate::load::load_run(
        p,
        resolved.warehouse_url(),
        &store,
        feed,
        crate::load::LoadOptions::default(),
        secrets,
    );
    let both = async { tokio::join!(extracting, loading) };
    let (extracted, loaded) = tokio::select! {
        both = both => both,
        // The load's transaction is dropped uncommitted: the database rolls it back.
        signal = crate::util::interrupted() => {
            let e = RunError::Interrupted { signal, removed: !opts.keep_failed };
            remove_failed(&journal, opts, &store, secrets).await;
            remove_markers(&store, p.name(), &run_id, secrets).await;
            return Err(e);
        }
    };
    if extracted.is_err() {
        // Only now: the load may still have been reading what was staged.
        remove_failed(&journal, opts, &store, secrets).await;
    }
    // An extraction error explains a load that stopped because of it.
    let extracted = extracted?;
    Ok((extracted, loaded?))
}
