//! PostgreSQL backend (the scale-out mode): N berth replicas share one
//! database, so every piece of state a replica must see is a row here and
//! every rule that spans rows (a manifest and its references, a blob being
//! collected, a quota) is enforced inside one transaction, with row locks
//! where two replicas could race.
//!
//! Schema and behaviour mirror the SQLite backend table for table (same
//! names, same columns, `BIGINT` for SQLite's `INTEGER`, `BYTEA` for
//! `BLOB`), and both pass the same suites.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::*;

pub struct PgMetadata {
    pub(super) pool: PgPool,
}

impl PgMetadata {
    /// Connects with a pool of at most `max_connections` and applies the
    /// migrations. sqlx holds a PostgreSQL advisory lock while it migrates,
    /// so replicas starting together apply each migration once.
    pub async fn open(url: &str, max_connections: u32) -> Result<PgMetadata> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgMetadata { pool })
    }
}

#[async_trait]
impl Health for PgMetadata {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn pools(&self) -> Vec<PoolUsage> {
        vec![PoolUsage::of("postgres", &self.pool)]
    }
}

/// A failure PostgreSQL resolves by running the transaction again: it
/// aborted this one to break a deadlock (40P01) or a serialization conflict
/// (40001) with another replica's transaction. Nothing of it was committed.
pub(super) fn is_transient(e: &MetadataError) -> bool {
    match e {
        MetadataError::Db(sqlx::Error::Database(d)) => {
            matches!(d.code().as_deref(), Some("40P01") | Some("40001"))
        }
        _ => false,
    }
}

/// Attempts of a write aborted by [`is_transient`] failures, in all.
const WRITE_ATTEMPTS: u32 = 5;

/// Runs `attempt` (one whole transaction) again after a transient failure,
/// a few times, with a short growing pause so the other side commits.
pub(super) async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e) if tries < WRITE_ATTEMPTS && is_transient(&e) => {
                tracing::debug!("metadata write aborted by PostgreSQL ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(u64::from(tries) * 10)).await;
                tries += 1;
            }
            outcome => return outcome,
        }
    }
}

pub(super) type PgTx = sqlx::Transaction<'static, sqlx::Postgres>;

pub(super) const REPO_ID: &str = "SELECT id FROM repositories WHERE name = $1";

/// The names of the projects a caller restricted to projects may see, with
/// parameters $1 = the member's name, $2 = the robot's project (see
/// [`Visible::Projects`]).
pub(super) const VISIBLE_PROJECTS: &str = "SELECT name FROM projects WHERE public = 1 \
     UNION SELECT p.name FROM users u JOIN members mb ON mb.user_id = u.id \
       JOIN projects p ON p.id = mb.project_id WHERE u.name = $1 \
     UNION SELECT name FROM projects WHERE name = $2";

/// Attempts to find or create a repository row that a concurrent delete
/// keeps taking away (each attempt waits for that delete to commit).
const REPO_ATTEMPTS: usize = 10;

impl PgMetadata {
    /// The repository's id, creating it, with its row share-locked until
    /// the transaction ends: a concurrent delete (a sweep finding it empty,
    /// `delete_repository`) waits for this transaction, and then sees what
    /// it added. A row deleted while we waited for its lock is not
    /// returned, so the repository is created again.
    pub(super) async fn repo_id_or_create(tx: &mut PgTx, repo: &RepoName) -> Result<i64> {
        for _ in 0..REPO_ATTEMPTS {
            if let Some(id) = sqlx::query_scalar::<_, i64>(
                "SELECT id FROM repositories WHERE name = $1 FOR KEY SHARE",
            )
            .bind(repo.as_str())
            .fetch_optional(&mut **tx)
            .await?
            {
                return Ok(id);
            }
            // Another replica creating it at once: the loser's insert
            // waits for the winner's commit, does nothing, and the next
            // round's select finds (and locks) the winner's row.
            if let Some(id) = sqlx::query_scalar::<_, i64>(
                "INSERT INTO repositories (name, project, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING RETURNING id",
            )
            .bind(repo.as_str())
            .bind(repo.project())
            .bind(now_ms())
            .fetch_optional(&mut **tx)
            .await?
            {
                return Ok(id);
            }
        }
        Err(MetadataError::Corrupt(format!(
            "repository {repo} kept disappearing while it was being created"
        )))
    }

    /// Locks the repository: its row `FOR KEY SHARE` (as a push holds it,
    /// so a deletion of it waits), then its usage row (`repo_stats`)
    /// `FOR UPDATE`, for the rest of the transaction; `false` when the
    /// repository is gone. Every transaction that writes a repository's
    /// counted rows (links, manifests, tags) takes this lock before any
    /// other row lock of that repository, of a blob or of its project:
    /// writes to one repository then queue in one line instead of
    /// deadlocking over rows they lock in different orders (a tag checked,
    /// then `repo_stats` by a trigger, in one; the other way round in the
    /// next), and those to different repositories still run side by side.
    /// The order after it: blobs, the repository's rows, `project_stats`,
    /// `project_blobs`.
    pub(super) async fn lock_repository(tx: &mut PgTx, repo_id: i64) -> Result<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT id FROM repositories WHERE id = $1 FOR KEY SHARE")
                .bind(repo_id)
                .fetch_optional(&mut **tx)
                .await?;
        if found.is_none() {
            return Ok(false);
        }
        sqlx::query("SELECT 1 FROM repo_stats WHERE repo_id = $1 FOR UPDATE")
            .bind(repo_id)
            .execute(&mut **tx)
            .await?;
        Ok(true)
    }

    /// Sets `touched_at` of `repo`'s row for `digest` in `table`
    /// (`manifests` or `repo_blobs`) to now; whether the row exists.
    pub(super) async fn touch(
        &self,
        table: &str,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool> {
        let done = sqlx::query(&format!(
            "UPDATE {table} SET touched_at = $3 \
             WHERE repo_id = (SELECT id FROM repositories WHERE name = $1) AND digest = $2"
        ))
        .bind(repo.as_str())
        .bind(digest.to_string())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
#[path = "pg_tests.rs"]
pub(super) mod tests;
