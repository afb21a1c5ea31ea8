//! What operators see: the Prometheus registry and the typed events that feed it and the logs.
//!
//! Each observable event is a struct in [`events`] whose `emit` writes the log line and updates
//! the metrics together, so the two never drift apart. Labels come only from configuration
//! (partner, agreement, record type) or fixed sets (outcome, keyword); anything else is counted
//! as `unknown`, so the number of series is bounded whatever partners send.

pub mod events;
pub mod json_lines;
pub mod logging;
pub mod otlp;
pub mod trace;

/// How a partner's record call ended: the `outcome` label of
/// `passerelle_records_received_total`. A fixed set, so an empty or misspelled label cannot
/// exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordOutcome {
    /// Stored and queued for its recipients (or, for a request, answered).
    Accepted,
    /// An idempotent replay: the original receipt again.
    Duplicate,
    /// A dry run (`POST /v1/validate/{type}`) that passed: nothing was stored.
    Validated,
    Invalid,
    Malformed,
    Unauthenticated,
    Forbidden,
    NotFound,
    TooLarge,
    UnsupportedMediaType,
    RateLimited,
    Conflict,
    Unavailable,
}

/// How a delivery attempt ended, or that an operator replayed it: the `outcome` label of
/// `passerelle_deliveries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Failed, and will be tried again.
    Retry,
    /// Failed for good: an operator is told.
    Dead,
    Replayed,
}

impl DeliveryOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retry => "retry",
            DeliveryOutcome::Dead => "dead",
            DeliveryOutcome::Replayed => "replayed",
        }
    }
}

/// Why a TLS handshake on the partner listener failed: the `reason` label of
/// `passerelle_tls_handshake_failures_total`, as the README's Security section names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    Expired,
    NotYetValid,
    Revoked,
    UnknownIssuer,
    BadSignature,
    /// Any other certificate that cannot be a client certificate (a CA certificate, say).
    InvalidCertificate,
    /// The client ended the handshake with an alert.
    AlertReceived,
    /// No protocol version or cipher suite in common.
    Incompatible,
    /// Not TLS (plain HTTP, garbage).
    Protocol,
    Timeout,
    /// The client hung up mid-handshake.
    Closed,
    Io,
    Other,
}

impl HandshakeFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::Expired => "expired",
            HandshakeFailure::NotYetValid => "not_yet_valid",
            HandshakeFailure::Revoked => "revoked",
            HandshakeFailure::UnknownIssuer => "unknown_issuer",
            HandshakeFailure::BadSignature => "bad_signature",
            HandshakeFailure::InvalidCertificate => "invalid_certificate",
            HandshakeFailure::AlertReceived => "alert_received",
            HandshakeFailure::Incompatible => "incompatible",
            HandshakeFailure::Protocol => "protocol",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Closed => "closed",
            HandshakeFailure::Io => "io",
            HandshakeFailure::Other => "other",
        }
    }
}

/// Whether a configuration reload was put in force: the `outcome` label of
/// `passerelle_config_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied,
    Refused,
}

impl ReloadOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadOutcome::Applied => "applied",
            ReloadOutcome::Refused => "refused",
        }
    }
}

