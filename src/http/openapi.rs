//! The API contract: OpenAPI 3.1 documents of the partner API and of the admin API.
//!
//! Both live beside this file as JSON (`openapi/partner.json`, `openapi/admin.json`) and are
//! compiled into the binary. The admin listener serves its document as written at
//! `GET /admin/v1/openapi.json`. The partner document is drawn up for each caller at
//! `GET /v1/openapi.json`: to the written routes it adds one operation per record type the caller
//! sends (`POST /v1/records/{type}` under push agreements, `POST /v1/requests/{type}` under
//! request agreements, `POST /v1/validate/{type}` under either), whose bodies are the agreed JSON
//! Schemas themselves, bundled into `components.schemas`, with examples drawn from the caller's
//! own agreements; no other partner's type appears, and no component the caller's operations do
//! not use.
//!
//! What the caller receives is there too. Each view it may read (the JSON Schema of exactly what
//! it receives under one agreement in one version, [`crate::policy::Agreement::view`]) is the
//! component `view.<agreement>.<type>.<version>`, given as the body of what it is sent: for a push
//! recipient, one `webhooks` entry per record type (the POST the gateway makes to
//! `{endpoint}/{type}`, its headers, and for a request agreement's responder the answer it must
//! give); for a pull recipient, the `body` of each delivery its mailbox hands out, with an example
//! of its own.
//!
//! A schema file becomes the component named after its path inside the schemas directory
//! (`birth-registration/1.1.json` is `birth-registration.1.1`), as written but for its `$defs`
//! and its `$ref`s between files. Each `$defs` entry that is referenced becomes a component of
//! its own, named after its file and its name (`common/definitions.json#/$defs/address` is
//! `common.definitions.address`), and every `$ref` is rewritten to point inside the document. So
//! every component is referenced as a whole, and a caller sees only the definitions its schemas
//! use. OpenAPI 3.1 schemas are JSON Schema 2020-12, so nothing else changes.
//!
//! OpenAPI cannot make a body's schema depend on a header, and a record's schema is the one of
//! the version `Schema-Version` names. So a record body is documented as valid under any accepted
//! version (`anyOf`), with one example per version, and the description says that a record valid
//! only under another version than the one named is answered 422, which is listed.
//!
//! **Invariant:** the documents describe the code. `tests/it/openapi.rs` checks that every
//! documented operation is routed, every route is documented, only the caller's types are listed,
//! the bundled schemas mean what the files in `schemas/` mean and every example is valid under
//! its schema; `tests/it/views.rs` that the bundled views are the served ones and what a
//! recipient is sent fits them; `.ci/schemathesis` checks the running gateway's answers against the document, and
//! lints both documents with Redocly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock};

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::audit::receipt::{Proof, Receipt, ReceiptDelivery};
use crate::config::Config;
use crate::pointer::Segment;
use crate::policy::{Agreement, Mode};
use crate::policy::{FieldList, Route};
use crate::schema::{CompiledSchema, SchemaCatalog, Version};

mod components;
mod received;

use crate::store::{DeliveryStatus, DeliveryView, RecordState, RecordView};
pub use components::component_name;
use components::{add_schema_file, component_ref, drop_unused_components, embed};
use received::{batch_webhook, delivery_webhooks, inbox_bodies, received_views};

/// The admin API's document, served as written.
pub const ADMIN_DOCUMENT: &str = include_str!("openapi/admin.json");

/// The partner API's document without any record type: the routes that are the same for every
/// caller and every shared component.
const PARTNER_TEMPLATE: &str = include_str!("openapi/partner.json");

static PARTNER: LazyLock<Value> = LazyLock::new(|| {
    // The template is compiled in, and a unit test parses it.
    serde_json::from_str(PARTNER_TEMPLATE).expect("openapi/partner.json is JSON") // invariant: tested below
});

