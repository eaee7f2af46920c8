//! Users, projects and members on PostgreSQL. Several replicas write at
//! once, so what SQLite's single writer gave for free is explicit here: a
//! unique name is the table's unique constraint (its violation, SQLSTATE
//! 23505, is `Duplicate`), and a row a write depends on (a project's owner,
//! a member's user and project) is locked `FOR KEY SHARE` until the commit,
//! so a concurrent deletion waits instead of leaving half a write behind.

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row, Transaction};

use super::now_ms;
use super::postgres::{retrying, VISIBLE_PROJECTS};
use super::sqlite::visible_params;
use super::sqlite_access::{duplicate, first_generation, parse};
use super::*;

/// The id of the user named $1, locked against deletion until the commit.
pub(super) const USER_ID: &str = "SELECT id FROM users WHERE name = $1 FOR KEY SHARE";
/// The id of the project named $1, locked likewise.
pub(super) const PROJECT_ID: &str = "SELECT id FROM projects WHERE name = $1 FOR KEY SHARE";

pub(super) async fn id_of(
    tx: &mut Transaction<'_, Postgres>,
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

/// Deletes the repositories under project `name`, with their tags,
/// manifests, references, blob links and upload sessions (ON DELETE
/// CASCADE; blob bytes stay for GC), and the project's usage counters and
/// policy.
async fn delete_repositories_of(tx: &mut Transaction<'_, Postgres>, name: &str) -> Result<u64> {
    let deleted = sqlx::query("DELETE FROM repositories WHERE project = $1")
        .bind(name)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    for counters in [
        "DELETE FROM project_blobs WHERE project = $1",
        "DELETE FROM project_stats WHERE project = $1",
        "DELETE FROM project_policies WHERE project = $1",
    ] {
        sqlx::query(counters).bind(name).execute(&mut **tx).await?;
    }
    Ok(deleted)
}

/// A flag column (BIGINT 0 or 1, as on SQLite).
pub(super) fn flag(row: &PgRow, column: &str) -> Result<bool> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}

const USER_COLUMNS: &str =
    "SELECT id, name, password_hash, admin, disabled, created_at, generation FROM users";

fn user_from_row(row: &PgRow) -> Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        admin: flag(row, "admin")?,
        disabled: flag(row, "disabled")?,
        created_at: row.try_get("created_at")?,
        generation: row.try_get("generation")?,
    })
}

const PROJECT_COLUMNS: &str = "SELECT id, name, public, created_at FROM projects";

const ROLE_IN_P: &str = "(SELECT mb.role FROM users u JOIN members mb ON mb.user_id = u.id \
     WHERE u.name = $1 AND mb.project_id = p.id) AS role";

/// A page of every project ($2 = last name of the previous page, $3 = page
/// size), with user $1's role.
fn projects_page_all() -> String {
    format!(
        "SELECT p.id, p.name, p.public, p.created_at, {ROLE_IN_P} FROM projects p \
         WHERE p.name > $2 ORDER BY p.name LIMIT $3"
    )
}

/// A page of the projects `VISIBLE_PROJECTS` ($1, $2) names ($3, $4 as
/// in [`projects_page_all`]).
fn projects_page_visible() -> String {
    format!(
        "SELECT p.id, p.name, p.public, p.created_at, {ROLE_IN_P} \
         FROM ({VISIBLE_PROJECTS}) v JOIN projects p ON p.name = v.name \
         WHERE p.name > $3 ORDER BY p.name LIMIT $4"
    )
}

fn project_from_row(row: &PgRow) -> Result<Project> {
    Ok(Project {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        public: flag(row, "public")?,
        created_at: row.try_get("created_at")?,
    })
}

