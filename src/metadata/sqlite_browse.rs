//! `Browse` for SQLite. Each query stays inside one repository's key range
//! (tags by `(repo_id, name)`, refs by `(repo_id, manifest_digest)`), so a
//! page of a repository with thousands of tags costs a page's worth of work.

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::Row;

use super::browse::{Browse, ProjectUsage, RepoSummary, TagOrder, TagPage, TagRow};
use super::sqlite::{visible_params, SqliteMetadata, REPO_ID, VISIBLE_PROJECTS};
use super::{MetadataError, Result, Visible};
use crate::oci::{media, Digest, RepoName};

/// Tag count, distinct blob bytes and last push of the repository `r`,
/// from its counters `s` (`repo_stats`).
const REPO_STATS: &str = "s.tags, s.bytes, s.last_push";

/// Usage of the projects named in the JSON array ?1: one counter row each.
const PROJECT_USAGE: &str = "SELECT project, repositories, bytes, last_push FROM project_stats \
     WHERE project IN (SELECT value FROM json_each(?1)) AND repositories > 0 ORDER BY project";

/// A page of project ?1's repositories holding a manifest, after name ?2.
fn repositories_in_query() -> String {
    format!(
        "SELECT r.name, {REPO_STATS} FROM repositories r JOIN repo_stats s ON s.repo_id = r.id \
         WHERE r.project = ?1 AND r.name > ?2 AND s.manifests > 0 ORDER BY r.name LIMIT ?3"
    )
}

const TAG_COUNT: &str = "SELECT tags FROM repo_stats WHERE repo_id = ?";

fn summary(row: sqlx::sqlite::SqliteRow) -> Result<RepoSummary> {
    Ok(RepoSummary {
        name: row.try_get(0)?,
        tags: row.try_get::<i64, _>(1)? as u64,
        storage_bytes: row.try_get::<i64, _>(2)? as u64,
        last_push: row.try_get(3)?,
    })
}

/// `needle` as a LIKE pattern matching it anywhere, wildcards escaped.
pub(super) fn contains_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[async_trait]
impl Browse for SqliteMetadata {
    async fn project_usage(&self, projects: &[String]) -> Result<Vec<ProjectUsage>> {
        let names = serde_json::to_string(projects)
            .map_err(|e| MetadataError::Corrupt(format!("project names: {e}")))?;
        let rows = sqlx::query(PROJECT_USAGE)
            .bind(names)
            .fetch_all(&self.read)
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(ProjectUsage {
                    project: row.try_get(0)?,
                    repositories: row.try_get::<i64, _>(1)? as u64,
                    storage_bytes: row.try_get::<i64, _>(2)? as u64,
                    last_push: row.try_get(3)?,
                })
            })
            .collect()
    }

    async fn repositories_in(
        &self,
        project: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<RepoSummary>> {
        let rows = sqlx::query(&repositories_in_query())
            .bind(project)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.into_iter().map(summary).collect()
    }

    async fn tags_page(
        &self,
        repo: &RepoName,
        order: TagOrder,
        offset: u64,
        limit: u32,
    ) -> Result<Option<TagPage>> {
        let Some(repo_id) = sqlx::query_scalar::<_, i64>(REPO_ID)
            .bind(repo.as_str())
            .fetch_optional(&self.read)
            .await?
        else {
            return Ok(None);
        };
        let total: i64 = sqlx::query_scalar(TAG_COUNT)
            .bind(repo_id)
            .fetch_one(&self.read)
            .await?;
        let order_by = match order {
            TagOrder::Name => "name",
            TagOrder::Pushed => "updated_at DESC, name",
        };
        let rows = sqlx::query(&tags_page_query(order_by))
            .bind(repo_id)
            .bind(media::OCI_INDEX)
            .bind(media::DOCKER_LIST)
            .bind(limit)
            .bind(offset as i64)
            .fetch_all(&self.read)
            .await?;
        let tags = rows.iter().map(tag_row).collect::<Result<Vec<_>>>()?;
        Ok(Some(TagPage {
            total: total as u64,
            tags,
        }))
    }

    async fn tags_of(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<String>> {
        let tags = sqlx::query_scalar(
            "SELECT t.name FROM repositories r JOIN tags t ON t.repo_id = r.id \
             WHERE r.name = ? AND t.digest = ? ORDER BY t.name",
        )
        .bind(repo.as_str())
        .bind(digest.to_string())
        .fetch_all(&self.read)
        .await?;
        Ok(tags)
    }

    async fn search_repositories(
        &self,
        needle: &str,
        visible: &Visible,
        limit: u32,
    ) -> Result<Vec<RepoSummary>> {
        let needle = needle.to_ascii_lowercase();
        if !needle.bytes().all(name_byte) {
            // Names are made of these bytes only: nothing can match.
            return Ok(Vec::new());
        }
        // A part of three characters or more is looked up in the trigram
        // index; if it matches many names, reading names in order finds a
        // page of matches early instead.
        let indexed = needle.len() >= 3 && {
            let matches: i64 = sqlx::query_scalar(SEARCH_MATCH_COUNT)
                .bind(format!("*{needle}*"))
                .bind(SEARCH_MATCHES_READ + 1)
                .fetch_one(&self.read)
                .await?;
            matches <= i64::from(SEARCH_MATCHES_READ)
        };
        let restricted = visible_params(visible);
        let (query, pattern) = match (restricted.is_some(), indexed) {
            (false, true) => (search_all_indexed(), format!("*{needle}*")),
            (true, true) => (search_visible_indexed(), format!("*{needle}*")),
            (false, false) => (search_all_by_name(), contains_pattern(&needle)),
            (true, false) => (search_visible_by_project(), contains_pattern(&needle)),
        };
        let q = sqlx::query(&query);
        let q = match restricted {
            None => q,
            Some((member, project)) => q.bind(member).bind(project),
        };
        let rows = q.bind(pattern).bind(limit).fetch_all(&self.read).await?;
        rows.into_iter().map(summary).collect()
    }
}

/// The bytes repository names are made of.
pub(super) fn name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b)
}

