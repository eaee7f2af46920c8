//! Scrub: re-hash stored blobs, at most `scrub_rate` bytes a second so
//! that serving is not starved, resumable after the last digest checked,
//! and quarantine what is corrupt or missing (never served again; the
//! client gets 404 and can push it again).

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::{Registry, Result};
use crate::metadata::{now_ms, GcState, ScrubProblem, ScrubRun, SweptBlob, MAX_PROBLEMS};
use crate::storage::StorageError;

const BATCH: u32 = 100;

impl Registry {
    pub async fn request_scrub(&self, by: &str) -> Result<std::result::Result<ScrubRun, i64>> {
        let requested = self.metadata.request_scrub(by).await?;
        if requested.is_ok() {
            self.scrub_wake.notify_one();
        }
        Ok(requested)
    }

    /// Resolves when this process requested a scrub.
    pub async fn scrub_requested(&self) {
        self.scrub_wake.notified().await
    }

    pub async fn scrub_run(&self, id: i64) -> Result<Option<ScrubRun>> {
        Ok(self.metadata.scrub_run(id).await?)
    }

    pub async fn scrub_runs(&self, before: Option<i64>, limit: u32) -> Result<Vec<ScrubRun>> {
        Ok(self.metadata.scrub_runs(before, limit).await?)
    }

    /// Takes the requested scrub, if any, and performs it; a running one
    /// whose heartbeat is older than `stale_before` is marked failed first
    /// (and resumed by this one).
    pub async fn perform_scrub(&self, stale_before: i64) -> Result<Option<ScrubRun>> {
        let newest = self.metadata.scrub_runs(None, 1).await?;
        if !newest
            .iter()
            .any(|r| matches!(r.state, GcState::Requested | GcState::Running))
        {
            return Ok(None);
        }
        let Some(mut run) = self.metadata.claim_scrub(stale_before).await? else {
            return Ok(None);
        };
        tracing::info!(run = run.id, resume_after = ?run.cursor, "scrub started");
        let outcome = self.scrub(&mut run).await;
        match outcome {
            Ok(()) => run.state = GcState::Succeeded,
            Err(e) => {
                tracing::warn!(run = run.id, error = %e, "scrub failed");
                run.state = GcState::Failed;
                run.error = Some(e.to_string());
            }
        }
        self.metadata.finish_scrub(&run).await?;
        tracing::info!(run = run.id, stats = ?run.stats, "scrub finished");
        Ok(self.metadata.scrub_run(run.id).await?)
    }

    async fn scrub(&self, run: &mut ScrubRun) -> Result<()> {
        let started = Instant::now();
        for _ in 0..u32::MAX {
            let (blobs, left) = self
                .metadata
                .scrub_batch(run.cursor.as_deref(), BATCH)
                .await?;
            if run.stats.total == 0 {
                run.stats.total = left;
            }
            let Some(last) = blobs.last() else { break };
            run.cursor = Some(last.digest.to_string());
            for blob in &blobs {
                self.check_blob(run, blob).await?;
                self.throttle(started, run.stats.bytes_checked).await;
            }
            if !self.metadata.save_scrub(run).await? {
                return Err(super::Error::Unavailable(format!(
                    "scrub run {} was ended by another process",
                    run.id
                )));
            }
        }
        Ok(())
    }

    /// Sleeps so that the bytes read stay under the configured rate.
    async fn throttle(&self, started: Instant, bytes: u64) {
        let rate = self.settings.scrub_rate;
        if rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
        if let Some(ahead) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(ahead).await;
        }
    }

    async fn check_blob(&self, run: &mut ScrubRun, blob: &SweptBlob) -> Result<()> {
        let problem = match self.storage.get(&blob.digest, None).await {
            Err(StorageError::NotFound) => Some("missing".to_string()),
            Err(e) => return Err(e.into()),
            Ok(mut stream) => {
                let mut hasher = blob.digest.algorithm().hasher();
                let mut size = 0u64;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(StorageError::Io)?;
                    size += chunk.len() as u64;
                    hasher.update(&chunk);
                }
                run.stats.bytes_checked += size;
                let actual = hasher.finish();
                (actual != blob.digest || size != blob.size).then(|| {
                    format!(
                        "{size} bytes hashing to {actual} (recorded: {} bytes)",
                        blob.size
                    )
                })
            }
        };
        run.stats.checked += 1;
        let Some(problem) = problem else {
            return Ok(());
        };
        if problem == "missing" {
            run.stats.missing += 1;
        } else {
            run.stats.corrupt += 1;
            self.storage.quarantine(&blob.digest).await?;
        }
        self.metadata.mark_corrupt(&blob.digest).await?;
        self.cache.invalidate();
        tracing::warn!(digest = %blob.digest, %problem, at = now_ms(), "scrub quarantined a blob");
        if run.problems.len() < MAX_PROBLEMS {
            run.problems.push(ScrubProblem {
                digest: blob.digest.to_string(),
                problem,
            });
        }
        Ok(())
    }
}
