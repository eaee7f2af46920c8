//! The framework every workload shares: the run's parameters and context, what a
//! registry holds so far, the workloads' names, figure specs, and small helpers
//! (medians, size labels, concurrency). It imports only the low-level helpers.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::data::{BlobSpec, Pool};
use crate::registry::Image;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

pub struct FigureSpec {
    pub label: String,
    pub better: Better,
}

pub fn fig(label: String, better: Better) -> FigureSpec {
    FigureSpec { label, better }
}

/// Sizes, counts and durations; `--quick` shrinks them about 16x.
#[derive(Clone)]
pub struct Params {
    pub runs: usize,
    pub big: u64,
    pub patch_chunk: u64,
    pub conc_count: usize,
    pub conc_len: u64,
    pub manifest_puts: usize,
    pub manifest_conc: usize,
    pub conns: usize,
    pub warmup: Duration,
    pub hammer: Duration,
    pub tags: usize,
    pub repos: usize,
    pub list_iters: usize,
    pub list_time: Duration,
    /// Bound on one workload against one registry.
    pub timeout: Duration,
    /// `auth`: images pushed and pulled, one after the other.
    pub auth_images: usize,
    /// `auth`: small layers per image, and their size.
    pub auth_small_layers: usize,
    pub auth_small_len: u64,
    /// `auth`: size of each image's one big layer.
    pub auth_big_len: u64,
    /// `auth`: blobs of one image in flight at once when pushing and when pulling
    /// (docker's defaults: 5 uploads, 3 downloads).
    pub auth_push_conc: usize,
    pub auth_pull_conc: usize,
    /// `ui`: tags of the repository whose page is shown, and GETs timed per view.
    pub ui_tags: usize,
    pub ui_iters: usize,
    /// `scale`: repositories at each step (`--scale-steps`), and the timed
    /// samples of each measure per step (`--scale-samples`).
    pub scale_steps: Vec<usize>,
    pub scale_samples: usize,
    /// `gc`: blobs and manifests of the full data set (`--gc-blobs`,
    /// `--gc-manifests`), and how long each push-throughput phase lasts.
    pub gc_blobs: usize,
    pub gc_manifests: usize,
    pub gc_push: Duration,
    /// `scaleout`: the pushed and pulled blob's size, and the repositories
    /// present at the first catalog measure (the second has 10 times more).
    pub scaleout_big: u64,
    pub scaleout_repos: usize,
}

impl Params {
    pub fn new(quick: bool, runs: usize) -> Params {
        let mut p = if quick {
            Params::quick()
        } else {
            Params::full()
        };
        p.runs = runs;
        p
    }

    /// The `--quick` sizes, counts and durations.
    fn quick() -> Params {
        const MIB: u64 = 1 << 20;
        Params {
            runs: 1,
            big: 64 * MIB,
            patch_chunk: MIB,
            conc_count: 64,
            conc_len: MIB / 2,
            manifest_puts: 125,
            manifest_conc: 16,
            conns: 64,
            warmup: Duration::from_millis(500),
            hammer: Duration::from_secs(3),
            tags: 250,
            repos: 125,
            list_iters: 10,
            list_time: Duration::from_secs(1),
            timeout: Duration::from_secs(180),
            auth_images: 2,
            auth_small_layers: 6,
            auth_small_len: 64 << 10,
            auth_big_len: 2 * MIB,
            auth_push_conc: 5,
            auth_pull_conc: 3,
            ui_tags: 2000,
            ui_iters: 10,
            scale_steps: vec![100, 1000],
            scale_samples: 10,
            gc_blobs: 6250,
            gc_manifests: 1250,
            gc_push: Duration::from_secs(3),
            scaleout_big: 64 * MIB,
            scaleout_repos: 100,
        }
    }

    /// The full run's sizes, counts and durations.
    fn full() -> Params {
        const MIB: u64 = 1 << 20;
        Params {
            runs: 1,
            big: 1024 * MIB,
            patch_chunk: 16 * MIB,
            conc_count: 64,
            conc_len: 8 * MIB,
            manifest_puts: 1000,
            manifest_conc: 16,
            conns: 64,
            warmup: Duration::from_secs(2),
            hammer: Duration::from_secs(10),
            tags: 2000,
            repos: 1000,
            list_iters: 50,
            list_time: Duration::from_secs(5),
            timeout: Duration::from_secs(900),
            auth_images: 8,
            auth_small_layers: 25,
            auth_small_len: 64 << 10,
            auth_big_len: 8 * MIB,
            auth_push_conc: 5,
            auth_pull_conc: 3,
            ui_tags: 2000,
            ui_iters: 50,
            scale_steps: vec![1000, 10_000, 100_000],
            scale_samples: 30,
            gc_blobs: 100_000,
            gc_manifests: 20_000,
            gc_push: Duration::from_secs(10),
            scaleout_big: 256 * MIB,
            scaleout_repos: 1000,
        }
    }
}

