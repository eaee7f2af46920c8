//! Who is looking at a page: the signed-in [`Viewer`] (from the session
//! cookie, re-checked against the account), or an anonymous [`Visitor`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use super::{now_ms, session, UiError, UiState};
use crate::auth::Actor;
use crate::auth::Principal;
use crate::http::source_of;

/// The person looking at a page.
pub struct Viewer {
    pub actor: Actor,
    /// The session cookie value (`None` with authentication off).
    pub(super) cookie: Option<String>,
    /// The CSRF token for this page's forms.
    pub csrf: String,
    /// `Host` of the request, for `docker pull` lines.
    pub host: String,
    /// For an anonymous visitor, where to come back after signing in.
    pub(super) login_next: Option<String>,
}

impl Viewer {
    pub fn principal(&self) -> &Principal {
        &self.actor.principal
    }

    pub fn name(&self) -> &str {
        self.actor.principal.name()
    }

    pub fn is_admin(&self) -> bool {
        self.actor.principal.is_admin()
    }

    /// What an anonymous visitor cannot see may exist for those who sign
    /// in: they are sent to the login page instead of a "not found".
    pub(super) fn or_login(&self, e: UiError) -> UiError {
        match (e, &self.login_next) {
            (UiError::NotFound(_) | UiError::Forbidden(_), Some(next)) => {
                UiError::Login { next: next.clone() }
            }
            (e, _) => e,
        }
    }

    /// Refuses a form whose CSRF token is missing or not this session's.
    pub fn check_csrf(&self, state: &UiState, token: &str) -> Result<(), UiError> {
        match &self.cookie {
            Some(cookie) if state.ui.key.csrf_ok(cookie, token) => Ok(()),
            Some(_) => Err(UiError::Forbidden(
                "this form has expired or did not come from this site (CSRF token missing or wrong); reload the page and try again".into(),
            )),
            None => Ok(()),
        }
    }
}

fn host_of(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string()
}

impl FromRequestParts<UiState> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Viewer, UiError> {
        let source = Some(source_of(&parts.extensions));
        let host = host_of(&parts.headers);
        if !state.auth.enabled() {
            // As in the management API: with authentication off, whoever
            // calls is in charge.
            let principal = Principal::User {
                name: "anonymous".into(),
                admin: true,
            };
            return Ok(Viewer {
                actor: Actor { principal, source },
                cookie: None,
                csrf: String::new(),
                host,
                login_next: None,
            });
        }
        let next = parts
            .uri
            .path_and_query()
            .map_or("/ui", |p| p.as_str())
            .to_string();
        let login = || UiError::Login { next: next.clone() };
        let cookie = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|h| session::cookie(h, session::SESSION_COOKIE))
            .map(str::to_string)
            .ok_or_else(login)?;
        let session = state
            .ui
            .key
            .open(&cookie, now_ms() / 1000)
            .ok_or_else(login)?;
        // A session ended by logout stays ended, even for a copied cookie.
        let id = state.ui.key.session_id(&cookie);
        if state.ui.browse.session_ended(&id).await? {
            return Err(login());
        }
        // The account must still be the one signed in, as it was then: a
        // password or role change, a disable, or a deletion ends the session.
        let principal = state
            .auth
            .authenticator
            .bound(&session.user, session.binding)
            .await?
            .filter(|p| matches!(p, Principal::User { .. }))
            .ok_or_else(login)?;
        Ok(Viewer {
            csrf: state.ui.key.csrf(&cookie),
            actor: Actor { principal, source },
            cookie: Some(cookie),
            host,
            login_next: None,
        })
    }
}

/// The viewer of a browse page: signed in, or else anonymous, who may see
/// what anonymous clients may pull (public projects), as `docker pull` can.
/// Forms keep taking a signed-in [`Viewer`].
pub struct Visitor(pub Viewer);

impl FromRequestParts<UiState> for Visitor {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Visitor, UiError> {
        match Viewer::from_request_parts(parts, state).await {
            Err(UiError::Login { next }) => Ok(Visitor(Viewer {
                actor: Actor {
                    principal: Principal::Anonymous,
                    source: Some(source_of(&parts.extensions)),
                },
                cookie: None,
                csrf: String::new(),
                host: host_of(&parts.headers),
                login_next: Some(next),
            })),
            other => other.map(Visitor),
        }
    }
}
