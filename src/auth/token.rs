//! Docker registry bearer tokens (distribution's `docs/spec/auth/jwt.md`):
//! ES256 JWTs whose `access` claim lists what the bearer may do, plus the
//! parsing of `scope` parameters that ask for that access.
//!
//! Signing keys are P-256 keys stored as PKCS#8 PEM files named
//! `es256-<timestamp>.pem` in one directory (0700, files 0600). The newest
//! (last by name) signs; every key in the directory verifies, so adding a key
//! with [`TokenKeys::rotate`] invalidates no token already handed out. Old
//! keys can be deleted once the longest token lifetime (refresh tokens
//! included) has passed since the rotation.
//!
//! A key's `kid` is its libtrust key ID, as Docker's tools compute it: the
//! first 240 bits of SHA-256 over the DER SubjectPublicKeyInfo, base32 in
//! twelve groups of four joined by `:` (`PYYO:TEWU:…:Z7Q6`).

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use p256::{PublicKey, SecretKey};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECONDS: u64 = 30;

/// The claim set of a registry token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who issued the token (`auth.issuer`).
    pub iss: String,
    /// The account it was issued to; empty for an anonymous client.
    pub sub: String,
    /// The service meant to accept it (`auth.service`).
    pub aud: String,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Not valid before, in seconds since the Unix epoch.
    pub nbf: u64,
    /// Issued at, in seconds since the Unix epoch.
    pub iat: u64,
    /// A unique ID of this token.
    pub jti: String,
    /// What the bearer may do.
    #[serde(default)]
    pub access: Vec<ResourceActions>,
    /// Refresh tokens: the id of the account they were issued to, which a
    /// new account of the same name does not share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<i64>,
    /// Refresh tokens: the account's credential generation when they were
    /// issued; a password, role or disabled change makes them void.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
}

/// Actions on one resource, as in a token's `access` claim or a `scope`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceActions {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A repository name, or `catalog` for the `registry` type.
    pub name: String,
    /// `pull`, `push`, `delete`, `*`…
    pub actions: Vec<String>,
}

/// Why a token could not be issued or was refused, or the keys not loaded.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token keys in {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a P-256 private key in PEM (PKCS#8 or SEC1)", path.display())]
    BadKey { path: PathBuf },
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm `{0}` refused, only ES256 is accepted")]
    Algorithm(String),
    #[error("token signed by an unknown key")]
    UnknownKey,
    #[error("bad token signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token meant for another service")]
    Audience,
    #[error("token from another issuer")]
    Issuer,
    #[error("cannot sign token: {0}")]
    Sign(String),
}

/// Parses `scope` values (`repository:team/app:pull,push`,
/// `registry:catalog:*`); each value may hold several scopes separated by
/// spaces, as the OAuth2 `POST /token` form sends them.
///
/// The type is what precedes the first `:` (a deprecated resource class such
/// as `repository(plugin)` is dropped), the actions follow the last `:`, and
/// the name is everything between, so `repository:host:5000/app:pull` names
/// `host:5000/app`. Actions on the same resource are merged, in the order
/// first seen. Malformed scopes are ignored.
pub fn parse_scopes(scopes: &[&str]) -> Vec<ResourceActions> {
    let mut merged: Vec<ResourceActions> = Vec::new();
    for scope in scopes.iter().flat_map(|s| s.split_whitespace()) {
        let Some(parsed) = parse_scope(scope) else {
            continue;
        };
        match merged
            .iter_mut()
            .find(|r| r.kind == parsed.kind && r.name == parsed.name)
        {
            Some(existing) => {
                for action in parsed.actions {
                    if !existing.actions.contains(&action) {
                        existing.actions.push(action);
                    }
                }
            }
            None => merged.push(parsed),
        }
    }
    merged
}

fn parse_scope(scope: &str) -> Option<ResourceActions> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let kind = match kind.split_once('(') {
        Some((kind, class)) if class.ends_with(')') => kind,
        Some(_) => return None,
        None => kind,
    };
    let kind_ok = !kind.is_empty()
        && kind
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !kind_ok || name.is_empty() {
        return None;
    }
    let mut list: Vec<String> = Vec::new();
    for action in actions.split(',').filter(|a| !a.is_empty()) {
        if !action.bytes().all(|c| c.is_ascii_lowercase() || c == b'*') {
            return None;
        }
        if !list.iter().any(|a| a == action) {
            list.push(action.to_string());
        }
    }
    (!list.is_empty()).then(|| ResourceActions {
        kind: kind.to_string(),
        name: name.to_string(),
        actions: list,
    })
}

