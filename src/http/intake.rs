//! Intake: checks 5 to 14 of the design's table, then the record stored with its deliveries.
//!
//! `POST /v1/records/{type}` stores a record and answers its signed receipt;
//! `POST /v1/validate/{type}` runs the same checks as a dry run. `intake()` is shared with
//! request/response ([`super::requests`]), so both are checked by the same code in the same
//! order, and the first failure answers.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tracing::Instrument;

use super::error::{ApiError, HeaderFault};
use super::json_response;
use super::outcome::{Handled, Outcome};
use super::state::State;
use crate::audit::receipt::{Receipt, ReceiptDelivery};
use crate::auth::AuthenticatedPartner;
use crate::config::Config;
use crate::policy::{self, AgreementRecipient, Mode, Route, RouteError, Share};
use crate::schema::{Version, VersionError, Violation, ViolationDetail};
use crate::server::RequestBody;
use crate::store::{CommitOutcome, NewDelivery, NewRecord};
use crate::telemetry::trace::TraceContext;

/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;

/// Checks 5 to 7: agreements, their validity, the schema version.
fn route_and_version(
    config: &Config,
    sender: &str,
    record_type: &str,
    headers: &HeaderMap,
    now: OffsetDateTime,
) -> Result<(Route, Version), ApiError> {
    let route = policy::route(&config.built.agreements, sender, record_type, now).map_err(|e| match e {
        RouteError::NoAgreement => ApiError::NoAgreement,
        RouteError::NotInForce => ApiError::NotInForce,
    })?;
    let accepted = route.accepted_versions();
    let version = match single_header(headers, "schema-version", "Schema-Version")? {
        None => route.default_version().ok_or(ApiError::NoAgreement)?,
        Some(v) => match v.to_str().map(|v| v.trim().parse::<Version>()) {
            Ok(Ok(version)) if accepted.contains(&version) => version,
            Ok(Ok(_) | Err(VersionError::OutOfRange)) => return Err(ApiError::UnsupportedVersion { accepted }),
            Ok(Err(VersionError::Syntax)) | Err(_) => {
                return Err(ApiError::InvalidHeader { header: "Schema-Version", fault: HeaderFault::Malformed });
            }
        },
    };
    // The catalog holds every version an agreement accepts (checked at load).
    if config.built.catalog.record_type(record_type).and_then(|t| t.version(version)).is_none() {
        return Err(ApiError::UnsupportedVersion { accepted });
    }
    Ok((route, version))
}

/// Check 8: `application/json`, optionally `charset=utf-8`, and no `Content-Encoding`.
pub(super) fn check_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.contains_key(header::CONTENT_ENCODING) {
        return Err(ApiError::ContentEncoding);
    }
    let value =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).ok_or(ApiError::UnsupportedMediaType)?;
    let mut parts = value.split(';');
    if !parts.next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType);
    }
    for param in parts {
        let (name, val) = param.split_once('=').ok_or(ApiError::UnsupportedMediaType)?;
        let val = val.trim().trim_matches('"');
        if !(name.trim().eq_ignore_ascii_case("charset") && val.eq_ignore_ascii_case("utf-8")) {
            return Err(ApiError::UnsupportedMediaType);
        }
    }
    Ok(())
}

/// Checks 9 and 10: the body within its size limit and time.
pub(super) async fn read_body(config: &Config, req: Request<RequestBody>) -> Result<Bytes, ApiError> {
    let limit = config.settings.limits.max_body_bytes;
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge { limit });
    }
    let mut body = req.into_body();
    let mut buffer = BytesMut::with_capacity(declared.map_or(8192, |n| n as usize));
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| ApiError::BodyAborted)?;
            if let Ok(data) = frame.into_data() {
                if buffer.len() + data.len() > limit {
                    return Err(ApiError::TooLarge { limit });
                }
                buffer.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    tokio::time::timeout(config.settings.limits.body_timeout, read).await.map_err(|_| ApiError::BodyTimeout)??;
    Ok(buffer.freeze())
}

