//! The checkpoint of a run stopped before its end (an invocation deadline, a signal, a
//! kill): per resource, the parts staged so far and where its reading goes on, written
//! beside the run's parts each time a part is stored. `--resume` continues from the newest.
//! Objects are never overwritten, so each save is a new key and the one before is removed:
//! `{pipeline}/_checkpoints/{run_id}/{save:08}.json`. A checkpoint holds no secret: a
//! page whose URL or body holds one is not named, and its request sequence is read again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::manifest::{ObjectManifest, ResourceManifest};
use super::{Backend, StageError};

/// Where checkpoints are kept, below the pipeline's folder.
pub const CHECKPOINT_FOLDER: &str = "_checkpoints";

/// The key of save `n` of run `run_id`'s checkpoint.
pub fn checkpoint_key(pipeline: &str, run_id: &str, n: u64) -> String {
    format!("{pipeline}/{CHECKPOINT_FOLDER}/{run_id}/{n:08}.json")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub run_id: String,
    pub pipeline: String,
    /// The spec the run was started with: a changed spec cannot go on with it.
    pub spec_hash: String,
    pub sluice_version: String,
    pub run_time: String,
    /// The run's `{now}` (and the end of open date windows).
    pub now: String,
    pub started_at: String,
    /// When this checkpoint was saved (`gc` keeps a run saved within `--older-than`).
    pub saved_at: String,
    /// The resources selected (all when empty).
    #[serde(default)]
    pub selected: Vec<String>,
    /// Where each incremental resource started, as its state reads.
    #[serde(default)]
    pub starts: BTreeMap<String, String>,
    /// Where the incremental resources given an end ended (a backfill's window).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ends: BTreeMap<String, String>,
    /// Only the first date window of each stepped resource is read (`run`'s rounds).
    #[serde(default)]
    pub one_window: bool,
    /// Per resource begun: what it staged and where it goes on.
    pub resources: BTreeMap<String, ResourceCheckpoint>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResourceCheckpoint {
    /// Staged whole: its manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<ResourceManifest>,
    /// The parts staged so far, in order (of a resource not done).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectManifest>,
    /// Where its reading goes on (of a resource not done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<At>,
}

/// Where the reading of one resource goes on: every record before it is in the parts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct At {
    /// The date window under way (0-based; 0 for a resource not read as windows).
    #[serde(default)]
    pub window: u32,
    /// What the windows (and, for `for_each`, the parents) done before it counted.
    #[serde(default)]
    pub before: Counts,
    /// The page of the window's request sequence to fetch again; none: the sequence
    /// from its first request (an export job, a file, a page whose URL holds a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<PageAt>,
    /// Records already staged from that page (or from the sequence, without a page).
    #[serde(default)]
    pub skip: u64,
    /// A `for_each` resource: its parents done and under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parents: Option<ParentsAt>,
    /// An incremental resource: the highest cursor staged so far, as its state reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest: Option<String>,
}

/// The counts of a resource's manifest, for the part of it done before a resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Counts {
    pub pages: u64,
    pub records: u64,
    #[serde(default)]
    pub skipped: u64,
    #[serde(default)]
    pub ignored: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.pages += other.pages;
        self.records += other.records;
        self.skipped += other.skipped;
        self.ignored += other.ignored;
        if let Some(t) = other.total {
            self.total = Some(self.total.unwrap_or(0) + t);
        }
    }
}

/// A page to fetch again, and what the pages before it in its sequence counted.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PageAt {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Pages and records of the sequence before it.
    pub pages: u64,
    pub records: u64,
    /// The most records a page before it held.
    pub fullest: u64,
}

/// The parents of a `for_each` resource (0-based, in their order): those whose requests
/// are all staged, as ranges `[from, to)`, and those under way with the records staged.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ParentsAt {
    pub done: Vec<[u64; 2]>,
    #[serde(default)]
    pub partial: BTreeMap<u64, u64>,
}

impl ParentsAt {
    pub fn is_done(&self, i: u64) -> bool {
        let at = self.done.partition_point(|r| r[1] <= i);
        self.done.get(at).is_some_and(|r| r[0] <= i)
    }

    /// Parent `i` is done.
    pub fn finish(&mut self, i: u64) {
        self.partial.remove(&i);
        let at = self.done.partition_point(|r| r[1] < i);
        match self.done.get_mut(at) {
            Some(r) if r[0] <= i && i < r[1] => return,
            Some(r) if r[1] == i => r[1] = i + 1,
            Some(r) if r[0] == i + 1 => r[0] = i,
            _ => self.done.insert(at, [i, i + 1]),
        }
        // Two ranges that now touch become one.
        if at + 1 < self.done.len() && self.done[at][1] >= self.done[at + 1][0] {
            self.done[at][1] = self.done[at + 1][1];
            self.done.remove(at + 1);
        }
    }
}

