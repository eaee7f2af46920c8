//! Push: blob uploads (monolithic, chunked, streamed), upload status and cancel,
//! cross-repository mount, and manifest pushes of every format.
//!
//! Spec: distribution-spec "Workflow Categories / Push", endpoints end-4a, end-4b,
//! end-5, end-6, end-7, end-11, end-13, end-14; image-spec manifest, index, descriptor.

use berth_conformance::*;
use serde_json::json;

// ---------------------------------------------------------------------------
// Monolithic blob upload
// ---------------------------------------------------------------------------

/// POST then PUT: POST is 202 with a Location; PUT `<location>?digest=` is 201 with a
/// Location that is a pullable blob URL; the digest header names the blob.
#[test]
fn monolithic_post_then_put() {
    let reg = registry();
    let repo = unique_repo("post-put");
    let data = random_bytes(5000);
    let digest = sha256_digest(&data);

    let location = reg.start_upload(&repo);
    let put = reg
        .req(Method::PUT, &with_digest(&location, &digest))
        .octets(data.clone())
        .send();
    put.expect(201);
    if let Some(got) = put.header("Docker-Content-Digest") {
        assert_eq!(got, digest, "{}: Docker-Content-Digest", put.request);
    }
    let blob_location = put.must_header("Location").to_string();

    let resp = reg.get(&blob_location);
    resp.expect(200);
    assert_eq!(
        resp.body, data,
        "{}: blob at the returned Location",
        resp.request
    );
    let resp = reg.get(&format!("/v2/{repo}/blobs/{digest}"));
    resp.expect(200);
    assert_eq!(resp.body, data, "{}", resp.request);
}

/// Each POST opens its own session: the Locations differ.
#[test]
fn upload_sessions_are_unique() {
    let reg = registry();
    let repo = unique_repo("unique-sessions");
    let first = reg.start_upload(&repo);
    let second = reg.start_upload(&repo);
    assert_ne!(first, second, "two POSTs returned the same upload Location");
}

/// berth accepts a whole blob in the single POST: 201, Location, Docker-Content-Digest.
#[test]
fn single_post_monolithic_is_201() {
    berth_required!("single-POST monolithic upload (Distribution 2.8 answers 202)");
    let reg = registry();
    let repo = unique_repo("single-post-201");
    let data = random_bytes(2048);
    let digest = sha256_digest(&data);
    let post = reg
        .req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
        )
        .octets(data.clone())
        .send();
    post.expect(201)
        .expect_header("Docker-Content-Digest", &digest);
    let resp = reg.get(post.must_header("Location"));
    resp.expect(200);
    assert_eq!(resp.body, data, "{}", resp.request);
}

/// A single POST whose digest does not match the body is 400 DIGEST_INVALID.
#[test]
fn single_post_with_wrong_digest_is_digest_invalid() {
    berth_required!("single-POST monolithic upload (Distribution 2.8 answers 202)");
    let reg = registry();
    let repo = unique_repo("single-post-bad");
    let data = random_bytes(100);
    let wrong = random_digest();
    reg.req(
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/?digest={wrong}"),
    )
    .octets(data)
    .send()
    .expect_error(400, "DIGEST_INVALID");
    reg.head(&format!("/v2/{repo}/blobs/{wrong}")).expect(404);
}

/// PUT with a digest that does not match the uploaded bytes is 400 DIGEST_INVALID,
/// and no blob appears under either digest.
#[test]
fn put_with_wrong_digest_is_digest_invalid() {
    let reg = registry();
    let repo = unique_repo("wrong-digest");
    let data = random_bytes(1000);
    let wrong = random_digest();
    let location = reg.start_upload(&repo);
    reg.req(Method::PUT, &with_digest(&location, &wrong))
        .octets(data.clone())
        .send()
        .expect_error(400, "DIGEST_INVALID");
    reg.head(&format!("/v2/{repo}/blobs/{wrong}")).expect(404);
    reg.head(&format!("/v2/{repo}/blobs/{}", sha256_digest(&data)))
        .expect(404);
}

/// PUT with a malformed digest, or none, is 400 DIGEST_INVALID.
#[test]
fn put_with_malformed_or_missing_digest_is_400() {
    let reg = registry();
    let repo = unique_repo("malformed-put-digest");
    let data = random_bytes(100);
    for digest in ["sha256:nothex", "justtext"] {
        let location = reg.start_upload(&repo);
        reg.req(Method::PUT, &with_digest(&location, digest))
            .octets(data.clone())
            .send()
            .expect_error(400, "DIGEST_INVALID");
    }
    let location = reg.start_upload(&repo);
    reg.req(Method::PUT, &location)
        .octets(data)
        .send()
        .expect_error(400, "DIGEST_INVALID");
}

/// Layer de-duplication: once a blob is pushed, HEAD finds it, and pushing the same
/// bytes again still succeeds.
#[test]
fn pushing_an_existing_blob_again_succeeds() {
    let reg = registry();
    let repo = unique_repo("dedupe");
    let data = random_bytes(700);
    let digest = sha256_digest(&data);
    reg.head(&format!("/v2/{repo}/blobs/{digest}")).expect(404);
    reg.push_blob(&repo, &data);
    reg.head(&format!("/v2/{repo}/blobs/{digest}")).expect(200);
    reg.push_blob(&repo, &data);
    reg.get(&format!("/v2/{repo}/blobs/{digest}")).expect(200);
}

