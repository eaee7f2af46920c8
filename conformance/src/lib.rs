//! Shared machinery for berth's OCI Distribution Spec conformance suite.
//!
//! The suite lives in `tests/` and is organised like the spec's four workflow
//! categories (pull, push, content discovery, content management). It talks
//! plain HTTP to one registry:
//!
//! - `CONFORMANCE_URL=http://127.0.0.1:5000` tests whatever registry runs there
//!   (berth, or CNCF Distribution to check our reading of the spec);
//! - otherwise the berth binary (`$BERTH_BIN`, else `target/release/berth`, else
//!   `target/debug/berth`) is started once per test process on a free port with a
//!   temporary data directory, and killed when the process exits.
//!
//! Behaviour that the spec allows but that CNCF Distribution 2.8 lacks (the OCI 1.1
//! referrers API, sha512 blobs, tag deletion, ...) is demanded from berth by tests
//! that start with [`berth_required!`]. Setting `CONFORMANCE_SKIP_BERTH_REQUIRED=1`
//! skips exactly those tests, so a run against Distribution is green when our
//! reading of the spec is right.
//!
//! Every test works in its own repository ([`unique_repo`]), so tests run in
//! parallel against one registry.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, LazyLock, OnceLock};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder};
pub use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256, Sha512};

// ---------------------------------------------------------------------------
// Media types (OCI image-spec v1.1 and Docker image manifest v2 schema 2)
// ---------------------------------------------------------------------------

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Every manifest media type this suite pushes, for `Accept` headers.
pub const ALL_MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

// ---------------------------------------------------------------------------
// Berth-required marker
// ---------------------------------------------------------------------------

/// Marks a test as demanding behaviour that CNCF Distribution 2.8 lacks.
///
/// With `CONFORMANCE_SKIP_BERTH_REQUIRED` set, the test returns early (and says
/// so on stderr); otherwise it runs normally.
#[macro_export]
macro_rules! berth_required {
    ($why:expr) => {
        if $crate::skip_berth_required($why) {
            return;
        }
    };
}

/// True when berth-required tests should be skipped (see [`berth_required!`]).
pub fn skip_berth_required(why: &str) -> bool {
    let skip = std::env::var_os("CONFORMANCE_SKIP_BERTH_REQUIRED").is_some_and(|v| v != "0");
    if skip {
        eprintln!("skipped (berth-required: {why})");
    }
    skip
}

// ---------------------------------------------------------------------------
// Digests and random content
// ---------------------------------------------------------------------------

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub fn sha512_digest(data: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(data)))
}

/// True when `digest` is the sha256 or sha512 digest of `data`: a registry may answer
/// with its canonical digest, which "MAY differ from the provided digest".
pub fn is_digest_of(digest: &str, data: &[u8]) -> bool {
    digest == sha256_digest(data) || digest == sha512_digest(data)
}

/// `len` random bytes.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fastrand::fill(&mut out);
    out
}

/// A well-formed sha256 digest of random content, almost surely unknown to the registry.
pub fn random_digest() -> String {
    sha256_digest(&random_bytes(32))
}

/// Digest-shaped strings that are not valid digests (each breaks one rule of
/// image-spec's digest grammar or of the sha256/sha512 encodings).
pub fn malformed_digests() -> Vec<String> {
    let hex64 = "0123456789abcdef".repeat(4);
    vec![
        "sha256:abc".to_string(),                   // too short for sha256
        format!("sha256:{}", "z".repeat(64)),       // not hex
        format!("sha256:{}", hex64.to_uppercase()), // sha256 encodes lower-case hex
        format!("sha256:{hex64}00"),                // too long for sha256
        format!("sha999:{hex64}"),                  // unknown algorithm
        format!("sha512:{hex64}"),                  // wrong length for sha512
    ]
}

/// Malformed digests that Distribution 2.8's router does not even route (it
/// answers a plain-text 404), while berth parses them: `SHA256:` and `sha256:`
/// are malformed digests (400 DIGEST_INVALID); without a separator the
/// reference is a tag, which in a manifest URL names no manifest.
pub fn unrouted_malformed_digests() -> Vec<String> {
    let hex64 = "0123456789abcdef".repeat(4);
    vec![
        format!("SHA256:{hex64}"), // upper-case algorithm
        format!("sha256{hex64}"),  // no separator
        "sha256:".to_string(),     // empty encoded part
    ]
}

/// A repository name of its own for one test: `conformance/<test>-<random>`.
pub fn unique_repo(test: &str) -> String {
    let test: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("conformance/{test}-{:08x}", fastrand::u32(..))
}

