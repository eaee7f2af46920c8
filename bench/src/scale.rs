//! The `scale` workload: does the cost of a request depend on how big the
//! registry is?
//!
//! It starts a berth of its own (`auth.mode = token`, a random
//! `BERTH_ADMIN_PASSWORD`) and a Distribution of its own (no auth), and grows
//! both in steps (`--scale-steps`, default 1,000, 10,000, 100,000
//! repositories). Everything grows with the step's N: N repositories
//! `p{i % projects:04}/r{i:06}` (the first 100 in `p0000`), all holding one shared config and one shared
//! 1 MiB layer (cross-repository mounts from `base/src`) and a manifest of
//! their own; one repository (`big/app`) with N tags; on berth also
//! max(101, N/100) private projects, max(1, N/10) users and at least 10·N audit
//! rows. A project `seen` holds 10 repositories, of which the user `viewer`
//! is a guest.
//!
//! At each step it times the creation of the step's new repositories (16 in
//! flight, both registries), then, each the median of sequential samples on
//! keep-alive connections after a warm-up: a docker-like push of a new image
//! mounting the shared blobs, a manifest GET, a blob HEAD, the first tags
//! page, the first catalog page (as admin, and on berth as `viewer`), the UI
//! overview, project and repository pages (berth's `Server-Timing`), and a
//! fresh login (`GET /token` with a user's Basic credentials, first time).
//! Also the data directory's size, per repository and per tag, and each
//! server's peak RSS. It prints one table, a column per step and the growth
//! from the first step to the last.

use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use bytes::Bytes;
use http::Method;

use crate::data::{BlobSpec, ReqBody};
use crate::http::{
    basic_authorization, drain, header, new_client, next_link, parse_base, read_body, Target,
};
use crate::registry::{
    manifest, push_monolithic, push_small, put_manifest, sha256_digest, Image, OCI_MANIFEST,
};
use crate::server::{
    log_tail, proc_status_kib, random_hex, start_berth_with, start_distribution, BerthAuth,
    ForeignLoad, Server,
};
use crate::workloads::{digest_of, median, run_concurrent, sync_disks, Ctx};

/// Bound on one operation (a request, or the few requests of one repository).
const OP_TIMEOUT: Duration = Duration::from_secs(60);
/// Repositories (and tags) created at once, on both registries.
const CREATE_CONC: usize = 16;
/// Users created at once: each costs berth an argon2 hash.
const USER_CONC: usize = 3;
const PROJECT_CONC: usize = 4;
/// Connections for the manifest GETs that top up the audit log.
const AUDIT_CONNS: usize = 64;
const AUDIT_PER_REPO: usize = 10;
/// How long the audit writer may take to catch up after a round of the
/// top-up, and how long it may write nothing before the rest counts as lost.
const AUDIT_WAIT: Duration = Duration::from_secs(120);
const AUDIT_STALL: Duration = Duration::from_secs(5);
/// Rounds of GETs at most to reach 10·N rows when events were lost.
const AUDIT_ROUNDS: usize = 4;
/// Untimed requests before each measure's samples.
const WARMUP: usize = 3;
/// Time one measure may take at one step: warm-up stops after a quarter of
/// it, sampling after all of it (at least one sample is taken).
const SAMPLE_BUDGET: Duration = Duration::from_secs(30);
const LAYER_LEN: u64 = 1 << 20;
const PAGE: usize = 100;
/// The password of every created user (`u000000`, ...).
const USER_PASSWORD: &str = "scalebenchpassword";
const SOURCE: &str = "base/src";
const BIG: &str = "big/app";
const SEEN: &str = "seen";
const SEEN_REPOS: usize = 10;
const VIEWER: &str = "viewer";
/// Projects besides `p0000`...: the source, the big repository, the push
/// samples' repositories, and the viewer's.
const FIXED_PROJECTS: [&str; 4] = ["base", "big", "push", SEEN];
/// Repositories besides `p*/r*`, the seen ones and the push samples.
const FIXED_REPOS: usize = 2;

/// What a row is, for its growth marker.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// A request time with the issue's target: within 1.5x from the first
    /// step to the last.
    Target,
    /// A time without that target.
    Time,
    /// A count or a size.
    Amount,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Target => "target",
            Kind::Time => "time",
            Kind::Amount => "amount",
        }
    }
}

/// The measures, in table order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum M {
    Repos,
    Tags,
    Projects,
    Users,
    AuditRows,
    AuditLost,
    CreatePerRepo,
    CreateTotal,
    Push,
    ManifestGet,
    BlobHead,
    TagsPage,
    CatalogAdmin,
    CatalogViewer,
    ViewerEntries,
    UiOverview,
    UiProject,
    ProjectRepos,
    UiRepo,
    Login,
    Disk,
    DiskPerRepo,
    DiskPerRepoAlloc,
    DiskPerTag,
    DiskPerTagAlloc,
    Rss,
}

const MEASURES: [M; 26] = [
    M::Repos,
    M::Tags,
    M::Projects,
    M::Users,
    M::AuditRows,
    M::AuditLost,
    M::CreatePerRepo,
    M::CreateTotal,
    M::Push,
    M::ManifestGet,
    M::BlobHead,
    M::TagsPage,
    M::CatalogAdmin,
    M::CatalogViewer,
    M::ViewerEntries,
    M::UiOverview,
    M::UiProject,
    M::ProjectRepos,
    M::UiRepo,
    M::Login,
    M::Disk,
    M::DiskPerRepo,
    M::DiskPerRepoAlloc,
    M::DiskPerTag,
    M::DiskPerTagAlloc,
    M::Rss,
];

impl M {
    /// Label, kind, and whether Distribution has it.
    fn spec(self) -> (&'static str, Kind, bool) {
        use Kind::*;
        match self {
            M::Repos => ("repositories p*/r* (all share one layer)", Amount, true),
            M::Tags => ("tags in big/app", Amount, true),
            M::Projects => ("projects (p*, and 4 fixed)", Amount, false),
            M::Users => ("users (u*, viewer, admin)", Amount, false),
            M::AuditRows => ("audit rows (newest event id)", Amount, false),
            M::AuditLost => ("audit events lost (GETs 200, no row)", Amount, false),
            M::CreatePerRepo => ("creation of the new repos, per repo (ms)", Time, true),
            M::CreateTotal => ("creation of the new repos, wall (s)", Amount, true),
            M::Push => ("push of a new image mounting the layer (ms)", Target, true),
            M::ManifestGet => ("manifest GET by tag (ms)", Target, true),
            M::BlobHead => ("blob HEAD (ms)", Target, true),
            M::TagsPage => ("tags list of big/app, first page n=100 (ms)", Target, true),
            M::CatalogAdmin => ("catalog first page n=100, admin (ms)", Target, true),
            M::CatalogViewer => ("catalog first page n=100, viewer (ms)", Target, false),
            M::ViewerEntries => ("catalog entries the viewer sees", Amount, false),
            M::UiOverview => ("UI overview /ui, server (ms)", Target, false),
            M::UiProject => ("UI project page p0000, server (ms)", Target, false),
            M::ProjectRepos => ("repositories in p0000", Amount, false),
            M::UiRepo => ("UI repository page big/app, server (ms)", Target, false),
            M::Login => ("fresh login, GET /token with Basic (ms)", Target, false),
            M::Disk => ("disk: data dir, sum of file sizes (MiB)", Amount, true),
            M::DiskPerRepo => ("disk per new repo, file sizes (bytes)", Amount, true),
            M::DiskPerRepoAlloc => (
                "disk per new repo, allocated, dirs too (bytes)",
                Amount,
                true,
            ),
            M::DiskPerTag => ("disk per new tag, file sizes (bytes)", Amount, true),
            M::DiskPerTagAlloc => (
                "disk per new tag, allocated, dirs too (bytes)",
                Amount,
                true,
            ),
            M::Rss => ("peak RSS, VmHWM (MiB)", Amount, true),
        }
    }
}