/// A zero-length blob can be pushed and pulled.
#[test]
fn empty_blob_round_trips() {
    let reg = registry();
    let repo = unique_repo("empty-blob");
    let digest = reg.push_blob(&repo, b"");
    let resp = reg.get(&format!("/v2/{repo}/blobs/{digest}"));
    resp.expect(200);
    assert!(resp.body.is_empty(), "{}: body not empty", resp.request);
    reg.head(&format!("/v2/{repo}/blobs/{digest}"))
        .expect(200)
        .expect_header("Content-Length", "0");
}

/// sha512 digests (image-spec registered algorithm): push and pull a blob by its sha512
/// digest. The registry may answer with its canonical (e.g. sha256) digest of the blob.
#[test]
fn sha512_blob_monolithic() {
    let reg = registry();
    let repo = unique_repo("sha512-mono");
    let data = random_bytes(3000);
    let digest = sha512_digest(&data);
    let location = reg.start_upload(&repo);
    let put = reg
        .req(Method::PUT, &with_digest(&location, &digest))
        .octets(data.clone())
        .send();
    put.expect(201);
    if let Some(got) = put.header("Docker-Content-Digest") {
        assert!(
            is_digest_of(got, &data),
            "{}: Docker-Content-Digest {got} is not a digest of the blob",
            put.request
        );
    }

    let resp = reg.get(&format!("/v2/{repo}/blobs/{digest}"));
    resp.expect(200);
    if let Some(got) = resp.header("Docker-Content-Digest") {
        assert!(
            is_digest_of(got, &data),
            "{}: Docker-Content-Digest {got} is not a digest of the body",
            resp.request
        );
    }
    assert_eq!(resp.body, data, "{}", resp.request);
    reg.head(&format!("/v2/{repo}/blobs/{digest}"))
        .expect(200)
        .expect_header("Content-Length", &data.len().to_string());
}

/// sha512 digests with a chunked upload, and a wrong sha512 digest is DIGEST_INVALID.
#[test]
fn sha512_blob_chunked_and_mismatch() {
    let reg = registry();
    let repo = unique_repo("sha512-chunked");
    let data = random_bytes(4000);
    let digest = sha512_digest(&data);
    let location = reg.start_upload(&repo);
    let patch = reg
        .req(Method::PATCH, &location)
        .header("Content-Range", "0-1999")
        .octets(data[..2000].to_vec())
        .send();
    patch.expect(202);
    let location = patch.must_header("Location").to_string();
    reg.req(Method::PUT, &with_digest(&location, &digest))
        .header("Content-Range", "2000-3999")
        .octets(data[2000..].to_vec())
        .send()
        .expect(201);
    let resp = reg.get(&format!("/v2/{repo}/blobs/{digest}"));
    resp.expect(200);
    assert_eq!(resp.body, data, "{}", resp.request);

    let other = random_bytes(10);
    let location = reg.start_upload(&repo);
    reg.req(
        Method::PUT,
        &with_digest(&location, &sha512_digest(b"not it")),
    )
    .octets(other)
    .send()
    .expect_error(400, "DIGEST_INVALID");
}

/// A manifest may reference layers by sha512 digest.
#[test]
fn manifest_referencing_sha512_layer() {
    let reg = registry();
    let repo = unique_repo("sha512-manifest");
    let config = config_blob();
    reg.push_blob(&repo, &config);
    let layer = random_bytes(800);
    let layer_digest = sha512_digest(&layer);
    reg.push_blob_as(&repo, &layer, &layer_digest);
    let layer_desc = Descriptor {
        media_type: OCI_LAYER.into(),
        digest: layer_digest,
        size: layer.len() as u64,
    };
    let manifest = to_bytes(&oci_manifest(
        &Descriptor::new(OCI_CONFIG, &config),
        &[layer_desc],
    ));
    let digest = reg.push_manifest(&repo, "sha512", OCI_MANIFEST, &manifest);
    reg.get_manifest(&repo, "sha512")
        .expect(200)
        .expect_header("Docker-Content-Digest", &digest);
}

// ---------------------------------------------------------------------------
// Chunked upload
// ---------------------------------------------------------------------------

