//! Content-addressed blob storage.
//!
//! Contract: a blob is addressed by its digest only. `BlobRead` serves bytes
//! (whole or ranged) as a stream; `UploadStore` stages bytes of an upload
//! session and `commit`s them, which makes the bytes durable (fsync) *before*
//! the blob becomes visible under its digest (atomic rename). A crash at any
//! point leaves either no blob or a complete one, plus staging garbage.
//! Memory use never depends on blob size. Which repository may serve which
//! blob is not decided here: that is the metadata layer's links.
//!
//! Every backend must pass the shared suite in `storage::suite`. Backends:
//! the filesystem (`fs`, the embedded default) and S3 (`s3`).

mod config;
mod fs;
mod locks;
mod mapped;
mod s3;
#[cfg(test)]
mod suite;
/// The test S3 servers (shared with the integration tests).
#[cfg(test)]
#[path = "../../tests/support/s3.rs"]
pub(crate) mod test_s3;

use std::io;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

use crate::oci::{Algorithm, Digest, Hasher};

#[cfg(test)]
pub(crate) use config::test_config;
pub use config::{S3Config, StorageConfig, StorageKind};
pub use fs::{lock_data_dir, FsStore};
pub use locks::{LocalLocks, SessionLock, SessionLocks};
pub use s3::S3Store;

pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;
/// Digests of committed blobs, produced as the backend reads them.
pub type DigestStream = Pin<Box<dyn Stream<Item = Result<Digest>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob not found")]
    NotFound,
    #[error("upload session not found")]
    UploadNotFound,
    #[error("upload session is in use by another request")]
    Busy,
    #[error("request body: {0}")]
    Body(io::Error),
    #[error("storage I/O: {0}")]
    Io(#[from] io::Error),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Reads committed blobs.
#[async_trait]
pub trait BlobRead: Send + Sync {
    /// Size of a committed blob, or `None`.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;
    /// The blob's bytes; `range` is (offset, length) and must lie inside it.
    async fn get(&self, digest: &Digest, range: Option<(u64, u64)>) -> Result<ByteStream>;
    /// A URL from which a client may fetch the blob directly for `ttl` (an
    /// object store's presigned URL), when the backend can offer one; the
    /// registry then answers a pull with a redirect instead of the bytes.
    /// By default there is none and the bytes go through the registry.
    async fn redirect_url(&self, _digest: &Digest, _ttl: Duration) -> Result<Option<String>> {
        Ok(None)
    }
}

/// Removes and enumerates committed blobs (garbage collection, scrub).
#[async_trait]
pub trait BlobAdmin: Send + Sync {
    async fn delete(&self, digest: &Digest) -> Result<()>;
    /// Deletes many blobs, each one's outcome in order. An object store
    /// makes it one request per batch (S3 `DeleteObjects`, 1,000 keys);
    /// by default, one deletion after another.
    async fn delete_batch(&self, digests: &[Digest]) -> Vec<Result<()>> {
        let mut outcomes = Vec::with_capacity(digests.len());
        for d in digests {
            outcomes.push(self.delete(d).await);
        }
        outcomes
    }
    /// Moves a corrupt blob's bytes out of the way (kept for inspection,
    /// never served), so that a new upload of the digest stores fresh ones.
    async fn quarantine(&self, digest: &Digest) -> Result<()>;
    /// Every committed blob, streamed: memory does not grow with the store.
    fn list(&self) -> DigestStream;
}

/// Staging area of upload sessions.
#[async_trait]
pub trait UploadStore: Send + Sync {
    async fn create(&self, id: &str) -> Result<()>;
    /// Bytes staged so far, or `None` when the session has no staging data.
    async fn size(&self, id: &str) -> Result<Option<u64>>;
    /// Exclusive access to a session's staged bytes, held until the handle
    /// is dropped, committed or aborted. Exclusive across tasks, processes
    /// and replicas sharing the store: a second opener gets `Busy`.
    async fn open_upload(&self, id: &str) -> Result<Box<dyn StagedUpload>>;
    /// Every session with staged bytes, in no particular order (for the
    /// worker that removes abandoned ones).
    async fn staged(&self) -> Result<Vec<Staged>>;
}

/// A session's staged bytes, as the staging area lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub id: String,
    pub size: u64,
    /// When bytes were last added (or the session created).
    pub modified: SystemTime,
}

/// An upload session's staged bytes, held exclusively.
#[async_trait]
pub trait StagedUpload: Send {
    /// Bytes staged so far.
    fn size(&self) -> u64;
    /// Appends `body`, feeding every byte to `hasher` as it goes, and hands
    /// the hasher back. On error, the bytes written so far may stay staged
    /// (the filesystem keeps them) or not (an object store adds an append
    /// whole or not at all): `size` says which.
    async fn append(&mut self, body: ByteStream, hasher: Option<Hasher>) -> Result<Option<Hasher>>;
    /// Digest of the staged bytes, read back from the staging area.
    async fn digest(&mut self, algorithm: Algorithm) -> Result<Digest>;
    /// Makes the staged bytes durable, then visible as blob `digest`.
    /// The caller has verified the digest; the staging is consumed.
    async fn commit(self: Box<Self>, digest: &Digest) -> Result<u64>;
    /// Discards the staged bytes.
    async fn abort(self: Box<Self>) -> Result<()>;
}

/// Everything a registry needs from a storage backend.
pub trait Storage: BlobRead + BlobAdmin + UploadStore {}
impl<T: BlobRead + BlobAdmin + UploadStore> Storage for T {}
