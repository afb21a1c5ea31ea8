//! Configuration: loaded in two phases, checked as a whole, then held as one immutable snapshot.
//!
//! Phase one ([`raw`]) parses the TOML files into structs that mirror them. Phase two ([`load`])
//! resolves paths against the file that names them, compiles the schemas, checks agreements
//! against partners and schemas, and either returns a [`Config`] or every [`Problem`] found, each
//! with its file. `passerelle check` prints those problems; `serve` refuses to start on them.
//!
//! **Invariant:** a `Config` that exists has passed every check; nothing downstream re-validates.

pub mod raw;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::delivery::{DeliveryEndpoint, DeliveryPlan, DeliverySettings, PlannedRecipient};
use crate::ids::PartnerId;
use crate::pointer::FieldPointer;
use crate::policy::FieldList;
use crate::policy::{Agreement, AgreementRecipient, Conflict, Mode};
use crate::problem::Problem;
use crate::rate_limit::RateLimit;
use crate::schema::{SchemaCatalog, Version};
use crate::telemetry::logging::LogFormat;
use crate::telemetry::otlp::OtlpSettings;
use crate::upkeep::RetentionSettings;

/// The configuration could not be loaded; every problem found is listed.
#[derive(Debug, thiserror::Error)]
#[error("the configuration has {} problem(s)", problems.len())]
pub struct LoadError {
    pub problems: Vec<Problem>,
}

/// Which order of government a partner belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Jurisdiction {
    Federal,
    Provincial,
    Territorial,
    Municipal,
}

/// An organisation's system, as configured.
#[derive(Debug, Clone)]
pub struct Partner {
    pub id: PartnerId,
    pub name_en: String,
    pub name_fr: String,
    pub jurisdiction: Jurisdiction,
    pub region: String,
    pub delivery: Option<DeliveryEndpoint>,
    pub rate_limit: Option<RateLimit>,
}

/// Listener addresses and caps.
#[derive(Debug, Clone)]
pub struct Listen {
    pub partner: SocketAddr,
    pub admin: SocketAddr,
    pub max_connections: usize,
}

/// Limits on what a partner may send.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Request line and headers together; larger is 431.
    pub max_header_bytes: usize,
    pub max_depth: usize,
    pub body_timeout: Duration,
    pub header_timeout: Duration,
}

/// Settings of the embedded store.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub sqlite_path: PathBuf,
    /// PostgreSQL instead of SQLite (several instances sharing one store).
    pub postgres: Option<PostgresSettings>,
    /// Requests waiting for the writer at once; a full queue makes requests wait, then 503.
    pub commit_queue: usize,
    /// Most requests one transaction carries.
    pub max_batch: usize,
    /// How long a request waits for its commit before it is answered 503.
    pub commit_timeout: Duration,
}

/// How to reach PostgreSQL.
#[derive(Clone)]
pub struct PostgresSettings {
    pub config: tokio_postgres::Config,
    pub pool_size: usize,
    /// TLS to the database, verified against `store.ca_file`; `None` means plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection settings may hold a password: only the hosts and database are shown.
        f.debug_struct("PostgresSettings")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish()
    }
}

/// The audit chain's keys and checkpoint cadence.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub signing_key_file: PathBuf,
    pub trusted_key_files: Vec<PathBuf>,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
}

/// How partners reach the partner listener.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// The TLS configuration; `None` with `insecure_plaintext`.
    pub server: Option<crate::tls::ServerTls>,
    pub handshake_timeout: Duration,
    /// Files whose content the settings came from (certificates, keys, CRLs).
    pub files: Vec<PathBuf>,
    /// Private key files among them.
    pub key_files: Vec<PathBuf>,
}

/// Admin listener settings.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// The file the token came from, if any.
    pub token_file: Option<PathBuf>,
    /// The admin token, if one is configured; without one the admin API other than probes and
    /// metrics is closed.
    pub token: Option<Arc<str>>,
    pub metrics_open: bool,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// Where spans go, when they are exported.
#[derive(Debug, Clone, Default)]
pub struct TelemetrySettings {
    pub otlp: Option<OtlpSettings>,
}

/// `[telemetry]`: an OTLP/HTTP collector's URL must be `http` or `https`, and an `https` one
/// needs the CA of the collector's certificate.
fn load_telemetry(path: &Path, base: &Path, raw: &raw::RawTelemetry, problems: &mut Vec<Problem>) -> TelemetrySettings {
    let Some(endpoint) = raw.otlp_endpoint.as_deref().map(|e| e.trim_end_matches('/')) else {
        return TelemetrySettings::default();
    };
    let uri = endpoint.parse::<http::Uri>().ok().filter(|u| u.authority().is_some());
    let https = match uri.as_ref().and_then(|u| u.scheme_str()) {
        Some("http") => false,
        Some("https") => true,
        _ => {
            problems.push(problem(
                path,
                format!("telemetry.otlp_endpoint `{endpoint}` is not an http:// or https:// URL"),
                Some("give the collector's OTLP/HTTP base URL, such as http://127.0.0.1:4318"),
            ));
            return TelemetrySettings::default();
        }
    };
    let ca_files: Vec<PathBuf> = raw.otlp_ca_file.iter().map(|f| resolve(base, Some(f), "")).collect();
    if https && ca_files.is_empty() {
        problems.push(problem(
            path,
            "telemetry.otlp_endpoint is https but telemetry.otlp_ca_file is not set",
            Some("name the CA (PEM) of the collector's certificate"),
        ));
        return TelemetrySettings::default();
    }
    let tls = match crate::tls::recipient_client(&ca_files, None, None) {
        Ok(tls) => tls,
        Err(e) => {
            problems.push(problem(path, format!("telemetry.otlp_ca_file: {e}"), None));
            return TelemetrySettings::default();
        }
    };
    TelemetrySettings {
        otlp: Some(OtlpSettings {
            traces_url: format!("{endpoint}/v1/traces"),
            tls,
            service_name: raw.service_name.clone().unwrap_or_else(|| "passerelle".to_owned()),
        }),
    }
}

