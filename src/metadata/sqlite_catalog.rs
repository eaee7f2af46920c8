//! The SQLite backend's catalog, blob-holder and blob-link queries: the
//! reads whose cost must not grow with the registry (see
//! `sqlite_tests::hot_queries_use_indexes`).

use async_trait::async_trait;

use super::sqlite::{
    parse, split_names, visible_params, SqliteMetadata, REPO_ID, VISIBLE_PROJECTS,
};
use super::*;

// The queries of the hot paths, named so that `tests::hot_queries_use_indexes`
// checks the very text that runs.
pub(super) const LINKED_BLOB_SIZE: &str = "SELECT b.size, l.touched_at FROM repositories r \
     JOIN repo_blobs l ON l.repo_id = r.id JOIN blobs b ON b.digest = l.digest \
     WHERE r.name = ? AND l.digest = ? AND b.state = 'live'";
/// Holders of a blob, or visible repositories, that a mount looks through
/// for a source before it gives up (and the client uploads instead).
pub(super) const HOLDER_PROBE: u32 = 1_000;

/// One repository holding blob ?3 that the caller may see (parameters as
/// in [`VISIBLE_PROJECTS`]): the first found among the first
/// [`HOLDER_PROBE`] holders, else among the first [`HOLDER_PROBE`]
/// repositories the caller may see. Never a list of them all: a mount costs
/// the same whether ten repositories or a million hold the blob.
pub(super) fn visible_holder_query() -> String {
    format!(
        "SELECT name FROM (SELECT r.name FROM \
           (SELECT repo_id FROM repo_blobs WHERE digest = ?3 LIMIT {HOLDER_PROBE}) l \
           JOIN repositories r ON r.id = l.repo_id WHERE +r.project IN ({VISIBLE_PROJECTS}) LIMIT 1) \
         UNION ALL \
         SELECT name FROM (SELECT v.name FROM \
           (SELECT r.id, r.name FROM ({VISIBLE_PROJECTS}) p \
              CROSS JOIN repositories r ON r.project = p.name LIMIT {HOLDER_PROBE}) v \
           JOIN repo_blobs l ON l.repo_id = v.id AND l.digest = ?3 LIMIT 1) \
         LIMIT 1"
    )
}
/// Any repository holding blob ?1 (for callers who may see every one).
pub(super) const ANY_HOLDER: &str =
    "SELECT r.name FROM repo_blobs l JOIN repositories r ON r.id = l.repo_id \
     WHERE l.digest = ?1 LIMIT 1";

/// A catalog page for a caller who may see everything: ?1 = the last name
/// of the previous page, ?2 = the page size.
pub(super) const CATALOG_ALL: &str = "SELECT group_concat(name, char(10) ORDER BY name) FROM ( \
     SELECT r.name FROM repositories r JOIN repo_stats s ON s.repo_id = r.id \
     WHERE r.name > ?1 AND s.manifests > 0 ORDER BY r.name LIMIT ?2)";
/// A catalog page read from the projects the caller may see (parameters as
/// in [`VISIBLE_PROJECTS`], then ?3 = last name, ?4 = page size): touches
/// the visible repositories after ?3 only, so a user in one project of
/// thousands reads that project's rows.
pub(super) fn catalog_by_project() -> String {
    format!(
        "SELECT group_concat(name, char(10) ORDER BY name) FROM ( \
           SELECT r.name FROM ({VISIBLE_PROJECTS}) p CROSS JOIN repositories r ON r.project = p.name \
           JOIN repo_stats s ON s.repo_id = r.id \
           WHERE r.name > ?3 AND s.manifests > 0 ORDER BY r.name LIMIT ?4)"
    )
}
/// A catalog page read in name order, skipping what the caller may not see
/// (parameters as in [`catalog_by_project`]): for callers who may see much
/// of the registry, where it touches about page size × total / visible rows.
pub(super) fn catalog_by_name() -> String {
    format!(
        "SELECT group_concat(name, char(10) ORDER BY name) FROM ( \
           SELECT r.name FROM repositories r JOIN repo_stats s ON s.repo_id = r.id \
           WHERE r.name > ?3 AND s.manifests > 0 AND +r.project IN ({VISIBLE_PROJECTS}) \
           ORDER BY r.name LIMIT ?4)"
    )
}
/// Repositories holding a manifest that the caller may see (parameters as
/// in [`VISIBLE_PROJECTS`]; one counter row per visible project), and the
/// repositories ever created (the largest id: one index step), an upper
/// bound of the registry's size that is all the choice of a plan needs.
pub(super) fn visible_counts() -> String {
    format!(
        "SELECT (SELECT COALESCE(SUM(repositories), 0) FROM project_stats \
                 WHERE project IN ({VISIBLE_PROJECTS})), \
                (SELECT COALESCE(MAX(id), 0) FROM repositories)"
    )
}

#[async_trait]
impl RepoIndex for SqliteMetadata {
    async fn removals(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT value FROM removals")
            .fetch_one(&self.read)
            .await?)
    }

    async fn list_repositories(&self, page: &Page, visible: &Visible) -> Result<Vec<String>> {
        let last = page.last.as_deref().unwrap_or("");
        let Some((member, project)) = visible_params(visible) else {
            let joined: Option<String> = sqlx::query_scalar(CATALOG_ALL)
                .bind(last)
                .bind(page.limit)
                .fetch_one(&self.read)
                .await?;
            return Ok(split_names(joined));
        };
        // Read from the side that touches fewer rows: the visible
        // repositories after `last` (at most `seen`), or the names in order
        // until a page is found (about limit × total / seen). Either way at
        // most sqrt(limit × total) rows, and `seen` for a narrow caller.
        let (seen, total): (i64, i64) = sqlx::query_as(&visible_counts())
            .bind(member)
            .bind(project)
            .fetch_one(&self.read)
            .await?;
        let by_name = (seen as f64) * (seen as f64) > f64::from(page.limit) * total as f64;
        let query = if by_name {
            catalog_by_name()
        } else {
            catalog_by_project()
        };
        let joined: Option<String> = sqlx::query_scalar(&query)
            .bind(member)
            .bind(project)
            .bind(last)
            .bind(page.limit)
            .fetch_one(&self.read)
            .await?;
        Ok(split_names(joined))
    }

    async fn repository_exists(&self, repo: &RepoName) -> Result<bool> {
        let id: Option<i64> = sqlx::query_scalar(REPO_ID)
            .bind(repo.as_str())
            .fetch_optional(&self.read)
            .await?;
        Ok(id.is_some())
    }
}

