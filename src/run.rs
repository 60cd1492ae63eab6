//! The order of the steps: extract (API → staging, then the manifest), load (staging →
//! warehouse) and run (both). The only module that knows that order.

use std::collections::HashMap;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::extract::http::Client;
use crate::extract::{
    extract_children, extract_resource, first_request, ExtractError, Extracted, ParentRecords, RecordSink, Records,
};
use crate::resolve::{Needs, Resolved};
use crate::spec::pipeline::{CursorTo, Pipeline, Resource};
use crate::spec::placeholder::Values;
use crate::stage::manifest::{Manifest, ObjectManifest, ResourceManifest};
use crate::stage::writer::PartWriter;
use crate::stage::{manifest_key, StageError, Staging, Store};
use crate::util::Secrets;

/// Identity of one run: a sortable id and the time it started.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub run_id: String,
    pub run_time: DateTime<Utc>,
}

impl RunInfo {
    pub fn new() -> Self {
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
pub enum RunError {
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

#[derive(Debug, Clone, Default)]
pub struct ExtractOptions {
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
}

/// What an extraction staged.
#[derive(Debug)]
pub struct ExtractReport {
    pub run: RunInfo,
    pub location: String,
    pub manifest_key: String,
    pub manifest: Manifest,
}

/// The resources an option list selects, in spec order, with the `for_each` parents they
/// need (a child's requests are made for its parent's records of the same run).
pub fn select<'a>(p: &'a Pipeline, names: &[String]) -> Result<Vec<&'a Resource>, RunError> {
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
fn parents_first<'a>(resources: &[&'a Resource]) -> Vec<&'a Resource> {
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

/// Where each incremental resource of `resources` starts, from the saved positions.
fn incremental_starts(
    resources: &[&Resource],
    saved: &std::collections::BTreeMap<String, crate::incremental::Position>,
) -> HashMap<String, crate::incremental::Position> {
    resources
        .iter()
        .filter_map(|r| {
            let inc = r.incremental.as_ref()?;
            Some((r.name.clone(), inc.start(saved.get(&r.name).copied())))
        })
        .collect()
}

/// The records of a parent resource's staged objects, one at a time.
fn staged_records<'a>(store: &'a Store, objects: Vec<ObjectManifest>, parent: &'a str) -> ParentRecords<'a> {
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

/// Resolved per-pipeline inputs of the HTTP side.
struct Http {
    client: Client,
    base_url: String,
    source: crate::resolve::Source,
    /// Where each incremental resource starts this run.
    starts: HashMap<String, crate::incremental::Position>,
}

impl Http {
    /// Extract resource `r` into `sink`, with this pipeline's client and resolved values.
    /// `parents`: the parent's records, for a `for_each` resource.
    async fn extract<S: RecordSink>(
        &self,
        p: &Pipeline,
        r: &Resource,
        parents: Option<ParentRecords<'_>>,
        sink: &mut S,
    ) -> Result<Extracted, ExtractError> {
        let (mut params, mut body) = (
            self.source.resource_params(&r.name).to_vec(),
            self.source.body(&r.name).cloned(),
        );
        // Where an incremental resource starts, sent as its parameter or body field.
        let start = match (&r.incremental, self.starts.get(&r.name)) {
            (Some(inc), Some(pos)) => {
                let value = inc.format.write(*pos);
                match &inc.send {
                    Some(CursorTo::Param(name)) => params.push((name.clone(), inc.format.text(*pos))),
                    Some(CursorTo::BodyField(field)) => {
                        crate::extract::paginate::set_field(body.get_or_insert(Value::Null), field, value.clone())
                    }
                    None => {}
                }
                Some(value)
            }
            _ => None,
        };
        let (params, body, start) = (params.as_slice(), body.as_ref(), start.as_ref());
        match parents {
            None => {
                let values = Values { parent: None, start };
                let first = first_request(&self.client, &self.base_url, r, params, body, &values)?;
                extract_resource(&self.client, p, r, first, sink).await
            }
            Some(parents) => {
                extract_children(&self.client, p, r, &self.base_url, params, body, start, parents, sink).await
            }
        }
    }
}

fn http(p: &Pipeline, resolved: &Resolved, secrets: &Secrets) -> Result<Http, ExtractError> {
    let client = Client::new(p.source(), resolved.source(), secrets)?;
    let base_url = client.base_url().to_string();
    Ok(Http {
        client,
        base_url,
        source: resolved.source().clone(),
        starts: HashMap::new(),
    })
}

/// Resolve what a step needs from the environment, then check, before the first API
/// request, that the warehouse and the staging location it needs can be used.
pub async fn prepare(p: &Pipeline, needs: Needs, secrets: &Secrets) -> Result<Resolved, RunError> {
    let resolved = crate::resolve::resolve(p, needs, secrets)?;
    preflight(p, needs, &resolved, secrets).await?;
    Ok(resolved)
}

/// `sluice check`: what a deployment gate wants to know without reading any records —
/// the environment is complete, the warehouse and staging can be used, and with `api`,
/// one request to the first resource's first page succeeds with the configured auth.
/// Returns the checks that passed.
pub async fn check(p: &Pipeline, api: bool, secrets: &Secrets) -> Result<Vec<&'static str>, RunError> {
    let resolved = prepare(p, Needs::RUN, secrets).await?;
    let mut passed = vec!["environment", "warehouse", "staging"];
    if api {
        let http = http(p, &resolved, secrets)?;
        // A child's requests need its parent's records: the first resource without one.
        if let Some(r) = p.resources().iter().find(|r| r.for_each.is_none()) {
            let first = first_request(
                &http.client,
                &http.base_url,
                r,
                http.source.resource_params(&r.name),
                http.source.body(&r.name),
                &Values::default(),
            )?;
            http.client.fetch(r.method, &first, &r.name, 1).await?;
        }
        passed.push("API");
    }
    Ok(passed)
}

