//! The web UI in-process: login, sessions and logout, CSRF refusals, what
//! guests, maintainers and strangers see and may do, the image page, the
//! server time of a repository page with 2,000 tags, and the storage
//! lifecycle pages (usage and rules, retention preview, repository
//! deletion, garbage-collection runs) with their permissions.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use berth::auth::AuthMode;
use berth::config::Config;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tower::ServiceExt;

const ADMIN_PASSWORD: &str = "admin-password-0";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// `name=value` of every cookie this answer sets (empty values included).
    fn cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").to_string())
            .collect()
    }

    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_string()
    }
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, String)],
    body: impl Into<Body>,
) -> Resp {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let res = app
        .clone()
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Resp {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn basic(user: &str, password: &str) -> (&'static str, String) {
    (
        "authorization",
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))),
    )
}

fn admin() -> (&'static str, String) {
    basic("admin", ADMIN_PASSWORD)
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

async fn open() -> (Router, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: root.path().join("data"),
        ..Default::default()
    };
    config.auth.mode = AuthMode::Token;
    config.auth.admin_password = Some(ADMIN_PASSWORD.into());
    let app = berth::server::build_app(&config).await.unwrap();
    (app, root)
}

async fn api(app: &Router, method: Method, uri: &str, body: Value) {
    let res = call(
        app,
        method,
        uri,
        &[admin(), ("content-type", "application/json".into())],
        body.to_string(),
    )
    .await;
    assert!(
        res.status.is_success(),
        "{uri}: {} {}",
        res.status,
        res.body
    );
}

async fn push_blob(app: &Router, repo: &str, data: &[u8]) -> String {
    let digest = sha256(data);
    let res = call(
        app,
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
        &[admin(), ("content-type", "application/octet-stream".into())],
        data.to_vec(),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    digest
}

/// Pushes config + one layer and tags a manifest; returns (manifest
/// digest, config size, layer size, layer digest).
async fn push_image(app: &Router, repo: &str, tag: &str) -> (String, usize, usize, String) {
    let config = json!({"architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["MODE=prod"],
                   "ExposedPorts": {"8080/tcp": {}}, "WorkingDir": "/srv", "User": "app",
                   "Labels": {"org.opencontainers.image.title": "demo"}},
        "created": "2024-05-06T07:08:09Z",
        "history": [{"created_by": "COPY app /bin/app"}]})
    .to_string();
    let layer = vec![7u8; 3000];
    let config_digest = push_blob(app, repo, config.as_bytes()).await;
    let layer_digest = push_blob(app, repo, &layer).await;
    let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}]})
    .to_string();
    let res = call(
        app,
        Method::PUT,
        &format!("/v2/{repo}/manifests/{tag}"),
        &[admin(), ("content-type", OCI_MANIFEST.into())],
        manifest.clone(),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    (
        sha256(manifest.as_bytes()),
        config.len(),
        layer.len(),
        layer_digest,
    )
}

/// A browser's cookie jar for one user.
struct Browser {
    app: Router,
    cookies: Vec<String>,
}

impl Browser {
    fn new(app: &Router) -> Browser {
        Browser {
            app: app.clone(),
            cookies: Vec::new(),
        }
    }

    fn keep(&mut self, res: &Resp) {
        for c in res.cookies() {
            let name = c.split('=').next().unwrap().to_string();
            self.cookies.retain(|k| !k.starts_with(&format!("{name}=")));
            if !c.ends_with('=') {
                self.cookies.push(c);
            }
        }
    }

    async fn get(&mut self, uri: &str) -> Resp {
        let headers = [("cookie", self.cookies.join("; "))];
        let res = call(&self.app, Method::GET, uri, &headers, Body::empty()).await;
        self.keep(&res);
        res
    }

    async fn post(&mut self, uri: &str, form: &[(&str, &str)]) -> Resp {
        let body = serde_urlencoded::to_string(form).unwrap();
        let headers = [
            ("cookie", self.cookies.join("; ")),
            ("content-type", "application/x-www-form-urlencoded".into()),
        ];
        let res = call(&self.app, Method::POST, uri, &headers, body).await;
        self.keep(&res);
        res
    }

    async fn login(&mut self, user: &str, password: &str) -> Resp {
        let form = self.get("/ui/login").await;
        let csrf = form.csrf();
        self.post(
            "/ui/login",
            &[
                ("username", user),
                ("password", password),
                ("csrf", &csrf),
                ("next", "/ui"),
            ],
        )
        .await
    }

    async fn signed_in(app: &Router, user: &str, password: &str) -> Browser {
        let mut b = Browser::new(app);
        let res = b.login(user, password).await;
        assert_eq!(
            res.status,
            StatusCode::SEE_OTHER,
            "login of {user}: {}",
            res.body
        );
        b
    }
}

