//! What each write of the group commit decides, in the transaction the writer opened: the
//! engine's side of that transaction ([`Batch`]), the audit chain it extends ([`Chain`], its head
//! read once per batch under the engine's lock), and each write's own statements: when an
//! idempotency key replays a record, what a claim leases, what a pull recipient's settlement
//! needs, what a replay and a purge change, and the sealed store's key writes.
//!
//! The writer (`writer`) only queues, batches, commits and answers; an engine only opens and
//! commits the transaction and runs the statements whose text is its own.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use super::keys::{self, BodyRow, NewDataKey, RewrappedKey, SealedBody, SealedClaim, StoredKey};
use super::sql::{self, Param, Row, Sql};
use super::terms::TermsIds;
use super::*;
use crate::audit::receipt::TreeHead;
use crate::audit::{self, AuditEntry, AuditEvent, AuditStamp};

/// The writer's connection: a transaction at a time, and the statements only this engine runs.
pub(super) trait Batch: Sql {
    /// `sqlite` or `postgres`, for the metrics.
    const ENGINE: &'static str;

    async fn begin(&mut self) -> Result<(), StoreError>;
    /// Sends whatever the engine kept back, then commits.
    async fn commit(&mut self) -> Result<(), StoreError>;
    /// Rolls back after a failure; a connection that cannot even do that fails the next batch.
    async fn rollback(&mut self);

    /// Inserts chained audit entries (the engine may hold them until its next statement).
    async fn insert_entries(&mut self, entries: Vec<AuditEntry>) -> Result<(), StoreError>;
    /// Inserts an accepted record and its deliveries, each under its lease in `leases` if taken
    /// and naming its stored terms in `terms` (one per delivery, `None` for none; the engine may
    /// hold them until its next statement).
    async fn insert_record(
        &mut self,
        record: &NewRecord,
        audit_seq: i64,
        leases: &[Option<Lease>],
        terms: &[Option<i64>],
    ) -> Result<(), StoreError>;
    /// The ids of the deliveries this transaction inserted, in the order inserted, once it has
    /// committed; each call takes them.
    fn take_inserted_deliveries(&mut self) -> Vec<i64>;
    /// Applies attempt results to the deliveries their worker still holds, and returns the
    /// positions in `updates` of those applied: a worker that lost its lease changes nothing.
    async fn record_attempts(&mut self, updates: &[&AttemptUpdate]) -> Result<HashSet<usize>, StoreError>;

    /// Adds applied attempts to their deliveries' timelines, after their rows were updated (the
    /// engine may hold them until its next statement).
    async fn insert_attempts(&mut self, attempts: &[&AttemptUpdate]) -> Result<(), StoreError> {
        for u in attempts {
            let effect = u.effect();
            let next = matches!(u.result, AttemptResult::Retry { .. }).then_some(effect.next_attempt_at);
            let params = [
                u.at.into(),
                effect.status.as_str().into(),
                effect.http_status.map(i64::from).into(),
                u.latency_ms.into(),
                u.error_class().map(ErrorClass::as_str).into(),
                next.into(),
                u.delivery_id.into(),
            ];
            self.execute(sql::INSERT_ATTEMPT, &params).await?;
        }
        Ok(())
    }

