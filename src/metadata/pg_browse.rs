//! `Browse` and `EndedSessions` on PostgreSQL. As on SQLite, every query
//! stays inside one repository's key range or reads counters (`repo_stats`,
//! `project_stats`), so a page costs a page's worth of work.

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::browse::{Browse, EndedSessions, ProjectUsage, RepoSummary, TagOrder, TagPage, TagRow};
use super::postgres::{retrying, REPO_ID, VISIBLE_PROJECTS};
use super::sqlite::visible_params;
use super::sqlite_browse::{contains_pattern, name_byte};
use super::{MetadataError, PgMetadata, Result, Visible};
use crate::oci::{media, Digest, RepoName};

/// Tag count, distinct blob bytes and last push of a repository, from its
/// counters `s` (`repo_stats`).
const REPO_STATS: &str = "s.tags, s.bytes, s.last_push";

/// Usage of the projects named in the array $1: one counter row each.
const PROJECT_USAGE: &str = "SELECT project, repositories, bytes, last_push FROM project_stats \
     WHERE project = ANY($1) AND repositories > 0 ORDER BY project";

/// A page of project $1's repositories holding a manifest, after name $2.
fn repositories_in_query() -> String {
    format!(
        "SELECT r.name, {REPO_STATS} FROM repositories r JOIN repo_stats s ON s.repo_id = r.id \
         WHERE r.project = $1 AND r.name > $2 AND s.manifests > 0 ORDER BY r.name LIMIT $3"
    )
}

const TAG_COUNT: &str = "SELECT tags FROM repo_stats WHERE repo_id = $1";

fn summary(row: PgRow) -> Result<RepoSummary> {
    Ok(RepoSummary {
        name: row.try_get(0)?,
        tags: row.try_get::<i64, _>(1)? as u64,
        storage_bytes: row.try_get::<i64, _>(2)? as u64,
        last_push: row.try_get(3)?,
    })
}

/// Search over every repository: $1 = LIKE pattern, $2 = limit.
fn search_all() -> String {
    format!(
        "SELECT r.name, {REPO_STATS} FROM repositories r \
         JOIN repo_stats s ON s.repo_id = r.id \
         WHERE r.name LIKE $1 ESCAPE '\\' AND s.manifests > 0 \
         ORDER BY r.name LIMIT $2"
    )
}

/// Search over the restricted caller's repositories, read by project
/// ($1, $2 as in `VISIBLE_PROJECTS`, $3 = LIKE pattern, $4 = limit).
fn search_visible() -> String {
    format!(
        "SELECT r.name, {REPO_STATS} FROM ({VISIBLE_PROJECTS}) p \
         JOIN repositories r ON r.project = p.name \
         JOIN repo_stats s ON s.repo_id = r.id \
         WHERE r.name LIKE $3 ESCAPE '\\' AND s.manifests > 0 \
         ORDER BY r.name LIMIT $4"
    )
}

/// One page of a repository's tags ($1 repo id, $4 limit, $5 offset) with
/// each tag's size and, for an index ($2, $3), its content.
fn tags_page_query(order_by: &str) -> String {
    // The page is chosen first (materialized), so the per-tag size and the
    // manifest content are read for its rows only. Size: the manifest's own
    // blobs plus, for an index, its children's, each distinct blob once.
    format!(
        "WITH page AS MATERIALIZED (SELECT repo_id, name, digest, updated_at FROM tags \
           WHERE repo_id = $1 ORDER BY {order_by} LIMIT $4 OFFSET $5) \
         SELECT t.name, t.digest, m.media_type, t.updated_at, \
           (SELECT COALESCE(SUM(b.size), 0)::bigint FROM blobs b WHERE b.digest IN ( \
              SELECT x.child_digest FROM manifest_refs x \
               WHERE x.repo_id = t.repo_id AND x.manifest_digest = t.digest AND x.kind = 0 \
              UNION SELECT y.child_digest FROM manifest_refs x JOIN manifest_refs y \
               ON y.repo_id = x.repo_id AND y.manifest_digest = x.child_digest AND y.kind = 0 \
               WHERE x.repo_id = t.repo_id AND x.manifest_digest = t.digest AND x.kind = 1)), \
           CASE WHEN m.media_type IN ($2, $3) THEN m.content END \
         FROM page t JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest \
         ORDER BY {order_by}"
    )
}

