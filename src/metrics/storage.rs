//! A blob store that times the calls it passes on: the same contract as
//! the store it wraps (`storage::Storage`), so the registry cannot tell.
//! Timed: `stat`, `get` (until the stream is open: a download's pace is
//! the client's, as is an upload's `append`), `commit`, `delete`,
//! `delete_batch`.
//! It also counts the uploads whose staged bytes a request holds open.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus::{HistogramVec, IntCounterVec, IntGauge, Registry};

use super::Metrics;
use crate::oci::{Algorithm, Digest, Hasher};
use crate::storage::{
    BlobAdmin, BlobRead, ByteStream, DigestStream, Result, Staged, StagedUpload, Storage,
    StorageError, UploadStore,
};

pub(super) struct StorageMetrics {
    duration: HistogramVec,
    errors: IntCounterVec,
    uploads_active: IntGauge,
}

impl StorageMetrics {
    pub(super) fn new(registry: &Registry) -> StorageMetrics {
        let metrics = StorageMetrics {
            duration: super::histograms(
                registry,
                "berth_storage_operation_duration_seconds",
                "Blob storage calls, by operation (stat, get, commit, delete, delete_batch).",
                &["operation"],
            ),
            errors: super::counters(
                registry,
                "berth_storage_operation_errors_total",
                "Blob storage calls that failed, by operation (a missing blob is not a failure).",
                &["operation"],
            ),
            uploads_active: super::gauge(
                registry,
                "berth_uploads_active",
                "Uploads whose staged bytes a request of this process is writing or committing now.",
            ),
        };
        for operation in ["stat", "get", "commit", "delete", "delete_batch"] {
            metrics.duration.with_label_values(&[operation]);
            metrics.errors.with_label_values(&[operation]);
        }
        metrics
    }

    fn observe(&self, operation: &str, started: Instant, failed: bool) {
        self.duration
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        if failed {
            self.errors.with_label_values(&[operation]).inc();
        }
    }
}

/// A missing blob is an answer, not a failure of the store.
fn failed<T>(outcome: &Result<T>) -> bool {
    matches!(outcome, Err(e) if !matches!(e, StorageError::NotFound))
}

/// `inner`, timed into `metrics`.
pub struct MeteredStorage {
    inner: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
}

impl MeteredStorage {
    pub fn new(inner: Arc<dyn Storage>, metrics: Arc<Metrics>) -> MeteredStorage {
        MeteredStorage { inner, metrics }
    }

    fn observe<T>(&self, operation: &str, started: Instant, outcome: &Result<T>) {
        self.metrics
            .storage
            .observe(operation, started, failed(outcome));
    }
}

#[async_trait]
impl BlobRead for MeteredStorage {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        let started = Instant::now();
        let outcome = self.inner.stat(digest).await;
        self.observe("stat", started, &outcome);
        outcome
    }

    async fn get(&self, digest: &Digest, range: Option<(u64, u64)>) -> Result<ByteStream> {
        let started = Instant::now();
        let outcome = self.inner.get(digest, range).await;
        self.observe("get", started, &outcome);
        outcome
    }

    async fn redirect_url(&self, digest: &Digest, ttl: Duration) -> Result<Option<String>> {
        self.inner.redirect_url(digest, ttl).await
    }
}

#[async_trait]
impl BlobAdmin for MeteredStorage {
    async fn delete(&self, digest: &Digest) -> Result<()> {
        let started = Instant::now();
        let outcome = self.inner.delete(digest).await;
        self.observe("delete", started, &outcome);
        outcome
    }

    async fn delete_batch(&self, digests: &[Digest]) -> Vec<Result<()>> {
        let started = Instant::now();
        let outcomes = self.inner.delete_batch(digests).await;
        // One observation per batch; failed if any deletion in it failed.
        let failed = outcomes.iter().any(failed);
        self.metrics
            .storage
            .observe("delete_batch", started, failed);
        outcomes
    }

    async fn quarantine(&self, digest: &Digest) -> Result<()> {
        self.inner.quarantine(digest).await
    }

    fn list(&self) -> DigestStream {
        self.inner.list()
    }
}

#[async_trait]
impl UploadStore for MeteredStorage {
    async fn create(&self, id: &str) -> Result<()> {
        self.inner.create(id).await
    }

    async fn size(&self, id: &str) -> Result<Option<u64>> {
        self.inner.size(id).await
    }

    async fn open_upload(&self, id: &str) -> Result<Box<dyn StagedUpload>> {
        let inner = self.inner.open_upload(id).await?;
        Ok(Box::new(MeteredUpload {
            inner,
            _active: Active::new(&self.metrics.storage.uploads_active),
            metrics: self.metrics.clone(),
        }))
    }

    async fn staged(&self) -> Result<Vec<Staged>> {
        self.inner.staged().await
    }
}

/// A held upload, counted as active until it is committed, aborted or dropped.
struct MeteredUpload {
    inner: Box<dyn StagedUpload>,
    metrics: Arc<Metrics>,
    _active: Active,
}

struct Active(IntGauge);

impl Active {
    fn new(gauge: &IntGauge) -> Active {
        gauge.inc();
        Active(gauge.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[async_trait]
impl StagedUpload for MeteredUpload {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    async fn append(&mut self, body: ByteStream, hasher: Option<Hasher>) -> Result<Option<Hasher>> {
        self.inner.append(body, hasher).await
    }

    async fn digest(&mut self, algorithm: Algorithm) -> Result<Digest> {
        self.inner.digest(algorithm).await
    }

    async fn commit(self: Box<Self>, digest: &Digest) -> Result<u64> {
        let MeteredUpload {
            inner,
            metrics,
            _active,
        } = *self;
        let started = Instant::now();
        let outcome = inner.commit(digest).await;
        metrics.storage.observe("commit", started, failed(&outcome));
        outcome
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.inner.abort().await
    }
}
