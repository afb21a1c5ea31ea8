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
    /// `[listen]`: the two listeners' addresses.
    #[serde(default)]
    pub listen: RawListen,
    /// `[limits]`: what a partner may send.
    #[serde(default)]
    pub limits: RawLimits,
    /// `[store]`: SQLite (the default) or PostgreSQL, and the group commit.
    #[serde(default)]
    pub store: RawStore,
    /// `[delivery]`: retries, leases, breakers and the TLS used toward recipients.
    #[serde(default)]
    pub delivery: RawDelivery,
    /// `[admin]`: the admin token and whether `/metrics` is open.
    #[serde(default)]
    pub admin: RawAdmin,
    /// `[log]`: format and level.
    #[serde(default)]
    pub log: RawLog,
    /// `[audit]`: the signing key, trusted keys and checkpoint cadence.
    #[serde(default)]
    pub audit: RawAudit,
    /// `[retention]`: how long stored bodies, and the access record, are kept.
    #[serde(default)]
    pub retention: RawRetention,
    /// `[tls]`: the partner listener's TLS, or a trusted proxy in front of it.
    #[serde(default)]
    pub tls: RawTls,
    /// `[telemetry]`: span export to an OTLP collector.
    #[serde(default)]
    pub telemetry: RawTelemetry,
}

/// `[tls]` of the main file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// The partner listener's certificate chain (PEM).
    pub cert_file: Option<String>,
    /// The private key of that certificate (PEM; PKCS#8, PKCS#1 or SEC1).
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
    /// Time allowed for a TLS handshake (default 10000).
    pub handshake_timeout_ms: Option<u64>,
}

/// `[audit]` of the main file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// The Ed25519 signing key (hex PKCS#8); generated into the data directory when absent.
    pub signing_key_file: Option<String>,
    /// Files of public keys (`ed25519 <key-id> <hex>` lines) whose signatures are trusted too.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// Sign the chain head after this many new entries (default 1000)...
    pub checkpoint_every: Option<u64>,
    /// ...or after this many seconds with new entries, whichever comes first (default 60).
    pub checkpoint_interval_secs: Option<u64>,
    /// The key of the subject digests the access record is looked up by (32 bytes in hex;
    /// default `subject.key` in the data directory, generated owner-only at the first start).
    /// Instances sharing a store must share it.
    pub subject_key_file: Option<String>,
}

/// `[retention]` of the main file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// Bodies of delivered records are deleted after this many days (default 7).
    pub delivered_days: Option<f64>,
    /// Bodies of dead deliveries are deleted after this many days, after which replay is
    /// impossible (default 30).
    pub dead_days: Option<f64>,
    /// How long a person's disclosures can be found by the access record, in days from the
    /// record's acceptance (default 2555, seven years), whatever became of its bodies.
    pub access_days: Option<f64>,
    /// How often the purge runs, in seconds (default 3600).
    pub purge_interval_secs: Option<u64>,
}

/// `[listen]` of the main file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    /// The partner API's address (default `127.0.0.1:8443`).
    pub partner: Option<String>,
    /// The admin API's, probes' and console's address (default `127.0.0.1:9090`).
    pub admin: Option<String>,
    /// Connections held open at once on each listener (default 10000).
    pub max_connections: Option<usize>,
}

/// `[limits]` of the main file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest body accepted, enforced while reading (default 1048576); larger is 413.
    pub max_body_bytes: Option<usize>,
    /// Deepest nesting of arrays and objects, 1 to 128 (default 64); deeper is 400.
    pub max_depth: Option<usize>,
    /// Request line and headers together (default 16384, at least 1024); larger is 431.
    pub max_header_bytes: Option<usize>,
    /// Time allowed to receive a body (default 10000); slower is 408.
    pub body_timeout_ms: Option<u64>,
    /// Time allowed to receive the request line and headers (default 10000).
    pub header_timeout_ms: Option<u64>,
}