/// POST (Content-Length: 0), PATCH chunks with Content-Range, PUT ?digest= with no body.
/// Each PATCH is 202 with Location and `Range: 0-<end>`.
#[test]
fn chunked_upload_with_content_range() {
    let reg = registry();
    let repo = unique_repo("chunked");
    let data = random_bytes(3 * 1024 + 17);
    let digest = sha256_digest(&data);
    let mut location = reg.start_upload(&repo);

    let chunks: Vec<&[u8]> = data.chunks(1024).collect();
    let mut offset = 0usize;
    for chunk in chunks {
        let end = offset + chunk.len() - 1;
        let patch = reg
            .req(Method::PATCH, &location)
            .header("Content-Range", &format!("{offset}-{end}"))
            .octets(chunk.to_vec())
            .send();
        patch
            .expect(202)
            .expect_header("Range", &format!("0-{end}"));
        location = patch.must_header("Location").to_string();
        offset = end + 1;
    }
    let put = reg
        .req(Method::PUT, &with_digest(&location, &digest))
        .body(Vec::new())
        .send();
    put.expect(201);
    put.must_header("Location");
    if let Some(got) = put.header("Docker-Content-Digest") {
        assert_eq!(got, digest, "{}", put.request);
    }
    let resp = reg.get(&format!("/v2/{repo}/blobs/{digest}"));
    resp.expect(200);
    assert_eq!(
        resp.body, data,
        "{}: reassembled blob differs",
        resp.request
    );
}

/// The final chunk MAY come with the closing PUT.
#[test]
fn chunked_upload_final_chunk_in_put() {
    let reg = registry();
    let repo = unique_repo("chunked-final-put");
    let data = random_bytes(2500);
    let digest = sha256_digest(&data);
    let location = reg.start_upload(&repo);
    let patch = reg
        .req(Method::PATCH, &location)
        .header("Content-Range", "0-1499")
        .octets(data[..1500].to_vec())
        .send();
    patch.expect(202).expect_header("Range", "0-1499");
    let location = patch.must_header("Location").to_string();
    reg.req(Method::PUT, &with_digest(&location, &digest))
        .header("Content-Range", "1500-2499")
        .octets(data[1500..].to_vec())
        .send()
        .expect(201);
    let resp = reg.get(&format!("/v2/{repo}/blobs/{digest}"));
    resp.expect(200);
    assert_eq!(resp.body, data, "{}", resp.request);
}

/// A chunk that does not start right after the previous one is 416; the upload
/// status then still reports the bytes received so far, and the upload can resume.
#[test]
fn out_of_order_chunk_is_416_and_upload_resumes() {
    berth_required!("416 for out-of-order chunks (Distribution 2.8 ignores Content-Range)");
    let reg = registry();
    let repo = unique_repo("chunk-416");
    let data = random_bytes(3000);
    let digest = sha256_digest(&data);
    let location = reg.start_upload(&repo);
    let patch = reg
        .req(Method::PATCH, &location)
        .header("Content-Range", "0-999")
        .octets(data[..1000].to_vec())
        .send();
    patch.expect(202);
    let location = patch.must_header("Location").to_string();

    // Skips bytes 1000..2000.
    reg.req(Method::PATCH, &location)
        .header("Content-Range", "2000-2999")
        .octets(data[2000..].to_vec())
        .send()
        .expect(416);

    let status = reg.get(&location);
    status.expect(204).expect_header("Range", "0-999");
    let location = status.must_header("Location").to_string();

    let patch = reg
        .req(Method::PATCH, &location)
        .header("Content-Range", "1000-2999")
        .octets(data[1000..].to_vec())
        .send();
    patch.expect(202).expect_header("Range", "0-2999");
    let location = patch.must_header("Location").to_string();
    reg.req(Method::PUT, &with_digest(&location, &digest))
        .body(Vec::new())
        .send()
        .expect(201);
    let resp = reg.get(&format!("/v2/{repo}/blobs/{digest}"));
    resp.expect(200);
    assert_eq!(resp.body, data, "{}", resp.request);
}

/// A chunk that overlaps bytes already received is out of order too: 416.
#[test]
fn overlapping_chunk_is_416() {
    berth_required!("416 for out-of-order chunks (Distribution 2.8 ignores Content-Range)");
    let reg = registry();
    let repo = unique_repo("chunk-overlap");
    let data = random_bytes(2000);
    let location = reg.start_upload(&repo);
    let patch = reg
        .req(Method::PATCH, &location)
        .header("Content-Range", "0-999")
        .octets(data[..1000].to_vec())
        .send();
    patch.expect(202);
    let location = patch.must_header("Location").to_string();
    reg.req(Method::PATCH, &location)
        .header("Content-Range", "500-1499")
        .octets(data[500..1500].to_vec())
        .send()
        .expect(416);
}

/// The first chunk's range MUST begin with 0: a first chunk starting elsewhere is 416.
#[test]
fn first_chunk_not_at_zero_is_416() {
    berth_required!("416 for out-of-order chunks (Distribution 2.8 ignores Content-Range)");
    let reg = registry();
    let repo = unique_repo("chunk-not-zero");
    let location = reg.start_upload(&repo);
    reg.req(Method::PATCH, &location)
        .header("Content-Range", "10-19")
        .octets(random_bytes(10))
        .send()
        .expect(416);
}

