//! The accept loop: connection limits, idle and header timeouts, TLS
//! handshakes, and a readable answer to plain HTTP on the HTTPS port.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulConnection, GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::auth::limiter::source_network;
use crate::config::ConnectionsConfig;
use crate::oci::ErrorCode;
use crate::tls::{self, Tls};

/// Largest read buffer of an HTTP/1 connection. hyper grows a connection's
/// buffer up to this while a body streams in. Its default (about 400 KiB)
/// had 64 concurrent uploads peak at ~47 MiB RSS; with 256 KiB they peak at
/// ~41 MiB, and a 1 GiB push is as fast within the disk's run-to-run noise.
const HTTP1_READ_BUFFER: usize = 256 * 1024;

/// File descriptors kept free of client connections: the database, blob
/// files being written and read, the log, the TLS reloader.
const RESERVED_FDS: u64 = 256;

/// Serves `app` on `listener` (HTTPS when `tls` is set) until `shutdown`
/// resolves; then stops accepting and returns when every open connection
/// has finished its in-flight request. Each request carries
/// `ConnectInfo<SocketAddr>`.
pub(super) async fn serve_connections(
    listener: TcpListener,
    app: Router,
    tls: Option<Tls>,
    limits: &ConnectionsConfig,
    shutdown: impl Future<Output = ()> + Send,
) {
    deepen_backlog(&listener);
    let acceptor = tls.as_ref().map(Tls::acceptor);
    let _reloader = tls.as_ref().map(|tls| AbortOnDrop(tls.watch_files()));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(ConnectionSlots::new(limits, raise_fd_limit()));
    let timeouts = Timeouts {
        header_read: Duration::from_secs(limits.header_read_timeout_seconds.max(1)),
        idle: Duration::from_secs(limits.idle_timeout_seconds.max(1)),
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead
                    // of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Over a limit the connection is closed before anything is read:
        // it costs its descriptor for a moment, never a task or a buffer.
        let Some(slot) = slots.take(remote.ip()) else {
            continue;
        };
        let connection = serve_connection(
            tcp,
            remote,
            app.clone(),
            acceptor.clone(),
            graceful.watcher(),
            timeouts,
        );
        tokio::spawn(async move {
            let _slot = slot;
            connection.await
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// A connection's timeouts: for its request heads, and for silence.
#[derive(Clone, Copy)]
struct Timeouts {
    header_read: Duration,
    idle: Duration,
}

/// Serves one accepted connection until it closes, goes idle, or the
/// graceful shutdown ends it; a TLS connection is handshaken first.
async fn serve_connection(
    tcp: TcpStream,
    remote: SocketAddr,
    app: Router,
    acceptor: Option<TlsAcceptor>,
    watcher: Watcher,
    timeouts: Timeouts,
) {
    let _ = tcp.set_nodelay(true);
    let app = app.map_request(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        req
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(HTTP1_READ_BUFFER)
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    let service = TowerToHyperService::new(app);
    let activity = Arc::new(Activity::new());
    let served = match acceptor {
        None => {
            let io = TokioIo::new(Tracked::new(tcp, activity.clone()));
            let connection = builder.serve_connection_with_upgrades(io, service);
            until_idle(connection, watcher, &activity, timeouts.idle, remote).await
        }
        Some(acceptor) => {
            let Some(stream) = handshake(tcp, remote, acceptor, activity.clone()).await else {
                return;
            };
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            until_idle(connection, watcher, &activity, timeouts.idle, remote).await
        }
    };
    if let Some(Err(e)) = served {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}

/// The TLS stream of a connection on the HTTPS port; `None` when it spoke
/// plain HTTP (answered here) or its handshake failed or timed out.
async fn handshake(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    activity: Arc<Activity>,
) -> Option<tokio_rustls::server::TlsStream<Tracked<TcpStream>>> {
    if speaks_plain_http(&tcp).await {
        answer_plain_http_on_https(tcp, remote).await;
        return None;
    }
    let io = Tracked::new(tcp, activity);
    match tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            None
        }
    }
}

/// Runs `connection` under the graceful shutdown; `None` once nothing was
/// read or written on it for `idle` (the connection is then dropped).
async fn until_idle<C: GracefulConnection>(
    connection: C,
    watcher: Watcher,
    activity: &Activity,
    idle: Duration,
    remote: SocketAddr,
) -> Option<Result<(), C::Error>> {
    tokio::select! {
        served = watcher.watch(connection) => Some(served),
        () = activity.idle_for(idle) => {
            tracing::debug!(%remote, "closing an idle connection");
            None
        }
    }
}

/// Connections the kernel may hold completed for the accept loop. The
/// default (128) overflowed under a burst of connects from one client, and
/// then everyone's new connections waited a second for a SYN retry.
const LISTEN_BACKLOG: libc::c_int = 4096;

/// Deepens the listening socket's accept queue (calling `listen` again on
/// a listening socket only changes its backlog; the kernel caps it at
/// `net.core.somaxconn`).
fn deepen_backlog(listener: &TcpListener) {
    use std::os::fd::AsRawFd as _;
    // SAFETY: the descriptor belongs to `listener`, alive for the call.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "could not deepen the listen backlog"
        );
    }
}

/// Raises the soft limit on open files to the hard limit (the soft default
/// of 1024 would be the real connection cap) and returns the soft limit in
/// force.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            } else {
                tracing::warn!(
                    soft = limit.rlim_cur,
                    hard = limit.rlim_max,
                    "could not raise the open-file limit"
                );
            }
        }
    }
    limit.rlim_cur
}

