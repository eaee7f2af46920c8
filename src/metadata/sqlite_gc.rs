//! The SQLite backend's garbage-collection runs and sweeps. Each sweep is
//! one statement or one short transaction, so pushes interleave with a run.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::sqlite::{parse, SqliteMetadata};
use super::*;

const RUN_COLUMNS: &str = "id, state, dry_run, requested_by, requested_at, started_at, \
     finished_at, phase, stats, error";

fn run_of(row: SqliteRow) -> Result<GcRun> {
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

#[async_trait]
impl GcRuns for SqliteMetadata {
    async fn request_gc(&self, dry_run: bool, by: &str) -> Result<Result<GcRun, GcBusy>> {
        let mut w = self.writer().await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO gc_runs (state, dry_run, requested_by, requested_at) \
             VALUES ('requested', ?, ?, ?) RETURNING {RUN_COLUMNS}"
        ))
        .bind(i64::from(dry_run))
        .bind(by)
        .bind(now_ms())
        .fetch_one(w.conn())
        .await;
        let outcome = match inserted {
            Ok(row) => Ok(run_of(row)?),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                let active: i64 = sqlx::query_scalar("SELECT id FROM gc_runs WHERE active = 1")
                    .fetch_one(w.conn())
                    .await?;
                Err(GcBusy(active))
            }
            Err(e) => return Err(e.into()),
        };
        w.done();
        Ok(outcome)
    }

    async fn claim_gc(&self, holder: &str, stale_before: i64) -> Result<Option<GcRun>> {
        let mut w = self.writer().await?;
        let mut tx = w.begin().await?;
        let now = now_ms();
        sqlx::query(
            "UPDATE gc_runs SET state = 'failed', finished_at = ?1, phase = NULL, \
             error = 'abandoned: the process running it stopped; the next run finishes its work' \
             WHERE state = 'running' AND heartbeat_at < ?2",
        )
        .bind(now)
        .bind(stale_before)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(&format!(
            "UPDATE gc_runs SET state = 'running', holder = ?1, started_at = ?2, \
             heartbeat_at = ?2, phase = 'starting' WHERE state = 'requested' RETURNING {RUN_COLUMNS}"
        ))
        .bind(holder)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        w.done();
        row.map(run_of).transpose()
    }

    async fn gc_heartbeat(
        &self,
        id: i64,
        holder: &str,
        phase: &str,
        stats: &GcStats,
    ) -> Result<bool> {
        let mut w = self.writer().await?;
        let done = sqlx::query(
            "UPDATE gc_runs SET heartbeat_at = ?, phase = ?, stats = ? \
             WHERE id = ? AND holder = ? AND state = 'running'",
        )
        .bind(now_ms())
        .bind(phase)
        .bind(stats_json(stats))
        .bind(id)
        .bind(holder)
        .execute(w.conn())
        .await?;
        w.done();
        Ok(done.rows_affected() == 1)
    }

    async fn finish_gc(
        &self,
        id: i64,
        holder: &str,
        stats: &GcStats,
        error: Option<&str>,
    ) -> Result<()> {
        let mut w = self.writer().await?;
        sqlx::query(
            "UPDATE gc_runs SET state = CASE WHEN ?1 IS NULL THEN 'succeeded' ELSE 'failed' END, \
             error = ?1, finished_at = ?2, stats = ?3, phase = NULL \
             WHERE id = ?4 AND holder = ?5 AND state = 'running'",
        )
        .bind(error)
        .bind(now_ms())
        .bind(stats_json(stats))
        .bind(id)
        .bind(holder)
        .execute(w.conn())
        .await?;
        w.done();
        Ok(())
    }

    async fn gc_run(&self, id: i64) -> Result<Option<GcRun>> {
        let row = sqlx::query(&format!("SELECT {RUN_COLUMNS} FROM gc_runs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.map(run_of).transpose()
    }

    async fn gc_runs(&self, before: Option<i64>, limit: u32) -> Result<Vec<GcRun>> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM gc_runs WHERE id < ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(run_of).collect()
    }

    async fn last_gc(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MAX(requested_at) FROM gc_runs WHERE dry_run = 0")
                .fetch_one(&self.read)
                .await?,
        )
    }
}

