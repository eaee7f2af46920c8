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
//! State is per process and in memory: with N replicas an attacker gets at
//! most N times the budget, which still bounds guessing. Memory is bounded:
//! account names are kept only as a 64-bit keyed hash, and the table holds
//! at most `capacity` keys, evicting the least recently used ones first.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
    account_hasher: RandomState,
    buckets: Mutex<HashMap<Key, Bucket>>,
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
    pub fn succeeded(self) {
        if self.counted {
            let now = Instant::now();
            let mut buckets = self.limiter.lock();
            buckets.insert(
                self.pair,
                Bucket {
                    failures: 0,
                    last: now,
                    touched: now,
                    trusted_until: Some(now + TRUSTED_FOR),
                },
            );
            refund(&mut buckets, self.source);
        }
    }

    /// Wrong credentials (the failure stays counted).
    pub fn failed(self) {}

    /// The check itself did not happen (server busy, database error): the
    /// attempt is not held against anyone.
    pub fn cancel(self) {
        if self.counted {
            let mut buckets = self.limiter.lock();
            refund(&mut buckets, self.pair);
            refund(&mut buckets, self.source);
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
            account_hasher: RandomState::new(),
            buckets: Mutex::new(HashMap::new()),
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
        (
            Key::Pair(self.account_hasher.hash_one((account, network))),
            Key::Source(network),
        )
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
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(300);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// `n` wrong passwords for `account` from `source`, all at `at`.
    fn fail(limiter: &LoginLimiter, account: &str, source: &str, n: u32, at: Instant) {
        for i in 0..n {
            limiter
                .begin_at(account, ip(source), at)
                .unwrap_or_else(|wait| panic!("failure {i} refused for {wait:?}"))
                .failed();
        }
    }

    #[test]
    fn a_guesser_backs_off_while_the_owner_elsewhere_gets_in() {
        let limiter = LoginLimiter::new(3, 100, WINDOW);
        let t0 = Instant::now();
        fail(&limiter, "admin", "203.0.113.9", 3, t0);
        // The guesser waits 5 s, then 10 s, then 20 s…
        assert_eq!(
            limiter.check_at("admin", ip("203.0.113.9"), t0),
            Err(secs(5))
        );
        let mut at = t0;
        for expected in [5, 10, 20, 40, 80] {
            at += secs(expected);
            assert!(limiter.check_at("admin", ip("203.0.113.9"), at).is_ok());
            limiter
                .begin_at("admin", ip("203.0.113.9"), at)
                .unwrap()
                .failed();
            let wait = limiter
                .check_at("admin", ip("203.0.113.9"), at)
                .unwrap_err();
            assert_eq!(wait, secs(expected * 2), "after the wait of {expected} s");
        }
        // …at most the window, however long it keeps trying at once.
        for _ in 0..20 {
            at += limiter
                .check_at("admin", ip("203.0.113.9"), at)
                .unwrap_err();
            limiter
                .begin_at("admin", ip("203.0.113.9"), at)
                .unwrap()
                .failed();
        }
        assert_eq!(
            limiter.check_at("admin", ip("203.0.113.9"), at),
            Err(WINDOW)
        );
        // The owner, from any other address, is never held up.
        assert!(limiter.check_at("admin", ip("198.51.100.1"), at).is_ok());
        limiter
            .begin_at("admin", ip("198.51.100.1"), at)
            .unwrap()
            .succeeded();
        // A quiet window after the back-off forgets the guesser's failures.
        let quiet = at + WINDOW * 2;
        assert!(limiter.check_at("admin", ip("203.0.113.9"), quiet).is_ok());
        fail(&limiter, "admin", "203.0.113.9", 3, quiet);
    }

    #[test]
    fn concurrent_guesses_cannot_race_past_the_limit() {
        let limiter = std::sync::Arc::new(LoginLimiter::new(10, 1_000, WINDOW));
        let admitted = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..42 {
                scope.spawn(|| {
                    // The attempts start together and all fail afterwards.
                    if let Ok(attempt) = limiter.begin("victim", ip("10.0.0.1")) {
                        admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        attempt.failed();
                    }
                });
            }
        });
        assert_eq!(admitted.load(std::sync::atomic::Ordering::SeqCst), 10);
    }

    #[test]
    fn the_right_password_refunds_its_attempt() {
        let limiter = LoginLimiter::new(2, 100, WINDOW);
        let t0 = Instant::now();
        for _ in 0..10 {
            limiter
                .begin_at("ci", ip("10.0.0.7"), t0)
                .unwrap()
                .succeeded();
        }
        fail(&limiter, "ci", "10.0.0.7", 2, t0);
        assert!(limiter.check_at("ci", ip("10.0.0.7"), t0).is_err());
        // A check that never ran (busy server) is not held against anyone.
        let limiter = LoginLimiter::new(2, 100, WINDOW);
        for _ in 0..10 {
            limiter.begin_at("ci", ip("10.0.0.7"), t0).unwrap().cancel();
        }
        fail(&limiter, "ci", "10.0.0.7", 2, t0);
    }

    #[test]
    fn an_address_guessing_many_accounts_backs_off_but_not_its_known_owners() {
        let limiter = LoginLimiter::new(10, 3, WINDOW);
        let t0 = Instant::now();
        // Someone behind the NAT logged in before.
        limiter
            .begin_at("builder", ip("192.0.2.7"), t0)
            .unwrap()
            .succeeded();
        for account in ["a", "b", "c"] {
            fail(&limiter, account, "192.0.2.7", 1, t0);
        }
        assert_eq!(limiter.check_at("d", ip("192.0.2.7"), t0), Err(secs(5)));
        assert!(limiter.check_at("d", ip("192.0.2.8"), t0).is_ok());
        // The known owner from that address still gets in.
        limiter
            .begin_at("builder", ip("192.0.2.7"), t0)
            .unwrap()
            .succeeded();
    }

    #[test]
    fn failures_age_out_with_the_real_clock() {
        let limiter = LoginLimiter::new(2, 100, Duration::from_millis(200));
        for _ in 0..2 {
            limiter.begin("alice", ip("10.0.0.1")).unwrap().failed();
        }
        let wait = limiter.check("alice", ip("10.0.0.1")).unwrap_err();
        assert!(wait >= Duration::from_secs(1), "rounded up: {wait:?}");
        std::thread::sleep(Duration::from_millis(250));
        assert!(limiter.check("alice", ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn an_ipv6_slash_64_counts_as_one_source() {
        let limiter = LoginLimiter::new(10, 2, WINDOW);
        let t0 = Instant::now();
        fail(&limiter, "a", "2001:db8:1:2::1", 1, t0);
        fail(&limiter, "b", "2001:db8:1:2:ffff::9", 1, t0);
        assert!(limiter.check_at("c", ip("2001:db8:1:2::42"), t0).is_err());
        assert!(limiter.check_at("c", ip("2001:db8:1:3::1"), t0).is_ok());
        // IPv4-mapped IPv6 is the IPv4 address.
        fail(&limiter, "a", "::ffff:198.51.100.1", 1, t0);
        fail(&limiter, "b", "198.51.100.1", 1, t0);
        assert!(limiter.check_at("c", ip("198.51.100.1"), t0).is_err());
    }

    #[test]
    fn memory_stays_bounded_and_recent_offenders_are_kept() {
        let limiter = LoginLimiter::with_capacity(3, 3, WINDOW, 100);
        let t0 = Instant::now();
        fail(&limiter, "target", "10.9.9.9", 3, t0);
        for i in 0..2_000u32 {
            let at = t0 + Duration::from_millis(u64::from(i));
            let _ = limiter
                .begin_at(&format!("user{i}"), IpAddr::from(i.to_be_bytes()), at)
                .map(Attempt::failed);
            // The attacker keeps trying the target too.
            if i % 10 == 0 {
                let _ = limiter
                    .begin_at("target", ip("10.9.9.9"), at)
                    .map(Attempt::failed);
            }
            assert!(limiter.tracked() <= 100);
        }
        let later = t0 + Duration::from_secs(2);
        assert!(limiter.check_at("target", ip("10.9.9.9"), later).is_err());
        assert!(limiter.check_at("someone", ip("10.9.9.9"), later).is_err());
    }

    #[test]
    fn expired_entries_are_dropped_when_room_is_needed() {
        let limiter = LoginLimiter::with_capacity(3, 3, Duration::from_secs(1), 10);
        let t0 = Instant::now();
        for i in 0..5u32 {
            let source = IpAddr::from(i.to_be_bytes()).to_string();
            fail(&limiter, &format!("old{i}"), &source, 1, t0);
        }
        assert_eq!(limiter.tracked(), 10);
        fail(&limiter, "new", "10.0.0.1", 1, t0 + Duration::from_secs(5));
        assert_eq!(limiter.tracked(), 2);
    }

    #[test]
    fn zero_max_failures_turns_limiting_off() {
        let limiter = LoginLimiter::new(0, 0, WINDOW);
        for _ in 0..10 {
            limiter.begin("alice", ip("10.0.0.1")).unwrap().failed();
        }
        assert!(limiter.check("alice", ip("10.0.0.1")).is_ok());
    }
}
