//! The `auth` workload: the cost of HTTP Basic authentication.
//!
//! For each registry it starts two fresh instances of its own: one without
//! authentication, one requiring Basic credentials from an htpasswd file whose
//! entry is bcrypt cost 12 (`htpasswd -nbB -C 12`). Against each it runs the same
//! sequence, sending `Authorization: Basic ...` on every request to the second:
//!
//! - login: one `GET /v2/` (what `docker login` does): the first check of the
//!   password, which a registry cannot avoid paying bcrypt for;
//! - (untimed) the project is created by a first small push, as it would exist
//!   already in steady use;
//! - push: images one after the other, as `docker push` does each: `GET /v2/`,
//!   then per blob (config, small layers, one big layer) `HEAD` (404), `POST`
//!   and a monolithic `PUT ?digest=`, 5 blobs in flight at once, then the
//!   manifest `PUT` by tag;
//! - pull: `GET /v2/`, then per image `GET` of the manifest by tag and of every
//!   blob, 3 in flight at once.
//!
//! It reports MB/s (of layer data) with and without, the login time, and the
//! time ratios with/without.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context as _, Result};
use bytes::Bytes;
use http::Method;

use crate::data::{BlobSpec, Pool, ReqBody};
use crate::framework::{
    digest_of, fig, mb_s, run_concurrent, size_label, sync_disks, Better, Ctx, FigureSpec, Params,
    State,
};
use crate::http::{basic_authorization, drain, header, new_client, parse_base, read_body, Target};
use crate::registry::{pull_blob, push_monolithic, push_small, put_manifest, sha256_digest};
use crate::server::{
    cpu_seconds, log_tail, random_hex, start_berth, start_distribution, ForeignLoad,
};

const USER: &str = "bench";
const PROJECT: &str = "authbench";
const OCI_MANIFEST: &str = crate::registry::OCI_MANIFEST;

/// One image to push and pull.
struct Image {
    repo: String,
    config: Bytes,
    config_digest: String,
    /// Small layers first, then the big one.
    layers: Vec<(BlobSpec, String)>,
    manifest: Bytes,
    manifest_digest: String,
}

/// What one blob of an image is.
#[derive(Clone)]
enum Blob {
    Config(Bytes, String),
    Layer(BlobSpec, String),
}

impl Blob {
    fn digest(&self) -> &str {
        match self {
            Blob::Config(_, d) | Blob::Layer(_, d) => d,
        }
    }
    fn len(&self) -> u64 {
        match self {
            Blob::Config(b, _) => b.len() as u64,
            Blob::Layer(s, _) => s.len,
        }
    }
}

impl Image {
    fn blobs(&self) -> Vec<Blob> {
        let mut v = vec![Blob::Config(
            self.config.clone(),
            self.config_digest.clone(),
        )];
        v.extend(self.layers.iter().map(|(s, d)| Blob::Layer(*s, d.clone())));
        v
    }
}

/// Requests of one push and of one pull of all the images.
fn request_counts(p: &Params) -> (usize, usize) {
    let blobs = p.auth_small_layers + 2;
    // GET /v2/; per blob HEAD, POST, PUT; per image the manifest PUT.
    let push = 1 + p.auth_images * (3 * blobs + 1);
    // GET /v2/; per image the manifest and every blob.
    let pull = 1 + p.auth_images * (1 + blobs);
    (push, pull)
}

fn data_bytes(p: &Params) -> u64 {
    p.auth_images as u64 * (p.auth_small_layers as u64 * p.auth_small_len + p.auth_big_len)
}

