//! Registry administration pages: accounts, projects, the audit log. The
//! management service decides who may do what (system administrators).

use axum::extract::{Path as UrlPath, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::format::when;
use super::view::layout;
use super::UiState;
use super::{now_ms, urlencode, UiError, Viewer};
use crate::auth::manage::UserUpdate;
use crate::metadata::AuditFilter;

/// Users on one page of the administration page; the projects listed
/// there are the first ones (the overview pages through them all).
const USERS_PER_PAGE: u32 = 100;
const PROJECTS_SHOWN: u32 = 100;

#[derive(Deserialize, Default)]
pub struct AdminQuery {
    #[serde(default)]
    users_after: String,
}

pub async fn page(
    State(state): State<UiState>,
    viewer: Viewer,
    Query(q): Query<AdminQuery>,
) -> Result<Response, UiError> {
    let mut users = state
        .auth
        .users_page(&viewer.actor, &q.users_after, USERS_PER_PAGE + 1)
        .await?;
    let more_users = users.len() > USERS_PER_PAGE as usize;
    users.truncate(USERS_PER_PAGE as usize);
    let next_users = more_users
        .then(|| users.last().map(|u| u.name.clone()))
        .flatten();
    let mut projects = state
        .auth
        .projects_page(&viewer.actor, "", PROJECTS_SHOWN + 1)
        .await?;
    let more_projects = projects.len() > PROJECTS_SHOWN as usize;
    projects.truncate(PROJECTS_SHOWN as usize);
    let now = now_ms();
    let csrf = &viewer.csrf;
    let body = html! {
        h1 { "Administration" }
        p { a href="/ui/admin/audit" { "Audit log" } }
        h2 { "Users" }
        table #users {
            thead { tr { th { "User" } th { "Administrator" } th { "Status" } th { "Created" } th { "Actions" } } }
            tbody { @for u in &users {
                @let action = format!("/ui/admin/users/{}", urlencode(&u.name));
                tr {
                    td { (u.name) }
                    td { (if u.admin { "yes" } else { "no" }) }
                    td { (if u.disabled { "disabled" } else { "active" }) }
                    td { (when(Some(u.created_at), now)) }
                    td {
                        form.inline method="post" action=(action) {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="disabled" value=(!u.disabled);
                            button type="submit" { (if u.disabled { "Enable" } else { "Disable" }) }
                        }
                        form.inline method="post" action=(action) {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="admin" value=(!u.admin);
                            button type="submit" { (if u.admin { "Revoke admin" } else { "Make admin" }) }
                        }
                        form.inline method="post" action=(action) {
                            input type="hidden" name="csrf" value=(csrf);
                            label.visually-hidden for={ "pw-" (u.name) } { "New password for " (u.name) }
                            input id={ "pw-" (u.name) } type="password" name="password" minlength="8" placeholder="new password" autocomplete="new-password" required;
                            button type="submit" { "Reset password" }
                        }
                    }
                }
            } }
        }
        @if !q.users_after.is_empty() || next_users.is_some() {
            nav.pager aria-label="Pages of users" {
                @if !q.users_after.is_empty() { a href="/ui/admin" { "← First users" } }
                @if let Some(next) = &next_users { a rel="next" href={ "/ui/admin?users_after=" (urlencode(next)) } { "Next users →" } }
            }
        }
        form.card method="post" action="/ui/admin/users" {
            h3 { "New user" }
            input type="hidden" name="csrf" value=(csrf);
            label for="new-user" { "Name" } input #new-user name="name" required;
            label for="new-password" { "Password (8 characters or more)" } input #new-password type="password" name="password" minlength="8" autocomplete="new-password" required;
            label { input type="checkbox" name="admin" value="true"; " administrator" }
            button type="submit" { "Create user" }
        }
        h2 { "Projects" }
        ul { @for p in &projects { li { a href={ "/ui/projects/" (urlencode(&p.name)) } { (p.name) } " (" (if p.public { "public" } else { "private" }) ")" } } }
        @if more_projects { p { "The first " (PROJECTS_SHOWN) " projects; " a href="/ui" { "the overview" } " lists them all." } }
        form.card method="post" action="/ui/admin/projects" {
            h3 { "New project" }
            input type="hidden" name="csrf" value=(csrf);
            label for="new-project" { "Name" } input #new-project name="name" required;
            label { input type="checkbox" name="public" value="true"; " public (anyone may pull)" }
            button type="submit" { "Create project" }
        }
    };
    Ok(layout("Administration", Some(&viewer), body).into_response())
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
    let events = state.auth.audit_log(&viewer.actor, &filter).await?;
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
