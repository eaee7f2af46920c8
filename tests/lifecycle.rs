//! Storage lifecycle, in process (the router with its background workers
//! over a temporary directory): quotas with the shared-blob rule, tag
//! immutability, repository deletion, untagged-manifest cleanup that keeps
//! index children and referrers, retention rules and their preview, the
//! garbage-collection and scrub APIs, and who may use them.
//!
//! Run twice: as itself on the embedded default, and as `lifecycle_scaleout`
//! on PostgreSQL + Garage (see `tests/support/scale_out.rs`).

#[allow(dead_code)] // each stack uses part of it
#[path = "support/scale_out.rs"]
mod scale_out;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use berth::config::Config;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tower::ServiceExt;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

struct Registry {
    app: Router,
    _workers: Option<berth::workers::Workers>,
    config: Config,
    _dir: tempfile::TempDir,
}

async fn registry(workers: bool, auth: bool) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.gc.grace_seconds = 0;
    config.gc.interval_seconds = 0;
    if auth {
        config.auth.admin_password = Some("admin-password".into());
    } else {
        config.auth.mode = berth::auth::AuthMode::None;
    }
    scale_out::configure(&mut config).await;
    let state = berth::server::open_state(&config).await.unwrap();
    let exclusive = !config.shared_metadata();
    let workers = workers.then(|| berth::server::start_workers(&state, &config, exclusive));
    Registry {
        app: berth::server::router(state),
        _workers: workers,
        config,
        _dir: dir,
    }
}

struct Answer {
    status: u16,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn message(&self) -> String {
        self.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Registry {
    async fn call(
        &self,
        method: Method,
        path: &str,
        ctype: &str,
        body: impl Into<Bytes>,
        auth: Option<&str>,
    ) -> Answer {
        let mut req = Request::builder().method(method.clone()).uri(path);
        if !ctype.is_empty() {
            req = req.header("content-type", ctype);
        }
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let response = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body.into())).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_ne!(status, 500, "{method} {path}: {body:?}");
        Answer { status, body }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        ctype: &str,
        body: impl Into<Bytes>,
    ) -> Answer {
        self.call(method, path, ctype, body, None).await
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> Answer {
        let path = format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(data));
        self.send(Method::POST, &path, "", data.to_vec()).await
    }

    async fn put_manifest(&self, repo: &str, reference: &str, ctype: &str, body: &[u8]) -> Answer {
        let path = format!("/v2/{repo}/manifests/{reference}");
        self.send(Method::PUT, &path, ctype, body.to_vec()).await
    }

    /// Pushes a one-layer image's blobs and manifest; returns the manifest.
    async fn push_image(&self, repo: &str, reference: &str, seed: &str) -> Vec<u8> {
        let config = format!("{{\"seed\":\"{seed}\"}}").into_bytes();
        let layer = format!("layer of {seed}").into_bytes();
        assert_eq!(self.push_blob(repo, &config).await.status, 201);
        assert_eq!(self.push_blob(repo, &layer).await.status, 201);
        let m = image_manifest(&config, &layer, None);
        let put = self.put_manifest(repo, reference, OCI_MANIFEST, &m).await;
        assert_eq!(put.status, 201, "{:?}", put.body);
        m
    }

    async fn policy(&self, project: &str, policy: Value) {
        let path = format!("/api/v1/projects/{project}/policy");
        let set = self
            .send(Method::PUT, &path, "application/json", policy.to_string())
            .await;
        assert_eq!(set.status, 200, "{:?}", set.body);
    }

    async fn usage(&self, project: &str) -> Value {
        let got = self
            .send(
                Method::GET,
                &format!("/api/v1/projects/{project}/policy"),
                "",
                "",
            )
            .await;
        assert_eq!(got.status, 200);
        got.json()["usage"].clone()
    }

