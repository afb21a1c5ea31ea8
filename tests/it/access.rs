//! The access record of a person (`GET /admin/v1/access`, `passerelle access`): every
//! disclosure about someone found by one of their identifiers, with the fields each recipient
//! received, under which agreement and purpose, when, and the audit entries of each; in English
//! and French, as JSON and as a printable page; kept past the bodies' retention; and the
//! identifier in no log line, metric, audit entry or answer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

/// The person: a parent in two births, who then reports an address change.
const SIN: &str = "046454286";
/// Another parent, in a third birth only.
const OTHER_SIN: &str = "130692544";
const ADMIN: (&str, &str) = ("authorization", "Bearer test-admin-token");

/// A birth registration numbered `registration`, with a SIN for each parent that has one.
fn birth(registration: &str, sins: [Option<&str>; 2]) -> Value {
    let mut body = record("birth-registration-1.1.json");
    body["registration_number"] = json!(registration);
    for (parent, sin) in sins.iter().enumerate() {
        if let Some(sin) = sin {
            body["parents"][parent]["sin"] = json!(sin);
        }
    }
    body
}

/// An accepted record: its id, sender, and what its receipt says (deliveries and audit seq).
struct Accepted {
    record_id: String,
    sender: &'static str,
    receipt: Value,
}

/// Sends the person's records (births A and B, the address change) and another person's birth
/// C; returns them in that order.
async fn send_records(gw: &TestGateway) -> Vec<Accepted> {
    let mut address = record("address-change-1.0.json");
    address["person"]["sin"] = json!(SIN);
    let records = [
        ("on-vital-stats", "birth-registration", birth("ON-2026-000101", [Some(SIN), None])),
        ("on-vital-stats", "birth-registration", birth("ON-2026-000102", [Some("527000145"), Some(SIN)])),
        ("on-health-plan", "address-change", address),
        ("on-vital-stats", "birth-registration", birth("ON-2026-000103", [Some(OTHER_SIN), None])),
    ];
    let mut accepted = Vec::new();
    for (sender, record_type, body) in records {
        let r = gw.post_record(sender, record_type, &body).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        let receipt = r.json();
        accepted.push(Accepted { record_id: receipt["record_id"].as_str().unwrap().to_owned(), sender, receipt });
    }
    accepted
}

/// The subject key the gateway of `setup` generated into its data directory.
fn subject_key(setup: &Setup) -> passerelle::audit::subject::SubjectKey {
    let hex = std::fs::read_to_string(setup.data_dir().join("subject.key")).unwrap();
    passerelle::audit::subject::SubjectKey::new(&passerelle::digest::decode_hex(hex.trim()).unwrap())
}

/// `GET /admin/v1/access` with `query`, as an operator, with more headers.
async fn lookup(gw: &TestGateway, query: &str, headers: &[(&str, &str)]) -> TestResponse {
    let headers: Vec<(&str, &str)> = [ADMIN].iter().chain(headers).copied().collect();
    gw.admin.send(Method::GET, &format!("/admin/v1/access?{query}"), &headers, "").await
}

