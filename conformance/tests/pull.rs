//! Pull: `GET /v2/`, `GET`/`HEAD` of blobs and manifests, ranges, 404s, names.
//!
//! Spec: distribution-spec "Workflow Categories / Pull" and "Determining Support",
//! endpoints end-1, end-2, end-3.

use berth_conformance::*;

/// end-1: a registry implementing the spec answers `GET /v2/` with 200, and
/// (Docker API) `Docker-Distribution-API-Version: registry/2.0`.
#[test]
fn api_version_check() {
    let reg = registry();
    let resp = reg.get("/v2/");
    resp.expect(200)
        .expect_header("Docker-Distribution-API-Version", "registry/2.0");
}

/// end-2: GET of an existing blob is 200 with the blob's bytes, and
/// `Docker-Content-Digest`, if present, matches the body.
#[test]
fn blob_get_returns_content_and_digest() {
    let reg = registry();
    let repo = unique_repo("blob-get");
    let data = random_bytes(4096);
    let digest = reg.push_blob(&repo, &data);

    let resp = reg.get(&format!("/v2/{repo}/blobs/{digest}"));
    resp.expect(200);
    assert_eq!(
        resp.body, data,
        "{}: body differs from the pushed blob",
        resp.request
    );
    if let Some(got) = resp.header("Docker-Content-Digest") {
        assert_eq!(got, digest, "{}: Docker-Content-Digest", resp.request);
    }
    if let Some(len) = resp.header("Content-Length") {
        assert_eq!(
            len,
            data.len().to_string(),
            "{}: Content-Length",
            resp.request
        );
    }
}

/// end-2: HEAD of an existing blob is 200 with `Content-Length` (the blob size),
/// `Docker-Content-Digest`, and no body.
#[test]
fn blob_head_returns_length_and_digest_without_body() {
    let reg = registry();
    let repo = unique_repo("blob-head");
    let data = random_bytes(3000);
    let digest = reg.push_blob(&repo, &data);

    let resp = reg.head(&format!("/v2/{repo}/blobs/{digest}"));
    resp.expect(200)
        .expect_header("Content-Length", &data.len().to_string())
        .expect_header("Docker-Content-Digest", &digest);
    assert!(
        resp.body.is_empty(),
        "{}: HEAD returned a body",
        resp.request
    );
}

/// end-2: an unknown blob in an existing repository is 404 (BLOB_UNKNOWN), for GET and HEAD.
#[test]
fn blob_unknown_is_404() {
    let reg = registry();
    let repo = unique_repo("blob-unknown");
    reg.push_blob(&repo, &random_bytes(64));
    let missing = random_digest();

    reg.get(&format!("/v2/{repo}/blobs/{missing}"))
        .expect_error(404, "BLOB_UNKNOWN");
    let head = reg.head(&format!("/v2/{repo}/blobs/{missing}"));
    head.expect(404);
    assert!(
        head.body.is_empty(),
        "{}: HEAD returned a body",
        head.request
    );
}

/// end-2: a blob in a repository that does not exist is 404.
#[test]
fn blob_in_unknown_repository_is_404() {
    let reg = registry();
    let repo = unique_repo("blob-no-repo");
    let missing = random_digest();
    reg.get(&format!("/v2/{repo}/blobs/{missing}"))
        .expect_error(404, "BLOB_UNKNOWN");
    reg.head(&format!("/v2/{repo}/blobs/{missing}")).expect(404);
}

/// A blob pushed to one repository is not pullable through another one that
/// never received or mounted it.
#[test]
fn blob_is_scoped_to_its_repository() {
    let reg = registry();
    let owner = unique_repo("blob-scope-a");
    let other = unique_repo("blob-scope-b");
    let digest = reg.push_blob(&owner, &random_bytes(256));
    reg.push_blob(&other, &random_bytes(256));
    reg.get(&format!("/v2/{other}/blobs/{digest}"))
        .expect_error(404, "BLOB_UNKNOWN");
}

