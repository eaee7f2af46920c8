//! The PostgreSQL backend's manifests, tags and upload sessions (the port
//! of the SQLite backend's `ManifestIndex`, `ManifestWrites` and
//! `UploadIndex`). A manifest PUT share-locks the links, blobs and child
//! manifests it references before it checks them, so a collection sweep on
//! another replica cannot remove one between the check and the commit: the
//! sweep skips rows a push holds, and a push that comes second finds the
//! reference gone and is refused, as if the sweep had run before it.

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::Row;

use super::postgres::{retrying, PgMetadata, PgTx, REPO_ID};
use super::sqlite::parse;
use super::*;

pub(super) const MANIFEST_BY_TAG: &str =
    "SELECT m.digest, m.media_type, m.content, m.touched_at FROM repositories r \
     JOIN tags t ON t.repo_id = r.id JOIN manifests m ON m.repo_id = r.id AND m.digest = t.digest \
     WHERE r.name = $1 AND t.name = $2";
pub(super) const MANIFEST_BY_DIGEST: &str =
    "SELECT m.digest, m.media_type, m.content, m.touched_at FROM repositories r \
     JOIN manifests m ON m.repo_id = r.id WHERE r.name = $1 AND m.digest = $2";
pub(super) const REFERRERS: &str = "SELECT digest, media_type, size, artifact_type, annotations \
     FROM manifests WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) \
     AND subject = $2 AND ($3::TEXT IS NULL OR artifact_type = $3) ORDER BY digest";
pub(super) const TAGS_PAGE: &str =
    "SELECT name FROM tags WHERE repo_id = $1 AND name > $2 ORDER BY name LIMIT $3";
pub(super) const UPLOAD_REPOSITORY: &str =
    "SELECT r.name FROM uploads u JOIN repositories r ON r.id = u.repo_id WHERE u.id = $1";

/// Locks (shared) the referenced blobs' rows, then the repository's links
/// to them, each in digest order: the order a link (the blob's upsert, then
/// its link's) takes them, so a push and a link of the same layer on two
/// replicas queue instead of deadlocking.
pub(super) const LOCK_BLOBS: &[&str] = &[
    "SELECT 1 FROM blobs WHERE digest = ANY($1) AND $2::BIGINT IS NOT NULL \
     ORDER BY digest FOR SHARE",
    "SELECT 1 FROM repo_blobs WHERE repo_id = $2 AND digest = ANY($1) ORDER BY digest FOR SHARE",
];
/// Size of each referenced blob linked in the repository, by reference
/// index (0-based).
pub(super) const BLOB_SIZES: &str =
    "SELECT j.i - 1, b.size FROM unnest($1::TEXT[]) WITH ORDINALITY j(digest, i) \
     LEFT JOIN repo_blobs l ON l.repo_id = $2 AND l.digest = j.digest \
     LEFT JOIN blobs b ON b.digest = l.digest AND b.state = 'live' ORDER BY j.i";
/// Locks (shared) the referenced child manifests, in digest order.
pub(super) const LOCK_CHILDREN: &[&str] = &["SELECT 1 FROM manifests WHERE repo_id = $2 \
     AND digest = ANY($1) ORDER BY digest FOR SHARE"];
/// Size of each referenced child manifest in the repository, by reference index.
pub(super) const CHILD_SIZES: &str =
    "SELECT j.i - 1, m.size FROM unnest($1::TEXT[]) WITH ORDINALITY j(digest, i) \
     LEFT JOIN manifests m ON m.repo_id = $2 AND m.digest = j.digest ORDER BY j.i";

fn digests(refs: &[Ref]) -> Vec<String> {
    refs.iter().map(|r| r.digest.to_string()).collect()
}

