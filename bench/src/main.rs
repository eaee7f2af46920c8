//! berth-bench: runs the same workloads against berth and against CNCF Distribution
//! (Debian's `docker-registry`) in one run, and prints both, their ratio, and the
//! machine's own ceilings (SHA-256 on one core, loopback TCP copies, a durable
//! write to disk).

mod auth;
mod ceilings;
mod data;
mod dispatch;
mod framework;
mod gc;
mod hammer;
mod http;
mod registry;
mod scale;
mod scaleout;
mod server;
mod side;
mod ui;
mod webui;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::Parser;

use crate::data::Pool;
use crate::framework::{machine, Ctx, Launch, Params, Workload};
use crate::side::Options;

#[derive(Parser)]
#[command(
    name = "berth-bench",
    about = "Benchmark berth against CNCF Distribution with the same workloads, side by side"
)]
struct Args {
    /// The berth binary to start (`BIN serve --listen ADDR --data-dir DIR`).
    #[arg(long, required_unless_present = "berth_url")]
    berth_bin: Option<PathBuf>,
    /// Measure an already-running berth (or anything speaking the API) at this URL
    /// instead of starting one.
    #[arg(long, conflicts_with = "berth_bin")]
    berth_url: Option<String>,
    /// PID of the server at --berth-url, for its RSS and CPU figures.
    #[arg(long, requires = "berth_url")]
    berth_pid: Option<u32>,
    /// The Distribution binary to start.
    #[arg(long, default_value = "/usr/bin/docker-registry")]
    dist_bin: PathBuf,
    /// Shrink sizes, counts and durations about 16x (for development).
    #[arg(long)]
    quick: bool,
    /// Run only these workloads (comma-separated): mono, chunked, pull, concurrent,
    /// manifest-put, manifest-get, blob-head, tags, catalog, ui, auth, scale, gc,
    /// scaleout. Peak RSS is always reported. `scale`, `gc` and `scaleout` are not in
    /// the default set and print tables of their own.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also run the `auth` workload (push and pull with and without HTTP Basic
    /// credentials, bcrypt cost 12, on registries of its own). Not in the default
    /// set: against Distribution it takes minutes.
    #[arg(long)]
    auth: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Timed runs of each big-blob workload (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Repeat every workload this many times per registry, alternating which
    /// registry goes first; each figure is the median over rounds.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// `scale`: the repositories at each step, comma-separated (default
    /// 1000,10000,100000; with --quick 100,1000).
    #[arg(long, value_delimiter = ',')]
    scale_steps: Vec<usize>,
    /// `scale`: timed samples of each measure at each step (default 30; with
    /// --quick 10).
    #[arg(long)]
    scale_samples: Option<usize>,
    /// `gc`: blobs of the full data set (default 100000; with --quick 6250).
    #[arg(long)]
    gc_blobs: Option<usize>,
    /// `gc`: manifests of the full data set, each a config and 4 layers (default
    /// 20000; with --quick 1250).
    #[arg(long)]
    gc_manifests: Option<usize>,
    /// Where the registries' temporary data directories go.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    tmp_dir: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // On Ctrl-C, dropping the run's future kills the registries and removes their data.
    let outcome = tokio::select! {
        r = run(args) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("berth-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn selected(only: &[String], auth: bool) -> Result<Vec<Workload>> {
    let mut out = if only.is_empty() {
        Workload::DEFAULT.to_vec()
    } else {
        named(only)?
    };
    if auth && !out.contains(&Workload::Auth) {
        out.push(Workload::Auth);
    }
    Ok(out)
}

fn named(only: &[String]) -> Result<Vec<Workload>> {
    let mut out = Vec::new();
    for name in only {
        if name == "rss" {
            continue;
        }
        match Workload::ALL.iter().find(|w| w.name() == name) {
            Some(w) => out.push(*w),
            None => bail!(
                "unknown workload {name:?}; known: {}, rss",
                Workload::ALL.map(|w| w.name()).join(", ")
            ),
        }
    }
    Ok(out)
}

fn params(args: &Args) -> Result<Params> {
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    anyhow::ensure!(args.rounds >= 1, "--rounds must be at least 1");
    let mut p = Params::new(args.quick, args.runs);
    if !args.scale_steps.is_empty() {
        p.scale_steps = args.scale_steps.clone();
    }
    if let Some(n) = args.scale_samples {
        p.scale_samples = n;
    }
    if let Some(n) = args.gc_blobs {
        p.gc_blobs = n;
    }
    if let Some(n) = args.gc_manifests {
        p.gc_manifests = n;
    }
    Ok(p)
}

/// Runs `scale`, `gc` or `scaleout`, which start registries of their own and print a
/// table of their own; whether every figure was measured.
async fn run_apart(
    w: Workload,
    ctx: &Ctx,
    json: &mut serde_json::Value,
    gap: bool,
) -> Result<bool> {
    eprintln!("== {}", w.name());
    let (table, ok, j) = match w {
        Workload::Scale => {
            let report = scale::run(ctx).await?;
            (report.table(), report.ok(), report.to_json())
        }
        Workload::ScaleOut => {
            let report = scaleout::run(ctx).await?;
            (report.table(), report.ok(), report.to_json())
        }
        _ => {
            let report = gc::run(ctx).await?;
            (report.table(), report.ok(), report.to_json())
        }
    };
    if gap {
        println!();
    }
    print!("{table}");
    json[w.name()] = j;
    Ok(ok)
}

async fn run(args: Args) -> Result<bool> {
    let workloads = selected(&args.only, args.auth)?;
    let p = params(&args)?;
    let (apart, workloads): (Vec<Workload>, Vec<Workload>) = workloads
        .into_iter()
        .partition(|w| matches!(w, Workload::Scale | Workload::Gc | Workload::ScaleOut));
    let started = Instant::now();
    let machine = machine();
    eprintln!("machine: {machine}");
    eprintln!("generating the data pool");
    let mut ctx = Ctx {
        pool: Pool::new(64 << 20),
        p,
        launch: Launch {
            berth_bin: args.berth_bin.clone(),
            dist_bin: args.dist_bin.clone(),
            tmp_dir: args.tmp_dir.clone(),
            pids: Vec::new(),
        },
    };
    let mut ok = true;
    let mut json = serde_json::json!({ "quick": args.quick, "machine": machine });
    if !workloads.is_empty() {
        let opts = Options {
            berth_url: args.berth_url.clone(),
            berth_pid: args.berth_pid,
            rounds: args.rounds,
            quick: args.quick,
        };
        let (all_ok, j) = side::side_by_side(&opts, &mut ctx, &workloads, &machine).await?;
        ok &= all_ok;
        json = j;
    }
    for (i, w) in apart.into_iter().enumerate() {
        let gap = i > 0 || !workloads.is_empty();
        ok &= run_apart(w, &ctx, &mut json, gap).await?;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(ok)
}
