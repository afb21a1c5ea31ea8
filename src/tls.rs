//! TLS: the partner listener's server configuration, partner identity from client certificates,
//! and the client configuration for recipients.
//!
//! One crypto provider everywhere: rustls with `ring`, TLS 1.3 and 1.2 only, the provider's
//! strong suites (AEAD only, forward secrecy), ALPN `h2` and `http/1.1`. The partner listener
//! *requests* a client certificate but does not require one, so a caller with neither a
//! certificate nor an API key gets a 401 problem document rather than a failed handshake. A
//! certificate that is presented must chain to a configured partner CA and not be revoked
//! (CRLs); it then maps to a partner by one of the names in its subject or SANs, or by the
//! SHA-256 of its public key (SPKI pin), exactly as an API key maps to one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};

use crate::ids::PartnerId;
use crate::telemetry::HandshakeFailure;

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {what}")]
    File { path: String, what: String },
    #[error("{0}")]
    Config(String),
}

fn file_error(path: &Path, what: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.display().to_string(), what: what.to_string() }
}

/// The crypto provider: ring, and nothing else.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How TLS material is read: [`disk`], or the configuration loader's reader, which keeps the
/// bytes it read so the configuration's fingerprint covers exactly what was built.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<Vec<u8>>;

/// Reads a file from the file system.
pub fn disk(path: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}

fn read_pem(path: &Path, read: ReadFile<'_>) -> Result<Vec<u8>, TlsError> {
    read(path).map_err(|e| file_error(path, format!("cannot be read as PEM: {e}")))
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path, read: ReadFile<'_>) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(path, read)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, format!("holds a certificate that is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "holds no CERTIFICATE"));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path, read: ReadFile<'_>) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem(path, read)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| file_error(path, format!("holds no usable private key: {e}")))
}

fn load_crls(paths: &[PathBuf], read: ReadFile<'_>) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let mut crls = Vec::new();
    for path in paths {
        let pem = read_pem(path, read)?;
        for crl in CertificateRevocationListDer::pem_slice_iter(&pem) {
            crls.push(crl.map_err(|e| file_error(path, format!("holds a CRL that is not valid PEM: {e}")))?);
        }
    }
    Ok(crls)
}

fn roots(paths: &[PathBuf], read: ReadFile<'_>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for path in paths {
        for cert in load_certs(path, read)? {
            roots.add(cert).map_err(|e| file_error(path, format!("holds a CA certificate rustls refuses: {e}")))?;
        }
    }
    Ok(roots)
}

/// The partner listener's TLS: the server configuration and the client certificate verifier
/// (also used for certificates forwarded by a trusted proxy).
#[derive(Clone)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub verifier: Arc<dyn ClientCertVerifier>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls(..)")
    }
}

/// Builds the partner CA verifier: chains must end at one of `ca_files` and not be revoked by
/// `crl_files`; a client without a certificate is let through (to be asked for an API key).
pub fn client_verifier(
    ca_files: &[PathBuf],
    crl_files: &[PathBuf],
    read: ReadFile<'_>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let roots = roots(ca_files, read)?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .with_crls(load_crls(crl_files, read)?)
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Config(format!("the partner CA verifier cannot be built: {e}")))
}

/// Builds the partner listener's TLS configuration, verifying client certificates.
pub fn server_tls(
    cert_file: &Path,
    key_file: &Path,
    ca_files: &[PathBuf],
    crl_files: &[PathBuf],
    read: ReadFile<'_>,
) -> Result<ServerTls, TlsError> {
    build_server(cert_file, key_file, client_verifier(ca_files, crl_files, read)?, read)
}

/// The partner listener's TLS when no partner CA is configured: API keys only.
pub fn server_tls_without_clients(
    cert_file: &Path,
    key_file: &Path,
    read: ReadFile<'_>,
) -> Result<ServerTls, TlsError> {
    build_server(cert_file, key_file, WebPkiClientVerifier::no_client_auth(), read)
}

fn build_server(
    cert_file: &Path,
    key_file: &Path,
    verifier: Arc<dyn ClientCertVerifier>,
    read: ReadFile<'_>,
) -> Result<ServerTls, TlsError> {
    let chain = load_certs(cert_file, read)?;
    let key = load_key(key_file, read)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(chain, key)
        .map_err(|e| file_error(key_file, format!("does not match the certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServerTls { config: Arc::new(config), verifier })
}

/// The client configuration for one recipient: its CA (or none, for plain HTTP), and the
/// gateway's own certificate if it must present one.
pub fn recipient_client(
    ca_files: &[PathBuf],
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
    read: ReadFile<'_>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = roots(ca_files, read)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    // ALPN is left to the HTTP connector, which offers what it can speak.
    let config = match (cert_file, key_file) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert, read)?, load_key(key, read)?)
            .map_err(|e| file_error(key, format!("does not match the certificate: {e}")))?,
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(TlsError::Config(
                "a client certificate needs both client_cert_file and client_key_file".into(),
            ));
        }
    };
    Ok(Arc::new(config))
}

/// A client configuration trusting nothing: for plain-HTTP recipients (an HTTPS endpoint without
/// a CA is refused by `check`).
pub fn plain_client() -> Arc<ClientConfig> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map(|b| b.with_root_certificates(RootCertStore::empty()).with_no_client_auth());
    // The protocol versions above are supported by the ring provider.
    Arc::new(config.unwrap_or_else(|_| unreachable!("TLS 1.2 and 1.3 are supported by ring")))
}

