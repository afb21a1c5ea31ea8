//! NATS JetStream recipients against a real NATS server (`.ci/setup` runs one with JetStream on
//! 127.0.0.1:4222): records arrive in the stream with their subject, headers and exact bytes; a
//! gateway killed with `kill -9` mid-publish leaves each accepted record in the stream exactly
//! once; a server that goes away and comes back gets every delivery; a subject no stream takes
//! is named in the delivery's last error and the log; credentials come from the environment.
//! Each test works in a stream of its own and deletes it.

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::StreamMessage, stream::StorageType};
use http::Method;
use serde_json::Value;

use crate::crash::CrashRun;
use crate::delivery::{delivery, post_birth, wait_status};
use crate::reload::reload;
use crate::support::*;

/// The machine's NATS server with JetStream.
pub(crate) const SHARED_SERVER: &str = "nats://127.0.0.1:4222";

/// The NATS recipient these tests add: the City of Ottawa's event stream.
pub(crate) const RECIPIENT: &str = "ottawa-events";

/// A JetStream stream of one test's own, on subjects no other test uses; deleted when dropped.
pub(crate) struct TestStream {
    server: String,
    name: String,
    /// Every subject of the stream starts with it.
    prefix: String,
}

impl TestStream {
    /// A name and subjects for a stream, without creating it.
    fn named(server: &str) -> TestStream {
        let id = uuid::Uuid::now_v7().simple().to_string();
        TestStream {
            server: server.to_owned(),
            name: format!("PASSERELLE_TEST_{id}"),
            prefix: format!("passerelle-test-{id}"),
        }
    }

    /// Creates the stream on `server`, taking every subject under its prefix.
    pub(crate) async fn create(server: &str, storage: StorageType) -> TestStream {
        let stream = TestStream::named(server);
        stream.create_now(storage).await;
        stream
    }

    async fn create_now(&self, storage: StorageType) {
        let config = jetstream::stream::Config {
            name: self.name.clone(),
            subjects: vec![format!("{}.>", self.prefix)],
            storage,
            ..Default::default()
        };
        jetstream_of(&self.server).await.create_stream(config).await.unwrap();
    }

    /// The recipient's subject template: one subject per record type, under the prefix.
    pub(crate) fn subject_template(&self) -> String {
        format!("{}.records.{{type}}", self.prefix)
    }

    async fn count(&self) -> u64 {
        let mut stream = jetstream_of(&self.server).await.get_stream(&self.name).await.unwrap();
        stream.info().await.unwrap().state.messages
    }

    /// Every message in the stream, in order.
    pub(crate) async fn messages(&self) -> Vec<StreamMessage> {
        let mut stream = jetstream_of(&self.server).await.get_stream(&self.name).await.unwrap();
        let state = stream.info().await.unwrap().state.clone();
        if state.messages == 0 {
            return Vec::new();
        }
        let mut messages = Vec::new();
        for sequence in state.first_sequence..=state.last_sequence {
            messages.push(stream.get_raw_message(sequence).await.unwrap());
        }
        messages
    }

    /// Waits until the stream holds at least `n` messages.
    pub(crate) async fn wait_for(&self, n: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let count = self.count().await;
            if count >= n {
                return;
            }
            assert!(Instant::now() < deadline, "the stream holds {count} messages, not {n}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        // Deleted from a runtime of its own: a test's runtime may be gone, or failing.
        let (server, name) = (self.server.clone(), self.name.clone());
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let (options, url) = options_for(&server);
                let connect = options.connection_timeout(Duration::from_secs(2)).connect(url);
                if let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(3), connect).await {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(3), jetstream::new(client).delete_stream(&name)).await;
                }
            })
        });
        let _ = deleted.join();
    }
}

