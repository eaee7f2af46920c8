//! The token service: `GET /token` (Docker's token flow, Basic credentials
//! or anonymous) and `POST /token` (OAuth2 password and refresh_token
//! grants, as docker and containerd use them).

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::{basic_credentials, login_error, source_of};
use super::error::ApiError;
use super::ApiState;
use crate::auth::{parse_scopes, AuthError, IssuedToken, Principal};
use crate::oci::ErrorCode;

/// Largest form body accepted by `POST /token`.
const FORM_LIMIT: usize = 64 * 1024;

/// RFC 3339 UTC timestamp of a moment, to the second.
fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

fn token_error(state: &ApiState, e: AuthError) -> ApiError {
    let challenge = super::auth::challenge(state, &Default::default(), None, None);
    login_error(e, challenge)
}

fn all_scopes(pairs: &[(String, String)]) -> Vec<&str> {
    pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter(|s| !s.is_empty())
        .collect()
}

async fn grant(
    state: &ApiState,
    who: &Principal,
    scopes: &[&str],
    source: IpAddr,
) -> Result<IssuedToken, ApiError> {
    state
        .auth
        .authenticator
        .issue_token(who, parse_scopes(scopes), source)
        .await
        .map_err(|e| token_error(state, e))
}

/// `GET /token?service=…&scope=…` (an `offline_token` asks for nothing more: see below)
pub async fn get_token(State(state): State<ApiState>, req: Request) -> Response {
    let (req, _) = req.into_parts();
    let source = source_of(&req.extensions);
    let pairs: Vec<(String, String)> = req
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    let result = async {
        let who = match basic_credentials(&req.headers) {
            Some((user, secret)) => state
                .auth
                .authenticator
                .login(&user, &secret, source)
                .await
                .map_err(|e| token_error(&state, e))?,
            None => Principal::Anonymous,
        };
        let issued = grant(&state, &who, &all_scopes(&pairs), source).await?;
        let body = json!({
            "token": issued.token,
            "access_token": issued.token,
            "expires_in": issued.expires_in,
            "issued_at": rfc3339(issued.issued_at),
        });
        // No refresh token here, even for `offline_token=true`: docker asks
        // for one on every login and would keep it as its identity token
        // (which podman refuses in a shared auth file). Without one docker
        // keeps the password, so its login lasts as long as the password
        // does. OAuth2 clients get refresh tokens from `POST /token`.
        Ok::<_, ApiError>(json_ok(body))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
struct OAuthForm {
    grant_type: String,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    access_type: Option<String>,
}

/// `POST /token` with `grant_type=password` or `grant_type=refresh_token`.
pub async fn post_token(State(state): State<ApiState>, req: Request) -> Response {
    let source = source_of(req.extensions());
    let result = async {
        let bytes = axum::body::to_bytes(req.into_body(), FORM_LIMIT)
            .await
            .map_err(|e| bad_request(format!("reading the form failed: {e}")))?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| bad_request(format!("bad form: {e}")))?;
        let form: OAuthForm = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| bad_request(format!("bad form: {e}")))?;
        let who = match form.grant_type.as_str() {
            "password" => {
                let (Some(user), Some(password)) = (&form.username, &form.password) else {
                    return Err(bad_request("username and password are required".into()));
                };
                state.auth.authenticator.login(user, password, source).await
            }
            "refresh_token" => {
                let Some(token) = &form.refresh_token else {
                    return Err(bad_request("refresh_token is required".into()));
                };
                state.auth.authenticator.redeem_refresh_token(token).await
            }
            other => return Err(bad_request(format!("unsupported grant_type {other:?}"))),
        }
        .map_err(|e| token_error(&state, e))?;
        let scopes = all_scopes(&pairs);
        let issued = grant(&state, &who, &scopes, source).await?;
        let mut body = json!({
            "access_token": issued.token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "issued_at": rfc3339(issued.issued_at),
            "scope": scopes.join(" "),
        });
        if form.grant_type == "refresh_token" {
            body["refresh_token"] = json!(form.refresh_token);
        } else if form.access_type.as_deref() == Some("offline") {
            body["refresh_token"] = json!(state
                .auth
                .authenticator
                .issue_refresh_token(&who)
                .await
                .map_err(|e| token_error(&state, e))?);
        }
        Ok(json_ok(body))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

fn bad_request(message: String) -> ApiError {
    ApiError::new(ErrorCode::Unsupported, message).with_status(StatusCode::BAD_REQUEST)
}

fn json_ok(body: serde_json::Value) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|e| ApiError::new(ErrorCode::Unknown, e.to_string()).into_response())
}

#[cfg(test)]
mod tests {
    use super::rfc3339;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_764_063_000);
        assert_eq!(rfc3339(t), "2025-11-25T09:30:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}
