//! HTTPS for the agent (rustls with the ring provider, TLS 1.2 and 1.3): the certificate and key
//! from `tls_cert`/`tls_key` (PEM), made here at the first start when neither exists — a
//! self-signed ECDSA P-256 certificate named `aergo-agent` (and the hostname, `localhost`,
//! 127.0.0.1), valid 2000–2100 so that a box whose clock is not set yet is not refused by a client
//! that checks dates. Horde pins it by its SHA-256 fingerprint, which telemetry carries in the body
//! the node key signs (`agent.tls_fingerprint`; see `aergo_telemetry::client`). A provider's own
//! certificate is given by provisioning (`[agent] tls_cert`, `tls_key`). Plain HTTP only with
//! `plain_http` (`provision.toml` `[agent] plain_http = true`).

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// What the agent serves HTTPS with.
pub struct Served {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// SHA-256 of the certificate's DER, hex.
    pub fingerprint: String,
}

/// Writes `bytes` to `path` atomically with `mode` (the directory made first).
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    aergo_primitives::file::write_atomic_mode(path, bytes, mode)
}

/// A new self-signed certificate and its key, PEM.
pub fn make_certificate(hostname: &str) -> anyhow::Result<(String, String)> {
    let mut names = vec!["aergo-agent".to_string(), "localhost".to_string()];
    if !hostname.is_empty() && !names.iter().any(|n| n == hostname) {
        names.push(hostname.to_string());
    }
    let mut params = rcgen::CertificateParams::new(names).context("certificate names")?;
    params.subject_alt_names.push(rcgen::SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("aergo-agent {hostname}"));
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("a key pair")?;
    let cert = params.self_signed(&key).context("signing the certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Loads the certificate and key, making both when neither exists; refuses one without the other.
pub fn load_or_make(cert_path: &Path, key_path: &Path, hostname: &str) -> anyhow::Result<Served> {
    match (cert_path.exists(), key_path.exists()) {
        (false, false) => {
            let (cert, key) = make_certificate(hostname)?;
            // The key first: a crash in between leaves a key without a certificate, refused below
            // with a message, never a certificate whose key is lost.
            write_atomically(key_path, key.as_bytes(), 0o600)
                .with_context(|| format!("writing {}", key_path.display()))?;
            write_atomically(cert_path, cert.as_bytes(), 0o644)
                .with_context(|| format!("writing {}", cert_path.display()))?;
            tracing::info!(cert = %cert_path.display(), "made a self-signed TLS certificate");
        }
        (true, false) => anyhow::bail!(
            "{} exists but its key {} does not: give both, or remove the certificate to have a new pair made",
            cert_path.display(),
            key_path.display()
        ),
        (false, true) => anyhow::bail!(
            "{} exists but its certificate {} does not: give both, or remove the key to have a new pair made",
            key_path.display(),
            cert_path.display()
        ),
        (true, true) => {}
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: not a PEM certificate", cert_path.display()))?;
    let first = certs.first().with_context(|| format!("{}: no certificate in it", cert_path.display()))?;
    let fingerprint = aergo_telemetry::client::fingerprint(first);
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("{}: not a PEM private key", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| format!("{} and {} do not make a pair", cert_path.display(), key_path.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Served { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)), fingerprint })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_made_once_and_a_half_pair_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls/cert.pem"), dir.path().join("tls/key.pem"));
        let first = load_or_make(&cert, &key, "box-1").unwrap();
        let again = load_or_make(&cert, &key, "box-1").unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        assert_eq!(first.fingerprint.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::remove_file(&key).unwrap();
        let e = load_or_make(&cert, &key, "box-1").err().unwrap().to_string();
        assert!(e.contains("key.pem") && e.contains("does not"), "{e}");
        std::fs::write(&key, "not a key").unwrap();
        assert!(load_or_make(&cert, &key, "box-1").is_err());
    }
}
