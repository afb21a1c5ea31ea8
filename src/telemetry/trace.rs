//! W3C Trace Context (level 1): the `traceparent` and `tracestate` a request arrives with, and
//! the context each hop of the gateway passes on.
//!
//! A partner's request may carry a `traceparent`; the gateway continues that trace (or starts
//! one) and is itself a hop of it: the intake of a record is a span of the trace, and so is each
//! delivery attempt and each call to a responder. Each hop has a span id of its own, which is
//! the `parent-id` of the `traceparent` the gateway sends on, with the same trace id and flags;
//! `tracestate` goes along unchanged (the gateway adds no entry of its own). When spans are
//! exported ([`super::otlp`]), the span ids are those of the exported spans, so a trace viewer
//! shows partner → intake → each delivery attempt → recipient as one tree.
//!
//! A `traceparent` that is not well formed is ignored (a new trace starts) and its `tracestate`
//! with it, as the specification requires; so is a `tracestate` that is not well formed.

use http::HeaderMap;

/// Longest `tracestate` passed on; the specification asks for at least 512 characters.
const MAX_TRACESTATE: usize = 512;
/// Most list members of a `tracestate`.
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// One hop's trace context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The span of this hop: the `parent-id` of what it sends on.
    pub span_id: [u8; 8],
    /// `trace-flags`; bit 0 is "sampled".
    pub flags: u8,
    /// The `tracestate` received, passed on unchanged.
    pub state: Option<String>,
}

impl TraceContext {
    /// The caller's context from its `traceparent` and `tracestate`, if the former is well formed.
    pub fn from_headers(headers: &HeaderMap) -> Option<TraceContext> {
        let mut parents = headers.get_all("traceparent").iter();
        // Two `traceparent` headers are not one trace context.
        let (Some(parent), None) = (parents.next(), parents.next()) else { return None };
        let mut context = Self::parse_traceparent(parent.to_str().ok()?)?;
        // Several `tracestate` headers are one list (RFC 9110 §5.3).
        let states: Vec<&str> =
            headers.get_all("tracestate").iter().filter_map(|v| v.to_str().ok()).map(str::trim).collect();
        let state = states.join(",");
        context.state = well_formed_tracestate(&state).then_some(state);
        Some(context)
    }

    /// A `traceparent` value (`version-traceid-parentid-flags`), as level 1 reads it: version 00
    /// exactly; a later version by its first four fields; `ff`, all-zero ids and uppercase hex
    /// refused.
    pub fn parse_traceparent(text: &str) -> Option<TraceContext> {
        let text = text.trim_matches([' ', '\t']);
        // The fields are read by position, which only ASCII makes safe.
        if !text.is_ascii() {
            return None;
        }
        let bytes = text.as_bytes();
        if bytes.len() < 55 || !(bytes.len() == 55 || bytes[55] == b'-') {
            return None;
        }
        let version = lower_hex::<1>(&text[0..2])?[0];
        if version == 0xff || (version == 0 && bytes.len() != 55) {
            return None;
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id = lower_hex::<16>(&text[3..35])?;
        let span_id = lower_hex::<8>(&text[36..52])?;
        let flags = lower_hex::<1>(&text[53..55])?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext { trace_id, span_id, flags, state: None })
    }

    /// A new trace, sampled, with a random trace id and this hop's random span id.
    pub fn new_root() -> TraceContext {
        let ids = crate::random::not_secret::<24>();
        let (mut trace_id, mut span_id) = ([0u8; 16], [0u8; 8]);
        trace_id.copy_from_slice(&ids[..16]);
        span_id.copy_from_slice(&ids[16..]);
        TraceContext { trace_id, span_id, flags: 1, state: None }
    }

    /// The next hop of this trace: same trace, flags and state, span `span_id` (a random one if
    /// `None`).
    pub fn child(&self, span_id: Option<[u8; 8]>) -> TraceContext {
        TraceContext { span_id: span_id.unwrap_or_else(crate::random::not_secret::<8>), ..self.clone() }
    }

    /// The `traceparent` value naming this hop as the parent.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", hex::encode(self.trace_id), hex::encode(self.span_id), self.flags)
    }

    /// The trace id in hex, as log lines carry it.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// Whether the trace is sampled (exported).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// What a hop is to the trace (OpenTelemetry's span kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopKind {
    /// The gateway answering a partner: the intake of a record or a request.
    Server,
    /// The gateway calling a recipient or a responder.
    Client,
    /// Work inside the gateway (the commit of a record).
    Internal,
}

impl HopKind {
    /// The OpenTelemetry span kind.
    pub fn label(self) -> &'static str {
        match self {
            HopKind::Server => "server",
            HopKind::Client => "client",
            HopKind::Internal => "internal",
        }
    }
}

/// One hop of a trace: its context (what it sends on) and, when spans are exported, the span
/// that stands for it (otherwise a disabled span, which costs nothing).
pub struct Hop {
    pub context: TraceContext,
    pub span: tracing::Span,
}

