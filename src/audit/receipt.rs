//! The receipt a sender gets for an accepted record: what it holds, how the gateway signs it, and
//! how anyone checks it, offline with the gateway's public key or online against its store.
//!
//! A JSON object that grows by adding fields, never by changing them: `record_id`,
//! `record_type`, `schema_version`, `sender`, `received_at`, `deliveries` (`recipient`,
//! `agreement`, `status` as at acceptance, so `queued`), then the `audit` proof: the record's
//! audit entry (`seq`, `entry_hash`), the entry's `body_digest`, `signed_at`, `key_id`, `format`
//! and `signature`.
//!
//! # A receipt binds everything it shows
//!
//! The signature of a **format 2** receipt covers the whole receipt but the signature itself (the
//! exact message is in [`crate::audit`]'s documentation), so a change to any field, or a field
//! added or removed, makes it fail offline, with nothing but the public key. The gateway signs
//! the receipt itself (its canonical JSON), not a summary of it, so a field a later release adds
//! is covered without a new format.
//!
//! Receipts issued before format 2 carry no `format` (**format 1**) and sign only `record_id` and
//! the audit proof. They stay verifiable, because a sender may hold them for years: the verifier
//! checks the format-1 message and says plainly which fields that signature does not cover. The
//! two messages have different prefixes, so stripping `format` from a format 2 receipt does not
//! downgrade it: its signature then fails.
//!
//! # Format 3: one signature per group commit
//!
//! A **format 3** receipt is not signed on its own. The writer, once per group commit, builds a
//! Merkle tree ([`crate::audit::merkle`]) over the leaves of the receipts the commit issues (each
//! leaf covers its whole receipt but the signature, the proof and the tree) in audit order, signs
//! its head ([`TreeHead`]: where it starts, its size, its root, when, by which key) and stores
//! the head in the same transaction. Each receipt keeps every member of format 2 (its
//! `signature` is now the head's) and adds its `leaf_index`, the inclusion `proof` and the
//! `tree` (`first_seq`, `size`, `root`), so that it checks offline with SHA-256 and one Ed25519
//! verification, as format 2 does, while the gateway signs once per commit instead of once per
//! record. The heads, one per
//! commit in `first_seq` order, are what a transparency log would publish; a receipt's inclusion
//! proof stays what it is if one is built over them.
//!
//! Online, [`PresentedReceipt::compare`] also compares a receipt with the one stored with the
//! record (the store keeps it without the proof) and the record's audit entry, and names the
//! first field that differs. That is how a changed field of a format-1 receipt is caught, and how
//! an edited receipt is told from an edited store (the receipt's signature then still holds).

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::audit::keys::{SignatureError, SigningKey, TrustedKeys};
use crate::audit::merkle::{self, Hash, Tree};
use crate::audit::{AuditStamp, receipt_leaf_v3, receipt_message_v1, receipt_message_v2, tree_head_message};
use crate::digest::{decode_hex, to_hex};
use crate::json::JsonError;

/// A record's receipt as the gateway stored it, with the audit entry the receipt quotes: what
/// `passerelle audit verify-receipt` compares a presented receipt with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReceipt {
    /// The receipt as committed, without its audit proof.
    pub receipt: bytes::Bytes,
    /// The record's `record.accepted` entry.
    pub stamp: AuditStamp,
    /// That entry's body digest.
    pub body_digest: Option<[u8; 32]>,
    /// The signed head of the tree the receipt is in (format 3); `None` for a receipt signed on
    /// its own (formats 1 and 2).
    pub tree: Option<TreeHead>,
}

/// The format of the receipts a gateway signs one by one (see the module documentation).
pub const FORMAT: u64 = 2;

/// The format of the receipts a gateway issues in signed trees, one per group commit.
pub const FORMAT_TREE: u64 = 3;

/// The longest inclusion proof read: a tree of 2^32 receipts, far beyond any group commit.
const MAX_PROOF: usize = 32;

/// The signed head of the tree over the receipts one group commit issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    /// The audit entry of the tree's first receipt: where the head sits in the sequence of heads.
    pub first_seq: i64,
    /// How many receipts the tree holds.
    pub size: u64,
    pub root: Hash,
    /// Unix ms.
    pub signed_at: i64,
    pub key_id: String,
    pub signature: Vec<u8>,
}

impl TreeHead {
    /// The head of `tree`, whose first receipt is audit entry `first_seq`, signed by `key` at
    /// `signed_at` (unix ms).
    pub fn sign(first_seq: i64, tree: &Tree, signed_at: i64, key: &SigningKey) -> TreeHead {
        let mut head = TreeHead {
            first_seq,
            size: tree.size(),
            root: tree.root(),
            signed_at,
            key_id: key.id().to_owned(),
            signature: Vec::new(),
        };
        head.signature = key.sign(&head.message());
        head
    }

    /// The bytes its signature covers.
    pub fn message(&self) -> Vec<u8> {
        tree_head_message(self.first_seq, self.size, &self.root, self.signed_at, &self.key_id)
    }

    /// Whether a trusted key signed it.
    pub fn check_signature(&self, keys: &TrustedKeys) -> Result<(), ReceiptError> {
        keys.verify(&self.key_id, &self.message(), &self.signature).map_err(|e| match e {
            SignatureError::UnknownKey => ReceiptError::UntrustedKey(self.key_id.clone()),
            SignatureError::Invalid => ReceiptError::TreeSignature,
        })
    }
}

/// Where a receipt sits in its group commit's signed tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inclusion {
    pub head: Arc<TreeHead>,
    /// Its leaf's place in the tree, from 0.
    pub index: u64,
    /// The sibling hashes from its leaf up to the root.
    pub path: Vec<Hash>,
}

/// When and by which key a tree is signed: what each of its receipts shows, and its leaf covers.
#[derive(Debug, Clone, Copy)]
pub struct Signer<'a> {
    /// Unix ms.
    pub signed_at: i64,
    pub key_id: &'a str,
}

impl TreeHead {
    /// When and by which key it was signed.
    pub fn signer(&self) -> Signer<'_> {
        Signer { signed_at: self.signed_at, key_id: &self.key_id }
    }
}

