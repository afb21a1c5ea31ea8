//! Durable state: records, their deliveries, and the audit trail, behind one [`Store`] trait.
//!
//! The trait promises what intake and delivery need and nothing an engine could not do:
//! - [`Store::commit_record`] commits a record, its deliveries (with their projected bodies) and
//!   its audit entry in one transaction, and enforces the uniqueness of (sender,
//!   idempotency key) inside that transaction;
//! - [`Store::claim_due`] leases due deliveries to one worker, the way `FOR UPDATE SKIP LOCKED`
//!   would, so several workers in several processes never attempt the same delivery at once; an
//!   expired lease (a worker that died) makes the delivery claimable again;
//! - [`Store::finish_attempts`] records each attempt's result, only while the worker still holds
//!   the lease; [`Store::settle`] does the same for a pull recipient's acknowledgements, for all
//!   the deliveries it names or none;
//! - [`Store::access`] finds every delivery of the records a subject (a person's identifier,
//!   digested) appears in: the access record, kept for its own retention by [`Store::purge`];
//! - [`Store::find_records`], [`Store::attempts`], [`Store::audit_naming`],
//!   [`Store::audit_range`], [`Store::stats`] and [`Store::body`] serve an operator investigating
//!   a record: each attempt joins its delivery's timeline (`delivery_attempts`) in the
//!   transaction that records its result, and the timeline, like the delivery rows, holds no
//!   body or value and stays when bodies are purged.
//!
//! **Invariant:** nothing is acknowledged before it is committed: `commit_record` resolves only
//! after the transaction (fsync included) has succeeded.
//!
//! # Layout
//!
//! One core, two thin engines. `writer` is the group commit both engines run (the bounded queue,
//! each caller's deadline, the batch drain), `writes` what each write decides; `entries` what each
//! write changes in a delivery row and records in the audit trail; `read` the reads, each
//! one statement; `sql` the SQL they share and the two seams an engine fills (how a value binds,
//! what a column holds); `terms` the ids of the disclosure terms deliveries name (each distinct
//! terms stored once); [`keys`] the key ring that seals bodies at rest; `error` the kinds of
//! failure ([`StoreError`]). [`sqlite`] and
//! [`postgres`] open connections, classify their errors, and run the few statements whose text
//! is their own; `conformance` holds both to one contract.

#[cfg(test)]
pub mod conformance;
mod entries;
mod error;
pub mod keys;
pub mod postgres;
mod read;
mod sql;
pub mod sqlite;
mod terms;
mod writer;
mod writes;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

pub use self::entries::AttemptEffect;
pub use self::error::{StoreError, StoreErrorKind};
pub use self::keys::{KeyCensus, RewrapProgress, SealProgress};
pub use crate::audit::notice::NoticeKind;
use crate::audit::{AuditEntry, AuditEvent, AuditStamp, Checkpoint};

/// A boxed future returned by store operations.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A label the store does not know, for an enum it keeps (or is asked for) as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{label}`")]
pub struct UnknownLabel {
    /// What the label names ("delivery status").
    pub what: &'static str,
    pub label: String,
}

