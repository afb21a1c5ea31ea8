//! What every request on either listener shares: the configuration in force, the store, the
//! metrics, the delivery workers, what the audit trail needs of a request, the rate limits and
//! the console; and the reload that swaps the configuration.
//!
//! The gateway assembles it ([`crate::gateway`]); the handlers of [`super`] use it.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::audit::notary::Notary;
use crate::audit::rejections::RejectionTally;
use crate::audit::subject::SubjectKey;
use crate::audit::{AuditEvent, DigestKey};
use crate::config::Config;
use crate::delivery::Dispatcher;
use crate::rate_limit::RateLimiter;
use crate::store::Store;
use crate::telemetry::events::ConfigReloaded;
use crate::telemetry::{Metrics, ReloadOutcome};

/// What a request needs of the audit trail beside the store.
pub struct Trail {
    /// The deployment's key for body digests.
    pub digest_key: DigestKey,
    /// The deployment's key for subject digests, which the access record is looked up by.
    pub subject_key: SubjectKey,
    /// Signs receipts (and checkpoints, from [`crate::upkeep`]).
    pub notary: Arc<Notary>,
    /// Rejections waiting to be audited in aggregate.
    pub rejections: Arc<RejectionTally>,
}

/// The state of a running gateway, as its handlers see it.
pub struct State {
    /// The configuration in force; each request loads it once and keeps that snapshot.
    config: ArcSwap<Config>,
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    /// The delivery workers, restarted from the new configuration by a reload; through them,
    /// each recipient's wake-up, breaker and client.
    pub dispatcher: Dispatcher,
    pub trail: Trail,
    /// Per-partner token buckets.
    pub rate_limiter: RateLimiter,
    /// Signed-in console sessions and the sampled counters the console shows.
    pub console: super::console::Console,
    /// OpenID sign-ins under way and the issuer's cached discovery; kept across reloads, so a
    /// sign-in started before one finishes after it.
    pub sign_ins: crate::oidc::SignIns,
    /// Held for the whole of a reload.
    reloading: tokio::sync::Mutex<()>,
}

/// Why a new configuration was not put in force (the old one stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new configuration has {} problem(s); the old one stays in force", .0.len())]
    Invalid(Vec<crate::problem::Problem>),
    #[error("the reload could not be audited: {0}")]
    Audit(#[from] crate::store::StoreError),
}

impl State {
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        metrics: Metrics,
        dispatcher: Dispatcher,
        trail: Trail,
        console: super::console::Console,
    ) -> Self {
        State {
            config: ArcSwap::from_pointee(config),
            store,
            metrics,
            dispatcher,
            trail,
            rate_limiter: RateLimiter::default(),
            console,
            sign_ins: Default::default(),
            reloading: Default::default(),
        }
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }
}

impl State {
    /// Loads the configuration file again and, if it passes every check, swaps it in: requests
    /// in flight finish under the snapshot they started with, new requests and new connections
    /// (TLS certificates and CRLs) take the new one. A configuration that fails is refused and
    /// counted, and the old one stays. Each reload is audited with the new configuration's hash
    /// and `actor`, who asked for it (`operator:<name>`, or `signal:SIGHUP`).
    pub async fn reload(&self, actor: &str) -> Result<String, ReloadError> {
        // One reload at a time (SIGHUP and the admin call may race): the configuration in force,
        // the delivery workers and the audit trail then change in the same order.
        let _one_at_a_time = self.reloading.lock().await;
        let source = self.config.load().source.clone();
        let loaded = tokio::task::spawn_blocking(move || crate::config::load(&source)).await;
        let config = match loaded {
            Ok(Ok(config)) => config,
            Ok(Err(e)) => {
                ConfigReloaded { outcome: ReloadOutcome::Refused, fingerprint: None, problems: &e.problems }
                    .emit(&self.metrics);
                return Err(ReloadError::Invalid(e.problems));
            }
            Err(_) => {
                ConfigReloaded { outcome: ReloadOutcome::Refused, fingerprint: None, problems: &[] }
                    .emit(&self.metrics);
                return Err(ReloadError::Invalid(Vec::new()));
            }
        };
        let fingerprint = config.fingerprint.clone();
        let mut event = AuditEvent::new(crate::clock::now_ms(), crate::audit::kind::CONFIG_LOADED, actor, "reloaded");
        event.reason = Some(format!("sha256:{fingerprint}"));
        self.store.append_audit(vec![event]).await?;
        let config = Arc::new(config);
        self.config.store(config.clone());
        self.dispatcher.apply(&config.delivery_plan());
        ConfigReloaded { outcome: ReloadOutcome::Applied, fingerprint: Some(&fingerprint), problems: &[] }
            .emit(&self.metrics);
        Ok(fingerprint)
    }
}