/// The sample records of the shipped record types (the ones the README's demo sends), by type and
/// version, shown as examples of the bodies they fit. A schema's own `examples` come first, and a
/// sample is shown only if it is valid under the loaded schema of its version, so a deployment
/// whose schemas differ never shows a wrong example.
const SAMPLES: [(&str, &str, &str); 4] = [
    ("address-change", "1.0", include_str!("../../tests/data/records/address-change-1.0.json")),
    ("birth-registration", "1.0", include_str!("../../tests/data/records/birth-registration-1.0.json")),
    ("birth-registration", "1.1", include_str!("../../tests/data/records/birth-registration-1.1.json")),
    ("sin-validation", "1.0", include_str!("../../tests/data/records/sin-validation-1.0.json")),
];

/// A sample answer of each shipped response schema, as [`SAMPLES`].
const RESPONSE_SAMPLES: [(&str, &str, &str); 1] =
    [("sin-validation", "1.0", include_str!("../../tests/data/records/sin-validation-1.0.response.json"))];

/// The instant and the record id the examples show.
const EXAMPLE_TIME: &str = "2026-11-29T17:00:00.000Z";
const EXAMPLE_RECORD_ID: &str = "019ad0a5-5c00-7c3a-9d2e-6b1f0a4c8e21";

/// The partner API's document for `partner`: the written routes, plus the operations, schemas
/// and examples of each record type it sends, without the components it has no use for.
pub fn partner_document(config: &Config, partner: &str) -> Value {
    let mut document = PARTNER.clone();
    let now = OffsetDateTime::now_utc();
    let mut sent: BTreeMap<&str, Vec<&Arc<Agreement>>> = BTreeMap::new();
    for agreement in config.built.agreements.iter().filter(|a| &*a.sender == partner) {
        sent.entry(&agreement.record_type).or_default().push(agreement);
    }
    let mut paths = Map::new();
    let mut components = Map::new();
    let mut records = Vec::new();
    for (&record_type, agreements) in &sent {
        // Every version an agreement accepts is in the catalog (checked at load).
        let Some(schemas) = config.built.catalog.record_type(record_type) else { continue };
        let versions: BTreeSet<Version> = agreements.iter().flat_map(|a| a.versions.iter().copied()).collect();
        let requests: Vec<(Version, &CompiledSchema)> =
            versions.iter().filter_map(|v| schemas.version(*v).map(|s| (*v, &s.request))).collect();
        for (_, schema) in &requests {
            add_schema_file(&config.built.catalog, schema, &mut components);
        }
        // The agreements the handler would use now; if none is in force (403), the ones it would
        // use once they are.
        let route = crate::policy::route(&config.built.agreements, partner, record_type, now)
            .unwrap_or_else(|_| Route { agreements: agreements.iter().map(|a| Arc::clone(a)).collect() });
        let Some(&newest) = versions.last() else { continue };
        let body = request_body(record_type, &requests);
        let version = schema_version_parameter(&versions, agreements);
        let validated = json!({"valid": true, "record_type": record_type, "schema_version": newest});
        paths.insert(
            format!("/v1/validate/{record_type}"),
            json!({"post": validate(record_type, &version, &body, validated)}),
        );
        if agreements.iter().any(|a| a.mode == Mode::Push) {
            let receipt = receipt_example(partner, record_type, newest, &route);
            paths.insert(
                format!("/v1/records/{record_type}"),
                json!({"post": submit(record_type, &version, &body, receipt)}),
            );
            records.push(record_example(record_type, newest, &route));
        }
        if agreements.iter().any(|a| a.mode == Mode::Request) {
            let mut answers = Vec::new();
            let mut examples = Vec::new();
            for v in &versions {
                let (Some(response), Some((agreement, _))) =
                    (schemas.version(*v).and_then(|s| s.response.as_ref()), route.responder(*v))
                else {
                    continue;
                };
                let fields = agreement.response_fields.as_ref();
                answers.push(answer_schema(&config.built.catalog, response, fields, &mut components));
                examples.extend(
                    sample(&RESPONSE_SAMPLES, record_type, *v, response)
                        .map(|answer| fields.map_or(answer.clone(), |f| f.project(&answer))),
                );
            }
            paths.insert(
                format!("/v1/requests/{record_type}"),
                json!({"post": request(record_type, &version, &body, answers, examples.pop())}),
            );
        }
    }
    if let Some(Value::Object(written)) = document.get_mut("paths") {
        written.extend(paths);
    }
    // What the caller receives: each view a component, shown where it is sent.
    let received = received_views(config, partner, &mut components);
    match config.partner(partner).and_then(|p| p.delivery.as_ref()) {
        Some(crate::delivery::DeliveryMode::Push(endpoint)) if !received.is_empty() => {
            let mut webhooks = delivery_webhooks(&config.built.catalog, &received, &mut components);
            if let Some(batch) = endpoint.batch {
                webhooks.insert("batch".to_owned(), batch_webhook(&mut document, &received, batch));
            }
            document["webhooks"] = Value::Object(webhooks);
            if let Some(Value::Array(tags)) = document.get_mut("tags") {
                tags.push(json!({"name": "deliveries", "description": "What the gateway sends the caller: every record it receives, as a webhook to its endpoint."}));
            }
        }
        Some(crate::delivery::DeliveryMode::Pull) => {
            let notices = config.partner(partner).is_some_and(|p| p.notify);
            inbox_bodies(&mut document, partner, &received, notices);
        }
        _ => {}
    }
    let agreements: BTreeSet<&str> = received.iter().map(|r| &*r.agreement.id).collect();
    if !agreements.is_empty()
        && let Some(Value::Object(schema)) = document.pointer_mut("/components/parameters/ViewAgreement/schema")
    {
        schema.insert("enum".to_owned(), json!(agreements));
    }
    let readable: BTreeSet<String> =
        super::discovery::schema_entries(config, partner).into_iter().map(|(record_type, _, _)| record_type).collect();
    if !readable.is_empty()
        && let Some(Value::Object(schema)) = document.pointer_mut("/components/parameters/SchemaRecordType/schema")
    {
        schema.insert("enum".to_owned(), json!(readable));
    }
    let examples = [
        (
            "/paths/~1v1~1schemas/get/responses/200/content/application~1json",
            Some(super::discovery::schema_list(config, partner)),
        ),
        (
            "/paths/~1v1~1agreements/get/responses/200/content/application~1json",
            Some(super::discovery::agreement_list(config, partner, now)),
        ),
        ("/paths/~1v1~1records~1{record_id}/get/responses/200/content/application~1json", records.first().cloned()),
        (
            "/paths/~1v1~1records/get/responses/200/content/application~1json",
            records.first().map(|r| json!({"records": [r], "next_cursor": next_cursor_example(r)})),
        ),
    ];
    // The mailbox's bounds are the deployment's.
    let inbox = &config.settings.delivery.inbox;
    let bounds = [
        ("/paths/~1v1~1inbox/get/parameters/0/schema", json!(inbox.max_batch)),
        ("/paths/~1v1~1inbox/get/parameters/1/schema", json!(inbox.max_wait.as_secs())),
    ];
    for (pointer, maximum) in bounds {
        if let Some(Value::Object(schema)) = document.pointer_mut(pointer) {
            schema.insert("maximum".to_owned(), maximum);
            if schema.get("default").and_then(Value::as_u64).is_some_and(|d| d > inbox.max_batch as u64) {
                schema.insert("default".to_owned(), json!(inbox.max_batch));
            }
        }
    }
    for settlement in ["Acknowledgement", "Refusal"] {
        let pointer = format!("/components/schemas/{settlement}/properties/deliveries");
        if let Some(Value::Object(list)) = document.pointer_mut(&pointer) {
            list.insert("maxItems".to_owned(), json!(inbox.max_batch));
        }
    }
    for (pointer, example) in examples {
        if let (Some(example), Some(Value::Object(media))) = (example, document.pointer_mut(pointer)) {
            media.insert("example".to_owned(), example);
        }
    }
    if let Some(Value::Object(schemas)) = document.pointer_mut("/components/schemas") {
        schemas.extend(components);
    }
    drop_unused_components(&mut document);
    document
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

/// An example for a body of `schema` (of `record_type`, `version`): the schema's own first valid
/// `examples` entry, else the shipped sample if the schema accepts it.
fn sample(
    samples: &[(&str, &str, &str)],
    record_type: &str,
    version: Version,
    schema: &CompiledSchema,
) -> Option<Value> {
    let own = schema.document.get("examples").and_then(Value::as_array).into_iter().flatten().cloned();
    let version = version.to_string();
    let shipped = samples
        .iter()
        .filter(|(t, v, _)| *t == record_type && *v == version)
        .filter_map(|(_, _, text)| serde_json::from_str::<Value>(text).ok());
    own.chain(shipped).find(|value| schema.validate(value).is_empty())
}

/// The body of a record of one type: valid under the schema of the version `Schema-Version`
/// names. OpenAPI cannot tie a body to a header, so the schema is any accepted version's, and
/// the description says what the header decides.
fn request_body(record_type: &str, versions: &[(Version, &CompiledSchema)]) -> Value {
    let refs: Vec<Value> = versions.iter().map(|(_, s)| json!({"$ref": component_ref(&s.path)})).collect();
    let schema = match refs.as_slice() {
        [one] => one.clone(),
        _ => json!({"anyOf": refs}),
    };
    let newest = versions.last().map(|(v, _)| v.to_string()).unwrap_or_default();
    let mut description = format!(
        "A {record_type} record, valid under the schema of the version `Schema-Version` names ({newest} when it is absent)."
    );
    if versions.len() > 1 {
        let each: Vec<String> = versions.iter().map(|(v, s)| format!("{v}: `{}`", component_ref(&s.path))).collect();
        description.push_str(&format!(
            " OpenAPI cannot make a body's schema depend on a header, so the schema given here accepts a record of any accepted version; \
             the gateway checks it against the one version named, and a record valid only under another version is answered 422 \
             `schema-violation` (for example a {newest} record that uses fields its declared older version does not have). \
             The schema of each version: {}.",
            each.join(", ")
        ));
    }
    let mut media = json!({"schema": schema});
    let examples: Map<String, Value> = versions
        .iter()
        .filter_map(|(v, s)| {
            sample(&SAMPLES, record_type, *v, s).map(|value| {
                (
                    v.to_string(),
                    json!({"summary": format!("A {record_type} record of version {v}, sent with `Schema-Version: {v}`."), "value": value}),
                )
            })
        })
        .collect();
    if !examples.is_empty() {
        media["examples"] = Value::Object(examples);
    }
    json!({"required": true, "description": description, "content": {"application/json": media}})
}

/// `Schema-Version`: the versions the caller's agreements accept, and which are deprecated.
fn schema_version_parameter(versions: &BTreeSet<Version>, agreements: &[&Arc<Agreement>]) -> Value {
    let mut description = format!(
        "The schema version of the body, `MAJOR.MINOR`, sent once. Without it, the newest version the agreements in force accept{}. \
         A value not in this syntax (digits without leading zeros), or the header sent twice, is answered 400 `invalid-header`; \
         a version the agreements do not accept, 404 `unsupported-schema-version`.",
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
/// order before its own work: `bad_request` names the 400 (a record, or any body).
fn with_intake_errors(mut operation: Value, bad_request: &str) -> Value {
    let common = [
        ("400", bad_request),
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

fn submit(record_type: &str, version: &Value, body: &Value, receipt: Value) -> Value {
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
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Receipt"}, "example": receipt}}
            },
            "409": response("IdempotencyConflict"),
            "503": response("StoreUnavailable")
        }
    });
    with_intake_errors(operation, "MalformedRecord")
}

fn validate(record_type: &str, version: &Value, body: &Value, validated: Value) -> Value {
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
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ValidationResult"}, "example": validated}}
            },
        }
    });
    with_intake_errors(operation, "MalformedBody")
}

