//! Completion notices: what the gateway tells a sender that asked (`[partner.notify]`) once a
//! record is complete, or once one of its deliveries is dead, how it signs them and how anyone
//! checks one offline with the gateway's public key.
//!
//! A notice is a JSON object: `notice` (`complete` or `incomplete`), `record_id`, `record_type`,
//! `schema_version`, `sender`, `received_at`, `completed_at` (complete notices only), `deliveries`
//! (each `recipient`, `agreement`, `status`, `attempts`, and `delivered_at` once delivered or
//! `error` once an attempt failed), `audit_seq` (the record's `record.accepted` entry),
//! `issued_at`, then `proof` (`key_id`, `format`, `signature`). It carries identifiers, times and
//! statuses, never a value of the record.
//!
//! The signature (Ed25519, lowercase hex) covers `"passerelle:notice:v1:" || canonical(N)`, where
//! `N` is the notice as received with the single member `proof.signature` removed, in the
//! canonical form of [`crate::audit`]: every member at every level is covered, including any a
//! later release adds. The prefix differs from a receipt's, so a receipt's signature never
//! verifies a notice, nor the other way round.

use serde::Serialize;
use serde_json::Value;

use crate::audit::keys::{SignatureError, TrustedKeys};
use crate::digest::{decode_hex, to_hex};
use crate::json::JsonError;

/// The partner id notices are issued under (their records' sender); no partner may take it.
pub const SENDER: &str = "passerelle";
/// The record type of a notice: pushed to `{endpoint}/completion-notice`, or in the mailbox with
/// schema `completion-notice/1.0`.
pub const RECORD_TYPE: &str = "completion-notice";
/// The schema version of the notices this gateway issues.
pub const SCHEMA_VERSION: &str = "1.0";
/// The format of the notices this gateway signs.
pub const FORMAT: u64 = 1;
/// What the signature covers is prefixed with this.
const PREFIX: &[u8] = b"passerelle:notice:v1:";
/// A notice has four levels; the margin leaves room for later fields.
const MAX_DEPTH: usize = 16;

/// Which notice a record is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeKind {
    /// Every delivery is delivered.
    Complete,
    /// At least one delivery is dead: the sender may act (and hear again once a replay completes it).
    Incomplete,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Complete => "complete",
            NoticeKind::Incomplete => "incomplete",
        }
    }

    /// The kind written as `as_str` writes it.
    pub fn parse(label: &str) -> Option<Self> {
        [NoticeKind::Complete, NoticeKind::Incomplete].into_iter().find(|k| k.as_str() == label)
    }

    /// The idempotency key of the record's notice of this kind: a record has at most one of each,
    /// however often or by however many instances it is issued.
    pub fn idempotency_key(self, record_id: &str) -> String {
        format!("{record_id}.{}", self.as_str())
    }
}

