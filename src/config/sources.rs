//! The files one load reads, each read once with its bytes kept, and the small helpers every
//! part of the loader shares: a problem with its file, paths resolved against the file that
//! names them.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::problem::Problem;

/// Every file one load reads, each read once and its bytes kept, so the fingerprint is computed
/// from exactly the bytes the configuration was built from (a file changed during the load
/// cannot build one version and fingerprint another).
#[derive(Default)]
pub struct Sources {
    read: RefCell<BTreeMap<PathBuf, Vec<u8>>>,
}

impl Sources {
    /// The bytes of `path`: read from disk the first time, the same bytes after.
    pub(super) fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        if let Some(bytes) = self.read.borrow().get(path) {
            return Ok(bytes.clone());
        }
        let bytes = std::fs::read(path)?;
        self.read.borrow_mut().insert(path.to_path_buf(), bytes.clone());
        Ok(bytes)
    }

    /// Reads the TOML file at `path` into `T`, recording a problem on failure.
    pub(super) fn read_toml<T: serde::de::DeserializeOwned>(
        &self,
        path: &Path,
        problems: &mut Vec<Problem>,
    ) -> Option<T> {
        let text = match self.read(path).map(String::from_utf8) {
            Ok(Ok(text)) => text,
            Ok(Err(_)) => {
                problems.push(problem(path, "cannot be read: it is not UTF-8 text", None));
                return None;
            }
            Err(e) => {
                problems.push(problem(path, format!("cannot be read: {e}"), None));
                return None;
            }
        };
        match toml::from_str(&text) {
            Ok(value) => Some(value),
            Err(e) => {
                let message = e.message().to_owned();
                let location = e
                    .span()
                    .map(|span| {
                        let line = text[..span.start.min(text.len())].lines().count().max(1);
                        format!(" (line {line})")
                    })
                    .unwrap_or_default();
                problems.push(problem(path, format!("is not valid: {message}{location}"), None));
                None
            }
        }
    }

    /// SHA-256 (hex) over each file read, by path: its path, a NUL, its bytes, a NUL.
    pub(super) fn fingerprint(&self) -> String {
        let mut all = Vec::new();
        for (path, bytes) in self.read.borrow().iter() {
            all.extend_from_slice(path.to_string_lossy().as_bytes());
            all.push(0);
            all.extend_from_slice(bytes);
            all.push(0);
        }
        crate::digest::to_hex(&crate::digest::sha256(&all))
    }
}

pub(super) fn problem(file: &Path, message: impl Into<String>, fix: Option<&str>) -> Problem {
    Problem { file: file.to_path_buf(), message: message.into(), fix: fix.map(str::to_owned) }
}

/// Resolves `value` (or `default`) against `base`, the directory of the file that names it.
pub(super) fn resolve(base: &Path, value: Option<&str>, default: &str) -> PathBuf {
    let p = Path::new(value.unwrap_or(default));
    normalize(&if p.is_absolute() { p.to_path_buf() } else { base.join(p) })
}

/// Removes `.` and `..` segments without touching the file system, so messages show
/// `/srv/passerelle/schemas/...` rather than `/srv/passerelle/config/../schemas/...`.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

pub(super) fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub(super) fn ms(value: Option<u64>, default: u64) -> Duration {
    Duration::from_millis(value.unwrap_or(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_once_and_fingerprinted_as_it_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("partners.toml");
        std::fs::write(&file, "first").unwrap();
        let files = Sources::default();
        assert_eq!(files.read(&file).unwrap(), b"first");
        let fingerprint = files.fingerprint();
        // Changed on disk during the load: the load goes on with what it read.
        std::fs::write(&file, "second").unwrap();
        assert_eq!(files.read(&file).unwrap(), b"first");
        assert_eq!(files.fingerprint(), fingerprint);

        let mut expected = file.to_string_lossy().as_bytes().to_vec();
        expected.extend_from_slice(b"\0first\0");
        assert_eq!(fingerprint, crate::digest::to_hex(&crate::digest::sha256(&expected)));
        // A file that could not be read is not part of it.
        assert!(files.read(&dir.path().join("missing.toml")).is_err());
        assert_eq!(files.fingerprint(), fingerprint);
    }
}
