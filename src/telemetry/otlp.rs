//! Spans exported over OTLP/HTTP (protobuf), when `[telemetry] otlp_endpoint` is set.
//!
//! The hops of [`super::trace`] become OpenTelemetry spans through `tracing-opentelemetry`: the
//! intake of a record or a request (server), its commit (internal), each delivery attempt and
//! each call to a responder (client), all in the trace the caller's `traceparent` names. The
//! SDK's batch processor collects finished spans on its own thread in a bounded queue (2,048
//! spans; when it is full, spans are dropped, never a request delayed) and posts them to
//! `{otlp_endpoint}/v1/traces` with a client that runs on the gateway's runtime (hyper, rustls
//! with ring, like every other connection of the gateway). Without an endpoint nothing of this
//! runs: hops get random span ids and no span is made.
//!
//! **Invariant:** a span carries its name, kind and ids, never a record's value; the log lines
//! emitted inside a span are not copied into it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// An OTLP/HTTP collector.
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    /// The full URL spans are posted to (`{otlp_endpoint}/v1/traces`).
    pub traces_url: String,
    /// TLS to the collector (its CA), for an `https` URL.
    pub tls: Arc<rustls::ClientConfig>,
    pub service_name: String,
}

/// Set once the exporting layer is installed: hops then make spans.
static EXPORTING: OnceLock<()> = OnceLock::new();

/// Longest an export may take before it is given up (the batch is then dropped).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of a collector's answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why span export could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("the OTLP exporter cannot be built")]
pub struct OtlpError(#[source] opentelemetry_otlp::ExporterBuildError);

/// The exporting pipeline; [`Exporting::shutdown`] sends what is still queued.
pub struct Exporting {
    provider: SdkTracerProvider,
}

impl Exporting {
    /// Exports the spans still queued, then stops. Blocks: call it off the runtime's workers
    /// (`spawn_blocking`), which the export itself needs.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(message = "Exporting the last spans failed.", %error);
        }
    }
}

/// The layer that turns hops into exported spans, and the pipeline behind it. `runtime` runs
/// the exports' HTTP requests.
pub fn layer<S>(
    settings: &OtlpSettings,
    runtime: tokio::runtime::Handle,
) -> Result<(impl tracing_subscriber::Layer<S>, Exporting), OtlpError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OnRuntime::new(settings, runtime))
        .with_endpoint(settings.traces_url.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(OtlpError)?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(settings.service_name.clone()).build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    let tracer = provider.tracer("passerelle");
    let _ = EXPORTING.set(());
    // Only the hop spans of `telemetry::trace`, not every log event: a span holds ids, not lines.
    let hops = tracing_subscriber::filter::Targets::new().with_target(HOP_TARGET, tracing::Level::INFO);
    let layer = tracing_subscriber::Layer::with_filter(
        tracing_opentelemetry::layer().with_tracer(tracer).with_tracked_inactivity(false),
        hops,
    );
    Ok((layer, Exporting { provider }))
}

/// The target of the hop spans (see [`start_span`]).
const HOP_TARGET: &str = "passerelle::telemetry::otlp";

/// The ids of a span: an exported one, or the remote parent it continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// `trace-flags`; bit 0 is "sampled".
    pub flags: u8,
}

/// The span of a hop (`kind` is `server`, `client` or `internal`) and its ids, when spans are
/// exported; `None` otherwise. A `parent` is the remote span it continues, with its
/// `tracestate`.
pub fn start_span(
    name: &'static str,
    kind: &'static str,
    parent: Option<(SpanIds, Option<&str>)>,
) -> Option<(tracing::Span, SpanIds)> {
    EXPORTING.get()?;
    let span = tracing::info_span!(target: HOP_TARGET, "hop", otel.name = name, otel.kind = kind);
    if let Some((parent, state)) = parent {
        let state = state.and_then(|s| s.parse::<TraceState>().ok()).unwrap_or_default();
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id),
            SpanId::from_bytes(parent.span_id),
            TraceFlags::new(parent.flags),
            true,
            state,
        );
        // The layer is installed (checked above), so the parent is taken.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let context = span.context();
    let own = context.span().span_context().clone();
    if !own.is_valid() {
        // Filtered out (a log level that excludes it): the hop still needs ids.
        return None;
    }
    let ids = SpanIds {
        trace_id: own.trace_id().to_bytes(),
        span_id: own.span_id().to_bytes(),
        flags: own.trace_flags().to_u8(),
    };
    Some((span, ids))
}

/// The collector's HTTP client, running its requests on the gateway's runtime: the SDK exports
/// from a thread of its own, outside any runtime.
#[derive(Debug, Clone)]
struct OnRuntime {
    runtime: tokio::runtime::Handle,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl OnRuntime {
    fn new(settings: &OtlpSettings, runtime: tokio::runtime::Handle) -> Self {
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_connect_timeout(Some(EXPORT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*settings.tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        OnRuntime { runtime, client: Client::builder(TokioExecutor::new()).build(connector) }
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let exchange = async move {
            let response = client.request(request.map(Full::new)).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES).collect().await?.to_bytes();
            Ok::<_, opentelemetry_http::HttpError>(http::Response::from_parts(parts, body))
        };
        let exchange = async move {
            tokio::time::timeout(EXPORT_TIMEOUT, exchange).await.unwrap_or_else(|_| Err("the export timed out".into()))
        };
        self.runtime.spawn(exchange).await?
    }
}