/// The validated configuration: one immutable snapshot.
#[derive(Debug)]
pub struct Config {
    /// The main file this snapshot was loaded from.
    pub source: PathBuf,
    /// SHA-256 (hex) over every file the snapshot was built from, in a fixed order: what the
    /// audit trail records when a configuration is loaded.
    pub fingerprint: String,
    pub data_dir: PathBuf,
    pub schemas_dir: PathBuf,
    pub listen: Listen,
    pub limits: Limits,
    pub store: StoreSettings,
    pub delivery: DeliverySettings,
    pub admin: AdminSettings,
    pub log: LogSettings,
    /// Span export; read at start (a reload does not change it).
    pub telemetry: TelemetrySettings,
    pub audit: AuditSettings,
    pub retention: RetentionSettings,
    pub tls: TlsSettings,
    pub partners: BTreeMap<PartnerId, Partner>,
    pub agreements: Vec<Arc<Agreement>>,
    pub catalog: SchemaCatalog,
    /// Client certificate names and pins, API key hashes, a trusted proxy's forwarding.
    pub credentials: crate::auth::Credentials,
    /// The file the API key hashes came from, if any.
    pub api_keys_file: Option<PathBuf>,
}

impl Config {
    /// The files holding secrets, checked at start for their mode: private keys, the API key
    /// hashes, the admin token, the audit secrets, and the SQLite store, which holds the records
    /// (one created before the store was made owner-only may still be world-readable).
    pub fn secret_files(&self) -> Vec<PathBuf> {
        let mut files =
            vec![self.data_dir.join(crate::audit::digest::SECRET_FILE), self.audit.signing_key_file.clone()];
        if self.store.postgres.is_none() {
            files.push(self.store.sqlite_path.clone());
        }
        files.extend(self.admin.token_file.clone());
        files.extend(self.api_keys_file.clone());
        files.extend(self.tls.key_files.iter().cloned());
        for p in self.partners.values() {
            files.extend(p.delivery.as_ref().and_then(|d| d.client_key_file.clone()));
        }
        files.sort();
        files.dedup();
        files
    }

    /// Partners that receive records, each once.
    pub fn recipients(&self) -> impl Iterator<Item = &Partner> {
        self.partners.values().filter(|p| p.delivery.is_some())
    }

    /// What the delivery workers put in force: the delivery settings and every recipient, in
    /// strict order if any agreement asks it for that recipient.
    pub fn delivery_plan(&self) -> DeliveryPlan {
        let recipients = self
            .recipients()
            .filter_map(|partner| {
                let endpoint = partner.delivery.clone()?;
                let ordered = self
                    .agreements
                    .iter()
                    .flat_map(|a| a.recipients.iter())
                    .any(|r| r.partner == partner.id && r.ordered);
                Some(PlannedRecipient { id: partner.id.clone(), endpoint, ordered })
            })
            .collect();
        DeliveryPlan { settings: self.delivery.clone(), recipients }
    }

    /// Looks a partner up by id.
    pub fn partner(&self, id: &str) -> Option<&Partner> {
        self.partners.get(id)
    }
}

/// Reads the TOML file at `path` into `T`, recording a problem on failure.
fn read_toml<T: serde::de::DeserializeOwned>(path: &Path, problems: &mut Vec<Problem>) -> Option<T> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            problems.push(problem(path, format!("cannot be read: {e}"), None));
            return None;
        }
    };
    match toml::from_str(&text) {
        Ok(value) => Some(value),
        Err(e) => {
            let message = e.message().to_owned();
            let location = e
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            problems.push(problem(path, format!("is not valid: {message}{location}"), None));
            None
        }
    }
}

/// TLS to PostgreSQL: with `store.ca_file` the connection requires TLS and verifies the server
/// against that CA; without it the connection is plain, and a URL asking for TLS is a problem
/// (the gateway never encrypts without knowing whom it talks to). The store sets `sslmode` from
/// the result (`store::postgres::connect`); this checks what the operator wrote against it.
fn postgres_tls(
    path: &Path,
    base: &Path,
    store: &raw::RawStore,
    config: &tokio_postgres::Config,
    problems: &mut Vec<Problem>,
) -> Option<Arc<rustls::ClientConfig>> {
    use tokio_postgres::config::SslMode;
    let Some(ca_file) = store.ca_file.as_deref() else {
        if config.get_ssl_mode() == SslMode::Require {
            problems.push(problem(
                path,
                "store.url asks for TLS (sslmode=require) but store.ca_file is not set",
                Some("set store.ca_file to the CA that signed the database server's certificate"),
            ));
        }
        return None;
    };
    if config.get_ssl_mode() == SslMode::Disable {
        problems.push(problem(
            path,
            "store.ca_file is set but store.url says sslmode=disable",
            Some("remove sslmode=disable from store.url, or remove store.ca_file"),
        ));
        return None;
    }
    let ca_file = resolve(base, Some(ca_file), "");
    match crate::tls::recipient_client(&[ca_file], None, None) {
        Ok(tls) => Some(tls),
        Err(e) => {
            problems.push(problem(path, format!("store.ca_file: {e}"), None));
            None
        }
    }
}

