//! The access-control test suite every metadata backend must pass. Expects a
//! fresh database (names are fixed, as in `suite`).

use super::*;

use super::suite_audit::T0;

/// The whole access suite: each part takes only the roles it tests, so a
/// new backend can be brought up role by role.
pub async fn run(m: &dyn Metadata) {
    users(m).await;
    projects(m).await;
    members(m).await;
    robots(m).await;
    access_tokens(m).await;
    ended_sessions(m).await;
    super::suite_visibility::run(m).await;
    super::suite_audit::run(m).await;
}

fn is_duplicate<T: std::fmt::Debug>(r: Result<T>) -> bool {
    matches!(r, Err(MetadataError::Duplicate(_)))
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T>) -> bool {
    matches!(r, Err(MetadataError::NotFound(_)))
}

async fn users(m: &dyn AccessMetadata) {
    let generation = m.access_generation().await.unwrap();
    let before = m.count_users().await.unwrap();
    let alice = m.create_user("alice", "hash-a", false).await.unwrap();
    assert_eq!(alice.name, "alice");
    assert!(!alice.admin && !alice.disabled);
    assert!(alice.created_at > 0);
    let bob = m.create_user("bob", "hash-b", true).await.unwrap();
    assert!(bob.admin);
    assert_ne!(alice.id, bob.id);
    assert_eq!(m.count_users().await.unwrap(), before + 2);

    let again = m.create_user("alice", "other", true).await;
    assert!(
        matches!(&again, Err(MetadataError::Duplicate(what)) if what.contains("alice")),
        "{again:?}"
    );
    assert_eq!(m.count_users().await.unwrap(), before + 2);
    // The refused duplicate changed nothing.
    assert_eq!(m.get_user("alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(m.get_user("nobody").await.unwrap(), None);
    // Names are exact.
    assert_eq!(m.get_user("Alice").await.unwrap(), None);

    m.create_user("aaron", "hash-c", false).await.unwrap();
    let names: Vec<String> = m
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .filter(|n| ["aaron", "alice", "bob"].contains(&n.as_str()))
        .collect();
    assert_eq!(names, ["aaron", "alice", "bob"]);
    let page: Vec<String> = m
        .users_page("aaron", 2)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(page, ["alice", "bob"]);

    assert!(m.set_password("alice", "hash-a2").await.unwrap());
    assert!(m.set_admin("alice", true).await.unwrap());
    assert!(m.set_disabled("alice", true).await.unwrap());
    let changed = m.get_user("alice").await.unwrap().unwrap();
    assert_eq!(changed.password_hash, "hash-a2");
    assert!(changed.admin && changed.disabled);
    assert_eq!(
        (changed.id, changed.created_at),
        (alice.id, alice.created_at)
    );
    assert!(m.set_admin("alice", false).await.unwrap());
    assert!(m.set_disabled("alice", false).await.unwrap());
    let back = m.get_user("alice").await.unwrap().unwrap();
    assert!(!back.admin && !back.disabled);
    // Five changes, five generations; setting a flag to what it is is none.
    assert_eq!(back.generation, alice.generation + 5);
    assert!(m.set_admin("alice", false).await.unwrap());
    assert!(m.set_disabled("alice", false).await.unwrap());
    let same = m.get_user("alice").await.unwrap().unwrap();
    assert_eq!(same.generation, back.generation);
    assert_ne!(m.access_generation().await.unwrap(), generation);
    let generation = m.access_generation().await.unwrap();
    m.touch_access_token("none", 1).await.unwrap();
    assert_eq!(m.access_generation().await.unwrap(), generation);
    // Bob was not touched by any of that.
    assert_eq!(m.get_user("bob").await.unwrap(), Some(bob));

    assert!(!m.set_password("nobody", "x").await.unwrap());
    assert!(!m.set_admin("nobody", true).await.unwrap());
    assert!(!m.set_disabled("nobody", true).await.unwrap());

    assert!(m.delete_user("aaron").await.unwrap());
    assert!(!m.delete_user("aaron").await.unwrap());
    assert_eq!(m.get_user("aaron").await.unwrap(), None);
    assert_eq!(m.count_users().await.unwrap(), before + 2);
}

async fn projects(m: &dyn AccessMetadata) {
    let library = m.create_project("library", true, None).await.unwrap();
    assert!(library.public);
    assert!(m.members("library").await.unwrap().is_empty());
    let team = m
        .create_project("team", false, Some("alice"))
        .await
        .unwrap();
    assert!(!team.public);
    assert_ne!(library.id, team.id);
    assert_eq!(m.role_of("team", "alice").await.unwrap(), Some(Role::Admin));

    assert!(is_duplicate(m.create_project("team", true, None).await));
    assert!(is_duplicate(
        m.create_project("team", true, Some("bob")).await
    ));
    // A failed creation leaves no half-made membership behind.
    assert_eq!(m.role_of("team", "bob").await.unwrap(), None);
    // An unknown owner refuses the whole creation.
    assert!(is_not_found(
        m.create_project("orphan", false, Some("nobody")).await
    ));
    assert_eq!(m.get_project("orphan").await.unwrap(), None);

    assert_eq!(m.get_project("team").await.unwrap(), Some(team.clone()));
    assert_eq!(m.get_project("nothing").await.unwrap(), None);
    let names: Vec<String> = m
        .list_projects()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["library", "team"]);

    assert!(m.set_public("team", true).await.unwrap());
    assert!(m.get_project("team").await.unwrap().unwrap().public);
    assert!(m.set_public("team", false).await.unwrap());
    assert!(!m.get_project("team").await.unwrap().unwrap().public);
    assert!(!m.set_public("nothing", true).await.unwrap());

    m.create_project("scratch", false, Some("bob"))
        .await
        .unwrap();
    assert_eq!(
        m.delete_project("scratch", false).await.unwrap(),
        ProjectDeletion::Deleted { repositories: 0 }
    );
    assert_eq!(
        m.delete_project("scratch", false).await.unwrap(),
        ProjectDeletion::NotFound
    );
    assert_eq!(m.get_project("scratch").await.unwrap(), None);
    assert_eq!(m.role_of("scratch", "bob").await.unwrap(), None);
}

async fn members(m: &dyn AccessMetadata) {
    m.set_member("team", "bob", Role::Guest).await.unwrap();
    assert_eq!(m.role_of("team", "bob").await.unwrap(), Some(Role::Guest));
    // Setting again changes the role instead of adding a second row.
    m.set_member("team", "bob", Role::Maintainer).await.unwrap();
    assert_eq!(
        m.members("team").await.unwrap(),
        [
            Member {
                user: "alice".into(),
                role: Role::Admin
            },
            Member {
                user: "bob".into(),
                role: Role::Maintainer
            },
        ]
    );
    m.set_member("library", "bob", Role::Developer)
        .await
        .unwrap();
    assert_eq!(
        m.memberships("bob").await.unwrap(),
        [
            ("library".to_string(), Role::Developer),
            ("team".to_string(), Role::Maintainer),
        ]
    );
    assert_eq!(
        m.memberships("alice").await.unwrap(),
        [("team".to_string(), Role::Admin)]
    );
    assert!(m.memberships("nobody").await.unwrap().is_empty());
    assert!(m.members("nothing").await.unwrap().is_empty());
    assert_eq!(m.role_of("library", "alice").await.unwrap(), None);
    assert_eq!(m.role_of("nothing", "alice").await.unwrap(), None);

    assert!(is_not_found(
        m.set_member("nothing", "bob", Role::Guest).await
    ));
    assert!(is_not_found(
        m.set_member("team", "nobody", Role::Guest).await
    ));

    assert!(m.remove_member("library", "bob").await.unwrap());
    assert!(!m.remove_member("library", "bob").await.unwrap());
    assert!(!m.remove_member("nothing", "bob").await.unwrap());
    assert_eq!(m.role_of("library", "bob").await.unwrap(), None);
    // The other membership is untouched.
    assert_eq!(
        m.role_of("team", "bob").await.unwrap(),
        Some(Role::Maintainer)
    );
}

fn new_robot(name: &str, project: &str, actions: &[Action], expires_at: Option<i64>) -> NewRobot {
    NewRobot {
        name: name.into(),
        secret_hash: format!("secret-of-{name}"),
        project: project.into(),
        actions: actions.to_vec(),
        expires_at,
        created_by: "alice".into(),
    }
}

async fn robots(m: &dyn AccessMetadata) {
    let ci = m
        .create_robot(&new_robot(
            "team+ci",
            "team",
            &[Action::Push, Action::Pull, Action::Push],
            Some(4_102_444_800_000),
        ))
        .await
        .unwrap();
    assert_eq!(ci.actions, [Action::Pull, Action::Push]);
    assert_eq!(ci.project, "team");
    assert_eq!(ci.secret_hash, "secret-of-team+ci");
    assert_eq!(ci.created_by, "alice");
    assert!(!ci.disabled);
    assert_eq!(m.get_robot("team+ci").await.unwrap(), Some(ci.clone()));
    assert_eq!(
        m.get_robot("team+ci").await.unwrap().unwrap().expires_at,
        Some(4_102_444_800_000)
    );

    let mirror = m
        .create_robot(&new_robot(
            "library+mirror",
            "library",
            &[Action::Delete, Action::Pull],
            None,
        ))
        .await
        .unwrap();
    assert_eq!(
        m.get_robot("library+mirror").await.unwrap().unwrap(),
        mirror
    );
    assert_eq!(mirror.expires_at, None);
    assert_eq!(mirror.actions, [Action::Pull, Action::Delete]);
    let reader = m
        .create_robot(&new_robot("team+reader", "team", &[], Some(1)))
        .await
        .unwrap();
    assert!(m
        .get_robot("team+reader")
        .await
        .unwrap()
        .unwrap()
        .actions
        .is_empty());
    assert!(reader.is_expired(2));

    assert!(is_duplicate(
        m.create_robot(&new_robot("team+ci", "library", &[Action::Pull], None))
            .await
    ));
    assert_eq!(
        m.get_robot("team+ci").await.unwrap().unwrap().project,
        "team"
    );
    assert!(is_not_found(
        m.create_robot(&new_robot("x+ci", "nothing", &[Action::Pull], None))
            .await
    ));
    assert_eq!(m.get_robot("x+ci").await.unwrap(), None);

    let names = |robots: Vec<Robot>| robots.into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(
        names(m.list_robots(Some("team")).await.unwrap()),
        ["team+ci", "team+reader"]
    );
    assert_eq!(
        names(m.list_robots(None).await.unwrap()),
        ["library+mirror", "team+ci", "team+reader"]
    );
    assert!(m.list_robots(Some("nothing")).await.unwrap().is_empty());

    let first = m.get_robot("team+ci").await.unwrap().unwrap().generation;
    assert!(m.set_robot_disabled("team+ci", true).await.unwrap());
    assert!(m.get_robot("team+ci").await.unwrap().unwrap().disabled);
    assert!(m.set_robot_disabled("team+ci", false).await.unwrap());
    let enabled = m.get_robot("team+ci").await.unwrap().unwrap();
    assert!(!enabled.disabled);
    assert_eq!(enabled.generation, first + 2, "disabled, then enabled");
    assert!(!m.set_robot_disabled("nobody", true).await.unwrap());

    assert!(m.delete_robot("team+reader").await.unwrap());
    assert!(!m.delete_robot("team+reader").await.unwrap());
    assert_eq!(m.get_robot("team+reader").await.unwrap(), None);
}

async fn access_tokens(m: &dyn AccessMetadata) {
    let ci = m
        .create_access_token("alice", "ci", "token-hash-1", Some(4_102_444_800_000))
        .await
        .unwrap();
    assert!(!ci.id.is_empty());
    assert_eq!(
        (ci.user.as_str(), ci.name.as_str(), ci.last_used_at),
        ("alice", "ci", None)
    );
    let laptop = m
        .create_access_token("alice", "laptop", "token-hash-2", None)
        .await
        .unwrap();
    assert_ne!(ci.id, laptop.id);
    assert_eq!(m.get_access_token(&ci.id).await.unwrap(), Some(ci.clone()));
    assert_eq!(
        m.get_access_token(&laptop.id).await.unwrap(),
        Some(laptop.clone())
    );
    assert_eq!(m.get_access_token("no-such-id").await.unwrap(), None);

    // Names are unique per user, not across users.
    assert!(is_duplicate(
        m.create_access_token("alice", "ci", "h", None).await
    ));
    let bobs = m
        .create_access_token("bob", "ci", "token-hash-3", None)
        .await
        .unwrap();
    assert!(is_not_found(
        m.create_access_token("nobody", "ci", "h", None).await
    ));

    let names = |tokens: Vec<AccessToken>| tokens.into_iter().map(|t| t.name).collect::<Vec<_>>();
    assert_eq!(
        names(m.access_tokens_of("alice").await.unwrap()),
        ["ci", "laptop"]
    );
    assert_eq!(names(m.access_tokens_of("bob").await.unwrap()), ["ci"]);
    assert!(m.access_tokens_of("nobody").await.unwrap().is_empty());

    m.touch_access_token(&ci.id, 1_700_000_000_123)
        .await
        .unwrap();
    assert_eq!(
        m.get_access_token(&ci.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(1_700_000_000_123)
    );
    assert_eq!(
        m.get_access_token(&laptop.id)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        None
    );
    m.touch_access_token("no-such-id", 1).await.unwrap();

    // Only the owner deletes a token.
    assert!(!m.delete_access_token("bob", &ci.id).await.unwrap());
    assert!(m.get_access_token(&ci.id).await.unwrap().is_some());
    assert!(m.delete_access_token("alice", &ci.id).await.unwrap());
    assert!(!m.delete_access_token("alice", &ci.id).await.unwrap());
    assert_eq!(m.get_access_token(&ci.id).await.unwrap(), None);
    assert!(m.get_access_token(&bobs.id).await.unwrap().is_some());
}

/// A logout is seen by every process on the store, and a record outlives
/// nothing: one whose expiry passed is forgotten by the next logout.
async fn ended_sessions(m: &dyn EndedSessions) {
    let far = crate::metadata::now_ms() / 1000 + 3600;
    assert!(!m.session_ended("session-a").await.unwrap());
    m.end_session("session-a", far).await.unwrap();
    assert!(m.session_ended("session-a").await.unwrap());
    // Ending it again (a second logout) is no error.
    m.end_session("session-a", far).await.unwrap();
    m.end_session("session-old", 1).await.unwrap();
    m.end_session("session-b", far).await.unwrap();
    assert!(!m.session_ended("session-old").await.unwrap(), "expired");
    assert!(m.session_ended("session-a").await.unwrap());
    assert!(!m.session_ended("session-c").await.unwrap());
}

/// What the suite left must be there for a new connection (a reopened
/// file, another replica's pool).
async fn kept(m: &dyn AccessMetadata) {
    assert_eq!(
        m.role_of("library", "bob").await.unwrap(),
        None,
        "removed membership came back"
    );
    assert_eq!(
        m.get_robot("library+mirror")
            .await
            .unwrap()
            .unwrap()
            .actions,
        [Action::Pull, Action::Delete]
    );
    assert!(m.get_user("bob").await.unwrap().unwrap().admin);
    let events = m
        .query(&AuditFilter {
            actor: Some("auditor-a".into()),
            limit: 1,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events[0].at, T0);
}

#[tokio::test]
async fn sqlite_passes_access_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    let m = SqliteMetadata::open(&path).await.unwrap();
    run(&m).await;
    super::sqlite::tests::assert_counters_consistent(&m).await;
    // Reopening keeps what was stored.
    drop(m);
    let m = SqliteMetadata::open(&path).await.unwrap();
    kept(&m).await;
}

#[tokio::test]
async fn postgres_passes_access_suite() {
    let url = super::test_postgres::fresh_database().await;
    let m = PgMetadata::open(&url, 4).await.unwrap();
    run(&m).await;
    super::postgres::tests::assert_counters_consistent(&m).await;
    // A second pool (another replica) sees what the first stored.
    let other = PgMetadata::open(&url, 2).await.unwrap();
    kept(&other).await;
}
