//! What the accounts service takes and answers: the actor of an operation
//! and the views of users, projects, robots and tokens (no secret hash in
//! any of them).

use std::net::IpAddr;

use serde::Serialize;

use super::policy::Principal;
use crate::metadata::{Action, Role, User};

/// Who asks, from where: every operation is checked and audited against it.
#[derive(Debug, Clone)]
pub struct Actor {
    pub principal: Principal,
    pub source: Option<IpAddr>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub name: String,
    pub admin: bool,
    pub disabled: bool,
    pub created_at: i64,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            name: u.name,
            admin: u.admin,
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ProjectView {
    pub name: String,
    pub public: bool,
    pub created_at: i64,
    /// The caller's role, if a member.
    pub role: Option<Role>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RobotView {
    pub name: String,
    pub project: String,
    pub actions: Vec<Action>,
    pub expires_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub disabled: bool,
}

/// A freshly made secret (robot or token): shown once, never stored plain.
#[derive(Debug, Clone, Serialize)]
pub struct Created<T> {
    #[serde(flatten)]
    pub item: T,
    pub secret: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// Changes to a user; `None` leaves a field alone.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    pub password: Option<String>,
    pub admin: Option<bool>,
    pub disabled: Option<bool>,
}
