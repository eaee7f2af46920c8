//! Storage lifecycle roles: garbage-collection runs and sweeps, and project
//! policies (quotas, tag immutability, untagged manifests, retention).
//!
//! The collection protocol (docs/GC.md) lives in these
//! contracts: a blob row is `live`, `deleting` or `corrupt`; a sweep flips
//! unreferenced, untouched blobs to `deleting` in the transaction that checks
//! them, and only then are their bytes removed; a link is never made to a
//! `deleting` blob (`BlobDeleting`), so no interleaving with an upload, a
//! mount or a manifest PUT can leave a reference to removed bytes.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Result;
use crate::oci::{Digest, RepoName};

/// Counts and bytes of one collection run. "Marked" is what stays
/// (reachable), "swept" what the run removed (or, dry, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GcStats {
    pub repositories_scanned: u64,
    pub manifests_marked: u64,
    pub blobs_marked: u64,
    pub bytes_marked: u64,
    pub tags_swept: u64,
    pub manifests_swept: u64,
    pub links_swept: u64,
    pub repositories_swept: u64,
    pub blobs_swept: u64,
    pub bytes_freed: u64,
}

impl GcStats {
    pub fn add(&mut self, swept: &RepoSwept) {
        self.repositories_scanned += 1;
        self.tags_swept += swept.tags;
        self.manifests_swept += swept.manifests;
        self.links_swept += swept.links;
        self.repositories_swept += u64::from(swept.repository);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GcState {
    Requested,
    Running,
    Succeeded,
    Failed,
}

impl GcState {
    pub fn as_str(self) -> &'static str {
        match self {
            GcState::Requested => "requested",
            GcState::Running => "running",
            GcState::Succeeded => "succeeded",
            GcState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<GcState> {
        [
            GcState::Requested,
            GcState::Running,
            GcState::Succeeded,
            GcState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }
}

/// One collection run, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcRun {
    pub id: i64,
    pub state: GcState,
    pub dry_run: bool,
    pub requested_by: String,
    /// Unix ms.
    pub requested_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// What the run is doing (`repositories`, `blobs`), while it runs.
    pub phase: Option<String>,
    pub stats: GcStats,
    pub error: Option<String>,
}

/// A run could not be requested: this one is requested or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcBusy(pub i64);

/// Run bookkeeping. One run at a time, whichever process asks.
#[async_trait]
pub trait GcRuns: Send + Sync {
    /// Records a requested run, unless one is requested or running.
    async fn request_gc(&self, dry_run: bool, by: &str) -> Result<Result<GcRun, GcBusy>>;
    /// Marks failed every running run whose heartbeat is older than
    /// `stale_before` (Unix ms; its process died), then takes the requested
    /// run, if any, for `holder`.
    async fn claim_gc(&self, holder: &str, stale_before: i64) -> Result<Option<GcRun>>;
    /// Renews `holder`'s lease on a running run and records its progress;
    /// `false` when the run is no longer `holder`'s (do not go on).
    async fn gc_heartbeat(
        &self,
        id: i64,
        holder: &str,
        phase: &str,
        stats: &GcStats,
    ) -> Result<bool>;
    /// Ends a run: succeeded with `stats`, or failed with `error`.
    async fn finish_gc(
        &self,
        id: i64,
        holder: &str,
        stats: &GcStats,
        error: Option<&str>,
    ) -> Result<()>;
    async fn gc_run(&self, id: i64) -> Result<Option<GcRun>>;
    /// Runs, newest first, with an id below `before`.
    async fn gc_runs(&self, before: Option<i64>, limit: u32) -> Result<Vec<GcRun>>;
    /// When the newest run that did not fail was requested (Unix ms).
    async fn last_gc(&self) -> Result<Option<i64>>;
}

/// A repository as a sweep sees it.
#[derive(Debug, Clone)]
pub struct SweepRepo {
    pub id: i64,
    pub name: RepoName,
}

/// A tag with the times retention rules look at (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagTimes {
    pub name: String,
    pub pushed_at: i64,
    pub pulled_at: Option<i64>,
}

/// What to remove from one repository.
#[derive(Debug, Clone, Default)]
pub struct RepoPlan {
    /// Tags to delete (retention).
    pub tags: Vec<String>,
    /// Manifests pushed before this (Unix ms) that no kept tag, index or
    /// subject reaches are deleted; `None` keeps untagged manifests.
    pub untagged_before: Option<i64>,
    /// Blob links not touched since (Unix ms) and not referenced by a kept
    /// manifest are removed; an empty repository created before it goes.
    pub links_before: i64,
}

/// What a sweep of one repository removed (or would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoSwept {
    pub tags: u64,
    pub manifests: u64,
    pub links: u64,
    /// The repository itself (nothing left in it).
    pub repository: bool,
}

/// A blob that a sweep removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweptBlob {
    pub digest: Digest,
    pub size: u64,
}