/// How the test itself connects to `server`: a user and password in the URL are taken from it
/// (the gateway never takes them there).
fn options_for(server: &str) -> (async_nats::ConnectOptions, String) {
    let credentials = server.split_once("://").and_then(|(_, rest)| rest.split_once('@'));
    match credentials.and_then(|(user_info, host)| Some((user_info.split_once(':')?, host))) {
        Some(((user, password), host)) => (
            async_nats::ConnectOptions::with_user_and_password(user.to_owned(), password.to_owned()),
            format!("nats://{host}"),
        ),
        None => (async_nats::ConnectOptions::new(), server.to_owned()),
    }
}

async fn jetstream_of(server: &str) -> jetstream::Context {
    let (options, url) = options_for(server);
    jetstream::new(options.connect(url).await.unwrap())
}

/// A header of a stored message.
pub(crate) fn header<'a>(message: &'a StreamMessage, name: &str) -> Option<&'a str> {
    message.headers.get(name).map(|v| v.as_str())
}

/// `setup` with a NATS recipient, `ottawa-events`, publishing to `server` on `subject`: a
/// second recipient of the City of Ottawa's agreement, with the same fields as the city's push
/// endpoint, so that both get the same projection.
pub(crate) fn with_nats_recipient(setup: Setup, server: &str, subject: &str, extra: &str) -> Setup {
    let partner = format!(
        "[[partner]]\nid = \"{RECIPIENT}\"\nname_en = \"City of Ottawa, event stream\"\nname_fr = \"Ville d'Ottawa, flux d'événements\"\njurisdiction = \"municipal\"\nregion = \"ON-Ottawa\"\n[partner.delivery]\nmode = \"nats\"\nurl = \"{server}\"\nsubject = \"{subject}\"\n{extra}\n\n"
    );
    let city = "[[partner]]\nid = \"ottawa-city\"";
    let agreement = std::fs::read_to_string(repo().join("config/agreements/birth-ottawa.toml")).unwrap();
    let city_recipient = &agreement[agreement.find("[[recipient]]").unwrap()..];
    let agreement = format!("{agreement}\n{}", city_recipient.replace("ottawa-city", RECIPIENT));
    setup.edit_partners(city, &format!("{partner}{city}")).agreement("birth-ottawa", &agreement)
}

#[tokio::test]
async fn records_arrive_in_the_stream_with_their_subject_headers_and_bytes() {
    let stream = TestStream::create(SHARED_SERVER, StorageType::Memory).await;
    let gw = with_nats_recipient(Setup::new(), SHARED_SERVER, &stream.subject_template(), "").start().await;
    let id = post_birth(&gw).await;

    let pushed = gw.recipient("ottawa-city").wait_for(1, Duration::from_secs(10)).await;
    stream.wait_for(1, Duration::from_secs(10)).await;
    let messages = stream.messages().await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message.subject.as_str(), format!("{}.records.birth-registration", stream.prefix));
    // The stored projection, byte for byte: what the push recipient of the same fields got.
    assert_eq!(message.payload, pushed[0].body);
    let key = format!("{id}.{RECIPIENT}");
    assert_eq!(header(message, "Nats-Msg-Id"), Some(key.as_str()), "the duplicate window's key");
    for (name, value) in [
        ("Idempotency-Key", key.as_str()),
        ("Passerelle-Record-Id", &id),
        ("Passerelle-Sender", "on-vital-stats"),
        ("Passerelle-Agreement", "birth-ottawa"),
        ("Passerelle-Schema", "birth-registration/1.1"),
        ("Content-Type", "application/json"),
    ] {
        assert_eq!(header(message, name), Some(value), "{name}");
    }
    // The same trace as the push delivery, in a hop of its own.
    let trace_id = |traceparent: &str| traceparent.split('-').nth(1).unwrap().to_owned();
    let nats_trace = header(message, "traceparent").expect("a traceparent");
    assert_eq!(trace_id(nats_trace), trace_id(pushed[0].header("traceparent").unwrap()));
    assert_ne!(nats_trace, pushed[0].header("traceparent").unwrap());

    let view = wait_status(&gw, &id, RECIPIENT, "delivered").await;
    assert_eq!(delivery(&view, RECIPIENT)["attempts"], 1, "{view}");
    assert!(delivery(&view, RECIPIENT).get("last_error").is_none(), "{view}");
    let metrics = gw.metrics().await;
    let delivered = [("recipient", RECIPIENT), ("outcome", "delivered")];
    assert_eq!(metric(&metrics, "passerelle_deliveries_total", &delivered), 1.0);
    assert_eq!(gw.audited("delivery.delivered", |e| e.recipient.as_deref() == Some(RECIPIENT)).await, 1);
    gw.stop().await;
}

