//! Delivery: retries with backoff, dead letters, redirects, and isolation between recipients.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

pub(crate) async fn post_birth(gw: &TestGateway) -> String {
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    r.json()["record_id"].as_str().unwrap().to_owned()
}

pub(crate) async fn status_of(gw: &TestGateway, id: &str) -> Value {
    gw.client.get(&format!("/v1/records/{id}"), gw.key("on-vital-stats")).await.json()
}

pub(crate) fn delivery<'a>(view: &'a Value, recipient: &str) -> &'a Value {
    view["deliveries"].as_array().unwrap().iter().find(|d| d["recipient"] == recipient).unwrap()
}

pub(crate) async fn wait_status(gw: &TestGateway, id: &str, recipient: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let view = status_of(gw, id).await;
        if delivery(&view, recipient)["status"] == status {
            return view;
        }
        assert!(Instant::now() < deadline, "{recipient} never reached {status}: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn transient_failures_are_retried_until_delivered() {
    let gw = Setup::new().start().await;
    gw.recipient("ottawa-city").fail_times(2, 503);
    let id = post_birth(&gw).await;
    let got = gw.recipient("ottawa-city").wait_for(3, Duration::from_secs(10)).await;
    assert!(got.iter().all(|r| r.body == got[0].body), "each retry sends the same stored body");
    assert!(got.iter().all(|r| r.header("idempotency-key") == got[0].header("idempotency-key")));
    let view = wait_status(&gw, &id, "ottawa-city", "delivered").await;
    assert_eq!(delivery(&view, "ottawa-city")["attempts"], 3);
    assert_eq!(view["status"], "delivered");
    let page = gw.metrics().await;
    assert_eq!(
        metric(&page, "passerelle_deliveries_total", &[("recipient", "ottawa-city"), ("outcome", "retry")]),
        2.0
    );
    assert_eq!(
        metric(&page, "passerelle_deliveries_total", &[("recipient", "ottawa-city"), ("outcome", "delivered")]),
        1.0
    );
}

#[tokio::test]
async fn every_retryable_status_is_retried_and_retry_after_is_honoured() {
    // Five failures in a row would open the breaker; this test is about the statuses.
    let gw = Setup::new().delivery("breaker_failures = 100").start().await;
    let city = gw.recipient("ottawa-city");
    for status in [408, 425, 429, 500, 502] {
        city.fail_times(1, status);
    }
    city.with_header("retry-after", "1");
    let started = Instant::now();
    let id = post_birth(&gw).await;
    wait_status(&gw, &id, "ottawa-city", "delivered").await;
    assert_eq!(city.received().len(), 6);
    // Five retries, each waiting at least the recipient's Retry-After of one second.
    assert!(started.elapsed() >= Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_refusing_recipient_makes_the_delivery_dead_at_once() {
    let gw = Setup::new().start().await;
    gw.recipient("ottawa-city").respond(400);
    let id = post_birth(&gw).await;
    let view = wait_status(&gw, &id, "ottawa-city", "dead").await;
    let city = delivery(&view, "ottawa-city");
    assert_eq!(city["attempts"], 1);
    assert_eq!(city["last_error"], "HTTP 400");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gw.recipient("ottawa-city").received().len(), 1, "a dead delivery is not retried");
    for other in ["esdc-sin-registry", "cra-child-benefit", "on-health-plan"] {
        wait_status(&gw, &id, other, "delivered").await;
    }
    assert_eq!(status_of(&gw, &id).await["status"], "failed");
    let page = gw.metrics().await;
    assert_eq!(metric(&page, "passerelle_deliveries_total", &[("recipient", "ottawa-city"), ("outcome", "dead")]), 1.0);
}

#[tokio::test]
async fn too_many_attempts_make_the_delivery_dead() {
    let gw = Setup::new().delivery("max_attempts = 3").start().await;
    gw.recipient("ottawa-city").respond(503);
    let id = post_birth(&gw).await;
    let view = wait_status(&gw, &id, "ottawa-city", "dead").await;
    assert_eq!(delivery(&view, "ottawa-city")["attempts"], 3);
    assert!(delivery(&view, "ottawa-city")["last_error"].as_str().unwrap().contains("gave up after 3 attempts"));
    assert_eq!(gw.recipient("ottawa-city").received().len(), 3);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let elsewhere = MockRecipient::start().await;
    let gw = Setup::new().start().await;
    gw.recipient("ottawa-city").respond(307).with_header("location", &elsewhere.endpoint());
    let id = post_birth(&gw).await;
    let view = wait_status(&gw, &id, "ottawa-city", "dead").await;
    assert_eq!(delivery(&view, "ottawa-city")["last_error"], "HTTP 307");
    assert!(elsewhere.received().is_empty(), "the redirect was followed");
}

#[tokio::test]
async fn a_slow_recipient_does_not_delay_the_others() {
    let gw = Setup::new().start().await;
    gw.recipient("ottawa-city").delay(Duration::from_secs(5));
    let started = Instant::now();
    for _ in 0..5 {
        post_birth(&gw).await;
    }
    for fast in ["esdc-sin-registry", "cra-child-benefit", "on-health-plan"] {
        gw.recipient(fast).wait_for(5, Duration::from_secs(1)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_unreachable_recipient_does_not_delay_the_others() {
    // ottawa-city points at a closed port.
    let gw = Setup::new().start_without("ottawa-city").await;
    let id = post_birth(&gw).await;
    for fast in ["esdc-sin-registry", "cra-child-benefit", "on-health-plan"] {
        gw.recipient(fast).wait_for(1, Duration::from_secs(1)).await;
    }
    let view = wait_status(&gw, &id, "ottawa-city", "retrying").await;
    assert_eq!(delivery(&view, "ottawa-city")["last_error"], "connection refused");
}

#[tokio::test]
async fn first_attempts_leave_in_acceptance_order() {
    let gw = Setup::new().delivery("concurrency_per_recipient = 1").start().await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(post_birth(&gw).await);
    }
    let got = gw.recipient("on-health-plan").wait_for(20, Duration::from_secs(10)).await;
    let order: Vec<&str> = got.iter().map(|r| r.header("passerelle-record-id").unwrap()).collect();
    assert_eq!(order, ids.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn backlog_gauges_show_pending_and_dead_deliveries() {
    let gw = Setup::new().start_without("ottawa-city").await;
    for _ in 0..3 {
        post_birth(&gw).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = gw.metrics().await;
        let pending = metric(&page, "passerelle_deliveries_pending", &[("recipient", "ottawa-city")]);
        let oldest = metric(&page, "passerelle_delivery_oldest_pending_seconds", &[("recipient", "ottawa-city")]);
        if pending == 3.0 && oldest > 0.0 {
            assert_eq!(metric(&page, "passerelle_deliveries_pending", &[("recipient", "on-health-plan")]), 0.0);
            break;
        }
        assert!(Instant::now() < deadline, "gauges never showed the backlog");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn accepted_records_survive_a_restart_and_are_delivered_once() {
    let gw = Setup::new().start_without("ottawa-city").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(post_birth(&gw).await);
    }
    gw.recipient("on-health-plan").wait_for(3, Duration::from_secs(5)).await;
    let mut recipients = gw.recipients.clone();
    let setup = gw.stop().await;
    // The city comes online; the gateway restarts on the same data directory.
    recipients.insert("ottawa-city".to_owned(), MockRecipient::start().await);
    let gw = setup.start_with(recipients).await;
    let city = gw.recipient("ottawa-city").wait_for(3, Duration::from_secs(10)).await;
    let mut got: Vec<&str> = city.iter().map(|r| r.header("passerelle-record-id").unwrap()).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (id, m) in &gw.recipients {
        assert_eq!(m.duplicates(), 0, "{id} received a delivered record again");
        assert_eq!(m.received().len(), 3, "{id}");
    }
}

#[tokio::test]
async fn a_recipient_offering_http2_gets_its_deliveries_multiplexed_on_one_connection() {
    let authority = passerelle::pki::Authority::new("Recipient CA").unwrap();
    let server = authority.server(&["localhost"]).unwrap();
    let h2 = MockRecipient::start_tls(&server.cert_pem, &server.key_pem, None).await;
    let h1 = MockRecipient::start_tls_http1(&server.cert_pem, &server.key_pem).await;
    // Slow answers keep several deliveries in flight at once.
    h2.delay(Duration::from_millis(300));
    h1.delay(Duration::from_millis(300));
    let setup = Setup::new();
    let ca = setup.dir.path().join("recipient-ca.pem");
    std::fs::write(&ca, &authority.cert_pem).unwrap();
    let mut recipients = mock_recipients().await;
    let mut endpoints: std::collections::HashMap<String, String> =
        recipients.iter().map(|(id, m)| (id.clone(), m.endpoint())).collect();
    for (id, mock) in [("esdc-sin-registry", &h2), ("cra-child-benefit", &h1)] {
        endpoints.insert(id.to_owned(), mock.https_endpoint());
        recipients.insert(id.to_owned(), mock.clone());
    }
    let gw = setup.delivery(&format!("ca_files = [\"{}\"]", ca.display())).start_on(recipients, &endpoints).await;

    // The first delivery opens the connection; the next ten, sent together, share it.
    post_birth(&gw).await;
    h2.wait_for(1, Duration::from_secs(10)).await;
    futures_util::future::join_all((0..10).map(|_| post_birth(&gw))).await;
    let got = h2.wait_for(11, Duration::from_secs(15)).await;
    assert!(got.iter().all(|r| r.version == http::Version::HTTP_2), "every delivery went over HTTP/2");
    assert_eq!(h2.connections(), 1, "eleven deliveries, one connection");
    let got = h1.wait_for(11, Duration::from_secs(15)).await;
    assert!(got.iter().all(|r| r.version == http::Version::HTTP_11), "an HTTP/1.1 recipient is still served");
    assert!(h1.connections() > 1, "HTTP/1.1 runs one delivery per connection at a time");
}

/// A gateway whose recipients have `slots` slots each, `on-health-plan` taking `delay` to answer,
/// once its workers have claimed once and found nothing due: each takes a fresh record's
/// delivery in memory, without a claim.
async fn caught_up_with_slots(slots: usize, delay: Duration) -> TestGateway {
    let gw = Setup::new().delivery(&format!("concurrency_per_recipient = {slots}")).start().await;
    gw.recipient("on-health-plan").delay(delay);
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw
}

/// How many of `on-health-plan`'s deliveries were handed over at acceptance.
async fn handed_to_health(gw: &TestGateway) -> f64 {
    metric(&gw.metrics().await, "passerelle_deliveries_handed_over_total", &[("recipient", "on-health-plan")])
}

#[tokio::test]
async fn a_fresh_record_is_handed_to_a_caught_up_worker_and_never_overtakes_a_stored_one() {
    let gw = caught_up_with_slots(1, Duration::from_millis(300)).await;
    let health = gw.recipient("on-health-plan");
    let first = post_birth(&gw).await;
    // Its one slot is busy for 300 ms: the second is taken all the same, in line for the slot
    // (one place per slot); the third finds the line full and waits in the store for a claim,
    // and the worker takes no hand-off until it has claimed it, so they leave in acceptance
    // order.
    let (second, third) = (post_birth(&gw).await, post_birth(&gw).await);
    let got = health.wait_for(3, Duration::from_secs(10)).await;
    let order: Vec<&str> = got.iter().map(|r| r.header("passerelle-record-id").unwrap()).collect();
    assert_eq!(order, [first.as_str(), second.as_str(), third.as_str()]);
    for id in [&first, &second, &third] {
        wait_status(&gw, id, "on-health-plan", "delivered").await;
    }
    assert_eq!(handed_to_health(&gw).await, 2.0, "the first two were handed over, the third claimed");
    // Caught up again (a poll's claim found nothing): the next is handed over.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fourth = post_birth(&gw).await;
    wait_status(&gw, &fourth, "on-health-plan", "delivered").await;
    assert_eq!(handed_to_health(&gw).await, 3.0);
}

#[tokio::test]
async fn a_worker_behind_catches_up_while_its_one_slot_is_busy() {
    // One slot, a recipient that takes 800 ms. The first record is handed over into the slot,
    // the second into the line, the third finds the line full and is stored: the worker is
    // behind. Once the second starts, the worker claims the third into its line although its
    // slot is busy; once the third starts, a claim that finds nothing more shows it caught up,
    // so a fourth sent while the third is still in flight is handed over, not stored.
    let gw = caught_up_with_slots(1, Duration::from_millis(800)).await;
    let health = gw.recipient("on-health-plan");
    let (first, second, third) = (post_birth(&gw).await, post_birth(&gw).await, post_birth(&gw).await);
    // The second has been answered: the third is in flight for 800 ms.
    health.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let fourth = post_birth(&gw).await;
    let got = health.wait_for(4, Duration::from_secs(10)).await;
    let order: Vec<&str> = got.iter().map(|r| r.header("passerelle-record-id").unwrap()).collect();
    assert_eq!(order, [first.as_str(), second.as_str(), third.as_str(), fourth.as_str()]);
    wait_status(&gw, &fourth, "on-health-plan", "delivered").await;
    assert_eq!(handed_to_health(&gw).await, 3.0, "the first, second and fourth were handed over, the third claimed");
}

#[tokio::test]
async fn a_recipient_never_has_more_requests_in_flight_than_its_cap() {
    // Two slots, a recipient that takes 100 ms, twelve records at once: each request holds a
    // slot until its answer arrives (its result then waits for the store without it).
    let gw = caught_up_with_slots(2, Duration::from_millis(100)).await;
    let health = gw.recipient("on-health-plan");
    let ids = futures_util::future::join_all((0..12).map(|_| post_birth(&gw))).await;
    health.wait_for(12, Duration::from_secs(20)).await;
    for id in &ids {
        wait_status(&gw, id, "on-health-plan", "delivered").await;
    }
    assert_eq!(health.most_in_flight(), 2, "the cap is used, and never exceeded");
}

#[tokio::test]
async fn records_sent_together_leave_in_the_order_they_were_accepted() {
    // One slot, a recipient that takes 20 ms: most of forty records sent at once find it busy
    // and wait in the store, while others arrive as it frees. Whichever way each goes (handed
    // over as it commits, or claimed), a record received and committed before another leaves
    // before it. (Of two records sent together, the one received first may commit second: then
    // neither order is the acceptance order, and either may leave first.)
    let gw = caught_up_with_slots(1, Duration::from_millis(20)).await;
    let health = gw.recipient("on-health-plan");
    let body = record("birth-registration-1.1.json");
    let posts = (0..40).map(|_| gw.post_record("on-vital-stats", "birth-registration", &body));
    let accepted: std::collections::HashMap<String, (i64, String)> = futures_util::future::join_all(posts)
        .await
        .iter()
        .map(|r| {
            assert_eq!(r.status.as_u16(), 202, "{}", r.text());
            let receipt = r.json();
            let (seq, received_at) = (receipt["audit"]["seq"].as_i64().unwrap(), receipt["received_at"].to_string());
            (receipt["record_id"].as_str().unwrap().to_owned(), (seq, received_at))
        })
        .collect();
    let got = health.wait_for(40, Duration::from_secs(20)).await;
    let left: Vec<&(i64, String)> = got.iter().map(|r| &accepted[r.header("passerelle-record-id").unwrap()]).collect();
    for (i, earlier) in left.iter().enumerate() {
        for later in &left[i + 1..] {
            assert!(
                !(later.0 < earlier.0 && later.1 < earlier.1),
                "a record received and committed first ({later:?}) left after {earlier:?}"
            );
        }
    }
    let handed =
        metric(&gw.metrics().await, "passerelle_deliveries_handed_over_total", &[("recipient", "on-health-plan")]);
    assert!(handed >= 1.0, "no record went by hand-off: the test shows nothing of it");
}
