//! The limiter's counts shared between replicas: every resolved attempt
//! is published (a failure for its account-and-source and its source, a
//! success clearing its account-and-source), a worker writes what was
//! published to the metadata database and merges what the other replicas
//! wrote into this one's table. Checks stay in memory; a replica hears of
//! another's failures within about a second.
//!
//! Merging is idempotent: a key's count becomes the larger of the local and
//! the shared one, unless a success that this replica has not seen cleared
//! the key since, in which case the shared count replaces the local one.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Bucket, Key, LoginLimiter};
use crate::metadata::{now_ms, LoginOutcome, SharedLogins};

/// Outcomes waiting for the worker, at most; beyond, new ones are dropped:
/// a flood of failures is already refused locally.
const OUTBOX: usize = 10_000;

impl Key {
    /// The key's name in the shared table.
    pub(super) fn shared_name(&self) -> String {
        match self {
            Key::Pair(hash) => format!("pair:{hash:016x}"),
            Key::Source(network) => format!("source:{network}"),
        }
    }

    fn from_shared(name: &str) -> Option<Key> {
        if let Some(hex) = name.strip_prefix("pair:") {
            return u64::from_str_radix(hex, 16).ok().map(Key::Pair);
        }
        let network: IpAddr = name.strip_prefix("source:")?.parse().ok()?;
        Some(Key::Source(super::source_network(network)))
    }
}

/// The instant that was `ms` (Unix ms) on this machine's clock, no later
/// than `now`.
fn instant_of(ms: i64, now: Instant, now_ms: i64) -> Instant {
    let ago = u64::try_from(now_ms.saturating_sub(ms)).unwrap_or(0);
    now.checked_sub(Duration::from_millis(ago)).unwrap_or(now)
}

impl LoginLimiter {
    /// Turns sharing on: from now on every resolved attempt is sent to the
    /// returned receiver, for the worker to write. `None` when limiting is
    /// off or sharing already on.
    pub fn share(&self) -> Option<mpsc::Receiver<LoginOutcome>> {
        if self.disabled() {
            return None;
        }
        let (tx, rx) = mpsc::channel(OUTBOX);
        self.outbox.set(tx).ok()?;
        Some(rx)
    }

    /// Sends the outcome `make` builds to the worker, when sharing is on
    /// (built only then: most processes share nothing).
    pub(super) fn publish(&self, make: impl FnOnce() -> LoginOutcome) {
        if let Some(outbox) = self.outbox.get() {
            if let Err(e) = outbox.try_send(make()) {
                tracing::debug!(error = %e, "login outcome not shared");
            }
        }
    }

    /// A shared key whose last failure is older than this starts over: the
    /// longest back-off and the quiet window after it have passed.
    pub fn forget_after(&self) -> Duration {
        self.window * 2
    }

    /// Merges the shared counts `rows` into this replica's table.
    pub fn merge(&self, rows: &[SharedLogins]) {
        if self.disabled() {
            return;
        }
        let (now, wall) = (Instant::now(), now_ms());
        let mut buckets = self.lock();
        for row in rows {
            let Some(key) = Key::from_shared(&row.key) else {
                continue;
            };
            if !buckets.contains_key(&key) && buckets.len() >= self.capacity {
                self.make_room(&mut buckets, now);
            }
            let bucket = buckets.entry(key).or_insert(Bucket {
                failures: 0,
                last: instant_of(row.last_failure, now, wall),
                touched: now,
                trusted_until: None,
                cleared_ms: 0,
            });
            if row.cleared > bucket.cleared_ms {
                bucket.failures = row.failures;
                bucket.cleared_ms = row.cleared;
            } else {
                bucket.failures = bucket.failures.max(row.failures);
            }
            if row.last_failure > 0 {
                bucket.last = bucket.last.max(instant_of(row.last_failure, now, wall));
            }
            if row.trusted_until > wall {
                let until = now + Duration::from_millis((row.trusted_until - wall) as u64);
                bucket.trusted_until = Some(bucket.trusted_until.map_or(until, |t| t.max(until)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// What `from` published, as the ledger would hand it to others.
    fn ledger(rx: &mut mpsc::Receiver<LoginOutcome>) -> Vec<SharedLogins> {
        let mut rows: Vec<SharedLogins> = Vec::new();
        while let Ok(outcome) = rx.try_recv() {
            let (key, failed, at, trusted_until) = match outcome {
                LoginOutcome::Failed { key, at } => (key, true, at, 0),
                LoginOutcome::Succeeded {
                    key,
                    at,
                    trusted_until,
                } => (key, false, at, trusted_until),
            };
            let row = match rows.iter_mut().find(|r| r.key == key) {
                Some(row) => row,
                None => {
                    rows.push(SharedLogins {
                        key,
                        failures: 0,
                        last_failure: 0,
                        cleared: 0,
                        trusted_until: 0,
                    });
                    rows.last_mut().unwrap()
                }
            };
            if failed {
                row.failures += 1;
                row.last_failure = at;
            } else {
                row.failures = 0;
                row.cleared = at;
                row.trusted_until = trusted_until;
            }
        }
        rows
    }

    fn replica() -> (LoginLimiter, mpsc::Receiver<LoginOutcome>) {
        let limiter = LoginLimiter::new(3, 10, Duration::from_secs(300));
        let rx = limiter.share().expect("sharing turns on once");
        (limiter, rx)
    }

    #[test]
    fn failures_on_one_replica_make_the_others_refuse() {
        let (a, mut from_a) = replica();
        let (b, _) = replica();
        for _ in 0..3 {
            a.begin("alice", ip("192.0.2.1")).unwrap().failed();
        }
        assert!(b.check("alice", ip("192.0.2.1")).is_ok());
        let rows = ledger(&mut from_a);
        b.merge(&rows);
        b.merge(&rows); // merging again changes nothing
        let wait = b.check("alice", ip("192.0.2.1")).unwrap_err();
        assert!(wait >= Duration::from_secs(4), "{wait:?}");
        assert!(b.check("alice", ip("192.0.2.2")).is_ok(), "another address");
        assert!(b.check("bob", ip("192.0.2.1")).is_ok(), "another account");
    }

    #[test]
    fn a_success_elsewhere_clears_the_pair_and_refunds_are_not_shared() {
        let (a, mut from_a) = replica();
        let (b, mut from_b) = replica();
        for _ in 0..2 {
            b.begin("alice", ip("192.0.2.1")).unwrap().failed();
        }
        a.merge(&ledger(&mut from_b));
        a.begin("alice", ip("192.0.2.1")).unwrap().succeeded();
        a.begin("alice", ip("192.0.2.1")).unwrap().cancel();
        let rows = ledger(&mut from_a);
        assert_eq!(rows.len(), 1, "only the success is published: {rows:?}");
        b.merge(&rows);
        b.begin("alice", ip("192.0.2.1")).unwrap().failed();
        b.begin("alice", ip("192.0.2.1")).unwrap().failed();
        assert!(
            b.check("alice", ip("192.0.2.1")).is_ok(),
            "two failures since the success: within the budget of three"
        );
    }

    #[test]
    fn sharing_is_off_when_limiting_is() {
        assert!(LoginLimiter::new(0, 10, Duration::from_secs(300))
            .share()
            .is_none());
        let (a, _) = replica();
        assert!(a.share().is_none(), "once only");
    }
}
