//! Hand-off: a fresh record's delivery leased as it is stored to this process's worker for its
//! recipient, and given to it in memory once the record commits, instead of being claimed.
//!
//! Intake gives each delivery whose recipient has a worker here a [`Taker`]; the store's writer
//! offers it the delivery as it inserts it, in the order the records commit. A worker that takes
//! it reserves a slot or, when every slot is busy, one of as many places in line (`Waiting`);
//! the delivery is stored already leased to the worker (so no other worker claims it), and once
//! the batch has committed the worker is handed it, with the id it was stored under, and
//! attempts it in the reserved slot or the next slot to free, after those in line before it
//! and before anything it claims later. A record's deliveries then cost no claim. What a worker
//! that takes hand-offs claims joins the same line (a claim asks for the free slots and the
//! free places in line), so the line is its one queue.
//! Nothing else changes: the attempt's result is recorded as a claimed one's is, and a process
//! that dies before the attempt leaves a lease that expires, after which any worker claims the
//! delivery (a minute later, by default, instead of at once). The writer hands over whether or
//! not the request that sent the record is still there to hear its answer.
//!
//! **Invariant:** first attempts leave this process in acceptance order (the design's promise
//! for every recipient; several instances on one store each keep it for what they accept). A
//! worker takes a delivery only while it is caught up: its last claim, the only one in flight,
//! found fewer deliveries due than it asked for and had started or put in line every one it
//! found, and no delivery was stored for it meanwhile: since the claim read, where the store
//! tells when that was ([`ClaimWitness`]: SQLite, whose one writer runs each batch's claims after
//! its records), else since the claim was sent. A delivery it declines (no slot or place in
//! line free, the breaker not closed, the worker behind or retired) is stored for its claim and
//! marks it behind, so no later one is taken ahead of it; until a claim has seen it (one that
//! read after it or, where the store does not tell, one sent after its record's commit ended),
//! no claim can show the worker caught up again, and the worker in force is woken once it is
//! committed.
//! Ordered and batched recipients take no hand-offs: their workers choose from the store.
//!
//! What the invariant does not cover: a commit whose outcome the writer cannot know (PostgreSQL's
//! answer to `COMMIT` lost) leaves the deliveries it took leased until their lease expires, as a
//! crash does, and later ones may leave first; so does a claim whose caller stopped waiting for
//! it (the store's commit timeout) but which ran; on PostgreSQL a claim skips rows another
//! transaction has locked, so while `passerelle store encrypt` or `rotate-key` rewrites queued
//! deliveries a short claim can show the worker caught up; and a wall clock stepping back can
//! make a committed delivery look not yet due. (On PostgreSQL, whose claims run on a connection
//! of their own, a claim can see a declined delivery of a batch that has committed before the
//! writer has handed over the batch's earlier deliveries; a place in line taken at an offer holds
//! its turn until then, so what the claim found waits behind it.) What waits in line starts as
//! slots free, also if the breaker has opened since it was taken (at most twice `concurrency`, as
//! claimed attempts did before).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Weak};

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;

use super::{Attempting, LEASE_MARGIN, Recipient, Recipients, Worker};
use crate::clock;
use crate::store::{ClaimWitness, ClaimedDelivery, Lease, NewRecord, Offer, Taker};

/// One delivery to be offered to its recipient's worker, with the body it attempts if it takes
/// it: the projection in plaintext (what the store is given may be sealed by the time it is
/// offered). Holds the worker weakly: a delivery still queued for the store does not keep a
/// stopped worker (and its recorder) alive.
pub(super) struct Offered {
    worker: Weak<Worker>,
    recipient: Arc<Recipient>,
    /// Who to wake once a declined delivery is committed: the recipient's worker in force then.
    recipients: Recipients,
    body: Bytes,
    /// Declined whatever the worker's state: the record was routed under a configuration that
    /// made the recipient ordered, which its worker in force no longer is.
    decline: bool,
}

