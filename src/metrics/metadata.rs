//! A metadata store that times each call it passes on, by operation (the
//! trait method's name: a fixed set), whatever the backend: the same
//! contract as the store it wraps (`metadata::RegistryStore`).
//! A method added to one of these traits needs its line here too.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use prometheus::{HistogramVec, IntCounterVec, Registry};

use super::Metrics;
use crate::metadata::*;
use crate::oci::{Digest, Reference, RepoName, Tag};

pub(super) struct MetadataMetrics {
    duration: HistogramVec,
    errors: IntCounterVec,
}

impl MetadataMetrics {
    pub(super) fn new(registry: &Registry) -> MetadataMetrics {
        MetadataMetrics {
            duration: super::histograms(
                registry,
                "berth_metadata_operation_duration_seconds",
                "Metadata database calls of the registry, by operation (e.g. get_manifest, \
                 link_blob, put_manifest).",
                &["operation"],
            ),
            errors: super::counters(
                registry,
                "berth_metadata_operation_errors_total",
                "Metadata database calls that failed, by operation (a refusal such as a \
                 quota or an immutable tag counts too).",
                &["operation"],
            ),
        }
    }
}

/// `inner`, timed into `metrics`.
pub struct MeteredMetadata {
    inner: Arc<dyn RegistryStore>,
    metrics: Arc<Metrics>,
}

impl MeteredMetadata {
    pub fn new(inner: Arc<dyn RegistryStore>, metrics: Arc<Metrics>) -> MeteredMetadata {
        MeteredMetadata { inner, metrics }
    }

    fn observe(&self, operation: &str, started: Instant, failed: bool) {
        let m = &self.metrics.metadata;
        m.duration
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        if failed {
            m.errors.with_label_values(&[operation]).inc();
        }
    }
}

/// Awaits `inner.$method(args)`, timed under the method's name.
macro_rules! timed {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {{
        let started = Instant::now();
        let outcome = $self.inner.$method($($arg),*).await;
        $self.observe(stringify!($method), started, outcome.is_err());
        outcome
    }};
}

#[async_trait]
impl RepoIndex for MeteredMetadata {
    async fn list_repositories(&self, page: &Page, visible: &Visible) -> Result<Vec<String>> {
        timed!(self.list_repositories(page, visible))
    }
    async fn repository_exists(&self, repo: &RepoName) -> Result<bool> {
        timed!(self.repository_exists(repo))
    }
    async fn removals(&self) -> Result<i64> {
        timed!(self.removals())
    }
}

#[async_trait]
impl BlobIndex for MeteredMetadata {
    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<LinkedBlob>> {
        timed!(self.linked_blob(repo, digest))
    }
    async fn visible_holder(&self, digest: &Digest, visible: &Visible) -> Result<Option<RepoName>> {
        timed!(self.visible_holder(digest, visible))
    }
}

#[async_trait]
impl BlobLinks for MeteredMetadata {
    async fn reserve_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        timed!(self.reserve_blob(repo, digest, size))
    }
    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        fresh: bool,
    ) -> Result<()> {
        timed!(self.link_blob(repo, digest, size, fresh))
    }
    async fn touch_link(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        timed!(self.touch_link(repo, digest))
    }
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        timed!(self.unlink_blob(repo, digest))
    }
}

#[async_trait]
impl ManifestIndex for MeteredMetadata {
    async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>> {
        timed!(self.get_manifest(repo, reference))
    }
    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        timed!(self.referrers(repo, subject, artifact_type))
    }
    async fn list_tags(&self, repo: &RepoName, page: &Page) -> Result<Option<Vec<String>>> {
        timed!(self.list_tags(repo, page))
    }
}

#[async_trait]
impl ManifestWrites for MeteredMetadata {
    async fn put_manifest(&self, manifest: &NewManifest) -> Result<()> {
        timed!(self.put_manifest(manifest))
    }
    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        policy: &ProjectPolicy,
    ) -> Result<bool> {
        timed!(self.delete_manifest(repo, digest, policy))
    }
    async fn touch_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        timed!(self.touch_manifest(repo, digest))
    }
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        timed!(self.delete_tag(repo, tag))
    }
}

#[async_trait]
impl UploadIndex for MeteredMetadata {
    async fn create_upload(&self, id: &str, repo: &RepoName) -> Result<()> {
        timed!(self.create_upload(id, repo))
    }
    async fn upload_repository(&self, id: &str) -> Result<Option<RepoName>> {
        timed!(self.upload_repository(id))
    }
    async fn delete_upload(&self, id: &str) -> Result<()> {
        timed!(self.delete_upload(id))
    }
    async fn list_uploads(&self) -> Result<Vec<(String, i64)>> {
        timed!(self.list_uploads())
    }
}

#[async_trait]
impl Health for MeteredMetadata {
    async fn ping(&self) -> Result<()> {
        timed!(self.ping())
    }
    fn pools(&self) -> Vec<PoolUsage> {
        self.inner.pools()
    }
}