type Cell = Result<f64, String>;

/// One row of the table: one measure of one registry, a value per step.
pub struct ScaleRow {
    pub label: &'static str,
    pub registry: &'static str,
    pub kind: Kind,
    pub cells: Vec<Cell>,
}

impl ScaleRow {
    /// Last step / first step, when both are numbers.
    pub fn growth(&self) -> Option<f64> {
        let (Some(Ok(a)), Some(Ok(b))) = (self.cells.first(), self.cells.last()) else {
            return None;
        };
        let g = b / a;
        (self.cells.len() > 1 && g.is_finite()).then_some(g)
    }

    /// Whether this row misses the issue's target (berth only).
    pub fn missed(&self) -> bool {
        self.kind == Kind::Target
            && self.registry == "berth"
            && self.growth().is_some_and(|g| g > 1.5)
    }
}

pub struct ScaleReport {
    pub steps: Vec<usize>,
    pub rows: Vec<ScaleRow>,
    pub notes: Vec<String>,
    pub sources: [String; 2],
    /// Timed samples per measure and step.
    pub samples: usize,
    pub secs: f64,
}

/// Names and sizes, the same for both registries.
struct Plan {
    steps: Vec<usize>,
}

/// N/100 projects, and never fewer than a UI page holds and one more, so
/// that the overview shows a full page at every step (its time then grows
/// with the registry, not with the rows on the page).
fn projects_at(n: usize) -> usize {
    (n / 100).max(PAGE + 1)
}

fn users_at(n: usize) -> usize {
    (n / 10).max(1)
}

fn project_name(i: usize) -> String {
    format!("p{i:04}")
}

fn user_name(i: usize) -> String {
    format!("u{i:06}")
}

fn tag_name(i: usize) -> String {
    format!("t{i:06}")
}

fn seen_repo(i: usize) -> String {
    format!("{SEEN}/r{i:06}")
}

impl Plan {
    /// The project count when repository `i` was created: that of the first
    /// step that holds it.
    fn projects_for(&self, i: usize) -> usize {
        let n = self
            .steps
            .iter()
            .copied()
            .find(|n| i < *n)
            .unwrap_or(usize::MAX);
        projects_at(n)
    }

    /// The first page's worth go to `p0000` (so its UI page is full at
    /// every step), the rest round the projects of their step.
    fn project_of(&self, i: usize) -> usize {
        if i < PAGE {
            0
        } else {
            i % self.projects_for(i)
        }
    }

    fn repo_name(&self, i: usize) -> String {
        format!("p{:04}/r{i:06}", self.project_of(i))
    }

    /// How many of the first `n` repositories are in `p0000`.
    fn in_first_project(&self, n: usize) -> usize {
        (0..n).filter(|i| self.project_of(*i) == 0).count()
    }
}

/// One registry being grown.
struct Side {
    name: &'static str,
    server: Server,
    /// With admin Basic credentials on berth; none on Distribution.
    admin: Target,
    berth: Option<BerthSide>,
    repos: usize,
    tags: usize,
    /// `p*` projects and `u*` users created so far (berth).
    projects: usize,
    users: usize,
    /// Users used by the fresh-login samples so far, and push samples made.
    logins: usize,
    pushes: usize,
    /// Set when growing failed or the server died: every later figure fails with it.
    broken: Option<String>,
}

struct BerthSide {
    viewer: Target,
    /// The `service` of berth's token challenge.
    service: String,
    /// `berth_session=...` of the admin's UI session.
    cookie: String,
}

/// The values of one step for one side, indexed by `M`.
struct Vals(Vec<Cell>);

impl Vals {
    fn new() -> Vals {
        Vals(vec![Err("not measured".into()); MEASURES.len()])
    }
    fn set(&mut self, m: M, v: Cell) {
        let i = MEASURES.iter().position(|x| *x == m).expect("a measure");
        self.0[i] = v;
    }
    fn fail_all(&mut self, why: &str) {
        for c in &mut self.0 {
            *c = Err(why.to_string());
        }
    }
}

/// Runs `fut` with the operation bound.
async fn within<T>(what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => bail!("{what}: no answer within {} s", OP_TIMEOUT.as_secs()),
    }
}

fn ms_since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e3
}

/// The median of the samples of one measure, and how many were taken.
struct Sampled {
    median: f64,
    taken: usize,
}

