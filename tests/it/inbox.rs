//! Pull mailboxes: a recipient that accepts no connection takes its deliveries (`GET /v1/inbox`),
//! then acknowledges or refuses them, with the guarantees of push delivery.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const CITY: &str = "ottawa-city";
const TOKEN: &str = "Bearer test-admin-token";

/// A gateway whose city takes its records from its mailbox.
async fn pull_gateway(setup: Setup) -> TestGateway {
    setup.pull(CITY).start_without(CITY).await
}

async fn post_birth(gw: &TestGateway) -> String {
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    r.json()["record_id"].as_str().unwrap().to_owned()
}

async fn take(gw: &TestGateway, query: &str) -> TestResponse {
    gw.client.get(&format!("/v1/inbox{query}"), gw.key(CITY)).await
}

async fn settle(gw: &TestGateway, verb: &str, body: Value) -> TestResponse {
    gw.client.post(&format!("/v1/inbox/{verb}")).bearer(gw.key(CITY)).json(&body).send().await
}

async fn record_status(gw: &TestGateway, record_id: &str) -> Value {
    gw.client.get(&format!("/v1/records/{record_id}"), gw.key("on-vital-stats")).await.json()
}

fn city_delivery(status: &Value) -> Value {
    status["deliveries"].as_array().unwrap().iter().find(|d| d["recipient"] == CITY).unwrap().clone()
}