/// The token signing and verification keys of one key directory.
pub struct TokenKeys {
    /// Oldest first; the last one signs.
    keys: Vec<KeyPair>,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
}

struct KeyPair {
    kid: String,
    public: PublicKey,
}

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

    fn from_parts(keys: Vec<KeyPair>, signing: &SecretKey) -> Result<TokenKeys, TokenError> {
        // Select the backend explicitly: should another crate ever enable
        // jsonwebtoken's other backend too, it would not pick one by itself.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let der = signing
            .to_pkcs8_der()
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        let verifying = keys
            .iter()
            .map(|k| {
                let point = k.public.to_sec1_bytes();
                (k.kid.clone(), DecodingKey::from_ec_der(&point))
            })
            .collect();
        Ok(TokenKeys {
            keys,
            signing: EncodingKey::from_ec_der(der.as_bytes()),
            verifying,
        })
    }

    /// The `kid` of the key that signs new tokens.
    pub fn signing_kid(&self) -> &str {
        &self.keys.last().expect("never empty").kid
    }

    /// The `kid` of every key that verifies, oldest first.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    /// The public keys as a JWK set (RFC 7517), e.g. for a registry that
    /// verifies berth's tokens itself (distribution 3's `auth.token.jwks`).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .map(|k| {
                let point = k.public.to_encoded_point(false);
                let coordinate = |c: Option<&p256::FieldBytes>| {
                    URL_SAFE_NO_PAD.encode(c.expect("uncompressed point has x and y"))
                };
                serde_json::json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "alg": "ES256",
                    "use": "sig",
                    "kid": k.kid,
                    "x": coordinate(point.x()),
                    "y": coordinate(point.y()),
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Signs `claims` with the newest key (header: `alg` ES256, `typ` JWT,
    /// `kid`).
    pub fn issue(&self, claims: &Claims) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".into());
        header.kid = Some(self.signing_kid().to_string());
        jsonwebtoken::encode(&header, claims, &self.signing)
            .map_err(|e| TokenError::Sign(e.to_string()))
    }

    /// Checks a token: ES256 only (so never `none` nor an HMAC keyed with a
    /// public key), signed by one of the loaded keys, for `audience` from
    /// `issuer`, within `nbf`..`exp` give or take 30 seconds.
    pub fn verify(&self, token: &str, audience: &str, issuer: &str) -> Result<Claims, TokenError> {
        let header = RawHeader::of(token)?;
        if header.alg != "ES256" {
            // The name is the client's: keep it short and printable, since
            // errors end up in logs.
            let shown = header
                .alg
                .chars()
                .take(16)
                .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                .collect();
            return Err(TokenError::Algorithm(shown));
        }
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: extensions we don't know must be refused.
            return Err(TokenError::Malformed);
        }
        let key = header
            .kid
            .and_then(|kid| self.verifying.get(&kid))
            .ok_or(TokenError::UnknownKey)?;

        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss"]);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[issuer]);

        match jsonwebtoken::decode::<Claims>(token, key, &validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::InvalidSignature => TokenError::Signature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidAudience => TokenError::Audience,
                ErrorKind::InvalidIssuer => TokenError::Issuer,
                ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                    TokenError::Algorithm("?".into())
                }
                _ => TokenError::Malformed,
            }),
        }
    }
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field("signing_kid", &self.signing_kid())
            .field("kids", &self.kids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The header fields looked at before any signature check.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

impl RawHeader {
    fn of(token: &str) -> Result<RawHeader, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let json = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenError::Malformed)?;
        serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
    }
}

/// Docker's libtrust key ID of a public key.
fn key_id(public: &PublicKey) -> String {
    let spki = public
        .to_public_key_der()
        .expect("a P-256 public key always encodes");
    let hash = Sha256::digest(spki.as_bytes());
    let encoded = base32(&hash[..30]);
    let groups: Vec<&str> = encoded
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("base32 is ASCII"))
        .collect();
    groups.join(":")
}

/// RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u16, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[usize::from((buffer >> bits) & 0x1f)] as char);
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[usize::from((buffer << (5 - bits)) & 0x1f)] as char);
    }
    out
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> TokenError + '_ {
    move |source| TokenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn create_private_dir(dir: &Path) -> Result<(), TokenError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))
}

