//! Assembles a running gateway from a configuration: store, delivery workers, listeners.
//!
//! [`Gateway::start`] is what `serve` and `demo` run, and what the integration tests start on
//! port 0. The parts are started in dependency order: the store first (nothing is accepted
//! without it), then the delivery workers (they read the store), then the listeners.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::audit::keys::SigningKey;
use crate::audit::notary::Notary;
use crate::audit::rejections::RejectionTally;
use crate::audit::subject::SubjectKey;
use crate::audit::{AuditEvent, DigestKey};
use crate::config::Config;
use crate::delivery::Dispatcher;
use crate::http::console::Console;
use crate::http::state::{State, Trail};
use crate::server::{self, ListenerSettings};
use crate::store::Store;
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::telemetry::Metrics;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("cannot open the store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("audit keys: {0}")]
    Keys(#[from] crate::audit::keys::KeyError),
    #[error("{0}")]
    StoreKey(#[from] crate::store::keys::KekError),
    #[error("cannot read or create the subject key {path}: {source}")]
    SubjectKey { path: String, source: std::io::Error },
    #[error("cannot listen on {addr} ({listener}): {source}")]
    Listen { listener: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// A started gateway.
pub struct Gateway {
    pub partner_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<State>,
    /// Tells listeners and workers to stop; they drain what they are doing first.
    shutdown: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    /// Rejection tallies and retention: they finish their last round at shutdown.
    background: Vec<JoinHandle<()>>,
    /// The checkpoint signer stops last, so its final checkpoint covers every entry.
    checkpoints: (watch::Sender<bool>, JoinHandle<()>),
}

/// Opens the notary of a configuration: the signing key (created on first start) and the keys it
/// trusts besides its own.
pub fn notary(config: &Config) -> Result<Notary, StartError> {
    let key = SigningKey::load_or_create(&config.settings.audit.signing_key_file)?;
    Ok(Notary::new(key, config.built.trusted_keys.clone()))
}

/// Opens the store a configuration names: PostgreSQL when `store.url` is set, else SQLite; with
/// its bodies sealed under the configured key-encryption key (generated into the data directory
/// at the first start if it is a file that does not exist yet), after checking that key opens
/// every data key the store holds.
pub async fn open_store(config: &Config, metrics: Metrics) -> Result<Arc<dyn Store>, StartError> {
    let settings = &config.settings.store;
    let generated = settings.encryption.as_ref().is_some_and(|e| e.key_file_missing());
    let encryption = match &settings.encryption {
        Some(e) => {
            let keks = e.load(true)?;
            if generated && let crate::store::keys::KekSource::File(path) = &e.key {
                tracing::info!(
                    message = "Generated the store's key-encryption key (owner-only); keep a copy apart from the \
                               database and its backups, which cannot be read without it.",
                    path = %path.display(),
                    key_id = keks.current.id(),
                );
            }
            Some(keks)
        }
        None => None,
    };
    // Each group commit's receipt tree is signed with the notary's key. The gateway creates it
    // before it opens the store; a command run before any key exists commits no record.
    let key_file = &config.settings.audit.signing_key_file;
    let receipts = match key_file.exists() {
        true => Some(Arc::new(SigningKey::load_or_create(key_file)?)),
        false => None,
    };
    let store: Arc<dyn Store> = if let Some(pg) = &settings.postgres {
        let options = crate::store::postgres::PostgresOptions {
            config: pg.config.clone(),
            pool_size: pg.pool_size,
            queue: settings.commit_queue,
            max_batch: settings.max_batch,
            commit_timeout: settings.commit_timeout,
            linger: settings.commit_linger,
            tls: config.built.postgres_tls.clone(),
            encryption,
            receipts,
        };
        Arc::new(crate::store::postgres::PostgresStore::open(options, metrics).await?)
    } else {
        Arc::new(SqliteStore::open(
            SqliteOptions {
                path: settings.sqlite_path.clone(),
                queue: settings.commit_queue,
                max_batch: settings.max_batch,
                commit_timeout: settings.commit_timeout,
                linger: settings.commit_linger,
                encryption,
                receipts,
            },
            metrics,
        )?)
    };
    let census = match store.check_keys().await {
        Ok(census) => census,
        Err(e) => {
            // A key generated just now for a store whose keys another key wraps is only in the
            // way of the right one (a restore that forgot the key file): it is not kept.
            if let Some(e) = &settings.encryption
                && generated
                && let crate::store::keys::KekSource::File(path) = &e.key
            {
                let _ = std::fs::remove_file(path);
            }
            return Err(e.into());
        }
    };
    if settings.encryption.is_none() {
        tracing::warn!(
            message =
                "Encryption at rest is off (store.encryption.enabled = false): new bodies are stored in plaintext.",
            record_bodies = census.plain_records,
            delivery_bodies = census.plain_deliveries,
        );
    } else if census.plain() > 0 {
        tracing::warn!(
            message = "Bodies stored before encryption are still in plaintext: run `passerelle store encrypt`.",
            record_bodies = census.plain_records,
            delivery_bodies = census.plain_deliveries,
        );
    }
    Ok(store)
}

/// The completion notices' task, reading the senders that asked for notices from the
/// configuration in force and waking their delivery through the workers in force.
fn notifier(state: &Arc<State>) -> crate::notices::Notifier {
    let config = state.config();
    let settings = &config.settings;
    let (senders, wake, taker) = (state.clone(), state.clone(), state.clone());
    crate::notices::Notifier {
        store: state.store.clone(),
        notary: state.trail.notary.clone(),
        digest_key: state.trail.digest_key.clone(),
        senders: Box::new(move || {
            senders.config().settings.partners.values().filter(|p| p.notify).map(|p| p.id.to_string()).collect()
        }),
        wake: Box::new(move |recipient| wake.dispatcher.wake(recipient)),
        taker: Box::new(move |recipient, body| taker.dispatcher.taker(recipient, false, body)),
        interval: settings.delivery.poll_interval,
        look_back: settings.retention.dead,
        overlap: settings.delivery.lease + settings.store.commit_timeout,
    }
}

impl Gateway {
    /// Opens the store, starts delivery and binds both listeners.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        let data_dir = config.settings.data_dir.clone();
        crate::secrets::create_private_dir(&data_dir)
            .map_err(|source| StartError::DataDir { path: data_dir.display().to_string(), source })?;
        let digest_key = DigestKey::load_or_create(&data_dir)
            .map_err(|source| StartError::DataDir { path: data_dir.display().to_string(), source })?;
        let subject_path = &config.settings.audit.subject_key_file;
        let subject_key = SubjectKey::load_or_create(subject_path)
            .map_err(|source| StartError::SubjectKey { path: subject_path.display().to_string(), source })?;
        let metrics = Metrics::new();
        let notary = Arc::new(notary(&config)?);
        let store = open_store(&config, metrics.clone()).await?;
        metrics.store_info.with_label_values(&[store.engine()]).set(1);
        // The latency series exists from the start, so dashboards and alerts see 0, not "no data".
        metrics.store_commit_duration.with_label_values(&[store.engine()]);
        if let Some(last) = store.checkpoints().await?.into_iter().max_by_key(|c| (c.seq, c.at)) {
            crate::telemetry::events::CheckpointRecalled { seq: last.seq, at: last.at }.emit(&metrics);
        }
        let mut loaded =
            AuditEvent::new(crate::clock::now_ms(), crate::audit::kind::CONFIG_LOADED, "gateway", "loaded");
        loaded.reason = Some(format!("sha256:{}", config.fingerprint));
        store.append_audit(vec![loaded]).await?;
        if config.built.operators.has_bootstrap() {
            tracing::warn!(
                message = "The shared admin token is in force: whoever holds it acts as the admin `bootstrap-admin`. \
                           Name each operator in the operators file ([admin] operators_file) and remove the token.",
            );
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let dispatcher = Dispatcher::start(
            &config.delivery_plan(),
            store.clone(),
            metrics.clone(),
            notary.clone(),
            shutdown_rx.clone(),
        );

        let bind = |listener: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| StartError::Listen { listener, addr, source })
        };
        let partner = bind("partner", config.settings.listen.partner).await?;
        let admin = bind("admin", config.settings.listen.admin).await?;
        let partner_addr = partner.local_addr().map_err(|source| StartError::Listen {
            listener: "partner",
            addr: config.settings.listen.partner,
            source,
        })?;
        let admin_addr = admin.local_addr().map_err(|source| StartError::Listen {
            listener: "admin",
            addr: config.settings.listen.admin,
            source,
        })?;
        let partner_settings = ListenerSettings {
            name: "partner",
            max_connections: config.settings.listen.max_connections,
            header_timeout: config.settings.limits.header_timeout,
            handshake_timeout: config.settings.tls.handshake_timeout,
            max_head_bytes: config.settings.limits.max_header_bytes * 2,
        };
        let admin_settings = ListenerSettings { name: "admin", max_connections: 256, ..partner_settings.clone() };
        if config.built.partner_tls.is_none() {
            tracing::warn!(
                message = "The partner listener is plaintext (tls.insecure_plaintext = true): only run it behind a TLS-terminating proxy.",
                addr = %partner_addr
            );
        }
        crate::secrets::warn_if_readable_by_others(&config.secret_files());

        let rejections = Arc::new(RejectionTally::default());
        let console_history = Arc::new(crate::http::console::History::default());
        let (stop_checkpoints, checkpoints_rx) = watch::channel(false);
        let checkpoints = (
            stop_checkpoints,
            tokio::spawn(crate::upkeep::run_checkpoints(
                notary.clone(),
                store.clone(),
                metrics.clone(),
                config.settings.audit.checkpoint_every,
                config.settings.audit.checkpoint_interval,
                checkpoints_rx,
            )),
        );
        let mut background = vec![
            tokio::spawn(crate::upkeep::run_flush(
                rejections.clone(),
                store.clone(),
                metrics.clone(),
                shutdown_rx.clone(),
            )),
            tokio::spawn(crate::upkeep::run(config.settings.retention.clone(), store.clone(), shutdown_rx.clone())),
            tokio::spawn(crate::http::console::run_sampler(
                console_history.clone(),
                metrics.clone(),
                shutdown_rx.clone(),
            )),
        ];
        let trail = Trail { digest_key, subject_key, notary, rejections };
        let console = Console { sessions: Default::default(), history: console_history };
        let state = Arc::new(State::new(config, store, metrics, dispatcher, trail, console));
        background.push(tokio::spawn(notifier(&state).run(shutdown_rx.clone())));
        let (s, t) = (state.clone(), state.clone());
        let partner_task = tokio::spawn(server::serve(
            partner,
            partner_settings,
            shutdown_rx.clone(),
            state.metrics.clone(),
            // Each new connection takes the TLS configuration in force (a reload swaps it).
            move || t.config().built.partner_tls.as_ref().map(|s| s.config.clone()),
            move |req, conn| crate::http::partner::handle(s.clone(), req, conn),
        ));
        let s = state.clone();
        let admin_task = tokio::spawn(server::serve(
            admin,
            admin_settings,
            shutdown_rx,
            state.metrics.clone(),
            || None,
            move |req, conn| crate::http::admin::handle(s.clone(), req, conn),
        ));
        tracing::info!(message = "Listening.", listener = "partner", addr = %partner_addr);
        tracing::info!(message = "Listening.", listener = "admin", addr = %admin_addr);
        Ok(Gateway {
            partner_addr,
            admin_addr,
            state,
            shutdown,
            listeners: vec![partner_task, admin_task],
            background,
            checkpoints,
        })
    }

    /// Re-reads the configuration from its file on `SIGHUP`; see [`State::reload`].
    pub async fn reload(&self) -> Result<String, crate::http::state::ReloadError> {
        self.state.reload("signal:SIGHUP").await
    }

    /// Stops accepting, lets requests and delivery attempts in flight finish, then returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.listeners {
            let _ = task.await;
        }
        self.state.dispatcher.join().await;
        // Rejections and the final checkpoint are written after the last delivery result.
        for task in self.background {
            let _ = task.await;
        }
        let (stop, task) = self.checkpoints;
        let _ = stop.send(true);
        let _ = task.await;
        tracing::info!(message = "Stopped.");
    }
}
