//! The PostgreSQL backend's project policies (the port of `sqlite_policy`):
//! quotas and tag immutability checked inside the writes they guard, with
//! the project's usage rows locked first so that pushes on two replicas
//! cannot both take the last unit of a quota; policy storage, pull times,
//! and repository deletion.

use async_trait::async_trait;

use super::pg_catalog::lock_usage;
use super::postgres::{retrying, PgMetadata, PgTx};
use super::sqlite_policy::{json_error, quota_error, refuse_immutable, PolicyRow};
use super::*;

/// A count quota of the project (`column` of `project_policies` against
/// `used` of `project_stats`) that one more would exceed: (limit, usage).
/// With such a quota the usage rows are locked before they are read.
async fn over_count_quota(
    tx: &mut PgTx,
    project: &str,
    (column, used): (&str, &str),
) -> Result<Option<(i64, i64)>> {
    let limited: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT {column} FROM project_policies WHERE project = $1 AND {column} IS NOT NULL"
    ))
    .bind(project)
    .fetch_optional(&mut **tx)
    .await?;
    if limited.is_none() {
        return Ok(None);
    }
    lock_usage(tx, project).await?;
    let query = format!(
        "SELECT p.{column}, COALESCE(s.{used}, 0) FROM project_policies p \
         LEFT JOIN project_stats s ON s.project = p.project \
         WHERE p.project = $1 AND p.{column} IS NOT NULL AND COALESCE(s.{used}, 0) + 1 > p.{column}"
    );
    Ok(sqlx::query_as(&query)
        .bind(project)
        .fetch_optional(&mut **tx)
        .await?)
}

/// Inside a manifest PUT's transaction: an immutable tag is not moved, and
/// a new tag or a repository's first manifest stays within the project's
/// count quotas. The caller holds the repository's lock, so a tag pushed
/// at once by another replica is seen here (and counted once).
pub(super) async fn check_manifest_push(
    tx: &mut PgTx,
    repo_id: i64,
    m: &NewManifest,
) -> Result<()> {
    let project = m.repo.project();
    if let Some(tag) = &m.tag {
        let current: Option<String> =
            sqlx::query_scalar("SELECT digest FROM tags WHERE repo_id = $1 AND name = $2")
                .bind(repo_id)
                .bind(tag.as_str())
                .fetch_optional(&mut **tx)
                .await?;
        match (current, &m.immutable_rule) {
            (Some(current), Some(rule)) if current != m.digest.to_string() => {
                return Err(MetadataError::ImmutableTag {
                    tag: tag.to_string(),
                    rule: rule.clone(),
                })
            }
            (Some(_), _) => {}
            (None, _) => {
                let quota = ("quota_tags", "tags");
                if let Some(over) = over_count_quota(tx, project, quota).await? {
                    return Err(quota_error(project, "tags", over));
                }
            }
        }
    }
    let held: i64 = sqlx::query_scalar(
        "SELECT COALESCE((SELECT manifests FROM repo_stats WHERE repo_id = $1), 0)",
    )
    .bind(repo_id)
    .fetch_one(&mut **tx)
    .await?;
    if held == 0 {
        let quota = ("quota_repositories", "repositories");
        if let Some(over) = over_count_quota(tx, project, quota).await? {
            return Err(quota_error(project, "repositories", over));
        }
    }
    Ok(())
}

/// Inside a manifest delete's transaction: none of the tags the delete
/// takes with it is immutable.
pub(super) async fn check_tags_deletable(
    tx: &mut PgTx,
    repo_id: i64,
    digest: &str,
    policy: &ProjectPolicy,
) -> Result<()> {
    if policy.immutable_tags.is_empty() {
        return Ok(());
    }
    let tags: Vec<String> =
        sqlx::query_scalar("SELECT name FROM tags WHERE repo_id = $1 AND digest = $2")
            .bind(repo_id)
            .bind(digest)
            .fetch_all(&mut **tx)
            .await?;
    refuse_immutable(tags, policy)
}

