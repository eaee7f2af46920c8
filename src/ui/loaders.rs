//! Page loaders: each gathers what one page shows into a view (plain data)
//! through the auth service (who may see what), the registry (manifests,
//! blobs, deletion) and the browse service; `templates` renders it.

use std::net::IpAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::StreamExt as _;

use super::image::{self, Doc};
use super::lifecycle;
use super::templates;
use super::UiState;
use super::{now_ms, urlencode, ProjectForm, TagQuery, UiError, Viewer};
use crate::auth::{AuthError, Principal};
use crate::auth::{ProjectView, RobotView};
use crate::metadata::{Action, Member, ProjectUsage, RepoSummary, Role, TagOrder, TagRow};
use crate::oci::{Digest, Reference, RepoName, Tag};

const TAGS_PER_PAGE: u32 = 50;
/// Projects on one page of the overview, repositories on one page of a
/// project: a page costs the same however many there are.
const PROJECTS_PER_PAGE: u32 = 100;
const REPOS_PER_PAGE: u32 = 100;
/// Image configs are small; a larger one is not read into memory.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Checks a login; the account name on success, else status and message.
pub async fn sign_in(
    state: &UiState,
    user: &str,
    password: &str,
    source: IpAddr,
) -> Result<String, (StatusCode, String)> {
    match state.auth.authenticator.login(user, password, source).await {
        Ok(Principal::User { name, .. }) => Ok(name),
        Ok(_) => Err((
            StatusCode::FORBIDDEN,
            "Robot accounts cannot sign in to the web UI.".into(),
        )),
        Err(e @ (AuthError::RateLimited(_) | AuthError::Busy(_))) => {
            Err((StatusCode::TOO_MANY_REQUESTS, e.to_string()))
        }
        Err(AuthError::BadCredentials | AuthError::InvalidToken(_)) => Err((
            StatusCode::UNAUTHORIZED,
            "Wrong user name or password.".into(),
        )),
        Err(e) => {
            tracing::error!(error = %e, "login from the web UI failed");
            Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                "The server could not check the login; try again.".into(),
            ))
        }
    }
}

/// What `viewer` may do on `repo`.
async fn actions(
    state: &UiState,
    viewer: &Viewer,
    repo: &RepoName,
) -> Result<Vec<Action>, UiError> {
    Ok(state
        .auth
        .authorizer
        .actions_on(viewer.principal(), repo)
        .await?)
}

/// One page of the projects the viewer may see, with their usage.
pub struct Overview {
    pub projects: Vec<ProjectView>,
    pub usage: Vec<ProjectUsage>,
    pub after: String,
    /// The cursor of the next page, if there is one.
    pub next: Option<String>,
}

pub async fn overview(state: &UiState, viewer: &Viewer, after: &str) -> Result<Overview, UiError> {
    let mut projects = state
        .auth
        .accounts
        .projects_page(&viewer.actor, after, PROJECTS_PER_PAGE + 1)
        .await?;
    let more = projects.len() > PROJECTS_PER_PAGE as usize;
    projects.truncate(PROJECTS_PER_PAGE as usize);
    let next = more
        .then(|| projects.last().map(|p| p.name.clone()))
        .flatten();
    let names: Vec<String> = projects.iter().map(|p| p.name.clone()).collect();
    let usage = state.ui.browse.project_usage(&names).await?;
    Ok(Overview {
        projects,
        usage,
        after: after.to_string(),
        next,
    })
}

/// Repositories the viewer may read whose name contains `q`.
pub struct SearchResults {
    pub q: String,
    pub found: Vec<RepoSummary>,
}

pub async fn search(state: &UiState, viewer: &Viewer, q: &str) -> Result<SearchResults, UiError> {
    let mut found = Vec::new();
    if !q.is_empty() {
        // Filtered in the query: 100 matches the viewer may read.
        let visible = state.auth.authorizer.visible_to(viewer.principal());
        found = state
            .ui
            .browse
            .search_repositories(q, &visible, 100)
            .await?;
    }
    Ok(SearchResults {
        q: q.to_string(),
        found,
    })
}

/// A project: one page of its repositories; its members and robots for
/// those who may see them.
pub struct ProjectPage {
    pub name: String,
    pub public: bool,
    pub repos: Vec<RepoSummary>,
    pub after: String,
    pub next: Option<String>,
    pub members: Option<Vec<Member>>,
    /// Present for those who manage the project.
    pub robots: Option<Vec<RobotView>>,
    /// A robot just created and its secret, shown only now.
    pub created_robot: Option<(String, String)>,
    /// Its quotas, usage and rules.
    pub rules: lifecycle::Rules,
    /// A repository just deleted, for the notice.
    pub deleted: Option<String>,
}

