//! The PostgreSQL backend's catalog, blob-holder and blob-link queries
//! (the port of `sqlite_catalog`). A link races a collection run on other
//! replicas: the blob's row is locked by the link's upsert, which a flip to
//! `deleting` skips (`SKIP LOCKED`) or, when the flip came first, returns as
//! `deleting`; quota checks lock the project's usage rows before they read.

use async_trait::async_trait;

use super::postgres::{retrying, PgMetadata, PgTx, REPO_ID, VISIBLE_PROJECTS};
use super::sqlite::parse;
use super::*;

pub(super) const LINKED_BLOB_SIZE: &str = "SELECT b.size, l.touched_at FROM repositories r \
     JOIN repo_blobs l ON l.repo_id = r.id JOIN blobs b ON b.digest = l.digest \
     WHERE r.name = $1 AND l.digest = $2 AND b.state = 'live'";
/// Holders of a blob, or visible repositories, that a mount looks through
/// for a source before it gives up (and the client uploads instead).
const HOLDER_PROBE: u32 = 1_000;

/// One repository holding blob $3 that the caller may see (parameters as
/// in [`VISIBLE_PROJECTS`]): the first found among the first
/// [`HOLDER_PROBE`] holders, else among the first [`HOLDER_PROBE`]
/// repositories the caller may see. Never a list of them all.
pub(super) fn visible_holder_query() -> String {
    format!(
        "(SELECT r.name FROM \
           (SELECT repo_id FROM repo_blobs WHERE digest = $3 LIMIT {HOLDER_PROBE}) l \
           JOIN repositories r ON r.id = l.repo_id WHERE r.project IN ({VISIBLE_PROJECTS}) LIMIT 1) \
         UNION ALL \
         (SELECT v.name FROM \
           (SELECT r.id, r.name FROM ({VISIBLE_PROJECTS}) p \
              JOIN repositories r ON r.project = p.name LIMIT {HOLDER_PROBE}) v \
           JOIN repo_blobs l ON l.repo_id = v.id AND l.digest = $3 LIMIT 1) \
         LIMIT 1"
    )
}
/// Any repository holding blob $1 (for callers who may see every one).
pub(super) const ANY_HOLDER: &str =
    "SELECT r.name FROM repo_blobs l JOIN repositories r ON r.id = l.repo_id \
     WHERE l.digest = $1 LIMIT 1";

/// A catalog page for a caller who may see everything: $1 = the last name
/// of the previous page, $2 = the page size.
pub(super) const CATALOG_ALL: &str =
    "SELECT r.name FROM repositories r JOIN repo_stats s ON s.repo_id = r.id \
     WHERE r.name > $1 AND s.manifests > 0 ORDER BY r.name LIMIT $2";
/// A catalog page read from the projects the caller may see (parameters as
/// in [`VISIBLE_PROJECTS`], then $3 = last name, $4 = page size).
pub(super) fn catalog_by_project() -> String {
    format!(
        "SELECT r.name FROM ({VISIBLE_PROJECTS}) p JOIN repositories r ON r.project = p.name \
         JOIN repo_stats s ON s.repo_id = r.id \
         WHERE r.name > $3 AND s.manifests > 0 ORDER BY r.name LIMIT $4"
    )
}
/// A catalog page read in name order, skipping what the caller may not see
/// (parameters as in [`catalog_by_project`]).
pub(super) fn catalog_by_name() -> String {
    format!(
        "SELECT r.name FROM repositories r JOIN repo_stats s ON s.repo_id = r.id \
         WHERE r.name > $3 AND s.manifests > 0 AND r.project IN ({VISIBLE_PROJECTS}) \
         ORDER BY r.name LIMIT $4"
    )
}
/// Repositories holding a manifest that the caller may see, and the
/// repositories ever created (an upper bound of the registry's size).
pub(super) fn visible_counts() -> String {
    format!(
        "SELECT (SELECT COALESCE(SUM(repositories), 0)::BIGINT FROM project_stats \
                 WHERE project IN ({VISIBLE_PROJECTS})), \
                (SELECT COALESCE(MAX(id), 0) FROM repositories)"
    )
}

