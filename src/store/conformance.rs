//! The store's contract, written once: every engine runs these checks (see `store_conformance!`).
//!
//! Each check takes a fresh, empty store. They assert what intake and delivery rely on:
//! exclusive leases that expire, strict order behind a failing head, idempotency inside the
//! transaction, one audit chain whatever the concurrency, replay and purge.

use std::sync::{Arc, LazyLock};

use bytes::Bytes;

use super::*;
use crate::audit::keys::{SigningKey, TrustedKeys};
use crate::audit::verify::{ChainVerifier, Start};
use crate::telemetry::Metrics;

/// The key the engines' test stores sign their receipt trees with.
pub fn receipt_key() -> Arc<SigningKey> {
    static KEY: LazyLock<Arc<SigningKey>> =
        LazyLock::new(|| Arc::new(SigningKey::generate().expect("a key is generated")));
    KEY.clone()
}

/// The receipt issued for `stored` at `inclusion`, as intake builds it.
fn issued(stored: &[u8], stamp: AuditStamp, inclusion: &Inclusion) -> Vec<u8> {
    crate::audit::receipt::seal_in_tree(stored, stamp, &[1; 32], inclusion).expect("a stored receipt is an object")
}

/// A record with one delivery per recipient.
pub fn record(n: usize, recipients: &[&str]) -> NewRecord {
    NewRecord {
        record_id: format!("00000000-0000-7000-8000-{n:012}"),
        sender: "s".into(),
        record_type: "t".into(),
        schema_version: "1.0".into(),
        received_at: 1_000 + n as i64,
        body: Bytes::from_static(b"{}"),
        body_sha256: [0; 32],
        audit_digest: [1; 32],
        idempotency_key: None,
        traceparent: None,
        tracestate: None,
        deliveries: recipients
            .iter()
            .map(|r| NewDelivery {
                recipient: r.to_string(),
                agreement: "a".into(),
                ordered: false,
                body: Bytes::new(),
                body_digest: [2; 32],
                key_id: None,
                schema_version: None,
                terms: Some(Arc::new(DisclosureTerms::new("p".into(), vec![format!("/{r}")]))),
                taker: None,
            })
            .collect(),
        receipt: Bytes::from_static(b"{}"),
        key_id: None,
        subjects: Vec::new(),
    }
}

/// The result of an attempt by `worker`.
pub fn update(delivery_id: i64, worker: &str, at: i64, result: AttemptResult) -> AttemptUpdate {
    AttemptUpdate {
        delivery_id,
        worker: worker.into(),
        record_id: "r".into(),
        recipient: "r".into(),
        agreement: "a".into(),
        body_digest: [2; 32],
        at,
        result,
        latency_ms: Some(5),
    }
}

/// A claim on recipient `r`, leased for one second.
pub fn claim(worker: &str, limit: usize, now: i64, head_only: bool) -> ClaimRequest {
    ClaimRequest {
        recipient: "r".into(),
        worker: worker.into(),
        limit,
        now,
        lease_until: now + 1_000,
        head_only,
        witness: None,
    }
}