    async fn gc(&self, dry_run: bool) -> Value {
        let started = self
            .send(
                Method::POST,
                &format!("/api/v1/gc?dry_run={dry_run}"),
                "",
                "",
            )
            .await;
        assert_eq!(started.status, 202, "{:?}", started.body);
        let id = started.json()["id"].as_i64().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run = self
                .send(Method::GET, &format!("/api/v1/gc/runs/{id}"), "", "")
                .await
                .json();
            if run["state"] == "succeeded" || run["state"] == "failed" {
                assert_eq!(run["state"], "succeeded", "{run}");
                return run;
            }
            assert!(Instant::now() < deadline, "run {id} did not finish");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether the blob store holds `digest`'s bytes.
    async fn stored(&self, digest: &str) -> bool {
        scale_out::blob_stored(&self.config, digest).await
    }
}

fn descriptor(media_type: &str, data: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(data), "size": data.len()})
}

fn image_manifest(config: &[u8], layer: &[u8], subject: Option<&[u8]>) -> Vec<u8> {
    let mut doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
    });
    if let Some(s) = subject {
        doc["subject"] = descriptor(OCI_MANIFEST, s);
        doc["artifactType"] = json!("application/vnd.example.sig");
    }
    serde_json::to_vec(&doc).unwrap()
}

#[tokio::test]
async fn quotas_count_a_shared_blob_once_and_refuse_past_the_limit() {
    let r = registry(false, false).await;
    r.policy(
        "p",
        json!({"quota_bytes": 100, "quota_tags": 2, "quota_repositories": 2}),
    )
    .await;
    let sixty = vec![b'a'; 60];
    assert_eq!(r.push_blob("p/one", &sixty).await.status, 201);
    assert_eq!(r.push_blob("p/two", &sixty).await.status, 201);
    assert_eq!(
        r.usage("p").await["bytes"],
        60,
        "a blob in two repositories counts once"
    );
    let fifty = vec![b'b'; 50];
    let refused = r.push_blob("p/one", &fifty).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json()["errors"][0]["code"], "DENIED");
    assert!(
        refused.message().contains("60 used of 100"),
        "{}",
        refused.message()
    );
    let head = r
        .send(
            Method::HEAD,
            &format!("/v2/p/one/blobs/{}", sha256(&fifty)),
            "",
            "",
        )
        .await;
    assert_eq!(head.status, 404, "a refused blob is not visible");
    // Another project counts the same blob for itself.
    assert_eq!(r.push_blob("q/one", &sixty).await.status, 201);
    assert_eq!(r.usage("q").await["bytes"], 60);
    // Tags and repositories, with room for their bytes.
    let counts = json!({"quota_bytes": 10_000, "quota_tags": 2, "quota_repositories": 2});
    r.policy("p", counts).await;
    r.push_image("p/one", "a", "1").await;
    r.push_image("p/one", "b", "2").await;
    let config = b"{\"seed\":\"3\"}";
    let layer = b"layer of 3";
    r.push_blob("p/one", config).await;
    r.push_blob("p/one", layer).await;
    let third = r
        .put_manifest(
            "p/one",
            "c",
            OCI_MANIFEST,
            &image_manifest(config, layer, None),
        )
        .await;
    assert_eq!(third.status, 403);
    assert!(
        third.message().contains("tags quota: 2 used of 2"),
        "{}",
        third.message()
    );
    let by_digest = image_manifest(config, layer, None);
    let reference = sha256(&by_digest);
    for repo in ["p/two", "p/three"] {
        r.push_blob(repo, config).await;
        r.push_blob(repo, layer).await;
    }
    let second = r
        .put_manifest("p/two", &reference, OCI_MANIFEST, &by_digest)
        .await;
    assert_eq!(second.status, 201);
    let third = r
        .put_manifest("p/three", &reference, OCI_MANIFEST, &by_digest)
        .await;
    assert_eq!(third.status, 403);
    assert!(
        third.message().contains("repositories quota: 2 used of 2"),
        "{}",
        third.message()
    );
    let usage = r.usage("p").await;
    assert_eq!(
        (usage["repositories"].as_u64(), usage["tags"].as_u64()),
        (Some(2), Some(2))
    );
}