/// Checks that every reference is in the repository with its declared
/// size, in one query for all of them, after locking them (`lock`), so that
/// what was checked stays until the commit.
async fn check_refs(
    tx: &mut PgTx,
    repo_id: i64,
    refs: &[Ref],
    (locks, sizes): (&[&str], &str),
) -> Result<()> {
    if refs.is_empty() {
        return Ok(());
    }
    let wanted = digests(refs);
    for lock in locks {
        sqlx::query(lock)
            .bind(&wanted)
            .bind(repo_id)
            .execute(&mut **tx)
            .await?;
    }
    let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(sizes)
        .bind(&wanted)
        .bind(repo_id)
        .fetch_all(&mut **tx)
        .await?;
    for (index, size) in rows {
        let r = usize::try_from(index)
            .ok()
            .and_then(|i| refs.get(i))
            .ok_or_else(|| MetadataError::Corrupt(format!("reference index {index}")))?;
        match size {
            None => return Err(MetadataError::MissingReference(r.digest.clone())),
            Some(actual) if actual as u64 != r.size => {
                return Err(MetadataError::SizeMismatch {
                    digest: r.digest.clone(),
                    declared: r.size,
                    actual: actual as u64,
                })
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Points `tag` at the manifest being pushed.
async fn set_tag(tx: &mut PgTx, repo_id: i64, tag: &Tag, m: &NewManifest, now: i64) -> Result<()> {
    // An upsert: two replicas moving the tag at once leave it at
    // the digest of the last to commit, never an error. An
    // immutable tag is only ever set to the digest it has: the
    // second of two first pushes with different digests waits for
    // the first's commit, updates nothing, and is refused.
    let set = sqlx::query(
        "INSERT INTO tags AS t (repo_id, name, digest, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (repo_id, name) DO UPDATE SET digest = excluded.digest, \
         updated_at = excluded.updated_at WHERE NOT $5 OR t.digest = excluded.digest",
    )
    .bind(repo_id)
    .bind(tag.as_str())
    .bind(m.digest.to_string())
    .bind(now)
    .bind(m.immutable_rule.is_some())
    .execute(&mut **tx)
    .await?;
    if let (0, Some(rule)) = (set.rows_affected(), &m.immutable_rule) {
        return Err(MetadataError::ImmutableTag {
            tag: tag.to_string(),
            rule: rule.clone(),
        });
    }
    Ok(())
}

#[async_trait]
impl ManifestIndex for PgMetadata {
    async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>> {
        let (query, key) = match reference {
            Reference::Tag(tag) => (MANIFEST_BY_TAG, tag.to_string()),
            Reference::Digest(digest) => (MANIFEST_BY_DIGEST, digest.to_string()),
        };
        let row = sqlx::query(query)
            .bind(repo.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(ManifestRecord {
                digest: parse(row.get("digest"))?,
                media_type: row.get("media_type"),
                content: Bytes::from(row.get::<Vec<u8>, _>("content")),
                touched_at: row.get("touched_at"),
            })
        })
        .transpose()
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let rows = sqlx::query(REFERRERS)
            .bind(repo.as_str())
            .bind(subject.to_string())
            .bind(artifact_type)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(Referrer {
                    digest: parse(row.get("digest"))?,
                    media_type: row.get("media_type"),
                    size: row.get::<i64, _>("size") as u64,
                    artifact_type: row.get("artifact_type"),
                    annotations: row.get("annotations"),
                })
            })
            .collect()
    }

    async fn list_tags(&self, repo: &RepoName, page: &Page) -> Result<Option<Vec<String>>> {
        let Some(repo_id) = sqlx::query_scalar::<_, i64>(REPO_ID)
            .bind(repo.as_str())
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let names = sqlx::query_scalar(TAGS_PAGE)
            .bind(repo_id)
            .bind(page.last.as_deref().unwrap_or(""))
            .bind(i64::from(page.limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(Some(names))
    }
}

impl PgMetadata {
    async fn put_manifest_once(&self, m: &NewManifest) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let repo_id = Self::repo_id_or_create(&mut tx, &m.repo).await?;
        Self::lock_repository(&mut tx, repo_id).await?;
        check_refs(&mut tx, repo_id, &m.blobs, (LOCK_BLOBS, BLOB_SIZES)).await?;
        check_refs(&mut tx, repo_id, &m.children, (LOCK_CHILDREN, CHILD_SIZES)).await?;
        super::pg_policy::check_manifest_push(&mut tx, repo_id, m).await?;
        let now = now_ms();
        let digest = m.digest.to_string();
        sqlx::query(
            "INSERT INTO manifests (repo_id, digest, media_type, artifact_type, subject, \
             annotations, size, content, created_at, touched_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
             ON CONFLICT (repo_id, digest) DO UPDATE SET touched_at = excluded.touched_at",
        )
        .bind(repo_id)
        .bind(&digest)
        .bind(&m.media_type)
        .bind(&m.artifact_type)
        .bind(m.subject.as_ref().map(Digest::to_string))
        .bind(&m.annotations)
        .bind(m.content.len() as i64)
        .bind(m.content.as_ref())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for (kind, refs) in [(0_i64, &m.blobs), (1, &m.children)] {
            if refs.is_empty() {
                continue;
            }
            // One statement for all references, however many there are.
            sqlx::query(
                "INSERT INTO manifest_refs (repo_id, manifest_digest, child_digest, kind) \
                 SELECT $1, $2, d, $3 FROM unnest($4::TEXT[]) d ON CONFLICT DO NOTHING",
            )
            .bind(repo_id)
            .bind(&digest)
            .bind(kind)
            .bind(digests(refs))
            .execute(&mut *tx)
            .await?;
        }
        if let Some(tag) = &m.tag {
            set_tag(&mut tx, repo_id, tag, m, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_manifest_once(
        &self,
        repo: &RepoName,
        digest: &Digest,
        policy: &ProjectPolicy,
    ) -> Result<bool> {
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
        let digest = digest.to_string();
        super::pg_policy::check_tags_deletable(&mut tx, repo_id, &digest, policy).await?;
        let done = sqlx::query("DELETE FROM manifests WHERE repo_id = $1 AND digest = $2")
            .bind(repo_id)
            .bind(&digest)
            .execute(&mut *tx)
            .await?;
        for table in [
            "DELETE FROM tags WHERE repo_id = $1 AND digest = $2",
            "DELETE FROM manifest_refs WHERE repo_id = $1 AND manifest_digest = $2",
        ] {
            sqlx::query(table)
                .bind(repo_id)
                .bind(&digest)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_tag_once(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
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
        let done = sqlx::query("DELETE FROM tags WHERE repo_id = $1 AND name = $2")
            .bind(repo_id)
            .bind(tag.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_upload_once(&self, id: &str, repo: &RepoName) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let repo_id = Self::repo_id_or_create(&mut tx, repo).await?;
        sqlx::query("INSERT INTO uploads (id, repo_id, created_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(repo_id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl ManifestWrites for PgMetadata {
    async fn put_manifest(&self, manifest: &NewManifest) -> Result<()> {
        retrying(|| self.put_manifest_once(manifest)).await
    }

    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        policy: &ProjectPolicy,
    ) -> Result<bool> {
        retrying(|| self.delete_manifest_once(repo, digest, policy)).await
    }

    async fn touch_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        self.touch("manifests", repo, digest).await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        retrying(|| self.delete_tag_once(repo, tag)).await
    }
}

#[async_trait]
impl UploadIndex for PgMetadata {
    async fn create_upload(&self, id: &str, repo: &RepoName) -> Result<()> {
        retrying(|| self.create_upload_once(id, repo)).await
    }

    async fn upload_repository(&self, id: &str) -> Result<Option<RepoName>> {
        let name: Option<String> = sqlx::query_scalar(UPLOAD_REPOSITORY)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        name.map(parse).transpose()
    }

    async fn delete_upload(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_uploads(&self) -> Result<Vec<(String, i64)>> {
        Ok(
            sqlx::query_as("SELECT id, created_at FROM uploads ORDER BY created_at")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
