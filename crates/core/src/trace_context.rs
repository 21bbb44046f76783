//! One ticket, one trace: the W3C trace context (`traceparent`) travels in AMQP message headers
//! from service to service, and may arrive from a front end in gRPC metadata.
//!
//! Events are stamped with the current span's context when they are built
//! ([`crate::event::new_event`]); consumers open their handling span as a child of the context
//! a delivery carries ([`follow`]). Without an OpenTelemetry layer in the process's tracing
//! subscriber (export off) spans have no context and nothing is written or read.

use std::collections::BTreeMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Writer<'a>(&'a mut BTreeMap<String, String>);

impl Injector for Writer<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct Reader<'a>(&'a BTreeMap<String, String>);

impl Extractor for Reader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct Metadata<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// Writes the current span's trace context into outgoing message headers.
pub fn inject_current(headers: &mut BTreeMap<String, String>) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut Writer(headers));
}

/// Makes `span` a child of the trace `headers` carry (if any), and records the trace id in its
/// `trace_id` field.
pub fn follow(span: &tracing::Span, headers: &BTreeMap<String, String>) {
    if headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&Reader(headers));
        let _ = span.set_parent(parent);
    }
    record_trace_id(span);
}

/// Makes `span` a child of the trace a caller sent in its gRPC metadata (if any), and records
/// the trace id in its `trace_id` field.
pub fn follow_grpc(span: &tracing::Span, metadata: &tonic::metadata::MetadataMap) {
    if metadata.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&Metadata(metadata));
        let _ = span.set_parent(parent);
    }
    record_trace_id(span);
}

/// Writes the span's trace id into its `trace_id` field, so every log line inside it names the
/// trace (JSON logs list the fields of the spans they are in). Nothing without an
/// OpenTelemetry layer.
pub fn record_trace_id(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt;
    let cx = span.context();
    let id = cx.span().span_context().trace_id();
    if id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(id));
    }
}
