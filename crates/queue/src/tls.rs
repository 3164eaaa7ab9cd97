//! TLS configurations of the SMTP client: opportunistic (encrypt, check nothing: RFC 7435),
//! PKIX (the system's CAs plus TLS_EXTRA_CA, name checked: MTA-STS enforce, `verify` policies,
//! relay hosts) and DANE (TLSA records: RFC 7672).

use crate::dane::{DaneVerifier, Tlsa};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Accepts any certificate but still checks that the handshake is signed by its key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn with_verifier(v: Arc<dyn ServerCertVerifier>) -> Result<ClientConfig, String> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(v)
        .with_no_client_auth())
}

/// The configurations shared by all deliveries.
#[derive(Clone)]
pub struct TlsConfigs {
    pub opportunistic: Arc<ClientConfig>,
    pub pkix: Arc<ClientConfig>,
}

impl TlsConfigs {
    pub fn new(extra_roots: Vec<CertificateDer<'static>>) -> Result<TlsConfigs, String> {
        let p = provider();
        let opportunistic = with_verifier(Arc::new(AnyCertificate(p.clone())))?;
        let platform = rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, p)
            .map_err(|e| format!("cannot load the system's certificate authorities: {e}"))?;
        let pkix = with_verifier(Arc::new(platform))?;
        Ok(TlsConfigs {
            opportunistic: Arc::new(opportunistic),
            pkix: Arc::new(pkix),
        })
    }

    /// A configuration that checks the certificate against TLSA records.
    pub fn dane(records: Vec<Tlsa>, names: Vec<String>) -> Result<Arc<ClientConfig>, String> {
        Ok(Arc::new(with_verifier(DaneVerifier::new(records, names))?))
    }
}

/// Reads PEM certificates (TLS_EXTRA_CA).
pub fn load_roots(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}
