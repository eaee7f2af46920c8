//! The PostgreSQL backend's collection sweeps (the port of the sweeps in
//! `sqlite_gc`). SQLite's single writer makes "check, then delete" atomic;
//! here pushes on other replicas commit in between, so every deletion is
//! two statements in one transaction: the first locks the candidates,
//! skipping rows a push holds (`FOR UPDATE SKIP LOCKED`); the second, whose
//! snapshot is taken after those locks were granted, deletes (or flips)
//! only the locked rows that its re-check still finds unreferenced. A push
//! that committed before the locks is seen by the re-check; one that comes
//! after waits for the sweep's commit and finds the rows gone (a link to a
//! `deleting` blob is refused, a reference to a removed link is missing).

use async_trait::async_trait;
use sqlx::Row;

use super::postgres::{retrying, PgMetadata, PgTx};
use super::sqlite::parse;
use super::*;

/// The manifests of repository $1 that are kept: those that a tag not in
/// $3 (tags being removed) points at, those pushed or looked up at or after
/// $2 (all of them when $2 is NULL), and, at any depth, the children of a
/// kept index and the referrers of a kept manifest (`subject`).
const KEPT: &str = "WITH RECURSIVE kept(digest) AS ( \
       SELECT digest FROM tags WHERE repo_id = $1 AND name <> ALL($3::TEXT[]) \
       UNION SELECT digest FROM manifests WHERE repo_id = $1 \
         AND ($2::BIGINT IS NULL OR touched_at >= $2) \
       UNION SELECT x.digest FROM kept k CROSS JOIN LATERAL ( \
         SELECT r.child_digest AS digest FROM manifest_refs r \
           WHERE r.repo_id = $1 AND r.manifest_digest = k.digest AND r.kind = 1 \
         UNION ALL SELECT m.digest FROM manifests m WHERE m.repo_id = $1 AND m.subject = k.digest \
       ) x) ";

/// Links of repository $1 untouched since $4 that no kept manifest references.
const STALE_LINKS: &str = "FROM repo_blobs WHERE repo_id = $1 AND touched_at < $4 \
     AND digest NOT IN (SELECT child_digest FROM manifest_refs WHERE repo_id = $1 AND kind = 0 \
       AND manifest_digest IN (SELECT digest FROM kept))";

/// Repository $1 when nothing is left in it and it is older than $2.
const EMPTY_REPOSITORY: &str = "FROM repositories WHERE id = $1 AND created_at < $2 \
     AND NOT EXISTS (SELECT 1 FROM manifests WHERE repo_id = $1) \
     AND NOT EXISTS (SELECT 1 FROM tags WHERE repo_id = $1) \
     AND NOT EXISTS (SELECT 1 FROM repo_blobs WHERE repo_id = $1) \
     AND NOT EXISTS (SELECT 1 FROM uploads WHERE repo_id = $1)";

/// Whether blob `b` is untouched since $3 and no link holds it; links a
/// dry run $1 recorded count as gone.
const UNLINKED: &str = "b.state <> 'deleting' AND b.touched_at < $3 \
     AND NOT EXISTS (SELECT 1 FROM repo_blobs l WHERE l.digest = b.digest \
       AND NOT EXISTS (SELECT 1 FROM gc_dry_links d WHERE d.run = $1 AND d.digest = l.digest \
         AND d.repo_id = l.repo_id))";

/// Rows one sweep transaction deletes at most, so a push waiting on one of
/// them waits a few milliseconds, not for a whole repository.
const SWEEP_CHUNK: i64 = 200;
/// Bound on a sweep's rounds (each deletes rows, so the loop ends anyway).
const MAX_ROUNDS: usize = 1_000_000;
const NO_TAGS: &[String] = &[];

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