/// `warmup` untimed runs, then the median of `n` timed ones, within
/// `SAMPLE_BUDGET`; `f(k)` returns its own figure in ms (client-measured, or
/// the server's). `k` counts from 0 to `warmup + n` whether or not all run.
async fn sample<F, Fut>(warmup: usize, n: usize, mut f: F) -> Result<Sampled>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<f64>>,
{
    let start = Instant::now();
    for k in 0..warmup {
        within("warm-up", f(k)).await?;
        if start.elapsed() > SAMPLE_BUDGET / 4 {
            break;
        }
    }
    let mut v = Vec::with_capacity(n);
    for k in warmup..warmup + n {
        v.push(within("sample", f(k)).await?);
        if start.elapsed() > SAMPLE_BUDGET {
            break;
        }
    }
    Ok(Sampled {
        taken: v.len(),
        median: median(v),
    })
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<from>`: 201.
async fn mount(t: &Target, repo: &str, digest: &str, from: &str) -> Result<()> {
    let url = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
    let r = t
        .request(
            Method::POST,
            &url,
            &[("content-length", "0")],
            ReqBody::Empty,
            &[201],
        )
        .await?;
    ensure!(
        header(&r, "location").is_some(),
        "POST {url}: 201 without a Location header"
    );
    if let Some(d) = header(&r, "docker-content-digest") {
        ensure!(
            d == digest,
            "POST {url}: Docker-Content-Digest {d}, expected {digest}"
        );
    }
    drain(r).await?;
    Ok(())
}

/// A new repository: the shared config and layer mounted, one manifest PUT.
async fn create_repo(t: &Target, repo: &str, img: &Image, body: Bytes) -> Result<()> {
    mount(t, repo, &img.config_digest, SOURCE).await?;
    mount(t, repo, &img.layer_digest, SOURCE).await?;
    put_manifest(t, repo, "latest", body).await
}

async fn head_status(t: &Target, url: &str, expect: u16) -> Result<()> {
    let r = t
        .request(Method::HEAD, url, &[], ReqBody::Empty, &[expect])
        .await?;
    drain(r).await?;
    Ok(())
}

/// What `docker push` does for an image whose blobs exist elsewhere: per blob
/// `HEAD` in the target (404), then a mount `POST` (201); then the manifest.
async fn docker_push(t: &Target, repo: &str, img: &Image, body: Bytes) -> Result<()> {
    for digest in [&img.layer_digest, &img.config_digest] {
        head_status(t, &format!("/v2/{repo}/blobs/{digest}"), 404).await?;
        mount(t, repo, digest, SOURCE).await?;
    }
    put_manifest(t, repo, "latest", body).await
}

/// `POST` of a JSON body to the management API: `expect`, body discarded.
async fn api_post(t: &Target, url: &str, body: serde_json::Value, expect: u16) -> Result<()> {
    let body = Bytes::from(serde_json::to_vec(&body)?);
    let len = body.len().to_string();
    let method = if url.contains("/members/") {
        Method::PUT
    } else {
        Method::POST
    };
    let r = t
        .request(
            method,
            url,
            &[
                ("content-type", "application/json"),
                ("content-length", &len),
            ],
            ReqBody::full(body),
            &[expect],
        )
        .await?;
    drain(r).await?;
    Ok(())
}

async fn create_project(t: &Target, name: &str) -> Result<()> {
    api_post(
        t,
        "/api/v1/projects",
        serde_json::json!({ "name": name, "public": false }),
        201,
    )
    .await
}

async fn create_user(t: &Target, name: &str, password: &str) -> Result<()> {
    api_post(
        t,
        "/api/v1/users",
        serde_json::json!({ "name": name, "password": password, "admin": false }),
        201,
    )
    .await
}

/// The newest audit event's id (0 when there is none): `GET /api/v1/audit?limit=1`
/// answers a JSON array, newest first, after flushing the writer's queue.
async fn audit_newest(t: &Target) -> Result<i64> {
    let url = "/api/v1/audit?limit=1";
    let r = t
        .request(Method::GET, url, &[], ReqBody::Empty, &[200])
        .await?;
    let body = read_body(r).await?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("GET {url}: body is not JSON"))?;
    let a = v
        .as_array()
        .with_context(|| format!("GET {url}: not an array: {}", excerpt(&body)))?;
    match a.first() {
        None => Ok(0),
        Some(e) => e
            .get("id")
            .and_then(|id| id.as_i64())
            .with_context(|| format!("GET {url}: event without an integer id: {e}")),
    }
}

fn excerpt(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(300)]);
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The `service` of the Bearer challenge an anonymous `GET /v2/` gets.
async fn token_service(t: &Target) -> Result<String> {
    let anon = Target {
        authorization: None,
        ..t.clone()
    };
    let r = anon
        .request(Method::GET, "/v2/", &[], ReqBody::Empty, &[401])
        .await?;
    let challenge = header(&r, "www-authenticate").context("GET /v2/: 401 without a challenge")?;
    drain(r).await?;
    let start = challenge
        .find("service=\"")
        .with_context(|| format!("GET /v2/: no service in {challenge:?}"))?
        + "service=\"".len();
    let rest = &challenge[start..];
    let end = rest
        .find('"')
        .with_context(|| format!("GET /v2/: unterminated service in {challenge:?}"))?;
    Ok(rest[..end].to_string())
}

/// GET of a JSON list's first page: the names, and whether a next page is linked.
async fn first_page(t: &Target, url: &str, field: &str) -> Result<(Vec<String>, bool)> {
    let r = t
        .request(Method::GET, url, &[], ReqBody::Empty, &[200])
        .await?;
    let next = next_link(&r).is_some();
    let body = read_body(r).await?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("GET {url}: body is not JSON"))?;
    let a = v
        .get(field)
        .and_then(|a| a.as_array())
        .with_context(|| format!("GET {url}: no {field:?} array in {}", excerpt(&body)))?;
    let names = a
        .iter()
        .map(|x| {
            x.as_str()
                .map(str::to_string)
                .with_context(|| format!("GET {url}: non-string in {field:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((names, next))
}

fn check_sorted_distinct(url: &str, names: &[String]) -> Result<()> {
    ensure!(
        names.windows(2).all(|w| w[0] < w[1]),
        "GET {url}: names not sorted and distinct: {:?}...",
        &names[..names.len().min(5)]
    );
    Ok(())
}

/// Sums the sizes under `dir`: (file sizes, allocated blocks of files and
/// directories).
fn disk_usage(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let (mut len, mut alloc) = (0u64, 0u64);
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            // Directories may vanish meanwhile (finished uploads).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            let md = match e.metadata() {
                Ok(m) => m,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            alloc += md.blocks() * 512;
            if md.is_dir() {
                stack.push(e.path());
            } else {
                len += md.len();
            }
        }
    }
    Ok((len, alloc))
}

async fn disk(side: &Side) -> Result<(u64, u64)> {
    let dir = side.server.data.clone();
    let what = dir.display().to_string();
    tokio::task::spawn_blocking(move || disk_usage(&dir))
        .await?
        .with_context(|| format!("walking {what}"))
}

fn fmt_count(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Everything the sides share: the plan, the image, the sample counts.
struct Shared {
    plan: Arc<Plan>,
    img: Arc<Image>,
    samples: usize,
    notes: Vec<String>,
}

impl Shared {
    fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// Sets a measure's value; notes when the budget cut its samples short.
    fn record(&mut self, who: &str, n: usize, v: &mut Vals, m: M, r: Result<Sampled>) {
        match r {
            Ok(sm) => {
                if sm.taken < self.samples {
                    self.note(format!(
                        "{who}, step {}: {}: {} of {} samples (the {} s budget of a measure)",
                        fmt_count(n),
                        m.spec().0,
                        sm.taken,
                        self.samples,
                        SAMPLE_BUDGET.as_secs()
                    ));
                }
                v.set(m, Ok(sm.median));
            }
            Err(e) => v.set(m, Err(format!("{e:#}"))),
        }
    }
}

pub async fn run(ctx: &Ctx) -> Result<ScaleReport> {
    let started = Instant::now();
    let steps = ctx.p.scale_steps.clone();
    ensure!(!steps.is_empty(), "--scale-steps: give at least one step");
    ensure!(
        steps.windows(2).all(|w| w[0] < w[1]) && steps[0] >= 1,
        "--scale-steps must be increasing and positive, got {steps:?}"
    );
    ensure!(
        *steps.last().expect("a step") < 1_000_000,
        "--scale-steps: at most 999,999 repositories (names are r000000...)"
    );
    ensure!(
        ctx.p.scale_samples >= 1,
        "--scale-samples must be at least 1"
    );
    let l = &ctx.launch;
    let bin = l.berth_bin.as_ref().context(
        "the scale workload starts a berth of its own: give --berth-bin, not --berth-url",
    )?;

    let password = random_hex(12)?;
    eprintln!("scale: starting berth (auth on) and distribution (no auth) of its own");
    let berth = start_berth_with(bin, &l.tmp_dir, BerthAuth::Admin(&password)).await?;
    let dist = start_distribution(&l.dist_bin, &l.tmp_dir, None).await?;
    let sources = [
        format!(
            "{} (started at {}, pid {}, auth.mode=token)",
            bin.display(),
            berth.base,
            berth.pid
        ),
        format!(
            "{} (started at {}, pid {}, no auth)",
            l.dist_bin.display(),
            dist.base,
            dist.pid
        ),
    ];
    let mut sides = [
        side("berth", berth, Some(&password)).await?,
        side("distribution", dist, None).await?,
    ];

    let layer = BlobSpec {
        seed: 700_000,
        len: LAYER_LEN,
    };
    let config = Bytes::from_static(
        br#"{"architecture":"amd64","os":"linux","config":{"Labels":{"org.example.berth-bench":"scale"}},"rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let img = Image {
        config_digest: sha256_digest(&config),
        config_len: config.len(),
        layer_digest: digest_of(&ctx.pool, layer).await?,
        layer_len: LAYER_LEN as usize,
    };
    let mut sh = Shared {
        plan: Arc::new(Plan {
            steps: steps.clone(),
        }),
        img: Arc::new(img),
        samples: ctx.p.scale_samples,
        notes: Vec::new(),
    };

    for s in &mut sides {
        let r = bootstrap(ctx, s, &sh, &password, &config, layer).await;
        fail_side(s, "setting up", r).await;
    }

    // vals[side][step]
    let mut vals: [Vec<Vals>; 2] = Default::default();
    for (k, &n) in steps.iter().enumerate() {
        eprintln!(
            "== scale step {}/{}: {} repositories",
            k + 1,
            steps.len(),
            fmt_count(n)
        );
        let mut pids = ctx.launch.pids.clone();
        pids.extend(sides.iter().map(|s| s.server.pid));
        let load = ForeignLoad::start(pids);
        let step_start = Instant::now();
        let mut step_vals = [Vals::new(), Vals::new()];
        for (s, v) in sides.iter_mut().zip(step_vals.iter_mut()) {
            if s.broken.is_none() {
                let r = grow(s, &mut sh, n, v).await;
                fail_side(s, &format!("growing to {n} repositories"), r).await;
            }
        }
        // Distribution first: berth's slowest requests (at scale the UI
        // overview) come last and cannot load the machine under others.
        for (s, v) in sides.iter_mut().zip(step_vals.iter_mut()).rev() {
            if s.broken.is_none() {
                sync_disks().await;
                let t0 = Instant::now();
                measure(s, &mut sh, k, n, v).await;
                eprintln!(
                    "[{}] step {}: measured in {:.1} s",
                    s.name,
                    fmt_count(n),
                    t0.elapsed().as_secs_f64()
                );
                check_alive(s).await;
            }
            let rss = proc_status_kib(s.server.pid, "VmHWM")
                .map(|k| k as f64 / 1024.0)
                .ok_or_else(|| format!("cannot read /proc/{}/status", s.server.pid));
            v.set(M::Rss, rss);
            if let Some(why) = &s.broken {
                v.fail_all(why);
            }
        }
        for (i, v) in step_vals.into_iter().enumerate() {
            vals[i].push(v);
        }
        if let Some(cores) = load.cores() {
            sh.notes.push(format!(
                "step {} ({:.0} s): other processes and kernel threads kept {cores:.2} cores busy",
                fmt_count(n),
                step_start.elapsed().as_secs_f64()
            ));
        }
    }

    let mut rows = Vec::new();
    for (mi, m) in MEASURES.iter().enumerate() {
        let (label, kind, in_dist) = m.spec();
        for (i, s) in sides.iter().enumerate() {
            if i == 1 && !in_dist {
                continue;
            }
            rows.push(ScaleRow {
                label,
                registry: s.name,
                kind,
                cells: vals[i].iter().map(|v| v.0[mi].clone()).collect(),
            });
        }
    }
    for s in sides {
        s.server.stop().await;
    }
    Ok(ScaleReport {
        steps,
        rows,
        notes: sh.notes,
        sources,
        samples: ctx.p.scale_samples,
        secs: started.elapsed().as_secs_f64(),
    })
}

async fn side(name: &'static str, server: Server, password: Option<&str>) -> Result<Side> {
    let admin = Target {
        name,
        base: server.base.clone(),
        addr: parse_base(&server.base).await?.1,
        pid: Some(server.pid),
        client: new_client(),
        authorization: password.map(|p| basic_authorization("admin", p)),
    };
    Ok(Side {
        name,
        server,
        admin,
        berth: None,
        repos: 0,
        tags: 0,
        projects: 0,
        users: 0,
        logins: 0,
        pushes: 0,
        broken: None,
    })
}

/// Marks the side broken when `r` failed, with the server's log tail.
async fn fail_side(s: &mut Side, what: &str, r: Result<()>) {
    if let Err(e) = r {
        // Let the server's log writer catch up before its tail is read.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let why = format!(
            "{what}: {e:#}; server log tail:\n{}",
            log_tail(&s.server.log)
        );
        eprintln!("[{}] scale FAILED: {why}", s.name);
        s.broken = Some(why);
    }
    check_alive(s).await;
}

async fn check_alive(s: &mut Side) {
    if let Some(status) = s.server.exited() {
        let why = format!(
            "server exited ({status}); log tail:\n{}",
            log_tail(&s.server.log)
        );
        eprintln!("[{}] scale FAILED: {why}", s.name);
        s.broken = Some(why);
    }
}

/// Untimed, once: the source repository with the shared blobs; the big
/// repository's blobs; the viewer's project with its 10 repositories; on
/// berth the fixed projects, the viewer and the admin's UI session.
async fn bootstrap(
    ctx: &Ctx,
    s: &mut Side,
    sh: &Shared,
    admin_password: &str,
    config: &Bytes,
    layer: BlobSpec,
) -> Result<()> {
    let t = s.admin.clone();
    let img = &sh.img;
    let is_berth = s.name == "berth";
    if is_berth {
        for p in FIXED_PROJECTS {
            within("create project", create_project(&t, p)).await?;
        }
    }
    within("push config", push_small(&t, SOURCE, config.clone())).await?;
    within(
        "push layer",
        push_monolithic(&t, &ctx.pool, SOURCE, layer, &img.layer_digest),
    )
    .await?;
    within(
        "put manifest",
        put_manifest(&t, SOURCE, "latest", manifest(img, "src")),
    )
    .await?;
    within("mount", mount(&t, BIG, &img.config_digest, SOURCE)).await?;
    within("mount", mount(&t, BIG, &img.layer_digest, SOURCE)).await?;
    for i in 0..SEEN_REPOS {
        let body = manifest(img, &format!("seen-{i}"));
        within(
            "create repository",
            create_repo(&t, &seen_repo(i), img, body),
        )
        .await?;
    }
    if is_berth {
        let viewer_password = random_hex(12)?;
        within("create user", create_user(&t, VIEWER, &viewer_password)).await?;
        within(
            "add member",
            api_post(
                &t,
                &format!("/api/v1/projects/{SEEN}/members/{VIEWER}"),
                serde_json::json!({ "role": "guest" }),
                204,
            ),
        )
        .await?;
        let service = within("GET /v2/", token_service(&t)).await?;
        let browser = Target {
            authorization: None,
            ..t.clone()
        };
        let session = within(
            "UI login",
            crate::ui::login(&browser, "admin", admin_password),
        )
        .await
        .context("signing in to the UI")?;
        s.berth = Some(BerthSide {
            viewer: Target {
                authorization: Some(basic_authorization(VIEWER, &viewer_password)),
                ..t.clone()
            },
            service,
            cookie: format!("{}={session}", crate::ui::SESSION_COOKIE),
        });
    }
    Ok(())
}

/// Grows one side to step `n`: projects and users (berth), the new
/// repositories (timed), the big repository's tags, the audit log (berth).
async fn grow(s: &mut Side, sh: &mut Shared, n: usize, v: &mut Vals) -> Result<()> {
    let t = s.admin.clone();
    let plan = sh.plan.clone();
    let img = sh.img.clone();
    let label = fmt_count(n);
    let is_berth = s.name == "berth";

    if is_berth {
        let t0 = Instant::now();
        let (from, to) = (s.projects, projects_at(n));
        let t2 = t.clone();
        run_concurrent(to - from, PROJECT_CONC, move |j| {
            let t = t2.clone();
            async move {
                within(
                    "create project",
                    create_project(&t, &project_name(from + j)),
                )
                .await
            }
        })
        .await?;
        s.projects = to;
        // Enough users that every fresh-login sample has one of its own.
        let (from, to) = (s.users, users_at(n).max(s.logins + WARMUP + sh.samples));
        let t2 = t.clone();
        run_concurrent(to.saturating_sub(from), USER_CONC, move |j| {
            let t = t2.clone();
            async move {
                within(
                    "create user",
                    create_user(&t, &user_name(from + j), USER_PASSWORD),
                )
                .await
            }
        })
        .await?;
        s.users = to.max(from);
        eprintln!(
            "[{}] step {label}: {} projects, {} users ({:.1} s, untimed)",
            s.name,
            s.projects,
            s.users,
            t0.elapsed().as_secs_f64()
        );
        v.set(M::Projects, Ok((s.projects + FIXED_PROJECTS.len()) as f64));
        v.set(M::Users, Ok((s.users + 2) as f64));
    }

    // The new repositories, timed.
    let (from, to) = (s.repos, n);
    let before = disk(s).await?;
    sync_disks().await;
    let t0 = Instant::now();
    let (t2, plan2, img2) = (t.clone(), plan.clone(), img.clone());
    run_concurrent(to - from, CREATE_CONC, move |j| {
        let (t, plan, img) = (t2.clone(), plan2.clone(), img2.clone());
        async move {
            let i = from + j;
            let repo = plan.repo_name(i);
            let body = manifest(&img, &format!("repo-{i}"));
            within(
                &format!("creating {repo}"),
                create_repo(&t, &repo, &img, body),
            )
            .await
        }
    })
    .await?;
    let secs = t0.elapsed().as_secs_f64();
    s.repos = to;
    let after = disk(s).await?;
    let added = (to - from) as f64;
    eprintln!(
        "[{}] step {label}: {} repositories created in {secs:.1} s ({:.2} ms each, {CREATE_CONC} in flight)",
        s.name,
        to - from,
        secs * 1e3 / added
    );
    v.set(M::Repos, Ok(n as f64));
    v.set(M::CreatePerRepo, Ok(secs * 1e3 / added));
    v.set(M::CreateTotal, Ok(secs));
    v.set(
        M::DiskPerRepo,
        Ok((after.0 as f64 - before.0 as f64) / added),
    );
    v.set(
        M::DiskPerRepoAlloc,
        Ok((after.1 as f64 - before.1 as f64) / added),
    );

    // The big repository's tags, untimed.
    let (from, to) = (s.tags, n);
    let t0 = Instant::now();
    let (t2, img2) = (t.clone(), img.clone());
    run_concurrent(to - from, CREATE_CONC, move |j| {
        let (t, img) = (t2.clone(), img2.clone());
        async move {
            let i = from + j;
            let body = manifest(&img, &format!("tag-{i}"));
            within("tagging", put_manifest(&t, BIG, &tag_name(i), body)).await
        }
    })
    .await?;
    s.tags = to;
    let tagged = disk(s).await?;
    let added = (to - from) as f64;
    eprintln!(
        "[{}] step {label}: {BIG} tagged {} times in {:.1} s (untimed)",
        s.name,
        to - from,
        t0.elapsed().as_secs_f64()
    );
    v.set(M::Tags, Ok(n as f64));
    v.set(
        M::DiskPerTag,
        Ok((tagged.0 as f64 - after.0 as f64) / added),
    );
    v.set(
        M::DiskPerTagAlloc,
        Ok((tagged.1 as f64 - after.1 as f64) / added),
    );
    v.set(M::Disk, Ok(tagged.0 as f64 / f64::from(1 << 20)));

    if is_berth {
        let (rows, lost) = top_up_audit(s, sh, n).await;
        v.set(M::AuditRows, rows);
        v.set(M::AuditLost, lost);
    }
    Ok(())
}

/// `gets` manifest GETs spread over the repositories, `AUDIT_CONNS` in flight;
/// returns their wall time (s).
async fn audit_gets(t: &Target, plan: &Arc<Plan>, repos: usize, gets: usize) -> Result<f64> {
    let t0 = Instant::now();
    let (t, plan) = (t.clone(), plan.clone());
    run_concurrent(gets, AUDIT_CONNS, move |j| {
        let (t, plan) = (t.clone(), plan.clone());
        async move {
            let url = format!("/v2/{}/manifests/latest", plan.repo_name(j % repos));
            within(&format!("GET {url}"), async {
                let r = t
                    .request(
                        Method::GET,
                        &url,
                        &[("accept", OCI_MANIFEST)],
                        ReqBody::Empty,
                        &[200],
                    )
                    .await?;
                drain(r).await?;
                Ok(())
            })
            .await
        }
    })
    .await?;
    Ok(t0.elapsed().as_secs_f64())
}

/// The last `unwritten_total=` berth's audit writer logged (events it gave up).
fn logged_unwritten(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    let key = "unwritten_total=";
    let at = text.rfind(key)? + key.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Rounds of manifest GETs (each an audit row on berth) until the log holds
/// 10·N rows, each followed by a bounded wait for the writer: until it has
/// caught up, written nothing for `AUDIT_STALL`, or `AUDIT_WAIT` passed.
/// Returns the newest event id and the GETs (all answered 200) that left no
/// row; lost events are also noted, with berth's own count from its log.
async fn top_up_audit(s: &Side, sh: &mut Shared, n: usize) -> (Cell, Cell) {
    let t = s.admin.clone();
    let plan = sh.plan.clone();
    let mut losses = Vec::new();
    let r = async {
        let want = (AUDIT_PER_REPO * n) as i64;
        let mut lost = 0i64;
        let mut now = within("GET /api/v1/audit", audit_newest(&t)).await?;
        for _ in 0..AUDIT_ROUNDS {
            if now >= want {
                break;
            }
            let (have, gets) = (now, (want - now) as usize);
            let get_secs = audit_gets(&t, &plan, s.repos, gets).await?;
            let expected = have + gets as i64;
            let waited = Instant::now();
            let mut changed = Instant::now();
            now = within("GET /api/v1/audit", audit_newest(&t)).await?;
            while now < expected && waited.elapsed() < AUDIT_WAIT && changed.elapsed() < AUDIT_STALL
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let next = within("GET /api/v1/audit", audit_newest(&t)).await?;
                if next != now {
                    changed = Instant::now();
                }
                now = next;
            }
            let rate = gets as f64 / get_secs.max(1e-9);
            eprintln!(
                "[{}] step {}: {gets} manifest GETs at {AUDIT_CONNS} conns in {get_secs:.1} s \
                 ({rate:.0} req/s), audit log at {now} (waited {:.1} s; untimed)",
                s.name,
                fmt_count(n),
                waited.elapsed().as_secs_f64()
            );
            if now < expected {
                let missing = expected - now;
                lost += missing;
                losses.push(format!(
                    "{missing} of {gets} manifest GETs (all answered 200, {rate:.0}/s over \
                     {AUDIT_CONNS} connections) left no audit row: the newest event id went \
                     from {have} to {now}, not {expected}, and stayed there {} s",
                    AUDIT_STALL.as_secs()
                ));
            }
        }
        ensure!(
            now >= want,
            "audit log: newest event id {now} after {AUDIT_ROUNDS} rounds of manifest GETs, \
             expected {want}"
        );
        Ok::<_, anyhow::Error>((now, lost))
    }
    .await;
    if !losses.is_empty() {
        let logged = logged_unwritten(&s.server.log).map_or_else(
            || "no unwritten_total in its log".to_string(),
            |u| {
                format!(
                    "its log says \"audit events not written: the audit queue and its \
                     overflow are full\", one ERROR line per event, up to unwritten_total={u}"
                )
            },
        );
        sh.note(format!(
            "berth, step {}: {}; {logged}",
            fmt_count(n),
            losses.join("; then ")
        ));
    }
    match r {
        Ok((now, lost)) => (Ok(now as f64), Ok(lost as f64)),
        Err(e) => {
            let msg = format!("{e:#}");
            sh.note(format!("berth, step {}: {msg}", fmt_count(n)));
            (Err(msg.clone()), Err(msg))
        }
    }
}

/// The timed requests of one step; a failed one fails its own figure only.
async fn measure(s: &mut Side, sh: &mut Shared, k: usize, n: usize, v: &mut Vals) {
    measure_registry(s, sh, k, n, v).await;
    if s.berth.is_some() {
        measure_berth(s, sh, n, v).await;
    }
}

/// What both registries have: push, manifest GET, blob HEAD, the first tags
/// and catalog pages (as admin).
async fn measure_registry(s: &mut Side, sh: &mut Shared, k: usize, n: usize, v: &mut Vals) {
    let t = s.admin.clone();
    let img = sh.img.clone();
    let (w, ns) = (WARMUP, sh.samples);
    let is_berth = s.name == "berth";
    let who = s.name;

    // 1. Push of a new image: a fresh repository per sample.
    let base = s.pushes;
    let r = sample(w, ns, |j| {
        let (t, img) = (&t, &img);
        async move {
            let i = base + j;
            let repo = format!("push/s{k}-{i:05}");
            let body = manifest(img, &format!("push-{k}-{i}"));
            let t0 = Instant::now();
            docker_push(t, &repo, img, body).await?;
            Ok(ms_since(t0))
        }
    })
    .await;
    s.pushes += w + ns;
    sh.record(who, n, v, M::Push, r);

    // 2. Manifest GET and blob HEAD on the first repository.
    let repo0 = sh.plan.repo_name(0);
    let want = manifest(&img, "repo-0");
    let url = format!("/v2/{repo0}/manifests/latest");
    let r = sample(w, ns, |_| {
        let (t, url, want) = (&t, &url, &want);
        async move {
            let t0 = Instant::now();
            let r = t
                .request(
                    Method::GET,
                    url,
                    &[("accept", OCI_MANIFEST)],
                    ReqBody::Empty,
                    &[200],
                )
                .await?;
            let body = read_body(r).await?;
            let ms = ms_since(t0);
            ensure!(
                body == *want,
                "GET {url}: not the manifest pushed ({} bytes)",
                body.len()
            );
            Ok(ms)
        }
    })
    .await;
    sh.record(who, n, v, M::ManifestGet, r);
    let url = format!("/v2/{repo0}/blobs/{}", img.layer_digest);
    let r = sample(w, ns, |_| {
        let (t, url) = (&t, &url);
        async move {
            let t0 = Instant::now();
            let r = t
                .request(Method::HEAD, url, &[], ReqBody::Empty, &[200])
                .await?;
            let len = header(&r, "content-length");
            drain(r).await?;
            let ms = ms_since(t0);
            ensure!(
                len.as_deref() == Some(&LAYER_LEN.to_string()),
                "HEAD {url}: Content-Length {len:?}, expected {LAYER_LEN}"
            );
            Ok(ms)
        }
    })
    .await;
    sh.record(who, n, v, M::BlobHead, r);

    // 3. The big repository's first tags page.
    let url = format!("/v2/{BIG}/tags/list?n={PAGE}");
    let want: Vec<String> = (0..PAGE.min(n)).map(tag_name).collect();
    let whole = std::sync::atomic::AtomicBool::new(false);
    let r = sample(w, ns, |_| {
        let (t, url, want, whole) = (&t, &url, &want, &whole);
        async move {
            let t0 = Instant::now();
            let (names, next) = first_page(t, url, "tags").await?;
            let ms = ms_since(t0);
            if !is_berth && names.len() == n && !next {
                // Distribution 2.8 ignores n on tags/list and answers all
                // tags unsorted: the figure is then the whole list's.
                let mut sorted = names.clone();
                sorted.sort();
                sorted.dedup();
                ensure!(
                    sorted.len() == n && sorted.iter().enumerate().all(|(i, x)| *x == tag_name(i)),
                    "GET {url}: {} tags, not the {n} distinct tags pushed",
                    names.len()
                );
                whole.store(
                    n > PAGE || names != *want,
                    std::sync::atomic::Ordering::Relaxed,
                );
                return Ok(ms);
            }
            ensure!(
                names == *want,
                "GET {url}: {} tags starting {:?}, expected {} starting {:?}",
                names.len(),
                &names[..names.len().min(3)],
                want.len(),
                &want[..want.len().min(3)]
            );
            ensure!(
                next == (n > PAGE),
                "GET {url}: Link rel=\"next\" {}, with {n} tags",
                if next { "present" } else { "absent" }
            );
            Ok(ms)
        }
    })
    .await;
    if whole.into_inner() && k == 0 {
        sh.note(format!(
            "{}: tags/list?n={PAGE} answers all tags, unsorted, without a Link: its tags \
                 row is the time of the whole list",
            s.name
        ));
    }
    sh.record(who, n, v, M::TagsPage, r);

    // 4. The first catalog page, as admin and as the viewer.
    let url = format!("/v2/_catalog?n={PAGE}");
    let total = s.repos + SEEN_REPOS + FIXED_REPOS + s.pushes;
    let r = sample(w, ns, |_| {
        let (t, url) = (&t, &url);
        async move {
            let t0 = Instant::now();
            let (names, next) = first_page(t, url, "repositories").await?;
            let ms = ms_since(t0);
            ensure!(
                names.len() == PAGE.min(total),
                "GET {url}: {} repositories, expected {} (of {total})",
                names.len(),
                PAGE.min(total)
            );
            check_sorted_distinct(url, &names)?;
            ensure!(
                names.first().map(String::as_str) == Some(SOURCE),
                "GET {url}: first repository {:?}, expected {SOURCE:?}",
                names.first()
            );
            ensure!(
                next == (total > PAGE),
                "GET {url}: Link rel=\"next\" {} with {total} repositories",
                if next { "present" } else { "absent" }
            );
            Ok(ms)
        }
    })
    .await;
    sh.record(who, n, v, M::CatalogAdmin, r);
}

/// What only berth has: the catalog as a user who sees 10 repositories, the
/// UI pages' server time, fresh logins.
async fn measure_berth(s: &mut Side, sh: &mut Shared, n: usize, v: &mut Vals) {
    let Some(b) = &s.berth else {
        return;
    };
    let t = s.admin.clone();
    let (w, ns) = (WARMUP, sh.samples);
    let who = s.name;
    let url = format!("/v2/_catalog?n={PAGE}");
    let want: Vec<String> = (0..SEEN_REPOS).map(seen_repo).collect();
    let entries = std::sync::atomic::AtomicUsize::new(0);
    let r = sample(w, ns, |_| {
        let (t, url, want, entries) = (&b.viewer, &url, &want, &entries);
        async move {
            let t0 = Instant::now();
            let (names, next) = first_page(t, url, "repositories").await?;
            let ms = ms_since(t0);
            entries.store(names.len(), std::sync::atomic::Ordering::Relaxed);
            ensure!(
                names == *want && !next,
                "GET {url} as {VIEWER}: {} repositories {:?}{}, expected exactly the \
                 {SEEN_REPOS} of {SEEN}",
                names.len(),
                &names[..names.len().min(12)],
                if next { " and a next page" } else { "" }
            );
            Ok(ms)
        }
    })
    .await;
    match &r {
        Ok(_) => v.set(M::ViewerEntries, Ok(entries.into_inner() as f64)),
        Err(e) => v.set(M::ViewerEntries, Err(format!("{e:#}"))),
    }
    sh.record(who, n, v, M::CatalogViewer, r);

    // 5. Fresh logins: a user that never logged in before, per sample.
    let base = s.logins;
    let url = format!(
        "/token?service={}&scope={}",
        urlencode(&b.service),
        urlencode(&format!("repository:{}:pull", seen_repo(0)))
    );
    let r = sample(w, ns, |j| {
        let (url, t) = (&url, &t);
        async move {
            let user = user_name(base + j);
            let u = Target {
                authorization: Some(basic_authorization(&user, USER_PASSWORD)),
                ..t.clone()
            };
            let t0 = Instant::now();
            let r = u
                .request(Method::GET, url, &[], ReqBody::Empty, &[200])
                .await
                .with_context(|| format!("as {user}"))?;
            let body = read_body(r).await?;
            let ms = ms_since(t0);
            let v: serde_json::Value = serde_json::from_slice(&body)
                .with_context(|| format!("GET {url}: body is not JSON"))?;
            ensure!(
                v.get("token")
                    .and_then(|x| x.as_str())
                    .is_some_and(|x| !x.is_empty()),
                "GET {url} as {user}: no token in {}",
                excerpt(&body)
            );
            Ok(ms)
        }
    })
    .await;
    s.logins += w + ns;
    sh.record(who, n, v, M::Login, r);

    // 6. UI pages, the server's time, signed in as admin.
    let browser = Target {
        authorization: None,
        ..t.clone()
    };
    let projects = s.projects + FIXED_PROJECTS.len();
    let in_p0000 = sh.plan.in_first_project(s.repos);
    // The overview last: at scale it has been the slowest page by far.
    let pages: [(M, String); 3] = [
        (M::UiProject, format!("/ui/projects/{}", project_name(0))),
        (M::UiRepo, format!("/ui/r/{BIG}")),
        (M::UiOverview, "/ui".to_string()),
    ];
    for (m, url) in pages {
        let r = sample(w, ns, |_| {
            let (t, url, cookie) = (&browser, &url, &b.cookie);
            async move {
                let (body, dur) = crate::ui::get_page(t, url, cookie).await?;
                let html = String::from_utf8_lossy(&body);
                check_ui(m, url, &html, projects, in_p0000, n)?;
                Ok(dur)
            }
        })
        .await;
        sh.record(who, n, v, m, r);
    }
    v.set(M::ProjectRepos, Ok(in_p0000 as f64));
}

/// Checks that a UI page shows what it should, so a lost session or an
/// error page cannot produce a number.
fn check_ui(
    m: M,
    url: &str,
    html: &str,
    projects: usize,
    in_p0000: usize,
    tags: usize,
) -> Result<()> {
    match m {
        // All rows, or the first page of 100 where the page is paged.
        M::UiOverview => {
            let rows = html.matches("<tr data-name=\"").count();
            ensure!(
                (rows == projects || rows == projects.min(PAGE))
                    && html.contains("data-name=\"p0000\""),
                "GET {url}: {rows} project rows, expected {projects} (or the first {PAGE}) \
                 with p0000"
            );
        }
        M::UiProject => {
            let rows = html.matches("<tr data-name=\"p0000/").count();
            ensure!(
                rows == in_p0000 || rows == in_p0000.min(PAGE),
                "GET {url}: {rows} repository rows, expected {in_p0000} (or the first {PAGE})"
            );
        }
        M::UiRepo => {
            ensure!(
                html.contains(&format!("{tags} tags"))
                    && html.contains(&format!("data-name=\"{}\"", tag_name(0))),
                "GET {url}: the page does not say \"{tags} tags\" or lacks {}",
                tag_name(0)
            );
        }
        _ => return Err(anyhow!("not a UI page: {m:?}")),
    }
    Ok(())
}

impl ScaleReport {
    pub fn ok(&self) -> bool {
        self.rows.iter().all(|r| r.cells.iter().all(Result::is_ok))
    }

    fn creation(&self, registry: &str) -> Option<f64> {
        let row = self
            .rows
            .iter()
            .find(|r| r.label == M::CreatePerRepo.spec().0 && r.registry == registry)?;
        row.cells.last()?.as_ref().ok().copied()
    }

    /// The table: a row per measure and registry, a column per step, and the
    /// growth from the first step to the last.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let width = self
            .rows
            .iter()
            .map(|r| r.label.chars().count())
            .max()
            .unwrap_or(10);
        let _ = write!(
            out,
            "{:<width$}  {:<12}",
            "scale (repositories)", "registry"
        );
        for n in &self.steps {
            let _ = write!(out, "  {:>10}", fmt_count(*n));
        }
        let _ = writeln!(out, "  {:>9}", "growth");
        let mut last = "";
        for r in &self.rows {
            let label = if r.label == last { "" } else { r.label };
            last = r.label;
            let _ = write!(out, "{label:<width$}  {:<12}", r.registry);
            for c in &r.cells {
                let cell = match c {
                    Ok(v) => crate::fmt_value(*v),
                    Err(_) => "FAILED".into(),
                };
                let _ = write!(out, "  {cell:>10}");
            }
            let growth = r.growth().map_or("-".to_string(), |g| format!("{g:.2}x"));
            let mark = if r.missed() { " !" } else { "  " };
            let _ = writeln!(out, "  {growth:>7}{mark}");
        }
        let _ = writeln!(out);
        let (first, last) = (
            fmt_count(self.steps[0]),
            fmt_count(*self.steps.last().expect("a step")),
        );
        let _ = writeln!(
            out,
            "growth: value at {last} / value at {first} repositories. ! marks a berth request \
             time that grew more than the target 1.5x."
        );
        let missed: Vec<String> = self
            .rows
            .iter()
            .filter(|r| r.missed())
            .map(|r| format!("{} ({:.2}x)", r.label, r.growth().unwrap_or(f64::NAN)))
            .collect();
        let targets = self
            .rows
            .iter()
            .filter(|r| r.kind == Kind::Target && r.registry == "berth")
            .count();
        if self.steps.len() > 1 {
            let _ = writeln!(
                out,
                "target: berth's {targets} request times within 1.5x from {first} to {last}: {}",
                if missed.is_empty() {
                    "met".to_string()
                } else {
                    format!("missed by {}", missed.join(", "))
                }
            );
        }
        if let (Some(b), Some(d)) = (self.creation("berth"), self.creation("distribution")) {
            let _ = writeln!(
                out,
                "target: creation per repository at the last step no slower than Distribution's: \
                 berth {} ms, distribution {} ms: {}",
                crate::fmt_value(b),
                crate::fmt_value(d),
                if b <= d { "met" } else { "missed" }
            );
        }
        let _ = writeln!(
            out,
            "times: median of {} samples after {WARMUP} untimed, sequential, keep-alive; UI rows \
             are the server's Server-Timing, the others client-measured. Creation: \
             {CREATE_CONC} in flight, wall time / repositories added.",
            self.samples
        );
        let _ = writeln!(out, "berth: {}", self.sources[0]);
        let _ = writeln!(out, "distribution: {}", self.sources[1]);
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        let mut shown: Vec<&str> = Vec::new();
        for r in &self.rows {
            for (c, n) in r.cells.iter().zip(&self.steps) {
                if let Err(e) = c {
                    if !shown.contains(&e.as_str()) {
                        shown.push(e);
                        let _ = writeln!(
                            out,
                            "FAILED ({}) {} at {}: {e}",
                            r.registry,
                            r.label,
                            fmt_count(*n)
                        );
                    }
                }
            }
        }
        let _ = writeln!(out, "scale workload done in {:.0} s", self.secs);
        out
    }

    pub fn to_json(&self) -> serde_json::Value {
        let cell = |c: &Cell| match c {
            Ok(v) if v.is_finite() => serde_json::json!(v),
            _ => serde_json::Value::Null,
        };
        serde_json::json!({
            "steps": self.steps,
            "growth_means": "value at the last step / value at the first step",
            "target_growth": 1.5,
            "registries": { "berth": self.sources[0], "distribution": self.sources[1] },
            "rows": self.rows.iter().map(|r| serde_json::json!({
                "figure": r.label,
                "registry": r.registry,
                "kind": r.kind.name(),
                "values": r.cells.iter().map(cell).collect::<Vec<_>>(),
                "errors": r.cells.iter().map(|c| c.as_ref().err().cloned()).collect::<Vec<_>>(),
                "growth": r.growth(),
                "target_missed": r.missed(),
            })).collect::<Vec<_>>(),
            "notes": self.notes,
            "samples": self.samples,
            "secs": self.secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Launch;
    use crate::data::Pool;
    use crate::workloads::Params;

    /// `$BERTH_BIN`, else the workspace's `target/release/berth`, else
    /// `target/debug/berth` (as the conformance suite finds it).
    fn berth_binary() -> PathBuf {
        if let Some(bin) = std::env::var_os("BERTH_BIN") {
            return PathBuf::from(bin);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("bench/ is inside the workspace");
        for profile in ["release", "debug"] {
            let bin = root.join("target").join(profile).join("berth");
            if bin.is_file() {
                return bin;
            }
        }
        panic!(
            "no berth binary in {}/target/{{release,debug}}: build it (cargo build -p berth) \
             or set BERTH_BIN",
            root.display()
        );
    }

    fn values(report: &ScaleReport, m: M, registry: &str) -> Vec<f64> {
        let label = m.spec().0;
        let row = report
            .rows
            .iter()
            .find(|r| r.label == label && r.registry == registry)
            .unwrap_or_else(|| panic!("no row {label:?} for {registry}"));
        row.cells
            .iter()
            .map(|c| *c.as_ref().expect("a number"))
            .collect()
    }

    #[test]
    fn repositories_spread_over_the_projects_of_their_step() {
        let plan = Plan {
            steps: vec![1000, 10_000],
        };
        assert_eq!(plan.repo_name(0), "p0000/r000000");
        assert_eq!(plan.repo_name(99), "p0000/r000099");
        assert_eq!(plan.repo_name(999), "p0090/r000999");
        assert_eq!(plan.repo_name(1234), "p0022/r001234");
        assert_eq!(plan.in_first_project(1000), 109);
        assert_eq!(plan.in_first_project(10_000), 199);
        assert_eq!(fmt_count(100_000), "100,000");
        assert_eq!(fmt_count(999), "999");
    }

    /// The whole workload at tiny steps against a real berth and Distribution:
    /// every row and column is a number, the viewer saw exactly its 10
    /// repositories, and every repository was created.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scale_workload_end_to_end_at_tiny_steps() {
        let dist = PathBuf::from("/usr/bin/docker-registry");
        assert!(
            dist.is_file(),
            "the scale test needs CNCF Distribution at {}: apt-get install docker-registry",
            dist.display()
        );
        let tmp = tempfile::tempdir().expect("a temp dir");
        let mut p = Params::new(true, 1);
        p.scale_steps = vec![20, 60];
        p.scale_samples = 3;
        let ctx = Ctx {
            pool: Pool::new(2 << 20),
            p,
            launch: Launch {
                berth_bin: Some(berth_binary()),
                dist_bin: dist,
                tmp_dir: tmp.path().to_path_buf(),
                pids: Vec::new(),
            },
        };
        let report = tokio::time::timeout(Duration::from_secs(45), run(&ctx))
            .await
            .expect("the scale workload finishes within 45 s")
            .expect("the scale workload runs");
        let table = report.table();
        println!("{table}");

        assert_eq!(report.steps, [20, 60]);
        for r in &report.rows {
            assert_eq!(r.cells.len(), 2, "{} ({})", r.label, r.registry);
            for c in &r.cells {
                match c {
                    Ok(v) => assert!(v.is_finite(), "{} ({}): {v}", r.label, r.registry),
                    Err(e) => panic!("{} ({}) failed: {e}", r.label, r.registry),
                }
            }
        }
        assert!(report.ok());
        for m in MEASURES {
            let (label, _, in_dist) = m.spec();
            assert!(table.contains(label), "the table lacks {label:?}");
            for (registry, present) in [("berth", true), ("distribution", in_dist)] {
                let found = report
                    .rows
                    .iter()
                    .any(|r| r.label == label && r.registry == registry);
                assert_eq!(found, present, "{label:?} for {registry}");
            }
        }
        assert!(!table.contains("FAILED"), "{table}");
        let header = table.lines().next().expect("a header");
        for col in ["registry", "20", "60", "growth"] {
            assert!(header.contains(col), "header {header:?} lacks {col:?}");
        }

        assert_eq!(values(&report, M::ViewerEntries, "berth"), [10.0, 10.0]);
        for registry in ["berth", "distribution"] {
            assert_eq!(values(&report, M::Repos, registry), [20.0, 60.0]);
            assert_eq!(values(&report, M::Tags, registry), [20.0, 60.0]);
            for c in values(&report, M::CreatePerRepo, registry) {
                assert!(c > 0.0, "{registry}: creation {c} ms per repository");
            }
        }
        assert!(values(&report, M::AuditRows, "berth")[1] >= 600.0);
        assert_eq!(values(&report, M::AuditLost, "berth"), [0.0, 0.0]);
        let json = report.to_json();
        assert_eq!(
            json["rows"].as_array().map(Vec::len),
            Some(report.rows.len())
        );
    }
}
