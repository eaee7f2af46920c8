//! Remembers successful credential checks for a short while, so that HTTP
//! Basic auth does not pay for argon2/bcrypt on every request.
//!
//! Entries are keyed by HMAC-SHA256 under a random key drawn when the cache
//! is created, over the user name (length-prefixed) and the secret: the
//! plaintext secret is never stored, and the key dies with the process, so
//! a memory dump yields nothing to test guesses against offline. Entries
//! live for the TTL, [`CredentialCache::invalidate_user`] drops a user's at
//! once (password changed, token revoked, account disabled), and the cache
//! holds a bounded number of entries.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;

/// Entries kept at most, by default.
const DEFAULT_CAPACITY: usize = 10_000;

/// A keyed hash standing for a `(user, secret)` pair or a user.
pub type Tag = [u8; 32];

/// A cache of verified `(user, secret)` pairs and what they resolved to.
pub struct CredentialCache<T: Clone> {
    key: [u8; 32],
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<Tag, Entry<T>>>,
}

struct Entry<T> {
    user: Tag,
    expires: Instant,
    value: T,
}

impl<T: Clone> CredentialCache<T> {
    /// A cache whose entries live for `ttl`; a zero `ttl` turns it off.
    pub fn new(ttl: Duration) -> CredentialCache<T> {
        CredentialCache::with_capacity(ttl, DEFAULT_CAPACITY)
    }