/// Deletes up to `SWEEP_CHUNK` of the repository's manifests that nothing
/// kept reaches, with their references; how many it found to look at (a
/// full chunk means there may be more).
async fn sweep_manifests(tx: &mut PgTx, repo_id: i64, plan: &RepoPlan) -> Result<(u64, bool)> {
    let locked: Vec<String> = sqlx::query_scalar(&format!(
        "{KEPT} SELECT digest FROM manifests WHERE repo_id = $1 \
         AND digest NOT IN (SELECT digest FROM kept) LIMIT $4 FOR UPDATE OF manifests SKIP LOCKED"
    ))
    .bind(repo_id)
    .bind(plan.untagged_before)
    .bind(NO_TAGS)
    .bind(SWEEP_CHUNK)
    .fetch_all(&mut **tx)
    .await?;
    let more = locked.len() as i64 == SWEEP_CHUNK;
    let n = sqlx::query(&format!(
        "{KEPT} DELETE FROM manifests WHERE repo_id = $1 AND digest = ANY($4) \
         AND digest NOT IN (SELECT digest FROM kept)"
    ))
    .bind(repo_id)
    .bind(plan.untagged_before)
    .bind(NO_TAGS)
    .bind(&locked)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    sqlx::query(
        "DELETE FROM manifest_refs WHERE repo_id = $1 AND manifest_digest = ANY($2) \
         AND NOT EXISTS (SELECT 1 FROM manifests m \
           WHERE m.repo_id = $1 AND m.digest = manifest_refs.manifest_digest)",
    )
    .bind(repo_id)
    .bind(&locked)
    .execute(&mut **tx)
    .await?;
    Ok((n, more))
}

/// Deletes up to `SWEEP_CHUNK` of the repository's stale links; how many,
/// and whether a full chunk was looked at.
async fn sweep_links(tx: &mut PgTx, repo_id: i64, plan: &RepoPlan) -> Result<(u64, bool)> {
    let locked: Vec<String> = sqlx::query_scalar(&format!(
        "{KEPT} SELECT digest {STALE_LINKS} LIMIT $5 FOR UPDATE OF repo_blobs SKIP LOCKED"
    ))
    .bind(repo_id)
    .bind(None::<i64>)
    .bind(NO_TAGS)
    .bind(plan.links_before)
    .bind(SWEEP_CHUNK)
    .fetch_all(&mut **tx)
    .await?;
    let more = locked.len() as i64 == SWEEP_CHUNK;
    let n = sqlx::query(&format!(
        "{KEPT} DELETE FROM repo_blobs WHERE repo_id = $1 AND digest = ANY($5) \
         AND digest IN (SELECT digest {STALE_LINKS})"
    ))
    .bind(repo_id)
    .bind(None::<i64>)
    .bind(NO_TAGS)
    .bind(plan.links_before)
    .bind(&locked)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok((n, more))
}

