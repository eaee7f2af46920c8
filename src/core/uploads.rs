//! Blob uploads: monolithic, POST+PUT, chunked and streamed PATCH, resume,
//! cancel and cross-repository mounts. Sessions live in metadata (shared) and
//! storage (bytes); the running hash kept here is only a shortcut: without
//! it (after a restart, or on another replica) the staged bytes are re-hashed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::{Error, Registry, Result};
use crate::oci::{Algorithm, Digest, Hasher, RepoName};
use crate::storage::ByteStream;

#[derive(Default)]
pub(super) struct LocalState {
    /// Running hash of each session's staged bytes, with the offset it covers.
    hashes: Mutex<HashMap<String, (u64, Hasher)>>,
    /// Sessions with a request in flight: a second concurrent chunk on the
    /// same session is refused instead of interleaving bytes.
    busy: Arc<Mutex<HashSet<String>>>,
}

struct BusyGuard {
    set: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.set.lock().expect("busy set").remove(&self.id);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    pub id: String,
    /// Bytes received so far.
    pub size: u64,
}

impl Registry {
    fn claim(&self, id: &str, current: impl FnOnce() -> u64) -> Result<BusyGuard> {
        let mut busy = self.uploads.busy.lock().expect("busy set");
        if !busy.insert(id.to_string()) {
            return Err(Error::UploadOutOfOrder { current: current() });
        }
        Ok(BusyGuard {
            set: self.uploads.busy.clone(),
            id: id.to_string(),
        })
    }

    /// Opens an upload session.
    pub async fn start_upload(&self, repo: &RepoName) -> Result<UploadStatus> {
        let id = uuid::Uuid::new_v4().to_string();
        self.storage.create(&id).await?;
        self.metadata.create_upload(&id, repo).await?;
        Ok(UploadStatus { id, size: 0 })
    }

