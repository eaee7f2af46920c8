//! Access-control metadata: users, projects and their members, robot
//! accounts, personal access tokens, and the audit log.
//!
//! Contract: the store keeps facts; the `auth` layer decides. Nothing here
//! checks passwords, expiry or roles against a request: hashes are opaque
//! text computed and verified above, and expiry times are stored as given.
//! Names are compared exactly. A write that refers to a missing user or
//! project fails with `MetadataError::NotFound`; one that would repeat a
//! unique name fails with `MetadataError::Duplicate`. Deleting a user drops
//! its memberships and access tokens; deleting a project drops its members,
//! robots and repositories (their tags, manifests and blob links; the blob
//! bytes are left to garbage collection), so a project created again under
//! the name inherits nothing. Times are Unix milliseconds.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Result;

/// A role inside one project, weakest first: `Role::Developer >= Role::Guest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Guest,
    Developer,
    Maintainer,
    /// Administers the project (not the whole registry: see `User::admin`).
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Guest, Role::Developer, Role::Maintainer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Guest => "guest",
            Role::Developer => "developer",
            Role::Maintainer => "maintainer",
            Role::Admin => "admin",
        }
    }
}

/// What may be done to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

/// A text that names no known `Role` or `Action`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown {kind} {value:?} (expected one of: {expected})")]
pub struct UnknownName {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

macro_rules! text_enum {
    ($ty:ident, $kind:literal, $expected:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, UnknownName> {
                $ty::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownName {
                        kind: $kind,
                        value: s.to_string(),
                        expected: $expected,
                    })
            }
        }
    };
}

text_enum!(Role, "role", "guest, developer, maintainer, admin");
text_enum!(Action, "action", "pull, push, delete");

/// Hashes never appear in logs, even hashed.
const REDACTED: &str = "<redacted>";

#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub password_hash: String,
    /// Administers the whole registry.
    pub admin: bool,
    pub disabled: bool,
    pub created_at: i64,
    /// Bumped by every change of password, admin flag or disabled flag: the
    /// refresh tokens and sessions issued under an older one are void.
    pub generation: i64,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("password_hash", &REDACTED)
            .field("admin", &self.admin)
            .field("disabled", &self.disabled)
            .field("created_at", &self.created_at)
            .field("generation", &self.generation)
            .finish()
    }
}

/// A project: the namespace of every repository whose first path component
/// is `name` (see `RepoName::project`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: i64,
    pub name: String,
    /// Anyone, even anonymous, may pull.
    pub public: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user: String,
    pub role: Role,
}

/// A non-human account limited to some actions on one project's repositories.
#[derive(Clone, PartialEq, Eq)]
pub struct Robot {
    pub id: i64,
    pub name: String,
    pub secret_hash: String,
    pub project: String,
    /// Sorted, without repeats.
    pub actions: Vec<Action>,
    pub expires_at: Option<i64>,
    /// Name of the user who made it (it may since have been deleted).
    pub created_by: String,
    pub created_at: i64,
    pub disabled: bool,
    /// Bumped when the robot is disabled or enabled again (see `User`).
    pub generation: i64,
}

impl Robot {
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now_ms)
    }
}

impl fmt::Debug for Robot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Robot")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("secret_hash", &REDACTED)
            .field("project", &self.project)
            .field("actions", &self.actions)
            .field("expires_at", &self.expires_at)
            .field("created_by", &self.created_by)
            .field("created_at", &self.created_at)
            .field("disabled", &self.disabled)
            .field("generation", &self.generation)
            .finish()
    }
}

/// A robot account to create.
#[derive(Clone)]
pub struct NewRobot {
    pub name: String,
    pub secret_hash: String,
    pub project: String,
    pub actions: Vec<Action>,
    pub expires_at: Option<i64>,
    pub created_by: String,
}

impl fmt::Debug for NewRobot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewRobot")
            .field("name", &self.name)
            .field("secret_hash", &REDACTED)
            .field("project", &self.project)
            .field("actions", &self.actions)
            .field("expires_at", &self.expires_at)
            .field("created_by", &self.created_by)
            .finish()
    }
}

/// A personal access token: a user's password substitute for clients.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// Random, chosen by the store; the presented token carries it.
    pub id: String,
    /// Name of the owning user.
    pub user: String,
    /// The user's label for it, unique per user.
    pub name: String,
    pub secret_hash: String,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl AccessToken {
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now_ms)
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("name", &self.name)
            .field("secret_hash", &REDACTED)
            .field("expires_at", &self.expires_at)
            .field("created_at", &self.created_at)
            .field("last_used_at", &self.last_used_at)
            .finish()
    }
}

/// One recorded event. `repository` and `digest` are kept as the text the
/// client sent, not parsed types, because refused requests with malformed
/// names are worth auditing too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    pub id: i64,
    pub at: i64,
    /// User or robot name, or `anonymous`.
    pub actor: String,
    /// Client address.
    pub source: Option<String>,
    /// What was attempted: `pull`, `push`, `login`, `user.create`…
    pub action: String,
    pub repository: Option<String>,
    pub digest: Option<String>,
    pub detail: Option<String>,
    pub success: bool,
}