/// One table per enum the store keeps as text: each variant beside its label, from which
/// `as_str`, `FromStr` and `Display` are all made, so the two directions cannot disagree.
macro_rules! labels {
    ($what:literal, $name:ident { $($variant:ident => $label:literal),+ $(,)? }) => {
        impl $name {
            /// Every value, in the table's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownLabel;

            fn from_str(label: &str) -> Result<Self, UnknownLabel> {
                match label {
                    $($label => Ok($name::$variant),)+
                    _ => Err(UnknownLabel { what: $what, label: label.to_owned() }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Queued,
    Retrying,
    Delivered,
    Dead,
}

labels!("delivery status", DeliveryStatus {
    Queued => "queued",
    Retrying => "retrying",
    Delivered => "delivered",
    Dead => "dead",
});

/// One recipient's share of a record, to be stored with it.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub recipient: String,
    pub agreement: String,
    pub ordered: bool,
    /// The canonical projected body, exactly what the recipient will receive.
    pub body: Bytes,
    /// HMAC-SHA-256 of `body`: what the audit trail records for each attempt.
    pub body_digest: [u8; 32],
    /// The data key `body` is sealed under; `None` while it is plaintext (the store seals it).
    pub key_id: Option<String>,
    /// The schema version `body` is in, when the recipient is pinned to another version than
    /// the record was sent in (its body is the record translated); `None`: the record's.
    pub schema_version: Option<String>,
    /// What the delivery discloses and why, for the access record; `None` for a delivery that
    /// discloses nothing of a person (a completion notice). Shared with the configuration's
    /// recipient: the same for every record it receives under one agreement.
    pub terms: Option<std::sync::Arc<DisclosureTerms>>,
    /// The worker of this process that may take the delivery as the record commits, instead of
    /// claiming it later; `None`: stored for any worker to claim.
    pub taker: Option<Arc<dyn Taker>>,
}

/// A delivery's lease: who holds it, and until when (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub worker: String,
    pub until: i64,
}

/// A delivery worker of this process that may take a delivery as its record commits
/// (`delivery::handoff`). The writer offers it the delivery as it stores it, so deliveries are
/// offered in the order their records commit: the order their first attempts must leave in.
pub trait Taker: Send + Sync {
    /// Offers delivery `i` of `record` (its bodies as stored: sealed, if the store seals).
    fn offer(&self, record: &NewRecord, i: usize) -> Offer;
}

impl std::fmt::Debug for dyn Taker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Taker")
    }
}

/// Told the moment a claim reads the store, by a store whose claims run in its writer between
/// its commits (SQLite's; each batch's claims read after its records): every delivery the writer
/// stored before is visible to the claim (or was rolled back), and none it stores after. A worker
/// learns from it which of the deliveries it declined the claim can have seen
/// (`delivery::handoff`). A store whose claims run apart from its commits (PostgreSQL's) never
/// tells, and the worker goes by what it saw before the claim.
pub trait ClaimWitness: Send + Sync {
    fn reading(&self);
}

impl std::fmt::Debug for dyn ClaimWitness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClaimWitness")
    }
}

/// A worker's answer to a delivery offered as its record commits.
pub enum Offer {
    /// Stored under `lease`; once committed, `take` is given the id it was stored under and its
    /// record's audit seq. Dropped instead, the worker lets it go: the batch did not commit, or
    /// the writer cannot know (then the delivery waits for its lease to expire, as after a crash).
    Taken { lease: Lease, take: Box<dyn FnOnce(i64, i64) + Send> },
    /// Stored for the worker's claim. The writer drops this once the commit has ended.
    Declined(Box<dyn Send>),
}

impl ClaimedDelivery {
    /// Delivery `i` of `record` as a worker attempts it, but for the id it will be stored under
    /// (0) and its record's audit seq (0), known once committed, and its `body` if `record`'s is
    /// sealed by now.
    pub fn unclaimed(record: &NewRecord, i: usize) -> Self {
        let d = &record.deliveries[i];
        ClaimedDelivery {
            id: 0,
            record_id: record.record_id.clone(),
            recipient: d.recipient.clone(),
            agreement: d.agreement.clone(),
            sender: record.sender.clone(),
            record_type: record.record_type.clone(),
            schema_version: d.schema_version.clone().unwrap_or_else(|| record.schema_version.clone()),
            traceparent: record.traceparent.clone(),
            tracestate: record.tracestate.clone(),
            body: d.body.clone(),
            body_digest: d.body_digest,
            attempts: 0,
            created_at: record.received_at,
            received_at: record.received_at,
            audit_seq: 0,
        }
    }
}

pub use crate::policy::DisclosureTerms;

