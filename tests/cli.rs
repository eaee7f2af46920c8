//! The `berth` command line, run as the built binary against real data
//! directories: every administration subcommand with and without a server
//! running on the directory, their errors, and what a failed start leaves.
//!
//! Every child runs with a clean environment (no inherited `BERTH_*`), and
//! every wait is bounded.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_berth");
const TIMEOUT: Duration = Duration::from_secs(60);

/// What one run of the binary answered.
struct Out {
    what: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Out {
    #[track_caller]
    fn ok(&self) -> &Out {
        assert!(
            self.status.success(),
            "{}: exit {:?}\nstdout: {}\nstderr: {}",
            self.what,
            self.status.code(),
            self.stdout,
            self.stderr
        );
        self
    }

    /// A failed command: exit 1 and exactly one `berth: ` line on stderr,
    /// which contains `needle`, with no backtrace.
    #[track_caller]
    fn fails_with(&self, needle: &str) -> &Out {
        assert_eq!(
            self.status.code(),
            Some(1),
            "{}: stdout: {}\nstderr: {}",
            self.what,
            self.stdout,
            self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}: stderr: {}", self.what, self.stderr);
        assert!(
            lines[0].starts_with("berth: ") && lines[0].contains(needle),
            "{}: expected one line with {needle:?}, got {:?}",
            self.what,
            self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}): {}", self.what, self.stdout))
    }
}

/// The binary with a clean environment, run in `cwd`.
fn berth(cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

/// Runs `cmd` to its end (at most `TIMEOUT`), feeding it `stdin`.
fn run(mut cmd: Command, stdin: &str) -> Out {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}: still running after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Out {
        what,
        status,
        stdout,
        stderr,
    }
}

