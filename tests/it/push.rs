//! The push path end to end: receipt, projection on the exact bytes, group commit, idempotency.

use std::collections::BTreeSet;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const BIRTH: &str = "/v1/records/birth-registration";

/// Every leaf path of a JSON document, with array indices replaced by `*`.
fn leaves(value: &Value, prefix: String, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => map.iter().for_each(|(k, v)| leaves(v, format!("{prefix}/{k}"), out)),
        Value::Array(items) => items.iter().for_each(|v| leaves(v, format!("{prefix}/*"), out)),
        _ => {
            out.insert(prefix);
        }
    }
}

#[tokio::test]
async fn birth_bundle_reaches_each_recipient_with_only_its_fields() {
    let gw = Setup::new().start().await;
    let record = record("birth-registration-1.1.json");
    let r = gw.post_record("on-vital-stats", "birth-registration", &record).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let receipt = r.json();
    let id = receipt["record_id"].as_str().unwrap().to_owned();
    assert_eq!(r.header("location"), Some(format!("/v1/records/{id}").as_str()));
    assert_eq!(receipt["record_type"], "birth-registration");
    assert_eq!(receipt["schema_version"], "1.1");
    assert_eq!(receipt["sender"], "on-vital-stats");
    let created: BTreeSet<(String, String)> = receipt["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["recipient"].as_str().unwrap().to_owned(), d["agreement"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        created,
        [
            ("esdc-sin-registry", "birth-federal-on"),
            ("cra-child-benefit", "birth-federal-on"),
            ("on-health-plan", "birth-ohip"),
            ("ottawa-city", "birth-ottawa"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    );

    // The city gets three fields; compare the exact bytes, canonical form included.
    let city = gw.recipient("ottawa-city").wait_for(1, Duration::from_secs(5)).await;
    let p0 = record["parents"][0]["address"]["postal_code"].as_str().unwrap();
    let p1 = record["parents"][1]["address"]["postal_code"].as_str().unwrap();
    let expected = format!(
        r#"{{"child":{{"date_of_birth":"{}","place_of_birth":{{"municipality":"{}"}}}},"parents":[{{"address":{{"postal_code":"{p0}"}}}},{{"address":{{"postal_code":"{p1}"}}}}]}}"#,
        record["child"]["date_of_birth"].as_str().unwrap(),
        record["child"]["place_of_birth"]["municipality"].as_str().unwrap(),
    );
    assert_eq!(String::from_utf8_lossy(&city[0].body), expected);
    assert_eq!(city[0].path, "/inbox/birth-registration");

    let allowed: [(&str, &[&str]); 4] = [
        (
            "esdc-sin-registry",
            &[
                "/registration_number",
                "/child/given_names/*",
                "/child/surname",
                "/child/date_of_birth",
                "/child/sex_at_birth",
                "/child/place_of_birth/facility_name",
                "/child/place_of_birth/municipality",
                "/child/place_of_birth/province",
                "/parents/*/role",
                "/parents/*/given_names/*",
                "/parents/*/surname",
                "/parents/*/date_of_birth",
            ],
        ),
        (
            "cra-child-benefit",
            &[
                "/registration_number",
                "/child/given_names/*",
                "/child/surname",
                "/child/date_of_birth",
                "/parents/*/role",
                "/parents/*/given_names/*",
                "/parents/*/surname",
                "/parents/*/address/street",
                "/parents/*/address/unit",
                "/parents/*/address/municipality",
                "/parents/*/address/province",
                "/parents/*/address/postal_code",
                "/parents/*/address/country",
            ],
        ),
        (
            "on-health-plan",
            &[
                "/registration_number",
                "/child/given_names/*",
                "/child/surname",
                "/child/date_of_birth",
                "/child/sex_at_birth",
                "/parents/*/surname",
                "/parents/*/address/street",
                "/parents/*/address/unit",
                "/parents/*/address/municipality",
                "/parents/*/address/province",
                "/parents/*/address/postal_code",
                "/parents/*/address/country",
            ],
        ),
        (
            "ottawa-city",
            &["/child/date_of_birth", "/child/place_of_birth/municipality", "/parents/*/address/postal_code"],
        ),
    ];
    for (recipient, fields) in allowed {
        let got = gw.recipient(recipient).wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(got.len(), 1, "{recipient} received once");
        let delivery = &got[0];
        let mut paths = BTreeSet::new();
        leaves(&delivery.json(), String::new(), &mut paths);
        for p in &paths {
            assert!(fields.contains(&p.as_str()), "{recipient} received {p}, outside its list");
        }
        assert!(paths.contains("/child/date_of_birth"));
        // Canonical: re-serialising with sorted keys gives the same bytes.
        assert_eq!(delivery.body, passerelle::json::to_canonical_vec(&delivery.json()));
        assert_eq!(delivery.header("passerelle-record-id"), Some(id.as_str()));
        assert_eq!(delivery.header("passerelle-sender"), Some("on-vital-stats"));
        // The health plan is pinned to 1.0 (config/agreements/birth-ohip.toml): translated.
        let version = if recipient == "on-health-plan" { "1.0" } else { "1.1" };
        assert_eq!(delivery.header("passerelle-schema"), Some(format!("birth-registration/{version}").as_str()));
        assert_eq!(delivery.header("content-type"), Some("application/json"));
        assert!(delivery.header("passerelle-agreement").is_some());
        assert!(delivery.header("idempotency-key").is_some_and(|k| k.contains(&id)));
        assert!(delivery.header("traceparent").is_some_and(|t| t.starts_with("00-")));
        // And it is what the view the recipient reads says it receives.
        assert_eq!(gw.assert_received_in_view(recipient).await, 1, "{recipient}");
    }
    // Nothing outside the birth bundle's fields, such as the 1.1-only SIN application flag, left.
    assert!(gw.recipients.values().all(|m| m.received().iter().all(|r| r.json().get("sin_application").is_none())));
}

/// Found trying the product as a partner developer: `traceparent` was passed through unchanged
/// (no new parent-id) and `tracestate` was dropped. Each hop (the intake, then each delivery
/// attempt) gets a span id of its own, in the caller's trace (W3C Trace Context level 1).
#[tokio::test]
async fn each_hop_continues_the_callers_trace_with_its_own_span_and_passes_tracestate_on() {
    let gw = Setup::new().start().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let tp = format!("00-{trace}-00f067aa0ba902b7-01");
    let r = gw
        .post_as("on-vital-stats", BIRTH)
        .header("traceparent", &tp)
        .header("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        .json(&record("birth-registration-1.1.json"))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let mut parents = BTreeSet::new();
    for (id, _) in RECIPIENTS {
        let got = gw.recipient(id).wait_for(1, Duration::from_secs(5)).await;
        let sent = got[0].header("traceparent").unwrap().to_owned();
        let parts: Vec<&str> = sent.split('-').collect();
        assert_eq!((parts[0], parts[1], parts[3]), ("00", trace, "01"), "{id}: same trace, same flags");
        assert_ne!(parts[2], "00f067aa0ba902b7", "{id}: the gateway's own span is the parent");
        parents.insert(parts[2].to_owned());
        assert_eq!(got[0].header("tracestate"), Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"), "{id}");
    }
    assert_eq!(parents.len(), RECIPIENTS.len(), "each delivery attempt is a span of its own");
    // Without a traceparent, a new trace starts: every recipient still gets a well-formed one.
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let got = gw.recipient("ottawa-city").wait_for(2, Duration::from_secs(5)).await;
    let sent = got[1].header("traceparent").unwrap();
    assert!(sent.starts_with("00-") && !sent.contains(trace) && sent.len() == 55, "{sent}");
    assert_eq!(got[1].header("tracestate"), None);
}

/// The OpenAPI document promised a `Passerelle-Request-Id` on every answer; none was sent.
#[tokio::test]
async fn every_partner_answer_carries_a_request_id() {
    let gw = Setup::new().start().await;
    let key = gw.key("on-vital-stats");
    let answers = [
        gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await,
        gw.client.send(Method::POST, BIRTH, &[], "{}").await,
        gw.client.send(Method::GET, "/nowhere", &[], "").await,
        gw.client.request(Method::HEAD, "/v1/agreements").bearer(key).send().await,
        gw.client.get("/v1/agreements", key).await,
    ];
    let mut ids = BTreeSet::new();
    for a in &answers {
        let id = a.header("passerelle-request-id").unwrap_or_else(|| panic!("no request id on a {}", a.status));
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        ids.insert(id.to_owned());
    }
    assert_eq!(ids.len(), answers.len(), "one id per request");
}

#[tokio::test]
async fn deprecated_version_is_accepted_with_deprecation_and_sunset() {
    let gw = Setup::new().start().await;
    let r = gw
        .post_as("on-vital-stats", BIRTH)
        .header("schema-version", "1.0")
        .json(&record("birth-registration-1.0.json"))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json()["schema_version"], "1.0");
    assert!(r.header("deprecation").is_some_and(|d| d.starts_with('@')));
    assert_eq!(r.header("sunset"), Some("Wed, 30 Jun 2027 00:00:00 GMT"));
    // A version with no sunset announces nothing.
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert!(r.header("deprecation").is_none() && r.header("sunset").is_none());
}

#[tokio::test]
async fn concurrent_requests_share_commits() {
    let gw = Setup::new().start().await;
    let body = record("birth-registration-1.1.json");
    let n = 200;
    let mut tasks = Vec::new();
    for _ in 0..n {
        let request = gw.post_as("on-vital-stats", BIRTH).json(&body);
        tasks.push(tokio::spawn(async move { request.send().await.status }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::ACCEPTED);
    }
    let page = gw.metrics().await;
    let records = metric(&page, "passerelle_store_commit_batch_size_sum", &[]);
    let commits = metric(&page, "passerelle_store_commit_batch_size_count", &[]);
    assert_eq!(records, n as f64);
    assert!(commits < records, "{commits} commits carried {records} records: no commit was shared");
    assert_eq!(gw.count("records"), n);
    assert_eq!(gw.count("deliveries"), 4 * n);
    let accepted = gw.audited("record.accepted", |_| true).await;
    assert_eq!(accepted as i64, n, "one audit entry per record, in its transaction");
}

async fn post_with_key(gw: &TestGateway, key: &str, body: &Value) -> TestResponse {
    gw.post_as("on-vital-stats", BIRTH).header("idempotency-key", key).json(body).send().await
}

#[tokio::test]
async fn idempotency_key_replays_the_receipt_or_conflicts() {
    let gw = Setup::new().start().await;
    let body = record("birth-registration-1.1.json");
    let first = post_with_key(&gw, "order-42", &body).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert!(first.header("idempotent-replayed").is_none());
    let again = post_with_key(&gw, "order-42", &body).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body, "the original receipt, byte for byte");

    let mut other = body.clone();
    other["registration_number"] = json!("ON-2026-999999");
    let conflict = post_with_key(&gw, "order-42", &other).await;
    conflict.problem(409, "idempotency-conflict");

    // The key is per sender: another sender may use the same key.
    let nt = gw.post_as("nt-vital-stats", BIRTH).header("idempotency-key", "order-42").json(&body).send().await;
    assert_eq!(nt.status, StatusCode::ACCEPTED);
    assert_ne!(nt.json()["record_id"], first.json()["record_id"]);

    assert_eq!(gw.count("records"), 2);
    let page = gw.metrics().await;
    assert_eq!(metric(&page, "passerelle_records_received_total", &[("outcome", "duplicate")]), 1.0);
    assert_eq!(metric(&page, "passerelle_records_received_total", &[("outcome", "conflict")]), 1.0);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_make_one_record() {
    let gw = Setup::new().start().await;
    let body = record("birth-registration-1.1.json");
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let request = gw.post_as("on-vital-stats", BIRTH).header("idempotency-key", "race").json(&body);
        tasks.push(tokio::spawn(request.send()));
    }
    let mut ids = BTreeSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, StatusCode::ACCEPTED);
        ids.insert(r.json()["record_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1, "every racer got the same record");
    assert_eq!(gw.count("records"), 1);
    assert_eq!(gw.count("deliveries"), 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gw.recipient("ottawa-city").received().len(), 1);
}
