//! S3 backend (any S3-compatible object store, through `object_store`).
//!
//! Keys, under the configured prefix: `blobs/<alg>/<2 hex>/<hex>` for
//! committed blobs, `quarantine/<alg>/<hex>` for corrupt ones, and per
//! upload session `uploads/<id>/created` (its marker: the session exists
//! while it does) and `uploads/<id>/seg/<offset>`, one object per append.
//!
//! An append streams its body into its own segment object (multipart, in
//! parts of at least 5 MiB whatever the client's chunk sizes, so memory is
//! a part or two per upload); the segment exists only once the store has
//! acknowledged all of it, so a failed append adds nothing. Everything about
//! a session is in the bucket: another process or replica resumes it by
//! listing its segments. A commit copies (one segment) or streams the
//! segments in order into the blob's key; the blob appears whole when the
//! store acknowledges it, never in part.
//!
//! Exclusive access to a session comes from a [`SessionLocks`]: by default
//! [`LocalLocks`], exclusive within this process only. Replicas sharing a
//! bucket need a lock they all see (the PostgreSQL backend's), given with
//! [`S3Store::with_locks`]; S3 itself offers none that every server honours
//! (Garage ignores conditional writes).

mod parts;
#[cfg(test)]
mod tests;
mod uploads;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use super::config::StorageConfig;
use super::locks::{LocalLocks, SessionLocks};
use super::{BlobAdmin, BlobRead, ByteStream, DigestStream, Result, StorageError};
use crate::oci::Digest;

/// Size of an upload part (S3 wants at least 5 MiB for all but the last).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// How long the store may take to answer at start.
const PROBE_WITHIN: Duration = Duration::from_secs(15);
/// Keys per `DeleteObjects` request: S3's maximum.
const DELETE_BATCH: usize = 1000;

#[derive(Clone)]
pub struct S3Store {
    s3: AmazonS3,
    /// `""` or a prefix ending in `/`.
    prefix: String,
    locks: Arc<dyn SessionLocks>,
    redirect_pulls: bool,
    part_size: usize,
    /// The data directory's lock, when this process must be its only user
    /// (its SQLite metadata assumes no other writer).
    _owner: Option<Arc<std::fs::File>>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Store({}, prefix {:?})", self.s3, self.prefix)
    }
}

impl S3Store {
    /// Connects to the bucket of `config.s3` and checks that it answers.
    pub async fn open(config: &StorageConfig) -> io::Result<S3Store> {
        let s3 = &config.s3;
        // The HTTP client's TLS uses the process's default provider: ring,
        // as everywhere in berth. Already installed is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Unset settings fall back to the standard AWS_* sources.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&s3.bucket)
            .with_region(&s3.region)
            .with_virtual_hosted_style_request(!s3.path_style)
            .with_client_options(
                ClientOptions::new()
                    // A download to a slow client may take hours; a stalled
                    // connection is what must end.
                    .with_timeout_disabled()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_read_timeout(Duration::from_secs(120)),
            )
            // A store that does not answer fails a request within seconds
            // (and /readyz says so), instead of object_store's default of
            // retrying for up to three minutes.
            .with_retry(object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(15),
                backoff: Default::default(),
            })
            // After the client options, which would reset it.
            .with_allow_http(s3.allow_http);
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let (Some(id), Some(secret)) = (&s3.access_key_id, s3.secret_key()?) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let store = S3Store {
            s3: builder
                .build()
                .map_err(|e| io::Error::other(format!("storage.s3: {e}")))?,
            prefix: normalized_prefix(&s3.prefix),
            locks: Arc::new(LocalLocks::default()),
            redirect_pulls: config.redirect_pulls,
            part_size: PART_SIZE,
            _owner: None,
        };
        store.probe(&s3.bucket).await?;
        Ok(store)
    }

    /// Uses `locks` for the exclusivity of upload sessions.
    pub fn with_locks(mut self, locks: Arc<dyn SessionLocks>) -> S3Store {
        self.locks = locks;
        self
    }

    /// Keeps the data directory's lock for as long as the store lives.
    pub fn holding(mut self, owner: std::fs::File) -> S3Store {
        self._owner = Some(Arc::new(owner));
        self
    }

    /// One request that needs the bucket and valid credentials, so that a
    /// wrong setting fails at start, in one line, not at the first push.
    async fn probe(&self, bucket: &str) -> io::Result<()> {
        // The client retries for minutes what may be a passing failure;
        // at start, an answer is due soon.
        let probe = self.key("berth-probe");
        let head = self.s3.head(&probe);
        match tokio::time::timeout(PROBE_WITHIN, head).await {
            Ok(Ok(_) | Err(object_store::Error::NotFound { .. })) => Ok(()),
            Ok(Err(e)) => Err(io::Error::other(format!(
                "storage.s3: bucket {bucket:?} does not answer: {e}"
            ))),
            Err(_) => Err(io::Error::other(format!(
                "storage.s3: bucket {bucket:?} did not answer within {PROBE_WITHIN:?}"
            ))),
        }
    }

    fn key(&self, rest: &str) -> Path {
        Path::from(format!("{}{rest}", self.prefix))
    }

    fn blob_key(&self, d: &Digest) -> Path {
        // Digest is a validated newtype (algorithm name + fixed-length hex):
        // it cannot reach outside `blobs/`.
        let (alg, hex) = (d.algorithm().as_str(), d.hex());
        self.key(&format!("blobs/{alg}/{}/{hex}", &hex[..2]))
    }

    fn quarantine_key(&self, d: &Digest) -> Path {
        self.key(&format!(
            "quarantine/{}/{}",
            d.algorithm().as_str(),
            d.hex()
        ))
    }

    /// Deletes `keys` in `DeleteObjects` batches; each key's outcome in
    /// order. A key that is already gone is no error.
    async fn delete_keys(&self, keys: Vec<Path>) -> Vec<Result<()>> {
        let mut outcomes = Vec::with_capacity(keys.len());
        let mut keys = keys.into_iter().peekable();
        while keys.peek().is_some() {
            let batch: Vec<Path> = keys.by_ref().take(DELETE_BATCH).collect();
            let wanted = batch.len();
            let input = futures_util::stream::iter(batch.into_iter().map(Ok)).boxed();
            let results: Vec<_> = self.s3.delete_stream(input).collect().await;
            if results.len() == wanted {
                outcomes.extend(results.into_iter().map(|r| match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(io_error(e)),
                }));
            } else {
                // The request as a whole failed: so did every deletion in it.
                let reason = results
                    .into_iter()
                    .find_map(|r| r.err())
                    .map_or_else(|| "DeleteObjects failed".to_string(), |e| e.to_string());
                outcomes.extend(
                    (0..wanted).map(|_| Err(StorageError::Io(io::Error::other(reason.clone())))),
                );
            }
        }
        outcomes
    }
}

