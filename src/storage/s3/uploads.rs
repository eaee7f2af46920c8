//! Upload sessions in the bucket: a marker and one segment object per
//! append (see the module doc of `s3`).

use std::collections::HashMap;
use std::io;
use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::parts::{PartWriter, WriteStats};
use super::{io_error, S3Store};
use crate::oci::{Algorithm, Digest, Hasher};
use crate::storage::locks::SessionLock;
use crate::storage::{
    BlobRead, ByteStream, Result, Staged, StagedUpload, StorageError, UploadStore,
};

/// The object whose presence is the session's existence.
const MARKER: &str = "created";
/// Digits of a segment's offset in its key, so that keys sort as offsets do.
const OFFSET_DIGITS: usize = 20;
/// The largest object S3's `CopyObject` copies; larger ones are streamed.
const COPY_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

/// One append's bytes: the object at `key` holds `size` bytes from `offset`.
#[derive(Debug, Clone)]
struct Segment {
    offset: u64,
    size: u64,
    key: Path,
}

/// What the bucket holds of one session.
#[derive(Debug, Default)]
struct Listing {
    marker: Option<Path>,
    segments: Vec<Segment>,
    /// Anything else under the session's key (removed with it).
    other: Vec<Path>,
}

impl Listing {
    fn keys(self) -> Vec<Path> {
        let segments = self.segments.into_iter().map(|s| s.key);
        segments.chain(self.other).collect()
    }
}

impl S3Store {
    /// `<prefix>uploads/<id>`, for ids this registry minted (UUIDs) only.
    fn session_root(&self, id: &str) -> Result<String> {
        uuid::Uuid::parse_str(id).map_err(|_| StorageError::UploadNotFound)?;
        Ok(format!("{}uploads/{id}", self.prefix))
    }

    async fn list_session(&self, id: &str) -> Result<Listing> {
        let root = self.session_root(id)?;
        let (top, seg) = (Path::from(root.as_str()), Path::from(format!("{root}/seg")));
        // Listings one level deep: a server may scan everything under a
        // prefix it lists recursively (s3s-fs walks the whole bucket).
        let (top, segments) = futures_util::try_join!(
            self.s3.list_with_delimiter(Some(&top)),
            self.s3.list_with_delimiter(Some(&seg)),
        )
        .map_err(io_error)?;
        let mut listing = Listing::default();
        for meta in top.objects {
            if meta.location.filename() == Some(MARKER) {
                listing.marker = Some(meta.location);
            } else {
                listing.other.push(meta.location);
            }
        }
        for meta in segments.objects {
            match meta.location.filename().and_then(|o| o.parse().ok()) {
                Some(offset) => listing.segments.push(Segment {
                    offset,
                    size: meta.size,
                    key: meta.location,
                }),
                None => listing.other.push(meta.location),
            }
        }
        listing.segments.sort_by_key(|s| s.offset);
        let mut end = 0;
        for segment in &listing.segments {
            if segment.offset != end {
                // Only two writers without a shared lock can do this.
                return Err(StorageError::Io(io::Error::other(format!(
                    "upload session {id}: staged bytes at {} do not follow those up to {end}",
                    segment.offset
                ))));
            }
            end += segment.size;
        }
        Ok(listing)
    }

    /// The session, held: the concrete type of `open_upload`.
    pub(super) async fn open_session(&self, id: &str) -> Result<S3Upload> {
        let root = self.session_root(id)?;
        let lock = self.locks.try_lock(id).await?.ok_or(StorageError::Busy)?;
        let listing = self.list_session(id).await?;
        if listing.marker.is_none() {
            let debris = listing.keys();
            if !debris.is_empty() {
                // Bytes of a session whose commit or abort was cut short
                // after its marker went: the session is over, they can go.
                self.delete_keys(debris)
                    .await
                    .into_iter()
                    .collect::<Result<()>>()?;
            }
            return Err(StorageError::UploadNotFound);
        }
        let size = listing.segments.iter().map(|s| s.size).sum();
        Ok(S3Upload {
            store: self.clone(),
            root,
            listing,
            size,
            last_write: WriteStats::default(),
            _lock: lock,
        })
    }
}

#[async_trait]
impl UploadStore for S3Store {
    async fn create(&self, id: &str) -> Result<()> {
        let marker = format!("{}/{MARKER}", self.session_root(id)?);
        self.s3
            .put(&Path::from(marker), PutPayload::new())
            .await
            .map_err(io_error)?;
        Ok(())
    }

    async fn size(&self, id: &str) -> Result<Option<u64>> {
        let listing = self.list_session(id).await?;
        Ok(listing
            .marker
            .is_some()
            .then(|| listing.segments.iter().map(|s| s.size).sum()))
    }

    async fn open_upload(&self, id: &str) -> Result<Box<dyn StagedUpload>> {
        Ok(Box::new(self.open_session(id).await?))
    }

