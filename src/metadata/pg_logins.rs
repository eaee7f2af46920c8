//! The shared failed-login counts on PostgreSQL: one row per limiter key.

use async_trait::async_trait;
use sqlx::Row as _;

use super::postgres::PgMetadata;
use super::{LoginLedger, LoginOutcome, Result, SharedLogins};

/// The database's clock, in Unix ms, at the moment of the write.
const NOW: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";

/// How far behind the cursor a read looks again: a write that took its
/// `changed` stamp before another but committed after it is still seen.
const SLACK_MS: i64 = 5_000;

#[async_trait]
impl LoginLedger for PgMetadata {
    async fn record_logins(&self, outcomes: &[LoginOutcome], forget_ms: i64) -> Result<()> {
        let failed = format!(
            "INSERT INTO login_failures AS f \
             (key, failures, last_failure, cleared, trusted_until, changed) \
             VALUES ($1, 1, $2, 0, 0, {NOW}) ON CONFLICT (key) DO UPDATE SET \
             failures = CASE WHEN f.last_failure < $2 - $3 THEN 1 ELSE f.failures + 1 END, \
             last_failure = GREATEST(f.last_failure, $2), changed = {NOW}"
        );
        let succeeded = format!(
            "INSERT INTO login_failures AS f \
             (key, failures, last_failure, cleared, trusted_until, changed) \
             VALUES ($1, 0, 0, $2, $3, {NOW}) ON CONFLICT (key) DO UPDATE SET \
             failures = 0, cleared = GREATEST(f.cleared, $2), \
             trusted_until = GREATEST(f.trusted_until, $3), changed = {NOW}"
        );
        for outcome in outcomes {
            match outcome {
                LoginOutcome::Failed { key, at } => {
                    sqlx::query(&failed)
                        .bind(key)
                        .bind(at)
                        .bind(forget_ms)
                        .execute(&self.pool)
                        .await?;
                }
                LoginOutcome::Succeeded {
                    key,
                    at,
                    trusted_until,
                } => {
                    sqlx::query(&succeeded)
                        .bind(key)
                        .bind(at)
                        .bind(trusted_until)
                        .execute(&self.pool)
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn logins_since(&self, cursor: i64) -> Result<(Vec<SharedLogins>, i64)> {
        let rows = sqlx::query(
            "SELECT key, failures, last_failure, cleared, trusted_until, changed \
             FROM login_failures WHERE changed > $1 ORDER BY changed LIMIT 10000",
        )
        .bind(cursor.saturating_sub(SLACK_MS))
        .fetch_all(&self.pool)
        .await?;
        let mut next = cursor;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            next = next.max(row.get::<i64, _>("changed"));
            out.push(SharedLogins {
                key: row.get("key"),
                failures: u32::try_from(row.get::<i32, _>("failures")).unwrap_or(0),
                last_failure: row.get("last_failure"),
                cleared: row.get("cleared"),
                trusted_until: row.get("trusted_until"),
            });
        }
        Ok((out, next))
    }

    async fn forget_logins(&self, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM login_failures WHERE changed < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
