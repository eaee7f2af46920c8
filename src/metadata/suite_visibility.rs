//! The access suite's part that spans roles: deletions that cascade, and
//! listings filtered by what a caller may see (repositories and access
//! together).

use super::*;

pub async fn run(m: &dyn Metadata) {
    deletes_cascade(m).await;
    project_deletion_takes_its_repositories(m).await;
    listings_name_only_visible_repositories(m).await;
}

async fn deletes_cascade(m: &dyn AccessMetadata) {
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
        immutable_rule: None,
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
