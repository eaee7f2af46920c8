//! The auth layer's one error type.

use std::time::Duration;

use super::token::TokenError;
use crate::metadata::MetadataError;

/// Every failure of the auth layer: logins and tokens, authorization,
/// account management and opening the service. The HTTP layer maps it to
/// answers in one place per surface (`/v2` and `/token`, `/api/v1`, `/ui`).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid username or password")]
    BadCredentials,
    #[error("too many failed logins; retry in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
    #[error("too many logins at once; retry in {} s", .0.as_secs().max(1))]
    Busy(Duration),
    #[error("invalid token: {0}")]
    InvalidToken(#[from] TokenError),
    /// Management: the caller is anonymous where an account is needed.
    #[error("authentication required")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// Refused while something still depends on it (409).
    #[error("{0}")]
    InUse(String),
    /// Opening the service failed (token keys, the htpasswd file, the
    /// admin password file).
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Metadata(MetadataError),
}

impl From<MetadataError> for AuthError {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::Duplicate(what) => AuthError::Conflict(what),
            MetadataError::NotFound(what) => AuthError::NotFound(what),
            other => AuthError::Metadata(other),
        }
    }
}

pub type Result<T, E = AuthError> = std::result::Result<T, E>;
