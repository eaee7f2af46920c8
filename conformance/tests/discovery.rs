//! Content discovery: listing tags (with `n`, `last` and `Link` pagination) and the
//! OCI 1.1 referrers API.
//!
//! Spec: distribution-spec "Workflow Categories / Content Discovery", endpoints
//! end-8a, end-8b, end-12a, end-12b.

use berth_conformance::*;
use serde_json::{json, Value};

/// Tags chosen so that lexical (case-insensitive) and ASCII order agree, both of which
/// the spec allows, while a registry returning insertion or hash order would fail.
const TAGS: [&str; 7] = ["alpha", "beta", "gamma", "v1", "v1.0", "v1.10", "v1.2"];

/// Pushes one image and tags it with every tag of `TAGS`, in a shuffled order.
fn push_tags(reg: &Registry, repo: &str) -> Image {
    let image = reg.push_image(repo, None);
    let mut order: Vec<&str> = TAGS.to_vec();
    fastrand::shuffle(&mut order);
    for tag in order {
        reg.push_manifest(repo, tag, OCI_MANIFEST, &image.manifest);
    }
    image
}

fn tags_of(resp: &Resp) -> Vec<String> {
    let body = resp.json();
    match &body["tags"] {
        Value::Array(tags) => tags
            .iter()
            .map(|t| {
                t.as_str()
                    .unwrap_or_else(|| panic!("{}: non-string tag", resp.request))
                    .to_string()
            })
            .collect(),
        Value::Null => Vec::new(),
        other => panic!("{}: `tags` is {other}, not an array", resp.request),
    }
}

fn strings(tags: &[&str]) -> Vec<String> {
    tags.iter().map(|t| t.to_string()).collect()
}

/// The target of a `Link: <url>; rel="next"` header.
fn next_link(resp: &Resp) -> Option<String> {
    let link = resp.header("Link")?;
    assert!(
        link.contains("rel=\"next\""),
        "{}: Link header without rel=\"next\": {link}",
        resp.request
    );
    let start = link.find('<')? + 1;
    let end = link[start..].find('>')? + start;
    Some(link[start..end].to_string())
}

/// end-8a: 200 with `{"name": <name>, "tags": [...]}`, every tag, in lexical order.
#[test]
fn tags_list_returns_all_tags_in_order() {
    berth_required!(
        "sorted, paginated tags list (Distribution 2.8 ignores n/last and does not sort)"
    );
    let reg = registry();
    let repo = unique_repo("tags-all");
    push_tags(reg, &repo);
    let resp = reg.get(&format!("/v2/{repo}/tags/list"));
    resp.expect(200);
    assert_eq!(resp.json()["name"], repo.as_str(), "{}", resp.request);
    assert_eq!(
        tags_of(&resp),
        strings(&TAGS),
        "{}: tags in lexical order",
        resp.request
    );
}

/// end-8a: every tag is listed exactly once (in whatever order), under the repository's name.
#[test]
fn tags_list_contains_every_tag() {
    let reg = registry();
    let repo = unique_repo("tags-set");
    push_tags(reg, &repo);
    let resp = reg.get(&format!("/v2/{repo}/tags/list"));
    resp.expect(200);
    assert_eq!(resp.json()["name"], repo.as_str(), "{}", resp.request);
    let mut tags = tags_of(&resp);
    tags.sort();
    assert_eq!(tags, strings(&TAGS), "{}", resp.request);
}

/// end-8b `n`: exactly `n` tags from the start of the list when more exist, with a
/// `Link: <...>; rel="next"` header to the rest.
#[test]
fn tags_list_first_page_with_n() {
    berth_required!(
        "sorted, paginated tags list (Distribution 2.8 ignores n/last and does not sort)"
    );
    let reg = registry();
    let repo = unique_repo("tags-n");
    push_tags(reg, &repo);
    let resp = reg.get(&format!("/v2/{repo}/tags/list?n=3"));
    resp.expect(200);
    assert_eq!(tags_of(&resp), strings(&TAGS[..3]), "{}", resp.request);
    assert!(
        next_link(&resp).is_some(),
        "{}: more tags remain but no Link header\n{}",
        resp.request,
        resp.dump()
    );
}

