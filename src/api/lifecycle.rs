//! `/api/v1` storage lifecycle: garbage-collection runs, repository
//! deletion, project policies (quotas, tag immutability, untagged
//! manifests, retention) with usage and a retention preview. Who may do
//! what is decided by `auth::Accounts`; the work is the registry's.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::ApiError;
use super::manage::{done, json, ApiResult, JsonBody};
use super::ApiState;
use crate::auth::Actor;
use crate::metadata::{GcRun, GcStats, ProjectPolicy, QuotaUsage, Retention};
use crate::oci::{ErrorCode, RepoName};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/gc", post(request_gc))
        .route("/api/v1/gc/runs", get(list_runs))
        .route("/api/v1/gc/runs/{id}", get(get_run))
        .route("/api/v1/scrub", post(request_scrub))
        .route("/api/v1/scrub/runs", get(list_scrubs))
        .route("/api/v1/scrub/runs/{id}", get(get_scrub))
        .route("/api/v1/repositories/{*name}", delete(delete_repository))
        .route(
            "/api/v1/projects/{name}/policy",
            get(get_policy).put(set_policy),
        )
        .route(
            "/api/v1/projects/{name}/retention/preview",
            post(preview_retention),
        )
}

/// A run as the API shows it: its counts at the top level.
#[derive(Serialize)]
pub struct RunView {
    id: i64,
    state: &'static str,
    dry_run: bool,
    requested_by: String,
    requested_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    duration_ms: Option<i64>,
    phase: Option<String>,
    error: Option<String>,
    #[serde(flatten)]
    stats: GcStats,
}

impl From<GcRun> for RunView {
    fn from(r: GcRun) -> RunView {
        RunView {
            id: r.id,
            state: r.state.as_str(),
            dry_run: r.dry_run,
            duration_ms: r.started_at.zip(r.finished_at).map(|(s, f)| f - s),
            requested_by: r.requested_by,
            requested_at: r.requested_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            phase: r.phase,
            error: r.error,
            stats: r.stats,
        }
    }
}

fn query<T: serde::de::DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    serde_urlencoded::from_str(uri.query().unwrap_or(""))
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("bad query: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GcQuery {
    #[serde(default)]
    dry_run: bool,
}

async fn request_gc(State(s): State<ApiState>, uri: Uri, a: Actor) -> ApiResult {
    let q: GcQuery = query(&uri)?;
    s.auth.accounts.authorize_system_admin(&a)?;
    match s.registry.request_gc(q.dry_run, a.principal.name()).await? {
        Ok(run) => {
            let detail = format!("run={} dry_run={}", run.id, q.dry_run);
            s.auth.accounts.audit_lifecycle(&a, "gc.request", detail);
            Ok(json(StatusCode::ACCEPTED, &RunView::from(run)))
        }
        Err(busy) => Err(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "garbage collection run {} is already requested or running",
                busy.0
            ),
        )
        .with_detail(json!({ "run": busy.0 }))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    before: Option<i64>,
    limit: Option<u32>,
}

async fn list_runs(State(s): State<ApiState>, uri: Uri, a: Actor) -> ApiResult {
    let q: RunsQuery = query(&uri)?;
    s.auth.accounts.authorize_system_admin(&a)?;
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let runs = s.registry.gc_runs(q.before, limit).await?;
    let view: Vec<RunView> = runs.into_iter().map(RunView::from).collect();
    Ok(json(StatusCode::OK, &view))
}

async fn get_run(State(s): State<ApiState>, Path(id): Path<String>, a: Actor) -> ApiResult {
    s.auth.accounts.authorize_system_admin(&a)?;
    let unknown = || {
        ApiError::new(
            ErrorCode::NotFound,
            format!("no garbage collection run {id}"),
        )
    };
    let number: i64 = id.parse().map_err(|_| unknown())?;
    match s.registry.gc_run(number).await? {
        Some(run) => Ok(json(StatusCode::OK, &RunView::from(run))),
        None => Err(unknown()),
    }
}

