//! Garbage collection against the real binary, on loopback, bounded in
//! count and time:
//!
//! 1. the torture test: 20 runs, one started every second, while 16
//!    clients push images, multi-arch indexes and signatures (referrers),
//!    move tags, mount blobs across repositories and delete images, tags
//!    and repositories, with untagged manifests collected (`untagged_days`
//!    0) and a 2 s grace period. After every run every tagged image pulls
//!    back byte for byte, with its index children and referrers; at the
//!    end, after the grace period, the blob files on disk are exactly the
//!    blobs of what is still reachable.
//! 2. `kill -9` of berth at three points of a run: what is tagged stays
//!    intact, the killed run is marked failed, the next run finishes the
//!    job, and the disk again holds exactly what is reachable.
//!
//! Run twice: as itself on the embedded default, and as `gc_scaleout` on
//! PostgreSQL + Garage, where three replicas serve the clients in turn and
//! every one of them takes requested runs; "the disk" is then the bucket.

#[path = "gc_support/mod.rs"]
mod gc_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gc_support::{sha256, Berth, Http, Manifest, Stack};
use hyper::Method;
use serde_json::{json, Value};
use tokio::sync::RwLock;

const CLIENTS: usize = 16;
const ROUNDS: usize = 20;
const GRACE_SECONDS: u64 = 2;

/// What one client believes is tagged: (repository, tag) → manifest.
type Model = Arc<Mutex<BTreeMap<(String, String), Arc<Manifest>>>>;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn shared_layer(k: u64) -> Bytes {
    Bytes::from(format!("shared layer {k} ").repeat(40))
}

fn unique(label: &str) -> Bytes {
    Bytes::from(format!("{label} {}", uuid::Uuid::new_v4()))
}

/// Pushes an image's blobs, children and itself under `reference`.
async fn push(http: &Http, repo: &str, reference: &str, m: &Manifest) {
    for child in &m.children {
        for b in &child.blobs {
            http.push_blob(repo, b).await;
        }
        http.put_manifest(repo, &child.digest, child).await;
    }
    for b in &m.blobs {
        http.push_blob(repo, b).await;
    }
    http.put_manifest(repo, reference, m).await;
}

/// Every tagged manifest of `model` pulls back, with its blobs, index
/// children and referrers.
async fn verify(http: &Http, model: &Model) {
    let tagged: Vec<_> = model.lock().unwrap().clone().into_iter().collect();
    for ((repo, tag), m) in tagged {
        let (status, _, body) = http.get(&format!("/v2/{repo}/manifests/{tag}")).await;
        assert_eq!(status, 200, "{repo}:{tag}");
        assert_eq!(body, m.bytes, "{repo}:{tag} changed");
        let mut kept = Vec::new();
        m.closure(&mut kept);
        for k in kept {
            let (status, _, body) = http
                .get(&format!("/v2/{repo}/manifests/{}", k.digest))
                .await;
            assert_eq!((status, &body), (200, &k.bytes), "{repo}@{}", k.digest);
            for b in &k.blobs {
                let (status, _, body) = http.get(&format!("/v2/{repo}/blobs/{}", sha256(b))).await;
                assert_eq!(status, 200, "{repo} blob {} of {}", sha256(b), k.digest);
                assert_eq!(sha256(&body), sha256(b));
            }
            let referrers: Vec<String> = k
                .referrers
                .lock()
                .unwrap()
                .iter()
                .map(|r| r.digest.clone())
                .collect();
            if !referrers.is_empty() {
                let (_, _, body) = http
                    .get(&format!("/v2/{repo}/referrers/{}", k.digest))
                    .await;
                let index: Value = serde_json::from_slice(&body).unwrap();
                let listed: BTreeSet<&str> = index["manifests"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["digest"].as_str().unwrap())
                    .collect();
                for r in &referrers {
                    assert!(
                        listed.contains(r.as_str()),
                        "{repo}: referrer {r} of {} lost",
                        k.digest
                    );
                }
            }
        }
    }
}

