//! The web UI under `/ui`: server-rendered HTML (maud escapes every dynamic
//! value), embedded CSS and a little JavaScript for copy buttons, delete
//! confirmations and live filtering; every page works without JavaScript.
//!
//! Contract: the same accounts, roles and audit log as the API. A handler
//! resolves the signed-in `Viewer`, checks the CSRF token of a form, calls
//! one loader or service method in `loaders`/`admin`/`lifecycle` and maps
//! the result to a page, a redirect or a friendly error page. What a viewer may not see is
//! neither listed nor reachable: pages ask `Authorizer::actions_on` and the
//! accounts service, whose refusals become 404 (existence hidden) or 403.

mod admin;
mod format;
mod image;
mod lifecycle;
mod loaders;
mod session;
mod templates;
mod view;
mod viewer;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path as UrlPath, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use crate::auth::AuthError;
use crate::core::Browser;
use crate::http::source_of;
pub(crate) use crate::metadata::now_ms;
pub use session::SessionKey;
pub use viewer::{Viewer, Visitor};

/// What the UI needs beyond the registry and auth services: its session
/// key, the browse service, and a cache of image build times.
pub struct UiContext {
    key: SessionKey,
    browse: Browser,
    /// Build time of images by manifest digest: content-addressed, so it
    /// never changes, and tag pages need not re-read configs.
    created: quick_cache::sync::Cache<String, Option<String>>,
}

impl UiContext {
    /// Loads (or creates) `<data_dir>/ui-session.key`.
    pub fn open(data_dir: &Path, browse: Browser) -> std::io::Result<UiContext> {
        Ok(UiContext {
            key: SessionKey::load_or_create(data_dir)?,
            browse,
            created: quick_cache::sync::Cache::new(10_000),
        })
    }
}

/// Creates `<data_dir>/ui-session.key` if it is missing.
pub fn ensure_session_key(data_dir: &Path) -> std::io::Result<()> {
    SessionKey::load_or_create(data_dir).map(|_| ())
}

const CSS: &str = include_str!("assets/ui.css");
const JS: &str = include_str!("assets/ui.js");

/// What the UI's handlers hold: the services it reads and acts through,
/// the scheme the listener speaks (for `Secure` cookies) and its context.
#[derive(Clone)]
pub struct UiState {
    pub registry: Arc<crate::core::Registry>,
    pub auth: Arc<crate::auth::Auth>,
    /// `https` when the listener speaks TLS.
    pub scheme: &'static str,
    pub ui: Arc<UiContext>,
}

/// Every `/ui` page over `state`, for any application state.
pub fn routes<S: Clone + Send + Sync + 'static>(state: UiState) -> Router<S> {
    Router::new()
        .route("/ui", get(overview))
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/search", get(search))
        .route("/ui/assets/{file}", get(asset))
        .route("/ui/projects/{project}", get(project))
        .route(
            "/ui/projects/{project}/retention",
            get(lifecycle::retention),
        )
        .route("/ui/projects/{project}/{action}", post(project_action))
        .route("/ui/r/{*path}", get(repository).post(repository_action))
        .route("/ui/admin", get(admin::page))
        .route("/ui/admin/users", post(admin::create_user))
        .route("/ui/admin/users/{name}", post(admin::update_user))
        .route("/ui/admin/projects", post(admin::create_project))
        .route("/ui/admin/audit", get(admin::audit))
        .route("/ui/admin/gc", post(lifecycle::request_gc))
        // A merged router's fallback gives way to the application's: name
        // the rest of /ui, so that its pages answer as UI pages.
        .route("/ui/{*rest}", axum::routing::any(no_such_page))
        .fallback(no_such_page)
        .layer(axum::middleware::from_fn(server_timing))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

async fn no_such_page() -> UiError {
    UiError::NotFound("no such page".into())
}

