//! The group commit both engines share: a bounded queue of writes, each caller's deadline, and
//! the writer that drains the queue into one transaction per batch.
//!
//! Callers send their write with a oneshot for the answer through a bounded channel ([`Queue`]).
//! The writer takes everything queued (up to `max_batch`), runs it in one transaction through the
//! engine's [`Batch`], commits, then answers every caller: with its result if the transaction
//! committed, else with the transaction's error. A full channel makes callers wait until their
//! deadline (then [`StoreErrorKind::Saturated`]); it never grows.
//!
//! The order of a batch's writes is decided here (settlements and attempt results first, before
//! the chain head is locked; claims last, after every record of the batch is stored), and which
//! records a batch completed; what each write does is in `writes`, written once for both engines.
//!
//! With a signing key, the writer also signs the receipts a batch issues, once for the batch: a
//! Merkle tree over their leaves, its head signed and stored in the same transaction, and each
//! record's caller told its place in the tree (`audit::receipt`, format 3).
//!
//! **Invariant:** a caller's future resolves only after the transaction carrying its write has
//! committed (or failed and rolled back).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::keys::{NewDataKey, RewrappedKey, SealedBody, SealedClaim, StoredKey};
use super::sql::{self, Param};
use super::terms::TermsIds;
use super::writes::*;
use super::*;
use crate::audit::keys::SigningKey;
use crate::audit::receipt::Signer;
use crate::audit::{AuditEvent, AuditStamp, Checkpoint};
use crate::telemetry::Metrics;
use crate::telemetry::events::{AuditAppended, RecordCompleted, StoreCommitted, StoreTransactionEnded};

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

/// The writer: drains the queue into one transaction per batch.
pub(super) struct Writer<B> {
    batch: B,
    metrics: Metrics,
    /// Writes per transaction at most: one commit's latency stays bounded under load.
    max_batch: usize,
    /// How long a shallow batch waits for company when the writer is busy (see [`Linger`]).
    linger: Linger,
    /// The key each batch's receipt tree is signed with; `None`: receipts are signed one by one
    /// after the commit (format 2), by whoever answers the sender.
    receipts: Option<Arc<SigningKey>>,
    /// Whether this writer also commits the records whose deliveries it claims, so a claim's
    /// place among its commits is known ([`ClaimWitness`]).
    claims_in_commit_order: bool,
    /// The ids of the disclosure terms rows this writer has stored or found.
    terms: TermsIds,
}

/// A short wait before committing a shallow batch, so one fsync carries more writes.
///
/// The writer lingers only when it is busy: writes queued while its last batch committed. A
/// write that finds the writer idle is committed at once, so a lone record is never delayed;
/// under load a batch waits at most `bound` for more, and no longer once it holds `deep_enough`
/// writes. Only batches carrying a record linger (see [`Linger::applies`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Linger {
    pub bound: Duration,
    pub deep_enough: usize,
}

impl Linger {
    /// Lingering for `bound` (zero: never), until a batch holds an eighth of `max_batch`.
    pub fn new(bound: Duration, max_batch: usize) -> Self {
        Linger { bound, deep_enough: (max_batch / 8).max(2) }
    }

    /// Whether `batch` waits for more, `busy` if writes had queued while the last batch
    /// committed. Only a batch carrying a record lingers: claims and attempt results come from
    /// delivery workers each waiting on its answer, which a linger would only slow.
    fn applies(&self, busy: bool, batch: &[Write]) -> bool {
        busy && !self.bound.is_zero()
            && batch.len() < self.deep_enough
            && batch.iter().any(|w| matches!(w, Write::Commit(_)))
    }
}

impl<B: Batch> Writer<B> {
    pub fn new(
        batch: B,
        metrics: Metrics,
        max_batch: usize,
        linger: Duration,
        receipts: Option<Arc<SigningKey>>,
    ) -> Self {
        let max_batch = max_batch.max(1);
        let linger = Linger::new(linger, max_batch);
        Writer {
            batch,
            metrics,
            max_batch,
            linger,
            receipts,
            claims_in_commit_order: false,
            terms: TermsIds::default(),
        }
    }

    /// A writer that runs claims as well as commits: each claim's witness is told when it reads.
    pub fn claiming_in_commit_order(self) -> Self {
        Writer { claims_in_commit_order: true, ..self }
    }

