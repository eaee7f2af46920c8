//! The lifecycle suite every metadata backend must pass: the collection
//! protocol's guarantees (docs/GC.md) as the backend keeps them, run
//! bookkeeping with its lease, quotas and immutability inside the writes,
//! and pull times.

use bytes::Bytes;

use super::*;

fn repo(s: &str) -> RepoName {
    s.parse().unwrap()
}

fn digest(label: &str) -> Digest {
    Digest::sha256_of(label.as_bytes())
}

fn image(r: &str, label: &str, tag: Option<&str>, blobs: &[(&Digest, u64)]) -> NewManifest {
    NewManifest {
        repo: repo(r),
        digest: digest(label),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        content: Bytes::from(label.to_string()),
        artifact_type: None,
        subject: None,
        annotations: None,
        blobs: blobs
            .iter()
            .map(|(d, size)| Ref {
                digest: (*d).clone(),
                size: *size,
            })
            .collect(),
        children: Vec::new(),
        tag: tag.map(|t| t.parse().unwrap()),
        immutable_rule: None,
    }
}

pub async fn run(m: &dyn RegistryStore) {
    flips_spare_what_is_linked_or_touched(m).await;
    links_refuse_deleting_blobs(m).await;
    sweeps_keep_what_tags_reach(m).await;
    large_repositories_are_swept_whole(m).await;
    removals_move_when_a_repository_goes(m).await;
    one_run_at_a_time_with_a_lease(m).await;
    quotas_and_immutability_hold_inside_writes(m).await;
    pulls_are_recorded(m).await;
}

const FUTURE: i64 = i64::MAX;

async fn flips_spare_what_is_linked_or_touched(m: &dyn RegistryStore) {
    let (linked, loose) = (digest("flip linked"), digest("flip loose"));
    m.link_blob(&repo("flip/a"), &linked, 1, true)
        .await
        .unwrap();
    m.reserve_blob(&repo("flip/a"), &loose, 2).await.unwrap();
    // Touched after the cutoff: kept.
    let before = now_ms() - 60_000;
    assert!(m
        .flip_blobs(None, before, 1, 100, false)
        .await
        .unwrap()
        .is_empty());
    // Untouched since: only the unlinked one goes, and only once.
    let dry = m.flip_blobs(None, FUTURE, 1, 100, true).await.unwrap();
    assert_eq!(dry.iter().map(|b| &b.digest).collect::<Vec<_>>(), [&loose]);
    let flipped = m.flip_blobs(None, FUTURE, 1, 100, false).await.unwrap();
    assert_eq!(
        flipped,
        [SweptBlob {
            digest: loose.clone(),
            size: 2
        }]
    );
    assert!(m
        .flip_blobs(None, FUTURE, 2, 100, false)
        .await
        .unwrap()
        .is_empty());
    // Left by run 1, which is not running: abandoned, for anyone else.
    assert_eq!(m.abandoned_blobs(2, 10).await.unwrap().len(), 1);
    assert!(m.abandoned_blobs(1, 10).await.unwrap().is_empty());
    m.forget_blobs(std::slice::from_ref(&loose)).await.unwrap();
    assert!(m.abandoned_blobs(2, 10).await.unwrap().is_empty());
    // Gone: a new upload starts afresh.
    m.reserve_blob(&repo("flip/a"), &loose, 2).await.unwrap();
    m.link_blob(&repo("flip/a"), &loose, 2, true).await.unwrap();
    let found = m.linked_blob(&repo("flip/a"), &loose).await.unwrap();
    assert_eq!(found.map(|l| l.size), Some(2));
}

async fn links_refuse_deleting_blobs(m: &dyn RegistryStore) {
    let d = digest("deleting");
    m.reserve_blob(&repo("del/a"), &d, 3).await.unwrap();
    assert_eq!(
        m.flip_blobs(None, FUTURE, 7, 1000, false)
            .await
            .unwrap()
            .len(),
        1
    );
    for result in [
        m.reserve_blob(&repo("del/a"), &d, 3).await,
        m.link_blob(&repo("del/a"), &d, 3, true).await,
        m.link_blob(&repo("del/b"), &d, 3, false).await,
    ] {
        assert!(
            matches!(result, Err(MetadataError::BlobDeleting(_))),
            "{result:?}"
        );
    }
    assert_eq!(m.linked_blob(&repo("del/a"), &d).await.unwrap(), None);
    m.forget_blobs(&[d]).await.unwrap();
}

