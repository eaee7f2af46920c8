//! Filesystem backend: `<root>/blobs/<alg>/<2 hex>/<hex>` and
//! `<root>/uploads/<uuid>`. Both trees are on one filesystem so a commit is a
//! rename.

use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;

use super::{
    mapped, BlobAdmin, BlobRead, ByteStream, DigestStream, Result, Staged, StagedUpload,
    StorageError, UploadStore,
};
use crate::oci::{Algorithm, Digest, Hasher};

/// Downloads up to this size are read into one buffer; larger ones are mapped.
const SMALL_READ: u64 = 256 * 1024;
/// Bytes of a large download mapped at a time.
const MAP_WINDOW: u64 = 1024 * 1024;
/// Windows mapped ahead of the client per download.
const READ_AHEAD: usize = 4;
/// Dirty bytes of an upload handed to the disk at a time, so writeback runs
/// while the upload streams and the final fsync has little left to do.
const WRITEBACK_STEP: u64 = 16 * 1024 * 1024;
/// Chunks in flight between the request task (hashing) and the writer thread.
const WRITE_QUEUE: usize = 2;

#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
    /// Held for the store's lifetime: one berth process per data directory,
    /// since the embedded mode's in-process caches assume no other writer.
    _owner: Arc<std::fs::File>,
}

impl FsStore {
    pub async fn open(root: impl Into<PathBuf>) -> io::Result<FsStore> {
        let root = root.into();
        tokio::fs::create_dir_all(root.join("blobs")).await?;
        tokio::fs::create_dir_all(root.join("uploads")).await?;
        let owner = lock_data_dir(&root)?;
        Ok(FsStore {
            root,
            _owner: Arc::new(owner),
        })
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        // Digest is a validated newtype: algorithm name + fixed-length hex, so
        // it can never escape the blobs directory.
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&d.hex()[..2])
            .join(d.hex())
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf> {
        // Session ids are UUIDs minted by the core; refuse anything else so no
        // caller mistake can turn into a path outside the staging area.
        uuid::Uuid::parse_str(id).map_err(|_| StorageError::UploadNotFound)?;
        Ok(self.root.join("uploads").join(id))
    }
}

/// Takes the lock that makes this process the data directory's only user
/// (`berth.lock`, held while the returned file is open).
pub fn lock_data_dir(root: &Path) -> io::Result<std::fs::File> {
    std::fs::create_dir_all(root)?;
    let owner = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("berth.lock"))?;
    match owner.try_lock() {
        Ok(()) => Ok(owner),
        Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("{} is in use by another berth process", root.display()),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

fn not_found_as(e: io::Error, err: StorageError) -> StorageError {
    if e.kind() == io::ErrorKind::NotFound {
        err
    } else {
        StorageError::Io(e)
    }
}

/// Asks the kernel to start writing a range of dirty pages now (without
/// waiting). Only a hint: durability still comes from the fsync at commit.
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a file descriptor we own; it reads no memory.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl BlobRead for FsStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn get(&self, digest: &Digest, range: Option<(u64, u64)>) -> Result<ByteStream> {
        let path = self.blob_path(digest);
        let opened = tokio::task::spawn_blocking(move || -> Result<Opened> {
            let file =
                std::fs::File::open(path).map_err(|e| not_found_as(e, StorageError::NotFound))?;
            let size = file.metadata()?.len();
            let (offset, len) = range.unwrap_or((0, size));
            if offset.saturating_add(len) > size {
                return Err(StorageError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "blob shorter than recorded",
                )));
            }
            if len <= SMALL_READ {
                // One read into a buffer: cheaper than a mapping.
                let mut buf = vec![0u8; len as usize];
                std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, offset)?;
                return Ok(Opened::Read(Bytes::from(buf)));
            }
            Ok(Opened::Map(file, offset, len))
        })
        .await
        .map_err(io::Error::other)??;
        let (file, offset, len) = match opened {
            Opened::Read(bytes) => return Ok(futures_util::stream::iter([Ok(bytes)]).boxed()),
            Opened::Map(file, offset, len) => (file, offset, len),
        };
        // A blocking thread maps and faults in a few windows ahead of the
        // socket, so disk reads never stall an async worker, and the socket
        // writer sends straight from the page cache.
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(READ_AHEAD);
        let file = Arc::new(file);
        tokio::task::spawn_blocking(move || {
            let end = offset + len;
            let mut at = offset;
            while at < end {
                let n = (end - at).min(MAP_WINDOW);
                let item = mapped::map_window(&file, at, n as usize);
                at += n;
                let failed = item.is_err();
                // Stop when the client went away or the read failed (reported).
                if tx.blocking_send(item).is_err() || failed {
                    return;
                }
            }
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(rx).boxed())
    }
}

