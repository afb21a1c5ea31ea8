//! The API contract as tests read it: a partner's OpenAPI document as the gateway serves it, and
//! whether an answer is one the document describes.

use http::StatusCode;
use serde_json::{Value, json};

use super::{TestGateway, TestResponse};

/// `GET /v1/openapi.json` as `partner`.
pub async fn partner_document(gw: &TestGateway, partner: &str) -> Value {
    let r = gw.client.get("/v1/openapi.json", gw.key(partner)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

/// The value a `$ref` of the document points at.
pub fn resolve<'d>(doc: &'d Value, reference: &str) -> &'d Value {
    let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("{reference} leaves the document"));
    doc.pointer(pointer).unwrap_or_else(|| panic!("{reference} does not resolve"))
}

/// `value`, or what it points at if it is a `$ref`.
pub fn follow<'d>(doc: &'d Value, value: &'d Value) -> &'d Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => follow(doc, resolve(doc, reference)),
        None => value,
    }
}

/// A validator for a schema of the document (its `$ref`s resolve inside the document).
pub fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = doc.clone();
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["allOf"] = json!([schema]);
    jsonschema::options().with_draft(jsonschema::Draft::Draft202012).build(&root).unwrap()
}

/// The schema a documented answer has, by method, path, status and media type.
pub fn answer_schema<'d>(doc: &'d Value, method: &str, path: &str, status: u16, media: &str) -> &'d Value {
    let operation = &doc["paths"][path][method];
    let answer = follow(doc, &operation["responses"][status.to_string()]);
    &answer["content"][media]["schema"]
}

/// Asserts that `response` is documented for the operation and matches its schema.
pub fn assert_documented(doc: &Value, method: &str, path: &str, response: &TestResponse) {
    let status = response.status.as_u16();
    let media = response.header("content-type").unwrap_or("").split(';').next().unwrap().trim().to_owned();
    let schema = answer_schema(doc, method, path, status, &media);
    assert!(!schema.is_null(), "{method} {path}: {status} {media} is not documented");
    let body = response.json();
    let errors: Vec<String> = validator(doc, schema).iter_errors(&body).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{method} {path} {status}: {errors:?}\n{body}");
}
