//! Content management: deleting manifests, tags and blobs.
//!
//! Spec: distribution-spec "Workflow Categories / Content Management", endpoints
//! end-9 and end-10. Registries MAY disable deletion; berth enables it, and so must
//! the registry under test (Distribution: `storage.delete.enabled: true`).

use berth_conformance::*;
use serde_json::json;

/// end-9 by digest: 202; then GET/HEAD by digest and by every tag pointing at it are 404.
#[test]
fn delete_manifest_by_digest() {
    let reg = registry();
    let repo = unique_repo("delete-manifest");
    let image = reg.push_image(&repo, Some("one"));
    reg.push_manifest(&repo, "two", OCI_MANIFEST, &image.manifest);
    let keep = reg.push_image(&repo, Some("keep"));

    reg.delete(&format!("/v2/{repo}/manifests/{}", image.digest))
        .expect(202);

    reg.get_manifest(&repo, &image.digest)
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.head_manifest(&repo, &image.digest).expect(404);
    for tag in ["one", "two"] {
        reg.get_manifest(&repo, tag)
            .expect_error(404, "MANIFEST_UNKNOWN");
    }
    // Other content of the repository is untouched.
    reg.get_manifest(&repo, "keep")
        .expect(200)
        .expect_header("Docker-Content-Digest", &keep.digest);
}

/// Deleting a manifest by digest also drops the tags pointing at it from the tags list.
#[test]
fn delete_manifest_removes_its_tags_from_list() {
    let reg = registry();
    let repo = unique_repo("delete-manifest-tags");
    let gone = reg.push_image(&repo, Some("gone"));
    reg.push_image(&repo, Some("kept"));
    reg.delete(&format!("/v2/{repo}/manifests/{}", gone.digest))
        .expect(202);
    let resp = reg.get(&format!("/v2/{repo}/tags/list"));
    resp.expect(200);
    assert_eq!(resp.json()["tags"], json!(["kept"]), "{}", resp.request);
}

/// A manifest deleted then pushed again is served again.
#[test]
fn deleted_manifest_can_be_pushed_again() {
    let reg = registry();
    let repo = unique_repo("delete-repush");
    let image = reg.push_image(&repo, Some("v"));
    reg.delete(&format!("/v2/{repo}/manifests/{}", image.digest))
        .expect(202);
    reg.get_manifest(&repo, "v").expect(404);
    reg.push_manifest(&repo, "v", OCI_MANIFEST, &image.manifest);
    let resp = reg.get_manifest(&repo, "v");
    resp.expect(200);
    assert_eq!(resp.body, image.manifest, "{}", resp.request);
}

/// end-9 by tag: 202 and only the tag goes; the manifest stays reachable by digest and
/// by its other tags.
#[test]
fn delete_tag_keeps_manifest() {
    berth_required!("tag deletion (Distribution 2.8 only deletes by digest)");
    let reg = registry();
    let repo = unique_repo("delete-tag");
    let image = reg.push_image(&repo, Some("old"));
    reg.push_manifest(&repo, "current", OCI_MANIFEST, &image.manifest);

    reg.delete(&format!("/v2/{repo}/manifests/old")).expect(202);

    reg.get_manifest(&repo, "old")
        .expect_error(404, "MANIFEST_UNKNOWN");
    reg.head_manifest(&repo, "old").expect(404);
    let resp = reg.get_manifest(&repo, &image.digest);
    resp.expect(200)
        .expect_header("Docker-Content-Digest", &image.digest);
    assert_eq!(resp.body, image.manifest, "{}", resp.request);
    reg.get_manifest(&repo, "current").expect(200);
    let tags = reg.get(&format!("/v2/{repo}/tags/list"));
    tags.expect(200);
    assert_eq!(tags.json()["tags"], json!(["current"]), "{}", tags.request);
}

/// Deleting an unknown tag is 404.
#[test]
fn delete_unknown_tag_is_404() {
    berth_required!("tag deletion (Distribution 2.8 only deletes by digest)");
    let reg = registry();
    let repo = unique_repo("delete-unknown-tag");
    reg.push_image(&repo, Some("present"));
    reg.delete(&format!("/v2/{repo}/manifests/absent"))
        .expect_error(404, "MANIFEST_UNKNOWN");
}