/// Following the `Link` headers from `n=2` pages through every tag exactly once, in
/// order, and the last page has no `Link`.
#[test]
fn tags_list_link_pagination_walks_all_tags() {
    berth_required!(
        "sorted, paginated tags list (Distribution 2.8 ignores n/last and does not sort)"
    );
    let reg = registry();
    let repo = unique_repo("tags-link");
    push_tags(reg, &repo);
    let mut seen = Vec::new();
    let mut next = Some(format!("/v2/{repo}/tags/list?n=2"));
    let mut pages = 0;
    while let Some(url) = next {
        pages += 1;
        assert!(pages <= TAGS.len() + 1, "pagination does not end");
        let resp = reg.get(&url);
        resp.expect(200);
        let page = tags_of(&resp);
        assert!(
            page.len() <= 2,
            "{}: page larger than n=2: {page:?}",
            resp.request
        );
        seen.extend(page);
        next = next_link(&resp);
    }
    assert_eq!(seen, strings(&TAGS), "tags collected over {pages} pages");
}

/// end-8b `n` + `last`: up to `n` tags strictly after `last`.
#[test]
fn tags_list_n_and_last() {
    berth_required!(
        "sorted, paginated tags list (Distribution 2.8 ignores n/last and does not sort)"
    );
    let reg = registry();
    let repo = unique_repo("tags-last");
    push_tags(reg, &repo);
    let resp = reg.get(&format!("/v2/{repo}/tags/list?n=2&last=beta"));
    resp.expect(200);
    assert_eq!(
        tags_of(&resp),
        strings(&["gamma", "v1"]),
        "{}",
        resp.request
    );

    let resp = reg.get(&format!("/v2/{repo}/tags/list?n=10&last=v1.0"));
    resp.expect(200);
    assert_eq!(
        tags_of(&resp),
        strings(&["v1.10", "v1.2"]),
        "{}",
        resp.request
    );
    assert!(
        resp.header("Link").is_none(),
        "{}: Link on the last page",
        resp.request
    );
}

/// `last` without `n`: every tag after `last`.
#[test]
fn tags_list_last_without_n() {
    berth_required!(
        "sorted, paginated tags list (Distribution 2.8 ignores n/last and does not sort)"
    );
    let reg = registry();
    let repo = unique_repo("tags-last-only");
    push_tags(reg, &repo);
    let resp = reg.get(&format!("/v2/{repo}/tags/list?last=gamma"));
    resp.expect(200);
    assert_eq!(tags_of(&resp), strings(&TAGS[3..]), "{}", resp.request);
}

/// `last` need not be an existing tag: the list resumes after where it would sort.
#[test]
fn tags_list_last_between_tags() {
    berth_required!(
        "sorted, paginated tags list (Distribution 2.8 ignores n/last and does not sort)"
    );
    let reg = registry();
    let repo = unique_repo("tags-last-between");
    push_tags(reg, &repo);
    let resp = reg.get(&format!("/v2/{repo}/tags/list?n=2&last=c"));
    resp.expect(200);
    assert_eq!(
        tags_of(&resp),
        strings(&["gamma", "v1"]),
        "{}",
        resp.request
    );
}

/// `n` larger than the number of tags returns them all, without a `Link` header.
#[test]
fn tags_list_n_larger_than_count() {
    let reg = registry();
    let repo = unique_repo("tags-n-large");
    push_tags(reg, &repo);
    let resp = reg.get(&format!("/v2/{repo}/tags/list?n=100"));
    resp.expect(200);
    let mut tags = tags_of(&resp);
    tags.sort();
    assert_eq!(tags, strings(&TAGS), "{}", resp.request);
    assert!(
        resp.header("Link").is_none(),
        "{}: Link with nothing left",
        resp.request
    );
}

