//! The SQLite backend's project policies: quotas and tag immutability as
//! checked inside the writes they guard, policy storage, pull times, and
//! repository deletion.

use async_trait::async_trait;
use sqlx::{Sqlite, SqliteConnection, Transaction};

use super::sqlite::{SqliteMetadata, REPO_ID};
use super::*;

/// A count quota of the project (`column` of `project_policies` against
/// `used` of `project_stats`) that one more would exceed: (limit, usage).
async fn over_count_quota(
    conn: &mut SqliteConnection,
    project: &str,
    column: &str,
    used: &str,
) -> Result<Option<(i64, i64)>> {
    let query = format!(
        "SELECT p.{column}, COALESCE(s.{used}, 0) FROM project_policies p \
         LEFT JOIN project_stats s ON s.project = p.project \
         WHERE p.project = ?1 AND p.{column} IS NOT NULL AND COALESCE(s.{used}, 0) + 1 > p.{column}"
    );
    Ok(sqlx::query_as(&query)
        .bind(project)
        .fetch_optional(&mut *conn)
        .await?)
}

pub(super) fn quota_error(
    project: &str,
    what: &'static str,
    (limit, usage): (i64, i64),
) -> MetadataError {
    MetadataError::QuotaExceeded {
        project: project.to_string(),
        what,
        usage: usage as u64,
        limit: limit as u64,
        adding: 1,
    }
}

/// Inside a manifest PUT's transaction: an immutable tag is not moved, and
/// a new tag or a repository's first manifest stays within the project's
/// count quotas.
pub(super) async fn check_manifest_push(
    tx: &mut Transaction<'_, Sqlite>,
    repo_id: i64,
    m: &NewManifest,
) -> Result<()> {
    let project = m.repo.project();
    if let Some(tag) = &m.tag {
        let current: Option<String> =
            sqlx::query_scalar("SELECT digest FROM tags WHERE repo_id = ? AND name = ?")
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
                if let Some(over) = over_count_quota(tx, project, "quota_tags", "tags").await? {
                    return Err(quota_error(project, "tags", over));
                }
            }
        }
    }
    let held: i64 = sqlx::query_scalar(
        "SELECT COALESCE((SELECT manifests FROM repo_stats WHERE repo_id = ?), 0)",
    )
    .bind(repo_id)
    .fetch_one(&mut **tx)
    .await?;
    if held == 0 {
        if let Some(over) =
            over_count_quota(tx, project, "quota_repositories", "repositories").await?
        {
            return Err(quota_error(project, "repositories", over));
        }
    }
    Ok(())
}

/// Inside a manifest delete's transaction: none of the tags the delete
/// takes with it is immutable.
pub(super) async fn check_tags_deletable(
    tx: &mut Transaction<'_, Sqlite>,
    repo_id: i64,
    digest: &str,
    policy: &ProjectPolicy,
) -> Result<()> {
    if policy.immutable_tags.is_empty() {
        return Ok(());
    }
    let tags: Vec<String> =
        sqlx::query_scalar("SELECT name FROM tags WHERE repo_id = ? AND digest = ?")
            .bind(repo_id)
            .bind(digest)
            .fetch_all(&mut **tx)
            .await?;
    refuse_immutable(tags, policy)
}

pub(super) fn refuse_immutable(tags: Vec<String>, policy: &ProjectPolicy) -> Result<()> {
    for tag in tags {
        if let Some(rule) = policy.immutable_rule(&tag) {
            return Err(MetadataError::ImmutableTag {
                rule: rule.to_string(),
                tag,
            });
        }
    }
    Ok(())
}

pub(super) fn json_error(e: serde_json::Error) -> MetadataError {
    MetadataError::Corrupt(format!("project policy: {e}"))
}

pub(super) type PolicyRow = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    String,
    String,
);

#[async_trait]
impl Policies for SqliteMetadata {
    async fn project_policy(&self, project: &str) -> Result<ProjectPolicy> {
        let row: Option<PolicyRow> = sqlx::query_as(
            "SELECT quota_bytes, quota_repositories, quota_tags, untagged_days, immutable_tags, \
             retention FROM project_policies WHERE project = ?",
        )
        .bind(project)
        .fetch_optional(&self.read)
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
        let mut w = self.writer().await?;
        sqlx::query(
            "INSERT INTO project_policies (project, quota_bytes, quota_repositories, quota_tags, \
             untagged_days, immutable_tags, retention, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
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
        .execute(w.conn())
        .await?;
        w.done();
        Ok(())
    }

    async fn quota_usage(&self, project: &str) -> Result<QuotaUsage> {
        let row: Option<(i64, i64, i64)> =
            sqlx::query_as("SELECT bytes, repositories, tags FROM project_stats WHERE project = ?")
                .bind(project)
                .fetch_optional(&self.read)
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
                .fetch_all(&self.read)
                .await?,
        )
    }

    async fn record_pulls(&self, pulls: &[(RepoName, String, i64)]) -> Result<()> {
        if pulls.is_empty() {
            return Ok(());
        }
        let rows: Vec<(&str, &str, i64)> = pulls
            .iter()
            .map(|(repo, tag, at)| (repo.as_str(), tag.as_str(), *at))
            .collect();
        let json = serde_json::to_string(&rows).map_err(json_error)?;
        let mut w = self.writer().await?;
        sqlx::query(
            "UPDATE tags SET pulled_at = p.at FROM ( \
               SELECT r.id AS repo_id, j.value ->> 1 AS tag, MAX(j.value ->> 2) AS at \
               FROM json_each(?) j JOIN repositories r ON r.name = j.value ->> 0 \
               GROUP BY 1, 2) p \
             WHERE tags.repo_id = p.repo_id AND tags.name = p.tag \
               AND COALESCE(tags.pulled_at, 0) < p.at",
        )
        .bind(json)
        .execute(w.conn())
        .await?;
        w.done();
        Ok(())
    }

    async fn delete_repository(&self, repo: &RepoName, policy: &ProjectPolicy) -> Result<bool> {
        let mut w = self.writer().await?;
        let mut tx = w.begin().await?;
        let Some(repo_id) = sqlx::query_scalar::<_, i64>(REPO_ID)
            .bind(repo.as_str())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(false);
        };
        if !policy.immutable_tags.is_empty() {
            let tags: Vec<String> = sqlx::query_scalar("SELECT name FROM tags WHERE repo_id = ?")
                .bind(repo_id)
                .fetch_all(&mut *tx)
                .await?;
            refuse_immutable(tags, policy)?;
        }
        // Children first, one table at a time, while the repository row
        // still names the project whose counters the usage triggers keep.
        for table in [
            "DELETE FROM tags WHERE repo_id = ?",
            "DELETE FROM manifest_refs WHERE repo_id = ?",
            "DELETE FROM manifests WHERE repo_id = ?",
            "DELETE FROM repo_blobs WHERE repo_id = ?",
            "DELETE FROM uploads WHERE repo_id = ?",
            "DELETE FROM repositories WHERE id = ?",
        ] {
            sqlx::query(table).bind(repo_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        w.done();
        Ok(true)
    }
}