/// The leaf of the receipt `stored` at `index` of a tree `signer` signs: the stored receipt with
/// its format-3 proof but for the three members the leaf does not cover.
pub fn leaf(stored: &StoredReceipt, index: u64, signer: Signer<'_>) -> Result<Hash, ReceiptError> {
    let (_, mut receipt) = stored_members(&stored.receipt)?;
    let proof = TreeProof::new(stored.stamp, &stored.body_digest.unwrap_or_default(), index, signer);
    if let Some(members) = receipt.as_object_mut() {
        // Serialising strings and integers cannot fail.
        members.insert("audit".into(), serde_json::to_value(&proof).unwrap_or_default());
    }
    Ok(receipt_leaf_v3(&receipt))
}

/// The tree over `receipts`, the receipts of one group commit in audit order, as `signer` signs
/// it.
pub fn tree_of(receipts: &[StoredReceipt], signer: Signer<'_>) -> Result<Tree, ReceiptError> {
    let leaves =
        (receipts.iter().enumerate()).map(|(index, r)| leaf(r, index as u64, signer)).collect::<Result<_, _>>()?;
    Ok(Tree::new(leaves))
}

/// [`tree_of`] for the receipts a group commit has just issued: each written by
/// [`Receipt::to_bytes`], so its leaf is made from its bytes, without reading the receipt
/// again. Any other receipt takes [`leaf`]'s way.
pub fn tree_of_issued(receipts: &[StoredReceipt], signer: Signer<'_>) -> Result<Tree, ReceiptError> {
    let leaves = (receipts.iter().enumerate())
        .map(|(index, r)| match issued_leaf(r, index as u64, signer) {
            Some(hash) => Ok(hash),
            None => leaf(r, index as u64, signer),
        })
        .collect::<Result<_, _>>()?;
    Ok(Tree::new(leaves))
}

/// The leaf of a receipt [`Receipt::to_bytes`] wrote, made from its bytes: they are canonical
/// JSON whose first member is `deliveries`, so the canonical leaf is `{"audit":` and the
/// canonical proof, then the receipt's own members. `None` for bytes of another shape (receipts
/// stored before receipts were canonical).
fn issued_leaf(stored: &StoredReceipt, index: u64, signer: Signer<'_>) -> Option<Hash> {
    let receipt = &stored.receipt[..];
    if !is_issued(receipt) {
        return None;
    }
    let mut message = Vec::with_capacity(receipt.len() + 320);
    message.extend_from_slice(b"passerelle:receipt:v3:{\"audit\":");
    // The members of `TreeProof` the leaf covers, in canonical (sorted) order.
    message.extend_from_slice(b"{\"body_digest\":\"");
    message.extend_from_slice(to_hex(&stored.body_digest.unwrap_or_default()).as_bytes());
    message.extend_from_slice(b"\",\"entry_hash\":\"");
    message.extend_from_slice(to_hex(&stored.stamp.hash).as_bytes());
    message.extend_from_slice(format!("\",\"format\":{FORMAT_TREE},\"key_id\":").as_bytes());
    crate::json::write_string(signer.key_id, &mut message);
    message
        .extend_from_slice(format!(",\"leaf_index\":{index},\"seq\":{},\"signed_at\":", stored.stamp.seq).as_bytes());
    crate::json::write_string(&crate::clock::rfc3339_ms(signer.signed_at), &mut message);
    message.extend_from_slice(b"},");
    message.extend_from_slice(&receipt[1..]);
    let hash = merkle::leaf_hash(&message);
    // The shortcut must make the documented leaf; every debug build (the tests) checks it.
    debug_assert_eq!(Some(hash), leaf(stored, index, signer).ok(), "the quick leaf is the leaf");
    Some(hash)
}

/// The `audit` member of a format-3 receipt: format 2's members, then its place in the tree.
/// `signature`, `proof` and `tree` are left out of its leaf.
#[derive(Debug, Clone, Serialize)]
struct TreeProof {
    seq: i64,
    entry_hash: String,
    body_digest: String,
    signed_at: String,
    key_id: String,
    format: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    leaf_index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    proof: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tree: Option<TreeMember>,
}

impl TreeProof {
    fn new(stamp: AuditStamp, body_digest: &[u8; 32], index: u64, signer: Signer<'_>) -> Self {
        TreeProof {
            seq: stamp.seq,
            entry_hash: to_hex(&stamp.hash),
            body_digest: to_hex(body_digest),
            signed_at: crate::clock::rfc3339_ms(signer.signed_at),
            key_id: signer.key_id.to_owned(),
            format: FORMAT_TREE,
            signature: None,
            leaf_index: index,
            proof: None,
            tree: None,
        }
    }

    /// The whole member, with the head's signature, the proof and the tree.
    fn sealed(stamp: AuditStamp, body_digest: &[u8; 32], inclusion: &Inclusion) -> Self {
        let head = &inclusion.head;
        TreeProof {
            signature: Some(to_hex(&head.signature)),
            proof: Some(inclusion.path.iter().map(|h| to_hex(h)).collect()),
            tree: Some(TreeMember { first_seq: head.first_seq, size: head.size, root: to_hex(&head.root) }),
            ..TreeProof::new(stamp, body_digest, inclusion.index, head.signer())
        }
    }
}

/// A tree as a receipt's `audit.tree` shows it (who signed it when is in `audit`).
#[derive(Debug, Clone, Serialize)]
struct TreeMember {
    first_seq: i64,
    size: u64,
    root: String,
}

/// `stored` (a receipt as committed, without a proof) with the format-3 proof that its record's
/// entry `stamp`, with `body_digest`, is in the signed tree `inclusion` names.
///
/// Nothing is signed here: a replay rebuilds the same inclusion from the store and gets the same
/// bytes.
pub fn seal_in_tree(
    stored: &[u8],
    stamp: AuditStamp,
    body_digest: &[u8; 32],
    inclusion: &Inclusion,
) -> Result<Vec<u8>, ReceiptError> {
    let (was_empty, _) = stored_members(stored)?;
    Ok(append_audit(stored, &TreeProof::sealed(stamp, body_digest, inclusion), was_empty))
}

/// [`seal_in_tree`] for a receipt its commit has just issued, written by [`Receipt::to_bytes`]:
/// canonical JSON whose first member is `deliveries`, so it has no `audit` member and is not
/// read again. A receipt of another shape is read as [`seal_in_tree`] reads it.
pub fn seal_issued_in_tree(
    stored: &[u8],
    stamp: AuditStamp,
    body_digest: &[u8; 32],
    inclusion: &Inclusion,
) -> Result<Vec<u8>, ReceiptError> {
    if !is_issued(stored) {
        return seal_in_tree(stored, stamp, body_digest, inclusion);
    }
    let sealed = append_audit(stored, &TreeProof::sealed(stamp, body_digest, inclusion), false);
    debug_assert_eq!(Some(&sealed), seal_in_tree(stored, stamp, body_digest, inclusion).ok().as_ref());
    Ok(sealed)
}

