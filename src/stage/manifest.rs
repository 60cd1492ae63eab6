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
    /// Extracted with `--limit`: each resource stopped after that many records.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub limited: bool,
    pub resources: Vec<ResourceManifest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceManifest {
    pub name: String,
    pub pages: u64,
    pub records: u64,
    /// The number of records the API reported holding (its last page's total), when it
    /// did; summed over the parents of a `for_each` resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_total: Option<u64>,
    /// Parent records (or list values) of a `for_each` resource whose first request a
    /// response rule ignored (`on_missing: skip` is the 404 one), and were skipped.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u64,
    /// Responses an `ignore` rule held for (`on_response`), each a page left out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ignored: u64,
    /// For an incremental resource: where the run started and the highest cursor read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<IncrementalRun>,
    pub objects: Vec<ObjectManifest>,
}

/// The window an incremental resource's run read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncrementalRun {
    /// The start sent to the API.
    pub start: String,
    /// The highest cursor of the records staged; none when there was no record. For a
    /// resource read as date windows, the end of the last window read.
    pub highest: Option<String>,
    /// Read as date windows: how many were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<u32>,
    /// Date windows left for the next rounds of a `run` that commits each window.
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub windows_left: u32,
}

fn is_zero32(n: &u32) -> bool {
    *n == 0
}

impl Manifest {
    /// Per resource with ignored responses, how many.
    pub fn ignored(&self) -> Vec<(String, u64)> {
        self.resources
            .iter()
            .filter(|r| r.ignored > 0)
            .map(|r| (r.name.clone(), r.ignored))
            .collect()
    }

    /// Per incremental resource that staged records, its highest cursor.
    pub fn highest(&self) -> Vec<(String, String)> {
        self.resources
            .iter()
            .filter_map(|r| Some((r.name.clone(), r.incremental.as_ref()?.highest.clone()?)))
            .collect()
    }
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
