//! The key ring: every loaded key verifies, the newest signs; ES256 only.

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use p256::{PublicKey, SecretKey};
use serde::Deserialize;

use super::{Claims, TokenError};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECONDS: u64 = 30;

/// The token signing and verification keys of one key directory.
pub struct TokenKeys {
    /// The key that signs last, the others oldest first.
    keys: Vec<KeyPair>,
    signing: EncodingKey,
    verifying: HashMap<String, DecodingKey>,
}

pub(super) struct KeyPair {
    pub(super) kid: String,
    pub(super) public: PublicKey,
}

impl TokenKeys {
    pub(super) fn from_parts(
        keys: Vec<KeyPair>,
        signing: &SecretKey,
    ) -> Result<TokenKeys, TokenError> {
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

    /// The `kid` of every key that verifies, the signing one last.
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

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::time::{SystemTime, UNIX_EPOCH};

    use hmac::{Hmac, Mac};
    use p256::pkcs8::{EncodePublicKey, LineEnding};
    use rand::rngs::OsRng;
    use sha2::Sha256;

    use super::super::keydir::{key_files, read_key};
    use super::super::parse_scopes;

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
}
