//! Dead letters, replay, the admin API's protections, the circuit breaker and strict order.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use crate::support::*;

const TOKEN: &str = "Bearer test-admin-token";

async fn post_births(gw: &TestGateway, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        ids.push(r.json()["record_id"].as_str().unwrap().to_owned());
    }
    ids
}

pub(crate) async fn dead_of(gw: &TestGateway, recipient: &str) -> Vec<serde_json::Value> {
    let r = gw
        .admin
        .send(
            Method::GET,
            &format!("/admin/v1/deliveries?status=dead&recipient={recipient}"),
            &[("authorization", TOKEN)],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["deliveries"].as_array().unwrap().clone()
}

async fn wait_dead(gw: &TestGateway, recipient: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dead = dead_of(gw, recipient).await;
        if dead.len() >= n {
            return dead;
        }
        assert!(Instant::now() < deadline, "{recipient} never had {n} dead deliveries");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_admin_api_needs_the_token_and_the_same_origin() {
    let gw = Setup::new().start().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(gw.admin.send(Method::GET, path, &[], "").await.status, StatusCode::OK, "{path} is open");
    }
    gw.admin.send(Method::GET, "/admin/v1/deliveries", &[], "").await.problem(401, "admin-token-required");
    gw.admin
        .send(Method::GET, "/admin/v1/deliveries", &[("authorization", "Bearer wrong")], "")
        .await
        .problem(401, "admin-token-required");
    assert_eq!(
        gw.admin.send(Method::GET, "/admin/v1/deliveries", &[("authorization", TOKEN)], "").await.status,
        StatusCode::OK
    );
    // A state-changing call from another origin is refused even with the token.
    let replay = "/admin/v1/deliveries/1/replay";
    gw.admin
        .send(Method::POST, replay, &[("authorization", TOKEN), ("origin", "http://evil.example")], "")
        .await
        .problem(403, "cross-origin");
    gw.admin
        .send(Method::POST, replay, &[("authorization", TOKEN), ("sec-fetch-site", "cross-site")], "")
        .await
        .problem(403, "cross-origin");
    gw.admin.send(Method::POST, replay, &[], "").await.problem(401, "admin-token-required");
    // From its own origin it goes through (here: no such delivery).
    let origin = format!("http://{}", gw.gateway.as_ref().unwrap().admin_addr);
    gw.admin
        .send(Method::POST, replay, &[("authorization", TOKEN), ("origin", &origin)], "")
        .await
        .problem(404, "delivery-not-found");
    gw.admin.send(Method::GET, replay, &[("authorization", TOKEN)], "").await.problem(405, "method-not-allowed");
}

#[tokio::test]
async fn a_replay_resends_the_stored_body_to_that_recipient_only() {
    let gw = Setup::new().start().await;
    gw.recipient("ottawa-city").respond(400);
    let ids = post_births(&gw, 1).await;
    let dead = wait_dead(&gw, "ottawa-city", 1).await;
    assert_eq!(dead[0]["record_id"], ids[0].as_str());
    assert_eq!(dead[0]["last_status"], 400);
    assert_eq!(dead[0]["body_kept"], true);
    let first_body = gw.recipient("ottawa-city").received()[0].body.clone();
    for other in ["esdc-sin-registry", "cra-child-benefit", "on-health-plan"] {
        gw.recipient(other).wait_for(1, Duration::from_secs(5)).await;
    }

    gw.recipient("ottawa-city").respond(200);
    let id = dead[0]["id"].as_i64().unwrap();
    let r = gw
        .admin
        .send(Method::POST, &format!("/admin/v1/deliveries/{id}/replay"), &[("authorization", TOKEN)], "")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["replayed"], 1);
    let got = gw.recipient("ottawa-city").wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(got[1].body, first_body, "the stored projection, byte for byte");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for other in ["esdc-sin-registry", "cra-child-benefit", "on-health-plan"] {
        assert_eq!(gw.recipient(other).received().len(), 1, "{other} did not receive the replay");
    }
    // Replaying a delivery that is not dead is refused.
    let again = gw
        .admin
        .send(Method::POST, &format!("/admin/v1/deliveries/{id}/replay"), &[("authorization", TOKEN)], "")
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let page = gw.metrics().await;
    assert_eq!(
        metric(&page, "passerelle_deliveries_total", &[("recipient", "ottawa-city"), ("outcome", "replayed")]),
        1.0
    );
    assert_eq!(gw.audited("delivery.replayed", |e| e.actor == "operator:bootstrap-admin").await, 1);
}

