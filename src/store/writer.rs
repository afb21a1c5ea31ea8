//! The group commit both engines share: a bounded queue of writes, each caller's deadline, the
//! writer that drains the queue into one transaction per batch, and what each write decides.
//!
//! Callers send their write with a oneshot for the answer through a bounded channel ([`Queue`]).
//! The writer takes everything queued (up to `max_batch`), runs it in one transaction through the
//! engine's [`Batch`], commits, then answers every caller: with its result if the transaction
//! committed, else with the transaction's error. A full channel makes callers wait until their
//! deadline (then [`StoreErrorKind::Saturated`]); it never grows.
//!
//! What a write decides is written here once: when an idempotency key replays a record, which
//! attempt results count, what a pull recipient's settlement needs, which records a batch
//! completed, what a replay does, what a purge removes, and how the audit chain is
//! extended (its head read once per batch, under the engine's lock). An engine only opens and
//! commits the transaction and runs the statements whose text is its own.
//!
//! **Invariant:** a caller's future resolves only after the transaction carrying its write has
//! committed (or failed and rolled back).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::keys::{self, BodyRow, NewDataKey, RewrappedKey, SealedBody, SealedClaim, StoredKey};
use super::sql::{self, Param, Row, Sql};
use super::*;
use crate::audit::{self, AuditEntry, AuditEvent, AuditStamp, Checkpoint, GENESIS};
use crate::telemetry::Metrics;
use crate::telemetry::events::{AuditAppended, RecordCompleted, StoreCommitted};

/// One write and its caller's answer, kept until the batch's transaction ends.
pub(super) struct Ask<I, O> {
    input: I,
    /// The write's result, answered only once the transaction has committed.
    output: Option<O>,
    reply: oneshot::Sender<Result<O, StoreError>>,
}

impl<I, O> Ask<I, O> {
    /// Answers the caller: the result if the transaction committed, else `failure`.
    fn answer(self, failure: Option<&StoreError>) {
        let answer = match (failure, self.output) {
            (None, Some(output)) => Ok(output),
            (Some(failure), _) => Err(failure.clone()),
            (None, None) => Err(StoreError::new(StoreErrorKind::Failed, "the write did not run")),
        };
        // A caller that gave up has dropped its receiver; its answer is simply discarded.
        let _ = self.reply.send(answer);
    }
}

/// A write for the writer.
pub(super) enum Write {
    Commit(Ask<Box<NewRecord>, CommitOutcome>),
    Claim(Ask<ClaimRequest, Vec<SealedClaim>>),
    Finish(Ask<Vec<AttemptUpdate>, ()>),
    Settle(Ask<Settlement, Settled>),
    Append(Ask<Vec<AuditEvent>, Vec<AuditStamp>>),
    Checkpoint(Ask<Checkpoint, ()>),
    Replay(Ask<ReplayRequest, Vec<ReplayResult>>),
    Purge(Ask<PurgeRequest, PurgeReport>),
    AddKey(Ask<NewDataKey, StoredKey>),
    SealBodies(Ask<(Vec<SealedBody>, i64), u64>),
    Rewrap(Ask<(Vec<RewrappedKey>, i64), u64>),
}

impl Write {
    fn answer(self, failure: Option<&StoreError>) {
        match self {
            Write::Commit(ask) => ask.answer(failure),
            Write::Claim(ask) => ask.answer(failure),
            Write::Finish(ask) => ask.answer(failure),
            Write::Settle(ask) => ask.answer(failure),
            Write::Append(ask) => ask.answer(failure),
            Write::Checkpoint(ask) => ask.answer(failure),
            Write::Replay(ask) => ask.answer(failure),
            Write::Purge(ask) => ask.answer(failure),
            Write::AddKey(ask) => ask.answer(failure),
            Write::SealBodies(ask) => ask.answer(failure),
            Write::Rewrap(ask) => ask.answer(failure),
        }
    }
}

