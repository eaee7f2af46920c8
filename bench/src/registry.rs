//! Registry operations (OCI Distribution Spec v1.1), each checking every response.

use anyhow::{bail, ensure, Context as _, Result};
use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use sha2::{Digest as _, Sha256};

use crate::data::{BlobSpec, Pool, ReqBody};
use crate::http::{drain, header, next_link, read_body, short, Target};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCTET: &str = "application/octet-stream";

pub fn sha256_digest(b: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(b))
}

fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

fn location<B>(resp: &http::Response<B>, what: &str) -> Result<String> {
    header(resp, "location").with_context(|| format!("{what}: response has no Location header"))
}

/// `POST /v2/<repo>/blobs/uploads/`: 202 and the session's Location.
pub async fn start_upload(t: &Target, repo: &str) -> Result<String> {
    let url = format!("/v2/{repo}/blobs/uploads/");
    let r = t
        .request(
            Method::POST,
            &url,
            &[("content-length", "0")],
            ReqBody::Empty,
            &[202],
        )
        .await?;
    let loc = location(&r, &format!("POST {url}"))?;
    drain(r).await?;
    Ok(loc)
}

/// Checks the 201 of a blob upload's final PUT.
async fn finish_created(
    r: http::Response<hyper::body::Incoming>,
    what: &str,
    digest: &str,
) -> Result<()> {
    location(&r, what)?;
    if let Some(d) = header(&r, "docker-content-digest") {
        ensure!(
            d == digest,
            "{what}: Docker-Content-Digest is {d}, expected {digest}"
        );
    }
    drain(r).await?;
    Ok(())
}

/// POST, then one PUT `?digest=` carrying the whole blob.
pub async fn push_monolithic(
    t: &Target,
    pool: &Pool,
    repo: &str,
    spec: BlobSpec,
    digest: &str,
) -> Result<()> {
    let loc = start_upload(t, repo).await?;
    let url = with_query(&loc, "digest", digest);
    let len = spec.len.to_string();
    let r = t
        .request(
            Method::PUT,
            &url,
            &[("content-type", OCTET), ("content-length", &len)],
            ReqBody::Gen(pool.body(spec, 0, spec.len)),
            &[201],
        )
        .await?;
    finish_created(r, &format!("PUT {}", short(&url)), digest).await
}

/// POST, PATCHes of `chunk` bytes with Content-Range, then PUT `?digest=`.
pub async fn push_chunked(
    t: &Target,
    pool: &Pool,
    repo: &str,
    spec: BlobSpec,
    digest: &str,
    chunk: u64,
) -> Result<()> {
    let mut loc = start_upload(t, repo).await?;
    let mut pos = 0;
    while pos < spec.len {
        let end = (pos + chunk).min(spec.len);
        let range = format!("{pos}-{}", end - 1);
        let len = (end - pos).to_string();
        let r = t
            .request(
                Method::PATCH,
                &loc,
                &[
                    ("content-type", OCTET),
                    ("content-range", &range),
                    ("content-length", &len),
                ],
                ReqBody::Gen(pool.body(spec, pos, end)),
                &[202],
            )
            .await?;
        let what = format!("PATCH {} (Content-Range {range})", short(&loc));
        if let Some(got) = header(&r, "range") {
            let want = format!("0-{}", end - 1);
            ensure!(
                got == want,
                "{what}: Range header is {got:?}, expected {want:?}"
            );
        }
        loc = location(&r, &what)?;
        drain(r).await?;
        pos = end;
    }
    let url = with_query(&loc, "digest", digest);
    let r = t
        .request(
            Method::PUT,
            &url,
            &[("content-length", "0")],
            ReqBody::Empty,
            &[201],
        )
        .await?;
    finish_created(r, &format!("PUT {}", short(&url)), digest).await
}

/// Pushes a small in-memory blob; returns its digest.
pub async fn push_small(t: &Target, repo: &str, data: Bytes) -> Result<String> {
    let digest = sha256_digest(&data);
    let loc = start_upload(t, repo).await?;
    put_small(t, &loc, data, &digest).await?;
    Ok(digest)
}

/// The one `PUT <loc>?digest=` carrying the whole of a small in-memory blob
/// into the upload session at `loc`: 201.
pub async fn put_small(t: &Target, loc: &str, data: Bytes, digest: &str) -> Result<()> {
    let url = with_query(loc, "digest", digest);
    let len = data.len().to_string();
    let r = t
        .request(
            Method::PUT,
            &url,
            &[("content-type", OCTET), ("content-length", &len)],
            ReqBody::full(data),
            &[201],
        )
        .await?;
    finish_created(r, &format!("PUT {}", short(&url)), digest).await
}

