//! berth-bench: runs the same workloads against berth and against CNCF Distribution
//! (Debian's `docker-registry`) in one run, and prints both, their ratio, and the
//! machine's own ceilings (SHA-256 on one core, loopback TCP copies, a durable
//! write to disk).

mod auth;
mod ceilings;
mod data;
mod hammer;
mod http;
mod registry;
mod scale;
mod server;
mod ui;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::Parser;

use crate::auth::Launch;
use crate::ceilings::Ceilings;
use crate::data::Pool;
use crate::http::{new_client, parse_base, Target};
use crate::server::{
    log_tail, proc_status_kib, start_berth, start_distribution, ForeignLoad, Server,
};
use crate::workloads::{median, size_label, Better, Ctx, Params, State, Workload};

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
    /// manifest-put, manifest-get, blob-head, tags, catalog, ui, auth, scale. Peak RSS is
    /// always reported. `scale` is not in the default set and prints a table of its own.
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
    /// Where the registries' temporary data directories go.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    tmp_dir: PathBuf,
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

type Cell = Result<f64, String>;

struct Row {
    label: String,
    better: Better,
    cells: [Cell; 2],
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

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = proc_meminfo_kib("MemTotal").map_or(0.0, |k| k as f64 / (1 << 20) as f64);
    format!("{cores} cores ({model}), {mem_gib:.1} GiB RAM")
}

fn proc_meminfo_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

async fn start(args: &Args) -> Result<[Registry; 2]> {
    let berth = match (&args.berth_bin, &args.berth_url) {
        (Some(bin), _) => {
            eprintln!("starting berth: {}", bin.display());
            let s = start_berth(bin, &args.tmp_dir, None)
                .await
                .context("starting berth")?;
            registry_for("berth", Some(s), &bin.display().to_string(), None).await?
        }
        (None, Some(url)) => registry_for("berth", None, url, args.berth_pid).await?,
        (None, None) => bail!("give --berth-bin or --berth-url"),
    };
    eprintln!("starting distribution: {}", args.dist_bin.display());
    let s = start_distribution(&args.dist_bin, &args.tmp_dir, None)
        .await
        .context("starting distribution")?;
    let dist = registry_for(
        "distribution",
        Some(s),
        &args.dist_bin.display().to_string(),
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

async fn run(args: Args) -> Result<bool> {
    let workloads = selected(&args.only, args.auth)?;
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    anyhow::ensure!(args.rounds >= 1, "--rounds must be at least 1");
    let mut p = Params::new(args.quick, args.runs);
    if !args.scale_steps.is_empty() {
        p.scale_steps = args.scale_steps.clone();
    }
    if let Some(n) = args.scale_samples {
        p.scale_samples = n;
    }
    // `scale` grows registries of its own and prints a table of its own.
    let (scale, workloads): (Vec<Workload>, Vec<Workload>) =
        workloads.into_iter().partition(|w| *w == Workload::Scale);
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
        let (all_ok, j) = side_by_side(&args, &mut ctx, &workloads, &machine).await?;
        ok &= all_ok;
        json = j;
    }
    if !scale.is_empty() {
        eprintln!("== scale");
        let report = scale::run(&ctx).await?;
        if !workloads.is_empty() {
            println!();
        }
        print!("{}", report.table());
        ok &= report.ok();
        json["scale"] = report.to_json();
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(ok)
}

/// The side-by-side workloads against the run's two registries: prints their
/// table; returns whether every figure was measured, and the JSON report.
async fn side_by_side(
    args: &Args,
    ctx: &mut Ctx,
    workloads: &[Workload],
    machine: &str,
) -> Result<(bool, serde_json::Value)> {
    let p = &ctx.p;
    eprintln!(
        "ceilings: SHA-256, loopback copies and a durable write of {}",
        size_label(p.big)
    );
    let ceilings = ceilings::measure(p.big, &args.tmp_dir).await?;
    eprintln!(
        "ceilings: SHA-256 one core {:.1} MB/s, loopback copy of a file {:.1} MB/s (of a cached buffer {:.1}), durable write {:.1} MB/s",
        ceilings.sha256, ceilings.loopback_file, ceilings.loopback_cached, ceilings.durable_write
    );

    let mut regs = start(args).await?;
    for r in &regs {
        eprintln!("{}: {}", r.target.name, r.source);
    }

    let pids: Vec<u32> = regs.iter().filter_map(|r| r.target.pid).collect();
    ctx.launch.pids = pids.clone();
    let ctx = &*ctx;
    let mut busy: Vec<(String, (String, String))> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    for w in workloads {
        let specs = w.figures(&ctx.p);
        let mut values: [Vec<Vec<f64>>; 2] = Default::default();
        let mut failed: [Option<String>; 2] = Default::default();
        for round in 0..args.rounds {
            // Alternate who goes first, so a slow drift in the machine's load
            // does not always favour the same registry.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for i in order {
                if failed[i].is_some() {
                    continue;
                }
                let reg = &mut regs[i];
                reg.state.round = round;
                match run_one(*w, ctx, reg, &pids, &mut busy).await {
                    Ok(v) => values[i].push(v),
                    Err(e) => {
                        eprintln!("[{}] {} FAILED: {e}", reg.target.name, w.name());
                        failed[i] = Some(e);
                    }
                }
            }
        }
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
    }

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
    rows.push(Row {
        label: "peak RSS over the run (MiB)".into(),
        better: Better::Lower,
        cells: [rss[0].clone(), rss[1].clone()],
    });

    let mut raw: Vec<(String, (String, String))> = regs
        .iter()
        .flat_map(|r| {
            r.state
                .notes
                .iter()
                .map(|n| (r.target.name.to_string(), n.clone()))
        })
        .collect();
    raw.extend(busy);
    let notes = group_notes(raw);
    let sources = [regs[0].source.clone(), regs[1].source.clone()];
    for r in &mut regs {
        if let Some(s) = r.server.take() {
            s.stop().await;
        }
    }

    print_table(&rows, &ceilings, machine, &sources, &notes);
    let j = to_json(&rows, &ceilings, machine, &sources, &notes, args.quick);
    Ok((rows.iter().all(|r| r.cells.iter().all(Result::is_ok)), j))
}

/// Runs one workload once against one registry, bounded in time, and notes when
/// other processes on the machine were busy meanwhile.
async fn run_one(
    w: Workload,
    ctx: &Ctx,
    reg: &mut Registry,
    pids: &[u32],
    busy: &mut Vec<(String, (String, String))>,
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
    let result = tokio::time::timeout(ctx.p.timeout, w.run(ctx, &reg.target, &mut reg.state)).await;
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
    let result = match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!("timed out after {} s", ctx.p.timeout.as_secs())),
    };
    result.map_err(|e| reg.dead.clone().unwrap_or(e))
}

