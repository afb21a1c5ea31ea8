//! The audit trail: verification of the live chain and of exports, every kind of tampering named,
//! receipts a sender can check, aggregated rejections, retention.

use std::time::Duration;

use http::StatusCode;
use passerelle::audit::export::{Line, parse_line};
use passerelle::audit::{AuditEntry, Checkpoint};
use serde_json::Value;

use crate::support::*;

/// A gateway that accepted a few records (one recipient refusing, so one delivery is dead),
/// rejected three, and was stopped (writing its final checkpoint).
async fn traffic(checkpoint_every: u64) -> (Setup, Vec<Value>) {
    let gw = Setup::new().audit(&format!("checkpoint_every = {checkpoint_every}")).start().await;
    gw.recipient("ottawa-city").respond(400);
    let mut receipts = Vec::new();
    for _ in 0..5 {
        let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        receipts.push(r.json());
    }
    for _ in 0..3 {
        let r = gw
            .post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1-invalid.json"))
            .await;
        assert_eq!(r.status.as_u16(), 422);
    }
    for id in ["esdc-sin-registry", "cra-child-benefit", "on-health-plan", "ottawa-city"] {
        gw.recipient(id).wait_for(5, Duration::from_secs(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    (gw.stop().await, receipts)
}

fn config_arg(setup: &Setup) -> String {
    setup.main_config().to_str().unwrap().to_owned()
}

fn verify(setup: &Setup) -> (i32, String) {
    cli(&["audit", "verify", "--config", &config_arg(setup)])
}

/// The store's file, opened directly: how these tests play an insider who rewrites it.
fn db(setup: &Setup) -> rusqlite::Connection {
    rusqlite::Connection::open(setup.data_dir().join("passerelle.sqlite")).unwrap()
}

/// The audit trail of a stopped gateway, read as the product reads it: `passerelle audit export`
/// (the store's own queries) parsed by the export's own reader, so no test knows a column.
#[derive(Default)]
struct Trail {
    entries: Vec<AuditEntry>,
    checkpoints: Vec<Checkpoint>,
}

impl Trail {
    fn read(setup: &Setup) -> Trail {
        let file = setup.dir.path().join("trail.jsonl");
        let (code, out) = cli(&["audit", "export", "--config", &config_arg(setup), "--output", file.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}");
        let mut trail = Trail::default();
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            match parse_line(line).unwrap_or_else(|e| panic!("{e}: {line}")) {
                Line::Header => {}
                Line::Entry(entry) => trail.entries.push(entry),
                Line::Checkpoint(checkpoint) => trail.checkpoints.push(checkpoint),
            }
        }
        trail
    }

    /// The entries of `kind`.
    fn of_kind<'t>(&'t self, kind: &'t str) -> impl Iterator<Item = &'t AuditEntry> + 't {
        self.entries.iter().filter(move |e| e.event.kind == kind)
    }

    /// The events of `kind` that the entries stand for (an aggregated entry counts several).
    fn count(&self, kind: &str) -> i64 {
        self.of_kind(kind).map(|e| e.event.count).sum()
    }
}

fn last_checkpoint(setup: &Setup) -> i64 {
    Trail::read(setup).checkpoints.iter().map(|c| c.seq).max().expect("a checkpoint was signed")
}

#[tokio::test]
async fn the_chain_records_every_event_and_verifies() {
    let (setup, _) = traffic(1000).await;
    let (code, out) = verify(&setup);
    assert_eq!(code, 0, "{out}");
    let trail = Trail::read(&setup);
    assert_eq!(trail.count("config.loaded"), 1);
    assert_eq!(trail.count("record.accepted"), 5);
    assert_eq!(trail.count("delivery.delivered"), 15);
    assert_eq!(trail.count("delivery.dead"), 5);
    // Rejections: one aggregated entry per sender, reason and minute, with their count.
    assert_eq!(trail.count("records.rejected"), 3);
    let rejected = trail.of_kind("records.rejected").count();
    assert!(rejected <= 2, "at most one entry per minute crossed");
    let entries = trail.entries.len() as i64;
    assert!(out.contains(&format!("{entries} entries (1 to {entries})")), "{out}");
    assert!(out.contains("checkpoint signatures verified"), "{out}");
    assert_eq!(last_checkpoint(&setup), entries, "the shutdown checkpoint covers the head");
    let reason = trail.of_kind("config.loaded").next().and_then(|e| e.event.reason.clone()).unwrap();
    assert!(reason.starts_with("sha256:") && reason.len() == 71, "{reason}");
}

#[tokio::test]
async fn changing_one_byte_of_an_entry_is_named() {
    let (setup, _) = traffic(1000).await;
    db(&setup).execute("UPDATE audit_log SET outcome = 'acceptee' WHERE seq = 3", []).unwrap();
    let (code, out) = verify(&setup);
    assert_eq!(code, 1);
    assert!(out.contains("FAILED: entry 3: its hash does not match its contents"), "{out}");
}

#[tokio::test]
async fn deleting_an_entry_is_named() {
    let (setup, _) = traffic(1000).await;
    db(&setup).execute("DELETE FROM audit_log WHERE seq = 4", []).unwrap();
    let (code, out) = verify(&setup);
    assert_eq!(code, 1);
    assert!(out.contains("FAILED: entry 4 is missing: the chain jumps from entry 3 to entry 5"), "{out}");
}

#[tokio::test]
async fn swapping_two_entries_is_named() {
    let (setup, _) = traffic(1000).await;
    let conn = db(&setup);
    // Exchange everything but the position of entries 5 and 6.
    conn.execute_batch(
        "UPDATE audit_log SET seq = -5 WHERE seq = 5; UPDATE audit_log SET seq = 5 WHERE seq = 6; UPDATE audit_log SET seq = 6 WHERE seq = -5;",
    )
    .unwrap();
    let (code, out) = verify(&setup);
    assert_eq!(code, 1);
    assert!(out.contains("FAILED: entry 5:"), "{out}");
}

#[tokio::test]
async fn cutting_entries_covered_by_a_checkpoint_is_named() {
    let (setup, _) = traffic(1000).await;
    let head = last_checkpoint(&setup);
    db(&setup).execute("DELETE FROM audit_log WHERE seq > ?1", [head - 3]).unwrap();
    let (code, out) = verify(&setup);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("FAILED: entries {} to {head} are missing: a checkpoint covers entry {head}", head - 2)),
        "{out}"
    );
}

