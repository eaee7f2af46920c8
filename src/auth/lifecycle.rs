//! Who may run the storage lifecycle: garbage collection and scrubs are
//! the system administrators'; a project's policy (quotas, immutability,
//! retention) is set by system administrators, since it binds the
//! project's own admins, and read by anyone who may see the project; a
//! repository is deleted by its project's admins. Each change is audited.

use super::accounts::Accounts;
use super::error::Result;
use super::views::Actor;

impl Accounts {
    /// Garbage collection, scrubs and policy changes.
    pub fn authorize_system_admin(&self, actor: &Actor) -> Result<()> {
        self.require_admin(actor)
    }

    /// Deleting a repository of `project`.
    pub async fn authorize_project_admin(&self, actor: &Actor, project: &str) -> Result<()> {
        self.require_project_admin(actor, project).await.map(|_| ())
    }

    /// Records a lifecycle change (`gc.request`, `repository.delete`,
    /// `project.policy`) in the audit log.
    pub fn audit_lifecycle(&self, actor: &Actor, action: &str, detail: String) {
        self.audit_change(actor, action, detail);
    }
}
