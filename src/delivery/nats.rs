//! NATS JetStream recipients (`mode = "nats"`): one connection per recipient, and each delivery
//! published on its subject, counted delivered only once JetStream has stored it.
//!
//! Everything else is the push path's: the same worker ([`super`]) leases, caps, backs off,
//! opens the breaker, writes dead letters and audits; only the hand-over differs. Each message is
//! the stored projected body, byte for byte, with the headers a push recipient gets (its
//! signature, `Passerelle-Signature`, among them) and `Nats-Msg-Id` set to the delivery's
//! idempotency key, so the stream's duplicate window drops a repeat (a publish whose
//! acknowledgement was lost, or one made again after the gateway died before it recorded the
//! first).
//!
//! The connection is opened when the worker starts and reconnects on its own (async-nats).
//! While it is down, nothing is published: an attempt waits for it within its timeout, then
//! fails, rather than leave a message queued in the client to go out long after the attempt
//! gave up.
//!
//! **Invariant:** a delivery is delivered only on a JetStream publish acknowledgement (the
//! message is stored in a stream); no acknowledgement, a timeout or an error is a retry.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::context::{GetStreamByNameErrorKind, PublishErrorKind};
use async_nats::{ConnectOptions, Event, HeaderMap, ServerAddr};
use tokio::sync::{OnceCell, watch};
use tokio::time::timeout_at;

use super::client::{AttemptOutcome, Envelope};
use super::idempotency_key;
use crate::store::ClaimedDelivery;
use crate::telemetry::trace::TraceContext;

/// The placeholder a subject template replaces with the record type.
const TYPE_PLACEHOLDER: &str = "{type}";

/// How long the check for streams at start waits for the connection, and for each answer.
const STREAM_CHECK_WAIT: Duration = Duration::from_secs(30);

/// The longest wait between two attempts to reconnect.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(4);

/// The wait before the next attempt of a retired publisher's connection: it never comes.
const RETIRED: Duration = Duration::from_secs(365 * 24 * 3600);

/// How the gateway reaches a NATS recipient (`[partner.delivery]` with `mode = "nats"`).
#[derive(Debug, Clone)]
pub struct NatsEndpoint {
    /// The server, `nats://host:port` or `tls://host:port` (no credentials in it).
    pub url: String,
    /// The subject each record is published on.
    pub subject: SubjectTemplate,
    /// How the gateway proves who it is to the server.
    pub auth: NatsAuth,
    /// CA bundle used to verify the server's certificate.
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate and key the gateway presents to the server.
    pub client_cert_file: Option<std::path::PathBuf>,
    pub client_key_file: Option<std::path::PathBuf>,
    /// Time allowed for one attempt, connection wait and acknowledgement included.
    pub timeout: Duration,
    /// Publications awaiting their acknowledgement at once.
    pub concurrency: usize,
}

/// How the gateway authenticates to a NATS server. Only where secrets are, never the secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsAuth {
    None,
    /// A credentials file (user JWT and NKey seed); its contents are a [`NatsCredentials`].
    CredsFile(std::path::PathBuf),
    /// A user name and password read from these environment variables when connecting.
    UserPassword {
        user_env: String,
        password_env: String,
    },
}

/// The contents of a NATS credentials file, checked when the configuration is loaded. Its
/// `Debug` shows nothing of it.
#[derive(Clone)]
pub struct NatsCredentials(Arc<str>);

impl NatsCredentials {
    /// Checks that `text` holds a user JWT and an NKey seed.
    pub fn parse(text: &str) -> Result<Self, NatsSetupError> {
        ConnectOptions::with_credentials(text).map_err(|_| NatsSetupError::Credentials)?;
        Ok(NatsCredentials(Arc::from(text)))
    }
}

impl std::fmt::Debug for NatsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NatsCredentials(..)")
    }
}

