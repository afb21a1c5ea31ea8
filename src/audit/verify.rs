//! Verifying the chain: every hash, every link, every checkpoint signature; and every signed
//! receipt tree against the receipts stored with its records ([`check_receipt_tree`]).
//!
//! The verifier is fed entries in `seq` order (from the store or from an export file) and stops
//! at the first one that does not hold, naming it and saying why. It keeps only the previous
//! entry's stamp and the checkpoints, so a long log verifies in constant memory.

use std::collections::BTreeMap;
use std::fmt;

use super::keys::{SignatureError, TrustedKeys};
use super::receipt::{ReceiptError, StoredReceipt, TreeHead};
use super::{AuditEntry, AuditStamp, Checkpoint, GENESIS, checkpoint_message, entry_hash};
use crate::digest::to_hex;

/// What failed, naming the entry or checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyFailure {
    /// The entry's stored hash is not the hash of its contents: it was changed.
    HashMismatch { seq: i64 },
    /// The entry's `prev_hash` is not the previous entry's hash.
    BrokenLink { seq: i64 },
    /// One or more entries are missing before `seq`.
    Gap { expected: i64, found: i64 },
    /// An entry appears where a later one was expected (reordered or repeated).
    OutOfOrder { expected: i64, found: i64 },
    /// A checkpoint signed a different hash for this entry.
    CheckpointMismatch { seq: i64, key_id: String },
    /// A checkpoint's signature is invalid or by an untrusted key.
    BadCheckpoint { seq: i64, key_id: String, why: SignatureError },
    /// Entries covered by a checkpoint are missing at the end of the chain.
    Truncated { last: i64, checkpoint: i64 },
    /// The first entry of a full chain does not start from the beginning.
    BadStart { seq: i64 },
    /// A group commit's signed receipt tree does not hold, named by its first entry.
    ReceiptTree { first_seq: i64, why: TreeProblem },
}

/// Why a signed receipt tree does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeProblem {
    /// Its head's signature is invalid or by an untrusted key.
    Signature(String),
    /// It signed `signed` receipts, but the store holds `stored` in its range.
    Size { signed: u64, stored: u64 },
    /// Its first receipt is not the record of entry `first_seq`.
    FirstEntry { found: Option<i64> },
    /// The stored receipts do not make its signed root.
    Root,
    /// A stored receipt cannot be read as one.
    Unreadable(String),
}

impl fmt::Display for TreeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeProblem::Signature(why) => write!(f, "its head's signature does not hold: {why}"),
            TreeProblem::Size { signed, stored } => {
                write!(f, "it signed {signed} receipts but the store holds {stored} (a record was added or removed)")
            }
            TreeProblem::FirstEntry { found: Some(seq) } => {
                write!(f, "its first receipt is entry {seq}'s (a record was moved or removed)")
            }
            TreeProblem::FirstEntry { found: None } => write!(f, "the store holds none of its receipts"),
            TreeProblem::Root => {
                write!(f, "the stored receipts do not make its signed root (a stored receipt or its entry was changed)")
            }
            TreeProblem::Unreadable(why) => write!(f, "a stored receipt cannot be read: {why}"),
        }
    }
}

