//! Sealed records: no record value reaches the disk in plaintext (the database file, its WAL, a
//! backup), the purge destroys the data keys so what is left in free pages cannot be opened,
//! a plaintext store is sealed in place by `passerelle store encrypt`, and `passerelle store
//! rotate-key` re-wraps the data keys while records arrive, losing none.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use passerelle::seal::{Binding, KeyEncryptionKey};
use passerelle::store::PurgeRequest;
use serde_json::Value;

use crate::support::*;

/// A birth record whose child and parents carry `marker`, a value found nowhere else.
fn marked(marker: &str) -> Value {
    let mut r = record("birth-registration-1.1.json");
    r["child"]["surname"] = Value::from(marker);
    r["parents"][0]["address"]["street"] = Value::from(format!("{marker} rue Principale"));
    r
}

/// A value unique to one test run.
fn marker() -> String {
    format!("Zq{}", hex(&passerelle::random::bytes::<8>()))
}

/// Whether `needle` occurs in the file at `path` (a missing file holds nothing).
fn file_holds(path: &Path, needle: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
}

fn store_files(data: &Path) -> [PathBuf; 2] {
    [data.join("passerelle.sqlite"), data.join("passerelle.sqlite-wal")]
}

/// A ciphertext as the store holds it, and the row it is bound to.
struct Sealed {
    key_id: String,
    record_id: String,
    recipient: Option<String>,
    body: Vec<u8>,
}

