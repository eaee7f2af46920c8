//! The web UI in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`) against the real binary
//! (`BERTH_BIN`, else `target/release/berth`) with authentication on.
//! It pushes an image over HTTP, browses project → repository → tag →
//! layers and checks sizes and digests against the registry API, deletes a
//! tag, checks what a guest and a stranger see, CSRF refusal and logout,
//! and saves screenshots in `target/ui-screenshots/`. A second test sets a
//! project policy, checks usage, rules and the retention preview, deletes a
//! repository through its confirmation page (and is refused one holding an
//! immutable tag), and requests a garbage-collection dry run.
//!
//! Without Chromium, chromedriver or the binary this test FAILS, saying what
//! to install: a browser test that silently passes would prove nothing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

const ADMIN_PASSWORD: &str = "browser-admin-password";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser at a time: two Chromiums on a small machine slow each other
/// past the waits of these tests.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Kills a child process when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names
        .iter()
        .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One HTTP/1.1 request on a fresh connection.
async fn http(method: &str, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Answer {
    let uri: hyper::Uri = url.parse().unwrap();
    let addr = format!("{}:{}", uri.host().unwrap(), uri.port_u16().unwrap());
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(uri.path_and_query().unwrap().as_str())
        .header("host", addr);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let res = sender
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn basic(user: &str, password: &str) -> (&'static str, String) {
    (
        "authorization",
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))),
    )
}

/// The registry under test, driven over HTTP as an admin.
struct Registry {
    base: String,
    _proc: Proc,
}