/// Whether `receipt` has the shape [`Receipt::to_bytes`] writes: canonical JSON, `deliveries`
/// first (a member sorting before it, such as `audit`, would come first).
fn is_issued(receipt: &[u8]) -> bool {
    receipt.starts_with(br#"{"deliveries":"#) && receipt.ends_with(b"}")
}

/// Whether `stored` is a JSON object without an `audit` member (and whether it is empty), with
/// its members.
fn stored_members(stored: &[u8]) -> Result<(bool, Value), ReceiptError> {
    let receipt = crate::json::parse_strict(stored, MAX_DEPTH)?;
    let Some(members) = receipt.as_object() else {
        return Err(ReceiptError::Field { field: "receipt", problem: "is not a JSON object" });
    };
    // A second `audit` member would be a duplicate key: readers could see either proof.
    if members.contains_key("audit") {
        return Err(ReceiptError::Field { field: "audit", problem: "is already present in the stored receipt" });
    }
    Ok((members.is_empty(), receipt))
}

/// The deepest nesting a receipt is read with: it has three levels, and the margin leaves room
/// for later fields while keeping a hostile file from recursing far.
const MAX_DEPTH: usize = 16;

/// One delivery created by the record, as listed on its receipt.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptDelivery<'a> {
    pub recipient: &'a str,
    pub agreement: &'a str,
    pub status: &'static str,
}

/// The receipt's fields, as stored with the record (without the proof).
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
    /// The receipt as stored: canonical JSON (members sorted, `deliveries` first), so the writer
    /// makes its leaf without reading it again ([`tree_of_issued`]).
    ///
    /// Written member by member in canonical order: building a `serde_json::Value` to sort was
    /// 4 % of the request threads' samples at the acceptance burst. A test holds it to the
    /// canonical form of the derived serialisation, so a new member cannot be left out.
    pub fn to_bytes(&self) -> Vec<u8> {
        use crate::json::write_string;
        let mut out = Vec::with_capacity(160 + 96 * self.deliveries.len());
        out.extend_from_slice(b"{\"deliveries\":[");
        for (i, d) in self.deliveries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"agreement\":");
            write_string(d.agreement, &mut out);
            out.extend_from_slice(b",\"recipient\":");
            write_string(d.recipient, &mut out);
            out.extend_from_slice(b",\"status\":");
            write_string(d.status, &mut out);
            out.push(b'}');
        }
        for (name, value) in [
            ("],\"received_at\":", self.received_at.as_str()),
            (",\"record_id\":", self.record_id),
            (",\"record_type\":", self.record_type),
            (",\"schema_version\":", self.schema_version.as_str()),
            (",\"sender\":", self.sender),
        ] {
            out.extend_from_slice(name.as_bytes());
            write_string(value, &mut out);
        }
        out.push(b'}');
        out
    }
}

/// The audit proof added to a receipt as its `audit` member: where the record's entry sits in
/// the chain, and the gateway's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proof {
    pub seq: i64,
    pub entry_hash: String,
    pub body_digest: String,
    pub signed_at: String,
    pub key_id: String,
    /// Which message `signature` covers; absent on format-1 receipts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<u64>,
    pub signature: String,
}

/// Which message a receipt's signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `record_id` and the audit proof only: receipts issued before format 2.
    V1,
    /// Every member of the receipt but `audit.signature`.
    V2,
    /// Every member but `audit.proof` and `audit.tree`, as a leaf of a signed tree.
    V3,
}

/// Why a receipt does not check out, or cannot be signed.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("the receipt is not acceptable JSON: {0}")]
    Json(#[from] JsonError),
    #[error("the receipt is malformed: `{field}` {problem}")]
    Field { field: &'static str, problem: &'static str },
    #[error("`audit.format` is {0}; this verifier knows formats 1, 2 and 3")]
    UnknownFormat(u64),
    #[error("`audit.key_id` names key {0}, which is not trusted")]
    UntrustedKey(String),
    #[error("the receipt body does not match its signature: a field was changed after the gateway signed it")]
    BodyMismatch,
    #[error(
        "the signature does not match the receipt's `record_id` and audit proof as format 1 signs them \
         (`audit.format` absent or 1)"
    )]
    ProofMismatch,
    #[error(
        "the receipt body does not match its signature: it is not in the tree the gateway signed (a field was \
         changed after the gateway signed it, or `audit.proof` or `audit.leaf_index` does not lead to `audit.tree.root`)"
    )]
    NotInTree,
    #[error(
        "the receipt body does not match its signature: the signed tree head (`audit.tree`, `audit.signed_at`, \
         `audit.key_id`) was changed after the gateway signed it"
    )]
    TreeSignature,
}

/// How a receipt differs from the gateway's own record of it (checked online).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Discrepancy {
    #[error("the gateway has no record {record_id} (field `record_id`)")]
    UnknownRecord { record_id: String },
    #[error(
        "field `record_id` does not go with the receipt's audit entry: the gateway's record {record_id} is audit entry {seq}"
    )]
    OtherRecord { record_id: String, seq: i64 },
    #[error("field `{field}` differs from the gateway's record")]
    Differs { field: String },
    #[error("field `{field}` is missing, but the gateway's record has it")]
    Missing { field: String },
    #[error("field `{field}` is not in the gateway's record")]
    Extra { field: String },
    #[error("field `{field}` lists {presented} items where the gateway's record lists {stored}")]
    Length { field: String, presented: usize, stored: usize },
    #[error("the gateway's stored receipt cannot be read: {0}")]
    Unreadable(String),
}

