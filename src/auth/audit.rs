//! The audit trail's writer: events are queued by request handlers and
//! written in batches by one background task, so recording a pull costs a
//! channel send, not a database transaction.
//!
//! Nothing is lost silently: when the queue is full, events spill into a
//! second bounded buffer the writer drains next; a failed write is retried
//! before it is given up; whatever is not written in the end is counted
//! ([`AuditSink::unwritten`]) and logged. Anonymous token grants, which
//! anyone can ask for in any number, are not written one by one: they are
//! counted and written as one aggregate event a minute. The same task
//! deletes events older than the retention, hourly.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::token::ResourceActions;
use crate::metadata::now_ms;
use crate::metadata::{AuditLog, NewAuditEvent};

const QUEUE: usize = 65_536;
/// Events the spill buffer holds beyond the queue.
const SPILL: usize = 65_536;
/// Events written per transaction, at most: under a burst of pulls the
/// writer takes what has queued up, and bigger batches touch each index page
/// once for many events (about 60,000 events a second into a table of a
/// million, against 30,000 with batches of 1,000).
const BATCH: usize = 5_000;
/// How often anonymous token grants are written, as one event.
const AGGREGATE_EVERY: Duration = Duration::from_secs(60);
/// Events deleted per transaction when pruning.
const PRUNE_BATCH: u32 = 10_000;
/// Waits between the attempts at writing one batch.
const RETRY_WAITS: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(5),
];

enum Message {
    Event(NewAuditEvent),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Message>,
    shared: Arc<Shared>,
    metadata: Arc<dyn AuditLog>,
}

/// What request handlers and the writer task share.
struct Shared {
    /// Events that found the queue full, written after the queue's batch.
    spill: Mutex<VecDeque<NewAuditEvent>>,
    spill_capacity: usize,
    anonymous_tokens: AtomicU64,
    unwritten: AtomicU64,
    /// `unwritten` as of the last log line about losses, and when that
    /// line was written (Unix ms): an overload that loses thousands of
    /// events a second logs one line a second, not one per event.
    logged_unwritten: AtomicU64,
    logged_at: AtomicI64,
}

/// The least time between two log lines about lost events.
const LOSS_LOG_EVERY_MS: i64 = 1_000;

impl Shared {
    fn lose(&self, n: u64, why: &str) {
        self.unwritten.fetch_add(n, Ordering::Relaxed);
        self.log_losses(why, false);
    }

    /// Logs the events lost since the last line, if any: at most once a
    /// second unless `now` (the writer's catch-up after an overload).
    fn log_losses(&self, why: &str, now: bool) {
        let at = now_ms();
        let last = self.logged_at.load(Ordering::Relaxed);
        if !now && at - last < LOSS_LOG_EVERY_MS {
            return;
        }
        if self
            .logged_at
            .compare_exchange(last, at, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let total = self.unwritten.load(Ordering::Relaxed);
        let lost = total
            - self
                .logged_unwritten
                .swap(total, Ordering::Relaxed)
                .min(total);
        if lost > 0 {
            tracing::error!(
                lost,
                unwritten_total = total,
                "audit events not written: {why}"
            );
        }
    }

    fn take_spill(&self) -> Vec<NewAuditEvent> {
        let mut spill = self.spill.lock().unwrap_or_else(|e| e.into_inner());
        let n = spill.len().min(BATCH);
        spill.drain(..n).collect()
    }

    /// The anonymous token grants counted since the last call, as one event.
    fn anonymous_aggregate(&self) -> Option<NewAuditEvent> {
        let n = self.anonymous_tokens.swap(0, Ordering::Relaxed);
        (n > 0).then(|| {
            event(
                "anonymous",
                None,
                "token",
                None,
                None,
                Some(format!("{n} anonymous token grants (aggregated)")),
                true,
            )
        })
    }
}

/// An audit event stamped now.
pub fn event(
    actor: &str,
    source: Option<IpAddr>,
    action: &str,
    repository: Option<&str>,
    digest: Option<&str>,
    detail: Option<String>,
    success: bool,
) -> NewAuditEvent {
    NewAuditEvent {
        at: now_ms(),
        actor: actor.to_string(),
        source: source.map(|s| s.to_string()),
        action: action.to_string(),
        repository: repository.map(str::to_string),
        digest: digest.map(str::to_string),
        detail,
        success,
    }
}

pub fn login(user: &str, source: IpAddr, success: bool) -> NewAuditEvent {
    event(user, Some(source), "login", None, None, None, success)
}

pub fn token_issued(actor: &str, source: IpAddr, granted: &[ResourceActions]) -> NewAuditEvent {
    let scopes: Vec<String> = granted
        .iter()
        .map(|g| format!("{}:{}:{}", g.kind, g.name, g.actions.join(",")))
        .collect();
    event(
        actor,
        Some(source),
        "token",
        None,
        None,
        Some(scopes.join(" ")),
        true,
    )
}

impl AuditSink {
    /// Starts the background writer.
    pub fn start(metadata: Arc<dyn AuditLog>) -> AuditSink {
        AuditSink::with_capacity(metadata, QUEUE, SPILL)
    }

