//! In-process API tests: every `/v2/` endpoint and every error answer, per
//! the OCI Distribution Spec v1.1, driven through the router with
//! `tower::ServiceExt::oneshot` over a registry in a temporary directory.
//!
//! Every response goes through `Client::send`, which asserts that no answer
//! is ever a 500 and that each carries `Docker-Distribution-API-Version`.

#[allow(dead_code)] // each stack uses part of it
#[path = "support/scale_out.rs"]
mod scale_out;

use std::collections::BTreeSet;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use berth::config::Config;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256, Sha512};
use tower::ServiceExt;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

const EMPTY_SHA256: &str =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(data)))
}

/// Deterministic pseudo-random bytes (xorshift), distinct per seed.
fn bytes_of(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A streamed request body (no length known up front), in `chunk`-byte pieces.
fn streamed(data: &[u8], chunk: usize) -> Body {
    let pieces: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Body::from_stream(futures_util::stream::iter(pieces))
}

fn with_query(location: &str, query: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}{query}")
}

fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(data), "size": data.len()})
}

/// The config and layer of a small image; distinct per seed.
fn image_blobs(seed: &str) -> (Vec<u8>, Vec<u8>) {
    let config = json!({"architecture": "amd64", "os": "linux", "seed": seed})
        .to_string()
        .into_bytes();
    let layer = format!("layer bytes of {seed}").into_bytes();
    (config, layer)
}

fn image_manifest(media_type: &str, config: &[u8], layer: &[u8]) -> Vec<u8> {
    let (config_type, layer_type) = if media_type == DOCKER_MANIFEST {
        (DOCKER_CONFIG, DOCKER_LAYER)
    } else {
        (OCI_CONFIG, OCI_LAYER)
    };
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config_type, config),
        "layers": [descriptor(layer_type, layer)],
    }))
    .unwrap()
}

fn index_manifest(media_type: &str, children: &[(&str, &[u8])]) -> Vec<u8> {
    let manifests: Vec<Value> = children
        .iter()
        .map(|(t, body)| {
            let mut d = descriptor(t, body);
            d["platform"] = json!({"architecture": "amd64", "os": "linux"});
            d
        })
        .collect();
    serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}),
    )
    .unwrap()
}

/// One answer, with what was asked for in failure messages.
struct Resp {
    what: String,
    method: Method,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    fn expect(&self, status: u16) -> &Resp {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}: expected {status}, got {} with body {}",
            self.what,
            self.status,
            self.text()
        );
        self
    }

    fn opt_header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header is ASCII"))
    }

    #[track_caller]
    fn header(&self, name: &str) -> &str {
        self.opt_header(name)
            .unwrap_or_else(|| panic!("{}: no {name} header in {:?}", self.what, self.headers))
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {}", self.what, self.text()))
    }

    /// Asserts an OCI error answer with this status (any code); returns its
    /// first entry (`Null` for HEAD, which has no body).
    #[track_caller]
    fn expect_error_status(&self, status: u16) -> Value {
        self.expect(status);
        let content_type = self.opt_header("content-type").unwrap_or("");
        assert!(
            content_type.starts_with("application/json"),
            "{}: error answer has Content-Type {content_type:?}",
            self.what
        );
        if self.method == Method::HEAD {
            assert!(
                self.body.is_empty(),
                "{}: HEAD answer has a body",
                self.what
            );
            return Value::Null;
        }
        let body = self.json();
        let errors = body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no errors array in {body}", self.what));
        assert!(!errors.is_empty(), "{}: empty errors array", self.what);
        let entry = errors[0].clone();
        assert!(
            entry["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{}: error entry without code: {entry}",
            self.what
        );
        assert!(
            entry["message"].is_string(),
            "{}: error entry without message: {entry}",
            self.what
        );
        entry
    }

    /// Asserts an OCI error answer with this status and code.
    #[track_caller]
    fn expect_error(&self, status: u16, code: &str) -> Value {
        let entry = self.expect_error_status(status);
        if self.method != Method::HEAD {
            assert_eq!(
                entry["code"],
                code,
                "{}: wrong error code in {}",
                self.what,
                self.text()
            );
        }
        entry
    }
}

/// Drives a router in-process.
#[derive(Clone)]
struct Client(Router);

impl Client {
    async fn send(&self, request: Request<Body>) -> Resp {
        let what = format!("{} {}", request.method(), request.uri());
        let method = request.method().clone();
        let response = self
            .0
            .clone()
            .oneshot(request)
            .await
            .expect("router is infallible");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        assert_ne!(
            parts.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{what} answered 500: {}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(
            parts
                .headers
                .get("docker-distribution-api-version")
                .map(|v| v.as_bytes()),
            Some(&b"registry/2.0"[..]),
            "{what}: missing Docker-Distribution-API-Version"
        );
        Resp {
            what,
            method,
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.send(builder.body(body.into()).expect("request")).await
    }

    async fn get(&self, uri: &str) -> Resp {
        self.call(Method::GET, uri, &[], Body::empty()).await
    }

    async fn get_with(&self, uri: &str, headers: &[(&str, &str)]) -> Resp {
        self.call(Method::GET, uri, headers, Body::empty()).await
    }

    async fn head(&self, uri: &str) -> Resp {
        self.call(Method::HEAD, uri, &[], Body::empty()).await
    }

    async fn delete(&self, uri: &str) -> Resp {
        self.call(Method::DELETE, uri, &[], Body::empty()).await
    }

    /// `PATCH` of one chunk with `Content-Range` and `Content-Length`.
    async fn patch_chunk(&self, location: &str, first: u64, data: &[u8]) -> Resp {
        let range = format!("{first}-{}", first + data.len() as u64 - 1);
        let len = data.len().to_string();
        let headers = [
            ("content-type", "application/octet-stream"),
            ("content-range", range.as_str()),
            ("content-length", len.as_str()),
        ];
        self.call(Method::PATCH, location, &headers, data.to_vec())
            .await
    }

    /// Monolithic `POST ?digest=` push; returns the digest.
    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let len = data.len().to_string();
        self.call(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            &[
                ("content-type", "application/octet-stream"),
                ("content-length", &len),
            ],
            data.to_vec(),
        )
        .await
        .expect(201);
        digest
    }

    /// Opens an upload session; returns its Location.
    async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .call(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                Body::empty(),
            )
            .await;
        r.expect(202);
        r.header("location").to_string()
    }

    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Resp {
        let len = body.len().to_string();
        let mut headers = vec![("content-length", len.as_str())];
        if let Some(t) = content_type {
            headers.push(("content-type", t));
        }
        self.call(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &headers,
            body.to_vec(),
        )
        .await
    }

    /// Pushes the blobs of an image unique to `seed` and its manifest under
    /// `reference`; returns the manifest.
    async fn push_image(&self, repo: &str, reference: &str, seed: &str, media_type: &str) -> Image {
        let (config, layer) = image_blobs(seed);
        self.push_blob(repo, &config).await;
        self.push_blob(repo, &layer).await;
        let body = image_manifest(media_type, &config, &layer);
        let r = self
            .put_manifest(repo, reference, Some(media_type), &body)
            .await;
        r.expect(201);
        assert_eq!(r.header("docker-content-digest"), sha256(&body));
        Image {
            digest: sha256(&body),
            body,
        }
    }

    async fn tags(&self, repo: &str) -> Vec<String> {
        let r = self.get(&format!("/v2/{repo}/tags/list")).await;
        r.expect(200);
        let body = r.json();
        assert_eq!(body["name"], repo);
        body["tags"]
            .as_array()
            .unwrap_or_else(|| panic!("no tags array: {body}"))
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    }