/// The blobs of everything the models keep.
fn reachable_blobs(models: &[Model]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for model in models {
        for m in model.lock().unwrap().values() {
            let mut kept = Vec::new();
            m.closure(&mut kept);
            out.extend(kept.iter().flat_map(|k| k.blobs.iter().map(|b| sha256(b))));
        }
    }
    out
}

fn pick(
    model: &Model,
    rng: &mut Rng,
    repo: Option<&str>,
) -> Option<((String, String), Arc<Manifest>)> {
    let tagged = model.lock().unwrap();
    let candidates: Vec<_> = tagged
        .iter()
        .filter(|((r, _), _)| repo.is_none_or(|want| r == want))
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let (k, v) = candidates[rng.below(candidates.len() as u64) as usize];
    Some((k.clone(), v.clone()))
}

/// One operation of client `c`; the model follows what berth confirmed.
async fn operate(http: &Http, c: usize, rng: &mut Rng, model: &Model) {
    let repos = [format!("t/c{c}a"), format!("t/c{c}b")];
    let repo = &repos[rng.below(2) as usize];
    let tag = format!("t{}", rng.below(6));
    let image = |rng: &mut Rng, label: &str| {
        let layers = vec![
            shared_layer(rng.below(20)),
            unique(&format!("layer {label}")),
        ];
        Manifest::image(unique(&format!("config {label}")), layers, None)
    };
    match rng.below(100) {
        0..=29 => {
            let m = Arc::new(image(rng, &format!("c{c}")));
            push(http, repo, &tag, &m).await;
            model.lock().unwrap().insert((repo.clone(), tag), m);
        }
        30..=39 => {
            let children = vec![Arc::new(image(rng, "amd64")), Arc::new(image(rng, "arm64"))];
            let index = Arc::new(Manifest::index(children));
            push(http, repo, &tag, &index).await;
            model.lock().unwrap().insert((repo.clone(), tag), index);
        }
        40..=49 => {
            if let Some(((r, _), subject)) = pick(model, rng, None) {
                let sig = Arc::new(Manifest::image(
                    unique("sig config"),
                    vec![unique("signature")],
                    Some(&subject),
                ));
                push(http, &r, &sig.digest.clone(), &sig).await;
                subject.referrers.lock().unwrap().push(sig);
            }
        }
        50..=59 => {
            if let Some(((r, _), m)) = pick(model, rng, None) {
                http.put_manifest(&r, &tag, &m).await;
                model.lock().unwrap().insert((r, tag), m);
            }
        }
        60..=69 => {
            let (from, to) = (&repos[0], &repos[1]);
            if let Some((_, source)) = pick(model, rng, Some(from)) {
                let Some(layer) = source
                    .blobs
                    .last()
                    .or(source.children.first().and_then(|c| c.blobs.last()))
                    .cloned()
                else {
                    return;
                };
                let path = format!(
                    "/v2/{to}/blobs/uploads/?mount={}&from={from}",
                    sha256(&layer)
                );
                let (status, _, body) = http.send(Method::POST, &path, "", Bytes::new()).await;
                assert_eq!(status, 201, "mount into {to}: {body:?}");
                let m = Arc::new(Manifest::image(unique("mounted config"), vec![layer], None));
                push(http, to, &tag, &m).await;
                model.lock().unwrap().insert((to.clone(), tag), m);
            }
        }
        70..=84 => {
            if let Some(((r, _), m)) = pick(model, rng, None) {
                let (status, _, _) = http
                    .send(
                        Method::DELETE,
                        &format!("/v2/{r}/manifests/{}", m.digest),
                        "",
                        Bytes::new(),
                    )
                    .await;
                assert_eq!(status, 202);
                model
                    .lock()
                    .unwrap()
                    .retain(|(rr, _), v| !(rr == &r && v.digest == m.digest));
            }
        }
        85..=94 => {
            if let Some(((r, t), _)) = pick(model, rng, None) {
                let (status, _, _) = http
                    .send(
                        Method::DELETE,
                        &format!("/v2/{r}/manifests/{t}"),
                        "",
                        Bytes::new(),
                    )
                    .await;
                assert_eq!(status, 202);
                model.lock().unwrap().remove(&(r, t));
            }
        }
        _ => {
            let gone = &repos[1];
            if pick(model, rng, Some(gone)).is_some() {
                let (status, _, body) = http
                    .send(
                        Method::DELETE,
                        &format!("/api/v1/repositories/{gone}"),
                        "",
                        Bytes::new(),
                    )
                    .await;
                assert_eq!(status, 204, "{body:?}");
                model.lock().unwrap().retain(|(r, _), _| r != gone);
            }
        }
    }
}

