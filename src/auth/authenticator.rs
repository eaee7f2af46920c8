//! The authenticator: turns credentials (passwords, personal access
//! tokens, robot secrets, htpasswd entries, bearer and refresh tokens) into
//! a principal, with the login limits and the bounded password checks, and
//! issues the tokens the token endpoint hands out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::audit::AuditSink;
use super::authorizer::Authorizer;
use super::credcache::{CredentialCache, Tag};
use super::error::AuthError;
use super::htpasswd::HtpasswdFile;
use super::limiter::LoginLimiter;
use super::password::{dummy_hash, generate_secret, hash_password, Busy, PasswordChecks};
use super::policy::Principal;
use super::service::{parse_pat, unix_now, Grant, IssuedToken, EXTERNAL_ACCOUNT, ROBOT_PREFIX};
use super::token::{Claims, ResourceActions, TokenKeys};
use super::AuthConfig;
use crate::metadata::{AccessMetadata, MetadataError};
use crate::oci::RepoName;

pub struct Authenticator {
    pub(super) metadata: Arc<dyn AccessMetadata>,
    /// Swapped whole when the key directory changes (`install_keys`).
    keys: std::sync::RwLock<Arc<TokenKeys>>,
    htpasswd: Option<Arc<HtpasswdFile>>,
    /// Each entry is tagged with the store's access generation read before
    /// the check that filled it, and served only while that is current.
    verified: CredentialCache<(i64, Principal)>,
    limiter: LoginLimiter,
    checks: PasswordChecks,
    /// Logins being checked, by a keyed hash of (user, secret): identical
    /// concurrent logins wait for the first one's answer.
    logins_in_flight: Mutex<HashMap<Tag, LoginWait>>,
    pub(super) config: AuthConfig,
    audit: AuditSink,
    /// Tokens carry what the authorizer allows of what was asked.
    authorizer: Arc<Authorizer>,
}

impl Authenticator {
    pub(super) fn new(
        metadata: Arc<dyn AccessMetadata>,
        config: &AuthConfig,
        keys: TokenKeys,
        htpasswd: Option<Arc<HtpasswdFile>>,
        audit: AuditSink,
        authorizer: Arc<Authorizer>,
    ) -> Authenticator {
        Authenticator {
            metadata,
            keys: std::sync::RwLock::new(Arc::new(keys)),
            htpasswd,
            verified: CredentialCache::new(Duration::from_secs(config.credential_cache_seconds)),
            limiter: LoginLimiter::new(
                config.login_max_failures,
                config.login_address_max_failures,
                Duration::from_secs(config.login_window_seconds),
            ),
            checks: PasswordChecks::new(config.password_checks, config.password_check_queue),
            logins_in_flight: Mutex::new(HashMap::new()),
            config: config.clone(),
            audit,
            authorizer,
        }
    }

