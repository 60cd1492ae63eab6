//! Staging: where raw records rest between extract and load. Two backends behind one
//! small trait, a local folder and S3, both checked by one contract test suite.
//!
//! Guarantees every backend gives:
//! - a put is atomic: a reader sees the whole object or no object, never half of one;
//! - a put never replaces an existing object of another run (keys carry the run id);
//! - `get` of a missing key is [`StageError::NotFound`], naming the key.
//!
//! Objects are gzip JSON Lines of the raw records. A run's manifest is written last; a
//! run without a manifest is incomplete and is never loaded.

pub mod checkpoint;
pub mod local;
pub(crate) mod manifest;
pub mod s3;
pub(crate) mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};

pub use manifest::Manifest;

use crate::spec::location::StagingLocation;
use crate::spec::pipeline::Staging as StagingSpec;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("staging object `{key}` does not exist")]
    NotFound { key: String },
    #[error("{op} `{path}`: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("S3 {op} of `s3://{bucket}/{key}` failed: {detail}")]
    S3 {
        op: &'static str,
        bucket: String,
        key: String,
        detail: String,
    },
    #[error("staging location: {0}")]
    Config(String),
    #[error("staged object `{key}` {detail}: it was removed or changed while the run was extracted (by `sluice gc` or by hand?), so the run gets no manifest")]
    Changed { key: String, detail: String },
    #[error("manifest `{key}` is not valid: {detail}")]
    BadManifest { key: String, detail: String },
}

