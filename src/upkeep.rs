//! Upkeep of the store while the gateway runs: signed checkpoints of the audit chain,
//! rejections written to the trail in aggregate, and bodies purged after their retention.
//!
//! Each is a task the gateway starts and stops; each finishes its last round at shutdown. They
//! sit above the store and the audit trail's pure parts (signing, tallies), which know nothing of
//! tasks.
//!
//! **Retention:** delivered records' bodies (the record and its projections) go after
//! `retention.delivered_days` (7 by default); a dead delivery keeps its body for
//! `retention.dead_days` (30) so an operator can replay it. Record metadata, idempotency keys and
//! every audit entry are kept, so `audit verify` passes after a purge. The access record of a
//! person has a retention of its own, `retention.access_days` (2555, seven years): until then a
//! record's subjects stay, whatever became of its bodies, and its disclosures can be found.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::audit::notary::Notary;
use crate::audit::rejections::RejectionTally;
use crate::store::{PurgeRequest, Store};
use crate::telemetry::Metrics;
use crate::telemetry::events::CheckpointSigned;

/// When record bodies are purged.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// Bodies of fully delivered records.
    pub delivered: Duration,
    /// Bodies of dead deliveries (kept for replay).
    pub dead: Duration,
    /// The subjects of records, by which the access record of a person finds its disclosures.
    pub access: Duration,
    pub purge_interval: Duration,
}

/// Signs the chain head if it moved since the last checkpoint this instance made.
pub async fn checkpoint_now(
    notary: &Notary,
    store: &dyn Store,
    metrics: &Metrics,
    last: &mut i64,
) -> Result<(), crate::store::StoreError> {
    let Some(head) = store.audit_head().await? else { return Ok(()) };
    if head.seq <= *last {
        return Ok(());
    }
    let at = crate::clock::now_ms();
    store.add_checkpoint(notary.checkpoint(head, at)).await?;
    *last = head.seq;
    CheckpointSigned { seq: head.seq, key_id: notary.key.id(), at }.emit(metrics);
    Ok(())
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
            if let Err(error) = checkpoint_now(&notary, store.as_ref(), &metrics, &mut last).await {
                tracing::warn!(message = "Signing an audit checkpoint failed.", %error);
            }
            since = tokio::time::Instant::now();
        } else if due_by_time {
            since = tokio::time::Instant::now();
        }
    }
    if let Err(error) = checkpoint_now(&notary, store.as_ref(), &metrics, &mut last).await {
        tracing::warn!(message = "Signing the final audit checkpoint failed.", %error);
    }
}

/// Writes finished minutes every few seconds, and everything at shutdown.
pub async fn run_flush(
    tally: Arc<RejectionTally>,
    store: Arc<dyn Store>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => false,
            _ = shutdown.changed() => true,
        };
        let events = tally.take(if stopping { None } else { Some(crate::clock::now_ms()) });
        if !events.is_empty() {
            let total: i64 = events.iter().map(|e| e.count).sum();
            match store.append_audit(events).await {
                Ok(_) => metrics.rejections_aggregated.inc_by(total as u64),
                Err(error) => tracing::warn!(message = "Auditing rejections failed.", %error, rejections = total),
            }
        }
        if stopping {
            return;
        }
    }
}

/// Purges once per interval until shutdown.
pub async fn run(settings: RetentionSettings, store: Arc<dyn Store>, mut shutdown: watch::Receiver<bool>) {
    loop {
        purge_once(&settings, store.as_ref()).await;
        tokio::select! {
            _ = tokio::time::sleep(settings.purge_interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One purge pass.
pub async fn purge_once(settings: &RetentionSettings, store: &dyn Store) {
    let request = PurgeRequest {
        now: crate::clock::now_ms(),
        delivered_retention_ms: settings.delivered.as_millis() as i64,
        dead_retention_ms: settings.dead.as_millis() as i64,
        access_retention_ms: settings.access.as_millis() as i64,
    };
    match store.purge(request).await {
        Ok(report) => {
            if report.record_bodies + report.delivery_bodies > 0 {
                tracing::info!(
                    message = "Bodies purged after their retention.",
                    record_bodies = report.record_bodies,
                    delivery_bodies = report.delivery_bodies
                );
            }
            if report.subjects > 0 {
                tracing::info!(
                    message = "Record subjects removed after the access record's retention.",
                    subjects = report.subjects
                );
            }
        }
        Err(error) => tracing::warn!(message = "Purging bodies failed.", %error),
    }
}
