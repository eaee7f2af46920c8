//! Upload-session exclusivity across replicas: a lease row per held
//! session. The holder renews it while its request runs and deletes it
//! when done; a replica that dies leaves its leases to expire, so its
//! sessions can be resumed elsewhere a minute later. No connection is held
//! while a session is (thousands of uploads may run at once).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;

use super::now_ms;
use crate::storage::{SessionLock, SessionLocks, StorageError};

pub struct PgSessionLocks {
    pub(super) pool: PgPool,
}

/// How long a lease lasts unless renewed.
const LEASE: Duration = Duration::from_secs(60);

fn db_error(e: sqlx::Error) -> StorageError {
    StorageError::Io(std::io::Error::other(format!("upload session lock: {e}")))
}

/// A held lease: renewed in the background, released on drop.
struct Held {
    renewal: tokio::task::JoinHandle<()>,
    pool: PgPool,
    id: String,
    holder: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewal.abort();
        let (pool, id, holder) = (self.pool.clone(), self.id.clone(), self.holder.clone());
        // Outside a runtime (at exit) the lease simply expires.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let released =
                    sqlx::query("DELETE FROM upload_leases WHERE id = $1 AND holder = $2")
                        .bind(&id)
                        .bind(&holder)
                        .execute(&pool)
                        .await;
                if let Err(e) = released {
                    tracing::warn!(session = %id, error = %e, "upload lease left to expire");
                }
            });
        }
    }
}

async fn renew(pool: PgPool, id: String, holder: String) {
    loop {
        tokio::time::sleep(LEASE / 3).await;
        let renewed =
            sqlx::query("UPDATE upload_leases SET expires_at = $3 WHERE id = $1 AND holder = $2")
                .bind(&id)
                .bind(&holder)
                .bind(now_ms() + LEASE.as_millis() as i64)
                .execute(&pool)
                .await;
        if let Err(e) = renewed {
            tracing::warn!(session = %id, error = %e, "renewing an upload lease failed");
        }
    }
}

#[async_trait]
impl SessionLocks for PgSessionLocks {
    async fn try_lock(&self, id: &str) -> Result<Option<SessionLock>, StorageError> {
        // A holder releases in the background as its request ends, so the
        // client's next request may come first: it waits for that a moment.
        for _ in 0..RELEASE_WAITS {
            if let Some(held) = self.take(id).await? {
                return Ok(Some(held));
            }
            tokio::time::sleep(RELEASE_WAIT).await;
        }
        self.take(id).await
    }
}

/// How long (in all) a lock waits for a holder that is letting go.
const RELEASE_WAIT: Duration = Duration::from_millis(10);
const RELEASE_WAITS: u32 = 30;

impl PgSessionLocks {
    async fn take(&self, id: &str) -> Result<Option<SessionLock>, StorageError> {
        let holder = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        // Taken when free or when its lease ran out.
        let taken: Option<String> = sqlx::query_scalar(
            "INSERT INTO upload_leases (id, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
             WHERE upload_leases.expires_at < $4 RETURNING holder",
        )
        .bind(id)
        .bind(&holder)
        .bind(now + LEASE.as_millis() as i64)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        if taken.is_none() {
            return Ok(None);
        }
        let renewal = tokio::spawn(renew(self.pool.clone(), id.to_string(), holder.clone()));
        Ok(Some(Box::new(Held {
            renewal,
            pool: self.pool.clone(),
            id: id.to_string(),
            holder,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::test_postgres::fresh_database;
    use crate::metadata::PgMetadata;

    #[tokio::test]
    async fn a_session_is_held_by_one_replica_at_a_time() {
        let url = fresh_database().await;
        let a = PgSessionLocks {
            pool: PgMetadata::open(&url, 2).await.unwrap().pool,
        };
        let b = PgSessionLocks {
            pool: PgMetadata::open(&url, 2).await.unwrap().pool,
        };
        // More sessions held at once than either pool has connections.
        let mut held = Vec::new();
        for i in 0..10 {
            held.push(
                a.try_lock(&format!("s{i}"))
                    .await
                    .unwrap()
                    .expect("free at first"),
            );
        }
        assert!(
            b.try_lock("s1").await.unwrap().is_none(),
            "held by the other replica"
        );
        assert!(
            a.try_lock("s1").await.unwrap().is_none(),
            "held, even for its holder"
        );
        assert!(
            b.try_lock("other").await.unwrap().is_some(),
            "another session is free"
        );
        drop(held);
        let mut freed = None;
        for _ in 0..200 {
            freed = b.try_lock("s1").await.unwrap();
            if freed.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(freed.is_some(), "released once its holder let go");
    }

    #[tokio::test]
    async fn the_lease_of_a_dead_replica_runs_out() {
        let url = fresh_database().await;
        let pool = PgMetadata::open(&url, 2).await.unwrap().pool;
        // What a replica killed while holding the session leaves behind.
        sqlx::query("INSERT INTO upload_leases (id, holder, expires_at) VALUES ('s', 'dead', $1)")
            .bind(now_ms() - 1)
            .execute(&pool)
            .await
            .unwrap();
        let locks = PgSessionLocks { pool };
        assert!(locks.try_lock("s").await.unwrap().is_some());
    }
}
