//! `passerelle store`: the sealed store's keys. `encrypt` seals the bodies a store kept in
//! plaintext; `rotate-key` re-wraps every data key under the configured key-encryption key.
//!
//! Both open the store the configuration names, with its keys, beside a running gateway if
//! need be (SQLite serialises the two writers; PostgreSQL instances already share a store).
//! Each step is one transaction of at most `store::keys::BATCH` rows, audited, so either command
//! can be stopped at any point and run again to go on where it stopped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;
use crate::store::Store;
use crate::telemetry::Metrics;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Seal, in place, every body the store still holds in plaintext.
    ///
    /// For a store written before encryption at rest, or with `store.encryption.enabled =
    /// false`: each record and delivery body still in plaintext is sealed under its agreement's
    /// data key of today. Runs beside a gateway; resumable; each batch is audited
    /// (`bodies.sealed`). A SQLite file's free pages still hold the old plaintext until they are
    /// reused: --vacuum then rewrites the file without them (writes wait meanwhile). On
    /// PostgreSQL, run `VACUUM FULL` on the records and deliveries tables.
    #[command(
        after_long_help = "Example:\n  passerelle store encrypt --vacuum --config /etc/passerelle/passerelle.toml"
    )]
    Encrypt {
        #[arg(long, value_name = "FILE", default_value = super::DEFAULT_CONFIG, help = super::CONFIG_HELP)]
        config: PathBuf,
        /// SQLite: once every body is sealed, rewrite the file (VACUUM) and empty its log, so no
        /// plaintext is left in free pages.
        #[arg(long)]
        vacuum: bool,
    },
    /// Re-wrap every data key under the configured key-encryption key; bodies are untouched.
    ///
    /// First set `store.encryption.key_file` to the new key and list the old one in
    /// `previous_key_files`, and reload or restart the gateway; then run this. When it reports no
    /// data key left under another key, remove `previous_key_files` and destroy the old key:
    /// backups taken before then hold data keys only the old key unwraps. Each batch is audited
    /// (`keys.rewrapped`).
    #[command(after_long_help = "Example:\n  passerelle store rotate-key --config /etc/passerelle/passerelle.toml")]
    RotateKey {
        #[arg(long, value_name = "FILE", default_value = super::DEFAULT_CONFIG, help = super::CONFIG_HELP)]
        config: PathBuf,
    },
}

pub fn run(command: StoreCommand) -> anyhow::Result<ExitCode> {
    match command {
        StoreCommand::Encrypt { config, vacuum } => encrypt(&config, vacuum),
        StoreCommand::RotateKey { config } => rotate_key(&config),
    }
}

/// Opens the configured store with its keys; refuses a configuration with encryption off.
async fn open(config: &Config, config_path: &Path) -> anyhow::Result<(std::sync::Arc<dyn Store>, String)> {
    let Some(encryption) = &config.settings.store.encryption else {
        anyhow::bail!("store.encryption.enabled is false in {}: turn it on first", config_path.display());
    };
    let kek_id = encryption.load(true)?.current.id().to_owned();
    Ok((crate::gateway::open_store(config, Metrics::new()).await?, kek_id))
}

fn encrypt(config_path: &Path, vacuum: bool) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let sealed = super::runtime()?.block_on(async {
        let (store, kek_id) = open(&config, config_path).await?;
        let census = store.check_keys().await?;
        let bar = super::progress_bar(census.plain(), "Sealing", "bodies");
        let mut sealed = 0;
        loop {
            let step = store.seal_plaintext().await?;
            sealed += step.sealed;
            bar.set_position(sealed);
            if step.remaining == 0 || step.sealed == 0 {
                bar.finish_and_clear();
                println!(
                    "Sealed {sealed} bodies under data keys wrapped by {kek_id}; {} still in plaintext.",
                    step.remaining
                );
                return anyhow::Ok(step.remaining == 0);
            }
        }
    })?;
    if !sealed {
        return Ok(ExitCode::FAILURE);
    }
    if vacuum {
        anyhow::ensure!(
            config.settings.store.postgres.is_none(),
            "--vacuum is for a SQLite store: on PostgreSQL, run VACUUM FULL records, deliveries"
        );
        let path = &config.settings.store.sqlite_path;
        let db = rusqlite::Connection::open(path)?;
        db.busy_timeout(std::time::Duration::from_secs(60))?;
        db.execute_batch("VACUUM")?;
        empty_log(&db)?;
        println!("Vacuumed {}: no plaintext is left in its free pages or its log.", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Copies the whole write-ahead log into the database file and truncates it to nothing, so the
/// old pages it held (plaintext ones among them) are gone. A checkpoint that finds another
/// connection still reading (the store just closed may still be letting go of its own) reports
/// itself busy rather than failing: it is tried again for up to a minute, then refused loudly.
fn empty_log(db: &rusqlite::Connection) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        // (busy, frames in the log, frames copied): a complete TRUNCATE leaves (0, 0, 0).
        let (busy, frames): (i64, i64) =
            db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if busy == 0 && frames <= 0 {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the store's log could not be emptied: another process still has the store open (stop the gateway)"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn rotate_key(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    super::runtime()?.block_on(async {
        let (store, kek_id) = open(&config, config_path).await?;
        let census = store.check_keys().await?;
        let bar = super::progress_bar(census.wrapped_elsewhere(&kek_id), "Re-wrapping", "data keys");
        let mut rewrapped = 0;
        loop {
            let step = store.rewrap_keys().await?;
            rewrapped += step.rewrapped;
            bar.set_position(rewrapped);
            if step.remaining == 0 || step.rewrapped == 0 {
                bar.finish_and_clear();
                if step.remaining == 0 {
                    println!(
                        "Re-wrapped {rewrapped} data keys under {kek_id}; none is left under another key: remove \
                         store.encryption.previous_key_files, then destroy the old key."
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                println!(
                    "Re-wrapped {rewrapped} data keys under {kek_id}; {} still under another key.",
                    step.remaining
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    })
}
