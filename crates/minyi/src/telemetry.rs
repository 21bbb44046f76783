//! Logs and traces. Logs: human-readable text by default, JSON lines with `log_format =
//! "json"` (lines inside a submit or a consumer's handling carry its `trace_id`); filter with
//! `RUST_LOG` (default `info`). Request bodies are never logged: they hold personal data.
//! Traces: the trace context travels with every event (see `minyi_core::trace_context`), so one
//! ticket is one trace across the services; with `otlp_endpoint` set, spans go to an
//! OpenTelemetry collector over OTLP/gRPC.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Flushes and stops trace export when dropped (at the end of `main`).
#[must_use]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the process's subscriber. `service` names the process in traces.
pub fn init(format: &str, otlp_endpoint: Option<&str>, service: &str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,lapin=warn,h2=warn,tower=warn"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if format == "json" {
        fmt.json().flatten_event(true).with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    // Spans always get trace ids (they travel with the events and name the trace in JSON log
    // lines); they leave the process only with an OTLP endpoint. Minyi's own info spans are
    // traced whatever `RUST_LOG` lets through to the logs.
    let (provider, problem) = match otlp_endpoint.map(|e| exporter(e, service)) {
        Some(Ok(provider)) => (provider, None),
        Some(Err(e)) => (SdkTracerProvider::builder().build(), Some(e)),
        None => (SdkTracerProvider::builder().build(), None),
    };
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("minyi"))
        .with_filter(
            tracing_subscriber::filter::Targets::new().with_target("minyi", tracing::Level::INFO),
        );
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    if let Some(e) = problem {
        tracing::warn!(error = %e, "trace export is off: the OTLP exporter could not be built");
    }
    Telemetry {
        provider: Some(provider),
    }
}

fn exporter(endpoint: &str, service: &str) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(format!("minyi-{service}"))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
