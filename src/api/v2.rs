//! `/v2/` handlers. Each gets its already parsed and authorized `Endpoint`,
//! reads what remains of the request (headers, body, paging), calls one
//! service method and maps the result to status, headers and body.

use std::io;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;

use super::endpoint::Endpoint;
use super::error::ApiError;
use crate::core::{ByteRange, ChunkHeaders, Registry};
use crate::metadata::Visible;
use crate::oci::{media, Digest, ErrorCode, Reference, RepoName};
use crate::storage::ByteStream;

const DIGEST_HEADER: &str = "docker-content-digest";
const UPLOAD_UUID: &str = "docker-upload-uuid";
const SUBJECT_HEADER: &str = "oci-subject";
const FILTERS_APPLIED: &str = "oci-filters-applied";

pub type ApiResult = Result<Response, ApiError>;

/// Query parameters used by any `/v2/` endpoint.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    pub(super) digest: Option<String>,
    pub(super) mount: Option<String>,
    pub(super) from: Option<String>,
    pub(super) n: Option<String>,
    pub(super) last: Option<String>,
    #[serde(rename = "artifactType")]
    pub(super) artifact_type: Option<String>,
}

/// Everything a handler may need from the request.
pub struct Request {
    /// What the caller may see, for answers filtered per caller.
    pub visible: Visible,
    pub params: Params,
    pub headers: HeaderMap,
    pub body: Body,
}

fn respond(status: StatusCode, headers: Vec<(HeaderName, String)>, body: Body) -> Response {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder
        .body(body)
        .unwrap_or_else(|e| ApiError::new(ErrorCode::Unknown, e.to_string()).into_response())
}

fn h(name: &'static str) -> HeaderName {
    HeaderName::from_static(name)
}

fn stream(body: Body) -> ByteStream {
    TryStreamExt::map_err(body.into_data_stream(), io::Error::other).boxed()
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, header::CONTENT_LENGTH).and_then(|v| v.parse().ok())
}

/// `Content-Range` of an upload chunk: `first-last`, optionally with a `bytes`
/// unit and a `/length`. Clients send the bare `first-last` (not RFC 9110's
/// form, which typed-header crates parse), so this stays hand-written.
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(raw) = header_str(headers, header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let spec = raw
        .trim()
        .trim_start_matches("bytes")
        .trim_start_matches(['=', ' ']);
    let spec = spec.split('/').next().unwrap_or("");
    let parsed = spec
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    parsed.map(Some).ok_or_else(|| {
        ApiError::new(
            ErrorCode::RangeInvalid,
            format!("malformed Content-Range {raw:?}"),
        )
    })
}

/// A single `Range: bytes=...` request; a reversed one is unsatisfiable
/// (416); anything else (several ranges, a unit other than bytes, a
/// malformed range) is served whole, as RFC 9110 allows.
fn byte_range(headers: &HeaderMap) -> Option<ByteRange> {
    use http_range_header::{
        RangeInvalid, RangeUnsatisfiableError, SyntacticallyCorrectRange as R,
    };
    let parsed = http_range_header::parse_range_header(header_str(headers, header::RANGE)?.trim());
    let ranges = match parsed {
        Ok(ranges) => ranges,
        Err(RangeUnsatisfiableError::Invalid(RangeInvalid::Reversed)) => {
            return Some(ByteRange::Reversed)
        }
        Err(_) => return None,
    };
    match ranges.into_ranges().as_slice() {
        [R::Indexed(start, end)] => Some(ByteRange::From {
            start: *start,
            end: Some(*end),
        }),
        [R::FromStart(start)] => Some(ByteRange::From {
            start: *start,
            end: None,
        }),
        [R::FromLast(n)] => Some(ByteRange::Suffix(*n)),
        _ => None,
    }
}

fn chunk_headers(headers: &HeaderMap) -> Result<ChunkHeaders, ApiError> {
    Ok(ChunkHeaders {
        range: content_range(headers)?,
        content_length: content_length(headers),
    })
}

