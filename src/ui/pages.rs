//! Page loaders: each gathers what one page shows, through the auth
//! service (who may see what), the registry (manifests, blobs, deletion)
//! and the browse queries, then renders it.

use std::net::IpAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use futures_util::StreamExt as _;
use maud::{html, Markup};

use super::format::{short_digest, size_cell, when};
use super::image::{self, Doc};
use super::view::{confirm_form, copyable, crumbs, layout};
use super::UiState;
use super::{now_ms, urlencode, ProjectForm, TagQuery, UiError, Viewer};
use crate::auth::{AuthError, Principal};
use crate::metadata::{Action, RepoSummary, Role, TagOrder};
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
    match state.auth.login(user, password, source).await {
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
    Ok(state.auth.actions_on(viewer.principal(), repo).await?)
}

fn repo_href(repo: &str) -> String {
    format!("/ui/r/{}", urlencode(repo))
}

fn image_href(repo: &str, reference: &str) -> String {
    format!("/ui/r/{}/-/image/{}", urlencode(repo), urlencode(reference))
}

/// "First page" and "Next" links of a page listed by name after a cursor;
/// `next` is the cursor of the following page, if there is one.
fn cursor_pager(base: &str, after: &str, next: Option<&str>) -> Markup {
    html! {
        @if !after.is_empty() || next.is_some() {
            nav.pager aria-label="Pages" {
                @if !after.is_empty() { a href=(base) { "← First page" } }
                @if let Some(next) = next { a rel="next" href={ (base) "?after=" (urlencode(next)) } { "Next →" } }
            }
        }
    }
}

pub async fn overview(state: &UiState, viewer: &Viewer, after: &str) -> Result<Markup, UiError> {
    let mut projects = state
        .auth
        .projects_page(&viewer.actor, after, PROJECTS_PER_PAGE + 1)
        .await?;
    let more = projects.len() > PROJECTS_PER_PAGE as usize;
    projects.truncate(PROJECTS_PER_PAGE as usize);
    let next = more
        .then(|| projects.last().map(|p| p.name.as_str()))
        .flatten();
    let names: Vec<String> = projects.iter().map(|p| p.name.clone()).collect();
    let usage = state.ui.browse.project_usage(&names).await?;
    let now = now_ms();
    let body = html! {
        h1 { "Projects" }
        @if projects.is_empty() && after.is_empty() {
            p.empty { "No projects you can see yet. Push an image (" code { "docker push " (viewer.host) "/PROJECT/IMAGE:TAG" } ") or ask an administrator to add you to a project." }
        } @else {
            label.filter { "Filter this page " input type="search" data-filter="projects" placeholder="project name"; }
            table #projects {
                thead { tr { th { "Project" } th { "Visibility" } th { "Your role" } th.num { "Repositories" } th.num { "Storage" } th { "Last push" } } }
                tbody {
                    @for p in &projects {
                        @let u = usage.iter().find(|u| u.project == p.name);
                        tr data-name=(p.name) {
                            td { a href={ "/ui/projects/" (urlencode(&p.name)) } { (p.name) } }
                            td { (if p.public { "public" } else { "private" }) }
                            td { (p.role.map_or("—", |r| r.as_str())) }
                            td.num { (u.map_or(0, |u| u.repositories)) }
                            td.num { (size_cell(u.map_or(0, |u| u.storage_bytes))) }
                            td { (when(u.and_then(|u| u.last_push), now)) }
                        }
                    }
                }
            }
            (cursor_pager("/ui", after, next))
        }
    };
    Ok(layout("Projects", Some(viewer), body))
}

fn repo_table(repos: &[RepoSummary], id: &str) -> Markup {
    let now = now_ms();
    html! {
        table id=(id) {
            thead { tr { th { "Repository" } th.num { "Tags" } th.num { "Size" } th { "Last push" } } }
            tbody {
                @for r in repos {
                    tr data-name=(r.name) {
                        td { a href=(repo_href(&r.name)) { (r.name) } }
                        td.num { (r.tags) }
                        td.num { (size_cell(r.storage_bytes)) }
                        td { (when(r.last_push, now)) }
                    }
                }
            }
        }
    }
}

