//! Files that replicas sharing PostgreSQL must hold the same copy of: the
//! token signing keys (`keys/es256-*.pem`; a token one replica signs must
//! verify on every other) and the web UI's session key (`ui-session.key`;
//! a session cookie must open on every replica). At start, under the
//! store's lock, every stored copy is written into this replica's data
//! directory (the store's copy wins over a different local one), the keys
//! are created if there are none anywhere yet, and local keys the store
//! lacks (a key rotated on this replica) are stored.
//!
//! While they run, [`KeySync`] exchanges again every few seconds and puts
//! a changed key set in use, so that a key rotated anywhere (`berth keys
//! rotate` stores it at once) verifies everywhere within `KEY_SYNC`. A new
//! key signs only once it is `SETTLE` old: by then every replica verifies
//! it.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;

use crate::auth::token::TokenKeys;
use crate::auth::Authenticator;
use crate::metadata::{SharedFile, SharedFiles};
use crate::secret_file::Replace;

const KEY_DIR: &str = "keys";
const UI_SESSION_KEY: &str = "ui-session.key";

/// Exchanges the shared files of `data_dir` with `store`.
pub async fn share_files(store: &dyn SharedFiles, data_dir: &Path) -> anyhow::Result<()> {
    store
        .exchange_shared_files(&|stored| exchange(data_dir, stored))
        .await
        .context("sharing the token and session keys with the other replicas")
}

/// How often a replica exchanges the shared files again.
const KEY_SYNC: Duration = Duration::from_secs(5);
/// How old a new key must be before it signs: several exchanges, so that
/// every running replica has it by then.
pub const SETTLE: Duration = Duration::from_secs(30);

/// Keeps this replica's token keys the same as the other replicas'.
pub struct KeySync {
    pub store: Arc<dyn SharedFiles>,
    pub data_dir: std::path::PathBuf,
    pub authenticator: Arc<Authenticator>,
}

#[async_trait]
impl crate::workers::Worker for KeySync {
    fn name(&self) -> &'static str {
        "key-sync"
    }

    fn interval(&self) -> Duration {
        KEY_SYNC
    }

    async fn run_once(&self) -> anyhow::Result<String> {
        share_files(self.store.as_ref(), &self.data_dir).await?;
        let keys = TokenKeys::load_settled(&self.data_dir.join(KEY_DIR), SETTLE)
            .context("loading the token keys")?;
        let signing = keys.signing_kid().to_string();
        let verifying = keys.kids().count();
        if self.authenticator.install_keys(keys) {
            // The workers' runner logs this summary.
            return Ok(format!(
                "token keys changed: {verifying} verify, {signing} signs"
            ));
        }
        Ok(String::new())
    }
}

/// Whether `name` is one of the shared files (and so a safe path).
fn is_shared(name: &str) -> bool {
    if name == UI_SESSION_KEY {
        return true;
    }
    name.strip_prefix("keys/es256-")
        .and_then(|n| n.strip_suffix(".pem"))
        .is_some_and(|stamp| !stamp.is_empty() && stamp.bytes().all(|b| b.is_ascii_digit()))
}

fn exchange(dir: &Path, stored: Vec<SharedFile>) -> io::Result<Vec<SharedFile>> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.join(KEY_DIR))?;
    for file in &stored {
        if !is_shared(&file.name) {
            tracing::warn!(name = %file.name, "ignoring a shared file berth does not know");
            continue;
        }
        let path = dir.join(&file.name);
        if std::fs::read(&path).ok().as_deref() != Some(&file.content[..]) {
            crate::secret_file::write(&path, &file.content, 0o600, Replace::Overwrite)?;
        }
    }
    // Creates what exists nowhere yet (the first replica's first start).
    TokenKeys::load_or_create(&dir.join(KEY_DIR)).map_err(io::Error::other)?;
    crate::ui::ensure_session_key(dir)?;
    let mut local = vec![UI_SESSION_KEY.to_string()];
    for entry in std::fs::read_dir(dir.join(KEY_DIR))? {
        let name = format!("{KEY_DIR}/{}", entry?.file_name().to_string_lossy());
        if is_shared(&name) {
            local.push(name);
        }
    }
    let mut fresh = Vec::new();
    for name in local {
        if !stored.iter().any(|f| f.name == name) {
            let content = std::fs::read(dir.join(&name))?;
            fresh.push(SharedFile { name, content });
        }
    }
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_key_files_are_shared() {
        assert!(is_shared("ui-session.key"));
        assert!(is_shared("keys/es256-00000001733333333333.pem"));
        for name in [
            "keys/../../etc/passwd",
            "keys/es256-.pem",
            "metadata.db",
            "/ui-session.key",
            "keys/es256-1/../x.pem",
        ] {
            assert!(!is_shared(name), "{name}");
        }
    }

    #[test]
    fn a_second_replica_takes_the_first_ones_keys() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let stored = exchange(first.path(), Vec::new()).unwrap();
        assert_eq!(
            stored.len(),
            2,
            "a token key and the session key: {stored:?}"
        );
        let more = exchange(second.path(), stored.clone()).unwrap();
        assert!(more.is_empty(), "the second replica adds nothing: {more:?}");
        for file in &stored {
            assert_eq!(
                std::fs::read(second.path().join(&file.name)).unwrap(),
                file.content
            );
        }
        let keys = std::fs::read_dir(second.path().join(KEY_DIR))
            .unwrap()
            .count();
        assert_eq!(keys, 1, "no key of its own beside the shared one");
    }
}
