use super::cache::ReadCache;
use super::{Error, Registry, Result};
use crate::metadata::{now_ms, LinkedBlob};
use crate::oci::{Digest, RepoName};
use crate::storage::ByteStream;

/// How long a pull's presigned URL stays valid.
const REDIRECT_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// A byte range as a client asked for it (`bytes=start-end`, `bytes=start-`
/// or `bytes=-suffix`), resolved against the blob's size by the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    From {
        start: u64,
        end: Option<u64>,
    },
    Suffix(u64),
    /// `bytes=first-last` with `last` before `first`: never satisfiable
    /// (416), whatever the blob's size.
    Reversed,
}

impl ByteRange {
    /// Inclusive (first, last) byte positions inside a blob of `size` bytes.
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From { start, end } => {
                let last = end.unwrap_or(u64::MAX).min(size.checked_sub(1)?);
                (start <= last).then_some((start, last))
            }
            ByteRange::Suffix(n) if n > 0 && size > 0 => Some((size.saturating_sub(n), size - 1)),
            ByteRange::Suffix(_) | ByteRange::Reversed => None,
        }
    }
}

pub struct BlobBody {
    /// Total size of the blob.
    pub size: u64,
    /// Inclusive range served, when the request asked for one.
    pub range: Option<(u64, u64)>,
    pub stream: ByteStream,
}

impl Registry {
    /// Size of a blob this repository may serve. A link older than half
    /// the collection grace period is touched first: a client that was
    /// told the repository has the blob (and so skips uploading it) gets
    /// at least half a grace period to reference it in a manifest.
    pub async fn stat_blob(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        let key = ReadCache::key(repo.as_str(), digest);
        let linked = match self.cache.blob(&key) {
            Some(linked) => linked,
            None => {
                let ticket = self.cache.ticket();
                let linked = self
                    .metadata
                    .linked_blob(repo, digest)
                    .await?
                    .ok_or(Error::BlobUnknown)?;
                self.cache.put_blob(key.clone(), ticket, linked);
                linked
            }
        };
        let now = now_ms();
        if now - linked.touched_at > self.settings.gc_grace.as_millis() as i64 / 2 {
            let ticket = self.cache.ticket();
            if !self.metadata.touch_link(repo, digest).await? {
                // Collected since it was cached: the client must upload it.
                self.cache.invalidate();
                return Err(Error::BlobUnknown);
            }
            let touched = LinkedBlob {
                touched_at: now,
                ..linked
            };
            self.cache.put_blob(key, ticket, touched);
        }
        Ok(linked.size)
    }

    /// Where the client may fetch the whole blob straight from the store
    /// (a presigned URL, when the store offers one and `redirect_pulls` is
    /// on), after the same checks as a download.
    pub async fn blob_redirect(&self, repo: &RepoName, digest: &Digest) -> Result<Option<String>> {
        self.stat_blob(repo, digest).await?;
        Ok(self.storage.redirect_url(digest, REDIRECT_TTL).await?)
    }

    pub async fn get_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobBody> {
        let size = self.stat_blob(repo, digest).await?;
        let range = match range {
            Some(r) => Some(r.resolve(size).ok_or(Error::RangeNotSatisfiable { size })?),
            None => None,
        };
        let stream = match self
            .storage
            .get(digest, range.map(|(first, last)| (first, last - first + 1)))
            .await
        {
            Ok(stream) => stream,
            Err(crate::storage::StorageError::NotFound) => {
                // Linked in metadata but gone from storage (removed by hand or
                // lost): unlink it so HEAD stops claiming it and clients push
                // it again, instead of skipping an unservable layer forever.
                tracing::warn!(%repo, %digest, "blob bytes missing from storage; unlinking it");
                self.metadata.unlink_blob(repo, digest).await?;
                self.cache.invalidate();
                return Err(Error::BlobUnknown);
            }
            Err(e) => return Err(e.into()),
        };
        Ok(BlobBody {
            size,
            range,
            stream,
        })
    }

    /// Removes the blob from this repository; the bytes stay until garbage
    /// collection finds no repository using them.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let existed = self.metadata.unlink_blob(repo, digest).await?;
        self.cache.invalidate();
        if existed {
            Ok(())
        } else {
            Err(Error::BlobUnknown)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ByteRange;

    #[test]
    fn ranges_resolve_against_size() {
        assert_eq!(
            ByteRange::From {
                start: 0,
                end: Some(9)
            }
            .resolve(100),
            Some((0, 9))
        );
        assert_eq!(
            ByteRange::From {
                start: 90,
                end: Some(200)
            }
            .resolve(100),
            Some((90, 99))
        );
        assert_eq!(
            ByteRange::From {
                start: 10,
                end: None
            }
            .resolve(100),
            Some((10, 99))
        );
        assert_eq!(
            ByteRange::From {
                start: 100,
                end: None
            }
            .resolve(100),
            None
        );
        assert_eq!(
            ByteRange::From {
                start: 5,
                end: Some(4)
            }
            .resolve(100),
            None
        );
        assert_eq!(ByteRange::Suffix(10).resolve(100), Some((90, 99)));
        assert_eq!(ByteRange::Suffix(1000).resolve(100), Some((0, 99)));
        assert_eq!(ByteRange::Suffix(0).resolve(100), None);
        assert_eq!(
            ByteRange::From {
                start: 0,
                end: None
            }
            .resolve(0),
            None
        );
    }
}