#[tokio::test]
async fn the_city_takes_its_deliveries_then_acknowledges_them() {
    let gw = pull_gateway(Setup::new()).await;
    let record_id = post_birth(&gw).await;
    let r = take(&gw, "?limit=10").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let page = r.json();
    let deliveries = page["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{page}");
    let d = &deliveries[0];
    assert_eq!(d["record_id"], record_id.as_str());
    assert_eq!((d["agreement"].as_str(), d["sender"].as_str()), (Some("birth-ottawa"), Some("on-vital-stats")));
    assert_eq!(d["schema"], "birth-registration/1.1");
    assert_eq!(d["idempotency_key"], format!("{record_id}.{CITY}"), "the key a push would send");
    assert!(d["traceparent"].as_str().is_some_and(|t| t.starts_with("00-")), "{d}");
    // Exactly the fields the agreement gives the city, as a push would send them.
    let original = record("birth-registration-1.1.json");
    let expected = json!({
        "child": {"date_of_birth": original["child"]["date_of_birth"],
                  "place_of_birth": {"municipality": original["child"]["place_of_birth"]["municipality"]}},
        "parents": original["parents"].as_array().unwrap().iter()
            .map(|p| json!({"address": {"postal_code": p["address"]["postal_code"]}})).collect::<Vec<_>>(),
    });
    assert_eq!(d["body"], expected);
    // The body inside the answer is the canonical projection, spliced in as it is; what the store
    // holds is sealed.
    let canonical = passerelle::json::to_canonical_vec(&d["body"]);
    assert!(r.text().contains(std::str::from_utf8(&canonical).unwrap()), "the canonical bytes, spliced in as they are");
    let stored: Vec<u8> =
        gw.db().query_row("SELECT body FROM deliveries WHERE recipient = ?1", [CITY], |row| row.get(0)).unwrap();
    assert!(!stored.windows(canonical.len()).any(|w| w == canonical), "stored sealed, not in plaintext");
    let lease = page["lease"]["id"].as_str().unwrap().to_owned();
    assert_eq!(page["lease"]["seconds"], 60);
    assert!(page["lease"]["expires_at"].as_str().is_some());

    // Leased: nobody else is given it.
    assert_eq!(take(&gw, "").await.json()["deliveries"].as_array().unwrap().len(), 0);
    assert_eq!(city_delivery(&record_status(&gw, &record_id).await)["status"], "queued");

    // The pushed deliveries arrive meanwhile; the city's acknowledgement is the bundle's last.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = record_status(&gw, &record_id).await;
        let delivered = status["deliveries"].as_array().unwrap().iter().filter(|d| d["status"] == "delivered").count();
        if delivered == 3 {
            assert_eq!(status["complete"], false, "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "the pushed deliveries never arrived: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = settle(&gw, "ack", json!({"lease": lease, "deliveries": [d["delivery_id"]]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["settled"][0]["status"], "delivered");
    let status = record_status(&gw, &record_id).await;
    assert_eq!(status["complete"], true, "the acknowledgement completes the bundle: {status}");
    let completions = metric(
        &gw.metrics().await,
        "passerelle_record_completion_seconds_count",
        &[("record_type", "birth-registration")],
    );
    assert_eq!(completions, 1.0, "counted once, by the acknowledgement");
    let city = city_delivery(&record_status(&gw, &record_id).await);
    assert_eq!(city["status"], "delivered");
    assert!(city["delivered_at"].as_str().is_some());
    let audited = gw
        .audited("delivery.delivered", |e| {
            e.recipient.as_deref() == Some(CITY) && e.record_id.as_deref() == Some(&record_id)
        })
        .await;
    assert_eq!(audited, 1);
    let metrics = gw.metrics().await;
    assert_eq!(metric(&metrics, "passerelle_deliveries_total", &[("recipient", CITY), ("outcome", "delivered")]), 1.0);
    assert_eq!(metric(&metrics, "passerelle_mailbox_taken_total", &[("recipient", CITY)]), 1.0);
    // A second acknowledgement of the same delivery is refused and changes nothing.
    let again = settle(&gw, "ack", json!({"lease": lease, "deliveries": [d["delivery_id"]]})).await;
    assert_eq!(again.problem(409, "not-leased")["not_leased"], json!([d["delivery_id"]]));
    let audited = gw.audited("delivery.delivered", |e| e.recipient.as_deref() == Some(CITY)).await;
    assert_eq!(audited, 1, "still once");
}

#[tokio::test]
async fn only_a_pull_recipient_has_a_mailbox_and_only_its_own_lease_settles() {
    let gw = pull_gateway(Setup::new()).await;
    let record_id = post_birth(&gw).await;
    // A push recipient and the sender have no mailbox, in both languages.
    for partner in ["on-health-plan", "on-vital-stats"] {
        gw.client.get("/v1/inbox", gw.key(partner)).await.problem(404, "no-mailbox");
    }
    let fr = gw
        .client
        .request(Method::GET, "/v1/inbox")
        .bearer(gw.key("on-health-plan"))
        .header("accept-language", "fr-CA")
        .send()
        .await;
    assert!(fr.problem(404, "no-mailbox")["detail"].as_str().unwrap().contains("boîte de réception"));
    let acked_by_other = gw
        .client
        .post("/v1/inbox/ack")
        .bearer(gw.key("on-health-plan"))
        .json(&json!({"lease": "x", "deliveries": [1]}))
        .send()
        .await;
    acked_by_other.problem(404, "no-mailbox");

    let page = take(&gw, "").await.json();
    let id = page["deliveries"][0]["delivery_id"].clone();
    // A lease that is not the one the delivery was taken under: 409, nothing changes.
    let wrong = settle(&gw, "ack", json!({"lease": "inbox/ottawa-city/not-mine", "deliveries": [id]})).await;
    assert_eq!(wrong.problem(409, "not-leased")["not_leased"], json!([id]));
    // One held and one not: refused whole.
    let lease = page["lease"]["id"].clone();
    let mixed = settle(&gw, "ack", json!({"lease": lease, "deliveries": [id, 999_999]})).await;
    assert_eq!(mixed.problem(409, "not-leased")["not_leased"], json!([999_999]));
    assert_eq!(city_delivery(&record_status(&gw, &record_id).await)["status"], "queued", "nothing changed");
    // Bodies that are not settlements.
    settle(&gw, "ack", json!({"lease": lease})).await.problem(400, "invalid-settlement");
    settle(&gw, "ack", json!({"lease": lease, "deliveries": []})).await.problem(400, "invalid-settlement");
    settle(&gw, "ack", json!({"lease": lease, "deliveries": [id], "reason": "x"}))
        .await
        .problem(400, "invalid-settlement");
    settle(&gw, "nack", json!({"lease": lease, "deliveries": [id]})).await.problem(400, "invalid-settlement");
    let value = settle(&gw, "nack", json!({"lease": lease, "deliveries": [id], "reason": "Jane Doe"})).await;
    value.problem(400, "invalid-settlement");
    let malformed = gw.client.post("/v1/inbox/ack").bearer(gw.key(CITY)).json_bytes("{\"lease\":").send().await;
    malformed.problem(400, "malformed-json");
    take(&gw, "?limit=0").await.problem(400, "invalid-query");
    take(&gw, "?wait=31").await.problem(400, "invalid-query");
    take(&gw, "?limit=501").await.problem(400, "invalid-query");
    assert_eq!(city_delivery(&record_status(&gw, &record_id).await)["status"], "queued", "still nothing changed");
}

#[tokio::test]
async fn a_waiting_call_is_woken_by_a_commit_and_waiting_calls_are_capped() {
    let gw =
        pull_gateway(Setup::new().delivery("inbox_waiting_per_partner = 2").delivery("poll_interval_ms = 60000")).await;
    let client = gw.client.clone();
    let key = gw.key(CITY).to_owned();
    let started = Instant::now();
    let waiting = tokio::spawn(async move { client.get("/v1/inbox?wait=20", &key).await });
    let client = gw.client.clone();
    let key = gw.key(CITY).to_owned();
    let second = tokio::spawn(async move { client.get("/v1/inbox?wait=3", &key).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Two calls wait: a third is told to come back.
    let third = take(&gw, "?wait=5").await;
    third.problem(429, "inbox-busy");
    assert_eq!(third.header("retry-after"), Some("1"));
    // A commit wakes the waiting calls at once (the poll interval is a minute here).
    let record_id = post_birth(&gw).await;
    let (first, second) = (waiting.await.unwrap(), second.await.unwrap());
    let elapsed = started.elapsed();
    let got: Vec<Value> =
        [&first, &second].iter().flat_map(|r| r.json()["deliveries"].as_array().unwrap().clone()).collect();
    assert_eq!(got.len(), 1, "one of the two takes it, the other does not get it too");
    assert_eq!(got[0]["record_id"], record_id.as_str());
    assert!(elapsed < Duration::from_secs(15), "woken by the commit, not by the end of its 20 s wait: {elapsed:?}");
}

#[tokio::test]
async fn a_refusal_is_retried_with_backoff_then_dead_and_replay_offers_it_again() {
    let gw = pull_gateway(Setup::new().delivery("max_attempts = 2").delivery("initial_backoff_ms = 200")).await;
    let record_id = post_birth(&gw).await;
    let page = take(&gw, "").await.json();
    let id = page["deliveries"][0]["delivery_id"].clone();
    let r = settle(
        &gw,
        "nack",
        json!({"lease": page["lease"]["id"], "deliveries": [id], "reason": "downstream-unavailable"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let settled = &r.json()["settled"][0];
    assert_eq!(settled["status"], "retrying");
    assert!(settled["next_attempt_at"].as_str().is_some());
    let city = city_delivery(&record_status(&gw, &record_id).await);
    assert_eq!((city["status"].as_str(), city["attempts"].as_u64()), (Some("retrying"), Some(1)));
    assert_eq!(city["last_error"], "refused: downstream-unavailable");
    // Offered again once its backoff has passed, with the attempt counted.
    let page = take(&gw, "?wait=5").await.json();
    assert_eq!(page["deliveries"][0]["delivery_id"], id);
    assert_eq!(page["deliveries"][0]["attempts"], 1);
    let r =
        settle(&gw, "nack", json!({"lease": page["lease"]["id"], "deliveries": [id], "reason": "still-down"})).await;
    assert_eq!(r.json()["settled"][0]["status"], "dead", "the attempt limit, as for push");
    let dead = gw
        .admin
        .send(
            Method::GET,
            &format!("/admin/v1/deliveries?status=dead&recipient={CITY}"),
            &[("authorization", TOKEN)],
            "",
        )
        .await
        .json();
    assert_eq!(dead["deliveries"][0]["last_error"], "refused: still-down; gave up after 2 attempts");
    assert_eq!(gw.audited("delivery.dead", |e| e.recipient.as_deref() == Some(CITY)).await, 1);
    // An operator replays it: the city is offered it again.
    let replay = gw
        .admin
        .send(Method::POST, &format!("/admin/v1/recipients/{CITY}/replay"), &[("authorization", TOKEN)], "")
        .await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.text());
    let page = take(&gw, "?wait=5").await.json();
    assert_eq!(page["deliveries"][0]["delivery_id"], id);
}

#[tokio::test]
async fn an_expired_lease_goes_to_the_next_caller_and_the_late_acknowledgement_is_refused() {
    let gw = pull_gateway(Setup::new().delivery("inbox_lease_secs = 1")).await;
    let record_id = post_birth(&gw).await;
    let first = take(&gw, "").await.json();
    assert_eq!(first["lease"]["seconds"], 1);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let second = take(&gw, "?wait=5").await.json();
    let id = first["deliveries"][0]["delivery_id"].clone();
    assert_eq!(second["deliveries"][0]["delivery_id"], id, "the lease expired: offered again");
    assert_ne!(first["lease"]["id"], second["lease"]["id"]);
    let late = settle(&gw, "ack", json!({"lease": first["lease"]["id"], "deliveries": [id]})).await;
    late.problem(409, "not-leased");
    let r = settle(&gw, "ack", json!({"lease": second["lease"]["id"], "deliveries": [id]})).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(city_delivery(&record_status(&gw, &record_id).await)["status"], "delivered");
}

#[tokio::test]
async fn deliveries_come_in_acceptance_order_and_one_at_a_time_when_ordered() {
    let ordered = std::fs::read_to_string(repo().join("config/agreements/birth-ottawa.toml"))
        .unwrap()
        .replace("partner = \"ottawa-city\"", "partner = \"ottawa-city\"\nordered = true");
    let gw = pull_gateway(Setup::new().agreement("birth-ottawa", &ordered)).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(post_birth(&gw).await);
    }
    for expected in &ids {
        let page = take(&gw, "?limit=10").await.json();
        let deliveries = page["deliveries"].as_array().unwrap();
        assert_eq!(deliveries.len(), 1, "one at a time: {page}");
        assert_eq!(deliveries[0]["record_id"], expected.as_str(), "in acceptance order");
        assert_eq!(take(&gw, "").await.json()["deliveries"].as_array().unwrap().len(), 0, "nothing passes the head");
        let r = settle(&gw, "ack", json!({"lease": page["lease"]["id"], "deliveries": [deliveries[0]["delivery_id"]]}))
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mailbox_depth_and_oldest_age_are_measured_and_the_inbox_command_empties_it() {
    let gw = pull_gateway(Setup::new()).await;
    let records = [post_birth(&gw).await, post_birth(&gw).await];
    // The backlog gauges are refreshed every two seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = gw.metrics().await;
        if metric(&metrics, "passerelle_mailbox_depth", &[("recipient", CITY)]) == 2.0 {
            assert!(metric(&metrics, "passerelle_mailbox_oldest_seconds", &[("recipient", CITY)]) >= 0.0);
            break;
        }
        assert!(Instant::now() < deadline, "no mailbox depth of 2: {metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The console shows the city's mailbox: its depth as pending, and that it is pulled.
    let overview = gw.admin.send(Method::GET, "/admin/v1/overview", &[("authorization", TOKEN)], "").await.json();
    let city = overview["recipients"].as_array().unwrap().iter().find(|r| r["recipient"] == CITY).unwrap().clone();
    assert_eq!((city["mode"].as_str(), city["pending"].as_u64()), (Some("pull"), Some(2)), "{city}");
    // The reference client, as the city would run it: files named by idempotency key, then acked.
    let out = gw.setup.dir.path().join("received");
    let (code, text) = cli_env(
        &["inbox", "--url", &gw.client.base, "--once", "--wait", "1", "--out", out.to_str().unwrap()],
        &[("PASSERELLE_API_KEY", gw.key(CITY))],
    )
    .await;
    assert_eq!(code, 0, "{text}");
    for record_id in &records {
        let file = out.join(format!("{record_id}.{CITY}.json"));
        let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(written["record_id"], record_id.as_str());
        assert!(written["body"]["child"]["date_of_birth"].is_string());
        assert_eq!(city_delivery(&record_status(&gw, record_id).await)["status"], "delivered");
    }
    // Without a key it says what is missing.
    let (code, text) = cli_env(&["inbox", "--url", &gw.client.base, "--once"], &[("PASSERELLE_API_KEY", "")]).await;
    assert_ne!(code, 0);
    assert!(text.contains("401"), "{text}");
}
