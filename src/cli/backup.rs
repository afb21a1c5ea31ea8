//! `passerelle backup DEST`: a consistent copy of the SQLite store, taken while the gateway runs,
//! and proof that the copy's audit chain holds.
//!
//! SQLite's online backup API copies the store page by page. The source connection holds one
//! read transaction for the whole copy, so every step reads the same snapshot: the copy is the
//! store as it was at one instant, and the gateway goes on committing meanwhile (in WAL mode a
//! reader never blocks the writer; the write-ahead log only grows until the copy ends). Without
//! that transaction SQLite would restart the copy after every commit of the gateway, and a busy
//! gateway would keep it from ever finishing.
//!
//! The copy is written to a temporary file beside DEST, created owner-only, made one
//! self-contained file (rollback-journal mode, so no `-wal` file belongs to it), checked with
//! `PRAGMA quick_check`, synced to disk and renamed into place, so DEST is either absent or
//! whole. Its audit chain is then verified with the code `audit verify` runs, reading the copy
//! without changing it.
//!
//! **Invariant:** no secret is copied. The audit signing key, the body-digest secret, the subject
//! key and the store's key-encryption key stay where they are; the command names them so the
//! operator backs them up apart (README, "Backup and restore").

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::config::Config;
use crate::store::sqlite::SqliteStore;

/// Pages copied per step by default (4 MiB with SQLite's default page size): small enough for
/// the progress bar to move, large enough that the steps cost nothing.
pub const PAGES_PER_STEP: i32 = 1024;

/// How long to wait before retrying a step that found the source or the copy locked.
const RETRY_AFTER: Duration = Duration::from_millis(50);

/// How long the copy waits on a lock held by the gateway (its writer switching the log).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(config_path: &Path, dest: &Path, force: bool, pages_per_step: i32) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    anyhow::ensure!(
        config.settings.store.postgres.is_none(),
        "the store is PostgreSQL: back it up with pg_dump (`passerelle backup` copies a SQLite store)"
    );
    let source = &config.settings.store.sqlite_path;
    anyhow::ensure!(source.is_file(), "there is no SQLite store at {}: nothing to back up", source.display());
    check_destination(source, dest, force)?;

    let partial = PartialCopy::create(dest)?;
    let head = copy(source, &partial.path, pages_per_step)?;
    let size = std::fs::metadata(&partial.path)?.len();
    partial.publish(dest)?;
    println!(
        "Backed up {} to {} ({:.1} MiB, audit chain up to entry {head}).",
        source.display(),
        dest.display(),
        size as f64 / (1024.0 * 1024.0)
    );

    let keys = super::audit::trusted_keys(&config)?;
    let verified = super::runtime()?.block_on(async {
        let copy = SqliteStore::open_read_only(dest)?;
        super::audit::verify_chain(&copy, &keys).await
    })?;
    let code = match verified {
        Ok(summary) => {
            println!("OK: the copy's audit chain verifies: {summary}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            println!("FAILED: the copy's audit chain does not verify: {failure}");
            println!(
                "The copy is kept as the store was; check the store itself with `passerelle audit verify --config {}`.",
                config_path.display()
            );
            ExitCode::FAILURE
        }
    };
    print_secrets_not_copied(&config);
    Ok(code)
}

/// Refuses a destination that exists (unless `force`), that is a directory, or that is the store.
fn check_destination(source: &Path, dest: &Path, force: bool) -> anyhow::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(dest) else { return Ok(()) };
    anyhow::ensure!(!meta.is_dir(), "{} is a directory: name the file to write", dest.display());
    anyhow::ensure!(force, "{} exists: choose another name, or pass --force to replace it", dest.display());
    // Renaming over the live store would leave the gateway writing to a deleted file.
    let store_files = ["", "-wal", "-shm", "-journal"].map(|suffix| {
        let mut name = source.as_os_str().to_owned();
        name.push(suffix);
        std::fs::canonicalize(PathBuf::from(name)).ok()
    });
    let dest = std::fs::canonicalize(dest)?;
    anyhow::ensure!(
        !store_files.contains(&Some(dest.clone())),
        "{} is the store itself: write the backup elsewhere",
        dest.display()
    );
    Ok(())
}