/// Counts open connections, in all and per client address, and refuses
/// those over the limits.
struct ConnectionSlots {
    max: usize,
    max_per_address: usize,
    open: Mutex<SlotCounts>,
}

#[derive(Default)]
struct SlotCounts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
    /// Refusals since the last log line about them, and when that was.
    refused: u64,
    logged_at: Option<Instant>,
}

/// How often, at most, refused connections are logged (with their count).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

impl ConnectionSlots {
    fn new(limits: &ConnectionsConfig, fd_limit: u64) -> ConnectionSlots {
        let by_fds =
            usize::try_from(fd_limit.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX);
        let max = limits.max.max(1);
        if by_fds < max {
            tracing::warn!(
                configured = max,
                open_file_limit = fd_limit,
                allowed = by_fds,
                "connections.max is above what the open-file limit allows; using the lower value"
            );
        }
        ConnectionSlots {
            max: max.min(by_fds),
            max_per_address: limits.max_per_address.max(1),
            open: Mutex::new(SlotCounts::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotCounts> {
        // Every update leaves the counts consistent, so a poisoned lock is safe.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(self: &Arc<Self>, remote: IpAddr) -> Option<Slot> {
        let address = source_network(remote);
        let mut open = self.lock();
        let from_address = open.by_address.get(&address).copied().unwrap_or(0);
        let refusal = if open.total >= self.max {
            Some("the connection limit (connections.max) is reached")
        } else if from_address >= self.max_per_address {
            Some("the per-address connection limit (connections.max_per_address) is reached")
        } else {
            None
        };
        if let Some(reason) = refusal {
            open.refused += 1;
            let now = Instant::now();
            if open
                .logged_at
                .is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_EVERY)
            {
                tracing::warn!(
                    %address,
                    open = open.total,
                    open_from_address = from_address,
                    refused = open.refused,
                    "closing new connections: {reason}"
                );
                open.refused = 0;
                open.logged_at = Some(now);
            }
            return None;
        }
        open.total += 1;
        *open.by_address.entry(address).or_default() += 1;
        Some(Slot {
            slots: self.clone(),
            address,
        })
    }
}

/// One open connection's place in [`ConnectionSlots`], given back on drop.
struct Slot {
    slots: Arc<ConnectionSlots>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.lock();
        open.total -= 1;
        if let Some(n) = open.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                open.by_address.remove(&self.address);
            }
        }
    }
}

/// When a connection last read or wrote a byte.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing was read or written for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let quiet = last.elapsed();
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    }
}

/// A connection's socket that records when bytes move, for the idle timeout.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Tracked<T> {
    fn new(inner: T, activity: Arc<Activity>) -> Tracked<T> {
        Tracked { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Whether a client on the HTTPS port started with plain HTTP: a TLS
/// connection opens with a handshake record (0x16), an HTTP request with
/// the letters of its method.
async fn speaks_plain_http(tcp: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await,
        Ok(Ok(1)) if first[0].is_ascii_uppercase()
    )
}

/// Answers plain HTTP on the HTTPS port with a 400 that says what to do,
/// instead of a TLS alert the client cannot read.
async fn answer_plain_http_on_https(mut tcp: TcpStream, remote: SocketAddr) {
    tracing::debug!(%remote, "plain HTTP on the HTTPS port");
    // Read the request head first: closing a socket with unread data makes
    // the kernel reset it, and the client would never see the answer.
    let mut head = vec![0u8; 8 * 1024];
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    while read < head.len() && !head[..read].windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline.into(), tcp.read(&mut head[read..])).await {
            Ok(Ok(n)) if n > 0 => read += n,
            _ => break,
        }
    }
    let code = ErrorCode::InvalidRequest;
    let body = serde_json::json!({"errors": [{
        "code": code.code(),
        "message": "this port speaks HTTPS: use https:// in the registry address",
    }]})
    .to_string();
    let answer = format!(
        "HTTP/1.1 {} Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        code.status(),
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await
    })
    .await;
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
