//! Read-only summaries for people browsing the registry (the web UI):
//! per-project and per-repository usage, tag pages sorted by name or push
//! time, and repository search.
//!
//! Contract: these reads never change anything and never decide who may see
//! what (the caller filters by permission). Every list is bounded: tag pages
//! by `limit`, search by `limit`, a project's repositories by `limit`. Sizes are the bytes of distinct blobs
//! (configs and layers), so a layer shared by two tags counts once. Times
//! are Unix milliseconds.

use async_trait::async_trait;
use bytes::Bytes;

use super::Result;
use crate::oci::{Digest, RepoName};

/// A project's footprint: repositories holding manifests, storage, last push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectUsage {
    pub project: String,
    pub repositories: u64,
    pub storage_bytes: u64,
    pub last_push: Option<i64>,
}

/// One repository with its tag count, storage and last push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSummary {
    pub name: String,
    pub tags: u64,
    pub storage_bytes: u64,
    pub last_push: Option<i64>,
}

/// The order of a tag page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TagOrder {
    /// Lexical by tag name.
    #[default]
    Name,
    /// Most recently pushed first.
    Pushed,
}

/// One tag with what its manifest references.
#[derive(Debug, Clone, PartialEq)]
pub struct TagRow {
    pub name: String,
    pub digest: Digest,
    pub media_type: String,
    /// Distinct config and layer bytes, including an index's children's.
    pub size_bytes: u64,
    pub pushed_at: i64,
    /// The manifest itself when it is an index (its children's platforms).
    pub index: Option<Bytes>,
}

/// One page of a repository's tags and how many there are in all.
#[derive(Debug, Clone, PartialEq)]
pub struct TagPage {
    pub total: u64,
    pub tags: Vec<TagRow>,
}

#[async_trait]
pub trait Browse: Send + Sync {
    /// Usage of those of `projects` that have a repository with a manifest,
    /// ordered by name: read from counters kept up to date by every write,
    /// so its cost is one row per project, whatever the projects hold.
    async fn project_usage(&self, projects: &[String]) -> Result<Vec<ProjectUsage>>;
    /// At most `limit` repositories of `project` (its name and
    /// `project/...`) holding a manifest, lexically ordered, the first after
    /// `after` (`""` for the first page).
    async fn repositories_in(
        &self,
        project: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<RepoSummary>>;
    /// `limit` tags of `repo` after skipping `offset`; `None` when the
    /// repository is unknown.
    async fn tags_page(
        &self,
        repo: &RepoName,
        order: TagOrder,
        offset: u64,
        limit: u32,
    ) -> Result<Option<TagPage>>;
    /// Tags of `repo` pointing at `digest`, lexically ordered.
    async fn tags_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<String>>;
    /// Repositories whose name contains `needle` and that `visible` admits,
    /// lexically ordered, at most `limit`.
    async fn search_repositories(
        &self,
        needle: &str,
        visible: &super::Visible,
        limit: u32,
    ) -> Result<Vec<RepoSummary>>;
}

/// Web UI sessions ended before their expiry (logout), so that a copy of an
/// ended session's cookie is refused everywhere.
#[async_trait]
pub trait EndedSessions: Send + Sync {
    /// Records `id` as ended until `expires_at` (unix seconds); forgets
    /// records whose expiry has passed.
    async fn end_session(&self, id: &str, expires_at: i64) -> Result<()>;
    async fn session_ended(&self, id: &str) -> Result<bool>;
}
