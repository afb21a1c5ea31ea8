//! The partner API's routing: which operation a request names, who is calling, and the line
//! and metrics that describe the call.
//!
//! Checks run in the design's order and the first failure answers: here the head and route
//! (1, 2), credentials (3) and rate limit (4); then the operation's own module: [`super::intake`]
//! for records sent and dry runs (5 to 14), [`super::requests`] for request/response,
//! [`super::records`] for the caller's records, [`super::discovery`] for schemas, the views of
//! what the caller receives, agreements and the gateway's public keys,
//! [`super::inbox`] for a pull recipient's mailbox.
//! A rejected record is never stored and never delivered.

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use tracing::Instrument;

use super::error::ApiError;
use super::i18n::Lang;
use super::json_response;
use super::outcome::{Call, Handled, Outcome};
use super::routes::{Matched, ParameterShape, Route as HttpRoute, RouteTable};
use super::state::State;
use crate::auth::{AuthenticatedPartner, ConnectionInfo};
use crate::config::Config;
use crate::server::RequestBody;
use crate::telemetry::events::{RecordCall, RequestServed};
use crate::telemetry::trace::{Hop, HopKind, TraceContext};

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
    SchemaView,
    Agreements,
    OpenApi,
    Keys,
    Inbox,
    Ack,
    Nack,
}

impl Operation {
    /// Whether the operation is about a record sent under an agreement (its path names the type).
    fn names_record_type(self) -> bool {
        matches!(self, Operation::Submit | Operation::Request | Operation::Validate)
    }

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
            Operation::SchemaView => "schema_view",
            Operation::Agreements => "agreements",
            Operation::OpenApi => "openapi",
            Operation::Keys => "keys",
            Operation::Inbox => "inbox",
            Operation::Ack => "inbox_ack",
            Operation::Nack => "inbox_nack",
        }
    }
}

/// Every route of the partner API; `HEAD` goes wherever `GET` does. The OpenAPI document
/// ([`super::openapi`]) describes exactly these, and a test holds the two together.
pub static ROUTES: [HttpRoute<Operation>; 14] = [
    HttpRoute { method: Method::POST, template: "/v1/records/{record_type}", operation: Operation::Submit },
    HttpRoute { method: Method::POST, template: "/v1/requests/{record_type}", operation: Operation::Request },
    HttpRoute { method: Method::POST, template: "/v1/validate/{record_type}", operation: Operation::Validate },
    HttpRoute { method: Method::GET, template: "/v1/records/{record_id}", operation: Operation::RecordStatus },
    HttpRoute { method: Method::GET, template: "/v1/records", operation: Operation::ListRecords },
    HttpRoute { method: Method::GET, template: "/v1/schemas", operation: Operation::Schemas },
    HttpRoute { method: Method::GET, template: "/v1/schemas/{record_type}/{version}", operation: Operation::Schema },
    HttpRoute {
        method: Method::GET,
        template: "/v1/schemas/{record_type}/{version}/views/{agreement}",
        operation: Operation::SchemaView,
    },
    HttpRoute { method: Method::GET, template: "/v1/agreements", operation: Operation::Agreements },
    HttpRoute { method: Method::GET, template: "/v1/openapi.json", operation: Operation::OpenApi },
    HttpRoute { method: Method::GET, template: "/v1/keys", operation: Operation::Keys },
    HttpRoute { method: Method::GET, template: "/v1/inbox", operation: Operation::Inbox },
    HttpRoute { method: Method::POST, template: "/v1/inbox/ack", operation: Operation::Ack },
    HttpRoute { method: Method::POST, template: "/v1/inbox/nack", operation: Operation::Nack },
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
    let request_id = crate::random::correlation_uuid().to_string();
    // This request is a hop of the caller's trace (or the first of a new one).
    let intake = Hop::start("intake", HopKind::Server, TraceContext::from_headers(req.headers()).as_ref());
    let call = Call { request_id: &request_id, trace: &intake.context };
    let found = check_head(&config, &req).and_then(|()| find_route(&method, &path));
    let template = found.as_ref().map_or("unknown", |r| r.route.template);
    let operation = found.as_ref().ok().map(|r| r.route.operation);
    // The record type named by a call about a record (sent, requested or checked).
    let record_type = match &found {
        Ok(route) if operation.is_some_and(Operation::names_record_type) => Some(route.param("record_type")),
        _ => None,
    };
    let mut sender = None;
    let result = match found {
        Err(e) => Err(e),
        Ok(route) => match authenticate(&config, &conn, req.headers()) {
            Err(e) => Err(e),
            Ok(partner) => {
                sender = Some(partner.id.to_string());
                dispatch(&state, &config, &partner, req, &route, &call).instrument(intake.span.clone()).await
            }
        },
    };
    // What the call did, or why it was refused, for its line and the metrics.
    let (mut response, done) = match result {
        Ok((response, outcome)) => (response, Ok(outcome)),
        Err(e) => (e.to_response(lang, &path), Err(e)),
    };
    if method == Method::HEAD {
        *response.body_mut() = Full::new(Bytes::new());
    }
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("passerelle-request-id", id);
    }
    let status = response.status().as_u16();
    let sender_label = sender.as_deref().unwrap_or("unknown");
    let record = record_type.map(|record_type| RecordCall {
        sender: sender_label,
        record_type: config.built.catalog.record_type(record_type).map_or("unknown", |t| &t.name),
        outcome: match &done {
            Ok(outcome) => outcome.metric(),
            Err(e) => e.outcome(),
        },
        record_id: done.as_ref().ok().and_then(Outcome::record_id),
        violations: match &done {
            Err(ApiError::Invalid { violations }) => violations.by_keyword(),
            _ => &[],
        },
    });
    // Rejected records (not dry runs) are audited in aggregate.
    if let (Err(e), Some(Operation::Submit | Operation::Request)) = (&done, operation) {
        state.trail.rejections.count(sender_label, e.outcome(), crate::clock::now_ms());
    }
    let trace_id = intake.context.trace_id_hex();
    RequestServed {
        listener: "partner",
        method: method.as_str(),
        route: template,
        metric_route: Some(operation.map_or("unknown", Operation::label)),
        status,
        latency: started.elapsed(),
        peer: conn.peer,
        partner: sender.as_deref(),
        request_id: &request_id,
        trace_id: Some(&trace_id),
        record,
    }
    .emit(&state.metrics);
    response
}

