//! Every row of the design's ordered check table, each as a problem document, each leaving
//! nothing stored and nothing delivered.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const BIRTH: &str = "/v1/records/birth-registration";

fn bearer(gw: &TestGateway, partner: &str) -> String {
    format!("Bearer {}", gw.key(partner))
}

#[tokio::test]
async fn method_not_allowed_405() {
    let gw = Setup::new().start().await;
    let r = gw.client.request(Method::PUT, BIRTH).bearer(gw.key("on-vital-stats")).body("{}").send().await;
    r.problem(405, "method-not-allowed");
    assert_eq!(r.header("allow"), Some("POST"), "a record type takes POST only");
    // 405 comes before authentication.
    gw.client.send(Method::DELETE, "/v1/agreements", &[], "").await.problem(405, "method-not-allowed");
    gw.assert_nothing_stored_or_delivered().await;
}

#[tokio::test]
async fn missing_or_unknown_credentials_401() {
    let gw = Setup::new().start().await;
    let body = record("birth-registration-1.1.json");
    let r = gw.client.post(BIRTH).json(&body).send().await;
    r.problem(401, "unauthenticated");
    assert!(r.header("www-authenticate").is_some());
    for auth in ["Bearer psk_0000", "Basic dXNlcjpwYXNz", &format!("Bearer {}x", gw.key("on-vital-stats"))] {
        gw.client.post(BIRTH).header("authorization", auth).json(&body).send().await.problem(401, "unauthenticated");
    }
    let page = gw.metrics().await;
    assert_eq!(
        metric(&page, "passerelle_records_received_total", &[("sender", "unknown"), ("outcome", "unauthenticated")]),
        4.0
    );
    gw.assert_nothing_stored_or_delivered().await;
}

#[tokio::test]
async fn unknown_type_and_type_without_agreement_are_the_same_404() {
    let gw = Setup::new().start().await;
    let body = record("birth-registration-1.1.json");
    // cra-child-benefit receives births but may not send them; `marriage` does not exist.
    let not_party = gw.post_as("cra-child-benefit", BIRTH).json(&body).send().await;
    let unknown = gw.post_as("cra-child-benefit", "/v1/records/marriage").json(&body).send().await;
    let a = not_party.problem(404, "no-agreement");
    let b = unknown.problem(404, "no-agreement");
    assert_eq!(
        (a["title"].clone(), a["detail"].clone()),
        (b["title"].clone(), b["detail"].clone()),
        "an existing type is not revealed"
    );
    // A label that is not configured is counted as `unknown`, never as the raw path.
    let page = gw.metrics().await;
    assert!(!page.contains("marriage"));
    assert_eq!(
        metric(&page, "passerelle_records_received_total", &[("record_type", "unknown"), ("outcome", "not_found")]),
        1.0
    );
    gw.assert_nothing_stored_or_delivered().await;
}

#[tokio::test]
async fn agreements_not_in_force_403() {
    let expired = address_agreement("address-change-nt", "nt-vital-stats", "2020-01-01", "2021-01-01");
    let future = address_agreement("address-change-nt-next", "nt-vital-stats", "2099-01-01", "2100-01-01");
    let gw = Setup::new()
        .agreement("address-change-nt", &expired)
        .agreement("address-change-nt-next", &future)
        .start()
        .await;
    let r = gw.post_record("nt-vital-stats", "address-change", &record("address-change-1.0.json")).await;
    r.problem(403, "agreement-not-in-force");
    gw.assert_nothing_stored_or_delivered().await;
}

#[tokio::test]
async fn unknown_or_unaccepted_schema_version_404_lists_accepted() {
    let gw = Setup::new().start().await;
    let body = record("birth-registration-1.1.json");
    let r = gw.post_as("on-vital-stats", BIRTH).header("schema-version", "9.9").json(&body).send().await;
    let doc = r.problem(404, "unsupported-schema-version");
    assert_eq!(doc["accepted_versions"], json!(["1.0", "1.1"]));
    // The territorial agreement accepts 1.1 only, though 1.0 exists.
    let r = gw.post_as("nt-vital-stats", BIRTH).header("schema-version", "1.0").json(&body).send().await;
    assert_eq!(r.problem(404, "unsupported-schema-version")["accepted_versions"], json!(["1.1"]));
    let r = gw.post_as("on-vital-stats", BIRTH).header("schema-version", "one").json(&body).send().await;
    // Not a version at all: a malformed header, not an unknown version.
    assert_eq!(r.problem(400, "invalid-header")["header"], "Schema-Version");
    gw.assert_nothing_stored_or_delivered().await;
}