/// The callers' side of the writer: a bounded channel and how long each caller waits.
pub(super) struct Queue {
    /// Writes for the writer; bounded, so a saturated writer pushes back on callers.
    writes: mpsc::Sender<Write>,
    /// How long a caller waits for room in `writes` and for its answer, in all.
    commit_timeout: Duration,
}

impl Queue {
    /// A queue of `capacity` writes, and the receiver its writer drains.
    pub fn new(capacity: usize, commit_timeout: Duration) -> (Queue, mpsc::Receiver<Write>) {
        let (writes, rx) = mpsc::channel(capacity);
        (Queue { writes, commit_timeout }, rx)
    }

    /// Whether the writer still has a queue (for tasks that live as long as the store).
    pub fn watch(&self) -> mpsc::WeakSender<Write> {
        self.writes.downgrade()
    }

    async fn ask<I, O>(&self, input: I, write: fn(Ask<I, O>) -> Write) -> Result<O, StoreError> {
        let (reply, answer) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + self.commit_timeout;
        let stopped = || StoreError::new(StoreErrorKind::Unavailable, "the writer has stopped");
        tokio::time::timeout_at(deadline, self.writes.send(write(Ask { input, output: None, reply })))
            .await
            .map_err(|_| StoreError::new(StoreErrorKind::Saturated, "the commit queue is full"))?
            .map_err(|_| stopped())?;
        // Once queued, the write will run; waiting past the deadline would only hide a stuck
        // disk, so the caller is told, and a committed record is still delivered.
        tokio::time::timeout_at(deadline, answer)
            .await
            .map_err(|_| StoreError::new(StoreErrorKind::TimedOut, "the commit did not finish in time"))?
            .map_err(|_| stopped())?
    }

    pub async fn commit_record(&self, record: NewRecord) -> Result<CommitOutcome, StoreError> {
        self.ask(Box::new(record), Write::Commit).await
    }

    pub async fn claim_due(&self, claim: ClaimRequest) -> Result<Vec<SealedClaim>, StoreError> {
        self.ask(claim, Write::Claim).await
    }

    pub async fn finish_attempts(&self, updates: Vec<AttemptUpdate>) -> Result<(), StoreError> {
        self.ask(updates, Write::Finish).await
    }

    pub async fn settle(&self, settlement: Settlement) -> Result<Settled, StoreError> {
        self.ask(settlement, Write::Settle).await
    }

    pub async fn append_audit(&self, events: Vec<AuditEvent>) -> Result<Vec<AuditStamp>, StoreError> {
        self.ask(events, Write::Append).await
    }

    pub async fn add_checkpoint(&self, checkpoint: Checkpoint) -> Result<(), StoreError> {
        self.ask(checkpoint, Write::Checkpoint).await
    }

    pub async fn replay(&self, request: ReplayRequest) -> Result<Vec<ReplayResult>, StoreError> {
        self.ask(request, Write::Replay).await
    }

    pub async fn add_key(&self, key: NewDataKey) -> Result<StoredKey, StoreError> {
        self.ask(key, Write::AddKey).await
    }

    pub async fn write_sealed(&self, bodies: Vec<SealedBody>, at: i64) -> Result<u64, StoreError> {
        self.ask((bodies, at), Write::SealBodies).await
    }

    pub async fn write_rewrapped(&self, keys: Vec<RewrappedKey>, at: i64) -> Result<u64, StoreError> {
        self.ask((keys, at), Write::Rewrap).await
    }

    pub async fn purge(&self, request: PurgeRequest) -> Result<PurgeReport, StoreError> {
        self.ask(request, Write::Purge).await
    }
}

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
    /// Inserts an accepted record and its deliveries (the same).
    async fn insert_record(&mut self, record: &NewRecord, audit_seq: i64) -> Result<(), StoreError>;
    /// Applies attempt results to the deliveries their worker still holds, and returns the
    /// positions in `updates` of those applied: a worker that lost its lease changes nothing.
    async fn record_attempts(&mut self, updates: &[&AttemptUpdate]) -> Result<HashSet<usize>, StoreError>;
}

