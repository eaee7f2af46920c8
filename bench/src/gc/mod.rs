//! The `gc` workload: how fast does a registry collect garbage, what does it
//! cost in memory, and what does a running GC cost the pushes beside it?
//!
//! A data set of `--gc-blobs` tiny distinct blobs (32 bytes) and
//! `--gc-manifests` OCI image manifests (a config and 4 layers each) over 100
//! repositories is built in fresh registries of the workload's own, over
//! `FILL_CONC` keep-alive connections; then half the manifests are deleted
//! by digest, so that a GC has about half the blobs to free (`plan`).
//!
//! - berth (`auth.mode = token`, a random admin password,
//!   `BERTH_GC__GRACE_SECONDS=0`, `BERTH_GC__INTERVAL_SECONDS=0`): a GC is
//!   requested with `POST /api/v1/gc` and its run polled until it finished;
//!   timed from the request to the run seen finished, with the server's RSS
//!   before and its peak meanwhile. It must sweep exactly the blobs only the
//!   deleted manifests referred to; afterwards sampled kept manifests must
//!   pull and sampled freed blobs be gone.
//! - Distribution: its GC is offline, so the registry is stopped and
//!   `docker-registry garbage-collect CONFIG` timed on its data directory;
//!   its blob files are counted before and after.
//!
//! Both at the full size and at a tenth of it (does berth's GC memory grow
//! with the count?). Then, on a berth with a 60 s grace period filled
//! with the full data set first (so the grace period has passed by then),
//! `PUSH_CLIENTS` clients push small images for `gc_push` with no GC running,
//! then while GC runs back to back; the ratio of the two rates.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use bytes::Bytes;
use http::Method;

use crate::data::{BlobSpec, Pool, ReqBody};
use crate::framework::{digest_of, fmt_count, run_concurrent, sync_disks, Better, Ctx, Params};
use crate::http::{basic_authorization, drain, header, new_client, parse_base, read_body, Target};
use crate::registry::{put_manifest, put_small, sha256_digest, start_upload, OCI_MANIFEST};
use crate::server::{
    log_tail, proc_status_kib, random_hex, start_berth_env, start_distribution, BerthAuth, Server,
};

mod collect;
mod fill;
mod plan;
mod push;
mod report;
#[cfg(test)]
mod tests;

use collect::*;
use fill::*;
use plan::*;
use push::*;
pub use report::GcReport;
use verify::*;

mod verify;

const OCTET: &str = "application/octet-stream";
/// Repositories the data set is spread over.
const REPOS: usize = 100;
/// Requests in flight while building the data set.
const FILL_CONC: usize = 32;
/// Bound on one request (or one image's few requests).
const OP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a GC run is polled, and the garbage-collect tool's RSS read.
const POLL: Duration = Duration::from_millis(10);
const TOOL_POLL: Duration = Duration::from_millis(10);
/// Kept manifests pulled, and freed blobs looked for, after a GC.
const VERIFY_SAMPLES: usize = 200;
const VERIFY_CONC: usize = 8;
/// The push-throughput part: clients, layer size, the berth's grace period,
/// and bounds on images per client and GC runs per phase.
const PUSH_CLIENTS: usize = 16;
const PUSH_LAYER: u64 = 64 << 10;
const PUSH_GRACE: Duration = Duration::from_secs(60);
const PUSH_MAX_IMAGES: usize = 1_000_000;
const MAX_GC_RUNS: usize = 100_000;
const PUSH_SEED: u64 = 0x6763_0000_0000_0000;

/// Runs `fut` with the operation bound.
async fn within<T>(what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => bail!("{what}: no answer within {} s", OP_TIMEOUT.as_secs()),
    }
}