    /// Locks the chain head until the transaction ends and returns it, with the earlier uses of
    /// the idempotency `keys` the batch's records carry, read once the lock is held: an instance
    /// that committed a key before releasing the head is seen.
    async fn lock_chain_and_find(&mut self, keys: &[KeyUse<'_>]) -> Result<(AuditStamp, EarlierUses), StoreError> {
        let head = self.query(Self::DIALECT.chain_head, &[], stamp).await?.pop().unwrap_or(AuditStamp::GENESIS);
        let mut found = EarlierUses::new();
        for &(sender, key) in keys {
            let earlier = self.query(sql::IDEMPOTENT, &[sender.into(), key.into()], |r| earlier_use(r, 0)).await?;
            if let Some(earlier) = earlier.into_iter().next() {
                found.insert((sender.to_owned(), key.to_owned()), earlier);
            }
        }
        Ok((head, found))
    }

    /// Stores a signed receipt tree whose last receipt is audit entry `last_seq` (the engine may
    /// hold it until its next statement).
    async fn insert_tree(&mut self, head: &TreeHead, last_seq: i64) -> Result<(), StoreError> {
        let params = [
            head.first_seq.into(),
            last_seq.into(),
            (head.size as i64).into(),
            Param::Bytes(&head.root),
            head.signed_at.into(),
            (&head.key_id).into(),
            Param::Bytes(&head.signature),
        ];
        self.execute(sql::ADD_RECEIPT_TREE, &params).await.map(drop)
    }

    /// Moves the chain head to `head` before the commit, if the engine keeps it in a row of its
    /// own (the engine may hold this until it commits).
    async fn move_head(&mut self, head: AuditStamp) -> Result<(), StoreError> {
        match Self::DIALECT.move_head {
            Some(move_head) => self.execute(move_head, &[head.seq.into(), Param::Bytes(&head.hash)]).await.map(drop),
            None => Ok(()),
        }
    }
}

/// An idempotency key a record carries: its sender and the key.
pub(super) type KeyUse<'a> = (&'a str, &'a str);

/// The earlier use of each idempotency key, by sender and key.
pub(super) type EarlierUses = HashMap<(String, String), EarlierUse>;

/// What the record that first used an idempotency key left: its body's digest, its receipt and
/// its audit entry.
pub(super) struct EarlierUse {
    body_sha256: Vec<u8>,
    receipt: Bytes,
    stamp: AuditStamp,
}

/// An earlier use from the columns `body_sha256, receipt, seq, hash` starting at column `first`.
pub(super) fn earlier_use(r: &dyn Row, first: usize) -> Result<EarlierUse, StoreError> {
    Ok(EarlierUse {
        body_sha256: r.bytes(first)?,
        receipt: Bytes::from(r.bytes(first + 1)?),
        stamp: AuditStamp { seq: r.int(first + 2)?, hash: r.hash(first + 3)? },
    })
}

/// The audit chain as one transaction extends it.
#[derive(Default)]
pub(super) struct Chain {
    /// The head, read under the engine's lock at the transaction's first append, then moved by
    /// each append.
    pub head: Option<AuditStamp>,
    /// The kinds of the entries appended, for the metrics after commit.
    pub appended: Vec<String>,
}

impl Chain {
    /// Appends `events` to the chain, in order.
    pub async fn append<B: Batch>(
        &mut self,
        b: &mut B,
        events: Vec<AuditEvent>,
    ) -> Result<Vec<AuditStamp>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let head = match self.head {
            Some(head) => head,
            None => b.query(B::DIALECT.chain_head, &[], stamp).await?.pop().unwrap_or(AuditStamp::GENESIS),
        };
        let entries = audit::chain(head, events);
        let stamps: Vec<AuditStamp> = entries.iter().map(|e| AuditStamp { seq: e.seq, hash: e.hash }).collect();
        self.appended.extend(entries.iter().map(|e| e.event.kind.clone()));
        self.head = stamps.last().copied();
        b.insert_entries(entries).await?;
        Ok(stamps)
    }
}

/// An audit stamp from `seq, hash`.
pub(super) fn stamp(row: &dyn Row) -> Result<AuditStamp, StoreError> {
    Ok(AuditStamp { seq: row.int(0)?, hash: row.hash(1)? })
}

/// A record, unless its idempotency key was used before: then the original receipt again for
/// the same body, or a conflict for another. `earlier` holds the keys' earlier uses, read under
/// the chain head's lock in this transaction; a record accepted here adds its own, so a second
/// use in the same batch finds it.
///
/// Each delivery with a taker is offered to it as it is stored (see [`Offer`]); the answers, by
/// delivery, are returned for the writer to act on once the batch has ended.
pub(super) async fn commit_record<B: Batch>(
    b: &mut B,
    chain: &mut Chain,
    record: &NewRecord,
    earlier: &mut EarlierUses,
    terms: &TermsIds,
) -> Result<(CommitOutcome, Vec<Option<Offer>>), StoreError> {
    let key = record.idempotency_key.as_ref().map(|key| (record.sender.clone(), key.clone()));
    if let Some(earlier) = key.as_ref().and_then(|key| earlier.get(key)) {
        let outcome = if earlier.body_sha256 == record.body_sha256 {
            CommitOutcome::Duplicate { receipt: earlier.receipt.clone(), stamp: earlier.stamp }
        } else {
            CommitOutcome::Conflict
        };
        return Ok((outcome, Vec::new()));
    }
    let stamp = chain.append(b, vec![record.accepted_event()]).await?[0];
    let offers: Vec<Option<Offer>> =
        record.deliveries.iter().enumerate().map(|(i, d)| d.taker.as_ref().map(|t| t.offer(record, i))).collect();
    let leases: Vec<Option<Lease>> = offers
        .iter()
        .map(|offer| match offer {
            Some(Offer::Taken { lease, .. }) => Some(lease.clone()),
            _ => None,
        })
        .collect();
    b.insert_record(record, stamp.seq, &leases, &terms.of(record)?).await?;
    if let Some(key) = key {
        let first = EarlierUse { body_sha256: record.body_sha256.to_vec(), receipt: record.receipt.clone(), stamp };
        earlier.insert(key, first);
    }
    // Its place in the batch's receipt tree is given once every write of the batch has run.
    // Its deliveries' ids are given once the batch has committed (an engine may send its rows
    // only with the commit).
    let outcome =
        CommitOutcome::Accepted { receipt: record.receipt.clone(), stamp, inclusion: None, deliveries: Vec::new() };
    Ok((outcome, offers))
}

