//! The admin API: probes, metrics, dead letters, replay, the audit trail, configuration reload,
//! the public keys deliveries are signed with (the JWKS the partner API also serves) and this
//! API's own OpenAPI document, for operators.
//!
//! `/healthz` (alive) and `/readyz` (store reachable, configuration loaded) are always open, for
//! probes. `/metrics` is open unless configured otherwise. Everything under `/admin/v1` needs the
//! admin token, and every state-changing call (`POST`) must also come from the admin listener's
//! own origin (`Origin`, when a browser sends one, must match `Host`), even on loopback.

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use crate::server::RequestBody;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::json;

use super::error::{AdminError, ApiError};
use super::i18n::Lang;
use super::routes::{AnyShape, Route as HttpRoute, RouteTable};
use super::state::State;
use super::{json_response, store_json, text_response};
use crate::audit::AuditEvent;
use crate::auth::ConnectionInfo;
use crate::config::Config;
use crate::operators::{Directory, Grant, Operator, Permission, Target};
use crate::store::{
    AuditRange, BodyRef, DeliveryAdminView, DeliveryFilter, DeliveryStatus, ReplayOutcome, ReplayRequest, ReplayTarget,
};
use crate::telemetry::events::DeliveryReplayed;
use crate::telemetry::events::RequestServed;
use crate::telemetry::trace::TraceContext;

/// The admin API's operations, grouped by who may call them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Liveness: open to anyone who reaches the listener.
    Healthz,
    /// Readiness (the store answers): open.
    Readyz,
    /// The Prometheus exposition: open with `admin.metrics_open`, else an operator's.
    Metrics,
    /// The console's page and its sign-in and sign-out: a session cookie, not the token.
    Console(ConsolePage),
    /// An operator's call: the admin token or a console session.
    Operator(OperatorCall),
}

/// The console's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsolePage {
    Page,
    Login,
    Logout,
    /// Sign-in through the OpenID provider: off to the issuer ([`super::sign_in`]).
    OidcLogin,
    /// Back from the issuer.
    OidcCallback,
}

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorCall {
    Metrics,
    Deliveries,
    ReplayDelivery,
    ReplayRecipient,
    Audit,
    Reload,
    Overview,
    OpenApi,
    Keys,
    WhoAmI,
    Operators,
    Access,
    Records,
    Record,
    RecordBody,
    DeliveryBody,
    Stats,
}

impl OperatorCall {
    /// The permission the call needs: the one table of who may do what on the admin API.
    pub fn needs(self) -> Permission {
        use OperatorCall as O;
        match self {
            O::Metrics | O::Deliveries | O::Overview | O::OpenApi | O::Keys | O::WhoAmI => Permission::View,
            O::Records | O::Record | O::Stats => Permission::View,
            O::RecordBody | O::DeliveryBody => Permission::ReadBodies,
            O::ReplayDelivery | O::ReplayRecipient => Permission::Replay,
            O::Reload => Permission::Reload,
            O::Audit => Permission::ReadAudit,
            O::Operators => Permission::Administer,
            O::Access => Permission::ReadAccess,
        }
    }

    /// Whether the call acts on the whole gateway, so that a grant limited to some partners or
    /// agreements does not allow it: the metrics, a reload, the list of operators. Calls on one
    /// delivery or recipient check the grant's scope against it; lists are cut to it.
    pub fn whole_gateway(self) -> bool {
        matches!(self, OperatorCall::Metrics | OperatorCall::Reload | OperatorCall::Operators)
    }
}