    /// Runs until every [`Queue`] is gone.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Write>) {
        let mut writes = Vec::with_capacity(self.max_batch);
        // Whether writes queued while the last batch committed; the first batch finds none.
        let mut busy = false;
        while rx.recv_many(&mut writes, self.max_batch).await > 0 {
            if self.linger.applies(busy, &writes) {
                let deadline = tokio::time::Instant::now() + self.linger.bound;
                while writes.len() < self.linger.deep_enough {
                    let room = self.max_batch - writes.len();
                    match tokio::time::timeout_at(deadline, rx.recv_many(&mut writes, room)).await {
                        Ok(n) if n > 0 => {}
                        // The deadline passed, or every queue is gone: commit what is here.
                        _ => break,
                    }
                }
            }
            let failure = self.commit_batch(&mut writes).await;
            // Decided before the batch's callers hear back, so their own next writes do not count.
            busy = !rx.is_empty();
            for write in writes.drain(..) {
                write.answer(failure.as_ref());
            }
        }
    }

    /// Runs `writes` in one transaction and reports it; returns the failure every write shares,
    /// if it did not commit.
    async fn commit_batch(&mut self, writes: &mut [Write]) -> Option<StoreError> {
        let started = Instant::now();
        let records = writes.iter().filter(|w| matches!(w, Write::Commit(_))).count();
        let result = match self.batch.begin().await {
            Ok(()) => match run(
                &mut self.batch,
                writes,
                &mut self.terms,
                self.receipts.as_deref(),
                self.claims_in_commit_order,
            )
            .await
            {
                Ok(mut committed) => self.batch.commit().await.map(|()| {
                    give_delivery_ids(writes, self.batch.take_inserted_deliveries());
                    hand_over(writes, std::mem::take(&mut committed.offers));
                    committed
                }),
                Err(e) => {
                    self.batch.rollback().await;
                    Err(e)
                }
            },
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => self.terms.committed(),
            Err(_) => self.terms.rolled_back(),
        }
        let duration = started.elapsed();
        StoreTransactionEnded { engine: B::ENGINE, duration }.emit(&self.metrics);
        if records > 0 {
            StoreCommitted { engine: B::ENGINE, records, duration, ok: result.is_ok() }.emit(&self.metrics);
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
        result.err()
    }
}

/// Gives each accepted record of a committed batch the ids of its deliveries: `ids` are the
/// batch's inserted deliveries, in the order its records inserted them. Ids that do not add up
/// to the records' deliveries are given to none (a record without them is still accepted; its
/// deliveries are only not handed to a worker).
fn give_delivery_ids(writes: &mut [Write], ids: Vec<i64>) {
    let mut accepted: Vec<(&mut Vec<i64>, usize)> = writes
        .iter_mut()
        .filter_map(|w| match w {
            Write::Commit(Ask { input, output: Some(CommitOutcome::Accepted { deliveries, .. }), .. }) => {
                Some((deliveries, input.deliveries.len()))
            }
            _ => None,
        })
        .collect();
    if accepted.iter().map(|(_, n)| n).sum::<usize>() != ids.len() {
        tracing::error!(
            message = "A batch's inserted deliveries do not match its records'; none is handed to a worker.",
            inserted = ids.len()
        );
        return;
    }
    let mut ids = ids.into_iter();
    for (deliveries, n) in &mut accepted {
        deliveries.extend(ids.by_ref().take(*n));
    }
}

/// Gives the workers that took deliveries of a committed batch's records each delivery's id
/// and its record's audit seq, in commit order; the other answers (declined offers) are dropped
/// after, now that the commit has ended. `offers` are by write, then by delivery.
fn hand_over(writes: &[Write], offers: Vec<(usize, Vec<Option<Offer>>)>) {
    for (write, offers) in offers {
        let Some(Write::Commit(Ask { output: Some(CommitOutcome::Accepted { deliveries, stamp, .. }), .. })) =
            writes.get(write)
        else {
            continue;
        };
        for (offer, id) in offers.into_iter().zip(deliveries) {
            if let Some(Offer::Taken { take, .. }) = offer {
                take(*id, stamp.seq);
            }
        }
    }
}

