//! Log setup: JSON lines when standard error is not a terminal (production, containers), human
//! lines in a terminal, colours only there. `RUST_LOG` overrides the configured level. When spans
//! are exported ([`super::otlp`]), their layer sits beside the log lines' own.
//!
//! # Off the request path
//!
//! A task that logs formats its line and hands it to a queue; one writer thread takes every line
//! waiting, writes them to standard error in as few `write` calls as its buffer allows, and flushes
//! when the queue is empty. So a request never waits on a pipe or a slow terminal, and a burst of
//! requests costs one system call per buffer of lines, not one per line. After a large batch the
//! thread pauses a millisecond before taking the next, so under load it wakes about a thousand
//! times a second rather than once every few lines; a lone line still leaves at once.
//!
//! **Invariants.** No line is dropped: the queue holds at most [`LINES_IN_FLIGHT`] lines, and a
//! task that finds it full waits for room (a bound on memory, and back-pressure when standard error
//! cannot keep up, never silent loss). The lines of one task keep their order. [`Logging`] must
//! live until the process ends: dropping it writes what is queued. A `kill -9` loses the lines
//! still queued, at most a millisecond's worth, as it always lost what the kernel had not yet taken.

use std::io::{BufWriter, IsTerminal, Write};
use std::time::Duration;

use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::json_lines::JsonLines;
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

/// Most log lines waiting for the writer thread. At a few hundred bytes a line, that is a few
/// megabytes at most; a logging task that finds the queue full waits for room.
pub const LINES_IN_FLIGHT: usize = 16_384;

/// The writer thread's buffer: lines waiting together leave in one `write` of up to this size.
const WRITE_BUFFER: usize = 64 * 1024;

/// Logging as installed: the writer thread's handle and, if spans are exported, their pipeline.
/// Keep it until the process ends; dropping it writes the lines still queued.
pub struct Logging {
    /// The pipeline exporting spans, to shut down last, while the runtime still runs.
    pub exporting: Option<Exporting>,
    _writer: WorkerGuard,
}

/// A batch of at least this many bytes means lines are arriving fast: the writer thread then
/// waits [`BUSY_PAUSE`] before it takes the next batch.
const BUSY_BATCH: usize = 4 * 1024;

/// The writer thread's pause after a large batch. Lines arriving meanwhile wait in the queue
/// (at 20,000 lines a second, 20 of its [`LINES_IN_FLIGHT`]) and leave together, so under load
/// the thread wakes at most about a thousand times a second instead of once every few lines,
/// and the tasks that log rarely have to wake it.
const BUSY_PAUSE: Duration = Duration::from_millis(1);

/// A writer that queues each line for a thread writing them to `out`, batched (see the module
/// documentation), and the guard that writes what is queued when dropped.
pub fn line_writer<W: Write + Send + 'static>(out: W) -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LINES_IN_FLIGHT)
        .thread_name("passerelle-log")
        .finish(Batches { out: BufWriter::with_capacity(WRITE_BUFFER, out), written: 0 })
}

/// The writer thread's output: tracing-appender writes every line waiting, then flushes once the
/// queue is empty; after a large batch, the flush pauses (see [`BUSY_BATCH`]).
struct Batches<W: Write> {
    out: BufWriter<W>,
    /// Bytes written since the last flush: the size of the batch.
    written: usize,
}

impl<W: Write> Write for Batches<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.written += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        if let Some(pause) = self.pause() {
            std::thread::sleep(pause);
        }
        Ok(())
    }
}

impl<W: Write> Batches<W> {
    /// How long to wait after the batch just written, which this ends.
    fn pause(&mut self) -> Option<Duration> {
        (std::mem::take(&mut self.written) >= BUSY_BATCH).then_some(BUSY_PAUSE)
    }
}

/// Installs the global subscriber, exporting spans to `otlp` (with the runtime that sends them)
/// if given. Calling it twice keeps the first subscriber.
pub fn init(
    format: LogFormat,
    level: &str,
    otlp: Option<(&OtlpSettings, tokio::runtime::Handle)>,
) -> Result<Logging, OtlpError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let terminal = std::io::stderr().is_terminal();
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal,
    };
    let (writer, guard) = line_writer(std::io::stderr());
    // Colours only for a person at a terminal: a file or a pipe gets plain text.
    let lines = if json {
        tracing_subscriber::fmt::layer().event_format(JsonLines).with_writer(writer).with_ansi(false).boxed()
    } else {
        tracing_subscriber::fmt::layer().with_target(false).with_writer(writer).with_ansi(terminal).boxed()
    };
    let (spans, exporting) = match otlp {
        Some((settings, runtime)) => {
            let (layer, exporting) = otlp::layer(settings, runtime)?;
            (Some(layer), Some(exporting))
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry().with(lines.with_filter(filter)).with(spans).try_init();
    Ok(Logging { exporting, _writer: guard })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A sink that keeps what is written, and how many `write` calls it took.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut inner = self.0.lock().unwrap();
            inner.0.extend_from_slice(buf);
            inner.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_writer_pauses_after_a_large_batch_only() {
        let mut out = Batches { out: BufWriter::new(Sink::default()), written: 0 };
        out.write_all(&[b'x'; 300]).unwrap();
        assert_eq!(out.pause(), None, "a few lines leave without a pause");
        out.write_all(&[b'x'; BUSY_BATCH]).unwrap();
        assert_eq!(out.pause(), Some(BUSY_PAUSE), "a large batch is followed by a pause");
        assert_eq!(out.pause(), None, "each batch counts from its own start");
    }

    #[test]
    fn a_burst_larger_than_the_queue_loses_no_line_keeps_each_tasks_order_and_is_written_in_batches() {
        const TASKS: usize = 4;
        const LINES: usize = LINES_IN_FLIGHT; // 4 × the queue, from four threads at once.
        let sink = Sink::default();
        let (writer, guard) = line_writer(sink.clone());
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().event_format(JsonLines).with_writer(writer).with_ansi(false));
        let dispatch = tracing::Dispatch::new(subscriber);
        std::thread::scope(|scope| {
            for task in 0..TASKS {
                let dispatch = dispatch.clone();
                scope.spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        for n in 0..LINES {
                            tracing::info!(message = "Request served.", task, n);
                        }
                    })
                });
            }
        });
        drop(guard);

        let (bytes, writes) = std::mem::take(&mut *sink.0.lock().unwrap());
        let mut next = [0u64; TASKS];
        let mut lines = 0;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let line: serde_json::Value = serde_json::from_slice(line).unwrap();
            let task = line["task"].as_u64().unwrap() as usize;
            assert_eq!(line["n"].as_u64(), Some(next[task]), "task {task}'s lines in order");
            next[task] += 1;
            lines += 1;
        }
        assert_eq!(lines, TASKS * LINES, "no line dropped");
        // Seen: 250 to 760 writes for 65,536 lines on two loaded cores.
        assert!(writes * 8 < lines, "{writes} writes for {lines} lines: batched");
    }
}
