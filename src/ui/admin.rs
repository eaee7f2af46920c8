//! Registry administration pages: accounts, projects, garbage-collection
//! runs, the audit log. The management service decides who may do what
//! (system administrators).

use axum::extract::{Path as UrlPath, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::format::when;
use super::lifecycle;
use super::templates;
use super::view::layout;
use super::UiState;
use super::{now_ms, urlencode, UiError, Viewer};
use crate::auth::{ProjectView, UserUpdate, UserView};
use crate::metadata::{AuditFilter, GcRun};

/// Users on one page of the administration page; the projects listed
/// there are the first ones (the overview pages through them all).
const USERS_PER_PAGE: u32 = 100;
const PROJECTS_SHOWN: u32 = 100;

#[derive(Deserialize, Default)]
pub struct AdminQuery {
    #[serde(default)]
    users_after: String,
    /// What the garbage-collection form did (`requested`, `busy`), and the run.
    #[serde(default)]
    gc: Option<String>,
    #[serde(default)]
    run: Option<i64>,
}

/// The administration page's data: one page of users, the first projects.
pub struct AdminPage {
    pub users: Vec<UserView>,
    pub users_after: String,
    pub next_users: Option<String>,
    pub projects: Vec<ProjectView>,
    /// Whether there are more projects than those listed.
    pub more_projects: bool,
    /// The last garbage-collection runs, newest first.
    pub gc_runs: Vec<GcRun>,
    pub gc_notice: Option<String>,
}

pub async fn page(
    State(state): State<UiState>,
    viewer: Viewer,
    Query(q): Query<AdminQuery>,
) -> Result<Response, UiError> {
    let mut users = state
        .auth
        .accounts
        .users_page(&viewer.actor, &q.users_after, USERS_PER_PAGE + 1)
        .await?;
    let more_users = users.len() > USERS_PER_PAGE as usize;
    users.truncate(USERS_PER_PAGE as usize);
    let next_users = more_users
        .then(|| users.last().map(|u| u.name.clone()))
        .flatten();
    let mut projects = state
        .auth
        .accounts
        .projects_page(&viewer.actor, "", PROJECTS_SHOWN + 1)
        .await?;
    let more_projects = projects.len() > PROJECTS_SHOWN as usize;
    projects.truncate(PROJECTS_SHOWN as usize);
    let page = AdminPage {
        users,
        users_after: q.users_after,
        next_users,
        projects,
        more_projects,
        gc_runs: lifecycle::gc_runs(&state, &viewer).await?,
        gc_notice: lifecycle::gc_notice(q.gc.as_deref(), q.run),
    };
    Ok(templates::admin(&page, &viewer).into_response())
}

#[derive(Deserialize)]
pub struct NewUser {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    admin: Option<String>,
    #[serde(default)]
    public: Option<String>,
}

pub async fn create_user(
    State(state): State<UiState>,
    viewer: Viewer,
    Form(form): Form<NewUser>,
) -> Result<Response, UiError> {
    viewer.check_csrf(&state, &form.csrf)?;
    state
        .auth
        .accounts
        .create_user(
            &viewer.actor,
            form.name.trim(),
            &form.password,
            form.admin.is_some(),
        )
        .await?;
    Ok(Redirect::to("/ui/admin").into_response())
}

pub async fn create_project(
    State(state): State<UiState>,
    viewer: Viewer,
    Form(form): Form<NewUser>,
) -> Result<Response, UiError> {
    viewer.check_csrf(&state, &form.csrf)?;
    let name = form.name.trim();
    state
        .auth
        .accounts
        .create_project(&viewer.actor, name, form.public.is_some())
        .await?;
    Ok(Redirect::to(&format!("/ui/projects/{}", urlencode(name))).into_response())
}

#[derive(Deserialize)]
pub struct UserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    admin: Option<bool>,
    #[serde(default)]
    disabled: Option<bool>,
}

pub async fn update_user(
    State(state): State<UiState>,
    viewer: Viewer,
    UrlPath(name): UrlPath<String>,
    Form(form): Form<UserForm>,
) -> Result<Response, UiError> {
    viewer.check_csrf(&state, &form.csrf)?;
    let update = UserUpdate {
        password: form.password.filter(|p| !p.is_empty()),
        admin: form.admin,
        disabled: form.disabled,
    };
    state
        .auth
        .accounts
        .update_user(&viewer.actor, &name, &update)
        .await?;
    Ok(Redirect::to("/ui/admin").into_response())
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    repository: String,
}

fn some(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

pub async fn audit(
    State(state): State<UiState>,
    viewer: Viewer,
    Query(q): Query<AuditQuery>,
) -> Result<Response, UiError> {
    let filter = AuditFilter {
        actor: some(&q.actor),
        action: some(&q.action),
        repository: some(&q.repository),
        limit: 200,
        ..AuditFilter::default()
    };
    let events = state
        .auth
        .accounts
        .audit_log(&viewer.actor, &filter)
        .await?;
    let now = now_ms();
    let body = html! {
        h1 { "Audit log" }
        form.filters method="get" action="/ui/admin/audit" {
            label for="f-actor" { "Actor" } input #f-actor name="actor" value=(q.actor);
            label for="f-action" { "Action" } input #f-action name="action" value=(q.action) placeholder="push, pull, delete, login…";
            label for="f-repo" { "Repository" } input #f-repo name="repository" value=(q.repository);
            button type="submit" { "Filter" }
        }
        @if events.is_empty() { p.empty { "No events match." } } @else {
            table #audit {
                thead { tr { th { "When" } th { "Actor" } th { "Action" } th { "Repository" } th { "Reference" } th { "Detail" } th { "Source" } th { "Result" } } }
                tbody { @for e in &events { tr {
                    td { (when(Some(e.at), now)) }
                    td { (e.actor) }
                    td { (e.action) }
                    td { (e.repository.as_deref().unwrap_or("")) }
                    td { code.digest { (e.digest.as_deref().unwrap_or("")) } }
                    td { (e.detail.as_deref().unwrap_or("")) }
                    td { (e.source.as_deref().unwrap_or("")) }
                    td { (if e.success { "ok" } else { "failed" }) }
                } } }
            }
        }
    };
    Ok(layout("Audit log", Some(&viewer), body).into_response())
}