/// Why a NATS recipient's settings cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NatsSetupError {
    #[error("url `{0}` is not a nats:// or tls:// URL")]
    Scheme(String),
    #[error("url `{url}` is not a valid NATS server address ({reason})")]
    Url { url: String, reason: String },
    // The URL is not repeated: it holds a secret.
    #[error("the NATS url carries a user name or password, a secret in the configuration")]
    CredentialsInUrl,
    #[error("subject `{template}` {reason}")]
    Subject { template: String, reason: &'static str },
    #[error("subject `{template}` has `{placeholder}`; the only placeholder is `{{type}}`")]
    Placeholder { template: String, placeholder: String },
    #[error("the creds_file is not a NATS credentials file (a user JWT and an NKey seed)")]
    Credentials,
    #[error("the environment variable {0} (NATS user or password) is not set")]
    MissingEnv(String),
}

/// Checks a NATS server URL as the configuration gives it.
pub fn check_url(url: &str) -> Result<ServerAddr, NatsSetupError> {
    if !(url.starts_with("nats://") || url.starts_with("tls://")) {
        return Err(NatsSetupError::Scheme(url.to_owned()));
    }
    let address: ServerAddr = url.parse().map_err(|e: std::io::Error| {
        // Without a user part, the URL holds no secret and may be shown.
        if url.contains('@') {
            NatsSetupError::CredentialsInUrl
        } else {
            NatsSetupError::Url { url: url.to_owned(), reason: e.to_string() }
        }
    })?;
    if address.has_user_pass() || address.username().is_some() {
        return Err(NatsSetupError::CredentialsInUrl);
    }
    Ok(address)
}

/// A subject with `{type}` standing for the record type, as in `records.{type}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTemplate(String);

