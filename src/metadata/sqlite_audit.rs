//! The audit log on SQLite: batched inserts, pruning and filtered pages.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::sqlite::SqliteMetadata;
use super::*;

/// Audit events from the JSON array ?1 of
/// `[at, actor, source, action, repository, digest, detail, success]`, in
/// its order (ids ascending).
const RECORD_AUDIT: &str = "INSERT INTO audit \
     (at, actor, source, action, repository, digest, detail, success) \
     SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, \
       j.value ->> 5, j.value ->> 6, j.value ->> 7 FROM json_each(?1) j ORDER BY j.key";

#[async_trait]
impl AuditLog for SqliteMetadata {
    async fn record(&self, events: &[NewAuditEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        // One statement per batch, however many events: a busy registry's
        // pulls cost one statement and one fsync per batch, not per event.
        let rows: Vec<_> = events
            .iter()
            .map(|e| {
                (
                    e.at,
                    &e.actor,
                    &e.source,
                    &e.action,
                    &e.repository,
                    &e.digest,
                    &e.detail,
                    e.success,
                )
            })
            .collect();
        let rows = serde_json::to_string(&rows)
            .map_err(|e| MetadataError::Corrupt(format!("audit events: {e}")))?;
        let mut w = self.writer().await?;
        sqlx::query(RECORD_AUDIT)
            .bind(rows)
            .execute(w.conn())
            .await?;
        w.done();
        Ok(())
    }

    async fn prune(&self, before: i64, batch: u32) -> Result<u64> {
        let mut deleted = 0;
        loop {
            // Oldest first, by the `at` index; one batch per statement, so
            // other writes get the connection between batches.
            let mut w = self.writer().await?;
            let done = sqlx::query(
                "DELETE FROM audit WHERE id IN \
                 (SELECT id FROM audit WHERE at < ? ORDER BY at LIMIT ?)",
            )
            .bind(before)
            .bind(batch.max(1))
            .execute(w.conn())
            .await?
            .rows_affected();
            w.done();
            deleted += done;
            if done < u64::from(batch.max(1)) {
                return Ok(deleted);
            }
        }
    }

    async fn query(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
        // Only the given conditions go into the SQL, so SQLite can pick the
        // matching index instead of scanning past `? IS NULL OR …` terms.
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT id, at, actor, source, action, repository, digest, detail, success \
             FROM audit WHERE 1 = 1",
        );
        if let Some(actor) = &f.actor {
            q.push(" AND actor = ").push_bind(actor);
        }
        if let Some(action) = &f.action {
            q.push(" AND action = ").push_bind(action);
        }
        if let Some(repository) = &f.repository {
            q.push(" AND repository = ").push_bind(repository);
        }
        if let Some(since) = f.since {
            q.push(" AND at >= ").push_bind(since);
        }
        if let Some(until) = f.until {
            q.push(" AND at < ").push_bind(until);
        }
        if let Some(before_id) = f.before_id {
            q.push(" AND id < ").push_bind(before_id);
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit);
        let rows = q.build().fetch_all(&self.read).await?;
        Ok(rows
            .iter()
            .map(|row| AuditEvent {
                id: row.get("id"),
                at: row.get("at"),
                actor: row.get("actor"),
                source: row.get("source"),
                action: row.get("action"),
                repository: row.get("repository"),
                digest: row.get("digest"),
                detail: row.get("detail"),
                success: row.get("success"),
            })
            .collect())
    }
}