/// The key files of `dir`, oldest first.
fn key_files(dir: &Path) -> Result<Vec<PathBuf>, TokenError> {
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

fn read_key(path: &Path) -> Result<SecretKey, TokenError> {
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
/// via a temporary file and a rename, so a crash never leaves half a key.
fn write_new_key(dir: &Path) -> Result<PathBuf, TokenError> {
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
    let temp = dir.join(format!(".es256-{stamp:020}.pem.tmp"));

    let secret = SecretKey::random(&mut OsRng);
    let pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| TokenError::Sign(e.to_string()))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(io_error(&temp))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error(&temp))?;
    drop(file);
    fs::rename(&temp, &path).map_err(io_error(&path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, Mac};
    use p256::pkcs8::EncodePublicKey;

    use super::*;

    const SERVICE: &str = "registry.test";
    const ISSUER: &str = "berth.test";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn claims() -> Claims {
        let now = now();
        Claims {
            iss: ISSUER.into(),
            sub: "alice".into(),
            aud: SERVICE.into(),
            exp: now + 300,
            nbf: now - 1,
            iat: now,
            jti: "j1".into(),
            access: parse_scopes(&["repository:team/app:pull,push"]),
            account: None,
            generation: None,
        }
    }

    fn keys() -> (tempfile::TempDir, TokenKeys) {
        let dir = tempfile::tempdir().unwrap();
        let keys = TokenKeys::load_or_create(&dir.path().join("keys")).unwrap();
        (dir, keys)
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token with any header, claims and signature bytes.
    fn forge(
        header: serde_json::Value,
        claims: &Claims,
        sign: impl Fn(&[u8]) -> Vec<u8>,
    ) -> String {
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(serde_json::to_string(claims).unwrap().as_bytes())
        );
        let signature = sign(signed.as_bytes());
        format!("{signed}.{}", b64(&signature))
    }

    fn signing_public_key(dir: &Path) -> PublicKey {
        let newest = key_files(dir).unwrap().pop().unwrap();
        read_key(&newest).unwrap().public_key()
    }

    #[test]
    fn issue_then_verify_round_trip() {
        let (_dir, keys) = keys();
        let claims = claims();
        let token = keys.issue(&claims).unwrap();
        assert_eq!(keys.verify(&token, SERVICE, ISSUER).unwrap(), claims);

        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["kid"], keys.signing_kid());
        let payload: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            payload["access"],
            serde_json::json!([{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}])
        );
    }

    #[test]
    fn keys_persist_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let key_dir = dir.path().join("data/keys");
        let first = TokenKeys::load_or_create(&key_dir).unwrap();
        let again = TokenKeys::load_or_create(&key_dir).unwrap();
        assert_eq!(first.signing_kid(), again.signing_kid());
        assert_eq!(again.kids().count(), 1);

        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key_dir), 0o700);
        let files = key_files(&key_dir).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(mode(&files[0]), 0o600);
        assert!(fs::read_to_string(&files[0])
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----"));

        let token = first.issue(&claims()).unwrap();
        assert!(again.verify(&token, SERVICE, ISSUER).is_ok());
    }

    #[test]
    fn a_rotated_out_key_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let old = TokenKeys::load_or_create(dir.path()).unwrap();
        let old_token = old.issue(&claims()).unwrap();

        let new_kid = TokenKeys::rotate(dir.path()).unwrap();
        let current = TokenKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(current.signing_kid(), new_kid);
        assert_ne!(new_kid, old.signing_kid());
        assert_eq!(
            current.kids().collect::<Vec<_>>(),
            [old.signing_kid(), &new_kid]
        );

        assert!(current.verify(&old_token, SERVICE, ISSUER).is_ok());
        let new_token = current.issue(&claims()).unwrap();
        assert!(current.verify(&new_token, SERVICE, ISSUER).is_ok());
        // A process still holding only the old key does not know the new one.
        assert!(matches!(
            old.verify(&new_token, SERVICE, ISSUER),
            Err(TokenError::UnknownKey)
        ));
    }

    #[test]
    fn refuses_alg_none() {
        let (_dir, keys) = keys();
        let header = serde_json::json!({"alg": "none", "typ": "JWT", "kid": keys.signing_kid()});
        // With no signature, and with one lifted from a genuine token.
        let genuine = keys.issue(&claims()).unwrap();
        let genuine_signature = URL_SAFE_NO_PAD
            .decode(genuine.rsplit('.').next().unwrap())
            .unwrap();
        for signature in [Vec::new(), genuine_signature] {
            let token = forge(header.clone(), &claims(), |_| signature.clone());
            assert!(
                matches!(keys.verify(&token, SERVICE, ISSUER), Err(TokenError::Algorithm(a)) if a == "none"),
                "{token}"
            );
        }
    }

    #[test]
    fn refused_algorithm_names_are_shortened_for_logs() {
        let (_dir, keys) = keys();
        let header = serde_json::json!({"alg": "RS256\n\u{1b}[31m-and-a-very-long-tail", "kid": keys.signing_kid()});
        let token = forge(header, &claims(), |_| vec![0; 64]);
        let error = keys.verify(&token, SERVICE, ISSUER).unwrap_err();
        assert!(
            matches!(&error, TokenError::Algorithm(a) if a == "RS256??[31m-and-"),
            "{error}"
        );
    }

    #[test]
    fn refuses_hs256_keyed_with_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys = TokenKeys::load_or_create(dir.path()).unwrap();
        let public = signing_public_key(dir.path());
        let pem = public.to_public_key_pem(LineEnding::LF).unwrap();
        for secret in [pem.as_bytes().to_vec(), public.to_sec1_bytes().to_vec()] {
            let header =
                serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": keys.signing_kid()});
            let token = forge(header, &claims(), |msg| {
                let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
                mac.update(msg);
                mac.finalize().into_bytes().to_vec()
            });
            assert!(
                matches!(keys.verify(&token, SERVICE, ISSUER), Err(TokenError::Algorithm(a)) if a == "HS256"),
                "{token}"
            );
        }
    }

    #[test]
    fn refuses_a_foreign_key_claiming_our_kid() {
        let (_dir, keys) = keys();
        let foreign = SecretKey::random(&mut OsRng);
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(keys.signing_kid().to_string());
        let token = jsonwebtoken::encode(
            &header,
            &claims(),
            &EncodingKey::from_ec_der(foreign.to_pkcs8_der().unwrap().as_bytes()),
        )
        .unwrap();
        assert!(matches!(
            keys.verify(&token, SERVICE, ISSUER),
            Err(TokenError::Signature)
        ));
    }

    #[test]
    fn refuses_unknown_or_missing_kid() {
        let (_dir, keys) = keys();
        let (_other_dir, other) = self::keys();
        let token = other.issue(&claims()).unwrap();
        assert!(matches!(
            keys.verify(&token, SERVICE, ISSUER),
            Err(TokenError::UnknownKey)
        ));

        let (_dir, keys) = self::keys();
        let token = keys.issue(&claims()).unwrap();
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        parts[0] = b64(br#"{"alg":"ES256","typ":"JWT"}"#);
        assert!(matches!(
            keys.verify(&parts.join("."), SERVICE, ISSUER),
            Err(TokenError::UnknownKey)
        ));
    }

    #[test]
    fn refuses_a_payload_edited_after_signing() {
        let (_dir, keys) = keys();
        let token = keys.issue(&claims()).unwrap();
        let mut edited = claims();
        edited.access = parse_scopes(&["repository:team/app:pull,push,delete"]);
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(serde_json::to_string(&edited).unwrap().as_bytes()),
            parts[2]
        );
        assert!(matches!(
            keys.verify(&forged, SERVICE, ISSUER),
            Err(TokenError::Signature)
        ));
    }

    #[test]
    fn refuses_wrong_audience_and_issuer() {
        let (_dir, keys) = keys();
        let token = keys.issue(&claims()).unwrap();
        assert!(matches!(
            keys.verify(&token, "other.registry", ISSUER),
            Err(TokenError::Audience)
        ));
        assert!(matches!(
            keys.verify(&token, &format!("{SERVICE}#refresh"), ISSUER),
            Err(TokenError::Audience)
        ));
        assert!(matches!(
            keys.verify(&token, SERVICE, "someone.else"),
            Err(TokenError::Issuer)
        ));
    }

    #[test]
    fn refuses_expired_and_not_yet_valid_tokens_beyond_the_leeway() {
        let (_dir, keys) = keys();
        let now = now();

        let expired = Claims {
            exp: now - 60,
            nbf: now - 400,
            iat: now - 400,
            ..claims()
        };
        let token = keys.issue(&expired).unwrap();
        assert!(matches!(
            keys.verify(&token, SERVICE, ISSUER),
            Err(TokenError::Expired)
        ));

        let early = Claims {
            nbf: now + 120,
            exp: now + 600,
            ..claims()
        };
        let token = keys.issue(&early).unwrap();
        assert!(matches!(
            keys.verify(&token, SERVICE, ISSUER),
            Err(TokenError::NotYetValid)
        ));

        // Within the leeway, clock skew between replicas is forgiven.
        let skewed = Claims {
            nbf: now + 5,
            exp: now + 600,
            ..claims()
        };
        assert!(keys
            .verify(&keys.issue(&skewed).unwrap(), SERVICE, ISSUER)
            .is_ok());
    }

    #[test]
    fn refuses_malformed_tokens() {
        let (_dir, keys) = keys();
        let token = keys.issue(&claims()).unwrap();
        for bad in [
            "",
            "abc",
            "a.b",
            "a.b.c.d",
            "!!!.b.c",
            &format!("{token}.extra"),
        ] {
            assert!(
                matches!(
                    keys.verify(bad, SERVICE, ISSUER),
                    Err(TokenError::Malformed)
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_a_header_with_critical_extensions() {
        let dir = tempfile::tempdir().unwrap();
        let keys = TokenKeys::load_or_create(dir.path()).unwrap();
        let secret = read_key(&key_files(dir.path()).unwrap()[0]).unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(keys.signing_kid().to_string());
        header.crit = Some(vec!["exp-ext".into()]);
        let token = jsonwebtoken::encode(
            &header,
            &claims(),
            &EncodingKey::from_ec_der(secret.to_pkcs8_der().unwrap().as_bytes()),
        )
        .unwrap();
        assert!(matches!(
            keys.verify(&token, SERVICE, ISSUER),
            Err(TokenError::Malformed)
        ));
    }

    /// The example key of distribution's `docs/spec/auth/jwt.md`: same `kid`.
    #[test]
    fn matches_the_distribution_spec_example() {
        let d = URL_SAFE_NO_PAD
            .decode("R7OnbfMaD5J2jl7GeE8ESo7CnHSBm_1N2k9IXYFrKJA")
            .unwrap();
        let secret = SecretKey::from_slice(&d).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
        fs::write(dir.path().join("es256-0.pem"), pem.as_bytes()).unwrap();
        fs::set_permissions(
            dir.path().join("es256-0.pem"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let keys = TokenKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(
            keys.signing_kid(),
            "PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6"
        );
        let jwk = &keys.jwks()["keys"][0];
        assert_eq!(jwk["x"], "m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q");
        assert_eq!(jwk["y"], "dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc");

        // The example token in that document does not verify under this key
        // (Python's `cryptography` agrees), so it is not used here.
    }

    #[test]
    fn refuses_a_file_that_is_not_a_key() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("es256-1.pem"), "not a key").unwrap();
        assert!(matches!(
            TokenKeys::load_or_create(dir.path()),
            Err(TokenError::BadKey { .. })
        ));
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let (_dir, keys) = keys();
        let debug = format!("{keys:?}");
        assert!(debug.contains(keys.signing_kid()), "{debug}");
        assert!(!debug.contains("signing:"), "{debug}");
    }

    #[test]
    fn scopes_parse_like_docker_sends_them() {
        let parsed = parse_scopes(&[
            "repository:team/app:pull,push",
            "repository:localhost:5000/app:pull",
            "registry:catalog:*",
            "repository(plugin):team/plug:pull",
            "repository:team/app:pull repository:team/app:delete",
        ]);
        let expect = |kind: &str, name: &str, actions: &[&str]| ResourceActions {
            kind: kind.into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        };
        assert_eq!(
            parsed,
            [
                expect("repository", "team/app", &["pull", "push", "delete"]),
                expect("repository", "localhost:5000/app", &["pull"]),
                expect("registry", "catalog", &["*"]),
                expect("repository", "team/plug", &["pull"]),
            ]
        );
    }

    #[test]
    fn malformed_scopes_are_ignored() {
        assert!(parse_scopes(&[
            "",
            "repository",
            "repository:team/app",
            "repository:team/app:",
            ":team/app:pull",
            "repository::pull",
            "Repository:team/app:pull",
            "repository:team/app:PULL",
            "repository(plugin:team/app:pull",
        ])
        .is_empty());
        assert_eq!(
            parse_scopes(&["repository:team/app:pull,,pull"])[0].actions,
            ["pull"]
        );
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        for (input, output) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), output);
        }
    }
}