    /// Like [`AuditSink::start`], with a queue of `queue` events and a
    /// spill buffer of `spill` more.
    pub fn with_capacity(metadata: Arc<dyn AuditLog>, queue: usize, spill: usize) -> AuditSink {
        let (tx, rx) = mpsc::channel::<Message>(queue.max(1));
        let shared = Arc::new(Shared {
            spill: Mutex::new(VecDeque::new()),
            spill_capacity: spill,
            anonymous_tokens: AtomicU64::new(0),
            unwritten: AtomicU64::new(0),
            logged_unwritten: AtomicU64::new(0),
            logged_at: AtomicI64::new(0),
        });
        tokio::spawn(write_events(metadata.clone(), rx, shared.clone()));
        AuditSink {
            tx,
            shared,
            metadata,
        }
    }

    /// Deletes events older than `retention`, in batches so that other
    /// writes go between them; returns how many (the `audit-retention`
    /// worker calls it).
    pub async fn prune_older_than(&self, retention: Duration) -> anyhow::Result<u64> {
        let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(keep_ms);
        Ok(self.metadata.prune(before, PRUNE_BATCH).await?)
    }

    /// Queues an event; never blocks a request. When the writer is that far
    /// behind, the event waits in the spill buffer; only beyond that is it
    /// lost, counted and logged.
    pub fn record(&self, event: NewAuditEvent) {
        let event = match self.tx.try_send(Message::Event(event)) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(Message::Event(e))) => e,
            Err(_) => {
                self.shared.lose(1, "the audit writer has stopped");
                return;
            }
        };
        let mut spill = self.shared.spill.lock().unwrap_or_else(|e| e.into_inner());
        if spill.len() < self.shared.spill_capacity {
            if spill.is_empty() {
                tracing::warn!("audit queue full: events spill into the overflow buffer");
            }
            spill.push_back(event);
        } else {
            drop(spill);
            self.shared
                .lose(1, "the audit queue and its overflow are full");
        }
    }

    /// Counts an anonymous token grant, written as part of one aggregate
    /// event a minute: anyone may ask for any number of them.
    pub fn count_anonymous_token(&self) {
        self.shared.anonymous_tokens.fetch_add(1, Ordering::Relaxed);
    }

    /// Events that could not be written since start (also logged).
    pub fn unwritten(&self) -> u64 {
        self.shared.unwritten.load(Ordering::Relaxed)
    }

    /// Waits until every event recorded before this call (the spilled ones
    /// and the anonymous grants counted so far included) is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// The writer task: batches from the queue, then the spill buffer; the
/// anonymous aggregate every minute.
async fn write_events(
    metadata: Arc<dyn AuditLog>,
    mut rx: mpsc::Receiver<Message>,
    shared: Arc<Shared>,
) {
    let mut messages = Vec::with_capacity(BATCH);
    let mut aggregate = tokio::time::interval(AGGREGATE_EVERY);
    aggregate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            received = rx.recv_many(&mut messages, BATCH) => {
                if received == 0 {
                    break;
                }
            }
            _ = aggregate.tick() => {
                if let Some(e) = shared.anonymous_aggregate() {
                    write_batch(&*metadata, &shared, vec![e]).await;
                }
                continue;
            }
        }
        let mut events = Vec::with_capacity(messages.len());
        let mut waiting = Vec::new();
        for m in messages.drain(..) {
            match m {
                Message::Event(e) => events.push(e),
                Message::Flush(done) => waiting.push(done),
            }
        }
        if !waiting.is_empty() {
            events.extend(shared.anonymous_aggregate());
        }
        write_batch(&*metadata, &shared, events).await;
        // The spill holds events newer than the queue's: written after them,
        // all of it before a flush is answered.
        loop {
            let spilled = shared.take_spill();
            if spilled.is_empty() {
                break;
            }
            write_batch(&*metadata, &shared, spilled).await;
        }
        // Caught up: whatever was lost since the last line gets its line.
        shared.log_losses("lost while the writer was behind or failing", true);
        for done in waiting {
            let _ = done.send(());
        }
    }
}