/// `n=0` MUST return an empty list and MUST NOT include a `Link` header.
#[test]
fn tags_list_n_zero_is_empty_without_link() {
    berth_required!(
        "sorted, paginated tags list (Distribution 2.8 ignores n/last and does not sort)"
    );
    let reg = registry();
    let repo = unique_repo("tags-n-zero");
    push_tags(reg, &repo);
    let resp = reg.get(&format!("/v2/{repo}/tags/list?n=0"));
    resp.expect(200);
    assert_eq!(tags_of(&resp), Vec::<String>::new(), "{}", resp.request);
    assert!(
        resp.header("Link").is_none(),
        "{}: Link with n=0\n{}",
        resp.request,
        resp.dump()
    );
}

/// Tags list of a repository that does not exist is 404 NAME_UNKNOWN.
#[test]
fn tags_list_unknown_repository_is_404() {
    let reg = registry();
    let repo = unique_repo("tags-no-repo");
    reg.get(&format!("/v2/{repo}/tags/list"))
        .expect_error(404, "NAME_UNKNOWN");
}

/// A repository with content but no tags (a manifest pushed by digest) exists: its
/// tags list is 200 with an empty list.
#[test]
fn tags_list_of_untagged_repository_is_empty() {
    berth_required!("empty tags list for an untagged repository (Distribution 2.8 answers 404)");
    let reg = registry();
    let repo = unique_repo("tags-untagged");
    reg.push_image(&repo, None);
    let resp = reg.get(&format!("/v2/{repo}/tags/list"));
    resp.expect(200);
    assert_eq!(resp.json()["name"], repo.as_str(), "{}", resp.request);
    assert_eq!(tags_of(&resp), Vec::<String>::new(), "{}", resp.request);
}

// ---------------------------------------------------------------------------
// Referrers (distribution-spec 1.1)
// ---------------------------------------------------------------------------

const SBOM: &str = "application/vnd.example.sbom.v1";
const SIGNATURE: &str = "application/vnd.example.signature.v1";

/// Pushes an artifact manifest (empty config, one layer) with `subject`, by digest.
/// Returns the bytes and digest.
fn push_referrer(
    reg: &Registry,
    repo: &str,
    subject: &Descriptor,
    artifact_type: Option<&str>,
    annotations: Value,
) -> (Vec<u8>, String) {
    let empty = reg.push_empty_config(repo);
    let payload = random_bytes(64);
    reg.push_blob(repo, &payload);
    let mut doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": empty.to_json(),
        "layers": [Descriptor::new("application/octet-stream", &payload).to_json()],
        "subject": subject.to_json(),
        "annotations": annotations,
    });
    if let Some(t) = artifact_type {
        doc["artifactType"] = json!(t);
    }
    let manifest = to_bytes(&doc);
    let digest = sha256_digest(&manifest);
    reg.push_manifest(repo, &digest, OCI_MANIFEST, &manifest);
    (manifest, digest)
}

/// The referrers index for `subject`, checked to be a 200 OCI image index.
fn referrers(reg: &Registry, repo: &str, subject: &str, query: &str) -> (Resp, Vec<Value>) {
    let resp = reg.get(&format!("/v2/{repo}/referrers/{subject}{query}"));
    resp.expect(200).expect_header("Content-Type", OCI_INDEX);
    let body = resp.json();
    assert_eq!(body["schemaVersion"], 2, "{}: schemaVersion", resp.request);
    assert_eq!(body["mediaType"], OCI_INDEX, "{}: mediaType", resp.request);
    let manifests = body["manifests"]
        .as_array()
        .unwrap_or_else(|| {
            panic!(
                "{}: `manifests` is not an array\n{}",
                resp.request,
                resp.dump()
            )
        })
        .clone();
    (resp, manifests)
}

fn find<'a>(descriptors: &'a [Value], digest: &str) -> Option<&'a Value> {
    descriptors.iter().find(|d| d["digest"] == digest)
}

