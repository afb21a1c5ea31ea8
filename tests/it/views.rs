//! Views: the JSON Schema of exactly what a recipient receives. Every projection of a valid
//! record is valid under its view, a projection missing a required field or holding another is
//! not, the view is served to its recipient alone in the versions it receives, every body
//! delivered (pushed or taken from the mailbox) is valid under the view its recipient reads, and
//! the recipient's OpenAPI document gives the views as the bodies it is sent.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use http::{Method, StatusCode};
use passerelle::config::Config;
use passerelle::policy::{Agreement, AgreementRecipient};
use passerelle::schema::Version;
use serde_json::{Value, json};

use crate::support::*;

/// The shipped configuration, loaded without starting a gateway.
fn shipped() -> (Setup, Config) {
    let setup = Setup::new();
    setup.write(&HashMap::new());
    let config = passerelle::config::load(&setup.main_config()).unwrap_or_else(|e| panic!("{:?}", e.problems));
    (setup, config)
}

fn compile(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("{e}: {schema}"))
}

/// One view of the configuration: the agreement, its recipient, the version, the view.
struct Case<'c> {
    agreement: &'c Agreement,
    recipient: &'c AgreementRecipient,
    version: Version,
    view: Value,
}

impl Case<'_> {
    fn name(&self) -> String {
        format!("{} {} for {}", self.agreement.id, self.version, self.recipient.partner)
    }
}

/// Every view of `config`: each recipient of each agreement, in each version it receives.
fn cases(config: &Config) -> Vec<Case<'_>> {
    let mut out = Vec::new();
    for agreement in &config.built.agreements {
        for recipient in &agreement.recipients {
            for version in recipient.versions_received(&agreement.versions) {
                let view = agreement.view(&config.built.catalog, recipient, version).expect("a view");
                out.push(Case { agreement, recipient, version, view });
            }
        }
    }
    out
}

