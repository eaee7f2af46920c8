//! Registry metadata: repositories, blob links, manifests, tags and upload
//! sessions.
//! Access control (users, projects, members, robots, access tokens, the
//! audit log) lives in `access`.
//!
//! Contract: one trait per aggregate, reads apart from writes; every write
//! that must be atomic (a manifest with its references and tag, a manifest
//! delete with its tags) is one transaction inside one method. All state that
//! a second replica must see lives here, never in process memory.
//! Every backend must pass the shared suites in `metadata::suite`,
//! `metadata::suite_access` and `metadata::suite_browse`.

mod access;
mod browse;
mod config;
mod lifecycle;
mod logins;
mod open;
mod pg_access;
#[cfg(test)]
mod pg_access_tests;
mod pg_audit;
mod pg_browse;
mod pg_catalog;
mod pg_gc;
mod pg_locks;
mod pg_logins;
mod pg_manifests;
mod pg_policy;
mod pg_scrub;
mod pg_shared;
mod pg_sweep;
mod pg_tokens;
mod postgres;
mod scrub;
mod sqlite;
mod sqlite_access;
mod sqlite_audit;
mod sqlite_browse;
mod sqlite_catalog;
mod sqlite_gc;
mod sqlite_policy;
mod sqlite_scrub;
mod sqlite_tokens;
#[cfg(test)]
mod suite;
#[cfg(test)]
mod suite_access;
#[cfg(test)]
mod suite_audit;
#[cfg(test)]
mod suite_browse;
#[cfg(test)]
mod suite_lifecycle;
#[cfg(test)]
mod suite_visibility;

use async_trait::async_trait;
use bytes::Bytes;

use crate::oci::{Digest, Reference, RepoName, Tag};

pub use access::*;
pub use browse::*;
pub use config::MetadataConfig;
pub use lifecycle::*;
pub use logins::*;
pub use open::{open, redacted_url, Backend, Opened};
pub use pg_locks::PgSessionLocks;
pub use postgres::PgMetadata;
pub use scrub::*;
pub use sqlite::SqliteMetadata;

/// The test PostgreSQL server (shared with the integration tests).
#[cfg(test)]
#[path = "../../tests/support/postgres.rs"]
pub(crate) mod test_postgres;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("manifest references {0}, which is not in this repository")]
    MissingReference(Digest),
    #[error("manifest declares size {declared} for {digest}, but it has {actual} bytes")]
    SizeMismatch {
        digest: Digest,
        declared: u64,
        actual: u64,
    },
    #[error("metadata database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("metadata migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("metadata database holds an invalid value: {0}")]
    Corrupt(String),
    /// A unique name is already taken, e.g. `user "alice"`.
    #[error("{0} already exists")]
    Duplicate(String),
    /// A write refers to something that does not exist, e.g. `project "lib"`.
    #[error("{0} not found")]
    NotFound(String),
    /// The blob is being removed by garbage collection: treat it as absent
    /// until its row is gone.
    #[error("blob {0} is being deleted by garbage collection")]
    BlobDeleting(Digest),
    #[error("project {project} would exceed its {what} quota: {usage} used of {limit}, and this push adds {adding}")]
    QuotaExceeded {
        project: String,
        /// `storage bytes`, `repositories` or `tags`.
        what: &'static str,
        usage: u64,
        limit: u64,
        adding: u64,
    },
    #[error("tag {tag} is immutable (project rule \"{rule}\"): it can be pushed once, never moved or deleted")]
    ImmutableTag { tag: String, rule: String },
}

pub type Result<T, E = MetadataError> = std::result::Result<T, E>;

/// The current time as the metadata layer stores it: Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A stored manifest, as served.
#[derive(Debug, Clone)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub content: Bytes,
    /// Its last push or refreshed lookup (Unix ms).
    pub touched_at: i64,
}

/// A descriptor (digest + declared size) that a manifest references.
#[derive(Debug, Clone)]
pub struct Ref {
    pub digest: Digest,
    pub size: u64,
}

/// A manifest to store, with what it references.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub repo: RepoName,
    pub digest: Digest,
    pub media_type: String,
    pub content: Bytes,
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    /// The manifest's annotations as a JSON object text.
    pub annotations: Option<String>,
    pub blobs: Vec<Ref>,
    pub children: Vec<Ref>,
    pub tag: Option<Tag>,
    /// The immutability rule protecting `tag`, if one does: the tag may be
    /// created, or pushed again with the same digest, never moved.
    pub immutable_rule: Option<String>,
}

/// A blob a repository links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkedBlob {
    pub size: u64,
    /// When an upload, mount or lookup last used the link (Unix ms).
    pub touched_at: i64,
}

/// A manifest whose `subject` is a given digest.
#[derive(Debug, Clone, PartialEq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// A page request: entries strictly after `last`, at most `limit` of them.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub last: Option<String>,
    pub limit: u32,
}

/// Which repositories a listing may name. The filter runs inside the
/// query, so a page holds `limit` names the caller may see and its last
/// name (the next page's cursor) is one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    /// Every repository (system admins, or authentication off).
    All,
    /// Repositories of existing projects that are public, that `member`
    /// belongs to (any role may pull), or that are `project` (a robot's own).
    Projects {
        member: Option<String>,
        project: Option<String>,
    },
}

#[async_trait]
pub trait RepoIndex: Send + Sync {
    /// Repositories holding at least one manifest that `visible` admits,
    /// lexically ordered.
    async fn list_repositories(&self, page: &Page, visible: &Visible) -> Result<Vec<String>>;
    async fn repository_exists(&self, repo: &RepoName) -> Result<bool>;
    /// A number that changes whenever a repository is deleted, by whatever
    /// process: a server drops its cached lookups when it moves.
    async fn removals(&self) -> Result<i64>;
}