    /// The token keys in use.
    pub(super) fn keys(&self) -> Arc<TokenKeys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `keys` in use; whether they differ (in keys or in the one that
    /// signs) from those in use before.
    pub fn install_keys(&self, keys: TokenKeys) -> bool {
        let mut current = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let same = current.signing_kid() == keys.signing_kid() && current.kids().eq(keys.kids());
        if !same {
            *current = Arc::new(keys);
        }
        !same
    }

    /// The failed-login limiter (for the worker that shares its counts).
    pub fn login_limiter(&self) -> &LoginLimiter {
        &self.limiter
    }

    /// Password checks (argon2id, bcrypt) computed since start.
    pub fn password_checks_completed(&self) -> u64 {
        self.checks.completed()
    }

    pub(super) async fn bootstrap_admin(&self) -> Result<(), AuthError> {
        if self.metadata.count_users().await? > 0 {
            if self.config.admin_password.is_some() || self.config.admin_password_file.is_some() {
                tracing::warn!(
                    "auth.admin_password (BERTH_ADMIN_PASSWORD) and auth.admin_password_file \
                     only set the first account's password: accounts exist already, so it \
                     is ignored (change a password with `berth user passwd NAME --password-stdin`)"
                );
            }
            return Ok(());
        }
        let from_file = match &self.config.admin_password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| AuthError::Setup(format!("{}: {e}", path.display())))?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            ),
            None => None,
        };
        let (password, generated) = match self.config.admin_password.clone().or(from_file) {
            Some(p) if !p.is_empty() => (p, false),
            _ => (generate_secret(""), true),
        };
        match self
            .metadata
            .create_user("admin", &hash_password(&password), true)
            .await
        {
            Ok(_) => {}
            // A replica starting at the same time on the same database
            // created it first: that one is the first account.
            Err(MetadataError::Duplicate(_)) => {
                tracing::info!("the first account was created by another replica");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        if generated {
            // Printed once, on the first start only: the hash is all we keep.
            tracing::warn!(
                "created the first account: user \"admin\", password \"{password}\" \
                 (shown only now; change it with `berth user passwd admin`)"
            );
        } else {
            tracing::info!("created the first account \"admin\" with the configured password");
        }
        Ok(())
    }

    /// Checks a username and secret (password, personal access token or
    /// robot secret) from HTTP Basic or the token endpoint.
    pub async fn login(
        &self,
        user: &str,
        secret: &str,
        source: IpAddr,
    ) -> Result<Principal, AuthError> {
        // The limiter comes first: during a back-off even a correct (cached)
        // password is refused, or the answers would tell guesses apart.
        self.limiter
            .check(user, source)
            .map_err(AuthError::RateLimited)?;
        let generation = self.metadata.access_generation().await?;
        if let Some((_, p)) = self
            .verified
            .get(user, secret)
            .filter(|(g, _)| *g == generation)
        {
            return Ok(p);
        }
        // Keyed like the credential cache: the map never holds a secret.
        let key = self.verified.entry_tag(user, secret);
        let role = {
            let mut in_flight = self.lock_logins();
            match in_flight.get(&key) {
                Some(wait) => Err(wait.clone()),
                None => {
                    let (publish, wait) = tokio::sync::watch::channel(None);
                    in_flight.insert(key, wait);
                    Ok(publish)
                }
            }
        };
        let publish = match role {
            Ok(publish) => publish,
            Err(mut wait) => {
                // The same secret is being checked: its answer is this
                // one's. Nothing is counted again, for it tells nothing new.
                if let Ok(answer) = wait.wait_for(Option::is_some).await {
                    return answer.clone().flatten().ok_or(AuthError::BadCredentials);
                }
                // The first one ended without an answer: check on our own.
                return self.login_once(user, secret, source, generation).await;
            }
        };
        let _done = InFlight {
            logins: &self.logins_in_flight,
            key,
        };
        let answer = self.login_once(user, secret, source, generation).await;
        match &answer {
            Ok(p) => publish.send_replace(Some(Some(p.clone()))),
            Err(AuthError::BadCredentials) => publish.send_replace(Some(None)),
            Err(_) => None,
        };
        answer
    }

    /// One login check: counted by the limiter as it starts, refunded if
    /// it succeeds or could not run. A success is cached under the access
    /// `generation` read before the check.
    async fn login_once(
        &self,
        user: &str,
        secret: &str,
        source: IpAddr,
        generation: i64,
    ) -> Result<Principal, AuthError> {
        let attempt = self
            .limiter
            .begin(user, source)
            .map_err(AuthError::RateLimited)?;
        let found = match self.verify(user, secret).await {
            Ok(found) => found,
            Err(e) => {
                attempt.cancel();
                return Err(e);
            }
        };
        self.audit
            .record(super::audit::login(user, source, found.is_some()));
        match found {
            Some(p) => {
                attempt.succeeded();
                self.verified.put(user, secret, (generation, p.clone()));
                Ok(p)
            }
            None => {
                attempt.failed();
                Err(AuthError::BadCredentials)
            }
        }
    }

    fn lock_logins(&self) -> std::sync::MutexGuard<'_, HashMap<Tag, LoginWait>> {
        // Every update leaves the map consistent, so a poisoned lock is safe.
        self.logins_in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A password check on the bounded check threads.
    async fn slow_verify(&self, secret: &str, hash: &str) -> Result<bool, AuthError> {
        self.checks.verify(secret, hash).await.map_err(busy)
    }

    /// The same work as a password check, for a name without a hash, so a
    /// wrong password costs the same whether or not the name exists.
    async fn verify_nothing(&self, secret: &str) -> Result<Option<Principal>, AuthError> {
        self.slow_verify(secret, dummy_hash()).await?;
        Ok(None)
    }

    async fn verify(&self, user: &str, secret: &str) -> Result<Option<Principal>, AuthError> {
        let now_ms = (unix_now() * 1000) as i64;
        if user.starts_with(ROBOT_PREFIX) {
            return self.verify_robot(user, secret, now_ms).await;
        }
        let record = self.metadata.get_user(user).await?;
        match record
            .as_ref()
            .filter(|u| u.password_hash != EXTERNAL_ACCOUNT)
        {
            Some(u) if u.disabled => self.verify_nothing(secret).await,
            Some(u) => self.verify_account(u, secret, now_ms).await,
            None => self.verify_htpasswd(user, secret, record.as_ref()).await,
        }
    }

    async fn verify_robot(
        &self,
        name: &str,
        secret: &str,
        now_ms: i64,
    ) -> Result<Option<Principal>, AuthError> {
        let robot = match self.metadata.get_robot(name).await? {
            Some(robot) if !robot.disabled && !robot.is_expired(now_ms) => robot,
            _ => return self.verify_nothing(secret).await,
        };
        Ok(self
            .slow_verify(secret, &robot.secret_hash)
            .await?
            .then(|| Principal::Robot {
                name: robot.name.clone(),
                project: robot.project.clone(),
                actions: robot.actions.clone(),
            }))
    }

    /// An account's password, or one of its personal access tokens.
    async fn verify_account(
        &self,
        u: &crate::metadata::User,
        secret: &str,
        now_ms: i64,
    ) -> Result<Option<Principal>, AuthError> {
        let principal = Principal::User {
            name: u.name.clone(),
            admin: u.admin,
        };
        if self.slow_verify(secret, &u.password_hash).await? {
            return Ok(Some(principal));
        }
        let Some((id, random)) = parse_pat(secret) else {
            return Ok(None);
        };
        let Some(t) = self.metadata.get_access_token(id).await? else {
            return Ok(None);
        };
        let live = t.user == u.name && !t.is_expired(now_ms);
        if !(live && self.slow_verify(random, &t.secret_hash).await?) {
            return Ok(None);
        }
        // Recording each use is a write: once a minute is enough.
        if t.last_used_at.is_none_or(|at| now_ms - at > 60_000) {
            self.metadata.touch_access_token(id, now_ms).await?;
        }
        Ok(Some(principal))
    }

    /// A name from the htpasswd file (`record`: its row, if it has one).
    async fn verify_htpasswd(
        &self,
        user: &str,
        secret: &str,
        record: Option<&crate::metadata::User>,
    ) -> Result<Option<Principal>, AuthError> {
        let Some(file) = self.htpasswd.clone() else {
            return self.verify_nothing(secret).await;
        };
        let (name, password) = (user.to_string(), secret.to_string());
        let htpasswd_ok = self
            .checks
            .run(move || {
                file.verify(&name, &password).unwrap_or_else(|| {
                    // Not in the file either: the same work as a check.
                    super::password::verify_password(&password, dummy_hash())
                })
            })
            .await
            .map_err(busy)?;
        if !htpasswd_ok || record.is_some_and(|u| u.disabled) {
            return Ok(None);
        }
        if record.is_none() {
            // A row of its own lets the account own projects and be a member;
            // its password stays in the htpasswd file.
            match self
                .metadata
                .create_user(user, EXTERNAL_ACCOUNT, false)
                .await
            {
                Ok(_) | Err(MetadataError::Duplicate(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Some(Principal::User {
            name: user.to_string(),
            admin: record.is_some_and(|u| u.admin),
        }))
    }

    /// Forget cached verifications of `user` (password changed, deleted…).
    pub fn forget(&self, user: &str) {
        self.verified.invalidate_user(user);
    }

    /// Verifies a bearer token presented to the registry.
    pub fn verify_token(&self, token: &str) -> Result<Grant, AuthError> {
        let claims = self
            .keys()
            .verify(token, &self.config.service, &self.config.issuer)?;
        Ok(Grant::Token {
            subject: claims.sub,
            access: claims.access,
        })
    }

    /// Resolves a token's subject back to a principal (for listings that
    /// are filtered per caller, such as the catalog).
    pub async fn principal_named(&self, name: &str) -> Result<Principal, AuthError> {
        if name.is_empty() {
            return Ok(Principal::Anonymous);
        }
        if name.starts_with(ROBOT_PREFIX) {
            if let Some(r) = self.metadata.get_robot(name).await? {
                return Ok(Principal::Robot {
                    name: r.name,
                    project: r.project,
                    actions: r.actions,
                });
            }
            return Ok(Principal::Anonymous);
        }
        Ok(match self.metadata.get_user(name).await? {
            Some(u) if !u.disabled => Principal::User {
                name: u.name,
                admin: u.admin,
            },
            Some(_) => Principal::Anonymous,
            None => Principal::User {
                name: name.to_string(),
                admin: false,
            },
        })
    }

    /// What of `want` `who` may have, or `None` when nothing.
    async fn grant_of(
        &self,
        who: &Principal,
        want: ResourceActions,
    ) -> Result<Option<ResourceActions>, AuthError> {
        let allowed: Vec<String> = match want.kind.as_str() {
            "repository" => match want.name.parse::<RepoName>() {
                Ok(repo) => self
                    .authorizer
                    .actions_on(who, &repo)
                    .await?
                    .iter()
                    .map(|a| a.as_str().to_string())
                    .collect(),
                Err(_) => Vec::new(),
            },
            // The catalog is filtered per caller; any signed-in caller may ask.
            "registry" if want.name == "catalog" && *who != Principal::Anonymous => {
                vec!["*".to_string()]
            }
            _ => Vec::new(),
        };
        let actions: Vec<String> = want
            .actions
            .iter()
            .filter(|a| allowed.contains(a) || (a.as_str() == "*" && allowed.len() == 3))
            .cloned()
            .collect();
        Ok((!actions.is_empty()).then_some(ResourceActions {
            kind: want.kind,
            name: want.name,
            actions,
        }))
    }

    /// Issues a token holding the intersection of what was asked and what
    /// `who` may do.
    pub async fn issue_token(
        &self,
        who: &Principal,
        requested: Vec<ResourceActions>,
        source: IpAddr,
    ) -> Result<IssuedToken, AuthError> {
        let mut granted = Vec::new();
        for want in requested {
            if let Some(g) = self.grant_of(who, want).await? {
                granted.push(g);
            }
        }
        let now = unix_now();
        let ttl = self.config.token_ttl_seconds;
        let claims = Claims {
            iss: self.config.issuer.clone(),
            sub: match who {
                Principal::Anonymous => String::new(),
                p => p.name().to_string(),
            },
            aud: self.config.service.clone(),
            exp: now + ttl,
            nbf: now.saturating_sub(1),
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            access: granted.clone(),
            account: None,
            generation: None,
        };
        let token = self.keys().issue(&claims)?;
        if *who == Principal::Anonymous {
            // Anyone may ask for any number: counted, not a row each.
            self.audit.count_anonymous_token();
        } else {
            self.audit
                .record(super::audit::token_issued(who.name(), source, &granted));
        }
        Ok(IssuedToken {
            token,
            expires_in: ttl,
            issued_at: SystemTime::now(),
            access: granted,
        })
    }
}

fn busy(_: Busy) -> AuthError {
    AuthError::Busy(Duration::from_secs(1))
}

/// Where identical concurrent logins wait for the first one's answer:
/// `Some(Some(principal))`, or `Some(None)` for wrong credentials, once
/// known; closed without one if the first check failed or was dropped.
type LoginWait = tokio::sync::watch::Receiver<Option<Option<Principal>>>;

/// Takes a login off the in-flight map when its check ends, however it
/// ends (a client that goes away cancels the future).
struct InFlight<'a> {
    logins: &'a Mutex<HashMap<Tag, LoginWait>>,
    key: Tag,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.logins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}
