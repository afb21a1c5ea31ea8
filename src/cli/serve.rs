//! `passerelle serve`: load the configuration, start the gateway, stop cleanly on a signal.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::config;
use crate::gateway::Gateway;

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = match config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            super::check::print_problems(&e.problems);
            anyhow::bail!("the configuration {} has problems; nothing was started", config_path.display());
        }
    };
    let runtime = super::runtime()?;
    let otlp = config.built.otlp.as_ref().map(|settings| (settings, runtime.handle().clone()));
    let mut logging = crate::telemetry::logging::init(config.settings.log.format, &config.settings.log.level, otlp)?;
    runtime.block_on(async {
        let gateway = Gateway::start(config).await.context("the gateway could not start")?;
        reload_on_sighup(&gateway).await;
        tracing::info!(message = "Shutting down.");
        gateway.shutdown().await;
        if let Some(exporting) = logging.exporting.take() {
            // The last spans are sent while the runtime still runs the export's request.
            let _ = tokio::task::spawn_blocking(move || exporting.shutdown()).await;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Reloads the configuration on each SIGHUP until Ctrl-C or SIGTERM.
async fn reload_on_sighup(gateway: &Gateway) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            let stop = wait_for_signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = hup.recv() => {
                        // A refused reload is logged and counted; the old configuration stays.
                        let _ = gateway.reload().await;
                    }
                }
            }
        }
    }
    wait_for_signal().await;
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