pub fn figures(p: &Params) -> Vec<FigureSpec> {
    use Better::*;
    let (push_reqs, pull_reqs) = request_counts(p);
    let what = format!(
        "{} images of {}x{} + {}",
        p.auth_images,
        p.auth_small_layers,
        size_label(p.auth_small_len),
        size_label(p.auth_big_len)
    );
    vec![
        fig("auth: login, first GET /v2/ with Basic (ms)".into(), Lower),
        fig(
            format!("auth: push {what}, {push_reqs} req: no auth (MB/s)"),
            Higher,
        ),
        fig("auth: push, Basic on every request (MB/s)".into(), Higher),
        fig(
            format!("auth: pull of those, {pull_reqs} req: no auth (MB/s)"),
            Higher,
        ),
        fig("auth: pull, Basic on every request (MB/s)".into(), Higher),
        fig("auth: push time, with Basic / without (x)".into(), Lower),
        fig("auth: pull time, with Basic / without (x)".into(), Lower),
        fig(
            "auth: push+pull time, with Basic / without (x)".into(),
            Lower,
        ),
        fig(
            "auth: login+push+pull time, with Basic / without (x)".into(),
            Lower,
        ),
    ]
}

/// An htpasswd file with one bcrypt cost-12 entry, and the matching password.
async fn make_htpasswd(dir: &Path) -> Result<(PathBuf, String)> {
    let password = random_hex(12)?;
    let out = tokio::process::Command::new("htpasswd")
        .args(["-nbB", "-C", "12", USER, &password])
        .output()
        .await
        .context("running htpasswd (Debian: apt-get install apache2-utils)")?;
    ensure!(
        out.status.success(),
        "htpasswd -nbB -C 12 failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let text = String::from_utf8(out.stdout).context("htpasswd output is not UTF-8")?;
    let line = text.lines().next().unwrap_or("").trim();
    let prefix = format!("{USER}:$2y$12$");
    ensure!(
        line.starts_with(&prefix),
        "htpasswd -nbB -C 12 wrote {line:?}, not a bcrypt cost-12 entry"
    );
    let path = dir.join("htpasswd");
    std::fs::write(&path, format!("{line}\n"))?;
    Ok((path, password))
}

async fn plan(ctx: &Ctx) -> Result<Vec<Image>> {
    let p = &ctx.p;
    let mut images = Vec::new();
    for i in 0..p.auth_images {
        let config = Bytes::from(
            serde_json::to_vec(&serde_json::json!({
                "architecture": "amd64",
                "os": "linux",
                "config": { "Labels": { "org.example.berth-bench.image": i.to_string() } },
                "rootfs": { "type": "layers", "diff_ids": [] },
            }))
            .expect("config serializes"),
        );
        let config_digest = sha256_digest(&config);
        let mut layers = Vec::new();
        for j in 0..=p.auth_small_layers {
            let spec = if j < p.auth_small_layers {
                BlobSpec {
                    seed: 300_000 + (i * 1000 + j) as u64,
                    len: p.auth_small_len,
                }
            } else {
                BlobSpec {
                    seed: 400_000 + i as u64,
                    len: p.auth_big_len,
                }
            };
            layers.push((spec, digest_of(&ctx.pool, spec).await?));
        }
        let manifest = Bytes::from(
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest,
                    "size": config.len(),
                },
                "layers": layers.iter().map(|(s, d)| serde_json::json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": d,
                    "size": s.len,
                })).collect::<Vec<_>>(),
            }))
            .expect("manifest serializes"),
        );
        images.push(Image {
            repo: format!("{PROJECT}/app{i}"),
            config,
            config_digest,
            manifest_digest: sha256_digest(&manifest),
            manifest,
            layers,
        });
    }
    Ok(images)
}

async fn get_v2(t: &Target) -> Result<()> {
    let r = t
        .request(Method::GET, "/v2/", &[], ReqBody::Empty, &[200])
        .await?;
    drain(r).await?;
    Ok(())
}

