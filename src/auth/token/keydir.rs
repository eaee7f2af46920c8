//! The key directory: P-256 keys as PKCS#8 PEM files named
//! `es256-<timestamp>.pem` (directory 0700, files 0600), the newest last.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        TokenKeys::load(dir, |_| None)
    }

    /// Loads every key of `dir` like [`TokenKeys::load_or_create`] (which
    /// must have run once), except that the key that signs is the newest
    /// one at least `settle` old, by the time in its name (the oldest when
    /// none is): replicas that each load the directory within `settle` of
    /// a rotation keep signing with a key that all of them verify.
    pub fn load_settled(dir: &Path, settle: Duration) -> Result<TokenKeys, TokenError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let settled = now.saturating_sub(settle.as_nanos());
        TokenKeys::load(dir, |stamps| {
            let newest_settled = stamps.iter().rposition(|s| *s <= settled);
            Some(newest_settled.unwrap_or(0))
        })
    }

    /// Loads every key of `dir`; `signer` picks the one that signs from
    /// the keys' stamps (oldest first), `None` for the newest.
    fn load(
        dir: &Path,
        signer: impl Fn(&[u128]) -> Option<usize>,
    ) -> Result<TokenKeys, TokenError> {
        let mut keys = Vec::new();
        let mut secrets = Vec::new();
        let mut stamps = Vec::new();
        for path in key_files(dir)? {
            let secret = read_key(&path)?;
            keys.push(KeyPair {
                kid: key_id(&secret.public_key()),
                public: secret.public_key(),
            });
            secrets.push(secret);
            stamps.push(stamp_of(&path).unwrap_or(0));
        }
        if secrets.is_empty() {
            return Err(TokenError::Io {
                path: dir.to_path_buf(),
                source: io::Error::new(io::ErrorKind::NotFound, "no es256-*.pem key"),
            });
        }
        let signs = signer(&stamps).unwrap_or(secrets.len() - 1);
        // The signing key goes last: the ring's newest signs.
        let pair = keys.remove(signs);
        keys.push(pair);
        TokenKeys::from_parts(keys, &secrets[signs])
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
/// The time in a key file's name (Unix ns).
fn stamp_of(path: &Path) -> Option<u128> {
    path.file_name()?
        .to_str()?
        .strip_prefix("es256-")?
        .strip_suffix(".pem")?
        .parse::<u128>()
        .ok()
}

pub(super) fn write_new_key(dir: &Path) -> Result<PathBuf, TokenError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let newest = key_files(dir)?.last().and_then(|p| stamp_of(p));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Renames `dir`'s newest key as if it had been written `ago` earlier.
    fn backdate_newest(dir: &Path, ago: Duration) {
        let newest = key_files(dir).unwrap().pop().unwrap();
        let stamp = stamp_of(&newest).unwrap() - ago.as_nanos();
        fs::rename(&newest, dir.join(format!("es256-{stamp:020}.pem"))).unwrap();
    }

    #[test]
    fn a_new_key_signs_once_it_has_settled() {
        let dir = tempfile::tempdir().unwrap();
        let first = TokenKeys::load_or_create(dir.path()).unwrap();
        let first_kid = first.signing_kid().to_string();
        backdate_newest(dir.path(), Duration::from_secs(3600));
        let new_kid = TokenKeys::rotate(dir.path()).unwrap();
        let settle = Duration::from_secs(30);
        let keys = TokenKeys::load_settled(dir.path(), settle).unwrap();
        assert_eq!(keys.signing_kid(), first_kid, "the new key is too young");
        assert_eq!(keys.kids().count(), 2, "both verify");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = super::super::Claims {
            iss: "iss".into(),
            sub: "alice".into(),
            aud: "svc".into(),
            exp: now + 300,
            nbf: now - 1,
            iat: now,
            jti: "j1".into(),
            access: Vec::new(),
            account: None,
            generation: None,
        };
        let newest = TokenKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(newest.signing_kid(), new_kid);
        let token = newest.issue(&claims).unwrap();
        assert!(
            keys.verify(&token, "svc", "iss").is_ok(),
            "the new key verifies"
        );
        backdate_newest(dir.path(), Duration::from_secs(60));
        let keys = TokenKeys::load_settled(dir.path(), settle).unwrap();
        assert_eq!(keys.signing_kid(), new_kid, "settled: it signs");
        // A first key signs at once: there is no other.
        let alone = tempfile::tempdir().unwrap();
        let only = TokenKeys::load_or_create(alone.path()).unwrap();
        let settled = TokenKeys::load_settled(alone.path(), settle).unwrap();
        assert_eq!(settled.signing_kid(), only.signing_kid());
    }
}
