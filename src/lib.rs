//! berth: a container image registry (OCI Distribution Spec v1.1, Docker
//! Registry HTTP API V2). Layers, top to bottom: `server` → `api` / `ui`
//! (HTTP adapters, importing neither each other; `http` holds what both read
//! from a request) → `core` / `auth` → `metadata` / `storage` → `oci`.
//! Arrows only point down. `metrics` is instrumentation beside `tracing`:
//! `server`, `api` and `workers` record into it; it reads only the
//! `storage` and `metadata` contracts (the timing decorators, the pools).

pub mod api;
pub mod auth;
pub mod config;
pub mod core;
pub mod http;
pub mod metadata;
pub mod metrics;
pub mod oci;
pub mod secret_file;
pub mod server;
pub mod storage;
pub mod tls;
pub mod ui;
pub mod workers;
