//! The server's wiring of the storage settings.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::build_app;
use crate::config::Config;
use crate::oci::Digest;
use crate::storage::{test_s3, BlobRead, S3Store};

async fn send(app: &axum::Router, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

/// With `storage.kind = "s3"` a push lands in the bucket, not in the data
/// directory, and pulls come from there.
#[tokio::test]
async fn s3_storage_serves_pushes_and_pulls() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.auth.mode = crate::auth::AuthMode::None;
    config.storage = crate::storage::test_config(&test_s3::s3s_fs());
    config.storage.redirect_pulls = false;
    assert_eq!(config.validate(), Ok(()));
    let app = build_app(&config).await.unwrap();
    let data = b"a layer kept in the bucket".to_vec();
    let digest = Digest::sha256_of(&data);
    let push = Request::post(format!("/v2/team/app/blobs/uploads/?digest={digest}"))
        .header("content-length", data.len())
        .body(Body::from(data.clone()))
        .unwrap();
    assert_eq!(send(&app, push).await.0, StatusCode::CREATED);
    let pull = Request::get(format!("/v2/team/app/blobs/{digest}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, pull).await, (StatusCode::OK, data.clone()));

    let bucket = S3Store::open(&config.storage).await.unwrap();
    assert_eq!(bucket.stat(&digest).await.unwrap(), Some(data.len() as u64));
    assert!(!dir.path().join("data/blobs").exists());
    // The SQLite metadata in the data directory still has one user.
    let second = build_app(&config)
        .await
        .expect_err("a second process is refused");
    assert!(
        format!("{second:#}").contains("in use by another berth process"),
        "{second:#}"
    );
}
