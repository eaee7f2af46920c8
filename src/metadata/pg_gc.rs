//! The PostgreSQL backend's garbage-collection runs (the port of the run
//! bookkeeping in `sqlite_gc`). Replicas share one `gc_runs` table: the
//! partial unique index admits one requested-or-running run, and a claim is
//! one `UPDATE ... WHERE state = 'requested'`, so of two replicas claiming
//! at once the second waits for the first's row lock, then finds the run
//! no longer requested and gets nothing. Only the holder may renew or end it.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::postgres::PgMetadata;
use super::*;

const RUN_COLUMNS: &str = "id, state, dry_run, requested_by, requested_at, started_at, \
     finished_at, phase, stats, error";

fn run_of(row: PgRow) -> Result<GcRun> {
    let state: String = row.get("state");
    let stats: String = row.get("stats");
    Ok(GcRun {
        id: row.get("id"),
        state: GcState::parse(&state)
            .ok_or_else(|| MetadataError::Corrupt(format!("gc run state {state:?}")))?,
        dry_run: row.get::<i64, _>("dry_run") != 0,
        requested_by: row.get("requested_by"),
        requested_at: row.get("requested_at"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        phase: row.get("phase"),
        stats: serde_json::from_str(&stats)
            .map_err(|e| MetadataError::Corrupt(format!("gc run stats: {e}")))?,
        error: row.get("error"),
    })
}

fn stats_json(stats: &GcStats) -> String {
    serde_json::to_string(stats).unwrap_or_else(|_| "{}".into())
}

/// Rounds of "insert, else find the active run" in `request_gc`: the active
/// run may end between the two, and then the next insert succeeds.
const REQUEST_ROUNDS: usize = 10;

#[async_trait]
impl GcRuns for PgMetadata {
    async fn request_gc(&self, dry_run: bool, by: &str) -> Result<Result<GcRun, GcBusy>> {
        for _ in 0..REQUEST_ROUNDS {
            let inserted = sqlx::query(&format!(
                "INSERT INTO gc_runs (state, dry_run, requested_by, requested_at) \
                 VALUES ('requested', $1, $2, $3) RETURNING {RUN_COLUMNS}"
            ))
            .bind(i64::from(dry_run))
            .bind(by)
            .bind(now_ms())
            .fetch_one(&self.pool)
            .await;
            match inserted {
                Ok(row) => return Ok(Ok(run_of(row)?)),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    let active: Option<i64> =
                        sqlx::query_scalar("SELECT id FROM gc_runs WHERE active = 1")
                            .fetch_optional(&self.pool)
                            .await?;
                    if let Some(active) = active {
                        return Ok(Err(GcBusy(active)));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(MetadataError::Corrupt(
            "gc runs kept starting and ending while one was requested".into(),
        ))
    }

    async fn claim_gc(&self, holder: &str, stale_before: i64) -> Result<Option<GcRun>> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        sqlx::query(
            "UPDATE gc_runs SET state = 'failed', finished_at = $1, phase = NULL, \
             error = 'abandoned: the process running it stopped; the next run finishes its work' \
             WHERE state = 'running' AND heartbeat_at < $2",
        )
        .bind(now)
        .bind(stale_before)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "UPDATE gc_runs SET state = 'running', holder = $1, started_at = $2, \
             heartbeat_at = $2, phase = 'starting' WHERE state = 'requested' RETURNING {RUN_COLUMNS}"
        ))
        .bind(holder)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.map(run_of).transpose()
    }

    async fn gc_heartbeat(
        &self,
        id: i64,
        holder: &str,
        phase: &str,
        stats: &GcStats,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE gc_runs SET heartbeat_at = $1, phase = $2, stats = $3 \
             WHERE id = $4 AND holder = $5 AND state = 'running'",
        )
        .bind(now_ms())
        .bind(phase)
        .bind(stats_json(stats))
        .bind(id)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_gc(
        &self,
        id: i64,
        holder: &str,
        stats: &GcStats,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE gc_runs SET state = CASE WHEN $1::TEXT IS NULL THEN 'succeeded' ELSE 'failed' END, \
             error = $1, finished_at = $2, stats = $3, phase = NULL \
             WHERE id = $4 AND holder = $5 AND state = 'running'",
        )
        .bind(error)
        .bind(now_ms())
        .bind(stats_json(stats))
        .bind(id)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn gc_run(&self, id: i64) -> Result<Option<GcRun>> {
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM gc_runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(run_of).transpose()
    }

    async fn gc_runs(&self, before: Option<i64>, limit: u32) -> Result<Vec<GcRun>> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM gc_runs WHERE id < $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(run_of).collect()
    }

    async fn last_gc(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MAX(requested_at) FROM gc_runs WHERE dry_run = 0")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
