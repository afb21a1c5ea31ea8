//! The partner API: records in, status and discovery out.
//!
//! Checks run in the design's order and the first failure answers: route and method, then
//! credentials, then agreements, schema version, media type, body size and time, JSON, depth,
//! schema, idempotency, and finally the store. A rejected record is never stored and never
//! delivered.

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use crate::server::RequestBody;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::error::{ApiError, HeaderFault};
use super::i18n::Lang;
use super::json_response;
use super::routes::{Matched, ParameterShape, Route as HttpRoute, RouteTable};
use super::state::State;
use crate::audit::receipt::{Receipt, ReceiptDelivery};
use crate::auth::AuthenticatedPartner;
use crate::auth::ConnectionInfo;
use crate::config::Config;
use crate::policy::Mode;
use crate::policy::{self, Route, RouteError};
use crate::schema::{Version, VersionError};
use crate::store::{CommitOutcome, NewDelivery, NewRecord, RecordQuery, RecordState};
use crate::telemetry::RecordOutcome;
use crate::telemetry::events::{RecordCall, RequestServed};
use crate::telemetry::trace::{Hop, HopKind, TraceContext};
use tracing::Instrument;

/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;
/// Most records one page of `GET /v1/records` returns.
const MAX_PAGE: usize = 200;

/// The partner API's operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Submit,
    Request,
    Validate,
    RecordStatus,
    ListRecords,
    Schemas,
    Schema,
    Agreements,
    OpenApi,
}

impl Operation {
    /// The metric label of the route (a fixed set, never the raw path).
    fn label(self) -> &'static str {
        match self {
            Operation::Submit => "submit",
            Operation::Request => "request",
            Operation::Validate => "validate",
            Operation::RecordStatus => "record",
            Operation::ListRecords => "records",
            Operation::Schemas => "schemas",
            Operation::Schema => "schema",
            Operation::Agreements => "agreements",
            Operation::OpenApi => "openapi",
        }
    }
}

/// Every route of the partner API; `HEAD` goes wherever `GET` does. The OpenAPI document
/// ([`super::openapi`]) describes exactly these, and a test holds the two together.
pub static ROUTES: [HttpRoute<Operation>; 9] = [
    HttpRoute { method: Method::POST, template: "/v1/records/{record_type}", operation: Operation::Submit },
    HttpRoute { method: Method::POST, template: "/v1/requests/{record_type}", operation: Operation::Request },
    HttpRoute { method: Method::POST, template: "/v1/validate/{record_type}", operation: Operation::Validate },
    HttpRoute { method: Method::GET, template: "/v1/records/{record_id}", operation: Operation::RecordStatus },
    HttpRoute { method: Method::GET, template: "/v1/records", operation: Operation::ListRecords },
    HttpRoute { method: Method::GET, template: "/v1/schemas", operation: Operation::Schemas },
    HttpRoute { method: Method::GET, template: "/v1/schemas/{record_type}/{version}", operation: Operation::Schema },
    HttpRoute { method: Method::GET, template: "/v1/agreements", operation: Operation::Agreements },
    HttpRoute { method: Method::GET, template: "/v1/openapi.json", operation: Operation::OpenApi },
];

static TABLE: LazyLock<RouteTable<Operation>> = LazyLock::new(|| RouteTable::new(&ROUTES));

/// A record id is a UUID; a record type never is (`check` refuses a type named like one), so
/// `/v1/records/{x}` is a record type to POST to or a record to GET, never both.
struct PartnerParameters;

impl ParameterShape for PartnerParameters {
    fn accepts(name: &str, value: &str) -> bool {
        let uuid = uuid::Uuid::try_parse(value).is_ok();
        match name {
            "record_id" => uuid,
            "record_type" => !uuid,
            _ => true,
        }
    }
}

/// The route of a request, or the answer that it has none (404, or 405 with `Allow`).
fn find_route<'p>(method: &Method, path: &'p str) -> Result<Matched<'static, 'p, Operation>, ApiError> {
    Ok(TABLE.find::<PartnerParameters>(method, path)?)
}

