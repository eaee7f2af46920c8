//! Starting the registries under test, and reading their RSS and CPU from /proc.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use http::Method;
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::data::ReqBody;
use crate::http::{drain, new_client, parse_base, Target};

/// A registry process we started; killed on drop, its data dir removed.
pub struct Server {
    child: Child,
    pub pid: u32,
    pub base: String,
    pub log: PathBuf,
    /// The registry's data directory (inside the temp dir removed on drop).
    pub data: PathBuf,
    _dir: TempDir,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn spawn_logged(mut cmd: Command, log: &Path) -> Result<Child> {
    let f = std::fs::File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(f.try_clone()?))
        .stderr(Stdio::from(f))
        .kill_on_drop(true);
    Ok(cmd.spawn()?)
}

/// How a berth started by the bench authenticates.
pub enum BerthAuth<'a> {
    /// `auth.mode = none`, as Distribution runs here by default.
    Off,
    /// `auth.mode = token` with Basic credentials from this htpasswd file, whose
    /// users may create a project by pushing into it; the admin password is
    /// random and never used.
    Htpasswd(&'a Path),
    /// `auth.mode = token` with only the first account, `admin`, whose password
    /// is this (`BERTH_ADMIN_PASSWORD`).
    Admin(&'a str),
}

/// Starts berth on a fresh data dir. Without `htpasswd`, authentication is off
/// (`auth.mode = none`, as Distribution runs here by default); with it, Basic
/// credentials from that file are required (`auth.mode = token`), and its users
/// may create a project by pushing into it.
pub async fn start_berth(bin: &Path, tmp_root: &Path, htpasswd: Option<&Path>) -> Result<Server> {
    let auth = match htpasswd {
        None => BerthAuth::Off,
        Some(file) => BerthAuth::Htpasswd(file),
    };
    start_berth_with(bin, tmp_root, auth).await
}

/// Starts berth on a fresh data dir with the given authentication.
pub async fn start_berth_with(bin: &Path, tmp_root: &Path, auth: BerthAuth<'_>) -> Result<Server> {
    start_berth_env(bin, tmp_root, auth, &[]).await
}

/// Starts berth on a fresh data dir with the given authentication and these
/// environment variables besides (settings such as `BERTH_GC__GRACE_SECONDS`).
pub async fn start_berth_env(
    bin: &Path,
    tmp_root: &Path,
    auth: BerthAuth<'_>,
    env: &[(&str, &str)],
) -> Result<Server> {
    let dir = tempfile::Builder::new()
        .prefix("berth-bench-berth-")
        .tempdir_in(tmp_root)?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let log = dir.path().join("berth.log");
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--listen")
        .arg(&listen)
        .arg("--data-dir")
        .arg(&data)
        .envs(env.iter().copied());
    let auth_on = !matches!(auth, BerthAuth::Off);
    match auth {
        // Distribution runs without authentication here; so does berth.
        BerthAuth::Off => {
            cmd.env("BERTH_AUTH__MODE", "none");
        }
        BerthAuth::Htpasswd(file) => {
            cmd.env("BERTH_AUTH__MODE", "token")
                .env("BERTH_AUTH__HTPASSWD_FILE", file)
                .env("BERTH_AUTH__PROJECT_CREATION", "users")
                // Never used; set so berth does not generate and log one.
                .env("BERTH_ADMIN_PASSWORD", random_hex(16)?);
        }
        BerthAuth::Admin(password) => {
            cmd.env("BERTH_AUTH__MODE", "token")
                .env("BERTH_ADMIN_PASSWORD", password);
        }
    }
    // Distribution runs at log level "error" with its access log off; do the same.
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "warn");
    }
    let child =
        spawn_logged(cmd, &log).with_context(|| format!("cannot start {}", bin.display()))?;
    finish_start(child, format!("http://{listen}"), log, data, dir, auth_on).await
}

/// Starts Distribution on a fresh data dir; with `htpasswd`, its `auth: htpasswd`
/// (Basic credentials checked against that file on every request).
pub async fn start_distribution(
    bin: &Path,
    tmp_root: &Path,
    htpasswd: Option<&Path>,
) -> Result<Server> {
    start_distribution_on(bin, tmp_root, htpasswd, None).await
}

