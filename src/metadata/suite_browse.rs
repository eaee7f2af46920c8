//! The `Browse` part of the backend suites that the registry and access
//! suites leave out: a repository's tag pages (orders, offsets, sizes with
//! shared blobs counted once, an index's children and content) and the tags
//! of one digest. Every backend runs it, with `suite`'s usage part.

use bytes::Bytes;

use super::*;
use crate::oci::media;

fn digest(name: &str) -> Digest {
    Digest::sha256_of(name.as_bytes())
}

fn blob(name: &str, size: u64) -> Ref {
    Ref {
        digest: digest(name),
        size,
    }
}

fn manifest(repo: &RepoName, content: &str, tag: &str, blobs: Vec<Ref>) -> NewManifest {
    let content = Bytes::from(content.to_string());
    NewManifest {
        repo: repo.clone(),
        digest: Digest::sha256_of(&content),
        media_type: media::OCI_MANIFEST.into(),
        content,
        artifact_type: None,
        subject: None,
        annotations: None,
        blobs,
        children: Vec::new(),
        tag: Some(tag.parse().unwrap()),
        immutable_rule: None,
    }
}

/// Pushes (in this order, a few ms apart): `amd` (config 10 + layers 100,
/// 1000) tagged `v1`, `arm` (config 20 + layers 100, 2000) tagged `a-arm`,
/// and an index of both tagged `latest`.
async fn push_images(m: &dyn Metadata, repo: &RepoName) -> (NewManifest, NewManifest) {
    for (name, size) in [
        ("cfg-amd", 10),
        ("cfg-arm", 20),
        ("base", 100),
        ("amd", 1000),
        ("arm", 2000),
    ] {
        m.link_blob(repo, &digest(name), size, true).await.unwrap();
    }
    let amd = manifest(
        repo,
        "{\"amd\":1}",
        "v1",
        vec![blob("cfg-amd", 10), blob("base", 100), blob("amd", 1000)],
    );
    let arm = manifest(
        repo,
        "{\"arm\":1}",
        "a-arm",
        vec![blob("cfg-arm", 20), blob("base", 100), blob("arm", 2000)],
    );
    for image in [&amd, &arm] {
        m.put_manifest(image).await.unwrap();
        // Distinct push times, so that the push order is the test's.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let mut index = manifest(repo, "{\"index\":1}", "latest", Vec::new());
    index.media_type = media::OCI_INDEX.into();
    index.children = [&amd, &arm]
        .iter()
        .map(|m| Ref {
            digest: m.digest.clone(),
            size: m.content.len() as u64,
        })
        .collect();
    m.put_manifest(&index).await.unwrap();
    (amd, index)
}

pub async fn run(m: &dyn Metadata) {
    let repo: RepoName = "browse/app".parse().unwrap();
    let (amd, index) = push_images(m, &repo).await;
    let page = |order, offset, limit| {
        let repo = repo.clone();
        async move {
            m.tags_page(&repo, order, offset, limit)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let names = |page: &TagPage| page.tags.iter().map(|t| t.name.clone()).collect::<Vec<_>>();

    let by_name = page(TagOrder::Name, 0, 10).await;
    assert_eq!(by_name.total, 3);
    assert_eq!(names(&by_name), ["a-arm", "latest", "v1"]);
    let sizes: Vec<u64> = by_name.tags.iter().map(|t| t.size_bytes).collect();
    // The index: both images' blobs, the shared base layer once.
    assert_eq!(sizes, [2120, 3130, 1110]);
    let latest = &by_name.tags[1];
    assert_eq!(latest.digest, index.digest);
    assert_eq!(latest.media_type, media::OCI_INDEX);
    assert_eq!(latest.index.as_ref(), Some(&index.content));
    assert!(by_name.tags[2].index.is_none(), "an image's content stays");
    assert_eq!(by_name.tags[2].digest, amd.digest);

    let pushed = page(TagOrder::Pushed, 0, 10).await;
    assert_eq!(names(&pushed), ["latest", "a-arm", "v1"]);
    assert!(pushed.tags[0].pushed_at >= pushed.tags[1].pushed_at);
    // Offsets and limits page through the same order; the total stays.
    let second = page(TagOrder::Pushed, 1, 1).await;
    assert_eq!((second.total, names(&second)), (3, vec!["a-arm".into()]));
    assert!(page(TagOrder::Name, 3, 10).await.tags.is_empty());
    let unknown: RepoName = "browse/none".parse().unwrap();
    assert_eq!(
        m.tags_page(&unknown, TagOrder::Name, 0, 10).await.unwrap(),
        None
    );

    // Tags of one digest, lexically.
    let mut again = amd.clone();
    again.tag = Some("stable".parse().unwrap());
    m.put_manifest(&again).await.unwrap();
    assert_eq!(
        m.tags_of(&repo, &amd.digest).await.unwrap(),
        ["stable", "v1"]
    );
    assert!(m.tags_of(&unknown, &amd.digest).await.unwrap().is_empty());
    assert!(m.tags_of(&repo, &digest("none")).await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_passes_browse_suite() {
    let dir = tempfile::tempdir().unwrap();
    let m = SqliteMetadata::open(&dir.path().join("metadata.db"))
        .await
        .unwrap();
    run(&m).await;
    super::suite::usage(&m).await;
}

#[tokio::test]
async fn postgres_passes_browse_suite() {
    let url = test_postgres::fresh_database().await;
    let m = PgMetadata::open(&url, 4).await.unwrap();
    run(&m).await;
    super::suite::usage(&m).await;
}
