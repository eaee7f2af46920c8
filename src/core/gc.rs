//! Garbage collection: mark what tags, indexes and subjects reach, sweep the
//! rest, online. The protocol that makes it safe beside pushes, and the
//! argument, are in docs/GC.md; in short:
//!
//! 1. Per repository, in one transaction each: delete the tags retention
//!    rules delete, the manifests the untagged policy lets go that nothing
//!    kept reaches, and the blob links that no kept manifest references and
//!    nothing touched for the grace period; drop the repository once empty.
//! 2. Blobs no link holds and nothing touched for the grace period are
//!    flipped to `deleting` in the statement that checks it, a batch at a
//!    time; only then are their bytes removed, then their rows. A link is
//!    never made to a `deleting` blob, and an upload waits for its row to go.
//! 3. A run holds a lease (heartbeat) on its run row; a run whose process
//!    died is marked failed by the next, which finishes its deletions first.

use std::collections::HashMap;
use std::time::Duration;

use super::retention::tags_to_delete;
use super::{Error, Registry, Result};
use crate::metadata::{
    now_ms, GcBusy, GcRun, GcState, GcStats, ProjectPolicy, RepoPlan, RepoSwept, SweepRepo,
    SweptBlob,
};
use crate::oci::Digest;

/// Repositories swept between two heartbeats.
const REPOSITORY_BATCH: u32 = 200;
/// Blobs flipped to `deleting` and removed at a time.
const BLOB_BATCH: u32 = 1_000;
/// After each step (a repository, a batch of blobs) a run rests this many
/// times as long as the step took while requests' writes are waiting (see
/// `GcSweep::writes_waiting`), and not at all while none are: an idle
/// registry collects at full speed, a busy one keeps most of its capacity
/// for pushes. Each step's writes also yield to requests' writes (the
/// backend's background writer) and are short transactions.
const REST_PER_BUSY_WORK: f64 = 2.0;
/// A running run whose heartbeat is older than this is taken as dead.
pub const LEASE: Duration = Duration::from_secs(300);
const DAY_MS: i64 = 86_400_000;

/// A run in progress: its row and what it has counted.
struct Progress<'a> {
    run: &'a GcRun,
    holder: &'a str,
    stats: GcStats,
    /// When the run started (Unix ms): links and blobs touched after
    /// `cutoff` (start minus grace) are kept.
    cutoff: i64,
    started: i64,
}

impl Registry {
    /// Records a request for a run (the worker performs it).
    pub async fn request_gc(&self, dry_run: bool, by: &str) -> Result<Result<GcRun, GcBusy>> {
        let requested = self.metadata.request_gc(dry_run, by).await?;
        if requested.is_ok() {
            self.gc_wake.notify_one();
        }
        Ok(requested)
    }

    /// Resolves when this process requested a run.
    pub async fn gc_requested(&self) {
        self.gc_wake.notified().await
    }

    pub async fn gc_run(&self, id: i64) -> Result<Option<GcRun>> {
        Ok(self.metadata.gc_run(id).await?)
    }

    pub async fn gc_runs(&self, before: Option<i64>, limit: u32) -> Result<Vec<GcRun>> {
        Ok(self.metadata.gc_runs(before, limit).await?)
    }

    /// Finishes the deletions that dead runs left half done (their blobs'
    /// uploads wait until then), without starting a run. Only for a process
    /// that alone serves the data directory, at start: then no other run
    /// can be removing those bytes. Returns how many blobs it removed.
    pub async fn recover_gc(&self) -> Result<u64> {
        let mut stats = GcStats::default();
        for _ in 0..1_000_000 {
            let blobs = self.metadata.abandoned_blobs(0, BLOB_BATCH).await?;
            if blobs.is_empty() {
                break;
            }
            self.remove_blobs(&mut stats, &blobs).await?;
        }
        Ok(stats.blobs_swept)
    }

    /// When the last (not dry) run was requested, Unix ms.
    pub async fn last_gc(&self) -> Result<Option<i64>> {
        Ok(self.metadata.last_gc().await?)
    }

    /// Takes the requested run, if there is one, and performs it as
    /// `holder`; running runs whose heartbeat is older than `stale_before`
    /// (Unix ms) are marked failed first. Returns the finished run.
    pub async fn perform_gc(&self, holder: &str, stale_before: i64) -> Result<Option<GcRun>> {
        // A read first: with nothing requested or running, no write at all.
        let newest = self.metadata.gc_runs(None, 1).await?;
        if !newest
            .iter()
            .any(|r| matches!(r.state, GcState::Requested | GcState::Running))
        {
            return Ok(None);
        }
        let Some(run) = self.metadata.claim_gc(holder, stale_before).await? else {
            return Ok(None);
        };
        tracing::info!(
            run = run.id,
            dry_run = run.dry_run,
            "garbage collection started"
        );
        let started = now_ms();
        let mut p = Progress {
            run: &run,
            holder,
            stats: GcStats::default(),
            cutoff: started - self.settings.gc_grace.as_millis() as i64,
            started,
        };
        let outcome = self.collect(&mut p).await;
        let error = outcome.as_ref().err().map(|e| e.to_string());
        self.metadata
            .finish_gc(run.id, holder, &p.stats, error.as_deref())
            .await?;
        match &error {
            None => tracing::info!(run = run.id, dry_run = run.dry_run, stats = ?p.stats,
                "garbage collection finished"),
            Some(e) => tracing::warn!(run = run.id, error = %e, "garbage collection failed"),
        }
        Ok(self.metadata.gc_run(run.id).await?)
    }