async fn sweeps_keep_what_tags_reach(m: &dyn RegistryStore) {
    let (kept, dropped, stray) = (
        digest("sweep kept"),
        digest("sweep dropped"),
        digest("sweep stray"),
    );
    let r = "sweep/app";
    for d in [&kept, &dropped, &stray] {
        m.link_blob(&repo(r), d, 5, true).await.unwrap();
    }
    m.put_manifest(&image(r, "sweep tagged", Some("v1"), &[(&kept, 5)]))
        .await
        .unwrap();
    m.put_manifest(&image(r, "sweep untagged", None, &[(&dropped, 5)]))
        .await
        .unwrap();
    let id = m.sweep_repositories(Some("sweep"), 0, 10).await.unwrap()[0].id;
    let plan = RepoPlan {
        tags: Vec::new(),
        untagged_before: Some(FUTURE),
        links_before: FUTURE,
    };
    let dry = m.sweep_repository(id, &plan, 9, true).await.unwrap();
    assert_eq!(
        dry,
        RepoSwept {
            tags: 0,
            manifests: 1,
            links: 2,
            repository: false
        }
    );
    let flip = m.flip_blobs(None, FUTURE, 9, 1000, true).await.unwrap();
    let would: Vec<&Digest> = flip.iter().map(|b| &b.digest).collect();
    assert!(would.contains(&&dropped) && would.contains(&&stray) && !would.contains(&&kept));
    m.gc_marked(9).await.unwrap();
    // Keeping untagged manifests keeps their links.
    let keep = RepoPlan {
        untagged_before: None,
        ..plan.clone()
    };
    assert_eq!(
        m.sweep_repository(id, &keep, 10, false)
            .await
            .unwrap()
            .links,
        1
    );
    assert_eq!(
        m.sweep_repository(id, &plan, 10, false)
            .await
            .unwrap()
            .manifests,
        1
    );
    let tags = RepoPlan {
        tags: vec!["v1".into()],
        ..plan.clone()
    };
    let swept = m.sweep_repository(id, &tags, 10, false).await.unwrap();
    assert_eq!(
        swept,
        RepoSwept {
            tags: 1,
            manifests: 1,
            links: 1,
            repository: true
        }
    );
    assert!(!m.repository_exists(&repo(r)).await.unwrap());
}

/// More than one transaction's worth of untagged manifests, links and
/// blobs: a sweep and a run's flips still take all of them, keep what the
/// tag reaches, and the repository goes once empty.
async fn large_repositories_are_swept_whole(m: &dyn RegistryStore) {
    let r = "bulk/app";
    let kept = digest("bulk kept");
    m.link_blob(&repo(r), &kept, 1, true).await.unwrap();
    m.put_manifest(&image(r, "bulk tagged", Some("v1"), &[(&kept, 1)]))
        .await
        .unwrap();
    for i in 0..450 {
        let d = digest(&format!("bulk layer {i}"));
        m.link_blob(&repo(r), &d, 1, true).await.unwrap();
        if i < 430 {
            let label = format!("bulk untagged {i}");
            m.put_manifest(&image(r, &label, None, &[(&d, 1)]))
                .await
                .unwrap();
        }
    }
    let id = m.sweep_repositories(Some("bulk"), 0, 10).await.unwrap()[0].id;
    let plan = RepoPlan {
        tags: Vec::new(),
        untagged_before: Some(FUTURE),
        links_before: FUTURE,
    };
    let swept = m.sweep_repository(id, &plan, 20, false).await.unwrap();
    assert_eq!(
        swept,
        RepoSwept {
            tags: 0,
            manifests: 430,
            links: 450,
            repository: false
        }
    );
    assert!(m.linked_blob(&repo(r), &kept).await.unwrap().is_some());
    // Nothing left to sweep: a second sweep finds nothing.
    assert_eq!(
        m.sweep_repository(id, &plan, 20, false).await.unwrap(),
        RepoSwept::default()
    );
    let mut flipped = Vec::new();
    let mut after: Option<Digest> = None;
    for _ in 0..10 {
        let batch = m
            .flip_blobs(after.as_ref(), FUTURE, 20, 200, false)
            .await
            .unwrap();
        let Some(last) = batch.last() else { break };
        after = Some(last.digest.clone());
        flipped.extend(batch.into_iter().map(|b| b.digest));
    }
    assert!(!flipped.contains(&kept));
    for i in 0..450 {
        assert!(
            flipped.contains(&digest(&format!("bulk layer {i}"))),
            "layer {i}"
        );
    }
    m.forget_blobs(&flipped).await.unwrap();
    let last = RepoPlan {
        tags: vec!["v1".into()],
        ..plan
    };
    assert!(
        m.sweep_repository(id, &last, 21, false)
            .await
            .unwrap()
            .repository
    );
}

