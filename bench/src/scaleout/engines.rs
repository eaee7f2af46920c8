//! The shared engines of the scale-out stack, each started on loopback in a
//! temporary directory of its own and stopped (its directory removed) when
//! dropped: PostgreSQL (Debian's), a single-node Garage (S3), and nginx as a
//! round-robin load balancer.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::server::{log_tail, random_hex};

/// Garage wants `GK` + 24 hex digits as an access key, 64 hex digits as a secret.
pub const S3_KEY: &str = "GK0123456789abcdef01234567";
pub const S3_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const S3_REGION: &str = "garage";
pub const S3_BUCKET: &str = "bench";
/// How long an engine may take to answer after it was started.
const READY_WITHIN: Duration = Duration::from_secs(60);

pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    // All held at once, so that no two of them are the same.
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut ports = [0; N];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l.local_addr()?.port();
    }
    Ok(ports)
}

fn is_root() -> bool {
    std::env::var("USER").as_deref() == Ok("root")
        || std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .map(|v| v.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false)
}

/// `program`, as the `postgres` user when we are root (PostgreSQL refuses
/// to run as root).
fn as_postgres(program: &Path) -> std::process::Command {
    if is_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        std::process::Command::new(program)
    }
}

/// Runs a short setup command to its end; its output in the error.
async fn run_to_end(c: std::process::Command, what: &str) -> Result<()> {
    let out = Command::from(c)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(READY_WITHIN, out)
        .await
        .with_context(|| format!("{what}: timed out"))?
        .with_context(|| format!("{what}: cannot run"))?;
    ensure!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Polls `ready` every 50 ms until it holds; an error quoting `log` after
/// `READY_WITHIN`, or at once if `child` exited.
async fn wait_ready<F, Fut>(what: &str, child: &mut Child, log: &Path, ready: F) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited with {status}; log:\n{}", log_tail(log));
        }
        if ready().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{what} did not answer within {READY_WITHIN:?}; log:\n{}",
                log_tail(log)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The status of `GET path` on a loopback port, if anything answers.
async fn http_status(port: u16, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(5), probe)
        .await
        .ok()
        .flatten()
}

fn spawn_logged(mut cmd: Command, log: &Path, what: &str) -> Result<Child> {
    let f = std::fs::File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(f.try_clone()?))
        .stderr(Stdio::from(f))
        .kill_on_drop(true);
    cmd.spawn().with_context(|| format!("cannot start {what}"))
}

/// A server process we started: asked to stop with SIGTERM on drop (nginx's
/// workers and Garage shut down cleanly then), killed if it has not
/// exited within 5 s.
pub struct Proc {
    child: Child,
    pub pid: u32,
}

impl Proc {
    fn new(child: Child) -> Result<Proc> {
        let pid = child.id().context("child has no pid")?;
        Ok(Proc { child, pid })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.start_kill();
    }
}

/// A PostgreSQL server with one database, `bench`, for the user `berth`
/// (trust authentication on loopback). `fsync` off: the bench measures the
/// registry, and durability is tested elsewhere.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    pub url: String,
    _dir: TempDir,
}

/// The newest installed PostgreSQL's binaries.
fn pg_bin_dir() -> Result<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (/usr/lib/postgresql); run scripts/install-deps")?
        .filter_map(|d| d.ok())
        .filter_map(|d| {
            let version = d.file_name().to_str()?.parse().ok()?;
            let bin = d.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop()
        .map(|(_, bin)| bin)
        .context("no initdb under /usr/lib/postgresql/*/bin")
}

impl Postgres {
    pub async fn start(tmp_root: &Path) -> Result<Postgres> {
        let bin = pg_bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("berth-bench-pg-")
            .tempdir_in(tmp_root)?;
        if is_root() {
            let mut chown = std::process::Command::new("chown");
            chown.arg("postgres:postgres").arg(dir.path());
            run_to_end(chown, "chown of the PostgreSQL directory").await?;
        }
        let data = dir.path().join("data");
        let mut initdb = as_postgres(&bin.join("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "berth",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run_to_end(initdb, "initdb").await?;
        let [port] = free_ports()?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=500",
            dir.path().display()
        );
        let mut pg_ctl = as_postgres(&bin.join("pg_ctl"));
        pg_ctl
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .args(["-o", &options, "-w", "-t", "60", "start"]);
        // From here on, dropping `pg` stops the server.
        let pg = Postgres {
            bin,
            data,
            url: format!("postgres://berth@127.0.0.1:{port}/bench"),
            _dir: dir,
        };
        run_to_end(pg_ctl, "pg_ctl start").await?;
        let mut createdb = std::process::Command::new(pg.bin.join("createdb"));
        createdb.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "berth",
            "bench",
        ]);
        run_to_end(createdb, "createdb").await?;
        Ok(pg)
    }
}

