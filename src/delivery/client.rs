//! The outbound side: one pooled HTTP client per recipient, what one attempt returns, and the
//! headers every recipient gets (over HTTP, or as NATS message headers), the delivery's
//! signature among them ([`super::signature`]).
//!
//! An HTTPS recipient that offers HTTP/2 (ALPN `h2`) gets it, its deliveries multiplexed on one
//! pooled connection; one that offers only HTTP/1.1 gets a keep-alive connection per delivery
//! in flight. Plain-HTTP endpoints stay HTTP/1.1.
//!
//! Redirects are never followed (the client does not follow them, and a 3xx is not a success).
//! Recipient URLs come only from configuration.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use std::sync::Arc;

use super::backoff::parse_retry_after;
use super::batch::{self, BatchRecord};
use super::{DeliveryEndpoint, idempotency_key};
use crate::store::ClaimedDelivery;
use crate::telemetry::trace::TraceContext;

/// Answers read from a recipient are capped: only the status matters.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How one attempt ended, as seen from the wire.
#[derive(Debug, Clone)]
pub enum AttemptOutcome {
    /// Taken: a 2xx, or JetStream's acknowledgement that the message is stored (no status).
    Accepted { status: Option<u16> },
    /// A status that may succeed later (408, 425, 429, 5xx).
    Transient { status: u16, retry_after: Option<Duration> },
    /// Retrying will not help: any other status, or a message a NATS server never takes.
    Refused { status: Option<u16>, error: String },
    /// Not handed over: a connection failure, a timeout, or (NATS) no acknowledgement, such as
    /// when no stream takes the subject yet.
    Unreachable { error: String },
}

impl AttemptOutcome {
    /// Whether the answer shows the recipient is up (for its circuit breaker): any answer but
    /// 408, 425, 429 and 5xx.
    pub fn shows_recipient_up(&self) -> bool {
        matches!(self, AttemptOutcome::Accepted { .. } | AttemptOutcome::Refused { .. })
    }
}

/// How a batch POST ended: as a whole, and for each of its records.
#[derive(Debug)]
pub struct BatchOutcome {
    /// The request's own outcome: whether the recipient answered, for its circuit breaker.
    pub request: AttemptOutcome,
    /// Each record's outcome, in the order sent.
    pub each: Vec<AttemptOutcome>,
}

impl BatchOutcome {
    /// `outcome` for the request and for each of its `records`.
    fn whole(outcome: AttemptOutcome, records: usize) -> Self {
        BatchOutcome { each: vec![outcome.clone(); records], request: outcome }
    }
}

/// A synchronous call's result (request/response mode).
#[derive(Debug)]
pub enum CallOutcome {
    /// An answer, whatever its status, with its body (up to the limit).
    Answered {
        status: u16,
        body: Bytes,
    },
    /// The answer's body was larger than allowed.
    TooLarge {
        status: u16,
    },
    TimedOut,
    Unreachable {
        error: String,
    },
}

/// The headers a recipient gets with every body.
pub struct Envelope<'a> {
    pub record_id: &'a str,
    pub sender: &'a str,
    pub agreement: &'a str,
    pub record_type: &'a str,
    pub schema_version: &'a str,
    pub idempotency_key: &'a str,
    pub traceparent: Option<&'a str>,
    pub tracestate: Option<&'a str>,
    /// The delivery's detached JWS, sent as `Passerelle-Signature` (none when signing is off,
    /// and for request/response calls, which are not deliveries).
    pub signature: Option<&'a str>,
}

impl<'a> Envelope<'a> {
    /// The envelope of delivery `d` with its `signature`, sent as the hop `trace` (whose
    /// `traceparent` is given).
    pub fn of(
        d: &'a ClaimedDelivery,
        key: &'a str,
        signature: Option<&'a str>,
        traceparent: &'a str,
        trace: &'a TraceContext,
    ) -> Self {
        Envelope {
            record_id: &d.record_id,
            sender: &d.sender,
            agreement: &d.agreement,
            record_type: &d.record_type,
            schema_version: &d.schema_version,
            idempotency_key: key,
            traceparent: Some(traceparent),
            tracestate: trace.state.as_deref(),
            signature,
        }
    }

