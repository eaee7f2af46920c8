//! Query-plan, counter and locking tests of the SQLite backend (a child
//! module of `sqlite`, so it sees the query texts it checks).

use super::super::sqlite_catalog::*;
use super::*;

/// Every hot query reaches its rows through an index lookup (`SEARCH`):
/// its plan has no `SCAN` of a table or of a whole index.
#[tokio::test]
async fn hot_queries_use_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let m = SqliteMetadata::open(&dir.path().join("metadata.db"))
        .await
        .unwrap();
    // Enough rows that the planner would rather not scan them.
    for i in 0..50 {
        let repo: RepoName = format!("plan/r{i}").parse().unwrap();
        let digest = Digest::sha256_of(format!("blob {i}").as_bytes());
        m.link_blob(&repo, &digest, 1, true).await.unwrap();
    }
    for (name, query) in [
        ("REPO_ID", REPO_ID),
        ("LINKED_BLOB_SIZE", LINKED_BLOB_SIZE),
        ("visible_holder_query", &visible_holder_query()),
        ("ANY_HOLDER", ANY_HOLDER),
        ("CATALOG_ALL", CATALOG_ALL),
        ("catalog_by_project", &catalog_by_project()),
        ("catalog_by_name", &catalog_by_name()),
        ("visible_counts", &visible_counts()),
        ("MANIFEST_BY_TAG", MANIFEST_BY_TAG),
        ("MANIFEST_BY_DIGEST", MANIFEST_BY_DIGEST),
        ("REFERRERS", REFERRERS),
        ("TAGS_PAGE", TAGS_PAGE),
        ("UPLOAD_REPOSITORY", UPLOAD_REPOSITORY),
        ("DELETE_TAG", DELETE_TAG),
        ("BLOB_SIZES", BLOB_SIZES),
        ("CHILD_SIZES", CHILD_SIZES),
    ] {
        assert_no_scans(&m.read, name, query).await;
    }
}

/// A registry made before the usage counters gets them, right, from what
/// it holds when it is first opened by this version.
#[tokio::test]
async fn counters_are_filled_for_an_existing_registry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    let old = dir.path().join("old-migrations");
    std::fs::create_dir(&old).unwrap();
    for entry in
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite")).unwrap()
    {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.as_str() < "0007" {
            std::fs::copy(entry.path(), old.join(&name)).unwrap();
        }
    }
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    for statement in [
        "INSERT INTO repositories (id, name, created_at) VALUES (1, 'old/a', 1), (2, 'old/b', 1), \
           (3, 'old', 1), (4, 'other/x', 1)",
        "INSERT INTO blobs (digest, size, created_at) VALUES ('sha256:aa', 100, 1), ('sha256:bb', 7, 1)",
        "INSERT INTO repo_blobs (repo_id, digest, created_at) VALUES (1, 'sha256:aa', 1), \
           (1, 'sha256:bb', 1), (2, 'sha256:aa', 1), (4, 'sha256:bb', 1)",
        "INSERT INTO manifests (repo_id, digest, media_type, size, content, created_at) VALUES \
           (1, 'sha256:m1', 'x', 2, X'7B7D', 10), (2, 'sha256:m2', 'x', 2, X'7B7D', 20)",
        "INSERT INTO tags (repo_id, name, digest, updated_at) VALUES (1, 'v1', 'sha256:m1', 30), \
           (1, 'v2', 'sha256:m1', 40), (2, 'v1', 'sha256:m2', 25)",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let m = SqliteMetadata::open(&path).await.unwrap();
    assert_counters_consistent(&m).await;
    let usage = m
        .project_usage(&["old".to_string(), "other".to_string()])
        .await
        .unwrap();
    assert_eq!(usage.len(), 1, "{usage:?}");
    assert_eq!(
        (
            usage[0].repositories,
            usage[0].storage_bytes,
            usage[0].last_push
        ),
        (2, 107, Some(40))
    );
    let repos = m.repositories_in("old", "", 10).await.unwrap();
    let summary: Vec<(&str, u64, u64)> = repos
        .iter()
        .map(|r| (r.name.as_str(), r.tags, r.storage_bytes))
        .collect();
    assert_eq!(summary, [("old/a", 2, 107), ("old/b", 1, 100)]);
    // And the triggers keep them from there.
    let repo: RepoName = "old/b".parse().unwrap();
    m.link_blob(&repo, &Digest::sha256_of(b"new"), 5, true)
        .await
        .unwrap();
    assert_counters_consistent(&m).await;
}

