//! The audit trail: a hash chain of everything that happened, signed, without personal data.
//!
//! Every event (a record accepted, each delivery attempt, a replay, a configuration loaded,
//! rejections counted per sender, reason and minute, a request answered) becomes an
//! [`AuditEntry`]. Each entry is linked to the one before by `prev_hash`, and its `hash` covers
//! the link and the entry's canonical bytes, so changing, removing or reordering any entry breaks
//! every hash after it. The gateway periodically signs the chain head ([`Checkpoint`]) and signs
//! every receipt, so entries after the last checkpoint are protected by the receipts partners hold.
//!
//! # The canonical form (to recompute a hash with another program)
//!
//! An entry's canonical bytes are the UTF-8 JSON serialisation of an object holding exactly these
//! members, with keys sorted, no whitespace, and strings escaped as RFC 8785 (JCS) does:
//!
//! | member | type | present |
//! |---|---|---|
//! | `seq` | integer, from 1, no gaps | always |
//! | `at` | string, RFC 3339 UTC with milliseconds, e.g. `2026-11-29T17:04:05.123Z` | always |
//! | `kind` | string, e.g. `record.accepted` | always |
//! | `actor` | string: the partner, `gateway`, or `operator` | always |
//! | `outcome` | string | always |
//! | `count` | integer (1 except for aggregated rejections) | always |
//! | `record_id`, `agreement`, `recipient`, `reason` | string | when set |
//! | `body_digest` | string, 64 lowercase hex characters | when set |
//!
//! `hash = SHA-256(prev_hash || canonical bytes)`, where `prev_hash` is the previous entry's hash
//! as 32 raw bytes (32 zero bytes for entry 1). Hashes are written as lowercase hex.
//!
//! A checkpoint signs `"passerelle:checkpoint:v1:" || canonical({at, hash, key_id, seq})` with
//! Ed25519. A key id is the first 8 bytes of the SHA-256 of the raw public key, in hex.
//!
//! # What a receipt's signature covers
//!
//! A receipt is the JSON object of the `202`; its `audit` member holds `seq`, `entry_hash`,
//! `body_digest`, `signed_at`, `key_id`, `format` and `signature` (see [`crate::audit::receipt`]). Its
//! `audit.format` says which message `audit.signature` (Ed25519, lowercase hex) signs:
//!
//! - **Format 2** (`"format": 2`, every receipt issued now) signs
//!   `"passerelle:receipt:v2:" || canonical(R)`, where `R` is the receipt exactly as received,
//!   parsed as JSON, with the single member `audit.signature` removed. Every other member at every
//!   level is covered: `record_id`, `record_type`, `schema_version`, `sender`, `received_at`,
//!   `deliveries` (each `recipient`, `agreement` and `status`, in order), every member of `audit`
//!   including `format`, and any member a later release adds. `canonical` is the form above
//!   (keys sorted by UTF-16 code units, no whitespace, RFC 8785 string escaping); a receipt holds
//!   only objects, arrays, strings and integers, and integers are written in plain decimal. A
//!   receipt with a duplicate key is refused rather than verified.
//! - **Format 1** (no `format` member: receipts issued before format 2) signs
//!   `"passerelle:receipt:v1:" || canonical({at, body_digest, entry_hash, key_id, record_id,
//!   seq})`, with `at` the receipt's `audit.signed_at` and the other values from `audit` and the
//!   receipt's `record_id`. It does not cover `sender`, `record_type`, `schema_version`,
//!   `received_at` or `deliveries`. Such receipts still verify; the verifier says which fields
//!   the signature leaves out, and checked online it compares them with the gateway's record.
//!
//! - **Format 3** (`"format": 3`, every receipt issued by a gateway that signs its group
//!   commits) is signed with the other receipts committed in the same transaction. Its `audit`
//!   member holds the members of format 2, and `leaf_index`, `proof` (an inclusion proof:
//!   lowercase hex SHA-256 hashes, from the leaf up) and `tree`, the tree of those receipts:
//!   `first_seq` (the audit entry of its first receipt), `size` and `root`.
//!   - The receipt's leaf is [`merkle::leaf_hash`] of `"passerelle:receipt:v3:" ||
//!     canonical(R)`, where `R` is the receipt as received with the three members
//!     `audit.signature`, `audit.proof` and `audit.tree` removed: every other member,
//!     `leaf_index`, `signed_at`, `key_id` and `format` included, is covered.
//!   - `proof` must lead from that leaf, at `leaf_index` in a tree of `tree.size` leaves, to
//!     `tree.root` (RFC 9162 §2.1.3.2; the hashes are RFC 6962's, see [`merkle`]).
//!   - `signature` (Ed25519, by `key_id`) signs the tree head, `"passerelle:receipts:v3:" ||
//!     canonical({first_seq, key_id, root, signed_at, size})` (`root` in hex, `signed_at` and
//!     `key_id` the receipt's), so the size, hence every leaf's place, is bound.
//!
//!   The gateway signs once per group commit instead of once per receipt; the heads, one per
//!   commit in `first_seq` order, are the sequence a transparency log would publish.
//!
//! The prefixes differ, so a signature made for one format never verifies as another:
//! removing or changing `format` on a format-2 receipt only makes its signature fail, and on a
//! format-3 receipt it changes the leaf, which then is not in the signed tree.

