//! The notary: signs receipts and checkpoints with this instance's key.
//!
//! Receipts are signed in the request's own task, after the commit, from the entry's stamp:
//! Ed25519 signatures are deterministic, so a replayed request re-signs the same proof without
//! the writer thread ever doing the (comparatively slow) signing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::keys::{SigningKey, TrustedKeys};
use super::{AuditStamp, Checkpoint, checkpoint_message};
use crate::digest::to_hex;
use crate::receipt::{Proof, ReceiptError};
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::telemetry::events::CheckpointSigned;

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
        crate::receipt::seal(stored, proof, |message| self.key.sign(message))
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

    /// Signs the chain head if it moved since the last checkpoint this instance made.
    pub async fn checkpoint_now(
        &self,
        store: &dyn Store,
        metrics: &Metrics,
        last: &mut i64,
    ) -> Result<(), crate::store::StoreError> {
        let Some(head) = store.audit_head().await? else { return Ok(()) };
        if head.seq <= *last {
            return Ok(());
        }
        let at = crate::clock::now_ms();
        store.add_checkpoint(self.checkpoint(head, at)).await?;
        *last = head.seq;
        CheckpointSigned { seq: head.seq, key_id: self.key.id(), at }.emit(metrics);
        Ok(())
    }
}

/// Signs the chain head every `every` entries or `interval`, whichever comes first, and once
/// more when shutdown is signalled.
pub async fn run_checkpoints(
    notary: Arc<Notary>,
    store: Arc<dyn Store>,
    metrics: Metrics,
    every: u64,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last = store.checkpoints().await.ok().and_then(|c| c.last().map(|c| c.seq)).unwrap_or(0);
    let mut since = tokio::time::Instant::now();
    // Check often enough to notice `every` entries, without reading the head in a busy loop.
    let tick = Duration::from_millis(200).min(interval);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => break,
        }
        let due_by_time = since.elapsed() >= interval;
        let head = match store.audit_head().await {
            Ok(Some(h)) => h.seq,
            _ => continue,
        };
        if head > last && (due_by_time || (head - last) as u64 >= every) {
            if let Err(error) = notary.checkpoint_now(store.as_ref(), &metrics, &mut last).await {
                tracing::warn!(message = "Signing an audit checkpoint failed.", %error);
            }
            since = tokio::time::Instant::now();
        } else if due_by_time {
            since = tokio::time::Instant::now();
        }
    }
    if let Err(error) = notary.checkpoint_now(store.as_ref(), &metrics, &mut last).await {
        tracing::warn!(message = "Signing the final audit checkpoint failed.", %error);
    }
}