/// An accepted record, ready to commit.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub record_id: String,
    pub sender: String,
    pub record_type: String,
    pub schema_version: String,
    /// Unix time in milliseconds.
    pub received_at: i64,
    /// The body as posted.
    pub body: Bytes,
    /// SHA-256 of the body as posted, to tell a replay from a conflicting reuse of a key.
    pub body_sha256: [u8; 32],
    /// HMAC-SHA-256 of the body under the deployment's audit secret: what the audit trail holds.
    pub audit_digest: [u8; 32],
    pub idempotency_key: Option<String>,
    /// The record's hop of its trace (W3C `traceparent`), which its deliveries continue.
    pub traceparent: Option<String>,
    /// The caller's `tracestate`, passed on with every delivery.
    pub tracestate: Option<String>,
    pub deliveries: Vec<NewDelivery>,
    /// The receipt returned to the sender (without its audit proof, which is derived from the
    /// stamp), stored so a replay of the request returns the same receipt.
    pub receipt: Bytes,
    /// The data key `body` is sealed under; `None` while it is plaintext (the store seals it).
    pub key_id: Option<String>,
    /// The record's subjects: HMAC-SHA-256 digests of the values at its schema's subject
    /// identifier fields (`audit::subject`), each once, taken before projection. Never a value.
    pub subjects: Vec<[u8; 32]>,
}

/// What committing a record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Committed; the receipt as stored, the record's audit entry, and where the receipt sits in
    /// its commit's signed tree (`None` when the store signs no trees: the receipt is then
    /// signed on its own), and the ids its deliveries were stored under, in the order of
    /// [`NewRecord::deliveries`].
    Accepted { receipt: Bytes, stamp: AuditStamp, inclusion: Option<Inclusion>, deliveries: Vec<i64> },
    /// The sender already used this idempotency key with the same body: the original receipt
    /// and audit entry (its place in a signed tree is read with [`Store::inclusion`] once this
    /// has committed, since the original may be in the same commit).
    Duplicate { receipt: Bytes, stamp: AuditStamp },
    /// The sender already used this idempotency key with another body; nothing was stored.
    Conflict,
}

pub use crate::audit::receipt::{Inclusion, StoredReceipt, TreeHead};

/// A group commit's signed receipt tree as stored: its head, and the last audit entry its
/// receipts lie up to (they are the records whose entries lie from `head.first_seq` to there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTree {
    pub head: TreeHead,
    pub last_seq: i64,
}

/// A request to lease due deliveries of one recipient.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub recipient: String,
    pub worker: String,
    pub limit: usize,
    /// Unix ms.
    pub now: i64,
    /// Unix ms until which the claim holds.
    pub lease_until: i64,
    /// Strict order: claim only the oldest pending delivery, and only if it is due and free.
    pub head_only: bool,
    /// Told when the claim reads, if the store can say where that is in its commits.
    pub witness: Option<Arc<dyn ClaimWitness>>,
}

/// A leased delivery, with everything needed to attempt it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub record_id: String,
    pub recipient: String,
    pub agreement: String,
    pub sender: String,
    pub record_type: String,
    pub schema_version: String,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub body: Bytes,
    pub body_digest: [u8; 32],
    /// Attempts made before this one.
    pub attempts: u32,
    /// Unix ms when the delivery was created.
    pub created_at: i64,
    /// Unix ms when the gateway accepted the record.
    pub received_at: i64,
    /// The seq of the audit entry that accepted the record.
    pub audit_seq: i64,
}