pub mod digest;
pub mod export;
pub mod keys;
pub mod merkle;
pub mod notary;
pub mod notice;
pub mod receipt;
pub mod rejections;
pub mod subject;
pub mod verify;

use serde_json::Value;

pub use digest::DigestKey;

use crate::digest::to_hex;

/// `prev_hash` of the first entry.
pub const GENESIS: [u8; 32] = [0; 32];

/// Something to record, before it has a place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Unix ms.
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub record_id: Option<String>,
    pub agreement: Option<String>,
    pub recipient: Option<String>,
    /// HMAC-SHA-256 of the body concerned, under the deployment's digest key.
    pub body_digest: Option<[u8; 32]>,
    pub outcome: String,
    /// A short reason, never a value: an HTTP status, a transport error, a configuration hash.
    pub reason: Option<String>,
    pub count: i64,
}

impl AuditEvent {
    /// An event of `kind` by `actor` with `outcome`, everything else unset.
    pub fn new(at: i64, kind: &str, actor: &str, outcome: &str) -> Self {
        AuditEvent {
            at,
            kind: kind.to_owned(),
            actor: actor.to_owned(),
            record_id: None,
            agreement: None,
            recipient: None,
            body_digest: None,
            outcome: outcome.to_owned(),
            reason: None,
            count: 1,
        }
    }
}

/// An event placed in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub event: AuditEvent,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// Where an entry sits: what a receipt quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditStamp {
    pub seq: i64,
    pub hash: [u8; 32],
}

impl AuditStamp {
    /// The head of an empty chain: the first entry follows it.
    pub const GENESIS: AuditStamp = AuditStamp { seq: 0, hash: GENESIS };
}

/// The canonical bytes of an entry (see the module documentation).
///
/// Written member by member in the canonical key order rather than through a JSON map: the
/// store writer hashes every entry it appends, one at a time, and this was most of that work.
pub fn canonical_bytes(seq: i64, e: &AuditEvent) -> Vec<u8> {
    /// A member's value: every one is a string, an integer or a digest written as hex.
    enum Member<'a> {
        Text(&'a str),
        Int(i64),
        Digest(&'a [u8; 32]),
    }
    let at = crate::clock::rfc3339_ms(e.at);
    // Sorted by key (ASCII, so UTF-8 and UTF-16 order agree); absent members are left out.
    let members = [
        ("actor", Some(Member::Text(&e.actor))),
        ("agreement", e.agreement.as_deref().map(Member::Text)),
        ("at", Some(Member::Text(&at))),
        ("body_digest", e.body_digest.as_ref().map(Member::Digest)),
        ("count", Some(Member::Int(e.count))),
        ("kind", Some(Member::Text(&e.kind))),
        ("outcome", Some(Member::Text(&e.outcome))),
        ("reason", e.reason.as_deref().map(Member::Text)),
        ("recipient", e.recipient.as_deref().map(Member::Text)),
        ("record_id", e.record_id.as_deref().map(Member::Text)),
        ("seq", Some(Member::Int(seq))),
    ];
    let mut out = Vec::with_capacity(256);
    for (key, value) in members.into_iter().filter_map(|(key, value)| Some((key, value?))) {
        out.push(if out.is_empty() { b'{' } else { b',' });
        crate::json::write_string(key, &mut out);
        out.push(b':');
        match value {
            Member::Text(text) => crate::json::write_string(text, &mut out),
            Member::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Member::Digest(d) => {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                out.push(b'"');
                for b in d {
                    out.extend_from_slice(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]);
                }
                out.push(b'"');
            }
        }
    }
    out.push(b'}');
    out
}

