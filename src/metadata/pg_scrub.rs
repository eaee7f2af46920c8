//! The PostgreSQL backend's scrub runs and the blobs they check (the port
//! of `sqlite_scrub`). As with collection runs, the partial unique index
//! admits one requested-or-running run, and a claim is one conditional
//! `UPDATE`, so of replicas claiming at once one gets the run.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::postgres::PgMetadata;
use super::sqlite::parse;
use super::*;

const COLUMNS: &str =
    "id, state, requested_by, requested_at, started_at, finished_at, cursor, stats, problems, error";

fn corrupt(what: &str, e: impl std::fmt::Display) -> MetadataError {
    MetadataError::Corrupt(format!("scrub run {what}: {e}"))
}

fn run_of(row: PgRow) -> Result<ScrubRun> {
    let state: String = row.get("state");
    Ok(ScrubRun {
        id: row.get("id"),
        state: GcState::parse(&state).ok_or_else(|| corrupt("state", &state))?,
        requested_by: row.get("requested_by"),
        requested_at: row.get("requested_at"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        cursor: row.get("cursor"),
        stats: serde_json::from_str(row.get("stats")).map_err(|e| corrupt("stats", e))?,
        problems: serde_json::from_str(row.get("problems")).map_err(|e| corrupt("problems", e))?,
        error: row.get("error"),
    })
}

/// Rounds of "insert, else find the active run" in `request_scrub`.
const REQUEST_ROUNDS: usize = 10;

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| corrupt("encoding", e))
}

#[async_trait]
impl Scrubs for PgMetadata {
    async fn request_scrub(&self, by: &str) -> Result<Result<ScrubRun, i64>> {
        // The active run may end between a refused insert and the look-up
        // of its id (on another replica): then the next insert succeeds.
        for _ in 0..REQUEST_ROUNDS {
            let inserted = sqlx::query(&format!(
                "INSERT INTO scrub_runs (state, requested_by, requested_at) \
                 VALUES ('requested', $1, $2) RETURNING {COLUMNS}"
            ))
            .bind(by)
            .bind(now_ms())
            .fetch_one(&self.pool)
            .await;
            match inserted {
                Ok(row) => return Ok(Ok(run_of(row)?)),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    let active: Option<i64> =
                        sqlx::query_scalar("SELECT id FROM scrub_runs WHERE active = 1")
                            .fetch_optional(&self.pool)
                            .await?;
                    if let Some(active) = active {
                        return Ok(Err(active));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(corrupt("request", "runs kept starting and ending"))
    }

    async fn claim_scrub(&self, stale_before: i64) -> Result<Option<ScrubRun>> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        sqlx::query(
            "UPDATE scrub_runs SET state = 'failed', finished_at = $1, \
             error = 'abandoned: the process running it stopped; the next run resumes after its cursor' \
             WHERE state = 'running' AND heartbeat_at < $2",
        )
        .bind(now)
        .bind(stale_before)
        .execute(&mut *tx)
        .await?;
        // Resume where the newest run that ended stopped, unless it finished.
        let row = sqlx::query(&format!(
            "UPDATE scrub_runs SET state = 'running', started_at = $1, heartbeat_at = $1, \
             cursor = (SELECT CASE WHEN p.state = 'failed' THEN p.cursor END FROM scrub_runs p \
               WHERE p.state IN ('succeeded', 'failed') ORDER BY p.id DESC LIMIT 1) \
             WHERE state = 'requested' RETURNING {COLUMNS}"
        ))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.map(run_of).transpose()
    }

    async fn save_scrub(&self, run: &ScrubRun) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE scrub_runs SET heartbeat_at = $1, cursor = $2, stats = $3, problems = $4 \
             WHERE id = $5 AND state = 'running'",
        )
        .bind(now_ms())
        .bind(&run.cursor)
        .bind(json(&run.stats)?)
        .bind(json(&run.problems)?)
        .bind(run.id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_scrub(&self, run: &ScrubRun) -> Result<()> {
        sqlx::query(
            "UPDATE scrub_runs SET state = $1, finished_at = $2, cursor = $3, stats = $4, problems = $5, \
             error = $6 WHERE id = $7 AND state = 'running'",
        )
        .bind(run.state.as_str())
        .bind(now_ms())
        .bind(&run.cursor)
        .bind(json(&run.stats)?)
        .bind(json(&run.problems)?)
        .bind(&run.error)
        .bind(run.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn scrub_run(&self, id: i64) -> Result<Option<ScrubRun>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM scrub_runs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(run_of).transpose()
    }

    async fn scrub_runs(&self, before: Option<i64>, limit: u32) -> Result<Vec<ScrubRun>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM scrub_runs WHERE id < $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(run_of).collect()
    }

    async fn scrub_batch(&self, after: Option<&str>, limit: u32) -> Result<(Vec<SweptBlob>, u64)> {
        let after = after.unwrap_or("");
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT digest, size FROM blobs WHERE digest > $1 AND state = 'live' ORDER BY digest LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM blobs WHERE digest > $1 AND state = 'live'")
                .bind(after)
                .fetch_one(&self.pool)
                .await?;
        let blobs = rows
            .into_iter()
            .map(|(digest, size)| {
                Ok(SweptBlob {
                    digest: parse(digest)?,
                    size: size as u64,
                })
            })
            .collect::<Result<_>>()?;
        Ok((blobs, left as u64))
    }

    async fn mark_corrupt(&self, digest: &Digest) -> Result<()> {
        sqlx::query("UPDATE blobs SET state = 'corrupt' WHERE digest = $1 AND state = 'live'")
            .bind(digest.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
