//! What the web UI reads beyond the registry's own calls: the browse
//! queries (usage, repository and tag pages, search) and the record of
//! ended UI sessions. It holds those two metadata roles only, not the whole
//! backend.

use std::sync::Arc;

use crate::metadata::{
    Browse, EndedSessions, ProjectUsage, RepoSummary, Result, TagOrder, TagPage, Visible,
};
use crate::oci::{Digest, RepoName};

/// Read-only browsing of what the registry holds, and ended sessions.
#[derive(Clone)]
pub struct Browser {
    browse: Arc<dyn Browse>,
    sessions: Arc<dyn EndedSessions>,
}

impl Browser {
    pub fn new(browse: Arc<dyn Browse>, sessions: Arc<dyn EndedSessions>) -> Browser {
        Browser { browse, sessions }
    }

    /// Usage of those of `projects` that hold a manifest, by name.
    pub async fn project_usage(&self, projects: &[String]) -> Result<Vec<ProjectUsage>> {
        self.browse.project_usage(projects).await
    }

    /// At most `limit` repositories of `project` after `after`.
    pub async fn repositories_in(
        &self,
        project: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<RepoSummary>> {
        self.browse.repositories_in(project, after, limit).await
    }

    /// `limit` tags of `repo` after `offset`; `None` for an unknown repository.
    pub async fn tags_page(
        &self,
        repo: &RepoName,
        order: TagOrder,
        offset: u64,
        limit: u32,
    ) -> Result<Option<TagPage>> {
        self.browse.tags_page(repo, order, offset, limit).await
    }

    /// Tags of `repo` pointing at `digest`, lexically ordered.
    pub async fn tags_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<String>> {
        self.browse.tags_of(repo, digest).await
    }

    /// At most `limit` repositories `visible` admits whose name contains `needle`.
    pub async fn search_repositories(
        &self,
        needle: &str,
        visible: &Visible,
        limit: u32,
    ) -> Result<Vec<RepoSummary>> {
        self.browse
            .search_repositories(needle, visible, limit)
            .await
    }

    /// Records UI session `id` as ended until `expires_at` (unix seconds).
    pub async fn end_session(&self, id: &str, expires_at: i64) -> Result<()> {
        self.sessions.end_session(id, expires_at).await
    }

    pub async fn session_ended(&self, id: &str) -> Result<bool> {
        self.sessions.session_ended(id).await
    }
}
