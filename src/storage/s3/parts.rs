//! Writes one object from a stream of chunks of any size: small objects in
//! one PUT, larger ones as a multipart upload whose parts are at least the
//! part size (S3 refuses smaller parts but the last). Memory: the part being
//! filled (at most a part plus one chunk) and the one being sent.

use bytes::Bytes;
use object_store::aws::AmazonS3;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use tokio::task::JoinHandle;

use super::io_error;
use crate::storage::Result;

/// Parts after which the part size grows by one step, so that the 10,000
/// parts S3 allows hold far more than 10,000 base parts.
const PARTS_PER_STEP: usize = 1000;

/// What a write did, for the tests of its memory bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct WriteStats {
    /// Sizes of the parts sent, in order (empty for a single PUT).
    pub parts: Vec<u64>,
    /// Most bytes buffered at once for the part being filled.
    pub peak_buffered: usize,
}

pub(super) struct PartWriter {
    s3: AmazonS3,
    key: Path,
    part_size: usize,
    buffer: Vec<Bytes>,
    buffered: usize,
    written: u64,
    /// The multipart upload, once the object outgrew one part.
    upload: Option<String>,
    parts: Vec<PartId>,
    sending: Option<JoinHandle<object_store::Result<PartId>>>,
    stats: WriteStats,
}

impl PartWriter {
    pub(super) fn new(s3: AmazonS3, key: Path, part_size: usize) -> PartWriter {
        PartWriter {
            s3,
            key,
            part_size,
            buffer: Vec::new(),
            buffered: 0,
            written: 0,
            upload: None,
            parts: Vec::new(),
            sending: None,
            stats: WriteStats::default(),
        }
    }

    pub(super) async fn push(&mut self, chunk: Bytes) -> Result<()> {
        self.written += chunk.len() as u64;
        self.buffered += chunk.len();
        self.buffer.push(chunk);
        self.stats.peak_buffered = self.stats.peak_buffered.max(self.buffered);
        let step = 1 + self.parts.len() / PARTS_PER_STEP;
        if self.buffered >= self.part_size * step {
            self.send_part().await?;
        }
        Ok(())
    }

    /// Starts sending the buffered bytes as the next part, once the part
    /// before it has arrived: one part in flight while the next one fills.
    async fn send_part(&mut self) -> Result<()> {
        self.settle().await?;
        let upload = match &self.upload {
            Some(id) => id.clone(),
            None => {
                let id = self
                    .s3
                    .create_multipart(&self.key)
                    .await
                    .map_err(io_error)?;
                self.upload.insert(id).clone()
            }
        };
        let payload: PutPayload = std::mem::take(&mut self.buffer).into_iter().collect();
        self.stats.parts.push(self.buffered as u64);
        self.buffered = 0;
        let (s3, key, index) = (self.s3.clone(), self.key.clone(), self.parts.len());
        self.sending = Some(tokio::spawn(async move {
            s3.put_part(&key, &upload, index, payload).await
        }));
        Ok(())
    }

    /// Waits for the part in flight.
    async fn settle(&mut self) -> Result<()> {
        if let Some(sending) = self.sending.take() {
            let part = sending
                .await
                .map_err(|e| crate::storage::StorageError::Io(std::io::Error::other(e)))?
                .map_err(io_error)?;
            self.parts.push(part);
        }
        Ok(())
    }

    /// Makes the object visible with everything pushed: it exists once the
    /// store has acknowledged all of it. Nothing pushed: no object at all.
    pub(super) async fn finish(mut self) -> Result<(u64, WriteStats)> {
        let result = self.complete().await;
        if result.is_err() {
            self.abort_upload().await;
        }
        result.map(|()| (self.written, std::mem::take(&mut self.stats)))
    }

    async fn complete(&mut self) -> Result<()> {
        if self.upload.is_none() {
            if self.buffered > 0 {
                let payload: PutPayload = std::mem::take(&mut self.buffer).into_iter().collect();
                self.s3.put(&self.key, payload).await.map_err(io_error)?;
            }
            return Ok(());
        }
        if self.buffered > 0 {
            self.send_part().await?;
        }
        self.settle().await?;
        let upload = self.upload.clone().unwrap_or_default();
        let parts = std::mem::take(&mut self.parts);
        self.s3
            .complete_multipart(&self.key, &upload, parts)
            .await
            .map_err(io_error)?;
        self.upload = None;
        Ok(())
    }

    /// Gives up: the store drops the parts sent, and no object appears.
    pub(super) async fn abort(mut self) {
        self.abort_upload().await;
    }

    async fn abort_upload(&mut self) {
        if let Some(sending) = self.sending.take() {
            sending.abort();
            let _ = sending.await;
        }
        if let Some(upload) = self.upload.take() {
            if let Err(e) = self.s3.abort_multipart(&self.key, &upload).await {
                // The store's lifecycle rules (or its own expiry) end it later.
                tracing::warn!(key = %self.key, error = %e, "aborting a multipart upload failed");
            }
        }
    }
}
