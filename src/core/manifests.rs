//! Manifests, tags, referrers and the catalog.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::cache::ReadCache;
use super::{Error, Registry, Result};
use crate::metadata::{now_ms, ManifestRecord, MetadataError, NewManifest, Page, Ref, Visible};
use crate::oci::{media, Digest, ParsedManifest, Reference, RepoName};

/// Largest page a client may ask for with `n`; more entries follow via `Link`.
const MAX_PAGE: u32 = 10_000;
const DEFAULT_CATALOG_PAGE: u32 = 1000;

/// The outcome of a manifest PUT.
#[derive(Debug, Clone)]
pub struct PutManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

/// One page of a lexically ordered listing; `more` when entries follow.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<String>,
    pub more: bool,
}

fn refs(descriptors: &[crate::oci::Descriptor]) -> Vec<Ref> {
    descriptors
        .iter()
        .map(|d| Ref {
            digest: d.digest.clone(),
            size: d.size,
        })
        .collect()
}

impl Registry {
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PutManifest> {
        if body.len() > self.settings.max_manifest_bytes {
            return Err(Error::ManifestTooLarge {
                limit: self.settings.max_manifest_bytes,
            });
        }
        let parsed = ParsedManifest::parse(&body, content_type)
            .map_err(|e| Error::ManifestInvalid(e.to_string()))?;
        let descriptors = parsed.blobs.len() + parsed.children.len();
        if descriptors > self.settings.max_manifest_descriptors {
            return Err(Error::ManifestInvalid(format!(
                "the manifest lists {descriptors} descriptors; this registry accepts at most {} (limits.max_manifest_descriptors)",
                self.settings.max_manifest_descriptors
            )));
        }
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &body);
                if &actual != expected {
                    return Err(Error::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                actual
            }
            Reference::Tag(_) => Digest::sha256_of(&body),
        };
        let subject = parsed.subject.as_ref().map(|s| s.digest.clone());
        let manifest = NewManifest {
            immutable_rule: self.immutable_rule(repo, reference).await?,
            repo: repo.clone(),
            digest: digest.clone(),
            media_type: parsed.media_type,
            artifact_type: parsed.artifact_type,
            subject: subject.clone(),
            annotations: parsed.annotations.map(|a| Value::Object(a).to_string()),
            blobs: refs(&parsed.blobs),
            children: refs(&parsed.children),
            tag: match reference {
                Reference::Tag(t) => Some(t.clone()),
                Reference::Digest(_) => None,
            },
            content: body,
        };
        let stored = self.metadata.put_manifest(&manifest).await;
        self.cache.invalidate();
        stored?;
        Ok(PutManifest { digest, subject })
    }

    /// The immutability rule of `repo`'s project that protects the tag
    /// `reference` names, if any.
    async fn immutable_rule(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<String>> {
        let Reference::Tag(tag) = reference else {
            return Ok(None);
        };
        let policy = self.metadata.project_policy(repo.project()).await?;
        Ok(policy.immutable_rule(tag.as_str()).map(str::to_owned))
    }

    /// A manifest by tag or digest. `accept` lists the media types the client
    /// takes (empty: anything).
    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        accept: &[&str],
    ) -> Result<ManifestRecord> {
        let key = ReadCache::key(repo.as_str(), reference);
        let record = match self.cache.manifest(&key) {
            Some(record) => record,
            None => {
                let ticket = self.cache.ticket();
                let record = self
                    .metadata
                    .get_manifest(repo, reference)
                    .await?
                    .ok_or(Error::ManifestUnknown)?;
                self.cache.put_manifest(key.clone(), ticket, record.clone());
                record
            }
        };
        let record = self.keep_fresh(repo, key, record).await?;
        if let Reference::Tag(tag) = reference {
            self.pulls.record(repo, tag.as_str());
        }
        let acceptable = accept.is_empty()
            || accept.iter().any(|a| {
                *a == record.media_type
                    || matches!(*a, "*/*" | "application/*" | "application/json")
            });
        if !acceptable {
            return Err(Error::ManifestNotAcceptable {
                media_type: record.media_type,
            });
        }
        Ok(record)
    }

    /// Touches a manifest last touched more than half a grace period ago,
    /// so a client told it exists may still reference it (see
    /// `ManifestWrites::touch_manifest`); one collected since it was
    /// cached is unknown.
    async fn keep_fresh(
        &self,
        repo: &RepoName,
        key: String,
        record: ManifestRecord,
    ) -> Result<ManifestRecord> {
        let now = now_ms();
        if now - record.touched_at <= self.settings.gc_grace.as_millis() as i64 / 2 {
            return Ok(record);
        }
        let ticket = self.cache.ticket();
        if !self.metadata.touch_manifest(repo, &record.digest).await? {
            self.cache.invalidate();
            return Err(Error::ManifestUnknown);
        }
        let record = ManifestRecord {
            touched_at: now,
            ..record
        };
        self.cache.put_manifest(key, ticket, record.clone());
        Ok(record)
    }

    /// Deleting by digest removes the manifest and its tags; deleting by tag
    /// removes only that tag. An immutable tag is never deleted.
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        let policy = self.metadata.project_policy(repo.project()).await?;
        let existed = match reference {
            Reference::Digest(d) => self.metadata.delete_manifest(repo, d, &policy).await,
            Reference::Tag(t) => match policy.immutable_rule(t.as_str()) {
                Some(rule) => Err(MetadataError::ImmutableTag {
                    tag: t.to_string(),
                    rule: rule.to_string(),
                }),
                None => self.metadata.delete_tag(repo, t).await,
            },
        };
        self.cache.invalidate();
        let existed = existed?;
        if existed {
            Ok(())
        } else {
            Err(Error::ManifestUnknown)
        }
    }

    /// The referrers of `subject` as an OCI image index document.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Bytes> {
        let rows = self
            .metadata
            .referrers(repo, subject, artifact_type)
            .await?;
        let manifests: Vec<Value> = rows
            .into_iter()
            .map(|r| {
                let mut d = Map::new();
                d.insert("mediaType".into(), json!(r.media_type));
                d.insert("digest".into(), json!(r.digest));
                d.insert("size".into(), json!(r.size));
                if let Some(t) = r.artifact_type {
                    d.insert("artifactType".into(), json!(t));
                }
                if let Some(a) = r
                    .annotations
                    .and_then(|a| serde_json::from_str::<Value>(&a).ok())
                {
                    d.insert("annotations".into(), a);
                }
                Value::Object(d)
            })
            .collect();
        let index =
            json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": manifests});
        Ok(Bytes::from(index.to_string()))
    }

    pub async fn list_tags(
        &self,
        repo: &RepoName,
        n: Option<u32>,
        last: Option<String>,
    ) -> Result<ListPage> {
        // Without `n` the whole list comes back, as clients expect; with it,
        // pages are bounded so one request cannot ask for unbounded work.
        let limit = n.map_or(u32::MAX - 1, |n| n.min(MAX_PAGE));
        let page = Page {
            last,
            limit: limit + 1,
        };
        let tags = self
            .metadata
            .list_tags(repo, &page)
            .await?
            .ok_or(Error::NameUnknown)?;
        Ok(paged(tags, limit))
    }

    /// A page of the repositories `visible` admits: paging runs over what
    /// the caller may see, so neither the page nor its `Link` names others.
    pub async fn catalog(
        &self,
        n: Option<u32>,
        last: Option<String>,
        visible: &Visible,
    ) -> Result<ListPage> {
        let limit = n.unwrap_or(DEFAULT_CATALOG_PAGE).min(MAX_PAGE);
        let page = Page {
            last,
            limit: limit + 1,
        };
        let repos = self.metadata.list_repositories(&page, visible).await?;
        Ok(paged(repos, limit))
    }
}

fn paged(mut items: Vec<String>, limit: u32) -> ListPage {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    ListPage { items, more }
}
