//! The accounts service: users, projects, members, robots and personal
//! access tokens, with the permission rule of each operation and its audit
//! event, and the audit log's queries. The `/api/v1` handlers, the UI and
//! the CLI call it.

use std::sync::Arc;

use super::password::{generate_secret, hash_password};

/// Hashing is slow by design (tens of milliseconds): off the async workers.
async fn slow_hash(secret: &str) -> String {
    let secret = secret.to_string();
    match tokio::task::spawn_blocking(move || hash_password(&secret)).await {
        Ok(hash) => hash,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
use super::audit::AuditSink;
use super::authenticator::Authenticator;
use super::authorizer::Authorizer;
use super::error::{AuthError, Result};
use super::policy::Principal;
use super::service::{format_pat, ROBOT_PREFIX};
use super::views::{Actor, Created, ProjectView, RobotView, TokenView, UserUpdate, UserView};
use super::ProjectCreation;
use super::{AuthConfig, AuthMode};
use crate::metadata::now_ms;
use crate::metadata::{
    AccessMetadata, Action, AuditEvent, AuditFilter, MetadataError, NewRobot, Project,
    ProjectDeletion, Role, Visible,
};
use crate::oci::RepoName;

const MIN_PASSWORD: usize = 8;

fn check_password(p: &str) -> Result<()> {
    if p.chars().count() < MIN_PASSWORD {
        return Err(AuthError::Invalid(format!(
            "passwords need at least {MIN_PASSWORD} characters"
        )));
    }
    Ok(())
}

/// Account and project names: the repository-name component grammar.
fn check_name(kind: &str, name: &str) -> Result<()> {
    match name.parse::<crate::oci::RepoName>() {
        Ok(n) if !n.as_str().contains('/') => Ok(()),
        _ => Err(AuthError::Invalid(format!(
            "invalid {kind} name {name:?}: use lowercase letters, digits and . _ -"
        ))),
    }
}

pub struct Accounts {
    metadata: Arc<dyn AccessMetadata>,
    enabled: bool,
    creation: ProjectCreation,
    audit: AuditSink,
    /// Told of every change, which may alter who may do what.
    authorizer: Arc<Authorizer>,
    /// Told to forget remembered logins of changed accounts.
    authenticator: Arc<Authenticator>,
}

impl Accounts {
    pub(super) fn new(
        metadata: Arc<dyn AccessMetadata>,
        config: &AuthConfig,
        audit: AuditSink,
        authorizer: Arc<Authorizer>,
        authenticator: Arc<Authenticator>,
    ) -> Accounts {
        Accounts {
            metadata,
            enabled: config.mode == AuthMode::Token,
            creation: config.project_creation,
            audit,
            authorizer,
            authenticator,
        }
    }

    /// Creates the project of `repo` on a first push, owned by the pusher:
    /// the step the `/v2` layer takes after authorization allowed the push
    /// (authorization itself never creates anything).
    pub async fn ensure_project(&self, repo: &RepoName, owner: &str) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        if self.authorizer.saw_project(repo.project(), owner)
            || self.metadata.get_project(repo.project()).await?.is_some()
        {
            return Ok(());
        }
        self.authorizer.forget_projects();
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

    fn require_user<'a>(&self, actor: &'a Actor) -> Result<(&'a str, bool)> {
        match &actor.principal {
            Principal::User { name, admin } => Ok((name, *admin)),
            Principal::Robot { .. } => Err(AuthError::Forbidden(
                "robot accounts cannot manage the registry".into(),
            )),
            Principal::Anonymous => Err(AuthError::Unauthenticated),
        }
    }

    pub(super) fn require_admin(&self, actor: &Actor) -> Result<()> {
        match self.require_user(actor)? {
            (_, true) => Ok(()),
            _ => Err(AuthError::Forbidden(
                "only system administrators may do this".into(),
            )),
        }
    }

    /// System admins and the project's admins manage a project.
    pub(super) async fn require_project_admin(
        &self,
        actor: &Actor,
        project: &str,
    ) -> Result<Project> {
        let (name, admin) = self.require_user(actor)?;
        let found = self.metadata.get_project(project).await?;
        let role = self.metadata.role_of(project, name).await?;
        match found {
            Some(p) if admin || role == Some(Role::Admin) => Ok(p),
            // Members and strangers of a private project learn nothing more.
            _ if admin => Err(AuthError::NotFound(format!("project {project:?}"))),
            Some(p) if p.public || role.is_some() => Err(AuthError::Forbidden(format!(
                "only admins of {project:?} may do this"
            ))),
            _ => Err(AuthError::NotFound(format!("project {project:?}"))),
        }
    }

    pub(super) fn audit_change(&self, actor: &Actor, action: &str, detail: String) {
        // Any change may alter who may do what: decide afresh.
        self.authorizer.forget_projects();
        self.audit.record(super::audit::event(
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
        let users = self.metadata.list_users().await?;
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
        let users = self.metadata.users_page(after, limit).await?;
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
            .metadata
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
            return Err(AuthError::Forbidden(
                "only system administrators may do this".into(),
            ));
        }
        let m = &self.metadata;
        let missing = || AuthError::NotFound(format!("user {name:?}"));
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
        self.authenticator.forget(name);
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
            return Err(AuthError::Invalid(
                "you cannot delete your own account".into(),
            ));
        }
        if !self.metadata.delete_user(name).await? {
            return Err(AuthError::NotFound(format!("user {name:?}")));
        }
        self.authenticator.forget(name);
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
            .metadata
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
        let m = &self.metadata;
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
            _ if actor.principal == Principal::Anonymous => Err(AuthError::Unauthenticated),
            _ => Err(AuthError::NotFound(format!("project {name:?}"))),
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
        if !admin && self.creation == ProjectCreation::Admins {
            return Err(AuthError::Forbidden(
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
        let p = self.metadata.create_project(name, public, owner).await?;
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
        self.metadata.set_public(name, public).await?;
        self.audit_change(actor, "project.update", format!("{name} public={public}"));
        Ok(())
    }

    /// Deletes a project with its members and robots. A project that still
    /// holds repositories is refused unless `force`, which deletes them too
    /// (tags, manifests, links; the bytes are left to garbage collection).
    /// Returns how many repositories went.
    pub async fn delete_project(&self, actor: &Actor, name: &str, force: bool) -> Result<u64> {
        self.require_project_admin(actor, name).await?;
        match self.metadata.delete_project(name, force).await? {
            ProjectDeletion::Deleted { repositories } => {
                self.audit_change(
                    actor,
                    "project.delete",
                    format!("{name} repositories={repositories}"),
                );
                Ok(repositories)
            }
            ProjectDeletion::NotFound => Err(AuthError::NotFound(format!("project {name:?}"))),
            ProjectDeletion::NotEmpty { repositories } => Err(AuthError::InUse(format!(
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
            return Err(AuthError::Unauthenticated);
        }
        let view = self.get_project(actor, project).await?;
        if view.role.is_none() && !actor.principal.is_admin() {
            return Err(AuthError::Forbidden(format!(
                "only members of {project:?} may see its members"
            )));
        }
        Ok(self.metadata.members(project).await?)
    }

    pub async fn set_member(
        &self,
        actor: &Actor,
        project: &str,
        user: &str,
        role: Role,
    ) -> Result<()> {
        self.require_project_admin(actor, project).await?;
        self.metadata.set_member(project, user, role).await?;
        self.audit_change(actor, "member.set", format!("{project}: {user}={role}"));
        Ok(())
    }

    pub async fn remove_member(&self, actor: &Actor, project: &str, user: &str) -> Result<()> {
        self.require_project_admin(actor, project).await?;
        if !self.metadata.remove_member(project, user).await? {
            return Err(AuthError::NotFound(format!(
                "member {user:?} of {project:?}"
            )));
        }
        self.audit_change(actor, "member.remove", format!("{project}: {user}"));
        Ok(())
    }

    pub async fn list_robots(&self, actor: &Actor, project: &str) -> Result<Vec<RobotView>> {
        self.require_project_admin(actor, project).await?;
        let robots = self.metadata.list_robots(Some(project)).await?;
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
            return Err(AuthError::Invalid(
                "a robot needs at least one action".into(),
            ));
        }
        if expires_at.is_some_and(|t| t <= now_ms()) {
            return Err(AuthError::Invalid("expiry is in the past".into()));
        }
        let secret = generate_secret("");
        let robot = self
            .metadata
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
        let found = self.metadata.get_robot(robot).await?;
        if found.is_none_or(|r| r.project != project) || !self.metadata.delete_robot(robot).await? {
            return Err(AuthError::NotFound(format!(
                "robot {robot:?} of {project:?}"
            )));
        }
        self.authenticator.forget(robot);
        self.audit_change(actor, "robot.delete", robot.to_string());
        Ok(())
    }

    pub async fn list_tokens(&self, actor: &Actor) -> Result<Vec<TokenView>> {
        let (me, _) = self.require_user(actor)?;
        let tokens = self.metadata.access_tokens_of(me).await?;
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
            return Err(AuthError::Invalid("a token needs a name".into()));
        }
        let random = generate_secret("");
        let t = self
            .metadata
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
        if !self.metadata.delete_access_token(me, id).await? {
            return Err(AuthError::NotFound(format!("token {id:?}")));
        }
        self.authenticator.forget(me);
        self.audit_change(actor, "token.delete", format!("{me}: {id}"));
        Ok(())
    }

    pub async fn audit_log(&self, actor: &Actor, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        self.require_admin(actor)?;
        self.audit.flush().await;
        Ok(self.metadata.query(filter).await?)
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