/// The disclosures about `subject` once every one of them is delivered (JSON, in English).
async fn delivered(gw: &TestGateway, subject: &str, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = lookup(gw, &format!("subject={subject}"), &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let list = r.json()["disclosures"].as_array().unwrap().clone();
        if list.len() == count && list.iter().all(|d| d["status"] == "delivered") {
            return list;
        }
        assert!(tokio::time::Instant::now() < deadline, "not all delivered: {list:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (record id, recipient, agreement) of each delivery the receipts of `records` announce.
fn announced<'a>(records: impl IntoIterator<Item = &'a Accepted>) -> BTreeSet<(String, String, String)> {
    records
        .into_iter()
        .flat_map(|a| {
            a.receipt["deliveries"].as_array().unwrap().iter().map(|d| {
                let text = |k: &str| d[k].as_str().unwrap().to_owned();
                (a.record_id.clone(), text("recipient"), text("agreement"))
            })
        })
        .collect()
}

fn keys(list: &[Value]) -> BTreeSet<(String, String, String)> {
    list.iter()
        .map(|d| {
            let text = |v: &Value| v.as_str().unwrap().to_owned();
            (text(&d["record_id"]), text(&d["recipient"]["id"]), text(&d["agreement"]["id"]))
        })
        .collect()
}

#[tokio::test]
async fn a_person_in_two_bundles_and_an_address_change_gets_exactly_those_disclosures_with_each_recipients_fields() {
    let gw = Setup::new().start().await;
    let records = send_records(&gw).await;
    let (a, b, address, c) = (&records[0], &records[1], &records[2], &records[3]);
    let list = delivered(&gw, SIN, 10).await;

    // Exactly the deliveries of the person's three records: both bundles whole, and the change.
    assert_eq!(keys(&list), announced([a, b, address]));
    let ids: Vec<i64> = list.iter().map(|d| d["delivery_id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");

    // Each with the fields its recipient's agreement gives it, its purpose, names and proof.
    let config = passerelle::config::load(&gw.setup.main_config()).unwrap();
    let entries = gw.audit_entries().await;
    let delivered_seq: BTreeMap<(String, String), i64> = entries
        .iter()
        .filter(|e| e.event.kind == "delivery.delivered")
        .map(|e| ((e.event.record_id.clone().unwrap(), e.event.recipient.clone().unwrap()), e.seq))
        .collect();
    for d in &list {
        let (record_id, recipient) = (d["record_id"].as_str().unwrap(), d["recipient"]["id"].as_str().unwrap());
        let agreement =
            config.built.agreements.iter().find(|a| *a.id == *d["agreement"]["id"].as_str().unwrap()).unwrap();
        let fields: Vec<String> =
            agreement.recipient(recipient).unwrap().fields.pointers().iter().map(ToString::to_string).collect();
        assert_eq!(d["fields"], json!(fields), "{recipient} under {}", agreement.id);
        assert_eq!(d["agreement"]["purpose"], json!(agreement.purpose));
        assert_eq!(d["agreement"]["title"], json!(agreement.title_en));
        let sent = records.iter().find(|r| r.record_id == record_id).unwrap();
        assert_eq!(d["sender"]["id"], sent.sender);
        assert_eq!(d["sender"]["name"], json!(config.partner(sent.sender).unwrap().name_en));
        assert_eq!(d["recipient"]["name"], json!(config.partner(recipient).unwrap().name_en));
        assert_eq!(d["record_type"], sent.receipt["record_type"]);
        assert_eq!(d["accepted_at"], sent.receipt["received_at"]);
        assert_eq!(d["accepted_seq"], sent.receipt["audit"]["seq"], "the record's own acceptance entry");
        let seq = delivered_seq[&(record_id.to_owned(), recipient.to_owned())];
        assert_eq!(d["delivered_seq"], seq, "the delivery's own entry");
        assert!(d["delivered_at"].as_str().is_some());
        // The health plan is pinned to 1.0: what it received is the record translated.
        let pinned = recipient == "on-health-plan" && d["record_type"] == "birth-registration";
        assert_eq!(d["received_version"], if pinned { "1.0" } else { d["schema_version"].as_str().unwrap() });
    }

    // The city receives neither the SIN nor the registration number, and is there all the same:
    // the subjects are taken before projection.
    let city: Vec<&Value> = list.iter().filter(|d| d["recipient"]["id"] == "ottawa-city").collect();
    assert_eq!(city.len(), 3, "both births and the change");
    for d in &city {
        assert!(d["fields"].as_array().unwrap().iter().all(|f| !f.as_str().unwrap().contains("sin")), "{d}");
    }
    for received in gw.recipient("ottawa-city").received() {
        assert!(!received.body.windows(SIN.len()).any(|w| w == SIN.as_bytes()), "the city got the SIN");
    }

    // Another identifier of one record finds that record; another person finds only theirs.
    let by_registration = delivered(&gw, "ON-2026-000101", 4).await;
    assert_eq!(keys(&by_registration), announced([a]));
    assert_eq!(keys(&delivered(&gw, OTHER_SIN, 4).await), announced([c]));
    let nobody = lookup(&gw, "subject=999999998", &[]).await;
    assert_eq!(nobody.json()["disclosures"], json!([]));
    // Written as the record holds it, whitespace around it aside.
    let spaced = lookup(&gw, &format!("subject=%20{SIN}+"), &[]).await;
    assert_eq!(spaced.json()["disclosures"].as_array().unwrap().len(), 10);

    // Paged by delivery id.
    let first = lookup(&gw, &format!("subject={SIN}&limit=4"), &[]).await.json();
    assert_eq!(first["disclosures"].as_array().unwrap().len(), 4);
    let next = first["next_after"].as_i64().unwrap();
    let rest = lookup(&gw, &format!("subject={SIN}&after={next}"), &[]).await.json();
    assert_eq!(rest["disclosures"].as_array().unwrap().len(), 6);
    assert_eq!(rest["next_after"], Value::Null);

    // Each lookup is audited: the operator and how many disclosures, nothing of the subject.
    let reads: Vec<_> = gw.audit_entries().await.into_iter().filter(|e| e.event.kind == "access.read").collect();
    assert!(reads.len() >= 7, "{}", reads.len());
    let last = reads.last().unwrap();
    assert_eq!(
        (last.event.actor.as_str(), last.event.count, last.event.outcome.as_str()),
        ("operator:bootstrap-admin", 6, "read")
    );
    assert!(last.event.record_id.is_none() && last.event.body_digest.is_none() && last.event.reason.is_none());
    assert_eq!(rest["audit_seq"], last.seq, "the answer names its own entry");
    gw.stop().await;
}

#[tokio::test]
async fn the_access_record_in_french_as_a_printable_page_and_as_the_contract_says() {
    let gw = Setup::new().start().await;
    let records = send_records(&gw).await;
    delivered(&gw, SIN, 10).await;
    let config = passerelle::config::load(&gw.setup.main_config()).unwrap();

    let fr = lookup(&gw, &format!("subject={SIN}"), &[("accept-language", "fr-CA")]).await;
    assert_eq!(fr.header("content-language"), Some("fr"));
    let answer = fr.json();
    assert_eq!(answer["lang"], "fr");
    for d in answer["disclosures"].as_array().unwrap() {
        let recipient = config.partner(d["recipient"]["id"].as_str().unwrap()).unwrap();
        assert_eq!(d["recipient"]["name"], json!(recipient.name_fr));
        let agreement = config.built.agreements.iter().find(|a| *a.id == *d["agreement"]["id"].as_str().unwrap());
        assert_eq!(d["agreement"]["title"], json!(agreement.unwrap().title_fr));
    }

    // The printable page: asked by Accept or by format, in the caller's language, no script.
    let page = lookup(&gw, &format!("subject={SIN}"), &[("accept", "text/html"), ("accept-language", "fr")]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none'") && !csp.contains("script-src"), "{csp}");
    let html = page.text();
    assert!(html.starts_with("<!doctype html>") && html.contains("<html lang=\"fr\">"));
    assert!(html.contains("Registre des communications concernant une personne") && html.contains("Champs reçus"));
    assert!(html.contains("@page") && html.contains("@media print"), "print style");
    assert!(!html.to_lowercase().contains("<script") && !html.contains("http://") && !html.contains("https://"));
    assert_eq!(html.matches("<tr><td>").count(), 10, "one row per disclosure");
    for a in &records[..3] {
        assert!(html.contains(&a.record_id));
    }
    assert!(html.contains("<code>/parents/*/address/postal_code</code>"), "the city's fields");
    assert!(html.contains(&config.partner("ottawa-city").unwrap().name_fr));
    assert!(!html.contains(SIN), "the identifier is not on the page");
    let by_format = lookup(&gw, &format!("subject={SIN}&format=html"), &[]).await;
    assert!(by_format.text().contains("<html lang=\"en\">") && by_format.text().contains("Access record of a person"));
    let json_anyway = lookup(&gw, &format!("subject={SIN}&format=json"), &[("accept", "text/html")]).await;
    assert_eq!(json_anyway.header("content-type"), Some("application/json"));

    // What the admin document says of each answer.
    let doc = gw.admin.send(Method::GET, "/admin/v1/openapi.json", &[ADMIN], "").await.json();
    assert_documented(&doc, "get", "/admin/v1/access", &fr);
    assert!(!answer_schema(&doc, "get", "/admin/v1/access", 200, "text/html").is_null());
    for bad in ["", "subject=", "format=html", &format!("subject={SIN}&format=pdf"), &format!("subject={SIN}&limit=0")]
    {
        let r = lookup(&gw, bad, &[]).await;
        let problem = r.problem(400, "invalid-query");
        assert!(!r.text().contains(SIN), "an error does not echo the identifier: {problem}");
        assert_documented(&doc, "get", "/admin/v1/access", &r);
    }
    let anonymous = gw.admin.send(Method::GET, &format!("/admin/v1/access?subject={SIN}"), &[], "").await;
    anonymous.problem(401, "admin-token-required");
    gw.stop().await;
}

#[tokio::test]
async fn the_subject_reaches_no_log_line_metric_or_audit_entry() {
    let recipients = mock_recipients().await;
    let setup = Setup::new();
    setup.write_for(&recipients);
    let gateway = ChildGateway::spawn(&setup.main_config(), &[("RUST_LOG", "trace")]).await;
    let (client, admin) = (gateway.client.clone(), gateway.admin.clone());
    let mut body = birth("ON-2026-000201", [Some(SIN), None]);
    let r =
        client.post("/v1/records/birth-registration").bearer(&setup.keys["on-vital-stats"]).json(&body).send().await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let record_id = r.json()["record_id"].as_str().unwrap().to_owned();
    // A refused record holding the identifier, too.
    body["parents"][0]["sin"] = json!(format!("{SIN}x"));
    let r =
        client.post("/v1/records/birth-registration").bearer(&setup.keys["on-vital-stats"]).json(&body).send().await;
    assert_eq!(r.status.as_u16(), 422);
    recipients["esdc-sin-registry"].wait_for(1, Duration::from_secs(10)).await;

    let ask = |query: String, headers: Vec<(&'static str, &'static str)>| {
        let admin = admin.clone();
        async move {
            let headers: Vec<(&str, &str)> = [ADMIN].into_iter().chain(headers).collect();
            admin.send(Method::GET, &format!("/admin/v1/access?{query}"), &headers, "").await
        }
    };
    let found = ask(format!("subject={SIN}"), vec![]).await;
    assert_eq!(found.json()["disclosures"].as_array().unwrap().len(), 4);
    assert!(!found.text().contains(SIN));
    ask(format!("subject={SIN}"), vec![("accept", "text/html")]).await;
    ask(format!("subject={SIN}&limit=nope"), vec![]).await.problem(400, "invalid-query");
    let metrics = admin.send(Method::GET, "/metrics", &[], "").await.text();
    let audit = admin.send(Method::GET, "/admin/v1/audit?limit=1000", &[ADMIN], "").await.text();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = gateway.logs.clone();
    gateway.terminate();
    let logs = logs.lock().unwrap().clone();

    // The subject key is a file of the data directory; the digest it makes is what the store
    // holds, and appears nowhere else either.
    let key = subject_key(&setup);
    let digest = hex(&key.digest(SIN));
    assert!(logs.iter().any(|l| l.contains(&record_id)), "the logs are seen");
    assert!(logs.iter().any(|l| l.contains("Access record read.")));
    assert!(logs.iter().any(|l| l.contains("/admin/v1/access")), "the route is logged, its query is not");
    for text in [SIN, digest.as_str()] {
        for line in &logs {
            assert!(!line.contains(text), "a log line carries the subject: {line}");
        }
        assert!(!metrics.contains(text), "the metrics carry the subject");
        assert!(!audit.contains(text), "the audit trail carries the subject");
    }
    let (code, export) = cli(&["audit", "export", "--config", setup.main_config().to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(export.contains("access.read") && !export.contains(SIN) && !export.contains(&digest));
    let db = rusqlite::Connection::open(setup.data_dir().join("passerelle.sqlite")).unwrap();
    let stored: Vec<Vec<u8>> = db
        .prepare("SELECT subject FROM record_subjects")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(stored.iter().any(|s| hex(s) == digest), "the store holds the digest");
}

#[tokio::test]
async fn the_access_record_outlives_the_bodies_and_goes_after_its_own_retention() {
    let gw = Setup::new().retention("delivered_days = 0").retention("purge_interval_secs = 1").start().await;
    let records = send_records(&gw).await;
    delivered(&gw, SIN, 10).await;
    // The bodies of delivered records go at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while gw
        .db()
        .query_row("SELECT COUNT(*) FROM deliveries WHERE body IS NOT NULL", [], |r| r.get::<_, i64>(0))
        .unwrap()
        > 0
    {
        assert!(tokio::time::Instant::now() < deadline, "the bodies were not purged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kept = lookup(&gw, &format!("subject={SIN}"), &[]).await.json();
    assert_eq!(keys(kept["disclosures"].as_array().unwrap()), announced(&records[..3]), "kept past the bodies");
    let setup = gw.stop().await;

    // Seven years on (the default `retention.access_days`), the purge lets them go, audited.
    let config = passerelle::config::load(&setup.main_config()).unwrap();
    assert_eq!(config.settings.retention.access, Duration::from_secs(2555 * 86_400));
    let store = passerelle::gateway::open_store(&config, passerelle::telemetry::Metrics::new()).await.unwrap();
    let at = |days: u64| passerelle::clock::now_ms() + (days * 86_400_000) as i64;
    let purge = |now| passerelle::store::PurgeRequest {
        now,
        delivered_retention_ms: 1,
        dead_retention_ms: 1,
        access_retention_ms: config.settings.retention.access.as_millis() as i64,
    };
    assert_eq!(store.purge(purge(at(2554))).await.unwrap().subjects, 0, "within the retention");
    let report = store.purge(purge(at(2556))).await.unwrap();
    assert_eq!(report.subjects, 2 + 3 + 2 + 2, "each record's distinct subjects");
    let key = subject_key(&setup);
    let query = passerelle::store::AccessQuery { subject: key.digest(SIN), after_id: None, limit: 100 };
    assert!(store.access(query).await.unwrap().is_empty());
    let entries = store.audit_entries(0, 10_000).await.unwrap();
    assert!(entries.iter().any(|e| e.event.kind == "access.purged" && e.event.count == 9));
}

#[tokio::test]
async fn passerelle_access_prints_the_disclosures_as_a_table_or_as_json() {
    let gw = Setup::new().start().await;
    let records = send_records(&gw).await;
    delivered(&gw, SIN, 10).await;
    let config = gw.setup.main_config().to_str().unwrap().to_owned();
    let base = gw.admin.base.clone();
    let run = async |args: &[&str]| {
        let args: Vec<&str> =
            ["access"].iter().chain(args).chain(&["--config", &config, "--admin", &base]).copied().collect();
        cli_env(&args, &[]).await
    };

    let (code, table) = run(&[SIN]).await;
    assert_eq!(code, 0, "{table}");
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("accepted"), "{table}");
    assert!(table.ends_with("10 disclosures.\n"), "{table}");
    for a in &records[..3] {
        assert_eq!(table.matches(&a.record_id).count(), a.receipt["deliveries"].as_array().unwrap().len(), "{table}");
    }
    assert!(!table.contains(&records[3].record_id), "another person's record");
    assert!(table.contains(
        "    fields: /child/date_of_birth, /child/place_of_birth/municipality, /parents/*/address/postal_code"
    ));
    assert!(table.contains("    purpose: Plan child care and public health visits by neighbourhood."));
    let rows = |text: &str, status: &str| text.lines().skip(1).filter(|l| l.contains(&format!("  {status}  "))).count();
    assert_eq!(rows(&table, "delivered"), 10, "{table}");
    assert!(!table.contains(SIN), "the identifier is printed nowhere");

    let (code, french) = run(&[SIN, "--lang", "fr"]).await;
    assert_eq!(code, 0, "{french}");
    assert!(
        french.starts_with("acceptée") && french.contains("    champs : ") && french.ends_with("10 communications.\n")
    );
    assert_eq!(rows(&french, "livrée"), 10, "{french}");
    let (_, none) = run(&["999999998"]).await;
    assert!(none.ends_with("No disclosure is recorded for this identifier.\n"), "{none}");

    // From standard input, as JSON: what the admin API answers, every page together.
    let args: Vec<String> =
        ["access", "-", "--json", "--config", &config, "--admin", &base].iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(binary())
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(format!("{SIN}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys(answer["disclosures"].as_array().unwrap()), announced(&records[..3]));
    gw.stop().await;
}
