//! Request/response: `POST /v1/requests/{type}` for `mode = "request"` agreements.
//!
//! The request is checked exactly like a record (same table, same order), projected for the one
//! responder, and sent synchronously. The responder's 2xx answer is validated against the
//! response schema and projected with the agreement's `response_fields` before it is returned.
//! Nothing of a bad answer is ever echoed: a failing answer becomes 502 `upstream-invalid`, a
//! non-2xx or a connection failure 502 `upstream-error` (with the status), a timeout 504, an
//! open breaker 503 with `Retry-After`. Both sides are audited, as digests.

use crate::server::RequestBody;
use bytes::Bytes;
use http::{Request, StatusCode};
use time::OffsetDateTime;

use super::error::ApiError;
use super::intake::{Intake, intake};
use super::json_response;
use super::outcome::{Call, Handled, Outcome};
use super::state::State;
use crate::audit::{AuditEvent, kind};
use crate::auth::AuthenticatedPartner;
use crate::config::Config;
use crate::delivery::breaker::Admission;
use crate::delivery::client::{CallOutcome, Envelope};
use crate::policy::Mode;
use crate::telemetry::trace::{Hop, HopKind};
use tracing::Instrument;

/// How a request ended, as written in its audit entry.
fn audit_outcome(result: &Result<Bytes, ApiError>) -> &'static str {
    match result {
        Ok(_) => "answered",
        Err(ApiError::UpstreamInvalid) => "upstream_invalid",
        Err(ApiError::UpstreamError { .. }) => "upstream_error",
        Err(ApiError::UpstreamTimeout) => "upstream_timeout",
        Err(_) => "upstream_unavailable",
    }
}

/// `POST /v1/requests/{type}`: checks 5 to 13, then the call to the responder, its answer
/// checked and projected, and both sides audited.
pub(super) async fn handle(
    state: &State,
    config: &Config,
    partner: &AuthenticatedPartner,
    req: Request<RequestBody>,
    record_type: &str,
    call: &Call<'_>,
) -> Handled {
    let Intake { route, version, value, .. } =
        intake(config, partner, req, record_type, Mode::Request, OffsetDateTime::now_utc()).await?;

    let (agreement, responder) = route.responder(version).ok_or(ApiError::NoAgreement)?;
    let recipient =
        state.dispatcher.recipients.get(&responder.partner).ok_or(ApiError::UpstreamError { status: None })?;
    // A responder is a push recipient (the configuration checks it).
    let client = recipient.http().ok_or(ApiError::UpstreamError { status: None })?;
    let projected = Bytes::from(responder.fields.project_canonical(&value));
    // Not held across the responder's call and the audit commit (see `intake::submit`).
    drop(value);
    // The request is audited under this request's id, which its answer carries.
    let request_id = call.request_id.to_owned();

    let admission = recipient.breaker.admit();
    let result = if let Admission::Wait(_) = admission {
        Err(ApiError::BreakerOpen { retry_after_secs: recipient.breaker.retry_after_secs() })
    } else {
        // The call to the responder is a hop of the request's trace.
        let hop = Hop::start("request", HopKind::Client, Some(call.trace));
        let tp = hop.context.traceparent();
        let key = format!("{request_id}.{}", responder.partner);
        let envelope = Envelope {
            record_id: &request_id,
            sender: &partner.id,
            agreement: &agreement.id,
            record_type,
            schema_version: &version.to_string(),
            idempotency_key: &key,
            traceparent: Some(&tp),
            tracestate: hop.context.state.as_deref(),
            // A synchronous call is not a delivery: nothing stored, no audit seq to sign.
            signature: None,
        };
        let (call, _) = client
            .call(&envelope, projected.clone(), config.settings.limits.max_body_bytes)
            .instrument(hop.span.clone())
            .await;
        let healthy = matches!(&call, CallOutcome::Answered { status, .. } if !matches!(status, 408 | 425 | 429 | 500..=599))
            || matches!(&call, CallOutcome::TooLarge { .. });
        recipient.breaker.record(healthy);
        answer(config, record_type, version, agreement.response_fields.as_ref(), call)
    };

    let now = crate::clock::now_ms();
    let mut forwarded = AuditEvent::new(now, kind::REQUEST_ANSWERED, &partner.id, audit_outcome(&result));
    forwarded.record_id = Some(request_id.clone());
    forwarded.agreement = Some(agreement.id.to_string());
    forwarded.recipient = Some(responder.partner.to_string());
    forwarded.body_digest = Some(state.trail.digest_key.digest(&projected));
    forwarded.reason = Some(match &result {
        Ok(answer) => format!("response digest {}", crate::digest::to_hex(&state.trail.digest_key.digest(answer))),
        Err(ApiError::UpstreamError { status: Some(s) }) => format!("HTTP {s}"),
        Err(e) => e.to_string(),
    });
    if let Err(e) = state.store.append_audit(vec![forwarded]).await {
        // Evidence first: an answer that cannot be audited is not given.
        tracing::error!(message = "Auditing a request failed; answer withheld.", error = %e);
        return Err(ApiError::StoreUnavailable(e.to_string()));
    }
    let answer = result?;
    Ok((json_response(StatusCode::OK, answer.to_vec()), Outcome::Answered { request_id }))
}

/// Turns the responder's answer into what the sender receives.
fn answer(
    config: &Config,
    record_type: &str,
    version: crate::schema::Version,
    response_fields: Option<&crate::policy::FieldList>,
    call: CallOutcome,
) -> Result<Bytes, ApiError> {
    let body = match call {
        CallOutcome::Answered { status: 200..=299, body } => body,
        CallOutcome::Answered { status, .. } | CallOutcome::TooLarge { status } if !(200..=299).contains(&status) => {
            return Err(ApiError::UpstreamError { status: Some(status) });
        }
        CallOutcome::TooLarge { .. } => return Err(ApiError::UpstreamInvalid),
        CallOutcome::Answered { .. } => return Err(ApiError::UpstreamInvalid),
        CallOutcome::TimedOut => return Err(ApiError::UpstreamTimeout),
        CallOutcome::Unreachable { .. } => return Err(ApiError::UpstreamError { status: None }),
    };
    let schema = config
        .built
        .catalog
        .record_type(record_type)
        .and_then(|t| t.version(version))
        .and_then(|v| v.response.as_ref())
        .ok_or(ApiError::UpstreamInvalid)?;
    // The answer is read as a partner's record is: numbers as written, every check.
    let checked = schema.check_body(&body, config.settings.limits.max_depth).map_err(|_| ApiError::UpstreamInvalid)?;
    if !checked.violations.is_empty() {
        return Err(ApiError::UpstreamInvalid);
    }
    let fields = response_fields.ok_or(ApiError::UpstreamInvalid)?;
    Ok(Bytes::from(fields.project_canonical(&checked.value)))
}