    /// Like [`CredentialCache::new`], holding at most `capacity` entries.
    pub fn with_capacity(ttl: Duration, capacity: usize) -> CredentialCache<T> {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        CredentialCache {
            key,
            ttl,
            capacity: capacity.max(8),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// What `user` with `secret` resolved to, if verified within the TTL.
    pub fn get(&self, user: &str, secret: &str) -> Option<T> {
        self.get_at(user, secret, Instant::now())
    }

    /// Remembers that `user` with `secret` verified as `value`.
    pub fn put(&self, user: &str, secret: &str, value: T) {
        self.put_at(user, secret, value, Instant::now());
    }

    /// Forgets every cached verification of `user`.
    pub fn invalidate_user(&self, user: &str) {
        let tag = self.user_tag(user);
        self.lock().retain(|_, entry| entry.user != tag);
    }

    /// Forgets everything (e.g. after the accounts were reloaded).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// How many entries are held, expired ones included until evicted.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Tag, Entry<T>>> {
        // Every update leaves the map consistent, so a poisoned lock is safe.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// HMAC(key, 0x00 || len(user) || user || 0x00 || secret): the length
    /// keeps `("a\0b", "c")` apart from `("a", "b\0c")`. Also what other
    /// per-login state is keyed by, so that it never holds a secret.
    pub fn entry_tag(&self, user: &str, secret: &str) -> Tag {
        let mut mac = self.mac();
        mac.update(&[0]);
        mac.update(&(user.len() as u64).to_be_bytes());
        mac.update(user.as_bytes());
        mac.update(&[0]);
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn user_tag(&self, user: &str) -> Tag {
        let mut mac = self.mac();
        mac.update(&[1]);
        mac.update(user.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn get_at(&self, user: &str, secret: &str, now: Instant) -> Option<T> {
        if self.ttl.is_zero() {
            return None;
        }
        let tag = self.entry_tag(user, secret);
        let mut entries = self.lock();
        let entry = entries.get(&tag)?;
        if entry.expires <= now {
            entries.remove(&tag);
            return None;
        }
        Some(entry.value.clone())
    }

    fn put_at(&self, user: &str, secret: &str, value: T, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let tag = self.entry_tag(user, secret);
        let entry = Entry {
            user: self.user_tag(user),
            expires: now + self.ttl,
            value,
        };
        let mut entries = self.lock();
        if !entries.contains_key(&tag) && entries.len() >= self.capacity {
            self.make_room(&mut entries, now);
        }
        entries.insert(tag, entry);
    }

    /// Drops expired entries; when that is not enough, the eighth closest
    /// to expiry, so the cost is paid rarely.
    fn make_room(&self, entries: &mut HashMap<Tag, Entry<T>>, now: Instant) {
        entries.retain(|_, entry| entry.expires > now);
        if entries.len() < self.capacity {
            return;
        }
        let mut by_expiry: Vec<(Instant, Tag)> =
            entries.iter().map(|(tag, e)| (e.expires, *tag)).collect();
        by_expiry.sort_unstable_by_key(|(expires, _)| *expires);
        let excess = entries.len() - self.capacity * 7 / 8;
        for (_, tag) in by_expiry.into_iter().take(excess) {
            entries.remove(&tag);
        }
    }
}

impl<T: Clone> fmt::Debug for CredentialCache<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialCache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn remembers_only_the_exact_user_and_secret() {
        let cache = CredentialCache::new(TTL);
        cache.put("alice", "s3cret", 1);
        assert_eq!(cache.get("alice", "s3cret"), Some(1));
        assert_eq!(cache.get("alice", "s3cret "), None);
        assert_eq!(cache.get("alice", ""), None);
        assert_eq!(cache.get("bob", "s3cret"), None);
        assert_eq!(cache.get("Alice", "s3cret"), None);
    }

    #[test]
    fn user_and_secret_boundaries_cannot_be_shifted() {
        let cache = CredentialCache::new(TTL);
        cache.put("a\0b", "c", "ab");
        assert_eq!(cache.get("a", "b\0c"), None);
        assert_eq!(cache.get("a\0b\0c", ""), None);
        assert_eq!(cache.get("a\0b", "c"), Some("ab"));
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = CredentialCache::new(TTL);
        let t0 = Instant::now();
        cache.put_at("alice", "pw", 1, t0);
        assert_eq!(
            cache.get_at("alice", "pw", t0 + TTL - Duration::from_secs(1)),
            Some(1)
        );
        assert_eq!(cache.get_at("alice", "pw", t0 + TTL), None);
        assert!(cache.is_empty(), "expired entry dropped on lookup");
    }

    #[test]
    fn entries_expire_with_the_real_clock() {
        let cache = CredentialCache::new(Duration::from_millis(100));
        cache.put("alice", "pw", 1);
        assert_eq!(cache.get("alice", "pw"), Some(1));
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(cache.get("alice", "pw"), None);
    }

    #[test]
    fn invalidating_a_user_drops_all_their_secrets_only() {
        let cache = CredentialCache::new(TTL);
        cache.put("alice", "password", 1);
        cache.put("alice", "berth_pat_token", 2);
        cache.put("bob", "password", 3);
        cache.invalidate_user("alice");
        assert_eq!(cache.get("alice", "password"), None);
        assert_eq!(cache.get("alice", "berth_pat_token"), None);
        assert_eq!(cache.get("bob", "password"), Some(3));
        cache.clear();
        assert_eq!(cache.get("bob", "password"), None);
    }

    #[test]
    fn size_stays_bounded_keeping_the_newest() {
        let cache = CredentialCache::with_capacity(TTL, 16);
        let t0 = Instant::now();
        for i in 0..200u64 {
            cache.put_at(&format!("user{i}"), "pw", i, t0 + Duration::from_millis(i));
            assert!(cache.len() <= 16);
        }
        let now = t0 + Duration::from_millis(200);
        assert_eq!(cache.get_at("user199", "pw", now), Some(199));
        assert_eq!(cache.get_at("user0", "pw", now), None);
    }

    #[test]
    fn zero_ttl_turns_the_cache_off() {
        let cache = CredentialCache::new(Duration::ZERO);
        cache.put("alice", "pw", 1);
        assert_eq!(cache.get("alice", "pw"), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn secrets_are_not_kept_and_keys_differ_per_cache() {
        let a = CredentialCache::<u8>::new(TTL);
        let b = CredentialCache::<u8>::new(TTL);
        assert_ne!(a.entry_tag("alice", "pw"), b.entry_tag("alice", "pw"));
        a.put("alice", "hunter2", 1);
        let debug = format!("{a:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("alice"),
            "{debug}"
        );
    }
}
