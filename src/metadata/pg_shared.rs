//! Shared files on PostgreSQL: one table, exchanged under an advisory lock
//! so that replicas starting together agree on one copy.

use async_trait::async_trait;
use sqlx::Row as _;

use super::postgres::PgMetadata;
use super::{now_ms, Result, SharedFile, SharedFiles};

/// The advisory lock key of the exchange ("berth-sf").
const EXCHANGE_LOCK: i64 = 0x6265_7274_682d_7366;

#[async_trait]
impl SharedFiles for PgMetadata {
    async fn exchange_shared_files(
        &self,
        exchange: &(dyn Fn(Vec<SharedFile>) -> std::io::Result<Vec<SharedFile>> + Sync),
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(EXCHANGE_LOCK)
            .execute(&mut *tx)
            .await?;
        let stored: Vec<SharedFile> =
            sqlx::query("SELECT name, content FROM shared_files ORDER BY name")
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|row| SharedFile {
                    name: row.get("name"),
                    content: row.get("content"),
                })
                .collect();
        let fresh = exchange(stored).map_err(|e| super::MetadataError::Db(sqlx::Error::Io(e)))?;
        for file in fresh {
            sqlx::query(
                "INSERT INTO shared_files (name, content, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(&file.name)
            .bind(&file.content)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
