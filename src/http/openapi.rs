//! The API contract: OpenAPI 3.1 documents of the partner API and of the admin API.
//!
//! Both live beside this file as JSON (`openapi/partner.json`, `openapi/admin.json`) and are
//! compiled into the binary. The admin listener serves its document as written at
//! `GET /admin/v1/openapi.json`. The partner document is drawn up for each caller at
//! `GET /v1/openapi.json`: to the written routes it adds one operation per record type the caller
//! sends (`POST /v1/records/{type}` under push agreements, `POST /v1/requests/{type}` under
//! request agreements, `POST /v1/validate/{type}` under either), whose bodies are the agreed JSON
//! Schemas themselves, bundled into `components.schemas`; no other partner's type appears.
//!
//! A schema file becomes the component named after its path inside the schemas directory
//! (`birth-registration/1.1.json` is `birth-registration.1.1`), as written but for its `$ref`s
//! between files, which are rewritten to point inside the document
//! (`../common/definitions.json#/$defs/address` becomes
//! `#/components/schemas/common.definitions/$defs/address`). OpenAPI 3.1 schemas are JSON Schema
//! 2020-12, so nothing else changes.
//!
//! **Invariant:** the documents describe the code. `tests/it/openapi.rs` checks that every
//! documented operation is routed, every route is documented, only the caller's types are listed
//! and the bundled schemas mean what the files in `schemas/` mean; `.ci/schemathesis` checks the
//! running gateway's answers against the document.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::config::{Agreement, Config, Mode};
use crate::policy::{FieldList, Route, Segment};
use crate::schema::{CompiledSchema, SchemaCatalog, Version};

/// The admin API's document, served as written.
pub const ADMIN_DOCUMENT: &str = include_str!("openapi/admin.json");

/// The partner API's document without any record type: the routes that are the same for every
/// caller and every shared component.
const PARTNER_TEMPLATE: &str = include_str!("openapi/partner.json");

static PARTNER: LazyLock<Value> = LazyLock::new(|| {
    // The template is compiled in, and a unit test parses it.
    serde_json::from_str(PARTNER_TEMPLATE).expect("openapi/partner.json is JSON") // invariant: tested below
});

/// The partner API's document for `partner`: the written routes, plus the operations and the
/// schemas of each record type it sends.
pub fn partner_document(config: &Config, partner: &str) -> Value {
    let mut document = PARTNER.clone();
    let now = OffsetDateTime::now_utc();
    let mut sent: BTreeMap<&str, Vec<&Arc<Agreement>>> = BTreeMap::new();
    for agreement in config.agreements.iter().filter(|a| &*a.sender == partner) {
        sent.entry(&agreement.record_type).or_default().push(agreement);
    }
    let mut paths = Map::new();
    let mut files = BTreeSet::new();
    for (&record_type, agreements) in &sent {
        // Every version an agreement accepts is in the catalog (checked at load).
        let Some(schemas) = config.catalog.record_type(record_type) else { continue };
        let versions: BTreeSet<Version> = agreements.iter().flat_map(|a| a.versions.iter().copied()).collect();
        let requests: Vec<&CompiledSchema> =
            versions.iter().filter_map(|v| schemas.version(*v)).map(|s| &s.request).collect();
        files.extend(requests.iter().map(|s| s.path.clone()));
        let body = request_body(&requests);
        let version = schema_version_parameter(&versions, agreements);
        paths.insert(format!("/v1/validate/{record_type}"), json!({"post": validate(record_type, &version, &body)}));
        if agreements.iter().any(|a| a.mode == Mode::Push) {
            paths.insert(format!("/v1/records/{record_type}"), json!({"post": submit(record_type, &version, &body)}));
        }
        if agreements.iter().any(|a| a.mode == Mode::Request) {
            // The responder the handler would pick now; if no agreement is in force (403), the
            // one it would pick once they are.
            let route = crate::policy::route(config, partner, record_type, now)
                .unwrap_or_else(|_| Route { agreements: agreements.iter().map(|a| Arc::clone(a)).collect() });
            let mut answers = Vec::new();
            for v in &versions {
                let (Some(response), Some((agreement, _))) =
                    (schemas.version(*v).and_then(|s| s.response.as_ref()), route.responder(*v))
                else {
                    continue;
                };
                files.insert(response.path.clone());
                answers.push(answer_schema(&config.catalog, &response.path, agreement.response_fields.as_ref()));
            }
            paths.insert(
                format!("/v1/requests/{record_type}"),
                json!({"post": request(record_type, &version, &body, answers)}),
            );
        }
    }
    if let Some(Value::Object(written)) = document.get_mut("paths") {
        written.extend(paths);
    }
    let readable: BTreeSet<String> =
        super::partner::schema_entries(config, partner).into_iter().map(|(record_type, _, _)| record_type).collect();
    if !readable.is_empty()
        && let Some(Value::Object(schema)) = document.pointer_mut("/components/parameters/SchemaRecordType/schema")
    {
        schema.insert("enum".to_owned(), json!(readable));
    }
    if let Some(Value::Object(components)) = document.pointer_mut("/components/schemas") {
        components.extend(bundle(&config.catalog, &files));
    }
    document
}

