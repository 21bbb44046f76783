//! `minyi bench timers`: the SLA timer store on Redis under a million pending timers.
//!
//! Schedules `count` timers (deadline-sized payloads) due uniformly over `spread` seconds,
//! starting `delay` seconds from now, from `schedulers` concurrent tasks; meanwhile `workers`
//! claim due timers as the deadline service does (`claim_due` with a lease, then `complete`),
//! polling every `poll` ms when nothing is due. Reports the scheduling throughput, the peak of
//! pending timers, the firing lateness (claim time − due time: p50/p99/max) and whether every
//! timer fired exactly once. Measures the timer store (the Redis sorted set and its claim
//! script), not the effects a fired timer commits to PostgreSQL.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use hdrhistogram::Histogram;
use minyi_core::timers::{RedisTimers, Timer, TimerStore};
use serde::Serialize;
use tokio::sync::Mutex;

#[derive(Debug, clap::Args)]
pub struct TimerBenchArgs {
    #[arg(long, default_value = "redis://127.0.0.1:6379/")]
    pub redis_url: String,
    /// Timers to schedule.
    #[arg(long, default_value_t = 1_000_000)]
    pub count: u64,
    /// The first timer is due this many seconds after the start.
    #[arg(long, default_value_t = 30)]
    pub delay: u64,
    /// Due times are spread uniformly over this many seconds.
    #[arg(long, default_value_t = 120)]
    pub spread: u64,
    /// Concurrent scheduling tasks.
    #[arg(long, default_value_t = 64)]
    pub schedulers: usize,
    /// Concurrent claiming workers (deadline service replicas × their loops).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Timers claimed per round (the deadline service's `batch`).
    #[arg(long, default_value_t = 200)]
    pub batch: usize,
    /// Sleep between rounds when nothing was due, in ms (the deadline service's `poll`).
    #[arg(long, default_value_t = 200)]
    pub poll_ms: u64,
    #[arg(long, default_value = "")]
    pub label: String,
}

#[derive(Debug, Serialize)]
pub struct TimerBenchResult {
    pub label: String,
    pub count: u64,
    pub workers: usize,
    pub schedule_s: f64,
    pub scheduled_per_s: f64,
    pub peak_pending: u64,
    pub fired: u64,
    /// Timers claimed more than once (a lease ran out before `complete`).
    pub fired_twice: u64,
    /// Scheduled but never fired before the run ended.
    pub lost: u64,
    pub fired_per_s: f64,
    pub late_p50_ms: f64,
    pub late_p99_ms: f64,
    pub late_max_ms: f64,
}

/// A payload the size of the deadline service's.
fn payload(i: u64) -> String {
    format!(
        r#"{{"ticket_id":"0193a5c2-7d4e-7000-8000-{i:012}","clock":"complete","level":"warning","fraction":0.75,"due":"2026-12-01T09:00:00Z","unit":"ST-GM"}}"#
    )
}

pub async fn run(args: &TimerBenchArgs) -> anyhow::Result<TimerBenchResult> {
    let prefix = format!("bench-timers-{}", uuid::Uuid::new_v4().simple());
    let store = RedisTimers::connect(&args.redis_url, &prefix)
        .await
        .context("connecting to Redis")?;
    let start = Utc::now();
    let first_due = start + chrono::Duration::seconds(args.delay as i64);
    let spread_ms = (args.spread * 1000) as f64;
    let per_timer = spread_ms / args.count.max(1) as f64;

    let fired = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Mutex::new(HashSet::<String>::with_capacity(
        args.count as usize,
    )));
    let twice = Arc::new(AtomicU64::new(0));
    let lateness = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        3_600_000_000,
        3,
    )?));

    // Workers claim from the start, as the deadline service would while timers are added.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        let (store, fired, seen, twice, lateness, stop) = (
            store.clone(),
            fired.clone(),
            seen.clone(),
            twice.clone(),
            lateness.clone(),
            stop.clone(),
        );
        let (batch, poll) = (args.batch, Duration::from_millis(args.poll_ms));
        workers.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
            while !stop.load(Ordering::Relaxed) {
                let now = Utc::now();
                let due = store.claim_due(now, batch, Duration::from_secs(30)).await?;
                if due.is_empty() {
                    tokio::time::sleep(poll).await;
                    continue;
                }
                let completes = due.iter().map(|t| store.complete(&t.id));
                for r in futures::future::join_all(completes).await {
                    r?;
                }
                let mut ids = seen.lock().await;
                for t in &due {
                    let late = (now - t.due).num_microseconds().unwrap_or(0).max(1) as u64;
                    local.record(late)?;
                    if !ids.insert(t.id.clone()) {
                        twice.fetch_add(1, Ordering::Relaxed);
                    }
                }
                fired.fetch_add(due.len() as u64, Ordering::Relaxed);
            }
            lateness.lock().await.add(&local)?;
            anyhow::Ok(())
        }));
    }

    // Peak of pending timers, sampled.
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (store, peak, stop) = (store.clone(), peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = store.pending().await {
                    peak.fetch_max(n, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let sched_start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut schedulers = Vec::new();
    for _ in 0..args.schedulers {
        let (store, next) = (store.clone(), next.clone());
        let count = args.count;
        schedulers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let due = first_due + chrono::Duration::milliseconds((i as f64 * per_timer) as i64);
                store
                    .schedule(&Timer {
                        id: format!("bench:{i}"),
                        due,
                        payload: payload(i),
                    })
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    let progress_every = (args.count / 10).max(1);
    let mut reported = 0;
    while !schedulers.iter().all(|s| s.is_finished()) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = next.load(Ordering::Relaxed).min(args.count);
        if n / progress_every > reported {
            reported = n / progress_every;
            eprintln!("scheduled {n} of {} timers", args.count);
        }
    }
    for s in schedulers {
        s.await??;
    }
    let schedule_s = sched_start.elapsed().as_secs_f64();
    eprintln!(
        "scheduled {} timers in {schedule_s:.1} s; waiting for them to fire",
        args.count
    );

    // Wait until everything fired, or well past the last due time.
    let last_due = first_due + chrono::Duration::milliseconds(spread_ms as i64);
    let give_up = last_due + chrono::Duration::seconds(60);
    while fired.load(Ordering::Relaxed) < args.count && Utc::now() < give_up {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fire_end = Utc::now();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await??;
    }
    let _ = sampler.await;
    let pending = store.pending().await?;
    // Leave nothing behind in the shared Redis.
    let client = redis::Client::open(args.redis_url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("DEL")
        .arg(format!("{prefix}:timers"))
        .arg(format!("{prefix}:timer-payloads"))
        .query_async::<()>(&mut conn)
        .await?;

    let h = lateness.lock().await;
    let fired = fired.load(Ordering::Relaxed);
    let distinct = seen.lock().await.len() as u64;
    let fire_window = (fire_end - first_due).num_milliseconds().max(1) as f64 / 1000.0;
    Ok(TimerBenchResult {
        label: args.label.clone(),
        count: args.count,
        workers: args.workers,
        schedule_s,
        scheduled_per_s: args.count as f64 / schedule_s,
        peak_pending: peak.load(Ordering::Relaxed),
        fired,
        fired_twice: twice.load(Ordering::Relaxed),
        lost: args.count.saturating_sub(distinct).max(pending),
        fired_per_s: fired as f64 / fire_window,
        late_p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        late_p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        late_max_ms: h.max() as f64 / 1000.0,
    })
}
