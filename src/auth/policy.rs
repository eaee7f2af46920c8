//! Who may do what: the role rules as a pure function of the facts, so the
//! whole matrix is unit-testable without a database.

use super::ProjectCreation;
use crate::metadata::{Action, Role};

/// The facts about one repository's project that a decision needs.
#[derive(Debug, Clone, Default)]
pub struct ProjectFacts {
    /// `None` when the project does not exist yet.
    pub public: Option<bool>,
    /// The caller's role in it, when the caller is a member.
    pub role: Option<Role>,
    /// The project does not exist but repositories under its name do (left
    /// by a project deleted before berth removed repositories with it):
    /// only system administrators may reach them.
    pub leftover: bool,
}

/// An authenticated (or anonymous) caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    User {
        name: String,
        admin: bool,
    },
    /// A robot account, limited to one project and a set of actions.
    Robot {
        name: String,
        project: String,
        actions: Vec<Action>,
    },
}

impl Principal {
    /// The name recorded in tokens and the audit log.
    pub fn name(&self) -> &str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::User { name, .. } | Principal::Robot { name, .. } => name,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::User { admin: true, .. })
    }
}

/// What a role may do inside its project.
pub fn role_actions(role: Role) -> &'static [Action] {
    match role {
        Role::Guest => &[Action::Pull],
        Role::Developer => &[Action::Pull, Action::Push],
        Role::Maintainer | Role::Admin => &[Action::Pull, Action::Push, Action::Delete],
    }
}

/// The actions `who` may perform on a repository of `project`.
pub fn allowed_actions(
    who: &Principal,
    project: &str,
    facts: &ProjectFacts,
    creation: ProjectCreation,
) -> Vec<Action> {
    let all = vec![Action::Pull, Action::Push, Action::Delete];
    match who {
        Principal::User { admin: true, .. } => all,
        Principal::Robot {
            project: scope,
            actions,
            ..
        } => {
            if scope == project && facts.public.is_some() {
                actions.clone()
            } else if facts.public == Some(true) {
                // What anyone may do, a robot may do too.
                vec![Action::Pull]
            } else {
                Vec::new()
            }
        }
        Principal::Anonymous => match facts.public {
            Some(true) => vec![Action::Pull],
            _ => Vec::new(),
        },
        Principal::User { .. } => match (facts.public, facts.role) {
            (Some(_), Some(role)) => role_actions(role).to_vec(),
            (Some(true), None) => vec![Action::Pull],
            (Some(false), None) => Vec::new(),
            (None, _) if facts.leftover => Vec::new(),
            // A project that does not exist yet: pushing creates it when the
            // configuration lets users create projects.
            (None, _) => match creation {
                // Pull too: clients check for blobs (HEAD, 404) before pushing.
                ProjectCreation::Users => vec![Action::Pull, Action::Push],
                ProjectCreation::Admins => Vec::new(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Principal {
        Principal::User {
            name: "u".into(),
            admin: false,
        }
    }

    fn facts(public: Option<bool>, role: Option<Role>) -> ProjectFacts {
        ProjectFacts {
            public,
            role,
            leftover: false,
        }
    }

    const ADMINS: ProjectCreation = ProjectCreation::Admins;

    #[test]
    fn roles_grant_increasing_rights() {
        use Action::*;
        let cases = [
            (Role::Guest, vec![Pull]),
            (Role::Developer, vec![Pull, Push]),
            (Role::Maintainer, vec![Pull, Push, Delete]),
            (Role::Admin, vec![Pull, Push, Delete]),
        ];
        for (role, want) in cases {
            let got = allowed_actions(&user(), "p", &facts(Some(false), Some(role)), ADMINS);
            assert_eq!(got, want, "{role:?}");
        }
    }

    #[test]
    fn strangers_and_anonymous_only_pull_public_projects() {
        assert_eq!(
            allowed_actions(&user(), "p", &facts(Some(true), None), ADMINS),
            vec![Action::Pull]
        );
        assert!(allowed_actions(&user(), "p", &facts(Some(false), None), ADMINS).is_empty());
        let anon = Principal::Anonymous;
        assert_eq!(
            allowed_actions(&anon, "p", &facts(Some(true), None), ADMINS),
            vec![Action::Pull]
        );
        assert!(allowed_actions(&anon, "p", &facts(Some(false), None), ADMINS).is_empty());
        assert!(allowed_actions(&anon, "p", &facts(None, None), ProjectCreation::Users).is_empty());
    }

    #[test]
    fn new_projects_follow_the_creation_setting() {
        assert!(allowed_actions(&user(), "new", &facts(None, None), ADMINS).is_empty());
        assert_eq!(
            allowed_actions(&user(), "new", &facts(None, None), ProjectCreation::Users),
            vec![Action::Pull, Action::Push]
        );
        let admin = Principal::User {
            name: "a".into(),
            admin: true,
        };
        assert_eq!(
            allowed_actions(&admin, "new", &facts(None, None), ADMINS).len(),
            3
        );
    }

    #[test]
    fn repositories_left_without_their_project_are_for_system_admins_only() {
        let leftover = ProjectFacts {
            leftover: true,
            ..ProjectFacts::default()
        };
        let creation = ProjectCreation::Users;
        assert!(allowed_actions(&user(), "gone", &leftover, creation).is_empty());
        assert!(allowed_actions(&Principal::Anonymous, "gone", &leftover, creation).is_empty());
        let admin = Principal::User {
            name: "a".into(),
            admin: true,
        };
        assert_eq!(
            allowed_actions(&admin, "gone", &leftover, creation).len(),
            3
        );
    }

    #[test]
    fn robots_stay_in_their_project_and_actions() {
        let robot = Principal::Robot {
            name: "robot$ci".into(),
            project: "team".into(),
            actions: vec![Action::Pull, Action::Push],
        };
        assert_eq!(
            allowed_actions(&robot, "team", &facts(Some(false), None), ADMINS),
            vec![Action::Pull, Action::Push]
        );
        assert!(allowed_actions(&robot, "other", &facts(Some(false), None), ADMINS).is_empty());
        assert_eq!(
            allowed_actions(&robot, "other", &facts(Some(true), None), ADMINS),
            vec![Action::Pull]
        );
    }
}
