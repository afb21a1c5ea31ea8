//! The configuration files as written: serde structs with `deny_unknown_fields`, no meaning yet.
//!
//! Phase one of loading. Everything here is exactly what a person typed; `config::load` turns
//! it into the validated [`crate::config::Config`] and reports every problem with its file.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `config/passerelle.toml`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMain {
    /// Directory for the SQLite store, keys and generated credentials.
    pub data_dir: Option<String>,
    /// Directory of the JSON Schemas (`<type>/<MAJOR.MINOR>.json`).
    pub schemas_dir: Option<String>,
    /// The partners file.
    pub partners_file: Option<String>,
    /// The directory holding one `<agreement-id>.toml` per agreement.
    pub agreements_dir: Option<String>,
    /// An optional file of API key hashes per partner (`passerelle demo` writes one).
    pub api_keys_file: Option<String>,
    #[serde(default)]
    pub listen: RawListen,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub delivery: RawDelivery,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub retention: RawRetention,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub telemetry: RawTelemetry,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// The partner listener's certificate chain and key (PEM).
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// CAs that issue partners' client certificates (PEM).
    #[serde(default)]
    pub client_ca_files: Vec<String>,
    /// Certificate revocation lists of those CAs (PEM).
    #[serde(default)]
    pub crl_files: Vec<String>,
    /// Serve the partner API without TLS, for a TLS-terminating load balancer in front.
    pub insecure_plaintext: Option<bool>,
    /// With `insecure_plaintext`: proxies whose forwarded client certificate header is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The header carrying the URL-encoded PEM client certificate from a trusted proxy.
    pub client_cert_header: Option<String>,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// The Ed25519 signing key (hex PKCS#8); generated into the data directory when absent.
    pub signing_key_file: Option<String>,
    /// Files of public keys (`ed25519 <key-id> <hex>` lines) whose signatures are trusted too.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// Sign the chain head after this many new entries...
    pub checkpoint_every: Option<u64>,
    /// ...or after this many seconds with new entries, whichever comes first.
    pub checkpoint_interval_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// Bodies of delivered records are deleted after this many days.
    pub delivered_days: Option<f64>,
    /// Bodies of dead deliveries are deleted after this many days (replay is then impossible).
    pub dead_days: Option<f64>,
    /// How often the purge runs.
    pub purge_interval_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    pub partner: Option<String>,
    pub admin: Option<String>,
    /// Connections held open at once on each listener.
    pub max_connections: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_body_bytes: Option<usize>,
    pub max_depth: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub body_timeout_ms: Option<u64>,
    pub header_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// SQLite file, relative to the data directory.
    pub path: Option<String>,
    /// A PostgreSQL connection string (`postgres://user@host:5432/db` or `host=... dbname=...`);
    /// when set, the store is PostgreSQL instead of SQLite.
    pub url: Option<String>,
    /// Environment variable holding the PostgreSQL password (kept out of the file).
    pub password_env: Option<String>,
    /// CA certificate(s) (PEM) the PostgreSQL server's certificate must chain to; when set, the
    /// connection is TLS (rustls) and the server's name is verified against the URL's host.
    pub ca_file: Option<String>,
    /// Connections in the PostgreSQL pool (reads and claims).
    pub pool_size: Option<usize>,
    pub commit_queue: Option<usize>,
    pub max_batch: Option<usize>,
    pub commit_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    pub max_attempts: Option<u32>,
    pub max_age_secs: Option<u64>,
    pub initial_backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
    pub attempt_timeout_ms: Option<u64>,
    pub lease_secs: Option<u64>,
    pub poll_interval_ms: Option<u64>,
    pub concurrency_per_recipient: Option<usize>,
    /// CAs that verify recipients' HTTPS certificates (a partner's own `ca_file` replaces them).
    #[serde(default)]
    pub ca_files: Vec<String>,
    /// The certificate and key the gateway presents to recipients (a partner may override).
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
    /// Consecutive failures that open a recipient's circuit breaker.
    pub breaker_failures: Option<u32>,
    /// How long an open breaker waits before one probe goes out.
    pub breaker_open_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Environment variable holding the admin token.
    pub token_env: Option<String>,
    /// File holding the admin token (relative to this file).
    pub token_file: Option<String>,
    /// Whether `/metrics` is served without the admin token.
    pub metrics_open: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `auto` (JSON unless standard error is a terminal), `json` or `text`.
    pub format: Option<String>,
    /// A `tracing` filter such as `info` or `passerelle=debug`.
    pub level: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// Base URL of an OTLP/HTTP collector (`http://127.0.0.1:4318`); spans go to `/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// CA (PEM) of an `https` collector's certificate.
    pub otlp_ca_file: Option<String>,
    /// `service.name` of the exported spans (default `passerelle`).
    pub service_name: Option<String>,
}

/// `config/partners.toml`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPartners {
    #[serde(default, rename = "partner")]
    pub partners: Vec<RawPartner>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPartner {
    pub id: String,
    pub name_en: String,
    pub name_fr: String,
    pub jurisdiction: String,
    pub region: String,
    /// SHA-256 (hex) of each API key this partner may use.
    #[serde(default)]
    pub api_key_sha256: Vec<String>,
    /// Names (subject CN, DNS/URI/email SAN) of client certificates that identify this partner.
    #[serde(default)]
    pub cert_names: Vec<String>,
    /// SHA-256 (hex) of the SubjectPublicKeyInfo of client certificates that identify it.
    #[serde(default)]
    pub cert_spki_sha256: Vec<String>,
    pub delivery: Option<RawPartnerDelivery>,
    pub rate_limit: Option<RawRateLimit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPartnerDelivery {
    /// Base URL; records go to `{endpoint}/{type}`.
    pub endpoint: String,
    pub ca_file: Option<String>,
    pub client_cert_file: Option<String>,
    pub client_key_file: Option<String>,
    pub bearer_token_env: Option<String>,
    pub timeout_ms: Option<u64>,
    pub concurrency: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub per_second: f64,
    pub burst: Option<f64>,
}

/// `config/agreements/<id>.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgreement {
    pub id: String,
    pub title_en: String,
    pub title_fr: String,
    pub sender: String,
    pub record_type: String,
    pub versions: Vec<String>,
    /// Sunset dates (RFC 3339, UTC) of deprecated versions.
    #[serde(default)]
    pub sunset: BTreeMap<String, String>,
    pub purpose: String,
    pub valid_from: String,
    pub valid_until: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default, rename = "recipient")]
    pub recipients: Vec<RawRecipient>,
    /// For `mode = "request"`: the fields of the answer returned to the sender.
    #[serde(default)]
    pub response_fields: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecipient {
    pub partner: String,
    pub fields: Vec<String>,
    #[serde(default)]
    pub ordered: bool,
}

/// The API key hash file: `[keys] partner-id = ["hex", ...]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeys {
    #[serde(default)]
    pub keys: BTreeMap<String, Vec<String>>,
}