fn tag_row(row: &PgRow) -> Result<TagRow> {
    let digest: String = row.try_get(1)?;
    Ok(TagRow {
        name: row.try_get(0)?,
        digest: digest
            .parse()
            .map_err(|e| MetadataError::Corrupt(format!("{digest:?}: {e}")))?,
        media_type: row.try_get(2)?,
        pushed_at: row.try_get(3)?,
        size_bytes: row.try_get::<i64, _>(4)? as u64,
        index: row.try_get::<Option<Vec<u8>>, _>(5)?.map(Bytes::from),
    })
}

#[async_trait]
impl Browse for PgMetadata {
    async fn project_usage(&self, projects: &[String]) -> Result<Vec<ProjectUsage>> {
        let rows = sqlx::query(PROJECT_USAGE)
            .bind(projects)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(ProjectUsage {
                    project: row.try_get(0)?,
                    repositories: row.try_get::<i64, _>(1)? as u64,
                    storage_bytes: row.try_get::<i64, _>(2)? as u64,
                    last_push: row.try_get(3)?,
                })
            })
            .collect()
    }

    async fn repositories_in(
        &self,
        project: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<RepoSummary>> {
        let rows = sqlx::query(&repositories_in_query())
            .bind(project)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(summary).collect()
    }

    async fn tags_page(
        &self,
        repo: &RepoName,
        order: TagOrder,
        offset: u64,
        limit: u32,
    ) -> Result<Option<TagPage>> {
        // The count and the page in one snapshot, so that a concurrent push
        // does not make them disagree.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let Some(repo_id) = sqlx::query_scalar::<_, i64>(REPO_ID)
            .bind(repo.as_str())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let total: Option<i64> = sqlx::query_scalar(TAG_COUNT)
            .bind(repo_id)
            .fetch_optional(&mut *tx)
            .await?;
        let order_by = match order {
            TagOrder::Name => "name",
            TagOrder::Pushed => "updated_at DESC, name",
        };
        let rows = sqlx::query(&tags_page_query(order_by))
            .bind(repo_id)
            .bind(media::OCI_INDEX)
            .bind(media::DOCKER_LIST)
            .bind(i64::from(limit))
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let tags = rows.iter().map(tag_row).collect::<Result<Vec<_>>>()?;
        Ok(Some(TagPage {
            total: total.unwrap_or(0) as u64,
            tags,
        }))
    }

    async fn tags_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<String>> {
        let tags = sqlx::query_scalar(
            "SELECT t.name FROM repositories r JOIN tags t ON t.repo_id = r.id \
             WHERE r.name = $1 AND t.digest = $2 ORDER BY t.name",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(tags)
    }

    async fn search_repositories(
        &self,
        needle: &str,
        visible: &Visible,
        limit: u32,
    ) -> Result<Vec<RepoSummary>> {
        let needle = needle.to_ascii_lowercase();
        if !needle.bytes().all(name_byte) {
            // Names are made of these bytes only: nothing can match.
            return Ok(Vec::new());
        }
        let pattern = contains_pattern(&needle);
        let restricted = visible_params(visible);
        let query = match restricted {
            None => search_all(),
            Some(_) => search_visible(),
        };
        let q = sqlx::query(&query);
        let q = match restricted {
            None => q,
            Some((member, project)) => q.bind(member).bind(project),
        };
        let rows = q
            .bind(pattern)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(summary).collect()
    }
}

impl PgMetadata {
    async fn end_session_once(&self, id: &str, expires_at: i64) -> Result<()> {
        let now = super::now_ms() / 1000;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM ui_ended_sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO ui_ended_sessions (id, expires_at) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl EndedSessions for PgMetadata {
    async fn end_session(&self, id: &str, expires_at: i64) -> Result<()> {
        retrying(|| self.end_session_once(id, expires_at)).await
    }

    async fn session_ended(&self, id: &str) -> Result<bool> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM ui_ended_sessions WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }
}