fn request(record_type: &str, version: &Value, body: &Value, answers: Vec<Value>, example: Option<Value>) -> Value {
    let answer = match answers.as_slice() {
        [one] => one.clone(),
        [] => json!({"type": "object"}),
        _ => json!({"anyOf": answers}),
    };
    let mut media = json!({"schema": answer});
    if let Some(example) = example {
        media["example"] = example;
    }
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
                "content": {"application/json": media}
            },
            "502": response("UpstreamFailed"),
            "503": response("UpstreamUnavailable"),
            "504": response("UpstreamTimeout")
        }
    });
    with_intake_errors(operation, "MalformedBody")
}

/// The receipt a record of `record_type` sent now would get (with a made-up id and proof).
fn receipt_example(partner: &str, record_type: &str, version: Version, route: &Route) -> Value {
    let shares: Vec<_> = route.shares(version).map(|(share, _)| share).collect();
    let receipt = Receipt {
        record_id: EXAMPLE_RECORD_ID,
        record_type,
        schema_version: version.to_string(),
        sender: partner,
        received_at: EXAMPLE_TIME.to_owned(),
        deliveries: shares
            .iter()
            .map(|s| ReceiptDelivery { recipient: &s.recipient, agreement: &s.agreement, status: "queued" })
            .collect(),
    };
    let proof = Proof {
        seq: 1042,
        entry_hash: "6f1d0c5e2b8a4f7d9e3c1b0a5d8f2e4c6b9a7d3e1f0c8b5a2d4e6f8a0c1b3d5e".to_owned(),
        body_digest: "a3c5e7f9b1d2046e8c0a2b4d6f8e1c3a5b7d9f0e2c4a6b8d0f1e3c5a7b9d2f4e".to_owned(),
        signed_at: EXAMPLE_TIME.to_owned(),
        key_id: "5c1e9a7b2d4f6e80".to_owned(),
        format: Some(3),
        signature: "9e".repeat(64),
    };
    let mut value = serde_json::to_value(&receipt).unwrap_or_default();
    value["audit"] = serde_json::to_value(&proof).unwrap_or_default();
    // Format 3: the third of five receipts committed together, and its proof.
    value["audit"]["leaf_index"] = 2.into();
    value["audit"]["proof"] = json!(["1f".repeat(32), "2e".repeat(32), "3d".repeat(32)]);
    value["audit"]["tree"] = json!({"first_seq": 1040, "size": 5, "root": "4c".repeat(32)});
    value
}