/// Resumable pull: registries SHOULD support `Range` on blobs (RFC 9110): 206 with
/// the requested bytes and a matching `Content-Range`.
#[test]
fn blob_range_request() {
    let reg = registry();
    let repo = unique_repo("blob-range");
    let data = random_bytes(10_000);
    let digest = reg.push_blob(&repo, &data);
    let path = format!("/v2/{repo}/blobs/{digest}");

    let resp = reg
        .req(Method::GET, &path)
        .header("Range", "bytes=100-1099")
        .send();
    resp.expect(206)
        .expect_header("Content-Range", "bytes 100-1099/10000");
    assert_eq!(resp.body, &data[100..1100], "{}: ranged body", resp.request);

    // Open-ended range: the rest of the blob, as a client resuming a download asks.
    let resp = reg
        .req(Method::GET, &path)
        .header("Range", "bytes=9000-")
        .send();
    resp.expect(206)
        .expect_header("Content-Range", "bytes 9000-9999/10000");
    assert_eq!(resp.body, &data[9000..], "{}: ranged body", resp.request);
}

/// A range that starts past the end of the blob is 416, with `Content-Range: bytes */<size>`
/// (RFC 9110 14.4) and a well-framed response.
#[test]
fn blob_unsatisfiable_range_is_416() {
    berth_required!(
        "well-framed 416 (Distribution 2.8 sends a Content-Length larger than its body)"
    );
    let reg = registry();
    let repo = unique_repo("blob-range-416");
    let data = random_bytes(100);
    let digest = reg.push_blob(&repo, &data);
    reg.req(Method::GET, &format!("/v2/{repo}/blobs/{digest}"))
        .header("Range", "bytes=500-600")
        .send()
        .expect(416)
        .expect_header("Content-Range", "bytes */100");
}

/// end-3: GET a manifest by tag: 200, the exact bytes pushed, `Content-Type` the pushed
/// media type, `Docker-Content-Digest` the sha256 of the body.
#[test]
fn manifest_get_by_tag() {
    let reg = registry();
    let repo = unique_repo("manifest-get-tag");
    let image = reg.push_image(&repo, Some("v1"));

    let resp = reg.get_manifest(&repo, "v1");
    resp.expect(200)
        .expect_header("Content-Type", OCI_MANIFEST)
        .expect_header("Docker-Content-Digest", &image.digest);
    assert_eq!(
        resp.body, image.manifest,
        "{}: manifest bytes differ",
        resp.request
    );
}

/// end-3: GET a manifest by digest.
#[test]
fn manifest_get_by_digest() {
    let reg = registry();
    let repo = unique_repo("manifest-get-digest");
    let image = reg.push_image(&repo, Some("latest"));

    let resp = reg.get_manifest(&repo, &image.digest);
    resp.expect(200)
        .expect_header("Content-Type", OCI_MANIFEST)
        .expect_header("Docker-Content-Digest", &image.digest);
    assert_eq!(
        resp.body, image.manifest,
        "{}: manifest bytes differ",
        resp.request
    );
}

/// end-3: HEAD a manifest by tag and by digest: 200 with `Content-Length`,
/// `Content-Type`, `Docker-Content-Digest`, and no body.
#[test]
fn manifest_head_by_tag_and_digest() {
    let reg = registry();
    let repo = unique_repo("manifest-head");
    let image = reg.push_image(&repo, Some("stable"));

    for reference in ["stable", image.digest.as_str()] {
        let resp = reg.head_manifest(&repo, reference);
        resp.expect(200)
            .expect_header("Content-Length", &image.manifest.len().to_string())
            .expect_header("Content-Type", OCI_MANIFEST)
            .expect_header("Docker-Content-Digest", &image.digest);
        assert!(
            resp.body.is_empty(),
            "{}: HEAD returned a body",
            resp.request
        );
    }
}

/// The registry MUST store the manifest in the exact byte representation given:
/// unusual whitespace and key order survive, and the digest is over those bytes.
#[test]
fn manifest_bytes_are_stored_exactly() {
    let reg = registry();
    let repo = unique_repo("manifest-exact");
    let config = config_blob();
    let layer = random_bytes(512);
    let config_digest = reg.push_blob(&repo, &config);
    let layer_digest = reg.push_blob(&repo, &layer);
    let body = format!(
        "{{\"layers\":[ {{\"size\":{},\"digest\":\"{layer_digest}\",\"mediaType\":\"{OCI_LAYER}\"}} ],\n\t\
         \"config\" : {{\"digest\":\"{config_digest}\",\"size\":{},\"mediaType\":\"{OCI_CONFIG}\"}},\
         \"mediaType\":\"{OCI_MANIFEST}\",   \"schemaVersion\":2}}\n\n",
        layer.len(),
        config.len()
    )
    .into_bytes();
    let digest = sha256_digest(&body);
    let put = reg.put_manifest(&repo, "odd", OCI_MANIFEST, &body);
    put.expect(201)
        .expect_header("Docker-Content-Digest", &digest);

    for reference in ["odd", digest.as_str()] {
        let resp = reg.get_manifest(&repo, reference);
        resp.expect(200)
            .expect_header("Docker-Content-Digest", &digest);
        assert_eq!(resp.body, body, "{}: stored bytes differ", resp.request);
    }
}