/// Matches a search reads from the trigram index before it reads names in
/// order instead (where so many match, a page is found early).
const SEARCH_MATCHES_READ: u32 = 10_000;

/// Names matching GLOB ?1 in the trigram index, counted up to ?2.
const SEARCH_MATCH_COUNT: &str = "SELECT COUNT(*) FROM \
     (SELECT rowid FROM repository_names WHERE name GLOB ?1 LIMIT ?2)";

/// Search by the trigram index: ?1 = GLOB pattern, ?2 = limit.
fn search_all_indexed() -> String {
    format!(
        "SELECT r.name, {REPO_STATS} FROM repository_names f \
         JOIN repositories r ON r.id = f.rowid JOIN repo_stats s ON s.repo_id = r.id \
         WHERE f.name GLOB ?1 AND s.manifests > 0 ORDER BY r.name LIMIT ?2"
    )
}

/// As [`search_all_indexed`], for a restricted caller: ?1, ?2 as in
/// `VISIBLE_PROJECTS`, ?3 = GLOB pattern, ?4 = limit.
fn search_visible_indexed() -> String {
    format!(
        "SELECT r.name, {REPO_STATS} FROM repository_names f \
         JOIN repositories r ON r.id = f.rowid JOIN repo_stats s ON s.repo_id = r.id \
         WHERE f.name GLOB ?3 AND s.manifests > 0 AND +r.project IN ({VISIBLE_PROJECTS}) \
         ORDER BY r.name LIMIT ?4"
    )
}

/// Search reading names in order: ?1 = LIKE pattern, ?2 = limit.
fn search_all_by_name() -> String {
    format!(
        "SELECT r.name, {REPO_STATS} FROM repositories r \
         JOIN repo_stats s ON s.repo_id = r.id \
         WHERE r.name LIKE ?1 ESCAPE '\\' AND s.manifests > 0 \
         ORDER BY r.name LIMIT ?2"
    )
}

/// Search reading the restricted caller's repositories (?1, ?2 as in
/// `VISIBLE_PROJECTS`, ?3 = LIKE pattern, ?4 = limit).
fn search_visible_by_project() -> String {
    format!(
        "SELECT r.name, {REPO_STATS} FROM ({VISIBLE_PROJECTS}) p \
         CROSS JOIN repositories r ON r.project = p.name \
         JOIN repo_stats s ON s.repo_id = r.id \
         WHERE r.name LIKE ?3 ESCAPE '\\' AND s.manifests > 0 \
         ORDER BY r.name LIMIT ?4"
    )
}

