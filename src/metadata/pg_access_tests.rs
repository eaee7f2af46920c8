//! Access control on PostgreSQL with two replicas writing at once: two
//! pools on one database, each write raced against the same write (or a
//! conflicting one) on the other, several rounds so that both orders occur.

use super::*;

const ROUNDS: usize = 12;

/// Two replicas' stores on one fresh database.
async fn replicas() -> (PgMetadata, PgMetadata) {
    let url = test_postgres::fresh_database().await;
    let a = PgMetadata::open(&url, 4).await.unwrap();
    let b = PgMetadata::open(&url, 4).await.unwrap();
    (a, b)
}

/// One of the two racing creations succeeded and the other was told the
/// name is taken.
fn one_wins<T: std::fmt::Debug>(what: &str, a: Result<T>, b: Result<T>) {
    let duplicate = |r: &Result<T>| matches!(r, Err(MetadataError::Duplicate(_)));
    assert!(
        (a.is_ok() && duplicate(&b)) || (duplicate(&a) && b.is_ok()),
        "{what}: {a:?} and {b:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_creating_the_same_name_get_one_success_and_one_duplicate() {
    let (a, b) = replicas().await;
    for i in 0..ROUNDS {
        let user = format!("user{i}");
        let (ra, rb) = tokio::join!(
            a.create_user(&user, "hash-a", false),
            b.create_user(&user, "hash-b", true)
        );
        one_wins(&user, ra, rb);
        let project = format!("project{i}");
        let (ra, rb) = tokio::join!(
            a.create_project(&project, false, Some(&user)),
            b.create_project(&project, true, Some(&user))
        );
        one_wins(&project, ra, rb);
        let robot = NewRobot {
            name: format!("{project}+ci"),
            secret_hash: "secret".into(),
            project: project.clone(),
            actions: vec![Action::Pull],
            expires_at: None,
            created_by: user.clone(),
        };
        let (ra, rb) = tokio::join!(a.create_robot(&robot), b.create_robot(&robot));
        one_wins(&robot.name, ra, rb);
        let (ra, rb) = tokio::join!(
            a.create_access_token(&user, "ci", "h1", None),
            b.create_access_token(&user, "ci", "h2", None)
        );
        one_wins("access token", ra, rb);
    }
    // One row each, and the winner's owner membership came with its project.
    assert_eq!(a.count_users().await.unwrap(), ROUNDS as u64);
    assert_eq!(b.list_projects().await.unwrap().len(), ROUNDS);
    assert_eq!(a.list_robots(None).await.unwrap().len(), ROUNDS);
    for i in 0..ROUNDS {
        let (user, project) = (format!("user{i}"), format!("project{i}"));
        assert_eq!(b.members(&project).await.unwrap().len(), 1, "{project}");
        assert_eq!(a.role_of(&project, &user).await.unwrap(), Some(Role::Admin));
        assert_eq!(b.access_tokens_of(&user).await.unwrap().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_changes_bump_generations_once_per_change() {
    let (a, b) = replicas().await;
    a.create_user("alice", "hash", false).await.unwrap();
    a.create_project("team", false, None).await.unwrap();
    a.create_robot(&NewRobot {
        name: "team+ci".into(),
        secret_hash: "secret".into(),
        project: "team".into(),
        actions: vec![Action::Push],
        expires_at: None,
        created_by: "alice".into(),
    })
    .await
    .unwrap();
    let user = || async { a.get_user("alice").await.unwrap().unwrap().generation };
    let robot = || async { b.get_robot("team+ci").await.unwrap().unwrap().generation };
    for _ in 0..ROUNDS {
        let before = user().await;
        let seen = b.access_generation().await.unwrap();
        // The same change from both: one change, one bump.
        let (ra, rb) = tokio::join!(a.set_admin("alice", true), b.set_admin("alice", true));
        assert!(ra.unwrap() && rb.unwrap());
        assert_eq!(user().await, before + 1);
        // The other replica's cached rights are stale as soon as it commits.
        assert_ne!(b.access_generation().await.unwrap(), seen);
        let (ra, rb) = tokio::join!(a.set_admin("alice", false), b.set_disabled("alice", true));
        assert!(ra.unwrap() && rb.unwrap());
        let (ra, rb) = tokio::join!(
            a.set_password("alice", "p1"),
            b.set_disabled("alice", false)
        );
        assert!(ra.unwrap() && rb.unwrap());
        // Two passwords set at once are two changes.
        let (ra, rb) = tokio::join!(a.set_password("alice", "p2"), b.set_password("alice", "p3"));
        assert!(ra.unwrap() && rb.unwrap());
        assert_eq!(user().await, before + 7);
        let changed = a.get_user("alice").await.unwrap().unwrap();
        assert!(!changed.admin && !changed.disabled);

        let before = robot().await;
        let (ra, rb) = tokio::join!(
            a.set_robot_disabled("team+ci", true),
            b.set_robot_disabled("team+ci", true)
        );
        assert!(ra.unwrap() && rb.unwrap());
        b.set_robot_disabled("team+ci", false).await.unwrap();
        assert_eq!(robot().await, before + 2);
    }
}

/// A write that needs a row another replica deletes at the same moment
/// either happens before the deletion (and goes with it) or is refused as
/// `NotFound`; never a database error, never a row left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_racing_a_deletion_are_refused_or_deleted_with_it() {
    let (a, b) = replicas().await;
    a.create_user("keeper", "hash", false).await.unwrap();
    for i in 0..ROUNDS {
        let (user, project) = (format!("user{i}"), format!("project{i}"));
        a.create_user(&user, "hash", false).await.unwrap();
        a.create_project(&project, false, None).await.unwrap();
        let (member, deleted) = tokio::join!(
            a.set_member(&project, "keeper", Role::Developer),
            b.delete_project(&project, false)
        );
        assert!(
            member.is_ok() || matches!(member, Err(MetadataError::NotFound(_))),
            "{member:?}"
        );
        assert_eq!(
            deleted.unwrap(),
            ProjectDeletion::Deleted { repositories: 0 }
        );
        let other = format!("other{i}");
        let (created, deleted) = tokio::join!(
            a.create_project(&other, false, Some(&user)),
            b.delete_user(&user)
        );
        assert!(deleted.unwrap());
        match created {
            Ok(_) => assert!(b.members(&other).await.unwrap().is_empty()),
            Err(MetadataError::NotFound(_)) => {
                assert_eq!(b.get_project(&other).await.unwrap(), None)
            }
            Err(e) => panic!("{other}: {e:?}"),
        }
        let (token_name, password) = (format!("t{i}"), format!("p{i}"));
        let (token, _) = tokio::join!(
            a.create_access_token("keeper", &token_name, "h", None),
            b.set_password("keeper", &password)
        );
        token.unwrap();
    }
    assert!(a.memberships("keeper").await.unwrap().is_empty());
    assert_eq!(b.access_tokens_of("keeper").await.unwrap().len(), ROUNDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_pruning_at_once_delete_each_event_once() {
    let (a, b) = replicas().await;
    let events: Vec<NewAuditEvent> = (0..1000)
        .map(|i| NewAuditEvent {
            at: i,
            actor: "pruned".into(),
            source: None,
            action: "pull".into(),
            repository: None,
            digest: None,
            detail: None,
            success: true,
        })
        .collect();
    a.record(&events).await.unwrap();
    a.record(&[NewAuditEvent {
        at: 5000,
        ..events[0].clone()
    }])
    .await
    .unwrap();
    let (da, db) = tokio::join!(a.prune(1000, 25), b.prune(1000, 25));
    let (da, db) = (da.unwrap(), db.unwrap());
    // However the batches fell, every old event went, once.
    let left = a
        .query(&AuditFilter {
            actor: Some("pruned".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(left.iter().map(|e| e.at).collect::<Vec<_>>(), [5000]);
    assert_eq!(da + db, 1000, "{da} + {db}");
}

/// A project deleted (unless it holds images) while a replica pushes the
/// first image into it: either the push counted first and the deletion is
/// refused, or the deletion went first and the push finds its layer gone
/// with the repository. Never a database error on either side, however the
/// two transactions' locks interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_deleted_during_its_first_push_is_refused_or_takes_the_repository() {
    let (a, b) = replicas().await;
    let layer = Digest::sha256_of(b"layer");
    for i in 0..6 {
        let project = format!("race{i}");
        let repo: RepoName = format!("{project}/app").parse().unwrap();
        a.create_project(&project, false, None).await.unwrap();
        a.link_blob(&repo, &layer, 5, true).await.unwrap();
        let content = bytes::Bytes::from(format!("{{\"n\":{i}}}"));
        let image = NewManifest {
            repo: repo.clone(),
            digest: Digest::sha256_of(&content),
            media_type: crate::oci::media::OCI_MANIFEST.into(),
            content,
            artifact_type: None,
            subject: None,
            annotations: None,
            blobs: vec![Ref {
                digest: layer.clone(),
                size: 5,
            }],
            children: Vec::new(),
            tag: Some("v1".parse().unwrap()),
            immutable_rule: None,
        };
        let (pushed, deleted) =
            tokio::join!(a.put_manifest(&image), b.delete_project(&project, false));
        match (&pushed, deleted.unwrap()) {
            (Ok(()), ProjectDeletion::NotEmpty { repositories: 1 }) => {
                assert!(b.get_project(&project).await.unwrap().is_some())
            }
            (Err(MetadataError::MissingReference(_)), ProjectDeletion::Deleted { .. }) => {
                assert!(!b.repository_exists(&repo).await.unwrap())
            }
            (_, deleted) => panic!("{project}: {pushed:?} and {deleted:?}"),
        }
    }
}
