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

fn repo(s: &str) -> RepoName {
    s.parse().unwrap()
}

fn image(r: &str, label: &str, tag: &str, blob: &Digest, size: u64) -> NewManifest {
    NewManifest {
        repo: repo(r),
        digest: Digest::sha256_of(label.as_bytes()),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        content: bytes::Bytes::from(label.to_string()),
        artifact_type: None,
        subject: None,
        annotations: None,
        blobs: vec![Ref {
            digest: blob.clone(),
            size,
        }],
        children: Vec::new(),
        tag: Some(tag.parse().unwrap()),
        immutable_rule: None,
    }
}

/// Two replicas (two pools) on one database.
async fn two_replicas() -> (std::sync::Arc<PgMetadata>, std::sync::Arc<PgMetadata>) {
    let url = fresh_database().await;
    let a = PgMetadata::open(&url, 8).await.unwrap();
    let b = PgMetadata::open(&url, 8).await.unwrap();
    (std::sync::Arc::new(a), std::sync::Arc::new(b))
}

async fn count(m: &PgMetadata, query: &str) -> i64 {
    sqlx::query_scalar(query).fetch_one(&m.pool).await.unwrap()
}

/// 20 pushes of the same layer and tag through two replicas at once, into
/// a repository none of them has created yet: every one succeeds, and the
/// registry ends with one repository, one link, the blob's bytes counted
/// once, and the tag at one of the pushed manifests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_pushing_the_same_tag_at_once_agree() {
    let (a, b) = two_replicas().await;
    let layer = Digest::sha256_of(b"race layer");
    let mut pushes = tokio::task::JoinSet::new();
    for i in 0..20 {
        let m = if i % 2 == 0 { a.clone() } else { b.clone() };
        let layer = layer.clone();
        pushes.spawn(async move {
            m.link_blob(&repo("race/app"), &layer, 7, true).await?;
            m.put_manifest(&image(
                "race/app",
                &format!("race {i}"),
                "latest",
                &layer,
                7,
            ))
            .await
        });
    }
    while let Some(pushed) = pushes.join_next().await {
        pushed.unwrap().expect("a concurrent push");
    }
    assert_eq!(count(&a, "SELECT COUNT(*) FROM repositories").await, 1);
    assert_eq!(count(&a, "SELECT COUNT(*) FROM repo_blobs").await, 1);
    assert_eq!(count(&a, "SELECT COUNT(*) FROM manifests").await, 20);
    let usage = b.quota_usage("race").await.unwrap();
    assert_eq!((usage.bytes, usage.tags, usage.repositories), (7, 1, 1));
    let latest = a
        .get_manifest(
            &repo("race/app"),
            &Reference::Tag("latest".parse().unwrap()),
        )
        .await
        .unwrap()
        .expect("the tag points at a pushed manifest");
    assert!(String::from_utf8_lossy(&latest.content).starts_with("race "));
    assert_counters_consistent(&a).await;
}

/// Replicas linking distinct 10-byte blobs at once into a project with a
/// 100-byte quota: exactly ten links fit, whatever the interleaving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_holds_for_replicas_linking_at_once() {
    let (a, b) = two_replicas().await;
    let policy = ProjectPolicy {
        quota_bytes: Some(100),
        ..ProjectPolicy::default()
    };
    a.set_project_policy("quota", &policy).await.unwrap();
    // The repositories exist, so each link is the quota check and the add.
    for r in ["quota/a", "quota/b"] {
        a.create_upload(&format!("upload {r}"), &repo(r))
            .await
            .unwrap();
    }
    let mut links = tokio::task::JoinSet::new();
    for i in 0..20 {
        let m = if i % 2 == 0 { a.clone() } else { b.clone() };
        links.spawn(async move {
            let r = if i % 3 == 0 { "quota/a" } else { "quota/b" };
            let blob = Digest::sha256_of(format!("quota {i}").as_bytes());
            m.link_blob(&repo(r), &blob, 10, true).await
        });
    }
    let (mut linked, mut refused) = (0, 0);
    while let Some(link) = links.join_next().await {
        match link.unwrap() {
            Ok(()) => linked += 1,
            Err(MetadataError::QuotaExceeded { .. }) => refused += 1,
            Err(e) => panic!("a link failed otherwise: {e}"),
        }
    }
    assert_eq!((linked, refused), (10, 10));
    assert_eq!(b.quota_usage("quota").await.unwrap().bytes, 100);
    assert_counters_consistent(&a).await;
}

