//! One contract, two adapters: in-memory timers and Redis timers.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use minyi_core::timers::{MemoryTimers, RedisTimers, Timer, TimerStore};

fn at(s: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
}

fn timer(id: &str, s: i64) -> Timer {
    Timer {
        id: id.into(),
        due: at(s),
        payload: format!("payload-{id}"),
    }
}

async fn contract(t: &dyn TimerStore) {
    t.schedule(&timer("late", 100)).await.unwrap();
    t.schedule(&timer("early", 10)).await.unwrap();
    t.schedule(&timer("mid", 50)).await.unwrap();
    assert_eq!(t.pending().await.unwrap(), 3);
    // Nothing is due before its time.
    assert!(
        t.claim_due(at(5), 10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    // Due timers come oldest first, with their payloads.
    let due = t
        .claim_due(at(60), 10, Duration::from_secs(30))
        .await
        .unwrap();
    let ids: Vec<&str> = due.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["early", "mid"]);
    assert_eq!(due[0].payload, "payload-early");
    assert_eq!(due[0].due, at(10));
    // Claimed timers are leased: not handed out again within the lease...
    assert!(
        t.claim_due(at(61), 10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    t.complete("early").await.unwrap();
    // ...but come back when the lease runs out (a worker died before completing).
    let again = t
        .claim_due(at(95), 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["mid"]
    );
    t.complete("mid").await.unwrap();
    // Rescheduling moves a timer; cancel removes it.
    t.schedule(&timer("late", 200)).await.unwrap();
    assert!(
        t.claim_due(at(150), 10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    t.cancel("late").await.unwrap();
    assert_eq!(t.pending().await.unwrap(), 0);
    // The "built" marker: absent on a new (or flushed) store.
    assert!(!t.is_built().await.unwrap());
    t.mark_built().await.unwrap();
    assert!(t.is_built().await.unwrap());
    // Limits are respected.
    for i in 0..5 {
        t.schedule(&timer(&format!("n{i}"), i)).await.unwrap();
    }
    assert_eq!(
        t.claim_due(at(10), 3, Duration::from_secs(30))
            .await
            .unwrap()
            .len(),
        3
    );
}

/// Several timers scheduled and cancelled in one call.
async fn updates_schedule_and_cancel_together(t: &dyn TimerStore) {
    t.schedule(&timer("a", 10)).await.unwrap();
    t.schedule(&timer("b", 20)).await.unwrap();
    t.schedule(&timer("c", 30)).await.unwrap();
    // Moves a, adds d, cancels b and an unknown id; c is named in both: it stays scheduled.
    let mut c = timer("c", 40);
    c.payload = "moved".into();
    t.update(
        &[timer("a", 50), timer("d", 5), c],
        &["b".into(), "c".into(), "nobody".into()],
    )
    .await
    .unwrap();
    assert_eq!(t.pending().await.unwrap(), 3);
    let due = t
        .claim_due(at(100), 10, Duration::from_secs(30))
        .await
        .unwrap();
    let got: Vec<(&str, i64, &str)> = due
        .iter()
        .map(|d| {
            (
                d.id.as_str(),
                d.due.timestamp() - at(0).timestamp(),
                d.payload.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("d", 5, "payload-d"),
            ("c", 40, "moved"),
            ("a", 50, "payload-a")
        ]
    );
    // Nothing to do is fine.
    t.update(&[], &[]).await.unwrap();
    for d in &due {
        t.complete(&d.id).await.unwrap();
    }
    assert_eq!(t.pending().await.unwrap(), 0);
}

async fn concurrent_workers_claim_each_timer_once(t: Arc<dyn TimerStore>) {
    for i in 0..200 {
        t.schedule(&timer(&format!("c{i}"), i % 20)).await.unwrap();
    }
    let mut workers = Vec::new();
    for _ in 0..4 {
        let t = t.clone();
        workers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = t
                    .claim_due(at(30), 7, Duration::from_secs(600))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    break;
                }
                got.extend(batch.into_iter().map(|t| t.id));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 200);
    assert_eq!(unique.len(), 200);
}

#[tokio::test]
async fn memory_timers_keep_the_contract() {
    contract(&MemoryTimers::default()).await;
    updates_schedule_and_cancel_together(&MemoryTimers::default()).await;
    concurrent_workers_claim_each_timer_once(Arc::new(MemoryTimers::default())).await;
}

#[tokio::test]
async fn redis_timers_keep_the_contract() {
    let url = minyi_core::testing::redis_url();
    let prefix = format!("test-{}", minyi_core::testing::random_name());
    contract(&RedisTimers::connect(&url, &prefix).await.unwrap()).await;
    let prefix = format!("test-{}", minyi_core::testing::random_name());
    updates_schedule_and_cancel_together(&RedisTimers::connect(&url, &prefix).await.unwrap()).await;
    let prefix = format!("test-{}", minyi_core::testing::random_name());
    let t: Arc<dyn TimerStore> = Arc::new(RedisTimers::connect(&url, &prefix).await.unwrap());
    concurrent_workers_claim_each_timer_once(t.clone()).await;
    // Clean up this test's keys.
    for i in 0..200 {
        t.complete(&format!("c{i}")).await.unwrap();
    }
}
