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
use crate::framework::{digest_of, fmt_count, median, run_concurrent, sync_disks, Ctx};
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

mod grow;
mod measure;
pub(crate) mod ops;
mod report;
mod steps;
#[cfg(test)]
pub(crate) mod tests;

use grow::*;
use measure::*;
use ops::*;
use steps::*;

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
    /// A request time with the target: within 1.5x from the first
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

    /// Whether this row misses the target (berth only).
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
    let steps = checked_steps(&ctx.p)?;
    let bin = ctx.launch.berth_bin.as_ref().context(
        "the scale workload starts a berth of its own: give --berth-bin, not --berth-url",
    )?;

    let password = random_hex(12)?;
    let (mut sides, sources) = start_sides(ctx, bin, &password).await?;
    let (config, layer, img) = shared_image(ctx).await?;
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
        let step_vals = run_step(ctx, &mut sides, &mut sh, k, n).await;
        for (i, v) in step_vals.into_iter().enumerate() {
            vals[i].push(v);
        }
    }

    let rows = rows_of(&sides, &vals);
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
