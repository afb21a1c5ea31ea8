//! Request/response mode: each row of the status mapping, and no value of an answer in an error.

use std::collections::HashMap;
use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use crate::support::*;

const PATH: &str = "/v1/requests/sin-validation";

async fn ask(gw: &TestGateway) -> TestResponse {
    gw.post_as("on-health-plan", PATH).json(&record("sin-validation-1.0.json")).send().await
}

/// A valid answer holding a marker in a field the sender may not see.
fn answer(marker: &str) -> String {
    json!({
        "sin_status": "valid",
        "name_match": "full",
        "date_of_birth_match": true,
        "checked_at": "2026-11-29T17:00:00Z",
        "registry_reference": marker
    })
    .to_string()
}

#[tokio::test]
async fn a_valid_answer_is_projected_and_returned() {
    let gw = Setup::new().start().await;
    gw.recipient("esdc-sin-registry").respond_with(200, &answer("REF-SECRET-1"));
    let r = ask(&gw).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.text(),
        r#"{"checked_at":"2026-11-29T17:00:00Z","date_of_birth_match":true,"name_match":"full","sin_status":"valid"}"#,
        "only response_fields, canonical"
    );
    assert!(r.header("passerelle-request-id").is_some());
    // The responder got only its fields, with the delivery headers.
    let got = gw.recipient("esdc-sin-registry").received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/inbox/sin-validation");
    assert_eq!(got[0].header("passerelle-sender"), Some("on-health-plan"));
    let sent = got[0].json();
    let mut keys: Vec<&str> = sent.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["date_of_birth", "given_names", "sin", "surname"],
        "request_reference is not in the responder's fields"
    );
    // Nothing is stored as a record; both sides are audited as one entry.
    assert_eq!(gw.count("records"), 0);
    assert_eq!(gw.audited("request.answered", |e| e.outcome == "answered").await, 1);
    // A push path for a request type is not a way around it.
    let push = gw.post_record("on-health-plan", "sin-validation", &record("sin-validation-1.0.json")).await;
    push.problem(404, "no-agreement");
}

#[tokio::test]
async fn an_answer_that_breaks_its_schema_is_502_upstream_invalid() {
    let gw = Setup::new().start().await;
    let bad = json!({"sin_status": "MARKER-STATUS-77", "name_match": "full", "date_of_birth_match": true, "checked_at": "2026-11-29T17:00:00Z"});
    gw.recipient("esdc-sin-registry").respond_with(200, &bad.to_string());
    let r = ask(&gw).await;
    r.problem(502, "upstream-invalid");
    assert!(!r.text().contains("MARKER-STATUS-77"));
    // Not JSON at all.
    gw.recipient("esdc-sin-registry").respond_with(200, "MARKER <html>");
    let r = ask(&gw).await;
    r.problem(502, "upstream-invalid");
    assert!(!r.text().contains("MARKER"));
}

#[tokio::test]
async fn a_non_2xx_answer_is_502_upstream_error_with_its_status() {
    let gw = Setup::new().start().await;
    gw.recipient("esdc-sin-registry").respond_with(409, r#"{"detail": "MARKER-CONFLICT holder 046454286"}"#);
    let r = ask(&gw).await;
    let doc = r.problem(502, "upstream-error");
    assert_eq!(doc["upstream_status"], 409);
    assert!(!r.text().contains("MARKER") && !r.text().contains("046454286"));
}

#[tokio::test]
async fn a_refused_connection_is_502_upstream_error() {
    let mut recipients = HashMap::new();
    recipients.insert("on-health-plan".to_owned(), MockRecipient::start().await);
    // esdc-sin-registry points at a closed port.
    let gw = Setup::new().start_with(recipients).await;
    let r = ask(&gw).await;
    let doc = r.problem(502, "upstream-error");
    assert!(doc.get("upstream_status").is_none());
}

#[tokio::test]
async fn a_slow_responder_is_504() {
    let gw = Setup::new().delivery("attempt_timeout_ms = 300").start().await;
    gw.recipient("esdc-sin-registry").respond_with(200, &answer("MARKER-LATE")).delay(Duration::from_secs(2));
    let r = ask(&gw).await;
    r.problem(504, "upstream-timeout");
    assert!(!r.text().contains("MARKER"));
}

#[tokio::test]
async fn an_open_breaker_is_503_with_retry_after() {
    let gw = Setup::new().delivery("breaker_failures = 2").delivery("breaker_open_ms = 60000").start().await;
    gw.recipient("esdc-sin-registry").respond_with(503, r#"{"detail": "MARKER-DOWN"}"#);
    for _ in 0..2 {
        let doc = ask(&gw).await.problem(502, "upstream-error");
        assert_eq!(doc["upstream_status"], 503);
    }
    let before = gw.recipient("esdc-sin-registry").received().len();
    let r = ask(&gw).await;
    r.problem(503, "upstream-unavailable");
    let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert!(!r.text().contains("MARKER"));
    assert_eq!(gw.recipient("esdc-sin-registry").received().len(), before, "an open breaker sends nothing");
    let page = gw.metrics().await;
    assert_eq!(metric(&page, "passerelle_circuit_breaker_state", &[("recipient", "esdc-sin-registry")]), 2.0);
}

#[tokio::test]
async fn requests_are_checked_like_records() {
    let gw = Setup::new().start().await;
    let mut bad = record("sin-validation-1.0.json");
    bad["sin"] = json!("12345");
    let r = gw.post_as("on-health-plan", PATH).json(&bad).send().await;
    let doc = r.problem(422, "schema-violation");
    assert_eq!(doc["violations"][0]["pointer"], "/sin");
    assert!(!r.text().contains("12345"));
    // Only the agreement's sender may ask.
    let r = gw.post_as("ottawa-city", PATH).json(&record("sin-validation-1.0.json")).send().await;
    r.problem(404, "no-agreement");
    assert!(gw.recipient("esdc-sin-registry").received().is_empty());
}

#[tokio::test]
async fn a_responder_asked_more_than_its_concurrency_at_once_keeps_its_connections() {
    // Twelve calls at once to a responder whose cap for deliveries is two: the gateway opens a
    // connection for each, then reuses them. An idle pool bounded by the cap closed ten of every
    // twelve after each answer, and opened them again for the next wave.
    let gw = Setup::new().delivery("concurrency_per_recipient = 2").start().await;
    let responder = gw.recipient("esdc-sin-registry");
    responder.respond_with(200, &answer("REF-1")).delay(Duration::from_millis(200));
    for wave in 0..3 {
        let answers = futures_util::future::join_all((0..12).map(|_| ask(&gw))).await;
        for r in answers {
            assert_eq!(r.status, StatusCode::OK, "wave {wave}: {}", r.text());
        }
    }
    assert_eq!(responder.received().len(), 36);
    let opened = responder.connections();
    assert!(opened <= 12, "{opened} connections opened for 3 waves of 12 calls");
}