/// Writes `events` in one transaction, retrying a failed write a few times
/// before the events are counted as unwritten.
async fn write_batch(metadata: &dyn AuditLog, shared: &Shared, events: Vec<NewAuditEvent>) {
    if events.is_empty() {
        return;
    }
    let mut error = None;
    for wait in std::iter::once(Duration::ZERO).chain(RETRY_WAITS) {
        tokio::time::sleep(wait).await;
        match metadata.record(&events).await {
            Ok(()) => return,
            Err(e) => error = Some(e),
        }
    }
    let error = error.map(|e| e.to_string()).unwrap_or_default();
    shared.lose(
        events.len() as u64,
        &format!("writing them failed: {error}"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{AuditFilter, SqliteMetadata};

    async fn open() -> (tempfile::TempDir, Arc<SqliteMetadata>) {
        let dir = tempfile::tempdir().unwrap();
        let metadata = SqliteMetadata::open(&dir.path().join("metadata.db"))
            .await
            .unwrap();
        (dir, Arc::new(metadata))
    }

    async fn stored(metadata: &SqliteMetadata, action: &str) -> Vec<crate::metadata::AuditEvent> {
        metadata
            .query(&AuditFilter {
                action: Some(action.into()),
                limit: 1000,
                ..AuditFilter::default()
            })
            .await
            .unwrap()
    }

    fn pull(i: usize) -> NewAuditEvent {
        event(
            "alice",
            None,
            "pull",
            Some("a/b"),
            None,
            Some(format!("{i}")),
            true,
        )
    }

    #[tokio::test]
    async fn a_full_queue_spills_and_only_what_overflows_both_is_counted() {
        let (_dir, metadata) = open().await;
        let sink = AuditSink::with_capacity(metadata.clone(), 4, 6);
        // The writer does not run before this test awaits: 4 events fill the
        // queue, 6 the spill, and 2 are lost.
        for i in 0..12 {
            sink.record(pull(i));
        }
        assert_eq!(sink.unwritten(), 2);
        sink.flush().await;
        let mut written: Vec<String> = stored(&metadata, "pull")
            .await
            .into_iter()
            .filter_map(|e| e.detail)
            .collect();
        written.sort_by_key(|d| d.parse::<usize>().unwrap());
        assert_eq!(written, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn anonymous_token_grants_are_written_as_one_aggregate() {
        let (_dir, metadata) = open().await;
        let sink = AuditSink::start(metadata.clone());
        for _ in 0..500 {
            sink.count_anonymous_token();
        }
        sink.flush().await;
        let rows = stored(&metadata, "token").await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].actor, "anonymous");
        assert_eq!(
            rows[0].detail.as_deref(),
            Some("500 anonymous token grants (aggregated)")
        );
        sink.flush().await;
        assert_eq!(stored(&metadata, "token").await.len(), 1, "nothing new");
    }

    #[tokio::test]
    async fn events_past_the_retention_are_pruned() {
        let (_dir, metadata) = open().await;
        let day = 24 * 3600 * 1000;
        let mut old = pull(1);
        old.at = now_ms() - 91 * day;
        let mut recent = pull(2);
        recent.at = now_ms() - 89 * day;
        metadata.record(&[old, recent]).await.unwrap();
        let sink = AuditSink::start(metadata.clone());
        let pruned = sink
            .prune_older_than(Duration::from_secs(90 * 24 * 3600))
            .await
            .unwrap();
        assert_eq!(pruned, 1);
        let left: Vec<Option<String>> = stored(&metadata, "pull")
            .await
            .into_iter()
            .map(|e| e.detail)
            .collect();
        assert_eq!(left, [Some("2".to_string())]);
    }
}