#[async_trait]
impl BlobIndex for SqliteMetadata {
    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<LinkedBlob>> {
        let row: Option<(i64, i64)> = sqlx::query_as(LINKED_BLOB_SIZE)
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|(size, touched_at)| LinkedBlob {
            size: size as u64,
            touched_at,
        }))
    }

    async fn visible_holder(&self, digest: &Digest, visible: &Visible) -> Result<Option<RepoName>> {
        let name: Option<String> = match visible_params(visible) {
            None => {
                sqlx::query_scalar(ANY_HOLDER)
                    .bind(digest.to_string())
                    .fetch_optional(&self.read)
                    .await?
            }
            Some((member, project)) => {
                sqlx::query_scalar(&visible_holder_query())
                    .bind(member)
                    .bind(project)
                    .bind(digest.to_string())
                    .fetch_optional(&self.read)
                    .await?
            }
        };
        name.map(parse).transpose()
    }
}

/// The storage quota of `repo`'s project when linking blob ?2 of size ?3
/// would exceed it: (limit, usage). A blob the project links already adds
/// nothing (each distinct blob counts once per project).
const OVER_STORAGE_QUOTA: &str = "SELECT p.quota_bytes, COALESCE(s.bytes, 0) \
     FROM project_policies p LEFT JOIN project_stats s ON s.project = p.project \
     WHERE p.project = ?1 AND p.quota_bytes IS NOT NULL \
       AND COALESCE(s.bytes, 0) + ?3 > p.quota_bytes \
       AND NOT EXISTS (SELECT 1 FROM project_blobs b WHERE b.project = ?1 AND b.digest = ?2)";

/// Refuses a link that would take the project past its storage quota.
pub(super) async fn check_storage_quota(
    conn: &mut sqlx::SqliteConnection,
    repo: &RepoName,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let over: Option<(i64, i64)> = sqlx::query_as(OVER_STORAGE_QUOTA)
        .bind(repo.project())
        .bind(digest.to_string())
        .bind(size as i64)
        .fetch_optional(&mut *conn)
        .await?;
    match over {
        Some((limit, usage)) => Err(MetadataError::QuotaExceeded {
            project: repo.project().to_string(),
            what: "storage bytes",
            usage: usage as u64,
            limit: limit as u64,
            adding: size,
        }),
        None => Ok(()),
    }
}

/// Creates the blob's row (`live`, touched now) or touches it; `None` when
/// it is `deleting`. ?4 = 1 turns a `corrupt` blob `live` (fresh bytes).
const TOUCH_BLOB: &str = "INSERT INTO blobs (digest, size, created_at, touched_at) \
     VALUES (?1, ?2, ?3, ?3) ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at, \
       state = CASE WHEN state = 'corrupt' AND ?4 = 1 THEN 'live' ELSE state END \
     RETURNING state";

async fn touch_blob(
    conn: &mut sqlx::SqliteConnection,
    digest: &Digest,
    size: u64,
    fresh: bool,
) -> Result<()> {
    let state: String = sqlx::query_scalar(TOUCH_BLOB)
        .bind(digest.to_string())
        .bind(size as i64)
        .bind(now_ms())
        .bind(i64::from(fresh))
        .fetch_one(&mut *conn)
        .await?;
    if state == "deleting" {
        return Err(MetadataError::BlobDeleting(digest.clone()));
    }
    Ok(())
}

#[async_trait]
impl BlobLinks for SqliteMetadata {
    async fn reserve_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        let mut w = self.writer().await?;
        let mut tx = w.begin().await?;
        check_storage_quota(&mut tx, repo, digest, size).await?;
        touch_blob(&mut tx, digest, size, false).await?;
        tx.commit().await?;
        w.done();
        Ok(())
    }

    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        fresh: bool,
    ) -> Result<()> {
        let mut w = self.writer().await?;
        let mut tx = w.begin().await?;
        let repo_id = Self::repo_id_or_create(&mut tx, repo).await?;
        touch_blob(&mut tx, digest, size, fresh).await?;
        check_storage_quota(&mut tx, repo, digest, size).await?;
        sqlx::query(
            "INSERT INTO repo_blobs (repo_id, digest, created_at, touched_at) VALUES (?1, ?2, ?3, ?3) \
             ON CONFLICT DO UPDATE SET touched_at = excluded.touched_at",
        )
        .bind(repo_id)
        .bind(digest.to_string())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        w.done();
        Ok(())
    }

    async fn touch_link(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        self.touch("repo_blobs", repo, digest).await
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let mut w = self.writer().await?;
        let done = sqlx::query("DELETE FROM repo_blobs WHERE repo_id = (SELECT id FROM repositories WHERE name = ?) AND digest = ?")
            .bind(repo.as_str())
            .bind(digest.to_string())
            .execute(w.conn())
            .await?;
        w.done();
        Ok(done.rows_affected() > 0)
    }
}
