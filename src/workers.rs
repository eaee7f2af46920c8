//! Background work (DESIGN rule 9): each job implements [`Worker`], and
//! [`Workers`] runs them online, one pass after another on their interval,
//! keeps each one's status, and stops them on shutdown. A pass in progress
//! at shutdown finishes (bounded by the shutdown grace), so every worker's
//! pass must also be safe to lose to a crash: the next pass finishes the job.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::audit::AuditSink;
use crate::core::{Registry, GC_LEASE};
use crate::metadata::now_ms;
use crate::metrics::Metrics;

#[async_trait]
pub trait Worker: Send + Sync + 'static {
    /// A short name for logs and status (`upload-expiry`).
    fn name(&self) -> &'static str;
    /// Time from the end of one pass to the start of the next; the first
    /// pass runs at start.
    fn interval(&self) -> Duration;
    /// One pass; `Ok` carries a one-line summary of what it did.
    async fn run_once(&self) -> anyhow::Result<String>;
    /// Resolves when work arrived that should not wait for the interval.
    async fn woken(&self) {
        std::future::pending::<()>().await
    }
}

/// What a worker did last.
#[derive(Debug, Clone, Default)]
pub struct WorkerStatus {
    pub name: &'static str,
    pub passes: u64,
    pub failures: u64,
    pub last_finished: Option<SystemTime>,
    /// The last pass's summary, or its error.
    pub last_outcome: String,
}

/// The running workers.
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    statuses: Vec<Arc<Mutex<WorkerStatus>>>,
}

impl Default for Workers {
    fn default() -> Self {
        Workers {
            stop: watch::channel(false).0,
            tasks: JoinSet::new(),
            statuses: Vec::new(),
        }
    }
}

impl Workers {
    /// Starts `worker`: a first pass now, then one every interval.
    pub fn spawn(&mut self, worker: impl Worker) {
        let status = Arc::new(Mutex::new(WorkerStatus {
            name: worker.name(),
            ..Default::default()
        }));
        self.statuses.push(status.clone());
        let mut stop = self.stop.subscribe();
        self.tasks.spawn(async move {
            loop {
                let outcome = worker.run_once().await;
                record(&status, worker.name(), outcome);
                tokio::select! {
                    () = tokio::time::sleep(worker.interval()) => {}
                    () = worker.woken() => {}
                    _ = stop.wait_for(|stop| *stop) => break,
                }
            }
        });
    }

    pub fn statuses(&self) -> Vec<WorkerStatus> {
        self.statuses
            .iter()
            .map(|s| s.lock().expect("worker status").clone())
            .collect()
    }

    /// Asks every worker to stop after its current pass and waits for them,
    /// at most `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("background workers still busy after the grace period; stopping them");
            self.tasks.abort_all();
        }
    }
}

fn record(status: &Mutex<WorkerStatus>, name: &str, outcome: anyhow::Result<String>) {
    let mut s = status.lock().expect("worker status");
    s.passes += 1;
    s.last_finished = Some(SystemTime::now());
    match outcome {
        Ok(summary) => {
            if !summary.is_empty() {
                tracing::info!(worker = name, "{summary}");
            }
            s.last_outcome = summary;
        }
        Err(e) => {
            s.failures += 1;
            tracing::warn!(worker = name, error = %format!("{e:#}"), "background pass failed");
            s.last_outcome = format!("failed: {e:#}");
        }
    }
}

/// Removes upload sessions idle past `uploads.session_ttl_seconds`, and
/// staged bytes that no session owns.
pub struct UploadExpiry {
    pub registry: Arc<Registry>,
    pub ttl: Duration,
}

#[async_trait]
impl Worker for UploadExpiry {
    fn name(&self) -> &'static str {
        "upload-expiry"
    }

    fn interval(&self) -> Duration {
        // Often enough that a session outlives its TTL by at most a quarter.
        (self.ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600))
    }

    async fn run_once(&self) -> anyhow::Result<String> {
        let done = self.registry.expire_uploads(self.ttl).await?;
        if done.sessions + done.orphans == 0 {
            return Ok(String::new());
        }
        Ok(format!(
            "removed {} idle upload sessions and {} unowned staging files, {} bytes freed ({} busy, skipped)",
            done.sessions, done.orphans, done.bytes, done.busy
        ))
    }
}

