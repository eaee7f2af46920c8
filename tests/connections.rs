//! Connection limits of the real listener (`berth::server::serve_on`) on
//! loopback: header-read and idle timeouts, the per-address cap, and that a
//! transfer which keeps moving bytes is never cut off by them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use berth::auth::AuthMode;
use berth::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Running {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A registry without authentication whose connections are limited by `limit`.
async fn start(limit: impl FnOnce(&mut Config)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        ..Config::default()
    };
    config.auth.mode = AuthMode::None;
    limit(&mut config);
    let app = berth::server::build_app(&config).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        berth::server::serve_on(listener, app, &config, async {
            let _ = stopped.await;
        })
        .await
    });
    Running {
        addr,
        _dir: dir,
        stop: Some(stop),
    }
}

/// How long until the server closes `tcp` (reads until end of stream),
/// or `None` if it is still open after `within`.
async fn closed_after(tcp: &mut TcpStream, within: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut sink = Vec::new();
    match tokio::time::timeout(within, tcp.read_to_end(&mut sink)).await {
        Ok(_) => Some(t0.elapsed()),
        Err(_) => None,
    }
}

/// Sends one `GET /v2/` on `tcp` and returns the status line.
async fn get_v2(tcp: &mut TcpStream) -> String {
    tcp.write_all(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut reply = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut reply))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]).into_owned();
    reply.lines().next().unwrap_or("").to_string()
}

#[tokio::test]
async fn a_client_that_sends_headers_too_slowly_is_disconnected() {
    let server = start(|c| {
        c.connections.header_read_timeout_seconds = 1;
        c.connections.idle_timeout_seconds = 60;
    })
    .await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    // One header byte every 200 ms: never idle, never done.
    let dribble = async {
        for byte in b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa" {
            if tcp.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_millis(1500), dribble).await;
    let closed = closed_after(&mut tcp, Duration::from_secs(3)).await;
    assert!(
        closed.is_some(),
        "the connection is closed once the header-read timeout (1 s) has passed"
    );
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let server = start(|c| {
        c.connections.header_read_timeout_seconds = 30;
        c.connections.idle_timeout_seconds = 1;
    })
    .await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let closed = closed_after(&mut tcp, Duration::from_secs(4))
        .await
        .expect("closed within 4 s");
    assert!(
        closed >= Duration::from_millis(800),
        "not before: {closed:?}"
    );
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_closed_and_the_others_served() {
    let server = start(|c| c.connections.max_per_address = 2).await;
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get_v2(&mut first).await, "HTTP/1.1 200 OK");
    assert_eq!(get_v2(&mut second).await, "HTTP/1.1 200 OK");
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        closed_after(&mut third, Duration::from_secs(2))
            .await
            .is_some(),
        "a third connection from the same address is closed"
    );
    // The two open ones still work, and closing one frees its place.
    assert_eq!(get_v2(&mut first).await, "HTTP/1.1 200 OK");
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = TcpStream::connect(server.addr).await.unwrap();
        let mut probe = [0u8; 1];
        let _ = again
            .write_all(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await;
        match tokio::time::timeout(Duration::from_secs(2), again.read(&mut probe)).await {
            Ok(Ok(1)) => break,
            _ => assert!(Instant::now() < deadline, "the freed place is never reused"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_upload_that_keeps_moving_outlasts_both_timeouts() {
    let server = start(|c| {
        c.connections.header_read_timeout_seconds = 1;
        c.connections.idle_timeout_seconds = 1;
    })
    .await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let body = vec![b'x'; 30];
    // 30 bytes, one every 100 ms: 3 s in all, three times each timeout.
    let head = format!(
        "POST /v2/slow/blobs/uploads/?digest=sha256:{} HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        sha256_hex(&body),
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    for byte in &body {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tcp.write_all(&[*byte]).await.unwrap();
    }
    let mut reply = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut reply))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 201 Created"), "{reply}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}