/// Pages load only this server's script and style sheet (no inline code, so
/// injected markup cannot run), may not be framed (clickjacking), and are
/// never sniffed into another content type.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
    ] {
        headers.insert(name, axum::http::HeaderValue::from_static(value));
    }
    response
}

/// Adds `Server-Timing: app;dur=<ms>`: the time the handler took to build the
/// response (the page is rendered by then; sending it is not counted).
async fn server_timing(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let start = std::time::Instant::now();
    let mut response = next.run(req).await;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = format!("app;dur={ms:.3}").parse() {
        response.headers_mut().insert("server-timing", v);
    }
    response
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum UiError {
    /// Not signed in: go to the login page, then back to `next`.
    Login {
        next: String,
    },
    NotFound(String),
    Forbidden(String),
    BadRequest(String),
    Internal(String),
}

impl From<AuthError> for UiError {
    fn from(e: AuthError) -> UiError {
        match e {
            // Existence is not revealed to those who may not see it.
            AuthError::Unauthenticated | AuthError::NotFound(_) => UiError::NotFound(e.to_string()),
            AuthError::Forbidden(m) => UiError::Forbidden(m),
            AuthError::Conflict(_) | AuthError::Invalid(_) | AuthError::InUse(_) => {
                UiError::BadRequest(e.to_string())
            }
            AuthError::Metadata(m) => UiError::Internal(m.to_string()),
            // Logins are answered by the login page itself; reaching here
            // any other way is a fault.
            AuthError::BadCredentials
            | AuthError::RateLimited(_)
            | AuthError::Busy(_)
            | AuthError::InvalidToken(_)
            | AuthError::Setup(_) => UiError::Internal(e.to_string()),
        }
    }
}

impl From<crate::metadata::MetadataError> for UiError {
    fn from(e: crate::metadata::MetadataError) -> UiError {
        UiError::Internal(e.to_string())
    }
}

impl From<crate::core::Error> for UiError {
    fn from(e: crate::core::Error) -> UiError {
        use crate::core::Error;
        match e {
            Error::ManifestUnknown | Error::NameUnknown | Error::BlobUnknown => {
                UiError::NotFound(e.to_string())
            }
            // A project rule (immutable tag, quota) refuses: say which.
            Error::Denied(m) => UiError::Forbidden(m),
            Error::Invalid(m) => UiError::BadRequest(m),
            other => UiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            UiError::Login { next } => {
                let to = format!("/ui/login?next={}", urlencode(&next));
                return Redirect::to(&to).into_response();
            }
            UiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            UiError::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            UiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            UiError::Internal(m) => {
                tracing::error!(error = %m, "internal error in the web UI");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "something went wrong on the server; the log has the details".to_string(),
                )
            }
        };
        (status, view::error_page(status, &message)).into_response()
    }
}

/// What `urlencode` leaves as it is: unreserved characters and `/`.
const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Percent-encodes everything but unreserved characters and `/`.
pub(crate) fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, KEEP).to_string()
}

async fn asset(UrlPath(file): UrlPath<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "ui.css" => (CSS, "text/css; charset=utf-8"),
        "ui.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return UiError::NotFound("no such asset".into()).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize, Default)]
struct NextQuery {
    next: Option<String>,
}

/// Only local UI paths are followed after login: no open redirect (`//host`,
/// `/ui@host`, a backslash that browsers read as `/`), and nothing that is
/// not a valid `Location` (CR, LF, spaces, non-ASCII).
fn safe_next(next: Option<&str>) -> String {
    let local = |n: &str| {
        (n == "/ui" || n.starts_with("/ui/") || n.starts_with("/ui?"))
            && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
    };
    match next {
        Some(n) if local(n) => n.to_string(),
        _ => "/ui".to_string(),
    }
}

async fn login_form(State(state): State<UiState>, Query(q): Query<NextQuery>) -> Response {
    let nonce = session::nonce();
    let page = view::login_page(
        &state.ui.key.csrf(&format!("login:{nonce}")),
        &safe_next(q.next.as_deref()),
        None,
    );
    let cookie = session::set_cookie(session::LOGIN_COOKIE, &nonce, 3600, state.scheme == "https");
    ([(header::SET_COOKIE, cookie)], page).into_response()
}

/// The client's address as an extractor.
struct Source(IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Source, Self::Rejection> {
        Ok(Source(source_of(&parts.extensions)))
    }
}

/// Fields every form carries.
#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: Option<String>,
}