/// An event to record; the store assigns its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    pub at: i64,
    pub actor: String,
    pub source: Option<String>,
    pub action: String,
    pub repository: Option<String>,
    pub digest: Option<String>,
    pub detail: Option<String>,
    pub success: bool,
}

/// Which audit events to return: newest first, every given field must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub repository: Option<String>,
    /// Events at or after this time.
    pub since: Option<i64>,
    /// Events strictly before this time.
    pub until: Option<i64>,
    /// Cursor: events with a smaller id (pass the last id of the previous page).
    pub before_id: Option<i64>,
    pub limit: u32,
}

impl Default for AuditFilter {
    fn default() -> Self {
        AuditFilter {
            actor: None,
            action: None,
            repository: None,
            since: None,
            until: None,
            before_id: None,
            limit: 100,
        }
    }
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// `MetadataError::Duplicate` when the name is taken.
    async fn create_user(&self, name: &str, password_hash: &str, admin: bool) -> Result<User>;
    async fn get_user(&self, name: &str) -> Result<Option<User>>;
    /// Every user, ordered by name.
    async fn list_users(&self) -> Result<Vec<User>>;
    /// At most `limit` users ordered by name, the first after `after`.
    async fn users_page(&self, after: &str, limit: u32) -> Result<Vec<User>>;
    /// The following setters return whether the user exists. Each bumps the
    /// user's `generation` when it changes something (a password is always
    /// a change).
    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool>;
    async fn set_admin(&self, name: &str, admin: bool) -> Result<bool>;
    async fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool>;
    /// Deletes the user with its memberships and access tokens.
    async fn delete_user(&self, name: &str) -> Result<bool>;
    /// Zero means a fresh install (time to create the first admin).
    async fn count_users(&self) -> Result<u64>;
    /// A number that changes with every committed change to users,
    /// projects, members, robots or access tokens, by any process sharing
    /// the store: what was cached from them before a change is stale.
    async fn access_generation(&self) -> Result<i64>;
}

#[async_trait]
pub trait ProjectStore: Send + Sync {
    /// Creates the project and, in the same transaction, makes `owner` its
    /// `Role::Admin` and deletes any repository left under the name by a
    /// project deleted earlier (it must not pass to the new owner).
    /// `Duplicate` when the name is taken, `NotFound` when the owner is
    /// unknown (then nothing is created).
    async fn create_project(
        &self,
        name: &str,
        public: bool,
        owner: Option<&str>,
    ) -> Result<Project>;
    async fn get_project(&self, name: &str) -> Result<Option<Project>>;
    /// Every project, ordered by name.
    async fn list_projects(&self) -> Result<Vec<Project>>;
    /// At most `limit` of the projects `visible` admits, ordered by name,
    /// the first after `after` (`""` for the first page), each with
    /// `user`'s role in it. Reads the visible projects only (for a caller
    /// restricted to some) or one page of names (for one who sees all).
    async fn projects_page(
        &self,
        visible: &super::Visible,
        user: Option<&str>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(Project, Option<Role>)>>;
    /// Whether the project exists.
    async fn set_public(&self, name: &str, public: bool) -> Result<bool>;
    /// Deletes the project with its members and robots, in one transaction.
    /// Its repositories (the names `name` and `name/…`) go too when
    /// `with_repositories` is set; otherwise a project that still holds a
    /// repository with a manifest is left as it was.
    async fn delete_project(&self, name: &str, with_repositories: bool) -> Result<ProjectDeletion>;
    /// Repositories under the project's name (`name` and `name/…`),
    /// whether or not the project row exists: a repository left without its
    /// project (deleted before berth removed repositories with it) counts.
    async fn project_repository_count(&self, name: &str) -> Result<u64>;
}

/// What [`ProjectStore::delete_project`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectDeletion {
    /// Deleted, with this many repositories.
    Deleted { repositories: u64 },
    /// No such project; nothing changed.
    NotFound,
    /// Refused: the project still holds this many repositories with a manifest.
    NotEmpty { repositories: u64 },
}

#[async_trait]
pub trait MemberStore: Send + Sync {
    /// Adds the member or changes its role. `NotFound` when the project or
    /// the user is unknown.
    async fn set_member(&self, project: &str, user: &str, role: Role) -> Result<()>;
    async fn remove_member(&self, project: &str, user: &str) -> Result<bool>;
    /// Members of the project, ordered by user name (empty if unknown).
    async fn members(&self, project: &str) -> Result<Vec<Member>>;
    async fn role_of(&self, project: &str, user: &str) -> Result<Option<Role>>;
    /// The user's projects and roles, ordered by project name.
    async fn memberships(&self, user: &str) -> Result<Vec<(String, Role)>>;
}

