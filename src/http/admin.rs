//! The admin API: probes and metrics for operators.
//!
//! `/healthz` (alive) and `/readyz` (store reachable, configuration loaded) are always open, for
//! probes. `/metrics` is open unless configured otherwise; then it needs the admin token.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use subtle::ConstantTimeEq;

use super::text_response;
use crate::gateway::Shared;

/// Serves one admin request.
pub async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let config = shared.config.load_full();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "method not allowed\n");
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    match req.uri().path() {
        "/healthz" => text_response(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        "/readyz" => match shared.store.ping().await {
            Ok(()) => text_response(StatusCode::OK, "text/plain; charset=utf-8", "ready\n"),
            Err(e) => {
                tracing::warn!(message = "Readiness check failed.", error = %e);
                text_response(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", "store unavailable\n")
            }
        },
        "/metrics" => {
            if !config.admin.metrics_open && !has_admin_token(config.admin.token.as_deref(), &req) {
                return text_response(StatusCode::UNAUTHORIZED, "text/plain; charset=utf-8", "admin token required\n");
            }
            text_response(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", shared.metrics.render())
        }
        _ => text_response(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found\n"),
    }
}

/// Whether the request carries the admin token as a bearer header (compared in constant time).
pub fn has_admin_token(token: Option<&str>, req: &Request<Incoming>) -> bool {
    let (Some(token), Some(presented)) =
        (token, req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()))
    else {
        return false;
    };
    let presented = presented.strip_prefix("Bearer ").unwrap_or("");
    bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
}