/// (blobs, manifests) of the full data set and of its tenth, checked.
fn sizes(p: &Params) -> Result<[(usize, usize); 2]> {
    let (b, m) = (p.gc_blobs, p.gc_manifests);
    ensure!(
        b >= 50 && m >= 20,
        "--gc-blobs must be at least 50 and --gc-manifests at least 20 (a tenth is measured too)"
    );
    ensure!(
        b <= 10_000_000 && m <= 1_000_000,
        "--gc-blobs at most 10,000,000, --gc-manifests at most 1,000,000"
    );
    Ok([(b / 10, m / 10), (b, m)])
}

/// What one registry did with one data set.
pub struct BerthSize {
    pub fill: Filled,
    pub gc: Result<BerthGc, String>,
    /// The checks after the GC (not run when it failed).
    pub checked: Result<Checked, String>,
}

pub struct DistSize {
    pub fill: Filled,
    pub gc: Result<DistGc, String>,
}

/// Both registries at one size of the data set.
pub struct SizeResult {
    pub blobs: usize,
    pub manifests: usize,
    pub expected: Expected,
    pub berth: Result<BerthSize, String>,
    pub dist: Result<DistSize, String>,
}

async fn target(name: &'static str, s: &Server, password: Option<&str>) -> Result<Target> {
    Ok(Target {
        name,
        base: s.base.clone(),
        addr: parse_base(&s.base).await?.1,
        pid: Some(s.pid),
        client: new_client(),
        authorization: password.map(|p| basic_authorization("admin", p)),
    })
}

/// A berth of the workload's own: auth on, GC never scheduled, this grace.
async fn start_gc_berth(ctx: &Ctx, bin: &Path, password: &str, grace: Duration) -> Result<Server> {
    let grace = grace.as_secs().to_string();
    let env = [
        ("BERTH_GC__GRACE_SECONDS", grace.as_str()),
        ("BERTH_GC__INTERVAL_SECONDS", "0"),
    ];
    start_berth_env(bin, &ctx.launch.tmp_dir, BerthAuth::Admin(password), &env)
        .await
        .context("starting berth")
}

/// `r`, its error carrying the server's log tail.
async fn with_log<T>(s: &mut Server, r: Result<T>) -> Result<T, String> {
    r.map_err(|e| {
        let exited = s
            .exited()
            .map_or(String::new(), |st| format!(" (server exited: {st})"));
        format!("{e:#}{exited}; server log tail:\n{}", log_tail(&s.log))
    })
}

async fn berth_size(
    ctx: &Ctx,
    bin: &Path,
    password: &str,
    plan: &Arc<Plan>,
) -> Result<BerthSize, String> {
    let mut server = start_gc_berth(ctx, bin, password, Duration::ZERO)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let t = target("berth", &server, Some(password)).await;
    let filled = match t {
        Ok(t) => fill(&t, plan).await.map(|f| (t, f)),
        Err(e) => Err(e),
    };
    let r = match with_log(&mut server, filled).await {
        Ok((t, fill)) => {
            eprintln!("[berth] gc: data set built; GC");
            let gc = berth_gc(&t, server.pid, ctx.p.timeout).await;
            let gc = with_log(&mut server, gc).await;
            let checked = match &gc {
                Ok(_) => with_log(&mut server, check(&t, plan).await).await,
                Err(_) => Err("not checked: the GC failed".into()),
            };
            Ok(BerthSize { fill, gc, checked })
        }
        Err(e) => Err(e),
    };
    server.stop().await;
    r
}

async fn dist_size(ctx: &Ctx, plan: &Arc<Plan>) -> Result<DistSize, String> {
    let l = &ctx.launch;
    let mut server = start_distribution(&l.dist_bin, &l.tmp_dir, None)
        .await
        .map_err(|e| format!("starting distribution: {e:#}"))?;
    let filled = match target("distribution", &server, None).await {
        Ok(t) => fill(&t, plan).await,
        Err(e) => Err(e),
    };
    let r = match with_log(&mut server, filled).await {
        Ok(fill) => {
            eprintln!("[distribution] gc: data set built; stopping it for its offline GC");
            let p = plan.clone();
            let gc = match tokio::task::spawn_blocking(move || p.known_hex()).await {
                Ok(known) => dist_gc(&mut server, &l.dist_bin, &known, ctx.p.timeout).await,
                Err(e) => Err(e.into()),
            };
            Ok(DistSize {
                fill,
                gc: gc.map_err(|e| format!("{e:#}")),
            })
        }
        Err(e) => Err(e),
    };
    eprintln!("[distribution] gc: removing its data directory");
    tokio::task::spawn_blocking(move || drop(server)).await.ok();
    r
}

