//! Ed25519 keys: the instance's signing key, and the public keys whose signatures are trusted.
//!
//! The signing key is a PKCS#8 document, hex-encoded in a file readable by the owner only
//! (generated into the data directory on first start unless one is configured). A public key is
//! written as one line, `ed25519 <key-id> <public-key-hex>`: what `passerelle audit key` prints
//! and what `[audit] trusted_keys` files hold, so several instances and rotated keys verify.
//!
//! Two libraries, one algorithm: `ed25519-dalek` signs (its precomputed base-point tables make a
//! signature about a fifth cheaper than ring's, and every delivery is signed), ring generates
//! keys and verifies, as rustls does. Ed25519 signatures are deterministic (RFC 8032): both make
//! the same bytes from the same key and message, which a test checks.

use std::collections::BTreeMap;
use std::path::Path;

use ed25519_dalek::Signer;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ring::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};

use crate::digest::{decode_hex, sha256, to_hex};

/// File name of the generated signing key inside the data directory.
pub const SIGNING_KEY_FILE: &str = "audit-signing-key";

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not an Ed25519 key in the expected form ({what})")]
    Format { path: String, what: &'static str },
}

/// The id of a public key: the first 8 bytes of its SHA-256, in hex.
pub fn key_id(public_key: &[u8]) -> String {
    to_hex(&sha256(public_key)[..8])
}

/// This instance's signing key.
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    public: [u8; 32],
    id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.id)
    }
}

impl SigningKey {
    /// Loads the key at `path`, generating it (owner-only) if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io { path: path.display().to_string(), source };
        let pkcs8 = match std::fs::read_to_string(path) {
            Ok(text) => decode_hex(text.trim())
                .ok_or(KeyError::Format { path: path.display().to_string(), what: "hex PKCS#8" })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let document = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).map_err(|_| {
                    KeyError::Format { path: path.display().to_string(), what: "key generation failed" }
                })?;
                crate::secrets::write_private(path, to_hex(document.as_ref()).as_bytes()).map_err(io)?;
                document.as_ref().to_vec()
            }
            Err(e) => return Err(io(e)),
        };
        Self::from_pkcs8(&pkcs8)
            .ok_or_else(|| KeyError::Format { path: path.display().to_string(), what: "PKCS#8 Ed25519" })
    }

    /// The key in a PKCS#8 document, v1 or v2; a v2 document's public key must be the key's own.
    fn from_pkcs8(document: &[u8]) -> Option<Self> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_der(document).ok()?;
        let public = key.verifying_key().to_bytes();
        Some(SigningKey { id: key_id(&public), key, public })
    }

    /// A new key that lives in memory only (tests and benchmarks).
    pub fn generate() -> Result<Self, KeyError> {
        let failed = || KeyError::Format { path: "(memory)".into(), what: "key generation failed" };
        let document = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).map_err(|_| failed())?;
        Self::from_pkcs8(document.as_ref()).ok_or_else(failed)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// The public key line: `ed25519 <key-id> <hex>`.
    pub fn public_line(&self) -> String {
        format!("ed25519 {} {}", self.id, to_hex(self.public_key()))
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.key.sign(message).to_bytes().to_vec()
    }

    /// The public half, as a trusted key.
    pub fn trusted(&self) -> (String, Vec<u8>) {
        (self.id.clone(), self.public_key().to_vec())
    }
}

/// Public keys whose signatures are accepted, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: BTreeMap<String, Vec<u8>>,
}

impl TrustedKeys {
    pub fn add(&mut self, id: String, public_key: Vec<u8>) {
        self.keys.insert(id, public_key);
    }

