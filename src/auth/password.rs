//! Password hashing for accounts berth owns (users, robot secrets, personal
//! access tokens) and generation of random secrets.
//!
//! Hashes are argon2id PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$…`) with
//! the `argon2` crate's default cost, which keeps one verification around
//! 20–40 ms on one core in a release build. The parameters travel inside each
//! PHC string, so raising the cost later leaves existing hashes verifiable.

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
