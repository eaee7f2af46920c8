//! Running a GC: berth's through its API (`POST /api/v1/gc`, then polling
//! the run), Distribution's offline (`docker-registry garbage-collect` on
//! its stopped data directory).

use super::*;

/// One finished GC run of berth's, as `GET /api/v1/gc/runs/N` tells it.
#[derive(Clone, Debug)]
pub struct RunStats {
    pub id: u64,
    pub state: String,
    pub duration_ms: Option<f64>,
    pub blobs_swept: Option<u64>,
    pub bytes_freed: Option<u64>,
    pub links_swept: Option<u64>,
    pub manifests_marked: Option<u64>,
    pub blobs_marked: Option<u64>,
    /// The run's whole JSON, for error messages.
    pub raw: String,
}

impl RunStats {
    fn of(v: &serde_json::Value) -> Result<RunStats> {
        let num = |k: &str| v.get(k).and_then(|x| x.as_u64());
        Ok(RunStats {
            id: num("id").with_context(|| format!("a GC run without an integer id: {v}"))?,
            state: v
                .get("state")
                .and_then(|s| s.as_str())
                .with_context(|| format!("a GC run without a state: {v}"))?
                .to_string(),
            duration_ms: v.get("duration_ms").and_then(|x| x.as_f64()),
            blobs_swept: num("blobs_swept"),
            bytes_freed: num("bytes_freed"),
            links_swept: num("links_swept"),
            manifests_marked: num("manifests_marked"),
            blobs_marked: num("blobs_marked"),
            raw: v.to_string(),
        })
    }

    pub fn finished(&self) -> bool {
        self.state == "succeeded" || self.state == "failed"
    }
}

async fn json_of(
    r: http::Response<hyper::body::Incoming>,
    what: &str,
) -> Result<serde_json::Value> {
    let body = read_body(r).await?;
    serde_json::from_slice(&body).with_context(|| {
        let n = body.len().min(300);
        format!("{what}: not JSON: {}", String::from_utf8_lossy(&body[..n]))
    })
}

/// `POST /api/v1/gc`: 202 and a run in state `requested`; its id.
pub async fn request_gc(t: &Target) -> Result<u64> {
    let r = t
        .request(
            Method::POST,
            "/api/v1/gc",
            &[("content-length", "0")],
            ReqBody::Empty,
            &[202],
        )
        .await?;
    let run = RunStats::of(&json_of(r, "POST /api/v1/gc").await?)?;
    ensure!(
        run.state == "requested",
        "POST /api/v1/gc: state {:?}, expected \"requested\": {}",
        run.state,
        run.raw
    );
    Ok(run.id)
}

pub async fn get_run(t: &Target, id: u64) -> Result<RunStats> {
    let url = format!("/api/v1/gc/runs/{id}");
    let r = t
        .request(Method::GET, &url, &[], ReqBody::Empty, &[200])
        .await?;
    RunStats::of(&json_of(r, &format!("GET {url}")).await?)
}