/// `berth ARGS --data-dir DATA` in `cwd`.
fn cli(data: &Path, args: &[&str], stdin: &str) -> Out {
    let mut cmd = berth(data.parent().unwrap(), args);
    cmd.arg("--data-dir").arg(data);
    run(cmd, stdin)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `berth serve` on a data directory; stopped with SIGTERM on drop.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(data: &Path, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let log = data.with_extension("log");
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = berth(data.parent().unwrap(), &["serve"]);
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data)
            .envs(env.iter().copied())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let server = Server {
            child: cmd.spawn().expect("start berth serve"),
            port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.get("/healthz", None).0 != 200 {
            assert!(
                Instant::now() < deadline,
                "berth serve did not come up: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A plain HTTP/1.1 GET; (status, body). Status 0: no answer.
    fn get(&self, path: &str, basic: Option<(&str, &str)>) -> (u16, String) {
        self.request("GET", path, basic, "", b"")
    }

    /// A plain HTTP/1.1 request with these extra header lines (each ending
    /// in CRLF) and body; (status, body). Status 0: no answer.
    fn request(
        &self,
        method: &str,
        path: &str,
        basic: Option<(&str, &str)>,
        headers: &str,
        body: &[u8],
    ) -> (u16, String) {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return (0, String::new());
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let auth = basic
            .map(|(u, p)| {
                format!(
                    "Authorization: Basic {}\r\n",
                    STANDARD.encode(format!("{u}:{p}"))
                )
            })
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        if stream.write_all(head.as_bytes()).is_err() || stream.write_all(body).is_err() {
            return (0, String::new());
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// SIGTERM, then waits (bounded) for the exit.
    fn stop(mut self) -> String {
        self.terminate();
        self.log()
    }

    fn terminate(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
    }
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

/// Every administration subcommand, in the order an operator uses them.
/// Returns the robot's full name and secret, and alice's token.
fn exercise_every_subcommand(data: &Path) -> (String, String, String) {
    let alice = cli(
        data,
        &["user", "add", "alice", "--password-stdin"],
        "alice-password\n",
    );
    assert_eq!(alice.ok().json()["name"], "alice");
    assert_eq!(alice.json()["admin"], false);
    let bob = cli(
        data,
        &["user", "add", "bob", "--admin", "--password-stdin"],
        "bob-password\n",
    );
    assert_eq!(bob.ok().json()["admin"], true);
    let users = cli(data, &["user", "list"], "");
    assert_eq!(names(&users.ok().json()), ["admin", "alice", "bob"]);
    cli(
        data,
        &["user", "passwd", "alice", "--password-stdin"],
        "alice-password2\n",
    )
    .ok()
    .stdout
    .contains("password of alice changed")
    .then_some(())
    .expect("passwd says what it did");
    let set = cli(data, &["user", "set", "bob", "--disabled", "true"], "");
    assert_eq!(set.ok().json()["disabled"], true);
    let set = cli(
        data,
        &[
            "user",
            "set",
            "bob",
            "--admin",
            "false",
            "--disabled",
            "false",
        ],
        "",
    );
    assert_eq!(set.ok().json()["admin"], false);
    assert_eq!(set.json()["disabled"], false);

    // As the README shows it: the operator creates a project without owning it.
    let team = cli(data, &["project", "add", "team"], "");
    assert_eq!(team.ok().json()["name"], "team");
    assert_eq!(team.json()["public"], false);
    let open = cli(data, &["project", "add", "open", "--public"], "");
    assert_eq!(open.ok().json()["public"], true);
    assert_eq!(
        cli(data, &["project", "visibility", "team", "public"], "")
            .ok()
            .stdout,
        "team is now public\n"
    );
    let projects = cli(data, &["project", "list"], "").ok().json();
    assert_eq!(names(&projects), ["open", "team"]);
    assert!(projects
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["public"] == true));
    assert_eq!(
        cli(data, &["project", "visibility", "team", "private"], "")
            .ok()
            .stdout,
        "team is now private\n"
    );
    assert_eq!(
        cli(data, &["project", "members", "team"], "").ok().stdout,
        "",
        "the operator is no member"
    );
    assert_eq!(
        cli(
            data,
            &["project", "member", "team", "alice", "developer"],
            ""
        )
        .ok()
        .stdout,
        "alice is developer of team\n"
    );
    cli(data, &["project", "member", "team", "bob", "guest"], "").ok();
    assert_eq!(
        cli(data, &["project", "members", "team"], "").ok().stdout,
        "alice\tdeveloper\nbob\tguest\n"
    );
    assert_eq!(
        cli(data, &["project", "unmember", "team", "bob"], "")
            .ok()
            .stdout,
        "bob removed from team\n"
    );
    assert_eq!(
        cli(data, &["project", "members", "team"], "").ok().stdout,
        "alice\tdeveloper\n"
    );

    let robot = cli(
        data,
        &[
            "robot",
            "add",
            "team",
            "ci",
            "--actions",
            "pull,push",
            "--expires-days",
            "90",
        ],
        "",
    );
    let created = robot.ok().json();
    let robot_name = created["name"].as_str().unwrap().to_string();
    assert_eq!(robot_name, "robot$team+ci");
    assert_eq!(created["actions"], serde_json::json!(["pull", "push"]));
    assert!(created["expires_at"].is_i64());
    let secret = created["secret"].as_str().unwrap().to_string();
    cli(
        data,
        &["robot", "add", "team", "old", "--actions", "pull"],
        "",
    )
    .ok();
    let robots = cli(data, &["robot", "list", "team"], "").ok().json();
    assert_eq!(names(&robots), ["robot$team+ci", "robot$team+old"]);
    assert!(robots[0].get("secret").is_none(), "secrets are shown once");
    cli(data, &["robot", "del", "team", "robot$team+old"], "").ok();
    assert_eq!(
        names(&cli(data, &["robot", "list", "team"], "").ok().json()),
        ["robot$team+ci"]
    );

    let token = cli(data, &["token", "add", "alice", "laptop"], "")
        .ok()
        .json();
    let token_secret = token["secret"].as_str().unwrap().to_string();
    let old = cli(
        data,
        &["token", "add", "alice", "old", "--expires-days", "1"],
        "",
    )
    .ok()
    .json();
    let tokens = cli(data, &["token", "list", "alice"], "").ok().json();
    assert_eq!(names(&tokens), ["laptop", "old"]);
    let old_id = old["id"].as_str().unwrap();
    assert_eq!(
        cli(data, &["token", "del", "alice", old_id], "")
            .ok()
            .stdout,
        format!("revoked token {old_id}\n")
    );
    assert_eq!(
        names(&cli(data, &["token", "list", "alice"], "").ok().json()),
        ["laptop"]
    );

    cli(data, &["project", "del", "open"], "").ok();
    assert_eq!(
        names(&cli(data, &["project", "list"], "").ok().json()),
        ["team"]
    );
    cli(data, &["user", "del", "bob"], "").ok();
    assert_eq!(
        names(&cli(data, &["user", "list"], "").ok().json()),
        ["admin", "alice"]
    );

    let audit = cli(data, &["audit", "--limit", "3"], "");
    let events: Vec<Value> = audit
        .ok()
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{}", audit.stdout);
    assert_eq!(events[0]["action"], "user.delete", "{}", audit.stdout);
    let created = cli(data, &["audit", "--action", "project.create"], "");
    assert_eq!(created.ok().stdout.lines().count(), 2, "{}", created.stdout);

    let rotated = cli(data, &["keys", "rotate"], "");
    assert!(
        rotated.ok().stdout.starts_with("new signing key "),
        "{}",
        rotated.stdout
    );
    let printed = cli(data, &["config", "print"], "");
    assert!(
        printed
            .ok()
            .stdout
            .contains(&format!("data_dir = {:?}", data.display().to_string())),
        "{}",
        printed.stdout
    );
    (robot_name, secret, token_secret)
}

#[test]
fn every_subcommand_works_without_a_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    exercise_every_subcommand(&data);
    // What the commands wrote is what a server then serves.
    let server = Server::start(&data, &[]);
    assert_eq!(
        server.get("/v2/", Some(("alice", "alice-password2"))).0,
        200
    );
    assert_eq!(server.get("/v2/", Some(("alice", "alice-password"))).0, 401);
}

#[test]
fn every_subcommand_works_while_a_server_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[("BERTH_ADMIN_PASSWORD", "admin-pw")]);
    let (robot, secret, token) = exercise_every_subcommand(&data);
    // The running server sees every change at once.
    assert_eq!(
        server.get("/v2/", Some(("alice", "alice-password2"))).0,
        200
    );
    assert_eq!(server.get("/v2/", Some(("alice", token.as_str()))).0, 200);
    assert_eq!(
        server
            .get("/v2/", Some((robot.as_str(), secret.as_str())))
            .0,
        200
    );
    assert_eq!(server.get("/v2/", Some(("bob", "bob-password"))).0, 401);
    let (status, body) = server.get("/api/v1/projects/team/members", Some(("admin", "admin-pw")));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"alice\""), "{body}");
}