async fn one_size(ctx: &Ctx, bin: &Path, password: &str, plan: &Arc<Plan>) -> SizeResult {
    eprintln!(
        "== gc: {} blobs, {} manifests over {} repositories",
        plan.blobs, plan.manifests, plan.repos
    );
    let expected = plan.expected();
    let berth = berth_size(ctx, bin, password, plan).await;
    if let Err(e) = &berth {
        eprintln!("[berth] gc FAILED: {e}");
    }
    let dist = dist_size(ctx, plan).await;
    if let Err(e) = &dist {
        eprintln!("[distribution] gc FAILED: {e}");
    }
    SizeResult {
        blobs: plan.blobs,
        manifests: plan.manifests,
        expected,
        berth,
        dist,
    }
}

/// The push part's berth, filled with the full data set, and when.
struct Prepared {
    server: Server,
    t: Target,
    filled_at: Instant,
    grace: Duration,
}

/// The berth for the push-throughput part, filled with the full data set.
async fn push_berth(
    ctx: &Ctx,
    bin: &Path,
    password: &str,
    plan: &Arc<Plan>,
    grace: Duration,
) -> Result<Prepared, String> {
    eprintln!(
        "[berth] gc: a berth with a {} s grace period for the push part, filled first",
        grace.as_secs()
    );
    let mut server = start_gc_berth(ctx, bin, password, grace)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let r = async {
        let t = target("berth", &server, Some(password)).await?;
        fill(&t, plan).await?;
        Ok::<_, anyhow::Error>(t)
    }
    .await;
    match with_log(&mut server, r).await {
        Ok(t) => Ok(Prepared {
            server,
            t,
            filled_at: Instant::now(),
            grace,
        }),
        Err(e) => {
            server.stop().await;
            Err(e)
        }
    }
}

async fn push_part(ctx: &Ctx, prepared: Result<Prepared, String>) -> Result<PushOutcome, String> {
    let mut p = prepared?;
    let r = throughput(ctx, &p.t, p.filled_at, p.grace).await;
    let r = with_log(&mut p.server, r).await;
    p.server.stop().await;
    r
}

pub async fn run(ctx: &Ctx) -> Result<GcReport> {
    run_with(ctx, PUSH_GRACE).await
}

/// The workload, with this grace period on the push part's berth.
async fn run_with(ctx: &Ctx, grace: Duration) -> Result<GcReport> {
    let started = Instant::now();
    let [small, full] = sizes(&ctx.p)?;
    let bin =
        ctx.launch.berth_bin.as_ref().context(
            "the gc workload starts berths of its own: give --berth-bin, not --berth-url",
        )?;
    let password = random_hex(12)?;
    let plans = [
        Arc::new(Plan::new(small.0, small.1, REPOS)),
        Arc::new(Plan::new(full.0, full.1, REPOS)),
    ];
    let prepared = push_berth(ctx, bin, &password, &plans[1], grace).await;
    let mut sizes = Vec::new();
    for plan in &plans {
        sizes.push(one_size(ctx, bin, &password, plan).await);
    }
    let push = push_part(ctx, prepared).await;
    if let Err(e) = &push {
        eprintln!("[berth] gc push FAILED: {e}");
    }
    Ok(GcReport {
        sizes,
        push,
        sources: [
            format!("{} (auth.mode=token, started per part)", bin.display()),
            format!(
                "{} (no auth, started per size)",
                ctx.launch.dist_bin.display()
            ),
        ],
        secs: started.elapsed().as_secs_f64(),
    })
}