pub async fn search(state: &UiState, viewer: &Viewer, q: &str) -> Result<Markup, UiError> {
    let mut found = Vec::new();
    if !q.is_empty() {
        // Filtered in the query: 100 matches the viewer may read.
        let visible = state.auth.visible_to(viewer.principal());
        found = state
            .ui
            .browse
            .search_repositories(q, &visible, 100)
            .await?;
    }
    let body = html! {
        h1 { "Search" }
        form role="search" action="/ui/search" method="get" {
            label for="search-q" { "Repository name contains" }
            input #search-q type="search" name="q" value=(q);
            button type="submit" { "Search" }
        }
        @if q.is_empty() {
            p.empty { "Type part of a repository name." }
        } @else if found.is_empty() {
            p.empty { "No repository you can read matches “" (q) "”." }
        } @else {
            (repo_table(&found, "results"))
        }
    };
    Ok(layout("Search", Some(viewer), body))
}

pub async fn project(
    state: &UiState,
    viewer: &Viewer,
    name: &str,
    after: &str,
    secret: Option<(String, String)>,
) -> Result<Markup, UiError> {
    let project = state.auth.get_project(&viewer.actor, name).await?;
    let mut repos = state
        .ui
        .browse
        .repositories_in(name, after, REPOS_PER_PAGE + 1)
        .await?;
    let more = repos.len() > REPOS_PER_PAGE as usize;
    repos.truncate(REPOS_PER_PAGE as usize);
    let next = more
        .then(|| repos.last().map(|r| r.name.as_str()))
        .flatten();
    let members = state.auth.members(&viewer.actor, name).await.ok();
    let robots = state.auth.list_robots(&viewer.actor, name).await.ok();
    let csrf = &viewer.csrf;
    let base = format!("/ui/projects/{}", urlencode(name));
    let now = now_ms();
    let body = html! {
        (crumbs(&[(name, None)]))
        h1 { (name) " " span.badge { (if project.public { "public" } else { "private" }) } }
        @if let Some((robot, secret)) = &secret {
            section.alert role="status" {
                p { "Robot " strong { (robot) } " was created. Its secret is shown only now:" }
                p { (copyable(secret, "robot secret")) }
            }
        }
        h2 { "Repositories" }
        @if repos.is_empty() && after.is_empty() {
            p.empty { "No repositories yet: push with " code { "docker push " (viewer.host) "/" (name) "/IMAGE:TAG" } }
        } @else {
            label.filter { "Filter this page " input type="search" data-filter="repos" placeholder="repository name"; }
            (repo_table(&repos, "repos"))
            (cursor_pager(&base, after, next))
        }
        @if let Some(members) = &members {
            h2 { "Members" }
            @let manage = robots.is_some();
            @if members.is_empty() { p.empty { "No members." } } @else {
                table #members {
                    thead { tr { th { "User" } th { "Role" } @if manage { th { span.visually-hidden { "Remove" } } } } }
                    tbody { @for m in members { tr data-name=(m.user) {
                        td { (m.user) }
                        @if manage {
                            td { form.inline method="post" action={ (base) "/members" } {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="user" value=(m.user);
                                label.visually-hidden for={ "role-" (m.user) } { "Role of " (m.user) }
                                (role_select(&format!("role-{}", m.user), Some(m.role)))
                                " " button type="submit" { "Change" }
                            } }
                            td { (confirm_form(&format!("{base}/remove-member"), csrf, &format!("Remove {} from {name}?", m.user), "Remove",
                                html! { input type="hidden" name="user" value=(m.user); })) }
                        } @else {
                            td { (m.role.as_str()) }
                        }
                    } } }
                }
            }
            @if manage {
                form.card #add-member method="post" action={ (base) "/members" } {
                    h3 { "Add a member" }
                    input type="hidden" name="csrf" value=(csrf);
                    label for="member-user" { "User name" }
                    input #member-user name="user" required autocomplete="off";
                    label for="member-role" { "Role" }
                    (role_select("member-role", None))
                    button type="submit" { "Add member" }
                }
            }
        }
        @if let Some(robots) = &robots {
            h2 { "Robot accounts" }
            @if robots.is_empty() { p.empty { "No robot accounts." } } @else {
                table #robots {
                    thead { tr { th { "Name" } th { "Actions" } th { "Expires" } th { "Created by" } th { span.visually-hidden { "Revoke" } } } }
                    tbody { @for r in robots { tr data-name=(r.name) {
                        td { code { (r.name) } }
                        td { (r.actions.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")) }
                        td { @if r.expires_at.is_some() { (when(r.expires_at, now)) } @else { "never" } }
                        td { (r.created_by) }
                        td { (confirm_form(&format!("{base}/revoke-robot"), csrf, &format!("Revoke {}? Clients using it stop working.", r.name), "Revoke",
                            html! { input type="hidden" name="robot" value=(r.name); })) }
                    } } }
                }
            }
            form.card method="post" action={ (base) "/robots" } {
                h3 { "New robot account" }
                input type="hidden" name="csrf" value=(csrf);
                label for="robot-name" { "Name" }
                input #robot-name name="name" required pattern="[a-z0-9]+([._-][a-z0-9]+)*";
                fieldset { legend { "May" }
                    label { input type="checkbox" name="pull" value="1" checked; " pull" }
                    label { input type="checkbox" name="push" value="1"; " push" }
                    label { input type="checkbox" name="delete" value="1"; " delete" }
                }
                label for="robot-expires" { "Expires after (days; empty: never)" }
                input #robot-expires type="number" name="expires_days" min="1" max="36500" inputmode="numeric";
                button type="submit" { "Create robot" }
            }
            h2 { "Settings" }
            form.inline method="post" action={ (base) "/visibility" } {
                input type="hidden" name="csrf" value=(csrf);
                @if project.public {
                    button type="submit" { "Make private" }
                } @else {
                    input type="hidden" name="public" value="1";
                    button type="submit" { "Make public" }
                }
            }
            " "
            (confirm_form(&format!("{base}/delete"), csrf, &format!("Delete project {name} with its repositories, members and robots?"), "Delete project", html! {}))
        }
    };
    Ok(layout(name, Some(viewer), body))
}

