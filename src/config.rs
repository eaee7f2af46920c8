//! The configuration: one documented serde tree. Precedence: built-in
//! defaults < TOML file (`--config`, or `BERTH_CONFIG`) < `BERTH_*`
//! environment variables (nested keys joined by `__`, e.g.
//! `BERTH_LIMITS__MAX_MANIFEST_BYTES`) < command-line flags.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::auth::AuthConfig;
use crate::storage::StorageConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port the registry listens on.
    pub listen: String,
    /// Directory holding everything berth stores: `blobs/`, `uploads/` (with
    /// `storage.kind = "fs"`), the SQLite metadata database `metadata.db`
    /// and the keys.
    pub data_dir: PathBuf,
    pub log: LogConfig,
    pub limits: LimitsConfig,
    pub uploads: UploadsConfig,
    pub shutdown: ShutdownConfig,
    pub cache: CacheConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub connections: ConnectionsConfig,
    pub audit: AuditConfig,
    pub gc: GcConfig,
    pub scrub: ScrubConfig,
    pub metadata: crate::metadata::MetadataConfig,
    pub metrics: crate::metrics::MetricsConfig,
    pub storage: StorageConfig,
}

/// Scrub (`berth scrub`, `POST /api/v1/scrub`): re-hashes stored blobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrubConfig {
    /// Bytes read per second at most, so serving is not starved. 0: no limit.
    pub bytes_per_second: u64,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig {
            bytes_per_second: 64 * 1024 * 1024,
        }
    }
}

/// Garbage collection: removes what no tag, index or subject reaches (and
/// what project policies let go), online, beside pushes and pulls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcConfig {
    /// Seconds between scheduled runs, counted from the last run's request
    /// (whichever process made it). 0: runs only on demand.
    pub interval_seconds: u64,
    /// Blobs, links and untagged manifests touched (uploaded, mounted,
    /// looked up) this recently are kept, so a push in progress loses
    /// nothing. Longer than the slowest push you expect.
    pub grace_seconds: u64,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval_seconds: 24 * 3600,
            grace_seconds: 3600,
        }
    }
}

/// Bounds on client connections, so that one careless or hostile client
/// cannot use up the file descriptors or the memory of the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Open client connections in all. A new connection beyond it is closed
    /// at once (and logged). berth also keeps it below its open-file limit,
    /// whose soft value it raises to the hard one at start.
    pub max: usize,
    /// Open connections from one client address (an IPv6 /64 counts as one
    /// address). A new connection beyond it is closed at once (and logged).
    pub max_per_address: usize,
    /// Seconds a client has to send the headers of a request, including
    /// the wait for the next request on a kept-alive HTTP/1 connection.
    pub header_read_timeout_seconds: u64,
    /// A connection on which nothing was read or written for this many
    /// seconds is closed. A transfer that moves bytes is never idle.
    pub idle_timeout_seconds: u64,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            max: 10_000,
            max_per_address: 512,
            header_read_timeout_seconds: 20,
            idle_timeout_seconds: 120,
        }
    }
}

/// The audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Audit events older than this many days are deleted by a background
    /// task (hourly). 0 keeps them forever.
    pub retention_days: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { retention_days: 90 }
    }
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
    /// Most descriptors (config, layers, index children) one
    /// manifest may list; a PUT with more is refused as `MANIFEST_INVALID`.
    pub max_manifest_descriptors: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadsConfig {
    /// On `POST .../blobs/uploads/?mount=DIGEST`, link the blob from any
    /// repository that has it when `from` is missing or lacks it, instead of
    /// asking the client to upload it again.
    pub auto_mount: bool,
    /// An upload session with no new bytes for this long, in seconds, is
    /// removed with its staged bytes by a background worker; staged bytes
    /// that no session owns are removed too (after a minute, or this TTL if
    /// shorter). 0 keeps sessions forever.
    pub session_ttl_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// How long a manifest or blob lookup is served from memory, in seconds
    /// (0 turns the cache off). Every write of this process invalidates it
    /// at once, and a repository deleted by another process (the CLI) within
    /// a second. With PostgreSQL metadata (replicas) the cache is off.
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
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            connections: ConnectionsConfig::default(),
            audit: AuditConfig::default(),
            gc: GcConfig::default(),
            scrub: ScrubConfig::default(),
            metadata: Default::default(),
            metrics: Default::default(),
            storage: StorageConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; with `key_file`, the listener speaks HTTPS.
    /// Both files are reloaded when they change.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the certificate.
    pub key_file: Option<PathBuf>,
    /// PEM CA bundle: when set, clients must present a certificate it signed (mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// Generate a self-signed certificate under the data directory (for trials).
    pub self_signed: bool,
    /// `max-age` of the Strict-Transport-Security header on HTTPS answers.
    pub hsts_max_age_seconds: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            self_signed: false,
            hsts_max_age_seconds: 31_536_000,
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
            max_manifest_descriptors: 10_000,
        }
    }
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            auto_mount: true,
            session_ttl_seconds: 24 * 60 * 60,
        }
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOverrides>,
}

/// `[tls]` settings given on the command line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Only `true` is an override: without the flag the lower layers decide.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub self_signed: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LogOverrides {
    pub json: bool,
}

/// Top-level keys of `Config`, the names `BERTH_*` variables may start with.
const SECTIONS: [&str; 17] = [
    "metadata",
    "listen",
    "data_dir",
    "log",
    "limits",
    "uploads",
    "shutdown",
    "cache",
    "auth",
    "tls",
    "connections",
    "audit",
    "gc",
    "scrub",
    "metrics",
    "storage",
    "admin_password",
];