/// `stored` (a receipt as committed, without a proof) with `proof` added as its `audit` member,
/// signed in the current format by `sign`.
///
/// The signature covers the receipt as the sender will parse it. The bytes returned keep the
/// stored member order with `audit` last, which is the same JSON value: the order is not signed.
pub fn seal(stored: &[u8], mut proof: Proof, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> Result<Vec<u8>, ReceiptError> {
    let (was_empty, mut receipt) = stored_members(stored)?;
    proof.format = Some(FORMAT);
    proof.signature = String::new();
    if let Some(members) = receipt.as_object_mut() {
        // Serialising strings and integers cannot fail.
        members.insert("audit".into(), serde_json::to_value(&proof).unwrap_or_default());
    }
    proof.signature = to_hex(&sign(&receipt_message_v2(&receipt)));
    Ok(append_audit(stored, &proof, was_empty))
}

/// `receipt` (a JSON object's bytes) with `"audit": proof` added as its last member.
fn append_audit(receipt: &[u8], proof: &impl Serialize, empty: bool) -> Vec<u8> {
    let proof = serde_json::to_vec(proof).unwrap_or_default();
    let Some(end) = receipt.iter().rposition(|b| *b == b'}') else {
        return receipt.to_vec();
    };
    let mut out = Vec::with_capacity(receipt.len() + proof.len() + 12);
    out.extend_from_slice(&receipt[..end]);
    out.extend_from_slice(if empty { b"\"audit\":".as_slice() } else { b",\"audit\":".as_slice() });
    out.extend_from_slice(&proof);
    out.push(b'}');
    out
}

/// Checks a receipt's signature against `keys`, offline.
pub fn verify(receipt: &[u8], keys: &TrustedKeys) -> Result<PresentedReceipt, ReceiptError> {
    let receipt = PresentedReceipt::parse(receipt)?;
    receipt.check_signature(keys)?;
    Ok(receipt)
}

/// A receipt as a sender presents it for checking: read and decoded, nothing verified yet.
#[derive(Debug, Clone)]
pub struct PresentedReceipt {
    /// The whole receipt, as parsed: what a format-2 signature covers.
    value: Value,
    pub record_id: String,
    pub proof: Proof,
    pub format: Format,
    entry_hash: [u8; 32],
    body_digest: [u8; 32],
    /// Unix ms.
    signed_at: i64,
    signature: Vec<u8>,
    /// Format 3: the leaf's place, its proof and the signed tree head.
    inclusion: Option<Inclusion>,
}

impl PresentedReceipt {
    /// Reads a receipt; every problem names the field it is in.
    pub fn parse(bytes: &[u8]) -> Result<Self, ReceiptError> {
        let value = crate::json::parse_strict(bytes, MAX_DEPTH)?;
        let malformed = |field, problem| move || ReceiptError::Field { field, problem };
        let record_id = value
            .get("record_id")
            .and_then(Value::as_str)
            .ok_or_else(malformed("record_id", "is not a string"))?
            .to_owned();
        let audit = value.get("audit").and_then(Value::as_object).ok_or_else(malformed("audit", "is not an object"))?;
        let tree = audit.get("tree").and_then(Value::as_object);
        // `field` is the member's full name, `audit.<member>` or `audit.tree.<member>`, so that
        // errors name it as written.
        let member = |field: &'static str| match field.strip_prefix("audit.tree.") {
            Some(member) => tree.and_then(|t| t.get(member)),
            None => audit.get(field.trim_start_matches("audit.")),
        };
        let text = |field: &'static str| {
            member(field).and_then(Value::as_str).map(str::to_owned).ok_or_else(malformed(field, "is not a string"))
        };
        let digest = |hex: &str, field: &'static str| {
            decode_hex(hex)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(malformed(field, "is not 64 hexadecimal characters"))
        };
        let format = match audit.get("format") {
            None => Format::V1,
            Some(v) => match v.as_u64() {
                Some(1) => Format::V1,
                Some(2) => Format::V2,
                Some(3) => Format::V3,
                Some(other) => return Err(ReceiptError::UnknownFormat(other)),
                None => return Err(malformed("audit.format", "is not a positive integer")()),
            },
        };
        let proof = Proof {
            seq: audit.get("seq").and_then(Value::as_i64).ok_or_else(malformed("audit.seq", "is not an integer"))?,
            entry_hash: text("audit.entry_hash")?,
            body_digest: text("audit.body_digest")?,
            signed_at: text("audit.signed_at")?,
            key_id: text("audit.key_id")?,
            format: audit.get("format").and_then(Value::as_u64),
            signature: text("audit.signature")?,
        };
        let signed_at = crate::clock::parse_rfc3339_ms(&proof.signed_at)
            .ok_or_else(malformed("audit.signed_at", "is not an RFC 3339 time"))?;
        let signature = decode_hex(&proof.signature).ok_or_else(malformed("audit.signature", "is not hexadecimal"))?;
        // Format 3: the receipt's place in the tree whose head `signature` signs.
        let inclusion = match format {
            Format::V1 | Format::V2 => None,
            Format::V3 => {
                let count = |field: &'static str| {
                    member(field).and_then(Value::as_u64).ok_or_else(malformed(field, "is not a positive integer"))
                };
                let not_hashes = malformed("audit.proof", "is not a list of at most 32 hashes");
                let path = (audit.get("proof").and_then(Value::as_array))
                    .filter(|p| p.len() <= MAX_PROOF)
                    .ok_or_else(not_hashes)?
                    .iter()
                    .map(|h| h.as_str().ok_or_else(not_hashes).and_then(|h| digest(h, "audit.proof")))
                    .collect::<Result<Vec<Hash>, _>>()?;
                let head = TreeHead {
                    first_seq: (member("audit.tree.first_seq").and_then(Value::as_i64))
                        .ok_or_else(malformed("audit.tree.first_seq", "is not an integer"))?,
                    size: count("audit.tree.size")?,
                    root: digest(&text("audit.tree.root")?, "audit.tree.root")?,
                    signed_at,
                    key_id: proof.key_id.clone(),
                    signature: signature.clone(),
                };
                Some(Inclusion { head: Arc::new(head), index: count("audit.leaf_index")?, path })
            }
        };
        Ok(PresentedReceipt {
            record_id,
            entry_hash: digest(&proof.entry_hash, "audit.entry_hash")?,
            body_digest: digest(&proof.body_digest, "audit.body_digest")?,
            signed_at,
            signature,
            inclusion,
            format,
            proof,
            value,
        })
    }

    /// The bytes its signature should cover, by its format (1 or 2).
    fn message(&self) -> Vec<u8> {
        match self.format {
            Format::V1 => {
                let stamp = AuditStamp { seq: self.proof.seq, hash: self.entry_hash };
                receipt_message_v1(&self.record_id, &self.body_digest, stamp, self.signed_at, &self.proof.key_id)
            }
            Format::V2 | Format::V3 => receipt_message_v2(&self.value),
        }
    }

    /// Whether a trusted key signed what this receipt's format covers: for format 3, the tree
    /// head, and the receipt's leaf is in that tree.
    pub fn check_signature(&self, keys: &TrustedKeys) -> Result<(), ReceiptError> {
        if let Some(inclusion) = &self.inclusion {
            let head = &inclusion.head;
            head.check_signature(keys)?;
            let leaf = receipt_leaf_v3(&self.value);
            return match merkle::verify_inclusion(&leaf, inclusion.index, head.size, &inclusion.path, &head.root) {
                true => Ok(()),
                false => Err(ReceiptError::NotInTree),
            };
        }
        keys.verify(&self.proof.key_id, &self.message(), &self.signature).map_err(|e| match (e, self.format) {
            (SignatureError::UnknownKey, _) => ReceiptError::UntrustedKey(self.proof.key_id.clone()),
            (SignatureError::Invalid, Format::V1) => ReceiptError::ProofMismatch,
            (SignatureError::Invalid, _) => ReceiptError::BodyMismatch,
        })
    }

    /// The signed tree head it quotes (format 3).
    pub fn tree(&self) -> Option<&TreeHead> {
        self.inclusion.as_ref().map(|i| &*i.head)
    }

    /// Which record and entry it names, and who signed it when.
    pub fn summary(&self) -> String {
        format!(
            "record {} is audit entry {} (hash {}), signed at {} by key {}",
            self.record_id, self.proof.seq, self.proof.entry_hash, self.proof.signed_at, self.proof.key_id
        )
    }

    /// The top-level fields its signature does not cover: none in format 2.
    pub fn unsigned_fields(&self) -> Vec<&str> {
        match (self.format, self.value.as_object()) {
            (Format::V1, Some(members)) => {
                members.keys().map(String::as_str).filter(|k| !matches!(*k, "record_id" | "audit")).collect()
            }
            _ => Vec::new(),
        }
    }

    /// What its signature covers, in words, for the verdict.
    pub fn coverage(&self) -> String {
        match self.format {
            Format::V2 => "the signature covers every field of the receipt (format 2)".to_owned(),
            Format::V3 => match self.tree() {
                Some(head) => format!(
                    "every field of the receipt is leaf {} of the signed tree of {} receipts from audit entry {} (format 3)",
                    self.inclusion.as_ref().map_or(0, |i| i.index),
                    head.size,
                    head.first_seq
                ),
                None => "format 3".to_owned(),
            },
            Format::V1 => {
                let unsigned: Vec<String> = self.unsigned_fields().iter().map(|f| format!("`{f}`")).collect();
                format!(
                    "format 1: the signature covers only `record_id` and the audit proof, not {}",
                    match unsigned.split_last() {
                        Some((last, [])) => last.clone(),
                        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                        None => "any other field".to_owned(),
                    }
                )
            }
        }
    }

    /// Compares it with the gateway's own record of it: the receipt stored with the record
    /// `record_id` names (`None`: there is no such record) and that record's audit entry.
    ///
    /// The audit entry is compared first, so that a `record_id` changed to another record's is
    /// named as such rather than as the first of that record's fields that happens to differ.
    pub fn compare(&self, stored: Option<&StoredReceipt>) -> Result<(), Discrepancy> {
        let Some(stored) = stored else {
            return Err(Discrepancy::UnknownRecord { record_id: self.record_id.clone() });
        };
        let differs = |field: &str| Err(Discrepancy::Differs { field: field.to_owned() });
        match (stored.stamp.seq != self.proof.seq, stored.stamp.hash != self.entry_hash) {
            (true, true) => {
                return Err(Discrepancy::OtherRecord { record_id: self.record_id.clone(), seq: stored.stamp.seq });
            }
            (true, false) => return differs("audit.seq"),
            (false, true) => return differs("audit.entry_hash"),
            (false, false) => {}
        }
        if stored.body_digest != Some(self.body_digest) {
            return differs("audit.body_digest");
        }
        // A format-3 receipt's tree head must be the one the gateway stored with its commit.
        if let Some(presented) = self.tree()
            && stored.tree.as_ref() != Some(presented)
        {
            return differs("audit.tree");
        }
        let theirs = crate::json::parse_strict(&stored.receipt, MAX_DEPTH)
            .map_err(|e| Discrepancy::Unreadable(e.to_string()))?;
        let (Some(ours), Some(theirs)) = (self.value.as_object(), theirs.as_object()) else {
            return Err(Discrepancy::Unreadable("it is not a JSON object".into()));
        };
        // The proof is not stored (it is derived from the entry, compared above).
        let mut ours = ours.clone();
        ours.remove("audit");
        match first_difference_in_object("", &ours, theirs) {
            Some(discrepancy) => Err(discrepancy),
            None => Ok(()),
        }
    }
}