/// end-12a: the referrers of a manifest are listed as descriptors carrying mediaType,
/// digest, size, artifactType and the referrer's annotations; the PUT of each referrer
/// was answered with `OCI-Subject`.
#[test]
fn referrers_list_descriptors() {
    berth_required!("OCI 1.1 referrers API");
    let reg = registry();
    let repo = unique_repo("referrers");
    let image = reg.push_image(&repo, Some("app"));
    let subject = image.descriptor();

    let (sbom, sbom_digest) = push_referrer(
        reg,
        &repo,
        &subject,
        Some(SBOM),
        json!({ "org.example.sbom.format": "json", "org.opencontainers.image.created": "2024-05-01T00:00:00Z" }),
    );
    let (signature, signature_digest) = push_referrer(
        reg,
        &repo,
        &subject,
        Some(SIGNATURE),
        json!({ "org.example.signer": "ci" }),
    );
    // An unrelated manifest in the same repository is not a referrer.
    reg.push_image(&repo, Some("other"));

    let (resp, descriptors) = referrers(reg, &repo, &image.digest, "");
    assert_eq!(descriptors.len(), 2, "{}: {descriptors:?}", resp.request);
    let d = find(&descriptors, &sbom_digest)
        .unwrap_or_else(|| panic!("{}: SBOM missing", resp.request));
    assert_eq!(d["mediaType"], OCI_MANIFEST, "{}", resp.request);
    assert_eq!(d["size"], sbom.len() as u64, "{}", resp.request);
    assert_eq!(d["artifactType"], SBOM, "{}", resp.request);
    assert_eq!(
        d["annotations"]["org.example.sbom.format"], "json",
        "{}",
        resp.request
    );
    assert_eq!(
        d["annotations"]["org.opencontainers.image.created"], "2024-05-01T00:00:00Z",
        "{}",
        resp.request
    );
    let d = find(&descriptors, &signature_digest)
        .unwrap_or_else(|| panic!("{}: signature missing", resp.request));
    assert_eq!(d["size"], signature.len() as u64, "{}", resp.request);
    assert_eq!(d["artifactType"], SIGNATURE, "{}", resp.request);
    assert_eq!(
        d["annotations"]["org.example.signer"], "ci",
        "{}",
        resp.request
    );
}

/// The PUT of a manifest with `subject` is answered with `OCI-Subject: <subject digest>`.
#[test]
fn referrer_put_returns_oci_subject() {
    berth_required!("OCI 1.1 referrers API (OCI-Subject header)");
    let reg = registry();
    let repo = unique_repo("referrer-oci-subject");
    let image = reg.push_image(&repo, Some("app"));
    let empty = reg.push_empty_config(&repo);
    let mut doc = oci_manifest(&empty, &[]);
    doc["artifactType"] = json!(SIGNATURE);
    doc["subject"] = image.descriptor().to_json();
    let manifest = to_bytes(&doc);
    reg.put_manifest(&repo, "sig", OCI_MANIFEST, &manifest)
        .expect(201)
        .expect_header("OCI-Subject", &image.digest);
}

/// An image manifest referrer without `artifactType` is listed with the config's
/// mediaType as its artifactType.
#[test]
fn referrers_artifact_type_defaults_to_config_media_type() {
    berth_required!("OCI 1.1 referrers API");
    let reg = registry();
    let repo = unique_repo("referrers-config-type");
    let image = reg.push_image(&repo, Some("app"));
    let config = br#"{"kind":"attestation"}"#.to_vec();
    reg.push_blob(&repo, &config);
    let config_type = "application/vnd.example.attestation.config.v1+json";
    let mut doc = oci_manifest(&Descriptor::new(config_type, &config), &[]);
    doc["subject"] = image.descriptor().to_json();
    let manifest = to_bytes(&doc);
    let digest = reg.push_manifest(&repo, &sha256_digest(&manifest), OCI_MANIFEST, &manifest);

    let (resp, descriptors) = referrers(reg, &repo, &image.digest, "");
    let d =
        find(&descriptors, &digest).unwrap_or_else(|| panic!("{}: referrer missing", resp.request));
    assert_eq!(d["artifactType"], config_type, "{}", resp.request);
}