    /// The metadata headers, by name: the same for every transport.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("Idempotency-Key", self.idempotency_key.to_owned()),
            ("Passerelle-Record-Id", self.record_id.to_owned()),
            ("Passerelle-Sender", self.sender.to_owned()),
            ("Passerelle-Agreement", self.agreement.to_owned()),
            ("Passerelle-Schema", format!("{}/{}", self.record_type, self.schema_version)),
        ];
        headers.extend(self.traceparent.map(|tp| ("traceparent", tp.to_owned())));
        headers.extend(self.tracestate.map(|state| ("tracestate", state.to_owned())));
        headers.extend(self.signature.map(|signature| (super::signature::HEADER, signature.to_owned())));
        headers
    }
}

/// A recipient's HTTP client and settings.
pub struct RecipientClient {
    endpoint: String,
    bearer: Option<String>,
    timeout: Duration,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl RecipientClient {
    pub fn new(settings: &DeliveryEndpoint, tls: &Arc<rustls::ClientConfig>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.timeout));
        // `enforce_http(false)` lets the TLS layer take https URLs; http URLs stay plain.
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((**tls).clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector);
        // Every connection that falls idle is kept (for a minute), however many: their number
        // never exceeds the calls in flight at the peak, which deliveries bound by `concurrency`
        // and synchronous requests by the partner listener's connections. A smaller bound made
        // a responder asked more than `concurrency` requests at once open and close a TCP (and
        // TLS) connection for most of them: at 64 partner connections, 48 of every 64 calls.
        let http = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(connector);
        let bearer =
            settings.bearer_token_env.as_deref().and_then(|var| std::env::var(var).ok()).filter(|t| !t.is_empty());
        RecipientClient { endpoint: settings.endpoint.clone(), bearer, timeout: settings.timeout, http }
    }

    /// Posts one stored projected body, with its `signature`, as the hop `trace` of its record's
    /// trace, returning the outcome and how long it took.
    pub async fn send(
        &self,
        delivery: &ClaimedDelivery,
        signature: Option<&str>,
        trace: &TraceContext,
    ) -> (AttemptOutcome, Duration) {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(self.timeout, self.exchange(delivery, signature, trace)).await {
            Ok(outcome) => outcome,
            Err(_) => AttemptOutcome::Unreachable { error: "timed out".to_owned() },
        };
        (outcome, started.elapsed())
    }

    async fn exchange(&self, d: &ClaimedDelivery, signature: Option<&str>, trace: &TraceContext) -> AttemptOutcome {
        let key = idempotency_key(d);
        let traceparent = trace.traceparent();
        let envelope = Envelope::of(d, &key, signature, &traceparent, trace);
        let response = match self.post(&envelope, d.body.clone()).await {
            Ok(r) => r,
            Err(error) => return AttemptOutcome::Unreachable { error },
        };
        let status = response.status();
        let retry_after = retry_after(&response);
        // Drain (a bounded amount of) the answer so the connection can be reused.
        let _ = Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect().await;
        classify(status, retry_after)
    }

    /// POSTs `body` to `{endpoint}/{type}` with the envelope's headers.
    async fn post(&self, e: &Envelope<'_>, body: Bytes) -> Result<http::Response<hyper::body::Incoming>, String> {
        let uri = format!("{}/{}", self.endpoint, e.record_type);
        self.post_to(uri, "application/json", &e.headers(), body).await
    }

    /// POSTs `body` of `content_type` to `uri` with `headers` and the gateway's credentials.
    async fn post_to(
        &self,
        uri: String,
        content_type: &str,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<http::Response<hyper::body::Incoming>, String> {
        let mut request = Request::builder().method(Method::POST).uri(uri).header(header::CONTENT_TYPE, content_type);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(token) = &self.bearer {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Full::new(body)).map_err(|_| "the request could not be built".to_owned())?;
        self.http.request(request).await.map_err(|e| transport_error(&e))
    }

    /// POSTs `records` in one batch to the endpoint itself ([`super::batch`]), returning the
    /// outcome of the request as a whole (for the circuit breaker), each record's outcome in
    /// order, and how long it took.
    pub async fn send_batch(&self, records: &[BatchRecord<'_>]) -> (BatchOutcome, Duration) {
        let started = Instant::now();
        let exchange = async {
            let body = Bytes::from(batch::body(records));
            let response = match self.post_to(self.endpoint.clone(), batch::CONTENT_TYPE, &[], body).await {
                Ok(r) => r,
                Err(error) => return BatchOutcome::whole(AttemptOutcome::Unreachable { error }, records.len()),
            };
            let status = response.status();
            let retry_after = retry_after(&response);
            let answer = Limited::new(response.into_body(), batch::answer_limit(records.len())).collect().await;
            let request = classify(status, retry_after);
            if !matches!(request, AttemptOutcome::Accepted { .. }) {
                return BatchOutcome::whole(request, records.len());
            }
            match answer.ok().and_then(|a| batch::answers(records, &a.to_bytes())) {
                Some(answers) => {
                    let each = answers
                        .into_iter()
                        .map(|answer| match answer {
                            Some(answered) => classify_status(answered.status, answered.retry_after),
                            None => AttemptOutcome::Unreachable {
                                error: "the batch answer named no result for it".to_owned(),
                            },
                        })
                        .collect();
                    BatchOutcome { request, each }
                }
                None => BatchOutcome::whole(
                    AttemptOutcome::Unreachable { error: "the batch answer could not be read".to_owned() },
                    records.len(),
                ),
            }
        };
        let outcome = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => BatchOutcome::whole(AttemptOutcome::Unreachable { error: "timed out".to_owned() }, records.len()),
        };
        (outcome, started.elapsed())
    }

    /// A synchronous call: sends `body` and reads the answer (up to `max_answer` bytes), all
    /// within the recipient's timeout.
    pub async fn call(&self, envelope: &Envelope<'_>, body: Bytes, max_answer: usize) -> (CallOutcome, Duration) {
        let started = Instant::now();
        let exchange = async {
            let response = match self.post(envelope, body).await {
                Ok(r) => r,
                Err(error) => return CallOutcome::Unreachable { error },
            };
            let status = response.status().as_u16();
            match Limited::new(response.into_body(), max_answer).collect().await {
                Ok(collected) => CallOutcome::Answered { status, body: collected.to_bytes() },
                Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                    CallOutcome::TooLarge { status }
                }
                Err(_) => CallOutcome::Unreachable { error: "the answer was cut off".to_owned() },
            }
        };
        let outcome = tokio::time::timeout(self.timeout, exchange).await.unwrap_or(CallOutcome::TimedOut);
        (outcome, started.elapsed())
    }
}

