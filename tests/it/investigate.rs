//! Investigating a record (`/admin/v1/records`, `/admin/v1/stats`, bodies): found by id, by
//! idempotency key and by time range; its page with each delivery's attempt timeline after a
//! recipient fails then succeeds; bodies only to roles that may read them, each read audited as
//! `body.read` and refused to the others in English and French; no value anywhere in a record's
//! page; a grant limited to one partner; 410 once purged; statistics over every range.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::Value;

use crate::delivery::{post_birth, wait_status};
use crate::support::*;

/// One operator per role, and an operator limited to the city.
const OPERATORS: &str = r#"
[[operator]]
name = "vera.viewer"
roles = ["viewer"]
token_sha256 = ["{viewer}"]

[[operator]]
name = "omar.operator"
roles = ["operator"]
token_sha256 = ["{operator}"]

[[operator]]
name = "aude.auditor"
roles = ["auditor"]
token_sha256 = ["{auditor}"]

[[operator]]
name = "adam.admin"
roles = ["admin"]
token_sha256 = ["{admin}"]

[[operator]]
name = "olivia.ottawa"
token_sha256 = ["{ottawa}"]

[[operator.grant]]
role = "operator"
partners = ["ottawa-city"]

[[operator]]
name = "aline.ottawa"
token_sha256 = ["{ottawa-auditor}"]

[[operator.grant]]
role = "auditor"
partners = ["ottawa-city"]
"#;

fn token(name: &str) -> String {
    format!("{name}-token-0123456789abcdef")
}

pub(crate) fn operators_file() -> String {
    let mut text = OPERATORS.to_owned();
    for name in ["viewer", "operator", "auditor", "admin", "ottawa", "ottawa-auditor"] {
        let digest = passerelle::digest::to_hex(&passerelle::digest::sha256(token(name).as_bytes()));
        text = text.replace(&format!("{{{name}}}"), &digest);
    }
    text
}

async fn call(gw: &TestGateway, who: &str, path: &str, lang: &str) -> TestResponse {
    let bearer = format!("Bearer {}", token(who));
    gw.admin.send(Method::GET, path, &[("authorization", &bearer), ("accept-language", lang)], "").await
}

async fn ok(gw: &TestGateway, who: &str, path: &str) -> Value {
    let r = call(gw, who, path, "en").await;
    assert_eq!(r.status, StatusCode::OK, "{who} {path}: {}", r.text());
    r.json()
}

fn ids(page: &Value) -> Vec<String> {
    page["records"].as_array().unwrap().iter().map(|r| r["record_id"].as_str().unwrap().to_owned()).collect()
}

/// Values of the birth record the tests send, none of which may appear where no body is asked for.
const VALUES: [&str; 8] =
    ["QC-2026-018355", "Gagnon-Okafor", "Sainte-Justine", "Lorimier", "H2H 2B4", "Chinedu", "1990-11-03", "2026-03-28"];

fn assert_no_value(text: &str, what: &str) {
    for value in VALUES {
        assert!(!text.contains(value), "{what} shows the value {value}: {text}");
    }
}