impl Checkpoint {
    /// The records staged so far, over every resource.
    pub fn staged(&self) -> (u64, usize) {
        let mut out = (0, 0);
        for r in self.resources.values() {
            let objects = r.done.as_ref().map_or(&r.objects, |d| &d.objects);
            out.0 += objects.iter().map(|o| o.records).sum::<u64>();
            out.1 += objects.len();
        }
        out
    }
}

/// The checkpoints of a pipeline's runs: per run id, its saves' keys and the newest one.
pub async fn checkpoints(
    store: &impl Backend,
    pipeline: &str,
) -> Result<BTreeMap<String, (Vec<String>, u64)>, StageError> {
    let prefix = format!("{pipeline}/{CHECKPOINT_FOLDER}/");
    let mut out: BTreeMap<String, (Vec<String>, u64)> = BTreeMap::new();
    for key in store.list(&prefix).await? {
        let Some((run_id, save)) = key.strip_prefix(&prefix).and_then(|r| r.split_once('/')) else {
            continue;
        };
        let save = save.strip_suffix(".json").and_then(|n| n.parse::<u64>().ok());
        let (Some(save), true) = (save, crate::spec::pipeline::is_run_id(run_id)) else {
            continue;
        };
        let entry = out.entry(run_id.to_string()).or_default();
        entry.0.push(key);
        entry.1 = entry.1.max(save);
    }
    Ok(out)
}

/// Read save `save` of run `run_id`'s checkpoint (the newest, as [`checkpoints`] lists).
pub async fn read_checkpoint(
    store: &impl Backend,
    pipeline: &str,
    run_id: &str,
    save: u64,
) -> Result<(Checkpoint, u64), StageError> {
    let key = checkpoint_key(pipeline, run_id, save);
    let bytes = store.get_bytes(&key).await?;
    let c = serde_json::from_slice(&bytes).map_err(|e| StageError::BadManifest {
        key,
        detail: e.to_string(),
    })?;
    Ok((c, save))
}

/// Saves a run's checkpoint as it changes, one save at a time.
pub struct Checkpointer<'a, S: Backend> {
    store: &'a S,
    state: tokio::sync::Mutex<(Checkpoint, u64)>,
}

impl<'a, S: Backend> Checkpointer<'a, S> {
    /// `saved`: the number of the newest save so far (0 for none).
    pub fn new(store: &'a S, checkpoint: Checkpoint, saved: u64) -> Self {
        Checkpointer {
            store,
            state: tokio::sync::Mutex::new((checkpoint, saved)),
        }
    }

    /// Set resource `name`'s part of the checkpoint and save it.
    pub async fn set(&self, name: &str, resource: ResourceCheckpoint) -> Result<(), StageError> {
        let mut state = self.state.lock().await;
        state.0.resources.insert(name.to_string(), resource);
        state.0.saved_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let (c, saved) = &mut *state;
        let key = checkpoint_key(&c.pipeline, &c.run_id, *saved + 1);
        let bytes = serde_json::to_vec_pretty(&*c).expect("a checkpoint serializes");
        self.store.put_bytes(&key, bytes).await?;
        if *saved > 0 {
            let old = checkpoint_key(&c.pipeline, &c.run_id, *saved);
            if let Err(e) = self.store.delete(&old).await {
                tracing::warn!("cannot remove the checkpoint `{old}` a newer one replaced: {e}");
            }
        }
        *saved += 1;
        Ok(())
    }

    /// Where the run's incremental resources start, and its `{now}` (not saved yet).
    pub async fn start(
        &self,
        starts: BTreeMap<String, String>,
        ends: BTreeMap<String, String>,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let mut state = self.state.lock().await;
        state.0.starts = starts;
        state.0.ends = ends;
        state.0.now = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    }

    /// The checkpoint as last set.
    pub async fn current(&self) -> Checkpoint {
        self.state.lock().await.0.clone()
    }

    /// Remove every save (the run is complete, or failed).
    pub async fn remove(&self) -> Result<(), StageError> {
        let state = self.state.lock().await;
        let (c, _) = &*state;
        let all = checkpoints(self.store, &c.pipeline).await?;
        for key in all.get(&c.run_id).map(|(keys, _)| keys.as_slice()).unwrap_or_default() {
            self.store.delete(key).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_parents_keep_as_few_ranges_as_they_make() {
        let mut p = ParentsAt::default();
        for i in [3, 0, 1, 5, 2, 7, 4] {
            p.finish(i);
        }
        assert_eq!(p.done, vec![[0, 6], [7, 8]]);
        assert!(p.is_done(0) && p.is_done(5) && p.is_done(7));
        assert!(!p.is_done(6) && !p.is_done(8));
        p.finish(6);
        assert_eq!(p.done, vec![[0, 8]]);
        p.finish(6);
        assert_eq!(p.done, vec![[0, 8]]);
    }
}