#[async_trait]
impl super::browse::EndedSessions for SqliteMetadata {
    async fn end_session(&self, id: &str, expires_at: i64) -> Result<()> {
        let now = super::now_ms() / 1000;
        let mut w = self.writer().await?;
        let mut tx = w.begin().await?;
        sqlx::query("DELETE FROM ui_ended_sessions WHERE expires_at < ?")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO ui_ended_sessions (id, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        w.done();
        Ok(())
    }

    async fn session_ended(&self, id: &str) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM ui_ended_sessions WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(found.is_some())
    }
}

/// One page of a repository's tags (?1 repo id, ?4 limit, ?5 offset) with
/// each tag's size and, for an index (?2, ?3), its content.
fn tags_page_query(order_by: &str) -> String {
    // The page is chosen first (materialized), so the per-tag size and
    // the manifest content are read for its rows only, not for every
    // tag before sorting. Size: the manifest's own blobs plus, for an
    // index, its children's, each distinct blob once.
    format!(
        "WITH page AS MATERIALIZED (SELECT repo_id, name, digest, updated_at FROM tags \
           WHERE repo_id = ?1 ORDER BY {order_by} LIMIT ?4 OFFSET ?5) \
         SELECT t.name, t.digest, m.media_type, t.updated_at, \
           (SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.digest IN ( \
              SELECT x.child_digest FROM manifest_refs x \
               WHERE x.repo_id = t.repo_id AND x.manifest_digest = t.digest AND x.kind = 0 \
              UNION SELECT y.child_digest FROM manifest_refs x CROSS JOIN manifest_refs y \
               ON y.repo_id = x.repo_id AND y.manifest_digest = x.child_digest AND y.kind = 0 \
               WHERE x.repo_id = t.repo_id AND x.manifest_digest = t.digest AND x.kind = 1)), \
           CASE WHEN m.media_type IN (?2, ?3) THEN m.content END \
         FROM page t JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest \
         ORDER BY {order_by}"
    )
}

fn tag_row(row: &sqlx::sqlite::SqliteRow) -> Result<TagRow> {
    let digest: String = row.try_get(1)?;
    Ok(TagRow {
        name: row.try_get(0)?,
        digest: digest
            .parse()
            .map_err(|e| MetadataError::Corrupt(format!("{digest:?}: {e}")))?,
        media_type: row.try_get(2)?,
        pushed_at: row.try_get(3)?,
        size_bytes: row.try_get::<i64, _>(4)? as u64,
        index: row.try_get::<Option<Vec<u8>>, _>(5)?.map(Bytes::from),
    })
}

#[cfg(test)]
mod tests {
    use super::{
        contains_pattern, repositories_in_query, search_all_indexed, search_visible_by_project,
        search_visible_indexed, PROJECT_USAGE, SEARCH_MATCH_COUNT, TAG_COUNT,
    };
    use crate::metadata::sqlite::tests::assert_no_scans;
    use crate::metadata::sqlite::SqliteMetadata;

    /// The overview, project and repository pages read counters and one
    /// page of rows by index, however many repositories and tags there are.
    #[tokio::test]
    async fn ui_queries_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let m = SqliteMetadata::open(&dir.path().join("metadata.db"))
            .await
            .unwrap();
        for (name, query) in [
            ("PROJECT_USAGE", PROJECT_USAGE),
            ("repositories_in_query", &repositories_in_query()),
            ("TAG_COUNT", TAG_COUNT),
            ("SEARCH_MATCH_COUNT", SEARCH_MATCH_COUNT),
            ("search_all_indexed", &search_all_indexed()),
            ("search_visible_indexed", &search_visible_indexed()),
            ("search_visible_by_project", &search_visible_by_project()),
        ] {
            assert_no_scans(&m.read, name, query).await;
        }
    }

    #[test]
    fn search_patterns_escape_wildcards() {
        assert_eq!(contains_pattern("app"), "%app%");
        assert_eq!(contains_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