async fn login(
    State(state): State<UiState>,
    Source(source): Source,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let nonce = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| session::cookie(h, session::LOGIN_COOKIE))
        .unwrap_or("");
    let next = safe_next(form.next.as_deref());
    if nonce.is_empty() || !state.ui.key.csrf_ok(&format!("login:{nonce}"), &form.csrf) {
        let mut response = login_form(State(state), Query(NextQuery { next: Some(next) })).await;
        *response.status_mut() = StatusCode::FORBIDDEN;
        return response;
    }
    match loaders::sign_in(&state, &form.username, &form.password, source).await {
        Ok(user) => {
            let binding = match state.auth.authenticator.binding_of(&user).await {
                Ok(Some(binding)) => binding,
                Ok(None) => {
                    return UiError::Internal(format!("account {user:?} vanished")).into_response()
                }
                Err(e) => return UiError::from(e).into_response(),
            };
            let expires = now_ms() / 1000 + session::SESSION_SECONDS;
            let value = state.ui.key.seal(&user, binding, expires);
            let secure = state.scheme == "https";
            let mut response = Redirect::to(&next).into_response();
            let headers = response.headers_mut();
            for cookie in [
                session::set_cookie(
                    session::SESSION_COOKIE,
                    &value,
                    session::SESSION_SECONDS,
                    secure,
                ),
                session::set_cookie(session::LOGIN_COOKIE, "", 0, secure),
            ] {
                if let Ok(v) = cookie.parse() {
                    headers.append(header::SET_COOKIE, v);
                }
            }
            response
        }
        Err((status, message)) => {
            let page = view::login_page(&form.csrf, &next, Some(&message));
            (status, page).into_response()
        }
    }
}

async fn logout(
    State(state): State<UiState>,
    viewer: Viewer,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    viewer.check_csrf(&state, &form.csrf)?;
    if let Some(cookie) = &viewer.cookie {
        let expires = state
            .ui
            .key
            .open(cookie, 0)
            .map_or(now_ms() / 1000 + session::SESSION_SECONDS, |s| s.expires_at);
        let id = state.ui.key.session_id(cookie);
        state.ui.browse.end_session(&id, expires).await?;
    }
    state.auth.audit().record(crate::auth::audit::event(
        viewer.name(),
        viewer.actor.source,
        "logout",
        None,
        None,
        Some("web UI".into()),
        true,
    ));
    let cookie = session::set_cookie(session::SESSION_COOKIE, "", 0, state.scheme == "https");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/ui/login")).into_response())
}

/// The cursor of a page listed by name: the last name of the page before.
#[derive(Deserialize, Default)]
struct AfterQuery {
    #[serde(default)]
    after: String,
}

async fn overview(
    State(state): State<UiState>,
    Visitor(viewer): Visitor,
    Query(q): Query<AfterQuery>,
) -> Result<Response, UiError> {
    if let Some(next) = &viewer.login_next {
        // With no public project there is nothing to browse unsigned.
        if state
            .auth
            .accounts
            .projects_page(&viewer.actor, "", 1)
            .await?
            .is_empty()
        {
            return Err(UiError::Login { next: next.clone() });
        }
    }
    let page = loaders::overview(&state, &viewer, &q.after).await?;
    Ok(templates::overview(&page, &viewer).into_response())
}

#[derive(Deserialize, Default)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

async fn search(
    State(state): State<UiState>,
    Visitor(viewer): Visitor,
    Query(q): Query<SearchQuery>,
) -> Result<Response, UiError> {
    let page = loaders::search(&state, &viewer, q.q.trim()).await;
    let page = page.map_err(|e| viewer.or_login(e))?;
    Ok(templates::search(&page, &viewer).into_response())
}