    /// Links an existing blob into `repo` without uploading it. Tries `from`
    /// first, then (when auto-mount is on) any repository holding the blob.
    /// Returns the blob's size, or `None` when a regular upload is needed.
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
    ) -> Result<Option<u64>> {
        if let Some(size) = self.metadata.linked_blob_size(repo, digest).await? {
            return Ok(Some(size));
        }
        let mut size = match from {
            Some(from) => self.metadata.linked_blob_size(from, digest).await?,
            None => None,
        };
        if size.is_none() && self.settings.auto_mount {
            if let Some(other) = self.metadata.repositories_with_blob(digest).await?.first() {
                size = self.metadata.linked_blob_size(other, digest).await?;
            }
        }
        let Some(size) = size else { return Ok(None) };
        // The bytes must really be there: metadata alone is not proof.
        if self.storage.stat(digest).await? != Some(size) {
            return Ok(None);
        }
        self.metadata.link_blob(repo, digest, size).await?;
        Ok(Some(size))
    }

    /// `POST ?digest=` with the whole blob as body.
    pub async fn upload_monolithic(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<u64> {
        let id = uuid::Uuid::new_v4().to_string();
        self.storage.create(&id).await?;
        let result = self
            .stream_and_commit(
                repo,
                &id,
                0,
                Some(digest.algorithm().hasher()),
                body,
                digest,
            )
            .await;
        if result.is_err() {
            let _ = self.storage.abort(&id).await;
        }
        result
    }

    async fn session(&self, repo: &RepoName, id: &str) -> Result<u64> {
        if uuid::Uuid::parse_str(id).is_err()
            || self.metadata.upload_repository(id).await?.as_ref() != Some(repo)
        {
            return Err(Error::UploadUnknown);
        }
        match self.storage.size(id).await? {
            Some(size) => Ok(size),
            None => {
                // Staging is gone (the blob was committed just before a crash):
                // the session is over.
                self.metadata.delete_upload(id).await?;
                Err(Error::UploadUnknown)
            }
        }
    }

    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadStatus> {
        let size = self.session(repo, id).await?;
        Ok(UploadStatus {
            id: id.to_string(),
            size,
        })
    }

    fn running_hash(&self, id: &str, offset: u64) -> Option<Hasher> {
        let cached = self.uploads.hashes.lock().expect("hash cache").remove(id);
        match cached {
            Some((at, h)) if at == offset => Some(h),
            _ if offset == 0 => Some(Algorithm::Sha256.hasher()),
            _ => None,
        }
    }

    /// Appends a chunk. `range` is the request's Content-Range (first, last)
    /// and `declared_len` its Content-Length, when given.
    pub async fn upload_chunk(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<(u64, u64)>,
        declared_len: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadStatus> {
        let current = self.session(repo, id).await?;
        let _busy = self.claim(id, || current)?;
        let offset = check_range(current, range, declared_len)?;
        let size = self.append(id, offset, body).await?;
        Ok(UploadStatus {
            id: id.to_string(),
            size,
        })
    }

    async fn append(&self, id: &str, offset: u64, body: ByteStream) -> Result<u64> {
        let hasher = self.running_hash(id, offset);
        let (size, hasher) = self.storage.append(id, offset, body, hasher).await?;
        if let Some(h) = hasher {
            self.uploads
                .hashes
                .lock()
                .expect("hash cache")
                .insert(id.to_string(), (size, h));
        }
        Ok(size)
    }

    /// The closing `PUT ?digest=`, with an optional last chunk.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        range: Option<(u64, u64)>,
        declared_len: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        let current = self.session(repo, id).await?;
        let _busy = self.claim(id, || current)?;
        let offset = check_range(current, range, declared_len)?;
        let hasher = self.running_hash(id, offset);
        let result = self
            .stream_and_commit(repo, id, offset, hasher, body, digest)
            .await;
        match &result {
            Ok(_) | Err(Error::DigestMismatch { .. }) => {
                // Done either way: a digest mismatch stores nothing.
                let _ = self.storage.abort(id).await;
                self.metadata.delete_upload(id).await?;
            }
            Err(_) => {}
        }
        result
    }

    async fn stream_and_commit(
        &self,
        repo: &RepoName,
        id: &str,
        offset: u64,
        hasher: Option<Hasher>,
        body: ByteStream,
        digest: &Digest,
    ) -> Result<u64> {
        let (size, hasher) = self.storage.append(id, offset, body, hasher).await?;
        let actual = match hasher {
            Some(h) if h.algorithm() == digest.algorithm() => h.finish(),
            _ => self.storage.digest(id, digest.algorithm()).await?,
        };
        if &actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        self.storage.commit(id, digest).await?;
        self.metadata.link_blob(repo, digest, size).await?;
        Ok(size)
    }

    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        self.session(repo, id).await?;
        let _busy = self.claim(id, || 0)?;
        self.uploads.hashes.lock().expect("hash cache").remove(id);
        self.storage.abort(id).await?;
        self.metadata.delete_upload(id).await?;
        Ok(())
    }
}

/// Validates a chunk's Content-Range against the session's current size and
/// returns the offset to write at.
fn check_range(current: u64, range: Option<(u64, u64)>, declared_len: Option<u64>) -> Result<u64> {
    let Some((first, last)) = range else {
        return Ok(current);
    };
    if last < first {
        return Err(Error::UploadInvalid(format!(
            "Content-Range {first}-{last} is inverted"
        )));
    }
    if first != current {
        return Err(Error::UploadOutOfOrder { current });
    }
    let expected = last - first + 1;
    match declared_len {
        Some(declared) if declared != expected => Err(Error::SizeInvalid { declared, expected }),
        _ => Ok(current),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_must_continue_the_upload() {
        assert_eq!(check_range(0, None, None).unwrap(), 0);
        assert_eq!(check_range(10, Some((10, 19)), Some(10)).unwrap(), 10);
        assert!(matches!(
            check_range(10, Some((0, 9)), None),
            Err(Error::UploadOutOfOrder { current: 10 })
        ));
        assert!(matches!(
            check_range(10, Some((20, 29)), None),
            Err(Error::UploadOutOfOrder { current: 10 })
        ));
        assert!(matches!(
            check_range(0, Some((0, 9)), Some(5)),
            Err(Error::SizeInvalid { .. })
        ));
        assert!(matches!(
            check_range(0, Some((5, 1)), None),
            Err(Error::UploadInvalid(_))
        ));
    }
}
