//! Investigating a record, for operators: find records by id, by their sender's idempotency key
//! or by time range (`GET /admin/v1/records`); a record's page (`GET
//! /admin/v1/records/{record_id}`): its receipt, each delivery with its attempt timeline and next
//! attempt, and for those who may read the audit trail the entries that name it; a stored body
//! for those who may read bodies (`…/body`, on a record or a delivery); and the counts over a
//! time range from the store (`GET /admin/v1/stats`), for a partner, an agreement or the gateway.
//!
//! Every answer is cut to the operator's grants: a record is theirs if one of its deliveries (or,
//! without deliveries, its sender) is in their scope; one that is not is refused as the
//! replay of another's delivery is (403 `operator-forbidden`, scoped), one that does not exist is
//! 404.
//!
//! **Invariant:** no record value leaves here except as the answer to a body read, which only
//! `read-bodies` holders get, and each of which is audited (`body.read`: the operator, the
//! record and the delivery, never the value) before the body is sent. Metadata, the timeline and
//! the receipt hold no value.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use super::error::{AdminError, ApiError};
use super::records::{query_count, query_value};
use super::state::State;
use super::{json_response, store_json};
use crate::audit::{AuditEvent, kind};
use crate::operators::{Operator, Permission, Target};
use crate::store::{AttemptView, BodyRef, DeliveryAdminView, DeliveryFilter, RecordFound, RecordSearch, StatsQuery};
use crate::telemetry::events::BodyRead;

/// Most records one search page returns.
const MAX_PAGE: u64 = 200;
/// Most audit entries a record's page shows.
const MAX_ENTRIES: usize = 500;
/// Most deliveries a record's page shows (a record has one per recipient).
const MAX_DELIVERIES: usize = 500;

/// A time range the statistics read from the store, and the width of its buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsRange {
    Minutes15,
    Hour1,
    Hours6,
    Hours24,
    Days7,
}

impl StatsRange {
    pub const ALL: [StatsRange; 5] =
        [StatsRange::Minutes15, StatsRange::Hour1, StatsRange::Hours6, StatsRange::Hours24, StatsRange::Days7];