/// The first member of `ours` that differs from `theirs`, named by its path (`deliveries[1].agreement`).
fn first_difference_in_object(
    path: &str,
    ours: &Map<String, Value>,
    theirs: &Map<String, Value>,
) -> Option<Discrepancy> {
    let name = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    for (key, stored) in theirs {
        match ours.get(key) {
            None => return Some(Discrepancy::Missing { field: name(key) }),
            Some(presented) => {
                if let Some(d) = first_difference(&name(key), presented, stored) {
                    return Some(d);
                }
            }
        }
    }
    ours.keys().find(|k| !theirs.contains_key(*k)).map(|k| Discrepancy::Extra { field: name(k) })
}

fn first_difference(path: &str, ours: &Value, theirs: &Value) -> Option<Discrepancy> {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => first_difference_in_object(path, a, b),
        (Value::Array(a), Value::Array(b)) if a.len() != b.len() => {
            Some(Discrepancy::Length { field: path.to_owned(), presented: a.len(), stored: b.len() })
        }
        (Value::Array(a), Value::Array(b)) => {
            a.iter().zip(b).enumerate().find_map(|(i, (x, y))| first_difference(&format!("{path}[{i}]"), x, y))
        }
        (a, b) if a == b => None,
        _ => Some(Discrepancy::Differs { field: path.to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The receipt written member by member is the canonical form of its derived
        /// serialisation, whatever its strings hold.
        #[test]
        fn receipt_bytes_are_the_canonical_form_of_its_fields(
            texts in proptest::collection::vec(".{0,12}", 8),
            deliveries in 0usize..4,
        ) {
            let receipt = Receipt {
                record_id: &texts[0],
                record_type: &texts[1],
                schema_version: texts[2].clone(),
                sender: &texts[3],
                received_at: texts[4].clone(),
                deliveries: (0..deliveries)
                    .map(|i| ReceiptDelivery { recipient: &texts[5 + i % 2], agreement: &texts[6 + i % 2], status: "queued" })
                    .collect(),
            };
            let derived = crate::json::to_canonical_vec(&serde_json::to_value(&receipt).unwrap());
            proptest::prop_assert_eq!(String::from_utf8(receipt.to_bytes()).unwrap(), String::from_utf8(derived).unwrap());
        }
    }
    use crate::audit::keys::SigningKey;

    const STORED: &str = r#"{"record_id":"r1","record_type":"birth-registration","schema_version":"1.1","sender":"on-vital-stats","received_at":"2026-11-18T11:06:40.001Z","deliveries":[{"recipient":"esdc-sin-registry","agreement":"a1","status":"queued"},{"recipient":"ottawa-city","agreement":"a2","status":"queued"}]}"#;

    fn key() -> (tempfile::TempDir, SigningKey, TrustedKeys) {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(&dir.path().join("key")).unwrap();
        let mut trusted = TrustedKeys::default();
        let (id, public) = key.trusted();
        trusted.add(id, public);
        (dir, key, trusted)
    }

    fn stamp() -> AuditStamp {
        AuditStamp { seq: 7, hash: [0xab; 32] }
    }

    fn unsigned(key: &SigningKey) -> Proof {
        Proof {
            seq: stamp().seq,
            entry_hash: to_hex(&stamp().hash),
            body_digest: to_hex(&[0xcd; 32]),
            signed_at: "2026-11-18T11:06:40.001Z".into(),
            key_id: key.id().to_owned(),
            format: None,
            signature: String::new(),
        }
    }

    fn sealed(key: &SigningKey) -> Value {
        let bytes = seal(STORED.as_bytes(), unsigned(key), |m| key.sign(m)).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn stored() -> StoredReceipt {
        StoredReceipt {
            receipt: bytes::Bytes::from_static(STORED.as_bytes()),
            stamp: stamp(),
            body_digest: Some([0xcd; 32]),
            tree: None,
        }
    }

    fn check(receipt: &Value, keys: &TrustedKeys) -> Result<PresentedReceipt, ReceiptError> {
        verify(receipt.to_string().as_bytes(), keys)
    }

    /// A receipt as the gateway stores it is canonical JSON, and the writer's quick leaf of it
    /// is the documented leaf, whatever its strings hold; a receipt of another shape takes the
    /// documented way.
    #[test]
    fn an_issued_receipt_is_canonical_and_its_quick_leaf_is_the_leaf() {
        let deliveries = [ReceiptDelivery { recipient: "ottawa-city", agreement: "a\"2", status: "queued" }];
        let issued = Receipt {
            record_id: "r1",
            record_type: "naissance-é",
            schema_version: "1.1".into(),
            sender: "on\\vital\u{1}",
            received_at: "2026-11-18T11:06:40.001Z".into(),
            deliveries: deliveries.to_vec(),
        }
        .to_bytes();
        let value: Value = serde_json::from_slice(&issued).unwrap();
        assert_eq!(issued, crate::json::to_canonical_vec(&value), "stored canonical");
        for key_id in ["k1", "clé \"2\""] {
            for (index, signed_at) in [(0, 1_795_000_000_000), (41, 1_795_000_000_001)] {
                let signer = Signer { signed_at, key_id };
                let (new, old) = (StoredReceipt { receipt: issued.clone().into(), ..stored() }, stored());
                assert_eq!(issued_leaf(&new, index, signer), Some(leaf(&new, index, signer).unwrap()));
                assert_eq!(issued_leaf(&old, index, signer), None, "an older receipt is read");
                let trees = (tree_of_issued(&[new.clone(), old.clone()], signer).unwrap().root())
                    == tree_of(&[new, old], signer).unwrap().root();
                assert!(trees, "both ways make one tree");
            }
        }
    }

    #[test]
    fn sealing_adds_the_proof_last_and_signs_the_whole_receipt() {
        let (_dir, key, trusted) = key();
        let bytes = seal(STORED.as_bytes(), unsigned(&key), |m| key.sign(m)).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(&STORED[..STORED.len() - 1]), "the stored bytes come first, unchanged: {text}");
        assert!(text.contains(r#","audit":{"seq":7,"#) && text.contains(r#""format":2,"signature":""#), "{text}");
        let receipt = verify(&bytes, &trusted).unwrap();
        assert_eq!(receipt.format, Format::V2);
        assert!(receipt.unsigned_fields().is_empty());
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        let signature = decode_hex(value["audit"]["signature"].as_str().unwrap()).unwrap();
        assert_eq!(trusted.verify(key.id(), &receipt_message_v2(&value), &signature), Ok(()));
    }

    #[test]
    fn sealing_is_deterministic_so_a_replay_gets_the_same_receipt() {
        let (_dir, key, _) = key();
        let once = seal(STORED.as_bytes(), unsigned(&key), |m| key.sign(m)).unwrap();
        let twice = seal(STORED.as_bytes(), unsigned(&key), |m| key.sign(m)).unwrap();
        assert_eq!(once, twice);
    }

    #[test]
    fn a_stored_receipt_that_is_not_an_object_or_has_a_proof_is_not_signed() {
        let (_dir, key, _) = key();
        assert!(seal(b"[1]", unsigned(&key), |m| key.sign(m)).is_err());
        assert!(seal(br#"{"audit":{}}"#, unsigned(&key), |m| key.sign(m)).is_err());
        let empty = seal(b"{}", unsigned(&key), |m| key.sign(m)).unwrap();
        assert!(serde_json::from_slice::<Value>(&empty).is_ok(), "an empty object still gives JSON");
    }

    #[test]
    fn every_edit_of_a_format_2_receipt_breaks_its_signature() {
        let (_dir, key, trusted) = key();
        let receipt = sealed(&key);
        assert!(check(&receipt, &trusted).is_ok());
        type Edit = (&'static str, fn(&mut Value));
        let edits: [Edit; 8] = [
            ("sender", |r| r["sender"] = "qc-etat-civil".into()),
            ("record_type", |r| r["record_type"] = "death-registration".into()),
            ("schema_version", |r| r["schema_version"] = "1.0".into()),
            ("received_at", |r| r["received_at"] = "2026-11-18T11:06:40.002Z".into()),
            ("a delivery's recipient", |r| r["deliveries"][1]["recipient"] = "toronto-city".into()),
            ("a delivery's agreement", |r| r["deliveries"][0]["agreement"] = "a3".into()),
            ("a delivery removed", |r| drop(r["deliveries"].as_array_mut().unwrap().pop())),
            ("a field added", |r| r["note"] = "added".into()),
        ];
        for (what, edit) in edits {
            let mut forged = receipt.clone();
            edit(&mut forged);
            assert!(matches!(check(&forged, &trusted), Err(ReceiptError::BodyMismatch)), "{what}");
        }
    }

    #[test]
    fn stripping_the_format_does_not_downgrade_a_receipt() {
        let (_dir, key, trusted) = key();
        let mut receipt = sealed(&key);
        receipt["audit"].as_object_mut().unwrap().remove("format");
        assert!(matches!(check(&receipt, &trusted), Err(ReceiptError::ProofMismatch)));
        receipt["audit"]["format"] = 4.into();
        assert!(matches!(check(&receipt, &trusted), Err(ReceiptError::UnknownFormat(4))));
    }

    #[test]
    fn a_format_1_receipt_verifies_and_says_what_it_leaves_unsigned() {
        let (_dir, key, trusted) = key();
        let mut proof = unsigned(&key);
        let message = receipt_message_v1("r1", &[0xcd; 32], stamp(), 1_795_000_000_001, key.id());
        proof.signature = to_hex(&key.sign(&message));
        let mut receipt: Value = serde_json::from_str(STORED).unwrap();
        receipt["audit"] = serde_json::to_value(&proof).unwrap();
        let checked = check(&receipt, &trusted).unwrap();
        assert_eq!(checked.format, Format::V1);
        assert_eq!(checked.unsigned_fields(), ["deliveries", "received_at", "record_type", "schema_version", "sender"]);
        assert!(
            checked
                .coverage()
                .ends_with("not `deliveries`, `received_at`, `record_type`, `schema_version` or `sender`"),
            "{}",
            checked.coverage()
        );
        // What format 1 does sign still holds.
        receipt["record_id"] = "r2".into();
        assert!(matches!(check(&receipt, &trusted), Err(ReceiptError::ProofMismatch)));
    }

    #[test]
    fn malformed_receipts_name_the_field() {
        let (_dir, key, trusted) = key();
        let receipt = sealed(&key);
        let text = receipt.to_string();
        let duplicate = text.replacen(r#""sender":"#, r#""sender":"x","sender":"#, 1);
        assert!(matches!(
            verify(duplicate.as_bytes(), &trusted),
            Err(ReceiptError::Json(JsonError::DuplicateKey { .. }))
        ));
        let mut bad = receipt.clone();
        bad["audit"]["entry_hash"] = "00".into();
        let e = check(&bad, &trusted).unwrap_err();
        assert_eq!(e.to_string(), "the receipt is malformed: `audit.entry_hash` is not 64 hexadecimal characters");
        let mut bad = receipt.clone();
        bad["audit"]["key_id"] = "0000000000000000".into();
        assert_eq!(
            check(&bad, &trusted).unwrap_err().to_string(),
            "`audit.key_id` names key 0000000000000000, which is not trusted"
        );
    }

    #[test]
    fn comparing_with_the_stored_receipt_names_the_first_differing_field() {
        let (_dir, key, _) = key();
        let receipt = sealed(&key);
        let compare = |edit: &dyn Fn(&mut Value)| {
            let mut r = receipt.clone();
            edit(&mut r);
            PresentedReceipt::parse(r.to_string().as_bytes()).unwrap().compare(Some(&stored()))
        };
        assert_eq!(compare(&|_| {}), Ok(()));
        let differs = |field: &str| Err(Discrepancy::Differs { field: field.into() });
        assert_eq!(compare(&|r| r["sender"] = "x".into()), differs("sender"));
        assert_eq!(compare(&|r| r["deliveries"][1]["agreement"] = "x".into()), differs("deliveries[1].agreement"));
        assert_eq!(compare(&|r| r["audit"]["seq"] = 8.into()), differs("audit.seq"));
        assert_eq!(compare(&|r| r["audit"]["entry_hash"] = "00".repeat(32).into()), differs("audit.entry_hash"));
        assert_eq!(compare(&|r| r["audit"]["body_digest"] = "00".repeat(32).into()), differs("audit.body_digest"));
        assert_eq!(
            compare(&|r| drop(r["deliveries"].as_array_mut().unwrap().remove(0))),
            Err(Discrepancy::Length { field: "deliveries".into(), presented: 1, stored: 2 })
        );
        assert_eq!(
            compare(&|r| drop(r.as_object_mut().unwrap().remove("sender"))),
            Err(Discrepancy::Missing { field: "sender".into() })
        );
        assert_eq!(compare(&|r| r["note"] = "x".into()), Err(Discrepancy::Extra { field: "note".into() }));
        // Another record's id: neither the entry nor its hash goes with it.
        let parsed = PresentedReceipt::parse(receipt.to_string().as_bytes()).unwrap();
        let other = StoredReceipt { stamp: AuditStamp { seq: 9, hash: [1; 32] }, ..stored() };
        assert_eq!(parsed.compare(Some(&other)), Err(Discrepancy::OtherRecord { record_id: "r1".into(), seq: 9 }));
        assert_eq!(parsed.compare(None), Err(Discrepancy::UnknownRecord { record_id: "r1".into() }));
    }

    /// A group commit of `n` receipts (STORED with other record ids), from audit entry 7: the
    /// receipts as issued, and what the store keeps of each.
    fn group(key: &SigningKey, n: usize) -> (Vec<Value>, Vec<StoredReceipt>) {
        let stored: Vec<StoredReceipt> = (0..n)
            .map(|i| StoredReceipt {
                receipt: bytes::Bytes::from(STORED.replace(r#""r1""#, &format!(r#""r{i}""#))),
                stamp: AuditStamp { seq: 7 + i as i64, hash: [i as u8; 32] },
                body_digest: Some([0xcd; 32]),
                tree: None,
            })
            .collect();
        let tree = tree_of(&stored, Signer { signed_at: 1_795_000_000_009, key_id: key.id() }).unwrap();
        let head = Arc::new(TreeHead::sign(7, &tree, 1_795_000_000_009, key));
        let issued = stored
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let inclusion = Inclusion { head: head.clone(), index: i as u64, path: tree.proof(i).unwrap() };
                let bytes = seal_in_tree(&r.receipt, r.stamp, &[0xcd; 32], &inclusion).unwrap();
                serde_json::from_slice(&bytes).unwrap()
            })
            .collect();
        let stored = stored.into_iter().map(|r| StoredReceipt { tree: Some((*head).clone()), ..r }).collect();
        (issued, stored)
    }

    #[test]
    fn every_receipt_of_a_group_commit_verifies_by_its_proof_and_the_one_signature() {
        let (_dir, key, trusted) = key();
        let (issued, stored) = group(&key, 5);
        for (i, receipt) in issued.iter().enumerate() {
            let checked = check(receipt, &trusted).unwrap();
            assert_eq!(checked.format, Format::V3);
            assert!(checked.unsigned_fields().is_empty());
            assert_eq!(checked.tree().unwrap().size, 5);
            assert_eq!(checked.compare(Some(&stored[i])), Ok(()));
            assert_eq!(receipt["audit"]["leaf_index"], i);
            assert_eq!(receipt["audit"]["signature"], issued[0]["audit"]["signature"], "one signature");
        }
        assert_eq!(
            (issued[3]["audit"]["format"].as_u64(), issued[3]["audit"]["proof"].as_array().map(Vec::len)),
            (Some(3), Some(3))
        );
        // Every member of a format-2 receipt is still there: a receipt grows, never changes.
        let (two, three) = (sealed(&key), &issued[3]["audit"]);
        for member in two["audit"].as_object().unwrap().keys() {
            assert!(three.get(member).is_some(), "{member}");
        }
        // The same inputs give the same bytes: what a replay relies on.
        let (again, _) = group(&key, 5);
        assert_eq!(issued, again);
    }

    /// An edit of a receipt, named.
    type Edit = (&'static str, fn(&mut Value));

    /// Checks that each of `edits`, made to `receipt`, fails as `expected` says.
    fn each_edit_fails(receipt: &Value, edits: &[Edit], trusted: &TrustedKeys, expected: fn(&ReceiptError) -> bool) {
        for (what, edit) in edits {
            let mut forged = receipt.clone();
            edit(&mut forged);
            let result = check(&forged, trusted);
            assert!(result.as_ref().is_err_and(expected), "{what}: {:?}", result.err());
        }
    }

    #[test]
    fn every_edit_of_a_format_3_receipt_takes_it_out_of_its_tree() {
        let (_dir, key, trusted) = key();
        let (issued, _) = group(&key, 6);
        let edits: [Edit; 8] = [
            ("sender", |r| r["sender"] = "qc-etat-civil".into()),
            ("a delivery's agreement", |r| r["deliveries"][0]["agreement"] = "a3".into()),
            ("a field added", |r| r["note"] = "added".into()),
            ("the entry", |r| r["audit"]["seq"] = 8.into()),
            ("the body digest", |r| r["audit"]["body_digest"] = "00".repeat(32).into()),
            ("the index", |r| r["audit"]["leaf_index"] = 3.into()),
            ("a sibling", |r| r["audit"]["proof"][0] = "00".repeat(32).into()),
            ("a sibling dropped", |r| drop(r["audit"]["proof"].as_array_mut().unwrap().pop())),
        ];
        each_edit_fails(&issued[2], &edits, &trusted, |e| matches!(e, ReceiptError::NotInTree));
        // Another receipt's proof does not fit this one.
        let mut forged = issued[2].clone();
        forged["audit"]["proof"] = issued[3]["audit"]["proof"].clone();
        assert!(matches!(check(&forged, &trusted), Err(ReceiptError::NotInTree)));
        // Lowering the format changes what is checked: the tree's signature is no receipt's.
        let mut forged = issued[2].clone();
        forged["audit"]["format"] = 2.into();
        assert!(matches!(check(&forged, &trusted), Err(ReceiptError::BodyMismatch)));
    }

    #[test]
    fn a_changed_tree_head_fails_its_signature() {
        let (_dir, key, trusted) = key();
        let (issued, stored) = group(&key, 6);
        let edits: [Edit; 5] = [
            ("size", |r| r["audit"]["tree"]["size"] = 7.into()),
            ("first_seq", |r| r["audit"]["tree"]["first_seq"] = 8.into()),
            ("root", |r| r["audit"]["tree"]["root"] = "00".repeat(32).into()),
            ("signed_at", |r| r["audit"]["signed_at"] = "2026-11-18T11:06:40.010Z".into()),
            ("signature", |r| r["audit"]["signature"] = "00".repeat(64).into()),
        ];
        each_edit_fails(&issued[1], &edits, &trusted, |e| matches!(e, ReceiptError::TreeSignature));
        // A size that the proof's shape allows (RFC 9162: 6 and 7 leaves give leaf 1 the same
        // path), signed by the gateway, is still refused, since the signature binds the size.
        let mut forged = issued[1].clone();
        forged["audit"]["tree"]["size"] = 7.into();
        assert!(check(&forged, &trusted).is_err());
        // An untrusted key.
        let (_other_dir, _, others) = self::key();
        assert!(matches!(check(&issued[1], &others), Err(ReceiptError::UntrustedKey(_))));
        // Online, a head that is not the stored one is named.
        let parsed = PresentedReceipt::parse(issued[1].to_string().as_bytes()).unwrap();
        let mut other = stored[1].clone();
        other.tree.as_mut().unwrap().root = [0; 32];
        assert_eq!(parsed.compare(Some(&other)), Err(Discrepancy::Differs { field: "audit.tree".into() }));
    }

    #[test]
    fn a_format_3_leaf_and_tree_head_are_documented_exactly() {
        let (_dir, key, _) = key();
        let (issued, stored) = group(&key, 3);
        let mut leaf = issued[1].clone();
        let audit = leaf["audit"].as_object_mut().unwrap();
        audit.remove("signature");
        audit.remove("proof");
        audit.remove("tree");
        let message = [b"passerelle:receipt:v3:".as_slice(), &crate::json::to_canonical_vec(&leaf)].concat();
        let head = stored[1].tree.clone().unwrap();
        assert_eq!(self::leaf(&stored[1], 1, head.signer()).unwrap(), merkle::leaf_hash(&message));
        assert!(String::from_utf8(message).unwrap().starts_with(&format!(
            r#"passerelle:receipt:v3:{{"audit":{{"body_digest":"{}","entry_hash":"{}","format":3,"key_id":"{}","leaf_index":1,"seq":8,"signed_at":"2026-11-18T11:06:40.009Z"}},"deliveries":"#,
            "cd".repeat(32),
            "01".repeat(32),
            key.id()
        )));
        assert_eq!(
            String::from_utf8(head.message()).unwrap(),
            format!(
                r#"passerelle:receipts:v3:{{"first_seq":7,"key_id":"{}","root":"{}","signed_at":"2026-11-18T11:06:40.009Z","size":3}}"#,
                key.id(),
                to_hex(&head.root)
            )
        );
    }
}