/// Every route of the admin API; `HEAD` goes wherever `GET` does. The admin OpenAPI document
/// ([`super::openapi::ADMIN_DOCUMENT`]) describes exactly these, and a test holds the two together.
pub static ROUTES: [HttpRoute<Operation>; 24] = {
    use ConsolePage as C;
    use Operation::{Console, Operator};
    use OperatorCall as O;
    [
        HttpRoute { method: Method::GET, template: "/healthz", operation: Operation::Healthz },
        HttpRoute { method: Method::GET, template: "/readyz", operation: Operation::Readyz },
        HttpRoute { method: Method::GET, template: "/metrics", operation: Operation::Metrics },
        HttpRoute { method: Method::GET, template: "/admin/v1/deliveries", operation: Operator(O::Deliveries) },
        HttpRoute {
            method: Method::POST,
            template: "/admin/v1/deliveries/{delivery_id}/replay",
            operation: Operator(O::ReplayDelivery),
        },
        HttpRoute {
            method: Method::POST,
            template: "/admin/v1/recipients/{recipient}/replay",
            operation: Operator(O::ReplayRecipient),
        },
        HttpRoute { method: Method::GET, template: "/admin/v1/audit", operation: Operator(O::Audit) },
        HttpRoute { method: Method::POST, template: "/admin/v1/reload", operation: Operator(O::Reload) },
        HttpRoute { method: Method::GET, template: "/admin/v1/overview", operation: Operator(O::Overview) },
        HttpRoute { method: Method::GET, template: "/console", operation: Console(C::Page) },
        HttpRoute { method: Method::POST, template: "/console/login", operation: Console(C::Login) },
        HttpRoute { method: Method::POST, template: "/console/logout", operation: Console(C::Logout) },
        HttpRoute { method: Method::GET, template: "/admin/v1/openapi.json", operation: Operator(O::OpenApi) },
        HttpRoute { method: Method::GET, template: "/admin/v1/keys", operation: Operator(O::Keys) },
        HttpRoute { method: Method::GET, template: "/admin/v1/whoami", operation: Operator(O::WhoAmI) },
        HttpRoute { method: Method::GET, template: "/admin/v1/operators", operation: Operator(O::Operators) },
        HttpRoute { method: Method::GET, template: "/admin/v1/access", operation: Operator(O::Access) },
        HttpRoute { method: Method::GET, template: "/admin/v1/records", operation: Operator(O::Records) },
        HttpRoute { method: Method::GET, template: "/admin/v1/records/{record_id}", operation: Operator(O::Record) },
        HttpRoute {
            method: Method::GET,
            template: "/admin/v1/records/{record_id}/body",
            operation: Operator(O::RecordBody),
        },
        HttpRoute {
            method: Method::GET,
            template: "/admin/v1/deliveries/{delivery_id}/body",
            operation: Operator(O::DeliveryBody),
        },
        HttpRoute { method: Method::GET, template: "/admin/v1/stats", operation: Operator(O::Stats) },
        HttpRoute { method: Method::GET, template: "/console/oidc/login", operation: Console(C::OidcLogin) },
        HttpRoute { method: Method::GET, template: "/console/oidc/callback", operation: Console(C::OidcCallback) },
    ]
};

static TABLE: LazyLock<RouteTable<Operation>> = LazyLock::new(|| RouteTable::new(&ROUTES));

/// Most deliveries or audit entries one page returns.
const MAX_PAGE: usize = 1000;

/// Serves one admin request, and writes its line in the log.
pub async fn handle(state: Arc<State>, req: Request<RequestBody>, conn: Arc<ConnectionInfo>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let method = req.method().clone();
    let request_id = crate::random::correlation_uuid().to_string();
    let trace_id = TraceContext::from_headers(req.headers()).map(|t| t.trace_id_hex());
    let mut answer = answer(&state, req).await;
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        answer.response.headers_mut().insert("passerelle-request-id", id);
    }
    RequestServed {
        listener: "admin",
        method: method.as_str(),
        route: answer.route,
        metric_route: None,
        status: answer.response.status().as_u16(),
        latency: started.elapsed(),
        peer: conn.peer,
        partner: answer.operator.as_ref().map(Operator::actor).as_deref(),
        request_id: &request_id,
        trace_id: trace_id.as_deref(),
        record: None,
    }
    .emit(&state.metrics);
    answer.response
}

/// An admin answer, with what its log line says about it.
struct Answer {
    response: Response<Full<Bytes>>,
    /// The route template, or `unknown`.
    route: &'static str,
    /// The operator the caller's credentials stand for, if any.
    operator: Option<Operator>,
}

