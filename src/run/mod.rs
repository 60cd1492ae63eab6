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
use extract::{after_failure, begin, stopping, Announce, Extraction};
mod backfill;
mod dry;
mod gc;
mod load;
mod preflight;
mod replay;
mod resume;
mod state;

pub(crate) use backfill::Backfill;
pub(crate) use dry::{extract_dry_run, run_dry};
pub(crate) use extract::{extract, ExtractOptions, ExtractReport};
pub(crate) use gc::gc;
pub(crate) use load::{load, object_totals, RunSelector};
pub(crate) use preflight::{check, prepare};
pub(crate) use replay::{default_dir, record, test, Failure as TestFailure, RecordOptions, Tested};
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
    #[error("{source}. The {loaded} date window round(s) before it were loaded and committed (runs {runs}); the next run resumes {resumes}")]
    WindowFailed {
        loaded: usize,
        runs: String,
        resumes: String,
        source: Box<RunError>,
    },
    #[error("unknown resource `{name}`; this spec has: {known}")]
    UnknownResource { name: String, known: String },
    #[error(transparent)]
    Load(#[from] crate::load::LoadError),
    #[error(transparent)]
    Env(#[from] crate::resolve::EnvError),
    #[error("preflight check of the {check} failed, so nothing was read from the API: {detail}")]
    Preflight { check: &'static str, detail: String },
    #[error("stopped by {} at a page boundary: run `{run_id}` is checkpointed, {records} records staged in {parts} parts; `sluice extract --resume {run_id}` (or `sluice run --resume {run_id}`) goes on from there", if *signal == 0 { "the invocation deadline" } else { crate::util::signal_name(*signal) })]
    Suspended {
        run_id: String,
        /// The signal, or 0 for the invocation deadline.
        signal: i32,
        records: u64,
        parts: usize,
    },
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

/// Extract, then load the run just staged. A pipeline with stepped date windows runs in
/// rounds: each round reads the next window of every stepped resource (the other
/// resources in the first round only) and loads and commits it, so that a failure leaves
/// the windows before it loaded and the state where the next run resumes.
pub(crate) async fn run(
    p: &Pipeline,
    opts: &ExtractOptions,
    secrets: &Secrets,
) -> Result<(ExtractReport, crate::load::LoadReport), RunError> {
    if opts.resume.is_some() {
        return run_resumed(p, opts, secrets).await;
    }
    let stepped = |r: &Resource| r.incremental.as_ref().is_some_and(|i| i.step.is_some());
    if !select(p, &opts.resources)?.into_iter().any(stepped) {
        return run_once(p, opts, secrets).await;
    }
    let mut opts = ExtractOptions {
        now: Some(opts.now.unwrap_or_else(Utc::now)),
        one_window: true,
        ..opts.clone()
    };
    // The rounds so far: their run ids, where each stepped resource got, and the reports
    // added up into the first round's.
    let (mut runs, mut resumes) = (Vec::<String>::new(), String::new());
    let mut merged: Option<(ExtractReport, crate::load::LoadReport)> = None;
    loop {
        let (extracted, loaded) = match run_once(p, &opts, secrets).await {
            Ok(done) => done,
            Err(e) if runs.is_empty() => return Err(e),
            Err(e) => {
                return Err(RunError::WindowFailed {
                    loaded: runs.len(),
                    runs: runs.join(", "),
                    resumes,
                    source: Box::new(e),
                })
            }
        };
        let states: Vec<(&str, &str, bool)> = extracted
            .manifest
            .resources
            .iter()
            .filter_map(|m| {
                let inc = m.incremental.as_ref()?;
                Some((m.name.as_str(), inc.highest.as_deref()?, inc.windows_left > 0))
            })
            .collect();
        resumes = states
            .iter()
            .map(|(name, at, _)| format!("`{name}` at {at}"))
            .collect::<Vec<_>>()
            .join(", ");
        opts.starts.clear();
        for (name, state, _) in states.iter().filter(|(_, _, left)| *left) {
            let inc = p
                .resource(name)
                .and_then(|r| r.incremental.as_ref())
                .expect("a stepped resource");
            if let Ok(pos) = inc.format.read(&serde_json::Value::String(state.to_string())) {
                opts.starts.insert(name.to_string(), pos);
            }
        }
        runs.push(extracted.run.run_id.clone());
        tracing::info!(
            round = runs.len(),
            run_id = %extracted.run.run_id,
            resources_with_windows_left = opts.starts.len(),
            "date windows loaded and committed"
        );
        // The stepped resources with windows left, and the children of their records.
        let names: Vec<String> = opts.starts.keys().cloned().collect();
        merged = Some(match merged {
            None => (extracted, loaded),
            Some((first, mut total)) => {
                add_up(&mut total, loaded);
                (first, total)
            }
        });
        if names.is_empty() {
            break;
        }
        opts.resources = descendants(p, &names);
    }
    let (extracted, mut loaded) = merged.expect("a round ran");
    if let [first, .., last] = runs.as_slice() {
        loaded.run_id = format!("{first} … {last} ({} runs, one per date window)", runs.len());
    }
    Ok((extracted, loaded))
}

/// `run --resume`: the checkpointed run's extraction finished, then loaded; then, when
/// date windows are left, the next rounds as `run` reads them.
async fn run_resumed(
    p: &Pipeline,
    opts: &ExtractOptions,
    secrets: &Secrets,
) -> Result<(ExtractReport, crate::load::LoadReport), RunError> {
    let extracted = extract::extract(p, opts, secrets).await?;
    let which = RunSelector::Id(extracted.run.run_id.clone());
    let mut loaded = load(p, &which, crate::load::LoadOptions::default(), secrets).await?;
    let left = extracted
        .manifest
        .resources
        .iter()
        .any(|r| r.incremental.as_ref().is_some_and(|i| i.windows_left > 0));
    if left {
        let fresh = ExtractOptions {
            resume: None,
            ..opts.clone()
        };
        let (_, more) = Box::pin(run(p, &fresh, secrets)).await?;
        add_up(&mut loaded, more);
    }
    Ok((extracted, loaded))
}

/// `names` and every resource whose `for_each` chain leads to one of them, in spec order.
fn descendants(p: &Pipeline, names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = names.to_vec();
    loop {
        let before = out.len();
        for r in p.resources() {
            let child = r.for_each.as_ref().is_some_and(|f| out.contains(&f.parent));
            if child && !out.contains(&r.name) {
                out.push(r.name.clone());
            }
        }
        if out.len() == before {
            break;
        }
    }
    out.sort_by_key(|n| p.resources().iter().position(|r| &r.name == n));
    out
}

/// Add one more round's load to `total`, table by table.
fn add_up(total: &mut crate::load::LoadReport, more: crate::load::LoadReport) {
    for t in more.tables {
        match total.tables.iter_mut().find(|x| x.table == t.table) {
            Some(x) => {
                x.records += t.records;
                x.rows += t.rows;
                x.inserted += t.inserted;
                x.updated += t.updated;
                x.deleted += t.deleted;
                x.rejected += t.rejected;
                x.ignored += t.ignored;
                x.filtered += t.filtered;
                x.seconds += t.seconds;
            }
            None => total.tables.push(t),
        }
    }
    total.skipped.extend(more.skipped);
}

/// Extract, then load the run just staged: one round.
async fn run_once(
    p: &Pipeline,
    opts: &ExtractOptions,
    secrets: &Secrets,
) -> Result<(ExtractReport, crate::load::LoadReport), RunError> {
    // The load starts on each staged part as soon as it is stored, while the extraction
    // goes on; it commits only once the extraction has finished (manifest written).
    let resources = select(p, &opts.resources)?;
    let resolved = prepare(p, Needs::RUN, secrets).await?;
    let store = Store::open(p.staging(), resolved.staging()).await?;
    let journal = crate::stage::writer::Journal::default();
    let (run, _, checkpointer) = begin(p, opts, &store, &journal).await?;
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
        ignored: Vec::new(),
        extraction: Some(done_rx),
        limited: opts.limit.is_some(),
    };
    let extracting = async {
        let extraction = Extraction {
            p,
            resolved: &resolved,
            store: &store,
            opts,
            secrets,
            journal: &journal,
            checkpoint: checkpointer.as_ref(),
            resumed: None,
        };
        let result = extraction.run(run, &mut announce).await;
        drop(announce);
        let outcome = match &result {
            Ok(report) => Ok(crate::load::Extracted {
                highest: report.manifest.highest(),
                ignored: report.manifest.ignored(),
            }),
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
    // On a signal the extraction stops at a page boundary and checkpoints; the load,
    // told the extraction failed, rolls back. (Dropped, its transaction is rolled back.)
    let both = stopping(async { Ok(tokio::join!(extracting, loading)) }, opts).await;
    let c = checkpointer.as_ref();
    let (extracted, loaded) = match both {
        Ok(both) => both,
        Err(e) => {
            let e = Err(e);
            after_failure(&e, &journal, opts, &store, c, (p, &run_id), secrets).await;
            return e;
        }
    };
    // Only now: the load may still have been reading what was staged.
    after_failure(&extracted, &journal, opts, &store, c, (p, &run_id), secrets).await;
    // An extraction error explains a load that stopped because of it.
    let extracted = extracted?;
    Ok((extracted, loaded?))
}