#[tokio::test]
async fn immutable_tags_are_never_moved_or_deleted_until_the_rule_is_lifted() {
    let r = registry(false, false).await;
    r.policy("p", json!({"immutable_tags": ["v*"]})).await;
    let first = r.push_image("p/app", "v1", "one").await;
    assert_eq!(
        r.put_manifest("p/app", "v1", OCI_MANIFEST, &first)
            .await
            .status,
        201,
        "same digest again"
    );
    let other = r.push_image("p/app", "latest", "two").await;
    let moved = r.put_manifest("p/app", "v1", OCI_MANIFEST, &other).await;
    assert_eq!(moved.status, 403);
    assert!(
        moved.message().contains("rule \"v*\""),
        "{}",
        moved.message()
    );
    assert_eq!(
        r.put_manifest("p/app", "latest", OCI_MANIFEST, &first)
            .await
            .status,
        201,
        "latest moves"
    );
    let paths = [
        (Method::DELETE, "/v2/p/app/manifests/v1".to_string()),
        (
            Method::DELETE,
            format!("/v2/p/app/manifests/{}", sha256(&first)),
        ),
        (Method::DELETE, "/api/v1/repositories/p/app".to_string()),
    ];
    for (method, path) in &paths {
        let refused = r.send(method.clone(), path, "", "").await;
        assert_eq!(refused.status, 403, "{method} {path}");
        assert!(
            refused.message().contains("immutable"),
            "{}",
            refused.message()
        );
    }
    let got = r.send(Method::GET, "/v2/p/app/manifests/v1", "", "").await;
    assert_eq!(got.body, Bytes::from(first));
    r.policy("p", json!({})).await;
    assert_eq!(
        r.put_manifest("p/app", "v1", OCI_MANIFEST, &other)
            .await
            .status,
        201
    );
    assert_eq!(
        r.send(Method::DELETE, "/v2/p/app/manifests/v1", "", "")
            .await
            .status,
        202
    );
}

#[tokio::test]
async fn a_deleted_repository_leaves_the_catalog_and_its_blobs_go_at_gc() {
    let r = registry(true, false).await;
    r.push_image("p/gone", "a", "x").await;
    r.push_image("p/gone", "b", "y").await;
    r.push_image("p/stays", "a", "z").await;
    let layer = sha256(b"layer of x");
    assert!(r.stored(&layer).await);
    assert_eq!(
        r.send(Method::DELETE, "/api/v1/repositories/p/gone", "", "")
            .await
            .status,
        204
    );
    let catalog = r.send(Method::GET, "/v2/_catalog", "", "").await.json();
    assert_eq!(catalog["repositories"], json!(["p/stays"]));
    let tags = r.send(Method::GET, "/v2/p/gone/tags/list", "", "").await;
    assert_eq!(
        (tags.status, tags.json()["errors"][0]["code"].clone()),
        (404, json!("NAME_UNKNOWN"))
    );
    assert_eq!(
        r.send(Method::DELETE, "/api/v1/repositories/p/gone", "", "")
            .await
            .status,
        404
    );
    let bad = r
        .send(Method::DELETE, "/api/v1/repositories/p/..", "", "")
        .await;
    assert_eq!(
        (bad.status, bad.json()["errors"][0]["code"].clone()),
        (400, json!("NAME_INVALID"))
    );
    let run = r.gc(false).await;
    assert_eq!(run["blobs_swept"], 4, "{run}");
    assert!(!r.stored(&layer).await);
    assert!(r.stored(&sha256(b"layer of z")).await);
}

