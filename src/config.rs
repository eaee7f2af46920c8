//! The configuration: one documented serde tree. Precedence: built-in
//! defaults < TOML file (`--config`, or `BERTH_CONFIG`) < `BERTH_*`
//! environment variables (nested keys joined by `__`, e.g.
//! `BERTH_LIMITS__MAX_MANIFEST_BYTES`) < command-line flags.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port the registry listens on.
    pub listen: String,
    /// Directory holding everything berth stores: `blobs/`, `uploads/` and
    /// the SQLite metadata database `metadata.db`.
    pub data_dir: PathBuf,
    pub log: LogConfig,
    pub limits: LimitsConfig,
    pub uploads: UploadsConfig,
    pub shutdown: ShutdownConfig,
    pub cache: CacheConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Log filter (`error`, `warn`, `info`, `debug`, or a tracing filter such
    /// as `berth=debug,tower_http=info`). `RUST_LOG` overrides it.
    pub level: String,
    /// Write logs as JSON lines instead of text.
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest manifest accepted by a PUT, in bytes.
    pub max_manifest_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadsConfig {
    /// On `POST .../blobs/uploads/?mount=DIGEST`, link the blob from any
    /// repository that has it when `from` is missing or lacks it, instead of
    /// asking the client to upload it again.
    pub auto_mount: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// How long a manifest or blob lookup is served from memory, in seconds
    /// (0 turns the cache off). Within one process every write invalidates
    /// it at once; the age bound matters only for replicas sharing metadata.
    pub max_age_seconds: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_age_seconds: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// On SIGTERM/SIGINT, how long in-flight requests may still run before
    /// the process exits anyway, in seconds.
    pub grace_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "0.0.0.0:5000".into(),
            data_dir: PathBuf::from("./data"),
            log: LogConfig::default(),
            limits: LimitsConfig::default(),
            uploads: UploadsConfig::default(),
            shutdown: ShutdownConfig::default(),
            cache: CacheConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            json: false,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_manifest_bytes: 4 * 1024 * 1024,
        }
    }
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig { auto_mount: true }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { grace_seconds: 30 }
    }
}

/// Settings given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogOverrides>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LogOverrides {
    pub json: bool,
}

/// Top-level keys of `Config`, the names `BERTH_*` variables may start with.
const SECTIONS: [&str; 7] = [
    "listen", "data_dir", "log", "limits", "uploads", "shutdown", "cache",
];

impl Config {
    /// Loads the effective configuration from every layer.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Box<figment::Error>> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("BERTH_CONFIG").map(PathBuf::from));
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(Box::new(figment::Error::from(format!(
                    "config file {} does not exist",
                    file.display()
                ))));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment
            .merge(
                // Only variables naming a configuration section: other
                // BERTH_* variables (scripts' own, BERTH_CONFIG) are not ours.
                Env::prefixed("BERTH_").split("__").filter(|key| {
                    let section = key.as_str().split('.').next().unwrap_or("");
                    SECTIONS.iter().any(|s| section.eq_ignore_ascii_case(s))
                }),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)
    }

    /// The effective configuration as TOML (no secrets exist yet; when they
    /// do, they are redacted here).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    pub fn core_settings(&self) -> crate::core::Settings {
        crate::core::Settings {
            max_manifest_bytes: self.limits.max_manifest_bytes,
            auto_mount: self.uploads.auto_mount,
            cache_max_age: std::time::Duration::from_secs(self.cache.max_age_seconds),
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("berth.toml", "listen = \"127.0.0.1:1\"\ndata_dir = \"/from-file\"\n[limits]\nmax_manifest_bytes = 10\n")?;
            jail.set_env("BERTH_DATA_DIR", "/from-env");
            jail.set_env("BERTH_BIN", "/not/a/setting");
            jail.set_env("BERTH_LIMITS__MAX_MANIFEST_BYTES", "20");
            let overrides = Overrides {
                listen: Some("127.0.0.1:2".into()),
                ..Overrides::default()
            };
            let c = Config::load(Some(Path::new("berth.toml")), &overrides).unwrap();
            assert_eq!(c.listen, "127.0.0.1:2");
            assert_eq!(c.data_dir, PathBuf::from("/from-env"));
            assert_eq!(c.limits.max_manifest_bytes, 20);
            assert!(c.uploads.auto_mount);
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "lisen = \"x\"\n")?;
            assert!(Config::load(Some(Path::new("bad.toml")), &Overrides::default()).is_err());
            assert!(Config::load(Some(Path::new("missing.toml")), &Overrides::default()).is_err());
            Ok(())
        });
    }

    #[test]
    fn printed_config_round_trips() {
        let c = Config::default();
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }
}
