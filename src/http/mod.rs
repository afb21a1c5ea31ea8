//! The HTTP surface: the partner API ([`partner`]) and the admin API ([`admin`]), and the
//! contract that describes both ([`openapi`]).
//!
//! Handlers work on one configuration snapshot taken when the request starts, and return
//! [`error::ApiError`] for every failure; [`error::ApiError::to_response`] is the only place
//! that turns failures into answers.

pub mod access;
pub mod admin;
pub mod console;
pub mod discovery;
pub mod error;
pub mod i18n;
pub mod inbox;
pub mod intake;
pub mod investigate;
pub mod openapi;
pub mod outcome;
pub mod partner;
pub mod records;
pub mod requests;
pub mod routes;
pub mod sign_in;
pub mod state;
pub mod store_json;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host` header (HTTP/2 names the
/// authority in its `:authority` pseudo-header instead).
pub fn check_host<B>(req: &http::Request<B>) -> Result<(), error::ApiError> {
    use error::{ApiError, HeaderFault};
    if req.version() != http::Version::HTTP_11 {
        return Ok(());
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) => Err(ApiError::InvalidHeader { header: "Host", fault: HeaderFault::Missing }),
        (Some(_), Some(_)) => Err(ApiError::InvalidHeader { header: "Host", fault: HeaderFault::Repeated }),
        (Some(_), None) => Ok(()),
    }
}

/// A JSON answer with `status`.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A plain-text answer with `status`.
pub fn text_response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
