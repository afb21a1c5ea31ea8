//! The reads both engines serve, written once over [`Sql`]: each is one statement, and each row
//! becomes its view here, so both engines show exactly the same thing.

use bytes::Bytes;

use super::sql::{self, Param, Row, Sql};
use super::writes::stamp;
use super::*;
use crate::audit::{AuditEntry, AuditEvent, AuditStamp, Checkpoint};

/// A record and its deliveries, if `sender` sent it.
pub(super) async fn record(
    s: &mut impl Sql,
    sender: String,
    record_id: String,
) -> Result<Option<RecordView>, StoreError> {
    let rows = s.query(sql::RECORD, &[(&record_id).into(), (&sender).into()], record_row).await?;
    Ok(group(rows).pop())
}

/// A page of a sender's records, each with its deliveries, in one statement.
pub(super) async fn list_records(s: &mut impl Sql, query: RecordQuery) -> Result<Vec<RecordView>, StoreError> {
    let (before_at, before_id) = query.before.as_ref().map_or((None, None), |(at, id)| (Some(*at), Some(id)));
    let (state, not_state) = query.status.map_or((None, None), RecordFilter::states);
    let params: [Param<'_>; 7] = [
        (&query.sender).into(),
        query.since.into(),
        before_at.into(),
        before_id.into(),
        state.map(RecordState::as_str).into(),
        not_state.map(RecordState::as_str).into(),
        (query.limit as i64).into(),
    ];
    Ok(group(s.query(sql::RECORD_PAGE, &params, record_row).await?))
}

/// One row of `sql::with_deliveries!`: the record, and one of its deliveries if it has any.
fn record_row(r: &dyn Row) -> Result<(RecordView, Option<DeliveryView>), StoreError> {
    let record = RecordView {
        record_id: r.text(0)?,
        record_type: r.text(1)?,
        schema_version: r.text(2)?,
        received_at: r.int(3)?,
        status: r.label(4)?,
        completed_at: r.opt_int(5)?,
        deliveries: Vec::new(),
    };
    Ok((record, delivery_columns(r)?))
}

/// The delivery in columns 6 to 13 (`recipient, agreement, status, attempts, last_attempt_at,
/// delivered_at, next_attempt_at, last_error`), if the row has one: a record without deliveries
/// comes once, with NULL delivery columns.
fn delivery_columns(r: &dyn Row) -> Result<Option<DeliveryView>, StoreError> {
    let Some(recipient) = r.opt_text(6)? else { return Ok(None) };
    let status: DeliveryStatus = r.label(8)?;
    let pending = matches!(status, DeliveryStatus::Queued | DeliveryStatus::Retrying);
    Ok(Some(DeliveryView {
        recipient,
        agreement: r.text(7)?,
        status,
        attempts: r.small(9)?,
        last_attempt_at: r.opt_int(10)?,
        delivered_at: r.opt_int(11)?,
        next_attempt_at: if pending { Some(r.int(12)?) } else { None },
        last_error: r.opt_text(13)?,
    }))
}

/// Records of one sender due a completion notice, each with its deliveries, in one statement.
pub(super) async fn notices_due(s: &mut impl Sql, scan: NoticeScan) -> Result<Vec<NoticeDue>, StoreError> {
    let params: [Param<'_>; 4] = [
        (&scan.sender).into(),
        scan.settled_since.into(),
        crate::audit::notice::SENDER.into(),
        (scan.limit as i64).into(),
    ];
    let rows = s
        .query(sql::NOTICES_DUE, &params, |r| {
            let kind = r.text(5)?;
            let due = NoticeDue {
                kind: NoticeKind::parse(&kind)
                    .ok_or_else(|| StoreError::corrupt(format!("column 5 holds `{kind}`, not a notice kind")))?,
                record_id: r.text(0)?,
                record_type: r.text(1)?,
                schema_version: r.text(2)?,
                received_at: r.int(3)?,
                audit_seq: r.int(4)?,
                deliveries: Vec::new(),
            };
            Ok((due, delivery_columns(r)?))
        })
        .await?;
    Ok(group_by(rows, |d| &d.record_id, |d| &mut d.deliveries))
}