/// A flip to `deleting` on one replica racing a link of the same blob on
/// another, many times over: each round one of them wins, and no link ever
/// holds a `deleting` blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flip_racing_a_link_never_leaves_a_link_to_a_deleting_blob() {
    let (a, b) = two_replicas().await;
    let (mut flips, mut links) = (0, 0);
    for round in 0..30 {
        let blob = Digest::sha256_of(format!("flip race {round}").as_bytes());
        let r = repo(&format!("flip/r{round}"));
        a.reserve_blob(&r, &blob, 3).await.unwrap();
        let (flipped, linked) = tokio::join!(
            a.flip_blobs(None, i64::MAX, 1, 100, false),
            b.link_blob(&r, &blob, 3, false)
        );
        let flipped = flipped.unwrap();
        match linked {
            Ok(()) => {
                links += 1;
                assert!(flipped.iter().all(|f| f.digest != blob), "round {round}");
                assert!(b.linked_blob(&r, &blob).await.unwrap().is_some());
            }
            Err(MetadataError::BlobDeleting(_)) => {
                flips += 1;
                assert!(flipped.iter().any(|f| f.digest == blob), "round {round}");
                a.forget_blobs(&[blob]).await.unwrap();
            }
            Err(e) => panic!("round {round}: {e}"),
        }
        let bad = count(
            &a,
            "SELECT COUNT(*) FROM repo_blobs l JOIN blobs b ON b.digest = l.digest \
             WHERE b.state = 'deleting'",
        )
        .await;
        assert_eq!(bad, 0, "round {round}: a link holds a deleting blob");
    }
    assert_eq!(flips + links, 30);
}

/// A sweep removing a stale link on one replica racing a manifest PUT that
/// references it on another: either the manifest is stored and keeps its
/// link, or it is refused as referencing a missing blob; never a stored
/// manifest whose layer's link is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_racing_a_manifest_put_never_orphans_a_reference() {
    let (a, b) = two_replicas().await;
    let plan = RepoPlan {
        tags: Vec::new(),
        untagged_before: None,
        links_before: i64::MAX,
    };
    let (mut kept, mut refused) = (0, 0);
    for round in 0..30 {
        let r = format!("sweep/r{round}");
        let layer = Digest::sha256_of(format!("sweep race {round}").as_bytes());
        a.link_blob(&repo(&r), &layer, 4, true).await.unwrap();
        let id = a.sweep_repositories(Some("sweep"), 0, 100).await.unwrap();
        let id = id.iter().find(|s| s.name.as_str() == r).unwrap().id;
        let put = image(&r, &format!("sweep manifest {round}"), "v1", &layer, 4);
        let (swept, pushed) = tokio::join!(
            a.sweep_repository(id, &plan, 1, false),
            b.put_manifest(&put)
        );
        let swept = swept.unwrap();
        match pushed {
            Ok(()) => {
                kept += 1;
                assert_eq!(swept.links, 0, "round {round}");
                assert!(b.linked_blob(&repo(&r), &layer).await.unwrap().is_some());
            }
            Err(MetadataError::MissingReference(_)) => {
                refused += 1;
                assert_eq!(swept.links, 1, "round {round}");
            }
            Err(e) => panic!("round {round}: {e}"),
        }
        let orphans = count(
            &a,
            "SELECT COUNT(*) FROM manifest_refs f WHERE f.kind = 0 AND NOT EXISTS \
             (SELECT 1 FROM repo_blobs l WHERE l.repo_id = f.repo_id AND l.digest = f.child_digest)",
        )
        .await;
        assert_eq!(
            orphans, 0,
            "round {round}: a manifest references a removed link"
        );
    }
    assert_eq!(kept + refused, 30);
    assert_counters_consistent(&a).await;
}

