//! One petition, one trace: spans are exported in-process (an in-memory exporter behind the
//! OpenTelemetry tracing layer) while intake, classification and dispatch run as separate apps
//! on real RabbitMQ; the trace context crosses the broker in the message headers.

mod support;

use std::time::Duration;

use minyi_core::auth::Role;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::test]
async fn one_trace_covers_intake_classification_and_dispatch() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    // JSON log lines, as in containers, to check that they name the trace.
    let logs = support::LogBuffer::default();
    let writer = logs.clone();
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(move || writer.clone()),
        )
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .init();

    let c = support::spawn_cluster().await;
    let mut agent = c.intake.intake(Some(Role::Agent)).await;
    support::submit_and_wait_dispatched(&mut agent).await;
    // The dispatch span closes right after its commit; give it a moment, then flush.
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.stop().await;
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let named = |name: &str| {
        spans
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.span_context.trace_id())
            .collect::<Vec<_>>()
    };
    let submits = named("submit_petition");
    assert_eq!(submits.len(), 1, "one submit span");
    let trace = submits[0];
    for stage in ["classification.consume", "dispatch.consume"] {
        assert!(
            named(stage).contains(&trace),
            "{stage} is not in the submit's trace {trace}: {:?}",
            spans
                .iter()
                .map(|s| (s.name.to_string(), s.span_context.trace_id()))
                .collect::<Vec<_>>()
        );
    }
    // And nothing else started a trace of its own for this ticket's steps.
    let consumer_traces: std::collections::HashSet<_> = named("classification.consume")
        .into_iter()
        .chain(named("dispatch.consume"))
        .collect();
    assert_eq!(consumer_traces.len(), 1, "{consumer_traces:?}");

    // The dispatch step's log line names the trace.
    let logs = logs.text();
    let named = format!("\"trace_id\":\"{trace}\"");
    assert!(
        logs.lines()
            .any(|l| l.contains(&named) && l.contains("dispatch.consume")),
        "no dispatch log line with {named}"
    );
}
