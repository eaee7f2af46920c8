//! HTTP adapters: `/v2/` (OCI Distribution), `/token`, the management API
//! and the health probes. Imports nothing above it (the server layer
//! assembles these routes with the UI's).
//!
//! Contract: a handler parses its inputs at the boundary (names, digests,
//! references, ranges), calls one `core::Registry` method and maps the result
//! to status, headers and body. Every error answer is an OCI error body built
//! from the one code table; a 500 is logged once, by `log_internal_errors`.

mod auth;
mod endpoint;
mod error;
mod lifecycle;
mod manage;
mod route;
mod token;
mod v2;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;

pub use endpoint::Endpoint;
pub use error::{ApiError, InternalError};

use crate::auth::Auth;
use crate::core::Registry;
use crate::metrics::Metrics;
use crate::oci::ErrorCode;
use auth::Caller;

/// What the API's handlers hold: the registry, the auth service, and the
/// scheme the listener speaks (for token realms).
#[derive(Clone)]
pub struct ApiState {
    pub registry: Arc<Registry>,
    pub auth: Arc<Auth>,
    /// `https` when the listener speaks TLS: used in token realms.
    pub scheme: &'static str,
}

/// `/v2/`, `/token`, the management API and the health probes, over
/// `state`, for any application state.
pub fn routes<S: Clone + Send + Sync + 'static>(state: ApiState) -> Router<S> {
    Router::new()
        .route("/v2", get(base))
        .route("/v2/", get(base))
        .route("/token", get(token::get_token).post(token::post_token))
        .route("/v2/{*path}", any(v2_endpoint))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(manage::routes())
        .with_state(state)
}

async fn base(State(state): State<ApiState>, req: Request) -> Response {
    let source = auth::source_of(req.extensions());
    match auth::authorize_base(&state, req.headers(), source).await {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn readyz(State(state): State<ApiState>) -> Response {
    match state.registry.ready().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

/// `GET /metrics` on the main listener, for system administrators only
/// (with authentication off, for anyone, as the management API).
pub fn admin_metrics<S: Clone + Send + Sync + 'static>(
    state: ApiState,
    metrics: Arc<Metrics>,
) -> Router<S> {
    let render = move |State(s): State<ApiState>, actor: crate::auth::Actor| async move {
        s.auth.accounts.authorize_system_admin(&actor)?;
        let body = metrics.render();
        Ok::<_, ApiError>(
            ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response(),
        )
    };
    Router::new()
        .route("/metrics", get(render))
        .with_state(state)
}

/// The answer to a path nothing serves: an OCI `NOT_FOUND` body.
pub async fn not_found() -> Response {
    ApiError::bare(ErrorCode::NotFound).into_response()
}

async fn v2_endpoint(
    State(state): State<ApiState>,
    method: Method,
    uri: Uri,
    req: Request,
) -> Response {
    serve_v2(&state, method, &uri, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// One `/v2/` request, in the order its answers take precedence: an
/// unknown path, a bad query, bad credentials, missing access (a refused
/// request's included), then the endpoint's own refusal; then the handler,
/// and the audit record of its success.
async fn serve_v2(
    state: &ApiState,
    method: Method,
    uri: &Uri,
    req: Request,
) -> Result<Response, ApiError> {
    let path = uri.path().strip_prefix("/v2/").unwrap_or("");
    let route = route::parse(path).ok_or_else(|| ApiError::bare(ErrorCode::NotFound))?;
    let params = query(uri)?;
    let (parts, body) = req.into_parts();
    let source = auth::source_of(&parts.extensions);
    let caller = Caller {
        grant: auth::identify(state, &parts.headers, source).await?,
        source,
    };
    let mut endpoint = admit(state, &caller, &method, route, &params, &parts.headers).await?;
    auth::keep_readable_mount_from(state, &caller, &mut endpoint).await;
    let request = v2::Request {
        visible: auth::visible(state, &caller, &endpoint).await,
        params,
        headers: parts.headers,
        body,
    };
    let response = v2::dispatch(&state.registry, &endpoint, request)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    record_audit(state, &caller, &endpoint, &response);
    Ok(response)
}

fn query(uri: &Uri) -> Result<v2::Params, ApiError> {
    match uri.query().map(serde_urlencoded::from_str::<v2::Params>) {
        None => Ok(v2::Params::default()),
        Some(Ok(p)) => Ok(p),
        Some(Err(e)) => Err(ApiError::new(
            ErrorCode::Unsupported,
            format!("bad query string: {e}"),
        )
        .with_status(StatusCode::BAD_REQUEST)),
    }
}

/// Parses the endpoint and lets the caller through to it: the access it
/// (or its refusal) requires, then a first push's project, then the
/// refusal itself.
async fn admit(
    state: &ApiState,
    caller: &Caller,
    method: &Method,
    route: route::V2Route<'_>,
    params: &v2::Params,
    headers: &HeaderMap,
) -> Result<Endpoint, ApiError> {
    let parsed = Endpoint::parse(route, method, params);
    if let Ok(endpoint) = &parsed {
        // The request's span is labelled by endpoint, not by its raw path.
        tracing::Span::current().record("endpoint", tracing::field::display(endpoint.name()));
        crate::metrics::name_endpoint(endpoint.name());
    }
    let required = match &parsed {
        Ok(endpoint) => endpoint.access().required,
        Err(refused) => refused.required.clone(),
    };
    auth::check_access(state, caller, required.as_ref(), headers).await?;
    auth::create_project_on_push(state, caller, required.as_ref(), headers).await?;
    parsed.map_err(|refused| *refused.error)
}

/// Records a successful request the endpoint audits, by the digest the
/// answer names when it names one.
fn record_audit(state: &ApiState, caller: &Caller, endpoint: &Endpoint, response: &Response) {
    let Some((action, repo, reference)) = endpoint.audit() else {
        return;
    };
    if !response.status().is_success() {
        return;
    }
    let digest = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(&reference);
    state.auth.audit().record(crate::auth::audit::event(
        caller.grant.actor(),
        Some(caller.source),
        action,
        Some(repo.as_str()),
        Some(digest),
        None,
        true,
    ));
}