    async fn catalog(&self) -> Vec<String> {
        let r = self.get("/v2/_catalog").await;
        r.expect(200);
        strings(&r.json()["repositories"])
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

struct Image {
    digest: String,
    body: Vec<u8>,
}

async fn open_router(config: &Config) -> Router {
    berth::server::build_app(config)
        .await
        .expect("open registry")
}

/// A registry over a fresh temporary directory (data in `<root>/data`).
struct Reg {
    client: Client,
    config: Config,
    root: tempfile::TempDir,
}

impl Reg {
    async fn new() -> Reg {
        Reg::with(|_| {}).await
    }

    async fn with(tweak: impl FnOnce(&mut Config)) -> Reg {
        let root = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: root.path().join("data"),
            ..Default::default()
        };
        // These tests are about the registry API itself; access control has its own.
        config.auth.mode = berth::auth::AuthMode::None;
        scale_out::configure(&mut config).await;
        tweak(&mut config);
        let client = Client(open_router(&config).await);
        Reg {
            client,
            config,
            root,
        }
    }
}

impl Deref for Reg {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

// ---------------------------------------------------------------------------
// Base endpoint, probes, unknown paths and methods
// ---------------------------------------------------------------------------

#[tokio::test]
async fn base_endpoint_answers_with_api_version() {
    let reg = Reg::new().await;
    for uri in ["/v2/", "/v2"] {
        let r = reg.get(uri).await;
        r.expect(200);
        assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
    }
    reg.head("/v2/").await.expect(200);
}

#[tokio::test]
async fn health_probes_answer() {
    let reg = Reg::new().await;
    let r = reg.get("/healthz").await;
    r.expect(200);
    assert_eq!(r.text(), "ok");
    reg.get("/readyz").await.expect(200);
}

#[tokio::test]
async fn readiness_fails_while_blob_storage_is_unusable() {
    let mut storage = None;
    let reg = Reg::with(|c| storage = Some(scale_out::Cuttable::insert(c))).await;
    let storage = storage.unwrap();
    reg.get("/readyz").await.expect(200);
    storage.cut();
    let r = reg.get("/readyz").await;
    r.expect(503);
    assert_eq!(r.text(), "blob storage unavailable");
    reg.get("/healthz").await.expect(200);
    storage.mend();
    reg.get("/readyz").await.expect(200);
}

#[tokio::test]
async fn unknown_paths_are_404_json() {
    let reg = Reg::new().await;
    for uri in [
        "/nope",
        "/v1/",
        "/v2/a",
        "/v2/a/b",
        "/v2/a/other/x",
        "/v2/manifests/x",
        "/v2/a/blobs/uploads/x/y",
    ] {
        reg.get(uri).await.expect_error(404, "NOT_FOUND");
    }
}

#[tokio::test]
async fn unsupported_methods_are_405_unsupported() {
    let reg = Reg::new().await;
    let d = sha256(b"x");
    let cases = [
        (Method::POST, "/v2/a/manifests/latest".to_string()),
        (Method::PATCH, "/v2/a/manifests/latest".to_string()),
        (Method::PUT, format!("/v2/a/blobs/{d}")),
        (Method::POST, format!("/v2/a/blobs/{d}")),
        (Method::PUT, "/v2/a/tags/list".to_string()),
        (Method::DELETE, "/v2/_catalog".to_string()),
        (Method::GET, "/v2/a/blobs/uploads/".to_string()),
        (
            Method::POST,
            format!("/v2/a/blobs/uploads/{}", uuid::Uuid::new_v4()),
        ),
        (Method::DELETE, format!("/v2/a/referrers/{d}")),
    ];
    for (method, uri) in cases {
        reg.call(method, &uri, &[], Body::empty())
            .await
            .expect_error(405, "UNSUPPORTED");
    }
}

// ---------------------------------------------------------------------------
// Blobs
// ---------------------------------------------------------------------------

#[tokio::test]
async fn blob_get_and_head() {
    let reg = Reg::new().await;
    let data = bytes_of(1000, 1);
    let d = reg.push_blob("repo", &data).await;

    let r = reg.get(&format!("/v2/repo/blobs/{d}")).await;
    r.expect(200);
    assert_eq!(r.body.as_ref(), &data[..]);
    assert_eq!(r.header("docker-content-digest"), d);
    assert_eq!(r.header("content-length"), "1000");

    let r = reg.head(&format!("/v2/repo/blobs/{d}")).await;
    r.expect(200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("docker-content-digest"), d);
    assert_eq!(r.header("content-length"), "1000");
}

#[tokio::test]
async fn blob_range_requests() {
    let reg = Reg::new().await;
    let data = bytes_of(1000, 2);
    let d = reg.push_blob("repo", &data).await;
    let uri = format!("/v2/repo/blobs/{d}");

    let cases: [(&str, usize, usize); 5] = [
        ("bytes=0-9", 0, 9),
        ("bytes=990-", 990, 999),
        ("bytes=-5", 995, 999),
        ("bytes=995-2000", 995, 999),
        ("bytes=-5000", 0, 999),
    ];
    for (range, first, last) in cases {
        let r = reg.get_with(&uri, &[("range", range)]).await;
        r.expect(206);
        assert_eq!(
            r.header("content-range"),
            format!("bytes {first}-{last}/1000"),
            "{range}"
        );
        assert_eq!(
            r.header("content-length"),
            (last - first + 1).to_string(),
            "{range}"
        );
        assert_eq!(r.header("docker-content-digest"), d);
        assert_eq!(r.body.as_ref(), &data[first..=last], "{range}");
    }

    for range in ["bytes=1000-", "bytes=5000-6000", "bytes=-0"] {
        let r = reg.get_with(&uri, &[("range", range)]).await;
        r.expect_error_status(416);
        assert_eq!(r.header("content-range"), "bytes */1000", "{range}");
    }

    // Several ranges, or a range in a unit we do not serve: the whole blob.
    for range in ["bytes=0-1,5-6", "items=0-5"] {
        let r = reg.get_with(&uri, &[("range", range)]).await;
        r.expect(200);
        assert_eq!(r.body.as_ref(), &data[..], "{range}");
        assert!(r.opt_header("content-range").is_none());
    }
}

#[tokio::test]
async fn unknown_and_invalid_blob_digests() {
    let reg = Reg::new().await;
    reg.push_blob("repo", b"present").await;
    let unknown = sha256(b"never pushed");
    reg.get(&format!("/v2/repo/blobs/{unknown}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    reg.head(&format!("/v2/repo/blobs/{unknown}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    reg.get(&format!("/v2/norepo/blobs/{unknown}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    reg.delete(&format!("/v2/repo/blobs/{unknown}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");

    let md5 = format!("md5:{}", "a".repeat(32));
    let upper = format!("sha256:{}", "A".repeat(64));
    for bad in [
        "sha256:abc",
        "nodigest",
        md5.as_str(),
        upper.as_str(),
        "sha256:",
    ] {
        reg.get(&format!("/v2/repo/blobs/{bad}"))
            .await
            .expect_error(400, "DIGEST_INVALID");
        reg.head(&format!("/v2/repo/blobs/{bad}"))
            .await
            .expect_error_status(400);
        reg.delete(&format!("/v2/repo/blobs/{bad}"))
            .await
            .expect_error(400, "DIGEST_INVALID");
    }
}

#[tokio::test]
async fn blob_delete_then_404() {
    let reg = Reg::new().await;
    let d = reg.push_blob("repo", b"to be deleted").await;
    let uri = format!("/v2/repo/blobs/{d}");
    reg.head(&uri).await.expect(200);
    reg.delete(&uri).await.expect(202);
    reg.get(&uri).await.expect_error(404, "BLOB_UNKNOWN");
    reg.head(&uri).await.expect_error(404, "BLOB_UNKNOWN");
    reg.delete(&uri).await.expect_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn blob_is_visible_only_in_its_repository() {
    let reg = Reg::new().await;
    let d = reg.push_blob("team/a", b"private to a").await;
    reg.get(&format!("/v2/team/a/blobs/{d}")).await.expect(200);
    reg.get(&format!("/v2/team/b/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    reg.head(&format!("/v2/team/b/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    reg.delete(&format!("/v2/team/b/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    // Deleting it from a repository that never had it changed nothing.
    reg.get(&format!("/v2/team/a/blobs/{d}")).await.expect(200);
}

// ---------------------------------------------------------------------------
// Uploads
// ---------------------------------------------------------------------------

#[tokio::test]
async fn monolithic_post_with_digest() {
    let reg = Reg::new().await;
    // Several MiB in many small pieces, without Content-Length.
    let data = bytes_of(3 * 1024 * 1024 + 17, 3);
    let d = sha256(&data);
    let r = reg
        .call(
            Method::POST,
            &format!("/v2/repo/blobs/uploads/?digest={d}"),
            &[],
            streamed(&data, 64 * 1024 + 3),
        )
        .await;
    r.expect(201);
    assert_eq!(r.header("location"), format!("/v2/repo/blobs/{d}"));
    assert_eq!(r.header("docker-content-digest"), d);
    let got = reg.get(r.header("location")).await;
    got.expect(200);
    assert_eq!(sha256(&got.body), d);
    assert_eq!(got.body.len(), data.len());
}

#[tokio::test]
async fn monolithic_post_with_wrong_digest_stores_nothing() {
    let reg = Reg::new().await;
    let data = b"the real bytes".to_vec();
    let claimed = sha256(b"other bytes");
    let r = reg
        .call(
            Method::POST,
            &format!("/v2/repo/blobs/uploads/?digest={claimed}"),
            &[],
            data.clone(),
        )
        .await;
    r.expect_error(400, "DIGEST_INVALID");
    reg.head(&format!("/v2/repo/blobs/{claimed}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    reg.head(&format!("/v2/repo/blobs/{}", sha256(&data)))
        .await
        .expect_error(404, "BLOB_UNKNOWN");

    reg.call(
        Method::POST,
        "/v2/repo/blobs/uploads/?digest=sha256:bad",
        &[],
        data,
    )
    .await
    .expect_error(400, "DIGEST_INVALID");
}

#[tokio::test]
async fn post_then_put_with_body() {
    let reg = Reg::new().await;
    let r = reg
        .call(Method::POST, "/v2/repo/blobs/uploads/", &[], Body::empty())
        .await;
    r.expect(202);
    let location = r.header("location").to_string();
    let id = r.header("docker-upload-uuid").to_string();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "session id {id:?} is not a UUID"
    );
    assert!(
        location.starts_with("/v2/repo/blobs/uploads/"),
        "{location}"
    );
    assert!(
        location.contains(&id),
        "Location {location} does not name session {id}"
    );

    let data = bytes_of(5000, 4);
    let d = sha256(&data);
    let len = data.len().to_string();
    let r = reg
        .call(
            Method::PUT,
            &with_query(&location, &format!("digest={d}")),
            &[
                ("content-type", "application/octet-stream"),
                ("content-length", &len),
            ],
            data.clone(),
        )
        .await;
    r.expect(201);
    assert_eq!(r.header("location"), format!("/v2/repo/blobs/{d}"));
    assert_eq!(r.header("docker-content-digest"), d);
    let got = reg.get(&format!("/v2/repo/blobs/{d}")).await;
    got.expect(200);
    assert_eq!(got.body.as_ref(), &data[..]);
    // The session is finished.
    reg.get(&location)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn chunked_upload_with_content_range() {
    let reg = Reg::new().await;
    let location = reg.start_upload("repo").await;
    let data = bytes_of(30, 5);

    let r = reg.patch_chunk(&location, 0, &data[..10]).await;
    r.expect(202);
    assert_eq!(r.header("range"), "0-9");
    let id = r.header("docker-upload-uuid").to_string();
    let location = r.header("location").to_string();
    assert!(location.contains(&id));

    let r = reg.patch_chunk(&location, 10, &data[10..20]).await;
    r.expect(202);
    assert_eq!(r.header("range"), "0-19");
    let location = r.header("location").to_string();

    let r = reg.get(&location).await;
    r.expect(204);
    assert_eq!(r.header("range"), "0-19");
    assert_eq!(r.header("docker-upload-uuid"), id);
    assert!(r.header("location").contains(&id));

    // The last chunk travels with the closing PUT.
    let d = sha256(&data);
    let headers = [("content-range", "20-29"), ("content-length", "10")];
    let r = reg
        .call(
            Method::PUT,
            &with_query(&location, &format!("digest={d}")),
            &headers,
            data[20..].to_vec(),
        )
        .await;
    r.expect(201);
    assert_eq!(r.header("docker-content-digest"), d);
    let got = reg.get(&format!("/v2/repo/blobs/{d}")).await;
    got.expect(200);
    assert_eq!(got.body.as_ref(), &data[..]);
}

#[tokio::test]
async fn chunked_upload_closed_by_empty_put() {
    let reg = Reg::new().await;
    let location = reg.start_upload("repo").await;
    let data = bytes_of(64 * 1024, 6);
    let r = reg.patch_chunk(&location, 0, &data[..40_000]).await;
    r.expect(202);
    let r = reg
        .patch_chunk(r.header("location"), 40_000, &data[40_000..])
        .await;
    r.expect(202);
    assert_eq!(r.header("range"), format!("0-{}", data.len() - 1));
    let d = sha256(&data);
    let r = reg
        .call(
            Method::PUT,
            &with_query(r.header("location"), &format!("digest={d}")),
            &[("content-length", "0")],
            Body::empty(),
        )
        .await;
    r.expect(201);
    assert_eq!(
        reg.get(&format!("/v2/repo/blobs/{d}")).await.body.as_ref(),
        &data[..]
    );
}

#[tokio::test]
async fn out_of_order_and_repeated_chunks_are_416() {
    let reg = Reg::new().await;
    let location = reg.start_upload("repo").await;
    let data = bytes_of(30, 7);
    reg.patch_chunk(&location, 0, &data[..10]).await.expect(202);

    // A gap.
    let r = reg.patch_chunk(&location, 20, &data[20..]).await;
    r.expect_error_status(416);
    assert_eq!(r.header("range"), "0-9");
    // The same chunk again.
    let r = reg.patch_chunk(&location, 0, &data[..10]).await;
    r.expect_error_status(416);
    assert_eq!(r.header("range"), "0-9");
    // An overlap.
    let r = reg.patch_chunk(&location, 5, &data[5..15]).await;
    r.expect_error_status(416);
    assert_eq!(r.header("range"), "0-9");

    // The session is unharmed and continues where it was.
    let r = reg.get(&location).await;
    r.expect(204);
    assert_eq!(r.header("range"), "0-9");
    reg.patch_chunk(&location, 10, &data[10..])
        .await
        .expect(202);
    let d = sha256(&data);
    reg.call(
        Method::PUT,
        &with_query(&location, &format!("digest={d}")),
        &[],
        Body::empty(),
    )
    .await
    .expect(201);
    assert_eq!(
        reg.get(&format!("/v2/repo/blobs/{d}")).await.body.as_ref(),
        &data[..]
    );
}

#[tokio::test]
async fn content_length_must_match_content_range() {
    let reg = Reg::new().await;
    let location = reg.start_upload("repo").await;
    let headers = [("content-range", "0-9"), ("content-length", "5")];
    let r = reg
        .call(Method::PATCH, &location, &headers, b"12345".to_vec())
        .await;
    r.expect_error(400, "SIZE_INVALID");
    // Nothing was appended.
    let r = reg.get(&location).await;
    r.expect(204);
    assert_eq!(r.header("range"), "0-0");
    reg.patch_chunk(&location, 0, b"0123456789")
        .await
        .expect(202);

    // The same rule on the closing PUT.
    let d = sha256(b"0123456789abcde");
    let headers = [("content-range", "10-14"), ("content-length", "9")];
    reg.call(
        Method::PUT,
        &with_query(&location, &format!("digest={d}")),
        &headers,
        b"abcde".to_vec(),
    )
    .await
    .expect_error(400, "SIZE_INVALID");
}

#[tokio::test]
async fn malformed_content_range_is_rejected() {
    let reg = Reg::new().await;
    let location = reg.start_upload("repo").await;
    let r = reg
        .call(
            Method::PATCH,
            &location,
            &[("content-range", "nonsense")],
            b"abc".to_vec(),
        )
        .await;
    r.expect_error(416, "BLOB_UPLOAD_INVALID");
}

#[tokio::test]
async fn content_range_that_would_wrap_is_416() {
    // `last - first + 1` overflows: it must not become "0 bytes expected".
    let reg = Reg::new().await;
    let location = reg.start_upload("repo").await;
    reg.call(
        Method::PATCH,
        &location,
        &[("content-range", "0-18446744073709551615")],
        Vec::new(),
    )
    .await
    .expect_error(416, "BLOB_UPLOAD_INVALID");
    let status = reg.get(&location).await;
    status.expect(204);
    assert_eq!(status.header("range"), "0-0");
}

#[tokio::test]
async fn streamed_patch_without_content_range() {
    let reg = Reg::new().await;
    let location = reg.start_upload("repo").await;
    let data = bytes_of(300_000, 8);

    let r = reg
        .call(
            Method::PATCH,
            &location,
            &[],
            streamed(&data[..200_000], 7_000),
        )
        .await;
    r.expect(202);
    assert_eq!(r.header("range"), "0-199999");
    let r = reg
        .call(
            Method::PATCH,
            r.header("location"),
            &[],
            streamed(&data[200_000..], 9_999),
        )
        .await;
    r.expect(202);
    assert_eq!(r.header("range"), "0-299999");

    let d = sha256(&data);
    reg.call(
        Method::PUT,
        &with_query(r.header("location"), &format!("digest={d}")),
        &[],
        Body::empty(),
    )
    .await
    .expect(201);
    let got = reg.get(&format!("/v2/repo/blobs/{d}")).await;
    got.expect(200);
    assert_eq!(got.body.as_ref(), &data[..]);
}

#[tokio::test]
async fn put_with_wrong_digest_stores_nothing_and_ends_the_session() {
    let reg = Reg::new().await;
    let location = reg.start_upload("repo").await;
    let data = b"some bytes of a layer".to_vec();
    reg.patch_chunk(&location, 0, &data).await.expect(202);
    let wrong = sha256(b"different bytes");
    let r = reg
        .call(
            Method::PUT,
            &with_query(&location, &format!("digest={wrong}")),
            &[],
            Body::empty(),
        )
        .await;
    r.expect_error(400, "DIGEST_INVALID");
    reg.head(&format!("/v2/repo/blobs/{wrong}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    reg.head(&format!("/v2/repo/blobs/{}", sha256(&data)))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    reg.get(&location)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.patch_chunk(&location, 0, &data)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    let right = sha256(&data);
    reg.call(
        Method::PUT,
        &with_query(&location, &format!("digest={right}")),
        &[],
        Body::empty(),
    )
    .await
    .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn put_without_or_with_bad_digest_is_digest_invalid() {
    let reg = Reg::new().await;
    let location = reg.start_upload("repo").await;
    reg.patch_chunk(&location, 0, b"abc").await.expect(202);
    reg.call(Method::PUT, &location, &[], Body::empty())
        .await
        .expect_error(400, "DIGEST_INVALID");
    reg.call(
        Method::PUT,
        &with_query(&location, "digest=sha256:xyz"),
        &[],
        Body::empty(),
    )
    .await
    .expect_error(400, "DIGEST_INVALID");
    // Neither refusal consumed the session.
    let d = sha256(b"abc");
    reg.call(
        Method::PUT,
        &with_query(&location, &format!("digest={d}")),
        &[],
        Body::empty(),
    )
    .await
    .expect(201);
}

#[tokio::test]
async fn cancelled_upload_is_gone() {
    let reg = Reg::new().await;
    let location = reg.start_upload("repo").await;
    reg.patch_chunk(&location, 0, b"partial").await.expect(202);
    reg.delete(&location).await.expect(204);
    reg.get(&location)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.patch_chunk(&location, 7, b"more")
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.call(Method::PATCH, &location, &[], b"more".to_vec())
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    let d = sha256(b"partial");
    reg.call(
        Method::PUT,
        &with_query(&location, &format!("digest={d}")),
        &[],
        Body::empty(),
    )
    .await
    .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.delete(&location)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.head(&format!("/v2/repo/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn session_belongs_to_its_repository() {
    let reg = Reg::new().await;
    let location = reg.start_upload("team/a").await;
    let id = location.rsplit('/').next().unwrap().to_string();
    let other = format!("/v2/team/b/blobs/uploads/{id}");
    let d = sha256(b"xyz");
    reg.get(&other)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.patch_chunk(&other, 0, b"xyz")
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.call(
        Method::PUT,
        &with_query(&other, &format!("digest={d}")),
        &[],
        b"xyz".to_vec(),
    )
    .await
    .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.delete(&other)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.head(&format!("/v2/team/b/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    // Still alive where it was opened.
    reg.patch_chunk(&location, 0, b"xyz").await.expect(202);
    reg.call(
        Method::PUT,
        &with_query(&location, &format!("digest={d}")),
        &[],
        Body::empty(),
    )
    .await
    .expect(201);
    reg.head(&format!("/v2/team/a/blobs/{d}")).await.expect(200);
    reg.head(&format!("/v2/team/b/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn unknown_or_non_uuid_session_ids() {
    let reg = Reg::new().await;
    reg.start_upload("repo").await;
    let d = sha256(b"x");
    let random = uuid::Uuid::new_v4().to_string();
    for id in ["not-a-uuid", "12345", random.as_str(), "..", "%2e%2e"] {
        let uri = format!("/v2/repo/blobs/uploads/{id}");
        reg.get(&uri).await.expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        reg.call(Method::PATCH, &uri, &[], b"x".to_vec())
            .await
            .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        reg.call(
            Method::PUT,
            &with_query(&uri, &format!("digest={d}")),
            &[],
            b"x".to_vec(),
        )
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
        reg.delete(&uri)
            .await
            .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    }
}

#[tokio::test]
async fn sha512_digests_work() {
    let reg = Reg::new().await;
    // Monolithic.
    let data = bytes_of(100_000, 9);
    let d = sha512(&data);
    let r = reg
        .call(
            Method::POST,
            &format!("/v2/repo/blobs/uploads/?digest={d}"),
            &[],
            data.clone(),
        )
        .await;
    r.expect(201);
    assert_eq!(r.header("docker-content-digest"), d);
    let got = reg.get(&format!("/v2/repo/blobs/{d}")).await;
    got.expect(200);
    assert_eq!(got.header("docker-content-digest"), d);
    assert_eq!(got.body.as_ref(), &data[..]);

    // Chunked.
    let data = bytes_of(50_000, 10);
    let d = sha512(&data);
    let location = reg.start_upload("repo").await;
    reg.patch_chunk(&location, 0, &data[..20_000])
        .await
        .expect(202);
    reg.patch_chunk(&location, 20_000, &data[20_000..])
        .await
        .expect(202);
    reg.call(
        Method::PUT,
        &with_query(&location, &format!("digest={d}")),
        &[],
        Body::empty(),
    )
    .await
    .expect(201);
    assert_eq!(
        reg.get(&format!("/v2/repo/blobs/{d}")).await.body.as_ref(),
        &data[..]
    );

    // A wrong sha512 is refused like a wrong sha256.
    let location = reg.start_upload("repo").await;
    reg.patch_chunk(&location, 0, b"abc").await.expect(202);
    let wrong = sha512(b"abd");
    reg.call(
        Method::PUT,
        &with_query(&location, &format!("digest={wrong}")),
        &[],
        Body::empty(),
    )
    .await
    .expect_error(400, "DIGEST_INVALID");
    reg.head(&format!("/v2/repo/blobs/{wrong}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn empty_blob_works() {
    let reg = Reg::new().await;
    let d = reg.push_blob("repo", b"").await;
    assert_eq!(d, EMPTY_SHA256);
    let got = reg.get(&format!("/v2/repo/blobs/{d}")).await;
    got.expect(200);
    assert!(got.body.is_empty());
    assert_eq!(got.header("content-length"), "0");
    let r = reg.head(&format!("/v2/repo/blobs/{d}")).await;
    r.expect(200);
    assert_eq!(r.header("content-length"), "0");
    // No byte range of an empty blob exists.
    let r = reg
        .get_with(&format!("/v2/repo/blobs/{d}"), &[("range", "bytes=0-")])
        .await;
    r.expect_error_status(416);
    assert_eq!(r.header("content-range"), "bytes */0");

    // POST then a closing PUT with no bytes at all, in another repository.
    let location = reg.start_upload("other").await;
    let r = reg.get(&location).await;
    r.expect(204);
    reg.call(
        Method::PUT,
        &with_query(&location, &format!("digest={d}")),
        &[("content-length", "0")],
        Body::empty(),
    )
    .await
    .expect(201);
    reg.head(&format!("/v2/other/blobs/{d}")).await.expect(200);
}

#[tokio::test]
async fn upload_session_survives_reopening_the_registry() {
    let reg = Reg::new().await;
    let data = bytes_of(200, 11);
    let location = reg.start_upload("repo").await;
    reg.patch_chunk(&location, 0, &data[..100])
        .await
        .expect(202);

    let Reg {
        client,
        config,
        root,
    } = reg;
    drop(client);
    let reopened = Client(open_router(&config).await);
    let r = reopened.get(&location).await;
    r.expect(204);
    assert_eq!(r.header("range"), "0-99");
    let r = reopened.patch_chunk(&location, 100, &data[100..]).await;
    r.expect(202);
    assert_eq!(r.header("range"), "0-199");
    let d = sha256(&data);
    reopened
        .call(
            Method::PUT,
            &with_query(&location, &format!("digest={d}")),
            &[],
            Body::empty(),
        )
        .await
        .expect(201);
    let got = reopened.get(&format!("/v2/repo/blobs/{d}")).await;
    got.expect(200);
    assert_eq!(got.body.as_ref(), &data[..]);
    drop(root);
}

#[tokio::test]
async fn finished_upload_can_close_after_reopening_with_sha512() {
    // After a restart no running hash exists: the staged bytes are re-read.
    let reg = Reg::new().await;
    let data = bytes_of(70_000, 12);
    let location = reg.start_upload("repo").await;
    reg.patch_chunk(&location, 0, &data).await.expect(202);
    let Reg {
        client,
        config,
        root,
    } = reg;
    drop(client);
    let reopened = Client(open_router(&config).await);
    let d = sha512(&data);
    reopened
        .call(
            Method::PUT,
            &with_query(&location, &format!("digest={d}")),
            &[],
            Body::empty(),
        )
        .await
        .expect(201);
    assert_eq!(
        reopened
            .get(&format!("/v2/repo/blobs/{d}"))
            .await
            .body
            .as_ref(),
        &data[..]
    );
    drop(root);
}

// ---------------------------------------------------------------------------
// Cross-repository mounts
// ---------------------------------------------------------------------------

#[tokio::test]
async fn mount_from_a_repository_that_has_the_blob() {
    let reg = Reg::new().await;
    let data = b"shared base layer".to_vec();
    let d = reg.push_blob("lib/base", &data).await;
    let r = reg
        .call(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?mount={d}&from=lib/base"),
            &[],
            Body::empty(),
        )
        .await;
    r.expect(201);
    assert_eq!(r.header("location"), format!("/v2/app/blobs/{d}"));
    assert_eq!(r.header("docker-content-digest"), d);
    let got = reg.get(&format!("/v2/app/blobs/{d}")).await;
    got.expect(200);
    assert_eq!(got.body.as_ref(), &data[..]);
}

#[tokio::test]
async fn auto_mount_finds_the_blob_anywhere() {
    let reg = Reg::new().await;
    let d = reg.push_blob("holder", b"auto mounted").await;
    for (repo, query) in [
        ("first", format!("mount={d}&from=lacks")),
        ("second", format!("mount={d}")),
        ("third", format!("mount={d}&from=NOT_A_NAME")),
    ] {
        let r = reg
            .call(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?{query}"),
                &[],
                Body::empty(),
            )
            .await;
        r.expect(201);
        assert_eq!(r.header("docker-content-digest"), d);
        reg.head(&format!("/v2/{repo}/blobs/{d}")).await.expect(200);
    }
}

#[tokio::test]
async fn without_auto_mount_or_from_a_blob_already_linked_still_opens_a_session() {
    let reg = Reg::with(|c| c.uploads.auto_mount = false).await;
    let d = reg.push_blob("target", b"already in target").await;
    let r = reg
        .call(
            Method::POST,
            &format!("/v2/target/blobs/uploads/?mount={d}"),
            &[],
            Body::empty(),
        )
        .await;
    r.expect(202);
    let location = r.header("location").to_string();
    assert!(
        location.starts_with("/v2/target/blobs/uploads/"),
        "{location}"
    );
    reg.get(&location).await.expect(204);
    reg.delete(&location).await.expect(204);
}

#[tokio::test]
async fn without_auto_mount_a_wrong_from_falls_back_to_an_upload() {
    let reg = Reg::with(|c| c.uploads.auto_mount = false).await;
    let data = b"only in holder".to_vec();
    let d = reg.push_blob("holder", &data).await;

    for query in [format!("mount={d}&from=lacks"), format!("mount={d}")] {
        let r = reg
            .call(
                Method::POST,
                &format!("/v2/target/blobs/uploads/?{query}"),
                &[],
                Body::empty(),
            )
            .await;
        r.expect(202);
        let location = r.header("location").to_string();
        assert!(
            location.starts_with("/v2/target/blobs/uploads/"),
            "{location}"
        );
        assert!(location.contains(r.header("docker-upload-uuid")));
        reg.head(&format!("/v2/target/blobs/{d}"))
            .await
            .expect_error(404, "BLOB_UNKNOWN");
        // The fallback is a real session.
        reg.get(&location).await.expect(204);
        reg.delete(&location).await.expect(204);
    }

    // The right `from` still mounts.
    reg.call(
        Method::POST,
        &format!("/v2/target/blobs/uploads/?mount={d}&from=holder"),
        &[],
        Body::empty(),
    )
    .await
    .expect(201);
    assert_eq!(
        reg.get(&format!("/v2/target/blobs/{d}"))
            .await
            .body
            .as_ref(),
        &data[..]
    );
}

#[tokio::test]
async fn mount_of_an_unknown_blob_opens_a_session() {
    let reg = Reg::new().await;
    let data = b"nobody has this yet".to_vec();
    let d = sha256(&data);
    let r = reg
        .call(
            Method::POST,
            &format!("/v2/repo/blobs/uploads/?mount={d}&from=other"),
            &[],
            Body::empty(),
        )
        .await;
    r.expect(202);
    let location = r.header("location").to_string();
    reg.call(
        Method::PUT,
        &with_query(&location, &format!("digest={d}")),
        &[],
        data.clone(),
    )
    .await
    .expect(201);
    reg.head(&format!("/v2/repo/blobs/{d}")).await.expect(200);
}

#[tokio::test]
async fn mount_with_an_invalid_digest_is_digest_invalid() {
    let reg = Reg::new().await;
    for bad in ["sha256:nothex", "garbage", "sha256:"] {
        reg.call(
            Method::POST,
            &format!("/v2/repo/blobs/uploads/?mount={bad}&from=other"),
            &[],
            Body::empty(),
        )
        .await
        .expect_error(400, "DIGEST_INVALID");
    }
}

// ---------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn manifest_put_and_get_by_tag_and_digest() {
    let reg = Reg::new().await;
    let (config, layer) = image_blobs("put-get");
    reg.push_blob("repo", &config).await;
    reg.push_blob("repo", &layer).await;
    let body = image_manifest(OCI_MANIFEST, &config, &layer);
    let d = sha256(&body);

    let r = reg
        .put_manifest("repo", "v1", Some(OCI_MANIFEST), &body)
        .await;
    r.expect(201);
    assert_eq!(r.header("location"), format!("/v2/repo/manifests/{d}"));
    assert_eq!(r.header("docker-content-digest"), d);

    let r = reg
        .put_manifest("repo", &d, Some(OCI_MANIFEST), &body)
        .await;
    r.expect(201);
    assert_eq!(r.header("location"), format!("/v2/repo/manifests/{d}"));
    assert_eq!(r.header("docker-content-digest"), d);

    for reference in ["v1", d.as_str()] {
        let uri = format!("/v2/repo/manifests/{reference}");
        let r = reg.get(&uri).await;
        r.expect(200);
        assert_eq!(r.header("content-type"), OCI_MANIFEST);
        assert_eq!(r.header("docker-content-digest"), d);
        assert_eq!(r.header("content-length"), body.len().to_string());
        assert_eq!(r.body.as_ref(), &body[..]);

        let r = reg.head(&uri).await;
        r.expect(200);
        assert!(r.body.is_empty());
        assert_eq!(r.header("content-type"), OCI_MANIFEST);
        assert_eq!(r.header("docker-content-digest"), d);
        assert_eq!(r.header("content-length"), body.len().to_string());
    }
}

#[tokio::test]
async fn manifest_pushed_by_digest_only_is_untagged() {
    let reg = Reg::new().await;
    let (config, layer) = image_blobs("by-digest");
    reg.push_blob("repo", &config).await;
    reg.push_blob("repo", &layer).await;
    let body = image_manifest(OCI_MANIFEST, &config, &layer);
    let d = sha256(&body);
    reg.put_manifest("repo", &d, Some(OCI_MANIFEST), &body)
        .await
        .expect(201);
    reg.get(&format!("/v2/repo/manifests/{d}"))
        .await
        .expect(200);
    assert!(reg.tags("repo").await.is_empty());
}

#[tokio::test]
async fn manifest_put_by_mismatched_digest_is_refused() {
    let reg = Reg::new().await;
    let (config, layer) = image_blobs("mismatch");
    reg.push_blob("repo", &config).await;
    reg.push_blob("repo", &layer).await;
    let body = image_manifest(OCI_MANIFEST, &config, &layer);
    let wrong = sha256(b"not this manifest");
    reg.put_manifest("repo", &wrong, Some(OCI_MANIFEST), &body)
        .await
        .expect_error(400, "DIGEST_INVALID");
    reg.get(&format!("/v2/repo/manifests/{wrong}"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.get(&format!("/v2/repo/manifests/{}", sha256(&body)))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    // A sha512 reference is checked with sha512.
    let right512 = sha512(&body);
    let r = reg
        .put_manifest("repo", &right512, Some(OCI_MANIFEST), &body)
        .await;
    r.expect(201);
    assert_eq!(r.header("docker-content-digest"), right512);
    let r = reg.get(&format!("/v2/repo/manifests/{right512}")).await;
    r.expect(200);
    assert_eq!(r.body.as_ref(), &body[..]);
}

#[tokio::test]
async fn all_four_manifest_media_types() {
    let reg = Reg::new().await;
    let oci = reg.push_image("repo", "oci", "oci", OCI_MANIFEST).await;
    let docker = reg
        .push_image("repo", "docker", "docker", DOCKER_MANIFEST)
        .await;

    let oci_index = index_manifest(OCI_INDEX, &[(OCI_MANIFEST, &oci.body)]);
    reg.put_manifest("repo", "oci-index", Some(OCI_INDEX), &oci_index)
        .await
        .expect(201);
    let docker_list = index_manifest(DOCKER_LIST, &[(DOCKER_MANIFEST, &docker.body)]);
    reg.put_manifest("repo", "docker-list", Some(DOCKER_LIST), &docker_list)
        .await
        .expect(201);

    let cases: [(&str, &str, &[u8]); 4] = [
        ("oci", OCI_MANIFEST, &oci.body),
        ("docker", DOCKER_MANIFEST, &docker.body),
        ("oci-index", OCI_INDEX, &oci_index),
        ("docker-list", DOCKER_LIST, &docker_list),
    ];
    for (tag, media_type, body) in cases {
        for reference in [tag.to_string(), sha256(body)] {
            let uri = format!("/v2/repo/manifests/{reference}");
            let r = reg.get_with(&uri, &[("accept", media_type)]).await;
            r.expect(200);
            assert_eq!(r.header("content-type"), media_type, "{uri}");
            assert_eq!(r.header("docker-content-digest"), sha256(body));
            assert_eq!(r.body.as_ref(), body, "{uri}");
            let r = reg.head(&uri).await;
            r.expect(200);
            assert_eq!(r.header("content-type"), media_type, "{uri}");
        }
    }
}

#[tokio::test]
async fn artifact_manifest_with_artifact_type() {
    let reg = Reg::new().await;
    let empty = reg.push_blob("repo", b"{}").await;
    let payload = b"an sbom document".to_vec();
    reg.push_blob("repo", &payload).await;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1",
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2, "data": "e30="},
        "layers": [descriptor("application/spdx+json", &payload)],
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }))
    .unwrap();
    let r = reg
        .put_manifest("repo", "sbom", Some(OCI_MANIFEST), &body)
        .await;
    r.expect(201);
    let r = reg.get("/v2/repo/manifests/sbom").await;
    r.expect(200);
    assert_eq!(r.header("content-type"), OCI_MANIFEST);
    assert_eq!(r.body.as_ref(), &body[..]);
}

#[tokio::test]
async fn manifest_without_media_type_uses_content_type() {
    let reg = Reg::new().await;
    let (config, layer) = image_blobs("no-media-type");
    reg.push_blob("repo", &config).await;
    reg.push_blob("repo", &layer).await;
    // Distinct bodies, so each is its own manifest.
    let body_for = |note: &str| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": [descriptor(OCI_LAYER, &layer)],
            "annotations": {"note": note},
        }))
        .unwrap()
    };
    let cases = [
        ("oci", Some(OCI_MANIFEST), OCI_MANIFEST),
        ("docker", Some(DOCKER_MANIFEST), DOCKER_MANIFEST),
        (
            "with-params",
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
            OCI_MANIFEST,
        ),
        ("none", None, OCI_MANIFEST),
    ];
    for (tag, content_type, served) in cases {
        let body = body_for(tag);
        reg.put_manifest("repo", tag, content_type, &body)
            .await
            .expect(201);
        let r = reg.get(&format!("/v2/repo/manifests/{tag}")).await;
        r.expect(200);
        assert_eq!(r.header("content-type"), served, "{tag}");
        assert_eq!(r.body.as_ref(), &body[..]);
    }
}

#[tokio::test]
async fn manifest_referencing_missing_blobs_or_children() {
    let reg = Reg::new().await;
    let (config, layer) = image_blobs("missing");
    reg.push_blob("repo", &config).await;
    // The layer is missing.
    let body = image_manifest(OCI_MANIFEST, &config, &layer);
    let entry = reg
        .put_manifest("repo", "v1", Some(OCI_MANIFEST), &body)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(
        entry["detail"]["digest"],
        sha256(&layer),
        "detail names the missing blob: {entry}"
    );
    reg.get("/v2/repo/manifests/v1")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");

    // In another repository does not count.
    reg.push_blob("elsewhere", &layer).await;
    reg.put_manifest("repo", "v1", Some(OCI_MANIFEST), &body)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");

    // An index whose child manifest was never pushed.
    let child = image_manifest(OCI_MANIFEST, &config, &config);
    let index = index_manifest(OCI_INDEX, &[(OCI_MANIFEST, &child)]);
    reg.put_manifest("repo", "idx", Some(OCI_INDEX), &index)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    let list = index_manifest(DOCKER_LIST, &[(DOCKER_MANIFEST, &child)]);
    reg.put_manifest("repo", "list", Some(DOCKER_LIST), &list)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert!(
        reg.catalog().await.is_empty(),
        "refused manifests created repositories"
    );
}

#[tokio::test]
async fn manifest_with_wrong_descriptor_size_is_invalid() {
    let reg = Reg::new().await;
    let (config, layer) = image_blobs("size");
    reg.push_blob("repo", &config).await;
    reg.push_blob("repo", &layer).await;
    let mut m: Value =
        serde_json::from_slice(&image_manifest(OCI_MANIFEST, &config, &layer)).unwrap();
    m["layers"][0]["size"] = json!(layer.len() + 1);
    let body = serde_json::to_vec(&m).unwrap();
    reg.put_manifest("repo", "v1", Some(OCI_MANIFEST), &body)
        .await
        .expect_error(400, "MANIFEST_INVALID");
}

#[tokio::test]
async fn schema1_manifests_are_refused_clearly() {
    let reg = Reg::new().await;
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 1,
        "name": "repo",
        "tag": "v1",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": sha256(b"x")}],
        "history": [{"v1Compatibility": "{}"}],
        "signatures": [],
    }))
    .unwrap();
    for content_type in [
        Some(SCHEMA1_SIGNED),
        Some(SCHEMA1),
        None,
        Some("application/json"),
    ] {
        let entry = reg
            .put_manifest("repo", "v1", content_type, &body)
            .await
            .expect_error(400, "MANIFEST_INVALID");
        let message = entry["message"].as_str().unwrap().to_lowercase();
        assert!(
            message.contains("schema1") && message.contains("not supported"),
            "{content_type:?}: message does not say schema1 is unsupported: {message}"
        );
    }
}

#[tokio::test]
async fn malformed_manifests_are_invalid() {
    let reg = Reg::new().await;
    let (config, layer) = image_blobs("malformed");
    reg.push_blob("repo", &config).await;
    reg.push_blob("repo", &layer).await;
    let good: Value =
        serde_json::from_slice(&image_manifest(OCI_MANIFEST, &config, &layer)).unwrap();
    let mut v3 = good.clone();
    v3["schemaVersion"] = json!(3);
    let mut no_layers = good.clone();
    no_layers.as_object_mut().unwrap().remove("layers");
    let mut unknown_type = good.clone();
    unknown_type["mediaType"] = json!("application/vnd.example.unknown+json");
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("not json", b"this is not json".to_vec(), Some(OCI_MANIFEST)),
        (
            "truncated",
            b"{\"schemaVersion\": 2, \"config\":".to_vec(),
            Some(OCI_MANIFEST),
        ),
        ("empty body", Vec::new(), Some(OCI_MANIFEST)),
        (
            "schemaVersion 3",
            serde_json::to_vec(&v3).unwrap(),
            Some(OCI_MANIFEST),
        ),
        (
            "no layers",
            serde_json::to_vec(&no_layers).unwrap(),
            Some(OCI_MANIFEST),
        ),
        (
            "unknown media type",
            serde_json::to_vec(&unknown_type).unwrap(),
            None,
        ),
        (
            "mediaType vs Content-Type",
            serde_json::to_vec(&good).unwrap(),
            Some(DOCKER_MANIFEST),
        ),
    ];
    for (what, body, content_type) in cases {
        let r = reg.put_manifest("repo", "v1", content_type, &body).await;
        assert_eq!(r.status.as_u16(), 400, "{what}: {}", r.text());
        r.expect_error(400, "MANIFEST_INVALID");
    }
    reg.get("/v2/repo/manifests/v1")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn manifest_over_the_default_limit_is_413() {
    let reg = Reg::new().await;
    let big = vec![b' '; 4 * 1024 * 1024 + 1];
    // Declared too large up front.
    reg.put_manifest("repo", "big", Some(OCI_MANIFEST), &big)
        .await
        .expect_error_status(413);
    // Streamed without a length.
    reg.call(
        Method::PUT,
        "/v2/repo/manifests/big",
        &[("content-type", OCI_MANIFEST)],
        streamed(&big, 100_000),
    )
    .await
    .expect_error_status(413);
    // Lying about the length.
    reg.call(
        Method::PUT,
        "/v2/repo/manifests/big",
        &[("content-type", OCI_MANIFEST), ("content-length", "10")],
        big.clone(),
    )
    .await
    .expect_error_status(413);
    reg.get("/v2/repo/manifests/big")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn manifest_with_too_many_descriptors_is_refused() {
    let reg = Reg::with(|c| c.limits.max_manifest_descriptors = 4).await;
    let config = b"{}".to_vec();
    reg.push_blob("many", &config).await;
    let mut layers = Vec::new();
    for i in 0..4 {
        let layer = format!("layer {i}").into_bytes();
        reg.push_blob("many", &layer).await;
        layers.push(descriptor(OCI_LAYER, &layer));
    }
    let manifest = |layers: &[Value]| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config),
            "layers": layers,
        }))
        .unwrap()
    };
    // Config + 4 layers = 5 descriptors: one too many.
    let body = manifest(&layers);
    let error = reg
        .put_manifest("many", "five", Some(OCI_MANIFEST), &body)
        .await
        .expect_error(400, "MANIFEST_INVALID");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("5 descriptors") && message.contains("at most 4"),
        "{error}"
    );
    reg.get("/v2/many/manifests/five")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    let body = manifest(&layers[..3]);
    reg.put_manifest("many", "four", Some(OCI_MANIFEST), &body)
        .await
        .expect(201);
}

#[tokio::test]
async fn manifest_with_thousands_of_layers_is_stored_with_every_reference() {
    let reg = Reg::new().await;
    let config = b"{}".to_vec();
    reg.push_blob("wide", &config).await;
    let layer = b"one shared layer".to_vec();
    reg.push_blob("wide", &layer).await;
    let other = b"a second layer".to_vec();
    reg.push_blob("wide", &other).await;
    // 9,999 layers (the default limit is 10,000 descriptors with the config),
    // all but the last one the same blob.
    let mut layers = vec![descriptor(OCI_LAYER, &layer); 9_998];
    layers.push(descriptor(OCI_LAYER, &other));
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": layers,
    }))
    .unwrap();
    reg.put_manifest("wide", "big", Some(OCI_MANIFEST), &body)
        .await
        .expect(201);
    // A reference checked in the same batch still fails on its own.
    layers[5_000] = descriptor(OCI_LAYER, b"never pushed");
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config),
        "layers": layers,
    }))
    .unwrap();
    reg.put_manifest("wide", "broken", Some(OCI_MANIFEST), &body)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(reg.tags("wide").await, vec!["big".to_string()]);
}

#[tokio::test]
async fn manifest_limit_follows_configuration() {
    let (config, layer) = image_blobs("limit");
    let body = image_manifest(OCI_MANIFEST, &config, &layer);
    let limit = body.len();
    let reg = Reg::with(|c| c.limits.max_manifest_bytes = limit).await;
    reg.push_blob("repo", &config).await;
    reg.push_blob("repo", &layer).await;
    // Exactly at the limit: accepted.
    reg.put_manifest("repo", "fits", Some(OCI_MANIFEST), &body)
        .await
        .expect(201);
    // One byte over: refused, declared or streamed.
    let mut over = body.clone();
    over.push(b'\n');
    reg.put_manifest("repo", "over", Some(OCI_MANIFEST), &over)
        .await
        .expect_error_status(413);
    reg.call(
        Method::PUT,
        "/v2/repo/manifests/over",
        &[("content-type", OCI_MANIFEST)],
        streamed(&over, 7),
    )
    .await
    .expect_error_status(413);
    reg.get("/v2/repo/manifests/over")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn accept_header_is_honoured() {
    let reg = Reg::new().await;
    let image = reg.push_image("repo", "v1", "accept", OCI_MANIFEST).await;
    let uri = "/v2/repo/manifests/v1";
    reg.get_with(uri, &[("accept", DOCKER_MANIFEST)])
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.call(
        Method::HEAD,
        uri,
        &[("accept", DOCKER_MANIFEST)],
        Body::empty(),
    )
    .await
    .expect_error(404, "MANIFEST_UNKNOWN");
    reg.get_with(
        uri,
        &[("accept", &format!("{DOCKER_MANIFEST}, {DOCKER_LIST}"))],
    )
    .await
    .expect_error(404, "MANIFEST_UNKNOWN");

    let accepted = [
        "*/*".to_string(),
        format!("{DOCKER_MANIFEST}, {OCI_MANIFEST}"),
        format!("{OCI_MANIFEST}; q=0.5"),
        format!("{DOCKER_MANIFEST}, */*;q=0.1"),
    ];
    for accept in &accepted {
        let r = reg.get_with(uri, &[("accept", accept)]).await;
        r.expect(200);
        assert_eq!(r.body.as_ref(), &image.body[..], "Accept: {accept}");
        assert_eq!(r.header("content-type"), OCI_MANIFEST);
    }
    // Several Accept header lines.
    let r = reg
        .get_with(
            uri,
            &[("accept", DOCKER_MANIFEST), ("accept", OCI_MANIFEST)],
        )
        .await;
    r.expect(200);
}

#[tokio::test]
async fn unknown_manifests_and_bad_references() {
    let reg = Reg::new().await;
    reg.push_image("repo", "v1", "unknown", OCI_MANIFEST).await;
    let unknown = sha256(b"no such manifest");
    reg.get("/v2/repo/manifests/nope")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.head("/v2/repo/manifests/nope")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.get(&format!("/v2/repo/manifests/{unknown}"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.delete("/v2/repo/manifests/nope")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.delete(&format!("/v2/repo/manifests/{unknown}"))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    // A repository that does not exist has no manifest either.
    reg.get("/v2/norepo/manifests/v1")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");

    let md5 = format!("md5:{}", "a".repeat(32));
    for bad in ["sha256:abc", "sha256:", md5.as_str(), "sha256:ZZ"] {
        reg.get(&format!("/v2/repo/manifests/{bad}"))
            .await
            .expect_error(400, "DIGEST_INVALID");
        reg.delete(&format!("/v2/repo/manifests/{bad}"))
            .await
            .expect_error(400, "DIGEST_INVALID");
        reg.put_manifest("repo", bad, Some(OCI_MANIFEST), b"{}")
            .await
            .expect_error(400, "DIGEST_INVALID");
    }
    let long = "a".repeat(129);
    // No manifest can have a reference that is no tag: reading or deleting
    // one finds nothing; storing under one is an invalid tag.
    for bad in [
        "-bad",
        ".bad",
        ".INVALID_MANIFEST_NAME",
        long.as_str(),
        "bad%20tag",
        "b@d",
    ] {
        reg.get(&format!("/v2/repo/manifests/{bad}"))
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        reg.head(&format!("/v2/repo/manifests/{bad}"))
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
        reg.put_manifest("repo", bad, Some(OCI_MANIFEST), b"{}")
            .await
            .expect_error(400, "TAG_INVALID");
        reg.delete(&format!("/v2/repo/manifests/{bad}"))
            .await
            .expect_error(404, "MANIFEST_UNKNOWN");
    }
    // The longest valid tag is fine.
    reg.get(&format!("/v2/repo/manifests/{}", "a".repeat(128)))
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn manifests_are_per_repository() {
    let reg = Reg::new().await;
    let image = reg
        .push_image("team/a", "v1", "per-repo", OCI_MANIFEST)
        .await;
    reg.get("/v2/team/b/manifests/v1")
        .await
        .expect_error_status(404);
    reg.get(&format!("/v2/team/b/manifests/{}", image.digest))
        .await
        .expect_error_status(404);
}

#[tokio::test]
async fn tag_moves_to_the_latest_put() {
    let reg = Reg::new().await;
    let first = reg
        .push_image("repo", "latest", "first", OCI_MANIFEST)
        .await;
    // Read first, so a cached answer would be stale.
    let r = reg.get("/v2/repo/manifests/latest").await;
    r.expect(200);
    assert_eq!(r.body.as_ref(), &first.body[..]);
    let second = reg
        .push_image("repo", "latest", "second", OCI_MANIFEST)
        .await;
    let r = reg.get("/v2/repo/manifests/latest").await;
    r.expect(200);
    assert_eq!(r.body.as_ref(), &second.body[..]);
    // The first is still there by digest.
    reg.get(&format!("/v2/repo/manifests/{}", first.digest))
        .await
        .expect(200);
    assert_eq!(reg.tags("repo").await, vec!["latest"]);
}

#[tokio::test]
async fn delete_by_tag_removes_only_that_tag() {
    let reg = Reg::new().await;
    let image = reg.push_image("repo", "v1", "del-tag", OCI_MANIFEST).await;
    reg.put_manifest("repo", "v2", Some(OCI_MANIFEST), &image.body)
        .await
        .expect(201);
    reg.put_manifest("repo", "stable", Some(OCI_MANIFEST), &image.body)
        .await
        .expect(201);

    reg.get("/v2/repo/manifests/v1").await.expect(200);
    reg.delete("/v2/repo/manifests/v1").await.expect(202);
    reg.get("/v2/repo/manifests/v1")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.delete("/v2/repo/manifests/v1")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    let r = reg
        .get(&format!("/v2/repo/manifests/{}", image.digest))
        .await;
    r.expect(200);
    assert_eq!(r.body.as_ref(), &image.body[..]);
    reg.get("/v2/repo/manifests/v2").await.expect(200);
    reg.get("/v2/repo/manifests/stable").await.expect(200);
    assert_eq!(reg.tags("repo").await, vec!["stable", "v2"]);
}

#[tokio::test]
async fn delete_by_digest_removes_manifest_and_tags() {
    let reg = Reg::new().await;
    let image = reg
        .push_image("repo", "v1", "del-digest", OCI_MANIFEST)
        .await;
    reg.put_manifest("repo", "v2", Some(OCI_MANIFEST), &image.body)
        .await
        .expect(201);
    let keep = reg.push_image("repo", "keep", "kept", OCI_MANIFEST).await;

    let uri = format!("/v2/repo/manifests/{}", image.digest);
    for reference in [
        uri.as_str(),
        "/v2/repo/manifests/v1",
        "/v2/repo/manifests/v2",
    ] {
        reg.get(reference).await.expect(200);
    }
    reg.delete(&uri).await.expect(202);
    reg.get(&uri).await.expect_error(404, "MANIFEST_UNKNOWN");
    reg.head(&uri).await.expect_error(404, "MANIFEST_UNKNOWN");
    reg.get("/v2/repo/manifests/v1")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.get("/v2/repo/manifests/v2")
        .await
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.delete(&uri).await.expect_error(404, "MANIFEST_UNKNOWN");
    assert_eq!(reg.tags("repo").await, vec!["keep"]);
    let r = reg.get("/v2/repo/manifests/keep").await;
    r.expect(200);
    assert_eq!(r.body.as_ref(), &keep.body[..]);
}

// ---------------------------------------------------------------------------
// Subject and referrers
// ---------------------------------------------------------------------------

/// Pushes an artifact manifest whose subject is `subject`.
async fn push_referrer(
    c: &Client,
    repo: &str,
    subject: (&str, usize),
    artifact_type: Option<&str>,
    note: &str,
) -> (String, Vec<u8>) {
    let empty = c.push_blob(repo, b"{}").await;
    let payload = format!("payload {note}").into_bytes();
    c.push_blob(repo, &payload).await;
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [descriptor("application/octet-stream", &payload)],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.0, "size": subject.1},
        "annotations": {"note": note},
    });
    if let Some(t) = artifact_type {
        m["artifactType"] = json!(t);
    }
    let body = serde_json::to_vec(&m).unwrap();
    let d = sha256(&body);
    let r = c.put_manifest(repo, &d, Some(OCI_MANIFEST), &body).await;
    r.expect(201);
    assert_eq!(
        r.header("oci-subject"),
        subject.0,
        "PUT of a manifest with a subject"
    );
    (d, body)
}

#[tokio::test]
async fn manifest_with_subject_is_listed_as_referrer() {
    let reg = Reg::new().await;
    let image = reg.push_image("repo", "v1", "subject", OCI_MANIFEST).await;
    let subject = (image.digest.as_str(), image.body.len());
    let (sbom, sbom_body) = push_referrer(
        &reg,
        "repo",
        subject,
        Some("application/vnd.example.sbom"),
        "sbom",
    )
    .await;
    let (sig, sig_body) = push_referrer(
        &reg,
        "repo",
        subject,
        Some("application/vnd.example.sig"),
        "sig",
    )
    .await;
    // Without artifactType, the config's media type stands in.
    let (plain, _) = push_referrer(&reg, "repo", subject, None, "plain").await;

    // A PUT without a subject has no OCI-Subject header.
    let r = reg
        .put_manifest("repo", "again", Some(OCI_MANIFEST), &image.body)
        .await;
    r.expect(201);
    assert!(r.opt_header("oci-subject").is_none());

    let r = reg
        .get(&format!("/v2/repo/referrers/{}", image.digest))
        .await;
    r.expect(200);
    assert_eq!(r.header("content-type"), OCI_INDEX);
    assert!(r.opt_header("oci-filters-applied").is_none());
    let index = r.json();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 3, "{index}");
    let find = |d: &str| {
        manifests
            .iter()
            .find(|m| m["digest"] == d)
            .unwrap_or_else(|| panic!("{d} missing from {index}"))
    };
    let m = find(&sbom);
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["size"], sbom_body.len());
    assert_eq!(m["artifactType"], "application/vnd.example.sbom");
    assert_eq!(m["annotations"]["note"], "sbom");
    let m = find(&sig);
    assert_eq!(m["size"], sig_body.len());
    assert_eq!(m["artifactType"], "application/vnd.example.sig");
    assert_eq!(m["annotations"]["note"], "sig");
    assert_eq!(find(&plain)["artifactType"], OCI_EMPTY);

