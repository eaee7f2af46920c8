//! A browser's side of berth's web UI: signing in (the CSRF token, the
//! login-nonce cookie, the session cookie) and timed page GETs.

use anyhow::{ensure, Context as _, Result};
use bytes::Bytes;
use http::Method;

use crate::data::ReqBody;
use crate::http::{header, read_body, Target};

pub const SESSION_COOKIE: &str = "berth_session";
const LOGIN_COOKIE: &str = "berth_login";

/// The value a `Set-Cookie` header of `resp` gives cookie `name`.
fn set_cookie<B>(resp: &http::Response<B>, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let first = v.split(';').next()?.trim();
            let (k, val) = first.split_once('=')?;
            (k == name).then(|| val.to_string())
        })
}

/// Signs in as the browser does; returns the session cookie's value.
pub async fn login(t: &Target, user: &str, password: &str) -> Result<String> {
    let r = t
        .request(Method::GET, "/ui/login", &[], ReqBody::Empty, &[200])
        .await?;
    let nonce = set_cookie(&r, LOGIN_COOKIE)
        .filter(|v| !v.is_empty())
        .with_context(|| format!("GET /ui/login: no {LOGIN_COOKIE} cookie set"))?;
    let body = read_body(r).await?;
    let html = String::from_utf8_lossy(&body);
    let marker = "name=\"csrf\" value=\"";
    let start = html
        .find(marker)
        .context("GET /ui/login: no CSRF field in the form")?
        + marker.len();
    let csrf = &html[start..];
    let csrf = &csrf[..csrf
        .find('"')
        .context("GET /ui/login: CSRF field unterminated")?];
    ensure!(
        csrf.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "GET /ui/login: unexpected CSRF token {csrf:?}"
    );
    ensure!(
        user.bytes()
            .chain(password.bytes())
            .all(|b| b.is_ascii_alphanumeric()),
        "user name or password needs URL encoding"
    );
    let form = format!("username={user}&password={password}&csrf={csrf}&next=%2Fui");
    let cookie = format!("{LOGIN_COOKIE}={nonce}");
    let len = form.len().to_string();
    let r = t
        .request(
            Method::POST,
            "/ui/login",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("content-length", &len),
                ("cookie", &cookie),
            ],
            ReqBody::full(Bytes::from(form)),
            &[303, 302],
        )
        .await?;
    let location = header(&r, "location").unwrap_or_default();
    ensure!(
        location == "/ui",
        "POST /ui/login: redirected to {location:?}, expected /ui"
    );
    let session = set_cookie(&r, SESSION_COOKIE)
        .filter(|v| !v.is_empty())
        .with_context(|| format!("POST /ui/login: no {SESSION_COOKIE} cookie set"))?;
    read_body(r).await?;
    Ok(session)
}

/// GET of a UI page with the session cookie: its body, and the server's
/// `Server-Timing` `app;dur=` in ms.
pub async fn get_page(t: &Target, url: &str, cookie: &str) -> Result<(Bytes, f64)> {
    let r = t
        .request(
            Method::GET,
            url,
            &[("cookie", cookie)],
            ReqBody::Empty,
            &[200],
        )
        .await?;
    let timing = header(&r, "server-timing")
        .with_context(|| format!("GET {url}: no Server-Timing header"))?;
    let dur = timing
        .split(';')
        .find_map(|p| p.trim().strip_prefix("dur="))
        .and_then(|d| d.parse::<f64>().ok())
        .with_context(|| format!("GET {url}: Server-Timing {timing:?} has no dur="))?;
    Ok((read_body(r).await?, dur))
}
