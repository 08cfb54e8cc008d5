//! Trusting the server's certificate: a SHA-256 pin (for the self-signed
//! certificate a dev server generates) or ordinary CA roots, and the rustls
//! client config built from it (ring provider only, so no process-wide
//! provider has to be installed by the app).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};

/// The ALPN protocol id of roomcast v1 (required on QUIC, offered on TLS).
pub const ALPN: &[u8] = b"roomcast/1";

/// How a client decides to trust the server's certificate.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Accept exactly the certificate with this SHA-256 fingerprint (names
    /// and expiry are not checked: the pin is the identity; the handshake
    /// signature still is, so the server must hold the key).
    Pin([u8; 32]),
    /// Verify the chain against these roots (and the server name), as usual.
    Roots(Vec<CertificateDer<'static>>),
}

/// A bad pin or root certificate.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsConfigError(pub String);

/// Parses a pin written as hex, with or without `:` separators or a `sha256:`
/// prefix (the spellings `roomcast` prints and `openssl x509 -fingerprint` uses).
pub fn parse_pin(s: &str) -> Result<[u8; 32], TlsConfigError> {
    let s = s.trim();
    let s = s.strip_prefix("sha256:").unwrap_or(s);
    let digits: Vec<u8> = s.bytes().filter(|c| *c != b':').collect();
    let bad = || TlsConfigError(format!("pin {s:?}: expected 64 hex digits (SHA-256)"));
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut pin = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16).ok_or_else(bad)?;
        let lo = (pair[1] as char).to_digit(16).ok_or_else(bad)?;
        pin[i] = (hi * 16 + lo) as u8;
    }
    Ok(pin)
}

/// SHA-256 of a DER certificate, as 64 lowercase hex digits.
pub fn fingerprint(cert_der: &[u8]) -> String {
    to_hex(&Sha256::digest(cert_der))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A rustls client config for `trust`, offering `alpn`.
pub fn client_config(
    trust: &Trust,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, TlsConfigError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| TlsConfigError(format!("tls versions: {e}")))?;
    let mut config = match trust {
        Trust::Pin(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier {
                pin: *pin,
                provider: provider(),
            }))
            .with_no_client_auth(),
        Trust::Roots(roots) => {
            let mut store = rustls::RootCertStore::empty();
            for r in roots {
                store
                    .add(r.clone())
                    .map_err(|e| TlsConfigError(format!("root certificate: {e}")))?;
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Accepts the one certificate whose SHA-256 matches the pin; handshake
/// signatures are still verified.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate fingerprint {} does not match the pin",
                to_hex(&got)
            )))
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_in_common_spellings() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_pin(&hex).unwrap(), [0xab; 32]);
        assert_eq!(parse_pin(&format!("sha256:{colons}")).unwrap(), [0xab; 32]);
        assert!(parse_pin("abcd").is_err());
        assert!(parse_pin(&"zz".repeat(32)).is_err());
        assert_eq!(fingerprint(b"").len(), 64);
    }
}