/// Deleting a manifest the repository does not have is 404 MANIFEST_UNKNOWN.
#[test]
fn delete_unknown_manifest_is_404() {
    let reg = registry();
    let repo = unique_repo("delete-unknown-manifest");
    reg.push_image(&repo, Some("present"));
    reg.delete(&format!("/v2/{repo}/manifests/{}", random_digest()))
        .expect_error(404, "MANIFEST_UNKNOWN");
}

/// Deleting a manifest in a repository that does not exist is 404.
#[test]
fn delete_manifest_in_unknown_repository_is_404() {
    let reg = registry();
    let repo = unique_repo("delete-no-repo");
    reg.delete(&format!("/v2/{repo}/manifests/{}", random_digest()))
        .expect_error(404, "MANIFEST_UNKNOWN");
}

/// Deleting an index leaves its child manifests in place.
#[test]
fn delete_index_keeps_children() {
    let reg = registry();
    let repo = unique_repo("delete-index");
    let a = reg.push_image(&repo, None);
    let b = reg.push_image(&repo, None);
    let index = to_bytes(&index_of(OCI_INDEX, &[a.descriptor(), b.descriptor()]));
    let digest = reg.push_manifest(&repo, "multi", OCI_INDEX, &index);
    reg.delete(&format!("/v2/{repo}/manifests/{digest}"))
        .expect(202);
    reg.get_manifest(&repo, "multi").expect(404);
    reg.get_manifest(&repo, &a.digest).expect(200);
    reg.get_manifest(&repo, &b.digest).expect(200);
}

/// end-10: DELETE of a blob is 202; then GET/HEAD are 404 and a second DELETE is 404.
#[test]
fn delete_blob() {
    let reg = registry();
    let repo = unique_repo("delete-blob");
    let data = random_bytes(1000);
    let digest = reg.push_blob(&repo, &data);
    let kept = reg.push_blob(&repo, &random_bytes(1000));
    let path = format!("/v2/{repo}/blobs/{digest}");

    reg.delete(&path).expect(202);
    reg.get(&path).expect_error(404, "BLOB_UNKNOWN");
    reg.head(&path).expect(404);
    reg.delete(&path).expect_error(404, "BLOB_UNKNOWN");
    reg.get(&format!("/v2/{repo}/blobs/{kept}")).expect(200);
}

/// Deleting a blob from one repository leaves it in another one that has it too.
#[test]
fn delete_blob_is_scoped_to_the_repository() {
    let reg = registry();
    let first = unique_repo("delete-blob-scope-a");
    let second = unique_repo("delete-blob-scope-b");
    let data = random_bytes(800);
    let digest = reg.push_blob(&first, &data);
    reg.push_blob(&second, &data);
    reg.delete(&format!("/v2/{first}/blobs/{digest}"))
        .expect(202);
    reg.head(&format!("/v2/{first}/blobs/{digest}")).expect(404);
    let resp = reg.get(&format!("/v2/{second}/blobs/{digest}"));
    resp.expect(200);
    assert_eq!(resp.body, data, "{}", resp.request);
}

/// Deleting an unknown blob is 404 BLOB_UNKNOWN.
#[test]
fn delete_unknown_blob_is_404() {
    let reg = registry();
    let repo = unique_repo("delete-unknown-blob");
    reg.push_blob(&repo, &random_bytes(10));
    reg.delete(&format!("/v2/{repo}/blobs/{}", random_digest()))
        .expect_error(404, "BLOB_UNKNOWN");
}

/// A deleted blob can be uploaded again.
#[test]
fn deleted_blob_can_be_pushed_again() {
    let reg = registry();
    let repo = unique_repo("delete-blob-repush");
    let data = random_bytes(600);
    let digest = reg.push_blob(&repo, &data);
    reg.delete(&format!("/v2/{repo}/blobs/{digest}"))
        .expect(202);
    reg.push_blob(&repo, &data);
    let resp = reg.get(&format!("/v2/{repo}/blobs/{digest}"));
    resp.expect(200);
    assert_eq!(resp.body, data, "{}", resp.request);
}