fn problem(file: &Path, message: impl Into<String>, fix: Option<&str>) -> Problem {
    Problem { file: file.to_path_buf(), message: message.into(), fix: fix.map(str::to_owned) }
}

/// Resolves `value` (or `default`) against `base`, the directory of the file that names it.
fn resolve(base: &Path, value: Option<&str>, default: &str) -> PathBuf {
    let p = Path::new(value.unwrap_or(default));
    normalize(&if p.is_absolute() { p.to_path_buf() } else { base.join(p) })
}

/// Removes `.` and `..` segments without touching the file system, so messages show
/// `/srv/passerelle/schemas/...` rather than `/srv/passerelle/config/../schemas/...`.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn parse_instant(text: &str) -> Result<OffsetDateTime, String> {
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| format!("`{text}` is not an RFC 3339 date-time"))?;
    if t.offset() != time::UtcOffset::UTC {
        return Err(format!("`{text}` must be in UTC (end it with `Z`)"));
    }
    Ok(t)
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn ms(value: Option<u64>, default: u64) -> Duration {
    Duration::from_millis(value.unwrap_or(default))
}

/// Loads and checks the configuration rooted at `path`.
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let mut problems = Vec::new();
    let path = normalize(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
    let Some(main) = read_toml::<raw::RawMain>(&path, &mut problems) else {
        return Err(LoadError { problems });
    };
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();

    let data_dir = resolve(&base, main.data_dir.as_deref(), "../data");
    let schemas_dir = resolve(&base, main.schemas_dir.as_deref(), "../schemas");
    let partners_file = resolve(&base, main.partners_file.as_deref(), "partners.toml");
    let agreements_dir = resolve(&base, main.agreements_dir.as_deref(), "agreements");

    let listen = load_listen(&path, &main.listen, &mut problems);
    let limits = Limits {
        max_body_bytes: main.limits.max_body_bytes.unwrap_or(1024 * 1024),
        max_depth: main.limits.max_depth.unwrap_or(64),
        max_header_bytes: main.limits.max_header_bytes.unwrap_or(16 * 1024).max(1024),
        body_timeout: ms(main.limits.body_timeout_ms, 10_000),
        header_timeout: ms(main.limits.header_timeout_ms, 10_000),
    };
    if limits.max_depth == 0 || limits.max_depth > 128 {
        problems.push(problem(&path, "limits.max_depth must be between 1 and 128", None));
    }
    let store = StoreSettings {
        sqlite_path: data_dir.join(main.store.path.as_deref().unwrap_or("passerelle.sqlite")),
        postgres: main.store.url.as_deref().and_then(|url| match url.parse::<tokio_postgres::Config>() {
            Ok(mut config) => {
                if let Some(var) = &main.store.password_env {
                    match std::env::var(var) {
                        Ok(password) => {
                            config.password(password);
                        }
                        Err(_) => {
                            problems.push(problem(&path, format!("store.password_env: `{var}` is not set"), None))
                        }
                    }
                }
                let tls = postgres_tls(&path, &base, &main.store, &config, &mut problems);
                Some(PostgresSettings { config, pool_size: main.store.pool_size.unwrap_or(8).max(2), tls })
            }
            // The error names what is wrong with the string, never the string (it may hold a password).
            Err(e) => {
                problems.push(problem(&path, format!("store.url is not a PostgreSQL connection string: {e}"), None));
                None
            }
        }),
        commit_queue: main.store.commit_queue.unwrap_or(4096).max(1),
        max_batch: main.store.max_batch.unwrap_or(512).max(1),
        commit_timeout: ms(main.store.commit_timeout_ms, 5_000),
    };
    let d = &main.delivery;
    let delivery = DeliverySettings {
        max_attempts: d.max_attempts.unwrap_or(12).max(1),
        max_age: Duration::from_secs(d.max_age_secs.unwrap_or(3 * 24 * 3600)),
        initial_backoff: ms(d.initial_backoff_ms, 1_000),
        max_backoff: ms(d.max_backoff_ms, 600_000),
        attempt_timeout: ms(d.attempt_timeout_ms, 10_000),
        lease: Duration::from_secs(d.lease_secs.unwrap_or(60).max(1)),
        poll_interval: ms(d.poll_interval_ms, 1_000),
        concurrency_per_recipient: d.concurrency_per_recipient.unwrap_or(16).max(1),
        breaker_failures: d.breaker_failures.unwrap_or(5).max(1),
        breaker_open: ms(d.breaker_open_ms, 30_000),
        ca_files: d.ca_files.iter().map(|f| resolve(&base, Some(f), "")).collect(),
        client_cert_file: d.client_cert_file.as_deref().map(|f| resolve(&base, Some(f), "")),
        client_key_file: d.client_key_file.as_deref().map(|f| resolve(&base, Some(f), "")),
    };
    let audit = AuditSettings {
        signing_key_file: main
            .audit
            .signing_key_file
            .as_deref()
            .map_or_else(|| data_dir.join(crate::audit::keys::SIGNING_KEY_FILE), |f| resolve(&base, Some(f), "")),
        trusted_key_files: main.audit.trusted_keys.iter().map(|f| resolve(&base, Some(f), "")).collect(),
        checkpoint_every: main.audit.checkpoint_every.unwrap_or(1000).max(1),
        checkpoint_interval: Duration::from_secs(main.audit.checkpoint_interval_secs.unwrap_or(60).max(1)),
    };
    for file in &audit.trusted_key_files {
        let mut keys = crate::audit::keys::TrustedKeys::default();
        if let Err(e) = keys.add_file(file) {
            problems.push(problem(&path, format!("audit.trusted_keys: {e}"), None));
        }
    }
    let days = |v: Option<f64>, default: f64, key: &str, problems: &mut Vec<Problem>| {
        let d = v.unwrap_or(default);
        if !(d.is_finite() && d >= 0.0) {
            problems.push(problem(&path, format!("retention.{key} must be a number of days, 0 or more"), None));
            return Duration::ZERO;
        }
        Duration::from_secs_f64(d * 86_400.0)
    };
    let retention = RetentionSettings {
        delivered: days(main.retention.delivered_days, 7.0, "delivered_days", &mut problems),
        dead: days(main.retention.dead_days, 30.0, "dead_days", &mut problems),
        purge_interval: Duration::from_secs(main.retention.purge_interval_secs.unwrap_or(3600).max(1)),
    };
    let admin = load_admin(&path, &base, &main.admin, &mut problems);
    let log = LogSettings {
        format: match main.log.format.as_deref().unwrap_or("auto") {
            "auto" => LogFormat::Auto,
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => {
                problems.push(problem(&path, format!("log.format `{other}` is not one of auto, json, text"), None));
                LogFormat::Auto
            }
        },
        level: main.log.level.clone().unwrap_or_else(|| "info".to_owned()),
    };
    let telemetry = load_telemetry(&path, &base, &main.telemetry, &mut problems);

    let (tls, forwarding) = load_tls(&path, &base, &main.tls, &mut problems);
    // A partners file that cannot be read is one problem, not one more for every reference to a
    // partner: references are only checked against a partners file that was read.
    let loaded = load_partners(&partners_file, &delivery, &mut problems);
    let partners_known = loaded.is_some();
    let partners = loaded.unwrap_or_default();
    let api_keys_file = main.api_keys_file.as_deref().map(|f| resolve(&base, Some(f), ""));
    let api_keys = load_api_keys(&partners_file, api_keys_file.as_deref(), &partners, partners_known, &mut problems);
    let certificates = load_certificates(&partners_file, &partners, &mut problems);

    let (catalog, schema_problems) = SchemaCatalog::load_partial(&schemas_dir);
    problems.extend(schema_problems);
    let agreements = load_agreements(&agreements_dir, &partners, partners_known, &catalog, &mut problems);

    if !problems.is_empty() {
        return Err(LoadError { problems });
    }
    let mut inputs = vec![path.clone(), partners_file.clone()];
    inputs.extend(agreements.iter().map(|a| a.file.clone()));
    inputs.extend(api_keys_file.clone());
    inputs.extend(audit.trusted_key_files.iter().cloned());
    inputs.extend(catalog.files());
    inputs.extend(tls.files.iter().cloned());
    let fingerprint = fingerprint(&inputs);
    Ok(Config {
        source: path,
        fingerprint,
        data_dir,
        schemas_dir,
        listen,
        limits,
        store,
        delivery,
        admin,
        log,
        telemetry,
        audit,
        retention,
        tls,
        partners: partners.into_iter().map(|p| (p.id.clone(), p)).collect(),
        agreements: agreements.into_iter().map(Arc::new).collect(),
        catalog,
        credentials: crate::auth::Credentials { certificates, api_keys, forwarding },
        api_keys_file,
    })
}