/// What `docker push` does for one blob: HEAD (absent), then POST + PUT.
async fn push_blob(t: &Target, pool: &Pool, repo: &str, blob: Blob) -> Result<()> {
    let url = format!("/v2/{repo}/blobs/{}", blob.digest());
    let r = t
        .request(Method::HEAD, &url, &[], ReqBody::Empty, &[404])
        .await?;
    drain(r).await?;
    match blob {
        Blob::Config(data, digest) => {
            let got = push_small(t, repo, data).await?;
            ensure!(got == digest, "config digest {got}, expected {digest}");
            Ok(())
        }
        Blob::Layer(spec, digest) => push_monolithic(t, pool, repo, spec, &digest).await,
    }
}

async fn push_all(ctx: &Ctx, t: &Target, images: &Arc<Vec<Image>>) -> Result<()> {
    get_v2(t).await?;
    for (i, img) in images.iter().enumerate() {
        let blobs = Arc::new(img.blobs());
        let (t2, pool, repo) = (t.clone(), ctx.pool.clone(), img.repo.clone());
        let b = blobs.clone();
        run_concurrent(blobs.len(), ctx.p.auth_push_conc, move |k| {
            let (t, pool, repo, blob) = (t2.clone(), pool.clone(), repo.clone(), b[k].clone());
            async move { push_blob(&t, &pool, &repo, blob).await }
        })
        .await?;
        put_manifest(t, &img.repo, &format!("v{i}"), img.manifest.clone()).await?;
    }
    Ok(())
}

async fn get_manifest(t: &Target, img: &Image, tag: &str) -> Result<()> {
    let url = format!("/v2/{}/manifests/{tag}", img.repo);
    let r = t
        .request(
            Method::GET,
            &url,
            &[("accept", OCI_MANIFEST)],
            ReqBody::Empty,
            &[200],
        )
        .await?;
    if let Some(d) = header(&r, "docker-content-digest") {
        ensure!(
            d == img.manifest_digest,
            "GET {url}: Docker-Content-Digest {d}, expected {}",
            img.manifest_digest
        );
    }
    let body = read_body(r).await?;
    ensure!(
        body == img.manifest,
        "GET {url}: not the manifest pushed ({} bytes, {})",
        body.len(),
        sha256_digest(&body)
    );
    Ok(())
}

async fn pull_all(ctx: &Ctx, t: &Target, images: &Arc<Vec<Image>>) -> Result<()> {
    get_v2(t).await?;
    for (i, img) in images.iter().enumerate() {
        get_manifest(t, img, &format!("v{i}")).await?;
        let blobs = Arc::new(img.blobs());
        let (t2, repo) = (t.clone(), img.repo.clone());
        let b = blobs.clone();
        run_concurrent(blobs.len(), ctx.p.auth_pull_conc, move |k| {
            let (t, repo, blob) = (t2.clone(), repo.clone(), b[k].clone());
            async move { pull_blob(&t, &repo, blob.digest(), blob.len(), false).await }
        })
        .await?;
    }
    Ok(())
}

/// Times of one login + push + pull, and what the server and the machine did meanwhile.
struct Timing {
    /// Status of a blob HEAD in the project before it existed (expected 404).
    first_head: u16,
    login: f64,
    push: f64,
    pull: f64,
    server_cpu: Option<f64>,
    foreign_cores: Option<f64>,
}