/// One delivery of the record, as the notice lists it.
#[derive(Debug, Clone, Serialize)]
pub struct NoticeDelivery {
    pub recipient: String,
    pub agreement: String,
    pub status: &'static str,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// The gateway's class of the last failure (`HTTP 400`, a connection error, a nack code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A notice before it is signed.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub notice: NoticeKind,
    pub record_id: String,
    pub record_type: String,
    pub schema_version: String,
    pub sender: String,
    pub received_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    pub deliveries: Vec<NoticeDelivery>,
    /// The record's `record.accepted` audit entry.
    pub audit_seq: i64,
    pub issued_at: String,
}

/// Why a notice does not check out.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("the notice is not acceptable JSON: {0}")]
    Json(#[from] JsonError),
    #[error("the notice is malformed: `{field}` {problem}")]
    Field { field: &'static str, problem: &'static str },
    #[error("`proof.format` is {0}; this verifier knows format 1")]
    UnknownFormat(u64),
    #[error("`proof.key_id` names key {0}, which is not trusted")]
    UntrustedKey(String),
    #[error("the notice does not match its signature: a field was changed after the gateway signed it")]
    Mismatch,
}

/// The bytes a notice's signature covers (see the module documentation).
fn message(notice: &Value) -> Vec<u8> {
    let mut signed = notice.clone();
    if let Some(proof) = signed.get_mut("proof").and_then(Value::as_object_mut) {
        proof.remove("signature");
    }
    [PREFIX, &crate::json::to_canonical_vec(&signed)].concat()
}

impl Notice {
    /// The notice as sent: its JSON with a `proof` signed by `sign` under `key_id`.
    pub fn seal(&self, key_id: &str, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> Vec<u8> {
        // Serialising strings, integers and options of them cannot fail.
        let mut value = serde_json::to_value(self).unwrap_or_default();
        let proof = serde_json::json!({"key_id": key_id, "format": FORMAT});
        if let Some(members) = value.as_object_mut() {
            members.insert("proof".into(), proof);
        }
        let signature = to_hex(&sign(&message(&value)));
        if let Some(proof) = value.get_mut("proof").and_then(Value::as_object_mut) {
            proof.insert("signature".into(), Value::String(signature));
        }
        crate::json::to_canonical_vec(&value)
    }
}

/// A notice whose signature a trusted key made.
#[derive(Debug, Clone)]
pub struct VerifiedNotice {
    pub kind: NoticeKind,
    pub record_id: String,
    pub key_id: String,
    pub issued_at: String,
}

impl VerifiedNotice {
    /// What it says, and who signed it when.
    pub fn summary(&self) -> String {
        format!(
            "{} notice for record {}, issued at {}, signed by key {}; the signature covers every field",
            self.kind.as_str(),
            self.record_id,
            self.issued_at,
            self.key_id
        )
    }
}

/// Checks a notice's signature against `keys`, offline.
pub fn verify(bytes: &[u8], keys: &TrustedKeys) -> Result<VerifiedNotice, NoticeError> {
    let value = crate::json::parse_strict(bytes, MAX_DEPTH)?;
    let malformed = |field, problem| move || NoticeError::Field { field, problem };
    let text = |v: &Value, member: &str, field: &'static str| {
        v.get(member).and_then(Value::as_str).map(str::to_owned).ok_or_else(malformed(field, "is not a string"))
    };
    let kind = NoticeKind::parse(&text(&value, "notice", "notice")?)
        .ok_or_else(malformed("notice", "is not `complete` or `incomplete`"))?;
    let record_id = text(&value, "record_id", "record_id")?;
    let issued_at = text(&value, "issued_at", "issued_at")?;
    let proof = value.get("proof").filter(|p| p.is_object()).ok_or_else(malformed("proof", "is not an object"))?;
    match proof.get("format").map(Value::as_u64) {
        Some(Some(FORMAT)) => {}
        Some(Some(other)) => return Err(NoticeError::UnknownFormat(other)),
        _ => return Err(malformed("proof.format", "is not a positive integer")()),
    }
    let key_id = text(proof, "key_id", "proof.key_id")?;
    let signature = decode_hex(&text(proof, "signature", "proof.signature")?)
        .ok_or_else(malformed("proof.signature", "is not hexadecimal"))?;
    keys.verify(&key_id, &message(&value), &signature).map_err(|e| match e {
        SignatureError::UnknownKey => NoticeError::UntrustedKey(key_id.clone()),
        SignatureError::Invalid => NoticeError::Mismatch,
    })?;
    Ok(VerifiedNotice { kind, record_id, key_id, issued_at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::keys::SigningKey;

    fn notice() -> Notice {
        Notice {
            notice: NoticeKind::Incomplete,
            record_id: "r1".into(),
            record_type: "birth-registration".into(),
            schema_version: "1.0".into(),
            sender: "on-vital-stats".into(),
            received_at: "2026-11-18T11:06:40.001Z".into(),
            completed_at: None,
            deliveries: vec![NoticeDelivery {
                recipient: "ottawa-city".into(),
                agreement: "birth-to-ottawa".into(),
                status: "dead",
                attempts: 1,
                delivered_at: None,
                error: Some("HTTP 400".into()),
            }],
            audit_seq: 7,
            issued_at: "2026-11-18T11:06:41.000Z".into(),
        }
    }

    #[test]
    fn a_sealed_notice_verifies_and_any_change_breaks_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(&dir.path().join("key")).unwrap();
        let mut keys = TrustedKeys::default();
        let (id, public) = key.trusted();
        keys.add(id, public);
        let sealed = notice().seal(key.id(), |m| key.sign(m));
        let verified = verify(&sealed, &keys).unwrap();
        assert_eq!((verified.kind, verified.record_id.as_str()), (NoticeKind::Incomplete, "r1"));
        let text = String::from_utf8(sealed.clone()).unwrap();
        for (from, to) in [("\"dead\"", "\"delivered\""), ("\"r1\"", "\"r2\""), ("\"audit_seq\":7", "\"audit_seq\":8")]
        {
            let tampered = text.replacen(from, to, 1);
            assert!(matches!(verify(tampered.as_bytes(), &keys), Err(NoticeError::Mismatch)), "{from}");
        }
        // A receipt's signature prefix is not a notice's: the same key's receipt signature fails.
        assert!(verify(&sealed, &TrustedKeys::default()).is_err());
    }
}
