//! Typed events: each writes its log line and updates its metrics in one `emit`.
//!
//! Log lines carry identifiers (record id, sender, recipient, agreement), outcomes and
//! latencies, never a record's values, at any level.

use std::time::Duration;

use tracing::{debug, info, warn};

use super::{DeliveryOutcome, HandshakeFailure, Metrics, RecordOutcome, ReloadOutcome};

/// What a record call (`POST /v1/records`, `/v1/requests`, `/v1/validate`) adds to its
/// request's line and counts.
pub struct RecordCall<'a> {
    /// The authenticated sender, or `unknown`.
    pub sender: &'a str,
    /// A configured record type, or `unknown`.
    pub record_type: &'a str,
    pub outcome: RecordOutcome,
    /// The record's id (or the request's, for request/response) once it has one.
    pub record_id: Option<&'a str>,
    /// Schema violations found, by keyword (all of them, not only those the answer lists).
    pub violations: &'a [(&'static str, usize)],
}

/// A request on either listener got its answer: its one log line and, on the partner
/// listener, its latency and (for a record call) the record counters.
pub struct RequestServed<'a> {
    /// `partner` or `admin`.
    pub listener: &'static str,
    pub method: &'a str,
    /// The route template (`/v1/records/{record_type}`), never the raw path; `unknown` when the
    /// path is not a route.
    pub route: &'static str,
    /// The metric label of the route (a fixed set); `None` where no latency is counted.
    pub metric_route: Option<&'static str>,
    pub status: u16,
    pub latency: Duration,
    pub peer: std::net::SocketAddr,
    /// The authenticated partner (or `operator` on the admin listener).
    pub partner: Option<&'a str>,
    pub request_id: &'a str,
    pub trace_id: Option<&'a str>,
    pub record: Option<RecordCall<'a>>,
}

impl RequestServed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        if let Some(route) = self.metric_route {
            let class = match self.status {
                100..=199 => "1xx",
                200..=299 => "2xx",
                300..=399 => "3xx",
                400..=499 => "4xx",
                _ => "5xx",
            };
            metrics.request_duration.with_label_values(&[route, class]).observe(self.latency.as_secs_f64());
        }
        if let Some(record) = &self.record {
            let outcome = record.outcome.as_str();
            metrics.records_received.with_label_values(&[record.sender, record.record_type, outcome]).inc();
            for (keyword, n) in record.violations {
                metrics.validation_violations.with_label_values(&[record.record_type, keyword]).inc_by(*n as u64);
            }
        }
        // Whole microseconds: a latency is read by people and parsed by machines, and neither
        // wants `2.5649219999999997`.
        let latency_us = self.latency.as_micros() as u64;
        let (record_type, outcome, record_id, violations) = match &self.record {
            Some(r) => (
                Some(r.record_type),
                Some(r.outcome.as_str()),
                r.record_id,
                Some(r.violations.iter().map(|(_, n)| n).sum::<usize>()),
            ),
            None => (None, None, None, None),
        };
        info!(
            message = "Request served.",
            listener = self.listener,
            method = self.method,
            route = self.route,
            status = self.status,
            latency_us,
            peer = %self.peer,
            partner = self.partner,
            request_id = self.request_id,
            trace_id = self.trace_id,
            record_type,
            outcome,
            record_id,
            violations,
        );
    }
}

/// One delivery attempt ended.
pub struct DeliveryAttempted<'a> {
    pub delivery_id: i64,
    pub record_id: &'a str,
    pub recipient: &'a str,
    pub agreement: &'a str,
    /// The attempt's number, from 1.
    pub attempt: u32,
    pub outcome: DeliveryOutcome,
    pub status: Option<u16>,
    /// A short description of the failure (status or transport error), never a body.
    pub error: Option<&'a str>,
    /// How long a push attempt took; `None` for a pull recipient's acknowledgement or refusal.
    pub duration: Option<Duration>,
}

impl DeliveryAttempted<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        let outcome = self.outcome.as_str();
        metrics.deliveries.with_label_values(&[self.recipient, self.agreement, outcome]).inc();
        if let Some(duration) = self.duration {
            metrics.delivery_attempt_duration.with_label_values(&[self.recipient]).observe(duration.as_secs_f64());
        }
        let duration_ms = self.duration.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        let status = self.status.unwrap_or(0);
        let error = self.error.unwrap_or("");
        match self.outcome {
            DeliveryOutcome::Delivered => info!(
                message = "Delivery attempted.",
                delivery_id = self.delivery_id,
                record_id = self.record_id,
                recipient = self.recipient,
                agreement = self.agreement,
                attempt = self.attempt,
                outcome,
                status,
                duration_ms
            ),
            _ => warn!(
                message = "Delivery attempted.",
                delivery_id = self.delivery_id,
                record_id = self.record_id,
                recipient = self.recipient,
                agreement = self.agreement,
                attempt = self.attempt,
                outcome,
                status,
                error,
                duration_ms
            ),
        }
    }
}

