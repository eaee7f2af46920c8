//! Removal of abandoned uploads: sessions idle longer than the TTL, with
//! their staged bytes, and staged bytes that no session owns (a monolithic
//! upload cut short by a crash, a session row lost with its transaction).
//!
//! Safe beside live uploads: staged bytes are removed only while this pass
//! holds their lock, so a request that is writing them (a PATCH, a
//! monolithic POST) makes the pass skip them; a session that a client
//! touches after it was removed answers `BLOB_UPLOAD_UNKNOWN`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Registry, Result};
use crate::storage::StorageError;

/// Staged bytes without a session row are left alone this long: a session's
/// bytes are created just before its row, and a monolithic upload has no row.
const ORPHAN_GRACE: Duration = Duration::from_secs(60);

/// What one pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    /// Sessions idle past the TTL, removed with their bytes.
    pub sessions: u64,
    /// Staged bytes that no session owned, removed.
    pub orphans: u64,
    /// Bytes freed by both.
    pub bytes: u64,
    /// Staged bytes skipped because a request holds them.
    pub busy: u64,
}

impl Registry {
    /// Removes upload sessions whose bytes have not changed for `ttl`, and
    /// staged bytes older than a minute that no session owns.
    pub async fn expire_uploads(&self, ttl: Duration) -> Result<Expired> {
        let now = SystemTime::now();
        let idle_for = |t: SystemTime| now.duration_since(t).unwrap_or_default();
        let mut staged: HashMap<String, (u64, SystemTime)> = self
            .storage
            .staged()
            .await?
            .into_iter()
            .map(|s| (s.id, (s.size, s.modified)))
            .collect();
        let mut done = Expired::default();
        for (id, created_ms) in self.metadata.list_uploads().await? {
            match staged.remove(&id) {
                Some((size, modified)) if idle_for(modified) > ttl => {
                    if self.remove_staged(&id, size, &mut done).await? {
                        self.metadata.delete_upload(&id).await?;
                        done.sessions += 1;
                    }
                }
                Some(_) => {}
                None => {
                    // A session without bytes can never finish; its bytes may
                    // only be on their way (created before the row), hence the grace.
                    let created = UNIX_EPOCH + Duration::from_millis(created_ms.max(0) as u64);
                    if idle_for(created) > ORPHAN_GRACE {
                        self.metadata.delete_upload(&id).await?;
                        done.sessions += 1;
                    }
                }
            }
        }
        for (id, (size, modified)) in staged {
            if idle_for(modified) > ORPHAN_GRACE.min(ttl)
                && self.remove_staged(&id, size, &mut done).await?
            {
                done.orphans += 1;
            }
        }
        Ok(done)
    }

    /// Removes one session's staged bytes unless a request holds them.
    async fn remove_staged(&self, id: &str, size: u64, done: &mut Expired) -> Result<bool> {
        match self.storage.open_upload(id).await {
            Ok(held) => {
                held.abort().await?;
                self.uploads.hashes.lock().expect("hash cache").remove(id);
                done.bytes += size;
                Ok(true)
            }
            Err(StorageError::Busy) => {
                done.busy += 1;
                Ok(false)
            }
            // Committed or removed meanwhile: nothing left to free.
            Err(StorageError::UploadNotFound) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }
}