/// The result of one attempt, to be recorded.
#[derive(Debug, Clone)]
pub struct AttemptUpdate {
    pub delivery_id: i64,
    pub worker: String,
    /// What the audit entry of the attempt names.
    pub record_id: String,
    pub recipient: String,
    pub agreement: String,
    pub body_digest: [u8; 32],
    /// Unix ms.
    pub at: i64,
    pub result: AttemptResult,
    /// How long the attempt took, in ms (`None` for a pull recipient's acknowledgement).
    pub latency_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub enum AttemptResult {
    /// The recipient has it: it answered `status` to a push, or (`None`) acknowledged it in its
    /// mailbox.
    Delivered {
        status: Option<u16>,
    },
    Retry {
        next_attempt_at: i64,
        status: Option<u16>,
        error: String,
    },
    Dead {
        status: Option<u16>,
        error: String,
    },
}

/// A pull recipient's settlement of deliveries leased to it: each delivery it names must still
/// be held under its lease, or nothing changes.
pub struct Settlement {
    pub recipient: String,
    /// The lease the deliveries were taken under (their `claimed_by`).
    pub lease: String,
    pub ids: Vec<i64>,
    /// Unix ms.
    pub at: i64,
    /// What each held delivery's attempt records (an acknowledgement, or a failure decided by the
    /// retry policy from its attempts and age).
    pub decide: Box<dyn Fn(&HeldDelivery) -> AttemptResult + Send + Sync>,
}

/// A delivery a settlement found held under its lease.
#[derive(Debug, Clone)]
pub struct HeldDelivery {
    pub id: i64,
    pub record_id: String,
    pub agreement: String,
    pub body_digest: [u8; 32],
    /// Attempts made before this one.
    pub attempts: u32,
    /// Unix ms when the delivery was created.
    pub created_at: i64,
}

/// What a settlement did.
#[derive(Debug, Clone)]
pub enum Settled {
    /// Every delivery was held: each attempt (its number, from 1, and its result) is recorded and
    /// audited.
    Done(Vec<(u32, AttemptUpdate)>),
    /// These deliveries are not held under the lease (never were, another caller took them after
    /// the lease expired, or they were settled already); nothing changed.
    NotHeld(Vec<i64>),
}

/// One delivery as shown to the record's sender. Times are unix milliseconds; the HTTP layer
/// formats them (`http::store_json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryView {
    pub recipient: String,
    pub agreement: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_attempt_at: Option<i64>,
    pub delivered_at: Option<i64>,
    /// When the next attempt is due, while the delivery is queued or retrying.
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
}

/// A record's overall state, derived from its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordState {
    /// Some delivery is still queued or retrying.
    Pending,
    /// Every delivery is delivered.
    Delivered,
    /// No delivery is pending and at least one is dead.
    Failed,
}

labels!("record state", RecordState {
    Pending => "pending",
    Delivered => "delivered",
    Failed => "failed",
});

impl RecordState {
    /// Whether a record in this state is complete: every one of its deliveries is delivered.
    pub fn is_complete(self) -> bool {
        self == RecordState::Delivered
    }
}

/// Which of a sender's records a page shows (`GET /v1/records?status=`): a state, or whether
/// the record is complete (every delivery delivered, the `delivered` state) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFilter {
    Pending,
    Delivered,
    Failed,
    Complete,
    /// Pending or failed.
    Incomplete,
}

labels!("record filter", RecordFilter {
    Pending => "pending",
    Delivered => "delivered",
    Failed => "failed",
    Complete => "complete",
    Incomplete => "incomplete",
});

impl RecordFilter {
    /// The records it selects, as the state they must be in and the state they must not be in.
    pub fn states(self) -> (Option<RecordState>, Option<RecordState>) {
        match self {
            RecordFilter::Pending => (Some(RecordState::Pending), None),
            RecordFilter::Delivered | RecordFilter::Complete => (Some(RecordState::Delivered), None),
            RecordFilter::Failed => (Some(RecordState::Failed), None),
            RecordFilter::Incomplete => (None, Some(RecordState::Delivered)),
        }
    }
}

/// A record as shown to its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView {
    pub record_id: String,
    pub record_type: String,
    pub schema_version: String,
    /// Unix ms.
    pub received_at: i64,
    pub status: RecordState,
    /// Unix ms of the last delivery, once the record is complete (every delivery delivered, the
    /// `Delivered` state); `None` before. A record without deliveries is complete when received.
    pub completed_at: Option<i64>,
    pub deliveries: Vec<DeliveryView>,
}

/// A page query over a sender's own records, newest first.
#[derive(Debug, Clone)]
pub struct RecordQuery {
    pub sender: String,
    pub status: Option<RecordFilter>,
    /// Only records received at or after this unix ms.
    pub since: Option<i64>,
    /// Continue after this (received_at, record_id) position.
    pub before: Option<(i64, String)>,
    pub limit: usize,
}

/// Which of one sender's records to look at for completion notices.
#[derive(Debug, Clone)]
pub struct NoticeScan {
    pub sender: String,
    /// Only records with a delivery attempted at or after this unix ms (an acknowledgement is an
    /// attempt): a record's notice falls due when one of its deliveries settles.
    pub settled_since: i64,
    pub limit: usize,
}