/// How a download is served: small blobs in one read, the rest mapped.
enum Opened {
    Read(Bytes),
    Map(std::fs::File, u64, u64),
}

#[async_trait]
impl BlobAdmin for FsStore {
    async fn delete(&self, digest: &Digest) -> Result<()> {
        remove_if_present(self.blob_path(digest)).await
    }

    async fn delete_batch(&self, digests: &[Digest]) -> Vec<Result<()>> {
        // A few unlinks in flight: the disk overlaps them, pushes keep the rest.
        let paths: Vec<PathBuf> = digests.iter().map(|d| self.blob_path(d)).collect();
        futures_util::stream::iter(paths)
            .map(remove_if_present)
            .buffered(4)
            .collect()
            .await
    }

    async fn quarantine(&self, digest: &Digest) -> Result<()> {
        let dir = self.root.join("quarantine");
        tokio::fs::create_dir_all(&dir).await?;
        let to = dir.join(format!(
            "{}-{}-{}",
            digest.algorithm().as_str(),
            digest.hex(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        ));
        match tokio::fs::rename(self.blob_path(digest), to).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn list(&self) -> DigestStream {
        let root = self.root.join("blobs");
        let (tx, rx) = tokio::sync::mpsc::channel(LIST_BUFFER);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = walk_blobs(&root, &tx) {
                // The receiver may be gone; then nobody needs the error.
                let _ = tx.blocking_send(Err(e.into()));
            }
        });
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
    }
}

/// Removes a blob's file; one already gone is no error.
async fn remove_if_present(path: PathBuf) -> Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Digests listed ahead of their consumer, at most.
const LIST_BUFFER: usize = 1024;

