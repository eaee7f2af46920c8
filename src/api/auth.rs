//! Authentication at the HTTP boundary: reads `Authorization`, asks the
//! auth service who the caller is, checks the access each `/v2` endpoint
//! declares (`Endpoint::access`), and answers 401 with a Bearer challenge
//! (or 403, or 429) before any handler runs.

use std::net::IpAddr;

use axum::http::{header, HeaderMap, HeaderName, StatusCode};

use super::endpoint::{Endpoint, Permission};
use super::error::ApiError;
use super::ApiState;
use crate::auth::{AuthError, Grant, Principal};
pub use crate::http::{basic_credentials, request_host, source_of};
use crate::metadata::{Action, Visible};
use crate::oci::{ErrorCode, RepoName};

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub grant: Grant,
    pub source: IpAddr,
}

/// `WWW-Authenticate` for this registry, optionally naming a scope and an
/// error (`invalid_token`, `insufficient_scope`).
pub fn challenge(
    state: &ApiState,
    headers: &HeaderMap,
    scope: Option<String>,
    error: Option<&str>,
) -> (HeaderName, String) {
    let config = state.auth.config();
    let realm = config.realm.clone().unwrap_or_else(|| {
        let host = request_host(headers).unwrap_or("localhost");
        format!("{}://{host}/token", state.scheme)
    });
    let mut value = format!(
        "Bearer realm={},service={}",
        quoted(&realm),
        quoted(&config.service)
    );
    if let Some(scope) = scope {
        value.push_str(&format!(",scope={}", quoted(&scope)));
    }
    if let Some(error) = error {
        value.push_str(&format!(",error={}", quoted(error)));
    }
    (header::WWW_AUTHENTICATE, value)
}

/// An RFC 9110 quoted-string: `"` and `\` escaped.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Maps a failed login to its answer.
pub fn login_error(e: AuthError, challenge: (HeaderName, String)) -> ApiError {
    let challenged = matches!(e, AuthError::BadCredentials | AuthError::InvalidToken(_));
    let answer = ApiError::from(e);
    if challenged {
        answer.with_header(challenge.0, challenge.1)
    } else {
        answer
    }
}

/// The one mapping of the auth layer's errors to API answers.
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let msg = e.to_string();
        match e {
            AuthError::RateLimited(wait) | AuthError::Busy(wait) => {
                ApiError::new(ErrorCode::TooManyRequests, msg)
                    .with_header(header::RETRY_AFTER, wait.as_secs().max(1).to_string())
            }
            AuthError::BadCredentials | AuthError::InvalidToken(_) | AuthError::Unauthenticated => {
                ApiError::new(ErrorCode::Unauthorized, msg)
            }
            AuthError::Forbidden(_) => ApiError::new(ErrorCode::Denied, msg),
            AuthError::NotFound(_) => ApiError::new(ErrorCode::NotFound, msg),
            AuthError::Conflict(_) | AuthError::InUse(_) => ApiError::new(ErrorCode::Conflict, msg),
            AuthError::Invalid(_) => ApiError::new(ErrorCode::InvalidRequest, msg),
            AuthError::Metadata(m) => ApiError::from(crate::core::Error::Metadata(m)),
            AuthError::Setup(_) => ApiError::new(ErrorCode::Unknown, msg),
        }
    }
}

/// Who is calling, from the request's credentials.
pub async fn identify(
    state: &ApiState,
    headers: &HeaderMap,
    source: IpAddr,
) -> Result<Grant, ApiError> {
    if !state.auth.enabled() {
        return Ok(Grant::Principal(Principal::Anonymous));
    }
    if let Some(token) = bearer_token(headers) {
        return state
            .auth
            .authenticator
            .verify_token(token)
            .map_err(|e| login_error(e, challenge(state, headers, None, Some("invalid_token"))));
    }
    match basic_credentials(headers) {
        Some((user, secret)) => state
            .auth
            .authenticator
            .login(&user, &secret, source)
            .await
            .map(Grant::Principal)
            .map_err(|e| login_error(e, challenge(state, headers, None, None))),
        None => Ok(Grant::Principal(Principal::Anonymous)),
    }
}