#[tokio::test]
async fn a_forged_checkpoint_is_named() {
    let (setup, _) = traffic(1000).await;
    let head = last_checkpoint(&setup);
    // Claim the head has another hash (a rewritten chain would need this).
    db(&setup).execute("UPDATE audit_checkpoints SET hash = zeroblob(32) WHERE seq = ?1", [head]).unwrap();
    let (code, out) = verify(&setup);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("FAILED: checkpoint at entry {head}")) && out.contains("the signature does not match"),
        "{out}"
    );
}

#[tokio::test]
async fn a_rewritten_chain_contradicts_its_checkpoints() {
    let (setup, _) = traffic(5).await;
    // Change entry 2 and recompute every hash after it, as an insider with database access could.
    let conn = db(&setup);
    conn.execute("UPDATE audit_log SET actor = 'nt-vital-stats' WHERE seq = 2", []).unwrap();
    let events = Trail::read(&setup).entries.into_iter().map(|e| e.event);
    let chain =
        passerelle::audit::chain(passerelle::audit::AuditStamp { seq: 0, hash: passerelle::audit::GENESIS }, events);
    for e in &chain {
        conn.execute(
            "UPDATE audit_log SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![&e.prev_hash[..], &e.hash[..], e.seq],
        )
        .unwrap();
    }
    let (code, out) = verify(&setup);
    assert_eq!(code, 1);
    assert!(out.contains("differs from what the checkpoint signed by key"), "{out}");
}

