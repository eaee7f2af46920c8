//! The self-signed certificate generated for trials (`tls.self_signed`):
//! for localhost, the loopback addresses, this host's name and the listen
//! address, written key first and certificate last.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::Context;

use super::{CertFiles, SELF_SIGNED_CERT, SELF_SIGNED_KEY, SELF_SIGNED_VALIDITY};

/// Returns the self-signed certificate files under `dir`, generating them
/// if either is missing. Returns whether they were generated now.
pub(super) fn ensure_self_signed(
    dir: &Path,
    extra_ip: Option<IpAddr>,
) -> anyhow::Result<(CertFiles, bool)> {
    let files = CertFiles {
        cert: dir.join(SELF_SIGNED_CERT),
        key: dir.join(SELF_SIGNED_KEY),
    };
    if files.cert.is_file() && files.key.is_file() {
        return Ok((files, false));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (cert_pem, key_pem) = generate_self_signed(extra_ip)?;
    // Key first, certificate last: the certificate's presence is what marks
    // the pair as complete for the next start.
    write_atomically(&files.key, key_pem.as_bytes(), 0o600)?;
    write_atomically(&files.cert, cert_pem.as_bytes(), 0o644)?;
    Ok((files, true))
}

fn generate_self_signed(extra_ip: Option<IpAddr>) -> anyhow::Result<(String, String)> {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
        KeyUsagePurpose, SanType,
    };
    let mut sans = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    let host = hostname();
    if let Some(host) = host.as_deref().filter(|h| *h != "localhost") {
        match host.to_string().try_into() {
            Ok(name) => sans.push(SanType::DnsName(name)),
            Err(e) => {
                tracing::warn!(host, error = %e, "hostname left out of the self-signed certificate")
            }
        }
    }
    if let Some(ip) = extra_ip.filter(|ip| !ip.is_loopback()) {
        sans.push(SanType::IpAddress(ip));
    }
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans;
    let mut subject = DistinguishedName::new();
    subject.push(
        DnType::CommonName,
        format!(
            "berth self-signed ({})",
            host.as_deref().unwrap_or("localhost")
        ),
    );
    params.distinguished_name = subject;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + SELF_SIGNED_VALIDITY;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().context("generating a key pair")?;
    let cert = params
        .self_signed(&key)
        .context("signing the self-signed certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write_atomically(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    crate::secret_file::write(path, data, mode, crate::secret_file::Replace::Overwrite)
        .with_context(|| format!("writing {}", path.display()))
}

/// This machine's host name (Linux), if it has one.
pub fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_ascii_lowercase())
        .find(|s| !s.is_empty())
}
