//! DANE for SMTP (RFC 7672): authenticating an MX host's TLS certificate
//! against its DNSSEC-validated TLSA records (RFC 6698, updated by RFC 7671;
//! mnemonics from RFC 7218).
//!
//! The caller looks up `_25._tcp.<mx-host>` TLSA records, makes sure the
//! answer was DNSSEC-secure, and hands the records together with the
//! reference names (RFC 7672 §3.2.2) to [`DaneVerifier`], which plugs into a
//! rustls `ClientConfig`. [`verify_chain`] is the same check without rustls.
//!
//! What the caller still decides: when [`usable`] returns no records, RFC
//! 7672 has the client still insist on TLS but not authenticate the server
//! (§3.1.3 says so for an RRset of PKIX-TA/PKIX-EE records). That is a
//! choice of verifier made before the handshake, so [`verify_chain`] and
//! [`DaneVerifier`] themselves fail closed with
//! [`DaneError::NoUsableRecords`].

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, Der, ServerName, TrustAnchor, UnixTime};
use sha2::{Digest, Sha256, Sha512};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Certificate usage PKIX-TA(0) (RFC 6698 §2.1.1, acronym from RFC 7218 §2.1).
pub const USAGE_PKIX_TA: u8 = 0;
/// Certificate usage PKIX-EE(1).
pub const USAGE_PKIX_EE: u8 = 1;
/// Certificate usage DANE-TA(2).
pub const USAGE_DANE_TA: u8 = 2;
/// Certificate usage DANE-EE(3).
pub const USAGE_DANE_EE: u8 = 3;
/// Selector Cert(0): the whole DER certificate (RFC 6698 §2.1.2).
pub const SELECTOR_CERT: u8 = 0;
/// Selector SPKI(1): the DER SubjectPublicKeyInfo.
pub const SELECTOR_SPKI: u8 = 1;
/// Matching type Full(0): exact match (RFC 6698 §2.1.3).
pub const MATCHING_FULL: u8 = 0;
/// Matching type SHA2-256(1).
pub const MATCHING_SHA2_256: u8 = 1;
/// Matching type SHA2-512(2).
pub const MATCHING_SHA2_512: u8 = 2;

/// One TLSA record (RFC 6698 §2.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tlsa {
    /// Certificate usage (RFC 6698 §2.1.1).
    pub usage: u8,
    /// Selector (RFC 6698 §2.1.2).
    pub selector: u8,
    /// Matching type (RFC 6698 §2.1.3).
    pub matching: u8,
    /// Certificate association data (RFC 6698 §2.1.4).
    pub data: Vec<u8>,
}

impl Tlsa {
    /// Parses the presentation form of a TLSA record's data, as in a zone
    /// file or `dig` output: `"3 1 1 <hex>"`.
    ///
    /// The three numeric fields are decimal octets; the RFC 7218 acronyms
    /// (`DANE-EE SPKI SHA2-256 ...`) are accepted too, case-insensitively.
    /// The hex data may be split by white space (RFC 6698 §2.2), and the
    /// parentheses a zone file uses to continue a record across lines are
    /// ignored.
    pub fn parse_presentation(s: &str) -> Result<Tlsa, DaneError> {
        // RFC 1035 §5.1: parentheses only group lines; they carry no data.
        let cleaned = s.replace(['(', ')'], " ");
        let mut fields = cleaned.split_ascii_whitespace();
        let usage = parse_field(fields.next(), "certificate usage", USAGE_NAMES)?;
        let selector = parse_field(fields.next(), "selector", SELECTOR_NAMES)?;
        let matching = parse_field(fields.next(), "matching type", MATCHING_NAMES)?;
        // RFC 6698 §2.2: white space is allowed within the hexadecimal
        // string, so all remaining fields together are the one value.
        let hex: String = fields.collect();
        if hex.is_empty() {
            return Err(DaneError::InvalidTlsa(
                "missing certificate association data".into(),
            ));
        }
        let data = decode_hex(&hex)?;
        Ok(Tlsa {
            usage,
            selector,
            matching,
            data,
        })
    }
}

