//! `passerelle audit`: the signing key, verifying the chain (live or exported), exporting it, and
//! checking a receipt or a completion notice.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::{load_config as load, progress_bar};
use crate::audit::export::{self, Line};
use crate::audit::keys::{SigningKey, TrustedKeys};
use crate::audit::receipt::{Format, PresentedReceipt};
use crate::audit::verify::{ChainVerifier, Start, Summary, VerifyFailure, check_receipt_tree};
use crate::config::Config;
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;

/// Entries read from the store per page.
const PAGE: usize = 5000;

/// Signed receipt trees read from the store per page (each then reads its receipts).
const TREES_PAGE: usize = 500;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print this instance's public key and key id (creating the key on first use).
    ///
    /// One line, `ed25519 <key-id> <hex>`: what other instances list in `audit.trusted_keys`, and
    /// what verifies an export or a receipt offline. The private key never leaves its file.
    #[command(after_long_help = "Example:\n  passerelle audit key > gateway.pub")]
    Key {
        #[arg(long, value_name = "FILE", default_value = super::DEFAULT_CONFIG, help = super::CONFIG_HELP)]
        config: PathBuf,
    },
    /// Recompute every hash and check every link and checkpoint signature.
    ///
    /// Reads the store of the configuration, or an export file with --file (offline, without the
    /// database). Prints `OK:` with what was covered, or `FAILED:` naming the first entry that does
    /// not hold and why; exits 1 then.
    #[command(after_long_help = "Examples:\n  \
                                 passerelle audit verify\n  \
                                 passerelle audit verify --file audit.jsonl --key gateway.pub")]
    Verify {
        #[arg(long, value_name = "FILE", default_value = super::DEFAULT_CONFIG, help = super::CONFIG_HELP)]
        config: PathBuf,
        /// Verify an export file offline instead of the store.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Trusted public key files (`ed25519 <key-id> <hex>` lines); default: the configuration's.
        #[arg(long = "key", value_name = "FILE")]
        keys: Vec<PathBuf>,
    },
    /// Write the chain as JSON lines, verifiable offline with `audit verify --file`.
    ///
    /// A header line, one line per entry, then the checkpoints that fall in the range. Entries hold
    /// identifiers, outcomes and body digests, never a record's values.
    #[command(after_long_help = "Examples:\n  \
                                 passerelle audit export --output audit.jsonl\n  \
                                 passerelle audit export --from 1000 --to 2000 > part.jsonl")]
    Export {
        #[arg(long, value_name = "FILE", default_value = super::DEFAULT_CONFIG, help = super::CONFIG_HELP)]
        config: PathBuf,
        /// First entry to export (default: 1).
        #[arg(long, value_name = "SEQ")]
        from: Option<i64>,
        /// Last entry to export (default: the head).
        #[arg(long, value_name = "SEQ")]
        to: Option<i64>,
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Check a receipt a sender holds: the gateway's signature, and (online) its record.
    ///
    /// With --key, offline: only the receipt and the public key are read, and the signature must
    /// cover what the receipt shows. Without it, online: the configuration's keys, and the receipt
    /// is also compared with the record as the gateway stored it. Prints `valid:` with which audit
    /// entry the record is, when and by which key it was signed and what the signature covers, or
    /// `INVALID:` naming the field that does not hold (or saying the receipt body does not match
    /// its signature); exits 1 then.
    #[command(after_long_help = "Examples:\n  \
                                 passerelle audit verify-receipt receipt.json --key gateway.pub\n  \
                                 passerelle audit verify-receipt receipt.json --config config/passerelle.toml")]
    VerifyReceipt {
        /// The receipt file (the JSON body of the 202).
        receipt: PathBuf,
        #[arg(long, value_name = "FILE", default_value = super::DEFAULT_CONFIG, help = super::CONFIG_HELP)]
        config: PathBuf,
        /// Trusted public key files: check offline, reading neither the configuration nor its
        /// store. Default: the configuration's keys, and the online comparison.
        #[arg(long = "key", value_name = "FILE")]
        keys: Vec<PathBuf>,
    },
    /// Check a completion notice a sender received: the gateway's signature, offline.
    ///
    /// Reads the notice (the body pushed to `{endpoint}/completion-notice`, or taken from the
    /// mailbox) and the trusted public keys (--key, or the configuration's). Prints `valid:` with
    /// the notice's kind and record, when and by which key it was signed, or `INVALID:` saying why
    /// (a field changed after signing, an untrusted key); exits 1 then.
    #[command(after_long_help = "Examples:\n  \
                                 passerelle audit verify-notice notice.json --key gateway.pub\n  \
                                 passerelle audit verify-notice notice.json --config config/passerelle.toml")]
    VerifyNotice {
        /// The notice file.
        notice: PathBuf,
        #[arg(long, value_name = "FILE", default_value = super::DEFAULT_CONFIG, help = super::CONFIG_HELP)]
        config: PathBuf,
        /// Trusted public key files; default: the configuration's keys.
        #[arg(long = "key", value_name = "FILE")]
        keys: Vec<PathBuf>,
    },
}

