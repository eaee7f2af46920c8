//! The PostgreSQL backend's own tests: the schema, the usage counters
//! against a recount, and replicas racing on one database.

use super::*;
use crate::metadata::test_postgres::fresh_database;

/// Two replicas starting together on an empty database both come up on
/// the one schema, and its triggers keep the usage counters.
#[tokio::test]
async fn schema_applies_once_for_replicas_starting_together() {
    let url = fresh_database().await;
    let (a, b) = tokio::join!(PgMetadata::open(&url, 2), PgMetadata::open(&url, 2));
    let (a, b) = (a.unwrap(), b.unwrap());
    b.ping().await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&a.pool)
        .await
        .unwrap();
    let migrations = sqlx::migrate!("./migrations/postgres").iter().count();
    assert_eq!(applied as usize, migrations, "each migration applied once");
    sqlx::query("INSERT INTO repositories (name, project, created_at) VALUES ('lib/a', 'lib', 1)")
        .execute(&a.pool)
        .await
        .unwrap();
    let counters: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM repo_stats), (SELECT COUNT(*) FROM project_stats)",
    )
    .fetch_one(&b.pool)
    .await
    .unwrap();
    assert_eq!(counters, (1, 1));
}

/// The usage counters (`repo_stats`, `project_stats`, `project_blobs`)
/// equal what the tables they summarise say, as recounted from scratch
/// (the PostgreSQL twin of the SQLite backend's check).
pub(in crate::metadata) async fn assert_counters_consistent(m: &PgMetadata) {
    let repos: Vec<(String, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT r.name, COALESCE(s.manifests, -1), \
           (SELECT COUNT(*) FROM manifests WHERE repo_id = r.id), COALESCE(s.tags, -1), \
           (SELECT COUNT(*) FROM tags WHERE repo_id = r.id), COALESCE(s.bytes, -1), \
           (SELECT COALESCE(SUM(b.size), 0)::BIGINT FROM repo_blobs l \
              JOIN blobs b ON b.digest = l.digest WHERE l.repo_id = r.id) \
         FROM repositories r LEFT JOIN repo_stats s ON s.repo_id = r.id",
    )
    .fetch_all(&m.pool)
    .await
    .unwrap();
    assert!(!repos.is_empty());
    for (name, manifests, m2, tags, t2, bytes, b2) in repos {
        assert_eq!((manifests, tags, bytes), (m2, t2, b2), "counters of {name}");
    }
    let projects: Vec<(String, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "WITH actual AS (SELECT r.project, \
             COUNT(*) FILTER (WHERE EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id)) \
               AS holding, \
             (SELECT COALESCE(SUM(b.size), 0)::BIGINT FROM blobs b WHERE b.digest IN \
                (SELECT l.digest FROM repo_blobs l JOIN repositories q ON q.id = l.repo_id \
                 WHERE q.project = r.project)) AS bytes, \
             (SELECT COUNT(*) FROM tags t JOIN repositories q ON q.id = t.repo_id \
                WHERE q.project = r.project) AS tags \
           FROM repositories r GROUP BY r.project) \
         SELECT a.project, a.holding, COALESCE(p.repositories, -1), a.bytes, \
           COALESCE(p.bytes, -1), a.tags, COALESCE(p.tags, -1) \
         FROM actual a LEFT JOIN project_stats p ON p.project = a.project",
    )
    .fetch_all(&m.pool)
    .await
    .unwrap();
    for (name, holding, repositories, actual, bytes, tags, counted_tags) in projects {
        assert_eq!(
            (repositories, bytes, counted_tags),
            (holding, actual, tags),
            "counters of project {name}"
        );
    }
    let links: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM project_blobs pb WHERE pb.links <> (SELECT COUNT(*) \
           FROM repo_blobs l JOIN repositories r ON r.id = l.repo_id \
           WHERE r.project = pb.project AND l.digest = pb.digest)",
    )
    .fetch_one(&m.pool)
    .await
    .unwrap();
    assert_eq!(links, 0, "project_blobs counts the links it summarises");
    let stray: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM project_stats p WHERE (p.repositories <> 0 OR p.bytes <> 0) \
         AND NOT EXISTS (SELECT 1 FROM repositories r WHERE r.project = p.project)",
    )
    .fetch_one(&m.pool)
    .await
    .unwrap();
    assert_eq!(stray, 0, "usage left behind by deleted repositories");
}
