//! Runs that go on: what a resource being staged must know for its checkpoint to say
//! where to go on (`Progress`), and the checkpoint a `--resume` starts from, checked
//! against the spec and the staged parts.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{RunError, RunInfo};
use crate::extract::{Extracted, Place};
use crate::incremental::Position;
use crate::spec::pipeline::Pipeline;
use crate::stage::checkpoint::{At, Checkpoint, Counts, PageAt, ParentsAt};
use crate::stage::{Backend, StageError, Store};
use crate::util::Secrets;

/// Where the staging of one resource has got, kept from the places its extraction
/// reports, so that each stored part can be followed by a checkpoint.
#[derive(Debug, Default)]
pub(super) struct Progress {
    window: u32,
    /// What the checkpoint gone on from counted before its place.
    base: Counts,
    /// What the windows read whole in this run counted.
    windows: Counts,
    /// What the parents done in this run counted (of the window under way).
    parents_done: Counts,
    page: Option<PageAt>,
    /// Records of that page staged (those staged before a resume too).
    page_staged: u64,
    /// Records of the window's request sequence staged.
    sequence_staged: u64,
    parents: Option<ParentsAt>,
    current: Option<u64>,
    /// The window the checkpoint gone on from stopped in, until it is reached again: its
    /// place (the page, what its sequence staged) holds.
    resumed_window: Option<u32>,
}

impl Progress {
    /// Progress from the start, or from where checkpoint place `at` says.
    pub(super) fn from(at: Option<&At>, for_each: bool) -> Self {
        let Some(at) = at else {
            return Progress {
                parents: for_each.then(ParentsAt::default),
                ..Default::default()
            };
        };
        Progress {
            window: at.window,
            base: at.before,
            page: at.page.clone(),
            page_staged: at.skip,
            sequence_staged: at.skip + at.page.as_ref().map_or(0, |p| p.records),
            parents: at.parents.clone().or_else(|| for_each.then(ParentsAt::default)),
            resumed_window: Some(at.window),
            ..Default::default()
        }
    }

    pub(super) fn place(&mut self, place: Place<'_>) {
        match place {
            Place::Window(i, total) if self.resumed_window.take() == Some(i) => {
                self.windows = total.counts();
            }
            Place::Window(i, total) => {
                *self = Progress {
                    window: i,
                    base: self.base,
                    windows: total.counts(),
                    parents: self.parents.take(),
                    ..Default::default()
                };
            }
            Place::Page {
                req,
                pages,
                records,
                fullest,
            } => {
                self.page = Some(PageAt {
                    url: req.url.to_string(),
                    body: req.body.clone(),
                    pages,
                    records,
                    fullest,
                });
                self.page_staged = 0;
            }
            Place::Parent(i) => self.current = Some(i),
            Place::ParentDone(i, stats) => {
                if let Some(p) = &mut self.parents {
                    p.finish(i);
                }
                match stats {
                    Some(s) => self.parents_done.add(&s.counts()),
                    None => self.parents_done.skipped += 1,
                }
            }
        }
    }

    /// One more record staged (or found staged already).
    pub(super) fn staged(&mut self) {
        self.page_staged += 1;
        self.sequence_staged += 1;
        if let (Some(p), Some(i)) = (&mut self.parents, self.current) {
            *p.partial.entry(i).or_default() += 1;
        }
    }

    /// Where to go on once every record staged so far is stored. A page whose URL or
    /// body holds a secret is not named: its sequence is read again from the start.
    pub(super) fn at(&self, highest: Option<String>, secrets: &Secrets) -> At {
        let holds_secret = |p: &PageAt| {
            let text = format!(
                "{} {}",
                p.url,
                p.body.as_ref().map(|b| b.to_string()).unwrap_or_default()
            );
            secrets.mask(&text) != text
        };
        let page = self.page.clone().filter(|p| !holds_secret(p));
        let mut before = self.base;
        before.add(&self.windows);
        before.add(&self.parents_done);
        let skip = match (&page, &self.parents) {
            (_, Some(_)) => 0,
            (Some(_), None) => self.page_staged,
            (None, None) => self.sequence_staged,
        };
        At {
            window: self.window,
            before,
            page,
            skip,
            parents: self.parents.clone(),
            highest,
        }
    }

    /// What the checkpoint gone on from counted before its place.
    pub(super) fn base(&self) -> Extracted {
        Extracted::from_counts(&self.base)
    }
}