/// end-13: GET on an upload location is 204 with `Location` and `Range: 0-<end>`.
#[test]
fn upload_status_is_204_with_range_and_location() {
    let reg = registry();
    let repo = unique_repo("upload-status");
    let location = reg.start_upload(&repo);

    let status = reg.get(&location);
    status.expect(204);
    status.must_header("Location");

    let patch = reg
        .req(Method::PATCH, &location)
        .header("Content-Range", "0-1233")
        .octets(random_bytes(1234))
        .send();
    patch.expect(202);
    let location = patch.must_header("Location").to_string();

    let status = reg.get(&location);
    status.expect(204).expect_header("Range", "0-1233");
    let next = status.must_header("Location").to_string();
    assert!(
        status.body.is_empty(),
        "{}: 204 with a body",
        status.request
    );

    // The Location from the status response is usable for the next chunk.
    reg.req(Method::PATCH, &next)
        .header("Content-Range", "1234-1243")
        .octets(random_bytes(10))
        .send()
        .expect(202)
        .expect_header("Range", "0-1243");
}

/// Streamed upload (what docker does): PATCH without Content-Range appends the body;
/// each answer is 202 with Location and the Range received so far.
#[test]
fn streamed_patch_without_content_range() {
    let reg = registry();
    let repo = unique_repo("streamed");
    let data = random_bytes(6000);
    let digest = sha256_digest(&data);
    let mut location = reg.start_upload(&repo);
    let mut received = 0usize;
    for chunk in data.chunks(2500) {
        let patch = reg
            .req(Method::PATCH, &location)
            .octets(chunk.to_vec())
            .send();
        received += chunk.len();
        patch
            .expect(202)
            .expect_header("Range", &format!("0-{}", received - 1));
        location = patch.must_header("Location").to_string();
    }
    reg.req(Method::PUT, &with_digest(&location, &digest))
        .body(Vec::new())
        .send()
        .expect(201);
    let resp = reg.get(&format!("/v2/{repo}/blobs/{digest}"));
    resp.expect(200);
    assert_eq!(resp.body, data, "{}", resp.request);
}

/// Closing a chunked upload with the wrong digest is 400 DIGEST_INVALID.
#[test]
fn chunked_put_with_wrong_digest_is_digest_invalid() {
    let reg = registry();
    let repo = unique_repo("chunked-wrong-digest");
    let location = reg.start_upload(&repo);
    let patch = reg
        .req(Method::PATCH, &location)
        .header("Content-Range", "0-99")
        .octets(random_bytes(100))
        .send();
    patch.expect(202);
    let location = patch.must_header("Location").to_string();
    let wrong = random_digest();
    reg.req(Method::PUT, &with_digest(&location, &wrong))
        .body(Vec::new())
        .send()
        .expect_error(400, "DIGEST_INVALID");
    reg.head(&format!("/v2/{repo}/blobs/{wrong}")).expect(404);
}

// ---------------------------------------------------------------------------
// Upload sessions: unknown, completed, cancelled
// ---------------------------------------------------------------------------

