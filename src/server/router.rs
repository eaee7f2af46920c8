//! The application state and the one router: `api` and `ui` routes over
//! their sub-states, and the global layers (tracing with the request id and
//! the endpoint's name, metrics, error logging, the API-version header,
//! `Host` from `:authority`); and the metrics listener's own router.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRef, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::api::{self, ApiState, InternalError};
use crate::auth::Auth;
use crate::core::Registry;
use crate::metrics::{self, Metrics};
use crate::ui::{self, UiContext, UiState};

/// Everything the HTTP application holds: the services, and the scheme the
/// listener speaks. `api` and `ui` each take their slice of it.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub auth: Arc<Auth>,
    /// `https` when the listener speaks TLS: used in token realms.
    pub scheme: &'static str,
    /// The web UI's session key and read-only browse queries.
    pub ui: Arc<UiContext>,
    pub metrics: Arc<Metrics>,
    /// `/metrics` is served here, to system administrators (no
    /// `metrics.listen` of its own).
    pub metrics_on_main: bool,
    /// Failed-login counts shared with the other replicas (PostgreSQL).
    pub login_ledger: Option<Arc<dyn crate::metadata::LoginLedger>>,
    /// The files replicas hold the same copy of (PostgreSQL).
    pub shared_files: Option<Arc<dyn crate::metadata::SharedFiles>>,
}

impl FromRef<AppState> for ApiState {
    fn from_ref(state: &AppState) -> ApiState {
        ApiState {
            registry: state.registry.clone(),
            auth: state.auth.clone(),
            scheme: state.scheme,
        }
    }
}

impl FromRef<AppState> for UiState {
    fn from_ref(state: &AppState) -> UiState {
        UiState {
            registry: state.registry.clone(),
            auth: state.auth.clone(),
            scheme: state.scheme,
            ui: state.ui.clone(),
        }
    }
}

/// The whole HTTP application over `state`.
pub fn router(state: AppState) -> Router {
    let request_id = axum::http::HeaderName::from_static("x-request-id");
    let mut app = Router::new()
        .merge(api::routes(ApiState::from_ref(&state)))
        .merge(ui::routes(UiState::from_ref(&state)))
        .route("/", get(|| async { axum::response::Redirect::to("/ui") }));
    if state.metrics_on_main {
        app = app.merge(api::admin_metrics(
            ApiState::from_ref(&state),
            state.metrics.clone(),
        ));
    }
    app.fallback(api::not_found)
        // Applied per route (as every `Router::layer`), so it sees the
        // matched route's template: its label for non-/v2/ requests.
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .layer(middleware::from_fn(log_internal_errors))
        .layer(middleware::from_fn(host_from_authority))
        .layer(SetResponseHeaderLayer::overriding(
            axum::http::HeaderName::from_static("docker-distribution-api-version"),
            HeaderValue::from_static("registry/2.0"),
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(|res: &Response, latency: Duration, _span: &tracing::Span| {
                    tracing::info!(
                        status = res.status().as_u16(),
                        ms = latency.as_secs_f64() * 1000.0,
                        "served"
                    );
                })
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// The span of one request: its id, its method and what it addresses.
/// A `/v2/` request is labelled by its endpoint's name (a bounded set),
/// which its handler records once the path is parsed; other paths are kept.
fn request_span(req: &axum::http::Request<Body>) -> tracing::Span {
    let id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    let path = req.uri().path();
    if path.starts_with("/v2/") {
        tracing::info_span!("request", id = %id, method = %req.method(), endpoint = tracing::field::Empty)
    } else {
        tracing::info_span!("request", id = %id, method = %req.method(), path = %path, endpoint = tracing::field::Empty)
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

/// The separate metrics listener's application (`metrics.listen`): only
/// `GET /metrics`, without authentication; anything else is a 404.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    let render = move || async move {
        (
            [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
            metrics.render(),
        )
    };
    Router::new()
        .route("/metrics", get(render))
        .fallback(api::not_found)
}
