//! The `scaleout` workload: berth on PostgreSQL + S3 (Garage), one replica
//! and three behind a load balancer, beside the embedded berth and
//! Distribution on the same Garage (its S3 driver), all in one run.
//!
//! It starts, on loopback: a PostgreSQL, a single-node Garage with one
//! bucket, three berth replicas on one database and the bucket's `berth/`
//! prefix, an embedded berth (filesystem + SQLite), a Distribution whose S3
//! driver keeps its files under the bucket's `/distribution` root, and one
//! nginx per column (round-robin, keep-alive to the upstreams): in front of
//! the embedded berth, of replica 1 alone, of the three replicas, and of
//! Distribution, so that every column pays the same load balancer.
//!
//! One column at a time (the others idle) it times the side-by-side
//! workloads' push, parallel pushes, pull, manifest GET and blob HEAD, then
//! the first page of `_catalog` and of a `tags/list` with N repositories in
//! the registry and again after 9N more were created: the two must not
//! depend on how many repositories the bucket holds.

mod engines;
mod lists;
mod report;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::Path;

use anyhow::{Context as _, Result};

use crate::framework::{Ctx, Launch, State};
use crate::hammer::{hammer_pids, HammerSpec};
use crate::http::{new_client, parse_base, Target};
use crate::registry::list_all;
use crate::server::{start_berth_env, start_distribution_on, BerthAuth, Server};
use crate::workloads;
use engines::{Garage, Nginx, Postgres, S3_BUCKET, S3_KEY, S3_REGION, S3_SECRET};
use report::Fig;
pub use report::ScaleOutReport;

/// The stacks measured, in column order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stack {
    Embedded,
    One,
    Three,
    Dist,
}

pub const STACKS: [Stack; 4] = [Stack::Embedded, Stack::One, Stack::Three, Stack::Dist];

/// How many times more repositories the second list measure sees.
pub const GROWTH: usize = 10;
/// berth replicas on the shared engines.
const REPLICAS: usize = 3;
/// The first page the list measures ask for.
const PAGE: usize = 100;

impl Stack {
    pub fn label(self) -> &'static str {
        match self {
            Stack::Embedded => "berth embedded",
            Stack::One => "berth S3 x1",
            Stack::Three => "berth S3 x3",
            Stack::Dist => "distribution S3",
        }
    }

    fn index(self) -> usize {
        STACKS.iter().position(|s| *s == self).unwrap_or(0)
    }
}

/// One column: the load balancer's address, the processes whose CPU counts
/// as the server's, and what the registry holds so far.
struct Column {
    stack: Stack,
    target: Target,
    pids: Vec<u32>,
    state: State,
    /// Why the list measures cannot run on it, once its setup failed.
    lists_failed: Option<String>,
}

/// Everything the workload started. Fields drop in order: load balancers
/// first, then the registries, then the engines they use.
struct Stacks {
    columns: Vec<Column>,
    _lbs: Vec<Nginx>,
    _servers: Vec<Server>,
    _garage: Garage,
    _pg: Postgres,
}

/// Runs the workload; its report (a failed figure is a cell, not an error).
pub async fn run(ctx: &Ctx) -> Result<ScaleOutReport> {
    let bin = ctx
        .launch
        .berth_bin
        .clone()
        .context("scaleout starts berth replicas of its own: give --berth-bin")?;
    let mut p = ctx.p.clone();
    p.big = p.scaleout_big;
    let ctx = Ctx {
        pool: ctx.pool.clone(),
        p,
        launch: Launch {
            berth_bin: Some(bin.clone()),
            dist_bin: ctx.launch.dist_bin.clone(),
            tmp_dir: ctx.launch.tmp_dir.clone(),
            pids: Vec::new(),
        },
    };
    let mut stacks = start_stacks(&ctx, &bin).await?;
    let mut report = ScaleOutReport::new(&ctx.p);
    for col in &stacks.columns {
        report.sources.push(format!(
            "{}: {} (processes {:?})",
            col.stack.label(),
            col.target.base,
            col.pids
        ));
    }
    hot_paths(&ctx, &mut stacks.columns, &mut report).await;
    lists::lists(&ctx, &mut stacks.columns, &mut report).await;
    Ok(report)
}