/// end-14: DELETE on an upload location cancels it (204); afterwards GET, PATCH and
/// PUT on it are 404 BLOB_UPLOAD_UNKNOWN.
#[test]
fn cancelled_upload_is_unknown() {
    let reg = registry();
    let repo = unique_repo("cancel");
    let data = random_bytes(500);
    let location = reg.start_upload(&repo);
    let patch = reg
        .req(Method::PATCH, &location)
        .header("Content-Range", "0-499")
        .octets(data.clone())
        .send();
    patch.expect(202);
    let location = patch.must_header("Location").to_string();

    reg.req(Method::DELETE, &location)
        .body(Vec::new())
        .send()
        .expect(204);

    reg.get(&location).expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.req(Method::PATCH, &location)
        .header("Content-Range", "500-509")
        .octets(random_bytes(10))
        .send()
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.req(Method::PUT, &with_digest(&location, &sha256_digest(&data)))
        .body(Vec::new())
        .send()
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.req(Method::DELETE, &location)
        .send()
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

/// An upload id the registry never issued is 404 BLOB_UPLOAD_UNKNOWN for every method.
#[test]
fn unknown_upload_session_is_blob_upload_unknown() {
    berth_required!(
        "BLOB_UPLOAD_UNKNOWN for unknown upload ids (Distribution 2.8: BLOB_UPLOAD_INVALID)"
    );
    let reg = registry();
    let repo = unique_repo("unknown-upload");
    reg.push_blob(&repo, &random_bytes(10));
    let location = format!("/v2/{repo}/blobs/uploads/5f0c1a4e-9d1b-4c55-8a2b-2a3c4d5e6f70");
    let code = "BLOB_UPLOAD_UNKNOWN";
    reg.get(&location).expect_error(404, code);
    reg.req(Method::PATCH, &location)
        .octets(random_bytes(10))
        .send()
        .expect_error(404, code);
    reg.req(Method::PUT, &with_digest(&location, &random_digest()))
        .body(Vec::new())
        .send()
        .expect_error(404, code);
    reg.delete(&location).expect_error(404, code);
}

/// Once an upload is completed its session is gone: 404 BLOB_UPLOAD_UNKNOWN.
#[test]
fn completed_upload_session_is_gone() {
    let reg = registry();
    let repo = unique_repo("completed-upload");
    let data = random_bytes(300);
    let digest = sha256_digest(&data);
    let location = reg.start_upload(&repo);
    reg.req(Method::PUT, &with_digest(&location, &digest))
        .octets(data)
        .send()
        .expect(201);
    reg.get(&location).expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.req(Method::PATCH, &location)
        .octets(random_bytes(10))
        .send()
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
}

/// An upload session belongs to the repository it was opened in: its Location, moved
/// to another repository's path (query and all), is 404 BLOB_UPLOAD_UNKNOWN there.
#[test]
fn upload_session_is_scoped_to_its_repository() {
    berth_required!(
        "BLOB_UPLOAD_UNKNOWN for a session of another repository (Distribution 2.8: BLOB_UPLOAD_INVALID)"
    );
    let reg = registry();
    let repo = unique_repo("upload-scope-a");
    let other = unique_repo("upload-scope-b");
    reg.push_blob(&other, &random_bytes(10));
    let location = reg.url(&reg.start_upload(&repo));
    let moved = location.replacen(&format!("/v2/{repo}/"), &format!("/v2/{other}/"), 1);
    assert_ne!(
        moved, location,
        "upload Location {location} is not under /v2/{repo}/"
    );
    reg.get(&moved).expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    let data = random_bytes(10);
    reg.req(Method::PUT, &with_digest(&moved, &sha256_digest(&data)))
        .octets(data.clone())
        .send()
        .expect_error(404, "BLOB_UPLOAD_UNKNOWN");
    reg.head(&format!("/v2/{other}/blobs/{}", sha256_digest(&data)))
        .expect(404);
}

// ---------------------------------------------------------------------------
// Cross-repository mount
// ---------------------------------------------------------------------------

/// end-11: mounting a blob that exists in `from` is 201 with Location and
/// Docker-Content-Digest; the blob is then pullable from the target repository.
#[test]
fn cross_repository_mount() {
    let reg = registry();
    let source = unique_repo("mount-source");
    let target = unique_repo("mount-target");
    let data = random_bytes(4000);
    let digest = reg.push_blob(&source, &data);

    let resp = reg
        .req(
            Method::POST,
            &format!("/v2/{target}/blobs/uploads/?mount={digest}&from={source}"),
        )
        .body(Vec::new())
        .send();
    resp.expect(201)
        .expect_header("Docker-Content-Digest", &digest);
    let location = resp.must_header("Location").to_string();
    let blob = reg.get(&location);
    blob.expect(200);
    assert_eq!(blob.body, data, "{}", blob.request);
    reg.head(&format!("/v2/{target}/blobs/{digest}"))
        .expect(200)
        .expect_header("Content-Length", &data.len().to_string());
}

/// A mount whose blob is not in `from` falls back to an upload session (202 + Location)
/// that completes like any other.
#[test]
fn mount_of_missing_blob_falls_back_to_upload() {
    let reg = registry();
    let source = unique_repo("mount-missing-source");
    let target = unique_repo("mount-missing-target");
    reg.push_blob(&source, &random_bytes(10));
    let data = random_bytes(1500);
    let digest = sha256_digest(&data);

    let resp = reg
        .req(
            Method::POST,
            &format!("/v2/{target}/blobs/uploads/?mount={digest}&from={source}"),
        )
        .body(Vec::new())
        .send();
    resp.expect(202);
    let location = resp.must_header("Location").to_string();
    reg.req(Method::PUT, &with_digest(&location, &digest))
        .octets(data.clone())
        .send()
        .expect(201);
    let blob = reg.get(&format!("/v2/{target}/blobs/{digest}"));
    blob.expect(200);
    assert_eq!(blob.body, data, "{}", blob.request);
}

/// A mount from a repository that does not exist also falls back to 202.
#[test]
fn mount_from_unknown_repository_falls_back_to_upload() {
    let reg = registry();
    let target = unique_repo("mount-no-source");
    let nowhere = unique_repo("mount-nowhere");
    let digest = random_digest();
    let resp = reg
        .req(
            Method::POST,
            &format!("/v2/{target}/blobs/uploads/?mount={digest}&from={nowhere}"),
        )
        .body(Vec::new())
        .send();
    resp.expect(202);
    resp.must_header("Location");
}

// ---------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------

/// end-7 by tag: 201, Location (a pullable manifest URL), Docker-Content-Digest equal to
/// the sha256 of the bytes pushed.
#[test]
fn manifest_put_by_tag() {
    let reg = registry();
    let repo = unique_repo("put-by-tag");
    let image = reg.push_image(&repo, None);
    let put = reg.put_manifest(&repo, "v1.0", OCI_MANIFEST, &image.manifest);
    put.expect(201)
        .expect_header("Docker-Content-Digest", &image.digest);
    let location = put.must_header("Location").to_string();
    let resp = reg
        .req(Method::GET, &location)
        .header("Accept", OCI_MANIFEST)
        .send();
    resp.expect(200);
    assert_eq!(resp.body, image.manifest, "{}", resp.request);
}

/// end-7 by digest: 201, Location, Docker-Content-Digest equal to the digest in the URL.
#[test]
fn manifest_put_by_digest() {
    let reg = registry();
    let repo = unique_repo("put-by-digest");
    let config = config_blob();
    reg.push_blob(&repo, &config);
    let manifest = to_bytes(&oci_manifest(&Descriptor::new(OCI_CONFIG, &config), &[]));
    let digest = sha256_digest(&manifest);
    let put = reg.put_manifest(&repo, &digest, OCI_MANIFEST, &manifest);
    put.expect(201)
        .expect_header("Docker-Content-Digest", &digest);
    let location = put.must_header("Location").to_string();
    reg.req(Method::GET, &location)
        .header("Accept", OCI_MANIFEST)
        .send()
        .expect(200);
    let resp = reg.get_manifest(&repo, &digest);
    resp.expect(200).expect_header("Content-Type", OCI_MANIFEST);
    assert_eq!(resp.body, manifest, "{}", resp.request);
}

/// PUT by a digest that is not the digest of the body is 400 DIGEST_INVALID.
#[test]
fn manifest_put_by_wrong_digest_is_digest_invalid() {
    let reg = registry();
    let repo = unique_repo("put-wrong-digest");
    let image = reg.push_image(&repo, Some("base"));
    let wrong = random_digest();
    reg.put_manifest(&repo, &wrong, OCI_MANIFEST, &image.manifest)
        .expect_error(400, "DIGEST_INVALID");
    reg.get_manifest(&repo, &wrong).expect(404);
}

/// A manifest whose layer blob is missing is 400 MANIFEST_BLOB_UNKNOWN.
#[test]
fn manifest_with_missing_layer_is_manifest_blob_unknown() {
    let reg = registry();
    let repo = unique_repo("missing-layer");
    let config = config_blob();
    reg.push_blob(&repo, &config);
    let missing_layer = Descriptor::new(OCI_LAYER, &random_bytes(100));
    let manifest = to_bytes(&oci_manifest(
        &Descriptor::new(OCI_CONFIG, &config),
        &[missing_layer],
    ));
    reg.put_manifest(&repo, "broken", OCI_MANIFEST, &manifest)
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
    reg.get_manifest(&repo, "broken").expect(404);
}

/// A manifest whose config blob is missing is 400 MANIFEST_BLOB_UNKNOWN.
#[test]
fn manifest_with_missing_config_is_manifest_blob_unknown() {
    let reg = registry();
    let repo = unique_repo("missing-config");
    let layer = random_bytes(100);
    reg.push_blob(&repo, &layer);
    let config = Descriptor::new(OCI_CONFIG, &config_blob());
    let manifest = to_bytes(&oci_manifest(
        &config,
        &[Descriptor::new(OCI_LAYER, &layer)],
    ));
    reg.put_manifest(&repo, "broken", OCI_MANIFEST, &manifest)
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
}

/// A blob present only in another repository does not satisfy a manifest.
#[test]
fn manifest_blob_in_other_repository_is_manifest_blob_unknown() {
    let reg = registry();
    let repo = unique_repo("blob-elsewhere");
    let elsewhere = unique_repo("blob-elsewhere-src");
    let config = config_blob();
    reg.push_blob(&repo, &config);
    let layer = random_bytes(300);
    reg.push_blob(&elsewhere, &layer);
    let manifest = to_bytes(&oci_manifest(
        &Descriptor::new(OCI_CONFIG, &config),
        &[Descriptor::new(OCI_LAYER, &layer)],
    ));
    reg.put_manifest(&repo, "t", OCI_MANIFEST, &manifest)
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
}

/// Bodies that are not manifests are 400 MANIFEST_INVALID.
#[test]
fn invalid_manifest_is_manifest_invalid() {
    let reg = registry();
    let repo = unique_repo("manifest-invalid");
    reg.push_image(&repo, Some("ok"));
    let bodies: Vec<Vec<u8>> = vec![
        b"this is not json".to_vec(),
        b"{\"schemaVersion\": 2, \"config\": ".to_vec(),
        to_bytes(
            &json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": "nope", "layers": 7 }),
        ),
    ];
    for body in bodies {
        reg.put_manifest(&repo, "bad", OCI_MANIFEST, &body)
            .expect_error(400, "MANIFEST_INVALID");
    }
    reg.get_manifest(&repo, "bad").expect(404);
}

/// Clients MUST send a manifest's `mediaType` field as its Content-Type; a manifest
/// pushed under a contradicting Content-Type is refused with 400 MANIFEST_INVALID (as
/// Distribution does) rather than stored under the wrong type.
#[test]
fn manifest_media_type_mismatch_is_manifest_invalid() {
    let reg = registry();
    let repo = unique_repo("media-type-mismatch");
    let image = reg.push_image(&repo, Some("ok"));
    reg.put_manifest(&repo, "bad", OCI_INDEX, &image.manifest)
        .expect_error(400, "MANIFEST_INVALID");
}

/// Pushing a second tag to the same manifest, and moving a tag to another manifest.
#[test]
fn retag_and_move_tag() {
    let reg = registry();
    let repo = unique_repo("retag");
    let first = reg.push_image(&repo, Some("a"));
    reg.push_manifest(&repo, "b", OCI_MANIFEST, &first.manifest);
    reg.get_manifest(&repo, "b")
        .expect(200)
        .expect_header("Docker-Content-Digest", &first.digest);

    let second = reg.push_image(&repo, Some("a"));
    let resp = reg.get_manifest(&repo, "a");
    resp.expect(200)
        .expect_header("Docker-Content-Digest", &second.digest);
    assert_eq!(resp.body, second.manifest, "{}", resp.request);
    reg.get_manifest(&repo, "b")
        .expect(200)
        .expect_header("Docker-Content-Digest", &first.digest);
    reg.get_manifest(&repo, &first.digest).expect(200);
}

/// An OCI image index referencing child manifests by digest; GET returns it with the
/// index Content-Type, and the children stay pullable.
#[test]
fn oci_index_with_children() {
    let reg = registry();
    let repo = unique_repo("oci-index");
    let amd64 = reg.push_image(&repo, None);
    let arm64 = reg.push_image(&repo, None);
    let index = to_bytes(&index_of(
        OCI_INDEX,
        &[amd64.descriptor(), arm64.descriptor()],
    ));
    let put = reg.put_manifest(&repo, "multi", OCI_INDEX, &index);
    put.expect(201)
        .expect_header("Docker-Content-Digest", &sha256_digest(&index));

    let resp = reg.get_manifest(&repo, "multi");
    resp.expect(200)
        .expect_header("Content-Type", OCI_INDEX)
        .expect_header("Docker-Content-Digest", &sha256_digest(&index));
    assert_eq!(resp.body, index, "{}", resp.request);
    for child in [&amd64, &arm64] {
        reg.get_manifest(&repo, &child.digest)
            .expect(200)
            .expect_header("Content-Type", OCI_MANIFEST);
    }
}

/// An index may reference another index (nested index).
#[test]
fn nested_oci_index() {
    let reg = registry();
    let repo = unique_repo("nested-index");
    let image = reg.push_image(&repo, None);
    let inner = to_bytes(&index_of(OCI_INDEX, &[image.descriptor()]));
    let inner_digest = reg.push_manifest(&repo, &sha256_digest(&inner), OCI_INDEX, &inner);
    let inner_desc = Descriptor {
        media_type: OCI_INDEX.into(),
        digest: inner_digest,
        size: inner.len() as u64,
    };
    let outer = to_bytes(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [inner_desc.to_json()],
    }));
    reg.push_manifest(&repo, "outer", OCI_INDEX, &outer);
    reg.get_manifest(&repo, "outer")
        .expect(200)
        .expect_header("Content-Type", OCI_INDEX);
}