/// A project page's cursor, and a repository just deleted (for the notice).
#[derive(Deserialize, Default)]
struct ProjectQuery {
    #[serde(default)]
    after: String,
    #[serde(default)]
    deleted: Option<String>,
}

async fn project(
    State(state): State<UiState>,
    Visitor(viewer): Visitor,
    UrlPath(project): UrlPath<String>,
    Query(q): Query<ProjectQuery>,
) -> Result<Response, UiError> {
    let page = loaders::project(&state, &viewer, &project, &q.after, None).await;
    let mut page = page.map_err(|e| viewer.or_login(e))?;
    page.deleted = q.deleted;
    Ok(templates::project(&page, &viewer).into_response())
}

/// Project administration forms: visibility, members, robots, deletion.
#[derive(Deserialize)]
pub(crate) struct ProjectForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    public: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    robot: String,
    #[serde(default)]
    pull: Option<String>,
    #[serde(default)]
    push: Option<String>,
    #[serde(default)]
    delete: Option<String>,
    /// Days until a new robot expires; empty: never.
    #[serde(default)]
    expires_days: String,
    /// The member a membership form adds, changes or removes.
    #[serde(default)]
    user: String,
    #[serde(default)]
    role: String,
}

async fn project_action(
    State(state): State<UiState>,
    viewer: Viewer,
    UrlPath((project, action)): UrlPath<(String, String)>,
    Form(form): Form<ProjectForm>,
) -> Result<Response, UiError> {
    viewer.check_csrf(&state, &form.csrf)?;
    loaders::project_action(&state, &viewer, &project, &action, &form).await
}

#[derive(Deserialize, Default)]
pub(crate) struct TagQuery {
    #[serde(default)]
    sort: Option<String>,
    #[serde(default)]
    page: Option<u64>,
    /// A tag that was just deleted, for the notice.
    #[serde(default)]
    deleted: Option<String>,
}

async fn repository(
    State(state): State<UiState>,
    Visitor(viewer): Visitor,
    UrlPath(path): UrlPath<String>,
    Query(q): Query<TagQuery>,
) -> Result<Response, UiError> {
    let page = match loaders::RepoPath::parse(&path)? {
        loaders::RepoPath::Repository(repo) => loaders::repository(&state, &viewer, &repo, &q)
            .await
            .map(|page| templates::repository(&page, &viewer)),
        loaders::RepoPath::Image(repo, reference) => {
            loaders::image(&state, &viewer, &repo, &reference)
                .await
                .map(|page| templates::image(&page, &viewer))
        }
        loaders::RepoPath::DeleteRepository(repo) => {
            lifecycle::confirm_delete(&state, &viewer, &repo).await
        }
        loaders::RepoPath::DeleteTag(..) => Err(UiError::NotFound("no such page".into())),
    };
    Ok(page.map_err(|e| viewer.or_login(e))?.into_response())
}

async fn repository_action(
    State(state): State<UiState>,
    viewer: Viewer,
    UrlPath(path): UrlPath<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    let (repo, tag) = match loaders::RepoPath::parse(&path)? {
        loaders::RepoPath::DeleteTag(repo, tag) => (repo, tag),
        loaders::RepoPath::DeleteRepository(repo) => {
            viewer.check_csrf(&state, &form.csrf)?;
            return lifecycle::delete_repository(&state, &viewer, &repo).await;
        }
        _ => return Err(UiError::NotFound("no such form".into())),
    };
    viewer.check_csrf(&state, &form.csrf)?;
    loaders::delete_tag(&state, &viewer, &repo, &tag).await?;
    let back = format!(
        "/ui/r/{}?deleted={}",
        urlencode(repo.as_str()),
        urlencode(tag.as_str())
    );
    Ok(Redirect::to(&back).into_response())
}
