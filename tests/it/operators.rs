//! What operators see: probes, metrics, and logs that never carry a record's values.

use std::time::Duration;

use http::{Method, StatusCode};

use crate::support::*;

#[tokio::test]
async fn probes_and_metrics_are_served_on_the_admin_listener() {
    let gw = Setup::new().start().await;
    assert_eq!(gw.admin.send(Method::GET, "/healthz", &[], "").await.status, StatusCode::OK);
    let ready = gw.admin.send(Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.text(), "ready (sqlite store)\n");
    gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    gw.recipient("ottawa-city").wait_for(1, Duration::from_secs(5)).await;
    let page = gw.metrics().await;
    for name in [
        "passerelle_records_received_total",
        "passerelle_deliveries_total",
        "passerelle_delivery_attempt_duration_seconds_bucket",
        "passerelle_request_duration_seconds_bucket",
        "passerelle_store_commit_duration_seconds_bucket",
        "passerelle_store_commit_batch_size_bucket",
        "passerelle_build_info",
    ] {
        assert!(page.contains(name), "{name} missing from /metrics");
    }

    assert_eq!(
        metric(
            &page,
            "passerelle_records_received_total",
            &[("sender", "on-vital-stats"), ("record_type", "birth-registration"), ("outcome", "accepted")]
        ),
        1.0
    );
    assert_eq!(
        metric(&page, "passerelle_request_duration_seconds_count", &[("route", "submit"), ("status_class", "2xx")]),
        1.0
    );
}

/// Found by Schemathesis: another method on a probe answered 404 (with the token) or 401.
#[tokio::test]
async fn a_probe_answers_another_method_with_405() {
    let gw = Setup::new().start().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        for auth in [&[][..], &[("authorization", "Bearer test-admin-token")][..]] {
            for method in [Method::POST, Method::DELETE, Method::TRACE] {
                let r = gw.admin.send(method.clone(), path, auth, "").await;
                r.problem(405, "method-not-allowed");
                assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method} {path}");
            }
        }
        assert_eq!(gw.admin.send(Method::HEAD, path, &[], "").await.status, StatusCode::OK, "HEAD {path}");
    }
}

#[tokio::test]
async fn readiness_fails_when_the_store_is_gone() {
    let gw = Setup::new().start().await;
    std::fs::remove_dir_all(gw.setup.data_dir()).unwrap();
    std::fs::write(gw.setup.data_dir(), b"not a directory").unwrap();
    assert_eq!(gw.admin.send(Method::GET, "/readyz", &[], "").await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(gw.admin.send(Method::GET, "/healthz", &[], "").await.status, StatusCode::OK);
}

/// Runs the real binary at TRACE level and looks for a marker value everywhere it could leak.
#[tokio::test]
async fn a_record_value_never_reaches_logs_metrics_or_the_audit_trail() {
    let mut recipients = std::collections::HashMap::new();
    for (id, _) in RECIPIENTS {
        recipients.insert(id.to_string(), MockRecipient::start().await);
    }
    let setup = Setup::new();
    let endpoints = recipients.iter().map(|(id, m)| (id.clone(), m.endpoint())).collect();
    setup.write(&endpoints);
    let gateway = ChildGateway::spawn(&setup.main_config(), &[("RUST_LOG", "trace")]).await;
    let (client, admin) = (gateway.client.clone(), gateway.admin.clone());
    let marker = "Zyxwvutsrqp";
    let mut body = record("birth-registration-1.1.json");
    body["child"]["surname"] = serde_json::json!(marker);
    let key = setup.keys["on-vital-stats"].clone();
    let r = client
        .send(
            Method::POST,
            "/v1/records/birth-registration",
            &[("authorization", &format!("Bearer {key}")), ("content-type", "application/json")],
            body.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let id = r.json()["record_id"].as_str().unwrap().to_owned();
    // A rejected record holding the marker, too.
    body["child"]["sex_at_birth"] = serde_json::json!(marker);
    let r = client
        .send(
            Method::POST,
            "/v1/records/birth-registration",
            &[("authorization", &format!("Bearer {key}")), ("content-type", "application/json")],
            body.to_string(),
        )
        .await;
    assert_eq!(r.status.as_u16(), 422);
    assert!(!r.text().contains(marker));
    // The surname goes to three recipients; wait for them, then for the log lines of the attempts.
    recipients["esdc-sin-registry"].wait_for(1, Duration::from_secs(5)).await;
    let page = admin.send(Method::GET, "/metrics", &[], "").await.text();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = gateway.logs.clone();
    gateway.kill9();
    let logs = logs.lock().unwrap().clone();
    assert!(logs.iter().any(|l| l.contains(&id)), "the record id appears in the logs, so the test can see them");
    assert!(logs.iter().any(|l| l.contains("Delivery attempted.")));
    for line in &logs {
        assert!(!line.contains(marker), "a log line carries the record's value: {line}");
    }
    assert!(!page.contains(marker));
    let db = rusqlite::Connection::open(setup.data_dir().join("passerelle.sqlite")).unwrap();
    let mut stmt = db.prepare("SELECT * FROM audit_log").unwrap();
    let columns = stmt.column_count();
    let rows: Vec<String> = stmt
        .query_map([], |row| Ok((0..columns).map(|i| cell(row.get_ref(i).unwrap())).collect::<Vec<_>>().join("|")))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(rows.iter().any(|r| r.contains("record.accepted")), "the accepted record is audited");
    assert!(rows.iter().all(|r| !r.contains(marker) && !r.contains(&hex(marker.as_bytes()))));
}

/// A cell as text: strings as themselves, blobs in hex and as (lossy) text.
fn cell(v: rusqlite::types::ValueRef<'_>) -> String {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Blob(b) => format!("{} {}", hex(b), String::from_utf8_lossy(b)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
