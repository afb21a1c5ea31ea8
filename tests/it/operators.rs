//! What operators see: probes, metrics, and logs that never carry a record's values.

use std::time::Duration;

use http::{Method, StatusCode};

use crate::support::*;

const BIRTH: &str = "/v1/records/birth-registration";

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
        "passerelle_store_writer_busy_seconds_total",
        "passerelle_store_writer_transactions_total",
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
    let recipients = mock_recipients().await;
    let setup = Setup::new();
    setup.write_for(&recipients);
    let gateway = ChildGateway::spawn(&setup.main_config(), &[("RUST_LOG", "trace")]).await;
    let (client, admin) = (gateway.client.clone(), gateway.admin.clone());
    let marker = "Zyxwvutsrqp";
    let mut body = record("birth-registration-1.1.json");
    body["child"]["surname"] = serde_json::json!(marker);
    let post = |body: &serde_json::Value| client.post(BIRTH).bearer(&setup.keys["on-vital-stats"]).json(body).send();
    let r = post(&body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let id = r.json()["record_id"].as_str().unwrap().to_owned();
    // A rejected record holding the marker, too.
    body["child"]["sex_at_birth"] = serde_json::json!(marker);
    let r = post(&body).await;
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

/// Found trying the product as an operator: the admin listener logged no request at all, the
/// partner request line had no method, path or peer, and latency read `2.5649219999999997`.
#[tokio::test]
async fn every_request_on_both_listeners_has_one_line_with_route_status_latency_peer_partner_and_trace() {
    let setup = Setup::new();
    setup.write(&std::collections::HashMap::new());
    let gateway = ChildGateway::spawn(&setup.main_config(), &[]).await;
    let (client, admin) = (gateway.client.clone(), gateway.admin.clone());
    let key = setup.keys["on-vital-stats"].clone();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = client
        .post(BIRTH)
        .bearer(&key)
        .header("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&record("birth-registration-1.1.json"))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let record_id = r.json()["record_id"].as_str().unwrap().to_owned();
    let request_id = r.header("passerelle-request-id").unwrap().to_owned();
    let status_path = format!("/v1/records/{record_id}");
    assert_eq!(client.get(&status_path, &key).await.status, StatusCode::OK);
    assert_eq!(client.send(Method::GET, "/nowhere", &[], "").await.status, StatusCode::NOT_FOUND);
    assert_eq!(admin.send(Method::GET, "/healthz", &[], "").await.status, StatusCode::OK);
    let overview = admin.send(Method::GET, "/admin/v1/overview", &[("authorization", "Bearer test-admin-token")], "");
    assert_eq!(overview.await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = gateway.logs.clone();
    gateway.terminate();
    let lines: Vec<serde_json::Value> = logs
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "Request served.")
        .collect();
    let line = |listener: &str, route: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|l| l["listener"] == listener && l["route"] == route).collect()
    };
    let submit = line("partner", "/v1/records/{record_type}");
    assert_eq!(submit.len(), 1, "one line per request: {lines:#?}");
    let submit = submit[0];
    assert_eq!(submit["method"], "POST");
    assert_eq!(submit["status"], 202);
    assert_eq!(submit["partner"], "on-vital-stats");
    assert_eq!(submit["trace_id"], trace);
    assert_eq!(submit["request_id"], request_id.as_str());
    assert_eq!(submit["record_id"], record_id.as_str());
    assert_eq!(submit["outcome"], "accepted");
    assert!(submit["latency_us"].is_u64(), "whole microseconds: {submit}");
    assert!(submit["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:")), "{submit}");
    // The route template, never the raw path (which would carry the record id).
    let status = line("partner", "/v1/records/{record_id}");
    assert_eq!(status.len(), 1);
    assert!(!status[0].to_string().contains(&status_path));
    assert_eq!(line("partner", "unknown")[0]["status"], 404);
    assert_eq!(line("admin", "/healthz")[0]["status"], 200);
    let overview = line("admin", "/admin/v1/overview");
    assert_eq!(
        (overview[0]["partner"].as_str(), overview[0]["status"].as_u64()),
        (Some("operator:bootstrap-admin"), Some(200))
    );
    assert_eq!(lines.len(), 5, "exactly one line per request: {lines:#?}");
}

/// Process metrics (CPU, memory, open files) are on `/metrics` beside the gateway's own.
#[tokio::test]
async fn process_metrics_are_served() {
    let gw = Setup::new().start().await;
    let page = gw.metrics().await;
    for name in
        ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"]
    {
        assert!(page.lines().any(|l| l.starts_with(name)), "{name} missing");
    }
}

/// Every answer whose text follows `Accept-Language` says so, so a cache does not serve the
/// French answer to an English reader.
#[tokio::test]
async fn localised_answers_vary_on_accept_language() {
    let gw = Setup::new().start().await;
    let problem = gw.client.send(Method::POST, BIRTH, &[("accept-language", "fr")], "").await;
    assert_eq!(problem.header("content-language"), Some("fr"));
    assert_eq!(problem.header("vary"), Some("accept-language"));
    let console = gw.admin.send(Method::GET, "/console", &[], "").await;
    assert_eq!(console.header("vary"), Some("accept-language"));
    let admin_problem = gw.admin.send(Method::GET, "/admin/v1/overview", &[], "").await;
    assert_eq!(admin_problem.header("vary"), Some("accept-language"));
}