impl RecordOutcome {
    /// Every outcome, in the order the design lists them.
    pub const ALL: [RecordOutcome; 13] = [
        RecordOutcome::Accepted,
        RecordOutcome::Duplicate,
        RecordOutcome::Validated,
        RecordOutcome::Invalid,
        RecordOutcome::Malformed,
        RecordOutcome::Unauthenticated,
        RecordOutcome::Forbidden,
        RecordOutcome::NotFound,
        RecordOutcome::TooLarge,
        RecordOutcome::UnsupportedMediaType,
        RecordOutcome::RateLimited,
        RecordOutcome::Conflict,
        RecordOutcome::Unavailable,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordOutcome::Accepted => "accepted",
            RecordOutcome::Duplicate => "duplicate",
            RecordOutcome::Validated => "validated",
            RecordOutcome::Invalid => "invalid",
            RecordOutcome::Malformed => "malformed",
            RecordOutcome::Unauthenticated => "unauthenticated",
            RecordOutcome::Forbidden => "forbidden",
            RecordOutcome::NotFound => "not_found",
            RecordOutcome::TooLarge => "too_large",
            RecordOutcome::UnsupportedMediaType => "unsupported_media_type",
            RecordOutcome::RateLimited => "rate_limited",
            RecordOutcome::Conflict => "conflict",
            RecordOutcome::Unavailable => "unavailable",
        }
    }

    /// The outcome a label names, if any.
    pub fn parse(label: &str) -> Option<RecordOutcome> {
        RecordOutcome::ALL.into_iter().find(|o| o.as_str() == label)
    }

    /// Whether the record was refused. Accepted records, idempotent replays and passing dry
    /// runs are not rejections: a partner sending only valid dry runs has a rejection ratio of 0.
    pub fn is_rejection(self) -> bool {
        !matches!(self, RecordOutcome::Accepted | RecordOutcome::Duplicate | RecordOutcome::Validated)
    }
}

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The gateway's metrics, one registry per running gateway (so tests can run several at once).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub records_received: IntCounterVec,
    pub validation_violations: IntCounterVec,
    pub deliveries: IntCounterVec,
    pub deliveries_handed_over: IntCounterVec,
    pub delivery_attempt_duration: HistogramVec,
    pub record_completion: HistogramVec,
    pub request_duration: HistogramVec,
    pub deliveries_pending: IntGaugeVec,
    pub delivery_oldest_pending: GaugeVec,
    pub deliveries_dead: IntGaugeVec,
    pub mailbox_depth: IntGaugeVec,
    pub mailbox_oldest: GaugeVec,
    pub mailbox_taken: IntCounterVec,
    pub store_commit_duration: HistogramVec,
    pub store_commit_batch_size: Histogram,
    pub store_writer_busy: prometheus::CounterVec,
    pub store_writer_transactions: IntCounterVec,
    pub audit_entries: IntCounterVec,
    pub audit_checkpoints: prometheus::IntCounter,
    pub audit_last_checkpoint: prometheus::Gauge,
    pub audit_last_checkpoint_seq: prometheus::IntGauge,
    pub breaker_state: IntGaugeVec,
    pub rejections_aggregated: prometheus::IntCounter,
    pub store_pool_connections: IntGaugeVec,
    pub store_info: IntGaugeVec,
    pub tls_handshake_failures: IntCounterVec,
    pub config_reloads: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// From acceptance to a record's last delivery: immediate on a good day, hours or days behind a
/// recipient that is down (retries run for up to `delivery.max_age_secs`).
const COMPLETION_BUCKETS: &[f64] =
    &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0, 259200.0];

/// Metric definitions are fixed in this file: their names are valid and unique, so building
/// and registering them cannot fail except through a programming error caught by any test.
trait Defined<T> {
    fn defined(self) -> T;
}

