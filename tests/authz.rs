//! Access control, in-process: who may call which endpoint, asserted cell by
//! cell over every `/v2`, `/token` and `/api/v1` endpoint for every kind of
//! caller, on a private and on a public project; forged bearer tokens; login
//! rate limiting; secrets kept out of logs; the Basic-auth verification cache.
//!
//! The matrix tests report every mismatching cell before failing, so one run
//! shows the whole picture.

#[allow(dead_code)] // each stack uses part of it
#[path = "support/scale_out.rs"]
mod scale_out;

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request};
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use berth::auth::AuthMode;
use berth::config::Config;
use bytes::Bytes;
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use p256::SecretKey;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tower::ServiceExt;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

const ADMIN_PASSWORD: &str = "admin-password-0";
const BYSTANDER: &str = "bystander";

/// The member accounts: name, password and role in both test projects.
const MEMBERS: [(&str, &str, &str); 4] = [
    ("guest", "guest-password-1", "guest"),
    ("dev", "dev-password-2", "developer"),
    ("maint", "maint-password-3", "maintainer"),
    ("padmin", "padmin-password-4", "admin"),
];

// ---------------------------------------------------------------------------
// The matrix
// ---------------------------------------------------------------------------

/// One kind of caller: a column of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Guest,
    Developer,
    Maintainer,
    ProjectAdmin,
    SystemAdmin,
    /// `robot$<project>+ci` with pull and push on the project under test.
    RobotIn,
    /// `robot$other+ci`, with every action on another (private) project.
    RobotOut,
}

const CALLERS: [Caller; 8] = [
    Caller::Anonymous,
    Caller::Guest,
    Caller::Developer,
    Caller::Maintainer,
    Caller::ProjectAdmin,
    Caller::SystemAdmin,
    Caller::RobotIn,
    Caller::RobotOut,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vis {
    Private,
    Public,
}

impl Vis {
    fn project(self) -> &'static str {
        match self {
            Vis::Private => "privp",
            Vis::Public => "pubp",
        }
    }
}

/// One endpoint (sometimes one situation of an endpoint): a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ep {
    Base,
    Catalog,
    Tags,
    ManifestGetTag,
    ManifestHeadTag,
    ManifestGetDigest,
    ManifestHeadDigest,
    ManifestPutTag,
    ManifestPutDigest,
    ManifestDeleteTag,
    ManifestDeleteDigest,
    BlobGet,
    BlobHead,
    BlobDelete,
    UploadStart,
    UploadPatch,
    UploadFinish,
    UploadStatus,
    UploadCancel,
    Mount,
    MountUnreadable,
    Referrers,
    TokenGet,
    TokenPost,
    OpenApi,
    UsersList,
    UsersCreate,
    UsersUpdateOther,
    UsersUpdateSelf,
    UsersPromoteSelf,
    UsersDelete,
    ProjectsList,
    ProjectsCreate,
    ProjectsGet,
    ProjectsUpdate,
    ProjectsDelete,
    MembersList,
    MembersSet,
    MembersRemove,
    RobotsList,
    RobotsCreate,
    RobotsDelete,
    TokensList,
    TokensCreate,
    TokensDeleteOwn,
    TokensDeleteOther,
    Audit,
    Metrics,
}

impl Ep {
    fn is_v2(self) -> bool {
        use Ep::*;
        !matches!(
            self,
            TokenGet
                | TokenPost
                | OpenApi
                | UsersList
                | UsersCreate
                | UsersUpdateOther
                | UsersUpdateSelf
                | UsersPromoteSelf
                | UsersDelete
                | ProjectsList
                | ProjectsCreate
                | ProjectsGet
                | ProjectsUpdate
                | ProjectsDelete
                | MembersList
                | MembersSet
                | MembersRemove
                | RobotsList
                | RobotsCreate
                | RobotsDelete
                | Metrics
                | TokensList
                | TokensCreate
                | TokensDeleteOwn
                | TokensDeleteOther
                | Audit
        )
    }
}

// Each cell is one of:
//   NNN        the status;
//   200+ 200-  200, and the listing (catalog: `<project>/app`; project
//              list: `<project>`) includes / leaves out the project under test;
//   200[a,b]   200, and the token issued holds exactly these actions on
//              `<project>/app` (scope asked: pull,push,delete).
//
// A `<project>` is `privp` (private) or `pubp` (public). Each member account
// has the same role in both; `robot in` is `robot$<project>+ci` (pull, push);
// `robot out` is `robot$other+ci` (pull, push, delete on private `other`).

const PULL_PRIVATE: &str = "401  200  200  200  200  200  200  403";
const PULL_PUBLIC: &str = "200  200  200  200  200  200  200  200";
const PUSH_201: &str = "401  403  201  201  201  201  201  403";
const PUSH_202: &str = "401  403  202  202  202  202  202  403";
const PUSH_204: &str = "401  403  204  204  204  204  204  403";
const DELETE_202: &str = "401  403  403  202  202  202  403  403";
const SYSADMIN_200: &str = "401  403  403  403  403  200  403  403";
const SYSADMIN_201: &str = "401  403  403  403  403  201  403  403";
const SYSADMIN_204: &str = "401  403  403  403  403  204  403  403";
const PROJADMIN_200: &str = "401  403  403  403  200  200  403  403";
const PROJADMIN_201: &str = "401  403  403  403  201  201  403  403";
const PROJADMIN_204: &str = "401  403  403  403  204  204  403  403";

#[rustfmt::skip]
const MATRIX: &[(&str, Ep, &str, &str)] = &[
//   endpoint                                   private project                          public project
//                                              anon guest dev  maint padm sysad r-in r-out   anon guest dev  maint padm sysad r-in r-out
("GET /v2/",                        Ep::Base,   "401  200  200  200  200  200  200  200", "401  200  200  200  200  200  200  200"),
("GET /v2/_catalog",             Ep::Catalog,   "200- 200+ 200+ 200+ 200+ 200+ 200+ 200-", "200+ 200+ 200+ 200+ 200+ 200+ 200+ 200+"),
("GET /v2/P/app/tags/list",         Ep::Tags,   PULL_PRIVATE, PULL_PUBLIC),
("GET manifests/<tag>",   Ep::ManifestGetTag,   PULL_PRIVATE, PULL_PUBLIC),
("HEAD manifests/<tag>", Ep::ManifestHeadTag,   PULL_PRIVATE, PULL_PUBLIC),
("GET manifests/<digest>", Ep::ManifestGetDigest, PULL_PRIVATE, PULL_PUBLIC),
("HEAD manifests/<digest>", Ep::ManifestHeadDigest, PULL_PRIVATE, PULL_PUBLIC),
("PUT manifests/<tag>",   Ep::ManifestPutTag,   PUSH_201, PUSH_201),
("PUT manifests/<digest>", Ep::ManifestPutDigest, PUSH_201, PUSH_201),
("DELETE manifests/<tag>", Ep::ManifestDeleteTag, DELETE_202, DELETE_202),
("DELETE manifests/<digest>", Ep::ManifestDeleteDigest, DELETE_202, DELETE_202),
("GET blobs/<digest>",           Ep::BlobGet,   PULL_PRIVATE, PULL_PUBLIC),
("HEAD blobs/<digest>",         Ep::BlobHead,   PULL_PRIVATE, PULL_PUBLIC),
("DELETE blobs/<digest>",     Ep::BlobDelete,   DELETE_202, DELETE_202),
("POST blobs/uploads/",      Ep::UploadStart,   PUSH_202, PUSH_202),
("PATCH blobs/uploads/<id>", Ep::UploadPatch,   PUSH_202, PUSH_202),
("PUT blobs/uploads/<id>?digest=", Ep::UploadFinish, PUSH_201, PUSH_201),
("GET blobs/uploads/<id>",  Ep::UploadStatus,   PUSH_204, PUSH_204),
("DELETE blobs/uploads/<id>", Ep::UploadCancel, PUSH_204, PUSH_204),
("POST P/app2 uploads ?mount&from=P/app", Ep::Mount, PUSH_201, PUSH_201),
// From a private project nobody but the system admin may read: a mount
// must not take the blob from there, so the push falls back to an upload.
("POST P/app2 uploads ?mount&from=hidden/app", Ep::MountUnreadable,
                                                "401  403  202  202  202  201  202  403", "401  403  202  202  202  201  202  403"),
("GET referrers/<digest>",     Ep::Referrers,   PULL_PRIVATE, PULL_PUBLIC),
("GET /token (pull,push,delete)", Ep::TokenGet,
    "200[] 200[pull] 200[pull,push] 200[pull,push,delete] 200[pull,push,delete] 200[pull,push,delete] 200[pull,push] 200[]",
    "200[pull] 200[pull] 200[pull,push] 200[pull,push,delete] 200[pull,push,delete] 200[pull,push,delete] 200[pull,push] 200[pull]"),
// OAuth2 password grant; the anonymous caller sends no username/password.
("POST /token (password grant)", Ep::TokenPost,
    "400   200[pull] 200[pull,push] 200[pull,push,delete] 200[pull,push,delete] 200[pull,push,delete] 200[pull,push] 200[]",
    "400   200[pull] 200[pull,push] 200[pull,push,delete] 200[pull,push,delete] 200[pull,push,delete] 200[pull,push] 200[pull]"),
("GET /api/v1/openapi.json",     Ep::OpenApi,   "200  200  200  200  200  200  200  200", "200  200  200  200  200  200  200  200"),
("GET /api/v1/users",          Ep::UsersList,   SYSADMIN_200, SYSADMIN_200),
("POST /api/v1/users",       Ep::UsersCreate,   SYSADMIN_201, SYSADMIN_201),
("PATCH users/<other> password", Ep::UsersUpdateOther, SYSADMIN_200, SYSADMIN_200),
("PATCH users/<self> password", Ep::UsersUpdateSelf,
                                                "401  200  200  200  200  200  403  403", "401  200  200  200  200  200  403  403"),
("PATCH users/<self> admin=true", Ep::UsersPromoteSelf, SYSADMIN_200, SYSADMIN_200),
("DELETE users/<name>",      Ep::UsersDelete,   SYSADMIN_204, SYSADMIN_204),
("GET /api/v1/projects",    Ep::ProjectsList,   "200- 200+ 200+ 200+ 200+ 200+ 200+ 200-", "200+ 200+ 200+ 200+ 200+ 200+ 200+ 200+"),
("POST /api/v1/projects", Ep::ProjectsCreate,   SYSADMIN_201, SYSADMIN_201),
("GET projects/P",           Ep::ProjectsGet,   "401  200  200  200  200  200  200  404", "200  200  200  200  200  200  200  200"),
("PATCH projects/P (visibility)", Ep::ProjectsUpdate, PROJADMIN_200, PROJADMIN_200),
("DELETE projects/<P-like>", Ep::ProjectsDelete, PROJADMIN_204, PROJADMIN_204),
("GET projects/P/members",   Ep::MembersList,   "401  200  200  200  200  200  403  404", "401  200  200  200  200  200  403  403"),
("PUT projects/P/members/<u>", Ep::MembersSet,  PROJADMIN_204, PROJADMIN_204),
("DELETE projects/P/members/<u>", Ep::MembersRemove, PROJADMIN_204, PROJADMIN_204),
("GET projects/P/robots",     Ep::RobotsList,   PROJADMIN_200, PROJADMIN_200),
("POST projects/P/robots",  Ep::RobotsCreate,   PROJADMIN_201, PROJADMIN_201),
("DELETE projects/P/robots/<r>", Ep::RobotsDelete, PROJADMIN_204, PROJADMIN_204),
("GET /api/v1/tokens",        Ep::TokensList,   "401  200  200  200  200  200  403  403", "401  200  200  200  200  200  403  403"),
("POST /api/v1/tokens",     Ep::TokensCreate,   "401  201  201  201  201  201  403  403", "401  201  201  201  201  201  403  403"),
("DELETE tokens/<own id>", Ep::TokensDeleteOwn, "401  204  204  204  204  204  403  403", "401  204  204  204  204  204  403  403"),
// Personal tokens are the caller's own: someone else's is not found.
("DELETE tokens/<someone else's id>", Ep::TokensDeleteOther,
                                                "401  404  404  404  404  404  403  403", "401  404  404  404  404  404  403  403"),
("GET /api/v1/audit",              Ep::Audit,   SYSADMIN_200, SYSADMIN_200),
("GET /metrics",                 Ep::Metrics,   SYSADMIN_200, SYSADMIN_200),
];