/// An index referencing a manifest the repository does not have is 400 MANIFEST_BLOB_UNKNOWN.
#[test]
fn index_with_missing_child_is_manifest_blob_unknown() {
    let reg = registry();
    let repo = unique_repo("index-missing-child");
    let present = reg.push_image(&repo, None);
    let missing = Descriptor::new(OCI_MANIFEST, &random_bytes(200));
    let index = to_bytes(&index_of(OCI_INDEX, &[present.descriptor(), missing]));
    reg.put_manifest(&repo, "broken", OCI_INDEX, &index)
        .expect_error(400, "MANIFEST_BLOB_UNKNOWN");
}

/// Docker image manifest v2 schema 2: pushed and pulled with its own media type.
#[test]
fn docker_schema2_manifest() {
    let reg = registry();
    let repo = unique_repo("docker-v2");
    let image = reg.push_image_of(&repo, Some("docker"), DOCKER_MANIFEST);
    let resp = reg.get_manifest(&repo, "docker");
    resp.expect(200)
        .expect_header("Content-Type", DOCKER_MANIFEST)
        .expect_header("Docker-Content-Digest", &image.digest);
    assert_eq!(resp.body, image.manifest, "{}", resp.request);
    reg.head_manifest(&repo, &image.digest)
        .expect(200)
        .expect_header("Content-Type", DOCKER_MANIFEST);
}

