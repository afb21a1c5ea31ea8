//! A connection's byte stream (plain TCP or TLS), and how it ends: with a lingering close when
//! the client may still be sending.
//!
//! When the gateway answers a request before reading its body and then closes the connection
//! (HTTP/1.1 with `Connection: close`, see [`super::body`]), closing the socket while the
//! client's bytes are still arriving makes the kernel reset the connection, and the reset can
//! destroy the answer before the client reads it: the client sees a "connection reset" or an
//! unexpected TLS EOF instead of its 413. nginx's `lingering_close` is the model for the cure:
//! shut down our side (TLS `close_notify`, then a TCP FIN), then read and discard what the
//! client still sends, for a bounded amount and a bounded time, and only then close.
//!
//! **Invariant:** a lingering close never reads more than [`LINGER_BYTES`] nor lasts longer
//! than [`LINGER_TIME`] (or [`LINGER_IDLE`] without a byte), so a hostile client holds a
//! connection slot for at most that long.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Most bytes a lingering close reads and discards.
pub const LINGER_BYTES: usize = 16 * 1024 * 1024;
/// Longest a lingering close lasts.
pub const LINGER_TIME: Duration = Duration::from_secs(10);
/// A lingering close ends when the client sends nothing for this long.
pub const LINGER_IDLE: Duration = Duration::from_secs(2);

/// A connection's stream, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Stream {
    /// The TCP socket under the TLS layer, for discarding bytes nobody will decrypt.
    fn tcp(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_mut().0,
        }
    }
}

/// A connection's stream with its way of ending.
pub struct Connection {
    stream: Stream,
    /// Set by the request handling ([`super::body`]) when an answer leaves part of a request
    /// body unread and asks the client to close: the close then lingers.
    linger: Arc<AtomicBool>,
    /// Our side is shut down (TLS `close_notify` and FIN sent).
    shut: bool,
    /// Bytes discarded so far and the deadlines of the lingering close, once it started.
    lingering: Option<Lingering>,
}

struct Lingering {
    discarded: usize,
    deadline: Instant,
    /// The earlier of the overall deadline and the idle deadline; reset by every byte read.
    timer: Pin<Box<Sleep>>,
}

impl Connection {
    pub fn new(stream: Stream, linger: Arc<AtomicBool>) -> Self {
        Connection { stream, linger, shut: false, lingering: None }
    }
}

/// Reads and discards what the client still sends, until it closes, or the bounds are reached.
fn poll_linger(tcp: &mut TcpStream, state: &mut Lingering, cx: &mut Context<'_>) -> Poll<()> {
    let mut buffer = [0u8; 8192];
    loop {
        if state.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        let mut read = ReadBuf::new(&mut buffer);
        match Pin::new(&mut *tcp).poll_read(cx, &mut read) {
            Poll::Pending => return Poll::Pending,
            // The client closed its side (it read our answer), or the connection broke.
            Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(()),
            Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Ready(Ok(())) => {
                state.discarded += read.filled().len();
                if state.discarded >= LINGER_BYTES {
                    return Poll::Ready(());
                }
                let next = (Instant::now() + LINGER_IDLE).min(state.deadline);
                state.timer.as_mut().reset(next);
            }
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The bounds of a lingering close count from its start, shutting our side down included:
        // a client that reads nothing cannot hold the `close_notify` flush open either.
        if this.lingering.is_none() && this.linger.load(Ordering::Acquire) {
            let deadline = Instant::now() + LINGER_TIME;
            this.lingering =
                Some(Lingering { discarded: 0, deadline, timer: Box::pin(tokio::time::sleep_until(deadline)) });
        }
        if !this.shut {
            let shut = match &mut this.stream {
                Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
                Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            };
            match shut {
                Poll::Ready(result) => result?,
                Poll::Pending => {
                    let expired = this.lingering.as_mut().is_some_and(|l| l.timer.as_mut().poll(cx).is_ready());
                    return if expired { Poll::Ready(Ok(())) } else { Poll::Pending };
                }
            }
            this.shut = true;
            if let Some(state) = this.lingering.as_mut() {
                let next = (Instant::now() + LINGER_IDLE).min(state.deadline);
                state.timer.as_mut().reset(next);
            }
        }
        let Some(state) = this.lingering.as_mut() else { return Poll::Ready(Ok(())) };
        ready!(poll_linger(this.stream.tcp(), state, cx));
        Poll::Ready(Ok(()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}