#[tokio::test]
async fn a_record_is_found_by_id_by_idempotency_key_and_by_time_range() {
    let gw = Setup::new().operators(&operators_file()).start().await;
    let before = passerelle::clock::rfc3339_ms(passerelle::clock::now_ms() - 1);
    let first = post_birth(&gw).await;
    let keyed = gw
        .post_as("on-vital-stats", "/v1/records/birth-registration")
        .header("idempotency-key", "birth-QC-2026-018355")
        .json(&record("birth-registration-1.1.json"))
        .send()
        .await;
    assert_eq!(keyed.status, StatusCode::ACCEPTED, "{}", keyed.text());
    let keyed = keyed.json()["record_id"].as_str().unwrap().to_owned();
    let after = passerelle::clock::rfc3339_ms(passerelle::clock::now_ms() + 1);

    let by_id = ok(&gw, "viewer", &format!("/admin/v1/records?id={first}")).await;
    assert_eq!(ids(&by_id), [first.as_str()]);
    let found = &by_id["records"][0];
    assert_eq!(
        (found["sender"].as_str(), found["record_type"].as_str()),
        (Some("on-vital-stats"), Some("birth-registration"))
    );
    assert_eq!(found["deliveries"].as_array().unwrap().len(), 4, "{found}");
    let by_key =
        ok(&gw, "viewer", "/admin/v1/records?partner=on-vital-stats&idempotency_key=birth-QC-2026-018355").await;
    assert_eq!(ids(&by_key), [keyed.as_str()]);
    assert_eq!(by_key["records"][0]["idempotency_key"], "birth-QC-2026-018355");
    let range = format!("/admin/v1/records?from={}&to={}", encode(&before), encode(&after));
    assert_eq!(ids(&ok(&gw, "viewer", &range).await), [keyed.clone(), first.clone()], "newest first");
    let page = ok(&gw, "viewer", &format!("{range}&limit=1")).await;
    assert_eq!(ids(&page), [keyed]);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    assert_eq!(ids(&ok(&gw, "viewer", &format!("{range}&limit=1&cursor={cursor}")).await), [first]);
    let other_type = ok(&gw, "viewer", "/admin/v1/records?record_type=address-change").await;
    assert!(ids(&other_type).is_empty());

    // Bad parameters are problem documents in the caller's language.
    let any_sender = ok(&gw, "viewer", "/admin/v1/records?idempotency_key=birth-QC-2026-018355").await;
    assert_eq!(ids(&any_sender), ids(&by_key), "a key alone finds every sender's use of it");
    let backwards = format!("/admin/v1/records?from={}&to={}", encode(&after), encode(&before));
    assert!(ids(&ok(&gw, "viewer", &backwards).await).is_empty());
    for (query, parameter) in [("from=yesterday", "from"), ("limit=0", "limit"), ("id=", "id")] {
        let r = call(&gw, "viewer", &format!("/admin/v1/records?{query}"), "fr").await;
        let doc = r.problem(400, "invalid-query");
        assert_eq!(r.header("content-language"), Some("fr"));
        assert!(doc["detail"].as_str().unwrap().contains(parameter), "{query}: {doc}");
    }
    let r = call(&gw, "viewer", "/admin/v1/records/no-such-record", "en").await;
    assert_eq!(r.problem(404, "record-not-found")["title"], "Record not found");
    let r = call(&gw, "viewer", "/admin/v1/records/no-such-record", "fr").await;
    assert_eq!(r.problem(404, "record-not-found")["title"], "Enregistrement introuvable");
}