impl Hop {
    /// Starts hop `name` of the trace `parent` continues, or of a new trace.
    pub fn start(name: &'static str, kind: HopKind, parent: Option<&TraceContext>) -> Hop {
        if let Some(hop) = Hop::exported(name, kind, parent) {
            return hop;
        }
        let context = match parent {
            Some(parent) => parent.child(None),
            None => TraceContext::new_root(),
        };
        Hop { context, span: tracing::Span::none() }
    }

    /// The hop as an exported span, when spans are exported ([`super::otlp`]).
    fn exported(name: &'static str, kind: HopKind, parent: Option<&TraceContext>) -> Option<Hop> {
        let remote = parent.map(|p| {
            let ids = super::otlp::SpanIds { trace_id: p.trace_id, span_id: p.span_id, flags: p.flags };
            (ids, p.state.as_deref())
        });
        let (span, own) = super::otlp::start_span(name, kind.label(), remote)?;
        let context = TraceContext {
            trace_id: own.trace_id,
            span_id: own.span_id,
            flags: own.flags,
            state: parent.and_then(|p| p.state.clone()),
        };
        Some(Hop { context, span })
    }
}

/// The span of a step inside the hop whose span is current (the commit of a record, inside
/// its intake), a local child of it, when spans are exported; otherwise a disabled span. A step
/// passes nothing on, so it needs no ids of its own.
pub fn step(name: &'static str) -> tracing::Span {
    super::otlp::start_span(name, HopKind::Internal.label(), None).map_or_else(tracing::Span::none, |(span, _)| span)
}

/// `N` bytes from exactly `2N` lowercase hex digits.
fn lower_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Whether `state` is a `tracestate` worth passing on: at most 32 `key=value` members of
/// printable ASCII, at most 512 characters, keys unique. (Empty members are allowed and kept.)
fn well_formed_tracestate(state: &str) -> bool {
    if state.is_empty() || state.len() > MAX_TRACESTATE {
        return false;
    }
    let members: Vec<&str> = state.split(',').map(|m| m.trim_matches([' ', '\t'])).filter(|m| !m.is_empty()).collect();
    if members.is_empty() || members.len() > MAX_TRACESTATE_MEMBERS {
        return false;
    }
    let mut keys = Vec::with_capacity(members.len());
    for member in members {
        let Some((key, value)) = member.split_once('=') else { return false };
        let key_ok = !key.is_empty()
            && key.len() <= 256
            && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-*/@".contains(&b));
        let value_ok = !value.is_empty()
            && value.len() <= 256
            && value.bytes().all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
            && !value.ends_with(' ');
        if !key_ok || !value_ok || keys.contains(&key) {
            return false;
        }
        keys.push(key);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_well_formed_traceparent_is_continued_with_a_new_span_and_its_state() {
        let c = TraceContext::from_headers(&headers(&[("traceparent", PARENT), ("tracestate", "congo=t61rcWkgMzE")]))
            .unwrap();
        assert_eq!(c.traceparent(), PARENT);
        assert_eq!(c.state.as_deref(), Some("congo=t61rcWkgMzE"));
        let hop = c.child(None);
        assert_eq!(hop.trace_id, c.trace_id);
        assert_ne!(hop.span_id, c.span_id, "each hop has a span of its own");
        assert_eq!(hop.state, c.state);
        assert!(hop.traceparent().starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
        assert!(hop.traceparent().ends_with("-01"));
    }

    #[test]
    fn malformed_traceparents_start_a_new_trace() {
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "0-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319é-b7ad6b7169203331-01",
            "00-éééééééééééééééé-b7ad6b7169203331-01-ééééééééééééé",
        ] {
            assert!(TraceContext::parse_traceparent(bad).is_none(), "{bad:?}");
        }
        // A later version is read by its first four fields.
        assert!(TraceContext::parse_traceparent(&format!("01{}-future", &PARENT[2..])).is_some());
        // Two traceparents are none.
        assert!(TraceContext::from_headers(&headers(&[("traceparent", PARENT), ("traceparent", PARENT)])).is_none());
    }

    #[test]
    fn a_malformed_tracestate_is_dropped_and_several_headers_are_one_list() {
        let c = TraceContext::from_headers(&headers(&[("traceparent", PARENT), ("tracestate", "Upper=x")])).unwrap();
        assert_eq!(c.state, None);
        let long = format!("a={}", "x".repeat(600));
        let c = TraceContext::from_headers(&headers(&[("traceparent", PARENT), ("tracestate", &long)])).unwrap();
        assert_eq!(c.state, None);
        let c = TraceContext::from_headers(&headers(&[
            ("traceparent", PARENT),
            ("tracestate", "a=1"),
            ("tracestate", "b@vendor=2"),
        ]))
        .unwrap();
        assert_eq!(c.state.as_deref(), Some("a=1,b@vendor=2"));
        let c = TraceContext::from_headers(&headers(&[("traceparent", PARENT), ("tracestate", "a=1,a=2")])).unwrap();
        assert_eq!(c.state, None, "keys are unique");
    }

    #[test]
    fn a_new_root_is_sampled_and_valid() {
        let root = TraceContext::new_root();
        assert!(root.sampled());
        assert_eq!(TraceContext::parse_traceparent(&root.traceparent()), Some(root));
    }
}
