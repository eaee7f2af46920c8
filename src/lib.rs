//! berth: a container image registry (OCI Distribution Spec v1.1, Docker
//! Registry HTTP API V2). Layers, top to bottom: `api` → `core` →
//! `metadata` / `storage` → `oci`. Arrows only point down.

pub mod api;
pub mod auth;
pub mod config;
pub mod core;
pub mod metadata;
pub mod oci;
pub mod secret_file;
pub mod server;
pub mod storage;
pub mod tls;
pub mod ui;
pub mod workers;
