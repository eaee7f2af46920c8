//! The server layer, above `api` and `ui`: opens the embedded backends into
//! the application state, assembles the router with its global layers
//! (`router`), serves (plain HTTP, or HTTPS when `[tls]` says so; see
//! `connections`) until SIGTERM/SIGINT, then drains in-flight requests.

mod connections;
mod router;
mod shared;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{header, HeaderValue};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::set_header::SetResponseHeaderLayer;

pub use router::{metrics_router, router, AppState};

use crate::auth::Auth;
use crate::config::Config;
use crate::core::Registry;
use crate::metrics::{MeteredMetadata, MeteredStorage, Metrics};
use crate::storage::{lock_data_dir, FsStore, S3Store, Storage, StorageKind};
use crate::tls::Tls;
use crate::workers::{
    AuditRetention, CacheSync, GarbageCollector, LoginSync, Scrubber, UploadExpiry, Workers,
};
use connections::serve_connections;

/// Opens the embedded default backends under the data directory: the
/// registry and the authentication service over one metadata database.
pub async fn open_state(config: &Config) -> anyhow::Result<AppState> {
    let dir = &config.data_dir;
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    let opened = open_backend(config).await?;
    let storage = open_storage(config, opened.session_locks.clone()).await?;
    if let Some(store) = &opened.shared_files {
        shared::share_files(store.as_ref(), dir).await?;
    }
    let metadata = opened.metadata;
    let login_ledger = opened.login_ledger;
    let shared_files = opened.shared_files;
    let metrics = Metrics::new(metadata.clone());
    let storage = MeteredStorage::new(storage, metrics.clone());
    let timed = MeteredMetadata::new(metadata.clone(), metrics.clone());
    let registry = Registry::new(Arc::new(storage), Arc::new(timed), config.core_settings());
    let browse = crate::core::Browser::new(metadata.clone(), metadata.clone());
    let ui = crate::ui::UiContext::open(dir, browse).context("opening the web UI's session key")?;
    let auth = Auth::open(metadata, &config.auth, dir)
        .await
        .context("setting up authentication")?;
    let tls_on = config.tls.self_signed || config.tls.cert_file.is_some();
    Ok(AppState {
        registry: Arc::new(registry),
        auth: Arc::new(auth),
        scheme: if tls_on { "https" } else { "http" },
        ui: Arc::new(ui),
        metrics,
        metrics_on_main: config.metrics.listen.is_none(),
        login_ledger,
        shared_files,
    })
}

/// How old a rotated token key must be before replicas sign with it.
pub use shared::SETTLE as KEY_SETTLE;

/// Stores the data directory's token and session keys for the other
/// replicas, when the metadata backend is shared; whether it is.
pub async fn share_keys(config: &Config) -> anyhow::Result<bool> {
    if !config.shared_metadata() {
        return Ok(false);
    }
    let opened = open_backend(config).await?;
    let Some(store) = opened.shared_files else {
        return Ok(false);
    };
    shared::share_files(store.as_ref(), &config.data_dir).await?;
    Ok(true)
}

/// Opens the metadata backend `metadata.url` names.
pub async fn open_metadata(config: &Config) -> anyhow::Result<Arc<dyn crate::metadata::Metadata>> {
    Ok(open_backend(config).await?.metadata)
}

async fn open_backend(config: &Config) -> anyhow::Result<crate::metadata::Opened> {
    let url = config.metadata_url();
    crate::metadata::open(&url, config.metadata.max_connections)
        .await
        .with_context(|| {
            format!(
                "opening the metadata database {}",
                crate::metadata::redacted_url(&url)
            )
        })
}

/// The blob store `storage.kind` names. Either way the store holds the
/// data directory's lock: the SQLite metadata there has one user (an
/// `io::Error` of kind `WouldBlock` in the chain when another holds it).
/// `locks`: the upload-session locks of a metadata backend replicas share.
pub async fn open_storage(
    config: &Config,
    locks: Option<Arc<dyn crate::storage::SessionLocks>>,
) -> anyhow::Result<Arc<dyn Storage>> {
    let dir = &config.data_dir;
    Ok(match config.storage.kind {
        StorageKind::Fs => Arc::new(
            FsStore::open(dir)
                .await
                .with_context(|| format!("opening blob storage in {}", dir.display()))?,
        ),
        StorageKind::S3 => {
            let owner = lock_data_dir(dir).with_context(|| format!("opening {}", dir.display()))?;
            let mut store = S3Store::open(&config.storage).await?;
            if let Some(locks) = locks {
                store = store.with_locks(locks);
            }
            Arc::new(store.holding(owner))
        }
    })
}

