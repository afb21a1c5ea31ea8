//! Configuration loading: an agreement file with arbitrary content, checked beside the shipped
//! partners and schemas. Every input must end in a `Config` or a list of problems, never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("passerelle-fuzz-config-{}", std::process::id()));
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::create_dir_all(dir.join("agreements")).unwrap();
        let main = format!(
            "schemas_dir = \"{}\"\npartners_file = \"{}\"\nagreements_dir = \"agreements\"\ndata_dir = \"data\"\n[tls]\ninsecure_plaintext = true\n",
            root.join("schemas").display(),
            root.join("config/partners.toml").display(),
        );
        std::fs::write(dir.join("passerelle.toml"), main).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    std::fs::write(dir.join("agreements").join("fuzzed.toml"), data).unwrap();
    match passerelle::config::load(&dir.join("passerelle.toml")) {
        Ok(config) => assert!(config.built.agreements.iter().all(|a| a.valid_until.is_none_or(|u| u > a.valid_from))),
        Err(e) => assert!(!e.problems.is_empty()),
    }
});
