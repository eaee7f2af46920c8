//! The auth layer as the server wires it: the authenticator (who is
//! calling), the authorizer (what they may do), the accounts service (what
//! administrators and users manage), and the audit trail they write to. The
//! HTTP layer calls them; they call the metadata layer.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::accounts::Accounts;
use super::audit::AuditSink;
use super::authenticator::Authenticator;
use super::authorizer::Authorizer;
use super::error::AuthError;
use super::htpasswd::HtpasswdFile;
use super::policy::Principal;
use super::token::{ResourceActions, TokenKeys};
use super::{AuthConfig, AuthMode};
use crate::metadata::AccessMetadata;

/// Prefix of personal access tokens: `berth_pat_<id>_<secret>`.
pub const PAT_PREFIX: &str = "berth_pat_";
/// The password hash of accounts that live in the htpasswd file: never a
/// valid PHC string, so only the file can verify them.
pub(super) const EXTERNAL_ACCOUNT: &str = "!htpasswd";
/// Robot account names start with this.
pub const ROBOT_PREFIX: &str = "robot$";

/// What a request may do.
#[derive(Debug, Clone)]
pub enum Grant {
    /// Decided per request from the principal's rights (Basic auth,
    /// anonymous requests, or authentication turned off).
    Principal(Principal),
    /// A bearer token: exactly the access it lists.
    Token {
        subject: String,
        access: Vec<ResourceActions>,
    },
}

impl Grant {
    pub fn actor(&self) -> &str {
        match self {
            Grant::Principal(p) => p.name(),
            Grant::Token { subject, .. } => subject,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        match self {
            Grant::Principal(p) => *p == Principal::Anonymous,
            Grant::Token { subject, .. } => subject.is_empty(),
        }
    }
}

/// What a refresh token or a web session is bound to: an account's id (a
/// name can be reused, an id is not shared with a re-created account) and
/// its credential generation when the token or session was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub account: i64,
    pub generation: i64,
}

/// An issued token as the token endpoint returns it.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
    pub issued_at: SystemTime,
    pub access: Vec<ResourceActions>,
}

pub struct Auth {
    pub authenticator: Arc<Authenticator>,
    pub authorizer: Arc<Authorizer>,
    pub accounts: Accounts,
    audit: AuditSink,
    config: AuthConfig,
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Auth {
    /// Opens the auth layer: token keys under `<data_dir>/keys`, the
    /// htpasswd file, and the first admin account when there is no account
    /// yet.
    pub async fn open(
        metadata: Arc<dyn AccessMetadata>,
        config: &AuthConfig,
        data_dir: &Path,
    ) -> Result<Auth, AuthError> {
        let keys = TokenKeys::load_or_create(&data_dir.join("keys"))
            .map_err(|e| AuthError::Setup(e.to_string()))?;
        let htpasswd = match &config.htpasswd_file {
            Some(path) => Some(Arc::new(HtpasswdFile::open(path.clone()).map_err(|e| {
                AuthError::Setup(format!("htpasswd file {}: {e}", path.display()))
            })?)),
            None => None,
        };
        let audit = AuditSink::start(metadata.clone());
        let authorizer = Arc::new(Authorizer::new(metadata.clone(), config));
        let authenticator = Arc::new(Authenticator::new(
            metadata.clone(),
            config,
            keys,
            htpasswd,
            audit.clone(),
            authorizer.clone(),
        ));
        let accounts = Accounts::new(
            metadata,
            config,
            audit.clone(),
            authorizer.clone(),
            authenticator.clone(),
        );
        if config.mode == AuthMode::Token {
            authenticator.bootstrap_admin().await?;
        } else {
            tracing::warn!(
                "AUTHENTICATION IS OFF (auth.mode = \"none\"): anyone who can reach this \
                 registry may push, pull and delete. Use this only for a throwaway local registry."
            );
        }
        Ok(Auth {
            authenticator,
            authorizer,
            accounts,
            audit,
            config: config.clone(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.config.mode == AuthMode::Token
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    pub fn audit(&self) -> &AuditSink {
        &self.audit
    }
}

/// Splits a personal access token `berth_pat_<id>_<random>`; only the
/// random part is stored (hashed), so the store can choose the id.
pub fn parse_pat(secret: &str) -> Option<(&str, &str)> {
    let (id, random) = secret.strip_prefix(PAT_PREFIX)?.split_once('_')?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())).then_some((id, random))
}

/// Formats a personal access token from its id and random part.
pub fn format_pat(id: &str, random: &str) -> String {
    format!("{PAT_PREFIX}{id}_{random}")
}

#[cfg(test)]
mod tests {
    use super::{format_pat, parse_pat};

    #[test]
    fn personal_access_tokens_carry_their_id() {
        assert_eq!(
            parse_pat(&format_pat("42ab", "abc_def")),
            Some(("42ab", "abc_def"))
        );
        assert_eq!(parse_pat("berth_pat__abcdef"), None);
        assert_eq!(parse_pat("password"), None);
    }
}
