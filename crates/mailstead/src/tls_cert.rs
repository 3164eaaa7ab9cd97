//! The self-signed certificate `mailstead init` creates so that every TLS listener works from
//! the first start (ACME replaces it later), and the inspection `doctor` does of whatever
//! certificate is configured.

use anyhow::{Context, Result};
use std::path::Path;
use time::OffsetDateTime;

/// How long a generated certificate is valid.
const VALID_DAYS: i64 = 825;

/// Creates a self-signed certificate for `names` (the first is the subject) and writes the PEM
/// chain and key; the key file is readable by its owner only.
pub fn create_self_signed(names: &[String], cert_path: &Path, key_path: &Path) -> Result<()> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .context("the certificate names are not valid")?;
    let first = names.first().cloned().unwrap_or_default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, first);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "mailstead (self-signed)");
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(VALID_DAYS);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .context("cannot generate a key")?;
    let cert = params
        .self_signed(&key)
        .context("cannot sign the certificate")?;
    if let Some(dir) = cert_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::paths::write_atomic(key_path, key.serialize_pem().as_bytes(), 0o600)?;
    crate::paths::write_atomic(cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

/// What `doctor` needs to know about a certificate.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertInfo {
    pub names: Vec<String>,
    pub not_after: i64,
    pub self_signed: bool,
}

impl CertInfo {
    /// Whether the certificate is valid for `host` (exact name or `*.` wildcard, RFC 6125 §6.4.3).
    pub fn covers(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.names.iter().any(|n| {
            let n = n.to_ascii_lowercase();
            n == host
                || n.strip_prefix("*.").is_some_and(|base| {
                    host.split_once('.')
                        .is_some_and(|(label, rest)| !label.is_empty() && rest == base)
                })
        })
    }
}

/// Reads the first certificate of a PEM file.
pub fn inspect(cert_path: &Path) -> Result<CertInfo> {
    let pem =
        std::fs::read(cert_path).with_context(|| format!("cannot read {}", cert_path.display()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem)
        .map_err(|e| anyhow::anyhow!("{} is not a PEM certificate: {e}", cert_path.display()))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| anyhow::anyhow!("{} cannot be parsed: {e}", cert_path.display()))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_string());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_string());
            }
        }
    }
    Ok(CertInfo {
        names,
        not_after: cert.validity().not_after.timestamp(),
        self_signed: cert.subject() == cert.issuer(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_covers_its_names() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        create_self_signed(
            &["mail.example.test".into(), "*.example.org".into()],
            &c,
            &k,
        )
        .unwrap();
        let info = inspect(&c).unwrap();
        assert!(info.self_signed);
        assert!(info.covers("MAIL.example.test"));
        assert!(info.covers("imap.example.org"));
        assert!(!info.covers("a.b.example.org"));
        assert!(!info.covers("example.test"));
        assert!(info.not_after > OffsetDateTime::now_utc().unix_timestamp() + 800 * 86400);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
            0o600
        );
        mailstead_listener::TlsIdentity::load(&c, &k).unwrap();
    }
}
