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

/// `minyi bench pipeline`: submit → dispatched, end to end through the running cluster.
#[derive(Debug, clap::Args)]
pub struct PipelineBenchArgs {
    /// Offered load in submits/s (open loop, spread over `clients` connections).
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Seconds of submitting.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// The dispatch service's gRPC address, when it is not the intake's (production mode).
    #[arg(long)]
    pub dispatch_endpoint: Option<String>,
    /// More intake replicas: the clients are spread over `--endpoint` and these.
    #[arg(long)]
    pub also_endpoint: Vec<String>,
    /// A dispatcher (or admin) token to read tickets with; default: the development one.
    #[arg(long, env = "MINYI_DISPATCHER_TOKEN", hide_env_values = true)]
    pub dispatcher_token: Option<String>,
    /// Longest wait, after the last submit, for every ticket to be decided.
    #[arg(long, default_value_t = 120)]
    pub settle: u64,
    /// Petitions sent through the whole pipeline, and waited for, before the clock starts (a
    /// freshly started cluster is still loading its model and opening connections).
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    #[arg(long, default_value = "")]
    pub label: String,
}

#[derive(Debug, Serialize)]
pub struct PipelineResult {
    pub label: String,
    pub offered_per_s: u64,
    pub duration_s: f64,
    pub submitted: u64,
    pub submit_errors: u64,
    /// Routed to a unit without a human.
    pub dispatched: u64,
    /// Sent to the human dispatchers' queue (not confident, or no resolvable place).
    pub to_dispatcher: u64,
    /// Linked to an earlier open ticket as a duplicate.
    pub duplicates: u64,
    /// Not decided within `settle` seconds.
    pub undecided: u64,
    /// Decided tickets per second, from the first submit to the last decision.
    pub decided_per_s: f64,
    /// Submit due (client clock) → routing decided (`routed_at`, server clock; same machine),
    /// over every decided ticket.
    pub decide_p50_ms: f64,
    pub decide_p99_ms: f64,
    pub decide_max_ms: f64,
    /// Submit due → `dispatched_at`, over the tickets dispatched without a person.
    pub dispatch_p50_ms: f64,
    pub dispatch_p99_ms: f64,
    pub dispatch_max_ms: f64,
}

/// Petitions that name a place the gazetteer knows, with texts from the demo catalog's
/// synthetic history (as `minyi dev --demo` sends).
fn pipeline_petitions(n: usize) -> Vec<(String, String)> {
    let catalog = minyi_catalog::Catalog::demo();
    let mut texts = minyi_catalog::demo_history(&catalog, 1, 7);
    texts.truncate(n.max(1));
    let places = [
        "光明街道东周社区",
        "公明街道上村社区",
        "马田街道合水口社区",
        "凤凰街道塘尾社区",
        "新湖街道楼村社区",
        "玉塘街道田寮社区",
    ];
    texts
        .into_iter()
        .enumerate()
        .map(|(i, (text, _))| (text, places[i % places.len()].to_owned()))
        .collect()
}