/// Checks that the caller may do what an endpoint requires (a refused
/// request's repository included). With authentication off anyone may.
pub async fn check_access(
    state: &ApiState,
    caller: &Caller,
    required: Option<&Permission>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(Permission { repo, action }) = required.filter(|_| state.auth.enabled()) else {
        return Ok(());
    };
    let permitted = state
        .auth
        .authorizer
        .permits(&caller.grant, repo, *action)
        .await
        .map_err(|e| login_error(e, challenge(state, headers, None, None)))?;
    if permitted {
        return Ok(());
    }
    Err(denied(state, &caller.grant, repo, *action, headers))
}

/// The answer to a caller who may not `action` on `repo`.
fn denied(
    state: &ApiState,
    grant: &Grant,
    repo: &RepoName,
    action: Action,
    headers: &HeaderMap,
) -> ApiError {
    let scope = format!("repository:{repo}:{}", action.as_str());
    match grant {
        Grant::Token { .. } => ApiError::new(
            ErrorCode::Unauthorized,
            format!("the token does not grant {} on {repo}", action.as_str()),
        )
        .with_header_pair(challenge(
            state,
            headers,
            Some(scope),
            Some("insufficient_scope"),
        )),
        g if g.is_anonymous() => ApiError::new(ErrorCode::Unauthorized, "authentication required")
            .with_header_pair(challenge(state, headers, Some(scope), None)),
        _ => ApiError::new(
            ErrorCode::Denied,
            format!("{} on {repo} is not allowed", action.as_str()),
        )
        .with_status(StatusCode::FORBIDDEN),
    }
}

/// A permitted push into a project that does not exist yet creates it,
/// owned by the pusher (with authentication on).
pub async fn create_project_on_push(
    state: &ApiState,
    caller: &Caller,
    required: Option<&Permission>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(Permission { repo, .. }) = required
        .filter(|p| p.action == Action::Push)
        .filter(|_| state.auth.enabled())
    else {
        return Ok(());
    };
    state
        .auth
        .accounts
        .ensure_project(repo, caller.grant.actor())
        .await
        .map_err(|e| login_error(e, challenge(state, headers, None, None)))
}

/// Keeps a mount's `from` only if the caller may pull from it.
pub async fn keep_readable_mount_from(state: &ApiState, caller: &Caller, endpoint: &mut Endpoint) {
    let Some(from) = endpoint.access().mount_from else {
        return;
    };
    let readable = state
        .auth
        .authorizer
        .permits(&caller.grant, &from, Action::Pull)
        .await
        .unwrap_or(false);
    if !readable {
        endpoint.forget_mount_from();
    }
}

/// What the caller may see in a listing. The catalog resolves a token to
/// its subject: it is filtered by what the caller may pull, not by the
/// repositories a token happens to name.
pub async fn visible(state: &ApiState, caller: &Caller, endpoint: &Endpoint) -> Visible {
    let principal = match (&caller.grant, endpoint) {
        (Grant::Principal(p), _) => p.clone(),
        (Grant::Token { subject, .. }, Endpoint::Catalog) => state
            .auth
            .authenticator
            .principal_named(subject)
            .await
            .unwrap_or(Principal::Anonymous),
        (Grant::Token { .. }, _) => Principal::Anonymous,
    };
    state.auth.authorizer.visible_to(&principal)
}

/// `GET /v2/`: any authenticated caller (anonymous callers get the
/// challenge that tells clients where to log in).
pub async fn authorize_base(
    state: &ApiState,
    headers: &HeaderMap,
    source: IpAddr,
) -> Result<(), ApiError> {
    let grant = identify(state, headers, source).await?;
    if state.auth.enabled() && grant.is_anonymous() {
        return Err(
            ApiError::new(ErrorCode::Unauthorized, "authentication required")
                .with_header_pair(challenge(state, headers, None, None)),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings_escape_quotes_and_backslashes() {
        assert_eq!(quoted("plain"), "\"plain\"");
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