impl fmt::Display for Tlsa {
    /// The presentation form, `"3 1 1 <lowercase hex>"`, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} ", self.usage, self.selector, self.matching)?;
        for b in &self.data {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// RFC 7218 §2.1-§2.3 acronyms for the three numeric fields.
const USAGE_NAMES: &[(&str, u8)] = &[
    ("PKIX-TA", USAGE_PKIX_TA),
    ("PKIX-EE", USAGE_PKIX_EE),
    ("DANE-TA", USAGE_DANE_TA),
    ("DANE-EE", USAGE_DANE_EE),
    ("PrivCert", 255),
];
const SELECTOR_NAMES: &[(&str, u8)] = &[
    ("Cert", SELECTOR_CERT),
    ("SPKI", SELECTOR_SPKI),
    ("PrivSel", 255),
];
const MATCHING_NAMES: &[(&str, u8)] = &[
    ("Full", MATCHING_FULL),
    ("SHA2-256", MATCHING_SHA2_256),
    ("SHA2-512", MATCHING_SHA2_512),
    ("PrivMatch", 255),
];

fn parse_field(token: Option<&str>, what: &str, names: &[(&str, u8)]) -> Result<u8, DaneError> {
    let token = token.ok_or_else(|| DaneError::InvalidTlsa(format!("missing {what}")))?;
    // RFC 6698 §2.2: each of these fields is an 8-bit unsigned integer in
    // decimal; anything above 255 is an error, not a wrap-around.
    if token.bytes().all(|b| b.is_ascii_digit()) {
        return token
            .parse::<u8>()
            .map_err(|_| DaneError::InvalidTlsa(format!("{what} {token} is out of range")));
    }
    names
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(token))
        .map(|&(_, value)| value)
        .ok_or_else(|| DaneError::InvalidTlsa(format!("{what} {token:?} is not a number")))
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, DaneError> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = hex.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(DaneError::InvalidTlsa(
            "certificate association data has an odd number of hex digits".into(),
        ));
    }
    bytes
        .chunks_exact(2)
        .map(|pair| match (nibble(pair[0]), nibble(pair[1])) {
            (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
            _ => Err(DaneError::InvalidTlsa(format!(
                "certificate association data is not hex: {:?}",
                String::from_utf8_lossy(pair)
            ))),
        })
        .collect()
}

/// Which TLSA records apply to SMTP.
///
/// Kept: usages DANE-TA(2) and DANE-EE(3), selectors Cert(0) and SPKI(1),
/// matching types Full(0), SHA2-256(1) and SHA2-512(2), with data of the
/// length the matching type implies. Everything else is "unusable".
pub fn usable(records: &[Tlsa]) -> Vec<Tlsa> {
    records.iter().filter(|r| is_usable(r)).cloned().collect()
}

fn is_usable(r: &Tlsa) -> bool {
    // RFC 7672 §3.1.3: PKIX-TA(0) and PKIX-EE(1) depend on a set of public
    // CAs that SMTP clients do not share with servers, so they are treated
    // as unusable; values not defined by RFC 6698 §2.1.1 are unusable too.
    let usage = matches!(r.usage, USAGE_DANE_TA | USAGE_DANE_EE);
    // RFC 6698 §2.1.2 defines only Cert(0) and SPKI(1).
    let selector = matches!(r.selector, SELECTOR_CERT | SELECTOR_SPKI);
    // RFC 6698 §2.1.3 defines Full(0), SHA2-256(1), SHA2-512(2). A digest of
    // the wrong length can never match anything, so the record is malformed
    // rather than a mismatch and is set aside like an unknown type.
    let data = match r.matching {
        MATCHING_FULL => !r.data.is_empty(),
        MATCHING_SHA2_256 => r.data.len() == 32,
        MATCHING_SHA2_512 => r.data.len() == 64,
        _ => false,
    };
    usage && selector && data
}

/// RFC 7671 §9 (digest algorithm agility): among records of the same usage
/// and selector, a key that matches only a weaker digest than another
/// record published for it is not accepted, so that a compromised weak
/// digest cannot be used to get around a stronger one. Full(0) records are
/// not digests and always stay.
fn apply_digest_agility(records: Vec<Tlsa>) -> Vec<Tlsa> {
    fn strength(matching: u8) -> u8 {
        match matching {
            MATCHING_SHA2_512 => 2,
            MATCHING_SHA2_256 => 1,
            _ => 0,
        }
    }
    let strongest = |usage: u8, selector: u8| {
        records
            .iter()
            .filter(|r| r.usage == usage && r.selector == selector)
            .map(|r| strength(r.matching))
            .max()
            .unwrap_or(0)
    };
    records
        .iter()
        .filter(|r| {
            r.matching == MATCHING_FULL || strength(r.matching) >= strongest(r.usage, r.selector)
        })
        .cloned()
        .collect()
}

/// Why a server's certificate was not accepted. The messages are meant for
/// logs and delivery status notifications.
#[derive(Debug, thiserror::Error)]
pub enum DaneError {
    /// A TLSA record in presentation form could not be parsed.
    #[error("invalid TLSA record: {0}")]
    InvalidTlsa(String),
    /// None of the TLSA records is usable for SMTP.
    #[error("no usable TLSA records for {host}")]
    NoUsableRecords {
        /// The MX host.
        host: String,
    },
    /// The server sent no certificate.
    #[error("{host} presented no certificate")]
    NoCertificate {
        /// The MX host.
        host: String,
    },
    /// The server's certificate could not be parsed.
    #[error("the certificate of {host} cannot be parsed: {reason}")]
    BadCertificate {
        /// The MX host.
        host: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No usable TLSA record matches the leaf (DANE-EE) or any certificate
    /// of the chain (DANE-TA).
    #[error("no TLSA record matches the certificate of {host}")]
    NoMatch {
        /// The MX host.
        host: String,
    },
    /// A DANE-TA record matched, but the chain from the leaf to that trust
    /// anchor does not validate.
    #[error(
        "the certificate chain of {host} is not valid under its DANE-TA trust anchor: {reason}"
    )]
    InvalidChain {
        /// The MX host.
        host: String,
        /// Why path validation failed.
        reason: String,
    },
    /// The chain validates under a DANE-TA trust anchor, but the leaf
    /// names none of the reference identifiers.
    #[error("the certificate of {host} is not valid for {expected} (it names {presented})")]
    NameMismatch {
        /// The MX host.
        host: String,
        /// The reference identifiers, comma-separated.
        expected: String,
        /// The names in the certificate, comma-separated.
        presented: String,
    },
}

/// Verifies a server's certificate chain (leaf first, as sent in the TLS
/// Certificate message) against TLSA records, at time `now`.
///
/// `records` may be the whole TLSA RRset; unusable records are ignored (see
/// [`usable`]). `reference_names` are the names the leaf must carry under
/// DANE-TA (RFC 7672 §3.2.2): the TLSA base domain (the MX host name, after
/// any secure CNAME expansion) and the MX host name as it was found, which
/// is also the name sent in SNI. The first one names the host in errors.
pub fn verify_chain(
    chain: &[CertificateDer<'_>],
    records: &[Tlsa],
    reference_names: &[String],
    now: UnixTime,
) -> Result<(), DaneError> {
    let host = reference_names
        .first()
        .map_or_else(|| "the server".to_owned(), Clone::clone);
    verify(
        chain,
        records,
        reference_names,
        now,
        &signature_algorithms(),
        &host,
    )
}

/// The aws-lc-rs provider's algorithms, used both for certificate
/// signatures in DANE-TA chains and for TLS handshake signatures.
fn signature_algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms
}

/// A chain certificate as parsed by webpki, which is also the parser rustls
/// uses to verify the handshake signature with the leaf's key: matching the
/// SPKI webpki sees means the key that was matched is the key that signs.
struct Parsed<'a> {
    der: &'a [u8],
    cert: Option<webpki::EndEntityCert<'a>>,
}

impl Parsed<'_> {
    fn spki(&self) -> Option<Vec<u8>> {
        self.cert
            .as_ref()
            .map(|c| c.subject_public_key_info().as_ref().to_vec())
    }
}

