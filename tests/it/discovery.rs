//! Status and discovery: a partner sees its own records, agreements and schemas, and no others.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn record_status_is_visible_to_its_sender_only() {
    let gw = Setup::new().start().await;
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    let id = r.json()["record_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/records/{id}");
    let mut view = Value::Null;
    for _ in 0..100 {
        view = gw.client.get(&path, gw.key("on-vital-stats")).await.json();
        if view["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(view["status"], "delivered", "{view}");
    assert_eq!(view["record_id"], id.as_str());
    assert_eq!(view["deliveries"].as_array().unwrap().len(), 4);
    assert!(
        view["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "delivered" && d["delivered_at"].is_string())
    );
    // A recipient of the record, or any other partner, gets the same 404 as for no record.
    for other in ["ottawa-city", "nt-vital-stats"] {
        gw.client.get(&path, gw.key(other)).await.problem(404, "record-not-found");
    }
    gw.client
        .get("/v1/records/01900000-0000-7000-8000-000000000000", gw.key("on-vital-stats"))
        .await
        .problem(404, "record-not-found");
    // A path that is not a record id is a record type, which takes POST only.
    let r = gw.client.get("/v1/records/..%2F..%2Fetc%2Fpasswd", gw.key("on-vital-stats")).await;
    r.problem(405, "method-not-allowed");
    assert_eq!(r.header("allow"), Some("POST"));
    gw.client.send(Method::GET, &path, &[], "").await.problem(401, "unauthenticated");
}

#[tokio::test]
async fn record_list_is_the_callers_own_newest_first_and_paged() {
    let gw = Setup::new().start().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
        ids.push(r.json()["record_id"].as_str().unwrap().to_owned());
    }
    gw.post_record("nt-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    let key = gw.key("on-vital-stats");
    let first = gw.client.get("/v1/records?limit=3", key).await.json();
    let page1: Vec<&str> =
        first["records"].as_array().unwrap().iter().map(|r| r["record_id"].as_str().unwrap()).collect();
    assert_eq!(page1, ids.iter().rev().take(3).map(String::as_str).collect::<Vec<_>>());
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = gw.client.get(&format!("/v1/records?limit=3&cursor={cursor}"), key).await.json();
    let page2: Vec<&str> =
        second["records"].as_array().unwrap().iter().map(|r| r["record_id"].as_str().unwrap()).collect();
    assert_eq!(page2, ids.iter().rev().skip(3).map(String::as_str).collect::<Vec<_>>());
    // Filters.
    let future = gw.client.get("/v1/records?since=2999-01-01T00:00:00Z", key).await.json();
    assert!(future["records"].as_array().unwrap().is_empty());
    let past = gw.client.get("/v1/records?since=2020-01-01T00%3A00%3A00Z", key).await.json();
    assert_eq!(past["records"].as_array().unwrap().len(), 5);
    let failed = gw.client.get("/v1/records?status=failed", key).await.json();
    assert!(failed["records"].as_array().unwrap().is_empty());
    gw.client.get("/v1/records?status=lost", key).await.problem(400, "invalid-query");
    gw.client.get("/v1/records?limit=100000", key).await.problem(400, "invalid-query");
    // The territorial office sees only its own record.
    let nt = gw.client.get("/v1/records", gw.key("nt-vital-stats")).await.json();
    assert_eq!(nt["records"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn validate_is_a_dry_run() {
    let gw = Setup::new().start().await;
    let validate = |body: &Value| gw.post_as("on-vital-stats", "/v1/validate/birth-registration").json(body).send();
    let ok = validate(&record("birth-registration-1.1.json")).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.json()["valid"], true);
    let bad = validate(&record("birth-registration-1.1-invalid.json")).await;
    assert_invalid_birth_violations(&bad.problem(422, "schema-violation"));
    gw.assert_nothing_stored_or_delivered().await;
}

/// Found trying the product as an operator: a valid dry run was counted with an empty outcome,
/// listed by the console as a rejection and fired the sender rejection-ratio alert.
#[tokio::test]
async fn a_valid_dry_run_is_counted_as_validated_never_as_a_rejection() {
    let gw = Setup::new().start().await;
    for body in [record("birth-registration-1.1.json"), record("birth-registration-1.1.json"), json!({})] {
        gw.post_as("on-vital-stats", "/v1/validate/birth-registration").json(&body).send().await;
    }
    let page = gw.metrics().await;
    let count = |outcome: &str| {
        metric(
            &page,
            "passerelle_records_received_total",
            &[("sender", "on-vital-stats"), ("record_type", "birth-registration"), ("outcome", outcome)],
        )
    };
    assert_eq!(count("validated"), 2.0);
    assert_eq!(count("invalid"), 1.0);
    assert!(!page.contains("outcome=\"\""), "no series has an empty outcome:\n{page}");
    let overview = gw.admin.get("/admin/v1/overview", "test-admin-token").await.json();
    let row = overview["senders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["sender"] == "on-vital-stats" && r["record_type"] == "birth-registration")
        .unwrap()
        .clone();
    assert_eq!(row["rejected"], 1, "{row}");
    assert_eq!(row["accepted"], 0, "{row}");
}

fn schema_list(doc: &Value) -> Vec<(String, String, String)> {
    doc["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["record_type"].as_str().unwrap().into(),
                s["version"].as_str().unwrap().into(),
                s["role"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[tokio::test]
async fn schemas_and_agreements_are_limited_to_what_the_caller_is_party_to() {
    let gw = Setup::new().start().await;
    let sender = schema_list(&gw.client.get("/v1/schemas", gw.key("on-vital-stats")).await.json());
    assert_eq!(
        sender,
        vec![
            ("birth-registration".into(), "1.0".into(), "send".into()),
            ("birth-registration".into(), "1.1".into(), "send".into())
        ]
    );
    let city = schema_list(&gw.client.get("/v1/schemas", gw.key("ottawa-city")).await.json());
    assert!(city.contains(&("address-change".into(), "1.0".into(), "receive".into())));
    assert!(!city.iter().any(|(t, _, _)| t == "sin-validation"));

    let schema = gw.client.get("/v1/schemas/birth-registration/1.1", gw.key("ottawa-city")).await;
    assert_eq!(schema.status, StatusCode::OK);
    assert!(schema.json()["properties"]["child"].is_object());
    gw.client.get("/v1/schemas/sin-validation/1.0", gw.key("ottawa-city")).await.problem(404, "schema-not-found");
    gw.client.get("/v1/schemas/..%2Fcommon/definitions", gw.key("ottawa-city")).await.problem(404, "schema-not-found");

    let agreements = gw.client.get("/v1/agreements", gw.key("ottawa-city")).await.json();
    let list = agreements["agreements"].as_array().unwrap();
    let ids: Vec<&str> = list.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["address-change-on", "birth-ottawa"]);
    // A recipient sees its own fields, not the other recipients'.
    let address = &list[0];
    assert_eq!(address["role"], "recipient");
    assert_eq!(address["recipients"].as_array().unwrap().len(), 1);
    assert_eq!(address["recipients"][0]["partner"], "ottawa-city");
    // The sender sees every recipient of its agreements.
    let sender = gw.client.get("/v1/agreements", gw.key("on-vital-stats")).await.json();
    let federal = sender["agreements"].as_array().unwrap().iter().find(|a| a["id"] == "birth-federal-on").unwrap();
    assert_eq!(federal["recipients"].as_array().unwrap().len(), 2);
    assert_eq!(federal["title"]["fr"], "Enregistrements de naissance de l'Ontario pour les programmes fédéraux");
}