/// The hash of entry `seq` holding `event`, linked to `prev_hash`.
pub fn entry_hash(prev_hash: &[u8; 32], seq: i64, event: &AuditEvent) -> [u8; 32] {
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    hash.update(prev_hash);
    hash.update(&canonical_bytes(seq, event));
    let mut out = [0u8; 32];
    out.copy_from_slice(hash.finish().as_ref());
    out
}

/// Appends `events` after the head `(seq, hash)`, returning the new entries.
pub fn chain(head: AuditStamp, events: impl IntoIterator<Item = AuditEvent>) -> Vec<AuditEntry> {
    let mut prev = head;
    events
        .into_iter()
        .map(|event| {
            let seq = prev.seq + 1;
            let hash = entry_hash(&prev.hash, seq, &event);
            let entry = AuditEntry { seq, event, prev_hash: prev.hash, hash };
            prev = AuditStamp { seq, hash };
            entry
        })
        .collect()
}

/// A signed statement that the chain's entry `seq` has `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: [u8; 32],
    /// Unix ms.
    pub at: i64,
    pub key_id: String,
    pub signature: Vec<u8>,
}

/// The bytes a checkpoint's signature covers.
pub fn checkpoint_message(seq: i64, hash: &[u8; 32], at: i64, key_id: &str) -> Vec<u8> {
    let body =
        serde_json::json!({"seq": seq, "hash": to_hex(hash), "at": crate::clock::rfc3339_ms(at), "key_id": key_id});
    [b"passerelle:checkpoint:v1:".as_slice(), &crate::json::to_canonical_vec(&body)].concat()
}

/// The bytes a format-1 receipt's signature covers: `record_id` and the audit proof, nothing
/// else. The gateway no longer signs this message; verifiers keep it so old receipts still check.
pub fn receipt_message_v1(
    record_id: &str,
    body_digest: &[u8; 32],
    stamp: AuditStamp,
    at: i64,
    key_id: &str,
) -> Vec<u8> {
    let body = serde_json::json!({
        "record_id": record_id,
        "body_digest": to_hex(body_digest),
        "seq": stamp.seq,
        "entry_hash": to_hex(&stamp.hash),
        "at": crate::clock::rfc3339_ms(at),
        "key_id": key_id,
    });
    [b"passerelle:receipt:v1:".as_slice(), &crate::json::to_canonical_vec(&body)].concat()
}

/// The bytes a format-2 receipt's signature covers: the whole receipt (a JSON object with an
/// `audit` object) except `audit.signature`, so that no field can change unnoticed, including
/// fields a later release adds.
pub fn receipt_message_v2(receipt: &Value) -> Vec<u8> {
    let mut signed = receipt.clone();
    if let Some(audit) = signed.get_mut("audit").and_then(Value::as_object_mut) {
        audit.remove("signature");
    }
    [b"passerelle:receipt:v2:".as_slice(), &crate::json::to_canonical_vec(&signed)].concat()
}