    // Filtered.
    let r = reg
        .get(&format!(
            "/v2/repo/referrers/{}?artifactType=application/vnd.example.sbom",
            image.digest
        ))
        .await;
    r.expect(200);
    assert_eq!(r.header("oci-filters-applied"), "artifactType");
    let manifests = r.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["digest"], sbom);

    // A filter nothing matches.
    let r = reg
        .get(&format!(
            "/v2/repo/referrers/{}?artifactType=application/vnd.none",
            image.digest
        ))
        .await;
    r.expect(200);
    assert_eq!(r.header("oci-filters-applied"), "artifactType");
    assert_eq!(r.json()["manifests"], json!([]));

    // A deleted referrer disappears.
    reg.delete(&format!("/v2/repo/manifests/{sig}"))
        .await
        .expect(202);
    let r = reg
        .get(&format!("/v2/repo/referrers/{}", image.digest))
        .await;
    r.expect(200);
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn referrers_of_a_subject_never_pushed() {
    let reg = Reg::new().await;
    let absent = sha256(b"subject that was never pushed");
    let (d, _) = push_referrer(
        &reg,
        "repo",
        (&absent, 1234),
        Some("application/vnd.example.sig"),
        "early",
    )
    .await;
    let r = reg.get(&format!("/v2/repo/referrers/{absent}")).await;
    r.expect(200);
    let manifests = r.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["digest"], d);
}

