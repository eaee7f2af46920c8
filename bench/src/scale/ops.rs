//! The scale workload's requests and disk readings.

use super::*;

/// `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<from>`: 201.
pub(crate) async fn mount(t: &Target, repo: &str, digest: &str, from: &str) -> Result<()> {
    let url = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
    let r = t
        .request(
            Method::POST,
            &url,
            &[("content-length", "0")],
            ReqBody::Empty,
            &[201],
        )
        .await?;
    ensure!(
        header(&r, "location").is_some(),
        "POST {url}: 201 without a Location header"
    );
    if let Some(d) = header(&r, "docker-content-digest") {
        ensure!(
            d == digest,
            "POST {url}: Docker-Content-Digest {d}, expected {digest}"
        );
    }
    drain(r).await?;
    Ok(())
}

/// A new repository: the shared config and layer mounted, one manifest PUT.
pub(super) async fn create_repo(t: &Target, repo: &str, img: &Image, body: Bytes) -> Result<()> {
    mount(t, repo, &img.config_digest, SOURCE).await?;
    mount(t, repo, &img.layer_digest, SOURCE).await?;
    put_manifest(t, repo, "latest", body).await
}

pub(super) async fn head_status(t: &Target, url: &str, expect: u16) -> Result<()> {
    let r = t
        .request(Method::HEAD, url, &[], ReqBody::Empty, &[expect])
        .await?;
    drain(r).await?;
    Ok(())
}

/// What `docker push` does for an image whose blobs exist elsewhere: per blob
/// `HEAD` in the target (404), then a mount `POST` (201); then the manifest.
pub(super) async fn docker_push(t: &Target, repo: &str, img: &Image, body: Bytes) -> Result<()> {
    for digest in [&img.layer_digest, &img.config_digest] {
        head_status(t, &format!("/v2/{repo}/blobs/{digest}"), 404).await?;
        mount(t, repo, digest, SOURCE).await?;
    }
    put_manifest(t, repo, "latest", body).await
}

/// `POST` of a JSON body to the management API: `expect`, body discarded.
pub(super) async fn api_post(
    t: &Target,
    url: &str,
    body: serde_json::Value,
    expect: u16,
) -> Result<()> {
    let body = Bytes::from(serde_json::to_vec(&body)?);
    let len = body.len().to_string();
    let method = if url.contains("/members/") {
        Method::PUT
    } else {
        Method::POST
    };
    let r = t
        .request(
            method,
            url,
            &[
                ("content-type", "application/json"),
                ("content-length", &len),
            ],
            ReqBody::full(body),
            &[expect],
        )
        .await?;
    drain(r).await?;
    Ok(())
}

pub(super) async fn create_project(t: &Target, name: &str) -> Result<()> {
    api_post(
        t,
        "/api/v1/projects",
        serde_json::json!({ "name": name, "public": false }),
        201,
    )
    .await
}

pub(super) async fn create_user(t: &Target, name: &str, password: &str) -> Result<()> {
    api_post(
        t,
        "/api/v1/users",
        serde_json::json!({ "name": name, "password": password, "admin": false }),
        201,
    )
    .await
}

/// The newest audit event's id (0 when there is none): `GET /api/v1/audit?limit=1`
/// answers a JSON array, newest first, after flushing the writer's queue.
pub(super) async fn audit_newest(t: &Target) -> Result<i64> {
    let url = "/api/v1/audit?limit=1";
    let r = t
        .request(Method::GET, url, &[], ReqBody::Empty, &[200])
        .await?;
    let body = read_body(r).await?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("GET {url}: body is not JSON"))?;
    let a = v
        .as_array()
        .with_context(|| format!("GET {url}: not an array: {}", excerpt(&body)))?;
    match a.first() {
        None => Ok(0),
        Some(e) => e
            .get("id")
            .and_then(|id| id.as_i64())
            .with_context(|| format!("GET {url}: event without an integer id: {e}")),
    }
}

pub(super) fn excerpt(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(300)]);
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The `service` of the Bearer challenge an anonymous `GET /v2/` gets.
pub(super) async fn token_service(t: &Target) -> Result<String> {
    let anon = Target {
        authorization: None,
        ..t.clone()
    };
    let r = anon
        .request(Method::GET, "/v2/", &[], ReqBody::Empty, &[401])
        .await?;
    let challenge = header(&r, "www-authenticate").context("GET /v2/: 401 without a challenge")?;
    drain(r).await?;
    let start = challenge
        .find("service=\"")
        .with_context(|| format!("GET /v2/: no service in {challenge:?}"))?
        + "service=\"".len();
    let rest = &challenge[start..];
    let end = rest
        .find('"')
        .with_context(|| format!("GET /v2/: unterminated service in {challenge:?}"))?;
    Ok(rest[..end].to_string())
}

/// GET of a JSON list's first page: the names, and whether a next page is linked.
pub(super) async fn first_page(t: &Target, url: &str, field: &str) -> Result<(Vec<String>, bool)> {
    let r = t
        .request(Method::GET, url, &[], ReqBody::Empty, &[200])
        .await?;
    let next = next_link(&r).is_some();
    let body = read_body(r).await?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("GET {url}: body is not JSON"))?;
    let a = v
        .get(field)
        .and_then(|a| a.as_array())
        .with_context(|| format!("GET {url}: no {field:?} array in {}", excerpt(&body)))?;
    let names = a
        .iter()
        .map(|x| {
            x.as_str()
                .map(str::to_string)
                .with_context(|| format!("GET {url}: non-string in {field:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((names, next))
}

pub(super) fn check_sorted_distinct(url: &str, names: &[String]) -> Result<()> {
    ensure!(
        names.windows(2).all(|w| w[0] < w[1]),
        "GET {url}: names not sorted and distinct: {:?}...",
        &names[..names.len().min(5)]
    );
    Ok(())
}

/// Sums the sizes under `dir`: (file sizes, allocated blocks of files and
/// directories).
pub(super) fn disk_usage(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let (mut len, mut alloc) = (0u64, 0u64);
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            // Directories may vanish meanwhile (finished uploads).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            let md = match e.metadata() {
                Ok(m) => m,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            alloc += md.blocks() * 512;
            if md.is_dir() {
                stack.push(e.path());
            } else {
                len += md.len();
            }
        }
    }
    Ok((len, alloc))
}

pub(super) async fn disk(side: &Side) -> Result<(u64, u64)> {
    let dir = side.server.data.clone();
    let what = dir.display().to_string();
    tokio::task::spawn_blocking(move || disk_usage(&dir))
        .await?
        .with_context(|| format!("walking {what}"))
}
