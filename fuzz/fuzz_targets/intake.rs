//! Record intake as a partner drives it: strict parsing (duplicate keys, depth), validation
//! against birth-registration 1.1, projection for the four birth-bundle recipients, canonical
//! serialisation. Nothing a body holds may panic, recurse without bound or leak a value into an
//! error.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use passerelle::config::Config;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        // The shipped agreements and schemas, on a plaintext listener (no certificates needed).
        let dir = std::env::temp_dir().join(format!("passerelle-fuzz-intake-{}", std::process::id()));
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::create_dir_all(&dir).unwrap();
        let main = format!(
            "schemas_dir = \"{}\"\npartners_file = \"{}\"\nagreements_dir = \"{}\"\ndata_dir = \"{}\"\n[tls]\ninsecure_plaintext = true\n",
            root.join("schemas").display(),
            root.join("config/partners.toml").display(),
            root.join("config/agreements").display(),
            dir.join("data").display()
        );
        std::fs::write(dir.join("passerelle.toml"), main).unwrap();
        passerelle::config::load(&dir.join("passerelle.toml")).unwrap_or_else(|e| panic!("{:?}", e.problems))
    })
}

fuzz_target!(|body: &[u8]| {
    let config = config();
    let schema = config.built.catalog.record_type("birth-registration").and_then(|t| t.version("1.1".parse().unwrap())).unwrap();
    let strict = passerelle::json::parse_strict(body, config.settings.limits.max_depth);
    let Ok(checked) = schema.check_body(body, config.settings.limits.max_depth) else {
        // Reading numbers as written refuses nothing the strict parser takes.
        assert!(strict.is_err());
        return;
    };
    let violations = &checked.violations;
    assert!(violations.listed().len() <= passerelle::schema::LISTED_VIOLATIONS);
    assert!(violations.listed().len() <= violations.total());
    for violation in violations.listed() {
        assert!(!violation.pointer.is_empty() || violation.keyword != "required");
        let message = passerelle::http::i18n::violation_message(violation, passerelle::http::i18n::Lang::Fr);
        assert!(!message.is_empty());
    }
    let value = &checked.value;
    for agreement in config.agreements_for("on-vital-stats", "birth-registration") {
        for recipient in &agreement.recipients {
            let projected = recipient.fields.project(value);
            let bytes = passerelle::json::to_canonical_vec(&projected);
            // The canonical form parses back to the projection, and an accepted record's
            // numbers are sent as the partner wrote them.
            let mut inexact = 0;
            let again = passerelle::json::parse_exact(&bytes, 128, |_, _| inexact += 1).expect("canonical output is JSON");
            assert_eq!(again, projected);
            assert!(inexact == 0 || !violations.is_empty());
        }
    }
});