/// A `<select name="role">` with every role, `selected` chosen.
fn role_select(id: &str, selected: Option<Role>) -> Markup {
    html! {
        select id=(id) name="role" {
            @for r in Role::ALL {
                option value=(r.as_str()) selected[selected == Some(r) || (selected.is_none() && r == Role::Developer)] { (r.as_str()) }
            }
        }
    }
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
                .set_project_public(&viewer.actor, name, form.public.is_some())
                .await?
        }
        "delete" => {
            // The confirmation names the repositories: they go too.
            state.auth.delete_project(&viewer.actor, name, true).await?;
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
                .set_member(&viewer.actor, name, form.user.trim(), role)
                .await?
        }
        "remove-member" => {
            state
                .auth
                .remove_member(&viewer.actor, name, &form.user)
                .await?
        }
        "revoke-robot" => {
            state
                .auth
                .delete_robot(&viewer.actor, name, &form.robot)
                .await?
        }
        "robots" => {
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
                .create_robot(&viewer.actor, name, &form.name, actions, expires_at)
                .await?;
            let page = project(
                state,
                viewer,
                name,
                "",
                Some((created.item.name, created.secret)),
            )
            .await?;
            return Ok(page.into_response());
        }
        _ => return Err(UiError::NotFound("no such form".into())),
    }
    Ok(Redirect::to(&back).into_response())
}

/// What a `/ui/r/...` path names.
pub enum RepoPath {
    Repository(RepoName),
    Image(RepoName, Reference),
    DeleteTag(RepoName, Tag),
}

