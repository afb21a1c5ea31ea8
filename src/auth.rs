//! Who is calling: credentials in, an [`AuthenticatedPartner`] out.
//!
//! Every way a partner can prove who it is (a client certificate mapped by name or SPKI pin,
//! one a trusted proxy forwarded, or an API key) produces the same `AuthenticatedPartner`, so
//! nothing past this module knows or cares which one was used.
//!
//! API keys are never stored: the configuration holds their SHA-256, and a presented key is
//! hashed and compared against every configured hash in constant time. Keys are 256-bit random
//! strings, so a plain (unsalted) hash cannot be reversed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::digest::{decode_hex, sha256, to_hex};
use crate::ids::PartnerId;
use crate::tls::{CertIdentity, CertIndex};

/// How the partner proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ApiKey,
    ClientCertificate,
}

/// A caller whose credentials map to a configured partner.
#[derive(Debug, Clone)]
pub struct AuthenticatedPartner {
    pub id: PartnerId,
    pub method: AuthMethod,
}

/// Why a caller is not authenticated. Deliberately vague towards the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials were presented")]
    Missing,
    #[error("the credentials do not belong to any partner")]
    Unknown,
    #[error("the certificate and the API key belong to different partners")]
    Conflict,
    #[error("a forwarded client certificate does not verify")]
    BadForwardedCertificate,
}

/// What a request knows about the connection it came on.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The verified client certificate's identity, when one was presented.
    pub client_certificate: Option<CertIdentity>,
}

/// A TLS-terminating proxy whose forwarded client certificates are believed (a plaintext
/// partner listener only).
#[derive(Clone)]
pub struct Forwarding {
    /// The header holding the URL-encoded PEM.
    pub header: http::HeaderName,
    /// The proxies it is believed from; from anyone else it is ignored.
    pub proxies: Vec<IpAddr>,
    /// Verifies a forwarded chain against the partner CAs and CRLs.
    pub verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl std::fmt::Debug for Forwarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarding")
            .field("header", &self.header)
            .field("proxies", &self.proxies)
            .finish_non_exhaustive()
    }
}

/// Everything a caller may prove itself with: client certificate names and pins, API key
/// hashes, and a trusted proxy's forwarded certificates.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    pub certificates: CertIndex,
    pub api_keys: ApiKeyIndex,
    pub forwarding: Option<Forwarding>,
}

impl Credentials {
    /// Authenticates a request: its connection's client certificate (or one forwarded by a
    /// trusted proxy) and its API key each map to a partner; both, when present, must map to the
    /// same one.
    pub fn authenticate(
        &self,
        conn: &ConnectionInfo,
        headers: &http::HeaderMap,
    ) -> Result<AuthenticatedPartner, AuthError> {
        let certificate = match &conn.client_certificate {
            Some(id) => Some(id.clone()),
            None => self.forwarded_certificate(conn, headers)?,
        };
        let by_certificate = certificate.map(|id| self.certificates.find(&id).ok_or(AuthError::Unknown)).transpose()?;
        let by_key = match headers.get(http::header::AUTHORIZATION) {
            Some(h) => Some(authenticate_api_key(&self.api_keys, Some(h.as_bytes()))?.id),
            None => None,
        };
        match (by_certificate, by_key) {
            (Some(a), Some(b)) if a != b => Err(AuthError::Conflict),
            (Some(id), _) => Ok(AuthenticatedPartner { id, method: AuthMethod::ClientCertificate }),
            (None, Some(id)) => Ok(AuthenticatedPartner { id, method: AuthMethod::ApiKey }),
            (None, None) => Err(AuthError::Missing),
        }
    }

    /// The certificate a trusted proxy forwarded, verified against the partner CAs. The header
    /// is ignored unless the partner listener is plaintext and the peer is a configured proxy.
    fn forwarded_certificate(
        &self,
        conn: &ConnectionInfo,
        headers: &http::HeaderMap,
    ) -> Result<Option<CertIdentity>, AuthError> {
        let Some(forwarding) = &self.forwarding else { return Ok(None) };
        if conn.tls || !forwarding.proxies.contains(&conn.peer.ip()) {
            return Ok(None);
        }
        let Some(value) = headers.get(&forwarding.header).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
        else {
            return Ok(None);
        };
        let chain = crate::tls::parse_forwarded(value).ok_or(AuthError::BadForwardedCertificate)?;
        crate::tls::verify_forwarded(forwarding.verifier.as_ref(), &chain)
            .map(Some)
            .map_err(|_| AuthError::BadForwardedCertificate)
    }
}

/// The configured API key hashes.
#[derive(Debug, Default, Clone)]
pub struct ApiKeyIndex {
    entries: Vec<([u8; 32], PartnerId)>,
}

/// Prefix of the keys the gateway generates, so they are recognisable in a secret scanner.
pub const API_KEY_PREFIX: &str = "psk_";

impl ApiKeyIndex {
    /// Adds the hex SHA-256 of a key that `partner` may use.
    pub fn add_sha256_hex(&mut self, partner: PartnerId, hex: &str) -> Result<(), String> {
        let bytes = decode_hex(hex.trim())
            .filter(|b| b.len() == 32)
            .ok_or("an API key hash must be 64 hexadecimal characters (SHA-256)")?;
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes);
        self.entries.push((hash, partner));
        Ok(())
    }

    /// The partner holding `key`, if any. Every configured hash is compared, in constant time.
    pub fn find(&self, key: &str) -> Option<PartnerId> {
        let presented = sha256(key.as_bytes());
        let mut found = None;
        for (hash, partner) in &self.entries {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(partner.clone());
            }
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Authenticates a request from its `Authorization` header value.
pub fn authenticate_api_key(
    keys: &ApiKeyIndex,
    authorization: Option<&[u8]>,
) -> Result<AuthenticatedPartner, AuthError> {
    let header = authorization.ok_or(AuthError::Missing)?;
    let text = std::str::from_utf8(header).map_err(|_| AuthError::Unknown)?;
    let (scheme, token) = text.split_once(' ').ok_or(AuthError::Unknown)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Unknown);
    }
    let id = keys.find(token.trim()).ok_or(AuthError::Unknown)?;
    Ok(AuthenticatedPartner { id, method: AuthMethod::ApiKey })
}

/// A new random API key.
pub fn generate_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", to_hex(&crate::random::bytes::<32>()))
}

/// Shared handle used by tests and the demo to hash a key the way the gateway does.
pub fn api_key_hash_hex(key: &str) -> String {
    to_hex(&sha256(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn keys_map_to_their_partner_only() {
        let mut index = ApiKeyIndex::default();
        let a = generate_api_key();
        let b = generate_api_key();
        index.add_sha256_hex(Arc::from("a"), &api_key_hash_hex(&a)).unwrap();
        index.add_sha256_hex(Arc::from("b"), &api_key_hash_hex(&b)).unwrap();
        let header = format!("Bearer {a}");
        assert_eq!(&*authenticate_api_key(&index, Some(header.as_bytes())).unwrap().id, "a");
        assert_eq!(authenticate_api_key(&index, None).unwrap_err(), AuthError::Missing);
        assert_eq!(authenticate_api_key(&index, Some(b"Bearer psk_nope")).unwrap_err(), AuthError::Unknown);
        assert_eq!(
            authenticate_api_key(&index, Some(format!("Basic {a}").as_bytes())).unwrap_err(),
            AuthError::Unknown
        );
    }
}