impl Registry {
    async fn start(data: &Path) -> Registry {
        let bin = std::env::var_os("BERTH_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/berth"));
        assert!(
            bin.is_file(),
            "the browser test needs the berth binary at {} (run `cargo build --release` or set BERTH_BIN)",
            bin.display()
        );
        let port = free_port();
        let log = std::fs::File::create(data.with_extension("log")).unwrap();
        let child = Command::new(&bin)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data)
            .env("BERTH_AUTH__MODE", "token")
            .env("BERTH_AUTH__ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start berth");
        let registry = Registry {
            base: format!("http://127.0.0.1:{port}"),
            _proc: Proc(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "berth did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        registry
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Answer {
        let mut all = vec![basic("admin", ADMIN_PASSWORD)];
        all.extend(headers.iter().cloned());
        http(method, &format!("{}{path}", self.base), &all, body).await
    }

    async fn api(&self, method: &str, path: &str, body: Value) {
        let res = self
            .call(
                method,
                path,
                &[("content-type", "application/json".into())],
                body.to_string().into_bytes(),
            )
            .await;
        assert!(
            (200..300).contains(&res.status),
            "{path}: {} {}",
            res.status,
            String::from_utf8_lossy(&res.body)
        );
    }

    async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let res = self
            .call(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                &[("content-type", "application/octet-stream".into())],
                data.to_vec(),
            )
            .await;
        assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
        digest
    }

    /// An image with real, incompressible layer bytes.
    async fn push_image(&self, repo: &str, tag: &str, seed: u8) {
        let config =
            json!({"architecture": "amd64", "os": "linux", "created": "2024-05-06T07:08:09Z",
            "config": {"Entrypoint": ["/bin/web"], "Cmd": ["--port", "8080"], "Env": ["PATH=/bin"],
                       "ExposedPorts": {"8080/tcp": {}}, "WorkingDir": "/srv", "User": "web",
                       "Labels": {"org.opencontainers.image.source": "https://example.org/web"}},
            "history": [{"created": "2024-05-06T07:08:09Z", "created_by": "COPY web /bin/web"},
                        {"created_by": "COPY static /srv", "comment": "assets"}]})
            .to_string();
        let mut layers = Vec::new();
        for (n, len) in [(1u8, 180_000usize), (2, 42_000)] {
            // Pseudo-random bytes: what a gzip layer looks like to a registry.
            let mut state = u64::from(seed) * 7919 + u64::from(n);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 56) as u8
                })
                .collect();
            let digest = self.push_blob(repo, &bytes).await;
            layers.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": len}));
        }
        let config_digest = self.push_blob(repo, config.as_bytes()).await;
        let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": layers, "annotations": {"org.opencontainers.image.version": tag}})
        .to_string();
        let res = self
            .call(
                "PUT",
                &format!("/v2/{repo}/manifests/{tag}"),
                &[("content-type", OCI_MANIFEST.into())],
                manifest.into_bytes(),
            )
            .await;
        assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    }

    async fn catalog(&self) -> Vec<String> {
        let v = self
            .call("GET", "/v2/_catalog", &[], Vec::new())
            .await
            .json();
        v["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    }

    async fn tags(&self, repo: &str) -> Vec<String> {
        let v = self
            .call("GET", &format!("/v2/{repo}/tags/list"), &[], Vec::new())
            .await
            .json();
        v["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    }
}

/// A minimal WebDriver client: the few commands this test uses.
struct Browser {
    base: String,
    session: String,
    _driver: Proc,
    shots: PathBuf,
}

impl Browser {
    async fn start(shots: PathBuf) -> Browser {
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]).expect(
            "the browser test needs Chromium: `apt-get install chromium chromium-driver` (scripts/install-deps should install them)",
        );
        let driver = find_program(&["chromedriver"]).expect(
            "the browser test needs chromedriver: `apt-get install chromium-driver` (scripts/install-deps should install it)",
        );
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let proc = Proc(child);
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"]}}}});
        let res = http(
            "POST",
            &format!("{base}/session"),
            &[("content-type", "application/json".into())],
            caps.to_string().into_bytes(),
        )
        .await;
        let v = res.json();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            base,
            session,
            _driver: proc,
            shots,
        }
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let body = if method == "GET" {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        let res = http(
            method,
            &url,
            &[("content-type", "application/json".into())],
            body,
        )
        .await;
        let v = res.json();
        assert!(res.status < 300, "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url})).await;
    }

    async fn url(&self) -> String {
        self.cmd("GET", "/url", json!({}))
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn source(&self) -> String {
        self.cmd("GET", "/source", json!({}))
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .cmd(
                "POST",
                "/elements",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e[ELEMENT]
                    .as_str()
                    .unwrap_or_else(|| panic!("not an element: {e}"))
                    .to_string()
            })
            .collect()
    }

    async fn find(&self, css: &str) -> String {
        let all = self.find_all(css).await;
        assert!(
            !all.is_empty(),
            "no element matches {css} on {}",
            self.url().await
        );
        all[0].clone()
    }

    /// Waits (at most 5 s) until the page's URL no longer contains `part`.
    async fn settle_away_from(&self, part: &str) {
        self.settle(|url| !url.contains(part)).await;
    }

    /// Waits (at most 5 s) until the page's URL satisfies `done`; the
    /// caller's assertion then reports what the page shows.
    async fn settle(&self, done: impl Fn(&str) -> bool) {
        for _ in 0..50 {
            if done(&self.url().await) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.cmd("POST", &format!("/element/{e}/click"), json!({}))
            .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            json!({"text": text}),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        let v = self
            .cmd("GET", &format!("/element/{e}/text"), json!({}))
            .await;
        v.as_str().unwrap_or("").to_string()
    }

    async fn attr(&self, element: &str, name: &str) -> String {
        let v = self
            .cmd(
                "GET",
                &format!("/element/{element}/attribute/{name}"),
                json!({}),
            )
            .await;
        v.as_str().unwrap_or("").to_string()
    }

    async fn script(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/async",
            json!({"script": script, "args": []}),
        )
        .await
    }

    async fn screenshot(&self, name: &str) {
        let v = self.cmd("GET", "/screenshot", json!({})).await;
        let png = STANDARD.decode(v.as_str().unwrap()).unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn login(&self, base: &str, user: &str, password: &str) {
        self.goto(&format!("{base}/ui")).await;
        assert!(
            self.url().await.contains("/ui/login"),
            "signed out: the login page"
        );
        self.type_into("#username", user).await;
        self.type_into("#password", password).await;
        self.click("section.login button[type=submit]").await;
        // A click returns before the navigation it starts has finished.
        self.settle_away_from("/ui/login").await;
        assert!(
            !self.url().await.contains("/ui/login"),
            "{user} signed in: {}",
            self.source().await
        );
    }

    async fn logout(&self) {
        self.click("form[action='/ui/logout'] button").await;
        // Logout redirects to the login page; let that finish first.
        self.settle(|url| url.contains("/ui/login")).await;
    }

    /// POSTs a form from the page's own origin (as a forged page could not),
    /// with the given fields; the answer's status.
    async fn post_status(&self, path: &str, fields: &str) -> u64 {
        let script = format!(
            "const done = arguments[arguments.length - 1];
             fetch({path:?}, {{method: 'POST', credentials: 'same-origin',
               headers: {{'content-type': 'application/x-www-form-urlencoded'}}, body: {fields}}})
             .then(r => done(r.status), e => done(String(e)));"
        );
        self.script(&script)
            .await
            .as_u64()
            .unwrap_or_else(|| panic!("fetch failed"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        // Closing the session ends Chromium; best effort on the way out.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(5),
                    http("DELETE", &url, &[], Vec::new()),
                )
                .await
            })
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_delete_and_permissions_in_chromium() {
    let _one = ONE_BROWSER.lock().await;
    let root = tempfile::tempdir().unwrap();
    let registry = Registry::start(&root.path().join("data")).await;
    let base = registry.base.clone();
    registry
        .api("POST", "/api/v1/projects", json!({"name": "team"}))
        .await;
    registry
        .api("POST", "/api/v1/projects", json!({"name": "secret"}))
        .await;
    for user in ["guest", "stranger"] {
        registry
            .api(
                "POST",
                "/api/v1/users",
                json!({"name": user, "password": format!("{user}-password")}),
            )
            .await;
    }
    registry
        .api(
            "PUT",
            "/api/v1/projects/team/members/guest",
            json!({"role": "guest"}),
        )
        .await;
    registry.push_image("team/web", "1.0", 1).await;
    registry.push_image("team/web", "1.1", 2).await;
    registry.push_image("team/api", "latest", 3).await;
    registry.push_image("secret/vault", "v1", 4).await;

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    let browser = Browser::start(shots.clone()).await;

    // Log in as the administrator; the login page first.
    browser.goto(&format!("{base}/ui")).await;
    browser.screenshot("login").await;
    browser.login(&base, "admin", ADMIN_PASSWORD).await;
    browser.screenshot("overview").await;
    assert!(
        browser.source().await.contains("secret"),
        "admins see every project"
    );

    // Project → repository → tag → layers.
    browser.click("a[href='/ui/projects/team']").await;
    browser.screenshot("project").await;
    browser.click("a[href='/ui/r/team/web']").await;
    browser.screenshot("repository").await;
    assert_eq!(
        browser
            .find_all("form[action$='/delete'][data-confirm] button")
            .await
            .len(),
        2
    );
    browser
        .click("a.tag[href='/ui/r/team/web/-/image/1.0']")
        .await;
    browser.screenshot("image").await;

    let manifest = registry
        .call(
            "GET",
            "/v2/team/web/manifests/1.0",
            &[("accept", OCI_MANIFEST.into())],
            Vec::new(),
        )
        .await;
    let digest = manifest.headers["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_string();
    let manifest: Value = serde_json::from_slice(&manifest.body).unwrap();
    let rows = browser.find_all("#layers tbody tr").await;
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(rows.len(), layers.len());
    for (i, layer) in layers.iter().enumerate() {
        let code = browser
            .find_all(&format!(
                "#layers tbody tr:nth-child({}) code.digest",
                i + 1
            ))
            .await;
        let size = browser
            .find_all(&format!("#layers tbody tr:nth-child({}) .size", i + 1))
            .await;
        let layer_digest = layer["digest"].as_str().unwrap();
        assert_eq!(browser.attr(&code[0], "data-digest").await, layer_digest);
        // The size the page shows is the blob's size as the registry serves it.
        let head = registry
            .call(
                "HEAD",
                &format!("/v2/team/web/blobs/{layer_digest}"),
                &[],
                Vec::new(),
            )
            .await;
        let served = head.headers["content-length"].to_str().unwrap().to_string();
        assert_eq!(browser.attr(&size[0], "data-bytes").await, served);
        assert_eq!(served, layer["size"].to_string());
    }
    let total: u64 = layers
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum::<u64>()
        + manifest["config"]["size"].as_u64().unwrap();
    let shown = browser.find("#compressed-size .size").await;
    assert_eq!(browser.attr(&shown, "data-bytes").await, total.to_string());
    let page = browser.source().await;
    assert!(page.contains(&digest), "the manifest digest is shown");

    // On a narrow screen the full digest stays one token on one line: it
    // scrolls sideways in its box instead of breaking mid-word.
    browser
        .cmd("POST", "/window/rect", json!({"width": 420, "height": 900}))
        .await;
    let shown = browser
        .script(
            "const done = arguments[arguments.length - 1];
             const c = document.querySelector('dl.facts .copy code');
             const line = parseFloat(getComputedStyle(c).lineHeight);
             done({text: c.textContent, lines: Math.round(c.clientHeight / line),
                   scrolls: c.scrollWidth > c.clientWidth,
                   fits: c.getBoundingClientRect().right <= window.innerWidth});",
        )
        .await;
    assert_eq!(shown["text"], digest.as_str(), "{shown}");
    assert_eq!(shown["lines"], 1, "the digest wraps: {shown}");
    assert_eq!(shown["scrolls"], true, "{shown}");
    assert_eq!(
        shown["fits"], true,
        "the digest overflows the screen: {shown}"
    );
    browser
        .cmd(
            "POST",
            "/window/rect",
            json!({"width": 1200, "height": 900}),
        )
        .await;
    for want in [
        "/bin/web",
        "8080/tcp",
        "/srv",
        "COPY web /bin/web",
        "org.opencontainers.image.source",
    ] {
        assert!(page.contains(want), "the config shows {want}");
    }

    // A form POST without the CSRF token is refused.
    assert_eq!(
        browser
            .post_status("/ui/r/team/web/-/tags/1.1/delete", "''")
            .await,
        403
    );
    assert_eq!(registry.tags("team/web").await, ["1.0", "1.1"]);

    // Delete a tag in the UI, accepting the confirmation.
    browser.goto(&format!("{base}/ui/r/team/web")).await;
    browser
        .click("form[action='/ui/r/team/web/-/tags/1.1/delete'] button")
        .await;
    browser.cmd("POST", "/alert/accept", json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(browser.source().await.contains("was deleted"));
    assert_eq!(
        registry.tags("team/web").await,
        ["1.0"],
        "the registry API no longer lists it"
    );

    // Logout ends the session: the pages ask for a login again.
    browser.logout().await;
    browser.goto(&format!("{base}/ui/r/team/web")).await;
    assert!(browser.url().await.contains("/ui/login"));

    // A guest reads but has no delete button, and the delete URL says 403.
    browser.login(&base, "guest", "guest-password").await;
    browser.goto(&format!("{base}/ui/r/team/web")).await;
    browser.screenshot("guest-repository").await;
    assert!(browser.source().await.contains("1.0"));
    assert!(browser
        .find_all("form[action$='/delete'] button")
        .await
        .is_empty());
    let status = browser
        .post_status(
            "/ui/r/team/web/-/tags/1.0/delete",
            "'csrf=' + encodeURIComponent(document.querySelector('input[name=csrf]').value)",
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(registry.tags("team/web").await, ["1.0"]);
    browser.logout().await;

    // A stranger sees no project they are not a member of.
    browser.login(&base, "stranger", "stranger-password").await;
    let page = browser.source().await;
    assert!(!page.contains("/ui/projects/team") && !page.contains("/ui/projects/secret"));
    browser.goto(&format!("{base}/ui/projects/team")).await;
    assert!(browser.source().await.contains("404"));
    browser.goto(&format!("{base}/ui/r/secret/vault")).await;
    assert!(browser.source().await.contains("404"));
    browser.goto(&format!("{base}/ui")).await;
    browser.logout().await;
    browser.goto(&format!("{base}/ui")).await;
    assert!(browser.url().await.contains("/ui/login"));

    for name in [
        "login",
        "overview",
        "project",
        "repository",
        "image",
        "guest-repository",
    ] {
        assert!(shots.join(format!("{name}.png")).is_file());
    }
}

/// A project with a policy: usage and rules on its page, the retention
/// preview, a repository deleted through its confirmation page (and one
/// an immutable tag protects, refused), and a GC dry run on the admin page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_retention_repository_deletion_and_gc_in_chromium() {
    let _one = ONE_BROWSER.lock().await;
    let root = tempfile::tempdir().unwrap();
    let registry = Registry::start(&root.path().join("data")).await;
    let base = registry.base.clone();
    registry
        .api("POST", "/api/v1/projects", json!({"name": "shop"}))
        .await;
    registry
        .api(
            "PUT",
            "/api/v1/projects/shop/policy",
            json!({"quota_bytes": 1000000000, "immutable_tags": ["v*"], "retention": {"keep_last": 1}}),
        )
        .await;
    registry.push_image("shop/web", "1.0", 5).await;
    // Retention orders tags by push time, in milliseconds.
    tokio::time::sleep(Duration::from_millis(20)).await;
    registry.push_image("shop/web", "2.0", 6).await;
    registry.push_image("shop/base", "v1", 7).await;
    let policy = registry
        .call("GET", "/api/v1/projects/shop/policy", &[], Vec::new())
        .await
        .json();
    let usage = &policy["usage"];
    assert_eq!(
        (usage["repositories"].as_u64(), usage["tags"].as_u64()),
        (Some(2), Some(3))
    );

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    let browser = Browser::start(shots.clone()).await;
    browser.login(&base, "admin", ADMIN_PASSWORD).await;

    // The project page: usage as the quota counts it, and the rules.
    browser.goto(&format!("{base}/ui/projects/shop")).await;
    browser.screenshot("project-lifecycle").await;
    let sizes = browser.find_all("#usage-storage .size").await;
    assert_eq!(sizes.len(), 2);
    assert_eq!(
        browser.attr(&sizes[0], "data-bytes").await,
        usage["bytes"].to_string()
    );
    assert_eq!(browser.attr(&sizes[1], "data-bytes").await, "1000000000");
    let storage = browser.text("#usage-storage").await;
    assert!(storage.contains("of 953.7 MiB"), "{storage}");
    assert!(
        storage.contains("a blob shared by two repositories counts once"),
        "{storage}"
    );
    assert_eq!(browser.text("#usage-repositories").await, "2 (no limit)");
    assert_eq!(browser.text("#usage-tags").await, "3 (no limit)");
    assert_eq!(
        browser.text("#rule-immutable").await,
        "tags matching v* are pushed once, never moved or deleted"
    );
    assert_eq!(browser.text("#rule-untagged").await, "kept");
    let retention = browser.text("#rule-retention").await;
    assert!(
        retention.starts_with("Garbage collection deletes every tag except the most recently pushed tag of each repository and immutable tags."),
        "{retention}"
    );

    // The preview: the older tag of shop/web goes, the newest stays, and
    // shop/base keeps its immutable tag.
    browser.click("a[href='/ui/projects/shop/retention']").await;
    browser.screenshot("retention-preview").await;
    let rows = browser.find_all("#retention tbody tr").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(browser.attr(&rows[0], "data-name").await, "shop/web");
    assert_eq!(
        browser.text("#retention tbody tr td:nth-child(2)").await,
        "1.0"
    );
    assert!(browser
        .find_all("#retention a[href='/ui/r/shop/web/-/image/2.0']")
        .await
        .is_empty());

    // A repository holding an immutable tag cannot be deleted: the reason shows.
    browser.goto(&format!("{base}/ui/r/shop/base")).await;
    browser
        .click("form[action='/ui/r/shop/base/-/delete'] button")
        .await;
    browser.settle(|url| url.ends_with("/-/delete")).await;
    browser.click("#delete-repository button").await;
    for _ in 0..50 {
        if !browser.find_all("#refused").await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = browser.text("#refused").await;
    assert!(refused.contains("tag v1 is immutable"), "{refused}");
    assert_eq!(registry.tags("shop/base").await, ["v1"]);

    // Delete shop/web with the button and its confirmation page.
    browser.goto(&format!("{base}/ui/r/shop/web")).await;
    browser
        .click("form[action='/ui/r/shop/web/-/delete'] button")
        .await;
    browser.settle(|url| url.ends_with("/-/delete")).await;
    assert_eq!(
        browser.text("#confirm-question").await,
        "Delete repository shop/web with its 2 tags? This cannot be undone."
    );
    browser.screenshot("delete-repository").await;
    browser.click("#delete-repository button").await;
    browser.settle(|url| url.contains("deleted=")).await;
    assert!(browser
        .url()
        .await
        .ends_with("/ui/projects/shop?deleted=shop/web"));
    assert!(browser
        .text("#deleted-notice")
        .await
        .contains("shop/web was deleted"));
    assert_eq!(registry.catalog().await, ["shop/base"]);
    let tags = registry
        .call("GET", "/v2/shop/web/tags/list", &[], Vec::new())
        .await;
    assert_eq!(tags.status, 404, "{}", String::from_utf8_lossy(&tags.body));

    // A dry run from the admin page, listed once the collector has run it.
    browser.goto(&format!("{base}/ui/admin")).await;
    browser
        .click("form[action='/ui/admin/gc']:not([data-confirm]) button")
        .await;
    browser.settle(|url| url.contains("gc=")).await;
    assert!(browser.text("#gc-notice").await.contains("was requested"));
    let mut state = String::new();
    for _ in 0..100 {
        state = browser.text("#gc-runs tbody tr td:nth-child(2)").await;
        if state == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        browser.goto(&format!("{base}/ui/admin")).await;
    }
    assert_eq!(state, "succeeded");
    assert_eq!(browser.find_all("#gc-runs tbody tr").await.len(), 1);
    let row = browser.text("#gc-runs tbody tr").await;
    assert!(row.contains("dry run") && row.contains("admin"), "{row}");
    browser.goto(&format!("{base}/ui/admin#gc")).await;
    browser.screenshot("admin-gc").await;

    for name in [
        "project-lifecycle",
        "retention-preview",
        "delete-repository",
        "admin-gc",
    ] {
        assert!(shots.join(format!("{name}.png")).is_file());
    }
}
