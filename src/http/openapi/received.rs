//! What the caller receives, in its partner document: each view it may read is a component, given
//! as the body of what it is sent (a push recipient's `webhooks`, a pull recipient's mailbox).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::components::{add_schema_file, component_ref};
use super::{EXAMPLE_RECORD_ID, SAMPLES, sample};
use crate::config::Config;
use crate::delivery::batch::BatchSettings;
use crate::policy::{Agreement, Mode};
use crate::schema::{SchemaCatalog, Version};

/// One view the caller reads: what it receives under `agreement` in `version`, its schema (a
/// reference to its component), and an example body when a sample record fits.
pub(super) struct ReceivedView<'c> {
    pub(super) agreement: &'c Agreement,
    version: Version,
    schema: Value,
    example: Option<Value>,
}

/// The views `partner` receives, each added to `components` as `view.<agreement>.<type>.<version>`
/// (inlined where that name is taken), in the order `GET /v1/schemas` lists them.
pub(super) fn received_views<'c>(
    config: &'c Config,
    partner: &str,
    components: &mut Map<String, Value>,
) -> Vec<ReceivedView<'c>> {
    let catalog = &config.built.catalog;
    let mut found = Vec::new();
    for (record_type, version, agreement) in super::super::discovery::view_entries(config, partner) {
        let Some(recipient) = agreement.recipient(partner) else { continue };
        let (Some(mut view), Some(schema)) = (
            agreement.view(catalog, recipient, version),
            catalog.record_type(record_type).and_then(|t| t.version(version)),
        ) else {
            continue;
        };
        if let Value::Object(v) = &mut view {
            // The document's `jsonSchemaDialect` says the same.
            v.remove("$schema");
        }
        let name = format!("view.{}.{record_type}.{version}", agreement.id);
        let schema_ref = if name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            && components.get(&name).is_none_or(|existing| *existing == view)
        {
            components.insert(name.clone(), view);
            json!({"$ref": format!("#/components/schemas/{name}")})
        } else {
            view
        };
        let example = sample(&SAMPLES, record_type, version, schema).map(|record| recipient.fields.project(&record));
        found.push(ReceivedView { agreement, version, schema: schema_ref, example });
    }
    found
}

/// `schemas` as one schema: the one, or any of them.
fn any_of(mut schemas: Vec<Value>) -> Value {
    if schemas.len() == 1 { schemas.remove(0) } else { json!({"anyOf": schemas}) }
}