/// The checks before extraction: the warehouse is reached and its schema plan computed (a
/// destructive change is refused now, not after reading the API), and the staging location
/// exists and, for a step that writes it, takes a probe object.
pub async fn preflight(p: &Pipeline, needs: Needs, resolved: &Resolved, secrets: &Secrets) -> Result<(), RunError> {
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

struct StageSink<'a> {
    writer: PartWriter<'a, Store>,
    resource: String,
    limit: Option<u64>,
    written: u64,
    bar: crate::progress::ExtractBar,
    /// For an incremental resource: the highest cursor staged so far.
    highest: Option<Highest>,
}

impl RecordSink for StageSink<'_> {
    fn total(&mut self, records: u64) {
        self.bar.total(records);
    }

    async fn page(&mut self, records: &Records<'_>) -> Result<bool, ExtractError> {
        let (before, mut bytes) = (self.written, 0);
        let mut more = true;
        for i in 0..records.len() {
            if self.limit.is_some_and(|l| self.written >= l) {
                more = false;
                break;
            }
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
        }
        self.bar.page(self.written - before, bytes);
        Ok(more && self.limit.is_none_or(|l| self.written < l))
    }
}

/// The highest cursor of the records of one resource, kept while they are staged.
#[derive(Debug, Clone)]
pub struct Highest {
    format: crate::spec::pipeline::CursorFormat,
    cursor: crate::spec::jsonpath::JsonPath,
    pub max: Option<crate::incremental::Position>,
}

impl Highest {
    pub fn new(inc: &crate::spec::pipeline::Incremental) -> Self {
        Highest {
            format: inc.format,
            cursor: inc.cursor.clone(),
            max: None,
        }
    }

    /// Take one record's cursor into account; a record without a readable cursor is an
    /// error, since the next run could not know where to start.
    pub fn see(&mut self, record: &Value) -> Result<(), String> {
        let v = self.cursor.first(record).ok_or_else(|| {
            format!(
                "a record has no incremental cursor `{}`: {}",
                self.cursor.as_str(),
                crate::util::clip(&record.to_string(), 120)
            )
        })?;
        let pos = self
            .format
            .read(v)
            .map_err(|e| format!("incremental cursor `{}`: {e}", self.cursor.as_str()))?;
        self.max = Some(self.max.map_or(pos, |m| m.max(pos)));
        Ok(())
    }
}

/// Collects records for a dry run, as their JSON text on one line each (parsed later,
/// where a record that cannot be is a record error, not a crash).
pub struct CollectSink {
    pub records: Vec<String>,
    pub limit: u64,
    /// The records the API reported, when a page said.
    pub total: Option<u64>,
}