/// Checks a group commit's signed receipt tree `head` against `receipts`, the receipts stored
/// with the records of its range in audit order: a trusted key signed the head, the store holds
/// as many receipts as it signed, starting at its first entry, and their leaves make its root.
pub fn check_receipt_tree(
    head: &TreeHead,
    receipts: &[StoredReceipt],
    keys: &TrustedKeys,
) -> Result<(), VerifyFailure> {
    let failed = |why| VerifyFailure::ReceiptTree { first_seq: head.first_seq, why };
    head.check_signature(keys).map_err(|e: ReceiptError| failed(TreeProblem::Signature(e.to_string())))?;
    if receipts.len() as u64 != head.size {
        return Err(failed(TreeProblem::Size { signed: head.size, stored: receipts.len() as u64 }));
    }
    let first = receipts.first().map(|r| r.stamp.seq);
    if first != Some(head.first_seq) {
        return Err(failed(TreeProblem::FirstEntry { found: first }));
    }
    let tree =
        super::receipt::tree_of(receipts, head.signer()).map_err(|e| failed(TreeProblem::Unreadable(e.to_string())))?;
    if tree.root() != head.root {
        return Err(failed(TreeProblem::Root));
    }
    Ok(())
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyFailure::HashMismatch { seq } => {
                write!(f, "entry {seq}: its hash does not match its contents (the entry was changed)")
            }
            VerifyFailure::BrokenLink { seq } => {
                write!(
                    f,
                    "entry {seq}: prev_hash is not the hash of entry {} (the chain was cut or spliced here)",
                    seq - 1
                )
            }
            VerifyFailure::Gap { expected, found } => {
                write!(f, "entry {expected} is missing: the chain jumps from entry {} to entry {found}", expected - 1)
            }
            VerifyFailure::OutOfOrder { expected, found } => {
                write!(f, "entry {found} appears where entry {expected} belongs (entries were reordered or repeated)")
            }
            VerifyFailure::CheckpointMismatch { seq, key_id } => {
                write!(f, "entry {seq}: differs from what the checkpoint signed by key {key_id} attests")
            }
            VerifyFailure::BadCheckpoint { seq, key_id, why } => {
                write!(f, "checkpoint at entry {seq} (key {key_id}): {why}")
            }
            VerifyFailure::Truncated { last, checkpoint } => write!(
                f,
                "entries {} to {checkpoint} are missing: a checkpoint covers entry {checkpoint} but the chain ends at entry {last}",
                last + 1
            ),
            VerifyFailure::BadStart { seq } => write!(f, "the chain starts at entry {seq}, not at entry 1"),
            VerifyFailure::ReceiptTree { first_seq, why } => {
                write!(f, "the signed receipt tree from entry {first_seq}: {why}")
            }
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub entries: u64,
    pub checkpoints: u64,
    pub first: Option<i64>,
    pub last: Option<AuditStamp>,
    /// The signed receipt trees checked (a store's, not an export's).
    pub receipt_trees: u64,
}

/// Where the verified range starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The whole chain: entry 1, linked to the genesis hash.
    Beginning,
    /// A range (an export with `--from`): its first entry's link is taken as given.
    Anywhere,
}

/// Checks a chain fed to it entry by entry.
pub struct ChainVerifier {
    checkpoints: BTreeMap<i64, Checkpoint>,
    start: Start,
    prev: Option<AuditStamp>,
    summary: Summary,
}

impl ChainVerifier {
    /// Checks every checkpoint's signature first; entries are checked as they come.
    pub fn new(keys: &TrustedKeys, checkpoints: Vec<Checkpoint>, start: Start) -> Result<Self, VerifyFailure> {
        let mut by_seq = BTreeMap::new();
        for c in checkpoints {
            let message = checkpoint_message(c.seq, &c.hash, c.at, &c.key_id);
            keys.verify(&c.key_id, &message, &c.signature).map_err(|why| VerifyFailure::BadCheckpoint {
                seq: c.seq,
                key_id: c.key_id.clone(),
                why,
            })?;
            by_seq.insert(c.seq, c);
        }
        let checkpoints = by_seq.len() as u64;
        Ok(ChainVerifier {
            checkpoints: by_seq,
            start,
            prev: None,
            summary: Summary { entries: 0, checkpoints, first: None, last: None, receipt_trees: 0 },
        })
    }

    /// Checks the next entry.
    pub fn entry(&mut self, e: &AuditEntry) -> Result<(), VerifyFailure> {
        match self.prev {
            Some(prev) => {
                let expected = prev.seq + 1;
                if e.seq > expected {
                    return Err(VerifyFailure::Gap { expected, found: e.seq });
                }
                if e.seq < expected {
                    return Err(VerifyFailure::OutOfOrder { expected, found: e.seq });
                }
                if e.prev_hash != prev.hash {
                    return Err(VerifyFailure::BrokenLink { seq: e.seq });
                }
            }
            None => {
                if self.start == Start::Beginning {
                    if e.seq != 1 {
                        return Err(if e.seq > 1 {
                            VerifyFailure::Gap { expected: 1, found: e.seq }
                        } else {
                            VerifyFailure::BadStart { seq: e.seq }
                        });
                    }
                    if e.prev_hash != GENESIS {
                        return Err(VerifyFailure::BrokenLink { seq: e.seq });
                    }
                }
                self.summary.first = Some(e.seq);
            }
        }
        if entry_hash(&e.prev_hash, e.seq, &e.event) != e.hash {
            return Err(VerifyFailure::HashMismatch { seq: e.seq });
        }
        if let Some(c) = self.checkpoints.get(&e.seq)
            && c.hash != e.hash
        {
            return Err(VerifyFailure::CheckpointMismatch { seq: e.seq, key_id: c.key_id.clone() });
        }
        self.prev = Some(AuditStamp { seq: e.seq, hash: e.hash });
        self.summary.entries += 1;
        Ok(())
    }

