//! Listeners: accept connections, cap them, serve HTTP/1.1 and HTTP/2, drain on shutdown.
//!
//! The partner and admin listeners share this loop; what differs is the handler. Transport
//! security (TLS, client certificates) plugs in at the accept step, before HTTP.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// Largest request head (request line and headers) accepted; larger gets 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Settings of one listener.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    pub name: &'static str,
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// Serves `listener` with `handler` until `shutdown` turns true, then lets open connections
/// finish their requests (up to `drain`) before returning.
pub async fn serve<H, F>(
    listener: TcpListener,
    settings: ListenerSettings,
    mut shutdown: watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    // Caps open connections; a connection waits in the kernel backlog while the cap is reached.
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES.max(8192));
    builder.http2().timer(TokioTimer::new()).max_header_list_size(MAX_HEADER_BYTES as u32);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (stream, _peer) = tokio::select! {
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
        let handler = handler.clone();
        let service = service_fn(move |req| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler(req).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    // Open connections finish the requests they are serving, then close.
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}