/// `[tls]`: the partner listener's TLS, or, on a plaintext listener, the proxy whose forwarded
/// client certificates are believed.
fn load_tls(
    path: &Path,
    base: &Path,
    raw: &raw::RawTls,
    problems: &mut Vec<Problem>,
) -> (TlsSettings, Option<crate::auth::Forwarding>) {
    let files = |list: &[String]| list.iter().map(|f| resolve(base, Some(f), "")).collect::<Vec<_>>();
    let ca_files = files(&raw.client_ca_files);
    let crl_files = files(&raw.crl_files);
    let plaintext = raw.insecure_plaintext.unwrap_or(false);
    let mut settings = TlsSettings {
        server: None,
        handshake_timeout: ms(raw.handshake_timeout_ms, 10_000),
        files: ca_files.iter().chain(&crl_files).cloned().collect(),
        key_files: Vec::new(),
    };
    let fix = Some("run `passerelle dev-pki` for a development PKI, or point tls.* at your certificates");
    if plaintext {
        let mut proxies = Vec::new();
        for ip in &raw.trusted_proxies {
            match ip.parse::<std::net::IpAddr>() {
                Ok(ip) => proxies.push(ip),
                Err(_) => {
                    problems.push(problem(path, format!("tls.trusted_proxies: `{ip}` is not an IP address"), None))
                }
            }
        }
        let mut header = None;
        if let Some(h) = &raw.client_cert_header {
            match http::HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) => header = Some(name),
                Err(_) => {
                    problems.push(problem(path, format!("tls.client_cert_header `{h}` is not a header name"), None))
                }
            }
        }
        if header.is_some() {
            if proxies.is_empty() {
                problems.push(problem(path, "tls.client_cert_header needs tls.trusted_proxies", None));
            }
            if ca_files.is_empty() {
                problems.push(problem(
                    path,
                    "tls.client_cert_header needs tls.client_ca_files to verify forwarded certificates",
                    None,
                ));
            }
        }
        let mut verifier = None;
        if !ca_files.is_empty() {
            match crate::tls::client_verifier(&ca_files, &crl_files) {
                Ok(v) => verifier = Some(v),
                Err(e) => problems.push(problem(path, format!("tls: {e}"), fix)),
            }
        }
        let forwarding = match (header, verifier) {
            (Some(header), Some(verifier)) => Some(crate::auth::Forwarding { header, proxies, verifier }),
            _ => None,
        };
        return (settings, forwarding);
    }
    let (Some(cert), Some(key)) = (&raw.cert_file, &raw.key_file) else {
        problems.push(problem(
            path,
            "the partner listener needs tls.cert_file and tls.key_file (or tls.insecure_plaintext = true behind a TLS-terminating proxy)",
            fix,
        ));
        return (settings, None);
    };
    let (cert, key) = (resolve(base, Some(cert), ""), resolve(base, Some(key), ""));
    settings.files.extend([cert.clone(), key.clone()]);
    settings.key_files.push(key.clone());
    let server = if ca_files.is_empty() {
        crate::tls::server_tls_without_clients(&cert, &key)
    } else {
        crate::tls::server_tls(&cert, &key, &ca_files, &crl_files)
    };
    match server {
        Ok(s) => settings.server = Some(s),
        Err(e) => problems.push(problem(path, format!("tls: {e}"), fix)),
    }
    (settings, None)
}