fn range_value(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn page_size(params: &Params) -> Result<Option<u32>, ApiError> {
    params
        .n
        .as_deref()
        .map(|n| {
            n.parse::<u32>().map_err(|_| {
                ApiError::new(
                    ErrorCode::PaginationNumberInvalid,
                    format!("n={n:?} is not a count"),
                )
            })
        })
        .transpose()
}

pub async fn dispatch(reg: &Registry, endpoint: &Endpoint, req: Request) -> ApiResult {
    use Endpoint::*;
    match endpoint {
        Catalog => catalog(reg, req).await,
        ListTags { repo } => tags(reg, repo, req).await,
        GetManifest {
            repo,
            reference,
            with_body,
        } => get_manifest(reg, repo, reference, req, *with_body).await,
        PutManifest { repo, reference } => put_manifest(reg, repo, reference, req).await,
        DeleteManifest { repo, reference } => delete_manifest(reg, repo, reference).await,
        GetBlob { repo, digest } => get_blob(reg, repo, digest, req).await,
        HeadBlob { repo, digest } => head_blob(reg, repo, digest).await,
        DeleteBlob { repo, digest } => delete_blob(reg, repo, digest).await,
        StartUpload {
            repo,
            mount,
            digest,
        } => start_upload(reg, repo, mount.as_ref(), digest.as_ref(), req).await,
        UploadStatus { repo, id } => upload_status(reg, repo, id).await,
        UploadChunk { repo, id } => upload_chunk(reg, repo, id, req).await,
        FinishUpload { repo, id, digest } => finish_upload(reg, repo, id, digest, req).await,
        CancelUpload { repo, id } => cancel_upload(reg, repo, id).await,
        Referrers { repo, digest } => referrers(reg, repo, digest, req).await,
    }
}

fn link_next(
    path: &str,
    n: Option<u32>,
    page: &crate::core::ListPage,
) -> Vec<(HeaderName, String)> {
    match (page.more, page.items.last()) {
        (true, Some(last)) => {
            let n = n.map(|n| format!("n={n}&")).unwrap_or_default();
            vec![(
                header::LINK,
                format!("<{path}?{n}last={last}>; rel=\"next\""),
            )]
        }
        _ => Vec::new(),
    }
}

fn json_response(
    status: StatusCode,
    mut headers: Vec<(HeaderName, String)>,
    content_type: &str,
    body: Bytes,
) -> Response {
    headers.push((header::CONTENT_TYPE, content_type.to_string()));
    headers.push((header::CONTENT_LENGTH, body.len().to_string()));
    respond(status, headers, Body::from(body))
}

async fn catalog(reg: &Registry, req: Request) -> ApiResult {
    let n = page_size(&req.params)?;
    let page = reg.catalog(n, req.params.last, &req.visible).await?;
    let body = serde_json::json!({ "repositories": page.items }).to_string();
    Ok(json_response(
        StatusCode::OK,
        link_next("/v2/_catalog", n, &page),
        "application/json",
        body.into(),
    ))
}

async fn tags(reg: &Registry, repo: &RepoName, req: Request) -> ApiResult {
    let n = page_size(&req.params)?;
    let page = reg.list_tags(repo, n, req.params.last).await?;
    let body = serde_json::json!({ "name": repo.as_str(), "tags": page.items }).to_string();
    let link = link_next(&format!("/v2/{repo}/tags/list"), n, &page);
    Ok(json_response(
        StatusCode::OK,
        link,
        "application/json",
        body.into(),
    ))
}

async fn get_manifest(
    reg: &Registry,
    repo: &RepoName,
    reference: &Reference,
    req: Request,
    with_body: bool,
) -> ApiResult {
    let accept: Vec<&str> = req
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(media::essence)
        .filter(|t| !t.is_empty())
        .collect();
    let m = reg.get_manifest(repo, reference, &accept).await?;
    let headers = vec![
        (header::CONTENT_TYPE, m.media_type),
        (header::CONTENT_LENGTH, m.content.len().to_string()),
        (h(DIGEST_HEADER), m.digest.to_string()),
        (header::ETAG, format!("\"{}\"", m.digest)),
    ];
    let body = if with_body {
        Body::from(m.content)
    } else {
        Body::empty()
    };
    Ok(respond(StatusCode::OK, headers, body))
}

/// Reads a manifest body of at most `limit` bytes. A larger one is refused
/// with 413 after draining what the client sends (up to a bound), so that the
/// client reads the answer instead of a reset connection.
async fn manifest_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
    let too_large = ApiError::from(crate::core::Error::ManifestTooLarge { limit });
    let declared = content_length(headers);
    if declared.is_some_and(|len| len > DRAIN_LIMIT as u64) {
        return Err(too_large);
    }
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                ErrorCode::ManifestInvalid,
                format!("reading the manifest failed: {e}"),
            )
        })?;
        seen += chunk.len();
        if seen > DRAIN_LIMIT {
            break;
        }
        if seen <= limit {
            buf.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(too_large);
    }
    Ok(buf.freeze())
}