/// end-3: an unknown tag in an existing repository is 404 MANIFEST_UNKNOWN.
#[test]
fn manifest_unknown_tag_is_404() {
    let reg = registry();
    let repo = unique_repo("manifest-unknown-tag");
    reg.push_image(&repo, Some("present"));
    reg.get_manifest(&repo, "absent")
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.head_manifest(&repo, "absent").expect(404);
}

/// end-3: an unknown digest in an existing repository is 404 MANIFEST_UNKNOWN.
#[test]
fn manifest_unknown_digest_is_404() {
    let reg = registry();
    let repo = unique_repo("manifest-unknown-digest");
    reg.push_image(&repo, Some("present"));
    let missing = random_digest();
    reg.get_manifest(&repo, &missing)
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.head_manifest(&repo, &missing).expect(404);
}

/// "An attempt to pull a nonexistent repository MUST return response code 404".
#[test]
fn manifest_in_unknown_repository_is_404() {
    let reg = registry();
    let repo = unique_repo("manifest-no-repo");
    reg.get_manifest(&repo, "latest")
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.head_manifest(&repo, "latest").expect(404);
}

/// Repository names of many path components work for push and pull.
#[test]
fn deep_repository_names_work() {
    let reg = registry();
    let repo = format!("{}/b/c/d/e/f/g/h", unique_repo("deep"));
    let image = reg.push_image(&repo, Some("deep"));
    let resp = reg.get_manifest(&repo, "deep");
    resp.expect(200)
        .expect_header("Docker-Content-Digest", &image.digest);
    let layer = &image.layers[0];
    reg.head(&format!("/v2/{repo}/blobs/{}", layer.digest))
        .expect(200);
    let tags = reg.get(&format!("/v2/{repo}/tags/list"));
    tags.expect(200);
    assert_eq!(tags.json()["name"], repo.as_str(), "{}", tags.request);
}

/// Names using every separator the name grammar allows
/// (`[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` per component) work.
#[test]
fn names_with_all_separators_work() {
    let reg = registry();
    let base = unique_repo("separators");
    for suffix in ["a.b", "a_b", "a__b", "a-b", "a---b", "0numeric9"] {
        let repo = format!("{base}/{suffix}");
        let image = reg.push_image(&repo, Some("t"));
        reg.get_manifest(&repo, "t")
            .expect(200)
            .expect_header("Docker-Content-Digest", &image.digest);
    }
}

/// Tag names may use the whole tag grammar `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`,
/// including upper case, a leading underscore and the maximum length of 128.
#[test]
fn tags_with_full_grammar_work() {
    let reg = registry();
    let repo = unique_repo("tag-grammar");
    let image = reg.push_image(&repo, None);
    let long = format!("L{}", "x".repeat(127));
    for tag in ["UPPER.case-1_2", "_leading", "9.0", long.as_str()] {
        reg.push_manifest(&repo, tag, OCI_MANIFEST, &image.manifest);
        reg.get_manifest(&repo, tag)
            .expect(200)
            .expect_header("Docker-Content-Digest", &image.digest);
    }
}

/// berth answers invalid repository names with 400 NAME_INVALID
/// (Distribution 2.8 answers most with a plain-text router 404).
#[test]
fn invalid_names_are_name_invalid() {
    berth_required!("400 NAME_INVALID for invalid repository names");
    let reg = registry();
    let too_long = (
        "GET",
        format!("/v2/conformance/{}/manifests/latest", "a".repeat(300)),
    );
    let cases: Vec<_> = invalid_name_targets()
        .into_iter()
        .chain([too_long])
        .map(|(method, target)| (method, target, 400, "NAME_INVALID"))
        .collect();
    reg.expect_raw_errors(&cases);
}

