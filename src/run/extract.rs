//! `extract`: the selected resources staged in parallel (a `for_each` child after its
//! parent), each as parts of gzip JSON Lines, then verified and the manifest written; a
//! marker keeps `gc` away while it runs, and a failed run's parts are removed.

use super::preflight::prepare;
use super::resume::Progress;
use super::{parents_first, select, RunError, RunInfo};
use crate::extract::session::Session;
use crate::extract::{ExtractError, ParentRecords, RecordSink, Records};
use crate::extract::{Extracted, Place};
use crate::resolve::{Needs, Resolved};
use crate::spec::pipeline::{Pipeline, Resource};
use crate::stage::checkpoint::{Checkpoint, Checkpointer, ResourceCheckpoint};
use crate::stage::manifest::{Manifest, ObjectManifest, ResourceManifest};
use crate::stage::writer::PartWriter;
use crate::stage::{manifest_key, Backend, StageError, Store};
use crate::util::Secrets;
use chrono::{SecondsFormat, Utc};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub(crate) struct ExtractOptions {
    /// Only these resources (all when empty).
    pub resources: Vec<String>,
    /// Stop each resource after this many records.
    pub limit: Option<u64>,
    /// Leave what a failed run staged in place (for a post-mortem) instead of removing it.
    pub keep_failed: bool,
    /// Incremental resources start at `initial` instead of their saved state.
    pub full_refresh: bool,
    /// Start no request past this (a Lambda invocation's deadline, less a reserve).
    pub deadline: Option<crate::extract::http::Deadline>,
    /// The run's time for `{now}` and open-ended date windows (default: when it starts).
    pub now: Option<chrono::DateTime<Utc>>,
    /// Where these incremental resources start, instead of their saved state (the next
    /// window of a `run` that commits window by window).
    pub starts: HashMap<String, crate::incremental::Position>,
    /// Where these incremental resources end (inclusive), instead of their `end` (a
    /// backfill's window).
    pub ends: HashMap<String, crate::incremental::Position>,
    /// Read only the first date window of each stepped resource.
    pub one_window: bool,
    /// The run to be, named beforehand (a backfill's window); else a new one.
    pub run: Option<RunInfo>,
    /// Record the exchanges (`sluice record`), or answer them from a recording (`sluice test`).
    pub tap: Option<std::sync::Arc<crate::replay::Tap>>,
    /// Go on with a checkpointed run: this one, or (`Some(None)`) the newest.
    pub resume: Option<Option<String>>,
    /// Set by a signal: the run stops at the next page boundary.
    pub stop: crate::extract::http::Stop,
}

impl ExtractOptions {
    /// Whether the run keeps a checkpoint to go on from: not one cut short by `--limit`,
    /// nor a recording or its test.
    pub(crate) fn checkpointed(&self) -> bool {
        self.limit.is_none() && self.tap.is_none()
    }
}

/// How long a run asked to stop has to store what it read and its checkpoint.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// The run to extract: a new one, or the checkpointed one `--resume` names (its parts
/// checked, those it does not list removed), with its checkpointer.
pub(super) async fn begin<'s>(
    p: &Pipeline,
    opts: &ExtractOptions,
    store: &'s Store,
    journal: &crate::stage::writer::Journal,
) -> Result<(RunInfo, Option<Checkpoint>, Option<Checkpointer<'s, Store>>), RunError> {
    let Some(which) = &opts.resume else {
        let run = opts.run.clone().unwrap_or_default();
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let started_at = match &opts.run {
            Some(named) => named.run_time.to_rfc3339_opts(SecondsFormat::Millis, true),
            None => now.clone(),
        };
        let c = Checkpoint {
            run_id: run.run_id.clone(),
            pipeline: p.name().to_string(),
            spec_hash: p.spec_hash().to_string(),
            sluice_version: env!("CARGO_PKG_VERSION").to_string(),
            run_time: run.run_time.to_rfc3339_opts(SecondsFormat::Micros, true),
            now: run.run_time.to_rfc3339_opts(SecondsFormat::Micros, true),
            started_at,
            saved_at: now,
            selected: opts.resources.clone(),
            starts: Default::default(),
            ends: Default::default(),
            one_window: opts.one_window,
            resources: Default::default(),
        };
        let checkpointer = opts.checkpointed().then(|| Checkpointer::new(store, c, 0));
        return Ok((run, None, checkpointer));
    };
    if !opts.checkpointed() {
        return Err(StageError::Config("`--resume` goes on with a whole run: it cannot take `--limit`".into()).into());
    }
    let (c, save) = super::resume::checkpoint_to_resume(p, store, which.as_deref()).await?;
    super::resume::prepare_resume(p, store, &c, journal).await?;
    let run = super::resume::run_of(&c)?;
    Ok((run, Some(c.clone()), Some(Checkpointer::new(store, c, save))))
}