/// A claimed delivery is nobody else's until its lease expires; a late answer from a worker
/// that lost its lease changes nothing.
pub async fn claims_are_exclusive_until_the_lease_expires(s: &dyn Store) {
    for n in 0..5 {
        s.commit_record(record(n, &["r"])).await.unwrap();
    }
    let a = s.claim_due(claim("a", 3, 2_000, false)).await.unwrap();
    let b = s.claim_due(claim("b", 10, 2_000, false)).await.unwrap();
    assert_eq!(a.iter().map(|d| d.id).collect::<Vec<_>>(), vec![1, 2, 3], "oldest first");
    assert_eq!(b.iter().map(|d| d.id).collect::<Vec<_>>(), vec![4, 5], "never what another worker holds");
    assert!(s.claim_due(claim("c", 10, 2_500, false)).await.unwrap().is_empty());
    // Worker a dies; after its lease, another worker takes its deliveries.
    let c = s.claim_due(claim("c", 10, 3_001, false)).await.unwrap();
    assert_eq!(c.iter().map(|d| d.id).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    // A late answer from the worker that lost the lease changes nothing.
    let late = update(1, "a", 3_100, AttemptResult::Delivered { status: Some(200) });
    s.finish_attempts(vec![late]).await.unwrap();
    let view = s.record("s".into(), record(0, &[]).record_id).await.unwrap().unwrap();
    assert_eq!(view.deliveries[0].status, DeliveryStatus::Queued);
}

/// A test worker: takes what it is offered under a lease held by "w" until 2,000 (or declines it),
/// and notes the offers, what it was handed (delivery id, audit seq) and the declines let go.
#[derive(Default)]
struct Notes {
    offered: Vec<String>,
    handed: Vec<(i64, i64)>,
    let_go: usize,
}

struct TestTaker {
    takes: bool,
    name: String,
    notes: Arc<std::sync::Mutex<Notes>>,
}

struct LetGo(Arc<std::sync::Mutex<Notes>>);

impl Drop for LetGo {
    fn drop(&mut self) {
        self.0.lock().unwrap().let_go += 1;
    }
}

impl Taker for TestTaker {
    fn offer(&self, _: &NewRecord, _: usize) -> Offer {
        self.notes.lock().unwrap().offered.push(self.name.clone());
        if !self.takes {
            return Offer::Declined(Box::new(LetGo(self.notes.clone())));
        }
        let notes = self.notes.clone();
        let take = move |id, seq| notes.lock().unwrap().handed.push((id, seq));
        Offer::Taken { lease: Lease { worker: "w".into(), until: 2_000 }, take: Box::new(take) }
    }
}

/// A delivery a worker takes as its record commits is stored leased to it, and the worker is
/// given its id once committed; it is that worker's until the lease expires, then anyone's. A
/// declined one is stored for any claim, its answer let go once the commit has ended. Offers
/// follow commit order, also when several records share a group commit.
pub async fn deliveries_taken_at_commit_are_their_workers_until_the_lease_expires(s: &dyn Store) {
    let notes = Arc::new(std::sync::Mutex::new(Notes::default()));
    let offered = |n: usize, takes: [bool; 2]| {
        let mut r = record(n, &["r", "q"]);
        for (d, takes) in r.deliveries.iter_mut().zip(takes) {
            let name = format!("{n}{}", d.recipient);
            d.taker = Some(Arc::new(TestTaker { takes, name, notes: notes.clone() }));
        }
        r
    };
    let (a, b, c) = tokio::join!(
        s.commit_record(offered(1, [true, false])),
        s.commit_record(offered(2, [false, true])),
        s.commit_record(offered(3, [true, true])),
    );
    let accepted = |outcome: Result<CommitOutcome, StoreError>| match outcome.unwrap() {
        CommitOutcome::Accepted { deliveries, stamp, .. } => (deliveries, stamp.seq),
        other => panic!("accepted, not {other:?}"),
    };
    let ((a, a_seq), (b, b_seq), (c, c_seq)) = (accepted(a), accepted(b), accepted(c));
    {
        let notes = notes.lock().unwrap();
        // Offered in commit order (the order of the records' audit entries), each record's in
        // its own order; handed over in the same order, each with its id and audit seq.
        let mut by_seq = [(a_seq, 1), (b_seq, 2), (c_seq, 3)];
        by_seq.sort();
        let offered: Vec<String> = by_seq.iter().flat_map(|(_, n)| [format!("{n}r"), format!("{n}q")]).collect();
        assert_eq!(notes.offered, offered);
        let mut handed = vec![(a[0], a_seq), (b[1], b_seq), (c[0], c_seq), (c[1], c_seq)];
        handed.sort_by_key(|(_, seq)| *seq);
        assert_eq!(notes.handed, handed);
        assert_eq!(notes.let_go, 2, "both declines let go once committed");
    }
    // A duplicate stores nothing, so nothing is offered.
    let mut again = offered(4, [true, true]);
    again.idempotency_key = Some("k".into());
    s.commit_record(again.clone()).await.unwrap();
    let before = notes.lock().unwrap().offered.len();
    assert!(matches!(s.commit_record(again).await.unwrap(), CommitOutcome::Duplicate { .. }));
    assert_eq!(notes.lock().unwrap().offered.len(), before);
    let claim_of = |recipient: &str, now: i64| ClaimRequest {
        recipient: recipient.into(),
        worker: "other".into(),
        limit: 10,
        now,
        lease_until: now + 1_000,
        head_only: false,
        witness: None,
    };
    let taken = |claimed: Vec<ClaimedDelivery>| -> Vec<(i64, String)> {
        claimed.into_iter().map(|d| (d.id, d.record_id)).collect()
    };
    let id = |n: usize| record(n, &[]).record_id;
    // While the leases hold, another worker takes only what no worker holds.
    let mut r = taken(s.claim_due(claim_of("r", 1_500)).await.unwrap());
    let mut q = taken(s.claim_due(claim_of("q", 1_500)).await.unwrap());
    r.sort();
    q.sort();
    assert_eq!(r, [(b[0], id(2))]);
    assert_eq!(q, [(a[1], id(1))]);
    // The holder's answer applies.
    s.finish_attempts(vec![update(a[0], "w", 1_600, AttemptResult::Delivered { status: Some(200) })]).await.unwrap();
    let view = s.record("s".into(), id(1)).await.unwrap().unwrap();
    let r = view.deliveries.iter().find(|d| d.recipient == "r").unwrap();
    assert_eq!(r.status, DeliveryStatus::Delivered, "delivered by the worker it was handed to");
    // Once the leases end, what their worker did not answer is anyone's.
    // (The duplicate's first use, record 4, was taken too.)
    let r = taken(s.claim_due(claim_of("r", 2_001)).await.unwrap());
    let q = taken(s.claim_due(claim_of("q", 2_001)).await.unwrap());
    assert_eq!(r.iter().map(|(id, _)| *id).filter(|id| *id == c[0]).count(), 1);
    assert_eq!(q.iter().map(|(id, _)| *id).filter(|id| [b[1], c[1]].contains(id)).count(), 2);
    assert_eq!((r.len(), q.len()), (2, 3), "{r:?} {q:?}");
}

/// Notes how many offers had been made when a claim read.
struct Reading {
    notes: Arc<std::sync::Mutex<Notes>>,
    offered: std::sync::Mutex<Option<usize>>,
}

impl ClaimWitness for Reading {
    fn reading(&self) {
        *self.offered.lock().unwrap() = Some(self.notes.lock().unwrap().offered.len());
    }
}

/// A claim's witness, if the store tells it at all (`tells`: its claims run among its commits),
/// is told where the claim read: the claim holds every delivery declined before that, and none
/// declined after, whichever of a claim and a commit sent together is queued first (in one
/// transaction the claim reads after the record); also a record received after the worker
/// stamped its claim (the claim reads as of when it is told).
pub async fn a_claim_is_witnessed_where_it_read_among_the_commits(s: &dyn Store, tells: bool) {
    let notes = Arc::new(std::sync::Mutex::new(Notes::default()));
    let declined = |n: usize| {
        let mut r = record(n, &["r"]);
        r.received_at = 2_000 + n as i64;
        r.deliveries[0].taker = Some(Arc::new(TestTaker { takes: false, name: n.to_string(), notes: notes.clone() }));
        r
    };
    s.commit_record(declined(1)).await.unwrap();
    let mut held = 0;
    for n in 2..6 {
        let reading = Arc::new(Reading { notes: notes.clone(), offered: Default::default() });
        let claim = ClaimRequest { witness: Some(reading.clone()), ..claim("w", 10, 2_000, false) };
        // Queued in turn one way and the other; they may share a transaction.
        let (claiming, committing) = (s.claim_due(claim), s.commit_record(declined(n)));
        let (claimed, committed) = if n % 2 == 0 {
            let (committed, claimed) = tokio::join!(committing, claiming);
            (claimed, committed)
        } else {
            tokio::join!(claiming, committing)
        };
        committed.unwrap();
        held += claimed.unwrap().len();
        let offered = *reading.offered.lock().unwrap();
        if tells {
            assert_eq!(offered, Some(held), "the claims hold exactly what was declined before each read");
        } else {
            assert_eq!(offered, None, "a store whose claims run apart from its commits does not tell");
        }
    }
}

/// A claim reads after every record of its batch: queued before a record whose delivery its
/// worker declined, and committed in the same transaction, it still holds that delivery, and its
/// witness is told after the offer. (Otherwise the worker stays behind: the delivery was
/// declined after the claim read.) The caller holds the store's write lock until `release`, so
/// the claim and the record queue behind the first record's batch and share the next one.
pub async fn a_claim_reads_after_the_records_of_its_batch(s: Arc<dyn Store>, release: impl FnOnce()) {
    let notes = Arc::new(std::sync::Mutex::new(Notes::default()));
    let declined = |n: usize| {
        let mut r = record(n, &["r"]);
        r.deliveries[0].taker = Some(Arc::new(TestTaker { takes: false, name: n.to_string(), notes: notes.clone() }));
        r
    };
    // Long beside a task's start on a loaded machine: each write is queued before the next.
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(250));
    let first = tokio::spawn({
        let (s, r) = (s.clone(), declined(1));
        async move { s.commit_record(r).await }
    });
    pause().await;
    let reading = Arc::new(Reading { notes: notes.clone(), offered: Default::default() });
    let claiming = tokio::spawn({
        let (s, claim) = (s.clone(), ClaimRequest { witness: Some(reading.clone()), ..claim("w", 10, 2_000, false) });
        async move { s.claim_due(claim).await }
    });
    pause().await;
    let second = tokio::spawn({
        let (s, r) = (s.clone(), declined(2));
        async move { s.commit_record(r).await }
    });
    pause().await;
    release();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let claimed = claiming.await.unwrap().unwrap();
    assert_eq!(claimed.len(), 2, "the claim holds the delivery declined after it in its batch");
    assert_eq!(*reading.offered.lock().unwrap(), Some(2), "its witness is told after both offers");
}

/// A pull recipient's settlement: whole when every delivery is held under its lease, else
/// nothing changes; a lease another caller took after expiry settles nothing; two settlements of
/// the same deliveries at once settle them once.
pub async fn settlements_are_all_or_nothing_under_their_lease(s: &dyn Store) {
    for n in 0..3 {
        s.commit_record(record(n, &["r"])).await.unwrap();
    }
    let settle = |lease: &str, ids: &[i64], result: AttemptResult| Settlement {
        recipient: "r".into(),
        lease: lease.into(),
        ids: ids.to_vec(),
        at: 2_500,
        decide: Box::new(move |_| result.clone()),
    };
    let ack = || AttemptResult::Delivered { status: None };
    let ids = |taken: Vec<ClaimedDelivery>| taken.iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(ids(s.claim_due(claim("L1", 2, 2_000, false)).await.unwrap()), [1, 2]);
    let status =
        |n| async move { s.record("s".into(), record(n, &[]).record_id).await.unwrap().unwrap().deliveries[0].status };
    // One delivery not held: nothing changes, and the answer names it.
    let Settled::NotHeld(missing) = s.settle(settle("L1", &[1, 3], ack())).await.unwrap() else { panic!() };
    assert_eq!(missing, [3]);
    assert_eq!(status(0).await, DeliveryStatus::Queued, "nothing changed");
    let Settled::NotHeld(missing) = s.settle(settle("other", &[1], ack())).await.unwrap() else { panic!() };
    assert_eq!(missing, [1], "another lease settles nothing");
    // Held: settled whole, and audited as delivered.
    let (a, b) = tokio::join!(s.settle(settle("L1", &[1, 2], ack())), s.settle(settle("L1", &[2, 1], ack())));
    let outcomes = [a.unwrap(), b.unwrap()];
    assert_eq!(outcomes.iter().filter(|o| matches!(o, Settled::Done(u) if u.len() == 2)).count(), 1);
    assert_eq!(outcomes.iter().filter(|o| matches!(o, Settled::NotHeld(m) if m == &[1, 2])).count(), 1);
    assert_eq!((status(0).await, status(1).await), (DeliveryStatus::Delivered, DeliveryStatus::Delivered));
    let entries = s.audit_entries(0, 10).await.unwrap();
    let delivered: Vec<_> = entries.iter().filter(|e| e.event.kind == crate::audit::kind::DELIVERY_DELIVERED).collect();
    assert_eq!(delivered.len(), 2, "each delivery once");
    assert_eq!(delivered[0].event.reason.as_deref(), Some("acknowledged from the mailbox"));
    // A lease that expired and was taken by another caller settles nothing; the new holder can.
    assert_eq!(ids(s.claim_due(claim("L3", 5, 2_000, false)).await.unwrap()), [3]);
    assert_eq!(ids(s.claim_due(claim("L4", 5, 3_001, false)).await.unwrap()), [3]);
    assert!(matches!(s.settle(settle("L3", &[3], ack())).await.unwrap(), Settled::NotHeld(_)));
    let retry = AttemptResult::Retry { next_attempt_at: 9_000, status: None, error: "refused: busy".into() };
    assert!(matches!(s.settle(settle("L4", &[3], retry)).await.unwrap(), Settled::Done(_)));
    let view = s.record("s".into(), record(2, &[]).record_id).await.unwrap().unwrap();
    assert_eq!((view.deliveries[0].status, view.deliveries[0].attempts), (DeliveryStatus::Retrying, 1));
    assert!(s.claim_due(claim("L5", 5, 5_000, false)).await.unwrap().is_empty(), "not due before its backoff");
}