/// Checks 11 to 13: JSON, depth, schema.
fn parse_and_validate(config: &Config, record_type: &str, version: Version, body: &[u8]) -> Result<Value, ApiError> {
    let schema =
        config.built.catalog.record_type(record_type).and_then(|t| t.version(version)).ok_or(ApiError::NoAgreement)?;
    // Numbers are checked as written, from the body's text (see `schema`'s docs).
    let checked = schema.check_body(body, config.settings.limits.max_depth).map_err(|e| match e {
        crate::json::JsonError::TooDeep { limit } => ApiError::TooDeep { limit },
        other => ApiError::Malformed(other),
    })?;
    if !checked.violations.is_empty() {
        return Err(ApiError::Invalid { violations: checked.violations });
    }
    Ok(checked.value)
}

/// Check 13b: the record in each version a pinned recipient receives other than the one it was
/// sent in, translated by the declared translation and valid under that version's schema. A
/// translation that fails is the agreement's fault, not the sender's, and says so (422
/// `translation-failed`, with the pointers); nothing is stored.
fn translate(
    config: &Config,
    record_type: &str,
    sent: Version,
    value: &Value,
    shares: &[(Share, &AgreementRecipient)],
) -> Result<BTreeMap<Version, Value>, ApiError> {
    let mut translated = BTreeMap::new();
    for (share, recipient) in shares {
        let to = recipient.receives(sent);
        if to == sent || translated.contains_key(&to) {
            continue;
        }
        let catalog = &config.built.catalog;
        let failed = |mut violations: Vec<Violation>| {
            let total = violations.len();
            violations.truncate(crate::schema::LISTED_VIOLATIONS);
            ApiError::TranslationFailed { recipient: share.recipient.to_string(), from: sent, to, violations, total }
        };
        // `check` refuses a pinned recipient without its translation or schema: a configuration
        // that loaded has both.
        let (Some(translation), Some(target)) =
            (catalog.translation(record_type, sent, to), catalog.record_type(record_type).and_then(|t| t.version(to)))
        else {
            return Err(failed(Vec::new()));
        };
        let out = translation.apply(value).map_err(|e| {
            failed(vec![Violation {
                pointer: e.pointer,
                keyword: "translation",
                detail: ViolationDetail::Untranslatable,
            }])
        })?;
        let violations = target.validate(&out);
        if !violations.is_empty() {
            return Err(failed(violations));
        }
        translated.insert(to, out);
    }
    Ok(translated)
}

/// A record that passed checks 5 to 13.
pub(super) struct Intake {
    pub(super) route: Route,
    pub(super) version: Version,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    pub(super) value: Value,
}

/// Checks 5 to 13 for a record sent under an agreement of `mode`: agreements in force, the
/// schema version, the media type, the body within its limits, JSON, depth, schema.
pub(super) async fn intake(
    config: &Config,
    partner: &AuthenticatedPartner,
    req: Request<RequestBody>,
    record_type: &str,
    mode: Mode,
    now: OffsetDateTime,
) -> Result<Intake, ApiError> {
    let (route, version) = route_and_version(config, &partner.id, record_type, req.headers(), now)?;
    if route.mode() != mode {
        // Push and request agreements each have their own route; the other does not exist.
        return Err(ApiError::NoAgreement);
    }
    check_media_type(req.headers())?;
    let headers = req.headers().clone();
    let body = read_body(config, req).await?;
    let value = parse_and_validate(config, record_type, version, &body)?;
    Ok(Intake { route, version, headers, body, value })
}

/// The one value of header `name`, if sent; sent twice is refused, since which one counts would
/// be a guess. `display` is the header's name as the problem document spells it.
fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &str,
    display: &'static str,
) -> Result<Option<&'h HeaderValue>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::InvalidHeader { header: display, fault: HeaderFault::Repeated });
    }
    Ok(first)
}

/// Check 14 (first half): the key's shape, and only one key.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) =
        single_header(headers, "idempotency-key", "Idempotency-Key").map_err(|_| ApiError::InvalidIdempotencyKey)?
    else {
        return Ok(None);
    };
    let key = v.to_str().map_err(|_| ApiError::InvalidIdempotencyKey)?;
    if key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ApiError::InvalidIdempotencyKey);
    }
    Ok(Some(key.to_owned()))
}