/// Where each view is served, for descriptions: `birth-ottawa 1.1: GET /v1/schemas/...`.
fn view_list(views: &[&ReceivedView<'_>]) -> String {
    let each: Vec<String> = views
        .iter()
        .map(|r| {
            let href = super::super::discovery::view_href(&r.agreement.record_type, r.version, &r.agreement.id);
            format!("{} in {}: `GET {href}`", r.agreement.id, r.version)
        })
        .collect();
    each.join("; ")
}

/// The `webhooks` of a push recipient: one per record type it receives, the POST the gateway
/// makes to `{endpoint}/{type}`, whose body is valid under the view of the agreement and version
/// its headers name; under a request agreement, the answer it must give.
pub(super) fn delivery_webhooks(
    catalog: &SchemaCatalog,
    received: &[ReceivedView<'_>],
    components: &mut Map<String, Value>,
) -> Map<String, Value> {
    let mut by_type: BTreeMap<&str, Vec<&ReceivedView<'_>>> = BTreeMap::new();
    for r in received {
        by_type.entry(&r.agreement.record_type).or_default().push(r);
    }
    let mut webhooks = Map::new();
    for (record_type, views) in by_type {
        let schema = any_of(views.iter().map(|r| r.schema.clone()).collect());
        let agreements: BTreeSet<&str> = views.iter().map(|r| &*r.agreement.id).collect();
        let senders: BTreeSet<&str> = views.iter().map(|r| &*r.agreement.sender).collect();
        let schemas: BTreeSet<String> = views.iter().map(|r| format!("{record_type}/{}", r.version)).collect();
        let header = |name: &str, required: bool, description: &str, schema: Value| json!({"name": name, "in": "header", "required": required, "description": description, "schema": schema});
        let parameters = json!([
            header(
                "Idempotency-Key",
                true,
                "`<record id>.<recipient>`: the same for every attempt of one delivery, so a delivery received twice is recognised (for a request, its request id in place of the record id).",
                json!({"type": "string"})
            ),
            header(
                "Passerelle-Record-Id",
                true,
                "The record's id (a UUIDv7), as in the sender's receipt; for a request, the gateway's request id.",
                json!({"type": "string", "format": "uuid"})
            ),
            header(
                "Passerelle-Sender",
                true,
                "The partner that sent the record.",
                json!({"type": "string", "enum": senders})
            ),
            header(
                "Passerelle-Agreement",
                true,
                "The agreement the record is delivered under.",
                json!({"type": "string", "enum": agreements})
            ),
            header(
                "Passerelle-Schema",
                true,
                "`record-type/MAJOR.MINOR`: the version the body is in.",
                json!({"type": "string", "enum": schemas})
            ),
            header(
                crate::delivery::signature::HEADER,
                false,
                "A detached JWS (RFC 7797, EdDSA) over the exact body bytes and the delivery's facts, verified with a key of `GET /v1/keys`. Absent from request/response calls, and when the gateway is configured not to sign.",
                json!({"type": "string", "pattern": "^[A-Za-z0-9_-]+\\.\\.[A-Za-z0-9_-]+$"})
            ),
            header(
                "traceparent",
                false,
                "The record's W3C trace context, this delivery a hop of it.",
                json!({"type": "string"})
            ),
            header("tracestate", false, "The trace's vendor state, as the sender gave it.", json!({"type": "string"}))
        ]);
        let mut media = json!({"schema": schema});
        let examples: Map<String, Value> = views
            .iter()
            .filter_map(|r| {
                let value = r.example.clone()?;
                let summary =
                    format!("What a {record_type} record of version {} becomes under {}.", r.version, r.agreement.id);
                Some((format!("{}-{}", r.agreement.id, r.version), json!({"summary": summary, "value": value})))
            })
            .collect();
        if !examples.is_empty() {
            media["examples"] = Value::Object(examples);
        }
        // A request agreement's responder answers with its response schema.
        let answers: Vec<Value> = views
            .iter()
            .filter(|r| r.agreement.mode == Mode::Request)
            .filter_map(|r| catalog.record_type(record_type)?.version(r.version)?.response.as_ref())
            .map(|response| {
                add_schema_file(catalog, response, components);
                json!({"$ref": component_ref(&response.path)})
            })
            .collect();
        let mut received_answer = json!({"description": "Received: the delivery is delivered (audited and counted; the record's status shows it). Under a request agreement, the answer: it is checked against the response schema and cut down to the agreement's `response_fields` before the requester gets it."});
        if !answers.is_empty() {
            received_answer["content"] = json!({"application/json": {"schema": any_of(answers)}});
        }
        let description = format!(
            "The gateway POSTs every {record_type} record you receive to `{{endpoint}}/{record_type}` (the endpoint of your entry in the partners file), \
             with the headers below (and `Authorization: Bearer` when your entry names a token). The body is canonical JSON \
             (keys sorted, no whitespace) holding only the fields your agreement gives you, fixed when the record was accepted: \
             it is valid under the view of the agreement and version that `Passerelle-Agreement` and `Passerelle-Schema` name. \
             OpenAPI cannot make a body's schema depend on a header, so the schema given here is any of them; each one: {}.",
            view_list(&views)
        );
        webhooks.insert(
            record_type.to_owned(),
            json!({"post": {
                "operationId": format!("deliver.{record_type}"),
                "tags": ["deliveries"],
                "summary": format!("A {record_type} record delivered to you, cut down to your fields."),
                "description": description,
                "security": [],
                "parameters": parameters,
                "requestBody": {"required": true, "content": {"application/json": media}},
                "responses": {
                    "2XX": received_answer,
                    "4XX": {"description": "Refused: the delivery is dead at once (an operator may replay it), but for 408, 425 and 429, which are retried like a 5XX. Under a request agreement, the requester is answered 502 `upstream-error`."},
                    "5XX": {"description": "Not received now: retried with backoff (after `Retry-After` when given), dead after the attempt limit. Under a request agreement, the requester is answered 502 `upstream-error`."}
                }
            }}),
        );
    }
    webhooks
}

/// A pull recipient's mailbox: each delivery's `body` is valid under the view of its
/// `agreement` and `schema` version (or, with notices, is a completion notice), and the example
/// shows one of its own.
pub(super) fn inbox_bodies(document: &mut Value, partner: &str, received: &[ReceivedView<'_>], notices: bool) {
    delivery_bodies(document, received, notices);
    let example = "/paths/~1v1~1inbox/get/responses/200/content/application~1json/example";
    let Some(page) = document.pointer_mut(example) else { return };
    let Some((view, body)) = received.iter().find_map(|r| r.example.clone().map(|body| (r, body))) else {
        // Nothing to show that fits: an empty page.
        *page = json!({"lease": null, "deliveries": []});
        return;
    };
    page["lease"]["id"] = json!(format!("inbox/{partner}/019ad0a55c007c3a9d2e6b1f0a4c8e22"));
    if let Some(delivery) = page.pointer_mut("/deliveries/0") {
        let a = view.agreement;
        delivery["agreement"] = json!(&*a.id);
        delivery["sender"] = json!(&*a.sender);
        delivery["schema"] = json!(format!("{}/{}", a.record_type, view.version));
        delivery["idempotency_key"] = json!(format!("{EXAMPLE_RECORD_ID}.{partner}"));
        delivery["body"] = body;
    }
}

/// A batch recipient's webhook: up to `batch.max_records` deliveries in one POST to
/// `{endpoint}`, each a mailbox delivery's object, answered per record.
pub(super) fn batch_webhook(document: &mut Value, received: &[ReceivedView<'_>], batch: BatchSettings) -> Value {
    delivery_bodies(document, received, false);
    let description = format!(
        "With `batch` in your entry of the partners file, the gateway POSTs up to {} records at once (waiting up to {} ms for more) \
         to `{{endpoint}}` itself, as `{}`: each record is an object with the members a single POST sends as headers, its own \
         `idempotency_key` and `signature`, and `body`, the projected record byte for byte (what `signature` covers). \
         Answer 200 with one result per record (`DeliveryBatchAnswer`); each is counted as a single POST's status would be. \
         Any other answer, a timeout or a connection failure is the answer for every record of the batch.",
        batch.max_records,
        batch.max_wait.as_millis(),
        crate::delivery::batch::CONTENT_TYPE
    );
    let records = json!({"type": "array", "minItems": 1, "maxItems": batch.max_records, "items": {"$ref": "#/components/schemas/InboxDelivery"}});
    json!({"post": {
        "operationId": "deliver.batch",
        "tags": ["deliveries"],
        "summary": "Several records delivered to you in one POST, each answered on its own.",
        "description": description,
        "security": [],
        "requestBody": {"required": true, "content": {(crate::delivery::batch::CONTENT_TYPE): {"schema": {"type": "object", "required": ["records"], "properties": {"records": records}}}}},
        "responses": {
            "200": {"description": "Each record's result.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/DeliveryBatchAnswer"}}}},
            "4XX": {"description": "Refused as a whole: every record of the batch is dead at once, but for 408, 425 and 429, which are retried like a 5XX."},
            "5XX": {"description": "Not received now: every record of the batch is retried with backoff."}
        }
    }})
}

/// What a delivery object's `body` is: valid under the view of its `agreement` and `schema`
/// version (or, with notices, a completion notice).
fn delivery_bodies(document: &mut Value, received: &[ReceivedView<'_>], notices: bool) {
    let mut bodies: Vec<Value> = received.iter().map(|r| r.schema.clone()).collect();
    if notices {
        bodies.push(json!({"type": "object", "description": "A completion notice (`agreement` `completion-notice`, `schema` `completion-notice/1.0`): see `passerelle audit verify-notice`."}));
    }
    if !bodies.is_empty()
        && let Some(Value::Object(body)) = document.pointer_mut("/components/schemas/InboxDelivery/properties/body")
    {
        let views: Vec<&ReceivedView<'_>> = received.iter().collect();
        body.insert(
            "description".to_owned(),
            json!(format!(
                "The projected record, exactly as fixed at acceptance: valid under the view of the delivery's `agreement` in the version its `schema` names; each one: {}.",
                view_list(&views)
            )),
        );
        body.insert("anyOf".to_owned(), Value::Array(bodies));
    }
}