#[tokio::test]
async fn referrers_without_any_are_an_empty_index() {
    let reg = Reg::new().await;
    let image = reg.push_image("repo", "v1", "lonely", OCI_MANIFEST).await;
    for uri in [
        format!("/v2/repo/referrers/{}", image.digest),
        format!("/v2/repo/referrers/{}", sha256(b"nothing")),
        format!("/v2/norepo/referrers/{}", sha256(b"nothing")),
    ] {
        let r = reg.get(&uri).await;
        r.expect(200);
        assert_eq!(r.header("content-type"), OCI_INDEX);
        let index = r.json();
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["mediaType"], OCI_INDEX);
        assert_eq!(index["manifests"], json!([]), "{uri}");
    }
    reg.get("/v2/repo/referrers/sha256:bad")
        .await
        .expect_error(400, "DIGEST_INVALID");
    reg.get(&format!("/v2/BAD/referrers/{}", image.digest))
        .await
        .expect_error(400, "NAME_INVALID");
}

#[tokio::test]
async fn referrers_are_per_repository() {
    let reg = Reg::new().await;
    let subject = sha256(b"shared subject");
    push_referrer(
        &reg,
        "team/a",
        (&subject, 10),
        Some("application/vnd.example.sig"),
        "a",
    )
    .await;
    let r = reg.get(&format!("/v2/team/b/referrers/{subject}")).await;
    r.expect(200);
    assert_eq!(r.json()["manifests"], json!([]));
}

