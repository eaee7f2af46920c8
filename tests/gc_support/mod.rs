//! The real binary (`$BERTH_BIN`, else `target/release/berth`) for the
//! garbage-collection tests, on the stack the test target runs (the
//! embedded default, or PostgreSQL + Garage for `gc_scaleout`, where
//! several replicas share one database and one bucket), an HTTP client
//! with the admin's Basic credentials, and the images the tests push (with
//! their expected bytes).

#[allow(dead_code)] // each stack uses part of it
#[path = "../support/scale_out.rs"]
mod scale_out;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

pub const PASSWORD: &str = "gc-admin-password";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn berth_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("BERTH_BIN") {
        return PathBuf::from(bin);
    }
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/berth");
    assert!(
        bin.is_file(),
        "no berth binary at {}: build it (cargo build --release --bin berth) or set BERTH_BIN",
        bin.display()
    );
    bin
}

/// Where the replicas of one test keep their state: a data directory
/// each, and, on the scale-out stack, one PostgreSQL database and one
/// bucket prefix for all of them.
pub struct Stack {
    config: berth::config::Config,
}

impl Stack {
    pub async fn new(data: &Path) -> Stack {
        let mut config = berth::config::Config {
            data_dir: data.to_path_buf(),
            ..berth::config::Config::default()
        };
        scale_out::configure(&mut config).await;
        Stack { config }
    }

    /// Whether this target runs replicas on shared engines.
    pub fn scale_out() -> bool {
        scale_out::on()
    }

    /// How many replicas the stack runs: one process alone serves a data
    /// directory; on shared engines, three.
    pub fn replicas() -> usize {
        if scale_out::on() {
            3
        } else {
            1
        }
    }

    /// Starts replica `n` (a data directory of its own beside the others').
    pub async fn start(&self, n: usize, grace_seconds: u64) -> Berth {
        let data = if n == 0 {
            self.config.data_dir.clone()
        } else {
            self.config.data_dir.with_extension(format!("replica-{n}"))
        };
        Berth::start(&data, &scale_out::binary_env(&self.config), grace_seconds).await
    }

    /// Digests of the blobs in the store (files, or objects in the bucket).
    pub async fn stored_blobs(&self) -> BTreeSet<String> {
        scale_out::stored_blobs(&self.config).await
    }

    /// How many processes have run collections.
    pub async fn gc_holders(&self) -> i64 {
        scale_out::scalar(
            &self.config,
            "SELECT COUNT(DISTINCT holder) FROM gc_runs WHERE holder IS NOT NULL",
        )
        .await
    }

    /// Ends the lease of every collection run still marked running, as
    /// the passing of `core::GC_LEASE` (5 minutes) would: on shared engines
    /// no replica may assume that a run it did not start is dead before.
    pub async fn expire_gc_leases(&self) {
        if scale_out::on() {
            scale_out::execute(
                &self.config,
                "UPDATE gc_runs SET heartbeat_at = 0 WHERE state = 'running'",
            )
            .await;
        }
    }
}

/// A running berth over `data` (kept when it stops, for a restart).
pub struct Berth {
    child: Child,
    pub port: u16,
}