impl PgMetadata {
    async fn record_pulls_once(&self, pulls: &[(RepoName, String, i64)]) -> Result<()> {
        let repos: Vec<&str> = pulls.iter().map(|(r, _, _)| r.as_str()).collect();
        let tags: Vec<&str> = pulls.iter().map(|(_, t, _)| t.as_str()).collect();
        let times: Vec<i64> = pulls.iter().map(|(_, _, at)| *at).collect();
        sqlx::query(
            "UPDATE tags SET pulled_at = p.at FROM ( \
               SELECT r.id AS repo_id, j.tag, MAX(j.at) AS at \
               FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[]) j(repo, tag, at) \
               JOIN repositories r ON r.name = j.repo GROUP BY 1, 2) p \
             WHERE tags.repo_id = p.repo_id AND tags.name = p.tag \
               AND COALESCE(tags.pulled_at, 0) < p.at",
        )
        .bind(repos)
        .bind(tags)
        .bind(times)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_repository_once(
        &self,
        repo: &RepoName,
        policy: &ProjectPolicy,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // Locked first: a link or push into it on another replica waits,
        // then finds it gone and creates it afresh (see `repo_id_or_create`).
        let Some(repo_id) =
            sqlx::query_scalar::<_, i64>("SELECT id FROM repositories WHERE name = $1 FOR UPDATE")
                .bind(repo.as_str())
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Ok(false);
        };
        Self::lock_repository(&mut tx, repo_id).await?;
        if !policy.immutable_tags.is_empty() {
            let tags: Vec<String> = sqlx::query_scalar("SELECT name FROM tags WHERE repo_id = $1")
                .bind(repo_id)
                .fetch_all(&mut *tx)
                .await?;
            refuse_immutable(tags, policy)?;
        }
        // Children first, one table at a time, while the repository row
        // still names the project whose counters the usage triggers keep.
        for table in [
            "DELETE FROM tags WHERE repo_id = $1",
            "DELETE FROM manifest_refs WHERE repo_id = $1",
            "DELETE FROM manifests WHERE repo_id = $1",
            "DELETE FROM repo_blobs WHERE repo_id = $1",
            "DELETE FROM uploads WHERE repo_id = $1",
            "DELETE FROM repositories WHERE id = $1",
        ] {
            sqlx::query(table).bind(repo_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

#[async_trait]
impl Policies for PgMetadata {
    async fn project_policy(&self, project: &str) -> Result<ProjectPolicy> {
        let row: Option<PolicyRow> = sqlx::query_as(
            "SELECT quota_bytes, quota_repositories, quota_tags, untagged_days, immutable_tags, \
             retention FROM project_policies WHERE project = $1",
        )
        .bind(project)
        .fetch_optional(&self.pool)
        .await?;
        let Some((bytes, repositories, tags, untagged, immutable, retention)) = row else {
            return Ok(ProjectPolicy::default());
        };
        Ok(ProjectPolicy {
            quota_bytes: bytes.map(|v| v as u64),
            quota_repositories: repositories.map(|v| v as u64),
            quota_tags: tags.map(|v| v as u64),
            untagged_days: untagged.map(|v| v as u32),
            immutable_tags: serde_json::from_str(&immutable).map_err(json_error)?,
            retention: serde_json::from_str(&retention).map_err(json_error)?,
        })
    }

    async fn set_project_policy(&self, project: &str, policy: &ProjectPolicy) -> Result<()> {
        let immutable = serde_json::to_string(&policy.immutable_tags).map_err(json_error)?;
        let retention = serde_json::to_string(&policy.retention).map_err(json_error)?;
        sqlx::query(
            "INSERT INTO project_policies (project, quota_bytes, quota_repositories, quota_tags, \
             untagged_days, immutable_tags, retention, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (project) DO UPDATE SET quota_bytes = excluded.quota_bytes, \
             quota_repositories = excluded.quota_repositories, quota_tags = excluded.quota_tags, \
             untagged_days = excluded.untagged_days, immutable_tags = excluded.immutable_tags, \
             retention = excluded.retention, updated_at = excluded.updated_at",
        )
        .bind(project)
        .bind(policy.quota_bytes.map(|v| v as i64))
        .bind(policy.quota_repositories.map(|v| v as i64))
        .bind(policy.quota_tags.map(|v| v as i64))
        .bind(policy.untagged_days.map(i64::from))
        .bind(immutable)
        .bind(retention)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn quota_usage(&self, project: &str) -> Result<QuotaUsage> {
        let row: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT bytes, repositories, tags FROM project_stats WHERE project = $1",
        )
        .bind(project)
        .fetch_optional(&self.pool)
        .await?;
        let (bytes, repositories, tags) = row.unwrap_or_default();
        Ok(QuotaUsage {
            bytes: bytes.max(0) as u64,
            repositories: repositories.max(0) as u64,
            tags: tags.max(0) as u64,
        })
    }

    async fn projects_with_policies(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT project FROM project_policies ORDER BY project")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn record_pulls(&self, pulls: &[(RepoName, String, i64)]) -> Result<()> {
        if pulls.is_empty() {
            return Ok(());
        }
        retrying(|| self.record_pulls_once(pulls)).await
    }

    async fn delete_repository(&self, repo: &RepoName, policy: &ProjectPolicy) -> Result<bool> {
        retrying(|| self.delete_repository_once(repo, policy)).await
    }
}
