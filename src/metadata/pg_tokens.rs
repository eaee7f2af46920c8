//! Robot accounts and personal access tokens on PostgreSQL. Names are
//! unique by constraint (robots by name, tokens by user and name), so two
//! replicas creating the same one at once give one row and one `Duplicate`;
//! the project or user a new one belongs to is locked against deletion
//! until the commit.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::now_ms;
use super::pg_access::{flag, id_of, PROJECT_ID, USER_ID};
use super::postgres::retrying;
use super::sqlite_access::{
    actions_from_text, actions_text, duplicate, first_generation, normalise_actions,
};
use super::*;

const ROBOT_COLUMNS: &str = "SELECT r.id, r.name, r.secret_hash, p.name AS project, r.actions, \
     r.expires_at, r.created_by, r.created_at, r.disabled, r.generation \
     FROM robots r JOIN projects p ON p.id = r.project_id";

fn robot_from_row(row: &PgRow) -> Result<Robot> {
    Ok(Robot {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        secret_hash: row.try_get("secret_hash")?,
        project: row.try_get("project")?,
        actions: actions_from_text(row.try_get("actions")?)?,
        expires_at: row.try_get("expires_at")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        disabled: flag(row, "disabled")?,
        generation: row.try_get("generation")?,
    })
}

const TOKEN_COLUMNS: &str = "SELECT t.id, u.name AS user_name, t.name, t.secret_hash, \
     t.expires_at, t.created_at, t.last_used_at \
     FROM access_tokens t JOIN users u ON u.id = t.user_id";

fn token_from_row(row: &PgRow) -> Result<AccessToken> {
    Ok(AccessToken {
        id: row.try_get("id")?,
        user: row.try_get("user_name")?,
        name: row.try_get("name")?,
        secret_hash: row.try_get("secret_hash")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

// Each a transaction, run again through `retrying` after a deadlock.
impl PgMetadata {
    async fn create_robot_once(&self, robot: &NewRobot) -> Result<Robot> {
        let actions = normalise_actions(&robot.actions);
        let mut tx = self.pool.begin().await?;
        let project_id = id_of(&mut tx, PROJECT_ID, &robot.project, "project").await?;
        let created_at = now_ms();
        let generation = first_generation();
        let id = sqlx::query_scalar::<_, i64>(
            "INSERT INTO robots (name, secret_hash, project_id, actions, expires_at, created_by, \
             created_at, disabled, generation) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8) RETURNING id",
        )
        .bind(&robot.name)
        .bind(&robot.secret_hash)
        .bind(project_id)
        .bind(actions_text(&actions))
        .bind(robot.expires_at)
        .bind(&robot.created_by)
        .bind(created_at)
        .bind(generation)
        .fetch_one(&mut *tx)
        .await
        .map_err(duplicate(|| format!("robot {:?}", robot.name)))?;
        tx.commit().await?;
        Ok(Robot {
            id,
            name: robot.name.clone(),
            secret_hash: robot.secret_hash.clone(),
            project: robot.project.clone(),
            actions,
            expires_at: robot.expires_at,
            created_by: robot.created_by.clone(),
            created_at,
            disabled: false,
            generation,
        })
    }

    async fn create_access_token_once(
        &self,
        user: &str,
        name: &str,
        secret_hash: &str,
        expires_at: Option<i64>,
    ) -> Result<AccessToken> {
        let mut tx = self.pool.begin().await?;
        let user_id = id_of(&mut tx, USER_ID, user, "user").await?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let created_at = now_ms();
        sqlx::query(
            "INSERT INTO access_tokens (id, user_id, name, secret_hash, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(name)
        .bind(secret_hash)
        .bind(expires_at)
        .bind(created_at)
        .execute(&mut *tx)
        .await
        .map_err(duplicate(|| {
            format!("access token {name:?} of user {user:?}")
        }))?;
        tx.commit().await?;
        Ok(AccessToken {
            id,
            user: user.to_string(),
            name: name.to_string(),
            secret_hash: secret_hash.to_string(),
            expires_at,
            created_at,
            last_used_at: None,
        })
    }
}

#[async_trait]
impl RobotStore for PgMetadata {
    async fn create_robot(&self, robot: &NewRobot) -> Result<Robot> {
        retrying(|| self.create_robot_once(robot)).await
    }

    async fn get_robot(&self, name: &str) -> Result<Option<Robot>> {
        let row = sqlx::query(&format!("{ROBOT_COLUMNS} WHERE r.name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(robot_from_row).transpose()
    }

    async fn list_robots(&self, project: Option<&str>) -> Result<Vec<Robot>> {
        let rows = sqlx::query(&format!(
            "{ROBOT_COLUMNS} WHERE ($1::text IS NULL OR p.name = $1) ORDER BY r.name"
        ))
        .bind(project)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(robot_from_row).collect()
    }

    async fn delete_robot(&self, name: &str) -> Result<bool> {
        let rows = self
            .write_rows(|| sqlx::query("DELETE FROM robots WHERE name = $1").bind(name))
            .await?;
        Ok(rows > 0)
    }

    async fn set_robot_disabled(&self, name: &str, disabled: bool) -> Result<bool> {
        self.set_flag(
            "UPDATE robots SET disabled = $1, \
             generation = generation + CASE WHEN disabled IS DISTINCT FROM $1 THEN 1 ELSE 0 END \
             WHERE name = $2",
            disabled,
            name,
        )
        .await
    }
}

#[async_trait]
impl AccessTokenStore for PgMetadata {
    async fn create_access_token(
        &self,
        user: &str,
        name: &str,
        secret_hash: &str,
        expires_at: Option<i64>,
    ) -> Result<AccessToken> {
        retrying(|| self.create_access_token_once(user, name, secret_hash, expires_at)).await
    }

    async fn get_access_token(&self, id: &str) -> Result<Option<AccessToken>> {
        let row = sqlx::query(&format!("{TOKEN_COLUMNS} WHERE t.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn access_tokens_of(&self, user: &str) -> Result<Vec<AccessToken>> {
        let rows = sqlx::query(&format!(
            "{TOKEN_COLUMNS} WHERE u.name = $1 ORDER BY t.name"
        ))
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn delete_access_token(&self, user: &str, id: &str) -> Result<bool> {
        const DELETE: &str = "DELETE FROM access_tokens WHERE id = $1 \
             AND user_id = (SELECT id FROM users WHERE name = $2)";
        let rows = self
            .write_rows(|| sqlx::query(DELETE).bind(id).bind(user))
            .await?;
        Ok(rows > 0)
    }

    async fn touch_access_token(&self, id: &str, at: i64) -> Result<()> {
        // Replicas recording uses at once keep the latest, whatever order
        // their writes land in.
        sqlx::query(
            "UPDATE access_tokens SET last_used_at = $1 WHERE id = $2 \
             AND (last_used_at IS NULL OR last_used_at < $1)",
        )
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