    /// Adds every `ed25519 <id> <hex>` line of `text`; `#` starts a comment.
    pub fn add_lines(&mut self, text: &str, path: &str) -> Result<usize, KeyError> {
        let mut added = 0;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [algorithm, id, hex] = parts.as_slice() else {
                return Err(KeyError::Format { path: path.to_owned(), what: "expected `ed25519 <key-id> <hex>`" });
            };
            let key = decode_hex(hex).filter(|k| k.len() == 32 && *algorithm == "ed25519");
            let Some(key) = key else {
                return Err(KeyError::Format {
                    path: path.to_owned(),
                    what: "expected a 32-byte Ed25519 public key in hex",
                });
            };
            if key_id(&key) != *id {
                return Err(KeyError::Format { path: path.to_owned(), what: "the key id does not match the key" });
            }
            self.keys.insert(id.to_string(), key);
            added += 1;
        }
        Ok(added)
    }

    /// Reads a file of public key lines.
    pub fn add_file(&mut self, path: &Path) -> Result<usize, KeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| KeyError::Io { path: path.display().to_string(), source })?;
        self.add_lines(&text, &path.display().to_string())
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Every key with its id, by id: what the gateway publishes in its JWKS.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.keys.iter().map(|(id, key)| (id.as_str(), key.as_slice()))
    }

    /// Whether `signature` over `message` was made by the trusted key `key_id`.
    pub fn verify(&self, key_id: &str, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        let key = self.keys.get(key_id).ok_or(SignatureError::UnknownKey)?;
        UnparsedPublicKey::new(&ED25519, key).verify(message, signature).map_err(|_| SignatureError::Invalid)
    }
}

/// Why a signature is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signed by a key that is not trusted")]
    UnknownKey,
    #[error("the signature does not match")]
    Invalid,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_generated_once_and_verify_their_signatures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SIGNING_KEY_FILE);
        let key = SigningKey::load_or_create(&path).unwrap();
        let again = SigningKey::load_or_create(&path).unwrap();
        assert_eq!(key.id(), again.id());
        let mut trusted = TrustedKeys::default();
        assert_eq!(trusted.add_lines(&key.public_line(), "test").unwrap(), 1);
        let signature = key.sign(b"message");
        assert_eq!(trusted.verify(key.id(), b"message", &signature), Ok(()));
        assert_eq!(trusted.verify(key.id(), b"messagf", &signature), Err(SignatureError::Invalid));
        assert_eq!(trusted.verify("0000000000000000", b"message", &signature), Err(SignatureError::UnknownKey));
        let line = key.public_line().replace(key.id(), "0123456789abcdef");
        assert!(trusted.add_lines(&line, "test").is_err(), "a key id that does not match its key is refused");
    }

    /// A key file ring wrote (every instance's, before signing moved to ed25519-dalek) loads,
    /// and its signatures are ring's byte for byte.
    #[test]
    fn signatures_are_the_bytes_ring_makes_from_the_same_key() {
        use ring::signature::KeyPair;
        let document = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let ring_pair = Ed25519KeyPair::from_pkcs8(document.as_ref()).unwrap();
        let key = SigningKey::from_pkcs8(document.as_ref()).unwrap();
        assert_eq!(key.public_key(), ring_pair.public_key().as_ref());
        for message in [&b""[..], b"passerelle:receipt", &[0xA5; 1500]] {
            assert_eq!(key.sign(message), ring_pair.sign(message).as_ref(), "message of {} bytes", message.len());
        }
    }

    /// A v1 document (a private key without its public half, as `openssl genpkey -algorithm
    /// ed25519` writes one) loads, as it did with ring: the public key is derived from it.
    #[test]
    fn a_v1_document_loads() {
        use ring::signature::KeyPair;
        let seed = [0x42u8; 32];
        let mut v1 = decode_hex("302e020100300506032b657004220420").unwrap();
        v1.extend_from_slice(&seed);
        let key = SigningKey::from_pkcs8(&v1).unwrap();
        let ring_pair = Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        assert_eq!(key.public_key(), ring_pair.public_key().as_ref());
        assert_eq!(key.sign(b"message"), ring_pair.sign(b"message").as_ref());
        assert!(Ed25519KeyPair::from_pkcs8_maybe_unchecked(&v1).is_ok(), "ring read it too");
    }

    /// A v2 document whose public key is not its private key's is refused, not signed with.
    #[test]
    fn a_document_whose_public_key_is_not_its_own_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SIGNING_KEY_FILE);
        let document = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let mut altered = document.as_ref().to_vec();
        *altered.last_mut().unwrap() ^= 1; // ring's v2 document ends with the public key
        std::fs::write(&path, to_hex(&altered)).unwrap();
        let error = SigningKey::load_or_create(&path).unwrap_err().to_string();
        assert!(error.contains("PKCS#8 Ed25519"), "{error}");
        std::fs::write(&path, to_hex(document.as_ref())).unwrap();
        assert!(SigningKey::load_or_create(&path).is_ok());
    }
}