    /// Ends the check: every checkpoint must have met its entry.
    pub fn finish(mut self) -> Result<Summary, VerifyFailure> {
        let last = self.prev.map_or(0, |p| p.seq);
        let first = self.summary.first.unwrap_or(1);
        // In a range, only checkpoints inside it are checked against entries.
        if let Some((&seq, _)) = self.checkpoints.range(first..).find(|(seq, _)| **seq > last)
            && (self.start == Start::Beginning || self.summary.entries > 0)
        {
            return Err(VerifyFailure::Truncated { last, checkpoint: seq });
        }
        if self.start == Start::Anywhere {
            self.summary.checkpoints = self.checkpoints.range(first..=last).count() as u64;
        }
        self.summary.last = self.prev;
        Ok(self.summary)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.first, self.last) {
            (Some(first), Some(last)) => write!(
                f,
                "{} entries ({first} to {}) and {} checkpoint signatures verified; head hash {}",
                self.entries,
                last.seq,
                self.checkpoints,
                to_hex(&last.hash)
            ),
            _ => write!(f, "the chain is empty; {} checkpoint signatures verified", self.checkpoints),
        }?;
        match self.receipt_trees {
            0 => Ok(()),
            n => write!(f, "; {n} signed receipt trees verified against the stored receipts"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::SigningKey;
    use super::super::{AuditEvent, chain};
    use super::*;

    fn setup(n: i64) -> (Vec<AuditEntry>, SigningKey, TrustedKeys) {
        let entries = chain(
            AuditStamp { seq: 0, hash: GENESIS },
            (1..=n).map(|i| AuditEvent::new(1_000 + i, "record.accepted", "p", "accepted")),
        );
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(&dir.path().join("k")).unwrap();
        let mut keys = TrustedKeys::default();
        let (id, public) = key.trusted();
        keys.add(id, public);
        (entries, key, keys)
    }

    fn checkpoint(key: &SigningKey, e: &AuditEntry) -> Checkpoint {
        let at = 5_000;
        Checkpoint {
            seq: e.seq,
            hash: e.hash,
            at,
            key_id: key.id().to_owned(),
            signature: key.sign(&checkpoint_message(e.seq, &e.hash, at, key.id())),
        }
    }

    fn verify(
        entries: &[AuditEntry],
        keys: &TrustedKeys,
        checkpoints: Vec<Checkpoint>,
    ) -> Result<Summary, VerifyFailure> {
        let mut v = ChainVerifier::new(keys, checkpoints, Start::Beginning)?;
        for e in entries {
            v.entry(e)?;
        }
        v.finish()
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let (entries, key, keys) = setup(10);
        let summary =
            verify(&entries, &keys, vec![checkpoint(&key, &entries[4]), checkpoint(&key, &entries[9])]).unwrap();
        assert_eq!((summary.entries, summary.checkpoints), (10, 2));
    }

    #[test]
    fn every_kind_of_tampering_is_named() {
        let (entries, key, keys) = setup(10);
        let cps = || vec![checkpoint(&key, &entries[7])];

        let mut changed = entries.clone();
        changed[3].event.actor = "q".into();
        assert_eq!(verify(&changed, &keys, cps()), Err(VerifyFailure::HashMismatch { seq: 4 }));

        let mut deleted = entries.clone();
        deleted.remove(5);
        assert_eq!(verify(&deleted, &keys, cps()), Err(VerifyFailure::Gap { expected: 6, found: 7 }));

        let mut swapped = entries.clone();
        swapped.swap(2, 3);
        assert_eq!(verify(&swapped, &keys, cps()), Err(VerifyFailure::Gap { expected: 3, found: 4 }));

        let cut = &entries[..6];
        assert_eq!(verify(cut, &keys, cps()), Err(VerifyFailure::Truncated { last: 6, checkpoint: 8 }));

        let mut forged = checkpoint(&key, &entries[7]);
        forged.hash = entries[6].hash;
        assert!(matches!(verify(&entries, &keys, vec![forged]), Err(VerifyFailure::BadCheckpoint { seq: 8, .. })));

        // A rewritten chain (every hash recomputed after a change) still contradicts the checkpoint.
        let mut events: Vec<AuditEvent> = entries.iter().map(|e| e.event.clone()).collect();
        events[2].outcome = "rejected".into();
        let rewritten = chain(AuditStamp { seq: 0, hash: GENESIS }, events);
        assert!(matches!(verify(&rewritten, &keys, cps()), Err(VerifyFailure::CheckpointMismatch { seq: 8, .. })));
    }
}
