//! Registry services: the rules of the OCI Distribution API on top of the
//! storage and metadata contracts. No HTTP and no SQL here: the API layer
//! parses requests into these calls and maps `Error` to OCI error bodies.

mod blobs;
mod browse;
mod cache;
mod expiry;
mod gc;
mod manifests;
mod policy;
mod pulls;
mod retention;
mod scrub;
mod uploads;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::metadata::{MetadataError, RegistryStore};
use crate::oci::Digest;
use crate::storage::{Storage, StorageError};

pub use blobs::{BlobBody, ByteRange};
pub use browse::Browser;
pub use expiry::Expired;
pub use gc::LEASE as GC_LEASE;
pub use manifests::{ListPage, PutManifest};
pub use policy::{RepoPreview, RetentionPreview};
pub use uploads::{ChunkHeaders, UploadStatus};

/// Service-level settings (a slice of the server configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_manifest_bytes: usize,
    /// Most descriptors one manifest may list.
    pub max_manifest_descriptors: usize,
    /// Mount an existing blob on `POST ?mount=` even without (or with a wrong) `from`.
    pub auto_mount: bool,
    /// How long a cached manifest or blob lookup may be served (zero: no cache).
    pub cache_max_age: Duration,
    /// Garbage collection keeps blobs and links touched this recently.
    pub gc_grace: Duration,
    /// Bytes a scrub reads per second at most (0: no limit).
    pub scrub_rate: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_manifest_bytes: 4 * 1024 * 1024,
            max_manifest_descriptors: 10_000,
            auto_mount: true,
            cache_max_age: Duration::from_secs(60),
            gc_grace: Duration::from_secs(3600),
            scrub_rate: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("blob unknown to this repository")]
    BlobUnknown,
    #[error("upload session unknown (finished, cancelled or never started)")]
    UploadUnknown,
    #[error("upload is at offset {current}; chunks must be sent in order")]
    UploadOutOfOrder { current: u64 },
    #[error("{0}")]
    UploadInvalid(String),
    #[error("content-length {declared} does not match the range's {expected} bytes")]
    SizeInvalid { declared: u64, expected: u64 },
    #[error("uploaded content has digest {actual}, not {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("requested range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("manifest unknown")]
    ManifestUnknown,
    #[error("stored manifest is {media_type}, which the request's Accept header does not allow")]
    ManifestNotAcceptable { media_type: String },
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("manifest references {0}, which is not in this repository")]
    ManifestBlobUnknown(Digest),
    #[error("manifest is larger than the {limit}-byte limit")]
    ManifestTooLarge { limit: usize },
    #[error("repository name not known to registry")]
    NameUnknown,
    /// A setting given to the registry is malformed.
    #[error("{0}")]
    Invalid(String),
    /// A project rule refuses the write (quota, tag immutability).
    #[error("{0}")]
    Denied(String),
    /// Try again shortly (a blob is being removed by garbage collection).
    #[error("{0}")]
    Unavailable(String),
    #[error("another process took over this garbage-collection run")]
    GcLeaseLost,
    #[error(transparent)]
    Storage(StorageError),
    #[error(transparent)]
    Metadata(MetadataError),
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::UploadNotFound => Error::UploadUnknown,
            other => Error::Storage(other),
        }
    }
}

impl From<MetadataError> for Error {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::MissingReference(d) => Error::ManifestBlobUnknown(d),
            e @ MetadataError::SizeMismatch { .. } => Error::ManifestInvalid(e.to_string()),
            e @ (MetadataError::QuotaExceeded { .. } | MetadataError::ImmutableTag { .. }) => {
                Error::Denied(e.to_string())
            }
            e @ MetadataError::BlobDeleting(_) => {
                Error::Unavailable(format!("{e}; retry the upload"))
            }
            other => Error::Metadata(other),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The registry: one instance per process, shared by every request.
pub struct Registry {
    storage: Arc<dyn Storage>,
    metadata: Arc<dyn RegistryStore>,
    settings: Settings,
    uploads: uploads::LocalState,
    cache: cache::ReadCache,
    pulls: pulls::PullRecorder,
    gc_wake: tokio::sync::Notify,
    scrub_wake: tokio::sync::Notify,
    /// The metadata's repository-deletion count last seen (`UNSEEN` at first).
    removals_seen: AtomicI64,
}

const UNSEEN: i64 = i64::MIN;

impl Registry {
    pub fn new(
        storage: Arc<dyn Storage>,
        metadata: Arc<dyn RegistryStore>,
        settings: Settings,
    ) -> Registry {
        Registry {
            cache: cache::ReadCache::new(settings.cache_max_age),
            pulls: pulls::PullRecorder::start(metadata.clone()),
            gc_wake: tokio::sync::Notify::new(),
            scrub_wake: tokio::sync::Notify::new(),
            removals_seen: AtomicI64::new(UNSEEN),
            storage,
            metadata,
            settings,
            uploads: uploads::LocalState::default(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Drops every cached lookup, after a write made elsewhere (a project
    /// deleted with its repositories) changed what they would answer.
    pub fn forget_cached(&self) {
        self.cache.invalidate();
    }

    /// Drops every cached lookup when a repository was deleted since the
    /// last call, by whatever process (the CLI's `berth repo del` beside a
    /// running server). Returns whether it did.
    pub async fn follow_removals(&self) -> Result<bool> {
        let now = self.metadata.removals().await?;
        let before = self.removals_seen.swap(now, Ordering::AcqRel);
        let moved = before != UNSEEN && before != now;
        if moved {
            self.cache.invalidate();
        }
        Ok(moved)
    }

    /// Whether both backends answer (readiness); otherwise which one does
    /// not. Storage is asked for a blob's size (the empty blob's: whether it
    /// exists does not matter), which an object store answers with a HEAD.
    pub async fn ready(&self) -> Result<(), &'static str> {
        // A probe must answer in time: a backend that hangs is not ready.
        const WITHIN: std::time::Duration = std::time::Duration::from_secs(3);
        let ping = tokio::time::timeout(WITHIN, self.metadata.ping()).await;
        if let Some(e) = ping.map_or(Some("no answer in 3 s".to_string()), |r| {
            r.err().map(|e| e.to_string())
        }) {
            tracing::warn!(error = %e, "not ready: the metadata backend does not answer");
            return Err("metadata backend unavailable");
        }
        let stat = tokio::time::timeout(WITHIN, self.storage.stat(&Digest::sha256_of(b""))).await;
        if let Some(e) = stat.map_or(Some("no answer in 3 s".to_string()), |r| {
            r.err().map(|e| e.to_string())
        }) {
            tracing::warn!(error = %e, "not ready: blob storage does not answer");
            return Err("blob storage unavailable");
        }
        Ok(())
    }
}
