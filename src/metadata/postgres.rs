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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::test_postgres::fresh_database;

    /// Two replicas starting together on an empty database both come up on
    /// the one schema, and its triggers keep the usage counters.
    #[tokio::test]
    async fn schema_applies_once_for_replicas_starting_together() {
        let url = fresh_database().await;
        let (a, b) = tokio::join!(PgMetadata::open(&url, 2), PgMetadata::open(&url, 2));
        let (a, b) = (a.unwrap(), b.unwrap());
        b.ping().await.unwrap();
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(&a.pool)
            .await
            .unwrap();
        assert_eq!(applied, 1);
        sqlx::query(
            "INSERT INTO repositories (name, project, created_at) VALUES ('lib/a', 'lib', 1)",
        )
        .execute(&a.pool)
        .await
        .unwrap();
        let counters: (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM repo_stats), (SELECT COUNT(*) FROM project_stats)",
        )
        .fetch_one(&b.pool)
        .await
        .unwrap();
        assert_eq!(counters, (1, 1));
    }
}