/// Private project `team` with an image, and accounts with each role.
async fn team(app: &Router) -> (String, usize, usize, String) {
    api(
        app,
        Method::POST,
        "/api/v1/projects",
        json!({"name": "team"}),
    )
    .await;
    api(
        app,
        Method::POST,
        "/api/v1/projects",
        json!({"name": "other"}),
    )
    .await;
    for (user, role) in [("guest", "guest"), ("maint", "maintainer")] {
        api(
            app,
            Method::POST,
            "/api/v1/users",
            json!({"name": user, "password": format!("{user}-password")}),
        )
        .await;
        api(
            app,
            Method::PUT,
            &format!("/api/v1/projects/team/members/{user}"),
            json!({"role": role}),
        )
        .await;
    }
    api(
        app,
        Method::POST,
        "/api/v1/users",
        json!({"name": "stranger", "password": "stranger-password"}),
    )
    .await;
    push_image(app, "other/secret", "v1").await;
    push_image(app, "team/app", "v1").await;
    push_image(app, "team/app", "v2").await
}

async fn tags_list(app: &Router, repo: &str) -> Vec<String> {
    let res = call(
        app,
        Method::GET,
        &format!("/v2/{repo}/tags/list"),
        &[admin()],
        Body::empty(),
    )
    .await;
    let v: Value = serde_json::from_str(&res.body).unwrap();
    v["tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn login_sessions_logout_and_csrf() {
    let (app, _root) = open().await;
    let root = call(&app, Method::GET, "/", &[], Body::empty()).await;
    assert!(root.status.is_redirection());
    assert_eq!(root.header("location"), "/ui");

    let mut b = Browser::new(&app);
    let res = b.get("/ui").await;
    assert_eq!(
        res.status,
        StatusCode::SEE_OTHER,
        "signed out: off to the login page"
    );
    assert!(res.header("location").starts_with("/ui/login"));

    let res = b.login("admin", "wrong-password").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(res.body.contains("Wrong user name or password"));

    // A login form posted without its token (or from another site) is refused.
    let res = b
        .post(
            "/ui/login",
            &[("username", "admin"), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    let res = b.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let set = res
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("berth_session="))
        .expect("session cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP: no Secure flag");

    let home = b.get("/ui").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("Signed in as"));

    // A tampered cookie is no session.
    let mut forged = Browser::new(&app);
    forged.cookies = b
        .cookies
        .iter()
        .map(|c| c.replace("berth_session=", "berth_session=x"))
        .collect();
    assert_eq!(forged.get("/ui").await.status, StatusCode::SEE_OTHER);

    // Logout needs the CSRF token, then ends the session.
    let csrf = home.csrf();
    assert_eq!(
        b.post("/ui/logout", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        b.post("/ui/logout", &[("csrf", "forged")]).await.status,
        StatusCode::FORBIDDEN
    );
    let mut copy = Browser::new(&app);
    copy.cookies = b.cookies.clone();
    let out = b.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(b.get("/ui").await.status, StatusCode::SEE_OTHER);
    // The server ends the session too: a copy of the cookie is refused.
    assert_eq!(copy.get("/ui").await.status, StatusCode::SEE_OTHER);

    // Disabled accounts lose their sessions at once.
    api(
        &app,
        Method::POST,
        "/api/v1/users",
        json!({"name": "carol", "password": "carol-password"}),
    )
    .await;
    let mut carol = Browser::signed_in(&app, "carol", "carol-password").await;
    assert_eq!(carol.get("/ui").await.status, StatusCode::OK);
    api(
        &app,
        Method::PATCH,
        "/api/v1/users/carol",
        json!({"disabled": true}),
    )
    .await;
    assert_eq!(carol.get("/ui").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn roles_decide_what_is_listed_and_allowed() {
    let (app, _root) = open().await;
    team(&app).await;

    // A stranger sees neither the private projects nor their pages.
    let mut stranger = Browser::signed_in(&app, "stranger", "stranger-password").await;
    let home = stranger.get("/ui").await;
    assert!(
        !home.body.contains("team") && !home.body.contains("other"),
        "{}",
        home.body
    );
    assert_eq!(
        stranger.get("/ui/projects/team").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        stranger.get("/ui/r/team/app").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        stranger.get("/ui/r/team/app/-/image/v1").await.status,
        StatusCode::NOT_FOUND
    );
    let found = stranger.get("/ui/search?q=app").await;
    assert!(!found.body.contains("team/app"));

    // A guest reads, but has no delete button and is refused on the URL.
    let mut guest = Browser::signed_in(&app, "guest", "guest-password").await;
    let home = guest.get("/ui").await;
    assert!(home.body.contains("/ui/projects/team") && !home.body.contains("/ui/projects/other"));
    let project = guest.get("/ui/projects/team").await;
    assert!(project.body.contains("team/app"), "{}", project.body);
    assert!(
        !project.body.contains("Robot accounts"),
        "robots are for project admins"
    );
    let repo = guest.get("/ui/r/team/app").await;
    assert_eq!(repo.status, StatusCode::OK);
    assert!(repo.body.contains(">v1<") && repo.body.contains(">v2<"));
    assert!(
        repo.body.contains("datetime=\"2024-05-06T07:08:09Z\""),
        "each tag shows when its image was created"
    );
    assert!(
        !repo.body.contains("/-/tags/"),
        "no delete form for a guest"
    );
    let csrf = repo.csrf();
    let res = guest
        .post("/ui/r/team/app/-/tags/v1/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(tags_list(&app, "team/app").await, ["v1", "v2"]);
    assert!(guest
        .get("/ui/search?q=app")
        .await
        .body
        .contains("team/app"));

    // A maintainer deletes, with the token only.
    let mut maint = Browser::signed_in(&app, "maint", "maint-password").await;
    let repo = maint.get("/ui/r/team/app").await;
    assert!(repo.body.contains("/ui/r/team/app/-/tags/v1/delete"));
    let res = maint.post("/ui/r/team/app/-/tags/v1/delete", &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "no CSRF token");
    let res = maint
        .post("/ui/r/team/app/-/tags/v1/delete", &[("csrf", &repo.csrf())])
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(tags_list(&app, "team/app").await, ["v2"]);
    let after = maint.get(res.header("location")).await;
    assert!(after.body.contains("was deleted") && !after.body.contains("data-name=\"v1\""));

    // The deletion is in the audit log, which admins can filter.
    let mut admin = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let audit = admin.get("/ui/admin/audit?actor=maint&action=delete").await;
    assert_eq!(audit.status, StatusCode::OK);
    assert!(
        audit.body.contains("team/app") && audit.body.contains("web UI"),
        "{}",
        audit.body
    );
    assert_eq!(maint.get("/ui/admin").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn image_page_shows_layers_config_and_sizes() {
    let (app, _root) = open().await;
    let (digest, config_size, layer_size, layer_digest) = team(&app).await;
    let mut b = Browser::signed_in(&app, "maint", "maint-password").await;
    let page = b.get("/ui/r/team/app/-/image/v2").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for want in [
        digest.as_str(),
        layer_digest.as_str(),
        "/bin/app",
        "--serve",
        "MODE=prod",
        "8080/tcp",
        "/srv",
        "org.opencontainers.image.title",
        "COPY app /bin/app",
        "application/vnd.oci.image.layer.v1.tar+gzip",
    ] {
        assert!(page.body.contains(want), "image page lacks {want}");
    }
    let total = config_size + layer_size;
    assert!(
        page.body.contains(&format!("data-bytes=\"{total}\"")),
        "compressed size {total}"
    );
    let by_digest = b.get(&format!("/ui/r/team/app/-/image/{digest}")).await;
    assert_eq!(by_digest.status, StatusCode::OK);
    let repo = b.get("/ui/r/team/app").await;
    assert!(repo.body.contains(&format!("data-bytes=\"{total}\"")));
    assert!(repo.body.contains("docker pull "));
    assert_eq!(
        b.get("/ui/r/team/app/-/image/nope").await.status,
        StatusCode::NOT_FOUND
    );
    let escaped = b.get("/ui/search?q=%3Cscript%3E").await;
    assert!(escaped.body.contains("&lt;script&gt;") && !escaped.body.contains("<script>alert"));
}

#[tokio::test]
async fn a_repository_with_2000_tags_renders_its_first_page_quickly() {
    let (app, _root) = open().await;
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = push_blob(&app, "big/app", config).await;
    let layer = vec![1u8; 1000];
    let layer_digest = push_blob(&app, "big/app", &layer).await;
    for i in 0..2000 {
        let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}],
            "annotations": {"build": i.to_string()}})
        .to_string();
        let res = call(
            &app,
            Method::PUT,
            &format!("/v2/big/app/manifests/t{i:04}"),
            &[admin(), ("content-type", OCI_MANIFEST.into())],
            manifest,
        )
        .await;
        assert_eq!(res.status, StatusCode::CREATED);
    }
    let mut b = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    for (uri, first) in [
        ("/ui/r/big/app", "t0000"),
        ("/ui/r/big/app?sort=pushed", "t1999"),
    ] {
        let mut best = Duration::MAX;
        let mut page = None;
        for _ in 0..5 {
            let started = Instant::now();
            let res = b.get(uri).await;
            best = best.min(started.elapsed());
            page = Some(res);
        }
        let page = page.unwrap();
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("2000 tags") && page.body.contains("Page 1 of 40"));
        assert_eq!(page.body.matches("<tr data-name=").count(), 50);
        assert!(
            page.body.contains(&format!(">{first}<")),
            "{uri} starts with {first}"
        );
        println!("{uri}: first page of 2,000 tags in {best:?}");
        assert!(best < Duration::from_millis(50), "{uri} took {best:?}");
    }
    let last = b.get("/ui/r/big/app?page=40").await;
    assert!(last.body.contains(">t1999<") && last.body.contains("Page 40 of 40"));
}

#[tokio::test]
async fn a_page_number_past_any_range_is_400() {
    let (app, _root) = open().await;
    push_image(&app, "pages/app", "1").await;
    let mut b = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    // (page - 1) * 50 would wrap around u64.
    let res = b.get("/ui/r/pages/app?page=18446744073709551615").await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.body.contains("out of range"), "{}", res.body);
    let res = b.get("/ui/r/pages/app?page=2").await;
    assert_eq!(res.status, StatusCode::OK);
}

/// Anonymous visitors may browse what anonymous clients may pull: the
/// public projects. Private ones still send them to the login page.
#[tokio::test]
async fn anonymous_visitors_browse_public_projects() {
    let (app, _root) = open().await;
    let (digest, ..) = team(&app).await;
    api(
        &app,
        Method::POST,
        "/api/v1/projects",
        json!({"name": "open", "public": true}),
    )
    .await;
    push_image(&app, "open/app", "v1").await;

    let mut anon = Browser::new(&app);
    let home = anon.get("/ui").await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    assert!(home.body.contains("/ui/projects/open"), "{}", home.body);
    assert!(!home.body.contains("/ui/projects/team"), "{}", home.body);
    assert!(
        home.body.contains("href=\"/ui/login?next=/ui\""),
        "{}",
        home.body
    );
    assert!(!home.body.contains("Signed in as"), "{}", home.body);
    for page in [
        "/ui/projects/open".to_string(),
        "/ui/r/open/app".to_string(),
        "/ui/r/open/app/-/image/v1".to_string(),
        format!("/ui/r/open/app/-/image/{digest}"),
    ] {
        let res = anon.get(&page).await;
        assert_eq!(res.status, StatusCode::OK, "{page}: {}", res.body);
        assert!(!res.body.contains("name=\"csrf\""), "{page}: no forms");
    }
    let project = anon.get("/ui/projects/open").await;
    assert!(project.body.contains("open/app"), "{}", project.body);
    assert!(!project.body.contains("Members") && !project.body.contains("Robot accounts"));
    assert!(anon.get("/ui/search?q=app").await.body.contains("open/app"));
    assert!(!anon.get("/ui/search?q=app").await.body.contains("team/app"));

    for page in [
        "/ui/projects/team",
        "/ui/r/team/app",
        "/ui/r/team/app/-/image/v1",
        "/ui/projects/absent",
    ] {
        let res = anon.get(page).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{page}: {}", res.body);
        assert_eq!(
            res.header("location"),
            format!("/ui/login?next={page}"),
            "{page}"
        );
    }
    let res = anon
        .post("/ui/projects/open/visibility", &[("csrf", "x")])
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "forms need a session");
    assert!(res.header("location").starts_with("/ui/login"));
}

