//! The GC data set: which blobs each manifest refers to, where each blob is
//! pushed, which manifests are deleted, and so what a GC must free.

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::data::Pool;
use crate::registry::{sha256_digest, OCI_MANIFEST};

/// Blobs one manifest refers to: a config and 4 layers.
pub const REFS: usize = 5;
/// Bytes of each blob.
pub const BLOB_LEN: usize = 32;

/// `blobs` tiny distinct blobs and `manifests` OCI image manifests over
/// `repos` repositories. Manifest `j` lives in repository `j % repos`, tagged
/// `m{j:06}`, and refers to the `REFS` consecutive blobs (modulo `blobs`) from
/// `j * blobs / manifests` on: each blob once when `blobs == 5 * manifests`
/// (the defaults), neighbours sharing blobs when there are fewer, blobs
/// nothing refers to when there are more. The odd manifests are deleted.
pub struct Plan {
    pub blobs: usize,
    pub manifests: usize,
    pub repos: usize,
    /// `sha256:...` of each blob.
    pub digests: Vec<String>,
    /// (blob, repository): every repository a blob is pushed into, i.e.
    /// those of the manifests referring to it (or `blob % repos` when none
    /// does), in blob order.
    pub pushes: Vec<(u32, u32)>,
}

/// What a GC of the plan must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    /// Blobs referred to by deleted manifests only.
    pub only_deleted: usize,
    /// Blobs no manifest ever referred to.
    pub unreferenced: usize,
    /// Blobs a kept manifest refers to.
    pub kept_blobs: usize,
    pub kept_manifests: usize,
    pub deleted_manifests: usize,
}

impl Expected {
    /// Blobs a GC with no grace period frees.
    pub fn freed(&self) -> usize {
        self.only_deleted + self.unreferenced
    }
}

impl Plan {
    pub fn new(blobs: usize, manifests: usize, repos: usize) -> Plan {
        assert!(blobs >= REFS && manifests >= 2 && repos >= 1);
        let repos = repos.min(manifests);
        let digests = (0..blobs).map(|i| sha256_digest(&blob_bytes(i))).collect();
        let mut plan = Plan {
            blobs,
            manifests,
            repos,
            digests,
            pushes: Vec::new(),
        };
        plan.pushes = plan.push_pairs();
        plan
    }

    fn push_pairs(&self) -> Vec<(u32, u32)> {
        let mut wanted: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); self.blobs];
        for j in 0..self.manifests {
            for i in self.refs(j) {
                wanted[i].insert(self.repo_of(j) as u32);
            }
        }
        let mut out = Vec::with_capacity(self.blobs);
        for (i, repos) in wanted.into_iter().enumerate() {
            if repos.is_empty() {
                out.push((i as u32, (i % self.repos) as u32));
            }
            out.extend(repos.into_iter().map(|r| (i as u32, r)));
        }
        out
    }

    /// The blobs manifest `j` refers to: config first, then the layers.
    pub fn refs(&self, j: usize) -> [usize; REFS] {
        let start = (j as u128 * self.blobs as u128 / self.manifests as u128) as usize;
        std::array::from_fn(|k| (start + k) % self.blobs)
    }

    pub fn repo_of(&self, j: usize) -> usize {
        j % self.repos
    }

    pub fn deleted(j: usize) -> bool {
        j % 2 == 1
    }

    /// Manifest `j`: an OCI image manifest, distinct by its annotation.
    pub fn manifest(&self, j: usize) -> Bytes {
        let refs = self.refs(j);
        let layers: Vec<(&str, u64)> = refs[1..]
            .iter()
            .map(|&i| (self.digests[i].as_str(), BLOB_LEN as u64))
            .collect();
        let config = (self.digests[refs[0]].as_str(), BLOB_LEN as u64);
        image_manifest(config, &layers, &j.to_string())
    }

    /// Whether a kept manifest refers to each blob.
    fn kept_refs(&self) -> Vec<bool> {
        let mut kept = vec![false; self.blobs];
        for j in (0..self.manifests).filter(|j| !Plan::deleted(*j)) {
            for i in self.refs(j) {
                kept[i] = true;
            }
        }
        kept
    }

    pub fn expected(&self) -> Expected {
        let kept = self.kept_refs();
        let mut any = vec![false; self.blobs];
        for j in 0..self.manifests {
            for i in self.refs(j) {
                any[i] = true;
            }
        }
        let count = |f: &dyn Fn(usize) -> bool| (0..self.blobs).filter(|i| f(*i)).count();
        let deleted_manifests = (0..self.manifests).filter(|j| Plan::deleted(*j)).count();
        Expected {
            only_deleted: count(&|i| any[i] && !kept[i]),
            unreferenced: count(&|i| !any[i]),
            kept_blobs: count(&|i| kept[i]),
            kept_manifests: self.manifests - deleted_manifests,
            deleted_manifests,
        }
    }

    /// Up to `n` kept manifests, evenly spread.
    pub fn kept_sample(&self, n: usize) -> Vec<usize> {
        let kept: Vec<usize> = (0..self.manifests).filter(|j| !Plan::deleted(*j)).collect();
        spread(&kept, n)
    }

    /// Up to `n` blobs a GC must free, evenly spread, each with a
    /// repository it was pushed into.
    pub fn freed_sample(&self, n: usize) -> Vec<(usize, usize)> {
        let kept = self.kept_refs();
        let freed: Vec<(usize, usize)> = self
            .pushes
            .iter()
            .map(|&(i, r)| (i as usize, r as usize))
            .filter(|(i, _)| !kept[*i])
            .collect();
        spread(&freed, n)
    }

    /// The hex part of every blob digest and of every manifest digest, for
    /// telling a blob store's files apart.
    pub fn known_hex(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
        let blobs = self.digests.iter().map(|d| hex(d)).collect();
        let manifests = (0..self.manifests)
            .map(|j| hex(&sha256_digest(&self.manifest(j))))
            .collect();
        (blobs, manifests)
    }
}