/// A record of `record_type` as `GET /v1/records/{record_id}` shows it once delivered.
fn record_example(record_type: &str, version: Version, route: &Route) -> Value {
    let received_at = crate::clock::parse_rfc3339_ms(EXAMPLE_TIME).unwrap_or_default();
    // Delivered 120 ms after it was received.
    let delivered_at = received_at + 120;
    let view = RecordView {
        record_id: EXAMPLE_RECORD_ID.to_owned(),
        record_type: record_type.to_owned(),
        schema_version: version.to_string(),
        received_at,
        status: RecordState::Delivered,
        completed_at: Some(delivered_at),
        deliveries: route
            .shares(version)
            .map(|(share, _)| DeliveryView {
                recipient: share.recipient.to_string(),
                agreement: share.agreement.to_string(),
                status: DeliveryStatus::Delivered,
                attempts: 1,
                last_attempt_at: Some(delivered_at),
                delivered_at: Some(delivered_at),
                next_attempt_at: None,
                last_error: None,
            })
            .collect(),
    };
    serde_json::to_value(super::store_json::record(&view)).unwrap_or_default()
}

/// The `next_cursor` of a page that ends with `record`.
fn next_cursor_example(record: &Value) -> Value {
    let at = record["received_at"].as_str().and_then(crate::clock::parse_rfc3339_ms);
    match (at, record["record_id"].as_str()) {
        (Some(at), Some(id)) => json!(format!("{at}.{id}")),
        _ => Value::Null,
    }
}