/// What one cell expects.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Status(u16),
    Listed(bool),
    Granted(Vec<String>),
}

impl Expect {
    fn parse(cell: &str) -> Expect {
        if let Some(listed) = cell.strip_prefix("200") {
            match listed {
                "+" => return Expect::Listed(true),
                "-" => return Expect::Listed(false),
                _ => {}
            }
            if let Some(actions) = listed.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
                return Expect::Granted(
                    actions
                        .split(',')
                        .filter(|a| !a.is_empty())
                        .map(String::from)
                        .collect(),
                );
            }
        }
        Expect::Status(cell.parse().unwrap_or_else(|_| panic!("bad cell {cell:?}")))
    }

    fn status(&self) -> u16 {
        match self {
            Expect::Status(s) => *s,
            _ => 200,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Basic credentials on every request.
    Basic,
    /// A token from `GET /token` (Basic credentials there) for the scopes
    /// the request needs, then `Authorization: Bearer`.
    Bearer,
}

// ---------------------------------------------------------------------------
// HTTP plumbing
// ---------------------------------------------------------------------------

struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(300).collect()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first OCI error code of the body.
    fn code(&self) -> Option<String> {
        self.json()["errors"][0]["code"]
            .as_str()
            .map(str::to_string)
    }
}

/// A request to be sent (without its credentials), and the token scopes a
/// client would ask for to make it.
#[derive(Clone)]
struct Req {
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    scopes: Vec<String>,
    /// Credentials travel in the body (OAuth2 form): no Authorization.
    no_auth_header: bool,
}

impl Req {
    fn new(method: Method, uri: impl Into<String>) -> Req {
        Req {
            method,
            uri: uri.into(),
            headers: Vec::new(),
            body: Vec::new(),
            scopes: Vec::new(),
            no_auth_header: false,
        }
    }

    fn get(uri: impl Into<String>) -> Req {
        Req::new(Method::GET, uri)
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Req {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn json(self, value: Value) -> Req {
        let mut req = self.header("content-type", "application/json");
        req.body = value.to_string().into_bytes();
        req
    }

    fn bytes(self, content_type: &str, body: Vec<u8>) -> Req {
        let len = body.len().to_string();
        let mut req = self
            .header("content-type", content_type)
            .header("content-length", len);
        req.body = body;
        req
    }

    fn scope(mut self, scope: impl Into<String>) -> Req {
        self.scopes.push(scope.into());
        self
    }
}

async fn send(app: &Router, req: &Req, auth: Option<&str>, source: Option<IpAddr>) -> Resp {
    let mut builder = Request::builder().method(req.method.clone()).uri(&req.uri);
    for (name, value) in &req.headers {
        builder = builder.header(name, value);
    }
    if let Some(auth) = auth {
        builder = builder.header("authorization", auth);
    }
    let mut request = builder.body(Body::from(req.body.clone())).expect("request");
    if let Some(ip) = source {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
    }
    let response = app.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

fn basic(user: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{secret}")))
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The JSON payload of a JWT (not verified).
fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap_or("");
    URL_SAFE_NO_PAD
        .decode(part)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// The actions a token grants on one repository.
fn granted_on(token: &str, repo: &str) -> Vec<String> {
    jwt_part(token, 1)["access"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "repository" && a["name"] == repo)
        .flat_map(|a| a["actions"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(String::from))
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn ip(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(10, 9, 8, last)))
}

// ---------------------------------------------------------------------------
// The registry under test
// ---------------------------------------------------------------------------

/// The image pushed to `<project>/app:v1`.
struct Image {
    config: Vec<u8>,
    layer: Vec<u8>,
    digest: String,
}

impl Image {
    fn for_project(project: &str) -> Image {
        let config = json!({"architecture": "amd64", "os": "linux", "project": project})
            .to_string()
            .into_bytes();
        let layer = format!("layer of {project}").into_bytes();
        let mut image = Image {
            config,
            layer,
            digest: String::new(),
        };
        image.digest = sha256(&image.manifest(None));
        image
    }

    /// A manifest of this image's blobs, distinct per `variant`.
    fn manifest(&self, variant: Option<usize>) -> Vec<u8> {
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(&self.config), "size": self.config.len()},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256(&self.layer), "size": self.layer.len()}],
        });
        if let Some(v) = variant {
            m["annotations"] = json!({"variant": v.to_string()});
        }
        serde_json::to_vec(&m).unwrap()
    }
}

struct World {
    app: Router,
    auth: Arc<berth::auth::Auth>,
    config: Config,
    _root: tempfile::TempDir,
    admin: String,
    /// Robot name and secret per project.
    robots: HashMap<&'static str, (String, String)>,
    images: HashMap<&'static str, Image>,
    seq: AtomicUsize,
}

async fn open(
    tweak: impl FnOnce(&mut Config),
) -> (Router, Arc<berth::auth::Auth>, Config, tempfile::TempDir) {
    let root = tempfile::tempdir().expect("temp dir");
    let mut config = Config {
        data_dir: root.path().join("data"),
        ..Default::default()
    };
    config.auth.mode = AuthMode::Token;
    config.auth.admin_password = Some(ADMIN_PASSWORD.into());
    // The matrix runs for a while; one verification per account is enough.
    config.auth.credential_cache_seconds = 3600;
    scale_out::configure(&mut config).await;
    tweak(&mut config);
    let state = berth::server::open_state(&config)
        .await
        .expect("open registry");
    let auth = state.auth.clone();
    (berth::server::router(state), auth, config, root)
}

impl World {
    async fn new() -> World {
        World::with(|_| {}).await
    }

    async fn with(tweak: impl FnOnce(&mut Config)) -> World {
        let (app, auth, config, root) = open(tweak).await;
        let mut world = World {
            app,
            auth,
            config,
            _root: root,
            admin: basic("admin", ADMIN_PASSWORD),
            robots: HashMap::new(),
            images: HashMap::new(),
            seq: AtomicUsize::new(0),
        };
        for (name, password, _) in MEMBERS {
            world.create_user(name, password).await;
        }
        world.create_user(BYSTANDER, "bystander-password").await;
        for (name, public) in [
            ("privp", false),
            ("pubp", true),
            ("other", false),
            ("hidden", false),
        ] {
            world.create_project(name, public).await;
        }
        for project in ["privp", "pubp"] {
            world.add_members(project).await;
            let robot = world.create_robot(project, "ci", &["pull", "push"]).await;
            world.robots.insert(project, robot);
            let image = Image::for_project(project);
            let repo = format!("{project}/app");
            world.push_blob(&repo, &image.config).await;
            world.push_blob(&repo, &image.layer).await;
            world
                .push_manifest(&repo, "v1", &image.manifest(None))
                .await;
            world.images.insert(project, image);
        }
        let robot = world
            .create_robot("other", "ci", &["pull", "push", "delete"])
            .await;
        world.robots.insert("other", robot);
        world
    }

