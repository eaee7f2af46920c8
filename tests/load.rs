//! Load test of the real binary (`$BERTH_BIN`, else `target/release/berth`),
//! on loopback only, bounded in count and time (well under two minutes):
//!
//! 1. one client (127.0.0.2) opens 20,000 connections and holds them idle,
//!    and another (127.0.0.3) sends its headers one byte a second, while a
//!    normal client (127.0.0.1) pushes and pulls an image and `/healthz`
//!    is probed every 100 ms: every probe must answer within 1 s;
//! 2. 100 distinct users log in at once, fresh (nothing cached): berth's
//!    resident memory must stay under 300 MiB throughout.
//!
//! It prints the figures it measured (worst `/healthz` latency, peak RSS).

use std::io::BufRead as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ADMIN_PASSWORD: &str = "load-admin-password";
const IDLE_CONNECTIONS: usize = 20_000;
/// Processes holding the idle connections: one process's open-file limit
/// may be too low for all of them (20,000 here, hard).
const HOLDERS: usize = 2;
const LOGINS: usize = 100;
const RSS_LIMIT_KIB: u64 = 300 * 1024;
const HEALTHZ_LIMIT: Duration = Duration::from_secs(1);

const NORMAL: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const IDLER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const SLOW: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

struct Berth {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Berth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn berth_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("BERTH_BIN") {
        return PathBuf::from(bin);
    }
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/berth");
    assert!(
        bin.is_file(),
        "no berth binary at {}: build it (cargo build --release --bin berth) or set BERTH_BIN",
        bin.display()
    );
    bin
}

/// Raises this process's open-file limit (and so berth's, which inherits
/// it) to hold the idle connections of both ends.
fn raise_fd_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let raised = libc::rlimit {
            rlim_cur: wanted.max(limit.rlim_cur),
            rlim_max: wanted.max(limit.rlim_max),
        };
        // Raising the hard limit needs privileges; the soft one up to the
        // hard one does not.
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            limit.rlim_cur = limit.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
    }
    assert!(
        limit.rlim_cur >= wanted,
        "the open-file limit is {}; this test needs {wanted} (run as root or raise it)",
        limit.rlim_cur
    );
}