#[tokio::test]
async fn untagged_cleanup_keeps_index_children_and_referrers() {
    let r = registry(true, false).await;
    r.policy("p", json!({"untagged_days": 0})).await;
    let amd = r
        .push_image(
            "p/app",
            &sha256(&image_manifest(
                b"{\"seed\":\"amd\"}",
                b"layer of amd",
                None,
            )),
            "amd",
        )
        .await;
    let arm = r
        .push_image(
            "p/app",
            &sha256(&image_manifest(
                b"{\"seed\":\"arm\"}",
                b"layer of arm",
                None,
            )),
            "arm",
        )
        .await;
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [descriptor(OCI_MANIFEST, &amd), descriptor(OCI_MANIFEST, &arm)]}))
    .unwrap();
    assert_eq!(
        r.put_manifest("p/app", "v1", OCI_INDEX, &index)
            .await
            .status,
        201
    );
    let sig_of = |subject: &[u8], seed: &str| {
        image_manifest(
            format!("{{\"sig\":\"{seed}\"}}").as_bytes(),
            b"sig",
            Some(subject),
        )
    };
    for (subject, seed) in [(&index, "kept")] {
        r.push_blob("p/app", format!("{{\"sig\":\"{seed}\"}}").as_bytes())
            .await;
        r.push_blob("p/app", b"sig").await;
        let sig = sig_of(subject, seed);
        // A referrer of an index: its subject's descriptor says OCI_MANIFEST, which is what it checks.
        assert_eq!(
            r.put_manifest("p/app", &sha256(&sig), OCI_MANIFEST, &sig)
                .await
                .status,
            201
        );
    }
    let orphan = r
        .push_image(
            "p/app",
            &sha256(&image_manifest(
                b"{\"seed\":\"orphan\"}",
                b"layer of orphan",
                None,
            )),
            "orphan",
        )
        .await;
    r.push_blob("p/app", b"{\"sig\":\"orphan\"}").await;
    let orphan_sig = sig_of(&orphan, "orphan");
    assert_eq!(
        r.put_manifest("p/app", &sha256(&orphan_sig), OCI_MANIFEST, &orphan_sig)
            .await
            .status,
        201
    );
    let dry = r.gc(true).await;
    assert_eq!(dry["manifests_swept"], 2, "{dry}");
    let run = r.gc(false).await;
    assert_eq!(run["manifests_swept"], 2, "{run}");
    for kept in [&amd, &arm, &sig_of(&index, "kept")] {
        let got = r
            .send(
                Method::GET,
                &format!("/v2/p/app/manifests/{}", sha256(kept)),
                "",
                "",
            )
            .await;
        assert_eq!(got.status, 200);
    }
    for gone in [&orphan, &orphan_sig] {
        let got = r
            .send(
                Method::GET,
                &format!("/v2/p/app/manifests/{}", sha256(gone)),
                "",
                "",
            )
            .await;
        assert_eq!(got.status, 404);
    }
    assert!(!r.stored(&sha256(b"layer of orphan")).await);
    assert!(r.stored(&sha256(b"layer of arm")).await);
    // Without a policy, untagged manifests stay.
    r.push_image(
        "other/app",
        &sha256(&image_manifest(b"{\"seed\":\"u\"}", b"layer of u", None)),
        "u",
    )
    .await;
    assert_eq!(r.gc(false).await["manifests_swept"], 0);
}