impl RepoPath {
    /// `NAME`, `NAME/-/image/REF` or `NAME/-/tags/TAG/delete`: `-` is never
    /// a repository path component, so any depth of name works.
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

pub async fn repository(
    state: &UiState,
    viewer: &Viewer,
    repo: &RepoName,
    q: &TagQuery,
) -> Result<Markup, UiError> {
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
    let pages = tags.total.div_ceil(u64::from(TAGS_PER_PAGE)).max(1);
    let mut distinct: Vec<&crate::metadata::TagRow> = Vec::new();
    for t in &tags.tags {
        if !distinct.iter().any(|d| d.digest == t.digest) {
            distinct.push(t);
        }
    }
    futures_util::future::join_all(distinct.iter().map(|t| created_of(state, repo, t))).await;
    let created: Vec<Option<String>> = tags
        .tags
        .iter()
        .map(|t| state.ui.created.get(&t.digest.to_string()).flatten())
        .collect();
    let can_delete = actions.contains(&Action::Delete);
    let name = repo.as_str();
    let sort = if order == TagOrder::Pushed {
        "pushed"
    } else {
        "name"
    };
    let now = now_ms();
    let body = html! {
        (crumbs(&[(repo.project(), Some(format!("/ui/projects/{}", urlencode(repo.project())))), (name, None)]))
        h1 { (name) }
        @if let Some(deleted) = &q.deleted { p.alert role="status" { "Tag " strong { (deleted) } " was deleted." } }
        p { (tags.total) " tags · sort by "
            @if order == TagOrder::Name { strong { "name" } } @else { a href={ (repo_href(name)) "?sort=name" } { "name" } }
            " or "
            @if order == TagOrder::Pushed { strong { "push time" } } @else { a href={ (repo_href(name)) "?sort=pushed" } { "push time" } }
        }
        @if tags.total == 0 {
            p.empty { "No tags yet: push with " code { "docker push " (viewer.host) "/" (name) ":TAG" } }
        } @else {
            label.filter { "Filter this page " input type="search" data-filter="tags" placeholder="tag"; }
            table #tags {
                thead { tr { th { "Tag" } th { "Digest" } th.num { "Size" } th { "Platforms" } th { "Created" } th { "Pushed" } th { "Pull" } @if can_delete { th { span.visually-hidden { "Delete" } } } } }
                tbody {
                    @for (t, created) in tags.tags.iter().zip(&created) {
                        @let pull = format!("docker pull {}/{}:{}", viewer.host, name, t.name);
                        tr data-name=(t.name) {
                            td { a.tag href=(image_href(name, &t.name)) { (t.name) } }
                            td { code.digest title=(t.digest) data-digest=(t.digest) { (short_digest(&t.digest.to_string())) } }
                            td.num { (size_cell(t.size_bytes)) }
                            td { (t.index.as_deref().map(image::index_platforms).unwrap_or_default().join(", ")) }
                            td { @match created {
                                Some(c) => time datetime=(c) title=(c) { (c.get(..10).unwrap_or(c)) },
                                None => span.muted { "—" },
                            } }
                            td { (when(Some(t.pushed_at), now)) }
                            td { (copyable(&pull, "pull command")) }
                            @if can_delete {
                                td { (confirm_form(&format!("{}/-/tags/{}/delete", repo_href(name), urlencode(&t.name)), &viewer.csrf,
                                    &format!("Delete tag {}? The image stays reachable by digest.", t.name), "Delete", html! {})) }
                            }
                        }
                    }
                }
            }
            @if pages > 1 {
                nav.pager aria-label="Pages" {
                    @if page_no > 1 { a rel="prev" href={ (repo_href(name)) "?sort=" (sort) "&page=" (page_no - 1) } { "← Previous" } }
                    span { "Page " (page_no) " of " (pages) }
                    @if page_no < pages { a rel="next" href={ (repo_href(name)) "?sort=" (sort) "&page=" (page_no + 1) } { "Next →" } }
                }
            }
        }
    };
    Ok(layout(name, Some(viewer), body))
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
async fn created_of(
    state: &UiState,
    repo: &RepoName,
    row: &crate::metadata::TagRow,
) -> Option<String> {
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

fn pairs_table(rows: &[(String, String)]) -> Markup {
    html! { table.kv { tbody { @for (k, v) in rows { tr { th scope="row" { (k) } td { code { (v) } } } } } } }
}

pub async fn image(
    state: &UiState,
    viewer: &Viewer,
    repo: &RepoName,
    reference: &Reference,
) -> Result<Markup, UiError> {
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
    let name = repo.as_str();
    let digest = record.digest.to_string();
    let shown = match reference {
        Reference::Tag(t) => format!("{name}:{t}"),
        Reference::Digest(_) => format!("{name}@{}", short_digest(&digest)),
    };
    let pull = match reference {
        Reference::Tag(t) => format!("docker pull {}/{name}:{t}", viewer.host),
        Reference::Digest(d) => format!("docker pull {}/{name}@{d}", viewer.host),
    };
    let body = html! {
        (crumbs(&[(repo.project(), Some(format!("/ui/projects/{}", urlencode(repo.project())))), (name, Some(repo_href(name))), (&shown[name.len() + 1..], None)]))
        h1 { (shown) }
        dl.facts {
            dt { "Digest" } dd { (copyable(&digest, "digest")) }
            dt { "Media type" } dd { code { (record.media_type) } }
            @if let Some(t) = &doc.artifact_type { dt { "Artifact type" } dd { code { (t) } } }
            @if !doc.is_index { dt { "Compressed size" } dd #compressed-size { (size_cell(doc.compressed_size())) } }
            dt { "Tags" } dd { @if tags.is_empty() { "none" } @for t in &tags { a.tag href=(image_href(name, t)) { (t) } " " } }
            dt { "Pull" } dd { (copyable(&pull, "pull command")) }
            @if let Some(c) = &config {
                @if let Some(p) = &c.platform { dt { "Platform" } dd { (p) } }
                @if let Some(created) = &c.created { dt { "Created" } dd { time datetime=(created) { (created) } } }
            }
            @if let Some(s) = &doc.subject { dt { "Subject" } dd { a href=(image_href(name, &s.digest)) { code.digest { (s.digest) } } } }
        }
        @if doc.is_index {
            h2 { "Platforms" }
            table #children {
                thead { tr { th { "Platform" } th { "Digest" } th.num { "Size" } th { "Media type" } } }
                tbody { @for (c, size) in doc.children.iter().zip(&child_sizes) { tr {
                    td { (c.platform.as_deref().unwrap_or("—")) }
                    td { a href=(image_href(name, &c.digest)) { code title=(c.digest) { (short_digest(&c.digest)) } } }
                    td.num { @match size { Some(s) => (size_cell(*s)), None => "—" } }
                    td { code { (c.media_type) } }
                } } }
            }
        } @else {
            h2 { "Layers" }
            @if doc.layers.is_empty() { p.empty { "No layers." } } @else {
                table #layers {
                    thead { tr { th.num { "#" } th { "Digest" } th.num { "Size" } th { "Media type" } } }
                    tbody { @for (i, l) in doc.layers.iter().enumerate() { tr {
                        td.num { (i + 1) }
                        td { code.digest title=(l.digest) data-digest=(l.digest) { (short_digest(&l.digest)) } }
                        td.num { (size_cell(l.size)) }
                        td { code { (l.media_type) } }
                    } } }
                }
            }
            @if let Some(c) = &doc.config {
                p.muted { "Config " code title=(c.digest) { (short_digest(&c.digest)) } " (" (size_cell(c.size)) ", " code { (c.media_type) } ")" }
            }
        }
        @if let Some(c) = &config {
            h2 { "Configuration" }
            dl.facts #config {
                dt { "Entrypoint" } dd { @if c.entrypoint.is_empty() { "—" } @else { code { (c.entrypoint.join(" ")) } } }
                dt { "Command" } dd { @if c.cmd.is_empty() { "—" } @else { code { (c.cmd.join(" ")) } } }
                dt { "User" } dd { (c.user.as_deref().unwrap_or("—")) }
                dt { "Working directory" } dd { (c.working_dir.as_deref().unwrap_or("—")) }
                dt { "Exposed ports" } dd { @if c.exposed_ports.is_empty() { "—" } @else { (c.exposed_ports.join(", ")) } }
            }
            @if !c.env.is_empty() { h3 { "Environment" } ul.env { @for e in &c.env { li { code { (e) } } } } }
            @if !c.labels.is_empty() { h3 { "Labels" } (pairs_table(&c.labels)) }
            @if !c.history.is_empty() {
                h2 { "History" }
                ol.history { @for h in &c.history { li {
                    code { (h.created_by) }
                    @if h.empty_layer { " " span.muted { "(no layer)" } }
                    @if let Some(comment) = &h.comment { " " span.muted { (comment) } }
                } } }
            }
        }
        @if !doc.annotations.is_empty() { h2 { "Annotations" } (pairs_table(&doc.annotations)) }
        h2 { "Referrers" }
        @if referrers.is_empty() { p.empty { "No signatures, SBOMs or other artifacts refer to this manifest." } } @else {
            table #referrers {
                thead { tr { th { "Artifact type" } th { "Digest" } th.num { "Size" } } }
                tbody { @for r in &referrers { tr {
                    td { code { (r.artifact_type.as_deref().unwrap_or(&r.media_type)) } }
                    td { a href=(image_href(name, &r.digest)) { code title=(r.digest) { (short_digest(&r.digest)) } } }
                    td.num { (size_cell(r.size)) }
                } } }
            }
        }
    };
    Ok(layout(&shown, Some(viewer), body))
}
