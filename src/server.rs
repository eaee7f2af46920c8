//! Wiring: opens the embedded backends, builds the router, serves (plain
//! HTTP, or HTTPS when `[tls]` says so) until SIGTERM/SIGINT, then drains
//! in-flight requests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::api::{self, AppState};
use crate::auth::AuthService;
use crate::config::Config;
use crate::core::Registry;
use crate::metadata::SqliteMetadata;
use crate::storage::FsStore;
use crate::tls::{self, Tls};
use crate::workers::{UploadExpiry, Workers};

/// Opens the embedded default backends under the data directory: the
/// registry and the authentication service over one metadata database.
pub async fn open_state(config: &Config) -> anyhow::Result<AppState> {
    let dir = &config.data_dir;
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    let storage = FsStore::open(dir)
        .await
        .with_context(|| format!("opening blob storage in {}", dir.display()))?;
    let metadata = Arc::new(
        SqliteMetadata::open(&dir.join("metadata.db"))
            .await
            .context("opening metadata database")?,
    );
    let registry = Registry::new(Arc::new(storage), metadata.clone(), config.core_settings());
    let ui = crate::ui::UiContext::open(dir, metadata.clone())
        .context("opening the web UI's session key")?;
    let auth = AuthService::open(metadata, &config.auth, dir)
        .await
        .context("setting up authentication")?;
    let tls_on = config.tls.self_signed || config.tls.cert_file.is_some();
    Ok(AppState {
        registry: Arc::new(registry),
        auth: Arc::new(auth),
        scheme: if tls_on { "https" } else { "http" },
        ui: Arc::new(ui),
    })
}

/// Builds the whole HTTP application for `config` over the embedded backends.
pub async fn build_app(config: &Config) -> anyhow::Result<Router> {
    Ok(api::router(open_state(config).await?))
}

/// Starts in an order that lets a failed start leave nothing behind: the
/// configuration is checked, the port bound and the TLS files loaded before
/// the data directory, its keys or the first admin are created.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    if !config.tls.self_signed {
        // A generated certificate lives in the data directory; given files
        // are only read, so a broken one fails here.
        Tls::from_config(&config).context("setting up TLS")?;
    }
    let state = open_state(&config).await?;
    let workers = start_workers(&state, &config);
    let served = serve_on(
        listener,
        api::router(state.clone()),
        &config,
        shutdown_signal(),
    )
    .await;
    workers
        .shutdown(Duration::from_secs(config.shutdown.grace_seconds))
        .await;
    // What was audited during the last requests reaches the database.
    state.auth.audit().flush().await;
    served
}

/// Starts the background workers over the opened state.
pub fn start_workers(state: &AppState, config: &Config) -> Workers {
    let mut workers = Workers::default();
    if config.uploads.session_ttl_seconds > 0 {
        workers.spawn(UploadExpiry {
            registry: state.registry.clone(),
            ttl: Duration::from_secs(config.uploads.session_ttl_seconds),
        });
    }
    workers
}

/// Serves `app` on `listener` (HTTPS when `[tls]` configures it) until
/// `shutdown` resolves, then stops accepting and gives in-flight requests
/// `shutdown.grace_seconds` to finish.
pub async fn serve_on(
    listener: TcpListener,
    app: Router,
    config: &Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let tls = Tls::from_config(config).context("setting up TLS")?;
    let addr = listener.local_addr()?;
    tracing::info!(
        listen = %addr,
        scheme = if tls.is_some() { "https" } else { "http" },
        data_dir = %config.data_dir.display(),
        "berth is serving"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let app = match &tls {
        Some(tls) => {
            tls.log_trust_hints(addr.port());
            app.layer(hsts_layer(config.tls.hsts_max_age_seconds))
        }
        None => app,
    };
    let mut server = std::pin::pin!(serve_connections(listener, app, tls, stopped));
    let grace = Duration::from_secs(config.shutdown.grace_seconds);
    tokio::select! {
        () = &mut server => return Ok(()),
        () = shutdown => {}
    }
    tracing::info!(
        grace_seconds = grace.as_secs(),
        "shutting down: finishing in-flight requests"
    );
    let _ = stop_tx.send(true);
    if tokio::time::timeout(grace, server).await.is_err() {
        tracing::warn!("grace period over; exiting with requests still running");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Largest read buffer of an HTTP/1 connection. hyper grows a connection's
/// buffer up to this while a body streams in. Its default (about 400 KiB)
/// had 64 concurrent uploads peak at ~47 MiB RSS; with 256 KiB they peak at
/// ~41 MiB, and a 1 GiB push is as fast within the disk's run-to-run noise.
const HTTP1_READ_BUFFER: usize = 256 * 1024;

/// Serves `app` on `listener` (HTTPS when `tls` is set) until `shutdown`
/// resolves; then stops accepting and returns when every open connection
/// has finished its in-flight request. Each request carries
/// `ConnectInfo<SocketAddr>`.
async fn serve_connections(
    listener: TcpListener,
    app: Router,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let acceptor = tls.as_ref().map(Tls::acceptor);
    let _reloader = tls.as_ref().map(|tls| AbortOnDrop(tls.watch_files()));
    let graceful = GracefulShutdown::new();
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
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let app = app.clone().map_request(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(remote));
            req
        });
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().max_buf_size(HTTP1_READ_BUFFER);
            let service = TowerToHyperService::new(app);
            let served = match acceptor {
                None => {
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    watcher.watch(connection).await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(tls::HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                tracing::debug!(%remote, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%remote, "TLS handshake timed out");
                                return;
                            }
                        };
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(connection).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `Strict-Transport-Security` on every answer of an HTTPS listener.
fn hsts_layer(max_age_seconds: u64) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_str(&format!("max-age={max_age_seconds}"))
            .expect("a number is a valid header value"),
    )
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
