//! HTTPS end to end: the real listener (`berth::server::serve_on`) over a
//! registry in a temporary directory, on 127.0.0.1, talked to by a rustls
//! client with a test CA made by rcgen.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Request, StatusCode};
use berth::auth::AuthMode;
use berth::config::Config;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A PEM certificate, its PEM key and the certificate's DER.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = dn(name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        roots
    }

    fn issue(&self, common_name: &str, purpose: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name = dn(common_name);
        params.extended_key_usages = vec![purpose];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn server_cert(&self, common_name: &str) -> Leaf {
        self.issue(common_name, ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn client_cert(&self, common_name: &str) -> Leaf {
        self.issue(common_name, ExtendedKeyUsagePurpose::ClientAuth)
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Replaces a file the way deployment tools do: write aside, rename over.
fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("server stops after shutdown")
            .unwrap()
            .expect("server ends cleanly");
    }
}

fn base_config(data_dir: &Path) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        listen: "127.0.0.1:0".into(),
        ..Config::default()
    };
    config.auth.mode = AuthMode::None;
    config
}

/// A config serving `leaf` from files under `dir`.
fn tls_config(dir: &Path, leaf: &Leaf) -> (Config, PathBuf, PathBuf) {
    let cert_file = dir.join("server.crt");
    let key_file = dir.join("server-key.pem");
    std::fs::write(&cert_file, &leaf.cert_pem).unwrap();
    std::fs::write(&key_file, &leaf.key_pem).unwrap();
    let mut config = base_config(&dir.join("data"));
    config.tls.cert_file = Some(cert_file.clone());
    config.tls.key_file = Some(key_file.clone());
    (config, cert_file, key_file)
}

async fn start(config: Config) -> Running {
    let app = berth::server::build_app(&config).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        berth::server::serve_on(listener, app, &config, async {
            let _ = stopped.await;
        })
        .await
    });
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    /// The certificate the server presented.
    peer_cert: CertificateDer<'static>,
}