#[async_trait]
pub trait RobotStore: Send + Sync {
    /// `Duplicate` when the name is taken, `NotFound` when the project is
    /// unknown. Actions are stored sorted, without repeats.
    async fn create_robot(&self, robot: &NewRobot) -> Result<Robot>;
    async fn get_robot(&self, name: &str) -> Result<Option<Robot>>;
    /// Robots of one project, or of all, ordered by name.
    async fn list_robots(&self, project: Option<&str>) -> Result<Vec<Robot>>;
    async fn delete_robot(&self, name: &str) -> Result<bool>;
    /// Whether the robot exists; bumps its `generation` on a change.
    async fn set_robot_disabled(&self, name: &str, disabled: bool) -> Result<bool>;
}

#[async_trait]
pub trait AccessTokenStore: Send + Sync {
    /// `NotFound` when the user is unknown, `Duplicate` when the user already
    /// has a token of that name.
    async fn create_access_token(
        &self,
        user: &str,
        name: &str,
        secret_hash: &str,
        expires_at: Option<i64>,
    ) -> Result<AccessToken>;
    async fn get_access_token(&self, id: &str) -> Result<Option<AccessToken>>;
    /// The user's tokens, ordered by name.
    async fn access_tokens_of(&self, user: &str) -> Result<Vec<AccessToken>>;
    /// Deletes the token only if `user` owns it.
    async fn delete_access_token(&self, user: &str, id: &str) -> Result<bool>;
    /// Records a use. Each call is a write: callers should skip it when the
    /// stored `last_used_at` is recent enough.
    async fn touch_access_token(&self, id: &str, at: i64) -> Result<()>;
}

#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Records events in one transaction.
    async fn record(&self, events: &[NewAuditEvent]) -> Result<()>;
    /// Matching events, newest (highest id) first, at most `filter.limit`.
    async fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>>;
    /// Deletes the events recorded before `before` (Unix ms), `batch` per
    /// transaction so that other writers wait for one batch at most;
    /// returns how many were deleted.
    async fn prune(&self, before: i64, batch: u32) -> Result<u64>;
}

/// Everything access control needs from a metadata backend.
pub trait AccessMetadata:
    UserStore + ProjectStore + MemberStore + RobotStore + AccessTokenStore + AuditLog
{
}
impl<T: UserStore + ProjectStore + MemberStore + RobotStore + AccessTokenStore + AuditLog>
    AccessMetadata for T
{
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_round_trip_as_text() {
        assert!(Role::Guest < Role::Developer);
        assert!(Role::Developer < Role::Maintainer);
        assert!(Role::Maintainer < Role::Admin);
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>().unwrap(), role);
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{role}\""));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
        }
        let err = "owner".parse::<Role>().unwrap_err();
        assert!(err.to_string().contains("guest, developer"), "{err}");
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn actions_round_trip_as_text() {
        for action in Action::ALL {
            assert_eq!(action.to_string().parse::<Action>().unwrap(), action);
            let json = serde_json::to_string(&action).unwrap();
            assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), action);
        }
        assert_eq!("delete".parse::<Action>().unwrap(), Action::Delete);
        assert!("admin".parse::<Action>().is_err());
    }

    #[test]
    fn debug_output_hides_hashes() {
        let user = User {
            id: 1,
            name: "alice".into(),
            password_hash: "$argon2id$SENSITIVE".into(),
            admin: false,
            disabled: false,
            created_at: 0,
            generation: 0,
        };
        let robot = Robot {
            id: 1,
            name: "robot".into(),
            secret_hash: "$argon2id$SENSITIVE".into(),
            project: "p".into(),
            actions: vec![Action::Pull],
            expires_at: None,
            created_by: "alice".into(),
            created_at: 0,
            disabled: false,
            generation: 0,
        };
        let new_robot = NewRobot {
            name: "robot".into(),
            secret_hash: "$argon2id$SENSITIVE".into(),
            project: "p".into(),
            actions: vec![Action::Pull],
            expires_at: None,
            created_by: "alice".into(),
        };
        let token = AccessToken {
            id: "x".into(),
            user: "alice".into(),
            name: "ci".into(),
            secret_hash: "$argon2id$SENSITIVE".into(),
            expires_at: None,
            created_at: 0,
            last_used_at: None,
        };
        for text in [
            format!("{user:?}"),
            format!("{robot:?}"),
            format!("{new_robot:?}"),
            format!("{token:?}"),
        ] {
            assert!(!text.contains("SENSITIVE"), "{text}");
            assert!(text.contains("alice"), "{text}");
        }
    }

    #[test]
    fn expiry_is_inclusive_of_its_instant() {
        let mut token = AccessToken {
            id: "x".into(),
            user: "u".into(),
            name: "n".into(),
            secret_hash: String::new(),
            expires_at: None,
            created_at: 0,
            last_used_at: None,
        };
        assert!(!token.is_expired(i64::MAX));
        token.expires_at = Some(1000);
        assert!(!token.is_expired(999));
        assert!(token.is_expired(1000));
    }
}
