//! The access-control test suite every metadata backend must pass. Expects a
//! fresh database (names are fixed, as in `suite`).

use super::*;

pub async fn run(m: &dyn Metadata) {
    users(m).await;
    projects(m).await;
    members(m).await;
    robots(m).await;
    access_tokens(m).await;
    deletes_cascade(m).await;
    project_deletion_takes_its_repositories(m).await;
    listings_name_only_visible_repositories(m).await;
    audit_filters(m).await;
    audit_pages(m).await;
    audit_prune(m).await;
}

fn is_duplicate<T: std::fmt::Debug>(r: Result<T>) -> bool {
    matches!(r, Err(MetadataError::Duplicate(_)))
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T>) -> bool {
    matches!(r, Err(MetadataError::NotFound(_)))
}

async fn users(m: &dyn Metadata) {
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

async fn projects(m: &dyn Metadata) {
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

async fn members(m: &dyn Metadata) {
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

async fn robots(m: &dyn Metadata) {
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

async fn access_tokens(m: &dyn Metadata) {
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

async fn deletes_cascade(m: &dyn Metadata) {
    let laptop = m.access_tokens_of("alice").await.unwrap();
    assert_eq!(laptop.len(), 1);
    assert!(m.delete_user("alice").await.unwrap());
    assert!(m.access_tokens_of("alice").await.unwrap().is_empty());
    assert_eq!(m.get_access_token(&laptop[0].id).await.unwrap(), None);
    assert!(m.memberships("alice").await.unwrap().is_empty());
    assert_eq!(
        m.members("team").await.unwrap(),
        [Member {
            user: "bob".into(),
            role: Role::Maintainer
        }]
    );
    // The robot alice made outlives her; her project too.
    assert_eq!(
        m.get_robot("team+ci").await.unwrap().unwrap().created_by,
        "alice"
    );
    assert!(m.get_project("team").await.unwrap().is_some());
    // A new user of the same name inherits nothing.
    m.create_user("alice", "hash-new", false).await.unwrap();
    assert!(m.memberships("alice").await.unwrap().is_empty());
    assert!(m.access_tokens_of("alice").await.unwrap().is_empty());

    assert_eq!(
        m.delete_project("team", false).await.unwrap(),
        ProjectDeletion::Deleted { repositories: 0 }
    );
    assert_eq!(m.get_robot("team+ci").await.unwrap(), None);
    assert!(m.list_robots(Some("team")).await.unwrap().is_empty());
    assert!(m.members("team").await.unwrap().is_empty());
    assert!(m.memberships("bob").await.unwrap().is_empty());
    // Users and other projects' robots stay.
    assert!(m.get_user("bob").await.unwrap().is_some());
    assert!(m.get_robot("library+mirror").await.unwrap().is_some());
    // A new project of the same name starts empty.
    m.create_project("team", false, None).await.unwrap();
    assert!(m.members("team").await.unwrap().is_empty());
    assert!(m.list_robots(Some("team")).await.unwrap().is_empty());
}

fn image(repo: &str, tag: &str) -> NewManifest {
    let content = bytes::Bytes::from(format!("{{\"r\":\"{repo}\"}}"));
    NewManifest {
        repo: repo.parse().unwrap(),
        digest: crate::oci::Digest::sha256_of(&content),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        content,
        artifact_type: None,
        subject: None,
        annotations: None,
        blobs: Vec::new(),
        children: Vec::new(),
        tag: Some(tag.parse().unwrap()),
    }
}

/// A deleted project takes its repositories (`p`, `p/…`, never `p2/…` or
/// `p-x`), or is refused while it has any; a project created again under
/// the name, even over repositories left by an older berth, starts empty.
async fn project_deletion_takes_its_repositories(m: &dyn Metadata) {
    m.create_project("gone", false, None).await.unwrap();
    for name in ["gone", "gone/app", "gone/deep/er", "gone0/x", "gone-x/y"] {
        m.put_manifest(&image(name, "v1")).await.unwrap();
    }
    assert_eq!(m.project_repository_count("gone").await.unwrap(), 3);
    assert_eq!(
        m.delete_project("gone", false).await.unwrap(),
        ProjectDeletion::NotEmpty { repositories: 3 }
    );
    assert!(
        m.get_project("gone").await.unwrap().is_some(),
        "refused: nothing changed"
    );
    assert_eq!(
        m.delete_project("gone", true).await.unwrap(),
        ProjectDeletion::Deleted { repositories: 3 }
    );
    assert_eq!(m.project_repository_count("gone").await.unwrap(), 0);
    let app: RepoName = "gone/app".parse().unwrap();
    assert!(!m.repository_exists(&app).await.unwrap());
    for other in ["gone0/x", "gone-x/y"] {
        assert!(
            m.repository_exists(&other.parse().unwrap()).await.unwrap(),
            "{other}"
        );
    }

    // Repositories left without a project row are swept when it comes back.
    m.put_manifest(&image("gone/left", "v1")).await.unwrap();
    assert_eq!(m.project_repository_count("gone").await.unwrap(), 1);
    m.create_project("gone", false, None).await.unwrap();
    assert_eq!(m.project_repository_count("gone").await.unwrap(), 0);
    let left: RepoName = "gone/left".parse().unwrap();
    let page = Page {
        last: None,
        limit: 10,
    };
    assert_eq!(m.list_tags(&left, &page).await.unwrap(), None);
}

/// Catalog pages and searches run over what the caller may see: public
/// projects, the member's projects, the robot's project; never a repository
/// without its project, unless everything is visible.
async fn listings_name_only_visible_repositories(m: &dyn Metadata) {
    m.create_user("viewer", "hash", false).await.unwrap();
    m.create_project("vis-pub", true, None).await.unwrap();
    m.create_project("vis-mine", false, Some("viewer"))
        .await
        .unwrap();
    m.create_project("vis-priv", false, None).await.unwrap();
    m.create_project("vis-bot", false, None).await.unwrap();
    for name in [
        "vis-bot/a",
        "vis-mine/a",
        "vis-priv/a",
        "vis-priv/b",
        "vis-pub/a",
        "vis-pub/b",
        "vis-zorphan/a",
    ] {
        m.put_manifest(&image(name, "v1")).await.unwrap();
    }
    async fn names(
        m: &dyn Metadata,
        visible: Visible,
        last: Option<&str>,
        limit: u32,
    ) -> Vec<String> {
        let page = Page {
            last: Some(last.unwrap_or("vis-").to_string()),
            limit,
        };
        let names = m.list_repositories(&page, &visible).await.unwrap();
        names
            .into_iter()
            .filter(|n| n.starts_with("vis-"))
            .collect()
    }
    let anonymous = || Visible::Projects {
        member: None,
        project: None,
    };
    assert_eq!(
        names(m, anonymous(), None, 100).await,
        ["vis-pub/a", "vis-pub/b"]
    );
    // A page of one after vis-pub/a: the next visible one, not vis-priv/…
    assert_eq!(names(m, anonymous(), None, 1).await, ["vis-pub/a"]);
    assert_eq!(
        names(m, anonymous(), Some("vis-pub/a"), 1).await,
        ["vis-pub/b"]
    );
    let member = Visible::Projects {
        member: Some("viewer".into()),
        project: None,
    };
    assert_eq!(
        names(m, member.clone(), None, 100).await,
        ["vis-mine/a", "vis-pub/a", "vis-pub/b"]
    );
    let robot = Visible::Projects {
        member: None,
        project: Some("vis-bot".into()),
    };
    assert_eq!(
        names(m, robot, None, 100).await,
        ["vis-bot/a", "vis-pub/a", "vis-pub/b"]
    );
    assert_eq!(names(m, Visible::All, None, 100).await.len(), 7);

    // Pages of projects, with the caller's role.
    async fn projects(
        m: &dyn Metadata,
        visible: &Visible,
        user: Option<&str>,
        after: &str,
        limit: u32,
    ) -> Vec<(String, Option<Role>)> {
        m.projects_page(visible, user, after, limit)
            .await
            .unwrap()
            .into_iter()
            .filter(|(p, _)| p.name.starts_with("vis-"))
            .map(|(p, role)| (p.name, role))
            .collect()
    }
    assert_eq!(
        projects(m, &member, Some("viewer"), "", 100).await,
        [
            ("vis-mine".to_string(), Some(Role::Admin)),
            ("vis-pub".to_string(), None)
        ]
    );
    assert_eq!(
        projects(m, &member, Some("viewer"), "vis-mine", 100).await,
        [("vis-pub".to_string(), None)]
    );
    assert_eq!(
        projects(m, &anonymous(), None, "", 100).await,
        [("vis-pub".to_string(), None)]
    );
    let all = projects(m, &Visible::All, Some("viewer"), "vis-", 3).await;
    assert_eq!(
        all,
        [
            ("vis-bot".to_string(), None),
            ("vis-mine".to_string(), Some(Role::Admin)),
            ("vis-priv".to_string(), None)
        ]
    );

    let found: Vec<String> = m
        .search_repositories("/a", &member, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .filter(|n| n.starts_with("vis-"))
        .collect();
    assert_eq!(found, ["vis-mine/a", "vis-pub/a"]);
    async fn search(m: &dyn Metadata, needle: &str, visible: &Visible) -> Vec<String> {
        m.search_repositories(needle, visible, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .filter(|n| n.starts_with("vis-"))
            .collect()
    }
    // Three characters or more: through the trigram index, same answers.
    assert_eq!(search(m, "s-p", &member).await, ["vis-pub/a", "vis-pub/b"]);
    assert_eq!(search(m, "VIS-MINE/", &member).await, ["vis-mine/a"]);
    assert_eq!(search(m, "vis-priv", &member).await, Vec::<String>::new());
    assert_eq!(
        search(m, "vis-priv", &Visible::All).await,
        ["vis-priv/a", "vis-priv/b"]
    );
    assert_eq!(
        search(m, "is-zorphan/", &Visible::All).await,
        ["vis-zorphan/a"]
    );
    assert_eq!(search(m, "vis*", &Visible::All).await, Vec::<String>::new());
}

const T0: i64 = 1_000_000;

/// Ten events, `at` = T0, T0+100, … T0+900: actors alternate, actions cycle
/// pull/push/delete, the first five are on `audit/app`, the rest on
/// `audit/db`, and the eighth failed.
fn event(i: i64) -> NewAuditEvent {
    NewAuditEvent {
        at: T0 + i * 100,
        actor: if i % 2 == 0 { "auditor-a" } else { "auditor-b" }.into(),
        source: Some(format!("10.0.0.{i}")),
        action: ["pull", "push", "delete"][i as usize % 3].into(),
        repository: Some(if i < 5 { "audit/app" } else { "audit/db" }.into()),
        digest: Some(format!("sha256:{i:064}")),
        detail: Some(format!("event {i}")),
        success: i != 7,
    }
}

/// Which of the ten events a query returned, by their `at`.
fn indices(events: &[AuditEvent]) -> Vec<i64> {
    events.iter().map(|e| (e.at - T0) / 100).collect()
}

fn filter() -> AuditFilter {
    AuditFilter {
        since: Some(T0),
        until: Some(T0 + 1000),
        ..AuditFilter::default()
    }
}

async fn audit_filters(m: &dyn Metadata) {
    for i in 0..10 {
        m.record(&[event(i)]).await.unwrap();
    }
    let all = m.query(&filter()).await.unwrap();
    assert_eq!(indices(&all), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    let seventh = all.iter().find(|e| e.at == T0 + 700).unwrap();
    let expected = event(7);
    assert_eq!(
        seventh,
        &AuditEvent {
            id: seventh.id,
            at: expected.at,
            actor: expected.actor,
            source: expected.source,
            action: expected.action,
            repository: expected.repository,
            digest: expected.digest,
            detail: expected.detail,
            success: false,
        }
    );

    let by_actor = AuditFilter {
        actor: Some("auditor-a".into()),
        ..filter()
    };
    assert_eq!(indices(&m.query(&by_actor).await.unwrap()), [8, 6, 4, 2, 0]);
    let by_action = AuditFilter {
        action: Some("push".into()),
        ..filter()
    };
    assert_eq!(indices(&m.query(&by_action).await.unwrap()), [7, 4, 1]);
    let by_repository = AuditFilter {
        repository: Some("audit/db".into()),
        ..filter()
    };
    assert_eq!(
        indices(&m.query(&by_repository).await.unwrap()),
        [9, 8, 7, 6, 5]
    );
    let combined = AuditFilter {
        actor: Some("auditor-b".into()),
        repository: Some("audit/app".into()),
        ..filter()
    };
    assert_eq!(indices(&m.query(&combined).await.unwrap()), [3, 1]);
    // `since` is inclusive, `until` exclusive.
    let window = AuditFilter {
        since: Some(T0 + 300),
        until: Some(T0 + 600),
        ..AuditFilter::default()
    };
    assert_eq!(indices(&m.query(&window).await.unwrap()), [5, 4, 3]);
    let nobody = AuditFilter {
        actor: Some("auditor-z".into()),
        ..filter()
    };
    assert!(m.query(&nobody).await.unwrap().is_empty());
    let limited = AuditFilter {
        limit: 2,
        ..by_actor
    };
    assert_eq!(indices(&m.query(&limited).await.unwrap()), [8, 6]);

    // Optional fields may be absent.
    let bare = NewAuditEvent {
        at: T0 + 5000,
        actor: "anonymous".into(),
        source: None,
        action: "login".into(),
        repository: None,
        digest: None,
        detail: None,
        success: false,
    };
    m.record(std::slice::from_ref(&bare)).await.unwrap();
    let found = m
        .query(&AuditFilter {
            actor: Some("anonymous".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].source.clone(), found[0].repository.clone()),
        (None, None)
    );
    assert_eq!((found[0].at, found[0].success), (T0 + 5000, false));
}

async fn audit_pages(m: &dyn Metadata) {
    let mut seen = Vec::new();
    let mut page = AuditFilter {
        limit: 4,
        ..filter()
    };
    let mut sizes = Vec::new();
    loop {
        let events = m.query(&page).await.unwrap();
        sizes.push(events.len());
        let Some(last) = events.last() else { break };
        page.before_id = Some(last.id);
        seen.extend(indices(&events));
    }
    assert_eq!(sizes, [4, 4, 2, 0]);
    assert_eq!(seen, [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);

    // A cursor combines with the other filters, and events recorded after
    // the first page do not shift the next ones.
    let mut page = AuditFilter {
        repository: Some("audit/app".into()),
        limit: 2,
        ..filter()
    };
    let first = m.query(&page).await.unwrap();
    assert_eq!(indices(&first), [4, 3]);
    m.record(&[event(0)]).await.unwrap();
    page.before_id = Some(first[1].id);
    assert_eq!(indices(&m.query(&page).await.unwrap()), [2, 1]);
}

/// Events older than a cut-off go, in batches; newer ones stay.
async fn audit_prune(m: &dyn Metadata) {
    let old: Vec<NewAuditEvent> = (1..=5)
        .map(|i| NewAuditEvent { at: i, ..event(0) })
        .collect();
    m.record(&old).await.unwrap();
    let before_t0 = AuditFilter {
        until: Some(T0),
        ..AuditFilter::default()
    };
    assert_eq!(m.prune(4, 2).await.unwrap(), 3);
    let left: Vec<i64> = m
        .query(&before_t0)
        .await
        .unwrap()
        .iter()
        .map(|e| e.at)
        .collect();
    assert_eq!(left, [5, 4]);
    assert_eq!(m.prune(T0, 100).await.unwrap(), 2);
    assert!(m.query(&before_t0).await.unwrap().is_empty());
    assert_eq!(
        m.query(&filter()).await.unwrap().len(),
        11,
        "newer events stay"
    );
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
