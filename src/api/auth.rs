//! Authentication at the HTTP boundary: reads `Authorization`, asks the
//! auth service who the caller is, checks the access each `/v2` endpoint
//! declares (`route::required_access`), and answers 401 with a Bearer
//! challenge (or 403, or 429) before any handler runs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, HeaderName, Method, StatusCode};
use base64::Engine;

use super::error::ApiError;
use super::route::{required_access, V2Route};
use super::AppState;
use crate::auth::{AuthError, Grant, Principal};
use crate::oci::{ErrorCode, RepoName};

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub grant: Grant,
    pub source: IpAddr,
}

/// The client's address (unspecified when the transport gives none, as in
/// in-process tests).
pub fn source_of(extensions: &axum::http::Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// `WWW-Authenticate` for this registry, optionally naming a scope and an
/// error (`invalid_token`, `insufficient_scope`).
pub fn challenge(
    state: &AppState,
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

/// The request's `Host` if it is one: a host name, an IPv4 address or a
/// bracketed IPv6 address, with an optional port. Anything else (quotes,
/// commas, spaces, `@`, `/`…) could rewrite a challenge or a link built
/// from it, so it is not used.
pub fn request_host(headers: &HeaderMap) -> Option<&str> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            v6.parse::<std::net::Ipv6Addr>().ok()?;
            match after {
                "" => (None, None),
                after => (None, Some(after.strip_prefix(':')?)),
            }
        }
        None => match host.rsplit_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        },
    };
    let name_ok = name.is_none_or(|n| {
        !n.is_empty()
            && n.len() <= 253
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    });
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok());
    (name_ok && port_ok).then_some(host)
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

/// Splits a Basic `Authorization` header into user and secret.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, secret) = text.split_once(':')?;
    Some((user.to_string(), secret.to_string()))
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
    match e {
        AuthError::RateLimited(wait) | AuthError::Busy(wait) => {
            ApiError::new(ErrorCode::TooManyRequests, e.to_string())
                .with_header(header::RETRY_AFTER, wait.as_secs().max(1).to_string())
        }
        AuthError::BadCredentials | AuthError::InvalidToken(_) => {
            ApiError::new(ErrorCode::Unauthorized, e.to_string())
                .with_header(challenge.0, challenge.1)
        }
        AuthError::Metadata(m) => ApiError::from(crate::core::Error::Metadata(m)),
    }
}

/// Who is calling, from the request's credentials.
pub async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    source: IpAddr,
) -> Result<Grant, ApiError> {
    if !state.auth.enabled() {
        return Ok(Grant::Principal(Principal::Anonymous));
    }
    if let Some(token) = bearer_token(headers) {
        return state
            .auth
            .verify_token(token)
            .map_err(|e| login_error(e, challenge(state, headers, None, Some("invalid_token"))));
    }
    match basic_credentials(headers) {
        Some((user, secret)) => state
            .auth
            .login(&user, &secret, source)
            .await
            .map(Grant::Principal)
            .map_err(|e| login_error(e, challenge(state, headers, None, None))),
        None => Ok(Grant::Principal(Principal::Anonymous)),
    }
}

/// Authenticates the caller and checks the access `route` declares.
pub async fn authorize(
    state: &AppState,
    route: &V2Route<'_>,
    method: &Method,
    headers: &HeaderMap,
    source: IpAddr,
) -> Result<Caller, ApiError> {
    let grant = identify(state, headers, source).await?;
    let caller = Caller { grant, source };
    if !state.auth.enabled() {
        return Ok(caller);
    }
    let Some((name, action)) = required_access(route, method) else {
        return Ok(caller);
    };
    // A malformed name is the handler's NAME_INVALID, not an auth failure.
    let Ok(repo) = name.parse::<RepoName>() else {
        return Ok(caller);
    };
    let permitted = state
        .auth
        .permits(&caller.grant, &repo, action)
        .await
        .map_err(|e| login_error(e, challenge(state, headers, None, None)))?;
    if permitted {
        if action == crate::metadata::Action::Push {
            state
                .auth
                .ensure_project(&repo, caller.grant.actor())
                .await
                .map_err(|e| login_error(e, challenge(state, headers, None, None)))?;
        }
        return Ok(caller);
    }
    let scope = format!("repository:{repo}:{}", action.as_str());
    Err(match &caller.grant {
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
    })
}

/// `GET /v2/`: any authenticated caller (anonymous callers get the
/// challenge that tells clients where to log in).
pub async fn authorize_base(
    state: &AppState,
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

    fn host(value: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, value.parse().unwrap());
        request_host(&headers).map(str::to_string)
    }

    #[test]
    fn only_real_hosts_make_a_realm() {
        for good in [
            "localhost",
            "registry.example.com",
            "127.0.0.1:5000",
            "[::1]",
            "[::1]:5000",
            "my_host-1:443",
        ] {
            assert_eq!(host(good).as_deref(), Some(good), "{good}");
        }
        for bad in [
            "evil\",error=\"x",
            "a b",
            "user@host",
            "host/path",
            "host:port",
            "host:99999",
            "[::1",
            "[nothost]:80",
            "[::1]x",
            "",
            "a,b",
        ] {
            assert_eq!(host(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn quoted_strings_escape_quotes_and_backslashes() {
        assert_eq!(quoted("plain"), "\"plain\"");
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