/// Starts a fresh registry (with authentication when `htpasswd` is given) and runs
/// login, push and pull against it, then checks the data, and that credentials are
/// really required when they should be.
async fn one_side(
    ctx: &Ctx,
    name: &'static str,
    images: &Arc<Vec<Image>>,
    htpasswd: Option<(&Path, &str)>,
) -> Result<Timing> {
    let l = &ctx.launch;
    let file = htpasswd.map(|(f, _)| f);
    let server = match name {
        "berth" => {
            let bin = l.berth_bin.as_ref().context(
                "the auth workload starts registries of its own: give --berth-bin, not --berth-url",
            )?;
            start_berth(bin, &l.tmp_dir, file).await?
        }
        _ => start_distribution(&l.dist_bin, &l.tmp_dir, file).await?,
    };
    let mode = if htpasswd.is_some() {
        "with Basic"
    } else {
        "no auth"
    };
    let t = Target {
        name,
        base: server.base.clone(),
        addr: parse_base(&server.base).await?.1,
        pid: Some(server.pid),
        client: new_client(),
        authorization: htpasswd.map(|(_, pw)| basic_authorization(USER, pw)),
    };
    let result = timed_session(ctx, &t, server.pid, images, htpasswd, mode).await;
    let result = match result {
        Ok(tm) => Ok(tm),
        Err(e) => {
            // Let the server's log writer catch up before its tail is read.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            Err(anyhow::anyhow!(
                "{name} {mode}: {e:#}; server log tail:\n{}",
                log_tail(&server.log)
            ))
        }
    };
    server.stop().await;
    let tm = result?;
    let total = data_bytes(&ctx.p);
    eprintln!(
        "[{name}] auth, {mode}: login {:.1} ms, push {:.3} s ({:.1} MB/s), pull {:.3} s ({:.1} MB/s)",
        tm.login * 1e3,
        tm.push,
        mb_s(total, tm.push),
        tm.pull,
        mb_s(total, tm.pull)
    );
    Ok(tm)
}

/// Login, then the timed push and pull of `images` into `t` (a registry of its own
/// at `server_pid`), and the untimed checks of the data and of the credentials.
async fn timed_session(
    ctx: &Ctx,
    t: &Target,
    server_pid: u32,
    images: &Arc<Vec<Image>>,
    htpasswd: Option<(&Path, &str)>,
    mode: &str,
) -> Result<Timing> {
    let l = &ctx.launch;
    let start = Instant::now();
    get_v2(t).await.context("login")?;
    let login = start.elapsed().as_secs_f64();
    let first_head = create_project(t, mode)
        .await
        .context("creating the project")?;

    sync_disks().await;
    let mut pids = l.pids.clone();
    pids.push(server_pid);
    let load = ForeignLoad::start(pids);
    let cpu0 = cpu_seconds(t.pid);
    let start = Instant::now();
    push_all(ctx, t, images).await?;
    let push = start.elapsed().as_secs_f64();
    let start = Instant::now();
    pull_all(ctx, t, images).await?;
    let pull = start.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(t.pid).zip(cpu0).map(|(b, a)| b - a);
    let foreign_cores = load.cores();

    // Untimed: one config and one big layer pulled again and hashed.
    let img = &images[0];
    for blob in [img.blobs()[0].clone(), img.blobs().pop().expect("a layer")] {
        pull_blob(t, &img.repo, blob.digest(), blob.len(), true).await?;
    }
    if let Some((_, pw)) = htpasswd {
        check_enforced(t, img, pw).await?;
    }
    Ok(Timing {
        first_head,
        login,
        push,
        pull,
        server_cpu,
        foreign_cores,
    })
}

/// Untimed: creates the project (on berth, the first push into `authbench/...`
/// does), as it would already exist in steady use, with one small blob pushed the
/// way `docker push` does. Returns the status of the HEAD that comes first, when
/// the project does not exist yet: a pusher should get 404 there, and clients
/// such as containerd abort the push on anything else.
async fn create_project(t: &Target, mode: &str) -> Result<u16> {
    let data = Bytes::from_static(b"berth-bench: the project exists");
    let digest = sha256_digest(&data);
    let repo = format!("{PROJECT}/setup");
    let url = format!("/v2/{repo}/blobs/{digest}");
    let r = t
        .request(Method::HEAD, &url, &[], ReqBody::Empty, &[404, 401, 403])
        .await?;
    let status = r.status().as_u16();
    drain(r).await?;
    if status != 404 {
        eprintln!(
            "[{}] warning: auth, {mode}: HEAD {url} before the project existed answered \
             {status}, expected 404",
            t.name
        );
    }
    push_small(t, &repo, data).await?;
    let r = t
        .request(Method::HEAD, &url, &[], ReqBody::Empty, &[200])
        .await?;
    drain(r).await?;
    Ok(status)
}