impl SubjectTemplate {
    /// Checks that every subject the template makes is one a message can be published on:
    /// dot-separated tokens, none empty, no wildcard, no space.
    pub fn parse(template: &str) -> Result<Self, NatsSetupError> {
        let bad = |reason| NatsSetupError::Subject { template: template.to_owned(), reason };
        let sample = template.replace(TYPE_PLACEHOLDER, "t");
        if let Some(start) = sample.find(['{', '}']) {
            let end = sample[start..].find('}').map_or(sample.len(), |e| start + e + 1);
            return Err(NatsSetupError::Placeholder {
                template: template.to_owned(),
                placeholder: sample[start..end].to_owned(),
            });
        }
        if sample.is_empty() {
            return Err(bad("is empty"));
        }
        if sample.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("has a space or a control character"));
        }
        if sample.contains(['*', '>']) {
            return Err(bad("has a wildcard (`*` or `>`); a record is published on one subject"));
        }
        if sample.split('.').any(str::is_empty) {
            return Err(bad("has an empty token (two dots in a row, or a dot at either end)"));
        }
        Ok(SubjectTemplate(template.to_owned()))
    }

    /// The subject a record of `record_type` is published on.
    pub fn render(&self, record_type: &str) -> String {
        self.0.replace(TYPE_PLACEHOLDER, record_type)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A NATS recipient's publisher: its settings and its one connection.
pub struct NatsPublisher {
    recipient: String,
    endpoint: NatsEndpoint,
    tls: Arc<rustls::ClientConfig>,
    credentials: Option<NatsCredentials>,
    /// The subjects of the record types it receives, checked for a stream at start.
    subjects: BTreeSet<String>,
    /// Opened once, by [`NatsPublisher::open`] or the first attempt; async-nats keeps it up.
    /// A setup that cannot work (a variable not set) is kept as its error, which every attempt
    /// reports.
    connection: OnceCell<Result<Box<Connection>, NatsSetupError>>,
    /// Set when the publisher is dropped (a reload replaced it). The client's connection ends
    /// when its last handle goes, except while it is reconnecting to a server that is down: this
    /// tells that loop to stop trying.
    retired: Arc<AtomicBool>,
}

struct Connection {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    /// Told of every connection event, so an attempt waits for the link without polling; holds
    /// the last error the client reported, for the attempts that give up waiting.
    link: watch::Receiver<Option<String>>,
}

impl NatsPublisher {
    /// A publisher for `recipient`; nothing is connected yet.
    pub fn new(
        recipient: &str,
        endpoint: &NatsEndpoint,
        tls: &Arc<rustls::ClientConfig>,
        credentials: Option<NatsCredentials>,
        record_types: &BTreeSet<String>,
    ) -> Self {
        NatsPublisher {
            recipient: recipient.to_owned(),
            endpoint: endpoint.clone(),
            tls: tls.clone(),
            credentials,
            subjects: record_types.iter().map(|t| endpoint.subject.render(t)).collect(),
            connection: OnceCell::new(),
            retired: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Opens the connection now rather than at the first attempt, so an unreachable server is
    /// logged when the worker starts, and warns of a subject no stream takes. Returns at once:
    /// the connection is made, and the streams looked up, in the background.
    pub async fn open(&self) {
        let Ok(connection) = self.connection().await else { return };
        let (client, link, jetstream) =
            (connection.client.clone(), connection.link.clone(), connection.jetstream.clone());
        let (recipient, subjects) = (self.recipient.clone(), self.subjects.clone());
        // Bounded, so a server that never answers does not keep this task (and the connection
        // it holds) past a reload; the first attempts name a missing stream anyway.
        tokio::spawn(async move {
            if tokio::time::timeout(STREAM_CHECK_WAIT, connected(&client, link)).await.is_err() {
                return;
            }
            for subject in subjects {
                let found =
                    tokio::time::timeout(STREAM_CHECK_WAIT, jetstream.stream_by_subject(subject.as_str())).await;
                if let Ok(Err(error)) = found
                    && error.kind() == GetStreamByNameErrorKind::NotFound
                {
                    tracing::warn!(
                        message =
                            "No JetStream stream takes this subject; its deliveries will be retried until one does.",
                        recipient,
                        subject
                    );
                }
            }
        });
    }

    async fn connection(&self) -> &Result<Box<Connection>, NatsSetupError> {
        self.connection.get_or_init(|| self.connect()).await
    }

    async fn connect(&self) -> Result<Box<Connection>, NatsSetupError> {
        let e = &self.endpoint;
        let mut options = match (&e.auth, &self.credentials) {
            (NatsAuth::CredsFile(_), Some(creds)) => {
                ConnectOptions::with_credentials(&creds.0).map_err(|_| NatsSetupError::Credentials)?
            }
            (NatsAuth::UserPassword { user_env, password_env }, _) => {
                let var = |name: &str| std::env::var(name).map_err(|_| NatsSetupError::MissingEnv(name.to_owned()));
                ConnectOptions::with_user_and_password(var(user_env)?, var(password_env)?)
            }
            _ => ConnectOptions::new(),
        };
        let (tell, link) = watch::channel(None);
        let (recipient, server) = (self.recipient.clone(), e.url.clone());
        let retired = self.retired.clone();
        options =
            options
                .name(format!("passerelle/{}", self.recipient))
                .tls_client_config((*self.tls).clone())
                .require_tls(e.url.starts_with("tls://"))
                .connection_timeout(e.timeout)
                .request_timeout(Some(e.timeout))
                // Never give up: a recipient's server may be down for days, and its deliveries wait.
                .max_reconnects(None)
                .reconnect_delay_callback(move |attempts| {
                    if retired.load(Ordering::Relaxed) { RETIRED } else { reconnect_delay(attempts) }
                })
                .retry_on_initial_connect()
                .event_callback(move |event| {
                    let (tell, recipient, server) = (tell.clone(), recipient.clone(), server.clone());
                    async move { observe(event, &tell, &recipient, &server) }
                });
        let address = check_url(&e.url)?;
        // With `retry_on_initial_connect` this returns at once, the connection coming up behind.
        let client = options
            .connect(address)
            .await
            .map_err(|error| NatsSetupError::Url { url: e.url.clone(), reason: error.to_string() })?;
        let jetstream = jetstream::ContextBuilder::new().timeout(e.timeout).build(client.clone());
        Ok(Box::new(Connection { client, jetstream, link }))
    }

    /// Publishes one stored projected body, with its `signature`, as the hop `trace` of its
    /// record's trace, returning the outcome and how long it took.
    pub async fn send(
        &self,
        delivery: &ClaimedDelivery,
        signature: Option<&str>,
        trace: &TraceContext,
    ) -> (AttemptOutcome, Duration) {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + self.endpoint.timeout);
        let outcome = self.publish(delivery, signature, trace, deadline).await;
        (outcome, started.elapsed())
    }

    async fn publish(
        &self,
        d: &ClaimedDelivery,
        signature: Option<&str>,
        trace: &TraceContext,
        deadline: tokio::time::Instant,
    ) -> AttemptOutcome {
        let unreachable = |error: String| AttemptOutcome::Unreachable { error };
        let connection = match timeout_at(deadline, self.connection()).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return unreachable(error.to_string()),
            Err(_) => return unreachable(format!("no connection to the NATS server {} in time", self.endpoint.url)),
        };
        if timeout_at(deadline, connected(&connection.client, connection.link.clone())).await.is_err() {
            let last = connection.link.borrow().clone().map(|e| format!(" (last error: {e})")).unwrap_or_default();
            return unreachable(format!("not connected to the NATS server {}{last}", self.endpoint.url));
        }
        let subject = self.endpoint.subject.render(&d.record_type);
        let key = idempotency_key(d);
        let traceparent = trace.traceparent();
        let envelope = Envelope::of(d, &key, signature, &traceparent, trace);
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, key.as_str());
        headers.insert("Content-Type", "application/json");
        for (name, value) in envelope.headers() {
            headers.insert(name, value);
        }
        let acknowledged =
            async { connection.jetstream.publish_with_headers(subject.clone(), headers, d.body.clone()).await?.await };
        match timeout_at(deadline, acknowledged).await {
            // A duplicate (`_ack.duplicate`) was stored by an earlier attempt: the stream has the
            // message once, as wanted.
            Ok(Ok(_ack)) => AttemptOutcome::Accepted { status: None },
            Ok(Err(error)) => self.failure(&error, &subject),
            Err(_) => AttemptOutcome::Unreachable { error: self.no_acknowledgement() },
        }
    }

    fn no_acknowledgement(&self) -> String {
        format!(
            "no acknowledgement from JetStream at {} within {} ms",
            self.endpoint.url,
            self.endpoint.timeout.as_millis()
        )
    }

    /// What a failed publication counts as. Only a message the server will never take is
    /// refused; everything else may pass later and is retried.
    fn failure(&self, error: &jetstream::context::PublishError, subject: &str) -> AttemptOutcome {
        let error = match error.kind() {
            // JetStream answers "no responders" when no stream listens on the subject.
            PublishErrorKind::StreamNotFound => format!("no JetStream stream takes subject {subject}"),
            PublishErrorKind::TimedOut => self.no_acknowledgement(),
            PublishErrorKind::BrokenPipe => {
                format!("the connection to the NATS server {} closed before the acknowledgement", self.endpoint.url)
            }
            PublishErrorKind::MaxPayloadExceeded => {
                return AttemptOutcome::Refused {
                    status: None,
                    error: "the message is larger than the NATS server's max_payload".to_owned(),
                };
            }
            _ => format!("JetStream did not store the message: {error}"),
        };
        AttemptOutcome::Unreachable { error }
    }
}