/// Copies the store at `source` into the empty file at `target` with the online backup API, and
/// leaves `target` a checked, self-contained database. Returns the audit head of the copy.
fn copy(source: &Path, target: &Path, pages_per_step: i32) -> anyhow::Result<i64> {
    // Read-write, not read-only: a store left by a killed gateway may need its log recovered, and
    // only a connection that may write can do that. It never creates the file, and only reads.
    let from = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_context(|| format!("cannot open {}", source.display()))?;
    from.busy_timeout(BUSY_TIMEOUT)?;
    // The snapshot: every step of the copy reads inside this one read transaction.
    from.execute_batch("BEGIN DEFERRED")?;
    let head: i64 = from
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM audit_log", [], |r| r.get(0))
        .with_context(|| format!("{} is not a Passerelle store", source.display()))?;

    let mut to =
        Connection::open_with_flags(target, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_context(|| format!("cannot open {}", target.display()))?;
    to.busy_timeout(BUSY_TIMEOUT)?;
    {
        let backup = Backup::new(&from, &mut to)?;
        let mut bar: Option<indicatif::ProgressBar> = None;
        loop {
            let step = backup.step(pages_per_step).with_context(|| format!("cannot copy {}", source.display()))?;
            let progress = backup.progress();
            let bar = bar.get_or_insert_with(|| super::progress_bar(progress.pagecount as u64, "Copying", "pages"));
            bar.set_position((progress.pagecount - progress.remaining) as u64);
            match step {
                StepResult::Done => {
                    bar.finish_and_clear();
                    break;
                }
                StepResult::More => {}
                // Transient: another connection holds a lock for a moment.
                _ => std::thread::sleep(RETRY_AFTER),
            }
        }
    }
    from.execute_batch("COMMIT")?;
    drop(from);

    // The pages carry the store's WAL mode; a backup is one file, with no log beside it.
    let mode: String = to.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("delete"), "the copy stayed in {mode} mode");
    let check: String = to.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    anyhow::ensure!(check == "ok", "the copy is damaged: {check}");
    to.close().map_err(|(_, e)| e)?;
    std::fs::File::open(target)?.sync_all()?;
    Ok(head)
}

/// Names the secret files of the data directory that the backup leaves out.
fn print_secrets_not_copied(config: &Config) {
    let store_key = match &config.settings.store.encryption {
        Some(crate::store::keys::EncryptionSettings { key: crate::store::keys::KekSource::File(f), .. }) => {
            Some(f.clone())
        }
        _ => None,
    };
    let secrets: Vec<PathBuf> = [
        config.settings.audit.signing_key_file.clone(),
        config.settings.data_dir.join(crate::audit::digest::SECRET_FILE),
        config.settings.audit.subject_key_file.clone(),
    ]
    .into_iter()
    .chain(store_key)
    .filter(|f| f.exists())
    .collect();
    if secrets.is_empty() {
        return;
    }
    let names: Vec<String> = secrets.iter().map(|f| f.display().to_string()).collect();
    println!(
        "Secrets not copied (back them up apart, as the README's \"Backup and restore\" says): {}",
        names.join(", ")
    );
}

/// The temporary file beside DEST that the copy is written to. Dropped before it is published
/// (the copy failed), it is removed with any journal SQLite left beside it.
struct PartialCopy {
    path: PathBuf,
    published: bool,
}

impl PartialCopy {
    /// Creates `.NAME.RANDOM.partial` in DEST's directory, owner-only. SQLite gives the journal
    /// files it makes beside it the same mode.
    fn create(dest: &Path) -> anyhow::Result<Self> {
        let name = dest.file_name().with_context(|| format!("{} does not name a file", dest.display()))?;
        let dir = match dest.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let random = crate::digest::to_hex(&crate::random::bytes::<6>());
        let path = dir.join(format!(".{}.{random}.partial", name.to_string_lossy()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options.open(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(PartialCopy { path, published: false })
    }

    /// Renames the finished copy to `dest` and makes the rename durable.
    fn publish(mut self, dest: &Path) -> anyhow::Result<()> {
        std::fs::rename(&self.path, dest)
            .with_context(|| format!("cannot rename {} to {}", self.path.display(), dest.display()))?;
        self.published = true;
        #[cfg(unix)]
        if let Some(dir) = self.path.parent() {
            // The rename is durable once the directory is synced.
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl Drop for PartialCopy {
    fn drop(&mut self) {
        if self.published {
            return;
        }
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let mut name = self.path.as_os_str().to_owned();
            name.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(name));
        }
    }
}