/// The manifests of repository ?1 that are kept: those that a tag not in
/// ?3 (a JSON array of tags being removed) points at, those pushed or
/// looked up at or after ?2 (all of them when ?2 is NULL), and, at any depth, the children
/// of a kept index and the referrers of a kept manifest (`subject`).
const KEPT: &str = "WITH RECURSIVE kept(digest) AS ( \
       SELECT digest FROM tags WHERE repo_id = ?1 AND name NOT IN (SELECT value FROM json_each(?3)) \
       UNION SELECT digest FROM manifests WHERE repo_id = ?1 AND (?2 IS NULL OR touched_at >= ?2) \
       UNION SELECT r.child_digest FROM kept k JOIN manifest_refs r \
         ON r.repo_id = ?1 AND r.manifest_digest = k.digest AND r.kind = 1 \
       UNION SELECT m.digest FROM kept k JOIN manifests m ON m.repo_id = ?1 AND m.subject = k.digest) ";

/// Links of repository ?1 untouched since ?4 that no kept manifest references.
const STALE_LINKS: &str = "FROM repo_blobs WHERE repo_id = ?1 AND touched_at < ?4 \
     AND digest NOT IN (SELECT child_digest FROM manifest_refs WHERE repo_id = ?1 AND kind = 0 \
       AND manifest_digest IN (SELECT digest FROM kept))";

/// Repository ?1 when nothing is left in it and it is older than ?2.
const EMPTY_REPOSITORY: &str = "FROM repositories WHERE id = ?1 AND created_at < ?2 \
     AND NOT EXISTS (SELECT 1 FROM manifests WHERE repo_id = ?1) \
     AND NOT EXISTS (SELECT 1 FROM tags WHERE repo_id = ?1) \
     AND NOT EXISTS (SELECT 1 FROM repo_blobs WHERE repo_id = ?1) \
     AND NOT EXISTS (SELECT 1 FROM uploads WHERE repo_id = ?1)";

/// Blobs above ?2, untouched since ?3, that no link holds; links a dry run
/// ?1 recorded count as gone.
const UNLINKED_BLOBS: &str =
    "SELECT digest FROM blobs b WHERE digest > ?2 AND state <> 'deleting' \
     AND touched_at < ?3 AND NOT EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = b.digest \
       AND NOT EXISTS (SELECT 1 FROM gc_dry_links d WHERE d.run = ?1 AND d.digest = l.digest \
         AND d.repo_id = l.repo_id)) \
     ORDER BY digest LIMIT ?4";

/// Rows one sweep transaction deletes at most: a push queued behind it
/// waits a few milliseconds, not for a whole repository.
const SWEEP_CHUNK: u32 = 200;
/// Bound on a sweep's rounds (each deletes rows, so the loop ends anyway).
const MAX_ROUNDS: usize = 1_000_000;

fn tags_json(tags: &[String]) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "[]".into())
}