/// `[store]` of the main file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// SQLite file, relative to the data directory (default `passerelle.sqlite`).
    pub path: Option<String>,
    /// A PostgreSQL connection string (`postgres://user@host:5432/db` or `host=... dbname=...`);
    /// when set, the store is PostgreSQL instead of SQLite.
    pub url: Option<String>,
    /// Environment variable holding the PostgreSQL password (kept out of the file).
    pub password_env: Option<String>,
    /// CA certificate(s) (PEM) the PostgreSQL server's certificate must chain to; when set, the
    /// connection is TLS (rustls) and the server's name is verified against the URL's host.
    pub ca_file: Option<String>,
    /// Connections in the PostgreSQL pool for reads and claims (default 8, at least 2).
    pub pool_size: Option<usize>,
    /// Writes waiting for the writer at once (default 4096); a full queue makes requests wait,
    /// then answers 503.
    pub commit_queue: Option<usize>,
    /// Most writes one transaction carries (default 512).
    pub max_batch: Option<usize>,
    /// How long a request waits for its commit before it is answered 503 (default 5000).
    pub commit_timeout_ms: Option<u64>,
    /// How long the writer, when busy, lets a shallow batch of records wait for more writes
    /// (default 0: commits at once). An idle writer never waits.
    pub commit_linger_ms: Option<u64>,
    /// `[store.encryption]`: bodies sealed at rest (on by default).
    #[serde(default)]
    pub encryption: RawEncryption,
}

/// `[store.encryption]` of the main file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawEncryption {
    /// Seal every stored body (default true); `false` stores new bodies in plaintext.
    pub enabled: Option<bool>,
    /// The key-encryption key: 64 hexadecimal digits in a file, relative to the configuration
    /// (default `store.key` in the data directory, generated owner-only at the first start).
    pub key_file: Option<String>,
    /// An environment variable holding the key-encryption key instead of `key_file`.
    pub key_env: Option<String>,
    /// Key files of earlier key-encryption keys, read until `passerelle store rotate-key` has
    /// re-wrapped every data key under the current one (default none).
    #[serde(default)]
    pub previous_key_files: Vec<String>,
}

/// `[delivery]` of the main file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    /// Attempts before a delivery is dead (default 12).
    pub max_attempts: Option<u32>,
    /// Age after which a delivery still failing is dead, in seconds (default 259200, 3 days).
    pub max_age_secs: Option<u64>,
    /// Wait before the first retry (default 1000); it doubles, with jitter, up to the maximum.
    pub initial_backoff_ms: Option<u64>,
    /// Longest wait between retries (default 600000).
    pub max_backoff_ms: Option<u64>,
    /// Time allowed for one attempt (default 10000); a partner's `timeout_ms` replaces it.
    pub attempt_timeout_ms: Option<u64>,
    /// How long a worker holds a delivery it took (default 60); it must outlast an attempt.
    pub lease_secs: Option<u64>,
    /// How often idle workers look for due deliveries (default 1000); also how soon a caller
    /// waiting on a mailbox sees deliveries committed by another instance.
    pub poll_interval_ms: Option<u64>,
    /// How long deliveries a pull recipient takes are leased to it, in seconds (default 60).
    pub inbox_lease_secs: Option<u64>,
    /// The longest `wait` a pull recipient may ask for, in seconds (default 30).
    pub inbox_max_wait_secs: Option<u64>,
    /// The most deliveries one `GET /v1/inbox` returns (default 500).
    pub inbox_max_batch: Option<usize>,
    /// Callers waiting on one mailbox at once (default 8); past it, `429`.
    pub inbox_waiting_per_partner: Option<usize>,
    /// Attempts in flight at once per recipient (default 16); a partner's `concurrency`
    /// replaces it.
    pub concurrency_per_recipient: Option<usize>,
    /// CAs that verify recipients' HTTPS certificates (a partner's own `ca_file` replaces them).
    #[serde(default)]
    pub ca_files: Vec<String>,
    /// The certificate the gateway presents to recipients (a partner may override it).
    pub client_cert_file: Option<String>,
    /// The key of that certificate.
    pub client_key_file: Option<String>,
    /// Consecutive failures that open a recipient's circuit breaker (default 5).
    pub breaker_failures: Option<u32>,
    /// How long an open breaker waits before one probe goes out (default 30000).
    pub breaker_open_ms: Option<u64>,
    /// Sign every delivery (push, pull and NATS) with the gateway's audit key: a detached JWS in
    /// `Passerelle-Signature`, or an inbox delivery's `signature` (default true). `false` only to
    /// measure what signing costs: recipients then have nothing to check a delivery with.
    pub sign: Option<bool>,
}

/// `[admin]` of the main file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Environment variable holding the admin token.
    pub token_env: Option<String>,
    /// File holding the admin token (relative to this file).
    pub token_file: Option<String>,
    /// Whether `/metrics` is served without the admin token (default true).
    pub metrics_open: Option<bool>,
    /// The operators file (relative to this file): named operators, their roles and tokens.
    pub operators_file: Option<String>,
    /// `[admin.oidc]`: sign-in to the console through an OpenID provider.
    pub oidc: Option<RawOidc>,
}

