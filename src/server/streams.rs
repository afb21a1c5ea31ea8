//! The HTTP/2 streams of a connection, answered from the connection's own task, so that an
//! answer's head and body leave together.
//!
//! Hyper answers each HTTP/2 stream in a future that it hands to an executor. When the answer is
//! ready, that future queues the answer's head (`HEADERS`), then its body (`DATA`), and the
//! connection's future writes what is queued. With each stream future a task of its own (hyper's
//! usual executor), the connection can run on another worker between the two and write the head
//! alone, all the more on a loaded machine, where a worker can lose its core in between. A client
//! that reacts to the head before the body arrives can then lose the answer: curl (7.88 at least)
//! stops sending its body when it reads an error status, and ends it at once with an empty
//! `DATA` frame carrying `END_STREAM`, short of its declared `content-length`. The h2 library
//! must treat such a request as malformed (RFC 9113 §8.1.1): it resets the stream with
//! `PROTOCOL_ERROR`, which drops the answer's body still queued, and curl reports `HTTP/2 stream
//! 1 was not closed cleanly: PROTOCOL_ERROR` instead of the answer.
//!
//! So a connection's stream futures run inside the connection's task: [`Streams`] is the
//! executor hyper hands them to, and [`serve`] polls them together with the connection. A stream
//! queues its answer's head and body in one poll, and the connection writes nothing in between.
//! (The body is queued at once when the client's flow-control window has room for it, which it
//! has unless the client stopped reading: an early refusal is a problem document of a few
//! hundred bytes.)
//! Only the writing of answers runs there: each request is handled in a task of its own
//! ([`super::serve`]), so the streams of one connection are still handled in parallel.
//!
//! **Invariant:** a connection's task holds at most `max_concurrent_streams` (256) stream futures
//! (h2 refuses streams beyond), and drops those left when the connection ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

/// A future with which hyper answers one HTTP/2 stream.
type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where hyper hands the futures that answer a connection's HTTP/2 streams (its executor), for
/// [`serve`] to run in the connection's task.
#[derive(Clone, Default)]
pub struct Streams {
    /// Handed over and not yet polled. Hyper hands a stream over while [`serve`] polls the
    /// connection, so this holds the streams a single read of the connection opened.
    handed: Arc<Mutex<Vec<StreamFuture>>>,
}

impl Streams {
    fn take(&self) -> Vec<StreamFuture> {
        std::mem::take(&mut *self.handed.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl<F> hyper::rt::Executor<F> for Streams
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        self.handed.lock().unwrap_or_else(PoisonError::into_inner).push(Box::pin(stream));
    }
}

/// Runs `connection` and the stream futures it hands to `streams`, in the caller's task, until
/// the connection ends.
pub async fn serve<C: Future>(connection: C, streams: Streams) -> C::Output {
    let mut connection = std::pin::pin!(connection);
    let mut running = FuturesUnordered::new();
    std::future::poll_fn(move |cx| {
        loop {
            // The streams first, so that the connection's poll just after writes what they queued.
            while let Poll::Ready(Some(())) = running.poll_next_unpin(cx) {}
            let polled = connection.as_mut().poll(cx);
            let handed = streams.take();
            // Streams still running when the connection has ended can no longer answer.
            if polled.is_ready() || handed.is_empty() {
                return polled;
            }
            running.extend(handed);
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A stream handed over while the connection is polled runs before `serve` returns to the
    /// runtime, and the connection is polled again after it (to write what it queued).
    #[tokio::test]
    async fn a_stream_handed_over_runs_in_the_connection_task_before_the_connection_polls_again() {
        let streams = Streams::default();
        let answered = Arc::new(AtomicUsize::new(0));
        let mut polls = 0;
        let (handing, counting) = (streams.clone(), answered.clone());
        let connection = std::future::poll_fn(move |_| {
            polls += 1;
            match polls {
                1 => {
                    let counting = counting.clone();
                    handing.execute(async move {
                        counting.fetch_add(1, Ordering::SeqCst);
                    });
                    Poll::Pending
                }
                // Polled again in the same turn, once the stream ran.
                _ => Poll::Ready(counting.load(Ordering::SeqCst)),
            }
        });
        assert_eq!(serve(connection, streams).await, 1);
        assert_eq!(answered.load(Ordering::SeqCst), 1);
    }

    /// Streams still running when the connection ends are dropped with it.
    #[tokio::test]
    async fn streams_left_when_the_connection_ends_are_dropped() {
        let streams = Streams::default();
        let held = Arc::new(());
        let (handing, holding) = (streams.clone(), held.clone());
        let mut polls = 0;
        let connection = std::future::poll_fn(move |_| {
            polls += 1;
            if polls == 1 {
                let holding = holding.clone();
                handing.execute(async move {
                    let _holding = holding;
                    std::future::pending::<()>().await;
                });
                return Poll::Pending;
            }
            Poll::Ready(())
        });
        serve(connection, streams).await;
        assert_eq!(Arc::strong_count(&held), 1, "the pending stream was dropped");
    }
}