#[tokio::test]
async fn exports_verify_offline_with_the_public_key_and_tampering_is_named() {
    let (setup, _) = traffic(4).await;
    let dir = setup.dir.path();
    let (code, key_line) = cli(&["audit", "key", "--config", &config_arg(&setup)]);
    assert_eq!(code, 0);
    assert!(key_line.starts_with("ed25519 "));
    let key_file = dir.join("gateway.pub");
    std::fs::write(&key_file, &key_line).unwrap();
    let export = dir.join("export.jsonl");
    let (code, _) = cli(&["audit", "export", "--config", &config_arg(&setup), "--output", export.to_str().unwrap()]);
    assert_eq!(code, 0);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&export).unwrap().permissions().mode() & 0o777, 0o600, "the export is owner-only");
    // Offline: no configuration, no database; only the export and the public key.
    std::fs::rename(setup.data_dir(), dir.join("data-moved")).unwrap();
    let verify_file = |file: &std::path::Path| {
        cli(&["audit", "verify", "--file", file.to_str().unwrap(), "--key", key_file.to_str().unwrap()])
    };
    let (code, out) = verify_file(&export);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("OK: "), "{out}");

    let text = std::fs::read_to_string(&export).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Change one byte of one entry.
    let tampered = dir.join("tampered.jsonl");
    std::fs::write(&tampered, text.replacen("\"kind\":\"record.accepted\"", "\"kind\":\"record.acceptee\"", 1))
        .unwrap();
    let (code, out) = verify_file(&tampered);
    assert_eq!(code, 1);
    assert!(out.contains("its hash does not match its contents"), "{out}");
    // Delete one entry line.
    let deleted: Vec<&str> = lines.iter().enumerate().filter(|(i, _)| *i != 3).map(|(_, l)| *l).collect();
    std::fs::write(&tampered, deleted.join("\n")).unwrap();
    let (code, out) = verify_file(&tampered);
    assert_eq!(code, 1);
    assert!(out.contains("FAILED: entry 3 is missing"), "{out}");
    // Swap two entry lines.
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    std::fs::write(&tampered, swapped.join("\n")).unwrap();
    let (code, out) = verify_file(&tampered);
    assert_eq!(code, 1, "{out}");
    // A key that is not the gateway's.
    let other = dir.join("other.pub");
    let other_key = passerelle::audit::keys::SigningKey::load_or_create(&dir.join("other-key")).unwrap();
    std::fs::write(&other, other_key.public_line()).unwrap();
    let (code, out) = cli(&["audit", "verify", "--file", export.to_str().unwrap(), "--key", other.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("signed by a key that is not trusted"), "{out}");
}

