//! The S3 backend against real S3 servers (s3s-fs and Garage, started by
//! `storage::test_s3`): the shared suite, and what only an object store
//! has to get right.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{stream, StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutPayload};

use super::{S3Store, PART_SIZE};
use crate::oci::{Algorithm, Digest};
use crate::storage::test_s3::{self, S3Target};
use crate::storage::{
    suite, BlobAdmin, BlobRead, ByteStream, LocalLocks, StagedUpload, StorageConfig, StorageError,
    UploadStore,
};

fn config(target: &S3Target) -> StorageConfig {
    crate::storage::test_config(target)
}

async fn open(target: &S3Target) -> S3Store {
    S3Store::open(&config(target)).await.unwrap()
}

/// `data` in chunks of `chunk` bytes.
fn chunked(data: &[u8], chunk: usize) -> ByteStream {
    let parts: Vec<std::io::Result<Bytes>> = data
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(parts).boxed()
}

async fn read_all(store: &S3Store, digest: &Digest) -> Vec<u8> {
    let chunks: Vec<Bytes> = store
        .get(digest, None)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    chunks.concat()
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

#[tokio::test]
async fn s3_on_s3s_fs_passes_suite() {
    suite::run(&open(&test_s3::s3s_fs()).await).await;
}

#[tokio::test]
async fn s3_on_garage_passes_suite() {
    suite::run(&open(&test_s3::garage()).await).await;
}

/// 12 MiB sent in 1-KiB chunks leave in parts of 5 MiB or more (S3 refuses
/// smaller ones), with never more than a part and a chunk buffered.
async fn appends_stream_in_big_parts(target: S3Target) {
    let store = open(&target).await;
    let data = pattern(12 << 20, 1);
    let id = uuid::Uuid::new_v4().to_string();
    store.create(&id).await.unwrap();
    let mut staged = store.open_session(&id).await.unwrap();
    staged.append(chunked(&data, 1024), None).await.unwrap();
    let stats = staged.last_write.clone();
    assert!(stats.parts.len() >= 2, "{stats:?}");
    let (last, full) = stats.parts.split_last().unwrap();
    assert!(full.iter().all(|&p| p >= 5 << 20), "{stats:?}");
    assert_eq!(full.iter().sum::<u64>() + last, data.len() as u64);
    assert!(stats.peak_buffered <= PART_SIZE + 1024, "{stats:?}");
    // A second append: the commit joins both segments in one multipart upload.
    let tail = pattern(3 << 20, 2);
    staged
        .append(chunked(&tail, 64 * 1024), None)
        .await
        .unwrap();
    let whole = [data, tail].concat();
    let digest = Digest::sha256_of(&whole);
    assert_eq!(staged.digest(Algorithm::Sha256).await.unwrap(), digest);
    assert_eq!(
        Box::new(staged).commit(&digest).await.unwrap(),
        whole.len() as u64
    );
    assert!(read_all(&store, &digest).await == whole);
    assert_eq!(store.size(&id).await.unwrap(), None);
}

#[tokio::test]
async fn appends_stream_in_big_parts_on_s3s_fs() {
    appends_stream_in_big_parts(test_s3::s3s_fs()).await;
}

#[tokio::test]
async fn appends_stream_in_big_parts_on_garage() {
    appends_stream_in_big_parts(test_s3::garage()).await;
}

/// A session started through one store (replica A) is resumed, checked and
/// committed through another (replica B): everything is in the bucket.
#[tokio::test]
async fn a_session_moves_between_replicas() {
    let target = test_s3::garage();
    let (a, b) = (open(&target).await, open(&target).await);
    let id = uuid::Uuid::new_v4().to_string();
    a.create(&id).await.unwrap();
    let mut on_a = a.open_upload(&id).await.unwrap();
    on_a.append(chunked(b"started on A, ", 5), None)
        .await
        .unwrap();
    drop(on_a);
    assert_eq!(b.size(&id).await.unwrap(), Some(14));
    let mut on_b = b.open_upload(&id).await.unwrap();
    assert_eq!(on_b.size(), 14);
    on_b.append(chunked(b"finished on B", 4), None)
        .await
        .unwrap();
    let expected = Digest::sha256_of(b"started on A, finished on B");
    // B has no running hash of A's bytes: it reads them all back.
    assert_eq!(on_b.digest(Algorithm::Sha256).await.unwrap(), expected);
    assert_eq!(on_b.commit(&expected).await.unwrap(), 27);
    assert_eq!(a.stat(&expected).await.unwrap(), Some(27));
    assert_eq!(
        read_all(&a, &expected).await,
        b"started on A, finished on B"
    );
    assert!(matches!(
        a.open_upload(&id).await,
        Err(StorageError::UploadNotFound)
    ));
    // Replicas that share their locks see each other's sessions as busy.
    let locks = std::sync::Arc::new(LocalLocks::default());
    let (a, b) = (a.with_locks(locks.clone()), b.with_locks(locks));
    let id = uuid::Uuid::new_v4().to_string();
    a.create(&id).await.unwrap();
    let held = a.open_upload(&id).await.unwrap();
    assert!(matches!(b.open_upload(&id).await, Err(StorageError::Busy)));
    held.abort().await.unwrap();
}

/// An append whose body fails midway (the client went away) adds nothing:
/// the session keeps its size, and the client resends from there.
#[tokio::test]
async fn a_failed_append_adds_nothing() {
    let store = open(&test_s3::s3s_fs()).await;
    let id = uuid::Uuid::new_v4().to_string();
    store.create(&id).await.unwrap();
    let mut staged = store.open_upload(&id).await.unwrap();
    staged.append(chunked(b"abc", 3), None).await.unwrap();
    for big in [false, true] {
        // Cut short within the first part, and after a part was sent.
        let sent = if big { PART_SIZE + (1 << 20) } else { 1000 };
        let good = stream::iter(
            pattern(sent, 3)
                .chunks(64 * 1024)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        let cut = stream::iter([Err(std::io::Error::other("connection reset"))]);
        let failed = staged.append(good.chain(cut).boxed(), None).await;
        assert!(matches!(failed, Err(StorageError::Body(_))), "{failed:?}");
        assert_eq!(staged.size(), 3);
        assert_eq!(store.size(&id).await.unwrap(), Some(3));
    }
    let listed = store.staged().await.unwrap();
    assert_eq!(listed.iter().find(|s| s.id == id).map(|s| s.size), Some(3));
    staged.append(chunked(b"def", 2), None).await.unwrap();
    let digest = Digest::sha256_of(b"abcdef");
    assert_eq!(staged.digest(Algorithm::Sha256).await.unwrap(), digest);
    staged.commit(&digest).await.unwrap();
    assert_eq!(read_all(&store, &digest).await, b"abcdef");
}

/// A commit or abort cut short after the session's marker went (a crash)
/// leaves bytes that no session owns: they are listed for the expiry
/// worker, and go when it opens them.
#[tokio::test]
async fn bytes_of_an_interrupted_commit_are_found_and_removed() {
    let store = open(&test_s3::garage()).await;
    let id = uuid::Uuid::new_v4().to_string();
    store.create(&id).await.unwrap();
    let mut staged = store.open_upload(&id).await.unwrap();
    staged
        .append(chunked(b"left behind", 4), None)
        .await
        .unwrap();
    drop(staged);
    let marker = store.key(&format!("uploads/{id}/created"));
    store.s3.delete(&marker).await.unwrap();
    assert_eq!(store.size(&id).await.unwrap(), None, "the session is over");
    let debris = store.staged().await.unwrap();
    assert_eq!(debris.iter().find(|s| s.id == id).map(|s| s.size), Some(11));
    assert!(matches!(
        store.open_upload(&id).await,
        Err(StorageError::UploadNotFound)
    ));
    assert!(!store.staged().await.unwrap().iter().any(|s| s.id == id));
}

/// A presigned URL serves the blob to a plain HTTP client for its TTL.
#[tokio::test]
async fn presigned_urls_serve_the_blob() {
    let target = test_s3::garage();
    let store = open(&target).await;
    let data = b"fetched without credentials";
    let digest = Digest::sha256_of(data);
    let id = uuid::Uuid::new_v4().to_string();
    store.create(&id).await.unwrap();
    let mut staged = store.open_upload(&id).await.unwrap();
    staged.append(chunked(data, 8), None).await.unwrap();
    staged.commit(&digest).await.unwrap();
    let ttl = Duration::from_secs(60);
    let url = store
        .redirect_url(&digest, ttl)
        .await
        .unwrap()
        .expect("a URL");
    let answer = reqwest::get(&url).await.unwrap();
    assert_eq!(answer.status(), 200, "{url}");
    assert_eq!(answer.bytes().await.unwrap(), &data[..]);
    // Without credentials in the URL the store refuses.
    let unsigned = url.split('?').next().unwrap().to_string();
    assert_eq!(reqwest::get(&unsigned).await.unwrap().status(), 403);
    let mut off = config(&target);
    off.redirect_pulls = false;
    let store = S3Store::open(&off).await.unwrap();
    assert_eq!(store.redirect_url(&digest, ttl).await.unwrap(), None);
}

/// Wrong settings fail at start, in one line naming the setting.
#[tokio::test]
async fn a_bad_secret_fails_at_open() {
    let mut target = test_s3::s3s_fs();
    target.secret_access_key = "not-the-secret".into();
    let e = S3Store::open(&config(&target))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("storage.s3: bucket "), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

/// A store that does not answer fails the start soon, not after minutes
/// of retries.
#[tokio::test]
async fn an_unreachable_store_fails_at_open_soon() {
    let mut target = test_s3::s3s_fs();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    target.endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let started = std::time::Instant::now();
    let e = S3Store::open(&config(&target))
        .await
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(30), "{e}");
    assert!(e.starts_with("storage.s3: bucket "), "{e}");
}

/// Objects under `blobs/` that are not blobs (another tool's, a typo) are
/// not listed, nor are they errors.
#[tokio::test]
async fn foreign_keys_are_not_listed() {
    let target = test_s3::garage();
    let store = open(&target).await;
    for key in [
        "blobs/README",
        "blobs/sha256/zz/nothex",
        "blobs/sha256/ab/abc",
    ] {
        let key = store.key(key);
        store
            .s3
            .put(&key, PutPayload::from_static(b"x"))
            .await
            .unwrap();
    }
    let digest = Digest::sha256_of(b"listed");
    let id = uuid::Uuid::new_v4().to_string();
    store.create(&id).await.unwrap();
    let mut staged = store.open_upload(&id).await.unwrap();
    staged.append(chunked(b"listed", 6), None).await.unwrap();
    staged.commit(&digest).await.unwrap();
    let listed: Vec<Digest> = store.list().try_collect().await.unwrap();
    assert_eq!(listed, vec![digest]);
}
