//! Records a worker's attempt results in the store a round at a time: the attempts that end
//! together go to [`Store::finish_attempts`] in one call, one queued write, rather than one each.
//!
//! An attempt keeps its slot until its result is recorded (or recording failed), so the
//! recipient's concurrency cap still counts it, and its lease still holds it: nothing here can
//! let a delivery be claimed twice. A result that is lost (the store refused the write) only
//! means the lease expires and the delivery is attempted again under the same idempotency key.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::store::{AttemptUpdate, Store};

/// How long a finished attempt waits for the rest of its round (the attempts still in flight)
/// before its result is written anyway: short beside an attempt, long beside a commit's queueing.
const ROUND_WAIT: Duration = Duration::from_millis(5);

/// The results of one attempt (one delivery, or the records of one batch) waiting to be
/// written, and who to tell once they are.
struct Pending {
    updates: Vec<AttemptUpdate>,
    written: oneshot::Sender<()>,
}

/// The handle attempts give their results to.
pub struct Recorder {
    /// Bounded by the recipient's concurrency: an attempt holds a slot while it waits here, so
    /// the queue rarely fills; when it does, the attempt waits its turn.
    queue: mpsc::Sender<Pending>,
}

impl Recorder {
    /// The recorder of a worker whose attempts each hold one of `slots` (of `concurrency`), and
    /// the task that writes its batches to `store`: it ends once every [`Recorder`] is dropped
    /// and the last batch is written.
    pub fn new(
        store: Arc<dyn Store>,
        slots: Arc<Semaphore>,
        concurrency: usize,
    ) -> (Recorder, impl Future<Output = ()> + Send + 'static) {
        let concurrency = concurrency.max(1);
        let (queue, waiting) = mpsc::channel(concurrency);
        (Recorder { queue }, write_rounds(waiting, store, slots, concurrency))
    }

    /// Records one attempt's `updates` with the others of its round and returns once they are
    /// written, or once writing them failed (logged; the leases will expire and the deliveries
    /// be attempted again).
    pub async fn record(&self, updates: Vec<AttemptUpdate>) {
        let (written, done) = oneshot::channel();
        if self.queue.send(Pending { updates, written }).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// Takes what is waiting (the results of at most `concurrency` attempts), waits up to [`ROUND_WAIT`] for the
/// attempts still in flight, and writes the round in one call.
async fn write_rounds(
    mut waiting: mpsc::Receiver<Pending>,
    store: Arc<dyn Store>,
    slots: Arc<Semaphore>,
    concurrency: usize,
) {
    let mut round = Vec::with_capacity(concurrency);
    while waiting.recv_many(&mut round, concurrency).await > 0 {
        let deadline = tokio::time::Instant::now() + ROUND_WAIT;
        // Every attempt in flight holds a slot, those already in `round` included.
        while round.len() < concurrency && round.len() < concurrency.saturating_sub(slots.available_permits()) {
            match tokio::time::timeout_at(deadline, waiting.recv()).await {
                Ok(Some(pending)) => round.push(pending),
                Ok(None) | Err(_) => break,
            }
        }
        let mut updates = Vec::new();
        let mut written = Vec::with_capacity(round.len());
        for pending in round.drain(..) {
            updates.extend(pending.updates);
            written.push(pending.written);
        }
        let ids: Vec<i64> = updates.iter().map(|u| u.delivery_id).collect();
        if let Err(error) = store.finish_attempts(updates).await {
            // The leases will expire and the deliveries will be attempted again; the recipient's
            // idempotency key makes that harmless.
            for delivery_id in ids {
                tracing::warn!(message = "Recording a delivery attempt failed.", delivery_id, %error);
            }
        }
        for w in written {
            let _ = w.send(());
        }
    }
}