/// With authentication on: no credentials and a wrong password are refused.
async fn check_enforced(t: &Target, img: &Image, password: &str) -> Result<()> {
    let anonymous = Target {
        authorization: None,
        ..t.clone()
    };
    let r = anonymous
        .request(Method::GET, "/v2/", &[], ReqBody::Empty, &[401])
        .await
        .context("without credentials")?;
    drain(r).await?;
    let url = format!("/v2/{}/manifests/v0", img.repo);
    let r = anonymous
        .request(Method::GET, &url, &[], ReqBody::Empty, &[401])
        .await
        .context("without credentials")?;
    drain(r).await?;
    let wrong = Target {
        authorization: Some(basic_authorization(USER, &format!("{password}x"))),
        ..t.clone()
    };
    let r = wrong
        .request(Method::GET, &url, &[], ReqBody::Empty, &[401])
        .await
        .context("with a wrong password")?;
    drain(r).await?;
    Ok(())
}

pub async fn run(ctx: &Ctx, t: &Target, st: &mut State) -> Result<Vec<f64>> {
    let name = t.name;
    let dir = tempfile::Builder::new()
        .prefix("berth-bench-htpasswd-")
        .tempdir_in(&ctx.launch.tmp_dir)?;
    let (file, password) = make_htpasswd(dir.path()).await?;
    let images = Arc::new(plan(ctx).await?);

    // Alternate which side goes first, round by round.
    let (plain, basic) = if st.round.is_multiple_of(2) {
        let a = one_side(ctx, name, &images, None).await?;
        let b = one_side(ctx, name, &images, Some((&file, &password))).await?;
        (a, b)
    } else {
        let b = one_side(ctx, name, &images, Some((&file, &password))).await?;
        let a = one_side(ctx, name, &images, None).await?;
        (a, b)
    };

    note_sides(st, name, &plain, &basic);

    let total = data_bytes(&ctx.p);
    let ratio = |with: f64, without: f64| with / without;
    Ok(vec![
        basic.login * 1e3,
        mb_s(total, plain.push),
        mb_s(total, basic.push),
        mb_s(total, plain.pull),
        mb_s(total, basic.pull),
        ratio(basic.push, plain.push),
        ratio(basic.pull, plain.pull),
        ratio(basic.push + basic.pull, plain.push + plain.pull),
        ratio(
            basic.login + basic.push + basic.pull,
            plain.login + plain.push + plain.pull,
        ),
    ])
}

/// Notes the server CPU and the other load of both sides, and an unexpected
/// first HEAD; warns when other processes were busy.
fn note_sides(st: &mut State, name: &str, plain: &Timing, basic: &Timing) {
    let fmt = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.2}"));
    st.notes.push((
        "auth: server CPU over push+pull (s), no auth / with Basic".into(),
        format!("{} / {}", fmt(plain.server_cpu), fmt(basic.server_cpu)),
    ));
    st.notes.push((
        "auth: CPU used meanwhile by other processes and kernel threads, in cores, no auth / with Basic"
            .into(),
        format!("{} / {}", fmt(plain.foreign_cores), fmt(basic.foreign_cores)),
    ));
    for (mode, tm) in [("no auth", plain), ("with Basic", basic)] {
        if tm.first_head != 404 && st.round == 0 {
            st.notes.push((
                format!(
                    "auth, {mode}: HEAD /v2/{PROJECT}/setup/blobs/<digest> before the \
                     first push created the project (expected 404; containerd aborts \
                     a push on anything else)"
                ),
                tm.first_head.to_string(),
            ));
        }
        if let Some(c) = tm.foreign_cores.filter(|c| *c >= 0.15) {
            eprintln!(
                "[{name}] warning: other processes kept {c:.2} cores busy during auth, {mode}"
            );
        }
    }
}