#[tokio::test]
async fn the_command_line_lists_and_replays_a_recipients_dead_letters() {
    let gw = Setup::new().start().await;
    gw.recipient("ottawa-city").respond(422);
    post_births(&gw, 3).await;
    wait_dead(&gw, "ottawa-city", 3).await;
    gw.recipient("ottawa-city").respond(200);
    let config = gw.setup.main_config();
    let admin = format!("http://{}", gw.gateway.as_ref().unwrap().admin_addr);
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend(["--config".into(), config.to_str().unwrap().into(), "--admin".into(), admin.clone()]);
        v
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        cli(&refs)
    };
    let (code, out) = tokio::task::spawn_blocking({
        let a = args(&["deliveries", "list", "--status", "dead"]);
        move || run(a)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 deliveries.") && out.contains("HTTP 422"), "{out}");
    // Found trying the product as an operator: the id and attempts columns did not align.
    let table: Vec<&str> = out.lines().filter(|l| !l.ends_with("deliveries.")).collect();
    assert_eq!(table.len(), 4, "{out}");
    for column in ["record", "recipient", "status", "attempts", "last error"] {
        let at = table[0].find(column).unwrap();
        let end = at + column.len();
        for row in &table[1..] {
            let cell = if column == "attempts" { &row[..end] } else { &row[at..] };
            let edge = if column == "attempts" { cell.chars().last() } else { cell.chars().next() };
            assert!(edge.is_some_and(|c| c != ' '), "{column} does not line up:\n{out}");
            if column != "attempts" {
                assert!(row[..at].ends_with("  "), "{column} does not start its own column:\n{out}");
            }
        }
    }
    let (code, out) = tokio::task::spawn_blocking({
        let a = args(&["deliveries", "replay", "--recipient", "ottawa-city"]);
        move || run(a)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 deliveries replayed."), "{out}");
    gw.recipient("ottawa-city").wait_for(6, Duration::from_secs(5)).await;
    assert!(dead_of(&gw, "ottawa-city").await.is_empty());
}

#[tokio::test]
async fn a_recipient_down_for_a_while_gets_everything_in_order_and_the_breaker_closes() {
    let gw = Setup::new()
        .delivery("concurrency_per_recipient = 1")
        .delivery("breaker_failures = 3")
        .delivery("breaker_open_ms = 300")
        .delivery("max_attempts = 100")
        .start()
        .await;
    let plan = gw.recipient("on-health-plan");
    plan.respond(503);
    let ids = post_births(&gw, 10).await;
    // The breaker opens after three failures...
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = gw.metrics().await;
        if metric(&page, "passerelle_circuit_breaker_state", &[("recipient", "on-health-plan")]) == 2.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the breaker never opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...and while it is open, one probe per interval: not one attempt per queued delivery.
    let before = plan.received().len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let during = plan.received().len() - before;
    assert!(during <= 5, "{during} attempts in 1 s with the breaker open");
    plan.respond(200);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let delivered: i64 = gw
            .db()
            .query_row(
                "SELECT COUNT(*) FROM deliveries WHERE recipient = 'on-health-plan' AND status = 'delivered'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if delivered == 10 {
            break;
        }
        assert!(Instant::now() < deadline, "only {delivered} of 10 delivered after the recipient came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // First attempts left in acceptance order.
    let mut first_seen = Vec::new();
    for r in plan.received() {
        let id = r.header("passerelle-record-id").unwrap().to_owned();
        if !first_seen.contains(&id) {
            first_seen.push(id);
        }
    }
    assert_eq!(first_seen, ids);
    let page = gw.metrics().await;
    assert_eq!(
        metric(&page, "passerelle_circuit_breaker_state", &[("recipient", "on-health-plan")]),
        0.0,
        "the breaker closed"
    );
}

#[tokio::test]
async fn an_ordered_recipient_waits_behind_a_failing_head() {
    let ordered = std::fs::read_to_string(repo().join("config/agreements/birth-ottawa.toml"))
        .unwrap()
        .replace("partner = \"ottawa-city\"", "partner = \"ottawa-city\"\nordered = true");
    let gw = Setup::new().agreement("birth-ottawa", &ordered).start().await;
    let city = gw.recipient("ottawa-city");
    city.fail_times(3, 503);
    let ids = post_births(&gw, 5).await;
    let got = city.wait_for(8, Duration::from_secs(15)).await;
    let order: Vec<&str> = got.iter().map(|r| r.header("passerelle-record-id").unwrap()).collect();
    // The head is tried until it succeeds; nothing behind it leaves before.
    assert_eq!(&order[..4], &[ids[0].as_str(); 4]);
    assert_eq!(&order[4..], &ids[1..].iter().map(String::as_str).collect::<Vec<_>>()[..]);
}