/// Check 4 (the caller's rate limit), then the operation of `route`.
async fn dispatch(
    state: &State,
    config: &Config,
    partner: &AuthenticatedPartner,
    req: Request<RequestBody>,
    route: &Matched<'static, '_, Operation>,
    call: &Call<'_>,
) -> Handled {
    within_rate_limit(state, config, partner)?;
    let record_type = route.param("record_type");
    let served = |response| Ok((response, Outcome::Served));
    match route.route.operation {
        Operation::Submit => super::intake::submit(state, config, partner, req, record_type, call.trace).await,
        Operation::Request => super::requests::handle(state, config, partner, req, record_type, call).await,
        Operation::Validate => super::intake::validate(config, partner, req, record_type).await,
        Operation::RecordStatus => {
            served(super::records::record_status(state, partner, route.param("record_id")).await?)
        }
        Operation::ListRecords => served(super::records::list_records(state, partner, &req).await?),
        Operation::Schemas => served(super::discovery::schemas(config, partner)),
        Operation::Schema => served(super::discovery::schema(config, partner, record_type, route.param("version"))?),
        Operation::SchemaView => served(super::discovery::view(
            config,
            partner,
            record_type,
            route.param("version"),
            route.param("agreement"),
        )?),
        Operation::Agreements => served(super::discovery::agreements(config, partner)),
        Operation::Keys => served(super::discovery::keys(&state.trail.notary)),
        Operation::Inbox => served(super::inbox::take(state, config, partner, &req).await?),
        Operation::Ack => served(super::inbox::settle(state, config, partner, req, true).await?),
        Operation::Nack => served(super::inbox::settle(state, config, partner, req, false).await?),
        Operation::OpenApi => served(json_response(
            StatusCode::OK,
            super::openapi::partner_document(config, &partner.id).to_string().into_bytes(),
        )),
    }
}

/// Check 1: the request line and headers within the configured size, and a `Host` where HTTP/1.1
/// requires one.
fn check_head(config: &Config, req: &Request<RequestBody>) -> Result<(), ApiError> {
    let size =
        req.uri().to_string().len() + req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>();
    if size > config.settings.limits.max_header_bytes {
        return Err(ApiError::HeadersTooLarge { limit: config.settings.limits.max_header_bytes });
    }
    super::check_host(req)
}

/// Check 3: who is calling.
fn authenticate(config: &Config, conn: &ConnectionInfo, headers: &HeaderMap) -> Result<AuthenticatedPartner, ApiError> {
    config.built.credentials.authenticate(conn, headers).map_err(|e| {
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
                .replace("{version}", "1.1")
                .replace("{agreement}", "birth-ottawa");
            let found = find_route(&route.method, &path).unwrap_or_else(|e| panic!("{} {path}: {e}", route.method));
            assert_eq!(found.route.operation, route.operation, "{} {path}", route.method);
        }
        let labels: std::collections::BTreeSet<&str> = ROUTES.iter().map(|r| r.operation.label()).collect();
        assert_eq!(labels.len(), ROUTES.len(), "one metric label per route");
    }
}
