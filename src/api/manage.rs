//! `/api/v1`: the management JSON API (users, projects, members, robots,
//! personal access tokens, audit log), described by `/api/v1/openapi.json`.
//! Each handler authenticates the caller, calls one management method of
//! the auth service and maps the result; permissions live in the service.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::Uri;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::auth::{identify, source_of};
use super::error::ApiError;
use super::ApiState;
use crate::auth::{Actor, UserUpdate};
use crate::auth::{Grant, Principal};
use crate::metadata::{Action, AuditFilter, Role};
use crate::oci::ErrorCode;

const OPENAPI: &str = include_str!("openapi.json");
const BODY_LIMIT: usize = 64 * 1024;

pub(super) type ApiResult = Result<Response, ApiError>;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route(
            "/api/v1/users/{name}",
            delete(delete_user).patch(update_user),
        )
        .route("/api/v1/projects", get(list_projects).post(create_project))
        .route(
            "/api/v1/projects/{name}",
            get(get_project)
                .patch(update_project)
                .delete(delete_project),
        )
        .route("/api/v1/projects/{name}/members", get(members))
        .route(
            "/api/v1/projects/{name}/members/{user}",
            put(set_member).delete(remove_member),
        )
        .route(
            "/api/v1/projects/{name}/robots",
            get(list_robots).post(create_robot),
        )
        .route(
            "/api/v1/projects/{name}/robots/{robot}",
            delete(delete_robot),
        )
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(delete_token))
        .route("/api/v1/audit", get(audit))
        .merge(super::lifecycle::routes())
}

/// The caller, from Basic credentials or a bearer token.
impl FromRequestParts<ApiState> for Actor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Actor, ApiError> {
        let source = source_of(&parts.extensions);
        // Registry tokens carry repository scopes only: they never stand in
        // for their owner here. Basic credentials (passwords, personal
        // access tokens) do.
        let principal = match identify(state, &parts.headers, source).await? {
            Grant::Principal(p) => p,
            Grant::Token { .. } => {
                return Err(ApiError::new(
                    ErrorCode::Unauthorized,
                    "the management API takes Basic credentials (a password or \
                     personal access token), not registry tokens",
                )
                .with_header(header::WWW_AUTHENTICATE, "Basic realm=\"berth\"".into()))
            }
        };
        // With authentication off, whoever calls is in charge.
        let principal = match (state.auth.enabled(), principal) {
            (false, _) => Principal::User {
                name: "anonymous".into(),
                admin: true,
            },
            (true, p) => p,
        };
        Ok(Actor {
            principal,
            source: Some(source),
        })
    }
}

/// A JSON request body, refused with an OCI error body when malformed.
pub(super) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
            .await
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("reading the body failed: {e}"),
                )
            })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::new(ErrorCode::InvalidRequest, format!("invalid JSON body: {e}"))
        })
    }
}

pub(super) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub(super) fn done() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