async fn removals_move_when_a_repository_goes(m: &dyn RegistryStore) {
    let before = m.removals().await.unwrap();
    let d = digest("removal");
    m.link_blob(&repo("gone/app"), &d, 1, true).await.unwrap();
    assert_eq!(m.removals().await.unwrap(), before);
    let policy = ProjectPolicy::default();
    assert!(m
        .delete_repository(&repo("gone/app"), &policy)
        .await
        .unwrap());
    assert_ne!(m.removals().await.unwrap(), before);
}

async fn one_run_at_a_time_with_a_lease(m: &dyn RegistryStore) {
    let first = m.request_gc(false, "suite").await.unwrap().unwrap();
    assert_eq!(
        m.request_gc(true, "suite").await.unwrap(),
        Err(GcBusy(first.id))
    );
    let claimed = m.claim_gc("holder-a", 0).await.unwrap().unwrap();
    assert_eq!((claimed.id, claimed.state), (first.id, GcState::Running));
    assert!(m.claim_gc("holder-b", 0).await.unwrap().is_none());
    let stats = GcStats {
        blobs_swept: 3,
        ..GcStats::default()
    };
    assert!(m
        .gc_heartbeat(first.id, "holder-a", "blobs", &stats)
        .await
        .unwrap());
    assert!(!m
        .gc_heartbeat(first.id, "holder-b", "blobs", &stats)
        .await
        .unwrap());
    // Its heartbeat is older than "now + 1": taken as dead by the next claim.
    m.claim_gc("holder-b", now_ms() + 1).await.unwrap();
    let dead = m.gc_run(first.id).await.unwrap().unwrap();
    assert_eq!(dead.state, GcState::Failed);
    assert!(!m
        .gc_heartbeat(first.id, "holder-a", "blobs", &stats)
        .await
        .unwrap());
    let second = m.request_gc(true, "suite").await.unwrap().unwrap();
    m.claim_gc("holder-b", 0).await.unwrap().unwrap();
    m.finish_gc(second.id, "holder-b", &stats, None)
        .await
        .unwrap();
    let done = m.gc_run(second.id).await.unwrap().unwrap();
    assert_eq!(
        (done.state, done.stats.blobs_swept),
        (GcState::Succeeded, 3)
    );
    let listed = m.gc_runs(None, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [second.id, first.id]
    );
    assert_eq!(
        m.last_gc().await.unwrap(),
        Some(first.requested_at),
        "dry runs do not count"
    );
}