/// Rows of records with their deliveries (a record's rows are adjacent) as one view per record.
fn group(rows: Vec<(RecordView, Option<DeliveryView>)>) -> Vec<RecordView> {
    group_by(rows, |v| &v.record_id, |v| &mut v.deliveries)
}

/// Rows of records, each with one of its deliveries or none (a record's rows are adjacent), as
/// one value per record holding all its deliveries.
fn group_by<R>(
    rows: Vec<(R, Option<DeliveryView>)>,
    id: impl Fn(&R) -> &String,
    deliveries: impl Fn(&mut R) -> &mut Vec<DeliveryView>,
) -> Vec<R> {
    let mut grouped: Vec<R> = Vec::new();
    for (record, delivery) in rows {
        match grouped.last_mut() {
            Some(last) if id(last) == id(&record) => deliveries(last).extend(delivery),
            _ => {
                let mut record = record;
                deliveries(&mut record).extend(delivery);
                grouped.push(record);
            }
        }
    }
    grouped
}

/// The receipt stored with a record, the record's audit entry, and its signed tree if it has one.
pub(super) async fn receipt(s: &mut impl Sql, record_id: String) -> Result<Option<StoredReceipt>, StoreError> {
    let Some(mut receipt) = s.query(sql::RECEIPT, &[(&record_id).into()], stored_receipt).await?.pop() else {
        return Ok(None);
    };
    receipt.tree = tree_of(s, receipt.stamp.seq).await?.map(|t| t.head);
    Ok(Some(receipt))
}

/// A stored receipt from the columns `sql::RECEIPT` reads (its tree not yet read).
fn stored_receipt(r: &dyn Row) -> Result<StoredReceipt, StoreError> {
    Ok(StoredReceipt {
        receipt: Bytes::from(r.bytes(0)?),
        stamp: AuditStamp { seq: r.int(1)?, hash: r.hash(2)? },
        body_digest: r.opt_hash(3)?,
        tree: None,
    })
}

/// A signed receipt tree from the columns `sql::RECEIPT_TREE` reads.
fn stored_tree(r: &dyn Row) -> Result<StoredTree, StoreError> {
    Ok(StoredTree {
        head: TreeHead {
            first_seq: r.int(0)?,
            size: r.small(2)?,
            root: r.hash(3)?,
            signed_at: r.int(4)?,
            key_id: r.text(5)?,
            signature: r.bytes(6)?,
        },
        last_seq: r.int(1)?,
    })
}

/// The signed tree that holds the receipt of audit entry `seq`, if one does.
pub(super) async fn tree_of(s: &mut impl Sql, seq: i64) -> Result<Option<StoredTree>, StoreError> {
    Ok(s.query(sql::RECEIPT_TREE, &[seq.into()], stored_tree).await?.pop())
}

pub(super) async fn receipt_trees(s: &mut impl Sql, after: i64, limit: usize) -> Result<Vec<StoredTree>, StoreError> {
    s.query(sql::RECEIPT_TREES, &[after.into(), (limit as i64).into()], stored_tree).await
}

pub(super) async fn tree_receipts(s: &mut impl Sql, tree: StoredTree) -> Result<Vec<StoredReceipt>, StoreError> {
    let params = [tree.head.first_seq.into(), tree.last_seq.into()];
    let receipts = s.query(sql::TREE_RECEIPTS, &params, stored_receipt).await?;
    let head = Some(tree.head);
    Ok(receipts.into_iter().map(|r| StoredReceipt { tree: head.clone(), ..r }).collect())
}

