//! The JSON log line of an event, written straight into bytes.
//!
//! The same line tracing-subscriber's JSON format writes with `flatten_event(true)` and no spans:
//! `timestamp` (its own clock's RFC 3339, to the microsecond), `level`, the event's fields in the
//! order it recorded them (`message` among them), then `target`; an event from the `log` crate
//! under its own target. That format goes through serde's serializer and an `io::Write` adaptor
//! that checks every piece it is handed for UTF-8: at the invalid flood it was 7.8 % of the
//! gateway's samples. This one appends to one buffer per thread, escaping with
//! [`crate::json::write_string`], and hands the line over once. A test compares the two formats'
//! lines byte for byte.

use std::cell::RefCell;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::registry::LookupSpan;

/// The JSON line format (see the module documentation).
pub struct JsonLines;

thread_local! {
    /// The line being written, and a field's `Debug` text before it is escaped.
    static BUFFERS: RefCell<(Vec<u8>, String)> = const { RefCell::new((Vec::new(), String::new())) };
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        // Never borrowed twice: tracing drops an event logged on a thread that is already
        // dispatching one (a field's `Debug` that logs; see the test).
        BUFFERS.with_borrow_mut(|(line, text)| {
            line.clear();
            text.clear();
            SystemTime.format_time(&mut Writer::new(text))?;
            line.extend_from_slice(b"{\"timestamp\":");
            crate::json::write_string(text, line);
            line.extend_from_slice(b",\"level\":\"");
            line.extend_from_slice(meta.level().as_str().as_bytes());
            line.push(b'"');
            event.record(&mut Members { line, text });
            line.extend_from_slice(b",\"target\":");
            crate::json::write_string(meta.target(), line);
            line.extend_from_slice(b"}\n");
            // Only `&str`s and ASCII were appended, so this never fails.
            writer.write_str(std::str::from_utf8(line).map_err(|_| fmt::Error)?)
        })
    }
}

/// Appends each field as a `,"name":value` member.
struct Members<'a> {
    line: &'a mut Vec<u8>,
    text: &'a mut String,
}

impl Members<'_> {
    fn key(&mut self, field: &Field) {
        self.line.push(b',');
        crate::json::write_string(field.name(), self.line);
        self.line.push(b':');
    }

    fn number(&mut self, field: &Field, value: impl fmt::Display) {
        self.key(field);
        self.text.clear();
        let _ = write!(self.text, "{value}");
        self.line.extend_from_slice(self.text.as_bytes());
    }
}

impl Visit for Members<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        crate::json::write_string(value, self.line);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // As serde_json writes a double: shortest form, `null` for what JSON has no number for.
        self.key(field);
        if serde_json::to_writer(&mut *self.line, &value).is_err() {
            self.line.extend_from_slice(b"null");
        }
    }

    /// Everything else (`%display`, `?debug`, errors, 128-bit integers) as a string of its text.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        self.text.clear();
        let _ = write!(self.text, "{value:?}");
        crate::json::write_string(self.text, self.line);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Every kind of field the gateway's events carry, and the awkward cases.
    fn events() {
        let peer: std::net::SocketAddr = "127.0.0.1:4433".parse().unwrap();
        let error = std::io::Error::other("the store is \"gone\"\nfor now");
        tracing::info!(
            message = "Request served.",
            listener = "partner",
            status = 202u16,
            latency_us = 1234u64,
            delta = -5i64,
            ok = true,
            ratio = 0.1f64,
            whole = 2.0f64,
            nan = f64::NAN,
            infinite = f64::INFINITY,
            big = u128::MAX,
            peer = %peer,
            partner = Some("on-vital-stats"),
            absent = None::<&str>,
            odd = "quote \" backslash \\ tab \t nul \u{0} é 😀",
            debug = ?vec!["a\"b"],
            error = &error as &dyn std::error::Error,
        );
        tracing::warn!("a message with {} arguments", 2);
        tracing::error!(target: "elsewhere", kind = "x", "last");
        // An event from the `log` crate, as the bridge hands it over.
        let record = log::Record::builder()
            .args(format_args!("from a dependency: 7"))
            .level(log::Level::Warn)
            .target("rustls::conn")
            .module_path_static(Some("rustls::conn"))
            .file_static(Some("src/conn.rs"))
            .line(Some(12))
            .build();
        tracing_log::format_trace(&record).unwrap();
    }

    fn lines(layer: impl tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync, sink: &Sink) -> String {
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        tracing::dispatcher::with_default(&dispatch, events);
        String::from_utf8(std::mem::take(&mut *sink.0.lock().unwrap())).unwrap()
    }

    /// The line without its timestamp's value, which differs between two calls.
    fn without_time(line: &str) -> (String, String) {
        let start = line.find("\"timestamp\":\"").unwrap() + 13;
        let end = start + line[start..].find('"').unwrap();
        (format!("{}{}", &line[..start], &line[end..]), line[start..end].to_owned())
    }

    /// A value whose `Debug` logs, as a careless dependency's might.
    struct Chatty;

    impl fmt::Debug for Chatty {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            tracing::info!(message = "logged from inside a field");
            f.write_str("chatty")
        }
    }

    #[test]
    fn a_field_that_logs_while_its_line_is_written_does_not_reenter_the_format() {
        let sink = Sink::default();
        let writer = sink.clone();
        let layer = tracing_subscriber::fmt::layer().event_format(JsonLines).with_writer(move || writer.clone());
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
        tracing::dispatcher::with_default(&dispatch, || tracing::info!(message = "outer", value = ?Chatty));
        let text = String::from_utf8(std::mem::take(&mut *sink.0.lock().unwrap())).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        // tracing drops the inner event rather than dispatch it while the outer one is written.
        assert_eq!(lines.len(), 1, "{text}");
        assert_eq!((&lines[0]["message"], &lines[0]["value"]), (&"outer".into(), &"chatty".into()));
    }

    #[test]
    fn lines_are_those_of_tracing_subscribers_json_format_byte_for_byte() {
        let (theirs, ours) = (Sink::default(), Sink::default());
        let theirs_sink = theirs.clone();
        let reference = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(move || theirs_sink.clone())
            .with_ansi(false);
        let ours_sink = ours.clone();
        let ours_layer = tracing_subscriber::fmt::layer()
            .event_format(JsonLines)
            .with_writer(move || ours_sink.clone())
            .with_ansi(false);
        let (expected, got) = (lines(reference, &theirs), lines(ours_layer, &ours));
        assert_eq!(expected.lines().count(), 4, "{expected}");
        for (want, have) in expected.lines().zip(got.lines()) {
            let ((want, want_time), (have, have_time)) = (without_time(want), without_time(have));
            assert_eq!(have, want);
            assert_eq!(have_time.len(), want_time.len(), "{have_time} vs {want_time}");
            serde_json::from_str::<serde_json::Value>(&have).unwrap();
        }
        assert_eq!(got.lines().count(), 4);
    }
}