/// The sample records of `tests/data/records` (not the invalid one, its expected violations or
/// the response).
fn samples() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo().join("tests/data/records")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.contains("invalid") || name.contains(".response.") {
            continue;
        }
        out.push((name.clone(), record(&name)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// One step into a JSON document.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every path to a member or an element of `value`.
fn paths(value: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    let children: Vec<(Step, &Value)> = match value {
        Value::Object(map) => map.iter().map(|(k, v)| (Step::Key(k.clone()), v)).collect(),
        Value::Array(items) => items.iter().enumerate().map(|(i, v)| (Step::Index(i), v)).collect(),
        _ => Vec::new(),
    };
    for (step, child) in children {
        prefix.push(step);
        out.push(prefix.clone());
        paths(child, prefix, out);
        prefix.pop();
    }
}

/// `value` without the member or element at `path` (unchanged if there is none).
fn without(value: &Value, path: &[Step]) -> Value {
    let mut out = value.clone();
    let Some((last, parent)) = path.split_last() else { return out };
    let mut at = &mut out;
    for step in parent {
        let next = match (step, at) {
            (Step::Key(k), Value::Object(map)) => map.get_mut(k),
            (Step::Index(i), Value::Array(items)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(next) => at = next,
            None => return value.clone(),
        }
    }
    match (last, at) {
        (Step::Key(k), Value::Object(map)) => {
            map.remove(k);
        }
        (Step::Index(i), Value::Array(items)) if *i < items.len() => {
            items.remove(*i);
        }
        _ => {}
    }
    out
}

/// `record` and records like it, all valid under `source`: without each one member or element,
/// without each pair, and without everything that can go (one member at a time, while it stays
/// valid).
fn variants(record: &Value, source: &jsonschema::Validator) -> Vec<Value> {
    let mut all = Vec::new();
    paths(record, &mut Vec::new(), &mut all);
    let mut out = vec![record.clone()];
    for (i, first) in all.iter().enumerate() {
        let one = without(record, first);
        if !source.is_valid(&one) {
            continue;
        }
        out.push(one.clone());
        for second in &all[i + 1..] {
            let two = without(&one, second);
            if two != one && source.is_valid(&two) {
                out.push(two);
            }
        }
    }
    // The least of it that is still valid.
    let mut least = record.clone();
    loop {
        let mut here = Vec::new();
        paths(&least, &mut Vec::new(), &mut here);
        let Some(smaller) = here.iter().rev().map(|p| without(&least, p)).find(|v| source.is_valid(v)) else { break };
        least = smaller;
    }
    out.push(least);
    out
}

#[test]
fn every_projection_of_a_valid_record_is_valid_under_its_view() {
    let (_setup, config) = shipped();
    let catalog = &config.built.catalog;
    let mut checked: BTreeMap<String, usize> = BTreeMap::new();
    let cases = cases(&config);
    assert!(cases.len() >= 10, "{} views", cases.len());
    // Records of each type and version, with variants, generated once.
    let mut records: BTreeMap<(String, Version), Vec<Value>> = BTreeMap::new();
    for case in &cases {
        let key = (case.agreement.record_type.to_string(), case.version);
        if records.contains_key(&key) {
            continue;
        }
        let schema = catalog.record_type(&key.0).unwrap().version(case.version).unwrap();
        let source = compile(schema.dereferenced());
        let mut all = Vec::new();
        for (_, sample) in samples() {
            if source.is_valid(&sample) {
                all.extend(variants(&sample, &source));
            }
        }
        records.insert(key, all);
    }
    for case in &cases {
        let view = compile(&case.view);
        let key = (case.agreement.record_type.to_string(), case.version);
        for record in &records[&key] {
            let projected = case.recipient.fields.project(record);
            let errors: Vec<String> =
                view.iter_errors(&projected).map(|e| format!("{e} at {}", e.instance_path())).collect();
            assert!(errors.is_empty(), "{}: {errors:?}\n{projected}\nof {record}", case.name());
            *checked.entry(case.name()).or_default() += 1;
        }
    }
    // Every view was held to several records, and all of them to several hundred (about 900
    // with the shipped agreements, the health plan pinned to 1.0).
    for case in &cases {
        let n = checked.get(&case.name()).copied().unwrap_or(0);
        assert!(n >= 5, "{}: {n} records", case.name());
    }
    assert!(checked.values().sum::<usize>() > 800, "{checked:?}");
}

/// Every field `schema` (dereferenced) defines, the objects and arrays on the way included:
/// properties by name, array items as `*`.
fn fields_of(schema: &Value, prefix: &str, out: &mut Vec<String>) {
    for (name, sub) in schema["properties"].as_object().into_iter().flatten() {
        let field = format!("{prefix}/{name}");
        out.push(field.clone());
        fields_of(sub, &field, out);
    }
    if schema["items"].is_object() {
        let field = format!("{prefix}/*");
        out.push(field.clone());
        fields_of(&schema["items"], &field, out);
    }
}

/// Each shipped record type and version: its fields, its schema (compiled) and records valid
/// under it (the samples and their variants).
struct Subject {
    name: String,
    schema: Value,
    fields: Vec<String>,
    records: Vec<Value>,
}

static SUBJECTS: std::sync::LazyLock<Vec<Subject>> = std::sync::LazyLock::new(|| {
    let catalog = passerelle::schema::SchemaCatalog::load(&repo().join("schemas")).unwrap();
    let mut out = Vec::new();
    for t in catalog.types() {
        for (version, schema) in &t.versions {
            let source = compile(schema.dereferenced());
            let mut records = Vec::new();
            for (_, sample) in samples() {
                if source.is_valid(&sample) {
                    records.extend(variants(&sample, &source));
                }
            }
            let mut fields = Vec::new();
            fields_of(schema.dereferenced(), "", &mut fields);
            let name = format!("{} {version}", t.name);
            out.push(Subject { name, schema: schema.dereferenced().clone(), fields, records });
        }
    }
    out
});

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    /// Whatever fields an agreement selects (some by index rather than `*`), every projection
    /// of every valid record is valid under the view.
    #[test]
    fn any_field_list_has_a_view_every_projection_fits(
        subject in 0..4usize,
        picks in proptest::collection::vec(0..4u8, 64),
    ) {
        let subject = &SUBJECTS[subject % SUBJECTS.len()];
        // 0: left out; 1: selected; 2 and 3: selected with its `*`s as index 0 or 1.
        let mut chosen: Vec<passerelle::pointer::FieldPointer> = subject
            .fields
            .iter()
            .zip(&picks)
            .filter(|(_, pick)| **pick > 0)
            .map(|(field, pick)| match pick {
                2 => field.replace("/*", "/0"),
                3 => field.replace("/*", "/1"),
                _ => field.clone(),
            })
            .map(|field| field.parse().unwrap())
            .collect();
        if chosen.is_empty() {
            chosen.push(subject.fields[0].parse().unwrap());
        }
        let list = passerelle::policy::FieldList::new(chosen.clone());
        let view = passerelle::schema::view::view(&subject.schema, &chosen, "T", "D");
        let check = compile(&view);
        proptest::prop_assert!(subject.records.len() >= 5, "{}", subject.name);
        for record in &subject.records {
            let projected = list.project(record);
            let errors: Vec<String> = check.iter_errors(&projected).map(|e| format!("{e} at {}", e.instance_path())).collect();
            proptest::prop_assert!(errors.is_empty(), "{} {:?}: {:?}\n{}", subject.name, chosen, errors, projected);
        }
    }
}

/// The paths of the members of `value` that `view` requires, where `value` has them.
fn required_members(view: &Value, value: &Value, path: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match value {
        Value::Object(map) => {
            for key in view["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                if map.contains_key(key) {
                    path.push(Step::Key(key.to_owned()));
                    out.push(path.clone());
                    path.pop();
                }
            }
            for (key, member) in map {
                if let Some(sub) = view["properties"].get(key) {
                    path.push(Step::Key(key.clone()));
                    required_members(sub, member, path, out);
                    path.pop();
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = view.get("items") {
                for (i, item) in items.iter().enumerate() {
                    path.push(Step::Index(i));
                    required_members(sub, item, path, out);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

/// `value` with a member `unselected` added to the object at `path`.
fn with_extra(value: &Value, path: &[Step]) -> Value {
    let mut out = value.clone();
    let mut at = &mut out;
    for step in path {
        at = match (step, at) {
            (Step::Key(k), Value::Object(map)) => map.get_mut(k).unwrap(),
            (Step::Index(i), Value::Array(items)) => &mut items[*i],
            _ => unreachable!(),
        };
    }
    at.as_object_mut().unwrap().insert("unselected".to_owned(), json!("x"));
    out
}

#[test]
fn a_body_missing_a_required_selected_field_or_holding_another_is_invalid_under_its_view() {
    let (_setup, config) = shipped();
    let catalog = &config.built.catalog;
    let mut refused = 0;
    for case in cases(&config) {
        let view = compile(&case.view);
        let schema = catalog.record_type(&case.agreement.record_type).unwrap().version(case.version).unwrap();
        let source = compile(schema.dereferenced());
        for (name, sample) in samples().into_iter().filter(|(_, s)| source.is_valid(s)) {
            let projected = case.recipient.fields.project(&sample);
            assert!(view.is_valid(&projected), "{}: {name}", case.name());
            let mut required = Vec::new();
            required_members(&case.view, &projected, &mut Vec::new(), &mut required);
            for path in &required {
                assert!(!view.is_valid(&without(&projected, path)), "{}: {name} without {path:?}", case.name());
                refused += 1;
            }
            // Nothing outside the field list, at any level.
            let mut objects = vec![Vec::new()];
            let mut all = Vec::new();
            paths(&projected, &mut Vec::new(), &mut all);
            objects.extend(all.into_iter().filter(|p| {
                let mut at = &projected;
                for step in p {
                    at = match step {
                        Step::Key(k) => &at[k.as_str()],
                        Step::Index(i) => &at[*i],
                    };
                }
                at.is_object()
            }));
            for path in objects {
                assert!(
                    !view.is_valid(&with_extra(&projected, &path)),
                    "{}: {name} with more at {path:?}",
                    case.name()
                );
            }
        }
    }
    assert!(refused >= 50, "{refused} required fields removed");

    // Spelled out once: the city's view of a 1.1 birth.
    let city = cases(&config)
        .into_iter()
        .find(|c| &*c.agreement.id == "birth-ottawa" && c.version == "1.1".parse().unwrap())
        .unwrap();
    assert_eq!(city.view["title"], "birth-registration 1.1 as ottawa-city receives it under birth-ottawa");
    let view = compile(&city.view);
    let body = json!({"child": {"date_of_birth": "2026-03-28", "place_of_birth": {"municipality": "Ottawa"}},
                      "parents": [{"address": {"postal_code": "K1N 6N5"}}]});
    assert!(view.is_valid(&body));
    for missing in ["/child/date_of_birth", "/child/place_of_birth/municipality", "/parents/0/address/postal_code"] {
        let steps: Vec<Step> = missing[1..]
            .split('/')
            .map(|s| s.parse().map(Step::Index).unwrap_or_else(|_| Step::Key(s.to_owned())))
            .collect();
        assert!(!view.is_valid(&without(&body, &steps)), "{missing}");
    }
    let mut named = body.clone();
    named["child"]["surname"] = json!("Roy");
    assert!(!view.is_valid(&named), "the surname is not the city's");
    let mut bad_postal_code = body.clone();
    bad_postal_code["parents"][0]["address"]["postal_code"] = json!("12345");
    assert!(!view.is_valid(&bad_postal_code));
}

/// The entries of `GET /v1/schemas` with `role` `receives`: (type, version, agreement, href).
fn listed_views(list: &Value) -> BTreeSet<(String, String, String, String)> {
    list["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["role"] == "receives")
        .map(|s| {
            let text = |k: &str| s[k].as_str().unwrap().to_owned();
            (text("record_type"), text("version"), text("agreement"), text("href"))
        })
        .collect()
}

#[tokio::test]
async fn a_view_is_served_to_its_recipient_alone() {
    let gw = Setup::new().start().await;
    let config = passerelle::config::load(&gw.setup.main_config()).unwrap();
    for partner in PARTNERS {
        let list = gw.client.get("/v1/schemas", gw.key(partner)).await.json();
        let expected: BTreeSet<_> = cases(&config)
            .into_iter()
            .filter(|c| &*c.recipient.partner == partner)
            .map(|c| {
                let (t, v, a) =
                    (c.agreement.record_type.to_string(), c.version.to_string(), c.agreement.id.to_string());
                let href = format!("/v1/schemas/{t}/{v}/views/{a}");
                (t, v, a, href)
            })
            .collect();
        assert_eq!(listed_views(&list), expected, "{partner}");
        // Each is served, as the configuration derives it.
        for (t, v, a, href) in &expected {
            let r = gw.client.get(href, gw.key(partner)).await;
            assert_eq!(r.status, StatusCode::OK, "{href}: {}", r.text());
            assert_eq!(r.header("content-type"), Some("application/schema+json"));
            let agreement = config.built.agreements.iter().find(|x| &*x.id == a).unwrap();
            let derived =
                agreement.view(&config.built.catalog, agreement.recipient(partner).unwrap(), v.parse().unwrap());
            assert_eq!(Some(r.json()), derived, "{href}");
            assert_eq!(r.json()["title"], format!("{t} {v} as {partner} receives it under {a}"));
        }
    }
    let city = listed_views(&gw.client.get("/v1/schemas", gw.key("ottawa-city")).await.json());
    assert!(city.contains(&(
        "birth-registration".into(),
        "1.1".into(),
        "birth-ottawa".into(),
        "/v1/schemas/birth-registration/1.1/views/birth-ottawa".into()
    )));
    // Answers are the ones the document describes.
    let template = "/v1/schemas/{record_type}/{version}/views/{agreement}";
    let doc = partner_document(&gw, "ottawa-city").await;
    let href = "/v1/schemas/birth-registration/1.1/views/birth-ottawa";
    assert_documented(&doc, "get", template, &gw.client.get(href, gw.key("ottawa-city")).await);
    let refused = gw.client.get("/v1/schemas/birth-registration/1.1/views/nobody", gw.key("ottawa-city")).await;
    assert_documented(&doc, "get", template, &refused);
    // Only the recipient reads its view: the sender, another recipient of the type, a stranger.
    for other in ["on-vital-stats", "cra-child-benefit", "nt-vital-stats"] {
        gw.client.get(href, gw.key(other)).await.problem(404, "schema-not-found");
    }
    // An agreement it is not a recipient of, another type, a version it does not receive or no
    // version at all, an agreement that does not exist: the same 404.
    for path in [
        "/v1/schemas/birth-registration/1.1/views/birth-federal-on",
        "/v1/schemas/address-change/1.1/views/birth-ottawa",
        "/v1/schemas/address-change/1.0/views/birth-ottawa",
        "/v1/schemas/birth-registration/9.9/views/birth-ottawa",
        "/v1/schemas/birth-registration/01.1/views/birth-ottawa",
        "/v1/schemas/birth-registration/1.1/views/nobody",
        "/v1/schemas/sin-validation/1.0/views/sin-validation-ohip",
    ] {
        gw.client.get(path, gw.key("ottawa-city")).await.problem(404, "schema-not-found");
    }
    let french = gw
        .client
        .request(Method::GET, href)
        .bearer(gw.key("on-vital-stats"))
        .header("accept-language", "fr-CA")
        .send()
        .await;
    assert_eq!(french.problem(404, "schema-not-found")["title"], "Schéma introuvable");
    gw.client.send(Method::GET, href, &[], "").await.problem(401, "unauthenticated");
    // The existing routes are unchanged.
    let whole = gw.client.get("/v1/schemas/birth-registration/1.1", gw.key("ottawa-city")).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert!(whole.json()["properties"]["registration_number"].is_object());
}

/// The repository's schemas copied into `dir`, with `translation` as the translation of birth
/// registrations from 1.1 to 1.0.
pub(crate) fn schemas_with_translation(dir: &Path, translation: &str) {
    copy_dir(&repo().join("schemas"), dir);
    std::fs::write(dir.join("birth-registration/1.1-to-1.0.toml"), translation).unwrap();
}

/// `setup` with the health plan's birth agreement pinned to 1.0, reading its schemas from
/// `schemas`; its files written, recipients pointed at `endpoints`.
pub(crate) fn pinned_ohip(setup: &Setup, schemas: &Path, endpoints: &HashMap<String, String>) {
    let file = setup.config_dir().join("agreements/birth-ohip.toml");
    if !std::fs::read_to_string(&file).unwrap().contains("version = \"1.0\"") {
        edit_file(&file, "partner = \"on-health-plan\"\n", "partner = \"on-health-plan\"\nversion = \"1.0\"\n");
    }
    setup.write(endpoints);
    let shipped = format!("schemas_dir = \"{}\"", repo().join("schemas").display());
    edit_file(&setup.main_config(), &shipped, &format!("schemas_dir = \"{}\"", schemas.display()));
}

#[tokio::test]
async fn a_pinned_recipient_reads_the_view_of_its_pin_only() {
    let schemas = tempfile::tempdir().unwrap();
    // Every field 1.0 has is copied as it is.
    schemas_with_translation(schemas.path(), "");
    let setup = Setup::new();
    let recipients = mock_recipients().await;
    pinned_ohip(&setup, schemas.path(), &recipients.iter().map(|(id, m)| (id.clone(), m.endpoint())).collect());
    let config = passerelle::config::load(&setup.main_config()).unwrap_or_else(|e| panic!("{:?}", e.problems));
    let ohip = config.built.agreements.iter().find(|a| &*a.id == "birth-ohip").unwrap();
    let recipient = ohip.recipient("on-health-plan").unwrap();
    assert_eq!(ohip.versions, ["1.0".parse().unwrap(), "1.1".parse().unwrap()]);
    assert_eq!(recipient.versions_received(&ohip.versions), ["1.0".parse::<Version>().unwrap()]);
    assert!(ohip.view(&config.built.catalog, recipient, "1.1".parse().unwrap()).is_none());

    let gateway = passerelle::gateway::Gateway::start(config).await.unwrap();
    let client = TestClient::new(format!("http://{}", gateway.partner_addr));
    let admin = TestClient::new(format!("http://{}", gateway.admin_addr));
    let gw = TestGateway { gateway: Some(gateway), setup, recipients, client, admin };
    let list = gw.client.get("/v1/schemas", gw.key("on-health-plan")).await.json();
    let views: Vec<(String, String)> = listed_views(&list).into_iter().map(|(t, v, _, _)| (t, v)).collect();
    assert_eq!(views, [("birth-registration".to_owned(), "1.0".to_owned())]);
    // The schema it receives whole is its pin's too.
    let received: Vec<&str> = list["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["role"] == "receive")
        .map(|s| s["version"].as_str().unwrap())
        .collect();
    assert_eq!(received, ["1.0"]);
    let view = gw.view("on-health-plan", "birth-ohip", "birth-registration/1.0").await;
    assert_eq!(view["title"], "birth-registration 1.0 as on-health-plan receives it under birth-ohip");
    gw.client
        .get("/v1/schemas/birth-registration/1.1/views/birth-ohip", gw.key("on-health-plan"))
        .await
        .problem(404, "schema-not-found");
    gw.stop().await;
}

#[tokio::test]
async fn every_body_pushed_is_valid_under_the_view_its_recipient_reads() {
    let gw = Setup::new().start().await;
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    let sent = [
        ("on-vital-stats", "birth-registration", "birth-registration-1.1.json", None),
        ("on-vital-stats", "birth-registration", "birth-registration-1.0.json", Some("1.0")),
        ("nt-vital-stats", "birth-registration", "birth-registration-1.1.json", None),
        ("on-health-plan", "address-change", "address-change-1.0.json", None),
    ];
    for (sender, record_type, file, version) in sent {
        let mut request = gw.post_as(sender, &format!("/v1/records/{record_type}")).json(&record(file));
        if let Some(version) = version {
            request = request.header("schema-version", version);
        }
        let r = request.send().await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        for delivery in r.json()["deliveries"].as_array().unwrap() {
            *expected.entry(delivery["recipient"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    // A request's responder receives its share of the request the same way.
    gw.post_as("on-health-plan", "/v1/requests/sin-validation").json(&record("sin-validation-1.0.json")).send().await;
    *expected.entry("esdc-sin-registry".to_owned()).or_default() += 1;
    assert_eq!(expected.len(), 4, "{expected:?}");
    for (partner, count) in &expected {
        gw.recipient(partner).wait_for(*count, Duration::from_secs(10)).await;
        assert_eq!(gw.assert_received_in_view(partner).await, *count, "{partner}");
    }
}

#[tokio::test]
async fn every_body_taken_from_the_mailbox_is_valid_under_its_view() {
    let gw = Setup::new().pull("ottawa-city").start().await;
    let doc = partner_document(&gw, "ottawa-city").await;
    gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    gw.post_as("on-vital-stats", "/v1/records/birth-registration")
        .header("schema-version", "1.0")
        .json(&record("birth-registration-1.0.json"))
        .send()
        .await;
    gw.post_record("on-health-plan", "address-change", &record("address-change-1.0.json")).await;
    let mut taken = Vec::new();
    for _ in 0..20 {
        let page = gw.client.get("/v1/inbox?limit=10&wait=2", gw.key("ottawa-city")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        // The answer, bodies included, is the one the city's document describes.
        assert_documented(&doc, "get", "/v1/inbox", &page);
        taken.extend(page.json()["deliveries"].as_array().unwrap().iter().cloned());
        if taken.len() >= 3 {
            break;
        }
    }
    assert_eq!(taken.len(), 3);
    for delivery in &taken {
        let (agreement, schema) = (delivery["agreement"].as_str().unwrap(), delivery["schema"].as_str().unwrap());
        gw.assert_in_view("ottawa-city", agreement, schema, &delivery["body"]).await;
    }
}

#[tokio::test]
async fn a_recipients_openapi_document_gives_its_views_as_what_it_is_sent() {
    let gw = Setup::new().pull("ottawa-city").start().await;
    gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    gw.post_record("nt-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    for partner in ["esdc-sin-registry", "cra-child-benefit", "on-health-plan"] {
        let doc = partner_document(&gw, partner).await;
        let list = gw.client.get("/v1/schemas", gw.key(partner)).await.json();
        let views = listed_views(&list);
        // Each view is a component, the view the gateway serves but for its dialect (the
        // document's).
        for (t, v, a, _) in &views {
            let mut served = gw.view(partner, a, &format!("{t}/{v}")).await;
            served.as_object_mut().unwrap().remove("$schema");
            assert_eq!(doc["components"]["schemas"][format!("view.{a}.{t}.{v}")], served, "{partner}");
        }
        // A webhook per type received, whose body is any of that type's views.
        let types: BTreeSet<&str> = views.iter().map(|(t, _, _, _)| t.as_str()).collect();
        let webhooks: BTreeSet<&str> = doc["webhooks"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(webhooks, types, "{partner}");
        let body =
            &doc["webhooks"]["birth-registration"]["post"]["requestBody"]["content"]["application/json"]["schema"];
        let refs: BTreeSet<&str> = match body.get("anyOf") {
            Some(any) => any.as_array().unwrap().iter().map(|r| r["$ref"].as_str().unwrap()).collect(),
            None => [body["$ref"].as_str().unwrap()].into(),
        };
        let expected: BTreeSet<String> = views
            .iter()
            .filter(|(t, _, _, _)| t == "birth-registration")
            .map(|(t, v, a, _)| format!("#/components/schemas/view.{a}.{t}.{v}"))
            .collect();
        assert_eq!(refs, expected.iter().map(String::as_str).collect(), "{partner}");
        // What the recipient was sent fits the body its document gives.
        let validator = validator(&doc, body);
        let received = gw.recipient(partner).wait_for(1, Duration::from_secs(10)).await;
        for r in received {
            assert!(validator.is_valid(&r.json()), "{partner}: {}", String::from_utf8_lossy(&r.body));
        }
    }
    // The responder's webhook says what it must answer.
    let doc = partner_document(&gw, "esdc-sin-registry").await;
    let answer =
        &doc["webhooks"]["sin-validation"]["post"]["responses"]["2XX"]["content"]["application/json"]["schema"];
    assert_eq!(answer["$ref"], "#/components/schemas/sin-validation.1.0.response");
    // The city takes its records from its mailbox: the inbox's bodies are its views.
    let doc = partner_document(&gw, "ottawa-city").await;
    assert!(doc.get("webhooks").is_none());
    let body = &doc["components"]["schemas"]["InboxDelivery"]["properties"]["body"];
    let refs: BTreeSet<&str> = body["anyOf"].as_array().unwrap().iter().map(|r| r["$ref"].as_str().unwrap()).collect();
    assert!(refs.contains("#/components/schemas/view.birth-ottawa.birth-registration.1.1"), "{refs:?}");
    let example = &doc["paths"]["/v1/inbox"]["get"]["responses"]["200"]["content"]["application/json"]["example"];
    assert!(validator(&doc, &json!({"$ref": "#/components/schemas/InboxPage"})).is_valid(example));
    // A sender receives nothing: no webhook, no view.
    let doc = partner_document(&gw, "on-vital-stats").await;
    assert!(doc.get("webhooks").is_none());
    assert!(!doc["components"]["schemas"].as_object().unwrap().keys().any(|k| k.starts_with("view.")));
    assert!(doc["components"]["schemas"]["InboxDelivery"]["properties"]["body"].get("anyOf").is_none());
}