/// `work`, or, once a signal came, the run stopping at its next page boundary (within
/// [`STOP_GRACE`]); a run without a checkpoint stops at once.
pub(super) async fn stopping<T>(
    work: impl std::future::Future<Output = Result<T, RunError>>,
    opts: &ExtractOptions,
) -> Result<T, RunError> {
    tokio::pin!(work);
    let signal = tokio::select! {
        r = &mut work => return r,
        signal = crate::util::interrupted() => signal,
    };
    let interrupted = RunError::Interrupted {
        signal,
        removed: !opts.keep_failed,
    };
    if !opts.checkpointed() {
        return Err(interrupted);
    }
    tracing::warn!(
        "{}: storing what was read and the checkpoint, then stopping",
        crate::util::signal_name(signal)
    );
    opts.stop.set(signal);
    tokio::time::timeout(STOP_GRACE, work).await.unwrap_or(Err(interrupted))
}

/// After a run that did not finish: a failed one's parts and checkpoint removed (unless
/// `--keep-failed`); a suspended one's kept, to go on from.
pub(super) async fn after_failure<T>(
    result: &Result<T, RunError>,
    journal: &crate::stage::writer::Journal,
    opts: &ExtractOptions,
    store: &Store,
    checkpointer: Option<&Checkpointer<'_, Store>>,
    (p, run_id): (&Pipeline, &str),
    secrets: &Secrets,
) {
    match result {
        Ok(_) | Err(RunError::Suspended { .. }) => return,
        Err(RunError::Interrupted { .. }) => remove_markers(store, p.name(), run_id, secrets).await,
        Err(_) => {}
    }
    remove_failed(journal, opts, store, secrets).await;
    // A failed run does not go on: its checkpoint goes, whatever `--keep-failed` keeps.
    if let Some(c) = checkpointer {
        if let Err(e) = c.remove().await {
            tracing::warn!(
                "cannot remove the failed run's checkpoint: {}",
                secrets.mask(&e.to_string())
            );
        }
    }
}

/// What an extraction staged.
#[derive(Debug)]
pub(crate) struct ExtractReport {
    pub run: RunInfo,
    pub location: String,
    pub manifest_key: String,
    pub manifest: Manifest,
}

/// The records of a parent resource's staged objects, one at a time.
pub(super) fn staged_records<'a>(store: &'a Store, objects: Vec<ObjectManifest>, parent: &'a str) -> ParentRecords<'a> {
    use futures_util::stream::{self, StreamExt};
    stream::iter(objects)
        .then(move |o| async move {
            let opened = match store.open(&o.key).await {
                Ok(local) => crate::stage::StagedRecords::open(local).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            (o.key, opened)
        })
        .flat_map(move |(key, opened)| {
            let failed = move |detail: String| {
                ExtractError::Config(format!(
                    "the records of `{parent}` cannot be read from `{key}`: {detail}"
                ))
            };
            match opened {
                Ok(records) => stream::iter(records.map(move |r| r.map_err(&failed))).boxed(),
                Err(e) => stream::once(std::future::ready(Err(failed(e)))).boxed(),
            }
        })
        .boxed()
}

pub(super) struct StageSink<'a> {
    writer: PartWriter<'a, Store>,
    resource: String,
    limit: Option<u64>,
    written: u64,
    bar: crate::progress::ExtractBar,
    /// For an incremental resource: the highest cursor staged so far.
    highest: Option<Highest>,
    /// Records already staged before a checkpoint, dropped.
    skip: u64,
    /// Where it has got, and the checkpoint that follows each stored part.
    progress: Progress,
    checkpoint: Option<&'a Checkpointer<'a, Store>>,
    secrets: &'a Secrets,
}

