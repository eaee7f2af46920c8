//! Access-control metadata on SQLite: writes through the single-connection
//! write pool, reads through the read pool, as in `sqlite.rs`.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use super::now_ms;
use super::sqlite::{visible_params, VISIBLE_PROJECTS};
use super::*;

pub(super) fn parse<T: FromStr>(s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e: T::Err| MetadataError::Corrupt(format!("{s:?}: {e}")))
}

/// A unique-constraint failure becomes `Duplicate(what)`; anything else stays
/// a database error.
pub(super) fn duplicate(
    what: impl FnOnce() -> String,
) -> impl FnOnce(sqlx::Error) -> MetadataError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => MetadataError::Duplicate(what()),
        _ => MetadataError::Db(e),
    }
}

/// Actions as stored: sorted, without repeats, comma-separated.
pub(super) fn normalise_actions(actions: &[Action]) -> Vec<Action> {
    let mut actions = actions.to_vec();
    actions.sort();
    actions.dedup();
    actions
}

pub(super) fn actions_text(actions: &[Action]) -> String {
    actions
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn actions_from_text(text: &str) -> Result<Vec<Action>> {
    text.split(',')
        .filter(|a| !a.is_empty())
        .map(parse)
        .collect()
}

pub(super) const USER_ID: &str = "SELECT id FROM users WHERE name = ?";
pub(super) const PROJECT_ID: &str = "SELECT id FROM projects WHERE name = ?";
/// Repositories under project `?1`: the name itself and `?1/...`.
const UNDER_PROJECT: &str = "project = ?1";

/// Deletes the repositories under project `name`, with their tags,
/// manifests, references, blob links and upload sessions (ON DELETE
/// CASCADE; blob bytes stay for GC), and the project's usage counters.
async fn delete_repositories_of(tx: &mut Transaction<'_, Sqlite>, name: &str) -> Result<u64> {
    let deleted = sqlx::query(&format!("DELETE FROM repositories WHERE {UNDER_PROJECT}"))
        .bind(name)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    for counters in [
        "DELETE FROM project_blobs WHERE project = ?",
        "DELETE FROM project_stats WHERE project = ?",
        "DELETE FROM project_policies WHERE project = ?",
    ] {
        sqlx::query(counters).bind(name).execute(&mut **tx).await?;
    }
    Ok(deleted)
}

pub(super) async fn id_of(
    tx: &mut Transaction<'_, Sqlite>,
    query: &'static str,
    name: &str,
    what: &str,
) -> Result<i64> {
    sqlx::query_scalar::<_, i64>(query)
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| MetadataError::NotFound(format!("{what} {name:?}")))
}

/// The generation of a new account: random, because SQLite may give a new
/// row the id of a deleted one (the tables are not AUTOINCREMENT), and
/// whatever was bound to the old account must not fit the new one. 52 bits,
/// so that it survives a JSON number.
pub(super) fn first_generation() -> i64 {
    (rand::random::<u64>() >> 12) as i64
}

const USER_COLUMNS: &str =
    "SELECT id, name, password_hash, admin, disabled, created_at, generation FROM users";

impl SqliteMetadata {
    /// Runs `update`, which sets a flag to ?1 on the row named ?2; whether
    /// such a row exists.
    pub(super) async fn set_flag(&self, update: &str, flag: bool, name: &str) -> Result<bool> {
        let mut w = self.writer().await?;
        let done = sqlx::query(update)
            .bind(flag)
            .bind(name)
            .execute(w.conn())
            .await?;
        w.done();
        Ok(done.rows_affected() > 0)
    }
}

fn user_from_row(row: &SqliteRow) -> User {
    User {
        id: row.get("id"),
        name: row.get("name"),
        password_hash: row.get("password_hash"),
        admin: row.get("admin"),
        disabled: row.get("disabled"),
        created_at: row.get("created_at"),
        generation: row.get("generation"),
    }
}

const PROJECT_COLUMNS: &str = "SELECT id, name, public, created_at FROM projects";

const ROLE_IN_P: &str = "(SELECT mb.role FROM users u JOIN members mb ON mb.user_id = u.id \
     WHERE u.name = ?1 AND mb.project_id = p.id) AS role";

/// A page of every project (?2 = last name of the previous page, ?3 = page
/// size), with user ?1's role.
fn projects_page_all() -> String {
    format!(
        "SELECT p.id, p.name, p.public, p.created_at, {ROLE_IN_P} FROM projects p \
         WHERE p.name > ?2 ORDER BY p.name LIMIT ?3"
    )
}

/// A page of the projects `VISIBLE_PROJECTS` (?1, ?2) names, read from
/// that set (?3, ?4 as in [`projects_page_all`]).
fn projects_page_visible() -> String {
    format!(
        "SELECT p.id, p.name, p.public, p.created_at, {ROLE_IN_P} \
         FROM ({VISIBLE_PROJECTS}) v CROSS JOIN projects p ON p.name = v.name \
         WHERE p.name > ?3 ORDER BY p.name LIMIT ?4"
    )
}