#[tokio::test]
async fn wrong_media_type_or_any_content_encoding_415() {
    let gw = Setup::new().start().await;
    let body = record("birth-registration-1.1.json").to_string();
    for headers in [
        vec![("content-type", "text/plain")],
        vec![],
        vec![("content-type", "application/json; charset=latin-1")],
        vec![("content-type", "application/jsonx")],
        vec![("content-type", "application/json"), ("content-encoding", "gzip")],
        vec![("content-type", "application/json"), ("content-encoding", "identity")],
    ] {
        let r = gw.post_as("on-vital-stats", BIRTH).headers(&headers).body(body.clone()).send().await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{headers:?}");
        assert!(r.json()["type"].as_str().unwrap().starts_with("urn:passerelle:problem:unsupported-"));
    }
    // Both spellings of the charset are fine.
    let ok = gw
        .post_as("on-vital-stats", BIRTH)
        .header("content-type", "Application/JSON; charset=\"UTF-8\"")
        .body(body)
        .send()
        .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn body_over_the_limit_413_declared_or_streamed() {
    let gw = Setup::new().limits("max_body_bytes = 4096").start().await;
    let auth = bearer(&gw, "on-vital-stats");
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(5000));
    gw.post_as("on-vital-stats", BIRTH).json_bytes(big.clone()).send().await.problem(413, "payload-too-large");
    // Without Content-Length (chunked), the limit holds while reading.
    let mut stream = tokio::net::TcpStream::connect(gw.gateway.as_ref().unwrap().partner_addr).await.unwrap();
    let mut request = format!(
        "POST {BIRTH} HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    for chunk in big.as_bytes().chunks(1000) {
        request.push_str(&format!("{:x}\r\n{}\r\n", chunk.len(), String::from_utf8_lossy(chunk)));
    }
    request.push_str("0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("urn:passerelle:problem:payload-too-large"));
    gw.assert_nothing_stored_or_delivered().await;
}

#[tokio::test]
async fn body_not_received_in_time_408() {
    let gw = Setup::new().limits("body_timeout_ms = 500").start().await;
    let mut stream = tokio::net::TcpStream::connect(gw.gateway.as_ref().unwrap().partner_addr).await.unwrap();
    let head = format!(
        "POST {BIRTH} HTTP/1.1\r\nhost: x\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"registration",
        bearer(&gw, "on-vital-stats")
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered before the test gave up")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("urn:passerelle:problem:body-timeout"));
    gw.assert_nothing_stored_or_delivered().await;
}

#[tokio::test]
async fn bodies_that_are_not_utf8_json_or_have_duplicate_keys_400() {
    let gw = Setup::new().start().await;
    let cases: [(&str, Vec<u8>); 5] = [
        ("not UTF-8", vec![b'{', 0xff, 0xfe, b'}']),
        ("not JSON", b"registration_number=ON-2026-000001".to_vec()),
        ("truncated", br#"{"registration_number": "ON-2026-0"#.to_vec()),
        (
            "duplicate keys",
            br#"{"registration_number": "ON-2026-000001", "registration_number": "ON-2026-000002"}"#.to_vec(),
        ),
        ("two documents", b"{} {}".to_vec()),
    ];
    for (what, body) in cases {
        let r = gw.post_as("on-vital-stats", BIRTH).json_bytes(body).send().await;
        let doc = r.problem(400, "malformed-json");
        assert!(!doc.to_string().contains("ON-2026"), "{what}: the problem echoes the body: {doc}");
    }
    gw.assert_nothing_stored_or_delivered().await;
}

#[tokio::test]
async fn nesting_deeper_than_the_limit_413_and_the_gateway_keeps_serving() {
    let gw = Setup::new().start().await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = gw.post_as("on-vital-stats", BIRTH).json_bytes(deep).send().await;
    r.problem(413, "nesting-too-deep");
    let ok = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(ok.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn schema_violations_422_list_every_violation_in_both_languages_without_values() {
    let gw = Setup::new().start().await;
    let invalid = record("birth-registration-1.1-invalid.json");
    let r = gw.post_record("on-vital-stats", "birth-registration", &invalid).await;
    let doc = r.problem(422, "schema-violation");
    assert_invalid_birth_violations(&doc);
    let violations = doc["violations"].as_array().unwrap();
    assert!(violations.iter().all(|v| v["message"].as_str().is_some_and(|m| !m.is_empty())));
    // No submitted value appears anywhere in the answer.
    let text = r.text();
    for value in ["Male", "m6j 2j1", "12/03/1991", "23:18:00"] {
        assert!(!text.contains(value), "the answer echoes {value:?}");
    }
    let fr = gw.post_as("on-vital-stats", BIRTH).header("accept-language", "fr-CA").json(&invalid).send().await;
    let doc = fr.problem(422, "schema-violation");
    assert_eq!(fr.header("content-language"), Some("fr"));
    assert_eq!(doc["title"], "L'enregistrement ne respecte pas son schéma");
    let required = doc["violations"].as_array().unwrap().iter().find(|v| v["keyword"] == "required").unwrap();
    assert_eq!(required["message"], "Le champ obligatoire « surname » est absent.");
    // Each of the two answers above counted its `format` violations.
    let formats = invalid_birth_violations().iter().filter(|(_, keyword)| keyword == "format").count();
    let page = gw.metrics().await;
    assert_eq!(
        metric(
            &page,
            "passerelle_validation_violations_total",
            &[("record_type", "birth-registration"), ("keyword", "format")]
        ),
        2.0 * formats as f64
    );
    assert_eq!(metric(&page, "passerelle_records_received_total", &[("outcome", "invalid")]), 2.0);
    gw.assert_nothing_stored_or_delivered().await;
}

#[tokio::test]
async fn idempotency_key_too_long_400() {
    let gw = Setup::new().start().await;
    let long = "k".repeat(257);
    let r = gw
        .post_as("on-vital-stats", BIRTH)
        .header("idempotency-key", &long)
        .json(&record("birth-registration-1.1.json"))
        .send()
        .await;
    r.problem(400, "invalid-idempotency-key");
    gw.assert_nothing_stored_or_delivered().await;
}

#[tokio::test]
async fn reused_idempotency_key_with_another_body_409_stores_nothing_new() {
    let gw = Setup::new().start().await;
    let body = record("birth-registration-1.1.json");
    let post = |b: &Value| gw.post_as("on-vital-stats", BIRTH).header("idempotency-key", "k1").json(b).send();
    assert_eq!(post(&body).await.status, StatusCode::ACCEPTED);
    let mut other = body.clone();
    other["registration_number"] = json!("ON-2026-000777");
    post(&other).await.problem(409, "idempotency-conflict");
    assert_eq!(gw.count("records"), 1);
    assert_eq!(gw.count("deliveries"), 4);
}

#[tokio::test]
async fn store_that_cannot_commit_503_and_nothing_is_acknowledged() {
    let gw = Setup::new().start().await;
    // Make the real SQLite transaction fail, as a full disk or a broken file would.
    gw.db()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'simulated failure'); END;",
        )
        .unwrap();
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    r.problem(503, "store-unavailable");
    assert!(r.header("retry-after").is_some());
    gw.assert_nothing_stored_or_delivered().await;
    let page = gw.metrics().await;
    assert_eq!(metric(&page, "passerelle_records_received_total", &[("outcome", "unavailable")]), 1.0);
    // Once the store works again, so does intake.
    gw.db().execute_batch("DROP TRIGGER refuse;").unwrap();
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn problems_are_in_french_when_asked() {
    let gw = Setup::new().start().await;
    let r = gw
        .client
        .send(Method::POST, BIRTH, &[("content-type", "application/json"), ("accept-language", "fr")], "{}")
        .await;
    let doc = r.problem(401, "unauthenticated");
    assert_eq!(doc["title"], "Authentification requise");
    let r = gw
        .client
        .send(
            Method::POST,
            BIRTH,
            &[("content-type", "application/json"), ("accept-language", "en-CA, fr;q=0.5")],
            "{}",
        )
        .await;
    assert_eq!(r.problem(401, "unauthenticated")["title"], "Authentication required");
}

#[tokio::test]
async fn headers_too_large_431() {
    let gw = Setup::new().start().await;
    // Over the configured limit (16 KiB): a problem document, before anything else is looked at.
    let padding = "a".repeat(20 * 1024);
    let r = gw.client.send(Method::PUT, BIRTH, &[("x-padding", &padding)], "{}").await;
    r.problem(431, "headers-too-large");
    // Far over it (beyond hyper's hard cap of twice the limit), hyper answers 431 itself.
    let mut stream = tokio::net::TcpStream::connect(gw.gateway.as_ref().unwrap().partner_addr).await.unwrap();
    let head = format!(
        "POST {BIRTH} HTTP/1.1\r\nhost: x\r\nx-padding: {}\r\ncontent-length: 2\r\n\r\n{{}}",
        "a".repeat(64 * 1024)
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    gw.assert_nothing_stored_or_delivered().await;
}

#[tokio::test]
async fn over_the_rate_limit_429_with_retry_after() {
    // A bucket that refills slowly: 1 every 5 s, bursts of 3.
    let gw = Setup::new()
        .edit_partners("rate_limit = { per_second = 50, burst = 100 }", "rate_limit = { per_second = 0.2, burst = 3 }")
        .start()
        .await;
    let mut limited = None;
    for _ in 0..10 {
        let r = gw.client.get("/v1/agreements", gw.key("nt-vital-stats")).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the burst of 3 ran out");
    r.problem(429, "rate-limited");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // Rate limits are per partner: another partner is not affected.
    let other = gw.client.get("/v1/agreements", gw.key("on-vital-stats")).await;
    assert_eq!(other.status, StatusCode::OK);
    // A record over the limit is refused before anything else, and counted.
    let r = gw.post_record("nt-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    r.problem(429, "rate-limited");
    let page = gw.metrics().await;
    assert_eq!(
        metric(
            &page,
            "passerelle_records_received_total",
            &[("sender", "nt-vital-stats"), ("outcome", "rate_limited")]
        ),
        1.0
    );
    gw.assert_nothing_stored_or_delivered().await;
}

#[tokio::test]
async fn checks_run_in_the_table_order() {
    let gw = Setup::new().start().await;
    // Oversized headers beat everything (1 before 2).
    let padding = "a".repeat(20 * 1024);
    gw.client.send(Method::PATCH, BIRTH, &[("x-padding", &padding)], "x").await.problem(431, "headers-too-large");
    // Wrong method beats missing credentials (2 before 3).
    gw.client
        .send(Method::PATCH, BIRTH, &[("content-type", "text/plain")], "x")
        .await
        .problem(405, "method-not-allowed");
    // Missing credentials beat a wrong media type and a bad body (3 before 8 and 11).
    gw.client.send(Method::POST, BIRTH, &[("content-type", "text/plain")], "x").await.problem(401, "unauthenticated");
    let post = |path: &str| gw.post_as("on-vital-stats", path);
    // No agreement beats a wrong media type (5 before 8).
    post("/v1/records/address-change")
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .problem(404, "no-agreement");
    // A wrong version beats a wrong media type (7 before 8).
    post(BIRTH)
        .header("content-type", "text/plain")
        .header("schema-version", "3.0")
        .body("x")
        .send()
        .await
        .problem(404, "unsupported-schema-version");
    // A wrong media type beats a bad body (8 before 11).
    post(BIRTH).header("content-type", "text/plain").body("x").send().await.problem(415, "unsupported-media-type");
    // Malformed JSON beats the idempotency key (11 before 14).
    let long_key = "k".repeat(300);
    post(BIRTH).header("idempotency-key", &long_key).json_bytes("{").send().await.problem(400, "malformed-json");
    // Schema violations beat the idempotency key (13 before 14).
    let invalid = record("birth-registration-1.1-invalid.json");
    post(BIRTH).header("idempotency-key", &long_key).json(&invalid).send().await.problem(422, "schema-violation");
    gw.assert_nothing_stored_or_delivered().await;
}

/// Found by Schemathesis: `OPTIONS /v1/records/birth-registration` answered `Allow: GET, POST`
/// though only POST is served there, and `OPTIONS /v1/records/{id}` advertised POST.
#[tokio::test]
async fn allow_lists_exactly_the_methods_of_the_route() {
    let gw = Setup::new().start().await;
    let id = "/v1/records/01900000-0000-7000-8000-000000000000";
    for (path, allow) in [
        (BIRTH, "POST"),
        (id, "GET, HEAD"),
        ("/v1/records", "GET, HEAD"),
        ("/v1/validate/birth-registration", "POST"),
        ("/v1/schemas/birth-registration/1.1", "GET, HEAD"),
    ] {
        for method in [Method::OPTIONS, Method::PATCH, Method::DELETE] {
            let r = gw.client.send(method.clone(), path, &[], "").await;
            r.problem(405, "method-not-allowed");
            assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        }
    }
    // The methods Allow names are served (here: refused for credentials, not for the method).
    gw.client.send(Method::GET, id, &[], "").await.problem(401, "unauthenticated");
    gw.client.send(Method::HEAD, "/v1/records", &[], "").await;
}

/// Found by Schemathesis: `POST //v1/records/birth-registration` was accepted and stored.
#[tokio::test]
async fn a_path_that_is_not_exactly_a_route_is_404_and_stores_nothing() {
    let gw = Setup::new().start().await;
    let body = record("birth-registration-1.1.json");
    for path in
        ["//v1/records/birth-registration", "/v1//records/birth-registration", "/v1/records/birth-registration/"]
    {
        gw.post_as("on-vital-stats", path).json(&body).send().await.problem(404, "not-found");
    }
    gw.assert_nothing_stored_or_delivered().await;
}