impl Offered {
    pub fn new(worker: &Arc<Worker>, recipients: Recipients, body: Bytes, decline: bool) -> Self {
        let recipient = worker.recipient.clone();
        Offered { worker: Arc::downgrade(worker), recipient, recipients, body, decline }
    }

    /// Stored for a claim: the worker is behind until the commit has ended.
    fn decline(&self) -> Offer {
        let handing = &self.recipient.handing;
        handing.uncommitted.fetch_add(1, SeqCst);
        handing.stored.fetch_add(1, SeqCst);
        handing.caught_up.store(false, SeqCst);
        Offer::Declined(Box::new(Behind { recipient: self.recipient.clone(), recipients: self.recipients.clone() }))
    }
}

impl Taker for Offered {
    fn offer(&self, record: &NewRecord, i: usize) -> Offer {
        let Some(worker) = self.worker.upgrade().filter(|w| !self.decline && !w.retired()) else {
            return self.decline();
        };
        let ready = self.recipient.handing.caught_up() && worker.recipient.breaker.is_closed();
        let Some(place) = ready.then(|| worker.reserve()).flatten() else {
            return self.decline();
        };
        let mut delivery = ClaimedDelivery::unclaimed(record, i);
        delivery.body = self.body.clone();
        let until = clock::now_ms() + worker.settings.lease.as_millis() as i64;
        let lease = Lease { worker: worker.worker_id.clone(), until };
        let take = move |id, audit_seq| {
            (delivery.id, delivery.audit_seq) = (id, audit_seq);
            worker.handed_over();
            match place {
                Place::Slot(slot, _counted) => {
                    worker.spawn_in(slot, |worker, slot| async move { worker.attempt(delivery, slot).await })
                }
                Place::Waiting(reserved) => worker.wait_for_slot(delivery, reserved),
            }
        };
        Offer::Taken { lease, take: Box::new(take) }
    }
}

/// A recipient's deliveries waiting for a slot, in the order they were taken (handed over while
/// every slot was busy, in the order their records committed, or claimed), each to start (by the
/// worker that took it) in the next slot that frees: at most `concurrency` handed over, counting
/// those offered whose record is still committing, and at most twice that in all. A place taken
/// at an offer holds its turn until its record's commit has ended, so nothing behind it starts
/// first (on PostgreSQL a claim can see a later delivery of the same commit before the writer
/// hands this one over). While any waits, a fresh delivery joins them rather than take a slot
/// that frees, so none overtakes another.
pub(super) type Waiting = Line<Arc<Worker>, ClaimedDelivery>;

/// Places in the order they were taken, each with its owner and, once it is ready, its item; a
/// place taken before its item exists (a hand-off whose record is committing) holds its turn.
pub(super) struct Line<O, T> {
    places: VecDeque<(O, u64, Option<T>)>,
    /// Names the places taken before their item, to fill or give up.
    tickets: u64,
}

impl<O, T> Default for Line<O, T> {
    fn default() -> Self {
        Line { places: VecDeque::new(), tickets: 0 }
    }
}

impl<O: Clone, T> Line<O, T> {
    pub fn len(&self) -> usize {
        self.places.len()
    }

    /// Takes a place for an item to come; its ticket.
    fn hold(&mut self, owner: O) -> u64 {
        self.tickets += 1;
        self.places.push_back((owner, self.tickets, None));
        self.tickets
    }

    /// Puts `item` in the place `ticket` holds; false if it holds none.
    fn fill(&mut self, ticket: u64, item: T) -> bool {
        match self.places.iter_mut().find(|(_, t, item)| *t == ticket && item.is_none()) {
            Some(place) => {
                place.2 = Some(item);
                true
            }
            None => false,
        }
    }

    fn give_up(&mut self, ticket: u64) {
        self.places.retain(|(_, t, item)| *t != ticket || item.is_some());
    }

