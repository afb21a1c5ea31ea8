//! The notary: signs receipts and checkpoints with this instance's key.
//!
//! A store opened with the signing key signs each group commit's receipts once, as a tree
//! (format 3, in the store's writer); a receipt is signed here on its own (format 2) only when
//! its record is in no signed tree: a store opened without the key, or a record committed before
//! trees were signed, whose replay must return the receipt first issued. That happens in the
//! request's own task, after the commit, from the entry's stamp: Ed25519 signatures are
//! deterministic, so a replayed request re-signs the same proof.

use super::keys::{SigningKey, TrustedKeys};
use super::{AuditStamp, Checkpoint, checkpoint_message};
use crate::audit::receipt::{Proof, ReceiptError};
use crate::digest::to_hex;

/// This instance's signing key and the keys it trusts (its own included).
pub struct Notary {
    pub key: SigningKey,
    pub trusted: TrustedKeys,
}

impl Notary {
    pub fn new(key: SigningKey, mut trusted: TrustedKeys) -> Self {
        let (id, public) = key.trusted();
        trusted.add(id, public);
        Notary { key, trusted }
    }

    /// The receipt to answer with: `stored` (the receipt as committed with the record) with its
    /// signed audit proof for the record's entry `stamp`, signed at `at` (unix ms).
    ///
    /// Everything it takes is stored, so a replayed request gets the same bytes back.
    pub fn sign_receipt(
        &self,
        stored: &[u8],
        body_digest: &[u8; 32],
        stamp: AuditStamp,
        at: i64,
    ) -> Result<Vec<u8>, ReceiptError> {
        let proof = Proof {
            seq: stamp.seq,
            entry_hash: to_hex(&stamp.hash),
            body_digest: to_hex(body_digest),
            signed_at: crate::clock::rfc3339_ms(at),
            key_id: self.key.id().to_owned(),
            // `seal` sets the format it signs in, and the signature.
            format: None,
            signature: String::new(),
        };
        crate::audit::receipt::seal(stored, proof, |message| self.key.sign(message))
    }

    /// A signed checkpoint of `head`.
    pub fn checkpoint(&self, head: AuditStamp, at: i64) -> Checkpoint {
        let message = checkpoint_message(head.seq, &head.hash, at, self.key.id());
        Checkpoint {
            seq: head.seq,
            hash: head.hash,
            at,
            key_id: self.key.id().to_owned(),
            signature: self.key.sign(&message),
        }
    }
}