impl Drop for Berth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Berth {
    async fn start(data: &Path, env: &[(&str, String)], grace_seconds: u64) -> Berth {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(berth_binary())
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data)
            .env_remove("BERTH_BIN")
            .env("BERTH_ADMIN_PASSWORD", PASSWORD)
            .env("BERTH_GC__GRACE_SECONDS", grace_seconds.to_string())
            .env("BERTH_GC__INTERVAL_SECONDS", "0")
            .env("BERTH_LOG__LEVEL", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start berth");
        let berth = Berth { child, port };
        let http = Http::new(&[port]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while http
            .try_send(Method::GET, "/healthz", "", Bytes::new())
            .await
            .map(|r| r.0)
            != Some(200)
        {
            assert!(Instant::now() < deadline, "berth did not start in 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        berth
    }

    pub fn http(&self) -> Http {
        Http::new(&[self.port])
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A client of every replica in `replicas`, one request to each in turn.
pub fn across(replicas: &[Berth]) -> Http {
    Http::new(&replicas.iter().map(|b| b.port).collect::<Vec<_>>())
}

#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    bases: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    auth: String,
}

pub type Answer = (u16, hyper::HeaderMap, Bytes);

impl Http {
    fn new(ports: &[u16]) -> Http {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{PASSWORD}"));
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
            bases: Arc::new(
                ports
                    .iter()
                    .map(|p| format!("http://127.0.0.1:{p}"))
                    .collect(),
            ),
            next: Arc::new(AtomicUsize::new(0)),
            auth: format!("Basic {basic}"),
        }
    }

    fn base(&self) -> &str {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        &self.bases[n % self.bases.len()]
    }

    async fn try_send(
        &self,
        method: Method,
        path: &str,
        ctype: &str,
        body: Bytes,
    ) -> Option<Answer> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base()))
            .header("authorization", &self.auth);
        if !ctype.is_empty() {
            req = req.header("content-type", ctype);
        }
        let req = req.body(Full::new(body)).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(60), self.client.request(req))
            .await
            .ok()?
            .ok()?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, headers, body))
    }

    pub async fn send(&self, method: Method, path: &str, ctype: &str, body: Bytes) -> Answer {
        let answer = self
            .try_send(method.clone(), path, ctype, body)
            .await
            .unwrap_or_else(|| panic!("{method} {path}: no answer"));
        assert_ne!(answer.0, 500, "{method} {path}: {:?}", answer.2);
        answer
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, "", Bytes::new()).await
    }

    /// Uploads `data` to `repo` unless it already holds it; retried while
    /// a collection removes an earlier copy (503).
    pub async fn push_blob(&self, repo: &str, data: &Bytes) {
        let digest = sha256(data);
        let head = self
            .send(
                Method::HEAD,
                &format!("/v2/{repo}/blobs/{digest}"),
                "",
                Bytes::new(),
            )
            .await;
        if head.0 == 200 {
            return;
        }
        for _ in 0..100 {
            let path = format!("/v2/{repo}/blobs/uploads/?digest={digest}");
            let (status, _, body) = self.send(Method::POST, &path, "", data.clone()).await;
            match status {
                201 => return,
                503 => tokio::time::sleep(Duration::from_millis(100)).await,
                _ => panic!("pushing {digest} to {repo}: {status} {body:?}"),
            }
        }
        panic!("pushing {digest} to {repo}: still 503 after 100 tries");
    }

    pub async fn put_manifest(&self, repo: &str, reference: &str, m: &Manifest) {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let (status, _, body) = self
            .send(Method::PUT, &path, &m.media_type, m.bytes.clone())
            .await;
        assert_eq!(status, 201, "PUT {path}: {body:?}");
    }

    /// Requests a run and waits for it to end; returns its JSON.
    pub async fn gc(&self, dry_run: bool) -> Value {
        let id = self.request_gc(dry_run).await;
        self.wait_gc(id).await
    }

    pub async fn request_gc(&self, dry_run: bool) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let path = format!("/api/v1/gc?dry_run={dry_run}");
            let (status, _, body) = self.send(Method::POST, &path, "", Bytes::new()).await;
            match status {
                202 => {
                    return serde_json::from_slice::<Value>(&body).unwrap()["id"]
                        .as_i64()
                        .unwrap()
                }
                409 => {}
                _ => panic!("POST {path}: {status} {body:?}"),
            }
            assert!(Instant::now() < deadline, "a run stayed active for 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_gc(&self, id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let run = self.run(id).await;
            if run["state"] == "succeeded" || run["state"] == "failed" {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} did not end in 120 s: {run}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn run(&self, id: i64) -> Value {
        let (status, _, body) = self.get(&format!("/api/v1/gc/runs/{id}")).await;
        assert_eq!(status, 200);
        serde_json::from_slice(&body).unwrap()
    }
}

/// A manifest as pushed: its bytes, digest and media type, the blobs it
/// references, its children (an index's) and referrers pushed for it.
pub struct Manifest {
    pub bytes: Bytes,
    pub digest: String,
    pub media_type: String,
    pub blobs: Vec<Bytes>,
    pub children: Vec<Arc<Manifest>>,
    pub referrers: Mutex<Vec<Arc<Manifest>>>,
}

fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(data), "size": data.len()})
}

impl Manifest {
    fn new(
        media_type: &str,
        doc: Value,
        blobs: Vec<Bytes>,
        children: Vec<Arc<Manifest>>,
    ) -> Manifest {
        let bytes = Bytes::from(serde_json::to_vec(&doc).unwrap());
        Manifest {
            digest: sha256(&bytes),
            bytes,
            media_type: media_type.into(),
            blobs,
            children,
            referrers: Mutex::new(Vec::new()),
        }
    }

    /// An image of a config and `layers`.
    pub fn image(config: Bytes, layers: Vec<Bytes>, subject: Option<&Manifest>) -> Manifest {
        let mut doc = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
            "layers": layers.iter().map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
        });
        if let Some(s) = subject {
            doc["subject"] =
                json!({"mediaType": s.media_type, "digest": s.digest, "size": s.bytes.len()});
            doc["artifactType"] = json!("application/vnd.example.signature");
        }
        let mut blobs = vec![config];
        blobs.extend(layers);
        Manifest::new(OCI_MANIFEST, doc, blobs, Vec::new())
    }

    pub fn index(children: Vec<Arc<Manifest>>) -> Manifest {
        let list: Vec<Value> = children
            .iter()
            .map(|c| {
                let mut d =
                    json!({"mediaType": c.media_type, "digest": c.digest, "size": c.bytes.len()});
                d["platform"] = json!({"architecture": "amd64", "os": "linux"});
                d
            })
            .collect();
        let doc = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list});
        Manifest::new(OCI_INDEX, doc, Vec::new(), children)
    }

    /// This manifest and what it keeps: children and referrers, at any depth.
    pub fn closure(self: &Arc<Self>, out: &mut Vec<Arc<Manifest>>) {
        out.push(self.clone());
        for c in &self.children {
            c.closure(out);
        }
        for r in self.referrers.lock().unwrap().iter() {
            r.closure(out);
        }
    }
}