async fn request_scrub(State(s): State<ApiState>, a: Actor) -> ApiResult {
    s.auth.accounts.authorize_system_admin(&a)?;
    match s.registry.request_scrub(a.principal.name()).await? {
        Ok(run) => {
            s.auth
                .accounts
                .audit_lifecycle(&a, "scrub.request", format!("run={}", run.id));
            Ok(json(StatusCode::ACCEPTED, &run))
        }
        Err(busy) => Err(ApiError::new(
            ErrorCode::Conflict,
            format!("scrub run {busy} is already requested or running"),
        )
        .with_detail(json!({ "run": busy }))),
    }
}

async fn list_scrubs(State(s): State<ApiState>, uri: Uri, a: Actor) -> ApiResult {
    let q: RunsQuery = query(&uri)?;
    s.auth.accounts.authorize_system_admin(&a)?;
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    Ok(json(
        StatusCode::OK,
        &s.registry.scrub_runs(q.before, limit).await?,
    ))
}

async fn get_scrub(State(s): State<ApiState>, Path(id): Path<String>, a: Actor) -> ApiResult {
    s.auth.accounts.authorize_system_admin(&a)?;
    let unknown = || ApiError::new(ErrorCode::NotFound, format!("no scrub run {id}"));
    let number: i64 = id.parse().map_err(|_| unknown())?;
    match s.registry.scrub_run(number).await? {
        Some(run) => Ok(json(StatusCode::OK, &run)),
        None => Err(unknown()),
    }
}

async fn delete_repository(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    a: Actor,
) -> ApiResult {
    let repo: RepoName = name
        .parse()
        .map_err(|e| ApiError::new(ErrorCode::NameInvalid, format!("{name:?}: {e}")))?;
    s.auth
        .accounts
        .authorize_project_admin(&a, repo.project())
        .await?;
    s.registry.delete_repository(&repo).await?;
    s.auth
        .accounts
        .audit_lifecycle(&a, "repository.delete", repo.to_string());
    Ok(done())
}

/// A project's policy with what it uses, as the quotas count it.
#[derive(Serialize)]
struct PolicyView {
    project: String,
    policy: ProjectPolicy,
    usage: QuotaUsage,
}

async fn policy_view(s: &ApiState, project: String) -> ApiResult {
    let policy = s.registry.project_policy(&project).await?;
    let usage = s.registry.project_usage(&project).await?;
    let view = PolicyView {
        project,
        policy,
        usage,
    };
    Ok(json(StatusCode::OK, &view))
}

async fn get_policy(State(s): State<ApiState>, Path(name): Path<String>, a: Actor) -> ApiResult {
    let project = s.auth.accounts.get_project(&a, &name).await?;
    policy_view(&s, project.name).await
}

async fn set_policy(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    a: Actor,
    JsonBody(policy): JsonBody<ProjectPolicy>,
) -> ApiResult {
    s.auth.accounts.authorize_system_admin(&a)?;
    let project = s.auth.accounts.get_project(&a, &name).await?;
    s.registry
        .set_project_policy(&project.name, &policy)
        .await?;
    let detail = format!(
        "{} {}",
        project.name,
        serde_json::to_string(&policy).unwrap_or_default()
    );
    s.auth
        .accounts
        .audit_lifecycle(&a, "project.policy", detail);
    policy_view(&s, project.name).await
}

/// The rules to preview: the body's, else the project's own.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PreviewBody {
    retention: Option<Retention>,
}

async fn preview_retention(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    a: Actor,
    body: axum::body::Bytes,
) -> ApiResult {
    let project = s.auth.accounts.get_project(&a, &name).await?;
    let asked: PreviewBody = if body.is_empty() {
        PreviewBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(ErrorCode::InvalidRequest, format!("invalid JSON body: {e}"))
        })?
    };
    let mut policy = s.registry.project_policy(&project.name).await?;
    if let Some(retention) = asked.retention {
        policy.retention = retention;
    }
    let preview = s.registry.preview_retention(&project.name, &policy).await?;
    Ok(json(StatusCode::OK, &preview))
}
