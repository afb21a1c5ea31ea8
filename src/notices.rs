//! Completion notices: finds the records due one and issues each as a durable delivery.
//!
//! A sender with `[partner.notify]` is told once when a record is complete (every delivery
//! delivered) and once when one of its deliveries goes dead (an incomplete bundle, so it can act;
//! a replay that then completes the record gives a complete notice too). A notice is a record of
//! the gateway's own ([`crate::audit::notice::SENDER`], type
//! [`crate::audit::notice::RECORD_TYPE`]) with one delivery, to the sender, whose body is the
//! signed notice ([`crate::audit::notice`]): committed through [`Store::commit_record`] like any
//! record (audited `notice.issued`), then pushed to `{endpoint}/completion-notice` or left in the
//! sender's mailbox, retried, dead-lettered and replayed like any delivery. It carries
//! identifiers, times and statuses, never a value of the record.
//!
//! One task per gateway scans the store every poll interval for records of notified senders
//! with a delivery settled since its last pass ([`Store::notices_due`]); its first pass looks back
//! over the whole dead-letter retention, so a notice that a crash or a stop kept from being
//! issued is issued at the next start.
//!
//! **Invariant:** a record has at most one notice of each kind, however often and by however many
//! instances it is issued: the notice's idempotency key is `<record id>.<kind>`, unique for the
//! gateway's sender inside the commit transaction.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::audit::digest::DigestKey;
use crate::audit::notary::Notary;
use crate::audit::notice::{self, Notice, NoticeDelivery};
use crate::audit::receipt::{Receipt, ReceiptDelivery};
use crate::clock::{now_ms, rfc3339_ms};
use crate::store::{
    CommitOutcome, DeliveryStatus, NewDelivery, NewRecord, NoticeDue, NoticeKind, NoticeScan, Store, Taker,
};

/// The records one scan of one sender reads at most; a fuller scan goes on at once.
const SCAN_BATCH: usize = 100;

/// The agreement a notice's delivery names: a notice goes to its sender under no agreement.
pub const AGREEMENT: &str = "completion-notice";

/// What the notifier needs from the gateway. The senders and the wake-up are closures, so that
/// a reload's configuration and the delivery workers reach it without this module knowing them.
pub struct Notifier {
    pub store: Arc<dyn Store>,
    pub notary: Arc<Notary>,
    pub digest_key: DigestKey,
    /// The partners that asked for notices, in the configuration in force.
    pub senders: Box<dyn Fn() -> Vec<String> + Send + Sync>,
    /// Tells a recipient's worker (or mailbox) that a notice waits for it.
    pub wake: Box<dyn Fn(&str) + Send + Sync>,
    /// The worker that may take a notice's delivery as it commits (`Store`'s [`Taker`]), as for
    /// a record: so a notice is not overtaken by the sender's next delivery.
    pub taker: TakerOf,
    /// How often the store is scanned.
    pub interval: Duration,
    /// How far back the first scan looks: no delivery older than this can still change.
    pub look_back: Duration,
    /// How far before its previous pass a scan looks again: an attempt's result may be committed
    /// this long after the time it records (the lease, then the commit).
    pub overlap: Duration,
}

/// The worker here that may take a delivery to a recipient as it commits, if any.
pub type TakerOf = Box<dyn Fn(&str, &Bytes) -> Option<Arc<dyn Taker>> + Send + Sync>;