/// Serves one partner API request.
pub async fn handle(state: Arc<State>, req: Request<RequestBody>, conn: Arc<ConnectionInfo>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    // The whole request runs under the configuration in force when it arrived.
    let config = state.config();
    let lang = Lang::from_accept_language(req.headers().get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()));
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let request_id = uuid::Uuid::now_v7().to_string();
    // This request is a hop of the caller's trace (or the first of a new one).
    let intake = Hop::start("intake", HopKind::Server, TraceContext::from_headers(req.headers()).as_ref());
    let mut outcome = Outcome::new(request_id.clone(), intake.context.clone());
    let found = check_head(&config, &req).and_then(|()| find_route(&method, &path));
    let template = found.as_ref().map_or("unknown", |r| r.route.template);
    let (label, result) = match found {
        Err(e) => (None, Err(e)),
        Ok(route) => {
            let operation = route.route.operation;
            let result =
                dispatch(&state, &config, &conn, req, &route, &mut outcome).instrument(intake.span.clone()).await;
            (Some(operation.label()), result)
        }
    };
    let (mut response, error) = match result {
        Ok(response) => (response, None),
        Err(e) => (e.to_response(lang, &path), Some(e)),
    };
    if method == Method::HEAD {
        *response.body_mut() = Full::new(Bytes::new());
    }
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("passerelle-request-id", id);
    }
    let status = response.status().as_u16();
    let sender = outcome.sender.as_deref().unwrap_or("unknown");
    let record = outcome.record_type.map(|record_type| RecordCall {
        sender,
        record_type: config.catalog.record_type(record_type).map_or("unknown", |t| &t.name),
        outcome: match &error {
            Some(e) => e.outcome(),
            None => outcome.success,
        },
        record_id: outcome.record_id.as_deref(),
        violations: match &error {
            Some(ApiError::Invalid { violations }) => violations.by_keyword(),
            _ => &[],
        },
    });
    // Rejected records (not dry runs) are audited in aggregate.
    if let (Some(e), Some("submit" | "request")) = (&error, label) {
        state.trail.rejections.count(sender, e.outcome(), crate::clock::now_ms());
    }
    let trace_id = intake.context.trace_id_hex();
    RequestServed {
        listener: "partner",
        method: method.as_str(),
        route: template,
        metric_route: Some(label.unwrap_or("unknown")),
        status,
        latency: started.elapsed(),
        peer: conn.peer,
        partner: outcome.sender.as_deref(),
        request_id: &request_id,
        trace_id: Some(&trace_id),
        record,
    }
    .emit(&state.metrics);
    response
}

/// Checks 3 and 4 (credentials, rate limit), then the operation of `route`.
async fn dispatch<'r>(
    state: &State,
    config: &Config,
    conn: &ConnectionInfo,
    req: Request<RequestBody>,
    route: &Matched<'static, 'r, Operation>,
    outcome: &mut Outcome<'r>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let operation = route.route.operation;
    let record_type = route.param("record_type");
    if let Operation::Submit | Operation::Request | Operation::Validate = operation {
        outcome.record_type = Some(record_type);
    }
    if operation == Operation::Validate {
        outcome.success = RecordOutcome::Validated;
    }
    let partner = authenticate(config, conn, req.headers())?;
    outcome.sender = Some(partner.id.to_string());
    within_rate_limit(state, config, &partner)?;
    let p = &partner;
    match operation {
        Operation::Submit => submit(state, config, p, req, record_type, outcome).await,
        Operation::Request => crate::http::requests::handle(state, config, p, req, record_type, outcome).await,
        Operation::Validate => validate(config, p, req, record_type).await,
        Operation::RecordStatus => record_status(state, p, route.param("record_id")).await,
        Operation::ListRecords => list_records(state, p, &req).await,
        Operation::Schemas => schemas(config, p),
        Operation::Schema => schema(config, p, record_type, route.param("version")),
        Operation::Agreements => agreements(config, p),
        Operation::OpenApi => {
            Ok(json_response(StatusCode::OK, super::openapi::partner_document(config, &p.id).to_string().into_bytes()))
        }
    }
}

/// What the request's line and the record metrics need to know about a call, filled in as
/// checks pass.
pub(super) struct Outcome<'a> {
    /// This request's id, on its answer (`Passerelle-Request-Id`) and in its log line.
    pub(super) request_id: String,
    /// This request's hop of its trace: what the record stores and its deliveries continue.
    pub(super) trace: TraceContext,
    pub(super) record_type: Option<&'a str>,
    pub(super) sender: Option<String>,
    pub(super) record_id: Option<String>,
    /// The outcome if the call succeeds: a dry run that passes is `validated`, a record stored
    /// is `accepted`, an idempotent replay `duplicate`.
    pub(super) success: RecordOutcome,
}

impl Outcome<'_> {
    fn new(request_id: String, trace: TraceContext) -> Self {
        Outcome {
            request_id,
            trace,
            record_type: None,
            sender: None,
            record_id: None,
            success: RecordOutcome::Accepted,
        }
    }
}

