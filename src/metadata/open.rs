//! Choosing and opening a metadata backend from its URL.

use std::path::PathBuf;
use std::sync::Arc;

use super::{
    LoginLedger, Metadata, PgMetadata, PgSessionLocks, Result, SharedFiles, SqliteMetadata,
};
use crate::storage::SessionLocks;

/// The backend a metadata URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://<path>`: the embedded database file.
    Sqlite(PathBuf),
    /// `postgres://...` or `postgresql://...`, kept whole for the driver.
    Postgres(String),
}

impl Backend {
    pub fn parse(url: &str) -> std::result::Result<Backend, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(
                    "sqlite:// needs a file path, e.g. sqlite:///var/lib/berth/metadata.db".into(),
                );
            }
            return Ok(Backend::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return match url.parse::<sqlx::postgres::PgConnectOptions>() {
                Ok(_) => Ok(Backend::Postgres(url.to_string())),
                Err(e) => Err(format!("{}: {e}", redacted_url(url))),
            };
        }
        Err(format!(
            "{:?} is neither sqlite://<path> nor postgres://user:password@host:port/database",
            redacted_url(url)
        ))
    }
}

/// An opened backend.
pub struct Opened {
    pub metadata: Arc<dyn Metadata>,
    /// Where the files replicas must share are kept, when other processes
    /// share this backend (PostgreSQL).
    pub shared_files: Option<Arc<dyn SharedFiles>>,
    /// Upload-session locks every process sharing the backend sees (for a
    /// blob store that has none of its own).
    pub session_locks: Option<Arc<dyn SessionLocks>>,
    /// Failed-login counts every process sharing the backend sees.
    pub login_ledger: Option<Arc<dyn LoginLedger>>,
}

/// Opens the backend `url` names; `max_connections` bounds PostgreSQL's pool.
pub async fn open(url: &str, max_connections: u32) -> Result<Opened> {
    match Backend::parse(url).map_err(super::MetadataError::Corrupt)? {
        Backend::Sqlite(path) => Ok(Opened {
            metadata: Arc::new(SqliteMetadata::open(&path).await?),
            shared_files: None,
            session_locks: None,
            login_ledger: None,
        }),
        Backend::Postgres(url) => {
            let pg = Arc::new(PgMetadata::open(&url, max_connections).await?);
            let locks = PgSessionLocks {
                pool: pg.pool.clone(),
            };
            Ok(Opened {
                metadata: pg.clone(),
                shared_files: Some(pg.clone()),
                login_ledger: Some(pg),
                session_locks: Some(Arc::new(locks)),
            })
        }
    }
}

/// `url` with the password of its user part replaced, for logs and
/// `berth config print`.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or("");
            format!("{scheme}://{name}:<redacted>@{host}{path}")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(
            Backend::parse("sqlite:///var/lib/berth/metadata.db"),
            Ok(Backend::Sqlite("/var/lib/berth/metadata.db".into()))
        );
        assert!(matches!(
            Backend::parse("postgres://berth:pw@db:5432/berth"),
            Ok(Backend::Postgres(_))
        ));
        let e = Backend::parse("mysql://root:hunter2@db/berth").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(Backend::parse("sqlite://").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redacted_url("postgres://berth:s3cret@db:5432/berth"),
            "postgres://berth:<redacted>@db:5432/berth"
        );
        assert_eq!(redacted_url("postgres://db/berth"), "postgres://db/berth");
        assert_eq!(
            redacted_url("sqlite:///data/metadata.db"),
            "sqlite:///data/metadata.db"
        );
    }
}