    fn next(&self) -> usize {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    async fn send(&self, req: &Req, auth: Option<&str>) -> Resp {
        send(&self.app, req, auth, None).await
    }

    /// A setup step as the system admin; it must succeed.
    async fn admin(&self, req: Req) -> Resp {
        let r = self.send(&req, Some(&self.admin)).await;
        assert!(
            (200..300).contains(&r.status),
            "setup {} {} answered {}: {}",
            req.method,
            req.uri,
            r.status,
            r.text()
        );
        r
    }

    async fn create_user(&self, name: &str, password: &str) {
        self.admin(
            Req::new(Method::POST, "/api/v1/users")
                .json(json!({"name": name, "password": password})),
        )
        .await;
    }

    async fn create_project(&self, name: &str, public: bool) {
        self.admin(
            Req::new(Method::POST, "/api/v1/projects")
                .json(json!({"name": name, "public": public})),
        )
        .await;
    }

    async fn add_members(&self, project: &str) {
        for (user, _, role) in MEMBERS {
            self.admin(
                Req::new(
                    Method::PUT,
                    format!("/api/v1/projects/{project}/members/{user}"),
                )
                .json(json!({ "role": role })),
            )
            .await;
        }
    }

    /// Returns the robot's full name and secret.
    async fn create_robot(&self, project: &str, name: &str, actions: &[&str]) -> (String, String) {
        let r = self
            .admin(
                Req::new(Method::POST, format!("/api/v1/projects/{project}/robots"))
                    .json(json!({"name": name, "actions": actions})),
            )
            .await;
        let v = r.json();
        (
            v["name"].as_str().expect("robot name").to_string(),
            v["secret"].as_str().expect("robot secret").to_string(),
        )
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        self.admin(
            Req::new(
                Method::POST,
                format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            )
            .bytes("application/octet-stream", data.to_vec()),
        )
        .await;
        digest
    }

    async fn push_manifest(&self, repo: &str, reference: &str, body: &[u8]) -> String {
        self.admin(
            Req::new(Method::PUT, format!("/v2/{repo}/manifests/{reference}"))
                .bytes(OCI_MANIFEST, body.to_vec()),
        )
        .await;
        sha256(body)
    }

    async fn start_upload(&self, repo: &str) -> String {
        let r = self
            .admin(Req::new(Method::POST, format!("/v2/{repo}/blobs/uploads/")))
            .await;
        r.header("location").expect("Location").to_string()
    }

    /// A personal access token of `auth`'s account; returns its id.
    async fn create_token(&self, auth: &str, name: &str) -> String {
        let r = self
            .send(
                &Req::new(Method::POST, "/api/v1/tokens").json(json!({ "name": name })),
                Some(auth),
            )
            .await;
        assert_eq!(r.status, 201, "creating a token: {}", r.text());
        r.json()["id"].as_str().expect("token id").to_string()
    }

    fn creds(&self, caller: Caller, vis: Vis) -> Option<(String, String)> {
        let member = |i: usize| Some((MEMBERS[i].0.to_string(), MEMBERS[i].1.to_string()));
        match caller {
            Caller::Anonymous => None,
            Caller::Guest => member(0),
            Caller::Developer => member(1),
            Caller::Maintainer => member(2),
            Caller::ProjectAdmin => member(3),
            Caller::SystemAdmin => Some(("admin".into(), ADMIN_PASSWORD.into())),
            Caller::RobotIn => Some(self.robots[vis.project()].clone()),
            Caller::RobotOut => Some(self.robots["other"].clone()),
        }
    }

    fn basic_of(&self, caller: Caller, vis: Vis) -> Option<String> {
        self.creds(caller, vis).map(|(u, s)| basic(&u, &s))
    }

    /// `GET /token` for `scopes` with the caller's Basic credentials.
    async fn token(&self, auth: Option<&str>, scopes: &[String]) -> Resp {
        let mut query = vec![("service", "berth")];
        query.extend(scopes.iter().map(|s| ("scope", s.as_str())));
        let uri = format!("/token?{}", serde_urlencoded::to_string(&query).unwrap());
        self.send(&Req::get(uri), auth).await
    }

    /// Sets up what one cell's request needs (as the system admin) and
    /// returns that request.
    async fn prepare(&self, ep: Ep, vis: Vis, caller: Caller) -> Req {
        let n = self.next();
        let p = vis.project();
        let repo = format!("{p}/app");
        let image = &self.images[p];
        let all = format!("repository:{repo}:pull,push,delete");
        let repo_req = |method: Method, rest: &str| {
            Req::new(method, format!("/v2/{repo}/{rest}")).scope(all.clone())
        };
        let me = self.creds(caller, vis);
        let me_name = me
            .as_ref()
            .map_or("guest".to_string(), |(name, _)| name.clone());
        match ep {
            Ep::Base => Req::get("/v2/"),
            Ep::Catalog => Req::get("/v2/_catalog").scope("registry:catalog:*"),
            Ep::Tags => repo_req(Method::GET, "tags/list"),
            Ep::ManifestGetTag => {
                repo_req(Method::GET, "manifests/v1").header("accept", OCI_MANIFEST)
            }
            Ep::ManifestHeadTag => {
                repo_req(Method::HEAD, "manifests/v1").header("accept", OCI_MANIFEST)
            }
            Ep::ManifestGetDigest => repo_req(Method::GET, &format!("manifests/{}", image.digest))
                .header("accept", OCI_MANIFEST),
            Ep::ManifestHeadDigest => {
                repo_req(Method::HEAD, &format!("manifests/{}", image.digest))
                    .header("accept", OCI_MANIFEST)
            }
            Ep::ManifestPutTag => repo_req(Method::PUT, &format!("manifests/put{n}"))
                .bytes(OCI_MANIFEST, image.manifest(Some(n))),
            Ep::ManifestPutDigest => {
                let body = image.manifest(Some(n));
                repo_req(Method::PUT, &format!("manifests/{}", sha256(&body)))
                    .bytes(OCI_MANIFEST, body)
            }
            Ep::ManifestDeleteTag => {
                self.push_manifest(&repo, &format!("del{n}"), &image.manifest(Some(n)))
                    .await;
                repo_req(Method::DELETE, &format!("manifests/del{n}"))
            }
            Ep::ManifestDeleteDigest => {
                let digest = self
                    .push_manifest(&repo, &format!("dd{n}"), &image.manifest(Some(n)))
                    .await;
                repo_req(Method::DELETE, &format!("manifests/{digest}"))
            }
            Ep::BlobGet => repo_req(Method::GET, &format!("blobs/{}", sha256(&image.layer))),
            Ep::BlobHead => repo_req(Method::HEAD, &format!("blobs/{}", sha256(&image.layer))),
            Ep::BlobDelete => {
                let digest = self.push_blob(&repo, format!("blob {n}").as_bytes()).await;
                repo_req(Method::DELETE, &format!("blobs/{digest}"))
            }
            Ep::UploadStart => repo_req(Method::POST, "blobs/uploads/"),
            Ep::UploadPatch => {
                let location = self.start_upload(&repo).await;
                Req::new(Method::PATCH, location)
                    .scope(all)
                    .bytes("application/octet-stream", b"chunk".to_vec())
                    .header("content-range", "0-4")
            }
            Ep::UploadFinish => {
                let location = self.start_upload(&repo).await;
                let data = format!("uploaded {n}").into_bytes();
                Req::new(Method::PUT, format!("{location}?digest={}", sha256(&data)))
                    .scope(all)
                    .bytes("application/octet-stream", data)
            }
            Ep::UploadStatus => Req::get(self.start_upload(&repo).await).scope(all),
            Ep::UploadCancel => Req::new(Method::DELETE, self.start_upload(&repo).await).scope(all),
            Ep::Mount | Ep::MountUnreadable => {
                let from = if ep == Ep::Mount {
                    repo.clone()
                } else {
                    "hidden/app".to_string()
                };
                let digest = self
                    .push_blob(&from, format!("mountable {n}").as_bytes())
                    .await;
                Req::new(
                    Method::POST,
                    format!("/v2/{p}/app2/blobs/uploads/?mount={digest}&from={from}"),
                )
                .scope(format!("repository:{p}/app2:pull,push,delete"))
                .scope(format!("repository:{from}:pull"))
            }
            Ep::Referrers => repo_req(Method::GET, &format!("referrers/{}", image.digest)),
            Ep::TokenGet => Req::get(format!(
                "/token?service=berth&scope=repository:{repo}:pull,push,delete"
            )),
            Ep::TokenPost => {
                let mut form = vec![
                    ("grant_type", "password".to_string()),
                    ("service", "berth".to_string()),
                    ("scope", all),
                ];
                if let Some((user, secret)) = &me {
                    form.push(("username", user.clone()));
                    form.push(("password", secret.clone()));
                }
                let mut req = Req::new(Method::POST, "/token").bytes(
                    "application/x-www-form-urlencoded",
                    serde_urlencoded::to_string(&form).unwrap().into_bytes(),
                );
                req.no_auth_header = true;
                req
            }
            Ep::OpenApi => Req::get("/api/v1/openapi.json"),
            Ep::Metrics => Req::get("/metrics"),
            Ep::UsersList => Req::get("/api/v1/users"),
            Ep::UsersCreate => Req::new(Method::POST, "/api/v1/users")
                .json(json!({"name": format!("new{n}"), "password": format!("new-password-{n}")})),
            Ep::UsersUpdateOther => Req::new(Method::PATCH, format!("/api/v1/users/{BYSTANDER}"))
                .json(json!({"password": "bystander-password"})),
            Ep::UsersUpdateSelf => {
                // The same password again, so the caller can go on.
                let password = me
                    .as_ref()
                    .map_or("some-password".to_string(), |(_, s)| s.clone());
                Req::new(Method::PATCH, format!("/api/v1/users/{me_name}"))
                    .json(json!({ "password": password }))
            }
            Ep::UsersPromoteSelf => Req::new(Method::PATCH, format!("/api/v1/users/{me_name}"))
                .json(json!({"admin": true})),
            Ep::UsersDelete => {
                self.create_user(&format!("gone{n}"), "gone-password").await;
                Req::new(Method::DELETE, format!("/api/v1/users/gone{n}"))
            }
            Ep::ProjectsList => Req::get("/api/v1/projects"),
            Ep::ProjectsCreate => Req::new(Method::POST, "/api/v1/projects")
                .json(json!({"name": format!("made{n}"), "public": false})),
            Ep::ProjectsGet => Req::get(format!("/api/v1/projects/{p}")),
            Ep::ProjectsUpdate => Req::new(Method::PATCH, format!("/api/v1/projects/{p}"))
                .json(json!({"public": vis == Vis::Public})),
            Ep::ProjectsDelete => {
                // A project like P (visibility, members), to be deleted.
                let name = format!("drop{n}");
                self.create_project(&name, vis == Vis::Public).await;
                self.add_members(&name).await;
                Req::new(Method::DELETE, format!("/api/v1/projects/{name}"))
            }
            Ep::MembersList => Req::get(format!("/api/v1/projects/{p}/members")),
            Ep::MembersSet => Req::new(
                Method::PUT,
                format!("/api/v1/projects/{p}/members/{BYSTANDER}"),
            )
            .json(json!({"role": "guest"})),
            Ep::MembersRemove => {
                let uri = format!("/api/v1/projects/{p}/members/{BYSTANDER}");
                self.admin(Req::new(Method::PUT, &uri).json(json!({"role": "guest"})))
                    .await;
                Req::new(Method::DELETE, uri)
            }
            Ep::RobotsList => Req::get(format!("/api/v1/projects/{p}/robots")),
            Ep::RobotsCreate => Req::new(Method::POST, format!("/api/v1/projects/{p}/robots"))
                .json(json!({"name": format!("r{n}"), "actions": ["pull"]})),
            Ep::RobotsDelete => {
                let (robot, _) = self.create_robot(p, &format!("x{n}"), &["pull"]).await;
                Req::new(
                    Method::DELETE,
                    format!("/api/v1/projects/{p}/robots/{robot}"),
                )
            }
            Ep::TokensList => Req::get("/api/v1/tokens"),
            Ep::TokensCreate => {
                Req::new(Method::POST, "/api/v1/tokens").json(json!({"name": format!("t{n}")}))
            }
            Ep::TokensDeleteOwn | Ep::TokensDeleteOther => {
                let is_user = !matches!(
                    caller,
                    Caller::Anonymous | Caller::RobotIn | Caller::RobotOut
                );
                let owner = if ep == Ep::TokensDeleteOwn && is_user {
                    self.basic_of(caller, vis).expect("a user")
                } else {
                    basic(BYSTANDER, "bystander-password")
                };
                let id = self.create_token(&owner, &format!("own{n}")).await;
                Req::new(Method::DELETE, format!("/api/v1/tokens/{id}"))
            }
            Ep::Audit => Req::get("/api/v1/audit?limit=5"),
        }
    }

    /// Runs one cell; `Err` describes a mismatch.
    async fn check_cell(
        &self,
        ep: Ep,
        vis: Vis,
        caller: Caller,
        want: &Expect,
        mode: Mode,
    ) -> Result<(), String> {
        let req = self.prepare(ep, vis, caller).await;
        let auth = match mode {
            _ if req.no_auth_header => None,
            Mode::Basic => self.basic_of(caller, vis),
            Mode::Bearer => {
                let auth = self.basic_of(caller, vis);
                let r = self.token(auth.as_deref(), &req.scopes).await;
                if r.status != 200 {
                    return Err(format!(
                        "GET /token for {:?} answered {}: {}",
                        req.scopes,
                        r.status,
                        r.text()
                    ));
                }
                let token = r.json()["token"].as_str().unwrap_or("").to_string();
                Some(format!("Bearer {token}"))
            }
        };
        let r = self.send(&req, auth.as_deref()).await;
        let what = format!("{} {}", req.method, req.uri);
        if r.status != want.status() {
            return Err(format!(
                "{what}: expected {}, got {} {}",
                want.status(),
                r.status,
                r.text()
            ));
        }
        let has_body = req.method != Method::HEAD;
        match want {
            Expect::Status(_) => {}
            Expect::Listed(listed) => {
                let body = r.json();
                let present = match ep {
                    Ep::Catalog => body["repositories"].as_array().is_some_and(|a| {
                        a.iter()
                            .any(|n| n == &json!(format!("{}/app", vis.project())))
                    }),
                    _ => body
                        .as_array()
                        .is_some_and(|a| a.iter().any(|p| p["name"] == vis.project())),
                };
                if present != *listed {
                    return Err(format!(
                        "{what}: expected the listing to {} {}, got {}",
                        if *listed { "include" } else { "leave out" },
                        vis.project(),
                        r.text()
                    ));
                }
            }
            Expect::Granted(actions) => {
                let body = r.json();
                let token = body["token"]
                    .as_str()
                    .or(body["access_token"].as_str())
                    .unwrap_or("");
                let got = granted_on(token, &format!("{}/app", vis.project()));
                if &got != actions {
                    return Err(format!(
                        "{what}: expected the token to grant {actions:?}, it grants {got:?}"
                    ));
                }
            }
        }
        if ep.is_v2() && r.status == 401 {
            let challenge = r.header("www-authenticate").unwrap_or("");
            if !challenge.starts_with("Bearer realm=\"") || !challenge.contains("service=\"berth\"")
            {
                return Err(format!(
                    "{what}: 401 without a Bearer challenge: {challenge:?}"
                ));
            }
            if mode == Mode::Bearer
                && ep != Ep::Base
                && !challenge.contains("error=\"insufficient_scope\"")
            {
                return Err(format!(
                    "{what}: 401 to a token without error=\"insufficient_scope\": {challenge:?}"
                ));
            }
        }
        let code = r.code();
        if has_body && r.status == 403 && code.as_deref() != Some("DENIED") {
            return Err(format!("{what}: 403 with code {code:?}, not DENIED"));
        }
        if has_body && r.status == 401 && code.as_deref() != Some("UNAUTHORIZED") {
            return Err(format!("{what}: 401 with code {code:?}, not UNAUTHORIZED"));
        }
        Ok(())
    }
}

/// Runs every row `rows` selects for every caller and both projects; fails
/// at the end with every mismatching cell.
async fn run_matrix(world: &World, mode: Mode, rows: impl Fn(Ep) -> bool) {
    let mut failures = Vec::new();
    let mut cells = 0;
    for (label, ep, private, public) in MATRIX.iter().filter(|r| rows(r.1)) {
        for (vis, line) in [(Vis::Private, private), (Vis::Public, public)] {
            let expected: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(expected.len(), CALLERS.len(), "row {label}: {line}");
            for (caller, cell) in CALLERS.iter().zip(expected) {
                let mut want = Expect::parse(cell);
                if mode == Mode::Bearer && want == Expect::Status(403) {
                    // A token lacking an action is a 401 insufficient_scope.
                    want = Expect::Status(401);
                }
                cells += 1;
                if let Err(e) = world.check_cell(*ep, vis, *caller, &want, mode).await {
                    failures.push(format!(
                        "[{mode:?}] {label} | {:?} project | {caller:?}: {e}",
                        vis
                    ));
                }
            }
        }
    }
    eprintln!(
        "{mode:?} matrix: {cells} cells, {} mismatches",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {cells} cells mismatch:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn v2_matrix_with_basic_auth() {
    let world = World::new().await;
    run_matrix(&world, Mode::Basic, Ep::is_v2).await;
}

#[tokio::test]
async fn token_and_management_matrix_with_basic_auth() {
    let world = World::new().await;
    run_matrix(&world, Mode::Basic, |ep| !ep.is_v2()).await;
}

#[tokio::test]
async fn v2_matrix_with_bearer_tokens() {
    let world = World::new().await;
    run_matrix(&world, Mode::Bearer, Ep::is_v2).await;
}

// ---------------------------------------------------------------------------
// Tokens: intersection of scopes, and forgeries
// ---------------------------------------------------------------------------

/// The registry's signing key, read from its key directory, and its `kid`.
async fn server_key(world: &World) -> (SecretKey, String) {
    let dir = world.config.data_dir.join("keys");
    let path = std::fs::read_dir(&dir)
        .expect("key directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .max()
        .expect("a signing key");
    let pem = std::fs::read_to_string(&path).expect("key file");
    let key = SecretKey::from_pkcs8_pem(&pem).expect("PKCS#8 P-256 key");
    let r = world.token(Some(&basic("guest", MEMBERS[0].1)), &[]).await;
    let token = r.json()["token"].as_str().expect("token").to_string();
    let kid = jwt_part(&token, 0)["kid"]
        .as_str()
        .expect("kid")
        .to_string();
    (key, kid)
}

fn sign(key: &SecretKey, kid: &str, claims: &Value) -> String {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    header.typ = Some("JWT".into());
    let der = key.to_pkcs8_der().expect("DER");
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(der.as_bytes())).expect("sign")
}

/// Claims of a token for `sub` granting `actions` on `privp/app`.
fn claims(sub: &str, actions: &[&str]) -> Value {
    let now = unix_now();
    json!({
        "iss": "berth",
        "sub": sub,
        "aud": "berth",
        "exp": now + 300,
        "nbf": now - 1,
        "iat": now,
        "jti": format!("test-{now}-{sub}"),
        "access": [{"type": "repository", "name": "privp/app", "actions": actions}],
    })
}

const PRIVATE_MANIFEST: &str = "/v2/privp/app/manifests/v1";

/// Sends `GET` of the private manifest with `Bearer token`.
async fn pull_with(world: &World, token: &str) -> Resp {
    world
        .send(
            &Req::get(PRIVATE_MANIFEST).header("accept", OCI_MANIFEST),
            Some(&format!("Bearer {token}")),
        )
        .await
}

#[track_caller]
fn assert_refused(r: &Resp, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    let challenge = r.header("www-authenticate").unwrap_or("");
    assert!(
        challenge.starts_with("Bearer realm="),
        "{what}: challenge {challenge:?}"
    );
}

#[tokio::test]
async fn tokens_hold_the_intersection_of_asked_and_allowed() {
    let world = World::new().await;
    let dev = basic("dev", MEMBERS[1].1);
    let scopes = [
        "repository:privp/app:pull,push,delete".to_string(),
        "repository:other/app:pull".to_string(),
        "repository:pubp/app:pull,push".to_string(),
        "repository:hidden/app:pull,push,delete".to_string(),
    ];
    let r = world.token(Some(&dev), &scopes).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    assert_eq!(granted_on(&token, "privp/app"), ["pull", "push"]);
    assert_eq!(granted_on(&token, "pubp/app"), ["pull", "push"]);
    assert!(granted_on(&token, "other/app").is_empty());
    assert!(granted_on(&token, "hidden/app").is_empty());
    assert_eq!(jwt_part(&token, 1)["sub"], "dev");
    assert_eq!(jwt_part(&token, 1)["aud"], "berth");

    // The token is good for what it holds, and nothing else.
    assert_eq!(pull_with(&world, &token).await.status, 200);
    let r = world
        .send(
            &Req::get("/v2/hidden/app/tags/list"),
            Some(&format!("Bearer {token}")),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r
        .header("www-authenticate")
        .unwrap_or("")
        .contains("error=\"insufficient_scope\""));
}

#[tokio::test]
async fn alg_none_token_is_refused() {
    let world = World::new().await;
    let (key, kid) = server_key(&world).await;
    let claims = claims("admin", &["pull", "push", "delete"]);
    // Control: the same claims, properly signed, are accepted.
    assert_eq!(
        pull_with(&world, &sign(&key, &kid, &claims)).await.status,
        200
    );

    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    assert_refused(&pull_with(&world, &unsigned).await, "alg none");
    let genuine_signature = sign(&key, &kid, &claims)
        .rsplit('.')
        .next()
        .unwrap()
        .to_string();
    let with_signature = format!("{unsigned}{genuine_signature}");
    assert_refused(
        &pull_with(&world, &with_signature).await,
        "alg none with a lifted signature",
    );
}

#[tokio::test]
async fn token_signed_by_a_foreign_key_is_refused() {
    let world = World::new().await;
    let (key, kid) = server_key(&world).await;
    let claims = claims("admin", &["pull"]);
    assert_eq!(
        pull_with(&world, &sign(&key, &kid, &claims)).await.status,
        200
    );

    let foreign = SecretKey::random(&mut rand::rngs::OsRng);
    let r = pull_with(&world, &sign(&foreign, &kid, &claims)).await;
    assert_refused(&r, "foreign key with the server's kid");
    assert!(r
        .header("www-authenticate")
        .unwrap_or("")
        .contains("error=\"invalid_token\""));
}

#[tokio::test]
async fn token_for_another_service_is_refused() {
    let world = World::new().await;
    let (key, kid) = server_key(&world).await;
    let mut claims = claims("admin", &["pull"]);
    claims["aud"] = json!("other-registry");
    assert_refused(
        &pull_with(&world, &sign(&key, &kid, &claims)).await,
        "wrong audience",
    );
    claims["aud"] = json!("berth");
    claims["iss"] = json!("someone-else");
    assert_refused(
        &pull_with(&world, &sign(&key, &kid, &claims)).await,
        "wrong issuer",
    );
}

#[tokio::test]
async fn expired_token_is_refused() {
    let world = World::new().await;
    let (key, kid) = server_key(&world).await;
    let mut claims = claims("admin", &["pull"]);
    let now = unix_now();
    claims["exp"] = json!(now - 120);
    claims["nbf"] = json!(now - 600);
    claims["iat"] = json!(now - 600);
    assert_refused(
        &pull_with(&world, &sign(&key, &kid, &claims)).await,
        "expired",
    );
}

#[tokio::test]
async fn edited_token_payload_is_refused() {
    let world = World::new().await;
    let guest = basic("guest", MEMBERS[0].1);
    let r = world
        .token(Some(&guest), &["repository:privp/app:pull".into()])
        .await;
    let token = r.json()["token"].as_str().unwrap().to_string();
    assert_eq!(pull_with(&world, &token).await.status, 200);

    let mut payload = jwt_part(&token, 1);
    payload["access"] =
        json!([{"type": "repository", "name": "privp/app", "actions": ["pull", "push", "delete"]}]);
    let parts: Vec<&str> = token.split('.').collect();
    let edited = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    );
    let image = Image::for_project("privp");
    let put = Req::new(Method::PUT, "/v2/privp/app/manifests/edited")
        .bytes(OCI_MANIFEST, image.manifest(Some(999_999)));
    let r = world.send(&put, Some(&format!("Bearer {edited}"))).await;
    assert_refused(&r, "payload edited to add push");
    assert_refused(&pull_with(&world, &edited).await, "edited token, pull");
}

#[tokio::test]
async fn token_beyond_the_grant_lacks_the_action() {
    let world = World::new().await;
    let guest = basic("guest", MEMBERS[0].1);
    let r = world
        .token(Some(&guest), &["repository:privp/app:pull,push".into()])
        .await;
    assert_eq!(r.status, 200, "the token is issued: {}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    assert_eq!(granted_on(&token, "privp/app"), ["pull"]);
    assert_eq!(pull_with(&world, &token).await.status, 200);

    let image = Image::for_project("privp");
    let put = Req::new(Method::PUT, "/v2/privp/app/manifests/guest-push")
        .bytes(OCI_MANIFEST, image.manifest(Some(888_888)));
    let r = world.send(&put, Some(&format!("Bearer {token}"))).await;
    assert_refused(&r, "guest pushing with a pull token");
    let challenge = r.header("www-authenticate").unwrap_or("");
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"repository:privp/app:push\""),
        "{challenge}"
    );
    assert_eq!(r.code().as_deref(), Some("UNAUTHORIZED"));
}

#[tokio::test]
async fn refresh_token_is_not_an_access_token() {
    let world = World::new().await;
    let refresh = refresh_token_of(&world, "dev", MEMBERS[1].1).await;
    assert_refused(
        &pull_with(&world, &refresh).await,
        "refresh token as access token",
    );

    // Control: it is a good refresh token.
    let form = serde_urlencoded::to_string([
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("service", "berth"),
        ("scope", "repository:privp/app:pull"),
    ])
    .unwrap();
    let r = world
        .send(
            &Req::new(Method::POST, "/token")
                .bytes("application/x-www-form-urlencoded", form.into_bytes()),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let access = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(pull_with(&world, &access).await.status, 200);
}

// ---------------------------------------------------------------------------
// Brute force
// ---------------------------------------------------------------------------

async fn limited_world() -> World {
    World::with(|c| {
        c.auth.login_max_failures = 3;
        c.auth.login_window_seconds = 300;
    })
    .await
}

async fn base_from(world: &World, user: &str, secret: &str, source: Option<IpAddr>) -> Resp {
    send(
        &world.app,
        &Req::get("/v2/"),
        Some(&basic(user, secret)),
        source,
    )
    .await
}

#[track_caller]
fn assert_limited(r: &Resp, what: &str) {
    assert_eq!(r.status, 429, "{what}: {}", r.text());
    let wait: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=300).contains(&wait), "{what}: Retry-After {wait}");
}