/// The environment of a berth replica on the shared engines.
fn replica_env(pg: &Postgres, garage: &Garage) -> Vec<(&'static str, String)> {
    vec![
        ("BERTH_METADATA__URL", pg.url.clone()),
        ("BERTH_STORAGE__KIND", "s3".into()),
        ("BERTH_STORAGE__S3__ENDPOINT", garage.endpoint.clone()),
        ("BERTH_STORAGE__S3__BUCKET", S3_BUCKET.into()),
        ("BERTH_STORAGE__S3__REGION", S3_REGION.into()),
        ("BERTH_STORAGE__S3__ACCESS_KEY_ID", S3_KEY.into()),
        ("BERTH_STORAGE__S3__SECRET_ACCESS_KEY", S3_SECRET.into()),
        ("BERTH_STORAGE__S3__ALLOW_HTTP", "true".into()),
        ("BERTH_STORAGE__S3__PATH_STYLE", "true".into()),
        ("BERTH_STORAGE__S3__PREFIX", "berth".into()),
    ]
}

/// Distribution's S3 driver on the same bucket, under its own root. Its
/// redirects of blob GETs to presigned URLs are off, so that its bytes take
/// the same path as berth's (berth's `storage.redirect_pulls` is off by
/// default).
fn distribution_storage(garage: &Garage) -> String {
    format!(
        "  s3:\n    accesskey: {S3_KEY}\n    secretkey: {S3_SECRET}\n    region: {S3_REGION}\n    \
         regionendpoint: {}\n    bucket: {S3_BUCKET}\n    secure: false\n    v4auth: true\n    \
         rootdirectory: /distribution\n  redirect:\n    disable: true\n",
        garage.endpoint
    )
}

fn host_port(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

async fn start_stacks(ctx: &Ctx, bin: &Path) -> Result<Stacks> {
    let tmp = &ctx.launch.tmp_dir;
    eprintln!("scaleout: starting PostgreSQL and Garage");
    let pg = Postgres::start(tmp).await.context("starting PostgreSQL")?;
    let garage = Garage::start(tmp).await.context("starting Garage")?;
    let engine_pids: Vec<u32> = pg.pid().into_iter().chain([garage.pid()]).collect();
    let servers = start_registries(ctx, bin, &pg, &garage).await?;
    let groups: [(Stack, Vec<usize>); 4] = [
        (Stack::Embedded, vec![REPLICAS]),
        (Stack::One, vec![0]),
        (Stack::Three, (0..REPLICAS).collect()),
        (Stack::Dist, vec![REPLICAS + 1]),
    ];
    let mut lbs = Vec::new();
    let mut columns = Vec::new();
    for (stack, members) in groups {
        let ups: Vec<String> = members
            .iter()
            .map(|i| host_port(&servers[*i].base))
            .collect();
        let lb = Nginx::start(tmp, &ups)
            .await
            .with_context(|| format!("starting nginx for {}", stack.label()))?;
        let mut pids: Vec<u32> = members.iter().map(|i| servers[*i].pid).collect();
        pids.push(lb.proc.pid);
        match stack {
            Stack::Embedded => {}
            Stack::Dist => pids.push(garage.pid()),
            Stack::One | Stack::Three => pids.extend(&engine_pids),
        }
        columns.push(column(stack, &lb.base, pids).await?);
        lbs.push(lb);
    }
    Ok(Stacks {
        columns,
        _lbs: lbs,
        _servers: servers,
        _garage: garage,
        _pg: pg,
    })
}

/// The berth replicas on the shared engines, then the embedded berth and
/// Distribution on S3, in that order.
async fn start_registries(
    ctx: &Ctx,
    bin: &Path,
    pg: &Postgres,
    garage: &Garage,
) -> Result<Vec<Server>> {
    let tmp = &ctx.launch.tmp_dir;
    let env = replica_env(pg, garage);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut servers = Vec::new();
    // One after the other: each replica runs the migrations (under a lock).
    for i in 0..REPLICAS {
        eprintln!("scaleout: starting berth replica {}", i + 1);
        let s = start_berth_env(bin, tmp, BerthAuth::Off, &env)
            .await
            .with_context(|| format!("starting berth replica {}", i + 1))?;
        servers.push(s);
    }
    eprintln!("scaleout: starting the embedded berth and Distribution on S3");
    let embedded = start_berth_env(bin, tmp, BerthAuth::Off, &[])
        .await
        .context("starting the embedded berth")?;
    servers.push(embedded);
    let storage = distribution_storage(garage);
    let dist = start_distribution_on(&ctx.launch.dist_bin, tmp, None, Some(&storage))
        .await
        .context("starting Distribution on S3")?;
    servers.push(dist);
    Ok(servers)
}

async fn column(stack: Stack, base: &str, pids: Vec<u32>) -> Result<Column> {
    let (base, addr) = parse_base(base).await?;
    Ok(Column {
        stack,
        target: Target {
            name: stack.label(),
            base,
            addr,
            pid: None,
            client: new_client(),
            authorization: None,
        },
        pids,
        // The two berth S3 columns share the bucket: distinct blobs.
        state: State {
            round: usize::from(stack == Stack::Three),
            ..State::default()
        },
        lists_failed: None,
    })
}

/// Runs `f` bounded by the workload timeout; its error as a cell's text.
async fn bounded<T>(ctx: &Ctx, f: impl Future<Output = Result<T>>) -> Result<T, String> {
    match tokio::time::timeout(ctx.p.timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!("timed out after {} s", ctx.p.timeout.as_secs())),
    }
}