fn load_certificates(partners_file: &Path, partners: &[Partner], problems: &mut Vec<Problem>) -> crate::tls::CertIndex {
    let mut index = crate::tls::CertIndex::default();
    let Ok(raw) = std::fs::read_to_string(partners_file)
        .map_err(|_| ())
        .and_then(|t| toml::from_str::<raw::RawPartners>(&t).map_err(|_| ()))
    else {
        return index;
    };
    for p in raw.partners.iter().filter(|p| partners.iter().any(|k| *k.id == *p.id)) {
        let id: PartnerId = Arc::from(p.id.as_str());
        for name in &p.cert_names {
            if let Some(other) = index.add_name(name, id.clone()).filter(|o| *o != id) {
                problems.push(problem(
                    partners_file,
                    format!("certificate name `{name}` is claimed by `{other}` and `{}`", p.id),
                    None,
                ));
            }
        }
        for pin in &p.cert_spki_sha256 {
            match crate::digest::decode_hex(pin.trim()).filter(|b| b.len() == 32) {
                Some(bytes) => {
                    let mut pin32 = [0u8; 32];
                    pin32.copy_from_slice(&bytes);
                    if let Some(other) = index.add_pin(pin32, id.clone()).filter(|o| *o != id) {
                        problems.push(problem(
                            partners_file,
                            format!("an SPKI pin is claimed by `{other}` and `{}`", p.id),
                            None,
                        ));
                    }
                }
                None => problems.push(problem(
                    partners_file,
                    format!("partner `{}`: cert_spki_sha256 entries are 64 hex characters", p.id),
                    None,
                )),
            }
        }
    }
    index
}

/// SHA-256 over each file's path and contents, in the order given.
fn fingerprint(files: &[PathBuf]) -> String {
    let mut all = Vec::new();
    for f in files {
        all.extend_from_slice(f.to_string_lossy().as_bytes());
        all.push(0);
        all.extend_from_slice(&std::fs::read(f).unwrap_or_default());
        all.push(0);
    }
    crate::digest::to_hex(&crate::digest::sha256(&all))
}