impl StageSink<'_> {
    /// Save where the resource has got (every record staged so far is stored).
    async fn save(&self) -> Result<(), StageError> {
        let Some(c) = self.checkpoint else { return Ok(()) };
        let highest = self.highest.as_ref().and_then(|h| Some(h.format.text(h.max?)));
        let resource = ResourceCheckpoint {
            done: None,
            objects: self.writer.stored().to_vec(),
            at: Some(self.progress.at(highest, self.secrets)),
        };
        c.set(&self.resource, resource).await
    }
}

impl RecordSink for StageSink<'_> {
    fn total(&mut self, records: u64) {
        self.bar.total(records);
    }

    fn at(&mut self, place: Place<'_>) {
        self.progress.place(place);
    }

    async fn page(&mut self, records: &Records<'_>) -> Result<bool, ExtractError> {
        let (before, mut bytes) = (self.written, 0);
        let mut more = true;
        let stage_error = |resource: &str, source| ExtractError::Stage {
            resource: resource.to_string(),
            source,
        };
        for i in 0..records.len() {
            if self.limit.is_some_and(|l| self.written >= l) {
                more = false;
                break;
            }
            if self.skip > 0 {
                self.skip -= 1;
                self.progress.staged();
                continue;
            }
            let parts = self.writer.stored().len();
            let written = match records {
                Records::Raw(raw) => {
                    bytes += raw[i].get().len() as u64;
                    self.writer.write_raw(raw[i].get()).await
                }
                Records::Values(values) => self.writer.write(&values[i]).await,
            };
            written.map_err(|source| ExtractError::Stage {
                resource: self.resource.clone(),
                source,
            })?;
            if let Some(highest) = &mut self.highest {
                let seen = match records {
                    Records::Raw(raw) => serde_json::from_str(raw[i].get())
                        .map_err(|e| e.to_string())
                        .and_then(|v| highest.see(&v)),
                    Records::Values(values) => highest.see(&values[i]),
                };
                seen.map_err(|e| ExtractError::Config(format!("resource `{}`: {e}", self.resource)))?;
            }
            self.written += 1;
            self.progress.staged();
            if self.writer.stored().len() > parts {
                self.save().await.map_err(|e| stage_error(&self.resource, e))?;
            }
        }
        self.bar.page(self.written - before, bytes);
        Ok(more && self.limit.is_none_or(|l| self.written < l))
    }
}

/// The highest cursor of the records of one resource, kept while they are staged.
#[derive(Debug, Clone)]
pub(crate) struct Highest {
    /// How the cursor reads, and the format of the state.
    read: crate::spec::pipeline::CursorFormat,
    pub(super) format: crate::spec::pipeline::CursorFormat,
    cursor: crate::spec::jsonpath::JsonPath,
    pub max: Option<crate::incremental::Position>,
}

impl Highest {
    /// For an incremental resource with a cursor that is not read as date windows.
    pub(crate) fn new(inc: &crate::spec::pipeline::Incremental) -> Option<Self> {
        Some(Highest {
            read: inc.cursor_format.clone(),
            format: inc.format.clone(),
            cursor: inc.cursor.clone().filter(|_| !inc.windowed)?,
            max: None,
        })
    }

