//! Spans exported over OTLP/HTTP: one record's intake, commit and delivery attempts arrive at a
//! collector as one trace, the caller's, each hop under the one it came from.

use std::time::Duration;

use http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;

use crate::support::*;

/// One exported span, as the collector saw it.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    service: String,
}

/// Every span of every export request `collector` received.
fn spans(collector: &MockRecipient) -> Vec<Span> {
    let mut out = Vec::new();
    for request in collector.received() {
        assert_eq!(request.path, "/v1/traces");
        assert_eq!(request.header("content-type"), Some("application/x-protobuf"));
        let export = ExportTraceServiceRequest::decode(request.body.as_ref()).expect("an OTLP protobuf export");
        for resource in export.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for s in scope.spans {
                    out.push(Span {
                        name: s.name.clone(),
                        kind: s.kind,
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                        service: service.clone(),
                    });
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_records_intake_commit_and_delivery_spans_arrive_over_otlp_as_one_trace() {
    let collector = MockRecipient::start().await;
    let recipients = mock_recipients().await;
    let setup = Setup::new().telemetry(&format!("otlp_endpoint = \"http://{}\"", collector.addr));
    setup.write_for(&recipients);
    let gateway = ChildGateway::spawn(&setup.main_config(), &[]).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let r = gateway
        .client
        .post("/v1/records/birth-registration")
        .bearer(&setup.keys["on-vital-stats"])
        .header("traceparent", &format!("00-{trace}-{caller_span}-01"))
        .json(&record("birth-registration-1.1.json"))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    for m in recipients.values() {
        m.wait_for(1, Duration::from_secs(10)).await;
    }
    // A clean stop sends the spans still queued (the collector keeps answering meanwhile).
    tokio::task::spawn_blocking(move || gateway.terminate()).await.unwrap();
    let spans = spans(&collector);
    let named = |name: &str| spans.iter().filter(|s| s.name == name).cloned().collect::<Vec<_>>();
    let intake = named("intake");
    assert_eq!(intake.len(), 1, "{spans:#?}");
    let intake = &intake[0];
    assert_eq!(intake.trace_id, trace, "the caller's trace");
    assert_eq!(intake.parent, caller_span, "the caller's span is the intake's parent");
    assert_eq!(intake.kind, SpanKind::Server as i32);
    assert!(intake.service.contains("passerelle"), "{}", intake.service);
    let commit = named("commit");
    assert_eq!(commit.len(), 1);
    assert_eq!((commit[0].trace_id.as_str(), commit[0].parent.as_str()), (trace, intake.span_id.as_str()));
    let deliveries = named("delivery");
    assert_eq!(deliveries.len(), RECIPIENTS.len(), "one span per delivery attempt: {spans:#?}");
    for d in &deliveries {
        assert_eq!((d.trace_id.as_str(), d.parent.as_str()), (trace, intake.span_id.as_str()));
        assert_eq!(d.kind, SpanKind::Client as i32);
    }
    // What each recipient received names its delivery's span as the parent: one tree.
    for (id, m) in &recipients {
        let sent = m.received()[0].header("traceparent").unwrap().to_owned();
        let parent = sent.split('-').nth(2).unwrap();
        assert!(deliveries.iter().any(|d| d.span_id == parent), "{id}: {sent} names no delivery span");
    }
    assert!(spans.iter().all(|s| s.trace_id == trace), "one trace: {spans:#?}");
}