impl Postgres {
    /// The postmaster's pid (the first line of its `postmaster.pid`).
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "20", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A single-node Garage with one bucket, `bench`.
pub struct Garage {
    pub endpoint: String,
    _proc: Proc,
    _dir: TempDir,
}

/// `$GARAGE`, else `~/.cargo/bin/garage` (where `scripts/install-deps` puts it).
fn garage_bin() -> Result<PathBuf> {
    let bin = match std::env::var_os("GARAGE") {
        Some(b) => PathBuf::from(b),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?)
            .join(".cargo/bin/garage"),
    };
    ensure!(
        bin.is_file(),
        "garage is not installed at {} (run scripts/install-deps, or set GARAGE)",
        bin.display()
    );
    Ok(bin)
}

impl Garage {
    pub async fn start(tmp_root: &Path) -> Result<Garage> {
        let bin = garage_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("berth-bench-garage-")
            .tempdir_in(tmp_root)?;
        let [s3, rpc, admin] = free_ports()?;
        let d = dir.path().display();
        let config = format!(
            "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
             replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
             [s3_api]\ns3_region = \"{S3_REGION}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
             root_domain = \".s3.garage.localhost\"\n\
             [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\nadmin_token = \"{token}\"\n",
            secret = random_hex(32)?,
            token = random_hex(16)?,
        );
        let config_path = dir.path().join("garage.toml");
        std::fs::write(&config_path, config)?;
        let log = dir.path().join("garage.log");
        let mut cmd = Command::new(&bin);
        cmd.arg("-c")
            .arg(&config_path)
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", S3_KEY)
            .env("GARAGE_DEFAULT_SECRET_KEY", S3_SECRET)
            .env("GARAGE_DEFAULT_BUCKET", S3_BUCKET)
            .env("RUST_LOG", "warn");
        let mut proc = Proc::new(spawn_logged(cmd, &log, "garage")?)?;
        wait_ready("garage", &mut proc.child, &log, || async {
            http_status(admin, "/health").await == Some(200)
        })
        .await?;
        Ok(Garage {
            endpoint: format!("http://127.0.0.1:{s3}"),
            _proc: proc,
            _dir: dir,
        })
    }
}

impl Garage {
    pub fn pid(&self) -> u32 {
        self._proc.pid
    }
}

/// nginx in front of `upstreams`, round-robin, no stickiness, with the
/// settings a registry needs behind it (no body size limit, no buffering of
/// requests or responses) and keep-alive connections on both sides.
pub struct Nginx {
    pub base: String,
    pub proc: Proc,
    _dir: TempDir,
}

fn nginx_config(dir: &Path, port: u16, upstreams: &[String]) -> String {
    let d = dir.display();
    let servers: String = upstreams
        .iter()
        .map(|u| format!("    server {u};\n"))
        .collect();
    // keepalive_requests: nginx closes a client connection after 1,000
    // requests by default, which the hammer's 64 connections would hit.
    format!(
        "worker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         daemon off;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n\
         client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         keepalive_requests 10000000; keepalive_timeout 300s;\n\
         upstream registry {{\n{servers}    keepalive 128;\n\
             keepalive_requests 10000000;\n    keepalive_timeout 300s;\n  }}\n\
         server {{\n    listen 127.0.0.1:{port} backlog=4096;\n\
             client_max_body_size 0; proxy_request_buffering off; proxy_buffering off;\n\
             proxy_http_version 1.1; proxy_set_header Connection \"\";\n\
             proxy_set_header Host $http_host;\n\
             proxy_set_header X-Forwarded-For $remote_addr;\n\
             proxy_set_header X-Forwarded-Proto $scheme;\n\
             proxy_read_timeout 900s; proxy_send_timeout 900s;\n\
             location / {{ proxy_pass http://registry; }}\n  }}\n}}\n"
    )
}

impl Nginx {
    /// `upstreams`: `host:port` of each registry replica.
    pub async fn start(tmp_root: &Path, upstreams: &[String]) -> Result<Nginx> {
        let dir = tempfile::Builder::new()
            .prefix("berth-bench-nginx-")
            .tempdir_in(tmp_root)?;
        // nginx's workers run as an unprivileged user when started as root.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let [port] = free_ports()?;
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, nginx_config(dir.path(), port, upstreams))?;
        let log = dir.path().join("nginx.log");
        let mut cmd = Command::new("nginx");
        cmd.arg("-c").arg(&conf).arg("-p").arg(dir.path());
        let mut proc = Proc::new(spawn_logged(cmd, &log, "nginx (apt-get install nginx)")?)?;
        let err_log = dir.path().join("error.log");
        wait_ready("nginx", &mut proc.child, &err_log, || async {
            http_status(port, "/v2/").await.is_some()
        })
        .await?;
        Ok(Nginx {
            base: format!("http://127.0.0.1:{port}"),
            proc,
            _dir: dir,
        })
    }
}
