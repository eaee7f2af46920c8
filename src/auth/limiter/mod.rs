//! Failed-login rate limiting that throttles guessing, not owners.
//!
//! Failures are counted per (account, source address) pair and per source
//! address. A pair that failed `max_failures` times backs off: each further
//! failure doubles the wait before the next attempt (5 s, 10 s, 20 s…,
//! at most `window`). The same account from another address is untouched, so
//! nobody can lock an owner (or `admin`) out from elsewhere. A source that
//! failed `address_max_failures` times on any accounts backs off the same
//! way, except for accounts that logged in from it before: one guesser
//! behind a NAT or CI host does not lock out its neighbours. Failures are
//! forgotten after a quiet `window` following the end of the back-off.
//!
//! [`LoginLimiter::begin`] checks and counts in one step: an attempt counts
//! as a failure from the moment it starts and is refunded if it succeeds,
//! so concurrent guesses cannot race past the limit.
//!
//! State is in memory, and checks never wait for a database. Replicas
//! that share one (PostgreSQL) also share the counts ([`shared`]): each
//! publishes how its attempts ended and merges what the others published,
//! about once a second, so N replicas give a guesser the budget of one plus
//! at most a second's worth of attempts. Memory is bounded: account names
//! are kept only as a 64-bit hash, and the table holds at most `capacity`
//! keys, evicting the least recently used ones first.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::metadata::LoginOutcome;

pub mod shared;

/// Keys tracked at most, by default.
const DEFAULT_CAPACITY: usize = 50_000;
/// The first back-off; each further failure doubles it.
const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// How long a successful login exempts its (account, address) pair from
/// the address's budget.
const TRUSTED_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// Counts failed logins and makes guessers back off.
pub struct LoginLimiter {
    max_failures: u32,
    address_max_failures: u32,
    window: Duration,
    capacity: usize,
    buckets: Mutex<HashMap<Key, Bucket>>,
    /// Where outcomes go for the other replicas, once sharing is on.
    outbox: OnceLock<tokio::sync::mpsc::Sender<LoginOutcome>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// An account (hashed) from one source network.
    Pair(u64),
    Source(IpAddr),
}

#[derive(Clone, Copy)]
struct Bucket {
    failures: u32,
    /// The last failure (or attempt), or the last success of a pair.
    last: Instant,
    /// The last time the key was asked about, for evicting the least
    /// recently used.
    touched: Instant,
    /// A pair that logged in successfully is exempt from its source's budget.
    trusted_until: Option<Instant>,
    /// The last success known (Unix ms; 0 for none), on any replica.
    cleared_ms: i64,
}

/// A login attempt let through by [`LoginLimiter::begin`], counted as a
/// failure until [`Attempt::succeeded`] or [`Attempt::cancel`] says
/// otherwise. Dropping it leaves the failure counted.
#[must_use = "an attempt stays counted as a failure unless told otherwise"]
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    pair: Key,
    source: Key,
    counted: bool,
}

impl Attempt<'_> {
    /// The right credentials: the pair's failures are cleared (and the pair
    /// trusted from now on), and the source gets its attempt back. Its
    /// earlier failures stay: one good password does not excuse guessing
    /// at other accounts.
    pub fn succeeded(mut self) {
        if self.counted {
            self.counted = false;
            let now = Instant::now();
            let cleared_ms = crate::metadata::now_ms();
            let mut buckets = self.limiter.lock();
            buckets.insert(
                self.pair,
                Bucket {
                    failures: 0,
                    last: now,
                    touched: now,
                    trusted_until: Some(now + TRUSTED_FOR),
                    cleared_ms,
                },
            );
            refund(&mut buckets, self.source);
            drop(buckets);
            self.limiter.publish(|| LoginOutcome::Succeeded {
                key: self.pair.shared_name(),
                at: cleared_ms,
                trusted_until: cleared_ms + TRUSTED_FOR.as_millis() as i64,
            });
        }
    }

    /// Wrong credentials (the failure stays counted).
    pub fn failed(self) {}

    /// The check itself did not happen (server busy, database error): the
    /// attempt is not held against anyone.
    pub fn cancel(mut self) {
        if self.counted {
            self.counted = false;
            let mut buckets = self.limiter.lock();
            refund(&mut buckets, self.pair);
            refund(&mut buckets, self.source);
        }
    }
}

