//! Listeners: accept connections, cap them, terminate TLS, serve HTTP/1.1 and HTTP/2, drain on
//! shutdown.
//!
//! - [`io`]: a connection's stream, and its lingering close.
//! - [`body`]: request and answer bodies, and a request body the handler answered unread.
//! - [`streams`]: a connection's HTTP/2 streams, answered from the connection's own task.
//!
//! The partner and admin listeners share this loop; what differs is the TLS configuration and
//! the handler. The TLS handshake runs in the connection's own task under a timeout, so a slow
//! or hostile client never holds up the accept loop. What the handshake learned (the verified
//! client certificate's identity) is computed once per connection and handed to every request
//! on it.

pub mod body;
pub mod io;
pub mod streams;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinError, JoinHandle};

use crate::auth::ConnectionInfo;
use crate::telemetry::Metrics;
use crate::telemetry::events::TlsHandshakeFailed;
use body::UnreadSlot;
pub use body::{RequestBody, ResponseBody};
use io::{Connection, Stream};
use streams::Streams;

/// Settings of one listener.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    pub name: &'static str,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub handshake_timeout: Duration,
    /// Hyper's own hard cap on the request head; the handler applies the configured limit (and
    /// answers it with a problem document) below this.
    pub max_head_bytes: usize,
}

/// Completes the TLS handshake (when `tls` is set) and reads the client certificate's identity.
async fn establish(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<ServerConfig>>,
    settings: &ListenerSettings,
    metrics: &Metrics,
) -> Option<(Stream, ConnectionInfo, Protocol)> {
    let Some(config) = tls else {
        // Nothing is read before the protocol is detected, so a connection that sends nothing
        // would wait forever: it gets the header timeout to send its first byte.
        let mut first = [0u8; 1];
        match tokio::time::timeout(settings.header_timeout, stream.peek(&mut first)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
        return Some((
            Stream::Plain(stream),
            ConnectionInfo { peer, tls: false, client_certificate: None },
            Protocol::Detect,
        ));
    };
    let accepted =
        tokio::time::timeout(settings.handshake_timeout, tokio_rustls::TlsAcceptor::from(config).accept(stream)).await;
    let stream = match accepted {
        Ok(Ok(s)) => s,
        Ok(Err(error)) => {
            TlsHandshakeFailed { listener: settings.name, reason: crate::tls::failure_reason(&error), peer }
                .emit(metrics);
            return None;
        }
        Err(_) => {
            TlsHandshakeFailed { listener: settings.name, reason: crate::telemetry::HandshakeFailure::Timeout, peer }
                .emit(metrics);
            return None;
        }
    };
    let client_certificate =
        stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(crate::tls::identity);
    // ALPN decided the protocol: HTTP/1.1 is served without a detection read, so its header
    // timeout also covers a client that completes the handshake and then sends nothing.
    let protocol = if stream.get_ref().1.alpn_protocol() == Some(b"h2") { Protocol::Http2 } else { Protocol::Http1 };
    Some((Stream::Tls(Box::new(stream)), ConnectionInfo { peer, tls: true, client_certificate }, protocol))
}

/// How a connection's HTTP version is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Plaintext: read the first bytes to tell HTTP/2's preface from HTTP/1.1.
    Detect,
    Http1,
    Http2,
}

/// Serves `listener` with `handler` until `shutdown` turns true, then lets open connections
/// finish their requests (up to ten seconds) before returning. `tls` gives the TLS
/// configuration in force for each new connection (`None`: plaintext).
pub async fn serve<T, H, F>(
    listener: TcpListener,
    settings: ListenerSettings,
    mut shutdown: watch::Receiver<bool>,
    metrics: Metrics,
    tls: T,
    handler: H,
) where
    T: Fn() -> Option<Arc<ServerConfig>> + Send + Sync + 'static,
    H: Fn(Request<RequestBody>, Arc<ConnectionInfo>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    // Caps open connections; a connection waits in the kernel backlog while the cap is reached.
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    let settings = Arc::new(settings);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // Out of file descriptors and similar: back off briefly instead of spinning.
                    tracing::warn!(message = "Accept failed.", listener = settings.name, %error);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let (handler, settings, metrics) = (handler.clone(), settings.clone(), metrics.clone());
        let tls_config = tls();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let Some((stream, info, protocol)) = establish(stream, peer, tls_config, &settings, &metrics).await else {
                drop(permit);
                return;
            };
            let info = Arc::new(info);
            let linger = Arc::new(AtomicBool::new(false));
            let io = Connection::new(stream, linger.clone());
            let service = service_fn(move |req: Request<Incoming>| {
                let (handler, info, linger) = (handler.clone(), info.clone(), linger.clone());
                Handling(tokio::spawn(serve_request(req, info, linger, handler)))
            });
            let streams = Streams::default();
            let builder = builder(&settings, protocol, streams.clone());
            let connection = builder.serve_connection(TokioIo::new(io), service);
            let _ = streams::serve(watcher.watch(connection), streams).await;
            drop(permit);
        });
    }
    drop(listener);
    // Open connections finish the requests they are serving, then close.
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}

/// Hyper's settings for one connection, whose HTTP/2 streams go to `streams`.
fn builder(settings: &ListenerSettings, protocol: Protocol, streams: Streams) -> auto::Builder<Streams> {
    let mut builder = auto::Builder::new(streams);
    builder
        .http1()
        .timer(TokioTimer::new())
        // Also closes a keep-alive connection that sends nothing for this long.
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(settings.max_head_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(settings.max_head_bytes as u32)
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    match protocol {
        Protocol::Detect => builder,
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
    }
}

/// A request handled in a task of its own, so that the streams of one HTTP/2 connection are
/// handled in parallel while their answers are written from the connection's task (see
/// [`streams`]). Dropped by hyper (the client reset the stream, or the connection ended), it
/// aborts the task, as dropping the handler's future would.
struct Handling(JoinHandle<Response<ResponseBody>>);

/// The task handling a request ended without an answer (it panicked): hyper resets the stream
/// (HTTP/2) or closes the connection (HTTP/1.1).
#[derive(Debug, thiserror::Error)]
#[error("the request handling ended without an answer")]
struct HandlingFailed(#[source] JoinError);

impl Future for Handling {
    type Output = Result<Response<ResponseBody>, HandlingFailed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().0).poll(cx).map_err(HandlingFailed)
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `handler` on one request, then settles what it left of the request body (see [`body`]).
async fn serve_request<H, F>(
    req: Request<Incoming>,
    info: Arc<ConnectionInfo>,
    linger: Arc<AtomicBool>,
    handler: H,
) -> Response<ResponseBody>
where
    H: Fn(Request<RequestBody>, Arc<ConnectionInfo>) -> F,
    F: Future<Output = Response<Full<Bytes>>>,
{
    let version = req.version();
    let expects_continue =
        req.headers().get(http::header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    // Only a body that does not end with the head can be left unread.
    let unread = (!hyper::body::Body::is_end_stream(req.body())).then(UnreadSlot::default);
    let req = req.map(|body| RequestBody::new(body, unread.clone()));
    let response = handler(req, info).await;
    body::settle(response, unread.as_ref(), version, expects_continue, &linger).await
}