#[tokio::test]
async fn retention_deletes_what_no_keep_rule_keeps_and_previews_it_first() {
    let r = registry(true, false).await;
    let rules =
        json!({"keep_last": 1, "keep_patterns": ["release-*"], "delete_older_than_days": 0});
    r.policy("p", json!({"retention": rules})).await;
    for (i, tag) in ["a", "b", "release-1", "c"].iter().enumerate() {
        r.push_image("p/app", tag, &format!("r{i}")).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let preview = r
        .send(Method::POST, "/api/v1/projects/p/retention/preview", "", "")
        .await
        .json();
    assert_eq!(
        preview["repositories"],
        json!([{"name": "p/app", "delete": ["a", "b"], "kept": 2}]),
        "{preview}"
    );
    let other = json!({"retention": {"keep_last": 3}}).to_string();
    let asked = r
        .send(
            Method::POST,
            "/api/v1/projects/p/retention/preview",
            "application/json",
            other,
        )
        .await
        .json();
    assert_eq!(asked["repositories"][0]["delete"], json!(["a"]), "{asked}");
    let run = r.gc(false).await;
    assert_eq!(run["tags_swept"], 2, "{run}");
    let tags = r
        .send(Method::GET, "/v2/p/app/tags/list", "", "")
        .await
        .json();
    assert_eq!(tags["tags"], json!(["c", "release-1"]));
}

#[tokio::test]
async fn gc_runs_one_at_a_time_and_dry_runs_remove_nothing() {
    let r = registry(false, false).await;
    let first = r.send(Method::POST, "/api/v1/gc", "", "").await;
    assert_eq!(first.status, 202);
    assert_eq!(first.json()["state"], "requested");
    let second = r
        .send(Method::POST, "/api/v1/gc?dry_run=true", "", "")
        .await;
    assert_eq!(
        (
            second.status,
            second.json()["errors"][0]["detail"]["run"].clone()
        ),
        (409, first.json()["id"].clone())
    );
    assert_eq!(
        r.send(Method::GET, "/api/v1/gc/runs/999", "", "")
            .await
            .status,
        404
    );
    assert_eq!(
        r.send(Method::GET, "/api/v1/gc/runs/x", "", "")
            .await
            .status,
        404
    );
    assert_eq!(
        r.send(Method::POST, "/api/v1/gc?dry_run=maybe", "", "")
            .await
            .status,
        400
    );
    let list = r.send(Method::GET, "/api/v1/gc/runs", "", "").await.json();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let r = registry(true, false).await;
    r.push_image("p/app", "v1", "untagged").await;
    assert_eq!(
        r.send(Method::DELETE, "/v2/p/app/manifests/v1", "", "")
            .await
            .status,
        202
    );
    assert_eq!(
        r.gc(false).await["blobs_swept"],
        0,
        "an untagged manifest is kept by default"
    );
    let m = r.push_image("p/app", "v2", "dry").await;
    let path = format!("/v2/p/app/manifests/{}", sha256(&m));
    assert_eq!(r.send(Method::DELETE, &path, "", "").await.status, 202);
    let dry = r.gc(true).await;
    let swept = (dry["blobs_swept"].as_u64(), dry["links_swept"].as_u64());
    assert_eq!(swept, (Some(2), Some(2)), "{dry}");
    assert!(
        r.stored(&sha256(b"layer of dry")).await,
        "a dry run removes nothing"
    );
    assert_eq!(r.gc(false).await["blobs_swept"], 2);
    assert!(!r.stored(&sha256(b"layer of dry")).await);
}

#[tokio::test]
async fn scrub_quarantines_corrupt_and_missing_blobs_until_pushed_again() {
    let r = registry(true, false).await;
    let (good, bad, lost) = (
        b"good bytes".as_slice(),
        b"bad bytes".as_slice(),
        b"lost bytes".as_slice(),
    );
    for b in [good, bad, lost] {
        assert_eq!(r.push_blob("p/app", b).await.status, 201);
    }
    scale_out::overwrite_blob_bytes(&r.config, &sha256(bad), b"flipped!!").await;
    scale_out::remove_blob_bytes(&r.config, &sha256(lost)).await;
    let started = r.send(Method::POST, "/api/v1/scrub", "", "").await;
    assert_eq!(started.status, 202);
    let id = started.json()["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let run = loop {
        let run = r
            .send(Method::GET, &format!("/api/v1/scrub/runs/{id}"), "", "")
            .await
            .json();
        if run["state"] == "succeeded" {
            break run;
        }
        assert!(
            Instant::now() < deadline && run["state"] != "failed",
            "{run}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        (
            run["stats"]["checked"].as_u64(),
            run["stats"]["corrupt"].as_u64(),
            run["stats"]["missing"].as_u64()
        ),
        (Some(3), Some(1), Some(1)),
        "{run}"
    );
    let problems: Vec<&str> = run["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["digest"].as_str().unwrap())
        .collect();
    assert!(problems.contains(&sha256(bad).as_str()) && problems.contains(&sha256(lost).as_str()));
    for (b, status) in [(good, 200), (bad, 404), (lost, 404)] {
        assert_eq!(
            r.send(
                Method::GET,
                &format!("/v2/p/app/blobs/{}", sha256(b)),
                "",
                ""
            )
            .await
            .status,
            status
        );
    }
    for b in [bad, lost] {
        assert_eq!(r.push_blob("p/app", b).await.status, 201);
        let got = r
            .send(
                Method::GET,
                &format!("/v2/p/app/blobs/{}", sha256(b)),
                "",
                "",
            )
            .await;
        assert_eq!(got.body, Bytes::from(b.to_vec()));
    }
}

#[tokio::test]
async fn only_system_admins_collect_and_set_policies() {
    let r = registry(false, true).await;
    let admin = format!("Basic {}", base64_of("admin:admin-password"));
    let user = json!({"name": "dev", "password": "dev-password-1"}).to_string();
    assert_eq!(
        r.call(
            Method::POST,
            "/api/v1/users",
            "application/json",
            user,
            Some(&admin)
        )
        .await
        .status,
        201
    );
    let dev = format!("Basic {}", base64_of("dev:dev-password-1"));
    let project = json!({"name": "devs"}).to_string();
    assert_eq!(
        r.call(
            Method::POST,
            "/api/v1/projects",
            "application/json",
            project,
            Some(&admin)
        )
        .await
        .status,
        201
    );
    let role = json!({"role": "admin"}).to_string();
    let member = "/api/v1/projects/devs/members/dev";
    let set = r
        .call(Method::PUT, member, "application/json", role, Some(&admin))
        .await;
    assert_eq!(set.status, 204);
    assert_eq!(
        r.call(Method::POST, "/api/v1/gc", "", "", None)
            .await
            .status,
        401
    );
    assert_eq!(
        r.call(Method::POST, "/api/v1/gc", "", "", Some(&dev))
            .await
            .status,
        403
    );
    assert_eq!(
        r.call(Method::POST, "/api/v1/scrub", "", "", Some(&dev))
            .await
            .status,
        403
    );
    let policy = json!({"quota_bytes": 1}).to_string();
    assert_eq!(
        r.call(
            Method::PUT,
            "/api/v1/projects/devs/policy",
            "application/json",
            policy.clone(),
            Some(&dev)
        )
        .await
        .status,
        403
    );
    assert_eq!(
        r.call(
            Method::GET,
            "/api/v1/projects/devs/policy",
            "",
            "",
            Some(&dev)
        )
        .await
        .status,
        200
    );
    assert_eq!(
        r.call(
            Method::PUT,
            "/api/v1/projects/devs/policy",
            "application/json",
            policy,
            Some(&admin)
        )
        .await
        .status,
        200
    );
    let bad = json!({"immutable_tags": ["has space"]}).to_string();
    assert_eq!(
        r.call(
            Method::PUT,
            "/api/v1/projects/devs/policy",
            "application/json",
            bad,
            Some(&admin)
        )
        .await
        .status,
        400
    );
    assert_eq!(
        r.call(
            Method::GET,
            "/api/v1/projects/nope/policy",
            "",
            "",
            Some(&dev)
        )
        .await
        .status,
        404
    );
    assert_eq!(
        r.call(
            Method::DELETE,
            "/api/v1/repositories/devs/none",
            "",
            "",
            Some(&dev)
        )
        .await
        .status,
        404
    );
    assert_eq!(
        r.call(
            Method::DELETE,
            "/api/v1/repositories/other/x",
            "",
            "",
            Some(&dev)
        )
        .await
        .status,
        404
    );
    assert_eq!(
        r.call(Method::POST, "/api/v1/gc", "", "", Some(&admin))
            .await
            .status,
        202
    );
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