async fn put_manifest(
    reg: &Registry,
    repo: &RepoName,
    reference: &Reference,
    req: Request,
) -> ApiResult {
    let body = manifest_body(req.body, &req.headers, reg.settings().max_manifest_bytes).await?;
    let put = reg
        .put_manifest(
            repo,
            reference,
            header_str(&req.headers, header::CONTENT_TYPE),
            body,
        )
        .await?;
    let mut headers = vec![
        (
            header::LOCATION,
            format!("/v2/{repo}/manifests/{}", put.digest),
        ),
        (h(DIGEST_HEADER), put.digest.to_string()),
    ];
    if let Some(subject) = put.subject {
        headers.push((h(SUBJECT_HEADER), subject.to_string()));
    }
    Ok(respond(StatusCode::CREATED, headers, Body::empty()))
}

async fn delete_manifest(reg: &Registry, repo: &RepoName, reference: &Reference) -> ApiResult {
    reg.delete_manifest(repo, reference).await?;
    Ok(respond(StatusCode::ACCEPTED, vec![], Body::empty()))
}

fn blob_headers(digest: &Digest, len: u64) -> Vec<(HeaderName, String)> {
    vec![
        (header::CONTENT_LENGTH, len.to_string()),
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (h(DIGEST_HEADER), digest.to_string()),
        (header::ACCEPT_RANGES, "bytes".to_string()),
        (header::ETAG, format!("\"{digest}\"")),
    ]
}

async fn head_blob(reg: &Registry, repo: &RepoName, digest: &Digest) -> ApiResult {
    let size = reg.stat_blob(repo, digest).await?;
    Ok(respond(
        StatusCode::OK,
        blob_headers(digest, size),
        Body::empty(),
    ))
}

async fn get_blob(reg: &Registry, repo: &RepoName, digest: &Digest, req: Request) -> ApiResult {
    let range = byte_range(&req.headers);
    if range.is_none() {
        if let Some(url) = reg.blob_redirect(repo, digest).await? {
            let headers = vec![
                (header::LOCATION, url),
                (h(DIGEST_HEADER), digest.to_string()),
            ];
            return Ok(respond(
                StatusCode::TEMPORARY_REDIRECT,
                headers,
                Body::empty(),
            ));
        }
    }
    let blob = reg.get_blob(repo, digest, range).await?;
    let body = Body::from_stream(blob.stream);
    Ok(match blob.range {
        None => respond(StatusCode::OK, blob_headers(digest, blob.size), body),
        Some((first, last)) => {
            let mut headers = blob_headers(digest, last - first + 1);
            headers.push((
                header::CONTENT_RANGE,
                format!("bytes {first}-{last}/{}", blob.size),
            ));
            respond(StatusCode::PARTIAL_CONTENT, headers, body)
        }
    })
}

