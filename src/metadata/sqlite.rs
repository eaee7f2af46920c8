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
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Writes of requests waiting for the write connection: background
    /// work ([`SqliteMetadata::background_writer`]) lets them go first.
    queued: AtomicUsize,
}

/// How long a background write waits for the requests' writes to drain
/// before it queues anyway (so that a steady load does not starve it).
const BACKGROUND_YIELD: Duration = Duration::from_millis(10);

/// Counts a request's write as queued while it waits for the connection.
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::AcqRel);
        Queued(n)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(super) fn parse<T: FromStr>(s: String) -> Result<T>
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

    /// Begins a write transaction that holds the write lock from its first
    /// statement (`BEGIN IMMEDIATE`). A deferred one would read first and
    /// then fail at once with SQLITE_BUSY, instead of waiting out the busy
    /// timeout, whenever another connection holds the lock: a replaced write
    /// connection still closing, or another process (the CLI) writing.
    pub(super) async fn begin(&mut self) -> Result<Transaction<'_, Sqlite>> {
        Ok(self.conn().begin_with("BEGIN IMMEDIATE").await?)
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
        Ok(SqliteMetadata {
            read,
            write,
            queued: AtomicUsize::new(0),
        })
    }

    /// Sets `touched_at` of `repo`'s row for `digest` in `table`
    /// (`manifests` or `repo_blobs`) to now; whether the row exists.
    pub(super) async fn touch(
        &self,
        table: &str,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool> {
        let mut w = self.writer().await?;
        let done = sqlx::query(&format!(
            "UPDATE {table} SET touched_at = ?3 \
             WHERE repo_id = (SELECT id FROM repositories WHERE name = ?1) AND digest = ?2"
        ))
        .bind(repo.as_str())
        .bind(digest.to_string())
        .bind(now_ms())
        .execute(w.conn())
        .await?;
        w.done();
        Ok(done.rows_affected() > 0)
    }

    /// The write connection, for one write (see [`Writer`]).
    pub(super) async fn writer(&self) -> Result<Writer> {
        let _queued = Queued::new(&self.queued);
        self.take_writer().await
    }

    async fn take_writer(&self) -> Result<Writer> {
        Ok(Writer {
            conn: Some(self.write.acquire().await?),
            clean: false,
        })
    }

    /// Requests' writes waiting for the write connection now.
    pub(super) fn writes_queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// The write connection for background work (a garbage collection's
    /// sweeps): it waits until no request's write is queued, at most
    /// [`BACKGROUND_YIELD`], so a push waits for at most one background
    /// transaction, and background work takes a bounded share of the writes
    /// under a steady load instead of starving.
    pub(super) async fn background_writer(&self) -> Result<Writer> {
        let until = tokio::time::Instant::now() + BACKGROUND_YIELD;
        while self.writes_queued() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.take_writer().await
    }

    pub(super) async fn repo_id_or_create(
        tx: &mut Transaction<'_, Sqlite>,
        repo: &RepoName,
    ) -> Result<i64> {
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

const MANIFEST_BY_TAG: &str =
    "SELECT m.digest, m.media_type, m.content, m.touched_at FROM repositories r \
     JOIN tags t ON t.repo_id = r.id JOIN manifests m ON m.repo_id = r.id AND m.digest = t.digest \
     WHERE r.name = ? AND t.name = ?";
const MANIFEST_BY_DIGEST: &str =
    "SELECT m.digest, m.media_type, m.content, m.touched_at FROM repositories r \
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
     LEFT JOIN blobs b ON b.digest = l.digest AND b.state = 'live' ORDER BY j.key";
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
pub(super) fn split_names(joined: Option<String>) -> Vec<String> {
    joined.map_or_else(Vec::new, |s| s.split('\n').map(str::to_owned).collect())
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
        let mut tx = w.begin().await?;
        let repo_id = Self::repo_id_or_create(&mut tx, &m.repo).await?;
        Self::check_refs(&mut tx, repo_id, &m.blobs, BLOB_SIZES).await?;
        Self::check_refs(&mut tx, repo_id, &m.children, CHILD_SIZES).await?;
        super::sqlite_policy::check_manifest_push(&mut tx, repo_id, m).await?;
        let now = now_ms();
        let digest = m.digest.to_string();
        sqlx::query(
                "INSERT INTO manifests (repo_id, digest, media_type, artifact_type, subject, annotations, size, content, created_at, touched_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9) ON CONFLICT DO UPDATE SET touched_at = excluded.touched_at",
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

    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        policy: &ProjectPolicy,
    ) -> Result<bool> {
        let mut w = self.writer().await?;
        let mut tx = w.begin().await?;
        let Some(repo_id) = sqlx::query_scalar::<_, i64>(REPO_ID)
            .bind(repo.as_str())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(false);
        };
        let digest = digest.to_string();
        super::sqlite_policy::check_tags_deletable(&mut tx, repo_id, &digest, policy).await?;
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

    async fn touch_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        self.touch("manifests", repo, digest).await
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
        let mut tx = w.begin().await?;
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

    fn pools(&self) -> Vec<PoolUsage> {
        vec![
            PoolUsage::of("sqlite_read", &self.read),
            PoolUsage::of("sqlite_write", &self.write),
        ]
    }
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
pub(super) mod tests;
