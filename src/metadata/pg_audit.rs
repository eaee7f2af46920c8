//! The audit log on PostgreSQL: batched inserts, pruning and filtered pages.

use async_trait::async_trait;
use sqlx::{Postgres, QueryBuilder, Row};

use super::*;

/// Audit events from the parallel arrays $1..$8 (at, actor, source, action,
/// repository, digest, detail, success), in their order (ids ascending).
const RECORD_AUDIT: &str = "INSERT INTO audit \
     (at, actor, source, action, repository, digest, detail, success) \
     SELECT at, actor, source, action, repository, digest, detail, success \
     FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
       $7::text[], $8::bigint[]) WITH ORDINALITY \
       AS e(at, actor, source, action, repository, digest, detail, success, n) \
     ORDER BY n";

/// The oldest batch ($2 rows) of events before $1, skipping rows another
/// replica's prune holds, so that replicas pruning at once take different
/// batches instead of waiting for each other and deleting nothing.
const PRUNE_AUDIT: &str = "DELETE FROM audit WHERE id IN \
     (SELECT id FROM audit WHERE at < $1 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED)";

#[async_trait]
impl AuditLog for PgMetadata {
    async fn record(&self, events: &[NewAuditEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        // One statement per batch, however many events.
        let column = |f: fn(&NewAuditEvent) -> Option<String>| -> Vec<Option<String>> {
            events.iter().map(f).collect()
        };
        sqlx::query(RECORD_AUDIT)
            .bind(events.iter().map(|e| e.at).collect::<Vec<i64>>())
            .bind(events.iter().map(|e| e.actor.clone()).collect::<Vec<_>>())
            .bind(column(|e| e.source.clone()))
            .bind(events.iter().map(|e| e.action.clone()).collect::<Vec<_>>())
            .bind(column(|e| e.repository.clone()))
            .bind(column(|e| e.digest.clone()))
            .bind(column(|e| e.detail.clone()))
            .bind(
                events
                    .iter()
                    .map(|e| i64::from(e.success))
                    .collect::<Vec<i64>>(),
            )
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn prune(&self, before: i64, batch: u32) -> Result<u64> {
        let batch = batch.max(1);
        let mut deleted = 0;
        loop {
            // One batch per statement (its own transaction), so that no
            // lock is held longer than one batch takes.
            let done = sqlx::query(PRUNE_AUDIT)
                .bind(before)
                .bind(i64::from(batch))
                .execute(&self.pool)
                .await?
                .rows_affected();
            deleted += done;
            if done < u64::from(batch) {
                return Ok(deleted);
            }
        }
    }

    async fn query(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>> {
        // Only the given conditions go into the SQL, so the planner picks
        // the matching index instead of planning for `$1 IS NULL OR …`.
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT id, at, actor, source, action, repository, digest, detail, success \
             FROM audit WHERE TRUE",
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
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEvent {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    source: row.try_get("source")?,
                    action: row.try_get("action")?,
                    repository: row.try_get("repository")?,
                    digest: row.try_get("digest")?,
                    detail: row.try_get("detail")?,
                    success: row.try_get::<i64, _>("success")? != 0,
                })
            })
            .collect()
    }
}
