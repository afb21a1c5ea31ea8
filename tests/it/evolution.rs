//! Schema evolution across partners: a recipient pinned to a version receives every record in
//! it, translated by the declared translation; a translation whose output breaks the target
//! schema refuses the record at intake (nothing stored); `check` refuses a pinned recipient
//! without its translation, or one that would silently lose a field it may receive; and every
//! shipped translation turns any valid source record, generated from the schemas, into a valid
//! target record.

use std::path::Path;
use std::time::Duration;

use passerelle::schema::SchemaCatalog;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{Map, Value, json};

use crate::support::*;

const OHIP: &str = "on-health-plan";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_recipient_receives_the_version_it_reads_whatever_the_sender_sends() {
    let gw = Setup::new().start().await;
    let catalog = SchemaCatalog::load(&repo().join("schemas")).unwrap();
    let birth = catalog.record_type("birth-registration").unwrap();
    let v10 = birth.version("1.0".parse().unwrap()).unwrap();
    // Sent in 1.1 (with fields 1.0 does not have), then in 1.0.
    let mut r11 = record("birth-registration-1.1.json");
    r11["child"]["time_of_birth"] = json!("06:41:00-04:00");
    let sent = gw.post_as("on-vital-stats", "/v1/records/birth-registration").json(&r11).send().await;
    assert_eq!(sent.status, 202, "{}", sent.text());
    let r10 = record("birth-registration-1.0.json");
    let sent = gw
        .post_as("on-vital-stats", "/v1/records/birth-registration")
        .header("Schema-Version", "1.0")
        .json(&r10)
        .send()
        .await;
    assert_eq!(sent.status, 202, "{}", sent.text());
    let got = gw.recipient(OHIP).wait_for(2, Duration::from_secs(20)).await;
    for delivery in &got {
        assert_eq!(
            delivery.header("passerelle-schema"),
            Some("birth-registration/1.0"),
            "the pinned version, both times"
        );
        // What it receives holds only fields 1.0 defines (the 1.1 time of birth is gone).
        let body = delivery.json();
        assert!(body["child"].get("time_of_birth").is_none());
        for leaf in leaves(&body, String::new()) {
            assert!(v10.can_produce(&leaf.parse().unwrap()), "{leaf} is not a field of 1.0: {body}");
        }
    }
    // Recipients that are not pinned get the version sent.
    let city = gw.recipient("ottawa-city").wait_for(2, Duration::from_secs(20)).await;
    let mut versions: Vec<_> = city.iter().filter_map(|d| d.header("passerelle-schema")).collect();
    versions.sort();
    assert_eq!(versions, ["birth-registration/1.0", "birth-registration/1.1"]);
}

/// The pointers of every scalar of `value` (array indices as keys).
fn leaves(value: &Value, at: String) -> Vec<String> {
    match value {
        Value::Object(fields) => fields.iter().flat_map(|(k, v)| leaves(v, format!("{at}/{k}"))).collect(),
        Value::Array(items) => items.iter().enumerate().flat_map(|(i, v)| leaves(v, format!("{at}/{i}"))).collect(),
        _ => vec![at],
    }
}

