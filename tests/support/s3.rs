//! Real S3 servers for tests, built from crates.io by `scripts/install-deps`
//! into `~/.cargo/bin`: s3s-fs (a small server over a directory; enforces
//! conditional writes) and Garage (a distributed store, run as one node).
//! Each is started once per test process in a temporary directory on free
//! loopback ports; a watchdog stops it and removes its directory when the
//! test process exits, however it exits. Every caller gets a bucket (s3s-fs)
//! or a key prefix (Garage) of its own.
//!
//! Shared by the library's backend suites and the integration tests
//! (included with `#[path]`), so it depends only on std and uuid.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where and how to reach an S3 bucket on a test server.
#[derive(Debug, Clone)]
pub struct S3Target {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Empty, or a prefix of keys no other caller uses.
    pub prefix: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

struct Server {
    port: u16,
    /// s3s-fs: the directory whose subdirectories are its buckets.
    buckets: Option<PathBuf>,
}

static S3S_FS: OnceLock<Result<Server, String>> = OnceLock::new();
static GARAGE: OnceLock<Result<Server, String>> = OnceLock::new();

const S3S_KEY: &str = "berth-test-key";
const S3S_SECRET: &str = "berth-test-secret";
/// Garage wants `GK` + 24 hex digits and 64 hex digits.
const GARAGE_KEY: &str = "GK0123456789abcdef01234567";
const GARAGE_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const GARAGE_REGION: &str = "garage";
const GARAGE_BUCKET: &str = "berth";
/// How long a server may take to answer after it was started.
const READY_WITHIN: Duration = Duration::from_secs(30);

fn binary(name: &str) -> Result<PathBuf, String> {
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let path = Path::new(&home).join(".cargo/bin").join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} is not installed; run scripts/install-deps",
            path.display()
        ))
    }
}

/// `n` distinct ports free on the loopback interface.
fn free_ports<const N: usize>() -> Result<[u16; N], String> {
    // All held at once, so that no two of them are the same.
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let mut ports = [0; N];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l.local_addr().map_err(|e| e.to_string())?.port();
    }
    Ok(ports)
}

fn temp_dir(name: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("berth-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Starts `command` with its output in `<dir>/log`, and a watchdog that
/// kills it and removes `dir` once this process is gone.
fn spawn_watched(mut command: Command, dir: &Path, what: &str) -> Result<(), String> {
    let log = std::fs::File::create(dir.join("log")).map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let child = command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("starting {what}: {e}"))?;
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill {server} 2>/dev/null; \
         sleep 1; kill -9 {server} 2>/dev/null; rm -rf {dir}",
        pid = std::process::id(),
        server = child.id(),
        dir = dir.display(),
    );
    Command::new("setsid")
        .args(["sh", "-c", &stop])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the {what} watchdog: {e}"))?;
    Ok(())
}

/// The status code of `GET path` on `port`, if the server answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Waits until `ready` holds, or says what the log says.
fn wait_until(dir: &Path, what: &str, ready: impl Fn() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + READY_WITHIN;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    Err(format!(
        "{what} did not answer within {READY_WITHIN:?}: {log}"
    ))
}

fn start_s3s_fs() -> Result<Server, String> {
    let bin = binary("s3s-fs")?;
    let dir = temp_dir("s3s")?;
    let root = dir.join("buckets");
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    let [port] = free_ports()?;
    let mut command = Command::new(bin);
    command
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", S3S_KEY, "--secret-key", S3S_SECRET])
        .arg(&root);
    spawn_watched(command, &dir, "s3s-fs")?;
    wait_until(&dir, "s3s-fs", || http_status(port, "/").is_some())?;
    Ok(Server {
        port,
        buckets: Some(root),
    })
}

fn garage_config(dir: &Path, s3: u16, rpc: u16, admin: u16) -> String {
    let secret: String = (0..2)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect();
    format!(
        "metadata_dir = \"{dir}/meta\"\n\
         data_dir = \"{dir}/data\"\n\
         db_engine = \"sqlite\"\n\
         replication_factor = 1\n\
         rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
         rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
         rpc_secret = \"{secret}\"\n\
         [s3_api]\n\
         s3_region = \"{GARAGE_REGION}\"\n\
         api_bind_addr = \"127.0.0.1:{s3}\"\n\
         root_domain = \".s3.garage.localhost\"\n\
         [admin]\n\
         api_bind_addr = \"127.0.0.1:{admin}\"\n\
         admin_token = \"{token}\"\n",
        dir = dir.display(),
        token = uuid::Uuid::new_v4().simple(),
    )
}

fn start_garage() -> Result<Server, String> {
    let bin = binary("garage")?;
    let dir = temp_dir("garage")?;
    let [s3, rpc, admin] = free_ports()?;
    let config = dir.join("garage.toml");
    std::fs::write(&config, garage_config(&dir, s3, rpc, admin)).map_err(|e| e.to_string())?;
    let mut command = Command::new(bin);
    command
        .arg("-c")
        .arg(&config)
        .args(["server", "--single-node", "--default-bucket"])
        .env("GARAGE_DEFAULT_ACCESS_KEY", GARAGE_KEY)
        .env("GARAGE_DEFAULT_SECRET_KEY", GARAGE_SECRET)
        .env("GARAGE_DEFAULT_BUCKET", GARAGE_BUCKET);
    spawn_watched(command, &dir, "garage")?;
    wait_until(&dir, "garage", || {
        http_status(admin, "/health") == Some(200)
    })?;
    Ok(Server {
        port: s3,
        buckets: None,
    })
}

fn started(
    server: &'static OnceLock<Result<Server, String>>,
    start: fn() -> Result<Server, String>,
    what: &str,
) -> &'static Server {
    match server.get_or_init(start) {
        Ok(s) => s,
        Err(e) => panic!("the test {what} server did not start: {e}"),
    }
}

/// A new, empty bucket on the test s3s-fs server.
pub fn s3s_fs() -> S3Target {
    let server = started(&S3S_FS, start_s3s_fs, "s3s-fs");
    let bucket = format!("b-{}", uuid::Uuid::new_v4().simple());
    // s3s-fs's buckets are the directories under its root.
    let root = server
        .buckets
        .as_ref()
        .expect("s3s-fs has a bucket directory");
    std::fs::create_dir(root.join(&bucket)).expect("creating an s3s-fs bucket");
    S3Target {
        endpoint: format!("http://127.0.0.1:{}", server.port),
        region: "us-east-1".into(),
        bucket,
        prefix: String::new(),
        access_key_id: S3S_KEY.into(),
        secret_access_key: S3S_SECRET.into(),
    }
}

/// A key prefix of its own in the test Garage server's bucket.
pub fn garage() -> S3Target {
    let server = started(&GARAGE, start_garage, "Garage");
    S3Target {
        endpoint: format!("http://127.0.0.1:{}", server.port),
        region: GARAGE_REGION.into(),
        bucket: GARAGE_BUCKET.into(),
        prefix: format!("t-{}", uuid::Uuid::new_v4().simple()),
        access_key_id: GARAGE_KEY.into(),
        secret_access_key: GARAGE_SECRET.into(),
    }
}
