//! Batch delivery: a recipient that asks for it gets several records per POST, each with its own
//! idempotency key and signature, answers per record, and each record then has its own result,
//! retries, dead letter and audit entries; a failed POST retries every record of it.

use std::time::Duration;

use http::StatusCode;
use passerelle::delivery::signature;
use serde_json::Value;

use crate::dead_letters::dead_of;
use crate::delivery::{delivery, post_birth, wait_status};
use crate::signature::verify_delivery_object;
use crate::support::*;

const SIN: &str = "esdc-sin-registry";
const SHIPPED: &str = "endpoint = \"http://127.0.0.1:18101/inbox\"\n";

/// A gateway whose SIN registry takes batches of up to ten records, waiting up to `wait_ms`.
async fn batched(wait_ms: u64) -> TestGateway {
    let line = format!("{SHIPPED}batch = {{ max_records = 10, max_wait_ms = {wait_ms} }}\n");
    Setup::new().delivery("breaker_failures = 100").edit_partners(SHIPPED, &line).start().await
}

/// The records of a batch the mock received.
fn records(received: &mock::Received) -> Vec<Value> {
    assert_eq!(received.header("content-type"), Some(passerelle::delivery::batch::CONTENT_TYPE));
    received.json()["records"].as_array().expect("records").clone()
}

/// How many audit entries of `kind` name `record_id` and the SIN registry.
async fn audited(gw: &TestGateway, kind: &str, record_id: &str) -> usize {
    gw.audited(kind, |e| e.record_id.as_deref() == Some(record_id) && e.recipient.as_deref() == Some(SIN)).await
}

#[tokio::test]
async fn each_record_of_a_batch_is_answered_retried_dead_lettered_audited_and_signed_on_its_own() {
    let gw = batched(1000).await;
    let sin = gw.recipient(SIN);
    // Of one batch of three: the first taken, the second refused, the third busy, then taken.
    sin.answer_records(&[200, 400, 503]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(post_birth(&gw).await);
    }
    wait_status(&gw, &ids[0], SIN, "delivered").await;
    wait_status(&gw, &ids[1], SIN, "dead").await;
    let view = wait_status(&gw, &ids[2], SIN, "delivered").await;
    assert_eq!(delivery(&view, SIN)["attempts"], 2);

    // Two POSTs: the three records, then the retried one alone, each record under its own key.
    let got = sin.received();
    assert_eq!(got.len(), 2, "{got:?}");
    let (first, retry) = (records(&got[0]), records(&got[1]));
    let keys = |batch: &[Value]| -> Vec<String> {
        batch.iter().map(|r| r["idempotency_key"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(keys(&first), ids.iter().map(|id| format!("{id}.{SIN}")).collect::<Vec<_>>());
    assert_eq!(keys(&retry), [format!("{}.{SIN}", ids[2])]);
    assert_eq!(retry[0]["signature"], first[2]["signature"], "a retry carries the same signature");

    // Each record's signature verifies over its body's bytes exactly as they stand in the batch.
    let (_, keys) = {
        let r = gw.client.get("/v1/keys", gw.key(SIN)).await;
        assert_eq!(r.status, StatusCode::OK);
        (r.text(), signature::read_public_keys(&r.text(), "GET /v1/keys").unwrap())
    };
    let text = std::str::from_utf8(&got[0].body).unwrap();
    for (record, id) in first.iter().zip(&ids) {
        assert_eq!(&verify_delivery_object(&keys, record, text, SIN).facts.record_id, id);
    }

    // The recipient's contract documents the batch, and what it received is valid under it.
    let doc = partner_document(&gw, SIN).await;
    let webhook = &doc["webhooks"]["batch"]["post"];
    let schema = &webhook["requestBody"]["content"][passerelle::delivery::batch::CONTENT_TYPE]["schema"];
    assert_eq!(schema["properties"]["records"]["maxItems"], 10);
    for batch in &got {
        let errors: Vec<String> = validator(&doc, schema).iter_errors(&batch.json()).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
    let answer = &webhook["responses"]["200"]["content"]["application/json"]["schema"];
    let answered = serde_json::json!({"results": [{"idempotency_key": first[0]["idempotency_key"], "status": 200}]});
    assert!(validator(&doc, answer).is_valid(&answered));

    // The audit trail, the dead letters and the metrics count each record on its own.
    assert_eq!(audited(&gw, "delivery.delivered", &ids[0]).await, 1);
    assert_eq!(audited(&gw, "delivery.dead", &ids[1]).await, 1);
    assert_eq!(audited(&gw, "delivery.retried", &ids[2]).await, 1);
    assert_eq!(audited(&gw, "delivery.delivered", &ids[2]).await, 1);
    let dead = dead_of(&gw, SIN).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["record_id"], ids[1].as_str());
    let page = gw.metrics().await;
    let count = |outcome| metric(&page, "passerelle_deliveries_total", &[("recipient", SIN), ("outcome", outcome)]);
    assert_eq!((count("delivered"), count("dead"), count("retry")), (2.0, 1.0, 1.0));
}

#[tokio::test]
async fn a_failed_batch_post_retries_every_record_of_it() {
    let gw = batched(500).await;
    let sin = gw.recipient(SIN);
    sin.fail_times(1, 503);
    let ids = [post_birth(&gw).await, post_birth(&gw).await];
    for id in &ids {
        let view = wait_status(&gw, id, SIN, "delivered").await;
        assert_eq!(delivery(&view, SIN)["attempts"], 2);
        assert_eq!(audited(&gw, "delivery.retried", id).await, 1);
    }
    let got = sin.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2, "one failed POST, one retry of both records");
    assert!(got.iter().all(|r| records(r).len() == 2));
    // Recipients that did not ask for batches still get one record per POST.
    let health = gw.recipient("cra-child-benefit").wait_for(2, Duration::from_secs(5)).await;
    assert!(health.iter().all(|r| r.header("content-type") == Some("application/json")));
}