// The writes of more than one statement: each is one transaction, which
// the trait methods run again through `retrying` when PostgreSQL aborted it
// to break a deadlock with another replica's.
impl PgMetadata {
    /// Runs one statement, its own transaction, again if PostgreSQL aborted
    /// it to break a deadlock (every access write also updates the one
    /// `access_generation` row, by trigger); the rows it changed.
    pub(super) async fn write_rows<'q>(
        &self,
        statement: impl Fn() -> Query<'q, Postgres, PgArguments>,
    ) -> Result<u64> {
        retrying(|| async { Ok(statement().execute(&self.pool).await?.rows_affected()) }).await
    }

    /// Runs `update`, which sets a flag (BIGINT 0 or 1, as on SQLite) to $1
    /// on the row named $2; whether such a row exists. One statement:
    /// PostgreSQL re-reads a row another transaction changed before
    /// applying it, so a generation bump that depends on the old flag counts
    /// each real change once.
    pub(super) async fn set_flag(&self, update: &str, flag: bool, name: &str) -> Result<bool> {
        let rows = self
            .write_rows(|| sqlx::query(update).bind(i64::from(flag)).bind(name))
            .await?;
        Ok(rows > 0)
    }

    async fn create_project_once(
        &self,
        name: &str,
        public: bool,
        owner: Option<&str>,
    ) -> Result<Project> {
        let mut tx = self.pool.begin().await?;
        let owner_id = match owner {
            Some(owner) => Some(id_of(&mut tx, USER_ID, owner, "user").await?),
            None => None,
        };
        let created_at = now_ms();
        let id = sqlx::query_scalar::<_, i64>(
            "INSERT INTO projects (name, public, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(i64::from(public))
        .bind(created_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(duplicate(|| format!("project {name:?}")))?;
        delete_repositories_of(&mut tx, name).await?;
        if let Some(owner_id) = owner_id {
            sqlx::query("INSERT INTO members (project_id, user_id, role) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(owner_id)
                .bind(Role::Admin.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Project {
            id,
            name: name.to_string(),
            public,
            created_at,
        })
    }

    async fn delete_project_once(
        &self,
        name: &str,
        with_repositories: bool,
    ) -> Result<ProjectDeletion> {
        let mut tx = self.pool.begin().await?;
        // Members and robots go with it (ON DELETE CASCADE). The deleted
        // row stays locked until the commit, so a second replica deleting
        // it waits and then finds nothing. Returning early drops the
        // transaction, which rolls it back.
        let done = sqlx::query("DELETE FROM projects WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(ProjectDeletion::NotFound);
        }
        // The project's repositories first, then its counters: a push
        // holds its repository's row, then updates the counters, so taking
        // them in the same order makes this wait for a push under way (and
        // a push wait for this) instead of both waiting for each other.
        sqlx::query("SELECT id FROM repositories WHERE project = $1 ORDER BY id FOR UPDATE")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if !with_repositories {
            // Locked: a push's first manifest in a repository updates this
            // row in its own transaction, so it either counted already or
            // waits for this deletion.
            let holding: Option<i64> = sqlx::query_scalar(
                "SELECT repositories FROM project_stats WHERE project = $1 FOR UPDATE",
            )
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(holding @ 1..) = holding {
                return Ok(ProjectDeletion::NotEmpty {
                    repositories: holding as u64,
                });
            }
        }
        let repositories = delete_repositories_of(&mut tx, name).await?;
        tx.commit().await?;
        Ok(ProjectDeletion::Deleted { repositories })
    }

    async fn set_member_once(&self, project: &str, user: &str, role: Role) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let project_id = id_of(&mut tx, PROJECT_ID, project, "project").await?;
        let user_id = id_of(&mut tx, USER_ID, user, "user").await?;
        // Two replicas adding the same member at once: the second's insert
        // waits on the first's key and then updates its row.
        sqlx::query(
            "INSERT INTO members (project_id, user_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(project_id)
        .bind(user_id)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl UserStore for PgMetadata {
    async fn create_user(&self, name: &str, password_hash: &str, admin: bool) -> Result<User> {
        let created_at = now_ms();
        let generation = first_generation();
        // The unique name decides between replicas creating it at once: the
        // second insert waits for the first to commit, then violates it.
        let id = sqlx::query_scalar::<_, i64>(
            "INSERT INTO users (name, password_hash, admin, disabled, created_at, generation) \
             VALUES ($1, $2, $3, 0, $4, $5) RETURNING id",
        )
        .bind(name)
        .bind(password_hash)
        .bind(i64::from(admin))
        .bind(created_at)
        .bind(generation)
        .fetch_one(&self.pool)
        .await
        .map_err(duplicate(|| format!("user {name:?}")))?;
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
        let row = sqlx::query(&format!("{USER_COLUMNS} WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(&format!("{USER_COLUMNS} ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn users_page(&self, after: &str, limit: u32) -> Result<Vec<User>> {
        let rows = sqlx::query(&format!(
            "{USER_COLUMNS} WHERE name > $1 ORDER BY name LIMIT $2"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool> {
        const SET: &str =
            "UPDATE users SET password_hash = $1, generation = generation + 1 WHERE name = $2";
        let rows = self
            .write_rows(|| sqlx::query(SET).bind(password_hash).bind(name))
            .await?;
        Ok(rows > 0)
    }

    async fn set_admin(&self, name: &str, admin: bool) -> Result<bool> {
        self.set_flag(
            "UPDATE users SET admin = $1, \
             generation = generation + CASE WHEN admin IS DISTINCT FROM $1 THEN 1 ELSE 0 END \
             WHERE name = $2",
            admin,
            name,
        )
        .await
    }

    async fn set_disabled(&self, name: &str, disabled: bool) -> Result<bool> {
        self.set_flag(
            "UPDATE users SET disabled = $1, \
             generation = generation + CASE WHEN disabled IS DISTINCT FROM $1 THEN 1 ELSE 0 END \
             WHERE name = $2",
            disabled,
            name,
        )
        .await
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        // Memberships and access tokens go with it (ON DELETE CASCADE).
        let rows = self
            .write_rows(|| sqlx::query("DELETE FROM users WHERE name = $1").bind(name))
            .await?;
        Ok(rows > 0)
    }

    async fn count_users(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(count as u64)
    }

    async fn access_generation(&self) -> Result<i64> {
        // Kept by triggers in the writing transaction, so a reader sees the
        // new value only with the change it stands for.
        let value: i64 = sqlx::query_scalar("SELECT value FROM access_generation WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(value)
    }
}

#[async_trait]
impl ProjectStore for PgMetadata {
    async fn create_project(
        &self,
        name: &str,
        public: bool,
        owner: Option<&str>,
    ) -> Result<Project> {
        retrying(|| self.create_project_once(name, public, owner)).await
    }

    async fn get_project(&self, name: &str) -> Result<Option<Project>> {
        let row = sqlx::query(&format!("{PROJECT_COLUMNS} WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    async fn list_projects(&self) -> Result<Vec<Project>> {
        let rows = sqlx::query(&format!("{PROJECT_COLUMNS} ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(project_from_row).collect()
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
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
            Some((member, robot)) => {
                // The role is the member's: `user` is the member here.
                sqlx::query(&projects_page_visible())
                    .bind(member)
                    .bind(robot)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|row| {
                let role: Option<String> = row.try_get("role")?;
                Ok((
                    project_from_row(row)?,
                    role.as_deref().map(parse).transpose()?,
                ))
            })
            .collect()
    }

    async fn set_public(&self, name: &str, public: bool) -> Result<bool> {
        self.set_flag(
            "UPDATE projects SET public = $1 WHERE name = $2",
            public,
            name,
        )
        .await
    }

    async fn delete_project(&self, name: &str, with_repositories: bool) -> Result<ProjectDeletion> {
        retrying(|| self.delete_project_once(name, with_repositories)).await
    }

    async fn project_repository_count(&self, name: &str) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM repositories WHERE project = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(count as u64)
    }
}

#[async_trait]
impl MemberStore for PgMetadata {
    async fn set_member(&self, project: &str, user: &str, role: Role) -> Result<()> {
        retrying(|| self.set_member_once(project, user, role)).await
    }

    async fn remove_member(&self, project: &str, user: &str) -> Result<bool> {
        const REMOVE: &str = "DELETE FROM members \
             WHERE project_id = (SELECT id FROM projects WHERE name = $1) \
             AND user_id = (SELECT id FROM users WHERE name = $2)";
        let rows = self
            .write_rows(|| sqlx::query(REMOVE).bind(project).bind(user))
            .await?;
        Ok(rows > 0)
    }

    async fn members(&self, project: &str) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT u.name, m.role FROM members m JOIN projects p ON p.id = m.project_id \
             JOIN users u ON u.id = m.user_id WHERE p.name = $1 ORDER BY u.name",
        )
        .bind(project)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Member {
                    user: row.try_get("name")?,
                    role: parse(row.try_get("role")?)?,
                })
            })
            .collect()
    }

    async fn role_of(&self, project: &str, user: &str) -> Result<Option<Role>> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT m.role FROM members m JOIN projects p ON p.id = m.project_id \
             JOIN users u ON u.id = m.user_id WHERE p.name = $1 AND u.name = $2",
        )
        .bind(project)
        .bind(user)
        .fetch_optional(&self.pool)
        .await?;
        role.as_deref().map(parse).transpose()
    }

    async fn memberships(&self, user: &str) -> Result<Vec<(String, Role)>> {
        let rows = sqlx::query(
            "SELECT p.name, m.role FROM members m JOIN projects p ON p.id = m.project_id \
             JOIN users u ON u.id = m.user_id WHERE u.name = $1 ORDER BY p.name",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("name")?, parse(row.try_get("role")?)?)))
            .collect()
    }
}