/// The answer's `Retry-After`, when it has a readable one.
fn retry_after<B>(response: &http::Response<B>) -> Option<Duration> {
    response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after)
}

fn classify(status: StatusCode, retry_after: Option<Duration>) -> AttemptOutcome {
    classify_status(status.as_u16(), retry_after)
}

/// What an answer with status `code` makes of an attempt: the same for a single POST and for
/// each record of a batch.
pub fn classify_status(code: u16, retry_after: Option<Duration>) -> AttemptOutcome {
    match code {
        200..=299 => AttemptOutcome::Accepted { status: Some(code) },
        408 | 425 | 429 | 500..=599 => AttemptOutcome::Transient { status: code, retry_after },
        _ => AttemptOutcome::Refused { status: Some(code), error: format!("HTTP {code}") },
    }
}

/// The rustls error somewhere in `err`'s chain (I/O errors hide theirs from `source`).
fn tls_cause<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(io) = err.downcast_ref::<std::io::Error>()
        && let Some(inner) = io.get_ref()
    {
        return tls_cause(inner);
    }
    err.source().and_then(tls_cause)
}

fn transport_error(e: &hyper_util::client::legacy::Error) -> String {
    if let Some(tls) = tls_cause(e) {
        return match tls {
            rustls::Error::InvalidCertificate(c) => format!("TLS: the recipient's certificate is not accepted ({c:?})"),
            other => format!("TLS handshake failed ({})", crate::tls::failure_label(other).as_str()),
        };
    }
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
                std::io::ErrorKind::TimedOut => "connect timed out".to_owned(),
                kind => format!("I/O error: {kind}"),
            };
        }
        source = err.source();
    }
    if e.is_connect() { "connection failed".to_owned() } else { "the connection closed before an answer".to_owned() }
}