/// Where the receipt of audit entry `seq` sits in its signed tree, rebuilt from the stored
/// receipts (a replayed request's receipt); `None` if no tree holds it.
pub(super) async fn inclusion(s: &mut impl Sql, seq: i64) -> Result<Option<Inclusion>, StoreError> {
    let Some(tree) = tree_of(s, seq).await? else { return Ok(None) };
    let receipts = tree_receipts(s, tree.clone()).await?;
    let corrupt =
        |what: &str| StoreError::corrupt(format!("the receipt tree from entry {}: {what}", tree.head.first_seq));
    let index = receipts.iter().position(|r| r.stamp.seq == seq).ok_or_else(|| corrupt("its receipt is missing"))?;
    let rebuilt = crate::audit::receipt::tree_of(&receipts, tree.head.signer()).map_err(|e| corrupt(&e.to_string()))?;
    if rebuilt.root() != tree.head.root || rebuilt.size() != tree.head.size {
        return Err(corrupt("its receipts do not make its signed root"));
    }
    let path = rebuilt.proof(index).ok_or_else(|| corrupt("its receipt is missing"))?;
    Ok(Some(Inclusion { head: std::sync::Arc::new(tree.head), index: index as u64, path }))
}

/// Pending and dead deliveries per recipient, folded from one row per (status, recipient).
pub(super) async fn backlog(s: &mut impl Sql) -> Result<Vec<RecipientBacklog>, StoreError> {
    let rows =
        s.query(sql::BACKLOG, &[], |r| Ok((r.text(0)?, r.label::<DeliveryStatus>(1)?, r.int(2)?, r.int(3)?))).await?;
    let mut backlog: Vec<RecipientBacklog> = Vec::new();
    for (recipient, status, count, first_created_at) in rows {
        let at = match backlog.iter().position(|b| b.recipient == recipient) {
            Some(at) => at,
            None => {
                backlog.push(RecipientBacklog { recipient, pending: 0, oldest_pending_at: None, dead: 0 });
                backlog.len() - 1
            }
        };
        let b = &mut backlog[at];
        if status == DeliveryStatus::Dead {
            b.dead += count;
        } else {
            b.pending += count;
            b.oldest_pending_at = Some(b.oldest_pending_at.map_or(first_created_at, |at| at.min(first_created_at)));
        }
    }
    Ok(backlog)
}

pub(super) async fn ping(s: &mut impl Sql) -> Result<(), StoreError> {
    s.query(sql::PING, &[], |_| Ok(())).await.map(drop)
}

/// The newest entry of the chain, if there is one.
pub(super) async fn audit_head<S: Sql>(s: &mut S) -> Result<Option<AuditStamp>, StoreError> {
    let head = s.query(S::DIALECT.audit_head, &[], stamp).await?.pop();
    Ok(head.filter(|h| h.seq > 0))
}

pub(super) async fn audit_entries(s: &mut impl Sql, after: i64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
    s.query(sql::AUDIT_ENTRIES, &[after.into(), (limit as i64).into()], audit_entry).await
}

/// An audit entry from the columns `sql::AUDIT_ENTRIES` reads.
fn audit_entry(r: &dyn Row) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: r.int(0)?,
        event: AuditEvent {
            at: r.int(1)?,
            kind: r.text(2)?,
            actor: r.text(3)?,
            record_id: r.opt_text(4)?,
            agreement: r.opt_text(5)?,
            recipient: r.opt_text(6)?,
            body_digest: r.opt_hash(7)?,
            outcome: r.text(8)?,
            reason: r.opt_text(9)?,
            count: r.int(10)?,
        },
        prev_hash: r.hash(11)?,
        hash: r.hash(12)?,
    })
}

pub(super) async fn checkpoints(s: &mut impl Sql) -> Result<Vec<Checkpoint>, StoreError> {
    s.query(sql::CHECKPOINTS, &[], checkpoint).await
}