/// Leases due deliveries of one recipient, oldest first, with one statement to lease them all.
/// SQLite runs this in the writer; PostgreSQL in a writer of its own for claims (claims do not
/// touch the chain), where the dialect's row locks keep instances apart.
pub(super) async fn claim<S: Sql>(s: &mut S, claim: &ClaimRequest) -> Result<Vec<SealedClaim>, StoreError> {
    let rows = if claim.head_only {
        s.query(S::DIALECT.claim_head, &[(&claim.recipient).into()], claimed_row).await?
    } else {
        let params = [(&claim.recipient).into(), claim.now.into(), (claim.limit as i64).into()];
        s.query(S::DIALECT.claim_due, &params, claimed_row).await?
    };
    // The head is read whatever its state: if it is not due or another worker holds it, nothing
    // behind it may go either.
    let claimed: Vec<SealedClaim> = rows
        .into_iter()
        .filter(|(_, next_attempt_at, claimed_until)| {
            !claim.head_only || (*next_attempt_at <= claim.now && *claimed_until < claim.now)
        })
        .map(|(claim, _, _)| claim)
        .collect();
    if !claimed.is_empty() {
        let ids: Vec<i64> = claimed.iter().map(|c| c.delivery.id).collect();
        let params = [claim.lease_until.into(), (&claim.worker).into(), Param::Ids(&ids)];
        s.execute(S::DIALECT.lease, &params).await?;
    }
    Ok(claimed)
}

/// Records a pull recipient's settlement if every delivery it names is held under its lease (the
/// rows locked until the transaction ends), else changes nothing.
pub(super) async fn settle<B: Batch>(b: &mut B, s: &Settlement) -> Result<Settled, StoreError> {
    let read = |r: &dyn Row| -> Result<HeldDelivery, StoreError> {
        Ok(HeldDelivery {
            id: r.int(0)?,
            record_id: r.text(1)?,
            agreement: r.text(2)?,
            body_digest: r.hash(3)?,
            attempts: r.small(4)?,
            created_at: r.int(5)?,
        })
    };
    let mut ids = s.ids.clone();
    ids.sort_unstable();
    ids.dedup();
    let params = [(&s.recipient).into(), (&s.lease).into(), Param::Ids(&ids)];
    let held = b.query(B::DIALECT.held, &params, read).await?;
    if held.len() < ids.len() {
        let found: HashSet<i64> = held.iter().map(|h| h.id).collect();
        return Ok(Settled::NotHeld(ids.into_iter().filter(|id| !found.contains(id)).collect()));
    }
    let updates: Vec<AttemptUpdate> = held
        .iter()
        .map(|h| AttemptUpdate {
            delivery_id: h.id,
            worker: s.lease.clone(),
            record_id: h.record_id.clone(),
            recipient: s.recipient.clone(),
            agreement: h.agreement.clone(),
            body_digest: h.body_digest,
            at: s.at,
            result: (s.decide)(h),
            latency_ms: None,
        })
        .collect();
    let updates_ref: Vec<&AttemptUpdate> = updates.iter().collect();
    let applied = b.record_attempts(&updates_ref).await?;
    log_attempts(b, &updates_ref, &applied).await?;
    if applied.len() != updates.len() {
        // The rows are locked and were read held: only a store that broke its own lock gets here.
        return Err(StoreError::new(StoreErrorKind::Failed, "a settlement's deliveries changed under it"));
    }
    Ok(Settled::Done(held.iter().map(|h| h.attempts + 1).zip(updates).collect()))
}