/// Starts Distribution with `storage`, the driver's lines of its `storage:`
/// section (indented by two spaces, e.g. an `s3:` block), instead of a
/// filesystem under its fresh data dir.
pub async fn start_distribution_on(
    bin: &Path,
    tmp_root: &Path,
    htpasswd: Option<&Path>,
    storage: Option<&str>,
) -> Result<Server> {
    let dir = tempfile::Builder::new()
        .prefix("berth-bench-distribution-")
        .tempdir_in(tmp_root)?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let driver = match storage {
        Some(s) => s.to_string(),
        None => format!("  filesystem:\n    rootdirectory: {}\n", data.display()),
    };
    // The blob-descriptor cache is on in the Debian and registry:2 default configs.
    let mut config = format!(
        "version: 0.1\n\
         log:\n  level: error\n  accesslog:\n    disabled: true\n\
         storage:\n{driver}  delete:\n    enabled: true\n  \
         cache:\n    blobdescriptor: inmemory\n\
         http:\n  addr: {listen}\n"
    );
    if let Some(file) = htpasswd {
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
            file.display()
        ));
    }
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, config)?;
    let log = dir.path().join("distribution.log");
    let mut cmd = Command::new(bin);
    cmd.arg("serve").arg(&config_path);
    // The AWS SDK in its S3 driver refuses to start when a custom CA bundle
    // is set in the environment (as on some build machines), even for http.
    cmd.env_remove("AWS_CA_BUNDLE");
    let child =
        spawn_logged(cmd, &log).with_context(|| format!("cannot start {}", bin.display()))?;
    finish_start(
        child,
        format!("http://{listen}"),
        log,
        data,
        dir,
        htpasswd.is_some(),
    )
    .await
}

/// Waits until `/v2/` answers: 200, or 401 when authentication is on (the probe
/// sends no credentials, so that it does not warm a credential cache).
async fn finish_start(
    mut child: Child,
    base: String,
    log: PathBuf,
    data: PathBuf,
    dir: TempDir,
    auth: bool,
) -> Result<Server> {
    let pid = child.id().context("child has no pid")?;
    let client = new_client();
    let probe = Target {
        name: "probe",
        addr: parse_base(&base).await?.1,
        base: base.clone(),
        pid: Some(pid),
        client,
        authorization: None,
    };
    let expect: &[u16] = if auth { &[401] } else { &[200] };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "server exited with {status} before answering /v2/; log:\n{}",
                log_tail(&log)
            );
        }
        match probe
            .request(Method::GET, "/v2/", &[], ReqBody::Empty, expect)
            .await
        {
            Ok(r) => {
                drain(r).await?;
                break;
            }
            Err(e) if Instant::now() > deadline => {
                bail!(
                    "{base}/v2/ did not answer {} within 30 s ({e:#}); log:\n{}",
                    expect[0],
                    log_tail(&log)
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    Ok(Server {
        child,
        pid,
        base,
        log,
        data,
        _dir: dir,
    })
}

/// `n` random bytes from the kernel, in hex.
pub fn random_hex(n: usize) -> Result<String> {
    use std::io::Read as _;
    let mut b = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

pub fn log_tail(log: &Path) -> String {
    let s = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Server {
    /// Whether the process is still alive (it may have crashed under load).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    pub async fn stop(mut self) {
        self.halt().await;
    }

    /// Kills the process but keeps its data directory (removed on drop), for
    /// offline tools that work on it.
    pub async fn halt(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// A field of `/proc/PID/status` in KiB (e.g. `VmHWM`, the peak RSS).
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// User + system CPU seconds of a process (all threads), `None` for this process.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let s = std::fs::read_to_string(path).ok()?;
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux ABI.
    Some((utime + stime) as f64 / 100.0)
}

/// `pids` and their direct children (nginx's workers, PostgreSQL's
/// backends), from the parent field of each `/proc/PID/stat`.
pub fn with_children(pids: &[u32]) -> Vec<u32> {
    let mut out = pids.to_vec();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after "(comm)": state, then the parent's pid.
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid.is_some_and(|pp| pids.contains(&pp)) && !out.contains(&pid) {
            out.push(pid);
        }
    }
    out
}

/// CPU seconds spent busy by the whole machine (all cores, steal included).
pub fn system_busy_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7)?;
    Some(busy as f64 / 100.0)
}

/// Measures how much CPU processes other than ours used over a stretch of time.
pub struct ForeignLoad {
    pids: Vec<u32>,
    start: Instant,
    system: Option<f64>,
    ours: Option<f64>,
}

impl ForeignLoad {
    fn ours(pids: &[u32]) -> Option<f64> {
        let mut sum = cpu_seconds(None)?;
        for p in pids {
            sum += cpu_seconds(Some(*p)).unwrap_or(0.0);
        }
        Some(sum)
    }

    pub fn start(pids: Vec<u32>) -> ForeignLoad {
        let ours = Self::ours(&pids);
        ForeignLoad {
            start: Instant::now(),
            system: system_busy_seconds(),
            ours,
            pids,
        }
    }

    /// Average number of cores that other processes kept busy since `start`
    /// (`None` under half a second: /proc counts in 10 ms ticks).
    pub fn cores(&self) -> Option<f64> {
        let secs = self.start.elapsed().as_secs_f64();
        if secs < 0.5 {
            return None;
        }
        let system = system_busy_seconds()? - self.system?;
        let ours = Self::ours(&self.pids)? - self.ours?;
        Some(((system - ours) / secs).max(0.0))
    }
}
