//! Password hashing for accounts berth owns (users, robot secrets, personal
//! access tokens) and generation of random secrets.
//!
//! Hashes are argon2id PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$…`) with
//! the `argon2` crate's default cost, which keeps one verification around
//! 20–40 ms on one core in a release build. The parameters travel inside each
//! PHC string, so raising the cost later leaves existing hashes verifiable.
//!
//! [`PasswordChecks`] runs the checks of a server: a fixed number at once,
//! a bounded number waiting, and a refusal ([`Busy`]) beyond, so a burst of
//! logins costs time, never memory.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;

/// Random bytes in a generated secret: 256 bits, beyond any guessing.
const SECRET_BYTES: usize = 32;

/// Hashes `password` with argon2id and a fresh random salt; returns the PHC
/// string to store.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        // Only fails on parameters or salts out of range; the defaults and a
        // generated salt never are.
        .expect("argon2 with default parameters and a generated salt")
        .to_string()
}

/// Whether `password` matches the PHC string `phc`. A malformed or
/// unsupported hash never matches. The comparison runs in constant time
/// (inside the `password-hash` crate).
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// The hash checked for names that have none (unknown users and robots,
/// disabled accounts), so that a wrong password costs the same whether or
/// not the name exists: timing tells no names apart.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&generate_secret("")))
}

/// Refused: as many password checks are running and waiting as allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// Runs password checks on the runtime's blocking threads, at most
/// `workers` at once and `queue` more waiting: two semaphores, one for the
/// places in line, one for the checks running.
pub struct PasswordChecks {
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
    completed: Arc<AtomicU64>,
}

impl PasswordChecks {
    /// `workers == 0` means one per CPU core.
    pub fn new(workers: usize, queue: usize) -> PasswordChecks {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            workers
        };
        PasswordChecks {
            admitted: Arc::new(Semaphore::new(workers + queue)),
            running: Arc::new(Semaphore::new(workers)),
            completed: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether `secret` matches the PHC string `phc`.
    pub async fn verify(&self, secret: &str, phc: &str) -> Result<bool, Busy> {
        let (secret, phc) = (secret.to_string(), phc.to_string());
        self.run(move || verify_password(&secret, &phc)).await
    }

    /// Runs `check` on a blocking thread, or refuses when the line is full.
    /// A check whose caller gave up still runs to the end (it holds its
    /// place in the bound meanwhile); a panicking one answers `false`.
    pub async fn run(&self, check: impl FnOnce() -> bool + Send + 'static) -> Result<bool, Busy> {
        let place = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        let turn = self
            .running
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let completed = self.completed.clone();
        let job = tokio::task::spawn_blocking(move || {
            let matched = std::panic::catch_unwind(AssertUnwindSafe(check)).unwrap_or(false);
            completed.fetch_add(1, Ordering::Relaxed);
            drop((turn, place));
            matched
        });
        Ok(job.await.unwrap_or(false))
    }

    /// Checks finished so far.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Relaxed)
    }
}

/// A fresh random secret: `prefix` followed by 32 random bytes from the
/// operating system, base64url without padding (43 characters from
/// `A-Z a-z 0-9 - _`). Used for robot secrets, personal access tokens and
/// generated admin passwords; a recognisable prefix such as `berth_pat_`
/// lets secret scanners spot leaked tokens.
pub fn generate_secret(prefix: &str) -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    OsRng.fill_bytes(&mut bytes);
    let mut secret = String::with_capacity(prefix.len() + 43);
    secret.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(bytes, &mut secret);
    secret
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn hash_then_verify() {
        let phc = hash_password("correct horse");
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("correct horsE", &phc));
        assert!(!verify_password("", &phc));
    }

    #[test]
    fn same_password_gets_a_different_salt_each_time() {
        assert_ne!(hash_password("pw"), hash_password("pw"));
    }

    #[test]
    fn malformed_hashes_never_match() {
        for phc in [
            "",
            "pw",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$bm90IGEgaGFzaA",
            // A bcrypt hash is no argon2 PHC string.
            "$2y$04$8BSTBfwVmr.M4Ms0q1/PAuquVCYYoDkmJMA4LnJjRdKuRpd7e9ynW",
        ] {
            assert!(!verify_password("pw", phc), "{phc:?}");
        }
    }

    #[tokio::test]
    async fn checks_beyond_the_workers_and_the_queue_are_refused() {
        let checks = Arc::new(PasswordChecks::new(1, 2));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let mut running = Vec::new();
        // One runs (blocked on the gate), two wait: the bound is full.
        for _ in 0..3 {
            let (checks, gate) = (checks.clone(), gate.clone());
            running.push(tokio::spawn(async move {
                checks
                    .run(move || gate.lock().unwrap().recv().is_ok())
                    .await
            }));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // All three places in line taken (1 + 2).
        while checks.admitted.available_permits() > 0 {
            assert!(std::time::Instant::now() < deadline, "checks never queued");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(checks.run(|| true).await, Err(Busy));
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        for check in running {
            assert_eq!(check.await.unwrap(), Ok(true));
        }
        assert_eq!(checks.completed(), 3);
        // Room again once they are done.
        assert_eq!(checks.run(|| true).await, Ok(true));
        assert_eq!(checks.run(|| panic!("a broken check")).await, Ok(false));
        assert_eq!(checks.run(|| true).await, Ok(true));
    }

    #[tokio::test]
    async fn the_dummy_hash_is_a_real_argon2id_hash() {
        assert!(dummy_hash().starts_with("$argon2id$"));
        let checks = PasswordChecks::new(0, 4);
        assert_eq!(checks.verify("anything", dummy_hash()).await, Ok(false));
        assert_eq!(checks.completed(), 1);
    }

    #[test]
    fn generated_secrets_are_prefixed_random_and_url_safe() {
        let a = generate_secret("berth_pat_");
        let b = generate_secret("berth_pat_");
        assert_ne!(a, b);
        let body = a.strip_prefix("berth_pat_").unwrap();
        assert_eq!(body.len(), 43);
        assert!(body
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), SECRET_BYTES);
        assert_eq!(generate_secret("").len(), 43);
    }
}
