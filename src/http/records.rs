//! The caller's own records: `GET /v1/records/{id}` and `GET /v1/records`.
//!
//! A partner sees only the records it sent; another partner's record answers 404 like one that
//! does not exist.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::error::ApiError;
use super::json_response;
use super::state::State;
use super::store_json;
use crate::auth::AuthenticatedPartner;
use crate::server::RequestBody;
use crate::store::{RecordFilter, RecordQuery};

/// Most records one page of `GET /v1/records` returns.
const MAX_PAGE: usize = 200;

pub(super) async fn record_status(
    state: &State,
    partner: &AuthenticatedPartner,
    record_id: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    if uuid::Uuid::parse_str(record_id).is_err() {
        return Err(ApiError::RecordNotFound);
    }
    let view = state
        .store
        .record(partner.id.to_string(), record_id.to_owned())
        .await
        .map_err(ApiError::store)?
        .ok_or(ApiError::RecordNotFound)?;
    Ok(json_response(StatusCode::OK, serde_json::to_vec(&store_json::record(&view)).unwrap_or_default()))
}

/// The raw value of the query parameter `name` (the first, if it is repeated); a name without
/// `=` has the empty value.
fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// A query value as `application/x-www-form-urlencoded` encodes it (`%XX`, and `+` for a space),
/// or `None` if an escape is cut off or the bytes are not UTF-8. (A forwarded certificate header
/// is plain percent-encoding instead, where `+` is itself: see `tls::parse_forwarded`.)
fn percent_decode(s: &str) -> Option<String> {
    // percent-encoding keeps a cut-off escape (`%4`, `%+1`) as text; a query value that has one is
    // malformed.
    let escapes_whole = s
        .match_indices('%')
        .all(|(i, _)| s.get(i + 1..i + 3).is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())));
    if !escapes_whole {
        return None;
    }
    let spaced =
        if s.contains('+') { std::borrow::Cow::Owned(s.replace('+', " ")) } else { std::borrow::Cow::Borrowed(s) };
    percent_encoding::percent_decode_str(&spaced).decode_utf8().ok().map(|v| v.into_owned())
}

/// The decoded value of the query parameter `name`, if present; an empty or malformed value is
/// refused like any other invalid one.
pub(super) fn query_value(query: &str, name: &'static str) -> Result<Option<String>, ApiError> {
    match query_param(query, name) {
        None => Ok(None),
        Some(raw) => match percent_decode(raw) {
            Some(value) if !value.is_empty() => Ok(Some(value)),
            _ => Err(ApiError::BadQuery { parameter: name }),
        },
    }
}

/// The query parameter `name` as a count within `range`, if present. Digits only: `parse` would
/// also take a sign (`+5`), which the documents' integers do not allow.
pub(super) fn query_count(
    query: &str,
    name: &'static str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, ApiError> {
    query_value(query, name)?
        .map(|s| {
            s.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| s.parse::<u64>().ok())
                .flatten()
                .filter(|n| range.contains(n))
                .ok_or(ApiError::BadQuery { parameter: name })
        })
        .transpose()
}

/// `GET /v1/records`: the caller's records, newest first, one page at a time.
///
/// Every parameter is either absent or a valid value, as the OpenAPI document types it. An empty
/// value (`?since=`) is refused like any other invalid one: it usually stands for a variable the
/// client left unset, and answering as if the filter were absent would hand back records the
/// caller did not ask for.
pub(super) async fn list_records(
    state: &State,
    partner: &AuthenticatedPartner,
    req: &Request<RequestBody>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    /// The page cursor: the last record's `received_at` (unix ms) and id, as
    /// `<digits>.<lower-case hyphenated UUID>`. Partners treat it as opaque; the OpenAPI document
    /// gives exactly this syntax as its pattern, so what the document allows is what is accepted.
    fn cursor(at: i64, record_id: &str) -> String {
        format!("{at}.{record_id}")
    }

    /// The position a cursor names, or `None` if it is not in the cursor's syntax. Up to 18
    /// digits always fit an `i64`.
    fn parse_cursor(text: &str) -> Option<(i64, String)> {
        let (at, id) = text.split_once('.')?;
        if at.is_empty() || at.len() > 18 || !at.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // The id exactly as the gateway writes it: a hyphenated, lowercase UUID.
        let written = uuid::Uuid::try_parse(id).ok()?.hyphenated().to_string();
        if written != id {
            return None;
        }
        Some((at.parse().ok()?, id.to_owned()))
    }

    let query = req.uri().query().unwrap_or("");
    let param = |name: &'static str| query_value(query, name);
    let invalid = |parameter: &'static str| move || ApiError::BadQuery { parameter };
    let status = param("status")?.map(|s| s.parse::<RecordFilter>().ok().ok_or_else(invalid("status"))).transpose()?;
    let since = param("since")?.map(|s| crate::clock::parse_rfc3339_ms(&s).ok_or_else(invalid("since"))).transpose()?;
    let limit = query_count(query, "limit", 1..=MAX_PAGE as u64)?.map_or(50, |n| n as usize);
    let before = param("cursor")?.map(|c| parse_cursor(&c).ok_or_else(invalid("cursor"))).transpose()?;
    let records = state
        .store
        .list_records(RecordQuery { sender: partner.id.to_string(), status, since, before, limit })
        .await
        .map_err(ApiError::store)?;
    let next = (records.len() == limit).then(|| records.last()).flatten().map(|r| cursor(r.received_at, &r.record_id));
    let records: Vec<_> = records.iter().map(store_json::record).collect();
    let body = json!({ "records": records, "next_cursor": next });
    Ok(json_response(StatusCode::OK, body.to_string().into_bytes()))
}