    /// Take one record's cursor into account; a record without a readable cursor is an
    /// error, since the next run could not know where to start.
    pub(crate) fn see(&mut self, record: &Value) -> Result<(), String> {
        let v = self.cursor.first(record).ok_or_else(|| {
            format!(
                "a record has no incremental cursor `{}`: {}",
                self.cursor.as_str(),
                crate::util::clip(&record.to_string(), 120)
            )
        })?;
        let pos = self
            .read
            .read(v)
            .map_err(|e| format!("incremental cursor `{}`: {e}", self.cursor.as_str()))?;
        let pos = self.format.convert(pos, &self.read).unwrap_or(pos);
        self.max = Some(self.max.map_or(pos, |m| m.max(pos)));
        Ok(())
    }
}

/// Extract the selected resources of `p` into its staging location and write the
/// manifest. A run with any failed resource gets no manifest.
pub(crate) async fn extract(p: &Pipeline, opts: &ExtractOptions, secrets: &Secrets) -> Result<ExtractReport, RunError> {
    let needs = Needs {
        // The incremental state is kept in the warehouse.
        warehouse: select(p, &opts.resources)?.iter().any(|r| r.incremental.is_some()),
        ..Needs::EXTRACT
    };
    let resolved = prepare(p, needs, secrets).await?;
    let store = Store::open(p.staging(), resolved.staging()).await?;
    let journal = crate::stage::writer::Journal::default();
    let (run, resumed, checkpointer) = begin(p, opts, &store, &journal).await?;
    let run_id = run.run_id.clone();
    let mut announce = HashMap::new();
    let extraction = Extraction {
        p,
        resolved: &resolved,
        store: &store,
        opts,
        secrets,
        journal: &journal,
        checkpoint: checkpointer.as_ref(),
        resumed: resumed.as_ref(),
    };
    let result = stopping(extraction.run(run, &mut announce), opts).await;
    let c = checkpointer.as_ref();
    after_failure(&result, &journal, opts, &store, c, (p, &run_id), secrets).await;
    result
}

/// The in-progress markers of a run stopped before it could remove them itself.
pub(super) async fn remove_markers(store: &Store, pipeline: &str, run_id: &str, secrets: &Secrets) {
    let Ok(markers) = crate::stage::markers(store, pipeline).await else {
        return;
    };
    for key in markers.get(run_id).map(|(keys, _)| keys.as_slice()).unwrap_or_default() {
        if let Err(e) = store.delete(key).await {
            tracing::warn!("cannot remove `{key}`: {}", secrets.mask(&e.to_string()));
        }
    }
}

/// Senders announcing each resource's staged objects as they are stored.
pub(super) type Announce = HashMap<String, tokio::sync::mpsc::UnboundedSender<ObjectManifest>>;

/// After a failed extraction, remove what it staged, unless asked to keep it.
pub(super) async fn remove_failed(
    journal: &crate::stage::writer::Journal,
    opts: &ExtractOptions,
    store: &Store,
    secrets: &Secrets,
) {
    let keys = std::mem::take(&mut *journal.lock().unwrap_or_else(|e| e.into_inner()));
    if opts.keep_failed || keys.is_empty() {
        return;
    }
    let mut removed = 0;
    for key in &keys {
        match store.delete(key).await {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(
                "cannot remove `{key}` of the failed run: {}",
                secrets.mask(&e.to_string())
            ),
        }
    }
    tracing::info!(removed, "removed what the failed run staged (--keep-failed keeps it)");
}

/// What one extraction works with: the spec, its resolved values, where it stages, its
/// options, and the journal of what it staged (removed if it fails).
pub(super) struct Extraction<'a> {
    pub p: &'a Pipeline,
    pub resolved: &'a Resolved,
    pub store: &'a Store,
    pub opts: &'a ExtractOptions,
    pub secrets: &'a Secrets,
    pub journal: &'a crate::stage::writer::Journal,
    /// Saves the run's checkpoint (none for a run that cannot go on: `--limit`, a
    /// recording).
    pub checkpoint: Option<&'a Checkpointer<'a, Store>>,
    /// The checkpoint this run goes on from.
    pub resumed: Option<&'a Checkpoint>,
}

