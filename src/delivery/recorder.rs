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

use crate::store::{AttemptUpdate, Store, StoreFuture};

/// How long a finished attempt waits for the rest of its round (the attempts still in flight)
/// before its result is written anyway: short beside an attempt, long beside a commit's queueing.
const ROUND_WAIT: Duration = Duration::from_millis(5);

/// Writes one round of results: [`Store::finish_attempts`] (a unit test's stand-in in tests).
type WriteRound = Box<dyn Fn(Vec<AttemptUpdate>) -> StoreFuture<'static, ()> + Send + Sync>;

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
        let write: WriteRound = Box::new(move |updates| {
            let store = store.clone();
            Box::pin(async move { store.finish_attempts(updates).await })
        });
        Self::writing(write, slots, concurrency)
    }

    fn writing(
        write: WriteRound,
        slots: Arc<Semaphore>,
        concurrency: usize,
    ) -> (Recorder, impl Future<Output = ()> + Send + 'static) {
        let concurrency = concurrency.max(1);
        let (queue, waiting) = mpsc::channel(concurrency);
        (Recorder { queue }, write_rounds(waiting, write, slots, concurrency))
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

/// Takes what is waiting (the results of at most `concurrency` attempts), waits up to
/// [`ROUND_WAIT`] for the attempts still in flight, and writes the round in one call.
async fn write_rounds(
    mut waiting: mpsc::Receiver<Pending>,
    write: WriteRound,
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
        if let Err(error) = write(updates).await {
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::store::AttemptResult;

    fn update(delivery_id: i64) -> AttemptUpdate {
        AttemptUpdate {
            delivery_id,
            worker: "w".to_owned(),
            record_id: "r".to_owned(),
            recipient: "p".to_owned(),
            agreement: "a".to_owned(),
            body_digest: [0; 32],
            at: 0,
            result: AttemptResult::Delivered { status: Some(200) },
            latency_ms: Some(1),
        }
    }

    /// The delivery ids of each write, in order.
    type Writes = Arc<Mutex<Vec<Vec<i64>>>>;

    /// A recorder over `concurrency` slots whose writes are counted, not stored.
    fn counted(slots: &Arc<Semaphore>, concurrency: usize) -> (Arc<Recorder>, Writes) {
        let writes: Writes = Arc::default();
        let seen = writes.clone();
        let write: WriteRound = Box::new(move |updates| {
            seen.lock().unwrap().push(updates.iter().map(|u| u.delivery_id).collect());
            Box::pin(async { Ok(()) })
        });
        let (recorder, recording) = Recorder::writing(write, slots.clone(), concurrency);
        tokio::spawn(recording);
        (Arc::new(recorder), writes)
    }

    #[tokio::test]
    async fn attempts_that_end_together_are_written_in_one_call() {
        let slots = Arc::new(Semaphore::new(4));
        let (recorder, writes) = counted(&slots, 4);
        // Three attempts in flight, each holding its slot, end together; a batch's two records
        // are one attempt.
        let held = slots.clone().acquire_many_owned(3).await.unwrap();
        let ends = [vec![update(1)], vec![update(2), update(3)], vec![update(4)]].map(|updates| {
            let recorder = recorder.clone();
            tokio::spawn(async move { recorder.record(updates).await })
        });
        for end in ends {
            end.await.unwrap();
        }
        drop(held);
        assert_eq!(*writes.lock().unwrap(), [vec![1, 2, 3, 4]]);
    }

    #[tokio::test]
    async fn a_result_waits_for_a_slow_attempt_only_a_moment() {
        let slots = Arc::new(Semaphore::new(4));
        let (recorder, writes) = counted(&slots, 4);
        // Two attempts in flight: one ends, the other never does.
        let _held = slots.clone().acquire_many_owned(2).await.unwrap();
        let started = tokio::time::Instant::now();
        recorder.record(vec![update(1)]).await;
        assert!(started.elapsed() >= ROUND_WAIT && started.elapsed() < Duration::from_secs(1));
        assert_eq!(*writes.lock().unwrap(), [vec![1]]);
    }
}