async fn setup_project(http: &Http) {
    let body = Bytes::from(json!({"name": "t"}).to_string());
    let (status, _, _) = http
        .send(Method::POST, "/api/v1/projects", "application/json", body)
        .await;
    assert_eq!(status, 201);
    let policy = Bytes::from(json!({"untagged_days": 0}).to_string());
    let (status, _, body) = http
        .send(
            Method::PUT,
            "/api/v1/projects/t/policy",
            "application/json",
            policy,
        )
        .await;
    assert_eq!(status, 200, "{body:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_torture_under_concurrent_pushes() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::new(&dir.path().join("data")).await;
    let mut replicas = Vec::new();
    for n in 0..Stack::replicas() {
        replicas.push(stack.start(n, GRACE_SECONDS).await);
    }
    let http = gc_support::across(&replicas);
    setup_project(&http).await;
    let pause = Arc::new(RwLock::new(()));
    let stop = Arc::new(AtomicBool::new(false));
    let models: Vec<Model> = (0..CLIENTS).map(|_| Model::default()).collect();
    let mut clients = Vec::new();
    for (c, model) in models.iter().enumerate() {
        let (http, pause, stop, model) = (http.clone(), pause.clone(), stop.clone(), model.clone());
        clients.push(tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((c as u64 + 1) * 0x1000_0001));
            let mut ops = 0u64;
            while !stop.load(Ordering::Relaxed) && ops < 100_000 {
                let _turn = pause.read().await;
                operate(&http, c, &mut rng, &model).await;
                ops += 1;
            }
            ops
        }));
    }
    let mut swept = 0;
    for round in 0..ROUNDS {
        let started = Instant::now();
        let run = http.gc(false).await;
        assert_eq!(run["state"], "succeeded", "round {round}: {run}");
        swept += run["blobs_swept"].as_u64().unwrap();
        {
            let _all = pause.write().await;
            for model in &models {
                verify(&http, model).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(started.elapsed())).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut ops = 0;
    for c in clients {
        ops += c.await.expect("a client failed");
    }
    tokio::time::sleep(Duration::from_millis(GRACE_SECONDS * 1000 + 1200)).await;
    let last = http.gc(false).await;
    assert_eq!(last["state"], "succeeded", "{last}");
    for model in &models {
        verify(&http, model).await;
    }
    let expected = reachable_blobs(&models);
    let on_disk = stack.stored_blobs().await;
    let holders = stack.gc_holders().await;
    println!(
        "torture: {ops} client operations, {ROUNDS} runs swept {swept} blobs during them, \
         {} blobs reachable at the end; {holders} of {} replicas ran collections",
        expected.len(),
        replicas.len()
    );
    assert!(swept > 0, "the runs during the pushes removed nothing");
    if Stack::scale_out() {
        assert!(holders >= 2, "one replica ran every collection");
    }
    assert_eq!(
        on_disk.difference(&expected).count() + expected.difference(&on_disk).count(),
        0,
        "left on disk but unreachable: {:?}; reachable but gone: {:?}",
        on_disk.difference(&expected).collect::<Vec<_>>(),
        expected.difference(&on_disk).collect::<Vec<_>>()
    );
}

const CRASH_REPOS: usize = 400;

/// 400 repositories of 9-blob images; those from r20 on are deleted.
async fn fill_for_crash(http: &Http) -> Vec<(String, Arc<Manifest>)> {
    let mut tasks = Vec::new();
    for worker in 0..16 {
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let mut kept = Vec::new();
            for n in (worker..CRASH_REPOS).step_by(16) {
                let repo = format!("k/r{n}");
                let layers = (0..8)
                    .map(|l| unique(&format!("crash layer {n} {l}")))
                    .collect();
                let m = Arc::new(Manifest::image(unique("crash config"), layers, None));
                push(&http, &repo, "v1", &m).await;
                if n < 20 {
                    kept.push((repo, m));
                } else {
                    let path = format!("/v2/{repo}/manifests/{}", m.digest);
                    let (status, _, _) = http.send(Method::DELETE, &path, "", Bytes::new()).await;
                    assert_eq!(status, 202);
                }
            }
            kept
        }));
    }
    let mut kept = Vec::new();
    for t in tasks {
        kept.extend(t.await.unwrap());
    }
    kept
}