impl Drop for Attempt<'_> {
    /// Still counted: a failure, which the other replicas hear of.
    fn drop(&mut self) {
        if self.counted {
            let at = crate::metadata::now_ms();
            for key in [self.pair, self.source] {
                self.limiter.publish(|| LoginOutcome::Failed {
                    key: key.shared_name(),
                    at,
                });
            }
        }
    }
}

fn refund(buckets: &mut HashMap<Key, Bucket>, key: Key) {
    if let Some(bucket) = buckets.get_mut(&key) {
        bucket.failures = bucket.failures.saturating_sub(1);
    }
}

impl LoginLimiter {
    /// Lets `max_failures` failures per (account, address) pair and
    /// `address_max_failures` per address through before backing off;
    /// failures are forgotten `window` after the last one, which is also
    /// the longest back-off. `max_failures == 0` or a zero window turns
    /// limiting off.
    pub fn new(max_failures: u32, address_max_failures: u32, window: Duration) -> LoginLimiter {
        LoginLimiter::with_capacity(max_failures, address_max_failures, window, DEFAULT_CAPACITY)
    }

    /// Like [`LoginLimiter::new`], tracking at most `capacity` keys.
    pub fn with_capacity(
        max_failures: u32,
        address_max_failures: u32,
        window: Duration,
        capacity: usize,
    ) -> LoginLimiter {
        LoginLimiter {
            max_failures,
            address_max_failures: address_max_failures.max(1),
            window,
            capacity: capacity.max(8),
            buckets: Mutex::new(HashMap::new()),
            outbox: OnceLock::new(),
        }
    }

    /// `Ok` when a login attempt for `account` from `source` may go ahead,
    /// otherwise how long until it may (for `Retry-After`). Counts nothing.
    pub fn check(&self, account: &str, source: IpAddr) -> Result<(), Duration> {
        self.check_at(account, source, Instant::now())
    }

