//! Last-pulled times of tags, for the "not pulled for D days" retention
//! rule, kept cheaply: a tag's time is written at most once a minute by
//! this process, in batches, off the pull's path. Under a flood of pulls of
//! distinct tags the queue is bounded and drops what does not fit (a pull
//! time is advisory; it is counted and logged).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quick_cache::sync::Cache;
use tokio::sync::mpsc;

use crate::metadata::{now_ms, RegistryStore};
use crate::oci::RepoName;

/// A tag's pull time is written again after this long.
const REFRESH_MS: i64 = 60_000;
const QUEUE: usize = 8_192;
const BATCH: usize = 2_000;
const TAGS_REMEMBERED: usize = 100_000;

type Pull = (RepoName, String, i64);

pub(super) struct PullRecorder {
    written: Cache<String, i64>,
    queue: Option<mpsc::Sender<Pull>>,
    dropped: Arc<AtomicU64>,
}

impl PullRecorder {
    /// Starts the writer task (when a runtime runs; without one, pulls are
    /// not recorded).
    pub fn start(metadata: Arc<dyn RegistryStore>) -> PullRecorder {
        let dropped = Arc::new(AtomicU64::new(0));
        let queue = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let (tx, rx) = mpsc::channel(QUEUE);
            rt.spawn(write_pulls(metadata, rx, dropped.clone()));
            tx
        });
        PullRecorder {
            written: Cache::new(TAGS_REMEMBERED),
            queue,
            dropped,
        }
    }

    pub fn record(&self, repo: &RepoName, tag: &str) {
        let Some(queue) = &self.queue else { return };
        let now = now_ms();
        let key = format!("{repo}:{tag}");
        if self
            .written
            .get(&key)
            .is_some_and(|at| now - at < REFRESH_MS)
        {
            return;
        }
        self.written.insert(key, now);
        if queue
            .try_send((repo.clone(), tag.to_string(), now))
            .is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn write_pulls(
    metadata: Arc<dyn RegistryStore>,
    mut rx: mpsc::Receiver<Pull>,
    dropped: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if let Err(e) = metadata.record_pulls(&batch).await {
            tracing::warn!(error = %e, pulls = batch.len(), "recording tag pull times failed");
        }
        batch.clear();
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            tracing::warn!(lost, "tag pull times not recorded: the queue was full");
        }
        // Batches at most once a second: the writer serves pushes first.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
