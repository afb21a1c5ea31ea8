//! The gateway on PostgreSQL: the same push path, delivery and audit chain as on SQLite.

use std::time::Duration;

use http::{Method, StatusCode};

use crate::support::*;

/// The test server (see the README): `PASSERELLE_TEST_POSTGRES` or the local one.
fn server() -> String {
    std::env::var("PASSERELLE_TEST_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".to_owned())
}

/// A schema of its own, dropped at the end, and the key-encryption key its instances share.
struct Schema(String, tempfile::TempDir);

impl Schema {
    async fn create() -> Schema {
        let name = format!("it_{}", uuid::Uuid::now_v7().simple());
        let (client, connection) = tokio_postgres::connect(&server(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is required for these tests ({}): {e}", server()));
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE SCHEMA {name}")).await.unwrap();
        let keys = tempfile::tempdir().unwrap();
        std::fs::write(keys.path().join("store.key"), hex(&passerelle::random::bytes::<32>())).unwrap();
        Schema(name, keys)
    }

    fn url(&self) -> String {
        format!("{} options='-c search_path={}'", server(), self.0)
    }

    /// The `[store]` lines of an instance on this schema. Instances sharing a store share its
    /// key-encryption key (README, "Encryption at rest").
    fn instance(&self) -> String {
        let key = self.1.path().join("store.key");
        format!("url = \"{}\"\nencryption = {{ key_file = \"{}\" }}", self.url(), key.display())
    }

    async fn drop_now(self) {
        let (client, connection) = tokio_postgres::connect(&server(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.0)).await.unwrap();
    }
}

#[tokio::test]
async fn the_birth_bundle_goes_through_a_postgresql_store() {
    let schema = Schema::create().await;
    let gw = Setup::new().store(&format!("url = \"{}\"", schema.url())).start().await;
    let ready = gw.admin.send(Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.text(), "ready (postgres store)\n");
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let id = r.json()["record_id"].as_str().unwrap().to_owned();
    for recipient in ["esdc-sin-registry", "cra-child-benefit", "on-health-plan", "ottawa-city"] {
        let got = gw.recipient(recipient).wait_for(1, Duration::from_secs(10)).await;
        assert_eq!(got[0].header("passerelle-record-id"), Some(id.as_str()));
    }
    // Idempotency holds in the PostgreSQL transaction too.
    let body = record("birth-registration-1.1.json");
    let post = || {
        gw.post_as("on-vital-stats", "/v1/records/birth-registration")
            .header("idempotency-key", "pg-1")
            .json(&body)
            .send()
    };
    let first = post().await;
    let again = post().await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(first.body, again.body);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let page = gw.metrics().await;
    assert_eq!(metric(&page, "passerelle_store_info", &[("engine", "postgres")]), 1.0);
    assert!(page.contains("passerelle_store_pool_connections{state=\"idle\"}"), "the pool is measured");
    assert!(
        metric(&page, "passerelle_store_commit_duration_seconds_count", &[("engine", "postgres")]) >= 2.0,
        "commit latency is measured"
    );
    let setup = gw.stop().await;
    let (code, out) = cli(&["audit", "verify", "--config", setup.main_config().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("checkpoint signatures verified"), "{out}");
    schema.drop_now().await;
}

/// The CA for the test server's TLS certificate: `PASSERELLE_TEST_POSTGRES_CA`, or the snakeoil
/// certificate Debian's PostgreSQL serves (self-signed, for `localhost`).
fn server_ca() -> String {
    std::env::var("PASSERELLE_TEST_POSTGRES_CA").unwrap_or_else(|_| "/etc/ssl/certs/ssl-cert-snakeoil.pem".to_owned())
}

/// `store.ca_file` puts every store connection on TLS (rustls, verified against that CA and the
/// URL's host name), and PostgreSQL itself reports those connections as encrypted.
#[tokio::test]
async fn the_store_connection_can_be_tls_verified_against_a_ca() {
    let schema = Schema::create().await;
    let (client, connection) = tokio_postgres::connect(&server(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let ssl: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    assert_eq!(ssl, "on", "the test server must have ssl = on (Debian's default, with the snakeoil certificate)");
    let app = format!("passerelle-tls-{}", &schema.0[3..]);
    // The certificate names `localhost`; `hostaddr` keeps the connection on 127.0.0.1.
    let url = format!(
        "host=localhost hostaddr=127.0.0.1 port=5432 user=postgres dbname=test application_name={app} \
         options='-c search_path={}'",
        schema.0
    );
    let gw = Setup::new().store(&format!("url = \"{url}\"\nca_file = \"{}\"", server_ca())).start().await;
    let ready = gw.admin.send(Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    gw.recipient("ottawa-city").wait_for(1, Duration::from_secs(10)).await;
    let rows = client
        .query(
            "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = $1",
            &[&app],
        )
        .await
        .unwrap();
    assert!(rows.len() >= 2, "the writer and the pool are connected ({} connections)", rows.len());
    assert!(rows.iter().all(|r| r.get::<_, bool>(0)), "every store connection is encrypted");
    gw.stop().await;
    schema.drop_now().await;
}

/// Two real gateway processes share one PostgreSQL store: records go to both, one is killed
/// with `kill -9` mid-run and restarted, and every record that got a 202 reaches every
/// recipient; recipients drop duplicates by Idempotency-Key; the one audit chain verifies with
/// both instances' keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_store_and_survive_a_kill() {
    use std::collections::{BTreeSet, HashMap};

    let schema = Schema::create().await;
    let recipients = mock_recipients().await;
    // Two instances: same partners, agreements, store and store key; each its own data directory
    // and audit key.
    let url = schema.instance();
    let a = Setup::new().store(&url).delivery("lease_secs = 2").delivery("attempt_timeout_ms = 1000");
    let mut b = Setup::new().store(&url).delivery("lease_secs = 2").delivery("attempt_timeout_ms = 1000");
    b.keys = a.keys.clone();
    for s in [&a, &b] {
        s.write_for(&recipients);
        let (code, out) = cli(&["audit", "key", "--config", s.main_config().to_str().unwrap()]);
        assert_eq!(code, 0, "{out}");
        std::fs::write(s.dir.path().join("instance.pub"), out).unwrap();
    }
    // Each trusts the other's key, so `audit verify` accepts the checkpoints of both.
    let trust = |s: &Setup, other: &Setup| {
        let main = std::fs::read_to_string(s.main_config()).unwrap();
        let main = main.replace(
            "[audit]\n",
            &format!("[audit]\ntrusted_keys = [\"{}\"]\n", other.dir.path().join("instance.pub").display()),
        );
        std::fs::write(s.main_config(), main).unwrap();
    };
    trust(&a, &b);
    trust(&b, &a);
    let key = a.keys["on-vital-stats"].clone();
    let body = record("birth-registration-1.1.json").to_string();
    let post = |client: TestClient, n: usize| {
        let (key, body) = (key.clone(), body.clone());
        async move {
            let r = client
                .post("/v1/records/birth-registration")
                .bearer(&key)
                .header("idempotency-key", &format!("two-{n}"))
                .json_bytes(body)
                .try_send()
                .await?;
            (r.status == StatusCode::ACCEPTED).then(|| r.json()["record_id"].as_str().unwrap().to_owned())
        }
    };
    let first = ChildGateway::spawn(&a.main_config(), &[]).await;
    let second = ChildGateway::spawn(&b.main_config(), &[]).await;
    let mut accepted: HashMap<usize, String> = HashMap::new();
    let mut missing = Vec::new();
    // A tiny round-robin over the two instances; instance A dies a third of the way through.
    let total = 600;
    let mut first = Some(first);
    for n in 0..total {
        if n == total / 3 {
            first.take().unwrap().kill9();
        }
        let client = if n % 2 == 0 {
            first.as_ref().map_or(second.client.clone(), |g| g.client.clone())
        } else {
            second.client.clone()
        };
        match post(client, n).await {
            Some(id) => {
                accepted.insert(n, id);
            }
            None => missing.push(n),
        }
    }
    // A comes back on its data directory; the cut requests are retried with their keys.
    let first = ChildGateway::spawn(&a.main_config(), &[]).await;
    for n in missing {
        let id = post(first.client.clone(), n).await.expect("accepted on retry");
        accepted.insert(n, id);
    }
    assert_eq!(accepted.len(), total);
    let expected: BTreeSet<String> = accepted.values().cloned().collect();
    assert_eq!(expected.len(), total, "one record per idempotency key");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for (id, mock) in &recipients {
        loop {
            let got: BTreeSet<String> =
                mock.received().iter().filter_map(|r| r.header("passerelle-record-id").map(str::to_owned)).collect();
            let missing = expected.difference(&got).count();
            if missing == 0 {
                assert!(got.is_subset(&expected), "{id} received a record that was never accepted");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{id} is missing {missing} accepted records");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let duplicates: usize = recipients.values().map(|m| m.duplicates()).sum();
    eprintln!("two instances: {total} accepted, {duplicates} duplicate deliveries dropped by recipients");
    first.terminate();
    second.terminate();
    for s in [&a, &b] {
        let (code, out) = cli(&["audit", "verify", "--config", s.main_config().to_str().unwrap()]);
        assert_eq!(code, 0, "{out}");
    }
    schema.drop_now().await;
}

/// A store that started on SQLite moves to PostgreSQL with its evidence.
#[tokio::test]
async fn migrate_store_copies_a_sqlite_store_and_its_chain() {
    let gw = Setup::new().start().await;
    gw.recipient("ottawa-city").respond(400);
    for _ in 0..5 {
        gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    }
    gw.recipient("ottawa-city").wait_for(5, Duration::from_secs(10)).await;
    gw.recipient("esdc-sin-registry").wait_for(5, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The access record of the birth's registration number: every delivery, with the terms it
    // was accepted under; the same after the move.
    let access = async |gw: &TestGateway| {
        let path = "/admin/v1/access?subject=QC-2026-018355";
        let r = gw.admin.send(Method::GET, path, &[("authorization", "Bearer test-admin-token")], "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()["disclosures"].clone()
    };
    let disclosed = access(&gw).await;
    assert_eq!(disclosed.as_array().unwrap().len(), 20, "five records, four deliveries each");
    assert!(disclosed.as_array().unwrap().iter().all(|d| d["agreement"]["purpose"].is_string()), "{disclosed}");
    let setup = gw.stop().await;
    let schema = Schema::create().await;
    let main = setup.main_config();
    // A store a program of another schema version wrote is refused, saying what to do.
    let store = rusqlite::Connection::open(setup.data_dir().join("passerelle.sqlite")).unwrap();
    let newest =
        "UPDATE schema_migrations SET version = -version WHERE version = (SELECT MAX(version) FROM schema_migrations)";
    store.execute(newest, []).unwrap();
    let (code, out) = cli_env(&["migrate-store", "--config", main.to_str().unwrap(), "--to", &schema.url()], &[]).await;
    assert_ne!(code, 0);
    assert!(out.contains("start the gateway of this version on it once"), "{out}");
    store.execute("UPDATE schema_migrations SET version = -version WHERE version < 0", []).unwrap();
    drop(store);
    let (code, out) = cli(&["migrate-store", "--config", main.to_str().unwrap(), "--to", &schema.url()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Migrated; the chain verifies on PostgreSQL"), "{out}");
    // Migrating again into a store that is no longer empty is refused.
    let (code, _) = cli(&["migrate-store", "--config", main.to_str().unwrap(), "--to", &schema.url()]);
    assert_ne!(code, 0);
    // The gateway now runs on PostgreSQL with everything it had (the same data directory, so
    // the same key-encryption key for the sealed bodies).
    let gw = setup.store(&format!("url = \"{}\"", schema.url())).start().await;
    let ready = gw.admin.send(Method::GET, "/readyz", &[], "").await;
    assert_eq!(ready.text(), "ready (postgres store)\n");
    assert_eq!(access(&gw).await, disclosed, "the access record reads the same on PostgreSQL");
    let list = gw.client.get("/v1/records?limit=10", gw.key("on-vital-stats")).await.json();
    assert_eq!(list["records"].as_array().unwrap().len(), 5);
    let dead = gw
        .admin
        .send(
            Method::GET,
            "/admin/v1/deliveries?status=dead&recipient=ottawa-city",
            &[("authorization", "Bearer test-admin-token")],
            "",
        )
        .await
        .json();
    assert_eq!(dead["deliveries"].as_array().unwrap().len(), 5, "dead letters came along, replayable");
    // Each delivery's attempt timeline came along: an operator investigating a record sees it.
    let id = dead["deliveries"][0]["record_id"].as_str().unwrap().to_owned();
    let view = gw
        .admin
        .send(Method::GET, &format!("/admin/v1/records/{id}"), &[("authorization", "Bearer test-admin-token")], "")
        .await
        .json();
    let city = view["deliveries"].as_array().unwrap().iter().find(|d| d["recipient"] == "ottawa-city").unwrap();
    let timeline = city["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 1, "{city}");
    assert_eq!(timeline[0]["outcome"], "dead", "{city}");
    // New records extend the migrated chain.
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let setup = gw.stop().await;
    let (code, out) = cli(&["audit", "verify", "--config", setup.main_config().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    schema.drop_now().await;
}

/// `ordered = true` holds across instances: with two gateways on one store, a failing head
/// holds every later record for that recipient, whichever instance accepted them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_order_holds_across_two_instances() {
    let schema = Schema::create().await;
    let recipients = mock_recipients().await;
    let ordered = std::fs::read_to_string(repo().join("config/agreements/birth-ottawa.toml"))
        .unwrap()
        .replace("partner = \"ottawa-city\"", "partner = \"ottawa-city\"\nordered = true");
    let url = schema.instance();
    let a = Setup::new().store(&url).agreement("birth-ottawa", &ordered);
    let mut b = Setup::new().store(&url).agreement("birth-ottawa", &ordered);
    b.keys = a.keys.clone();
    a.write_for(&recipients);
    b.write_for(&recipients);
    let city = &recipients["ottawa-city"];
    city.fail_times(3, 503);
    let first = ChildGateway::spawn(&a.main_config(), &[]).await;
    let second = ChildGateway::spawn(&b.main_config(), &[]).await;
    let body = record("birth-registration-1.1.json");
    let mut ids = Vec::new();
    for n in 0..6 {
        let gateway = if n % 2 == 0 { &first } else { &second };
        let r = gateway
            .client
            .post("/v1/records/birth-registration")
            .bearer(&a.keys["on-vital-stats"])
            .json(&body)
            .send()
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        ids.push(r.json()["record_id"].as_str().unwrap().to_owned());
    }
    let got = city.wait_for(9, Duration::from_secs(30)).await;
    let order: Vec<&str> = got.iter().map(|r| r.header("passerelle-record-id").unwrap()).collect();
    assert_eq!(&order[..4], &[ids[0].as_str(); 4], "the head is retried until it succeeds, and nothing passes it");
    assert_eq!(&order[4..], &ids[1..].iter().map(String::as_str).collect::<Vec<_>>()[..]);
    first.terminate();
    second.terminate();
    schema.drop_now().await;
}

/// As on SQLite: a stored status the code does not know, or a hash of the wrong length, is an
/// error that says so, never `queued` or a zero-filled hash.
#[tokio::test]
async fn a_damaged_row_is_an_error_on_postgresql_too() {
    let schema = Schema::create().await;
    let gw = Setup::new().store(&format!("url = \"{}\"", schema.url())).start().await;
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let (client, connection) = tokio_postgres::connect(&server(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let admin = [("authorization", "Bearer test-admin-token")];
    // Once every delivery is settled, no worker writes its row again.
    let delivered = format!("SELECT COUNT(*) FROM {}.deliveries WHERE status = 'delivered'", schema.0);
    for _ in 0..500 {
        if client.query_one(&delivered, &[]).await.unwrap().get::<_, i64>(0) == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.batch_execute(&format!("UPDATE {}.deliveries SET status = 'lost'", schema.0)).await.unwrap();
    gw.admin.send(Method::GET, "/admin/v1/deliveries", &admin, "").await.problem(503, "store-unavailable");
    client
        .batch_execute(&format!("UPDATE {}.audit_log SET hash = '\\x00'::bytea WHERE seq = 1", schema.0))
        .await
        .unwrap();
    gw.admin.send(Method::GET, "/admin/v1/audit", &admin, "").await.problem(503, "store-unavailable");
    gw.stop().await;
    schema.drop_now().await;
}

/// Pull mailboxes across instances: a recipient waiting on instance A is given a record committed
/// on instance B within the poll interval, and settles it through B (a lease is the store's, not
/// one instance's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_waiting_on_one_instance_is_given_a_commit_on_another() {
    let schema = Schema::create().await;
    let url = schema.instance();
    let a = Setup::new().store(&url).pull("ottawa-city").delivery("poll_interval_ms = 500");
    let mut b = Setup::new().store(&url).pull("ottawa-city").delivery("poll_interval_ms = 500");
    b.keys = a.keys.clone();
    let first = a.start_without("ottawa-city").await;
    let second = b.start_without("ottawa-city").await;
    let city = first.key("ottawa-city").to_owned();
    let client = first.client.clone();
    let key = city.clone();
    let started = std::time::Instant::now();
    let waiting = tokio::spawn(async move { client.get("/v1/inbox?wait=20", &key).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = second.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let record_id = r.json()["record_id"].as_str().unwrap().to_owned();
    let page = waiting.await.unwrap().json();
    let elapsed = started.elapsed();
    assert_eq!(page["deliveries"][0]["record_id"], record_id.as_str(), "{page}");
    assert!(
        elapsed < Duration::from_secs(10),
        "given within the poll interval, not at the end of the wait: {elapsed:?}"
    );
    let ack = serde_json::json!({"lease": page["lease"]["id"], "deliveries": [page["deliveries"][0]["delivery_id"]]});
    let r = second.client.post("/v1/inbox/ack").bearer(&city).json(&ack).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let status = first.client.get(&format!("/v1/records/{record_id}"), first.key("on-vital-stats")).await.json();
    let delivered = status["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["recipient"] == "ottawa-city" && d["status"] == "delivered");
    assert!(delivered, "{status}");
    first.stop().await;
    second.stop().await;
    schema.drop_now().await;
}