fn sealed_bodies(db: &rusqlite::Connection) -> Vec<Sealed> {
    let mut all = Vec::new();
    let mut rows = db.prepare("SELECT key_id, record_id, NULL, body FROM records WHERE body IS NOT NULL").unwrap();
    let mut deliveries =
        db.prepare("SELECT key_id, record_id, recipient, body FROM deliveries WHERE body IS NOT NULL").unwrap();
    for statement in [&mut rows, &mut deliveries] {
        let found = statement
            .query_map([], |r| {
                Ok(Sealed { key_id: r.get(0)?, record_id: r.get(1)?, recipient: r.get(2)?, body: r.get(3)? })
            })
            .unwrap();
        all.extend(found.map(Result::unwrap));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_record_value_reaches_the_disk_and_a_purge_leaves_nothing_that_opens() {
    let gw = Setup::new().start().await;
    let data = gw.setup.data_dir();
    let marker = marker();
    for _ in 0..5 {
        assert_eq!(gw.post_record("on-vital-stats", "birth-registration", &marked(&marker)).await.status, 202);
    }
    // Each recipient received its projection, opened: the marker went through the gateway.
    let mut seen = false;
    for id in ["esdc-sin-registry", "cra-child-benefit", "on-health-plan", "ottawa-city"] {
        let received = gw.recipient(id).wait_for(5, Duration::from_secs(20)).await;
        seen |= received.iter().any(|r| r.body.windows(marker.len()).any(|w| w == marker.as_bytes()));
    }
    assert!(seen, "a recipient received the marker, so the records held it");
    let key_file = data.join("store.key");
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o077, 0, "the key is owner-only");

    // A backup, taken while the gateway runs, holds no plaintext either.
    let backup = gw.setup.dir.path().join("copy.sqlite");
    let (code, out) =
        cli_env(&["backup", backup.to_str().unwrap(), "--config", gw.setup.main_config().to_str().unwrap()], &[]).await;
    assert_eq!(code, 0, "{out}");
    for file in store_files(&data).iter().chain([&backup]) {
        assert!(!file_holds(file, marker.as_bytes()), "{} holds the marker in plaintext", file.display());
    }
    let setup = gw.stop().await;
    for file in store_files(&data) {
        assert!(!file_holds(&file, marker.as_bytes()), "{} holds the marker after shutdown", file.display());
    }

    // What the store holds before the purge: ciphertexts, each under its day's data key.
    let kek = KeyEncryptionKey::from_bytes(&std::fs::read(&key_file).unwrap()).unwrap();
    let before = sealed_bodies(&rusqlite::Connection::open(&store_files(&data)[0]).unwrap());
    assert!(before.len() >= 25, "5 records and 20 deliveries, all kept until their retention ends");
    let live_keys = |db: &rusqlite::Connection| -> Vec<(String, Vec<u8>)> {
        let mut s = db.prepare("SELECT id, wrapped FROM data_keys WHERE wrapped IS NOT NULL").unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    let keys_before = live_keys(&rusqlite::Connection::open(&store_files(&data)[0]).unwrap());
    for sealed in &before {
        let (_, wrapped) = keys_before.iter().find(|(id, _)| *id == sealed.key_id).expect("its key is stored");
        let key = kek.unwrap(&sealed.key_id, wrapped).unwrap();
        let binding = Binding { record_id: &sealed.record_id, recipient: sealed.recipient.as_deref() };
        assert!(key.open(&sealed.body, &binding).is_ok(), "each body opens under its own key for its own row");
        assert!(!sealed.body.windows(marker.len()).any(|w| w == marker.as_bytes()));
    }

    // The retention purge, run as if three days had passed: the bodies go, then their keys.
    let config = passerelle::config::load(&setup.main_config()).unwrap();
    let store = passerelle::gateway::open_store(&config, passerelle::telemetry::Metrics::new()).await.unwrap();
    let now = passerelle::clock::now_ms() + 3 * 86_400_000;
    let report = store
        .purge(PurgeRequest {
            now,
            delivered_retention_ms: 1,
            dead_retention_ms: 1,
            access_retention_ms: config.settings.retention.access.as_millis() as i64,
        })
        .await
        .unwrap();
    assert_eq!((report.record_bodies, report.delivery_bodies), (5, 20));
    let destroyed: BTreeSet<&str> = report.keys_destroyed.iter().map(String::as_str).collect();
    let expected: BTreeSet<&str> = keys_before.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(destroyed, expected, "every data key the bodies were under is destroyed");
    drop(store);

    // Whatever ciphertext survives in a free page opens under no key the store still holds, and
    // the destroyed keys' wrappings are gone from the file.
    let db = rusqlite::Connection::open(&store_files(&data)[0]).unwrap();
    let keys_after = live_keys(&db);
    assert!(keys_after.is_empty(), "no data key is left: {:?}", keys_after.iter().map(|k| &k.0).collect::<Vec<_>>());
    drop(db);
    for sealed in &before {
        for (id, wrapped) in &keys_after {
            let key = kek.unwrap(id, wrapped).unwrap();
            let binding = Binding { record_id: &sealed.record_id, recipient: sealed.recipient.as_deref() };
            assert!(key.open(&sealed.body, &binding).is_err());
        }
    }
    // Once the log is copied into the file (the store does it as it closes), no copy of a
    // destroyed key's wrapping is left in either.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let lingering =
        || keys_before.iter().any(|(_, wrapped)| store_files(&data).iter().any(|file| file_holds(file, wrapped)));
    while lingering() {
        assert!(std::time::Instant::now() < deadline, "the store still holds a destroyed key's wrapping");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The audit trail keeps every entry, the destructions included, and still verifies.
    let (code, out) = cli(&["audit", "verify", "--config", setup.main_config().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

/// Bodies a recipient that is down keeps waiting in the store.
async fn pending_records(gw: &TestGateway, marker: &str, n: usize) {
    for _ in 0..n {
        assert_eq!(gw.post_record("on-vital-stats", "birth-registration", &marked(marker)).await.status, 202);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_encrypt_seals_a_plaintext_store_in_place_and_deliveries_go_on() {
    // A store written with encryption off, its city unreachable: its bodies wait in plaintext.
    let gw = Setup::new().store("encryption = { enabled = false }").start_without("ottawa-city").await;
    let marker = marker();
    pending_records(&gw, &marker, 3).await;
    gw.recipient("esdc-sin-registry").wait_for(3, Duration::from_secs(20)).await;
    let setup = gw.stop().await;
    let db_file = setup.data_dir().join("passerelle.sqlite");
    let plain = |db: &rusqlite::Connection| -> i64 {
        db.query_row(
            "SELECT (SELECT COUNT(*) FROM records WHERE key_id IS NULL AND body IS NOT NULL)
                  + (SELECT COUNT(*) FROM deliveries WHERE key_id IS NULL AND body IS NOT NULL)",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(plain(&rusqlite::Connection::open(&db_file).unwrap()), 3 + 12);

    // Encryption turned on (the default): `store encrypt` seals every body in place.
    let config = setup.main_config();
    edit_file(&config, "encryption = { enabled = false }", "");
    let setup = setup.store("encryption = { enabled = true }");
    let (code, out) = cli_env(&["store", "encrypt", "--config", config.to_str().unwrap()], &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Sealed 15 bodies") && out.contains("0 still in plaintext"), "{out}");
    assert_eq!(plain(&rusqlite::Connection::open(&db_file).unwrap()), 0);
    // Run again, it finds nothing left (it resumes where it stopped), and with --vacuum the old
    // plaintext left in free pages goes too.
    let (code, out) = cli_env(&["store", "encrypt", "--vacuum", "--config", config.to_str().unwrap()], &[]).await;
    assert_eq!((code, out.contains("Sealed 0 bodies") && out.contains("Vacuumed")), (0, true), "{out}");
    for file in store_files(&setup.data_dir()) {
        assert!(!file_holds(&file, marker.as_bytes()), "{} holds the marker", file.display());
    }

    // The city comes up: what waited for it is opened and delivered, exactly as accepted.
    let gw = setup.start().await;
    let city = gw.recipient("ottawa-city").wait_for(3, Duration::from_secs(30)).await;
    assert_eq!(city.len(), 3);
    assert!(city.iter().all(|r| r.json()["parents"][0]["address"]["postal_code"] == "H2H 2B4"));
    assert_eq!(gw.audited("bodies.sealed", |e| e.count == 15).await, 1, "the sealing is audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_key_rewraps_every_data_key_while_records_arrive_and_loses_none() {
    // Key A: the first key, generated at the first start.
    let marker = marker();
    let gw = Setup::new().start().await;
    pending_records(&gw, &marker, 3).await;
    for id in ["esdc-sin-registry", "cra-child-benefit", "on-health-plan", "ottawa-city"] {
        gw.recipient(id).wait_for(3, Duration::from_secs(20)).await;
    }
    let mut setup = gw.stop().await;
    let data = setup.data_dir();
    let old_key = setup.dir.path().join("old-store.key");
    std::fs::rename(data.join("store.key"), &old_key).unwrap();
    let new_key = setup.dir.path().join("new-store.key");
    std::fs::write(&new_key, hex(&passerelle::random::bytes::<32>())).unwrap();
    let new_id = KeyEncryptionKey::from_bytes(&std::fs::read(&new_key).unwrap()).unwrap().id().to_owned();
    setup = setup.store(&format!(
        "encryption = {{ key_file = \"{}\", previous_key_files = [\"{}\"] }}",
        new_key.display(),
        old_key.display()
    ));

    // Key B configured, A still readable; records keep arriving while `rotate-key` runs.
    let gw = Arc::new(setup.start().await);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (gw, stop, marker) = (gw.clone(), stop.clone(), marker.clone());
        tokio::spawn(async move {
            let mut accepted = 3;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(gw.post_record("on-vital-stats", "birth-registration", &marked(&marker)).await.status, 202);
                accepted += 1;
            }
            accepted
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let config = gw.setup.main_config();
    let (code, out) = cli_env(&["store", "rotate-key", "--config", config.to_str().unwrap()], &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("under {new_id}; none is left under another key")), "{out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let accepted = sender.await.unwrap();
    assert!(accepted > 3, "records arrived during the rotation");
    let census =
        gw.db().query_row("SELECT COUNT(*) FROM data_keys WHERE kek_id <> ?1", [&new_id], |r| r.get::<_, i64>(0));
    assert_eq!(census.unwrap(), 0, "every data key is wrapped under the new key");
    assert!(gw.audited("keys.rewrapped", |e| e.reason.as_deref().is_some_and(|r| r.ends_with(&new_id))).await >= 1);
    let gw = Arc::into_inner(gw).expect("the sender is done");
    for id in ["esdc-sin-registry", "cra-child-benefit", "on-health-plan", "ottawa-city"] {
        let got = gw.recipient(id).wait_for(accepted - 3, Duration::from_secs(30)).await;
        assert_eq!(got.len(), accepted - 3, "{id} received every record accepted by this gateway");
    }
    let setup = gw.stop().await;

    // The old key gone for good: the store starts on the new key alone, and every record the
    // first gateway accepted but could not deliver before it stopped is still delivered.
    std::fs::remove_file(&old_key).unwrap();
    let config = setup.main_config();
    edit_file(&config, &format!(", previous_key_files = [\"{}\"]", old_key.display()), "");
    let setup = setup.store(&format!("encryption = {{ key_file = \"{}\" }}", new_key.display()));
    let (code, out) = cli(&["audit", "verify", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let gw = setup.start().await;
    let stored: i64 = gw.count("records");
    assert_eq!(stored as usize, accepted, "nothing was lost");
    assert!(gw.post_record("on-vital-stats", "birth-registration", &marked(&marker)).await.status == 202);
}