fn normalized_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}

fn io_error(e: object_store::Error) -> StorageError {
    StorageError::Io(io::Error::from(e))
}

/// An object's error as the storage error of a missing `missing`.
fn or_missing(e: object_store::Error, missing: StorageError) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => missing,
        e => io_error(e),
    }
}

#[async_trait]
impl BlobRead for S3Store {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.s3.head(&self.blob_key(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn get(&self, digest: &Digest, range: Option<(u64, u64)>) -> Result<ByteStream> {
        let key = self.blob_key(digest);
        let wanted = match range {
            // S3 has no empty range: an existing blob has empty slices.
            Some((_, 0)) => {
                self.s3
                    .head(&key)
                    .await
                    .map_err(|e| or_missing(e, StorageError::NotFound))?;
                return Ok(futures_util::stream::empty().boxed());
            }
            Some((offset, len)) => Some(GetRange::Bounded(offset..offset.saturating_add(len))),
            None => None,
        };
        let got = self
            .s3
            .get_opts(&key, GetOptions::default().with_range(wanted))
            .await
            .map_err(|e| or_missing(e, StorageError::NotFound))?;
        if let Some((offset, len)) = range {
            // The store answers a range past the end with what there is.
            if got.range != (offset..offset + len) {
                return Err(StorageError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "blob shorter than recorded",
                )));
            }
        }
        Ok(got.into_stream().map_err(io::Error::from).boxed())
    }

    async fn redirect_url(&self, digest: &Digest, ttl: Duration) -> Result<Option<String>> {
        if !self.redirect_pulls {
            return Ok(None);
        }
        let url = self
            .s3
            .signed_url(
                object_store::signer::Method::GET,
                &self.blob_key(digest),
                ttl,
            )
            .await
            .map_err(io_error)?;
        Ok(Some(url.to_string()))
    }
}

#[async_trait]
impl BlobAdmin for S3Store {
    async fn delete(&self, digest: &Digest) -> Result<()> {
        match self.s3.delete(&self.blob_key(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn delete_batch(&self, digests: &[Digest]) -> Vec<Result<()>> {
        self.delete_keys(digests.iter().map(|d| self.blob_key(d)).collect())
            .await
    }

    async fn quarantine(&self, digest: &Digest) -> Result<()> {
        let from = self.blob_key(digest);
        match self.s3.copy(&from, &self.quarantine_key(digest)).await {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(io_error(e)),
        }
        self.delete(digest).await
    }

    fn list(&self) -> DigestStream {
        let root = format!("{}blobs/", self.prefix);
        self.s3
            .list(Some(&self.key("blobs")))
            .map_err(io_error)
            .try_filter_map(move |meta| {
                let digest = blob_digest(meta.location.as_ref(), &root);
                futures_util::future::ready(Ok(digest))
            })
            .boxed()
    }
}

/// The digest a key under `blobs/` names (`<alg>/<2 hex>/<hex>`), if any:
/// foreign objects in the bucket are not blobs.
fn blob_digest(key: &str, root: &str) -> Option<Digest> {
    let mut parts = key.strip_prefix(root)?.split('/');
    let (alg, fan, hex) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !hex.starts_with(fan) || fan.len() != 2 {
        return None;
    }
    format!("{alg}:{hex}").parse().ok()
}
