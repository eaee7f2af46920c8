//! Browser sessions without server-side state: the session cookie carries
//! the user name, the account's id and credential generation (so that a
//! password change, or an account re-created under the name, ends it) and
//! an expiry, signed with HMAC-SHA256 under a random key
//! kept at `<data_dir>/ui-session.key` (mode 0600), so every replica that
//! shares the data directory accepts it and a restart logs nobody out.
//! CSRF tokens are HMACs of the session cookie under the same key: a page
//! from this server can name them, another site cannot.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::auth::Binding;

pub const SESSION_COOKIE: &str = "berth_session";
/// A random nonce set with the login form, tying its CSRF token to the browser.
pub const LOGIN_COOKIE: &str = "berth_login";
/// How long a session lasts after signing in.
pub const SESSION_SECONDS: i64 = 12 * 3600;
const KEY_FILE: &str = "ui-session.key";

/// The signing key of UI sessions and CSRF tokens.
pub struct SessionKey([u8; 32]);

/// What a valid session cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    /// The account it was opened for, as it was then.
    pub binding: Binding,
    pub expires_at: i64,
}

impl SessionKey {
    /// Reads the key, or creates it (0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<SessionKey> {
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).ok().filter(|b| b.len() == 32);
                let bytes = bytes.ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} does not hold a 32-byte hex key", path.display()),
                    )
                })?;
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                Ok(SessionKey(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                // Two processes starting at once: the first one's key is
                // kept and both use it.
                let linked = crate::secret_file::write(
                    &path,
                    hex::encode(key).as_bytes(),
                    0o600,
                    crate::secret_file::Replace::Never,
                );
                match linked {
                    Ok(()) => Ok(SessionKey(key)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        SessionKey::load_or_create(data_dir)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    #[cfg(test)]
    pub fn fixed(key: [u8; 32]) -> SessionKey {
        SessionKey(key)
    }

    fn mac(&self, purpose: &str, value: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The cookie value of a new session:
    /// `user.account.generation.expiry.nonce.signature`.
    pub fn seal(&self, user: &str, binding: Binding, expires_at: i64) -> String {
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let body = format!(
            "{}.{}.{}.{expires_at}.{}",
            URL_SAFE_NO_PAD.encode(user),
            binding.account,
            binding.generation,
            URL_SAFE_NO_PAD.encode(nonce)
        );
        let sig = URL_SAFE_NO_PAD.encode(self.mac("session", &body));
        format!("{body}.{sig}")
    }

    /// The session a cookie value holds, if its signature is ours and it
    /// has not expired.
    pub fn open(&self, value: &str, now_s: i64) -> Option<Session> {
        let (body, sig) = value.rsplit_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        if !bool::from(self.mac("session", body).as_slice().ct_eq(&sig)) {
            return None;
        }
        let mut parts = body.split('.');
        let user = String::from_utf8(URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
        let binding = Binding {
            account: parts.next()?.parse().ok()?,
            generation: parts.next()?.parse().ok()?,
        };
        let expires_at: i64 = parts.next()?.parse().ok()?;
        (expires_at > now_s).then_some(Session {
            user,
            binding,
            expires_at,
        })
    }

    /// A stable identifier of a session cookie (for ending it early); the
    /// cookie itself is never stored.
    pub fn session_id(&self, cookie_value: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac("session-id", cookie_value))
    }

    /// The CSRF token of forms shown with this cookie value.
    pub fn csrf(&self, cookie_value: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac("csrf", cookie_value))
    }

    pub fn csrf_ok(&self, cookie_value: &str, token: &str) -> bool {
        !token.is_empty() && bool::from(self.csrf(cookie_value).as_bytes().ct_eq(token.as_bytes()))
    }
}

/// A random value for the login form's cookie.
pub fn nonce() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    cookie::Cookie::split_parse(header)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .and_then(|c| c.value_raw())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Secure under TLS.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    cookie::Cookie::build((name, value))
        .path("/ui")
        .max_age(time::Duration::seconds(max_age))
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .secure(secure)
        .build()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: Binding = Binding {
        account: 3,
        generation: 42,
    };

    #[test]
    fn sessions_are_signed_and_expire() {
        let key = SessionKey::fixed([7; 32]);
        let value = key.seal("alice", ALICE, 1_000);
        assert_eq!(
            key.open(&value, 999),
            Some(Session {
                user: "alice".into(),
                binding: ALICE,
                expires_at: 1_000
            })
        );
        let other_generation = value.replacen(".3.42.", ".3.43.", 1);
        assert_ne!(other_generation, value);
        assert_eq!(key.open(&other_generation, 999), None, "edited generation");
        assert_eq!(key.open(&value, 1_000), None, "expired");
        let forged = value.replacen(
            &URL_SAFE_NO_PAD.encode("alice"),
            &URL_SAFE_NO_PAD.encode("admin"),
            1,
        );
        assert_eq!(key.open(&forged, 999), None, "another name, same signature");
        assert_eq!(
            SessionKey::fixed([8; 32]).open(&value, 999),
            None,
            "another key"
        );
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let key = SessionKey::fixed([7; 32]);
        let (a, b) = (key.seal("alice", ALICE, 10), key.seal("alice", ALICE, 10));
        assert!(key.csrf_ok(&a, &key.csrf(&a)));
        assert!(!key.csrf_ok(&b, &key.csrf(&a)));
        assert!(!key.csrf_ok(&a, ""));
    }

    #[test]
    fn key_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = SessionKey::load_or_create(dir.path()).unwrap();
        let again = SessionKey::load_or_create(dir.path()).unwrap();
        assert_eq!(first.0, again.0);
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn cookies_are_found_by_name() {
        assert_eq!(
            cookie("a=1; berth_session=x.y; b=2", "berth_session"),
            Some("x.y")
        );
        assert_eq!(cookie("a=1", "berth_session"), None);
    }

    #[test]
    fn set_cookies_carry_every_attribute() {
        let plain = set_cookie("berth_session", "x.y", 3600, false);
        let mut attributes: Vec<&str> = plain.split("; ").collect();
        attributes.sort_unstable();
        assert_eq!(
            attributes,
            [
                "HttpOnly",
                "Max-Age=3600",
                "Path=/ui",
                "SameSite=Strict",
                "berth_session=x.y"
            ]
        );
        assert!(set_cookie("a", "b", 0, true)
            .split("; ")
            .any(|a| a == "Secure"));
        assert!(!plain.contains("Secure"));
        assert!(set_cookie("a", "b", 0, true).contains("Max-Age=0"));
    }
}
