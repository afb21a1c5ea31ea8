//! `passerelle migrate-store`: copy a SQLite store into PostgreSQL, evidence included.
//!
//! Records not yet purged (with their bodies, sealed as they are), every delivery (ids kept) and
//! its attempt timeline, the data keys (still wrapped), the record subjects of the access record,
//! the whole audit chain, its checkpoints and the signed receipt trees are copied in one
//! PostgreSQL transaction, so a partner that starts small can grow to several instances without
//! losing its evidence. The chain is verified on PostgreSQL afterwards, with this instance's key
//! and the configured trusted keys.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use rusqlite::OpenFlags;

use crate::store::postgres::{PostgresOptions, PostgresStore, connect};
use crate::telemetry::Metrics;

/// Rows copied per statement batch (one progress step).
const STEP: usize = 1000;

pub fn run(config_path: &Path, to: &str, to_ca_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let source = &config.settings.store.sqlite_path;
    let sqlite = rusqlite::Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", source.display()))?;
    let target: tokio_postgres::Config = to.parse().context("--to is not a PostgreSQL connection string")?;
    // The store requires TLS with a CA and uses none without one; only a URL asking for TLS
    // without a CA is the operator's mistake to point out.
    let tls = match to_ca_file {
        Some(ca) => Some(crate::tls::recipient_client(&[ca.to_path_buf()], None, None, &crate::tls::disk)?),
        None => {
            anyhow::ensure!(
                target.get_ssl_mode() != tokio_postgres::config::SslMode::Require,
                "--to asks for TLS (sslmode=require): give the server's CA with --to-ca-file"
            );
            None
        }
    };
    // The copy reads the tables as this program writes them.
    let version: i64 = sqlite
        .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
        .with_context(|| format!("{} is not a Passerelle store", source.display()))?;
    anyhow::ensure!(
        version == crate::store::sqlite::SCHEMA_VERSION,
        "{} is at schema version {version}, this program's is {}: start the gateway of this version on it once \
         (it migrates the store), stop it, then migrate",
        source.display(),
        crate::store::sqlite::SCHEMA_VERSION
    );
    let count = |table: &str| -> anyhow::Result<u64> {
        Ok(sqlite.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get::<_, i64>(0))? as u64)
    };
    let total = count("audit_log")?
        + count("audit_checkpoints")?
        + count("data_keys")?
        + count("records")?
        + count("disclosure_terms")?
        + count("deliveries")?
        + count("record_subjects")?
        + count("delivery_attempts")?;

    // Read before the copy, so a missing trusted key file stops the migration before it starts.
    let keys = super::audit::trusted_keys(&config)?;
    super::runtime()?.block_on(async move {
        // Opening the store applies the migrations (and proves the schema is the one we write).
        let options = PostgresOptions { config: target.clone(), pool_size: 2, queue: 16, max_batch: 16, commit_timeout: std::time::Duration::from_secs(60), linger: std::time::Duration::ZERO, tls: tls.clone(), encryption: None, receipts: None };
        drop(PostgresStore::open(options, Metrics::new()).await?);
        let mut client = connect(&target, &tls).await.context("cannot connect to PostgreSQL")?;
        let existing: i64 = client.query_one("SELECT COUNT(*) FROM audit_log", &[]).await?.get(0);
        anyhow::ensure!(existing == 0, "the PostgreSQL store already holds {existing} audit entries; migrate into an empty one");

        let bar = super::progress_bar(total, "Copying", "rows");
        let tx = client.transaction().await?;
        let mut copied = 0u64;
        {
            let mut rows = sqlite.prepare("SELECT seq, at, kind, actor, record_id, agreement, recipient, body_digest, outcome, reason, count, prev_hash, hash FROM audit_log ORDER BY seq")?;
            let insert = tx.prepare("INSERT INTO audit_log (seq, at, kind, actor, record_id, agreement, recipient, body_digest, outcome, reason, count, prev_hash, hash) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)").await?;
            let mut it = rows.query([])?;
            let mut head: Option<(i64, Vec<u8>)> = None;
            while let Some(r) = it.next()? {
                let (seq, hash): (i64, Vec<u8>) = (r.get(0)?, r.get(12)?);
                tx.execute(&insert, &[&seq, &r.get::<_, i64>(1)?, &r.get::<_, String>(2)?, &r.get::<_, String>(3)?, &r.get::<_, Option<String>>(4)?, &r.get::<_, Option<String>>(5)?, &r.get::<_, Option<String>>(6)?, &r.get::<_, Option<Vec<u8>>>(7)?, &r.get::<_, String>(8)?, &r.get::<_, Option<String>>(9)?, &r.get::<_, i64>(10)?, &r.get::<_, Vec<u8>>(11)?, &hash]).await?;
                head = Some((seq, hash));
                copied += 1;
                if copied.is_multiple_of(STEP as u64) {
                    bar.set_position(copied);
                }
            }
            if let Some((seq, hash)) = head {
                tx.execute("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1", &[&seq, &hash]).await?;
            }
        }
        {
            let mut rows = sqlite.prepare("SELECT seq, key_id, hash, at, signature FROM audit_checkpoints ORDER BY seq")?;
            let mut it = rows.query([])?;
            while let Some(r) = it.next()? {
                tx.execute("INSERT INTO audit_checkpoints (seq, key_id, hash, at, signature) VALUES ($1,$2,$3,$4,$5)", &[&r.get::<_, i64>(0)?, &r.get::<_, String>(1)?, &r.get::<_, Vec<u8>>(2)?, &r.get::<_, i64>(3)?, &r.get::<_, Vec<u8>>(4)?]).await?;
                copied += 1;
            }
        }
        // The signed receipt trees, which the receipts partners hold point to (a store a program
        // before schema version 8 wrote has none).
        let has_trees: i64 = sqlite.query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'receipt_trees'", [], |r| r.get(0))?;
        if has_trees > 0 {
            let mut rows = sqlite.prepare("SELECT first_seq, last_seq, size, root, signed_at, key_id, signature FROM receipt_trees ORDER BY first_seq")?;
            let mut it = rows.query([])?;
            while let Some(r) = it.next()? {
                tx.execute("INSERT INTO receipt_trees (first_seq, last_seq, size, root, signed_at, key_id, signature) VALUES ($1,$2,$3,$4,$5,$6,$7)", &[&r.get::<_, i64>(0)?, &r.get::<_, i64>(1)?, &r.get::<_, i64>(2)?, &r.get::<_, Vec<u8>>(3)?, &r.get::<_, i64>(4)?, &r.get::<_, String>(5)?, &r.get::<_, Vec<u8>>(6)?]).await?;
            }
        }
        {
            // The data keys as they are, wrapped: the bodies copied below stay sealed under them.
            let mut rows = sqlite.prepare("SELECT id, kek_id, wrapped, created_at, not_after, destroyed_at FROM data_keys ORDER BY id")?;
            let mut it = rows.query([])?;
            while let Some(r) = it.next()? {
                tx.execute("INSERT INTO data_keys (id, kek_id, wrapped, created_at, not_after, destroyed_at) VALUES ($1,$2,$3,$4,$5,$6)", &[&r.get::<_, String>(0)?, &r.get::<_, String>(1)?, &r.get::<_, Option<Vec<u8>>>(2)?, &r.get::<_, i64>(3)?, &r.get::<_, i64>(4)?, &r.get::<_, Option<i64>>(5)?]).await?;
                copied += 1;
            }
        }
        {
            let mut rows = sqlite.prepare("SELECT record_id, sender, record_type, schema_version, received_at, body, body_sha256, idempotency_key, traceparent, receipt, audit_seq, tracestate, key_id FROM records ORDER BY received_at")?;
            let insert = tx.prepare("INSERT INTO records (record_id, sender, record_type, schema_version, received_at, body, body_sha256, idempotency_key, traceparent, receipt, audit_seq, tracestate, key_id) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)").await?;
            let mut it = rows.query([])?;
            while let Some(r) = it.next()? {
                tx.execute(&insert, &[&r.get::<_, String>(0)?, &r.get::<_, String>(1)?, &r.get::<_, String>(2)?, &r.get::<_, String>(3)?, &r.get::<_, i64>(4)?, &r.get::<_, Option<Vec<u8>>>(5)?, &r.get::<_, Vec<u8>>(6)?, &r.get::<_, Option<String>>(7)?, &r.get::<_, Option<String>>(8)?, &r.get::<_, Vec<u8>>(9)?, &r.get::<_, i64>(10)?, &r.get::<_, Option<String>>(11)?, &r.get::<_, Option<String>>(12)?]).await?;
                copied += 1;
                if copied.is_multiple_of(STEP as u64) {
                    bar.set_position(copied);
                }
            }
        }
        {
            // The disclosure terms the deliveries name, ids kept.
            let mut rows = sqlite.prepare("SELECT id, purpose, fields FROM disclosure_terms ORDER BY id")?;
            let mut it = rows.query([])?;
            while let Some(r) = it.next()? {
                tx.execute("INSERT INTO disclosure_terms (id, purpose, fields) VALUES ($1,$2,$3)", &[&r.get::<_, i64>(0)?, &r.get::<_, String>(1)?, &r.get::<_, String>(2)?]).await?;
                copied += 1;
            }
            tx.execute("SELECT setval(pg_get_serial_sequence('disclosure_terms', 'id'), GREATEST((SELECT MAX(id) FROM disclosure_terms), 1))", &[]).await?;
        }
        {
            let mut rows = sqlite.prepare("SELECT id, record_id, recipient, agreement, ordered, body, body_digest, status, attempts, replays, created_at, next_attempt_at, last_attempt_at, last_status, last_error, delivered_at, key_id, schema_version, terms_id FROM deliveries ORDER BY id")?;
            let insert = tx.prepare("INSERT INTO deliveries (id, record_id, recipient, agreement, ordered, body, body_digest, status, attempts, replays, created_at, next_attempt_at, last_attempt_at, last_status, last_error, delivered_at, key_id, schema_version, terms_id) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)").await?;
            let mut it = rows.query([])?;
            while let Some(r) = it.next()? {
                // Leases are not copied: every pending delivery is free to be claimed again.
                tx.execute(&insert, &[&r.get::<_, i64>(0)?, &r.get::<_, String>(1)?, &r.get::<_, String>(2)?, &r.get::<_, String>(3)?, &r.get::<_, bool>(4)?, &r.get::<_, Option<Vec<u8>>>(5)?, &r.get::<_, Vec<u8>>(6)?, &r.get::<_, String>(7)?, &r.get::<_, i32>(8)?, &r.get::<_, i32>(9)?, &r.get::<_, i64>(10)?, &r.get::<_, i64>(11)?, &r.get::<_, Option<i64>>(12)?, &r.get::<_, Option<i32>>(13)?, &r.get::<_, Option<String>>(14)?, &r.get::<_, Option<i64>>(15)?, &r.get::<_, Option<String>>(16)?, &r.get::<_, Option<String>>(17)?, &r.get::<_, Option<i64>>(18)?]).await?;
                copied += 1;
                if copied.is_multiple_of(STEP as u64) {
                    bar.set_position(copied);
                }
            }
            tx.execute("SELECT setval(pg_get_serial_sequence('deliveries', 'id'), GREATEST((SELECT MAX(id) FROM deliveries), 1))", &[]).await?;
        }
        {
            // Each delivery's attempt timeline: what an operator investigating a record reads,
            // the statistics' attempts, and what the completion notices look back over.
            let mut rows = sqlite.prepare("SELECT delivery_id, attempt, at, outcome, status, latency_ms, error_class, next_attempt_at FROM delivery_attempts ORDER BY delivery_id, attempt")?;
            let insert = tx.prepare("INSERT INTO delivery_attempts (delivery_id, attempt, at, outcome, status, latency_ms, error_class, next_attempt_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)").await?;
            let mut it = rows.query([])?;
            while let Some(r) = it.next()? {
                tx.execute(&insert, &[&r.get::<_, i64>(0)?, &r.get::<_, i32>(1)?, &r.get::<_, i64>(2)?, &r.get::<_, String>(3)?, &r.get::<_, Option<i32>>(4)?, &r.get::<_, Option<i64>>(5)?, &r.get::<_, Option<String>>(6)?, &r.get::<_, Option<i64>>(7)?]).await?;
                copied += 1;
                if copied.is_multiple_of(STEP as u64) {
                    bar.set_position(copied);
                }
            }
        }
        {
            // The access record: subject digests, copied as they are (the subject key is the
            // same file, or the same value, for the new store).
            let mut rows = sqlite.prepare("SELECT subject, record_id, received_at FROM record_subjects ORDER BY record_id")?;
            let insert = tx.prepare("INSERT INTO record_subjects (subject, record_id, received_at) VALUES ($1,$2,$3)").await?;
            let mut it = rows.query([])?;
            while let Some(r) = it.next()? {
                tx.execute(&insert, &[&r.get::<_, Vec<u8>>(0)?, &r.get::<_, String>(1)?, &r.get::<_, i64>(2)?]).await?;
                copied += 1;
            }
        }
        tx.commit().await?;
        bar.finish_and_clear();
        eprintln!("Copied {copied} rows from {} into PostgreSQL.", source.display());

        // The evidence survived the move: verify the chain where it now lives.
        let options = PostgresOptions { config: target, pool_size: 2, queue: 16, max_batch: 16, commit_timeout: std::time::Duration::from_secs(60), linger: std::time::Duration::ZERO, tls: tls.clone(), encryption: None, receipts: None };
        let store = PostgresStore::open(options, Metrics::new()).await?;
        match super::audit::verify_chain(&store, &keys).await? {
            Ok(summary) => {
                println!("Migrated; the chain verifies on PostgreSQL: {summary}");
                Ok(ExitCode::SUCCESS)
            }
            Err(failure) => {
                println!("FAILED after the copy: {failure}");
                Ok(ExitCode::FAILURE)
            }
        }
    })
}
