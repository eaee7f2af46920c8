//! `[metadata]`: where the metadata lives.

use serde::{Deserialize, Serialize};

/// Where the metadata lives: the embedded SQLite file, or a PostgreSQL
/// database that several berth replicas share (the scale-out mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataConfig {
    /// `sqlite://<path>`, or `postgres://user:password@host:port/database`.
    /// Empty: `sqlite://<data_dir>/metadata.db`.
    pub url: String,
    /// Most connections this process opens to PostgreSQL (SQLite always
    /// uses one writer and eight readers).
    pub max_connections: u32,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            url: String::new(),
            max_connections: 16,
        }
    }
}
