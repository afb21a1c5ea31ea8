//! The API contract: the OpenAPI documents say what the gateway does. Every documented operation
//! is routed and every route documented, a partner sees only its own record types, the bundled
//! schemas mean what the files in `schemas/` mean, the documents hold together as OpenAPI 3.1,
//! and real answers match the schemas the documents give them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use http::{Method, StatusCode};
use passerelle::http::openapi::component_name;
use serde_json::{Value, json};

use crate::support::*;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
const ADMIN: (&str, &str) = ("authorization", "Bearer test-admin-token");

async fn admin_document(gw: &TestGateway) -> Value {
    let r = gw.admin.send(Method::GET, "/admin/v1/openapi.json", &[ADMIN], "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()
}

/// The admin document and each partner's, named by who reads them.
async fn every_document(gw: &TestGateway) -> Vec<(String, Value)> {
    let mut docs = vec![("admin".to_owned(), admin_document(gw).await)];
    for partner in PARTNERS {
        docs.push((partner.to_owned(), partner_document(gw, partner).await));
    }
    docs
}

/// Every (method, path) of a document, the method upper-case.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// Whether the concrete or templated `path` is an instance of the router's `template`.
fn instance_of(path: &str, template: &str) -> bool {
    let (p, t): (Vec<&str>, Vec<&str>) = (path.split('/').collect(), template.split('/').collect());
    p.len() == t.len() && p.iter().zip(&t).all(|(p, t)| p == t || (t.starts_with('{') && !p.is_empty()))
}

#[tokio::test]
async fn a_partner_sees_only_its_own_record_types() {
    let gw = Setup::new().start().await;
    let config = passerelle::config::load(&gw.setup.main_config()).unwrap();
    let all_types: BTreeSet<String> = config.built.catalog.types().map(|t| t.name.to_string()).collect();
    for partner in PARTNERS {
        let doc = partner_document(&gw, partner).await;
        let mut sent: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (_, path) in operations(&doc) {
            if let ["", "v1", route @ ("records" | "validate" | "requests"), t] =
                path.split('/').collect::<Vec<_>>()[..]
                && !t.starts_with('{')
            {
                sent.entry(route.to_owned()).or_default().insert(t.to_owned());
            }
        }
        let expected = |mode: Option<passerelle::policy::Mode>| -> BTreeSet<String> {
            config
                .built
                .agreements
                .iter()
                .filter(|a| &*a.sender == partner && mode.is_none_or(|m| a.mode == m))
                .map(|a| a.record_type.to_string())
                .collect()
        };
        use passerelle::policy::Mode;
        assert_eq!(sent.remove("records").unwrap_or_default(), expected(Some(Mode::Push)), "{partner}: records");
        assert_eq!(sent.remove("requests").unwrap_or_default(), expected(Some(Mode::Request)), "{partner}: requests");
        assert_eq!(sent.remove("validate").unwrap_or_default(), expected(None), "{partner}: validate");

        // The types it is party to in no way are named nowhere in its document.
        let party: BTreeSet<String> =
            config.built.agreements.iter().filter(|a| a.is_party(partner)).map(|a| a.record_type.to_string()).collect();
        let text = doc.to_string();
        for stranger in all_types.difference(&party) {
            assert!(!text.contains(stranger.as_str()), "{partner}'s document names {stranger}");
        }
        // The types it may read schemas of are the ones GET /v1/schemas lists.
        let listed: BTreeSet<String> = gw.client.get("/v1/schemas", gw.key(partner)).await.json()["schemas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["record_type"].as_str().unwrap().to_owned())
            .collect();
        let enumerated: BTreeSet<String> = doc["components"]["parameters"]["SchemaRecordType"]["schema"]["enum"]
            .as_array()
            .map(|e| e.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        assert_eq!(enumerated, listed, "{partner}");
    }
    // The shipped agreements, spelled out once.
    let doc = partner_document(&gw, "on-health-plan").await;
    let ops = operations(&doc);
    for op in ["/v1/records/address-change", "/v1/validate/address-change", "/v1/requests/sin-validation"] {
        assert!(ops.contains(&("POST".to_owned(), op.to_owned())), "{op}");
    }
    assert!(!ops.iter().any(|(_, p)| p.contains("birth-registration")));
    // The contract is only for partners.
    gw.client.send(Method::GET, "/v1/openapi.json", &[], "").await.problem(401, "unauthenticated");
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_every_route_is_documented() {
    let gw = Setup::new().start().await;
    let partner_routes: Vec<(&str, &str)> =
        passerelle::http::partner::ROUTES.iter().map(|r| (r.method.as_str(), r.template)).collect();
    let mut covered: BTreeSet<&(&str, &str)> = BTreeSet::new();
    for partner in ["on-vital-stats", "on-health-plan"] {
        let doc = partner_document(&gw, partner).await;
        for (method, path) in operations(&doc) {
            let routes: Vec<_> = partner_routes.iter().filter(|(m, t)| *m == method && instance_of(&path, t)).collect();
            assert!(!routes.is_empty(), "{method} {path} is documented but not routed");
            covered.extend(routes);
            let concrete = path
                .replace("{record_id}", "01900000-0000-7000-8000-000000000000")
                .replace("{record_type}", "birth-registration")
                .replace("{version}", "1.1")
                .replace("{agreement}", "birth-ohip");
            let r = gw.client.request(method.parse().unwrap(), &concrete).bearer(gw.key(partner)).send().await;
            assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {concrete}");
            if r.status == StatusCode::NOT_FOUND {
                assert_ne!(r.json()["type"], "urn:passerelle:problem:not-found", "{method} {concrete}");
            }
            // Whatever it answered is documented.
            let documented = doc["paths"][&path][method.to_lowercase()]["responses"].get(r.status.as_str());
            assert!(documented.is_some(), "{method} {path} answered an undocumented {}", r.status);
        }
    }
    for route in &partner_routes {
        assert!(covered.contains(route), "{route:?} is routed but not documented");
    }

    let doc = admin_document(&gw).await;
    let documented = operations(&doc);
    let routed: BTreeSet<(String, String)> =
        passerelle::http::admin::ROUTES.iter().map(|r| (r.method.to_string(), r.template.to_owned())).collect();
    assert_eq!(documented, routed);
    for (method, path) in documented {
        let concrete = path.replace("{delivery_id}", "1").replace("{recipient}", "ottawa-city");
        let r = gw.admin.send(method.parse().unwrap(), &concrete, &[ADMIN], "").await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {concrete}");
        assert!(
            r.header("content-type") != Some("application/problem+json")
                || r.json()["type"] != "urn:passerelle:problem:not-found",
            "{method} {concrete}"
        );
        let answered = doc["paths"][&path][method.to_lowercase()]["responses"].get(r.status.as_str());
        assert!(answered.is_some(), "{method} {path} answered an undocumented {}", r.status);
    }
}

/// `value` with every `$ref` replaced by what it points at, `resolve` telling where a reference
/// made from `base` leads (the target and its own base).
fn inline<B: Clone>(value: &Value, base: &B, resolve: &dyn Fn(&str, &B) -> (Value, B), depth: usize) -> Value {
    assert!(depth < 32, "references nest too deep");
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        let (target, target_base) = resolve(r, base);
                        (k.clone(), inline(&target, &target_base, resolve, depth + 1))
                    }
                    _ => (k.clone(), inline(v, base, resolve, depth)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| inline(v, base, resolve, depth)).collect()),
        other => other.clone(),
    }
}

/// A schema file with every `$ref` inlined, resolving them as files of `schemas/`.
fn inline_file(file: &Path) -> Value {
    let read = |path: &Path| -> Value { serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap() };
    let resolve = |reference: &str, base: &PathBuf| -> (Value, PathBuf) {
        let (uri, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        let target = if uri.is_empty() { base.clone() } else { base.parent().unwrap().join(uri) };
        let target = target.canonicalize().unwrap();
        assert!(target.starts_with(repo().join("schemas").canonicalize().unwrap()));
        (read(&target).pointer(fragment).unwrap_or_else(|| panic!("{reference}")).clone(), target)
    };
    let mut value = inline(&read(file), &file.canonicalize().unwrap(), &resolve, 0);
    value.as_object_mut().unwrap().remove("$schema");
    value
}

fn schema_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            schema_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

#[tokio::test]
async fn the_bundled_schemas_mean_what_the_files_in_schemas_say() {
    let gw = Setup::new().start().await;
    let dir = repo().join("schemas");
    let mut files = Vec::new();
    schema_files(&dir, &mut files);
    let mut seen = BTreeSet::new();
    for partner in ["on-vital-stats", "on-health-plan", "nt-vital-stats"] {
        let doc = partner_document(&gw, partner).await;
        let components = doc["components"]["schemas"].as_object().unwrap();
        let resolve = |reference: &str, _: &()| (resolve(&doc, reference).clone(), ());
        for file in &files {
            let relative = file.strip_prefix(&dir).unwrap().to_str().unwrap().replace('\\', "/");
            let mut written = inline_file(file);
            let definitions = written.as_object_mut().unwrap().remove("$defs").unwrap_or(json!({}));
            // A whole file is the component named after it, as written but for its `$defs`...
            if let Some(component) = components.get(&component_name(&relative)) {
                seen.insert(relative.clone());
                assert!(component.get("$schema").is_none(), "{relative}: the dialect is the document's");
                assert!(component.get("$defs").is_none(), "{relative}: its definitions are components");
                assert_eq!(inline(component, &(), &resolve, 0), written, "{relative} as bundled for {partner}");
            }
            // ...each of which, if in use, is a component of its own.
            for (name, definition) in definitions.as_object().unwrap() {
                let name = format!("{}.{name}", component_name(&relative));
                if let Some(component) = components.get(&name) {
                    seen.insert(relative.clone());
                    assert_eq!(&inline(component, &(), &resolve, 0), definition, "{name} as bundled for {partner}");
                }
            }
        }
        // A request's answer is the response schema's fields, as written, that the agreement returns.
        let answer = &doc["paths"]["/v1/requests/sin-validation"]["post"]["responses"]["200"]["content"]["application/json"]
            ["schema"];
        if let Some(fields) = answer["properties"].as_object() {
            let response = inline_file(&dir.join("sin-validation/1.0.response.json"));
            for (name, field) in fields {
                assert_eq!(
                    inline(field, &(), &resolve, 0),
                    response["properties"][name],
                    "{name} as answered to {partner}"
                );
            }
            seen.insert("sin-validation/1.0.response.json".to_owned());
        }
    }
    let all: BTreeSet<String> =
        files.iter().map(|f| f.strip_prefix(&dir).unwrap().to_str().unwrap().replace('\\', "/")).collect();
    assert_eq!(seen, all, "the three senders between them use every schema file");
}

#[tokio::test]
async fn the_documents_hold_together_as_openapi_3_1() {
    let gw = Setup::new().start().await;
    let docs = every_document(&gw).await;
    for (name, doc) in &docs {
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."), "{name}");
        assert_eq!(doc["jsonSchemaDialect"], "https://json-schema.org/draft/2020-12/schema");
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string(), "{name}");
        // Every reference resolves inside the document.
        let mut stack = vec![doc];
        while let Some(value) = stack.pop() {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(reference)) = map.get("$ref") {
                        resolve(doc, reference);
                    }
                    stack.extend(map.values());
                }
                Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        for scheme in schemes.values() {
            assert!(
                ["apiKey", "http", "mutualTLS", "oauth2", "openIdConnect"].contains(&scheme["type"].as_str().unwrap())
            );
        }
        for section in ["schemas", "responses", "parameters", "headers", "securitySchemes"] {
            for key in doc["components"][section].as_object().map(|o| o.keys().collect::<Vec<_>>()).unwrap_or_default()
            {
                assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)), "{name}: {key}");
            }
        }
        let requirements = |security: &Value| {
            for requirement in security.as_array().unwrap() {
                for scheme in requirement.as_object().unwrap().keys() {
                    assert!(schemes.contains_key(scheme), "{name}: unknown security scheme {scheme}");
                }
            }
        };
        requirements(&doc["security"]);
        let mut operation_ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            assert!(path.starts_with('/'), "{name}: {path}");
            let templated: BTreeSet<&str> =
                path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
            for method in METHODS {
                let Some(operation) = item.get(method) else { continue };
                let id = operation["operationId"].as_str().unwrap();
                assert!(operation_ids.insert(id.to_owned()), "{name}: operationId {id} twice");
                if let Some(security) = operation.get("security") {
                    requirements(security);
                }
                let mut in_path = BTreeSet::new();
                let none = Vec::new();
                for parameter in operation["parameters"].as_array().unwrap_or(&none) {
                    let parameter = follow(doc, parameter);
                    let place = parameter["in"].as_str().unwrap();
                    assert!(["query", "header", "path", "cookie"].contains(&place), "{name} {id}");
                    assert!(parameter["schema"].is_object(), "{name} {id}");
                    if place == "path" {
                        assert_eq!(parameter["required"], true, "{name} {id}");
                        in_path.insert(parameter["name"].as_str().unwrap());
                    }
                }
                assert_eq!(in_path, templated, "{name}: {method} {path} declares its path parameters");
                if let Some(body) = operation.get("requestBody") {
                    assert!(body["content"].as_object().is_some_and(|c| !c.is_empty()), "{name} {id}");
                }
                let responses = operation["responses"].as_object().unwrap();
                assert!(!responses.is_empty(), "{name} {id}");
                for (status, response) in responses {
                    assert!(
                        status == "default" || status.parse::<u16>().is_ok_and(|s| (100..600).contains(&s)),
                        "{name} {id}: {status}"
                    );
                    let response = follow(doc, response);
                    assert!(response["description"].is_string(), "{name} {id} {status}");
                    for media in
                        response["content"].as_object().map(|c| c.values().collect::<Vec<_>>()).unwrap_or_default()
                    {
                        // Every schema compiles as JSON Schema 2020-12 with the document around it.
                        validator(doc, &media["schema"]);
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn answers_match_the_documented_schemas() {
    let gw = Setup::new().start().await;
    gw.recipient("esdc-sin-registry").respond_with(
        200,
        &json!({"sin_status": "valid", "name_match": "full", "date_of_birth_match": true, "checked_at": "2026-11-29T17:00:00Z", "registry_reference": "R-1"})
            .to_string(),
    );
    let doc = partner_document(&gw, "on-vital-stats").await;
    let vital = |path: &str| gw.post_as("on-vital-stats", path);
    let body = record("birth-registration-1.1.json");

    // The record types' bodies are the agreed schemas.
    let request_schema =
        &doc["paths"]["/v1/records/birth-registration"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    let request = validator(&doc, request_schema);
    assert!(request.is_valid(&record("birth-registration-1.1.json")));
    assert!(request.is_valid(&record("birth-registration-1.0.json")));
    assert!(!request.is_valid(&json!({"registration_number": "ON-2026-000001"})));

    let sent = vital("/v1/records/birth-registration").json(&body).send().await;
    assert_documented(&doc, "post", "/v1/records/birth-registration", &sent);
    let location = sent.header("location").unwrap().to_owned();
    let with_sunset = || {
        vital("/v1/records/birth-registration")
            .header("schema-version", "1.0")
            .header("idempotency-key", "k-1")
            .json(&record("birth-registration-1.0.json"))
            .send()
    };
    let old = with_sunset().await;
    assert!(old.header("deprecation").is_some() && old.header("sunset").is_some());
    assert_documented(&doc, "post", "/v1/records/birth-registration", &old);
    let again = with_sunset().await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_documented(&doc, "post", "/v1/records/birth-registration", &again);
    for (path, template) in [
        (location.as_str(), "/v1/records/{record_id}"),
        ("/v1/records", "/v1/records"),
        ("/v1/records?limit=1", "/v1/records"),
        ("/v1/records?limit=0", "/v1/records"),
        ("/v1/records?status=complete", "/v1/records"),
        ("/v1/records?status=incomplete", "/v1/records"),
        ("/v1/schemas", "/v1/schemas"),
        ("/v1/agreements", "/v1/agreements"),
        ("/v1/records/01900000-0000-7000-8000-000000000000", "/v1/records/{record_id}"),
        ("/v1/schemas/birth-registration/9.9", "/v1/schemas/{record_type}/{version}"),
        ("/v1/openapi.json", "/v1/openapi.json"),
        ("/v1/keys", "/v1/keys"),
    ] {
        assert_documented(&doc, "get", template, &gw.client.get(path, gw.key("on-vital-stats")).await);
    }
    let schema = gw.client.get("/v1/schemas/birth-registration/1.1", gw.key("on-vital-stats")).await;
    assert_eq!(schema.header("content-type"), Some("application/schema+json"));
    assert_documented(&doc, "get", "/v1/schemas/{record_type}/{version}", &schema);

    let invalid = record("birth-registration-1.1-invalid.json");
    for path in ["/v1/records/birth-registration", "/v1/validate/birth-registration"] {
        let answers = [
            vital(path).json(&body).send().await,
            vital(path).json(&invalid).send().await,
            vital(path).json_bytes("{\"a\": 1, \"a\": 2}").send().await,
            vital(path).body(body.to_string()).send().await,
            gw.client.post(path).json(&body).send().await,
            vital(path).header("schema-version", "7.0").json(&body).send().await,
        ];
        for answer in &answers {
            assert_documented(&doc, "post", path, answer);
        }
    }

    // Request/response, as the health plan.
    let doc = partner_document(&gw, "on-health-plan").await;
    let ask =
        || gw.post_as("on-health-plan", "/v1/requests/sin-validation").json(&record("sin-validation-1.0.json")).send();
    let asked = ask().await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.text());
    assert_documented(&doc, "post", "/v1/requests/sin-validation", &asked);
    // The documented answer is exactly the agreement's response_fields: more would not match.
    let answer = validator(&doc, answer_schema(&doc, "post", "/v1/requests/sin-validation", 200, "application/json"));
    let mut with_reference = asked.json();
    with_reference["registry_reference"] = json!("R-1");
    assert!(!answer.is_valid(&with_reference));
    gw.recipient("esdc-sin-registry").respond_with(200, "{\"sin_status\": 1}");
    let bad = ask().await;
    assert_documented(&doc, "post", "/v1/requests/sin-validation", &bad);

    // The admin API.
    let doc = admin_document(&gw).await;
    for (path, template) in [
        ("/admin/v1/deliveries", "/admin/v1/deliveries"),
        ("/admin/v1/deliveries?status=lost", "/admin/v1/deliveries"),
        ("/admin/v1/audit?limit=5", "/admin/v1/audit"),
        ("/admin/v1/openapi.json", "/admin/v1/openapi.json"),
        ("/admin/v1/overview", "/admin/v1/overview"),
        ("/admin/v1/keys", "/admin/v1/keys"),
    ] {
        assert_documented(&doc, "get", template, &gw.admin.send(Method::GET, path, &[ADMIN], "").await);
    }
    assert_documented(&doc, "get", "/admin/v1/audit", &gw.admin.send(Method::GET, "/admin/v1/audit", &[], "").await);
    for (path, template) in [
        ("/admin/v1/deliveries/1/replay", "/admin/v1/deliveries/{delivery_id}/replay"),
        ("/admin/v1/deliveries/999999/replay", "/admin/v1/deliveries/{delivery_id}/replay"),
        ("/admin/v1/recipients/ottawa-city/replay", "/admin/v1/recipients/{recipient}/replay"),
        ("/admin/v1/recipients/nobody/replay", "/admin/v1/recipients/{recipient}/replay"),
        ("/admin/v1/reload", "/admin/v1/reload"),
    ] {
        assert_documented(&doc, "post", template, &gw.admin.send(Method::POST, path, &[ADMIN], "").await);
        let foreign = gw.admin.send(Method::POST, path, &[ADMIN, ("origin", "https://elsewhere.example")], "").await;
        assert_documented(&doc, "post", template, &foreign);
    }
}

/// Every example under `value` (a media type's or a parameter's `example` and `examples`, a
/// schema's `example`), with where it is and the schema it must be valid under.
fn examples<'d>(doc: &'d Value, value: &'d Value, at: String, out: &mut Vec<(String, &'d Value, &'d Value)>) {
    match value {
        Value::Object(map) => {
            if let Some(schema) = map.get("schema") {
                if let Some(example) = map.get("example") {
                    out.push((at.clone(), schema, example));
                }
                for (name, example) in map.get("examples").and_then(Value::as_object).into_iter().flatten() {
                    out.push((format!("{at}/examples/{name}"), schema, &follow(doc, example)["value"]));
                }
            } else if let (Some(example), Some(_)) = (map.get("example"), map.get("type").or(map.get("pattern"))) {
                // A schema's own example.
                out.push((at.clone(), value, example));
            }
            for (key, child) in map {
                if key != "example" && key != "examples" {
                    examples(doc, child, format!("{at}/{key}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                examples(doc, item, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn every_documented_example_is_valid_under_its_schema() {
    let gw = Setup::new().start().await;
    let docs = every_document(&gw).await;
    for (name, doc) in &docs {
        let mut found = Vec::new();
        examples(doc, doc, String::new(), &mut found);
        for (at, schema, example) in &found {
            let errors: Vec<String> = validator(doc, schema).iter_errors(example).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{name}: the example at {at} breaks its schema: {errors:?}\n{example}");
        }
        if name != "admin" {
            assert!(found.len() >= 10, "{name}: {} examples", found.len());
        }
    }

    // A sender's document shows each of its record bodies, one example per accepted version,
    // and what a real answer would hold.
    let doc = partner_document(&gw, "on-vital-stats").await;
    let body = &doc["paths"]["/v1/records/birth-registration"]["post"]["requestBody"]["content"]["application/json"];
    let versions: Vec<&String> = body["examples"].as_object().unwrap().keys().collect();
    assert_eq!(versions, ["1.0", "1.1"]);
    assert_eq!(body["examples"]["1.1"]["value"], record("birth-registration-1.1.json"));
    for (version, example) in body["examples"].as_object().unwrap() {
        let component = json!({"$ref": format!("#/components/schemas/birth-registration.{version}")});
        assert!(validator(&doc, &component).is_valid(&example["value"]), "{version}");
    }
    let receipt = &doc["paths"]["/v1/records/birth-registration"]["post"]["responses"]["202"]["content"]["application/json"]
        ["example"];
    let sent = gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    let real = sent.json();
    let recipients = |receipt: &Value| -> Vec<(String, String)> {
        receipt["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["recipient"].to_string(), d["agreement"].to_string()))
            .collect()
    };
    assert_eq!(recipients(receipt), recipients(&real), "the example receipt names the real recipients");
    assert_eq!((&receipt["sender"], &receipt["schema_version"]), (&real["sender"], &real["schema_version"]));
    // The discovery examples are what the gateway answers.
    for (path, example) in [
        (
            "/v1/schemas",
            &doc["paths"]["/v1/schemas"]["get"]["responses"]["200"]["content"]["application/json"]["example"],
        ),
        (
            "/v1/agreements",
            &doc["paths"]["/v1/agreements"]["get"]["responses"]["200"]["content"]["application/json"]["example"],
        ),
    ] {
        assert_eq!(example, &gw.client.get(path, gw.key("on-vital-stats")).await.json(), "{path}");
    }
    // A request's example answer is the sample response cut down to the agreement's fields.
    let doc = partner_document(&gw, "on-health-plan").await;
    let answer = &doc["paths"]["/v1/requests/sin-validation"]["post"]["responses"]["200"]["content"]["application/json"]
        ["example"];
    let fields: BTreeSet<&String> = answer.as_object().unwrap().keys().collect();
    let documented: BTreeSet<&String> = doc["paths"]["/v1/requests/sin-validation"]["post"]["responses"]["200"]
        ["content"]["application/json"]["schema"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(fields, documented);
}

#[tokio::test]
async fn every_component_of_a_partner_document_is_used() {
    let gw = Setup::new().start().await;
    for partner in PARTNERS {
        let doc = partner_document(&gw, partner).await;
        let mut references = BTreeSet::new();
        let mut stack = vec![&doc];
        while let Some(value) = stack.pop() {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(reference)) = map.get("$ref") {
                        references.insert(reference.clone());
                    }
                    stack.extend(map.values());
                }
                Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
        for section in ["schemas", "responses", "parameters", "headers"] {
            for name in doc["components"][section].as_object().map(|o| o.keys().collect::<Vec<_>>()).unwrap_or_default()
            {
                // Referenced whole, as Redocly counts a use (a reference into it does not count).
                let whole = format!("#/components/{section}/{}", name.replace('~', "~0").replace('/', "~1"));
                assert!(references.contains(&whole), "{partner}: {whole} is never referenced");
            }
        }
    }
}

#[tokio::test]
async fn a_record_valid_only_under_another_version_than_it_declares_is_answered_as_documented() {
    let gw = Setup::new().start().await;
    let doc = partner_document(&gw, "on-vital-stats").await;
    let newer = record("birth-registration-1.1.json");
    for path in ["/v1/records/birth-registration", "/v1/validate/birth-registration"] {
        let operation = &doc["paths"][path]["post"];
        // The body schema admits the record (any accepted version's), and says the header decides.
        let body = &operation["requestBody"];
        assert!(
            validator(&doc, &body["content"]["application/json"]["schema"])
                .is_valid(&record("birth-registration-1.1.json"))
        );
        let description = body["description"].as_str().unwrap();
        assert!(description.contains("`Schema-Version`") && description.contains("422"), "{description}");
        let declared =
            |version: &[(&str, &str)]| gw.post_as("on-vital-stats", path).headers(version).json(&newer).send();
        let answer = declared(&[("schema-version", "1.0")]).await;
        let problem = answer.problem(422, "schema-violation");
        let pointers: BTreeSet<&str> =
            problem["violations"].as_array().unwrap().iter().map(|v| v["pointer"].as_str().unwrap()).collect();
        assert!(pointers.contains("/sin_application"), "{pointers:?}");
        assert_documented(&doc, "post", path, &answer);
        // Declared as what it is, or not declared (the newest), it passes.
        for version in [&[("schema-version", "1.1")][..], &[]] {
            let answer = declared(version).await;
            assert!(answer.status.is_success(), "{path} {version:?}: {}", answer.text());
        }
        // A malformed `Schema-Version` is a documented 400 `invalid-header`.
        let answer = declared(&[("schema-version", "01.1")]).await;
        assert_eq!(answer.problem(400, "invalid-header")["header"], "Schema-Version");
        assert_documented(&doc, "post", path, &answer);
    }
}

#[tokio::test]
async fn the_record_list_cursor_is_exactly_what_its_documented_pattern_allows() {
    let gw = Setup::new().start().await;
    let doc = partner_document(&gw, "on-vital-stats").await;
    let key = gw.key("on-vital-stats");
    for _ in 0..3 {
        gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    }
    let pattern = doc["components"]["schemas"]["Cursor"]["pattern"].as_str().unwrap();
    let cursor_schema = validator(&doc, &json!({"$ref": "#/components/schemas/Cursor"}));
    // The cursor the gateway hands out fits the pattern, and leads to the next page.
    let first = gw.client.get("/v1/records?limit=2", key).await;
    assert_documented(&doc, "get", "/v1/records", &first);
    let cursor = first.json()["next_cursor"].as_str().unwrap().to_owned();
    assert!(cursor_schema.is_valid(&json!(cursor)), "{cursor} does not match {pattern}");
    let second = gw.client.get(&format!("/v1/records?limit=2&cursor={cursor}"), key).await;
    assert_eq!(second.json()["records"].as_array().unwrap().len(), 1);
    // Anything the pattern allows is a position, answered 200 (an empty page, if nothing is older).
    for fits in [
        "0.00000000-0000-0000-0000-000000000000",
        "999999999999999999.ffffffff-ffff-ffff-ffff-ffffffffffff",
        "000001.019ad0a5-5c00-7c3a-9d2e-6b1f0a4c8e21",
    ] {
        assert!(cursor_schema.is_valid(&json!(fits)), "{fits}");
        let r = gw.client.get(&format!("/v1/records?cursor={fits}"), key).await;
        assert_eq!(r.status, StatusCode::OK, "{fits}: {}", r.text());
        assert_documented(&doc, "get", "/v1/records", &r);
    }
    // Anything else is a documented 400 naming the parameter.
    for malformed in [
        "-1.019ad0a5-5c00-7c3a-9d2e-6b1f0a4c8e21",
        "-82551417248067451604.%C3%9Efm",
        "9999999999999999999.019ad0a5-5c00-7c3a-9d2e-6b1f0a4c8e21",
        "1795971600000.019AD0A5-5C00-7C3A-9D2E-6B1F0A4C8E21",
        "1795971600000.019ad0a55c007c3a9d2e6b1f0a4c8e21",
        "1795971600000.019ad0a5-5c00-7c3a-9d2e-6b1f0a4c8e21x",
        "1795971600000",
        ".019ad0a5-5c00-7c3a-9d2e-6b1f0a4c8e21",
        "%2B1.019ad0a5-5c00-7c3a-9d2e-6b1f0a4c8e21",
        "1%2",
    ] {
        let decoded = malformed.replace("%2B", "+");
        assert!(!cursor_schema.is_valid(&json!(decoded)), "{malformed} matches {pattern}");
        let r = gw.client.get(&format!("/v1/records?cursor={malformed}"), key).await;
        assert!(r.problem(400, "invalid-query")["detail"].as_str().unwrap().contains("cursor"), "{malformed}");
        assert_documented(&doc, "get", "/v1/records", &r);
    }
}

#[tokio::test]
async fn an_empty_record_list_parameter_is_refused_not_ignored() {
    let gw = Setup::new().start().await;
    let doc = partner_document(&gw, "on-vital-stats").await;
    let key = gw.key("on-vital-stats");
    gw.post_record("on-vital-stats", "birth-registration", &record("birth-registration-1.1.json")).await;
    // `?since=` usually stands for an unset variable: answering every record would hide it.
    for (query, parameter) in [
        ("since=", "since"),
        ("since", "since"),
        ("status=", "status"),
        ("limit=", "limit"),
        ("cursor=", "cursor"),
        ("limit=%2B5", "limit"),
        ("since=2026-11-29T00:00:00%", "since"),
        ("since=2026-11-29T00:00:00+01:00", "since"),
    ] {
        let r = gw.client.get(&format!("/v1/records?{query}"), key).await;
        let problem = r.problem(400, "invalid-query");
        assert!(problem["detail"].as_str().unwrap().contains(parameter), "{query}: {problem}");
        assert_documented(&doc, "get", "/v1/records", &r);
    }
    // Valid values, percent-encoded or not, are taken.
    for query in [
        "since=2026-01-01T00:00:00Z",
        "since=2026-01-01T01:00:00%2B01:00",
        "status=pending&limit=5",
        "status=%64elivered",
    ] {
        let r = gw.client.get(&format!("/v1/records?{query}"), key).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text());
        assert_documented(&doc, "get", "/v1/records", &r);
    }
    let description = doc["paths"]["/v1/records"]["get"]["description"].as_str().unwrap();
    assert!(description.contains("given empty") && description.contains("400"), "{description}");
}