// ---------------------------------------------------------------------------
// Tags list
// ---------------------------------------------------------------------------

const SHUFFLED_TAGS: [&str; 13] = [
    "v10", "V2", "latest", "1.0", "v1", "Alpha", "alpha", "0", "_x", "v2", "beta-1", "Z9", "9",
];

async fn repo_with_tags(reg: &Reg, repo: &str) -> Vec<String> {
    let image = reg
        .push_image(repo, SHUFFLED_TAGS[0], "tags", OCI_MANIFEST)
        .await;
    for tag in &SHUFFLED_TAGS[1..] {
        reg.put_manifest(repo, tag, Some(OCI_MANIFEST), &image.body)
            .await
            .expect(201);
    }
    let mut sorted: Vec<String> = SHUFFLED_TAGS.iter().map(|t| t.to_string()).collect();
    sorted.sort();
    sorted
}

#[tokio::test]
async fn tags_are_listed_in_lexical_order() {
    let reg = Reg::new().await;
    let sorted = repo_with_tags(&reg, "repo").await;
    let r = reg.get("/v2/repo/tags/list").await;
    r.expect(200);
    assert!(r.opt_header("link").is_none());
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(strings(&r.json()["tags"]), sorted);
}

#[tokio::test]
async fn tags_pagination_with_link() {
    let reg = Reg::new().await;
    let sorted = repo_with_tags(&reg, "team/repo").await;
    let mut uri = "/v2/team/repo/tags/list?n=4".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = reg.get(&uri).await;
        r.expect(200);
        pages += 1;
        let page = strings(&r.json()["tags"]);
        assert!(page.len() <= 4);
        seen.extend(page.iter().cloned());
        match r.opt_header("link") {
            Some(link) => {
                let last = page.last().expect("a page with a Link is not empty");
                assert_eq!(
                    link,
                    format!("</v2/team/repo/tags/list?n=4&last={last}>; rel=\"next\"")
                );
                uri = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_string();
            }
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, sorted);
    assert_eq!(pages, 4); // 13 tags in pages of 4

    // `last` alone: everything after it.
    let r = reg
        .get(&format!("/v2/team/repo/tags/list?last={}", sorted[5]))
        .await;
    r.expect(200);
    assert_eq!(strings(&r.json()["tags"]), sorted[6..].to_vec());
    assert!(r.opt_header("link").is_none());

    // An exact fit: the last page has no Link.
    let r = reg.get("/v2/team/repo/tags/list?n=13").await;
    r.expect(200);
    assert_eq!(strings(&r.json()["tags"]), sorted);
    assert!(r.opt_header("link").is_none());

    // More than there are.
    let r = reg.get("/v2/team/repo/tags/list?n=1000").await;
    r.expect(200);
    assert_eq!(strings(&r.json()["tags"]), sorted);
    assert!(r.opt_header("link").is_none());

    // n=0 is a valid (empty) page.
    let r = reg.get("/v2/team/repo/tags/list?n=0").await;
    r.expect(200);
    assert_eq!(r.json()["tags"], json!([]));
}