impl StageError {
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        StageError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A staged object made available as a local file for streaming reads.
pub struct LocalObject {
    pub path: PathBuf,
    /// Set when the file is a downloaded copy, removed when dropped.
    _temp: Option<tempfile::TempPath>,
}

/// The staging contract: what a backend (a local folder, S3) does for extract and load.
pub trait Backend: Send + Sync {
    /// Store the finished local file at `key`, atomically. The file may be moved.
    fn put_file(&self, key: &str, path: &Path) -> impl Future<Output = Result<(), StageError>> + Send;
    /// Store bytes at `key`, atomically.
    fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> impl Future<Output = Result<(), StageError>> + Send;
    /// Check that `pipeline`'s part of the location exists and can be read, and with
    /// `write` that a folder takes a file (a probe, written and removed again): the
    /// preflight of extract and load. S3 is only listed: the run's in-progress marker,
    /// put before the first request, is its write check (no object and no delete marker
    /// in a versioned bucket on every run).
    fn probe(&self, pipeline: &str, write: bool) -> impl Future<Output = Result<(), StageError>> + Send;
    /// Remove the object at `key`; a missing object is no error.
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StageError>> + Send;
    /// The whole object in memory (manifests and tests; staged data is read with `open`).
    fn get_bytes(&self, key: &str) -> impl Future<Output = Result<Vec<u8>, StageError>> + Send;
    /// The object as a local file to stream from.
    fn open(&self, key: &str) -> impl Future<Output = Result<LocalObject, StageError>> + Send;
    /// Whether the object at `key` is still the one staged: its size and, where the
    /// backend can tell without a download, its SHA-256. `Err` says what differs.
    fn verify(&self, object: &manifest::ObjectManifest) -> impl Future<Output = Result<(), String>> + Send;
    /// Keys below `prefix`, sorted.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, StageError>> + Send;
    /// A folder for the temporary files of parts being written.
    fn work_dir(&self) -> PathBuf;
    /// Where objects go, for messages: `file:///abs/path` or `s3://bucket/prefix`.
    fn describe(&self) -> String;
}

/// The configured backend.
pub enum Store {
    Local(local::LocalStaging),
    S3(s3::S3Staging),
}

impl Store {
    /// Open the staging location of a spec, with its resolved values (see
    /// [`crate::resolve`]).
    pub async fn open(spec: &StagingSpec, resolved: &crate::resolve::ResolvedStaging) -> Result<Store, StageError> {
        let location = resolved.location.as_str();
        match StagingLocation::parse(location).map_err(|e| StageError::Config(e.message(location)))? {
            StagingLocation::S3 { bucket, prefix } => {
                let endpoint = resolved
                    .endpoint
                    .clone()
                    .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
                    .filter(|e| !e.is_empty());
                let path_style = spec.path_style.unwrap_or(endpoint.is_some());
                Ok(Store::S3(
                    s3::S3Staging::new(bucket, prefix, resolved.region.clone(), endpoint, path_style).await?,
                ))
            }
            StagingLocation::Folder(path) => Ok(Store::Local(local::LocalStaging::new(Path::new(path))?)),
        }
    }
}

impl Backend for Store {
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StageError> {
        match self {
            Store::Local(s) => s.put_file(key, path).await,
            Store::S3(s) => s.put_file(key, path).await,
        }
    }
    async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), StageError> {
        match self {
            Store::Local(s) => s.put_bytes(key, bytes).await,
            Store::S3(s) => s.put_bytes(key, bytes).await,
        }
    }
    async fn probe(&self, pipeline: &str, write: bool) -> Result<(), StageError> {
        match self {
            Store::Local(s) => s.probe(pipeline, write).await,
            Store::S3(s) => s.probe(pipeline, write).await,
        }
    }
    async fn delete(&self, key: &str) -> Result<(), StageError> {
        match self {
            Store::Local(s) => s.delete(key).await,
            Store::S3(s) => s.delete(key).await,
        }
    }
    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StageError> {
        match self {
            Store::Local(s) => s.get_bytes(key).await,
            Store::S3(s) => s.get_bytes(key).await,
        }
    }
    async fn open(&self, key: &str) -> Result<LocalObject, StageError> {
        match self {
            Store::Local(s) => s.open(key).await,
            Store::S3(s) => s.open(key).await,
        }
    }
    async fn verify(&self, object: &manifest::ObjectManifest) -> Result<(), String> {
        match self {
            Store::Local(s) => s.verify(object).await,
            Store::S3(s) => s.verify(object).await,
        }
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StageError> {
        match self {
            Store::Local(s) => s.list(prefix).await,
            Store::S3(s) => s.list(prefix).await,
        }
    }
    fn work_dir(&self) -> PathBuf {
        match self {
            Store::Local(s) => s.work_dir(),
            Store::S3(s) => s.work_dir(),
        }
    }
    fn describe(&self) -> String {
        match self {
            Store::Local(s) => s.describe(),
            Store::S3(s) => s.describe(),
        }
    }
}

/// Why two pipelines cannot share their staging: their locations nest, or one's keys
/// (or manifests) are keys the other would take for its own. `None` when they keep apart.
/// Locations are compared as written when a variable in them is unset.
pub fn shared_staging(a: &crate::spec::Pipeline, b: &crate::spec::Pipeline) -> Option<String> {
    let place = |p: &crate::spec::Pipeline| {
        let loc = &p.staging().location;
        let text = loc
            .resolve_with(crate::resolve::var)
            .unwrap_or_else(|_| loc.raw().to_string());
        let text = text
            .strip_prefix("file://")
            .unwrap_or(&text)
            .trim_end_matches('/')
            .to_string();
        text + "/"
    };
    let (la, lb) = (place(a), place(b));
    let (an, bn) = (a.name(), b.name());
    if la != lb {
        if la.starts_with(&lb) || lb.starts_with(&la) {
            return Some(format!(
                "the staging locations of `{an}` ({}) and `{bn}` ({}) nest, one inside the other: each would list the other's objects; give them separate locations",
                la.trim_end_matches('/'),
                lb.trim_end_matches('/')
            ));
        }
        return None;
    }
    if an == bn {
        return Some(format!(
            "two pipelines named `{an}` stage to {}: their runs and manifests would mix; rename one",
            la.trim_end_matches('/')
        ));
    }
    for (x, y) in [(a, b), (b, a)] {
        for r in x.resources() {
            let key = x.staging().key.sample(x.name(), &r.name);
            if y.run_of_key(&key).is_some() {
                return Some(format!(
                    "`{}`'s key `{key}` (resource `{}`) is also a key of `{}`'s template `{}` in the same location {}: its `gc` would take the other's objects for its own; change a key template or a location",
                    x.name(),
                    r.name,
                    y.name(),
                    y.staging().key.raw(),
                    la.trim_end_matches('/')
                ));
            }
        }
    }
    None
}

/// Where running extractions keep their markers: `{pipeline}/_running/{run_id}/{unix time}`.
pub const RUNNING_FOLDER: &str = "_running";
/// How often a running extraction renews its marker.
pub const MARKER_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);
/// A marker renewed within this long marks a run that is still being extracted.
pub const MARKER_FRESH: std::time::Duration = std::time::Duration::from_secs(600);

/// The marker of run `run_id` renewed at `at` (unix seconds).
pub fn marker_key(pipeline: &str, run_id: &str, at: i64) -> String {
    format!("{pipeline}/{RUNNING_FOLDER}/{run_id}/{at}")
}