/// Builds the whole HTTP application for `config` over the embedded backends.
pub async fn build_app(config: &Config) -> anyhow::Result<Router> {
    Ok(router(open_state(config).await?))
}

/// Starts in an order that lets a failed start leave nothing behind: the
/// configuration is checked, the port bound and the TLS files loaded before
/// the data directory, its keys or the first admin are created.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    config.validate()?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let metrics_listener = match &config.metrics.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr} (metrics.listen)"))?,
        ),
        None => None,
    };
    if !config.tls.self_signed {
        // A generated certificate lives in the data directory; given files
        // are only read, so a broken one fails here.
        Tls::from_config(&config).context("setting up TLS")?;
    }
    // On the embedded default the blob store holds the data directory's
    // lock: this process alone serves it, so a collection run it finds
    // running was left by a dead one. Replicas sharing PostgreSQL are not
    // exclusive: a run is theirs to share.
    let state = open_state(&config).await?;
    let workers = start_workers(&state, &config, !config.shared_metadata());
    let metrics_server = metrics_listener.map(|l| serve_metrics(l, state.metrics.clone(), &config));
    let served = serve_on(listener, router(state.clone()), &config, shutdown_signal()).await;
    workers
        .shutdown(Duration::from_secs(config.shutdown.grace_seconds))
        .await;
    // What was audited during the last requests reaches the database.
    state.auth.audit().flush().await;
    if let Some(task) = metrics_server {
        task.abort();
    }
    served
}

/// Serves `GET /metrics` on its own plain-HTTP listener until aborted,
/// with the main listener's connection limits (it faces fewer clients, but
/// no less careless ones).
fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    config: &Config,
) -> tokio::task::JoinHandle<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(listen = %addr, "serving metrics");
    }
    let limits = config.connections.clone();
    tokio::spawn(async move {
        let app = metrics_router(metrics);
        serve_connections(listener, app, None, &limits, std::future::pending()).await;
    })
}

/// Starts the background workers over the opened state; `exclusive`: this
/// process holds the data directory's lock.
pub fn start_workers(state: &AppState, config: &Config, exclusive: bool) -> Workers {
    let mut workers = Workers::default();
    workers.spawn(CacheSync {
        registry: state.registry.clone(),
    });
    workers.spawn(GarbageCollector {
        registry: state.registry.clone(),
        metrics: state.metrics.clone(),
        interval: Duration::from_secs(config.gc.interval_seconds),
        holder: gc_holder(),
        exclusive,
        started: Default::default(),
        since: crate::metadata::now_ms(),
    });
    workers.spawn(Scrubber {
        registry: state.registry.clone(),
        metrics: state.metrics.clone(),
        exclusive,
        started: Default::default(),
    });
    if config.audit.retention_days > 0 {
        workers.spawn(AuditRetention {
            audit: state.auth.audit().clone(),
            retention: Duration::from_secs(config.audit.retention_days.saturating_mul(24 * 3600)),
        });
    }
    if config.uploads.session_ttl_seconds > 0 {
        workers.spawn(UploadExpiry {
            registry: state.registry.clone(),
            ttl: Duration::from_secs(config.uploads.session_ttl_seconds),
        });
    }
    if let Some(store) = &state.shared_files {
        workers.spawn(shared::KeySync {
            store: store.clone(),
            data_dir: config.data_dir.clone(),
            authenticator: state.auth.authenticator.clone(),
        });
    }
    if let Some(ledger) = &state.login_ledger {
        let authenticator = state.auth.authenticator.clone();
        if let Some(outbox) = authenticator.login_limiter().share() {
            workers.spawn(LoginSync::new(authenticator, ledger.clone(), outbox));
        }
    }
    workers
}

/// This process as a garbage-collection lease holder: host, pid and a
/// random part (a pid can be reused).
pub fn gc_holder() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "berth".into());
    let nonce = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{host}:{}:{nonce}", std::process::id())
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
    return_large_allocations();
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
    let mut server = std::pin::pin!(serve_connections(
        listener,
        app,
        tls,
        &config.connections,
        stopped
    ));
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

/// Makes the allocator give large blocks back to the system when they are
/// freed. glibc's default raises its mmap threshold to the size of the
/// last large block freed, after which each password check's 19 MiB
/// (argon2id) came from a per-thread arena that kept it: 100 logins grew
/// the process by hundreds of MiB, never returned. With a fixed threshold
/// such blocks are always mapped and unmapped.
fn return_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const THRESHOLD: libc::c_int = 1024 * 1024;
        // SAFETY: mallopt only changes the allocator's tuning parameters.
        if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) } != 1 {
            tracing::warn!("could not set the allocator's mmap threshold");
        }
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
