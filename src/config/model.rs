//! What a loaded configuration is: the settings resolved from the files, and the parts built
//! from them (TLS configurations, the schema catalog, the credential indexes, the agreement
//! table). [`super::raw`] is the files as written; this is what they mean.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::keys::TrustedKeys;
use crate::delivery::nats::NatsCredentials;
use crate::delivery::{DeliveryMode, DeliveryPlan, DeliverySettings, PlannedRecipient, Transport};
use crate::ids::PartnerId;
use crate::policy::Agreement;
use crate::rate_limit::RateLimit;
use crate::schema::SchemaCatalog;
use crate::telemetry::logging::LogFormat;
use crate::telemetry::otlp::OtlpSettings;
use crate::upkeep::RetentionSettings;

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
    /// How it takes the records it receives, if it receives any, and its completion notices.
    pub delivery: Option<DeliveryMode>,
    /// Whether it is sent a completion notice for each record it sends (`[partner.notify]`).
    pub notify: bool,
    pub rate_limit: Option<RateLimit>,
    /// Read through [`Partner::contacts`].
    pub(super) contacts: Vec<Contact>,
}

impl Partner {
    /// The people on this partner's team its alerts reach (`[[partner.contact]]`), in the
    /// partners file's order. Operators' data about partner staff: never in a log line, a
    /// metric label or an error message.
    pub fn contacts(&self) -> &[Contact] {
        &self.contacts
    }
}

/// The language a contact reads first; the other follows, as every alert is bilingual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    En,
    Fr,
}

impl Language {
    /// `en` or `fr`, as written in the partners file.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Fr => "fr",
        }
    }
}

/// Someone on a partner's team, told when the partner's records are in trouble
/// (`[[partner.contact]]`).
#[derive(Clone, PartialEq, Eq)]
pub struct Contact {
    pub name: String,
    /// Checked to be one address, `name@domain`, without spaces or `<>,;"` in it.
    pub email: String,
    pub language: Language,
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A person's name and address stay out of anything printed for debugging.
        f.debug_struct("Contact").field("language", &self.language).finish_non_exhaustive()
    }
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
    /// How long the writer, when busy, lets a shallow batch wait for more before it commits.
    pub commit_linger: Duration,
    /// How bodies are sealed at rest; `None` when `store.encryption.enabled = false`.
    pub encryption: Option<crate::store::keys::EncryptionSettings>,
}

/// How to reach PostgreSQL.
#[derive(Clone)]
pub struct PostgresSettings {
    pub config: tokio_postgres::Config,
    pub pool_size: usize,
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
    /// The key subject identifiers are digested under ([`crate::audit::subject`]).
    pub subject_key_file: PathBuf,
}

/// How partners reach the partner listener (the TLS built from it is [`Built::partner_tls`]).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub handshake_timeout: Duration,
    /// Files the partner listener's TLS is built from (certificates, keys, CRLs).
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
    /// The operators file, if any: named operators, their grants and token digests.
    pub operators_file: Option<PathBuf>,
    /// `[admin.oidc]`, if people sign in through an OpenID provider.
    pub oidc: Option<OidcSettings>,
}

/// `[admin.oidc]`, resolved: the provider's settings (the secret read) and the files named.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub provider: crate::oidc::ProviderSettings,
    /// The file the client secret came from, if not the environment.
    pub secret_file: Option<PathBuf>,
    /// The CA certificates the issuer is verified with; `None`: the system's.
    pub ca_file: Option<PathBuf>,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// The validated configuration: one immutable snapshot, built whole by [`super::load()`] and
/// swapped whole by a reload. Its [`Settings`] are plain values resolved from the files; its
/// [`Built`] parts (TLS configurations, the schema catalog, the credential indexes, the
/// agreement table) are built from them once, so that `check` builds exactly what `serve` runs
/// without starting anything.
#[derive(Debug)]
pub struct Config {
    /// The main file this snapshot was loaded from.
    pub source: PathBuf,
    /// SHA-256 (hex) over every file the snapshot was built from, as read: what the audit trail
    /// records when a configuration is loaded.
    pub fingerprint: String,
    pub settings: Settings,
    pub built: Built,
}

/// What the files say, resolved: paths made absolute, defaults applied, values checked. Plain
/// data: no TLS configuration, compiled schema or index.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub schemas_dir: PathBuf,
    pub listen: Listen,
    pub limits: Limits,
    pub store: StoreSettings,
    pub delivery: DeliverySettings,
    pub admin: AdminSettings,
    pub log: LogSettings,
    pub audit: AuditSettings,
    pub retention: RetentionSettings,
    pub tls: TlsSettings,
    pub partners: BTreeMap<PartnerId, Partner>,
    /// The file the API key hashes came from, if any.
    pub api_keys_file: Option<PathBuf>,
}