/// Docker manifest list over schema 2 manifests.
#[test]
fn docker_manifest_list() {
    let reg = registry();
    let repo = unique_repo("docker-list");
    let a = reg.push_image_of(&repo, None, DOCKER_MANIFEST);
    let b = reg.push_image_of(&repo, None, DOCKER_MANIFEST);
    let list = to_bytes(&index_of(
        DOCKER_MANIFEST_LIST,
        &[a.descriptor(), b.descriptor()],
    ));
    let digest = reg.push_manifest(&repo, "list", DOCKER_MANIFEST_LIST, &list);
    let resp = reg.get_manifest(&repo, "list");
    resp.expect(200)
        .expect_header("Content-Type", DOCKER_MANIFEST_LIST)
        .expect_header("Docker-Content-Digest", &digest);
    assert_eq!(resp.body, list, "{}", resp.request);
}

/// An artifact manifest (image-spec 1.1): `artifactType`, the empty config
/// (`application/vnd.oci.empty.v1+json`, `{}`), arbitrary layer types, and no top-level
/// `mediaType` (only SHOULD be set). Accepted with 201; pulled back with the
/// Content-Type it was pushed with.
#[test]
fn artifact_manifest_without_media_type_field() {
    let reg = registry();
    let repo = unique_repo("artifact");
    let empty = reg.push_empty_config(&repo);
    let payload = b"{\"sbom\": true}".to_vec();
    reg.push_blob(&repo, &payload);
    let manifest = to_bytes(&json!({
        "schemaVersion": 2,
        "artifactType": "application/vnd.example.sbom.v1",
        "config": empty.to_json(),
        "layers": [Descriptor::new("application/vnd.example.sbom.v1+json", &payload).to_json()],
        "annotations": { "org.opencontainers.image.created": "2024-01-01T00:00:00Z" },
    }));
    let put = reg.put_manifest(&repo, "sbom", OCI_MANIFEST, &manifest);
    put.expect(201)
        .expect_header("Docker-Content-Digest", &sha256_digest(&manifest));
    let resp = reg.get_manifest(&repo, "sbom");
    resp.expect(200).expect_header("Content-Type", OCI_MANIFEST);
    assert_eq!(resp.body, manifest, "{}", resp.request);
}