pub async fn project(
    state: &UiState,
    viewer: &Viewer,
    name: &str,
    after: &str,
    created_robot: Option<(String, String)>,
) -> Result<ProjectPage, UiError> {
    let project = state.auth.accounts.get_project(&viewer.actor, name).await?;
    let mut repos = state
        .ui
        .browse
        .repositories_in(name, after, REPOS_PER_PAGE + 1)
        .await?;
    let more = repos.len() > REPOS_PER_PAGE as usize;
    repos.truncate(REPOS_PER_PAGE as usize);
    let next = more.then(|| repos.last().map(|r| r.name.clone())).flatten();
    let members = state.auth.accounts.members(&viewer.actor, name).await.ok();
    let robots = state
        .auth
        .accounts
        .list_robots(&viewer.actor, name)
        .await
        .ok();
    Ok(ProjectPage {
        name: name.to_string(),
        public: project.public,
        repos,
        after: after.to_string(),
        next,
        members,
        robots,
        created_robot,
        rules: lifecycle::rules(state, name).await?,
        deleted: None,
    })
}

/// `expires_days` of a form: empty is never; else that many days from now.
fn expiry(days: &str) -> Result<Option<i64>, UiError> {
    let days = days.trim();
    if days.is_empty() {
        return Ok(None);
    }
    match days.parse::<u32>() {
        Ok(d @ 1..=36_500) => Ok(Some(now_ms() + i64::from(d) * 86_400_000)),
        _ => Err(UiError::BadRequest(format!(
            "expiry {days:?}: a number of days from 1 to 36500, or empty for never"
        ))),
    }
}

/// Visibility, members, robot creation and revocation, project deletion.
pub async fn project_action(
    state: &UiState,
    viewer: &Viewer,
    name: &str,
    action: &str,
    form: &ProjectForm,
) -> Result<Response, UiError> {
    let back = format!("/ui/projects/{}", urlencode(name));
    match action {
        "visibility" => {
            state
                .auth
                .accounts
                .set_project_public(&viewer.actor, name, form.public.is_some())
                .await?
        }
        "delete" => {
            // The confirmation names the repositories: they go too.
            state
                .auth
                .accounts
                .delete_project(&viewer.actor, name, true)
                .await?;
            state.registry.forget_cached();
            return Ok(Redirect::to("/ui").into_response());
        }
        "members" => {
            let role = form
                .role
                .parse::<Role>()
                .map_err(|e| UiError::BadRequest(e.to_string()))?;
            state
                .auth
                .accounts
                .set_member(&viewer.actor, name, form.user.trim(), role)
                .await?
        }
        "remove-member" => {
            state
                .auth
                .accounts
                .remove_member(&viewer.actor, name, &form.user)
                .await?
        }
        "revoke-robot" => {
            state
                .auth
                .accounts
                .delete_robot(&viewer.actor, name, &form.robot)
                .await?
        }
        "robots" => {
            let created = create_robot(state, viewer, name, form).await?;
            let page = project(state, viewer, name, "", Some(created)).await?;
            return Ok(templates::project(&page, viewer).into_response());
        }
        _ => return Err(UiError::NotFound("no such form".into())),
    }
    Ok(Redirect::to(&back).into_response())
}

/// Creates the robot a form describes: its name and secret.
async fn create_robot(
    state: &UiState,
    viewer: &Viewer,
    project: &str,
    form: &ProjectForm,
) -> Result<(String, String), UiError> {
    let wanted = [
        (form.pull.is_some(), Action::Pull),
        (form.push.is_some(), Action::Push),
        (form.delete.is_some(), Action::Delete),
    ];
    let actions = wanted
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, a)| a)
        .collect();
    let expires_at = expiry(&form.expires_days)?;
    let created = state
        .auth
        .accounts
        .create_robot(&viewer.actor, project, &form.name, actions, expires_at)
        .await?;
    Ok((created.item.name, created.secret))
}

/// What a `/ui/r/...` path names.
pub enum RepoPath {
    Repository(RepoName),
    Image(RepoName, Reference),
    DeleteTag(RepoName, Tag),
    /// `GET`: the confirmation page; `POST`: the deletion.
    DeleteRepository(RepoName),
}

