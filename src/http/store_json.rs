//! Store views as partners and operators read them: the one place the store's unix milliseconds
//! become RFC 3339 times and its enums their labels (serialisation only at the edge).
//!
//! The field names, their order and which are left out when empty are the API's (the OpenAPI
//! documents' `RecordView`, `DeliveryView` and the admin deliveries); a test pins them.

use serde::Serialize;

use crate::store::{
    AttemptView, DeliveryAdminView, DeliveryView, ErrorClass, RecordFound, RecordView, ReplayResult, StatsBucket,
};

/// A time as the APIs write it: RFC 3339 in UTC, to the millisecond.
pub fn time(ms: i64) -> String {
    crate::clock::rfc3339_ms(ms)
}

#[derive(Serialize)]
struct RecordJson<'a> {
    record_id: &'a str,
    record_type: &'a str,
    schema_version: &'a str,
    received_at: String,
    status: &'static str,
    /// Every delivery delivered; `completed_at` says when the last one was (null until then).
    complete: bool,
    completed_at: Option<String>,
    deliveries: Vec<DeliveryJson<'a>>,
}

#[derive(Serialize)]
struct DeliveryJson<'a> {
    recipient: &'a str,
    agreement: &'a str,
    status: &'static str,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<&'a str>,
}

/// A record and its deliveries, as `GET /v1/records/{record_id}` and each item of
/// `GET /v1/records` show them to the sender.
pub fn record(view: &RecordView) -> impl Serialize + '_ {
    RecordJson {
        record_id: &view.record_id,
        record_type: &view.record_type,
        schema_version: &view.schema_version,
        received_at: time(view.received_at),
        status: view.status.as_str(),
        complete: view.status.is_complete(),
        completed_at: view.completed_at.map(time),
        deliveries: view.deliveries.iter().map(delivery).collect(),
    }
}

fn delivery(view: &DeliveryView) -> DeliveryJson<'_> {
    DeliveryJson {
        recipient: &view.recipient,
        agreement: &view.agreement,
        status: view.status.as_str(),
        attempts: view.attempts,
        last_attempt_at: view.last_attempt_at.map(time),
        delivered_at: view.delivered_at.map(time),
        next_attempt_at: view.next_attempt_at.map(time),
        last_error: view.last_error.as_deref(),
    }
}

#[derive(Serialize)]
struct AdminDeliveryJson<'a> {
    id: i64,
    record_id: &'a str,
    sender: &'a str,
    record_type: &'a str,
    recipient: &'a str,
    agreement: &'a str,
    status: &'static str,
    attempts: u32,
    replays: u32,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<&'a str>,
    body_kept: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<String>,
}

/// A delivery as `GET /admin/v1/deliveries` shows it to operators (no body).
pub fn admin_delivery(view: &DeliveryAdminView) -> impl Serialize + '_ {
    AdminDeliveryJson {
        id: view.id,
        record_id: &view.record_id,
        sender: &view.sender,
        record_type: &view.record_type,
        recipient: &view.recipient,
        agreement: &view.agreement,
        status: view.status.as_str(),
        attempts: view.attempts,
        replays: view.replays,
        created_at: time(view.created_at),
        last_attempt_at: view.last_attempt_at.map(time),
        last_status: view.last_status,
        last_error: view.last_error.as_deref(),
        body_kept: view.body_kept,
        next_attempt_at: view.next_attempt_at.map(time),
    }
}

#[derive(Serialize)]
struct FoundJson<'a> {
    record_id: &'a str,
    sender: &'a str,
    record_type: &'a str,
    schema_version: &'a str,
    received_at: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<&'a str>,
    body_kept: bool,
    audit_seq: i64,
    deliveries: Vec<FoundDeliveryJson<'a>>,
}

#[derive(Serialize)]
struct FoundDeliveryJson<'a> {
    recipient: &'a str,
    agreement: &'a str,
    status: &'static str,
}

/// A record as `GET /admin/v1/records` finds it (metadata only, never a value).
pub fn found(view: &RecordFound) -> impl Serialize + '_ {
    FoundJson {
        record_id: &view.record_id,
        sender: &view.sender,
        record_type: &view.record_type,
        schema_version: &view.schema_version,
        received_at: time(view.received_at),
        status: view.status.as_str(),
        idempotency_key: view.idempotency_key.as_deref(),
        body_kept: view.body_kept,
        audit_seq: view.audit_seq,
        deliveries: (view.deliveries.iter())
            .map(|(recipient, agreement, status)| FoundDeliveryJson { recipient, agreement, status: status.as_str() })
            .collect(),
    }
}

#[derive(Serialize)]
struct AttemptJson {
    attempt: u32,
    at: String,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<String>,
}

/// One attempt of a delivery's timeline (`GET /admin/v1/records/{record_id}`).
pub fn attempt(view: &AttemptView) -> impl Serialize + use<> {
    AttemptJson {
        attempt: view.attempt,
        at: time(view.at),
        outcome: view.outcome.as_str(),
        status: view.status,
        latency_ms: view.latency_ms,
        error_class: view.error_class.map(ErrorClass::as_str),
        next_attempt_at: view.next_attempt_at.map(time),
    }
}

#[derive(Serialize)]
struct BucketJson {
    start: String,
    accepted: i64,
    delivered: i64,
    retried: i64,
    dead: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_avg_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_max_ms: Option<i64>,
}