/// Two replicas requesting a collection at once get one run between them
/// (the other is told which is active), and claiming it at once, one holds
/// it: the other gets nothing and cannot renew it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_at_a_time_holds_a_collection_run() {
    let (a, b) = two_replicas().await;
    let (ra, rb) = tokio::join!(a.request_gc(false, "a"), b.request_gc(false, "b"));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let run = match (&ra, &rb) {
        (Ok(run), Err(GcBusy(busy))) | (Err(GcBusy(busy)), Ok(run)) => {
            assert_eq!(run.id, *busy);
            run.clone()
        }
        other => panic!("two requests at once: {other:?}"),
    };
    let (ca, cb) = tokio::join!(a.claim_gc("replica-a", 0), b.claim_gc("replica-b", 0));
    let (ca, cb) = (ca.unwrap(), cb.unwrap());
    let (holder, loser) = match (&ca, &cb) {
        (Some(claimed), None) => (("replica-a", claimed), "replica-b"),
        (None, Some(claimed)) => (("replica-b", claimed), "replica-a"),
        other => panic!("two claims at once: {other:?}"),
    };
    assert_eq!(holder.1.id, run.id);
    let stats = GcStats::default();
    assert!(a
        .gc_heartbeat(run.id, holder.0, "blobs", &stats)
        .await
        .unwrap());
    assert!(!b
        .gc_heartbeat(run.id, loser, "blobs", &stats)
        .await
        .unwrap());
}

/// A sweep on one replica racing a link on another into the same
/// repository: one whose old link the sweep removes, or one left empty
/// (an abandoned upload) that the sweep removes. The link the upload was
/// told it made is there afterwards, whichever committed first, and its
/// blob is not flipped to `deleting`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_racing_a_link_keeps_the_link() {
    let (a, b) = two_replicas().await;
    for round in 0..40 {
        let r = repo(&format!("relink/r{round}"));
        let layer = Digest::sha256_of(format!("relink {round}").as_bytes());
        if round % 2 == 0 {
            a.link_blob(&r, &layer, 2, true).await.unwrap();
        } else {
            a.create_upload(&format!("abandoned {round}"), &r)
                .await
                .unwrap();
            a.delete_upload(&format!("abandoned {round}"))
                .await
                .unwrap();
        }
        let id = a.sweep_repositories(Some("relink"), 0, 100).await.unwrap();
        let id = id.iter().find(|s| s.name == r).unwrap().id;
        // Everything so far is older than the cutoff; the racing link is not.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let cutoff = now_ms();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let plan = RepoPlan {
            tags: Vec::new(),
            untagged_before: None,
            links_before: cutoff,
        };
        let (swept, linked) = tokio::join!(
            a.sweep_repository(id, &plan, 1, false),
            b.link_blob(&r, &layer, 2, true)
        );
        swept.unwrap();
        linked.unwrap();
        assert!(
            b.linked_blob(&r, &layer).await.unwrap().is_some(),
            "round {round}: the link made is gone"
        );
        let flipped = a.flip_blobs(None, cutoff, 1, 100, false).await.unwrap();
        assert!(flipped.iter().all(|f| f.digest != layer), "round {round}");
    }
    assert_counters_consistent(&a).await;
}

/// Fails when the generic plan of `query` (the plan for any parameter
/// values) reads a table whole: with sequential scans priced out, one is
/// left only where no index can serve the query.
async fn assert_no_scans(conn: &mut sqlx::PgConnection, name: &str, query: &str) {
    let params = (1..=9)
        .filter(|n| query.contains(&format!("${n}")))
        .max()
        .unwrap_or(0);
    let args = if params == 0 {
        String::new()
    } else {
        format!("({})", vec!["NULL"; params].join(", "))
    };
    sqlx::raw_sql(&format!("PREPARE hot AS {query}"))
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("PREPARE of {name}: {e}"));
    let plan: Vec<String> = sqlx::raw_sql(&format!("EXPLAIN EXECUTE hot{args}"))
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("EXPLAIN of {name}: {e}"))
        .iter()
        .map(|row| sqlx::Row::get(row, 0))
        .collect();
    sqlx::raw_sql("DEALLOCATE hot")
        .execute(&mut *conn)
        .await
        .unwrap();
    let scans: Vec<&String> = plan.iter().filter(|l| l.contains("Seq Scan")).collect();
    assert!(scans.is_empty(), "{name} scans a table: {plan:#?}");
}