impl RepoPath {
    /// `NAME`, `NAME/-/image/REF`, `NAME/-/tags/TAG/delete` or
    /// `NAME/-/delete`: `-` is never a repository path component, so any
    /// depth of name works.
    pub fn parse(path: &str) -> Result<RepoPath, UiError> {
        let bad = || UiError::NotFound("no such repository".into());
        let (name, rest) = match path.split_once("/-/") {
            Some((n, r)) => (n, Some(r)),
            None => (path.trim_end_matches('/'), None),
        };
        let repo: RepoName = name.parse().map_err(|_| bad())?;
        match rest.map(|r| r.split('/').collect::<Vec<_>>()).as_deref() {
            None => Ok(RepoPath::Repository(repo)),
            Some(["image", reference]) => {
                let reference = Reference::parse(reference).map_err(|_| bad())?;
                Ok(RepoPath::Image(repo, reference))
            }
            Some(["delete"]) => Ok(RepoPath::DeleteRepository(repo)),
            Some(["tags", tag, "delete"]) => {
                Ok(RepoPath::DeleteTag(repo, tag.parse().map_err(|_| bad())?))
            }
            _ => Err(bad()),
        }
    }
}

/// A repository the viewer may pull, else "not found" (existence hidden).
async fn readable(
    state: &UiState,
    viewer: &Viewer,
    repo: &RepoName,
) -> Result<Vec<Action>, UiError> {
    let actions = actions(state, viewer, repo).await?;
    if !actions.contains(&Action::Pull) {
        return Err(UiError::NotFound(format!("repository {repo} not found")));
    }
    Ok(actions)
}

/// One page of a repository's tags, with what each row shows.
pub struct RepositoryPage {
    pub repo: RepoName,
    pub total: u64,
    pub tags: Vec<TagRow>,
    /// Build time of each tag's image, when known.
    pub created: Vec<Option<String>>,
    /// Platforms of each tag that is an index.
    pub platforms: Vec<Vec<String>>,
    pub can_delete: bool,
    /// Whether the viewer may delete the whole repository.
    pub can_delete_repository: bool,
    pub order: TagOrder,
    pub page_no: u64,
    pub pages: u64,
    /// A tag just deleted.
    pub deleted: Option<String>,
}

pub async fn repository(
    state: &UiState,
    viewer: &Viewer,
    repo: &RepoName,
    q: &TagQuery,
) -> Result<RepositoryPage, UiError> {
    let actions = readable(state, viewer, repo).await?;
    let order = match q.sort.as_deref() {
        Some("pushed") => TagOrder::Pushed,
        _ => TagOrder::Name,
    };
    let page_no = q.page.unwrap_or(1).max(1);
    let offset = (page_no - 1)
        .checked_mul(u64::from(TAGS_PER_PAGE))
        .ok_or_else(|| UiError::BadRequest(format!("page {page_no} is out of range")))?;
    let tags = state
        .ui
        .browse
        .tags_page(repo, order, offset, TAGS_PER_PAGE)
        .await?
        .ok_or_else(|| UiError::NotFound(format!("repository {repo} not found")))?;
    Ok(RepositoryPage {
        created: build_times(state, repo, &tags.tags).await,
        platforms: tags
            .tags
            .iter()
            .map(|t| {
                t.index
                    .as_deref()
                    .map(image::index_platforms)
                    .unwrap_or_default()
            })
            .collect(),
        repo: repo.clone(),
        total: tags.total,
        pages: tags.total.div_ceil(u64::from(TAGS_PER_PAGE)).max(1),
        tags: tags.tags,
        can_delete: actions.contains(&Action::Delete),
        can_delete_repository: lifecycle::may_delete_repository(state, viewer, repo).await,
        order,
        page_no,
        deleted: q.deleted.clone(),
    })
}

/// Each tag's image build time, each distinct image read once (and cached).
async fn build_times(state: &UiState, repo: &RepoName, tags: &[TagRow]) -> Vec<Option<String>> {
    let mut distinct: Vec<&TagRow> = Vec::new();
    for t in tags {
        if !distinct.iter().any(|d| d.digest == t.digest) {
            distinct.push(t);
        }
    }
    futures_util::future::join_all(distinct.iter().map(|t| created_of(state, repo, t))).await;
    tags.iter()
        .map(|t| state.ui.created.get(&t.digest.to_string()).flatten())
        .collect()
}

/// Deletes one tag (the manifest stays reachable by digest) and audits it.
pub async fn delete_tag(
    state: &UiState,
    viewer: &Viewer,
    repo: &RepoName,
    tag: &Tag,
) -> Result<(), UiError> {
    let actions = readable(state, viewer, repo).await?;
    if !actions.contains(&Action::Delete) {
        return Err(UiError::Forbidden(format!(
            "you may not delete tags of {repo}"
        )));
    }
    state
        .registry
        .delete_manifest(repo, &Reference::Tag(tag.clone()))
        .await?;
    state.auth.audit().record(crate::auth::audit::event(
        viewer.name(),
        viewer.actor.source,
        "delete",
        Some(repo.as_str()),
        Some(tag.as_str()),
        Some("web UI".into()),
        true,
    ));
    Ok(())
}