/// An OCI image manifest of a config and layers (digest, size), with the
/// annotation `org.example.berth-bench.gc`.
pub fn image_manifest(config: (&str, u64), layers: &[(&str, u64)], annotation: &str) -> Bytes {
    let desc = |media: &str, (digest, size): (&str, u64)| serde_json::json!({ "mediaType": media, "digest": digest, "size": size });
    let layer = "application/vnd.oci.image.layer.v1.tar+gzip";
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": layers.iter().map(|l| desc(layer, *l)).collect::<Vec<_>>(),
        "annotations": { "org.example.berth-bench.gc": annotation },
    });
    Bytes::from(serde_json::to_vec(&v).expect("manifest serializes"))
}

pub fn repo_name(r: usize) -> String {
    format!("gcbench/r{r:03}")
}

pub fn tag_name(j: usize) -> String {
    format!("m{j:06}")
}

/// Blob `i`: its index, then pseudo-random bytes; distinct for every `i`.
pub fn blob_bytes(i: usize) -> Bytes {
    let mut v = (i as u64).to_le_bytes().to_vec();
    v.extend_from_slice(&Pool::small(0x6763_0000_0000 ^ i as u64, BLOB_LEN - 8));
    Bytes::from(v)
}

/// Up to `n` items of `v`, evenly spread (all of them when there are fewer).
fn spread<T: Clone>(v: &[T], n: usize) -> Vec<T> {
    if v.len() <= n {
        return v.to_vec();
    }
    (0..n).map(|k| v[k * v.len() / n].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_five_blobs_a_manifest_each_blob_is_referred_to_once() {
        let plan = Plan::new(500, 100, 10);
        assert_eq!(plan.refs(0), [0, 1, 2, 3, 4]);
        assert_eq!(plan.refs(99), [495, 496, 497, 498, 499]);
        assert_eq!(plan.pushes.len(), 500);
        let e = plan.expected();
        assert_eq!(e.only_deleted, 250);
        assert_eq!(e.unreferenced, 0);
        assert_eq!(e.kept_blobs, 250);
        assert_eq!((e.kept_manifests, e.deleted_manifests), (50, 50));
        assert_eq!(blob_bytes(7).len(), BLOB_LEN);
        assert_ne!(plan.digests[0], plan.digests[1]);
    }

    #[test]
    fn fewer_blobs_are_shared_and_kept_when_a_kept_manifest_refers_to_them() {
        // Windows of 5 starting every 4 blobs: neighbours share one blob.
        let plan = Plan::new(400, 100, 10);
        assert_eq!(plan.refs(1), [4, 5, 6, 7, 8]);
        assert_eq!(plan.refs(99), [396, 397, 398, 399, 0]);
        let e = plan.expected();
        // Each deleted manifest frees its 3 blobs not shared with a neighbour.
        assert_eq!(e.only_deleted, 150);
        assert_eq!(e.kept_blobs + e.freed(), 400);
        // A shared blob is pushed into both neighbours' repositories.
        assert!(plan.pushes.contains(&(4, 0)) && plan.pushes.contains(&(4, 1)));
        for (i, _) in plan.freed_sample(1000) {
            assert!(!plan.kept_refs()[i]);
        }
    }

    #[test]
    fn more_blobs_leave_some_unreferenced() {
        let plan = Plan::new(700, 100, 100);
        let e = plan.expected();
        assert_eq!(e.unreferenced, 200);
        assert_eq!(e.only_deleted, 250);
        assert_eq!(plan.kept_sample(10).len(), 10);
        assert!(plan.kept_sample(10).iter().all(|j| j % 2 == 0));
        let (blobs, manifests) = plan.known_hex();
        assert_eq!((blobs.len(), manifests.len()), (700, 100));
    }
}