fn project_from_row(row: &SqliteRow) -> Project {
    Project {
        id: row.get("id"),
        name: row.get("name"),
        public: row.get("public"),
        created_at: row.get("created_at"),
    }
}

#[async_trait]
impl UserStore for SqliteMetadata {
    async fn create_user(&self, name: &str, password_hash: &str, admin: bool) -> Result<User> {
        let created_at = now_ms();
        let generation = first_generation();
        let mut w = self.writer().await?;
        let id = sqlx::query_scalar::<_, i64>(
            "INSERT INTO users (name, password_hash, admin, disabled, created_at, generation) \
             VALUES (?, ?, ?, 0, ?, ?) RETURNING id",
        )
        .bind(name)
        .bind(password_hash)
        .bind(admin)
        .bind(created_at)
        .bind(generation)
        .fetch_one(w.conn())
        .await
        .map_err(duplicate(|| format!("user {name:?}")))?;
        w.done();
        Ok(User {
            id,
            name: name.to_string(),
            password_hash: password_hash.to_string(),
            admin,
            disabled: false,
            created_at,
            generation,
        })
    }

    async fn get_user(&self, name: &str) -> Result<Option<User>> {
        let row = sqlx::query(&format!("{USER_COLUMNS} WHERE name = ?"))
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(user_from_row))
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(&format!("{USER_COLUMNS} ORDER BY name"))
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(user_from_row).collect())
    }

    async fn users_page(&self, after: &str, limit: u32) -> Result<Vec<User>> {
        let rows = sqlx::query(&format!(
            "{USER_COLUMNS} WHERE name > ? ORDER BY name LIMIT ?"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(user_from_row).collect())
    }

    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool> {
        let mut w = self.writer().await?;
        let done = sqlx::query(
            "UPDATE users SET password_hash = ?, generation = generation + 1 WHERE name = ?",
        )
        .bind(password_hash)
        .bind(name)
        .execute(w.conn())
        .await?;
        w.done();
        Ok(done.rows_affected() > 0)
    }

    async fn set_admin(&self, name: &str, admin: bool) -> Result<bool> {
        self.set_flag(
            "UPDATE users SET admin = ?1, generation = generation + (admin IS NOT ?1) WHERE name = ?2",
            admin,
            name,
        )
        .await
    }

    async fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool> {
        self.set_flag(
            "UPDATE users SET disabled = ?1, generation = generation + (disabled IS NOT ?1) \
             WHERE name = ?2",
            disabled,
            name,
        )
        .await
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        // Memberships and access tokens go with it (ON DELETE CASCADE).
        let mut w = self.writer().await?;
        let done = sqlx::query("DELETE FROM users WHERE name = ?")
            .bind(name)
            .execute(w.conn())
            .await?;
        w.done();
        Ok(done.rows_affected() > 0)
    }

    async fn access_generation(&self) -> Result<i64> {
        // Kept by triggers (migration 0006), so a write from the CLI counts.
        let value: i64 = sqlx::query_scalar("SELECT value FROM access_generation WHERE id = 1")
            .fetch_one(&self.read)
            .await?;
        Ok(value)
    }

    async fn count_users(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.read)
            .await?;
        Ok(count as u64)
    }
}