pub(super) async fn checkpoints_between(
    s: &mut impl Sql,
    first: i64,
    last: i64,
) -> Result<Vec<Checkpoint>, StoreError> {
    s.query(sql::CHECKPOINTS_BETWEEN, &[first.into(), last.into()], checkpoint).await
}

/// A checkpoint from the columns `sql::CHECKPOINTS` reads.
fn checkpoint(r: &dyn Row) -> Result<Checkpoint, StoreError> {
    Ok(Checkpoint { seq: r.int(0)?, key_id: r.text(1)?, hash: r.hash(2)?, at: r.int(3)?, signature: r.bytes(4)? })
}

pub(super) async fn deliveries(s: &mut impl Sql, filter: DeliveryFilter) -> Result<Vec<DeliveryAdminView>, StoreError> {
    let params: [Param<'_>; 7] = [
        filter.status.map(DeliveryStatus::as_str).into(),
        filter.recipient.as_ref().into(),
        filter.after_id.unwrap_or(0).into(),
        filter.agreement.as_ref().into(),
        filter.partner.as_ref().into(),
        filter.record_id.as_ref().into(),
        (filter.limit as i64).into(),
    ];
    s.query(sql::DELIVERIES, &params, |r| {
        Ok(DeliveryAdminView {
            id: r.int(0)?,
            record_id: r.text(1)?,
            sender: r.text(2)?,
            record_type: r.text(3)?,
            recipient: r.text(4)?,
            agreement: r.text(5)?,
            status: r.label(6)?,
            attempts: r.small(7)?,
            replays: r.small(8)?,
            created_at: r.int(9)?,
            last_attempt_at: r.opt_int(10)?,
            last_status: r.opt_small(11)?,
            last_error: r.opt_text(12)?,
            body_kept: r.flag(13)?,
            next_attempt_at: match r.label(6)? {
                DeliveryStatus::Queued | DeliveryStatus::Retrying => Some(r.int(14)?),
                _ => None,
            },
        })
    })
    .await
}

/// Records operators look for, each with its deliveries' parties, in one statement.
pub(super) async fn find_records(s: &mut impl Sql, search: RecordSearch) -> Result<Vec<RecordFound>, StoreError> {
    let (before_at, before_id) = search.before.as_ref().map_or((None, None), |(at, id)| (Some(*at), Some(id)));
    let params: [Param<'_>; 9] = [
        search.record_id.as_ref().into(),
        search.sender.as_ref().into(),
        search.idempotency_key.as_ref().into(),
        search.record_type.as_ref().into(),
        search.from.into(),
        search.to.into(),
        before_at.into(),
        before_id.into(),
        (search.limit as i64).into(),
    ];
    let rows = s
        .query(sql::FIND_RECORDS, &params, |r| {
            let found = RecordFound {
                record_id: r.text(0)?,
                sender: r.text(1)?,
                record_type: r.text(2)?,
                schema_version: r.text(3)?,
                received_at: r.int(4)?,
                status: r.label(5)?,
                idempotency_key: r.opt_text(6)?,
                body_kept: r.flag(7)?,
                audit_seq: r.int(8)?,
                deliveries: Vec::new(),
            };
            let delivery = match r.opt_text(9)? {
                Some(recipient) => Some((recipient, r.text(10)?, r.label(11)?)),
                None => None,
            };
            Ok((found, delivery))
        })
        .await?;
    let mut found: Vec<RecordFound> = Vec::new();
    for (record, delivery) in rows {
        match found.last_mut() {
            Some(last) if last.record_id == record.record_id => last.deliveries.extend(delivery),
            _ => {
                let mut record = record;
                record.deliveries.extend(delivery);
                found.push(record);
            }
        }
    }
    Ok(found)
}