async fn verify_kept(http: &Http, kept: &[(String, Arc<Manifest>)]) {
    let model: Model = Model::default();
    for (repo, m) in kept {
        model
            .lock()
            .unwrap()
            .insert((repo.clone(), "v1".into()), m.clone());
    }
    verify(http, &model).await;
}

type KillPoint = fn(&Value) -> bool;

/// Polls run `id` until `kill_now` says so, then kills berth; the run's
/// last state seen.
async fn kill_when(berth: &mut Berth, id: i64, kill_now: impl Fn(&Value) -> bool) -> Value {
    let http = berth.http();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = http.run(id).await;
        assert!(
            run["state"] != "succeeded",
            "run {id} ended before the kill: {run}"
        );
        if kill_now(&run) {
            berth.kill();
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} never reached the kill point"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_survives_kill_9_at_any_point() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::new(&dir.path().join("data")).await;
    let mut berth = stack.start(0, 1).await;
    let kept = fill_for_crash(&berth.http()).await;
    let garbage = (CRASH_REPOS as u64 - 20) * 9;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let dry = berth.http().gc(true).await;
    assert_eq!(dry["blobs_swept"], garbage, "{dry}");
    // While sweeping repositories; when blob deletion starts; after a
    // first batch of 1,000 blobs is gone and the next is flipped.
    let points: [(&str, KillPoint); 3] = [
        ("repositories", |r| r["phase"] == "repositories"),
        ("blobs", |r| r["phase"] == "blobs"),
        ("blobs, 1000 gone", |r| {
            r["blobs_swept"].as_u64() >= Some(1000)
        }),
    ];
    for (name, point) in points {
        let id = berth.http().request_gc(false).await;
        let seen = kill_when(&mut berth, id, point).await;
        println!("killed run {id} at {name}: {seen}");
        berth = stack.start(0, 1).await;
        let http = berth.http();
        verify_kept(&http, &kept).await;
        stack.expire_gc_leases().await;
        let run = http.wait_gc(id).await;
        assert_eq!(run["state"], "failed", "{run}");
        assert!(
            run["error"].as_str().unwrap().contains("abandoned"),
            "{run}"
        );
    }
    let http = berth.http();
    let last = http.gc(false).await;
    assert_eq!(last["state"], "succeeded", "{last}");
    verify_kept(&http, &kept).await;
    let expected: BTreeSet<String> = kept
        .iter()
        .flat_map(|(_, m)| m.blobs.iter().map(|b| sha256(b)))
        .collect();
    assert_eq!(stack.stored_blobs().await, expected);
    // What was collected can be pushed again.
    let again = Manifest::image(unique("again config"), vec![unique("again layer")], None);
    push(&http, "k/again", "v1", &again).await;
    verify_kept(&http, &[("k/again".into(), Arc::new(again))]).await;
}
