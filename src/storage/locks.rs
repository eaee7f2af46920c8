//! Exclusive access to upload sessions for backends whose staging area
//! cannot lock by itself (an object store has no locks).
//!
//! `LocalLocks` is exclusive within one process only. A backend shared by
//! several replicas needs a lock that every replica sees (a PostgreSQL
//! advisory lock, for instance): it implements [`SessionLocks`] and is
//! handed to the store in place of `LocalLocks`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::Result;

/// Held while its value lives; dropping it releases the session.
pub type SessionLock = Box<dyn Send + Sync>;

#[async_trait]
pub trait SessionLocks: Send + Sync {
    /// Takes the lock of session `id`, or `None` when someone holds it.
    /// Never waits for the holder.
    async fn try_lock(&self, id: &str) -> Result<Option<SessionLock>>;
}

/// Locks held by this process, in memory.
#[derive(Debug, Clone, Default)]
pub struct LocalLocks {
    held: Arc<Mutex<HashSet<String>>>,
}

struct LocalLock {
    id: String,
    held: Arc<Mutex<HashSet<String>>>,
}

impl Drop for LocalLock {
    fn drop(&mut self) {
        // A poisoned set still holds the right names: a panic elsewhere
        // must not keep sessions locked for good.
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&self.id);
    }
}

#[async_trait]
impl SessionLocks for LocalLocks {
    async fn try_lock(&self, id: &str) -> Result<Option<SessionLock>> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if !held.insert(id.to_string()) {
            return Ok(None);
        }
        Ok(Some(Box::new(LocalLock {
            id: id.to_string(),
            held: self.held.clone(),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_session_is_refused_until_released() {
        let locks = LocalLocks::default();
        let first = locks.try_lock("a").await.unwrap().expect("free");
        assert!(locks.try_lock("a").await.unwrap().is_none());
        assert!(locks.try_lock("b").await.unwrap().is_some());
        drop(first);
        assert!(locks.try_lock("a").await.unwrap().is_some());
    }
}