#[async_trait]
impl ProjectStore for SqliteMetadata {
    async fn create_project(
        &self,
        name: &str,
        public: bool,
        owner: Option<&str>,
    ) -> Result<Project> {
        let mut w = self.writer().await?;
        let mut tx = w.begin().await?;
        let owner_id = match owner {
            Some(owner) => Some(id_of(&mut tx, USER_ID, owner, "user").await?),
            None => None,
        };
        let created_at = now_ms();
        let id = sqlx::query_scalar::<_, i64>(
            "INSERT INTO projects (name, public, created_at) VALUES (?, ?, ?) RETURNING id",
        )
        .bind(name)
        .bind(public)
        .bind(created_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(duplicate(|| format!("project {name:?}")))?;
        delete_repositories_of(&mut tx, name).await?;
        if let Some(owner_id) = owner_id {
            sqlx::query("INSERT INTO members (project_id, user_id, role) VALUES (?, ?, ?)")
                .bind(id)
                .bind(owner_id)
                .bind(Role::Admin.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        w.done();
        Ok(Project {
            id,
            name: name.to_string(),
            public,
            created_at,
        })
    }

    async fn get_project(&self, name: &str) -> Result<Option<Project>> {
        let row = sqlx::query(&format!("{PROJECT_COLUMNS} WHERE name = ?"))
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(project_from_row))
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        let rows = sqlx::query(&format!("{PROJECT_COLUMNS} ORDER BY name"))
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(project_from_row).collect())
    }

    async fn projects_page(
        &self,
        visible: &Visible,
        user: Option<&str>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(Project, Option<Role>)>> {
        let rows = match visible_params(visible) {
            None => {
                sqlx::query(&projects_page_all())
                    .bind(user)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?
            }
            Some((member, robot)) => {
                // The role is the member's: `user` is the member here.
                sqlx::query(&projects_page_visible())
                    .bind(member)
                    .bind(robot)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await?
            }
        };
        rows.iter()
            .map(|row| {
                let role: Option<String> = row.get("role");
                Ok((
                    project_from_row(row),
                    role.as_deref().map(parse).transpose()?,
                ))
            })
            .collect()
    }

    async fn set_public(&self, name: &str, public: bool) -> Result<bool> {
        self.set_flag(
            "UPDATE projects SET public = ?1 WHERE name = ?2",
            public,
            name,
        )
        .await
    }

    async fn delete_project(&self, name: &str, with_repositories: bool) -> Result<ProjectDeletion> {
        let mut w = self.writer().await?;
        let mut tx = w.begin().await?;
        // Members and robots go with it (ON DELETE CASCADE). Returning
        // early drops the transaction, which rolls it back.
        let done = sqlx::query("DELETE FROM projects WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(ProjectDeletion::NotFound);
        }
        if !with_repositories {
            let holding: i64 = sqlx::query_scalar(
                "SELECT COALESCE((SELECT repositories FROM project_stats WHERE project = ?), 0)",
            )
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
            if holding > 0 {
                return Ok(ProjectDeletion::NotEmpty {
                    repositories: holding as u64,
                });
            }
        }
        let repositories = delete_repositories_of(&mut tx, name).await?;
        tx.commit().await?;
        w.done();
        Ok(ProjectDeletion::Deleted { repositories })
    }

    async fn project_repository_count(&self, name: &str) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM repositories WHERE {UNDER_PROJECT}"
        ))
        .bind(name)
        .fetch_one(&self.read)
        .await?;
        Ok(count as u64)
    }
}

#[async_trait]
impl MemberStore for SqliteMetadata {
    async fn set_member(&self, project: &str, user: &str, role: Role) -> Result<()> {
        let mut w = self.writer().await?;
        let mut tx = w.begin().await?;
        let project_id = id_of(&mut tx, PROJECT_ID, project, "project").await?;
        let user_id = id_of(&mut tx, USER_ID, user, "user").await?;
        sqlx::query(
            "INSERT INTO members (project_id, user_id, role) VALUES (?, ?, ?) \
             ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(project_id)
        .bind(user_id)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        w.done();
        Ok(())
    }

    async fn remove_member(&self, project: &str, user: &str) -> Result<bool> {
        let mut w = self.writer().await?;
        let done = sqlx::query(
            "DELETE FROM members WHERE project_id = (SELECT id FROM projects WHERE name = ?) \
             AND user_id = (SELECT id FROM users WHERE name = ?)",
        )
        .bind(project)
        .bind(user)
        .execute(w.conn())
        .await?;
        w.done();
        Ok(done.rows_affected() > 0)
    }

    async fn members(&self, project: &str) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT u.name, m.role FROM members m JOIN projects p ON p.id = m.project_id \
             JOIN users u ON u.id = m.user_id WHERE p.name = ? ORDER BY u.name",
        )
        .bind(project)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Member {
                    user: row.get("name"),
                    role: parse(row.get("role"))?,
                })
            })
            .collect()
    }

    async fn role_of(&self, project: &str, user: &str) -> Result<Option<Role>> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT m.role FROM members m JOIN projects p ON p.id = m.project_id \
             JOIN users u ON u.id = m.user_id WHERE p.name = ? AND u.name = ?",
        )
        .bind(project)
        .bind(user)
        .fetch_optional(&self.read)
        .await?;
        role.as_deref().map(parse).transpose()
    }

    async fn memberships(&self, user: &str) -> Result<Vec<(String, Role)>> {
        let rows = sqlx::query(
            "SELECT p.name, m.role FROM members m JOIN projects p ON p.id = m.project_id \
             JOIN users u ON u.id = m.user_id WHERE u.name = ? ORDER BY p.name",
        )
        .bind(user)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| Ok((row.get("name"), parse(row.get("role"))?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{projects_page_all, projects_page_visible};
    use crate::metadata::sqlite::tests::assert_no_scans;
    use crate::metadata::sqlite::SqliteMetadata;

    /// A page of projects reads one page of names (for who sees all) or the
    /// projects the caller may see, by index.
    #[tokio::test]
    async fn project_pages_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let m = SqliteMetadata::open(&dir.path().join("metadata.db"))
            .await
            .unwrap();
        for (name, query) in [
            ("projects_page_all", projects_page_all()),
            ("projects_page_visible", projects_page_visible()),
        ] {
            assert_no_scans(&m.read, name, &query).await;
        }
    }
}