/// An image manifest with no layers at all (the list of blobs MAY be empty).
#[test]
fn manifest_with_no_layers() {
    let reg = registry();
    let repo = unique_repo("no-layers");
    let empty = reg.push_empty_config(&repo);
    let manifest = to_bytes(&oci_manifest(&empty, &[]));
    let digest = reg.push_manifest(&repo, "empty", OCI_MANIFEST, &manifest);
    reg.get_manifest(&repo, "empty")
        .expect(200)
        .expect_header("Docker-Content-Digest", &digest);
}

/// A registry MUST accept a manifest whose `subject` names a manifest that does not
/// exist (referrers may be pushed before their subject).
#[test]
fn manifest_with_missing_subject_is_accepted() {
    let reg = registry();
    let repo = unique_repo("subject-missing");
    let empty = reg.push_empty_config(&repo);
    let subject = Descriptor::new(OCI_MANIFEST, &random_bytes(300));
    let mut doc = oci_manifest(&empty, &[]);
    doc["artifactType"] = json!("application/vnd.example.signature.v1");
    doc["subject"] = subject.to_json();
    let manifest = to_bytes(&doc);
    let digest = sha256_digest(&manifest);
    reg.put_manifest(&repo, &digest, OCI_MANIFEST, &manifest)
        .expect(201);
    reg.get_manifest(&repo, &digest).expect(200);
}

/// A manifest pushed with a `subject` is answered with `OCI-Subject: <subject digest>`
/// (the registry tells the client it indexed the referrer).
#[test]
fn manifest_with_subject_returns_oci_subject_header() {
    berth_required!("OCI 1.1 subject processing (OCI-Subject header)");
    let reg = registry();
    let repo = unique_repo("oci-subject");
    let image = reg.push_image(&repo, Some("app"));
    let empty = reg.push_empty_config(&repo);
    let mut doc = oci_manifest(&empty, &[]);
    doc["artifactType"] = json!("application/vnd.example.signature.v1");
    doc["subject"] = image.descriptor().to_json();
    let manifest = to_bytes(&doc);
    reg.put_manifest(&repo, &sha256_digest(&manifest), OCI_MANIFEST, &manifest)
        .expect(201)
        .expect_header("OCI-Subject", &image.digest);
}

/// Registries SHOULD accept manifests of at least 4 MB, and SHOULD answer larger
/// ones than their limit with 413.
#[test]
fn large_manifest_accepted_up_to_4mb() {
    let reg = registry();
    let repo = unique_repo("large-manifest");
    let empty = reg.push_empty_config(&repo);
    let mut doc = oci_manifest(&empty, &[]);
    // ~3.9 MB of annotations.
    let mut annotations = serde_json::Map::new();
    for i in 0..3900 {
        annotations.insert(format!("org.example.k{i:05}"), json!("v".repeat(990)));
    }
    doc["annotations"] = serde_json::Value::Object(annotations);
    let manifest = to_bytes(&doc);
    assert!(manifest.len() > 3_800_000 && manifest.len() <= 4 * 1024 * 1024);
    let digest = reg.push_manifest(&repo, "big", OCI_MANIFEST, &manifest);
    let resp = reg.get_manifest(&repo, "big");
    resp.expect(200)
        .expect_header("Docker-Content-Digest", &digest);
    assert_eq!(resp.body.len(), manifest.len(), "{}", resp.request);
}

/// A manifest over the registry's size limit SHOULD be refused with 413, and is not stored.
#[test]
fn oversized_manifest_is_refused() {
    berth_required!("413 for oversized manifests (Distribution 2.8: 400 MANIFEST_INVALID)");
    let reg = registry();
    let repo = unique_repo("oversized-manifest");
    let empty = reg.push_empty_config(&repo);
    let mut doc = oci_manifest(&empty, &[]);
    doc["annotations"] = json!({ "org.example.pad": "x".repeat(40 * 1024 * 1024) });
    let manifest = to_bytes(&doc);
    reg.put_manifest(&repo, "huge", OCI_MANIFEST, &manifest)
        .expect(413);
    reg.get_manifest(&repo, "huge").expect(404);
}
