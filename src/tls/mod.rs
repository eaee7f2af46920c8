//! HTTPS for the listener: rustls with the `ring` provider, a certificate
//! that is reloaded from disk while the server runs, optional client
//! certificates (mTLS), and a generated self-signed certificate for trials.
//!
//! Contract: [`Tls::from_config`] turns the `[tls]` section into a ready
//! listener configuration (or `None`: plain HTTP), failing at startup on any
//! unreadable file; the server's accept loop handshakes each connection with
//! [`Tls::acceptor`] and keeps the certificate and the client CA bundle
//! fresh with [`Tls::watch_files`].
//!
//! Reloading polls the files' metadata every [`RELOAD_INTERVAL`] rather than
//! using inotify: it also sees Kubernetes secret updates (a symlink swap)
//! and files on network mounts. A change that cannot be loaded (half-written
//! files, a key that does not match) is logged and the previous certificate
//! stays in use; the next change is tried again.

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use self_signed::ensure_self_signed;
pub use self_signed::hostname;

mod self_signed;

/// How often the certificate and key files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// A client that has not finished its handshake by then is dropped, so idle
/// sockets cannot pile up (or hold a graceful shutdown) forever.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// File names under `<data_dir>/tls/` for `tls.self_signed`. The `.crt`
/// suffix makes the directory usable as-is with podman/skopeo `--cert-dir`
/// (which trusts `*.crt`); the key must not end in `.key`, which that
/// directory format reserves for client certificates.
pub const SELF_SIGNED_CERT: &str = "berth.crt";
pub const SELF_SIGNED_KEY: &str = "berth-key.pem";

/// Lifetime of a generated self-signed certificate.
pub(super) const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A ready TLS listener configuration.
pub struct Tls {
    server_config: Arc<ServerConfig>,
    cert: Arc<ReloadingCert>,
    client_ca: Option<Arc<ReloadingClientCa>>,
    self_signed: Option<SelfSigned>,
}

/// Where a generated certificate lives, and whether this start created it.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    pub cert_file: PathBuf,
    pub created: bool,
}

impl Tls {
    /// Builds the listener's TLS configuration from `[tls]`, or `None` when
    /// neither certificate files nor `self_signed` are set.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Tls>> {
        let tls = &config.tls;
        let (files, self_signed) = match (&tls.cert_file, &tls.key_file, tls.self_signed) {
            (None, None, false) => {
                if tls.client_ca_file.is_some() {
                    bail!("tls.client_ca_file needs TLS: set tls.cert_file and tls.key_file, or tls.self_signed");
                }
                return Ok(None);
            }
            (Some(cert), Some(key), false) => (
                CertFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                },
                None,
            ),
            (None, None, true) => {
                let extra_ip = config
                    .listen
                    .parse::<SocketAddr>()
                    .ok()
                    .map(|a| a.ip())
                    .filter(|ip| !ip.is_unspecified());
                let (files, created) = ensure_self_signed(&config.data_dir.join("tls"), extra_ip)?;
                let cert_file = files.cert.clone();
                (files, Some(SelfSigned { cert_file, created }))
            }
            (_, _, true) => {
                bail!("tls.self_signed conflicts with tls.cert_file/tls.key_file: set one or the other")
            }
            (Some(_), None, _) => bail!("tls.cert_file is set but tls.key_file is not"),
            (None, Some(_), _) => bail!("tls.key_file is set but tls.cert_file is not"),
        };

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = Arc::new(ReloadingCert::load(files, provider.clone())?);
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("configuring TLS protocol versions")?;
        let client_ca = match &tls.client_ca_file {
            None => None,
            Some(ca_file) => Some(Arc::new(ReloadingClientCa::load(ca_file, provider)?)),
        };
        let builder = match &client_ca {
            None => builder.with_no_client_auth(),
            Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
        };
        let mut server_config = builder.with_cert_resolver(cert.clone());
        server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Tls {
            server_config: Arc::new(server_config),
            cert,
            client_ca,
            self_signed,
        }))
    }

    /// The certificate file being served.
    pub fn cert_file(&self) -> &Path {
        &self.cert.files.cert
    }

    pub fn self_signed(&self) -> Option<&SelfSigned> {
        self.self_signed.as_ref()
    }

    /// For a generated certificate, logs where it is and how to make docker,
    /// podman and skopeo trust it for `<hostname>:<port>`.
    pub fn log_trust_hints(&self, port: u16) {
        let Some(generated) = &self.self_signed else {
            return;
        };
        let cert = std::fs::canonicalize(&generated.cert_file)
            .unwrap_or_else(|_| generated.cert_file.clone());
        let cert = cert.display();
        let dir = cert_dir_of(&generated.cert_file);
        let host = format!(
            "{}:{port}",
            hostname().unwrap_or_else(|| "localhost".into())
        );
        tracing::info!(
            cert = %cert,
            created = generated.created,
            "serving a self-signed TLS certificate for localhost, 127.0.0.1, ::1 and this host's name"
        );
        tracing::info!(
            "trust it in docker: sudo mkdir -p /etc/docker/certs.d/{host} && sudo cp {cert} /etc/docker/certs.d/{host}/ca.crt"
        );
        tracing::info!(
            "trust it in podman/skopeo/buildah: sudo mkdir -p /etc/containers/certs.d/{host} && sudo cp {cert} /etc/containers/certs.d/{host}/ca.crt, or pass --cert-dir {dir} (skopeo copy: --src-cert-dir/--dest-cert-dir)"
        );
        tracing::info!("check it: curl --cacert {cert} https://{host}/v2/");
    }
}