/// Replicas on one database share the failed-login counts: guesses
/// spread over two replicas back off as if they all reached one. (On the
/// embedded default one process alone serves the data directory: the
/// tests above are the whole story there.)
#[tokio::test]
async fn failed_logins_on_one_replica_count_on_the_others() {
    if !scale_out::on() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let replicas = two_replicas(root.path(), |c| {
        c.auth.login_max_failures = 3;
        c.auth.login_window_seconds = 300;
    })
    .await;
    let (a, b) = (&replicas[0].0, &replicas[1].0);
    let right = basic("admin", ADMIN_PASSWORD);
    let wrong = basic("admin", "wrong-guess");
    for _ in 0..3 {
        let r = send(a, &Req::get("/v2/"), Some(&wrong), ip(7)).await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    assert_limited(
        &send(a, &Req::get("/v2/"), Some(&wrong), ip(7)).await,
        "a 4th guess on the replica that saw the first three",
    );
    // Replicas write and merge the counts once a second: after three, the
    // first guess on the other replica (which would count as its own
    // first failure) is refused.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_limited(
        &send(b, &Req::get("/v2/"), Some(&wrong), ip(7)).await,
        "the first guess on the other replica",
    );
    assert_limited(
        &send(b, &Req::get("/v2/"), Some(&right), ip(7)).await,
        "the right password from the guessing address, on the other replica",
    );
    let r = send(b, &Req::get("/v2/"), Some(&right), ip(8)).await;
    assert_eq!(
        r.status,
        200,
        "the owner from another address: {}",
        r.text()
    );
}