// ---------------------------------------------------------------------------
// Descriptors and manifests
// ---------------------------------------------------------------------------

/// An OCI content descriptor (image-spec `descriptor.md`).
#[derive(Clone, Debug)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    pub fn new(media_type: &str, data: &[u8]) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest: sha256_digest(data),
            size: data.len() as u64,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }
}

/// Serialises a JSON document the way a client would before pushing it.
pub fn to_bytes(doc: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(doc).expect("serialise JSON")
}

/// An OCI image manifest with a top-level `mediaType`.
pub fn oci_manifest(config: &Descriptor, layers: &[Descriptor]) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.to_json(),
        "layers": layers.iter().map(Descriptor::to_json).collect::<Vec<_>>(),
    })
}

/// A Docker image manifest v2 schema 2.
pub fn docker_manifest(config: &Descriptor, layers: &[Descriptor]) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": config.to_json(),
        "layers": layers.iter().map(Descriptor::to_json).collect::<Vec<_>>(),
    })
}

/// An index (OCI image index or Docker manifest list) over `children`.
pub fn index_of(media_type: &str, children: &[Descriptor]) -> Value {
    let platforms = [("amd64", "linux"), ("arm64", "linux"), ("ppc64le", "linux")];
    let manifests: Vec<Value> = children
        .iter()
        .enumerate()
        .map(|(i, child)| {
            let (architecture, os) = platforms[i % platforms.len()];
            let mut desc = child.to_json();
            desc["platform"] = json!({ "architecture": architecture, "os": os });
            desc
        })
        .collect();
    json!({ "schemaVersion": 2, "mediaType": media_type, "manifests": manifests })
}

/// A small but real-looking image config blob.
pub fn config_blob() -> Vec<u8> {
    to_bytes(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": [format!("NONCE={:016x}", fastrand::u64(..))] },
        "rootfs": { "type": "layers", "diff_ids": [random_digest()] },
    }))
}

/// What [`Registry::push_image`] pushed.
#[derive(Clone, Debug)]
pub struct Image {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    pub manifest: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

impl Image {
    /// The descriptor of this image's manifest, to put in an index or a `subject`.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.manifest.len() as u64,
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP responses
// ---------------------------------------------------------------------------

/// A fully read response, with the request that produced it for failure messages.
#[derive(Debug)]
pub struct Resp {
    pub request: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Header `name`, or a panic naming the request.
    pub fn must_header(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("{}: missing header {name}\n{}", self.request, self.dump()))
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, or a panic naming the request.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e})\n{}", self.request, self.dump()))
    }

    /// Status line, headers and (the start of) the body, for failure messages.
    pub fn dump(&self) -> String {
        let mut out = format!("  got status {}\n", self.status);
        for (k, v) in &self.headers {
            out.push_str(&format!("  {k}: {v}\n"));
        }
        let body = self.body_text();
        let body: String = body.chars().take(600).collect();
        if !body.is_empty() {
            out.push_str(&format!("  body: {body}\n"));
        }
        out
    }

    /// Asserts the status code.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "{}: expected status {status}\n{}",
            self.request,
            self.dump()
        );
        self
    }

    /// Asserts header `name` is present and equal to `value`.
    #[track_caller]
    pub fn expect_header(&self, name: &str, value: &str) -> &Self {
        assert_eq!(
            self.header(name),
            Some(value),
            "{}: header {name}\n{}",
            self.request,
            self.dump()
        );
        self
    }

    /// The error codes of a spec error body (`{"errors":[{"code":..}]}`), checking its shape:
    /// a non-empty `errors` array whose codes are upper-case letters and underscores.
    #[track_caller]
    pub fn error_codes(&self) -> Vec<String> {
        let body = self.json();
        let errors = body
            .get("errors")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("{}: no `errors` array\n{}", self.request, self.dump()));
        assert!(
            !errors.is_empty(),
            "{}: empty `errors` array\n{}",
            self.request,
            self.dump()
        );
        errors
            .iter()
            .map(|e| {
                let code = e.get("code").and_then(Value::as_str).unwrap_or_else(|| {
                    panic!(
                        "{}: error without a string code\n{}",
                        self.request,
                        self.dump()
                    )
                });
                assert!(
                    !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                    "{}: error code {code:?} is not upper-case letters and underscores\n{}",
                    self.request,
                    self.dump()
                );
                if let Some(message) = e.get("message") {
                    assert!(
                        message.is_string(),
                        "{}: error message is not a string\n{}",
                        self.request,
                        self.dump()
                    );
                }
                code.to_string()
            })
            .collect()
    }

    /// True when the body is a spec error body whose first code is one of `codes`
    /// (a non-panicking check, for tests that collect several failures).
    pub fn first_error_code_in(&self, codes: &[&str]) -> bool {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string))
            .is_some_and(|c| codes.contains(&c.as_str()))
    }

    /// Asserts the status and that the spec error body carries `code`.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        let codes = self.error_codes();
        assert!(
            codes.iter().any(|c| c == code),
            "{}: expected error code {code}, got {codes:?}\n{}",
            self.request,
            self.dump()
        );
        self
    }
}