/// Drops the registry's cached lookups within a second of a repository
/// deleted by another process on the same database (the CLI).
pub struct CacheSync {
    pub registry: Arc<Registry>,
}

#[async_trait]
impl Worker for CacheSync {
    fn name(&self) -> &'static str {
        "cache-sync"
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    async fn run_once(&self) -> anyhow::Result<String> {
        if self.registry.follow_removals().await? {
            tracing::debug!("a repository was deleted: cached lookups dropped");
        }
        Ok(String::new())
    }
}

/// Shares the failed-login limiter's counts with the other replicas
/// (`auth::limiter::shared`): writes the outcomes this replica published,
/// merges what the others wrote, and forgets keys quiet for long.
pub struct LoginSync {
    authenticator: Arc<crate::auth::Authenticator>,
    ledger: Arc<dyn crate::metadata::LoginLedger>,
    outbox: Mutex<tokio::sync::mpsc::Receiver<crate::metadata::LoginOutcome>>,
    cursor: std::sync::atomic::AtomicI64,
    forgotten_at: std::sync::atomic::AtomicI64,
}

impl LoginSync {
    pub fn new(
        authenticator: Arc<crate::auth::Authenticator>,
        ledger: Arc<dyn crate::metadata::LoginLedger>,
        outbox: tokio::sync::mpsc::Receiver<crate::metadata::LoginOutcome>,
    ) -> LoginSync {
        LoginSync {
            authenticator,
            ledger,
            outbox: Mutex::new(outbox),
            cursor: Default::default(),
            forgotten_at: Default::default(),
        }
    }
}

/// How often keys nobody touched for long are deleted from the ledger.
const FORGET_EVERY_MS: i64 = 600_000;

#[async_trait]
impl Worker for LoginSync {
    fn name(&self) -> &'static str {
        "login-sync"
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    async fn run_once(&self) -> anyhow::Result<String> {
        use std::sync::atomic::Ordering;
        let limiter = self.authenticator.login_limiter();
        let outcomes: Vec<_> = {
            let mut outbox = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
            std::iter::from_fn(|| outbox.try_recv().ok()).collect()
        };
        let forget = limiter.forget_after().as_millis() as i64;
        if !outcomes.is_empty() {
            self.ledger.record_logins(&outcomes, forget).await?;
        }
        let (rows, next) = self
            .ledger
            .logins_since(self.cursor.load(Ordering::Relaxed))
            .await?;
        limiter.merge(&rows);
        self.cursor.store(next, Ordering::Relaxed);
        let now = now_ms();
        if now - self.forgotten_at.load(Ordering::Relaxed) >= FORGET_EVERY_MS {
            self.forgotten_at.store(now, Ordering::Relaxed);
            let gone = self.ledger.forget_logins(now - forget).await?;
            if gone > 0 {
                tracing::debug!(keys = gone, "forgot quiet failed-login counts");
            }
        }
        Ok(String::new())
    }
}

/// Deletes audit events older than `audit.retention_days`.
pub struct AuditRetention {
    pub audit: AuditSink,
    pub retention: Duration,
}

#[async_trait]
impl Worker for AuditRetention {
    fn name(&self) -> &'static str {
        "audit-retention"
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(3600)
    }

    async fn run_once(&self) -> anyhow::Result<String> {
        let deleted = self.audit.prune_older_than(self.retention).await?;
        Ok(if deleted == 0 {
            String::new()
        } else {
            format!(
                "deleted {deleted} audit events older than {} days",
                self.retention.as_secs() / 86_400
            )
        })
    }
}