/// `text` percent-encoded for a query (the times' `:` and `+`).
fn encode(text: &str) -> String {
    text.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn a_records_page_shows_each_attempt_after_a_recipient_fails_then_succeeds_and_no_value() {
    let gw = Setup::new().operators(&operators_file()).start().await;
    gw.recipient("ottawa-city").fail_times(2, 503);
    let id = post_birth(&gw).await;
    wait_status(&gw, &id, "ottawa-city", "delivered").await;

    let page = ok(&gw, "viewer", &format!("/admin/v1/records/{id}")).await;
    assert_no_value(&page.to_string(), "a viewer's record page");
    assert_eq!(page["record"]["record_id"], id.as_str());
    assert_eq!(page["receipt"]["receipt"]["record_id"], id.as_str());
    assert_eq!(page["audit"], Value::Null, "a viewer does not read the audit trail");
    assert_eq!(page["may"]["read_body"], false);
    let city = page["deliveries"].as_array().unwrap().iter().find(|d| d["recipient"] == "ottawa-city").unwrap();
    assert_eq!(city["may_replay"], false);
    let timeline = city["timeline"].as_array().unwrap();
    let outcomes: Vec<_> =
        timeline.iter().map(|a| (a["attempt"].as_u64().unwrap(), a["outcome"].as_str().unwrap())).collect();
    assert_eq!(outcomes, [(1, "retrying"), (2, "retrying"), (3, "delivered")], "{city}");
    assert_eq!(timeline[0]["status"], 503);
    assert_eq!(timeline[0]["error_class"], "server_error");
    assert!(timeline[0]["next_attempt_at"].is_string(), "a retry says when the next attempt is");
    assert!(timeline.iter().all(|a| a["latency_ms"].is_u64()), "{city}");
    assert_eq!(timeline[2]["status"], 200);
    assert!(timeline[2].get("error_class").is_none());

    // An auditor sees the entries that name the record, and that read is audited.
    let page = ok(&gw, "auditor", &format!("/admin/v1/records/{id}")).await;
    assert_no_value(&page.to_string(), "an auditor's record page");
    let kinds: Vec<_> = page["audit"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "delivery.retried").count(), 2, "{kinds:?}");
    assert!(kinds.contains(&"record.accepted") && kinds.contains(&"delivery.delivered"), "{kinds:?}");
    assert_eq!(
        gw.audited("audit.read", |e| e.actor == "operator:aude.auditor" && e.record_id.as_deref() == Some(&id)).await,
        1
    );
    // An operator may replay.
    let page = ok(&gw, "operator", &format!("/admin/v1/records/{id}")).await;
    assert!(page["deliveries"].as_array().unwrap().iter().all(|d| d["may_replay"] == true));

    // The deliveries list filters by agreement and partner.
    let list = ok(&gw, "viewer", "/admin/v1/deliveries?agreement=birth-ottawa").await;
    assert!(list["deliveries"].as_array().unwrap().iter().all(|d| d["agreement"] == "birth-ottawa"));
    assert_eq!(list["deliveries"].as_array().unwrap().len(), 1);
    let list = ok(&gw, "viewer", "/admin/v1/deliveries?partner=on-health-plan").await;
    assert_eq!(list["deliveries"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bodies_are_read_by_auditors_audited_and_refused_to_viewers_and_operators() {
    let gw = Setup::new().operators(&operators_file()).start().await;
    let id = post_birth(&gw).await;
    let page = ok(&gw, "auditor", &format!("/admin/v1/records/{id}")).await;
    assert_eq!(page["may"]["read_body"], true);
    let delivery = page["deliveries"].as_array().unwrap().iter().find(|d| d["recipient"] == "ottawa-city").unwrap();
    let delivery_id = delivery["id"].as_i64().unwrap();

    let body = ok(&gw, "auditor", &format!("/admin/v1/records/{id}/body")).await;
    assert_eq!(body, record("birth-registration-1.1.json"));
    let projected = ok(&gw, "admin", &format!("/admin/v1/deliveries/{delivery_id}/body")).await;
    assert!(projected.is_object() && projected != body, "the city's projection: {projected}");
    assert_eq!(
        gw.audited("body.read", |e| e.actor == "operator:aude.auditor" && e.record_id.as_deref() == Some(&id)).await,
        1
    );
    let read = gw.audited("body.read", |e| {
        e.actor == "operator:adam.admin" && e.recipient.as_deref() == Some("ottawa-city") && e.agreement.is_some()
    });
    assert_eq!(read.await, 1);
    // The trail names the read, never the value.
    let trail = gw.audit_entries().await;
    let reads: Vec<_> = trail.iter().filter(|e| e.event.kind == "body.read").collect();
    assert_eq!(reads.len(), 2);
    for e in reads {
        assert_eq!(e.event.body_digest, None);
        assert_no_value(&format!("{:?}", e.event), "a body.read entry");
    }

    for who in ["viewer", "operator"] {
        for path in [format!("/admin/v1/records/{id}/body"), format!("/admin/v1/deliveries/{delivery_id}/body")] {
            let en = call(&gw, who, &path, "en").await;
            let doc = en.problem(403, "operator-forbidden");
            assert!(doc["detail"].as_str().unwrap().contains("read-bodies"), "{doc}");
            assert_no_value(&en.text(), "a refusal");
            let fr = call(&gw, who, &path, "fr-CA").await;
            assert_eq!(fr.problem(403, "operator-forbidden")["title"], "Non permis à votre rôle");
        }
    }
    assert_eq!(gw.audited("body.read", |_| true).await, 2, "a refused read is not a read");
}

#[tokio::test]
async fn a_grant_limited_to_a_partner_sees_only_its_records_and_deliveries() {
    let gw = Setup::new().operators(&operators_file()).start().await;
    let ontario = post_birth(&gw).await;
    let r = gw.post_record("nt-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let territories = r.json()["record_id"].as_str().unwrap().to_owned();

    let all = ok(&gw, "viewer", "/admin/v1/records").await;
    assert_eq!(ids(&all), [territories.clone(), ontario.clone()]);
    let mine = ok(&gw, "ottawa", "/admin/v1/records").await;
    assert_eq!(ids(&mine), [ontario.as_str()], "only the records delivered to the city");
    let page = ok(&gw, "ottawa", &format!("/admin/v1/records/{ontario}")).await;
    let recipients: Vec<_> = page["deliveries"].as_array().unwrap().iter().map(|d| d["recipient"].clone()).collect();
    assert_eq!(recipients, ["ottawa-city"]);
    let refused = call(&gw, "ottawa", &format!("/admin/v1/records/{territories}"), "en").await;
    let doc = refused.problem(403, "operator-forbidden");
    assert!(doc["detail"].as_str().unwrap().contains("limited to other partners"), "{doc}");

    assert_eq!(ok(&gw, "ottawa", "/admin/v1/stats?partner=ottawa-city").await["partner"], "ottawa-city");
    assert_eq!(ok(&gw, "ottawa", "/admin/v1/stats?agreement=birth-ottawa").await["agreement"], "birth-ottawa");
    for query in ["", "?partner=esdc-sin-registry", "?agreement=birth-federal-nt"] {
        call(&gw, "ottawa", &format!("/admin/v1/stats{query}"), "en").await.problem(403, "operator-forbidden");
    }
}

#[tokio::test]
async fn a_purged_body_is_gone_with_410_and_its_page_stays() {
    let gw = Setup::new()
        .operators(&operators_file())
        .retention("delivered_days = 0")
        .retention("purge_interval_secs = 1")
        .start()
        .await;
    let id = post_birth(&gw).await;
    for recipient in ["ottawa-city", "on-health-plan", "esdc-sin-registry", "cra-child-benefit"] {
        wait_status(&gw, &id, recipient, "delivered").await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = call(&gw, "auditor", &format!("/admin/v1/records/{id}/body"), "en").await;
        if r.status == StatusCode::GONE {
            assert_eq!(r.problem(410, "body-purged")["title"], "Body purged");
            break;
        }
        assert!(Instant::now() < deadline, "the body was not purged: {}", r.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fr = call(&gw, "auditor", &format!("/admin/v1/records/{id}/body"), "fr").await;
    assert_eq!(fr.problem(410, "body-purged")["title"], "Contenu purgé");
    let page = ok(&gw, "auditor", &format!("/admin/v1/records/{id}")).await;
    assert_eq!(page["record"]["body_kept"], false);
    let delivery_id = page["deliveries"][0]["id"].as_i64().unwrap();
    call(&gw, "auditor", &format!("/admin/v1/deliveries/{delivery_id}/body"), "en").await.problem(410, "body-purged");
    assert!(page["deliveries"].as_array().unwrap().iter().all(|d| d["timeline"].as_array().unwrap().len() == 1));
}

#[tokio::test]
async fn stats_count_from_the_store_over_every_range() {
    let gw = Setup::new().operators(&operators_file()).start().await;
    let id = post_birth(&gw).await;
    for recipient in ["ottawa-city", "on-health-plan", "esdc-sin-registry", "cra-child-benefit"] {
        wait_status(&gw, &id, recipient, "delivered").await;
    }
    for (range, bucket_seconds) in [("15m", 60), ("1h", 300), ("6h", 900), ("24h", 3600), ("7d", 21600)] {
        let stats = ok(&gw, "viewer", &format!("/admin/v1/stats?range={range}")).await;
        assert_eq!((stats["range"].as_str(), stats["bucket_seconds"].as_i64()), (Some(range), Some(bucket_seconds)));
        let sum =
            |field: &str| stats["buckets"].as_array().unwrap().iter().map(|b| b[field].as_i64().unwrap()).sum::<i64>();
        assert_eq!((sum("accepted"), sum("delivered"), sum("dead")), (1, 4, 0), "{range}: {stats}");
    }
    let city = ok(&gw, "viewer", "/admin/v1/stats?range=15m&partner=ottawa-city").await;
    let delivered: i64 = city["buckets"].as_array().unwrap().iter().map(|b| b["delivered"].as_i64().unwrap()).sum();
    assert_eq!(delivered, 1);
    assert_eq!(city["breakers"][0]["recipient"], "ottawa-city");
    assert_eq!(city["breakers"][0]["state"], "closed");
    assert!(city["buckets"][0]["latency_avg_ms"].is_i64(), "{city}");
    let agreement = ok(&gw, "viewer", "/admin/v1/stats?range=1h&agreement=birth-federal-on").await;
    let delivered: i64 =
        agreement["buckets"].as_array().unwrap().iter().map(|b| b["delivered"].as_i64().unwrap()).sum();
    assert_eq!(delivered, 2);
    let doc = call(&gw, "viewer", "/admin/v1/stats?range=30d", "en").await.problem(400, "invalid-query");
    assert!(doc["detail"].as_str().unwrap().contains("range"), "{doc}");
    for query in ["partner=nobody", "agreement=none"] {
        let stats = ok(&gw, "viewer", &format!("/admin/v1/stats?{query}")).await;
        assert!(stats["buckets"].as_array().unwrap().is_empty(), "{query}: {stats}");
    }
    // The audit trail reads by time, with its checkpoints marked.
    let now = passerelle::clock::rfc3339_ms(passerelle::clock::now_ms() + 1_000);
    let page = ok(&gw, "auditor", &format!("/admin/v1/audit?to={}", encode(&now))).await;
    assert!(!page["entries"].as_array().unwrap().is_empty());
    assert!(page["checkpoints"].is_array());
    let past = ok(&gw, "auditor", "/admin/v1/audit?to=2000-01-01T00%3A00%3A00Z").await;
    assert!(past["entries"].as_array().unwrap().is_empty());
    call(&gw, "auditor", "/admin/v1/audit?from=nope", "en").await.problem(400, "invalid-query");
}

#[tokio::test]
async fn an_auditor_limited_to_a_recipient_reads_its_body_only_and_the_entries_naming_it() {
    let gw = Setup::new().operators(&operators_file()).start().await;
    let id = post_birth(&gw).await;
    for recipient in ["ottawa-city", "esdc-sin-registry"] {
        wait_status(&gw, &id, recipient, "delivered").await;
    }
    let page = ok(&gw, "ottawa-auditor", &format!("/admin/v1/records/{id}")).await;
    assert_eq!(page["may"]["read_body"], false, "the record as posted holds more than the city receives");
    let deliveries = page["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["may_read_body"], true);
    let city = deliveries[0]["id"].as_i64().unwrap();
    let entries = page["audit"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["kind"] == "delivery.delivered" && e["recipient"] == "ottawa-city"));
    assert!(entries.iter().all(|e| e["recipient"].is_null() || e["recipient"] == "ottawa-city"), "{entries:?}");
    ok(&gw, "ottawa-auditor", &format!("/admin/v1/deliveries/{city}/body")).await;
    let federal = ok(&gw, "admin", &format!("/admin/v1/records/{id}")).await["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["recipient"] == "esdc-sin-registry")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    for path in [format!("/admin/v1/records/{id}/body"), format!("/admin/v1/deliveries/{federal}/body")] {
        let doc = call(&gw, "ottawa-auditor", &path, "en").await.problem(403, "operator-forbidden");
        assert!(doc["detail"].as_str().unwrap().contains("limited to other partners"), "{path}: {doc}");
    }
    assert_eq!(gw.audited("body.read", |e| e.actor == "operator:aline.ottawa").await, 1);
}
