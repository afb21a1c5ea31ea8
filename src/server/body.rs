//! A request's body as handlers read it, an answer's body, and what becomes of a request body
//! that the handler answered without reading to its end.
//!
//! Many refusals come before the body is read: no credentials, over the rate limit, no
//! agreement, a declared length over the limit. The answer must still reach a client that is
//! busy sending its body, whatever its protocol:
//!
//! - **HTTP/2.** RFC 9113 §8.1 lets a server answer before the request is complete, then end
//!   the request stream with `RST_STREAM(NO_ERROR)`. The h2 library sends `NO_ERROR` only if the
//!   answer is complete when the request body is dropped, and `CANCEL` otherwise, which clients
//!   such as curl report as a framing error and lose the answer with. So the unread body is kept
//!   inside the answer's body ([`ResponseBody`]) until the answer's last frame is queued. Then
//!   the rest is read and discarded in the background, within the same bounds as a lingering
//!   close ([`super::io`]): curl up to at least 8.x reports even a `NO_ERROR` reset as a
//!   framing error while it is still uploading, so the stream ends normally when the client
//!   finishes its body, and with `RST_STREAM(NO_ERROR)` only past the bounds. Other streams of
//!   the connection are not held up meanwhile. A client may also end its body early when it
//!   reads an error status (curl 7.88 sends `END_STREAM` short of its declared length): h2
//!   resets such a malformed request with `PROTOCOL_ERROR`, which is harmless once the answer
//!   has left whole, and [`super::streams`] makes an answer's head and body leave together.
//! - **HTTP/1.1.** The rest of the body is read and discarded when it is small
//!   ([`DRAIN_BYTES`] within [`DRAIN_TIME`]), and the connection stays open for the next
//!   request. A larger or slower rest is not read: the answer says `Connection: close`, and the
//!   connection ends with a lingering close ([`super::io`]) so the client, which may be writing
//!   its whole body before it reads, gets its answer instead of a reset. A request sent with
//!   `Expect: 100-continue` whose body has not started is never solicited: it is answered and
//!   closed.
//!
//! The worst case a client can cause: on HTTP/2, one background discard per stream it leaves
//! unread, at most 256 streams a connection (`max_concurrent_streams`), each ending after 16 MiB
//! or 10 s; on HTTP/1.1, one lingering close a connection, holding its slot for at most 10 s
//! (2 s without a byte). Connections are capped by `listen.max_connections` either way.
//!
//! **Invariant:** a connection the gateway means to close says so on its last answer
//! (`Connection: close` on HTTP/1.1; hyper sends `GOAWAY` on HTTP/2).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, Version, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::io::{LINGER_BYTES, LINGER_IDLE, LINGER_TIME};

/// Most bytes of an unread HTTP/1.1 body read and discarded to keep the connection open.
pub const DRAIN_BYTES: u64 = 64 * 1024;
/// Longest the gateway waits for the rest of an unread HTTP/1.1 body to keep the connection.
pub const DRAIN_TIME: Duration = Duration::from_millis(500);

/// A request body the handler did not read to its end, handed back when the handler drops it.
struct Unread {
    body: Incoming,
    /// The handler read part of it (so the client was told to send it, `100 Continue` included).
    started: bool,
}

/// Where a dropped, unfinished [`RequestBody`] leaves its rest for the connection to deal with.
#[derive(Clone, Default)]
pub struct UnreadSlot(Arc<Mutex<Option<Unread>>>);

impl UnreadSlot {
    fn take(&self) -> Option<Unread> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// A request's body as handlers see it: hyper's body, plus what to do with its rest if the
/// handler drops it unfinished.
pub struct RequestBody {
    inner: Option<Incoming>,
    started: bool,
    finished: bool,
    /// Where an unfinished rest goes; `None` for a body that ends with its head (most `GET`s),
    /// which cannot be left unread.
    unread: Option<UnreadSlot>,
}

impl RequestBody {
    pub fn new(inner: Incoming, unread: Option<UnreadSlot>) -> Self {
        RequestBody { inner: Some(inner), started: false, finished: false, unread }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        this.started = true;
        let polled = Pin::new(inner).poll_frame(cx);
        // After an error there is nothing left to read either.
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.finished = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && !self.finished
            && !inner.is_end_stream()
            && let Some(unread) = &self.unread
            && let Ok(mut slot) = unread.0.lock()
        {
            *slot = Some(Unread { body: inner, started: self.started });
        }
    }
}

/// An answer's body; on HTTP/2 it also holds the request body left unread until the answer has
/// been sent whole (see the module documentation).
pub struct ResponseBody {
    inner: Full<Bytes>,
    unread_request: Option<Incoming>,
}

impl ResponseBody {
    pub fn new(inner: Full<Bytes>) -> Self {
        ResponseBody { inner, unread_request: None }
    }
}

impl Drop for ResponseBody {
    /// Hyper drops an answer's body after queueing its last frame: the unread request body is
    /// then discarded in the background, bounded, and dropped (a `NO_ERROR` reset if unfinished).
    fn drop(&mut self) {
        if let Some(body) = self.unread_request.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(discard(body, LINGER));
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How much of an unread body the gateway will read to throw it away, and for how long.
struct DiscardBounds {
    bytes: u64,
    total: Duration,
    /// The longest wait for the next frame.
    idle: Duration,
}

/// HTTP/1.1: a small rest that is already arriving, read to keep the connection.
const DRAIN: DiscardBounds = DiscardBounds { bytes: DRAIN_BYTES, total: DRAIN_TIME, idle: DRAIN_TIME };
/// HTTP/2: the rest of a stream after its answer, as much as a lingering close reads.
const LINGER: DiscardBounds = DiscardBounds { bytes: LINGER_BYTES as u64, total: LINGER_TIME, idle: LINGER_IDLE };

/// Reads and throws away `body` within `bounds`; whether it ended within them.
async fn discard(mut body: Incoming, bounds: DiscardBounds) -> bool {
    if body.size_hint().lower() > bounds.bytes {
        return false;
    }
    let deadline = tokio::time::Instant::now() + bounds.total;
    let mut read = 0u64;
    loop {
        let next = (tokio::time::Instant::now() + bounds.idle).min(deadline);
        match tokio::time::timeout_at(next, body.frame()).await {
            Ok(None) => return true,
            Ok(Some(Ok(frame))) => {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
                if read > bounds.bytes {
                    return false;
                }
            }
            Ok(Some(Err(_))) | Err(_) => return false,
        }
    }
}

/// Turns a handler's answer into what the connection sends, dealing with the request body the
/// handler left unread (see the module documentation). `linger` is the connection's flag for a
/// lingering close.
pub async fn settle(
    response: Response<Full<Bytes>>,
    unread: Option<&UnreadSlot>,
    version: Version,
    expects_continue: bool,
    linger: &AtomicBool,
) -> Response<ResponseBody> {
    let Some(Unread { body, started }) = unread.and_then(UnreadSlot::take) else {
        return response.map(ResponseBody::new);
    };
    if version == Version::HTTP_2 {
        return response.map(|inner| ResponseBody { inner, unread_request: Some(body) });
    }
    let solicited = started || !expects_continue;
    if solicited && discard(body, DRAIN).await {
        return response.map(ResponseBody::new);
    }
    let mut response = response.map(ResponseBody::new);
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    linger.store(true, Ordering::Release);
    response
}