/// Strict order: a head that is not due holds every delivery behind it.
pub async fn head_only_claims_hold_the_queue_behind_a_failing_head(s: &dyn Store) {
    for n in 0..3 {
        s.commit_record(record(n, &["r"])).await.unwrap();
    }
    let head = s.claim_due(claim("w", 1, 2_000, true)).await.unwrap();
    assert_eq!(head.len(), 1);
    let retry = AttemptResult::Retry { next_attempt_at: 10_000, status: Some(503), error: "HTTP 503".into() };
    s.finish_attempts(vec![update(head[0].id, "w", 2_100, retry)]).await.unwrap();
    // The head is not due: nothing behind it may leave.
    assert!(s.claim_due(claim("w", 1, 5_000, true)).await.unwrap().is_empty());
    // Without strict order, the others go.
    assert_eq!(s.claim_due(claim("w", 5, 5_000, false)).await.unwrap().len(), 2);
}

/// Concurrent commits with one key make one record: a replay or a conflict for the others.
pub async fn idempotency_is_enforced_inside_the_transaction(s: &dyn Store) {
    let mut first = record(1, &["r"]);
    first.idempotency_key = Some("k".into());
    first.receipt = Bytes::from_static(b"{\"first\":true}");
    let mut same = record(2, &["r"]);
    same.idempotency_key = Some("k".into());
    let mut other = record(3, &["r"]);
    other.idempotency_key = Some("k".into());
    other.body_sha256 = [9; 32];
    // The day's data key made first, so the three reach the writer in the order they were sent.
    s.commit_record(record(9, &["r"])).await.unwrap();
    let (a, b, c) = tokio::join!(s.commit_record(first), s.commit_record(same), s.commit_record(other));
    let CommitOutcome::Accepted { receipt, stamp, inclusion, .. } = a.unwrap() else { panic!("the first is accepted") };
    assert_eq!(receipt, Bytes::from_static(b"{\"first\":true}"));
    assert_eq!(b.unwrap(), CommitOutcome::Duplicate { receipt, stamp }, "the original receipt and entry");
    assert_eq!(c.unwrap(), CommitOutcome::Conflict);
    // The replay's place in the tree, read once it committed (maybe with the original), is the
    // original's: the sender gets the same receipt.
    assert!(inclusion.is_some(), "the test stores sign their trees");
    assert_eq!(s.inclusion(stamp.seq).await.unwrap(), inclusion);
}