/// Sends the digest of every blob under `root` (`<algorithm>/<prefix>/<hex>`)
/// until the receiver hangs up.
fn walk_blobs(root: &Path, tx: &tokio::sync::mpsc::Sender<Result<Digest>>) -> io::Result<()> {
    for alg in std::fs::read_dir(root)? {
        let alg = alg?;
        for prefix in std::fs::read_dir(alg.path())? {
            for blob in std::fs::read_dir(prefix?.path())? {
                let name = format!(
                    "{}:{}",
                    alg.file_name().to_string_lossy(),
                    blob?.file_name().to_string_lossy()
                );
                if let Ok(d) = name.parse() {
                    if tx.blocking_send(Ok(d)).is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}

#[async_trait]
impl UploadStore for FsStore {
    async fn create(&self, id: &str) -> Result<()> {
        let path = self.upload_path(id)?;
        tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await?;
        Ok(())
    }

    async fn size(&self, id: &str) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.upload_path(id)?).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn open_upload(&self, id: &str) -> Result<Box<dyn StagedUpload>> {
        let path = self.upload_path(id)?;
        let store = self.clone();
        let digest_path = move |d: &Digest| store.blob_path(d);
        tokio::task::spawn_blocking(move || -> Result<Box<dyn StagedUpload>> {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)
                .map_err(|e| not_found_as(e, StorageError::UploadNotFound))?;
            // An advisory lock on the staging file: other requests, processes
            // and hosts sharing this directory see the session as busy.
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Err(StorageError::Busy),
                Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
            }
            // The previous holder may have committed (renamed) or aborted
            // (removed) the file while we waited to open it: only the file
            // still at the session's path is the session.
            let ours = file.metadata()?;
            match std::fs::metadata(&path) {
                Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {}
                _ => return Err(StorageError::UploadNotFound),
            }
            Ok(Box::new(FsUpload {
                size: ours.len(),
                file: Some(file),
                path,
                blob_path: Box::new(digest_path),
            }))
        })
        .await
        .map_err(io::Error::other)?
    }

    async fn staged(&self) -> Result<Vec<Staged>> {
        let dir = self.root.join("uploads");
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let id = entry.file_name().to_string_lossy().into_owned();
                // Only names this store minted; anything else is not ours to judge.
                if uuid::Uuid::parse_str(&id).is_err() {
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    // Committed or removed since the directory was read.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                out.push(Staged {
                    id,
                    size: meta.len(),
                    modified: meta.modified()?,
                });
            }
            Ok(out)
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// A locked staging file. The lock goes with the file descriptor.
struct FsUpload {
    file: Option<std::fs::File>,
    size: u64,
    path: PathBuf,
    blob_path: Box<dyn Fn(&Digest) -> PathBuf + Send>,
}

impl FsUpload {
    fn take_file(&mut self) -> Result<std::fs::File> {
        self.file.take().ok_or_else(|| {
            StorageError::Io(io::Error::other("staging file lost by a failed write"))
        })
    }
}

#[async_trait]
impl StagedUpload for FsUpload {
    fn size(&self) -> u64 {
        self.size
    }

    async fn append(
        &mut self,
        mut body: ByteStream,
        mut hasher: Option<Hasher>,
    ) -> Result<Option<Hasher>> {
        let file = self.take_file()?;
        // Hashing (here) and writing (a blocking thread) overlap, so a push
        // runs at the speed of the slower of the two rather than their sum.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(WRITE_QUEUE);
        let base = self.size;
        let writer =
            tokio::task::spawn_blocking(move || -> (std::fs::File, u64, io::Result<()>) {
                let mut file = file;
                let mut written = 0u64;
                let mut handed = 0u64;
                while let Some(chunk) = rx.blocking_recv() {
                    if let Err(e) = file.write_all(&chunk) {
                        return (file, written, Err(e));
                    }
                    written += chunk.len() as u64;
                    if written - handed >= WRITEBACK_STEP {
                        start_writeback(&file, base + handed, written - handed);
                        handed = written;
                    }
                }
                (file, written, Ok(()))
            });
        let mut body_error = None;
        while let Some(item) = body.next().await {
            match item {
                Ok(chunk) => {
                    if let Some(h) = hasher.as_mut() {
                        h.update(&chunk);
                    }
                    if tx.send(chunk).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    body_error = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let (file, written, result) = writer.await.map_err(io::Error::other)?;
        self.file = Some(file);
        self.size += written;
        result?;
        match body_error {
            Some(e) => Err(StorageError::Body(e)),
            None => Ok(hasher),
        }
    }

    async fn digest(&mut self, algorithm: Algorithm) -> Result<Digest> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || -> Result<Digest> {
            let mut file = std::fs::File::open(path)?;
            let mut hasher = algorithm.hasher();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Ok(hasher.finish())
        })
        .await
        .map_err(io::Error::other)?
    }

    async fn commit(mut self: Box<Self>, digest: &Digest) -> Result<u64> {
        let file = self.take_file()?;
        let to = (self.blob_path)(digest);
        let from = self.path.clone();
        let size = self.size;
        tokio::task::spawn_blocking(move || -> Result<u64> {
            if std::fs::metadata(&to).is_ok() {
                // Content addressing: the same bytes are already durable.
                std::fs::remove_file(&from)?;
                return Ok(size);
            }
            file.sync_all()?;
            let dir = to.parent().expect("blob path has a parent");
            std::fs::create_dir_all(dir)?;
            std::fs::rename(&from, &to)?;
            sync_dir(dir)?;
            // The lock is released only now, when `file` closes.
            drop(file);
            Ok(size)
        })
        .await
        .map_err(io::Error::other)?
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        match tokio::fs::remove_file(&self.path).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}