/// end-12b: `?artifactType=` keeps only matching referrers and the response says so
/// with `OCI-Filters-Applied: artifactType`.
#[test]
fn referrers_filter_by_artifact_type() {
    berth_required!("OCI 1.1 referrers API");
    let reg = registry();
    let repo = unique_repo("referrers-filter");
    let image = reg.push_image(&repo, Some("app"));
    let subject = image.descriptor();
    let (_, sbom_digest) = push_referrer(reg, &repo, &subject, Some(SBOM), json!({}));
    push_referrer(reg, &repo, &subject, Some(SIGNATURE), json!({}));
    push_referrer(reg, &repo, &subject, Some(SIGNATURE), json!({}));

    let (resp, descriptors) =
        referrers(reg, &repo, &image.digest, &format!("?artifactType={SBOM}"));
    resp.expect_header("OCI-Filters-Applied", "artifactType");
    assert_eq!(descriptors.len(), 1, "{}: {descriptors:?}", resp.request);
    assert_eq!(
        descriptors[0]["digest"],
        sbom_digest.as_str(),
        "{}",
        resp.request
    );

    let (resp, descriptors) = referrers(
        reg,
        &repo,
        &image.digest,
        &format!("?artifactType={SIGNATURE}"),
    );
    assert_eq!(descriptors.len(), 2, "{}: {descriptors:?}", resp.request);
    assert!(
        descriptors.iter().all(|d| d["artifactType"] == SIGNATURE),
        "{}",
        resp.request
    );

    let (resp, descriptors) = referrers(
        reg,
        &repo,
        &image.digest,
        "?artifactType=application/vnd.example.none",
    );
    resp.expect_header("OCI-Filters-Applied", "artifactType");
    assert!(descriptors.is_empty(), "{}: {descriptors:?}", resp.request);

    // Without a filter, the header is absent and everything is listed.
    let (resp, descriptors) = referrers(reg, &repo, &image.digest, "");
    assert_eq!(descriptors.len(), 3, "{}", resp.request);
    assert!(
        resp.header("OCI-Filters-Applied").is_none(),
        "{}: filter header without a filter",
        resp.request
    );
}

/// A subject with no referrers: 200 with an empty index (MUST NOT be 404).
#[test]
fn referrers_of_subject_without_referrers_is_empty() {
    berth_required!("OCI 1.1 referrers API");
    let reg = registry();
    let repo = unique_repo("referrers-none");
    let image = reg.push_image(&repo, Some("app"));
    let (resp, descriptors) = referrers(reg, &repo, &image.digest, "");
    assert!(descriptors.is_empty(), "{}: {descriptors:?}", resp.request);
    let (resp, descriptors) = referrers(reg, &repo, &random_digest(), "");
    assert!(descriptors.is_empty(), "{}: {descriptors:?}", resp.request);
}

/// Referrers pushed before their subject exists are listed (200) both before and after
/// the subject is pushed.
#[test]
fn referrers_pushed_before_subject() {
    berth_required!("OCI 1.1 referrers API");
    let reg = registry();
    let repo = unique_repo("referrers-early");
    // Prepare the subject image's blobs and manifest without pushing the manifest yet.
    let config = config_blob();
    reg.push_blob(&repo, &config);
    let manifest = to_bytes(&oci_manifest(&Descriptor::new(OCI_CONFIG, &config), &[]));
    let subject = Descriptor::new(OCI_MANIFEST, &manifest);

    let (_, early) = push_referrer(reg, &repo, &subject, Some(SBOM), json!({ "k": "v" }));
    let (resp, descriptors) = referrers(reg, &repo, &subject.digest, "");
    assert!(
        find(&descriptors, &early).is_some(),
        "{}: early referrer missing before subject push",
        resp.request
    );

    reg.push_manifest(&repo, "late", OCI_MANIFEST, &manifest);
    let (resp, descriptors) = referrers(reg, &repo, &subject.digest, "");
    let d = find(&descriptors, &early).unwrap_or_else(|| {
        panic!(
            "{}: early referrer missing after subject push",
            resp.request
        )
    });
    assert_eq!(d["annotations"]["k"], "v", "{}", resp.request);
}