impl Tls {
    /// A handshake acceptor with this configuration.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server_config.clone())
    }

    /// Starts checking the certificate files and the client CA bundle for
    /// changes; stops when the returned handle is aborted.
    pub fn watch_files(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(watch_cert_files(self.cert.clone(), self.client_ca.clone()))
    }
}

async fn watch_cert_files(cert: Arc<ReloadingCert>, client_ca: Option<Arc<ReloadingClientCa>>) {
    let mut tick = tokio::time::interval(RELOAD_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (cert, client_ca) = (cert.clone(), client_ca.clone());
        let checked = tokio::task::spawn_blocking(move || {
            cert.reload_if_changed();
            if let Some(ca) = client_ca {
                ca.reload_if_changed();
            }
        });
        if checked.await.is_err() {
            tracing::error!("the TLS certificate reload check panicked");
        }
    }
}

/// The verifier of `tls.client_ca_file`, rebuilt when the bundle changes,
/// like the certificate: a bundle that cannot be loaded is logged and the
/// previous one stays in use.
///
/// It names no CA in its certificate requests: the bundle may change under
/// a running server, and clients (Go's crypto/tls as in docker, curl,
/// rustls) send their certificate without such hints.
#[derive(Debug)]
struct ReloadingClientCa {
    file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<dyn ClientCertVerifier>>,
    seen: Mutex<Option<FileStamp>>,
}

impl ReloadingClientCa {
    fn load(file: &Path, provider: Arc<CryptoProvider>) -> anyhow::Result<ReloadingClientCa> {
        let seen = stamp(file);
        let verifier = client_verifier(file, &provider)?;
        Ok(ReloadingClientCa {
            file: file.to_path_buf(),
            provider,
            current: RwLock::new(verifier),
            seen: Mutex::new(seen),
        })
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Loads the bundle again if it changed since last seen. Returns
    /// whether a new bundle is now in use.
    fn reload_if_changed(&self) -> bool {
        let now = stamp(&self.file);
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == now {
                return false;
            }
            *seen = now;
        }
        match client_verifier(&self.file, &self.provider) {
            Ok(verifier) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = verifier;
                tracing::info!(client_ca = %self.file.display(), "TLS client CA bundle reloaded");
                true
            }
            Err(e) => {
                tracing::error!(
                    client_ca = %self.file.display(),
                    error = format!("{e:#}"),
                    "TLS client CA bundle changed but cannot be loaded; still verifying clients with the previous one"
                );
                false
            }
        }
    }
}

fn client_verifier(
    file: &Path,
    provider: &Arc<CryptoProvider>,
) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let roots = load_roots(file)?;
    WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .clear_root_hint_subjects()
        .build()
        .with_context(|| format!("client CA bundle {}", file.display()))
}

impl ClientCertVerifier for ReloadingClientCa {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

#[derive(Debug, Clone)]
struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
}

/// What identifies one version of a file: an editor's in-place write
/// changes the mtime, a rename-into-place (and Kubernetes' symlink swap)
/// changes the inode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// The served certificate, swapped in place when its files change.
#[derive(Debug)]
struct ReloadingCert {
    files: CertFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// Stamps of the files as last looked at (loaded or not), so a broken
    /// version is reported once rather than at every poll.
    seen: Mutex<(Option<FileStamp>, Option<FileStamp>)>,
}

