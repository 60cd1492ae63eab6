//! The run manifest: written last, it makes a run complete and says what it holds.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub run_id: String,
    pub pipeline: String,
    /// SHA-256 of the spec file the run was extracted with.
    pub spec_hash: String,
    pub sluice_version: String,
    /// The run's logical time (`meta: run_time` columns, `{run_time}` in keys).
    #[serde(default)]
    pub run_time: Option<String>,
    pub started_at: String,
    pub finished_at: String,
    pub resources: Vec<ResourceManifest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceManifest {
    pub name: String,
    pub pages: u64,
    pub records: u64,
    /// Parent records of a `for_each` resource whose request answered 404 and were
    /// skipped (`on_missing: skip`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u64,
    pub objects: Vec<ObjectManifest>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectManifest {
    pub key: String,
    pub records: u64,
    /// Size of the stored (compressed) object.
    pub bytes: u64,
    /// SHA-256 of the stored object.
    pub sha256: String,
}