/// The answer to one admin request. As on the partner API, the route and its method are checked
/// before credentials: a path that is not a route is 404, another method 405 with `Allow`.
async fn answer(state: &State, req: Request<RequestBody>) -> Answer {
    let config = state.config();
    let lang = Lang::from_accept_language(req.headers().get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()));
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let refused = |e: ApiError| Answer { response: e.to_response(lang, &path), route: "unknown", operator: None };
    if let Err(e) = super::check_host(&req) {
        return refused(e);
    }
    let route = match TABLE.find::<AnyShape>(&method, &path) {
        Ok(route) => route,
        Err(miss) => return refused(miss.into()),
    };
    let template = route.route.template;
    let open = |response| Answer { response, route: template, operator: None };
    let metrics = || text_response(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", state.metrics.render());
    let operator = || signed_in(state, &config, &req);
    let call = match route.route.operation {
        Operation::Healthz => return open(text_response(StatusCode::OK, "text/plain; charset=utf-8", "ok\n")),
        Operation::Readyz => {
            return open(match state.store.ping().await {
                Ok(()) => text_response(
                    StatusCode::OK,
                    "text/plain; charset=utf-8",
                    format!("ready ({} store)\n", state.store.engine()),
                ),
                Err(e) => {
                    tracing::warn!(message = "Readiness check failed.", error = %e);
                    text_response(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", "store unavailable\n")
                }
            });
        }
        Operation::Metrics if config.settings.admin.metrics_open => return open(metrics()),
        Operation::Metrics => OperatorCall::Metrics,
        Operation::Console(page) => {
            let operator = operator();
            let response = console(state, &config, req, page, lang, operator.as_ref()).await;
            return Answer { response, route: template, operator };
        }
        Operation::Operator(call) => call,
    };
    let operator = operator();
    let result = async {
        let Some(operator) = &operator else { return Err(AdminError::TokenRequired) };
        let needs = call.needs();
        if !operator.may(needs) || (call.whole_gateway() && !operator.may_everywhere(needs)) {
            return Err(AdminError::Forbidden { needs, scoped: operator.may(needs) });
        }
        if method == Method::POST && !same_origin(&req) {
            return Err(AdminError::CrossOrigin);
        }
        let query = req.uri().query().unwrap_or("");
        match call {
            OperatorCall::Metrics => Ok(metrics()),
            OperatorCall::Deliveries => deliveries(state, operator, query).await,
            OperatorCall::ReplayDelivery => {
                let id = route.param("delivery_id").parse::<i64>().map_err(|_| AdminError::DeliveryNotFound)?;
                if !operator.may_everywhere(needs) {
                    let delivery = state.store.deliveries(DeliveryFilter::one(id)).await.map_err(ApiError::store)?;
                    let delivery = delivery.first().filter(|d| d.id == id).ok_or(AdminError::DeliveryNotFound)?;
                    if !covers(operator, needs, delivery) {
                        return Err(AdminError::Forbidden { needs, scoped: true });
                    }
                }
                replay(state, operator, ReplayTarget::One(id)).await
            }
            OperatorCall::ReplayRecipient => {
                let recipient = route.param("recipient");
                if config.partner(recipient).is_none() {
                    return Err(ApiError::RouteNotFound.into());
                }
                if !operator.may_on(needs, &Target { partners: &[recipient], agreement: None }) {
                    return Err(AdminError::Forbidden { needs, scoped: true });
                }
                replay(state, operator, ReplayTarget::Recipient(recipient.to_owned())).await
            }
            OperatorCall::WhoAmI => Ok(json_response(StatusCode::OK, whoami(operator).to_string().into_bytes())),
            OperatorCall::Operators => {
                Ok(json_response(StatusCode::OK, operators(&config.built.operators).to_string().into_bytes()))
            }
            OperatorCall::Overview => Ok(json_response(
                StatusCode::OK,
                super::console::overview(
                    &state.metrics,
                    &state.console.history,
                    state.store.engine(),
                    &config,
                    operator,
                )
                .to_string()
                .into_bytes(),
            )),
            OperatorCall::Audit => audit(state, operator, query).await,
            OperatorCall::Keys => Ok(super::discovery::keys(&state.trail.notary)),
            OperatorCall::Access => {
                let page = super::access::wants_page(req.headers());
                super::access::access(state, query, lang, operator, page).await
            }
            OperatorCall::Records => super::investigate::records(state, operator, query).await,
            OperatorCall::Record => super::investigate::record(state, operator, route.param("record_id")).await,
            OperatorCall::RecordBody => {
                let record = BodyRef::Record(route.param("record_id").to_owned());
                super::investigate::body(state, operator, record).await
            }
            OperatorCall::DeliveryBody => {
                let id = route.param("delivery_id").parse::<i64>().map_err(|_| AdminError::DeliveryNotFound)?;
                super::investigate::body(state, operator, BodyRef::Delivery(id)).await
            }
            OperatorCall::Stats => super::investigate::stats(state, operator, query).await,
            OperatorCall::OpenApi => {
                Ok(json_response(StatusCode::OK, super::openapi::ADMIN_DOCUMENT.as_bytes().to_vec()))
            }
            OperatorCall::Reload => match state.reload(&operator.actor()).await {
                Ok(fingerprint) => Ok(json_response(
                    StatusCode::OK,
                    json!({"reloaded": true, "fingerprint": fingerprint}).to_string().into_bytes(),
                )),
                Err(super::state::ReloadError::Invalid(problems)) => Err(AdminError::ReloadRefused(problems)),
                Err(e) => Err(ApiError::StoreUnavailable(e.to_string()).into()),
            },
        }
    }
    .await;
    let mut response = result.unwrap_or_else(|e| e.to_response(lang, &path));
    // Operators' data (dead letters, the overview, the audit trail) is never kept by a cache.
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Answer { response, route: template, operator }
}

/// The operator the request's credentials stand for: a bearer token (an operator's own or the
/// bootstrap token), else a console session. `None`: not signed in.
fn signed_in(state: &State, config: &Config, req: &Request<RequestBody>) -> Option<Operator> {
    let directory = &config.built.operators;
    let bearer = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Some(token) = bearer.and_then(|b| b.strip_prefix("Bearer ")) {
        return directory.by_token(token);
    }
    state.console.sessions.operator(req.headers().get(header::COOKIE).and_then(|v| v.to_str().ok()), directory)
}

/// Whether `operator` holds `permission` over a delivery: its sender, its recipient, its
/// agreement.
fn covers(operator: &Operator, permission: Permission, d: &DeliveryAdminView) -> bool {
    let partners = [d.sender.as_str(), d.recipient.as_str()];
    operator.may_on(permission, &Target { partners: &partners, agreement: Some(&d.agreement) })
}

/// The console: the page for a signed-in operator, else the sign-in form; signing in and out.
async fn console(
    state: &State,
    config: &Config,
    req: Request<RequestBody>,
    page: ConsolePage,
    lang: Lang,
    operator: Option<&Operator>,
) -> Response<Full<Bytes>> {
    use super::console;
    let lang_tag = match lang {
        Lang::Fr => "fr",
        Lang::En => "en",
    };
    let nonce: String = crate::random::bytes::<16>().iter().map(|b| format!("{b:02x}")).collect();
    let path = req.uri().path().to_owned();
    match page {
        ConsolePage::Page if operator.is_some() => {
            html_response(StatusCode::OK, &nonce, console::page(lang_tag, &nonce))
        }
        ConsolePage::Page => {
            html_response(StatusCode::OK, &nonce, super::sign_in::login_page(config, lang_tag, &nonce, false))
        }
        ConsolePage::OidcLogin => super::sign_in::login(state, config, lang, &nonce, html_response).await,
        ConsolePage::OidcCallback => super::sign_in::callback(state, config, &req, lang, &nonce, html_response).await,
        ConsolePage::Login | ConsolePage::Logout if !same_origin(&req) => {
            AdminError::CrossOrigin.to_response(lang, &path)
        }
        ConsolePage::Login => {
            if let Err(retry_after_secs) = state.console.sessions.may_try() {
                return ApiError::RateLimited { retry_after_secs }.to_response(lang, &path);
            }
            let body = http_body_util::Limited::new(req.into_body(), 4096);
            let presented = match http_body_util::BodyExt::collect(body).await {
                Ok(body) => console::form_token(&body.to_bytes()),
                Err(_) => None,
            };
            let directory = &config.built.operators;
            let Some((operator, digest)) = presented.and_then(|token| {
                let digest = crate::digest::sha256(token.as_bytes());
                Some((directory.by_token_digest(&digest)?, digest))
            }) else {
                state.console.sessions.failed();
                tracing::warn!(message = "Console sign-in refused.");
                let page = super::sign_in::login_page(config, lang_tag, &nonce, true);
                return html_response(StatusCode::UNAUTHORIZED, &nonce, page);
            };
            tracing::info!(message = "Console sign-in.", operator = %operator.name, credential = operator.credential.as_str());
            let session = state.console.sessions.start(console::Identity::Token(digest));
            redirect_to_console(&console::set_cookie(Some(&session)))
        }
        ConsolePage::Logout => {
            state.console.sessions.end(req.headers().get(header::COOKIE).and_then(|v| v.to_str().ok()));
            redirect_to_console(&console::set_cookie(None))
        }
    }
}

/// An HTML page whose inline script and style run only with `nonce`, never framed or cached.
fn html_response(status: StatusCode, nonce: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = text_response(status, "text/html; charset=utf-8", body);
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; \
         img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    let h = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The page is in the caller's language.
    h.insert(header::VARY, HeaderValue::from_static("accept-language"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: with it, a form post says `Origin: null` and the origin check refuses it.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// `303 See Other` to the console, setting (or clearing) the session cookie.
fn redirect_to_console(cookie: &str) -> Response<Full<Bytes>> {
    let mut response = text_response(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    response.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/console"));
    if let Ok(cookie) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// A state-changing call is accepted only with a `Host`, and, when the client names its origin
/// (browsers do), only from that same host; a cross-site fetch is refused.
fn same_origin(req: &Request<RequestBody>) -> bool {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let Some(host) = header("host") else { return false };
    if header("sec-fetch-site").is_some_and(|s| s == "cross-site" || s == "same-site") {
        return false;
    }
    match header("origin") {
        None => true,
        Some(origin) => origin.split_once("://").is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
    }
}

fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name && !v.is_empty()).then_some(v)
    })
}

async fn deliveries(state: &State, operator: &Operator, query: &str) -> Result<Response<Full<Bytes>>, AdminError> {
    let status = match param(query, "status") {
        None => None,
        Some(s) => Some(s.parse::<DeliveryStatus>().map_err(|_| ApiError::BadQuery { parameter: "status" })?),
    };
    let limit = match param(query, "limit") {
        None => 100,
        Some(n) => {
            n.parse().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or(ApiError::BadQuery { parameter: "limit" })?
        }
    };
    let after_id = param(query, "after")
        .map(|a| a.parse::<i64>().map_err(|_| ApiError::BadQuery { parameter: "after" }))
        .transpose()?;
    let filter = DeliveryFilter {
        status,
        recipient: param(query, "recipient").map(str::to_owned),
        agreement: param(query, "agreement").map(str::to_owned),
        partner: param(query, "partner").map(str::to_owned),
        record_id: None,
        after_id,
        limit,
    };
    let list = state.store.deliveries(filter).await.map_err(ApiError::store)?;
    let next = (list.len() == limit).then(|| list.last().map(|d| d.id)).flatten();
    // A scoped operator sees the page cut to their partners and agreements; `next_after` still
    // pages through the whole list, so a page may hold fewer than `limit`.
    let list: Vec<_> =
        list.iter().filter(|d| covers(operator, Permission::View, d)).map(store_json::admin_delivery).collect();
    Ok(json_response(StatusCode::OK, json!({"deliveries": list, "next_after": next}).to_string().into_bytes()))
}

/// Who the caller is and what they may do (the console shows what the roles allow).
fn whoami(operator: &Operator) -> serde_json::Value {
    json!({
        "name": operator.name,
        "credential": operator.credential.as_str(),
        "roles": operator.roles().iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "grants": operator.grants.iter().map(grant_json).collect::<Vec<_>>(),
        "permissions": Permission::ALL.iter().filter(|p| operator.may(**p)).map(|p| p.as_str()).collect::<Vec<_>>(),
    })
}

/// Every operator the configuration names and every OpenID group, with their grants; never a
/// token or its digest.
fn operators(directory: &Directory) -> serde_json::Value {
    json!({
        "bootstrap_token": directory.has_bootstrap(),
        "operators": directory.entries().map(|e| json!({
            "name": e.name,
            "grants": e.grants.iter().map(grant_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "groups": directory.groups().map(|(g, grants)| json!({
            "group": g,
            "grants": grants.iter().map(grant_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn grant_json(g: &Grant) -> serde_json::Value {
    json!({"role": g.role.as_str(), "partners": g.scope.partners, "agreements": g.scope.agreements})
}

async fn replay(state: &State, operator: &Operator, target: ReplayTarget) -> Result<Response<Full<Bytes>>, AdminError> {
    let single = matches!(target, ReplayTarget::One(_));
    let request = ReplayRequest { target, actor: operator.actor(), now: crate::clock::now_ms() };
    let results = state.store.replay(request).await.map_err(ApiError::store)?;
    if single && results.first().is_some_and(|r| r.outcome == ReplayOutcome::NotFound) {
        return Err(AdminError::DeliveryNotFound);
    }
    let mut replayed = 0;
    for r in results.iter().filter(|r| r.outcome == ReplayOutcome::Replayed) {
        replayed += 1;
        let (recipient, agreement) = (r.recipient.as_deref().unwrap_or(""), r.agreement.as_deref().unwrap_or(""));
        DeliveryReplayed { delivery_id: r.id, recipient, agreement }.emit(&state.metrics);
        // The recipient's worker picks the delivery up at once.
        state.dispatcher.wake(recipient);
    }
    let status = if single && replayed == 0 { StatusCode::CONFLICT } else { StatusCode::OK };
    let results: Vec<_> = results.iter().map(store_json::replay).collect();
    Ok(json_response(status, json!({"replayed": replayed, "deliveries": results}).to_string().into_bytes()))
}

/// A page of the audit trail. Reading it is itself audited (`audit.read`, with the operator's
/// name and the entries' range); a scoped auditor sees only the entries that name a partner or
/// agreement of theirs.
async fn audit(state: &State, operator: &Operator, query: &str) -> Result<Response<Full<Bytes>>, AdminError> {
    let after = param(query, "after")
        .map(|a| a.parse::<i64>().map_err(|_| ApiError::BadQuery { parameter: "after" }))
        .transpose()?
        .unwrap_or(0);
    let limit = match param(query, "limit") {
        None => 100,
        Some(n) => {
            n.parse().ok().filter(|n| (1..=MAX_PAGE).contains(n)).ok_or(ApiError::BadQuery { parameter: "limit" })?
        }
    };
    let time = |name| super::records::query_value(query, name).map(|t| t.map(|t| crate::clock::parse_rfc3339_ms(&t)));
    let (from, to) = match (time("from")?, time("to")?) {
        (Some(None), _) => return Err(ApiError::BadQuery { parameter: "from" }.into()),
        (_, Some(None)) => return Err(ApiError::BadQuery { parameter: "to" }.into()),
        (from, to) => (from.flatten(), to.flatten()),
    };
    let entries = state.store.audit_range(AuditRange { after, from, to, limit }).await.map_err(ApiError::store)?;
    // The signed checkpoints among the entries shown: where the chain was sealed.
    let (first, last) = (entries.first().map_or(0, |e| e.seq), entries.last().map_or(-1, |e| e.seq));
    let checkpoints = state.store.checkpoints_between(first, last).await.map_err(ApiError::store)?;
    let marks: Vec<_> =
        checkpoints.iter().map(|c| json!({"seq": c.seq, "at": store_json::time(c.at), "key_id": c.key_id})).collect();
    let everywhere = operator.may_everywhere(Permission::ReadAudit);
    let shown: Vec<_> = entries
        .iter()
        .filter(|e| {
            let event = &e.event;
            let partners: Vec<&str> =
                [Some(event.actor.as_str()), event.recipient.as_deref()].into_iter().flatten().collect();
            everywhere
                || operator.may_on(
                    Permission::ReadAudit,
                    &Target { partners: &partners, agreement: event.agreement.as_deref() },
                )
        })
        .collect();
    let mut read = AuditEvent::new(crate::clock::now_ms(), crate::audit::kind::AUDIT_READ, &operator.actor(), "read");
    read.count = shown.len() as i64;
    read.reason = Some(match (entries.first(), entries.last()) {
        (Some(first), Some(last)) => format!("seq {} to {}", first.seq, last.seq),
        _ => format!("after seq {after}: none"),
    });
    state.store.append_audit(vec![read]).await.map_err(ApiError::store)?;
    let lines: Vec<_> = shown.into_iter().map(crate::audit::export::entry_json).collect();
    let mut response =
        json_response(StatusCode::OK, json!({"entries": lines, "checkpoints": marks}).to_string().into_bytes());
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
