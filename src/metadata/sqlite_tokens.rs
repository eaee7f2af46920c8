//! Robot accounts and personal access tokens on SQLite.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::now_ms;
use super::sqlite::SqliteMetadata;
use super::sqlite_access::{
    actions_from_text, actions_text, duplicate, first_generation, id_of, normalise_actions,
    PROJECT_ID, USER_ID,
};
use super::*;

const ROBOT_COLUMNS: &str = "SELECT r.id, r.name, r.secret_hash, p.name AS project, r.actions, \
     r.expires_at, r.created_by, r.created_at, r.disabled, r.generation \
     FROM robots r JOIN projects p ON p.id = r.project_id";

fn robot_from_row(row: &SqliteRow) -> Result<Robot> {
    Ok(Robot {
        id: row.get("id"),
        name: row.get("name"),
        secret_hash: row.get("secret_hash"),
        project: row.get("project"),
        actions: actions_from_text(row.get("actions"))?,
        expires_at: row.get("expires_at"),
        created_by: row.get("created_by"),
        created_at: row.get("created_at"),
        disabled: row.get("disabled"),
        generation: row.get("generation"),
    })
}

const TOKEN_COLUMNS: &str = "SELECT t.id, u.name AS user, t.name, t.secret_hash, t.expires_at, \
     t.created_at, t.last_used_at FROM access_tokens t JOIN users u ON u.id = t.user_id";

fn token_from_row(row: &SqliteRow) -> AccessToken {
    AccessToken {
        id: row.get("id"),
        user: row.get("user"),
        name: row.get("name"),
        secret_hash: row.get("secret_hash"),
        expires_at: row.get("expires_at"),
        created_at: row.get("created_at"),
        last_used_at: row.get("last_used_at"),
    }
}

#[async_trait]
impl RobotStore for SqliteMetadata {
    async fn create_robot(&self, robot: &NewRobot) -> Result<Robot> {
        let actions = normalise_actions(&robot.actions);
        let mut w = self.writer().await?;
        let mut tx = w.begin().await?;
        let project_id = id_of(&mut tx, PROJECT_ID, &robot.project, "project").await?;
        let created_at = now_ms();
        let generation = first_generation();
        let id = sqlx::query_scalar::<_, i64>(
            "INSERT INTO robots (name, secret_hash, project_id, actions, expires_at, created_by, \
             created_at, disabled, generation) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?) RETURNING id",
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
        w.done();
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

    async fn get_robot(&self, name: &str) -> Result<Option<Robot>> {
        let row = sqlx::query(&format!("{ROBOT_COLUMNS} WHERE r.name = ?"))
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(robot_from_row).transpose()
    }

    async fn list_robots(&self, project: Option<&str>) -> Result<Vec<Robot>> {
        let rows = sqlx::query(&format!(
            "{ROBOT_COLUMNS} WHERE (? IS NULL OR p.name = ?) ORDER BY r.name"
        ))
        .bind(project)
        .bind(project)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(robot_from_row).collect()
    }

    async fn delete_robot(&self, name: &str) -> Result<bool> {
        let mut w = self.writer().await?;
        let done = sqlx::query("DELETE FROM robots WHERE name = ?")
            .bind(name)
            .execute(w.conn())
            .await?;
        w.done();
        Ok(done.rows_affected() > 0)
    }

    async fn set_robot_disabled(&self, name: &str, disabled: bool) -> Result<bool> {
        self.set_flag(
            "UPDATE robots SET disabled = ?1, generation = generation + (disabled IS NOT ?1) \
             WHERE name = ?2",
            disabled,
            name,
        )
        .await
    }
}

#[async_trait]
impl AccessTokenStore for SqliteMetadata {
    async fn create_access_token(
        &self,
        user: &str,
        name: &str,
        secret_hash: &str,
        expires_at: Option<i64>,
    ) -> Result<AccessToken> {
        let mut w = self.writer().await?;
        let mut tx = w.begin().await?;
        let user_id = id_of(&mut tx, USER_ID, user, "user").await?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let created_at = now_ms();
        sqlx::query(
            "INSERT INTO access_tokens (id, user_id, name, secret_hash, expires_at, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
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
        w.done();
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

    async fn get_access_token(&self, id: &str) -> Result<Option<AccessToken>> {
        let row = sqlx::query(&format!("{TOKEN_COLUMNS} WHERE t.id = ?"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(token_from_row))
    }

    async fn access_tokens_of(&self, user: &str) -> Result<Vec<AccessToken>> {
        let rows = sqlx::query(&format!("{TOKEN_COLUMNS} WHERE u.name = ? ORDER BY t.name"))
            .bind(user)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(token_from_row).collect())
    }

    async fn delete_access_token(&self, user: &str, id: &str) -> Result<bool> {
        let mut w = self.writer().await?;
        let done = sqlx::query(
            "DELETE FROM access_tokens WHERE id = ? \
             AND user_id = (SELECT id FROM users WHERE name = ?)",
        )
        .bind(id)
        .bind(user)
        .execute(w.conn())
        .await?;
        w.done();
        Ok(done.rows_affected() > 0)
    }

    async fn touch_access_token(&self, id: &str, at: i64) -> Result<()> {
        let mut w = self.writer().await?;
        sqlx::query("UPDATE access_tokens SET last_used_at = ? WHERE id = ?")
            .bind(at)
            .bind(id)
            .execute(w.conn())
            .await?;
        w.done();
        Ok(())
    }
}