async fn openapi() -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(OPENAPI))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn list_users(State(s): State<ApiState>, a: Actor) -> ApiResult {
    Ok(json(StatusCode::OK, &s.auth.accounts.list_users(&a).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

async fn create_user(
    State(s): State<ApiState>,
    a: Actor,
    JsonBody(u): JsonBody<NewUser>,
) -> ApiResult {
    let view = s
        .auth
        .accounts
        .create_user(&a, &u.name, &u.password, u.admin)
        .await?;
    Ok(json(StatusCode::CREATED, &view))
}

async fn update_user(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    a: Actor,
    JsonBody(update): JsonBody<UserUpdate>,
) -> ApiResult {
    Ok(json(
        StatusCode::OK,
        &s.auth.accounts.update_user(&a, &name, &update).await?,
    ))
}

async fn delete_user(State(s): State<ApiState>, Path(name): Path<String>, a: Actor) -> ApiResult {
    s.auth.accounts.delete_user(&a, &name).await?;
    Ok(done())
}

async fn list_projects(State(s): State<ApiState>, a: Actor) -> ApiResult {
    Ok(json(
        StatusCode::OK,
        &s.auth.accounts.list_projects(&a).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProject {
    name: String,
    #[serde(default)]
    public: bool,
}

async fn create_project(
    State(s): State<ApiState>,
    a: Actor,
    JsonBody(p): JsonBody<NewProject>,
) -> ApiResult {
    Ok(json(
        StatusCode::CREATED,
        &s.auth
            .accounts
            .create_project(&a, &p.name, p.public)
            .await?,
    ))
}

async fn get_project(State(s): State<ApiState>, Path(name): Path<String>, a: Actor) -> ApiResult {
    Ok(json(
        StatusCode::OK,
        &s.auth.accounts.get_project(&a, &name).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectUpdate {
    public: bool,
}

async fn update_project(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    a: Actor,
    JsonBody(u): JsonBody<ProjectUpdate>,
) -> ApiResult {
    s.auth
        .accounts
        .set_project_public(&a, &name, u.public)
        .await?;
    Ok(json(
        StatusCode::OK,
        &s.auth.accounts.get_project(&a, &name).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteProjectQuery {
    #[serde(default)]
    force: bool,
}

async fn delete_project(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    uri: Uri,
    a: Actor,
) -> ApiResult {
    let q: DeleteProjectQuery = serde_urlencoded::from_str(uri.query().unwrap_or(""))
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("bad query: {e}")))?;
    s.auth.accounts.delete_project(&a, &name, q.force).await?;
    // Cached manifests of its repositories must not outlive them.
    s.registry.forget_cached();
    Ok(done())
}

async fn members(State(s): State<ApiState>, Path(name): Path<String>, a: Actor) -> ApiResult {
    let members = s.auth.accounts.members(&a, &name).await?;
    let view: Vec<_> = members
        .into_iter()
        .map(|m| serde_json::json!({"user": m.user, "role": m.role}))
        .collect();
    Ok(json(StatusCode::OK, &view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberRole {
    role: Role,
}

async fn set_member(
    State(s): State<ApiState>,
    Path((name, user)): Path<(String, String)>,
    a: Actor,
    JsonBody(m): JsonBody<MemberRole>,
) -> ApiResult {
    s.auth.accounts.set_member(&a, &name, &user, m.role).await?;
    Ok(done())
}

async fn remove_member(
    State(s): State<ApiState>,
    Path((name, user)): Path<(String, String)>,
    a: Actor,
) -> ApiResult {
    s.auth.accounts.remove_member(&a, &name, &user).await?;
    Ok(done())
}

async fn list_robots(State(s): State<ApiState>, Path(name): Path<String>, a: Actor) -> ApiResult {
    Ok(json(
        StatusCode::OK,
        &s.auth.accounts.list_robots(&a, &name).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRobotRequest {
    name: String,
    actions: Vec<Action>,
    /// Unix time in milliseconds.
    expires_at: Option<i64>,
}

async fn create_robot(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    a: Actor,
    JsonBody(r): JsonBody<NewRobotRequest>,
) -> ApiResult {
    let created = s
        .auth
        .accounts
        .create_robot(&a, &name, &r.name, r.actions, r.expires_at)
        .await?;
    Ok(json(StatusCode::CREATED, &created))
}

async fn delete_robot(
    State(s): State<ApiState>,
    Path((name, robot)): Path<(String, String)>,
    a: Actor,
) -> ApiResult {
    s.auth.accounts.delete_robot(&a, &name, &robot).await?;
    Ok(done())
}

async fn list_tokens(State(s): State<ApiState>, a: Actor) -> ApiResult {
    Ok(json(
        StatusCode::OK,
        &s.auth.accounts.list_tokens(&a).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    /// Unix time in milliseconds.
    expires_at: Option<i64>,
}

async fn create_token(
    State(s): State<ApiState>,
    a: Actor,
    JsonBody(t): JsonBody<NewToken>,
) -> ApiResult {
    Ok(json(
        StatusCode::CREATED,
        &s.auth
            .accounts
            .create_token(&a, &t.name, t.expires_at)
            .await?,
    ))
}

async fn delete_token(State(s): State<ApiState>, Path(id): Path<String>, a: Actor) -> ApiResult {
    s.auth.accounts.delete_token(&a, &id).await?;
    Ok(done())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    repository: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    before: Option<i64>,
    limit: Option<u32>,
}

async fn audit(State(s): State<ApiState>, uri: Uri, a: Actor) -> ApiResult {
    let q: AuditQuery = serde_urlencoded::from_str(uri.query().unwrap_or(""))
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("bad query: {e}")))?;
    let filter = AuditFilter {
        actor: q.actor,
        action: q.action,
        repository: q.repository,
        since: q.since,
        until: q.until,
        before_id: q.before,
        limit: q.limit.unwrap_or(100).min(1000),
    };
    Ok(json(
        StatusCode::OK,
        &s.auth.accounts.audit_log(&a, &filter).await?,
    ))
}
