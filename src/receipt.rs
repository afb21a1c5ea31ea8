//! The receipt a sender gets for an accepted record.
//!
//! A JSON object that grows by adding fields, never by changing them: later releases add the
//! audit entry's `seq` and `hash` and the gateway's signature beside these fields.

use serde::Serialize;

/// One delivery created by the record, as listed on its receipt.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptDelivery<'a> {
    pub recipient: &'a str,
    pub agreement: &'a str,
    pub status: &'static str,
}

/// The receipt's fields.
#[derive(Debug, Clone, Serialize)]
pub struct Receipt<'a> {
    pub record_id: &'a str,
    pub record_type: &'a str,
    pub schema_version: String,
    pub sender: &'a str,
    pub received_at: String,
    pub deliveries: Vec<ReceiptDelivery<'a>>,
}

impl Receipt<'_> {
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The audit proof appended to a receipt: where the record's entry sits in the chain, and the
/// gateway's signature over it (see [`crate::audit::receipt_message`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Proof {
    pub seq: i64,
    pub entry_hash: String,
    pub body_digest: String,
    pub signed_at: String,
    pub key_id: String,
    pub signature: String,
}

/// `receipt` (a JSON object as stored) with `"audit": proof` added as its last member.
pub fn with_proof(receipt: &[u8], proof: &Proof) -> Vec<u8> {
    let proof = serde_json::to_vec(proof).unwrap_or_default();
    let Some(end) = receipt.iter().rposition(|b| *b == b'}') else {
        return receipt.to_vec();
    };
    let mut out = Vec::with_capacity(receipt.len() + proof.len() + 12);
    out.extend_from_slice(&receipt[..end]);
    out.extend_from_slice(b",\"audit\":");
    out.extend_from_slice(&proof);
    out.push(b'}');
    out
}

/// Why a receipt does not check out.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("the receipt is not JSON with `record_id` and an `audit` proof: {0}")]
    Shape(String),
    #[error("the receipt's signature: {0}")]
    Signature(#[from] crate::audit::keys::SignatureError),
}

/// Checks a receipt's signature against `keys`; returns its proof.
pub fn verify(receipt: &[u8], keys: &crate::audit::keys::TrustedKeys) -> Result<(String, Proof), ReceiptError> {
    let value: serde_json::Value = serde_json::from_slice(receipt).map_err(|e| ReceiptError::Shape(e.to_string()))?;
    let record_id = value["record_id"].as_str().ok_or_else(|| ReceiptError::Shape("no record_id".into()))?.to_owned();
    let proof: Proof =
        serde_json::from_value(value["audit"].clone()).map_err(|e| ReceiptError::Shape(e.to_string()))?;
    let hex32 = |s: &str| -> Result<[u8; 32], ReceiptError> {
        crate::auth::decode_hex(s)
            .filter(|b| b.len() == 32)
            .map(|b| {
                let mut out = [0u8; 32];
                out.copy_from_slice(&b);
                out
            })
            .ok_or_else(|| ReceiptError::Shape("a digest is not 64 hex characters".into()))
    };
    let at = crate::clock::parse_rfc3339_ms(&proof.signed_at).ok_or_else(|| ReceiptError::Shape("signed_at".into()))?;
    let stamp = crate::audit::AuditStamp { seq: proof.seq, hash: hex32(&proof.entry_hash)? };
    let message = crate::audit::receipt_message(&record_id, &hex32(&proof.body_digest)?, stamp, at, &proof.key_id);
    let signature = crate::auth::decode_hex(&proof.signature).ok_or_else(|| ReceiptError::Shape("signature".into()))?;
    keys.verify(&proof.key_id, &message, &signature)?;
    Ok((record_id, proof))
}