fn load_listen(path: &Path, raw: &raw::RawListen, problems: &mut Vec<Problem>) -> Listen {
    let mut addr = |value: Option<&str>, default: &str, key: &str| -> SocketAddr {
        let text = value.unwrap_or(default);
        text.parse().unwrap_or_else(|_| {
            problems.push(problem(
                path,
                format!("listen.{key} `{text}` is not an address such as 127.0.0.1:8443"),
                None,
            ));
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    };
    Listen {
        partner: addr(raw.partner.as_deref(), "127.0.0.1:8443", "partner"),
        admin: addr(raw.admin.as_deref(), "127.0.0.1:9090", "admin"),
        max_connections: raw.max_connections.unwrap_or(10_000).max(1),
    }
}

fn load_admin(path: &Path, base: &Path, raw: &raw::RawAdmin, problems: &mut Vec<Problem>) -> AdminSettings {
    let mut token = None;
    if let Some(var) = &raw.token_env {
        token = std::env::var(var).ok().filter(|t| !t.is_empty()).map(Arc::from);
    }
    if token.is_none()
        && let Some(file) = &raw.token_file
    {
        let file = resolve(base, Some(file), "");
        match std::fs::read_to_string(&file) {
            Ok(t) if !t.trim().is_empty() => token = Some(Arc::from(t.trim())),
            Ok(_) => problems.push(problem(&file, "the admin token file is empty", None)),
            // A missing token file is not fatal: `demo` creates it; the admin API stays closed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(problem(path, format!("admin.token_file cannot be read: {e}"), None)),
        }
    }
    AdminSettings {
        token_file: raw.token_file.as_deref().map(|f| resolve(base, Some(f), "")),
        token,
        metrics_open: raw.metrics_open.unwrap_or(true),
    }
}

/// How much longer than an attempt a delivery's lease must last (the result is recorded after it).
const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// The partners, or `None` when the file cannot be read or parsed (that problem is reported).
fn load_partners(file: &Path, delivery: &DeliverySettings, problems: &mut Vec<Problem>) -> Option<Vec<Partner>> {
    let raw = read_toml::<raw::RawPartners>(file, problems)?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut seen = BTreeSet::new();
    let mut partners = Vec::new();
    for p in raw.partners {
        if !is_slug(&p.id) {
            problems.push(problem(file, format!("partner id `{}` must be a slug (a-z, 0-9, -)", p.id), None));
            continue;
        }
        if !seen.insert(p.id.clone()) {
            problems.push(problem(
                file,
                format!("partner id `{}` is defined twice", p.id),
                Some("give each partner its own id"),
            ));
            continue;
        }
        let jurisdiction = match p.jurisdiction.as_str() {
            "federal" => Jurisdiction::Federal,
            "provincial" => Jurisdiction::Provincial,
            "territorial" => Jurisdiction::Territorial,
            "municipal" => Jurisdiction::Municipal,
            other => {
                problems.push(problem(
                    file,
                    format!("partner `{}`: jurisdiction `{other}` is not one of federal, provincial, territorial, municipal", p.id),
                    None,
                ));
                continue;
            }
        };
        let delivery = match p.delivery {
            None => None,
            Some(d) => {
                let url_ok = (d.endpoint.starts_with("http://") || d.endpoint.starts_with("https://"))
                    && d.endpoint.parse::<http::Uri>().is_ok();
                if !url_ok {
                    problems.push(problem(
                        file,
                        format!("partner `{}`: delivery endpoint `{}` is not an http(s) URL", p.id, d.endpoint),
                        None,
                    ));
                }
                let ca_files = match &d.ca_file {
                    Some(f) => vec![resolve(base, Some(f), "")],
                    None => delivery.ca_files.clone(),
                };
                if d.endpoint.starts_with("https://") && ca_files.is_empty() {
                    problems.push(problem(
                        file,
                        format!("partner `{}`: an HTTPS endpoint needs a CA to verify it", p.id),
                        Some("set delivery.ca_files in passerelle.toml or ca_file in the partner's [partner.delivery]"),
                    ));
                }
                let cert = d
                    .client_cert_file
                    .as_deref()
                    .map(|f| resolve(base, Some(f), ""))
                    .or(delivery.client_cert_file.clone());
                let key = d
                    .client_key_file
                    .as_deref()
                    .map(|f| resolve(base, Some(f), ""))
                    .or(delivery.client_key_file.clone());
                let tls =
                    crate::tls::recipient_client(&ca_files, cert.as_deref(), key.as_deref()).unwrap_or_else(|e| {
                        problems.push(problem(file, format!("partner `{}`: {e}", p.id), None));
                        crate::tls::plain_client()
                    });
                let timeout = d.timeout_ms.map(Duration::from_millis).unwrap_or(delivery.attempt_timeout);
                // A lease shorter than an attempt lets another worker take the delivery while it is
                // still in flight (a duplicate, and strict order broken): the lease must outlast
                // the attempt and the recording of its result.
                if timeout + LEASE_MARGIN > delivery.lease {
                    problems.push(problem(
                        file,
                        format!(
                            "partner `{}`: its delivery timeout ({} ms) plus {} s must be within delivery.lease_secs ({} s)",
                            p.id,
                            timeout.as_millis(),
                            LEASE_MARGIN.as_secs(),
                            delivery.lease.as_secs()
                        ),
                        Some("lower the partner's delivery.timeout_ms or raise delivery.lease_secs in the main file"),
                    ));
                }
                Some(DeliveryEndpoint {
                    endpoint: d.endpoint.trim_end_matches('/').to_owned(),
                    ca_file: ca_files.first().cloned(),
                    client_cert_file: cert,
                    client_key_file: key,
                    bearer_token_env: d.bearer_token_env,
                    tls,
                    timeout,
                    concurrency: d.concurrency.unwrap_or(delivery.concurrency_per_recipient).max(1),
                })
            }
        };
        let rate_limit = p.rate_limit.and_then(|r| {
            if r.per_second.is_finite() && r.per_second > 0.0 {
                Some(RateLimit { per_second: r.per_second, burst: r.burst.unwrap_or(r.per_second).max(1.0) })
            } else {
                problems.push(problem(
                    file,
                    format!("partner `{}`: rate_limit.per_second must be above 0", p.id),
                    None,
                ));
                None
            }
        });
        partners.push(Partner {
            id: Arc::from(p.id.as_str()),
            name_en: p.name_en,
            name_fr: p.name_fr,
            jurisdiction,
            region: p.region,
            delivery,
            rate_limit,
        });
        // API key hashes are collected separately by `load_api_keys`.
        let _ = p.api_key_sha256;
    }
    Some(partners)
}

fn load_api_keys(
    partners_file: &Path,
    keys_file: Option<&Path>,
    partners: &[Partner],
    partners_known: bool,
    problems: &mut Vec<Problem>,
) -> crate::auth::ApiKeyIndex {
    let mut index = crate::auth::ApiKeyIndex::default();
    let known: BTreeSet<&str> = partners.iter().map(|p| &*p.id).collect();
    let mut add = |file: &Path, partner: &str, hex: &str, problems: &mut Vec<Problem>| {
        if !known.contains(partner) {
            if !partners_known {
                return;
            }
            problems.push(problem(file, format!("API keys are listed for unknown partner `{partner}`"), None));
        } else if let Err(e) = index.add_sha256_hex(Arc::from(partner), hex) {
            problems.push(problem(file, format!("partner `{partner}`: {e}"), None));
        }
    };
    // The partners file may list hashes inline; read it again only for that field.
    if let Ok(text) = std::fs::read_to_string(partners_file)
        && let Ok(raw) = toml::from_str::<raw::RawPartners>(&text)
    {
        for p in &raw.partners {
            for hex in &p.api_key_sha256 {
                add(partners_file, &p.id, hex, problems);
            }
        }
    }
    if let Some(file) = keys_file
        && file.exists()
        && let Some(raw) = read_toml::<raw::RawApiKeys>(file, problems)
    {
        for (partner, hashes) in &raw.keys {
            for hex in hashes {
                add(file, partner, hex, problems);
            }
        }
    }
    index
}

fn load_agreements(
    dir: &Path,
    partners: &[Partner],
    partners_known: bool,
    catalog: &SchemaCatalog,
    problems: &mut Vec<Problem>,
) -> Vec<Agreement> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(problem(dir, format!("the agreements directory cannot be read: {e}"), None));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();

    let partner_ids: BTreeMap<&str, &Partner> = partners.iter().map(|p| (&*p.id, p)).collect();
    let mut agreements: Vec<Agreement> = Vec::new();
    let mut ids: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        let Some(raw) = read_toml::<raw::RawAgreement>(&file, problems) else {
            continue;
        };
        if let Some(first) = ids.get(&raw.id) {
            problems.push(problem(
                &file,
                format!("agreement id `{}` is already used by {}", raw.id, first.display()),
                Some("give each agreement its own id"),
            ));
            continue;
        }
        ids.insert(raw.id.clone(), file.clone());
        if let Some(agreement) = check_agreement(&file, raw, &partner_ids, partners_known, catalog, problems) {
            agreements.push(agreement);
        }
    }

    for conflict in crate::policy::conflicts(&agreements) {
        let (message, fix) = match conflict {
            Conflict::RecipientTwice { recipient, earlier, later } => (
                format!(
                    "recipient `{recipient}` also appears in agreement `{}` for the same sender `{}` and type `{}` while both are in force",
                    earlier.id, earlier.sender, earlier.record_type
                ),
                (later, Some("keep the recipient in one agreement, or make the validity periods not overlap")),
            ),
            Conflict::RequestNotAlone { earlier, later } => (
                format!(
                    "agreements `{}` and `{}` are both in force for `{}` sending `{}`, and one is a request agreement, which must be the only one",
                    earlier.id, later.id, earlier.sender, earlier.record_type
                ),
                (later, None),
            ),
        };
        problems.push(problem(&fix.0.file, message, fix.1));
    }
    agreements
}