/// Every delivery of a record is delivered: the bundle is complete (emitted after the
/// transaction that delivered the last one committed).
pub struct RecordCompleted<'a> {
    pub record_id: &'a str,
    /// The record's type, a configured one (it was accepted under an agreement).
    pub record_type: &'a str,
    /// From acceptance to the last delivery.
    pub duration: Duration,
}

impl RecordCompleted<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        let seconds = self.duration.as_secs_f64();
        metrics.record_completion.with_label_values(&[self.record_type]).observe(seconds);
        info!(message = "Record complete.", record_id = self.record_id, record_type = self.record_type, seconds);
    }
}

/// The store committed (or failed to commit) one transaction carrying records.
pub struct StoreCommitted {
    /// `sqlite` or `postgres`.
    pub engine: &'static str,
    pub records: usize,
    pub duration: Duration,
    pub ok: bool,
}

impl StoreCommitted {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.store_commit_batch_size.observe(self.records as f64);
        metrics.store_commit_duration.with_label_values(&[self.engine]).observe(self.duration.as_secs_f64());
        if self.ok {
            debug!(
                message = "Store committed.",
                records = self.records,
                duration_ms = self.duration.as_secs_f64() * 1000.0
            );
        } else {
            warn!(message = "Store commit failed.", records = self.records);
        }
    }
}

/// The store's writer ended one transaction (committed or not), whatever it carried: records,
/// claims, attempt results, audit entries.
pub struct StoreTransactionEnded {
    /// `sqlite` or `postgres`.
    pub engine: &'static str,
    /// From its start to its commit (fsync included) or rollback.
    pub duration: Duration,
}

impl StoreTransactionEnded {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.store_writer_busy.with_label_values(&[self.engine]).inc_by(self.duration.as_secs_f64());
        metrics.store_writer_transactions.with_label_values(&[self.engine]).inc();
    }
}

/// The pending and dead deliveries of one recipient were measured.
pub struct BacklogObserved<'a> {
    pub recipient: &'a str,
    pub pending: i64,
    pub oldest_pending_seconds: f64,
    pub dead: i64,
    /// A pull recipient: its pending deliveries are its mailbox.
    pub mailbox: bool,
}

impl BacklogObserved<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.deliveries_pending.with_label_values(&[self.recipient]).set(self.pending);
        metrics.delivery_oldest_pending.with_label_values(&[self.recipient]).set(self.oldest_pending_seconds);
        metrics.deliveries_dead.with_label_values(&[self.recipient]).set(self.dead);
        if self.mailbox {
            metrics.mailbox_depth.with_label_values(&[self.recipient]).set(self.pending);
            metrics.mailbox_oldest.with_label_values(&[self.recipient]).set(self.oldest_pending_seconds);
        }
    }
}

/// A pull recipient took deliveries from its mailbox (none when its wait ran out).
pub struct MailboxTaken<'a> {
    pub recipient: &'a str,
    pub deliveries: usize,
}

impl MailboxTaken<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.mailbox_taken.with_label_values(&[self.recipient]).inc_by(self.deliveries as u64);
    }
}

/// An entry was appended to the audit chain (emitted after its transaction committed).
pub struct AuditAppended<'a> {
    pub kind: &'a str,
}

impl AuditAppended<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        // Kinds are a fixed set (see `audit::kind`), so the label stays bounded.
        metrics.audit_entries.with_label_values(&[self.kind]).inc();
    }
}

/// At start, the last checkpoint already in the store (signed by an earlier run or by another
/// instance), so the checkpoint-age alert does not see 0 until the first new signature.
pub struct CheckpointRecalled {
    pub seq: i64,
    pub at: i64,
}

impl CheckpointRecalled {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.audit_last_checkpoint.set(self.at as f64 / 1000.0);
        metrics.audit_last_checkpoint_seq.set(self.seq);
    }
}

/// A delivery was leased at acceptance to this process's worker and handed to it, unclaimed.
pub struct DeliveryHandedOver<'a> {
    pub recipient: &'a str,
}

impl DeliveryHandedOver<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.deliveries_handed_over.with_label_values(&[self.recipient]).inc();
    }
}

/// A reload removed a recipient: its per-recipient gauges are dropped.
pub struct RecipientRemoved<'a> {
    pub recipient: &'a str,
}