pub struct Ctx {
    pub pool: Pool,
    pub p: Params,
    /// How to start more registries (the `auth` workload starts its own).
    pub launch: Launch,
}

/// What one registry holds so far, so workloads can run alone (`--only`).
#[derive(Default)]
pub struct State {
    /// Which repetition of the workload this is (`--rounds`); keeps blobs and tags distinct.
    pub round: usize,
    pub big: Option<BlobSpec>,
    pub image: Option<Image>,
    pub tags_ready: bool,
    pub catalog_ready: bool,
    /// (topic, value) pairs; values of one topic are shown together, one per round.
    pub notes: Vec<(String, String)>,
}

/// How to start registries besides the two the run started.
pub struct Launch {
    /// `None` when berth was given by `--berth-url`.
    pub berth_bin: Option<PathBuf>,
    pub dist_bin: PathBuf,
    pub tmp_dir: PathBuf,
    /// PIDs of the run's two registries (idle meanwhile; counted as ours, not as
    /// other load).
    pub pids: Vec<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Workload {
    Mono,
    Chunked,
    Pull,
    Concurrent,
    ManifestPut,
    ManifestGet,
    BlobHead,
    Tags,
    Catalog,
    Ui,
    Auth,
    Scale,
    Gc,
    ScaleOut,
}

pub fn size_label(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

pub fn mb_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Workload {
    /// What runs without `--only`: all but `auth` (which `--auth` adds),
    /// `scale` and `gc` (which only `--only scale` and `--only gc` run).
    pub const DEFAULT: [Workload; 10] = [
        Workload::Mono,
        Workload::Chunked,
        Workload::Pull,
        Workload::Concurrent,
        Workload::ManifestPut,
        Workload::ManifestGet,
        Workload::BlobHead,
        Workload::Tags,
        Workload::Catalog,
        Workload::Ui,
    ];

    pub const ALL: [Workload; 14] = [
        Workload::Mono,
        Workload::Chunked,
        Workload::Pull,
        Workload::Concurrent,
        Workload::ManifestPut,
        Workload::ManifestGet,
        Workload::BlobHead,
        Workload::Tags,
        Workload::Catalog,
        Workload::Ui,
        Workload::Auth,
        Workload::Scale,
        Workload::Gc,
        Workload::ScaleOut,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Mono => "mono",
            Workload::Chunked => "chunked",
            Workload::Pull => "pull",
            Workload::Concurrent => "concurrent",
            Workload::ManifestPut => "manifest-put",
            Workload::ManifestGet => "manifest-get",
            Workload::BlobHead => "blob-head",
            Workload::Tags => "tags",
            Workload::Catalog => "catalog",
            Workload::Ui => "ui",
            Workload::Auth => "auth",
            Workload::Scale => "scale",
            Workload::Gc => "gc",
            Workload::ScaleOut => "scaleout",
        }
    }

    /// Whether the workload starts registries of its own (rather than using the
    /// two the run started), and so measures the machine's other load itself.
    pub fn starts_servers(self) -> bool {
        matches!(
            self,
            Workload::Auth | Workload::Ui | Workload::Scale | Workload::Gc | Workload::ScaleOut
        )
    }
}

/// Flushes dirty pages so one registry's writes are not paid for by the next.
pub async fn sync_disks() {
    let _ = tokio::process::Command::new("sync").status().await;
}

pub async fn digest_of(pool: &Pool, spec: BlobSpec) -> Result<String> {
    let pool = pool.clone();
    Ok(tokio::task::spawn_blocking(move || pool.digest(spec)).await?)
}

/// Runs `f(0..n)` on `conc` tasks; stops at the first error and returns it.
pub async fn run_concurrent<F, Fut>(n: usize, conc: usize, f: F) -> Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let f = Arc::new(f);
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (next, failed, f) = (next.clone(), failed.clone(), f.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || failed.load(Ordering::Relaxed) {
                    return Ok(());
                }
                if let Err(e) = f(i).await {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }));
    }
    let mut first_err = None;
    for task in tasks {
        if let Err(e) = task.await? {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// The machine the run measures: cores, CPU model and memory.
pub fn machine() -> String {
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

/// A count with thousands separators: 100,000.
pub fn fmt_count(n: usize) -> String {
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

/// A figure's value as the tables show it: "n/a", or 2, 1 or 0 decimals.
pub fn fmt_value(v: f64) -> String {
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