/// The hash of a format-3 receipt's leaf: everything in the receipt but `audit.signature`,
/// `audit.proof` and `audit.tree` (see the module documentation).
pub fn receipt_leaf_v3(receipt: &Value) -> merkle::Hash {
    const LEFT_OUT: [&str; 3] = ["signature", "proof", "tree"];
    let leaf_of = |leaf: &Value| {
        merkle::leaf_hash(&[b"passerelle:receipt:v3:".as_slice(), &crate::json::to_canonical_vec(leaf)].concat())
    };
    // The writer hashes receipts that have none of those members yet: no copy is needed.
    let audit = receipt.get("audit").and_then(Value::as_object);
    if audit.is_none_or(|a| !LEFT_OUT.iter().any(|k| a.contains_key(*k))) {
        return leaf_of(receipt);
    }
    let mut leaf = receipt.clone();
    if let Some(audit) = leaf.get_mut("audit").and_then(Value::as_object_mut) {
        for member in LEFT_OUT {
            audit.remove(member);
        }
    }
    leaf_of(&leaf)
}

/// The bytes a tree head's signature covers: where the tree starts, how many receipts it holds,
/// its root, when and by which key it was signed.
pub fn tree_head_message(first_seq: i64, size: u64, root: &merkle::Hash, signed_at: i64, key_id: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "first_seq": first_seq,
        "size": size,
        "root": to_hex(root),
        "signed_at": crate::clock::rfc3339_ms(signed_at),
        "key_id": key_id,
    });
    [b"passerelle:receipts:v3:".as_slice(), &crate::json::to_canonical_vec(&body)].concat()
}

/// The kinds of entries, as written in `kind`.
pub mod kind {
    pub const RECORD_ACCEPTED: &str = "record.accepted";
    pub const RECORDS_REJECTED: &str = "records.rejected";
    pub const DELIVERY_DELIVERED: &str = "delivery.delivered";
    pub const DELIVERY_RETRIED: &str = "delivery.retried";
    pub const DELIVERY_DEAD: &str = "delivery.dead";
    pub const DELIVERY_REPLAYED: &str = "delivery.replayed";
    pub const REQUEST_ANSWERED: &str = "request.answered";
    pub const CONFIG_LOADED: &str = "config.loaded";
    pub const BODIES_PURGED: &str = "bodies.purged";
    /// Bodies stored in plaintext sealed in place (`passerelle store encrypt`); `count` of them.
    pub const BODIES_SEALED: &str = "bodies.sealed";
    /// Data keys re-wrapped under a new key-encryption key (`passerelle store rotate-key`);
    /// `reason` names the keys' ids from and to.
    pub const KEYS_REWRAPPED: &str = "keys.rewrapped";
    /// Data keys destroyed by the purge (crypto-shredding); `reason` names them.
    pub const KEYS_DESTROYED: &str = "keys.destroyed";
    /// A completion notice committed for delivery to a record's sender (its `record_id` is the
    /// notice's own record; `reason` names the record it reports on and the kind).
    pub const NOTICE_ISSUED: &str = "notice.issued";
    /// An operator read a page of the audit trail; `count` entries, `reason` their seq range.
    pub const AUDIT_READ: &str = "audit.read";
    /// An operator read the access record of a person; `actor` is the operator, `count` the
    /// disclosures answered. Never the subject, nor its digest.
    pub const ACCESS_READ: &str = "access.read";
    /// The purge removed record subjects past the access record's retention; `count` of them.
    pub const ACCESS_PURGED: &str = "access.purged";
    /// An operator read a stored body (a record as posted, or a delivery as its recipient
    /// receives it); `actor` is the operator, `record_id` the record, `recipient` and
    /// `agreement` the delivery's. Never the body, nor its digest.
    pub const BODY_READ: &str = "body.read";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256;

    fn event(n: i64) -> AuditEvent {
        let mut e = AuditEvent::new(1_795_000_000_000 + n, kind::RECORD_ACCEPTED, "on-vital-stats", "accepted");
        e.record_id = Some(format!("r{n}"));
        e.body_digest = Some([n as u8; 32]);
        e
    }