/// The two ways of reading a restricted catalog page give the same pages.
#[tokio::test]
async fn catalog_strategies_agree() {
    let dir = tempfile::tempdir().unwrap();
    let m = SqliteMetadata::open(&dir.path().join("metadata.db"))
        .await
        .unwrap();
    m.create_user("viewer", "hash", false).await.unwrap();
    m.create_project("c-pub", true, None).await.unwrap();
    m.create_project("c-mine", false, Some("viewer"))
        .await
        .unwrap();
    m.create_project("c-priv", false, None).await.unwrap();
    m.create_project("c", false, Some("viewer")).await.unwrap();
    let mut names = vec!["c".to_string()];
    for project in ["c-pub", "c-mine", "c-priv", "c"] {
        for i in 0..5 {
            names.push(format!("{project}/r{i}"));
        }
    }
    for name in &names {
        let repo: RepoName = name.parse().unwrap();
        let d = Digest::sha256_of(name.as_bytes());
        m.put_manifest(&NewManifest {
            repo,
            digest: d,
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            content: Bytes::from_static(b"{}"),
            artifact_type: None,
            subject: None,
            annotations: None,
            blobs: Vec::new(),
            children: Vec::new(),
            tag: Some("t".parse().unwrap()),
            immutable_rule: None,
        })
        .await
        .unwrap();
    }
    for (member, project) in [(Some("viewer"), None), (None, Some("c-priv")), (None, None)] {
        for limit in [1u32, 3, 100] {
            let mut last = String::new();
            for _ in 0..30 {
                let mut pages = Vec::new();
                for query in [catalog_by_name(), catalog_by_project()] {
                    let joined: Option<String> = sqlx::query_scalar(&query)
                        .bind(member)
                        .bind(project)
                        .bind(&last)
                        .bind(limit)
                        .fetch_one(&m.read)
                        .await
                        .unwrap();
                    pages.push(split_names(joined));
                }
                assert_eq!(pages[0], pages[1], "{member:?} {project:?} after {last:?}");
                match pages[0].last() {
                    Some(l) => last = l.clone(),
                    None => break,
                }
            }
        }
    }
}

/// Fails when the plan of `query` scans a table or a whole index. What
/// is not one: a subquery's rows (bounded by its own plan, checked in
/// the same list), json_each's input, and the partial index of public
/// projects (exactly the rows a caller restricted to projects may see).
pub(in crate::metadata) async fn assert_no_scans(pool: &SqlitePool, name: &str, query: &str) {
    let plan = query_plan(pool, query).await;
    let subqueries: Vec<String> = plan
        .iter()
        .filter_map(|step| {
            step.strip_prefix("MATERIALIZE ")
                .or_else(|| step.strip_prefix("CO-ROUTINE "))
                .map(str::to_owned)
        })
        .collect();
    let scans: Vec<&String> = plan
        .iter()
        .filter(|step| step.starts_with("SCAN ") && !step.starts_with("SCAN ("))
        // A virtual table's step names its constraints after "INDEX n:";
        // none (the trigram index read whole) is a scan.
        .filter(|step| !step.contains("VIRTUAL TABLE") || step.ends_with("INDEX 0:"))
        .filter(|step| !step.contains("INDEX projects_public") && *step != "SCAN CONSTANT ROW")
        .filter(|step| {
            let table = step["SCAN ".len()..].split(' ').next().unwrap_or("");
            !subqueries.iter().any(|s| s == table)
        })
        .collect();
    assert!(scans.is_empty(), "{name} scans a table: {plan:#?}");
}

