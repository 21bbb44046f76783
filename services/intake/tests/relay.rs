//! The outbox relay with a handoff, on PostgreSQL and the in-process bus: what the store's
//! writers hand over is published once each, the relay's claims delete those rows, and a
//! steady stream of handed-over events does not keep the claims from running.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use minyi_core::bus::{Bus, BusError, MemoryBus, Message, Subscription};
use minyi_core::event::new_event;
use minyi_core::store::{OutboxHandoff, PostgresStore, TicketStore};
use minyi_intake::relay::{Relay, RelayConfig};
use minyi_proto::events::TicketReceived;
use minyi_proto::events::event::Body;
use tokio::sync::{Notify, watch};

/// A PostgreSQL store (a fresh database, `connections` in its pool) whose writers hand their
/// events to a running relay publishing on `bus`, and a probe subscribed to every ticket event.
struct Running {
    url: String,
    store: Arc<PostgresStore>,
    sub: Box<dyn Subscription>,
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    relay: tokio::task::JoinHandle<()>,
}

async fn start(bus: Arc<dyn Bus>, connections: u32) -> Running {
    let url = minyi_core::testing::fresh_database().await.unwrap();
    let handoff = Arc::new(OutboxHandoff::new(Duration::from_secs(30)));
    let store = Arc::new(
        PostgresStore::connect_with_handoff(&url, connections, Some(handoff.clone()))
            .await
            .unwrap(),
    );
    let sub = bus.subscribe("probe", &["ticket.#"]).await.unwrap();
    let wake = Arc::new(Notify::new());
    let relay =
        Relay::new(store.clone(), bus, wake.clone(), RelayConfig::default()).with_handoff(handoff);
    let (stop, stopped) = watch::channel(false);
    let relay = tokio::spawn(relay.run(stopped));
    Running {
        url,
        store,
        sub,
        wake,
        stop,
        relay,
    }
}

#[tokio::test]
async fn handed_over_events_are_published_once_and_their_rows_deleted() {
    let Running {
        store,
        mut sub,
        wake,
        stop,
        relay,
        ..
    } = start(Arc::new(MemoryBus::default()), 4).await;

    let mut sent = HashSet::new();
    for n in 0..200 {
        let t = minyi_core::testing::ticket_record(&format!("路灯不亮 {n}"), chrono::Utc::now());
        let event = new_event(
            t.id,
            t.received_at,
            Body::Received(TicketReceived::default()),
        );
        sent.insert(event.event_id);
        store.create_ticket(t, vec![event]).await.unwrap();
        wake.notify_one();
    }
    let mut got = HashSet::new();
    while got.len() < sent.len() {
        let d = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("every handed-over event is published")
            .unwrap();
        assert!(got.insert(d.message.event_id), "published twice");
        d.ack().await.unwrap();
    }
    assert_eq!(got, sent);
    // The relay's next claims delete the published rows.
    let mut left = store.outbox_len().await.unwrap();
    for _ in 0..50 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = store.outbox_len().await.unwrap();
    }
    assert_eq!(left, 0, "published rows are deleted");
    stop.send(true).unwrap();
    relay.await.unwrap();
    // Nothing more was published (no claim picked a handed-over row).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sub.next())
            .await
            .is_err()
    );
}

/// A bus whose publishes take 20 ms (a slow broker's confirms).
struct SlowBus {
    inner: MemoryBus,
    delay: Duration,
}

#[async_trait::async_trait]
impl Bus for SlowBus {
    async fn publish(&self, messages: &[Message]) -> Result<(), BusError> {
        tokio::time::sleep(self.delay).await;
        self.inner.publish(messages).await
    }
    async fn subscribe(
        &self,
        queue: &str,
        keys: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.inner.subscribe(queue, keys).await
    }
    async fn subscribe_transient(
        &self,
        name: &str,
        keys: &[&str],
    ) -> Result<Box<dyn Subscription>, BusError> {
        self.inner.subscribe_transient(name, keys).await
    }
    async fn declare(&self, queue: &str, keys: &[&str]) -> Result<(), BusError> {
        self.inner.declare(queue, keys).await
    }
    async fn queue_depth(&self, queue: &str) -> Result<u64, BusError> {
        self.inner.queue_depth(queue).await
    }
    async fn dead_letter_depth(&self, queue: &str) -> Result<u64, BusError> {
        self.inner.dead_letter_depth(queue).await
    }
}

/// While this process's writers keep handing events over faster than the bus confirms them,
/// the relay still claims: a row another process left in the outbox (not handed over) goes
/// out while the stream is still running, and the published rows are deleted meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_handoff_stream_does_not_starve_the_claims() {
    let bus = Arc::new(SlowBus {
        inner: MemoryBus::default(),
        delay: Duration::from_millis(20),
    });
    let Running {
        url,
        store,
        mut sub,
        stop,
        relay,
        ..
    } = start(bus, 8).await;
    // Another process's writer: its rows reach the bus only through a claim.
    let other = PostgresStore::connect(&url, 2).await.unwrap();

    let (written, stopping) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    // Four writers, so that events are handed over faster than the bus confirms them.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (store, written, stopping) = (store.clone(), written.clone(), stopping.clone());
            tokio::spawn(async move {
                while !stopping.load(Ordering::SeqCst) {
                    let n = written.fetch_add(1, Ordering::SeqCst);
                    let t = minyi_core::testing::ticket_record(
                        &format!("噪音扰民 {w} {n}"),
                        chrono::Utc::now(),
                    );
                    let event = new_event(
                        t.id,
                        t.received_at,
                        Body::Received(TicketReceived::default()),
                    );
                    store.create_ticket(t, vec![event]).await.unwrap();
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = minyi_core::testing::ticket_record("井盖丢了", chrono::Utc::now());
    let lone = new_event(
        t.id,
        t.received_at,
        Body::Received(TicketReceived::default()),
    );
    let lone_id = lone.event_id;
    other.create_ticket(t, vec![lone]).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut found = false;
    while !found {
        let d = tokio::time::timeout_at(deadline, sub.next())
            .await
            .expect("the other process's event is claimed while the handoff stream runs")
            .unwrap();
        found = d.message.event_id == lone_id;
        d.ack().await.unwrap();
    }
    // The claims also delete what the relay published from the handoff: most rows are gone
    // while the stream goes on (without claims every one of them would still be there).
    let (left, so_far) = (
        store.outbox_len().await.unwrap(),
        written.load(Ordering::SeqCst),
    );
    assert!(
        (left as usize) < so_far / 2,
        "{left} of {so_far} rows still in the outbox while streaming"
    );
    stopping.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    stop.send(true).unwrap();
    relay.await.unwrap();
}
