//! `GET /metrics`: what a push and a pull leave in the Prometheus text
//! (request counters by endpoint and status, bytes in and out, duration
//! buckets, storage latency), who may read it on the main listener, the
//! separate listener of `metrics.listen` (the real binary), and labels
//! that never carry a repository name.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use berth::auth::AuthMode;
use berth::config::Config;
use http_body_util::BodyExt;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tower::ServiceExt;

const ADMIN_PASSWORD: &str = "admin-password-0";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

struct Resp {
    status: u16,
    content_type: String,
    location: String,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    #[track_caller]
    fn expect(&self, status: u16) -> &Resp {
        assert_eq!(self.status, status, "body: {}", self.text());
        self
    }
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Resp {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Body::from(body)).expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let header = |name: &str| {
        let value = parts.headers.get(name).and_then(|v| v.to_str().ok());
        value.unwrap_or("").to_string()
    };
    Resp {
        status: parts.status.as_u16(),
        content_type: header("content-type"),
        location: header("location"),
        body: body.collect().await.expect("body").to_bytes().to_vec(),
    }
}

async fn get(app: &Router, uri: &str, auth: Option<&str>) -> Resp {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    call(app, Method::GET, uri, &headers, Vec::new()).await
}

fn basic(user: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{secret}")))
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A registry over a fresh temporary directory.
async fn open(mode: AuthMode) -> (Router, tempfile::TempDir) {
    let root = tempfile::tempdir().expect("temp dir");
    let mut config = Config {
        data_dir: root.path().join("data"),
        ..Default::default()
    };
    config.auth.mode = mode;
    config.auth.admin_password = Some(ADMIN_PASSWORD.into());
    let app = berth::server::build_app(&config).await.expect("open");
    (app, root)
}

/// The sum of the samples of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            (metric == name).then_some((rest, value))
        })
        .filter(|(rest, _)| {
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, value)| value.parse::<f64>().expect("a number"))
        .sum()
}

/// Pushes one layer (a chunked upload), a config (monolithic) and a
/// manifest to `repo`, then pulls them; returns the layer's size.
async fn push_and_pull(app: &Router, repo: &str, auth: &[(&str, &str)]) -> usize {
    let layer: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let start = call(
        app,
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/"),
        auth,
        vec![],
    )
    .await;
    let location = start.expect(202).location.clone();
    let len = layer.len().to_string();
    let mut headers = auth.to_vec();
    headers.push(("content-type", "application/octet-stream"));
    headers.push(("content-length", &len));
    call(app, Method::PATCH, &location, &headers, layer.clone())
        .await
        .expect(202);
    let finish = format!("{location}?digest={}", sha256(&layer));
    call(app, Method::PUT, &finish, auth, vec![])
        .await
        .expect(201);
    let monolithic = format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(&config));
    call(app, Method::POST, &monolithic, auth, config.clone())
        .await
        .expect(201);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(&layer), "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    let mut headers = auth.to_vec();
    headers.push(("content-type", OCI_MANIFEST));
    let tag = format!("/v2/{repo}/manifests/v1");
    call(app, Method::PUT, &tag, &headers, manifest)
        .await
        .expect(201);
    let mut accept = auth.to_vec();
    accept.push(("accept", OCI_MANIFEST));
    call(app, Method::GET, &tag, &accept, vec![])
        .await
        .expect(200);
    let blob = format!("/v2/{repo}/blobs/{}", sha256(&layer));
    let pulled = call(app, Method::GET, &blob, auth, vec![]).await;
    assert_eq!(pulled.expect(200).body, layer);
    layer.len()
}