/// A copy of the repository's schemas with `translation` as birth-registration 1.1 to 1.0.
fn schemas_with(dir: &Path, translation: &str) -> std::path::PathBuf {
    let schemas = dir.join("schemas");
    copy_dir(&repo().join("schemas"), &schemas);
    std::fs::write(schemas.join("birth-registration/1.1-to-1.0.toml"), translation).unwrap();
    schemas
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_translation_that_breaks_the_target_schema_refuses_the_record_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A translation that writes a value 1.0 does not allow.
    let schemas = schemas_with(dir.path(), "[[constant]]\nto = \"/child/sex_at_birth\"\nvalue = \"Q\"\n");
    let gw = Setup::new().schemas(&schemas).start().await;
    for (lang, words) in [("en", "translation to version 1.0"), ("fr", "traduction vers la version 1.0")] {
        let r = gw
            .post_as("on-vital-stats", "/v1/records/birth-registration")
            .header("Accept-Language", lang)
            .json(&record("birth-registration-1.1.json"))
            .send()
            .await;
        let doc = r.problem(422, "translation-failed");
        assert!(doc["detail"].as_str().unwrap().contains(words), "{doc}");
        assert_eq!(doc["translation"], json!({"recipient": OHIP, "from": "1.1", "to": "1.0"}));
        assert_eq!(doc["violations"][0]["pointer"], "/child/sex_at_birth", "{doc}");
        assert_eq!(doc["violations"][0]["keyword"], "enum", "{doc}");
        assert!(!r.text().contains("\"Q\""), "no value is echoed: {}", r.text());
    }
    gw.assert_nothing_stored_or_delivered().await;
    // A record sent in 1.0 needs no translation and goes through.
    let r = gw
        .post_as("on-vital-stats", "/v1/records/birth-registration")
        .header("Schema-Version", "1.0")
        .json(&record("birth-registration-1.0.json"))
        .send()
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
}

