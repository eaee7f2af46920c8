//! The authentication and authorization service: turns credentials into a
//! principal, decides what it may do, issues bearer tokens and keeps the
//! audit trail. The HTTP layer calls it; it calls the metadata layer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::credcache::{CredentialCache, Tag};
use super::htpasswd::HtpasswdFile;
use super::limiter::LoginLimiter;
use super::password::{dummy_hash, generate_secret, hash_password, Busy, PasswordChecks};
use super::policy::{allowed_actions, Principal, ProjectFacts};
use super::token::{Claims, ResourceActions, TokenError, TokenKeys};
use super::{AuthConfig, AuthMode};
use crate::metadata::{AccessMetadata, Action, MetadataError, Visible};
use crate::oci::RepoName;

/// Prefix of personal access tokens: `berth_pat_<id>_<secret>`.
pub const PAT_PREFIX: &str = "berth_pat_";
/// How long project facts (visibility, roles) are remembered at most. A
/// change of access control made anywhere (the CLI, another replica) is
/// seen at once anyway, through the store's access generation.
const FACTS_TTL: Duration = Duration::from_secs(2);
/// The password hash of accounts that live in the htpasswd file: never a
/// valid PHC string, so only the file can verify them.
const EXTERNAL_ACCOUNT: &str = "!htpasswd";
/// Robot account names start with this.
pub const ROBOT_PREFIX: &str = "robot$";

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
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

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

