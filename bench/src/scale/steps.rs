//! The steps of one scale run: checking its parameters, starting its two
//! registries, the shared image, one step of growing and measuring, and the
//! table's rows.

use super::*;
use crate::framework::Params;

/// The run's steps, once checked: increasing, positive, below a million; and
/// at least one sample per measure.
pub(super) fn checked_steps(p: &Params) -> Result<Vec<usize>> {
    let steps = p.scale_steps.clone();
    ensure!(!steps.is_empty(), "--scale-steps: give at least one step");
    ensure!(
        steps.windows(2).all(|w| w[0] < w[1]) && steps[0] >= 1,
        "--scale-steps must be increasing and positive, got {steps:?}"
    );
    ensure!(
        *steps.last().expect("a step") < 1_000_000,
        "--scale-steps: at most 999,999 repositories (names are r000000...)"
    );
    ensure!(p.scale_samples >= 1, "--scale-samples must be at least 1");
    Ok(steps)
}

/// Starts the run's own berth (auth on, admin `password`) and Distribution (no
/// auth); the two sides and how each was started.
pub(super) async fn start_sides(
    ctx: &Ctx,
    bin: &Path,
    password: &str,
) -> Result<([Side; 2], [String; 2])> {
    let l = &ctx.launch;
    eprintln!("scale: starting berth (auth on) and distribution (no auth) of its own");
    let berth = start_berth_with(bin, &l.tmp_dir, BerthAuth::Admin(password)).await?;
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
    let sides = [
        side("berth", berth, Some(password)).await?,
        side("distribution", dist, None).await?,
    ];
    Ok((sides, sources))
}

/// The config and the 1 MiB layer every repository shares, and their image.
pub(super) async fn shared_image(ctx: &Ctx) -> Result<(Bytes, BlobSpec, Image)> {
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
    Ok((config, layer, img))
}

/// Step `k`: grows both sides to `n` repositories, then measures them
/// (Distribution first); notes the other load meanwhile. The step's values.
pub(super) async fn run_step(
    ctx: &Ctx,
    sides: &mut [Side; 2],
    sh: &mut Shared,
    k: usize,
    n: usize,
) -> [Vals; 2] {
    let steps = sh.plan.steps.len();
    eprintln!(
        "== scale step {}/{}: {} repositories",
        k + 1,
        steps,
        fmt_count(n)
    );
    let mut pids = ctx.launch.pids.clone();
    pids.extend(sides.iter().map(|s| s.server.pid));
    let load = ForeignLoad::start(pids);
    let step_start = Instant::now();
    let mut step_vals = [Vals::new(), Vals::new()];
    for (s, v) in sides.iter_mut().zip(step_vals.iter_mut()) {
        if s.broken.is_none() {
            let r = grow(s, sh, n, v).await;
            fail_side(s, &format!("growing to {n} repositories"), r).await;
        }
    }
    // Distribution first: berth's slowest requests (at scale the UI
    // overview) come last and cannot load the machine under others.
    for (s, v) in sides.iter_mut().zip(step_vals.iter_mut()).rev() {
        measure_side(s, sh, k, n, v).await;
    }
    if let Some(cores) = load.cores() {
        sh.notes.push(format!(
            "step {} ({:.0} s): other processes and kernel threads kept {cores:.2} cores busy",
            fmt_count(n),
            step_start.elapsed().as_secs_f64()
        ));
    }
    step_vals
}

/// Measures one side at step `k` (unless broken), then its peak RSS.
async fn measure_side(s: &mut Side, sh: &mut Shared, k: usize, n: usize, v: &mut Vals) {
    if s.broken.is_none() {
        sync_disks().await;
        let t0 = Instant::now();
        measure(s, sh, k, n, v).await;
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

/// The table's rows: a row per measure and side (berth's alone where
/// Distribution has no such thing), a cell per step.
pub(super) fn rows_of(sides: &[Side; 2], vals: &[Vec<Vals>; 2]) -> Vec<ScaleRow> {
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
    rows
}