impl ReloadingCert {
    fn load(files: CertFiles, provider: Arc<CryptoProvider>) -> anyhow::Result<ReloadingCert> {
        // Stamp before reading: a write landing in between shows up as a
        // change at the next poll instead of being missed.
        let seen = (stamp(&files.cert), stamp(&files.key));
        let key = load_certified_key(&files, &provider)?;
        Ok(ReloadingCert {
            files,
            provider,
            current: RwLock::new(Arc::new(key)),
            seen: Mutex::new(seen),
        })
    }

    /// Loads the files again if they changed since last seen. Returns
    /// whether a new certificate is now being served.
    fn reload_if_changed(&self) -> bool {
        let now = (stamp(&self.files.cert), stamp(&self.files.key));
        {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if *seen == now {
                return false;
            }
            *seen = now;
        }
        match load_certified_key(&self.files, &self.provider) {
            Ok(key) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::error!(
                    cert = %self.files.cert.display(),
                    key = %self.files.key.display(),
                    error = format!("{e:#}"),
                    "TLS certificate files changed but cannot be loaded; still serving the previous certificate"
                );
                false
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

fn load_certified_key(
    files: &CertFiles,
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let cert_name = files.cert.display();
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificate chain {cert_name}"))?;
    if chain.is_empty() {
        bail!("{cert_name} holds no PEM certificate");
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading private key {}", files.key.display()))?;
    CertifiedKey::from_der(chain, key, provider).with_context(|| {
        format!(
            "{cert_name} and {} do not form a usable certificate and key",
            files.key.display()
        )
    })
}

fn load_roots(ca_file: &Path) -> anyhow::Result<Arc<RootCertStore>> {
    let certs = CertificateDer::pem_file_iter(ca_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading client CA bundle {}", ca_file.display()))?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .with_context(|| format!("client CA bundle {}", ca_file.display()))?;
    }
    if roots.is_empty() {
        bail!(
            "client CA bundle {} holds no certificate",
            ca_file.display()
        );
    }
    Ok(Arc::new(roots))
}

/// The directory to pass to `--cert-dir`, absolute when it can be.
fn cert_dir_of(cert_file: &Path) -> String {
    let dir = cert_file.parent().unwrap_or(Path::new("."));
    std::fs::canonicalize(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn served(cert: &ReloadingCert) -> Vec<u8> {
        cert.current.read().unwrap().cert[0].to_vec()
    }

    fn der_of(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn broken_or_mismatched_files_keep_the_previous_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles {
            cert: dir.path().join("c.pem"),
            key: dir.path().join("k.pem"),
        };
        let (cert1, key1) = pair("one.test");
        std::fs::write(&files.cert, &cert1).unwrap();
        std::fs::write(&files.key, &key1).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = ReloadingCert::load(files.clone(), provider).unwrap();
        assert!(!cert.reload_if_changed(), "nothing changed yet");

        std::fs::write(&files.cert, "not a certificate").unwrap();
        assert!(!cert.reload_if_changed());
        assert_eq!(served(&cert), der_of(&cert1));

        // New certificate, old key: a mismatch, so still the first one.
        let (cert2, key2) = pair("two.test");
        std::fs::write(&files.cert, &cert2).unwrap();
        assert!(!cert.reload_if_changed());
        assert_eq!(served(&cert), der_of(&cert1));

        std::fs::write(&files.key, &key2).unwrap();
        assert!(cert.reload_if_changed());
        assert_eq!(served(&cert), der_of(&cert2));
    }

    #[test]
    fn configuration_mistakes_are_reported_at_startup() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        assert!(Tls::from_config(&config).unwrap().is_none());
        config.tls.client_ca_file = Some(dir.path().join("ca.pem"));
        assert!(Tls::from_config(&config).is_err(), "mTLS without TLS");
        config.tls.client_ca_file = None;
        config.tls.cert_file = Some(dir.path().join("c.pem"));
        assert!(Tls::from_config(&config).is_err(), "cert without key");
        config.tls.key_file = Some(dir.path().join("k.pem"));
        let missing = Tls::from_config(&config).err().unwrap();
        assert!(format!("{missing:#}").contains("c.pem"), "{missing:#}");
        config.tls.self_signed = true;
        assert!(Tls::from_config(&config).is_err(), "both sources");
    }
}
