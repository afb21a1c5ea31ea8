//! Secret files in the data directory: created owner-only, read back, never logged.

use std::io::Write;
use std::path::Path;

/// Reads the hex secret at `path`, or creates one of `len` random bytes (mode 0600).
pub fn load_or_create(path: &Path, len: usize) -> std::io::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(text) => crate::auth::decode_hex(text.trim()).filter(|b| b.len() == len).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} does not hold a {len}-byte hex secret", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = vec![0u8; len];
            crate::fill_random(&mut bytes);
            write_private(path, crate::auth::to_hex(&bytes).as_bytes())?;
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
