//! Completion notices: a sender that asked (`[partner.notify]`) is told once per record when
//! every recipient has it, and once when a delivery goes dead; each notice is signed, verifies
//! offline with `passerelle audit verify-notice`, and is a durable delivery itself (retried,
//! taken from a mailbox, issued after a restart, never twice).

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::mock::Received;
use crate::support::*;

const SENDER: &str = "on-vital-stats";
/// The sender's entry in the shipped partners file, where its `[partner.notify]` goes.
const SENDER_LINE: &str = "cert_names = [\"on-vital-stats\"]   # the demo PKI's client certificate CN";

/// `setup` with the Ontario office's notices pushed to `endpoint`.
fn push_notices(setup: Setup, endpoint: &str) -> Setup {
    setup.edit_partners(SENDER_LINE, &format!("{SENDER_LINE}\n[partner.notify]\nendpoint = \"{endpoint}\""))
}

async fn post_birth(gw: &TestGateway) -> String {
    let r = gw.post_record(SENDER, "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    r.json()["record_id"].as_str().unwrap().to_owned()
}

/// The notices `mock` accepted, in order (a failed attempt is not one).
fn accepted(received: &[Received]) -> Vec<Value> {
    let mut seen = Vec::new();
    for r in received {
        let notice = r.json();
        if !seen.contains(&notice) {
            seen.push(notice);
        }
    }
    seen
}

/// `passerelle audit verify-notice` on `notice`, with the gateway's public key only.
fn verify_notice(gw: &TestGateway, notice: &[u8]) -> (i32, String) {
    let dir = gw.setup.dir.path();
    let (code, key) = cli(&["audit", "key", "--config", gw.setup.main_config().to_str().unwrap()]);
    assert_eq!(code, 0, "{key}");
    std::fs::write(dir.join("gateway.pub"), key).unwrap();
    std::fs::write(dir.join("notice.json"), notice).unwrap();
    let file = dir.join("notice.json");
    let key = dir.join("gateway.pub");
    cli(&["audit", "verify-notice", file.to_str().unwrap(), "--key", key.to_str().unwrap()])
}

#[tokio::test]
async fn a_sender_gets_one_signed_complete_notice_per_record_even_when_its_endpoint_fails_at_first() {
    let notices = MockRecipient::start().await;
    // The sender's endpoint fails twice: the notice is retried like any delivery.
    notices.fail_times(2, 503);
    let mut recipients = mock_recipients().await;
    recipients.insert(SENDER.to_owned(), notices.clone());
    let gw = push_notices(Setup::new(), &format!("{}/notices", notices.endpoint())).start_with(recipients).await;
    let first = post_birth(&gw).await;
    let second = post_birth(&gw).await;

    let received = notices.wait_for(4, Duration::from_secs(20)).await;
    assert!(received.iter().all(|r| r.path.ends_with("/notices/completion-notice")), "{:?}", received[0].path);
    assert_eq!(received[0].header("passerelle-sender"), Some("passerelle"));
    assert_eq!(received[0].header("passerelle-schema"), Some("completion-notice/1.0"));
    // No more than one per record, however long we wait.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let notices_got = accepted(&notices.received());
    assert_eq!(notices_got.len(), 2, "{notices_got:?}");
    let mut records: Vec<&str> = notices_got.iter().map(|n| n["record_id"].as_str().unwrap()).collect();
    records.sort();
    let mut expected = [first.as_str(), second.as_str()];
    expected.sort();
    assert_eq!(records, expected);

    let notice = notices_got.iter().find(|n| n["record_id"] == first.as_str()).unwrap();
    assert_eq!((&notice["notice"], &notice["sender"]), (&json!("complete"), &json!(SENDER)));
    let deliveries = notice["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 4, "{notice}");
    assert!(deliveries.iter().all(|d| d["status"] == "delivered" && d["delivered_at"].is_string()), "{notice}");
    let view = gw.client.get(&format!("/v1/records/{first}"), gw.key(SENDER)).await.json();
    assert_eq!(notice["completed_at"], view["completed_at"], "{view}");
    assert_eq!(notice["received_at"], view["received_at"]);
    assert!(notice["audit_seq"].as_i64().unwrap() > 0);
    // No value of the record is in it.
    let original = record("birth-registration-1.1.json");
    let text = notice.to_string();
    assert!(!text.contains(original["child"]["date_of_birth"].as_str().unwrap()), "{text}");

    // It verifies offline with the gateway's public key; any change breaks it.
    let bytes = received.iter().rev().find(|r| r.json() == *notice).unwrap().body.clone();
    let (code, out) = verify_notice(&gw, &bytes);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with(&format!("valid: complete notice for record {first}")), "{out}");
    let tampered = String::from_utf8(bytes.to_vec()).unwrap().replacen("\"delivered\"", "\"dead\"", 1);
    let (code, out) = verify_notice(&gw, tampered.as_bytes());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INVALID"), "{out}");

    // Notices are audited as such, and are not among the sender's records.
    assert_eq!(gw.audited("notice.issued", |e| e.actor == "passerelle").await, 2);
    let listed = gw.client.get("/v1/records", gw.key(SENDER)).await.json();
    assert_eq!(listed["records"].as_array().unwrap().len(), 2, "{listed}");
}

#[tokio::test]
async fn a_dead_delivery_gives_an_incomplete_notice_naming_it() {
    let notices = MockRecipient::start().await;
    let mut recipients = mock_recipients().await;
    recipients["on-health-plan"].respond(400);
    recipients.insert(SENDER.to_owned(), notices.clone());
    let gw = push_notices(Setup::new(), &notices.endpoint()).start_with(recipients).await;
    let id = post_birth(&gw).await;
    let notice = notices.wait_for(1, Duration::from_secs(20)).await[0].json();
    assert_eq!((&notice["notice"], &notice["record_id"]), (&json!("incomplete"), &json!(id)));
    assert_eq!(notice["completed_at"], Value::Null);
    let dead: Vec<&Value> = notice["deliveries"].as_array().unwrap().iter().filter(|d| d["status"] == "dead").collect();
    assert_eq!(dead.len(), 1, "{notice}");
    assert_eq!((&dead[0]["recipient"], &dead[0]["error"]), (&json!("on-health-plan"), &json!("HTTP 400")));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(accepted(&notices.received()).len(), 1, "one incomplete notice");
}

#[tokio::test]
async fn a_sender_without_an_endpoint_takes_its_notices_from_its_mailbox() {
    let gw = Setup::new()
        .edit_partners(SENDER_LINE, &format!("{SENDER_LINE}\n[partner.notify]\nmode = \"pull\""))
        .start()
        .await;
    let id = post_birth(&gw).await;
    let mut page = Value::Null;
    for _ in 0..10 {
        let r = gw.client.get("/v1/inbox?wait=2", gw.key(SENDER)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        page = r.json();
        if !page["deliveries"].as_array().unwrap().is_empty() {
            break;
        }
    }
    let delivery = &page["deliveries"][0];
    assert_eq!((&delivery["sender"], &delivery["schema"]), (&json!("passerelle"), &json!("completion-notice/1.0")));
    let notice = &delivery["body"];
    assert_eq!((&notice["notice"], &notice["record_id"]), (&json!("complete"), &json!(id)));
    let (code, out) = verify_notice(&gw, &passerelle::json::to_canonical_vec(notice));
    assert_eq!(code, 0, "{out}");
    let ack = json!({"lease": page["lease"]["id"], "deliveries": [delivery["delivery_id"]]});
    let r = gw.client.post("/v1/inbox/ack").bearer(gw.key(SENDER)).json(&ack).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let again = gw.client.get("/v1/inbox", gw.key(SENDER)).await.json();
    assert!(again["deliveries"].as_array().unwrap().is_empty(), "{again}");
}

#[tokio::test]
async fn notices_are_issued_after_a_restart_for_records_completed_before_it_and_never_twice() {
    // A gateway without notices completes a record, then stops.
    let gw = Setup::new().start().await;
    let id = post_birth(&gw).await;
    for _ in 0..100 {
        let view = gw.client.get(&format!("/v1/records/{id}"), gw.key(SENDER)).await.json();
        if view["complete"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let setup = gw.stop().await;

    // Started again with notices configured: the completed record's notice is issued.
    let notices = MockRecipient::start().await;
    let recipients = || async {
        let mut recipients = mock_recipients().await;
        recipients.insert(SENDER.to_owned(), notices.clone());
        recipients
    };
    let gw = push_notices(setup, &notices.endpoint()).start_with(recipients().await).await;
    let notice = notices.wait_for(1, Duration::from_secs(20)).await[0].json();
    assert_eq!((&notice["notice"], &notice["record_id"]), (&json!("complete"), &json!(id)));

    // Started once more (the setup keeps the notify table): nothing is issued twice.
    let gw = gw.stop().await.start_with(recipients().await).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(notices.received().len(), 1, "issued once, whatever the restarts");
    assert_eq!(gw.audited("notice.issued", |_| true).await, 1);
}
