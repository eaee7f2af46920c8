//! `Browse` for SQLite. Each query stays inside one repository's key range
//! (tags by `(repo_id, name)`, refs by `(repo_id, manifest_digest)`), so a
//! page of a repository with thousands of tags costs a page's worth of work.

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::{Connection, Row};

use super::browse::{Browse, ProjectUsage, RepoSummary, TagOrder, TagPage, TagRow};
use super::sqlite::{BindVisible as _, SqliteMetadata, REPO_ID, VISIBLE_REPO};
use super::{MetadataError, Result, Visible};
use crate::oci::{media, Digest, RepoName};

/// Tag count, distinct blob bytes and last push of the repository `r`.
const REPO_STATS: &str = "(SELECT COUNT(*) FROM tags t WHERE t.repo_id = r.id), \
     (SELECT COALESCE(SUM(b.size), 0) FROM repo_blobs l JOIN blobs b ON b.digest = l.digest \
      WHERE l.repo_id = r.id), \
     (SELECT MAX(at) FROM (SELECT MAX(updated_at) AS at FROM tags WHERE repo_id = r.id \
      UNION ALL SELECT MAX(created_at) FROM manifests WHERE repo_id = r.id))";

const HAS_MANIFEST: &str = "EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id)";

fn summary(row: sqlx::sqlite::SqliteRow) -> Result<RepoSummary> {
    Ok(RepoSummary {
        name: row.try_get(0)?,
        tags: row.try_get::<i64, _>(1)? as u64,
        storage_bytes: row.try_get::<i64, _>(2)? as u64,
        last_push: row.try_get(3)?,
    })
}

/// `needle` as a LIKE pattern matching it anywhere, wildcards escaped.
fn contains_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[async_trait]
impl Browse for SqliteMetadata {
    async fn project_usage(&self) -> Result<Vec<ProjectUsage>> {
        let rows = sqlx::query(
            "WITH rp AS (SELECT r.id, CASE WHEN instr(r.name, '/') > 0 \
                 THEN substr(r.name, 1, instr(r.name, '/') - 1) ELSE r.name END AS project \
                 FROM repositories r WHERE EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id)) \
             SELECT p.project, COUNT(*), \
               (SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.digest IN \
                  (SELECT l.digest FROM repo_blobs l JOIN rp q ON q.id = l.repo_id WHERE q.project = p.project)), \
               (SELECT MAX(at) FROM ( \
                  SELECT t.updated_at AS at FROM tags t JOIN rp q ON q.id = t.repo_id WHERE q.project = p.project \
                  UNION ALL SELECT m.created_at FROM manifests m JOIN rp q ON q.id = m.repo_id WHERE q.project = p.project)) \
             FROM rp p GROUP BY p.project ORDER BY p.project",
        )
        .fetch_all(&self.read)
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

    async fn repositories_in(&self, project: &str) -> Result<Vec<RepoSummary>> {
        // `project/` up to (not including) `project0`: '0' follows '/' in
        // ASCII, so this range is exactly the names under `project/`.
        let rows = sqlx::query(&format!(
            "SELECT r.name, {REPO_STATS} FROM repositories r \
             WHERE (r.name = ?1 OR (r.name >= ?1 || '/' AND r.name < ?1 || '0')) AND {HAS_MANIFEST} \
             ORDER BY r.name"
        ))
        .bind(project)
        .fetch_all(&self.read)
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
        let Some(repo_id) = sqlx::query_scalar::<_, i64>(REPO_ID)
            .bind(repo.as_str())
            .fetch_optional(&self.read)
            .await?
        else {
            return Ok(None);
        };
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tags WHERE repo_id = ?")
            .bind(repo_id)
            .fetch_one(&self.read)
            .await?;
        let order_by = match order {
            TagOrder::Name => "name",
            TagOrder::Pushed => "updated_at DESC, name",
        };
        // The page is chosen first (materialized), so the per-tag size and
        // the manifest content are read for its rows only, not for every
        // tag before sorting. Size: the manifest's own blobs plus, for an
        // index, its children's, each distinct blob once.
        let rows = sqlx::query(&format!(
            "WITH page AS MATERIALIZED (SELECT repo_id, name, digest, updated_at FROM tags \
               WHERE repo_id = ?1 ORDER BY {order_by} LIMIT ?4 OFFSET ?5) \
             SELECT t.name, t.digest, m.media_type, t.updated_at, \
               (SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.digest IN ( \
                  SELECT x.child_digest FROM manifest_refs x \
                   WHERE x.repo_id = t.repo_id AND x.manifest_digest = t.digest AND x.kind = 0 \
                  UNION SELECT y.child_digest FROM manifest_refs x CROSS JOIN manifest_refs y \
                   ON y.repo_id = x.repo_id AND y.manifest_digest = x.child_digest AND y.kind = 0 \
                   WHERE x.repo_id = t.repo_id AND x.manifest_digest = t.digest AND x.kind = 1)), \
               CASE WHEN m.media_type IN (?2, ?3) THEN m.content END \
             FROM page t JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest \
             ORDER BY {order_by}"
        ))
        .bind(repo_id)
        .bind(media::OCI_INDEX)
        .bind(media::DOCKER_LIST)
        .bind(limit)
        .bind(offset as i64)
        .fetch_all(&self.read)
        .await?;
        let tags = rows
            .into_iter()
            .map(|row| {
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
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(TagPage {
            total: total as u64,
            tags,
        }))
    }

    async fn tags_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<String>> {
        let tags = sqlx::query_scalar(
            "SELECT t.name FROM repositories r JOIN tags t ON t.repo_id = r.id \
             WHERE r.name = ? AND t.digest = ? ORDER BY t.name",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_all(&self.read)
        .await?;
        Ok(tags)
    }

    async fn search_repositories(
        &self,
        needle: &str,
        visible: &Visible,
        limit: u32,
    ) -> Result<Vec<RepoSummary>> {
        let rows = sqlx::query(&format!(
            "SELECT r.name, {REPO_STATS} FROM repositories r \
             WHERE r.name LIKE ?4 ESCAPE '\\' AND {HAS_MANIFEST} AND {VISIBLE_REPO} \
             ORDER BY r.name LIMIT ?5"
        ))
        .bind_visible(visible)
        .bind(contains_pattern(needle))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(summary).collect()
    }
}

#[async_trait]
impl super::browse::EndedSessions for SqliteMetadata {
    async fn end_session(&self, id: &str, expires_at: i64) -> Result<()> {
        let now = super::now_ms() / 1000;
        let mut w = self.writer().await?;
        let mut tx = w.conn().begin().await?;
        sqlx::query("DELETE FROM ui_ended_sessions WHERE expires_at < ?")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO ui_ended_sessions (id, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        w.done();
        Ok(())
    }

    async fn session_ended(&self, id: &str) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM ui_ended_sessions WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(found.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn search_patterns_escape_wildcards() {
        assert_eq!(contains_pattern("app"), "%app%");
        assert_eq!(contains_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
