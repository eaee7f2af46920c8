//! Authentication primitives: pure building blocks with no HTTP and no
//! database in them, so each is unit-tested on its own.
//!
//! - [`password`]: argon2id hashing of the secrets berth stores (account
//!   passwords, robot secrets, personal access tokens) and generation of
//!   random secrets.
//! - [`htpasswd`]: an Apache htpasswd file as an extra account source
//!   (bcrypt, apr1-MD5, `{SHA}`), reloaded when it changes.
//! - [`token`]: Docker registry bearer tokens: ES256 JWTs signed with keys
//!   kept in a directory (rotation without logging anyone out), and `scope`
//!   parsing.
//! - [`limiter`]: failed-login rate limiting per account and per source.
//! - [`credcache`]: a short-lived cache of successful verifications keyed by
//!   an HMAC, never by the plaintext secret.
//!
//! Rules that hold across them: no secret or hash ever reaches a log line
//! or a `Debug` output; secret comparisons run in constant time; every
//! in-memory table is bounded; checks never wait for a database (replicas
//! each keep their own credential cache; the limiter's counts are merged
//! between them in the background, see [`limiter::shared`]).

pub mod credcache;
pub mod htpasswd;
pub mod limiter;
pub mod password;
pub mod token;

pub use credcache::CredentialCache;
pub use htpasswd::HtpasswdFile;
pub use limiter::LoginLimiter;
pub use password::{generate_secret, hash_password, verify_password};
pub use token::{parse_scopes, Claims, ResourceActions, TokenError, TokenKeys};

pub mod accounts;
pub mod audit;
mod authenticator;
mod authorizer;
mod error;
mod lifecycle;
pub mod policy;
mod refresh;
mod service;
mod settings;
mod views;

pub use accounts::Accounts;
pub use authenticator::Authenticator;
pub use authorizer::Authorizer;
pub use error::AuthError;
pub use policy::{Principal, ProjectFacts};
pub use service::{Auth, Binding, Grant, IssuedToken, PAT_PREFIX, ROBOT_PREFIX};
pub use settings::{AuthConfig, AuthMode, ProjectCreation};
pub use views::{Actor, Created, ProjectView, RobotView, TokenView, UserUpdate, UserView};