async fn start_berth() -> Berth {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::new(IpAddr::V4(NORMAL), port);
    let child = Command::new(berth_binary())
        .arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("BERTH_BIN")
        .env("BERTH_AUTH__MODE", "token")
        .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("BERTH_CONNECTIONS__HEADER_READ_TIMEOUT_SECONDS", "3")
        .env("BERTH_LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start berth");
    let berth = Berth {
        child,
        addr,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = request(addr, NORMAL, "GET", "/healthz", None, Vec::new()).await {
            if r.status == 200 {
                return berth;
            }
        }
        assert!(Instant::now() < deadline, "berth did not start in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Answer {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

async fn connect_from(addr: SocketAddr, from: Ipv4Addr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    socket.connect(addr).await
}

/// One HTTP/1.1 request on a fresh connection from `from`, answered with
/// `Connection: close` semantics, within 30 s.
async fn request(
    addr: SocketAddr,
    from: Ipv4Addr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Vec<u8>,
) -> std::io::Result<Answer> {
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut tcp = connect_from(addr, from).await?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Length: {}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n",
            body.len()
        );
        if !body.is_empty() {
            let kind = if path.contains("/manifests/") {
                "application/vnd.oci.image.manifest.v1+json"
            } else {
                "application/octet-stream"
            };
            head.push_str(&format!("Content-Type: {kind}\r\n"));
        }
        if let Some(auth) = auth {
            head.push_str(&format!("Authorization: {auth}\r\n"));
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(&body).await?;
        let mut reply = Vec::new();
        tcp.read_to_end(&mut reply).await?;
        let split = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no end of headers"))?;
        let headers = String::from_utf8_lossy(&reply[..split]).into_owned();
        let status = headers
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("no status"))?;
        let mut body = reply[split + 4..].to_vec();
        if headers
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    })
    .await
    .map_err(|_| std::io::Error::other("no answer within 30 s"))?
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&data[..end]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
    out
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `/healthz` every 100 ms from the normal client until `stop`: the worst
/// latency seen, and how many probes failed or took longer than the limit.
async fn probe_healthz(addr: SocketAddr, stop: Arc<AtomicBool>) -> (Duration, usize, usize) {
    let (mut worst, mut probes, mut bad) = (Duration::ZERO, 0, 0);
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let answer = tokio::time::timeout(
            HEALTHZ_LIMIT,
            request(addr, NORMAL, "GET", "/healthz", None, Vec::new()),
        )
        .await;
        let took = t0.elapsed();
        worst = worst.max(took);
        probes += 1;
        if !matches!(answer, Ok(Ok(ref a)) if a.status == 200) {
            bad += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (worst, probes, bad)
}

/// Pushes a two-blob image as admin and pulls it back, checking digests.
async fn push_and_pull(addr: SocketAddr) {
    let admin = basic("admin", ADMIN_PASSWORD);
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    for blob in [&config, &layer] {
        let path = format!("/v2/load/app/blobs/uploads/?digest={}", digest_of(blob));
        let r = request(addr, NORMAL, "POST", &path, Some(&admin), blob.clone())
            .await
            .unwrap();
        assert_eq!(
            r.status,
            201,
            "push a blob: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest_of(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest_of(&layer), "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    let r = request(
        addr,
        NORMAL,
        "PUT",
        "/v2/load/app/manifests/v1",
        Some(&admin),
        manifest.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        r.status,
        201,
        "push the manifest: {}",
        String::from_utf8_lossy(&r.body)
    );
    let r = request(
        addr,
        NORMAL,
        "GET",
        "/v2/load/app/manifests/v1",
        Some(&admin),
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-content-digest"),
        Some(digest_of(&manifest).as_str())
    );
    let path = format!("/v2/load/app/blobs/{}", digest_of(&layer));
    let r = request(addr, NORMAL, "GET", &path, Some(&admin), Vec::new())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        digest_of(&r.body),
        digest_of(&layer),
        "the layer pulled back"
    );
}

/// Opens `count` connections to `addr` from [`IDLER`], prints `held N`,
/// and keeps them until its stdin closes. A process of its own, since one
/// process's open-file limit may be too low for all the idle connections.
const HOLDER_SCRIPT: &str = r#"
import resource, socket, sys
host, port, count, source = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
for _ in range(count):
    try:
        held.append(socket.create_connection((host, port), timeout=5, source_address=(source, 0)))
    except OSError:
        pass
print("held", len(held), flush=True)
sys.stdin.readline()
"#;

/// A child process (Python, running [`HOLDER_SCRIPT`]) that opens idle
/// connections from [`IDLER`] and holds them until dropped.
struct Holder {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Holder {
    fn start(addr: SocketAddr, count: usize) -> Holder {
        let mut child = Command::new("python3")
            .args(["-c", HOLDER_SCRIPT])
            .args([
                addr.ip().to_string(),
                addr.port().to_string(),
                count.to_string(),
                IDLER.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a connection holder");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        Holder { child, lines }
    }

    /// Waits (60 s at most) until the holder has opened its connections.
    fn held(&mut self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .expect("the holder opens its connections within 60 s");
            if let Some(n) = line.strip_prefix("held ") {
                return n.trim().parse().unwrap();
            }
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // Closing its stdin lets it go; killing makes sure.
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of `pid` now and at its peak, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_stays_available_under_idle_connections_slow_headers_and_a_login_burst() {
    let test_start = Instant::now();
    raise_fd_limit(4_096);
    let berth = start_berth().await;
    let addr = berth.addr;
    let pid = berth.child.id();

    // -- 1. idle connections and a slow-header client ----------------------
    let stop = Arc::new(AtomicBool::new(false));
    let prober = tokio::spawn(probe_healthz(addr, stop.clone()));
    let slow = tokio::spawn(async move {
        let mut tcp = connect_from(addr, SLOW).await.unwrap();
        let t0 = Instant::now();
        for byte in b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
            .take(60)
        {
            if tcp.write_all(&[*byte]).await.is_err() {
                break;
            }
            let mut probe = [0u8; 1];
            match tokio::time::timeout(Duration::from_secs(1), tcp.read(&mut probe)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                _ => {}
            }
        }
        t0.elapsed()
    });
    let mut holders: Vec<Holder> = (0..HOLDERS)
        .map(|_| Holder::start(addr, IDLE_CONNECTIONS / HOLDERS))
        .collect();
    let mut connected = 0;
    for holder in &mut holders {
        connected += holder.held();
    }
    push_and_pull(addr).await;
    let slow_closed_after = slow.await.unwrap();
    drop(holders);
    stop.store(true, Ordering::Relaxed);
    let (worst_healthz, probes, bad_probes) = prober.await.unwrap();

    let (_, idle_phase_peak) = rss_kib(pid);
    // -- 2. a burst of fresh logins ------------------------------------------
    let admin = basic("admin", ADMIN_PASSWORD);
    for i in 0..LOGINS {
        let body =
            serde_json::json!({"name": format!("user{i}"), "password": format!("password-{i}")})
                .to_string()
                .into_bytes();
        let r = tokio::time::timeout(Duration::from_secs(30), async {
            let mut tcp = connect_from(addr, NORMAL).await?;
            let head = format!(
                "POST /api/v1/users HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Authorization: {admin}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            );
            tcp.write_all(head.as_bytes()).await?;
            tcp.write_all(&body).await?;
            let mut reply = Vec::new();
            tcp.read_to_end(&mut reply).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&reply).into_owned())
        })
        .await
        .unwrap()
        .unwrap();
        assert!(r.starts_with("HTTP/1.1 201"), "create user{i}: {r}");
    }
    let (rss_before_logins, _) = rss_kib(pid);
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid).0);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let burst_start = Instant::now();
    let logins: Vec<_> = (0..LOGINS)
        .map(|i| {
            tokio::spawn(async move {
                let auth = basic(&format!("user{i}"), &format!("password-{i}"));
                request(
                    addr,
                    NORMAL,
                    "GET",
                    "/token?service=berth",
                    Some(&auth),
                    Vec::new(),
                )
                .await
                .map(|a| a.status)
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for login in logins {
        statuses.push(login.await.unwrap().unwrap());
    }
    let burst = burst_start.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let sampled_peak = sampler.await.unwrap();
    let (rss_after, hwm) = rss_kib(pid);

    eprintln!(
        "load: {connected} of {IDLE_CONNECTIONS} idle connections opened; /healthz: {probes} probes, \
         worst {worst_healthz:?}, {bad_probes} failed or slow; slow-header client cut off after \
         {slow_closed_after:?}; RSS peak of that phase {idle_phase_peak} KiB; {LOGINS} fresh \
         logins in {burst:?}; RSS before the logins \
         {rss_before_logins} KiB, sampled peak {sampled_peak} KiB, after {rss_after} KiB, \
         peak over the whole run (VmHWM) {hwm} KiB; test took {:?}",
        test_start.elapsed()
    );
    assert_eq!(connected, IDLE_CONNECTIONS, "every connect went through");
    assert_eq!(
        bad_probes, 0,
        "every /healthz answered 200 within {HEALTHZ_LIMIT:?}"
    );
    assert!(probes >= 5, "the probes ran: {probes}");
    assert!(
        slow_closed_after < Duration::from_secs(10),
        "the slow-header client is cut off by the 3 s header-read timeout: {slow_closed_after:?}"
    );
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        sampled_peak < RSS_LIMIT_KIB && hwm < RSS_LIMIT_KIB,
        "RSS stays under 300 MiB: sampled peak {sampled_peak} KiB, VmHWM {hwm} KiB"
    );
}
