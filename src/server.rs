//! Wiring: opens the embedded backends, builds the router, serves (plain
//! HTTP, or HTTPS when `[tls]` says so) until SIGTERM/SIGINT, then drains
//! in-flight requests.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{header, HeaderValue};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::api::{self, AppState};
use crate::auth::AuthService;
use crate::config::Config;
use crate::core::Registry;
use crate::metadata::SqliteMetadata;
use crate::storage::FsStore;
use crate::tls::{self, Tls};

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

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let state = open_state(&config).await?;
    let listener = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let served = serve_on(
        listener,
        api::router(state.clone()),
        &config,
        shutdown_signal(),
    )
    .await;
    // What was audited during the last requests reaches the database.
    state.auth.audit().flush().await;
    served
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
    let mut server: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match tls {
        None => Box::pin(
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(stopped)
            .into_future(),
        ),
        Some(tls) => {
            tls.log_trust_hints(addr.port());
            let app = app.layer(hsts_layer(config.tls.hsts_max_age_seconds));
            Box::pin(async move {
                tls::serve(listener, app, tls, stopped).await;
                Ok(())
            })
        }
    };
    let grace = Duration::from_secs(config.shutdown.grace_seconds);
    tokio::select! {
        result = &mut server => return result.context("server failed"),
        () = shutdown => {}
    }
    tracing::info!(
        grace_seconds = grace.as_secs(),
        "shutting down: finishing in-flight requests"
    );
    let _ = stop_tx.send(true);
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result.context("server failed")?,
        Err(_) => tracing::warn!("grace period over; exiting with requests still running"),
    }
    tracing::info!("stopped");
    Ok(())
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