/// Requests whose repository name breaks the grammar, one name per rule, on the
/// manifest, tags-list and upload endpoints.
fn invalid_name_targets() -> Vec<(&'static str, String)> {
    let names = [
        "conformance/UpperCase",
        "conformance/../escape",
        "conformance/./dot",
        "/conformance/leading-slash",
        "conformance//empty-component",
        "conformance/trailing-slash/",
        "conformance/-leading-dash",
        "conformance/trailing-dash-",
        "conformance/a___b",
        "conformance/.hidden",
        "conformance/sp%20ace",
    ];
    let mut targets = Vec::new();
    for name in names {
        targets.push(("GET", format!("/v2/{name}/manifests/latest")));
        targets.push(("GET", format!("/v2/{name}/tags/list")));
        targets.push(("POST", format!("/v2/{name}/blobs/uploads/")));
    }
    targets
}

/// A malformed digest in a blob URL is 400 DIGEST_INVALID.
#[test]
fn malformed_digests_in_blob_urls_are_digest_invalid() {
    let reg = registry();
    let repo = unique_repo("bad-digest-blob");
    reg.push_image(&repo, Some("x"));
    let cases: Vec<_> = malformed_digests()
        .into_iter()
        .flat_map(|d| blob_reads(&repo, &d, 400, "DIGEST_INVALID"))
        .collect();
    reg.expect_raw_errors(&cases);
}

/// berth answers 400 DIGEST_INVALID for blob digests Distribution 2.8 does
/// not even route (a plain-text 404 there).
#[test]
fn unrouted_malformed_digests_in_blob_urls_are_digest_invalid() {
    berth_required!("DIGEST_INVALID for digests Distribution 2.8 does not route");
    let reg = registry();
    let repo = unique_repo("bad-digest-blob-unrouted");
    reg.push_image(&repo, Some("x"));
    let cases: Vec<_> = unrouted_malformed_digests()
        .into_iter()
        .flat_map(|d| blob_reads(&repo, &d, 400, "DIGEST_INVALID"))
        .collect();
    reg.expect_raw_errors(&cases);
}

/// A malformed digest in a manifest URL is 400 DIGEST_INVALID; without a
/// separator it is a tag, which names no manifest: 404 MANIFEST_UNKNOWN
/// (Distribution 2.8 looks such references up as tags and fails with 500).
#[test]
fn malformed_digests_in_manifest_urls_are_client_errors() {
    berth_required!("400/404 for malformed manifest digests (Distribution 2.8 answers 500)");
    let reg = registry();
    let repo = unique_repo("bad-digest-manifest");
    reg.push_image(&repo, Some("x"));
    let mut cases = Vec::new();
    for digest in malformed_digests()
        .into_iter()
        .chain(unrouted_malformed_digests())
    {
        let (status, code) = if digest.contains(':') {
            (400, "DIGEST_INVALID")
        } else {
            (404, "MANIFEST_UNKNOWN")
        };
        for method in ["GET", "HEAD"] {
            cases.push((
                method,
                format!("/v2/{repo}/manifests/{digest}"),
                status,
                code,
            ));
        }
    }
    reg.expect_raw_errors(&cases);
}

/// A reference that is neither a tag nor a digest names no manifest: GET,
/// HEAD and DELETE are 404 MANIFEST_UNKNOWN, as the OCI conformance suite
/// expects for `.INVALID_MANIFEST_NAME`.
#[test]
fn invalid_references_name_no_manifest() {
    berth_required!("MANIFEST_UNKNOWN for invalid tags (Distribution 2.8 does not route them)");
    let reg = registry();
    let repo = unique_repo("invalid-reference");
    reg.push_image(&repo, Some("x"));
    let cases: Vec<_> = ["GET", "HEAD", "DELETE"]
        .into_iter()
        .map(|m| {
            (
                m,
                format!("/v2/{repo}/manifests/.INVALID_MANIFEST_NAME"),
                404,
                "MANIFEST_UNKNOWN",
            )
        })
        .collect();
    reg.expect_raw_errors(&cases);
}

fn blob_reads(
    repo: &str,
    digest: &str,
    status: u16,
    code: &'static str,
) -> Vec<(&'static str, String, u16, &'static str)> {
    ["GET", "HEAD"]
        .into_iter()
        .map(|m| (m, format!("/v2/{repo}/blobs/{digest}"), status, code))
        .collect()
}