fn verify(
    chain: &[CertificateDer<'_>],
    records: &[Tlsa],
    reference_names: &[String],
    now: UnixTime,
    algs: &WebPkiSupportedAlgorithms,
    host: &str,
) -> Result<(), DaneError> {
    let records = apply_digest_agility(usable(records));
    if records.is_empty() {
        return Err(DaneError::NoUsableRecords { host: host.into() });
    }
    let parsed: Vec<Parsed<'_>> = chain
        .iter()
        .map(|der| Parsed {
            der: der.as_ref(),
            cert: webpki::EndEntityCert::try_from(der).ok(),
        })
        .collect();
    let Some(leaf) = parsed.first() else {
        return Err(DaneError::NoCertificate { host: host.into() });
    };

    // RFC 7672 §3.1.1: a DANE-EE(3) record authenticates the leaf alone.
    // The server's name is not checked (§3.2.1) and neither are its
    // validity dates: the TLSA record is the binding, and the domain owner
    // can withdraw it at any time, so dates would only add failures.
    let ee_match = records
        .iter()
        .filter(|r| r.usage == USAGE_DANE_EE)
        .any(|r| association_matches(r, leaf));
    if ee_match {
        return Ok(());
    }

    let ta_records: Vec<&Tlsa> = records
        .iter()
        .filter(|r| r.usage == USAGE_DANE_TA)
        .collect();
    let anchors = trust_anchors(&ta_records, &parsed);
    // An unparseable leaf can match neither SPKI records nor a chain; say
    // so rather than blaming the records.
    let Some(ee) = leaf.cert.as_ref() else {
        return Err(DaneError::BadCertificate {
            host: host.into(),
            reason: "not a valid X.509 certificate".into(),
        });
    };
    if anchors.is_empty() {
        return Err(DaneError::NoMatch { host: host.into() });
    }

    // RFC 7672 §3.1.2: with DANE-TA(2) the trust anchor stands in for a
    // root CA, so the path from the leaf up to it is validated as in PKIX:
    // signatures, validity dates of the leaf and any intermediates, CA basic
    // constraints, and the serverAuth extended key usage when an EKU is
    // present. As in RFC 5280 §6.1.1(d), the anchor is only a name and a key,
    // so its own validity dates are not checked.
    let intermediates = chain.get(1..).unwrap_or_default();
    ee.verify_for_usage(
        algs.all,
        &anchors,
        intermediates,
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| DaneError::InvalidChain {
        host: host.into(),
        reason: describe_webpki_error(&e),
    })?;

    // RFC 7672 §3.2.2/§3.2.3: under DANE-TA the leaf must also carry one of
    // the reference identifiers, since the anchor may issue certificates
    // for other hosts too.
    let presented = presented_names(leaf.der).map_err(|reason| DaneError::BadCertificate {
        host: host.into(),
        reason,
    })?;
    let ok = presented
        .iter()
        .any(|p| reference_names.iter().any(|r| name_matches(p, r)));
    if ok {
        Ok(())
    } else {
        Err(DaneError::NameMismatch {
            host: host.into(),
            expected: if reference_names.is_empty() {
                "any name (none was given)".into()
            } else {
                reference_names.join(", ")
            },
            presented: if presented.is_empty() {
                "no DNS names".into()
            } else {
                presented.join(", ")
            },
        })
    }
}

/// Whether `record` (whatever its usage) matches certificate `cert`
/// (RFC 6698 §2.1.2 selects the data, §2.1.3 says how to compare it).
fn association_matches(record: &Tlsa, cert: &Parsed<'_>) -> bool {
    let spki;
    let selected: &[u8] = match record.selector {
        SELECTOR_CERT => cert.der,
        SELECTOR_SPKI => match cert.spki() {
            Some(s) => {
                spki = s;
                &spki
            }
            None => return false,
        },
        _ => return false,
    };
    match record.matching {
        MATCHING_FULL => selected == record.data.as_slice(),
        MATCHING_SHA2_256 => Sha256::digest(selected).as_slice() == record.data.as_slice(),
        MATCHING_SHA2_512 => Sha512::digest(selected).as_slice() == record.data.as_slice(),
        _ => false,
    }
}

/// The trust anchors that DANE-TA(2) records designate.
fn trust_anchors(ta_records: &[&Tlsa], chain: &[Parsed<'_>]) -> Vec<TrustAnchor<'static>> {
    let mut anchors = Vec::new();
    // RFC 7672 §3.1.2: the server is expected to include the trust anchor
    // in its chain, so any chain certificate matching a record is one. The
    // leaf counts too: it anchors itself only if it is self-issued, which
    // then leaves the name check as the only difference from DANE-EE.
    for cert in chain {
        if ta_records.iter().any(|r| association_matches(r, cert)) {
            let der = CertificateDer::from(cert.der);
            if let Ok(anchor) = webpki::anchor_from_trusted_cert(&der) {
                anchors.push(anchor.to_owned());
            }
        }
    }
    // RFC 7672 §3.1.2: a Full(0) record carries the anchor itself, so the
    // server may leave it out of its chain.
    for record in ta_records.iter().filter(|r| r.matching == MATCHING_FULL) {
        match record.selector {
            SELECTOR_CERT => {
                let der = CertificateDer::from(record.data.as_slice());
                if let Ok(anchor) = webpki::anchor_from_trusted_cert(&der) {
                    anchors.push(anchor.to_owned());
                }
            }
            SELECTOR_SPKI => {
                // A bare key has no subject name. webpki finds an anchor
                // by the issuer name of the certificate it signed, so offer
                // the key under each issuer name in the chain; only a
                // certificate whose signature the key verifies is accepted.
                let Some(spki) = sequence_contents(&record.data) else {
                    continue;
                };
                for issuer in chain
                    .iter()
                    .filter_map(|c| c.cert.as_ref())
                    .map(|c| c.issuer())
                {
                    anchors.push(TrustAnchor {
                        subject: Der::from(issuer.to_vec()),
                        subject_public_key_info: Der::from(spki.to_vec()),
                        name_constraints: None,
                    });
                }
            }
            _ => {}
        }
    }
    anchors
}

/// The contents of a DER SEQUENCE (without its tag and length), which is the
/// form webpki keeps a trust anchor's SubjectPublicKeyInfo in.
fn sequence_contents(der: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = der.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, body) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (len_bytes, body) = rest.split_at_checked(n)?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        (len, body)
    };
    (len == body.len()).then_some(body)
}

/// The leaf's presented identifiers (RFC 7672 §3.2.3): its subjectAltName
/// DNS names, or, only when it has none, its subject common names.
fn presented_names(der: &[u8]) -> Result<Vec<String>, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    match cert.subject_alternative_name() {
        Ok(Some(san)) => {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(dns) = name {
                    names.push((*dns).to_owned());
                }
            }
        }
        Ok(None) => {}
        // A malformed or duplicated SAN extension: offer no names at all
        // rather than falling back to a CN the issuer may not have meant.
        Err(_) => return Ok(names),
    }
    // RFC 7672 §3.2.3: the CN-ID is only looked at when there are no
    // DNS-IDs, for older certificates that carry their name only there.
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_owned());
            }
        }
    }
    Ok(names)
}