impl<T> Defined<T> for prometheus::Result<T> {
    fn defined(self) -> T {
        self.expect("metric definitions are fixed and unique") // invariant: see the trait's documentation
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        macro_rules! register {
            ($metric:expr) => {{
                let m = $metric;
                // Names are fixed and unique; registration only fails on a programming error.
                registry.register(Box::new(m.clone())).defined();
                m
            }};
        }
        let counter =
            |name: &str, help: &str, labels: &[&str]| IntCounterVec::new(Opts::new(name, help), labels).defined();
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels).defined()
        };
        let metrics = Metrics {
            records_received: register!(counter(
                "passerelle_records_received_total",
                "Records posted by partners, by sender, record type and outcome.",
                &["sender", "record_type", "outcome"]
            )),
            validation_violations: register!(counter(
                "passerelle_validation_violations_total",
                "Schema violations found in rejected records, by record type and JSON Schema keyword.",
                &["record_type", "keyword"]
            )),
            deliveries: register!(counter(
                "passerelle_deliveries_total",
                "Delivery attempts by recipient, agreement and outcome (delivered, retry, dead, replayed).",
                &["recipient", "agreement", "outcome"]
            )),
            deliveries_handed_over: register!(counter(
                "passerelle_deliveries_handed_over_total",
                "Deliveries leased at acceptance to this process's worker for their recipient and handed to it in memory, so no claim read them back; by recipient. The rest wait in the store for a claim.",
                &["recipient"]
            )),
            delivery_attempt_duration: register!(histogram(
                "passerelle_delivery_attempt_duration_seconds",
                "Time from sending a delivery to the recipient's answer.",
                &["recipient"],
                LATENCY_BUCKETS
            )),
            record_completion: register!(histogram(
                "passerelle_record_completion_seconds",
                "Time from accepting a record to delivering the last of its deliveries, by record type.",
                &["record_type"],
                COMPLETION_BUCKETS
            )),
            request_duration: register!(histogram(
                "passerelle_request_duration_seconds",
                "Partner API request latency by route and status class.",
                &["route", "status_class"],
                LATENCY_BUCKETS
            )),
            deliveries_pending: register!(
                IntGaugeVec::new(
                    Opts::new("passerelle_deliveries_pending", "Deliveries queued or retrying, by recipient."),
                    &["recipient"]
                )
                .defined()
            ),
            delivery_oldest_pending: register!(
                GaugeVec::new(
                    Opts::new(
                        "passerelle_delivery_oldest_pending_seconds",
                        "Age of the oldest pending delivery, by recipient."
                    ),
                    &["recipient"]
                )
                .defined()
            ),
            deliveries_dead: register!(
                IntGaugeVec::new(
                    Opts::new("passerelle_deliveries_dead", "Dead deliveries waiting for an operator, by recipient."),
                    &["recipient"]
                )
                .defined()
            ),
            mailbox_depth: register!(
                IntGaugeVec::new(
                    Opts::new(
                        "passerelle_mailbox_depth",
                        "Deliveries waiting in a pull recipient's mailbox (queued or retrying), by recipient."
                    ),
                    &["recipient"]
                )
                .defined()
            ),
            mailbox_oldest: register!(
                GaugeVec::new(
                    Opts::new(
                        "passerelle_mailbox_oldest_seconds",
                        "Age of the oldest delivery waiting in a pull recipient's mailbox, by recipient."
                    ),
                    &["recipient"]
                )
                .defined()
            ),
            mailbox_taken: register!(
                IntCounterVec::new(
                    Opts::new("passerelle_mailbox_taken_total", "Deliveries a pull recipient took from its mailbox."),
                    &["recipient"]
                )
                .defined()
            ),
            store_commit_duration: register!(
                HistogramVec::new(
                    HistogramOpts::new(
                        "passerelle_store_commit_duration_seconds",
                        "Duration of one store transaction carrying records, fsync included, by engine."
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["engine"]
                )
                .defined()
            ),
            store_writer_busy: register!(
                prometheus::CounterVec::new(
                    Opts::new(
                        "passerelle_store_writer_busy_seconds_total",
                        "Seconds the store's writer spent in transactions (fsync included), by engine: its rate is the share of time the writer is busy; near 1, writes queue behind it."
                    ),
                    &["engine"]
                )
                .defined()
            ),
            store_writer_transactions: register!(
                IntCounterVec::new(
                    Opts::new(
                        "passerelle_store_writer_transactions_total",
                        "Transactions the store's writer ended (committed, rolled back, or failed to begin), whatever they carried: records, claims, attempt results, audit entries; by engine. On SQLite each commit is one fsync; while deliveries drain, their rate is the claims' and results' commits."
                    ),
                    &["engine"]
                )
                .defined()
            ),
            store_commit_batch_size: register!(
                Histogram::with_opts(
                    HistogramOpts::new(
                        "passerelle_store_commit_batch_size",
                        "Records carried by one store transaction (group commit)."
                    )
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0])
                )
                .defined()
            ),
            audit_entries: register!(counter(
                "passerelle_audit_entries_total",
                "Audit entries written, by kind.",
                &["kind"]
            )),
            audit_checkpoints: register!(
                prometheus::IntCounter::new(
                    "passerelle_audit_checkpoints_total",
                    "Signed checkpoints of the audit chain."
                )
                .defined()
            ),
            audit_last_checkpoint: register!(
                prometheus::Gauge::new(
                    "passerelle_audit_last_checkpoint_timestamp_seconds",
                    "Unix time of the last signed checkpoint of the audit chain."
                )
                .defined()
            ),
            audit_last_checkpoint_seq: register!(
                prometheus::IntGauge::new(
                    "passerelle_audit_last_checkpoint_seq",
                    "Entry covered by the last signed checkpoint."
                )
                .defined()
            ),
            breaker_state: register!(
                IntGaugeVec::new(
                    Opts::new(
                        "passerelle_circuit_breaker_state",
                        "Circuit breaker per recipient: 0 closed, 1 half-open (probing), 2 open."
                    ),
                    &["recipient"]
                )
                .defined()
            ),
            store_pool_connections: register!(
                IntGaugeVec::new(
                    Opts::new(
                        "passerelle_store_pool_connections",
                        "PostgreSQL pool connections by state (in_use, idle)."
                    ),
                    &["state"]
                )
                .defined()
            ),
            store_info: register!(
                IntGaugeVec::new(
                    Opts::new("passerelle_store_info", "The store engine in use (sqlite or postgres)."),
                    &["engine"]
                )
                .defined()
            ),
            rejections_aggregated: register!(
                prometheus::IntCounter::new(
                    "passerelle_audit_rejections_aggregated_total",
                    "Rejected records counted into aggregated audit entries."
                )
                .defined()
            ),
            tls_handshake_failures: register!(counter(
                "passerelle_tls_handshake_failures_total",
                "Failed TLS handshakes on the partner listener, by reason.",
                &["reason"]
            )),
            config_reloads: register!(counter(
                "passerelle_config_reloads_total",
                "Configuration reloads by outcome.",
                &["outcome"]
            )),
            registry,
        };
        let build_info =
            IntGaugeVec::new(Opts::new("passerelle_build_info", "The running build."), &["version"]).defined();
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        metrics.registry.register(Box::new(build_info)).defined();
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds...: what an
        // operator compares across instances and releases.
        metrics.registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())).defined();
        metrics
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