/// Referrers in a repository that does not exist: 200 with an empty index.
#[test]
fn referrers_in_unknown_repository_is_empty() {
    berth_required!("OCI 1.1 referrers API");
    let reg = registry();
    let repo = unique_repo("referrers-no-repo");
    let (resp, descriptors) = referrers(reg, &repo, &random_digest(), "");
    assert!(descriptors.is_empty(), "{}: {descriptors:?}", resp.request);
}

/// A malformed digest in a referrers request is 400 DIGEST_INVALID.
#[test]
fn referrers_with_malformed_digest_is_400() {
    berth_required!("OCI 1.1 referrers API");
    let reg = registry();
    let repo = unique_repo("referrers-bad-digest");
    reg.push_image(&repo, Some("app"));
    let cases: Vec<_> = ["sha256:abc", "notadigest", "sha256:ZZZZ"]
        .into_iter()
        .map(|d| {
            (
                "GET",
                format!("/v2/{repo}/referrers/{d}"),
                400,
                "DIGEST_INVALID",
            )
        })
        .collect();
    reg.expect_raw_errors(&cases);
}

/// Referrers are scoped to the repository: a referrer in another repository is not listed.
#[test]
fn referrers_are_scoped_to_the_repository() {
    berth_required!("OCI 1.1 referrers API");
    let reg = registry();
    let repo = unique_repo("referrers-scope-a");
    let other = unique_repo("referrers-scope-b");
    let image = reg.push_image(&repo, Some("app"));
    push_referrer(reg, &other, &image.descriptor(), Some(SBOM), json!({}));
    let (resp, descriptors) = referrers(reg, &repo, &image.digest, "");
    assert!(descriptors.is_empty(), "{}: {descriptors:?}", resp.request);
}

/// An image index can be a referrer; with `artifactType` it is listed with it, and
/// without one the descriptor has no artifactType.
#[test]
fn index_as_referrer() {
    berth_required!("OCI 1.1 referrers API");
    let reg = registry();
    let repo = unique_repo("referrers-index");
    let image = reg.push_image(&repo, Some("app"));
    let child = reg.push_image(&repo, None);

    let mut typed = index_of(OCI_INDEX, &[child.descriptor()]);
    typed["artifactType"] = json!("application/vnd.example.bundle.v1");
    typed["subject"] = image.descriptor().to_json();
    typed["annotations"] = json!({ "org.example.bundle": "yes" });
    let typed = to_bytes(&typed);
    let typed_digest = reg.push_manifest(&repo, &sha256_digest(&typed), OCI_INDEX, &typed);

    let mut untyped = index_of(OCI_INDEX, &[child.descriptor()]);
    untyped["subject"] = image.descriptor().to_json();
    untyped["annotations"] = json!({ "org.example.untyped": "1" });
    let untyped = to_bytes(&untyped);
    let untyped_digest = reg.push_manifest(&repo, &sha256_digest(&untyped), OCI_INDEX, &untyped);

    let (resp, descriptors) = referrers(reg, &repo, &image.digest, "");
    let d = find(&descriptors, &typed_digest)
        .unwrap_or_else(|| panic!("{}: typed index missing", resp.request));
    assert_eq!(d["mediaType"], OCI_INDEX, "{}", resp.request);
    assert_eq!(
        d["artifactType"], "application/vnd.example.bundle.v1",
        "{}",
        resp.request
    );
    assert_eq!(
        d["annotations"]["org.example.bundle"], "yes",
        "{}",
        resp.request
    );
    let d = find(&descriptors, &untyped_digest)
        .unwrap_or_else(|| panic!("{}: untyped index missing", resp.request));
    assert!(
        d.get("artifactType").is_none(),
        "{}: artifactType on an untyped index: {d}",
        resp.request
    );
    assert_eq!(
        d["annotations"]["org.example.untyped"], "1",
        "{}",
        resp.request
    );
}

