//! `passerelle backup`: a copy of the store taken while records keep arriving is consistent, holds
//! every record accepted before it began, is owner-only, and restores as the README says: a
//! configuration pointed at a data directory holding the copy (and the signing key) passes
//! `audit verify`.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;

/// Records accepted before the backup starts.
const BEFORE: usize = 300;

async fn post(client: &TestClient, api_key: &str, body: &str) -> Option<String> {
    let r =
        client.post("/v1/records/birth-registration").bearer(api_key).json_bytes(body.to_owned()).try_send().await?;
    (r.status.as_u16() == 202).then(|| r.json()["record_id"].as_str().unwrap().to_owned())
}

/// Runs the binary with `args`, giving up after two minutes.
async fn run(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let run = tokio::task::spawn_blocking(move || Command::new(binary()).args(&args).output().unwrap());
    tokio::time::timeout(Duration::from_secs(120), run).await.expect("the command finished within 120 s").unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_while_records_arrive_verifies_and_holds_every_record_accepted_before_it() {
    let recipients = mock_recipients().await;
    let setup = Setup::new();
    setup.write_for(&recipients);
    let config = setup.main_config();
    let api_key = setup.keys["on-vital-stats"].clone();
    let body = record("birth-registration-1.1.json").to_string();
    let gateway = ChildGateway::spawn(&config, &[]).await;

    let mut before = BTreeSet::new();
    for _ in 0..BEFORE {
        before.insert(post(&gateway.client, &api_key, &body).await.expect("accepted"));
    }

    // Records keep arriving, from four clients, for as long as the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let during = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (client, api_key, body, stop, during) =
            (gateway.client.clone(), api_key.clone(), body.clone(), stop.clone(), during.clone());
        senders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if post(&client, &api_key, &body).await.is_some() {
                    during.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    while during.load(Ordering::Relaxed) < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let backups = tempfile::tempdir().unwrap();
    let dest = backups.path().join("passerelle-backup.sqlite");
    let started = during.load(Ordering::Relaxed);
    // Eight pages per step: hundreds of steps, each while the gateway commits.
    let out =
        run(&["backup", dest.to_str().unwrap(), "--config", config.to_str().unwrap(), "--pages-per-step", "8"]).await;
    let ended = during.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("OK: the copy's audit chain verifies"), "{stdout}");
    for secret in ["audit-signing-key", "audit-secret", "subject.key", "store.key"] {
        assert!(stdout.contains(secret), "secrets are named: {stdout}");
    }
    assert!(ended > started, "records were accepted while the backup ran ({started} then {ended})");

    // Owner-only, one self-contained file, nothing left beside it.
    assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o600);
    let names: Vec<_> = std::fs::read_dir(backups.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("passerelle-backup.sqlite")]);

    // Every record accepted before the backup began is in the copy, each with its audit entry.
    let copy = rusqlite::Connection::open_with_flags(&dest, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let ids: BTreeSet<String> = copy
        .prepare("SELECT record_id FROM records")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let missing: Vec<_> = before.difference(&ids).collect();
    assert!(missing.is_empty(), "{} records accepted before the backup are missing", missing.len());
    let orphans: i64 = copy
        .query_row(
            "SELECT COUNT(*) FROM records r LEFT JOIN audit_log a ON a.seq = r.audit_seq WHERE a.seq IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0, "every record in the copy has its audit entry");
    drop(copy);

    // The README's restore: a configuration whose data directory holds the copy as the store,
    // and the keys (backed up apart); the WAL files of the old store are not carried over.
    let restored = tempfile::tempdir().unwrap();
    copy_dir(&setup.config_dir(), &restored.path().join("config"));
    let data = restored.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(&dest, data.join("passerelle.sqlite")).unwrap();
    std::fs::copy(setup.data_dir().join("audit-signing-key"), data.join("audit-signing-key")).unwrap();
    std::fs::copy(setup.data_dir().join("audit-secret"), data.join("audit-secret")).unwrap();
    std::fs::copy(setup.data_dir().join("store.key"), data.join("store.key")).unwrap();
    std::fs::copy(setup.data_dir().join("subject.key"), data.join("subject.key")).unwrap();
    let restored_config = restored.path().join("config/passerelle.toml");
    let (code, out) = cli(&["audit", "verify", "--config", restored_config.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK: "), "{out}");

    // An existing file is kept unless --force says to replace it.
    let again = ["backup", dest.to_str().unwrap(), "--config", config.to_str().unwrap()];
    let out = run(&again).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --force to replace it"), "{}", text(&out));
    let out = run(&[&again[..], &["--force"]].concat()).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o600);
    gateway.terminate();
}

#[tokio::test]
async fn a_backup_refuses_a_postgres_store_and_the_live_store_itself() {
    let setup = Setup::new().store("url = \"postgres://postgres@127.0.0.1:5432/test\"");
    setup.write(&HashMap::new());
    let dest = setup.dir.path().join("backup.sqlite");
    let out = run(&["backup", dest.to_str().unwrap(), "--config", setup.main_config().to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("the store is PostgreSQL: back it up with pg_dump"), "{stderr}");
    assert!(!dest.exists());

    let gateway = Setup::new().start().await;
    let store = gateway.setup.data_dir().join("passerelle.sqlite");
    let config = gateway.setup.main_config();
    let out = run(&["backup", store.to_str().unwrap(), "--config", config.to_str().unwrap(), "--force"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the store itself"), "{}", text(&out));
    gateway.stop().await;
}
