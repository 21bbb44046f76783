//! `minyi bench intake`: drives `SubmitPetition` over gRPC from N concurrent clients, closed
//! loop (as fast as answers come) or open loop at a fixed offered rate, and reports
//! throughput and latency percentiles from an HDR histogram.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use minyi_proto::common::{Caller, Location};
use minyi_proto::intake::SubmitPetitionRequest;
use minyi_proto::intake::intake_service_client::IntakeServiceClient;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::client::Connection;

#[derive(Debug, clap::Args)]
pub struct IntakeBenchArgs {
    /// Concurrent clients (each its own HTTP/2 connection).
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Measured duration in seconds (after a 2 s warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Offered load in submits/s across all clients; closed loop when absent.
    #[arg(long)]
    pub rate: Option<u64>,
    /// A label written into the result (e.g. "embedded", "production").
    #[arg(long, default_value = "")]
    pub label: String,
}

#[derive(Debug, Serialize)]
pub struct BenchResult {
    pub label: String,
    pub clients: usize,
    pub offered_per_s: Option<u64>,
    pub duration_s: f64,
    pub ok: u64,
    pub errors: u64,
    pub submits_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

const TEXTS: &[&str] = &[
    "小区门口垃圾堆积三天无人清理，气味很大，请尽快处理。",
    "楼下商铺晚上十一点后还在播放音乐，噪音扰民，多次沟通无果。",
    "光明大街与华夏路交叉口红绿灯故障，早高峰非常危险。",
    "公司拖欠工资两个月，老板联系不上，请求劳动监察介入。",
    "学校周边有无证流动摊贩，食品卫生没有保障。",
    "小区停水已经超过十二小时，没有任何通知。",
];

pub async fn run(conn: &Connection, args: &IntakeBenchArgs) -> anyhow::Result<BenchResult> {
    let token: tonic::metadata::MetadataValue<_> =
        format!("Bearer {}", conn.token_for("agent")?).parse()?;
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?,
    ));
    let counts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let warmup = Duration::from_secs(2);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + Duration::from_secs(args.duration);
    let per_client_interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.clients as f64 / r.max(1) as f64));
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let channel = conn.channel().await?;
        let token = token.clone();
        let mut client =
            IntakeServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
                req.metadata_mut().insert("authorization", token.clone());
                Ok(req)
            });
        let (hist, counts, errors, run_id) =
            (hist.clone(), counts.clone(), errors.clone(), run_id.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok();
            let mut n = 0u64;
            // Open loop: each request is due at a fixed time; latency counts from then, so a
            // stalled server shows up in the percentiles (no coordinated omission).
            let mut next_due = Instant::now() + Duration::from_millis((c as u64 * 7) % 50);
            loop {
                let due = match per_client_interval {
                    Some(iv) => {
                        tokio::time::sleep_until(next_due.into()).await;
                        let d = next_due;
                        next_due += iv;
                        d
                    }
                    None => Instant::now(),
                };
                if due >= end {
                    break;
                }
                n += 1;
                let req = SubmitPetitionRequest {
                    channel: 1,
                    text: TEXTS[(n as usize + c) % TEXTS.len()].to_owned(),
                    title: String::new(),
                    caller: Some(Caller {
                        anonymous: false,
                        name: "测试".into(),
                        phone: format!("138{:08}", (c as u64 * 1_000_003 + n) % 100_000_000),
                        id_number: String::new(),
                    }),
                    location: Some(Location {
                        address: "光明街道东周社区".into(),
                        point: None,
                    }),
                    event_time: None,
                    attachment_urls: vec![],
                    idempotency_key: format!("bench-{run_id}-{c}-{n}"),
                };
                let result = client.submit_petition(req).await;
                let done = Instant::now();
                if due >= measure_from {
                    match result {
                        Ok(_) => {
                            counts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if let Some(h) = local.as_mut() {
                                let _ = h.record(done.duration_since(due).as_micros() as u64);
                            }
                        }
                        Err(_) => {
                            errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }
            if let Some(h) = local {
                let _ = hist.lock().await.add(&h);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let h = hist.lock().await;
    let ok = counts.load(std::sync::atomic::Ordering::Relaxed);
    let secs = args.duration as f64;
    Ok(BenchResult {
        label: args.label.clone(),
        clients: args.clients,
        offered_per_s: args.rate,
        duration_s: secs,
        ok,
        errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        submits_per_s: ok as f64 / secs,
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        max_ms: h.max() as f64 / 1000.0,
    })
}