/// Check 1: the request line and headers within the configured size, and a `Host` where HTTP/1.1
/// requires one.
fn check_head(config: &Config, req: &Request<RequestBody>) -> Result<(), ApiError> {
    let size =
        req.uri().to_string().len() + req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>();
    if size > config.limits.max_header_bytes {
        return Err(ApiError::HeadersTooLarge { limit: config.limits.max_header_bytes });
    }
    super::check_host(req)
}

/// Check 3: who is calling.
fn authenticate(config: &Config, conn: &ConnectionInfo, headers: &HeaderMap) -> Result<AuthenticatedPartner, ApiError> {
    config.credentials.authenticate(conn, headers).map_err(|e| {
        tracing::debug!(message = "Authentication refused.", reason = %e, peer = %conn.peer);
        ApiError::Unauthenticated
    })
}

/// Check 4: the caller's rate limit.
fn within_rate_limit(state: &State, config: &Config, partner: &AuthenticatedPartner) -> Result<(), ApiError> {
    match config.partner(&partner.id).and_then(|p| p.rate_limit.as_ref()) {
        Some(limit) => state
            .rate_limiter
            .take(&partner.id, limit)
            .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs }),
        None => Ok(()),
    }
}

/// Checks 5 to 7: agreements, their validity, the schema version.
fn route_and_version(
    config: &Config,
    sender: &str,
    record_type: &str,
    headers: &HeaderMap,
    now: OffsetDateTime,
) -> Result<(Route, Version), ApiError> {
    let route = policy::route(&config.agreements, sender, record_type, now).map_err(|e| match e {
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
    if config.catalog.record_type(record_type).and_then(|t| t.version(version)).is_none() {
        return Err(ApiError::UnsupportedVersion { accepted });
    }
    Ok((route, version))
}

/// Check 8: `application/json`, optionally `charset=utf-8`, and no `Content-Encoding`.
fn check_media_type(headers: &HeaderMap) -> Result<(), ApiError> {
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
async fn read_body(config: &Config, req: Request<RequestBody>) -> Result<Bytes, ApiError> {
    let limit = config.limits.max_body_bytes;
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
    tokio::time::timeout(config.limits.body_timeout, read).await.map_err(|_| ApiError::BodyTimeout)??;
    Ok(buffer.freeze())
}

/// Checks 11 to 13: JSON, depth, schema.
fn parse_and_validate(config: &Config, record_type: &str, version: Version, body: &[u8]) -> Result<Value, ApiError> {
    let schema =
        config.catalog.record_type(record_type).and_then(|t| t.version(version)).ok_or(ApiError::NoAgreement)?;
    // Numbers are checked as written, from the body's text (see `schema`'s docs).
    let checked = schema.check_body(body, config.limits.max_depth).map_err(|e| match e {
        crate::json::JsonError::TooDeep { limit } => ApiError::TooDeep { limit },
        other => ApiError::Malformed(other),
    })?;
    if !checked.violations.is_empty() {
        return Err(ApiError::Invalid { violations: checked.violations });
    }
    Ok(checked.value)
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

async fn submit(
    state: &State,
    config: &Config,
    partner: &AuthenticatedPartner,
    req: Request<RequestBody>,
    record_type: &str,
    outcome: &mut Outcome<'_>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let now = OffsetDateTime::now_utc();
    let Intake { route, version, headers, body, value } =
        intake(config, partner, req, record_type, Mode::Push, now).await?;
    let key = idempotency_key(&headers)?;

    let record_id = uuid::Uuid::now_v7().to_string();
    let received_at = crate::clock::to_ms(now);
    let shares: Vec<_> = route.shares(version).collect();
    let deliveries: Vec<NewDelivery> = shares
        .iter()
        .map(|(share, recipient)| {
            let body = recipient.fields.project_canonical(&value);
            NewDelivery {
                recipient: share.recipient.to_string(),
                agreement: share.agreement.to_string(),
                ordered: share.ordered,
                body_digest: state.trail.digest_key.digest(&body),
                body: Bytes::from(body),
            }
        })
        .collect();
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
    let record = NewRecord {
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
        traceparent: Some(outcome.trace.traceparent()),
        tracestate: outcome.trace.state.clone(),
        deliveries,
        receipt: Bytes::from(receipt),
    };
    let commit = crate::telemetry::trace::step("commit");
    let (receipt, stamp, replayed) = match state.store.commit_record(record).instrument(commit).await {
        Ok(CommitOutcome::Accepted { receipt, stamp }) => {
            for (share, _) in &shares {
                state.dispatcher.recipients.wake(&share.recipient);
            }
            outcome.record_id = Some(record_id.clone());
            outcome.success = RecordOutcome::Accepted;
            (receipt, stamp, false)
        }
        Ok(CommitOutcome::Duplicate { receipt, stamp }) => {
            outcome.record_id =
                serde_json::from_slice::<Value>(&receipt).ok().and_then(|r| r["record_id"].as_str().map(str::to_owned));
            outcome.success = RecordOutcome::Duplicate;
            (receipt, stamp, true)
        }
        Ok(CommitOutcome::Conflict) => return Err(ApiError::IdempotencyConflict),
        Err(e) => {
            tracing::error!(message = "Store commit failed; record refused.", sender = %partner.id, record_type, error = %e);
            return Err(ApiError::StoreUnavailable(e.to_string()));
        }
    };
    // The proof is derived from the stored receipt and the entry, so a replay gets the same one.
    let signed_at = if replayed {
        serde_json::from_slice::<Value>(&receipt)
            .ok()
            .and_then(|r| r["received_at"].as_str().and_then(crate::clock::parse_rfc3339_ms))
            .unwrap_or(received_at)
    } else {
        received_at
    };
    // The signature covers the stored receipt itself, so every field the sender reads is bound.
    let receipt = state
        .trail
        .notary
        .sign_receipt(&receipt, &audit_digest, stamp, signed_at)
        .map_err(|e| ApiError::StoreUnavailable(format!("the stored receipt cannot be signed: {e}")))?;
    let location = outcome.record_id.as_deref().map(|id| format!("/v1/records/{id}")).unwrap_or_default();
    let mut response = json_response(StatusCode::ACCEPTED, receipt);
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    add_deprecation(h, &route, version);
    Ok(response)
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

async fn validate(
    config: &Config,
    partner: &AuthenticatedPartner,
    req: Request<RequestBody>,
    record_type: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
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
    Ok(response)
}

async fn record_status(
    state: &State,
    partner: &AuthenticatedPartner,
    record_id: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    if uuid::Uuid::parse_str(record_id).is_err() {
        return Err(ApiError::RecordNotFound);
    }
    let view = state
        .store
        .record(partner.id.to_string(), record_id.to_owned())
        .await
        .map_err(|e| ApiError::StoreUnavailable(e.to_string()))?
        .ok_or(ApiError::RecordNotFound)?;
    Ok(json_response(StatusCode::OK, serde_json::to_vec(&view).unwrap_or_default()))
}

/// The raw value of the query parameter `name` (the first, if it is repeated); a name without
/// `=` has the empty value.
fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// A query value as `application/x-www-form-urlencoded` encodes it (`%XX`, and `+` for a space),
/// or `None` if an escape is cut off or the bytes are not UTF-8. (A forwarded certificate header
/// is plain percent-encoding instead, where `+` is itself: see `tls::parse_forwarded`.)
fn percent_decode(s: &str) -> Option<String> {
    // percent-encoding keeps a cut-off escape (`%4`, `%+1`) as text; a query value that has one is
    // malformed.
    let escapes_whole = s
        .match_indices('%')
        .all(|(i, _)| s.get(i + 1..i + 3).is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())));
    if !escapes_whole {
        return None;
    }
    let spaced =
        if s.contains('+') { std::borrow::Cow::Owned(s.replace('+', " ")) } else { std::borrow::Cow::Borrowed(s) };
    percent_encoding::percent_decode_str(&spaced).decode_utf8().ok().map(|v| v.into_owned())
}

/// `GET /v1/records`: the caller's records, newest first, one page at a time.
///
/// Every parameter is either absent or a valid value, as the OpenAPI document types it. An empty
/// value (`?since=`) is refused like any other invalid one: it usually stands for a variable the
/// client left unset, and answering as if the filter were absent would hand back records the
/// caller did not ask for.
async fn list_records(
    state: &State,
    partner: &AuthenticatedPartner,
    req: &Request<RequestBody>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    /// The page cursor: the last record's `received_at` (unix ms) and id, as
    /// `<digits>.<lower-case hyphenated UUID>`. Partners treat it as opaque; the OpenAPI document
    /// gives exactly this syntax as its pattern, so what the document allows is what is accepted.
    fn cursor(at: i64, record_id: &str) -> String {
        format!("{at}.{record_id}")
    }

    /// The position a cursor names, or `None` if it is not in the cursor's syntax. Up to 18
    /// digits always fit an `i64`.
    fn parse_cursor(text: &str) -> Option<(i64, String)> {
        let (at, id) = text.split_once('.')?;
        if at.is_empty() || at.len() > 18 || !at.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // The id exactly as the gateway writes it: a hyphenated, lowercase UUID.
        let written = uuid::Uuid::try_parse(id).ok()?.hyphenated().to_string();
        if written != id {
            return None;
        }
        Some((at.parse().ok()?, id.to_owned()))
    }

    let query = req.uri().query().unwrap_or("");
    let param = |name: &'static str| -> Result<Option<String>, ApiError> {
        match query_param(query, name) {
            None => Ok(None),
            Some(raw) => match percent_decode(raw) {
                Some(value) if !value.is_empty() => Ok(Some(value)),
                _ => Err(ApiError::BadQuery { parameter: name }),
            },
        }
    };
    let invalid = |parameter: &'static str| move || ApiError::BadQuery { parameter };
    let status = param("status")?.map(|s| RecordState::parse(&s).ok_or_else(invalid("status"))).transpose()?;
    let since = param("since")?.map(|s| crate::clock::parse_rfc3339_ms(&s).ok_or_else(invalid("since"))).transpose()?;
    let limit = param("limit")?
        .map(|s| {
            // Digits only: `parse` would also take a sign (`+5`), which the document's integer
            // does not allow.
            s.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| s.parse::<usize>().ok())
                .flatten()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(invalid("limit"))
        })
        .transpose()?
        .unwrap_or(50);
    let before = param("cursor")?.map(|c| parse_cursor(&c).ok_or_else(invalid("cursor"))).transpose()?;
    let records = state
        .store
        .list_records(RecordQuery { sender: partner.id.to_string(), status, since, before, limit })
        .await
        .map_err(|e| ApiError::StoreUnavailable(e.to_string()))?;
    let next = (records.len() == limit)
        .then(|| records.last())
        .flatten()
        .and_then(|r| crate::clock::parse_rfc3339_ms(&r.received_at).map(|at| cursor(at, &r.record_id)));
    let body = json!({ "records": records, "next_cursor": next });
    Ok(json_response(StatusCode::OK, body.to_string().into_bytes()))
}

/// The (type, version, role) triples the caller may send or receive.
pub(super) fn schema_entries(config: &Config, partner: &str) -> Vec<(String, Version, &'static str)> {
    let mut entries = Vec::new();
    for a in config.agreements.iter().filter(|a| a.is_party(partner)) {
        let role = if &*a.sender == partner { "send" } else { "receive" };
        for v in &a.versions {
            let entry = (a.record_type.to_string(), *v, role);
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
    }
    entries.sort();
    entries
}

fn schemas(config: &Config, partner: &AuthenticatedPartner) -> Result<Response<Full<Bytes>>, ApiError> {
    // The same list the OpenAPI document gives as this answer's example.
    Ok(json_response(StatusCode::OK, super::openapi::schema_list(config, &partner.id).to_string().into_bytes()))
}

fn schema(
    config: &Config,
    partner: &AuthenticatedPartner,
    record_type: &str,
    version: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let version: Version = version.parse().map_err(|_| ApiError::SchemaNotFound)?;
    if !schema_entries(config, &partner.id).iter().any(|(t, v, _)| t == record_type && *v == version) {
        return Err(ApiError::SchemaNotFound);
    }
    let schema =
        config.catalog.record_type(record_type).and_then(|t| t.version(version)).ok_or(ApiError::SchemaNotFound)?;
    let mut response = json_response(StatusCode::OK, serde_json::to_vec(&*schema.document).unwrap_or_default());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/schema+json"));
    Ok(response)
}

fn agreements(config: &Config, partner: &AuthenticatedPartner) -> Result<Response<Full<Bytes>>, ApiError> {
    let list = super::openapi::agreement_list(config, &partner.id, OffsetDateTime::now_utc());
    Ok(json_response(StatusCode::OK, list.to_string().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_routed_to_itself() {
        for route in &ROUTES {
            let path = route
                .template
                .replace("{record_type}", "birth-registration")
                .replace("{record_id}", "01900000-0000-7000-8000-000000000000")
                .replace("{version}", "1.1");
            let found = find_route(&route.method, &path).unwrap_or_else(|e| panic!("{} {path}: {e}", route.method));
            assert_eq!(found.route.operation, route.operation, "{} {path}", route.method);
        }
        let labels: std::collections::BTreeSet<&str> = ROUTES.iter().map(|r| r.operation.label()).collect();
        assert_eq!(labels.len(), ROUTES.len(), "one metric label per route");
    }
}