#[async_trait]
pub trait BlobIndex: Send + Sync {
    /// `digest` if this repository links it and it is servable (`live`).
    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<LinkedBlob>>;
    /// Repositories linking `digest` (candidates for a cross-repository mount).
    /// A repository holding `digest` that `visible` admits, if any: one
    /// indexed lookup, whatever the number of repositories holding it.
    async fn visible_holder(&self, digest: &Digest, visible: &Visible) -> Result<Option<RepoName>>;
}

#[async_trait]
pub trait BlobLinks: Send + Sync {
    /// Before an upload's bytes are committed: checks the project's storage
    /// quota and records (or touches) the blob's row, so that bytes a crash
    /// leaves unlinked are garbage that collection finds by the row.
    /// `BlobDeleting` while a collection removes the blob.
    async fn reserve_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()>;
    /// Links a blob into `repo` (creating the repository), touching it, in
    /// one transaction that checks it is not `deleting` and that the
    /// project's storage quota allows it. `fresh`: its bytes were just
    /// written, so a `corrupt` blob becomes `live` again.
    async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        fresh: bool,
    ) -> Result<()>;
    /// Marks the link used now (so collection keeps it a grace period);
    /// whether it still exists.
    async fn touch_link(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
    /// Removes the link; returns whether there was one.
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
}

#[async_trait]
pub trait ManifestIndex: Send + Sync {
    async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<ManifestRecord>>;
    /// Manifests in `repo` whose subject is `subject`, optionally of one artifact type.
    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>>;
    /// Tags of `repo`, lexically ordered; `None` when the repository is unknown.
    async fn list_tags(&self, repo: &RepoName, page: &Page) -> Result<Option<Vec<String>>>;
}

#[async_trait]
pub trait ManifestWrites: Send + Sync {
    /// Stores the manifest, its references and its tag in one transaction,
    /// after checking every referenced blob and child is in the repository.
    async fn put_manifest(&self, manifest: &NewManifest) -> Result<()>;
    /// Deletes a manifest and every tag pointing at it; whether it existed.
    /// Refused with `ImmutableTag` when `policy` protects one of those tags.
    async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        policy: &ProjectPolicy,
    ) -> Result<bool>;
    /// Marks the manifest used now (so collection keeps it a grace period,
    /// even untagged); whether it still exists.
    async fn touch_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
    /// Deletes one tag, leaving the manifest; whether it existed.
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool>;
}

#[async_trait]
pub trait UploadIndex: Send + Sync {
    async fn create_upload(&self, id: &str, repo: &RepoName) -> Result<()>;
    /// The repository an upload session belongs to.
    async fn upload_repository(&self, id: &str) -> Result<Option<RepoName>>;
    async fn delete_upload(&self, id: &str) -> Result<()>;
    /// Every upload session: its id and creation time (Unix ms).
    async fn list_uploads(&self) -> Result<Vec<(String, i64)>>;
}

#[async_trait]
pub trait Health: Send + Sync {
    async fn ping(&self) -> Result<()>;
    /// The backend's connection pools as they are now (for metrics); none
    /// by default.
    fn pools(&self) -> Vec<PoolUsage> {
        Vec::new()
    }
}

/// One connection pool's use: connections open, idle among them, and the most it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    pub pool: &'static str,
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

impl PoolUsage {
    pub fn of<DB: sqlx::Database>(pool: &'static str, of: &sqlx::Pool<DB>) -> PoolUsage {
        PoolUsage {
            pool,
            open: of.size(),
            idle: u32::try_from(of.num_idle()).unwrap_or(u32::MAX),
            max: of.options().get_max_connections(),
        }
    }
}

/// A file that replicas sharing the metadata must hold the same copy of,
/// by its path under the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFile {
    pub name: String,
    pub content: Vec<u8>,
}

/// The shared copies of such files (backends several processes share).
#[async_trait]
pub trait SharedFiles: Send + Sync {
    /// Hands the stored files to `exchange`, which writes them locally and
    /// returns the local ones the store lacks, which are then stored; all
    /// while holding a lock that makes concurrent exchanges take turns, so
    /// of replicas starting together the first one's files win.
    async fn exchange_shared_files(
        &self,
        exchange: &(dyn Fn(Vec<SharedFile>) -> std::io::Result<Vec<SharedFile>> + Sync),
    ) -> Result<()>;
}

/// What the registry core needs from a metadata backend: repositories,
/// blob links, manifests, tags, upload sessions, and the lifecycle roles
/// (collection runs and sweeps, project policies).
pub trait RegistryStore:
    RepoIndex
    + BlobIndex
    + BlobLinks
    + ManifestIndex
    + ManifestWrites
    + UploadIndex
    + Health
    + GcRuns
    + GcSweep
    + Policies
    + Scrubs
{
}
impl<
        T: RepoIndex
            + BlobIndex
            + BlobLinks
            + ManifestIndex
            + ManifestWrites
            + UploadIndex
            + Health
            + GcRuns
            + GcSweep
            + Policies
            + Scrubs,
    > RegistryStore for T
{
}

/// A whole metadata backend: every role. Only the server's assembly (and
/// the CLI, which opens the store) names it; each consumer takes the roles
/// it uses (`RegistryStore`, `AccessMetadata`, `Browse`, `EndedSessions`).
pub trait Metadata: RegistryStore + AccessMetadata + Browse + EndedSessions {}
impl<T: RegistryStore + AccessMetadata + Browse + EndedSessions> Metadata for T {}
