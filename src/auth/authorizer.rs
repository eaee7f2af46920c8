//! The authorizer: what a principal or a token may do on a repository, and
//! which repositories it may see. It decides from the project's facts
//! (visibility, the caller's role) and never writes anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::AuthError;
use super::policy::{allowed_actions, Principal, ProjectFacts};
use super::service::Grant;
use super::{AuthConfig, AuthMode, ProjectCreation};
use crate::metadata::{AccessMetadata, Action, Visible};
use crate::oci::RepoName;

/// How long project facts (visibility, roles) are remembered at most. A
/// change of access control made anywhere (the CLI, another replica) is
/// seen at once anyway, through the store's access generation.
const FACTS_TTL: Duration = Duration::from_secs(2);

pub struct Authorizer {
    metadata: Arc<dyn AccessMetadata>,
    enabled: bool,
    creation: ProjectCreation,
    /// Tagged with the store's access generation read before they were
    /// looked up, and kept at most `FACTS_TTL`.
    facts: quick_cache::sync::Cache<(String, String), (Instant, i64, ProjectFacts)>,
}

impl Authorizer {
    pub(super) fn new(metadata: Arc<dyn AccessMetadata>, config: &AuthConfig) -> Authorizer {
        Authorizer {
            metadata,
            enabled: config.mode == AuthMode::Token,
            creation: config.project_creation,
            facts: quick_cache::sync::Cache::new(10_000),
        }
    }

    /// Whether `project` was seen to exist moments ago by `who`'s requests.
    pub(super) fn saw_project(&self, project: &str, who: &str) -> bool {
        let known = self.facts.get(&(project.to_string(), who.to_string()));
        known.is_some_and(|(at, _, f)| at.elapsed() < FACTS_TTL && f.public.is_some())
    }

    /// The repositories `who` may see in listings (the catalog, search):
    /// exactly those it may pull.
    pub fn visible_to(&self, who: &Principal) -> Visible {
        let none = Visible::Projects {
            member: None,
            project: None,
        };
        match who {
            _ if !self.enabled => Visible::All,
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
        if !self.enabled {
            return Ok(vec![Action::Pull, Action::Push, Action::Delete]);
        }
        let project = repo.project();
        let facts = self.project_facts(who, project).await?;
        Ok(allowed_actions(who, project, &facts, self.creation))
    }

    /// A project's visibility and the caller's role in it, remembered for
    /// `FACTS_TTL` so that a request does not cost two database reads.
    /// Changes made through `Accounts` clear the cache at once.
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
}