/// Pushes, pulls, manifest GETs and blob HEADs, each on every column in turn.
async fn hot_paths(ctx: &Ctx, columns: &mut [Column], report: &mut ScaleOutReport) {
    for col in columns.iter_mut() {
        let who = col.stack;
        eprintln!("== scaleout: push on {}", who.label());
        let (t, st) = (&col.target, &mut col.state);
        let r = bounded(ctx, workloads::big_push(ctx, t, st, false)).await;
        report.set(Fig::Push, who, r.map(|v| v[0]));
    }
    for col in columns.iter_mut() {
        let who = col.stack;
        eprintln!("== scaleout: parallel pushes on {}", who.label());
        let r = bounded(ctx, workloads::concurrent(ctx, &col.target, &col.state)).await;
        report.set(Fig::Concurrent, who, r.map(|v| v[0]));
    }
    for col in columns.iter_mut() {
        let who = col.stack;
        eprintln!("== scaleout: pull on {}", who.label());
        let r = bounded(ctx, workloads::pull(ctx, &col.target, &mut col.state)).await;
        report.set(Fig::Pull, who, r.map(|v| v[0]));
    }
    for figs in [
        [Fig::GetRate, Fig::GetP99, Fig::GetCpu],
        [Fig::HeadRate, Fig::HeadP99, Fig::HeadCpu],
    ] {
        for col in columns.iter_mut() {
            let who = col.stack;
            eprintln!("== scaleout: {} on {}", figs[0].what(), who.label());
            let r = bounded(ctx, hammered(ctx, col, figs[0] == Fig::GetRate)).await;
            for (k, fig) in figs.iter().enumerate() {
                report.set(*fig, who, r.clone().map(|v| v[k]));
            }
        }
    }
}

/// The manifest GET (or blob HEAD) load over the column's load balancer:
/// req/s, p99 (ms), and the CPU per request (µs) of the column's server
/// processes (registry, nginx, and the engines it uses).
async fn hammered(ctx: &Ctx, col: &mut Column, manifest: bool) -> Result<Vec<f64>> {
    let p = &ctx.p;
    let spec: HammerSpec = if manifest {
        workloads::manifest_get_spec(&col.target, &mut col.state).await?
    } else {
        workloads::blob_head_spec(&col.target, &mut col.state).await?
    };
    let r = hammer_pids(&col.target, spec, &col.pids, p.conns, p.warmup, p.hammer).await?;
    let per_req = r
        .server_cpu
        .map_or(f64::NAN, |c| c * 1e6 / r.requests as f64);
    eprintln!(
        "[{}] {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, server CPU {per_req:.0} µs/req",
        col.target.name,
        r.rps(),
        r.quantile_ms(0.5),
        r.quantile_ms(0.99)
    );
    Ok(vec![r.rps(), r.quantile_ms(0.99), per_req])
}