#[tokio::test]
async fn a_push_and_a_pull_show_in_the_request_counters() {
    let (app, _root) = open(AuthMode::None).await;
    let before = get(&app, "/metrics", None).await.text();
    let size = push_and_pull(&app, "team/app", &[]).await;
    let metrics = get(&app, "/metrics", None).await;
    metrics.expect(200);
    assert!(
        metrics
            .content_type
            .starts_with("text/plain; version=0.0.4"),
        "{}",
        metrics.content_type
    );
    let text = metrics.text();
    let rose = |endpoint: &str, status: &str| {
        let labels = [("endpoint", endpoint), ("status", status)];
        sample(&text, "berth_http_requests_total", &labels)
            - sample(&before, "berth_http_requests_total", &labels)
    };
    assert_eq!(rose("upload.start", "202"), 1.0, "{text}");
    assert_eq!(rose("upload.start", "201"), 1.0, "{text}");
    assert_eq!(rose("upload.chunk", "202"), 1.0, "{text}");
    assert_eq!(rose("upload.finish", "201"), 1.0, "{text}");
    assert_eq!(rose("manifest.put", "201"), 1.0, "{text}");
    assert_eq!(rose("manifest.get", "200"), 1.0, "{text}");
    assert_eq!(rose("blob.get", "200"), 1.0, "{text}");
    let chunk_in = [("endpoint", "upload.chunk")];
    assert!(
        sample(&text, "berth_http_request_body_bytes_total", &chunk_in) >= size as f64,
        "{text}"
    );
    let blob_out = [("endpoint", "blob.get")];
    assert!(
        sample(&text, "berth_http_response_body_bytes_total", &blob_out) >= size as f64,
        "{text}"
    );
    // Every request falls in the +Inf bucket; the buckets are there.
    let put = [("endpoint", "manifest.put")];
    let all = [("endpoint", "manifest.put"), ("le", "+Inf")];
    assert_eq!(
        sample(&text, "berth_http_request_duration_seconds_bucket", &all),
        1.0
    );
    assert_eq!(
        sample(&text, "berth_http_request_duration_seconds_count", &put),
        1.0
    );
    let buckets = text
        .lines()
        .filter(|l| {
            l.starts_with("berth_http_request_duration_seconds_bucket{endpoint=\"manifest.put\"")
        })
        .count();
    assert!(buckets > 5, "{text}");
    // Storage: the commit of the two blobs and the reads were timed.
    let commits = [("operation", "commit")];
    let commits = sample(
        &text,
        "berth_storage_operation_duration_seconds_count",
        &commits,
    );
    assert_eq!(commits, 2.0, "{text}");
    let gets = [("operation", "get")];
    assert!(
        sample(
            &text,
            "berth_storage_operation_duration_seconds_count",
            &gets
        ) >= 1.0
    );
    assert_eq!(sample(&text, "berth_uploads_active", &[]), 0.0, "{text}");
    let metadata = "berth_metadata_operation_duration_seconds_count";
    for operation in ["put_manifest", "get_manifest", "link_blob"] {
        let op = [("operation", operation)];
        assert!(sample(&text, metadata, &op) >= 1.0, "{operation}: {text}");
    }
    assert_eq!(
        sample(
            &text,
            "berth_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    let read_pool = [("pool", "sqlite_read")];
    assert!(sample(&text, "berth_metadata_pool_max_connections", &read_pool) >= 1.0);
}

#[tokio::test]
async fn metrics_on_the_main_listener_are_for_system_admins() {
    let (app, _root) = open(AuthMode::Token).await;
    let admin = basic("admin", ADMIN_PASSWORD);
    let anonymous = get(&app, "/metrics", None).await;
    anonymous.expect(401);
    let error: Value = serde_json::from_slice(&anonymous.body).expect("JSON error body");
    assert_eq!(error["errors"][0]["code"], "UNAUTHORIZED", "{error}");
    let user = serde_json::json!({"name": "dev", "password": "dev-password-1"}).to_string();
    let created = call(
        &app,
        Method::POST,
        "/api/v1/users",
        &[
            ("authorization", &admin),
            ("content-type", "application/json"),
        ],
        user.into_bytes(),
    )
    .await;
    assert!(
        created.status == 201 || created.status == 200,
        "{}",
        created.text()
    );
    let dev = get(&app, "/metrics", Some(&basic("dev", "dev-password-1"))).await;
    dev.expect(403);
    let error: Value = serde_json::from_slice(&dev.body).expect("JSON error body");
    assert_eq!(error["errors"][0]["code"], "DENIED", "{error}");
    let wrong = get(&app, "/metrics", Some(&basic("admin", "not-it"))).await;
    wrong.expect(401);
    let ok = get(&app, "/metrics", Some(&admin)).await;
    assert!(ok.expect(200).text().contains("berth_http_requests_total"));
}

#[tokio::test]
async fn no_repository_name_reaches_a_label() {
    let (app, _root) = open(AuthMode::None).await;
    let repo = "secretteam/hidden-image";
    push_and_pull(&app, repo, &[]).await;
    for uri in [
        "/v2/secretteam/hidden-image/tags/list",
        "/v2/secretteam/hidden-image/manifests/nosuchtag",
        "/v2/secretteam/hidden-image/nonsense/path",
        "/v2/secretteam/hidden-image/blobs/sha256:abc",
        "/api/v1/projects/secretteam",
        "/ui/r/secretteam/hidden-image",
        "/ui/projects/secretteam",
        "/secretteam/hidden-image/elsewhere",
    ] {
        let r = get(&app, uri, None).await;
        assert_ne!(r.status, 500, "{uri}: {}", r.text());
    }
    let text = get(&app, "/metrics", None).await.text();
    for word in [
        "secretteam",
        "hidden-image",
        "nosuchtag",
        "sha256:",
        "elsewhere",
    ] {
        assert!(!text.contains(word), "{word} in the metrics:\n{text}");
    }
    // The routes are there by their templates.
    let project = [("endpoint", "/api/v1/projects/{name}")];
    assert_eq!(
        sample(&text, "berth_http_requests_total", &project),
        1.0,
        "{text}"
    );
    let unmatched = [("endpoint", "unmatched"), ("status", "404")];
    assert_eq!(
        sample(&text, "berth_http_requests_total", &unmatched),
        1.0,
        "{text}"
    );
}

/// Polls `/metrics` until `name{labels}` reaches `at_least` (the worker
/// records a run just after the run's own row says it finished).
async fn wait_for(app: &Router, name: &str, labels: &[(&str, &str)], at_least: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = get(app, "/metrics", None).await.text();
        if sample(&text, name, labels) >= at_least {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{name} stayed below {at_least}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn collection_and_scrub_runs_are_counted_with_what_they_did() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let mut config = Config {
        data_dir: data.clone(),
        ..Default::default()
    };
    config.auth.mode = AuthMode::None;
    config.gc.grace_seconds = 0;
    config.gc.interval_seconds = 0;
    let state = berth::server::open_state(&config).await.expect("open");
    let _workers = berth::server::start_workers(&state, &config, true);
    let app = berth::server::router(state);
    let (plain, corrupt, freed) = (
        b"plain bytes".to_vec(),
        b"corrupt".to_vec(),
        vec![7u8; 5000],
    );
    for blob in [&plain, &corrupt] {
        let uri = format!("/v2/p/app/blobs/uploads/?digest={}", sha256(blob));
        call(&app, Method::POST, &uri, &[], blob.clone())
            .await
            .expect(201);
    }
    let uri = format!("/v2/p/gone/blobs/uploads/?digest={}", sha256(&freed));
    call(&app, Method::POST, &uri, &[], freed.clone())
        .await
        .expect(201);
    // A blob no manifest references is garbage once its grace is over.
    call(&app, Method::POST, "/api/v1/gc", &[], vec![])
        .await
        .expect(202);
    let succeeded = [("outcome", "succeeded")];
    let text = wait_for(&app, "berth_gc_runs_total", &succeeded, 1.0).await;
    assert_eq!(
        sample(&text, "berth_gc_runs_total", &[("outcome", "failed")]),
        0.0
    );
    assert_eq!(
        sample(&text, "berth_gc_blobs_freed_total", &[]),
        3.0,
        "{text}"
    );
    let bytes = (plain.len() + corrupt.len() + freed.len()) as f64;
    assert_eq!(
        sample(&text, "berth_gc_bytes_freed_total", &[]),
        bytes,
        "{text}"
    );
    assert_eq!(
        sample(&text, "berth_gc_run_duration_seconds_count", &[]),
        1.0
    );
    let deletes = [("operation", "delete_batch")];
    let deletes = sample(
        &text,
        "berth_storage_operation_duration_seconds_count",
        &deletes,
    ) + sample(
        &text,
        "berth_storage_operation_duration_seconds_count",
        &[("operation", "delete")],
    );
    assert!(deletes >= 1.0, "{text}");
    // Pushed again, one of them corrupted on disk: the scrub quarantines it.
    for blob in [&plain, &corrupt] {
        let uri = format!("/v2/p/app/blobs/uploads/?digest={}", sha256(blob));
        call(&app, Method::POST, &uri, &[], blob.clone())
            .await
            .expect(201);
    }
    let hex = sha256(&corrupt).trim_start_matches("sha256:").to_string();
    let file = data.join("blobs/sha256").join(&hex[..2]).join(&hex);
    std::fs::write(file, b"flipped").expect("corrupt the blob");
    call(&app, Method::POST, "/api/v1/scrub", &[], vec![])
        .await
        .expect(202);
    let text = wait_for(&app, "berth_scrub_runs_total", &succeeded, 1.0).await;
    assert_eq!(
        sample(&text, "berth_scrub_blobs_checked_total", &[]),
        2.0,
        "{text}"
    );
    let corrupt = [("problem", "corrupt")];
    assert_eq!(
        sample(&text, "berth_scrub_blobs_quarantined_total", &corrupt),
        1.0
    );
    let missing = [("problem", "missing")];
    assert_eq!(
        sample(&text, "berth_scrub_blobs_quarantined_total", &missing),
        0.0
    );
    assert_eq!(
        sample(&text, "berth_scrub_run_duration_seconds_count", &[]),
        1.0
    );
}

// ---------------------------------------------------------------------------
// `metrics.listen`: the real binary
// ---------------------------------------------------------------------------

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// A plain HTTP/1.1 GET on loopback; (status, body). Status 0: no answer.
fn http_get(port: u16, path: &str, auth: Option<&str>) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n");
    if stream.write_all(head.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `berth serve`, stopped on drop.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &Path, port: u16, metrics_port: u16) -> Served {
    let log = std::fs::File::create(data.with_extension("log")).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .env_clear()
        .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("BERTH_METRICS__LISTEN", format!("127.0.0.1:{metrics_port}"))
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start berth serve");
    let served = Served(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(port, "/healthz", None).0 != 200 {
        let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "berth serve did not come up: {log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    served
}

#[test]
fn metrics_listen_serves_them_apart_and_the_main_listener_does_not() {
    let root = tempfile::tempdir().expect("temp dir");
    let (port, metrics_port) = (free_port(), free_port());
    let _served = serve(&root.path().join("data"), port, metrics_port);
    let admin = basic("admin", ADMIN_PASSWORD);
    assert_eq!(http_get(port, "/v2/", Some(&admin)).0, 200);
    let (status, text) = http_get(metrics_port, "/metrics", None);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("berth_build_info{version="), "{text}");
    // The main listener's own requests are what this listener counts.
    let base = [("endpoint", "/v2/"), ("status", "200")];
    assert_eq!(
        sample(&text, "berth_http_requests_total", &base),
        1.0,
        "{text}"
    );
    let (status, body) = http_get(port, "/metrics", Some(&admin));
    assert_eq!(status, 404, "{body}");
    let error: Value = serde_json::from_str(&body).expect("JSON error body");
    assert_eq!(error["errors"][0]["code"], "NOT_FOUND", "{error}");
    assert_eq!(http_get(metrics_port, "/v2/", None).0, 404);
}
