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
//!   the lease.
//!
//! **Invariant:** nothing is acknowledged before it is committed: `commit_record` resolves only
//! after the transaction (fsync included) has succeeded.

#[cfg(test)]
pub mod conformance;
mod error;
pub mod postgres;
mod sql;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use serde::Serialize;

pub use self::error::{StoreError, StoreErrorKind};
use crate::audit::{AuditEntry, AuditEvent, AuditStamp, Checkpoint};

/// A boxed future returned by store operations.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Queued,
    Retrying,
    Delivered,
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => DeliveryStatus::Queued,
            "retrying" => DeliveryStatus::Retrying,
            "delivered" => DeliveryStatus::Delivered,
            "dead" => DeliveryStatus::Dead,
            _ => return None,
        })
    }
}

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
}

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
}

/// What committing a record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Committed; the receipt as stored and the record's audit entry.
    Accepted { receipt: Bytes, stamp: AuditStamp },
    /// The sender already used this idempotency key with the same body: the original receipt
    /// and audit entry.
    Duplicate { receipt: Bytes, stamp: AuditStamp },
    /// The sender already used this idempotency key with another body; nothing was stored.
    Conflict,
}

pub use crate::audit::receipt::StoredReceipt;

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
}

#[derive(Debug, Clone)]
pub enum AttemptResult {
    Delivered { status: u16 },
    Retry { next_attempt_at: i64, status: Option<u16>, error: String },
    Dead { status: Option<u16>, error: String },
}

/// One delivery as shown to the record's sender.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    pub recipient: String,
    pub agreement: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A record's overall state, derived from its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordState {
    /// Some delivery is still queued or retrying.
    Pending,
    /// Every delivery is delivered.
    Delivered,
    /// No delivery is pending and at least one is dead.
    Failed,
}

impl RecordState {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => RecordState::Pending,
            "delivered" => RecordState::Delivered,
            "failed" => RecordState::Failed,
            _ => return None,
        })
    }
}

/// A record as shown to its sender.
#[derive(Debug, Clone, Serialize)]
pub struct RecordView {
    pub record_id: String,
    pub record_type: String,
    pub schema_version: String,
    pub received_at: String,
    pub status: RecordState,
    pub deliveries: Vec<DeliveryView>,
}

/// A page query over a sender's own records, newest first.
#[derive(Debug, Clone)]
pub struct RecordQuery {
    pub sender: String,
    pub status: Option<RecordState>,
    /// Only records received at or after this unix ms.
    pub since: Option<i64>,
    /// Continue after this (received_at, record_id) position.
    pub before: Option<(i64, String)>,
    pub limit: usize,
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
    /// Continue after this delivery id.
    pub after_id: Option<i64>,
    pub limit: usize,
}

/// A delivery as operators see it (no body).
#[derive(Debug, Clone, Serialize)]
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
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Whether the stored body is still there (a purged dead delivery cannot be replayed).
    pub body_kept: bool,
}

/// Which dead deliveries an operator replays.
#[derive(Debug, Clone)]
pub enum ReplayTarget {
    One(i64),
    /// Every dead delivery of one recipient.
    Recipient(String),
}

/// What happened to one delivery asked to be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayOutcome {
    Replayed,
    NotFound,
    /// Only dead deliveries are replayed; this one is queued, retrying or delivered.
    NotDead,
    /// The body was purged after its retention; there is nothing to send.
    BodyPurged,
}

/// One delivery asked to be replayed, and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayResult {
    pub id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
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

/// Body retention, applied by [`Store::purge`].
#[derive(Debug, Clone, Copy)]
pub struct PurgeRequest {
    /// Unix ms.
    pub now: i64,
    /// Bodies of records and deliveries fully delivered longer ago than this are deleted (ms).
    pub delivered_retention_ms: i64,
    /// Bodies of dead deliveries older than this are deleted (ms).
    pub dead_retention_ms: i64,
}

/// What a purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    pub record_bodies: u64,
    pub delivery_bodies: u64,
}