/// The sweeps of a collection run. Each method is one transaction.
#[async_trait]
pub trait GcSweep: Send + Sync {
    /// Repositories (of `project`, or all) with an id above `after`, by id.
    async fn sweep_repositories(
        &self,
        project: Option<&str>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<SweepRepo>>;
    /// Every tag of a repository with its push and pull times.
    async fn tag_times(&self, repo_id: i64) -> Result<Vec<TagTimes>>;
    /// Applies `plan` to one repository; with `dry_run`, only counts, and
    /// records the links it would remove under `run` for [`Self::flip_blobs`].
    async fn sweep_repository(
        &self,
        repo_id: i64,
        plan: &RepoPlan,
        run: i64,
        dry_run: bool,
    ) -> Result<RepoSwept>;
    /// Flips to `deleting` (for `run`) up to `limit` blobs with digests above
    /// `after` that no link holds and nothing touched since `before`, and
    /// returns them, by digest; empty when there are none above `after`
    /// (fewer than `limit` does not mean the last batch: a candidate linked
    /// meanwhile is skipped). With `dry_run` nothing changes, and links
    /// recorded by the dry sweep count as gone.
    async fn flip_blobs(
        &self,
        after: Option<&Digest>,
        before: i64,
        run: i64,
        limit: u32,
        dry_run: bool,
    ) -> Result<Vec<SweptBlob>>;
    /// Blobs left `deleting` by runs other than `run` that are not running.
    async fn abandoned_blobs(&self, run: i64, limit: u32) -> Result<Vec<SweptBlob>>;
    /// Removes the rows of `deleting` blobs whose bytes are gone.
    async fn forget_blobs(&self, digests: &[Digest]) -> Result<()>;
    /// Whether requests' writes are waiting for the backend right now: a
    /// run rests between its steps while they are, and goes on at full
    /// speed while they are not.
    fn writes_waiting(&self) -> bool;
    /// What stays: (manifests, blobs, bytes of those blobs); clears what a
    /// dry run of `run` recorded.
    async fn gc_marked(&self, run: i64) -> Result<(u64, u64, u64)>;
}

/// Retention rules of a project. A tag is deleted when a delete rule
/// selects it (or, with keep rules only, when no keep rule keeps it), and
/// never when a keep rule keeps it or an immutability rule protects it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Keep the N most recently pushed tags of each repository.
    pub keep_last: Option<u32>,
    /// Keep tags matching any of these patterns (`*` any run, `?` one character).
    pub keep_patterns: Vec<String>,
    /// Delete tags pushed more than D days ago.
    pub delete_older_than_days: Option<u32>,
    /// Delete tags not pulled for D days (never pulled: since their push).
    pub delete_unpulled_days: Option<u32>,
}

impl Retention {
    pub fn is_empty(&self) -> bool {
        *self == Retention::default()
    }
}

/// A project's lifecycle settings. Absent fields: no limit, nothing
/// immutable, untagged manifests kept, no retention.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectPolicy {
    /// Most bytes of distinct blobs the project's repositories may link.
    pub quota_bytes: Option<u64>,
    /// Most repositories holding a manifest.
    pub quota_repositories: Option<u64>,
    /// Most tags over all its repositories.
    pub quota_tags: Option<u64>,
    /// Delete untagged manifests this many days after their push.
    pub untagged_days: Option<u32>,
    /// Tags matching these patterns are pushed once, never moved or deleted.
    pub immutable_tags: Vec<String>,
    pub retention: Retention,
}

impl ProjectPolicy {
    /// Why the policy cannot be applied, if it cannot.
    pub fn check(&self) -> std::result::Result<(), String> {
        let patterns: Vec<&String> = self
            .immutable_tags
            .iter()
            .chain(&self.retention.keep_patterns)
            .collect();
        if patterns.len() > 100 {
            return Err("at most 100 tag patterns".into());
        }
        for p in patterns {
            if p.is_empty()
                || p.len() > 128
                || p.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(format!(
                    "tag pattern {p:?}: 1 to 128 characters, no spaces (`*` and `?` are wildcards)"
                ));
            }
        }
        Ok(())
    }

    /// The immutability rule protecting `tag`, if any.
    pub fn immutable_rule(&self, tag: &str) -> Option<&str> {
        self.immutable_tags
            .iter()
            .map(String::as_str)
            .find(|p| glob_matches(p, tag))
    }
}

/// What a project uses, as quotas count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QuotaUsage {
    /// Bytes of the distinct blobs its repositories link.
    pub bytes: u64,
    /// Repositories holding at least one manifest.
    pub repositories: u64,
    pub tags: u64,
}

#[async_trait]
pub trait Policies: Send + Sync {
    async fn project_policy(&self, project: &str) -> Result<ProjectPolicy>;
    async fn set_project_policy(&self, project: &str, policy: &ProjectPolicy) -> Result<()>;
    async fn quota_usage(&self, project: &str) -> Result<QuotaUsage>;
    /// Projects that have a policy, by name.
    async fn projects_with_policies(&self) -> Result<Vec<String>>;
    /// Records pulls of tags (repository, tag, Unix ms), in one write.
    async fn record_pulls(&self, pulls: &[(RepoName, String, i64)]) -> Result<()>;
    /// Deletes a repository with its tags, manifests, links and uploads;
    /// whether it existed. Refused with `ImmutableTag` while it holds a
    /// tag an immutability rule of `policy` protects.
    async fn delete_repository(&self, repo: &RepoName, policy: &ProjectPolicy) -> Result<bool>;
}

/// Shell-style match: `*` matches any run of characters, `?` one.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // The last `*` seen and where in the text it is trying.
    let (mut pi, mut ti, mut star) = (0, 0, None::<(usize, usize)>);
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_matches;

    #[test]
    fn globs_match_like_a_shell() {
        for (p, t) in [
            ("v*", "v1.2"),
            ("release-*", "release-"),
            ("*", ""),
            ("a?c", "abc"),
        ] {
            assert!(glob_matches(p, t), "{p} {t}");
        }
        for (p, t) in [
            ("v*", "latest"),
            ("a?c", "ac"),
            ("*-rc", "1.0-rc1"),
            ("v1", "v10"),
        ] {
            assert!(!glob_matches(p, t), "{p} {t}");
        }
        assert!(glob_matches("*a*b*", "xxaxxbxx"));
    }
}
