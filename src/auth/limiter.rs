//! Failed-login rate limiting, per account and per source address, so that
//! neither guessing one account's password from many addresses nor trying
//! many accounts from one address gets far.
//!
//! State is per process and in memory: with N replicas an attacker gets at
//! most N times the budget, which still bounds guessing. Memory is bounded:
//! each key keeps at most `max_failures` timestamps, account names are kept
//! only as a 64-bit keyed hash, and the table holds at most `capacity` keys,
//! evicting the least recently failed ones first.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Keys tracked at most, by default.
const DEFAULT_CAPACITY: usize = 50_000;

/// Counts failed logins and refuses further attempts past a threshold.
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    capacity: usize,
    account_hasher: RandomState,
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Account(u64),
    Source(IpAddr),
}

impl LoginLimiter {
    /// Refuses an account or source address that failed `max_failures`
    /// times within the last `window`. `max_failures == 0` or a zero window
    /// turns limiting off.
    pub fn new(max_failures: u32, window: Duration) -> LoginLimiter {
        LoginLimiter::with_capacity(max_failures, window, DEFAULT_CAPACITY)
    }

    /// Like [`LoginLimiter::new`], tracking at most `capacity` accounts and
    /// addresses together.
    pub fn with_capacity(max_failures: u32, window: Duration, capacity: usize) -> LoginLimiter {
        LoginLimiter {
            max_failures,
            window,
            capacity: capacity.max(8),
            account_hasher: RandomState::new(),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` when a login attempt for `account` from `source` may go ahead,
    /// otherwise how long until it may (for `Retry-After`).
    pub fn check(&self, account: &str, source: IpAddr) -> Result<(), Duration> {
        self.check_at(account, source, Instant::now())
    }

    /// Counts a failed login against both `account` and `source`.
    pub fn record_failure(&self, account: &str, source: IpAddr) {
        self.record_failure_at(account, source, Instant::now());
    }

    /// Clears `account`'s failures after a successful login. The source's
    /// stay: one good password does not excuse guessing at other accounts.
    pub fn record_success(&self, account: &str, _source: IpAddr) {
        if self.disabled() {
            return;
        }
        let key = self.account_key(account);
        self.lock().remove(&key);
    }

    fn disabled(&self) -> bool {
        self.max_failures == 0 || self.window.is_zero()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, VecDeque<Instant>>> {
        // Every update leaves the map consistent, so a poisoned lock is safe.
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn account_key(&self, account: &str) -> Key {
        Key::Account(self.account_hasher.hash_one(account))
    }

    fn keys(&self, account: &str, source: IpAddr) -> [Key; 2] {
        [
            self.account_key(account),
            Key::Source(source_network(source)),
        ]
    }

    fn check_at(&self, account: &str, source: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.disabled() {
            return Ok(());
        }
        let mut failures = self.lock();
        let mut wait = Duration::ZERO;
        for key in self.keys(account, source) {
            let Some(times) = failures.get_mut(&key) else {
                continue;
            };
            forget_before(times, now, self.window);
            if times.len() >= self.max_failures as usize {
                let oldest = *times.front().expect("non-empty when over the limit");
                wait = wait.max((oldest + self.window).saturating_duration_since(now));
            }
            if times.is_empty() {
                failures.remove(&key);
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            // Never tell a client to retry "in 0 s" while refusing it.
            Err(wait.max(Duration::from_secs(1)))
        }
    }

    fn record_failure_at(&self, account: &str, source: IpAddr, now: Instant) {
        if self.disabled() {
            return;
        }
        let mut failures = self.lock();
        for key in self.keys(account, source) {
            if !failures.contains_key(&key) && failures.len() >= self.capacity {
                self.make_room(&mut failures, now);
            }
            let times = failures.entry(key).or_default();
            forget_before(times, now, self.window);
            times.push_back(now);
            // Only the newest `max_failures` matter to the decision.
            while times.len() > self.max_failures as usize {
                times.pop_front();
            }
        }
    }

    /// Drops keys whose failures have all aged out; when that is not enough,
    /// the least recently failed eighth, so the cost is paid rarely.
    fn make_room(&self, failures: &mut HashMap<Key, VecDeque<Instant>>, now: Instant) {
        failures.retain(|_, times| {
            forget_before(times, now, self.window);
            !times.is_empty()
        });
        if failures.len() < self.capacity {
            return;
        }
        let mut by_age: Vec<(Instant, Key)> = failures
            .iter()
            .map(|(key, times)| (*times.back().expect("empty ones were dropped"), *key))
            .collect();
        by_age.sort_unstable_by_key(|(newest, _)| *newest);
        let excess = failures.len() - self.capacity * 7 / 8;
        for (_, key) in by_age.into_iter().take(excess) {
            failures.remove(&key);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().len()
    }
}

impl fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginLimiter")
            .field("max_failures", &self.max_failures)
            .field("window", &self.window)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

fn forget_before(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        times.pop_front();
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

    const WINDOW: Duration = Duration::from_secs(60);

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_an_account_after_max_failures_from_any_address() {
        let limiter = LoginLimiter::new(3, WINDOW);
        let t0 = Instant::now();
        for (i, source) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().enumerate() {
            assert!(limiter.check_at("alice", ip(source), t0).is_ok(), "{i}");
            limiter.record_failure_at("alice", ip(source), t0 + Duration::from_secs(i as u64));
        }
        let wait = limiter
            .check_at("alice", ip("10.0.0.9"), t0 + Duration::from_secs(10))
            .unwrap_err();
        // The first failure ages out 60 s after t0.
        assert_eq!(wait, Duration::from_secs(50));
        assert!(limiter
            .check_at("bob", ip("10.0.0.9"), t0 + Duration::from_secs(10))
            .is_ok());
        assert!(limiter
            .check_at("alice", ip("10.0.0.9"), t0 + Duration::from_secs(60))
            .is_ok());
    }

    #[test]
    fn refuses_an_address_after_max_failures_on_any_accounts() {
        let limiter = LoginLimiter::new(3, WINDOW);
        let t0 = Instant::now();
        for account in ["a", "b", "c"] {
            limiter.record_failure_at(account, ip("192.0.2.7"), t0);
        }
        assert!(limiter.check_at("d", ip("192.0.2.7"), t0).is_err());
        assert!(limiter.check_at("d", ip("192.0.2.8"), t0).is_ok());
    }

    #[test]
    fn success_clears_the_account_but_not_the_address() {
        let limiter = LoginLimiter::new(2, WINDOW);
        let t0 = Instant::now();
        limiter.record_failure_at("alice", ip("10.0.0.1"), t0);
        limiter.record_failure_at("alice", ip("10.0.0.2"), t0);
        assert!(limiter.check_at("alice", ip("10.0.0.3"), t0).is_err());
        limiter.record_success("alice", ip("10.0.0.3"));
        assert!(limiter.check_at("alice", ip("10.0.0.3"), t0).is_ok());

        limiter.record_failure_at("x", ip("10.0.0.4"), t0);
        limiter.record_failure_at("y", ip("10.0.0.4"), t0);
        limiter.record_success("z", ip("10.0.0.4"));
        assert!(limiter.check_at("z", ip("10.0.0.4"), t0).is_err());
    }

    #[test]
    fn failures_age_out_with_the_real_clock() {
        let limiter = LoginLimiter::new(2, Duration::from_millis(200));
        limiter.record_failure("alice", ip("10.0.0.1"));
        limiter.record_failure("alice", ip("10.0.0.1"));
        let wait = limiter.check("alice", ip("10.0.0.1")).unwrap_err();
        assert!(wait >= Duration::from_secs(1), "rounded up: {wait:?}");
        std::thread::sleep(Duration::from_millis(250));
        assert!(limiter.check("alice", ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn an_ipv6_slash_64_counts_as_one_source() {
        let limiter = LoginLimiter::new(2, WINDOW);
        let t0 = Instant::now();
        limiter.record_failure_at("a", ip("2001:db8:1:2::1"), t0);
        limiter.record_failure_at("b", ip("2001:db8:1:2:ffff::9"), t0);
        assert!(limiter.check_at("c", ip("2001:db8:1:2::42"), t0).is_err());
        assert!(limiter.check_at("c", ip("2001:db8:1:3::1"), t0).is_ok());
        // IPv4-mapped IPv6 is the IPv4 address.
        limiter.record_failure_at("a", ip("::ffff:198.51.100.1"), t0);
        limiter.record_failure_at("b", ip("198.51.100.1"), t0);
        assert!(limiter.check_at("c", ip("198.51.100.1"), t0).is_err());
    }

    #[test]
    fn memory_stays_bounded_and_recent_offenders_are_kept() {
        let limiter = LoginLimiter::with_capacity(3, WINDOW, 100);
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.record_failure_at("target", ip("10.9.9.9"), t0);
        }
        for i in 0..2_000u32 {
            let at = t0 + Duration::from_millis(u64::from(i));
            limiter.record_failure_at(&format!("user{i}"), IpAddr::from(i.to_be_bytes()), at);
            // The attacker keeps trying the target too.
            if i % 10 == 0 {
                limiter.record_failure_at("target", ip("10.9.9.9"), at);
            }
            assert!(limiter.tracked() <= 100);
        }
        let later = t0 + Duration::from_secs(2);
        assert!(limiter.check_at("target", ip("10.1.1.1"), later).is_err());
        assert!(limiter.check_at("someone", ip("10.9.9.9"), later).is_err());
    }

    #[test]
    fn expired_entries_are_dropped_when_room_is_needed() {
        let limiter = LoginLimiter::with_capacity(3, Duration::from_secs(1), 10);
        let t0 = Instant::now();
        for i in 0..5u32 {
            limiter.record_failure_at(&format!("old{i}"), IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(limiter.tracked(), 10);
        let later = t0 + Duration::from_secs(5);
        limiter.record_failure_at("new", ip("10.0.0.1"), later);
        assert_eq!(limiter.tracked(), 2);
    }

    #[test]
    fn zero_max_failures_turns_limiting_off() {
        let limiter = LoginLimiter::new(0, WINDOW);
        for _ in 0..10 {
            limiter.record_failure("alice", ip("10.0.0.1"));
        }
        assert!(limiter.check("alice", ip("10.0.0.1")).is_ok());
    }
}