#[test]
fn check_refuses_a_pinned_recipient_without_its_translation_or_losing_a_field_it_may_receive() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    copy_dir(&repo().join("config"), &config);
    let schemas = schemas_with(dir.path(), "");
    let main = config.join("passerelle.toml");
    edit_file(&main, "schemas_dir = \"../schemas\"", &format!("schemas_dir = \"{}\"", schemas.display()));
    edit_file(&main, "[tls]\n", "[tls]\ninsecure_plaintext = true\n");
    let ohip = config.join("agreements/birth-ohip.toml");
    let check = || {
        let out =
            std::process::Command::new(binary()).args(["check", "--config", main.to_str().unwrap()]).output().unwrap();
        (out.status.code().unwrap(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (_, out) = check();
    let ours = |out: &str| out.lines().filter(|l| l.contains("birth-ohip")).map(str::to_owned).collect::<Vec<_>>();
    assert!(ours(&out).is_empty(), "the shipped pin passes: {out}");
    // The whole /child selected: 1.1's time of birth and birth order would be dropped.
    edit_file(&ohip, "  \"/child/given_names\",\n", "  \"/child\",\n");
    let (code, out) = check();
    assert_eq!(code, 1, "{out}");
    let found = ours(&out).join("\n");
    assert!(
        found.contains("agreement `birth-ohip`, recipient `on-health-plan` (pinned to 1.0): the translation from 1.1 drops `/child/time_of_birth`"),
        "{out}"
    );
    assert!(found.contains("`/child/multiple_birth_order`"), "{out}");
    assert!(out.contains("accept_loss = [\"/child/time_of_birth\"]"), "the fix: {out}");
    // Accepting the loss, knowingly, passes.
    edit_file(
        &ohip,
        "version = \"1.0\"\n",
        "version = \"1.0\"\naccept_loss = [\"/child/time_of_birth\", \"/child/multiple_birth_order\"]\n",
    );
    assert!(ours(&check().1).is_empty(), "{}", check().1);
    // No translation at all.
    std::fs::remove_file(schemas.join("birth-registration/1.1-to-1.0.toml")).unwrap();
    let out = check().1;
    assert!(out.contains("records sent in 1.1 have no translation to 1.0"), "{out}");
    assert!(out.contains("add schemas/birth-registration/1.1-to-1.0.toml"), "{out}");
    // A rule naming a field the version does not have is refused with its file.
    std::fs::write(
        schemas.join("birth-registration/1.1-to-1.0.toml"),
        "[[map]]\nfrom = \"/child/nickname\"\nto = \"/child/surname\"\n",
    )
    .unwrap();
    let out = check().1;
    assert!(
        out.contains("1.1-to-1.0.toml") && out.contains("`/child/nickname` is not a field of version 1.1"),
        "{out}"
    );
}

/// A value valid under `schema` (dereferenced): the keywords the shipped schemas use.
fn instance(schema: &Value) -> BoxedStrategy<Value> {
    if let Some(Value::Array(values)) = schema.get("enum") {
        return proptest::sample::select(values.clone()).boxed();
    }
    if let Some(value) = schema.get("const") {
        return Just(value.clone()).boxed();
    }
    let int = |key: &str, default: i64| schema.get(key).and_then(Value::as_i64).unwrap_or(default);
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map_or(Vec::new(), |r| r.iter().filter_map(Value::as_str).collect());
            let mut fields: Vec<BoxedStrategy<Option<(String, Value)>>> = Vec::new();
            for (name, sub) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
                let is_required = required.contains(&name.as_str());
                let name = name.clone();
                let value = instance(sub).prop_map(move |v| (name.clone(), v));
                fields.push(if is_required {
                    value.prop_map(Some).boxed()
                } else {
                    proptest::option::of(value).boxed()
                });
            }
            fields.prop_map(|fields| Value::Object(fields.into_iter().flatten().collect::<Map<_, _>>())).boxed()
        }
        Some("array") => {
            let items = schema.get("items").map_or_else(|| Just(Value::Null).boxed(), instance);
            let (min, max) = (int("minItems", 0) as usize, int("maxItems", 3).min(3) as usize);
            proptest::collection::vec(items, min..=max.max(min)).prop_map(Value::Array).boxed()
        }
        Some("integer") => (int("minimum", 0)..=int("maximum", 1000)).prop_map(Value::from).boxed(),
        Some("boolean") => any::<bool>().prop_map(Value::Bool).boxed(),
        Some("string") => {
            let (min, max) = (int("minLength", 1) as usize, int("maxLength", 24).min(24) as usize);
            match (schema.get("format").and_then(Value::as_str), schema.get("pattern").and_then(Value::as_str)) {
                (Some("date"), _) => (1900..2100u32, 1..=12u32, 1..=28u32)
                    .prop_map(|(y, m, d)| Value::from(format!("{y:04}-{m:02}-{d:02}")))
                    .boxed(),
                (Some("time"), _) => (0..24u32, 0..60u32, 0..60u32)
                    .prop_map(|(h, m, s)| Value::from(format!("{h:02}:{m:02}:{s:02}-04:00")))
                    .boxed(),
                (Some("date-time"), _) => (1900..2100u32, 1..=12u32, 1..=28u32, 0..24u32)
                    .prop_map(|(y, m, d, h)| Value::from(format!("{y:04}-{m:02}-{d:02}T{h:02}:00:00Z")))
                    .boxed(),
                (_, Some(pattern)) => {
                    let pattern = pattern.trim_start_matches('^').trim_end_matches('$');
                    proptest::string::string_regex(pattern).unwrap().prop_map(Value::from).boxed()
                }
                _ => proptest::string::string_regex(&format!("[a-zA-Zéè' -]{{{min},{}}}", max.max(min)))
                    .unwrap()
                    .prop_map(Value::from)
                    .boxed(),
            }
        }
        _ => Just(Value::Null).boxed(),
    }
}

#[test]
fn every_shipped_translation_turns_a_valid_source_record_into_a_valid_target_record() {
    let catalog = SchemaCatalog::load(&repo().join("schemas")).unwrap();
    let mut checked = 0;
    for (record_type, translation) in catalog.translations() {
        let t = catalog.record_type(record_type).unwrap();
        let (source, target) = (t.version(translation.from).unwrap(), t.version(translation.to).unwrap());
        let mut runner =
            TestRunner::new(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() });
        let valid = std::cell::Cell::new(0);
        runner
            .run(&instance(source.dereferenced()), |record| {
                // The generator covers the keywords the schemas use; a rare miss is skipped.
                prop_assume!(source.validate(&record).is_empty());
                valid.set(valid.get() + 1);
                let out = translation.apply(&record).expect("translated");
                let violations = target.validate(&out);
                prop_assert!(
                    violations.is_empty(),
                    "{record_type} {} → {}: {violations:?}",
                    translation.from,
                    translation.to
                );
                Ok(())
            })
            .unwrap();
        let valid = valid.get();
        assert!(valid >= 100, "the generator made {valid} valid {record_type} {} records of 200", translation.from);
        checked += 1;
    }
    assert!(checked >= 2, "the shipped translations were found");
}