async fn delete_blob(reg: &Registry, repo: &RepoName, digest: &Digest) -> ApiResult {
    reg.delete_blob(repo, digest).await?;
    Ok(respond(StatusCode::ACCEPTED, vec![], Body::empty()))
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response {
    let headers = vec![
        (header::LOCATION, format!("/v2/{repo}/blobs/{digest}")),
        (h(DIGEST_HEADER), digest.to_string()),
        (header::CONTENT_LENGTH, "0".to_string()),
    ];
    respond(StatusCode::CREATED, headers, Body::empty())
}

fn upload_progress(status: StatusCode, repo: &RepoName, id: &str, size: u64) -> Response {
    let headers = vec![
        (header::LOCATION, format!("/v2/{repo}/blobs/uploads/{id}")),
        (header::RANGE, range_value(size)),
        (h(UPLOAD_UUID), id.to_string()),
        (header::CONTENT_LENGTH, "0".to_string()),
    ];
    respond(status, headers, Body::empty())
}

async fn start_upload(
    reg: &Registry,
    repo: &RepoName,
    mount: Option<&(Digest, Option<RepoName>)>,
    digest: Option<&Digest>,
    req: Request,
) -> ApiResult {
    if let Some((mount, from)) = mount {
        // Without `from` and with automatic mounts off nothing is mounted,
        // not even a blob the repository already holds: a new session.
        let wanted = req.params.from.is_some() || reg.settings().auto_mount;
        if wanted
            && reg
                .mount_blob(repo, mount, from.as_ref(), &req.visible)
                .await?
                .is_some()
        {
            return Ok(blob_created(repo, mount));
        }
    } else if let Some(d) = digest {
        let len = content_length(&req.headers);
        reg.upload_monolithic(repo, d, len, stream(req.body))
            .await?;
        return Ok(blob_created(repo, d));
    }
    let session = reg.start_upload(repo).await?;
    Ok(upload_progress(
        StatusCode::ACCEPTED,
        repo,
        &session.id,
        session.size,
    ))
}

async fn upload_status(reg: &Registry, repo: &RepoName, id: &str) -> ApiResult {
    let status = reg.upload_status(repo, id).await?;
    Ok(upload_progress(
        StatusCode::NO_CONTENT,
        repo,
        id,
        status.size,
    ))
}

async fn upload_chunk(reg: &Registry, repo: &RepoName, id: &str, req: Request) -> ApiResult {
    let chunk = chunk_headers(&req.headers)?;
    let status = reg.upload_chunk(repo, id, chunk, stream(req.body)).await?;
    Ok(upload_progress(StatusCode::ACCEPTED, repo, id, status.size))
}

async fn finish_upload(
    reg: &Registry,
    repo: &RepoName,
    id: &str,
    digest: &Digest,
    req: Request,
) -> ApiResult {
    let chunk = chunk_headers(&req.headers)?;
    reg.finish_upload(repo, id, digest, chunk, stream(req.body))
        .await?;
    Ok(blob_created(repo, digest))
}

async fn cancel_upload(reg: &Registry, repo: &RepoName, id: &str) -> ApiResult {
    reg.cancel_upload(repo, id).await?;
    Ok(respond(StatusCode::NO_CONTENT, vec![], Body::empty()))
}

async fn referrers(reg: &Registry, repo: &RepoName, subject: &Digest, req: Request) -> ApiResult {
    let filter = req.params.artifact_type.as_deref();
    let index = reg.referrers(repo, subject, filter).await?;
    let headers = match filter {
        Some(_) => vec![(h(FILTERS_APPLIED), "artifactType".to_string())],
        None => vec![],
    };
    Ok(json_response(
        StatusCode::OK,
        headers,
        media::OCI_INDEX,
        index,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, value.parse().unwrap());
        h
    }

    #[test]
    fn parses_range_requests() {
        assert_eq!(
            byte_range(&headers(header::RANGE, "bytes=0-9")),
            Some(ByteRange::From {
                start: 0,
                end: Some(9)
            })
        );
        assert_eq!(
            byte_range(&headers(header::RANGE, "bytes=5-")),
            Some(ByteRange::From {
                start: 5,
                end: None
            })
        );
        assert_eq!(
            byte_range(&headers(header::RANGE, "bytes=-5")),
            Some(ByteRange::Suffix(5))
        );
        assert_eq!(
            byte_range(&headers(header::RANGE, "bytes=5-2")),
            Some(ByteRange::Reversed)
        );
        assert_eq!(byte_range(&headers(header::RANGE, "bytes=0-1,4-5")), None);
        assert_eq!(byte_range(&headers(header::RANGE, "items=0-1")), None);
        assert_eq!(byte_range(&HeaderMap::new()), None);
    }

    #[test]
    fn parses_content_ranges() {
        assert_eq!(
            content_range(&headers(header::CONTENT_RANGE, "0-99")).unwrap(),
            Some((0, 99))
        );
        assert_eq!(
            content_range(&headers(header::CONTENT_RANGE, "bytes 100-199/*")).unwrap(),
            Some((100, 199))
        );
        assert!(content_range(&headers(header::CONTENT_RANGE, "nonsense")).is_err());
        assert_eq!(content_range(&HeaderMap::new()).unwrap(), None);
    }
}