/// `sha256:<hex>` of `data`.
fn digest(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{:x}", sha2::Sha256::digest(data))
}

#[test]
fn a_repository_deleted_by_the_cli_leaves_the_running_server_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[("BERTH_ADMIN_PASSWORD", "admin-pw")]);
    let admin = Some(("admin", "admin-pw"));
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let (status, body) = server.request(
        "POST",
        &format!("/v2/lib/app/blobs/uploads/?digest={}", digest(config)),
        admin,
        "Content-Type: application/octet-stream\r\n",
        config,
    );
    assert_eq!(status, 201, "{body}");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[]}}"#,
        digest(config),
        config.len()
    );
    let (status, body) = server.request(
        "PUT",
        "/v2/lib/app/manifests/v1",
        admin,
        "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n",
        manifest.as_bytes(),
    );
    assert_eq!(status, 201, "{body}");
    // Served twice: the second answer comes from the server's cache.
    for _ in 0..2 {
        assert_eq!(server.get("/v2/lib/app/manifests/v1", admin).0, 200);
    }
    cli(&data, &["repo", "del", "lib/app"], "").ok();
    // The worker that follows deletions looks once a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = server.get("/v2/lib/app/manifests/v1", admin);
        if status == 404 {
            assert!(body.contains("\"MANIFEST_UNKNOWN\""), "{body}");
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            Instant::now() < deadline,
            "the running server still serves the deleted repository's manifest"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = server.get("/v2/_catalog", admin);
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("lib/app"), "{body}");
}