    async fn staged(&self) -> Result<Vec<Staged>> {
        let root = format!("{}uploads/", self.prefix);
        let mut sessions: HashMap<String, Staged> = HashMap::new();
        let mut listing = self.s3.list(Some(&self.key("uploads")));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(io_error)?;
            let key = meta.location.as_ref();
            let Some((id, rest)) = key.strip_prefix(&root).and_then(|r| r.split_once('/')) else {
                continue;
            };
            // Only names this store minted; anything else is not ours to judge.
            if uuid::Uuid::parse_str(id).is_err() {
                continue;
            }
            let modified = SystemTime::from(meta.last_modified);
            let entry = sessions.entry(id.to_string()).or_insert_with(|| Staged {
                id: id.to_string(),
                size: 0,
                modified,
            });
            if rest.starts_with("seg/") {
                entry.size += meta.size;
            }
            entry.modified = entry.modified.max(modified);
        }
        Ok(sessions.into_values().collect())
    }
}

/// A session held by this process: its segments as listed when opened,
/// plus those its appends added.
pub(super) struct S3Upload {
    store: S3Store,
    /// `<prefix>uploads/<id>`.
    root: String,
    listing: Listing,
    size: u64,
    /// How the last append sent its bytes (for the tests).
    pub(super) last_write: WriteStats,
    _lock: SessionLock,
}

impl S3Upload {
    /// Removes the session: its marker first, so that it ends at once for
    /// every reader; then its bytes, which the expiry finds if this fails.
    async fn remove(self) -> Result<()> {
        if let Some(marker) = &self.listing.marker {
            match self.store.s3.delete(marker).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(io_error(e)),
            }
        }
        let keys = self.listing.keys();
        let failed = self
            .store
            .delete_keys(keys)
            .await
            .into_iter()
            .find_map(|r| r.err());
        if let Some(e) = failed {
            tracing::warn!(session = %self.root, error = %e, "staged bytes left behind");
        }
        Ok(())
    }

    /// Writes the staged bytes to `blob`.
    async fn write_blob(&self, blob: &Path) -> Result<()> {
        let s3 = &self.store.s3;
        let written = match self.listing.segments.as_slice() {
            [] => s3.put(blob, PutPayload::new()).await.map(drop),
            [one] if one.size <= COPY_LIMIT => s3.copy(&one.key, blob).await,
            segments => {
                let mut writer = PartWriter::new(s3.clone(), blob.clone(), self.store.part_size);
                for segment in segments {
                    if let Err(e) = self.copy_segment(segment, &mut writer).await {
                        writer.abort().await;
                        return Err(e);
                    }
                }
                return writer.finish().await.map(drop);
            }
        };
        written.map_err(io_error)
    }

    async fn copy_segment(&self, segment: &Segment, writer: &mut PartWriter) -> Result<()> {
        let mut bytes = self.segment_bytes(segment).await?;
        while let Some(chunk) = bytes.next().await {
            writer.push(chunk?).await?;
        }
        Ok(())
    }

    async fn segment_bytes(&self, segment: &Segment) -> Result<ByteStream> {
        let got = self.store.s3.get(&segment.key).await.map_err(io_error)?;
        Ok(got.into_stream().map_err(io::Error::from).boxed())
    }
}

#[async_trait]
impl StagedUpload for S3Upload {
    fn size(&self) -> u64 {
        self.size
    }

    async fn append(
        &mut self,
        mut body: ByteStream,
        mut hasher: Option<Hasher>,
    ) -> Result<Option<Hasher>> {
        let key = Path::from(format!(
            "{}/seg/{:0width$}",
            self.root,
            self.size,
            width = OFFSET_DIGITS
        ));
        let store = &self.store;
        let mut writer = PartWriter::new(store.s3.clone(), key.clone(), store.part_size);
        let mut broken = None;
        while let Some(item) = body.next().await {
            match item {
                Ok(chunk) => {
                    if let Some(h) = hasher.as_mut() {
                        h.update(&chunk);
                    }
                    if let Err(e) = writer.push(chunk).await {
                        // The store failed: nothing of this append is staged.
                        writer.abort().await;
                        return Err(e);
                    }
                }
                // The client's body broke: what arrived is staged, as the
                // filesystem keeps it, so the client resumes after it.
                Err(e) => {
                    broken = Some(StorageError::Body(e));
                    break;
                }
            }
        }
        let (written, stats) = writer.finish().await?;
        self.last_write = stats;
        if written > 0 {
            self.listing.segments.push(Segment {
                offset: self.size,
                size: written,
                key,
            });
            self.size += written;
        }
        match broken {
            Some(e) => Err(e),
            None => Ok(hasher),
        }
    }

    async fn digest(&mut self, algorithm: Algorithm) -> Result<Digest> {
        let mut hasher = algorithm.hasher();
        for segment in &self.listing.segments {
            let mut bytes = self.segment_bytes(segment).await?;
            while let Some(chunk) = bytes.next().await {
                hasher.update(&chunk?);
            }
        }
        Ok(hasher.finish())
    }

    async fn commit(self: Box<Self>, digest: &Digest) -> Result<u64> {
        // Content addressing: bytes already there are the same bytes.
        if BlobRead::stat(&self.store, digest).await?.is_none() {
            self.write_blob(&self.store.blob_key(digest)).await?;
        }
        let size = self.size;
        self.remove().await?;
        Ok(size)
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.remove().await
    }
}