/// The component that holds the schema file at `path` (inside the schemas directory).
pub fn component_name(path: &str) -> String {
    path.trim_end_matches(".json").replace('/', ".")
}

fn component_ref(path: &str) -> String {
    format!("#/components/schemas/{}", component_name(path))
}

fn response(name: &str) -> Value {
    json!({"$ref": format!("#/components/responses/{name}")})
}

fn parameter(name: &str) -> Value {
    json!({"$ref": format!("#/components/parameters/{name}")})
}

fn header(name: &str) -> Value {
    json!({"$ref": format!("#/components/headers/{name}")})
}

/// The body of a record of one type: any accepted version's schema (`Schema-Version` says which
/// one the gateway checks it against).
fn request_body(schemas: &[&CompiledSchema]) -> Value {
    let refs: Vec<Value> = schemas.iter().map(|s| json!({"$ref": component_ref(&s.path)})).collect();
    let schema = match refs.as_slice() {
        [one] => one.clone(),
        _ => json!({"anyOf": refs}),
    };
    json!({
        "required": true,
        "description": "A JSON document valid under the schema of the version named by `Schema-Version`.",
        "content": {"application/json": {"schema": schema}}
    })
}

/// `Schema-Version`: the versions the caller's agreements accept, and which are deprecated.
fn schema_version_parameter(versions: &BTreeSet<Version>, agreements: &[&Arc<Agreement>]) -> Value {
    let mut description = format!(
        "The schema version of the body, `MAJOR.MINOR`. Without it, the newest version the agreements in force accept{}.",
        versions.last().map(|v| format!(" ({v})")).unwrap_or_default()
    );
    for version in versions {
        if let Some(sunset) = agreements.iter().filter_map(|a| a.sunset.get(version)).min() {
            description.push_str(&format!(
                " {version} is deprecated: answers carry `Deprecation` and `Sunset`, and it is accepted until {}.",
                crate::clock::rfc3339_ms(crate::clock::to_ms(*sunset))
            ));
        }
    }
    json!({"name": "Schema-Version", "in": "header", "description": description, "schema": {"type": "string", "enum": versions}})
}

/// Adds the answers every call that takes a record body can give, checked in the design's
/// order before its own work: `bad_body` names the 400 (a record, or any body).
fn with_intake_errors(mut operation: Value, bad_body: &str) -> Value {
    let common = [
        ("400", bad_body),
        ("401", "Unauthenticated"),
        ("403", "NotInForce"),
        ("404", "RecordTypeNotFound"),
        ("408", "BodyTimeout"),
        ("413", "TooLarge"),
        ("415", "UnsupportedMediaType"),
        ("422", "SchemaViolation"),
        ("429", "RateLimited"),
        ("431", "HeadersTooLarge"),
    ];
    if let Some(Value::Object(responses)) = operation.get_mut("responses") {
        for (status, name) in common {
            responses.insert(status.to_owned(), response(name));
        }
    }
    operation
}

fn submit(record_type: &str, version: &Value, body: &Value) -> Value {
    let operation = json!({
        "operationId": format!("submit.{record_type}"),
        "tags": ["records"],
        "summary": format!("Send a {record_type} record: validate, store, then deliver it to every recipient."),
        "description": "Answers 202 only once the record, one delivery per recipient (each holding only the fields of its agreement) and an audit entry are committed; a rejected record is never stored.",
        "parameters": [version, parameter("IdempotencyKey"), parameter("Traceparent"), parameter("AcceptLanguage")],
        "requestBody": body,
        "responses": {
            "202": {
                "description": "Accepted and stored: the receipt, signed by the gateway.",
                "headers": {
                    "Location": header("Location"),
                    "Idempotent-Replayed": header("IdempotentReplayed"),
                    "Deprecation": header("Deprecation"),
                    "Sunset": header("Sunset")
                },
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Receipt"}}}
            },
            "409": response("IdempotencyConflict"),
            "503": response("StoreUnavailable")
        }
    });
    with_intake_errors(operation, "MalformedRecord")
}