/// A malformed digest in a DELETE is 400 DIGEST_INVALID and deletes nothing.
#[test]
fn malformed_digests_in_delete_urls_are_digest_invalid() {
    let reg = registry();
    let repo = unique_repo("bad-digest-delete");
    let image = reg.push_image(&repo, Some("x"));
    let mut cases = Vec::new();
    for digest in malformed_digests() {
        for path in [
            format!("/v2/{repo}/blobs/{digest}"),
            format!("/v2/{repo}/manifests/{digest}"),
        ] {
            cases.push(("DELETE", path, 400, "DIGEST_INVALID"));
        }
    }
    reg.expect_raw_errors(&cases);
    reg.get_manifest(&repo, "x")
        .expect(200)
        .expect_header("Docker-Content-Digest", &image.digest);
}

/// berth parses what Distribution 2.8 does not route: a malformed digest is
/// 400 DIGEST_INVALID, and a digest without separator is a tag that names no
/// manifest (404 MANIFEST_UNKNOWN); nothing is deleted.
#[test]
fn unrouted_malformed_digests_in_delete_urls() {
    berth_required!("DIGEST_INVALID for digests Distribution 2.8 does not route");
    let reg = registry();
    let repo = unique_repo("bad-digest-delete-unrouted");
    let image = reg.push_image(&repo, Some("x"));
    let mut cases = Vec::new();
    for digest in unrouted_malformed_digests() {
        cases.push((
            "DELETE",
            format!("/v2/{repo}/blobs/{digest}"),
            400,
            "DIGEST_INVALID",
        ));
        let manifest = if digest.contains(':') {
            (400, "DIGEST_INVALID")
        } else {
            (404, "MANIFEST_UNKNOWN")
        };
        cases.push((
            "DELETE",
            format!("/v2/{repo}/manifests/{digest}"),
            manifest.0,
            manifest.1,
        ));
    }
    reg.expect_raw_errors(&cases);
    reg.get_manifest(&repo, "x")
        .expect(200)
        .expect_header("Docker-Content-Digest", &image.digest);
}

/// Deleting a referrer removes it from its subject's referrers list.
#[test]
fn deleted_referrer_leaves_referrers_list() {
    berth_required!("OCI 1.1 referrers API");
    let reg = registry();
    let repo = unique_repo("delete-referrer");
    let image = reg.push_image(&repo, Some("app"));
    let empty = reg.push_empty_config(&repo);
    let mut digests = Vec::new();
    for artifact_type in ["application/vnd.example.a", "application/vnd.example.b"] {
        let mut doc = oci_manifest(&empty, &[]);
        doc["artifactType"] = json!(artifact_type);
        doc["subject"] = image.descriptor().to_json();
        let manifest = to_bytes(&doc);
        digests.push(reg.push_manifest(&repo, &sha256_digest(&manifest), OCI_MANIFEST, &manifest));
    }
    reg.delete(&format!("/v2/{repo}/manifests/{}", digests[0]))
        .expect(202);
    let resp = reg.get(&format!("/v2/{repo}/referrers/{}", image.digest));
    resp.expect(200);
    let listed: Vec<String> = resp.json()["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|d| d["digest"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(listed, vec![digests[1].clone()], "{}", resp.request);
}

/// After its subject is deleted, the referrers API still answers 200 with an index
/// that lists the referrer (the spec also allows an empty one; berth keeps it).
#[test]
fn referrers_after_subject_deletion() {
    berth_required!("OCI 1.1 referrers API");
    let reg = registry();
    let repo = unique_repo("delete-subject");
    let image = reg.push_image(&repo, Some("app"));
    let empty = reg.push_empty_config(&repo);
    let mut doc = oci_manifest(&empty, &[]);
    doc["artifactType"] = json!("application/vnd.example.sig");
    doc["subject"] = image.descriptor().to_json();
    let manifest = to_bytes(&doc);
    let referrer = reg.push_manifest(&repo, &sha256_digest(&manifest), OCI_MANIFEST, &manifest);
    reg.delete(&format!("/v2/{repo}/manifests/{}", image.digest))
        .expect(202);
    let resp = reg.get(&format!("/v2/{repo}/referrers/{}", image.digest));
    resp.expect(200).expect_header("Content-Type", OCI_INDEX);
    let body = resp.json();
    let manifests = body["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no manifests array", resp.request));
    let listed: Vec<&str> = manifests
        .iter()
        .filter_map(|d| d["digest"].as_str())
        .collect();
    assert_eq!(listed, vec![referrer.as_str()], "{}", resp.request);
}
