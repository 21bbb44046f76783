//! Prometheus metrics in the text exposition format, served on the HTTP port's `/metrics`.
//!
//! - `minyi_rpc_requests_total{method, code}` and `minyi_rpc_duration_seconds{method}`
//!   (histogram): every gRPC call, recorded by [`MetricsLayer`] around the server. The code is
//!   the `grpc-status` the call ended with when it failed before its first message, else `OK`;
//!   a streaming call is timed to its response headers.
//! - Gauges read at scrape time (the process's own view of the shared backends) are written by
//!   the binary with [`Exposition::gauge`].
//!
//! Labels never carry request data: the method comes from a fixed set of paths (anything
//! else is counted as `other`), codes from the gRPC code names.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Petitions this process accepted as new tickets (not idempotent repeats).
pub static TICKETS_RECEIVED: AtomicU64 = AtomicU64::new(0);

/// Per consumer: seconds from the last handled event's occurrence to its delivery here.
static CONSUMER_LAG: Mutex<BTreeMap<&'static str, f64>> = Mutex::new(BTreeMap::new());

/// Records how far behind `consumer` is: now minus the delivered event's `occurred_at`.
pub fn observe_delivery(consumer: &'static str, message: &crate::bus::Message) {
    let Some(at) = crate::event::decode(&message.payload)
        .and_then(|e| e.occurred_at)
        .and_then(|t| crate::event::from_timestamp(&t))
    else {
        return;
    };
    let lag = (chrono::Utc::now() - at).num_milliseconds().max(0) as f64 / 1000.0;
    CONSUMER_LAG
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(consumer, lag);
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    count: u64,
    sum: f64,
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    buckets: [u64; BUCKETS.len() + 1],
}

#[derive(Debug, Default)]
struct Rpcs {
    counts: BTreeMap<(String, String), u64>,
    durations: BTreeMap<String, Histogram>,
}

/// The process's recorded series. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    rpcs: Arc<Mutex<Rpcs>>,
}

impl Metrics {
    pub fn record_rpc(&self, method: &str, code: &str, seconds: f64) {
        let method = if method.starts_with("/minyi.") || method.starts_with("/grpc.") {
            method
        } else {
            "other"
        };
        let mut rpcs = self.rpcs.lock().unwrap_or_else(|e| e.into_inner());
        *rpcs
            .counts
            .entry((method.to_owned(), code.to_owned()))
            .or_default() += 1;
        let h = rpcs.durations.entry(method.to_owned()).or_default();
        h.count += 1;
        h.sum += seconds;
        let slot = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        h.buckets[slot] += 1;
    }

    /// Writes the recorded series.
    pub fn render(&self, out: &mut Exposition) {
        let rpcs = self.rpcs.lock().unwrap_or_else(|e| e.into_inner());
        out.header(
            "minyi_rpc_requests_total",
            "counter",
            "gRPC calls handled by this process, by method and status code.",
        );
        for ((method, code), n) in &rpcs.counts {
            out.sample(
                "minyi_rpc_requests_total",
                &[("method", method), ("code", code)],
                *n as f64,
            );
        }
        out.header(
            "minyi_rpc_duration_seconds",
            "histogram",
            "gRPC call latency in this process (to the response headers for streams).",
        );
        for (method, h) in &rpcs.durations {
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i];
                out.sample(
                    "minyi_rpc_duration_seconds_bucket",
                    &[("method", method), ("le", &bound.to_string())],
                    cumulative as f64,
                );
            }
            out.sample(
                "minyi_rpc_duration_seconds_bucket",
                &[("method", method), ("le", "+Inf")],
                h.count as f64,
            );
            out.sample(
                "minyi_rpc_duration_seconds_sum",
                &[("method", method)],
                h.sum,
            );
            out.sample(
                "minyi_rpc_duration_seconds_count",
                &[("method", method)],
                h.count as f64,
            );
        }
    }
}

/// A text exposition being written.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.text, "{k}=\"{v}\"");
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A gauge with one unlabelled sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, "gauge", help);
        self.sample(name, &[], value);
    }

    /// An "info" gauge: one sample of value 1 naming what is in force in its label.
    pub fn info(&mut self, name: &str, help: &str, label: &str, value: &str) {
        self.header(name, "gauge", help);
        self.sample(name, &[(label, value)], 1.0);
    }

    pub fn into_string(self) -> String {
        self.text
    }
}

/// Records every call through the wrapped gRPC server in [`Metrics`].
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Metrics,
}

impl MetricsLayer {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, RB> tower::Service<http::Request<B>> for MetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_owned();
        let start = Instant::now();
        let metrics = self.metrics.clone();
        let call = self.inner.call(req);
        Box::pin(async move {
            let result = call.await;
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or_else(|| "OK".to_owned(), code_name),
                Err(_) => "transport_error".to_owned(),
            };
            metrics.record_rpc(&method, &code, start.elapsed().as_secs_f64());
            result
        })
    }
}

/// `3` → `InvalidArgument`.
fn code_name(code: i32) -> String {
    format!("{:?}", tonic::Code::from(code))
}

/// Reads the process-wide counters into `out`.
pub fn render_counters(out: &mut Exposition) {
    out.header(
        "minyi_tickets_received_total",
        "counter",
        "Petitions this process accepted as new tickets.",
    );
    out.sample(
        "minyi_tickets_received_total",
        &[],
        TICKETS_RECEIVED.load(Ordering::Relaxed) as f64,
    );
    out.header(
        "minyi_consumer_lag_seconds",
        "gauge",
        "How old the last event a consumer of this process handled was when it arrived.",
    );
    for (consumer, lag) in CONSUMER_LAG
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        out.sample(
            "minyi_consumer_lag_seconds",
            &[("consumer", consumer)],
            *lag,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let m = Metrics::default();
        m.record_rpc("/minyi.intake.v1.IntakeService/SubmitPetition", "OK", 0.003);
        m.record_rpc("/minyi.intake.v1.IntakeService/SubmitPetition", "OK", 0.2);
        m.record_rpc("/evil\"path", "InvalidArgument", 9.0);
        let mut out = Exposition::default();
        m.render(&mut out);
        let text = out.into_string();
        let submit = "method=\"/minyi.intake.v1.IntakeService/SubmitPetition\"";
        assert!(text.contains(&format!(
            "minyi_rpc_requests_total{{{submit},code=\"OK\"}} 2"
        )));
        assert!(text.contains(&format!(
            "minyi_rpc_duration_seconds_bucket{{{submit},le=\"0.005\"}} 1"
        )));
        assert!(text.contains(&format!(
            "minyi_rpc_duration_seconds_bucket{{{submit},le=\"0.25\"}} 2"
        )));
        assert!(text.contains(&format!(
            "minyi_rpc_duration_seconds_bucket{{{submit},le=\"+Inf\"}} 2"
        )));
        assert!(
            text.contains("minyi_rpc_requests_total{method=\"other\",code=\"InvalidArgument\"} 1")
        );
        assert!(!text.contains("evil"));
        assert_eq!(code_name(3), "InvalidArgument");
    }
}