/// Records committed together get one signed tree: a proof per receipt that verifies offline, the
/// same proof again for a replay, and the tree's stored receipts rebuild its signed root.
pub async fn a_group_commit_signs_one_tree_with_a_proof_per_receipt(s: &dyn Store) {
    let mut trusted = TrustedKeys::default();
    let (id, public) = receipt_key().trusted();
    trusted.add(id, public);
    let records: Vec<NewRecord> = (1..=24)
        .map(|n| NewRecord {
            receipt: Bytes::from(format!(r#"{{"record_id":"{n}","sender":"s"}}"#)),
            ..record(n, &["r"])
        })
        .collect();
    s.commit_record(record(99, &["r"])).await.unwrap();
    let mut commits: Vec<_> = records.iter().map(|r| s.commit_record(r.clone())).collect();
    // Another write in the same batches: the chain entries between receipts are no receipts.
    let appended = s.append_audit(vec![AuditEvent::new(5, "test.event", "gateway", "ok")]);
    commits.push(Box::pin(async move { appended.await.map(|_| CommitOutcome::Conflict) }) as StoreFuture<'_, _>);
    let mut outcomes = futures_join_all(commits).await;
    outcomes.pop();
    let mut heads: Vec<Arc<TreeHead>> = Vec::new();
    for (record, outcome) in records.iter().zip(outcomes) {
        let CommitOutcome::Accepted { receipt, stamp, inclusion: Some(inclusion), .. } = outcome.unwrap() else {
            panic!("accepted, with its place in a signed tree")
        };
        let bytes = issued(&receipt, stamp, &inclusion);
        let checked = crate::audit::receipt::verify(&bytes, &trusted).expect("the receipt verifies offline");
        assert_eq!(checked.proof.seq, stamp.seq);
        let stored = s.receipt(record.record_id.clone()).await.unwrap().unwrap();
        assert_eq!(checked.compare(Some(&stored)), Ok(()), "and online");
        let again = s.inclusion(stamp.seq).await.unwrap().expect("a replay finds the tree");
        assert_eq!(issued(&receipt, stamp, &again), bytes, "a replay gets the same bytes");
        if !heads.contains(&inclusion.head) {
            heads.push(inclusion.head.clone());
        }
    }
    // One head per commit, each signed once, holding every receipt that commit issued.
    let trees = s.receipt_trees(0, 100).await.unwrap();
    let heads_of_batch: Vec<&TreeHead> = trees.iter().map(|t| &t.head).filter(|h| h.first_seq > 1).collect();
    assert_eq!(heads_of_batch, heads.iter().map(|h| &**h).collect::<Vec<_>>());
    assert_eq!(heads.iter().map(|h| h.size).sum::<u64>(), 24);
    assert!(heads.len() < 24, "records committed together share a tree: {} trees", heads.len());
    for tree in trees {
        let head = tree.head.clone();
        let receipts = s.tree_receipts(tree).await.unwrap();
        assert_eq!(crate::audit::verify::check_receipt_tree(&head, &receipts, &trusted), Ok(()));
    }
}

/// A record's receipt comes back as committed, with the audit entry it quotes, whoever asks.
pub async fn stored_receipts_come_back_with_their_entry(s: &dyn Store) {
    let mut first = record(1, &["r"]);
    first.receipt = Bytes::from_static(b"{\"record_id\":\"first\"}");
    let CommitOutcome::Accepted { stamp, .. } = s.commit_record(first.clone()).await.unwrap() else {
        panic!("the record is accepted")
    };
    s.commit_record(record(2, &["r"])).await.unwrap();
    let stored = s.receipt(first.record_id.clone()).await.unwrap().expect("the record is found");
    assert_eq!(
        stored,
        StoredReceipt {
            receipt: first.receipt,
            stamp,
            body_digest: Some(first.audit_digest),
            tree: s.inclusion(stamp.seq).await.unwrap().map(|i| (*i.head).clone()),
        },
        "the receipt as committed and the record's own entry"
    );
    assert_eq!(s.receipt("00000000-0000-7000-8000-999999999999".into()).await.unwrap(), None);
}

/// Concurrent appends from many callers make one contiguous chain that verifies.
pub async fn concurrent_appends_make_one_chain(s: &dyn Store) {
    let mut tasks = Vec::new();
    for n in 0..50 {
        tasks.push(async move {
            if n % 2 == 0 {
                s.commit_record(record(n, &["r"])).await.map(|_| ())
            } else {
                s.append_audit(vec![crate::audit::AuditEvent::new(
                    1_000 + n as i64,
                    "config.loaded",
                    "gateway",
                    "loaded",
                )])
                .await
                .map(|_| ())
            }
        });
    }
    for result in futures_join_all(tasks).await {
        result.unwrap();
    }
    let entries = s.audit_entries(0, 1_000).await.unwrap();
    assert_eq!(entries.len(), 50);
    let mut verifier = ChainVerifier::new(&Default::default(), Vec::new(), Start::Beginning).unwrap();
    for e in &entries {
        verifier.entry(e).unwrap();
    }
    assert_eq!(verifier.finish().unwrap().entries, 50);
    assert_eq!(s.audit_head().await.unwrap().map(|h| h.seq), Some(50));
}

/// Only dead deliveries are replayed, each once, and a replay is audited.
pub async fn replay_requeues_dead_deliveries_only(s: &dyn Store) {
    for n in 0..3 {
        s.commit_record(record(n, &["r"])).await.unwrap();
    }
    let claimed = s.claim_due(claim("w", 3, 2_000, false)).await.unwrap();
    let dead = AttemptResult::Dead { status: Some(400), error: "HTTP 400".into() };
    s.finish_attempts(vec![update(claimed[0].id, "w", 2_100, dead)]).await.unwrap();
    let request = |target| ReplayRequest { target, actor: "operator".into(), now: 3_000 };
    let one = s.replay(request(ReplayTarget::One(claimed[0].id))).await.unwrap();
    assert_eq!(one[0].outcome, ReplayOutcome::Replayed);
    let again = s.replay(request(ReplayTarget::One(claimed[0].id))).await.unwrap();
    assert_eq!(again[0].outcome, ReplayOutcome::NotDead);
    let missing = s.replay(request(ReplayTarget::One(9_999))).await.unwrap();
    assert_eq!(missing[0].outcome, ReplayOutcome::NotFound);
    let dead_now = s
        .deliveries(DeliveryFilter { status: Some(DeliveryStatus::Dead), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert!(dead_now.is_empty());
    let replays = s.audit_entries(0, 100).await.unwrap().iter().filter(|e| e.event.kind == "delivery.replayed").count();
    assert_eq!(replays, 1);
}

/// The backlog gauges' figures per recipient: pending (queued, claimed or retrying), when the
/// oldest of them was created, and dead; a recipient with neither is not listed.
pub async fn the_backlog_counts_pending_and_dead_deliveries_per_recipient(s: &dyn Store) {
    for n in 0..4 {
        s.commit_record(record(n, &["r", "q", "done"])).await.unwrap();
    }
    let claim_of =
        |recipient: &str, limit| ClaimRequest { recipient: recipient.into(), ..claim("w", limit, 2_000, false) };
    let r = s.claim_due(claim_of("r", 4)).await.unwrap();
    let done = s.claim_due(claim_of("done", 4)).await.unwrap();
    let delivered = || AttemptResult::Delivered { status: Some(200) };
    let mut results = vec![
        update(r[0].id, "w", 2_100, AttemptResult::Dead { status: Some(400), error: "HTTP 400".into() }),
        update(
            r[1].id,
            "w",
            2_100,
            AttemptResult::Retry { next_attempt_at: 9_000, status: Some(503), error: "HTTP 503".into() },
        ),
        update(r[2].id, "w", 2_100, delivered()),
    ];
    results.extend(done.iter().map(|d| update(d.id, "w", 2_100, delivered())));
    s.finish_attempts(results).await.unwrap();
    let mut backlog = s.backlog().await.unwrap();
    backlog.sort_by(|a, b| a.recipient.cmp(&b.recipient));
    let figures: Vec<_> =
        backlog.iter().map(|b| (b.recipient.as_str(), b.pending, b.oldest_pending_at, b.dead)).collect();
    // r: record 1's delivery retrying and record 3's still under its lease; record 0's dead.
    assert_eq!(figures, [("q", 4, Some(1_000), 0), ("r", 2, Some(1_001), 1)]);
}

/// A purge removes bodies past their retention and keeps everything else.
pub async fn purge_keeps_metadata_and_the_chain(s: &dyn Store) {
    for n in 1..=4 {
        s.commit_record(record(n, &["r"])).await.unwrap();
    }
    let ids: Vec<i64> = s.claim_due(claim("w", 4, 2_000, false)).await.unwrap().iter().map(|d| d.id).collect();
    let dead = || AttemptResult::Dead { status: Some(400), error: "refused".into() };
    let retry = AttemptResult::Retry { next_attempt_at: 5_000, status: Some(503), error: "busy".into() };
    s.finish_attempts(vec![
        update(ids[0], "w", 2_100, AttemptResult::Delivered { status: Some(200) }),
        update(ids[1], "w", 2_100, dead()),
        // Dead within the dead letters' retention, and still pending: both keep their bodies.
        update(ids[2], "w", 999_500, dead()),
        update(ids[3], "w", 2_100, retry),
    ])
    .await
    .unwrap();
    let report = s
        .purge(PurgeRequest {
            now: 1_000_000,
            delivered_retention_ms: 1_000,
            dead_retention_ms: 1_000,
            access_retention_ms: i64::MAX / 2,
        })
        .await
        .unwrap();
    assert_eq!(report, PurgeReport { record_bodies: 2, delivery_bodies: 2, keys_destroyed: vec![], subjects: 0 });
    let mut kept = Vec::new();
    for id in &ids {
        kept.push(s.body(BodyRef::Delivery(*id)).await.unwrap().unwrap().is_some());
    }
    assert_eq!(kept, [false, false, true, true]);
    let view = s.record("s".into(), record(1, &[]).record_id).await.unwrap().unwrap();
    assert_eq!(view.deliveries[0].status, DeliveryStatus::Delivered);
    let entries = s.audit_entries(0, 100).await.unwrap();
    let mut verifier = ChainVerifier::new(&Default::default(), Vec::new(), Start::Beginning).unwrap();
    for e in &entries {
        verifier.entry(e).unwrap();
    }
    verifier.finish().unwrap();
}

/// An operator finds a record by id, by its sender's idempotency key, or by time range (newest
/// first, paged, by type), each with its deliveries' parties; the audit entries naming it come
/// in order, and the trail reads by time.
pub async fn records_are_found_by_id_key_and_time(s: &dyn Store) {
    for n in 1..=4 {
        let mut r = record(n, &["r", "q"]);
        if n == 2 {
            r.idempotency_key = Some("k-2".into());
        }
        if n == 4 {
            r.record_type = "u".into();
        }
        s.commit_record(r).await.unwrap();
    }
    let id = |n| record(n, &[]).record_id;
    let search = |f: fn(&mut RecordSearch)| {
        let mut q = RecordSearch { limit: 10, ..RecordSearch::default() };
        f(&mut q);
        q
    };
    let one = s.find_records(search(|q| q.record_id = Some(record(3, &[]).record_id))).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!((one[0].sender.as_str(), one[0].status, one[0].body_kept), ("s", RecordState::Pending, true));
    let parties: Vec<_> = one[0].deliveries.iter().map(|(r, a, _)| (r.as_str(), a.as_str())).collect();
    assert_eq!(parties, [("r", "a"), ("q", "a")]);
    let keyed = s
        .find_records(search(|q| {
            q.sender = Some("s".into());
            q.idempotency_key = Some("k-2".into());
        }))
        .await
        .unwrap();
    assert_eq!(keyed.iter().map(|r| r.record_id.clone()).collect::<Vec<_>>(), [id(2)]);
    assert_eq!(keyed[0].idempotency_key.as_deref(), Some("k-2"));
    let range = s
        .find_records(search(|q| {
            q.from = Some(1_002);
            q.to = Some(1_004);
        }))
        .await
        .unwrap();
    assert_eq!(range.iter().map(|r| r.record_id.clone()).collect::<Vec<_>>(), [id(3), id(2)], "newest first");
    let page = s.find_records(RecordSearch { before: Some((1_003, id(3))), limit: 1, ..search(|_| ()) }).await;
    assert_eq!(page.unwrap().iter().map(|r| r.record_id.clone()).collect::<Vec<_>>(), [id(2)]);
    let typed = s.find_records(search(|q| q.record_type = Some("u".into()))).await.unwrap();
    assert_eq!(typed.iter().map(|r| r.record_id.clone()).collect::<Vec<_>>(), [id(4)]);
    assert!(s.find_records(search(|q| q.record_id = Some("absent".into()))).await.unwrap().is_empty());

    let naming = s.audit_naming(id(3), 10).await.unwrap();
    assert_eq!(naming.iter().map(|e| e.event.kind.as_str()).collect::<Vec<_>>(), ["record.accepted"]);
    let timed = s.audit_range(AuditRange { after: 0, from: Some(1_002), to: Some(1_004), limit: 10 }).await.unwrap();
    assert_eq!(timed.iter().map(|e| e.event.at).collect::<Vec<_>>(), [1_002, 1_003]);
    let after = s.audit_range(AuditRange { after: timed[0].seq, from: Some(1_002), to: None, limit: 10 }).await;
    assert_eq!(after.unwrap().iter().map(|e| e.event.at).collect::<Vec<_>>(), [1_003, 1_004]);
    for seq in [1, 3] {
        let checkpoint = Checkpoint { seq, key_id: "k".into(), hash: [0; 32], at: 5_000, signature: vec![1] };
        s.add_checkpoint(checkpoint).await.unwrap();
    }
    let marks = s.checkpoints_between(2, 4).await.unwrap();
    assert_eq!(marks.iter().map(|c| c.seq).collect::<Vec<_>>(), [3]);
}

/// Each attempt whose result is recorded joins its delivery's timeline in the same
/// transaction, with its number, outcome, status, latency, error class and next attempt; a late
/// answer from a worker that lost its lease does not. The deliveries list filters by record,
/// agreement and partner, and says when the next attempt is due.
pub async fn each_attempt_is_on_its_deliverys_timeline(s: &dyn Store) {
    let r = record(1, &["r"]);
    s.commit_record(r.clone()).await.unwrap();
    let held = s.claim_due(claim("w", 1, 2_000, false)).await.unwrap();
    let id = held[0].id;
    let retry = AttemptResult::Retry { next_attempt_at: 3_000, status: Some(503), error: "HTTP 503".into() };
    s.finish_attempts(vec![update(id, "w", 2_100, retry)]).await.unwrap();
    let pending =
        s.deliveries(DeliveryFilter { record_id: Some(r.record_id.clone()), limit: 10, ..Default::default() });
    assert_eq!(pending.await.unwrap()[0].next_attempt_at, Some(3_000));
    s.claim_due(claim("w", 1, 3_000, false)).await.unwrap();
    let late = update(id, "gone", 3_050, AttemptResult::Delivered { status: Some(201) });
    s.finish_attempts(vec![update(id, "w", 3_100, AttemptResult::Delivered { status: Some(200) }), late])
        .await
        .unwrap();
    let timeline = s.attempts(r.record_id.clone()).await.unwrap();
    let expected = [
        AttemptView {
            delivery_id: id,
            attempt: 1,
            at: 2_100,
            outcome: DeliveryStatus::Retrying,
            status: Some(503),
            latency_ms: Some(5),
            error_class: Some(ErrorClass::ServerError),
            next_attempt_at: Some(3_000),
        },
        AttemptView {
            delivery_id: id,
            attempt: 2,
            at: 3_100,
            outcome: DeliveryStatus::Delivered,
            status: Some(200),
            latency_ms: Some(5),
            error_class: None,
            next_attempt_at: None,
        },
    ];
    assert_eq!(timeline, expected);
    let filter = |f: fn(&mut DeliveryFilter)| {
        let mut q = DeliveryFilter { limit: 10, ..Default::default() };
        f(&mut q);
        q
    };
    let done = s.deliveries(filter(|q| q.record_id = Some(record(1, &[]).record_id))).await.unwrap();
    assert_eq!((done.len(), done[0].next_attempt_at), (1, None));
    assert_eq!(s.deliveries(filter(|q| q.partner = Some("s".into()))).await.unwrap().len(), 1, "its sender");
    assert_eq!(s.deliveries(filter(|q| q.partner = Some("r".into()))).await.unwrap().len(), 1, "its recipient");
    assert!(s.deliveries(filter(|q| q.partner = Some("x".into()))).await.unwrap().is_empty());
    assert!(s.deliveries(filter(|q| q.agreement = Some("b".into()))).await.unwrap().is_empty());
}

/// Statistics over a range, per bucket: records accepted, attempts by outcome with their
/// latency, rejections by reason from the trail's tallies; cut to a partner or an agreement.
pub async fn stats_count_records_attempts_and_rejections_per_bucket(s: &dyn Store) {
    for n in 1..=3 {
        s.commit_record(record(n, &["r"])).await.unwrap();
    }
    let held = s.claim_due(claim("w", 3, 2_000, false)).await.unwrap();
    let dead = AttemptResult::Dead { status: Some(400), error: "HTTP 400".into() };
    s.finish_attempts(vec![
        update(held[0].id, "w", 2_100, AttemptResult::Delivered { status: Some(200) }),
        update(held[1].id, "w", 2_200, dead),
    ])
    .await
    .unwrap();
    let mut rejected = AuditEvent::new(1_500, crate::audit::kind::RECORDS_REJECTED, "s", "invalid");
    rejected.count = 4;
    s.append_audit(vec![rejected]).await.unwrap();
    let query = |partner: Option<&str>, agreement: Option<&str>| StatsQuery {
        from: 0,
        to: 10_000,
        bucket_ms: 1_000,
        partner: partner.map(str::to_owned),
        agreement: agreement.map(str::to_owned),
    };
    let all = s.stats(query(None, None)).await.unwrap();
    let expected = vec![
        StatsBucket { start: 1_000, accepted: 3, ..Default::default() },
        StatsBucket {
            start: 2_000,
            delivered: 1,
            dead: 1,
            latency_sum_ms: 10,
            latency_count: 2,
            latency_max_ms: 5,
            ..Default::default()
        },
    ];
    assert_eq!(all.buckets, expected);
    assert_eq!(all.rejected, vec![("invalid".to_owned(), 4)]);
    assert_eq!(s.stats(query(Some("r"), None)).await.unwrap().buckets, expected);
    let other = s.stats(query(Some("x"), None)).await.unwrap();
    assert_eq!(other, Stats::default());
    let agreement = s.stats(query(None, Some("a"))).await.unwrap();
    assert_eq!((agreement.buckets, agreement.rejected), (expected, vec![]));
}

/// A record's body and a delivery's come back opened until the purge removes them.
pub async fn bodies_are_read_until_purged(s: &dyn Store) {
    let mut r = record(1, &["r"]);
    r.body = Bytes::from_static(b"{\"a\":1}");
    r.deliveries[0].body = Bytes::from_static(b"{\"b\":2}");
    s.commit_record(r.clone()).await.unwrap();
    let id = s.claim_due(claim("w", 1, 2_000, false)).await.unwrap()[0].id;
    assert_eq!(s.body(BodyRef::Record(r.record_id.clone())).await.unwrap(), Some(Some(r.body.clone())));
    assert_eq!(s.body(BodyRef::Delivery(id)).await.unwrap(), Some(Some(r.deliveries[0].body.clone())));
    assert_eq!(s.body(BodyRef::Record("absent".into())).await.unwrap(), None);
    assert_eq!(s.body(BodyRef::Delivery(id + 100)).await.unwrap(), None);
    s.finish_attempts(vec![update(id, "w", 2_100, AttemptResult::Delivered { status: Some(200) })]).await.unwrap();
    let purge = PurgeRequest {
        now: 1_000_000,
        delivered_retention_ms: 1_000,
        dead_retention_ms: 1_000,
        access_retention_ms: i64::MAX / 2,
    };
    s.purge(purge).await.unwrap();
    assert_eq!(s.body(BodyRef::Record(r.record_id.clone())).await.unwrap(), Some(None));
    assert_eq!(s.body(BodyRef::Delivery(id)).await.unwrap(), Some(None));
    assert_eq!(s.attempts(r.record_id).await.unwrap().len(), 1, "the timeline stays");
}

/// The access record: a subject's disclosures are every delivery of every record it appears in,
/// each with its terms, status and audit entries, paged by delivery id; a purge of bodies keeps
/// them, and only the access record's own retention removes them, audited.
pub async fn the_access_record_finds_every_delivery_of_a_subjects_records(s: &dyn Store) {
    let (a, b) = ([0xa; 32], [0xb; 32]);
    let bundle = NewRecord { subjects: vec![a, b], ..record(1, &["r", "q"]) };
    let mut pinned = NewRecord { subjects: vec![a], ..record(2, &["r"]) };
    pinned.deliveries[0].schema_version = Some("0.9".into());
    let other = NewRecord { subjects: vec![b], ..record(3, &["q"]) };
    let mut stamps = Vec::new();
    for r in [&bundle, &pinned, &other] {
        let CommitOutcome::Accepted { stamp, .. } = s.commit_record(r.clone()).await.unwrap() else { panic!() };
        stamps.push(stamp.seq);
    }
    let access = |subject, after_id, limit| s.access(AccessQuery { subject, after_id, limit });
    let found = access(a, None, 10).await.unwrap();
    let ids: Vec<(&str, &str)> = found.iter().map(|d| (d.record_id.as_str(), d.recipient.as_str())).collect();
    assert_eq!(ids, [(&*bundle.record_id, "r"), (&*bundle.record_id, "q"), (&*pinned.record_id, "r")]);
    let first = &found[0];
    assert_eq!(
        (first.sender.as_str(), first.record_type.as_str(), first.agreement.as_str(), first.accepted_at),
        ("s", "t", "a", 1_001)
    );
    assert_eq!(first.terms, Some(DisclosureTerms::new("p".into(), vec!["/r".into()])));
    assert_eq!(
        (first.accepted_seq, first.status, first.delivered_at, first.delivered_seq),
        (stamps[0], DeliveryStatus::Queued, None, None)
    );
    assert_eq!((found[2].schema_version.as_str(), found[2].received_version.as_str()), ("1.0", "0.9"));
    assert_eq!(found[2].accepted_seq, stamps[1]);
    // Paged by delivery id; a subject in no record has none.
    let page = access(a, Some(found[0].delivery_id), 1).await.unwrap();
    assert_eq!(page.iter().map(|d| d.delivery_id).collect::<Vec<_>>(), [found[1].delivery_id]);
    assert!(access([0xc; 32], None, 10).await.unwrap().is_empty());

    // Delivered: the delivery's status, time and own audit entry.
    let to_r = s.claim_due(claim("w", 10, 2_000, false)).await.unwrap();
    let done = update(to_r[0].id, "w", 2_100, AttemptResult::Delivered { status: Some(200) });
    s.finish_attempts(vec![AttemptUpdate { record_id: bundle.record_id.clone(), ..done }]).await.unwrap();
    let delivered = s
        .audit_entries(0, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event.kind == crate::audit::kind::DELIVERY_DELIVERED)
        .unwrap();
    let first = &access(a, None, 10).await.unwrap()[0];
    assert_eq!(
        (first.status, first.delivered_at, first.delivered_seq),
        (DeliveryStatus::Delivered, Some(2_100), Some(delivered.seq))
    );

    // The bodies' purge keeps the access record; its own retention removes it, audited.
    let purge = |access_retention_ms| PurgeRequest {
        now: 1_000_000,
        delivered_retention_ms: 1_000,
        dead_retention_ms: 1_000,
        access_retention_ms,
    };
    let report = s.purge(purge(2_000_000)).await.unwrap();
    assert_eq!((report.delivery_bodies, report.subjects), (1, 0), "the delivered body goes");
    assert_eq!(access(a, None, 10).await.unwrap().len(), 3);
    let report = s.purge(purge(998_998)).await.unwrap();
    assert_eq!(report.subjects, 2, "the records accepted before 1002: the bundle's two subjects");
    assert_eq!(
        access(a, None, 10).await.unwrap().iter().map(|d| &*d.record_id).collect::<Vec<_>>(),
        [&*pinned.record_id]
    );
    assert_eq!(access(b, None, 10).await.unwrap().len(), 1, "the other record's subject stays");
    let entries = s.audit_entries(0, 100).await.unwrap();
    let purged = entries.iter().find(|e| e.event.kind == crate::audit::kind::ACCESS_PURGED).unwrap();
    assert_eq!(purged.event.count, 2);
    let mut verifier = ChainVerifier::new(&Default::default(), Vec::new(), Start::Beginning).unwrap();
    for e in &entries {
        verifier.entry(e).unwrap();
    }
    verifier.finish().unwrap();
}

/// A delivery's disclosure terms are stored once and named by each delivery with the same
/// terms; terms first met in a batch that does not commit are stored again by the next batch
/// that needs them, and no delivery names another's terms or none.
pub async fn each_delivery_names_the_terms_it_was_accepted_under(s: &dyn Store) {
    let subject = [0xa; 32];
    let terms_of = |r: &NewRecord, to: &str, purpose: &str| {
        let mut r = NewRecord { subjects: vec![subject], ..r.clone() };
        for d in &mut r.deliveries {
            d.terms = Some(Arc::new(DisclosureTerms::new(purpose.into(), vec![format!("/{to}")])));
        }
        r
    };
    // Two records with the same terms, then one whose batch fails (its id is taken) with terms
    // no batch has stored: whatever its transaction stored is gone with it.
    s.commit_record(terms_of(&record(1, &["r"]), "r", "p")).await.unwrap();
    s.commit_record(terms_of(&record(2, &["r"]), "r", "p")).await.unwrap();
    let failed = terms_of(&record(1, &["r"]), "new", "first met in a failed batch");
    assert!(s.commit_record(failed.clone()).await.is_err(), "record 1 is stored already");
    // Other new terms next, then the failed batch's terms again, under a fresh record id.
    s.commit_record(terms_of(&record(3, &["q"]), "q", "other")).await.unwrap();
    s.commit_record(NewRecord { record_id: record(4, &[]).record_id, ..failed }).await.unwrap();
    let found = s.access(AccessQuery { subject, after_id: None, limit: 10 }).await.unwrap();
    let terms: Vec<(&str, Option<&DisclosureTerms>)> =
        found.iter().map(|d| (d.record_id.as_str(), d.terms.as_ref())).collect();
    let (p, other, first) = (
        DisclosureTerms::new("p".into(), vec!["/r".into()]),
        DisclosureTerms::new("other".into(), vec!["/q".into()]),
        DisclosureTerms::new("first met in a failed batch".into(), vec!["/new".into()]),
    );
    let ids: Vec<String> = [1, 2, 3, 4].map(|n| record(n, &[]).record_id).into();
    assert_eq!(terms, [(&*ids[0], Some(&p)), (&*ids[1], Some(&p)), (&*ids[2], Some(&other)), (&*ids[3], Some(&first))]);
}

/// What both engines' migration tests built at schema version 10 reads after the migration: two
/// records `r1` and `r2` of `subject`, each with a delivery to `q` (purpose `Pay`), to `r`
/// (`Plan`), each given its own name as its only field, and to `x` without terms.
pub async fn the_terms_before_version_11_read_the_same(s: &dyn Store, subject: [u8; 32]) {
    let found = s.access(AccessQuery { subject, after_id: None, limit: 10 }).await.unwrap();
    let terms = |purpose: &str, to: &str| Some(DisclosureTerms::new(purpose.into(), vec![format!("/{to}")]));
    let read: Vec<_> = found.iter().map(|d| (d.record_id.as_str(), d.recipient.as_str(), d.terms.clone())).collect();
    assert_eq!(
        read,
        [
            ("r1", "q", terms("Pay", "q")),
            ("r1", "r", terms("Plan", "r")),
            ("r1", "x", None),
            ("r2", "q", terms("Pay", "q")),
            ("r2", "r", terms("Plan", "r")),
            ("r2", "x", None),
        ]
    );
}

/// Every body is sealed at rest and opened for its delivery; once no body is left under a data
/// key and its day is over, the purge destroys the key, audited, and the chain still verifies.
pub async fn bodies_are_sealed_and_their_key_destroyed_once_none_is_left(s: &dyn Store) {
    let mut sealed = record(1, &["r", "q"]);
    sealed.body = Bytes::from_static(br#"{"sin":"046454286"}"#);
    for d in &mut sealed.deliveries {
        d.body = Bytes::from(format!("body for {}", d.recipient));
    }
    s.commit_record(sealed).await.unwrap();
    let census = s.check_keys().await.unwrap();
    assert_eq!((census.live_by_kek.len(), census.live_by_kek[0].1, census.plain()), (1, 1, 0), "{census:?}");
    for (n, recipient) in ["r", "q"].into_iter().enumerate() {
        let mut c = claim("w", 1, 2_000, false);
        c.recipient = recipient.into();
        let claimed = s.claim_due(c).await.unwrap();
        assert_eq!(claimed[0].body, format!("body for {recipient}").as_bytes(), "opened for its delivery");
        let done = update(claimed[0].id, "w", 2_100 + n as i64, AttemptResult::Delivered { status: Some(200) });
        s.finish_attempts(vec![done]).await.unwrap();
    }
    // Its day (1970-01-01) is not over yet: the bodies go, the key stays.
    let purge = |now| PurgeRequest {
        now,
        delivered_retention_ms: 1_000,
        dead_retention_ms: 1_000,
        access_retention_ms: i64::MAX / 2,
    };
    let report = s.purge(purge(80_000_000)).await.unwrap();
    assert_eq!((report.record_bodies, report.delivery_bodies, report.keys_destroyed.len()), (1, 2, 0));
    // Over, and past the grace: the key is destroyed, once.
    let report = s.purge(purge(3 * 86_400_000)).await.unwrap();
    assert_eq!(report.keys_destroyed, ["a/1970-01-01"]);
    assert!(s.purge(purge(4 * 86_400_000)).await.unwrap().keys_destroyed.is_empty());
    let census = s.check_keys().await.unwrap();
    assert_eq!((census.live_by_kek.len(), census.destroyed), (0, 1));
    let entries = s.audit_entries(0, 100).await.unwrap();
    let destroyed = entries.iter().find(|e| e.event.kind == crate::audit::kind::KEYS_DESTROYED).unwrap();
    assert_eq!(destroyed.event.reason.as_deref(), Some("a/1970-01-01"));
    let mut verifier = ChainVerifier::new(&Default::default(), Vec::new(), Start::Beginning).unwrap();
    for e in &entries {
        verifier.entry(e).unwrap();
    }
    verifier.finish().unwrap();
}

/// A record is complete once every delivery is delivered, and then says when the last one
/// arrived; the list filters on it (`complete` is `delivered`, `incomplete` pending or failed).
pub async fn records_are_complete_when_every_delivery_is_delivered(s: &dyn Store) {
    let (bundle, single, dead) = (record(1, &["r", "q"]), record(2, &["r"]), record(3, &["r"]));
    for r in [&bundle, &single, &dead] {
        s.commit_record(r.clone()).await.unwrap();
    }
    let view = |r: &NewRecord| s.record("s".into(), r.record_id.clone());
    let fresh = view(&bundle).await.unwrap().unwrap();
    assert_eq!((fresh.status, fresh.completed_at), (RecordState::Pending, None));
    let to_r = s.claim_due(claim("w", 10, 2_000, false)).await.unwrap();
    let dead_result = AttemptResult::Dead { status: Some(400), error: "HTTP 400".into() };
    s.finish_attempts(vec![
        update(to_r[0].id, "w", 2_100, AttemptResult::Delivered { status: Some(200) }),
        update(to_r[1].id, "w", 2_200, AttemptResult::Delivered { status: Some(200) }),
        update(to_r[2].id, "w", 2_300, dead_result),
    ])
    .await
    .unwrap();
    let state = |v: RecordView| (v.status, v.completed_at);
    assert_eq!(state(view(&bundle).await.unwrap().unwrap()), (RecordState::Pending, None), "q has not got it");
    assert_eq!(state(view(&single).await.unwrap().unwrap()), (RecordState::Delivered, Some(2_200)));
    assert_eq!(state(view(&dead).await.unwrap().unwrap()), (RecordState::Failed, None));

    let listed = |filter: RecordFilter| async move {
        let query = RecordQuery { sender: "s".into(), status: Some(filter), since: None, before: None, limit: 10 };
        let page = s.list_records(query).await.unwrap();
        page.into_iter().map(|v| (v.received_at, v.completed_at)).collect::<Vec<_>>()
    };
    assert_eq!(listed(RecordFilter::Complete).await, [(1_002, Some(2_200))]);
    assert_eq!(listed(RecordFilter::Delivered).await, [(1_002, Some(2_200))]);
    assert_eq!(listed(RecordFilter::Incomplete).await, [(1_003, None), (1_001, None)], "failed and pending");
    assert_eq!(listed(RecordFilter::Pending).await, [(1_001, None)]);
    assert_eq!(listed(RecordFilter::Failed).await, [(1_003, None)]);

    // The last delivery completes the bundle, at its own time (not the first delivery's).
    let to_q = s.claim_due(ClaimRequest { recipient: "q".into(), ..claim("w", 10, 2_000, false) }).await.unwrap();
    s.finish_attempts(vec![update(to_q[0].id, "w", 2_500, AttemptResult::Delivered { status: Some(200) })])
        .await
        .unwrap();
    let complete = view(&bundle).await.unwrap().unwrap();
    assert_eq!((complete.status, complete.completed_at), (RecordState::Delivered, Some(2_500)));
    assert_eq!(complete.deliveries.len(), 2, "one view per record, every delivery in it");
    assert_eq!(listed(RecordFilter::Complete).await, [(1_002, Some(2_200)), (1_001, Some(2_500))]);
    assert_eq!(listed(RecordFilter::Incomplete).await, [(1_003, None)]);
}

/// A record is counted complete once, by the batch that delivers its last delivery, with the
/// time from its acceptance to that delivery; a delivery that leaves the record incomplete, a
/// retry and a late answer from a worker that lost its lease count nothing. Each engine's tests
/// run it with the metrics its store reports to.
pub async fn a_record_is_counted_complete_once_by_its_last_delivery(s: &dyn Store, metrics: &Metrics) {
    let completions = || {
        let histogram = metrics.record_completion.with_label_values(&["t"]);
        (histogram.get_sample_count(), histogram.get_sample_sum())
    };
    let on = |recipient: &str, now: i64| ClaimRequest { recipient: recipient.into(), ..claim("w", 10, now, false) };
    let delivered =
        |id: i64, worker: &str, at: i64| update(id, worker, at, AttemptResult::Delivered { status: Some(200) });
    s.commit_record(record(1, &["r", "q"])).await.unwrap();
    s.commit_record(record(2, &["r"])).await.unwrap();
    let to_r = s.claim_due(on("r", 2_000)).await.unwrap();
    let retry = AttemptResult::Retry { next_attempt_at: 100_000, status: Some(503), error: "HTTP 503".into() };
    s.finish_attempts(vec![delivered(to_r[0].id, "w", 2_100), update(to_r[1].id, "w", 2_100, retry)]).await.unwrap();
    assert_eq!(completions(), (0, 0.0), "the bundle waits for q; the other record for a retry");

    let to_q = s.claim_due(on("q", 2_000)).await.unwrap();
    s.finish_attempts(vec![delivered(to_q[0].id, "w", 3_001), delivered(to_q[0].id, "gone", 3_100)]).await.unwrap();
    assert_eq!(completions(), (1, 2.0), "from acceptance at 1001 to the last delivery at 3001");

    // Both deliveries of a record in one batch: counted once, at the later one.
    s.commit_record(record(3, &["r", "q"])).await.unwrap();
    let (to_r, to_q) = (s.claim_due(on("r", 3_500)).await.unwrap(), s.claim_due(on("q", 3_500)).await.unwrap());
    s.finish_attempts(vec![delivered(to_r[0].id, "w", 4_003), delivered(to_q[0].id, "w", 4_000)]).await.unwrap();
    assert_eq!(completions(), (2, 5.0));
}

/// The writer reports the time it spends in transactions, whatever they carry: a batch of
/// records, and a claim alone. One writer runs one transaction at a time, so its busy time
/// never exceeds the time that passed.
pub async fn the_writer_reports_the_time_it_is_busy(s: &dyn Store, metrics: &Metrics) {
    let busy = || metrics.store_writer_busy.with_label_values(&[s.engine()]).get();
    let transactions = || metrics.store_writer_transactions.with_label_values(&[s.engine()]).get();
    let started = std::time::Instant::now();
    assert_eq!(busy(), 0.0, "nothing written yet");
    let before = transactions();
    s.commit_record(record(1, &["r"])).await.unwrap();
    let after_record = busy();
    assert!(after_record > 0.0, "a transaction carrying a record counts");
    // The record's own transaction, after its data key's when the store seals bodies.
    let counted = transactions();
    assert!(counted > before, "a transaction carrying a record is counted");
    s.claim_due(claim("w", 10, 2_000, false)).await.unwrap();
    let after_claim = busy();
    assert!(after_claim > after_record, "a transaction carrying a claim alone counts too");
    assert_eq!(transactions(), counted + 1, "and is counted: one transaction for one claim");
    let elapsed = started.elapsed().as_secs_f64();
    assert!(after_claim <= elapsed, "busy {after_claim} s in {elapsed} s: more than the time that passed");
}

/// A record is due a completion notice once complete, or once a delivery is dead, and no more
/// once its notice is committed (a record of the gateway's own, keyed `<record id>.<kind>`);
/// only records with a delivery settled since the scan's time are looked at, and only the
/// sender's.
pub async fn notices_fall_due_once_per_record_and_kind(s: &dyn Store) {
    let (bundle, dead) = (record(1, &["r", "q"]), record(2, &["r"]));
    let other = NewRecord { sender: "t".into(), ..record(3, &["r"]) };
    for r in [&bundle, &dead, &other] {
        s.commit_record(r.clone()).await.unwrap();
    }
    let scan = |settled_since: i64| NoticeScan { sender: "s".into(), settled_since, limit: 10 };
    let due = |since: i64| async move {
        let due = s.notices_due(scan(since)).await.unwrap();
        due.into_iter().map(|d| (d.record_id, d.kind, d.deliveries.len())).collect::<Vec<_>>()
    };
    assert!(due(0).await.is_empty(), "nothing has settled");
    let to_r = s.claim_due(claim("w", 10, 2_000, false)).await.unwrap();
    let dead_result = AttemptResult::Dead { status: Some(400), error: "HTTP 400".into() };
    s.finish_attempts(vec![
        update(to_r[0].id, "w", 2_100, AttemptResult::Delivered { status: Some(200) }),
        update(to_r[1].id, "w", 2_200, dead_result),
        update(to_r[2].id, "w", 2_300, AttemptResult::Delivered { status: Some(200) }),
    ])
    .await
    .unwrap();
    assert_eq!(due(0).await, [(dead.record_id.clone(), NoticeKind::Incomplete, 1)], "the bundle waits for q");
    assert!(due(2_201).await.is_empty(), "settled before the scan's time");

    let to_q = s.claim_due(ClaimRequest { recipient: "q".into(), ..claim("w", 10, 2_000, false) }).await.unwrap();
    s.finish_attempts(vec![update(to_q[0].id, "w", 2_500, AttemptResult::Delivered { status: Some(200) })])
        .await
        .unwrap();
    let all = s.notices_due(scan(0)).await.unwrap();
    assert_eq!(all.len(), 2);
    let complete = &all[0];
    assert_eq!(
        (complete.kind, complete.received_at, complete.schema_version.as_str()),
        (NoticeKind::Complete, 1_001, "1.0")
    );
    assert!(complete.deliveries.iter().all(|d| d.status == DeliveryStatus::Delivered && d.delivered_at.is_some()));
    assert_eq!(all[1].deliveries[0].last_error.as_deref(), Some("HTTP 400"));

    // The notice for the bundle is committed: it is due no more, and the other one still is.
    let notice = NewRecord {
        record_id: "00000000-0000-7000-8000-100000000001".into(),
        sender: crate::audit::notice::SENDER.into(),
        idempotency_key: Some(NoticeKind::Complete.idempotency_key(&bundle.record_id)),
        ..record(4, &["s"])
    };
    s.commit_record(notice).await.unwrap();
    assert_eq!(due(0).await, [(dead.record_id.clone(), NoticeKind::Incomplete, 1)]);
    let issued = s.audit_entries(0, 100).await.unwrap();
    let issued = issued.iter().find(|e| e.event.kind == crate::audit::kind::NOTICE_ISSUED).unwrap();
    assert_eq!(issued.event.reason.as_deref(), Some(format!("{}.complete", bundle.record_id).as_str()));
}

/// Runs futures concurrently on the current task and collects their outputs in order (they
/// borrow the store, so they cannot be spawned).
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if done[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => done[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    done.into_iter().map(|d| d.expect("every future finished")).collect()
}

/// Declares one `#[tokio::test]` per conformance check, each on a fresh store from `$make`
/// (an async expression giving `(Arc<dyn Store>, guard)`; the guard keeps the store's
/// resources, such as a temporary directory or database, alive for the test).
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@tests $make;
            claims_are_exclusive_until_the_lease_expires,
            deliveries_taken_at_commit_are_their_workers_until_the_lease_expires,
            settlements_are_all_or_nothing_under_their_lease,
            head_only_claims_hold_the_queue_behind_a_failing_head,
            idempotency_is_enforced_inside_the_transaction,
            a_group_commit_signs_one_tree_with_a_proof_per_receipt,
            stored_receipts_come_back_with_their_entry,
            concurrent_appends_make_one_chain,
            replay_requeues_dead_deliveries_only,
            the_backlog_counts_pending_and_dead_deliveries_per_recipient,
            purge_keeps_metadata_and_the_chain,
            records_are_complete_when_every_delivery_is_delivered,
            notices_fall_due_once_per_record_and_kind,
            bodies_are_sealed_and_their_key_destroyed_once_none_is_left,
            the_access_record_finds_every_delivery_of_a_subjects_records,
            each_delivery_names_the_terms_it_was_accepted_under,
            records_are_found_by_id_key_and_time,
            each_attempt_is_on_its_deliverys_timeline,
            stats_count_records_attempts_and_rejections_per_bucket,
            bodies_are_read_until_purged
        );
    };
    (@tests $make:expr; $($check:ident),*) => {
        $(
            #[tokio::test]
            async fn $check() {
                let (store, _guard) = $make.await;
                $crate::store::conformance::$check(store.as_ref()).await;
            }
        )*
    };
}