/// `[admin.oidc]`: the OpenID provider people sign in through, and what their groups may do.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    /// The issuer URL (`https://`, or `http://` on loopback only).
    pub issuer: String,
    pub client_id: String,
    /// Environment variable holding the client secret.
    pub client_secret_env: Option<String>,
    /// File holding the client secret (relative to this file).
    pub client_secret_file: Option<String>,
    /// This gateway's `/console/oidc/callback`, as registered with the provider.
    pub redirect_url: String,
    /// The claim listing the person's groups (default `groups`).
    pub groups_claim: Option<String>,
    /// The claim naming the person (default `preferred_username`, else `sub`).
    pub name_claim: Option<String>,
    /// Scopes asked for besides `openid` (default `["profile"]`).
    pub scopes: Option<Vec<String>>,
    /// CA certificates (PEM) the issuer's certificate is verified with; default: the system's.
    pub ca_file: Option<String>,
    /// `[[admin.oidc.group]]`: a group's grant.
    #[serde(default)]
    pub group: Vec<RawOidcGroup>,
}

/// `[[admin.oidc.group]]`: members of `group` hold `role`, over some partners or agreements or
/// (both lists empty) the whole gateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidcGroup {
    pub group: String,
    pub role: String,
    #[serde(default)]
    pub partners: Vec<String>,
    #[serde(default)]
    pub agreements: Vec<String>,
}

/// The operators file: `[[operator]]` entries.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawOperators {
    #[serde(default, rename = "operator")]
    pub operators: Vec<RawOperator>,
}

/// One `[[operator]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOperator {
    /// The operator's name, as the audit trail writes it (`operator:<name>`).
    pub name: String,
    /// Roles held over the whole gateway.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Roles held over some partners or agreements only.
    #[serde(default)]
    pub grant: Vec<RawGrant>,
    /// SHA-256 (hex) of each token the operator's scripts present; the tokens are not kept.
    #[serde(default)]
    pub token_sha256: Vec<String>,
}

/// A role limited to some partners or agreements (either list empty: no limit on that side).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrant {
    pub role: String,
    #[serde(default)]
    pub partners: Vec<String>,
    #[serde(default)]
    pub agreements: Vec<String>,
}

/// `[log]` of the main file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `auto` (JSON unless standard error is a terminal; the default), `json` or `text`.
    pub format: Option<String>,
    /// A `tracing` filter such as `info` (the default) or `passerelle=debug`.
    pub level: Option<String>,
}

/// `[telemetry]` of the main file.
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
    /// One `[[partner]]` table each.
    #[serde(default, rename = "partner")]
    pub partners: Vec<RawPartner>,
}

/// One `[[partner]]`: an organisation's system.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPartner {
    /// A slug (`a-z`, `0-9`, `-`), unique among partners: what agreements name.
    pub id: String,
    /// The system's name in English.
    pub name_en: String,
    /// The system's name in French.
    pub name_fr: String,
    /// `federal`, `provincial`, `territorial` or `municipal`.
    pub jurisdiction: String,
    /// Where it serves, such as `CA`, `ON` or `ON-Ottawa`.
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
    /// `[partner.delivery]`: how records reach it, if it receives any.
    pub delivery: Option<RawPartnerDelivery>,
    /// `[partner.rate_limit]`: how fast it may send, if limited.
    pub rate_limit: Option<RawRateLimit>,
    /// `[partner.notify]`: send it a signed completion notice for each record it sends. A partner
    /// with `[partner.delivery]` takes its notices the same way, and this table stays empty;
    /// otherwise it takes the keys of `[partner.delivery]` (`mode`, `endpoint`, ...) for them.
    pub notify: Option<RawPartnerDelivery>,
    /// One `[[partner.contact]]` table each: the people on the partner's team its alerts reach.
    #[serde(default, rename = "contact")]
    pub contacts: Vec<RawContact>,
}

/// One `[[partner.contact]]`: someone on a partner's team, told when its records are in trouble.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContact {
    /// The person's (or the team's) name, as their e-mails are addressed.
    pub name: String,
    /// Where the partner's alerts are sent: `name@domain`, once per partner.
    pub email: String,
    /// The language they read first: `en` or `fr` (alerts are bilingual, this one first).
    pub lang: String,
}

