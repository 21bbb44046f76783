//! The shared batch consumer loop on both buses: every message settled once, a ticket's
//! events in order, never two of one ticket in a batch, retries redelivered, poison
//! dead-lettered, and a clean stop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use minyi_core::bus::{AmqpBus, Bus, MemoryBus, Outcome};
use minyi_core::event::{decode, new_event};
use minyi_proto::events::FollowUpAdded;
use minyi_proto::events::event::Body;
use tokio::sync::watch;
use uuid::Uuid;

const KEYS: &[&str] = &["ticket.follow_up_added"];

/// Declares `queue` and publishes five follow-ups (0..5) for each of six tickets, then one
/// poison message (not an event at all). Returns the tickets.
async fn publish_test_messages(bus: &dyn Bus, queue: &str) -> Vec<Uuid> {
    bus.declare(queue, KEYS).await.unwrap();
    let tickets: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
    let mut messages = Vec::new();
    for n in 0..5u32 {
        for t in &tickets {
            messages.push(new_event(
                *t,
                Utc::now(),
                Body::FollowUpAdded(FollowUpAdded {
                    text: n.to_string(),
                }),
            ));
        }
    }
    let mut poison = messages[0].clone();
    poison.event_id = Uuid::now_v7();
    poison.payload = b"not an event".to_vec();
    messages.push(poison);
    bus.publish(&messages).await.unwrap();
    tickets
}

/// Waits until `handled()` counts all 30 good messages.
async fn wait_for_all(handled: impl Fn() -> usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = handled();
        if done == 30 {
            return;
        }
        assert!(Instant::now() < deadline, "only {done} of 30 handled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each ticket's events in delivery order; a retried one (ticket 0's) comes back later, so
/// only its ticket may see it after its successors.
fn assert_in_order(order: &HashMap<String, Vec<u32>>, tickets: &[Uuid]) {
    for t in &tickets[1..] {
        assert_eq!(
            order[&t.to_string()],
            [0, 1, 2, 3, 4],
            "ticket {t} out of order"
        );
    }
    let mut flaky = order[&tickets[0].to_string()].clone();
    flaky.sort_unstable();
    assert_eq!(flaky, [0, 1, 2, 3, 4]);
}

/// Nothing left in `queue`; the poison message dead-lettered.
async fn assert_drained(bus: &dyn Bus, queue: &str) {
    assert_eq!(bus.queue_depth(queue).await.unwrap(), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while bus.dead_letter_depth(queue).await.unwrap() != 1 {
        assert!(
            Instant::now() < deadline,
            "the poison message was not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The batch loop: every message settled once, never two of one ticket in a batch, a ticket's
/// events in order, batches no bigger than asked, retries redelivered, poison dead-lettered.
async fn batch_loop_keeps_its_promises(bus: Arc<dyn Bus>) {
    const BATCH_QUEUE: &str = "consume-batch-test";
    let tickets = publish_test_messages(&*bus, BATCH_QUEUE).await;

    #[derive(Default)]
    struct Batches {
        order: HashMap<String, Vec<u32>>,
        sizes: Vec<usize>,
        retried: bool,
    }
    let seen = Arc::new(Mutex::new(Batches::default()));
    let (stop, stopped) = watch::channel(false);
    let handler_seen = seen.clone();
    let flaky = tickets[0].to_string();
    let task = tokio::spawn(minyi_core::bus::consume_batches(
        bus.clone(),
        minyi_core::bus::BatchOptions {
            consumer: BATCH_QUEUE,
            routing_keys: KEYS,
            max_batch: 4,
            span: |m| tracing::info_span!("test.batch", routing_key = %m.routing_key),
        },
        stopped,
        move |items| {
            let seen = handler_seen.clone();
            let flaky = flaky.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let mut s = seen.lock().unwrap();
                s.sizes.push(items.len());
                let mut in_batch = std::collections::HashSet::new();
                items
                    .iter()
                    .map(|item| {
                        let Some(event) = decode(&item.message.payload) else {
                            return Outcome::Poison("not an event");
                        };
                        assert!(
                            in_batch.insert(event.ticket_id.clone()),
                            "one ticket twice in a batch"
                        );
                        let Some(Body::FollowUpAdded(f)) = event.body else {
                            return Outcome::Poison("unexpected body");
                        };
                        let n: u32 = f.text.parse().unwrap();
                        if event.ticket_id == flaky && n == 2 && !s.retried {
                            s.retried = true;
                            return Outcome::Retry;
                        }
                        s.order.entry(event.ticket_id.clone()).or_default().push(n);
                        Outcome::Done
                    })
                    .collect()
            }
        },
    ));
    wait_for_all(|| seen.lock().unwrap().order.values().map(Vec::len).sum()).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the loop stops when told")
        .unwrap();

    let s = std::mem::take(&mut *seen.lock().unwrap());
    assert!(s.retried);
    assert_in_order(&s.order, &tickets);
    assert!(s.sizes.iter().all(|n| *n <= 4), "{:?}", s.sizes);
    assert!(
        s.sizes.iter().any(|n| *n > 1),
        "never batched: {:?}",
        s.sizes
    );
    assert_drained(&*bus, BATCH_QUEUE).await;
}

#[tokio::test]
async fn the_batch_loop_on_the_memory_bus() {
    batch_loop_keeps_its_promises(Arc::new(MemoryBus::default())).await;
}

#[tokio::test]
async fn the_batch_loop_on_rabbitmq() {
    let bus = AmqpBus::connect(minyi_core::testing::amqp_config())
        .await
        .unwrap();
    batch_loop_keeps_its_promises(Arc::new(bus)).await;
}
