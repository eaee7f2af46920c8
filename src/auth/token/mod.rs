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

mod keydir;
mod keyring;
mod kid;
mod scopes;

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use keyring::TokenKeys;
pub use scopes::parse_scopes;

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
