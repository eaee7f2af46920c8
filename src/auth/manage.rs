//! Management of accounts, projects, members, robots and personal access
//! tokens, with the permission rule of each operation and its audit event.
//! Both the `/api/v1` handlers and the CLI call these.

use std::net::IpAddr;

use serde::Serialize;

use super::password::{generate_secret, hash_password};

/// Hashing is slow by design (tens of milliseconds): off the async workers.
async fn slow_hash(secret: &str) -> String {
    let secret = secret.to_string();
    match tokio::task::spawn_blocking(move || hash_password(&secret)).await {
        Ok(hash) => hash,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
use super::policy::Principal;
use super::service::{format_pat, AuthService, ROBOT_PREFIX};
use super::ProjectCreation;
use crate::metadata::now_ms;
use crate::metadata::{
    Action, AuditEvent, AuditFilter, MetadataError, NewRobot, Project, ProjectDeletion, Role, User,
    Visible,
};

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
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
    #[error(transparent)]
    Metadata(MetadataError),
}

impl From<MetadataError> for ManageError {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::Duplicate(what) => ManageError::Conflict(what),
            MetadataError::NotFound(what) => ManageError::NotFound(what),
            other => ManageError::Metadata(other),
        }
    }
}

pub type Result<T, E = ManageError> = std::result::Result<T, E>;

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

const MIN_PASSWORD: usize = 8;

fn check_password(p: &str) -> Result<()> {
    if p.chars().count() < MIN_PASSWORD {
        return Err(ManageError::Invalid(format!(
            "passwords need at least {MIN_PASSWORD} characters"
        )));
    }
    Ok(())
}

/// Account and project names: the repository-name component grammar.
fn check_name(kind: &str, name: &str) -> Result<()> {
    match name.parse::<crate::oci::RepoName>() {
        Ok(n) if !n.as_str().contains('/') => Ok(()),
        _ => Err(ManageError::Invalid(format!(
            "invalid {kind} name {name:?}: use lowercase letters, digits and . _ -"
        ))),
    }
}