/// GET a blob and discard it (or hash it when `verify`); checks length and digest.
pub async fn pull_blob(t: &Target, repo: &str, digest: &str, len: u64, verify: bool) -> Result<()> {
    let url = format!("/v2/{repo}/blobs/{digest}");
    let r = t
        .request(Method::GET, &url, &[], ReqBody::Empty, &[200])
        .await?;
    if let Some(cl) = header(&r, "content-length") {
        ensure!(
            cl == len.to_string(),
            "GET {url}: Content-Length {cl}, expected {len}"
        );
    }
    let got = if verify {
        let mut h = Sha256::new();
        let mut n = 0u64;
        let mut body = r.into_body();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                n += data.len() as u64;
                h.update(&data);
            }
        }
        let d = format!("sha256:{:x}", h.finalize());
        ensure!(d == digest, "GET {url}: body hashes to {d}");
        n
    } else {
        drain(r).await?
    };
    ensure!(got == len, "GET {url}: got {got} bytes, expected {len}");
    Ok(())
}

/// The two blobs an image manifest refers to.
#[derive(Clone)]
pub struct Image {
    pub config_digest: String,
    pub config_len: usize,
    pub layer_digest: String,
    pub layer_len: usize,
}

fn image_blobs() -> (Bytes, Bytes) {
    let config = Bytes::from_static(
        br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#,
    );
    (config, Pool::small(42, 4096))
}

/// Uploads an image's config and layer blobs into `repo`.
pub async fn push_image_blobs(t: &Target, repo: &str) -> Result<Image> {
    let (config, layer) = image_blobs();
    let (config_len, layer_len) = (config.len(), layer.len());
    let config_digest = push_small(t, repo, config).await?;
    let layer_digest = push_small(t, repo, layer).await?;
    Ok(Image {
        config_digest,
        config_len,
        layer_digest,
        layer_len,
    })
}

/// An OCI image manifest; `annotation` makes it distinct.
pub fn manifest(img: &Image, annotation: &str) -> Bytes {
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": img.config_digest,
            "size": img.config_len,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": img.layer_digest,
            "size": img.layer_len,
        }],
        "annotations": { "org.example.berth-bench.id": annotation },
    });
    Bytes::from(serde_json::to_vec(&v).expect("manifest serializes"))
}

/// `PUT /v2/<repo>/manifests/<reference>`: 201, and the digest header if sent must match.
pub async fn put_manifest(t: &Target, repo: &str, reference: &str, body: Bytes) -> Result<()> {
    let url = format!("/v2/{repo}/manifests/{reference}");
    let digest = sha256_digest(&body);
    let len = body.len().to_string();
    let r = t
        .request(
            Method::PUT,
            &url,
            &[("content-type", OCI_MANIFEST), ("content-length", &len)],
            ReqBody::full(body),
            &[201],
        )
        .await?;
    if let Some(d) = header(&r, "docker-content-digest") {
        ensure!(
            d == digest,
            "PUT {url}: Docker-Content-Digest is {d}, expected {digest}"
        );
    }
    drain(r).await?;
    Ok(())
}

/// GET a JSON list endpoint (`tags/list` or `_catalog`), following `Link: rel="next"`
/// when `follow`. Returns the names in order and the number of pages.
pub async fn list_all(
    t: &Target,
    first: &str,
    field: &str,
    follow: bool,
    max_pages: usize,
) -> Result<(Vec<String>, usize)> {
    let mut url = first.to_string();
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        if pages > max_pages {
            bail!("GET {first}: more than {max_pages} pages of Link: rel=\"next\"; stopping");
        }
        let r = t
            .request(Method::GET, &url, &[], ReqBody::Empty, &[200])
            .await?;
        let next = next_link(&r);
        let body = read_body(r).await?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("GET {}: body is not JSON", short(&url)))?;
        match v.get(field) {
            Some(serde_json::Value::Array(a)) => {
                for x in a {
                    let s = x
                        .as_str()
                        .with_context(|| format!("GET {}: non-string in {field:?}", short(&url)))?;
                    names.push(s.to_string());
                }
            }
            // An empty last page may say `null`.
            Some(serde_json::Value::Null) | None if pages > 1 => {}
            _ => bail!(
                "GET {}: no {field:?} array in {}",
                short(&url),
                String::from_utf8_lossy(&body)
            ),
        }
        match next {
            Some(n) if follow => url = n,
            _ => break,
        }
    }
    Ok((names, pages))
}