/// What a batch did that the metrics report once it has committed.
struct Committed {
    /// The kinds of the entries appended to the audit chain.
    appended: Vec<String>,
    /// The records the batch's deliveries completed.
    completed: Vec<Completion>,
    /// Each committed record's offered deliveries' answers: by write, then by delivery.
    offers: Vec<(usize, Vec<Option<Offer>>)>,
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

/// Runs a batch's writes in its open transaction, in order (but settlements and attempt results
/// first, claims last), then signs the tree of the receipts they issued with `receipts` if given;
/// returns what the metrics report after the commit. `witnessed`: claims run among the commits,
/// so each claim's witness is told as it reads (after every record of the batch).
async fn run<B: Batch>(
    b: &mut B,
    writes: &mut [Write],
    terms: &mut TermsIds,
    receipts: Option<&SigningKey>,
    witnessed: bool,
) -> Result<Committed, StoreError> {
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
        log_attempts(b, &updates, &applied).await?;
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
    // A batch carrying records locks the chain head here, as late as it can, and reads its keys'
    // earlier uses once under the lock; other batches lock it at their first append.
    let mut earlier = EarlierUses::new();
    let records: Vec<&NewRecord> =
        writes.iter().filter_map(|w| if let Write::Commit(ask) = w { Some(&*ask.input) } else { None }).collect();
    if !records.is_empty() {
        // The terms the records' deliveries name, before the lock too.
        terms.resolve(b, records.iter().copied()).await?;
        let keys: Vec<KeyUse> =
            records.iter().filter_map(|r| Some((r.sender.as_str(), r.idempotency_key.as_deref()?))).collect();
        let (head, found) = b.lock_chain_and_find(&keys).await?;
        chain.head = Some(head);
        earlier = found;
    }
    let mut position = 0;
    let mut offers = Vec::new();
    for (index, write) in writes.iter_mut().enumerate() {
        match write {
            Write::Commit(ask) => {
                let (outcome, offered) = commit_record(b, &mut chain, &ask.input, &mut earlier, terms).await?;
                ask.output = Some(outcome);
                if !offered.is_empty() {
                    offers.push((index, offered));
                }
            }
            // Claims read last (below).
            Write::Claim(_) => {}
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
    // Claims read after every other write of the batch, in their order: each sees every delivery
    // stored before it, in this transaction or an earlier one, and none stored after. A claim
    // that read where it was queued would miss the deliveries its worker declined later in the
    // same batch (a busy or lingering writer's batches mix claims and records), and those would
    // keep the worker behind: it would take no hand-off until a claim found a batch without them.
    for write in writes.iter_mut() {
        if let Write::Claim(ask) = write {
            // The claim reads as of now, so each delivery it sees that is fresh is due (its
            // record was received before it was stored), and its lease runs from now.
            if let Some(witness) = ask.input.witness.clone().filter(|_| witnessed) {
                let claim = &mut ask.input;
                let later = (crate::clock::now_ms() - claim.now).max(0);
                (claim.now, claim.lease_until) = (claim.now + later, claim.lease_until + later);
                witness.reading();
            }
            ask.output = Some(claim(b, &ask.input).await?)
        }
    }
    if let Some(key) = receipts {
        sign_receipts(b, writes, key).await?;
    }
    // The head moves only if this transaction extended the chain.
    if let Some(head) = chain.head
        && !chain.appended.is_empty()
    {
        b.move_head(head).await?;
    }
    Ok(Committed { appended: chain.appended, completed, offers })
}

/// Signs the tree over the receipts of the records the batch accepted (in audit order), once,
/// stores its head in the batch's transaction, and gives each record's caller its receipt's
/// place in the tree. A batch that accepted no record signs nothing.
async fn sign_receipts<B: Batch>(b: &mut B, writes: &mut [Write], key: &SigningKey) -> Result<(), StoreError> {
    let issued: Vec<StoredReceipt> = writes
        .iter()
        .filter_map(|w| match w {
            Write::Commit(Ask { input, output: Some(CommitOutcome::Accepted { receipt, stamp, .. }), .. }) => {
                Some(StoredReceipt {
                    receipt: receipt.clone(),
                    stamp: *stamp,
                    body_digest: Some(input.audit_digest),
                    tree: None,
                })
            }
            _ => None,
        })
        .collect();
    let (Some(first), Some(last)) = (issued.first(), issued.last()) else {
        return Ok(());
    };
    // Each receipt shows when and by which key its tree was signed, and its leaf covers that.
    let signer = Signer { signed_at: crate::clock::now_ms(), key_id: key.id() };
    let tree = crate::audit::receipt::tree_of_issued(&issued, signer)
        .map_err(|e| StoreError::new(StoreErrorKind::Failed, "a receipt of the batch cannot be signed").caused_by(e))?;
    let head = Arc::new(TreeHead::sign(first.stamp.seq, &tree, signer.signed_at, key));
    b.insert_tree(&head, last.stamp.seq).await?;
    let accepted = writes.iter_mut().filter_map(|w| match w {
        Write::Commit(Ask { output: Some(CommitOutcome::Accepted { inclusion, .. }), .. }) => Some(inclusion),
        _ => None,
    });
    for (index, inclusion) in accepted.enumerate() {
        let path = tree.proof(index).unwrap_or_default();
        *inclusion = Some(Inclusion { head: head.clone(), index: index as u64, path });
    }
    Ok(())
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