/// The usage counters (`repo_stats`, `project_stats`, `project_blobs`)
/// equal what the tables they summarise say, as recounted from scratch.
pub(in crate::metadata) async fn assert_counters_consistent(m: &SqliteMetadata) {
    let repos: Vec<(String, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT r.name, COALESCE(s.manifests, -1), \
           (SELECT COUNT(*) FROM manifests WHERE repo_id = r.id), COALESCE(s.tags, -1), \
           (SELECT COUNT(*) FROM tags WHERE repo_id = r.id), COALESCE(s.bytes, -1), \
           (SELECT COALESCE(SUM(b.size), 0) FROM repo_blobs l JOIN blobs b ON b.digest = l.digest \
              WHERE l.repo_id = r.id) \
         FROM repositories r LEFT JOIN repo_stats s ON s.repo_id = r.id",
    )
    .fetch_all(&m.read)
    .await
    .unwrap();
    assert!(!repos.is_empty());
    for (name, manifests, m2, tags, t2, bytes, b2) in repos {
        assert_eq!((manifests, tags, bytes), (m2, t2, b2), "counters of {name}");
    }
    let projects: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "WITH actual AS (SELECT r.project, \
             SUM(EXISTS (SELECT 1 FROM manifests m WHERE m.repo_id = r.id)) AS holding, \
             (SELECT COALESCE(SUM(b.size), 0) FROM blobs b WHERE b.digest IN \
                (SELECT l.digest FROM repo_blobs l JOIN repositories q ON q.id = l.repo_id \
                 WHERE q.project = r.project)) AS bytes \
           FROM repositories r GROUP BY r.project) \
         SELECT a.project, a.holding, COALESCE(p.repositories, -1), a.bytes, COALESCE(p.bytes, -1) \
         FROM actual a LEFT JOIN project_stats p ON p.project = a.project",
    )
    .fetch_all(&m.read)
    .await
    .unwrap();
    for (name, holding, repositories, actual, bytes) in projects {
        assert_eq!(
            (repositories, bytes),
            (holding, actual),
            "counters of project {name}"
        );
    }
    let stray: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM project_stats p WHERE (p.repositories <> 0 OR p.bytes <> 0) \
         AND NOT EXISTS (SELECT 1 FROM repositories r WHERE r.project = p.project)",
    )
    .fetch_one(&m.read)
    .await
    .unwrap();
    assert_eq!(stray, 0, "usage left behind by deleted repositories");
}

/// The steps of `EXPLAIN QUERY PLAN query` (parameters bound to NULL).
pub(in crate::metadata) async fn query_plan(pool: &SqlitePool, query: &str) -> Vec<String> {
    sqlx::query_as::<_, (i64, i64, i64, String)>(&format!("EXPLAIN QUERY PLAN {query}"))
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN of {query}: {e}"))
        .into_iter()
        .map(|(_, _, _, detail)| detail)
        .collect()
}

/// A write waits for another connection's write lock (another process, or a
/// replaced write connection still closing) instead of failing: a link and
/// a manifest PUT made while a second connection holds the lock for 300 ms
/// both succeed once it lets go.
#[tokio::test]
async fn writes_wait_for_another_connections_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    let m = SqliteMetadata::open(&path).await.unwrap();
    let repo: RepoName = "lock/a".parse().unwrap();
    let layer = Digest::sha256_of(b"layer");
    m.link_blob(&repo, &layer, 5, true).await.unwrap();

    let mut other = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(&path)
            .journal_mode(SqliteJournalMode::Wal),
    )
    .await
    .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let held = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        other
    });
    let started = std::time::Instant::now();
    let second = Digest::sha256_of(b"second layer");
    m.link_blob(&repo, &second, 7, true)
        .await
        .expect("a link made while another connection holds the write lock");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "the link waited for the lock: {:?}",
        started.elapsed()
    );
    held.await.unwrap().close().await.unwrap();
    let linked = m.linked_blob(&repo, &second).await.unwrap();
    assert_eq!(linked.map(|b| b.size), Some(7));
}