/// `POST /v1/records/{type}`: checks 5 to 14, then the record and its deliveries stored in one
/// commit, and the signed receipt. `trace` is this request's hop, which the record keeps.
pub(super) async fn submit(
    state: &State,
    config: &Config,
    partner: &AuthenticatedPartner,
    req: Request<RequestBody>,
    record_type: &str,
    trace: &TraceContext,
) -> Handled {
    let now = OffsetDateTime::now_utc();
    let Intake { route, version, headers, body, value } =
        intake(config, partner, req, record_type, Mode::Push, now).await?;
    let key = idempotency_key(&headers)?;

    let record_id = uuid::Uuid::now_v7().to_string();
    let received_at = crate::clock::to_ms(now);
    // Who the record is about, digested from the validated record before any projection: every
    // recipient is in the access record of these subjects, whatever fields it receives.
    let subjects = subjects(state, config, record_type, version, &value);
    let shares: Vec<_> = route.shares(version).collect();
    let translated = translate(config, record_type, version, &value, &shares)?;
    let deliveries: Vec<NewDelivery> = shares
        .iter()
        .map(|(share, recipient)| {
            let receives = recipient.receives(version);
            let source = translated.get(&receives).unwrap_or(&value);
            let body = recipient.fields.project_canonical(source);
            NewDelivery {
                recipient: share.recipient.to_string(),
                agreement: share.agreement.to_string(),
                ordered: share.ordered,
                body_digest: state.trail.digest_key.digest(&body),
                body: Bytes::from(body),
                key_id: None,
                schema_version: (receives != version).then(|| receives.to_string()),
                terms: Some(recipient.terms.clone()),
                taker: None,
            }
        })
        .collect();
    // The parsed record is done with: let it go while its tree is still in the cache, not after
    // the commit's wait, when other requests have pushed it out (a 256 KB record's tree is a few
    // MiB), and so it is not held for the wait.
    drop(translated);
    drop(value);
    let receipt = Receipt {
        record_id: &record_id,
        record_type,
        schema_version: version.to_string(),
        sender: &partner.id,
        received_at: crate::clock::rfc3339_ms(received_at),
        deliveries: shares
            .iter()
            .map(|(s, _)| ReceiptDelivery { recipient: &s.recipient, agreement: &s.agreement, status: "queued" })
            .collect(),
    }
    .to_bytes();
    let audit_digest = state.trail.digest_key.digest(&body);
    let mut record = NewRecord {
        record_id: record_id.clone(),
        sender: partner.id.to_string(),
        record_type: record_type.to_owned(),
        schema_version: version.to_string(),
        received_at,
        // Only a reused idempotency key is compared against the original body.
        body_sha256: if key.is_some() { crate::digest::sha256(&body) } else { [0; 32] },
        audit_digest,
        body,
        idempotency_key: key,
        traceparent: Some(trace.traceparent()),
        tracestate: trace.state.clone(),
        deliveries,
        key_id: None,
        receipt: Bytes::from(receipt),
        subjects,
    };
    // Each delivery is offered, as it is stored, to its recipient's worker here, which may take
    // it at once instead of claiming it (an ordered recipient's worker chooses from the store).
    for d in &mut record.deliveries {
        d.taker = state.dispatcher.taker(&d.recipient, d.ordered, &d.body);
    }
    // A delivery with no taker is claimed: its recipient is woken once it is committed.
    let claimed: Vec<String> =
        record.deliveries.iter().filter(|d| d.taker.is_none()).map(|d| d.recipient.clone()).collect();
    let commit = crate::telemetry::trace::step("commit");
    let (receipt, stamp, inclusion, outcome) = match state.store.commit_record(record).instrument(commit).await {
        Ok(CommitOutcome::Accepted { receipt, stamp, inclusion, .. }) => {
            for recipient in &claimed {
                state.dispatcher.wake(recipient);
            }
            (receipt, stamp, inclusion, Outcome::Accepted { record_id })
        }
        Ok(CommitOutcome::Duplicate { receipt, stamp }) => {
            let record_id =
                serde_json::from_slice::<Value>(&receipt).ok().and_then(|r| r["record_id"].as_str().map(str::to_owned));
            // The original's place in its signed tree, rebuilt from the store, so the sender gets
            // the same receipt; a record committed before trees were signed has none.
            let inclusion = state.store.inclusion(stamp.seq).await.map_err(|e| {
                tracing::error!(message = "Reading a replayed receipt's tree failed.", sender = %partner.id, record_type, error = %e);
                ApiError::StoreUnavailable(e.to_string())
            })?;
            (receipt, stamp, inclusion, Outcome::Duplicate { record_id })
        }
        Ok(CommitOutcome::Conflict) => return Err(ApiError::IdempotencyConflict),
        Err(e) => {
            tracing::error!(message = "Store commit failed; record refused.", sender = %partner.id, record_type, error = %e);
            return Err(ApiError::StoreUnavailable(e.to_string()));
        }
    };
    // The proof is derived from the stored receipt and the entry, so a replay gets the same one.
    let replayed = matches!(outcome, Outcome::Duplicate { .. });
    // The signature (of the receipt, or of the tree its commit signed, which holds its leaf)
    // covers the stored receipt itself, so every field the sender reads is bound.
    let receipt = match &inclusion {
        // A replay's stored receipt is read again; a fresh one is as this request wrote it.
        Some(inclusion) if replayed => crate::audit::receipt::seal_in_tree(&receipt, stamp, &audit_digest, inclusion),
        Some(inclusion) => crate::audit::receipt::seal_issued_in_tree(&receipt, stamp, &audit_digest, inclusion),
        None => {
            // Signed one by one (format 2), at the time the original was received.
            let signed_at = if replayed {
                serde_json::from_slice::<Value>(&receipt)
                    .ok()
                    .and_then(|r| r["received_at"].as_str().and_then(crate::clock::parse_rfc3339_ms))
                    .unwrap_or(received_at)
            } else {
                received_at
            };
            state.trail.notary.sign_receipt(&receipt, &audit_digest, stamp, signed_at)
        }
    }
    .map_err(|e| ApiError::StoreUnavailable(format!("the stored receipt cannot be signed: {e}")))?;
    let location = outcome.record_id().map(|id| format!("/v1/records/{id}")).unwrap_or_default();
    let mut response = json_response(StatusCode::ACCEPTED, receipt);
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    add_deprecation(h, &route, version);
    Ok((response, outcome))
}