/// A reload that moves the recipient to another subject publishes the next records there.
#[tokio::test]
async fn a_reload_moves_a_nats_recipient_to_its_new_subject() {
    let before = TestStream::create(SHARED_SERVER, StorageType::Memory).await;
    let after = TestStream::create(SHARED_SERVER, StorageType::Memory).await;
    let gw = with_nats_recipient(Setup::new(), SHARED_SERVER, &before.subject_template(), "").start().await;
    let first = post_birth(&gw).await;
    wait_status(&gw, &first, RECIPIENT, "delivered").await;

    let partners = gw.setup.config_dir().join("partners.toml");
    edit_file(&partners, &before.subject_template(), &after.subject_template());
    reload(&gw).await;
    let second = post_birth(&gw).await;
    wait_status(&gw, &second, RECIPIENT, "delivered").await;
    let stored = |messages: Vec<StreamMessage>| -> Vec<String> {
        messages.iter().map(|m| header(m, "Passerelle-Record-Id").unwrap().to_owned()).collect()
    };
    assert_eq!(stored(before.messages().await), [first]);
    assert_eq!(stored(after.messages().await), [second]);
    gw.stop().await;
}

/// The deliveries to `recipient` still to make (queued or retrying), by the admin API.
async fn unsettled(admin: &TestClient, recipient: &str) -> usize {
    let mut count = 0;
    for status in ["queued", "retrying"] {
        let r = admin
            .send(
                Method::GET,
                &format!("/admin/v1/deliveries?status={status}&recipient={recipient}&limit=1000"),
                &[("authorization", "Bearer test-admin-token")],
                "",
            )
            .await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        count += r.json()["deliveries"].as_array().unwrap().len();
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_publish_leaves_each_accepted_record_in_the_stream_once() {
    let stream = TestStream::create(SHARED_SERVER, StorageType::File).await;
    let recipients = mock_recipients().await;
    let setup = with_nats_recipient(CrashRun::setup(), SHARED_SERVER, &stream.subject_template(), "");
    setup.write_for(&recipients);
    let run = CrashRun::kill_after(&setup, 1200).await;
    let (accepted_at_crash, stored_at_crash) = (run.accepted_before_restart().await, stream.count().await);
    assert!(stored_at_crash > 0, "publishing had begun before the crash");
    let recorded_at_crash: i64 = rusqlite::Connection::open(setup.data_dir().join("passerelle.sqlite"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM deliveries WHERE recipient = ?1 AND status = 'delivered'", [RECIPIENT], |r| {
            r.get(0)
        })
        .unwrap();
    let (accepted, gateway, _) = run.restart().await;

    // Every delivery settles, and then the stream holds each accepted record once.
    let deadline = Instant::now() + Duration::from_secs(120);
    while stream.count().await < accepted.len() as u64 || unsettled(&gateway.admin, RECIPIENT).await > 0 {
        assert!(Instant::now() < deadline, "the deliveries to the stream did not settle");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let messages = stream.messages().await;
    let ids: BTreeSet<String> = messages.iter().map(|m| header(m, "Nats-Msg-Id").unwrap().to_owned()).collect();
    let expected: BTreeSet<String> = accepted.values().map(|id| format!("{id}.{RECIPIENT}")).collect();
    let lost = expected.difference(&ids).count();
    assert_eq!(lost, 0, "accepted records missing from the stream");
    assert_eq!(ids, expected, "the stream holds only accepted records");
    assert_eq!(messages.len(), accepted.len(), "each record once: the duplicate window dropped every repeat");
    // Those stored but not yet recorded as delivered were published again after the restart.
    eprintln!(
        "killed with {accepted_at_crash} accepted, {stored_at_crash} in the stream, {recorded_at_crash} recorded delivered; {} accepted in all, {} messages",
        accepted.len(),
        messages.len()
    );
    gateway.terminate();
}

/// A nats-server of this test's own, on a free loopback port with its own store directory, so
/// it can be killed and restarted without touching the machine's.
struct OwnServer {
    port: u16,
    store: tempfile::TempDir,
    options: Vec<String>,
    process: Option<Child>,
}

impl OwnServer {
    /// Starts a server with JetStream and the `options` of `nats-server`.
    fn start(options: &[&str]) -> OwnServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let options = options.iter().map(|o| o.to_string()).collect();
        let mut server = OwnServer { port, store: tempfile::tempdir().unwrap(), options, process: None };
        server.restart();
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The URL with a user and password in it: how the test itself connects to a server that
    /// requires them.
    fn url_as(&self, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and store, and waits until it serves JetStream.
    fn restart(&mut self) {
        let process = Command::new("/usr/sbin/nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store.path())
            .args(&self.options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("/usr/sbin/nats-server runs");
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !serves_jetstream(self.port) {
            assert!(Instant::now() < deadline, "nats-server did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`: the connection drops without a goodbye.
    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().unwrap();
            process.wait().unwrap();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a NATS server on `port` greets with an `INFO` that offers JetStream.
fn serves_jetstream(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut connection) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = connection.set_read_timeout(Some(Duration::from_secs(1)));
    let mut greeting = [0u8; 4096];
    let read = connection.read(&mut greeting).unwrap_or(0);
    String::from_utf8_lossy(&greeting[..read]).contains("\"jetstream\":true")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_wait_out_a_nats_server_that_goes_away_and_arrive_when_it_is_back() {
    let mut server = OwnServer::start(&[]);
    let stream = TestStream::create(&server.url(), StorageType::File).await;
    // Short attempts and a short breaker, so the retries come quickly once the server is back.
    let setup = Setup::new().delivery("attempt_timeout_ms = 500").delivery("breaker_open_ms = 500");
    let gw = with_nats_recipient(setup, &server.url(), &stream.subject_template(), "").start().await;
    let first = post_birth(&gw).await;
    wait_status(&gw, &first, RECIPIENT, "delivered").await;

    server.kill();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(post_birth(&gw).await);
    }
    for id in &ids {
        let view = wait_status(&gw, id, RECIPIENT, "retrying").await;
        let error = delivery(&view, RECIPIENT)["last_error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains(&server.url()), "the error names the server: {view}");
    }
    // The push recipients are not held up by the NATS one.
    gw.recipient("ottawa-city").wait_for(6, Duration::from_secs(10)).await;

    server.restart();
    for id in &ids {
        wait_status(&gw, id, RECIPIENT, "delivered").await;
    }
    stream.wait_for(6, Duration::from_secs(10)).await;
    let messages = stream.messages().await;
    let expected: BTreeSet<String> = ids.iter().chain([&first]).map(|id| format!("{id}.{RECIPIENT}")).collect();
    let stored: BTreeSet<String> = messages.iter().map(|m| header(m, "Nats-Msg-Id").unwrap().to_owned()).collect();
    assert_eq!(stored, expected);
    assert_eq!(messages.len(), 6, "each record once");
    gw.stop().await;
    // The stream is deleted before its server stops.
    drop(stream);
    drop(server);
}

/// Posts a birth registration as the Ontario office (`key`) to a gateway process; returns the
/// record's id.
async fn post_birth_to(gateway: &ChildGateway, key: &str) -> String {
    let body = record("birth-registration-1.1.json");
    let r = gateway.client.post("/v1/records/birth-registration").bearer(key).json(&body).send().await;
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    r.json()["record_id"].as_str().unwrap().to_owned()
}

/// Waits until a gateway process has logged a line with `message` and `field` = `value`.
async fn wait_logged(gateway: &ChildGateway, message: &str, field: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = gateway.logs.lock().unwrap().clone();
        let mut lines = logs.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok());
        if lines.any(|l| l["message"] == message && l[field] == value) {
            return;
        }
        assert!(Instant::now() < deadline, "no {message:?} with {field} = {value:?} in {logs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The record's delivery to the NATS recipient, through a gateway process, once `done` says so.
async fn wait_child(gateway: &ChildGateway, key: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let view = gateway.client.get(&format!("/v1/records/{id}"), key).await.json();
        if done(delivery(&view, RECIPIENT)) {
            return delivery(&view, RECIPIENT).clone();
        }
        assert!(Instant::now() < deadline, "never reached: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The gateway presents a user and password it reads from the environment, never from its
/// files; a variable not set is named in the delivery's error, and the password in no log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_and_password_are_read_from_the_environment() {
    let (user, password) = ("passerelle", "s3cret-for-the-test");
    let server = OwnServer::start(&["--user", user, "--pass", password]);
    let stream = TestStream::create(&server.url_as(user, password), StorageType::Memory).await;
    let env = "user_env = \"TEST_NATS_USER\"\npassword_env = \"TEST_NATS_PASSWORD\"";
    let setup = with_nats_recipient(Setup::new(), &server.url(), &stream.subject_template(), env);
    setup.write(&Default::default());
    let key = setup.keys["on-vital-stats"].clone();

    let gateway = ChildGateway::spawn(&setup.main_config(), &[]).await;
    let id = post_birth_to(&gateway, &key).await;
    let failed = wait_child(&gateway, &key, &id, |d| d["status"] == "retrying").await;
    assert_eq!(
        failed["last_error"], "the environment variable TEST_NATS_USER (NATS user or password) is not set",
        "{failed}"
    );
    gateway.terminate();

    let with_env = [("TEST_NATS_USER", user), ("TEST_NATS_PASSWORD", password)];
    let gateway = ChildGateway::spawn(&setup.main_config(), &with_env).await;
    wait_child(&gateway, &key, &id, |d| d["status"] == "delivered").await;
    assert_eq!(stream.count().await, 1);
    wait_logged(&gateway, "Connected to the NATS server.", "recipient", RECIPIENT).await;
    let logs = gateway.logs.lock().unwrap().clone();
    assert!(!logs.iter().any(|l| l.contains(password)), "a password in the logs: {logs:?}");
    gateway.terminate();
}

/// A subject no stream takes is named at start, in each attempt's error and log line, and the
/// delivery is retried until an operator creates the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_no_stream_takes_is_named_and_retried_until_there_is_one() {
    let stream = TestStream::named(SHARED_SERVER);
    let setup = with_nats_recipient(
        Setup::new().delivery("breaker_open_ms = 500"),
        SHARED_SERVER,
        &stream.subject_template(),
        "",
    );
    setup.write(&Default::default());
    let key = setup.keys["on-vital-stats"].clone();
    let gateway = ChildGateway::spawn(&setup.main_config(), &[]).await;
    let id = post_birth_to(&gateway, &key).await;

    let subject = format!("{}.records.birth-registration", stream.prefix);
    let error = format!("no JetStream stream takes subject {subject}");
    let failed = wait_child(&gateway, &key, &id, |d| d["status"] == "retrying").await;
    assert_eq!(failed["last_error"], Value::from(error.clone()), "{failed}");
    wait_logged(&gateway, "Delivery attempted.", "error", &error).await;
    let warning = "No JetStream stream takes this subject; its deliveries will be retried until one does.";
    wait_logged(&gateway, warning, "subject", &subject).await;

    // Once an operator creates the stream, the next retry is stored.
    stream.create_now(StorageType::Memory).await;
    wait_child(&gateway, &key, &id, |d| d["status"] == "delivered").await;
    assert_eq!(stream.count().await, 1);
    gateway.terminate();
}
