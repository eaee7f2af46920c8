//! Wiring: opens the embedded backends, builds the router, serves until
//! SIGTERM/SIGINT, then drains in-flight requests.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::core::Registry;
use crate::metadata::SqliteMetadata;
use crate::storage::FsStore;

/// Opens the embedded default backends under the data directory.
pub async fn open_registry(config: &Config) -> anyhow::Result<Registry> {
    let dir = &config.data_dir;
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    let storage = FsStore::open(dir)
        .await
        .with_context(|| format!("opening blob storage in {}", dir.display()))?;
    let metadata = SqliteMetadata::open(&dir.join("metadata.db"))
        .await
        .context("opening metadata database")?;
    Ok(Registry::new(
        Arc::new(storage),
        Arc::new(metadata),
        config.core_settings(),
    ))
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let registry = open_registry(&config).await?;
    let app = api::router(AppState {
        registry: Arc::new(registry),
    });
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    tracing::info!(listen = %listener.local_addr()?, data_dir = %config.data_dir.display(), "berth is serving");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app).with_graceful_shutdown({
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    });
    let grace = Duration::from_secs(config.shutdown.grace_seconds);
    let mut server = std::pin::pin!(std::future::IntoFuture::into_future(server));
    tokio::select! {
        result = &mut server => return result.context("server failed"),
        () = shutdown_signal() => {}
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

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