/// The writer: drains the queue into one transaction per batch.
pub(super) struct Writer<B> {
    batch: B,
    metrics: Metrics,
    /// Writes per transaction at most: one commit's latency stays bounded under load.
    max_batch: usize,
}

impl<B: Batch> Writer<B> {
    pub fn new(batch: B, metrics: Metrics, max_batch: usize) -> Self {
        Writer { batch, metrics, max_batch: max_batch.max(1) }
    }

    /// Runs until every [`Queue`] is gone.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Write>) {
        let mut writes = Vec::with_capacity(self.max_batch);
        while rx.recv_many(&mut writes, self.max_batch).await > 0 {
            self.commit_batch(&mut writes).await;
        }
    }

    async fn commit_batch(&mut self, writes: &mut Vec<Write>) {
        let started = Instant::now();
        let records = writes.iter().filter(|w| matches!(w, Write::Commit(_))).count();
        let result = match self.batch.begin().await {
            Ok(()) => match run(&mut self.batch, writes).await {
                Ok(appended) => self.batch.commit().await.map(|()| appended),
                Err(e) => {
                    self.batch.rollback().await;
                    Err(e)
                }
            },
            Err(e) => Err(e),
        };
        if records > 0 {
            StoreCommitted { engine: B::ENGINE, records, duration: started.elapsed(), ok: result.is_ok() }
                .emit(&self.metrics);
        }
        if let Ok(committed) = &result {
            for kind in &committed.appended {
                AuditAppended { kind }.emit(&self.metrics);
            }
            for c in &committed.completed {
                let duration = Duration::from_millis(c.completed_at.saturating_sub(c.received_at).max(0) as u64);
                RecordCompleted { record_id: &c.record_id, record_type: &c.record_type, duration }.emit(&self.metrics);
            }
        }
        let failure = result.err();
        for write in writes.drain(..) {
            write.answer(failure.as_ref());
        }
    }
}

/// What a batch did that the metrics report once it has committed.
struct Committed {
    /// The kinds of the entries appended to the audit chain.
    appended: Vec<String>,
    /// The records the batch's deliveries completed.
    completed: Vec<Completion>,
}

/// A record whose last delivery a batch delivered.
struct Completion {
    record_id: String,
    record_type: String,
    /// Unix ms.
    received_at: i64,
    /// Unix ms when its last delivery arrived.
    completed_at: i64,
}

