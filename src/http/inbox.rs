//! A pull recipient's mailbox over the partner API: `GET /v1/inbox` takes deliveries (waiting
//! for some if asked), `POST /v1/inbox/ack` acknowledges them and `POST /v1/inbox/nack` refuses
//! them (a failed attempt, retried with the push retry policy).
//!
//! Only a partner whose `[partner.delivery]` says `mode = "pull"` has a mailbox; anyone else gets
//! 404, and a recipient only ever sees its own deliveries. Each delivery comes with what a push
//! sends in its headers (its signature as `signature`) and the projected body exactly as stored
//! at acceptance, embedded as is.
//! Deliveries taken are leased to the call that took them; a settlement names that lease, and one
//! naming a delivery no longer held under it is refused whole (409) and changes nothing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::json_response;
use super::records::query_count;
use super::state::State;
use super::store_json::time;
use crate::auth::AuthenticatedPartner;
use crate::config::Config;
use crate::delivery::batch::write_delivery;
use crate::delivery::mailbox::{InboxError, Mailbox, Verdict};
use crate::server::RequestBody;
use crate::store::AttemptResult;
use crate::telemetry::events::{DeliveryAttempted, MailboxTaken};

/// How many deliveries `GET /v1/inbox` takes when the caller names no limit.
const DEFAULT_LIMIT: usize = 100;

/// The caller's mailbox, or 404: it is not a pull recipient.
fn mailbox(state: &State, partner: &AuthenticatedPartner) -> Result<Arc<Mailbox>, ApiError> {
    state.dispatcher.mailboxes.get(&partner.id).ok_or(ApiError::NoMailbox)
}

impl From<InboxError> for ApiError {
    fn from(e: InboxError) -> Self {
        match e {
            InboxError::Busy(waiting) => ApiError::InboxBusy { waiting },
            InboxError::NotHeld(ids) => ApiError::NotLeased { ids },
            InboxError::Store(e) => ApiError::StoreUnavailable(e.to_string()),
        }
    }
}

/// `GET /v1/inbox?limit=N&wait=S`: up to N deliveries, waiting up to S seconds for some.
pub(super) async fn take(
    state: &State,
    config: &Config,
    partner: &AuthenticatedPartner,
    req: &Request<RequestBody>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let mailbox = mailbox(state, partner)?;
    let inbox = &config.settings.delivery.inbox;
    if req.method() == http::Method::HEAD {
        // HEAD takes nothing: a delivery leased to a call that reads no body would only wait out
        // its lease.
        return Ok(json_response(StatusCode::OK, br#"{"lease":null,"deliveries":[]}"#.to_vec()));
    }
    let query = req.uri().query().unwrap_or("");
    let limit = query_count(query, "limit", 1..=inbox.max_batch as u64)?
        .map_or(DEFAULT_LIMIT.min(inbox.max_batch), |n| n as usize);
    let wait = Duration::from_secs(query_count(query, "wait", 0..=inbox.max_wait.as_secs())?.unwrap_or(0));
    let poll = config.settings.delivery.poll_interval;
    let taken = mailbox.take(state.store.as_ref(), limit, wait, inbox.lease, poll).await?;
    MailboxTaken { recipient: &mailbox.id, deliveries: taken.deliveries.len() }.emit(&state.metrics);
    let lease = (!taken.deliveries.is_empty())
        .then(|| json!({"id": taken.lease, "expires_at": time(taken.lease_until), "seconds": inbox.lease.as_secs()}));
    let mut body = serde_json::to_vec(&json!({ "lease": lease })).unwrap_or_default();
    // `{"lease":…}` then the deliveries, each body spliced in as stored.
    body.pop();
    body.extend_from_slice(b",\"deliveries\":[");
    let signer = config.settings.delivery.sign.then_some(&state.trail.notary);
    for (i, d) in taken.deliveries.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        let signature = signer.map(|notary| crate::delivery::signature::sign_delivery(&notary.key, d));
        write_delivery(d, signature.as_deref(), d.traceparent.as_deref(), &mut body);
    }
    body.extend_from_slice(b"]}");
    Ok(json_response(StatusCode::OK, body))
}

/// A settlement as posted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettlementBody {
    lease: String,
    /// Read as JSON numbers: an integer may be written `42` or `42.0`, as JSON Schema's
    /// `integer` allows.
    deliveries: Vec<serde_json::Number>,
    /// For `nack`: a short code, never a record value.
    #[serde(default)]
    reason: Option<String>,
}