/// When an image was built (its config's `created`); none for indexes or
/// when the config cannot be read (the page still renders).
async fn created_of(state: &UiState, repo: &RepoName, row: &TagRow) -> Option<String> {
    let key = row.digest.to_string();
    if let Some(known) = state.ui.created.get(&key) {
        return known;
    }
    let created = if row.index.is_some() {
        None
    } else {
        let reference = crate::oci::Reference::Digest(row.digest.clone());
        let manifest = state
            .registry
            .get_manifest(repo, &reference, &[])
            .await
            .ok()?;
        let doc = image::parse_doc(&manifest.content, &manifest.media_type)?;
        read_config(state, repo, &doc).await.ok()??.created
    };
    state.ui.created.insert(key, created.clone());
    created
}

/// The image config, read through the registry, if small enough.
async fn read_config(
    state: &UiState,
    repo: &RepoName,
    doc: &Doc,
) -> Result<Option<image::Config>, UiError> {
    let Some(config) = &doc.config else {
        return Ok(None);
    };
    let Ok(digest) = config.digest.parse() else {
        return Ok(None);
    };
    if config.size > MAX_CONFIG_BYTES {
        return Ok(None);
    }
    let mut body = match state.registry.get_blob(repo, &digest, None).await {
        Ok(b) => b,
        Err(crate::core::Error::BlobUnknown) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut bytes = Vec::new();
    while let Some(chunk) = body.stream.next().await {
        let chunk =
            chunk.map_err(|e| UiError::Internal(format!("reading config {digest}: {e}")))?;
        if (bytes.len() + chunk.len()) as u64 > MAX_CONFIG_BYTES {
            return Ok(None);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(image::parse_config(&bytes))
}

/// What pulling each child of an index transfers (its config and layers);
/// `None` for a child the repository lacks or that is no image manifest. An index's children are bounded by
/// the manifest size limit.
async fn image_sizes(
    state: &UiState,
    repo: &RepoName,
    children: &[image::Desc],
) -> Result<Vec<Option<u64>>, UiError> {
    let mut sizes = Vec::with_capacity(children.len());
    for child in children {
        let Ok(digest) = child.digest.parse::<Digest>() else {
            sizes.push(None);
            continue;
        };
        let size = match state
            .registry
            .get_manifest(repo, &Reference::Digest(digest), &[])
            .await
        {
            Ok(m) => image::parse_doc(&m.content, &m.media_type)
                .filter(|d| !d.is_index)
                .map(|d| d.compressed_size()),
            Err(crate::core::Error::ManifestUnknown | crate::core::Error::NameUnknown) => None,
            Err(e) => return Err(e.into()),
        };
        sizes.push(size);
    }
    Ok(sizes)
}

/// One manifest with what its page shows.
pub struct ImagePage {
    pub repo: RepoName,
    pub reference: Reference,
    pub digest: String,
    pub media_type: String,
    pub doc: Doc,
    pub config: Option<image::Config>,
    /// What pulling each child of an index transfers.
    pub child_sizes: Vec<Option<u64>>,
    pub tags: Vec<String>,
    pub referrers: Vec<image::Desc>,
}

pub async fn image(
    state: &UiState,
    viewer: &Viewer,
    repo: &RepoName,
    reference: &Reference,
) -> Result<ImagePage, UiError> {
    readable(state, viewer, repo).await?;
    let record = state.registry.get_manifest(repo, reference, &[]).await?;
    let doc = image::parse_doc(&record.content, &record.media_type).ok_or_else(|| {
        UiError::Internal(format!("stored manifest {} is not JSON", record.digest))
    })?;
    let config = read_config(state, repo, &doc).await?;
    let child_sizes = image_sizes(state, repo, &doc.children).await?;
    let tags = state.ui.browse.tags_of(repo, &record.digest).await?;
    let referrers = state.registry.referrers(repo, &record.digest, None).await?;
    let referrers = image::parse_doc(&referrers, crate::oci::media::OCI_INDEX)
        .map(|d| d.children)
        .unwrap_or_default();
    Ok(ImagePage {
        repo: repo.clone(),
        reference: reference.clone(),
        digest: record.digest.to_string(),
        media_type: record.media_type,
        doc,
        config,
        child_sizes,
        tags,
        referrers,
    })
}
