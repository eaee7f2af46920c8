//! Authentication settings (`[auth]` in the configuration), embedded by
//! `config::Config`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Whether requests must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Accounts, tokens and roles: anonymous users may only pull from public
    /// projects.
    Token,
    /// No authentication at all: anyone may push, pull and delete. Only for
    /// a throwaway local registry.
    None,
}

/// Who may create a project by pushing into one that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectCreation {
    /// Only system administrators.
    Admins,
    /// Any signed-in user, who becomes the project's admin.
    Users,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `token` (default) or `none`.
    pub mode: AuthMode,
    /// Password of the `admin` account created on first start (also
    /// `BERTH_ADMIN_PASSWORD`). When neither this nor the file is set, a
    /// password is generated and printed once to the log.
    pub admin_password: Option<String>,
    /// File holding the admin password (first line).
    pub admin_password_file: Option<PathBuf>,
    /// An htpasswd file with more accounts (bcrypt, apr1 or SHA entries);
    /// reloaded when it changes.
    pub htpasswd_file: Option<PathBuf>,
    /// The `service` of token challenges and the audience of tokens.
    pub service: String,
    /// The issuer named in tokens.
    pub issuer: String,
    /// The token endpoint URL announced in challenges. Unset: derived from
    /// the request's scheme and Host (when it is a valid host and port;
    /// otherwise `localhost`), plus `/token`. Set it behind a reverse proxy
    /// or load balancer: `https://registry.example.com/token`.
    pub realm: Option<String>,
    /// Lifetime of issued access tokens, in seconds.
    pub token_ttl_seconds: u64,
    /// Lifetime of refresh tokens, in seconds; 0 (the default): no time
    /// limit. Refresh tokens come only from the OAuth2 `POST /token` with
    /// `access_type=offline`; `docker login` (the `GET /token` flow) gets
    /// none and keeps the password instead.
    /// Whatever the limit, a refresh token ends at once when its account's
    /// password, admin flag or disabled flag changes, or the account (or
    /// robot) is deleted or expires.
    pub refresh_ttl_seconds: u64,
    /// How long a verified password is remembered, in seconds, so that
    /// Basic auth does not run bcrypt/argon2 on every request. Any change
    /// to accounts, projects, members, robots or tokens, through the API or
    /// the CLI (another process), ends what was remembered at once.
    pub credential_cache_seconds: u64,
    /// Who may create a project by pushing into it: `admins` or `users`.
    pub project_creation: ProjectCreation,
    /// Failed logins allowed for one account from one client address
    /// before that pair must back off: each further failure doubles the
    /// wait (5 s, 10 s, 20 s…, at most `login_window_seconds`) and attempts
    /// in the wait get 429. The same account from another address is not
    /// affected. 0 turns login limiting off.
    pub login_max_failures: u32,
    /// Failed logins allowed from one client address on all accounts
    /// together before the address backs off the same way. Accounts that
    /// logged in from that address before are exempt, so one guesser
    /// behind a NAT or CI host does not lock out its neighbours.
    pub login_address_max_failures: u32,
    /// How long failures are remembered after the last one, and the
    /// longest back-off, in seconds.
    pub login_window_seconds: u64,
    /// Password checks (argon2id, bcrypt) run at once; 0 means one per CPU
    /// core. Each argon2id check holds about 19 MiB while it runs.
    pub password_checks: usize,
    /// Password checks allowed to wait for a free slot; a login beyond it
    /// gets 429 with `Retry-After` instead of queueing without bound.
    pub password_check_queue: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Token,
            admin_password: None,
            admin_password_file: None,
            htpasswd_file: None,
            service: "berth".into(),
            issuer: "berth".into(),
            realm: None,
            token_ttl_seconds: 300,
            refresh_ttl_seconds: 0,
            credential_cache_seconds: 60,
            project_creation: ProjectCreation::Admins,
            login_max_failures: 10,
            login_address_max_failures: 100,
            login_window_seconds: 300,
            password_checks: 0,
            password_check_queue: 256,
        }
    }
}

impl AuthConfig {
    /// Adds what is wrong with these settings to `problems`.
    pub fn check(&self, problems: &mut Vec<String>) {
        if self.token_ttl_seconds == 0 {
            problems.push("auth.token_ttl_seconds must be at least 1".to_string());
        }
    }
}