// ---------------------------------------------------------------------------
// The registry under test
// ---------------------------------------------------------------------------

/// The registry under test: its base URL and an HTTP client that does not
/// follow redirects (so `Location` headers are seen as sent).
pub struct Registry {
    pub base: String,
    /// `host:port` of the base URL, for raw requests.
    authority: String,
    http: Client,
    /// True when the suite started the berth binary itself.
    pub started_berth: bool,
}

/// The registry under test, started on first use when `CONFORMANCE_URL` is unset.
pub fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
        let (base, started) = match std::env::var("CONFORMANCE_URL") {
            Ok(url) if !url.trim().is_empty() => {
                (url.trim().trim_end_matches('/').to_string(), false)
            }
            _ => (start_berth(), true),
        };
        Registry::new(base, started)
    });
    &REGISTRY
}

/// A request being built; `send` runs it and reads the whole response.
pub struct Req {
    inner: RequestBuilder,
    description: String,
}

impl Req {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.description.push_str(&format!("\n    {name}: {value}"));
        self.inner = self.inner.header(name, value);
        self
    }

    /// Sets the body and its `Content-Length`.
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.description
            .push_str(&format!("\n    <{} byte body>", body.len()));
        self.inner = self
            .inner
            .header("Content-Length", body.len().to_string())
            .body(body);
        self
    }

    /// Sets an `application/octet-stream` body.
    pub fn octets(self, body: Vec<u8>) -> Self {
        self.header("Content-Type", "application/octet-stream")
            .body(body)
    }

    pub fn send(self) -> Resp {
        let Req { inner, description } = self;
        let response = inner
            .send()
            .unwrap_or_else(|e| panic!("{description}: request failed: {e}"));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = match response.bytes() {
            Ok(body) => body.to_vec(),
            Err(e) => {
                let partial = Resp {
                    request: description.clone(),
                    status,
                    headers,
                    body: Vec::new(),
                };
                panic!(
                    "{description}: reading the body failed ({e}); the response framing \
                     (Content-Length / chunking) does not match what was sent\n{}",
                    partial.dump()
                );
            }
        };
        Resp {
            request: description,
            status,
            headers,
            body,
        }
    }
}

