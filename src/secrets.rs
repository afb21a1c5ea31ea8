//! Secret files in the data directory: created owner-only, read back, never logged.

use std::io::Write;
use std::path::Path;

/// Reads the hex secret at `path`, or creates one of `len` random bytes (mode 0600).
pub fn load_or_create(path: &Path, len: usize) -> std::io::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) => crate::digest::decode_hex(text.trim()).filter(|b| b.len() == len).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} does not hold a {len}-byte hex secret", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = vec![0u8; len];
            crate::random::fill(&mut bytes);
            write_private(path, crate::digest::to_hex(&bytes).as_bytes())?;
            Ok(bytes)
        }
        Err(e) => Err(e),
    }
}

/// Writes `contents` to `path` readable and writable by the owner only, creating parents.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Creates (or truncates) the file at `path` for writing, readable and writable by the owner only
/// when it is new: for exports of the audit trail, which an operator hands on deliberately.
pub fn create_owner_only(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Creates an empty file at `path`, readable and writable by the owner only, unless a file is
/// already there. The SQLite store is created this way before SQLite opens it: SQLite gives the
/// `-wal` and `-shm` files it makes beside a database the database file's own mode, whatever the
/// umask, so the whole store stays owner-only.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `dir` (and parents) readable by the owner only when it does not exist.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Warns about each of `files` (private keys, key hashes, tokens, audit secrets, the SQLite store:
/// the configuration lists them) that others than its owner may read. The warning names the
/// file, never its content.
pub fn warn_if_readable_by_others(files: &[std::path::PathBuf]) {
    for file in files {
        if let Some(mode) = permissions(file)
            && mode & 0o077 != 0
        {
            tracing::warn!(message = "A secret file is readable by others than its owner; chmod 600 it.", file = %file.display(), mode = format!("{mode:o}"));
        }
    }
}

#[cfg(unix)]
fn permissions(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn permissions(_: &Path) -> Option<u32> {
    None
}