/// Adds each applied attempt (by its position in `updates`) to its delivery's timeline, in the
/// transaction that recorded its result, after its row was updated.
pub(super) async fn log_attempts<B: Batch>(
    b: &mut B,
    updates: &[&AttemptUpdate],
    applied: &HashSet<usize>,
) -> Result<(), StoreError> {
    let logged: Vec<&AttemptUpdate> =
        updates.iter().enumerate().filter(|(position, _)| applied.contains(position)).map(|(_, u)| *u).collect();
    if logged.is_empty() {
        return Ok(());
    }
    b.insert_attempts(&logged).await
}

/// A claimed delivery (`sql::claim_columns!`), its body still sealed, with its
/// `next_attempt_at` and `claimed_until`.
fn claimed_row(r: &dyn Row) -> Result<(SealedClaim, i64, i64), StoreError> {
    let delivery = ClaimedDelivery {
        id: r.int(0)?,
        record_id: r.text(1)?,
        recipient: r.text(2)?,
        agreement: r.text(3)?,
        sender: r.text(4)?,
        record_type: r.text(5)?,
        schema_version: r.text(6)?,
        traceparent: r.opt_text(7)?,
        tracestate: r.opt_text(8)?,
        body: Bytes::from(r.opt_bytes(9)?.unwrap_or_default()),
        body_digest: r.hash(10)?,
        attempts: r.small(11)?,
        created_at: r.int(12)?,
        received_at: r.int(13)?,
        audit_seq: r.int(14)?,
    };
    Ok((SealedClaim { delivery, key_id: r.opt_text(15)? }, r.int(16)?, r.int(17)?))
}

/// Requeues dead deliveries whose body is kept, in one statement, each replay audited.
pub(super) async fn replay<B: Batch>(
    b: &mut B,
    chain: &mut Chain,
    request: &ReplayRequest,
) -> Result<Vec<ReplayResult>, StoreError> {
    let read = |r: &dyn Row| -> Result<_, StoreError> {
        let status: DeliveryStatus = r.label(6)?;
        Ok((r.int(0)?, r.text(1)?, r.text(2)?, r.text(3)?, r.hash(4)?, r.flag(5)?, status))
    };
    let candidates = match &request.target {
        ReplayTarget::One(id) => b.query(B::DIALECT.replay_one, &[(*id).into()], read).await?,
        ReplayTarget::Recipient(recipient) => b.query(B::DIALECT.replay_recipient, &[recipient.into()], read).await?,
    };
    if candidates.is_empty()
        && let ReplayTarget::One(id) = request.target
    {
        return Ok(vec![ReplayResult { id, recipient: None, agreement: None, outcome: ReplayOutcome::NotFound }]);
    }
    let (mut results, mut requeued, mut events) = (Vec::with_capacity(candidates.len()), Vec::new(), Vec::new());
    for (id, record_id, recipient, agreement, digest, body_kept, status) in candidates {
        let outcome = if status != DeliveryStatus::Dead {
            ReplayOutcome::NotDead
        } else if !body_kept {
            ReplayOutcome::BodyPurged
        } else {
            requeued.push(id);
            events.push(request.event(record_id, &agreement, &recipient, digest));
            ReplayOutcome::Replayed
        };
        results.push(ReplayResult { id, recipient: Some(recipient), agreement: Some(agreement), outcome });
    }
    if !requeued.is_empty() {
        b.execute(B::DIALECT.requeue, &[request.now.into(), Param::Ids(&requeued)]).await?;
    }
    chain.append(b, events).await?;
    Ok(results)
}