    /// Adds ready places at the end.
    fn join(&mut self, owner: &O, items: impl IntoIterator<Item = T>) {
        self.places.extend(items.into_iter().map(|item| (owner.clone(), 0, Some(item))));
    }

    fn first_is_ready(&self) -> bool {
        self.places.front().is_some_and(|(_, _, item)| item.is_some())
    }

    /// The first place's owner and item, if it is ready.
    fn pop_ready(&mut self) -> Option<(O, T)> {
        if !self.first_is_ready() {
            return None;
        }
        let (owner, _, item) = self.places.pop_front()?;
        Some((owner, item?))
    }

    fn any_owned(&self, by: impl Fn(&O) -> bool) -> bool {
        self.places.iter().any(|(owner, _, _)| by(owner))
    }
}

/// Where a delivery taken at its offer starts: a slot reserved for it (its attempt counted from
/// the offer, so a retiring worker waits for it), or a place in [`Waiting`].
enum Place {
    Slot(OwnedSemaphorePermit, Attempting),
    Waiting(Reserved),
}

/// A place in [`Waiting`] reserved at an offer: given up if its record's commit fails.
struct Reserved {
    worker: Arc<Worker>,
    ticket: u64,
    filled: bool,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if !self.filled {
            self.worker.waiting().give_up(self.ticket);
            // What waited behind it may start now.
            self.worker.start_all_waiting();
        }
    }
}

impl Worker {
    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.recipient.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where a delivery offered now would start: a free slot if none waits, else a place among
    /// those waiting; `None` when every place is taken.
    fn reserve(self: &Arc<Self>) -> Option<Place> {
        let mut waiting = self.waiting();
        if waiting.len() == 0
            && let Ok(slot) = self.slots.clone().try_acquire_owned()
        {
            return Some(Place::Slot(slot, self.attempting()));
        }
        if !self.line || waiting.len() >= self.concurrency {
            return None;
        }
        let ticket = waiting.hold(self.clone());
        Some(Place::Waiting(Reserved { worker: self.clone(), ticket, filled: false }))
    }

    /// Whether what it claims waits in line with what was handed over: one queue, in the order
    /// the deliveries were taken, so a claim that finds nothing more due shows the worker caught
    /// up at once, whether or not its slots are free.
    pub(super) fn claims_join_line(&self) -> bool {
        self.takes_handoffs && self.line
    }

    /// How many more deliveries a claim may put in line.
    pub(super) fn room_in_line(&self) -> usize {
        if !self.claims_join_line() {
            return 0;
        }
        self.concurrency.saturating_sub(self.waiting().len())
    }

    /// Queues claimed deliveries behind those waiting, in the order claimed. The line may then
    /// hold more than `concurrency` (offers that filled it while the claim ran), at most twice
    /// as many (a claim asks for at most `concurrency`); offers wait until it is shorter.
    pub(super) fn join_line(self: &Arc<Self>, claimed: Vec<ClaimedDelivery>) {
        self.waiting().join(self, claimed);
    }

    /// Puts a delivery taken at its offer (its record now committed) in its place, and starts
    /// what a free slot allows.
    fn wait_for_slot(self: &Arc<Self>, delivery: ClaimedDelivery, mut reserved: Reserved) {
        reserved.filled = self.waiting().fill(reserved.ticket, delivery);
        self.start_all_waiting();
    }

    /// How many deliveries wait for a slot, counting places whose record is still committing.
    pub(super) fn waiting_count(&self) -> usize {
        self.waiting().len()
    }

    /// Whether a delivery this worker took waits for a slot (a retiring worker starts its own,
    /// which are ahead of any its successor took).
    pub(super) fn has_own_waiting(self: &Arc<Self>) -> bool {
        self.waiting().any_owned(|worker| Arc::ptr_eq(worker, self))
    }