/// The attempt timeline of a record's deliveries.
pub(super) async fn attempts(s: &mut impl Sql, record_id: String) -> Result<Vec<AttemptView>, StoreError> {
    s.query(sql::ATTEMPTS, &[(&record_id).into()], |r| {
        Ok(AttemptView {
            delivery_id: r.int(0)?,
            attempt: r.small(1)?,
            at: r.int(2)?,
            outcome: r.label(3)?,
            status: r.opt_small(4)?,
            latency_ms: r.opt_int(5)?,
            error_class: r
                .opt_text(6)?
                .map(|c| c.parse())
                .transpose()
                .map_err(|e: UnknownLabel| StoreError::corrupt(format!("column 6: {e}")))?,
            next_attempt_at: r.opt_int(7)?,
        })
    })
    .await
}

pub(super) async fn audit_naming(
    s: &mut impl Sql,
    record_id: String,
    limit: usize,
) -> Result<Vec<AuditEntry>, StoreError> {
    s.query(sql::AUDIT_NAMING, &[(&record_id).into(), (limit as i64).into()], audit_entry).await
}

pub(super) async fn audit_range(s: &mut impl Sql, range: AuditRange) -> Result<Vec<AuditEntry>, StoreError> {
    let params: [Param<'_>; 4] = [range.after.into(), range.from.into(), range.to.into(), (range.limit as i64).into()];
    s.query(sql::AUDIT_RANGE, &params, audit_entry).await
}

/// Counts per bucket over a range, in three statements (records, attempts, rejections).
pub(super) async fn stats(s: &mut impl Sql, q: StatsQuery) -> Result<Stats, StoreError> {
    use std::collections::BTreeMap;
    let bucket_ms = q.bucket_ms.max(1);
    let mut buckets: BTreeMap<i64, StatsBucket> = BTreeMap::new();
    let params: [Param<'_>; 5] =
        [bucket_ms.into(), q.from.into(), q.to.into(), q.partner.as_ref().into(), q.agreement.as_ref().into()];
    for (start, n) in s.query(sql::STATS_ACCEPTED, &params, |r| Ok((r.int(0)?, r.int(1)?))).await? {
        buckets.entry(start).or_insert_with(|| StatsBucket { start, ..StatsBucket::default() }).accepted += n;
    }
    let attempts = s
        .query(sql::STATS_ATTEMPTS, &params, |r| {
            Ok((r.int(0)?, r.label::<DeliveryStatus>(1)?, r.int(2)?, r.int(3)?, r.int(4)?, r.int(5)?))
        })
        .await?;
    for (start, outcome, n, sum, count, max) in attempts {
        let b = buckets.entry(start).or_insert_with(|| StatsBucket { start, ..StatsBucket::default() });
        match outcome {
            DeliveryStatus::Delivered => b.delivered += n,
            DeliveryStatus::Dead => b.dead += n,
            DeliveryStatus::Retrying | DeliveryStatus::Queued => b.retried += n,
        }
        b.latency_sum_ms += sum;
        b.latency_count += count;
        b.latency_max_ms = b.latency_max_ms.max(max);
    }
    // Rejections name their sender only: an agreement's statistics have none.
    let rejected = if q.agreement.is_some() {
        Vec::new()
    } else {
        let params: [Param<'_>; 3] = [q.from.into(), q.to.into(), q.partner.as_ref().into()];
        s.query(sql::STATS_REJECTED, &params, |r| Ok((r.text(0)?, r.int(1)?))).await?
    };
    Ok(Stats { buckets: buckets.into_values().collect(), rejected })
}

/// A stored body, still sealed, with the key it is sealed under and what binds it.
pub(super) async fn body(s: &mut impl Sql, body: BodyRef) -> Result<Option<keys::StoredBody>, StoreError> {
    let rows = match &body {
        BodyRef::Record(id) => {
            s.query(sql::RECORD_BODY, &[id.into()], |r| {
                Ok(keys::StoredBody {
                    record_id: r.text(0)?,
                    recipient: None,
                    body: r.opt_bytes(1)?,
                    key_id: r.opt_text(2)?,
                })
            })
            .await?
        }
        BodyRef::Delivery(id) => {
            s.query(sql::DELIVERY_BODY, &[(*id).into()], |r| {
                Ok(keys::StoredBody {
                    record_id: r.text(0)?,
                    recipient: Some(r.text(1)?),
                    body: r.opt_bytes(2)?,
                    key_id: r.opt_text(3)?,
                })
            })
            .await?
        }
    };
    Ok(rows.into_iter().next())
}

/// A page of the disclosures about one subject, in one statement.
pub(super) async fn access(s: &mut impl Sql, query: AccessQuery) -> Result<Vec<Disclosure>, StoreError> {
    let params: [Param<'_>; 3] =
        [Param::Bytes(&query.subject), query.after_id.unwrap_or(0).into(), (query.limit as i64).into()];
    s.query(sql::ACCESS, &params, |r| {
        Ok(Disclosure {
            delivery_id: r.int(0)?,
            record_id: r.text(1)?,
            sender: r.text(2)?,
            record_type: r.text(3)?,
            schema_version: r.text(4)?,
            received_version: r.text(5)?,
            recipient: r.text(6)?,
            agreement: r.text(7)?,
            terms: DisclosureTerms::from_columns(r.opt_text(8)?, r.opt_text(9)?)?,
            accepted_at: r.int(10)?,
            accepted_seq: r.int(11)?,
            status: r.label(12)?,
            delivered_at: r.opt_int(13)?,
            delivered_seq: r.opt_int(14)?,
        })
    })
    .await
}

/// Data key `id` as stored, if there is one.
pub(super) async fn stored_key(s: &mut impl Sql, id: String) -> Result<Option<keys::StoredKey>, StoreError> {
    Ok(s.query(sql::DATA_KEY, &[(&id).into()], super::writes::stored_key).await?.pop())
}

/// Up to `limit` live data keys wrapped under another key than `kek_id`.
pub(super) async fn keys_wrapped_elsewhere(
    s: &mut impl Sql,
    kek_id: String,
    limit: usize,
) -> Result<Vec<keys::StoredKey>, StoreError> {
    s.query(sql::KEYS_WRAPPED_ELSEWHERE, &[(&kek_id).into(), (limit as i64).into()], super::writes::stored_key).await
}

/// Up to `limit` bodies stored in plaintext, records' first.
pub(super) async fn plain_bodies(s: &mut impl Sql, limit: usize) -> Result<Vec<keys::PlainBody>, StoreError> {
    use keys::{BodyRow, PlainBody};
    let mut bodies = s
        .query(sql::PLAIN_RECORDS, &[(limit as i64).into()], |r| {
            Ok(PlainBody { row: BodyRow::Record { record_id: r.text(0)? }, body: r.bytes(1)?, agreement: r.text(2)? })
        })
        .await?;
    let left = limit.saturating_sub(bodies.len());
    if left > 0 {
        bodies.extend(
            s.query(sql::PLAIN_DELIVERIES, &[(left as i64).into()], |r| {
                Ok(PlainBody {
                    row: BodyRow::Delivery { id: r.int(0)?, record_id: r.text(1)?, recipient: r.text(2)? },
                    body: r.bytes(3)?,
                    agreement: r.text(4)?,
                })
            })
            .await?,
        );
    }
    Ok(bodies)
}

/// The data keys by state and the bodies still in plaintext.
pub(super) async fn key_census(s: &mut impl Sql) -> Result<keys::KeyCensus, StoreError> {
    let live_by_kek = s.query(sql::LIVE_KEYS, &[], |r| Ok((r.text(0)?, r.small::<u64>(1)?))).await?;
    let counts = s.query(sql::KEY_COUNTS, &[], |r| Ok((r.small(0)?, r.small(1)?, r.small(2)?))).await?;
    let (destroyed, plain_records, plain_deliveries) = counts.first().copied().unwrap_or_default();
    Ok(keys::KeyCensus { live_by_kek, destroyed, plain_records, plain_deliveries })
}