/// The markers of a pipeline's runs: per run id, its marker keys and the newest renewal.
pub async fn markers(
    store: &impl Backend,
    pipeline: &str,
) -> Result<std::collections::BTreeMap<String, (Vec<String>, i64)>, StageError> {
    let prefix = format!("{pipeline}/{RUNNING_FOLDER}/");
    let mut out: std::collections::BTreeMap<String, (Vec<String>, i64)> = Default::default();
    for key in store.list(&prefix).await? {
        let Some((run_id, at)) = key.strip_prefix(&prefix).and_then(|r| r.split_once('/')) else {
            continue;
        };
        let (Some(at), true) = (at.parse::<i64>().ok(), crate::spec::pipeline::is_run_id(run_id)) else {
            continue;
        };
        let entry = out.entry(run_id.to_string()).or_default();
        entry.0.push(key.clone());
        entry.1 = entry.1.max(at);
    }
    Ok(out)
}

/// The in-progress marker of a running extraction: put when it starts, renewed every
/// [`MARKER_REFRESH`], removed when the run ends. `gc` leaves a run with a fresh marker
/// alone, however long ago it started.
pub struct Marker<'a, S: Backend> {
    store: &'a S,
    pipeline: String,
    run_id: String,
    key: Option<String>,
}

impl<'a, S: Backend> Marker<'a, S> {
    pub async fn put(store: &'a S, pipeline: &str, run_id: &str) -> Result<Self, StageError> {
        let mut m = Marker {
            store,
            pipeline: pipeline.to_string(),
            run_id: run_id.to_string(),
            key: None,
        };
        m.renew().await?;
        Ok(m)
    }

    /// A new marker under a new key (objects are never overwritten), then the old one
    /// removed.
    pub async fn renew(&mut self) -> Result<(), StageError> {
        let key = marker_key(&self.pipeline, &self.run_id, chrono::Utc::now().timestamp());
        if self.key.as_deref() == Some(key.as_str()) {
            return Ok(());
        }
        self.store.put_bytes(&key, Vec::new()).await?;
        if let Some(old) = self.key.replace(key) {
            self.store.delete(&old).await?;
        }
        Ok(())
    }

    pub async fn remove(self) -> Result<(), StageError> {
        match &self.key {
            Some(key) => self.store.delete(key).await,
            None => Ok(()),
        }
    }
}

/// Key of a run's manifest.
pub fn manifest_key(pipeline: &str, run_id: &str) -> String {
    format!("{pipeline}/_manifests/{run_id}.json")
}

/// Run ids of a pipeline's complete (manifested) runs, oldest first.
pub async fn complete_runs(store: &impl Backend, pipeline: &str) -> Result<Vec<String>, StageError> {
    let prefix = format!("{pipeline}/_manifests/");
    let mut ids: Vec<String> = store
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|k| {
            k.strip_prefix(&prefix)
                .and_then(|r| r.strip_suffix(".json"))
                .map(String::from)
        })
        .collect();
    ids.sort();
    Ok(ids)
}

/// Read a run's manifest; a run without one is incomplete.
pub async fn read_manifest(store: &impl Backend, pipeline: &str, run_id: &str) -> Result<Manifest, StageError> {
    let key = manifest_key(pipeline, run_id);
    let bytes = store.get_bytes(&key).await?;
    serde_json::from_slice(&bytes).map_err(|e| StageError::BadManifest {
        key,
        detail: e.to_string(),
    })
}

impl LocalObject {
    pub fn borrowed(path: PathBuf) -> Self {
        LocalObject { path, _temp: None }
    }
    pub fn temporary(temp: tempfile::TempPath) -> Self {
        LocalObject {
            path: temp.to_path_buf(),
            _temp: Some(temp),
        }
    }
}

/// The records of a staged object, parsed one line at a time (the parent records of a
/// `for_each` resource are read so, whatever their number).
pub struct StagedRecords {
    reader: std::io::BufReader<flate2::read::MultiGzDecoder<std::fs::File>>,
    line: Vec<u8>,
    /// Keeps a downloaded copy until the records are read.
    _local: LocalObject,
}

impl StagedRecords {
    pub fn open(local: LocalObject) -> std::io::Result<Self> {
        let file = std::fs::File::open(&local.path)?;
        Ok(StagedRecords {
            reader: std::io::BufReader::with_capacity(64 << 10, flate2::read::MultiGzDecoder::new(file)),
            line: Vec::new(),
            _local: local,
        })
    }
}

impl Iterator for StagedRecords {
    type Item = Result<serde_json::Value, String>;
    fn next(&mut self) -> Option<Self::Item> {
        use std::io::BufRead;
        self.line.clear();
        match self.reader.read_until(b'\n', &mut self.line) {
            Ok(0) => None,
            Ok(_) => Some(serde_json::from_slice(&self.line).map_err(|e| format!("a record is not valid JSON ({e})"))),
            Err(e) => Some(Err(e.to_string())),
        }
    }
}
