//! The key directory: P-256 keys as PKCS#8 PEM files named
//! `es256-<timestamp>.pem` (directory 0700, files 0600), the newest last.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use p256::SecretKey;
use rand::rngs::OsRng;

use super::keyring::KeyPair;
use super::kid::key_id;
use super::{TokenError, TokenKeys};
use crate::secret_file::Replace;

impl TokenKeys {
    /// Loads every `es256-*.pem` key in `dir`, first creating `dir` (mode
    /// 0700) and a key (mode 0600) when there is none. A file that is not a
    /// P-256 private key is an error, not skipped: it would otherwise be a
    /// key that silently stopped verifying.
    ///
    /// Replicas that share tokens must share this directory's content; two
    /// processes starting at once on an empty directory would each create
    /// a key, so create it once (or run [`TokenKeys::rotate`]) beforehand.
    pub fn load_or_create(dir: &Path) -> Result<TokenKeys, TokenError> {
        create_private_dir(dir)?;
        if key_files(dir)?.is_empty() {
            let path = write_new_key(dir)?;
            tracing::info!(path = %path.display(), "created a token signing key");
        }
        let mut keys = Vec::new();
        let mut secrets = Vec::new();
        for path in key_files(dir)? {
            let secret = read_key(&path)?;
            keys.push(KeyPair {
                kid: key_id(&secret.public_key()),
                public: secret.public_key(),
            });
            secrets.push(secret);
        }
        let newest = secrets.pop().expect("a key was created above");
        TokenKeys::from_parts(keys, &newest)
    }

    /// Adds a new signing key to `dir` (created if missing) and returns its
    /// `kid`. Processes that loaded the directory before keep signing with
    /// the older key until they load it again; tokens signed by either key
    /// verify wherever both are loaded.
    pub fn rotate(dir: &Path) -> Result<String, TokenError> {
        create_private_dir(dir)?;
        let path = write_new_key(dir)?;
        let kid = key_id(&read_key(&path)?.public_key());
        tracing::info!(path = %path.display(), %kid, "added a token signing key");
        Ok(kid)
    }
}

pub(super) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> TokenError + '_ {
    move |source| TokenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn create_private_dir(dir: &Path) -> Result<(), TokenError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))
}

/// The key files of `dir`, oldest first.
pub(super) fn key_files(dir: &Path) -> Result<Vec<PathBuf>, TokenError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("es256-") && name.ends_with(".pem") {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

pub(super) fn read_key(path: &Path) -> Result<SecretKey, TokenError> {
    let meta = fs::metadata(path).map_err(io_error(path))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            "token signing key is readable by other users; chmod 600 it"
        );
    }
    let pem = fs::read_to_string(path).map_err(io_error(path))?;
    SecretKey::from_pkcs8_pem(&pem)
        .or_else(|_| SecretKey::from_sec1_pem(&pem))
        .map_err(|_| TokenError::BadKey {
            path: path.to_path_buf(),
        })
}

/// Writes a fresh key whose name sorts after every key already in `dir`;
/// through `secret_file`, so a crash never leaves half a key.
pub(super) fn write_new_key(dir: &Path) -> Result<PathBuf, TokenError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let newest = key_files(dir)?.last().and_then(|p| {
        p.file_name()?
            .to_str()?
            .strip_prefix("es256-")?
            .strip_suffix(".pem")?
            .parse::<u128>()
            .ok()
    });
    let stamp = newest.map_or(now, |n| now.max(n + 1));
    let path = dir.join(format!("es256-{stamp:020}.pem"));

    let secret = SecretKey::random(&mut OsRng);
    let pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| TokenError::Sign(e.to_string()))?;
    crate::secret_file::write(&path, pem.as_bytes(), 0o600, Replace::Never)
        .map_err(io_error(&path))?;
    Ok(path)
}
