//! Pull mailboxes: a recipient that accepts no connection (no static address, a firewall that
//! only lets traffic out) takes its deliveries over the partner API instead of receiving them.
//!
//! A pull recipient's deliveries are stored exactly like a push recipient's, the projection fixed
//! at acceptance, and wait in its mailbox. [`Mailbox::take`] leases up to N of them to one caller
//! for a lease time, the same lease a push worker takes (so another caller, here or in another
//! instance, is not given them until it expires), in acceptance order, and one at a time for a
//! recipient an agreement delivers in strict order. With nothing due it waits: woken by a commit
//! in this process, and each poll interval for commits in other instances and retries coming due;
//! never longer than the wait the caller asked for, and never for more callers at once than the
//! cap (past it, [`InboxError::Busy`]).
//!
//! The caller then settles what it took under that lease ([`Mailbox::settle`]): acknowledged
//! (delivered) or refused (a failed attempt, with the push retry policy: backoff, attempt limit,
//! dead). A settlement naming a delivery no longer held under its lease changes nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::backoff::{Backoff, Failure};
use crate::clock;
use crate::store::{
    AttemptResult, AttemptUpdate, ClaimRequest, ClaimedDelivery, Settled, Settlement, Store, StoreError,
};

/// How pull recipients take their deliveries (`[delivery]` `inbox_*`).
#[derive(Debug, Clone)]
pub struct InboxSettings {
    /// How long deliveries taken are leased to their caller.
    pub lease: Duration,
    /// The longest a caller may wait for deliveries.
    pub max_wait: Duration,
    /// The most deliveries one call takes.
    pub max_batch: usize,
    /// Callers waiting on one mailbox at once; past it, `429`.
    pub waiting_per_partner: usize,
}

/// Why taking or settling deliveries failed.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("{0} callers already wait on this mailbox")]
    Busy(usize),
    #[error("{} of the deliveries named are not held under this lease", .0.len())]
    NotHeld(Vec<i64>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a pull recipient says of deliveries it took.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// It has them.
    Ack,
    /// It could not take them; `reason` is a short code, never a record value.
    Nack { reason: String },
}

/// Deliveries leased to one caller.
#[derive(Debug)]
pub struct Taken {
    /// The lease's name: what the caller settles them under.
    pub lease: String,
    /// Unix ms until which they are the caller's.
    pub lease_until: i64,
    pub deliveries: Vec<ClaimedDelivery>,
}

/// One pull recipient's mailbox.
pub struct Mailbox {
    pub id: String,
    /// One delivery at a time, in acceptance order.
    pub ordered: bool,
    /// Woken when deliveries are committed or replayed for this recipient. Kept across reloads
    /// with the waiting cap, so callers waiting through a reload are still woken.
    arrived: Arc<Notify>,
    waiting: Arc<Semaphore>,
    cap: usize,
}

impl Mailbox {
    /// Wakes every caller waiting on this mailbox.
    pub fn wake(&self) {
        self.arrived.notify_waiters();
    }

    /// Leases up to `limit` due deliveries to a new lease for `lease_for`, waiting up to `wait`
    /// for some to come due (and checking every `poll`).
    pub async fn take(
        &self,
        store: &dyn Store,
        limit: usize,
        wait: Duration,
        lease_for: Duration,
        poll: Duration,
    ) -> Result<Taken, InboxError> {
        let _waiting: OwnedSemaphorePermit =
            self.waiting.clone().try_acquire_owned().map_err(|_| InboxError::Busy(self.cap))?;
        let lease = format!("inbox/{}/{}", self.id, uuid::Uuid::now_v7().simple());
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Listening before claiming: a commit between the claim and the wait still wakes us.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let now = clock::now_ms();
            let lease_until = now + lease_for.as_millis() as i64;
            let claim = ClaimRequest {
                recipient: self.id.clone(),
                worker: lease.clone(),
                limit: if self.ordered { 1 } else { limit.max(1) },
                now,
                lease_until,
                head_only: self.ordered,
                witness: None,
            };
            let deliveries = store.claim_due(claim).await?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !deliveries.is_empty() || left.is_zero() {
                return Ok(Taken { lease, lease_until, deliveries });
            }
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep(left.min(poll)) => {}
            }
        }
    }

    /// Settles deliveries taken under `lease`: all of them, or (if any is no longer held under
    /// it) none. Returns the attempts recorded, each with its number.
    pub async fn settle(
        &self,
        store: &dyn Store,
        backoff: &Backoff,
        lease: String,
        ids: Vec<i64>,
        verdict: Verdict,
    ) -> Result<Vec<(u32, AttemptUpdate)>, InboxError> {
        let at = clock::now_ms();
        let jitter = crate::random::unit();
        let backoff = backoff.clone();
        let decide = move |held: &crate::store::HeldDelivery| match &verdict {
            Verdict::Ack => AttemptResult::Delivered { status: None },
            Verdict::Nack { reason } => {
                let failure = Failure { status: None, error: format!("refused: {reason}"), retry_after: None };
                let age = Duration::from_millis((at - held.created_at).max(0) as u64);
                backoff.after_failure(failure, held.attempts + 1, age, jitter, at)
            }
        };
        let settlement = Settlement { recipient: self.id.clone(), lease, ids, at, decide: Box::new(decide) };
        match store.settle(settlement).await? {
            Settled::Done(updates) => Ok(updates),
            Settled::NotHeld(ids) => Err(InboxError::NotHeld(ids)),
        }
    }
}

/// Every pull recipient's mailbox, by id: the set in force, swapped whole by a reload.
#[derive(Clone, Default)]
pub struct Mailboxes {
    by_id: Arc<ArcSwap<HashMap<String, Arc<Mailbox>>>>,
}

impl Mailboxes {
    pub fn get(&self, recipient: &str) -> Option<Arc<Mailbox>> {
        self.by_id.load().get(recipient).cloned()
    }

    /// Wakes the callers waiting on `recipient`'s mailbox, if it has one.
    pub fn wake(&self, recipient: &str) -> bool {
        self.by_id.load().get(recipient).map(|m| m.wake()).is_some()
    }

    /// The ids of the mailboxes in force.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.by_id.load().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Puts these pull recipients (id, ordered) in force, keeping each one's waiters and cap
    /// across the swap; returns the ids no longer in force.
    pub(super) fn apply(&self, planned: &[(String, bool)], settings: &InboxSettings) -> Vec<String> {
        let previous = self.by_id.load_full();
        let cap = settings.waiting_per_partner.max(1);
        let by_id: HashMap<String, Arc<Mailbox>> = planned
            .iter()
            .map(|(id, ordered)| {
                let kept = previous.get(id);
                let waiting = kept
                    .filter(|m| m.cap == cap)
                    .map(|m| m.waiting.clone())
                    .unwrap_or_else(|| Arc::new(Semaphore::new(cap)));
                let arrived = kept.map(|m| m.arrived.clone()).unwrap_or_default();
                (id.clone(), Arc::new(Mailbox { id: id.clone(), ordered: *ordered, arrived, waiting, cap }))
            })
            .collect();
        let gone = previous.keys().filter(|id| !by_id.contains_key(*id)).cloned().collect();
        self.by_id.store(Arc::new(by_id));
        gone
    }
}