/// Polls run `id` every `POLL` until it has finished, at most until
/// `deadline`; calls `tick` at every poll.
pub async fn await_run(
    t: &Target,
    id: u64,
    deadline: Instant,
    mut tick: impl FnMut(),
) -> Result<RunStats> {
    loop {
        let run = within("GET a GC run", get_run(t, id)).await?;
        tick();
        if run.finished() {
            return Ok(run);
        }
        ensure!(
            Instant::now() < deadline,
            "GC run {id} still {:?} at the deadline: {}",
            run.state,
            run.raw
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A timed GC of berth's: wall time from the request to the run seen
/// finished, the run, and the server's RSS before it and at its peak.
pub struct BerthGc {
    pub wall_s: f64,
    pub run: RunStats,
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    /// Whether the kernel's high-water mark could be reset before the run
    /// (else the peak is the highest of the RSS samples taken while polling).
    pub hwm_reset: bool,
}

/// Resets `VmHWM` to the current RSS (`/proc/PID/clear_refs` = 5).
fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

pub async fn berth_gc(t: &Target, pid: u32, timeout: Duration) -> Result<BerthGc> {
    sync_disks().await;
    let hwm_reset = reset_hwm(pid);
    let rss = || proc_status_kib(pid, "VmRSS");
    let before = rss().context("cannot read the server's VmRSS")?;
    let mut peak = before;
    let t0 = Instant::now();
    let id = within("POST /api/v1/gc", request_gc(t)).await?;
    let run = await_run(t, id, t0 + timeout, || peak = peak.max(rss().unwrap_or(0))).await?;
    let wall_s = t0.elapsed().as_secs_f64();
    if hwm_reset {
        peak = peak.max(proc_status_kib(pid, "VmHWM").unwrap_or(0));
    }
    ensure!(run.state == "succeeded", "GC run {id} failed: {}", run.raw);
    Ok(BerthGc {
        wall_s,
        run,
        rss_before_kib: before,
        rss_peak_kib: peak,
        hwm_reset,
    })
}

/// The blob files of a Distribution data directory: of the data set's
/// blobs, of its manifests, and others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlobFiles {
    pub blobs: usize,
    pub manifests: usize,
    pub other: usize,
}

/// Counts `blobs/sha256/xx/<hex>/data` under Distribution's `data` dir.
pub fn blob_files(data: &Path, known: &(BTreeSet<String>, BTreeSet<String>)) -> Result<BlobFiles> {
    let root = data.join("docker/registry/v2/blobs/sha256");
    let mut n = BlobFiles::default();
    for prefix in std::fs::read_dir(&root).with_context(|| format!("reading {}", root.display()))? {
        for blob in std::fs::read_dir(prefix?.path())? {
            let blob = blob?;
            if !blob.path().join("data").is_file() {
                continue;
            }
            let hex = blob.file_name().to_string_lossy().to_string();
            if known.0.contains(&hex) {
                n.blobs += 1;
            } else if known.1.contains(&hex) {
                n.manifests += 1;
            } else {
                n.other += 1;
            }
        }
    }
    Ok(n)
}

/// Distribution's offline GC: wall time, blob files before and after, what
/// it said it would delete, and the tool's peak RSS.
pub struct DistGc {
    pub wall_s: f64,
    pub before: BlobFiles,
    pub after: BlobFiles,
    /// Its summary line: "N blobs marked, M blobs and K manifests eligible
    /// for deletion".
    pub summary: String,
    pub peak_rss_kib: u64,
}

/// Stops the registry (GC must not run beside it), counts its blob files,
/// times `docker-registry garbage-collect CONFIG` (bounded by `timeout`),
/// and counts again.
pub async fn dist_gc(
    server: &mut Server,
    bin: &Path,
    known: &(BTreeSet<String>, BTreeSet<String>),
    timeout: Duration,
) -> Result<DistGc> {
    server.halt().await;
    // `start_distribution` writes the config beside the data directory.
    let config = server.data.with_file_name("config.yml");
    ensure!(config.is_file(), "no config at {}", config.display());
    let before = blob_files(&server.data, known)?;
    let out = server.data.with_file_name("garbage-collect.log");
    sync_disks().await;
    let (wall_s, peak_rss_kib) = run_tool(bin, &config, &out, timeout).await?;
    let after = blob_files(&server.data, known)?;
    let log = std::fs::read_to_string(&out).unwrap_or_default();
    let summary = log
        .lines()
        .find(|l| l.contains("eligible for deletion"))
        .unwrap_or("(no summary line)")
        .trim()
        .to_string();
    Ok(DistGc {
        wall_s,
        before,
        after,
        summary,
        peak_rss_kib,
    })
}

/// Runs `BIN garbage-collect CONFIG` with its output in `out`; its wall
/// time and peak RSS (`VmHWM`, read every `POLL` while it runs).
async fn run_tool(bin: &Path, config: &Path, out: &Path, timeout: Duration) -> Result<(f64, u64)> {
    let f = std::fs::File::create(out)?;
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(bin)
        .arg("garbage-collect")
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(f.try_clone()?))
        .stderr(std::process::Stdio::from(f))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {} garbage-collect", bin.display()))?;
    let pid = child.id().context("garbage-collect has no pid")?;
    let mut peak = 0;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = tokio::time::sleep(TOOL_POLL) => {
                peak = peak.max(proc_status_kib(pid, "VmHWM").unwrap_or(0));
                if t0.elapsed() > timeout {
                    let _ = child.kill().await;
                    bail!("garbage-collect did not finish within {} s", timeout.as_secs());
                }
            }
        }
    };
    let wall = t0.elapsed().as_secs_f64();
    ensure!(
        status.success(),
        "garbage-collect exited with {status}; output:\n{}",
        log_tail(out)
    );
    Ok((wall, peak))
}