impl Registry {
    fn new(base: String, started_berth: bool) -> Self {
        let authority = base
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("CONFORMANCE_URL must be a plain http:// URL, got {base}"))
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(120))
            .build()
            .expect("build HTTP client");
        Registry {
            base,
            authority,
            http,
            started_berth,
        }
    }

    /// An absolute URL for a path (`/v2/...`) or a `Location` header value,
    /// which the spec allows to be absolute or relative.
    pub fn url(&self, path_or_location: &str) -> String {
        if path_or_location.starts_with("http://") || path_or_location.starts_with("https://") {
            path_or_location.to_string()
        } else if path_or_location.starts_with('/') {
            format!("{}{}", self.base, path_or_location)
        } else {
            format!("{}/{}", self.base, path_or_location)
        }
    }

    pub fn req(&self, method: Method, path: &str) -> Req {
        let url = self.url(path);
        Req {
            description: format!("{method} {url}"),
            inner: self.http.request(method, url),
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        self.req(Method::GET, path).send()
    }

    pub fn head(&self, path: &str) -> Resp {
        self.req(Method::HEAD, path).send()
    }

    pub fn delete(&self, path: &str) -> Resp {
        self.req(Method::DELETE, path).send()
    }

    /// Sends each `(method, target, status, code)` raw and asserts, after all
    /// of them, that each answered `status` with the error `code` (a HEAD
    /// answer has no body: there only the status counts).
    #[track_caller]
    pub fn expect_raw_errors(&self, cases: &[(&str, String, u16, &str)]) {
        let mut failures = Vec::new();
        for (method, target, status, code) in cases {
            let resp = self.raw(method, target);
            let ok =
                resp.status == *status && (*method == "HEAD" || resp.first_error_code_in(&[code]));
            if !ok {
                failures.push(format!(
                    "{}\n  expected {status} {code}\n{}",
                    resp.request,
                    resp.dump()
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// A request sent byte-for-byte as written: for targets an URL library would
    /// normalise (`..`, `//`). Bodyless; the connection is closed after it.
    pub fn raw(&self, method: &str, target: &str) -> Resp {
        let request = format!("{method} http://{}{target} (raw)", self.authority);
        let mut stream = TcpStream::connect(&self.authority)
            .unwrap_or_else(|e| panic!("{request}: connect failed: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(60))).ok();
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.authority
        );
        stream
            .write_all(head.as_bytes())
            .unwrap_or_else(|e| panic!("{request}: write failed: {e}"));
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .unwrap_or_else(|e| panic!("{request}: read failed: {e}"));
        parse_raw_response(request, &raw, method == "HEAD")
    }

    // -- blob helpers -------------------------------------------------------

    /// Starts an upload session: `POST /v2/<repo>/blobs/uploads/`, expecting 202 and a Location.
    #[track_caller]
    pub fn start_upload(&self, repo: &str) -> String {
        let resp = self
            .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
            .body(Vec::new())
            .send();
        resp.expect(202);
        resp.must_header("Location").to_string()
    }

    /// Pushes a blob monolithically (POST then PUT) under `digest`, expecting 201.
    #[track_caller]
    pub fn push_blob_as(&self, repo: &str, data: &[u8], digest: &str) {
        let location = self.start_upload(repo);
        self.req(Method::PUT, &with_digest(&location, digest))
            .octets(data.to_vec())
            .send()
            .expect(201);
    }

    /// Pushes a blob monolithically (POST then PUT) and returns its sha256 digest.
    #[track_caller]
    pub fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        self.push_blob_as(repo, data, &digest);
        digest
    }

    // -- manifest helpers ---------------------------------------------------

    /// `PUT /v2/<repo>/manifests/<reference>` with `Content-Type: media_type`.
    pub fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Resp {
        self.req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header("Content-Type", media_type)
            .body(body.to_vec())
            .send()
    }

    /// Pushes a manifest and expects 201; returns its sha256 digest.
    #[track_caller]
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        self.put_manifest(repo, reference, media_type, body)
            .expect(201);
        sha256_digest(body)
    }

    pub fn get_manifest(&self, repo: &str, reference: &str) -> Resp {
        self.req(Method::GET, &format!("/v2/{repo}/manifests/{reference}"))
            .header("Accept", ALL_MANIFEST_TYPES)
            .send()
    }

    pub fn head_manifest(&self, repo: &str, reference: &str) -> Resp {
        self.req(Method::HEAD, &format!("/v2/{repo}/manifests/{reference}"))
            .header("Accept", ALL_MANIFEST_TYPES)
            .send()
    }

    /// Pushes a config blob, one random layer and an OCI image manifest
    /// (by `tag`, or by digest when `tag` is None).
    #[track_caller]
    pub fn push_image(&self, repo: &str, tag: Option<&str>) -> Image {
        self.push_image_of(repo, tag, OCI_MANIFEST)
    }

    /// Like [`Registry::push_image`] with the manifest format `media_type`
    /// ([`OCI_MANIFEST`] or [`DOCKER_MANIFEST`]).
    #[track_caller]
    pub fn push_image_of(&self, repo: &str, tag: Option<&str>, media_type: &str) -> Image {
        let (config_type, layer_type) = if media_type == DOCKER_MANIFEST {
            (DOCKER_CONFIG, DOCKER_LAYER)
        } else {
            (OCI_CONFIG, OCI_LAYER)
        };
        let config_data = config_blob();
        let layer_data = random_bytes(1024 + fastrand::usize(..1024));
        self.push_blob(repo, &config_data);
        self.push_blob(repo, &layer_data);
        let config = Descriptor::new(config_type, &config_data);
        let layers = vec![Descriptor::new(layer_type, &layer_data)];
        let doc = if media_type == DOCKER_MANIFEST {
            docker_manifest(&config, &layers)
        } else {
            oci_manifest(&config, &layers)
        };
        let manifest = to_bytes(&doc);
        let digest = sha256_digest(&manifest);
        self.push_manifest(repo, tag.unwrap_or(&digest), media_type, &manifest);
        Image {
            config,
            layers,
            manifest,
            media_type: media_type.to_string(),
            digest,
        }
    }

    /// Pushes the empty JSON blob `{}` (image-spec's empty descriptor) and returns its descriptor.
    #[track_caller]
    pub fn push_empty_config(&self, repo: &str) -> Descriptor {
        self.push_blob(repo, b"{}");
        Descriptor::new(OCI_EMPTY, b"{}")
    }
}

/// Appends `digest=<digest>` to an upload location, keeping its own query parameters.
pub fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

fn parse_raw_response(request: String, raw: &[u8], is_head: bool) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{request}: no end of headers in response"));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{request}: bad status line in {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if is_head {
        Vec::new()
    } else if chunked {
        decode_chunked(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        request,
        status,
        headers,
        body,
    }
}

fn decode_chunked(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
    out
}

// ---------------------------------------------------------------------------
// Starting berth
// ---------------------------------------------------------------------------

static CHILD_PID: AtomicI32 = AtomicI32::new(0);
static DATA_DIR: OnceLock<PathBuf> = OnceLock::new();

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("workspace root")
                .join("target")
        })
}

