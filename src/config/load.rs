//! Loading: every file read once through [`super::sources::Sources`], the settings resolved, and the parts built
//! and checked together; the result is a [`Config`] or every problem found.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::model::*;
use super::sources::{Sources, ms, normalize, problem, resolve};
use super::{agreements, oidc, operators, partners, raw, tls};
use crate::audit::keys::{KeyError, TrustedKeys};
use crate::delivery::{DeliverySettings, InboxSettings};
use crate::ids::PartnerId;
use crate::problem::Problem;
use crate::schema::SchemaCatalog;
use crate::store::keys::{self, EncryptionSettings, KekSource};
use crate::telemetry::logging::LogFormat;
use crate::upkeep::RetentionSettings;

/// The longest `store.commit_linger_ms` accepted: longer would only add latency to every
/// commit under load, with no fsync left to save.
const MAX_COMMIT_LINGER_MS: u64 = 50;

/// The configuration could not be loaded; every problem found is listed.
#[derive(Debug, thiserror::Error)]
#[error("the configuration has {} problem(s)", problems.len())]
pub struct LoadError {
    pub problems: Vec<Problem>,
}

/// Loads and checks the configuration rooted at `path`.
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let mut problems = Vec::new();
    let files = Sources::default();
    let path = main_path(path);
    let Some(main) = files.read_toml::<raw::RawMain>(&path, &mut problems) else {
        return Err(LoadError { problems });
    };
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();

    let data_dir = resolve(&base, main.data_dir.as_deref(), "../data");
    let schemas_dir = resolve(&base, main.schemas_dir.as_deref(), "../schemas");
    let partners_file = partners_file(&base, &main);
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
    let mut postgres_tls = None;
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
                postgres_tls = tls::postgres_tls(&files, &path, &base, &main.store, &config, &mut problems);
                Some(PostgresSettings { config, pool_size: main.store.pool_size.unwrap_or(8).max(2) })
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
        commit_linger: ms(main.store.commit_linger_ms, 0),
        encryption: load_encryption(&path, &base, &data_dir, &main.store.encryption, &mut problems),
    };
    if store.commit_linger > Duration::from_millis(MAX_COMMIT_LINGER_MS) {
        problems.push(problem(
            &path,
            format!("store.commit_linger_ms must be at most {MAX_COMMIT_LINGER_MS}: every busy commit waits for it"),
            None,
        ));
    }
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
        inbox: InboxSettings {
            lease: Duration::from_secs(d.inbox_lease_secs.unwrap_or(60).max(1)),
            max_wait: Duration::from_secs(d.inbox_max_wait_secs.unwrap_or(30)),
            max_batch: d.inbox_max_batch.unwrap_or(500).max(1),
            waiting_per_partner: d.inbox_waiting_per_partner.unwrap_or(8).max(1),
        },
        sign: d.sign.unwrap_or(true),
    };
    // A key file named relative to the configuration, else generated into the data directory.
    let key_file = |file: Option<&str>, generated: &str| {
        file.map_or_else(|| data_dir.join(generated), |f| resolve(&base, Some(f), ""))
    };
    let audit = AuditSettings {
        signing_key_file: key_file(main.audit.signing_key_file.as_deref(), crate::audit::keys::SIGNING_KEY_FILE),
        trusted_key_files: main.audit.trusted_keys.iter().map(|f| resolve(&base, Some(f), "")).collect(),
        checkpoint_every: main.audit.checkpoint_every.unwrap_or(1000).max(1),
        checkpoint_interval: Duration::from_secs(main.audit.checkpoint_interval_secs.unwrap_or(60).max(1)),
        subject_key_file: key_file(main.audit.subject_key_file.as_deref(), crate::audit::subject::KEY_FILE),
    };
    let trusted_keys = trusted_keys(&files, &path, &audit.trusted_key_files, &mut problems);
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
        access: days(main.retention.access_days, 2555.0, "access_days", &mut problems),
        purge_interval: Duration::from_secs(main.retention.purge_interval_secs.unwrap_or(3600).max(1)),
    };
    let admin = load_admin(&files, &path, &base, &main.admin, &mut problems);
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
    let otlp = tls::load_telemetry(&files, &path, &base, &main.telemetry, &mut problems);

    let (tls, partner_tls, forwarding) = tls::load_tls(&files, &path, &base, &main.tls, &mut problems);
    // A partners file that cannot be read is one problem, not one more for every reference to a
    // partner: references are only checked against a partners file that was read.
    let loaded = partners::load(&files, &partners_file, &delivery, limits.max_body_bytes, &mut problems);
    let partners_known = loaded.is_some();
    let partners::PartnersFile { partners, certificates, inline_keys, recipient_tls, nats_credentials } =
        loaded.unwrap_or_default();
    let api_keys_file = main.api_keys_file.as_deref().map(|f| resolve(&base, Some(f), ""));
    let api_keys = partners::api_keys(
        &files,
        &inline_keys,
        api_keys_file.as_deref(),
        &partners_file,
        &partners,
        partners_known,
        &mut problems,
    );

    let (catalog, schema_problems) = SchemaCatalog::load_partial(&schemas_dir, &|file| files.read(file));
    problems.extend(schema_problems);
    let agreements = agreements::load(&files, &agreements_dir, &partners, partners_known, &catalog, &mut problems);
    let known = operators::Known {
        partners: partners.iter().map(|p| &*p.id).collect(),
        agreements: agreements.iter().map(|a| &*a.id).collect(),
    };
    let operators =
        operators::load(&files, admin.operators_file.as_deref(), admin.token.as_deref(), &known, &mut problems);
    let (oidc_settings, oidc, operators) =
        oidc::load(&files, &path, &base, main.admin.oidc.as_ref(), operators, &known, &mut problems);
    let admin = AdminSettings { oidc: oidc_settings, ..admin };

    if !problems.is_empty() {
        return Err(LoadError { problems });
    }
    let fingerprint = files.fingerprint();
    let settings = Settings {
        data_dir,
        schemas_dir,
        listen,
        limits,
        store,
        delivery,
        admin,
        log,
        audit,
        retention,
        tls,
        partners: partners.into_iter().map(|p| (p.id.clone(), p)).collect(),
        api_keys_file,
    };
    let built = Built {
        partner_tls,
        postgres_tls,
        recipient_tls,
        nats_credentials,
        otlp,
        agreements: agreements.into_iter().map(Arc::new).collect(),
        catalog,
        credentials: crate::auth::Credentials { certificates, api_keys, forwarding },
        trusted_keys,
        operators,
        oidc,
    };
    Ok(Config { source: path, fingerprint, settings, built })
}

