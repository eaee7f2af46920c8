//! SQLite backend (the embedded default). Writes go through a pool of one
//! connection, so they serialise in-process instead of failing with
//! SQLITE_BUSY; reads use their own pool and run concurrently (WAL mode).
//!
//! Every write takes that connection through a [`Writer`], which gives it
//! back to the pool only after the write succeeded. After any failure (a full
//! disk, an I/O error, a refused manifest, a cancelled request) the
//! connection is closed, which rolls back whatever it had open, and the next
//! write gets a fresh one: a failed write can leave no transaction half-open
//! for later writes to disappear into.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Row, Sqlite, Transaction};

use super::now_ms;
use super::*;

pub struct SqliteMetadata {
    pub(super) read: SqlitePool,
    pub(super) write: SqlitePool,
}

fn parse<T: FromStr>(s: String) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e: T::Err| MetadataError::Corrupt(format!("{s:?}: {e}")))
}

/// The write connection, held for one write. Dropped before the write is
/// marked successful ([`Writer::done`], after the commit),
/// by an error's early return or a cancelled request, it closes the
/// connection instead of returning it to the pool.
pub(super) struct Writer {
    conn: Option<PoolConnection<Sqlite>>,
    clean: bool,
}

impl Writer {
    pub(super) fn conn(&mut self) -> &mut SqliteConnection {
        self.conn
            .as_mut()
            .expect("a writer holds its connection until dropped")
    }

    /// The write succeeded (committed): the connection may serve the next.
    pub(super) fn done(&mut self) {
        self.clean = true;
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.clean {
            return;
        }
        if let Some(conn) = self.conn.take() {
            tracing::debug!(
                "a metadata write failed or was cancelled: replacing the write connection"
            );
            // Closing rolls back anything the connection had open; the pool
            // opens a replacement for the next write.
            drop(conn.detach());
        }
    }
}

pub(super) const REPO_ID: &str = "SELECT id FROM repositories WHERE name = ?";

/// The names of the projects a caller restricted to projects may see, with
/// parameters ?1 = the member's name, ?2 = the robot's project (see
/// [`Visible::Projects`]). Each branch is an index lookup: the public
/// projects by `projects_public`, the member's by `members`' key.
pub(super) const VISIBLE_PROJECTS: &str = "SELECT name FROM projects WHERE public = 1 \
     UNION SELECT p.name FROM users u JOIN members mb ON mb.user_id = u.id \
       JOIN projects p ON p.id = mb.project_id WHERE u.name = ?1 \
     UNION SELECT name FROM projects WHERE name = ?2";

/// `VISIBLE_PROJECTS`' parameters, or `None` for [`Visible::All`].
pub(super) fn visible_params(visible: &Visible) -> Option<(Option<&str>, Option<&str>)> {
    match visible {
        Visible::All => None,
        Visible::Projects { member, project } => Some((member.as_deref(), project.as_deref())),
    }
}

/// The database holds password, robot and token hashes: only its owner may
/// read it. SQLite gives its `-wal` and `-shm` files the database file's
/// mode, so a database created 0600 keeps them 0600 too; files left more
/// open by an older berth are narrowed.
fn make_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let io = |e: std::io::Error| MetadataError::Db(sqlx::Error::Io(e));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = std::path::PathBuf::from(file);
        match std::fs::metadata(&file) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .map_err(io)?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(())
}

impl SqliteMetadata {
    pub async fn open(path: &Path) -> Result<SqliteMetadata> {
        make_private(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a manifest PUT answered 201 survives power loss too.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteMetadata { read, write })
    }

    /// The write connection, for one write (see [`Writer`]).
    pub(super) async fn writer(&self) -> Result<Writer> {
        Ok(Writer {
            conn: Some(self.write.acquire().await?),
            clean: false,
        })
    }

    async fn repo_id_or_create(tx: &mut Transaction<'_, Sqlite>, repo: &RepoName) -> Result<i64> {
        if let Some(id) = sqlx::query_scalar::<_, i64>(REPO_ID)
            .bind(repo.as_str())
            .fetch_optional(&mut **tx)
            .await?
        {
            return Ok(id);
        }
        let id = sqlx::query_scalar::<_, i64>(
            "INSERT INTO repositories (name, project, created_at) VALUES (?, ?, ?) RETURNING id",
        )
        .bind(repo.as_str())
        .bind(repo.project())
        .bind(now_ms())
        .fetch_one(&mut **tx)
        .await?;
        Ok(id)
    }

