//! An htpasswd file as a source of accounts, as Apache's `htpasswd` writes
//! it: one `user:hash` per line.
//!
//! Accepted hashes: bcrypt (`$2y$`, `$2a$`, `$2b$`; `htpasswd -B`), Apache's
//! MD5 crypt (`$apr1$`; `htpasswd -m`, its default) and `{SHA}` (base64 of
//! an unsalted SHA-1; `htpasswd -s`). Plain-text, `crypt(3)` DES and any
//! other format are refused: such an entry is left out, with one warning
//! naming the user and the line, never the hash.
//!
//! The file is re-read when its modification time, size or inode changes
//! (looked at no more than once a second, on the next verification); if the
//! new version can't be read, the accounts already loaded stay in force.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use md5::{Digest as _, Md5};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// How often, at most, the file's metadata is looked at.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Accounts read from an htpasswd file, kept fresh as the file changes.
pub struct HtpasswdFile {
    path: PathBuf,
    check_interval: Duration,
    state: Mutex<State>,
}

struct State {
    entries: HashMap<String, Hash>,
    version: Option<FileVersion>,
    checked_at: Instant,
    /// Set while the file can't be read, so the failure is logged once, not
    /// on every check.
    failing: bool,
}

/// What tells one version of the file from the next.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileVersion {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileVersion {
    fn of(meta: &std::fs::Metadata) -> FileVersion {
        FileVersion {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
        }
    }
}

/// A stored password hash. No `Debug`: hashes of weak passwords are as
/// good as the passwords.
#[derive(Clone)]
enum Hash {
    Bcrypt(String),
    Apr1 { salt: String, checksum: String },
    Sha1([u8; 20]),
}

impl HtpasswdFile {
    /// Reads the file at `path`. Fails when it can't be read; a file with no
    /// usable entry opens fine (and is warned about).
    pub fn open(path: PathBuf) -> io::Result<HtpasswdFile> {
        let meta = std::fs::metadata(&path)?;
        let text = std::fs::read_to_string(&path)?;
        let entries = parse(&text, &path);
        if entries.is_empty() {
            tracing::warn!(path = %path.display(), "htpasswd file has no usable entry");
        }
        Ok(HtpasswdFile {
            state: Mutex::new(State {
                entries,
                version: Some(FileVersion::of(&meta)),
                checked_at: Instant::now(),
                failing: false,
            }),
            path,
            check_interval: CHECK_INTERVAL,
        })
    }

    /// Checks `password` against `user`'s entry: `None` when the file has no
    /// (usable) entry for `user`, otherwise whether the password matches.
    /// bcrypt entries cost what their cost factor says (about 1 ms at cost
    /// 4, 60 ms at 10): call from a blocking-friendly context or accept it.
    pub fn verify(&self, user: &str, password: &str) -> Option<bool> {
        let hash = {
            let mut state = self.lock();
            self.refresh(&mut state);
            state.entries.get(user).cloned()
        }?;
        Some(hash.matches(password))
    }

    /// How many usable entries are loaded.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no usable entry is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is replaced whole, never left half-updated, so a panic
        // elsewhere while holding the lock leaves it usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refresh(&self, state: &mut State) {
        if state.checked_at.elapsed() < self.check_interval {
            return;
        }
        state.checked_at = Instant::now();
        let read = std::fs::metadata(&self.path).and_then(|meta| {
            let version = FileVersion::of(&meta);
            if state.version == Some(version) {
                return Ok(None);
            }
            Ok(Some((version, std::fs::read_to_string(&self.path)?)))
        });
        match read {
            Ok(None) => state.failing = false,
            Ok(Some((version, text))) => {
                state.entries = parse(&text, &self.path);
                state.version = Some(version);
                state.failing = false;
                tracing::info!(
                    path = %self.path.display(),
                    accounts = state.entries.len(),
                    "htpasswd file reloaded"
                );
            }
            Err(error) => {
                if !state.failing {
                    tracing::warn!(
                        path = %self.path.display(),
                        %error,
                        "cannot re-read the htpasswd file; keeping the accounts loaded before"
                    );
                }
                state.failing = true;
            }
        }
    }
}