/// `[partner.delivery]`: how a recipient takes its records.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPartnerDelivery {
    /// `push` (the default: the gateway POSTs each record to `endpoint`), `pull` (the
    /// recipient takes its records from its mailbox, `GET /v1/inbox`; no endpoint) or `nats`
    /// (the gateway publishes each record to a NATS JetStream stream at `url`, on `subject`).
    pub mode: Option<String>,
    /// Base URL; records go to `{endpoint}/{type}`. Push only, and required for it.
    pub endpoint: Option<String>,
    /// The NATS server, `nats://host:port` or `tls://host:port`, without credentials in it.
    /// NATS only, and required for it.
    pub url: Option<String>,
    /// The subject each record is published on; `{type}` stands for its record type, as in
    /// `records.{type}`. NATS only, and required for it.
    pub subject: Option<String>,
    /// A NATS credentials file (a user JWT and its NKey seed), kept owner-only. NATS only.
    pub creds_file: Option<String>,
    /// Environment variable holding the NATS user name, with `password_env`. NATS only.
    pub user_env: Option<String>,
    /// Environment variable holding the NATS password, with `user_env`. NATS only.
    pub password_env: Option<String>,
    /// CA (PEM) of the endpoint's (or NATS server's) certificate, instead of `delivery.ca_files`.
    pub ca_file: Option<String>,
    /// The certificate the gateway presents to this recipient, instead of the main file's.
    pub client_cert_file: Option<String>,
    /// The key of that certificate.
    pub client_key_file: Option<String>,
    /// Environment variable holding a bearer token sent to this recipient. Push only.
    pub bearer_token_env: Option<String>,
    /// Time allowed for one attempt, instead of `delivery.attempt_timeout_ms`.
    pub timeout_ms: Option<u64>,
    /// Attempts in flight at once, instead of `delivery.concurrency_per_recipient`.
    pub concurrency: Option<usize>,
    /// Several records per POST (`batch = { max_records = 50, max_wait_ms = 20 }`), each with
    /// its own idempotency key and signature, answered per record. Push only; opt-in.
    pub batch: Option<RawBatch>,
}

/// `[partner.delivery] batch`: how many records one POST may carry, and how long the worker
/// waits for more when fewer are due.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    /// Records per POST at most, from 1 to 1000.
    pub max_records: usize,
    /// How long to wait for more records when fewer than `max_records` are due, in ms (at most
    /// 10000; 0 sends what is due at once).
    pub max_wait_ms: u64,
}

/// `[partner.rate_limit]`: a token bucket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Requests per second, on average; above 0.
    pub per_second: f64,
    /// Requests at once after a quiet spell (default `per_second`, at least 1).
    pub burst: Option<f64>,
}

/// `config/agreements/<id>.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgreement {
    /// A slug, the file's name without `.toml`.
    pub id: String,
    /// The agreement's title in English.
    pub title_en: String,
    /// The agreement's title in French.
    pub title_fr: String,
    /// The partner that sends.
    pub sender: String,
    /// The record type it covers (a directory of the schemas).
    pub record_type: String,
    /// The schema versions accepted (`MAJOR.MINOR`); the newest is used when a sender names none.
    pub versions: Vec<String>,
    /// Sunset dates (RFC 3339, UTC) of deprecated versions.
    #[serde(default)]
    pub sunset: BTreeMap<String, String>,
    /// Why the data is shared (shown to partners and in the console).
    pub purpose: String,
    /// When it comes into force (RFC 3339, UTC).
    pub valid_from: String,
    /// When it stops being in force (RFC 3339, UTC), if it does.
    pub valid_until: Option<String>,
    /// `push` (the default: stored, then delivered to every recipient) or `request` (one
    /// responder, answered synchronously).
    #[serde(default)]
    pub mode: Option<String>,
    /// One `[[recipient]]` table each.
    #[serde(default, rename = "recipient")]
    pub recipients: Vec<RawRecipient>,
    /// For `mode = "request"`: the fields of the answer returned to the sender.
    #[serde(default)]
    pub response_fields: Vec<String>,
}

/// One `[[recipient]]` of an agreement.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecipient {
    /// The partner that receives.
    pub partner: String,
    /// The fields it receives: JSON Pointers, `*` for every item of an array.
    pub fields: Vec<String>,
    /// Deliver this recipient's records in acceptance order, one at a time (default false).
    #[serde(default)]
    pub ordered: bool,
    /// The schema version this recipient receives, MAJOR.MINOR (default: the version each
    /// record was sent in); a record sent in another version is translated first.
    pub version: Option<String>,
    /// Fields of the sent version the translation to `version` may drop, knowingly (default
    /// none): JSON Pointers in the sent version's terms.
    #[serde(default)]
    pub accept_loss: Vec<String>,
}

/// The API key hash file: `[keys] partner-id = ["hex", ...]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeys {
    /// SHA-256 (hex) of each key, by partner id.
    #[serde(default)]
    pub keys: BTreeMap<String, Vec<String>>,
}