/// Whether presented identifier `presented` matches reference identifier
/// `reference` (RFC 7672 §3.2.3). Comparison is ASCII case-insensitive
/// (DNS names, RFC 4343) and ignores a trailing root dot; both sides are
/// expected in A-label form.
fn name_matches(presented: &str, reference: &str) -> bool {
    let canonical = |s: &str| s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    let (p, r) = (canonical(presented), canonical(reference));
    if r.is_empty() || r.contains('*') || r.split('.').any(str::is_empty) {
        return false;
    }
    match p.strip_prefix("*.") {
        // RFC 7672 §3.2.3: a wildcard must be the whole first label and
        // matches exactly one non-empty label; the rest match verbatim.
        // Local choices: partial-label wildcards ("mx*.example.com") and
        // multi-label matches are not accepted, and the wildcard needs at
        // least two labels after it so "*.com" cannot cover a whole TLD.
        Some(rest) => {
            let labels_ok = !rest.contains('*')
                && rest.split('.').count() >= 2
                && !rest.split('.').any(str::is_empty);
            labels_ok
                && r.split_once('.')
                    .is_some_and(|(first, r_rest)| !first.is_empty() && r_rest == rest)
        }
        None => !p.contains('*') && !p.is_empty() && p == r,
    }
}

fn describe_webpki_error(e: &webpki::Error) -> String {
    match e {
        webpki::Error::CertExpired { .. } => "a certificate has expired".into(),
        webpki::Error::CertNotValidYet { .. } => "a certificate is not valid yet".into(),
        webpki::Error::UnknownIssuer => "no path to the trust anchor".into(),
        webpki::Error::InvalidSignatureForPublicKey => "a signature does not verify".into(),
        webpki::Error::CaUsedAsEndEntity => "the server certificate is a CA certificate".into(),
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            "the server certificate is not for TLS server authentication".into()
        }
        other => format!("{other:?}"),
    }
}

/// A rustls server certificate verifier for DANE-authenticated SMTP.
///
/// Use it only when the TLSA RRset was DNSSEC-secure and [`usable`] leaves
/// at least one record; otherwise the handshake fails.
#[derive(Debug)]
pub struct DaneVerifier {
    records: Vec<Tlsa>,
    reference_names: Vec<String>,
    algs: WebPkiSupportedAlgorithms,
}

