//! Storage lifecycle in the web UI: a project's usage against its quotas
//! and its rules, the retention preview, repository deletion, and the
//! garbage-collection runs of the administration page.
//!
//! Who may do what is decided as in the JSON API (`api::lifecycle`), by the
//! same calls: a project's policy, usage and preview are for whoever may
//! see the project; deleting a repository is for the project's admins; GC
//! runs are for system administrators. Changes are audited the same way.

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::Markup;
use serde::Deserialize;

use super::templates;
use super::{urlencode, UiError, UiState, Viewer, Visitor};
use crate::core::{Error, RetentionPreview};
use crate::metadata::{GcRun, ProjectPolicy, QuotaUsage, TagOrder};
use crate::oci::RepoName;

/// GC runs listed on the administration page.
const GC_RUNS_SHOWN: u32 = 20;

/// A project's policy and what it uses, as the quotas count it.
pub struct Rules {
    pub policy: ProjectPolicy,
    pub usage: QuotaUsage,
}

/// The rules of a project the caller has already shown the viewer may see.
pub async fn rules(state: &UiState, project: &str) -> Result<Rules, UiError> {
    Ok(Rules {
        policy: state.registry.project_policy(project).await?,
        usage: state.registry.project_usage(project).await?,
    })
}

/// What the project's own retention rules would delete now.
pub struct PreviewPage {
    pub project: String,
    pub policy: ProjectPolicy,
    pub preview: RetentionPreview,
}

/// `GET /ui/projects/{project}/retention`.
pub async fn retention(
    State(state): State<UiState>,
    Visitor(viewer): Visitor,
    UrlPath(project): UrlPath<String>,
) -> Result<Response, UiError> {
    let page = preview(&state, &viewer, &project).await;
    let page = page.map_err(|e| viewer.or_login(e))?;
    Ok(templates::retention_preview(&page, &viewer).into_response())
}

async fn preview(state: &UiState, viewer: &Viewer, project: &str) -> Result<PreviewPage, UiError> {
    let project = state
        .auth
        .accounts
        .get_project(&viewer.actor, project)
        .await?;
    let policy = state.registry.project_policy(&project.name).await?;
    let preview = state
        .registry
        .preview_retention(&project.name, &policy)
        .await?;
    Ok(PreviewPage {
        project: project.name,
        policy,
        preview,
    })
}

/// Refused unless `viewer` may delete `repo` (manages its project), as
/// the API refuses: strangers of a private project learn nothing.
async fn may_delete(state: &UiState, viewer: &Viewer, repo: &RepoName) -> Result<(), UiError> {
    let accounts = &state.auth.accounts;
    Ok(accounts
        .authorize_project_admin(&viewer.actor, repo.project())
        .await?)
}

/// Whether `viewer` may delete `repo`, for its page's button.
pub async fn may_delete_repository(state: &UiState, viewer: &Viewer, repo: &RepoName) -> bool {
    may_delete(state, viewer, repo).await.is_ok()
}

/// The confirmation page of a repository's deletion, with the refusal of
/// a deletion that was tried, if any.
pub struct DeleteRepositoryPage {
    pub repo: RepoName,
    pub tags: u64,
    pub refused: Option<String>,
}

/// The page asking to confirm a repository's deletion, for its project's
/// admins (others are refused as the API refuses them).
pub async fn confirm_delete(
    state: &UiState,
    viewer: &Viewer,
    repo: &RepoName,
) -> Result<Markup, UiError> {
    let page = deletion(state, viewer, repo, None).await?;
    Ok(templates::confirm_delete_repository(&page, viewer))
}

async fn deletion(
    state: &UiState,
    viewer: &Viewer,
    repo: &RepoName,
    refused: Option<String>,
) -> Result<DeleteRepositoryPage, UiError> {
    may_delete(state, viewer, repo).await?;
    let tags = state
        .ui
        .browse
        .tags_page(repo, TagOrder::Name, 0, 1)
        .await?
        .ok_or_else(|| UiError::NotFound(format!("repository {repo} not found")))?;
    Ok(DeleteRepositoryPage {
        repo: repo.clone(),
        tags: tags.total,
        refused,
    })
}

/// Deletes a repository (the form's CSRF token is checked by the caller)
/// and goes back to its project with a notice; a project rule's refusal
/// (an immutable tag) is shown on the confirmation page.
pub async fn delete_repository(
    state: &UiState,
    viewer: &Viewer,
    repo: &RepoName,
) -> Result<Response, UiError> {
    may_delete(state, viewer, repo).await?;
    match state.registry.delete_repository(repo).await {
        Ok(()) => {}
        Err(Error::Denied(why)) => {
            let page = deletion(state, viewer, repo, Some(why)).await?;
            let page = templates::confirm_delete_repository(&page, viewer);
            return Ok((StatusCode::FORBIDDEN, page).into_response());
        }
        Err(e) => return Err(e.into()),
    }
    state
        .auth
        .accounts
        .audit_lifecycle(&viewer.actor, "repository.delete", repo.to_string());
    let back = format!(
        "/ui/projects/{}?deleted={}",
        urlencode(repo.project()),
        urlencode(repo.as_str())
    );
    Ok(Redirect::to(&back).into_response())
}

/// The last garbage-collection runs, for system administrators.
pub async fn gc_runs(state: &UiState, viewer: &Viewer) -> Result<Vec<GcRun>, UiError> {
    state.auth.accounts.authorize_system_admin(&viewer.actor)?;
    Ok(state.registry.gc_runs(None, GC_RUNS_SHOWN).await?)
}

#[derive(Deserialize)]
pub struct GcForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    dry_run: Option<String>,
}

/// `POST /ui/admin/gc`: requests a run (or a dry run) and goes back to the
/// administration page, which says whether it was requested or another
/// run is in the way.
pub async fn request_gc(
    State(state): State<UiState>,
    viewer: Viewer,
    Form(form): Form<GcForm>,
) -> Result<Response, UiError> {
    viewer.check_csrf(&state, &form.csrf)?;
    state.auth.accounts.authorize_system_admin(&viewer.actor)?;
    let dry_run = form.dry_run.is_some();
    let back = match state.registry.request_gc(dry_run, viewer.name()).await? {
        Ok(run) => {
            let detail = format!("run={} dry_run={dry_run}", run.id);
            state
                .auth
                .accounts
                .audit_lifecycle(&viewer.actor, "gc.request", detail);
            format!("/ui/admin?gc=requested&run={}#gc", run.id)
        }
        Err(busy) => format!("/ui/admin?gc=busy&run={}#gc", busy.0),
    };
    Ok(Redirect::to(&back).into_response())
}

/// The notice the administration page shows after a GC form.
pub fn gc_notice(outcome: Option<&str>, run: Option<i64>) -> Option<String> {
    let run = run?;
    match outcome? {
        "requested" => Some(format!(
            "Garbage collection run {run} was requested; it starts within seconds."
        )),
        "busy" => Some(format!(
            "Garbage collection run {run} is already requested or running; \
             a new one can be requested when it has finished."
        )),
        _ => None,
    }
}