/// A client configuration trusting the operating system's root certificates: for a public
/// service the gateway signs people in through (an OpenID issuer named without a `ca_file`).
pub fn system_client() -> Result<Arc<ClientConfig>, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsError::Config("the system holds no trusted root certificate".into()));
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(builder.with_root_certificates(roots).with_no_client_auth()))
}

/// What a client certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// Subject common names and DNS, URI and email SANs.
    pub names: Vec<String>,
    /// SHA-256 of the SubjectPublicKeyInfo.
    pub spki_sha256: [u8; 32],
}

/// Reads the names and the SPKI pin of a certificate (already verified by the caller).
pub fn identity(cert: &CertificateDer<'_>) -> Option<CertIdentity> {
    use x509_parser::extensions::GeneralName;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let mut names: Vec<String> =
        parsed.subject().iter_common_name().filter_map(|cn| cn.as_str().ok().map(str::to_owned)).collect();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) | GeneralName::URI(n) | GeneralName::RFC822Name(n) => names.push(n.to_string()),
                _ => {}
            }
        }
    }
    Some(CertIdentity { names, spki_sha256: crate::digest::sha256(parsed.public_key().raw) })
}

/// Maps certificate names and pins to partners (built from the partners file).
#[derive(Debug, Clone, Default)]
pub struct CertIndex {
    names: HashMap<String, PartnerId>,
    pins: HashMap<[u8; 32], PartnerId>,
}

impl CertIndex {
    /// Adds a name; returns the partner that already holds it, if any.
    pub fn add_name(&mut self, name: &str, partner: PartnerId) -> Option<PartnerId> {
        self.names.insert(name.to_ascii_lowercase(), partner)
    }

    /// Adds an SPKI pin; returns the partner that already holds it, if any.
    pub fn add_pin(&mut self, pin: [u8; 32], partner: PartnerId) -> Option<PartnerId> {
        self.pins.insert(pin, partner)
    }

    /// The partner a certificate maps to: by pin first, then by name. A certificate whose
    /// names map to two different partners maps to none.
    pub fn find(&self, id: &CertIdentity) -> Option<PartnerId> {
        if let Some(p) = self.pins.get(&id.spki_sha256) {
            return Some(p.clone());
        }
        let mut found: Option<&PartnerId> = None;
        for name in &id.names {
            if let Some(p) = self.names.get(&name.to_ascii_lowercase()) {
                if found.is_some_and(|f| f != p) {
                    return None;
                }
                found = Some(p);
            }
        }
        found.cloned()
    }
}

/// Verifies a certificate chain (leaf first) forwarded by a trusted proxy, as the handshake
/// would have.
pub fn verify_forwarded(
    verifier: &dyn ClientCertVerifier,
    chain: &[CertificateDer<'static>],
) -> Result<CertIdentity, rustls::Error> {
    let (leaf, intermediates) = chain.split_first().ok_or(rustls::Error::NoCertificatesPresented)?;
    verifier.verify_client_cert(leaf, intermediates, UnixTime::now())?;
    identity(leaf).ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))
}

/// Parses the certificate header a TLS-terminating proxy forwards: URL-encoded PEM (nginx's
/// `$ssl_client_escaped_cert`, Envoy's `Cert="..."` in `x-forwarded-client-cert`).
pub fn parse_forwarded(value: &str) -> Option<Vec<CertificateDer<'static>>> {
    let value = value.split(';').find_map(|part| part.trim().strip_prefix("Cert=")).unwrap_or(value).trim_matches('"');
    // Percent-encoding (RFC 3986), not a form: `+` is a base64 digit of the PEM, not a space.
    let pem = percent_encoding::percent_decode_str(value).decode_utf8().ok()?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().ok()?;
    (!certs.is_empty()).then_some(certs)
}

/// Why a handshake failed, as `passerelle_tls_handshake_failures_total{reason}` counts it.
pub fn failure_reason(error: &std::io::Error) -> HandshakeFailure {
    use rustls::Error;
    if error.kind() == std::io::ErrorKind::TimedOut {
        return HandshakeFailure::Timeout;
    }
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
        return match error.kind() {
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => HandshakeFailure::Closed,
            _ => HandshakeFailure::Io,
        };
    };
    failure_label(tls)
}

/// A fixed label for a rustls error (never its text).
pub fn failure_label(tls: &rustls::Error) -> HandshakeFailure {
    use HandshakeFailure as F;
    use rustls::{CertificateError, Error};
    match tls {
        Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => F::Expired,
        Error::InvalidCertificate(CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }) => {
            F::NotYetValid
        }
        Error::InvalidCertificate(CertificateError::Revoked) => F::Revoked,
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => F::UnknownIssuer,
        Error::InvalidCertificate(CertificateError::BadSignature) => F::BadSignature,
        Error::InvalidCertificate(_) => F::InvalidCertificate,
        Error::AlertReceived(_) => F::AlertReceived,
        Error::PeerIncompatible(_) => F::Incompatible,
        Error::InappropriateMessage { .. } | Error::InappropriateHandshakeMessage { .. } | Error::InvalidMessage(_) => {
            F::Protocol
        }
        _ => F::Other,
    }
}