#[tokio::test]
async fn a_partial_export_verifies_its_range() {
    let (setup, _) = traffic(4).await;
    let export = setup.dir.path().join("range.jsonl");
    let (code, _) = cli(&[
        "audit",
        "export",
        "--config",
        &config_arg(&setup),
        "--from",
        "5",
        "--to",
        "12",
        "--output",
        export.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let (code, out) = cli(&["audit", "verify", "--config", &config_arg(&setup), "--file", export.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("8 entries (5 to 12)"), "{out}");
}

#[tokio::test]
async fn receipts_carry_a_signature_the_sender_can_check() {
    let (setup, receipts) = traffic(1000).await;
    let dir = setup.dir.path();
    let receipt = &receipts[0];
    let audit = &receipt["audit"];
    assert!(audit["seq"].as_i64().unwrap() >= 2);
    assert_eq!(audit["entry_hash"].as_str().unwrap().len(), 64);
    let seq = audit["seq"].as_i64().unwrap();
    let stored = Trail::read(&setup).entries.into_iter().find(|e| e.seq == seq).expect("the receipt's entry").hash;
    assert_eq!(hex(&stored), audit["entry_hash"].as_str().unwrap(), "the receipt names the record's entry");
    let file = dir.join("receipt.json");
    std::fs::write(&file, receipt.to_string()).unwrap();
    let (code, out) = cli(&["audit", "verify-receipt", file.to_str().unwrap(), "--config", &config_arg(&setup)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with(&format!("valid: record {}", receipt["record_id"].as_str().unwrap())), "{out}");
    // Forged: another entry hash, or another record id.
    for (path, forged) in [("entry_hash", Value::String("00".repeat(32))), ("seq", Value::from(1))] {
        let mut f = receipt.clone();
        f["audit"][path] = forged;
        std::fs::write(&file, f.to_string()).unwrap();
        let (code, out) = cli(&["audit", "verify-receipt", file.to_str().unwrap(), "--config", &config_arg(&setup)]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("INVALID") && out.contains("does not match its signature"), "{out}");
    }
    let mut f = receipt.clone();
    f["record_id"] = receipts[1]["record_id"].clone();
    std::fs::write(&file, f.to_string()).unwrap();
    assert_eq!(cli(&["audit", "verify-receipt", file.to_str().unwrap(), "--config", &config_arg(&setup)]).0, 1);
}

#[tokio::test]
async fn a_replayed_request_gets_the_same_signed_receipt() {
    let gw = Setup::new().start().await;
    let body = record("birth-registration-1.1.json");
    let send = || {
        gw.post_as("on-vital-stats", "/v1/records/birth-registration")
            .header("idempotency-key", "same")
            .json(&body)
            .send()
    };
    let first = send().await;
    let again = send().await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(first.body, again.body, "the same receipt, signature included");
    assert!(first.json()["audit"]["signature"].as_str().is_some_and(|s| s.len() == 128));
}

#[tokio::test]
async fn bodies_are_purged_after_retention_and_the_chain_still_verifies() {
    let gw = Setup::new().retention("delivered_days = 0\ndead_days = 365\npurge_interval_secs = 1").start().await;
    gw.recipient("ottawa-city").respond(400);
    for _ in 0..3 {
        gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    }
    gw.recipient("esdc-sin-registry").wait_for(3, Duration::from_secs(5)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let kept: i64 = gw
            .db()
            .query_row("SELECT COUNT(*) FROM deliveries WHERE body IS NOT NULL AND status = 'delivered'", [], |r| {
                r.get(0)
            })
            .unwrap();
        if kept == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "delivered bodies were not purged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Dead deliveries keep their body (an operator may replay them), so their records do too;
    // the purges that ran since the city's refusals were recorded kept them.
    let refused = gw.recipient("ottawa-city").wait_for(3, Duration::from_secs(5)).await;
    assert_eq!(refused.len(), 3);
    let dead_kept = || -> i64 {
        gw.db()
            .query_row("SELECT COUNT(*) FROM deliveries WHERE body IS NOT NULL AND status = 'dead'", [], |r| r.get(0))
            .unwrap()
    };
    while dead_kept() < 3 {
        assert!(std::time::Instant::now() < deadline, "the city's refusals were not recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(dead_kept(), 3, "a purge took a dead delivery's body");
    // The records are still known to their sender.
    let list = gw.client.get("/v1/records", gw.key("on-vital-stats")).await.json();
    assert_eq!(list["records"].as_array().unwrap().len(), 3);
    let setup = gw.stop().await;
    let (code, out) = verify(&setup);
    assert_eq!(code, 0, "{out}");
    assert!(Trail::read(&setup).of_kind("bodies.purged").count() >= 1);
}

/// A restarted gateway reports the last checkpoint already in the store, so the checkpoint-age
/// gauge (and its alert) is right from the start, not 0 until the next signature.
#[tokio::test]
async fn a_restarted_gateway_reports_the_stored_checkpoint() {
    let gw = Setup::new().start().await;
    let r = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status, http::StatusCode::ACCEPTED);
    // Shutdown signs a final checkpoint over everything.
    let setup = gw.stop().await;
    let gw = setup.start().await;
    let page = gw.metrics().await;
    let seq = metric(&page, "passerelle_audit_last_checkpoint_seq", &[]);
    let at = metric(&page, "passerelle_audit_last_checkpoint_timestamp_seconds", &[]);
    assert!(seq >= 2.0, "the stored checkpoint covers the accepted record: {seq}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(at > now - 60.0 && at <= now + 1.0, "signed at the last shutdown: {at} (now {now})");
    assert_eq!(metric(&page, "passerelle_audit_checkpoints_total", &[]), 0.0, "none signed by this run yet");
    gw.stop().await;
}

/// Found trying the product as an operator: `audit verify` run beside a busy gateway showed a
/// progress total fixed at the start (`12000/10000 entries`). The total follows the chain. The
/// command runs in a pseudo-terminal (`script`), where its progress bar is drawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_verify_progress_total_follows_a_growing_chain() {
    let gw = Setup::new().start().await;
    let store = gw.gateway.as_ref().unwrap().state.store.clone();
    let event = |n: i64| passerelle::audit::AuditEvent::new(1_800_000_000_000 + n, "records.rejected", "p", "invalid");
    for batch in 0..20 {
        store.append_audit((0..1000).map(|n| event(batch * 1000 + n)).collect()).await.unwrap();
    }
    // The chain keeps growing while the command reads it.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for batch in 0..200 {
                store.append_audit((0..500).map(|n| event(batch * 500 + n)).collect()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let command = format!("{} audit verify --config {}", binary().display(), config_arg(&gw.setup));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("script").args(["-qec", &command, "/dev/null"]).output().unwrap()
    })
    .await
    .unwrap();
    writer.abort();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && shown.contains("OK:"), "{shown}");
    let draws: Vec<(u64, u64)> = shown
        .split(" entries")
        .filter_map(|part| {
            let (position, total) = part.rsplit(' ').next()?.split_once('/')?;
            Some((position.parse().ok()?, total.parse().ok()?))
        })
        .collect();
    assert!(!draws.is_empty(), "the progress bar was drawn: {shown:?}");
    for (position, total) in draws {
        assert!(position <= total, "{position}/{total} entries: the total stayed behind the chain");
    }
}