fn swept_blobs(rows: Vec<(String, i64)>) -> Result<Vec<SweptBlob>> {
    let mut blobs: Vec<SweptBlob> = rows
        .into_iter()
        .map(|(digest, size)| {
            Ok(SweptBlob {
                digest: parse(digest)?,
                size: size as u64,
            })
        })
        .collect::<Result<_>>()?;
    blobs.sort_by_key(|b| b.digest.to_string());
    Ok(blobs)
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;

/// Deletes up to `SWEEP_CHUNK` of the repository's manifests that nothing
/// kept reaches, with their references; how many.
async fn sweep_manifests(tx: &mut Tx<'_>, repo_id: i64, plan: &RepoPlan) -> Result<u64> {
    let n = sqlx::query(&format!(
        "{KEPT} DELETE FROM manifests WHERE repo_id = ?1 AND digest IN \
         (SELECT digest FROM manifests WHERE repo_id = ?1 \
          AND digest NOT IN (SELECT digest FROM kept) LIMIT ?4)"
    ))
    .bind(repo_id)
    .bind(plan.untagged_before)
    .bind("[]")
    .bind(SWEEP_CHUNK)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    sqlx::query(
        "DELETE FROM manifest_refs WHERE repo_id = ?1 AND NOT EXISTS (SELECT 1 FROM manifests m \
         WHERE m.repo_id = ?1 AND m.digest = manifest_refs.manifest_digest)",
    )
    .bind(repo_id)
    .execute(&mut **tx)
    .await?;
    Ok(n)
}

/// Deletes up to `SWEEP_CHUNK` of the repository's stale links; how many.
async fn sweep_links(tx: &mut Tx<'_>, repo_id: i64, plan: &RepoPlan) -> Result<u64> {
    Ok(sqlx::query(&format!(
        "{KEPT} DELETE FROM repo_blobs WHERE repo_id = ?1 AND digest IN \
         (SELECT digest {STALE_LINKS} LIMIT ?5)"
    ))
    .bind(repo_id)
    .bind(None::<i64>)
    .bind("[]")
    .bind(plan.links_before)
    .bind(SWEEP_CHUNK)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

impl SqliteMetadata {
    /// Whether a read finds anything the sweep of repository `repo_id` with
    /// `plan` would delete. A read sees a snapshot; skipping a repository it
    /// finds clean only defers deletions, it never deletes.
    async fn anything_to_sweep(&self, repo_id: i64, plan: &RepoPlan) -> Result<bool> {
        if !plan.tags.is_empty() {
            return Ok(true);
        }
        if plan.untagged_before.is_some() {
            let untagged: bool = sqlx::query_scalar(&format!(
                "{KEPT} SELECT EXISTS (SELECT 1 FROM manifests WHERE repo_id = ?1 \
                 AND digest NOT IN (SELECT digest FROM kept))"
            ))
            .bind(repo_id)
            .bind(plan.untagged_before)
            .bind("[]")
            .fetch_one(&self.read)
            .await?;
            if untagged {
                return Ok(true);
            }
        }
        let (stale, empty): (bool, bool) = sqlx::query_as(&format!(
            "{KEPT} SELECT EXISTS (SELECT 1 {STALE_LINKS}), EXISTS (SELECT 1 {EMPTY_REPOSITORY})"
        ))
        .bind(repo_id)
        .bind(None::<i64>)
        .bind("[]")
        .bind(plan.links_before)
        .fetch_one(&self.read)
        .await?;
        Ok(stale || empty)
    }

    /// The sweep of one repository, in transactions that delete at most
    /// `SWEEP_CHUNK` manifests and `SWEEP_CHUNK` links each (every one
    /// re-checks what it deletes; a small repository takes one), through
    /// the background writer: a push waits for one short transaction at most.
    async fn sweep_for_real(&self, repo_id: i64, plan: &RepoPlan) -> Result<RepoSwept> {
        let mut swept = RepoSwept::default();
        if !self.anything_to_sweep(repo_id, plan).await? {
            return Ok(swept);
        }
        for tags in plan.tags.chunks(SWEEP_CHUNK as usize) {
            let mut w = self.background_writer().await?;
            swept.tags += sqlx::query(
                "DELETE FROM tags WHERE repo_id = ?1 AND name IN (SELECT value FROM json_each(?2))",
            )
            .bind(repo_id)
            .bind(tags_json(tags))
            .execute(w.conn())
            .await?
            .rows_affected();
            w.done();
        }
        let mut manifests_left = plan.untagged_before.is_some();
        // Each round's deletions are gone before the next looks; bounded anyway.
        for _ in 0..MAX_ROUNDS {
            let mut w = self.background_writer().await?;
            let mut tx = w.begin().await?;
            if manifests_left {
                let n = sweep_manifests(&mut tx, repo_id, plan).await?;
                swept.manifests += n;
                manifests_left = n == u64::from(SWEEP_CHUNK);
            }
            let mut last = false;
            if !manifests_left {
                let n = sweep_links(&mut tx, repo_id, plan).await?;
                swept.links += n;
                last = n < u64::from(SWEEP_CHUNK);
                if last {
                    swept.repository = sqlx::query(&format!("DELETE {EMPTY_REPOSITORY}"))
                        .bind(repo_id)
                        .bind(plan.links_before)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        > 0;
                }
            }
            tx.commit().await?;
            w.done();
            if last {
                break;
            }
        }
        Ok(swept)
    }

    async fn sweep_dry(&self, repo_id: i64, plan: &RepoPlan, run: i64) -> Result<RepoSwept> {
        let mut w = self.background_writer().await?;
        let mut tx = w.begin().await?;
        let tags = tags_json(&plan.tags);
        let mut swept = RepoSwept::default();
        let (t,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM tags WHERE repo_id = ?1 AND name IN (SELECT value FROM json_each(?2))",
        )
        .bind(repo_id)
        .bind(&tags)
        .fetch_one(&mut *tx)
        .await?;
        swept.tags = t as u64;
        if plan.untagged_before.is_some() {
            let (m,): (i64,) = sqlx::query_as(&format!(
                "{KEPT} SELECT COUNT(*) FROM manifests WHERE repo_id = ?1 AND digest NOT IN (SELECT digest FROM kept)"
            ))
            .bind(repo_id)
            .bind(plan.untagged_before)
            .bind(&tags)
            .fetch_one(&mut *tx)
            .await?;
            swept.manifests = m as u64;
        }
        swept.links = sqlx::query(&format!(
            "{KEPT} INSERT INTO gc_dry_links (run, digest, repo_id) SELECT ?5, digest, ?1 {STALE_LINKS} \
             ON CONFLICT DO NOTHING"
        ))
        .bind(repo_id)
        .bind(plan.untagged_before)
        .bind(&tags)
        .bind(plan.links_before)
        .bind(run)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM manifests WHERE repo_id = ?1) AS manifests, \
             (SELECT COUNT(*) FROM tags WHERE repo_id = ?1) AS tags, \
             (SELECT COUNT(*) FROM repo_blobs WHERE repo_id = ?1) AS links, \
             (SELECT COUNT(*) FROM uploads WHERE repo_id = ?1) AS uploads, \
             (SELECT created_at FROM repositories WHERE id = ?1) AS created_at",
        )
        .bind(repo_id)
        .fetch_one(&mut *tx)
        .await?;
        swept.repository = row.get::<i64, _>("manifests") as u64 == swept.manifests
            && row.get::<i64, _>("tags") as u64 == swept.tags
            && row.get::<i64, _>("links") as u64 == swept.links
            && row.get::<i64, _>("uploads") == 0
            && row.get::<Option<i64>, _>("created_at").unwrap_or(i64::MAX) < plan.links_before;
        tx.commit().await?;
        w.done();
        Ok(swept)
    }
}

#[async_trait]
impl GcSweep for SqliteMetadata {
    async fn sweep_repositories(
        &self,
        project: Option<&str>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<SweepRepo>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, name FROM repositories WHERE id > ?1 AND (?2 IS NULL OR project = ?2) \
             ORDER BY id LIMIT ?3",
        )
        .bind(after)
        .bind(project)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(id, name)| {
                Ok(SweepRepo {
                    id,
                    name: parse(name)?,
                })
            })
            .collect()
    }

    async fn tag_times(&self, repo_id: i64) -> Result<Vec<TagTimes>> {
        let rows: Vec<(String, i64, Option<i64>)> =
            sqlx::query_as("SELECT name, updated_at, pulled_at FROM tags WHERE repo_id = ?")
                .bind(repo_id)
                .fetch_all(&self.read)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(name, pushed_at, pulled_at)| TagTimes {
                name,
                pushed_at,
                pulled_at,
            })
            .collect())
    }

    async fn sweep_repository(
        &self,
        repo_id: i64,
        plan: &RepoPlan,
        run: i64,
        dry_run: bool,
    ) -> Result<RepoSwept> {
        if dry_run {
            self.sweep_dry(repo_id, plan, run).await
        } else {
            self.sweep_for_real(repo_id, plan).await
        }
    }

    async fn flip_blobs(
        &self,
        after: Option<&Digest>,
        before: i64,
        run: i64,
        limit: u32,
        dry_run: bool,
    ) -> Result<Vec<SweptBlob>> {
        let after = after.map(Digest::to_string).unwrap_or_default();
        if dry_run {
            let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
                "SELECT digest, size FROM blobs WHERE digest IN ({UNLINKED_BLOBS})"
            ))
            .bind(run)
            .bind(after)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
            return swept_blobs(rows);
        }
        // The candidates are found by a read; the flip re-checks each in
        // the statement that flips it, so the write lock is held for the
        // batch's rows only, not for a scan of every blob. A candidate
        // linked or touched meanwhile is skipped (kept); when a whole batch
        // was, the next one is read.
        let mut after = after;
        for _ in 0..MAX_ROUNDS {
            let candidates: Vec<String> = sqlx::query_scalar(UNLINKED_BLOBS)
                .bind(run)
                .bind(&after)
                .bind(before)
                .bind(limit)
                .fetch_all(&self.read)
                .await?;
            let Some(last) = candidates.last().cloned() else {
                return Ok(Vec::new());
            };
            let mut w = self.background_writer().await?;
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "UPDATE blobs SET state = 'deleting', gc_run = ?1 \
                 WHERE digest IN (SELECT value FROM json_each(?2)) AND state <> 'deleting' \
                 AND touched_at < ?3 AND NOT EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = blobs.digest) \
                 RETURNING digest, size",
            )
            .bind(run)
            .bind(serde_json::to_string(&candidates).unwrap_or_else(|_| "[]".into()))
            .bind(before)
            .fetch_all(w.conn())
            .await?;
            w.done();
            if !rows.is_empty() {
                return swept_blobs(rows);
            }
            after = last;
        }
        Ok(Vec::new())
    }

    async fn abandoned_blobs(&self, run: i64, limit: u32) -> Result<Vec<SweptBlob>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT digest, size FROM blobs b WHERE state = 'deleting' \
             AND (gc_run IS NULL OR gc_run <> ?1) \
             AND NOT EXISTS (SELECT 1 FROM gc_runs r WHERE r.id = b.gc_run AND r.state = 'running') \
             ORDER BY digest LIMIT ?2",
        )
        .bind(run)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        swept_blobs(rows)
    }

    async fn forget_blobs(&self, digests: &[Digest]) -> Result<()> {
        if digests.is_empty() {
            return Ok(());
        }
        let json =
            serde_json::to_string(&digests.iter().map(Digest::to_string).collect::<Vec<_>>())
                .unwrap_or_else(|_| "[]".into());
        let mut w = self.background_writer().await?;
        sqlx::query(
            "DELETE FROM blobs WHERE state = 'deleting' AND digest IN (SELECT value FROM json_each(?))",
        )
        .bind(json)
        .execute(w.conn())
        .await?;
        w.done();
        Ok(())
    }

    fn writes_waiting(&self) -> bool {
        self.writes_queued() > 0
    }

    async fn gc_marked(&self, run: i64) -> Result<(u64, u64, u64)> {
        let (manifests, blobs, bytes): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM manifests), COUNT(*), COALESCE(SUM(size), 0) FROM blobs b \
             WHERE state = 'live' AND EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = b.digest \
               AND NOT EXISTS (SELECT 1 FROM gc_dry_links d WHERE d.run = ?1 AND d.digest = l.digest \
                 AND d.repo_id = l.repo_id))",
        )
        .bind(run)
        .fetch_one(&self.read)
        .await?;
        let mut w = self.writer().await?;
        sqlx::query("DELETE FROM gc_dry_links WHERE run = ?")
            .bind(run)
            .execute(w.conn())
            .await?;
        w.done();
        Ok((manifests as u64, blobs as u64, bytes as u64))
    }
}