/// Runs a batch's writes in its open transaction, in order; returns what the metrics report
/// after the commit.
async fn run<B: Batch>(b: &mut B, writes: &mut [Write]) -> Result<Committed, StoreError> {
    let mut chain = Chain::default();
    // Settlements, each whole or not at all, in order (a second acknowledgement of the same
    // deliveries in the batch finds them settled), also before the chain head is locked.
    for write in writes.iter_mut() {
        if let Write::Settle(ask) = write {
            ask.output = Some(settle(b, &ask.input).await?);
        }
    }
    // Every attempt result of the batch in one go, before the chain head is locked; their audit
    // entries still take their writes' places in the chain.
    let (applied, completed) = {
        let updates: Vec<&AttemptUpdate> = writes
            .iter()
            .filter_map(|w| if let Write::Finish(ask) = w { Some(&ask.input) } else { None })
            .flatten()
            .collect();
        let applied = if updates.is_empty() { HashSet::new() } else { b.record_attempts(&updates).await? };
        // What was delivered: the applied push results, and every pull acknowledgement settled.
        let settled = writes.iter().filter_map(|w| match w {
            Write::Settle(Ask { output: Some(Settled::Done(done)), .. }) => Some(done.iter().map(|(_, u)| u)),
            _ => None,
        });
        let delivered: Vec<i64> = (updates.iter().enumerate())
            .filter(|(position, _)| applied.contains(position))
            .map(|(_, u)| *u)
            .chain(settled.flatten())
            .filter(|u| matches!(u.result, AttemptResult::Delivered { .. }))
            .map(|u| u.delivery_id)
            .collect();
        let completed = completions(b, &delivered).await?;
        (applied, completed)
    };
    let mut position = 0;
    for write in writes.iter_mut() {
        match write {
            Write::Commit(ask) => ask.output = Some(commit_record(b, &mut chain, &ask.input).await?),
            Write::Claim(ask) => ask.output = Some(claim(b, &ask.input).await?),
            Write::Finish(ask) => {
                let mut events = Vec::new();
                for update in &ask.input {
                    if applied.contains(&position) {
                        events.push(update.event());
                    }
                    position += 1;
                }
                chain.append(b, events).await?;
                ask.output = Some(());
            }
            Write::Settle(ask) => {
                if let Some(Settled::Done(updates)) = &ask.output {
                    chain.append(b, updates.iter().map(|(_, u)| u.event()).collect()).await?;
                }
            }
            Write::Append(ask) => ask.output = Some(chain.append(b, std::mem::take(&mut ask.input)).await?),
            Write::Checkpoint(ask) => {
                let c = &ask.input;
                let params =
                    [c.seq.into(), (&c.key_id).into(), Param::Bytes(&c.hash), c.at.into(), Param::Bytes(&c.signature)];
                b.execute(sql::ADD_CHECKPOINT, &params).await?;
                ask.output = Some(());
            }
            Write::Replay(ask) => ask.output = Some(replay(b, &mut chain, &ask.input).await?),
            Write::Purge(ask) => ask.output = Some(purge(b, &mut chain, &ask.input).await?),
            Write::AddKey(ask) => ask.output = Some(add_key(b, &ask.input).await?),
            Write::SealBodies(ask) => ask.output = Some(seal_bodies(b, &mut chain, &ask.input.0, ask.input.1).await?),
            Write::Rewrap(ask) => ask.output = Some(rewrap(b, &mut chain, &ask.input.0, ask.input.1).await?),
        }
    }
    // The head is known only if this transaction extended the chain.
    if let (Some(head), Some(move_head)) = (chain.head, B::DIALECT.move_head) {
        b.execute(move_head, &[head.seq.into(), Param::Bytes(&head.hash)]).await?;
    }
    Ok(Committed { appended: chain.appended, completed })
}

/// The records the deliveries `delivered` (delivered by this batch) completed: those whose every
/// other delivery is delivered too (before, or in this batch).
async fn completions<B: Batch>(b: &mut B, delivered: &[i64]) -> Result<Vec<Completion>, StoreError> {
    if delivered.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(lock) = B::DIALECT.lock_records {
        b.execute(lock, &[Param::Ids(delivered)]).await?;
    }
    b.query(B::DIALECT.completed, &[Param::Ids(delivered)], |r| {
        Ok(Completion {
            record_id: r.text(0)?,
            record_type: r.text(1)?,
            received_at: r.int(2)?,
            completed_at: r.int(3)?,
        })
    })
    .await
}

/// The audit chain as one transaction extends it.
#[derive(Default)]
struct Chain {
    /// The head, read under the engine's lock at the transaction's first append, then moved by
    /// each append.
    head: Option<AuditStamp>,
    /// The kinds of the entries appended, for the metrics after commit.
    appended: Vec<String>,
}