/// The digests of the record's subject identifiers (the values at the fields its schema marks
/// `x-passerelle-subject`), each once. The values never leave this function.
fn subjects(state: &State, config: &Config, record_type: &str, version: Version, record: &Value) -> Vec<[u8; 32]> {
    let Some(schema) = config.built.catalog.record_type(record_type).and_then(|t| t.version(version)) else {
        return Vec::new();
    };
    let mut digests: Vec<[u8; 32]> =
        schema.subject_values(record).into_iter().filter_map(|v| state.trail.subject_key.digest_value(v)).collect();
    digests.sort_unstable();
    digests.dedup();
    digests
}

fn add_deprecation(h: &mut HeaderMap, route: &Route, version: Version) {
    if let Some(sunset) = route.sunset(version) {
        // RFC 9745: the version is deprecated now; RFC 8594: it stops being accepted at `sunset`.
        if let Ok(v) = HeaderValue::from_str(&format!("@{}", OffsetDateTime::now_utc().unix_timestamp())) {
            h.insert("deprecation", v);
        }
        if let Ok(v) = HeaderValue::from_str(&crate::clock::http_date(sunset)) {
            h.insert("sunset", v);
        }
    }
}

/// `POST /v1/validate/{type}`: checks 5 to 13 as a dry run; nothing is stored or delivered.
pub(super) async fn validate(
    config: &Config,
    partner: &AuthenticatedPartner,
    req: Request<RequestBody>,
    record_type: &str,
) -> Handled {
    let (route, version) =
        route_and_version(config, &partner.id, record_type, req.headers(), OffsetDateTime::now_utc())?;
    check_media_type(req.headers())?;
    let body = read_body(config, req).await?;
    parse_and_validate(config, record_type, version, &body)?;
    let mut response = json_response(
        StatusCode::OK,
        json!({"valid": true, "record_type": record_type, "schema_version": version}).to_string().into_bytes(),
    );
    add_deprecation(response.headers_mut(), &route, version);
    Ok((response, Outcome::Validated))
}