#[async_trait]
impl GcRuns for MeteredMetadata {
    async fn request_gc(&self, dry_run: bool, by: &str) -> Result<Result<GcRun, GcBusy>> {
        timed!(self.request_gc(dry_run, by))
    }
    async fn claim_gc(&self, holder: &str, stale_before: i64) -> Result<Option<GcRun>> {
        timed!(self.claim_gc(holder, stale_before))
    }
    async fn gc_heartbeat(
        &self,
        id: i64,
        holder: &str,
        phase: &str,
        stats: &GcStats,
    ) -> Result<bool> {
        timed!(self.gc_heartbeat(id, holder, phase, stats))
    }
    async fn finish_gc(
        &self,
        id: i64,
        holder: &str,
        stats: &GcStats,
        error: Option<&str>,
    ) -> Result<()> {
        timed!(self.finish_gc(id, holder, stats, error))
    }
    async fn gc_run(&self, id: i64) -> Result<Option<GcRun>> {
        timed!(self.gc_run(id))
    }
    async fn gc_runs(&self, before: Option<i64>, limit: u32) -> Result<Vec<GcRun>> {
        timed!(self.gc_runs(before, limit))
    }
    async fn last_gc(&self) -> Result<Option<i64>> {
        timed!(self.last_gc())
    }
}

#[async_trait]
impl GcSweep for MeteredMetadata {
    async fn sweep_repositories(
        &self,
        project: Option<&str>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<SweepRepo>> {
        timed!(self.sweep_repositories(project, after, limit))
    }
    async fn tag_times(&self, repo_id: i64) -> Result<Vec<TagTimes>> {
        timed!(self.tag_times(repo_id))
    }
    async fn sweep_repository(
        &self,
        repo_id: i64,
        plan: &RepoPlan,
        run: i64,
        dry_run: bool,
    ) -> Result<RepoSwept> {
        timed!(self.sweep_repository(repo_id, plan, run, dry_run))
    }
    async fn flip_blobs(
        &self,
        after: Option<&Digest>,
        before: i64,
        run: i64,
        limit: u32,
        dry_run: bool,
    ) -> Result<Vec<SweptBlob>> {
        timed!(self.flip_blobs(after, before, run, limit, dry_run))
    }
    async fn abandoned_blobs(&self, run: i64, limit: u32) -> Result<Vec<SweptBlob>> {
        timed!(self.abandoned_blobs(run, limit))
    }
    async fn forget_blobs(&self, digests: &[Digest]) -> Result<()> {
        timed!(self.forget_blobs(digests))
    }
    fn writes_waiting(&self) -> bool {
        self.inner.writes_waiting()
    }
    async fn gc_marked(&self, run: i64) -> Result<(u64, u64, u64)> {
        timed!(self.gc_marked(run))
    }
}

#[async_trait]
impl Policies for MeteredMetadata {
    async fn project_policy(&self, project: &str) -> Result<ProjectPolicy> {
        timed!(self.project_policy(project))
    }
    async fn set_project_policy(&self, project: &str, policy: &ProjectPolicy) -> Result<()> {
        timed!(self.set_project_policy(project, policy))
    }
    async fn quota_usage(&self, project: &str) -> Result<QuotaUsage> {
        timed!(self.quota_usage(project))
    }
    async fn projects_with_policies(&self) -> Result<Vec<String>> {
        timed!(self.projects_with_policies())
    }
    async fn record_pulls(&self, pulls: &[(RepoName, String, i64)]) -> Result<()> {
        timed!(self.record_pulls(pulls))
    }
    async fn delete_repository(&self, repo: &RepoName, policy: &ProjectPolicy) -> Result<bool> {
        timed!(self.delete_repository(repo, policy))
    }
}

#[async_trait]
impl Scrubs for MeteredMetadata {
    async fn request_scrub(&self, by: &str) -> Result<Result<ScrubRun, i64>> {
        timed!(self.request_scrub(by))
    }
    async fn claim_scrub(&self, stale_before: i64) -> Result<Option<ScrubRun>> {
        timed!(self.claim_scrub(stale_before))
    }
    async fn save_scrub(&self, run: &ScrubRun) -> Result<bool> {
        timed!(self.save_scrub(run))
    }
    async fn finish_scrub(&self, run: &ScrubRun) -> Result<()> {
        timed!(self.finish_scrub(run))
    }
    async fn scrub_run(&self, id: i64) -> Result<Option<ScrubRun>> {
        timed!(self.scrub_run(id))
    }
    async fn scrub_runs(&self, before: Option<i64>, limit: u32) -> Result<Vec<ScrubRun>> {
        timed!(self.scrub_runs(before, limit))
    }
    async fn scrub_batch(&self, after: Option<&str>, limit: u32) -> Result<(Vec<SweptBlob>, u64)> {
        timed!(self.scrub_batch(after, limit))
    }
    async fn mark_corrupt(&self, digest: &Digest) -> Result<()> {
        timed!(self.mark_corrupt(digest))
    }
}
