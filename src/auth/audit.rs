//! The audit trail's writer: events are queued by request handlers and
//! written in batches by one background task, so recording a pull costs a
//! channel send, not a database transaction.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::token::ResourceActions;
use crate::metadata::now_ms;
use crate::metadata::{Metadata, NewAuditEvent};

const QUEUE: usize = 65_536;
const BATCH: usize = 1_000;

enum Message {
    Event(NewAuditEvent),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
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
    pub fn start(metadata: Arc<dyn Metadata>) -> AuditSink {
        let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
        tokio::spawn(async move {
            let mut messages = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut messages, BATCH).await > 0 {
                let mut events = Vec::with_capacity(messages.len());
                let mut waiting = Vec::new();
                for m in messages.drain(..) {
                    match m {
                        Message::Event(e) => events.push(e),
                        Message::Flush(done) => waiting.push(done),
                    }
                }
                if !events.is_empty() {
                    if let Err(e) = metadata.record(&events).await {
                        tracing::error!(error = %e, lost = events.len(), "writing audit events failed");
                    }
                }
                for done in waiting {
                    let _ = done.send(());
                }
            }
        });
        AuditSink {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues an event; never blocks a request. If the writer is that far
    /// behind, the event is counted as dropped and logged.
    pub fn record(&self, event: NewAuditEvent) {
        if self.tx.try_send(Message::Event(event)).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::error!(dropped = n, "audit queue full: events dropped");
            }
        }
    }

    /// Waits until every event queued before this call is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}