fn check_agreement(
    file: &Path,
    raw: raw::RawAgreement,
    partners: &BTreeMap<&str, &Partner>,
    partners_known: bool,
    catalog: &SchemaCatalog,
    problems: &mut Vec<Problem>,
) -> Option<Agreement> {
    let before = problems.len();
    let mut report = |message: String, fix: Option<&str>| problems.push(problem(file, message, fix));

    if !is_slug(&raw.id) {
        report(format!("agreement id `{}` must be a slug (a-z, 0-9, -)", raw.id), None);
    }
    if file.file_stem().and_then(|s| s.to_str()) != Some(raw.id.as_str()) {
        report(format!("agreement `{}` must be in a file named `{}.toml`", raw.id, raw.id), None);
    }
    if partners_known && !partners.contains_key(raw.sender.as_str()) {
        report(
            format!("sender `{}` is not a partner in the partners file", raw.sender),
            Some("add the partner or correct the id"),
        );
    }
    let mode = match raw.mode.as_deref().unwrap_or("push") {
        "push" => Mode::Push,
        "request" => Mode::Request,
        other => {
            report(format!("mode `{other}` is not `push` or `request`"), None);
            Mode::Push
        }
    };
    let valid_from = parse_instant(&raw.valid_from).map_err(|e| report(format!("valid_from: {e}"), None)).ok();
    let valid_until = raw
        .valid_until
        .as_deref()
        .map(|t| parse_instant(t).map_err(|e| report(format!("valid_until: {e}"), None)).ok())
        .unwrap_or(None);
    if let (Some(from), Some(until)) = (valid_from, valid_until)
        && until <= from
    {
        report(
            format!(
                "valid_until ({}) is not after valid_from ({})",
                raw.valid_until.as_deref().unwrap_or(""),
                raw.valid_from
            ),
            Some("valid_until is exclusive and must come after valid_from"),
        );
    }

    let record_type = catalog.record_type(&raw.record_type);
    if record_type.is_none() && !catalog.is_broken(&raw.record_type) {
        report(format!("record type `{}` has no schema in the schemas directory", raw.record_type), None);
    }
    if raw.versions.is_empty() {
        report("versions lists no schema version".to_owned(), None);
    }
    let mut versions = Vec::new();
    for v in &raw.versions {
        match v.parse::<Version>() {
            Ok(version) => {
                if let Some(t) = record_type {
                    match t.version(version) {
                        None if catalog.is_broken(&raw.record_type) => {}
                        None => report(format!("schema `{}` version {v} does not exist", raw.record_type), None),
                        Some(s) if mode == Mode::Request && s.response.is_none() => report(
                            format!(
                                "request agreement: schema `{}` version {v} has no response schema ({v}.response.json)",
                                raw.record_type
                            ),
                            None,
                        ),
                        Some(_) => {}
                    }
                }
                versions.push(version);
            }
            Err(_) => report(format!("version `{v}` is not MAJOR.MINOR"), None),
        }
    }
    versions.sort();
    versions.dedup();
    let mut sunset = BTreeMap::new();
    for (v, t) in &raw.sunset {
        match (v.parse::<Version>(), parse_instant(t)) {
            (Ok(version), Ok(at)) if versions.contains(&version) => {
                sunset.insert(version, at);
            }
            (Ok(_), Ok(_)) => report(format!("sunset names version {v}, which is not in versions"), None),
            (Err(_), _) => report(format!("sunset version `{v}` is not MAJOR.MINOR"), None),
            (_, Err(e)) => report(format!("sunset for {v}: {e}"), None),
        }
    }

    let mut recipients = Vec::new();
    if raw.recipients.is_empty() {
        report("the agreement has no recipient".to_owned(), None);
    }
    if mode == Mode::Request && raw.recipients.len() > 1 {
        report("a request agreement has exactly one recipient (the responder)".to_owned(), None);
    }
    let mut seen = BTreeSet::new();
    for r in raw.recipients {
        match partners.get(r.partner.as_str()) {
            None if !partners_known => {}
            None => report(
                format!("recipient `{}` is not a partner in the partners file", r.partner),
                Some("add the partner or correct the id"),
            ),
            Some(p) if p.delivery.is_none() => report(
                format!("recipient `{}` has no delivery endpoint in the partners file", r.partner),
                Some("add a [partner.delivery] table with its endpoint"),
            ),
            Some(_) => {}
        }
        if r.partner == raw.sender {
            report(format!("the sender `{}` is also a recipient", r.partner), None);
        }
        if !seen.insert(r.partner.clone()) {
            report(format!("recipient `{}` is listed twice", r.partner), None);
        }
        let fields = parse_fields(&r.fields, &format!("recipient `{}`", r.partner), &mut report);
        if let Some(t) = record_type {
            for field in fields.pointers() {
                for version in &versions {
                    if let Some(s) = t.version(*version)
                        && !s.can_produce(field)
                    {
                        report(
                            format!(
                                "recipient `{}`: field `{field}` cannot be produced by schema `{}` version {version}",
                                r.partner, raw.record_type
                            ),
                            Some("correct the pointer, or drop the version from versions"),
                        );
                    }
                }
            }
        }
        recipients.push(AgreementRecipient { partner: Arc::from(r.partner.as_str()), fields, ordered: r.ordered });
    }

    let response_fields = match mode {
        Mode::Request => {
            if raw.response_fields.is_empty() {
                report("a request agreement needs response_fields".to_owned(), None);
            }
            let fields = parse_fields(&raw.response_fields, "response_fields", &mut report);
            if let Some(t) = record_type {
                for field in fields.pointers() {
                    for version in &versions {
                        if let Some(response) = t.version(*version).and_then(|s| s.response.as_ref())
                            && !response.can_produce(field)
                        {
                            report(
                                format!(
                                    "response field `{field}` cannot be produced by the response schema of `{}` version {version}",
                                    raw.record_type
                                ),
                                None,
                            );
                        }
                    }
                }
            }
            Some(fields)
        }
        Mode::Push => {
            if !raw.response_fields.is_empty() {
                report("response_fields only applies to mode = \"request\"".to_owned(), None);
            }
            None
        }
    };

    if problems.len() > before {
        return None;
    }
    Some(Agreement {
        id: Arc::from(raw.id.as_str()),
        title_en: raw.title_en,
        title_fr: raw.title_fr,
        sender: Arc::from(raw.sender.as_str()),
        record_type: Arc::from(raw.record_type.as_str()),
        versions,
        sunset,
        purpose: raw.purpose,
        valid_from: valid_from?,
        valid_until,
        mode,
        recipients,
        response_fields,
        file: file.to_path_buf(),
    })
}

fn parse_fields(fields: &[String], whose: &str, report: &mut impl FnMut(String, Option<&str>)) -> FieldList {
    let mut pointers = Vec::new();
    if fields.is_empty() {
        report(format!("{whose}: fields is empty"), None);
    }
    for f in fields {
        match f.parse::<FieldPointer>() {
            Ok(p) => pointers.push(p),
            Err(e) => report(
                format!("{whose}: field `{f}`: {e}"),
                Some("fields are JSON Pointers such as /child/date_of_birth; * selects every array element"),
            ),
        }
    }
    FieldList::new(pointers)
}
