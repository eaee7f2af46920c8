//! The test suite every storage backend must pass.

use bytes::Bytes;
use futures_util::{stream, StreamExt, TryStreamExt};

use super::{ByteStream, Storage, StorageError};
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
    offsets_are_enforced(store).await;
    rehash_matches_running_hash(store).await;
    commit_of_existing_blob_dedupes(store).await;
    abort_and_unknown_sessions(store).await;
    delete_and_list(store).await;
}

async fn upload_commit_and_read(store: &dyn Storage) {
    let id = new_id();
    store.create(&id).await.unwrap();
    assert_eq!(store.size(&id).await.unwrap(), Some(0));
    let (size, h) = store
        .append(
            &id,
            0,
            body(&[b"hello ", b"wor"]),
            Some(Algorithm::Sha256.hasher()),
        )
        .await
        .unwrap();
    assert_eq!(size, 9);
    let (size, h) = store.append(&id, 9, body(&[b"ld"]), h).await.unwrap();
    assert_eq!(size, 11);
    let digest = h.unwrap().finish();
    assert_eq!(digest, Digest::sha256_of(b"hello world"));
    assert_eq!(
        store.stat(&digest).await.unwrap(),
        None,
        "not visible before commit"
    );
    assert_eq!(store.commit(&id, &digest).await.unwrap(), 11);
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
}

async fn offsets_are_enforced(store: &dyn Storage) {
    let id = new_id();
    store.create(&id).await.unwrap();
    store.append(&id, 0, body(&[b"abc"]), None).await.unwrap();
    match store.append(&id, 1, body(&[b"x"]), None).await {
        Err(StorageError::OffsetMismatch {
            current: 3,
            requested: 1,
        }) => {}
        other => panic!("expected offset mismatch, got {other:?}"),
    }
    assert_eq!(store.size(&id).await.unwrap(), Some(3));
    store.abort(&id).await.unwrap();
}

async fn rehash_matches_running_hash(store: &dyn Storage) {
    let id = new_id();
    store.create(&id).await.unwrap();
    store
        .append(&id, 0, body(&[b"some ", b"bytes"]), None)
        .await
        .unwrap();
    assert_eq!(
        store.digest(&id, Algorithm::Sha256).await.unwrap(),
        Digest::sha256_of(b"some bytes")
    );
    assert_eq!(
        store.digest(&id, Algorithm::Sha512).await.unwrap(),
        Digest::of(Algorithm::Sha512, b"some bytes")
    );
    store.abort(&id).await.unwrap();
}

async fn commit_of_existing_blob_dedupes(store: &dyn Storage) {
    let digest = Digest::sha256_of(b"dup");
    for _ in 0..2 {
        let id = new_id();
        store.create(&id).await.unwrap();
        store.append(&id, 0, body(&[b"dup"]), None).await.unwrap();
        assert_eq!(store.commit(&id, &digest).await.unwrap(), 3);
        assert_eq!(store.size(&id).await.unwrap(), None);
    }
    assert_eq!(
        read_all(store.get(&digest, None).await.unwrap()).await,
        b"dup"
    );
}

async fn abort_and_unknown_sessions(store: &dyn Storage) {
    let id = new_id();
    store.create(&id).await.unwrap();
    store.abort(&id).await.unwrap();
    assert_eq!(store.size(&id).await.unwrap(), None);
    assert!(matches!(
        store.append(&id, 0, body(&[b"x"]), None).await,
        Err(StorageError::UploadNotFound)
    ));
    assert!(matches!(
        store.size("../../etc/passwd").await,
        Err(StorageError::UploadNotFound)
    ));
    let missing = Digest::sha256_of(b"never stored");
    assert!(matches!(
        store.get(&missing, None).await,
        Err(StorageError::NotFound)
    ));
}

async fn delete_and_list(store: &dyn Storage) {
    let digest = Digest::sha256_of(b"to delete");
    let id = new_id();
    store.create(&id).await.unwrap();
    store
        .append(&id, 0, body(&[b"to delete"]), None)
        .await
        .unwrap();
    store.commit(&id, &digest).await.unwrap();
    assert!(store.list().await.unwrap().contains(&digest));
    store.delete(&digest).await.unwrap();
    assert_eq!(store.stat(&digest).await.unwrap(), None);
    assert!(!store.list().await.unwrap().contains(&digest));
    store.delete(&digest).await.unwrap();
}

#[tokio::test]
async fn fs_store_passes_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = super::FsStore::open(dir.path()).await.unwrap();
    run(&store).await;
}