    /// Checks like [`LoginLimiter::check`] and, in the same step, counts
    /// the attempt as a failure until the returned [`Attempt`] is resolved.
    pub fn begin(&self, account: &str, source: IpAddr) -> Result<Attempt<'_>, Duration> {
        self.begin_at(account, source, Instant::now())
    }

    fn disabled(&self) -> bool {
        self.max_failures == 0 || self.window.is_zero()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Bucket>> {
        // Every update leaves the map consistent, so a poisoned lock is safe.
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn keys(&self, account: &str, source: IpAddr) -> (Key, Key) {
        let network = source_network(source);
        // The same on every replica, so that they can share the counts.
        let mut hash = Sha256::new();
        match network {
            IpAddr::V4(v4) => hash.update(v4.octets()),
            IpAddr::V6(v6) => hash.update(v6.octets()),
        }
        hash.update([0]);
        hash.update(account);
        let pair = u64::from_be_bytes(hash.finalize()[..8].try_into().expect("8 bytes"));
        (Key::Pair(pair), Key::Source(network))
    }

    /// Failures allowed before `key` backs off.
    fn free(&self, key: &Key) -> u32 {
        match key {
            Key::Pair(_) => self.max_failures,
            Key::Source(_) => self.address_max_failures,
        }
    }

    /// The back-off after `bucket`'s last failure: none while within the
    /// free failures, then `BACKOFF_BASE` doubling with each failure, at most
    /// `window`.
    fn backoff(&self, bucket: &Bucket, free: u32) -> Duration {
        if bucket.failures < free {
            return Duration::ZERO;
        }
        let doublings = (bucket.failures - free).min(20);
        (BACKOFF_BASE * (1u32 << doublings)).min(self.window)
    }

    /// How long `bucket` must still wait at `now`.
    fn wait(&self, bucket: &Bucket, free: u32, now: Instant) -> Duration {
        match self.backoff(bucket, free) {
            Duration::ZERO => Duration::ZERO,
            backoff => (bucket.last + backoff).saturating_duration_since(now),
        }
    }

    /// Forgets failures after a quiet window past the back-off (keeping a
    /// pair's trust).
    fn age(&self, bucket: &mut Bucket, free: u32, now: Instant) {
        let end = bucket.last + self.backoff(bucket, free) + self.window;
        if now >= end {
            bucket.failures = 0;
        }
    }

    fn refusal(
        &self,
        buckets: &mut HashMap<Key, Bucket>,
        (pair, source): (Key, Key),
        now: Instant,
    ) -> Duration {
        let mut wait = Duration::ZERO;
        let mut trusted = false;
        if let Some(b) = buckets.get_mut(&pair) {
            self.age(b, self.max_failures, now);
            b.touched = b.touched.max(now);
            wait = wait.max(self.wait(b, self.max_failures, now));
            trusted = b.trusted_until.is_some_and(|until| now < until);
        }
        if let Some(b) = buckets.get_mut(&source) {
            self.age(b, self.address_max_failures, now);
            b.touched = b.touched.max(now);
            if !trusted {
                wait = wait.max(self.wait(b, self.address_max_failures, now));
            }
        }
        wait
    }

    fn check_at(&self, account: &str, source: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.disabled() {
            return Ok(());
        }
        let wait = self.refusal(&mut self.lock(), self.keys(account, source), now);
        refused_for(wait)
    }

    fn begin_at(
        &self,
        account: &str,
        source: IpAddr,
        now: Instant,
    ) -> Result<Attempt<'_>, Duration> {
        let (pair, source) = self.keys(account, source);
        let mut attempt = Attempt {
            limiter: self,
            pair,
            source,
            counted: false,
        };
        if self.disabled() {
            return Ok(attempt);
        }
        let mut buckets = self.lock();
        refused_for(self.refusal(&mut buckets, (pair, source), now))?;
        for key in [pair, source] {
            if !buckets.contains_key(&key) && buckets.len() >= self.capacity {
                self.make_room(&mut buckets, now);
            }
            let bucket = buckets.entry(key).or_insert(Bucket {
                failures: 0,
                last: now,
                touched: now,
                trusted_until: None,
                cleared_ms: 0,
            });
            bucket.failures = bucket.failures.saturating_add(1);
            bucket.last = now;
        }
        attempt.counted = true;
        Ok(attempt)
    }

    /// Drops keys with nothing left to remember; when that is not enough,
    /// the least recently used eighth, so the cost is paid rarely.
    fn make_room(&self, buckets: &mut HashMap<Key, Bucket>, now: Instant) {
        buckets.retain(|key, b| {
            self.age(b, self.free(key), now);
            b.failures > 0 || b.trusted_until.is_some_and(|until| now < until)
        });
        if buckets.len() < self.capacity {
            return;
        }
        let mut by_age: Vec<(Instant, Key)> =
            buckets.iter().map(|(k, b)| (b.touched, *k)).collect();
        by_age.sort_unstable_by_key(|(touched, _)| *touched);
        let excess = buckets.len() - self.capacity * 7 / 8;
        for (_, key) in by_age.into_iter().take(excess) {
            buckets.remove(&key);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().len()
    }
}

/// Never tell a client to retry "in 0 s" while refusing it.
fn refused_for(wait: Duration) -> Result<(), Duration> {
    if wait.is_zero() {
        Ok(())
    } else {
        Err(wait.max(Duration::from_secs(1)))
    }
}

impl fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginLimiter")
            .field("max_failures", &self.max_failures)
            .field("address_max_failures", &self.address_max_failures)
            .field("window", &self.window)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// The unit a source is limited by: an IPv4 address, or an IPv6 /64 (one
/// host usually controls a whole /64, so single addresses are free to it).
pub fn source_network(source: IpAddr) -> IpAddr {
    match source.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(network))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests;