    pub fn as_str(self) -> &'static str {
        match self {
            StatsRange::Minutes15 => "15m",
            StatsRange::Hour1 => "1h",
            StatsRange::Hours6 => "6h",
            StatsRange::Hours24 => "24h",
            StatsRange::Days7 => "7d",
        }
    }

    /// The range's length and its buckets' width, in ms: 12 to 28 buckets whatever the range.
    pub fn spans(self) -> (i64, i64) {
        const MIN: i64 = 60_000;
        match self {
            StatsRange::Minutes15 => (15 * MIN, MIN),
            StatsRange::Hour1 => (60 * MIN, 5 * MIN),
            StatsRange::Hours6 => (360 * MIN, 15 * MIN),
            StatsRange::Hours24 => (1_440 * MIN, 60 * MIN),
            StatsRange::Days7 => (10_080 * MIN, 360 * MIN),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        StatsRange::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// Whether `operator` holds `permission` over a record: over one of its deliveries, or, without
/// any, over its sender.
fn covers_record(operator: &Operator, permission: Permission, r: &RecordFound) -> bool {
    if operator.may_everywhere(permission) {
        return true;
    }
    if r.deliveries.is_empty() {
        return operator.may_on(permission, &Target { partners: &[&r.sender], agreement: None });
    }
    r.deliveries.iter().any(|(recipient, agreement, _)| {
        let partners = [r.sender.as_str(), recipient.as_str()];
        operator.may_on(permission, &Target { partners: &partners, agreement: Some(agreement) })
    })
}

/// Whether `operator` may read a record's own body: it holds all of the record (the sender,
/// under every agreement the record went under), since the record as posted holds more than any
/// one recipient receives.
fn covers_record_body(operator: &Operator, r: &RecordFound) -> bool {
    let needs = Permission::ReadBodies;
    if operator.may_everywhere(needs) {
        return true;
    }
    let sender = [r.sender.as_str()];
    if r.deliveries.is_empty() {
        return operator.may_on(needs, &Target { partners: &sender, agreement: None });
    }
    (r.deliveries.iter())
        .all(|(_, agreement, _)| operator.may_on(needs, &Target { partners: &sender, agreement: Some(agreement) }))
}

/// Whether `operator` holds `permission` over an audit entry: it names a partner (its actor or
/// recipient) or an agreement in their scope, as `GET /admin/v1/audit` cuts its pages.
fn covers_entry(operator: &Operator, permission: Permission, e: &crate::audit::AuditEntry) -> bool {
    let event = &e.event;
    let partners: Vec<&str> = [Some(event.actor.as_str()), event.recipient.as_deref()].into_iter().flatten().collect();
    operator.may_everywhere(permission)
        || operator.may_on(permission, &Target { partners: &partners, agreement: event.agreement.as_deref() })
}

/// Whether `operator` holds `permission` over a delivery: its sender, its recipient, its
/// agreement.
fn covers_delivery(operator: &Operator, permission: Permission, d: &DeliveryAdminView) -> bool {
    let partners = [d.sender.as_str(), d.recipient.as_str()];
    operator.may_on(permission, &Target { partners: &partners, agreement: Some(&d.agreement) })
}

/// A time parameter (RFC 3339), if present.
fn query_time(query: &str, name: &'static str) -> Result<Option<i64>, ApiError> {
    query_value(query, name)?
        .map(|t| crate::clock::parse_rfc3339_ms(&t).ok_or(ApiError::BadQuery { parameter: name }))
        .transpose()
}

/// The search cursor: the last record's `received_at` (unix ms) and id.
fn parse_cursor(text: &str) -> Option<(i64, String)> {
    let (at, id) = text.split_once('.')?;
    if at.is_empty() || at.len() > 18 || !at.bytes().all(|b| b.is_ascii_digit()) || id.is_empty() {
        return None;
    }
    Some((at.parse().ok()?, id.to_owned()))
}

/// `GET /admin/v1/records`: records by id, by sender and idempotency key, or by time range and
/// type, newest first, cut to the operator's scope (a page may then hold fewer than `limit`;
/// `next_cursor` still pages through every record).
pub async fn records(state: &State, operator: &Operator, query: &str) -> Result<Response<Full<Bytes>>, AdminError> {
    // Idempotency keys are each sender's own: a key without `partner` finds every sender's use
    // of it. A range that ends before it starts finds nothing.
    let sender = query_value(query, "partner")?;
    let idempotency_key = query_value(query, "idempotency_key")?;
    let (from, to) = (query_time(query, "from")?, query_time(query, "to")?);
    let limit = query_count(query, "limit", 1..=MAX_PAGE)?.unwrap_or(50) as usize;
    let before = query_value(query, "cursor")?
        .map(|c| parse_cursor(&c).ok_or(ApiError::BadQuery { parameter: "cursor" }))
        .transpose()?;
    let search = RecordSearch {
        record_id: query_value(query, "id")?,
        sender,
        idempotency_key,
        record_type: query_value(query, "record_type")?,
        from,
        to,
        before,
        limit,
    };
    let found = state.store.find_records(search).await.map_err(ApiError::store)?;
    let next =
        (found.len() == limit).then(|| found.last()).flatten().map(|r| format!("{}.{}", r.received_at, r.record_id));
    let shown: Vec<_> =
        found.iter().filter(|r| covers_record(operator, Permission::View, r)).map(store_json::found).collect();
    Ok(json_response(StatusCode::OK, json!({"records": shown, "next_cursor": next}).to_string().into_bytes()))
}

/// The record `record_id`, if it exists and `operator` holds `permission` over it.
async fn record_in_scope(
    state: &State,
    operator: &Operator,
    permission: Permission,
    record_id: &str,
) -> Result<RecordFound, AdminError> {
    let search = RecordSearch { record_id: Some(record_id.to_owned()), limit: 1, ..RecordSearch::default() };
    let record = state.store.find_records(search).await.map_err(ApiError::store)?.pop();
    let record = record.ok_or(AdminError::RecordNotFound)?;
    if !covers_record(operator, permission, &record) {
        return Err(AdminError::Forbidden { needs: permission, scoped: true });
    }
    Ok(record)
}

/// `GET /admin/v1/records/{record_id}`: the record's metadata and receipt, its deliveries (those
/// in the operator's scope) each with its attempt timeline and next attempt, and, for an
/// operator who may read the audit trail, the entries that name it (that read is audited as
/// `audit.read`). What the operator may do on the page is said too (`may`).
pub async fn record(state: &State, operator: &Operator, record_id: &str) -> Result<Response<Full<Bytes>>, AdminError> {
    let record = record_in_scope(state, operator, Permission::View, record_id).await?;
    let filter =
        DeliveryFilter { record_id: Some(record.record_id.clone()), limit: MAX_DELIVERIES, ..Default::default() };
    let deliveries = state.store.deliveries(filter).await.map_err(ApiError::store)?;
    let attempts = state.store.attempts(record.record_id.clone()).await.map_err(ApiError::store)?;
    let receipt = state.store.receipt(record.record_id.clone()).await.map_err(ApiError::store)?;
    let deliveries: Vec<Value> = deliveries
        .iter()
        .filter(|d| covers_delivery(operator, Permission::View, d))
        .map(|d| {
            let mut shown = serde_json::to_value(store_json::admin_delivery(d)).unwrap_or(Value::Null);
            let timeline: Vec<_> =
                attempts.iter().filter(|a: &&AttemptView| a.delivery_id == d.id).map(store_json::attempt).collect();
            shown["timeline"] = json!(timeline);
            shown["may_replay"] = json!(covers_delivery(operator, Permission::Replay, d));
            shown["may_read_body"] = json!(covers_delivery(operator, Permission::ReadBodies, d));
            shown
        })
        .collect();
    let receipt = receipt.map(|r| {
        json!({
            "receipt": serde_json::from_slice::<Value>(&r.receipt).unwrap_or(Value::Null),
            "audit_seq": r.stamp.seq,
            "audit_hash": crate::digest::to_hex(&r.stamp.hash),
        })
    });
    let audit = if covers_record(operator, Permission::ReadAudit, &record) {
        let mut entries =
            state.store.audit_naming(record.record_id.clone(), MAX_ENTRIES).await.map_err(ApiError::store)?;
        entries.retain(|e| covers_entry(operator, Permission::ReadAudit, e));
        let mut read = AuditEvent::new(crate::clock::now_ms(), kind::AUDIT_READ, &operator.actor(), "read");
        read.count = entries.len() as i64;
        read.record_id = Some(record.record_id.clone());
        read.reason = Some("the entries naming a record".to_owned());
        state.store.append_audit(vec![read]).await.map_err(ApiError::store)?;
        Some(entries.iter().map(crate::audit::export::entry_json).collect::<Vec<_>>())
    } else {
        None
    };
    let answer = json!({
        "record": store_json::found(&record),
        "receipt": receipt,
        "deliveries": deliveries,
        "audit": audit,
        "may": {
            "read_body": covers_record_body(operator, &record),
            "read_audit": audit.is_some(),
        },
    });
    Ok(json_response(StatusCode::OK, answer.to_string().into_bytes()))
}

/// `GET /admin/v1/records/{record_id}/body` and `GET /admin/v1/deliveries/{delivery_id}/body`:
/// a stored body as it was posted or as its recipient receives it, for an operator who may read
/// bodies over it; 410 once the retention purged it. Each read is audited (`body.read`) before
/// the body is sent; a read that cannot be audited is not answered.
pub async fn body(state: &State, operator: &Operator, body: BodyRef) -> Result<Response<Full<Bytes>>, AdminError> {
    let needs = Permission::ReadBodies;
    let mut read = AuditEvent::new(crate::clock::now_ms(), kind::BODY_READ, &operator.actor(), "read");
    match &body {
        BodyRef::Record(record_id) => {
            let record = record_in_scope(state, operator, needs, record_id).await?;
            if !covers_record_body(operator, &record) {
                return Err(AdminError::Forbidden { needs, scoped: true });
            }
            read.record_id = Some(record.record_id);
            read.reason = Some("the record as posted".to_owned());
        }
        BodyRef::Delivery(id) => {
            let delivery = state.store.deliveries(DeliveryFilter::one(*id)).await.map_err(ApiError::store)?;
            let delivery = delivery.into_iter().find(|d| d.id == *id).ok_or(AdminError::DeliveryNotFound)?;
            if !covers_delivery(operator, needs, &delivery) {
                return Err(AdminError::Forbidden { needs, scoped: true });
            }
            read.record_id = Some(delivery.record_id);
            read.recipient = Some(delivery.recipient);
            read.agreement = Some(delivery.agreement);
            read.reason = Some(format!("delivery {id} as its recipient receives it"));
        }
    }
    let stored = state.store.body(body).await.map_err(ApiError::store)?;
    let Some(stored) = stored else { return Err(AdminError::RecordNotFound) };
    let Some(bytes) = stored else { return Err(AdminError::BodyPurged) };
    let stamps = state.store.append_audit(vec![read.clone()]).await.map_err(ApiError::store)?;
    let audit_seq = stamps.first().map_or(0, |s| s.seq);
    let record_id = read.record_id.as_deref().unwrap_or_default();
    BodyRead { actor: &read.actor, record_id, recipient: read.recipient.as_deref(), audit_seq }.emit();
    let mut response = json_response(StatusCode::OK, bytes.to_vec());
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("inline"));
    Ok(response)
}

/// `GET /admin/v1/stats?range=&partner=&agreement=`: per-bucket counts from the store over the
/// range ending now (records accepted, attempts delivered, retried and dead, their latency),
/// rejections by reason, and the circuit breakers of the recipients concerned. An operator
/// whose grants are limited must name a partner or an agreement within them.
pub async fn stats(state: &State, operator: &Operator, query: &str) -> Result<Response<Full<Bytes>>, AdminError> {
    let range = match query_value(query, "range")? {
        None => StatsRange::Hour1,
        Some(r) => StatsRange::parse(&r).ok_or(ApiError::BadQuery { parameter: "range" })?,
    };
    // A partner or an agreement the configuration does not name (any more) is counted like any
    // other: the store may still hold its records.
    let config = state.config();
    let partner = query_value(query, "partner")?;
    let agreement = query_value(query, "agreement")?;
    let in_force = agreement.as_deref().and_then(|a| config.built.agreements.iter().find(|g| *g.id == *a));
    // The partners the statistics concern: the one named, else the agreement's parties.
    let mut parties: Vec<&str> = partner.as_deref().into_iter().collect();
    if parties.is_empty()
        && let Some(a) = in_force
    {
        parties.push(&a.sender);
        parties.extend(a.recipients.iter().map(|r| &*r.partner));
    }
    if !operator.may_everywhere(Permission::View) {
        let target = Target { partners: &parties, agreement: agreement.as_deref() };
        if parties.is_empty() || !operator.may_on(Permission::View, &target) {
            return Err(AdminError::Forbidden { needs: Permission::View, scoped: true });
        }
    }
    let (span, bucket_ms) = range.spans();
    let now = crate::clock::now_ms();
    // Whole buckets: the last one holds now.
    let to = now - now.rem_euclid(bucket_ms) + bucket_ms;
    let from = to - span;
    let q = StatsQuery { from, to, bucket_ms, partner: partner.clone(), agreement: agreement.clone() };
    let stats = state.store.stats(q).await.map_err(ApiError::store)?;
    let breakers = super::console::breakers(&state.metrics);
    let recipients: Vec<&str> = match (&partner, in_force) {
        (Some(p), _) => vec![p.as_str()],
        (None, Some(a)) => a.recipients.iter().map(|r| &*r.partner).collect(),
        (None, None) => config.recipients().map(|p| &*p.id).collect(),
    };
    let breakers: Vec<Value> = recipients
        .iter()
        .filter_map(|r| breakers.get(*r).map(|state| json!({"recipient": r, "state": state})))
        .collect();
    let answer = json!({
        "range": range.as_str(),
        "from": store_json::time(from),
        "to": store_json::time(to),
        "bucket_seconds": bucket_ms / 1000,
        "partner": partner,
        "agreement": agreement,
        "buckets": stats.buckets.iter().map(store_json::bucket).collect::<Vec<_>>(),
        "rejected": stats.rejected.iter().map(|(reason, count)| json!({"reason": reason, "count": count})).collect::<Vec<_>>(),
        "breakers": breakers,
    });
    Ok(json_response(StatusCode::OK, answer.to_string().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_has_twelve_to_twenty_eight_whole_buckets() {
        for range in StatsRange::ALL {
            let (span, bucket) = range.spans();
            assert_eq!(span % bucket, 0, "{}", range.as_str());
            assert!((12..=28).contains(&(span / bucket)), "{}", range.as_str());
            assert_eq!(StatsRange::parse(range.as_str()), Some(range));
        }
        assert_eq!(StatsRange::parse("30d"), None);
    }

    #[test]
    fn cursors_read_back() {
        assert_eq!(parse_cursor("12.abc"), Some((12, "abc".to_owned())));
        for bad in ["", ".abc", "12.", "x.abc", "-1.abc", "1234567890123456789.a"] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }
}