/// A record due a completion notice it does not have yet: complete (every delivery delivered) and
/// without a `complete` notice, or with a dead delivery and without an `incomplete` notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeDue {
    pub kind: NoticeKind,
    pub record_id: String,
    pub record_type: String,
    pub schema_version: String,
    /// Unix ms.
    pub received_at: i64,
    /// The record's `record.accepted` entry.
    pub audit_seq: i64,
    pub deliveries: Vec<DeliveryView>,
}

/// Pending and dead deliveries of one recipient, for the gauges.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipientBacklog {
    pub recipient: String,
    pub pending: i64,
    /// Unix ms of the oldest pending delivery.
    pub oldest_pending_at: Option<i64>,
    pub dead: i64,
}

/// A filter over deliveries, for operators.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub recipient: Option<String>,
    /// Only the deliveries of this agreement.
    pub agreement: Option<String>,
    /// Only the deliveries this partner sent or receives.
    pub partner: Option<String>,
    /// Only the deliveries of this record.
    pub record_id: Option<String>,
    /// Continue after this delivery id.
    pub after_id: Option<i64>,
    pub limit: usize,
}

impl DeliveryFilter {
    /// The delivery `id` alone (the answer is empty, or holds a later delivery, if it is gone).
    pub fn one(id: i64) -> Self {
        DeliveryFilter { after_id: Some(id.saturating_sub(1)), limit: 1, ..DeliveryFilter::default() }
    }
}

/// A delivery as operators see it (no body). Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAdminView {
    pub id: i64,
    pub record_id: String,
    pub sender: String,
    pub record_type: String,
    pub recipient: String,
    pub agreement: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub replays: u32,
    pub created_at: i64,
    pub last_attempt_at: Option<i64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// Whether the stored body is still there (a purged dead delivery cannot be replayed).
    pub body_kept: bool,
    /// When the next attempt is due, while the delivery is queued or retrying.
    pub next_attempt_at: Option<i64>,
}

/// Which dead deliveries an operator replays.
#[derive(Debug, Clone)]
pub enum ReplayTarget {
    One(i64),
    /// Every dead delivery of one recipient.
    Recipient(String),
}

/// What happened to one delivery asked to be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOutcome {
    Replayed,
    NotFound,
    /// Only dead deliveries are replayed; this one is queued, retrying or delivered.
    NotDead,
    /// The body was purged after its retention; there is nothing to send.
    BodyPurged,
}

labels!("replay outcome", ReplayOutcome {
    Replayed => "replayed",
    NotFound => "not_found",
    NotDead => "not_dead",
    BodyPurged => "body_purged",
});

/// One delivery asked to be replayed, and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayResult {
    pub id: i64,
    /// `None` when no delivery has the id.
    pub recipient: Option<String>,
    pub agreement: Option<String>,
    pub outcome: ReplayOutcome,
}

/// A replay request, recorded in the audit trail.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    pub target: ReplayTarget,
    /// Who asked (the audit actor).
    pub actor: String,
    /// Unix ms.
    pub now: i64,
}

/// Body retention, and the access record's, applied by [`Store::purge`].
#[derive(Debug, Clone, Copy)]
pub struct PurgeRequest {
    /// Unix ms.
    pub now: i64,
    /// Bodies of records and deliveries fully delivered longer ago than this are deleted (ms).
    pub delivered_retention_ms: i64,
    /// Bodies of dead deliveries older than this are deleted (ms).
    pub dead_retention_ms: i64,
    /// The subjects of records accepted longer ago than this are deleted (ms): their
    /// disclosures can no longer be found by person. Independent of the bodies' retention.
    pub access_retention_ms: i64,
}

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub record_bodies: u64,
    pub delivery_bodies: u64,
    /// The data keys destroyed because no body was left under them (crypto-shredding).
    pub keys_destroyed: Vec<String>,
    /// The record subjects removed past the access record's retention.
    pub subjects: u64,
}

