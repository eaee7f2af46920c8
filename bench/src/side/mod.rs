//! The side-by-side run: starts berth and Distribution, runs each workload
//! against both (alternating which goes first), and prints their table.

mod report;

use std::path::Path;

use anyhow::{bail, Context as _, Result};

use crate::ceilings::{self, Ceilings};
use crate::dispatch;
use crate::framework::{median, size_label, Better, Ctx, Launch, State, Workload};
use crate::http::{new_client, parse_base, Target};
use crate::server::{
    log_tail, proc_status_kib, start_berth, start_distribution, ForeignLoad, Server,
};
use report::{group_notes, print_table, to_json, Cell, Row};

/// What the side-by-side run takes from the command line besides the context.
pub struct Options {
    /// Measure an already-running berth at this URL instead of starting one.
    pub berth_url: Option<String>,
    /// PID of the server at `berth_url`, for its RSS and CPU figures.
    pub berth_pid: Option<u32>,
    pub rounds: usize,
    pub quick: bool,
}

/// One registry under test.
struct Registry {
    target: Target,
    server: Option<Server>,
    state: State,
    source: String,
    /// Set once the process has died: every later figure fails with this.
    dead: Option<String>,
}

/// (registry name, (topic, value)): a remark on one run of one workload.
type RawNote = (String, (String, String));

async fn start(launch: &Launch, opts: &Options) -> Result<[Registry; 2]> {
    let berth = match (&launch.berth_bin, &opts.berth_url) {
        (Some(bin), _) => {
            eprintln!("starting berth: {}", bin.display());
            let s = start_berth(bin, &launch.tmp_dir, None)
                .await
                .context("starting berth")?;
            registry_for("berth", Some(s), &bin.display().to_string(), None).await?
        }
        (None, Some(url)) => registry_for("berth", None, url, opts.berth_pid).await?,
        (None, None) => bail!("give --berth-bin or --berth-url"),
    };
    eprintln!("starting distribution: {}", launch.dist_bin.display());
    let s = start_distribution(&launch.dist_bin, &launch.tmp_dir, None)
        .await
        .context("starting distribution")?;
    let dist = registry_for(
        "distribution",
        Some(s),
        &launch.dist_bin.display().to_string(),
        None,
    )
    .await?;
    Ok([berth, dist])
}

async fn registry_for(
    name: &'static str,
    server: Option<Server>,
    what: &str,
    pid: Option<u32>,
) -> Result<Registry> {
    let (base, source, pid) = match &server {
        Some(s) => (
            s.base.clone(),
            format!("{what} (started at {}, pid {})", s.base, s.pid),
            Some(s.pid),
        ),
        None => (what.to_string(), format!("already running at {what}"), pid),
    };
    let (base, addr) = parse_base(&base).await?;
    Ok(Registry {
        target: Target {
            name,
            base,
            addr,
            pid,
            client: new_client(),
            authorization: None,
        },
        server,
        state: State::default(),
        source,
        dead: None,
    })
}

/// The side-by-side workloads against the run's two registries: prints their
/// table; returns whether every figure was measured, and the JSON report.
pub async fn side_by_side(
    opts: &Options,
    ctx: &mut Ctx,
    workloads: &[Workload],
    machine: &str,
) -> Result<(bool, serde_json::Value)> {
    let ceilings = measure_ceilings(ctx.p.big, &ctx.launch.tmp_dir).await?;

    let mut regs = start(&ctx.launch, opts).await?;
    for r in &regs {
        eprintln!("{}: {}", r.target.name, r.source);
    }

    let pids: Vec<u32> = regs.iter().filter_map(|r| r.target.pid).collect();
    ctx.launch.pids = pids.clone();
    let ctx = &*ctx;
    let mut busy: Vec<RawNote> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    for w in workloads {
        rows.extend(run_rounds(*w, ctx, &mut regs, opts.rounds, &pids, &mut busy).await);
    }
    rows.push(peak_rss(&regs));

    let notes = group_notes(notes_of(&regs, busy));
    let sources = [regs[0].source.clone(), regs[1].source.clone()];
    for r in &mut regs {
        if let Some(s) = r.server.take() {
            s.stop().await;
        }
    }

    print_table(&rows, &ceilings, machine, &sources, &notes);
    let j = to_json(&rows, &ceilings, machine, &sources, &notes, opts.quick);
    Ok((rows.iter().all(|r| r.cells.iter().all(Result::is_ok)), j))
}

/// The machine's ceilings for a blob of `big` bytes, reported as they are measured.
async fn measure_ceilings(big: u64, tmp_dir: &Path) -> Result<Ceilings> {
    eprintln!(
        "ceilings: SHA-256, loopback copies and a durable write of {}",
        size_label(big)
    );
    let ceilings = ceilings::measure(big, tmp_dir).await?;
    eprintln!(
        "ceilings: SHA-256 one core {:.1} MB/s, loopback copy of a file {:.1} MB/s (of a cached buffer {:.1}), durable write {:.1} MB/s",
        ceilings.sha256, ceilings.loopback_file, ceilings.loopback_cached, ceilings.durable_write
    );
    Ok(ceilings)
}