fn validate(record_type: &str, version: &Value, body: &Value) -> Value {
    let operation = json!({
        "operationId": format!("validate.{record_type}"),
        "tags": ["records"],
        "summary": format!("Dry run: check a {record_type} record as sending it would, and store nothing."),
        "parameters": [version, parameter("AcceptLanguage")],
        "requestBody": body,
        "responses": {
            "200": {
                "description": "The record is valid.",
                "headers": {"Deprecation": header("Deprecation"), "Sunset": header("Sunset")},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ValidationResult"}}}
            },
        }
    });
    with_intake_errors(operation, "MalformedBody")
}

fn request(record_type: &str, version: &Value, body: &Value, answers: Vec<Value>) -> Value {
    let answer = match answers.as_slice() {
        [one] => one.clone(),
        [] => json!({"type": "object"}),
        _ => json!({"anyOf": answers}),
    };
    let operation = json!({
        "operationId": format!("request.{record_type}"),
        "tags": ["requests"],
        "summary": format!("Ask the responder of the {record_type} agreement, synchronously."),
        "description": "The request is checked like a record, cut down to the responder's fields and sent to it; its answer is checked against the agreed response schema and cut down to the agreement's `response_fields`. Both sides are audited, as digests.",
        "parameters": [version, parameter("Traceparent"), parameter("AcceptLanguage")],
        "requestBody": body,
        "responses": {
            "200": {
                "description": "The responder's answer, valid under the response schema, with only the agreement's `response_fields`.",
                "headers": {"Passerelle-Request-Id": header("RequestId")},
                "content": {"application/json": {"schema": answer}}
            },
            "502": response("UpstreamFailed"),
            "503": response("UpstreamUnavailable"),
            "504": response("UpstreamTimeout")
        }
    });
    with_intake_errors(operation, "MalformedBody")
}

/// What a request answers: the responder's answer (valid under the response schema at
/// `response`) cut down to `fields`. A field selected whole keeps its schema and, if the
/// response schema requires it, stays required; a field selected only in part is any value.
fn answer_schema(catalog: &SchemaCatalog, response: &str, fields: Option<&FieldList>) -> Value {
    let unknown = json!({"type": "object", "description": "The responder's answer, cut down to the agreement's `response_fields`."});
    let (Some(fields), Some(Value::Object(schema))) = (fields, catalog.document(response).map(|d| &**d)) else {
        return unknown;
    };
    let declared = schema.get("properties").and_then(Value::as_object);
    let mut properties = Map::new();
    let mut whole = BTreeSet::new();
    for pointer in fields.pointers() {
        // Only an object answer is cut down by name; anything else is described loosely.
        let Some(Segment::Key(name)) = pointer.segments().first() else {
            return unknown;
        };
        if pointer.segments().len() == 1 && declared.is_some_and(|d| d.contains_key(name)) {
            let escaped = name.replace('~', "~0").replace('/', "~1");
            properties
                .insert(name.clone(), json!({"$ref": format!("{}/properties/{escaped}", component_ref(response))}));
            whole.insert(name.clone());
        } else if !whole.contains(name) {
            properties.insert(name.clone(), json!({}));
        }
    }
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).filter(|name| whole.contains(*name)).collect())
        .unwrap_or_default();
    json!({
        "type": "object",
        "description": "The responder's answer, cut down to the agreement's `response_fields`.",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}

/// The schema files at `paths` and every file they reference, as components. A file whose
/// references cannot be rewritten into the document (an `$id`, an anchor, a URI outside the
/// schemas directory) is embedded with every `$ref` inlined instead, as the validator sees it.
fn bundle(catalog: &SchemaCatalog, paths: &BTreeSet<String>) -> Map<String, Value> {
    let mut components = Map::new();
    for path in paths {
        match bundle_from(catalog, path) {
            Some(files) => {
                for (file, schema) in files {
                    components.insert(component_name(&file), schema);
                }
            }
            None => {
                let compiled = catalog
                    .types()
                    .flat_map(|t| t.versions.values())
                    .flat_map(|v| std::iter::once(&v.request).chain(v.response.as_ref()))
                    .find(|s| &s.path == path);
                if let Some(compiled) = compiled {
                    let mut schema = compiled.dereferenced().clone();
                    if let Value::Object(o) = &mut schema {
                        o.remove("$schema");
                    }
                    components.insert(component_name(path), schema);
                }
            }
        }
    }
    components
}

/// `root` and the files it references, each with its references rewritten.
fn bundle_from(catalog: &SchemaCatalog, root: &str) -> Option<Vec<(String, Value)>> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut queue = vec![root.to_owned()];
    while let Some(path) = queue.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        if !component_name(&path).bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return None;
        }
        let mut schema = Value::clone(catalog.document(&path)?);
        if let Value::Object(o) = &mut schema {
            // The document's `jsonSchemaDialect` says the same.
            o.remove("$schema");
        }
        rewrite_refs(&mut schema, &path, &mut queue)?;
        out.push((path, schema));
    }
    Some(out)
}

