//! `passerelle check` and `passerelle validate`: every configuration mistake named with its file.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// A copy of the shipped configuration and schemas, to break.
fn shipped() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("config"), &dir.path().join("config"));
    copy_dir(&repo().join("schemas"), &dir.path().join("schemas"));
    let main = dir.path().join("config/passerelle.toml");
    (dir, main)
}

fn check(main: &Path) -> (i32, String) {
    let out = Command::new(binary()).args(["check", "--config", main.to_str().unwrap()]).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The problem lines printed under `file`'s heading.
fn problems_of(output: &str, file: &str) -> String {
    let mut lines = output.lines().skip_while(|l| !l.ends_with(file) || l.starts_with(' '));
    let mut found = String::new();
    lines.next().unwrap_or_else(|| panic!("no heading for {file} in:\n{output}"));
    for l in lines.take_while(|l| l.starts_with(' ')) {
        found.push_str(l);
        found.push('\n');
    }
    found
}

/// Checks `main`, which must be refused with each of `expected` among the problems printed under
/// `file`'s heading; returns the whole output.
fn refused_with(main: &Path, file: &str, expected: &[&str]) -> String {
    let (code, out) = check(main);
    assert_eq!(code, 1, "{out}");
    let found = problems_of(&out, file);
    for expected in expected {
        assert!(found.contains(expected), "missing {expected:?} under {file} in:\n{out}");
    }
    out
}

#[test]
fn the_shipped_configuration_is_clean_once_its_development_pki_exists() {
    let (_dir, main) = shipped();
    // Without certificates, `check` says what is missing and how to get it.
    let (code, out) = check(&main);
    assert_eq!(code, 1);
    assert!(out.contains("run `passerelle dev-pki`"), "{out}");
    let (code, out) = cli(&["dev-pki", "--config", main.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = check(&main);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK (6 partners, 6 agreements, 3 record types)"), "{out}");
}

#[test]
fn every_kind_of_mistake_is_reported_with_its_file() {
    let (dir, main) = shipped();
    let agreements = dir.path().join("config/agreements");
    // An unknown partner in an agreement.
    edit_file(&agreements.join("address-change-on.toml"), "partner = \"ottawa-city\"", "partner = \"gatineau-city\"");
    // valid_until before valid_from.
    edit_file(
        &agreements.join("birth-federal-on.toml"),
        "valid_until = \"2031-01-01T00:00:00Z\"",
        "valid_until = \"2025-01-01T00:00:00Z\"",
    );
    // A field that one accepted version (1.0) cannot produce.
    edit_file(
        &agreements.join("birth-ohip.toml"),
        "\"/registration_number\",",
        "\"/registration_number\",\n  \"/sin_application\",",
    );
    // A recipient in two agreements in force for the same sender and type.
    std::fs::write(
        agreements.join("birth-ottawa-extra.toml"),
        std::fs::read_to_string(repo().join("config/agreements/birth-ottawa.toml"))
            .unwrap()
            .replace("id = \"birth-ottawa\"", "id = \"birth-ottawa-extra\""),
    )
    .unwrap();
    // A duplicate partner id.
    let partners = dir.path().join("config/partners.toml");
    let text = std::fs::read_to_string(&partners).unwrap();
    std::fs::write(&partners, format!("{text}\n[[partner]]\nid = \"ottawa-city\"\nname_en = \"Again\"\nname_fr = \"Encore\"\njurisdiction = \"municipal\"\nregion = \"ON-Ottawa\"\n")).unwrap();
    // A schema that does not compile.
    std::fs::write(
        dir.path().join("schemas/address-change/1.0.json"),
        r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "strin"}"#,
    )
    .unwrap();

    let (code, out) = check(&main);
    assert_eq!(code, 1, "{out}");
    let ottawa = problems_of(&out, "address-change-on.toml");
    assert!(ottawa.contains("recipient `gatineau-city` is not a partner in the partners file"), "{out}");
    let federal = problems_of(&out, "birth-federal-on.toml");
    assert!(
        federal.contains("valid_until (2025-01-01T00:00:00Z) is not after valid_from (2026-01-01T00:00:00Z)"),
        "{out}"
    );
    let ohip = problems_of(&out, "birth-ohip.toml");
    assert!(
        ohip.contains("field `/sin_application` cannot be produced by schema `birth-registration` version 1.0"),
        "{out}"
    );
    assert!(!ohip.contains("version 1.1"), "1.1 has the field: {out}");
    let overlap = problems_of(&out, "birth-ottawa.toml");
    assert!(overlap.contains("recipient `ottawa-city` also appears in agreement `birth-ottawa-extra` for the same sender `on-vital-stats` and type `birth-registration` while both are in force"), "{out}");
    let partners = problems_of(&out, "partners.toml");
    assert!(partners.contains("partner id `ottawa-city` is defined twice"), "{out}");
    let schema = problems_of(&out, "address-change/1.0.json");
    assert!(schema.contains("does not compile"), "{out}");
    assert!(out.contains("fix: "), "fixes are suggested: {out}");
}

#[test]
fn duplicate_agreement_ids_and_unknown_keys_are_reported() {
    let (dir, main) = shipped();
    let agreements = dir.path().join("config/agreements");
    std::fs::copy(agreements.join("birth-ottawa.toml"), agreements.join("birth-ottawa-copy.toml")).unwrap();
    edit_file(&agreements.join("address-change-on.toml"), "mode = \"push\"", "mode = \"push\"\ncolour = \"blue\"");
    let (code, out) = check(&main);
    assert_eq!(code, 1);
    assert!(out.contains("agreement id `birth-ottawa` is already used by"), "{out}");
    let address = problems_of(&out, "address-change-on.toml");
    assert!(address.contains("unknown field `colour`"), "{out}");
}

/// `/v1/records/{x}` is a record when `x` is a UUID and a record type otherwise, so no record
/// type may be named like a UUID.
#[test]
fn a_record_type_named_like_a_record_id_is_refused() {
    let (dir, main) = shipped();
    let uuid_type = dir.path().join("schemas/01900000-0000-7000-8000-000000000000");
    std::fs::create_dir_all(&uuid_type).unwrap();
    std::fs::copy(dir.path().join("schemas/address-change/1.0.json"), uuid_type.join("1.0.json")).unwrap();
    let (code, out) = check(&main);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is named like a record id (a UUID)"), "{out}");
}

#[test]
fn an_unknown_sender_and_a_missing_schema_version_are_reported() {
    let (dir, main) = shipped();
    let agreements = dir.path().join("config/agreements");
    edit_file(&agreements.join("birth-federal-nt.toml"), "sender = \"nt-vital-stats\"", "sender = \"yt-vital-stats\"");
    edit_file(&agreements.join("address-change-on.toml"), "versions = [\"1.0\"]", "versions = [\"1.0\", \"2.0\"]");
    let (code, out) = check(&main);
    assert_eq!(code, 1);
    assert!(problems_of(&out, "birth-federal-nt.toml").contains("sender `yt-vital-stats` is not a partner"), "{out}");
    assert!(
        problems_of(&out, "address-change-on.toml").contains("schema `address-change` version 2.0 does not exist"),
        "{out}"
    );
}

#[test]
fn validate_checks_a_file_from_the_command_line() {
    let run = |args: &[&str]| {
        let out = Command::new(binary()).current_dir(repo()).args(args).output().unwrap();
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = run(&["validate", "birth-registration", "tests/data/records/birth-registration-1.1.json"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("birth-registration 1.1: valid"));
    let (code, out) =
        run(&["validate", "birth-registration", "tests/data/records/birth-registration-1.1-invalid.json", "--fr"]);
    assert_eq!(code, 1);
    let expected = invalid_birth_violations();
    assert!(out.contains(&format!("{} violation(s)", expected.len())), "{out}");
    for (pointer, keyword) in &expected {
        assert!(out.contains(&format!("\n  {pointer} [{keyword}] ")), "{pointer} [{keyword}] is not listed: {out}");
    }
    assert!(out.contains("/parents/0/address/postal_code [pattern] La valeur n'a pas la forme attendue."), "{out}");
    assert!(!out.contains("m6j 2j1"), "values are not echoed");
    let (code, _) = run(&[
        "validate",
        "birth-registration",
        "tests/data/records/birth-registration-1.0.json",
        "--schema-version",
        "1.0",
    ]);
    assert_eq!(code, 0);
}

#[test]
fn a_database_url_asking_for_tls_needs_the_servers_ca() {
    let (_dir, main) = shipped();
    edit_file(
        &main,
        "[store]\n",
        "[store]\nurl = \"postgres://postgres@db.example:5432/passerelle?sslmode=require\"\n",
    );
    let (code, out) = check(&main);
    assert_eq!(code, 1, "{out}");
    let found = problems_of(&out, "passerelle.toml");
    assert!(found.contains("store.url asks for TLS (sslmode=require) but store.ca_file is not set"), "{out}");
    assert!(found.contains("store.ca_file"), "the fix names the setting: {out}");
    edit_file(&main, "[store]\n", "[store]\nca_file = \"no-such-ca.pem\"\n");
    let (code, out) = check(&main);
    assert_eq!(code, 1, "{out}");
    assert!(problems_of(&out, "passerelle.toml").contains("no-such-ca.pem"), "{out}");
    assert!(!out.contains("asks for TLS"), "with a CA the URL's sslmode is satisfied: {out}");
}

/// The store's key-encryption key: one that exists must be readable and a key; a missing file
/// is generated at the first start, and said so; an environment variable must be set.
#[test]
fn a_store_key_that_cannot_be_read_is_refused() {
    let (dir, main) = shipped();
    // The shipped data directory has no key yet: it is generated at the first start.
    assert!(!check(&main).1.contains("store.encryption"));
    let key = dir.path().join("store.key");
    let with_key =
        |line: &str| edit_file(&main, "[delivery]\n", &format!("[store.encryption]\n{line}\n\n[delivery]\n"));
    with_key(&format!("key_file = \"{}\"", key.display()));
    std::fs::write(&key, "not a key").unwrap();
    let (code, out) = check(&main);
    assert_eq!(code, 1, "{out}");
    let found = problems_of(&out, "passerelle.toml");
    assert!(
        found.contains("store.encryption: the store's encryption key")
            && found.contains("is not 64 hexadecimal digits"),
        "{out}"
    );
    assert!(found.contains("openssl rand -hex 32"), "the fix says how to make one: {out}");
    assert!(!found.contains("not a key"), "the file's content is never shown: {out}");
    std::fs::write(&key, "ab".repeat(32)).unwrap();
    assert!(!check(&main).1.contains("store.encryption"), "a good key passes");
    // A previous key that is missing, and a variable that is not set.
    edit_file(
        &main,
        "[store.encryption]\nkey_file",
        "[store.encryption]\nprevious_key_files = [\"missing.key\"]\nkey_file",
    );
    let found = problems_of(&check(&main).1, "passerelle.toml");
    assert!(found.contains("missing.key"), "{found}");
    let text = std::fs::read_to_string(&main).unwrap();
    let start = text.find("\n[store.encryption]").unwrap() + 1;
    let end = text[start..].find("[delivery]").unwrap() + start;
    std::fs::write(
        &main,
        format!("{}[store.encryption]\nkey_env = \"PASSERELLE_NO_SUCH_KEY\"\n\n{}", &text[..start], &text[end..]),
    )
    .unwrap();
    let found = problems_of(&check(&main).1, "passerelle.toml");
    assert!(found.contains("PASSERELLE_NO_SUCH_KEY") && found.contains("is not set"), "{found}");
}

#[test]
fn an_otlp_endpoint_must_be_an_http_url_and_an_https_one_needs_its_ca() {
    let (_dir, main) = shipped();
    let text = std::fs::read_to_string(&main).unwrap();
    for (telemetry, expected) in [
        ("otlp_endpoint = \"collector:4318\"", "is not an http:// or https:// URL"),
        ("otlp_endpoint = \"https://collector.example:4318\"", "telemetry.otlp_ca_file is not set"),
        ("otlp_endpoint = \"https://collector.example:4318\"\notlp_ca_file = \"no-such-ca.pem\"", "no-such-ca.pem"),
        ("otlp_exporter = \"http://x\"", "otlp_exporter"),
    ] {
        std::fs::write(&main, format!("{text}\n[telemetry]\n{telemetry}\n")).unwrap();
        let (code, out) = check(&main);
        assert_eq!(code, 1, "{telemetry}: {out}");
        assert!(problems_of(&out, "passerelle.toml").contains(expected), "{telemetry}: {out}");
    }
    std::fs::write(&main, format!("{text}\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\n")).unwrap();
    let (code, out) = check(&main);
    assert!(!problems_of(&out, "passerelle.toml").contains("telemetry"), "{code}: {out}");
}

#[test]
fn check_prints_each_files_problems_under_it_with_the_fix_then_a_count() {
    let (dir, main) = shipped();
    let (code, out) = cli(&["dev-pki", "--config", main.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let agreements = dir.path().join("config/agreements");
    edit_file(&agreements.join("address-change-on.toml"), "partner = \"ottawa-city\"", "partner = \"gatineau-city\"");
    edit_file(&agreements.join("birth-ottawa.toml"), "partner = \"ottawa-city\"", "partner = \"kanata-city\"");
    edit_file(&agreements.join("birth-ohip.toml"), "mode = \"push\"", "mode = \"push\"\ncolour = \"blue\"");
    // Run from the configuration's directory: files are named relative to it.
    let out = Command::new(binary())
        .current_dir(dir.path())
        .args(["check", "--config", "config/passerelle.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let expected_heading = "config/agreements/address-change-on.toml";
    assert!(out.lines().any(|l| l == expected_heading), "headings are relative paths: {out}");
    let problems = problems_of(&out, "address-change-on.toml");
    assert_eq!(
        problems,
        "  - recipient `gatineau-city` is not a partner in the partners file\n    fix: add the partner or correct the id\n",
        "{out}"
    );
    assert!(problems_of(&out, "birth-ohip.toml").contains("unknown field `colour`"), "{out}");
    // A blank line after each file's problems, and the count last.
    assert_eq!(out.matches("\n\n").count(), 3, "{out}");
    assert_eq!(out.lines().last(), Some("3 problems in 3 files."), "{out}");
}

#[test]
fn a_lease_shorter_than_a_delivery_attempt_is_refused() {
    let (dir, main) = shipped();
    edit_file(&main, "lease_secs = 60", "lease_secs = 5");
    let (code, out) = check(&main);
    assert_eq!(code, 1, "{out}");
    let partners = problems_of(&out, "partners.toml");
    assert!(
        partners.contains(
            "partner `on-health-plan`: its delivery timeout (10000 ms) plus 1 s must be within delivery.lease_secs (5 s)"
        ),
        "{out}"
    );
    assert!(partners.contains("raise delivery.lease_secs"), "the fix is named: {out}");
    drop(dir);
}

#[test]
fn a_commit_linger_past_its_bound_is_refused() {
    let (dir, main) = shipped();
    edit_file(&main, "commit_linger_ms = 0", "commit_linger_ms = 51");
    let (code, out) = check(&main);
    assert_eq!(code, 1, "{out}");
    assert!(problems_of(&out, "passerelle.toml").contains("store.commit_linger_ms must be at most 50"), "{out}");
    edit_file(&main, "commit_linger_ms = 51", "commit_linger_ms = 0");
    let (_, out) = check(&main);
    assert!(!out.contains("commit_linger_ms"), "0 turns the linger off: {out}");
    drop(dir);
}

/// A recipient's delivery mode: push needs an endpoint, pull takes none of push's settings, and a
/// responder the sender waits on must be one the gateway can call.
#[test]
fn delivery_modes_are_checked() {
    let (dir, main) = shipped();
    let partners = main.with_file_name("partners.toml");
    let pulled = "[partner.delivery]\nmode = \"pull\"";
    edit_file(&partners, pulled, &format!("{pulled}\nendpoint = \"http://127.0.0.1:18104/inbox\""));
    edit_file(&partners, "endpoint = \"http://127.0.0.1:18101/inbox\"", "mode = \"pull\"");
    edit_file(&partners, "endpoint = \"http://127.0.0.1:18103/inbox\"", "mode = \"carrier-pigeon\"");
    edit_file(&partners, "endpoint = \"http://127.0.0.1:18102/inbox\"", "timeout_ms = 1000");
    let out = refused_with(
        &main,
        "partners.toml",
        &[
            "partner `ottawa-city`: `endpoint` is for push delivery; a pull recipient takes its records from its mailbox",
            "partner `on-health-plan`: delivery mode `carrier-pigeon` is not one of push, pull",
            "partner `cra-child-benefit`: a push recipient needs a delivery endpoint",
        ],
    );
    let responder = problems_of(&out, "sin-validation-ohip.toml");
    assert!(
        responder.contains("responder `esdc-sin-registry` takes its records from a mailbox (mode = \"pull\")"),
        "{out}"
    );
    drop(dir);
}

/// A batch is for push recipients, bounded in size and wait, and its wait must fit in the lease
/// beside the attempt.
#[test]
fn batch_delivery_settings_are_checked() {
    let (dir, main) = shipped();
    edit_file(&main, "lease_secs = 60", "lease_secs = 20");
    let partners = main.with_file_name("partners.toml");
    let batch = |endpoint: &str, batch: &str| {
        let line = format!("endpoint = \"http://127.0.0.1:{endpoint}/inbox\"");
        edit_file(&partners, &line, &format!("{line}\nbatch = {{ {batch} }}"));
    };
    batch("18101", "max_records = 0, max_wait_ms = 10");
    batch("18102", "max_records = 5, max_wait_ms = 20000");
    batch("18103", "max_records = 5, max_wait_ms = 9500");
    let pulled = "[partner.delivery]\nmode = \"pull\"";
    edit_file(&partners, pulled, &format!("{pulled}\nbatch = {{ max_records = 5, max_wait_ms = 10 }}"));
    refused_with(
        &main,
        "partners.toml",
        &[
            "partner `esdc-sin-registry`: batch.max_records (0) is not from 1 to 1000",
            "partner `cra-child-benefit`: batch.max_wait_ms (20000) is over 10000",
            "partner `on-health-plan`: its batch.max_wait_ms (9500 ms) plus its delivery timeout (10000 ms) plus 1 s must be within delivery.lease_secs (20 s)",
            "partner `ottawa-city`: `batch` is for push delivery; a pull recipient takes its records from its mailbox",
        ],
    );
    drop(dir);
}

/// A batch's bodies are held together and sent in one POST: at their largest they must stay
/// within a bound, so raising the body limit can make a batch that was fine too large.
#[test]
fn a_batch_that_could_outgrow_its_byte_bound_is_refused() {
    let (dir, main) = shipped();
    let partners = main.with_file_name("partners.toml");
    let line = "endpoint = \"http://127.0.0.1:18101/inbox\"";
    edit_file(&partners, line, &format!("{line}\nbatch = {{ max_records = 100, max_wait_ms = 10 }}"));
    let (_, out) = check(&main);
    assert!(!out.contains("could make a batch"), "100 records of up to 1 MiB fit: {out}");
    edit_file(&main, "max_body_bytes = 1048576", "max_body_bytes = 2097152");
    refused_with(
        &main,
        "partners.toml",
        &[
            "partner `esdc-sin-registry`: batch.max_records (100) records of up to limits.max_body_bytes (2097152 bytes) each could make a batch of more than 128 MiB",
        ],
    );
    drop(dir);
}

/// A partners file that cannot be parsed is one problem: the agreements and keys that name its
/// partners are not reported again as naming unknown partners.
#[test]
fn a_broken_partners_file_is_one_problem_not_one_per_reference() {
    let (dir, main) = shipped();
    edit_file(
        &dir.path().join("config/partners.toml"),
        "[[partner]]\nid = \"ottawa-city\"",
        "[[partner]\nid = \"ottawa-city\"",
    );
    let (code, out) = check(&main);
    assert_eq!(code, 1, "{out}");
    assert!(!problems_of(&out, "partners.toml").is_empty(), "the parse error is reported: {out}");
    assert!(!out.contains("is not a partner"), "no follow-on problems: {out}");
    assert!(!out.contains("unknown partner"), "no follow-on problems: {out}");
}

/// The fingerprint the audit trail records when a configuration is loaded covers every byte
/// the configuration was built from, the shared schema definitions and the TLS files included,
/// and nothing else.
#[test]
fn the_fingerprint_covers_every_file_the_configuration_was_built_from() {
    let (dir, main) = shipped();
    let (code, out) = cli(&["dev-pki", "--config", main.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let fingerprint = || passerelle::config::load(&main).unwrap_or_else(|e| panic!("{:?}", e.problems)).fingerprint;
    let first = fingerprint();
    assert_eq!(fingerprint(), first, "the same files give the same fingerprint");

    // A file the configuration does not read changes nothing.
    std::fs::write(dir.path().join("config/agreements/notes.txt"), "not an agreement").unwrap();
    assert_eq!(fingerprint(), first);

    // Every kind of file it is built from changes it: a shared schema definition (referenced by
    // the record schemas, not itself a record schema), the partners file, the partner CA.
    let mut seen = vec![first];
    for file in ["schemas/common/definitions.json", "config/partners.toml", "data/pki/ca.pem"] {
        let path = dir.path().join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.push(b'\n');
        std::fs::write(&path, bytes).unwrap();
        let now = fingerprint();
        assert!(!seen.contains(&now), "changing {file} did not change the fingerprint");
        seen.push(now);
    }
}

/// The City of Ottawa's `[partner.delivery]` in the shipped partners file, to replace.
/// The city as a push recipient (the shipped city pulls; each case below replaces this).
const CITY_DELIVERY: &str = "endpoint = \"http://127.0.0.1:18104/inbox\"\nconcurrency = 4";

/// Every NATS setting is checked, each problem naming the partner, and a password written in
/// the url is not repeated.
#[test]
fn a_nats_recipients_mistakes_are_each_named_with_the_partner() {
    let (dir, main) = shipped();
    let partners = dir.path().join("config/partners.toml");
    let shipped_partners = std::fs::read_to_string(&partners).unwrap().replacen(
        "[partner.delivery]\nmode = \"pull\"",
        &format!("[partner.delivery]\n{CITY_DELIVERY}"),
        1,
    );
    let server = "mode = \"nats\"\nurl = \"nats://127.0.0.1:4222\"";
    let cases = [
        ("mode = \"nats\"\nsubject = \"records.{type}\"".to_owned(), "a nats recipient needs its NATS server's url"),
        (server.to_owned(), "a nats recipient needs the subject its records are published on"),
        (
            "mode = \"nats\"\nurl = \"http://127.0.0.1:4222\"\nsubject = \"records\"".to_owned(),
            "url `http://127.0.0.1:4222` is not a nats:// or tls:// URL",
        ),
        (
            "mode = \"nats\"\nurl = \"nats://city:hunter2@127.0.0.1:4222\"\nsubject = \"records\"".to_owned(),
            "the NATS url carries a user name or password",
        ),
        (
            format!("{server}\nsubject = \"records.{{kind}}\""),
            "subject `records.{kind}` has `{kind}`; the only placeholder is `{type}`",
        ),
        (format!("{server}\nsubject = \"records.>\""), "subject `records.>` has a wildcard"),
        (format!("{server}\nsubject = \"records..{{type}}\""), "has an empty token"),
        (
            format!("{server}\nsubject = \"records\"\nendpoint = \"http://127.0.0.1:18104/inbox\""),
            "`endpoint` is for push delivery; a nats recipient has its records published on its NATS server",
        ),
        (
            format!("{server}\nsubject = \"records\"\nbearer_token_env = \"TOKEN\""),
            "`bearer_token_env` is for push delivery",
        ),
        (
            format!("{CITY_DELIVERY}\nsubject = \"records\""),
            "`subject` is for nats delivery; a push recipient is sent its records at its endpoint",
        ),
        (
            "mode = \"pull\"\nurl = \"nats://127.0.0.1:4222\"".to_owned(),
            "`url` is for nats delivery; a pull recipient takes its records from its mailbox",
        ),
        (
            format!(
                "{server}\nsubject = \"records\"\ncreds_file = \"city.creds\"\nuser_env = \"U\"\npassword_env = \"P\""
            ),
            "set creds_file, or user_env and password_env, not both",
        ),
        (format!("{server}\nsubject = \"records\"\nuser_env = \"U\""), "user_env and password_env go together"),
        (format!("{server}\nsubject = \"records\"\ncreds_file = \"no-such.creds\""), "no-such.creds cannot be read"),
        (
            format!("{server}\nsubject = \"records\"\ncreds_file = \"partners.toml\""),
            "the creds_file is not a NATS credentials file",
        ),
        (
            "mode = \"nats\"\nurl = \"tls://nats.example.ca:4222\"\nsubject = \"records\"".to_owned(),
            "a tls:// NATS server needs a CA to verify it",
        ),
        ("mode = \"kafka\"".to_owned(), "delivery mode `kafka` is not one of push, pull, nats"),
    ];
    for (delivery, expected) in cases {
        std::fs::write(&partners, shipped_partners.replace(CITY_DELIVERY, &delivery)).unwrap();
        let (code, out) = check(&main);
        assert_eq!(code, 1, "{delivery}: {out}");
        let found = problems_of(&out, "partners.toml");
        let named = found.lines().any(|l| l.contains("partner `ottawa-city`: ") && l.contains(expected));
        assert!(named, "{delivery}: {out}");
        assert!(!out.contains("hunter2"), "a password is never repeated: {out}");
    }
}

/// A responder answers while its sender waits: it cannot be a NATS recipient.
#[test]
fn a_nats_recipient_cannot_answer_requests() {
    let (dir, main) = shipped();
    edit_file(
        &dir.path().join("config/partners.toml"),
        "endpoint = \"http://127.0.0.1:18101/inbox\"",
        "mode = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"records.{type}\"",
    );
    let (code, out) = check(&main);
    assert_eq!(code, 1, "{out}");
    assert!(
        problems_of(&out, "sin-validation-ohip.toml")
            .contains("responder `esdc-sin-registry` has its records published on NATS (mode = \"nats\")"),
        "{out}"
    );
}

/// The example of a NATS JetStream recipient in the README checks clean.
#[test]
fn the_nats_example_configuration_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("config/examples/nats"), &dir.path().join("config/examples/nats"));
    copy_dir(&repo().join("schemas"), &dir.path().join("schemas"));
    let main = dir.path().join("config/examples/nats/passerelle.toml");
    let (code, out) = cli(&["dev-pki", "--config", main.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = check(&main);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn completion_notice_mistakes_are_each_named() {
    let (dir, main) = shipped();
    let partners = dir.path().join("config/partners.toml");
    let sender = "cert_names = [\"on-vital-stats\"]   # the demo PKI's client certificate CN";
    // A sender that asks for notices without saying where to push them.
    edit_file(&partners, sender, &format!("{sender}\n[partner.notify]\nbearer_token_env = \"NOTICE_TOKEN\""));
    // A recipient whose notices go the way of its deliveries, given an endpoint of their own.
    edit_file(
        &partners,
        "endpoint = \"http://127.0.0.1:18103/inbox\"",
        "endpoint = \"http://127.0.0.1:18103/inbox\"\n[partner.notify]\nendpoint = \"http://127.0.0.1:1/notices\"",
    );
    // A pull channel for notices with a push key.
    let territory = "rate_limit = { per_second = 50, burst = 100 }";
    edit_file(&partners, territory, &format!("{territory}\n[partner.notify]\nmode = \"pull\"\ntimeout_ms = 5"));
    // A partner that takes the gateway's own id.
    std::fs::write(
        &partners,
        std::fs::read_to_string(&partners).unwrap()
            + "\n[[partner]]\nid = \"passerelle\"\nname_en = \"x\"\nname_fr = \"x\"\njurisdiction = \"federal\"\nregion = \"CA\"\n",
    )
    .unwrap();
    refused_with(
        &main,
        "partners.toml",
        &[
            "partner `on-vital-stats`: [partner.notify] needs an endpoint to push its completion notices to",
            "partner `on-health-plan`: [partner.notify] `endpoint` is not used",
            "partner `nt-vital-stats`: `timeout_ms` is for push and nats delivery",
            "partner id `passerelle` is reserved",
        ],
    );
}

/// A copy of the shipped configuration with `contacts` (`[[partner.contact]]` tables) given to
/// nt-vital-stats; returns it, its main file and its partners file.
fn with_territory_contacts(contacts: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (dir, main) = shipped();
    let partners = main.with_file_name("partners.toml");
    let territory = "rate_limit = { per_second = 50, burst = 100 }";
    edit_file(&partners, territory, &format!("{territory}\n{contacts}"));
    (dir, main, partners)
}

/// A partner's contacts: an address that is not one address, a language other than en or fr,
/// an address listed twice, an empty name, each named by the contact's place in the list and
/// never by its name or address (problems are logged when a reload is refused).
#[test]
fn contact_mistakes_are_each_named_without_the_contact() {
    let contact = |name: &str, email: &str, lang: &str| {
        format!("[[partner.contact]]\nname = \"{name}\"\nemail = \"{email}\"\nlang = \"{lang}\"\n")
    };
    let (_dir, main, _) = with_territory_contacts(
        &[
            contact("Kim Secret-Name", "Kim Secret-Name <kim.secret@nt.example>", "en"),
            contact("Lee", "lee.secret@nt", "fr"),
            contact("Sam", "sam.secret@nt.example", "de"),
            contact("Pat", "pat.secret@nt.example", "en"),
            contact("Pat again", "PAT.SECRET@nt.example", "fr"),
            contact(" ", "blank.secret@nt.example", "en"),
        ]
        .concat(),
    );
    let out = refused_with(
        &main,
        "partners.toml",
        &[
            "partner `nt-vital-stats`: the email of contact 1 is not one address such as name@example.gc.ca",
            "without a display name",
            "partner `nt-vital-stats`: the email of contact 2 is not one address",
            "partner `nt-vital-stats`: contact 3: lang `de` is not one of en, fr",
            "partner `nt-vital-stats`: contacts 4 and 5 have the same email",
            "partner `nt-vital-stats`: contact 6 has an empty name",
        ],
    );
    for private in ["Secret-Name", ".secret@", "@nt.example", "Pat again"] {
        assert!(!out.contains(private), "a contact's name or address is printed ({private}): {out}");
    }
}

/// A `[[partner.contact]]` with a key it does not have, or without one it needs, is a problem
/// of the partners file, as any misspelt key is.
#[test]
fn a_contact_without_an_email_or_with_an_unknown_key_is_refused() {
    let (_dir, main, partners) = with_territory_contacts("[[partner.contact]]\nname = \"Kim\"\nlang = \"en\"\n");
    refused_with(&main, "partners.toml", &["missing field `email`"]);
    edit_file(&partners, "name = \"Kim\"\n", "name = \"Kim\"\nemail = \"kim@nt.example\"\nphone = \"555-0100\"\n");
    refused_with(&main, "partners.toml", &["unknown field `phone`"]);
}
