//! Scrub runs: re-hashing stored blobs, recording what is corrupt or
//! missing, and quarantining it (state `corrupt`: never served; a new
//! upload of the same digest makes it `live` again).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{GcState, Result, SweptBlob};
use crate::oci::Digest;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScrubStats {
    /// Blobs to check when the run started.
    pub total: u64,
    pub checked: u64,
    pub bytes_checked: u64,
    pub corrupt: u64,
    pub missing: u64,
}

/// A blob a scrub found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubProblem {
    pub digest: String,
    /// `missing`, or what the bytes hash to / how many there are.
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScrubRun {
    pub id: i64,
    pub state: GcState,
    pub requested_by: String,
    pub requested_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The last digest checked: the run goes on after it.
    pub cursor: Option<String>,
    pub stats: ScrubStats,
    /// The first problems found (at most [`MAX_PROBLEMS`]); the counts
    /// in `stats` cover them all.
    pub problems: Vec<ScrubProblem>,
    pub error: Option<String>,
}

pub const MAX_PROBLEMS: usize = 1_000;

#[async_trait]
pub trait Scrubs: Send + Sync {
    /// Records a requested run, unless one is requested or running (its id).
    async fn request_scrub(&self, by: &str) -> Result<Result<ScrubRun, i64>>;
    /// Marks failed the running run whose heartbeat is older than
    /// `stale_before`, then takes the requested one; it resumes after the
    /// cursor of the newest run when that one did not finish.
    async fn claim_scrub(&self, stale_before: i64) -> Result<Option<ScrubRun>>;
    /// Records progress (and renews the heartbeat) of a running run;
    /// `false` when it is no longer running.
    async fn save_scrub(&self, run: &ScrubRun) -> Result<bool>;
    /// Ends a run as `run.state` says.
    async fn finish_scrub(&self, run: &ScrubRun) -> Result<()>;
    async fn scrub_run(&self, id: i64) -> Result<Option<ScrubRun>>;
    async fn scrub_runs(&self, before: Option<i64>, limit: u32) -> Result<Vec<ScrubRun>>;
    /// Live blobs after `after`, by digest; and how many there are after it.
    async fn scrub_batch(&self, after: Option<&str>, limit: u32) -> Result<(Vec<SweptBlob>, u64)>;
    /// Quarantines a blob: `corrupt`, never served until uploaded again.
    async fn mark_corrupt(&self, digest: &Digest) -> Result<()>;
}
