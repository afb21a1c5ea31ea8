//! Bundle completion: a record is complete once every recipient has it. The sender sees when
//! (`complete`, `completed_at`), lists its records by it (`?status=complete|incomplete`), and
//! operators see the time from acceptance to the last delivery per record type.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Posts a birth registration as the Ontario office; its record id.
async fn post_birth(gw: &TestGateway) -> String {
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    r.json()["record_id"].as_str().unwrap().to_owned()
}

/// The record's view once `done` holds of it (or a panic after 15 s), checked against the
/// partner's OpenAPI document.
async fn wait_until(gw: &TestGateway, doc: &Value, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = gw.client.get(&format!("/v1/records/{id}"), gw.key("on-vital-stats")).await;
        let view = answer.json();
        if done(&view) {
            assert_documented(doc, "get", "/v1/records/{record_id}", &answer);
            return view;
        }
        assert!(Instant::now() < deadline, "never {what}: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ids of the caller's records that `?status=` selects, newest first, the page checked
/// against the partner's OpenAPI document.
async fn listed(gw: &TestGateway, doc: &Value, status: &str) -> Vec<String> {
    let page = gw.client.get(&format!("/v1/records?status={status}"), gw.key("on-vital-stats")).await;
    assert_eq!(page.status.as_u16(), 200, "{}", page.text());
    assert_documented(doc, "get", "/v1/records", &page);
    let records = page.json()["records"].as_array().unwrap().clone();
    records.iter().map(|r| r["record_id"].as_str().unwrap().to_owned()).collect()
}

fn ms(time: &Value) -> i64 {
    passerelle::clock::parse_rfc3339_ms(time.as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_bundle_is_complete_when_its_last_recipient_has_it() {
    // The health plan is down at first; retries must not open its breaker for this test.
    let gw = Setup::new().delivery("breaker_failures = 100").start().await;
    gw.recipient("on-health-plan").respond(503);
    let doc = partner_document(&gw, "on-vital-stats").await;
    let bundle = post_birth(&gw).await;
    let others = ["esdc-sin-registry", "cra-child-benefit", "ottawa-city"];
    let delivered = |view: &Value, recipient: &str| {
        view["deliveries"].as_array().unwrap().iter().any(|d| d["recipient"] == recipient && d["status"] == "delivered")
    };
    let partial =
        wait_until(&gw, &doc, &bundle, "delivered to the three others", |v| others.iter().all(|r| delivered(v, r)))
            .await;
    assert_eq!(
        (&partial["status"], &partial["complete"], &partial["completed_at"]),
        (&"pending".into(), &false.into(), &Value::Null)
    );
    assert_eq!(listed(&gw, &doc, "incomplete").await, [bundle.as_str()]);
    assert!(listed(&gw, &doc, "complete").await.is_empty());
    let page = gw.metrics().await;
    assert_eq!(metric(&page, "passerelle_record_completion_seconds_count", &[]), 0.0, "three of four is not complete");

    // The health plan comes back: the bundle is complete when its delivery arrives.
    gw.recipient("on-health-plan").respond(200);
    let complete = wait_until(&gw, &doc, &bundle, "complete", |v| v["complete"] == true).await;
    assert_eq!(complete["status"], "delivered");
    let last = complete["deliveries"].as_array().unwrap().iter().map(|d| ms(&d["delivered_at"])).max().unwrap();
    let health =
        complete["deliveries"].as_array().unwrap().iter().find(|d| d["recipient"] == "on-health-plan").unwrap();
    assert!(health["attempts"].as_u64().unwrap() > 1, "{health}");
    assert_eq!(ms(&complete["completed_at"]), last, "the time of the last delivery: {complete}");
    assert_eq!(ms(&health["delivered_at"]), last, "the health plan's, which came last");

    // Another record waits for the city: the filters tell the two apart.
    gw.recipient("ottawa-city").respond(503);
    let waiting = post_birth(&gw).await;
    assert_eq!(listed(&gw, &doc, "complete").await, [bundle.as_str()]);
    assert_eq!(listed(&gw, &doc, "delivered").await, [bundle.as_str()], "complete is the delivered state");
    assert_eq!(listed(&gw, &doc, "incomplete").await, [waiting.as_str()]);
    assert_eq!(listed(&gw, &doc, "pending").await, [waiting.as_str()]);
    let all = gw.client.get("/v1/records", gw.key("on-vital-stats")).await.json();
    let shown: Vec<(&Value, &Value)> =
        all["records"].as_array().unwrap().iter().map(|r| (&r["complete"], &r["completed_at"])).collect();
    assert_eq!(shown, [(&false.into(), &Value::Null), (&true.into(), &complete["completed_at"])], "newest first");
    for bad in ["completed", "COMPLETE", "complete,pending"] {
        gw.client
            .get(&format!("/v1/records?status={bad}"), gw.key("on-vital-stats"))
            .await
            .problem(400, "invalid-query");
    }

    // Operators count each completion once, by record type, from acceptance to the last delivery.
    let page = gw.metrics().await;
    let birth = [("record_type", "birth-registration")];
    assert_eq!(metric(&page, "passerelle_record_completion_seconds_count", &birth), 1.0);
    let seconds = (last - ms(&complete["received_at"])) as f64 / 1000.0;
    let counted = metric(&page, "passerelle_record_completion_seconds_sum", &birth);
    assert!((counted - seconds).abs() < 0.001, "counted {counted} s, the record took {seconds} s");
    assert!(page.contains("passerelle_record_completion_seconds_bucket{record_type=\"birth-registration\",le=\"1\"}"));
}