/// Rewrites every `$ref` of the schema `value` (found in the file at `file`) to point inside the
/// document, and queues the files it points at.
fn rewrite_refs(value: &mut Value, file: &str, targets: &mut Vec<String>) -> Option<()> {
    let Value::Object(map) = value else {
        return Some(());
    };
    if ["$id", "$anchor", "$dynamicRef", "$dynamicAnchor"].iter().any(|k| map.contains_key(*k)) {
        return None;
    }
    for (key, child) in map.iter_mut() {
        match key.as_str() {
            "$ref" => {
                let Value::String(reference) = child else { return None };
                let (target, fragment) = resolve(file, reference)?;
                *reference = format!("{}{fragment}", component_ref(&target));
                targets.push(target);
            }
            // Instances, not schemas: a `$ref` in there is data.
            "enum" | "const" | "default" | "examples" => {}
            // Maps from names to schemas.
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas" => {
                if let Value::Object(named) = child {
                    for schema in named.values_mut() {
                        rewrite_refs(schema, file, targets)?;
                    }
                }
            }
            _ => match child {
                Value::Array(items) => {
                    for item in items {
                        rewrite_refs(item, file, targets)?;
                    }
                }
                other => rewrite_refs(other, file, targets)?,
            },
        }
    }
    Some(())
}

/// The file and JSON Pointer fragment a `$ref` of `file` names: a path relative to the file's
/// directory that stays inside the schemas directory, and a pointer or nothing.
fn resolve(file: &str, reference: &str) -> Option<(String, String)> {
    let (uri, fragment) = reference.split_once('#').unwrap_or((reference, ""));
    if !(fragment.is_empty() || fragment.starts_with('/')) || fragment.contains('%') {
        return None;
    }
    if uri.is_empty() {
        return Some((file.to_owned(), fragment.to_owned()));
    }
    if uri.starts_with('/') || uri.contains([':', '?', '%', '\\']) {
        return None;
    }
    let mut parts: Vec<&str> = file.split('/').collect();
    parts.pop();
    for segment in uri.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some((parts.join("/"), fragment.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_documents_are_json() {
        assert_eq!(PARTNER["openapi"], "3.1.0");
        let admin: Value = serde_json::from_str(ADMIN_DOCUMENT).unwrap();
        assert_eq!(admin["openapi"], "3.1.0");
    }

    #[test]
    fn references_resolve_inside_the_schemas_directory_only() {
        let r = |reference| resolve("birth-registration/1.1.json", reference);
        assert_eq!(
            r("../common/definitions.json#/$defs/address"),
            Some(("common/definitions.json".to_owned(), "/$defs/address".to_owned()))
        );
        assert_eq!(r("#/$defs/x"), Some(("birth-registration/1.1.json".to_owned(), "/$defs/x".to_owned())));
        assert_eq!(r("./1.0.json"), Some(("birth-registration/1.0.json".to_owned(), String::new())));
        assert_eq!(r("../../etc/passwd"), None);
        assert_eq!(r("https://example.org/s.json"), None);
        assert_eq!(r("#anchor"), None);
        assert_eq!(r("/abs.json"), None);
    }

    #[test]
    fn references_are_rewritten_in_schemas_and_left_alone_in_instances() {
        let mut schema = json!({
            "properties": {
                "a": {"$ref": "../common/definitions.json#/$defs/address"},
                "enum": {"items": [{"$ref": "#/$defs/x"}]}
            },
            "const": {"$ref": "not a reference"},
            "$defs": {"x": {"type": "string"}}
        });
        let mut targets = Vec::new();
        rewrite_refs(&mut schema, "t/1.0.json", &mut targets).unwrap();
        assert_eq!(schema["properties"]["a"]["$ref"], "#/components/schemas/common.definitions/$defs/address");
        assert_eq!(schema["properties"]["enum"]["items"][0]["$ref"], "#/components/schemas/t.1.0/$defs/x");
        assert_eq!(schema["const"]["$ref"], "not a reference");
        assert_eq!(targets, ["common/definitions.json", "t/1.0.json"]);
        assert!(rewrite_refs(&mut json!({"$id": "x", "type": "string"}), "t/1.0.json", &mut targets).is_none());
    }
}