/// Which run `--resume` goes on with: a run id, or the newest checkpointed run.
pub(crate) async fn checkpoint_to_resume(
    p: &Pipeline,
    store: &Store,
    run_id: Option<&str>,
) -> Result<(Checkpoint, u64), RunError> {
    let all = crate::stage::checkpoint::checkpoints(store, p.name()).await?;
    let complete: HashSet<String> = crate::stage::complete_runs(store, p.name())
        .await?
        .into_iter()
        .collect();
    let run_id = match run_id {
        Some(id) => id.to_string(),
        None => all.keys().rfind(|id| !complete.contains(*id)).cloned().ok_or_else(|| {
            StageError::Config(format!(
                "pipeline `{}` has no checkpointed run in {} to go on with",
                p.name(),
                store.describe()
            ))
        })?,
    };
    if complete.contains(&run_id) {
        return Err(StageError::Config(format!(
            "run `{run_id}` is complete (it has a manifest): there is nothing to go on with"
        ))
        .into());
    }
    let newest = all.get(&run_id).map(|(_, save)| *save).ok_or_else(|| {
        let known: Vec<&String> = all.keys().collect();
        StageError::Config(format!(
            "run `{run_id}` of pipeline `{}` has no checkpoint in {}; checkpointed runs: {}",
            p.name(),
            store.describe(),
            if known.is_empty() {
                "none".to_string()
            } else {
                format!("{known:?}")
            }
        ))
    })?;
    let (c, save) = crate::stage::checkpoint::read_checkpoint(store, p.name(), &run_id, newest).await?;
    if c.pipeline != p.name() {
        return Err(StageError::Config(format!(
            "the checkpoint of run `{run_id}` is pipeline `{}`'s, not `{}`'s",
            c.pipeline,
            p.name()
        ))
        .into());
    }
    if c.spec_hash != p.spec_hash() {
        return Err(StageError::Config(format!(
            "run `{run_id}` was started with another version of the spec (SHA-256 {}, now {}): it cannot go on with this one; start a new run",
            short(&c.spec_hash),
            short(p.spec_hash())
        ))
        .into());
    }
    Ok((c, save))
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// Before going on: every part the checkpoint lists is still as it was staged, and the
/// run's objects it does not list (a part stored after the last checkpoint, before a
/// kill) are removed, so that their keys can be written again. The parts listed are
/// noted in `journal`: a failure now removes the whole run.
pub(super) async fn prepare_resume(
    p: &Pipeline,
    store: &Store,
    c: &Checkpoint,
    journal: &crate::stage::writer::Journal,
) -> Result<(), RunError> {
    let mut listed = HashSet::new();
    for r in c.resources.values() {
        for o in r.done.as_ref().map_or(&r.objects, |d| &d.objects) {
            store.verify(o).await.map_err(|detail| StageError::Changed {
                key: o.key.clone(),
                detail,
            })?;
            listed.insert(o.key.clone());
        }
    }
    let mut removed = 0;
    for key in store.list(&p.staging().key.list_prefix(p.name())).await? {
        if p.run_of_key(&key).as_deref() == Some(c.run_id.as_str()) && !listed.contains(&key) {
            store.delete(&key).await?;
            removed += 1;
        }
    }
    // The in-progress marker the stopped run left (a kill leaves one): this run takes over.
    if let Some((keys, _)) = crate::stage::markers(store, p.name()).await?.get(&c.run_id) {
        for key in keys {
            store.delete(key).await?;
        }
    }
    let (records, parts) = c.staged();
    tracing::info!(run_id = %c.run_id, records, parts, removed_unlisted = removed, saved_at = %c.saved_at, "going on from the checkpoint");
    journal.lock().unwrap_or_else(|e| e.into_inner()).extend(listed);
    Ok(())
}

/// The run's identity, as the checkpoint keeps it.
pub(super) fn run_of(c: &Checkpoint) -> Result<RunInfo, RunError> {
    let time = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| StageError::Config(format!("the checkpoint of run `{}`: a bad time `{t}`: {e}", c.run_id)))
    };
    Ok(RunInfo {
        run_id: c.run_id.clone(),
        run_time: time(&c.run_time)?,
    })
}

/// The run's `{now}`.
pub(super) fn now_of(c: &Checkpoint) -> Result<chrono::DateTime<chrono::Utc>, RunError> {
    Ok(chrono::DateTime::parse_from_rfc3339(&c.now)
        .map_err(|e| {
            StageError::Config(format!(
                "the checkpoint of run `{}`: a bad time `{}`: {e}",
                c.run_id, c.now
            ))
        })?
        .with_timezone(&chrono::Utc))
}

/// Where the incremental resources started (or ended), as a checkpoint keeps them.
pub(super) fn starts_of(
    p: &Pipeline,
    starts: &BTreeMap<String, String>,
) -> Result<HashMap<String, Position>, RunError> {
    let mut out = HashMap::new();
    for (name, text) in starts {
        let Some(inc) = p.resource(name).and_then(|r| r.incremental.as_ref()) else {
            continue;
        };
        let pos = inc
            .format
            .read(&serde_json::Value::String(text.clone()))
            .map_err(|e| StageError::Config(format!("the checkpoint's start of `{name}`, `{text}`: {e}")))?;
        out.insert(name.clone(), pos);
    }
    Ok(out)
}

/// The starts of the incremental resources as a checkpoint keeps them.
pub(super) fn starts_text(p: &Pipeline, starts: &HashMap<String, Position>) -> BTreeMap<String, String> {
    starts
        .iter()
        .filter_map(|(name, pos)| {
            let inc = p.resource(name)?.incremental.as_ref()?;
            Some((name.clone(), inc.format.text(*pos)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::Extracted;

    /// Gone on from page 3 of window 1, whose URL holds a secret: reaching window 1 again
    /// keeps what its request sequence staged before, so that a checkpoint, which cannot
    /// name the page, skips every record of the sequence staged, not only those since.
    #[test]
    fn a_resumed_window_keeps_what_its_sequence_staged_before() {
        let secrets = Secrets::default();
        secrets.add("s3cr3t-token");
        let at = At {
            window: 1,
            page: Some(PageAt {
                url: "https://api.test/items?page=3&key=s3cr3t-token".into(),
                records: 200,
                pages: 2,
                ..Default::default()
            }),
            skip: 40,
            ..Default::default()
        };
        let mut progress = Progress::from(Some(&at), false);
        progress.place(Place::Window(1, &Extracted::default()));
        for _ in 0..10 {
            progress.staged();
        }
        let now = progress.at(None, &secrets);
        assert_eq!((now.window, now.page, now.skip), (1, None, 250));
        // The next window starts afresh.
        progress.place(Place::Window(2, &Extracted::default()));
        progress.staged();
        assert_eq!(progress.at(None, &secrets).skip, 1);
    }
}
