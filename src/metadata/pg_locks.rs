//! Upload-session exclusivity across replicas: a PostgreSQL advisory lock
//! per session, held on one pooled connection while the session is open.
//! Every replica sharing the database sees it, and a replica that dies
//! releases its locks with its connections.

use std::hash::{Hash as _, Hasher as _};

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use crate::storage::{SessionLock, SessionLocks, StorageError};

pub struct PgSessionLocks {
    pub(super) pool: PgPool,
}

/// Advisory lock keys of upload sessions: a stable 64-bit hash of the id
/// (the same on every replica), in a space of its own by a fixed seed.
fn lock_key(id: &str) -> i64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    "berth upload session".hash(&mut h);
    id.hash(&mut h);
    h.finish() as i64
}

fn db_error(e: sqlx::Error) -> StorageError {
    StorageError::Io(std::io::Error::other(format!("upload session lock: {e}")))
}

struct Held {
    conn: Option<PoolConnection<Postgres>>,
    key: i64,
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let key = self.key;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                        .bind(key)
                        .execute(&mut *conn)
                        .await;
                    if unlocked.is_err() {
                        // Closing the connection releases its locks too.
                        drop(conn.detach());
                    }
                });
            }
            Err(_) => drop(conn.detach()),
        }
    }
}

#[async_trait]
impl SessionLocks for PgSessionLocks {
    async fn try_lock(&self, id: &str) -> Result<Option<SessionLock>, StorageError> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        let key = lock_key(id);
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)?;
        if !got {
            return Ok(None);
        }
        Ok(Some(Box::new(Held {
            conn: Some(conn),
            key,
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
            pool: PgMetadata::open(&url, 3).await.unwrap().pool,
        };
        let b = PgSessionLocks {
            pool: PgMetadata::open(&url, 3).await.unwrap().pool,
        };
        let held = a.try_lock("s1").await.unwrap().expect("free at first");
        assert!(b.try_lock("s1").await.unwrap().is_none(), "held by the other replica");
        assert!(a.try_lock("s1").await.unwrap().is_none(), "held, even for its holder's pool");
        let other = b.try_lock("s2").await.unwrap();
        assert!(other.is_some(), "another session is free");
        drop(held);
        let mut freed = None;
        for _ in 0..200 {
            freed = b.try_lock("s1").await.unwrap();
            if freed.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(freed.is_some(), "released once its holder let go");
    }
}
