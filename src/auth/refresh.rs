//! Refresh tokens and the account bindings they (and web sessions) carry:
//! an account's id and credential generation, so that a password change, a
//! disable or a re-created account ends them at once.

use super::authenticator::Authenticator;
use super::error::AuthError;
use super::policy::Principal;
use super::service::{unix_now, Binding, ROBOT_PREFIX};
use super::token::{Claims, TokenError};

impl Authenticator {
    /// A refresh token for `who`, bound to its account's id and credential
    /// generation (audience marked so it can never pass as an access
    /// token). It has no time limit unless `auth.refresh_ttl_seconds` sets
    /// one: it ends when the account changes (see [`Authenticator::bound`]).
    pub async fn issue_refresh_token(&self, who: &Principal) -> Result<String, AuthError> {
        let binding = self
            .binding_of(who.name())
            .await?
            .ok_or(AuthError::BadCredentials)?;
        let now = unix_now();
        let ttl = match self.config.refresh_ttl_seconds {
            // JWTs need an expiry: a century stands for none.
            0 => 100 * 365 * 24 * 3600,
            ttl => ttl,
        };
        let claims = Claims {
            iss: self.config.issuer.clone(),
            sub: who.name().to_string(),
            aud: self.refresh_audience(),
            exp: now + ttl,
            nbf: now.saturating_sub(1),
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            access: Vec::new(),
            account: Some(binding.account),
            generation: Some(binding.generation),
        };
        Ok(self.keys().issue(&claims)?)
    }

    /// The principal a refresh token was issued to, if it is still valid:
    /// signed by us, and its account still the one, at the generation, it
    /// was issued under.
    pub async fn redeem_refresh_token(&self, token: &str) -> Result<Principal, AuthError> {
        let claims = self
            .keys()
            .verify(token, &self.refresh_audience(), &self.config.issuer)?;
        let (Some(account), Some(generation)) = (claims.account, claims.generation) else {
            // Issued before refresh tokens were bound to an account.
            return Err(AuthError::InvalidToken(TokenError::Malformed));
        };
        self.bound(
            &claims.sub,
            Binding {
                account,
                generation,
            },
        )
        .await?
        .ok_or(AuthError::BadCredentials)
    }

    /// The account `name` as refresh tokens and web sessions bind to it now;
    /// `None` when there is no such account.
    pub async fn binding_of(&self, name: &str) -> Result<Option<Binding>, AuthError> {
        Ok(if name.starts_with(ROBOT_PREFIX) {
            self.metadata.get_robot(name).await?.map(|r| Binding {
                account: r.id,
                generation: r.generation,
            })
        } else {
            self.metadata.get_user(name).await?.map(|u| Binding {
                account: u.id,
                generation: u.generation,
            })
        })
    }

    /// The principal `name` if its account is still the one `binding`
    /// names, at the same credential generation, and may sign in (not
    /// disabled, not expired). A deleted and re-created account has a new
    /// id and generation; a changed password, admin or disabled flag, a new
    /// generation.
    pub async fn bound(
        &self,
        name: &str,
        binding: Binding,
    ) -> Result<Option<Principal>, AuthError> {
        if name.starts_with(ROBOT_PREFIX) {
            let now_ms = crate::metadata::now_ms();
            return Ok(self.metadata.get_robot(name).await?.and_then(|r| {
                let same = r.id == binding.account && r.generation == binding.generation;
                (same && !r.disabled && !r.is_expired(now_ms)).then_some(Principal::Robot {
                    name: r.name,
                    project: r.project,
                    actions: r.actions,
                })
            }));
        }
        Ok(self.metadata.get_user(name).await?.and_then(|u| {
            let same = u.id == binding.account && u.generation == binding.generation;
            (same && !u.disabled).then_some(Principal::User {
                name: u.name,
                admin: u.admin,
            })
        }))
    }

    fn refresh_audience(&self) -> String {
        format!("{}#refresh", self.config.service)
    }
}