fn berth_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("BERTH_BIN") {
        return PathBuf::from(bin);
    }
    let target = target_dir();
    for profile in ["release", "debug"] {
        let candidate = target.join(profile).join("berth");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "no berth binary: build it (cargo build --release -p berth), or set BERTH_BIN, \
         or point CONFORMANCE_URL at a running registry (looked in {}/{{release,debug}})",
        target.display()
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

/// Kills the berth child and removes its data directory when the test process exits.
extern "C" fn stop_berth() {
    let pid = CHILD_PID.swap(0, Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: plain syscall on a pid we spawned.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        // The watcher thread reaps it; wait until it is gone or a zombie so the
        // directory removal below does not race with its last writes.
        let stat = PathBuf::from(format!("/proc/{pid}/stat"));
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            match std::fs::read_to_string(&stat) {
                Ok(s) if !s.contains(") Z") => std::thread::sleep(Duration::from_millis(10)),
                _ => break,
            }
        }
    }
    if let Some(dir) = DATA_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Starts `berth serve` on a free port with a fresh data directory; returns its base URL.
fn start_berth() -> String {
    let bin = berth_binary();
    let tag = format!("{}-{:08x}", std::process::id(), fastrand::u32(..));
    let data_dir = std::env::temp_dir().join(format!("berth-conformance-{tag}"));
    std::fs::create_dir_all(&data_dir).expect("create data dir");
    // The server log outlives the run (the data directory does not): it is where a
    // failing test's 500 is explained. It lives in the cargo target dir, not /tmp.
    let log_dir = target_dir().join("conformance-logs");
    std::fs::create_dir_all(&log_dir).expect("create log dir");
    let log_path = log_dir.join(format!("berth-{tag}.log"));
    let log = std::fs::File::create(&log_path).expect("create log file");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");

    let mut cmd = Command::new(&bin);
    cmd.arg("serve")
        .arg("--listen")
        .arg(&listen)
        .arg("--data-dir")
        .arg(&data_dir)
        // The spec's workflows without access control (which has its own tests).
        .env("BERTH_AUTH__MODE", "none")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            // Die with the test process, even when it panics or is killed.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }

    // PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so
    // fork from a thread that lives as long as the process: it waits on the child.
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("berth-watcher".into())
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id()));
                let _ = child.wait();
                // Keep this thread alive: its exit would signal nothing now, but an
                // early return must not look like a crash to anyone.
                loop {
                    std::thread::park();
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })
        .expect("spawn watcher thread");
    let pid = match rx.recv().expect("watcher thread") {
        Ok(pid) => pid,
        Err(e) => panic!("cannot start {}: {e}", bin.display()),
    };
    CHILD_PID.store(pid as i32, Ordering::SeqCst);
    let _ = DATA_DIR.set(data_dir.clone());
    // SAFETY: registering a plain extern "C" function.
    unsafe {
        libc::atexit(stop_berth);
    }

    let base = format!("http://{listen}");
    let client = Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("build HTTP client");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(resp) = client.get(format!("{base}/v2/")).send() {
            if resp.status().as_u16() == 200 {
                break;
            }
        }
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z"))
            .unwrap_or(false);
        if !alive || Instant::now() > deadline {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!(
                "berth ({} serve --listen {listen} --data-dir {}) {} \n--- log ---\n{log}",
                bin.display(),
                data_dir.display(),
                if alive {
                    "did not answer GET /v2/ with 200 within 20 s"
                } else {
                    "exited during startup"
                }
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "conformance: started {} (pid {pid}) at {base}, data {}, log {}",
        bin.display(),
        data_dir.display(),
        log_path.display()
    );
    base
}