/// Deletes the repository if nothing is left in it. A push holding its row
/// (creating or using it) keeps it: the lock is skipped, not waited for.
async fn sweep_repository_row(tx: &mut PgTx, repo_id: i64, plan: &RepoPlan) -> Result<bool> {
    let locked: Option<i64> =
        sqlx::query_scalar("SELECT id FROM repositories WHERE id = $1 FOR UPDATE SKIP LOCKED")
            .bind(repo_id)
            .fetch_optional(&mut **tx)
            .await?;
    if locked.is_none() {
        return Ok(false);
    }
    let done = sqlx::query(&format!("DELETE {EMPTY_REPOSITORY}"))
        .bind(repo_id)
        .bind(plan.links_before)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

impl PgMetadata {
    /// Whether a read finds anything the sweep of repository `repo_id` with
    /// `plan` would delete. Skipping a repository it finds clean only
    /// defers deletions, it never deletes.
    async fn anything_to_sweep(&self, repo_id: i64, plan: &RepoPlan) -> Result<bool> {
        if !plan.tags.is_empty() {
            return Ok(true);
        }
        let row = sqlx::query(&format!(
            "{KEPT} SELECT $2::BIGINT IS NOT NULL AND EXISTS (SELECT 1 FROM manifests \
               WHERE repo_id = $1 AND digest NOT IN (SELECT digest FROM kept)) AS untagged, \
             EXISTS (SELECT 1 {STALE_LINKS}) AS stale, \
             EXISTS (SELECT 1 {EMPTY_REPOSITORY_AT_4}) AS empty",
            EMPTY_REPOSITORY_AT_4 = EMPTY_REPOSITORY.replace("$2", "$4"),
        ))
        .bind(repo_id)
        .bind(plan.untagged_before)
        .bind(NO_TAGS)
        .bind(plan.links_before)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get::<bool, _>("untagged") || row.get::<bool, _>("stale") || row.get("empty"))
    }

    async fn sweep_tags(&self, repo_id: i64, tags: &[String]) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        if !Self::lock_repository(&mut tx, repo_id).await? {
            return Ok(0);
        }
        let n = sqlx::query("DELETE FROM tags WHERE repo_id = $1 AND name = ANY($2)")
            .bind(repo_id)
            .bind(tags)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// One transaction of the sweep: a chunk of manifests while
    /// `manifests_left`, else a chunk of links (and, after the last, the
    /// repository). What it removed, whether manifests are left, and
    /// whether it was the last round.
    async fn sweep_round(
        &self,
        repo_id: i64,
        plan: &RepoPlan,
        mut manifests_left: bool,
    ) -> Result<(RepoSwept, bool, bool)> {
        let mut tx = self.pool.begin().await?;
        if !Self::lock_repository(&mut tx, repo_id).await? {
            // Deleted meanwhile (with its project): nothing left to sweep.
            return Ok((RepoSwept::default(), false, true));
        }
        let mut round = RepoSwept::default();
        if manifests_left {
            let (n, more) = sweep_manifests(&mut tx, repo_id, plan).await?;
            round.manifests = n;
            manifests_left = more;
        }
        let mut last = false;
        if !manifests_left {
            let (n, more) = sweep_links(&mut tx, repo_id, plan).await?;
            round.links = n;
            last = !more;
            if last {
                round.repository = sweep_repository_row(&mut tx, repo_id, plan).await?;
            }
        }
        tx.commit().await?;
        Ok((round, manifests_left, last))
    }

    /// The sweep of one repository, in transactions that delete at most
    /// `SWEEP_CHUNK` manifests and `SWEEP_CHUNK` links each (a round
    /// aborted by a deadlock is retried whole, and counted once committed).
    async fn sweep_for_real(&self, repo_id: i64, plan: &RepoPlan) -> Result<RepoSwept> {
        let mut swept = RepoSwept::default();
        if !self.anything_to_sweep(repo_id, plan).await? {
            return Ok(swept);
        }
        for tags in plan.tags.chunks(SWEEP_CHUNK as usize) {
            swept.tags += retrying(|| self.sweep_tags(repo_id, tags)).await?;
        }
        let mut manifests_left = plan.untagged_before.is_some();
        for _ in 0..MAX_ROUNDS {
            let (round, left, last) =
                retrying(|| self.sweep_round(repo_id, plan, manifests_left)).await?;
            manifests_left = left;
            swept.manifests += round.manifests;
            swept.links += round.links;
            swept.repository |= round.repository;
            if last {
                break;
            }
        }
        Ok(swept)
    }

    async fn sweep_dry(&self, repo_id: i64, plan: &RepoPlan, run: i64) -> Result<RepoSwept> {
        let mut tx = self.pool.begin().await?;
        let mut swept = RepoSwept::default();
        let t: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tags WHERE repo_id = $1 AND name = ANY($2)")
                .bind(repo_id)
                .bind(&plan.tags)
                .fetch_one(&mut *tx)
                .await?;
        swept.tags = t as u64;
        if plan.untagged_before.is_some() {
            let m: i64 = sqlx::query_scalar(&format!(
                "{KEPT} SELECT COUNT(*) FROM manifests WHERE repo_id = $1 \
                 AND digest NOT IN (SELECT digest FROM kept)"
            ))
            .bind(repo_id)
            .bind(plan.untagged_before)
            .bind(&plan.tags)
            .fetch_one(&mut *tx)
            .await?;
            swept.manifests = m as u64;
        }
        swept.links = sqlx::query(&format!(
            "{KEPT} INSERT INTO gc_dry_links (run, digest, repo_id) \
             SELECT $5, digest, $1 {STALE_LINKS} ON CONFLICT DO NOTHING"
        ))
        .bind(repo_id)
        .bind(plan.untagged_before)
        .bind(&plan.tags)
        .bind(plan.links_before)
        .bind(run)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM manifests WHERE repo_id = $1) AS manifests, \
             (SELECT COUNT(*) FROM tags WHERE repo_id = $1) AS tags, \
             (SELECT COUNT(*) FROM repo_blobs WHERE repo_id = $1) AS links, \
             (SELECT COUNT(*) FROM uploads WHERE repo_id = $1) AS uploads, \
             (SELECT created_at FROM repositories WHERE id = $1) AS created_at",
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
        Ok(swept)
    }

    /// One batch of flips: locks the candidates after `after` (skipping
    /// blobs a link or upload holds), then flips those a re-check with a
    /// snapshot taken after the locks still finds unlinked and untouched.
    /// `None` when there are no candidates left; else the flipped ones and
    /// the last candidate.
    async fn flip_batch(
        &self,
        after: &str,
        before: i64,
        run: i64,
        limit: u32,
    ) -> Result<Option<(Vec<SweptBlob>, String)>> {
        let mut tx = self.pool.begin().await?;
        let locked: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT digest FROM blobs b WHERE b.digest > $2 AND {UNLINKED} \
             ORDER BY digest LIMIT $4 FOR UPDATE SKIP LOCKED"
        ))
        .bind(run)
        .bind(after)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = locked.last().cloned() else {
            return Ok(None);
        };
        let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
            "UPDATE blobs b SET state = 'deleting', gc_run = $1 \
             WHERE b.digest = ANY($2) AND {UNLINKED} RETURNING digest, size"
        ))
        .bind(run)
        .bind(&locked)
        .bind(before)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some((swept_blobs(rows)?, last)))
    }
}

