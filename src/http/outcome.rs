//! What a partner API handler is given besides the request, and what it gives back: its answer
//! and a typed [`Outcome`] for the request's log line and the record metrics.

use bytes::Bytes;
use http::Response;
use http_body_util::Full;

use super::error::ApiError;
use crate::telemetry::RecordOutcome;
use crate::telemetry::trace::TraceContext;

/// What a handler knows of the request it serves, besides the request itself.
pub struct Call<'a> {
    /// This request's id, on its answer (`Passerelle-Request-Id`) and in its log line.
    pub request_id: &'a str,
    /// This request's hop of its trace: what a record stores and its deliveries continue.
    pub trace: &'a TraceContext,
}

/// What a call that succeeded did, for its log line and the record metrics. A call that failed
/// is described by its [`ApiError`] instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A call not about sending a record: status, lists, discovery, the document.
    Served,
    /// A dry run that passed.
    Validated,
    /// A record stored by this call.
    Accepted { record_id: String },
    /// An idempotent replay of a record stored before (its id, read from its receipt).
    Duplicate { record_id: Option<String> },
    /// A request its responder answered; it is audited under the request's id.
    Answered { request_id: String },
}

impl Outcome {
    /// The record (or request) the call is about, if any.
    pub fn record_id(&self) -> Option<&str> {
        match self {
            Outcome::Accepted { record_id } | Outcome::Answered { request_id: record_id } => Some(record_id),
            Outcome::Duplicate { record_id } => record_id.as_deref(),
            Outcome::Served | Outcome::Validated => None,
        }
    }

    /// The record metrics' outcome of a call that succeeded.
    pub fn metric(&self) -> RecordOutcome {
        match self {
            Outcome::Validated => RecordOutcome::Validated,
            Outcome::Duplicate { .. } => RecordOutcome::Duplicate,
            Outcome::Served | Outcome::Accepted { .. } | Outcome::Answered { .. } => RecordOutcome::Accepted,
        }
    }
}

/// A handler's answer and what it did, or the refusal.
pub type Handled = Result<(Response<Full<Bytes>>, Outcome), ApiError>;