#[async_trait]
impl RepoIndex for PgMetadata {
    async fn removals(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT value FROM removals")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn list_repositories(&self, page: &Page, visible: &Visible) -> Result<Vec<String>> {
        let last = page.last.as_deref().unwrap_or("");
        let limit = i64::from(page.limit);
        let Visible::Projects { member, project } = visible else {
            return Ok(sqlx::query_scalar(CATALOG_ALL)
                .bind(last)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?);
        };
        // Read from the side that touches fewer rows, as the SQLite
        // backend does: the visible repositories after `last`, or the names
        // in order until a page is found.
        let (seen, total): (i64, i64) = sqlx::query_as(&visible_counts())
            .bind(member)
            .bind(project)
            .fetch_one(&self.pool)
            .await?;
        let by_name = (seen as f64) * (seen as f64) > f64::from(page.limit) * total as f64;
        let query = if by_name {
            catalog_by_name()
        } else {
            catalog_by_project()
        };
        Ok(sqlx::query_scalar(&query)
            .bind(member)
            .bind(project)
            .bind(last)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn repository_exists(&self, repo: &RepoName) -> Result<bool> {
        let id: Option<i64> = sqlx::query_scalar(REPO_ID)
            .bind(repo.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(id.is_some())
    }
}

#[async_trait]
impl BlobIndex for PgMetadata {
    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<LinkedBlob>> {
        let row: Option<(i64, i64)> = sqlx::query_as(LINKED_BLOB_SIZE)
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(size, touched_at)| LinkedBlob {
            size: size as u64,
            touched_at,
        }))
    }

    async fn visible_holder(&self, digest: &Digest, visible: &Visible) -> Result<Option<RepoName>> {
        let name: Option<String> = match visible {
            Visible::All => {
                sqlx::query_scalar(ANY_HOLDER)
                    .bind(digest.to_string())
                    .fetch_optional(&self.pool)
                    .await?
            }
            Visible::Projects { member, project } => {
                sqlx::query_scalar(&visible_holder_query())
                    .bind(member)
                    .bind(project)
                    .bind(digest.to_string())
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        name.map(parse).transpose()
    }
}

/// Locks the project's usage row a quota check reads (the caller holds
/// its repository's, see `PgMetadata::lock_repository`), so that two
/// replicas adding to the same project check one after the other: the
/// second sees what the first added.
pub(super) async fn lock_usage(tx: &mut PgTx, project: &str) -> Result<()> {
    sqlx::query("SELECT 1 FROM project_stats WHERE project = $1 FOR UPDATE")
        .bind(project)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The storage quota of `repo`'s project when linking blob $2 of size $3
/// would exceed it: (limit, usage). A blob the project links already adds
/// nothing (each distinct blob counts once per project).
const OVER_STORAGE_QUOTA: &str = "SELECT p.quota_bytes, COALESCE(s.bytes, 0) \
     FROM project_policies p LEFT JOIN project_stats s ON s.project = p.project \
     WHERE p.project = $1 AND p.quota_bytes IS NOT NULL \
       AND COALESCE(s.bytes, 0) + $3 > p.quota_bytes \
       AND NOT EXISTS (SELECT 1 FROM project_blobs b WHERE b.project = $1 AND b.digest = $2)";

/// Refuses a link that would take the project past its storage quota. With
/// a quota, the project's usage rows are locked first (see [`lock_usage`]);
/// without one nothing is locked, so pushes to unlimited projects do not
/// queue behind each other here.
async fn check_storage_quota(
    tx: &mut PgTx,
    repo: &RepoName,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let limited: Option<i64> = sqlx::query_scalar(
        "SELECT quota_bytes FROM project_policies WHERE project = $1 AND quota_bytes IS NOT NULL",
    )
    .bind(repo.project())
    .fetch_optional(&mut **tx)
    .await?;
    if limited.is_none() {
        return Ok(());
    }
    lock_usage(tx, repo.project()).await?;
    let over: Option<(i64, i64)> = sqlx::query_as(OVER_STORAGE_QUOTA)
        .bind(repo.project())
        .bind(digest.to_string())
        .bind(size as i64)
        .fetch_optional(&mut **tx)
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

/// Creates the blob's row (`live`, touched now) or touches it, keeping it
/// locked until the transaction ends; the state it has then. $4 turns a
/// `corrupt` blob `live` (fresh bytes).
const TOUCH_BLOB: &str = "INSERT INTO blobs AS b (digest, size, created_at, touched_at) \
     VALUES ($1, $2, $3, $3) ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at, \
       state = CASE WHEN b.state = 'corrupt' AND $4 THEN 'live' ELSE b.state END \
     RETURNING state";

async fn touch_blob(tx: &mut PgTx, digest: &Digest, size: u64, fresh: bool) -> Result<()> {
    let state: String = sqlx::query_scalar(TOUCH_BLOB)
        .bind(digest.to_string())
        .bind(size as i64)
        .bind(now_ms())
        .bind(fresh)
        .fetch_one(&mut **tx)
        .await?;
    if state == "deleting" {
        return Err(MetadataError::BlobDeleting(digest.clone()));
    }
    Ok(())
}

impl PgMetadata {
    async fn reserve_once(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let repo_id: Option<i64> = sqlx::query_scalar(REPO_ID)
            .bind(repo.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(repo_id) = repo_id {
            Self::lock_repository(&mut tx, repo_id).await?;
        }
        // The blob before the project's usage, in the order a link takes
        // them; a refusal rolls the touch back.
        touch_blob(&mut tx, digest, size, false).await?;
        check_storage_quota(&mut tx, repo, digest, size).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn link_once(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        fresh: bool,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let repo_id = Self::repo_id_or_create(&mut tx, repo).await?;
        Self::lock_repository(&mut tx, repo_id).await?;
        touch_blob(&mut tx, digest, size, fresh).await?;
        check_storage_quota(&mut tx, repo, digest, size).await?;
        sqlx::query(
            "INSERT INTO repo_blobs (repo_id, digest, created_at, touched_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (repo_id, digest) DO UPDATE SET touched_at = excluded.touched_at",
        )
        .bind(repo_id)
        .bind(digest.to_string())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

impl PgMetadata {
    async fn unlink_once(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let Some(repo_id) = sqlx::query_scalar::<_, i64>(REPO_ID)
            .bind(repo.as_str())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(false);
        };
        if !Self::lock_repository(&mut tx, repo_id).await? {
            return Ok(false);
        }
        let done = sqlx::query("DELETE FROM repo_blobs WHERE repo_id = $1 AND digest = $2")
            .bind(repo_id)
            .bind(digest.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl BlobLinks for PgMetadata {
    async fn reserve_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        retrying(|| self.reserve_once(repo, digest, size)).await
    }

    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        fresh: bool,
    ) -> Result<()> {
        retrying(|| self.link_once(repo, digest, size, fresh)).await
    }

    async fn touch_link(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        self.touch("repo_blobs", repo, digest).await
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        retrying(|| self.unlink_once(repo, digest)).await
    }
}
