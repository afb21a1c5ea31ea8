//! Discovery: what a partner may send and receive, under which agreements, and the keys that
//! sign what it receives.
//!
//! `GET /v1/schemas`, `GET /v1/schemas/{type}/{version}`,
//! `GET /v1/schemas/{type}/{version}/views/{agreement}` and `GET /v1/agreements` answer from
//! the configuration alone; the OpenAPI document ([`super::openapi`]) gives the same lists as
//! its examples. A view is the JSON Schema of exactly what the caller receives under one
//! agreement ([`crate::policy::Agreement::view`]): only that recipient may read it, in each
//! version it receives (its pin, or each version the agreement accepts); anyone else is answered
//! as for a schema it is party to no agreement for. `GET /v1/keys` (and the admin listener's `GET /admin/v1/keys`) answers the
//! gateway's public keys as a JWKS, to verify signed deliveries with
//! ([`crate::delivery::signature`]).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::error::ApiError;
use super::json_response;
use crate::audit::notary::Notary;
use crate::auth::AuthenticatedPartner;
use crate::config::Config;
use crate::policy::Agreement;
use crate::schema::Version;

/// The (type, version, role) triples the caller may send or receive: a sender sends each
/// version its agreements accept, a recipient receives each version it is sent in.
pub(super) fn schema_entries(config: &Config, partner: &str) -> Vec<(String, Version, &'static str)> {
    let mut entries = Vec::new();
    for a in config.built.agreements.iter().filter(|a| a.is_party(partner)) {
        let (role, versions) = match a.recipient(partner) {
            Some(r) if &*a.sender != partner => ("receive", r.versions_received(&a.versions)),
            _ => ("send", a.versions.clone()),
        };
        for v in versions {
            let entry = (a.record_type.to_string(), v, role);
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
    }
    entries.sort();
    entries
}

/// The (type, version, agreement) of every view the caller may read: one per agreement it
/// receives under and version it receives.
pub(super) fn view_entries<'c>(config: &'c Config, partner: &str) -> Vec<(&'c str, Version, &'c Agreement)> {
    let mut entries = Vec::new();
    for a in &config.built.agreements {
        if let Some(r) = a.recipient(partner) {
            entries.extend(r.versions_received(&a.versions).into_iter().map(|v| (&*a.record_type, v, &**a)));
        }
    }
    entries.sort_by(|x, y| (x.0, x.1, &x.2.id).cmp(&(y.0, y.1, &y.2.id)));
    entries
}

/// Where the view of `record_type` `version` under `agreement` is served.
pub(super) fn view_href(record_type: &str, version: Version, agreement: &str) -> String {
    format!("/v1/schemas/{record_type}/{version}/views/{agreement}")
}

pub(super) fn schemas(config: &Config, partner: &AuthenticatedPartner) -> Response<Full<Bytes>> {
    // The same list the OpenAPI document gives as this answer's example.
    json_response(StatusCode::OK, schema_list(config, &partner.id).to_string().into_bytes())
}

pub(super) fn schema(
    config: &Config,
    partner: &AuthenticatedPartner,
    record_type: &str,
    version: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let version: Version = version.parse().map_err(|_| ApiError::SchemaNotFound)?;
    if !schema_entries(config, &partner.id).iter().any(|(t, v, _)| t == record_type && *v == version) {
        return Err(ApiError::SchemaNotFound);
    }
    let schema = config
        .built
        .catalog
        .record_type(record_type)
        .and_then(|t| t.version(version))
        .ok_or(ApiError::SchemaNotFound)?;
    let mut response = json_response(StatusCode::OK, serde_json::to_vec(&*schema.document).unwrap_or_default());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/schema+json"));
    Ok(response)
}

/// `GET /v1/schemas/{type}/{version}/views/{agreement}`: the view of what the caller receives
/// under `agreement`, in a version it receives.
pub(super) fn view(
    config: &Config,
    partner: &AuthenticatedPartner,
    record_type: &str,
    version: &str,
    agreement: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let version: Version = version.parse().map_err(|_| ApiError::SchemaNotFound)?;
    let agreement = config
        .built
        .agreements
        .iter()
        .find(|a| &*a.id == agreement && &*a.record_type == record_type)
        .ok_or(ApiError::SchemaNotFound)?;
    let recipient = agreement.recipient(&partner.id).ok_or(ApiError::SchemaNotFound)?;
    let view = agreement.view(&config.built.catalog, recipient, version).ok_or(ApiError::SchemaNotFound)?;
    let mut response = json_response(StatusCode::OK, serde_json::to_vec(&view).unwrap_or_default());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/schema+json"));
    Ok(response)
}

pub(super) fn agreements(config: &Config, partner: &AuthenticatedPartner) -> Response<Full<Bytes>> {
    let list = agreement_list(config, &partner.id, OffsetDateTime::now_utc());
    json_response(StatusCode::OK, list.to_string().into_bytes())
}

/// `GET /v1/keys`: the public keys deliveries are signed with, the current one first, as a JSON
/// Web Key Set. The same for every caller: public keys are no secret, but the route is the
/// partner API's, so it asks for credentials like every other.
pub(super) fn keys(notary: &Notary) -> Response<Full<Bytes>> {
    let set = crate::delivery::signature::published_keys(notary);
    let mut response = json_response(StatusCode::OK, set.to_string().into_bytes());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json"));
    response
}

/// What `GET /v1/schemas` answers `partner`.
pub(super) fn schema_list(config: &Config, partner: &str) -> Value {
    let mut list: Vec<Value> = schema_entries(config, partner)
        .into_iter()
        .map(|(t, v, role)| json!({"record_type": t, "version": v, "role": role, "href": format!("/v1/schemas/{t}/{v}")}))
        .collect();
    list.extend(view_entries(config, partner).into_iter().map(|(t, v, a)| {
        json!({"record_type": t, "version": v, "role": "receives", "agreement": &*a.id, "href": view_href(t, v, &a.id)})
    }));
    json!({ "schemas": list })
}

/// What `GET /v1/agreements` answers `partner` at `now`: each agreement it is party to; the
/// sender sees every recipient's fields, a recipient only its own.
pub(super) fn agreement_list(config: &Config, partner: &str, now: OffsetDateTime) -> Value {
    let list: Vec<Value> = config
        .built
        .agreements
        .iter()
        .filter(|a| a.is_party(partner))
        .map(|a| {
            let recipients: Vec<Value> = a
                .recipients
                .iter()
                .filter(|r| &*a.sender == partner || &*r.partner == partner)
                .map(|r| json!({"partner": &*r.partner, "fields": r.fields.pointers().iter().map(|p| p.to_string()).collect::<Vec<_>>(), "ordered": r.ordered}))
                .collect();
            json!({
                "id": &*a.id,
                "title": {"en": a.title_en, "fr": a.title_fr},
                "sender": &*a.sender,
                "record_type": &*a.record_type,
                "versions": a.versions,
                "mode": a.mode,
                "purpose": a.purpose,
                "valid_from": crate::clock::rfc3339_ms(crate::clock::to_ms(a.valid_from)),
                "valid_until": a.valid_until.map(|t| crate::clock::rfc3339_ms(crate::clock::to_ms(t))),
                "in_force": a.in_force(now),
                "role": if &*a.sender == partner { "sender" } else { "recipient" },
                "recipients": recipients,
            })
        })
        .collect();
    json!({ "agreements": list })
}