/// A page of the disclosures about one subject: the access record of a person.
#[derive(Debug, Clone)]
pub struct AccessQuery {
    /// The subject's digest under the subject key.
    pub subject: [u8; 32],
    /// Continue after this delivery id.
    pub after_id: Option<i64>,
    pub limit: usize,
}

/// One delivery of a record a subject appears in: who received what of it, under which
/// agreement and purpose, when, and where the audit trail says so. Times are unix ms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disclosure {
    pub delivery_id: i64,
    pub record_id: String,
    pub sender: String,
    pub record_type: String,
    /// The version the record was sent in.
    pub schema_version: String,
    /// The version the recipient receives it in (its pin, or the record's).
    pub received_version: String,
    pub recipient: String,
    pub agreement: String,
    /// `None` for a delivery stored before the gateway recorded them.
    pub terms: Option<DisclosureTerms>,
    pub accepted_at: i64,
    /// The seq of the record's `record.accepted` entry.
    pub accepted_seq: i64,
    pub status: DeliveryStatus,
    pub delivered_at: Option<i64>,
    /// The seq of the delivery's `delivery.delivered` entry, once delivered.
    pub delivered_seq: Option<i64>,
}

/// What kind of failure an attempt met, as the attempt timeline keeps it: a label from a
/// fixed set, never the recipient's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The recipient answered 429.
    RateLimited,
    /// The recipient answered 408 or 425, or did not answer in time.
    Timeout,
    /// The recipient answered another 4xx: refused, not retried.
    Refused,
    /// The recipient answered 5xx.
    ServerError,
    /// No answer: the connection, TLS or the transport failed.
    Unreachable,
}

labels!("error class", ErrorClass {
    RateLimited => "rate_limited",
    Timeout => "timeout",
    Refused => "refused",
    ServerError => "server_error",
    Unreachable => "unreachable",
});

/// One attempt of a delivery, as the timeline shows it. Never a body or a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptView {
    pub delivery_id: i64,
    /// From 1.
    pub attempt: u32,
    /// Unix ms.
    pub at: i64,
    /// What the attempt made of the delivery: delivered, retrying or dead.
    pub outcome: DeliveryStatus,
    /// The recipient's HTTP status, if it answered.
    pub status: Option<u16>,
    pub latency_ms: Option<i64>,
    pub error_class: Option<ErrorClass>,
    /// When the next attempt was scheduled, after a retry.
    pub next_attempt_at: Option<i64>,
}

/// Records an operator looks for: by id, by (sender, idempotency key), or by time range,
/// newest first, paged.
#[derive(Debug, Clone, Default)]
pub struct RecordSearch {
    pub record_id: Option<String>,
    pub sender: Option<String>,
    pub idempotency_key: Option<String>,
    pub record_type: Option<String>,
    /// Only records received at or after this unix ms.
    pub from: Option<i64>,
    /// Only records received before this unix ms.
    pub to: Option<i64>,
    /// Continue after this (received_at, record_id) position.
    pub before: Option<(i64, String)>,
    pub limit: usize,
}

/// A record as operators find it: its metadata and the parties of its deliveries, never its
/// values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFound {
    pub record_id: String,
    pub sender: String,
    pub record_type: String,
    pub schema_version: String,
    /// Unix ms.
    pub received_at: i64,
    pub status: RecordState,
    pub idempotency_key: Option<String>,
    /// Whether the record's own body is still stored (not purged).
    pub body_kept: bool,
    /// The seq of its `record.accepted` entry.
    pub audit_seq: i64,
    /// Each delivery's recipient, agreement and status, by delivery id.
    pub deliveries: Vec<(String, String, DeliveryStatus)>,
}

/// Which stored body an operator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRef {
    /// The record as its sender posted it.
    Record(String),
    /// What one recipient receives.
    Delivery(i64),
}

/// Part of the audit trail by time and seq.
#[derive(Debug, Clone)]
pub struct AuditRange {
    /// Entries with a seq above this.
    pub after: i64,
    /// Entries at or after this unix ms.
    pub from: Option<i64>,
    /// Entries before this unix ms.
    pub to: Option<i64>,
    pub limit: usize,
}

