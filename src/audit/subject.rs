//! Subject digests: how the access record finds every disclosure about a person without the
//! gateway keeping the person's identifier.
//!
//! At acceptance, each value a record holds at a field its schema marks as a subject identifier
//! (`schema::subjects`) is digested with HMAC-SHA-256 under the *subject key*, and only the
//! digest is stored with the record's deliveries. An operator's lookup digests the identifier it
//! is given the same way and finds the rows by digest. The subject key is a secret of its own,
//! apart from the body-digest secret ([`super::digest`]): an identifier such as a SIN has so few
//! values that a digest anyone could recompute would give it away, and a digest under the
//! body-digest secret would let whoever holds that secret (to check an audit export) look people
//! up. Instances sharing a store must share the subject key, or one finds nothing of what the
//! other accepted.
//!
//! **Normalisation.** A string is digested as written once the whitespace around it is
//! trimmed; a number as its canonical JSON form (`1e2` as `100`); anything else (a boolean, an
//! object, an empty string) is not a subject. A SIN sent as `046 454 286` and one sent as
//! `046454286` are different subjects: the schemas say how each identifier is written (nine
//! digits, no spaces), and a lookup is written the same way.

use std::path::Path;

use serde_json::Value;

use super::DigestKey;
use crate::secrets;

/// File name of the subject key inside the data directory, when `audit.subject_key_file` does
/// not name another.
pub const KEY_FILE: &str = "subject.key";

/// The deployment's key for subject digests: an HMAC-SHA-256 key, as the body digests' is, under
/// a secret of its own.
#[derive(Debug, Clone)]
pub struct SubjectKey(DigestKey);

impl SubjectKey {
    /// Loads the key (32 bytes, in hex) from `path`, creating it owner-only on first start.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        Ok(SubjectKey::new(&secrets::load_or_create(path, 32)?))
    }

    /// The key of these bytes.
    pub fn new(bytes: &[u8]) -> Self {
        SubjectKey(DigestKey::new(bytes))
    }

    /// The digest of a subject identifier as an operator gives it (trimmed).
    pub fn digest(&self, subject: &str) -> [u8; 32] {
        self.0.digest(subject.trim().as_bytes())
    }

    /// The digest of a value a record holds at a subject identifier field, if it is one: a
    /// non-empty string or a number.
    pub fn digest_value(&self, value: &Value) -> Option<[u8; 32]> {
        match value {
            Value::String(s) if !s.trim().is_empty() => Some(self.digest(s)),
            Value::Number(_) => Some(self.0.digest(&crate::json::to_canonical_vec(value))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_value_and_the_identifier_an_operator_types_digest_alike() {
        let key = SubjectKey::new(&[7; 32]);
        assert_eq!(key.digest_value(&json!("046454286")), Some(key.digest(" 046454286\n")));
        assert_eq!(key.digest_value(&json!(100)), Some(key.digest("100")));
        assert_ne!(key.digest("046454286"), key.digest("046 454 286"), "written as the schema says, or not found");
        assert_ne!(key.digest("046454286"), SubjectKey::new(&[8; 32]).digest("046454286"), "another key");
        for not_a_subject in [json!(""), json!("  "), json!(true), json!(null), json!({"sin": "1"}), json!(["1"])] {
            assert_eq!(key.digest_value(&not_a_subject), None, "{not_a_subject}");
        }
    }

    #[test]
    fn the_key_is_created_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join(KEY_FILE);
        let made = SubjectKey::load_or_create(&path).unwrap();
        let read = SubjectKey::load_or_create(&path).unwrap();
        assert_eq!(made.digest("QC-2026-018355"), read.digest("QC-2026-018355"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