fn client_config(roots: RootCertStore, client_cert: Option<&Leaf>) -> Arc<ClientConfig> {
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![leaf.der.clone()],
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    // No session resumption: every connection does a full handshake, so
    // it shows the certificate being served now.
    let mut config = config;
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    server_name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

/// `GET path` on a new TLS connection to `addr`, verifying the server as
/// `server_name`.
async fn https_get(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    server_name: &str,
    path: &str,
) -> anyhow::Result<Answer> {
    let stream = tls_connect(addr, config, server_name).await?;
    let peer_cert = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", server_name)
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let headers = response.headers().clone();
    response.into_body().collect().await?;
    Ok(Answer {
        status,
        headers,
        peer_cert,
    })
}

fn hsts(answer: &Answer) -> Option<&str> {
    answer
        .headers
        .get("strict-transport-security")
        .and_then(|v| v.to_str().ok())
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn v2_answers_over_https_with_hsts() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("berth test CA");
    let leaf = ca.server_cert("registry one");
    let (mut config, _, _) = tls_config(dir.path(), &leaf);
    config.tls.hsts_max_age_seconds = 1234;
    let server = start(config).await;
    let client = client_config(ca.roots(), None);

    let answer = https_get(server.addr, client.clone(), "localhost", "/v2/")
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(hsts(&answer), Some("max-age=1234"));
    assert_eq!(
        answer.headers["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(answer.peer_cert, leaf.der);

    // Error answers carry it too, and the IP name of the certificate works.
    let answer = https_get(
        server.addr,
        client.clone(),
        "127.0.0.1",
        "/v2/no/such/thing",
    )
    .await
    .unwrap();
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(hsts(&answer), Some("max-age=1234"));

    // A client that does not trust the CA is refused.
    let stranger = client_config(TestCa::new("other CA").roots(), None);
    assert!(https_get(server.addr, stranger, "localhost", "/v2/")
        .await
        .is_err());

    // Plain HTTP on the TLS port gets a 400 that says what to do, as an
    // OCI error body, and the connection closes.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut reply))
        .await
        .expect("the answer comes and the connection closes")
        .unwrap();
    let reply = String::from_utf8(reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 400 "), "{reply}");
    assert!(head.contains("content-type: application/json"), "{reply}");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["errors"][0]["code"], "INVALID_REQUEST");
    assert_eq!(
        body["errors"][0]["message"],
        "this port speaks HTTPS: use https:// in the registry address"
    );

    server.stop().await;
}

#[tokio::test]
async fn plain_http_listener_is_unchanged_and_sends_no_hsts() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(base_config(dir.path())).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(
            Request::get("/v2/")
                .header("host", "localhost")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .headers()
        .get("strict-transport-security")
        .is_none());
    server.stop().await;
}

#[tokio::test]
async fn replaced_certificate_files_are_served_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("berth test CA");
    let first = ca.server_cert("first certificate");
    let (config, cert_file, key_file) = tls_config(dir.path(), &first);
    let server = start(config).await;
    let client = client_config(ca.roots(), None);
    let get = || https_get(server.addr, client.clone(), "localhost", "/v2/");
    assert_eq!(get().await.unwrap().peer_cert, first.der);

    let second = ca.server_cert("second certificate");
    assert_ne!(first.der, second.der);
    replace_file(&key_file, &second.key_pem);
    replace_file(&cert_file, &second.cert_pem);
    let deadline = Instant::now() + berth::tls::RELOAD_INTERVAL * 5;
    loop {
        let answer = get().await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        if answer.peer_cert == second.der {
            break;
        }
        assert_eq!(answer.peer_cert, first.der);
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Broken files (a half-done deployment): keep serving the last good one.
    replace_file(&cert_file, "-----BEGIN CERTIFICATE-----\nbroken\n");
    tokio::time::sleep(berth::tls::RELOAD_INTERVAL * 2 + Duration::from_millis(500)).await;
    let answer = get().await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.peer_cert, second.der);

    // A certificate whose key is not there yet is not served either...
    let third = ca.server_cert("third certificate");
    replace_file(&cert_file, &third.cert_pem);
    tokio::time::sleep(berth::tls::RELOAD_INTERVAL * 2 + Duration::from_millis(500)).await;
    assert_eq!(get().await.unwrap().peer_cert, second.der);
    // ...until the key arrives.
    replace_file(&key_file, &third.key_pem);
    let deadline = Instant::now() + berth::tls::RELOAD_INTERVAL * 5;
    while get().await.unwrap().peer_cert != third.der {
        assert!(
            Instant::now() < deadline,
            "the third certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn client_ca_requires_a_certificate_it_signed() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("berth test CA");
    let (mut config, _, _) = tls_config(dir.path(), &ca.server_cert("registry"));
    let client_ca = TestCa::new("berth client CA");
    let client_ca_file = dir.path().join("clients.pem");
    std::fs::write(&client_ca_file, client_ca.pem()).unwrap();
    config.tls.client_ca_file = Some(client_ca_file);
    let server = start(config).await;

    let anonymous = client_config(ca.roots(), None);
    let refused = https_get(server.addr, anonymous, "localhost", "/v2/").await;
    assert!(refused.is_err(), "a client without a certificate got in");

    let impostor_cert = TestCa::new("someone else").client_cert("impostor");
    let impostor = client_config(ca.roots(), Some(&impostor_cert));
    let refused = https_get(server.addr, impostor, "localhost", "/v2/").await;
    assert!(refused.is_err(), "a certificate from another CA got in");

    let member = client_config(ca.roots(), Some(&client_ca.client_cert("ci-runner")));
    let answer = https_get(server.addr, member, "localhost", "/v2/")
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn replaced_client_ca_bundle_is_used_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("berth test CA");
    let (mut config, _, _) = tls_config(dir.path(), &ca.server_cert("registry"));
    let old_ca = TestCa::new("old client CA");
    let new_ca = TestCa::new("new client CA");
    let client_ca_file = dir.path().join("clients.pem");
    std::fs::write(&client_ca_file, old_ca.pem()).unwrap();
    config.tls.client_ca_file = Some(client_ca_file.clone());
    let server = start(config).await;
    let old_client = client_config(ca.roots(), Some(&old_ca.client_cert("old-runner")));
    let new_client = client_config(ca.roots(), Some(&new_ca.client_cert("new-runner")));
    let get =
        |client: &Arc<ClientConfig>| https_get(server.addr, client.clone(), "localhost", "/v2/");
    assert_eq!(get(&old_client).await.unwrap().status, StatusCode::OK);
    assert!(
        get(&new_client).await.is_err(),
        "the new CA is not trusted yet"
    );

    replace_file(&client_ca_file, &new_ca.pem());
    let deadline = Instant::now() + berth::tls::RELOAD_INTERVAL * 5;
    while get(&new_client).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the replaced client CA bundle was never used"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        get(&old_client).await.is_err(),
        "a client of the replaced CA still gets in"
    );

    // A broken bundle (a half-done deployment) keeps the last good one.
    replace_file(&client_ca_file, "-----BEGIN CERTIFICATE-----\nbroken\n");
    tokio::time::sleep(berth::tls::RELOAD_INTERVAL * 2 + Duration::from_millis(500)).await;
    assert_eq!(get(&new_client).await.unwrap().status, StatusCode::OK);
    assert!(get(&old_client).await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn self_signed_certificate_is_made_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    config.tls.self_signed = true;
    let cert_file = dir.path().join("tls").join(berth::tls::SELF_SIGNED_CERT);
    let key_file = dir.path().join("tls").join(berth::tls::SELF_SIGNED_KEY);

    let server = start(config.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cert_file.exists() {
        assert!(Instant::now() < deadline, "no certificate generated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cert_pem = std::fs::read_to_string(&cert_file).unwrap();
    let key_pem = std::fs::read_to_string(&key_file).expect("key generated");
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(key_mode & 0o077, 0, "the private key is readable by others");

    // Trusting the generated certificate is enough, under every name it
    // was made for.
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(der.clone()).unwrap();
    let client = client_config(roots, None);
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(berth::tls::hostname());
    for name in &names {
        let answer = https_get(server.addr, client.clone(), name, "/v2/")
            .await
            .unwrap_or_else(|e| panic!("as {name}: {e:#}"));
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.peer_cert, der);
        assert!(hsts(&answer).is_some());
    }
    server.stop().await;

    // The next start serves the same certificate and key.
    let server = start(config).await;
    assert_eq!(std::fs::read_to_string(&cert_file).unwrap(), cert_pem);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key_pem);
    let answer = https_get(server.addr, client, "localhost", "/v2/")
        .await
        .unwrap();
    assert_eq!(answer.peer_cert, der);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_an_in_flight_request_and_stops_accepting() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("berth test CA");
    let (config, _, _) = tls_config(dir.path(), &ca.server_cert("registry"));
    let server = start(config).await;
    let client = client_config(ca.roots(), None);
    let stream = tls_connect(server.addr, client.clone(), "localhost")
        .await
        .unwrap();
    let reply = drain_on_shutdown(server, stream).await;
    assert!(reply
        .to_ascii_lowercase()
        .contains("strict-transport-security: max-age="));
}

#[tokio::test]
async fn plain_http_shutdown_also_finishes_an_in_flight_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(base_config(&dir.path().join("data"))).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let reply = drain_on_shutdown(server, stream).await;
    assert!(!reply
        .to_ascii_lowercase()
        .contains("strict-transport-security"));
}

/// Starts a blob upload on `stream`, shuts `server` down with the body half
/// sent, checks that new connections are refused while the upload may
/// finish, finishes it, and returns the answer.
async fn drain_on_shutdown(
    server: Running,
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
) -> String {
    let blob = vec![7u8; 64 * 1024];
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&blob)));
    let head = format!(
        "POST /v2/tls/test/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        blob.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&blob[..blob.len() / 2]).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let Running {
        addr,
        stop,
        mut task,
    } = server;
    stop.unwrap().send(()).unwrap();

    // New connections are refused once the listener is closed...
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...while the server waits for the request in flight.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut task)
            .await
            .is_err(),
        "the server quit with a request in flight"
    );

    stream.write_all(&blob[blob.len() / 2..]).await.unwrap();
    stream.flush().await.unwrap();
    let mut reply = Vec::new();
    // The end may come as a close_notify or as a bare EOF: both are fine.
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply))
        .await
        .expect("the connection is closed after its last answer");
    let reply = String::from_utf8_lossy(&reply).into_owned();
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");

    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the server stops once the request is done")
        .unwrap()
        .unwrap();
    reply
}
