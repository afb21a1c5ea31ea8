//! Retention: bodies are deleted once they have served their purpose; the trail stays.
//!
//! Delivered records' bodies (the record and its projections) go after `retention.delivered_days`
//! (7 by default); a dead delivery keeps its body for `retention.dead_days` (30) so an operator
//! can replay it. Record metadata, idempotency keys and every audit entry are kept, so
//! `audit verify` passes after a purge.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::RetentionSettings;
use crate::store::{PurgeRequest, Store};

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
    };
    match store.purge(request).await {
        Ok(report) if report.record_bodies + report.delivery_bodies > 0 => tracing::info!(
            message = "Bodies purged after their retention.",
            record_bodies = report.record_bodies,
            delivery_bodies = report.delivery_bodies
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(message = "Purging bodies failed.", %error),
    }
}