#[test]
fn command_errors_are_one_line_and_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    cli(&data, &["project", "add", "team"], "").ok();
    let bt = |args: &[&str], stdin: &str| {
        let mut cmd = berth(tmp.path(), args);
        cmd.arg("--data-dir")
            .arg(&data)
            .env("RUST_BACKTRACE", "full");
        run(cmd, stdin)
    };
    bt(&["user", "del", "nobody"], "").fails_with("nobody");
    bt(&["user", "add", "alice", "--password-stdin"], "")
        .fails_with("no password on standard input");
    bt(&["project", "add", "team"], "").fails_with("already exists");
    bt(&["project", "member", "team", "nobody", "developer"], "").fails_with("nobody");
    bt(&["robot", "add", "absent", "ci", "--actions", "pull"], "").fails_with("absent");
    bt(&["token", "del", "admin", "no-such-id"], "").fails_with("no-such-id");
    bt(&["project", "del", "absent"], "").fails_with("absent");

    // Arguments clap refuses exit 2 and name the values allowed.
    let bad = bt(&["project", "visibility", "team", "hidden"], "");
    assert_eq!(bad.status.code(), Some(2), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("[possible values: public, private]"),
        "{}",
        bad.stderr
    );
    let bad = bt(&["project", "member", "team", "admin", "owner"], "");
    assert_eq!(bad.status.code(), Some(2), "{}", bad.stderr);
}

#[test]
fn read_commands_refuse_a_missing_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let expected = format!(
        "no berth data directory at {}",
        tmp.path().join("data").display()
    );
    for args in [
        &["user", "list"][..],
        &["project", "list"],
        &["project", "members", "team"],
        &["robot", "list", "team"],
        &["token", "list", "admin"],
        &["audit"],
    ] {
        run(berth(tmp.path(), args), "").fails_with(&expected);
    }
    let elsewhere = tmp.path().join("elsewhere");
    let mut cmd = berth(tmp.path(), &["user", "list"]);
    cmd.env("BERTH_DATA_DIR", &elsewhere);
    run(cmd, "").fails_with(&format!(
        "no berth data directory at {}",
        elsewhere.display()
    ));
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "a read command created something"
    );
}

#[test]
fn a_failed_start_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut cmd = berth(
        tmp.path(),
        &["serve", "--listen", &format!("127.0.0.1:{port}")],
    );
    cmd.arg("--data-dir")
        .arg(&data)
        .env("BERTH_ADMIN_PASSWORD", "first")
        .env("RUST_BACKTRACE", "1");
    let out = run(cmd, "");
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!("berth: listening on 127.0.0.1:{port}\n  caused by: Address already in use (os error 98)\n")
    );
    assert!(!data.exists(), "a failed start created {}", data.display());

    // `config print` and `serve` refuse what cannot be listened on.
    std::fs::write(tmp.path().join("berth.toml"), "listen = \"localhost\"\n").unwrap();
    for args in [&["config", "print"][..], &["serve"]] {
        let mut cmd = berth(tmp.path(), args);
        cmd.args(["--config", "berth.toml", "--data-dir"])
            .arg(&data);
        let out = run(cmd, "");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.starts_with(
                "berth: invalid configuration:\n  listen = \"localhost\": not an address and port"
            ),
            "{args:?}: {}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 2, "{}", out.stderr);
    }
    let mut cmd = berth(
        tmp.path(),
        &[
            "serve",
            "--tls-cert",
            "absent.pem",
            "--tls-key",
            "absent.key",
        ],
    );
    cmd.arg("--data-dir").arg(&data);
    let out = run(cmd, "");
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("tls.cert_file = \"absent.pem\": no such file")
            && out
                .stderr
                .contains("tls.key_file = \"absent.key\": no such file"),
        "{}",
        out.stderr
    );
    assert!(!data.exists(), "a failed start created {}", data.display());

    // The first successful start takes the password given to the failed one.
    drop(taken);
    let server = Server::start(&data, &[("BERTH_ADMIN_PASSWORD", "first")]);
    assert_eq!(server.get("/v2/", Some(("admin", "first"))).0, 200);
}