pub async fn pipeline(
    conn: &Connection,
    args: &PipelineBenchArgs,
) -> anyhow::Result<PipelineResult> {
    use minyi_proto::dispatch::GetTicketRequest;
    use minyi_proto::dispatch::dispatch_service_client::DispatchServiceClient;

    let agent: tonic::metadata::MetadataValue<_> =
        format!("Bearer {}", conn.token_for("agent")?).parse()?;
    let dispatcher_token = match &args.dispatcher_token {
        Some(t) => t.clone(),
        None => conn.token_for("dispatcher")?,
    };
    let dispatcher: tonic::metadata::MetadataValue<_> =
        format!("Bearer {dispatcher_token}").parse()?;
    let channel = match &args.dispatch_endpoint {
        Some(e) => conn.channel_to(e).await.context("--dispatch-endpoint")?,
        None => conn.channel().await?,
    };
    let mut reader =
        DispatchServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
            req.metadata_mut()
                .insert("authorization", dispatcher.clone());
            Ok(req)
        });
    if args.warmup > 0 {
        let mut client = IntakeServiceClient::new(conn.channel().await?);
        let warm_id = uuid::Uuid::new_v4().simple().to_string();
        let mut ids = Vec::new();
        // A street but no community: never a duplicate candidate for the measured petitions.
        for (n, (text, _)) in pipeline_petitions(args.warmup).into_iter().enumerate() {
            let mut req = tonic::Request::new(SubmitPetitionRequest {
                channel: 1,
                text: format!("{text}（预热）"),
                caller: Some(Caller {
                    anonymous: true,
                    ..Caller::default()
                }),
                location: Some(Location {
                    address: "光明街道".into(),
                    point: None,
                }),
                idempotency_key: format!("warm-{warm_id}-{n}"),
                ..SubmitPetitionRequest::default()
            });
            req.metadata_mut().insert("authorization", agent.clone());
            if let Some(t) = client.submit_petition(req).await?.into_inner().ticket {
                ids.push(t.id);
            }
        }
        let until = Instant::now() + Duration::from_secs(args.settle);
        while let Some(id) = ids.last().cloned() {
            let t = reader
                .get_ticket(GetTicketRequest { ticket: id })
                .await?
                .into_inner();
            if t.routing.is_some_and(|r| r.routed_at.is_some()) {
                ids.pop();
            } else if Instant::now() > until {
                anyhow::bail!("the warm-up petitions were not decided within --settle seconds");
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let total = (args.rate * args.duration) as usize;
    let petitions = Arc::new(pipeline_petitions(total));
    let interval = Duration::from_secs_f64(args.clients as f64 / args.rate.max(1) as f64);
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let started = std::time::SystemTime::now();
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration);
    let submit_errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut intakes = vec![conn.channel().await?];
    for e in &args.also_endpoint {
        intakes.push(conn.channel_to(e).await.context("--also-endpoint")?);
    }
    for c in 0..args.clients {
        let channel = intakes[c % intakes.len()].clone();
        let token = agent.clone();
        let mut client =
            IntakeServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
                req.metadata_mut().insert("authorization", token.clone());
                Ok(req)
            });
        let (petitions, run_id, errors) =
            (petitions.clone(), run_id.clone(), submit_errors.clone());
        let clients = args.clients;
        let stagger = interval.mul_f64(c as f64 / args.clients as f64);
        tasks.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut due = start + stagger;
            let mut n = 0usize;
            while due < end {
                tokio::time::sleep_until(due.into()).await;
                let (text, address) = &petitions[(n * clients + c) % petitions.len()];
                n += 1;
                let req = SubmitPetitionRequest {
                    channel: 1,
                    text: text.clone(),
                    title: String::new(),
                    caller: Some(Caller {
                        anonymous: true,
                        ..Caller::default()
                    }),
                    location: Some(Location {
                        address: address.clone(),
                        point: None,
                    }),
                    event_time: None,
                    attachment_urls: vec![],
                    idempotency_key: format!("pipe-{run_id}-{c}-{n}"),
                };
                // Latency counts from when the submit was due (no coordinated omission).
                let due_wall = started + due.duration_since(start);
                match client.submit_petition(req).await {
                    Ok(r) => {
                        if let Some(t) = r.into_inner().ticket {
                            sent.push((t.id, due_wall));
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                due += interval;
            }
            sent
        }));
    }
    let mut pending = Vec::new();
    for t in tasks {
        pending.extend(t.await?);
    }
    let submitted = pending.len() as u64;

    let mut decide = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).context("histogram")?;
    let mut dispatch = decide.clone();
    let (mut dispatched, mut to_dispatcher, mut duplicates) = (0u64, 0u64, 0u64);
    let mut last_decision = started;
    let settle_until = Instant::now() + Duration::from_secs(args.settle);
    let micros = |at: &prost_types::Timestamp, since: std::time::SystemTime| {
        let at = std::time::SystemTime::try_from(*at).unwrap_or(since);
        (
            at,
            (at.duration_since(since).unwrap_or_default().as_micros() as u64).max(1),
        )
    };
    while !pending.is_empty() && Instant::now() < settle_until {
        let mut still = Vec::new();
        for (id, sent_at) in pending {
            let t = match reader
                .get_ticket(GetTicketRequest { ticket: id.clone() })
                .await
            {
                Ok(t) => t.into_inner(),
                Err(_) => {
                    still.push((id, sent_at));
                    continue;
                }
            };
            use minyi_proto::common::TicketStatus as S;
            let status = S::try_from(t.status).unwrap_or(S::Unspecified);
            let routed_at = t.routing.as_ref().and_then(|r| r.routed_at);
            let decided = t.dispatched_at.is_some()
                || matches!(status, S::NeedsDispatcher | S::LinkedDuplicate);
            let Some(routed_at) = routed_at.filter(|_| decided) else {
                still.push((id, sent_at));
                continue;
            };
            let (at, us) = micros(&routed_at, sent_at);
            last_decision = last_decision.max(at);
            let _ = decide.record(us);
            match (t.dispatched_at, status) {
                (Some(at), _) => {
                    let _ = dispatch.record(micros(&at, sent_at).1);
                    dispatched += 1;
                }
                (None, S::NeedsDispatcher) => to_dispatcher += 1,
                _ => duplicates += 1,
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let span = last_decision
        .duration_since(started)
        .unwrap_or_default()
        .as_secs_f64()
        .max(f64::EPSILON);
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(PipelineResult {
        label: args.label.clone(),
        offered_per_s: args.rate,
        duration_s: args.duration as f64,
        submitted,
        submit_errors: submit_errors.load(std::sync::atomic::Ordering::Relaxed),
        dispatched,
        to_dispatcher,
        duplicates,
        undecided: pending.len() as u64,
        decided_per_s: (dispatched + to_dispatcher + duplicates) as f64 / span,
        decide_p50_ms: ms(&decide, 0.5),
        decide_p99_ms: ms(&decide, 0.99),
        decide_max_ms: decide.max() as f64 / 1000.0,
        dispatch_p50_ms: ms(&dispatch, 0.5),
        dispatch_p99_ms: ms(&dispatch, 0.99),
        dispatch_max_ms: dispatch.max() as f64 / 1000.0,
    })
}