/// `BERTH_*` variables that are not settings but are expected: the config
/// file's path, and the binary the test scripts run.
const NOT_SETTINGS: [&str; 2] = ["BERTH_CONFIG", "BERTH_BIN"];

/// What [`Config::validate`] found wrong, one problem a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<String>);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid configuration:")?;
        for problem in &self.0 {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

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
                Env::prefixed("BERTH_")
                    .split("__")
                    // The documented short form of the admin password.
                    .map(|key| {
                        if key.as_str().eq_ignore_ascii_case("admin_password") {
                            "auth.admin_password".into()
                        } else {
                            key.into()
                        }
                    })
                    .filter(|key| {
                        let section = key.as_str().split('.').next().unwrap_or("");
                        SECTIONS.iter().any(|s| section.eq_ignore_ascii_case(s))
                    }),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)
    }

    /// The effective configuration as TOML, with secrets redacted.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.auth.admin_password.is_some() {
            shown.auth.admin_password = Some("<redacted>".into());
        }
        shown.metadata.url = crate::metadata::redacted_url(&shown.metadata.url);
        shown.storage = shown.storage.redacted();
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// Checks what the types cannot express, before anything is created:
    /// the listen address, the TLS settings and the files settings name.
    /// Reports every problem at once.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut problems = Vec::new();
        if let Err(e) = std::net::ToSocketAddrs::to_socket_addrs(self.listen.as_str()) {
            problems.push(format!(
                "listen = {:?}: not an address and port such as 0.0.0.0:5000 or [::]:5000 ({e})",
                self.listen
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            problems.push("data_dir is empty".to_string());
        } else if self.data_dir.exists() && !self.data_dir.is_dir() {
            problems.push(format!(
                "data_dir = {:?}: exists and is not a directory",
                self.data_dir
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            problems.push(format!("log.level = {:?}: {e}", self.log.level));
        }
        if self.limits.max_manifest_bytes == 0 {
            problems.push("limits.max_manifest_bytes must be at least 1".to_string());
        }
        self.auth.check(&mut problems);
        if let Err(e) = crate::metadata::Backend::parse(&self.metadata_url()) {
            problems.push(format!("metadata.url: {e}"));
        }
        self.metrics.check(&mut problems);
        self.storage.check(&mut problems);
        let tls = &self.tls;
        match (&tls.cert_file, &tls.key_file, tls.self_signed) {
            (Some(_), None, _) => problems.push("tls.cert_file is set but tls.key_file is not".into()),
            (None, Some(_), _) => problems.push("tls.key_file is set but tls.cert_file is not".into()),
            (Some(_), Some(_), true) => problems.push(
                "tls.self_signed conflicts with tls.cert_file/tls.key_file: set one or the other"
                    .into(),
            ),
            (None, None, false) if tls.client_ca_file.is_some() => problems.push(
                "tls.client_ca_file needs TLS: set tls.cert_file and tls.key_file, or tls.self_signed"
                    .into(),
            ),
            _ => {}
        }
        let files = [
            ("tls.cert_file", &tls.cert_file),
            ("tls.key_file", &tls.key_file),
            ("tls.client_ca_file", &tls.client_ca_file),
            ("auth.htpasswd_file", &self.auth.htpasswd_file),
            ("auth.admin_password_file", &self.auth.admin_password_file),
        ];
        for (key, file) in files {
            if let Some(path) = file.as_ref().filter(|p| !p.is_file()) {
                problems.push(format!("{key} = {path:?}: no such file"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Invalid(problems))
        }
    }

    /// `BERTH_*` environment variables that name no setting (a typo such as
    /// `BERTH_LISTNE`): the configuration ignores them, the caller warns.
    pub fn unknown_env_vars() -> Vec<String> {
        let mut unknown: Vec<String> = std::env::vars_os()
            .filter_map(|(key, _)| key.into_string().ok())
            .filter(|key| {
                let upper = key.to_ascii_uppercase();
                let Some(rest) = upper.strip_prefix("BERTH_") else {
                    return false;
                };
                let section = rest.split("__").next().unwrap_or("");
                !NOT_SETTINGS.contains(&upper.as_str())
                    && !SECTIONS.iter().any(|s| section.eq_ignore_ascii_case(s))
            })
            .collect();
        unknown.sort();
        unknown
    }

    /// `metadata.url`, or the embedded database under the data directory.
    pub fn metadata_url(&self) -> String {
        if self.metadata.url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("metadata.db").display())
        } else {
            self.metadata.url.clone()
        }
    }

    /// Whether several berth processes may share this configuration's
    /// metadata (PostgreSQL): then no process owns the data directory.
    pub fn shared_metadata(&self) -> bool {
        matches!(
            crate::metadata::Backend::parse(&self.metadata_url()),
            Ok(crate::metadata::Backend::Postgres(_))
        )
    }

    pub fn core_settings(&self) -> crate::core::Settings {
        crate::core::Settings {
            max_manifest_bytes: self.limits.max_manifest_bytes,
            max_manifest_descriptors: self.limits.max_manifest_descriptors,
            auto_mount: self.uploads.auto_mount,
            // Another replica's write is not seen by this process's cache.
            cache_max_age: if self.shared_metadata() {
                std::time::Duration::ZERO
            } else {
                std::time::Duration::from_secs(self.cache.max_age_seconds)
            },
            gc_grace: std::time::Duration::from_secs(self.gc.grace_seconds),
            scrub_rate: self.scrub.bytes_per_second,
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests;
