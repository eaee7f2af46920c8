//! The test suite every metadata backend must pass.

use bytes::Bytes;

use super::*;

fn repo(s: &str) -> RepoName {
    s.parse().unwrap()
}

fn digest(n: u8) -> Digest {
    Digest::sha256_of(&[n])
}

fn manifest(
    r: &str,
    d: Digest,
    tag: Option<&str>,
    blobs: Vec<Ref>,
    subject: Option<Digest>,
) -> NewManifest {
    NewManifest {
        repo: repo(r),
        digest: d,
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        content: Bytes::from_static(b"{}"),
        artifact_type: Some("application/x-test".into()),
        subject,
        annotations: Some(r#"{"k":"v"}"#.into()),
        blobs,
        children: Vec::new(),
        tag: tag.map(|t| t.parse().unwrap()),
        immutable_rule: None,
    }
}

fn all() -> Page {
    Page {
        last: None,
        limit: 1000,
    }
}

pub async fn run(m: &dyn Metadata) {
    blob_links(m).await;
    manifests_and_tags(m).await;
    references_are_checked(m).await;
    referrers(m).await;
    catalog_pages(m).await;
    usage(m).await;
    uploads(m).await;
    m.ping().await.unwrap();
}

async fn blob_links(m: &dyn RegistryStore) {
    let (a, b) = (repo("links/a"), repo("links/b"));
    m.link_blob(&a, &digest(1), 10, true).await.unwrap();
    m.link_blob(&a, &digest(1), 10, true).await.unwrap();
    assert_eq!(
        m.linked_blob(&a, &digest(1)).await.unwrap().map(|l| l.size),
        Some(10)
    );
    assert_eq!(
        m.linked_blob(&b, &digest(1)).await.unwrap().map(|l| l.size),
        None
    );
    assert_eq!(
        m.visible_holder(&digest(1), &Visible::All).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        m.visible_holder(&digest(2), &Visible::All).await.unwrap(),
        None
    );
    // `links` is no project: only `Visible::All` sees its repositories.
    let stranger = Visible::Projects {
        member: Some("nobody".into()),
        project: None,
    };
    assert_eq!(m.visible_holder(&digest(1), &stranger).await.unwrap(), None);
    assert!(m.unlink_blob(&a, &digest(1)).await.unwrap());
    assert!(!m.unlink_blob(&a, &digest(1)).await.unwrap());
    assert_eq!(
        m.linked_blob(&a, &digest(1)).await.unwrap().map(|l| l.size),
        None
    );
}

async fn manifests_and_tags(m: &dyn RegistryStore) {
    let r = repo("tags/app");
    m.link_blob(&r, &digest(2), 5, true).await.unwrap();
    let blobs = vec![Ref {
        digest: digest(2),
        size: 5,
    }];
    for tag in ["b", "a", "C", "1"] {
        m.put_manifest(&manifest(
            "tags/app",
            digest(3),
            Some(tag),
            blobs.clone(),
            None,
        ))
        .await
        .unwrap();
    }
    assert_eq!(
        m.list_tags(&r, &all()).await.unwrap().unwrap(),
        ["1", "C", "a", "b"]
    );
    let page = Page {
        last: Some("C".into()),
        limit: 1,
    };
    assert_eq!(m.list_tags(&r, &page).await.unwrap().unwrap(), ["a"]);
    let past_the_end = Page {
        last: Some("b".into()),
        limit: 10,
    };
    assert!(m
        .list_tags(&r, &past_the_end)
        .await
        .unwrap()
        .unwrap()
        .is_empty());
    assert_eq!(m.list_tags(&repo("tags/none"), &all()).await.unwrap(), None);
    let by_tag = m
        .get_manifest(&r, &Reference::Tag("a".parse().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_tag.digest, digest(3));
    assert!(m
        .get_manifest(&r, &Reference::Digest(digest(3)))
        .await
        .unwrap()
        .is_some());
    // Moving a tag.
    m.put_manifest(&manifest(
        "tags/app",
        digest(4),
        Some("a"),
        blobs.clone(),
        None,
    ))
    .await
    .unwrap();
    let moved = m
        .get_manifest(&r, &Reference::Tag("a".parse().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.digest, digest(4));
    // Deleting a tag keeps the manifest; deleting a manifest drops its tags.
    assert!(m.delete_tag(&r, &"b".parse().unwrap()).await.unwrap());
    assert!(!m.delete_tag(&r, &"b".parse().unwrap()).await.unwrap());
    assert!(m
        .get_manifest(&r, &Reference::Digest(digest(3)))
        .await
        .unwrap()
        .is_some());
    assert!(m
        .delete_manifest(&r, &digest(3), &ProjectPolicy::default())
        .await
        .unwrap());
    assert!(!m
        .delete_manifest(&r, &digest(3), &ProjectPolicy::default())
        .await
        .unwrap());
    assert_eq!(m.list_tags(&r, &all()).await.unwrap().unwrap(), ["a"]);
}

async fn references_are_checked(m: &dyn RegistryStore) {
    let r = repo("refs/app");
    let missing = manifest(
        "refs/app",
        digest(5),
        None,
        vec![Ref {
            digest: digest(6),
            size: 1,
        }],
        None,
    );
    assert!(
        matches!(m.put_manifest(&missing).await, Err(MetadataError::MissingReference(d)) if d == digest(6))
    );
    m.link_blob(&r, &digest(6), 1, true).await.unwrap();
    let wrong_size = manifest(
        "refs/app",
        digest(5),
        None,
        vec![Ref {
            digest: digest(6),
            size: 2,
        }],
        None,
    );
    assert!(matches!(
        m.put_manifest(&wrong_size).await,
        Err(MetadataError::SizeMismatch { .. })
    ));
    assert!(m
        .get_manifest(&r, &Reference::Digest(digest(5)))
        .await
        .unwrap()
        .is_none());
    let mut index = manifest("refs/app", digest(7), None, vec![], None);
    index.children = vec![Ref {
        digest: digest(5),
        size: 2,
    }];
    assert!(matches!(
        m.put_manifest(&index).await,
        Err(MetadataError::MissingReference(_))
    ));
    m.put_manifest(&manifest(
        "refs/app",
        digest(5),
        None,
        vec![Ref {
            digest: digest(6),
            size: 1,
        }],
        None,
    ))
    .await
    .unwrap();
    m.put_manifest(&index).await.unwrap();
}

async fn referrers(m: &dyn RegistryStore) {
    let r = repo("referrers/app");
    let subject = digest(100);
    m.put_manifest(&manifest(
        "referrers/app",
        digest(8),
        None,
        vec![],
        Some(subject.clone()),
    ))
    .await
    .unwrap();
    let mut other = manifest(
        "referrers/app",
        digest(9),
        None,
        vec![],
        Some(subject.clone()),
    );
    other.artifact_type = Some("application/x-other".into());
    m.put_manifest(&other).await.unwrap();
    let all_refs = m.referrers(&r, &subject, None).await.unwrap();
    assert_eq!(all_refs.len(), 2);
    assert_eq!(
        all_refs
            .iter()
            .find(|x| x.digest == digest(8))
            .unwrap()
            .annotations
            .as_deref(),
        Some(r#"{"k":"v"}"#)
    );
    let filtered = m
        .referrers(&r, &subject, Some("application/x-other"))
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].digest, digest(9));
    assert!(m
        .referrers(&r, &digest(101), None)
        .await
        .unwrap()
        .is_empty());
}

async fn catalog_pages(m: &dyn RegistryStore) {
    m.link_blob(&repo("catalog/blob-only"), &digest(10), 1, true)
        .await
        .unwrap();
    for name in ["catalog/z", "catalog/a", "catalog/m"] {
        m.put_manifest(&manifest(name, digest(11), Some("t"), vec![], None))
            .await
            .unwrap();
    }
    let names = m.list_repositories(&all(), &Visible::All).await.unwrap();
    let ours: Vec<_> = names.iter().filter(|n| n.starts_with("catalog/")).collect();
    assert_eq!(ours, ["catalog/a", "catalog/m", "catalog/z"]);
    let page = Page {
        last: Some("catalog/a".into()),
        limit: 1,
    };
    assert_eq!(
        m.list_repositories(&page, &Visible::All).await.unwrap(),
        ["catalog/m"]
    );
    assert!(m
        .delete_manifest(&repo("catalog/m"), &digest(11), &ProjectPolicy::default())
        .await
        .unwrap());
    assert!(!m
        .list_repositories(&all(), &Visible::All)
        .await
        .unwrap()
        .contains(&"catalog/m".to_string()));
}

fn usage_of(projects: &[ProjectUsage], name: &str) -> Option<(u64, u64)> {
    projects
        .iter()
        .find(|u| u.project == name)
        .map(|u| (u.repositories, u.storage_bytes))
}

async fn repos_of(m: &dyn Metadata, project: &str, after: &str) -> Vec<(String, u64, u64)> {
    m.repositories_in(project, after, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.name, r.tags, r.storage_bytes))
        .collect()
}

/// Usage follows every write: repositories holding a manifest, tags, bytes
/// of distinct blobs (a blob shared by two repositories counts once for
/// their project), last push.
pub(super) async fn usage(m: &dyn Metadata) {
    let projects = ["use".to_string(), "use-other".to_string()];
    let (a, b, bare) = (repo("use/a"), repo("use/b"), repo("use"));
    let (shared, own) = (digest(20), digest(21));
    m.link_blob(&a, &shared, 100, true).await.unwrap();
    m.link_blob(&a, &own, 50, true).await.unwrap();
    m.link_blob(&b, &shared, 100, true).await.unwrap();
    m.link_blob(&repo("use-other/x"), &shared, 100, true)
        .await
        .unwrap();
    // Blobs alone make no repository of the project's.
    assert_eq!(
        usage_of(&m.project_usage(&projects).await.unwrap(), "use"),
        None
    );
    let blobs = |d: &[&Digest]| {
        d.iter()
            .map(|d| Ref {
                digest: (*d).clone(),
                size: if **d == shared { 100 } else { 50 },
            })
            .collect()
    };
    m.put_manifest(&manifest(
        "use/a",
        digest(22),
        Some("v1"),
        blobs(&[&shared, &own]),
        None,
    ))
    .await
    .unwrap();
    m.put_manifest(&manifest(
        "use/b",
        digest(23),
        Some("v1"),
        blobs(&[&shared]),
        None,
    ))
    .await
    .unwrap();
    m.put_manifest(&manifest("use", digest(24), Some("v1"), vec![], None))
        .await
        .unwrap();
    let used = m.project_usage(&projects).await.unwrap();
    assert_eq!(usage_of(&used, "use"), Some((3, 150)));
    assert_eq!(usage_of(&used, "use-other"), None, "no manifest there");
    assert!(used[0].last_push.is_some());
    assert_eq!(
        repos_of(m, "use", "").await,
        [
            ("use".into(), 1, 0),
            ("use/a".into(), 1, 150),
            ("use/b".into(), 1, 100)
        ]
    );
    assert_eq!(
        repos_of(m, "use", "use").await,
        [("use/a".into(), 1, 150), ("use/b".into(), 1, 100)]
    );
    assert_eq!(m.repositories_in("use", "", 1).await.unwrap().len(), 1);

    // A second tag, then its deletion.
    m.put_manifest(&manifest(
        "use/a",
        digest(22),
        Some("v2"),
        blobs(&[&shared, &own]),
        None,
    ))
    .await
    .unwrap();
    let page = m
        .tags_page(&a, TagOrder::Name, 0, 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((page.total, page.tags.len()), (2, 1));
    assert!(m.delete_tag(&a, &"v2".parse().unwrap()).await.unwrap());
    assert_eq!(repos_of(m, "use", "use").await[0], ("use/a".into(), 1, 150));

    // Unlinking: the project keeps a blob's bytes while any repository links it.
    assert!(m.unlink_blob(&a, &own).await.unwrap());
    assert!(m.unlink_blob(&a, &shared).await.unwrap());
    assert_eq!(repos_of(m, "use", "use").await[0], ("use/a".into(), 1, 0));
    assert_eq!(
        usage_of(&m.project_usage(&projects).await.unwrap(), "use"),
        Some((3, 100))
    );
    assert!(m.unlink_blob(&b, &shared).await.unwrap());
    assert_eq!(
        usage_of(&m.project_usage(&projects).await.unwrap(), "use"),
        Some((3, 0))
    );

    // A repository without manifests leaves the project's count and list.
    assert!(m
        .delete_manifest(&b, &digest(23), &ProjectPolicy::default())
        .await
        .unwrap());
    assert!(m
        .delete_manifest(&bare, &digest(24), &ProjectPolicy::default())
        .await
        .unwrap());
    assert_eq!(
        usage_of(&m.project_usage(&projects).await.unwrap(), "use"),
        Some((1, 0))
    );
    assert_eq!(repos_of(m, "use", "").await, [("use/a".into(), 1, 0)]);
}

async fn uploads(m: &dyn RegistryStore) {
    let id = uuid::Uuid::new_v4().to_string();
    m.create_upload(&id, &repo("uploads/app")).await.unwrap();
    assert_eq!(
        m.upload_repository(&id).await.unwrap(),
        Some(repo("uploads/app"))
    );
    assert!(m.repository_exists(&repo("uploads/app")).await.unwrap());
    let listed = m.list_uploads().await.unwrap();
    let (_, created) = listed
        .iter()
        .find(|(listed, _)| *listed == id)
        .expect("the session is listed");
    assert!((crate::metadata::now_ms() - created).abs() < 60_000);
    m.delete_upload(&id).await.unwrap();
    assert_eq!(m.upload_repository(&id).await.unwrap(), None);
    assert!(!m
        .list_uploads()
        .await
        .unwrap()
        .iter()
        .any(|(l, _)| *l == id));
}

#[tokio::test]
async fn sqlite_passes_suite() {
    let dir = tempfile::tempdir().unwrap();
    let m = SqliteMetadata::open(&dir.path().join("metadata.db"))
        .await
        .unwrap();
    run(&m).await;
    super::sqlite::tests::assert_counters_consistent(&m).await;
    // Reopening keeps what was stored.
    drop(m);
    let m = SqliteMetadata::open(&dir.path().join("metadata.db"))
        .await
        .unwrap();
    assert_eq!(
        m.list_tags(&repo("tags/app"), &all())
            .await
            .unwrap()
            .unwrap(),
        ["a"]
    );
}

#[tokio::test]
async fn postgres_passes_suite() {
    let url = super::test_postgres::fresh_database().await;
    let m = PgMetadata::open(&url, 5).await.unwrap();
    run(&m).await;
    super::postgres::tests::assert_counters_consistent(&m).await;
    // Another replica opening the same database sees what was stored.
    let other = PgMetadata::open(&url, 2).await.unwrap();
    assert_eq!(
        other
            .list_tags(&repo("tags/app"), &all())
            .await
            .unwrap()
            .unwrap(),
        ["a"]
    );
}