async fn quotas_and_immutability_hold_inside_writes(m: &dyn RegistryStore) {
    let policy = ProjectPolicy {
        quota_bytes: Some(100),
        quota_tags: Some(1),
        immutable_tags: vec!["v*".into()],
        ..ProjectPolicy::default()
    };
    m.set_project_policy("quota", &policy).await.unwrap();
    assert_eq!(m.project_policy("quota").await.unwrap(), policy);
    let (big, small) = (digest("quota big"), digest("quota small"));
    m.link_blob(&repo("quota/a"), &big, 80, true).await.unwrap();
    m.link_blob(&repo("quota/b"), &big, 80, true).await.unwrap();
    let over = m.link_blob(&repo("quota/a"), &small, 30, true).await;
    assert!(
        matches!(
            over,
            Err(MetadataError::QuotaExceeded {
                usage: 80,
                limit: 100,
                ..
            })
        ),
        "{over:?}"
    );
    assert!(matches!(
        m.reserve_blob(&repo("quota/a"), &small, 30).await,
        Err(MetadataError::QuotaExceeded { .. })
    ));
    assert_eq!(m.quota_usage("quota").await.unwrap().bytes, 80);
    let mut v1 = image("quota/a", "quota one", Some("v1"), &[(&big, 80)]);
    v1.immutable_rule = Some("v*".into());
    m.put_manifest(&v1).await.unwrap();
    m.put_manifest(&v1).await.unwrap();
    let mut moved = image("quota/a", "quota two", Some("v1"), &[(&big, 80)]);
    moved.immutable_rule = Some("v*".into());
    assert!(matches!(
        m.put_manifest(&moved).await,
        Err(MetadataError::ImmutableTag { .. })
    ));
    let second_tag = image("quota/a", "quota three", Some("latest"), &[(&big, 80)]);
    assert!(matches!(
        m.put_manifest(&second_tag).await,
        Err(MetadataError::QuotaExceeded { what: "tags", .. })
    ));
    let deleted = m
        .delete_manifest(&repo("quota/a"), &v1.digest, &policy)
        .await;
    assert!(matches!(deleted, Err(MetadataError::ImmutableTag { .. })));
    assert!(matches!(
        m.delete_repository(&repo("quota/a"), &policy).await,
        Err(MetadataError::ImmutableTag { .. })
    ));
    assert!(m
        .delete_repository(&repo("quota/a"), &ProjectPolicy::default())
        .await
        .unwrap());
    assert!(!m
        .delete_repository(&repo("quota/a"), &ProjectPolicy::default())
        .await
        .unwrap());
    let usage = m.quota_usage("quota").await.unwrap();
    assert_eq!(
        (usage.bytes, usage.tags, usage.repositories),
        (80, 0, 0),
        "quota/b still links the blob"
    );
    assert_eq!(m.projects_with_policies().await.unwrap(), ["quota"]);
}

async fn pulls_are_recorded(m: &dyn RegistryStore) {
    let d = digest("pulled blob");
    m.link_blob(&repo("pull/a"), &d, 1, true).await.unwrap();
    m.put_manifest(&image("pull/a", "pulled", Some("t"), &[(&d, 1)]))
        .await
        .unwrap();
    let id = m.sweep_repositories(Some("pull"), 0, 10).await.unwrap()[0].id;
    assert_eq!(m.tag_times(id).await.unwrap()[0].pulled_at, None);
    let pulls = [
        (repo("pull/a"), "t".to_string(), 5),
        (repo("pull/a"), "t".to_string(), 9),
        (repo("pull/a"), "none".to_string(), 9),
    ];
    m.record_pulls(&pulls).await.unwrap();
    m.record_pulls(&[(repo("pull/a"), "t".to_string(), 7)])
        .await
        .unwrap();
    assert_eq!(
        m.tag_times(id).await.unwrap()[0].pulled_at,
        Some(9),
        "the latest pull wins"
    );
    assert!(m
        .touch_manifest(&repo("pull/a"), &digest("pulled"))
        .await
        .unwrap());
    assert!(!m
        .touch_manifest(&repo("pull/a"), &digest("never pushed"))
        .await
        .unwrap());
    assert!(m.touch_link(&repo("pull/a"), &d).await.unwrap());
    assert!(!m.touch_link(&repo("pull/b"), &d).await.unwrap());
}

#[tokio::test]
async fn sqlite_passes_lifecycle_suite() {
    let dir = tempfile::tempdir().unwrap();
    let m = SqliteMetadata::open(&dir.path().join("metadata.db"))
        .await
        .unwrap();
    run(&m).await;
    super::sqlite::tests::assert_counters_consistent(&m).await;
}

#[tokio::test]
async fn postgres_passes_lifecycle_suite() {
    let url = super::test_postgres::fresh_database().await;
    let m = PgMetadata::open(&url, 5).await.unwrap();
    run(&m).await;
    super::postgres::tests::assert_counters_consistent(&m).await;
}
