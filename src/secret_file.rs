//! The one way berth writes a file that must never be seen half-written or
//! lost after a crash (token signing keys, the UI session key, generated TLS
//! keys and certificates): a temporary file beside the target, created with
//! its final mode (0600 for secrets), written and fsynced, then moved into
//! place, and the directory fsynced so that the new name is durable too.
//! On any error the temporary file is removed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What happens when the target already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// The new content replaces the old (a rename over it).
    Overwrite,
    /// The target is only created: `AlreadyExists` if it is there, so that
    /// of two processes creating it at once the first one wins.
    Never,
}

/// Writes `data` to `path` with permissions `mode`, atomically and durably.
pub fn write(path: &Path, data: &[u8], mode: u32, replace: Replace) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let temp = temp_path(dir, path);
    let result = write_synced(&temp, data, mode).and_then(|()| match replace {
        Replace::Overwrite => fs::rename(&temp, path),
        Replace::Never => fs::hard_link(&temp, path),
    });
    // After a rename there is nothing left to remove; after a link (or a
    // failure) the temporary name goes.
    if replace == Replace::Never || result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    File::open(dir)?.sync_all()
}

fn temp_path(dir: &Path, path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4()))
}

fn write_synced(temp: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(temp)?;
    file.write_all(data)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_with_the_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        write(&path, b"secret", 0o600, Replace::Never).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(entries(dir.path()), ["key.pem"]);
    }

    #[test]
    fn never_keeps_the_first_writer_and_overwrite_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.key");
        write(&path, b"first", 0o600, Replace::Never).unwrap();
        let again = write(&path, b"second", 0o600, Replace::Never).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        write(&path, b"third", 0o644, Replace::Overwrite).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"third");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(entries(dir.path()), ["session.key"]);
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("cert.pem");
        assert!(write(&path, b"x", 0o600, Replace::Overwrite).is_err());
        assert!(entries(dir.path()).is_empty());
    }
}