impl Notifier {
    /// Scans and issues until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut since = now_ms() - self.look_back.as_millis() as i64;
        loop {
            let started = now_ms();
            if self.pass(since).await {
                since = since.max(started - self.overlap.as_millis() as i64);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Issues every notice due for records settled since `since`; whether all were issued (if
    /// not, the next pass looks at the same records again).
    async fn pass(&self, since: i64) -> bool {
        let mut all = true;
        for sender in (self.senders)() {
            loop {
                let scan = NoticeScan { sender: sender.clone(), settled_since: since, limit: SCAN_BATCH };
                let due = match self.store.notices_due(scan).await {
                    Ok(due) => due,
                    Err(error) => {
                        tracing::warn!(message = "Finding records due a completion notice failed.", %error, sender);
                        all = false;
                        break;
                    }
                };
                let full = due.len() == SCAN_BATCH;
                for record in due {
                    if let Err(error) = self.issue(&sender, &record).await {
                        tracing::warn!(
                            message = "Issuing a completion notice failed.",
                            %error,
                            sender,
                            record_id = %record.record_id,
                            kind = record.kind.as_str()
                        );
                        all = false;
                    }
                }
                // A failed notice would come back first in the next batch: it waits for the next pass.
                if !full || !all {
                    break;
                }
            }
        }
        all
    }

    /// Commits `record`'s notice for delivery to `sender`, and wakes its delivery.
    async fn issue(&self, sender: &str, record: &NoticeDue) -> Result<(), crate::store::StoreError> {
        let at = now_ms();
        let body = Bytes::from(notice(sender, record, at).seal(self.notary.key.id(), |m| self.notary.key.sign(m)));
        let record_id = uuid::Uuid::now_v7().to_string();
        let received_at = rfc3339_ms(at);
        let receipt = Receipt {
            record_id: &record_id,
            record_type: notice::RECORD_TYPE,
            schema_version: notice::SCHEMA_VERSION.to_owned(),
            sender: notice::SENDER,
            received_at,
            deliveries: vec![ReceiptDelivery { recipient: sender, agreement: AGREEMENT, status: "queued" }],
        };
        let digest = self.digest_key.digest(&body);
        let mut notice_record = NewRecord {
            record_id: record_id.clone(),
            sender: notice::SENDER.to_owned(),
            record_type: notice::RECORD_TYPE.to_owned(),
            schema_version: notice::SCHEMA_VERSION.to_owned(),
            received_at: at,
            body_sha256: crate::digest::sha256(&body),
            audit_digest: digest,
            idempotency_key: Some(record.kind.idempotency_key(&record.record_id)),
            traceparent: None,
            tracestate: None,
            deliveries: vec![NewDelivery {
                recipient: sender.to_owned(),
                agreement: AGREEMENT.to_owned(),
                ordered: false,
                body: body.clone(),
                body_digest: digest,
                key_id: None,
                schema_version: None,
                // A notice tells the sender about its own record: no person's data in it.
                terms: None,
                taker: None,
            }],
            receipt: Bytes::from(receipt.to_bytes()),
            body,
            key_id: None,
            subjects: Vec::new(),
        };
        let taker = (self.taker)(sender, &notice_record.deliveries[0].body);
        let taken = taker.is_some();
        notice_record.deliveries[0].taker = taker;
        let outcome = self.store.commit_record(notice_record).await?;
        // Another instance may have issued it first: then there is nothing more to do.
        if let CommitOutcome::Accepted { .. } = outcome {
            tracing::info!(
                message = "Completion notice issued.",
                sender,
                record_id = %record.record_id,
                kind = record.kind.as_str(),
                notice_id = %record_id
            );
            // Offered to a worker, it was handed over or its worker woken by the store.
            if !taken {
                (self.wake)(sender);
            }
        }
        Ok(())
    }
}

/// The notice `record` is due, issued at `at` (unix ms), before it is signed.
fn notice(sender: &str, record: &NoticeDue, at: i64) -> Notice {
    let complete = record.kind == NoticeKind::Complete;
    let deliveries = record
        .deliveries
        .iter()
        .map(|d| NoticeDelivery {
            recipient: d.recipient.clone(),
            agreement: d.agreement.clone(),
            status: d.status.as_str(),
            attempts: d.attempts,
            delivered_at: d.delivered_at.map(rfc3339_ms),
            error: d.last_error.clone().filter(|_| d.status != DeliveryStatus::Delivered),
        })
        .collect();
    Notice {
        notice: record.kind,
        record_id: record.record_id.clone(),
        record_type: record.record_type.clone(),
        schema_version: record.schema_version.clone(),
        sender: sender.to_owned(),
        received_at: rfc3339_ms(record.received_at),
        completed_at: record
            .deliveries
            .iter()
            .filter_map(|d| d.delivered_at)
            .max()
            .filter(|_| complete)
            .map(rfc3339_ms),
        deliveries,
        audit_seq: record.audit_seq,
        issued_at: rfc3339_ms(at),
    }
}