impl AuthService {
    fn require_user<'a>(&self, actor: &'a Actor) -> Result<(&'a str, bool)> {
        match &actor.principal {
            Principal::User { name, admin } => Ok((name, *admin)),
            Principal::Robot { .. } => Err(ManageError::Forbidden(
                "robot accounts cannot manage the registry".into(),
            )),
            Principal::Anonymous => Err(ManageError::Unauthenticated),
        }
    }

    fn require_admin(&self, actor: &Actor) -> Result<()> {
        match self.require_user(actor)? {
            (_, true) => Ok(()),
            _ => Err(ManageError::Forbidden(
                "only system administrators may do this".into(),
            )),
        }
    }

    /// System admins and the project's admins manage a project.
    async fn require_project_admin(&self, actor: &Actor, project: &str) -> Result<Project> {
        let (name, admin) = self.require_user(actor)?;
        let found = self.metadata().get_project(project).await?;
        let role = self.metadata().role_of(project, name).await?;
        match found {
            Some(p) if admin || role == Some(Role::Admin) => Ok(p),
            // Members and strangers of a private project learn nothing more.
            _ if admin => Err(ManageError::NotFound(format!("project {project:?}"))),
            Some(p) if p.public || role.is_some() => Err(ManageError::Forbidden(format!(
                "only admins of {project:?} may do this"
            ))),
            _ => Err(ManageError::NotFound(format!("project {project:?}"))),
        }
    }

    fn audit_change(&self, actor: &Actor, action: &str, detail: String) {
        // Any change may alter who may do what: decide afresh.
        self.forget_projects();
        self.audit().record(super::audit::event(
            actor.principal.name(),
            actor.source,
            action,
            None,
            None,
            Some(detail),
            true,
        ));
    }

    pub async fn list_users(&self, actor: &Actor) -> Result<Vec<UserView>> {
        self.require_admin(actor)?;
        let users = self.metadata().list_users().await?;
        Ok(users.into_iter().map(UserView::from).collect())
    }

    /// At most `limit` users ordered by name, the first after `after`.
    pub async fn users_page(
        &self,
        actor: &Actor,
        after: &str,
        limit: u32,
    ) -> Result<Vec<UserView>> {
        self.require_admin(actor)?;
        let users = self.metadata().users_page(after, limit).await?;
        Ok(users.into_iter().map(UserView::from).collect())
    }

    pub async fn create_user(
        &self,
        actor: &Actor,
        name: &str,
        password: &str,
        admin: bool,
    ) -> Result<UserView> {
        self.require_admin(actor)?;
        check_name("user", name)?;
        check_password(password)?;
        let user = self
            .metadata()
            .create_user(name, &slow_hash(password).await, admin)
            .await?;
        self.audit_change(actor, "user.create", format!("{name} admin={admin}"));
        Ok(user.into())
    }

    /// Admins may change anything of anyone; users only their own password.
    pub async fn update_user(
        &self,
        actor: &Actor,
        name: &str,
        update: &UserUpdate,
    ) -> Result<UserView> {
        let (me, admin) = self.require_user(actor)?;
        let self_service = me == name && update.admin.is_none() && update.disabled.is_none();
        if !admin && !self_service {
            return Err(ManageError::Forbidden(
                "only system administrators may do this".into(),
            ));
        }
        let m = self.metadata();
        let missing = || ManageError::NotFound(format!("user {name:?}"));
        if let Some(p) = &update.password {
            check_password(p)?;
            m.set_password(name, &slow_hash(p).await)
                .await?
                .then_some(())
                .ok_or_else(missing)?;
        }
        if let Some(a) = update.admin {
            m.set_admin(name, a)
                .await?
                .then_some(())
                .ok_or_else(missing)?;
        }
        if let Some(d) = update.disabled {
            m.set_disabled(name, d)
                .await?
                .then_some(())
                .ok_or_else(missing)?;
        }
        self.forget(name);
        let changed: Vec<&str> = [
            update.password.as_ref().map(|_| "password"),
            update.admin.map(|_| "admin"),
            update.disabled.map(|_| "disabled"),
        ]
        .into_iter()
        .flatten()
        .collect();
        self.audit_change(
            actor,
            "user.update",
            format!("{name}: {}", changed.join(",")),
        );
        m.get_user(name)
            .await?
            .map(UserView::from)
            .ok_or_else(missing)
    }

    pub async fn delete_user(&self, actor: &Actor, name: &str) -> Result<()> {
        self.require_admin(actor)?;
        if actor.principal.name() == name {
            return Err(ManageError::Invalid(
                "you cannot delete your own account".into(),
            ));
        }
        if !self.metadata().delete_user(name).await? {
            return Err(ManageError::NotFound(format!("user {name:?}")));
        }
        self.forget(name);
        self.audit_change(actor, "user.delete", name.to_string());
        Ok(())
    }

    /// Projects the caller can see: all for admins; public ones and the
    /// caller's own for everyone else.
    pub async fn list_projects(&self, actor: &Actor) -> Result<Vec<ProjectView>> {
        self.projects_page(actor, "", u32::MAX).await
    }

    /// At most `limit` of the projects `actor` may see, ordered by name, the
    /// first after `after`: read from the projects they may see (their own,
    /// the public ones), not by testing every project.
    pub async fn projects_page(
        &self,
        actor: &Actor,
        after: &str,
        limit: u32,
    ) -> Result<Vec<ProjectView>> {
        let (visible, user) = match &actor.principal {
            Principal::User { name, admin: true } => (Visible::All, Some(name.as_str())),
            Principal::User { name, .. } => (
                Visible::Projects {
                    member: Some(name.clone()),
                    project: None,
                },
                Some(name.as_str()),
            ),
            Principal::Robot { project, .. } => (
                Visible::Projects {
                    member: None,
                    project: Some(project.clone()),
                },
                None,
            ),
            Principal::Anonymous => (
                Visible::Projects {
                    member: None,
                    project: None,
                },
                None,
            ),
        };
        let page = self
            .metadata()
            .projects_page(&visible, user, after, limit)
            .await?;
        Ok(page
            .into_iter()
            .map(|(p, role)| ProjectView {
                name: p.name,
                public: p.public,
                created_at: p.created_at,
                role,
            })
            .collect())
    }

    pub async fn get_project(&self, actor: &Actor, name: &str) -> Result<ProjectView> {
        let m = self.metadata();
        let role = match &actor.principal {
            Principal::User { name: me, .. } => m.role_of(name, me).await?,
            _ => None,
        };
        let sees = |p: &Project| match &actor.principal {
            Principal::User { admin: true, .. } => true,
            Principal::Robot { project, .. } => p.public || project == name,
            _ => p.public || role.is_some(),
        };
        match m.get_project(name).await? {
            Some(p) if sees(&p) => Ok(ProjectView {
                name: p.name,
                public: p.public,
                created_at: p.created_at,
                role,
            }),
            // Anonymous callers see public projects only; anything else asks
            // them to sign in rather than saying whether it exists.
            _ if actor.principal == Principal::Anonymous => Err(ManageError::Unauthenticated),
            _ => Err(ManageError::NotFound(format!("project {name:?}"))),
        }
    }

    /// Creates a project with its creator as its admin.
    pub async fn create_project(
        &self,
        actor: &Actor,
        name: &str,
        public: bool,
    ) -> Result<ProjectView> {
        let (me, admin) = self.require_user(actor)?;
        if !admin && self.config().project_creation == ProjectCreation::Admins {
            return Err(ManageError::Forbidden(
                "only system administrators may create projects".into(),
            ));
        }
        self.insert_project(actor, name, public, Some(me)).await
    }

    /// Creates a project without members, for a system administrator who
    /// has no account (the operator running the CLI on the data directory).
    pub async fn create_unowned_project(
        &self,
        actor: &Actor,
        name: &str,
        public: bool,
    ) -> Result<ProjectView> {
        self.require_admin(actor)?;
        self.insert_project(actor, name, public, None).await
    }

    async fn insert_project(
        &self,
        actor: &Actor,
        name: &str,
        public: bool,
        owner: Option<&str>,
    ) -> Result<ProjectView> {
        check_name("project", name)?;
        let p = self.metadata().create_project(name, public, owner).await?;
        self.audit_change(actor, "project.create", format!("{name} public={public}"));
        Ok(ProjectView {
            name: p.name,
            public: p.public,
            created_at: p.created_at,
            role: owner.map(|_| Role::Admin),
        })
    }

    pub async fn set_project_public(&self, actor: &Actor, name: &str, public: bool) -> Result<()> {
        self.require_project_admin(actor, name).await?;
        self.metadata().set_public(name, public).await?;
        self.audit_change(actor, "project.update", format!("{name} public={public}"));
        Ok(())
    }

    /// Deletes a project with its members and robots. A project that still
    /// holds repositories is refused unless `force`, which deletes them too
    /// (tags, manifests, links; the bytes are left to garbage collection).
    /// Returns how many repositories went.
    pub async fn delete_project(&self, actor: &Actor, name: &str, force: bool) -> Result<u64> {
        self.require_project_admin(actor, name).await?;
        match self.metadata().delete_project(name, force).await? {
            ProjectDeletion::Deleted { repositories } => {
                self.audit_change(
                    actor,
                    "project.delete",
                    format!("{name} repositories={repositories}"),
                );
                Ok(repositories)
            }
            ProjectDeletion::NotFound => Err(ManageError::NotFound(format!("project {name:?}"))),
            ProjectDeletion::NotEmpty { repositories } => Err(ManageError::InUse(format!(
                "project {name:?} still holds {repositories} {}: delete the repositories first, or \
                 force the deletion (`--force`, `?force=true`) to delete them with it",
                if repositories == 1 { "repository" } else { "repositories" }
            ))),
        }
    }

    /// Members are visible to the project's members and to admins.
    pub async fn members(
        &self,
        actor: &Actor,
        project: &str,
    ) -> Result<Vec<crate::metadata::Member>> {
        if actor.principal == Principal::Anonymous {
            return Err(ManageError::Unauthenticated);
        }
        let view = self.get_project(actor, project).await?;
        if view.role.is_none() && !actor.principal.is_admin() {
            return Err(ManageError::Forbidden(format!(
                "only members of {project:?} may see its members"
            )));
        }
        Ok(self.metadata().members(project).await?)
    }

    pub async fn set_member(
        &self,
        actor: &Actor,
        project: &str,
        user: &str,
        role: Role,
    ) -> Result<()> {
        self.require_project_admin(actor, project).await?;
        self.metadata().set_member(project, user, role).await?;
        self.audit_change(actor, "member.set", format!("{project}: {user}={role}"));
        Ok(())
    }

    pub async fn remove_member(&self, actor: &Actor, project: &str, user: &str) -> Result<()> {
        self.require_project_admin(actor, project).await?;
        if !self.metadata().remove_member(project, user).await? {
            return Err(ManageError::NotFound(format!(
                "member {user:?} of {project:?}"
            )));
        }
        self.audit_change(actor, "member.remove", format!("{project}: {user}"));
        Ok(())
    }

    pub async fn list_robots(&self, actor: &Actor, project: &str) -> Result<Vec<RobotView>> {
        self.require_project_admin(actor, project).await?;
        let robots = self.metadata().list_robots(Some(project)).await?;
        Ok(robots.into_iter().map(robot_view).collect())
    }

    /// Makes `robot$<project>+<name>`; its secret is returned once.
    pub async fn create_robot(
        &self,
        actor: &Actor,
        project: &str,
        name: &str,
        actions: Vec<Action>,
        expires_at: Option<i64>,
    ) -> Result<Created<RobotView>> {
        self.require_project_admin(actor, project).await?;
        check_name("robot", name)?;
        if actions.is_empty() {
            return Err(ManageError::Invalid(
                "a robot needs at least one action".into(),
            ));
        }
        if expires_at.is_some_and(|t| t <= now_ms()) {
            return Err(ManageError::Invalid("expiry is in the past".into()));
        }
        let secret = generate_secret("");
        let robot = self
            .metadata()
            .create_robot(&NewRobot {
                name: format!("{ROBOT_PREFIX}{project}+{name}"),
                secret_hash: slow_hash(&secret).await,
                project: project.to_string(),
                actions,
                expires_at,
                created_by: actor.principal.name().to_string(),
            })
            .await?;
        self.audit_change(actor, "robot.create", robot.name.clone());
        Ok(Created {
            item: robot_view(robot),
            secret,
        })
    }

    pub async fn delete_robot(&self, actor: &Actor, project: &str, robot: &str) -> Result<()> {
        self.require_project_admin(actor, project).await?;
        let found = self.metadata().get_robot(robot).await?;
        if found.is_none_or(|r| r.project != project)
            || !self.metadata().delete_robot(robot).await?
        {
            return Err(ManageError::NotFound(format!(
                "robot {robot:?} of {project:?}"
            )));
        }
        self.forget(robot);
        self.audit_change(actor, "robot.delete", robot.to_string());
        Ok(())
    }

    pub async fn list_tokens(&self, actor: &Actor) -> Result<Vec<TokenView>> {
        let (me, _) = self.require_user(actor)?;
        let tokens = self.metadata().access_tokens_of(me).await?;
        Ok(tokens
            .into_iter()
            .map(|t| TokenView {
                id: t.id,
                name: t.name,
                expires_at: t.expires_at,
                created_at: t.created_at,
                last_used_at: t.last_used_at,
            })
            .collect())
    }

    /// A personal access token for the caller; returned once.
    pub async fn create_token(
        &self,
        actor: &Actor,
        name: &str,
        expires_at: Option<i64>,
    ) -> Result<Created<TokenView>> {
        let (me, _) = self.require_user(actor)?;
        if name.trim().is_empty() {
            return Err(ManageError::Invalid("a token needs a name".into()));
        }
        let random = generate_secret("");
        let t = self
            .metadata()
            .create_access_token(me, name, &slow_hash(&random).await, expires_at)
            .await?;
        self.audit_change(actor, "token.create", format!("{me}: {name}"));
        Ok(Created {
            secret: format_pat(&t.id, &random),
            item: TokenView {
                id: t.id,
                name: t.name,
                expires_at: t.expires_at,
                created_at: t.created_at,
                last_used_at: t.last_used_at,
            },
        })
    }

    pub async fn delete_token(&self, actor: &Actor, id: &str) -> Result<()> {
        let (me, _) = self.require_user(actor)?;
        if !self.metadata().delete_access_token(me, id).await? {
            return Err(ManageError::NotFound(format!("token {id:?}")));
        }
        self.forget(me);
        self.audit_change(actor, "token.delete", format!("{me}: {id}"));
        Ok(())
    }

    pub async fn audit_log(&self, actor: &Actor, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        self.require_admin(actor)?;
        self.audit().flush().await;
        Ok(self.metadata().query(filter).await?)
    }
}

fn robot_view(r: crate::metadata::Robot) -> RobotView {
    RobotView {
        name: r.name,
        project: r.project,
        actions: r.actions,
        expires_at: r.expires_at,
        created_by: r.created_by,
        created_at: r.created_at,
        disabled: r.disabled,
    }
}