    /// Starts the first delivery waiting in `slot`, by the worker that took it; gives `slot`
    /// back if none waits, or the first's record is still committing.
    pub(super) fn start_waiting(&self, slot: OwnedSemaphorePermit) -> Option<OwnedSemaphorePermit> {
        let Some((worker, delivery)) = self.waiting().pop_ready() else { return Some(slot) };
        worker.spawn_in(slot, |worker, slot| async move { worker.attempt(delivery, slot).await });
        None
    }

    /// Starts the deliveries waiting, as many as there are free slots. A slot found with
    /// nothing to start is given back and the line looked at again: a delivery joining it
    /// meanwhile may have found no slot free because of that one.
    pub(super) fn start_all_waiting(&self) {
        while self.waiting().first_is_ready() {
            let Ok(slot) = self.slots.clone().try_acquire_owned() else { return };
            drop(self.start_waiting(slot));
        }
    }
}

/// Whether a delivery may wait in line for a slot under `lease`: its lease runs from its offer
/// or claim, and it may wait up to two attempt `timeout`s (at most `2 × concurrency` wait, and
/// each slot ahead ends within one), then take one. Otherwise a recipient with a long timeout
/// only takes hand-offs into a free slot and claims only for its free slots. (A store too slow
/// to write results keeps slots busy longer, as it did claimed attempts.)
pub(super) fn line_fits_lease(timeout: Duration, lease: Duration) -> bool {
    3 * timeout + LEASE_MARGIN <= lease
}

/// A delivery stored for its worker's claim while its record commits: the worker cannot count
/// itself caught up until this is dropped, once the commit has ended; then it is woken to claim.
struct Behind {
    recipient: Arc<Recipient>,
    recipients: Recipients,
}

impl Drop for Behind {
    fn drop(&mut self) {
        self.recipient.handing.uncommitted.fetch_sub(1, SeqCst);
        self.recipients.wake(&self.recipient.id);
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
    /// Claims sent and not yet done with (their deliveries not all started): during a reload the
    /// retiring worker's and the new one's.
    claiming: AtomicUsize,
}

/// What a worker saw before a claim, whether the claim can show it caught up; a claim in flight
/// until dropped.
pub(super) struct BeforeClaim {
    seen: Arc<Seen>,
}

/// How many deliveries had been stored for a claim, and whether every one of them was visible
/// to it: first as the worker saw it before sending the claim, then, if the store tells
/// ([`ClaimWitness`]), as the claim read.
struct Seen {
    handing: Arc<Handing>,
    stored: AtomicU64,
    settled: AtomicBool,
}

impl ClaimWitness for Seen {
    /// In the writer's order: every delivery declined until now is in a committed batch or in
    /// the claim's own transaction (or was rolled back), so the claim sees all it can.
    fn reading(&self) {
        self.stored.store(self.handing.stored.load(SeqCst), SeqCst);
        self.settled.store(true, SeqCst);
    }
}

impl BeforeClaim {
    /// What the store tells when the claim reads.
    pub fn witness(&self) -> Arc<dyn ClaimWitness> {
        self.seen.clone()
    }
}

impl Drop for BeforeClaim {
    fn drop(&mut self) {
        self.seen.handing.claiming.fetch_sub(1, SeqCst);
    }
}

impl Handing {
    /// Whether the worker takes hand-offs now; if not, a freed slot may have a claim to make.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(SeqCst)
    }

    /// Taken just before a claim is sent.
    pub fn before_claim(self: &Arc<Self>) -> BeforeClaim {
        self.claiming.fetch_add(1, SeqCst);
        let seen = Seen {
            handing: self.clone(),
            stored: AtomicU64::new(self.stored.load(SeqCst)),
            settled: AtomicBool::new(self.uncommitted.load(SeqCst) == 0),
        };
        BeforeClaim { seen: Arc::new(seen) }
    }