impl fmt::Debug for HtpasswdFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HtpasswdFile")
            .field("path", &self.path)
            .field("accounts", &self.len())
            .finish()
    }
}

/// The usable entries of an htpasswd file. The first entry of a user wins,
/// as in Apache.
fn parse(text: &str, path: &Path) -> HashMap<String, Hash> {
    let mut entries = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, rest)) = line.split_once(':') else {
            tracing::warn!(
                path = %path.display(),
                line = line_no,
                "htpasswd line without `user:hash` ignored"
            );
            continue;
        };
        // nginx allows a third `:comment` field; no supported hash contains ':'.
        let hash = rest.split(':').next().unwrap_or_default().trim();
        let Some(hash) = Hash::parse(hash) else {
            tracing::warn!(
                path = %path.display(),
                line = line_no,
                user,
                "htpasswd entry refused: plain-text or unsupported hash \
                 (supported: bcrypt `htpasswd -B`, MD5 `-m`, SHA-1 `-s`)"
            );
            continue;
        };
        if entries.contains_key(user) {
            tracing::warn!(
                path = %path.display(),
                line = line_no,
                user,
                "duplicate htpasswd entry ignored; the first one counts"
            );
            continue;
        }
        entries.insert(user.to_string(), hash);
    }
    entries
}

impl Hash {
    fn parse(hash: &str) -> Option<Hash> {
        if ["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p)) {
            return (hash.len() == 60 && hash.is_ascii()).then(|| Hash::Bcrypt(hash.to_string()));
        }
        if let Some(rest) = hash.strip_prefix("$apr1$") {
            let (salt, checksum) = rest.split_once('$')?;
            let valid = (1..=8).contains(&salt.len())
                && checksum.len() == 22
                && checksum.bytes().all(|c| ITOA64.contains(&c))
                && !salt.contains(['$', ':']);
            return valid.then(|| Hash::Apr1 {
                salt: salt.to_string(),
                checksum: checksum.to_string(),
            });
        }
        if let Some(b64) = hash.strip_prefix("{SHA}") {
            let digest: [u8; 20] = STANDARD.decode(b64).ok()?.try_into().ok()?;
            return Some(Hash::Sha1(digest));
        }
        None
    }

    fn matches(&self, password: &str) -> bool {
        match self {
            // The bcrypt crate compares in constant time.
            Hash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            Hash::Apr1 { salt, checksum } => apr1_checksum(password.as_bytes(), salt.as_bytes())
                .ct_eq(checksum.as_bytes())
                .into(),
            Hash::Sha1(digest) => Sha1::digest(password.as_bytes())
                .as_slice()
                .ct_eq(digest)
                .into(),
        }
    }
}

/// The alphabet of crypt(3)-style base64.
const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The 22-character checksum of Apache's MD5 crypt (Poul-Henning Kamp's
/// md5crypt with the magic `$apr1$`), as in APR's `apr_md5_encode`.
fn apr1_checksum(password: &[u8], salt: &[u8]) -> [u8; 22] {
    let digest = apr1_stretch(password, salt, apr1_initial(password, salt));
    crypt64(&digest)
}

/// md5crypt's first digest, of the password, the magic, the salt and an
/// "alternate" digest.
fn apr1_initial(password: &[u8], salt: &[u8]) -> md5::digest::Output<Md5> {
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();

    let mut ctx = Md5::new()
        .chain_update(password)
        .chain_update(b"$apr1$")
        .chain_update(salt);
    for chunk in password.chunks(16) {
        ctx.update(&alternate[..chunk.len()]);
    }
    let mut bits = password.len();
    while bits > 0 {
        if bits & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        bits >>= 1;
    }
    ctx.finalize()
}

/// md5crypt's 1000 rounds, only to slow guessing down.
fn apr1_stretch(
    password: &[u8],
    salt: &[u8],
    mut digest: md5::digest::Output<Md5>,
) -> md5::digest::Output<Md5> {
    for round in 0..1000 {
        let mut ctx = Md5::new();
        if round % 2 == 1 {
            ctx.update(password);
        } else {
            ctx.update(digest);
        }
        if round % 3 != 0 {
            ctx.update(salt);
        }
        if round % 7 != 0 {
            ctx.update(password);
        }
        if round % 2 == 1 {
            ctx.update(digest);
        } else {
            ctx.update(password);
        }
        digest = ctx.finalize();
    }
    digest
}