#[tokio::test]
async fn tags_with_the_largest_page_size() {
    let reg = Reg::new().await;
    let sorted = repo_with_tags(&reg, "repo").await;
    let r = reg.get(&format!("/v2/repo/tags/list?n={}", u32::MAX)).await;
    r.expect(200);
    assert_eq!(strings(&r.json()["tags"]), sorted);
}

#[tokio::test]
async fn catalog_with_the_largest_page_size() {
    let reg = Reg::new().await;
    reg.push_image("repo", "v1", "max-n", OCI_MANIFEST).await;
    let r = reg.get(&format!("/v2/_catalog?n={}", u32::MAX)).await;
    r.expect(200);
    assert_eq!(strings(&r.json()["repositories"]), vec!["repo"]);
}

#[tokio::test]
async fn tags_errors() {
    let reg = Reg::new().await;
    reg.push_image("repo", "v1", "tag-errors", OCI_MANIFEST)
        .await;
    reg.get("/v2/norepo/tags/list")
        .await
        .expect_error(404, "NAME_UNKNOWN");
    for n in ["abc", "-1", "1.5", ""] {
        reg.get(&format!("/v2/repo/tags/list?n={n}"))
            .await
            .expect_error(400, "PAGINATION_NUMBER_INVALID");
    }
    reg.get("/v2/REPO/tags/list")
        .await
        .expect_error(400, "NAME_INVALID");
}

// ---------------------------------------------------------------------------
// Catalog
// ---------------------------------------------------------------------------

#[tokio::test]
async fn catalog_lists_repositories_with_manifests() {
    let reg = Reg::new().await;
    assert!(reg.catalog().await.is_empty());
    for repo in ["d", "b/x", "a", "c", "b"] {
        reg.push_image(repo, "v1", repo, OCI_MANIFEST).await;
    }
    // Blobs or an upload session alone do not make a repository listed.
    reg.push_blob("blobonly", b"a lone blob").await;
    reg.start_upload("sessiononly").await;
    let all = reg.catalog().await;
    assert_eq!(all, vec!["a", "b", "b/x", "c", "d"]);

    // Pages of 2, following Link.
    let mut uri = "/v2/_catalog?n=2".to_string();
    let mut seen = Vec::new();
    let mut links = Vec::new();
    loop {
        let r = reg.get(&uri).await;
        r.expect(200);
        seen.extend(strings(&r.json()["repositories"]));
        match r.opt_header("link") {
            Some(link) => {
                links.push(link.to_string());
                uri = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_string();
            }
            None => break,
        }
        assert!(links.len() < 10);
    }
    assert_eq!(seen, all);
    assert_eq!(
        links,
        vec![
            "</v2/_catalog?n=2&last=b>; rel=\"next\"".to_string(),
            "</v2/_catalog?n=2&last=c>; rel=\"next\"".to_string(),
        ]
    );

    let r = reg.get("/v2/_catalog?n=2&last=b").await;
    r.expect(200);
    assert_eq!(strings(&r.json()["repositories"]), vec!["b/x", "c"]);
    reg.get("/v2/_catalog?n=abc")
        .await
        .expect_error(400, "PAGINATION_NUMBER_INVALID");
}

#[tokio::test]
async fn catalog_drops_a_repository_whose_last_manifest_is_deleted() {
    let reg = Reg::new().await;
    let gone = reg.push_image("gone", "v1", "gone", OCI_MANIFEST).await;
    reg.push_image("kept", "v1", "kept", OCI_MANIFEST).await;
    assert_eq!(reg.catalog().await, vec!["gone", "kept"]);
    // Removing only the tag keeps the (untagged) manifest, so the repository stays.
    reg.delete("/v2/gone/manifests/v1").await.expect(202);
    assert_eq!(reg.catalog().await, vec!["gone", "kept"]);
    reg.delete(&format!("/v2/gone/manifests/{}", gone.digest))
        .await
        .expect(202);
    assert_eq!(reg.catalog().await, vec!["kept"]);
}

// ---------------------------------------------------------------------------
// Names and path safety
// ---------------------------------------------------------------------------

#[tokio::test]
async fn deep_repository_names_work_everywhere() {
    let reg = Reg::new().await;
    let name = "a/b/c/d/e/f/g/h";
    let image = reg.push_image(name, "v1", "deep", OCI_MANIFEST).await;
    let r = reg.get(&format!("/v2/{name}/manifests/v1")).await;
    r.expect(200);
    assert_eq!(r.body.as_ref(), &image.body[..]);
    let (config, _) = image_blobs("deep");
    reg.get(&format!("/v2/{name}/blobs/{}", sha256(&config)))
        .await
        .expect(200);
    assert_eq!(reg.tags(name).await, vec!["v1"]);
    assert_eq!(reg.catalog().await, vec![name]);
    reg.get(&format!("/v2/{name}/referrers/{}", image.digest))
        .await
        .expect(200);

    let location = reg.start_upload(name).await;
    assert!(
        location.starts_with(&format!("/v2/{name}/blobs/uploads/")),
        "{location}"
    );
    reg.patch_chunk(&location, 0, b"deep bytes")
        .await
        .expect(202);
    let d = sha256(b"deep bytes");
    let r = reg
        .call(
            Method::PUT,
            &with_query(&location, &format!("digest={d}")),
            &[],
            Body::empty(),
        )
        .await;
    r.expect(201);
    assert_eq!(r.header("location"), format!("/v2/{name}/blobs/{d}"));

    // Names that contain endpoint words are still names.
    reg.push_image("blobs/manifests/tags", "v1", "words", OCI_MANIFEST)
        .await;
    assert_eq!(reg.tags("blobs/manifests/tags").await, vec!["v1"]);
}

