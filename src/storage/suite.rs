//! The test suite every storage backend must pass.

use bytes::Bytes;
use futures_util::{stream, StreamExt, TryStreamExt};

use super::{BlobRead as _, ByteStream, StagedUpload, Storage, StorageError};
use crate::oci::{Algorithm, Digest};

fn body(parts: &[&'static [u8]]) -> ByteStream {
    let parts: Vec<_> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    stream::iter(parts).boxed()
}

async fn read_all(s: ByteStream) -> Vec<u8> {
    s.try_fold(Vec::new(), |mut acc, b| async move {
        acc.extend_from_slice(&b);
        Ok(acc)
    })
    .await
    .unwrap()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub async fn run(store: &dyn Storage) {
    upload_commit_and_read(store).await;
    sessions_are_exclusive(store).await;
    rehash_matches_running_hash(store).await;
    commit_of_existing_blob_dedupes(store).await;
    abort_and_unknown_sessions(store).await;
    delete_and_list(store).await;
    many_blobs_are_listed(store).await;
    large_blobs_read_whole_and_in_ranges(store).await;
    staged_sessions_are_listed(store).await;
    sha512_blobs_are_stored_and_listed(store).await;
}

/// Digests of other algorithms than SHA-256 have longer names: the layout
/// must hold them too.
async fn sha512_blobs_are_stored_and_listed(store: &dyn Storage) {
    let digest = Digest::of(Algorithm::Sha512, b"sha512 bytes");
    let staged = stage(store, b"sha512 bytes").await;
    assert_eq!(staged.commit(&digest).await.unwrap(), 12);
    assert_eq!(store.stat(&digest).await.unwrap(), Some(12));
    assert_eq!(
        read_all(store.get(&digest, Some((7, 5))).await.unwrap()).await,
        b"bytes"
    );
    assert!(listed(store).await.contains(&digest));
}

async fn stage(store: &dyn Storage, data: &'static [u8]) -> Box<dyn StagedUpload> {
    let id = new_id();
    store.create(&id).await.unwrap();
    let mut staged = store.open_upload(&id).await.unwrap();
    staged.append(body(&[data]), None).await.unwrap();
    staged
}

async fn upload_commit_and_read(store: &dyn Storage) {
    let id = new_id();
    store.create(&id).await.unwrap();
    assert_eq!(store.size(&id).await.unwrap(), Some(0));
    let mut staged = store.open_upload(&id).await.unwrap();
    let h = staged
        .append(body(&[b"hello ", b"wor"]), Some(Algorithm::Sha256.hasher()))
        .await
        .unwrap();
    assert_eq!(staged.size(), 9);
    drop(staged);
    // A later request (or a restarted process) continues where it stopped.
    let mut staged = store.open_upload(&id).await.unwrap();
    assert_eq!(staged.size(), 9);
    let h = staged.append(body(&[b"ld"]), h).await.unwrap();
    assert_eq!(staged.size(), 11);
    let digest = h.unwrap().finish();
    assert_eq!(digest, Digest::sha256_of(b"hello world"));
    assert_eq!(
        store.stat(&digest).await.unwrap(),
        None,
        "not visible before commit"
    );
    assert_eq!(staged.commit(&digest).await.unwrap(), 11);
    assert_eq!(store.stat(&digest).await.unwrap(), Some(11));
    assert_eq!(
        read_all(store.get(&digest, None).await.unwrap()).await,
        b"hello world"
    );
    assert_eq!(
        read_all(store.get(&digest, Some((6, 3))).await.unwrap()).await,
        b"wor"
    );
    assert_eq!(
        store.size(&id).await.unwrap(),
        None,
        "commit consumes the session"
    );
    assert!(matches!(
        store.open_upload(&id).await,
        Err(StorageError::UploadNotFound)
    ));
}

/// A blob of several MiB read whole and in ranges that start and end at odd
/// places: backends may read big blobs in pieces, and the pieces must join up.
async fn large_blobs_read_whole_and_in_ranges(store: &dyn Storage) {
    let data: Vec<u8> = (0..3 * (1 << 20) + 12_345)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    let id = new_id();
    store.create(&id).await.unwrap();
    let mut staged = store.open_upload(&id).await.unwrap();
    let parts: Vec<std::io::Result<Bytes>> = data
        .chunks(100_000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    staged
        .append(stream::iter(parts).boxed(), None)
        .await
        .unwrap();
    let digest = Digest::sha256_of(&data);
    staged.commit(&digest).await.unwrap();

    assert_eq!(
        read_all(store.get(&digest, None).await.unwrap()).await,
        data
    );
    let len = data.len() as u64;
    for (offset, n) in [
        (0, 1),
        (1, (1 << 20) + 2),
        ((1 << 20) - 3, 7),
        (4097, 2 * (1 << 20)),
        (len - 10, 10),
        (len - 1, 1),
        (123, 256 * 1024),
        (123, 256 * 1024 + 1),
    ] {
        let got = read_all(store.get(&digest, Some((offset, n))).await.unwrap()).await;
        assert!(
            got == data[offset as usize..(offset + n) as usize],
            "range {offset}+{n}"
        );
    }
}

async fn sessions_are_exclusive(store: &dyn Storage) {
    let id = new_id();
    store.create(&id).await.unwrap();
    let first = store.open_upload(&id).await.unwrap();
    assert!(matches!(
        store.open_upload(&id).await,
        Err(StorageError::Busy)
    ));
    drop(first);
    let second = store.open_upload(&id).await.unwrap();
    second.abort().await.unwrap();
}

async fn rehash_matches_running_hash(store: &dyn Storage) {
    let mut staged = stage(store, b"some bytes").await;
    assert_eq!(
        staged.digest(Algorithm::Sha256).await.unwrap(),
        Digest::sha256_of(b"some bytes")
    );
    assert_eq!(
        staged.digest(Algorithm::Sha512).await.unwrap(),
        Digest::of(Algorithm::Sha512, b"some bytes")
    );
    staged.abort().await.unwrap();
}

async fn commit_of_existing_blob_dedupes(store: &dyn Storage) {
    let digest = Digest::sha256_of(b"dup");
    for _ in 0..2 {
        let staged = stage(store, b"dup").await;
        assert_eq!(staged.commit(&digest).await.unwrap(), 3);
    }
    assert_eq!(
        read_all(store.get(&digest, None).await.unwrap()).await,
        b"dup"
    );
}

async fn abort_and_unknown_sessions(store: &dyn Storage) {
    let id = new_id();
    store.create(&id).await.unwrap();
    store.open_upload(&id).await.unwrap().abort().await.unwrap();
    assert_eq!(store.size(&id).await.unwrap(), None);
    assert!(matches!(
        store.open_upload(&id).await,
        Err(StorageError::UploadNotFound)
    ));
    assert!(matches!(
        store.size("../../etc/passwd").await,
        Err(StorageError::UploadNotFound)
    ));
    assert!(matches!(
        store.open_upload("../x").await,
        Err(StorageError::UploadNotFound)
    ));
    let missing = Digest::sha256_of(b"never stored");
    assert!(matches!(
        store.get(&missing, None).await,
        Err(StorageError::NotFound)
    ));
}

async fn listed(store: &dyn Storage) -> Vec<Digest> {
    store.list().try_collect().await.unwrap()
}

/// Listing streams every committed blob, however many there are.
async fn many_blobs_are_listed(store: &dyn Storage) {
    let mut committed = Vec::new();
    for i in 0..2_100u32 {
        let data = format!("listed blob {i}").into_bytes();
        let digest = Digest::sha256_of(&data);
        let id = new_id();
        store.create(&id).await.unwrap();
        let mut staged = store.open_upload(&id).await.unwrap();
        let part = stream::iter([Ok(Bytes::from(data))]).boxed();
        staged.append(part, None).await.unwrap();
        staged.commit(&digest).await.unwrap();
        committed.push(digest);
    }
    let listed = listed(store).await;
    assert!(committed.iter().all(|d| listed.contains(d)));
    // A consumer that stops early is not an error for the backend.
    let first: Vec<_> = store.list().take(3).collect().await;
    assert_eq!(first.len(), 3);
}

async fn delete_and_list(store: &dyn Storage) {
    let digest = Digest::sha256_of(b"to delete");
    stage(store, b"to delete")
        .await
        .commit(&digest)
        .await
        .unwrap();
    assert!(listed(store).await.contains(&digest));
    store.delete(&digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(!listed(store).await.contains(&digest));
    store.delete(&digest).await.unwrap();
    // In batches, each outcome in order; what is gone already is no error.
    let (a, b) = (Digest::sha256_of(b"batch a"), Digest::sha256_of(b"batch b"));
    for (d, data) in [(&a, b"batch a"), (&b, b"batch b")] {
        stage(store, data).await.commit(d).await.unwrap();
    }
    let outcomes = store
        .delete_batch(&[a.clone(), digest.clone(), b.clone()])
        .await;
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes.iter().all(|o| o.is_ok()));
    assert_eq!(store.stat(&a).await.unwrap(), None);
    assert_eq!(store.stat(&b).await.unwrap(), None);
    // Quarantined bytes are never served; the digest can be committed anew.
    stage(store, b"batch a").await.commit(&a).await.unwrap();
    store.quarantine(&a).await.unwrap();
    assert_eq!(store.stat(&a).await.unwrap(), None);
    store.quarantine(&a).await.unwrap();
    stage(store, b"batch a").await.commit(&a).await.unwrap();
    assert_eq!(store.stat(&a).await.unwrap(), Some(7));
}

async fn staged_sessions_are_listed(store: &dyn Storage) {
    let before = std::time::SystemTime::now() - std::time::Duration::from_secs(5);
    let id = new_id();
    store.create(&id).await.unwrap();
    let mut staged = store.open_upload(&id).await.unwrap();
    staged.append(body(&[b"twelve bytes"]), None).await.unwrap();
    let listed = store.staged().await.unwrap();
    let entry = listed
        .iter()
        .find(|s| s.id == id)
        .expect("the staged session is listed");
    assert_eq!(entry.size, 12);
    assert!(entry.modified >= before, "{entry:?}");
    staged.abort().await.unwrap();
    assert!(!store.staged().await.unwrap().iter().any(|s| s.id == id));
    // A committed session is no longer staged either.
    let id = new_id();
    store.create(&id).await.unwrap();
    let mut staged = store.open_upload(&id).await.unwrap();
    staged.append(body(&[b"committed"]), None).await.unwrap();
    staged
        .commit(&Digest::sha256_of(b"committed"))
        .await
        .unwrap();
    assert!(!store.staged().await.unwrap().iter().any(|s| s.id == id));
}

#[tokio::test]
async fn fs_store_passes_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = super::FsStore::open(dir.path()).await.unwrap();
    run(&store).await;
    // The filesystem serves every blob's bytes itself: no redirect.
    let digest = Digest::sha256_of(b"to delete");
    let ttl = std::time::Duration::from_secs(60);
    assert_eq!(store.redirect_url(&digest, ttl).await.unwrap(), None);
    let second = super::FsStore::open(dir.path()).await;
    assert!(
        second.is_err(),
        "a second process on one data directory is refused"
    );
    drop(store);
    super::FsStore::open(dir.path()).await.unwrap();
}
