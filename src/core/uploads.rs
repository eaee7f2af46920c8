//! Blob uploads: monolithic, POST+PUT, chunked and streamed PATCH, resume,
//! cancel and cross-repository mounts. Sessions live in metadata (shared) and
//! storage (bytes, locked per request by the storage backend); the running
//! hash kept here is only a shortcut: without it (after a restart, or on
//! another replica) the staged bytes are re-hashed.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::{stream, StreamExt};

use super::{Error, Registry, Result};
use crate::metadata::{MetadataError, Visible};
use crate::oci::{Algorithm, Digest, Hasher, RepoName};
use crate::storage::{ByteStream, StagedUpload, StorageError};

/// How long an upload waits for garbage collection to finish removing an
/// earlier copy of its blob before it answers 503 (retry).
const DELETING_WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(super) struct LocalState {
    /// Running hash of each session's staged bytes, with the offset it covers.
    pub(super) hashes: Mutex<HashMap<String, (u64, Hasher)>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    pub id: String,
    /// Bytes received so far.
    pub size: u64,
}

/// A chunk's framing as the client declared it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChunkHeaders {
    /// `Content-Range` as inclusive (first, last).
    pub range: Option<(u64, u64)>,
    pub content_length: Option<u64>,
}

impl Registry {
    /// Opens an upload session.
    pub async fn start_upload(&self, repo: &RepoName) -> Result<UploadStatus> {
        let id = uuid::Uuid::new_v4().to_string();
        self.storage.create(&id).await?;
        self.metadata.create_upload(&id, repo).await?;
        Ok(UploadStatus { id, size: 0 })
    }