/// One bucket of `GET /admin/v1/stats`.
pub fn bucket(b: &StatsBucket) -> impl Serialize + use<> {
    let measured = b.latency_count > 0;
    BucketJson {
        start: time(b.start),
        accepted: b.accepted,
        delivered: b.delivered,
        retried: b.retried,
        dead: b.dead,
        latency_avg_ms: measured.then(|| b.latency_sum_ms / b.latency_count),
        latency_max_ms: measured.then_some(b.latency_max_ms),
    }
}

#[derive(Serialize)]
struct ReplayJson<'a> {
    id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agreement: Option<&'a str>,
    outcome: &'static str,
}

/// What became of one delivery asked to be replayed (`POST /admin/v1/deliveries/.../replay`).
pub fn replay(result: &ReplayResult) -> impl Serialize + '_ {
    ReplayJson {
        id: result.id,
        recipient: result.recipient.as_deref(),
        agreement: result.agreement.as_deref(),
        outcome: result.outcome.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DeliveryStatus, RecordState, ReplayOutcome};

    /// The exact JSON partners and operators have always read: names, order, times, labels, and
    /// absent (not null) fields when there is nothing to say.
    #[test]
    fn store_views_keep_their_json_shape() {
        let at = 1_795_000_000_123;
        let view = RecordView {
            record_id: "r1".into(),
            record_type: "birth-registration".into(),
            schema_version: "1.1".into(),
            received_at: at,
            status: RecordState::Pending,
            completed_at: None,
            deliveries: vec![
                DeliveryView {
                    recipient: "a".into(),
                    agreement: "g".into(),
                    status: DeliveryStatus::Retrying,
                    attempts: 2,
                    last_attempt_at: Some(at + 1),
                    delivered_at: None,
                    next_attempt_at: Some(at + 60_000),
                    last_error: Some("HTTP 503".into()),
                },
                DeliveryView {
                    recipient: "b".into(),
                    agreement: "g".into(),
                    status: DeliveryStatus::Delivered,
                    attempts: 1,
                    last_attempt_at: Some(at + 2),
                    delivered_at: Some(at + 2),
                    next_attempt_at: None,
                    last_error: None,
                },
            ],
        };
        assert_eq!(
            serde_json::to_string(&record(&view)).unwrap(),
            r#"{"record_id":"r1","record_type":"birth-registration","schema_version":"1.1","received_at":"2026-11-18T11:06:40.123Z","status":"pending","complete":false,"completed_at":null,"deliveries":[{"recipient":"a","agreement":"g","status":"retrying","attempts":2,"last_attempt_at":"2026-11-18T11:06:40.124Z","next_attempt_at":"2026-11-18T11:07:40.123Z","last_error":"HTTP 503"},{"recipient":"b","agreement":"g","status":"delivered","attempts":1,"last_attempt_at":"2026-11-18T11:06:40.125Z","delivered_at":"2026-11-18T11:06:40.125Z"}]}"#
        );
        // A complete record says when its last delivery arrived.
        let complete =
            RecordView { status: RecordState::Delivered, completed_at: Some(at + 2), deliveries: Vec::new(), ..view };
        assert_eq!(
            serde_json::to_string(&record(&complete)).unwrap(),
            r#"{"record_id":"r1","record_type":"birth-registration","schema_version":"1.1","received_at":"2026-11-18T11:06:40.123Z","status":"delivered","complete":true,"completed_at":"2026-11-18T11:06:40.125Z","deliveries":[]}"#
        );
        let admin = DeliveryAdminView {
            id: 7,
            record_id: "r1".into(),
            sender: "s".into(),
            record_type: "birth-registration".into(),
            recipient: "a".into(),
            agreement: "g".into(),
            status: DeliveryStatus::Dead,
            attempts: 3,
            replays: 1,
            created_at: at,
            last_attempt_at: Some(at + 1),
            last_status: Some(400),
            last_error: Some("HTTP 400".into()),
            body_kept: false,
            next_attempt_at: None,
        };
        assert_eq!(
            serde_json::to_string(&admin_delivery(&admin)).unwrap(),
            r#"{"id":7,"record_id":"r1","sender":"s","record_type":"birth-registration","recipient":"a","agreement":"g","status":"dead","attempts":3,"replays":1,"created_at":"2026-11-18T11:06:40.123Z","last_attempt_at":"2026-11-18T11:06:40.124Z","last_status":400,"last_error":"HTTP 400","body_kept":false}"#
        );
        let queued = DeliveryAdminView { last_attempt_at: None, last_status: None, last_error: None, ..admin };
        assert_eq!(
            serde_json::to_string(&admin_delivery(&queued)).unwrap(),
            r#"{"id":7,"record_id":"r1","sender":"s","record_type":"birth-registration","recipient":"a","agreement":"g","status":"dead","attempts":3,"replays":1,"created_at":"2026-11-18T11:06:40.123Z","body_kept":false}"#
        );
        let replayed = ReplayResult {
            id: 7,
            recipient: Some("a".into()),
            agreement: Some("g".into()),
            outcome: ReplayOutcome::BodyPurged,
        };
        let missing = ReplayResult { id: 8, recipient: None, agreement: None, outcome: ReplayOutcome::NotFound };
        assert_eq!(
            serde_json::to_string(&[replay(&replayed), replay(&missing)]).unwrap(),
            r#"[{"id":7,"recipient":"a","agreement":"g","outcome":"body_purged"},{"id":8,"outcome":"not_found"}]"#
        );
    }
}