impl Chain {
    /// Appends `events` to the chain, in order.
    async fn append<B: Batch>(&mut self, b: &mut B, events: Vec<AuditEvent>) -> Result<Vec<AuditStamp>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let head = match self.head {
            Some(head) => head,
            None => {
                b.query(B::DIALECT.chain_head, &[], stamp).await?.pop().unwrap_or(AuditStamp { seq: 0, hash: GENESIS })
            }
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
/// the same body, or a conflict for another. The key's uniqueness holds because this runs inside
/// the transaction that inserts the record.
async fn commit_record<B: Batch>(
    b: &mut B,
    chain: &mut Chain,
    record: &NewRecord,
) -> Result<CommitOutcome, StoreError> {
    if let Some(key) = &record.idempotency_key {
        let earlier = b
            .query(sql::IDEMPOTENT, &[(&record.sender).into(), key.into()], |r| {
                Ok((r.bytes(0)?, Bytes::from(r.bytes(1)?), AuditStamp { seq: r.int(2)?, hash: r.hash(3)? }))
            })
            .await?
            .pop();
        if let Some((body_sha256, receipt, stamp)) = earlier {
            return Ok(if body_sha256 == record.body_sha256 {
                CommitOutcome::Duplicate { receipt, stamp }
            } else {
                CommitOutcome::Conflict
            });
        }
    }
    let stamp = chain.append(b, vec![record.accepted_event()]).await?[0];
    b.insert_record(record, stamp.seq).await?;
    Ok(CommitOutcome::Accepted { receipt: record.receipt.clone(), stamp })
}

/// Leases due deliveries of one recipient, oldest first, with one statement to lease them all.
/// SQLite runs this in the writer; PostgreSQL in a short transaction of its own (claims do not
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
async fn settle<B: Batch>(b: &mut B, s: &Settlement) -> Result<Settled, StoreError> {
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
        })
        .collect();
    let applied = b.record_attempts(&updates.iter().collect::<Vec<_>>()).await?;
    if applied.len() != updates.len() {
        // The rows are locked and were read held: only a store that broke its own lock gets here.
        return Err(StoreError::new(StoreErrorKind::Failed, "a settlement's deliveries changed under it"));
    }
    Ok(Settled::Done(held.iter().map(|h| h.attempts + 1).zip(updates).collect()))
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
async fn replay<B: Batch>(
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

/// Deletes bodies past their retention; metadata and audit entries stay, and the purge itself
/// is audited.
async fn purge<B: Batch>(b: &mut B, chain: &mut Chain, request: &PurgeRequest) -> Result<PurgeReport, StoreError> {
    let delivered_before = request.now - request.delivered_retention_ms;
    let dead_before = request.now - request.dead_retention_ms;
    let delivery_bodies = b.execute(sql::PURGE_DELIVERIES, &[delivered_before.into(), dead_before.into()]).await?;
    // A record's own body goes once it is old enough and none of its deliveries still needs a body.
    let record_bodies = b.execute(sql::PURGE_RECORDS, &[delivered_before.into()]).await?;
    // Then the data keys with no body left under them whose day is over: crypto-shredding.
    let ended_before = request.now - keys::SHRED_GRACE_MS;
    let keys_destroyed = b.query(sql::DESTROY_KEYS, &[request.now.into(), ended_before.into()], |r| r.text(0)).await?;
    let report = PurgeReport { record_bodies, delivery_bodies, keys_destroyed };
    let events = report.events(request.now);
    if !events.is_empty() {
        chain.append(b, events).await?;
    }
    Ok(report)
}

/// Adds a data key unless one has its id, and returns the one stored under that id.
async fn add_key<B: Batch>(b: &mut B, new: &NewDataKey) -> Result<StoredKey, StoreError> {
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
async fn seal_bodies<B: Batch>(
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
async fn rewrap<B: Batch>(b: &mut B, chain: &mut Chain, keys: &[RewrappedKey], at: i64) -> Result<u64, StoreError> {
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

/// A check both engines' tests run (beside the conformance suite): in one batch, a late answer
/// from a worker that lost its lease is neither applied nor audited, even when the holder's own
/// answer for the same delivery is in the same batch.
#[cfg(test)]
pub async fn a_late_answer_in_the_holders_batch_is_not_audited(s: &dyn Store) {
    use super::conformance::{claim, record, update};
    s.commit_record(record(1, &["r"])).await.unwrap();
    let held = s.claim_due(claim("w", 1, 2_000, false)).await.unwrap();
    let holder = update(held[0].id, "w", 2_100, AttemptResult::Delivered { status: Some(200) });
    let late = update(held[0].id, "gone", 2_200, AttemptResult::Delivered { status: Some(201) });
    s.finish_attempts(vec![holder, late]).await.unwrap();
    let entries = s.audit_entries(0, 10).await.unwrap();
    let reasons: Vec<_> = entries.iter().filter_map(|e| e.event.reason.as_deref()).collect();
    assert_eq!(reasons, ["t/1.0", "HTTP 200"], "the record, then the holder's attempt only");
}