/// What a request answers: the responder's answer (valid under the `response` schema) cut down
/// to `fields`. A field selected whole keeps its schema and, if the response schema requires it,
/// stays required; a field selected only in part is any value. The schemas of the fields are
/// copied in (with the components their references need added to `components`), since the
/// response schema as a whole is not the answer's.
fn answer_schema(
    catalog: &SchemaCatalog,
    response: &CompiledSchema,
    fields: Option<&FieldList>,
    components: &mut Map<String, Value>,
) -> Value {
    let unknown = json!({"type": "object", "description": "The responder's answer, cut down to the agreement's `response_fields`."});
    let (Some(fields), Value::Object(schema)) = (fields, &*response.document) else {
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
        match declared.and_then(|d| d.get(name)).filter(|_| pointer.segments().len() == 1) {
            Some(field) => {
                let field = embed(catalog, field, &response.path, components).unwrap_or_else(|| {
                    // As the validator sees it, every reference inlined.
                    response
                        .dereferenced()
                        .pointer(&format!("/properties/{}", crate::json::pointer_token(name)))
                        .cloned()
                        .unwrap_or(json!({}))
                });
                properties.insert(name.clone(), field);
                whole.insert(name.clone());
            }
            None if !whole.contains(name) => {
                properties.insert(name.clone(), json!({}));
            }
            None => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_documents_are_json() {
        assert_eq!(PARTNER["openapi"], "3.1.0");
        let admin: Value = serde_json::from_str(ADMIN_DOCUMENT).unwrap();
        assert_eq!(admin["openapi"], "3.1.0");
    }

    /// The documented `status` of a record and the `status` filter of the list are exactly the
    /// labels the code reads and writes.
    #[test]
    fn the_record_states_and_filters_are_the_stores_labels() {
        let labels = |all: Vec<&str>| json!(all);
        let filter = PARTNER["paths"]["/v1/records"]["get"]["parameters"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == "status"))
            .map(|p| p["schema"]["enum"].clone());
        let all_filters = crate::store::RecordFilter::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(filter, Some(labels(all_filters)));
        let states = RecordState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(PARTNER["components"]["schemas"]["RecordView"]["properties"]["status"]["enum"], labels(states));
    }

    /// Each operator call's documented `x-passerelle-permission` is the one the admin API
    /// checks, and the roles, credentials and permissions documented are the code's.
    #[test]
    fn each_admin_operation_documents_the_permission_it_needs() {
        use crate::operators::{Permission, Role};
        let admin: Value = serde_json::from_str(ADMIN_DOCUMENT).unwrap();
        let mut checked = 0;
        for route in super::super::admin::ROUTES.iter() {
            let super::super::admin::Operation::Operator(call) = route.operation else { continue };
            let operation = &admin["paths"][route.template][route.method.as_str().to_lowercase()];
            assert_eq!(
                operation["x-passerelle-permission"],
                call.needs().as_str(),
                "{} {}",
                route.method,
                route.template
            );
            assert!(operation["responses"]["403"].is_object(), "{} {} documents no 403", route.method, route.template);
            checked += 1;
        }
        assert!(checked >= 10);
        let schemas = &admin["components"]["schemas"];
        let roles: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(schemas["Grant"]["properties"]["role"]["enum"], json!(roles));
        let permissions: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(schemas["WhoAmI"]["properties"]["permissions"]["items"]["enum"], json!(permissions));
    }
}