/// Runs `w` `rounds` times against both registries, alternating which goes
/// first; a row per figure, each the median over rounds (or the failure).
async fn run_rounds(
    w: Workload,
    ctx: &Ctx,
    regs: &mut [Registry; 2],
    rounds: usize,
    pids: &[u32],
    busy: &mut Vec<RawNote>,
) -> Vec<Row> {
    let specs = dispatch::figures(w, &ctx.p);
    let mut values: [Vec<Vec<f64>>; 2] = Default::default();
    let mut failed: [Option<String>; 2] = Default::default();
    for round in 0..rounds {
        // Alternate who goes first, so a slow drift in the machine's load
        // does not always favour the same registry.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            if failed[i].is_some() {
                continue;
            }
            let reg = &mut regs[i];
            reg.state.round = round;
            match run_one(w, ctx, reg, pids, busy).await {
                Ok(v) => values[i].push(v),
                Err(e) => {
                    eprintln!("[{}] {} FAILED: {e}", reg.target.name, w.name());
                    failed[i] = Some(e);
                }
            }
        }
    }
    let mut rows = Vec::new();
    for (k, spec) in specs.into_iter().enumerate() {
        let cell = |i: usize| -> Cell {
            match &failed[i] {
                Some(e) => Err(e.clone()),
                None => Ok(median(values[i].iter().map(|v| v[k]).collect())),
            }
        };
        rows.push(Row {
            label: spec.label,
            better: spec.better,
            cells: [cell(0), cell(1)],
        });
    }
    rows
}

/// Each registry's peak RSS over the run, in MiB.
fn peak_rss(regs: &[Registry; 2]) -> Row {
    let rss: Vec<Cell> = regs
        .iter()
        .map(|r| match (&r.dead, r.target.pid) {
            (Some(why), _) => Err(why.clone()),
            (None, Some(pid)) => proc_status_kib(pid, "VmHWM")
                .map(|k| k as f64 / 1024.0)
                .ok_or_else(|| format!("cannot read /proc/{pid}/status")),
            (None, None) => Ok(f64::NAN),
        })
        .collect();
    Row {
        label: "peak RSS over the run (MiB)".into(),
        better: Better::Lower,
        cells: [rss[0].clone(), rss[1].clone()],
    }
}

/// The registries' own notes, then the other load noted meanwhile.
fn notes_of(regs: &[Registry; 2], busy: Vec<RawNote>) -> Vec<RawNote> {
    let mut raw: Vec<RawNote> = regs
        .iter()
        .flat_map(|r| {
            r.state
                .notes
                .iter()
                .map(|n| (r.target.name.to_string(), n.clone()))
        })
        .collect();
    raw.extend(busy);
    raw
}

/// Runs one workload once against one registry, bounded in time, and notes when
/// other processes on the machine were busy meanwhile.
async fn run_one(
    w: Workload,
    ctx: &Ctx,
    reg: &mut Registry,
    pids: &[u32],
    busy: &mut Vec<RawNote>,
) -> Result<Vec<f64>, String> {
    if let Some(why) = &reg.dead {
        return Err(why.clone());
    }
    eprintln!(
        "== {} on {} (round {})",
        w.name(),
        reg.target.name,
        reg.state.round + 1
    );
    // A workload starting registries of its own notes the other load itself.
    let load = (!w.starts_servers()).then(|| ForeignLoad::start(pids.to_vec()));
    let result = tokio::time::timeout(
        ctx.p.timeout,
        dispatch::run(w, ctx, &reg.target, &mut reg.state),
    )
    .await;
    if let Some(cores) = load.and_then(|l| l.cores()) {
        if cores >= 0.15 {
            eprintln!(
                "[{}] warning: other processes kept {cores:.2} cores busy during {}",
                reg.target.name,
                w.name()
            );
        }
        let topic = format!(
            "{}: CPU used meanwhile by other processes and kernel threads, in cores",
            w.name()
        );
        busy.push((reg.target.name.to_string(), (topic, format!("{cores:.2}"))));
    }
    report_rss_and_exit(reg);
    let result = match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!("timed out after {} s", ctx.p.timeout.as_secs())),
    };
    result.map_err(|e| reg.dead.clone().unwrap_or(e))
}

/// Logs the registry's RSS, and marks it dead if its process has exited.
fn report_rss_and_exit(reg: &mut Registry) {
    if let Some(pid) = reg.target.pid {
        let mib =
            |f| proc_status_kib(pid, f).map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0));
        eprintln!(
            "[{}] RSS now {} MiB, peak so far {} MiB",
            reg.target.name,
            mib("VmRSS"),
            mib("VmHWM")
        );
    }
    if let Some(s) = reg.server.as_mut() {
        if let Some(status) = s.exited() {
            reg.dead = Some(format!(
                "server exited ({status}); log tail:\n{}",
                log_tail(&s.log)
            ));
        }
    }
}