/// An index's platforms show what pulling each image transfers (config and
/// layers), not the few hundred bytes of the child manifest.
#[tokio::test]
async fn index_platforms_show_image_sizes() {
    let (app, _root) = open().await;
    let (digest, config_size, layer_size, _) = team(&app).await;
    let child = call(
        &app,
        Method::GET,
        &format!("/v2/team/app/manifests/{digest}"),
        &[admin()],
        Body::empty(),
    )
    .await;
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": child.body.len(),
                       "platform": {"os": "linux", "architecture": "amd64"}}]})
    .to_string();
    let res = call(
        &app,
        Method::PUT,
        "/v2/team/app/manifests/multi",
        &[
            admin(),
            (
                "content-type",
                "application/vnd.oci.image.index.v1+json".into(),
            ),
        ],
        index,
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let mut b = Browser::signed_in(&app, "guest", "guest-password").await;
    let page = b.get("/ui/r/team/app/-/image/multi").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let children = &page.body[page.body.find("id=\"children\"").expect("platforms table")..];
    let image = config_size + layer_size;
    assert!(
        children.contains(&format!("data-bytes=\"{image}\"")),
        "image size {image} in {children}"
    );
    assert!(
        !children.contains(&format!("data-bytes=\"{}\"", child.body.len())),
        "the child manifest's own size is shown: {children}"
    );
}