impl Drop for NatsPublisher {
    fn drop(&mut self) {
        self.retired.store(true, Ordering::Relaxed);
    }
}

/// The wait before reconnection attempt `attempts` (from 1): at once, then doubling from 2 ms up
/// to 4 s (async-nats's own default, which a custom callback replaces).
fn reconnect_delay(attempts: usize) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(2)).unwrap_or(u32::MAX).min(12);
    if attempts <= 1 { Duration::ZERO } else { Duration::from_millis(2u64 << doublings).min(MAX_RECONNECT_DELAY) }
}

/// Waits until `client` is connected, woken by its connection events (`link`).
async fn connected(client: &async_nats::Client, mut link: watch::Receiver<Option<String>>) {
    while client.connection_state() != async_nats::connection::State::Connected {
        if link.changed().await.is_err() {
            // No more events: only the caller's deadline ends the wait.
            std::future::pending::<()>().await;
        }
    }
}

/// Logs a connection event and wakes the attempts waiting for the link.
fn observe(event: Event, tell: &watch::Sender<Option<String>>, recipient: &str, server: &str) {
    match &event {
        Event::Connected => tracing::info!(message = "Connected to the NATS server.", recipient, server),
        Event::Disconnected => {
            tracing::warn!(message = "The connection to the NATS server is down; reconnecting.", recipient, server)
        }
        Event::ServerError(error) => {
            tracing::warn!(message = "The NATS server reported an error.", recipient, server, %error);
            tell.send_replace(Some(error.to_string()));
            return;
        }
        Event::ClientError(error) => {
            tracing::warn!(message = "The NATS connection failed.", recipient, server, %error);
            tell.send_replace(Some(error.to_string()));
            return;
        }
        _ => tracing::debug!(message = "NATS connection event.", recipient, server, %event),
    }
    // The state changed: waiters look at it again.
    tell.send_modify(|_| {});
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_template_names_one_subject_per_record_type() {
        let t = SubjectTemplate::parse("records.{type}").unwrap();
        assert_eq!(t.render("birth-registration"), "records.birth-registration");
        assert_eq!(SubjectTemplate::parse("births").unwrap().render("x"), "births");
        assert_eq!(SubjectTemplate::parse("a.{type}.b.{type}").unwrap().render("x"), "a.x.b.x");
    }

    #[test]
    fn a_subject_template_that_makes_no_publishable_subject_is_refused() {
        let reason = |t: &str| SubjectTemplate::parse(t).unwrap_err().to_string();
        assert_eq!(reason(""), "subject `` is empty");
        assert!(reason("records..{type}").contains("empty token"));
        assert!(reason(".records").contains("empty token"));
        assert!(reason("records.*").contains("wildcard"));
        assert!(reason("records.>").contains("wildcard"));
        assert!(reason("records {type}").contains("space"));
        assert_eq!(reason("records.{kind}"), "subject `records.{kind}` has `{kind}`; the only placeholder is `{type}`");
        assert!(reason("records.{type").contains("has `{type`"), "{}", reason("records.{type"));
    }

    #[test]
    fn a_url_is_a_nats_server_without_credentials() {
        assert!(check_url("nats://127.0.0.1:4222").is_ok());
        assert!(check_url("tls://nats.example.ca:4222").unwrap().tls_required());
        assert_eq!(
            check_url("http://127.0.0.1:4222").unwrap_err().to_string(),
            "url `http://127.0.0.1:4222` is not a nats:// or tls:// URL"
        );
        assert!(matches!(check_url("127.0.0.1:4222"), Err(NatsSetupError::Scheme(_))));
        let secret = check_url("nats://city:s3cret@127.0.0.1:4222").unwrap_err().to_string();
        assert!(!secret.contains("s3cret"), "{secret}");
        assert!(matches!(check_url("nats://city@127.0.0.1:4222"), Err(NatsSetupError::CredentialsInUrl)));
        assert!(matches!(check_url("nats://[::1"), Err(NatsSetupError::Url { .. })));
    }

    #[test]
    fn reconnection_starts_at_once_then_backs_off_to_four_seconds() {
        let delays: Vec<u128> = [1, 2, 3, 4, 12, 13, 100, usize::MAX].map(|a| reconnect_delay(a).as_millis()).to_vec();
        assert_eq!(delays, [0, 2, 4, 8, 2048, 4000, 4000, 4000]);
    }

    #[test]
    fn a_credentials_file_is_checked_and_never_shown() {
        assert!(matches!(NatsCredentials::parse("not a creds file"), Err(NatsSetupError::Credentials)));
    }
}