    /// After a claim that asked for `asked` and got `got` (`None`: it failed), once every claimed
    /// delivery has started or is in line: caught up if the store had no more due, unless a
    /// delivery was stored for a claim since the claim read (or, if the store does not tell when
    /// that was, since `before`; or was still being committed then), or another claim is still
    /// in flight (it may hold deliveries this one did not see, not yet started).
    pub fn after_claim(&self, before: BeforeClaim, asked: usize, got: Option<usize>) {
        let alone = self.claiming.load(SeqCst) == 1;
        let settled = before.seen.settled.load(SeqCst);
        if got.is_none_or(|got| got >= asked) || !settled || !alone {
            self.caught_up.store(false, SeqCst);
            return;
        }
        self.caught_up.store(true, SeqCst);
        // A delivery stored meanwhile: either it is counted by now, or its own mark comes after.
        if self.stored.load(SeqCst) != before.seen.stored.load(SeqCst) {
            self.caught_up.store(false, SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_place_taken_at_an_offer_holds_its_turn_until_its_record_has_committed() {
        let mut line: Line<&str, u32> = Line::default();
        // A hand-off takes a place while its record commits; a claim then puts two behind it
        // (on PostgreSQL the claim can see a later delivery of the same commit first).
        let ticket = line.hold("w");
        line.join(&"w", [2, 3]);
        assert_eq!(line.len(), 3, "the place counts against the line's bound");
        assert_eq!(line.pop_ready(), None, "nothing behind it starts first");
        assert!(line.fill(ticket, 1));
        assert_eq!(line.pop_ready(), Some(("w", 1)));
        assert_eq!(line.pop_ready(), Some(("w", 2)));
        // A place whose commit failed is given up: what waits behind it may start.
        let ticket = line.hold("w");
        line.join(&"v", [4]);
        line.give_up(ticket);
        assert!(!line.fill(ticket, 9), "a place given up is not filled");
        assert_eq!(line.pop_ready(), Some(("w", 3)));
        assert_eq!(line.pop_ready(), Some(("v", 4)));
        assert_eq!((line.pop_ready(), line.len()), (None, 0));
        assert!(!line.any_owned(|owner| *owner == "w"));
    }

    #[test]
    fn a_hand_off_waits_in_line_only_if_its_lease_outlasts_the_wait_and_its_attempt() {
        let s = Duration::from_secs;
        assert!(line_fits_lease(s(10), s(60)), "the defaults");
        assert!(line_fits_lease(s(19) + Duration::from_millis(600), s(60)));
        assert!(!line_fits_lease(s(20), s(60)), "a timeout the configuration accepts, too long for the line");
        assert!(!line_fits_lease(s(55), s(60)));
    }

    #[test]
    fn a_claim_shows_the_worker_caught_up_only_if_nothing_was_stored_for_it_meanwhile() {
        let handing = Arc::new(Handing::default());
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
        // Another claim in flight (a retiring worker's, during a reload).
        let other = handing.before_claim();
        handing.after_claim(handing.before_claim(), 4, Some(0));
        assert!(!handing.caught_up());
        drop(other);
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

    #[test]
    fn a_store_that_tells_when_its_claim_read_narrows_what_counts_as_meanwhile() {
        let handing = Arc::new(Handing::default());
        let decline = || {
            handing.uncommitted.fetch_add(1, SeqCst);
            handing.stored.fetch_add(1, SeqCst);
        };
        // Declined while the claim waited in the writer's queue, and still committing when the
        // claim was sent: the claim read after it, so it saw it.
        decline();
        let before = handing.before_claim();
        decline();
        before.witness().reading();
        handing.after_claim(before, 4, Some(2));
        assert!(handing.caught_up(), "everything declined before the claim read was seen");
        // Declined after the claim read: the claim missed it.
        let before = handing.before_claim();
        before.witness().reading();
        decline();
        handing.after_claim(before, 4, Some(0));
        assert!(!handing.caught_up());
        // A store that does not tell: what the worker saw before the claim (one still committing).
        let before = handing.before_claim();
        handing.after_claim(before, 4, Some(0));
        assert!(!handing.caught_up());
    }
}