async fn members_of(app: &Router, project: &str) -> Vec<(String, String)> {
    let res = call(
        app,
        Method::GET,
        &format!("/api/v1/projects/{project}/members"),
        &[admin()],
        Body::empty(),
    )
    .await;
    let v: Value = serde_json::from_str(&res.body).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user"].as_str().unwrap().to_string(),
                m["role"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A project admin adds members, changes their roles and removes them, and
/// gives robots an expiry, all from the project page.
#[tokio::test]
async fn project_page_manages_members_and_robot_expiry() {
    let (app, _root) = open().await;
    team(&app).await;
    let mut admin_ui = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let page = admin_ui.get("/ui/projects/team").await;
    assert!(page.body.contains("id=\"add-member\""), "{}", page.body);
    let csrf = page.csrf();
    let (ui_app, cookies) = (admin_ui.app.clone(), admin_ui.cookies.clone());
    let post = |path: &'static str, fields: Vec<(&'static str, String)>| {
        let mut b = Browser {
            app: ui_app.clone(),
            cookies: cookies.clone(),
        };
        async move {
            let form: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            b.post(path, &form).await
        }
    };
    let res = post(
        "/ui/projects/team/members",
        vec![
            ("csrf", csrf.clone()),
            ("user", "stranger".into()),
            ("role", "maintainer".into()),
        ],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert!(members_of(&app, "team")
        .await
        .contains(&("stranger".into(), "maintainer".into())));
    let page = admin_ui.get("/ui/projects/team").await;
    assert!(
        page.body
            .contains("<option value=\"maintainer\" selected>maintainer</option>"),
        "{}",
        page.body
    );
    post(
        "/ui/projects/team/members",
        vec![
            ("csrf", csrf.clone()),
            ("user", "stranger".into()),
            ("role", "guest".into()),
        ],
    )
    .await;
    assert!(members_of(&app, "team")
        .await
        .contains(&("stranger".into(), "guest".into())));
    let res = post(
        "/ui/projects/team/members",
        vec![
            ("csrf", csrf.clone()),
            ("user", "stranger".into()),
            ("role", "owner".into()),
        ],
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    let res = post(
        "/ui/projects/team/members",
        vec![("user", "stranger".into()), ("role", "admin".into())],
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "no CSRF token");
    let res = post(
        "/ui/projects/team/remove-member",
        vec![("csrf", csrf.clone()), ("user", "stranger".into())],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert!(!members_of(&app, "team")
        .await
        .iter()
        .any(|(u, _)| u == "stranger"));

    // A guest sees the members but cannot change them.
    let mut guest = Browser::signed_in(&app, "guest", "guest-password").await;
    let page = guest.get("/ui/projects/team").await;
    assert!(page.body.contains("id=\"members\"") && !page.body.contains("add-member"));
    let res = guest
        .post(
            "/ui/projects/team/members",
            &[("csrf", &page.csrf()), ("user", "guest"), ("role", "admin")],
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let res = post(
        "/ui/projects/team/robots",
        vec![
            ("csrf", csrf.clone()),
            ("name", "ci".into()),
            ("pull", "1".into()),
            ("expires_days", "30".into()),
        ],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let res = post(
        "/ui/projects/team/robots",
        vec![
            ("csrf", csrf.clone()),
            ("name", "bad".into()),
            ("pull", "1".into()),
            ("expires_days", "soon".into()),
        ],
    )
    .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    let robots = call(
        &app,
        Method::GET,
        "/api/v1/projects/team/robots",
        &[admin()],
        Body::empty(),
    )
    .await;
    let robots: Value = serde_json::from_str(&robots.body).unwrap();
    assert_eq!(robots.as_array().unwrap().len(), 1, "{robots}");
    let expires = robots[0]["expires_at"].as_i64().expect("an expiry");
    let thirty_days = 30 * 86_400_000;
    assert!(
        (before + thirty_days..before + thirty_days + 60_000).contains(&expires),
        "expires_at {expires}"
    );
}

/// Full digests are one token on the page: they scroll, never break mid-word.
#[tokio::test]
async fn digests_do_not_break_mid_word() {
    let (app, _root) = open().await;
    let css = call(&app, Method::GET, "/ui/assets/ui.css", &[], Body::empty()).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(!css.body.contains("break-all"), "{}", css.body);
    let rule = css
        .body
        .lines()
        .find(|l| l.starts_with(".copy code, code.digest {"))
        .unwrap_or_else(|| panic!("no rule for digests in {}", css.body));
    assert!(
        rule.contains("white-space: nowrap") && rule.contains("overflow-x: auto"),
        "{rule}"
    );
}

/// A web session ends at once when its account's password is reset, and a
/// deleted account's session does not pass to a new account of the same
/// name, even one that is a system admin.
#[tokio::test]
async fn sessions_end_with_a_password_reset_and_never_pass_to_a_new_account() {
    let (app, _root) = open().await;
    api(
        &app,
        Method::POST,
        "/api/v1/users",
        json!({"name": "dave", "password": "dave-password"}),
    )
    .await;
    let mut dave = Browser::signed_in(&app, "dave", "dave-password").await;
    assert_eq!(dave.get("/ui").await.status, StatusCode::OK, "control");
    api(
        &app,
        Method::PATCH,
        "/api/v1/users/dave",
        json!({"password": "dave-new-password"}),
    )
    .await;
    let res = dave.get("/ui").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "after a password reset");
    assert!(res.header("location").starts_with("/ui/login"));

    let mut dave = Browser::signed_in(&app, "dave", "dave-new-password").await;
    assert_eq!(dave.get("/ui").await.status, StatusCode::OK, "control");
    api(&app, Method::DELETE, "/api/v1/users/dave", json!({})).await;
    api(
        &app,
        Method::POST,
        "/api/v1/users",
        json!({"name": "dave", "password": "another-password", "admin": true}),
    )
    .await;
    let res = dave.get("/ui/admin").await;
    assert_eq!(
        res.status,
        StatusCode::SEE_OTHER,
        "old session, new account"
    );
    assert!(res.header("location").starts_with("/ui/login"));
}

/// Every UI answer forbids framing, sniffing and code from elsewhere.
#[tokio::test]
async fn pages_send_security_headers() {
    let (app, _root) = open().await;
    let mut b = Browser::new(&app);
    let mut answers = vec![
        ("login form", b.get("/ui/login").await),
        ("signed out", b.get("/ui").await),
        ("asset", b.get("/ui/assets/ui.css").await),
        ("missing page", b.get("/ui/nothing/here").await),
    ];
    let mut b = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    answers.push(("overview", b.get("/ui").await));
    answers.push(("admin page", b.get("/ui/admin").await));
    for (what, res) in &answers {
        let csp = res.header("content-security-policy");
        assert!(
            csp.contains("default-src 'none'")
                && csp.contains("script-src 'self'")
                && csp.contains("frame-ancestors 'none'"),
            "{what}: CSP {csp:?}"
        );
        assert_eq!(res.header("x-frame-options"), "DENY", "{what}");
        assert_eq!(res.header("x-content-type-options"), "nosniff", "{what}");
    }
}

/// Only a local UI path is a valid `next`: one with CR/LF (or leading off
/// the site) sends the signed-in browser to `/ui`, instead of failing with
/// the session cookie set.
#[tokio::test]
async fn login_follows_only_a_local_next() {
    let (app, _root) = open().await;
    for next in [
        "/ui\r\nSet-Cookie: injected=1",
        "/ui/r/x\nLocation: //evil.example",
        "//evil.example/ui",
        "/ui@evil.example",
        "/ui\\evil",
        "https://evil.example/ui",
    ] {
        let mut b = Browser::new(&app);
        let csrf = b.get("/ui/login").await.csrf();
        let res = b
            .post(
                "/ui/login",
                &[
                    ("username", "admin"),
                    ("password", ADMIN_PASSWORD),
                    ("csrf", &csrf),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{next:?}: {}", res.body);
        assert_eq!(res.header("location"), "/ui", "{next:?}");
    }
    let mut b = Browser::new(&app);
    let csrf = b.get("/ui/login").await.csrf();
    let form = [
        ("username", "admin"),
        ("password", ADMIN_PASSWORD),
        ("csrf", csrf.as_str()),
        ("next", "/ui/admin?tab=users"),
    ];
    let res = b.post("/ui/login", &form).await;
    assert_eq!(res.header("location"), "/ui/admin?tab=users", "control");
}

/// The overview and a project page show 100 rows a page, with a "Next"
/// link that continues after the last one, and counts from the counters
/// the writes keep.
#[tokio::test]
async fn overview_and_project_pages_come_in_pages_of_100() {
    let (app, _root) = open().await;
    for i in 0..101 {
        api(
            &app,
            Method::POST,
            "/api/v1/projects",
            json!({"name": format!("p{i:03}")}),
        )
        .await;
    }
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_digest = push_blob(&app, "p000/r000", config).await;
    let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": []})
    .to_string();
    for i in 0..101 {
        let repo = format!("p000/r{i:03}");
        if i > 0 {
            let res = call(
                &app,
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?mount={config_digest}&from=p000/r000"),
                &[admin()],
                Body::empty(),
            )
            .await;
            assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        }
        let res = call(
            &app,
            Method::PUT,
            &format!("/v2/{repo}/manifests/v1"),
            &[admin(), ("content-type", OCI_MANIFEST.into())],
            manifest.clone(),
        )
        .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    }
    let mut b = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;

    let first = b.get("/ui").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body.matches("<tr data-name=").count(), 100);
    assert!(first.body.contains(r#"<tr data-name="p000">"#));
    assert!(!first.body.contains(r#"<tr data-name="p100">"#));
    // p000: 101 repositories holding one shared config, counted once.
    let row = &first.body[first.body.find(r#"<tr data-name="p000">"#).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains(">101<"), "{row}");
    assert!(row.contains(&format!(">{} B<", config.len())), "{row}");
    assert!(
        first.body.contains(r#"href="/ui?after=p099""#),
        "a next link after p099"
    );
    let second = b.get("/ui?after=p099").await;
    assert_eq!(second.body.matches("<tr data-name=").count(), 1);
    assert!(second.body.contains(r#"<tr data-name="p100">"#));
    assert!(!second.body.contains("rel=\"next\""));

    let project = b.get("/ui/projects/p000").await;
    assert_eq!(project.status, StatusCode::OK);
    let repos = |body: &str| body.matches(r#"<tr data-name="p000/"#).count();
    assert_eq!(repos(&project.body), 100);
    assert!(project
        .body
        .contains(r#"href="/ui/projects/p000?after=p000/r099""#));
    let rest = b.get("/ui/projects/p000?after=p000%2Fr099").await;
    assert_eq!(repos(&rest.body), 1);
    assert!(rest.body.contains(r#"<tr data-name="p000/r100">"#));
}

/// `team` with a policy (a storage and a tag quota, immutable `v*`,
/// untagged manifests deleted after 7 days, keep the newest tag), and a
/// repository `team/tools` whose older tag the rules would delete.
async fn team_with_policy(app: &Router) {
    team(app).await;
    api(
        app,
        Method::PUT,
        "/api/v1/projects/team/policy",
        json!({"quota_bytes": 1_000_000_000u64, "quota_tags": 10, "untagged_days": 7,
               "immutable_tags": ["v*"], "retention": {"keep_last": 1}}),
    )
    .await;
    push_image(app, "team/tools", "old").await;
    // Retention orders tags by push time, in milliseconds.
    tokio::time::sleep(Duration::from_millis(20)).await;
    push_image(app, "team/tools", "new").await;
}

/// Whether `/v2/_catalog` lists `repo`.
async fn in_catalog(app: &Router, repo: &str) -> bool {
    let res = call(app, Method::GET, "/v2/_catalog", &[admin()], Body::empty()).await;
    let v: Value = serde_json::from_str(&res.body).unwrap();
    v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == repo)
}

/// The project page shows usage against the quotas as the registry counts
/// them and the rules in words, to whoever may see the project; the
/// retention preview lists what the rules would delete now.
#[tokio::test]
async fn project_page_shows_usage_rules_and_the_retention_preview() {
    let (app, _root) = open().await;
    team_with_policy(&app).await;
    let policy = call(
        &app,
        Method::GET,
        "/api/v1/projects/team/policy",
        &[admin()],
        Body::empty(),
    )
    .await;
    let usage: Value = serde_json::from_str(&policy.body).unwrap();
    let bytes = usage["usage"]["bytes"].as_u64().unwrap();
    assert!(bytes > 0, "{usage}");

    let mut guest = Browser::signed_in(&app, "guest", "guest-password").await;
    let page = guest.get("/ui/projects/team").await;
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    for want in [
        format!(r#"data-bytes="{bytes}""#),
        r#"data-bytes="1000000000""#.to_string(),
        "953.7 MiB".to_string(),
        "a blob shared by two repositories counts once".to_string(),
        "2 <span class=\"muted\">(no limit)</span>".to_string(),
        "4 of 10".to_string(),
        "tags matching <code>v*</code> are pushed once".to_string(),
        "deleted 7 days after push".to_string(),
        "Garbage collection deletes every tag except the most recently pushed tag of each \
         repository and immutable tags."
            .to_string(),
        r#"href="/ui/projects/team/retention""#.to_string(),
    ] {
        assert!(
            body.contains(&want),
            "the project page shows {want}: {body}"
        );
    }

    let preview = guest.get("/ui/projects/team/retention").await;
    assert_eq!(preview.status, StatusCode::OK);
    let body = &preview.body;
    assert!(body.contains(r#"<tr data-name="team/tools">"#), "{body}");
    assert!(body.contains("/ui/r/team/tools/-/image/old"), "{body}");
    assert!(!body.contains("/-/image/new") && !body.contains("team/app"));
    assert!(body.contains("would delete <strong>1</strong> tag and keep 3"));
    assert_eq!(tags_list(&app, "team/tools").await, ["new", "old"]);

    // A project without a policy: no limits, nothing immutable, no rules.
    let mut admin_ui = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let other = admin_ui.get("/ui/projects/other").await;
    assert_eq!(other.body.matches("(no limit)").count(), 3);
    assert!(other.body.contains("none: any tag may be moved or deleted"));
    assert!(other.body.contains(r#"<dd id="rule-untagged">kept</dd>"#));
    assert!(!other.body.contains("/retention"));

    // Who may not see the project sees neither its rules nor the preview.
    let mut stranger = Browser::signed_in(&app, "stranger", "stranger-password").await;
    let res = stranger.get("/ui/projects/team/retention").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    let res = Browser::new(&app).get("/ui/projects/team/retention").await;
    assert!(res.header("location").starts_with("/ui/login"));
}

/// Only the project's admins get the button and may delete; a guest, a
/// maintainer and a stranger are refused on the URL; an immutable tag
/// stops the deletion with a readable reason.
#[tokio::test]
async fn repository_deletion_is_for_project_admins() {
    let (app, _root) = open().await;
    team_with_policy(&app).await;
    let button = "action=\"/ui/r/team/tools/-/delete\"";
    for (user, refused) in [
        ("guest", StatusCode::FORBIDDEN),
        ("maint", StatusCode::FORBIDDEN),
        ("stranger", StatusCode::NOT_FOUND),
    ] {
        let mut b = Browser::signed_in(&app, user, &format!("{user}-password")).await;
        let home = b.get("/ui").await;
        let repo = b.get("/ui/r/team/tools").await;
        assert!(!repo.body.contains(button), "{user} has no delete button");
        let confirm = b.get("/ui/r/team/tools/-/delete").await;
        assert_eq!(confirm.status, refused, "{user}: {}", confirm.body);
        let res = b
            .post("/ui/r/team/tools/-/delete", &[("csrf", &home.csrf())])
            .await;
        assert_eq!(res.status, refused, "{user}: {}", res.body);
    }
    assert_eq!(tags_list(&app, "team/tools").await, ["new", "old"]);

    api(
        &app,
        Method::POST,
        "/api/v1/users",
        json!({"name": "lead", "password": "lead-password"}),
    )
    .await;
    api(
        &app,
        Method::PUT,
        "/api/v1/projects/team/members/lead",
        json!({"role": "admin"}),
    )
    .await;
    let mut lead = Browser::signed_in(&app, "lead", "lead-password").await;
    let repo = lead.get("/ui/r/team/tools").await;
    assert!(repo.body.contains(button), "{}", repo.body);
    let confirm = lead.get("/ui/r/team/tools/-/delete").await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(
        confirm.body.contains(
            "Delete repository <strong>team/tools</strong> with its 2 tags? This cannot be undone."
        ),
        "{}",
        confirm.body
    );
    let res = lead.post("/ui/r/team/tools/-/delete", &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "no CSRF token");
    assert!(in_catalog(&app, "team/tools").await);
    let res = lead
        .post("/ui/r/team/tools/-/delete", &[("csrf", &confirm.csrf())])
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(
        res.header("location"),
        "/ui/projects/team?deleted=team/tools"
    );
    let project = lead.get(res.header("location")).await;
    assert!(project.body.contains("was deleted"), "{}", project.body);
    assert!(!project.body.contains(r#"<tr data-name="team/tools">"#));
    assert!(!in_catalog(&app, "team/tools").await);
    let tags = call(
        &app,
        Method::GET,
        "/v2/team/tools/tags/list",
        &[admin()],
        Body::empty(),
    )
    .await;
    assert_eq!(tags.status, StatusCode::NOT_FOUND);

    // team/app holds v1 and v2, which `v*` makes immutable.
    let res = lead
        .post("/ui/r/team/app/-/delete", &[("csrf", &confirm.csrf())])
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(
        res.body.contains("was not deleted") && res.body.contains("is immutable"),
        "{}",
        res.body
    );
    assert!(!res.body.contains("something went wrong"));
    assert_eq!(tags_list(&app, "team/app").await, ["v1", "v2"]);

    let mut admin_ui = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let audit = admin_ui
        .get("/ui/admin/audit?action=repository.delete")
        .await;
    assert!(
        audit.body.contains("lead") && audit.body.contains("team/tools"),
        "{}",
        audit.body
    );
}

/// System administrators see the last runs and request one; a second
/// request while the first waits is a notice, not an error; others are
/// refused.
#[tokio::test]
async fn garbage_collection_runs_are_for_administrators() {
    let (app, _root) = open().await;
    team(&app).await;
    let mut guest = Browser::signed_in(&app, "guest", "guest-password").await;
    let home = guest.get("/ui").await;
    let res = guest
        .post("/ui/admin/gc", &[("csrf", &home.csrf()), ("dry_run", "1")])
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    let mut b = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let page = b.get("/ui/admin").await;
    assert!(page.body.contains("No garbage collection has run yet."));
    let res = b.post("/ui/admin/gc", &[("dry_run", "1")]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "no CSRF token");
    let res = b
        .post("/ui/admin/gc", &[("csrf", &page.csrf()), ("dry_run", "1")])
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let to = res
        .header("location")
        .split('#')
        .next()
        .unwrap()
        .to_string();
    let page = b.get(&to).await;
    assert!(page.body.contains("was requested"), "{}", page.body);
    let row = &page.body[page.body.find("<tr data-name=\"1\">").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    for want in ["requested", "dry run", "admin"] {
        assert!(row.contains(want), "{want} in {row}");
    }

    // No worker runs here: the run waits, and the next request is busy.
    let res = b.post("/ui/admin/gc", &[("csrf", &page.csrf())]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let to = res
        .header("location")
        .split('#')
        .next()
        .unwrap()
        .to_string();
    let page = b.get(&to).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("is already requested or running"));
    let runs = &page.body[page.body.find("<table id=\"gc-runs\">").unwrap()..];
    let runs = &runs[..runs.find("</table>").unwrap()];
    assert_eq!(runs.matches("<tr data-name=").count(), 1, "{runs}");
}