/// A referrer can itself have referrers (a signature on an SBOM).
#[test]
fn referrers_chain() {
    berth_required!("OCI 1.1 referrers API");
    let reg = registry();
    let repo = unique_repo("referrers-chain");
    let image = reg.push_image(&repo, Some("app"));
    let (sbom, sbom_digest) = push_referrer(reg, &repo, &image.descriptor(), Some(SBOM), json!({}));
    let sbom_desc = Descriptor::new(OCI_MANIFEST, &sbom);
    let (_, sig_digest) = push_referrer(reg, &repo, &sbom_desc, Some(SIGNATURE), json!({}));

    let (resp, descriptors) = referrers(reg, &repo, &image.digest, "");
    assert_eq!(descriptors.len(), 1, "{}: {descriptors:?}", resp.request);
    assert_eq!(
        descriptors[0]["digest"],
        sbom_digest.as_str(),
        "{}",
        resp.request
    );
    let (resp, descriptors) = referrers(reg, &repo, &sbom_digest, "");
    assert_eq!(descriptors.len(), 1, "{}: {descriptors:?}", resp.request);
    assert_eq!(
        descriptors[0]["digest"],
        sig_digest.as_str(),
        "{}",
        resp.request
    );
}

/// Many referrers are all listed, following `Link: <...>; rel="next"` pages when the
/// registry paginates; no descriptor appears twice.
#[test]
fn referrers_many_are_all_listed() {
    berth_required!("OCI 1.1 referrers API");
    let reg = registry();
    let repo = unique_repo("referrers-many");
    let image = reg.push_image(&repo, Some("app"));
    let mut expected: Vec<String> = (0..40)
        .map(|i| {
            push_referrer(
                reg,
                &repo,
                &image.descriptor(),
                Some(SBOM),
                json!({ "i": i.to_string() }),
            )
            .1
        })
        .collect();
    expected.sort();

    let mut seen = Vec::new();
    let mut next = Some(format!("/v2/{repo}/referrers/{}", image.digest));
    let mut pages = 0;
    while let Some(url) = next {
        pages += 1;
        assert!(pages <= 41, "referrers pagination does not end");
        let resp = reg.get(&url);
        resp.expect(200).expect_header("Content-Type", OCI_INDEX);
        for d in resp.json()["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            seen.push(d["digest"].as_str().unwrap_or_default().to_string());
        }
        next = next_link(&resp);
    }
    seen.sort();
    assert_eq!(seen, expected, "referrers collected over {pages} pages");
}

/// Docker Registry API V2 catalog (not part of the OCI spec, which dropped it, but used
/// by docker tooling): `/v2/_catalog?n=` pages, linked with `Link: <...>; rel="next"`,
/// list every repository in lexical order, including one just pushed.
#[test]
fn catalog_lists_pushed_repositories() {
    let reg = registry();
    let first = unique_repo("catalog");
    let second = format!("{first}/nested");
    reg.push_image(&first, Some("t"));
    reg.push_image(&second, Some("t"));

    let mut all: Vec<String> = Vec::new();
    let mut next = Some("/v2/_catalog?n=50".to_string());
    let mut pages = 0;
    while let Some(url) = next {
        pages += 1;
        assert!(pages <= 10_000, "catalog pagination does not end");
        let resp = reg.get(&url);
        resp.expect(200);
        let page: Vec<String> = resp.json()["repositories"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no `repositories` array\n{}", resp.request, resp.dump()))
            .iter()
            .map(|r| r.as_str().unwrap_or_default().to_string())
            .collect();
        assert!(page.len() <= 50, "{}: page larger than n=50", resp.request);
        all.extend(page);
        next = next_link(&resp);
    }
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        all, sorted,
        "catalog not in lexical order, or with duplicates"
    );
    for repo in [&first, &second] {
        assert!(
            all.contains(repo),
            "{repo} missing from the catalog ({} repositories)",
            all.len()
        );
    }
}