/// What the running gateway uses, built from the settings and the files they name.
#[derive(Debug)]
pub struct Built {
    /// The partner listener's TLS; `None` with `insecure_plaintext` behind a proxy.
    pub partner_tls: Option<crate::tls::ServerTls>,
    /// TLS to PostgreSQL, verified against `store.ca_file`; `None` means plain TCP.
    pub postgres_tls: Option<Arc<rustls::ClientConfig>>,
    /// The TLS client configuration of each recipient (its CAs, the gateway's certificate).
    pub recipient_tls: BTreeMap<PartnerId, Arc<rustls::ClientConfig>>,
    /// The credentials file of each NATS recipient that names one, read and checked.
    pub nats_credentials: BTreeMap<PartnerId, NatsCredentials>,
    /// Span export, when a collector is configured; read at start (a reload does not change it).
    pub otlp: Option<OtlpSettings>,
    /// The agreement table [`crate::policy::route`] routes by.
    pub agreements: Vec<Arc<Agreement>>,
    /// Every schema, compiled.
    pub catalog: SchemaCatalog,
    /// Client certificate names and pins, API key hashes, a trusted proxy's forwarding.
    pub credentials: crate::auth::Credentials,
    /// Audit keys whose signatures are trusted besides the gateway's own (`audit.trusted_keys`).
    pub trusted_keys: TrustedKeys,
    /// Every operator who may sign in, and what each may do.
    pub operators: crate::operators::Directory,
    /// The OpenID provider people sign in through, if `[admin.oidc]` names one.
    pub oidc: Option<Arc<crate::oidc::Provider>>,
}

impl Config {
    /// The files holding secrets, checked at start for their mode: private keys, the API key
    /// hashes, the admin token, the audit secrets, and the SQLite store, which holds the records
    /// (one created before the store was made owner-only may still be world-readable).
    pub fn secret_files(&self) -> Vec<PathBuf> {
        let s = &self.settings;
        let mut files = vec![
            s.data_dir.join(crate::audit::digest::SECRET_FILE),
            s.audit.signing_key_file.clone(),
            s.audit.subject_key_file.clone(),
        ];
        if s.store.postgres.is_none() {
            files.push(s.store.sqlite_path.clone());
        }
        if let Some(crate::store::keys::EncryptionSettings { key: crate::store::keys::KekSource::File(f), .. }) =
            &s.store.encryption
        {
            files.push(f.clone());
        }
        files.extend(s.admin.token_file.clone());
        files.extend(s.admin.oidc.as_ref().and_then(|o| o.secret_file.clone()));
        files.extend(s.api_keys_file.clone());
        files.extend(s.tls.key_files.iter().cloned());
        for p in s.partners.values() {
            files.extend(p.delivery.iter().flat_map(DeliveryMode::secret_files));
        }
        files.sort();
        files.dedup();
        files
    }

    /// Partners that receive records, each once.
    pub fn recipients(&self) -> impl Iterator<Item = &Partner> {
        self.settings.partners.values().filter(|p| p.delivery.is_some())
    }

    /// What the delivery workers put in force: the delivery settings and every recipient, in
    /// strict order if any agreement asks it for that recipient.
    pub fn delivery_plan(&self) -> DeliveryPlan {
        let agreements = || self.built.agreements.iter().flat_map(|a| a.recipients.iter().map(move |r| (a, r)));
        let recipients = self
            .recipients()
            .filter_map(|partner| {
                let transport = match partner.delivery.as_ref()? {
                    DeliveryMode::Push(endpoint) => Transport::Http {
                        endpoint: endpoint.clone(),
                        tls: self.built.recipient_tls.get(&partner.id)?.clone(),
                    },
                    DeliveryMode::Pull => Transport::Mailbox,
                    DeliveryMode::Nats(endpoint) => Transport::Nats {
                        endpoint: endpoint.clone(),
                        tls: self.built.recipient_tls.get(&partner.id)?.clone(),
                        credentials: self.built.nats_credentials.get(&partner.id).cloned(),
                        record_types: agreements()
                            .filter(|(_, r)| r.partner == partner.id)
                            .map(|(a, _)| a.record_type.to_string())
                            .collect(),
                    },
                };
                let ordered = agreements().any(|(_, r)| r.partner == partner.id && r.ordered);
                Some(PlannedRecipient { id: partner.id.clone(), transport, ordered })
            })
            .collect();
        DeliveryPlan { settings: self.settings.delivery.clone(), recipients }
    }

    /// Looks a partner up by id.
    pub fn partner(&self, id: &str) -> Option<&Partner> {
        self.settings.partners.get(id)
    }
}