/// The digest in crypt(3)-style base64, bytes in md5crypt's order.
fn crypt64(digest: &[u8]) -> [u8; 22] {
    let mut out = [0u8; 22];
    let mut at = 0;
    let mut put = |value: u32, chars: usize| {
        let mut value = value;
        for _ in 0..chars {
            out[at] = ITOA64[(value & 0x3f) as usize];
            value >>= 6;
            at += 1;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put(
            (u32::from(digest[a]) << 16) | (u32::from(digest[b]) << 8) | u32::from(digest[c]),
            4,
        );
    }
    put(u32::from(digest[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::sync::Arc;

    use super::*;

    // Written by Debian's apache2-utils 2.4: `htpasswd -nbB -C 4 alice pass`,
    // `htpasswd -nbm bob pass`, `htpasswd -nbs carol pass` (user renamed),
    // and `htpasswd -nbm dave 'a password longer than sixteen bytes'`.
    const BCRYPT: &str = "alice:$2y$04$8BSTBfwVmr.M4Ms0q1/PAuquVCYYoDkmJMA4LnJjRdKuRpd7e9ynW";
    const APR1: &str = "bob:$apr1$h6YPtnJL$lSE8sGn/w5pU/cDdTASla/";
    const SHA: &str = "carol:{SHA}nU4eI71bcnBGqeO0t9tXvY1u5oQ=";
    const APR1_LONG: &str = "dave:$apr1$s8MaaPQc$8U52wnlZEmdxsReOHRkDe.";

    fn file_with(lines: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        (dir, path)
    }

    fn always_recheck(file: HtpasswdFile) -> HtpasswdFile {
        HtpasswdFile {
            check_interval: Duration::ZERO,
            ..file
        }
    }

    #[test]
    fn apr1_matches_apache_output() {
        assert_eq!(
            &apr1_checksum(b"pass", b"h6YPtnJL"),
            b"lSE8sGn/w5pU/cDdTASla/"
        );
        assert_eq!(
            &apr1_checksum(b"a password longer than sixteen bytes", b"s8MaaPQc"),
            b"8U52wnlZEmdxsReOHRkDe."
        );
    }

    #[test]
    fn every_supported_format_verifies() {
        let (_dir, path) = file_with(&[BCRYPT, APR1, SHA, APR1_LONG]);
        let file = HtpasswdFile::open(path).unwrap();
        assert_eq!(file.len(), 4);
        for user in ["alice", "bob", "carol"] {
            assert_eq!(file.verify(user, "pass"), Some(true), "{user}");
            assert_eq!(file.verify(user, "Pass"), Some(false), "{user}");
            assert_eq!(file.verify(user, ""), Some(false), "{user}");
        }
        assert_eq!(
            file.verify("dave", "a password longer than sixteen bytes"),
            Some(true)
        );
        assert_eq!(file.verify("dave", "a password longer"), Some(false));
        assert_eq!(file.verify("mallory", "pass"), None);
    }

    #[test]
    fn bcrypt_2a_and_2b_prefixes_verify() {
        let hash_2b = bcrypt::hash("s3cret", 4).unwrap();
        assert!(hash_2b.starts_with("$2b$"));
        let hash_2a = hash_2b.replacen("$2b$", "$2a$", 1);
        let (_dir, path) = file_with(&[&format!("x:{hash_2b}"), &format!("y:{hash_2a}")]);
        let file = HtpasswdFile::open(path).unwrap();
        assert_eq!(file.verify("x", "s3cret"), Some(true));
        assert_eq!(file.verify("y", "s3cret"), Some(true));
        assert_eq!(file.verify("y", "s3cret!"), Some(false));
    }

    #[test]
    fn comments_blank_lines_crlf_and_comment_fields_are_handled() {
        let text = format!("# accounts\r\n\r\n{APR1}:the bob account\r\n{SHA}\r\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        std::fs::write(&path, text).unwrap();
        let file = HtpasswdFile::open(path).unwrap();
        assert_eq!(file.verify("bob", "pass"), Some(true));
        assert_eq!(file.verify("carol", "pass"), Some(true));
    }

    #[test]
    fn first_entry_of_a_user_wins() {
        let (_dir, path) = file_with(&[APR1, "bob:{SHA}nU4eI71bcnBGqeO0t9tXvY1u5oQ="]);
        let file = HtpasswdFile::open(path).unwrap();
        assert_eq!(file.len(), 1);
        assert_eq!(file.verify("bob", "pass"), Some(true));
    }

    /// Captures what `tracing` writes while `f` runs.
    fn logs_of(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn plain_text_and_unknown_hashes_are_refused_and_never_logged() {
        let (_dir, path) = file_with(&[
            "plain:hunter2hunter2",
            "des:rZrmzR7b3cU2E",
            "sha512:$6$rounds=5000$abcdefgh$0123456789abcdef",
            "shortsalt:$apr1$$lSE8sGn/w5pU/cDdTASla/",
            APR1,
        ]);
        let mut file = None;
        let logs = logs_of(|| file = Some(HtpasswdFile::open(path).unwrap()));
        let file = file.unwrap();

        assert_eq!(file.len(), 1);
        assert_eq!(file.verify("plain", "hunter2hunter2"), None);
        assert_eq!(file.verify("des", "pass"), None);
        assert_eq!(file.verify("bob", "pass"), Some(true));

        assert_eq!(logs.matches("htpasswd entry refused").count(), 4, "{logs}");
        assert!(
            logs.contains("user=\"plain\"") || logs.contains("user=plain"),
            "{logs}"
        );
        assert!(logs.contains("line=1"), "{logs}");
        assert!(logs.contains("line=4"), "{logs}");
        for secret in ["hunter2", "rZrmzR7b3cU2E", "abcdefgh", "lSE8sGn"] {
            assert!(!logs.contains(secret), "{secret} leaked into: {logs}");
        }
    }

    #[test]
    fn debug_output_holds_no_hash() {
        let (_dir, path) = file_with(&[APR1]);
        let debug = format!("{:?}", HtpasswdFile::open(path).unwrap());
        assert!(debug.contains("accounts: 1"), "{debug}");
        assert!(!debug.contains("apr1"), "{debug}");
    }

    #[test]
    fn reloads_when_the_file_changes() {
        let (_dir, path) = file_with(&[APR1]);
        let file = always_recheck(HtpasswdFile::open(path.clone()).unwrap());
        assert_eq!(file.verify("bob", "pass"), Some(true));
        assert_eq!(file.verify("carol", "pass"), None);

        // Replaced the way editors and config tools do: new file, rename.
        let next = path.with_extension("new");
        std::fs::write(&next, format!("{SHA}\n")).unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(file.verify("carol", "pass"), Some(true));
        assert_eq!(file.verify("bob", "pass"), None);

        // Appended to in place.
        let mut handle = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        writeln!(handle, "{BCRYPT}").unwrap();
        drop(handle);
        assert_eq!(file.verify("alice", "pass"), Some(true));
        assert_eq!(file.verify("carol", "pass"), Some(true));
    }

    #[test]
    fn keeps_the_old_accounts_while_the_file_is_unreadable() {
        let (_dir, path) = file_with(&[APR1]);
        let file = always_recheck(HtpasswdFile::open(path.clone()).unwrap());
        std::fs::remove_file(&path).unwrap();
        assert_eq!(file.verify("bob", "pass"), Some(true));
        assert_eq!(file.verify("bob", "nope"), Some(false));

        std::fs::write(&path, format!("{SHA}\n")).unwrap();
        assert_eq!(file.verify("carol", "pass"), Some(true));
        assert_eq!(file.verify("bob", "pass"), None);
    }

    #[test]
    fn looks_at_the_file_at_most_once_a_second() {
        let (_dir, path) = file_with(&[APR1]);
        let file = HtpasswdFile::open(path.clone()).unwrap();
        std::fs::write(&path, format!("{SHA}\n")).unwrap();
        // Within the interval the change isn't seen yet.
        assert_eq!(file.verify("bob", "pass"), Some(true));
        assert_eq!(file.verify("carol", "pass"), None);
    }

    #[test]
    fn open_fails_on_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = HtpasswdFile::open(dir.path().join("nope")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