#[tokio::test]
async fn invalid_repository_names_are_name_invalid() {
    let reg = Reg::new().await;
    let d = sha256(b"x");
    let long = "a".repeat(256);
    for bad in [
        "Upper",
        "a/B",
        "a/../b",
        "..",
        "a//b",
        "a-",
        "-a",
        "a/./b",
        "a__-b",
        "a%2fb",
        long.as_str(),
    ] {
        reg.get(&format!("/v2/{bad}/manifests/latest"))
            .await
            .expect_error(400, "NAME_INVALID");
        reg.put_manifest(bad, "latest", Some(OCI_MANIFEST), b"{}")
            .await
            .expect_error(400, "NAME_INVALID");
        reg.get(&format!("/v2/{bad}/blobs/{d}"))
            .await
            .expect_error(400, "NAME_INVALID");
        reg.call(
            Method::POST,
            &format!("/v2/{bad}/blobs/uploads/"),
            &[],
            Body::empty(),
        )
        .await
        .expect_error(400, "NAME_INVALID");
        reg.call(
            Method::POST,
            &format!("/v2/{bad}/blobs/uploads/?digest={d}"),
            &[],
            b"x".to_vec(),
        )
        .await
        .expect_error(400, "NAME_INVALID");
        reg.get(&format!("/v2/{bad}/tags/list"))
            .await
            .expect_error(400, "NAME_INVALID");
        reg.get(&format!("/v2/{bad}/blobs/uploads/{}", uuid::Uuid::new_v4()))
            .await
            .expect_error(400, "NAME_INVALID");
    }
    assert!(reg.catalog().await.is_empty());
}

