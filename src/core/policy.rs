//! Project policies as the registry applies them: reading and changing
//! them, usage against quotas, repository deletion, and a preview of what
//! retention rules would delete.

use serde::Serialize;

use super::retention::tags_to_delete;
use super::{Error, Registry, Result};
use crate::metadata::{now_ms, ProjectPolicy, QuotaUsage};
use crate::oci::RepoName;

/// Tags listed in a preview at most; the totals count them all.
const PREVIEW_TAGS: usize = 1_000;
const PREVIEW_BATCH: u32 = 500;

/// What retention rules would delete in a project now.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetentionPreview {
    pub tags_deleted: u64,
    pub tags_kept: u64,
    /// Repositories where a tag would go, with those tags (the first
    /// [`PREVIEW_TAGS`] over all).
    pub repositories: Vec<RepoPreview>,
    /// More tags would go than are listed.
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepoPreview {
    pub name: String,
    pub delete: Vec<String>,
    pub kept: u64,
}

impl Registry {
    pub async fn project_policy(&self, project: &str) -> Result<ProjectPolicy> {
        Ok(self.metadata.project_policy(project).await?)
    }

    /// Replaces a project's policy, after checking it is well formed.
    pub async fn set_project_policy(&self, project: &str, policy: &ProjectPolicy) -> Result<()> {
        policy.check().map_err(Error::Invalid)?;
        self.metadata.set_project_policy(project, policy).await?;
        Ok(())
    }

    pub async fn project_usage(&self, project: &str) -> Result<QuotaUsage> {
        Ok(self.metadata.quota_usage(project).await?)
    }

    /// Deletes a repository: its tags, manifests and blob links go at once
    /// (the bytes when garbage collection finds nothing else using them),
    /// and it leaves the catalog.
    pub async fn delete_repository(&self, repo: &RepoName) -> Result<()> {
        let policy = self.metadata.project_policy(repo.project()).await?;
        let deleted = self.metadata.delete_repository(repo, &policy).await;
        self.cache.invalidate();
        if deleted? {
            Ok(())
        } else {
            Err(Error::NameUnknown)
        }
    }

    /// What `policy`'s retention rules would delete in `project` now.
    pub async fn preview_retention(
        &self,
        project: &str,
        policy: &ProjectPolicy,
    ) -> Result<RetentionPreview> {
        let mut preview = RetentionPreview::default();
        let (mut after, mut listed) = (0, 0);
        let now = now_ms();
        // Bounded by the project's repositories, a batch at a time.
        for _ in 0..u32::MAX {
            let repos = self
                .metadata
                .sweep_repositories(Some(project), after, PREVIEW_BATCH)
                .await?;
            let Some(last) = repos.last() else { break };
            after = last.id;
            for repo in repos {
                let times = self.metadata.tag_times(repo.id).await?;
                let mut delete = tags_to_delete(policy, &times, now);
                preview.tags_deleted += delete.len() as u64;
                let kept = (times.len() - delete.len()) as u64;
                preview.tags_kept += kept;
                if delete.is_empty() {
                    continue;
                }
                let room = PREVIEW_TAGS - listed;
                preview.truncated |= delete.len() > room;
                delete.truncate(room);
                listed += delete.len();
                if !delete.is_empty() {
                    preview.repositories.push(RepoPreview {
                        name: repo.name.to_string(),
                        delete,
                        kept,
                    });
                }
            }
        }
        Ok(preview)
    }
}