/// Two replicas on one database, with their background workers.
async fn two_replicas(
    root: &Path,
    tweak: impl Fn(&mut Config),
) -> Vec<(Router, Config, berth::workers::Workers)> {
    let mut config = Config::default();
    config.auth.admin_password = Some(ADMIN_PASSWORD.into());
    tweak(&mut config);
    scale_out::configure(&mut config).await;
    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        let mut c = config.clone();
        c.data_dir = root.join(name);
        let state = berth::server::open_state(&c).await.unwrap();
        let workers = berth::server::start_workers(&state, &c, false);
        replicas.push((berth::server::router(state), c, workers));
    }
    replicas
}

/// The `kid` in a bearer token's header.
fn kid_of(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    header["kid"].as_str().unwrap().to_string()
}

/// A token key rotated on one replica's data directory verifies on every
/// replica within seconds, signs once it has settled (the test renames the
/// key file as if the settling time had passed), and the tokens signed
/// before keep working everywhere.
#[tokio::test]
async fn a_rotated_token_key_reaches_every_replica_while_they_run() {
    if !scale_out::on() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let replicas = two_replicas(root.path(), |_| {}).await;
    let (a, b) = (&replicas[0].0, &replicas[1].0);
    let admin = basic("admin", ADMIN_PASSWORD);
    let token_from = |app: &Router| {
        let (app, admin) = (app.clone(), admin.clone());
        async move {
            let r = send(&app, &Req::get("/token?service=berth"), Some(&admin), ip(9)).await;
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["token"].as_str().unwrap().to_string()
        }
    };
    let before = token_from(a).await;
    let keys = replicas[0].1.data_dir.join("keys");
    let new_kid = berth::auth::TokenKeys::rotate(&keys).unwrap();
    let newest = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let stamp: u128 = newest.file_stem().unwrap().to_str().unwrap()["es256-".len()..]
        .parse()
        .unwrap();
    let settled = stamp - 2 * berth::server::KEY_SETTLE.as_nanos();
    std::fs::rename(&newest, keys.join(format!("es256-{settled:020}.pem"))).unwrap();
    assert!(berth::server::share_keys(&replicas[0].1).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let token = token_from(b).await;
        if kid_of(&token) == new_kid {
            break token;
        }
        assert!(
            Instant::now() < deadline,
            "the other replica still signs with the old key after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (app, name) in [(a, "a"), (b, "b")] {
        for (token, which) in [(&before, "before"), (&after, "after")] {
            let bearer = format!("Bearer {token}");
            let r = send(app, &Req::get("/v2/"), Some(&bearer), ip(9)).await;
            assert_eq!(
                r.status,
                200,
                "the token from {which} on {name}: {}",
                r.text()
            );
        }
    }
}

/// A guesser backs off on its own address; the owner, with the right
/// password from another address, gets in at once (anyone could otherwise
/// lock out any account, `admin` included).
#[tokio::test]
async fn repeated_failures_make_the_guessing_address_back_off_not_the_owner() {
    let world = limited_world().await;
    world.create_user("victim", "victim-password").await;
    for _ in 0..3 {
        let r = base_from(&world, "victim", "wrong-guess", ip(1)).await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    assert_limited(
        &base_from(&world, "victim", "wrong-guess", ip(1)).await,
        "4th wrong password from the same address",
    );
    assert_limited(
        &base_from(&world, "victim", "victim-password", ip(1)).await,
        "the right password from the guessing address during its back-off",
    );
    let r = base_from(&world, "victim", "victim-password", ip(3)).await;
    assert_eq!(
        r.status,
        200,
        "the owner from another address: {}",
        r.text()
    );
    let r = send(
        &world.app,
        &Req::get("/token?service=berth"),
        Some(&basic("victim", "victim-password")),
        ip(4),
    )
    .await;
    assert_eq!(
        r.status,
        200,
        "GET /token from another address: {}",
        r.text()
    );
    let form = "grant_type=password&username=victim&password=victim-password&service=berth";
    let r = send(
        &world.app,
        &Req::new(Method::POST, "/token").bytes(
            "application/x-www-form-urlencoded",
            form.as_bytes().to_vec(),
        ),
        None,
        ip(5),
    )
    .await;
    assert_eq!(
        r.status,
        200,
        "POST /token from another address: {}",
        r.text()
    );
    let r = send(
        &world.app,
        &Req::get("/token?service=berth"),
        Some(&basic("victim", "wrong-guess")),
        ip(1),
    )
    .await;
    assert_limited(&r, "GET /token from the guessing address");
}

/// The back-off must hold even when the right password was used (and its
/// verification cached) just before: otherwise, while it is cached, wrong
/// guesses get 429 and the right one 200, an oracle with no rate limit.
#[tokio::test]
async fn a_recently_used_password_is_refused_during_the_back_off() {
    let world = limited_world().await;
    world.create_user("victim", "victim-password").await;
    assert_eq!(
        base_from(&world, "victim", "victim-password", ip(10))
            .await
            .status,
        200
    );
    for _ in 0..3 {
        let r = base_from(&world, "victim", "wrong-guess", ip(11)).await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    assert_limited(
        &base_from(&world, "victim", "another-guess", ip(11)).await,
        "4th wrong password",
    );
    assert_limited(
        &base_from(&world, "victim", "victim-password", ip(11)).await,
        "the right (cached) password from the guessing address during its back-off",
    );
}

#[tokio::test]
async fn an_address_guessing_across_accounts_backs_off_but_its_known_users_get_in() {
    let world = World::with(|c| {
        c.auth.login_max_failures = 3;
        c.auth.login_address_max_failures = 3;
    })
    .await;
    // A colleague behind the same address logged in before.
    let (dev, dev_password, _) = MEMBERS[1];
    assert_eq!(
        base_from(&world, dev, dev_password, ip(20)).await.status,
        200
    );
    for user in [MEMBERS[0].0, MEMBERS[2].0, BYSTANDER] {
        let r = base_from(&world, user, "wrong-guess", ip(20)).await;
        assert_eq!(r.status, 401, "{}", r.text());
    }
    assert_limited(
        &base_from(&world, "padmin", "wrong-guess", ip(20)).await,
        "a 4th account from the same address",
    );
    assert_limited(
        &base_from(&world, "padmin", MEMBERS[3].1, ip(20)).await,
        "a right password never used from the guessing address",
    );
    // The colleague is not locked out by the guesser.
    world.auth.authenticator.forget(dev);
    assert_eq!(
        base_from(&world, dev, dev_password, ip(20)).await.status,
        200
    );
    // The accounts themselves are not locked: one failure each.
    for (user, password, _) in MEMBERS {
        assert_eq!(
            base_from(&world, user, password, ip(21)).await.status,
            200,
            "{user} from another address"
        );
    }
}

/// The limit is checked and counted in one step: 42 different guesses at
/// once get exactly the 10 evaluations the limit allows.
#[tokio::test]
async fn concurrent_guesses_cannot_race_past_the_limit() {
    let world = World::with(|c| {
        c.auth.login_max_failures = 10;
        c.auth.password_check_queue = 64;
    })
    .await;
    world.create_user("victim", "victim-password").await;
    let checks_before = world.auth.authenticator.password_checks_completed();
    let guesses = (0..42).map(|i| {
        let world = &world;
        async move {
            base_from(world, "victim", &format!("guess-{i}"), ip(30))
                .await
                .status
        }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let count = |status: u16| statuses.iter().filter(|s| **s == status).count();
    assert_eq!((count(401), count(429)), (10, 32), "{statuses:?}");
    assert_eq!(
        world.auth.authenticator.password_checks_completed() - checks_before,
        10
    );
}

/// Identical logins at once are checked once; the rest share the answer.
#[tokio::test]
async fn identical_concurrent_logins_are_checked_once() {
    let world = World::with(|c| c.auth.credential_cache_seconds = 0).await;
    world.create_user("builder", "builder-password").await;
    let checks_before = world.auth.authenticator.password_checks_completed();
    let logins = (0..20).map(|_| {
        let world = &world;
        async move {
            base_from(world, "builder", "builder-password", ip(40))
                .await
                .status
        }
    });
    let statuses = futures_util::future::join_all(logins).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        world.auth.authenticator.password_checks_completed() - checks_before,
        1
    );
}

/// Password checks run a bounded number at a time with a bounded queue;
/// logins beyond it are refused with 429 and `Retry-After` instead of
/// growing the server.
#[tokio::test]
async fn logins_beyond_the_password_check_queue_get_429() {
    let world = World::with(|c| {
        c.auth.password_checks = 1;
        c.auth.password_check_queue = 0;
        c.auth.credential_cache_seconds = 0;
    })
    .await;
    let logins = MEMBERS.iter().map(|(user, password, _)| {
        let world = &world;
        async move { base_from(world, user, password, ip(50)).await }
    });
    let answers = futures_util::future::join_all(logins).await;
    let refused: Vec<&Resp> = answers.iter().filter(|r| r.status == 429).collect();
    let served = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!(served + refused.len(), MEMBERS.len(), "only 200 and 429");
    assert!(served >= 1, "the check that got the slot is answered");
    assert!(!refused.is_empty(), "four at once, room for one");
    for r in refused {
        assert_limited(r, "a login beyond the queue");
        assert_eq!(r.json()["errors"][0]["code"], "TOOMANYREQUESTS");
    }
}

/// Anonymous token grants (anyone may ask for any number) are counted,
/// not written as a row each.
#[tokio::test]
async fn anonymous_token_grants_are_audited_as_one_aggregate() {
    let world = World::new().await;
    for _ in 0..50 {
        let r = send(
            &world.app,
            &Req::get("/token?service=berth&scope=repository:pubp/app:pull"),
            None,
            ip(70),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = world
        .admin(Req::get(
            "/api/v1/audit?action=token&actor=anonymous&limit=1000",
        ))
        .await;
    let rows = r.json();
    let rows = rows.as_array().expect("a list of events");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["detail"], "50 anonymous token grants (aggregated)");
}

/// A wrong password costs one password check whether or not the name
/// exists, so timing tells no user or robot names apart.
#[tokio::test]
async fn unknown_and_disabled_names_cost_a_password_check_too() {
    let world = World::new().await;
    world
        .admin(Req::new(Method::PATCH, "/api/v1/users/bystander").json(json!({"disabled": true})))
        .await;
    for (user, what) in [
        ("dev", "an existing user"),
        ("no-such-user", "an unknown user"),
        ("robot$privp+nobody", "an unknown robot"),
        ("bystander", "a disabled user"),
    ] {
        let before = world.auth.authenticator.password_checks_completed();
        let r = base_from(&world, user, "wrong-guess", ip(60)).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert_eq!(
            world.auth.authenticator.password_checks_completed() - before,
            1,
            "{what} costs one check"
        );
    }
}

// ---------------------------------------------------------------------------
// Secrets never logged
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[tokio::test]
async fn secrets_never_reach_logs_audit_or_disk() {
    let captured = Capture(Arc::new(Mutex::new(Vec::new())));
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");

    const CANARY: &str = "Canary-Pa55word-7f3a9e";
    const CANARY2: &str = "Second-Canary-c0ffee42";
    let world = World::new().await;
    world.create_user("canary", CANARY).await;
    let auth = basic("canary", CANARY);
    // Successful logins: Basic on /v2, GET /token, POST /token.
    let r = world
        .send(&Req::get("/v2/canary-check/tags/list"), Some(&auth))
        .await;
    // A known caller asking for a repository that does not exist.
    assert!(matches!(r.status, 403 | 404), "{}", r.text());
    let r = world
        .token(Some(&auth), &["repository:pubp/app:pull".into()])
        .await;
    assert_eq!(r.status, 200);
    let form = serde_urlencoded::to_string([
        ("grant_type", "password"),
        ("username", "canary"),
        ("password", CANARY),
        ("service", "berth"),
    ])
    .unwrap();
    let r = world
        .send(
            &Req::new(Method::POST, "/token")
                .bytes("application/x-www-form-urlencoded", form.into_bytes()),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Failed logins with the secret: someone else's account, an unknown one.
    for user in ["guest", "nobody-at-all"] {
        let r = world
            .send(&Req::get("/v2/"), Some(&basic(user, CANARY)))
            .await;
        assert_eq!(r.status, 401);
        assert!(!r.text().contains(CANARY), "echoed in the answer");
    }
    // Password changes, by the admin and by the user.
    world
        .admin(Req::new(Method::PATCH, "/api/v1/users/canary").json(json!({"password": CANARY2})))
        .await;
    let r = world
        .send(
            &Req::new(Method::PATCH, "/api/v1/users/canary").json(json!({"password": CANARY})),
            Some(&basic("canary", CANARY2)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // A too-short password is refused without being echoed.
    let r = world
        .admin_attempt(
            Req::new(Method::POST, "/api/v1/users")
                .json(json!({"name": "short", "password": "Cnry7x"})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(!r.text().contains("Cnry7x"), "echoed: {}", r.text());

    let audit = world
        .admin(Req::get("/api/v1/audit?limit=1000"))
        .await
        .text_full();
    assert!(
        audit.contains("canary"),
        "the audit log records the logins: {audit}"
    );

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("endpoint=tags.list") && logs.contains("served"),
        "the capture works: it holds this test's requests (labelled by endpoint, not path)"
    );
    let encoded = [
        STANDARD.encode(format!("canary:{CANARY}")),
        STANDARD.encode(format!("guest:{CANARY}")),
    ];
    for secret in [CANARY, CANARY2, &encoded[0], &encoded[1]] {
        assert!(!logs.contains(secret), "{secret} is in the logs");
        assert!(!audit.contains(secret), "{secret} is in the audit log");
        let on_disk = files_containing(&world.config.data_dir, secret.as_bytes());
        assert!(on_disk.is_empty(), "{secret} is stored in {on_disk:?}");
    }
    let _ = std::io::stderr().flush();
}

impl World {
    /// A request as the system admin whose outcome the caller checks.
    async fn admin_attempt(&self, req: Req) -> Resp {
        self.send(&req, Some(&self.admin)).await
    }
}

impl Resp {
    fn text_full(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

// ---------------------------------------------------------------------------
// The Basic-auth verification cache
// ---------------------------------------------------------------------------

async fn timed_base(app: &Router, auth: &str) -> Duration {
    let start = Instant::now();
    let r = send(app, &Req::get("/v2/"), Some(auth), None).await;
    let took = start.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    took
}

#[tokio::test]
async fn repeated_basic_credentials_are_verified_once() {
    let (app, _auth, _config, _root) = open(|c| c.auth.credential_cache_seconds = 60).await;
    let admin = basic("admin", ADMIN_PASSWORD);
    for (name, password) in [("one", "password-one"), ("two", "password-two")] {
        let r = send(
            &app,
            &Req::new(Method::POST, "/api/v1/users")
                .json(json!({"name": name, "password": password})),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let one = basic("one", "password-one");
    let two = basic("two", "password-two");
    // Two first verifications (argon2 each).
    let uncached = timed_base(&app, &one).await + timed_base(&app, &two).await;
    let mut cached = Duration::ZERO;
    for _ in 0..20 {
        cached += timed_base(&app, &one).await;
    }
    eprintln!("2 uncached: {uncached:?}; 20 cached: {cached:?}");
    assert!(
        cached < uncached,
        "20 cached requests took {cached:?}, 2 first verifications {uncached:?}"
    );
}

#[tokio::test]
async fn cached_credentials_stop_working_when_the_account_changes() {
    let world = World::new().await;
    let dev = basic("dev", MEMBERS[1].1);
    let guest = basic("guest", MEMBERS[0].1);
    let (robot, secret) = world.robots["privp"].clone();
    let robot_auth = basic(&robot, &secret);
    for auth in [&dev, &guest, &robot_auth] {
        assert_eq!(world.send(&Req::get("/v2/"), Some(auth)).await.status, 200);
    }
    world
        .admin(
            Req::new(Method::PATCH, "/api/v1/users/dev")
                .json(json!({"password": "a-new-dev-password"})),
        )
        .await;
    assert_eq!(
        world.send(&Req::get("/v2/"), Some(&dev)).await.status,
        401,
        "old password after a change"
    );
    world
        .admin(Req::new(Method::PATCH, "/api/v1/users/guest").json(json!({"disabled": true})))
        .await;
    assert_eq!(
        world.send(&Req::get("/v2/"), Some(&guest)).await.status,
        401,
        "disabled account"
    );
    world
        .admin(Req::new(
            Method::DELETE,
            format!("/api/v1/projects/privp/robots/{robot}"),
        ))
        .await;
    assert_eq!(
        world
            .send(&Req::get("/v2/"), Some(&robot_auth))
            .await
            .status,
        401,
        "deleted robot"
    );
}

// ---------------------------------------------------------------------------
// Rights stop at the project boundary
// ---------------------------------------------------------------------------

/// A project admin of `privp` and `pubp` manages neither `other` (private,
/// not a member: it looks absent) nor `pubx` (public, not a member); and
/// nobody but the system admin creates a project by pushing into it.
#[tokio::test]
async fn project_rights_stop_at_the_project_boundary() {
    let world = World::new().await;
    world.create_project("pubx", true).await;
    let padmin = basic("padmin", MEMBERS[3].1);
    let mut failures = Vec::new();
    for (project, want) in [("other", 404), ("pubx", 403)] {
        let attempts = [
            Req::new(Method::PATCH, format!("/api/v1/projects/{project}"))
                .json(json!({"public": project == "pubx"})),
            Req::new(
                Method::PUT,
                format!("/api/v1/projects/{project}/members/padmin"),
            )
            .json(json!({"role": "admin"})),
            Req::get(format!("/api/v1/projects/{project}/robots")),
            Req::new(Method::POST, format!("/api/v1/projects/{project}/robots"))
                .json(json!({"name": "mine", "actions": ["pull", "push", "delete"]})),
            Req::new(Method::DELETE, format!("/api/v1/projects/{project}")),
        ];
        for req in attempts {
            let r = world.send(&req, Some(&padmin)).await;
            if r.status != want {
                failures.push(format!(
                    "{} {}: expected {want}, got {} {}",
                    req.method,
                    req.uri,
                    r.status,
                    r.text()
                ));
            }
        }
    }
    let (robot, secret) = world.robots["privp"].clone();
    let push_new = Req::new(Method::POST, "/v2/brandnew/app/blobs/uploads/");
    for (who, auth, want) in [
        ("anonymous", None, 401),
        ("guest", Some(basic("guest", MEMBERS[0].1)), 403),
        ("developer", Some(basic("dev", MEMBERS[1].1)), 403),
        ("project admin", Some(padmin.clone()), 403),
        ("robot", Some(basic(&robot, &secret)), 403),
        ("system admin", Some(world.admin.clone()), 202),
    ] {
        let r = world.send(&push_new, auth.as_deref()).await;
        if r.status != want {
            failures.push(format!(
                "{who} pushing into a new project: expected {want}, got {} {}",
                r.status,
                r.text()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Accounts from an htpasswd file can create projects by pushing (when users
/// may) and can be made members, like local accounts.
#[tokio::test]
async fn htpasswd_accounts_push_into_new_projects_and_become_members() {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use base64::Engine;
    use tower::ServiceExt;

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("htpasswd");
    let hash = bcrypt::hash("bench-password", 4).unwrap();
    std::fs::write(&file, format!("bench:{hash}\n")).unwrap();
    let mut config = berth::config::Config {
        data_dir: tmp.path().join("data"),
        ..Default::default()
    };
    config.auth.admin_password = Some("admin-password".into());
    config.auth.htpasswd_file = Some(file);
    config.auth.project_creation = berth::auth::ProjectCreation::Users;
    let app = berth::server::build_app(&config).await.unwrap();
    let basic = |user: &str, pw: &str| {
        let raw = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        format!("Basic {raw}")
    };
    let call = |method: &str, uri: &str, auth: String, body: &'static str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, auth)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let digest = format!("sha256:{}", "0".repeat(64));
    let head = app
        .clone()
        .oneshot(call(
            "HEAD",
            &format!("/v2/newproj/app/blobs/{digest}"),
            basic("bench", "bench-password"),
            "",
        ))
        .await
        .unwrap();
    assert_eq!(
        head.status(),
        StatusCode::NOT_FOUND,
        "docker checks blobs before pushing"
    );
    let start = app
        .clone()
        .oneshot(call(
            "POST",
            "/v2/newproj/app/blobs/uploads/",
            basic("bench", "bench-password"),
            "",
        ))
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    let wrong = app
        .clone()
        .oneshot(call("GET", "/v2/", basic("bench", "wrong-password"), ""))
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let admin = basic("admin", "admin-password");
    let created = app
        .clone()
        .oneshot(call(
            "POST",
            "/api/v1/projects",
            admin.clone(),
            r#"{"name":"other"}"#,
        ))
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let member = app
        .clone()
        .oneshot(call(
            "PUT",
            "/api/v1/projects/other/members/bench",
            admin,
            r#"{"role":"developer"}"#,
        ))
        .await
        .unwrap();
    assert_eq!(member.status(), StatusCode::NO_CONTENT);
}

// ---------------------------------------------------------------------------
// Project deletion
// ---------------------------------------------------------------------------

/// Deleting a project that holds repositories is refused (409) unless
/// forced; forced, its repositories go with it, and a user who creates the
/// project again by pushing (`project_creation = "users"`) finds nothing of
/// the old one, private images included.
#[tokio::test]
async fn a_deleted_project_leaves_nothing_to_the_next_owner_of_its_name() {
    let world =
        World::with(|c| c.auth.project_creation = berth::auth::ProjectCreation::Users).await;
    let padmin = basic("padmin", MEMBERS[3].1);
    let delete = Req::new(Method::DELETE, "/api/v1/projects/privp");
    let r = world.send(&delete, Some(&padmin)).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.code().as_deref(), Some("CONFLICT"));
    let manifest = Req::get("/v2/privp/app/manifests/v1").header("accept", OCI_MANIFEST);
    assert_eq!(
        world.send(&manifest, Some(&padmin)).await.status,
        200,
        "refused: still there"
    );

    let forced = Req::new(Method::DELETE, "/api/v1/projects/privp?force=true");
    let r = world.send(&forced, Some(&padmin)).await;
    assert_eq!(r.status, 204, "{}", r.text());

    let stranger = basic(BYSTANDER, "bystander-password");
    let r = world
        .send(
            &Req::new(Method::POST, "/v2/privp/app/blobs/uploads/"),
            Some(&stranger),
        )
        .await;
    assert_eq!(
        r.status,
        202,
        "pushing re-creates the project: {}",
        r.text()
    );
    let r = world.send(&manifest, Some(&stranger)).await;
    assert_eq!(r.status, 404, "old manifest: {}", r.text());
    // The upload just started made the repository again, empty.
    let r = world
        .send(&Req::get("/v2/privp/app/tags/list"), Some(&stranger))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["tags"], json!([]), "old tags");
    let image = &world.images["privp"];
    let blob = Req::get(format!("/v2/privp/app/blobs/{}", sha256(&image.layer)));
    assert_eq!(
        world.send(&blob, Some(&stranger)).await.status,
        404,
        "old layer"
    );
    let r = world
        .send(&Req::get("/v2/_catalog"), Some(&world.admin))
        .await;
    assert!(!r.text().contains("privp/"), "catalog: {}", r.text());
}

/// Repositories whose project row is missing (left by an older berth that
/// kept them when their project was deleted) are reachable by system admins
/// only, even where any user may create a project by pushing.
#[tokio::test]
async fn repositories_without_a_project_are_for_system_admins_only() {
    let world =
        World::with(|c| c.auth.project_creation = berth::auth::ProjectCreation::Users).await;
    let image = Image::for_project("leftover");
    for data in [&image.config, &image.layer] {
        world.push_blob("hidden/app", data).await;
    }
    world
        .push_manifest("hidden/app", "v1", &image.manifest(None))
        .await;
    // What an older berth did on project deletion: drop the row only.
    let deleted =
        scale_out::execute(&world.config, "DELETE FROM projects WHERE name = 'hidden'").await;
    assert_eq!(deleted, 1);
    tokio::time::sleep(Duration::from_millis(2100)).await; // project facts TTL
    let manifest = Req::get("/v2/hidden/app/manifests/v1").header("accept", OCI_MANIFEST);
    for (who, auth, want) in [
        ("developer", basic("dev", MEMBERS[1].1), 403),
        ("bystander", basic(BYSTANDER, "bystander-password"), 403),
        ("system admin", world.admin.clone(), 200),
    ] {
        let r = world.send(&manifest, Some(&auth)).await;
        assert_eq!(r.status, want, "{who}: {}", r.text());
    }
    let push = Req::new(Method::POST, "/v2/hidden/app/blobs/uploads/");
    let r = world
        .send(&push, Some(&basic(BYSTANDER, "bystander-password")))
        .await;
    assert_eq!(r.status, 403, "pushing must not adopt them: {}", r.text());
}

// ---------------------------------------------------------------------------
// Refresh tokens bound to the account
// ---------------------------------------------------------------------------

/// `docker login` asks `GET /token` with `offline_token=true` and would keep
/// a refresh token as its identity token, which podman then refuses in a
/// shared auth file. The GET flow hands out none: docker keeps the password,
/// and its login lasts as long as the password does (as with Distribution
/// and Harbor). Refresh tokens come from the OAuth2 `POST /token` only.
#[tokio::test]
async fn docker_style_get_token_hands_out_no_refresh_token() {
    let world = World::new().await;
    let dev = basic("dev", MEMBERS[1].1);
    let r = world
        .send(
            &Req::get(
                "/token?account=dev&client_id=docker&offline_token=true&service=berth\
                 &scope=repository:privp/app:pull",
            ),
            Some(&dev),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert!(body["token"].is_string(), "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
}

/// `POST /token` (OAuth2 password grant, `access_type=offline`) as `user`:
/// the refresh token.
async fn refresh_token_of(world: &World, user: &str, secret: &str) -> String {
    let form = serde_urlencoded::to_string([
        ("grant_type", "password"),
        ("username", user),
        ("password", secret),
        ("access_type", "offline"),
        ("client_id", "berth-tests"),
        ("service", "berth"),
        ("scope", "repository:privp/app:pull"),
    ])
    .unwrap();
    let mut req = Req::new(Method::POST, "/token")
        .bytes("application/x-www-form-urlencoded", form.into_bytes());
    req.no_auth_header = true;
    let r = world.send(&req, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_string()
}

/// `POST /token` with the refresh_token grant, asking for push on `repo`.
async fn redeem(world: &World, refresh: &str, repo: &str) -> Resp {
    let scope = format!("repository:{repo}:pull,push");
    let form = serde_urlencoded::to_string([
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh),
        ("service", "berth"),
        ("scope", scope.as_str()),
    ])
    .unwrap();
    world
        .send(
            &Req::new(Method::POST, "/token")
                .bytes("application/x-www-form-urlencoded", form.into_bytes()),
            None,
        )
        .await
}

fn assert_revoked(r: &Resp, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    assert_eq!(r.code().as_deref(), Some("UNAUTHORIZED"), "{what}");
}

/// A refresh token ends with a password reset, and a deleted account's
/// token does not pass to a new account of the same name (an admin here).
#[tokio::test]
async fn refresh_tokens_end_when_the_account_changes_or_goes() {
    let world = World::new().await;
    let refresh = refresh_token_of(&world, "dev", MEMBERS[1].1).await;
    assert_eq!(
        redeem(&world, &refresh, "privp/app").await.status,
        200,
        "control"
    );
    world
        .admin(
            Req::new(Method::PATCH, "/api/v1/users/dev")
                .json(json!({"password": "new-dev-password"})),
        )
        .await;
    assert_revoked(
        &redeem(&world, &refresh, "privp/app").await,
        "after a password reset",
    );

    world.create_user("temp", "temp-password").await;
    let refresh = refresh_token_of(&world, "temp", "temp-password").await;
    world
        .admin(Req::new(Method::DELETE, "/api/v1/users/temp"))
        .await;
    assert_revoked(
        &redeem(&world, &refresh, "privp/app").await,
        "after deletion",
    );
    world
        .admin(
            Req::new(Method::POST, "/api/v1/users")
                .json(json!({"name": "temp", "password": "other-password", "admin": true})),
        )
        .await;
    assert_revoked(
        &redeem(&world, &refresh, "privp/app").await,
        "for a new account of the same name",
    );
}

/// A robot's refresh token ends when the robot is disabled or expires.
#[tokio::test]
async fn robot_refresh_tokens_end_when_the_robot_is_disabled_or_expires() {
    let world = World::new().await;
    let (robot, secret) = world.robots["privp"].clone();
    let refresh = refresh_token_of(&world, &robot, &secret).await;
    let r = redeem(&world, &refresh, "privp/app").await;
    assert_eq!(r.status, 200, "control: {}", r.text());
    assert_eq!(
        granted_on(r.json()["access_token"].as_str().unwrap(), "privp/app"),
        ["pull", "push"]
    );
    let db = berth::server::open_metadata(&world.config).await.unwrap();
    assert!(db.set_robot_disabled(&robot, true).await.unwrap());
    assert_revoked(
        &redeem(&world, &refresh, "privp/app").await,
        "disabled robot",
    );

    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let expires_at = now_ms + 3000;
    let r = world
        .admin(
            Req::new(Method::POST, "/api/v1/projects/privp/robots").json(
                json!({"name": "brief", "actions": ["pull", "push"], "expires_at": expires_at}),
            ),
        )
        .await;
    let (name, secret) = (
        r.json()["name"].as_str().unwrap().to_string(),
        r.json()["secret"].as_str().unwrap().to_string(),
    );
    let refresh = refresh_token_of(&world, &name, &secret).await;
    assert_eq!(
        redeem(&world, &refresh, "privp/app").await.status,
        200,
        "control"
    );
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(now_ms < expires_at, "the control ran after the expiry");
    tokio::time::sleep(Duration::from_millis((expires_at - now_ms) as u64 + 100)).await;
    assert_revoked(
        &redeem(&world, &refresh, "privp/app").await,
        "expired robot",
    );
}

/// Refresh tokens have no time limit by default: `docker login` keeps one as
/// its identity token, and a limit would end the login (it lasted 7 days).
#[tokio::test]
async fn refresh_tokens_last_as_long_as_the_account_by_default() {
    let world = World::new().await;
    let refresh = refresh_token_of(&world, "dev", MEMBERS[1].1).await;
    let exp = jwt_part(&refresh, 1)["exp"].as_u64().expect("exp");
    let years = (exp - unix_now()) / (365 * 24 * 3600);
    assert!(years >= 99, "refresh token expires in {years} years");
}

// ---------------------------------------------------------------------------
// Listings
// ---------------------------------------------------------------------------

/// Every name a caller learns by walking `/v2/_catalog?n=1` page by page:
/// the names listed and the `last=` of each `Link`.
async fn walk_catalog(world: &World, auth: Option<&str>) -> (Vec<String>, Vec<String>) {
    let (mut names, mut cursors) = (Vec::new(), Vec::new());
    let mut uri = "/v2/_catalog?n=1".to_string();
    for _ in 0..20 {
        let r = world.send(&Req::get(uri.clone()), auth).await;
        assert_eq!(r.status, 200, "{uri}: {}", r.text());
        for name in r.json()["repositories"].as_array().unwrap() {
            names.push(name.as_str().unwrap().to_string());
        }
        let Some(link) = r.header("link") else {
            return (names, cursors);
        };
        let next = link
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_string();
        let last = next.split("last=").nth(1).unwrap_or("").to_string();
        cursors.push(last);
        uri = next;
    }
    panic!("the catalog did not end within 20 pages");
}

/// The catalog pages over what the caller may see: anonymous callers and
/// strangers learn no private repository name, neither from a page nor
/// from its `Link`; members see their project's; admins see all.
#[tokio::test]
async fn catalog_pages_and_links_name_only_visible_repositories() {
    let world = World::new().await;
    let stranger = basic(BYSTANDER, "bystander-password");
    let guest = basic("guest", MEMBERS[0].1);
    let (robot, secret) = world.robots["other"].clone();
    let robot = basic(&robot, &secret);
    let cases = [
        ("anonymous", None, vec!["pubp/app"]),
        ("stranger", Some(stranger.as_str()), vec!["pubp/app"]),
        (
            "robot of another project",
            Some(robot.as_str()),
            vec!["pubp/app"],
        ),
        (
            "guest of privp",
            Some(guest.as_str()),
            vec!["privp/app", "pubp/app"],
        ),
        (
            "system admin",
            Some(world.admin.as_str()),
            vec!["privp/app", "pubp/app"],
        ),
    ];
    for (who, auth, want) in cases {
        let (names, cursors) = walk_catalog(&world, auth).await;
        assert_eq!(names, want, "{who}: names");
        for cursor in &cursors {
            assert!(
                names.contains(cursor),
                "{who}: Link names {cursor:?}, not listed"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Changes made by another process
// ---------------------------------------------------------------------------

/// What `berth user/project/robot …` does: its own `Auth` on the same
/// data directory, acting as a system admin, while the server runs.
async fn cli(world: &World) -> berth::auth::Auth {
    let data = &world.config.data_dir;
    let metadata = berth::server::open_metadata(&world.config).await.unwrap();
    berth::auth::Auth::open(metadata, &world.config.auth, data)
        .await
        .unwrap()
}

/// Disabling a user, removing a member and revoking a robot from another
/// process apply to the running server at once, although it remembers
/// verified credentials for an hour here.
#[tokio::test]
async fn changes_made_with_the_cli_apply_at_once() {
    let world = World::new().await;
    let cli = cli(&world).await;
    let admin = berth::auth::Actor {
        principal: berth::auth::Principal::User {
            name: "admin".into(),
            admin: true,
        },
        source: None,
    };
    let manifest = Req::get("/v2/privp/app/manifests/v1").header("accept", OCI_MANIFEST);
    let dev = basic("dev", MEMBERS[1].1);
    let guest = basic("guest", MEMBERS[0].1);
    let (robot, secret) = world.robots["privp"].clone();
    let robot_auth = basic(&robot, &secret);
    for auth in [&dev, &guest, &robot_auth] {
        assert_eq!(
            world.send(&manifest, Some(auth)).await.status,
            200,
            "control"
        );
    }

    let disable = berth::auth::UserUpdate {
        disabled: Some(true),
        ..Default::default()
    };
    cli.accounts
        .update_user(&admin, "dev", &disable)
        .await
        .unwrap();
    let r = world.send(&manifest, Some(&dev)).await;
    assert_eq!(r.status, 401, "disabled user: {}", r.text());

    cli.accounts
        .remove_member(&admin, "privp", "guest")
        .await
        .unwrap();
    let r = world.send(&manifest, Some(&guest)).await;
    assert_eq!(r.status, 403, "removed member: {}", r.text());

    cli.accounts
        .delete_robot(&admin, "privp", &robot)
        .await
        .unwrap();
    let r = world.send(&manifest, Some(&robot_auth)).await;
    assert_eq!(r.status, 401, "revoked robot: {}", r.text());
}

/// The token realm is built from `Host` only when it is a host: a forged
/// one cannot add parameters to `WWW-Authenticate`.
#[tokio::test]
async fn a_forged_host_header_stays_out_of_the_challenge() {
    let world = World::new().await;
    let r = world
        .send(&Req::get("/v2/").header("host", "evil\",error=\"x"), None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"http://localhost/token\",service=\"berth\"")
    );
    let r = world
        .send(
            &Req::get("/v2/").header("host", "registry.example:5000"),
            None,
        )
        .await;
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"http://registry.example:5000/token\",service=\"berth\"")
    );
}

/// The metadata database (password, robot and token hashes) with its WAL
/// and shared-memory files, the token keys and the session key are readable
/// by their owner only; a database left world-readable is narrowed on open.
#[tokio::test]
async fn files_holding_secrets_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let old = data.join("metadata.db-wal");
    std::fs::write(&old, b"").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    let world = World::with(|c| c.data_dir = data.clone()).await;
    let mut files = vec![data.join("ui-session.key")];
    if !scale_out::on() {
        // The embedded database (on PostgreSQL it is not a local file).
        for suffix in ["", "-wal", "-shm"] {
            files.push(data.join(format!("metadata.db{suffix}")));
        }
    }
    for key in std::fs::read_dir(data.join("keys")).unwrap() {
        files.push(key.unwrap().path());
    }
    for file in &files {
        let mode = std::fs::metadata(file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "{}: {:o}",
            file.display(),
            mode & 0o777
        );
    }
    drop(world);
}
