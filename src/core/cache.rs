//! Read cache for the two hottest lookups (manifest by reference, blob size
//! by repository). Entries are tagged with a write generation: every write
//! that can change an answer bumps it, and an entry read before the bump is
//! never served after it, so in one process the cache is exact. Across
//! replicas (shared metadata) entries also expire after `max_age`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use crate::metadata::{LinkedBlob, ManifestRecord};

#[derive(Clone)]
struct Entry<T> {
    generation: u64,
    at: Instant,
    value: T,
}

#[derive(Clone)]
struct ManifestWeight;

impl Weighter<String, Entry<ManifestRecord>> for ManifestWeight {
    fn weight(&self, key: &String, e: &Entry<ManifestRecord>) -> u64 {
        (key.len() + e.value.content.len() + e.value.media_type.len() + 128) as u64
    }
}

pub(super) struct ReadCache {
    generation: AtomicU64,
    max_age: Duration,
    manifests: Cache<String, Entry<ManifestRecord>, ManifestWeight>,
    blobs: Cache<String, Entry<LinkedBlob>>,
}

/// The cache generation observed before a database read.
#[derive(Clone, Copy)]
pub(super) struct Ticket(u64);

const MANIFEST_BYTES: u64 = 64 * 1024 * 1024;
const BLOB_ENTRIES: usize = 100_000;

impl ReadCache {
    pub fn new(max_age: Duration) -> ReadCache {
        ReadCache {
            generation: AtomicU64::new(0),
            max_age,
            manifests: Cache::with_weighter(16_384, MANIFEST_BYTES, ManifestWeight),
            blobs: Cache::new(BLOB_ENTRIES),
        }
    }

    pub fn key(repo: &str, item: &impl std::fmt::Display) -> String {
        format!("{repo}\0{item}")
    }

    pub fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::Acquire))
    }

    /// Call after every committed write that may change a cached answer.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn fresh<T: Clone>(&self, e: Entry<T>) -> Option<T> {
        (e.generation == self.generation.load(Ordering::Acquire) && e.at.elapsed() < self.max_age)
            .then_some(e.value)
    }

    pub fn manifest(&self, key: &str) -> Option<ManifestRecord> {
        self.manifests.get(key).and_then(|e| self.fresh(e))
    }

    pub fn blob(&self, key: &str) -> Option<LinkedBlob> {
        self.blobs.get(key).and_then(|e| self.fresh(e))
    }

    pub fn put_manifest(&self, key: String, ticket: Ticket, value: ManifestRecord) {
        if !self.max_age.is_zero() {
            let entry = Entry {
                generation: ticket.0,
                at: Instant::now(),
                value,
            };
            self.manifests.insert(key, entry);
        }
    }

    pub fn put_blob(&self, key: String, ticket: Ticket, value: LinkedBlob) {
        if !self.max_age.is_zero() {
            self.blobs.insert(
                key,
                Entry {
                    generation: ticket.0,
                    at: Instant::now(),
                    value,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(size: u64) -> LinkedBlob {
        LinkedBlob {
            size,
            touched_at: 0,
        }
    }

    #[test]
    fn entries_read_before_a_write_are_never_served_after_it() {
        let cache = ReadCache::new(Duration::from_secs(60));
        let before = cache.ticket();
        cache.invalidate(); // a write commits while the read is in flight
        cache.put_blob("k".into(), before, blob(1));
        assert_eq!(cache.blob("k"), None);
        let after = cache.ticket();
        cache.put_blob("k".into(), after, blob(2));
        assert_eq!(cache.blob("k"), Some(blob(2)));
        cache.invalidate();
        assert_eq!(cache.blob("k"), None);
    }

    #[test]
    fn zero_max_age_disables_caching() {
        let cache = ReadCache::new(Duration::ZERO);
        cache.put_blob("k".into(), cache.ticket(), blob(1));
        assert_eq!(cache.blob("k"), None);
    }
}