/// One remark, with its values for berth and for distribution (one per round).
struct Note {
    topic: String,
    values: [Vec<String>; 2],
}

fn group_notes(raw: Vec<(String, (String, String))>) -> Vec<Note> {
    let mut out: Vec<Note> = Vec::new();
    for (who, (topic, value)) in raw {
        let i = usize::from(who != "berth");
        let pos = match out.iter().position(|n| n.topic == topic) {
            Some(p) => p,
            None => {
                out.push(Note {
                    topic,
                    values: Default::default(),
                });
                out.len() - 1
            }
        };
        out[pos].values[i].push(value);
    }
    out
}

fn ratio(row: &Row) -> Option<f64> {
    let (Ok(b), Ok(d)) = (&row.cells[0], &row.cells[1]) else {
        return None;
    };
    let r = match row.better {
        Better::Higher => b / d,
        Better::Lower => d / b,
    };
    r.is_finite().then_some(r)
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_cell(c: &Cell) -> String {
    match c {
        Ok(v) => fmt_value(*v),
        Err(_) => "FAILED".into(),
    }
}

fn print_table(
    rows: &[Row],
    ceilings: &Ceilings,
    machine: &str,
    sources: &[String; 2],
    notes: &[Note],
) {
    let width = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    println!(
        "{:<width$}  {:>12}  {:>12}  {:>7}",
        "figure", "berth", "distribution", "ratio"
    );
    for r in rows {
        let ratio = ratio(r).map_or("-".into(), |x| format!("{x:.2}x"));
        println!(
            "{:<width$}  {:>12}  {:>12}  {:>7}",
            r.label,
            fmt_cell(&r.cells[0]),
            fmt_cell(&r.cells[1]),
            ratio
        );
    }
    println!();
    println!(
        "ratio: how many times better berth does; berth/distribution for rates (req/s, MB/s),"
    );
    println!("distribution/berth for times, latencies, CPU and RSS. >1 means berth is better.");
    println!("MB = 10^6 bytes. Big-blob figures are the median of the timed runs.");
    println!();
    println!("machine: {machine}");
    println!(
        "ceiling: SHA-256 (sha2), one core: {:.1} MB/s",
        ceilings.sha256
    );
    println!(
        "ceiling: loopback TCP copy of a file of the big blob's size from the page cache (read 1 MiB, write; 127.0.0.1): {:.1} MB/s",
        ceilings.loopback_file
    );
    println!(
        "ceiling: loopback TCP copy resending one cache-resident 1 MiB buffer (no memory reads): {:.1} MB/s",
        ceilings.loopback_cached
    );
    println!(
        "ceiling: durable write of the big blob's size (1 MiB writes, then fsync) in the registries' directory: {:.1} MB/s",
        ceilings.durable_write
    );
    for (prefix, what, ceiling) in [
        ("pull ", "loopback copy of a file", ceilings.loopback_file),
        ("monolithic push ", "durable write", ceilings.durable_write),
    ] {
        if let Some(r) = rows.iter().find(|r| r.label.starts_with(prefix)) {
            let share = |c: &Cell| match c {
                Ok(v) if v.is_finite() => format!("{:.0}%", 100.0 * v / ceiling),
                _ => "-".into(),
            };
            println!(
                "share of the {what}: {}: berth {}, distribution {}",
                r.label.trim_end_matches(" (MB/s)"),
                share(&r.cells[0]),
                share(&r.cells[1])
            );
        }
    }
    println!("berth: {}", sources[0]);
    println!("distribution: {}", sources[1]);
    for n in notes {
        let side = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(", ")
            }
        };
        println!(
            "note: {}: berth {}; distribution {}",
            n.topic,
            side(&n.values[0]),
            side(&n.values[1])
        );
    }
    // A failed workload fails all its figures with one message: print it once.
    let mut shown: Vec<&str> = Vec::new();
    for r in rows {
        for (who, c) in ["berth", "distribution"].iter().zip(&r.cells) {
            if let Err(e) = c {
                if !shown.contains(&e.as_str()) {
                    shown.push(e);
                    println!("FAILED ({who}) {}: {e}", r.label);
                }
            }
        }
    }
}