impl DaneVerifier {
    /// A verifier for one MX host. `reference_names` as for
    /// [`verify_chain`]; the SNI name rustls is given is not added to them.
    pub fn new(records: Vec<Tlsa>, reference_names: Vec<String>) -> Arc<Self> {
        Arc::new(Self {
            records,
            reference_names,
            algs: signature_algorithms(),
        })
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain: Vec<CertificateDer<'_>> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| CertificateDer::from(c.as_ref()))
            .collect();
        let host = self
            .reference_names
            .first()
            .map_or_else(|| server_name.to_str().into_owned(), Clone::clone);
        verify(
            &chain,
            &self.records,
            &self.reference_names,
            now,
            &self.algs,
            &host,
        )
        .map(|()| ServerCertVerified::assertion())
        // Carried as the error's source so that the caller can downcast it
        // back to a DaneError for the DSN text.
        .map_err(|e| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The TLSA match above only binds a key to the host; this signature
        // proves the server holds that key, so it is checked exactly as
        // rustls' own verifier would, with the aws-lc-rs algorithms.
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        PublicKeyData, date_time_ymd,
    };
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    const MX: &str = "mx.example.test";

    fn refs(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn sha256(b: &[u8]) -> Vec<u8> {
        Sha256::digest(b).to_vec()
    }

    fn sha512(b: &[u8]) -> Vec<u8> {
        Sha512::digest(b).to_vec()
    }

    fn tlsa(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> Tlsa {
        Tlsa {
            usage,
            selector,
            matching,
            data,
        }
    }

    /// A certificate with its key.
    struct Cert {
        der: CertificateDer<'static>,
        key: KeyPair,
    }

    impl Cert {
        fn spki(&self) -> Vec<u8> {
            self.key.subject_public_key_info()
        }
        fn der(&self) -> Vec<u8> {
            self.der.as_ref().to_vec()
        }
    }

    fn leaf_params(names: &[&str], expired: bool) -> CertificateParams {
        let mut params = CertificateParams::new(refs(names)).unwrap();
        if expired {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        params
    }

    fn self_signed(names: &[&str], expired: bool) -> Cert {
        let key = KeyPair::generate().unwrap();
        let der = leaf_params(names, expired)
            .self_signed(&key)
            .unwrap()
            .der()
            .clone();
        Cert { der, key }
    }

    fn ca_params(cn: &str) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
    }

    /// A self-signed CA, and the issuer handle to sign with it.
    fn make_ca(cn: &str, expired: bool) -> (Cert, Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let mut params = ca_params(cn);
        if expired {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        let der = params.self_signed(&key).unwrap().der().clone();
        let issuer_key = KeyPair::from_pem(&key.serialize_pem()).unwrap();
        (Cert { der, key }, Issuer::new(params, issuer_key))
    }

    fn signed(params: CertificateParams, issuer: &Issuer<'_, KeyPair>) -> Cert {
        let key = KeyPair::generate().unwrap();
        let der = params.signed_by(&key, issuer).unwrap().der().clone();
        Cert { der, key }
    }

    fn check(chain: &[&Cert], records: &[Tlsa], names: &[&str]) -> Result<(), DaneError> {
        let chain: Vec<CertificateDer<'_>> = chain.iter().map(|c| c.der.clone()).collect();
        verify_chain(&chain, records, &refs(names), UnixTime::now())
    }

    // ---- presentation format -------------------------------------------

    const HASH: &str = "2bb09a3c67e5f4ef8a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071";

    #[test]
    fn parses_zone_file_record() {
        let r = Tlsa::parse_presentation(&format!("3 1 1 {HASH}")).unwrap();
        assert_eq!((r.usage, r.selector, r.matching), (3, 1, 1));
        assert_eq!(r.data.len(), 32);
        assert_eq!(r.data[..4], [0x2b, 0xb0, 0x9a, 0x3c]);
        assert_eq!(r.to_string(), format!("3 1 1 {HASH}"));
    }

    #[test]
    fn parses_spaced_uppercase_and_multiline_hex() {
        let upper = HASH.to_ascii_uppercase();
        let spaced = format!(
            "  2\t0 1 {} {}\n {}  ",
            &upper[..16],
            &upper[16..40],
            &upper[40..]
        );
        let r = Tlsa::parse_presentation(&spaced).unwrap();
        assert_eq!((r.usage, r.selector, r.matching), (2, 0, 1));
        assert_eq!(r.to_string(), format!("2 0 1 {HASH}"));
        let paren = format!("3 1 1 ( {}\n {} )", &HASH[..32], &HASH[32..]);
        assert_eq!(
            Tlsa::parse_presentation(&paren).unwrap(),
            Tlsa::parse_presentation(&format!("3 1 1 {HASH}")).unwrap()
        );
    }

    #[test]
    fn parses_rfc7218_acronyms() {
        let r = Tlsa::parse_presentation(&format!("DANE-EE spki SHA2-256 {HASH}")).unwrap();
        assert_eq!((r.usage, r.selector, r.matching), (3, 1, 1));
        let r = Tlsa::parse_presentation("dane-ta Cert Full 3082").unwrap();
        assert_eq!((r.usage, r.selector, r.matching), (2, 0, 0));
        assert_eq!(r.data, [0x30, 0x82]);
    }

    #[test]
    fn rejects_bad_presentation() {
        for bad in [
            "",
            "3",
            "3 1",
            "3 1 1",
            "3 1 1   ",
            "3 1 1 abc",
            "3 1 1 zz",
            "3 1 1 0x2b",
            "256 1 1 2b",
            "3 1 -1 2b",
            "x 1 1 2b",
            "3 1 SHA1 2b",
            "3 1 1 2b\u{e9}",
        ] {
            let err = Tlsa::parse_presentation(bad).unwrap_err();
            assert!(
                matches!(err, DaneError::InvalidTlsa(_)),
                "{bad:?} gave {err:?}"
            );
            assert!(err.to_string().starts_with("invalid TLSA record: "));
        }
    }

    // ---- usable records and digest agility ------------------------------

    #[test]
    fn usable_drops_pkix_and_unknown_values() {
        let h = vec![0u8; 32];
        let records = vec![
            tlsa(0, 0, 1, h.clone()),
            tlsa(1, 1, 1, h.clone()),
            tlsa(2, 0, 1, h.clone()),
            tlsa(3, 1, 1, h.clone()),
            tlsa(4, 1, 1, h.clone()),
            tlsa(255, 1, 1, h.clone()),
            tlsa(3, 2, 1, h.clone()),
            tlsa(3, 255, 1, h.clone()),
            tlsa(3, 1, 3, h.clone()),
            tlsa(3, 1, 255, h.clone()),
            // Malformed data for the matching type.
            tlsa(3, 1, 1, vec![0u8; 31]),
            tlsa(3, 1, 2, vec![0u8; 32]),
            tlsa(3, 1, 0, Vec::new()),
            tlsa(3, 0, 2, vec![0u8; 64]),
            tlsa(2, 1, 0, vec![0x30, 0x00]),
        ];
        let kept = usable(&records);
        assert_eq!(
            kept,
            vec![
                tlsa(2, 0, 1, h.clone()),
                tlsa(3, 1, 1, h),
                tlsa(3, 0, 2, vec![0u8; 64]),
                tlsa(2, 1, 0, vec![0x30, 0x00]),
            ]
        );
    }

    #[test]
    fn no_usable_records_fails_closed() {
        let leaf = self_signed(&[MX], false);
        let err = check(&[&leaf], &[tlsa(1, 1, 1, sha256(&leaf.spki()))], &[MX]).unwrap_err();
        assert!(matches!(err, DaneError::NoUsableRecords { .. }));
        assert_eq!(
            err.to_string(),
            "no usable TLSA records for mx.example.test"
        );
        let err = verify_chain(
            &[],
            &[tlsa(3, 1, 1, sha256(&leaf.spki()))],
            &refs(&[MX]),
            UnixTime::now(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "mx.example.test presented no certificate");
    }

    // ---- DANE-EE ---------------------------------------------------------

    #[test]
    fn dane_ee_matches_every_selector_and_matching_type() {
        let leaf = self_signed(&[MX], false);
        for record in [
            tlsa(3, 1, 1, sha256(&leaf.spki())),
            tlsa(3, 0, 1, sha256(&leaf.der())),
            tlsa(3, 1, 2, sha512(&leaf.spki())),
            tlsa(3, 0, 2, sha512(&leaf.der())),
            tlsa(3, 0, 0, leaf.der()),
            tlsa(3, 1, 0, leaf.spki()),
        ] {
            check(&[&leaf], std::slice::from_ref(&record), &[MX])
                .unwrap_or_else(|e| panic!("{record}: {e}"));
        }
    }

    #[test]
    fn dane_ee_from_presentation_form() {
        let leaf = self_signed(&[MX], false);
        let hex: String = sha256(&leaf.spki())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        let record =
            Tlsa::parse_presentation(&format!("3 1 1 {} {}", &hex[..20], &hex[20..])).unwrap();
        check(&[&leaf], &[record], &[MX]).unwrap();
    }

    #[test]
    fn dane_ee_rejects_another_key() {
        let leaf = self_signed(&[MX], false);
        let other = self_signed(&[MX], false);
        for record in [
            tlsa(3, 1, 1, sha256(&other.spki())),
            tlsa(3, 0, 1, sha256(&other.der())),
            tlsa(3, 0, 0, other.der()),
        ] {
            let err = check(&[&leaf], &[record], &[MX]).unwrap_err();
            assert!(matches!(err, DaneError::NoMatch { .. }), "{err:?}");
            assert_eq!(
                err.to_string(),
                "no TLSA record matches the certificate of mx.example.test"
            );
        }
    }

    #[test]
    fn dane_ee_ignores_expiry_names_and_rest_of_chain() {
        let expired = self_signed(&["other.example.test"], true);
        let junk = self_signed(&["junk.example.test"], false);
        check(
            &[&expired, &junk],
            &[tlsa(3, 1, 1, sha256(&expired.spki()))],
            &[MX],
        )
        .unwrap();
        // The key must be the leaf's: matching a later certificate under
        // DANE-EE is not enough.
        let err = check(
            &[&expired, &junk],
            &[tlsa(3, 1, 1, sha256(&junk.spki()))],
            &[MX],
        )
        .unwrap_err();
        assert!(matches!(err, DaneError::NoMatch { .. }));
    }

    #[test]
    fn any_matching_record_in_the_rrset_suffices() {
        let leaf = self_signed(&[MX], false);
        let other = self_signed(&[MX], false);
        let records = [
            tlsa(3, 1, 1, sha256(&other.spki())),
            tlsa(0, 1, 1, sha256(&leaf.spki())), // unusable, ignored
            tlsa(3, 0, 1, sha256(&leaf.der())),
        ];
        check(&[&leaf], &records, &[MX]).unwrap();
    }

    #[test]
    fn digest_agility_prefers_the_strongest_digest() {
        let leaf = self_signed(&[MX], false);
        let other = self_signed(&[MX], false);
        // RFC 7671 §9: only the SHA-256 record matches, but a SHA-512
        // record is published for the same usage and selector.
        let err = check(
            &[&leaf],
            &[
                tlsa(3, 1, 1, sha256(&leaf.spki())),
                tlsa(3, 1, 2, sha512(&other.spki())),
            ],
            &[MX],
        )
        .unwrap_err();
        assert!(matches!(err, DaneError::NoMatch { .. }));
        check(
            &[&leaf],
            &[
                tlsa(3, 1, 1, sha256(&other.spki())),
                tlsa(3, 1, 2, sha512(&leaf.spki())),
            ],
            &[MX],
        )
        .unwrap();
        // Full(0) is not a digest and stays usable.
        check(
            &[&leaf],
            &[
                tlsa(3, 1, 0, leaf.spki()),
                tlsa(3, 1, 2, sha512(&other.spki())),
            ],
            &[MX],
        )
        .unwrap();
        // Different selectors are independent groups.
        check(
            &[&leaf],
            &[
                tlsa(3, 0, 1, sha256(&leaf.der())),
                tlsa(3, 1, 2, sha512(&other.spki())),
            ],
            &[MX],
        )
        .unwrap();
    }

    // ---- DANE-TA ---------------------------------------------------------

    #[test]
    fn dane_ta_matches_ca_in_chain() {
        let (ca, issuer) = make_ca("Test CA", false);
        let leaf = signed(leaf_params(&[MX], false), &issuer);
        for record in [
            tlsa(2, 0, 1, sha256(&ca.der())),
            tlsa(2, 1, 1, sha256(&ca.spki())),
            tlsa(2, 1, 2, sha512(&ca.spki())),
            tlsa(2, 0, 0, ca.der()),
            tlsa(2, 1, 0, ca.spki()),
        ] {
            check(&[&leaf, &ca], std::slice::from_ref(&record), &[MX])
                .unwrap_or_else(|e| panic!("{record}: {e}"));
        }
    }

    #[test]
    fn dane_ta_digest_needs_the_ca_in_the_chain() {
        let (ca, issuer) = make_ca("Test CA", false);
        let leaf = signed(leaf_params(&[MX], false), &issuer);
        let err = check(&[&leaf], &[tlsa(2, 0, 1, sha256(&ca.der()))], &[MX]).unwrap_err();
        assert!(matches!(err, DaneError::NoMatch { .. }), "{err:?}");
        // DANE-TA does not turn into DANE-EE: a TA record for the leaf of a
        // CA-issued certificate is no anchor for it.
        let err = check(&[&leaf, &ca], &[tlsa(2, 1, 1, sha256(&leaf.spki()))], &[MX]).unwrap_err();
        assert!(matches!(err, DaneError::InvalidChain { .. }), "{err:?}");
    }

    #[test]
    fn dane_ta_full_record_needs_no_ca_in_the_chain() {
        // RFC 7672 §3.1.2: a "2 0 0" or "2 1 0" record carries the anchor.
        let (ca, issuer) = make_ca("Test CA", false);
        let leaf = signed(leaf_params(&[MX], false), &issuer);
        check(&[&leaf], &[tlsa(2, 0, 0, ca.der())], &[MX]).unwrap();
        check(&[&leaf], &[tlsa(2, 1, 0, ca.spki())], &[MX]).unwrap();
        // ... but the key must be the one that signed.
        let (other_ca, _) = make_ca("Test CA", false);
        let err = check(&[&leaf], &[tlsa(2, 1, 0, other_ca.spki())], &[MX]).unwrap_err();
        assert!(matches!(err, DaneError::InvalidChain { .. }), "{err:?}");
    }

    #[test]
    fn dane_ta_through_an_intermediate() {
        let (root, root_issuer) = make_ca("Test Root", false);
        let mut int_params = ca_params("Test Intermediate");
        int_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let int_key = KeyPair::generate().unwrap();
        let int_der = int_params
            .signed_by(&int_key, &root_issuer)
            .unwrap()
            .der()
            .clone();
        let int_issuer = Issuer::new(
            int_params,
            KeyPair::from_pem(&int_key.serialize_pem()).unwrap(),
        );
        let int = Cert {
            der: int_der,
            key: int_key,
        };
        let leaf = signed(leaf_params(&[MX], false), &int_issuer);
        check(
            &[&leaf, &int, &root],
            &[tlsa(2, 0, 1, sha256(&root.der()))],
            &[MX],
        )
        .unwrap();
        check(
            &[&leaf, &int, &root],
            &[tlsa(2, 1, 1, sha256(&int.spki()))],
            &[MX],
        )
        .unwrap();
        check(&[&leaf, &int], &[tlsa(2, 0, 0, root.der())], &[MX]).unwrap();
        // Without the intermediate there is no path.
        let err = check(
            &[&leaf, &root],
            &[tlsa(2, 0, 1, sha256(&root.der()))],
            &[MX],
        )
        .unwrap_err();
        assert!(matches!(err, DaneError::InvalidChain { .. }), "{err:?}");
    }

    #[test]
    fn dane_ta_checks_names() {
        let (ca, issuer) = make_ca("Test CA", false);
        let leaf = signed(leaf_params(&["other.example.test"], false), &issuer);
        let record = [tlsa(2, 0, 1, sha256(&ca.der()))];
        let err = check(&[&leaf, &ca], &record, &[MX]).unwrap_err();
        assert!(matches!(err, DaneError::NameMismatch { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the certificate of mx.example.test is not valid for mx.example.test \
             (it names other.example.test)"
        );
        // Any of the reference identifiers will do, case-insensitively.
        check(&[&leaf, &ca], &record, &[MX, "OTHER.example.test."]).unwrap();
        let err = check(&[&leaf, &ca], &record, &[]).unwrap_err();
        assert!(matches!(err, DaneError::NameMismatch { .. }), "{err:?}");
    }

    #[test]
    fn dane_ta_wildcard_covers_one_label() {
        let (ca, issuer) = make_ca("Test CA", false);
        let leaf = signed(leaf_params(&["*.example.test"], false), &issuer);
        let record = [tlsa(2, 1, 1, sha256(&ca.spki()))];
        check(&[&leaf, &ca], &record, &[MX]).unwrap();
        for name in ["a.mx.example.test", "example.test"] {
            let err = check(&[&leaf, &ca], &record, &[name]).unwrap_err();
            assert!(
                matches!(err, DaneError::NameMismatch { .. }),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn dane_ta_common_name_only_without_dns_san() {
        let (ca, issuer) = make_ca("Test CA", false);
        let record = [tlsa(2, 0, 1, sha256(&ca.der()))];
        let mut cn_only = leaf_params(&[], false);
        cn_only.distinguished_name.push(DnType::CommonName, MX);
        let leaf = signed(cn_only, &issuer);
        check(&[&leaf, &ca], &record, &[MX]).unwrap();
        // With a DNS SAN present the CN is not looked at.
        let mut both = leaf_params(&["other.example.test"], false);
        both.distinguished_name.push(DnType::CommonName, MX);
        let leaf = signed(both, &issuer);
        let err = check(&[&leaf, &ca], &record, &[MX]).unwrap_err();
        assert!(matches!(err, DaneError::NameMismatch { .. }), "{err:?}");
    }

    #[test]
    fn dane_ta_rejects_expired_leaf() {
        let (ca, issuer) = make_ca("Test CA", false);
        let leaf = signed(leaf_params(&[MX], true), &issuer);
        let err = check(&[&leaf, &ca], &[tlsa(2, 0, 1, sha256(&ca.der()))], &[MX]).unwrap_err();
        assert!(matches!(err, DaneError::InvalidChain { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the certificate chain of mx.example.test is not valid under its DANE-TA \
             trust anchor: a certificate has expired"
        );
    }

    #[test]
    fn dane_ta_anchor_dates_are_not_checked() {
        // The anchor is a name and a key (RFC 5280 §6.1.1(d)); a TLSA
        // record for an expired CA certificate still designates its key.
        let (ca, issuer) = make_ca("Old CA", true);
        let leaf = signed(leaf_params(&[MX], false), &issuer);
        check(&[&leaf, &ca], &[tlsa(2, 0, 1, sha256(&ca.der()))], &[MX]).unwrap();
    }

    #[test]
    fn dane_ta_rejects_leaf_from_another_ca() {
        let (ca, _) = make_ca("Test CA", false);
        // Same subject name, different key: only the signature tells them
        // apart.
        let (_, other_issuer) = make_ca("Test CA", false);
        let leaf = signed(leaf_params(&[MX], false), &other_issuer);
        let err = check(&[&leaf, &ca], &[tlsa(2, 0, 1, sha256(&ca.der()))], &[MX]).unwrap_err();
        assert!(matches!(err, DaneError::InvalidChain { .. }), "{err:?}");
        let (_, third_issuer) = make_ca("Third CA", false);
        let leaf = signed(leaf_params(&[MX], false), &third_issuer);
        let err = check(&[&leaf, &ca], &[tlsa(2, 1, 1, sha256(&ca.spki()))], &[MX]).unwrap_err();
        assert!(matches!(err, DaneError::InvalidChain { .. }), "{err:?}");
    }

    #[test]
    fn dane_ta_self_issued_leaf_is_its_own_anchor() {
        let leaf = self_signed(&[MX], false);
        let record = [tlsa(2, 1, 1, sha256(&leaf.spki()))];
        check(&[&leaf], &record, &[MX]).unwrap();
        let err = check(&[&leaf], &record, &["mx2.example.test"]).unwrap_err();
        assert!(matches!(err, DaneError::NameMismatch { .. }), "{err:?}");
        // Unlike DANE-EE, expiry matters here.
        let expired = self_signed(&[MX], true);
        let err = check(
            &[&expired],
            &[tlsa(2, 1, 1, sha256(&expired.spki()))],
            &[MX],
        )
        .unwrap_err();
        assert!(matches!(err, DaneError::InvalidChain { .. }), "{err:?}");
    }

    #[test]
    fn garbage_leaf_is_reported() {
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let err = verify_chain(
            &[garbage],
            &[tlsa(3, 1, 1, vec![0; 32])],
            &refs(&[MX]),
            UnixTime::now(),
        )
        .unwrap_err();
        assert!(matches!(err, DaneError::BadCertificate { .. }), "{err:?}");
    }

    #[test]
    fn reference_identifier_matching() {
        assert!(name_matches("mx.example.test", "MX.Example.Test."));
        assert!(name_matches("*.example.test", "mx.example.test"));
        assert!(name_matches("*.EXAMPLE.test.", "mx.example.test"));
        assert!(!name_matches("*.example.test", "example.test"));
        assert!(!name_matches("*.example.test", "a.b.example.test"));
        assert!(!name_matches("*.example.test", ".example.test"));
        assert!(!name_matches("mx*.example.test", "mx1.example.test"));
        assert!(!name_matches("*mx.example.test", "amx.example.test"));
        assert!(!name_matches("mx.*.test", "mx.example.test"));
        assert!(!name_matches("*.test", "example.test"));
        assert!(!name_matches("*.*.test", "a.b.test"));
        assert!(!name_matches("*.example.test", "*.example.test"));
        assert!(!name_matches("", ""));
        assert!(!name_matches("mx.example.test", "mx.example.test.."));
    }

    #[test]
    fn sequence_contents_strips_header() {
        assert_eq!(
            sequence_contents(&[0x30, 0x02, 0x05, 0x00]),
            Some(&[0x05, 0x00][..])
        );
        let mut long = vec![0x30, 0x81, 0x80];
        long.extend(std::iter::repeat_n(0u8, 0x80));
        assert_eq!(sequence_contents(&long).map(<[u8]>::len), Some(0x80));
        assert_eq!(sequence_contents(&[0x30, 0x03, 0x05, 0x00]), None);
        assert_eq!(sequence_contents(&[0x31, 0x00]), None);
        assert_eq!(sequence_contents(&[0x30, 0x80]), None);
        assert_eq!(sequence_contents(&[]), None);
    }

    // ---- rustls end to end -------------------------------------------------

    mod handshake {
        use super::*;
        use std::io;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::{TcpListener, TcpStream};
        use tokio_rustls::{TlsAcceptor, TlsConnector};

        fn provider() -> Arc<rustls::crypto::CryptoProvider> {
            Arc::new(rustls::crypto::aws_lc_rs::default_provider())
        }

        /// Serves `chain` once on 127.0.0.1, writing a greeting after the
        /// handshake.
        async fn serve(chain: Vec<CertificateDer<'static>>, key: &KeyPair) -> std::net::SocketAddr {
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            let config = rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
            let acceptor = TlsAcceptor::from(Arc::new(config));
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let (tcp, _) = listener.accept().await.unwrap();
                // A failed handshake is the client's verdict; nothing to do.
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"220 mx.example.test ESMTP\r\n").await;
                    let _ = tls.shutdown().await;
                }
            });
            addr
        }

        async fn connect(
            addr: std::net::SocketAddr,
            records: Vec<Tlsa>,
            versions: &[&'static rustls::SupportedProtocolVersion],
        ) -> io::Result<String> {
            let mut config = rustls::ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            config
                .dangerous()
                .set_certificate_verifier(DaneVerifier::new(records, refs(&[MX])));
            let connector = TlsConnector::from(Arc::new(config));
            let tcp = TcpStream::connect(addr).await?;
            let name = ServerName::try_from(MX).unwrap();
            let mut tls = connector.connect(name, tcp).await?;
            let mut greeting = String::new();
            tls.read_to_string(&mut greeting).await?;
            Ok(greeting)
        }

        /// The DaneError inside a failed handshake's io::Error.
        fn dane_error(err: &io::Error) -> &DaneError {
            let tls = err
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .expect("a rustls error");
            match tls {
                rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
                    inner.downcast_ref::<DaneError>().expect("a DaneError")
                }
                other => panic!("unexpected error {other:?}"),
            }
        }

        const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

        #[tokio::test]
        async fn dane_ee_handshake_succeeds_with_matching_tlsa() {
            for versions in [TLS13, TLS12] {
                let leaf = self_signed(&[MX], false);
                let addr = serve(vec![leaf.der.clone()], &leaf.key).await;
                let records = vec![tlsa(3, 1, 1, sha256(&leaf.spki()))];
                let greeting = connect(addr, records, versions).await.unwrap();
                assert_eq!(greeting, "220 mx.example.test ESMTP\r\n");
            }
        }

        #[tokio::test]
        async fn dane_ee_handshake_fails_with_other_tlsa() {
            for versions in [TLS13, TLS12] {
                let leaf = self_signed(&[MX], false);
                let other = self_signed(&[MX], false);
                let addr = serve(vec![leaf.der.clone()], &leaf.key).await;
                let records = vec![tlsa(3, 1, 1, sha256(&other.spki()))];
                let err = connect(addr, records, versions).await.unwrap_err();
                let dane = dane_error(&err);
                assert!(matches!(dane, DaneError::NoMatch { .. }), "{dane:?}");
                assert_eq!(
                    dane.to_string(),
                    "no TLSA record matches the certificate of mx.example.test"
                );
            }
        }

        #[tokio::test]
        async fn dane_ee_handshake_succeeds_with_expired_certificate() {
            let leaf = self_signed(&["unrelated.example"], true);
            let addr = serve(vec![leaf.der.clone()], &leaf.key).await;
            let records = vec![tlsa(3, 0, 1, sha256(&leaf.der()))];
            connect(addr, records, TLS13).await.unwrap();
        }

        #[tokio::test]
        async fn dane_ta_handshake() {
            let (ca, issuer) = make_ca("Test CA", false);
            let leaf = signed(leaf_params(&[MX], false), &issuer);
            let addr = serve(vec![leaf.der.clone(), ca.der.clone()], &leaf.key).await;
            connect(addr, vec![tlsa(2, 0, 1, sha256(&ca.der()))], TLS13)
                .await
                .unwrap();

            let wrong = signed(leaf_params(&["wrong.example.test"], false), &issuer);
            let addr = serve(vec![wrong.der.clone(), ca.der.clone()], &wrong.key).await;
            let err = connect(addr, vec![tlsa(2, 0, 1, sha256(&ca.der()))], TLS13)
                .await
                .unwrap_err();
            assert!(matches!(dane_error(&err), DaneError::NameMismatch { .. }));
        }
    }
}