/// Deletes bodies past their retention, and record subjects past the access record's; metadata
/// and audit entries stay, and the purge itself is audited.
pub(super) async fn purge<B: Batch>(
    b: &mut B,
    chain: &mut Chain,
    request: &PurgeRequest,
) -> Result<PurgeReport, StoreError> {
    let delivered_before = request.now - request.delivered_retention_ms;
    let dead_before = request.now - request.dead_retention_ms;
    let delivery_bodies = b.execute(sql::PURGE_DELIVERED, &[delivered_before.into()]).await?
        + b.execute(sql::PURGE_DEAD, &[dead_before.into()]).await?;
    // A record's own body goes once it is old enough and none of its deliveries still needs a body.
    let record_bodies = b.execute(sql::PURGE_RECORDS, &[delivered_before.into()]).await?;
    // Then the data keys with no body left under them whose day is over: crypto-shredding.
    let ended_before = request.now - keys::SHRED_GRACE_MS;
    let keys_destroyed = b.query(sql::DESTROY_KEYS, &[request.now.into(), ended_before.into()], |r| r.text(0)).await?;
    // The access record has a retention of its own: subjects go only past it, bodies or not.
    let subjects = b.execute(sql::PURGE_SUBJECTS, &[(request.now - request.access_retention_ms).into()]).await?;
    let report = PurgeReport { record_bodies, delivery_bodies, keys_destroyed, subjects };
    let events = report.events(request.now);
    if !events.is_empty() {
        chain.append(b, events).await?;
    }
    Ok(report)
}

/// Adds a data key unless one has its id, and returns the one stored under that id.
pub(super) async fn add_key<B: Batch>(b: &mut B, new: &NewDataKey) -> Result<StoredKey, StoreError> {
    let k = &new.key;
    let wrapped = k.wrapped.as_deref().map(Param::Bytes).unwrap_or(Param::Null);
    let params = [(&k.id).into(), (&k.kek_id).into(), wrapped, new.created_at.into(), new.not_after.into()];
    b.execute(sql::ADD_DATA_KEY, &params).await?;
    b.query(sql::DATA_KEY, &[(&k.id).into()], stored_key)
        .await?
        .pop()
        .ok_or_else(|| StoreError::new(StoreErrorKind::Failed, "a data key just added is not there"))
}

/// A data key's row (`sql::DATA_KEY`).
pub(super) fn stored_key(r: &dyn Row) -> Result<StoredKey, StoreError> {
    Ok(StoredKey { id: r.text(0)?, kek_id: r.text(1)?, wrapped: r.opt_bytes(2)? })
}

/// Writes sealed bodies over the rows still plaintext, with one audit entry for them all.
pub(super) async fn seal_bodies<B: Batch>(
    b: &mut B,
    chain: &mut Chain,
    bodies: &[SealedBody],
    at: i64,
) -> Result<u64, StoreError> {
    let mut sealed = 0;
    for body in bodies {
        sealed += match &body.row {
            BodyRow::Record { record_id } => {
                let params = [Param::Bytes(&body.sealed), (&body.key_id).into(), record_id.into()];
                b.execute(sql::SEAL_RECORD, &params).await?
            }
            BodyRow::Delivery { id, .. } => {
                let params = [Param::Bytes(&body.sealed), (&body.key_id).into(), (*id).into()];
                b.execute(sql::SEAL_DELIVERY, &params).await?
            }
        };
    }
    if sealed > 0 {
        let mut event = AuditEvent::new(at, audit::kind::BODIES_SEALED, "operator", "sealed");
        event.count = sealed as i64;
        chain.append(b, vec![event]).await?;
    }
    Ok(sealed)
}

/// Replaces the wrappings of data keys still wrapped as read, with one audit entry per pair of
/// wrapping keys.
pub(super) async fn rewrap<B: Batch>(
    b: &mut B,
    chain: &mut Chain,
    keys: &[RewrappedKey],
    at: i64,
) -> Result<u64, StoreError> {
    let mut by_pair: Vec<((&str, &str), i64)> = Vec::new();
    for k in keys {
        let params = [(&k.to).into(), Param::Bytes(&k.wrapped), (&k.id).into(), (&k.from).into()];
        if b.execute(sql::REWRAP_KEY, &params).await? > 0 {
            match by_pair.iter_mut().find(|(pair, _)| *pair == (k.from.as_str(), k.to.as_str())) {
                Some((_, n)) => *n += 1,
                None => by_pair.push(((k.from.as_str(), k.to.as_str()), 1)),
            }
        }
    }
    let events: Vec<AuditEvent> = by_pair
        .iter()
        .map(|((from, to), n)| {
            let mut event = AuditEvent::new(at, audit::kind::KEYS_REWRAPPED, "operator", "rewrapped");
            event.count = *n;
            event.reason = Some(format!("from {from} to {to}"));
            event
        })
        .collect();
    let total = by_pair.iter().map(|(_, n)| *n as u64).sum();
    chain.append(b, events).await?;
    Ok(total)
}