/// The durable store.
pub trait Store: Send + Sync + 'static {
    /// Commits a record with its deliveries and audit entry in one transaction.
    fn commit_record(&self, record: NewRecord) -> StoreFuture<'_, CommitOutcome>;
    /// Leases due deliveries of one recipient, oldest first.
    fn claim_due(&self, claim: ClaimRequest) -> StoreFuture<'_, Vec<ClaimedDelivery>>;
    /// Records attempt results; updates for leases no longer held are ignored.
    fn finish_attempts(&self, updates: Vec<AttemptUpdate>) -> StoreFuture<'_, ()>;
    /// A record and its deliveries, if `sender` sent it.
    fn record(&self, sender: String, record_id: String) -> StoreFuture<'_, Option<RecordView>>;
    /// The receipt stored with a record, whoever sent it, and the record's audit entry.
    fn receipt(&self, record_id: String) -> StoreFuture<'_, Option<StoredReceipt>>;
    /// A page of `sender`'s records.
    fn list_records(&self, query: RecordQuery) -> StoreFuture<'_, Vec<RecordView>>;
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
    /// Deliveries matching `filter`, oldest first.
    fn deliveries(&self, filter: DeliveryFilter) -> StoreFuture<'_, Vec<DeliveryAdminView>>;
    /// Requeues dead deliveries for one more round of attempts, each audited.
    fn replay(&self, request: ReplayRequest) -> StoreFuture<'_, Vec<ReplayResult>>;
    /// Deletes bodies past their retention; metadata and audit entries stay.
    fn purge(&self, request: PurgeRequest) -> StoreFuture<'_, PurgeReport>;
}

// What each write records, shared by the engines so both write the same rows and entries.

impl NewRecord {
    /// The record's audit entry, written in its own transaction.
    pub fn accepted_event(&self) -> AuditEvent {
        let mut event =
            AuditEvent::new(self.received_at, crate::audit::kind::RECORD_ACCEPTED, &self.sender, "accepted");
        event.record_id = Some(self.record_id.clone());
        event.body_digest = Some(self.audit_digest);
        event.reason = Some(format!("{}/{}", self.record_type, self.schema_version));
        event
    }
}

/// How an attempt's result changes its delivery row.
#[derive(Debug, Clone, Copy)]
pub struct AttemptEffect<'a> {
    pub status: DeliveryStatus,
    pub http_status: Option<u16>,
    pub error: Option<&'a str>,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
}

impl AttemptUpdate {
    /// The delivery row's new state.
    pub fn effect(&self) -> AttemptEffect<'_> {
        let (status, http_status, error, next_attempt_at, delivered_at) = match &self.result {
            AttemptResult::Delivered { status } => {
                (DeliveryStatus::Delivered, Some(*status), None, self.at, Some(self.at))
            }
            AttemptResult::Retry { next_attempt_at, status, error } => {
                (DeliveryStatus::Retrying, *status, Some(error.as_str()), *next_attempt_at, None)
            }
            AttemptResult::Dead { status, error } => {
                (DeliveryStatus::Dead, *status, Some(error.as_str()), self.at, None)
            }
        };
        AttemptEffect { status, http_status, error, next_attempt_at, delivered_at }
    }

    /// The attempt's audit entry (written only if the worker still held the lease).
    pub fn event(&self) -> AuditEvent {
        use crate::audit::kind;
        let (kind, outcome) = match self.result {
            AttemptResult::Delivered { .. } => (kind::DELIVERY_DELIVERED, "delivered"),
            AttemptResult::Retry { .. } => (kind::DELIVERY_RETRIED, "retry"),
            AttemptResult::Dead { .. } => (kind::DELIVERY_DEAD, "dead"),
        };
        let effect = self.effect();
        let mut event = AuditEvent::new(self.at, kind, "gateway", outcome);
        event.record_id = Some(self.record_id.clone());
        event.agreement = Some(self.agreement.clone());
        event.recipient = Some(self.recipient.clone());
        event.body_digest = Some(self.body_digest);
        event.reason = effect.http_status.map(|c| format!("HTTP {c}")).or_else(|| effect.error.map(str::to_owned));
        event
    }
}

impl ReplayRequest {
    /// The audit entry of one replayed delivery.
    pub fn event(&self, record_id: String, agreement: &str, recipient: &str, body_digest: [u8; 32]) -> AuditEvent {
        let mut event = AuditEvent::new(self.now, crate::audit::kind::DELIVERY_REPLAYED, &self.actor, "replayed");
        event.record_id = Some(record_id);
        event.agreement = Some(agreement.to_owned());
        event.recipient = Some(recipient.to_owned());
        event.body_digest = Some(body_digest);
        event
    }
}

impl PurgeReport {
    /// The purge's audit entry, if anything was purged.
    pub fn event(&self, at: i64) -> Option<AuditEvent> {
        let total = self.record_bodies + self.delivery_bodies;
        (total > 0).then(|| {
            let mut event = AuditEvent::new(at, crate::audit::kind::BODIES_PURGED, "gateway", "purged");
            event.count = total as i64;
            event.reason =
                Some(format!("{} record bodies, {} delivery bodies", self.record_bodies, self.delivery_bodies));
            event
        })
    }
}