    /// Checks that every reference is in the repository with its declared
    /// size, in one query for all of them (`sizes` maps a JSON array of
    /// digests to each one's size in the repository, or NULL, by index).
    async fn check_refs(
        tx: &mut Transaction<'_, Sqlite>,
        repo_id: i64,
        refs: &[Ref],
        sizes: &str,
    ) -> Result<()> {
        if refs.is_empty() {
            return Ok(());
        }
        let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(sizes)
            .bind(digests_json(refs))
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
}

// The queries of the hot paths, named so that `tests::hot_queries_use_indexes`
// checks the very text that runs.
const LINKED_BLOB_SIZE: &str = "SELECT b.size FROM repositories r \
     JOIN repo_blobs l ON l.repo_id = r.id JOIN blobs b ON b.digest = l.digest \
     WHERE r.name = ? AND l.digest = ?";
/// Holders of a blob, or visible repositories, that a mount looks through
/// for a source before it gives up (and the client uploads instead).
const HOLDER_PROBE: u32 = 1_000;

/// One repository holding blob ?3 that the caller may see (parameters as
/// in [`VISIBLE_PROJECTS`]): the first found among the first
/// [`HOLDER_PROBE`] holders, else among the first [`HOLDER_PROBE`]
/// repositories the caller may see. Never a list of them all: a mount costs
/// the same whether ten repositories or a million hold the blob.
fn visible_holder_query() -> String {
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
const ANY_HOLDER: &str = "SELECT r.name FROM repo_blobs l JOIN repositories r ON r.id = l.repo_id \
     WHERE l.digest = ?1 LIMIT 1";

/// A catalog page for a caller who may see everything: ?1 = the last name
/// of the previous page, ?2 = the page size.
const CATALOG_ALL: &str = "SELECT group_concat(name, char(10) ORDER BY name) FROM ( \
     SELECT r.name FROM repositories r JOIN repo_stats s ON s.repo_id = r.id \
     WHERE r.name > ?1 AND s.manifests > 0 ORDER BY r.name LIMIT ?2)";
/// A catalog page read from the projects the caller may see (parameters as
/// in [`VISIBLE_PROJECTS`], then ?3 = last name, ?4 = page size): touches
/// the visible repositories after ?3 only, so a user in one project of
/// thousands reads that project's rows.
fn catalog_by_project() -> String {
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
fn catalog_by_name() -> String {
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
fn visible_counts() -> String {
    format!(
        "SELECT (SELECT COALESCE(SUM(repositories), 0) FROM project_stats \
                 WHERE project IN ({VISIBLE_PROJECTS})), \
                (SELECT COALESCE(MAX(id), 0) FROM repositories)"
    )
}
const MANIFEST_BY_TAG: &str = "SELECT m.digest, m.media_type, m.content FROM repositories r \
     JOIN tags t ON t.repo_id = r.id JOIN manifests m ON m.repo_id = r.id AND m.digest = t.digest \
     WHERE r.name = ? AND t.name = ?";
const MANIFEST_BY_DIGEST: &str = "SELECT m.digest, m.media_type, m.content FROM repositories r \
     JOIN manifests m ON m.repo_id = r.id WHERE r.name = ? AND m.digest = ?";
const REFERRERS: &str = "SELECT digest, media_type, size, artifact_type, annotations \
     FROM manifests WHERE repo_id = (SELECT id FROM repositories WHERE name = ?) \
     AND subject = ? AND (? IS NULL OR artifact_type = ?) ORDER BY digest";
const TAGS_PAGE: &str = "SELECT group_concat(name, char(10) ORDER BY name) FROM ( \
     SELECT name FROM tags WHERE repo_id = ? AND name > ? ORDER BY name LIMIT ?)";
const UPLOAD_REPOSITORY: &str =
    "SELECT r.name FROM uploads u JOIN repositories r ON r.id = u.repo_id WHERE u.id = ?";
const DELETE_TAG: &str =
    "DELETE FROM tags WHERE repo_id = (SELECT id FROM repositories WHERE name = ?) AND name = ?";

/// Size of each referenced blob linked in the repository, by reference index.
const BLOB_SIZES: &str = "SELECT j.key, b.size FROM json_each(?1) j \
     LEFT JOIN repo_blobs l ON l.repo_id = ?2 AND l.digest = j.value \
     LEFT JOIN blobs b ON b.digest = l.digest ORDER BY j.key";
/// Size of each referenced child manifest in the repository, by reference index.
const CHILD_SIZES: &str = "SELECT j.key, m.size FROM json_each(?1) j \
     LEFT JOIN manifests m ON m.repo_id = ?2 AND m.digest = j.value ORDER BY j.key";

/// The references' digests as a JSON array of strings (digests need no escaping).
fn digests_json(refs: &[Ref]) -> String {
    let quoted: Vec<String> = refs.iter().map(|r| format!("\"{}\"", r.digest)).collect();
    format!("[{}]", quoted.join(","))
}

/// A list of names aggregated into one row by `group_concat(name, char(10))`.
/// sqlx hands SQLite rows over one by one through a channel, which cost more
/// than the query itself for a 2,000-tag list; one row costs one hand-over.
/// Tag and repository names cannot hold a newline (their grammars say so).
fn split_names(joined: Option<String>) -> Vec<String> {
    joined.map_or_else(Vec::new, |s| s.split('\n').map(str::to_owned).collect())
}

#[async_trait]
impl RepoIndex for SqliteMetadata {
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
    async fn linked_blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar(LINKED_BLOB_SIZE)
            .bind(repo.as_str())
            .bind(digest.to_string())
            .fetch_optional(&self.read)
            .await?;
        Ok(size.map(|s| s as u64))
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

#[async_trait]
impl BlobLinks for SqliteMetadata {
    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        let mut w = self.writer().await?;
        let mut tx = w.conn().begin().await?;
        let repo_id = Self::repo_id_or_create(&mut tx, repo).await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(digest.to_string())
        .bind(size as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO repo_blobs (repo_id, digest, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")
            .bind(repo_id)
            .bind(digest.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        w.done();
        Ok(())
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

#[async_trait]
impl ManifestIndex for SqliteMetadata {
    async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>> {
        let row = match reference {
            Reference::Tag(tag) => {
                sqlx::query(MANIFEST_BY_TAG)
                    .bind(repo.as_str())
                    .bind(tag.as_str())
                    .fetch_optional(&self.read)
                    .await?
            }
            Reference::Digest(digest) => {
                sqlx::query(MANIFEST_BY_DIGEST)
                    .bind(repo.as_str())
                    .bind(digest.to_string())
                    .fetch_optional(&self.read)
                    .await?
            }
        };
        row.map(|row| {
            Ok(ManifestRecord {
                digest: parse(row.get("digest"))?,
                media_type: row.get("media_type"),
                content: Bytes::from(row.get::<Vec<u8>, _>("content")),
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
            .bind(artifact_type)
            .fetch_all(&self.read)
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
            .fetch_optional(&self.read)
            .await?
        else {
            return Ok(None);
        };
        let joined: Option<String> = sqlx::query_scalar(TAGS_PAGE)
            .bind(repo_id)
            .bind(page.last.as_deref().unwrap_or(""))
            .bind(page.limit)
            .fetch_one(&self.read)
            .await?;
        Ok(Some(split_names(joined)))
    }
}

#[async_trait]
impl ManifestWrites for SqliteMetadata {
    async fn put_manifest(&self, m: &NewManifest) -> Result<()> {
        let mut w = self.writer().await?;
        let mut tx = w.conn().begin().await?;
        let repo_id = Self::repo_id_or_create(&mut tx, &m.repo).await?;
        Self::check_refs(&mut tx, repo_id, &m.blobs, BLOB_SIZES).await?;
        Self::check_refs(&mut tx, repo_id, &m.children, CHILD_SIZES).await?;
        let now = now_ms();
        let digest = m.digest.to_string();
        sqlx::query(
                "INSERT INTO manifests (repo_id, digest, media_type, artifact_type, subject, annotations, size, content, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
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
        for (kind, refs) in [(0, &m.blobs), (1, &m.children)] {
            if refs.is_empty() {
                continue;
            }
            // One statement for all references, however many there are.
            sqlx::query(
                "INSERT INTO manifest_refs (repo_id, manifest_digest, child_digest, kind) \
                     SELECT ?, ?, value, ? FROM json_each(?) WHERE true ON CONFLICT DO NOTHING",
            )
            .bind(repo_id)
            .bind(&digest)
            .bind(kind)
            .bind(digests_json(refs))
            .execute(&mut *tx)
            .await?;
        }
        if let Some(tag) = &m.tag {
            sqlx::query(
                    "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (repo_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
                )
                .bind(repo_id)
                .bind(tag.as_str())
                .bind(&digest)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        w.done();
        Ok(())
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let mut w = self.writer().await?;
        let mut tx = w.conn().begin().await?;
        let Some(repo_id) = sqlx::query_scalar::<_, i64>(REPO_ID)
            .bind(repo.as_str())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(false);
        };
        let digest = digest.to_string();
        let done = sqlx::query("DELETE FROM manifests WHERE repo_id = ? AND digest = ?")
            .bind(repo_id)
            .bind(&digest)
            .execute(&mut *tx)
            .await?;
        for table in [
            "DELETE FROM tags WHERE repo_id = ? AND digest = ?",
            "DELETE FROM manifest_refs WHERE repo_id = ? AND manifest_digest = ?",
        ] {
            sqlx::query(table)
                .bind(repo_id)
                .bind(&digest)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        w.done();
        Ok(done.rows_affected() > 0)
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let mut w = self.writer().await?;
        let done = sqlx::query(DELETE_TAG)
            .bind(repo.as_str())
            .bind(tag.as_str())
            .execute(w.conn())
            .await?;
        w.done();
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl UploadIndex for SqliteMetadata {
    async fn create_upload(&self, id: &str, repo: &RepoName) -> Result<()> {
        let mut w = self.writer().await?;
        let mut tx = w.conn().begin().await?;
        let repo_id = Self::repo_id_or_create(&mut tx, repo).await?;
        sqlx::query("INSERT INTO uploads (id, repo_id, created_at) VALUES (?, ?, ?)")
            .bind(id)
            .bind(repo_id)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        w.done();
        Ok(())
    }

    async fn upload_repository(&self, id: &str) -> Result<Option<RepoName>> {
        let name: Option<String> = sqlx::query_scalar(UPLOAD_REPOSITORY)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        name.map(parse).transpose()
    }

    async fn delete_upload(&self, id: &str) -> Result<()> {
        let mut w = self.writer().await?;
        sqlx::query("DELETE FROM uploads WHERE id = ?")
            .bind(id)
            .execute(w.conn())
            .await?;
        w.done();
        Ok(())
    }

    async fn list_uploads(&self) -> Result<Vec<(String, i64)>> {
        Ok(
            sqlx::query_as("SELECT id, created_at FROM uploads ORDER BY created_at")
                .fetch_all(&self.read)
                .await?,
        )
    }
}

#[async_trait]
impl Health for SqliteMetadata {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Every hot query reaches its rows through an index lookup (`SEARCH`):
    /// its plan has no `SCAN` of a table or of a whole index.
    #[tokio::test]
    async fn hot_queries_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let m = SqliteMetadata::open(&dir.path().join("metadata.db"))
            .await
            .unwrap();
        // Enough rows that the planner would rather not scan them.
        for i in 0..50 {
            let repo: RepoName = format!("plan/r{i}").parse().unwrap();
            let digest = Digest::sha256_of(format!("blob {i}").as_bytes());
            m.link_blob(&repo, &digest, 1).await.unwrap();
        }
        for (name, query) in [
            ("REPO_ID", REPO_ID),
            ("LINKED_BLOB_SIZE", LINKED_BLOB_SIZE),
            ("visible_holder_query", &visible_holder_query()),
            ("ANY_HOLDER", ANY_HOLDER),
            ("CATALOG_ALL", CATALOG_ALL),
            ("catalog_by_project", &catalog_by_project()),
            ("catalog_by_name", &catalog_by_name()),
            ("visible_counts", &visible_counts()),
            ("MANIFEST_BY_TAG", MANIFEST_BY_TAG),
            ("MANIFEST_BY_DIGEST", MANIFEST_BY_DIGEST),
            ("REFERRERS", REFERRERS),
            ("TAGS_PAGE", TAGS_PAGE),
            ("UPLOAD_REPOSITORY", UPLOAD_REPOSITORY),
            ("DELETE_TAG", DELETE_TAG),
            ("BLOB_SIZES", BLOB_SIZES),
            ("CHILD_SIZES", CHILD_SIZES),
        ] {
            assert_no_scans(&m.read, name, query).await;
        }
    }

    /// A registry made before the usage counters gets them, right, from what
    /// it holds when it is first opened by this version.
    #[tokio::test]
    async fn counters_are_filled_for_an_existing_registry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.db");
        let old = dir.path().join("old-migrations");
        std::fs::create_dir(&old).unwrap();
        for entry in
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite")).unwrap()
        {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            if name.as_str() < "0007" {
                std::fs::copy(entry.path(), old.join(&name)).unwrap();
            }
        }
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::migrate::Migrator::new(old.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        for statement in [
            "INSERT INTO repositories (id, name, created_at) VALUES (1, 'old/a', 1), (2, 'old/b', 1), \
               (3, 'old', 1), (4, 'other/x', 1)",
            "INSERT INTO blobs (digest, size, created_at) VALUES ('sha256:aa', 100, 1), ('sha256:bb', 7, 1)",
            "INSERT INTO repo_blobs (repo_id, digest, created_at) VALUES (1, 'sha256:aa', 1), \
               (1, 'sha256:bb', 1), (2, 'sha256:aa', 1), (4, 'sha256:bb', 1)",
            "INSERT INTO manifests (repo_id, digest, media_type, size, content, created_at) VALUES \
               (1, 'sha256:m1', 'x', 2, X'7B7D', 10), (2, 'sha256:m2', 'x', 2, X'7B7D', 20)",
            "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES (1, 'v1', 'sha256:m1', 30), \
               (1, 'v2', 'sha256:m1', 40), (2, 'v1', 'sha256:m2', 25)",
        ] {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        pool.close().await;

        let m = SqliteMetadata::open(&path).await.unwrap();
        assert_counters_consistent(&m).await;
        let usage = m
            .project_usage(&["old".to_string(), "other".to_string()])
            .await
            .unwrap();
        assert_eq!(usage.len(), 1, "{usage:?}");
        assert_eq!(
            (
                usage[0].repositories,
                usage[0].storage_bytes,
                usage[0].last_push
            ),
            (2, 107, Some(40))
        );
        let repos = m.repositories_in("old", "", 10).await.unwrap();
        let summary: Vec<(&str, u64, u64)> = repos
            .iter()
            .map(|r| (r.name.as_str(), r.tags, r.storage_bytes))
            .collect();
        assert_eq!(summary, [("old/a", 2, 107), ("old/b", 1, 100)]);
        // And the triggers keep them from there.
        let repo: RepoName = "old/b".parse().unwrap();
        m.link_blob(&repo, &Digest::sha256_of(b"new"), 5)
            .await
            .unwrap();
        assert_counters_consistent(&m).await;
    }

    /// The two ways of reading a restricted catalog page give the same pages.
    #[tokio::test]
    async fn catalog_strategies_agree() {
        let dir = tempfile::tempdir().unwrap();
        let m = SqliteMetadata::open(&dir.path().join("metadata.db"))
            .await
            .unwrap();
        m.create_user("viewer", "hash", false).await.unwrap();
        m.create_project("c-pub", true, None).await.unwrap();
        m.create_project("c-mine", false, Some("viewer"))
            .await
            .unwrap();
        m.create_project("c-priv", false, None).await.unwrap();
        m.create_project("c", false, Some("viewer")).await.unwrap();
        let mut names = vec!["c".to_string()];
        for project in ["c-pub", "c-mine", "c-priv", "c"] {
            for i in 0..5 {
                names.push(format!("{project}/r{i}"));
            }
        }
        for name in &names {
            let repo: RepoName = name.parse().unwrap();
            let d = Digest::sha256_of(name.as_bytes());
            m.put_manifest(&NewManifest {
                repo,
                digest: d,
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                content: Bytes::from_static(b"{}"),
                artifact_type: None,
                subject: None,
                annotations: None,
                blobs: Vec::new(),
                children: Vec::new(),
                tag: Some("t".parse().unwrap()),
            })
            .await
            .unwrap();
        }
        for (member, project) in [(Some("viewer"), None), (None, Some("c-priv")), (None, None)] {
            for limit in [1u32, 3, 100] {
                let mut last = String::new();
                for _ in 0..30 {
                    let mut pages = Vec::new();
                    for query in [catalog_by_name(), catalog_by_project()] {
                        let joined: Option<String> = sqlx::query_scalar(&query)
                            .bind(member)
                            .bind(project)
                            .bind(&last)
                            .bind(limit)
                            .fetch_one(&m.read)
                            .await
                            .unwrap();
                        pages.push(split_names(joined));
                    }
                    assert_eq!(pages[0], pages[1], "{member:?} {project:?} after {last:?}");
                    match pages[0].last() {
                        Some(l) => last = l.clone(),
                        None => break,
                    }
                }
            }
        }
    }

    /// Fails when the plan of `query` scans a table or a whole index. What
    /// is not one: a subquery's rows (bounded by its own plan, checked in
    /// the same list), json_each's input, and the partial index of public
    /// projects (exactly the rows a caller restricted to projects may see).
    pub(in crate::metadata) async fn assert_no_scans(pool: &SqlitePool, name: &str, query: &str) {
        let plan = query_plan(pool, query).await;
        let subqueries: Vec<String> = plan
            .iter()
            .filter_map(|step| {
                step.strip_prefix("MATERIALIZE ")
                    .or_else(|| step.strip_prefix("CO-ROUTINE "))
                    .map(str::to_owned)
            })
            .collect();
        let scans: Vec<&String> = plan
            .iter()
            .filter(|step| step.starts_with("SCAN ") && !step.starts_with("SCAN ("))
            // A virtual table's step names its constraints after "INDEX n:";
            // none (the trigram index read whole) is a scan.
            .filter(|step| !step.contains("VIRTUAL TABLE") || step.ends_with("INDEX 0:"))
            .filter(|step| !step.contains("INDEX projects_public") && *step != "SCAN CONSTANT ROW")
            .filter(|step| {
                let table = step["SCAN ".len()..].split(' ').next().unwrap_or("");
                !subqueries.iter().any(|s| s == table)
            })
            .collect();
        assert!(scans.is_empty(), "{name} scans a table: {plan:#?}");
    }

    /// The usage counters (`repo_stats`, `project_stats`, `project_blobs`)
    /// equal what the tables they summarise say, as recounted from scratch.
    pub(in crate::metadata) async fn assert_counters_consistent(m: &SqliteMetadata) {
        let repos: Vec<(String, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT r.name, COALESCE(s.manifests, -1), \
               (SELECT COUNT(*) FROM manifests WHERE repo_id = r.id), COALESCE(s.tags, -1), \
               (SELECT COUNT(*) FROM tags WHERE repo_id = r.id), COALESCE(s.bytes, -1), \
               (SELECT COALESCE(SUM(b.size), 0) FROM repo_blobs l JOIN blobs b ON b.digest = l.digest \
                  WHERE l.repo_id = r.id) \
             FROM repositories r LEFT JOIN repo_stats s ON s.repo_id = r.id",
        )
        .fetch_all(&m.read)
        .await
        .unwrap();
        assert!(!repos.is_empty());
        for (name, manifests, m2, tags, t2, bytes, b2) in repos {
            assert_eq!((manifests, tags, bytes), (m2, t2, b2), "counters of {name}");
        }
        let projects: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
            "WITH actual AS (SELECT r.project, \
                 SUM(EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id)) AS holding, \
                 (SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.digest IN \
                    (SELECT l.digest FROM repo_blobs l JOIN repositories q ON q.id = l.repo_id \
                     WHERE q.project = r.project)) AS bytes \
               FROM repositories r GROUP BY r.project) \
             SELECT a.project, a.holding, COALESCE(p.repositories, -1), a.bytes, COALESCE(p.bytes, -1) \
             FROM actual a LEFT JOIN project_stats p ON p.project = a.project",
        )
        .fetch_all(&m.read)
        .await
        .unwrap();
        for (name, holding, repositories, actual, bytes) in projects {
            assert_eq!(
                (repositories, bytes),
                (holding, actual),
                "counters of project {name}"
            );
        }
        let stray: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM project_stats p WHERE (p.repositories <> 0 OR p.bytes <> 0) \
             AND NOT EXISTS (SELECT 1 FROM repositories r WHERE r.project = p.project)",
        )
        .fetch_one(&m.read)
        .await
        .unwrap();
        assert_eq!(stray, 0, "usage left behind by deleted repositories");
    }

    /// The steps of `EXPLAIN QUERY PLAN query` (parameters bound to NULL).
    pub(in crate::metadata) async fn query_plan(pool: &SqlitePool, query: &str) -> Vec<String> {
        sqlx::query_as::<_, (i64, i64, i64, String)>(&format!("EXPLAIN QUERY PLAN {query}"))
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| panic!("EXPLAIN of {query}: {e}"))
            .into_iter()
            .map(|(_, _, _, detail)| detail)
            .collect()
    }
}
