//! Records a worker's attempt results in the store a round at a time: the attempts that end
//! together go to [`Store::finish_attempts`] in one call, one queued write, rather than one each.
//!
//! An attempt holds one of its recipient's slots while it talks to the recipient. Once the
//! request has ended it trades the slot for one of as many places among the results waiting
//! here, so the next request can start while the store writes; when every place is taken it
//! keeps its slot until one is free, so a slow store stops new requests. An ordered recipient's
//! attempt keeps its slot until its result is written. Until then its lease holds the delivery:
//! nothing here can let a delivery be claimed twice. A result that is lost (the store refused
//! the write) only means the lease expires and the delivery is attempted again under the same
//! idempotency key.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

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
    /// Bounded by the recipient's concurrency: an attempt holds a slot or a place among the
    /// results waiting while it waits here, so the queue rarely fills; when it does, the attempt
    /// waits its turn.
    queue: mpsc::Sender<Pending>,
}

/// A worker's attempts in flight: each holds one of `slots` while it talks to its recipient,
/// then (unless its recipient is ordered) one of as many places in `recording` until its result
/// is written.
pub struct InFlight {
    pub slots: Arc<Semaphore>,
    pub recording: Arc<Semaphore>,
    pub concurrency: usize,
}

impl InFlight {
    /// How many attempts hold a slot or a place; one trading its slot for a place may be
    /// counted twice for a moment, which only makes a round wait a little longer.
    fn count(&self) -> usize {
        let held = |s: &Semaphore| self.concurrency.saturating_sub(s.available_permits());
        held(&self.slots) + held(&self.recording)
    }
}

/// Gives `slot` back for one of `places` once one is free; `slot` itself if `places` closed.
pub async fn trade_for_place(slot: OwnedSemaphorePermit, places: &Arc<Semaphore>) -> OwnedSemaphorePermit {
    match places.clone().acquire_owned().await {
        Ok(place) => place,
        Err(_) => slot,
    }
}

impl Recorder {
    /// The recorder of a worker whose attempts are `in_flight`, and the task that writes its
    /// batches to `store`: it ends once every [`Recorder`] is dropped and the last batch is
    /// written.
    pub fn new(store: Arc<dyn Store>, in_flight: InFlight) -> (Recorder, impl Future<Output = ()> + Send + 'static) {
        let write: WriteRound = Box::new(move |updates| {
            let store = store.clone();
            Box::pin(async move { store.finish_attempts(updates).await })
        });
        Self::writing(write, in_flight)
    }

    fn writing(write: WriteRound, in_flight: InFlight) -> (Recorder, impl Future<Output = ()> + Send + 'static) {
        let concurrency = in_flight.concurrency.max(1);
        let (queue, waiting) = mpsc::channel(concurrency);
        (Recorder { queue }, write_rounds(waiting, write, in_flight, concurrency))
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
    in_flight: InFlight,
    concurrency: usize,
) {
    let mut round = Vec::with_capacity(concurrency);
    while waiting.recv_many(&mut round, concurrency).await > 0 {
        let deadline = tokio::time::Instant::now() + ROUND_WAIT;
        // Every attempt in flight holds a slot or a place, those already in `round` included.
        while round.len() < concurrency && round.len() < in_flight.count() {
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
        let in_flight =
            InFlight { slots: slots.clone(), recording: Arc::new(Semaphore::new(concurrency)), concurrency };
        let (recorder, writing) = Recorder::writing(write, in_flight);
        tokio::spawn(writing);
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
    async fn a_slot_is_given_back_for_a_place_and_kept_while_every_place_is_taken() {
        let (slots, places) = (Arc::new(Semaphore::new(2)), Arc::new(Semaphore::new(2)));
        // A request has ended: its slot is free for the next one, its result holds a place.
        let slot = slots.clone().acquire_owned().await.unwrap();
        let first = trade_for_place(slot, &places).await;
        assert_eq!((slots.available_permits(), places.available_permits()), (2, 1));
        // Every place taken (results waiting for the store): the next attempt keeps its slot.
        let second = trade_for_place(slots.clone().acquire_owned().await.unwrap(), &places).await;
        let slot = slots.clone().acquire_owned().await.unwrap();
        let mut third = tokio::spawn({
            let places = places.clone();
            async move { trade_for_place(slot, &places).await }
        });
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut third).await.is_err());
        assert_eq!((slots.available_permits(), places.available_permits()), (1, 0));
        // A result written frees a place: the waiting attempt takes it and frees its slot.
        drop(first);
        let third = third.await.unwrap();
        assert_eq!((slots.available_permits(), places.available_permits()), (2, 0));
        drop((second, third));
        assert_eq!(places.available_permits(), 2);
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