pub fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Key { config } => {
            let config = load(&config)?;
            let key = SigningKey::load_or_create(&config.settings.audit.signing_key_file)?;
            println!("{}", key.public_line());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { config, file, keys } => match file {
            Some(file) => verify_file(&file, trusted(&config, &keys)?),
            None => verify_store(&load(&config)?, trusted(&config, &keys)?),
        },
        AuditCommand::Export { config, from, to, output } => export(&load(&config)?, from, to, output.as_deref()),
        AuditCommand::VerifyReceipt { receipt, config, keys } => {
            let bytes = std::fs::read(&receipt).with_context(|| format!("cannot read {}", receipt.display()))?;
            if keys.is_empty() {
                verify_receipt_online(&load(&config)?, &bytes)
            } else {
                Ok(verify_receipt_offline(&bytes, &trusted(&config, &keys)?))
            }
        }
        AuditCommand::VerifyNotice { notice, config, keys } => {
            let bytes = std::fs::read(&notice).with_context(|| format!("cannot read {}", notice.display()))?;
            Ok(match crate::audit::notice::verify(&bytes, &trusted(&config, &keys)?) {
                Ok(notice) => {
                    println!("valid: {}", notice.summary());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("INVALID: {e}");
                    ExitCode::FAILURE
                }
            })
        }
    }
}

