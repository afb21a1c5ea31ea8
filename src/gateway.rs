//! Assembles a running gateway from a configuration: store, delivery workers, listeners.
//!
//! [`Gateway::start`] is what `serve` and `demo` run, and what the integration tests start on
//! port 0. The parts are started in dependency order: the store first (nothing is accepted
//! without it), then the delivery workers (they read the store), then the listeners.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::audit::DigestKey;
use crate::config::Config;
use crate::delivery::{Dispatcher, Wakers};
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
    #[error("cannot listen on {addr} ({listener}): {source}")]
    Listen { listener: &'static str, addr: SocketAddr, source: std::io::Error },
}

/// What every request handler shares.
pub struct Shared {
    /// The configuration in force; each request loads it once and keeps that snapshot.
    pub config: ArcSwap<Config>,
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    /// Wakes a recipient's delivery worker after a commit.
    pub wakers: Wakers,
    pub digest_key: DigestKey,
}

/// A started gateway.
pub struct Gateway {
    pub partner_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    /// Tells listeners and workers to stop; they drain what they are doing first.
    shutdown: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    dispatcher: Dispatcher,
}

impl Gateway {
    /// Opens the store, starts delivery and binds both listeners.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        let data_dir = config.data_dir.clone();
        crate::secrets::create_private_dir(&data_dir)
            .map_err(|source| StartError::DataDir { path: data_dir.display().to_string(), source })?;
        let digest_key = DigestKey::load_or_create(&data_dir)
            .map_err(|source| StartError::DataDir { path: data_dir.display().to_string(), source })?;
        let metrics = Metrics::new();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(
            SqliteOptions {
                path: config.store.sqlite_path.clone(),
                queue: config.store.commit_queue,
                max_batch: config.store.max_batch,
                commit_timeout: config.store.commit_timeout,
            },
            metrics.clone(),
        )?);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let dispatcher = Dispatcher::start(&config, store.clone(), metrics.clone(), shutdown_rx.clone());

        let bind = |listener: &'static str, addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| StartError::Listen { listener, addr, source })
        };
        let partner = bind("partner", config.listen.partner).await?;
        let admin = bind("admin", config.listen.admin).await?;
        let partner_addr = partner.local_addr().map_err(|source| StartError::Listen {
            listener: "partner",
            addr: config.listen.partner,
            source,
        })?;
        let admin_addr = admin.local_addr().map_err(|source| StartError::Listen {
            listener: "admin",
            addr: config.listen.admin,
            source,
        })?;
        let partner_settings = ListenerSettings {
            name: "partner",
            max_connections: config.listen.max_connections,
            header_timeout: config.limits.header_timeout,
        };
        let admin_settings =
            ListenerSettings { name: "admin", max_connections: 256, header_timeout: config.limits.header_timeout };

        let shared = Arc::new(Shared {
            config: ArcSwap::from_pointee(config),
            store,
            metrics,
            wakers: dispatcher.wakers.clone(),
            digest_key,
        });
        let s = shared.clone();
        let partner_task = tokio::spawn(server::serve(partner, partner_settings, shutdown_rx.clone(), move |req| {
            crate::http::partner::handle(s.clone(), req)
        }));
        let s = shared.clone();
        let admin_task = tokio::spawn(server::serve(admin, admin_settings, shutdown_rx, move |req| {
            crate::http::admin::handle(s.clone(), req)
        }));
        tracing::info!(message = "Listening.", listener = "partner", addr = %partner_addr);
        tracing::info!(message = "Listening.", listener = "admin", addr = %admin_addr);
        Ok(Gateway {
            partner_addr,
            admin_addr,
            shared,
            shutdown,
            listeners: vec![partner_task, admin_task],
            dispatcher,
        })
    }

    /// Stops accepting, lets requests and delivery attempts in flight finish, then returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.listeners {
            let _ = task.await;
        }
        self.dispatcher.join().await;
        tracing::info!(message = "Stopped.");
    }
}