/// Each partner's contacts, by partner id, from the partners file the main file at `path`
/// names. Only the main file and the partners file are read, and only what contacts need is
/// checked (the partner ids and the contacts), so this works where the TLS material, keys and
/// schemas a full [`load()`] reads are not, such as a repository of configuration files.
pub fn contacts(path: &Path) -> Result<BTreeMap<PartnerId, Vec<Contact>>, LoadError> {
    let mut problems = Vec::new();
    let files = Sources::default();
    let path = main_path(path);
    let contacts = files.read_toml::<raw::RawMain>(&path, &mut problems).and_then(|main| {
        let file = partners_file(path.parent().unwrap_or(Path::new(".")), &main);
        partners::contacts_only(&files, &file, &mut problems)
    });
    match contacts {
        Some(contacts) if problems.is_empty() => Ok(contacts),
        _ => Err(LoadError { problems }),
    }
}

/// The main file's path, absolute and without `.` or `..`, as every problem names it.
fn main_path(path: &Path) -> PathBuf {
    normalize(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// The partners file the main file names, resolved against the main file's directory `base`.
fn partners_file(base: &Path, main: &raw::RawMain) -> PathBuf {
    resolve(base, main.partners_file.as_deref(), "partners.toml")
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

fn load_admin(
    files: &Sources,
    path: &Path,
    base: &Path,
    raw: &raw::RawAdmin,
    problems: &mut Vec<Problem>,
) -> AdminSettings {
    let mut token = None;
    if let Some(var) = &raw.token_env {
        token = std::env::var(var).ok().filter(|t| !t.is_empty()).map(Arc::from);
    }
    if token.is_none()
        && let Some(file) = &raw.token_file
    {
        let file = resolve(base, Some(file), "");
        match files.read(&file).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()) {
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
        operators_file: raw.operators_file.as_deref().map(|f| resolve(base, Some(f), "")),
        oidc: None,
    }
}

/// `[store.encryption]`, with its keys read to check them: a key that exists but cannot be
/// read, or is not a key, is a problem; a missing key file is generated at the first start.
fn load_encryption(
    path: &Path,
    base: &Path,
    data_dir: &Path,
    raw: &raw::RawEncryption,
    problems: &mut Vec<Problem>,
) -> Option<EncryptionSettings> {
    if raw.enabled == Some(false) {
        return None;
    }
    let key = match (&raw.key_env, &raw.key_file) {
        (Some(_), Some(_)) => {
            problems.push(problem(
                path,
                "store.encryption sets both key_file and key_env",
                Some("keep the one the key is kept in"),
            ));
            return None;
        }
        (Some(var), None) => KekSource::Env(var.clone()),
        (None, Some(file)) => KekSource::File(resolve(base, Some(file), "")),
        (None, None) => KekSource::File(data_dir.join(keys::KEY_FILE)),
    };
    let settings = EncryptionSettings {
        key,
        previous_key_files: raw.previous_key_files.iter().map(|f| resolve(base, Some(f), "")).collect(),
    };
    // A key file still missing is generated at the first start; the earlier keys must exist.
    let checked = if settings.key_file_missing() {
        settings.previous_key_files.iter().try_for_each(|f| keys::read_key_file(f).map(drop))
    } else {
        settings.load(false).map(drop)
    };
    if let Err(e) = checked {
        problems.push(problem(
            path,
            format!("store.encryption: {e}"),
            Some("give a file of 64 hexadecimal digits, readable by the gateway only (`openssl rand -hex 32`)"),
        ));
    }
    Some(settings)
}

/// The audit keys trusted besides the gateway's own, from `audit.trusted_keys`.
fn trusted_keys(files: &Sources, path: &Path, key_files: &[PathBuf], problems: &mut Vec<Problem>) -> TrustedKeys {
    let mut keys = TrustedKeys::default();
    for file in key_files {
        let added = match files.read(file) {
            Ok(bytes) => keys.add_lines(&String::from_utf8_lossy(&bytes), &file.display().to_string()),
            Err(source) => Err(KeyError::Io { path: file.display().to_string(), source }),
        };
        if let Err(e) = added {
            problems.push(problem(path, format!("audit.trusted_keys: {e}"), None));
        }
    }
    keys
}