#[async_trait]
impl GcSweep for PgMetadata {
    async fn sweep_repositories(
        &self,
        project: Option<&str>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<SweepRepo>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, name FROM repositories WHERE id > $1 \
             AND ($2::TEXT IS NULL OR project = $2) ORDER BY id LIMIT $3",
        )
        .bind(after)
        .bind(project)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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
            sqlx::query_as("SELECT name, updated_at, pulled_at FROM tags WHERE repo_id = $1")
                .bind(repo_id)
                .fetch_all(&self.pool)
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
            retrying(|| self.sweep_dry(repo_id, plan, run)).await
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
        let mut after = after.map(Digest::to_string).unwrap_or_default();
        if dry_run {
            let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
                "SELECT digest, size FROM blobs b WHERE b.digest > $2 AND {UNLINKED} \
                 ORDER BY digest LIMIT $4"
            ))
            .bind(run)
            .bind(after)
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            return swept_blobs(rows);
        }
        // A batch whose candidates were all linked or touched meanwhile
        // flips nothing: the next one is looked at.
        for _ in 0..MAX_ROUNDS {
            let batch = retrying(|| self.flip_batch(&after, before, run, limit)).await?;
            let Some((flipped, last)) = batch else {
                return Ok(Vec::new());
            };
            if !flipped.is_empty() {
                return Ok(flipped);
            }
            after = last;
        }
        Ok(Vec::new())
    }

    async fn abandoned_blobs(&self, run: i64, limit: u32) -> Result<Vec<SweptBlob>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT digest, size FROM blobs b WHERE state = 'deleting' \
             AND (gc_run IS NULL OR gc_run <> $1) \
             AND NOT EXISTS (SELECT 1 FROM gc_runs r WHERE r.id = b.gc_run AND r.state = 'running') \
             ORDER BY digest LIMIT $2",
        )
        .bind(run)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        swept_blobs(rows)
    }

    async fn forget_blobs(&self, digests: &[Digest]) -> Result<()> {
        if digests.is_empty() {
            return Ok(());
        }
        let digests: Vec<String> = digests.iter().map(Digest::to_string).collect();
        sqlx::query("DELETE FROM blobs WHERE state = 'deleting' AND digest = ANY($1)")
            .bind(digests)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Always `false`: there is no single writer here for requests to queue
    /// behind. Requests' writes and a run's sweeps proceed side by side on
    /// their own connections, and where they touch the same rows the row
    /// locks order them (a sweep skips rows a push holds), so a run resting
    /// between its steps would not let any write through sooner.
    fn writes_waiting(&self) -> bool {
        false
    }

    async fn gc_marked(&self, run: i64) -> Result<(u64, u64, u64)> {
        let (manifests, blobs, bytes): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM manifests), COUNT(*), COALESCE(SUM(size), 0)::BIGINT \
             FROM blobs b WHERE state = 'live' AND EXISTS (SELECT 1 FROM repo_blobs l \
               WHERE l.digest = b.digest AND NOT EXISTS (SELECT 1 FROM gc_dry_links d \
                 WHERE d.run = $1 AND d.digest = l.digest AND d.repo_id = l.repo_id))",
        )
        .bind(run)
        .fetch_one(&self.pool)
        .await?;
        sqlx::query("DELETE FROM gc_dry_links WHERE run = $1")
            .bind(run)
            .execute(&self.pool)
            .await?;
        Ok((manifests as u64, blobs as u64, bytes as u64))
    }
}