/// Each resource is one shared job, so that a child can wait for its parent's.
type Job<'a> = futures_util::future::Shared<
    futures_util::future::BoxFuture<'a, Result<ResourceManifest, std::sync::Arc<ExtractError>>>,
>;

impl Extraction<'_> {
    /// Extract as run `run`: stage every selected resource, then the manifest. Staged
    /// objects are announced through `announce` and noted in the journal.
    pub(super) async fn run(&self, run: RunInfo, announce: &mut Announce) -> Result<ExtractReport, RunError> {
        let (p, opts, secrets) = (self.p, self.opts, self.secrets);
        let mut http = Session::new(p, self.resolved, secrets)?;
        http.client = http
            .client
            .with_deadline(opts.deadline)
            .with_tap(opts.tap.clone())
            .with_stop(opts.stop.clone());
        let resources = select(p, self.resumed.map_or(&opts.resources, |c| &c.selected))?;
        if let Some(c) = self.resumed {
            http.starts = super::resume::starts_of(p, &c.starts)?;
            http.ends = super::resume::starts_of(p, &c.ends)?;
            http.resume = c
                .resources
                .iter()
                .filter_map(|(name, r)| Some((name.clone(), r.at.clone().filter(|_| r.done.is_none())?)))
                .collect();
        } else if resources.iter().any(|r| r.incremental.is_some()) {
            let saved = match opts.full_refresh {
                true => Default::default(),
                false => crate::load::state::positions(p, self.resolved.warehouse_url(), secrets).await?,
            };
            http.starts = crate::extract::session::incremental_starts(&resources, &saved)?;
            http.starts.extend(opts.starts.iter().map(|(k, v)| (k.clone(), *v)));
            http.ends = opts.ends.clone();
        }
        http.now = match self.resumed {
            Some(c) => super::resume::now_of(c)?,
            None => opts.now.unwrap_or(run.run_time),
        };
        if let (Some(c), None) = (self.checkpoint, self.resumed) {
            let (starts, ends) = (&http.starts, &http.ends);
            c.start(
                super::resume::starts_text(p, starts),
                super::resume::starts_text(p, ends),
                http.now,
            )
            .await;
        }
        http.one_window = opts.one_window || self.resumed.is_some_and(|c| c.one_window);
        let started = Utc::now();
        tracing::info!(pipeline = p.name(), run_id = %run.run_id, staging = %self.store.describe(), "extract started");
        // Inside the deadline's reserve already: no resource is begun (nor anything staged).
        if let Some(d) = opts.deadline.filter(|d| d.too_close().is_some()) {
            let causes = resources.iter().map(|r| d.stopped(&r.name, 1).to_string()).collect();
            return Err(all_stopped_by_deadline(&resources, causes));
        }
        // Marks the run as running, so that `gc` leaves what it stages alone.
        let mut marker = crate::stage::Marker::put(self.store, p.name(), &run.run_id).await?;
        let mut jobs: HashMap<&str, Job> = HashMap::new();
        for r in parents_first(&resources) {
            use futures_util::FutureExt;
            let parent = r
                .for_each
                .as_ref()
                .map(|f| (f.parent.as_str(), jobs[f.parent.as_str()].clone()));
            let job = self.stage_resource(&run, &http, r, parent, announce.remove(&r.name));
            jobs.insert(&r.name, job.map(|m| m.map_err(std::sync::Arc::new)).boxed().shared());
        }
        let jobs: Vec<Job> = resources.iter().map(|r| jobs[r.name.as_str()].clone()).collect();
        let work = renewing(&mut marker, futures_util::future::join_all(jobs), secrets);
        // Requests stop at the deadline's reserve (`Client::bounded`); this bounds the rest
        // (an S3 upload, a parent's part read back) at half the reserve, so that the other
        // half is left to remove what was staged.
        let half_reserve = opts.deadline.map(|d| d.reserve / 2).unwrap_or_default();
        let cutoff = opts.deadline.and_then(|d| d.at.checked_sub(half_reserve));
        let results = match cutoff {
            None => Ok(work.await),
            Some(at) => tokio::time::timeout_at(at.into(), work).await,
        };
        let Ok(results) = results else {
            remove_marker(marker, secrets).await;
            // What the last checkpoint says was stored is where the next run goes on.
            if let Some(c) = self.checkpoint {
                return Err(suspended(&c.current().await, 0));
            }
            let cause = format!(
                "staging did not finish {} ms before the invocation deadline",
                half_reserve.as_millis()
            );
            return Err(all_stopped_by_deadline(&resources, vec![cause]));
        };
        if let Some(signal) = self.suspended(&results) {
            remove_marker(marker, secrets).await;
            let c = self.checkpoint.expect("only a checkpointed run is suspended");
            return Err(suspended(&c.current().await, signal));
        }
        let manifests = match self.staged(&resources, results).await {
            Ok(m) => m,
            Err(e) => {
                remove_marker(marker, secrets).await;
                return Err(e);
            }
        };
        let manifest = Manifest {
            run_id: run.run_id.clone(),
            pipeline: p.name().to_string(),
            spec_hash: p.spec_hash().to_string(),
            sluice_version: env!("CARGO_PKG_VERSION").to_string(),
            run_time: Some(run.run_time.to_rfc3339_opts(SecondsFormat::Micros, true)),
            // When its records began to be read: a resumed run's first start; the runs of
            // a backfill all at once, when they were named (so that loading them in window
            // order never takes one for older than the next).
            started_at: match (self.resumed, &opts.run) {
                (Some(c), _) => c.started_at.clone(),
                (None, Some(named)) => named.run_time.to_rfc3339_opts(SecondsFormat::Millis, true),
                (None, None) => started.to_rfc3339_opts(SecondsFormat::Millis, true),
            },
            finished_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            limited: opts.limit.is_some(),
            resources: manifests,
        };
        let key = manifest_key(p.name(), &run.run_id);
        let bytes = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        self.store.put_bytes(&key, bytes).await?;
        if let Some(c) = self.checkpoint {
            if let Err(e) = c.remove().await {
                tracing::warn!("cannot remove the run's checkpoint: {}", secrets.mask(&e.to_string()));
            }
        }
        remove_marker(marker, secrets).await;
        tracing::info!(run_id = %run.run_id, manifest = %key, "extract finished");
        Ok(ExtractReport {
            run: run.clone(),
            location: self.store.describe(),
            manifest_key: key,
            manifest,
        })
    }

    /// Stage resource `r` (after its parent's job, for a `for_each` child): its parts, and
    /// the resource's manifest.
    async fn stage_resource<'j>(
        &'j self,
        run: &'j RunInfo,
        http: &'j Session,
        r: &'j Resource,
        parent: Option<(&'j str, Job<'j>)>,
        to_load: Option<tokio::sync::mpsc::UnboundedSender<ObjectManifest>>,
    ) -> Result<ResourceManifest, ExtractError> {
        let (p, store) = (self.p, self.store);
        let parents = match parent {
            None => None,
            Some((name, job)) => {
                let staged = job.await.map_err(|e| match e.suspension() {
                    // Stopped before it began: the next run begins it.
                    Some(signal) => ExtractError::Stopped {
                        resource: r.name.clone(),
                        page: 0,
                        signal,
                    },
                    None => ExtractError::ParentFailed {
                        resource: r.name.clone(),
                        parent: name.to_string(),
                    },
                })?;
                Some(staged_records(store, staged.objects, name))
            }
        };
        let resumed = self.resumed.and_then(|c| c.resources.get(&r.name));
        if let Some(done) = resumed.and_then(|c| c.done.clone()) {
            if let Some(to) = to_load {
                for o in &done.objects {
                    let _ = to.send(o.clone());
                }
            }
            return Ok(done);
        }
        let at = resumed.and_then(|c| c.at.as_ref());
        let t0 = Instant::now();
        let key = p.staging().key.clone();
        let (pipeline, name, run_id, run_time) =
            (p.name().to_string(), r.name.clone(), run.run_id.clone(), run.run_time);
        let writer = PartWriter::new(store, p.staging().part_size, move |part| {
            key.render(&pipeline, &name, &run_id, run_time, part)
        })
        .after(resumed.map(|c| c.objects.clone()).unwrap_or_default())
        .notify(to_load.clone())
        .journal(self.journal.clone());
        if let Some(to) = &to_load {
            for o in writer.stored() {
                let _ = to.send(o.clone());
            }
        }
        let mut highest = r.incremental.as_ref().and_then(Highest::new);
        if let (Some(h), Some(text)) = (&mut highest, at.and_then(|a| a.highest.as_ref())) {
            h.max = h.format.read(&Value::String(text.clone())).ok();
        }
        let mut sink = StageSink {
            writer,
            resource: r.name.clone(),
            limit: self.opts.limit,
            written: 0,
            bar: crate::progress::ExtractBar::new(&r.name),
            highest,
            skip: at.filter(|a| a.parents.is_none()).map_or(0, |a| a.skip),
            progress: Progress::from(
                at,
                r.for_each.is_some() || self.resolved.source().partitions.contains_key(&r.name),
            ),
            checkpoint: self.checkpoint,
            secrets: self.secrets,
        };
        let stats = match http.extract(p, r, parents, &mut sink).await {
            Ok(stats) => stats,
            // Stopped at a page boundary: what was read is stored, and the checkpoint says
            // where to go on.
            Err(e) if e.suspension().is_some() && self.checkpoint.is_some() => {
                let stored = sink.writer.seal().await;
                stored.and(sink.save().await).map_err(|source| ExtractError::Stage {
                    resource: r.name.clone(),
                    source,
                })?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let mut base = sink.progress.base();
        base.add(&stats);
        let stats = Extracted {
            windows: stats.windows,
            ..base
        };
        let objects = sink.writer.finish().await.map_err(|source| ExtractError::Stage {
            resource: r.name.clone(),
            source,
        })?;
        let records: u64 = objects.iter().map(|o| o.records).sum();
        let incremental = r
            .incremental
            .as_ref()
            .zip(http.starts.get(&r.name))
            .map(|(inc, start)| {
                // Read as date windows, the state is where the last one read ends.
                let highest = match stats.windows {
                    Some(w) => w.state,
                    None => sink.highest.as_ref().and_then(|h| h.max),
                };
                crate::stage::manifest::IncrementalRun {
                    start: inc.format.text(*start),
                    highest: highest.map(|m| inc.format.text(m)),
                    windows: stats.windows.map(|w| w.done),
                    windows_left: stats.windows.map_or(0, |w| w.left),
                }
            });
        tracing::info!(
            resource = %r.name,
            pages = stats.pages,
            records,
            reported_total = stats.total,
            skipped = stats.skipped,
            ignored = stats.ignored,
            start = incremental.as_ref().map(|i| i.start.as_str()),
            highest = incremental.as_ref().and_then(|i| i.highest.as_deref()),
            seconds = format!("{:.2}", t0.elapsed().as_secs_f64()),
            "resource extracted"
        );
        let manifest = ResourceManifest {
            name: r.name.clone(),
            pages: stats.pages,
            records,
            reported_total: stats.total,
            skipped: stats.skipped,
            ignored: stats.ignored,
            incremental,
            objects,
        };
        if let Some(c) = self.checkpoint {
            let done = ResourceCheckpoint {
                done: Some(manifest.clone()),
                ..Default::default()
            };
            c.set(&r.name, done).await.map_err(|source| ExtractError::Stage {
                resource: r.name.clone(),
                source,
            })?;
        }
        Ok(manifest)
    }

    /// When some resource stopped at a page boundary and none failed otherwise: the
    /// signal that stopped it (0 for the invocation deadline).
    fn suspended(&self, results: &[Result<ResourceManifest, std::sync::Arc<ExtractError>>]) -> Option<i32> {
        self.checkpoint?;
        let mut signal = None;
        for r in results {
            match r.as_ref().map_err(|e| e.suspension()) {
                Ok(_) => {}
                Err(Some(s)) => signal = Some(signal.unwrap_or(s).max(s)),
                Err(None) => return None,
            }
        }
        signal
    }

    /// The resources' manifests when every one was staged whole and every part is still
    /// as it was staged: a part removed or changed since (a `gc`, a person) would make a
    /// manifest that no load can take, so the run fails now instead.
    async fn staged(
        &self,
        resources: &[&Resource],
        results: Vec<Result<ResourceManifest, std::sync::Arc<ExtractError>>>,
    ) -> Result<Vec<ResourceManifest>, RunError> {
        let mut manifests = Vec::new();
        let (mut failed, mut causes, mut deadline) = (Vec::new(), Vec::new(), false);
        for (r, result) in resources.iter().zip(results) {
            match result {
                Ok(m) => manifests.push(m),
                Err(e) => {
                    deadline |= matches!(*e, ExtractError::Deadline { .. });
                    let cause = self.secrets.mask(&e.to_string());
                    if crate::util::parts_of_errors_logged() {
                        tracing::error!("{cause}");
                    }
                    failed.push(format!("`{}`", r.name));
                    causes.push(cause);
                }
            }
        }
        if !failed.is_empty() {
            return Err(RunError::ResourcesFailed {
                failed,
                total: resources.len(),
                causes,
                deadline,
            });
        }
        for r in &manifests {
            for o in &r.objects {
                if let Err(detail) = self.store.verify(o).await {
                    return Err(StageError::Changed {
                        key: o.key.clone(),
                        detail,
                    }
                    .into());
                }
            }
        }
        Ok(manifests)
    }
}

/// The run stopped at a page boundary and `c` says where it goes on.
fn suspended(c: &Checkpoint, signal: i32) -> RunError {
    let (records, parts) = c.staged();
    RunError::Suspended {
        run_id: c.run_id.clone(),
        signal,
        records,
        parts,
    }
}

/// Every resource of the run failed: the invocation deadline stopped them, as `causes` say.
pub(super) fn all_stopped_by_deadline(resources: &[&Resource], causes: Vec<String>) -> RunError {
    RunError::ResourcesFailed {
        failed: resources.iter().map(|r| format!("`{}`", r.name)).collect(),
        total: resources.len(),
        causes,
        deadline: true,
    }
}

/// Await `work`, renewing the run's marker every [`crate::stage::MARKER_REFRESH`].
pub(super) async fn renewing<T>(
    marker: &mut crate::stage::Marker<'_, Store>,
    work: impl std::future::Future<Output = T>,
    secrets: &Secrets,
) -> T {
    tokio::pin!(work);
    let mut tick = tokio::time::interval(crate::stage::MARKER_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                if let Err(e) = marker.renew().await {
                    tracing::warn!("cannot renew the run's in-progress marker: {}", secrets.mask(&e.to_string()));
                }
            }
        }
    }
}

pub(super) async fn remove_marker(marker: crate::stage::Marker<'_, Store>, secrets: &Secrets) {
    if let Err(e) = marker.remove().await {
        tracing::warn!(
            "cannot remove the run's in-progress marker: {}",
            secrets.mask(&e.to_string())
        );
    }
}