impl RecipientRemoved<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        let labels = [self.recipient];
        let _ = metrics.deliveries_pending.remove_label_values(&labels);
        let _ = metrics.delivery_oldest_pending.remove_label_values(&labels);
        let _ = metrics.deliveries_dead.remove_label_values(&labels);
        let _ = metrics.breaker_state.remove_label_values(&labels);
        let _ = metrics.mailbox_depth.remove_label_values(&labels);
        let _ = metrics.mailbox_oldest.remove_label_values(&labels);
        info!(message = "Recipient removed by a reload; its deliveries wait in the store.", recipient = self.recipient);
    }
}

/// A checkpoint of the audit chain was signed and stored.
pub struct CheckpointSigned<'a> {
    pub seq: i64,
    pub key_id: &'a str,
    pub at: i64,
}

impl CheckpointSigned<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.audit_checkpoints.inc();
        metrics.audit_last_checkpoint.set(self.at as f64 / 1000.0);
        metrics.audit_last_checkpoint_seq.set(self.seq);
        info!(message = "Audit checkpoint signed.", seq = self.seq, key_id = self.key_id);
    }
}

/// An operator replayed a dead delivery.
pub struct DeliveryReplayed<'a> {
    pub delivery_id: i64,
    pub recipient: &'a str,
    pub agreement: &'a str,
}

impl DeliveryReplayed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics
            .deliveries
            .with_label_values(&[self.recipient, self.agreement, DeliveryOutcome::Replayed.as_str()])
            .inc();
        info!(
            message = "Delivery replayed.",
            delivery_id = self.delivery_id,
            recipient = self.recipient,
            agreement = self.agreement
        );
    }
}

/// An operator read the access record of a person. The line names the operator and how many
/// disclosures were answered, never the subject nor its digest; the lookup's audit entry is
/// counted with every other (`passerelle_audit_entries_total{kind="access.read"}`).
pub struct AccessRead<'a> {
    pub actor: &'a str,
    pub disclosures: usize,
    /// The seq of the lookup's `access.read` entry.
    pub audit_seq: i64,
}

impl AccessRead<'_> {
    pub fn emit(&self) {
        info!(
            message = "Access record read.",
            actor = self.actor,
            disclosures = self.disclosures,
            audit_seq = self.audit_seq
        );
    }
}

/// An operator read a stored body. The line names the operator, the record and (for a
/// delivery's body) the recipient, never the body; the read's audit entry is counted with every
/// other (`passerelle_audit_entries_total{kind="body.read"}`).
pub struct BodyRead<'a> {
    pub actor: &'a str,
    pub record_id: &'a str,
    /// The recipient whose delivery's body was read; `None` for the record as posted.
    pub recipient: Option<&'a str>,
    /// The seq of the read's `body.read` entry.
    pub audit_seq: i64,
}

impl BodyRead<'_> {
    pub fn emit(&self) {
        info!(
            message = "Stored body read.",
            actor = self.actor,
            record_id = self.record_id,
            recipient = self.recipient,
            audit_seq = self.audit_seq
        );
    }
}

/// A recipient's circuit breaker changed state.
pub struct BreakerChanged<'a> {
    pub recipient: &'a str,
    /// 0 closed, 1 half-open, 2 open.
    pub state: i64,
    pub failures: u32,
}

impl BreakerChanged<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.breaker_state.with_label_values(&[self.recipient]).set(self.state);
        let state = ["closed", "half-open", "open"].get(self.state as usize).copied().unwrap_or("unknown");
        if self.state == 2 {
            warn!(message = "Circuit breaker opened.", recipient = self.recipient, failures = self.failures);
        } else {
            info!(message = "Circuit breaker changed.", recipient = self.recipient, state);
        }
    }
}

/// A TLS handshake on a listener failed (bad certificate, protocol error, timeout).
pub struct TlsHandshakeFailed<'a> {
    pub listener: &'a str,
    pub reason: HandshakeFailure,
    pub peer: std::net::SocketAddr,
}

impl TlsHandshakeFailed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        let reason = self.reason.as_str();
        metrics.tls_handshake_failures.with_label_values(&[reason]).inc();
        info!(message = "TLS handshake failed.", listener = self.listener, reason, peer = %self.peer);
    }
}

/// A configuration reload was put in force, or refused (the old configuration stays).
pub struct ConfigReloaded<'a> {
    pub outcome: ReloadOutcome,
    /// The new configuration's fingerprint, when applied.
    pub fingerprint: Option<&'a str>,
    /// What was wrong with it, when refused.
    pub problems: &'a [crate::problem::Problem],
}

impl ConfigReloaded<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.config_reloads.with_label_values(&[self.outcome.as_str()]).inc();
        match self.outcome {
            ReloadOutcome::Applied => {
                info!(message = "Configuration reloaded.", fingerprint = self.fingerprint.unwrap_or(""))
            }
            ReloadOutcome::Refused => {
                for p in self.problems {
                    warn!(message = "Configuration reload refused.", problem = %p);
                }
            }
        }
    }
}