/// Counts over a time range from the store, in buckets, for a partner or an agreement or the
/// whole gateway.
#[derive(Debug, Clone)]
pub struct StatsQuery {
    /// Unix ms, inclusive.
    pub from: i64,
    /// Unix ms, exclusive.
    pub to: i64,
    /// Bucket width in ms.
    pub bucket_ms: i64,
    /// Records it sent or deliveries it sent or received.
    pub partner: Option<String>,
    pub agreement: Option<String>,
}

/// One bucket of [`Stats`]; `start` is its unix ms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsBucket {
    pub start: i64,
    pub accepted: i64,
    pub delivered: i64,
    pub retried: i64,
    pub dead: i64,
    /// Sum and count of the attempts' latencies, and the longest, in ms.
    pub latency_sum_ms: i64,
    pub latency_count: i64,
    pub latency_max_ms: i64,
}

/// What the store counted over a range: the buckets that hold anything, oldest first, and the
/// rejections by reason (from the audit trail's per-minute rejection entries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub buckets: Vec<StatsBucket>,
    pub rejected: Vec<(String, i64)>,
}

/// The durable store.
pub trait Store: Send + Sync + 'static {
    /// Commits a record with its deliveries and audit entry in one transaction.
    fn commit_record(&self, record: NewRecord) -> StoreFuture<'_, CommitOutcome>;
    /// Leases due deliveries of one recipient, oldest first.
    fn claim_due(&self, claim: ClaimRequest) -> StoreFuture<'_, Vec<ClaimedDelivery>>;
    /// Records attempt results; updates for leases no longer held are ignored.
    fn finish_attempts(&self, updates: Vec<AttemptUpdate>) -> StoreFuture<'_, ()>;
    /// Records a pull recipient's acknowledgements or failures, all or nothing: if any delivery
    /// named is not held under the lease, nothing changes.
    fn settle(&self, settlement: Settlement) -> StoreFuture<'_, Settled>;
    /// A record and its deliveries, if `sender` sent it.
    fn record(&self, sender: String, record_id: String) -> StoreFuture<'_, Option<RecordView>>;
    /// The receipt stored with a record, whoever sent it, and the record's audit entry.
    fn receipt(&self, record_id: String) -> StoreFuture<'_, Option<StoredReceipt>>;
    /// A page of `sender`'s records.
    fn list_records(&self, query: RecordQuery) -> StoreFuture<'_, Vec<RecordView>>;
    /// Records of one sender due a completion notice, oldest first, each with its deliveries.
    fn notices_due(&self, scan: NoticeScan) -> StoreFuture<'_, Vec<NoticeDue>>;
    /// Pending and dead deliveries per recipient.
    fn backlog(&self) -> StoreFuture<'_, Vec<RecipientBacklog>>;
    /// Whether the store answers.
    fn ping(&self) -> StoreFuture<'_, ()>;
    /// `sqlite` or `postgres`, for probes and metrics.
    fn engine(&self) -> &'static str;

    /// Appends events to the audit chain in one transaction.
    fn append_audit(&self, events: Vec<AuditEvent>) -> StoreFuture<'_, Vec<AuditStamp>>;
    /// The newest entry of the chain.
    fn audit_head(&self) -> StoreFuture<'_, Option<AuditStamp>>;
    /// Up to `limit` entries with `seq > after`, in order.
    fn audit_entries(&self, after: i64, limit: usize) -> StoreFuture<'_, Vec<AuditEntry>>;
    /// Records a signed checkpoint.
    fn add_checkpoint(&self, checkpoint: Checkpoint) -> StoreFuture<'_, ()>;
    /// Every checkpoint, oldest first.
    fn checkpoints(&self) -> StoreFuture<'_, Vec<Checkpoint>>;
    /// Up to `limit` signed receipt trees whose first entry is after `after`, in order.
    fn receipt_trees(&self, after: i64, limit: usize) -> StoreFuture<'_, Vec<StoredTree>>;
    /// The stored receipts of `tree`, in audit order: what its leaves are made of.
    fn tree_receipts(&self, tree: StoredTree) -> StoreFuture<'_, Vec<StoredReceipt>>;
    /// Where the receipt of the record whose entry is `seq` sits in its signed tree, rebuilt
    /// from the stored receipts (for a replayed request); `None` if no tree holds it.
    fn inclusion(&self, seq: i64) -> StoreFuture<'_, Option<Inclusion>>;
    /// Deliveries matching `filter`, oldest first.
    fn deliveries(&self, filter: DeliveryFilter) -> StoreFuture<'_, Vec<DeliveryAdminView>>;
    /// Requeues dead deliveries for one more round of attempts, each audited.
    fn replay(&self, request: ReplayRequest) -> StoreFuture<'_, Vec<ReplayResult>>;
    /// Deletes bodies past their retention, then destroys the data keys no body is left under;
    /// deletes record subjects past the access record's retention; metadata and audit entries
    /// stay.
    fn purge(&self, request: PurgeRequest) -> StoreFuture<'_, PurgeReport>;
    /// A page of the deliveries of the records `query.subject` appears in, by delivery id.
    fn access(&self, query: AccessQuery) -> StoreFuture<'_, Vec<Disclosure>>;

    /// Records by id, by sender and idempotency key, or by time range, newest first.
    fn find_records(&self, search: RecordSearch) -> StoreFuture<'_, Vec<RecordFound>>;
    /// Every attempt of every delivery of a record, by delivery then attempt.
    fn attempts(&self, record_id: String) -> StoreFuture<'_, Vec<AttemptView>>;
    /// Up to `limit` audit entries that name a record, in order.
    fn audit_naming(&self, record_id: String, limit: usize) -> StoreFuture<'_, Vec<AuditEntry>>;
    /// Audit entries by seq and time, in order.
    fn audit_range(&self, range: AuditRange) -> StoreFuture<'_, Vec<AuditEntry>>;
    /// The checkpoints of the entries `first` to `last` (seqs, inclusive), oldest first.
    fn checkpoints_between(&self, first: i64, last: i64) -> StoreFuture<'_, Vec<Checkpoint>>;
    /// Counts per bucket over a time range.
    fn stats(&self, query: StatsQuery) -> StoreFuture<'_, Stats>;
    /// A stored body, opened: `None` if there is no such record or delivery, `Some(None)` once
    /// the body was purged.
    fn body(&self, body: BodyRef) -> StoreFuture<'_, Option<Option<Bytes>>>;

    /// The store's data keys and plaintext bodies, once every live data key is shown to unwrap
    /// under a configured key-encryption key (the start calls it, so a wrong key stops it).
    fn check_keys(&self) -> StoreFuture<'_, KeyCensus>;
    /// Seals up to [`keys::BATCH`] bodies still stored in plaintext (`passerelle store encrypt`).
    fn seal_plaintext(&self) -> StoreFuture<'_, SealProgress>;
    /// Re-wraps up to [`keys::BATCH`] data keys under the current key-encryption key (`passerelle
    /// store rotate-key`).
    fn rewrap_keys(&self) -> StoreFuture<'_, RewrapProgress>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each label reads back as the value that wrote it, and nothing else reads at all.
    #[test]
    fn labels_read_back_as_what_wrote_them() {
        fn check<T: Copy + PartialEq + std::fmt::Debug + std::str::FromStr<Err = UnknownLabel>>(
            all: &[T],
            as_str: fn(T) -> &'static str,
        ) {
            for value in all {
                assert_eq!(as_str(*value).parse::<T>().ok(), Some(*value));
            }
            assert!("Queued".parse::<T>().is_err() && "".parse::<T>().is_err());
        }
        check(DeliveryStatus::ALL, DeliveryStatus::as_str);
        check(RecordState::ALL, RecordState::as_str);
        check(RecordFilter::ALL, RecordFilter::as_str);
        check(ReplayOutcome::ALL, ReplayOutcome::as_str);
        check(ErrorClass::ALL, ErrorClass::as_str);
        assert_eq!("lost".parse::<RecordState>().unwrap_err().to_string(), "unknown record state `lost`");
    }
}
