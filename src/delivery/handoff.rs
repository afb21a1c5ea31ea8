//! Hand-off: a fresh record's delivery leased at acceptance to this process's worker for its
//! recipient, and given to it in memory once the record commits, instead of being claimed.
//!
//! Intake reserves a slot of the recipient's worker before the commit ([`Reservation::Slot`]);
//! the delivery is stored already leased to that worker, so no other worker claims it, and once
//! the record has committed the worker is handed it, with the id it was stored under, and
//! attempts it in the reserved slot. A record's deliveries then cost no claim transaction.
//! Nothing else changes: the attempt's result is recorded as a claimed one's is, and a process
//! that dies before the attempt leaves a lease that expires, after which any worker claims the
//! delivery (a minute later, by default, instead of at once).
//!
//! **Invariant:** first attempts leave in acceptance order (the design's promise for every
//! recipient). A worker takes hand-offs only while it is caught up: its last claim found fewer
//! deliveries due than it asked for, had started every one it found, and no delivery was stored
//! for it meanwhile. A delivery that finds no free slot, or the breaker not closed, is stored
//! for claiming ([`Reservation::Stored`]) and marks the worker behind, so no later delivery is
//! handed over ahead of it; until that record's commit has ended, no claim can show the worker
//! caught up again. Ordered and batched recipients take no hand-offs: their workers choose what
//! goes next from the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};

use tokio::sync::OwnedSemaphorePermit;

use super::Worker;
use crate::clock;
use crate::store::{ClaimedDelivery, Lease};

/// What intake holds for one delivery of a record about to commit.
pub enum Reservation {
    /// The recipient takes no hand-offs (a mailbox, an ordered or a batched recipient, or the
    /// gateway is stopping): the delivery is stored for a claim.
    None,
    /// A slot of the recipient's worker: the delivery is stored leased to it and handed over.
    /// Dropped without [`Handoff::hand`] (the record was not stored), it frees the slot.
    Slot(Handoff),
    /// The worker had no slot free, or was behind: the delivery is stored for its claim. Held
    /// until the record's commit has ended.
    Stored(Behind),
}

impl Reservation {
    /// The lease the delivery is stored under, if it is handed over.
    pub fn lease(&self) -> Option<Lease> {
        match self {
            Reservation::Slot(handoff) => Some(handoff.lease.clone()),
            Reservation::None | Reservation::Stored(_) => None,
        }
    }
}

/// A reserved slot of a recipient's worker.
pub struct Handoff {
    worker: Arc<Worker>,
    permit: OwnedSemaphorePermit,
    lease: Lease,
}

impl Handoff {
    /// Attempts `delivery`, stored under the reservation's lease, in the reserved slot.
    pub fn hand(self, delivery: ClaimedDelivery) {
        let Handoff { worker, permit, .. } = self;
        worker.handed_over();
        worker.spawn_in(permit, |worker| async move { worker.attempt(delivery).await });
    }
}

/// A delivery stored for its worker's claim while its record commits: the worker cannot count
/// itself caught up until this is dropped.
pub struct Behind {
    worker: Arc<Worker>,
}

impl Drop for Behind {
    fn drop(&mut self) {
        self.worker.handing.uncommitted.fetch_sub(1, SeqCst);
    }
}

/// Whether a worker takes hand-offs ([`Handing::caught_up`]), and what it learns that from.
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

    /// After a claim that asked for `asked` and got `got`, once every claimed delivery has
    /// started: caught up if the store had no more due, unless a delivery was stored for a
    /// claim since `before` (or was still being committed then).
    pub fn after_claim(&self, before: BeforeClaim, asked: usize, got: usize) {
        if got >= asked || !before.settled {
            self.caught_up.store(false, SeqCst);
            return;
        }
        self.caught_up.store(true, SeqCst);
        // A delivery stored meanwhile: either it is counted by now, or its own mark comes after.
        if self.stored.load(SeqCst) != before.stored {
            self.caught_up.store(false, SeqCst);
        }
    }

    /// Reserves a slot of `worker` if it takes hand-offs now; if not, marks it behind until the
    /// record's commit has ended, since the delivery will wait in the store for its claim.
    pub fn reserve(worker: &Arc<Worker>) -> Reservation {
        let handing = &worker.handing;
        let taken = handing.caught_up() && worker.recipient.breaker.is_closed();
        match taken.then(|| worker.slots.clone().try_acquire_owned().ok()).flatten() {
            Some(permit) => {
                let until = clock::now_ms() + worker.settings.lease.as_millis() as i64;
                let lease = Lease { worker: worker.worker_id.clone(), until };
                Reservation::Slot(Handoff { worker: worker.clone(), permit, lease })
            }
            None => {
                handing.uncommitted.fetch_add(1, SeqCst);
                handing.stored.fetch_add(1, SeqCst);
                handing.caught_up.store(false, SeqCst);
                Reservation::Stored(Behind { worker: worker.clone() })
            }
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
        handing.after_claim(before, 4, 4);
        assert!(!handing.caught_up());
        // Fewer than asked: caught up.
        handing.after_claim(handing.before_claim(), 4, 1);
        assert!(handing.caught_up());
        // A delivery stored while a claim ran: the claim may have missed it.
        let before = handing.before_claim();
        handing.stored.fetch_add(1, SeqCst);
        handing.after_claim(before, 4, 0);
        assert!(!handing.caught_up());
        // A delivery stored before the claim but still committing when it was sent.
        handing.uncommitted.fetch_add(1, SeqCst);
        let before = handing.before_claim();
        handing.uncommitted.fetch_sub(1, SeqCst);
        handing.after_claim(before, 4, 0);
        assert!(!handing.caught_up());
        // Its commit ended: the next claim sees it, and then there is nothing left.
        handing.after_claim(handing.before_claim(), 4, 1);
        assert!(handing.caught_up());
    }
}