    #[test]
    fn canonical_bytes_are_documented_exactly() {
        let mut e = event(1);
        e.body_digest = Some([0xab; 32]);
        let text = String::from_utf8(canonical_bytes(7, &e)).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"actor":"on-vital-stats","at":"2026-11-18T11:06:40.001Z","body_digest":"{}","count":1,"kind":"record.accepted","outcome":"accepted","record_id":"r1","seq":7}}"#,
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn receipt_messages_are_documented_exactly() {
        let stamp = AuditStamp { seq: 7, hash: [0xab; 32] };
        let v1 = receipt_message_v1("r1", &[0xcd; 32], stamp, 1_795_000_000_001, "0123456789abcdef");
        assert_eq!(
            String::from_utf8(v1).unwrap(),
            format!(
                r#"passerelle:receipt:v1:{{"at":"2026-11-18T11:06:40.001Z","body_digest":"{}","entry_hash":"{}","key_id":"0123456789abcdef","record_id":"r1","seq":7}}"#,
                "cd".repeat(32),
                "ab".repeat(32)
            )
        );
        // Format 2: the whole receipt as received, keys sorted, `audit.signature` left out.
        let receipt: Value = serde_json::from_str(
            r#"{"record_id": "r1", "sender": "on-vital-stats", "deliveries": [{"recipient": "ottawa-city", "agreement": "a", "status": "queued"}],
                "audit": {"seq": 7, "key_id": "k", "format": 2, "signature": "ff00"}}"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(receipt_message_v2(&receipt)).unwrap(),
            r#"passerelle:receipt:v2:{"audit":{"format":2,"key_id":"k","seq":7},"deliveries":[{"agreement":"a","recipient":"ottawa-city","status":"queued"}],"record_id":"r1","sender":"on-vital-stats"}"#
        );
    }

    /// The canonical bytes as an outside verifier recomputes them from an exported line: the
    /// line's members less `type`, `prev_hash` and `hash`, serialised canonically.
    fn canonical_from_the_export(seq: i64, e: &AuditEvent) -> Vec<u8> {
        let entry = AuditEntry { seq, event: e.clone(), prev_hash: GENESIS, hash: GENESIS };
        let Value::Object(mut line) = export::entry_json(&entry) else {
            unreachable!("an exported entry is an object")
        };
        for member in ["type", "prev_hash", "hash"] {
            line.remove(member);
        }
        crate::json::to_canonical_vec(&Value::Object(line))
    }

    proptest::proptest! {
        #[test]
        fn canonical_bytes_are_the_canonical_json_of_the_entry(
            seq in proptest::num::i64::ANY,
            at in -62_135_596_800_000i64..253_402_300_799_999,
            count in proptest::num::i64::ANY,
            texts in proptest::collection::vec(".*", 4),
            set in proptest::collection::vec(proptest::option::of(".*"), 4),
            digest in proptest::option::of(proptest::array::uniform32(0u8..)),
        ) {
            let mut e = AuditEvent::new(at, &texts[0], &texts[1], &texts[2]);
            e.count = count;
            e.record_id = set[0].clone();
            e.agreement = set[1].clone();
            e.recipient = set[2].clone();
            e.reason = set[3].clone().map(|r| r + &texts[3]);
            e.body_digest = digest;
            proptest::prop_assert_eq!(canonical_bytes(seq, &e), canonical_from_the_export(seq, &e));
        }
    }

    #[test]
    fn each_hash_covers_the_link_and_the_entry() {
        let entries = chain(AuditStamp { seq: 0, hash: GENESIS }, (1..=3).map(event));
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(entries[0].prev_hash, GENESIS);
        assert_eq!(entries[1].prev_hash, entries[0].hash);
        let mut input = entries[2].prev_hash.to_vec();
        input.extend(canonical_bytes(3, &entries[2].event));
        assert_eq!(entries[2].hash, sha256(&input));
        let mut changed = entries[1].event.clone();
        changed.outcome = "rejected".into();
        assert_ne!(entry_hash(&entries[1].prev_hash, 2, &changed), entries[1].hash);
    }
}
