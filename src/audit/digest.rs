//! Body digests: what the audit trail holds instead of a body.
//!
//! A record's audit entry holds an HMAC-SHA-256 of its body under a deployment secret (the
//! *body digest*), not a plain hash: a small record such as a nine-digit SIN could otherwise be
//! recovered from the trail by trying every value. The secret is generated into the data
//! directory on first start and never leaves it.

use std::path::Path;

use ring::hmac;

use crate::secrets;

/// File name of the audit secret inside the data directory.
pub const SECRET_FILE: &str = "audit-secret";

/// The deployment's key for body digests.
#[derive(Clone)]
pub struct DigestKey(hmac::Key);

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

impl DigestKey {
    /// Loads the secret from `data_dir`, creating it (owner-only) on first start.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<Self> {
        Ok(DigestKey::new(&secrets::load_or_create(&data_dir.join(SECRET_FILE), 32)?))
    }

    /// An HMAC-SHA-256 key of these bytes (the subject key is one too, under a secret of its own).
    pub fn new(bytes: &[u8]) -> Self {
        DigestKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// The body digest of `body`.
    pub fn digest(&self, body: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.0, body);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}