#[test]
fn an_ignored_admin_password_is_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let first = Server::start(&data, &[("BERTH_ADMIN_PASSWORD", "first")]).stop();
    assert!(
        first.contains("created the first account \"admin\" with the configured password"),
        "{first}"
    );
    assert!(!first.contains("is ignored"), "{first}");
    let server = Server::start(&data, &[("BERTH_ADMIN_PASSWORD", "second")]);
    assert_eq!(server.get("/v2/", Some(("admin", "first"))).0, 200);
    assert_eq!(server.get("/v2/", Some(("admin", "second"))).0, 401);
    let log = server.stop();
    assert!(
        log.contains("accounts exist already, so it is ignored"),
        "{log}"
    );
}

#[test]
fn berth_variables_naming_no_setting_get_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    cli(&data, &["project", "add", "team"], "").ok();
    let mut cmd = berth(tmp.path(), &["project", "list", "--data-dir"]);
    cmd.arg(&data)
        .env("BERTH_LISTNE", "127.0.0.1:1")
        .env("BERTH_BIN", BIN)
        .env("BERTH_LISTEN", "127.0.0.1:2");
    let out = run(cmd, "");
    out.ok();
    let warnings: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(
        warnings[0].contains("BERTH_LISTNE names no setting and is ignored"),
        "{}",
        out.stderr
    );

    let mut cmd = berth(tmp.path(), &["config", "print"]);
    cmd.env("BERTH_LISTNE", "127.0.0.1:1");
    let out = run(cmd, "");
    out.ok();
    assert_eq!(
        out.stderr,
        "berth: warning: BERTH_LISTNE names no setting and is ignored\n"
    );
    assert!(
        out.stdout.contains("listen = \"0.0.0.0:5000\""),
        "{}",
        out.stdout
    );
}

#[test]
fn subcommand_help_shows_only_its_own_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let help = |args: &[&str]| {
        let out = run(berth(tmp.path(), args), "");
        out.ok();
        out.stdout
    };
    for args in [
        &["user", "add", "--help"][..],
        &["project", "--help"],
        &["robot", "add", "--help"],
        &["token", "list", "--help"],
        &["audit", "--help"],
        &["keys", "rotate", "--help"],
    ] {
        let text = help(args);
        assert!(text.contains("--data-dir"), "{args:?}: {text}");
        for foreign in ["--listen", "--tls-cert", "--tls-self-signed", "--log-json"] {
            assert!(!text.contains(foreign), "{args:?} shows {foreign}: {text}");
        }
    }
    let add = help(&["user", "add", "--help"]);
    assert!(
        add.contains("--password-stdin") && add.contains("--admin"),
        "{add}"
    );
    let serve = help(&["serve", "--help"]);
    for own in [
        "--listen",
        "--tls-cert",
        "--tls-self-signed",
        "--log-json",
        "--data-dir",
    ] {
        assert!(serve.contains(own), "serve --help lacks {own}: {serve}");
    }
    assert!(!serve.contains("--password-stdin"), "{serve}");
    assert!(help(&["project", "visibility", "--help"]).contains("public"));
}
