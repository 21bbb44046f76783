//! Spans leave the process over the wire: the app's own telemetry setup (`otlp_endpoint`)
//! exports to an OTLP/gRPC collector, here a minimal one served by the test with the
//! collector's own protobuf service. The petition's submit, classification and dispatch spans
//! arrive under one trace id, from the named service.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use minyi_core::auth::Role;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use support::{Backend, spawn_app};

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// (service.name, span name, trace id) of every span the collector received.
fn received(c: &Collector) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for req in c.0.lock().unwrap().iter() {
        for rs in &req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    out.push((service.clone(), s.name.clone(), s.trace_id.clone()));
                }
            }
        }
    }
    out
}

// Multi-threaded: the SDK's batch exporter runs on its own thread and its gRPC client on this
// runtime, so the flush at the end must not wait on the only runtime thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_collector_over_grpc() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream_net::wrappers::TcpListenerStream::new(listener)),
    );
    let telemetry = minyi::telemetry::init("text", Some(&format!("http://{addr}")), "otlp-test");

    let app = spawn_app(Backend::Embedded).await;
    let mut agent = app.intake(Some(Role::Agent)).await;
    support::submit_and_wait_dispatched(&mut agent).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.stop().await;
    // Dropping the telemetry handle flushes the batch, as at the end of `main`.
    tokio::task::spawn_blocking(move || drop(telemetry))
        .await
        .unwrap();

    let spans = received(&collector);
    let submit = spans
        .iter()
        .find(|(_, name, _)| name == "submit_petition")
        .unwrap_or_else(|| panic!("no submit span arrived: {spans:?}"));
    assert_eq!(submit.0, "minyi-otlp-test");
    assert_eq!(submit.2.len(), 16, "a W3C trace id");
    for stage in ["classification.consume", "dispatch.consume"] {
        assert!(
            spans
                .iter()
                .any(|(_, name, trace)| name == stage && *trace == submit.2),
            "{stage} did not arrive in the submit's trace: {spans:?}"
        );
    }
}