#[tokio::test]
async fn hot_queries_use_indexes() {
    use super::pg_catalog::*;
    use super::pg_manifests::*;
    use super::postgres::REPO_ID;
    use sqlx::Connection as _;
    let url = fresh_database().await;
    let m = PgMetadata::open(&url, 2).await.unwrap();
    for i in 0..50 {
        let repo: RepoName = format!("plan/r{i}").parse().unwrap();
        let digest = Digest::sha256_of(format!("blob {i}").as_bytes());
        m.link_blob(&repo, &digest, 1, true).await.unwrap();
    }
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("ANALYZE; SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan")
        .execute(&mut conn)
        .await
        .unwrap();
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
        ("LOCK_BLOBS blobs", LOCK_BLOBS[0]),
        ("LOCK_BLOBS links", LOCK_BLOBS[1]),
        ("BLOB_SIZES", BLOB_SIZES),
        ("LOCK_CHILDREN", LOCK_CHILDREN[0]),
        ("CHILD_SIZES", CHILD_SIZES),
    ] {
        assert_no_scans(&mut conn, name, query).await;
    }
}

/// The two ways of reading a restricted catalog page (by project, by name)
/// give the same pages, for members, robots and strangers, at any size.
#[tokio::test]
async fn catalog_strategies_agree() {
    use super::pg_catalog::{catalog_by_name, catalog_by_project};
    let m = PgMetadata::open(&fresh_database().await, 2).await.unwrap();
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
        let d = Digest::sha256_of(name.as_bytes());
        m.link_blob(&repo(name), &d, 1, true).await.unwrap();
        m.put_manifest(&image(name, name, "t", &d, 1))
            .await
            .unwrap();
    }
    let mut seen = 0;
    for (member, project) in [(Some("viewer"), None), (None, Some("c-priv")), (None, None)] {
        for limit in [1_i64, 3, 100] {
            let mut last = String::new();
            for _ in 0..30 {
                let mut pages = Vec::new();
                for query in [catalog_by_name(), catalog_by_project()] {
                    let page: Vec<String> = sqlx::query_scalar(&query)
                        .bind(member)
                        .bind(project)
                        .bind(&last)
                        .bind(limit)
                        .fetch_all(&m.pool)
                        .await
                        .unwrap();
                    pages.push(page);
                }
                assert_eq!(pages[0], pages[1], "{member:?} {project:?} after {last:?}");
                seen += pages[0].len();
                match pages[0].last() {
                    Some(l) => last = l.clone(),
                    None => break,
                }
            }
        }
    }
    // viewer: c, c-pub, c-mine (16 names); the c-priv robot: c-pub, c-priv
    // (10); a stranger: c-pub (5); each listed at three page sizes.
    assert_eq!(seen, 3 * (16 + 10 + 5));
}

/// The shared failed-login counts: two replicas' failures add up, a
/// success clears the key (and is read after the cursor), a key quiet
/// past the forget time counts from one again, and quiet keys are deleted.
#[tokio::test]
async fn login_counts_add_up_across_replicas() {
    let url = fresh_database().await;
    let (a, b) = (
        PgMetadata::open(&url, 2).await.unwrap(),
        PgMetadata::open(&url, 2).await.unwrap(),
    );
    let failed = |at| LoginOutcome::Failed {
        key: "source:192.0.2.1".into(),
        at,
    };
    let forget = 600_000;
    let t = now_ms();
    a.record_logins(&[failed(t), failed(t + 1)], forget)
        .await
        .unwrap();
    b.record_logins(&[failed(t + 2)], forget).await.unwrap();
    let (rows, cursor) = b.logins_since(0).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].failures, rows[0].last_failure), (3, t + 2));
    assert!(cursor > 0);
    let ok = LoginOutcome::Succeeded {
        key: "source:192.0.2.1".into(),
        at: t + 3,
        trusted_until: t + 10_000,
    };
    a.record_logins(&[ok], forget).await.unwrap();
    let (rows, _) = b.logins_since(cursor).await.unwrap();
    assert_eq!(
        (rows[0].failures, rows[0].cleared, rows[0].trusted_until),
        (0, t + 3, t + 10_000)
    );
    // A failure long after the last one starts over.
    b.record_logins(&[failed(t + 4)], forget).await.unwrap();
    b.record_logins(&[failed(t + 4 + forget + 1)], forget)
        .await
        .unwrap();
    let (rows, _) = a.logins_since(0).await.unwrap();
    assert_eq!(rows[0].failures, 1);
    assert_eq!(a.forget_logins(now_ms() + 60_000).await.unwrap(), 1);
    assert!(a.logins_since(0).await.unwrap().0.is_empty());
}