impl RecordSink for CollectSink {
    fn total(&mut self, records: u64) {
        self.total = Some(records);
    }

    async fn page(&mut self, records: &Records<'_>) -> Result<bool, ExtractError> {
        for i in 0..records.len() {
            if self.records.len() as u64 >= self.limit {
                break;
            }
            self.records.push(match records {
                Records::Raw(raw) => {
                    let mut line = Vec::new();
                    crate::stage::writer::compact_json(raw[i].get(), &mut line);
                    String::from_utf8_lossy(&line).into_owned()
                }
                Records::Values(values) => values[i].to_string(),
            });
        }
        Ok((self.records.len() as u64) < self.limit)
    }
}

/// Extract the selected resources of `p` into its staging location and write the
/// manifest. A run with any failed resource gets no manifest.
pub async fn extract(p: &Pipeline, opts: &ExtractOptions, secrets: &Secrets) -> Result<ExtractReport, RunError> {
    let needs = Needs {
        // The incremental state is kept in the warehouse.
        warehouse: select(p, &opts.resources)?.iter().any(|r| r.incremental.is_some()),
        ..Needs::EXTRACT
    };
    let resolved = prepare(p, needs, secrets).await?;
    let store = Store::open(p.staging(), resolved.staging()).await?;
    let journal = crate::stage::writer::Journal::default();
    let run = RunInfo::new();
    let run_id = run.run_id.clone();
    let mut announce = HashMap::new();
    let result = tokio::select! {
        r = extract_as(p, &resolved, &store, opts, secrets, run, &mut announce, &journal) => r,
        signal = crate::util::interrupted() => Err(RunError::Interrupted { signal, removed: !opts.keep_failed }),
    };
    if result.is_err() {
        remove_failed(&journal, opts, &store, secrets).await;
        if matches!(result, Err(RunError::Interrupted { .. })) {
            remove_markers(&store, p.name(), &run_id, secrets).await;
        }
    }
    result
}