/// Runs (collection, scrub) still marked running whose heartbeat is older
/// than this are dead. On the first pass of a process that alone serves
/// the data directory, every one is: none can belong to a live process.
fn stale_before(first_pass: bool, exclusive: bool) -> i64 {
    if first_pass && exclusive {
        i64::MAX
    } else {
        now_ms() - GC_LEASE.as_millis() as i64
    }
}

/// Garbage collection: requests a run when the schedule says one is due
/// (counted from the last run's request, whichever process made it), and
/// performs requested runs (from the API, the CLI or the schedule).
pub struct GarbageCollector {
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// Zero: no scheduled runs.
    pub interval: Duration,
    /// This process, as the holder of a run's lease.
    pub holder: String,
    /// This process alone serves the data directory (the embedded
    /// default holds its lock): a run still marked running when it starts
    /// was left by a process that died, and is finished at once.
    pub exclusive: bool,
    pub started: std::sync::atomic::AtomicBool,
    /// When this process started (Unix ms): with no run recorded yet, the
    /// first scheduled one is an interval after it.
    pub since: i64,
}

impl GarbageCollector {
    async fn schedule(&self) -> anyhow::Result<()> {
        if self.interval.is_zero() {
            return Ok(());
        }
        let due = match self.registry.last_gc().await? {
            Some(last) => now_ms() - last >= self.interval.as_millis() as i64,
            None => now_ms() - self.since >= self.interval.as_millis() as i64,
        };
        if due {
            // Busy: a run is already requested or running.
            let _ = self.registry.request_gc(false, "schedule").await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Worker for GarbageCollector {
    fn name(&self) -> &'static str {
        "gc"
    }

    fn interval(&self) -> Duration {
        // How soon a run requested by another process (the CLI) starts.
        Duration::from_secs(2)
    }

    async fn run_once(&self) -> anyhow::Result<String> {
        use std::sync::atomic::Ordering;
        let first = !self.started.swap(true, Ordering::Relaxed);
        let stale_before = stale_before(first, self.exclusive);
        self.schedule().await?;
        let done = self.registry.perform_gc(&self.holder, stale_before).await;
        let done = done.inspect_err(|_| self.metrics.run_errored("gc"))?;
        if let Some(run) = &done {
            self.metrics.gc_finished(run);
        }
        if first && self.exclusive {
            // A run that died left deletions half done: finish them now.
            let recovered = self.registry.recover_gc().await?;
            if recovered > 0 {
                tracing::info!(
                    blobs = recovered,
                    "finished the deletions of a garbage-collection run that stopped"
                );
            }
        }
        match done {
            Some(run) => Ok(format!(
                "garbage collection run {} {}: {} blobs ({} bytes) freed, {} manifests and {} tags swept",
                run.id,
                run.state.as_str(),
                run.stats.blobs_swept,
                run.stats.bytes_freed,
                run.stats.manifests_swept,
                run.stats.tags_swept
            )),
            None => Ok(String::new()),
        }
    }

    async fn woken(&self) {
        self.registry.gc_requested().await
    }
}

/// Performs requested scrubs; a scrub left running by a process that died
/// is resumed after the last digest it checked.
pub struct Scrubber {
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub exclusive: bool,
    pub started: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Worker for Scrubber {
    fn name(&self) -> &'static str {
        "scrub"
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(2)
    }

    async fn run_once(&self) -> anyhow::Result<String> {
        let first = !self
            .started
            .swap(true, std::sync::atomic::Ordering::Relaxed);
        let stale_before = stale_before(first, self.exclusive);
        let done = self.registry.perform_scrub(stale_before).await;
        let done = done.inspect_err(|_| self.metrics.run_errored("scrub"))?;
        if let Some(run) = &done {
            self.metrics.scrub_finished(run);
        }
        Ok(match done {
            Some(run) => format!(
                "scrub run {} {}: {} blobs checked, {} corrupt, {} missing",
                run.id,
                run.state.as_str(),
                run.stats.checked,
                run.stats.corrupt,
                run.stats.missing
            ),
            None => String::new(),
        })
    }

    async fn woken(&self) {
        self.registry.scrub_requested().await
    }
}
