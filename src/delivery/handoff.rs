//! Hand-off: a fresh record's delivery leased as it is stored to this process's worker for its
//! recipient, and given to it in memory once the record commits, instead of being claimed.
//!
//! Intake gives each delivery whose recipient has a worker here a [`Taker`]; the store's writer
//! offers it the delivery as it inserts it, in the order the records commit. A worker that takes
//! it reserves a slot, the delivery is stored already leased to the worker (so no other worker
//! claims it), and once the batch has committed the worker is handed it, with the id it was
//! stored under, and attempts it in the reserved slot. A record's deliveries then cost no claim.
//! Nothing else changes: the attempt's result is recorded as a claimed one's is, and a process
//! that dies before the attempt leaves a lease that expires, after which any worker claims the
//! delivery (a minute later, by default, instead of at once). The writer hands over whether or
//! not the request that sent the record is still there to hear its answer.
//!
//! **Invariant:** first attempts leave this process in acceptance order (the design's promise
//! for every recipient; several instances on one store each keep it for what they send). A
//! worker takes a delivery only while it is caught up: its last claim found fewer deliveries due
//! than it asked for, had started every one it found, and no delivery was stored for it
//! meanwhile. A delivery it declines (no slot free, the breaker not closed, or behind) is stored
//! for its claim and marks it behind, so no later one is taken ahead of it; until that record's
//! commit has ended, no claim can show the worker caught up again, and the worker is woken then.
//! Ordered and batched recipients take no hand-offs: their workers choose from the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};

use bytes::Bytes;

use super::{Recipient, Worker};
use crate::clock;
use crate::store::{ClaimedDelivery, Lease, NewRecord, Offer, Taker};

/// One delivery to be offered to one worker, with the body it attempts if it takes it: the
/// projection in plaintext (what the store is given may be sealed by the time it is offered).
pub(super) struct Offered {
    worker: Arc<Worker>,
    body: Bytes,
}

impl Offered {
    pub fn new(worker: Arc<Worker>, body: Bytes) -> Self {
        Offered { worker, body }
    }
}

impl Taker for Offered {
    fn offer(&self, record: &NewRecord, i: usize) -> Offer {
        let worker = &self.worker;
        let handing = &worker.recipient.handing;
        let ready = handing.caught_up() && worker.recipient.breaker.is_closed();
        let permit = ready.then(|| worker.slots.clone().try_acquire_owned().ok()).flatten();
        let Some(permit) = permit else {
            handing.uncommitted.fetch_add(1, SeqCst);
            handing.stored.fetch_add(1, SeqCst);
            handing.caught_up.store(false, SeqCst);
            return Offer::Declined(Box::new(Behind { recipient: worker.recipient.clone() }));
        };
        let mut delivery = ClaimedDelivery::unclaimed(record, i);
        delivery.body = self.body.clone();
        let until = clock::now_ms() + worker.settings.lease.as_millis() as i64;
        let lease = Lease { worker: worker.worker_id.clone(), until };
        let worker = worker.clone();
        let take = move |id, audit_seq| {
            (delivery.id, delivery.audit_seq) = (id, audit_seq);
            worker.handed_over();
            worker.spawn_in(permit, |worker| async move { worker.attempt(delivery).await });
        };
        Offer::Taken { lease, take: Box::new(take) }
    }
}

/// A delivery stored for its worker's claim while its record commits: the worker cannot count
/// itself caught up until this is dropped, once the commit has ended; then it is woken to claim.
struct Behind {
    recipient: Arc<Recipient>,
}

impl Drop for Behind {
    fn drop(&mut self) {
        self.recipient.handing.uncommitted.fetch_sub(1, SeqCst);
        self.recipient.wake.notify_one();
    }
}

/// Whether a recipient's worker takes hand-offs ([`Handing::caught_up`]), and what it learns that
/// from. Kept across reloads with the recipient, like its breaker: what the store holds for it
/// does not change with the worker.
#[derive(Default)]
pub(super) struct Handing {
    caught_up: AtomicBool,
    /// Deliveries stored for a claim instead of handed over, ever.
    stored: AtomicU64,
    /// Of those, the ones whose record's commit has not ended yet.
    uncommitted: AtomicUsize,
}

/// What a worker saw before a claim: whether the claim can show it caught up.
#[derive(Clone, Copy)]
pub(super) struct BeforeClaim {
    stored: u64,
    settled: bool,
}

impl Handing {
    /// Whether the worker takes hand-offs now; if not, a freed slot may have a claim to make.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(SeqCst)
    }

    /// Taken just before a claim is sent.
    pub fn before_claim(&self) -> BeforeClaim {
        BeforeClaim { stored: self.stored.load(SeqCst), settled: self.uncommitted.load(SeqCst) == 0 }
    }

    /// After a claim that asked for `asked` and got `got` (`None`: it failed), once every claimed
    /// delivery has started: caught up if the store had no more due, unless a delivery was
    /// stored for a claim since `before` (or was still being committed then).
    pub fn after_claim(&self, before: BeforeClaim, asked: usize, got: Option<usize>) {
        if got.is_none_or(|got| got >= asked) || !before.settled {
            self.caught_up.store(false, SeqCst);
            return;
        }
        self.caught_up.store(true, SeqCst);
        // A delivery stored meanwhile: either it is counted by now, or its own mark comes after.
        if self.stored.load(SeqCst) != before.stored {
            self.caught_up.store(false, SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_shows_the_worker_caught_up_only_if_nothing_was_stored_for_it_meanwhile() {
        let handing = Handing::default();
        assert!(!handing.caught_up(), "a new worker claims first: the store may hold a backlog");
        // A claim that got what it asked for: there may be more.
        let before = handing.before_claim();
        handing.after_claim(before, 4, Some(4));
        assert!(!handing.caught_up());
        // Fewer than asked: caught up.
        handing.after_claim(handing.before_claim(), 4, Some(1));
        assert!(handing.caught_up());
        // A delivery stored while a claim ran: the claim may have missed it.
        let before = handing.before_claim();
        handing.stored.fetch_add(1, SeqCst);
        handing.after_claim(before, 4, Some(0));
        assert!(!handing.caught_up());
        // A delivery stored before the claim but still committing when it was sent.
        handing.uncommitted.fetch_add(1, SeqCst);
        let before = handing.before_claim();
        handing.uncommitted.fetch_sub(1, SeqCst);
        handing.after_claim(before, 4, Some(0));
        assert!(!handing.caught_up());
        // A claim that failed shows nothing.
        handing.after_claim(handing.before_claim(), 4, None);
        assert!(!handing.caught_up());
        // Its commit ended: the next claim sees it, and then there is nothing left.
        handing.after_claim(handing.before_claim(), 4, Some(1));
        assert!(handing.caught_up());
    }
}
