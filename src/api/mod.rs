//! HTTP adapters: `/v2/` (OCI Distribution) and the health probes.
//!
//! Contract: a handler parses its inputs at the boundary (names, digests,
//! references, ranges), calls one `core::Registry` method and maps the result
//! to status, headers and body. Every error answer is an OCI error body built
//! from the one code table; a 500 is logged once, by `log_internal_errors`.

mod auth;
mod error;
mod manage;
mod route;
mod token;
mod v2;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use error::{ApiError, InternalError};

use crate::auth::AuthService;
use crate::core::Registry;
use crate::oci::ErrorCode;
use route::V2Route;

#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub auth: Arc<AuthService>,
    /// `https` when the listener speaks TLS: used in token realms.
    pub scheme: &'static str,
    /// The web UI's session key and read-only browse queries.
    pub ui: Arc<crate::ui::UiContext>,
}

/// What one caller may do, for answers that are filtered per caller.
#[derive(Clone)]
pub struct Access {
    auth: Arc<AuthService>,
    grant: crate::auth::Grant,
}

impl Access {
    /// The repositories this caller may see in a listing.
    pub fn visible(&self) -> crate::metadata::Visible {
        match &self.grant {
            crate::auth::Grant::Principal(p) => self.auth.visible_to(p),
            // Listings resolve a token to its subject first (see `v2_endpoint`).
            crate::auth::Grant::Token { .. } => {
                self.auth.visible_to(&crate::auth::Principal::Anonymous)
            }
        }
    }

    pub async fn may_pull(&self, repo: &crate::oci::RepoName) -> bool {
        self.auth
            .permits(&self.grant, repo, crate::metadata::Action::Pull)
            .await
            .unwrap_or(false)
    }
}

pub fn router(state: AppState) -> Router {
    let request_id = axum::http::HeaderName::from_static("x-request-id");
    Router::new()
        .route("/v2", get(base))
        .route("/v2/", get(base))
        .route("/token", get(token::get_token).post(token::post_token))
        .route("/v2/{*path}", any(v2_endpoint))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(manage::routes())
        .merge(crate::ui::routes())
        .route("/", get(|| async { axum::response::Redirect::to("/ui") }))
        .fallback(not_found)
        .with_state(state)
        .layer(middleware::from_fn(log_internal_errors))
        .layer(middleware::from_fn(host_from_authority))
        .layer(SetResponseHeaderLayer::overriding(
            axum::http::HeaderName::from_static("docker-distribution-api-version"),
            HeaderValue::from_static("registry/2.0"),
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<Body>| {
                    let id = req
                        .extensions()
                        .get::<RequestId>()
                        .and_then(|id| id.header_value().to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path())
                })
                .on_request(())
                .on_response(|res: &Response, latency: Duration, _span: &tracing::Span| {
                    tracing::info!(status = res.status().as_u16(), ms = latency.as_secs_f64() * 1000.0, "served");
                })
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

async fn base(State(state): State<AppState>, req: Request) -> Response {
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

async fn readyz(State(state): State<AppState>) -> Response {
    if state.registry.ready().await {
        (StatusCode::OK, "ready").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "metadata backend unavailable",
        )
            .into_response()
    }
}

async fn not_found() -> Response {
    ApiError::bare(ErrorCode::NotFound).into_response()
}

async fn v2_endpoint(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    req: Request,
) -> Response {
    let path = uri.path().strip_prefix("/v2/").unwrap_or("");
    let Some(route) = route::parse(path) else {
        return not_found().await;
    };
    let params = match uri.query().map(serde_urlencoded::from_str::<v2::Params>) {
        None => v2::Params::default(),
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            return ApiError::new(ErrorCode::Unsupported, format!("bad query string: {e}"))
                .with_status(StatusCode::BAD_REQUEST)
                .into_response()
        }
    };
    let (parts, body) = req.into_parts();
    let source = auth::source_of(&parts.extensions);
    let caller = match auth::authorize(&state, &route, &method, &parts.headers, source).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let audited = audit_action(&route, &method);
    // The catalog is filtered by what the caller may pull, not by the
    // repositories a token happens to name.
    let grant = match (&route, &caller.grant) {
        (V2Route::Catalog, crate::auth::Grant::Token { subject, .. }) => {
            match state.auth.principal_named(subject).await {
                Ok(p) => crate::auth::Grant::Principal(p),
                Err(_) => crate::auth::Grant::Principal(crate::auth::Principal::Anonymous),
            }
        }
        (_, g) => g.clone(),
    };
    let request = v2::Request {
        access: Access {
            auth: state.auth.clone(),
            grant,
        },
        method,
        params,
        headers: parts.headers,
        body,
    };
    let response = v2::dispatch(&state.registry, route.clone(), request)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    if let (Some((action, name, reference)), true) = (audited, response.status().is_success()) {
        let digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(reference);
        state.auth.audit().record(crate::auth::audit::event(
            caller.grant.actor(),
            Some(caller.source),
            action,
            Some(name),
            Some(digest),
            None,
            true,
        ));
    }
    response
}

/// Requests recorded in the audit log: (action, repository, reference).
fn audit_action<'a>(
    route: &V2Route<'a>,
    method: &Method,
) -> Option<(&'static str, &'a str, &'a str)> {
    match (route, method) {
        (V2Route::Manifest { name, reference }, &Method::GET) => Some(("pull", name, reference)),
        (V2Route::Manifest { name, reference }, &Method::PUT) => Some(("push", name, reference)),
        (V2Route::Manifest { name, reference }, &Method::DELETE) => {
            Some(("delete", name, reference))
        }
        (V2Route::Blob { name, digest }, &Method::DELETE) => Some(("delete", name, digest)),
        _ => None,
    }
}

/// HTTP/2 requests carry the host in `:authority` (the URI), not in a
/// `Host` header; token realms and redirects are built from `Host`.
async fn host_from_authority(mut req: Request, next: Next) -> Response {
    if !req.headers().contains_key(header::HOST) {
        let authority = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        if let Some(value) = authority {
            req.headers_mut().insert(header::HOST, value);
        }
    }
    next.run(req).await
}

/// Logs the cause of every 500 once, inside the request's span.
async fn log_internal_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if let Some(InternalError(cause)) = response.extensions().get::<InternalError>() {
        tracing::error!(error = %cause, "internal error");
    }
    response
}