fn to_json(
    rows: &[Row],
    ceilings: &Ceilings,
    machine: &str,
    sources: &[String; 2],
    notes: &[Note],
    quick: bool,
) -> serde_json::Value {
    let cell = |c: &Cell| match c {
        Ok(v) if v.is_finite() => serde_json::json!(v),
        _ => serde_json::Value::Null,
    };
    let err = |c: &Cell| c.as_ref().err().cloned();
    serde_json::json!({
        "quick": quick,
        "machine": machine,
        "ceilings": {
            "sha256_one_core_mb_s": ceilings.sha256,
            "loopback_file_copy_mb_s": ceilings.loopback_file,
            "loopback_cached_buffer_copy_mb_s": ceilings.loopback_cached,
            "durable_write_mb_s": ceilings.durable_write,
        },
        "registries": { "berth": sources[0], "distribution": sources[1] },
        "ratio_means": "how many times better berth does: berth/distribution when higher is better, distribution/berth when lower is better",
        "figures": rows.iter().map(|r| serde_json::json!({
            "figure": r.label,
            "better": r.better,
            "berth": cell(&r.cells[0]),
            "distribution": cell(&r.cells[1]),
            "ratio": ratio(r),
            "berth_error": err(&r.cells[0]),
            "distribution_error": err(&r.cells[1]),
        })).collect::<Vec<_>>(),
        "notes": notes.iter().map(|n| serde_json::json!({
            "topic": n.topic,
            "berth": n.values[0],
            "distribution": n.values[1],
        })).collect::<Vec<_>>(),
    })
}
