//! Log setup: JSON lines when standard error is not a terminal (production, containers), human
//! lines in a terminal, colours only there. `RUST_LOG` overrides the configured level. When spans
//! are exported ([`super::otlp`]), their layer sits beside the log lines' own.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::otlp::OtlpSettings;
use super::otlp::{self, Exporting, OtlpError};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON unless standard error is a terminal.
    Auto,
    Json,
    Text,
}

/// Installs the global subscriber, exporting spans to `otlp` (with the runtime that sends them)
/// if given; the exporting pipeline is returned, to be shut down last. Calling it twice keeps the
/// first subscriber.
pub fn init(
    format: LogFormat,
    level: &str,
    otlp: Option<(&OtlpSettings, tokio::runtime::Handle)>,
) -> Result<Option<Exporting>, OtlpError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let terminal = std::io::stderr().is_terminal();
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    // Colours only for a person at a terminal: a file or a pipe gets plain text.
    let lines = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_target(false).with_writer(std::io::stderr).with_ansi(terminal).boxed()
    };
    let (spans, exporting) = match otlp {
        Some((settings, runtime)) => {
            let (layer, exporting) = otlp::layer(settings, runtime)?;
            (Some(layer), Some(exporting))
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry().with(lines.with_filter(filter)).with(spans).try_init();
    Ok(exporting)
}