/// The in-progress markers of a run stopped before it could remove them itself.
async fn remove_markers(store: &Store, pipeline: &str, run_id: &str, secrets: &Secrets) {
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
type Announce = HashMap<String, tokio::sync::mpsc::UnboundedSender<ObjectManifest>>;

/// After a failed extraction, remove what it staged, unless asked to keep it.
async fn remove_failed(
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

/// Extract as run `run`: stage every selected resource, then the manifest. Staged
/// objects are announced through `announce` and noted in `journal`.
#[allow(clippy::too_many_arguments)]
async fn extract_as(
    p: &Pipeline,
    resolved: &Resolved,
    store: &Store,
    opts: &ExtractOptions,
    secrets: &Secrets,
    run: RunInfo,
    announce: &mut Announce,
    journal: &crate::stage::writer::Journal,
) -> Result<ExtractReport, RunError> {
    let mut http = http(p, resolved, secrets)?;
    http.client = http.client.with_deadline(opts.deadline);
    let resources = select(p, &opts.resources)?;
    if resources.iter().any(|r| r.incremental.is_some()) {
        let saved = match opts.full_refresh {
            true => Default::default(),
            false => crate::load::state::positions(p, resolved.warehouse_url(), secrets).await?,
        };
        http.starts = incremental_starts(&resources, &saved);
    }
    let http = &http;
    let started = Utc::now();
    tracing::info!(pipeline = p.name(), run_id = %run.run_id, staging = %store.describe(), "extract started");
    let run = &run;
    // Inside the deadline's reserve already: no resource is begun (nor anything staged).
    if let Some(d) = opts.deadline.filter(|d| d.too_close().is_some()) {
        let causes = resources.iter().map(|r| d.stopped(&r.name, 1).to_string()).collect();
        return Err(all_stopped_by_deadline(&resources, causes));
    }
    // Marks the run as running, so that `gc` leaves what it stages alone.
    let mut marker = crate::stage::Marker::put(store, p.name(), &run.run_id).await?;
    // Each resource is one shared job, so that a child can wait for its parent's.
    type Job<'a> = futures_util::future::Shared<
        futures_util::future::BoxFuture<'a, Result<ResourceManifest, std::sync::Arc<ExtractError>>>,
    >;
    let mut jobs: HashMap<&str, Job> = HashMap::new();
    for r in parents_first(&resources) {
        use futures_util::FutureExt;
        let (store, http, run) = (store, http, run);
        let to_load = announce.remove(&r.name);
        let parent = r
            .for_each
            .as_ref()
            .map(|f| (f.parent.as_str(), jobs[f.parent.as_str()].clone()));
        let job = async move {
            let parents = match parent {
                None => None,
                Some((name, job)) => {
                    let staged = job.await.map_err(|_| ExtractError::ParentFailed {
                        resource: r.name.clone(),
                        parent: name.to_string(),
                    })?;
                    Some(staged_records(store, staged.objects, name))
                }
            };
            let t0 = Instant::now();
            let key = p.staging().key.clone();
            let (pipeline, name, run_id, run_time) =
                (p.name().to_string(), r.name.clone(), run.run_id.clone(), run.run_time);
            let writer = PartWriter::new(store, p.staging().part_size, move |part| {
                key.render(&pipeline, &name, &run_id, run_time, part)
            })
            .notify(to_load)
            .journal(journal.clone());
            let mut sink = StageSink {
                writer,
                resource: r.name.clone(),
                limit: opts.limit,
                written: 0,
                bar: crate::progress::ExtractBar::new(&r.name),
                highest: r.incremental.as_ref().map(Highest::new),
            };
            let stats = http.extract(p, r, parents, &mut sink).await?;
            let objects = sink.writer.finish().await.map_err(|source| ExtractError::Stage {
                resource: r.name.clone(),
                source,
            })?;
            let records: u64 = objects.iter().map(|o| o.records).sum();
            let incremental = r
                .incremental
                .as_ref()
                .zip(http.starts.get(&r.name))
                .map(|(inc, start)| crate::stage::manifest::IncrementalRun {
                    start: inc.format.text(*start),
                    highest: sink.highest.as_ref().and_then(|h| h.max).map(|m| inc.format.text(m)),
                });
            tracing::info!(
                resource = %r.name,
                pages = stats.pages,
                records,
                reported_total = stats.total,
                skipped = stats.skipped,
                start = incremental.as_ref().map(|i| i.start.as_str()),
                highest = incremental.as_ref().and_then(|i| i.highest.as_deref()),
                seconds = format!("{:.2}", t0.elapsed().as_secs_f64()),
                "resource extracted"
            );
            Ok::<ResourceManifest, ExtractError>(ResourceManifest {
                name: r.name.clone(),
                pages: stats.pages,
                records,
                reported_total: stats.total,
                skipped: stats.skipped,
                incremental,
                objects,
            })
        };
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
        let cause = format!(
            "staging did not finish {} ms before the invocation deadline",
            half_reserve.as_millis()
        );
        return Err(all_stopped_by_deadline(&resources, vec![cause]));
    };
    let mut manifests = Vec::new();
    let (mut failed, mut causes, mut deadline) = (Vec::new(), Vec::new(), false);
    for (r, result) in resources.iter().zip(results) {
        match result {
            Ok(m) => manifests.push(m),
            Err(e) => {
                deadline |= matches!(*e, ExtractError::Deadline { .. });
                let cause = secrets.mask(&e.to_string());
                if crate::util::parts_of_errors_logged() {
                    tracing::error!("{cause}");
                }
                failed.push(format!("`{}`", r.name));
                causes.push(cause);
            }
        }
    }
    if !failed.is_empty() {
        remove_marker(marker, secrets).await;
        return Err(RunError::ResourcesFailed {
            failed,
            total: resources.len(),
            causes,
            deadline,
        });
    }
    // A part removed or changed since it was staged (a `gc`, a person) would make a
    // manifest that no load can take: the run fails now instead.
    for r in &manifests {
        for o in &r.objects {
            if let Err(detail) = store.verify(o).await {
                remove_marker(marker, secrets).await;
                return Err(StageError::Changed {
                    key: o.key.clone(),
                    detail,
                }
                .into());
            }
        }
    }
    let manifest = Manifest {
        run_id: run.run_id.clone(),
        pipeline: p.name().to_string(),
        spec_hash: p.spec_hash().to_string(),
        sluice_version: env!("CARGO_PKG_VERSION").to_string(),
        run_time: Some(run.run_time.to_rfc3339_opts(SecondsFormat::Micros, true)),
        started_at: started.to_rfc3339_opts(SecondsFormat::Millis, true),
        finished_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        limited: opts.limit.is_some(),
        resources: manifests,
    };
    let key = manifest_key(p.name(), &run.run_id);
    let bytes = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
    store.put_bytes(&key, bytes).await?;
    remove_marker(marker, secrets).await;
    tracing::info!(run_id = %run.run_id, manifest = %key, "extract finished");
    Ok(ExtractReport {
        run: run.clone(),
        location: store.describe(),
        manifest_key: key,
        manifest,
    })
}

/// Every resource of the run failed: the invocation deadline stopped them, as `causes` say.
fn all_stopped_by_deadline(resources: &[&Resource], causes: Vec<String>) -> RunError {
    RunError::ResourcesFailed {
        failed: resources.iter().map(|r| format!("`{}`", r.name)).collect(),
        total: resources.len(),
        causes,
        deadline: true,
    }
}

/// Await `work`, renewing the run's marker every [`crate::stage::MARKER_REFRESH`].
async fn renewing<T>(
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

async fn remove_marker(marker: crate::stage::Marker<'_, Store>, secrets: &Secrets) {
    if let Err(e) = marker.remove().await {
        tracing::warn!(
            "cannot remove the run's in-progress marker: {}",
            secrets.mask(&e.to_string())
        );
    }
}

/// Fetch without staging: up to `limit` records of each selected resource.
pub async fn extract_dry_run(
    p: &Pipeline,
    opts: &ExtractOptions,
    secrets: &Secrets,
) -> Result<Vec<(String, Vec<String>)>, RunError> {
    let resources = select(p, &opts.resources)?;
    let resolved = crate::resolve::resolve(p, Needs::DRY_RUN, secrets)?;
    let mut http = http(p, &resolved, secrets)?;
    // A dry run reads no warehouse, so no saved state: it starts where a first run would.
    http.starts = incremental_starts(&resources, &Default::default());
    if !http.starts.is_empty() {
        tracing::info!("dry run: incremental resources start at their `initial`");
    }
    use futures_util::StreamExt;
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in parents_first(&resources) {
        // A child is requested for the records its parent's dry run fetched.
        let parents = r.for_each.as_ref().map(|f| {
            let lines = out
                .iter()
                .find(|(name, _)| name == &f.parent)
                .map(|(_, lines)| lines.clone())
                .unwrap_or_default();
            let parent = f.parent.clone();
            futures_util::stream::iter(lines.into_iter().map(move |l| {
                serde_json::from_str(&l)
                    .map_err(|e| ExtractError::Config(format!("a record of `{parent}` is not valid JSON ({e})")))
            }))
            .boxed()
        });
        let mut sink = CollectSink {
            records: Vec::new(),
            limit: opts.limit.unwrap_or(u64::MAX),
            total: None,
        };
        let stats = if opts.limit.is_none() {
            // Default: one page.
            let mut one_page = OnePage(sink);
            let stats = http.extract(p, r, parents, &mut one_page).await?;
            sink = one_page.0;
            stats
        } else {
            http.extract(p, r, parents, &mut sink).await?
        };
        tracing::info!(
            resource = %r.name,
            pages = stats.pages,
            records = sink.records.len(),
            reported_total = sink.total.or(stats.total),
            "dry run fetched"
        );
        out.push((r.name.clone(), sink.records));
    }
    // Back in spec order.
    out.sort_by_key(|(name, _)| resources.iter().position(|r| &r.name == name));
    Ok(out)
}

struct OnePage(CollectSink);

impl RecordSink for OnePage {
    fn total(&mut self, records: u64) {
        self.0.total(records);
    }

    async fn page(&mut self, records: &Records<'_>) -> Result<bool, ExtractError> {
        self.0.page(records).await?;
        Ok(false)
    }
}

/// Totals of a list of objects.
pub fn object_totals(objects: &[ObjectManifest]) -> (u64, u64) {
    (
        objects.iter().map(|o| o.records).sum(),
        objects.iter().map(|o| o.bytes).sum(),
    )
}

/// Which staged run `load` takes.
#[derive(Debug, Clone)]
pub enum RunSelector {
    Latest,
    Id(String),
}

/// Load a staged run into the warehouse.
pub async fn load(
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
pub fn check_own(p: &Pipeline, manifest: &Manifest, key: &str) -> Result<(), crate::load::LoadError> {
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

/// Extract, then load the run just staged.
pub async fn run(
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
        let result = extract_as(p, &resolved, &store, opts, secrets, run, &mut announce, &journal).await;
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

/// `run --dry-run`: fetch, map and return the rows that would be loaded, writing nothing.
/// Records are mapped by the same function a load uses, under the same `on_error` policy.
/// Each resource's coverage table (see [`coverage_table`]) goes to `show` as soon as it is
/// known, also when the run then fails on a path that matched nothing.
pub async fn run_dry(
    p: &Pipeline,
    opts: &ExtractOptions,
    secrets: &Secrets,
    show: &mut (dyn FnMut(String) + Send),
) -> Result<Vec<Value>, RunError> {
    use crate::load::record::{map_record, parse_record, row_json, ColumnError, RecordError, RecordRows, RunMeta};
    use crate::spec::pipeline::OnError;
    let fetched = extract_dry_run(p, opts, secrets).await?;
    let run = RunInfo::new();
    let meta = RunMeta {
        run_id: run.run_id,
        run_time: run.run_time,
        pipeline: p.name().to_string(),
    };
    let mut rows = Vec::new();
    for (name, records) in fetched {
        let r = p.resource(&name).expect("selected from the spec");
        if r.tables.is_empty() {
            show(format!(
                "resource `{name}` has no table: {} records fetched for its children's requests\n",
                records.len()
            ));
            continue;
        }
        let mut mapped = RecordRows::default();
        let first_row = rows.len();
        for (n, line) in records.iter().enumerate() {
            let outcome = match parse_record(line, None) {
                Ok(record) => map_record(&r.tables, &record, &meta, &mut mapped),
                Err(e) => Err(RecordError {
                    table: 0,
                    error: ColumnError {
                        column: "(record)".into(),
                        value: crate::util::clip(&line.escape_debug().to_string(), 80),
                        reason: format!("the record is not valid JSON ({e})"),
                    },
                }),
            };
            match outcome {
                Ok(()) => {
                    for (t, table_rows) in r.tables.iter().zip(&mapped.rows) {
                        rows.extend(table_rows.iter().map(|row| row_json(t, row)));
                    }
                }
                Err(RecordError { table, error }) => {
                    let bad = crate::load::BadRecord {
                        resource: name.clone(),
                        object: "(dry run)".into(),
                        record: n as u64 + 1,
                        table: r.tables[table].name.clone(),
                        column: error.column,
                        value: error.value,
                        reason: error.reason,
                    };
                    if r.tables[0].on_error == OnError::Fail {
                        return Err(crate::load::LoadError::Record(Box::new(bad)).into());
                    }
                    tracing::warn!(
                        "{}",
                        secrets.mask(&format!("{bad}; rejected (on_error: {})", r.tables[0].on_error.name()))
                    );
                }
            }
        }
        show(coverage_table(r, records.len(), &mapped.coverage, &rows[first_row..]));
        let sample = records.first().and_then(|l| serde_json::from_str::<Value>(l).ok());
        let problems = crate::load::record::unmatched(&r.tables, &mapped.coverage, sample.as_ref());
        if !problems.is_empty() {
            return Err(crate::load::LoadError::Unmatched {
                resource: name,
                problems,
            }
            .into());
        }
    }
    Ok(rows)
}

/// For `run --dry-run`: per column read from a path, how many rows it matched in and a
/// value it gave.
fn coverage_table(r: &Resource, records: usize, coverage: &[crate::load::record::Coverage], rows: &[Value]) -> String {
    use crate::spec::pipeline::ValueSource;
    let mut lines = vec![(
        "table".to_string(),
        "column".to_string(),
        "path".to_string(),
        "matched".to_string(),
        "sample".to_string(),
    )];
    for (t, cov) in r.tables.iter().zip(coverage) {
        for (c, hits) in t.columns.iter().zip(&cov.matched) {
            let path = match &c.value {
                ValueSource::Path(path) => path.as_str().to_string(),
                ValueSource::ParentRecord(path) => format!("parent {}", path.as_str()),
                _ => continue,
            };
            let sample = rows
                .iter()
                .filter(|row| row["_table"] == t.name.as_str())
                .map(|row| &row[c.name.as_str()])
                .find(|v| !v.is_null())
                .map(|v| crate::util::clip(&v.to_string(), 40))
                .unwrap_or_else(|| "(all null)".into());
            let mark = if *hits == 0 && cov.rows > 0 && !c.optional {
                "  ← matched nothing"
            } else {
                ""
            };
            lines.push((
                t.name.clone(),
                c.name.clone(),
                path,
                format!("{hits}/{}", cov.rows),
                format!("{sample}{mark}"),
            ));
        }
    }
    let w = |f: fn(&(String, String, String, String, String)) -> &String| {
        lines.iter().map(|l| f(l).chars().count()).max().unwrap_or(0)
    };
    let (w0, w1, w2, w3) = (w(|l| &l.0), w(|l| &l.1), w(|l| &l.2), w(|l| &l.3));
    let mut out = format!("coverage of resource `{}` ({records} records fetched):\n", r.name);
    for (a, b, c, d, e) in &lines {
        out.push_str(&format!("  {a:<w0$}  {b:<w1$}  {c:<w2$}  {d:>w3$}  {e}\n"));
    }
    out
}

/// One incremental resource's state, for `sluice state`.
#[derive(Debug, Clone)]
pub struct StateRow {
    pub resource: String,
    /// The highest cursor loaded, if any run was.
    pub saved: Option<String>,
    /// Where the next run starts (the saved value less the lag, or `initial`).
    pub next_start: String,
    pub run_id: Option<String>,
    pub updated_at: Option<String>,
}

/// The state of every incremental resource of `p`.
pub async fn state(p: &Pipeline, secrets: &Secrets) -> Result<Vec<StateRow>, RunError> {
    let resolved = crate::resolve::resolve(p, Needs::WAREHOUSE, secrets)?;
    let saved = crate::load::state::states(p, resolved.warehouse_url(), secrets).await?;
    let positions = crate::load::state::positions_of(p, &saved)?;
    Ok(p.resources()
        .iter()
        .filter_map(|r| {
            let inc = r.incremental.as_ref()?;
            let s = saved.get(&r.name);
            let start = inc.start(positions.get(&r.name).copied());
            Some(StateRow {
                resource: r.name.clone(),
                saved: s.map(|s| s.value.clone()),
                next_start: inc.format.text(start),
                run_id: s.map(|s| s.run_id.clone()),
                updated_at: s.map(|s| s.updated_at.clone()),
            })
        })
        .collect())
}

/// Forget the incremental state of `resources` (all when empty).
pub async fn reset_state(p: &Pipeline, resources: &[String], secrets: &Secrets) -> Result<u64, RunError> {
    select(p, resources)?;
    let resolved = crate::resolve::resolve(p, Needs::WAREHOUSE, secrets)?;
    Ok(crate::load::state::reset(p, resolved.warehouse_url(), resources, secrets).await?)
}

/// What `gc` removed.
#[derive(Debug, Default)]
pub struct GcReport {
    pub location: String,
    /// Run ids of the incomplete runs removed, oldest first.
    pub runs: Vec<String>,
    pub objects: u64,
    /// Incomplete runs old enough, left alone because their extraction is still running.
    pub skipped_running: Vec<String>,
}

/// Remove the staged objects of incomplete runs (runs without a manifest) that started
/// more than `older_than` ago. Only what is this pipeline's own: an object whose key this
/// spec's template parses back strictly (its name, one of its resources, its run time
/// format, a run id). A complete run is never touched, nor a run whose extraction still
/// renews its in-progress marker.
pub async fn gc(p: &Pipeline, older_than: std::time::Duration, secrets: &Secrets) -> Result<GcReport, RunError> {
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
    let started_before_cutoff = |run_id: &str| {
        chrono::NaiveDateTime::parse_from_str(&run_id[..16], "%Y%m%dT%H%M%SZ").is_ok_and(|t| t.and_utc() <= cutoff)
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
    report.runs.sort();
    Ok(report)
}
