//! DKIM signing of submitted mail (RFC 6376, with Ed25519 from RFC 8463), through mail-auth:
//! every message submitted from a local domain that has a key is signed before it is queued
//! or delivered, as Rspamd does in mailcow.

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mailstead_store::DkimKey;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// Headers signed (RFC 6376 §5.4.1's recommended set, present ones only). From is listed
/// twice so that a From header added later breaks the signature (oversigning).
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
];

/// Signs `message` (without our trace headers) and returns the `DKIM-Signature:` header line(s)
/// with the trailing CRLF.
pub fn sign(key: &DkimKey, message: &[u8]) -> Result<String, String> {
    let der = PrivateKeyDer::from_pem_slice(key.private_key.as_bytes())
        .map_err(|e| format!("the DKIM key of {} is unreadable: {e}", key.domain))?;
    let signature = if key.algorithm == "ed25519" {
        let k = Ed25519Key::from_pkcs8_der(der.secret_der()).map_err(|e| e.to_string())?;
        DkimSigner::from_key(k)
            .domain(key.domain.clone())
            .selector(key.selector.clone())
            .headers(SIGNED_HEADERS.iter().copied())
            .sign(message)
    } else {
        let k = RsaKey::<Sha256>::from_key_der(der).map_err(|e| e.to_string())?;
        DkimSigner::from_key(k)
            .domain(key.domain.clone())
            .selector(key.selector.clone())
            .headers(SIGNED_HEADERS.iter().copied())
            .sign(message)
    };
    signature
        .map(|s| s.to_header())
        .map_err(|e| format!("DKIM signing for {} failed: {e}", key.domain))
}
