//! The data directory is its owner's alone: the directory, the SQLite store with its `-wal` and
//! `-shm` files, the audit secrets and the development PKI are created without group or other
//! permissions, whatever the umask.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::*;

/// Every directory and file under `dir` (itself included), with its permission bits.
fn modes(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut found = vec![(dir.to_path_buf(), std::fs::metadata(dir).unwrap().permissions().mode() & 0o777)];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(modes(&path));
        } else {
            found.push((path.clone(), std::fs::metadata(&path).unwrap().permissions().mode() & 0o777));
        }
    }
    found
}

/// Asserts that nothing under `dir` has a group or other bit, and returns the names found.
fn assert_owner_only(dir: &Path) -> Vec<String> {
    let found = modes(dir);
    let open: Vec<String> =
        found.iter().filter(|(_, mode)| mode & 0o077 != 0).map(|(p, m)| format!("{} {m:o}", p.display())).collect();
    assert!(open.is_empty(), "readable by others than the owner: {open:?}");
    for (path, mode) in &found {
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*mode, expected, "{}", path.display());
    }
    found.iter().filter_map(|(p, _)| Some(p.strip_prefix(dir).ok()?.to_str()?.to_owned())).collect()
}

#[tokio::test]
async fn a_fresh_data_directory_and_everything_the_gateway_creates_in_it_are_owner_only() {
    let gateway = Setup::new().start().await;
    let data = gateway.setup.data_dir();
    let r = gateway.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    // While the gateway runs, the store's write-ahead log and shared memory index exist too.
    let names = assert_owner_only(&data);
    for name in
        ["passerelle.sqlite", "passerelle.sqlite-wal", "passerelle.sqlite-shm", "audit-secret", "audit-signing-key"]
    {
        assert!(names.iter().any(|n| n == name), "{name} is not in {names:?}");
    }
    let setup = gateway.stop().await;
    assert_owner_only(&setup.data_dir());
}

#[test]
fn the_development_pki_is_owner_only() {
    let setup = Setup::new();
    setup.write(&Default::default());
    let (code, out) = cli(&["dev-pki", "--config", setup.main_config().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let names = assert_owner_only(&setup.data_dir());
    assert!(names.iter().any(|n| n == "pki/ca-key.pem"), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("pki/clients/") && n.ends_with("-key.pem")), "{names:?}");
}
