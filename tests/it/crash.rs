//! No accepted record is ever lost: the real gateway process is killed with `kill -9` mid-run,
//! restarted on the same data directory, and every record that got a 202 reaches every
//! recipient; clients retry with their idempotency keys; the audit chain still verifies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::support::*;

const CLIENTS: usize = 8;
const PER_CLIENT: usize = 300;

/// What the clients learned: for each idempotency key, the record id of a 202, if any.
type Accepted = Arc<Mutex<BTreeMap<String, String>>>;

async fn send(client: &TestClient, key: &str, api_key: &str, body: &str) -> Option<(String, bool)> {
    // A request cut by the crash fails; the client will retry it on the restarted gateway.
    let request = client
        .post("/v1/records/birth-registration")
        .bearer(api_key)
        .header("idempotency-key", key)
        .json_bytes(body.to_owned())
        .try_send();
    let r = tokio::time::timeout(Duration::from_secs(10), request).await.ok()??;
    (r.status.as_u16() == 202)
        .then(|| (r.json()["record_id"].as_str().unwrap().to_owned(), r.header("idempotent-replayed").is_some()))
}

/// Sends every client's records in turn, stopping a client at the first failure.
async fn drive(client: TestClient, api_key: String, body: String, accepted: Accepted, progress: Arc<AtomicUsize>) {
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (client, api_key, body, accepted, progress) =
            (client.clone(), api_key.clone(), body.clone(), accepted.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..PER_CLIENT {
                let key = format!("client-{c}-{n}");
                if accepted.lock().await.contains_key(&key) {
                    continue;
                }
                match send(&client, &key, &api_key, &body).await {
                    Some((id, _)) => {
                        accepted.lock().await.insert(key, id);
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                    None => return,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Records sent by 8 clients through a gateway process killed with `kill -9` midway, then
/// restarted on the same data directory (what the NATS tests put their recipient through too).
pub(crate) struct CrashRun {
    config: PathBuf,
    api_key: String,
    body: String,
    accepted: Accepted,
    progress: Arc<AtomicUsize>,
}

impl CrashRun {
    /// Short leases, so that the deliveries the killed process had claimed are soon taken again.
    pub(crate) fn setup() -> Setup {
        Setup::new().delivery("lease_secs = 2").delivery("attempt_timeout_ms = 1000").delivery("poll_interval_ms = 100")
    }

    /// Starts the gateway on `setup`'s (written) configuration and has the clients send until
    /// `kill_after` records are accepted; then kills it with `kill -9`.
    pub(crate) async fn kill_after(setup: &Setup, kill_after: usize) -> CrashRun {
        let run = CrashRun {
            config: setup.main_config(),
            api_key: setup.keys["on-vital-stats"].clone(),
            body: record("birth-registration-1.1.json").to_string(),
            accepted: Accepted::default(),
            progress: Arc::new(AtomicUsize::new(0)),
        };
        let gateway = ChildGateway::spawn(&run.config, &[]).await;
        let sending = tokio::spawn(drive(
            gateway.client.clone(),
            run.api_key.clone(),
            run.body.clone(),
            run.accepted.clone(),
            run.progress.clone(),
        ));
        let deadline = Instant::now() + Duration::from_secs(60);
        while run.progress.load(Ordering::Relaxed) < kill_after {
            assert!(Instant::now() < deadline, "only {} records accepted", run.progress.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        gateway.kill9();
        sending.await.unwrap();
        run
    }

    /// How many records had a 202 before the crash.
    pub(crate) async fn accepted_before_restart(&self) -> usize {
        self.accepted.lock().await.len()
    }

    /// Restarts the gateway on the same data directory; every client resumes, first retrying
    /// the request the crash cut. Returns each accepted record's id by idempotency key (all of
    /// them, one record per key), the running gateway, and how many retried keys replayed their
    /// receipt.
    pub(crate) async fn restart(self) -> (BTreeMap<String, String>, ChildGateway, usize) {
        let CrashRun { config, api_key, body, accepted, progress } = self;
        let gateway = ChildGateway::spawn(&config, &[]).await;
        let mut replayed = 0;
        {
            // Keys sent before the crash without an answer: a retry tells whether they were committed.
            let done = accepted.lock().await.clone();
            for c in 0..CLIENTS {
                let next = (0..PER_CLIENT).find(|n| !done.contains_key(&format!("client-{c}-{n}")));
                if let Some(n) = next {
                    let key = format!("client-{c}-{n}");
                    if let Some((id, was_replayed)) = send(&gateway.client, &key, &api_key, &body).await {
                        replayed += usize::from(was_replayed);
                        accepted.lock().await.insert(key, id);
                    }
                }
            }
        }
        drive(gateway.client.clone(), api_key, body, accepted.clone(), progress).await;
        let accepted = accepted.lock().await.clone();
        assert_eq!(accepted.len(), CLIENTS * PER_CLIENT, "every record was eventually accepted");
        let ids: BTreeSet<&str> = accepted.values().map(String::as_str).collect();
        assert_eq!(ids.len(), accepted.len(), "one record per idempotency key");
        (accepted, gateway, replayed)
    }
}

async fn crash_run(kill_after: usize) {
    let recipients = mock_recipients().await;
    let setup = CrashRun::setup();
    setup.write_for(&recipients);
    let run = CrashRun::kill_after(&setup, kill_after).await;
    let before_restart = run.accepted_before_restart().await;
    let (accepted, gateway, replayed) = run.restart().await;
    let expected: BTreeSet<&str> = accepted.values().map(String::as_str).collect();

    // Every accepted record reaches every recipient.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (id, mock) in &recipients {
        loop {
            let got: BTreeSet<String> =
                mock.received().iter().filter_map(|r| r.header("passerelle-record-id").map(str::to_owned)).collect();
            let missing = expected.iter().filter(|e| !got.contains(**e)).count();
            if missing == 0 {
                // And nothing a recipient received was unknown to the senders' receipts or the store.
                let extra: Vec<&String> = got.iter().filter(|g| !expected.contains(g.as_str())).collect();
                assert!(extra.is_empty(), "{id} received records never accepted: {extra:?}");
                break;
            }
            assert!(Instant::now() < deadline, "{id} is missing {missing} accepted records (kill after {kill_after})");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let duplicates: usize = recipients.values().map(|m| m.duplicates()).sum();
    eprintln!(
        "kill after {kill_after}: {before_restart} accepted before the crash, {replayed} retried keys replayed their receipt, {duplicates} duplicate deliveries dropped by recipients"
    );
    gateway.terminate();
    let (code, out) = cli(&["audit", "verify", "--config", setup.main_config().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_early_nothing_accepted_is_lost() {
    crash_run(150).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_midway_nothing_accepted_is_lost() {
    crash_run(1200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_late_nothing_accepted_is_lost() {
    crash_run(2200).await;
}