    async fn collect(&self, p: &mut Progress<'_>) -> Result<()> {
        if !p.run.dry_run {
            self.heartbeat(p, "recovering").await?;
            self.finish_abandoned(p).await?;
        }
        self.sweep_repositories(p).await?;
        self.sweep_blobs(p).await?;
        self.heartbeat(p, "marking").await?;
        let (manifests, blobs, bytes) = self.metadata.gc_marked(p.run.id).await?;
        p.stats.manifests_marked = if p.run.dry_run {
            manifests.saturating_sub(p.stats.manifests_swept)
        } else {
            manifests
        };
        p.stats.blobs_marked = blobs;
        p.stats.bytes_marked = bytes;
        Ok(())
    }

    /// Renews the lease and records progress; fails the run when another
    /// process took it over (its deletions must not go on).
    async fn heartbeat(&self, p: &Progress<'_>, phase: &str) -> Result<()> {
        let held = self
            .metadata
            .gc_heartbeat(p.run.id, p.holder, phase, &p.stats)
            .await?;
        if held {
            Ok(())
        } else {
            Err(Error::GcLeaseLost)
        }
    }

    /// Removes the blobs a dead run left `deleting`.
    async fn finish_abandoned(&self, p: &mut Progress<'_>) -> Result<()> {
        // Each batch's rows are gone before the next is read; bounded anyway.
        for _ in 0..1_000_000 {
            let blobs = self.metadata.abandoned_blobs(p.run.id, BLOB_BATCH).await?;
            if blobs.is_empty() {
                break;
            }
            self.remove_blobs(&mut p.stats, &blobs).await?;
        }
        Ok(())
    }

    async fn sweep_repositories(&self, p: &mut Progress<'_>) -> Result<()> {
        let mut policies: HashMap<String, ProjectPolicy> = HashMap::new();
        for project in self.metadata.projects_with_policies().await? {
            let policy = self.metadata.project_policy(&project).await?;
            policies.insert(project, policy);
        }
        let none = ProjectPolicy::default();
        let mut after = 0;
        loop {
            self.heartbeat(p, "repositories").await?;
            let repos = self
                .metadata
                .sweep_repositories(None, after, REPOSITORY_BATCH)
                .await?;
            let Some(last) = repos.last() else {
                return Ok(());
            };
            after = last.id;
            for repo in &repos {
                let work = std::time::Instant::now();
                let policy = policies.get(repo.name.project()).unwrap_or(&none);
                let plan = self.plan(repo, policy, p).await?;
                let swept = self
                    .metadata
                    .sweep_repository(repo.id, &plan, p.run.id, p.run.dry_run)
                    .await?;
                p.stats.add(&swept);
                if !p.run.dry_run && swept != RepoSwept::default() {
                    self.cache.invalidate();
                }
                self.rest(work).await;
            }
        }
    }

    async fn plan(
        &self,
        repo: &SweepRepo,
        policy: &ProjectPolicy,
        p: &Progress<'_>,
    ) -> Result<RepoPlan> {
        let tags = if policy.retention.is_empty() {
            Vec::new()
        } else {
            let times = self.metadata.tag_times(repo.id).await?;
            tags_to_delete(policy, &times, p.started)
        };
        let untagged_before = policy
            .untagged_days
            .map(|days| (p.started - i64::from(days) * DAY_MS).min(p.cutoff));
        Ok(RepoPlan {
            tags,
            untagged_before,
            links_before: p.cutoff,
        })
    }

    async fn sweep_blobs(&self, p: &mut Progress<'_>) -> Result<()> {
        let mut after: Option<Digest> = None;
        loop {
            self.heartbeat(p, "blobs").await?;
            let blobs = self
                .metadata
                .flip_blobs(
                    after.as_ref(),
                    p.cutoff,
                    p.run.id,
                    BLOB_BATCH,
                    p.run.dry_run,
                )
                .await?;
            let Some(last) = blobs.last() else {
                return Ok(());
            };
            after = Some(last.digest.clone());
            let batch = std::time::Instant::now();
            if p.run.dry_run {
                p.stats.blobs_swept += blobs.len() as u64;
                p.stats.bytes_freed += blobs.iter().map(|b| b.size).sum::<u64>();
            } else {
                // The lease is checked right before the bytes go.
                self.heartbeat(p, "blobs").await?;
                self.remove_blobs(&mut p.stats, &blobs).await?;
            }
            self.rest(batch).await;
        }
    }

    /// Removes the bytes of `deleting` blobs, then their rows.
    async fn remove_blobs(&self, stats: &mut GcStats, blobs: &[SweptBlob]) -> Result<()> {
        let digests: Vec<Digest> = blobs.iter().map(|b| b.digest.clone()).collect();
        let results = blobs.iter().zip(self.storage.delete_batch(&digests).await);
        let mut gone = Vec::with_capacity(blobs.len());
        for (blob, result) in results {
            match result {
                Ok(()) => {
                    stats.blobs_swept += 1;
                    stats.bytes_freed += blob.size;
                    gone.push(blob.digest.clone());
                }
                // Left `deleting`: the next run tries again.
                Err(e) => tracing::warn!(digest = %blob.digest, error = %e,
                    "garbage collection could not delete a blob's bytes"),
            }
        }
        self.metadata.forget_blobs(&gone).await?;
        self.cache.invalidate();
        Ok(())
    }

    /// Rests after the step begun at `started`, while requests' writes are
    /// waiting (see [`REST_PER_BUSY_WORK`]).
    async fn rest(&self, started: std::time::Instant) {
        if self.metadata.writes_waiting() {
            tokio::time::sleep(started.elapsed().mul_f64(REST_PER_BUSY_WORK)).await;
        }
    }
}