    /// Links an existing blob into `repo` without uploading it: from
    /// `from` (a repository the caller may read) when it has the blob, else,
    /// with automatic mounts, from one repository that `visible` admits
    /// (one indexed lookup, however many repositories hold it). Returns the
    /// blob's size, or `None` when a regular upload is needed.
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
        visible: &Visible,
    ) -> Result<Option<u64>> {
        if let Some(linked) = self.metadata.linked_blob(repo, digest).await? {
            if self.metadata.touch_link(repo, digest).await? {
                return Ok(Some(linked.size));
            }
        }
        let mut size = match from {
            Some(from) => self.metadata.linked_blob(from, digest).await?,
            None => None,
        };
        if size.is_none() && self.settings.auto_mount {
            if let Some(other) = self.metadata.visible_holder(digest, visible).await? {
                size = self.metadata.linked_blob(&other, digest).await?;
            }
        }
        let size = size.map(|linked| linked.size);
        let Some(size) = size else {
            return Ok(None);
        };
        // The bytes must really be there: metadata alone is not proof.
        if self.storage.stat(digest).await? != Some(size) {
            return Ok(None);
        }
        match self.metadata.link_blob(repo, digest, size, false).await {
            Ok(()) => Ok(Some(size)),
            // Being collected: absent, so the client uploads it.
            Err(MetadataError::BlobDeleting(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `POST ?digest=` with the whole blob as body.
    pub async fn upload_monolithic(
        &self,
        repo: &RepoName,
        digest: &Digest,
        content_length: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        let id = uuid::Uuid::new_v4().to_string();
        self.storage.create(&id).await?;
        let mut staged = self.storage.open_upload(&id).await?;
        let body = match content_length {
            Some(len) => exact_length(body, len),
            None => body,
        };
        let hasher = Some(digest.algorithm().hasher());
        match append(&mut *staged, body, hasher).await {
            Ok(hasher) => self.verify_and_commit(repo, staged, hasher, digest).await,
            Err(e) => {
                let _ = staged.abort().await;
                Err(e)
            }
        }
    }

    /// Checks that the session exists and belongs to `repo`.
    async fn session(&self, repo: &RepoName, id: &str) -> Result<()> {
        let owner = match uuid::Uuid::parse_str(id) {
            Ok(_) => self.metadata.upload_repository(id).await?,
            Err(_) => None,
        };
        if owner.as_ref() == Some(repo) {
            Ok(())
        } else {
            Err(Error::UploadUnknown)
        }
    }

    /// Exclusive access to a session's bytes for the length of one request.
    async fn open_session(&self, repo: &RepoName, id: &str) -> Result<Box<dyn StagedUpload>> {
        self.session(repo, id).await?;
        match self.storage.open_upload(id).await {
            Ok(staged) => Ok(staged),
            Err(StorageError::Busy) => {
                let current = self.storage.size(id).await?.unwrap_or(0);
                Err(Error::UploadOutOfOrder { current })
            }
            Err(StorageError::UploadNotFound) => {
                // Staging is gone (committed or cancelled elsewhere, or the
                // blob was committed just before a crash): the session is over.
                self.metadata.delete_upload(id).await?;
                Err(Error::UploadUnknown)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadStatus> {
        self.session(repo, id).await?;
        match self.storage.size(id).await? {
            Some(size) => Ok(UploadStatus {
                id: id.to_string(),
                size,
            }),
            None => {
                self.metadata.delete_upload(id).await?;
                Err(Error::UploadUnknown)
            }
        }
    }

    fn running_hash(&self, id: &str, offset: u64) -> Option<Hasher> {
        let cached = self.uploads.hashes.lock().expect("hash cache").remove(id);
        match cached {
            Some((at, h)) if at == offset => Some(h),
            _ if offset == 0 => Some(Algorithm::Sha256.hasher()),
            _ => None,
        }
    }

    /// Appends a chunk (`PATCH`).
    pub async fn upload_chunk(
        &self,
        repo: &RepoName,
        id: &str,
        chunk: ChunkHeaders,
        body: ByteStream,
    ) -> Result<UploadStatus> {
        let mut staged = self.open_session(repo, id).await?;
        let body = framed(staged.size(), chunk, body)?;
        let hasher = self.running_hash(id, staged.size());
        let hasher = append(&mut *staged, body, hasher).await?;
        if let Some(h) = hasher {
            let mut hashes = self.uploads.hashes.lock().expect("hash cache");
            hashes.insert(id.to_string(), (staged.size(), h));
        }
        Ok(UploadStatus {
            id: id.to_string(),
            size: staged.size(),
        })
    }

    /// The closing `PUT ?digest=`, with an optional last chunk.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        chunk: ChunkHeaders,
        body: ByteStream,
    ) -> Result<u64> {
        let mut staged = self.open_session(repo, id).await?;
        let body = framed(staged.size(), chunk, body)?;
        let hasher = self.running_hash(id, staged.size());
        let hasher = append(&mut *staged, body, hasher).await?;
        let result = self.verify_and_commit(repo, staged, hasher, digest).await;
        if matches!(
            result,
            Ok(_) | Err(Error::DigestMismatch { .. } | Error::Denied(_))
        ) {
            // Done either way: a digest mismatch stores nothing.
            self.metadata.delete_upload(id).await?;
        }
        result
    }

    /// Commits the staged bytes as `digest` if they hash to it; otherwise
    /// discards them.
    async fn verify_and_commit(
        &self,
        repo: &RepoName,
        mut staged: Box<dyn StagedUpload>,
        hasher: Option<Hasher>,
        digest: &Digest,
    ) -> Result<u64> {
        let actual = match hasher {
            Some(h) if h.algorithm() == digest.algorithm() => h.finish(),
            _ => staged.digest(digest.algorithm()).await?,
        };
        if &actual != digest {
            staged.abort().await?;
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        if let Err(e) = self.reserve_blob(repo, digest, staged.size()).await {
            staged.abort().await?;
            return Err(e);
        }
        let size = staged.commit(digest).await?;
        self.metadata.link_blob(repo, digest, size, true).await?;
        Ok(size)
    }

    /// Records the blob before its bytes become visible (see
    /// `BlobLinks::reserve_blob`). While garbage collection removes an
    /// earlier copy, waits for its row to go: the new bytes must not be
    /// committed where the collection is deleting.
    async fn reserve_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        let deadline = tokio::time::Instant::now() + DELETING_WAIT;
        loop {
            match self.metadata.reserve_blob(repo, digest, size).await {
                Err(MetadataError::BlobDeleting(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return Ok(other?),
            }
        }
    }

    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        let staged = self.open_session(repo, id).await?;
        self.uploads.hashes.lock().expect("hash cache").remove(id);
        staged.abort().await?;
        self.metadata.delete_upload(id).await?;
        Ok(())
    }
}

/// Appends, turning a framing violation of the body into `SizeInvalid`.
async fn append(
    staged: &mut dyn StagedUpload,
    body: ByteStream,
    hasher: Option<Hasher>,
) -> Result<Option<Hasher>> {
    staged.append(body, hasher).await.map_err(|e| match e {
        StorageError::Body(e) if e.kind() == io::ErrorKind::InvalidData => {
            Error::UploadInvalid(e.to_string())
        }
        other => other.into(),
    })
}

/// Validates a chunk's Content-Range against the session's current size and
/// holds the body to the length the headers declare.
fn framed(current: u64, chunk: ChunkHeaders, body: ByteStream) -> Result<ByteStream> {
    let expected = match chunk.range {
        None => chunk.content_length,
        Some((first, last)) => {
            if last < first {
                return Err(Error::UploadInvalid(format!(
                    "Content-Range {first}-{last} is inverted"
                )));
            }
            if first != current {
                return Err(Error::UploadOutOfOrder { current });
            }
            // `0-18446744073709551615` would wrap to an expected length of 0.
            let Some(expected) = (last - first).checked_add(1) else {
                return Err(Error::UploadOutOfOrder { current });
            };
            match chunk.content_length {
                Some(declared) if declared != expected => {
                    return Err(Error::SizeInvalid { declared, expected })
                }
                _ => Some(expected),
            }
        }
    };
    Ok(match expected {
        Some(len) => exact_length(body, len),
        None => body,
    })
}

/// Passes `body` through, failing with `InvalidData` as soon as it is longer
/// than `len`, or at its end when it is shorter.
fn exact_length(body: ByteStream, len: u64) -> ByteStream {
    let state = (body, 0u64, false);
    stream::unfold(state, move |(mut body, seen, done)| async move {
        if done {
            return None;
        }
        let mismatch = |seen: u64| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("body length {seen} does not match the declared {len} bytes"),
            )
        };
        match body.next().await {
            Some(Ok(chunk)) => {
                let seen = seen + chunk.len() as u64;
                if seen > len {
                    Some((Err(mismatch(seen)), (body, seen, true)))
                } else {
                    Some((Ok(chunk), (body, seen, false)))
                }
            }
            Some(Err(e)) => Some((Err(e), (body, seen, true))),
            None if seen != len => Some((Err(mismatch(seen)), (body, seen, true))),
            None => None,
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures_util::TryStreamExt;

    fn body(parts: Vec<&'static [u8]>) -> ByteStream {
        stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p)))).boxed()
    }

    fn headers(range: Option<(u64, u64)>, content_length: Option<u64>) -> ChunkHeaders {
        ChunkHeaders {
            range,
            content_length,
        }
    }

    #[test]
    fn ranges_must_continue_the_upload() {
        assert!(framed(0, headers(None, None), body(vec![])).is_ok());
        assert!(framed(10, headers(Some((10, 19)), Some(10)), body(vec![])).is_ok());
        assert!(matches!(
            framed(10, headers(Some((0, 9)), None), body(vec![])),
            Err(Error::UploadOutOfOrder { current: 10 })
        ));
        assert!(matches!(
            framed(10, headers(Some((20, 29)), None), body(vec![])),
            Err(Error::UploadOutOfOrder { current: 10 })
        ));
        assert!(matches!(
            framed(0, headers(Some((0, 9)), Some(5)), body(vec![])),
            Err(Error::SizeInvalid { .. })
        ));
        assert!(matches!(
            framed(0, headers(Some((5, 1)), None), body(vec![])),
            Err(Error::UploadInvalid(_))
        ));
    }

    #[tokio::test]
    async fn bodies_are_held_to_their_declared_length() {
        let ok: Vec<Bytes> = exact_length(body(vec![b"ab", b"c"]), 3)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(ok.concat(), b"abc");
        let long: io::Result<Vec<Bytes>> = exact_length(body(vec![b"ab", b"cd"]), 3)
            .try_collect()
            .await;
        assert_eq!(long.unwrap_err().kind(), io::ErrorKind::InvalidData);
        let short: io::Result<Vec<Bytes>> = exact_length(body(vec![b"ab"]), 3).try_collect().await;
        assert_eq!(short.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