fn list_tree(root: &Path, skip: &Path) -> BTreeSet<(PathBuf, Vec<u8>)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path == skip {
                continue;
            }
            if path.is_dir() {
                out.insert((path.clone(), Vec::new()));
                stack.push(path);
            } else {
                out.insert((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

#[tokio::test]
async fn path_traversal_never_escapes_the_data_dir() {
    let reg = Reg::new().await;
    let root = reg.root.path().to_path_buf();
    let data_dir = reg.config.data_dir.clone();
    std::fs::write(root.join("secret.txt"), b"do not touch").unwrap();
    std::fs::create_dir(root.join("uploads")).unwrap();
    std::fs::write(root.join("uploads/victim"), b"victim").unwrap();
    let before = list_tree(&root, &data_dir);
    let hex = "a".repeat(64);
    let evil = b"evil bytes".to_vec();
    let evil_digest = sha256(&evil);

    // Each hostile request gets its one error answer, and touches nothing.
    let cases: Vec<(Method, String, u16, &str)> = vec![
        (
            Method::GET,
            format!("/v2/%2e%2e/%2e%2e/secret.txt/blobs/sha256:{hex}"),
            400,
            "NAME_INVALID",
        ),
        (
            Method::GET,
            format!("/v2/../../secret.txt/blobs/sha256:{hex}"),
            400,
            "NAME_INVALID",
        ),
        (
            Method::GET,
            "/v2/repo/blobs/..%2f..%2f..%2fsecret.txt".to_string(),
            400,
            "DIGEST_INVALID",
        ),
        (
            Method::GET,
            "/v2/repo/blobs/sha256:..%2f..%2f..%2fsecret.txt".to_string(),
            400,
            "DIGEST_INVALID",
        ),
        (
            Method::GET,
            format!("/v2/repo/blobs/sha256%3a{hex}"),
            400,
            "DIGEST_INVALID",
        ),
        (
            Method::GET,
            "/v2/repo/blobs/sha256:../../../secret.txt".to_string(),
            404,
            "NOT_FOUND",
        ),
        (
            Method::DELETE,
            "/v2/repo/blobs/..%2F..%2Fsecret.txt".to_string(),
            400,
            "DIGEST_INVALID",
        ),
        (
            Method::GET,
            "/v2/repo/blobs/uploads/..%2f..%2fsecret.txt".to_string(),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            Method::GET,
            "/v2/repo/blobs/uploads/..%2fvictim".to_string(),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            Method::PATCH,
            "/v2/repo/blobs/uploads/..%2f..%2fsecret.txt".to_string(),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            Method::PATCH,
            "/v2/repo/blobs/uploads/..%2fvictim".to_string(),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            Method::PATCH,
            "/v2/repo/blobs/uploads/%2e%2e%2f%2e%2e%2fsecret.txt".to_string(),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            Method::PUT,
            format!("/v2/repo/blobs/uploads/..%2f..%2fevil?digest={evil_digest}"),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            Method::PUT,
            format!("/v2/repo/blobs/uploads/..%2fvictim?digest={evil_digest}"),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            Method::DELETE,
            "/v2/repo/blobs/uploads/..%2fvictim".to_string(),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            Method::DELETE,
            "/v2/repo/blobs/uploads/%2e%2e%2f%2e%2e%2fsecret.txt".to_string(),
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            Method::PATCH,
            "/v2/repo/blobs/uploads/../../../secret.txt".to_string(),
            404,
            "NOT_FOUND",
        ),
        (
            Method::PUT,
            "/v2/../../evil/manifests/latest".to_string(),
            400,
            "NAME_INVALID",
        ),
        (
            Method::PUT,
            "/v2/%2e%2e/evil/manifests/latest".to_string(),
            400,
            "NAME_INVALID",
        ),
        (
            Method::PUT,
            "/v2/repo/manifests/..%2f..%2fevil".to_string(),
            400,
            "TAG_INVALID",
        ),
        (
            Method::PUT,
            "/v2/repo/manifests/sha256:..%2f..%2fevil".to_string(),
            400,
            "DIGEST_INVALID",
        ),
        (
            Method::DELETE,
            "/v2/repo/manifests/..%2f..%2fsecret.txt".to_string(),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            Method::POST,
            "/v2/repo/blobs/uploads/?digest=sha256:../../../evil".to_string(),
            400,
            "DIGEST_INVALID",
        ),
        (
            Method::POST,
            "/v2/repo/blobs/uploads/?mount=../../secret.txt&from=..".to_string(),
            400,
            "DIGEST_INVALID",
        ),
        (
            Method::POST,
            "/v2/a%2f..%2f..%2fevil/blobs/uploads/".to_string(),
            400,
            "NAME_INVALID",
        ),
        (
            Method::GET,
            "/v2/repo/referrers/..%2f..%2fsecret.txt".to_string(),
            400,
            "DIGEST_INVALID",
        ),
        (
            Method::GET,
            "/v2/%2e%2e/tags/list".to_string(),
            400,
            "NAME_INVALID",
        ),
    ];
    for (method, uri, status, code) in cases {
        reg.call(method, &uri, &[], evil.clone())
            .await
            .expect_error(status, code);
    }
    // Listing with a hostile `last` is just a string comparison.
    reg.get("/v2/_catalog?last=../../secret.txt")
        .await
        .expect(200);

    assert_eq!(
        list_tree(&root, &data_dir),
        before,
        "files outside the data dir changed"
    );
    // Nothing inside the data dir either: no blob was stored.
    reg.head(&format!("/v2/repo/blobs/{evil_digest}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    // And the registry still works.
    reg.push_blob("repo", b"fine").await;
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_of_the_same_blob() {
    let reg = Reg::new().await;
    let data = Arc::new(bytes_of(2 * 1024 * 1024 + 5, 13));
    let d = sha256(&data);
    let mut tasks = Vec::new();
    for i in 0..4 {
        let client = reg.client.clone();
        let data = data.clone();
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let r = client
                .call(
                    Method::POST,
                    &format!("/v2/repo/blobs/uploads/?digest={d}"),
                    &[],
                    streamed(&data, 32 * 1024 + i),
                )
                .await;
            r.status.as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let got = reg.get(&format!("/v2/repo/blobs/{d}")).await;
    got.expect(200);
    assert_eq!(got.body.len(), data.len());
    assert_eq!(sha256(&got.body), d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_of_one_tag() {
    let reg = Reg::new().await;
    let mut bodies = Vec::new();
    for seed in ["left", "right"] {
        let (config, layer) = image_blobs(seed);
        reg.push_blob("repo", &config).await;
        reg.push_blob("repo", &layer).await;
        bodies.push(image_manifest(OCI_MANIFEST, &config, &layer));
    }
    let mut tasks = Vec::new();
    for body in bodies.clone() {
        let client = reg.client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .put_manifest("repo", "latest", Some(OCI_MANIFEST), &body)
                .await
                .status
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let r = reg.get("/v2/repo/manifests/latest").await;
    r.expect(200);
    assert!(
        bodies.iter().any(|b| b[..] == r.body[..]),
        "tag points at neither manifest"
    );
    assert_eq!(r.header("docker-content-digest"), sha256(&r.body));
    for body in &bodies {
        reg.get(&format!("/v2/repo/manifests/{}", sha256(body)))
            .await
            .expect(200);
    }
    assert_eq!(reg.tags("repo").await, vec!["latest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_pushes_into_one_repository() {
    let reg = Reg::new().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = reg.client.clone();
        tasks.push(tokio::spawn(async move {
            // A chunked layer, a monolithic config, then the manifest.
            let (config, _) = image_blobs(&format!("task {i}"));
            let layer = bytes_of(100_000 + i, 100 + i as u64);
            let location = client.start_upload("shared").await;
            let r = client.patch_chunk(&location, 0, &layer[..50_000]).await;
            r.expect(202);
            let r = client
                .patch_chunk(r.header("location"), 50_000, &layer[50_000..])
                .await;
            r.expect(202);
            let ld = sha256(&layer);
            client
                .call(
                    Method::PUT,
                    &with_query(r.header("location"), &format!("digest={ld}")),
                    &[],
                    Body::empty(),
                )
                .await
                .expect(201);
            client.push_blob("shared", &config).await;
            let body = image_manifest(OCI_MANIFEST, &config, &layer);
            client
                .put_manifest("shared", &format!("t{i:02}"), Some(OCI_MANIFEST), &body)
                .await
                .expect(201);
            (format!("t{i:02}"), body, layer)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let expected: Vec<String> = (0..20).map(|i| format!("t{i:02}")).collect();
    assert_eq!(reg.tags("shared").await, expected);
    for (tag, body, layer) in results {
        let r = reg.get(&format!("/v2/shared/manifests/{tag}")).await;
        r.expect(200);
        assert_eq!(r.body.as_ref(), &body[..]);
        let got = reg
            .get(&format!("/v2/shared/blobs/{}", sha256(&layer)))
            .await;
        got.expect(200);
        assert_eq!(got.body.as_ref(), &layer[..]);
    }
}

// ---------------------------------------------------------------------------
// In-flight requests, broken bodies, replicas, damaged storage
// ---------------------------------------------------------------------------

type Chunks = tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>;

/// A request body fed by hand, to hold a request in flight.
fn channel_body() -> (Chunks, Body) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let stream = futures_util::stream::unfold(
        rx,
        |mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>| async move {
            rx.recv().await.map(|item| (item, rx))
        },
    );
    (tx, Body::from_stream(stream))
}

/// Waits until the registry has taken every chunk sent so far from the
/// request body (so the request holds its session and is writing them).
async fn wait_consumed(tx: &Chunks) {
    for _ in 0..500 {
        if tx.capacity() == tx.max_capacity() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the registry never read the request body");
}

/// Waits until the session reports `range`.
async fn wait_for_range(client: &Client, location: &str, range: &str) {
    for _ in 0..500 {
        let r = client.get(location).await;
        r.expect(204);
        if r.header("range") == range {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{location} never reached {range}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_chunk_while_one_is_in_flight_is_refused() {
    let reg = Reg::new().await;
    let location = reg.start_upload("repo").await;
    let (tx, body) = channel_body();
    let first = {
        let client = reg.client.clone();
        let location = location.clone();
        tokio::spawn(async move { client.call(Method::PATCH, &location, &[], body).await })
    };
    tx.send(Ok(Bytes::from(vec![b'A'; 10]))).await.unwrap();
    wait_consumed(&tx).await;
    let held = scale_out::staged_while_in_flight("0-9");
    wait_for_range(&reg, &location, held).await;

    let r = reg
        .call(Method::PATCH, &location, &[], vec![b'B'; 10])
        .await;
    r.expect_error_status(416);
    assert_eq!(r.header("range"), held);
    let whole = sha256(&[b'A'; 20]);
    reg.call(
        Method::PUT,
        &with_query(&location, &format!("digest={whole}")),
        &[],
        Body::empty(),
    )
    .await
    .expect_error_status(416);

    tx.send(Ok(Bytes::from(vec![b'A'; 10]))).await.unwrap();
    drop(tx);
    let r = first.await.unwrap();
    r.expect(202);
    assert_eq!(r.header("range"), "0-19");
    reg.call(
        Method::PUT,
        &with_query(&location, &format!("digest={whole}")),
        &[],
        Body::empty(),
    )
    .await
    .expect(201);
    assert_eq!(
        reg.get(&format!("/v2/repo/blobs/{whole}"))
            .await
            .body
            .as_ref(),
        &[b'A'; 20][..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunk_whose_body_breaks_keeps_what_arrived() {
    let reg = Reg::new().await;
    let data = bytes_of(30, 14);
    let location = reg.start_upload("repo").await;
    let (tx, body) = channel_body();
    let first = {
        let client = reg.client.clone();
        let location = location.clone();
        tokio::spawn(async move { client.call(Method::PATCH, &location, &[], body).await })
    };
    tx.send(Ok(Bytes::copy_from_slice(&data[..10])))
        .await
        .unwrap();
    wait_consumed(&tx).await;
    tx.send(Err(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "client went away",
    )))
    .await
    .unwrap();
    drop(tx);
    let r = first.await.unwrap();
    r.expect_error(400, "BLOB_UPLOAD_INVALID");

    // The client resumes from what the registry has.
    let r = reg.get(&location).await;
    r.expect(204);
    assert_eq!(r.header("range"), "0-9");
    reg.patch_chunk(&location, 10, &data[10..])
        .await
        .expect(202);
    let d = sha256(&data);
    reg.call(
        Method::PUT,
        &with_query(&location, &format!("digest={d}")),
        &[],
        Body::empty(),
    )
    .await
    .expect(201);
    assert_eq!(
        reg.get(&format!("/v2/repo/blobs/{d}")).await.body.as_ref(),
        &data[..]
    );
}

#[tokio::test]
async fn a_monolithic_push_whose_body_breaks_stores_nothing() {
    let reg = Reg::new().await;
    let data = bytes_of(20, 15);
    let d = sha256(&data);
    let pieces: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::copy_from_slice(&data[..10])),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ];
    let body = Body::from_stream(futures_util::stream::iter(pieces));
    reg.call(
        Method::POST,
        &format!("/v2/repo/blobs/uploads/?digest={d}"),
        &[],
        body,
    )
    .await
    .expect_error(400, "BLOB_UPLOAD_INVALID");
    reg.head(&format!("/v2/repo/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    assert_eq!(
        scale_out::staged_sessions(&reg.config).await,
        0,
        "staging left behind"
    );
}

#[tokio::test]
async fn pulls_go_to_the_store_when_redirect_pulls_is_on() {
    let reg = Reg::with(|c| c.storage.redirect_pulls = true).await;
    let data = bytes_of(3000, 31);
    let d = reg.push_blob("repo", &data).await;
    let r = reg.get(&format!("/v2/repo/blobs/{d}")).await;
    if scale_out::on() {
        // An object store: a short-lived presigned URL of the object.
        r.expect(307);
        assert_eq!(r.header("docker-content-digest"), d);
        let (status, bytes) = scale_out::fetch(r.header("location")).await;
        assert_eq!((status, bytes), (200, data.clone()));
    } else {
        // The filesystem has no URL of its own: berth serves the bytes.
        r.expect(200);
        assert_eq!(r.body.as_ref(), &data[..]);
    }
    // A range, and a blob the repository does not hold, are berth's to answer.
    let r = reg
        .call(
            Method::GET,
            &format!("/v2/repo/blobs/{d}"),
            &[("range", "bytes=0-9")],
            Body::empty(),
        )
        .await;
    r.expect(206);
    assert_eq!(r.body.as_ref(), &data[..10]);
    reg.get(&format!("/v2/other/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn blob_bytes_missing_from_storage_are_unknown_not_500() {
    let reg = Reg::new().await;
    let data = b"bytes that will vanish".to_vec();
    let d = reg.push_blob("repo", &data).await;
    scale_out::remove_blob_bytes(&reg.config, &d).await;

    reg.get(&format!("/v2/repo/blobs/{d}"))
        .await
        .expect_error(404, "BLOB_UNKNOWN");
    // Mounting it elsewhere must not pretend it is there.
    reg.call(
        Method::POST,
        &format!("/v2/other/blobs/uploads/?mount={d}&from=repo"),
        &[],
        Body::empty(),
    )
    .await
    .expect(202);
    // Pushing it again repairs it.
    reg.push_blob("repo", &data).await;
    let r = reg.get(&format!("/v2/repo/blobs/{d}")).await;
    r.expect(200);
    assert_eq!(r.body.as_ref(), &data[..]);
}

#[tokio::test]
async fn upload_whose_staging_vanished_is_unknown() {
    let reg = Reg::new().await;
    let location = reg.start_upload("repo").await;
    reg.patch_chunk(&location, 0, b"staged").await.expect(202);
    let id = location.rsplit('/').next().unwrap();
    scale_out::remove_staging(&reg.config, id).await;
    reg.get(&location)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.patch_chunk(&location, 6, b"more")
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn inverted_content_range_is_invalid() {
    let reg = Reg::new().await;
    let location = reg.start_upload("repo").await;
    let r = reg
        .call(
            Method::PATCH,
            &location,
            &[("content-range", "9-0"), ("content-length", "10")],
            vec![0u8; 10],
        )
        .await;
    r.expect_error(400, "BLOB_UPLOAD_INVALID");
}

#[tokio::test]
async fn manifest_referencing_a_deleted_blob_is_refused() {
    let reg = Reg::new().await;
    let (config, layer) = image_blobs("deleted-layer");
    reg.push_blob("repo", &config).await;
    let ld = reg.push_blob("repo", &layer).await;
    reg.delete(&format!("/v2/repo/blobs/{ld}"))
        .await
        .expect(202);
    let body = image_manifest(OCI_MANIFEST, &config, &layer);
    reg.put_manifest("repo", "v1", Some(OCI_MANIFEST), &body)
        .await
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn an_index_can_be_a_referrer() {
    let reg = Reg::new().await;
    let image = reg
        .push_image("repo", "v1", "index-subject", OCI_MANIFEST)
        .await;
    let child = reg
        .push_image("repo", "child", "index-child", OCI_MANIFEST)
        .await;
    let mut index: Value =
        serde_json::from_slice(&index_manifest(OCI_INDEX, &[(OCI_MANIFEST, &child.body)])).unwrap();
    index["artifactType"] = json!("application/vnd.example.bundle");
    index["subject"] =
        json!({"mediaType": OCI_MANIFEST, "digest": image.digest, "size": image.body.len()});
    index["annotations"] = json!({"kind": "bundle"});
    let body = serde_json::to_vec(&index).unwrap();
    let r = reg
        .put_manifest("repo", "bundle", Some(OCI_INDEX), &body)
        .await;
    r.expect(201);
    assert_eq!(r.header("oci-subject"), image.digest);
    let r = reg
        .get(&format!("/v2/repo/referrers/{}", image.digest))
        .await;
    r.expect(200);
    let manifests = r.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["mediaType"], OCI_INDEX);
    assert_eq!(manifests[0]["digest"], sha256(&body));
    assert_eq!(
        manifests[0]["artifactType"],
        "application/vnd.example.bundle"
    );
    assert_eq!(manifests[0]["annotations"]["kind"], "bundle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abandoned_chunk_request_releases_the_session() {
    // A client that disconnects mid-chunk: the server drops the request.
    let reg = Reg::new().await;
    let data = bytes_of(30, 17);
    let location = reg.start_upload("repo").await;
    let (tx, body) = channel_body();
    let first = {
        let client = reg.client.clone();
        let location = location.clone();
        tokio::spawn(async move { client.call(Method::PATCH, &location, &[], body).await })
    };
    tx.send(Ok(Bytes::copy_from_slice(&data[..10])))
        .await
        .unwrap();
    wait_consumed(&tx).await;
    // Bytes staged as they arrive are kept when the request is dropped; an
    // object store keeps a chunk only once the request finished it.
    let held = scale_out::staged_while_in_flight("0-9");
    wait_for_range(&reg, &location, held).await;
    first.abort();
    assert!(first.await.is_err_and(|e| e.is_cancelled()));
    drop(tx);

    let r = reg.get(&location).await;
    r.expect(204);
    assert_eq!(r.header("range"), held);
    let from = if held == "0-9" { 10 } else { 0 };
    reg.patch_chunk(&location, from as u64, &data[from..])
        .await
        .expect(202);
    let d = sha256(&data);
    reg.call(
        Method::PUT,
        &with_query(&location, &format!("digest={d}")),
        &[],
        Body::empty(),
    )
    .await
    .expect(201);
    assert_eq!(
        reg.get(&format!("/v2/repo/blobs/{d}")).await.body.as_ref(),
        &data[..]
    );
}

#[tokio::test]
async fn chunk_body_must_match_its_content_range() {
    // Without Content-Length (chunked transfer encoding) only the body itself
    // can disagree with Content-Range: too long or too short, it is refused.
    // The session then holds the pieces written before the mismatch showed
    // (4-byte pieces here), and says so, so that a client can resume.
    let reg = Reg::new().await;
    for (body_len, held) in [(15usize, "0-7"), (5, "0-4")] {
        let location = reg.start_upload("repo").await;
        reg.call(
            Method::PATCH,
            &location,
            &[("content-range", "0-9")],
            streamed(&bytes_of(body_len, 18), 4),
        )
        .await
        .expect_error(400, "BLOB_UPLOAD_INVALID");
        let status = reg.get(&location).await;
        status.expect(204);
        assert_eq!(status.header("range"), held, "{body_len}-byte body");
    }
}

/// The embedded mode is one process per data directory: its caches and
/// upload bookkeeping assume no other writer, so a second registry on the
/// same directory is refused instead of silently serving stale answers.
#[tokio::test]
async fn a_second_registry_on_one_data_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: tmp.path().join("data"),
        ..Config::default()
    };
    let first = berth::server::open_state(&config).await.expect("first");
    let second = berth::server::open_state(&config).await;
    let message = format!("{:#}", second.err().expect("second open must fail"));
    assert!(message.contains("in use"), "unclear refusal: {message}");
    drop(first);
    berth::server::open_state(&config)
        .await
        .expect("reopening after the first closed");
}

// ---------------------------------------------------------------------------
// Abandoned uploads
// ---------------------------------------------------------------------------

/// Sets a staging file's modification time `ago` in the past.
fn age_file(path: &Path, ago: std::time::Duration) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - ago)
        .unwrap();
}

#[tokio::test]
async fn idle_sessions_and_unowned_staging_files_are_removed() {
    use std::time::Duration;
    let root = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: root.path().join("data"),
        ..Default::default()
    };
    config.auth.mode = berth::auth::AuthMode::None;
    let state = berth::server::open_state(&config).await.unwrap();
    let reg = Client(berth::server::router(state.clone()));
    let uploads = config.data_dir.join("uploads");
    let session_id = |location: &str| location.rsplit('/').next().unwrap().to_string();

    let idle = reg.start_upload("repo").await;
    reg.patch_chunk(&idle, 0, &[7u8; 4096]).await.expect(202);
    let fresh = reg.start_upload("repo").await;
    reg.patch_chunk(&fresh, 0, b"recent bytes")
        .await
        .expect(202);
    // What a monolithic upload cut short by a crash leaves: bytes, no session.
    let orphan = uploads.join(uuid_like(1));
    std::fs::write(&orphan, vec![1u8; 10_000]).unwrap();
    age_file(&orphan, Duration::from_secs(120));
    // Staged a second ago, no session yet: may be a monolithic upload starting.
    let starting = uploads.join(uuid_like(2));
    std::fs::write(&starting, b"just now").unwrap();
    age_file(&uploads.join(session_id(&idle)), Duration::from_secs(7200));

    let done = state
        .registry
        .expire_uploads(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        (done.sessions, done.orphans, done.bytes),
        (1, 1, 4096 + 10_000)
    );
    reg.get(&idle)
        .await
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    assert!(!uploads.join(session_id(&idle)).exists());
    assert!(!orphan.exists());
    assert!(
        starting.exists(),
        "a staging file younger than a minute stays"
    );
    // The live session is untouched and finishes.
    let status = reg.get(&fresh).await;
    status.expect(204);
    assert_eq!(status.header("range"), "0-11");
    let put = with_query(
        status.header("location"),
        &format!("digest={}", sha256(b"recent bytes")),
    );
    reg.call(Method::PUT, &put, &[], Body::empty())
        .await
        .expect(201);
    // A second pass finds nothing more to do.
    let again = state
        .registry
        .expire_uploads(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!((again.sessions, again.orphans), (0, 0));
}

fn uuid_like(n: u8) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}