/// The largest delivery id a settlement may name: the largest integer a JSON number holds exactly
/// everywhere (2^53 - 1), as the OpenAPI document says.
const MAX_DELIVERY_ID: i64 = (1 << 53) - 1;

/// A delivery id as written in a settlement: a whole number from 1 to [`MAX_DELIVERY_ID`].
fn delivery_id(n: &serde_json::Number) -> Option<i64> {
    let id = match n.as_i64() {
        Some(id) => id,
        None => n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= MAX_DELIVERY_ID as f64)? as i64,
    };
    (1..=MAX_DELIVERY_ID).contains(&id).then_some(id)
}

/// Whether `reason` is a short code: 1 to 64 of `a-z`, `0-9`, `-`, `_`, `.`.
fn is_code(reason: &str) -> bool {
    (1..=64).contains(&reason.len())
        && reason.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// `POST /v1/inbox/ack` and `POST /v1/inbox/nack`.
pub(super) async fn settle(
    state: &State,
    config: &Config,
    partner: &AuthenticatedPartner,
    req: Request<RequestBody>,
    acknowledge: bool,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let mailbox = mailbox(state, partner)?;
    super::intake::check_media_type(req.headers())?;
    let bytes = super::intake::read_body(config, req).await?;
    let value = crate::json::parse_strict(&bytes, config.settings.limits.max_depth).map_err(ApiError::Malformed)?;
    let body: SettlementBody =
        serde_json::from_value(value).map_err(|_| ApiError::InvalidSettlement { field: "body" })?;
    let max = config.settings.delivery.inbox.max_batch;
    if body.lease.is_empty() || body.lease.chars().count() > 200 {
        return Err(ApiError::InvalidSettlement { field: "lease" });
    }
    let ids: Option<Vec<i64>> = body.deliveries.iter().map(delivery_id).collect();
    let ids = match ids {
        Some(ids) if !ids.is_empty() && ids.len() <= max => ids,
        _ => return Err(ApiError::InvalidSettlement { field: "deliveries" }),
    };
    let verdict = match (acknowledge, body.reason) {
        (true, None) => Verdict::Ack,
        (false, Some(reason)) if is_code(&reason) => Verdict::Nack { reason },
        _ => return Err(ApiError::InvalidSettlement { field: "reason" }),
    };
    let backoff = config.settings.delivery.backoff();
    let updates = mailbox.settle(state.store.as_ref(), &backoff, body.lease, ids, verdict).await?;
    let mut settled = Vec::with_capacity(updates.len());
    for (attempt, u) in &updates {
        let (outcome, status, error) = crate::delivery::summary(&u.result);
        DeliveryAttempted {
            delivery_id: u.delivery_id,
            record_id: &u.record_id,
            recipient: &u.recipient,
            agreement: &u.agreement,
            attempt: *attempt,
            outcome,
            status,
            error,
            duration: None,
        }
        .emit(&state.metrics);
        let next = match &u.result {
            AttemptResult::Retry { next_attempt_at, .. } => Some(time(*next_attempt_at)),
            _ => None,
        };
        settled
            .push(json!({"delivery_id": u.delivery_id, "status": u.effect().status.as_str(), "next_attempt_at": next}));
    }
    // A refusal may make a delivery due again soon: the callers waiting will see it then.
    Ok(json_response(StatusCode::OK, json!({ "settled": settled }).to_string().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_ids_are_whole_numbers_as_json_schema_reads_them() {
        let id = |text: &str| delivery_id(&serde_json::from_str(text).unwrap());
        assert_eq!(id("42"), Some(42));
        assert_eq!(id("42.0"), Some(42), "an integer written with a fraction of zero");
        assert_eq!(id("9007199254740991"), Some(MAX_DELIVERY_ID));
        for refused in ["0", "-3", "1.5", "9007199254740992", "1e300"] {
            assert_eq!(id(refused), None, "{refused}");
        }
    }

    #[test]
    fn a_reason_is_a_short_code() {
        assert!(is_code("downstream-unavailable") && is_code("v1.2_x"));
        for refused in ["", "Jane Doe", "UPPER", &"x".repeat(65)] {
            assert!(!is_code(refused), "{refused}");
        }
    }
}