pub struct AuthService {
    metadata: Arc<dyn AccessMetadata>,
    keys: TokenKeys,
    htpasswd: Option<Arc<HtpasswdFile>>,
    /// Each entry is tagged with the store's access generation read before
    /// the check that filled it, and served only while that is current.
    verified: CredentialCache<(i64, Principal)>,
    /// Tagged like `verified`, and also kept at most `FACTS_TTL`.
    facts: quick_cache::sync::Cache<(String, String), (Instant, i64, ProjectFacts)>,
    limiter: LoginLimiter,
    checks: PasswordChecks,
    /// Logins being checked, by a keyed hash of (user, secret): identical
    /// concurrent logins wait for the first one's answer.
    logins_in_flight: Mutex<HashMap<Tag, LoginWait>>,
    config: AuthConfig,
    audit: super::audit::AuditSink,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AuthService {
    /// Opens the service: token keys under `<data_dir>/keys`, the htpasswd
    /// file, and the first admin account when there is no account yet.
    pub async fn open(
        metadata: Arc<dyn AccessMetadata>,
        config: &AuthConfig,
        data_dir: &Path,
    ) -> anyhow::Result<AuthService> {
        let keys = TokenKeys::load_or_create(&data_dir.join("keys"))?;
        let htpasswd = match &config.htpasswd_file {
            Some(path) => Some(Arc::new(HtpasswdFile::open(path.clone())?)),
            None => None,
        };
        let service = AuthService {
            audit: super::audit::AuditSink::start(metadata.clone()),
            metadata,
            keys,
            htpasswd,
            verified: CredentialCache::new(Duration::from_secs(config.credential_cache_seconds)),
            facts: quick_cache::sync::Cache::new(10_000),
            limiter: LoginLimiter::new(
                config.login_max_failures,
                config.login_address_max_failures,
                Duration::from_secs(config.login_window_seconds),
            ),
            checks: PasswordChecks::new(config.password_checks, config.password_check_queue),
            logins_in_flight: Mutex::new(HashMap::new()),
            config: config.clone(),
        };
        if config.mode == AuthMode::Token {
            service.bootstrap_admin().await?;
        } else {
            tracing::warn!(
                "AUTHENTICATION IS OFF (auth.mode = \"none\"): anyone who can reach this \
                 registry may push, pull and delete. Use this only for a throwaway local registry."
            );
        }
        Ok(service)
    }

    pub fn enabled(&self) -> bool {
        self.config.mode == AuthMode::Token
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    pub(super) fn metadata(&self) -> &dyn AccessMetadata {
        &*self.metadata
    }

    pub fn audit(&self) -> &super::audit::AuditSink {
        &self.audit
    }

    /// Password checks (argon2id, bcrypt) computed since start.
    pub fn password_checks_completed(&self) -> u64 {
        self.checks.completed()
    }

    async fn bootstrap_admin(&self) -> anyhow::Result<()> {
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
                std::fs::read_to_string(path)?
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
        self.metadata
            .create_user("admin", &hash_password(&password), true)
            .await?;
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
            .keys
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

    /// The repositories `who` may see in listings (the catalog, search):
    /// exactly those it may pull.
    pub fn visible_to(&self, who: &Principal) -> Visible {
        let none = Visible::Projects {
            member: None,
            project: None,
        };
        match who {
            _ if !self.enabled() => Visible::All,
            Principal::User { admin: true, .. } => Visible::All,
            Principal::User { name, .. } => Visible::Projects {
                member: Some(name.clone()),
                project: None,
            },
            Principal::Robot {
                project, actions, ..
            } if actions.contains(&Action::Pull) => Visible::Projects {
                member: None,
                project: Some(project.clone()),
            },
            Principal::Robot { .. } | Principal::Anonymous => none,
        }
    }

    /// The actions `who` may perform on `repo`.
    pub async fn actions_on(
        &self,
        who: &Principal,
        repo: &RepoName,
    ) -> Result<Vec<Action>, AuthError> {
        if !self.enabled() {
            return Ok(vec![Action::Pull, Action::Push, Action::Delete]);
        }
        let project = repo.project();
        let facts = self.project_facts(who, project).await?;
        Ok(allowed_actions(
            who,
            project,
            &facts,
            self.config.project_creation,
        ))
    }

    /// A project's visibility and the caller's role in it, remembered for
    /// `FACTS_TTL` so that a request does not cost two database reads.
    /// Changes made through this service clear the cache at once.
    async fn project_facts(
        &self,
        who: &Principal,
        project: &str,
    ) -> Result<ProjectFacts, AuthError> {
        let key = (project.to_string(), who.name().to_string());
        // Fresh: younger than FACTS_TTL, and no access-control change since
        // (made here or by another process, such as the CLI).
        let generation = self.metadata.access_generation().await?;
        if let Some((at, g, facts)) = self.facts.get(&key) {
            if at.elapsed() < FACTS_TTL && g == generation {
                return Ok(facts);
            }
        }
        let facts = match self.metadata.get_project(project).await? {
            None => ProjectFacts {
                leftover: self.metadata.project_repository_count(project).await? > 0,
                ..ProjectFacts::default()
            },
            Some(p) => ProjectFacts {
                public: Some(p.public),
                role: match who {
                    Principal::User { name, .. } => self.metadata.role_of(project, name).await?,
                    _ => None,
                },
                leftover: false,
            },
        };
        self.facts
            .insert(key, (Instant::now(), generation, facts.clone()));
        Ok(facts)
    }

    /// Forget remembered project facts (visibility, memberships changed).
    pub(super) fn forget_projects(&self) {
        self.facts.clear();
    }

    /// Whether `grant` covers `action` on `repo`.
    pub async fn permits(
        &self,
        grant: &Grant,
        repo: &RepoName,
        action: Action,
    ) -> Result<bool, AuthError> {
        match grant {
            Grant::Principal(p) => Ok(self.actions_on(p, repo).await?.contains(&action)),
            Grant::Token { access, .. } => Ok(access.iter().any(|a| {
                a.kind == "repository"
                    && a.name == repo.as_str()
                    && a.actions.iter().any(|x| x == action.as_str() || x == "*")
            })),
        }
    }

    /// Creates the project of `repo` on a first push, owned by the pusher.
    pub async fn ensure_project(&self, repo: &RepoName, owner: &str) -> Result<(), AuthError> {
        if !self.enabled() {
            return Ok(());
        }
        let known = self
            .facts
            .get(&(repo.project().to_string(), owner.to_string()));
        if known.is_some_and(|(at, _, f)| at.elapsed() < FACTS_TTL && f.public.is_some())
            || self.metadata.get_project(repo.project()).await?.is_some()
        {
            return Ok(());
        }
        self.forget_projects();
        let owner = (owner != "anonymous" && !owner.starts_with(ROBOT_PREFIX)).then_some(owner);
        match self
            .metadata
            .create_project(repo.project(), false, owner)
            .await
        {
            Ok(_) | Err(MetadataError::Duplicate(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
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
        let token = self.keys.issue(&claims)?;
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

    /// A refresh token for `who`, bound to its account's id and credential
    /// generation (audience marked so it can never pass as an access
    /// token). It has no time limit unless `auth.refresh_ttl_seconds` sets
    /// one: it ends when the account changes (see [`AuthService::bound`]).
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
        Ok(self.keys.issue(&claims)?)
    }

    /// The principal a refresh token was issued to, if it is still valid:
    /// signed by us, and its account still the one, at the generation, it
    /// was issued under.
    pub async fn redeem_refresh_token(&self, token: &str) -> Result<Principal, AuthError> {
        let claims = self
            .keys
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