/// Checks a receipt with nothing but the trusted public keys: its signature.
fn verify_receipt_offline(bytes: &[u8], keys: &TrustedKeys) -> ExitCode {
    match crate::audit::receipt::verify(bytes, keys) {
        Ok(receipt) => {
            let hint = if receipt.unsigned_fields().is_empty() {
                ""
            } else {
                " (check it without --key to compare them with the gateway's record)"
            };
            println!("valid: {}; {}{hint}", receipt.summary(), receipt.coverage());
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("INVALID: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Checks a receipt's signature with the configuration's keys, and compares the receipt with
/// the record as the gateway stored it, naming the first field that differs.
fn verify_receipt_online(config: &Config, bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let keys = trusted_keys(config)?;
    let receipt = match PresentedReceipt::parse(bytes) {
        Ok(receipt) => receipt,
        Err(e) => {
            println!("INVALID: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let stored = super::runtime()?.block_on(async {
        let store = crate::gateway::open_store(config, Metrics::new()).await?;
        anyhow::Ok(store.receipt(receipt.record_id.clone()).await?)
    })?;
    let signature = receipt.check_signature(&keys);
    match (receipt.compare(stored.as_ref()), signature) {
        (Ok(()), Ok(())) => {
            let matched = if receipt.unsigned_fields().is_empty() {
                ", and the receipt matches the gateway's record"
            } else {
                "; those fields match the gateway's record"
            };
            println!("valid: {}; {}{matched}", receipt.summary(), receipt.coverage());
            return Ok(ExitCode::SUCCESS);
        }
        (Ok(()), Err(e)) => println!("INVALID: {e}"),
        (Err(d), Err(e)) => println!("INVALID: {d}, and {e}"),
        // A format-2 or -3 signature covers every field, so a stored copy that contradicts it is
        // what changed (for format 3, `audit verify` then finds the tree it no longer makes).
        (Err(d), Ok(())) if receipt.format != Format::V1 => {
            println!("INVALID: {d}, yet the receipt's signature holds: the gateway's own record was changed or lost")
        }
        // Format 1 leaves most fields unsigned: either side may have changed.
        (Err(d), Ok(())) => println!("INVALID: {d}; {}", receipt.coverage()),
    }
    Ok(ExitCode::FAILURE)
}

/// The keys to trust: the files given, or this instance's own key and the configured ones.
fn trusted(config_path: &Path, files: &[PathBuf]) -> anyhow::Result<TrustedKeys> {
    let mut keys = TrustedKeys::default();
    if !files.is_empty() {
        for f in files {
            keys.add_file(f)?;
        }
        return Ok(keys);
    }
    trusted_keys(&load(config_path)?)
}

/// A configuration's trusted keys: this instance's own key (if it has one yet) and the
/// `audit.trusted_keys` files.
pub fn trusted_keys(config: &Config) -> anyhow::Result<TrustedKeys> {
    let mut keys = TrustedKeys::default();
    if config.settings.audit.signing_key_file.exists() {
        let (id, public) = SigningKey::load_or_create(&config.settings.audit.signing_key_file)?.trusted();
        keys.add(id, public);
    }
    for f in &config.settings.audit.trusted_key_files {
        keys.add_file(f)?;
    }
    Ok(keys)
}

fn report(result: Result<Summary, VerifyFailure>) -> ExitCode {
    match result {
        Ok(summary) => {
            println!("OK: {summary}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            println!("FAILED: {failure}");
            ExitCode::FAILURE
        }
    }
}

fn verify_store(config: &Config, keys: TrustedKeys) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async move {
        let store = crate::gateway::open_store(config, Metrics::new()).await?;
        Ok(report(verify_chain(store.as_ref(), &keys).await?))
    })
}

/// Verifies a store's whole chain, from entry 1 to the head, then every signed receipt tree
/// against the receipts stored with its records, with a progress bar on standard error: what
/// `audit verify` does, and what `migrate-store` and `backup` do to their copies.
pub async fn verify_chain(store: &dyn Store, keys: &TrustedKeys) -> Result<Result<Summary, VerifyFailure>, StoreError> {
    let mut head = store.audit_head().await?.map_or(0, |h| h.seq);
    let mut verifier = match ChainVerifier::new(keys, store.checkpoints().await?, Start::Beginning) {
        Ok(v) => v,
        Err(failure) => return Ok(Err(failure)),
    };
    let bar = progress_bar(head as u64, "Verifying", "entries");
    let mut after = 0;
    loop {
        let page = store.audit_entries(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for entry in &page {
            if let Err(failure) = verifier.entry(entry) {
                bar.abandon();
                return Ok(Err(failure));
            }
        }
        // A running gateway keeps appending: the total follows the chain as it grows.
        if after > head {
            head = store.audit_head().await?.map_or(after, |h| h.seq.max(after));
            bar.set_length(head as u64);
        }
        bar.set_position(after as u64);
    }
    bar.finish_and_clear();
    let mut summary = match verifier.finish() {
        Ok(summary) => summary,
        Err(failure) => return Ok(Err(failure)),
    };
    let mut after = 0;
    loop {
        let trees = store.receipt_trees(after, TREES_PAGE).await?;
        let Some(last) = trees.last() else { break };
        after = last.head.first_seq;
        for tree in trees {
            let head = tree.head.clone();
            let receipts = store.tree_receipts(tree).await?;
            if let Err(failure) = check_receipt_tree(&head, &receipts, keys) {
                return Ok(Err(failure));
            }
            summary.receipt_trees += 1;
        }
    }
    Ok(Ok(summary))
}

fn verify_file(file: &Path, keys: TrustedKeys) -> anyhow::Result<ExitCode> {
    let open = || -> anyhow::Result<BufReader<std::fs::File>> {
        Ok(BufReader::new(std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?))
    };
    // First pass: the checkpoints (written after the entries) and the size, for the progress bar.
    let mut checkpoints = Vec::new();
    let mut entries = 0u64;
    for (n, line) in open()?.lines().enumerate() {
        match export::parse_line(&line?) {
            Ok(Line::Checkpoint(c)) => checkpoints.push(c),
            Ok(Line::Entry(_)) => entries += 1,
            Ok(Line::Header) => {}
            Err(e) => {
                println!("FAILED: line {}: {e}", n + 1);
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    // An export may start anywhere; its first entry's link is taken as given.
    let mut verifier = match ChainVerifier::new(&keys, checkpoints, Start::Anywhere) {
        Ok(v) => v,
        Err(failure) => return Ok(report(Err(failure))),
    };
    let bar = progress_bar(entries, "Verifying", "entries");
    for line in open()?.lines() {
        if let Ok(Line::Entry(entry)) = export::parse_line(&line?) {
            if let Err(failure) = verifier.entry(&entry) {
                bar.abandon();
                return Ok(report(Err(failure)));
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(report(verifier.finish()))
}

fn export(config: &Config, from: Option<i64>, to: Option<i64>, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let mut out: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            crate::secrets::create_owner_only(path).with_context(|| format!("cannot write {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    super::runtime()?.block_on(async move {
        let store = crate::gateway::open_store(config, Metrics::new()).await?;
        let head = store.audit_head().await?.map_or(0, |h| h.seq);
        let first = from.unwrap_or(1).max(1);
        let last = to.unwrap_or(head).min(head);
        writeln!(out, "{}", export::header(Some(first), Some(last)))?;
        let bar = progress_bar((last - first + 1).max(0) as u64, "Exporting", "entries");
        let mut after = first - 1;
        let mut written = 0u64;
        while after < last {
            let page = store.audit_entries(after, PAGE).await?;
            let Some(end) = page.last().map(|e| e.seq) else { break };
            for entry in page.iter().filter(|e| e.seq <= last) {
                writeln!(out, "{}", export::entry_json(entry))?;
                written += 1;
            }
            after = end;
            bar.set_position(written);
        }
        for c in store.checkpoints().await?.iter().filter(|c| (first..=last).contains(&c.seq)) {
            writeln!(out, "{}", export::checkpoint_json(c))?;
        }
        out.flush()?;
        bar.finish_and_clear();
        eprintln!("Exported entries {first} to {last} ({written} entries).");
        Ok(ExitCode::SUCCESS)
    })
}
